//! `manifests/openshift/`, as `oc apply -k` would build it: it runs under OpenShift's
//! restricted-v2 SCC (no fixed UID or GID anywhere), takes its serving certificate and CA
//! bundle from the service CA operator, and routes OpenShift's workload kinds to jitgate.

use crate::support::REPO;
use serde_json::Value;
use std::process::Command;

/// The overlay's objects, built by `kubectl kustomize` (the kustomize `oc` embeds).
fn overlay() -> Vec<Value> {
    build("manifests/openshift")
}

fn build(dir: &str) -> Vec<Value> {
    let out = Command::new("kubectl")
        .args(["kustomize", dir])
        .current_dir(REPO)
        .output()
        .expect("kubectl is needed to build the overlay (it is on the PATH, and CI checks)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .split("\n---\n")
        .map(|doc| serde_saphyr::from_str::<Value>(doc).expect("each document is YAML"))
        .collect()
}

fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// Every key named `key` anywhere under `v`, with its path.
fn find_keys(v: &Value, key: &str, path: String, found: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == key {
                    found.push(format!("{path}.{k}"));
                }
                find_keys(child, key, format!("{path}.{k}"), found);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                find_keys(child, key, format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn no_security_context_fixes_a_uid_or_gid_and_the_rest_is_restricted() {
    let objects = overlay();
    for o in &objects {
        let mut fixed = Vec::new();
        for key in ["runAsUser", "runAsGroup", "fsGroup", "supplementalGroups"] {
            find_keys(o, key, o["kind"].as_str().unwrap().to_string(), &mut fixed);
        }
        assert!(fixed.is_empty(), "restricted-v2 assigns these: {fixed:?}");
    }
    let pod = &object(&objects, "Deployment", "jitgate")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    for c in pod["containers"].as_array().unwrap() {
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    }
    for v in pod["volumes"].as_array().unwrap() {
        assert!(v.get("secret").is_some() || v.get("configMap").is_some(), "{v}");
    }
}

#[test]
fn the_service_ca_issues_the_certificate_and_injects_the_bundle() {
    let objects = overlay();
    let service = object(&objects, "Service", "jitgate");
    assert_eq!(
        service["metadata"]["annotations"]["service.beta.openshift.io/serving-cert-secret-name"],
        "jitgate-tls"
    );
    let secret_name = &object(&objects, "Deployment", "jitgate")["spec"]["template"]["spec"]["volumes"][0];
    assert_eq!(
        secret_name["secret"]["secretName"], "jitgate-tls",
        "the Secret the pods mount"
    );
    let vwc = object(&objects, "ValidatingWebhookConfiguration", "jitgate");
    assert_eq!(
        vwc["metadata"]["annotations"]["service.beta.openshift.io/inject-cabundle"],
        "true"
    );
    // Nothing else OpenShift-only: the same objects as the base.
    let names = |objects: &[Value]| -> Vec<String> {
        objects
            .iter()
            .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
            .collect()
    };
    assert_eq!(names(&objects), names(&build("manifests")));
}

#[test]
fn the_rendered_rules_route_openshifts_workload_kinds_to_jitgate() {
    let objects = overlay();
    let vwc = object(&objects, "ValidatingWebhookConfiguration", "jitgate");
    let rules = vwc["webhooks"][0]["rules"].as_array().unwrap();
    let routed = |group: &str, resource: &str, op: &str| {
        rules.iter().any(|r| {
            r["apiGroups"].as_array().unwrap().iter().any(|g| g == group)
                && r["resources"].as_array().unwrap().iter().any(|x| x == resource)
                && r["operations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|o| o == op || o == "*")
        })
    };
    for (group, resource, op) in [
        ("apps.openshift.io", "deploymentconfigs", "UPDATE"),
        ("apps.openshift.io", "deploymentconfigs", "DELETE"),
        ("apps.openshift.io", "deploymentconfigs/scale", "UPDATE"),
        ("apps.openshift.io", "deploymentconfigs/instantiate", "CREATE"),
        ("apps.openshift.io", "deploymentconfigs/rollback", "CREATE"),
        ("route.openshift.io", "routes", "UPDATE"),
        ("route.openshift.io", "routes", "DELETE"),
        ("", "pods/exec", "CONNECT"),
        ("", "pods", "CREATE"),
    ] {
        assert!(
            routed(group, resource, op),
            "{op} {group}/{resource} is not routed"
        );
    }
}
