//! The RBAC-objects way of granting (`serve --grants rbac`), for clusters whose authorizer
//! chain jitgate cannot join: for each live approval under granting policies, a Role with
//! exactly the rules [`crate::rbac::grant_of`] renders and a RoleBinding to its subject, in
//! the approval's namespace, both named after the approval and labelled as jitgate's;
//! removed when the approval expires or is revoked.
//!
//! What to do is decided by [`plan`] (no I/O); this module lists, creates and deletes.
//! Only objects carrying jitgate's grant label are listed, so nothing else is ever
//! touched. Objects are created, never updated (but for the annotation
//! [`rbac::RECORDED_ANNOTATION`] a RoleBinding gets once its creation is recorded): a Role
//! of the grant's name that holds other rules (made by hand, or by a replica with other policies) is left as it is and
//! not bound, and a labelled RoleBinding that is not exactly the grant's is deleted (one
//! without jitgate's labels is someone else's, left alone: a conflict). Only the objects
//! a replica itself created are recorded as created by it; a RoleBinding kept as a grant's
//! that carries no mark of a record once older than the grace is recorded as found
//! standing ([`plan::Plan::unrecorded`]), or taken back if that cannot be recorded. Deletions
//! carry the uid of the object listed, so an object created again meanwhile (by another
//! replica) is not deleted by mistake.
//!
//! A pass runs when the approvals change, when this replica records a use of a `maxUses`
//! approval (its grant ends when they are spent), when the clock reaches the next expiry
//! (or the end of a grace), and at least every [`RESYNC`].
//!
//! An approval that would grant by the webhook way but gets no objects here (see
//! [`crate::rbac`]: `maxUses` on reads, a break-glass entry, a `system:` subject…) is said
//! once in a warning naming it and why; `kubectl jitgate show` says it too. A grant
//! blocked by an object of its name that jitgate did not make is warned of at each pass and
//! counted in `jitgate_grants_blocked`.

pub mod plan;
mod records;

use crate::approvals::{ApprovalStore, View as StoreView};
use crate::audit::{AuditSink, GrantRecord};
use crate::metrics::Metrics;
use crate::news;
use crate::policy::PolicyStore;
use crate::rbac::{self, Grant};
use crate::usage::UseCounts;
use jiff::Timestamp;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject as RbacSubject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use plan::{Found, Holds, Kind, Memory, Plan, RuleForm, Why};
use records::{Records, Standing};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often a pass runs at least, changes or not: grants missing or left behind (a
/// restart, another replica's work, a hand's deletion) are put right within this.
pub const RESYNC: Duration = Duration::from_secs(30);
/// How often the approvals are looked at for a change.
const TICK: Duration = Duration::from_secs(1);
/// How long a created grant waits for its record before it is taken back.
pub const RECORD_WAIT: Duration = Duration::from_secs(5);
/// How long a creation waits for the grant records queued before it to be written.
const DRAIN_WAIT: Duration = Duration::from_secs(1);
/// When the next pass runs after one that left grants uncreated for the audit trail.
const RETRY: jiff::SignedDuration = jiff::SignedDuration::from_secs(5);
/// Why a grant's RoleBinding is recorded as found standing.
const FOUND_UNRECORDED: &str = "not marked as recorded";
/// The field manager jitgate writes as.
const MANAGER: &str = "jitgate";
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// How approvals under granting policies grant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Way {
    /// Through `/authorize`, when the API server's authorizer chain names jitgate; no
    /// objects are created.
    #[default]
    Webhook,
    /// With a Role and a RoleBinding per approval (also `/authorize`, if the chain names it).
    Rbac,
}

#[derive(Debug, thiserror::Error)]
pub enum GrantsError {
    #[error("cannot list grant {kind}s: {source}")]
    List {
        kind: &'static str,
        #[source]
        source: kube::Error,
    },
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct Report {
    /// `namespace/name` of each grant some of whose objects this pass created.
    pub created: Vec<String>,
    /// `Kind namespace/name` of each object removed, and why.
    pub removed: Vec<(String, Why)>,
    /// `namespace/name` of each grant left unbound because its Role is not jitgate's.
    pub conflicts: Vec<String>,
    /// Writes that failed (tried again next pass).
    pub failed: usize,
    /// `namespace/name` of each grant whose RoleBinding stood with no record of its
    /// creation, and whose standing this pass recorded.
    pub found: Vec<String>,
    /// Grants not created (or, found unrecorded, taken back) because grant records wait to
    /// be written (the audit trail is not taking them): tried again next pass.
    pub deferred: usize,
}

/// One replica's reconciler of grant objects.
pub struct Reconciler {
    client: kube::Client,
    /// Where its Events go.
    events: news::emit::Events,
    store: Arc<ApprovalStore>,
    policies: Arc<PolicyStore>,
    metrics: Arc<Metrics>,
    records: Records,
    instance: String,
    grace: jiff::SignedDuration,
    memory: Memory,
    /// Where the admission gate counts uses; without it, the objects of `maxUses`
    /// approvals are neither created nor removed (but at expiry).
    usage: Option<Arc<UseCounts>>,
    /// The approvals refused a grant already warned about, with why.
    told: BTreeSet<(String, String)>,
    /// Objects created, not recorded, and not yet taken back.
    leftover: std::sync::Mutex<Vec<Leftover>>,
    /// RoleBindings (uid, resource version) this replica recorded as found whose mark the
    /// API server refused: not recorded again by it as they stood.
    unmarked: std::sync::Mutex<BTreeSet<(String, String)>>,
}

impl Reconciler {
    pub fn new(
        client: kube::Client,
        store: Arc<ApprovalStore>,
        policies: Arc<PolicyStore>,
        metrics: Arc<Metrics>,
        audit: AuditSink,
        instance: String,
        grace: jiff::SignedDuration,
    ) -> Self {
        Reconciler {
            events: news::emit::Events::new(
                client.clone(),
                instance.clone(),
                news::emit::Events::unshared_key(),
            ),
            client,
            store,
            policies,
            metrics,
            records: Records::start(audit),
            instance,
            grace,
            memory: Memory::default(),
            usage: None,
            told: BTreeSet::new(),
            leftover: std::sync::Mutex::default(),
            unmarked: std::sync::Mutex::default(),
        }
    }

    /// Writes its Events (a grant created, found standing unrecorded, removed) as `events`
    /// says: by default with a key of this process alone
    /// ([`news::emit::Events::unshared_key`]).
    pub fn telling(mut self, events: news::emit::Events) -> Self {
        self.events = events;
        self
    }

    /// Reads the uses of `maxUses` approvals from `usage`, and runs a pass after each use
    /// this replica records.
    pub fn counting(mut self, usage: Arc<UseCounts>) -> Self {
        self.usage = Some(usage);
        self
    }

    /// Runs passes until aborted.
    pub fn spawn(mut self) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut last = None;
            let mut uses = self.uses_recorded();
            let mut due = Timestamp::now();
            let mut tick = tokio::time::interval(TICK);
            loop {
                tick.tick().await;
                let now = Timestamp::now();
                let current = self.store.current();
                let changed = match (&last, &current) {
                    (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
                    (None, None) => false,
                    _ => true,
                };
                let used = self.uses_recorded();
                if !changed && used == uses && now < due {
                    continue;
                }
                last = current;
                uses = used;
                let resync = now + jiff::SignedDuration::try_from(RESYNC).unwrap_or_default();
                due = match self.pass().await {
                    Ok((_, Some(next))) => next.min(resync),
                    Ok((_, None)) => resync,
                    Err(e) => {
                        tracing::warn!(error = %e, "grants not reconciled; trying again");
                        now + jiff::SignedDuration::from_secs(5)
                    }
                };
            }
        })
    }

    fn uses_recorded(&self) -> u64 {
        self.usage.as_ref().map_or(0, |u| u.recorded())
    }

    /// One pass now: lists the grant objects, plans, and writes. Also returns when the
    /// next pass is due by the clock.
    pub async fn pass(&mut self) -> Result<(Report, Option<Timestamp>), GrantsError> {
        let found = self.list().await?;
        let now = Timestamp::now();
        let policies = self.policies.current();
        let snapshot = match self.store.view() {
            StoreView::Current(s) => Some(s),
            StoreView::NotLoaded | StoreView::Stale { .. } => None,
        };
        let spent = match (&self.usage, &snapshot) {
            (Some(usage), Some(s)) => {
                let counted = s
                    .approvals
                    .iter()
                    .filter(|a| a.max_uses.is_some() && rbac::concerns(a, &policies));
                match usage.spent(counted.map(|a| &**a)).await {
                    Ok(ids) => Some(ids),
                    Err(e) => {
                        tracing::warn!(error = %e, "uses of maxUses approvals not known; their grants are left as they are");
                        None
                    }
                }
            }
            _ => None,
        };
        let view = snapshot.as_deref().map(|snapshot| plan::View {
            snapshot,
            policies: &policies,
            spent: spent.as_ref(),
        });
        let overdue = found
            .iter()
            .filter(|f| f.expires_at.is_some_and(|t| t <= now))
            .count();
        let mut plan = plan::plan(view, &mut self.memory, &found, now, self.grace);
        self.tell_refused(std::mem::take(&mut plan.refused));
        let next = plan.next_due;
        let report = self.apply(plan).await;
        let next = match next {
            _ if report.deferred == 0 => next,
            Some(t) => Some(t.min(now + RETRY)),
            None => Some(now + RETRY),
        };
        let live = found
            .iter()
            .filter(|f| f.kind == Kind::RoleBinding && f.expires_at.is_some_and(|t| t > now))
            .count()
            + report.created.len();
        self.metrics.grants_seen(live, overdue, report.conflicts.len());
        Ok((report, next))
    }

    /// Warns once of each approval that gets no grant objects, and why.
    fn tell_refused(&mut self, refused: Vec<(String, rbac::NoGrant)>) {
        let now: BTreeSet<(String, String)> = refused
            .into_iter()
            .map(|(id, why)| (id, why.to_string()))
            .collect();
        for (id, why) in now.difference(&self.told) {
            tracing::warn!(approval = %id, why = %why, "approval under a granting policy gets no Role (serve --grants rbac)");
        }
        self.told = now;
    }

    async fn list(&self) -> Result<Vec<Found>, GrantsError> {
        let selector = ListParams::default().labels(&format!(
            "{}={},{}",
            rbac::MANAGED_BY.0,
            rbac::MANAGED_BY.1,
            rbac::GRANT_LABEL
        ));
        let roles: Api<Role> = Api::all(self.client.clone());
        let bindings: Api<RoleBinding> = Api::all(self.client.clone());
        let mut found = Vec::new();
        for role in roles
            .list(&selector)
            .await
            .map_err(|source| GrantsError::List { kind: "Role", source })?
        {
            let holds = rules_of(role.rules);
            found.extend(found_of(Kind::Role, role.metadata, holds));
        }
        for binding in bindings
            .list(&selector)
            .await
            .map_err(|source| GrantsError::List {
                kind: "RoleBinding",
                source,
            })?
        {
            let holds = holds_of(&binding);
            found.extend(found_of(Kind::RoleBinding, binding.metadata, holds));
        }
        Ok(found)
    }

    async fn apply(&self, plan: Plan) -> Report {
        let mut report = Report::default();
        self.take_back_leftover().await;
        for (f, why) in plan.remove {
            match self.delete(f.kind, &f.namespace, &f.name, &f.uid).await {
                Ok(()) => {
                    tracing::info!(kind = f.kind.as_str(), namespace = %f.namespace, name = %f.name,
                        approval = f.approval.as_deref(), why = why.as_str(), "grant object removed");
                    self.metrics.grant_object("removed", f.kind.as_str());
                    // Done already: its record is written when the trail takes it, and
                    // the next removal does not wait for it.
                    self.records.after(self.removal(
                        f.approval.as_deref(),
                        (&f.namespace, &f.name),
                        f.kind.as_str(),
                        f.expires_at,
                        why,
                        Some(&f.holds),
                    ));
                    if f.kind == Kind::RoleBinding {
                        self.tell(news::grant_removed(
                            &f.namespace,
                            &f.name,
                            &f.uid,
                            f.approval.as_deref(),
                            why.as_str(),
                        ))
                        .await;
                    }
                    report
                        .removed
                        .push((format!("{} {}/{}", f.kind.as_str(), f.namespace, f.name), why));
                }
                // Gone already, or created again by another replica (another uid).
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!(kind = f.kind.as_str(), namespace = %f.namespace, name = %f.name, error = %e,
                        "grant object not removed; trying again");
                }
            }
        }
        for g in plan.conflicts {
            tracing::warn!(namespace = %g.namespace, name = %g.name, approval = %g.approval,
                "a Role of this grant's name holds other rules than the approval grants; not bound, not changed");
            report.conflicts.push(format!("{}/{}", g.namespace, g.name));
        }
        for binding in plan.unrecorded {
            self.record_found(&binding, &mut report).await;
        }
        for m in plan.create {
            // A grant that cannot be recorded is not made.
            if !self.takes_records(&report).await {
                if report.deferred == 0 {
                    tracing::warn!(
                        records_waiting = self.records.behind(),
                        "the audit trail is not taking grant records; no grant is created until it does"
                    );
                }
                report.deferred += 1;
                continue;
            }
            match self.create(&m.grant, m.role_exists, m.binding_exists).await {
                Ok(made) => {
                    // Only what this replica created is recorded and told: an object
                    // another replica made first is that replica's record. No grant
                    // stands without its record: what is not recorded in time is taken
                    // back.
                    if let Some(objects) = made.objects()
                        && !self.recorded(&m.grant, &made, objects).await
                    {
                        report.failed += 1;
                        continue;
                    }
                    let grant = format!("{}/{}", m.grant.namespace, m.grant.name);
                    if made.conflict {
                        tracing::warn!(namespace = %m.grant.namespace, name = %m.grant.name, approval = %m.grant.approval,
                            "an object of this grant's name is not as jitgate makes it; not bound, not changed");
                        report.conflicts.push(grant);
                        continue;
                    }
                    if made.binding.is_some() {
                        tracing::info!(namespace = %m.grant.namespace, name = %m.grant.name, approval = %m.grant.approval,
                            subject = %m.grant.subject, expires_at = %m.grant.expires_at, "grant created");
                        self.tell(news::grant_created(&m.grant)).await;
                    }
                    if made.objects().is_some() {
                        report.created.push(grant);
                    }
                }
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!(namespace = %m.grant.namespace, name = %m.grant.name, error = %e,
                        "grant not created; trying again");
                }
            }
        }
        report
    }

    /// Creates what is missing of a grant: the Role, verified when it exists already;
    /// then the RoleBinding, only to a verified Role, and verified when it exists already.
    /// Says what this call created, and whether an object of the grant's name is not
    /// jitgate's (then nothing more is created).
    async fn create(&self, g: &Grant, role_exists: bool, binding_exists: bool) -> Result<Made, kube::Error> {
        let (role, binding) = objects(g);
        let (rules, bound) = plan::rbac_form(g);
        let post = PostParams {
            field_manager: Some(MANAGER.into()),
            ..PostParams::default()
        };
        let mut made = Made::default();
        let roles: Api<Role> = Api::namespaced(self.client.clone(), &g.namespace);
        if !role_exists {
            match roles.create(&post, &role).await {
                Ok(created) => {
                    self.metrics.grant_object("created", "Role");
                    made.role = Some(created.metadata.uid.unwrap_or_default());
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let there = roles.get(&g.name).await?;
                    if !rbac::is_grant_of(&there.metadata, &g.approval) || rules_of(there.rules) != rules {
                        made.conflict = true;
                        return Ok(made);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if !binding_exists {
            let bindings: Api<RoleBinding> = Api::namespaced(self.client.clone(), &g.namespace);
            match bindings.create(&post, &binding).await {
                Ok(created) => {
                    self.metrics.grant_object("created", "RoleBinding");
                    made.binding = Some(created.metadata.uid.unwrap_or_default());
                }
                // Another replica's, if it is exactly the grant's; else someone else's,
                // which jitgate neither takes for its own nor touches.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let there = bindings.get(&g.name).await?;
                    made.conflict =
                        !rbac::is_grant_of(&there.metadata, &g.approval) || holds_of(&there) != bound;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(made)
    }

    /// Records the creation of `objects` of a grant, made by this call (`made`); when that
    /// record is not written within [`RECORD_WAIT`], takes them back and says false.
    async fn recorded(&self, g: &Grant, made: &Made, objects: &'static str) -> bool {
        let line = GrantRecord {
            timestamp: Timestamp::now().to_string(),
            event: "grant",
            action: "created",
            approval: Some(&g.approval),
            namespace: &g.namespace,
            name: &g.name,
            objects,
            subject: Some(g.subject.to_string()),
            expires_at: Some(g.expires_at.to_string()),
            why: None,
            replica: &self.instance,
            binds: None,
        }
        .to_line();
        let place = Place {
            namespace: &g.namespace,
            name: &g.name,
            approval: Some(&g.approval),
            expires_at: Some(g.expires_at),
        };
        self.stands(&place, made, line, Stood::default()).await
    }

    /// A labelled RoleBinding that stands with no mark of a record: looked at again (gone,
    /// made again, no longer labelled, or marked meanwhile by another replica: nothing to
    /// do), then its standing recorded as it stands now and the mark added. When the audit
    /// trail is not taking records, or that record fails or is late, it is taken back (a
    /// grant that cannot be recorded does not stand), and its removal recorded when the
    /// trail takes it. One this replica recorded already but could not mark is not
    /// recorded again by it.
    async fn record_found(&self, listed: &plan::Found, report: &mut Report) {
        let api: Api<RoleBinding> = Api::namespaced(self.client.clone(), &listed.namespace);
        let fresh = match api.get_opt(&listed.name).await {
            Ok(Some(fresh))
                if fresh.metadata.uid.as_deref() == Some(listed.uid.as_str())
                    && rbac::is_grant_object(&fresh.metadata)
                    && !fresh
                        .metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.contains_key(rbac::RECORDED_ANNOTATION)) =>
            {
                fresh
            }
            Ok(_) => return,
            Err(e) => {
                report.failed += 1;
                tracing::warn!(namespace = %listed.namespace, name = %listed.name, error = %e,
                    "a grant's RoleBinding without a mark of its record could not be looked at again; trying again");
                return;
            }
        };
        let version = fresh.metadata.resource_version.clone();
        let seen = (listed.uid.clone(), version.clone().unwrap_or_default());
        if self.lock_unmarked().contains(&seen) {
            return;
        }
        let stamp = Timestamp::now().to_string();
        let (subject, binds) = named(&holds_of(&fresh), &listed.namespace);
        // What it holds was read above; only its place and annotations are wanted here.
        let Some(binding) = found_of(Kind::RoleBinding, fresh.metadata, Holds::Rules(BTreeSet::new())) else {
            return;
        };
        let place = Place {
            namespace: &binding.namespace,
            name: &binding.name,
            approval: binding.approval.as_deref(),
            expires_at: binding.expires_at,
        };
        let made = Made {
            binding: Some(binding.uid.clone()),
            ..Made::default()
        };
        let at = format!("{}/{}", binding.namespace, binding.name);
        if !self.takes_records(report).await {
            tracing::error!(namespace = %binding.namespace, name = %binding.name, approval = binding.approval.as_deref(),
                "a grant's RoleBinding stands with no record of it, and the audit trail is not taking records; it is taken back");
            report.deferred += 1;
            let gone = self.take_back(&place, &made, true).await;
            if let Some(line) = self.unrecorded_removal(&place, &gone) {
                self.records.after(line);
                report
                    .removed
                    .push((format!("RoleBinding {at}"), Why::Unrecorded));
            }
            return;
        }
        tracing::warn!(namespace = %binding.namespace, name = %binding.name, approval = binding.approval.as_deref(),
            subject = subject.as_deref(), binds = binds.as_deref(), "a grant's RoleBinding stood with no mark of its record; its standing is recorded now");
        // Nobody was told of it when it was made: told now, once its standing is recorded.
        let told = news::grant_found(
            place.namespace,
            place.name,
            &binding.uid,
            place.approval,
            subject.as_deref(),
        );
        let line = GrantRecord {
            timestamp: stamp,
            event: "grant",
            action: "found",
            approval: place.approval,
            namespace: place.namespace,
            name: place.name,
            objects: Kind::RoleBinding.as_str(),
            subject,
            expires_at: place.expires_at.map(|t| t.to_string()),
            why: Some(FOUND_UNRECORDED),
            replica: &self.instance,
            binds,
        }
        .to_line();
        let stood = Stood { found: true, version };
        if self.stands(&place, &made, line, stood).await {
            self.metrics.grant_object("found", Kind::RoleBinding.as_str());
            self.tell(told).await;
            report.found.push(at);
        } else {
            // Taken back: made again, recorded, once the trail takes records.
            report.failed += 1;
            report.deferred += 1;
        }
    }

    /// Whether the audit trail takes grant records: none waits a moment after asking
    /// (none of this pass's has been put off already, for its not taking them).
    async fn takes_records(&self, report: &Report) -> bool {
        report.deferred == 0
            && self
                .records
                .drained(tokio::time::Instant::now() + DRAIN_WAIT)
                .await
    }

    /// The record of what `gone` says was taken back of the grant at `place`, its record
    /// not written: `None` when nothing was.
    fn unrecorded_removal(&self, place: &Place<'_>, gone: &Made) -> Option<Vec<u8>> {
        objects_named(gone.role.is_some(), gone.binding.is_some()).map(|objects| {
            self.removal(
                place.approval,
                (place.namespace, place.name),
                objects,
                place.expires_at,
                Why::Unrecorded,
                None,
            )
        })
    }

    fn lock_unmarked(&self) -> std::sync::MutexGuard<'_, BTreeSet<(String, String)>> {
        self.unmarked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the record `line` of a grant's objects made (or, `found`, found
    /// standing) as `made` says; once it is written, marks the grant's RoleBinding recorded
    /// and says true. When it is not written within [`RECORD_WAIT`], takes them back and
    /// says false; their removal is recorded if the record still lands, or if they were
    /// found standing (they stood, recorded or not).
    async fn stands(&self, place: &Place<'_>, made: &Made, line: Vec<u8>, stood: Stood) -> bool {
        let found = stood.found;
        let deadline = tokio::time::Instant::now() + RECORD_WAIT;
        let standing = self.records.standing_on(line, deadline).await;
        if let Standing::Written = standing {
            if let Some(uid) = &made.binding {
                self.mark_recorded(place, uid, stood.version.as_deref()).await;
            }
            return true;
        }
        let late = matches!(standing, Standing::Late(_));
        match &standing {
            Standing::Failed(e) => {
                tracing::error!(error = %e, namespace = %place.namespace, name = %place.name,
                "grant record not written; the grant is taken back")
            }
            _ => {
                tracing::error!(namespace = %place.namespace, name = %place.name, wait_secs = RECORD_WAIT.as_secs(),
                "grant record not written in time; the grant is taken back")
            }
        }
        let gone = self.take_back(place, made, late || found).await;
        let line = self.unrecorded_removal(place, &gone);
        match standing {
            // Should the record still land, the taking back is recorded after it.
            Standing::Late(noting) => self.records.settle(noting, line, found),
            _ if found => line.into_iter().for_each(|line| self.records.after(line)),
            _ => {}
        }
        false
    }

    /// Marks the RoleBinding of this uid (and, when given, of this resource version: as
    /// it was read for its record) as recorded, so that no replica records it as found.
    /// Unmarked (the API server's answer an error), it is recorded as found once more by
    /// each other replica once older than the grace, never again by this one: more
    /// records, never a missing one.
    async fn mark_recorded(&self, place: &Place<'_>, uid: &str, version: Option<&str>) {
        let api: Api<RoleBinding> = Api::namespaced(self.client.clone(), place.namespace);
        // A uid other than the object's is refused (the field is immutable): never
        // another object of the name; a resource version other than its own, a conflict.
        let mut mark = serde_json::json!({"metadata": {
            "uid": uid,
            "annotations": {rbac::RECORDED_ANNOTATION: self.instance},
        }});
        if let Some(version) = version {
            mark["metadata"]["resourceVersion"] = version.into();
        }
        let params = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..PatchParams::default()
        };
        match api.patch(place.name, &params, &Patch::Merge(&mark)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {
                tracing::warn!(namespace = %place.namespace, name = %place.name,
                    "a grant's RoleBinding was gone before it was marked recorded");
            }
            // Refused: changed or made again meanwhile (409, 422), or a policy refuses the
            // update (403, or an admission webhook's code). Not recorded again by this
            // replica as it stood; as it stands after a change, it is.
            Err(kube::Error::Api(s)) if (400..500).contains(&s.code) => {
                if let Some(version) = version {
                    self.lock_unmarked()
                        .insert((uid.to_string(), version.to_string()));
                }
                tracing::warn!(namespace = %place.namespace, name = %place.name, error = %s,
                    "a grant's RoleBinding is recorded but its mark was refused; other replicas may record it as found");
            }
            Err(e) => {
                tracing::warn!(namespace = %place.namespace, name = %place.name, error = %e,
                    "a grant's RoleBinding is recorded but not marked so; it will be recorded again as found");
            }
        }
    }

    /// Deletes the object of this uid (not one made again under its name meanwhile), and
    /// sees it gone: a finalizer someone put on it (jitgate puts none) would keep it in
    /// force, being deleted, for as long as it stays, so jitgate takes them off.
    async fn delete(&self, kind: Kind, namespace: &str, name: &str, uid: &str) -> Result<(), kube::Error> {
        match kind {
            Kind::Role => delete_in(Api::<Role>::namespaced(self.client.clone(), namespace), name, uid).await,
            Kind::RoleBinding => {
                delete_in(
                    Api::<RoleBinding>::namespaced(self.client.clone(), namespace),
                    name,
                    uid,
                )
                .await
            }
        }
    }

    /// Deletes what this replica has just created of a grant whose record was not
    /// written, the RoleBinding first, and says what it removed. What cannot be deleted now
    /// is deleted at the start of each pass until it is gone (its removal then recorded
    /// when `late`: the creation's record may still land). A removal whose record cannot
    /// be written stands (taking power away needs no record to be safe).
    async fn take_back(&self, place: &Place<'_>, made: &Made, late: bool) -> Made {
        let mut gone = Made::default();
        for (kind, uid) in [(Kind::RoleBinding, &made.binding), (Kind::Role, &made.role)] {
            let Some(uid) = uid else { continue };
            let left = Leftover {
                kind,
                namespace: place.namespace.to_string(),
                name: place.name.to_string(),
                uid: uid.clone(),
                approval: place.approval.map(str::to_string),
                recorded: late,
            };
            if self.delete_leftover(left).await {
                match kind {
                    Kind::Role => gone.role = Some(uid.clone()),
                    Kind::RoleBinding => gone.binding = Some(uid.clone()),
                }
            }
        }
        gone
    }

    /// Deletes what [`Reconciler::take_back`] could not, before anything else is done.
    async fn take_back_leftover(&self) {
        let leftover = std::mem::take(&mut *self.leftover.lock().unwrap_or_else(|e| e.into_inner()));
        for left in leftover {
            let line = left.recorded.then(|| {
                let place = (left.namespace.as_str(), left.name.as_str());
                self.removal(
                    left.approval.as_deref(),
                    place,
                    left.kind.as_str(),
                    None,
                    Why::Unrecorded,
                    None,
                )
            });
            if self.delete_leftover(left).await
                && let Some(line) = line
            {
                self.records.after(line);
            }
        }
    }

    /// The record of a grant object (or both) removed by this replica: its approval, its
    /// namespace and name, which objects, the expiry they carried, and why.
    fn removal(
        &self,
        approval: Option<&str>,
        (namespace, name): (&str, &str),
        objects: &str,
        expires_at: Option<Timestamp>,
        why: Why,
        held: Option<&Holds>,
    ) -> Vec<u8> {
        // A RoleBinding's removal says whom it bound and to what, as listed: for one that
        // named no approval (made by hand), its only record.
        let (subject, binds) = held.map_or((None, None), |held| named(held, namespace));
        GrantRecord {
            timestamp: Timestamp::now().to_string(),
            event: "grant",
            action: "removed",
            approval,
            namespace,
            name,
            objects,
            subject,
            expires_at: expires_at.map(|t| t.to_string()),
            why: Some(why.as_str()),
            replica: &self.instance,
            binds,
        }
        .to_line()
    }

    /// Deletes an unrecorded grant object; says whether this call removed it. One already
    /// gone (or another object by now, made again under its name) was removed by someone
    /// else: false, and not tried again. Else it is kept to try again next pass.
    async fn delete_leftover(&self, left: Leftover) -> bool {
        match self
            .delete(left.kind, &left.namespace, &left.name, &left.uid)
            .await
        {
            Ok(()) => {
                self.metrics.grant_object("removed", left.kind.as_str());
                true
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => false,
            Err(e) => {
                tracing::error!(kind = left.kind.as_str(), namespace = %left.namespace, name = %left.name, error = %e,
                    "a grant object whose record was not written was not taken back; trying again next pass");
                self.leftover.lock().unwrap_or_else(|e| e.into_inner()).push(left);
                false
            }
        }
    }

    async fn tell(&self, notice: news::Notice) {
        self.events.write(&notice, &self.metrics).await;
    }
}

/// What one call of [`Reconciler::create`] did.
#[derive(Debug, Default)]
struct Made {
    /// The uid of the Role this call created.
    role: Option<String>,
    /// The uid of the RoleBinding this call created.
    binding: Option<String>,
    /// An object of the grant's name is not as jitgate makes it.
    conflict: bool,
}

impl Made {
    /// The objects a record names, when this call created any.
    fn objects(&self) -> Option<&'static str> {
        objects_named(self.role.is_some(), self.binding.is_some())
    }
}

/// How a record names a grant's Role, RoleBinding or both.
fn objects_named(role: bool, binding: bool) -> Option<&'static str> {
    match (role, binding) {
        (true, true) => Some("Role,RoleBinding"),
        (true, false) => Some("Role"),
        (false, true) => Some("RoleBinding"),
        (false, false) => None,
    }
}

/// What a record a grant stands on is of: a grant found standing (else one made), and
/// the resource version of its RoleBinding as read for the record.
#[derive(Debug, Default)]
struct Stood {
    found: bool,
    version: Option<String>,
}

/// Where a grant's objects are, whose, and the expiry they carry: what recording, marking
/// and taking them back need.
struct Place<'a> {
    namespace: &'a str,
    name: &'a str,
    approval: Option<&'a str>,
    expires_at: Option<Timestamp>,
}

/// What a RoleBinding in `namespace` holds, as its records name it: its subjects
/// ([`subjects_text`]) and what it binds (`Role/<name>`, `ClusterRole/<name>`). A Role's
/// rules name neither.
fn named(held: &Holds, namespace: &str) -> (Option<String>, Option<String>) {
    match held {
        Holds::Binding { role, subjects } => (
            subjects_text(subjects.iter().map(|(k, n)| (k.as_str(), n.as_str())), namespace),
            Some(format!("{}/{}", role.0, role.1)),
        ),
        Holds::Rules(_) => (None, None),
    }
}

/// The most of a record's subjects text: the API server does not bound a subject's name,
/// and a record past the 1 MiB the audit log's opener reads back from its end would not be
/// found sealed at the next start.
const SUBJECTS_MAX: usize = 64 * 1024;

/// Subjects (kind, name) as records write them, joined with `,`: `user:<name>`,
/// `group:<name>`; a ServiceAccount as the user it is, in `namespace` unless its name
/// gives one (`<namespace>:<name>`, as [`holds_of`] keeps it). At most [`SUBJECTS_MAX`]
/// bytes, cut at a character and ended with `…` past it.
fn subjects_text<'a>(subjects: impl Iterator<Item = (&'a str, &'a str)>, namespace: &str) -> Option<String> {
    let named: Vec<String> = subjects
        .map(|(kind, name)| match kind {
            "User" => format!("user:{name}"),
            "Group" => format!("group:{name}"),
            "ServiceAccount" if name.contains(':') => format!("user:system:serviceaccount:{name}"),
            "ServiceAccount" => format!("user:system:serviceaccount:{namespace}:{name}"),
            other => format!("{}:{name}", other.to_ascii_lowercase()),
        })
        .collect();
    (!named.is_empty()).then(|| news::clipped(named.join(","), SUBJECTS_MAX))
}

/// A grant object created but not recorded, which could not be taken back at once.
#[derive(Debug)]
struct Leftover {
    kind: Kind,
    namespace: String,
    name: String,
    uid: String,
    approval: Option<String>,
    /// Its creation's record may land (or it was found standing): its removal is recorded too.
    recorded: bool,
}

/// What a Role holds: its rules, in the form [`plan`] compares.
fn rules_of(rules: Option<Vec<PolicyRule>>) -> Holds {
    Holds::Rules(rules.unwrap_or_default().into_iter().map(rule_form).collect())
}

/// What a RoleBinding holds: its Role and its subjects.
fn holds_of(binding: &RoleBinding) -> Holds {
    Holds::Binding {
        role: (binding.role_ref.kind.clone(), binding.role_ref.name.clone()),
        subjects: binding
            .subjects
            .iter()
            .flatten()
            .map(|s| match s.namespace.as_deref().filter(|n| !n.is_empty()) {
                // A ServiceAccount's own namespace kept with its name (jitgate binds none:
                // this is for the records of bindings it did not make).
                Some(ns) if s.kind == "ServiceAccount" => (s.kind.clone(), format!("{ns}:{}", s.name)),
                _ => (s.kind.clone(), s.name.clone()),
            })
            .collect(),
    }
}

/// [`Reconciler::delete`] for one kind. RBAC still grants through a Role or RoleBinding
/// that is being deleted, and the API server accepts a change of finalizers alone from
/// anyone who may patch it, without the escalation check; no finalizer can be added once
/// deletion has begun, so taking them off then ends it.
async fn delete_in<K>(api: Api<K>, name: &str, uid: &str) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    // Left: the object is still there, being deleted; Right: it is gone.
    let Some(pending) = api.delete(name, &params).await?.left() else {
        return Ok(());
    };
    if pending.meta().finalizers.as_ref().is_some_and(|f| !f.is_empty()) {
        // The uid in the patch is a precondition too.
        let off = serde_json::json!({"metadata": {"uid": uid, "finalizers": null}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&off))
            .await?;
    }
    Ok(())
}

/// The Role and RoleBinding of a grant.
pub fn objects(g: &Grant) -> (Role, RoleBinding) {
    let metadata = ObjectMeta {
        name: Some(g.name.clone()),
        namespace: Some(g.namespace.clone()),
        labels: Some(BTreeMap::from([
            (rbac::MANAGED_BY.0.to_string(), rbac::MANAGED_BY.1.to_string()),
            (rbac::GRANT_LABEL.to_string(), rbac::grant_label(&g.approval)),
        ])),
        annotations: Some(BTreeMap::from([
            (rbac::APPROVAL_ANNOTATION.to_string(), g.approval.clone()),
            (rbac::EXPIRES_ANNOTATION.to_string(), g.expires_at.to_string()),
        ])),
        ..ObjectMeta::default()
    };
    let rules = g
        .rules
        .iter()
        .map(|r| PolicyRule {
            api_groups: Some(r.api_groups.clone()),
            resources: Some(r.resources.clone()),
            resource_names: Some(r.resource_names.clone()).filter(|n| !n.is_empty()),
            verbs: r.verbs.iter().map(|v| v.to_string()).collect(),
            non_resource_urls: None,
        })
        .collect();
    let (kind, name) = rbac::subject_kind(&g.subject);
    let role = Role {
        metadata: metadata.clone(),
        rules: Some(rules),
    };
    let binding = RoleBinding {
        metadata,
        role_ref: RoleRef {
            api_group: RBAC_GROUP.into(),
            kind: "Role".into(),
            name: g.name.clone(),
        },
        subjects: Some(vec![RbacSubject {
            api_group: Some(RBAC_GROUP.into()),
            kind: kind.into(),
            name: name.into(),
            namespace: None,
        }]),
    };
    (role, binding)
}

fn rule_form(r: PolicyRule) -> RuleForm {
    RuleForm::new(
        r.api_groups.unwrap_or_default(),
        r.resources.unwrap_or_default(),
        r.resource_names.unwrap_or_default(),
        r.verbs,
    )
}

fn found_of(kind: Kind, meta: ObjectMeta, holds: Holds) -> Option<Found> {
    let annotation = |key: &str| meta.annotations.as_ref().and_then(|a| a.get(key)).cloned();
    Some(Found {
        kind,
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
        uid: meta.uid.clone()?,
        approval: annotation(rbac::APPROVAL_ANNOTATION),
        expires_at: annotation(rbac::EXPIRES_ANNOTATION).and_then(|t| t.parse().ok()),
        created_at: meta.creation_timestamp.map(|t| t.0),
        recorded: annotation(rbac::RECORDED_ANNOTATION).is_some(),
        holds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_records_subjects_are_named_and_bounded_whatever_the_binding_holds() {
        let text = subjects_text(
            [
                ("User", "dave"),
                ("Group", "sre"),
                ("ServiceAccount", "ci:builder"),
                ("ServiceAccount", "sa"),
            ]
            .into_iter(),
            "prod",
        );
        assert_eq!(
            text.as_deref(),
            Some(
                "user:dave,group:sre,user:system:serviceaccount:ci:builder,user:system:serviceaccount:prod:sa"
            )
        );
        assert_eq!(subjects_text(std::iter::empty(), "prod"), None);
        // A name of 1 MB (the API server takes it) is cut, marked so, in one record.
        let huge = "é".repeat(512 * 1024);
        let text = subjects_text([("User", "dave"), ("User", huge.as_str())].into_iter(), "prod").unwrap();
        assert!(text.len() <= SUBJECTS_MAX, "{}", text.len());
        assert!(text.starts_with("user:dave,user:éé") && text.ends_with('…'));
    }
}
