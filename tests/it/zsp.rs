//! Zero standing privilege against a real kube-apiserver (v1.36, the realk8s kit of the project's shared material):
//! erin, a contractor to whom RBAC gives nothing in prod, is refused; she files a request
//! through the API server (the ledger judges it), alice approves it with `jitgate
//! approve`, and the authorization webhook then grants her exactly what the approval
//! names (a get of one Secret, a scale of one Deployment, an exec into one Pod) and
//! nothing beside it; after a revocation, an expiry and a spent `maxUses` she is refused
//! again. The API server runs the authorizer chain `jitgate manifests authorization`
//! renders from the test's policy (Node, jitgate, RBAC; no decision cache), and the
//! admission webhook configuration `jitgate manifests webhook` renders.
//!
//! Like `realk8s`, it finds the kit through `KUBE_APISERVER_KIT`, and says so and passes
//! without it.

use crate::realk8s::{ApiServer, approvals_source, kit, outcome, webhook_configuration_of};
use crate::support::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// Approvals under it grant: secrets reads, a Deployment's scale, an exec, in prod.
const POLICY: &str = r#"
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata:
  name: contractors-prod
spec:
  grant: true
  rules:
    - apiGroups: [""]
      resources: ["secrets"]
      verbs: ["get", "list", "watch"]
    - apiGroups: ["apps"]
      resources: ["deployments/scale"]
      verbs: ["get"]
      operations: ["UPDATE"]
    - apiGroups: [""]
      resources: ["pods"]
      verbs: ["get"]
    - apiGroups: [""]
      resources: ["pods/exec"]
      operations: ["CONNECT"]
  namespaces: ["prod"]
  approval:
    minApprovers: 1
    maxDuration: 1h
    approverGroups: ["jitgate-approvers"]
"#;

/// What the kit's users need to ask and to approve (the shipped jitgate-requester and
/// jitgate-approver roles, written out), and the objects of the story. erin gets nothing
/// in prod.
fn cluster_objects(policy: &str) -> serde_json::Value {
    let approvals_rules = json!([
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["jitgate-approvals"], "verbs": ["get", "update", "patch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["jitgate-policies", "jitgate-signers"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "watch"]}
    ]);
    let binding = |name: &str, group: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": "jitgate-system"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "jitgate-ask-and-approve"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}]})
    };
    let configmap = |name: &str, labels: serde_json::Value, data: serde_json::Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "jitgate-system", "labels": labels}, "data": data})
    };
    let secret = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "prod"},
            "stringData": {"password": "canary-zsp"}})
    };
    json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "jitgate-ask-and-approve", "namespace": "jitgate-system"}, "rules": approvals_rules},
        binding("contractors-ask", "contractors"),
        binding("approvers-approve", "jitgate-approvers"),
        configmap("jitgate-approvals", json!({"jitgate.dev/approvals": "true"}), json!({})),
        configmap("jitgate-usage", json!({}), json!({})),
        configmap("jitgate-policies", json!({}), json!({"contractors-prod.yaml": policy})),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "prod"}},
        secret("db-pass"),
        secret("db-other"),
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "prod"},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1"}]}}}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "shell", "namespace": "prod"},
         "spec": {"containers": [{"name": "app", "image": "busybox:1"}], "automountServiceAccountToken": false}}
    ]})
}

/// A request for erin, as the entry she writes (`extra`: more lines).
fn request(
    resource: &str,
    api_group: &str,
    name: &str,
    ops: &str,
    extra: &str,
    expires_in: Duration,
) -> String {
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::try_from(expires_in).unwrap();
    format!(
        "user: erin\nresource: {resource}\napiGroup: \"{api_group}\"\nnamespace: prod\nname: {name}\n{ops}\n{extra}expiresAt: \"{expires}\"\nreason: \"INC-9: contractor on call\"\napprovedBy: []\n"
    )
}

struct Story {
    api: ApiServer,
    jitgate: Harness,
}

impl Story {
    async fn kubectl(&self, user: &str, args: &[&str]) -> Result<String, String> {
        let out = self.api.kubectl(user, args, None).await;
        outcome(&out).map(|()| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// erin writes her request into the approvals ConfigMap, as kubectl does; the ledger
    /// judges it.
    async fn ask(&self, key: &str, entry: &str) {
        let out = self.api.patch_approvals("erin", &json!({ key: entry })).await;
        assert!(out.is_ok(), "erin's request {key}: {out:?}");
    }

    /// alice approves with the CLI.
    async fn approve(&self, key: &str) {
        self.cli("alice", &["approve", key]).await;
    }

    async fn cli(&self, user: &str, args: &[&str]) {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_jitgate"));
        cmd.args(args).arg("--kubeconfig").arg(self.api.kubeconfig(user));
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "jitgate {args:?} as {user}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `kubectl auth can-i get WHAT` as erin in prod: `yes` or `no` (the reason that may
    /// follow is left out).
    async fn can_i(&self, what: &str) -> String {
        let out = self
            .api
            .kubectl("erin", &["-n", "prod", "auth", "can-i", "get", what], None)
            .await;
        let said = String::from_utf8_lossy(&out.stdout);
        said.split([' ', '\n']).next().unwrap_or_default().to_string()
    }

    async fn erin_reads(&self, name: &str) -> Result<String, String> {
        self.kubectl("erin", &["-n", "prod", "get", "secret", name, "-o", "name"])
            .await
    }

    /// How long until erin's read of `name` comes out `allowed`.
    async fn until_read(&self, name: &str, allowed: bool) -> Duration {
        eventually(Duration::from_secs(20), || async {
            self.erin_reads(name).await.is_ok() == allowed
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erin_holds_nothing_until_an_approval_grants_exactly_what_it_names_on_a_real_api_server() {
    let Some(kit) = kit() else { return };
    let work = tempfile::tempdir().unwrap();
    let policies = work.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("contractors-prod.yaml"), POLICY).unwrap();

    // jitgate's certificate and port first: the API server's authorizer chain names them.
    let certs = Certs::new();
    std::fs::write(work.path().join("tls.crt"), &certs.cert_pem).unwrap();
    std::fs::write(work.path().join("tls.key"), &certs.key_pem).unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let api = ApiServer::with_authorizer(&kit, &policies, addr, &certs.ca_pem, work.path());

    api.ok(
        "admin",
        &["apply", "-f", "-"],
        Some(cluster_objects(POLICY).to_string()),
    )
    .await;
    let (tls_cert, tls_key) = (work.path().join("tls.crt"), work.path().join("tls.key"));
    let admin = api.kubeconfig("admin");
    let jitgate = Harness::start_with(None, |cfg| {
        cfg.listen = addr;
        cfg.tls_cert = tls_cert;
        cfg.tls_key = tls_key;
        cfg.policies_dir = policies.clone();
        cfg.cluster = Some(approvals_source(admin));
    })
    .await;
    let vwc = webhook_configuration_of(&policies, addr, &certs.ca_pem);
    api.ok("admin", &["apply", "-f", "-"], Some(vwc.to_string()))
        .await;
    let story = Story { api, jitgate };
    // The admission webhooks load asynchronously: wait until the ledger judges an edit.
    eventually(Duration::from_secs(30), || async {
        let bad = json!({"data": {"probe": "not: [an entry"}}).to_string();
        story
            .kubectl(
                "admin",
                &[
                    "-n",
                    "jitgate-system",
                    "patch",
                    "configmap",
                    "jitgate-approvals",
                    "--type=merge",
                    "-p",
                    &bad,
                    "--dry-run=server",
                ],
            )
            .await
            .is_err_and(|e| e.contains("jitgate"))
    })
    .await;

    // Nothing at first: the read is denied by jitgate (a gated read), the scale and the
    // exec are RBAC's Forbidden with jitgate's reason beside it.
    let refused = story.erin_reads("db-pass").await.unwrap_err();
    assert!(
        refused.contains("Forbidden") && refused.contains("contractors-prod"),
        "{refused}"
    );
    let scale = [
        "-n",
        "prod",
        "patch",
        "deployment",
        "web",
        "--subresource=scale",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":2}}"#,
    ];
    let refused = story.kubectl("erin", &scale).await.unwrap_err();
    assert!(
        refused.contains("Forbidden") && refused.contains("jitgate"),
        "{refused}"
    );
    let exec = ["-n", "prod", "exec", "shell", "--", "true"];
    let refused = story.kubectl("erin", &exec).await.unwrap_err();
    assert!(refused.contains("Forbidden"), "{refused}");
    assert_eq!(story.can_i("secret/db-pass").await, "no");

    // She asks; she cannot approve her own request; alice approves.
    let hour = Duration::from_secs(3600);
    story
        .ask(
            "erin-db-pass",
            &request("secrets", "", "db-pass", "verbs: [get]", "", hour),
        )
        .await;
    let own = story
        .kubectl(
            "erin",
            &["-n", "jitgate-system", "patch", "configmap", "jitgate-approvals", "--type=merge", "-p",
              &json!({"data": {"erin-db-pass": request("secrets", "", "db-pass", "verbs: [get]", "", hour).replace("approvedBy: []", "approvedBy: [erin]")}}).to_string()],
        )
        .await
        .unwrap_err();
    assert!(own.contains("jitgate ledger"), "{own}");
    story.approve("erin-db-pass").await;
    let took = story.until_read("db-pass", true).await;
    println!("erin's get of db-pass granted {took:?} after alice's approval");
    // Exactly that: another Secret, a list, another namespace stay refused.
    assert!(story.erin_reads("db-other").await.is_err());
    assert!(
        story
            .kubectl("erin", &["-n", "prod", "get", "secrets"])
            .await
            .is_err()
    );
    assert!(
        story
            .kubectl("erin", &["-n", "default", "get", "secret", "db-pass"])
            .await
            .is_err()
    );
    assert_eq!(story.can_i("secret/db-pass").await, "yes");
    assert_eq!(story.can_i("secret/db-other").await, "no");

    // The scale of one Deployment.
    story
        .ask(
            "erin-web-scale",
            &request(
                "deployments/scale",
                "apps",
                "web",
                // kubectl reads the scale before it patches it.
                "operations: [UPDATE]\nverbs: [get]",
                "",
                hour,
            ),
        )
        .await;
    story.approve("erin-web-scale").await;
    eventually(Duration::from_secs(20), || async {
        story.kubectl("erin", &scale).await.is_ok()
    })
    .await;
    assert_eq!(story.api.replicas("web").await, "2");
    let other = ["-n", "prod", "delete", "deployment", "web"];
    assert!(
        story
            .kubectl("erin", &other)
            .await
            .unwrap_err()
            .contains("Forbidden")
    );

    // An exec into one Pod: authorized and admitted (it then fails only because no
    // kubelet runs the Pod here). kubectl reads the Pod before it execs: a second entry.
    story
        .ask(
            "erin-shell",
            &request("pods/exec", "", "shell", "operations: [CONNECT]", "", hour),
        )
        .await;
    story
        .ask(
            "erin-shell-get",
            &request("pods", "", "shell", "verbs: [get]", "", hour),
        )
        .await;
    story.approve("erin-shell").await;
    story.approve("erin-shell-get").await;
    let after = eventually(Duration::from_secs(20), || async {
        !story
            .kubectl("erin", &exec)
            .await
            .unwrap_err()
            .contains("Forbidden")
    })
    .await;
    let err = story.kubectl("erin", &exec).await.unwrap_err();
    assert!(!err.contains("Forbidden"), "{err}");
    println!(
        "erin's exec into shell authorized {after:?} after the approval (then: {})",
        err.trim()
    );

    // Revoked: refused again.
    story.cli("alice", &["revoke", "erin-db-pass"]).await;
    let took = story.until_read("db-pass", false).await;
    println!("erin refused {took:?} after the revocation");

    // Expired: refused again when the clock passes expiresAt, with no edit.
    let expiry = Instant::now() + Duration::from_secs(25);
    story
        .ask(
            "erin-db-pass-short",
            &request(
                "secrets",
                "",
                "db-pass",
                "verbs: [get]",
                "",
                Duration::from_secs(25),
            ),
        )
        .await;
    story.approve("erin-db-pass-short").await;
    story.until_read("db-pass", true).await;
    eventually(Duration::from_secs(40), || async {
        story.erin_reads("db-pass").await.is_err()
    })
    .await;
    println!(
        "erin refused {:?} after the approval's expiry",
        Instant::now().saturating_duration_since(expiry)
    );

    // A single use: one get, then refused.
    story
        .ask(
            "erin-db-pass-once",
            &request("secrets", "", "db-pass", "verbs: [get]", "maxUses: 1\n", hour),
        )
        .await;
    story.approve("erin-db-pass-once").await;
    story.until_read("db-pass", true).await;
    let spent = story.erin_reads("db-pass").await.unwrap_err();
    assert!(spent.contains("Forbidden"), "{spent}");
    assert!(
        spent.contains("use"),
        "the refusal says the uses are spent: {spent}"
    );

    // Grants are records like any answer, and the Secret's data never reaches one.
    let records = story.jitgate.records();
    assert!(
        records
            .iter()
            .any(|r| r["decision"] == "grant" && r["user"] == "erin"),
        "a grant record"
    );
    assert!(
        !std::fs::read_to_string(story.jitgate.audit_path())
            .unwrap()
            .contains("canary-zsp")
    );
}
