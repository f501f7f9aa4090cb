//! Prometheus metrics at `GET /metrics`: what the gate decided and how fast, what approvals
//! it holds, how fresh they are, whether records are being written, and when its serving
//! certificate expires. Counters move on the request path; the rest is read at scrape time.

use crate::approvals::{ApprovalStore, View};
use crate::audit::AuditSink;
use crate::policy::PolicySet;
use crate::tls::ServingCert;
use jiff::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    /// `admission` or `authorization`.
    review: &'static str,
    decision: &'static str,
    reason: &'static str,
    /// The gating policies, comma-separated; empty when none.
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrantLabels {
    /// `created` or `removed`.
    action: &'static str,
    /// `Role` or `RoleBinding`.
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    /// `emitted` or `dropped`.
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    /// The sink's name in the notifications file (`queue`: the hand-over before any sink).
    sink: String,
    /// `sent`, `retried` or `dropped`.
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgeLabels {
    /// `under_1h`, `1h_to_8h`, `over_8h`, or `unknown` (a key without the minute asked).
    age: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    /// `verified` (a client certificate the client CA signed), `other`, or `handshaking`.
    caller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClosedLabels {
    /// `idle`, `evicted` (to make room), `refused_all_busy`, `handshake_evicted`,
    /// `handshake_timeout`.
    why: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    latency: Histogram,
    approvals: Family<StateLabels, Gauge>,
    sync_age: Gauge<f64, AtomicU64>,
    entries_read: Gauge,
    signatures_checked: Gauge,
    audit_errors: Counter,
    log_lines_dropped: Counter,
    events: Family<EventLabels, Counter>,
    notifications: Family<NotificationLabels, Counter>,
    pending_by_age: Family<AgeLabels, Gauge>,
    expiring_soon: Gauge,
    /// Seconds before its expiry within which an active approval counts as expiring soon.
    expiry_lead: i64,
    cert_expiry: Gauge,
    audit_sequence: Gauge,
    audit_queue_held: Gauge,
    break_glass_unreviewed: Gauge,
    break_glass_overdue: Gauge,
    connections: Family<ConnectionLabels, Gauge>,
    connections_closed: Family<ClosedLabels, Counter>,
    bodies_timed_out: Counter,
    body_budget_exhausted: Counter,
    body_bytes_held: Gauge,
    grant_objects: Family<GrantLabels, Counter>,
    grants_live: Gauge,
    grants_overdue: Gauge,
    grants_blocked: Gauge,
}

impl Metrics {
    /// The metrics of one server; an active approval within `expiry_lead` of its expiry
    /// counts as expiring soon.
    pub fn new(expiry_lead: jiff::SignedDuration) -> Self {
        let mut registry = Registry::with_prefix("jitgate");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Answers to admission and authorization reviews, by review, decision, reason and policy",
            decisions.clone(),
        );
        // 5 µs to about 80 ms.
        let latency = Histogram::new(exponential_buckets(5e-6, 2.0, 15));
        registry.register(
            "decision_duration_seconds",
            "Time from a request's arrival to its decision, before its record is written",
            latency.clone(),
        );
        let approvals = Family::<StateLabels, Gauge>::default();
        registry.register(
            "approvals",
            "Approvals held: active (signed, unexpired), pending (no approver yet), expired, invalid (refused entries)",
            approvals.clone(),
        );
        let sync_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "approvals_sync_age_seconds",
            "Seconds since the approvals' source (file or API server) was last known healthy",
            sync_age.clone(),
        );
        let entries_read = Gauge::default();
        registry.register(
            "approval_entries_read",
            "Approval entries read since start: an edit of a ConfigMap reads only the entries whose text changed (in an approvals file too, but for the edit that first puts a ConfigMap's data before its metadata in a file with none so before)",
            entries_read.clone(),
        );
        let signatures_checked = Gauge::default();
        registry.register(
            "approval_signatures_checked",
            "Approvals whose offline signatures were checked since start: an edit of a ConfigMap checks only the entries it changed, a change of the trusted signers checks them all",
            signatures_checked.clone(),
        );
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "events",
            "Kubernetes Events about approvals and denials: emitted by this replica, or dropped (queue full, or the API refused)",
            events.clone(),
        );
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "notifications",
            "Notifications (serve --notifications) by sink: sent, retried (an attempt failed and is tried again), or dropped (queue full, or every attempt failed)",
            notifications.clone(),
        );
        let pending_by_age = Family::<AgeLabels, Gauge>::default();
        registry.register(
            "pending_requests",
            "Requests waiting for approvers, by how long they have waited",
            pending_by_age.clone(),
        );
        let expiring_soon = Gauge::default();
        registry.register(
            "approvals_expiring_soon",
            "Active approvals that expire within the expiry warning's lead time",
            expiring_soon.clone(),
        );
        let audit_errors = Counter::default();
        registry.register(
            "audit_errors",
            "Records that could not be written (each turned its answer into a denial)",
            audit_errors.clone(),
        );
        let log_lines_dropped = Counter::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because stderr did not take them (its reader stopped or slow): logging never holds up a request",
            log_lines_dropped.clone(),
        );
        let cert_expiry = Gauge::default();
        registry.register(
            "serving_certificate_expiry_seconds",
            "Seconds until the serving certificate expires",
            cert_expiry.clone(),
        );
        let audit_sequence = Gauge::default();
        registry.register(
            "audit_sequence",
            "The seq of the last audit record written: scraped, it anchors the log's end, which the hash chain alone cannot",
            audit_sequence.clone(),
        );
        let audit_queue_held = Gauge::default();
        registry.register(
            "audit_queue_held",
            "Places of --audit-queue taken by decision records accepted and not yet written (or turned into refusals), one per started 4 KiB of each record; when a record finds no room, its request is denied (audit_unavailable)",
            audit_queue_held.clone(),
        );
        let break_glass_unreviewed = Gauge::default();
        registry.register(
            "break_glass_unreviewed",
            "Break-glass entries no approver has reviewed yet",
            break_glass_unreviewed.clone(),
        );
        let break_glass_overdue = Gauge::default();
        registry.register(
            "break_glass_overdue",
            "Unreviewed break-glass entries past their policies' reviewWithin",
            break_glass_overdue.clone(),
        );
        let connections = Family::<ConnectionLabels, Gauge>::default();
        registry.register(
            "connections",
            "Connections open, by caller: verified (client certificate from the client CA), other, handshaking",
            connections.clone(),
        );
        let connections_closed = Family::<ClosedLabels, Counter>::default();
        registry.register(
            "connections_closed",
            "Connections the server closed or turned away: idle, evicted (the quietest, to make room), refused_all_busy, handshake_evicted, handshake_timeout",
            connections_closed.clone(),
        );
        let bodies_timed_out = Counter::default();
        registry.register(
            "request_bodies_timed_out",
            "Requests refused because their body did not arrive whole within --body-timeout",
            bodies_timed_out.clone(),
        );
        let body_budget_exhausted = Counter::default();
        registry.register(
            "body_budget_exhausted",
            "Requests refused because the bytes of bodies held at once were at --body-budget for too long",
            body_budget_exhausted.clone(),
        );
        let body_bytes_held = Gauge::default();
        registry.register(
            "body_bytes_held",
            "Bytes of request bodies held at once, counted against --body-budget",
            body_bytes_held.clone(),
        );
        let grant_objects = Family::<GrantLabels, Counter>::default();
        registry.register(
            "grant_objects",
            "Roles and RoleBindings of grants (serve --grants rbac) created or removed by this replica, and RoleBindings found standing not marked as recorded",
            grant_objects.clone(),
        );
        let grants_live = Gauge::default();
        registry.register(
            "grants_live",
            "Grants (serve --grants rbac) whose RoleBinding exists and has not expired, at this replica's last pass",
            grants_live.clone(),
        );
        let grants_overdue = Gauge::default();
        registry.register(
            "grants_overdue",
            "Grant objects found past their expiry at this replica's last pass (removed then, unless the API server refused)",
            grants_overdue.clone(),
        );
        let grants_blocked = Gauge::default();
        registry.register(
            "grants_blocked",
            "Grants (serve --grants rbac) left unbound at this replica's last pass because a Role or RoleBinding of their name is not jitgate's",
            grants_blocked.clone(),
        );
        Metrics {
            registry,
            grant_objects,
            grants_live,
            grants_overdue,
            grants_blocked,
            connections,
            connections_closed,
            bodies_timed_out,
            body_budget_exhausted,
            body_bytes_held,
            decisions,
            latency,
            approvals,
            sync_age,
            entries_read,
            signatures_checked,
            audit_errors,
            log_lines_dropped,
            events,
            notifications,
            pending_by_age,
            expiring_soon,
            expiry_lead: expiry_lead.as_secs(),
            cert_expiry,
            audit_sequence,
            audit_queue_held,
            break_glass_unreviewed,
            break_glass_overdue,
        }
    }
}

impl Metrics {
    /// Counts one answer, as it was given (and recorded).
    pub fn answered(
        &self,
        review: crate::audit::Review,
        decision: &'static str,
        reason: &'static str,
        policy: &str,
        took: Duration,
    ) {
        let labels = DecisionLabels {
            review: match review {
                crate::audit::Review::Admission => "admission",
                crate::audit::Review::Authorization => "authorization",
            },
            decision,
            reason,
            policy: policy.to_string(),
        };
        self.decisions.get_or_create(&labels).inc();
        self.latency.observe(took.as_secs_f64());
    }

    pub fn event_emitted(&self) {
        self.events
            .get_or_create(&EventLabels { outcome: "emitted" })
            .inc();
    }

    /// A Role or RoleBinding of a grant created or removed.
    pub fn grant_object(&self, action: &'static str, kind: &'static str) {
        self.grant_objects
            .get_or_create(&GrantLabels { action, kind })
            .inc();
    }

    /// What a pass of the grants reconciler found.
    pub fn grants_seen(&self, live: usize, overdue: usize, blocked: usize) {
        self.grants_live.set(i64::try_from(live).unwrap_or(i64::MAX));
        self.grants_overdue
            .set(i64::try_from(overdue).unwrap_or(i64::MAX));
        self.grants_blocked
            .set(i64::try_from(blocked).unwrap_or(i64::MAX));
    }

    /// A notification to `sink` sent, retried or dropped.
    pub fn notification(&self, sink: &str, outcome: &'static str) {
        self.notifications
            .get_or_create(&NotificationLabels {
                sink: sink.to_string(),
                outcome,
            })
            .inc();
    }

    pub fn event_dropped(&self) {
        self.events
            .get_or_create(&EventLabels { outcome: "dropped" })
            .inc();
    }

    pub fn connections_open(&self, caller: &'static str, n: usize) {
        self.connections
            .get_or_create(&ConnectionLabels { caller })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn connection_closed(&self, why: &'static str) {
        self.connections_closed.get_or_create(&ClosedLabels { why }).inc();
    }

    pub fn body_timed_out(&self) {
        self.bodies_timed_out.inc();
    }

    pub fn body_budget_exhausted(&self) {
        self.body_budget_exhausted.inc();
    }

    /// Moves the count of body bytes held by `delta`.
    pub fn body_bytes_held(&self, delta: i64) {
        self.body_bytes_held.inc_by(delta);
    }

    pub fn audit_failed(&self) {
        self.audit_errors.inc();
    }

    /// The text exposition, with the scrape-time gauges brought up to date.
    pub fn render(
        &self,
        store: &ApprovalStore,
        policies: &PolicySet,
        cert: &ServingCert,
        audit: &AuditSink,
    ) -> String {
        let snapshot = match store.view() {
            View::Current(s) | View::Stale { snapshot: s, .. } => Some(s),
            View::NotLoaded => None,
        };
        let now = Timestamp::now();
        let lead = jiff::SignedDuration::from_secs(self.expiry_lead);
        // One pass over the approvals: each one's state, the pending ones by age, and the
        // active ones about to expire.
        let (mut active, mut pending, mut expired) = (0usize, 0usize, 0usize);
        let (mut ages, mut soon) = ([0i64; 4], 0i64);
        for a in snapshot.iter().flat_map(|s| s.approvals.iter()) {
            match crate::approvals::state_of(a, Some(policies), now).0 {
                crate::approvals::State::Pending => {
                    pending += 1;
                    let bucket = match a.requested_at().map(|t| now.duration_since(t).as_hours()) {
                        None => 3,
                        Some(h) if h < 1 => 0,
                        Some(h) if h < 8 => 1,
                        Some(_) => 2,
                    };
                    ages[bucket] += 1;
                }
                crate::approvals::State::Active | crate::approvals::State::BreakGlass => {
                    active += 1;
                    if a.expires_at.duration_since(now) <= lead {
                        soon += 1;
                    }
                }
                crate::approvals::State::Expired => expired += 1,
                crate::approvals::State::Invalid => {}
            }
        }
        let invalid = snapshot.as_deref().map_or(0, |s| s.invalid);
        let unreviewed = snapshot
            .as_deref()
            .map(|s| crate::approvals::break_glass::unreviewed(s, policies))
            .unwrap_or_default();
        let overdue = unreviewed.iter().filter(|u| now > u.review_by).count();
        self.break_glass_unreviewed
            .set(i64::try_from(unreviewed.len()).unwrap_or(i64::MAX));
        self.break_glass_overdue
            .set(i64::try_from(overdue).unwrap_or(i64::MAX));
        for (state, n) in [
            ("active", active),
            ("pending", pending),
            ("expired", expired),
            ("invalid", invalid),
        ] {
            self.approvals
                .get_or_create(&StateLabels { state })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        for (age, n) in ["under_1h", "1h_to_8h", "over_8h", "unknown"]
            .into_iter()
            .zip(ages)
        {
            self.pending_by_age.get_or_create(&AgeLabels { age }).set(n);
        }
        self.expiring_soon.set(soon);
        self.sync_age.set(store.silent_for().as_secs_f64());
        self.entries_read
            .set(i64::try_from(store.entries_read()).unwrap_or(i64::MAX));
        self.signatures_checked
            .set(i64::try_from(store.signatures_checked()).unwrap_or(i64::MAX));
        if let Some(seconds) = cert.seconds_left() {
            self.cert_expiry.set(seconds);
        }
        self.audit_sequence
            .set(i64::try_from(audit.sequence()).unwrap_or(i64::MAX));
        self.audit_queue_held
            .set(i64::try_from(audit.queue_held()).unwrap_or(i64::MAX));
        self.log_lines_dropped
            .inner()
            .fetch_max(crate::telemetry::dropped_lines(), Ordering::Relaxed);
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
