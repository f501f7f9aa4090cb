//! Noticing that files changed: the approvals file, the policies directory, and the
//! serving certificate all use this. A notification from the file system wakes the
//! consumer soon after a change; a periodic tick wakes it anyway, for file systems and
//! mounts whose events are missed. The consumer re-reads and compares: waking costs a read,
//! never a wrong state.

use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// Events arrive in bursts while an editor or the kubelet writes: let them settle.
const SETTLE: Duration = Duration::from_millis(50);

pub struct Changes {
    rx: mpsc::Receiver<()>,
    tick: tokio::time::Interval,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Changes {
    /// Watches `path` (a directory, or a file's directory: editors and Kubernetes volume
    /// updates replace files by renaming, which a watch on the file itself would lose).
    pub fn watch(path: &Path, every: Duration) -> Changes {
        let dir = if path.is_dir() {
            path.to_path_buf()
        } else {
            match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            }
        };
        let (tx, rx) = mpsc::channel::<()>(1);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                let _ = tx.try_send(());
            }
        });
        let watcher = match watcher.and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|()| w)) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, every_secs = every.as_secs_f32(),
                    "cannot watch for changes; re-reading periodically instead");
                None
            }
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Changes {
            rx,
            tick,
            _watcher: watcher,
        }
    }

    /// Waits for the next notification (then lets the burst settle) or tick.
    pub async fn next(&mut self) {
        tokio::select! {
            Some(()) = self.rx.recv() => tokio::time::sleep(SETTLE).await,
            _ = self.tick.tick() => {}
        }
        while self.rx.try_recv().is_ok() {}
    }
}
