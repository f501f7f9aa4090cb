//! Approvals: reading them from ConfigMaps (`configmaps`: one code path for the approvals
//! file and, in a cluster, the watched ConfigMaps), indexing them, and holding the current
//! set (here: [`Snapshot`], [`ApprovalStore`]).

mod approval;
pub mod break_glass;
mod configmaps;
mod flat;
mod index;
mod parse;
mod raw;
mod state;
mod write;

pub use approval::{Approval, Name, Subject, Text, suggested_key};
pub use configmaps::{
    ConfigMapRef, DEFAULT_CONFIGMAP, DEFAULT_NAMESPACE, FileApprovals, FileError, LABEL, ParsedConfigMap,
    has_label, is_labelled, parse_configmap, parse_configmap_after, parse_file,
};
pub use index::{ApprovalIndex, Candidates, LookupKey};
pub use parse::{EntryError, parse_entry};
pub use state::{
    Approvers, Person, State, approvers, count_approvers, request_deadline, signature_problems,
    signed_by_requester, state_of,
};

use crate::signing::Signers;
use jiff::Timestamp;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

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
    /// How many entries the source has read for this store since it started (`/metrics`):
    /// an edit of a ConfigMap reads only the entries whose text changed.
    entries_read: AtomicU64,
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
            entries_read: AtomicU64::new(0),
        }
    }

    /// The source read `n` more entries.
    pub fn note_read(&self, n: usize) {
        self.entries_read
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// How many entries the source has read since this store was made.
    pub fn entries_read(&self) -> u64 {
        self.entries_read.load(Ordering::Relaxed)
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
}
