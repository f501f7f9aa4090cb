//! No side doors: however a gated change arrives at the API server, jitgate sees it and
//! gates it. One test per way in, each with AdmissionReviews shaped as the API server sends
//! them (captured ones where kubectl produced them, and the same shapes varied where it
//! did not): denied without an approval, allowed with one, on the real server over TLS.
//! And the side doors around the gate that the shipped policies close (a Pod that mounts
//! a Secret, every workload kind that makes Pods, a running Pod's image, the proxies to
//! pods, services and kubelets, a minted service account token or a token-type Secret, a
//! service account changed, a RoleBinding to oneself, OpenShift's own workload kinds and
//! builds), each with a controller of the control plane still let through.

use crate::support::*;
use serde_json::{Value, json};
use std::path::Path;

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
    let namespace = match r["namespace"].as_str() {
        Some(ns) if !ns.is_empty() => format!("namespace: {ns}\n"),
        _ => String::new(),
    };
    format!(
        "user: {}\nresource: {resource}\napiGroup: {}\n{namespace}name: {}\noperations: [{}]\nexpiresAt: \"{}\"\nreason: \"CHG-1\"\napprovedBy: [bob@example.com]\n",
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

/// No capture exists of `kubectl edit` or `kubectl apply` on a Deployment: they are the
/// captured UPDATE with another field manager and PatchOptions (server-side apply). What
/// this shows is that jitgate keys on none of that: an UPDATE is gated whichever client
/// made it and whatever options it carries. (The captured shapes of those paths, on a
/// ConfigMap, are in `tests/fixtures/admission/captured/configmap-update-via-*.json`.)
#[tokio::test]
async fn an_update_is_gated_whichever_client_made_it_and_whatever_options_it_carries() {
    let mut server_side_apply = deployment_update("kubectl", |o| o["spec"]["replicas"] = 5.into());
    server_side_apply["request"]["options"] = json!({"kind": "PatchOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl", "force": true});
    gated_every_way(&[
        deployment_update("kubectl-edit", |o| o["spec"]["replicas"] = 7.into()),
        deployment_update("kubectl-client-side-apply", |o| {
            o["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = "{}".into();
            o["spec"]["replicas"] = 4.into();
        }),
        server_side_apply,
    ])
    .await;
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

/// The identity of a controller of kube-controller-manager running under its own service
/// account (`--use-service-account-credentials`).
fn controller(name: &str) -> String {
    format!("system:serviceaccount:kube-system:{name}")
}

const SERVICE_ACCOUNT_GROUPS: [&str; 3] = [
    "system:serviceaccounts",
    "system:serviceaccounts:kube-system",
    "system:authenticated",
];

/// The captured `kubectl create deployment`, as a create (or `operation`) of another
/// pod-template kind: the same object body under that kind's group and resource.
fn workload(group: &str, kind: &str, resource: &str, operation: &str) -> Value {
    let mut review = captured("deployment-create.json");
    let r = &mut review["request"];
    r["kind"] = json!({"group": group, "version": "v1", "kind": kind});
    r["requestKind"] = r["kind"].clone();
    r["resource"] = json!({"group": group, "version": "v1", "resource": resource});
    r["requestResource"] = r["resource"].clone();
    r["object"]["kind"] = kind.into();
    if operation == "UPDATE" {
        r["operation"] = "UPDATE".into();
        r["oldObject"] = r["object"].clone();
        r["object"]["spec"]["template"]["spec"]["containers"][0]["image"] = "attacker/any:latest".into();
        r["options"] =
            json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-edit"});
    }
    review
}

#[tokio::test]
async fn creating_any_kind_that_makes_pods_is_gated_and_its_controllers_are_not() {
    let deployment = captured("deployment-create.json");
    assert_eq!(deployment["request"]["operation"], "CREATE");
    let replica_set = workload("apps", "ReplicaSet", "replicasets", "CREATE");
    let job = workload("batch", "Job", "jobs", "CREATE");
    gated_every_way(&[
        deployment.clone(),
        replica_set.clone(),
        workload("apps", "StatefulSet", "statefulsets", "CREATE"),
        workload("apps", "DaemonSet", "daemonsets", "CREATE"),
        job.clone(),
        workload("batch", "CronJob", "cronjobs", "CREATE"),
        workload("", "ReplicationController", "replicationcontrollers", "CREATE"),
    ])
    .await;
    // The Deployment controller creates ReplicaSets, the CronJob controller Jobs, each
    // under its own service account or as the controller manager.
    controllers_pass(
        std::slice::from_ref(&replica_set),
        &controller("deployment-controller"),
        &SERVICE_ACCOUNT_GROUPS,
    )
    .await;
    controllers_pass(
        std::slice::from_ref(&job),
        &controller("cronjob-controller"),
        &SERVICE_ACCOUNT_GROUPS,
    )
    .await;
    controllers_pass(
        &[replica_set, job],
        "system:kube-controller-manager",
        &["system:authenticated"],
    )
    .await;
    // The Job, DaemonSet and StatefulSet controllers create their Pods.
    let pod = captured("pod-create.json");
    for name in [
        "job-controller",
        "daemon-set-controller",
        "statefulset-controller",
    ] {
        controllers_pass(
            std::slice::from_ref(&pod),
            &controller(name),
            &SERVICE_ACCOUNT_GROUPS,
        )
        .await;
    }
}

#[tokio::test]
async fn changing_the_template_or_scale_of_any_kind_that_makes_pods_is_gated() {
    let mut scale = captured("deployment-scale-subresource-update.json");
    scale["request"]["resource"]["resource"] = "replicasets".into();
    let mut rc_scale = scale.clone();
    rc_scale["request"]["resource"] =
        json!({"group": "", "version": "v1", "resource": "replicationcontrollers"});
    let job_update = workload("batch", "Job", "jobs", "UPDATE");
    // An autoscaler aimed at an old ReplicaSet: the (exempt) HPA controller scales it up.
    let autoscaler = shaped(
        ("autoscaling", "v2", "HorizontalPodAutoscaler"),
        "horizontalpodautoscalers",
        "",
        "web-old",
        "CREATE",
        json!({"kind": "HorizontalPodAutoscaler", "apiVersion": "autoscaling/v2",
            "metadata": {"name": "web-old", "namespace": "prod"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f7c"},
                "minReplicas": 1, "maxReplicas": 1}}),
    );
    gated_every_way(&[
        autoscaler,
        workload("apps", "ReplicaSet", "replicasets", "UPDATE"),
        workload("apps", "DaemonSet", "daemonsets", "UPDATE"),
        job_update.clone(),
        workload("batch", "CronJob", "cronjobs", "UPDATE"),
        workload("", "ReplicationController", "replicationcontrollers", "UPDATE"),
        scale.clone(),
        rc_scale,
    ])
    .await;
    // The Deployment controller scales its ReplicaSets; the Job controller updates Jobs.
    controllers_pass(
        &[scale],
        &controller("deployment-controller"),
        &SERVICE_ACCOUNT_GROUPS,
    )
    .await;
    controllers_pass(
        &[job_update],
        &controller("job-controller"),
        &SERVICE_ACCOUNT_GROUPS,
    )
    .await;
}

/// `kubectl set image pod/web web=attacker/any`: an UPDATE of the Pod itself.
fn pod_image_changed() -> Value {
    let mut review = captured("pod-create.json");
    let r = &mut review["request"];
    r["operation"] = "UPDATE".into();
    r["oldObject"] = r["object"].clone();
    r["object"]["spec"]["containers"][0]["image"] = "attacker/any:latest".into();
    r["options"] =
        json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-set"});
    review
}

#[tokio::test]
async fn changing_a_running_pods_image_is_gated() {
    let update = pod_image_changed();
    gated_every_way(std::slice::from_ref(&update)).await;
    // The ReplicaSet controller adopts and releases Pods, the garbage collector rewrites
    // their owners, the kubelet writes its mirror pods.
    controllers_pass(
        std::slice::from_ref(&update),
        &controller("replicaset-controller"),
        &SERVICE_ACCOUNT_GROUPS,
    )
    .await;
    controllers_pass(
        std::slice::from_ref(&update),
        &controller("generic-garbage-collector"),
        &SERVICE_ACCOUNT_GROUPS,
    )
    .await;
    controllers_pass(
        &[update],
        "system:node:worker-1",
        &["system:nodes", "system:authenticated"],
    )
    .await;
}

/// A CONNECT to `resource/proxy` (`kubectl get --raw /api/v1/.../NAME/proxy/...`),
/// shaped as the captured attach.
fn proxy(resource: &str, kind: &str, name: &str) -> Value {
    let mut review = captured("pods-attach-connect.json");
    let r = &mut review["request"];
    r["resource"]["resource"] = resource.into();
    r["requestResource"]["resource"] = resource.into();
    r["subResource"] = "proxy".into();
    r["requestSubResource"] = "proxy".into();
    r["kind"] = json!({"group": "", "version": "v1", "kind": kind});
    r["requestKind"] = r["kind"].clone();
    r["name"] = name.into();
    r["object"] = json!({"kind": kind, "apiVersion": "v1", "path": "/debug/pprof/"});
    review
}

#[tokio::test]
async fn proxying_to_a_pods_or_services_ports_is_gated() {
    gated_every_way(&[
        proxy("pods", "PodProxyOptions", "web:8080"),
        proxy("services", "ServiceProxyOptions", "web:http"),
    ])
    .await;
}

#[tokio::test]
async fn the_kubelet_api_through_nodes_proxy_is_gated_and_nodes_are_not() {
    // A node is cluster-scoped: the review has no namespace.
    let mut node = proxy("nodes", "NodeProxyOptions", "worker-1");
    node["request"]["namespace"] = "".into();
    node["request"]["object"]["path"] = "/run/prod/web-0/web".into();
    gated_every_way(std::slice::from_ref(&node)).await;
    controllers_pass(
        &[node],
        "system:node:worker-2",
        &["system:nodes", "system:authenticated"],
    )
    .await;
}

/// `kubectl create -f` of a Secret of `type`, which the token controller fills with a
/// token for the service account it names when the type is the token type.
fn secret_of_type(ty: &str) -> Value {
    let mut review = captured("secret-create.json");
    let object = &mut review["request"]["object"];
    object["type"] = ty.into();
    object["metadata"]["annotations"] = json!({"kubernetes.io/service-account.name": "payments-admin"});
    review
}

#[tokio::test]
async fn a_token_type_secret_is_gated_and_an_opaque_one_is_not() {
    let token = secret_of_type("kubernetes.io/service-account-token");
    gated_every_way(std::slice::from_ref(&token)).await;
    // Only that type: an Opaque Secret is created without approval, as before.
    let h = Harness::start(&approvals_manifest(&[])).await;
    let opaque = secret_of_type("Opaque");
    let uid = opaque["request"]["uid"].as_str().unwrap().to_string();
    let reply = h.conn(Proto::H2).await.decide(&opaque).await;
    assert_eq!(reply["allowed"], true, "{reply}");
    assert_eq!(h.record_of(&uid)["reason"], "not_gated");
    h.stop().await;
    controllers_pass(
        &[token],
        "system:kube-controller-manager",
        &["system:authenticated"],
    )
    .await;
}

#[tokio::test]
async fn changing_a_service_account_is_gated() {
    // `kubectl annotate sa payments eks.amazonaws.com/role-arn=...`.
    let sa = json!({"kind": "ServiceAccount", "apiVersion": "v1",
        "metadata": {"name": "payments", "namespace": "prod",
            "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/admin"}}});
    let update = shaped(
        ("", "v1", "ServiceAccount"),
        "serviceaccounts",
        "",
        "payments",
        "UPDATE",
        sa,
    );
    gated_every_way(std::slice::from_ref(&update)).await;
    // OpenShift adds image pull secrets to every service account.
    controllers_pass(
        &[update],
        "system:serviceaccount:openshift-infra:serviceaccount-pull-secrets-controller",
        &["system:serviceaccounts", "system:authenticated"],
    )
    .await;
}

#[tokio::test]
async fn openshift_deploymentconfigs_and_builds_are_gated_when_a_person_starts_them() {
    let builds = ("build.openshift.io", "v1", "BuildConfig");
    let bc = json!({"kind": "BuildConfig", "apiVersion": "build.openshift.io/v1",
        "metadata": {"name": "payments", "namespace": "prod"},
        "spec": {"strategy": {"type": "Docker"}, "source": {"dockerfile": "FROM x\nRUN id"}}});
    let build = shaped(
        ("build.openshift.io", "v1", "Build"),
        "builds",
        "",
        "payments-2",
        "CREATE",
        json!({"kind": "Build", "apiVersion": "build.openshift.io/v1", "metadata": {"name": "payments-2", "namespace": "prod"}}),
    );
    let mut binary = captured("pods-attach-connect.json");
    binary["request"]["resource"] =
        json!({"group": "build.openshift.io", "version": "v1", "resource": "buildconfigs"});
    binary["request"]["subResource"] = "instantiatebinary".into();
    binary["request"]["name"] = "payments".into();
    gated_every_way(&[
        shaped(
            ("apps.openshift.io", "v1", "DeploymentConfig"),
            "deploymentconfigs",
            "",
            "payments",
            "CREATE",
            json!({"kind": "DeploymentConfig", "apiVersion": "apps.openshift.io/v1", "metadata": {"name": "payments", "namespace": "prod"}}),
        ),
        shaped(builds, "buildconfigs", "", "payments", "CREATE", bc.clone()),
        shaped(builds, "buildconfigs", "", "payments", "UPDATE", bc.clone()),
        shaped(builds, "buildconfigs", "instantiate", "payments", "CREATE", json!({"kind": "BuildRequest", "apiVersion": "build.openshift.io/v1", "metadata": {"name": "payments"}})),
        build.clone(),
        binary,
    ])
    .await;
    // The build controllers start builds from triggers; a DeploymentConfig rollout's
    // ReplicationController is made by its controller and scaled by the deployer pod.
    controllers_pass(
        &[build],
        "system:serviceaccount:openshift-infra:build-config-change-controller",
        &["system:serviceaccounts", "system:authenticated"],
    )
    .await;
    let rc = workload("", "ReplicationController", "replicationcontrollers", "UPDATE");
    controllers_pass(
        &[rc],
        "system:serviceaccount:prod:deployer",
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:prod",
            "system:authenticated",
        ],
    )
    .await;
}
