//! Offline approvals (signatures) and levels of approvers, as the decision counts them.

use super::*;
use crate::signing::{PrivateKey, Signers, sign};
use std::collections::BTreeMap;

const LEVELS: &str = r#"
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata: { name: prod-secrets }
spec:
  rules: [{ apiGroups: [""], resources: ["secrets"], operations: ["UPDATE"] }]
  namespaces: ["prod"]
  approval:
    maxDuration: 4h
    levels: [{ groups: [team-leads] }, { groups: [security] }]
"#;

/// Signers: carol (security), alice (the requester, security), old (security, expired).
fn signers(carol: &PrivateKey, alice: &PrivateKey, old: &PrivateKey) -> Signers {
    let data = BTreeMap::from([
        (
            "carol".to_string(),
            format!("publicKey: {}\nuser: carol\ngroups: [security]\n", carol.public()),
        ),
        (
            "alice".to_string(),
            format!("publicKey: {}\nuser: alice\ngroups: [security]\n", alice.public()),
        ),
        (
            "old".to_string(),
            format!(
                "publicKey: {}\nuser: old\ngroups: [security]\nnotAfter: \"{}\"\n",
                old.public(),
                at(-1)
            ),
        ),
    ]);
    Signers::from_data(crate::signing::Binding::default(), &data).0
}

/// `text` as entry `cm/e0`, signed by each of `by`.
fn signed(text: &str, by: &[(&str, &PrivateKey)]) -> String {
    let mut a = parse_entry("cm/e0", text).unwrap();
    for (name, key) in by {
        let sig = sign(&a.terms(), &crate::signing::Binding::default(), name, key, None);
        a.rare.make_mut().signatures.push(sig);
    }
    a.to_yaml()
}

/// alice's update of Secret prod/db-password, as the API server sends it.
fn review_body() -> String {
    serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u", "resource": {"group": "", "version": "v1", "resource": "secrets"},
        "namespace": "prod", "name": "db-password", "operation": "UPDATE",
        "userInfo": {"username": "alice", "groups": ["dev"]}}})
    .to_string()
}

fn decide_signed(policies: &str, text: &str, signers: Signers) -> Decision {
    let body = review_body();
    let request = decode(body.as_bytes()).unwrap();
    let policies = PolicySet::new(parse_policies(policies, "t.yaml").unwrap()).unwrap();
    let approvals = vec![Arc::new(parse_entry("cm/e0", text).unwrap())];
    let snapshot = Snapshot::signed(approvals, 0, ConfigMapRef::default(), Arc::new(signers), now());
    decide(
        &request,
        &Inputs {
            policies: &policies,
            approvals: Approvals::Loaded(&snapshot),
            now: now(),
        },
    )
}

fn message(d: &Decision) -> String {
    let body = review_body();
    let request = decode(body.as_bytes()).unwrap();
    crate::explain::denial_message((&request).into(), d)
}

#[test]
fn a_trusted_signature_is_an_approval_by_its_signer_until_the_signer_goes() {
    let (carol, alice, old) = (
        PrivateKey::generate().unwrap().0,
        PrivateKey::generate().unwrap().0,
        PrivateKey::generate().unwrap().0,
    );
    let pending = entry(&[("approvedBy: [bob]", "approvedBy: []")]);
    let text = signed(&pending, &[("carol", &carol)]);
    let d = decide_signed(POLICIES, &text, signers(&carol, &alice, &old));
    assert_eq!(d.code(), Code::Approved, "{}", message(&d));
    // Carol removed from the signers: the same entry grants nothing, and says why.
    let d = decide_signed(POLICIES, &text, Signers::default());
    assert_eq!(d.code(), Code::TooFewApprovers);
    assert!(
        message(&d).contains("\"carol\" is not a trusted signer"),
        "{}",
        message(&d)
    );
    // Signed by the requester herself, or by a key past its notAfter: nothing.
    for (by, needle) in [
        (("alice", &alice), "is the requester's own"),
        (("old", &old), "key expired at"),
    ] {
        let text = signed(&pending, &[by]);
        let d = decide_signed(POLICIES, &text, signers(&carol, &alice, &old));
        assert_eq!(d.code(), Code::TooFewApprovers, "{needle}");
        assert!(message(&d).contains(needle), "{}", message(&d));
    }
}

#[test]
fn a_two_level_policy_denies_with_one_level_met_and_allows_with_both() {
    let (carol, alice, old) = (
        PrivateKey::generate().unwrap().0,
        PrivateKey::generate().unwrap().0,
        PrivateKey::generate().unwrap().0,
    );
    let signers = || signers(&carol, &alice, &old);
    // bob approved online as a team lead: one level of two.
    let lead = entry(&[(
        "approvedBy: [bob]",
        "approvedBy: [bob]\napprovedAs: {bob: [team-leads]}",
    )]);
    let d = decide_signed(LEVELS, &lead, signers());
    assert_eq!(d.code(), Code::TooFewApprovers);
    let m = message(&d);
    assert!(
        m.contains("has 1 of the 2 approvers it needs; still missing: 1 of security"),
        "{m}"
    );
    // With no approval at all, the denial says what the levels are.
    let other = lead.replace("name: db-password", "name: other");
    let m = message(&decide_signed(LEVELS, &other, signers()));
    assert!(
        m.contains("(1 of team-leads and 1 of security, distinct people)"),
        "{m}"
    );
    // carol signs offline as security: both levels met.
    let d = decide_signed(LEVELS, &signed(&lead, &[("carol", &carol)]), signers());
    assert_eq!(d.code(), Code::Approved, "{}", message(&d));
    // Two people in one level do not make up for the other.
    let two_leads = entry(&[(
        "approvedBy: [bob]",
        "approvedBy: [bob, dave]\napprovedAs: {bob: [team-leads], dave: [team-leads]}",
    )]);
    let d = decide_signed(LEVELS, &two_leads, signers());
    assert_eq!(d.code(), Code::TooFewApprovers);
    assert!(message(&d).contains("still missing: 1 of security"));
}

/// An edit of ConfigMap `namespace/name` by mallory, from `old` to `new` (objects).
fn configmap_edit(
    namespace: &str,
    name: &str,
    old: serde_json::Value,
    new: serde_json::Value,
    approvals: Approvals<'_>,
) -> Decision {
    let body =
        serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u", "resource": {"group": "", "version": "v1", "resource": "configmaps"},
        "namespace": namespace, "name": name, "operation": "UPDATE",
        "userInfo": {"username": "mallory", "groups": ["dev"]}, "object": new, "oldObject": old}})
        .to_string();
    let request = decode(body.as_bytes()).unwrap();
    let policies = PolicySet::new(parse_policies(POLICIES, "t.yaml").unwrap()).unwrap();
    decide(
        &request,
        &Inputs {
            policies: &policies,
            approvals,
            now: now(),
        },
    )
}

fn cm(name: &str, labels: serde_json::Value, data: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"kind": "ConfigMap", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "jitgate-system", "labels": labels}, "data": data})
}

#[test]
fn a_label_never_moves_a_configmap_between_the_guards() {
    let snapshot = Snapshot::new(Vec::new(), 0, ConfigMapRef::default(), now());
    let loaded = Approvals::Loaded(&snapshot);
    let key = PrivateKey::generate().unwrap().0;
    let signer = format!("publicKey: {}\nuser: sam\n", key.public());
    // An approvals ConfigMap relabelled as signers, with a signer: the approvals ledger
    // judges it (a revocation of what it held), never the signers guard.
    let d = configmap_edit(
        "jitgate-system",
        "jitgate-approvals",
        cm(
            "jitgate-approvals",
            serde_json::json!({"jitgate.dev/approvals": "true"}),
            serde_json::json!({}),
        ),
        cm(
            "jitgate-approvals",
            serde_json::json!({"jitgate.dev/signers": "true"}),
            serde_json::json!({"mine": signer}),
        ),
        loaded,
    );
    assert_eq!(d.code(), Code::LedgerAccepted, "{:?}", d.reason);
    // jitgate-signers, unlabelled: the signers guard, by its name.
    let d = configmap_edit(
        "jitgate-system",
        "jitgate-signers",
        cm("jitgate-signers", serde_json::json!({}), serde_json::json!({})),
        cm(
            "jitgate-signers",
            serde_json::json!({}),
            serde_json::json!({"sam": signer}),
        ),
        loaded,
    );
    assert_eq!(d.code(), Code::SignersChanged, "{:?}", d.reason);
    // ... and never also an approvals ConfigMap.
    let d = configmap_edit(
        "jitgate-system",
        "jitgate-signers",
        cm("jitgate-signers", serde_json::json!({}), serde_json::json!({})),
        cm(
            "jitgate-signers",
            serde_json::json!({"jitgate.dev/approvals": "true"}),
            serde_json::json!({}),
        ),
        loaded,
    );
    assert!(
        matches!(&d.reason, Reason::LedgerRefused { violation } if violation.rule == ledger::LedgerRule::GuardCrossed),
        "{:?}",
        d.reason
    );
    // A ConfigMap of that name in another namespace is nobody's signers.
    let d = configmap_edit(
        "team-a",
        "jitgate-signers",
        cm("jitgate-signers", serde_json::json!({}), serde_json::json!({})),
        cm(
            "jitgate-signers",
            serde_json::json!({}),
            serde_json::json!({"sam": signer}),
        ),
        loaded,
    );
    assert_eq!(d.code(), Code::NotGated, "{:?}", d.reason);
    // Before the approvals are loaded, where the signers live is not known: refused.
    let d = configmap_edit(
        "jitgate-system",
        "jitgate-signers",
        cm("jitgate-signers", serde_json::json!({}), serde_json::json!({})),
        cm(
            "jitgate-signers",
            serde_json::json!({}),
            serde_json::json!({"sam": signer}),
        ),
        Approvals::NotLoaded,
    );
    assert_eq!(d.code(), Code::LedgerRefused, "{:?}", d.reason);
}
