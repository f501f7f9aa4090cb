//! Impersonation is a door: Kubernetes' `edit` ClusterRole grants `impersonate` on
//! `serviceaccounts` in its namespace, and a request made `--as=system:serviceaccount:prod:X`
//! is decided as that service account, which the authorization webhook never asks jitgate
//! about. The shipped `prod-impersonation` policy gates the impersonation itself (the
//! authorization review of verb `impersonate` that the API server makes first, as the
//! person). Found by the adversarial review after issue 25; on a real kube-apiserver with
//! the authorizer chain `jitgate manifests authorization` renders from the shipped policies.

use crate::realk8s::{ApiServer, kit, outcome};
use crate::support::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_with_edit_in_prod_cannot_read_a_gated_secret_as_a_service_account_without_an_approval() {
    let Some(kit) = kit() else { return };
    let jitgate = Harness::start(&approvals_manifest(&[])).await;
    let work = tempfile::tempdir().unwrap();
    let policies = std::path::Path::new(REPO).join("policies");
    let api = ApiServer::with_authorizer(
        &kit,
        &policies,
        jitgate.addr(),
        &jitgate.certs.ca_pem,
        work.path(),
    );

    // bob: what `edit` gives in prod, as far as this story needs (its secrets rules, and
    // its impersonate rule on service accounts, both from system:aggregate-to-edit). The
    // app's service account reads its Secrets, as many do.
    let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "edit", "namespace": "prod"},
         "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
                   {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "bob-edit", "namespace": "prod"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "edit"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app", "namespace": "prod"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "app-secrets", "namespace": "prod"},
         "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "app-secrets", "namespace": "prod"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "app-secrets"},
         "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": "prod"}]},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-pass", "namespace": "prod"},
         "stringData": {"password": "hunter2"}}
    ]});
    api.ok("admin", &["apply", "-f", "-"], Some(objects.to_string()))
        .await;

    // bob himself: prod-reads denies him, through jitgate.
    let get = [
        "-n",
        "prod",
        "get",
        "secret",
        "db-pass",
        "-o",
        "jsonpath={.data.password}",
    ];
    eventually(Duration::from_secs(30), || async {
        outcome(&api.kubectl("bob", &get, None).await).is_err_and(|e| e.contains("prod-reads"))
    })
    .await;

    // bob as the app's service account: the impersonation itself is gated.
    let mut as_app = get.to_vec();
    as_app.push("--as=system:serviceaccount:prod:app");
    // The API server (v1.36) then also asks for the newer, constrained impersonation
    // (`impersonate-on:serviceaccount:get`), which edit does not grant: its refusal is what
    // kubectl prints. jitgate's denial of the impersonation is in its records.
    let refused = outcome(&api.kubectl("bob", &as_app, None).await).unwrap_err();
    assert!(refused.contains("Forbidden"), "{refused}");
    assert!(
        jitgate
            .records()
            .iter()
            .any(|r| r["user"] == "bob" && r["operation"] == "impersonate" && r["decision"] == "deny"),
        "the refused impersonation is recorded"
    );
    // With an approval to act as that service account, he may (RBAC then decides as it).
    jitgate.write_approvals(&approvals_manifest(&[(
        "bob-as-app",
        &format!(
            "user: bob\nresource: serviceaccounts\nnamespace: prod\nname: app\nverbs: [impersonate]\nexpiresAt: \"{}\"\nreason: \"INC-4: act as the app\"\napprovedBy: [alice]\n",
            in_mins(30)
        ),
    )]));
    eventually(Duration::from_secs(20), || async {
        outcome(&api.kubectl("bob", &as_app, None).await).is_ok()
    })
    .await;
}
