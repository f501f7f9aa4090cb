//! The decision: pure logic with no I/O. It takes the request, the policies, the approvals
//! and the time, and says allow or deny, and why.

use crate::admission::AdmissionRequest;
use crate::approvals::{Approval, ApprovalIndex, LookupKey, Subject};
use crate::policy::{Policy, PolicySet, Target};
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
}

impl Requirement {
    fn strictest(policies: &[&Policy]) -> Self {
        Requirement {
            policies: policies.iter().map(|p| p.name.clone()).collect(),
            min_approvers: policies.iter().map(|p| p.min_approvers).max().unwrap_or(1),
            max_duration: policies
                .iter()
                .map(|p| p.max_duration)
                .min()
                .unwrap_or(SignedDuration::ZERO),
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
    Expired,
    ExceedsMaxDuration,
    TooFewApprovers { counted: u32, self_approved: bool },
    Valid,
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub allowed: bool,
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
}

impl Decision {
    /// An allow for `reason`, naming the policies it concerns.
    pub fn allow(reason: Reason, policies: Vec<String>) -> Self {
        Decision {
            allowed: true,
            reason,
            policies,
            requirement: None,
            approval: None,
            verdict: None,
            silent_for: None,
        }
    }

    /// A denial that no policy logic produced (bad request, audit failure).
    pub fn refused(reason: Reason) -> Self {
        Decision {
            allowed: false,
            ..Decision::allow(reason, Vec::new())
        }
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
    let requirement = Requirement::strictest(&gating);
    let mut decision = Decision {
        allowed: false,
        reason: Reason::NoApproval,
        policies: requirement.policies.clone(),
        requirement: None,
        approval: None,
        verdict: None,
        silent_for: None,
    };
    let index = match approvals {
        Approvals::Loaded(index) => index,
        Approvals::NotLoaded => {
            decision.reason = Reason::ApprovalsUnavailable;
            decision.requirement = Some(requirement);
            return decision;
        }
        Approvals::Stale { silent_for } => {
            decision.reason = Reason::ApprovalsStale;
            decision.silent_for = Some(silent_for);
            decision.requirement = Some(requirement);
            return decision;
        }
    };
    let key = LookupKey {
        user,
        groups,
        namespace: &req.namespace,
        resource: &req.resource.resource,
        sub_resource: &req.sub_resource,
    };
    let best = index
        .candidates(&key)
        .into_iter()
        .filter(|a| in_scope(a, req))
        .map(|a| (judge(&a, user, &requirement, now), a))
        .max_by(|(v1, a1), (v2, a2)| v1.cmp(v2).then(a1.expires_at.cmp(&a2.expires_at)));
    if let Some((verdict, approval)) = best {
        decision.reason = match verdict {
            Verdict::Valid => Reason::Approved,
            Verdict::TooFewApprovers { .. } => Reason::TooFewApprovers,
            Verdict::ExceedsMaxDuration => Reason::ApprovalExceedsMaxDuration,
            Verdict::Expired => Reason::ApprovalExpired,
        };
        decision.allowed = verdict == Verdict::Valid;
        decision.verdict = Some(verdict);
        decision.approval = Some(approval);
    }
    decision.requirement = Some(requirement);
    decision
}

/// The parts of an approval's scope that the index does not already select on.
fn in_scope(a: &Approval, req: &AdmissionRequest<'_>) -> bool {
    a.api_group.as_deref().is_none_or(|g| g == req.resource.group)
        && a.name.as_deref().is_none_or(|n| n == req.name)
        && a.operations.is_none_or(|ops| ops.contains(req.operation))
}

/// Judges one in-scope approval for a request made by `requester`.
pub fn judge(a: &Approval, requester: &str, req: &Requirement, now: Timestamp) -> Verdict {
    if now >= a.expires_at {
        return Verdict::Expired;
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
