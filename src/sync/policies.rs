//! Following the policy directory. In a cluster it is a mounted ConfigMap: an edit takes
//! effect without a restart, and a bad edit keeps the last good policies and is logged
//! (once per change).

use crate::policy::{PolicyStore, load_dir};
use crate::watch::Changes;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often the directory is re-read without a change notification.
const RECHECK: Duration = Duration::from_secs(5);

/// The policy files' names and contents, to act once per change.
fn policy_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
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
    let last = Arc::new(Mutex::new(policy_files(&dir)));
    let mut changes = Changes::watch(&dir, RECHECK);
    tokio::spawn(async move {
        loop {
            changes.next().await;
            let (dir, store, last) = (dir.clone(), store.clone(), last.clone());
            let _ = tokio::task::spawn_blocking(move || {
                let now = policy_files(&dir);
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
