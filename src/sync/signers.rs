//! Following the trusted signers: the file `manifests/signers.yaml` in file mode, or the
//! one ConfigMap `jitgate-signers` in jitgate's namespace, watched by its name (a field
//! selector: no label makes another ConfigMap a source of signers). Each change sets the
//! approval store's signers, which checks the approvals' signatures again at once: a
//! removed signer's signatures stop counting with the next request. A signer entry that
//! does not parse is left out (it trusts nobody), named in a log line once per change.

use crate::approvals::ApprovalStore;
use crate::signing::{Binding, SIGNERS_CONFIGMAP, SignerError, Signers, parse_signers_file};
use crate::watch::Changes;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

const RECHECK: Duration = Duration::from_secs(5);
/// How often to ask again for the cluster id while the API server does not answer.
const CLUSTER_ID_RETRY: Duration = Duration::from_secs(2);

fn apply(store: &ApprovalStore, signers: Signers, errors: &[SignerError], from: &str) {
    for e in errors {
        tracing::warn!(signer = %e.name, reason = %e.reason, source = from, "trusted signer ignored");
    }
    if *store.signers() != signers {
        tracing::info!(
            signers = signers.len(),
            ignored = errors.len(),
            source = from,
            "trusted signers loaded"
        );
        store.set_signers(signers);
    }
}

/// Reads the signers file once, for signatures made for `binding`: `Ok(None)` when there
/// is none (nobody signs offline).
pub fn read_file(path: &Path, binding: &Binding) -> Result<Option<(Signers, Vec<SignerError>)>, String> {
    let shown = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_signers_file(&shown, &text, binding.clone()).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {shown}: {e}")),
    }
}

/// Loads the signers file now, then follows it until the task is aborted. A file that
/// cannot be read or parsed keeps the last good signers; a missing one trusts nobody.
pub fn spawn_file(path: PathBuf, binding: Binding, store: Arc<ApprovalStore>) -> JoinHandle<()> {
    let load = {
        let store = store.clone();
        let path = path.clone();
        // The bytes last seen (`Some(None)`: no file), to act once per change.
        let mut last: Option<Option<Vec<u8>>> = None;
        move || {
            let bytes = std::fs::read(&path).ok();
            if last.as_ref() == Some(&bytes) {
                return;
            }
            last = Some(bytes);
            let shown = path.display().to_string();
            match read_file(&path, &binding) {
                Ok(Some((signers, errors))) => apply(&store, signers, &errors, &shown),
                Ok(None) => {
                    tracing::info!(file = %shown, "no signers file: no offline approvals are trusted");
                    apply(&store, Signers::none(binding.clone()), &[], &shown);
                }
                Err(why) => {
                    tracing::error!(file = %shown, error = %why, "signers file not applied; keeping the last good signers");
                }
            }
        }
    };
    let load = Arc::new(std::sync::Mutex::new(load));
    (load.lock().unwrap_or_else(|e| e.into_inner()))();
    let mut changes = Changes::watch(&[&path], RECHECK);
    tokio::spawn(async move {
        loop {
            changes.next().await;
            let load = load.clone();
            let _ =
                tokio::task::spawn_blocking(move || (load.lock().unwrap_or_else(|e| e.into_inner()))()).await;
        }
    })
}

/// Follows the ConfigMap `jitgate-signers` in `binding`'s namespace, by name, until the
/// task is aborted. When the watch breaks, the last signers known stay, and the watcher
/// re-lists with backoff. Its absence trusts nobody.
///
/// The cluster id is `cluster_id`, or else the uid of the kube-system Namespace, read once
/// here (retried until the API server answers); until it is known, nobody is trusted.
pub fn spawn_cluster(
    client: Client,
    cluster_id: Option<String>,
    namespace: String,
    store: Arc<ApprovalStore>,
) -> JoinHandle<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={SIGNERS_CONFIGMAP}"));
    tokio::spawn(async move {
        let cluster = match cluster_id {
            Some(id) => id,
            None => loop {
                match super::cluster::read_cluster_id(client.clone()).await {
                    Ok(id) => break id,
                    Err(e) => {
                        tracing::warn!(error = %e, "offline signatures count for nothing until the cluster id is known; retrying");
                        tokio::time::sleep(CLUSTER_ID_RETRY).await;
                    }
                }
            },
        };
        let binding = Binding { cluster, namespace };
        tracing::info!(cluster = %binding.cluster, namespace = %binding.namespace,
            "offline signatures count when made for this cluster and namespace");
        let mut events = watcher::watcher(api, config)
            .backoff(super::watch_backoff())
            .boxed();
        let mut seen: Option<BTreeMap<String, String>> = None;
        let mut relist: Option<Option<BTreeMap<String, String>>> = None;
        let source = format!("configmap {SIGNERS_CONFIGMAP} in {}", binding.namespace);
        // The field selector is the API server's to apply; the name is checked again here.
        let ours = |cm: &ConfigMap| cm.metadata.name.as_deref() == Some(SIGNERS_CONFIGMAP);
        while let Some(event) = events.next().await {
            let changed = match event {
                Ok(Event::Init) => {
                    relist = Some(None);
                    false
                }
                Ok(Event::InitApply(cm)) => {
                    if ours(&cm) {
                        relist = Some(Some(cm.data.unwrap_or_default()));
                    }
                    false
                }
                Ok(Event::InitDone) => {
                    seen = relist.take().flatten();
                    true
                }
                Ok(Event::Apply(cm)) if ours(&cm) => {
                    seen = Some(cm.data.unwrap_or_default());
                    true
                }
                Ok(Event::Delete(cm)) if ours(&cm) => {
                    seen = None;
                    true
                }
                Ok(Event::Apply(_) | Event::Delete(_)) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "signers watch broken; keeping the last signers and retrying");
                    false
                }
            };
            if changed {
                let (signers, errors) =
                    Signers::from_data(binding.clone(), &seen.clone().unwrap_or_default());
                apply(&store, signers, &errors, &source);
            }
        }
    })
}
