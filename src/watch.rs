//! Noticing that files changed: the approvals file, the policies directory, the signers
//! file and the serving certificate all use this. A notification from the file system wakes
//! the consumer soon after a change; a periodic tick wakes it anyway, for file systems and
//! mounts whose events are missed. The consumer re-reads and compares: waking costs a read,
//! never a wrong state.
//!
//! Only what can be a change wakes the consumer: not a file being opened or read (the
//! consumer's own re-read would otherwise wake it again, for ever), and, when files rather
//! than a directory are followed, not a change to another file beside them (an audit log
//! in the same directory is written on every request).

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::ffi::OsString;
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

/// What a watch follows: a whole directory, or some files by name in their directories.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Followed {
    Directory,
    Files(BTreeSet<OsString>),
}

impl Followed {
    /// Whether `event` can be a change to what is followed.
    fn changed_by(&self, event: &notify::Event) -> bool {
        // Opening or reading a file changes nothing; closing it after writing may have.
        if matches!(event.kind, EventKind::Access(k) if k != AccessKind::Close(AccessMode::Write)) {
            return false;
        }
        match self {
            Followed::Directory => true,
            // No path: the watcher lost track (a queue overflow) and anything may have changed.
            Followed::Files(names) => {
                event.paths.is_empty()
                    || event.paths.iter().filter_map(|p| p.file_name()).any(|name| {
                        // `..data` and `..<timestamp>`: a Kubernetes volume swapping in new content.
                        names.contains(name) || name.as_encoded_bytes().starts_with(b"..")
                    })
            }
        }
    }
}

/// The directory a watch on `path` watches: a directory itself, a file's directory.
fn watched_directory(path: &Path) -> PathBuf {
    if path.is_dir() {
        return path.to_path_buf();
    }
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Which of the directories that watches on `followed` (files or directories) watch holds
/// `file` too: writing `file` often there (an audit log) wakes that watch every time, for
/// nothing.
pub fn watched_directory_holding(file: &Path, followed: &[&Path]) -> Option<PathBuf> {
    let dir = std::fs::canonicalize(watched_directory(file)).ok()?;
    followed
        .iter()
        .map(|p| watched_directory(p))
        .find(|watched| std::fs::canonicalize(watched).is_ok_and(|w| w == dir))
}

impl Changes {
    /// Watches `paths`: one directory, or files (editors and Kubernetes volume updates
    /// replace files by renaming, which a watch on the file itself would lose, so their
    /// directories are watched and events about other files in them are let go).
    pub fn watch(paths: &[&Path], every: Duration) -> Changes {
        let followed = match paths {
            [dir] if dir.is_dir() => Followed::Directory,
            files => Followed::Files(
                files
                    .iter()
                    .filter_map(|f| f.file_name())
                    .map(OsString::from)
                    .collect(),
            ),
        };
        let dirs: BTreeSet<PathBuf> = paths.iter().map(|p| watched_directory(p)).collect();
        let (tx, rx) = mpsc::channel::<()>(1);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| followed.changed_by(&e)) {
                let _ = tx.try_send(());
            }
        });
        let watcher = watcher.and_then(|mut w| {
            for dir in &dirs {
                w.watch(dir, RecursiveMode::NonRecursive)?;
            }
            Ok(w)
        });
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(dirs = ?dirs, error = %e, every_secs = every.as_secs_f32(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const NEVER: Duration = Duration::from_secs(3600);
    /// Long enough for an inotify event to arrive and settle; a wake that should not come
    /// would come within it.
    const QUIET: Duration = Duration::from_millis(400);

    /// Whether `changes` wakes within `within` (the first tick, which fires at once, is
    /// taken first).
    async fn wakes(changes: &mut Changes, within: Duration) -> bool {
        tokio::time::timeout(within, changes.next()).await.is_ok()
    }

    #[tokio::test]
    async fn reading_the_followed_file_or_writing_beside_it_wakes_nothing_but_a_change_does() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("approvals.yaml");
        std::fs::write(&file, "a: 1\n").unwrap();
        let mut changes = Changes::watch(&[&file], NEVER);
        changes.next().await; // the first tick
        let mut text = String::new();
        std::fs::File::open(&file)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        std::fs::write(dir.path().join("audit.jsonl"), "{}\n").unwrap();
        assert!(
            !wakes(&mut changes, QUIET).await,
            "a read or a neighbour woke the watcher"
        );

        std::fs::write(&file, "a: 2\n").unwrap();
        assert!(
            wakes(&mut changes, Duration::from_secs(10)).await,
            "a write did not wake it"
        );

        // Replaced by a rename, as editors and `sed -i` do.
        let tmp = dir.path().join(".approvals.yaml.tmp");
        std::fs::write(&tmp, "a: 3\n").unwrap();
        assert!(!wakes(&mut changes, QUIET).await, "a temporary file woke it");
        std::fs::rename(&tmp, &file).unwrap();
        assert!(
            wakes(&mut changes, Duration::from_secs(10)).await,
            "a rename onto it did not wake it"
        );
    }

    #[tokio::test]
    async fn a_followed_directory_wakes_for_any_file_in_it_but_not_for_reads() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "a: 1\n").unwrap();
        let mut changes = Changes::watch(&[dir.path()], NEVER);
        changes.next().await;
        std::fs::read(dir.path().join("a.yaml")).unwrap();
        assert!(!wakes(&mut changes, QUIET).await, "a read woke the watcher");
        std::fs::write(dir.path().join("b.yaml"), "b: 1\n").unwrap();
        assert!(
            wakes(&mut changes, Duration::from_secs(10)).await,
            "a new file did not wake it"
        );
    }

    #[test]
    fn an_audit_log_beside_a_followed_file_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let approvals = dir.path().join("approvals.yaml");
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).unwrap();
        let beside = dir.path().join("audit.jsonl");
        let apart = dir.path().join("log/audit.jsonl");
        std::fs::create_dir(dir.path().join("log")).unwrap();
        let followed = [approvals.as_path(), policies.as_path()];
        assert_eq!(
            watched_directory_holding(&beside, &followed).map(|d| std::fs::canonicalize(d).unwrap()),
            Some(std::fs::canonicalize(dir.path()).unwrap())
        );
        assert_eq!(watched_directory_holding(&apart, &followed), None);
        assert!(watched_directory_holding(&policies.join("audit.jsonl"), &followed).is_some());
    }

    #[test]
    fn a_kubernetes_volume_swap_and_a_lost_track_count_as_changes() {
        let followed = Followed::Files(BTreeSet::from([OsString::from("tls.crt")]));
        let event = |kind, path: &str| {
            let e = notify::Event::new(kind);
            if path.is_empty() {
                e
            } else {
                e.add_path(PathBuf::from(path))
            }
        };
        let renamed = EventKind::Modify(notify::event::ModifyKind::Name(notify::event::RenameMode::To));
        assert!(followed.changed_by(&event(renamed, "/etc/certs/..data")));
        assert!(followed.changed_by(&event(renamed, "/etc/certs/tls.crt")));
        assert!(followed.changed_by(&event(EventKind::Other, "")));
        assert!(!followed.changed_by(&event(renamed, "/etc/certs/tls.crt.bak")));
        let opened = EventKind::Access(AccessKind::Open(AccessMode::Any));
        assert!(!followed.changed_by(&event(opened, "/etc/certs/tls.crt")));
        let written = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert!(followed.changed_by(&event(written, "/etc/certs/tls.crt")));
    }
}
