//! What the API server is configured with, evaluated as it evaluates it: the CEL
//! `matchConditions` of the shipped ValidatingWebhookConfiguration send jitgate exactly
//! the writes a policy gates for that user (and keep the control plane's own away); those
//! of the AuthorizationConfiguration in `manifests/authorization/` send exactly the reads
//! its policies gate; the webhook kubeconfig is a kubeconfig.

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

/// Whether the API server calls the authorization webhook for this SubjectAccessReview
/// spec.
fn sent(conditions: &[Program], spec: &serde_json::Value) -> Result<bool, String> {
    evaluate(conditions, &serde_json::json!({"request": cel_request(spec)}))
}

fn fixture(name: &str) -> serde_json::Value {
    let path = root().join("tests/fixtures/authorization/captured").join(name);
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
    // `kubectl get secrets --all-namespaces`: no namespace, so it spans prod too.
    let mut everywhere = fixture("secret-list-bob.json");
    everywhere["resourceAttributes"]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    assert_eq!(sent(&conditions, &everywhere), Ok(true));
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

/// The gate webhook's matchConditions, from `manifests/base/webhook.yaml`.
fn gate_conditions() -> Vec<Program> {
    let text = std::fs::read_to_string(root().join("manifests/base/webhook.yaml")).unwrap();
    let vwc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let gate = &vwc["webhooks"][0];
    assert_eq!(gate["name"], "gate.jitgate.dev");
    gate["matchConditions"]
        .as_array()
        .expect("the gate webhook has matchConditions")
        .iter()
        .map(|c| Program::compile(c["expression"].as_str().unwrap()).unwrap())
        .collect()
}

/// Whether jitgate itself would gate this review (with no approvals): a decision other
/// than not gated or exempt.
fn jitgate_gates(review: &serde_json::Value, policies: &jitgate::policy::PolicySet) -> bool {
    use jitgate::approvals::{ConfigMapRef, Snapshot};
    use jitgate::decision::{Approvals, Code, Inputs, decide};
    let body = review.to_string();
    let req = jitgate::admission::decode(body.as_bytes()).unwrap();
    let now = jiff::Timestamp::now();
    let snapshot = Snapshot::new(Vec::new(), 0, ConfigMapRef::default(), now);
    let inputs = Inputs {
        policies,
        approvals: Approvals::Loaded(&snapshot),
        now,
    };
    !matches!(decide(&req, &inputs).code(), Code::NotGated | Code::Exempt)
}

#[test]
fn the_gate_webhook_is_sent_exactly_what_a_policy_gates_for_that_user() {
    let conditions = gate_conditions();
    let policies = jitgate::sync::policies::load_dir(&root().join("policies")).unwrap();
    let dir = root().join("tests/fixtures/admission/captured");
    let mut reviews: Vec<serde_json::Value> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p.file_name().unwrap().to_string_lossy().starts_with('_')
        })
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .filter(|r: &serde_json::Value| r["request"]["resource"]["resource"] != "configmaps")
        .collect();
    // The side doors, as the API server shapes them: a TokenRequest (kind in
    // authentication.k8s.io, resource the core serviceaccounts/token) and a RoleBinding.
    let mut token = reviews[0].clone();
    token["request"]["kind"] =
        serde_json::json!({"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"});
    token["request"]["resource"] =
        serde_json::json!({"group": "", "version": "v1", "resource": "serviceaccounts"});
    token["request"]["subResource"] = "token".into();
    token["request"]["operation"] = "CREATE".into();
    let mut binding = reviews[0].clone();
    binding["request"]["resource"] = serde_json::json!({"group": "rbac.authorization.k8s.io", "version": "v1", "resource": "rolebindings"});
    binding["request"].as_object_mut().unwrap().remove("subResource");
    binding["request"]["operation"] = "CREATE".into();
    reviews.extend([token, binding]);
    assert!(reviews.len() >= 14, "{}", reviews.len());

    let users: [(&str, &[&str]); 7] = [
        ("kubernetes-admin", &["system:masters", "system:authenticated"]),
        ("alice@example.com", &["dev", "system:authenticated"]),
        (
            "system:serviceaccount:prod:app",
            &["system:serviceaccounts", "system:authenticated"],
        ),
        (
            "system:serviceaccount:kube-system:replicaset-controller",
            &["system:serviceaccounts", "system:authenticated"],
        ),
        (
            "system:serviceaccount:openshift-infra:build-controller",
            &["system:serviceaccounts", "system:authenticated"],
        ),
        ("system:kube-controller-manager", &["system:authenticated"]),
        ("system:node:worker-1", &["system:nodes", "system:authenticated"]),
    ];
    let (mut sent, mut kept_away) = (0, 0);
    for review in &reviews {
        for namespace in ["prod", "prod-eu", "default"] {
            for (user, groups) in users {
                let mut review = review.clone();
                review["request"]["namespace"] = namespace.into();
                review["request"]["userInfo"] = serde_json::json!({"username": user, "groups": groups});
                // What CEL sees: the request as sent, empty fields left out, as the API
                // server leaves them out.
                let mut request = review["request"].clone();
                for big in ["object", "oldObject", "options"] {
                    request.as_object_mut().unwrap().remove(big);
                }
                let spec = serde_json::json!({"request": request});
                let cel = evaluate(&conditions, &spec).unwrap_or_else(|e| panic!("{e}: {request}"));
                let gates = jitgate_gates(&review, &policies);
                let what = format!(
                    "{} {} {}/{} in {namespace} by {user}",
                    request["operation"],
                    request["resource"]["group"],
                    request["resource"]["resource"],
                    request.get("subResource").unwrap_or(&"".into())
                );
                assert_eq!(cel, gates, "{what}");
                if cel { sent += 1 } else { kept_away += 1 }
            }
        }
    }
    assert!(
        sent >= 30 && kept_away >= 100,
        "sent {sent}, kept away {kept_away}"
    );
}

/// matchConditions as the API server applies them: skipped when any is false; sent when
/// all are true; an error with none false falls to failurePolicy (here: a test failure).
fn evaluate(conditions: &[Program], vars: &serde_json::Value) -> Result<bool, String> {
    let mut ctx = Context::default();
    for (name, value) in vars.as_object().unwrap() {
        ctx.add_variable(name.as_str(), value.clone()).unwrap();
    }
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
