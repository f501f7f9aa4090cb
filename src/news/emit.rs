//! Writes notices as `events.k8s.io/v1` Events, off the request path: answers hand
//! their notices over a bounded channel and never wait; approvals are compared each time
//! they are loaded again, and the clock is looked at every few seconds.
//!
//! Each notice is written once per replica (a name seen is not tried again for two hours)
//! and once across replicas (the API server refuses a second Event of the same name with
//! 409, which counts as written by another replica). A notice that cannot be handed over
//! or written is dropped, counted, and logged: the records, not the Events, are the
//! account of what happened.

use super::{Notice, Regarding, changes, due};
use crate::approvals::{ApprovalStore, Snapshot};
use crate::metrics::Metrics;
use crate::policy::PolicyStore;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Notices that may wait for the writer; past this, new ones are dropped.
const QUEUE: usize = 1024;
/// How long a written name is remembered, so it is not tried again.
const REMEMBER: Duration = Duration::from_secs(2 * 3600);
/// How many names of the approvals' news (changes and time) are remembered: two pieces of
/// news of time for each of a hundred thousand approvals, and changes besides.
const NEWS_REMEMBERED: usize = 250_000;
/// How many names of answers' news (denials, break-glass uses) are remembered, apart, so
/// that answers (which anyone refused can make) cannot push out the approvals' news.
const ANSWERS_REMEMBERED: usize = 100_000;
/// How often the approvals are compared with the last ones seen.
const TICK: Duration = Duration::from_secs(1);
/// How often (in ticks) the clock is checked for approvals about to expire or expired,
/// besides each time they change: a pass over every approval, kept off every second.
const DUE_EVERY: u32 = 15;
/// At most this many notices of time, and as many of changes, are made in one pass; when
/// there are more, the next pass is at the next tick, so that their notices are written as
/// fast as before but never all held at once.
const AT_ONCE: usize = 256;

/// Where answers hand their notices. Cheap to clone; empty when no Events are written
/// (file mode), and then free.
#[derive(Clone, Default)]
pub struct Notices(Option<Sink>);

#[derive(Clone)]
struct Sink {
    tx: mpsc::Sender<Notice>,
    /// Answers told of in the last minute, by a hash of what makes them the same news:
    /// a retry loop's answers are recognised before any notice is built for them.
    told: moka::sync::Cache<u64, ()>,
    /// Keyed per process, so nobody can make their answers collide with another's.
    hasher: std::hash::RandomState,
    /// Whom news concerns is read from the policies it was decided under.
    policies: Arc<PolicyStore>,
}

impl std::fmt::Debug for Notices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Notices").field(&self.0.is_some()).finish()
    }
}

impl Notices {
    /// Tells of an answer, if it is news (a denial of a gated action, a break-glass use)
    /// not told in the last minute: builds its notices and hands them to the writer
    /// without waiting, counting those that do not fit. Nothing at all in file mode.
    pub fn answered(
        &self,
        req: crate::decision::Request<'_, '_>,
        d: &crate::decision::Decision,
        metrics: &Metrics,
    ) {
        use std::hash::{BuildHasher, Hash, Hasher};
        let Some(sink) = &self.0 else { return };
        if !super::is_news(d) {
            return;
        }
        let mut h = sink.hasher.build_hasher();
        (
            d.code().as_str(),
            req.user(),
            req.verb(),
            req.namespace(),
            req.resource(),
            req.sub_resource(),
            req.name(),
        )
            .hash(&mut h);
        d.at.as_second().div_euclid(60).hash(&mut h);
        if !sink.told.entry(h.finish()).or_insert(()).is_fresh() {
            return;
        }
        for notice in super::answered(req, d, &sink.policies.current()) {
            if sink.tx.try_send(notice).is_err() {
                metrics.event_dropped();
            }
        }
    }
}

/// Where notices this replica wrote (and no other replica did) are handed on, without
/// waiting: to the notifications (`notices`), if configured.
pub type Forward = Option<mpsc::Sender<Notice>>;

/// What Events' names are keyed with, asked at each write (so that it follows a rotation
/// of the serving key): [`crate::tls::ServingCert::secret_for`].
pub type NameKey = Arc<dyn Fn() -> ring::hmac::Key + Send + Sync>;

/// Where Events are written: the cluster, as which replica (the pod), and what their
/// names are keyed with.
#[derive(Clone)]
pub struct Events {
    client: kube::Client,
    instance: String,
    key: NameKey,
}

impl Events {
    pub fn new(client: kube::Client, instance: String, key: NameKey) -> Self {
        Events {
            client,
            instance,
            key,
        }
    }

    /// A key of this process alone: unpredictable, but shared with no other replica (each
    /// would write a piece of news once of its own). For parts run apart from `serve`.
    pub fn unshared_key() -> NameKey {
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .unwrap_or_else(|_| {
                // Never a fixed key: the process's own random hasher's keys, then.
                let random = std::hash::RandomState::new();
                let bytes: Vec<u8> = (0u8..4)
                    .flat_map(|i| std::hash::BuildHasher::hash_one(&random, i).to_be_bytes())
                    .collect();
                ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes)
            });
        Arc::new(move || key.clone())
    }

    /// The Event name of a notice: `jitgate.` and 16 hex digits of an HMAC of what makes
    /// it the same news ([`Notice::name`]) under the replicas' shared key. Anyone may work
    /// out a notice's facts, and some may create Events where it is written: an unkeyed
    /// name could be taken first, and the API server would then refuse jitgate's Event as
    /// another replica's (409), and nobody would be told.
    fn name_of(&self, notice: &Notice) -> String {
        let tag = ring::hmac::sign(&(self.key)(), notice.name.as_bytes());
        format!("jitgate.{}", &crate::digest::hex_of(tag.as_ref())[..16])
    }

    /// Writes one notice now (another replica's Event of the same name counts as written).
    /// The Event's name when this replica created it: then it, and no other replica,
    /// tells people.
    pub async fn write(&self, notice: &Notice, metrics: &Metrics) -> Option<String> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &notice.namespace);
        let name = self.name_of(notice);
        match api
            .create(
                &PostParams::default(),
                &event(notice, name.clone(), &self.instance),
            )
            .await
        {
            Ok(_) => {
                metrics.event_emitted();
                Some(name)
            }
            // Another replica wrote the same news first.
            Err(kube::Error::Api(status)) if status.code == 409 => None,
            Err(e) => {
                metrics.event_dropped();
                tracing::warn!(event = %name, reason = notice.reason, error = %e, "event not written");
                None
            }
        }
    }
}

/// Starts the writer: Events where `events` says; without (file mode), no Events, and
/// every notice is handed on to `forward`.
pub fn spawn(
    events: Option<Events>,
    forward: Forward,
    store: Arc<ApprovalStore>,
    policies: Arc<PolicyStore>,
    metrics: Arc<Metrics>,
    lead: SignedDuration,
) -> (Notices, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Notice>(QUEUE);
    let policies_for_news = policies.clone();
    let task = tokio::spawn(async move {
        let (mut news_told, mut answers_told) = (Told::new(NEWS_REMEMBERED), Told::new(ANSWERS_REMEMBERED));
        let mut last: Option<Arc<Snapshot>> = None;
        let mut tick = tokio::time::interval(TICK);
        let mut ticks: u32 = 0;
        // Where the last passes over changes and over the clock stopped short.
        let (mut changes_at, mut due_at) = (Resume::default(), Resume::default());
        loop {
            let (mut batch, mut answers) = (Vec::new(), Vec::new());
            tokio::select! {
                _ = tick.tick() => {
                    if let Some(snapshot) = store.current() {
                        let now = Timestamp::now();
                        let policies = policies.current();
                        // The first load is where news starts: what it holds is not news.
                        let before = last.take().or_else(|| store.first()).unwrap_or_else(|| snapshot.clone());
                        // A pass over changes that stopped short goes on over the same two
                        // loads; the newest is compared when it is done.
                        let after = changes_at.load().unwrap_or_else(|| snapshot.clone());
                        news_told.forget_old(std::time::Instant::now());
                        let told = |name: &str| news_told.knows(name);
                        if !Arc::ptr_eq(&before, &after) {
                            let pass = (changes_at.from(&after), AT_ONCE);
                            let (notices, next) = changes(&before, &after, &policies, now, told, pass);
                            changes_at.stopped(&after, next);
                            batch.extend(notices);
                        }
                        if !Arc::ptr_eq(&before, &snapshot) || due_at.pending() || ticks % DUE_EVERY == 0 {
                            let pass = (due_at.from(&snapshot), AT_ONCE);
                            let (notices, next) = due(&snapshot, &policies, now, lead, told, pass);
                            due_at.stopped(&snapshot, next);
                            batch.extend(notices);
                        }
                        ticks = ticks.wrapping_add(1);
                        last = Some(if changes_at.pending() { before } else { after });
                    }
                }
                received = rx.recv() => match received {
                    Some(notice) => answers.push(notice),
                    None => return,
                },
            }
            // Answers' news waiting is written first (as much of it as a pass of the
            // approvals' news, so that neither keeps the other waiting long), so that a
            // catch-up on many approvals' news does not keep it waiting until its queue is
            // full.
            while answers.len() < AT_ONCE
                && let Ok(notice) = rx.try_recv()
            {
                answers.push(notice);
            }
            let answers = answers.into_iter().map(|n| (n, true));
            for (mut notice, of_answer) in answers.chain(batch.into_iter().map(|n| (n, false))) {
                let told = if of_answer {
                    &mut answers_told
                } else {
                    &mut news_told
                };
                if !told.remember(&notice.name, std::time::Instant::now()) {
                    continue;
                }
                // What is handed on is named as its Event is (a CloudEvent's id).
                let created = match &events {
                    Some(events) => match events.write(&notice, &metrics).await {
                        Some(name) => {
                            notice.name = name;
                            true
                        }
                        None => false,
                    },
                    None => true,
                };
                if created
                    && let Some(forward) = &forward
                    && forward.try_send(notice).is_err()
                {
                    metrics.notification("queue", "dropped");
                    tracing::warn!("notification dropped: the notifications queue is full");
                }
            }
        }
    });
    let told = moka::sync::Cache::builder()
        .max_capacity(100_000)
        .time_to_live(Duration::from_secs(120))
        .build();
    let hasher = std::hash::RandomState::new();
    (
        Notices(Some(Sink {
            tx,
            told,
            hasher,
            policies: policies_for_news,
        })),
        task,
    )
}

/// Where a pass over a load of the approvals stopped short of its end: the next pass over
/// the same load goes on from there, one over another load starts again from the first.
/// What was told is skipped anyway; this is what makes the passes come to an end however
/// few of the names told are remembered.
#[derive(Default)]
struct Resume(Option<(Arc<Snapshot>, usize)>);

impl Resume {
    /// Where a pass over `snapshot` starts.
    fn from(&self, snapshot: &Arc<Snapshot>) -> usize {
        match &self.0 {
            Some((load, at)) if Arc::ptr_eq(load, snapshot) => *at,
            _ => 0,
        }
    }

    /// The load the last pass stopped short in.
    fn load(&self) -> Option<Arc<Snapshot>> {
        self.0.as_ref().map(|(load, _)| Arc::clone(load))
    }

    /// Where the pass over `snapshot` stopped, if short of the end.
    fn stopped(&mut self, snapshot: &Arc<Snapshot>, next: Option<usize>) {
        self.0 = next.map(|at| (Arc::clone(snapshot), at));
    }

    /// Whether the last pass stopped short: more are due at the next tick.
    fn pending(&self) -> bool {
        self.0.is_some()
    }
}

/// The Event names written (or tried) lately, for two hours, so that a piece of news is
/// written once; when full, the name told longest ago is forgotten first, so that a new
/// name is always remembered. Kept as 64-bit hashes keyed per process, in order (some 40
/// bytes a name: 250 000 names take about 10 MB, where a general-purpose cache took
/// about 250 bytes a name).
struct Told {
    capacity: usize,
    names: std::collections::HashSet<u64>,
    order: std::collections::VecDeque<(std::time::Instant, u64)>,
    hasher: std::hash::RandomState,
}

impl Told {
    fn new(capacity: usize) -> Self {
        Told {
            capacity,
            names: std::collections::HashSet::new(),
            order: std::collections::VecDeque::new(),
            hasher: std::hash::RandomState::new(),
        }
    }

    fn key(&self, name: &str) -> u64 {
        std::hash::BuildHasher::hash_one(&self.hasher, name)
    }

    fn knows(&self, name: &str) -> bool {
        self.names.contains(&self.key(name))
    }

    /// Forgets the names told more than two hours before `now`.
    fn forget_old(&mut self, now: std::time::Instant) {
        while let Some(&(at, key)) = self.order.front() {
            if now.saturating_duration_since(at) < REMEMBER {
                break;
            }
            self.order.pop_front();
            self.names.remove(&key);
        }
    }

    /// Remembers `name`, told at `now`; false when it was known already.
    fn remember(&mut self, name: &str, now: std::time::Instant) -> bool {
        self.forget_old(now);
        let key = self.key(name);
        if !self.names.insert(key) {
            return false;
        }
        self.order.push_back((now, key));
        if self.order.len() > self.capacity
            && let Some((_, oldest)) = self.order.pop_front()
        {
            self.names.remove(&oldest);
        }
        true
    }
}

fn reference(r: &Regarding) -> ObjectReference {
    ObjectReference {
        api_version: Some(r.api_version.clone()),
        kind: Some(r.kind.clone()),
        namespace: Some(r.namespace.clone()).filter(|n| !n.is_empty()),
        name: Some(r.name.clone()),
        uid: r.uid.clone(),
        ..Default::default()
    }
}

/// The Event for a notice, named `name`.
fn event(notice: &Notice, name: String, instance: &str) -> Event {
    Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(notice.namespace.clone()),
            labels: Some([("app.kubernetes.io/name".to_string(), "jitgate".to_string())].into()),
            ..Default::default()
        },
        event_time: Some(MicroTime(Timestamp::now())),
        reporting_controller: Some("jitgate.dev/jitgate".into()),
        reporting_instance: Some(instance.to_string()),
        action: Some(notice.action.into()),
        reason: Some(notice.reason.into()),
        note: Some(notice.note.clone()),
        type_: Some(if notice.warning { "Warning" } else { "Normal" }.into()),
        regarding: Some(reference(&notice.regarding)),
        related: notice.related.as_ref().map(reference),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Full, the memory of names told forgets the one told longest ago: a new name is
    /// always remembered (a cache that turned new names away once full made the same news
    /// be written again at every pass); and each is forgotten two hours after it was told.
    #[test]
    fn a_full_memory_of_names_told_forgets_the_oldest_never_the_newest() {
        let mut told = Told::new(100);
        let start = std::time::Instant::now();
        for i in 0..1000 {
            assert!(told.remember(&format!("jitgate.{i}"), start), "{i} is new");
        }
        assert!((900..1000).all(|i| told.knows(&format!("jitgate.{i}"))));
        assert!(!told.knows("jitgate.0") && !told.knows("jitgate.899"));
        assert!(
            !told.remember("jitgate.999", start),
            "a name told is not told again"
        );
        assert!(told.remember("jitgate.later", start + REMEMBER / 2));
        told.forget_old(start + REMEMBER);
        assert!(!told.knows("jitgate.999") && told.knows("jitgate.later"));
        assert_eq!((told.names.len(), told.order.len()), (1, 1));
    }
}
