//! Policies in force, replaced whole when the policy files change. In a cluster the
//! directory is a mounted ConfigMap: an edit takes effect without a restart, and a bad
//! edit keeps the last good policies and is logged (once per change).

use super::{PolicySet, load_dir};
use crate::watch::Changes;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often the directory is re-read without a change notification.
const RECHECK: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct PolicyStore {
    current: RwLock<Arc<PolicySet>>,
}

impl PolicyStore {
    pub fn new(set: PolicySet) -> Self {
        PolicyStore {
            current: RwLock::new(Arc::new(set)),
        }
    }

    pub fn current(&self) -> Arc<PolicySet> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, set: PolicySet) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
    }
}

/// The policy files' names and contents, to act once per change.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .filter_map(|p| std::fs::read(&p).ok().map(|bytes| (p, bytes)))
        .collect();
    files.sort();
    files
}

/// Follows the policy directory until the task is aborted, replacing the store's policies
/// when the files change and load.
pub fn spawn_reload(dir: PathBuf, store: Arc<PolicyStore>) -> JoinHandle<()> {
    let last = Arc::new(Mutex::new(fingerprint(&dir)));
    let mut changes = Changes::watch(&dir, RECHECK);
    tokio::spawn(async move {
        loop {
            changes.next().await;
            let (dir, store, last) = (dir.clone(), store.clone(), last.clone());
            let _ = tokio::task::spawn_blocking(move || {
                let now = fingerprint(&dir);
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                if *last == now {
                    return;
                }
                *last = now;
                match load_dir(&dir) {
                    Ok(set) => {
                        tracing::info!(dir = %dir.display(), policies = set.len(), "policies reloaded");
                        store.replace(set);
                    }
                    Err(e) => {
                        tracing::error!(dir = %dir.display(), error = %e, "policies not reloaded; keeping the last good policies");
                    }
                }
            })
            .await;
        }
    })
}
