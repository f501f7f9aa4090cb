//! Why a request was allowed or denied ([`Reason`]), its stable code ([`Code`]) and the
//! answer it makes ([`Outcome`]).

use super::{Requirement, Via};
use crate::approvals::Approval;
use crate::change::Change;
use crate::ledger::{self, EntryEdit, Violation};
use crate::policy::Enforcement;
use std::sync::Arc;
use std::time::Duration;

/// What the answer is: `warn` and `dryrun` are denials that a policy in rollout lets
/// through; `grant` and `no_opinion` are answers of the authorization webhook alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    Deny,
    Warn,
    DryRun,
    /// jitgate itself authorizes the request (`allowed: true`): a live approval under
    /// policies that grant covers it, whatever RBAC says.
    Grant,
    /// Neither granted nor denied: RBAC decides (a write that no approval grants; the
    /// admission webhook still gates it).
    NoOpinion,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Warn => "warn",
            Outcome::DryRun => "dryrun",
            Outcome::Grant => "grant",
            Outcome::NoOpinion => "no_opinion",
        }
    }
}

/// Why a request was allowed or denied, with what each case needs to be explained. A
/// new variant must be given its own code ([`Reason::code`]) and its own message
/// (`crate::explain`): the matches there have no catch-all arm.
///
/// `change` is the request's change, when an approval pinned to a change made the
/// decision compute it; a denial's message reuses it rather than compute it again.
#[derive(Debug, Clone)]
pub enum Reason {
    /// No policy gates the request.
    NotGated,
    /// Policies gate the request, but the user or a group of theirs is exempt from each.
    Exempt { policies: Vec<String> },
    /// A live approval matches.
    Approved {
        requirement: Requirement,
        approval: Arc<Approval>,
    },
    /// The requester's own break-glass entry: allowed, loudly.
    BreakGlass {
        requirement: Requirement,
        approval: Arc<Approval>,
    },
    /// No approval names this user or group, namespace, resource, object and operation.
    NoApproval {
        requirement: Requirement,
        change: Option<Change>,
    },
    /// The closest approval's `expiresAt` has passed.
    ApprovalExpired {
        requirement: Requirement,
        approval: Arc<Approval>,
        change: Option<Change>,
    },
    /// The closest approval expires further ahead than the policies' maxDuration allows.
    ApprovalExceedsMaxDuration {
        requirement: Requirement,
        approval: Arc<Approval>,
        change: Option<Change>,
    },
    /// The closest approval has fewer approvers (other than the requester) than required,
    /// or leaves a level unmet.
    TooFewApprovers {
        requirement: Requirement,
        approval: Arc<Approval>,
        counted: u32,
        self_approved: bool,
        /// The levels still missing, described (`1 of security`).
        missing_levels: Vec<String>,
        /// Why each of its signatures that counts for nothing does not count.
        signature_problems: Vec<String>,
        change: Option<Change>,
    },
    /// A break-glass entry that the gating policies do not allow the requester to use.
    BreakGlassNotAllowed {
        requirement: Requirement,
        approval: Arc<Approval>,
        change: Option<Change>,
    },
    /// The closest approval is pinned to another change than the one requested.
    ChangeNotApproved {
        requirement: Requirement,
        approval: Arc<Approval>,
        change: Option<Change>,
    },
    /// The matching approval's `maxUses` are used up.
    UsesExhausted {
        requirement: Requirement,
        approval: Arc<Approval>,
        change: Option<Change>,
    },
    /// A dry run under an approval with `maxUses`: it would not be counted, and the API
    /// server may still act on it (a token request) or return the object.
    DryRunNotCounted {
        requirement: Requirement,
        approval: Arc<Approval>,
        change: Option<Change>,
    },
    /// Approvals have not been loaded, so nothing can be granted.
    ApprovalsUnavailable { requirement: Requirement },
    /// The approvals' source has been silent past the staleness budget: they may be out
    /// of date, so nothing is granted on them.
    ApprovalsStale {
        requirement: Requirement,
        silent_for: Duration,
    },
    /// An edit of an approvals ConfigMap that the ledger accepted, entry by entry.
    LedgerAccepted { edits: Vec<EntryEdit> },
    /// An edit of an approvals ConfigMap that broke a ledger rule.
    LedgerRefused { violation: Violation },
    /// An accepted edit of the trusted signers ConfigMap, signer by signer.
    SignersChanged { edits: Vec<ledger::SignerEdit> },
}

/// A stable code for a [`Reason`], as written in records and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    NotGated,
    Exempt,
    Approved,
    BreakGlass,
    NoApproval,
    ApprovalExpired,
    ApprovalExceedsMaxDuration,
    TooFewApprovers,
    BreakGlassNotAllowed,
    ChangeNotApproved,
    UsesExhausted,
    DryRunNotCounted,
    ApprovalsUnavailable,
    ApprovalsStale,
    LedgerAccepted,
    LedgerRefused,
    SignersChanged,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::NotGated => "not_gated",
            Code::Exempt => "exempt",
            Code::Approved => "approved",
            Code::BreakGlass => "break_glass",
            Code::NoApproval => "no_approval",
            Code::ApprovalExpired => "approval_expired",
            Code::ApprovalExceedsMaxDuration => "approval_exceeds_max_duration",
            Code::TooFewApprovers => "too_few_approvers",
            Code::BreakGlassNotAllowed => "break_glass_not_allowed",
            Code::ChangeNotApproved => "change_not_approved",
            Code::UsesExhausted => "uses_exhausted",
            Code::DryRunNotCounted => "dry_run_not_counted",
            Code::ApprovalsUnavailable => "approvals_unavailable",
            Code::ApprovalsStale => "approvals_stale",
            Code::LedgerAccepted => "ledger_accepted",
            Code::LedgerRefused => "ledger_refused",
            Code::SignersChanged => "signers_changed",
        }
    }
}

impl Reason {
    pub fn code(&self) -> Code {
        match self {
            Reason::NotGated => Code::NotGated,
            Reason::Exempt { .. } => Code::Exempt,
            Reason::Approved { .. } => Code::Approved,
            Reason::BreakGlass { .. } => Code::BreakGlass,
            Reason::NoApproval { .. } => Code::NoApproval,
            Reason::ApprovalExpired { .. } => Code::ApprovalExpired,
            Reason::ApprovalExceedsMaxDuration { .. } => Code::ApprovalExceedsMaxDuration,
            Reason::TooFewApprovers { .. } => Code::TooFewApprovers,
            Reason::BreakGlassNotAllowed { .. } => Code::BreakGlassNotAllowed,
            Reason::ChangeNotApproved { .. } => Code::ChangeNotApproved,
            Reason::UsesExhausted { .. } => Code::UsesExhausted,
            Reason::DryRunNotCounted { .. } => Code::DryRunNotCounted,
            Reason::ApprovalsUnavailable { .. } => Code::ApprovalsUnavailable,
            Reason::ApprovalsStale { .. } => Code::ApprovalsStale,
            Reason::LedgerAccepted { .. } => Code::LedgerAccepted,
            Reason::LedgerRefused { .. } => Code::LedgerRefused,
            Reason::SignersChanged { .. } => Code::SignersChanged,
        }
    }

    /// The terms of the gating policies, for a gated request that nobody is exempt from.
    pub fn requirement(&self) -> Option<&Requirement> {
        match self {
            Reason::Approved { requirement, .. }
            | Reason::BreakGlass { requirement, .. }
            | Reason::NoApproval { requirement, .. }
            | Reason::ApprovalExpired { requirement, .. }
            | Reason::ApprovalExceedsMaxDuration { requirement, .. }
            | Reason::TooFewApprovers { requirement, .. }
            | Reason::BreakGlassNotAllowed { requirement, .. }
            | Reason::ChangeNotApproved { requirement, .. }
            | Reason::UsesExhausted { requirement, .. }
            | Reason::DryRunNotCounted { requirement, .. }
            | Reason::ApprovalsUnavailable { requirement }
            | Reason::ApprovalsStale { requirement, .. } => Some(requirement),
            Reason::NotGated
            | Reason::Exempt { .. }
            | Reason::LedgerAccepted { .. }
            | Reason::LedgerRefused { .. }
            | Reason::SignersChanged { .. } => None,
        }
    }

    /// The approval that granted, or the closest one that did not.
    pub fn approval(&self) -> Option<&Arc<Approval>> {
        match self {
            Reason::Approved { approval, .. }
            | Reason::BreakGlass { approval, .. }
            | Reason::ApprovalExpired { approval, .. }
            | Reason::ApprovalExceedsMaxDuration { approval, .. }
            | Reason::TooFewApprovers { approval, .. }
            | Reason::BreakGlassNotAllowed { approval, .. }
            | Reason::ChangeNotApproved { approval, .. }
            | Reason::UsesExhausted { approval, .. }
            | Reason::DryRunNotCounted { approval, .. } => Some(approval),
            _ => None,
        }
    }

    /// The request's change, where the decision computed it (for an approval pinned to
    /// a change). A denial's message computes it otherwise: only its reader needs it.
    pub fn change(&self) -> Option<&Change> {
        let change = match self {
            Reason::NoApproval { change, .. }
            | Reason::ApprovalExpired { change, .. }
            | Reason::ApprovalExceedsMaxDuration { change, .. }
            | Reason::TooFewApprovers { change, .. }
            | Reason::BreakGlassNotAllowed { change, .. }
            | Reason::ChangeNotApproved { change, .. }
            | Reason::UsesExhausted { change, .. }
            | Reason::DryRunNotCounted { change, .. } => change,
            _ => &None,
        };
        change.as_ref()
    }

    /// The policies the decision concerns: those that gate the request, or for `exempt`,
    /// those the user is exempt from.
    pub fn policies(&self) -> &[String] {
        match self {
            Reason::Exempt { policies } => policies,
            other => other.requirement().map_or(&[], |r| r.policies.as_slice()),
        }
    }

    /// The answer: a grant is an allow; a gated denial is a denial unless its policies are
    /// in rollout (`warn`, `dryrun`), when it goes through, marked so.
    pub fn outcome(&self) -> Outcome {
        match self {
            Reason::Approved { requirement, .. } | Reason::BreakGlass { requirement, .. }
                if matches!(requirement.via, Via::GrantedRead | Via::GrantedWrite) =>
            {
                Outcome::Grant
            }
            Reason::NotGated
            | Reason::Exempt { .. }
            | Reason::Approved { .. }
            | Reason::BreakGlass { .. }
            | Reason::LedgerAccepted { .. }
            | Reason::SignersChanged { .. } => Outcome::Allow,
            Reason::LedgerRefused { .. } => Outcome::Deny,
            // Every other reason is a gated denial; without a requirement, it is denied.
            denial => match denial.requirement().map(|r| (r.via, r.enforcement)) {
                Some((Via::GrantedWrite, _)) => Outcome::NoOpinion,
                Some((_, Enforcement::Warn)) => Outcome::Warn,
                Some((_, Enforcement::DryRun)) => Outcome::DryRun,
                Some((_, Enforcement::Deny)) | None => Outcome::Deny,
            },
        }
    }
}
