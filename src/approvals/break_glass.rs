//! Break-glass entries that no approver has reviewed yet: counted for `/metrics`, and
//! logged, each by name, whenever the approvals are loaded again and once a minute, so
//! that nobody can break the glass quietly.

use super::{ApprovalStore, Snapshot, Subject};
use crate::decision::count_approvers;
use crate::policy::{PolicySet, PolicyStore};
use jiff::{SignedDuration, Timestamp};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often unreviewed entries are logged while nothing changes.
const REPORT_EVERY: Duration = Duration::from_secs(60);

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
            if count_approvers(a, user).0 > 0 {
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
                id: a.id.clone(),
                user: user.clone(),
                expires_at: a.expires_at,
                review_by: a.expires_at.checked_add(due).unwrap_or(a.expires_at),
            })
        })
        .collect()
}

/// Logs every unreviewed break-glass entry when the approvals change, and every minute.
pub fn spawn_report(store: Arc<ApprovalStore>, policies: Arc<PolicyStore>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last: Option<Arc<Snapshot>> = None;
        let mut reported = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let Some(snapshot) = store.current() else { continue };
            let changed = last.as_ref().is_none_or(|l| !Arc::ptr_eq(l, &snapshot));
            if !changed && reported.elapsed() < REPORT_EVERY {
                continue;
            }
            let now = Timestamp::now();
            for u in unreviewed(&snapshot, &policies.current()) {
                tracing::warn!(approval = %u.id, user = %u.user, expires_at = %u.expires_at,
                    review_by = %u.review_by, overdue = now > u.review_by,
                    "break-glass entry not reviewed yet: an approver must add their name to its approvedBy");
            }
            last = Some(snapshot);
            reported = tokio::time::Instant::now();
        }
    })
}
