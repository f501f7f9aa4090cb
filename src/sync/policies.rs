//! Following the policy directory. In a cluster it is a mounted ConfigMap: an edit takes
//! effect without a restart, and a bad edit keeps the last good policies and is logged
//! (once per change).

use crate::policy::{PolicyError, PolicySet, PolicyStore, parse_policies};
use crate::watch::Changes;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often the directory is re-read without a change notification.
const RECHECK: Duration = Duration::from_secs(5);

/// The `*.yaml` / `*.yml` files in `dir`, sorted by name (not recursive).
fn yaml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    Ok(files)
}

/// Loads every policy file in `dir`.
pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyError> {
    let files = yaml_files(dir).map_err(|source| PolicyError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut policies = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|source| PolicyError::Io {
            path: file.clone(),
            source,
        })?;
        policies.extend(parse_policies(&text, &file.display().to_string())?);
    }
    if policies.is_empty() {
        return Err(PolicyError::Empty(dir.to_path_buf()));
    }
    PolicySet::new(policies)
}

/// The policy files' names and contents, to act once per change.
fn policy_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    yaml_files(dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| std::fs::read(&p).ok().map(|bytes| (p, bytes)))
        .collect()
}

/// Follows the policy directory until the task is aborted, replacing the store's policies
/// when the files change and load.
pub fn spawn_reload(dir: PathBuf, store: Arc<PolicyStore>) -> JoinHandle<()> {
    let last = Arc::new(Mutex::new(policy_files(&dir)));
    let mut changes = Changes::watch(&[&dir], RECHECK);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_policies_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let set = load_dir(&dir).unwrap();
        assert!(set.len() >= 3);
    }

    #[test]
    fn an_empty_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load_dir(dir.path()), Err(PolicyError::Empty(_))));
    }
}
