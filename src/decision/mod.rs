//! The decision: pure logic with no I/O. [`decide`] is the one entry point: it takes a
//! request, the policies, the approvals and the time, and returns a complete [`Decision`].
//! A write or a CONNECT (an admission review) and a read (an authorization review) are
//! decided by the same code against the same index; an edit of an approvals ConfigMap is
//! judged by the [`ledger`] through it too. The server, `jitgate check`, the benchmarks
//! and the fuzz targets all call it.
//!
//! Nothing changes a decision once it is made, except [`Decision::uses_exhausted`]: the
//! one step for a side effect (spending a use of a `maxUses` approval), which returns a
//! new decision. Failures of the server itself (an unreadable body, an audit log that
//! cannot be written) are not decisions: they are [`crate::refusal::Refusal`]s.

use crate::admission::{AdmissionRequest, Operation};
use crate::approvals::{Approval, ConfigMapRef, LookupKey, Snapshot, approvers, signature_problems};
use crate::authorization::AccessRequest;
use crate::change::Change;
use crate::ledger::{self, LedgerChange, Violation};
use crate::policy::{self, Enforcement, Policy, PolicySet, Target};
use jiff::{SignedDuration, Timestamp};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// What a decision is asked about.
#[derive(Debug, Clone, Copy)]
pub enum Request<'r, 'a> {
    /// An AdmissionReview's request: a write or a CONNECT, with its objects.
    Admission(&'r AdmissionRequest<'a>),
    /// A SubjectAccessReview: a read, or something jitgate has no opinion on.
    Access(&'r AccessRequest),
}

impl<'r, 'a> From<&'r AdmissionRequest<'a>> for Request<'r, 'a> {
    fn from(req: &'r AdmissionRequest<'a>) -> Self {
        Request::Admission(req)
    }
}

impl<'r> From<&'r AccessRequest> for Request<'r, 'static> {
    fn from(req: &'r AccessRequest) -> Self {
        Request::Access(req)
    }
}

impl<'r> Request<'r, '_> {
    pub fn user(&self) -> &'r str {
        match *self {
            Request::Admission(r) => &r.user_info.username,
            Request::Access(r) => &r.user.username,
        }
    }

    pub fn groups(&self) -> &'r [String] {
        match *self {
            Request::Admission(r) => &r.user_info.groups,
            Request::Access(r) => &r.user.groups,
        }
    }

    pub fn api_group(&self) -> &'r str {
        match *self {
            Request::Admission(r) => &r.resource.group,
            Request::Access(r) => &r.resource.group,
        }
    }

    pub fn resource(&self) -> &'r str {
        match *self {
            Request::Admission(r) => &r.resource.resource,
            Request::Access(r) => &r.resource.resource,
        }
    }

    pub fn sub_resource(&self) -> &'r str {
        match *self {
            Request::Admission(r) => &r.sub_resource,
            Request::Access(r) => &r.sub_resource,
        }
    }

    pub fn namespace(&self) -> &'r str {
        match *self {
            Request::Admission(r) => &r.namespace,
            Request::Access(r) => &r.namespace,
        }
    }

    /// The object's name; empty for a create without one, and for a list or watch.
    pub fn name(&self) -> &'r str {
        match *self {
            Request::Admission(r) => &r.name,
            Request::Access(r) => &r.name,
        }
    }

    /// The operation or read verb a policy can gate; `None` for an authorization review
    /// that is not a read of a resource.
    pub fn operation(&self) -> Option<Operation> {
        match *self {
            Request::Admission(r) => Some(r.operation),
            Request::Access(r) => r.read(),
        }
    }

    /// `resource` or `resource/subresource`, as policies and approvals write it.
    pub fn resource_path(&self) -> String {
        if self.sub_resource().is_empty() {
            self.resource().to_string()
        } else {
            format!("{}/{}", self.resource(), self.sub_resource())
        }
    }

    /// The operation or verb as the request named it.
    pub fn verb(&self) -> &'r str {
        match *self {
            Request::Admission(r) => r.operation.as_str(),
            Request::Access(r) => &r.verb,
        }
    }

    /// What policies match against; `None` when nothing could gate the request.
    pub fn target(&self) -> Option<Target<'r>> {
        Some(Target {
            api_group: self.api_group(),
            resource: self.resource(),
            sub_resource: self.sub_resource(),
            namespace: self.namespace(),
            operation: self.operation()?,
        })
    }
}

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
            min_approvers: policy::required_approvers(policies).unwrap_or(1),
            levels: policy::required_levels(policies),
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
    /// Approvals have not been loaded, so nothing can be granted.
    ApprovalsUnavailable { requirement: Requirement },
    /// The approvals' source has been silent past the staleness budget: they may be out
    /// of date, so nothing is granted on them.
    ApprovalsStale {
        requirement: Requirement,
        silent_for: Duration,
    },
    /// An edit of an approvals ConfigMap that the ledger accepted, and what it changed.
    LedgerAccepted { changes: Vec<LedgerChange> },
    /// An edit of an approvals ConfigMap that broke a ledger rule.
    LedgerRefused { violation: Violation },
    /// An edit of the trusted signers ConfigMap, and what it changed.
    SignersChanged { changes: Vec<ledger::SignerChange> },
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
            | Reason::UsesExhausted { approval, .. } => Some(approval),
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
            | Reason::UsesExhausted { change, .. } => change,
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
            Reason::NotGated
            | Reason::Exempt { .. }
            | Reason::Approved { .. }
            | Reason::BreakGlass { .. }
            | Reason::LedgerAccepted { .. }
            | Reason::SignersChanged { .. } => Outcome::Allow,
            Reason::LedgerRefused { .. } => Outcome::Deny,
            // Every other reason is a gated denial; without a requirement, it is denied.
            denial => match denial.requirement().map(|r| r.enforcement) {
                Some(Enforcement::Warn) => Outcome::Warn,
                Some(Enforcement::DryRun) => Outcome::DryRun,
                Some(Enforcement::Deny) | None => Outcome::Deny,
            },
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

    /// The one step that changes a decision after it is made: the use of its `maxUses`
    /// approval could not be spent, because every use is spent. The grant becomes a
    /// `uses_exhausted` denial (or, under a policy in rollout, lets the request through
    /// marked so). Any other decision is returned as it was.
    pub fn uses_exhausted(self) -> Decision {
        let reason = match self.reason {
            Reason::Approved {
                requirement,
                approval,
            }
            | Reason::BreakGlass {
                requirement,
                approval,
            } => Reason::UsesExhausted {
                requirement,
                approval,
                change: None,
            },
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
                Ok(changes) => Reason::SignersChanged { changes },
                Err(violation) => Reason::LedgerRefused { violation },
            }
        }
        (Request::Admission(r), _) if signers_at.is_none() && ledger::signers::may_apply(r) => {
            Reason::LedgerRefused {
                violation: Violation {
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
                Ok(changes) => Reason::LedgerAccepted { changes },
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
    let matching = inputs.policies.gating(target);
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
    let requirement = Requirement::strictest(&gating, groups);
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
    let candidates: Vec<Arc<Approval>> = snapshot
        .index
        .candidates(&key)
        .into_iter()
        .filter(|a| in_scope(a, target, req.name()))
        .collect();
    // Computed only when an approval is pinned to a change: it parses the objects. A
    // read has none, and no pinned approval covers it.
    let change = match req {
        Request::Admission(r) if candidates.iter().any(|a| a.change.is_some()) => crate::change::of(r),
        _ => None,
    };
    let fingerprint = change.as_ref().map(|c| c.fingerprint.as_str());
    // Best verdict first; among equals, an approval without maxUses (so uses are not
    // spent while it lasts), then the one that lasts longest.
    let best = candidates
        .into_iter()
        .map(|a| (judge(&a, user, &requirement, fingerprint, inputs.now), a))
        .max_by(|(v1, a1), (v2, a2)| {
            v1.cmp(v2)
                .then(a2.max_uses.is_some().cmp(&a1.max_uses.is_some()))
                .then(a1.expires_at.cmp(&a2.expires_at))
        });
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
/// to a change never covers a read, which changes nothing.
fn in_scope(a: &Approval, t: &Target<'_>, name: &str) -> bool {
    a.api_group.as_deref().is_none_or(|g| g == t.api_group)
        && a.name.as_deref().is_none_or(|n| n == name)
        && a.operations.is_none_or(|ops| ops.contains(t.operation))
        && !(t.operation.is_read() && a.change.is_some())
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
    if !a.started() {
        // A `for:` entry whose last approver has not signed: its clock has not started.
        let found = approvers(a, requester, now);
        return Verdict::TooFewApprovers {
            counted: found.count(),
            self_approved: found.self_approved,
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
    let found = approvers(a, requester, now);
    if !found.suffice(req.min_approvers, &req.levels) {
        return Verdict::TooFewApprovers {
            counted: found.count(),
            self_approved: found.self_approved,
        };
    }
    Verdict::Valid
}

#[cfg(test)]
mod tests;
