//! The matching rules, one test each.

use super::*;
use crate::admission::decode;
use crate::approvals::{ConfigMapRef, Snapshot, parse_entry};
use crate::policy::parse_policies;

const POLICIES: &str = r#"
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata: { name: prod-secrets }
spec:
  rules: [{ apiGroups: [""], resources: ["secrets"], operations: ["UPDATE", "DELETE"] }]
  namespaces: ["prod", "prod-*"]
  exempt: { users: ["system:serviceaccount:kube-system:*"], groups: ["robots"] }
  approval: { minApprovers: 1, maxDuration: 4h }
---
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata: { name: prod-workloads }
spec:
  rules:
    - { apiGroups: ["apps"], resources: ["deployments"], operations: ["UPDATE", "DELETE"] }
    - { apiGroups: ["apps"], resources: ["deployments/scale"], operations: ["UPDATE"] }
  namespaces: ["prod"]
  approval: { minApprovers: 1, maxDuration: 4h }
---
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata: { name: prod-critical }
spec:
  rules: [{ apiGroups: ["apps"], resources: ["deployments"], operations: ["DELETE"] }]
  namespaces: ["prod"]
  approval: { minApprovers: 2, maxDuration: 1h }
"#;

/// A request, described by the few fields that matter.
#[derive(Clone)]
struct Req {
    user: &'static str,
    groups: &'static [&'static str],
    group: &'static str,
    resource: &'static str,
    sub: &'static str,
    namespace: &'static str,
    name: &'static str,
    op: &'static str,
}

const SECRET_UPDATE: Req = Req {
    user: "alice",
    groups: &["dev", "system:authenticated"],
    group: "",
    resource: "secrets",
    sub: "",
    namespace: "prod",
    name: "db-password",
    op: "UPDATE",
};

fn now() -> Timestamp {
    "2026-11-21T20:00:00Z".parse().unwrap()
}

fn at(offset_mins: i64) -> String {
    (now() + SignedDuration::from_mins(offset_mins)).to_string()
}

/// An approval entry for alice on prod secrets/db-password, valid for 30 minutes,
/// approved by bob; `edits` replace lines.
fn entry(edits: &[(&str, &str)]) -> String {
    let mut text = format!(
        "user: alice\nresource: secrets\nnamespace: prod\nname: db-password\noperations: [UPDATE]\nexpiresAt: \"{}\"\nreason: INC-1\napprovedBy: [bob]\n",
        at(30)
    );
    for (from, to) in edits {
        assert!(text.contains(from), "{from} not in entry");
        text = text.replace(from, to);
    }
    text
}

fn decide_with(req: &Req, entries: &[String], approvals_loaded: bool) -> Decision {
    let request = serde_json::json!({
        "uid": "uid-1",
        "resource": {"group": req.group, "version": "v1", "resource": req.resource},
        "subResource": req.sub,
        "namespace": req.namespace,
        "name": req.name,
        "operation": req.op,
        "userInfo": {"username": req.user, "groups": req.groups},
    });
    decide_under(POLICIES, request, entries, approvals_loaded)
}

/// Decides a review (its `request` given as JSON) under `policies`, with `entries`
/// loaded or not.
fn decide_under(policies: &str, request: serde_json::Value, entries: &[String], loaded: bool) -> Decision {
    let body = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
        .to_string();
    let request = decode(body.as_bytes()).unwrap();
    let policies = PolicySet::new(parse_policies(policies, "t.yaml").unwrap()).unwrap();
    let snapshot = snapshot_of(entries);
    let approvals = if loaded {
        Approvals::Loaded(&snapshot)
    } else {
        Approvals::NotLoaded
    };
    decide(
        &request,
        &Inputs {
            policies: &policies,
            approvals,
            now: now(),
        },
    )
}

/// The approvals `entries` (ids `cm/e0`, `cm/e1`…), loaded at [`now`].
fn snapshot_of(entries: &[String]) -> Snapshot {
    let approvals: Vec<_> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| Arc::new(parse_entry(&format!("cm/e{i}"), e).unwrap()))
        .collect();
    Snapshot::new(approvals, 0, ConfigMapRef::default(), now())
}

fn decide_one(req: &Req, entry: String) -> Decision {
    decide_with(req, &[entry], true)
}

#[test]
fn a_request_no_policy_gates_is_allowed_as_not_gated() {
    for req in [
        Req {
            namespace: "staging",
            ..SECRET_UPDATE
        },
        Req {
            op: "CREATE",
            ..SECRET_UPDATE
        },
        Req {
            resource: "configmaps",
            ..SECRET_UPDATE
        },
        Req {
            sub: "status",
            ..SECRET_UPDATE
        },
    ] {
        let d = decide_with(&req, &[], true);
        assert!(d.allowed());
        assert_eq!(d.code(), Code::NotGated);
        assert!(d.policies().is_empty());
    }
}

#[test]
fn an_exempt_user_or_group_is_allowed_and_the_policy_is_named() {
    let sa = Req {
        user: "system:serviceaccount:kube-system:generic-garbage-collector",
        ..SECRET_UPDATE
    };
    let robot = Req {
        groups: &["robots"],
        ..SECRET_UPDATE
    };
    for req in [sa, robot] {
        let d = decide_with(&req, &[], true);
        assert!(d.allowed());
        assert_eq!(d.code(), Code::Exempt);
        assert_eq!(d.policies(), ["prod-secrets"]);
    }
}

#[test]
fn a_gated_request_without_any_approval_is_denied() {
    let d = decide_with(&SECRET_UPDATE, &[], true);
    assert!(!d.allowed());
    assert_eq!(d.code(), Code::NoApproval);
    assert_eq!(d.policies(), ["prod-secrets"]);
    let req = d.requirement().unwrap();
    assert_eq!(
        (req.min_approvers, req.max_duration),
        (1, SignedDuration::from_hours(4))
    );
}

#[test]
fn a_matching_live_approval_allows() {
    let d = decide_one(&SECRET_UPDATE, entry(&[]));
    assert!(d.allowed());
    assert_eq!(d.code(), Code::Approved);
    assert_eq!(d.approval().unwrap().id, "cm/e0");
}

#[test]
fn an_expired_approval_does_not_allow() {
    let d = decide_one(&SECRET_UPDATE, entry(&[(&at(30), &at(-1))]));
    assert!(!d.allowed());
    assert_eq!(d.code(), Code::ApprovalExpired);
    assert_eq!(d.approval().unwrap().id, "cm/e0");
}

#[test]
fn an_approval_expiring_exactly_now_does_not_allow() {
    let d = decide_one(&SECRET_UPDATE, entry(&[(&at(30), &at(0))]));
    assert_eq!(d.code(), Code::ApprovalExpired);
}

#[test]
fn an_approval_longer_than_max_duration_does_not_allow() {
    let d = decide_one(&SECRET_UPDATE, entry(&[(&at(30), &at(4 * 60 + 1))]));
    assert!(!d.allowed());
    assert_eq!(d.code(), Code::ApprovalExceedsMaxDuration);
    let d = decide_one(&SECRET_UPDATE, entry(&[(&at(30), &at(4 * 60))]));
    assert!(d.allowed(), "exactly maxDuration is within it");
}

#[test]
fn another_users_approval_does_not_allow() {
    let d = decide_one(&SECRET_UPDATE, entry(&[("user: alice", "user: mallory")]));
    assert_eq!(d.code(), Code::NoApproval);
}

#[test]
fn an_approval_for_another_namespace_does_not_allow() {
    let d = decide_one(
        &SECRET_UPDATE,
        entry(&[("namespace: prod", "namespace: prod-eu")]),
    );
    assert_eq!(d.code(), Code::NoApproval);
}

#[test]
fn an_approval_for_another_object_does_not_allow() {
    let d = decide_one(&SECRET_UPDATE, entry(&[("name: db-password", "name: api-token")]));
    assert_eq!(d.code(), Code::NoApproval);
}

#[test]
fn an_approval_for_another_operation_does_not_allow() {
    let d = decide_one(&SECRET_UPDATE, entry(&[("[UPDATE]", "[DELETE]")]));
    assert_eq!(d.code(), Code::NoApproval);
}

#[test]
fn an_approval_for_another_api_group_does_not_allow() {
    let d = decide_one(
        &SECRET_UPDATE,
        entry(&[("resource: secrets", "resource: secrets\napiGroup: example.com")]),
    );
    assert_eq!(d.code(), Code::NoApproval);
    let d = decide_one(
        &SECRET_UPDATE,
        entry(&[("resource: secrets", "resource: secrets\napiGroup: \"\"")]),
    );
    assert!(d.allowed(), "the core group spelled out matches");
}

#[test]
fn an_approval_without_name_or_operations_covers_every_object_and_gated_operation() {
    let wide = entry(&[("name: db-password\n", ""), ("operations: [UPDATE]\n", "")]);
    let delete_other = Req {
        op: "DELETE",
        name: "api-token",
        ..SECRET_UPDATE
    };
    assert!(decide_one(&delete_other, wide).allowed());
}

#[test]
fn an_approval_for_a_resource_does_not_cover_its_subresource() {
    let scale = Req {
        group: "apps",
        resource: "deployments",
        sub: "scale",
        name: "web",
        ..SECRET_UPDATE
    };
    let for_deployments = entry(&[
        ("resource: secrets", "resource: deployments"),
        ("name: db-password", "name: web"),
    ]);
    assert_eq!(decide_one(&scale, for_deployments).code(), Code::NoApproval);
    let for_scale = entry(&[
        ("resource: secrets", "resource: deployments/scale"),
        ("name: db-password", "name: web"),
    ]);
    assert!(decide_one(&scale, for_scale).allowed());
}

#[test]
fn too_few_approvers_do_not_allow() {
    let d = decide_one(&SECRET_UPDATE, entry(&[("[bob]", "[]")]));
    assert!(!d.allowed());
    assert_eq!(d.code(), Code::TooFewApprovers);
    assert!(matches!(
        d.reason,
        Reason::TooFewApprovers {
            counted: 0,
            self_approved: false,
            ..
        }
    ));
}

#[test]
fn approving_your_own_request_does_not_count() {
    let d = decide_one(&SECRET_UPDATE, entry(&[("[bob]", "[alice]")]));
    assert!(!d.allowed());
    assert_eq!(d.code(), Code::TooFewApprovers);
    assert!(matches!(
        d.reason,
        Reason::TooFewApprovers {
            counted: 0,
            self_approved: true,
            ..
        }
    ));
}

#[test]
fn one_approver_named_twice_counts_once() {
    let delete = Req {
        group: "apps",
        resource: "deployments",
        name: "web",
        op: "DELETE",
        ..SECRET_UPDATE
    };
    let approval = |approvers: &str| {
        entry(&[
            ("resource: secrets", "resource: deployments"),
            ("name: db-password", "name: web"),
            ("[UPDATE]", "[DELETE]"),
            ("[bob]", approvers),
        ])
    };
    assert_eq!(
        decide_one(&delete, approval("[bob, bob]")).code(),
        Code::TooFewApprovers
    );
    assert!(decide_one(&delete, approval("[bob, carol]")).allowed());
}

#[test]
fn a_group_approval_allows_a_member_but_not_on_their_own_word() {
    let for_group = entry(&[("user: alice", "group: dev")]);
    assert!(decide_one(&SECRET_UPDATE, for_group).allowed());
    let outsider = Req {
        groups: &["ops"],
        ..SECRET_UPDATE
    };
    assert_eq!(
        decide_one(&outsider, entry(&[("user: alice", "group: dev")])).code(),
        Code::NoApproval
    );
    let self_signed = entry(&[("user: alice", "group: dev"), ("[bob]", "[alice]")]);
    assert_eq!(
        decide_one(&SECRET_UPDATE, self_signed).code(),
        Code::TooFewApprovers
    );
}

#[test]
fn the_strictest_of_several_gating_policies_applies() {
    let delete = Req {
        group: "apps",
        resource: "deployments",
        name: "web",
        op: "DELETE",
        ..SECRET_UPDATE
    };
    let approval = |expires: i64, approvers: &str| {
        entry(&[
            ("resource: secrets", "resource: deployments"),
            ("name: db-password", "name: web"),
            ("[UPDATE]", "[DELETE]"),
            (&at(30), &at(expires)),
            ("[bob]", approvers),
        ])
    };
    let d = decide_one(&delete, approval(30, "[bob]"));
    assert_eq!(d.policies(), ["prod-workloads", "prod-critical"]);
    assert_eq!(d.code(), Code::TooFewApprovers, "prod-critical needs two");
    let d = decide_one(&delete, approval(90, "[bob, carol]"));
    assert_eq!(
        d.code(),
        Code::ApprovalExceedsMaxDuration,
        "prod-critical allows 1h"
    );
    assert!(decide_one(&delete, approval(59, "[bob, carol]")).allowed());
}

#[test]
fn a_live_approval_wins_over_an_expired_one() {
    let d = decide_with(&SECRET_UPDATE, &[entry(&[(&at(30), &at(-5))]), entry(&[])], true);
    assert!(d.allowed());
    assert_eq!(d.approval().unwrap().id, "cm/e1");
}

#[test]
fn without_loaded_approvals_gated_requests_are_denied_and_ungated_allowed() {
    let d = decide_with(&SECRET_UPDATE, &[entry(&[])], false);
    assert!(!d.allowed());
    assert_eq!(d.code(), Code::ApprovalsUnavailable);
    let d = decide_with(
        &Req {
            namespace: "dev",
            ..SECRET_UPDATE
        },
        &[],
        false,
    );
    assert!(d.allowed());
}

#[test]
fn stale_approvals_grant_nothing_and_say_for_how_long() {
    let body =
        serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u", "resource": {"group": "", "version": "v1", "resource": "secrets"}, "namespace": "prod",
        "name": "db-password", "operation": "UPDATE", "userInfo": {"username": "alice", "groups": []}}})
        .to_string();
    let request = decode(body.as_bytes()).unwrap();
    let policies = PolicySet::new(parse_policies(POLICIES, "t.yaml").unwrap()).unwrap();
    let silent_for = Duration::from_secs(400);
    let inputs = Inputs {
        policies: &policies,
        approvals: Approvals::Stale { silent_for },
        now: now(),
    };
    let d = decide(&request, &inputs);
    assert!(!d.allowed());
    assert_eq!(d.code(), Code::ApprovalsStale);
    assert!(matches!(d.reason, Reason::ApprovalsStale { silent_for: s, .. } if s == silent_for));
}

fn decide_review(policies: &str, request: serde_json::Value, entries: &[String]) -> Decision {
    decide_under(policies, request, entries, true)
}

fn scale_review(from: u32, to: u32, image: &str) -> serde_json::Value {
    let deployment = |replicas: u32, image: &str, rv: &str| {
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "prod", "resourceVersion": rv},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "web", "image": image}]}}}})
    };
    serde_json::json!({"uid": "u", "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "namespace": "prod", "name": "web", "operation": "UPDATE",
        "userInfo": {"username": "alice", "groups": ["dev"]},
        "oldObject": deployment(from, "web:1", "7"), "object": deployment(to, image, "7")})
}

fn fingerprint_of(request: &serde_json::Value) -> String {
    let body = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
        .to_string();
    crate::change::of(&decode(body.as_bytes()).unwrap())
        .unwrap()
        .fingerprint
}

fn deployment_entry(extra: &str) -> String {
    format!(
        "user: alice\nresource: deployments\napiGroup: apps\nnamespace: prod\nname: web\nexpiresAt: \"{}\"\nreason: INC-2\napprovedBy: [bob]\n{extra}",
        at(30)
    )
}

#[test]
fn a_pinned_approval_allows_its_change_and_no_other() {
    let approved = scale_review(2, 5, "web:1");
    let pin = format!("change: \"{}\"\n", fingerprint_of(&approved));
    let d = decide_review(POLICIES, approved, &[deployment_entry(&pin)]);
    assert_eq!((d.allowed(), d.code()), (true, Code::Approved));

    for other in [scale_review(2, 6, "web:1"), scale_review(2, 5, "web:2")] {
        let d = decide_review(POLICIES, other, &[deployment_entry(&pin)]);
        assert_eq!((d.allowed(), d.code()), (false, Code::ChangeNotApproved));
        assert!(matches!(d.reason, Reason::ChangeNotApproved { .. }));
    }
    // Without a pin, the same approval allows any change.
    let d = decide_review(POLICIES, scale_review(2, 6, "web:2"), &[deployment_entry("")]);
    assert!(d.allowed());
}

const BREAK_GLASS: &str = r#"
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata: { name: prod-secrets }
spec:
  rules: [{ apiGroups: [""], resources: ["secrets"], operations: ["UPDATE"] }]
  approval: { minApprovers: 1, maxDuration: 4h }
  breakGlass: { groups: ["oncall"], maxDuration: 1h, reviewWithin: 24h }
"#;

fn secret_review(user: &str, groups: &[&str]) -> serde_json::Value {
    serde_json::json!({"uid": "u", "resource": {"group": "", "version": "v1", "resource": "secrets"},
        "namespace": "prod", "name": "db-password", "operation": "UPDATE",
        "userInfo": {"username": user, "groups": groups}})
}

fn break_glass_entry(mins: i64) -> String {
    format!(
        "user: alice\nresource: secrets\nnamespace: prod\nbreakGlass: true\nexpiresAt: \"{}\"\nreason: INC-3 outage\n",
        at(mins)
    )
}

#[test]
fn break_glass_allows_its_own_user_in_a_break_glass_group_only() {
    let d = decide_review(
        BREAK_GLASS,
        secret_review("alice", &["oncall"]),
        &[break_glass_entry(30)],
    );
    assert_eq!(
        (d.allowed(), d.code(), d.outcome()),
        (true, Code::BreakGlass, Outcome::Allow)
    );

    let d = decide_review(
        BREAK_GLASS,
        secret_review("alice", &["dev"]),
        &[break_glass_entry(30)],
    );
    assert_eq!((d.allowed(), d.code()), (false, Code::BreakGlassNotAllowed));

    let d = decide_review(
        BREAK_GLASS,
        secret_review("bob", &["oncall"]),
        &[break_glass_entry(30)],
    );
    assert_eq!(
        (d.allowed(), d.code()),
        (false, Code::NoApproval),
        "alice's entry is hers alone"
    );

    let d = decide_review(
        BREAK_GLASS,
        secret_review("alice", &["oncall"]),
        &[break_glass_entry(90)],
    );
    assert_eq!((d.allowed(), d.code()), (false, Code::ApprovalExceedsMaxDuration));

    // Under a policy without breakGlass, the entry is refused.
    let d = decide_with(&SECRET_UPDATE, &[break_glass_entry(30)], true);
    assert_eq!((d.allowed(), d.code()), (false, Code::BreakGlassNotAllowed));
}

#[test]
fn policies_in_rollout_let_denials_through_marked_as_such() {
    for (mode, outcome) in [("warn", Outcome::Warn), ("dryrun", Outcome::DryRun)] {
        let policy = BREAK_GLASS.replace("  breakGlass:", &format!("  enforcement: {mode}\n  breakGlass:"));
        let d = decide_review(&policy, secret_review("alice", &["dev"]), &[]);
        assert_eq!(
            (d.allowed(), d.outcome(), d.code()),
            (true, outcome, Code::NoApproval)
        );
        // An approved request is plainly allowed.
        let approved = "user: alice\nresource: secrets\nnamespace: prod\nexpiresAt: \"2026-11-21T20:30:00Z\"\nreason: r\napprovedBy: [bob]\n";
        let d = decide_review(&policy, secret_review("alice", &["dev"]), &[approved.to_string()]);
        assert_eq!((d.outcome(), d.code()), (Outcome::Allow, Code::Approved));
    }
    // A policy that enforces, gating the same request, wins.
    let both = format!(
        "{}---{}",
        BREAK_GLASS.replace("  breakGlass:", "  enforcement: warn\n  breakGlass:"),
        BREAK_GLASS.replace("prod-secrets", "prod-secrets-strict")
    );
    let d = decide_review(&both, secret_review("alice", &["dev"]), &[]);
    assert_eq!((d.allowed(), d.outcome()), (false, Outcome::Deny));
}

#[test]
fn an_approval_without_max_uses_is_preferred_so_uses_are_not_spent() {
    let limited = deployment_entry("maxUses: 1\n").replace(&at(30), &at(40));
    let unlimited = deployment_entry("");
    let d = decide_review(POLICIES, scale_review(2, 5, "web:1"), &[limited, unlimited]);
    assert!(d.allowed());
    assert_eq!(d.approval().unwrap().max_uses, None);
}

/// A policy gating reads of prod secrets and pod logs, beside a write policy.
const READ_POLICIES: &str = r#"
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata: { name: prod-reads }
spec:
  rules:
    - { apiGroups: [""], resources: ["secrets"], verbs: ["get", "list", "watch"] }
    - { apiGroups: [""], resources: ["pods/log"], verbs: ["get"] }
  namespaces: ["prod"]
  exempt: { users: ["system:serviceaccount:kube-system:*"] }
  approval: { minApprovers: 1, maxDuration: 1h }
---
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata: { name: prod-secrets }
spec:
  rules: [{ apiGroups: [""], resources: ["secrets"], operations: ["UPDATE"] }]
  namespaces: ["prod"]
  approval: { minApprovers: 1, maxDuration: 4h }
"#;

/// Decides a SubjectAccessReview for bob's `verb` of prod `resource[/sub]` `name`.
fn decide_read(verb: &str, resource: &str, name: &str, entries: &[String]) -> Decision {
    decide_read_in("prod", verb, resource, name, entries)
}

/// The same in `namespace` (empty: every namespace, as `--all-namespaces` asks).
fn decide_read_in(namespace: &str, verb: &str, resource: &str, name: &str, entries: &[String]) -> Decision {
    let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
    let body = serde_json::json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"resourceAttributes": {"namespace": namespace, "verb": verb, "version": "v1",
            "resource": resource, "subresource": sub, "name": name},
        "user": "bob", "groups": ["dev-team", "system:authenticated"]}});
    let req = crate::authorization::decode(body.to_string().as_bytes()).unwrap();
    let policies = PolicySet::new(parse_policies(READ_POLICIES, "t.yaml").unwrap()).unwrap();
    let snapshot = snapshot_of(entries);
    let inputs = Inputs {
        policies: &policies,
        approvals: Approvals::Loaded(&snapshot),
        now: now(),
    };
    decide(&req, &inputs)
}

/// bob's approval to read prod secrets (`edits` replace lines), approved by carol.
fn read_entry(edits: &[(&str, &str)]) -> String {
    let mut text = format!(
        "user: bob\nresource: secrets\nnamespace: prod\nname: db-pass\nverbs: [get]\nexpiresAt: \"{}\"\nreason: INC-2\napprovedBy: [carol]\n",
        at(30)
    );
    for (from, to) in edits {
        assert!(text.contains(from), "{from} not in entry");
        text = text.replace(from, to);
    }
    text
}

#[test]
fn a_gated_read_without_approval_is_denied_under_the_read_policy() {
    let d = decide_read("get", "secrets", "db-pass", &[]);
    assert_eq!(d.code(), Code::NoApproval);
    assert_eq!(d.policies(), ["prod-reads"]);
    assert_eq!(
        decide_read("get", "pods/log", "shell", &[]).code(),
        Code::NoApproval
    );
    assert_eq!(decide_read("watch", "secrets", "", &[]).code(), Code::NoApproval);
}

#[test]
fn a_read_approval_covers_exactly_its_verb_and_object() {
    let approved = decide_read("get", "secrets", "db-pass", &[read_entry(&[])]);
    assert_eq!(approved.code(), Code::Approved);
    for (verb, name) in [("get", "other"), ("list", ""), ("watch", "")] {
        let d = decide_read(verb, "secrets", name, &[read_entry(&[])]);
        assert!(!d.allowed(), "{verb} {name}: {:?}", d.code());
    }
    // A list has no name: only an approval without one covers it.
    let any_name = read_entry(&[("name: db-pass\n", ""), ("verbs: [get]", "verbs: [list]")]);
    assert_eq!(
        decide_read("list", "secrets", "", &[any_name]).code(),
        Code::Approved
    );
}

#[test]
fn a_write_approval_does_not_open_reads_and_a_read_approval_does_not_open_writes() {
    let write = read_entry(&[("verbs: [get]", "operations: [UPDATE]")]);
    assert_eq!(
        decide_read("get", "secrets", "db-pass", &[write]).code(),
        Code::NoApproval
    );
    let unscoped = read_entry(&[("verbs: [get]\n", "")]);
    assert_eq!(
        decide_read("get", "secrets", "db-pass", &[unscoped]).code(),
        Code::Approved,
        "an entry without operations or verbs covers every gated operation and read"
    );
    let d = decide_with(
        &Req {
            user: "bob",
            name: "db-pass",
            ..SECRET_UPDATE
        },
        &[read_entry(&[])],
        true,
    );
    assert_eq!(d.code(), Code::NoApproval);
}

#[test]
fn reads_are_judged_by_the_same_rules_as_writes() {
    let expired = read_entry(&[(&at(30), &at(-1))]);
    assert_eq!(
        decide_read("get", "secrets", "db-pass", &[expired]).code(),
        Code::ApprovalExpired
    );
    let self_approved = read_entry(&[("approvedBy: [carol]", "approvedBy: [bob]")]);
    let d = decide_read("get", "secrets", "db-pass", &[self_approved]);
    assert!(
        matches!(
            d.reason,
            Reason::TooFewApprovers {
                self_approved: true,
                ..
            }
        ),
        "{:?}",
        d.code()
    );
    let too_long = read_entry(&[(&at(30), &at(120))]);
    assert_eq!(
        decide_read("get", "secrets", "db-pass", &[too_long]).code(),
        Code::ApprovalExceedsMaxDuration,
        "prod-reads allows 1h"
    );
    let other_ns = read_entry(&[("namespace: prod", "namespace: prod-eu")]);
    assert_eq!(
        decide_read("get", "secrets", "db-pass", &[other_ns]).code(),
        Code::NoApproval
    );
}

#[test]
fn reads_nothing_gates_and_questions_that_are_not_reads_have_no_decision_to_make() {
    assert_eq!(
        decide_read("get", "configmaps", "app", &[]).code(),
        Code::NotGated
    );
    assert_eq!(decide_read("get", "pods", "shell", &[]).code(), Code::NotGated);
    // Writes and CONNECTs are admission's: their authorization is no business of jitgate's.
    assert_eq!(
        decide_read("update", "secrets", "db-pass", &[]).code(),
        Code::NotGated
    );
    assert_eq!(
        decide_read("create", "pods/exec", "shell", &[]).code(),
        Code::NotGated
    );
}

#[test]
fn a_change_pinned_approval_never_covers_a_read() {
    let pinned = read_entry(&[("verbs: [get]", &format!("change: sha256:{}", "ab".repeat(32)))]);
    assert_eq!(
        decide_read("get", "secrets", "db-pass", &[pinned]).code(),
        Code::NoApproval
    );
}

#[test]
fn a_read_across_all_namespaces_is_gated_wherever_a_policy_gates_one_of_them() {
    // `kubectl get secrets --all-namespaces` lists prod's Secrets too.
    for verb in ["list", "watch"] {
        let d = decide_read_in("", verb, "secrets", "", &[]);
        assert_eq!(d.code(), Code::NoApproval, "{verb}");
        assert_eq!(d.policies(), ["prod-reads"]);
    }
    // An approval in prod does not cover every namespace; one without a namespace does.
    let in_prod = read_entry(&[("name: db-pass\n", ""), ("verbs: [get]", "verbs: [list]")]);
    assert_eq!(
        decide_read_in("", "list", "secrets", "", &[in_prod]).code(),
        Code::NoApproval
    );
    let everywhere = read_entry(&[
        ("name: db-pass\n", ""),
        ("namespace: prod\n", ""),
        ("verbs: [get]", "verbs: [list]"),
    ]);
    assert_eq!(
        decide_read_in("", "list", "secrets", "", &[everywhere]).code(),
        Code::Approved
    );
    // A write without a namespace is of a cluster-scoped object: not prod's.
    let d = decide_with(
        &Req {
            namespace: "",
            ..SECRET_UPDATE
        },
        &[],
        true,
    );
    assert_eq!(d.code(), Code::NotGated);
}

#[test]
fn a_for_entry_is_valid_from_its_last_approval_for_its_duration_and_not_before() {
    let for_entry = |approved_at: Option<i64>, approvers: &str| {
        let stamp = approved_at.map_or(String::new(), |m| format!("approvedAt: \"{}\"\n", at(m)));
        format!(
            "user: alice\nresource: secrets\nnamespace: prod\nname: db-password\noperations: [UPDATE]\nfor: 1h\n{stamp}reason: INC-1\napprovedBy: [{approvers}]\n"
        )
    };
    assert_eq!(
        decide_one(&SECRET_UPDATE, for_entry(None, "")).code(),
        Code::TooFewApprovers,
        "not approved yet"
    );
    assert_eq!(
        decide_one(&SECRET_UPDATE, for_entry(Some(-10), "bob")).code(),
        Code::Approved
    );
    assert_eq!(
        decide_one(&SECRET_UPDATE, for_entry(Some(-61), "bob")).code(),
        Code::ApprovalExpired,
        "an hour after its approval it is over"
    );
}

mod grant;
mod signed;
