//! The approvals file, watched for changes. An edit takes effect within a second; a file that cannot be read or parsed
//! leaves the last good approvals in place; each refused entry is logged once per change
//! of the file, not at every check. An edit parses again only the entries it changed (see
//! [`approvals::parse_file_after`]): the others are the approvals of the file last applied,
//! their signatures not checked again.

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
    /// What the reading last applied made of each entry, for the next reading to take
    /// again the entries it finds unchanged (the same `Arc`s the store holds: only the
    /// digests are extra). A file refused leaves it as it was.
    entries: Arc<approvals::FileEntries>,
}

impl FileSync {
    pub fn new(path: PathBuf, store: Arc<ApprovalStore>) -> Self {
        FileSync {
            path,
            store,
            last: None,
            entries: Arc::default(),
        }
    }

    /// Reads the file and, if it changed, applies it. Returns true when the store now
    /// reflects the file.
    ///
    /// An unchanged file is recognised by its digest, read a block at a time; only a
    /// changed one is parsed, a document at a time (read whole only where a document does
    /// not read on its own, see [`approvals::parse_texts_after`]), its unchanged entries
    /// taken from the reading last applied, not parsed again; what that took is then
    /// handed back to the system (a hundred thousand approvals are a file of some 30 MB,
    /// re-checked every few seconds).
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
        let read = match self.read_a_document_at_a_time(&shown) {
            Ok(Some((digest, parsed))) => {
                Ok(self.apply(&shown, digest, parsed.map_err(|e| e.to_string()), "by document"))
            }
            Ok(None) => self.read_whole(&shown),
            // Changed while read a document at a time (which takes seconds when the file is
            // large): read whole (milliseconds), so that a file rewritten in place over and
            // over is still read at some point.
            Err(e) if ChangedWhileRead::is(&e) => self.read_whole(&shown),
            Err(e) => Err(e),
        };
        let applied = read.unwrap_or_else(|e| unreadable(self, e));
        crate::memory::release_freed();
        applied
    }

    /// Reads the file a document at a time (see [`approvals::parse_texts_after`]), so that
    /// a large file (some 30 MB at 100 000 approvals) is never held whole: what it makes
    /// and the digest of exactly what was read, or `None` where the file must be read
    /// whole.
    fn read_a_document_at_a_time(
        &self,
        shown: &str,
    ) -> std::io::Result<Option<(String, Result<approvals::FileApprovals, approvals::FileError>)>> {
        read_steadily(&self.path, |file| {
            let mut file = crate::digest::Sha256Reader::new(file);
            let texts =
                crate::yaml::DocumentTexts::new(std::io::BufReader::with_capacity(64 * 1024, &mut file));
            match approvals::parse_texts_after(shown, texts, Arc::clone(&self.entries)) {
                Some(Err(approvals::FileError::Io { source, .. })) => Err(source),
                Some(parsed) => Ok(Some((file.hex(), parsed))),
                None => Ok(None),
            }
        })
    }

    /// Reads the file whole (see [`read_steadily`]) and applies it.
    fn read_whole(&mut self, shown: &str) -> std::io::Result<bool> {
        let bytes = read_steadily(&self.path, |mut file| {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut file, &mut bytes).map(|_| bytes)
        })?;
        Ok(self.apply_whole(shown, bytes))
    }

    /// Applies the file's content read whole, unless it is what was last applied or
    /// refused. The content is dropped once parsed, before the approvals are checked and
    /// indexed, so that the file and the index are never both held.
    fn apply_whole(&mut self, shown: &str, bytes: Vec<u8>) -> bool {
        let digest = crate::digest::sha256_hex(&bytes);
        if self.last_is(&digest) {
            return true;
        }
        let parsed = String::from_utf8(bytes)
            .map_err(|_| format!("{shown}: not UTF-8"))
            .and_then(|text| {
                approvals::parse_file_after(shown, &text, Arc::clone(&self.entries))
                    .map_err(|e| e.to_string())
            });
        self.apply(shown, digest, parsed, "whole")
    }

    /// Whether `digest` is that of the content last applied (or refused).
    fn last_is(&self, digest: &str) -> bool {
        matches!(&self.last, Some(Ok(previous)) if previous == digest)
    }

    /// Applies what the content of digest `digest` was read as (`how`: "by document" or
    /// "whole", as the log line says), unless that content is what was last applied or
    /// refused.
    fn apply(
        &mut self,
        shown: &str,
        digest: String,
        parsed: Result<approvals::FileApprovals, String>,
        how: &'static str,
    ) -> bool {
        if self.last_is(&digest) {
            return true;
        }
        self.last = Some(Ok(digest));
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
        self.store.note_read(file.read);
        // What parsing freed goes back to the system before the store checks and indexes
        // the approvals, the peak of a load (see `crate::memory`).
        crate::memory::release_freed();
        let (entries, invalid) = (file.entries, file.errors.len());
        self.store
            .publish_then(file.approvals, invalid, file.home, |published| {
                self.entries = Arc::new(entries.published(published));
            });
        tracing::info!(file = %shown, approvals = count, ignored = invalid, read = how, "approvals loaded");
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

/// `read` of the file at `path`, opened once, unless the file changed while it was read
/// (its length or times of change, on the open file): a file written in place, not
/// written aside and renamed into place, can be read half old and half new (a revoked
/// approval kept beside a new one), above all when a large one is read a document at a
/// time, which takes seconds. Such a reading is a [`ChangedWhileRead`] error.
fn read_steadily<T>(
    path: &std::path::Path,
    read: impl FnOnce(&std::fs::File) -> std::io::Result<T>,
) -> std::io::Result<T> {
    use std::os::unix::fs::MetadataExt;
    let file = std::fs::File::open(path)?;
    let stamp = |m: std::fs::Metadata| (m.len(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec());
    let before = stamp(file.metadata()?);
    let made = read(&file)?;
    #[cfg(test)]
    tests::WHILE_READ.with_borrow_mut(|change| change.as_mut().map(|change| change()));
    if stamp(file.metadata()?) != before {
        return Err(std::io::Error::other(ChangedWhileRead));
    }
    Ok(made)
}

/// The approvals file changed while it was read.
#[derive(Debug, thiserror::Error)]
#[error(
    "it changed while it was read (write it aside and rename it into place); it is read again at the next check"
)]
struct ChangedWhileRead;

impl ChangedWhileRead {
    fn is(e: &std::io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<ChangedWhileRead>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approvals::{Subject, parse_entry};
    use crate::signing::{Checked, Signers, sign};

    fn grant(user: &str) -> String {
        format!(
            "user: {user}\nresource: secrets\nnamespace: prod\nexpiresAt: \"2099-01-01T00:00:00Z\"\nreason: r\n"
        )
    }

    /// An approvals file of one labelled ConfigMap `cm` with these entries.
    fn file_of(entries: &[(&str, &str)]) -> String {
        let mut file = String::from(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  labels: {jitgate.dev/approvals: \"true\"}\ndata:\n",
        );
        for (key, text) in entries {
            file += &format!("  {key}: {}\n", serde_json::to_string(text).unwrap());
        }
        file
    }

    /// A store kept in step with `approvals.yaml` in a directory of its own (removed when
    /// the first is dropped); the file is not written yet.
    fn synced() -> (tempfile::TempDir, PathBuf, Arc<ApprovalStore>, FileSync) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("approvals.yaml");
        let store = Arc::new(ApprovalStore::default());
        let sync = FileSync::new(path.clone(), store.clone());
        (dir, path, store, sync)
    }

    /// Each approval's id and subject, as the store holds them now.
    fn held(store: &ApprovalStore) -> Vec<(String, Subject)> {
        let snapshot = store.current().unwrap();
        let mut held: Vec<_> = snapshot
            .approvals
            .iter()
            .map(|a| (a.id.to_string(), a.subject.clone()))
            .collect();
        held.sort_by(|a, b| a.0.cmp(&b.0));
        held
    }

    fn user(u: &str) -> Subject {
        Subject::User(u.into())
    }

    thread_local! {
        /// What happens to the file while it is read, on this thread (a file being
        /// written in place as jitgate reads it).
        pub(super) static WHILE_READ: std::cell::RefCell<Option<Box<dyn FnMut()>>> = std::cell::RefCell::new(None);
    }

    /// A file written in place while it is read is never applied as read: read a document
    /// at a time, the reading is thrown away and the file read again whole (here the
    /// second reading finds it at rest); when every reading finds it changing, the
    /// approvals last applied stand, the one revoked since among them, until one does.
    /// Also for the whole reading (an alias sends the file there).
    #[test]
    fn a_file_that_changes_while_it_is_read_is_not_applied_as_read() {
        let (_dir, path, store, mut sync) = synced();
        let (alice, bob, carol) = (grant("alice"), grant("bob"), grant("carol"));
        let held_users = |store: &ApprovalStore| held(store).into_iter().map(|(_, u)| u).collect::<Vec<_>>();
        std::fs::write(&path, file_of(&[("a", &alice), ("b", &bob)])).unwrap();
        assert!(sync.reload());
        // Bob's approval revoked, Carol's in its place.
        let revoked = file_of(&[("a", &alice), ("b", &carol)]);
        for (how, revoked) in [
            ("by document", revoked.clone()),
            (
                "whole",
                revoked.replacen("name: cm", "name: &n cm", 1) + "  c: *n\n",
            ),
        ] {
            // In place: the same file, truncated and written again, the first `times`
            // times it is read (a comment longer each time, so that its length tells on any
            // file system).
            let rewritten = |times: usize| -> Box<dyn FnMut()> {
                let (path, revoked, mut n) = (path.clone(), revoked.clone(), 0);
                Box::new(move || {
                    if n < times {
                        std::fs::write(&path, format!("{revoked}#{}\n", "-".repeat(n))).unwrap();
                        n += 1;
                    }
                })
            };
            std::fs::write(&path, file_of(&[("a", &alice), ("b", &bob)])).unwrap();
            assert!(sync.reload());
            std::fs::write(&path, &revoked).unwrap();
            // Every reading finds the file changing.
            WHILE_READ.set(Some(rewritten(usize::MAX)));
            assert!(!sync.reload(), "{how}: a file read while it changed was applied");
            assert_eq!(held_users(&store), [user("alice"), user("bob")], "{how}");
            // One reading finds it changing, the next at rest.
            WHILE_READ.set(Some(rewritten(1)));
            assert!(sync.reload(), "{how}");
            assert_eq!(held_users(&store), [user("alice"), user("carol")], "{how}");
            WHILE_READ.set(None);
        }
    }

    /// A file that fails to parse keeps the approvals last applied, and what the next good
    /// edit reads is measured against those: it reads again only what it changed from
    /// them, and the store then holds exactly what it says.
    #[test]
    fn a_refused_file_keeps_the_last_reading_for_the_next_edit() {
        let (_dir, path, store, mut sync) = synced();
        let (a, b, c) = (grant("alice"), grant("bob"), grant("carol"));
        std::fs::write(&path, file_of(&[("a", &a), ("b", &b), ("c", &c)])).unwrap();
        assert!(sync.reload());
        assert_eq!(store.entries_read(), 3);
        // Valid YAML whose second document is not a ConfigMap, with b changed in the
        // first: refused whole, and what it read of its first document is not kept.
        let (mallory, dave) = (grant("mallory"), grant("dave"));
        let refused =
            file_of(&[("a", &a), ("b", &mallory), ("c", &c)]) + "---\nkind: Secret\nmetadata: {name: s}\n";
        std::fs::write(&path, refused).unwrap();
        assert!(sync.reload(), "the last good approvals still stand");
        std::fs::write(&path, "data: [unclosed\n").unwrap();
        assert!(sync.reload());
        assert_eq!(
            held(&store),
            [
                ("cm/a".into(), user("alice")),
                ("cm/b".into(), user("bob")),
                ("cm/c".into(), user("carol"))
            ]
        );
        let before = store.entries_read();
        // The next good edit changes c from the last applied file (b as it was there).
        std::fs::write(&path, file_of(&[("a", &a), ("b", &b), ("c", &dave)])).unwrap();
        assert!(sync.reload());
        assert_eq!(store.entries_read() - before, 1);
        assert_eq!(
            held(&store),
            [
                ("cm/a".into(), user("alice")),
                ("cm/b".into(), user("bob")),
                ("cm/c".into(), user("dave"))
            ]
        );
        // And b as the refused file had it is read, not taken from that refused reading.
        std::fs::write(&path, file_of(&[("a", &a), ("b", &mallory), ("c", &dave)])).unwrap();
        assert!(sync.reload());
        assert_eq!(store.entries_read() - before, 2);
        assert_eq!(held(&store)[1], ("cm/b".into(), user("mallory")));
    }

    /// A signed entry that an edit of the file leaves as it was keeps what its signature
    /// was found worth, without checking it again; one that changes is checked.
    #[test]
    fn an_unchanged_signed_entry_is_not_checked_again() {
        let (binding, key, data) = crate::signing::trusted_for_tests("carol");
        let signed = |k: &str, user: &str| {
            let mut a = parse_entry(&format!("cm/{k}"), &grant(user)).unwrap();
            let s = sign(&a.terms(), &binding, "carol", &key, None);
            a.rare.make_mut().signatures.push(s);
            a.to_yaml()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("approvals.yaml");
        let store = Arc::new(ApprovalStore::default());
        store.set_signers(Signers::from_data(binding.clone(), &data).0);
        let mut sync = FileSync::new(path.clone(), store.clone());
        let (s, plain) = (signed("s", "alice"), grant("bob"));
        std::fs::write(
            &path,
            file_of(&[("s", &s), ("t", &signed("t", "erin")), ("p", &plain)]),
        )
        .unwrap();
        assert!(sync.reload());
        assert_eq!(store.signatures_checked(), 2);
        let trusted = |store: &ApprovalStore| {
            let snapshot = store.current().unwrap();
            let mut by_id: Vec<(String, bool)> = snapshot
                .approvals
                .iter()
                .map(|a| {
                    (
                        a.id.to_string(),
                        matches!(a.rare.checked[..], [Checked::Trusted(_)]),
                    )
                })
                .collect();
            by_id.sort();
            by_id
        };
        // An unsigned entry changes, and t is signed anew: only t is checked.
        std::fs::write(
            &path,
            file_of(&[("s", &s), ("t", &signed("t", "frank")), ("p", &grant("dave"))]),
        )
        .unwrap();
        assert!(sync.reload());
        assert_eq!(store.signatures_checked(), 3);
        assert_eq!(
            trusted(&store),
            [
                ("cm/p".into(), false),
                ("cm/s".into(), true),
                ("cm/t".into(), true)
            ]
        );
        // No signers: all checked afresh (into copies, as the store holds what it was
        // given); then edits of p alone check nothing more, two in a row.
        store.set_signers(Signers::none(binding.clone()));
        assert_eq!(store.signatures_checked(), 5);
        for dave in ["dave", "dave2", "dave3"] {
            std::fs::write(
                &path,
                file_of(&[("s", &s), ("t", &signed("t", "frank")), ("p", &grant(dave))]),
            )
            .unwrap();
            assert!(sync.reload());
            assert_eq!(store.signatures_checked(), 5, "{dave}");
        }
        assert!(trusted(&store).iter().all(|(_, trusted)| !trusted));
        store.set_signers(Signers::from_data(binding.clone(), &data).0);
        assert_eq!(store.signatures_checked(), 7);
        // s moved to another key: another id, so checked again (and its signature, bound
        // to the id it was made for, is no longer trusted).
        std::fs::write(&path, file_of(&[("s2", &s), ("p", &grant("dave"))])).unwrap();
        assert!(sync.reload());
        assert_eq!(store.signatures_checked(), 8);
        assert_eq!(trusted(&store), [("cm/p".into(), false), ("cm/s2".into(), false)]);
    }

    /// A file is read a document at a time, and what is recorded as applied is the digest
    /// of the file as read, so that the next check finds it unchanged without parsing it;
    /// a file whose documents do not read one by one (directives for the second, after
    /// the first's end) is read whole, and applied the same.
    #[test]
    fn a_file_read_by_document_or_whole_is_known_by_the_digest_of_what_was_read() {
        let (_dir, path, store, mut sync) = synced();
        let second = file_of(&[("b", &grant("bob"))]).replace("name: cm", "name: cm2");
        let by_document = format!("{}---\n{second}", file_of(&[("a", &grant("alice"))]));
        let whole = by_document.replace("---\n", "...\n%YAML 1.2\n---\n");
        let texts = |f: &str| crate::yaml::DocumentTexts::new(f.as_bytes()).collect::<Vec<_>>();
        assert!(approvals::parse_texts_after("f", texts(&by_document), Arc::default()).is_some());
        assert!(approvals::parse_texts_after("f", texts(&whole), Arc::default()).is_none());
        for file in [by_document, whole] {
            std::fs::write(&path, &file).unwrap();
            assert!(sync.reload());
            let digest = crate::digest::sha256_hex(file.as_bytes());
            assert!(sync.last_is(&digest), "{file}");
            assert_eq!(
                held(&store),
                [("cm/a".into(), user("alice")), ("cm2/b".into(), user("bob"))]
            );
        }
    }

    /// A small deterministic generator (xorshift64*), for the model test.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        }
    }

    /// One ConfigMap document: its name, label, entries (or `data: null`), its keys in one
    /// of three orders (metadata first, kubectl's data first, kind last).
    fn document(rng: &mut Rng, texts: &[String]) -> String {
        let name = ["a", "b"][rng.below(2) as usize];
        let labels = if rng.below(5) == 0 {
            "{}"
        } else {
            "{jitgate.dev/approvals: \"true\"}"
        };
        let metadata = format!("metadata:\n  name: {name}\n  labels: {labels}\n");
        let data = if rng.below(8) == 0 {
            "data: null\n".to_string()
        } else {
            let mut data = String::from("data:\n");
            for key in ["k1", "k2", "k3"] {
                if rng.below(3) != 0 {
                    let text = &texts[rng.below(texts.len() as u64) as usize];
                    data += &format!("  {key}: {}\n", serde_json::to_string(text).unwrap());
                }
            }
            if data == "data:\n" {
                "data: {}\n".into()
            } else {
                data
            }
        };
        let (api, kind) = ("apiVersion: v1\n", "kind: ConfigMap\n");
        match rng.below(3) {
            0 => format!("{api}{kind}{metadata}{data}"),
            1 => format!("{api}{data}{kind}{metadata}"),
            _ => format!("{data}{metadata}{api}{kind}"),
        }
    }

    /// The review's model: over many sequences of file versions (one to three documents,
    /// names repeated, labelled or not, in any of three orders, `data: null`, plain,
    /// refused and signed texts, now and then a broken version), a `FileSync` that takes
    /// what it can from the reading before holds, after each version, exactly what a
    /// store given a fresh parse of the last good version holds: the same approvals in
    /// the same order (ids, contents and what their signatures were found worth), and the
    /// same count of refused entries.
    #[test]
    fn a_file_sync_holds_what_a_fresh_parse_of_each_version_gives() {
        let (binding, key, data) = crate::signing::trusted_for_tests("carol");
        let signers = || Signers::from_data(binding.clone(), &data).0;
        let mut texts = vec![grant("alice"), grant("bob"), "user: x\n".to_string()];
        // Signed for a/k1 and b/k2 only: under any other id, not trusted.
        for id in ["a/k1", "b/k2"] {
            let mut a = parse_entry(id, &grant("carol")).unwrap();
            let s = sign(&a.terms(), &binding, "carol", &key, None);
            a.rare.make_mut().signatures.push(s);
            texts.push(a.to_yaml());
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("approvals.yaml");
        let (mut saved, mut good_versions) = (0, 0);
        for seed in 1..=60u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let store = Arc::new(ApprovalStore::default());
            store.set_signers(signers());
            let mut sync = FileSync::new(path.clone(), store.clone());
            let mut last_good: Option<String> = None;
            let mut docs: Vec<String> = Vec::new();
            for version in 0..12 {
                // Half the time an edit of one document of the version before; else anew.
                if docs.is_empty() || rng.below(2) == 0 {
                    docs = (0..=rng.below(3)).map(|_| document(&mut rng, &texts)).collect();
                } else {
                    let at = rng.below(docs.len() as u64) as usize;
                    docs[at] = document(&mut rng, &texts);
                }
                let mut docs = docs.clone();
                if rng.below(8) == 0 {
                    let broken = ["kind: Secret\nmetadata: {name: s}\n", "data: [unclosed\n"];
                    docs.push(broken[rng.below(2) as usize].into());
                }
                let file = docs.join("---\n");
                std::fs::write(&path, &file).unwrap();
                let before = store.entries_read();
                let applied = sync.reload();
                if approvals::parse_file("f.yaml", &file).is_ok() {
                    last_good = Some(file.clone());
                    good_versions += 1;
                }
                let Some(good) = &last_good else {
                    assert!(!applied && store.current().is_none(), "seed {seed} v{version}");
                    continue;
                };
                let fresh_file = approvals::parse_file("f.yaml", good).unwrap();
                if last_good.as_deref() == Some(file.as_str()) {
                    let all = (fresh_file.approvals.len() + fresh_file.errors.len()) as u64;
                    saved += all - (store.entries_read() - before);
                }
                let fresh = ApprovalStore::default();
                fresh.set_signers(signers());
                fresh.publish(fresh_file.approvals, fresh_file.errors.len(), fresh_file.home);
                let (ours, theirs) = (store.current().unwrap(), fresh.current().unwrap());
                let shown = |s: &approvals::Snapshot| {
                    s.approvals.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>()
                };
                assert_eq!(shown(&ours), shown(&theirs), "seed {seed} v{version}:\n{good}");
                assert_eq!(ours.invalid, theirs.invalid, "seed {seed} v{version}:\n{good}");
                assert_eq!(ours.home, theirs.home, "seed {seed} v{version}");
            }
        }
        // The model exercised what it is for: many good versions, many entries taken.
        assert!(good_versions > 400, "{good_versions}");
        assert!(saved > 300, "{saved}");
    }
}
