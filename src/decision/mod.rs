//! The decision: pure logic with no I/O. [`decide`] is the one entry point: it takes a
//! request, the policies, the approvals and the time, and returns a complete [`Decision`].
//! A write or a CONNECT (an admission review) and a read (an authorization review) are
//! decided by the same code against the same index; an edit of an approvals ConfigMap is
//! judged by the [`ledger`] through it too. The server, `jitgate check`, the benchmarks
//! and the fuzz targets all call it.
//!
//! Nothing changes a decision once it is made, except [`Decision::uses_exhausted`] and
//! [`Decision::dry_run_not_counted`]: the steps for a side effect (spending a use of a
//! `maxUses` approval), which return a new decision. Failures of the server itself (an unreadable body, an audit log that
//! cannot be written) are not decisions: they are [`crate::refusal::Refusal`]s.

use crate::approvals::{
    Approval, ConfigMapRef, LookupKey, Snapshot, approvers, count_approvers, signature_problems,
};
use crate::ledger;
use crate::policy::{self, Enforcement, Policy, PolicySet, Target};
pub use crate::request::Request;
use jiff::{SignedDuration, Timestamp};
pub use reason::{Code, Outcome, Reason};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// What a decision reads. Nothing behind it does I/O.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub policies: &'a PolicySet,
    pub approvals: Approvals<'a>,
    pub now: Timestamp,
}

/// The approvals a decision may use.
#[derive(Debug, Clone, Copy)]
pub enum Approvals<'a> {
    Loaded(&'a Snapshot),
    /// Nothing loaded yet.
    NotLoaded,
    /// Loaded, but the source has been silent for this long, past its budget.
    Stale {
        silent_for: Duration,
    },
}

/// Where denials point engineers before any approvals ConfigMap is known.
static DEFAULT_HOME: LazyLock<Arc<ConfigMapRef>> = LazyLock::new(|| Arc::new(ConfigMapRef::default()));

/// What an approval must satisfy: the strictest terms of every policy that gates the
/// request (largest minApprovers, shortest maxDuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Names of the gating policies, in load order.
    pub policies: Vec<String>,
    pub min_approvers: u32,
    /// Levels of approvers, each to be met by distinct people (merged across policies).
    pub levels: Vec<policy::Level>,
    pub max_duration: SignedDuration,
    /// How long a break-glass entry may last, when every gating policy allows break-glass
    /// to a group of the requester's; `None` when any does not.
    pub break_glass: Option<SignedDuration>,
    /// The strongest enforcement among the gating policies.
    pub enforcement: Enforcement,
    /// How the answer goes, as far as it depends on how the request came.
    pub via: Via,
}

/// How a request reached jitgate, as far as its answer depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// An admission review: jitgate allows or denies; RBAC has already decided.
    Admission,
    /// An authorization review of a read: jitgate denies, or has no opinion and RBAC
    /// decides.
    Read,
    /// An authorization review of a read under policies that all grant: an approval
    /// grants it (`allowed: true`), even to someone RBAC gives nothing.
    GrantedRead,
    /// An authorization review of a write or a CONNECT under policies that all grant: an
    /// approval grants it; without one jitgate has no opinion (RBAC decides, and
    /// admission gates the write as always), with its reason for the person to read.
    GrantedWrite,
}

impl Requirement {
    fn strictest(policies: &[&Policy], groups: &[String], via: Via) -> Self {
        let break_glass = policies
            .iter()
            .map(|p| {
                p.break_glass
                    .as_ref()
                    .filter(|bg| bg.admits(groups))
                    .map(|bg| bg.max_duration)
            })
            .try_fold(None::<SignedDuration>, |shortest, d| {
                d.map(|d| Some(shortest.map_or(d, |s| s.min(d))))
            })
            .flatten();
        Requirement {
            policies: policies.iter().map(|p| p.name.clone()).collect(),
            min_approvers: policy::required_approvers(policies).unwrap_or(1),
            levels: policy::required_levels(policies),
            max_duration: policies
                .iter()
                .map(|p| p.max_duration)
                .min()
                .unwrap_or(SignedDuration::ZERO),
            break_glass,
            enforcement: policies.iter().map(|p| p.enforcement).max().unwrap_or_default(),
            via,
        }
    }
}

/// A complete decision: why, and what the answer needs to explain itself.
#[derive(Debug, Clone)]
pub struct Decision {
    pub reason: Reason,
    /// The approvals ConfigMap a denial points engineers to.
    pub home: Arc<ConfigMapRef>,
    /// When it was decided.
    pub at: Timestamp,
    /// The cluster and approvals namespace offline signatures must be made for, when the
    /// approvals are loaded: a denial tells the requester what their signer needs.
    pub signing_for: Option<Arc<crate::signing::Binding>>,
}

impl Decision {
    pub fn code(&self) -> Code {
        self.reason.code()
    }

    pub fn outcome(&self) -> Outcome {
        self.reason.outcome()
    }

    /// True unless the outcome is `deny`: `warn` and `dryrun` let the request through.
    pub fn allowed(&self) -> bool {
        self.outcome() != Outcome::Deny
    }

    pub fn policies(&self) -> &[String] {
        self.reason.policies()
    }

    pub fn requirement(&self) -> Option<&Requirement> {
        self.reason.requirement()
    }

    pub fn approval(&self) -> Option<&Arc<Approval>> {
        self.reason.approval()
    }

    /// The `maxUses` approval whose use this grant must record before it is answered.
    pub fn use_to_record(&self) -> Option<&Arc<Approval>> {
        match &self.reason {
            Reason::Approved { approval, .. } | Reason::BreakGlass { approval, .. }
                if approval.max_uses.is_some() =>
            {
                Some(approval)
            }
            _ => None,
        }
    }

    /// One of the two steps that change a decision after it is made: the use of its
    /// `maxUses` approval could not be spent, because every use is spent. The grant
    /// becomes a `uses_exhausted` denial (or, under a policy in rollout, lets the request
    /// through marked so). Any other decision is returned as it was.
    pub fn uses_exhausted(self) -> Decision {
        self.unspent(|requirement, approval| Reason::UsesExhausted {
            requirement,
            approval,
            change: None,
        })
    }

    /// The other step: the grant is a dry run under a `maxUses` approval, which spends no
    /// use, while the API server may still act on it (a token request) or return the
    /// object. The grant becomes a `dry_run_not_counted` denial (or, under a policy in
    /// rollout, lets the request through marked so). Any other decision is returned as
    /// it was.
    pub fn dry_run_not_counted(self) -> Decision {
        self.unspent(|requirement, approval| Reason::DryRunNotCounted {
            requirement,
            approval,
            change: None,
        })
    }

    /// The grant of an approval turned into the denial `denial` makes of its terms.
    fn unspent(self, denial: impl FnOnce(Requirement, Arc<Approval>) -> Reason) -> Decision {
        let reason = match self.reason {
            Reason::Approved {
                requirement,
                approval,
            }
            | Reason::BreakGlass {
                requirement,
                approval,
            } => denial(requirement, approval),
            other => other,
        };
        Decision { reason, ..self }
    }
}

/// Decides one request: an admission review's (`&AdmissionRequest`) or an authorization
/// review's (`&AccessRequest`).
pub fn decide<'r, 'a: 'r>(req: impl Into<Request<'r, 'a>>, inputs: &Inputs<'_>) -> Decision {
    let req = req.into();
    let home = match inputs.approvals {
        Approvals::Loaded(snapshot) => snapshot.home.clone(),
        Approvals::NotLoaded | Approvals::Stale { .. } => DEFAULT_HOME.clone(),
    };
    // The trusted signers' one ConfigMap is guarded by its name and namespace, before and
    // whatever any label says: no label moves a ConfigMap from one guard to the other.
    let signers_at = match inputs.approvals {
        Approvals::Loaded(snapshot) => Some(snapshot.signers.binding().namespace.as_str()),
        Approvals::NotLoaded | Approvals::Stale { .. } => None,
    };
    let reason = match (req, req.target()) {
        (Request::Admission(r), _) if signers_at.is_some_and(|ns| ledger::signers::applies(r, ns)) => {
            match ledger::signers::review(r) {
                Ok(edits) => Reason::SignersChanged { edits },
                Err(violation) => Reason::LedgerRefused { violation },
            }
        }
        (Request::Admission(r), _) if signers_at.is_none() && ledger::signers::may_apply(r) => {
            Reason::LedgerRefused {
                violation: ledger::Violation {
                    id: r.name.clone(),
                    rule: ledger::LedgerRule::GuardCrossed,
                    message: "jitgate has not loaded its approvals, so it cannot tell whether this is its trusted signers ConfigMap, and refuses the edit rather than let it pass unrecorded; try again in a moment".into(),
                },
            }
        }
        (Request::Admission(r), _) if ledger::applies(r) => {
            let signers = match inputs.approvals {
                Approvals::Loaded(snapshot) => Some(&*snapshot.signers),
                Approvals::NotLoaded | Approvals::Stale { .. } => None,
            };
            match ledger::review(r, inputs.policies, signers, inputs.now, ledger::Grace::default()) {
                Ok(edits) => Reason::LedgerAccepted { edits },
                Err(violation) => Reason::LedgerRefused { violation },
            }
        }
        (_, Some(target)) => gate(req, &target, inputs),
        (_, None) => Reason::NotGated,
    };
    Decision {
        reason,
        home,
        at: inputs.now,
        signing_for: match inputs.approvals {
            Approvals::Loaded(snapshot) => Some(snapshot.signers.binding().clone()),
            Approvals::NotLoaded | Approvals::Stale { .. } => None,
        },
    }
}

/// Decides a request the policies may gate.
fn gate(req: Request<'_, '_>, target: &Target<'_>, inputs: &Inputs<'_>) -> Reason {
    let mut matching = inputs.policies.gating(target);
    let via = match req {
        Request::Admission(_) => Via::Admission,
        // Through the authorization webhook a write is only ever granted: admission gates
        // it whatever the answer here, so only the policies that grant have a say.
        Request::Access(_) if !target.operation.is_read() => {
            matching.retain(|p| p.grant);
            Via::GrantedWrite
        }
        // A read is granted only when every policy that gates it grants.
        Request::Access(_) if !matching.is_empty() && matching.iter().all(|p| p.grant) => Via::GrantedRead,
        Request::Access(_) => Via::Read,
    };
    if matching.is_empty() {
        return Reason::NotGated;
    }
    let user = req.user();
    let groups = req.groups();
    let gating: Vec<&Policy> = matching
        .iter()
        .copied()
        .filter(|p| !p.exempts(user, groups))
        .collect();
    if gating.is_empty() {
        return Reason::Exempt {
            policies: matching.iter().map(|p| p.name.clone()).collect(),
        };
    }
    let requirement = Requirement::strictest(&gating, groups, via);
    let snapshot = match inputs.approvals {
        Approvals::Loaded(snapshot) => snapshot,
        Approvals::NotLoaded => return Reason::ApprovalsUnavailable { requirement },
        Approvals::Stale { silent_for } => {
            return Reason::ApprovalsStale {
                requirement,
                silent_for,
            };
        }
    };
    let key = LookupKey {
        user,
        groups,
        namespace: target.namespace,
        resource: target.resource,
        sub_resource: target.sub_resource,
    };
    // A deletecollection deletes every object of the resource in one call: no approval
    // grants it (admission still gates each object's DELETE, and RBAC decides the call
    // itself), so that both ways of granting agree (`crate::rbac`). Nor a write under a
    // rule with `objectTypes`: admission is sent only those types, and this request carries
    // no object, so the grant would be of every type. Nor anything in a namespace whose
    // writes admission never sees (the cluster's own, and jitgate's, where its count of
    // uses lives); the rendered authorization configuration never asks there either.
    // Asked once, not per candidate.
    let granting = matches!(via, Via::GrantedRead | Via::GrantedWrite);
    let ungrantable = (via == Via::GrantedWrite
        && (req.verb() == "deletecollection" || gating.iter().any(|p| p.types_objects(target))))
        || (granting && policy::never_gated(target.namespace, &snapshot.home.namespace));
    let grantable = !ungrantable;
    let found = grantable.then(|| snapshot.index.candidates(&key));
    // The request's change, computed only when an approval in scope is pinned to one: it
    // parses the objects. A read has none, and no pinned approval covers it.
    let mut change = None;
    let mut best: Option<(Verdict, &Arc<Approval>)> = None;
    if let Some(found) = &found {
        found.for_each(|a| {
            // Never granted to a `system:` user or group, as the RBAC way never binds one.
            if !in_scope(a, target, req.name()) || (granting && a.subject.is_system()) {
                return;
            }
            let pinned_to = match (via, req) {
                // A granted write is authorized before its object is known: the pin is held
                // to when admission sees the change.
                (Via::GrantedWrite, _) => a.rare.change.as_deref(),
                (_, Request::Admission(r)) if a.rare.change.is_some() => change
                    .get_or_insert_with(|| crate::change::of(r))
                    .as_ref()
                    .map(|c| c.fingerprint.as_str()),
                _ => None,
            };
            let verdict = judge(a, user, &requirement, pinned_to, inputs.now);
            // Best verdict first; among equals, an approval without maxUses (so uses are not
            // spent while it lasts), then the one that lasts longest; among those, the last.
            let better = best.is_none_or(|(v, b)| {
                verdict
                    .cmp(&v)
                    .then(b.max_uses.is_some().cmp(&a.max_uses.is_some()))
                    .then(a.expires_at.cmp(&b.expires_at))
                    .is_ge()
            });
            if better {
                best = Some((verdict, a));
            }
        });
    }
    let best = best.map(|(verdict, approval)| (verdict, Arc::clone(approval)));
    let change = change.flatten();
    let Some((verdict, approval)) = best else {
        return Reason::NoApproval { requirement, change };
    };
    match verdict {
        Verdict::Valid => Reason::Approved {
            requirement,
            approval,
        },
        Verdict::BreakGlass => Reason::BreakGlass {
            requirement,
            approval,
        },
        Verdict::TooFewApprovers {
            counted,
            self_approved,
        } => {
            let found = approvers(&approval, user, inputs.now);
            let missing_levels = found
                .unmet(&requirement.levels)
                .iter()
                .map(|u| requirement.levels[u.level].describe(u.missing))
                .collect();
            let signature_problems = signature_problems(&approval, user, inputs.now);
            Reason::TooFewApprovers {
                requirement,
                approval,
                counted,
                self_approved,
                missing_levels,
                signature_problems,
                change,
            }
        }
        Verdict::BreakGlassRefused => Reason::BreakGlassNotAllowed {
            requirement,
            approval,
            change,
        },
        Verdict::ExceedsMaxDuration => Reason::ApprovalExceedsMaxDuration {
            requirement,
            approval,
            change,
        },
        Verdict::Expired => Reason::ApprovalExpired {
            requirement,
            approval,
            change,
        },
        Verdict::OtherChange => Reason::ChangeNotApproved {
            requirement,
            approval,
            change,
        },
    }
}

/// How one approval fares against one request, from worst to best.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Pinned (`change:`) to another change than the request's.
    OtherChange,
    Expired,
    ExceedsMaxDuration,
    /// A break-glass entry, but the gating policies do not all allow the requester to
    /// break the glass.
    BreakGlassRefused,
    TooFewApprovers {
        counted: u32,
        self_approved: bool,
    },
    /// A usable break-glass entry.
    BreakGlass,
    Valid,
}

/// The parts of an approval's scope that the index does not already select on. A named
/// approval never covers a request without a name (a list, a watch); an approval pinned
/// to a change never covers a read, which changes nothing. The operations are checked
/// before the strings: an approval for other operations costs no string comparison.
fn in_scope(a: &Approval, t: &Target<'_>, name: &str) -> bool {
    a.operations.is_none_or(|ops| ops.contains(t.operation))
        && !(t.operation.is_read() && a.rare.change.is_some())
        && a.api_group.as_deref().is_none_or(|g| g == t.api_group)
        && a.name.as_deref().is_none_or(|n| n == name)
}

/// Judges one in-scope approval for a request made by `requester` whose change has the
/// fingerprint `change` (`None` when not computed or not computable).
pub fn judge(
    a: &Approval,
    requester: &str,
    req: &Requirement,
    change: Option<&str>,
    now: Timestamp,
) -> Verdict {
    if a.rare
        .change
        .as_deref()
        .is_some_and(|pinned| Some(pinned) != change)
    {
        return Verdict::OtherChange;
    }
    if !a.started() {
        // A `for:` entry whose last approver has not signed: its clock has not started.
        let (counted, self_approved) = count_approvers(a, requester, now);
        return Verdict::TooFewApprovers {
            counted,
            self_approved,
        };
    }
    if now >= a.expires_at {
        return Verdict::Expired;
    }
    if a.break_glass {
        return match req.break_glass {
            None => Verdict::BreakGlassRefused,
            Some(max) if a.expires_at.duration_since(now) > max => Verdict::ExceedsMaxDuration,
            Some(_) => Verdict::BreakGlass,
        };
    }
    if a.expires_at.duration_since(now) > req.max_duration {
        return Verdict::ExceedsMaxDuration;
    }
    // Who approved matters only to levels: without any, counting them is enough.
    let (counted, self_approved, enough) = if req.levels.is_empty() {
        let (counted, self_approved) = count_approvers(a, requester, now);
        (counted, self_approved, counted >= req.min_approvers)
    } else {
        let found = approvers(a, requester, now);
        let enough = found.suffice(req.min_approvers, &req.levels);
        (found.count(), found.self_approved, enough)
    };
    if !enough {
        return Verdict::TooFewApprovers {
            counted,
            self_approved,
        };
    }
    Verdict::Valid
}

mod reason;
#[cfg(test)]
mod tests;
