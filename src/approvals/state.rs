//! Where an approval stands: how many approvers it has, how many its policies require,
//! and so whether it is pending, active, break-glass or expired. `/metrics` and
//! `jitgate list` both count through here, so they agree.

use super::{Approval, Subject};
use crate::policy::{self, Level, PolicySet, Unmet};
use crate::signing::{Checked, Signer};
use jiff::Timestamp;

/// Where an entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Active,
    /// A live break-glass entry.
    BreakGlass,
    Expired,
    Invalid,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Active => "active",
            State::BreakGlass => "break-glass",
            State::Expired => "expired",
            State::Invalid => "invalid",
        }
    }
}

/// The state of an approval: its approvers (other than whom it is for) against what its
/// policies require, or, when the policies are not known, against one. Also returns the
/// approvers counted and the number required.
pub fn state_of(a: &Approval, policies: Option<&PolicySet>, now: Timestamp) -> (State, u32, Option<u32>) {
    let requester = a.subject.user().unwrap_or_default();
    let found = approvers(a, requester, now);
    let counted = found.count();
    let gating = policies.map(|p| p.gating_scope(&a.scope()));
    let required = gating.as_deref().and_then(policy::required_approvers);
    let levels = gating.as_deref().map(policy::required_levels).unwrap_or_default();
    let waited_too_long =
        || request_deadline(a, gating.as_deref().unwrap_or_default()).is_some_and(|t| t <= now);
    let complete = found.suffice(required.unwrap_or(1), &levels) && a.started();
    let state = if now >= a.expires_at || (!a.break_glass && !complete && waited_too_long()) {
        State::Expired
    } else if a.break_glass {
        State::BreakGlass
    } else if complete {
        State::Active
    } else {
        State::Pending
    };
    (state, counted, required)
}

/// When a request stops waiting for approvers: the minute it was asked (from its key)
/// plus the `requestTTL` of the policies that gate it; `None` when the key does not say.
pub fn request_deadline(a: &Approval, gating: &[&policy::Policy]) -> Option<Timestamp> {
    a.requested_at().map(|at| at + policy::request_ttl(gating))
}

/// One person whose approval counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person<'a> {
    pub name: &'a str,
    /// The groups they approve as: from `approvedAs` for an approver through the API
    /// server (none when not recorded), from the signers ConfigMap for a signer.
    pub groups: Vec<&'a str>,
    /// They signed offline (also true when they approved online as well).
    pub signed: bool,
}

/// Who has approved an entry, as far as a request by `requester` is concerned.
#[derive(Debug, Clone, Default)]
pub struct Approvers<'a> {
    /// Distinct people other than the requester (and, for a user approval, the user it
    /// names; for a group approval, signers in that group).
    pub people: Vec<Person<'a>>,
    /// The requester (or whom the entry is for) approved or signed it themselves.
    pub self_approved: bool,
}

impl Approvers<'_> {
    pub fn count(&self) -> u32 {
        u32::try_from(self.people.len()).unwrap_or(u32::MAX)
    }

    /// The levels these people leave unmet.
    pub fn unmet(&self, levels: &[Level]) -> Vec<Unmet> {
        if levels.is_empty() {
            return Vec::new();
        }
        let groups: Vec<&[&str]> = self.people.iter().map(|p| p.groups.as_slice()).collect();
        policy::unmet(levels, &groups)
    }

    /// True when they are enough: `min` people, and every level met.
    pub fn suffice(&self, min: u32, levels: &[Level]) -> bool {
        self.count() >= min && self.unmet(levels).is_empty()
    }

    /// The signers among them.
    pub fn signers(&self) -> Vec<&str> {
        self.people.iter().filter(|p| p.signed).map(|p| p.name).collect()
    }
}

/// The people who approved `a`, for a request by `requester`, at `now`: the distinct names
/// in approvedBy, and the trusted signers whose signatures verified when the entry was
/// loaded and whose keys are still valid, neither being whom the entry is for.
pub fn approvers<'a>(a: &'a Approval, requester: &str, now: Timestamp) -> Approvers<'a> {
    let named_user = a.subject.user();
    // Sized once: at most one person per name and per signature (a grant's hot path).
    let mut out = Approvers {
        people: Vec::with_capacity(a.approved_by.len() + a.checked.len()),
        self_approved: false,
    };
    for name in &a.approved_by {
        if **name == *requester || Some(&**name) == named_user {
            out.self_approved = true;
            continue;
        }
        if out.people.iter().any(|p| *p.name == **name) {
            continue;
        }
        let groups = a
            .approved_as
            .get(&**name)
            .map(|g| g.iter().map(String::as_str).collect())
            .unwrap_or_default();
        out.people.push(Person {
            name,
            groups,
            signed: false,
        });
    }
    for checked in &a.checked {
        let Checked::Trusted(signer) = checked else {
            continue;
        };
        if !signer.valid_at(now) {
            continue;
        }
        if signed_by_requester(a, signer, requester) {
            out.self_approved = true;
            continue;
        }
        let groups = signer.groups.iter().map(String::as_str);
        match out.people.iter_mut().find(|p| p.name == signer.user) {
            Some(p) => {
                p.groups.extend(groups);
                p.signed = true;
            }
            None => out.people.push(Person {
                name: &signer.user,
                groups: groups.collect(),
                signed: true,
            }),
        }
    }
    out
}

/// True when `signer` is whom `a` is for, or the one asking: its user (or the requester),
/// or, for a group's entry, a member of that group. Their signature never counts.
pub fn signed_by_requester(a: &Approval, signer: &Signer, requester: &str) -> bool {
    match &a.subject {
        Subject::User(u) => *signer.user == **u || signer.user == requester,
        Subject::Group(g) => signer.groups.iter().any(|m| **m == **g) || signer.user == requester,
    }
}

/// Distinct approvers other than the requester (see [`approvers`]); and whether the
/// requester tried to approve their own request.
pub fn count_approvers(a: &Approval, requester: &str, now: Timestamp) -> (u32, bool) {
    let found = approvers(a, requester, now);
    (found.count(), found.self_approved)
}

/// Why each signature of `a` that grants nothing, for a request by `requester` at `now`,
/// grants nothing: for a denial to say.
pub fn signature_problems(a: &Approval, requester: &str, now: Timestamp) -> Vec<String> {
    a.checked
        .iter()
        .filter_map(|c| match c {
            Checked::Refused { why, .. } => Some(why.clone()),
            Checked::Trusted(s) if !s.valid_at(now) => s.expired(now),
            Checked::Trusted(s) if signed_by_requester(a, s, requester) => Some(format!(
                "the signature by {:?} is the requester's own and does not count",
                s.name
            )),
            Checked::Trusted(_) => None,
        })
        .collect()
}
