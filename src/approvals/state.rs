//! Where an approval stands: how many approvers it has, how many its policies require,
//! and so whether it is pending, active, break-glass or expired. `/metrics` and
//! `jitgate list` both count through here, so they agree.

use super::{Approval, Subject};
use crate::policy::{self, PolicySet};
use jiff::Timestamp;
use std::collections::BTreeSet;

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
    let requester = match &a.subject {
        Subject::User(u) => u.as_str(),
        Subject::Group(_) => "",
    };
    let (counted, _) = count_approvers(a, requester);
    let gating = policies.map(|p| p.gating_scope(&a.scope()));
    let required = gating.as_deref().and_then(policy::required_approvers);
    let waited_too_long =
        || request_deadline(a, gating.as_deref().unwrap_or_default()).is_some_and(|t| t <= now);
    let complete = counted >= required.unwrap_or(1) && a.started();
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
