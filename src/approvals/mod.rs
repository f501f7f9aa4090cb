//! Approvals: reading them from ConfigMaps (`configmaps`: in a cluster, the watched
//! ConfigMaps; `file`: an approvals file, with the same entry reader), indexing them, and holding the current
//! set (here: [`Snapshot`], [`ApprovalStore`]).

mod approval;
pub mod break_glass;
mod configmaps;
mod file;
mod index;
mod parallel;
mod parse;
mod raw;
mod state;
mod write;

pub use approval::{Approval, Name, Rare, RareTerms, Subject, Text, suggested_key};
pub use configmaps::{
    ConfigMapRef, DEFAULT_CONFIGMAP, DEFAULT_NAMESPACE, LABEL, ParsedConfigMap, has_label, is_labelled,
    parse_configmap, parse_configmap_after,
};
pub use file::{
    FileApprovals, FileEntries, FileError, ReadEntries, parse_file, parse_file_after, parse_texts_after,
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
    /// Every approval, for counting (the index is for lookups); the store keeps the same
    /// list to check the next build against.
    pub approvals: Arc<[Arc<Approval>]>,
    /// Entries refused for not parsing.
    pub invalid: usize,
    /// The trusted signers the approvals' signatures were checked against.
    pub signers: Arc<Signers>,
    /// When it was made: news of what it no longer holds is judged as of then.
    pub made_at: Timestamp,
}

impl Snapshot {
    /// A state without trusted signers: signatures count for nothing.
    pub fn new(approvals: Vec<Arc<Approval>>, invalid: usize, home: ConfigMapRef, now: Timestamp) -> Self {
        Snapshot::signed(approvals, invalid, home, Arc::default(), now)
    }

    /// A state whose approvals' signatures are checked against `signers`, once, here:
    /// each approval with signatures is given what each signature is worth
    /// ([`RareTerms::checked`]; in place, or in a copy when it is held elsewhere); the
    /// decision reads that and never verifies.
    pub fn signed(
        approvals: Vec<Arc<Approval>>,
        invalid: usize,
        home: ConfigMapRef,
        signers: Arc<Signers>,
        now: Timestamp,
    ) -> Self {
        let (approvals, _, _) = split(check_signatures(approvals, &signers, |_| None));
        Snapshot::of_checked(approvals, invalid, home, signers, now)
    }

    /// A state of approvals whose signatures are already checked against `signers`.
    fn of_checked(
        approvals: Arc<[Arc<Approval>]>,
        invalid: usize,
        home: ConfigMapRef,
        signers: Arc<Signers>,
        now: Timestamp,
    ) -> Self {
        Snapshot {
            index: ApprovalIndex::build(&approvals, now),
            home: Arc::new(home),
            approvals,
            invalid,
            signers,
            made_at: now,
        }
    }
}

/// What checking the signatures of one approval gave.
struct Checking {
    /// The approval with what each of its signatures is worth.
    checked: Arc<Approval>,
    /// The approval as given, to be given again (the same `Arc` as `checked` when it was
    /// checked in place).
    given: Arc<Approval>,
    /// Its signatures were checked here (not taken from `earlier`, and it has some).
    counted: bool,
}

/// Each approval with what each of its signatures is worth against `signers`
/// ([`Approval::checked_by`]), in order, the checks spread over the cores; an approval
/// without signatures is kept as it is. `earlier` gives an approval's copy already
/// checked against these same signers, when there is one: it is taken as it is, not
/// checked again. An approval held nowhere else is checked in place rather than copied.
fn check_signatures(
    approvals: Vec<Arc<Approval>>,
    signers: &Signers,
    earlier: impl Fn(&Arc<Approval>) -> Option<Arc<Approval>> + Sync,
) -> Vec<Checking> {
    // What the checks below verify, verified first many at a time, on all cores: a
    // signature shown valid there is a remembered verification below.
    let to_verify: Vec<&Arc<Approval>> = approvals
        .iter()
        .filter(|a| !a.rare.signatures.is_empty() && earlier(a).is_none())
        .collect();
    parallel::for_each_run(&to_verify, |run| {
        signers.verify_ahead(run.iter().map(|a| (a.terms(), &a.rare.signatures[..])));
    });
    parallel::map_in_order(approvals, |_: &mut (), mut given| {
        let kept = |given: Arc<Approval>, counted| Checking {
            checked: Arc::clone(&given),
            given,
            counted,
        };
        if let Some(checked) = earlier(&given) {
            return Checking {
                checked,
                given,
                counted: false,
            };
        }
        if given.rare.signatures.is_empty() && given.rare.checked.is_empty() {
            return kept(given, false);
        }
        let checked = given.checked_by(signers);
        if checked == given.rare.checked {
            return kept(given, true);
        }
        if let Some(only) = Arc::get_mut(&mut given) {
            only.rare.make_mut().checked = checked;
            return kept(given, true);
        }
        let mut copy = (*given).clone();
        copy.rare.make_mut().checked = checked;
        Checking {
            checked: Arc::new(copy),
            given,
            counted: true,
        }
    })
    .collect()
}

/// The checked approvals (one shared list, made at its size), the given ones unless each
/// is the very one checked (checked in place, taken from the last build, or unsigned),
/// and how many were checked.
fn split(checkings: Vec<Checking>) -> (Arc<[Arc<Approval>]>, GivenList, usize) {
    let counted = checkings.iter().filter(|c| c.counted).count();
    let checked = checkings.iter().map(|c| Arc::clone(&c.checked)).collect();
    let in_place = checkings.iter().all(|c| Arc::ptr_eq(&c.checked, &c.given));
    let given = (!in_place).then(|| checkings.into_iter().map(|c| c.given).collect());
    (checked, given, counted)
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
    /// How many approvals have had their signatures checked for this store (each check
    /// of an approval's signatures counts one, whatever their number).
    signatures_checked: AtomicU64,
}

/// The approvals as given, or `None` where they are the very ones checked (see
/// `Sources::approvals`).
type GivenList = Option<Vec<Arc<Approval>>>;

/// What a snapshot is built from.
#[derive(Debug, Default)]
struct Sources {
    signers: Arc<Signers>,
    /// The approvals as given (those checked in place are the very ones in `checked`;
    /// the others, as parsed), the refused count, the home. `None` for the list when
    /// every one is the very one checked (checked in place, unchanged since the last
    /// build, or unsigned), as file and cluster mode give them: then they are `checked`,
    /// and a hundred thousand approvals do not hold a second list of 800 kB.
    approvals: Option<(GivenList, usize, ConfigMapRef)>,
    /// The same approvals, in the same order, with their signatures checked against
    /// `signers`: what the next build takes again for the approvals it is given again
    /// (the very same `Arc`), so that an edit checks only the entries it changed.
    checked: Arc<[Arc<Approval>]>,
}

impl Sources {
    /// The approvals as last given, if any were.
    fn given(&self) -> Option<&[Arc<Approval>]> {
        let (given, ..) = self.approvals.as_ref()?;
        Some(given.as_deref().unwrap_or(&self.checked))
    }
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
            signatures_checked: AtomicU64::new(0),
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

    /// How many approvals have had their signatures checked since this store was made: a
    /// publish checks only the approvals it was not given (the same `Arc`) last time, a
    /// change of the trusted signers checks them all.
    pub fn signatures_checked(&self) -> u64 {
        self.signatures_checked.load(Ordering::Relaxed)
    }

    /// Publishes a new state of the approvals, their signatures checked against the
    /// trusted signers last set. An approval given last time too (the same `Arc`, as a
    /// ConfigMap's unchanged entries are) keeps what its signatures were found worth then:
    /// the signers have not changed since, or that would have been checked again.
    pub fn publish(&self, approvals: Vec<Arc<Approval>>, invalid: usize, home: ConfigMapRef) {
        self.publish_then(approvals, invalid, home, |_| {});
    }

    /// [`ApprovalStore::publish`], then `then` of the approvals as given (the same `Arc`s,
    /// in order): what a source keeps to give again those it finds unchanged next time,
    /// without holding them while they are checked (which would make the store copy each
    /// one it could have checked in place).
    pub fn publish_then(
        &self,
        approvals: Vec<Arc<Approval>>,
        invalid: usize,
        home: ConfigMapRef,
        then: impl FnOnce(&[Arc<Approval>]),
    ) {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        // Keyed by address: the approvals of the last build are held in `sources` until
        // this one is done, so an address here is that very approval's.
        let earlier: std::collections::HashMap<usize, &Arc<Approval>> = match sources.given() {
            Some(parsed) if parsed.len() == sources.checked.len() => parsed
                .iter()
                .map(|a| Arc::as_ptr(a).addr())
                .zip(sources.checked.iter())
                .collect(),
            _ => Default::default(),
        };
        let (checked, approvals, count) = split(check_signatures(approvals, &sources.signers, |a| {
            earlier.get(&Arc::as_ptr(a).addr()).map(|c| Arc::clone(c))
        }));
        drop(earlier);
        self.note_checked(count);
        let snapshot = Snapshot::of_checked(
            Arc::clone(&checked),
            invalid,
            home.clone(),
            sources.signers.clone(),
            Timestamp::now(),
        );
        then(approvals.as_deref().unwrap_or(&checked));
        sources.approvals = Some((approvals, invalid, home));
        sources.checked = checked;
        self.replace(snapshot);
    }

    fn note_checked(&self, n: usize) {
        self.signatures_checked
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Sets the trusted signers and, if approvals are loaded, publishes them again checked
    /// against these: a removed signer's signatures stop counting at once.
    pub fn set_signers(&self, signers: Signers) {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let sources = &mut *sources;
        sources.signers = Arc::new(signers);
        let given = sources.given().map(<[_]>::to_vec);
        if let (Some((kept, invalid, home)), Some(given)) = (&mut sources.approvals, given) {
            // Checked afresh from the approvals as given (what each signature was worth
            // before does not count): never in place, as `sources` holds them.
            let (checked, given, count) = split(check_signatures(given, &sources.signers, |_| None));
            self.note_checked(count);
            *kept = given;
            let snapshot = Snapshot::of_checked(
                Arc::clone(&checked),
                *invalid,
                home.clone(),
                sources.signers.clone(),
                Timestamp::now(),
            );
            sources.checked = checked;
            // Rebuilding is not news from the approvals' source: keep its health as it is.
            let snapshot = Arc::new(snapshot);
            *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(snapshot);
        } else {
            sources.checked = Default::default();
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

    /// A publish checks the signatures of the approvals it was not given last time, and
    /// only those; a change of signers checks them all again; what each is worth is the
    /// same as checking all of them afresh.
    #[test]
    fn a_publish_checks_only_the_signatures_of_approvals_it_has_not_seen() {
        use crate::signing::{Checked, sign};
        let (binding, key, data) = crate::signing::trusted_for_tests("carol");
        let signers = Signers::from_data(binding.clone(), &data).0;
        let signed = |user: &str| {
            let text = format!(
                "user: {user}\nresource: secrets\nnamespace: prod\nexpiresAt: \"2099-01-01T00:00:00Z\"\nreason: r\n"
            );
            let mut a = parse_entry(&format!("cm/{user}"), &text).unwrap();
            let s = sign(&a.terms(), &binding, "carol", &key, None);
            a.rare.make_mut().signatures.push(s);
            Arc::new(a)
        };
        let trusted = |store: &ApprovalStore| {
            let snapshot = store.current().unwrap();
            snapshot
                .approvals
                .iter()
                .map(|a| matches!(a.rare.checked[..], [Checked::Trusted(_)]))
                .collect::<Vec<_>>()
        };
        let store = ApprovalStore::default();
        store.set_signers(signers.clone());
        let (a, b) = (signed("alice"), signed("bob"));
        store.publish(vec![a.clone(), b.clone()], 0, ConfigMapRef::default());
        assert_eq!(store.signatures_checked(), 2);
        // b edited: only the new b is checked; a keeps what it was found worth.
        let mut edited = (*b).clone();
        edited.reason = "other".into();
        let edited = Arc::new(edited);
        store.publish(vec![a.clone(), edited.clone()], 0, ConfigMapRef::default());
        assert_eq!(store.signatures_checked(), 3);
        assert_eq!(trusted(&store), [true, false]);
        // The same approvals again: nothing to check.
        store.publish(vec![a.clone(), edited.clone()], 0, ConfigMapRef::default());
        assert_eq!(store.signatures_checked(), 3);
        // Other signers: all checked again, and none trusted.
        store.set_signers(Signers::none(binding.clone()));
        assert_eq!(store.signatures_checked(), 5);
        assert_eq!(trusted(&store), [false, false]);
        store.publish(vec![a.clone(), signed("dave")], 0, ConfigMapRef::default());
        assert_eq!(store.signatures_checked(), 6);
        assert_eq!(trusted(&store), [false, false]);
        // Back to carol: a counts again, as checking it afresh says.
        store.set_signers(signers);
        assert_eq!(trusted(&store), [true, true]);
        // Approvals held nowhere else (as a file's are) are checked in place: the same.
        store.publish(vec![signed("erin"), a.clone()], 0, ConfigMapRef::default());
        assert_eq!(trusted(&store), [true, true]);
        let mut forged = (*signed("frank")).clone();
        forged.reason = "changed after signing".into();
        store.publish(vec![Arc::new(forged)], 0, ConfigMapRef::default());
        assert_eq!(trusted(&store), [false]);
        // Checked in place and handed back by `publish_then`, as file mode keeps them:
        // given again, they are not checked again, before or after a change of signers.
        let mut kept = Vec::new();
        store.publish_then(
            vec![signed("grace"), signed("heidi")],
            0,
            ConfigMapRef::default(),
            |given| kept = given.to_vec(),
        );
        let n = store.signatures_checked();
        store.publish(kept.clone(), 0, ConfigMapRef::default());
        assert_eq!(store.signatures_checked(), n);
        assert_eq!(trusted(&store), [true, true]);
        store.set_signers(Signers::none(binding.clone()));
        assert_eq!(store.signatures_checked(), n + 2);
        store.publish(kept, 0, ConfigMapRef::default());
        assert_eq!(store.signatures_checked(), n + 2);
        assert_eq!(trusted(&store), [false, false]);
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
