//! News: what the people who must act are told, through the cluster itself: Kubernetes Events
//! (`events.k8s.io/v1`) for a request filed, approved, revoked, about to expire and
//! expired, a break-glass entry used, and a denial of a gated action; `kubectl get events
//! -n jitgate-system` and `kubectl describe` show these. With `serve --notifications`, the
//! replica that created an Event also hands its notice to `notices` (chat, webhook, mail),
//! whose messages are written from the notice's [`Facts`].
//!
//! What to tell is decided here, with no I/O ([`changes`], [`due`], [`answered`]); the
//! [`emit`] task writes the Events. Every notice has a name derived from what it says
//! (the entry, what happened to it, and for denials the minute), which the Event's name is
//! keyed from with the replicas' shared secret ([`emit::Events`]), so the replicas, which
//! all see the same approvals and may all see the same denials, write the same Event
//! name, and nobody else can work it out: the API server keeps the first and refuses the
//! others (409). Duplicates are
//! impossible by construction, and a retry loop of identical denials makes at most one
//! Event a minute. Notes never hold object data: who, what scope, the reason the
//! requester wrote, and times.

pub mod emit;

use crate::approvals::{Approval, ConfigMapRef, Snapshot, State, state_of};
use crate::decision::{Decision, Reason, Request};
use crate::explain::RequestCommand;
use crate::policy::PolicySet;
use jiff::{SignedDuration, Timestamp};
use std::collections::HashMap;
use std::sync::Arc;

/// The default lead time of an "about to expire" notice.
pub const EXPIRY_LEAD: SignedDuration = SignedDuration::from_mins(10);
/// How long after an entry expired an "expired" notice is still worth writing (a replica
/// starting later does not announce old news).
const EXPIRED_NEWS: SignedDuration = SignedDuration::from_hours(1);
/// The longest note the API server takes.
const NOTE_MAX: usize = 1024;
/// The longest name, user, object or policy a notice's facts hold (bytes): a review may
/// carry a name of megabytes (forged, or never an object), and every message and queue
/// is built from the facts.
pub const NAME_MAX: usize = 256;
/// The longest reason, or command, the facts hold (bytes).
pub const TEXT_MAX: usize = 1024;
/// The most names a list of the facts holds (policies, groups, approvers, levels).
pub const LIST_MAX: usize = 32;
/// The longest name of an object the API server takes; a review naming a longer one is
/// about no object.
const OBJECT_NAME_MAX: usize = 253;

/// What an Event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regarding {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// The object's uid, when the request carried the object: `kubectl describe` finds
    /// the Events about an object by it.
    pub uid: Option<String>,
}

/// One Event to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// What makes it the same news on every replica; the Event's name is keyed from it
    /// ([`emit::Events`]), and once the Event is written, the notice handed on carries that
    /// name instead.
    pub name: String,
    /// Where the Event is written: the namespace of what it is about.
    pub namespace: String,
    /// `RequestFiled`, `Approved`, `Revoked`, `ExpiringSoon`, `Expired`, `BreakGlassUsed`,
    /// `Denied`, `GrantCreated`, `GrantFound`, `GrantRemoved`.
    pub reason: &'static str,
    /// `Normal` or `Warning`.
    pub warning: bool,
    /// What jitgate did or saw: `Request`, `Approve`, `Revoke`, `Expire`, `Deny`, `Allow`,
    /// `Grant`.
    pub action: &'static str,
    pub note: String,
    pub regarding: Regarding,
    pub related: Option<Regarding>,
    /// What the news is about, piece by piece, for messages to people (`notices`): never
    /// object data.
    pub facts: Facts,
}

/// The pieces of a notice that a chat message or a mail is written from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Facts {
    /// Who asked, or whom the entry is for: `user:alice`, `group:sre`.
    pub requester: String,
    /// The requester's username, when the entry is for a user.
    pub requester_user: Option<String>,
    /// The operations or verbs: `UPDATE`, `get`.
    pub operations: String,
    /// The object: `prod/secrets/db-password`.
    pub object: String,
    /// The reason the requester wrote.
    pub justification: String,
    /// The gating policies.
    pub policies: Vec<String>,
    /// The groups that may approve under them (empty: anyone who may edit the approvals).
    pub approver_groups: Vec<String>,
    /// The entry's key (`kubectl jitgate approve KEY`), when the news is about an entry.
    pub key: Option<String>,
    pub expires_at: Option<Timestamp>,
    /// For a request, how long it asks for; for an expiry warning, the time left.
    pub duration: Option<SignedDuration>,
    /// The change the entry is pinned to (`sha256:…`); `None`: any change in its scope.
    pub change: Option<String>,
    /// Approvers still needed, and the levels still unmet, in words (`1 of security`).
    pub still_needed: u32,
    pub missing_levels: Vec<String>,
    /// Who approved in this piece of news.
    pub approvers_added: Vec<String>,
    /// For a denial, the command that asks for exactly what was denied.
    pub ask: Option<String>,
    pub break_glass: bool,
    /// The same news as another notice, written again about the object itself so that
    /// `kubectl describe` shows it: people are not told it twice.
    pub copy: bool,
}

impl Facts {
    /// The same facts, each text clipped to a fixed size (marked `…`) and each list to
    /// [`LIST_MAX`] names: what a message or a queue holds is bounded, whatever a review
    /// or an entry carried.
    pub fn bounded(self) -> Facts {
        let name = |s: String| clipped(s, NAME_MAX);
        let list = |l: Vec<String>| l.into_iter().take(LIST_MAX).map(name).collect();
        Facts {
            requester: name(self.requester),
            requester_user: self.requester_user.map(name),
            operations: name(self.operations),
            object: name(self.object),
            justification: clipped(self.justification, TEXT_MAX),
            policies: list(self.policies),
            approver_groups: list(self.approver_groups),
            // An entry's key is a ConfigMap's name and key (each at most 253 bytes).
            key: self.key.map(|k| clipped(k, 2 * NAME_MAX)),
            expires_at: self.expires_at,
            duration: self.duration,
            change: self.change.map(name),
            still_needed: self.still_needed,
            missing_levels: list(self.missing_levels),
            approvers_added: list(self.approvers_added),
            ask: self.ask.map(|a| clipped(a, TEXT_MAX)),
            break_glass: self.break_glass,
            copy: self.copy,
        }
    }

    fn of_entry(a: &Approval, policies: &PolicySet, now: Timestamp) -> Facts {
        let scope = a.scope().to_string();
        let (operations, object) = scope.split_once(' ').unwrap_or(("", &scope));
        let gating = policies.gating_scope(&a.scope());
        let requester = a.subject.user().unwrap_or_default();
        let found = crate::approvals::approvers(a, requester, now);
        let required = crate::policy::required_approvers(&gating).unwrap_or(1);
        let levels = crate::policy::required_levels(&gating);
        let approver_groups = crate::policy::approver_groups(&gating);
        Facts {
            requester: a.subject.to_string(),
            requester_user: a.subject.user().map(str::to_string),
            operations: operations.to_string(),
            object: object.to_string(),
            justification: a.reason.to_string(),
            policies: gating.iter().map(|p| p.name.clone()).collect(),
            approver_groups,
            key: Some(a.key().to_string()),
            expires_at: Some(a.expires_at),
            duration: a
                .rare
                .valid_for
                .or_else(|| a.requested_at().map(|at| a.expires_at.duration_since(at))),
            change: a.rare.change.clone(),
            still_needed: required.saturating_sub(found.count()),
            missing_levels: found
                .unmet(&levels)
                .iter()
                .filter_map(|u| levels.get(u.level).map(|l| l.describe(u.missing)))
                .collect(),
            approvers_added: Vec::new(),
            ask: None,
            break_glass: a.break_glass,
            copy: false,
        }
    }
}

impl Notice {
    /// The Event name of the notice [`Notice::about_entry`] makes of these.
    fn entry_name(reason: &str, a: &Approval, salt: &str) -> String {
        event_name(&[reason, &a.id, salt])
    }

    fn about_entry(
        a: &Approval,
        home: &ConfigMapRef,
        reason: &'static str,
        action: &'static str,
        salt: &str,
        note: String,
        facts: Facts,
    ) -> Self {
        let configmap = a.id.split_once('/').map_or(home.name.as_str(), |(cm, _)| cm);
        Notice {
            name: Notice::entry_name(reason, a, salt),
            namespace: home.namespace.clone(),
            reason,
            warning: matches!(
                reason,
                "Revoked" | "ExpiringSoon" | "Expired" | "BreakGlassUsed" | "Denied"
            ),
            action,
            note: clip(note),
            regarding: configmap_ref(&home.namespace, configmap),
            related: None,
            facts: facts.bounded(),
        }
    }
}

fn configmap_ref(namespace: &str, name: &str) -> Regarding {
    Regarding {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: namespace.into(),
        name: name.into(),
        uid: None,
    }
}

/// `jitgate.` and the SHA-256 of the parts, each after its length: what makes a notice the
/// same news, from which its Event's name is keyed. Whole: two pieces of news of other
/// facts never share it (a requester who chooses the facts of two notices could make a
/// shortened digest collide offline, and the second would go untold).
fn event_name(parts: &[&str]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    format!("jitgate.{}", crate::digest::hex_of(ctx.finish().as_ref()))
}

fn clip(note: String) -> String {
    clipped(note, NOTE_MAX)
}

/// `s`, at most `max` bytes: when longer, cut at a character and ended with `…`.
pub fn clipped(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max.saturating_sub('…'.len_utf8());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// What changed between two loads of the approvals: requests filed, approvers added,
/// entries removed before they expired. The first load after start is no news.
/// A pass makes at most `limit` notices, of those whose Event name `told` does not know
/// already, starting at `from` (the approvals before, then those after, counted on): with
/// the place where the next pass over the same two loads goes on when it stopped short (a
/// file or ConfigMaps replaced by tens of thousands of new requests would otherwise make all
/// their notices at once). Passes go on from where the last stopped, not from what `told`
/// remembers, so that they come to the end however little it remembers.
pub fn changes(
    before: &Snapshot,
    after: &Snapshot,
    policies: &PolicySet,
    now: Timestamp,
    told: impl Fn(&str) -> bool,
    (from, limit): (usize, usize),
) -> (Vec<Notice>, Option<usize>) {
    let old: HashMap<&str, &Arc<Approval>> = before.approvals.iter().map(|a| (a.id.as_str(), a)).collect();
    let new: HashMap<&str, &Arc<Approval>> = after.approvals.iter().map(|a| (a.id.as_str(), a)).collect();
    let home = &after.home;
    let mut out = Vec::new();
    // Removals first.
    let removed_len = before.approvals.len();
    for (i, a) in before.approvals.iter().enumerate().skip(from) {
        if out.len() >= limit {
            return (out, Some(i));
        }
        // Removed before it expired, as of the load that no longer holds it (passes may
        // catch up on it minutes later).
        if new.contains_key(a.id.as_str()) || state_of(a, Some(policies), after.made_at).0 == State::Expired {
            continue;
        }
        let until = a.expires_at.to_string();
        if !told(&Notice::entry_name("Revoked", a, &until)) {
            out.push(Notice::about_entry(
                a,
                home,
                "Revoked",
                "Revoke",
                &until,
                format!(
                    "{}'s {} was removed before it expired: {}",
                    a.subject,
                    a.scope(),
                    a.reason
                ),
                Facts::of_entry(a, policies, now),
            ));
        }
    }
    for (i, a) in after
        .approvals
        .iter()
        .enumerate()
        .skip(from.saturating_sub(removed_len))
    {
        if out.len() >= limit {
            return (out, Some(removed_len + i));
        }
        let (state, counted, required) = state_of(a, Some(policies), now);
        let needed = required.unwrap_or(1);
        match old.get(a.id.as_str()) {
            None if state == State::Pending => {
                let filed = a.expires_at.to_string();
                if told(&Notice::entry_name("RequestFiled", a, &filed)) {
                    continue;
                }
                out.push(Notice::about_entry(
                    a,
                    home,
                    "RequestFiled",
                    "Request",
                    &filed,
                    format!(
                        "{} asks for {} until {}: {}. It needs {needed} approver{} other than the requester: kubectl jitgate approve {}",
                        a.subject,
                        a.scope(),
                        a.expires_at,
                        a.reason,
                        if needed == 1 { "" } else { "s" },
                        a.key()
                    ),
                    Facts::of_entry(a, policies, now),
                ));
            }
            previous => {
                let before_names: &[crate::approvals::Name] = previous.map_or(&[], |p| &*p.approved_by);
                let added: Vec<&str> = a
                    .approved_by
                    .iter()
                    .filter(|n| !before_names.contains(n))
                    .map(|n| &**n)
                    .collect();
                if added.is_empty() || a.break_glass {
                    continue;
                }
                let approvers = a.approved_by.join(",");
                if told(&Notice::entry_name("Approved", a, &approvers)) {
                    continue;
                }
                let still = needed.saturating_sub(counted);
                out.push(Notice::about_entry(
                    a,
                    home,
                    "Approved",
                    "Approve",
                    &approvers,
                    format!(
                        "{} approved {}'s {} ({counted} of {needed}); {}",
                        added.join(", "),
                        a.subject,
                        a.scope(),
                        if still == 0 {
                            format!("active until {}", a.expires_at)
                        } else {
                            format!(
                                "{still} more approver{} needed",
                                if still == 1 { "" } else { "s" }
                            )
                        }
                    ),
                    Facts {
                        approvers_added: added.iter().map(|n| n.to_string()).collect(),
                        ..Facts::of_entry(a, policies, now)
                    },
                ));
            }
        }
    }
    (out, None)
}

/// What time alone makes news of: an active approval expiring within `lead`, and one
/// that expired within the last hour; at most `limit` notices, of those whose Event name
/// `told` does not know already (the rest are for a later pass: a hundred thousand
/// approvals made together expire together, and their notices, a kilobyte or more each,
/// were all held at once while written one by one). Starts at approval `from`; with where
/// the next pass goes on when it stopped short, as [`changes`].
pub fn due(
    snapshot: &Snapshot,
    policies: &PolicySet,
    now: Timestamp,
    lead: SignedDuration,
    told: impl Fn(&str) -> bool,
    (from, limit): (usize, usize),
) -> (Vec<Notice>, Option<usize>) {
    let mut out = Vec::new();
    for (i, a) in snapshot.approvals.iter().enumerate().skip(from) {
        if out.len() >= limit {
            return (out, Some(i));
        }
        let (state, _, _) = state_of(a, Some(policies), now);
        let left = a.expires_at.duration_since(now);
        if matches!(state, State::Active | State::BreakGlass)
            && left <= lead
            && !told(&Notice::entry_name("ExpiringSoon", a, &a.expires_at.to_string()))
        {
            out.push(Notice::about_entry(
                a,
                &snapshot.home,
                "ExpiringSoon",
                "Expire",
                &a.expires_at.to_string(),
                format!(
                    "{}'s {} expires at {} (in {}); ask again now if the work is not done",
                    a.subject,
                    a.scope(),
                    a.expires_at,
                    crate::duration::human(left.max(SignedDuration::from_mins(1)))
                ),
                Facts {
                    duration: Some(left),
                    ..Facts::of_entry(a, policies, now)
                },
            ));
        } else if state == State::Expired {
            // An approval expires at its expiry; a request, when it has waited its
            // policies' requestTTL without its approvers.
            let (at, what) = if now >= a.expires_at {
                (a.expires_at, "expired")
            } else {
                let deadline = crate::approvals::request_deadline(a, &policies.gating_scope(&a.scope()));
                (deadline.unwrap_or(now), "expired unapproved")
            };
            if now.duration_since(at) <= EXPIRED_NEWS
                && !told(&Notice::entry_name("Expired", a, &at.to_string()))
            {
                out.push(Notice::about_entry(
                    a,
                    &snapshot.home,
                    "Expired",
                    "Expire",
                    &at.to_string(),
                    format!("{}'s {} {what} at {at}", a.subject, a.scope()),
                    Facts::of_entry(a, policies, now),
                ));
            }
        }
    }
    (out, None)
}

/// A grant's Role and RoleBinding were created (`serve --grants rbac`): an Event in the
/// grant's namespace, about its RoleBinding.
pub fn grant_created(g: &crate::rbac::Grant) -> Notice {
    grant_notice(
        "GrantCreated",
        "Grant",
        &g.namespace,
        &g.name,
        &g.expires_at.to_string(),
        format!(
            "{} holds Role {} until {} (approval {})",
            g.subject, g.name, g.expires_at, g.approval
        ),
    )
}

/// A RoleBinding with the grants' label (of this uid) was found standing with no mark that
/// its creation was recorded (a replica stopped or lost the API server's answer between
/// making and recording it, a record still waited at exit, it predates the marks, or a hand
/// made it), and its standing recorded now: a Warning, since nobody was told when it was
/// made. Who it binds and the approval are as the RoleBinding says.
pub fn grant_found(
    namespace: &str,
    name: &str,
    uid: &str,
    approval: Option<&str>,
    subject: Option<&str>,
) -> Notice {
    Notice {
        warning: true,
        ..grant_notice(
            "GrantFound",
            "Grant",
            namespace,
            name,
            uid,
            format!(
                "RoleBinding {name} stood with no record of its creation; recorded now ({} holds it; annotated approval {})",
                subject.unwrap_or("nobody named"),
                approval.unwrap_or("unknown")
            ),
        )
    }
}

/// A grant's RoleBinding (of this uid) was removed, and `why`.
pub fn grant_removed(namespace: &str, name: &str, uid: &str, approval: Option<&str>, why: &str) -> Notice {
    grant_notice(
        "GrantRemoved",
        "Revoke",
        namespace,
        name,
        uid,
        format!(
            "RoleBinding {name} removed ({why}; approval {})",
            approval.unwrap_or("unknown")
        ),
    )
}

fn grant_notice(
    reason: &'static str,
    action: &'static str,
    namespace: &str,
    name: &str,
    salt: &str,
    note: String,
) -> Notice {
    Notice {
        name: event_name(&[reason, namespace, name, salt]),
        namespace: namespace.into(),
        reason,
        warning: false,
        action,
        note: clip(note),
        regarding: Regarding {
            api_version: "rbac.authorization.k8s.io/v1".into(),
            kind: "RoleBinding".into(),
            namespace: namespace.into(),
            name: name.into(),
            uid: None,
        },
        related: None,
        facts: Facts::default(),
    }
}

/// What an answer makes news of: a denial of a gated action (one Event a minute for the
/// same user, policy and object, however often it is retried), and a use of a break-glass
/// entry. Each is written about the approvals ConfigMap engineers ask in and, when the
/// request names an existing object, about that object too, so `kubectl describe` on it
/// shows the denial.
/// `policies` are the ones the decision was made under: whom the news concerns (the
/// approver groups of its gating policies) is looked up there, for news only, not on
/// every decision.
pub fn answered(req: Request<'_, '_>, d: &Decision, policies: &PolicySet) -> Vec<Notice> {
    if !is_news(d) {
        return Vec::new();
    }
    let minute = d.at.as_second().div_euclid(60).to_string();
    let (reason, action, note, salt) = match &d.reason {
        Reason::BreakGlass { approval, .. } => (
            "BreakGlassUsed",
            "Allow",
            format!(
                "{} used break-glass entry {} for {} of {}; an approver must review it",
                req.user(),
                approval.id,
                req.verb(),
                object(req)
            ),
            approval.id.to_string(),
        ),
        _ => (
            "Denied",
            "Deny",
            format!(
                "{} of {} by {} denied ({}) under policy {}; ask with: {}",
                req.verb(),
                object(req),
                req.user(),
                d.code().as_str(),
                d.policies().join(", "),
                RequestCommand::For(req),
            ),
            d.policies().join(","),
        ),
    };
    let parts = [
        reason,
        req.user(),
        &salt,
        req.verb(),
        req.namespace(),
        &req.resource_path(),
        req.name(),
        &minute,
    ];
    let gated = match req {
        // The object an admission review names, unless it is being created (it does not
        // exist yet). A subresource's kind is its options' or its scale's; the object is
        // the parent, whose kind is known for the subresources policies gate.
        Request::Admission(r)
            if !r.name.is_empty()
                && r.name.len() <= OBJECT_NAME_MAX
                && r.operation != crate::operation::Operation::Create =>
        {
            let kind = if r.sub_resource.is_empty() {
                Some(r.kind.kind.as_str()).filter(|k| !k.is_empty())
            } else {
                match r.resource.resource.as_str() {
                    "pods" => Some("Pod"),
                    "deployments" => Some("Deployment"),
                    "statefulsets" => Some("StatefulSet"),
                    "deploymentconfigs" => Some("DeploymentConfig"),
                    _ => None,
                }
            };
            kind.map(|kind| Regarding {
                api_version: if r.resource.group.is_empty() {
                    r.resource.version.clone()
                } else {
                    format!("{}/{}", r.resource.group, r.resource.version)
                },
                kind: kind.to_string(),
                namespace: r.namespace.clone(),
                name: r.name.clone(),
                // The object itself (not a subresource's options): its uid, read from
                // its metadata alone.
                uid: [r.old_object, r.object]
                    .into_iter()
                    .flatten()
                    .filter(|_| r.sub_resource.is_empty())
                    .find_map(|raw| object_uid(raw.get())),
            })
        }
        _ => None,
    };
    let break_glass = reason == "BreakGlassUsed";
    let entry = match &d.reason {
        Reason::BreakGlass { approval, .. } => Some(approval),
        _ => None,
    };
    let facts = Facts {
        requester: format!("user:{}", req.user()),
        requester_user: Some(req.user().to_string()),
        operations: req.verb().to_string(),
        object: object(req),
        // The entry's reason: what the person using it wrote when they broke the glass.
        justification: entry.map(|a| a.reason.to_string()).unwrap_or_default(),
        policies: d.policies().iter().map(|p| p.to_string()).collect(),
        // Whom a break-glass use, or a denial, concerns: mail and `groups:` routes go by it.
        approver_groups: {
            let gating: Vec<&crate::policy::Policy> = policies
                .iter()
                .filter(|p| d.policies().contains(&p.name))
                .collect();
            crate::policy::approver_groups(&gating)
        },
        key: entry.map(|a| a.key().to_string()),
        expires_at: entry.map(|a| a.expires_at),
        ask: (!break_glass).then(|| RequestCommand::For(req).to_string()),
        break_glass,
        ..Facts::default()
    }
    .bounded();
    let home = &d.home;
    let mut out = vec![Notice {
        name: event_name(&parts),
        namespace: home.namespace.clone(),
        reason,
        warning: true,
        action,
        note: clip(note.clone()),
        regarding: configmap_ref(&home.namespace, &home.name),
        related: gated.clone(),
        facts: facts.clone(),
    }];
    if let Some(object) = gated.filter(|o| !o.namespace.is_empty()) {
        out.push(Notice {
            name: event_name(&[&parts[..], &["object"]].concat()),
            namespace: object.namespace.clone(),
            reason,
            warning: true,
            action,
            note: clip(note),
            regarding: object,
            related: Some(configmap_ref(&home.namespace, &home.name)),
            facts: Facts { copy: true, ..facts },
        });
    }
    out
}

/// True for an answer people must hear of: a denial of a gated action, or a use of a
/// break-glass entry.
pub fn is_news(d: &Decision) -> bool {
    matches!(d.reason, Reason::BreakGlass { .. }) || (!d.allowed() && d.requirement().is_some())
}

/// `metadata.uid` of an object, and nothing else of it.
fn object_uid(raw: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Meta {
        uid: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Object {
        metadata: Option<Meta>,
    }
    serde_json::from_str::<Object>(raw)
        .ok()?
        .metadata?
        .uid
        .filter(|u| !u.is_empty())
}

fn object(req: Request<'_, '_>) -> String {
    let ns = if req.namespace().is_empty() {
        String::new()
    } else {
        format!("{}/", req.namespace())
    };
    let name = if req.name().is_empty() {
        String::new()
    } else {
        format!("/{}", req.name())
    };
    format!("{ns}{}{name}", req.resource_path())
}

#[cfg(test)]
pub(crate) mod tests;
