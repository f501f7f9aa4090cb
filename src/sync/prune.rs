//! Cleaning the approvals ConfigMaps: entries that expired (an approval past its expiry,
//! a request past its policies' `requestTTL` without its approvers) are removed once they
//! have been expired for a while, so that the ledger holds what is live. Each removal goes
//! through the API server and the ledger like anyone's edit (which accepts removing what
//! has expired from anyone), and leaves an approval record. An unreviewed break-glass
//! entry stays until reviewed. Every replica may try; a removal that lost a race to
//! another is simply gone already.

use crate::approvals::{ApprovalStore, State, state_of};
use crate::policy::PolicyStore;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long an entry stays after it expired: time for people to see it so.
pub const KEEP_EXPIRED: SignedDuration = SignedDuration::from_mins(10);
/// How often the approvals are looked through.
const EVERY: Duration = Duration::from_secs(60);

/// The keys to remove from each ConfigMap: entries expired for longer than `keep`.
pub fn expired_keys(
    store: &ApprovalStore,
    policies: &crate::policy::PolicySet,
    now: Timestamp,
    keep: SignedDuration,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let Some(snapshot) = store.current() else {
        return out;
    };
    for a in snapshot.approvals.iter() {
        let unreviewed_break_glass = a.break_glass && a.approved_by.is_empty();
        if unreviewed_break_glass || state_of(a, Some(policies), now - keep).0 != State::Expired {
            continue;
        }
        if let Some((configmap, key)) = a.id.split_once('/') {
            out.entry(configmap.to_string())
                .or_default()
                .push(key.to_string());
        }
    }
    out
}

/// Removes expired entries every minute, through `api` (the approvals namespace).
pub fn spawn(
    api: Api<ConfigMap>,
    store: Arc<ApprovalStore>,
    policies: Arc<PolicyStore>,
    keep: SignedDuration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            let doomed = expired_keys(&store, &policies.current(), Timestamp::now(), keep);
            for (configmap, keys) in doomed {
                let data: serde_json::Map<String, serde_json::Value> = keys
                    .iter()
                    .map(|k| (k.clone(), serde_json::Value::Null))
                    .collect();
                let patch = serde_json::json!({"data": data});
                match api
                    .patch(&configmap, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => tracing::info!(configmap, removed = ?keys, "expired approval entries removed"),
                    Err(e) => {
                        tracing::warn!(configmap, keys = ?keys, error = %e, "expired approval entries not removed; trying again later")
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approvals::{ConfigMapRef, Snapshot, parse_entry};

    #[test]
    fn expired_entries_are_cleared_after_a_while_and_unreviewed_break_glass_never() {
        let now: Timestamp = "2026-11-21T20:00:00Z".parse().unwrap();
        let policies = crate::sync::policies::load_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
        )
        .unwrap();
        let entry = |key: &str, expires_in: i64, approvers: &str, extra: &str| {
            let text = format!(
                "user: alice\nresource: secrets\nnamespace: prod\noperations: [UPDATE]\nexpiresAt: \"{}\"\nreason: r\napprovedBy: [{approvers}]\n{extra}",
                now + SignedDuration::from_mins(expires_in)
            );
            Arc::new(parse_entry(&format!("jitgate-approvals/{key}"), &text).unwrap())
        };
        let stale_request = format!(
            "alice-prod-{}",
            (now - SignedDuration::from_hours(30)).strftime("%Y%m%d%H%M")
        );
        let store = ApprovalStore::default();
        store.replace(Snapshot::new(
            vec![
                entry("long-expired", -30, "bob", ""),
                entry("just-expired", -2, "bob", ""),
                entry("live", 30, "bob", ""),
                entry(&stale_request, 30, "", ""),
                entry("glass", -30, "", "breakGlass: true\n"),
            ],
            0,
            ConfigMapRef::default(),
            now,
        ));
        let doomed = expired_keys(&store, &policies, now, KEEP_EXPIRED);
        assert_eq!(doomed.len(), 1);
        assert_eq!(
            doomed["jitgate-approvals"],
            ["long-expired".to_string(), stale_request]
        );
    }
}
