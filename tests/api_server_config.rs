//! The shipped `manifests/authorization/` files: the AuthorizationConfiguration's
//! matchConditions, evaluated as CEL the way the API server evaluates them, send jitgate
//! exactly the reads its policies gate; the webhook kubeconfig is a kubeconfig.

use cel_interpreter::{Context, Program, Value};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn config() -> serde_json::Value {
    let text =
        std::fs::read_to_string(root().join("manifests/authorization/authorization-config.yaml")).unwrap();
    serde_saphyr::from_str(&text).expect("authorization-config.yaml is YAML")
}

fn conditions() -> Vec<Program> {
    let config = config();
    let jitgate = config["authorizers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "Webhook")
        .expect("a Webhook authorizer");
    jitgate["webhook"]["matchConditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let e = c["expression"].as_str().unwrap();
            Program::compile(e).unwrap_or_else(|err| panic!("not CEL: {e}: {err}"))
        })
        .collect()
}

/// The `request` a matchCondition sees for a SubjectAccessReview's spec: string fields
/// of resourceAttributes are always present, empty when unset.
fn cel_request(spec: &serde_json::Value) -> serde_json::Value {
    let mut request = serde_json::json!({
        "user": spec["user"].as_str().unwrap_or(""),
        "groups": spec["groups"].clone(),
    });
    if let Some(r) = spec.get("resourceAttributes") {
        let mut attrs = serde_json::Map::new();
        for field in [
            "namespace",
            "verb",
            "group",
            "version",
            "resource",
            "subresource",
            "name",
        ] {
            attrs.insert(field.into(), r.get(field).cloned().unwrap_or_else(|| "".into()));
        }
        request["resourceAttributes"] = attrs.into();
    }
    request
}

/// Whether the API server calls jitgate for this spec: skipped when any condition is
/// false; called when all are true; an error with none false falls to failurePolicy.
fn sent(conditions: &[Program], spec: &serde_json::Value) -> Result<bool, String> {
    let mut ctx = Context::default();
    ctx.add_variable("request", cel_request(spec)).unwrap();
    let mut error = None;
    for c in conditions {
        match c.execute(&ctx) {
            Ok(Value::Bool(false)) => return Ok(false),
            Ok(Value::Bool(true)) => {}
            Ok(other) => error = Some(format!("not a bool: {other:?}")),
            Err(e) => error = Some(e.to_string()),
        }
    }
    error.map_or(Ok(true), Err)
}

fn fixture(name: &str) -> serde_json::Value {
    let path = root()
        .join("../shared/fixtures/authorization/captured")
        .join(name);
    let review: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    review["spec"].clone()
}

#[test]
fn the_gated_reads_of_the_captured_reviews_are_sent_and_nothing_else() {
    let conditions = conditions();
    for (file, expected) in [
        ("secret-get-bob.json", true),
        ("secret-list-bob.json", true),
        ("secret-watch-bob.json", true),
        ("secret-list-labelselector-bob.json", true),
        ("pods-log-get-bob.json", true),
        ("selfsar-secret-get-bob.json", true),
        ("secret-create-bob.json", false),
        ("secret-delete-bob.json", false),
        ("pods-exec-get-bob.json", false),
        ("pods-exec-create-bob.json", false),
    ] {
        assert_eq!(sent(&conditions, &fixture(file)), Ok(expected), "{file}");
    }
}

#[test]
fn the_control_plane_nodes_service_accounts_and_system_namespaces_are_never_sent() {
    let conditions = conditions();
    let get = fixture("secret-get-bob.json");
    let with = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut spec = get.clone();
        edit(&mut spec);
        sent(&conditions, &spec)
    };
    assert_eq!(with(&|_| {}), Ok(true));
    for user in [
        "system:kube-controller-manager",
        "system:serviceaccount:prod:app",
        "system:node:n1",
    ] {
        assert_eq!(with(&|s| s["user"] = user.into()), Ok(false), "{user}");
    }
    assert_eq!(
        with(&|s| s["groups"] = serde_json::json!(["system:nodes"])),
        Ok(false)
    );
    for ns in ["kube-system", "jitgate-system"] {
        assert_eq!(
            with(&|s| s["resourceAttributes"]["namespace"] = ns.into()),
            Ok(false),
            "{ns}"
        );
    }
    assert_eq!(
        with(&|s| s["resourceAttributes"]["resource"] = "configmaps".into()),
        Ok(false)
    );
    let non_resource = serde_json::json!({"user": "bob", "groups": ["dev-team"], "nonResourceAttributes": {"path": "/healthz", "verb": "get"}});
    assert_eq!(
        sent(&conditions, &non_resource),
        Ok(false),
        "never an error: /healthz stays reachable"
    );
}

#[test]
fn the_webhook_kubeconfig_is_a_kubeconfig_that_posts_to_authorize() {
    let path = root().join("manifests/authorization/webhook-kubeconfig.yaml");
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("a kubeconfig");
    let cluster = kubeconfig.clusters[0].cluster.as_ref().unwrap();
    assert!(cluster.server.as_deref().unwrap().ends_with("/authorize"));
    assert!(cluster.certificate_authority.is_some());
    let named = config()["authorizers"][1]["webhook"]["connectionInfo"]["kubeConfigFile"].clone();
    assert!(Path::new(named.as_str().unwrap()).is_absolute(), "{named}");
}
