//! Invariants checked on random input in every CI run (proptest):
//! - a decision grants exactly when a plain reference model, scanning every approval by the
//!   documented rules, finds one that allows the request: nothing is granted without a
//!   matching approval, and no valid approval is missed;
//! - decoding never panics, whatever the bytes, and every answer carries the uid it was sent;
//! - every answer of the server, good input or bad, leaves exactly one decision record;
//! - under policies that grant, the authorization webhook grants exactly what a live
//!   approval names, denies the other gated reads and leaves the other gated writes to RBAC.

use crate::support;

use jiff::{SignedDuration, Timestamp};
use jitgate::admission::decode;
use jitgate::approvals::{Approval, ConfigMapRef, Snapshot, Subject, parse_entry};
use jitgate::decision::{Approvals, Code, Inputs, decide};
use jitgate::policy::{PolicySet, Target, parse_policies};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::sync::Arc;

const POLICIES: &str = r#"
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata: { name: secrets }
spec:
  rules: [{ apiGroups: [""], resources: ["secrets"], operations: ["UPDATE", "DELETE"] }]
  namespaces: ["prod", "prod-*"]
  exempt: { users: ["robot"] }
  approval: { minApprovers: 1, maxDuration: 2h }
---
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata: { name: workloads }
spec:
  rules:
    - { apiGroups: ["apps"], resources: ["deployments"], operations: ["*"] }
    - { apiGroups: ["apps"], resources: ["deployments/scale"], operations: ["UPDATE"] }
  namespaces: ["prod"]
  approval: { minApprovers: 2, maxDuration: 1h }
"#;

const USERS: [&str; 4] = ["alice", "bob", "carol", "robot"];
const GROUPS: [&str; 3] = ["dev", "sre", "ops"];
const NAMESPACES: [&str; 3] = ["prod", "prod-eu", "dev"];
const RESOURCES: [(&str, &str, &str); 4] = [
    ("", "secrets", ""),
    ("apps", "deployments", ""),
    ("apps", "deployments", "scale"),
    ("", "configmaps", ""),
];
const NAMES: [&str; 2] = ["db", "web"];
const OPS: [&str; 4] = ["CREATE", "UPDATE", "DELETE", "CONNECT"];

#[derive(Debug, Clone)]
struct Req {
    user: usize,
    groups: Vec<usize>,
    ns: usize,
    resource: usize,
    name: usize,
    op: usize,
}

/// Weighted towards what policies gate, so that grants and near misses are common.
fn ns() -> impl Strategy<Value = usize> {
    prop_oneof![6 => Just(0usize), 3 => Just(1usize), 1 => Just(2usize)]
}

fn resource() -> impl Strategy<Value = usize> {
    prop_oneof![5 => Just(0usize), 3 => Just(1usize), 2 => Just(2usize), 1 => Just(3usize)]
}

fn op() -> impl Strategy<Value = usize> {
    prop_oneof![1 => Just(0usize), 6 => Just(1usize), 3 => Just(2usize), 1 => Just(3usize)]
}

fn user() -> impl Strategy<Value = usize> {
    prop_oneof![4 => Just(0usize), 2 => Just(1usize), 2 => Just(2usize), 1 => Just(3usize)]
}

fn req() -> impl Strategy<Value = Req> {
    (
        user(),
        prop::collection::vec(0..3usize, 0..3),
        ns(),
        resource(),
        0..2usize,
        op(),
    )
        .prop_map(|(user, groups, ns, resource, name, op)| Req {
            user,
            groups,
            ns,
            resource,
            name,
            op,
        })
}

/// An approval entry's text, chosen from the same small worlds so that matches happen.
fn entry() -> impl Strategy<Value = String> {
    (
        prop::bool::weighted(0.7),
        user(),
        0..3usize,
        ns(),
        resource(),
        prop::option::weighted(0.5, 0..2usize),
        prop::option::weighted(0.5, prop::collection::vec(op(), 1..3)),
        prop_oneof![1 => -90i64..0, 6 => 1i64..60, 2 => 60i64..150],
        prop::collection::vec(0..4usize, 0..4),
        prop::option::weighted(0.3, prop::bool::weighted(0.8)),
    )
        .prop_map(
            |(is_user, user, group, ns, resource, name, ops, expires_in, approvers, api_group)| {
                let (group_name, res, sub) = RESOURCES[resource];
                let mut text = if is_user {
                    format!("user: {}\n", USERS[user])
                } else {
                    format!("group: {}\n", GROUPS[group])
                };
                let resource = if sub.is_empty() {
                    res.to_string()
                } else {
                    format!("{res}/{sub}")
                };
                text.push_str(&format!("resource: {resource}\nnamespace: {}\n", NAMESPACES[ns]));
                match api_group {
                    Some(true) => text.push_str(&format!("apiGroup: \"{group_name}\"\n")),
                    Some(false) => text.push_str("apiGroup: \"example.com\"\n"),
                    None => {}
                }
                if let Some(n) = name {
                    text.push_str(&format!("name: {}\n", NAMES[n]));
                }
                if let Some(ops) = ops {
                    let ops: BTreeSet<&str> = ops.iter().map(|o| OPS[*o]).collect();
                    text.push_str(&format!(
                        "operations: [{}]\n",
                        ops.into_iter().collect::<Vec<_>>().join(", ")
                    ));
                }
                let expires = now() + SignedDuration::from_mins(expires_in);
                let approvers: Vec<&str> = approvers.iter().map(|a| USERS[*a]).collect();
                text.push_str(&format!(
                    "expiresAt: \"{expires}\"\nreason: r\napprovedBy: [{}]\n",
                    approvers.join(", ")
                ));
                text
            },
        )
}

fn now() -> Timestamp {
    "2026-11-21T20:00:00Z".parse().unwrap()
}

fn body(r: &Req, uid: &str) -> String {
    let (group, resource, sub) = RESOURCES[r.resource];
    let groups: Vec<&str> = r.groups.iter().map(|g| GROUPS[*g]).collect();
    serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "resource": {"group": group, "version": "v1", "resource": resource},
        "subResource": sub, "namespace": NAMESPACES[r.ns], "name": NAMES[r.name], "operation": OPS[r.op],
        "userInfo": {"username": USERS[r.user], "groups": groups},
        "object": {"data": {"password": "c2VjcmV0"}}}})
    .to_string()
}

/// The reference model: scan every approval, apply the rules as the README states them.
fn model_allows(r: &Req, policies: &PolicySet, approvals: &[Arc<Approval>]) -> bool {
    let op = jitgate::operation::Operation::ALL
        .into_iter()
        .find(|o| o.as_str() == OPS[r.op])
        .unwrap();
    model_allows_op(r, op, policies, approvals)
}

/// The test policies, every one of them granting, and reads of what they gate as well.
fn granting_policies() -> PolicySet {
    let granting = POLICIES.replace("spec:\n", "spec:\n  grant: true\n").replace(
        r#"operations: ["UPDATE", "DELETE"] }]"#,
        r#"operations: ["UPDATE", "DELETE"], verbs: ["get", "list"] }]"#,
    );
    PolicySet::new(parse_policies(&granting, "p.yaml").unwrap()).unwrap()
}

/// Generated entries as approvals, each under its own key.
fn parsed(entries: &[String]) -> Vec<Arc<Approval>> {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| Arc::new(parse_entry(&format!("cm/{i}"), e).unwrap()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn a_decision_grants_exactly_when_a_matching_approval_exists(r in req(), entries in prop::collection::vec(entry(), 0..16)) {
        let policies = PolicySet::new(parse_policies(POLICIES, "p.yaml").unwrap()).unwrap();
        let approvals: Vec<Arc<Approval>> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| Arc::new(parse_entry(&format!("cm/{i}"), e).unwrap()))
            .collect();
        let snapshot = Snapshot::new(approvals.clone(), 0, ConfigMapRef::default(), now());
        let text = body(&r, "uid-p");
        let request = decode(text.as_bytes()).unwrap();
        let inputs = Inputs { policies: &policies, approvals: Approvals::Loaded(&snapshot), now: now() };
        let d = decide(&request, &inputs);
        prop_assert_eq!(d.allowed(), model_allows(&r, &policies, &approvals), "{:?}", d.code());
        if d.allowed() && d.code() == Code::Approved {
            prop_assert!(d.approval().is_some());
        }
        let response = jitgate::respond::admission(&request, &d);
        prop_assert_eq!(response.uid.as_str(), "uid-p");
        prop_assert!(!serde_json::to_string(&response).unwrap().contains("c2VjcmV0"));
    }

    #[test]
    fn decoding_never_panics_and_every_answer_carries_the_uid_it_was_sent(bytes in prop::collection::vec(any::<u8>(), 0..512), r in req(), uid in "[a-z0-9-]{1,40}") {
        let _ = decode(&bytes);
        // A review with this uid: it is read back as sent, and whatever the answer (a
        // grant, an exemption, or a denial while no approvals are loaded), it carries it.
        let text = body(&r, &uid);
        let request = decode(text.as_bytes()).unwrap();
        prop_assert_eq!(&request.uid, &uid);
        let policies = PolicySet::new(parse_policies(POLICIES, "p.yaml").unwrap()).unwrap();
        let inputs = Inputs { policies: &policies, approvals: Approvals::NotLoaded, now: now() };
        let d = decide(&request, &inputs);
        prop_assert_eq!(jitgate::respond::admission(&request, &d).uid, uid);
    }
}

/// The server answers every request (good, bad, not even JSON) and writes exactly one
/// decision record for each.
#[tokio::test]
async fn every_answer_of_the_server_leaves_exactly_one_record() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let h = support::Harness::start(&support::approvals_manifest(&[])).await;
    let mut c = h.conn(support::Proto::H1).await;
    let mut runner = TestRunner::deterministic();
    let bodies = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        (req(), "[a-z0-9]{1,12}").prop_map(|(r, uid)| body(&r, &uid).into_bytes()),
        (req(), 0usize..400).prop_map(|(r, cut)| {
            let b = body(&r, "u").into_bytes();
            b[..cut.min(b.len())].to_vec()
        }),
    ];
    for _ in 0..200 {
        let bytes = bodies.new_tree(&mut runner).unwrap().current();
        let before = h.records().len();
        let reply = c
            .send(hyper::Method::POST, "/validate", Some("application/json"), bytes)
            .await;
        assert!(reply.status == 200 || reply.status == 400, "{}", reply.status);
        assert_eq!(h.records().len(), before + 1, "one record per answer");
    }
    h.stop().await;
}

/// The verbs of an authorization review, and the operation each performs, as the
/// authorization webhook's documentation states them.
const VERBS: [(&str, &str); 8] = [
    ("get", "get"),
    ("list", "list"),
    ("watch", "watch"),
    ("create", "CREATE"),
    ("update", "UPDATE"),
    ("patch", "UPDATE"),
    ("delete", "DELETE"),
    ("deletecollection", "DELETE"),
];

fn access_body(r: &Req, verb: usize) -> String {
    let (group, resource, sub) = RESOURCES[r.resource];
    let (verb, _) = VERBS[verb];
    let groups: Vec<&str> = r.groups.iter().map(|g| GROUPS[*g]).collect();
    // A list, a watch and a deletecollection name no object.
    let name = if matches!(verb, "list" | "watch" | "deletecollection") {
        ""
    } else {
        NAMES[r.name]
    };
    serde_json::json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"resourceAttributes": {"namespace": NAMESPACES[r.ns], "verb": verb, "group": group,
            "version": "v1", "resource": resource, "subresource": sub, "name": name},
            "user": USERS[r.user], "groups": groups}})
    .to_string()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// Under policies that grant, the authorization webhook answers `allowed` exactly when
    /// a live approval names the request (who, scope, name, operation, time, approvers), and
    /// otherwise denies a gated read, leaves a gated write to RBAC, and leaves the rest alone.
    #[test]
    fn a_grant_covers_exactly_what_an_approval_names(r in req(), verb in 0..VERBS.len(), entries in prop::collection::vec(entry(), 0..16)) {
        let policies = granting_policies();
        prop_assert!(policies.iter().all(|p| p.grant));
        let approvals = parsed(&entries);
        let snapshot = Snapshot::new(approvals.clone(), 0, ConfigMapRef::default(), now());
        let text = access_body(&r, verb);
        let request = jitgate::authorization::decode(text.as_bytes()).unwrap();
        let inputs = Inputs { policies: &policies, approvals: Approvals::Loaded(&snapshot), now: now() };
        let d = decide(&request, &inputs);
        // The model, on the request as an admission-shaped one with the verb's operation.
        let op = VERBS[verb].1;
        let name_less = request.name.is_empty();
        let (group, resource, sub) = RESOURCES[r.resource];
        let groups: Vec<String> = r.groups.iter().map(|g| GROUPS[*g].to_string()).collect();
        let operation = jitgate::operation::Operation::ALL.into_iter().find(|o| o.as_str() == op).unwrap();
        let target = Target { api_group: group, resource, sub_resource: sub, namespace: NAMESPACES[r.ns], operation, object: None };
        let gated = policies.gating(&target).into_iter().any(|p| !p.exempts(USERS[r.user], &groups));
        let named = approvals.iter().filter(|&a| !name_less || a.name.is_none()).cloned().collect::<Vec<_>>();
        // No approval grants a deletecollection: it deletes every object at once.
        let allowed = gated && VERBS[verb].0 != "deletecollection" && model_allows_op(&r, operation, &policies, &named);
        use jitgate::decision::Outcome;
        let want = match (allowed, gated, operation.is_read()) {
            (true, _, _) => Outcome::Grant,
            (false, true, true) => Outcome::Deny,
            (false, true, false) => Outcome::NoOpinion,
            (false, false, _) => Outcome::Allow,
        };
        prop_assert_eq!(d.outcome(), want, "{} {:?} {}", VERBS[verb].0, d.code(), text);
    }
}

/// The reference model for any operation, read verbs included.
fn model_allows_op(
    r: &Req,
    op: jitgate::operation::Operation,
    policies: &PolicySet,
    approvals: &[Arc<Approval>],
) -> bool {
    let (group, resource, sub) = RESOURCES[r.resource];
    let (user, ns) = (USERS[r.user], NAMESPACES[r.ns]);
    let groups: Vec<String> = r.groups.iter().map(|g| GROUPS[*g].to_string()).collect();
    let target = Target {
        api_group: group,
        resource,
        sub_resource: sub,
        namespace: ns,
        operation: op,
        object: None,
    };
    let gating: Vec<_> = policies
        .gating(&target)
        .into_iter()
        .filter(|p| !p.exempts(user, &groups))
        .collect();
    if gating.is_empty() {
        return true;
    }
    let min = gating.iter().map(|p| p.min_approvers).max().unwrap();
    let max = gating.iter().map(|p| p.max_duration).min().unwrap();
    approvals.iter().any(|a| {
        let who = match &a.subject {
            Subject::User(u) => **u == *user,
            Subject::Group(g) => groups.iter().any(|m| **m == **g),
        };
        let requester = if let Subject::User(u) = &a.subject {
            Some(&**u)
        } else {
            None
        };
        let approvers: BTreeSet<&str> = a
            .approved_by
            .iter()
            .map(|n| &**n)
            .filter(|n| *n != user && Some(*n) != requester)
            .collect();
        who && *a.resource == *resource
            && *a.sub_resource == *sub
            && a.api_group.as_deref().is_none_or(|g| g == group)
            && *a.namespace == *ns
            && a.name.as_deref().is_none_or(|n| n == NAMES[r.name])
            && a.operations.is_none_or(|ops| ops.contains(op))
            && now() < a.expires_at
            && a.expires_at.duration_since(now()) <= max
            && approvers.len() as u32 >= min
    })
}

/// An entry as [`entry`] writes them, with sometimes read verbs (`verbs:`) beside or
/// instead of its operations, and sometimes `maxUses`.
fn granting_entry() -> impl Strategy<Value = String> {
    (
        entry(),
        prop::option::weighted(
            0.5,
            prop::sample::subsequence(vec!["get", "list", "watch"], 1..=3),
        ),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(mut text, verbs, max_uses)| {
            if let Some(verbs) = verbs {
                text.push_str(&format!("verbs: [{}]\n", verbs.join(", ")));
            }
            if max_uses {
                text.push_str("maxUses: 1\n");
            }
            text
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// The RBAC way (`serve --grants rbac`): the Roles rendered for the approvals, bound to
    /// their subjects, let through only what `decide` grants at `/authorize`; and they let
    /// through everything it grants by an approval that has a Role, except what a Role
    /// cannot bound by name (a `create` under a named approval, `deletecollection`), which
    /// they leave out.
    #[test]
    fn a_role_covers_exactly_what_decide_grants(mut r in req(), in_every_group in prop::bool::weighted(0.3), verb in 0..VERBS.len(), named_read in prop::bool::weighted(0.2), entries in prop::collection::vec(granting_entry(), 0..16)) {
        let policies = granting_policies();
        prop_assert!(policies.iter().all(|p| p.grant));
        let approvals = parsed(&entries);
        let snapshot = Snapshot::new(approvals, 0, ConfigMapRef::default(), now());
        // Often in every group, so that an approver asks under an approval to their group.
        if in_every_group {
            r.groups = (0..GROUPS.len()).collect();
        }
        let mut text = access_body(&r, verb);
        // A list or watch of one object by name (`--field-selector metadata.name=`) carries it.
        if named_read && matches!(VERBS[verb].0, "list" | "watch") {
            text = text.replace(r#""name":"""#, &format!(r#""name":"{}""#, NAMES[r.name]));
        }
        let request = jitgate::authorization::decode(text.as_bytes()).unwrap();
        let inputs = Inputs { policies: &policies, approvals: Approvals::Loaded(&snapshot), now: now() };
        let d = decide(&request, &inputs);
        let granted = d.outcome() == jitgate::decision::Outcome::Grant;
        let grants = jitgate::rbac::grants_of(&snapshot, &policies, now());
        let by_role = grants.iter().filter_map(|(_, g)| g.as_ref().ok()).any(|g| g.allows(&request));
        prop_assert!(!by_role || granted, "a Role lets through what decide does not grant: {:?} {}", d.code(), text);
        if let Some(a) = d.approval().filter(|_| granted) {
            let has_role = grants.iter().any(|(b, g)| b.id == a.id && g.is_ok());
            let unbounded = request.verb == "deletecollection"
                || (request.verb == "create" && a.name.is_some() && request.sub_resource.is_empty());
            prop_assert!(!has_role || unbounded || by_role, "decide grants by {} but its Role does not: {}", a.id, text);
        }
    }
}
