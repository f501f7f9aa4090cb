//! What one pass of the grants reconciler does, decided without I/O: from this replica's
//! view of the approvals and the grant objects found in the cluster, which Roles and
//! RoleBindings to create, which to leave alone, and which to remove and why.
//!
//! Replicas see approvals with some lag, and a lagging replica must not remove a grant
//! that another has just created for an approval it has not seen yet. So an object is
//! removed only when:
//! - (a) its own expiry annotation has passed (the clock, not a view, says so);
//! - (b) this replica saw its approval live and granting, and then saw it gone from the
//!   approvals (revoked or removed): its watch is ordered, so that is not lag; and the
//!   object was created no later than the pass that saw it gone (a grant created after
//!   that is for a later approval of the same id, which this replica may lag behind);
//! - (c) its approval is absent from this replica's view, or present but granting
//!   nothing in it, and the object is older than the grace ([`GRACE`] by default, (longer than any watch lag
//!   jitgate tolerates: past `--max-staleness` the view is stale and nothing is removed
//!   this way at all)).
//!
//! An approval with `maxUses` (writes only: [`crate::rbac::grant_of`] gives one that
//! names reads nothing) has its objects while uses remain, as the admission gate counts
//! them in the usage ConfigMap: (d) once they are spent, its objects are removed (a count
//! never goes down, so no view can be too early to see it). When the counts cannot be
//! read, its objects are neither created nor removed (but for their expiry).
//!
//! An object is never updated: when an approval's expiry is shortened, its objects, which
//! carry the earlier (later) expiry, are removed and made again with the new one, so that
//! the earlier expiry wins even for a replica that is down meanwhile.

use crate::approvals::Snapshot;
use crate::policy::PolicySet;
use crate::rbac::{self, Grant, NoGrant, Rule};
use jiff::{SignedDuration, Timestamp};
use std::collections::{BTreeMap, BTreeSet};

/// How old a grant object must be, by default, before a replica that does not see its
/// approval granting removes it: longer than any watch lag (`serve --grants-grace`).
pub const GRACE: SignedDuration = SignedDuration::from_mins(2);
/// How long a replica remembers an approval it saw gone.
const REMEMBER_GONE: SignedDuration = SignedDuration::from_hours(24);

/// A Role or a RoleBinding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Role,
    RoleBinding,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Role => "Role",
            Kind::RoleBinding => "RoleBinding",
        }
    }
}

/// What a Role or RoleBinding carrying jitgate's grant label holds, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The approval annotation, if any.
    pub approval: Option<String>,
    /// The expiry annotation, if it parses.
    pub expires_at: Option<Timestamp>,
    pub created_at: Option<Timestamp>,
    /// Whether it carries [`rbac::RECORDED_ANNOTATION`]: some replica recorded it.
    pub recorded: bool,
    /// What it holds, in the form [`rbac_form`] writes a grant: a Role's rules, or a
    /// RoleBinding's Role and subjects.
    pub holds: Holds,
}

/// One rule of a Role, each list sorted: two rules that grant the same compare equal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuleForm {
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub verbs: Vec<String>,
}

impl RuleForm {
    pub fn new(
        api_groups: Vec<String>,
        resources: Vec<String>,
        resource_names: Vec<String>,
        verbs: Vec<String>,
    ) -> Self {
        let sorted = |mut v: Vec<String>| {
            v.sort_unstable();
            v.dedup();
            v
        };
        RuleForm {
            api_groups: sorted(api_groups),
            resources: sorted(resources),
            resource_names: sorted(resource_names),
            verbs: sorted(verbs),
        }
    }

    fn of(r: &Rule) -> Self {
        RuleForm::new(
            r.api_groups.clone(),
            r.resources.clone(),
            r.resource_names.clone(),
            r.verbs.iter().map(|v| v.to_string()).collect(),
        )
    }
}

/// A grant object's content, compared with what jitgate would create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holds {
    Rules(BTreeSet<RuleForm>),
    /// The Role it refers to (kind and name), and its subjects (kind and name).
    Binding {
        role: (String, String),
        subjects: BTreeSet<(String, String)>,
    },
}

/// The content of a grant's Role and of its RoleBinding.
pub fn rbac_form(g: &Grant) -> (Holds, Holds) {
    let rules = g.rules.iter().map(RuleForm::of).collect();
    let (kind, name) = crate::rbac::subject_kind(&g.subject);
    let subject = (kind.to_string(), name.to_string());
    (
        Holds::Rules(rules),
        Holds::Binding {
            role: ("Role".into(), g.name.clone()),
            subjects: [subject].into(),
        },
    )
}

/// Why a grant object is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// (a) Its expiry annotation has passed.
    Expired,
    /// (b) Its approval was seen granting, then gone.
    Revoked,
    /// (c) Its approval grants nothing in this view, and the object is older than the grace.
    NotGranted,
    /// A RoleBinding of a grant whose Role is not what jitgate would create: its subject
    /// must not hold a Role jitgate did not verify.
    Unverified,
    /// (d) Its approval's `maxUses` are spent.
    Spent,
    /// Its approval's expiry was moved earlier than the one the object carries: it is
    /// made again with the earlier one.
    Shortened,
    /// Just created, taken back because its record was not written in time (the audit
    /// trail was not taking records); made again once it is.
    Unrecorded,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Expired => "expired",
            Why::Revoked => "revoked",
            Why::NotGranted => "not granted",
            Why::Unverified => "role not as jitgate would create it",
            Why::Spent => "uses spent",
            Why::Shortened => "expiry shortened",
            Why::Unrecorded => "its record was not written in time",
        }
    }
}

/// One pass's work.
#[derive(Debug, Default)]
pub struct Plan {
    /// Grants whose Role or RoleBinding is missing, with which: the Role is created first,
    /// the RoleBinding only once the Role is verified.
    pub create: Vec<Missing>,
    /// Objects to remove, RoleBindings before Roles.
    pub remove: Vec<(Found, Why)>,
    /// Grants whose Role exists but holds other rules than the grant's: left alone, not
    /// bound (never adopted, never widened).
    pub conflicts: Vec<Grant>,
    /// RoleBindings not removed by this pass that carry no mark of a record and are
    /// older than the grace (so not in the middle of another replica's creation): their
    /// creation was never recorded (a replica killed in between, an answer lost, a record
    /// waiting at exit, made before jitgate marked them, or made by hand), so their
    /// standing is recorded now. Whatever this replica's view: a record needs only what
    /// the object says, and a stale view, which removes nothing but by expiry, must not
    /// leave one standing unrecorded.
    pub unrecorded: Vec<Found>,
    /// When the next pass is due by the clock alone: the earliest expiry or end of a
    /// grace among what was seen.
    pub next_due: Option<Timestamp>,
    /// Approvals that would grant by the webhook way but get no objects here, and why
    /// (not those that grant nothing at all now).
    pub refused: Vec<(String, NoGrant)>,
}

/// A grant to create, and which of its objects exist already (verified).
#[derive(Debug, Clone)]
pub struct Missing {
    pub grant: Grant,
    pub role_exists: bool,
    pub binding_exists: bool,
}

/// What a replica remembers between passes: the approvals it saw granting, and when it
/// saw those gone.
#[derive(Debug, Default)]
pub struct Memory {
    live: BTreeSet<String>,
    gone: BTreeMap<String, Timestamp>,
}

/// This replica's view of the approvals: `None` when not loaded or stale (then only
/// expired objects are removed, and nothing is created).
pub struct View<'a> {
    pub snapshot: &'a Snapshot,
    pub policies: &'a PolicySet,
    /// The ids of approvals whose `maxUses` are spent; `None` when the counts could not
    /// be read.
    pub spent: Option<&'a BTreeSet<String>>,
}

/// One pass: what to create and remove, given the view, the objects found, and the time.
pub fn plan(
    view: Option<View<'_>>,
    memory: &mut Memory,
    found: &[Found],
    now: Timestamp,
    grace: SignedDuration,
) -> Plan {
    let mut out = Plan::default();
    let mut wanted: BTreeMap<(String, String), Grant> = BTreeMap::new();
    let mut present: BTreeSet<&str> = BTreeSet::new();
    // Approvals whose uses are spent, and those with maxUses whose count is not known.
    let mut spent: BTreeSet<String> = BTreeSet::new();
    let mut uncounted: BTreeSet<String> = BTreeSet::new();
    if let Some(v) = &view {
        for (a, grant) in rbac::grants_of(v.snapshot, v.policies, now) {
            let g = match grant {
                Ok(g) => g,
                Err(NoGrant::NothingGranted) => continue,
                Err(why) => {
                    out.refused.push((a.id.to_string(), why));
                    continue;
                }
            };
            if g.expires_at <= now {
                continue;
            }
            if g.max_uses.is_some() {
                match v.spent {
                    Some(ids) if ids.contains(&g.approval) => {
                        spent.insert(g.approval);
                        continue;
                    }
                    Some(_) => {}
                    None => {
                        uncounted.insert(g.approval);
                        continue;
                    }
                }
            }
            memory.live.insert(g.approval.clone());
            memory.gone.remove(&g.approval);
            wanted.insert((g.namespace.clone(), g.name.clone()), g);
        }
        for a in v.snapshot.approvals.iter() {
            present.insert(&a.id);
        }
        let vanished: Vec<String> = memory
            .live
            .iter()
            .filter(|id| !present.contains(id.as_str()))
            .cloned()
            .collect();
        for id in vanished {
            memory.live.remove(&id);
            memory.gone.insert(id, now);
        }
        memory.gone.retain(|_, at| *at + REMEMBER_GONE > now);
    }
    let mut due = |t: Timestamp| {
        if t > now {
            out.next_due = Some(out.next_due.map_or(t, |d: Timestamp| d.min(t)));
        }
    };

    // What exists of each wanted grant, and whether it is as jitgate would create it.
    for ((namespace, name), g) in &wanted {
        due(g.expires_at);
        let (rules, binding) = rbac_form(g);
        let of = |kind| {
            found
                .iter()
                .find(|f| f.kind == kind && f.namespace == *namespace && f.name == *name)
        };
        let role = of(Kind::Role);
        let role_ok = role.is_some_and(|r| r.holds == rules && r.approval.as_deref() == Some(&g.approval));
        if role.is_some() && !role_ok {
            out.conflicts.push(g.clone());
            if let Some(b) = of(Kind::RoleBinding) {
                out.remove.push((b.clone(), Why::Unverified));
            }
            continue;
        }
        let found_binding = of(Kind::RoleBinding);
        // An object carrying a later expiry than the approval's (shortened since).
        let outlives = |f: &Found| f.expires_at.is_none_or(|t| t > g.expires_at);
        if let Some(r) = role.filter(|r| outlives(r)) {
            out.remove
                .extend(found_binding.map(|b| (b.clone(), Why::Shortened)));
            out.remove.push((r.clone(), Why::Shortened));
            out.create.push(Missing {
                grant: g.clone(),
                role_exists: false,
                binding_exists: false,
            });
            continue;
        }
        let binding_ok = found_binding.is_some_and(|b| b.holds == binding && !outlives(b));
        if let Some(b) = found_binding
            && !binding_ok
        {
            let why = if b.holds == binding {
                Why::Shortened
            } else {
                Why::Unverified
            };
            out.remove.push((b.clone(), why));
        }
        if !role_ok || !binding_ok {
            out.create.push(Missing {
                grant: g.clone(),
                role_exists: role_ok,
                binding_exists: binding_ok,
            });
        }
    }

    // Everything else found: removed only by the rules above.
    for f in found {
        if wanted.contains_key(&(f.namespace.clone(), f.name.clone())) {
            continue;
        }
        let approval = f.approval.as_deref().unwrap_or_default();
        if spent.contains(approval) {
            out.remove.push((f.clone(), Why::Spent));
            continue;
        }
        if let Some(at) = f.expires_at {
            if at <= now {
                out.remove.push((f.clone(), Why::Expired));
                continue;
            }
            due(at);
        }
        if uncounted.contains(approval) {
            continue;
        }
        let Some(_) = view else { continue };
        let revoked = f.approval.as_ref().and_then(|id| memory.gone.get(id));
        if let (Some(gone_at), Some(created)) = (revoked, f.created_at)
            && created <= *gone_at
        {
            out.remove.push((f.clone(), Why::Revoked));
            continue;
        }
        match f.created_at {
            Some(created) if created + grace <= now => out.remove.push((f.clone(), Why::NotGranted)),
            Some(created) => due(created + grace),
            // The API server always sets it; without it, wait for the expiry.
            None => {}
        }
    }
    out.remove.sort_by_key(|(f, _)| std::cmp::Reverse(f.kind));

    // RoleBindings that stand on, unmarked: their standing is to be recorded, once past
    // the grace (a pass is due then).
    let removed: BTreeSet<&str> = out.remove.iter().map(|(f, _)| f.uid.as_str()).collect();
    for f in found {
        if f.kind != Kind::RoleBinding || f.recorded || removed.contains(f.uid.as_str()) {
            continue;
        }
        match f.created_at {
            Some(created) if created + grace > now => {
                let end = created + grace;
                out.next_due = Some(out.next_due.map_or(end, |d| d.min(end)));
            }
            _ => out.unrecorded.push(f.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests;
