//! Approvals: parsing them from ConfigMaps (one code path for the approvals file and, in
//! a cluster, the watched ConfigMaps), indexing them, and holding the current set.

mod approval;
pub mod break_glass;
mod flat;
mod index;
mod parse;
mod raw;
mod state;
mod write;

use approval::Names;
pub use approval::{Approval, Name, Subject, Text, suggested_key};
pub use index::{ApprovalIndex, LookupKey};
use parse::parse_entry_in;
pub use parse::{EntryError, parse_entry};
pub use state::{
    Approvers, Person, State, approvers, count_approvers, request_deadline, signature_problems,
    signed_by_requester, state_of,
};

use crate::signing::Signers;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The label that marks a ConfigMap as holding approvals.
pub const LABEL: &str = "jitgate.dev/approvals";
/// Where denial messages tell engineers to file a request when nothing else is known.
pub const DEFAULT_NAMESPACE: &str = "jitgate-system";
pub const DEFAULT_CONFIGMAP: &str = "jitgate-approvals";

/// A ConfigMap that engineers add approval requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMapRef {
    pub namespace: String,
    pub name: String,
}

impl Default for ConfigMapRef {
    fn default() -> Self {
        ConfigMapRef {
            namespace: DEFAULT_NAMESPACE.into(),
            name: DEFAULT_CONFIGMAP.into(),
        }
    }
}

/// The approvals of one ConfigMap, and the entries that were refused.
#[derive(Debug, Default)]
pub struct ParsedConfigMap {
    pub approvals: Vec<Arc<Approval>>,
    pub errors: Vec<EntryError>,
}

/// Parses every key of a ConfigMap's `data`; the approval id is `<configmap>/<key>`.
/// One bad entry is refused on its own; the others still count.
pub fn parse_configmap(name: &str, data: &BTreeMap<String, String>) -> ParsedConfigMap {
    let mut out = ParsedConfigMap::default();
    let mut names = Names::default();
    for (key, value) in data {
        match parse_entry_in(&format!("{name}/{key}"), value, &mut names) {
            Ok(a) => out.approvals.push(Arc::new(a)),
            Err(e) => out.errors.push(e),
        }
    }
    out
}

/// True when the ConfigMap carries `jitgate.dev/approvals: "true"`.
pub fn is_labelled(cm: &ConfigMap) -> bool {
    has_label(&cm.metadata, LABEL)
}

/// True when an object's metadata carries `label: "true"` (the approvals label, or the
/// trusted signers' one).
pub fn has_label(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, label: &str) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(label))
        .is_some_and(|v| v == "true")
}

/// Why an approvals file as a whole could not be used (the last good approvals stay).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not valid YAML: {reason}")]
    Syntax { path: String, reason: String },
    #[error("{path}, document {document}: not a ConfigMap: {reason}")]
    NotConfigMap {
        path: String,
        document: usize,
        reason: String,
    },
}

/// What an approvals file holds: its labelled ConfigMaps' approvals, the refused entries,
/// and the names of ConfigMaps left out for want of the label.
#[derive(Debug)]
pub struct FileApprovals {
    pub approvals: Vec<Arc<Approval>>,
    pub errors: Vec<EntryError>,
    pub unlabelled: Vec<String>,
    pub home: ConfigMapRef,
}

/// One document of an approvals file: a ConfigMap whose entries are parsed as they are
/// read, so that a large file's entries are never held as text and as approvals at once.
#[derive(serde::Deserialize)]
struct FileDocument {
    kind: Option<String>,
    #[serde(default)]
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    data: Option<Entries>,
}

/// A ConfigMap's `data`, each value parsed as an approval under its key alone (the
/// ConfigMap's name may come after its data; [`parse_file`] puts it in the ids).
struct Entries(Vec<Result<Approval, EntryError>>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of keys to approval entries")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut names = Names::default();
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let text: String = map.next_value()?;
                    out.push(parse_entry_in(&key, &text, &mut names));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// Parses an approvals file: one or more ConfigMap manifests, exactly as applied to a
/// cluster. Only ConfigMaps labelled `jitgate.dev/approvals: "true"` count, as in a cluster.
pub fn parse_file(path: &str, text: &str) -> Result<FileApprovals, FileError> {
    let documents: Vec<FileDocument> =
        crate::yaml::documents_of(text).map_err(|reason| FileError::Syntax {
            path: path.to_string(),
            reason,
        })?;
    let mut out = FileApprovals {
        approvals: Vec::new(),
        errors: Vec::new(),
        unlabelled: Vec::new(),
        home: ConfigMapRef::default(),
    };
    let mut home = None;
    for (i, doc) in documents.into_iter().enumerate() {
        let not_cm = |reason: String| FileError::NotConfigMap {
            path: path.to_string(),
            document: i + 1,
            reason,
        };
        if doc.kind.as_deref() != Some("ConfigMap") {
            return Err(not_cm("kind must be ConfigMap".into()));
        }
        let name = doc.metadata.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err(not_cm("metadata.name is missing".into()));
        }
        if !has_label(&doc.metadata, LABEL) {
            out.unlabelled.push(name);
            continue;
        }
        home.get_or_insert_with(|| ConfigMapRef {
            namespace: doc
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| DEFAULT_NAMESPACE.into()),
            name: name.clone(),
        });
        for entry in doc.data.map(|d| d.0).unwrap_or_default() {
            match entry {
                Ok(mut a) => {
                    a.id = compact_str::format_compact!("{name}/{}", a.id);
                    out.approvals.push(Arc::new(a));
                }
                Err(mut e) => {
                    e.id = format!("{name}/{}", e.id);
                    out.errors.push(e);
                }
            }
        }
    }
    if let Some(home) = home {
        out.home = home;
    }
    Ok(out)
}

/// One consistent state of the approvals: what decisions read.
#[derive(Debug)]
pub struct Snapshot {
    pub index: ApprovalIndex,
    /// Where engineers should add a request.
    pub home: Arc<ConfigMapRef>,
    /// Every approval, for counting (the index is for lookups).
    pub approvals: Vec<Arc<Approval>>,
    /// Entries refused for not parsing.
    pub invalid: usize,
    /// The trusted signers the approvals' signatures were checked against.
    pub signers: Arc<Signers>,
}

impl Snapshot {
    /// A state without trusted signers: signatures count for nothing.
    pub fn new(approvals: Vec<Arc<Approval>>, invalid: usize, home: ConfigMapRef, now: Timestamp) -> Self {
        Snapshot::signed(approvals, invalid, home, Arc::default(), now)
    }

    /// A state whose approvals' signatures are checked against `signers`, once, here:
    /// an approval with signatures is copied with what each signature is worth
    /// ([`Approval::checked`]); the decision reads that and never verifies.
    pub fn signed(
        approvals: Vec<Arc<Approval>>,
        invalid: usize,
        home: ConfigMapRef,
        signers: Arc<Signers>,
        now: Timestamp,
    ) -> Self {
        let approvals: Vec<Arc<Approval>> = approvals
            .into_iter()
            .map(|a| {
                let checked = a.checked_by(&signers);
                if checked == a.checked {
                    a
                } else {
                    Arc::new(Approval {
                        checked,
                        ..(*a).clone()
                    })
                }
            })
            .collect();
        Snapshot {
            index: ApprovalIndex::build(approvals.iter().cloned(), now),
            home: Arc::new(home),
            approvals,
            invalid,
            signers,
        }
    }
}

/// The current approvals, shared between the request path and the sync task. `None`
/// until the first successful load: decisions then deny rather than act as if nothing
/// were approved.
///
/// A source that can fall silent (the Kubernetes API) gives a staleness budget: past it
/// since the source was last known healthy, the approvals are stale and grant nothing.
#[derive(Debug)]
pub struct ApprovalStore {
    current: RwLock<Option<Arc<Snapshot>>>,
    /// The first snapshot loaded: what a follower of changes starts from, so that none it
    /// starts after is missed.
    first: std::sync::OnceLock<Arc<Snapshot>>,
    epoch: Instant,
    /// Milliseconds after `epoch` when the source was last known healthy.
    healthy_at_ms: AtomicU64,
    max_staleness: Option<Duration>,
    /// What the current snapshot was built from, to build it again when the trusted
    /// signers change; held while a snapshot is built, so that builds do not interleave.
    sources: std::sync::Mutex<Sources>,
}

/// What a snapshot is built from.
#[derive(Debug, Default)]
struct Sources {
    signers: Arc<Signers>,
    /// The approvals as parsed (signatures not checked), the refused count, the home.
    approvals: Option<(Vec<Arc<Approval>>, usize, ConfigMapRef)>,
}

impl Default for ApprovalStore {
    fn default() -> Self {
        ApprovalStore::new(None)
    }
}

/// What decisions may use right now.
#[derive(Debug, Clone)]
pub enum View {
    NotLoaded,
    Current(Arc<Snapshot>),
    /// The source has been silent for longer than the budget.
    Stale {
        snapshot: Arc<Snapshot>,
        silent_for: Duration,
    },
}

impl ApprovalStore {
    /// `max_staleness: None` for a source that never goes stale (a local file).
    pub fn new(max_staleness: Option<Duration>) -> Self {
        ApprovalStore {
            current: RwLock::new(None),
            first: std::sync::OnceLock::new(),
            epoch: Instant::now(),
            healthy_at_ms: AtomicU64::new(0),
            max_staleness,
            sources: Default::default(),
        }
    }

    /// Publishes a new state of the approvals, their signatures checked against the
    /// trusted signers last set.
    pub fn publish(&self, approvals: Vec<Arc<Approval>>, invalid: usize, home: ConfigMapRef) {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let snapshot = Snapshot::signed(
            approvals.clone(),
            invalid,
            home.clone(),
            sources.signers.clone(),
            Timestamp::now(),
        );
        sources.approvals = Some((approvals, invalid, home));
        self.replace(snapshot);
    }

    /// Sets the trusted signers and, if approvals are loaded, publishes them again checked
    /// against these: a removed signer's signatures stop counting at once.
    pub fn set_signers(&self, signers: Signers) {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources.signers = Arc::new(signers);
        if let Some((approvals, invalid, home)) = &sources.approvals {
            let snapshot = Snapshot::signed(
                approvals.clone(),
                *invalid,
                home.clone(),
                sources.signers.clone(),
                Timestamp::now(),
            );
            // Rebuilding is not news from the approvals' source: keep its health as it is.
            let snapshot = Arc::new(snapshot);
            *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(snapshot);
        }
    }

    /// The trusted signers last set.
    pub fn signers(&self) -> Arc<Signers> {
        self.sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .signers
            .clone()
    }

    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the whole state at once. A complete state is a sign of health.
    pub fn replace(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        let _ = self.first.set(snapshot.clone());
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(snapshot);
        self.mark_healthy();
    }

    /// The first snapshot ever loaded, if one was.
    pub fn first(&self) -> Option<Arc<Snapshot>> {
        self.first.get().cloned()
    }

    pub fn is_loaded(&self) -> bool {
        self.current.read().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Records that the source was just heard from in good health.
    pub fn mark_healthy(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.healthy_at_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// How long the source has been silent.
    pub fn silent_for(&self) -> Duration {
        let at = Duration::from_millis(self.healthy_at_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(at)
    }

    pub fn max_staleness(&self) -> Option<Duration> {
        self.max_staleness
    }

    pub fn is_stale(&self) -> bool {
        self.max_staleness.is_some_and(|max| self.silent_for() > max)
    }

    pub fn view(&self) -> View {
        match self.current() {
            None => View::NotLoaded,
            Some(snapshot) => {
                let silent_for = self.silent_for();
                match self.max_staleness {
                    Some(max) if silent_for > max => View::Stale { snapshot, silent_for },
                    _ => View::Current(snapshot),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: team-a
  namespace: ops
  labels: { jitgate.dev/approvals: "true" }
data:
  good: |
    user: alice
    resource: secrets
    namespace: prod
    expiresAt: "2099-01-01T00:00:00Z"
    reason: rotate
    approvedBy: [bob]
  broken: |
    user: alice
    resource: secrets
    colour: blue
---
apiVersion: v1
kind: ConfigMap
metadata: { name: stray }
data:
  x: "user: alice"
"#;

    #[test]
    fn a_file_yields_labelled_approvals_and_names_the_refused_ones() {
        let f = parse_file("a.yaml", FILE).unwrap();
        assert_eq!(f.approvals.len(), 1);
        assert_eq!(f.approvals[0].id, "team-a/good");
        assert_eq!(f.errors.len(), 1);
        assert_eq!(f.errors[0].id, "team-a/broken");
        assert_eq!(f.unlabelled, ["stray"]);
        assert_eq!(
            f.home,
            ConfigMapRef {
                namespace: "ops".into(),
                name: "team-a".into()
            }
        );
    }

    #[test]
    fn entries_are_named_by_their_configmap_wherever_its_name_is_written() {
        let data_first = "data:\n  late: |\n    user: alice\n    resource: secrets\n    namespace: prod\n    \
                          expiresAt: \"2099-01-01T00:00:00Z\"\n    reason: r\nkind: ConfigMap\napiVersion: v1\n\
                          metadata: { name: after, labels: { jitgate.dev/approvals: \"true\" } }\n";
        let f = parse_file("a.yaml", data_first).unwrap();
        assert_eq!(f.approvals.len(), 1);
        assert_eq!(f.approvals[0].id, "after/late");
    }

    #[test]
    fn a_key_given_twice_refuses_the_file() {
        let twice = "kind: ConfigMap\nmetadata: { name: a, labels: { jitgate.dev/approvals: \"true\" } }\n\
                     data:\n  k: |\n    user: alice\n  k: |\n    user: mallory\n";
        assert!(matches!(
            parse_file("a.yaml", twice),
            Err(FileError::Syntax { .. })
        ));
    }

    #[test]
    fn a_broken_file_is_an_error_not_an_empty_set() {
        assert!(matches!(
            parse_file("a.yaml", "data: [oops"),
            Err(FileError::Syntax { .. })
        ));
        let not_cm = "apiVersion: v1\nkind: Secret\nmetadata: { name: s }\n";
        assert!(matches!(
            parse_file("a.yaml", not_cm),
            Err(FileError::NotConfigMap { .. })
        ));
    }

    #[test]
    fn the_store_is_empty_until_the_first_load() {
        let store = ApprovalStore::default();
        assert!(store.current().is_none() && !store.is_loaded());
        store.replace(Snapshot::new(
            Vec::new(),
            0,
            ConfigMapRef::default(),
            Timestamp::now(),
        ));
        assert!(store.is_loaded());
    }

    #[test]
    fn a_silent_source_goes_stale_past_its_budget_and_recovers_when_heard_from() {
        let store = ApprovalStore::new(Some(Duration::from_millis(30)));
        assert!(matches!(store.view(), View::NotLoaded));
        store.replace(Snapshot::new(
            Vec::new(),
            0,
            ConfigMapRef::default(),
            Timestamp::now(),
        ));
        assert!(matches!(store.view(), View::Current(_)));
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            matches!(store.view(), View::Stale { silent_for, .. } if silent_for >= Duration::from_millis(30))
        );
        store.mark_healthy();
        assert!(matches!(store.view(), View::Current(_)));
        let file_mode = ApprovalStore::default();
        file_mode.replace(Snapshot::new(
            Vec::new(),
            0,
            ConfigMapRef::default(),
            Timestamp::now(),
        ));
        std::thread::sleep(Duration::from_millis(5));
        assert!(!file_mode.is_stale());
    }

    #[test]
    fn the_shipped_approvals_manifest_parses_without_errors() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/approvals.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let f = parse_file(path, &text).unwrap();
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        assert!(f.unlabelled.is_empty());
    }
}
