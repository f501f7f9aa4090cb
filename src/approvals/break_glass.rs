//! Break-glass entries that no approver has reviewed yet: counted for `/metrics`, and
//! logged by `crate::sync::break_glass`, so that nobody can break the glass quietly.

use super::{Snapshot, Subject, count_approvers};
use crate::policy::PolicySet;
use jiff::{SignedDuration, Timestamp};

/// One break-glass entry waiting for review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreviewed {
    pub id: String,
    pub user: String,
    pub expires_at: Timestamp,
    /// When the review is due: `reviewWithin` after the earliest the entry can have been
    /// written (its expiry less the policies' break-glass `maxDuration`).
    pub review_by: Timestamp,
}

/// The break-glass entries of `snapshot` with no approver other than their user.
pub fn unreviewed(snapshot: &Snapshot, policies: &PolicySet) -> Vec<Unreviewed> {
    snapshot
        .approvals
        .iter()
        .filter(|a| a.break_glass)
        .filter_map(|a| {
            let Subject::User(user) = &a.subject else {
                return None;
            };
            // A break-glass entry carries no signatures: only approvedBy reviews it.
            if count_approvers(a, user, Timestamp::now()).0 > 0 {
                return None;
            }
            let due = policies
                .gating_scope(&a.scope())
                .iter()
                .filter_map(|p| p.break_glass.as_ref())
                .map(|bg| bg.review_within - bg.max_duration)
                .min()
                .unwrap_or(SignedDuration::ZERO);
            Some(Unreviewed {
                id: a.id.to_string(),
                user: user.to_string(),
                expires_at: a.expires_at,
                review_by: a.expires_at.checked_add(due).unwrap_or(a.expires_at),
            })
        })
        .collect()
}
