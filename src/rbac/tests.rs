use super::*;
use crate::approvals::parse_entry;
use crate::policy::parse_policies;

const POLICIES: &str = r#"
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata: { name: contractors-prod }
spec:
  grant: true
  rules:
    - { apiGroups: [""], resources: ["secrets"], verbs: ["get", "list", "watch"], operations: ["CREATE", "UPDATE", "DELETE"] }
    - { apiGroups: ["apps"], resources: ["deployments/scale"], verbs: ["get"], operations: ["UPDATE"] }
    - { apiGroups: [""], resources: ["pods"], verbs: ["get"] }
    - { apiGroups: [""], resources: ["pods/exec"], operations: ["CONNECT"] }
  namespaces: ["prod"]
  approval: { minApprovers: 1, maxDuration: 1h }
---
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata: { name: takes-only }
spec:
  rules: [{ apiGroups: [""], resources: ["configmaps"], operations: ["UPDATE"] }]
  namespaces: ["prod"]
  approval: { minApprovers: 1, maxDuration: 1h }
"#;

fn now() -> Timestamp {
    "2026-11-21T20:00:00Z".parse().unwrap()
}

fn policies(text: &str) -> PolicySet {
    PolicySet::new(parse_policies(text, "p.yaml").unwrap()).unwrap()
}

fn approval(extra: &str) -> Arc<Approval> {
    let text = format!(
        "expiresAt: \"{}\"\nreason: r\n{extra}",
        now() + jiff::SignedDuration::from_mins(30)
    );
    Arc::new(parse_entry("jitgate-approvals/erin-1", &text).unwrap())
}

fn grant(extra: &str) -> Result<Grant, NoGrant> {
    grant_of(
        &approval(extra),
        &policies(POLICIES),
        &Arc::default(),
        "jitgate-system",
        now(),
    )
}

fn rule(group: &str, resource: &str, names: &[&str], verbs: &[&'static str]) -> Rule {
    Rule {
        api_groups: vec![group.into()],
        resources: vec![resource.into()],
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        verbs: verbs.to_vec(),
    }
}

#[test]
fn a_read_of_one_secret_becomes_a_role_naming_that_secret_and_its_verb() {
    let g = grant(
        "user: erin\nresource: secrets\nnamespace: prod\nname: db\nverbs: [get]\napprovedBy: [alice]\n",
    )
    .unwrap();
    assert_eq!(g.namespace, "prod");
    assert_eq!(g.subject, Subject::User("erin".into()));
    assert_eq!(g.rules, vec![rule("", "secrets", &["db"], &["get"])]);
    assert_eq!(g.name, object_name("jitgate-approvals/erin-1"));
    assert!(g.name.len() <= 63 && g.name.starts_with("jitgate-grant-"));
}

#[test]
fn an_update_becomes_update_and_patch_and_an_exec_create_and_get_on_the_subresource() {
    let g = grant("user: erin\nresource: deployments/scale\napiGroup: apps\nnamespace: prod\nname: web\noperations: [UPDATE]\napprovedBy: [alice]\n").unwrap();
    assert_eq!(
        g.rules,
        vec![rule("apps", "deployments/scale", &["web"], &["patch", "update"])]
    );
    let g = grant("user: erin\nresource: pods/exec\nnamespace: prod\nname: web-0\noperations: [CONNECT]\napprovedBy: [alice]\n").unwrap();
    assert_eq!(
        g.rules,
        vec![rule("", "pods/exec", &["web-0"], &["create", "get"])]
    );
}

#[test]
fn a_named_create_and_a_deletecollection_are_left_out_because_rbac_cannot_bound_them_by_name() {
    let g = grant("user: erin\nresource: secrets\nnamespace: prod\nname: db\noperations: [CREATE, DELETE]\napprovedBy: [alice]\n").unwrap();
    assert_eq!(g.rules, vec![rule("", "secrets", &["db"], &["delete"])]);
    assert_eq!(
        grant(
            "user: erin\nresource: secrets\nnamespace: prod\nname: db\noperations: [CREATE]\napprovedBy: [alice]\n"
        ),
        Err(NoGrant::NothingGranted)
    );
    let g = grant(
        "user: erin\nresource: secrets\nnamespace: prod\noperations: [CREATE, DELETE]\napprovedBy: [alice]\n",
    )
    .unwrap();
    assert_eq!(g.rules, vec![rule("", "secrets", &[], &["create", "delete"])]);
}

#[test]
fn an_approval_without_operations_gets_only_what_the_granting_policies_gate() {
    let g = grant("user: erin\nresource: pods\nnamespace: prod\nname: web-0\napprovedBy: [alice]\n").unwrap();
    assert_eq!(g.rules, vec![rule("", "pods", &["web-0"], &["get"])]);
}

#[test]
fn an_approval_with_max_uses_for_writes_only_gets_its_role_and_carries_the_count() {
    // The admission gate counts each UPDATE (and each CONNECT) and refuses past the last.
    let g = grant(
        "user: erin\nresource: deployments/scale\napiGroup: apps\nnamespace: prod\nname: web\noperations: [UPDATE]\nmaxUses: 1\napprovedBy: [alice]\n",
    )
    .unwrap();
    assert_eq!(
        g.rules,
        vec![rule("apps", "deployments/scale", &["web"], &["patch", "update"])]
    );
    assert_eq!(g.max_uses, Some(1));
    let g = grant(
        "user: erin\nresource: pods/exec\nnamespace: prod\nname: shell\noperations: [CONNECT]\nmaxUses: 2\napprovedBy: [alice]\n",
    )
    .unwrap();
    assert_eq!(
        g.rules,
        vec![rule("", "pods/exec", &["shell"], &["create", "get"])]
    );
    assert_eq!(g.max_uses, Some(2));
}

#[test]
fn what_a_role_cannot_bound_gets_no_role_and_says_why() {
    // maxUses on a read: nothing would count the reads.
    assert_eq!(
        grant(
            "user: erin\nresource: secrets\nnamespace: prod\nname: db\nverbs: [get]\nmaxUses: 1\napprovedBy: [alice]\n"
        ),
        Err(NoGrant::MaxUsesReads("get".into()))
    );
    assert_eq!(
        grant(
            "user: erin\nresource: deployments/scale\napiGroup: apps\nnamespace: prod\nname: web\noperations: [UPDATE]\nverbs: [get]\nmaxUses: 1\napprovedBy: [alice]\n"
        ),
        Err(NoGrant::MaxUsesReads("get".into()))
    );
    // Naming no operations names the reads too.
    assert!(matches!(
        grant("user: erin\nresource: secrets\nnamespace: prod\nname: db\nmaxUses: 1\napprovedBy: [alice]\n"),
        Err(NoGrant::MaxUsesReads(_))
    ));
    // Approved by nobody but erin herself, expired, or under a policy that does not grant.
    assert_eq!(
        grant("user: erin\nresource: secrets\nnamespace: prod\nname: db\nverbs: [get]\napprovedBy: [erin]\n"),
        Err(NoGrant::NothingGranted)
    );
    let expired = approval(
        "user: erin\nresource: secrets\nnamespace: prod\nname: db\nverbs: [get]\napprovedBy: [alice]\n",
    );
    let later = now() + jiff::SignedDuration::from_mins(31);
    assert_eq!(
        grant_of(
            &expired,
            &policies(POLICIES),
            &Arc::default(),
            "jitgate-system",
            later
        ),
        Err(NoGrant::NothingGranted)
    );
    let cm = approval(
        "user: erin\nresource: configmaps\nnamespace: prod\nname: db\noperations: [UPDATE]\napprovedBy: [alice]\n",
    );
    assert!(!concerns(&cm, &policies(POLICIES)));
    assert!(concerns(&expired, &policies(POLICIES)));
}

#[test]
fn a_group_approval_that_an_approver_could_use_on_their_own_approval_gets_no_role() {
    assert_eq!(
        grant(
            "group: contractors\nresource: secrets\nnamespace: prod\nname: db\nverbs: [get]\napprovedBy: [alice]\n"
        ),
        Err(NoGrant::ApproverInGroup("alice".into()))
    );
    let g = grant("group: contractors\nresource: secrets\nnamespace: prod\nname: db\nverbs: [get]\napprovedBy: [alice, bob]\n").unwrap();
    assert_eq!(g.subject, Subject::Group("contractors".into()));
}

#[test]
fn exemptions_a_role_cannot_follow_and_rules_for_every_group_refuse_the_role() {
    let exempting = POLICIES.replace("  namespaces: [\"prod\"]\n  approval: { minApprovers: 1, maxDuration: 1h }\n---", "  namespaces: [\"prod\"]\n  exempt: { groups: [\"robots\"] }\n  approval: { minApprovers: 1, maxDuration: 1h }\n---");
    assert_ne!(exempting, POLICIES);
    let a = approval(
        "user: erin\nresource: secrets\nnamespace: prod\nname: db\nverbs: [get]\napprovedBy: [alice]\n",
    );
    assert_eq!(
        grant_of(
            &a,
            &policies(&exempting),
            &Arc::default(),
            "jitgate-system",
            now()
        ),
        Err(NoGrant::Exemptions("groups"))
    );
    let any_group = POLICIES.replace(
        r#"{ apiGroups: [""], resources: ["secrets"]"#,
        r#"{ apiGroups: ["*"], resources: ["secrets"]"#,
    );
    assert_ne!(any_group, POLICIES);
    assert_eq!(
        grant_of(
            &a,
            &policies(&any_group),
            &Arc::default(),
            "jitgate-system",
            now()
        ),
        Err(NoGrant::AnyApiGroup)
    );
    let scoped = approval(
        "user: erin\nresource: secrets\napiGroup: \"\"\nnamespace: prod\nname: db\nverbs: [get]\napprovedBy: [alice]\n",
    );
    assert!(
        grant_of(
            &scoped,
            &policies(&any_group),
            &Arc::default(),
            "jitgate-system",
            now()
        )
        .is_ok()
    );
}

#[test]
fn the_role_lets_through_exactly_the_named_object_for_its_subject() {
    let g = grant(
        "user: erin\nresource: secrets\nnamespace: prod\nname: db\nverbs: [get]\napprovedBy: [alice]\n",
    )
    .unwrap();
    let ask = |user: &str, verb: &str, ns: &str, name: &str| AccessRequest {
        user: UserInfo {
            username: user.into(),
            groups: vec![],
        },
        verb: verb.into(),
        resource: GroupVersionResource {
            group: "".into(),
            version: "v1".into(),
            resource: "secrets".into(),
        },
        namespace: ns.into(),
        name: name.into(),
        ..Default::default()
    };
    assert!(g.allows(&ask("erin", "get", "prod", "db")));
    assert!(!g.allows(&ask("erin", "get", "prod", "other")));
    assert!(!g.allows(&ask("erin", "list", "prod", "")));
    assert!(!g.allows(&ask("erin", "get", "dev", "db")));
    assert!(!g.allows(&ask("mallory", "get", "prod", "db")));
}

#[test]
fn an_approval_to_a_system_user_or_group_gets_no_role() {
    // The webhook way never grants to a `system:` user (its matchConditions never send
    // one): not to service accounts, nodes, nor the anonymous user. A RoleBinding to
    // `system:unauthenticated` would let anyone read the Secret without credentials, one
    // to `system:authenticated` every service account, one to a service account whoever
    // runs pods as it.
    for subject in [
        "group: system:unauthenticated",
        "group: system:authenticated",
        "group: system:serviceaccounts:prod",
        "user: system:anonymous",
        "user: system:serviceaccount:prod:builder",
    ] {
        assert_eq!(
            grant(&format!(
                "{subject}\nresource: secrets\nnamespace: prod\nname: db\nverbs: [get]\napprovedBy: [alice, bob]\n"
            )),
            Err(NoGrant::SystemSubject),
            "{subject}"
        );
    }
}

/// A granting policy without `namespaces:`: it covers jitgate's and the cluster's own.
const EVERYWHERE: &str = r#"
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata: { name: everywhere }
spec:
  grant: true
  rules: [{ apiGroups: [""], resources: ["configmaps", "secrets"], operations: ["CREATE", "UPDATE", "DELETE"] }]
  approval: { minApprovers: 1, maxDuration: 1h }
"#;

#[test]
fn no_role_where_the_admission_gate_never_sees_the_writes() {
    let p = policies(EVERYWHERE);
    let in_ns = |ns: &str, extra: &str| {
        approval(&format!(
            "user: erin\nresource: configmaps\nnamespace: {ns}\nname: jitgate-usage\noperations: [UPDATE]\napprovedBy: [alice]\n{extra}"
        ))
    };
    for (ns, home) in [
        ("jitgate-system", "jitgate-system"),
        ("kube-system", "jitgate-system"),
        ("kube-public", "jitgate-system"),
        ("kube-node-lease", "jitgate-system"),
        ("gate", "gate"),
    ] {
        for extra in ["", "maxUses: 1\n"] {
            assert_eq!(
                grant_of(&in_ns(ns, extra), &p, &Arc::default(), home, now()),
                Err(NoGrant::UngatedNamespace(ns.into())),
                "{ns} {extra}"
            );
        }
    }
    // Elsewhere, the same approval gets its Role.
    let g = grant_of(&in_ns("prod", "maxUses: 1\n"), &p, &Arc::default(), "gate", now()).unwrap();
    assert_eq!(
        g.rules,
        vec![rule("", "configmaps", &["jitgate-usage"], &["patch", "update"])]
    );
}

#[test]
fn no_role_under_a_granting_rule_with_object_types_which_a_role_cannot_tell_apart() {
    let typed = EVERYWHERE.replace(
        r#"operations: ["CREATE", "UPDATE", "DELETE"] }"#,
        r#"operations: ["CREATE", "UPDATE", "DELETE"], objectTypes: ["kubernetes.io/tls"] }"#,
    );
    let p = policies(&typed);
    for extra in ["", "maxUses: 1\n"] {
        let a = approval(&format!(
            "user: erin\nresource: secrets\nnamespace: prod\noperations: [CREATE]\napprovedBy: [alice]\n{extra}"
        ));
        assert_eq!(
            grant_of(&a, &p, &Arc::default(), "jitgate-system", now()),
            Err(NoGrant::ObjectTypes),
            "{extra}"
        );
    }
    // The same approval without objectTypes gets its Role.
    let a = approval(
        "user: erin\nresource: secrets\nnamespace: prod\noperations: [CREATE]\napprovedBy: [alice]\nmaxUses: 1\n",
    );
    assert!(
        grant_of(
            &a,
            &policies(EVERYWHERE),
            &Arc::default(),
            "jitgate-system",
            now()
        )
        .is_ok()
    );
}
