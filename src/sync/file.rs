//! The approvals file, watched for changes. An edit takes effect within a second; a file that cannot be read or parsed
//! leaves the last good approvals in place; each refused entry is logged once per change
//! of the file, not at every check.

use crate::approvals::{self, ApprovalStore};
use crate::watch::Changes;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often the file is re-read even without a change notification: a safety net for
/// file systems and mounts whose events are missed.
const RECHECK: Duration = Duration::from_secs(5);

/// Watches an approvals file and keeps `store` in step with it.
pub struct FileSync {
    path: PathBuf,
    store: Arc<ApprovalStore>,
    /// A digest of the content last applied (or refused), to act once per change
    /// without keeping a copy of a file that may hold a hundred thousand approvals.
    last: Option<Result<String, String>>,
}

impl FileSync {
    pub fn new(path: PathBuf, store: Arc<ApprovalStore>) -> Self {
        FileSync {
            path,
            store,
            last: None,
        }
    }

    /// Reads the file and, if it changed, applies it. Returns true when the store now
    /// reflects the file.
    ///
    /// An unchanged file is recognised by its digest, read a block at a time; only a
    /// changed one is read whole and parsed, and what that took is then handed back to the
    /// system (a hundred thousand approvals are a file of some 20 MB, re-checked every
    /// few seconds).
    pub fn reload(&mut self) -> bool {
        let shown = self.path.display().to_string();
        let unreadable = |this: &mut Self, e: std::io::Error| {
            let why = e.to_string();
            if this.last.as_ref().and_then(|l| l.as_ref().err()) != Some(&why) {
                tracing::error!(file = %shown, error = %why, "approvals file unreadable; keeping the last good approvals");
            }
            this.last = Some(Err(why));
            false
        };
        if let Some(Ok(previous)) = &self.last {
            match std::fs::File::open(&self.path).and_then(crate::digest::sha256_hex_of) {
                Ok(digest) if digest == *previous => return true,
                Ok(_) => {}
                Err(e) => return unreadable(self, e),
            }
        }
        let applied = match std::fs::read(&self.path) {
            Ok(bytes) => self.apply(&shown, bytes),
            Err(e) => unreadable(self, e),
        };
        crate::memory::release_freed();
        applied
    }

    /// Applies the file's content, unless it is what was last applied or refused. The
    /// content is dropped once parsed, before the approvals are checked and indexed, so
    /// that the file (some 30 MB at 100 000 approvals) and the index are never both held.
    fn apply(&mut self, shown: &str, bytes: Vec<u8>) -> bool {
        let digest = crate::digest::sha256_hex(&bytes);
        if let Some(Ok(previous)) = &self.last {
            if *previous == digest {
                return true;
            }
        }
        self.last = Some(Ok(digest));
        let parsed = String::from_utf8(bytes)
            .map_err(|_| format!("{shown}: not UTF-8"))
            .and_then(|text| approvals::parse_file(shown, &text).map_err(|e| e.to_string()));
        let file = match parsed {
            Ok(f) => f,
            Err(why) => {
                tracing::error!(file = %shown, error = %why, "approvals file not applied; keeping the last good approvals");
                return self.store.is_loaded();
            }
        };
        for e in &file.errors {
            tracing::warn!(approval = %e.id, reason = %e.reason, "approval entry ignored");
        }
        for name in &file.unlabelled {
            tracing::warn!(file = %shown, configmap = %name, label = approvals::LABEL,
                "ConfigMap ignored: it lacks the label jitgate.dev/approvals: \"true\"");
        }
        let count = file.approvals.len();
        self.store.note_read(count + file.errors.len());
        self.store.publish(file.approvals, file.errors.len(), file.home);
        tracing::info!(file = %shown, approvals = count, ignored = file.errors.len(), "approvals loaded");
        true
    }

    /// Loads the file now, then follows its changes until the task is aborted. Parsing a
    /// large file takes a while, so it runs on the blocking pool, off the request workers.
    pub fn spawn(mut self) -> JoinHandle<()> {
        self.reload();
        let mut changes = Changes::watch(&[&self.path], RECHECK);
        let this = Arc::new(Mutex::new(self));
        tokio::spawn(async move {
            loop {
                changes.next().await;
                let this = this.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    this.lock().unwrap_or_else(|e| e.into_inner()).reload()
                })
                .await;
            }
        })
    }
}
