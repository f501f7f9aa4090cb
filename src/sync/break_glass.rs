//! Logs every break-glass entry that no approver has reviewed yet, each by name, whenever
//! the approvals are loaded again and once a minute, so that nobody can break the glass
//! quietly.

use crate::approvals::break_glass::unreviewed;
use crate::approvals::{ApprovalStore, Snapshot};
use crate::policy::PolicyStore;
use jiff::Timestamp;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often unreviewed entries are logged while nothing changes.
const REPORT_EVERY: Duration = Duration::from_secs(60);

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
