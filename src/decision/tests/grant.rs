//! Policies with `grant: true`: an approval under them also grants, through the
//! authorization webhook, exactly what it names, to someone RBAC gives nothing.

use super::super::*;
use crate::admission::{GroupVersionResource, UserInfo};
use crate::approvals::{ConfigMapRef, Snapshot, parse_entry};
use crate::authorization::AccessRequest;
use crate::policy::parse_policies;

const POLICIES: &str = r#"
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata: { name: contractors }
spec:
  grant: true
  rules:
    - { apiGroups: [""], resources: ["secrets"], verbs: ["get", "list", "watch"], operations: ["UPDATE"] }
    - { apiGroups: ["apps"], resources: ["deployments/scale"], operations: ["UPDATE"] }
    - { apiGroups: [""], resources: ["pods/exec"], operations: ["CONNECT"] }
  namespaces: ["prod"]
  approval: { minApprovers: 1, maxDuration: 1h }
---
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata: { name: logs-take-away-only }
spec:
  rules: [{ apiGroups: [""], resources: ["pods/log"], verbs: ["get"] }]
  namespaces: ["prod"]
  approval: { minApprovers: 1, maxDuration: 1h }
"#;

fn now() -> Timestamp {
    "2026-12-04T12:00:00Z".parse().unwrap()
}

/// erin, a contractor with no RBAC rights, asking to `verb` `resource` in `namespace`.
fn asks(verb: &str, group: &str, resource: &str, sub: &str, namespace: &str, name: &str) -> AccessRequest {
    AccessRequest {
        user: UserInfo {
            username: "erin".into(),
            groups: vec!["contractors".into(), "system:authenticated".into()],
        },
        verb: verb.into(),
        resource: GroupVersionResource {
            group: group.into(),
            version: "v1".into(),
            resource: resource.into(),
        },
        sub_resource: sub.into(),
        namespace: namespace.into(),
        name: name.into(),
        non_resource_path: None,
    }
}

fn decide_with(entries: &[&str], req: &AccessRequest) -> Decision {
    decide_under(POLICIES, entries, req)
}

/// The same, under the policies of `text`.
fn decide_under(text: &str, entries: &[&str], req: &AccessRequest) -> Decision {
    let policies = PolicySet::new(parse_policies(text, "p.yaml").unwrap()).unwrap();
    let approvals = entries
        .iter()
        .enumerate()
        .map(|(i, e)| Arc::new(parse_entry(&format!("jitgate-approvals/e{i}"), e).unwrap()))
        .collect();
    let snapshot = Snapshot::new(approvals, 0, ConfigMapRef::default(), now());
    decide(
        req,
        &Inputs {
            policies: &policies,
            approvals: Approvals::Loaded(&snapshot),
            now: now(),
        },
    )
}

const SECRET_READ: &str = "user: erin\nresource: secrets\nnamespace: prod\nname: db-pass\nverbs: [get]\nexpiresAt: \"2026-12-04T12:30:00Z\"\nreason: INC-7\napprovedBy: [alice]\n";
const SCALE: &str = "user: erin\nresource: deployments/scale\napiGroup: apps\nnamespace: prod\nname: web\noperations: [UPDATE]\nexpiresAt: \"2026-12-04T12:30:00Z\"\nreason: INC-7\napprovedBy: [alice]\n";
const EXEC: &str = "user: erin\nresource: pods/exec\nnamespace: prod\nname: shell\noperations: [CONNECT]\nexpiresAt: \"2026-12-04T12:30:00Z\"\nreason: INC-7\napprovedBy: [alice]\n";

#[test]
fn an_approved_read_under_a_granting_policy_is_granted_and_nothing_beside_it() {
    let d = decide_with(&[SECRET_READ], &asks("get", "", "secrets", "", "prod", "db-pass"));
    assert_eq!((d.outcome(), d.code()), (Outcome::Grant, Code::Approved));
    // Another name, another verb, another namespace: denied, as any gated read is.
    for other in [
        asks("get", "", "secrets", "", "prod", "other"),
        asks("list", "", "secrets", "", "prod", ""),
        asks("watch", "", "secrets", "", "prod", "db-pass"),
    ] {
        let d = decide_with(&[SECRET_READ], &other);
        assert_eq!(d.outcome(), Outcome::Deny, "{} {}", other.verb, other.name);
    }
    // Outside the policy's namespaces: no opinion, RBAC decides (and gives erin nothing).
    let d = decide_with(
        &[SECRET_READ],
        &asks("get", "", "secrets", "", "staging", "db-pass"),
    );
    assert_eq!((d.outcome(), d.code()), (Outcome::Allow, Code::NotGated));
}

#[test]
fn an_approved_write_is_granted_for_both_of_its_verbs_and_only_its_object() {
    for verb in ["update", "patch"] {
        let d = decide_with(
            &[SCALE],
            &asks(verb, "apps", "deployments", "scale", "prod", "web"),
        );
        assert_eq!(d.outcome(), Outcome::Grant, "{verb}");
    }
    // Without an approval for it, a write is neither granted nor denied here: RBAC
    // decides, and admission gates it as ever. The reason says how to ask.
    for (verb, name) in [("update", "api"), ("delete", "web"), ("create", "web")] {
        let d = decide_with(
            &[SCALE],
            &asks(verb, "apps", "deployments", "scale", "prod", name),
        );
        assert!(
            matches!(d.outcome(), Outcome::NoOpinion | Outcome::Allow),
            "{verb} {name}: {:?}",
            d.outcome()
        );
        assert!(!matches!(d.outcome(), Outcome::Grant));
    }
    let d = decide_with(
        &[],
        &asks("update", "apps", "deployments", "scale", "prod", "web"),
    );
    assert_eq!((d.outcome(), d.code()), (Outcome::NoOpinion, Code::NoApproval));
}

#[test]
fn an_approved_exec_is_granted_for_its_websocket_get_and_its_create() {
    for verb in ["get", "create"] {
        let d = decide_with(&[EXEC], &asks(verb, "", "pods", "exec", "prod", "shell"));
        assert_eq!(d.outcome(), Outcome::Grant, "{verb}");
    }
    let d = decide_with(&[EXEC], &asks("create", "", "pods", "exec", "prod", "other"));
    assert_eq!(d.outcome(), Outcome::NoOpinion);
    let d = decide_with(&[EXEC], &asks("create", "", "pods", "attach", "prod", "shell"));
    assert_eq!(
        (d.outcome(), d.code()),
        (Outcome::Allow, Code::NotGated),
        "attach is no policy's"
    );
}

#[test]
fn an_expired_or_unapproved_entry_grants_nothing() {
    let expired = SECRET_READ.replace("2026-12-04T12:30:00Z", "2026-12-04T11:59:00Z");
    let pending = SECRET_READ.replace("approvedBy: [alice]", "approvedBy: []");
    let own = SECRET_READ.replace("approvedBy: [alice]", "approvedBy: [erin]");
    for entry in [expired.as_str(), pending.as_str(), own.as_str()] {
        let d = decide_with(&[entry], &asks("get", "", "secrets", "", "prod", "db-pass"));
        assert_eq!(d.outcome(), Outcome::Deny, "{entry}");
    }
}

#[test]
fn a_policy_without_grant_only_takes_power_away() {
    let logs = "user: erin\nresource: pods/log\nnamespace: prod\nname: shell\nverbs: [get]\nexpiresAt: \"2026-12-04T12:30:00Z\"\nreason: INC-7\napprovedBy: [alice]\n";
    let d = decide_with(&[logs], &asks("get", "", "pods", "log", "prod", "shell"));
    assert_eq!(
        (d.outcome(), d.code()),
        (Outcome::Allow, Code::Approved),
        "no opinion: RBAC decides"
    );
    // A write that only a policy without grant gates is admission's alone.
    let d = decide_with(&[], &asks("update", "", "secrets", "", "prod", "db-pass"));
    assert_eq!(
        d.outcome(),
        Outcome::NoOpinion,
        "contractors grants secret updates"
    );
    let d = decide_with(&[], &asks("delete", "", "secrets", "", "prod", "db-pass"));
    assert_eq!((d.outcome(), d.code()), (Outcome::Allow, Code::NotGated));
}

#[test]
fn a_pinned_write_is_granted_and_its_pin_left_to_admission() {
    let pinned = SCALE.replace(
        "reason: INC-7",
        "change: \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\nreason: INC-7",
    );
    let d = decide_with(
        &[&pinned],
        &asks("patch", "apps", "deployments", "scale", "prod", "web"),
    );
    assert_eq!(d.outcome(), Outcome::Grant);
}

#[test]
fn an_approval_to_delete_any_secret_grants_a_delete_of_each_but_never_a_deletecollection() {
    let any_secret = "user: erin\nresource: secrets\nnamespace: prod\noperations: [DELETE]\nexpiresAt: \"2026-12-04T12:30:00Z\"\nreason: INC-7\napprovedBy: [alice]\n";
    let policies = POLICIES.replace(
        r#"operations: ["UPDATE"] }"#,
        r#"operations: ["UPDATE", "DELETE"] }"#,
    );
    let decide_here = |req: &AccessRequest| decide_under(&policies, &[any_secret], req);
    let d = decide_here(&asks("delete", "", "secrets", "", "prod", "db-pass"));
    assert_eq!(d.outcome(), Outcome::Grant);
    // One call deleting every Secret at once is more than an approver pictures: RBAC
    // decides it (erin has nothing), and admission still gates each object's DELETE.
    let d = decide_here(&asks("deletecollection", "", "secrets", "", "prod", ""));
    assert_eq!(d.outcome(), Outcome::NoOpinion);
}
