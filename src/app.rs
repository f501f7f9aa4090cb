//! Start-up: check everything that can be checked before binding (certificates, policies,
//! the audit log), load the approvals, then serve. Tests start the real server through
//! [`start`] exactly as `jitgate serve` does.

use crate::approvals::ApprovalStore;
use crate::audit::{AuditError, AuditSink};
use crate::metrics::Metrics;
use crate::news;
use crate::policy::{self, PolicyError};
use crate::server::{self, AppState};
use crate::sync::{self, ClusterError, ClusterSource, FileSync};
use crate::tls::{self, TlsError};
use crate::usage::UseCounts;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub policies_dir: PathBuf,
    /// Approvals from this file, unless `cluster` is set.
    pub approvals_file: PathBuf,
    /// Trusted signers of offline approvals from this file, unless `cluster` is set (then
    /// from the ConfigMap `jitgate-signers` beside the approvals).
    pub signers_file: PathBuf,
    /// The cluster offline signatures must be made for. `None`: in cluster mode, the uid
    /// of the `kube-system` Namespace, read at start; in file mode, `local`.
    pub cluster_id: Option<String>,
    /// Approvals from ConfigMaps in a cluster.
    pub cluster: Option<ClusterSource>,
    /// In cluster mode, how long the API server may be silent before approvals count as
    /// stale and grant nothing.
    pub max_staleness: Duration,
    pub audit_log: Option<PathBuf>,
    /// Rotate the audit log at this size.
    pub audit_log_max_bytes: Option<u64>,
    /// Places for decision records held at once, waiting to be written, one per started
    /// 4 KiB of each (`audit::PLACE`); a record that finds no room is refused, and its
    /// request denied (`audit_unavailable`).
    pub audit_queue: usize,
    /// Write decision records to stdout as well (the default for `serve`).
    pub records_to_stdout: bool,
    /// On shutdown, how long to keep serving after readiness fails, while endpoints update.
    pub shutdown_drain: Duration,
    /// How often the certificate files are re-read without a change notification.
    pub cert_check_every: Duration,
    /// In cluster mode, how long before an approval expires its Event warns of it.
    pub expiry_warning: jiff::SignedDuration,
    /// Reviews only from callers whose client certificate this CA signed (the API server).
    pub client_ca_file: Option<PathBuf>,
    /// What a hostile client meets: connection slots, timeouts, the body budget.
    pub limits: server::Limits,
    /// In cluster mode, how often the audit chain's head is anchored (when it moved).
    pub anchor_every: Duration,
    /// How approvals under granting policies grant: through `/authorize` only, or also
    /// with Roles and RoleBindings (cluster mode only).
    pub grants: crate::grants::Way,
    /// How old a grant object must be before a replica that does not see its approval
    /// granting removes it (longer than any watch lag).
    pub grants_grace: jiff::SignedDuration,
    /// Chat, webhook and mail sinks (`serve --notifications`): a file mounted from a Secret.
    pub notifications: Option<PathBuf>,
    /// How hard notifications are retried (tests shorten it).
    pub notification_retry: crate::notices::Retry,
}

impl ServeConfig {
    /// True when the certificate paths are the development defaults, which `serve`
    /// generates when they are absent.
    fn uses_dev_certs(&self) -> bool {
        self.tls_cert == Path::new(tls::DEV_CERT) && self.tls_key == Path::new(tls::DEV_KEY)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Notifications(#[from] crate::notices::ConfigError),
    #[error(transparent)]
    NotificationSetup(#[from] crate::notices::SetupError),
    #[error(
        "--grants rbac needs cluster mode (--approvals-namespace): it writes Roles through the API server"
    )]
    GrantsNeedCluster,
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    drain: Duration,
    /// Background tasks that follow files and the cluster; aborted on stop.
    background: Vec<JoinHandle<()>>,
    /// In cluster mode, anchors the audit chain's head once more on stop.
    anchorer: Option<Arc<sync::anchors::Anchorer>>,
}

impl Running {
    /// Shuts down without dropping a request: readiness fails at once, requests are still
    /// served for the drain period while endpoints update, then the server stops
    /// accepting, finishes in-flight requests and closes keep-alive connections.
    pub async fn stop(mut self) {
        self.state.shutting_down.store(true, Ordering::Relaxed);
        if !self.drain.is_zero() {
            tracing::info!(
                drain_secs = self.drain.as_secs_f32(),
                "not ready; serving on while endpoints update"
            );
            tokio::time::sleep(self.drain).await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
        for task in &self.background {
            task.abort();
        }
        // Every answer given as decided has its record written by now (a refusal given at
        // its deadline may still wait for the writer): anchor the chain's last record,
        // unless the API server does not answer soon.
        if let Some(anchorer) = &self.anchorer
            && tokio::time::timeout(Duration::from_secs(5), anchorer.anchor())
                .await
                .is_err()
        {
            tracing::warn!("the audit chain's last record was not anchored: the API server did not answer");
        }
    }
}

pub async fn start(cfg: ServeConfig) -> Result<Running, StartError> {
    if cfg.grants == crate::grants::Way::Rbac && cfg.cluster.is_none() {
        return Err(StartError::GrantsNeedCluster);
    }
    if cfg.uses_dev_certs() && tls::ensure_dev_certs(Path::new(tls::DEV_DIR))? {
        tracing::info!(
            ca = tls::DEV_CA,
            cert = tls::DEV_CERT,
            key = tls::DEV_KEY,
            names = ?tls::DEV_NAMES,
            "generated a development CA and serving certificate (ECDSA P-256, 365 days)"
        );
    }
    let serving_cert = tls::ServingCert::load(&cfg.tls_cert, &cfg.tls_key)?;
    let client_ca = match &cfg.client_ca_file {
        Some(path) => Some(crate::mtls::ClientCa::load(path)?),
        None => None,
    };
    let tls = serving_cert.config_asking(client_ca.as_ref().map(|ca| ca.handshake_verifier()));
    let rotation = serving_cert.clone().spawn_rotation(cfg.cert_check_every);
    let mut background = Vec::new();
    if let Some(ca) = &client_ca {
        background.push(ca.clone().spawn_reload(cfg.cert_check_every));
    }
    let loaded = sync::policies::load_dir(&cfg.policies_dir)?;
    tracing::info!(dir = %cfg.policies_dir.display(), policies = loaded.len(), "policies loaded");
    let policies = Arc::new(policy::PolicyStore::new(loaded));
    let policy_reload = sync::policies::spawn_reload(cfg.policies_dir.clone(), policies.clone());
    let replica = instance_name();
    // Without a log file to read it from, the chain before this one on this replica is the
    // last it anchored (a restarted container keeps its pod's name).
    let after = match (&cfg.cluster, &cfg.audit_log) {
        (Some(source), None) => {
            let config = sync::cluster::client_config(source.kubeconfig.as_deref()).await?;
            match kube::Client::try_from(config) {
                Ok(client) => {
                    sync::anchors::last_of(&kube::Api::namespaced(client, &source.namespace), &replica).await
                }
                Err(_) => None,
            }
        }
        _ => None,
    };
    let audit = AuditSink::start(
        crate::audit::chain::ChainId::new(&replica),
        after,
        cfg.records_to_stdout,
        cfg.audit_log.as_deref(),
        cfg.audit_log_max_bytes,
        cfg.audit_queue,
    )?;
    if let Some(log) = &cfg.audit_log {
        let mut followed = vec![
            cfg.policies_dir.as_path(),
            cfg.tls_cert.as_path(),
            cfg.tls_key.as_path(),
        ];
        if cfg.cluster.is_none() {
            followed.extend([cfg.approvals_file.as_path(), cfg.signers_file.as_path()]);
        }
        if let Some(dir) = crate::watch::watched_directory_holding(log, &followed) {
            tracing::warn!(audit_log = %log.display(), dir = %dir.display(),
                "the audit log is in a directory jitgate watches for changes, which every record written wakes; give it a directory of its own");
        }
    }

    let metrics = Arc::new(Metrics::new(cfg.expiry_warning));
    let forward = match &cfg.notifications {
        Some(path) => {
            let config = Arc::new(crate::notices::load(path)?);
            tracing::info!(
                sinks = config.sinks.len(),
                routes = config.routes.len(),
                "notifications configured"
            );
            let (tx, tasks) = crate::notices::send::start(config, metrics.clone(), cfg.notification_retry)?;
            background.extend(tasks);
            Some(tx)
        }
        None => None,
    };
    let mut anchorer = None;
    let (sync, approvals, usage, notices) = match cfg.cluster.clone() {
        Some(source) => {
            let store = Arc::new(ApprovalStore::new(Some(cfg.max_staleness)));
            let config = sync::cluster::client_config(source.kubeconfig.as_deref()).await?;
            let client =
                kube::Client::try_from(config.clone()).map_err(|e| ClusterError::Client(e.to_string()))?;
            // Until the cluster id is known (read from the API server, which may not be
            // up yet), nobody is trusted; the signers' ConfigMap is known by name already.
            store.set_signers(crate::signing::Signers::none(crate::signing::Binding {
                cluster: cfg.cluster_id.clone().unwrap_or_default(),
                namespace: source.namespace.clone(),
            }));
            let anchors = sync::anchors::Anchorer::new(
                kube::Api::namespaced(client.clone(), &source.namespace),
                audit.clone(),
            );
            background.push(anchors.spawn(cfg.anchor_every));
            anchorer = Some(anchors);
            let usage = Arc::new(UseCounts::in_cluster(
                kube::Api::namespaced(client.clone(), &source.namespace),
                source.usage_configmap.clone(),
            ));
            background.push(sync::prune::spawn(
                kube::Api::namespaced(client.clone(), &source.namespace),
                store.clone(),
                policies.clone(),
                sync::prune::KEEP_EXPIRED,
            ));
            background.push(sync::signers::spawn_cluster(
                client.clone(),
                cfg.cluster_id.clone(),
                source.namespace.clone(),
                store.clone(),
            ));
            // Events' names are keyed with a secret of the serving key, which every replica
            // shares (news::emit::Events::name_of).
            let names: news::emit::NameKey = {
                let serving = serving_cert.clone();
                Arc::new(move || serving.secret_for("jitgate event names"))
            };
            let events = news::emit::Events::new(client.clone(), instance_name(), names);
            if cfg.grants == crate::grants::Way::Rbac {
                let reconciler = crate::grants::Reconciler::new(
                    client.clone(),
                    store.clone(),
                    policies.clone(),
                    metrics.clone(),
                    audit.clone(),
                    instance_name(),
                    cfg.grants_grace,
                )
                .counting(usage.clone())
                .telling(events.clone());
                background.push(reconciler.spawn());
            }
            let (notices, events) = news::emit::spawn(
                Some(events),
                forward,
                store.clone(),
                policies.clone(),
                metrics.clone(),
                cfg.expiry_warning,
            );
            background.push(events);
            (
                sync::cluster::spawn(config, source, store.clone())?,
                store,
                usage,
                notices,
            )
        }
        None => {
            let store = Arc::new(ApprovalStore::new(None));
            let binding = crate::signing::Binding {
                cluster: cfg
                    .cluster_id
                    .clone()
                    .unwrap_or_else(|| crate::signing::DEFAULT_CLUSTER_ID.into()),
                ..Default::default()
            };
            store.set_signers(crate::signing::Signers::none(binding.clone()));
            background.push(sync::signers::spawn_file(
                cfg.signers_file.clone(),
                binding,
                store.clone(),
            ));
            // No Events in file mode: with notifications, the news is found the same way
            // and each process sends what it sees.
            let notices = match forward {
                Some(forward) => {
                    let (notices, task) = news::emit::spawn(
                        None,
                        Some(forward),
                        store.clone(),
                        policies.clone(),
                        metrics.clone(),
                        cfg.expiry_warning,
                    );
                    background.push(task);
                    notices
                }
                None => news::emit::Notices::default(),
            };
            (
                FileSync::new(cfg.approvals_file.clone(), store.clone()).spawn(),
                store,
                Arc::new(UseCounts::in_memory()),
                notices,
            )
        }
    };

    let report = sync::break_glass::spawn_report(approvals.clone(), policies.clone());

    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let bodies = server::BodyLimits::new(
        cfg.limits.body_timeout,
        cfg.limits.body_budget,
        cfg.limits.body_budget_wait,
        metrics.clone(),
    );
    let state = Arc::new(AppState {
        policies,
        approvals,
        audit,
        usage,
        metrics,
        notices,
        serving_cert,
        bodies,
        shutting_down: AtomicBool::new(false),
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let app = server::router(state.clone());
    let listening = server::Listening {
        tls,
        client_ca,
        limits: cfg.limits.clone(),
        metrics: state.metrics.clone(),
    };
    let server = tokio::spawn(server::serve_with(listener, listening, app, async {
        let _ = stopped.await;
    }));
    tracing::info!(%addr, ready = state.is_ready(), "jitgate listening (HTTPS, HTTP/1.1 and HTTP/2)");
    Ok(Running {
        addr,
        state,
        stop: Some(stop),
        server,
        drain: cfg.shutdown_drain,
        background: {
            background.extend([sync, policy_reload, rotation, report]);
            background
        },
        anchorer,
    })
}

/// Who this replica is, in its Events and in the name of its audit chain: the pod's name
/// (`POD_NAME`, which the Deployment passes by the downward API), else the host's.
fn instance_name() -> String {
    std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "jitgate".to_string())
}

/// `jitgate serve`: runs until SIGTERM or Ctrl-C.
pub async fn run(cfg: ServeConfig) -> Result<(), StartError> {
    let running = start(cfg).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
