//! The decision: pure logic with no I/O. It takes the request, the policies, the approvals
//! and the time, and says allow or deny, and why.

use crate::admission::AdmissionRequest;
use crate::approvals::{Approval, ApprovalIndex, LookupKey, Subject};
use crate::policy::{Enforcement, Policy, PolicySet, Target};
use jiff::{SignedDuration, Timestamp};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// A stable code for why a request was allowed or denied, as written in records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No policy gates the request.
    NotGated,
    /// Policies gate the request, but the user or a group of theirs is exempt from each.
    Exempt,
    /// A live approval matches.
    Approved,
    /// No approval names this user or group, namespace, resource, object and operation.
    NoApproval,
    /// The matching approval's `expiresAt` has passed.
    ApprovalExpired,
    /// The matching approval expires further ahead than the policy's maxDuration allows.
    ApprovalExceedsMaxDuration,
    /// The matching approval has fewer approvers (other than the requester) than required.
    TooFewApprovers,
    /// Approvals have not been loaded, so nothing can be granted.
    ApprovalsUnavailable,
    /// The approvals' source has been silent past the staleness budget: they may be out
    /// of date, so nothing is granted on them.
    ApprovalsStale,
    /// The body was not a valid AdmissionReview (recorded by the server, never decided).
    BadRequest,
    /// An edit of an approvals ConfigMap that the ledger accepted.
    LedgerAccepted,
    /// An edit of an approvals ConfigMap that broke a ledger rule.
    LedgerRefused,
    /// The decision record could not be written, so the request is refused.
    AuditUnavailable,
    /// The answer could not be made before the API server's deadline.
    DeadlineExceeded,
    /// The requester's own break-glass entry: allowed, loudly.
    BreakGlass,
    /// A break-glass entry that the gating policies do not allow the requester to use.
    BreakGlassNotAllowed,
    /// The matching approval is pinned to another change than the one requested.
    ChangeNotApproved,
    /// The matching approval's `maxUses` are used up.
    UsesExhausted,
    /// The use of a `maxUses` approval could not be recorded, so it is not granted.
    UsageUnavailable,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotGated => "not_gated",
            Reason::Exempt => "exempt",
            Reason::Approved => "approved",
            Reason::NoApproval => "no_approval",
            Reason::ApprovalExpired => "approval_expired",
            Reason::ApprovalExceedsMaxDuration => "approval_exceeds_max_duration",
            Reason::TooFewApprovers => "too_few_approvers",
            Reason::ApprovalsUnavailable => "approvals_unavailable",
            Reason::ApprovalsStale => "approvals_stale",
            Reason::BadRequest => "bad_request",
            Reason::LedgerAccepted => "ledger_accepted",
            Reason::LedgerRefused => "ledger_refused",
            Reason::AuditUnavailable => "audit_unavailable",
            Reason::DeadlineExceeded => "deadline_exceeded",
            Reason::BreakGlass => "break_glass",
            Reason::BreakGlassNotAllowed => "break_glass_not_allowed",
            Reason::ChangeNotApproved => "change_not_approved",
            Reason::UsesExhausted => "uses_exhausted",
            Reason::UsageUnavailable => "usage_unavailable",
        }
    }
}

/// What an approval must satisfy: the strictest terms of every policy that gates the
/// request (largest minApprovers, shortest maxDuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Names of the gating policies, in load order.
    pub policies: Vec<String>,
    pub min_approvers: u32,
    pub max_duration: SignedDuration,
    /// How long a break-glass entry may last, when every gating policy allows break-glass
    /// to a group of the requester's; `None` when any does not.
    pub break_glass: Option<SignedDuration>,
    /// The strongest enforcement among the gating policies.
    pub enforcement: Enforcement,
}

impl Requirement {
    fn strictest(policies: &[&Policy], groups: &[String]) -> Self {
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
            min_approvers: policies.iter().map(|p| p.min_approvers).max().unwrap_or(1),
            max_duration: policies
                .iter()
                .map(|p| p.max_duration)
                .min()
                .unwrap_or(SignedDuration::ZERO),
            break_glass,
            enforcement: policies.iter().map(|p| p.enforcement).max().unwrap_or_default(),
        }
    }
}

/// What the answer is: `warn` and `dryrun` are denials that a policy in rollout lets
/// through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    Deny,
    Warn,
    DryRun,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Warn => "warn",
            Outcome::DryRun => "dryrun",
        }
    }
}

/// The approvals a decision may use.
#[derive(Debug, Clone, Copy)]
pub enum Approvals<'a> {
    Loaded(&'a ApprovalIndex),
    /// Nothing loaded yet.
    NotLoaded,
    /// Loaded, but the source has been silent for this long, past its budget.
    Stale {
        silent_for: Duration,
    },
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

#[derive(Debug, Clone)]
pub struct Decision {
    pub outcome: Outcome,
    /// Why; for `warn` and `dryrun`, why it would have been denied.
    pub reason: Reason,
    /// The policies that gate the request (for `exempt`, those the user is exempt from).
    pub policies: Vec<String>,
    /// Set when the request is gated and not exempt.
    pub requirement: Option<Requirement>,
    /// The approval that granted, or the closest one that did not.
    pub approval: Option<Arc<Approval>>,
    /// That approval's verdict.
    pub verdict: Option<Verdict>,
    /// For `approvals_stale`: how long the approvals' source has been silent.
    pub silent_for: Option<Duration>,
    /// The request's change, when an approval pinned to one made the decision compute it
    /// (a denial's message reuses it rather than computing it again).
    pub change: Option<crate::change::Change>,
}

impl Decision {
    /// An allow for `reason`, naming the policies it concerns.
    pub fn allow(reason: Reason, policies: Vec<String>) -> Self {
        Decision {
            outcome: Outcome::Allow,
            reason,
            policies,
            requirement: None,
            approval: None,
            verdict: None,
            silent_for: None,
            change: None,
        }
    }

    /// A denial that no policy logic produced (bad request, audit failure).
    pub fn refused(reason: Reason) -> Self {
        Decision {
            outcome: Outcome::Deny,
            ..Decision::allow(reason, Vec::new())
        }
    }

    /// True unless the outcome is `deny`: `warn` and `dryrun` let the request through.
    pub fn allowed(&self) -> bool {
        self.outcome != Outcome::Deny
    }

    /// Turns a gated request's answer into a denial for `reason`, unless its policies are
    /// in rollout (`warn`, `dryrun`): then it goes through, marked so.
    pub fn deny_for(&mut self, reason: Reason) {
        self.reason = reason;
        self.outcome = match self.requirement.as_ref().map(|r| r.enforcement) {
            Some(Enforcement::Warn) => Outcome::Warn,
            Some(Enforcement::DryRun) => Outcome::DryRun,
            _ => Outcome::Deny,
        };
    }
}

/// Decides one request.
pub fn decide(
    req: &AdmissionRequest<'_>,
    policies: &PolicySet,
    approvals: Approvals<'_>,
    now: Timestamp,
) -> Decision {
    let target = Target {
        api_group: &req.resource.group,
        resource: &req.resource.resource,
        sub_resource: &req.sub_resource,
        namespace: &req.namespace,
        operation: req.operation,
    };
    let matching = policies.gating(&target);
    if matching.is_empty() {
        return Decision::allow(Reason::NotGated, Vec::new());
    }
    let user = &req.user_info.username;
    let groups = &req.user_info.groups;
    let gating: Vec<&Policy> = matching
        .iter()
        .copied()
        .filter(|p| !p.exempts(user, groups))
        .collect();
    if gating.is_empty() {
        return Decision::allow(Reason::Exempt, matching.iter().map(|p| p.name.clone()).collect());
    }
    let requirement = Requirement::strictest(&gating, groups);
    let mut decision = Decision {
        outcome: Outcome::Deny,
        reason: Reason::NoApproval,
        policies: requirement.policies.clone(),
        requirement: Some(requirement),
        approval: None,
        verdict: None,
        silent_for: None,
        change: None,
    };
    let index = match approvals {
        Approvals::Loaded(index) => index,
        Approvals::NotLoaded => {
            decision.deny_for(Reason::ApprovalsUnavailable);
            return decision;
        }
        Approvals::Stale { silent_for } => {
            decision.silent_for = Some(silent_for);
            decision.deny_for(Reason::ApprovalsStale);
            return decision;
        }
    };
    let requirement = decision.requirement.as_ref().expect("set above");
    let key = LookupKey {
        user,
        groups,
        namespace: &req.namespace,
        resource: &req.resource.resource,
        sub_resource: &req.sub_resource,
    };
    let candidates: Vec<Arc<Approval>> = index
        .candidates(&key)
        .into_iter()
        .filter(|a| in_scope(a, req))
        .collect();
    // Computed only when an approval is pinned to a change: it parses the objects.
    decision.change = candidates
        .iter()
        .any(|a| a.change.is_some())
        .then(|| crate::change::of(req))
        .flatten();
    let change = decision.change.as_ref().map(|c| c.fingerprint.as_str());
    // Best verdict first; among equals, an approval without maxUses (so uses are not
    // spent while it lasts), then the one that lasts longest.
    let best = candidates
        .into_iter()
        .map(|a| (judge(&a, user, requirement, change, now), a))
        .max_by(|(v1, a1), (v2, a2)| {
            v1.cmp(v2)
                .then(a2.max_uses.is_some().cmp(&a1.max_uses.is_some()))
                .then(a1.expires_at.cmp(&a2.expires_at))
        });
    let Some((verdict, approval)) = best else {
        decision.deny_for(Reason::NoApproval);
        return decision;
    };
    decision.verdict = Some(verdict);
    decision.approval = Some(approval);
    match verdict {
        Verdict::Valid => decision.grant(Reason::Approved),
        Verdict::BreakGlass => decision.grant(Reason::BreakGlass),
        Verdict::TooFewApprovers { .. } => decision.deny_for(Reason::TooFewApprovers),
        Verdict::BreakGlassRefused => decision.deny_for(Reason::BreakGlassNotAllowed),
        Verdict::ExceedsMaxDuration => decision.deny_for(Reason::ApprovalExceedsMaxDuration),
        Verdict::Expired => decision.deny_for(Reason::ApprovalExpired),
        Verdict::OtherChange => decision.deny_for(Reason::ChangeNotApproved),
    }
    decision
}

impl Decision {
    fn grant(&mut self, reason: Reason) {
        self.reason = reason;
        self.outcome = Outcome::Allow;
    }
}

/// The parts of an approval's scope that the index does not already select on.
fn in_scope(a: &Approval, req: &AdmissionRequest<'_>) -> bool {
    a.api_group.as_deref().is_none_or(|g| g == req.resource.group)
        && a.name.as_deref().is_none_or(|n| n == req.name)
        && a.operations.is_none_or(|ops| ops.contains(req.operation))
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
    if a.change.as_deref().is_some_and(|pinned| Some(pinned) != change) {
        return Verdict::OtherChange;
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
    let (counted, self_approved) = count_approvers(a, requester);
    if counted < req.min_approvers {
        return Verdict::TooFewApprovers {
            counted,
            self_approved,
        };
    }
    Verdict::Valid
}

/// Distinct approvers other than the requester (and, for a user approval, the user it
/// names); and whether the requester tried to approve their own request.
pub fn count_approvers(a: &Approval, requester: &str) -> (u32, bool) {
    let named_user = match &a.subject {
        Subject::User(u) => Some(u.as_str()),
        Subject::Group(_) => None,
    };
    let mut self_approved = false;
    let distinct: BTreeSet<&str> = a
        .approved_by
        .iter()
        .map(String::as_str)
        .filter(|name| {
            let own = *name == requester || Some(*name) == named_user;
            self_approved |= own;
            !own
        })
        .collect();
    (u32::try_from(distinct.len()).unwrap_or(u32::MAX), self_approved)
}

#[cfg(test)]
mod tests;
