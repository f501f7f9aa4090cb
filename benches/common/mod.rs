//! Fixtures for the benchmarks: the perf review from `tests/fixtures/perf/` made into
//! an ungated, a denied and an approved request, policy sets of any size, and any number of
//! approvals spread over users, namespaces and resources.
#![allow(dead_code)]

use jiff::{SignedDuration, Timestamp};
use jitgate::approvals::{Approval, parse_entry};
use jitgate::policy::{PolicySet, parse_policies};
use std::sync::Arc;

pub const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/perf/deployment-update-2k.json"
);

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A Deployment update in a namespace no policy gates.
    Ungated,
    /// The same update in `prod-payments`, by a service account with no approval.
    Denied,
    /// The same update in `prod-payments`, by alice, who has an approval.
    Approved,
}

pub const KINDS: [(Kind, &str); 3] = [
    (Kind::Ungated, "ungated"),
    (Kind::Denied, "denied"),
    (Kind::Approved, "approved"),
];

/// The ~2.2 KB review the API server sends for a Deployment update, as `kind`.
pub fn review(kind: Kind) -> String {
    let mut review: serde_json::Value =
        serde_json::from_slice(&std::fs::read(FIXTURE).expect("tests/fixtures/perf in the repository"))
            .unwrap();
    let request = &mut review["request"];
    match kind {
        Kind::Ungated => {}
        Kind::Denied => request["namespace"] = "prod-payments".into(),
        Kind::Approved => {
            request["namespace"] = "prod-payments".into();
            request["userInfo"]["username"] = "alice@example.com".into();
        }
    }
    review.to_string()
}

/// `n` policies: the shipped prod-workloads (which gates the fixture in prod-*), and
/// `n - 1` others gating other resources and namespaces.
pub fn policies_yaml(n: usize) -> String {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies/prod-workloads.yaml"
    ))
    .unwrap();
    let mut text = shipped;
    for i in 1..n {
        text.push_str(&format!(
            "---\napiVersion: jitgate.dev/v1alpha1\nkind: GatePolicy\nmetadata: {{ name: synthetic-{i} }}\nspec:\n  rules: [{{ apiGroups: [\"example.com\"], resources: [\"widgets{i}\", \"gadgets{i}/scale\"], operations: [\"UPDATE\", \"DELETE\"] }}]\n  namespaces: [\"team-{i}\", \"team-{i}-*\"]\n  approval: {{ minApprovers: 1, maxDuration: 4h }}\n"
        ));
    }
    text
}

pub fn policies(n: usize) -> PolicySet {
    PolicySet::new(parse_policies(&policies_yaml(n), "bench.yaml").unwrap()).unwrap()
}

const RESOURCES: [&str; 4] = ["deployments", "statefulsets", "deployments/scale", "secrets"];

/// The YAML of approval `i` of `n`: the first is alice's for the approved request; the rest
/// belong to other users, spread over namespaces and resources.
pub fn entry(i: usize, expires: Timestamp) -> String {
    if i == 0 {
        return format!(
            "user: alice@example.com\nresource: deployments\napiGroup: apps\nnamespace: prod-payments\nname: payments-api\noperations: [UPDATE]\nexpiresAt: \"{expires}\"\nreason: \"CHG-1: release\"\napprovedBy: [bob@example.com]\n"
        );
    }
    format!(
        "user: user-{i}@example.com\nresource: {}\nnamespace: prod-{}\nname: app-{}\nexpiresAt: \"{expires}\"\nreason: \"CHG-{i}\"\napprovedBy: [approver-{}@example.com]\n",
        RESOURCES[i % RESOURCES.len()],
        i % 97,
        i % 1013,
        i % 7
    )
}

pub fn approvals(n: usize, now: Timestamp) -> Vec<Arc<Approval>> {
    let expires = now + SignedDuration::from_hours(1);
    (0..n)
        .map(|i| Arc::new(parse_entry(&format!("bench/e{i}"), &entry(i, expires)).unwrap()))
        .collect()
}
