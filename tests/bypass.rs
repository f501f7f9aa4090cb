//! No side doors: however a gated change arrives at the API server, jitgate sees it and
//! gates it. One test per way in, each with AdmissionReviews shaped as the API server sends
//! them (captured ones where kubectl produced them, and the same shapes varied where it
//! did not): denied without an approval, allowed with one, on the real server over TLS.

mod support;

use serde_json::{Value, json};
use std::path::Path;
use support::*;

const CAPTURED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/admission/captured"
);

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
