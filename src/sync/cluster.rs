//! Cluster mode: approvals from every ConfigMap in one namespace that carries the approvals
//! label, followed with the `kube` crate's watcher.
//!
//! - The initial list and every re-list replace the store's state at once (a ConfigMap or
//!   key that is gone is revoked); between them, each added, changed or deleted ConfigMap
//!   replaces the state again.
//! - When the watch breaks, the last good state keeps serving (expiry is still checked
//!   against the clock) while the watcher re-lists with backoff. Each transition is logged
//!   once.
//! - The store counts how long the API server has been silent: since the last event, list
//!   or bookmark. The watcher does not report bookmarks or quiet re-watches to its caller,
//!   so a layer on the client marks an accepted watch, and every chunk of its stream, as a
//!   sign of health: a watch that idles but streams bookmarks stays fresh. Past the
//!   staleness budget, nothing is granted, and the watch is started over (a fresh list)
//!   every 10 s until the API server answers again.

use crate::approvals::{self, ApprovalStore, ConfigMapRef};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Config};
use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::task::JoinHandle;

/// While stale, how often to start the watch over.
const RESTART_EVERY: Duration = Duration::from_secs(10);

/// How many ConfigMaps a list asks for at a time. The watcher holds a page whole (the
/// response's body, then its ConfigMaps) until each has been handed over; at kube's 500, a
/// hundred ConfigMaps of a thousand entries (some 30 MB) were held all at once on top of
/// their approvals. Ten are at most 10 MiB (a ConfigMap is at most 1 MiB).
const LIST_PAGE: u32 = 10;

/// Where the approvals live in a cluster.
#[derive(Debug, Clone)]
pub struct ClusterSource {
    pub namespace: String,
    /// Label selector, e.g. `jitgate.dev/approvals=true`.
    pub selector: String,
    /// `None`: in-cluster configuration, or `KUBECONFIG`, or `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// The ConfigMap, in `namespace`, where uses of `maxUses` approvals are counted.
    pub usage_configmap: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot read kubeconfig {path}: {reason}")]
    Kubeconfig { path: PathBuf, reason: String },
    #[error("no Kubernetes configuration found (in-cluster, KUBECONFIG or ~/.kube/config): {0}")]
    Infer(String),
    #[error("cannot build a Kubernetes client: {0}")]
    Client(String),
    #[error(
        "cannot learn the cluster's id from Namespace kube-system ({0}); give --cluster-id, or let jitgate get that Namespace (manifests/base/rbac.yaml)"
    )]
    ClusterId(String),
}

/// The cluster's identity as jitgate reads it when no `--cluster-id` is given: the uid of
/// its `kube-system` Namespace. Offline signatures are bound to it.
pub async fn read_cluster_id(client: Client) -> Result<String, ClusterError> {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    let ns = namespaces
        .get("kube-system")
        .await
        .map_err(|e| ClusterError::ClusterId(e.to_string()))?;
    ns.metadata
        .uid
        .filter(|uid| !uid.is_empty())
        .ok_or_else(|| ClusterError::ClusterId("it has no uid".into()))
}

/// Health as the client sees it. A watch stream's chunks (events and bookmarks) count
/// only while the watcher is in good standing: it loses it on an error and regains it on
/// an event it could use, or when the API server accepts a new watch (the watcher resumes
/// a watch without a word to its caller). Lists count when the watcher has used them.
#[derive(Debug)]
struct Liveness {
    store: Arc<ApprovalStore>,
    watch_ok: AtomicBool,
}

impl Liveness {
    fn watch_accepted(&self) {
        self.watch_ok.store(true, Ordering::Relaxed);
        self.store.mark_healthy();
    }

    fn chunk(&self) {
        if self.watch_ok.load(Ordering::Relaxed) {
            self.store.mark_healthy();
        }
    }
}

/// Connects to the API server with `config` (see [`client_config`]) and follows the
/// approvals ConfigMaps into `store` until the task is aborted.
pub fn spawn(
    config: Config,
    source: ClusterSource,
    store: Arc<ApprovalStore>,
) -> Result<JoinHandle<()>, ClusterError> {
    tracing::info!(server = %config.cluster_url, namespace = %source.namespace, selector = %source.selector,
        "following approvals ConfigMaps");
    let liveness = Arc::new(Liveness {
        store: store.clone(),
        watch_ok: AtomicBool::new(false),
    });
    let client = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| ClusterError::Client(e.to_string()))?
        .with_layer(&HealthLayer(liveness.clone()))
        .build();
    Ok(tokio::spawn(follow(client, source, liveness)))
}

/// How to reach the API server: from `kubeconfig` when given, else as kube infers it (the
/// in-cluster service account, then `KUBECONFIG`, then `~/.kube/config`).
pub async fn client_config(kubeconfig: Option<&std::path::Path>) -> Result<Config, ClusterError> {
    match kubeconfig {
        Some(path) => {
            let fail = |reason: String| ClusterError::Kubeconfig {
                path: path.to_path_buf(),
                reason,
            };
            let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| fail(e.to_string()))?;
            Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .map_err(|e| fail(e.to_string()))
        }
        None => Config::infer()
            .await
            .map_err(|e| ClusterError::Infer(e.to_string())),
    }
}

async fn follow(client: Client, source: ClusterSource, liveness: Arc<Liveness>) {
    let api: Api<ConfigMap> = Api::namespaced(client, &source.namespace);
    let config = watcher::Config::default()
        .labels(&source.selector)
        .page_size(LIST_PAGE);
    let start = || {
        watcher::watcher(api.clone(), config.clone())
            .backoff(super::watch_backoff())
            .boxed()
    };
    let mut events = start();
    let mut restarted = std::time::Instant::now();
    let mut state = State::new(&source.namespace);
    let store = liveness.store.clone();
    let mut stale = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut broken_since: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            item = events.next() => match item {
                Some(Ok(event)) => {
                    liveness.watch_ok.store(true, Ordering::Relaxed);
                    if let Some(since) = broken_since.take() {
                        tracing::info!(after_secs = since.elapsed().as_secs(), "approvals watch restored");
                    }
                    state.apply(event, &store);
                    store.mark_healthy();
                }
                Some(Err(e)) => {
                    liveness.watch_ok.store(false, Ordering::Relaxed);
                    if broken_since.is_none() {
                        broken_since = Some(std::time::Instant::now());
                        tracing::warn!(error = %e,
                            "approvals watch broken; serving the last good approvals and retrying with backoff");
                    } else {
                        tracing::debug!(error = %e, "approvals watch still broken");
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                let now_stale = store.is_stale();
                // Stale and no sign of recovery: start over with a fresh list and watch
                // rather than wait on a stream that may never say anything useful again.
                if now_stale && restarted.elapsed() >= RESTART_EVERY {
                    tracing::warn!("approvals stale: restarting the watch with a fresh list");
                    events = start();
                    restarted = std::time::Instant::now();
                }
                if now_stale != stale {
                    stale = now_stale;
                    let silent_secs = store.silent_for().as_secs();
                    if stale {
                        tracing::error!(silent_secs, budget_secs = store.max_staleness().map(|d| d.as_secs()),
                            "approvals are stale: no word from the Kubernetes API past the budget; granting nothing");
                    } else {
                        tracing::info!("approvals fresh again; granting resumes");
                    }
                }
            }
        }
    }
}

/// The ConfigMaps as last seen, parsed, and what has been logged about their entries.
struct State {
    namespace: String,
    configmaps: BTreeMap<String, approvals::ParsedConfigMap>,
    /// Set between `Init` and `InitDone`: the re-list being gathered.
    relisting: Option<BTreeMap<String, approvals::ParsedConfigMap>>,
    /// Entry id → hash of the text that was last reported as refused.
    reported: HashMap<String, u64>,
    synced_once: bool,
}

impl State {
    fn new(namespace: &str) -> Self {
        State {
            namespace: namespace.to_string(),
            configmaps: BTreeMap::new(),
            relisting: None,
            reported: HashMap::new(),
            synced_once: false,
        }
    }

    fn apply(&mut self, event: Event<ConfigMap>, store: &ApprovalStore) {
        match event {
            Event::Init => self.relisting = Some(BTreeMap::new()),
            Event::InitApply(cm) => {
                let (name, parsed) = self.parse(&cm);
                store.note_read(parsed.read);
                self.relisting.get_or_insert_default().insert(name, parsed);
            }
            Event::InitDone => {
                self.configmaps = self.relisting.take().unwrap_or_default();
                let live: std::collections::HashSet<String> = self
                    .configmaps
                    .values()
                    .flat_map(|p| p.errors.iter().map(|e| e.id.clone()))
                    .collect();
                self.reported.retain(|id, _| live.contains(id));
                // What parsing the list freed goes back to the system before the store
                // checks and indexes the approvals, the peak of a load: entries parsed on
                // other threads leave free room in glibc's arenas between the approvals
                // that stay. (An edit of one ConfigMap parses too little to need it.)
                crate::memory::release_freed();
                self.publish(store);
                let approvals: usize = self.configmaps.values().map(|p| p.approvals.len()).sum();
                let ignored: usize = self.configmaps.values().map(|p| p.errors.len()).sum();
                if self.synced_once {
                    tracing::debug!(
                        configmaps = self.configmaps.len(),
                        approvals,
                        ignored,
                        "approvals re-listed"
                    );
                } else {
                    tracing::info!(
                        configmaps = self.configmaps.len(),
                        approvals,
                        ignored,
                        "approvals synced"
                    );
                    self.synced_once = true;
                }
            }
            Event::Apply(cm) => {
                let (name, parsed) = self.parse(&cm);
                store.note_read(parsed.read);
                self.configmaps.insert(name, parsed);
                self.publish(store);
            }
            Event::Delete(cm) => {
                let name = cm.metadata.name.unwrap_or_default();
                if let Some(gone) = self.configmaps.remove(&name) {
                    for e in gone.errors {
                        self.reported.remove(&e.id);
                    }
                }
                tracing::info!(configmap = %name, "approvals ConfigMap deleted: its approvals are revoked");
                self.publish(store);
            }
        }
    }

    /// Parses one ConfigMap, logging each refused entry once per change of its text.
    fn parse(&mut self, cm: &ConfigMap) -> (String, approvals::ParsedConfigMap) {
        let name = cm.metadata.name.clone().unwrap_or_default();
        let empty = BTreeMap::new();
        // The trusted signers' ConfigMap is never also approvals, whatever its labels (its
        // guard refuses making it so; this holds should it be so anyway).
        if name == crate::signing::SIGNERS_CONFIGMAP {
            tracing::warn!(configmap = %name, "the trusted signers ConfigMap carries the approvals label; its entries grant nothing");
            return (name, approvals::ParsedConfigMap::default());
        }
        let data = cm.data.as_ref().unwrap_or(&empty);
        // Only the entries whose text changed are read again.
        let previous = self.configmaps.get(&name);
        let parsed = approvals::parse_configmap_after(&name, data, previous);
        for e in &parsed.errors {
            let key = e.id.strip_prefix(&format!("{name}/")).unwrap_or(&e.id);
            let mut hasher = DefaultHasher::new();
            data.get(key).hash(&mut hasher);
            let text_hash = hasher.finish();
            if self.reported.insert(e.id.clone(), text_hash) != Some(text_hash) {
                tracing::warn!(approval = %e.id, reason = %e.reason, "approval entry ignored");
            }
        }
        (name, parsed)
    }

    /// Publishes the approvals of every ConfigMap. They are taken out of their ConfigMaps
    /// while the store checks their signatures, and given back after (the same `Arc`s), so
    /// that a new approval is held nowhere else then and the store checks it in place:
    /// held here too, each signed approval would be copied, and held twice.
    fn publish(&mut self, store: &ApprovalStore) {
        let counts: Vec<usize> = self.configmaps.values().map(|p| p.approvals.len()).collect();
        let approvals = self
            .configmaps
            .values_mut()
            .flat_map(|p| std::mem::take(&mut p.approvals))
            .collect();
        let home = if self.configmaps.contains_key(approvals::DEFAULT_CONFIGMAP) || self.configmaps.is_empty()
        {
            approvals::DEFAULT_CONFIGMAP.to_string()
        } else {
            self.configmaps.keys().next().cloned().unwrap_or_default()
        };
        let home = ConfigMapRef {
            namespace: self.namespace.clone(),
            name: home,
        };
        let invalid = self.configmaps.values().map(|p| p.errors.len()).sum();
        store.publish_then(approvals, invalid, home, |published| {
            let mut published = published.iter();
            for ((name, p), n) in self.configmaps.iter_mut().zip(counts) {
                p.approvals = published.by_ref().take(n).cloned().collect();
                // The store gives them back as given, in order: each to its ConfigMap.
                debug_assert!(p.approvals.iter().all(|a| a.id.starts_with(&format!("{name}/"))));
            }
        });
        // What the previous state and the parse took and freed goes back to the system.
        crate::memory::release_freed();
    }
}

/// A client layer that reports an accepted watch, and every chunk of its stream, as a
/// sign that the API server is there.
#[derive(Clone)]
struct HealthLayer(Arc<Liveness>);

impl<S> tower::Layer<S> for HealthLayer {
    type Service = HealthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HealthService {
            inner,
            liveness: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct HealthService<S> {
    inner: S,
    liveness: Arc<Liveness>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, Q, B> tower::Service<http::Request<Q>> for HealthService<S>
where
    S: tower::Service<http::Request<Q>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    B: 'static,
{
    type Response = http::Response<HealthBody<B>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Q>) -> Self::Future {
        let is_watch = request
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
        let response = self.inner.call(request);
        let liveness = self.liveness.clone();
        Box::pin(async move {
            let response = response.await?;
            let watching = is_watch && response.status().is_success();
            if watching {
                liveness.watch_accepted();
            }
            Ok(response.map(|inner| HealthBody {
                inner: Box::pin(inner),
                liveness: watching.then_some(liveness),
            }))
        })
    }
}

/// A response body that reports each chunk it yields.
pub struct HealthBody<B> {
    inner: Pin<Box<B>>,
    liveness: Option<Arc<Liveness>>,
}

impl<B: http_body::Body> http_body::Body for HealthBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = this.inner.as_mut().poll_frame(cx);
        if let (Poll::Ready(Some(Ok(_))), Some(liveness)) = (&polled, &this.liveness) {
            liveness.chunk();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approvals::{Approval, parse_entry};
    use crate::signing::{Checked, Signers, sign};

    fn configmap(name: &str, data: &[(&str, &str)]) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.into());
        cm.data = Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        cm
    }

    fn entry(user: &str) -> String {
        format!(
            "user: {user}\nresource: secrets\nnamespace: prod\nexpiresAt: \"2099-01-01T00:00:00Z\"\nreason: r\n"
        )
    }

    /// A signed approval the API server lists is held once: the store checks it in
    /// place, and what each ConfigMap keeps for its next version is the very approval the
    /// store published, not the unchecked copy it was made from, and only its own.
    #[test]
    fn a_listed_signed_approval_is_checked_in_place_and_held_once() {
        let (binding, key, data) = crate::signing::trusted_for_tests("carol");
        let mut a = parse_entry("approvals/s", &entry("alice")).unwrap();
        let s = sign(&a.terms(), &binding, "carol", &key, None);
        a.rare.make_mut().signatures.push(s);
        let signed = a.to_yaml();
        let store = ApprovalStore::default();
        store.set_signers(Signers::from_data(binding, &data).0);
        let mut state = State::new("jitgate-system");
        state.apply(Event::Init, &store);
        state.apply(
            Event::InitApply(configmap("approvals", &[("s", &signed)])),
            &store,
        );
        state.apply(Event::InitApply(configmap("empty", &[])), &store);
        let (bob, erin) = (entry("bob"), entry("erin"));
        state.apply(
            Event::InitApply(configmap("more", &[("b", &bob), ("e", &erin)])),
            &store,
        );
        state.apply(Event::InitDone, &store);
        let ids = |approvals: &[Arc<Approval>]| -> Vec<String> {
            approvals.iter().map(|a| a.id.to_string()).collect()
        };
        let published = store.current().unwrap();
        assert_eq!(ids(&published.approvals), ["approvals/s", "more/b", "more/e"]);
        let held = &published.approvals[0];
        assert!(matches!(held.rare.checked[..], [Checked::Trusted(_)]), "{held:?}");
        let kept = &state.configmaps["approvals"].approvals;
        assert!(
            Arc::ptr_eq(held, &kept[0]),
            "the ConfigMap keeps a copy of its own"
        );
        assert!(state.configmaps["empty"].approvals.is_empty());
        assert_eq!(ids(&state.configmaps["more"].approvals), ["more/b", "more/e"]);
        assert_eq!(store.signatures_checked(), 1);
        // A new version that leaves it as it was neither copies nor checks it again.
        state.apply(Event::Apply(configmap("approvals", &[("s", &signed)])), &store);
        let again = store.current().unwrap();
        assert_eq!(ids(&again.approvals), ["approvals/s", "more/b", "more/e"]);
        assert!(Arc::ptr_eq(&again.approvals[0], held));
        assert_eq!(store.signatures_checked(), 1);
    }
}
