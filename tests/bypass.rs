//! No side doors: however a gated change arrives at the API server, jitgate sees it and
//! gates it. One test per way in, each with AdmissionReviews shaped as the API server sends
//! them (captured ones where kubectl produced them, and the same shapes varied where it
//! did not): denied without an approval, allowed with one, on the real server over TLS.
//! And the side doors around the gate that the shipped policies close (a Pod that mounts
//! a Secret, a minted service account token, a RoleBinding to oneself, OpenShift's own
//! workload kinds), each with a controller of the control plane still let through.

mod support;

use serde_json::{Value, json};
use std::path::Path;
use support::*;

const CAPTURED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/admission/captured");

/// A captured review, moved to namespace prod, with a fresh uid.
fn captured(file: &str) -> Value {
    let mut review: Value =
        serde_json::from_slice(&std::fs::read(Path::new(CAPTURED).join(file)).unwrap()).unwrap();
    review["request"]["namespace"] = "prod".into();
    if let Some(meta) = review["request"]["object"].get_mut("metadata") {
        meta["namespace"] = "prod".into();
    }
    if let Some(meta) = review["request"]["oldObject"].get_mut("metadata") {
        meta["namespace"] = "prod".into();
    }
    review["request"]["uid"] = unique_uid().into();
    review
}

/// The approval for exactly what `review` asks: its user, resource, object and operation.
fn grant_for(review: &Value) -> String {
    let r = &review["request"];
    let mut resource = r["resource"]["resource"].as_str().unwrap().to_string();
    if let Some(sub) = r["subResource"].as_str().filter(|s| !s.is_empty()) {
        resource = format!("{resource}/{sub}");
    }
    format!(
        "user: {}\nresource: {resource}\napiGroup: {}\nnamespace: prod\nname: {}\noperations: [{}]\nexpiresAt: \"{}\"\nreason: \"CHG-1\"\napprovedBy: [bob@example.com]\n",
        json!(r["userInfo"]["username"]),
        json!(r["resource"]["group"]),
        json!(r["name"]),
        r["operation"].as_str().unwrap(),
        in_mins(30)
    )
}

/// Each review is denied (no_approval) by a jitgate without approvals, and allowed
/// (approved) by one holding the approval for it.
async fn gated_every_way(reviews: &[Value]) {
    let none = Harness::start(&approvals_manifest(&[])).await;
    let grants: Vec<(String, String)> = reviews
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("g{i}"), grant_for(r)))
        .collect();
    let grants: Vec<(&str, &str)> = grants.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let granted = Harness::start(&approvals_manifest(&grants)).await;
    for review in reviews {
        let uid = review["request"]["uid"].as_str().unwrap();
        let mut c = none.conn(Proto::H1).await;
        let reply = c.decide(review).await;
        assert_eq!(reply["allowed"], false, "{uid}: {reply}");
        assert_eq!(reply["status"]["code"], 403);
        assert_eq!(none.record_of(uid)["reason"], "no_approval");

        let mut c = granted.conn(Proto::H2).await;
        let reply = c.decide(review).await;
        assert_eq!(reply["allowed"], true, "{uid}: {reply}");
        assert_eq!(granted.record_of(uid)["reason"], "approved");
    }
    none.stop().await;
    granted.stop().await;
}

/// The captured `kubectl set image` update, as another client's UPDATE: same shape, its
/// own field manager, and `edit` applied to the new object.
fn deployment_update(field_manager: &str, edit: impl Fn(&mut Value)) -> Value {
    let mut review = captured("deployment-update-via-set-image-patch.json");
    review["request"]["options"]["fieldManager"] = field_manager.into();
    edit(&mut review["request"]["object"]);
    review
}

#[tokio::test]
async fn kubectl_edit_arrives_as_update() {
    gated_every_way(&[deployment_update("kubectl-edit", |o| {
        o["spec"]["replicas"] = 7.into()
    })])
    .await;
}

#[tokio::test]
async fn kubectl_apply_arrives_as_update() {
    gated_every_way(&[deployment_update("kubectl-client-side-apply", |o| {
        o["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = "{}".into();
        o["spec"]["replicas"] = 4.into();
    })])
    .await;
}

#[tokio::test]
async fn server_side_apply_arrives_as_update_with_patch_options() {
    let mut review = deployment_update("kubectl", |o| o["spec"]["replicas"] = 5.into());
    review["request"]["options"] = json!({"kind": "PatchOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl", "force": true});
    gated_every_way(&[review]).await;
}

#[tokio::test]
async fn patches_of_every_type_arrive_as_update() {
    // json, merge and strategic merge patches, and set image (captured), rollout restart
    // (captured): the patch type never reaches admission, only the resulting UPDATE.
    gated_every_way(&[
        deployment_update("kubectl-patch", |o| o["spec"]["replicas"] = 9.into()),
        deployment_update("kubectl-patch", |o| o["metadata"]["labels"]["tier"] = "x".into()),
        deployment_update("kubectl-patch", |o| {
            o["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2".into()
        }),
        captured("deployment-update-via-set-image-patch.json"),
        captured("deployment-update-via-rollout-restart.json"),
    ])
    .await;
}

#[tokio::test]
async fn kubectl_scale_arrives_on_the_scale_subresource() {
    gated_every_way(&[captured("deployment-scale-subresource-update.json")]).await;
}

#[tokio::test]
async fn kubectl_debug_arrives_on_the_ephemeralcontainers_subresource() {
    let mut review = captured("pod-create.json");
    let r = &mut review["request"];
    r["operation"] = "UPDATE".into();
    r["subResource"] = "ephemeralcontainers".into();
    r["requestSubResource"] = "ephemeralcontainers".into();
    r["options"] =
        json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-debug"});
    let pod = r["object"].clone();
    r["oldObject"] = pod.clone();
    r["object"]["spec"]["ephemeralContainers"] =
        json!([{"name": "debugger-x", "image": "busybox", "targetContainerName": "execme"}]);
    gated_every_way(&[review]).await;
}

#[tokio::test]
async fn exec_attach_and_port_forward_arrive_as_connect() {
    let mut forward = captured("pods-attach-connect.json");
    let r = &mut forward["request"];
    r["subResource"] = "portforward".into();
    r["requestSubResource"] = "portforward".into();
    r["kind"] = json!({"group": "", "version": "v1", "kind": "PodPortForwardOptions"});
    r["requestKind"] = r["kind"].clone();
    r["object"] = json!({"kind": "PodPortForwardOptions", "apiVersion": "v1", "ports": [5432]});
    gated_every_way(&[
        captured("pods-exec-connect.json"),
        captured("pods-exec-connect-stdin.json"),
        captured("pods-attach-connect.json"),
        forward,
    ])
    .await;
}

#[tokio::test]
async fn delete_arrives_with_the_old_object() {
    gated_every_way(&[
        captured("deployment-delete-oldobject.json"),
        captured("secret-delete-oldobject.json"),
    ])
    .await;
}

#[tokio::test]
async fn deletecollection_arrives_as_one_delete_per_object() {
    // `kubectl delete deployments --all -n prod`: the API server admits each object.
    let reviews: Vec<Value> = ["web", "api", "worker"]
        .iter()
        .map(|name| {
            let mut review = captured("deployment-delete-oldobject.json");
            review["request"]["name"] = (*name).into();
            review["request"]["oldObject"]["metadata"]["name"] = (*name).into();
            review
        })
        .collect();
    gated_every_way(&reviews).await;
}

#[tokio::test]
async fn an_older_api_group_alias_is_gated_as_the_resource_it_converts_to() {
    // With matchPolicy: Equivalent, a write through extensions/v1beta1 reaches the webhook
    // converted to apps/v1, with the original in requestKind and requestResource.
    let mut review = captured("deployment-update-via-set-image-patch.json");
    let r = &mut review["request"];
    r["requestKind"] = json!({"group": "extensions", "version": "v1beta1", "kind": "Deployment"});
    r["requestResource"] = json!({"group": "extensions", "version": "v1beta1", "resource": "deployments"});
    assert_eq!(r["resource"]["group"], "apps");
    gated_every_way(&[review]).await;
}

/// A review of `operation` on `group/resource[/sub]` `name` in prod, shaped as the
/// captured `kubectl create configmap` (the envelope every write shares), carrying
/// `object` of `kind`.
fn shaped(
    (group, version, kind): (&str, &str, &str),
    resource: &str,
    sub: &str,
    name: &str,
    operation: &str,
    object: Value,
) -> Value {
    let mut review = captured("configmap-create-admin.json");
    let r = &mut review["request"];
    r["kind"] = json!({"group": group, "version": version, "kind": kind});
    r["requestKind"] = r["kind"].clone();
    r["resource"] = json!({"group": group, "version": version, "resource": resource});
    r["requestResource"] = r["resource"].clone();
    if !sub.is_empty() {
        r["subResource"] = sub.into();
        r["requestSubResource"] = sub.into();
    }
    r["name"] = name.into();
    r["operation"] = operation.into();
    match operation {
        "DELETE" => {
            r["oldObject"] = object;
            r["object"] = Value::Null;
            r["options"] = json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"});
        }
        "UPDATE" => {
            r["oldObject"] = object.clone();
            r["object"] = object;
            r["options"] = json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"});
        }
        _ => r["object"] = object,
    }
    review
}

/// Each review, sent as `user` in `groups` (a controller of the control plane), is let
/// through by a jitgate without approvals: its policies exempt that identity.
async fn controllers_pass(reviews: &[Value], user: &str, groups: &[&str]) {
    let h = Harness::start(&approvals_manifest(&[])).await;
    let mut c = h.conn(Proto::H1).await;
    for review in reviews {
        let mut review = review.clone();
        review["request"]["uid"] = unique_uid().into();
        review["request"]["userInfo"] = json!({"username": user, "groups": groups});
        let uid = review["request"]["uid"].as_str().unwrap().to_string();
        let reply = c.decide(&review).await;
        assert_eq!(reply["allowed"], true, "{user}: {reply}");
        assert_eq!(h.record_of(&uid)["reason"], "exempt", "{user}");
    }
    h.stop().await;
}

/// `kubectl run --overrides` with a Secret volume: the Pod mounts what its creator could
/// not read.
fn pod_mounting_a_secret() -> Value {
    let mut review = captured("pod-create.json");
    let pod = &mut review["request"]["object"]["spec"];
    pod["volumes"] = json!([{"name": "loot", "secret": {"secretName": "db-pass"}}]);
    pod["containers"][0]["volumeMounts"] = json!([{"name": "loot", "mountPath": "/loot"}]);
    review
}

/// `kubectl debug web --copy-to=web-debug`: a new Pod, copied with its service account.
fn pod_copied_for_debugging() -> Value {
    let mut review = captured("pod-create.json");
    let r = &mut review["request"];
    r["name"] = "web-debug".into();
    r["object"]["metadata"]["name"] = "web-debug".into();
    r["object"]["spec"]["serviceAccountName"] = "payments-admin".into();
    r["options"]["fieldManager"] = "kubectl-debug".into();
    review
}

#[tokio::test]
async fn a_pod_created_by_a_person_is_gated_whatever_it_mounts() {
    let plain = captured("pod-create.json");
    gated_every_way(&[pod_mounting_a_secret(), pod_copied_for_debugging(), plain.clone()]).await;
    // The ReplicaSet controller (under its own service account, or as the controller
    // manager), and the kubelet's mirror pods, still create pods.
    let mut from_replicaset = plain.clone();
    from_replicaset["request"]["name"] = "web-7d4b9c-x2x7q".into();
    controllers_pass(
        std::slice::from_ref(&from_replicaset),
        "system:serviceaccount:kube-system:replicaset-controller",
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:kube-system",
            "system:authenticated",
        ],
    )
    .await;
    controllers_pass(
        &[from_replicaset.clone()],
        "system:kube-controller-manager",
        &["system:authenticated"],
    )
    .await;
    controllers_pass(
        &[from_replicaset],
        "system:node:worker-1",
        &["system:nodes", "system:authenticated"],
    )
    .await;
}

/// A TokenRequest: its kind is in authentication.k8s.io, its resource is the core
/// serviceaccounts' `token` subresource.
fn token_request(service_account: &str) -> Value {
    let mut review = shaped(
        ("authentication.k8s.io", "v1", "TokenRequest"),
        "serviceaccounts",
        "token",
        service_account,
        "CREATE",
        json!({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": service_account, "namespace": "prod"},
            "spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3600}}),
    );
    review["request"]["resource"] = json!({"group": "", "version": "v1", "resource": "serviceaccounts"});
    review["request"]["requestResource"] = review["request"]["resource"].clone();
    review
}

#[tokio::test]
async fn minting_a_service_account_token_is_gated() {
    // `kubectl create token payments-admin -n prod`.
    let mint = token_request("payments-admin");
    assert_eq!(mint["request"]["resource"]["resource"], "serviceaccounts");
    gated_every_way(std::slice::from_ref(&mint)).await;
    // The kubelet mints the tokens of the pods it runs, as a node.
    controllers_pass(
        &[mint],
        "system:node:worker-1",
        &["system:nodes", "system:authenticated"],
    )
    .await;
}

fn role_binding(name: &str, operation: &str) -> Value {
    shaped(
        ("rbac.authorization.k8s.io", "v1", "RoleBinding"),
        "rolebindings",
        "",
        name,
        operation,
        json!({"kind": "RoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": {"name": name, "namespace": "prod"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "kubernetes-admin"}]}),
    )
}

#[tokio::test]
async fn granting_oneself_standing_rights_in_prod_is_gated() {
    // `kubectl create rolebinding me --clusterrole=admin --user=me -n prod`, a later edit of
    // it, a Role written and deleted, and the same through OpenShift's own group.
    let role = shaped(
        ("rbac.authorization.k8s.io", "v1", "Role"),
        "roles",
        "",
        "secret-reader",
        "CREATE",
        json!({"kind": "Role", "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": {"name": "secret-reader", "namespace": "prod"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}),
    );
    let mut delete_role = role.clone();
    delete_role["request"]["operation"] = "DELETE".into();
    delete_role["request"]["oldObject"] = delete_role["request"]["object"].take();
    let mut openshift = role_binding("me", "CREATE");
    openshift["request"]["resource"]["group"] = "authorization.openshift.io".into();
    gated_every_way(&[
        role_binding("me", "CREATE"),
        role_binding("me", "UPDATE"),
        role,
        delete_role,
        openshift,
    ])
    .await;
    // OpenShift's controller writes every new namespace's default role bindings.
    controllers_pass(
        &[role_binding("system:image-pullers", "CREATE")],
        "system:serviceaccount:openshift-infra:default-rolebindings-controller",
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:openshift-infra",
            "system:authenticated",
        ],
    )
    .await;
}

#[tokio::test]
async fn openshift_workload_kinds_are_gated() {
    let dc = json!({"kind": "DeploymentConfig", "apiVersion": "apps.openshift.io/v1",
        "metadata": {"name": "payments", "namespace": "prod"}, "spec": {"replicas": 2}});
    let apps = ("apps.openshift.io", "v1", "DeploymentConfig");
    let mut scale = shaped(
        apps,
        "deploymentconfigs",
        "scale",
        "payments",
        "UPDATE",
        dc.clone(),
    );
    scale["request"]["kind"] = json!({"group": "extensions", "version": "v1beta1", "kind": "Scale"});
    // `oc rollout latest` and `oc rollout undo`.
    let instantiate = shaped(
        apps,
        "deploymentconfigs",
        "instantiate",
        "payments",
        "CREATE",
        json!({"kind": "DeploymentRequest", "apiVersion": "apps.openshift.io/v1", "name": "payments", "latest": true, "force": true}),
    );
    let rollback = shaped(
        apps,
        "deploymentconfigs",
        "rollback",
        "payments",
        "CREATE",
        json!({"kind": "DeploymentConfigRollback", "apiVersion": "apps.openshift.io/v1", "name": "payments", "spec": {"revision": 3}}),
    );
    let route = json!({"kind": "Route", "apiVersion": "route.openshift.io/v1",
        "metadata": {"name": "payments", "namespace": "prod"}, "spec": {"host": "pay.example.com", "to": {"kind": "Service", "name": "payments"}}});
    let routes = ("route.openshift.io", "v1", "Route");
    gated_every_way(&[
        shaped(apps, "deploymentconfigs", "", "payments", "UPDATE", dc.clone()),
        shaped(apps, "deploymentconfigs", "", "payments", "DELETE", dc),
        scale,
        instantiate.clone(),
        rollback,
        shaped(routes, "routes", "", "payments", "UPDATE", route.clone()),
        shaped(routes, "routes", "", "payments", "DELETE", route),
    ])
    .await;
    controllers_pass(
        &[instantiate],
        "system:serviceaccount:openshift-infra:deploymentconfig-controller",
        &["system:serviceaccounts", "system:authenticated"],
    )
    .await;
}
