//! Zero standing privilege the RBAC-objects way (`serve --grants rbac`), against a real
//! kube-apiserver (v1.36, the realk8s kit of the project's shared material) whose
//! authorizer chain is RBAC alone, as on a managed cluster: erin (group `contractors`)
//! holds nothing in prod; an approval makes jitgate create a Role and RoleBinding that let
//! her get exactly one Secret, as the API server's own RBAC judges it (`kubectl auth
//! can-i` and her requests), and she loses it again after a revocation, after expiry, and
//! across a jitgate restart. A second replica with a lagging view leaves a fresh grant
//! alone. Attacks: an approval naming more than the policy grants gets a Role of what
//! `decide` grants only; a hand-made Role carrying jitgate's label and the grant's name is
//! neither bound nor widened; a self-approved request gets nothing.
//!
//! The same for an update of one Deployment's scale and an exec into one Pod, as kubectl
//! sends them; and a `maxUses: 1` approval of the scale, with jitgate's admission gate in
//! the chain (the gate alone, not the ledger), which counts the use: the second scale is
//! refused and the grant removed; a `maxUses` approval of a read gets no Role, and `show`
//! says why.
//!
//! The approvals are written into the ConfigMap by the cluster admin (no ledger webhook
//! here: the ledger's own stories are in `zsp.rs` and `ledger.rs`), so what stands between
//! an entry and a Role is the reconciler's own use of `decide`.
//!
//! Like `realk8s`, it finds the kit through `KUBE_APISERVER_KIT`, and says so and passes
//! without it.

use crate::realk8s::{ApiServer, approvals_source, kit, outcome};
use crate::support::*;
use jitgate::approvals::{ApprovalStore, ConfigMapRef, Snapshot};
use jitgate::grants::{Reconciler, plan::GRACE};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Approvals under it grant a get of Secrets, an update of a Deployment's scale (and the
/// read kubectl makes of it first), and an exec into a Pod (and kubectl's read of the Pod)
/// in prod, and nothing else.
const POLICY: &str = r#"
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata:
  name: contractors-secrets
spec:
  grant: true
  rules:
    - apiGroups: [""]
      resources: ["secrets"]
      verbs: ["get"]
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
    maxDuration: 2h
"#;

fn cluster_objects(policy: &str) -> Value {
    let secret = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "prod"},
            "stringData": {"password": "canary-zsp-rbac"}})
    };
    json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "jitgate-approvals", "namespace": "jitgate-system",
            "labels": {"jitgate.dev/approvals": "true"}}, "data": {}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "jitgate-usage", "namespace": "jitgate-system"}, "data": {}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "jitgate-policies", "namespace": "jitgate-system"},
            "data": {"contractors-secrets.yaml": policy}},
        secret("db-pass"),
        secret("db-other"),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "prod"}},
        deployment("web"),
        deployment("api"),
        pod("shell"),
        pod("other"),
    ]})
}

fn deployment(name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "prod"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1"}]}}}})
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "prod"},
        "spec": {"containers": [{"name": "app", "image": "busybox:1"}], "automountServiceAccountToken": false}})
}

/// What erin's entries name: the Secret db-pass.
const DB_PASS: &str = "resource: secrets\napiGroup: \"\"\nname: db-pass";
/// The scale of the Deployment web.
const WEB_SCALE: &str = "resource: deployments/scale\napiGroup: apps\nname: web";

/// erin's entry for `db-pass`: `lines` say what and who approved; it expires in `ttl`.
fn entry(lines: &str, ttl: Duration) -> String {
    entry_for(DB_PASS, lines, ttl)
}

/// erin's entry for `what` in prod: `lines` say what and who approved; it expires in `ttl`.
fn entry_for(what: &str, lines: &str, ttl: Duration) -> String {
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::try_from(ttl).unwrap();
    format!(
        "user: erin\n{what}\nnamespace: prod\n{lines}\nexpiresAt: \"{expires}\"\nreason: \"INC-7: contractor on call\"\n"
    )
}

/// What erin does as kubectl does it, beside the Secret get.
#[derive(Debug, Clone, Copy)]
enum Act {
    /// `kubectl patch deployment web --subresource=scale` (kubectl reads the scale first).
    Scale,
    /// `kubectl exec shell` (kubectl reads the Pod first).
    Exec,
}

impl Act {
    /// The object erin is approved to act on.
    fn target(self) -> &'static str {
        match self {
            Act::Scale => "web",
            Act::Exec => "shell",
        }
    }

    /// The kubectl arguments, in `namespace`, on `name`.
    fn args(self, namespace: &str, name: &str) -> Vec<String> {
        let args: &[&str] = match self {
            Act::Scale => &[
                "patch",
                "deployment",
                name,
                "--subresource=scale",
                "--type=merge",
                "-p",
                r#"{"spec":{"replicas":2}}"#,
            ],
            Act::Exec => &["exec", name, "--", "true"],
        };
        ["-n", namespace]
            .iter()
            .chain(args)
            .map(|a| a.to_string())
            .collect()
    }

    /// The entries it needs, approved by alice and expiring in `ttl`: the one the story
    /// revokes and lets expire (under `key`), and one it leaves (kubectl's read before the
    /// exec).
    fn entries(self, key: &str, ttl: Duration) -> Vec<(String, String)> {
        let approved = "approvedBy: [alice]";
        match self {
            Act::Scale => vec![(
                key.to_string(),
                entry_for(
                    WEB_SCALE,
                    &format!("operations: [UPDATE]\nverbs: [get]\n{approved}"),
                    ttl,
                ),
            )],
            Act::Exec => vec![
                (
                    key.to_string(),
                    entry_for(
                        "resource: pods/exec\nname: shell",
                        &format!("operations: [CONNECT]\n{approved}"),
                        ttl,
                    ),
                ),
                (
                    format!("{key}-get"),
                    entry_for(
                        "resource: pods\nname: shell",
                        &format!("verbs: [get]\n{approved}"),
                        HOUR,
                    ),
                ),
            ],
        }
    }
}

const APPROVED: &str = "verbs: [get]\napprovedBy: [alice]";
const HOUR: Duration = Duration::from_secs(3600);

struct Story {
    api: ApiServer,
    policies: std::path::PathBuf,
    /// A kubeconfig that acts as jitgate's service account (the admin impersonating it),
    /// which holds only the shipped RBAC and what `jitgate manifests grants` renders.
    as_jitgate: std::path::PathBuf,
}

impl Story {
    async fn kubectl(&self, user: &str, args: &[&str]) -> Result<String, String> {
        let out = self.api.kubectl(user, args, None).await;
        outcome(&out).map(|()| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The admin writes (or with `None` removes) an entry of the approvals ConfigMap.
    async fn set(&self, key: &str, text: Option<String>) {
        let set = self.api.patch_approvals("admin", &json!({ key: text })).await;
        assert!(set.is_ok(), "{key}: {set:?}");
    }

    /// `kubectl auth can-i VERB WHAT -n NAMESPACE` as erin: `yes` or `no`.
    async fn can_i(&self, verb: &str, what: &str, namespace: &str) -> String {
        let out = self
            .api
            .kubectl("erin", &["-n", namespace, "auth", "can-i", verb, what], None)
            .await;
        let said = String::from_utf8_lossy(&out.stdout);
        said.split([' ', '\n']).next().unwrap_or_default().to_string()
    }

    /// The Events in prod, as JSON text.
    async fn events(&self) -> String {
        self.kubectl(
            "admin",
            &["-n", "prod", "get", "events.events.k8s.io", "-o", "json"],
        )
        .await
        .unwrap()
    }

    /// What `jitgate show KEY` prints to the admin.
    fn show(&self, key: &str) -> String {
        self.cli(&["show", key])
    }

    /// What `jitgate ARGS` prints to the admin.
    fn cli(&self, args: &[&str]) -> String {
        let shown = std::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
            .args(args)
            .arg("--kubeconfig")
            .arg(self.api.kubeconfig("admin"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&shown.stdout).into_owned()
    }

    /// erin does `act` in `namespace` on `name`: `Ok` when the API server let it through
    /// authorization (an exec then fails only because no kubelet runs the Pod), else the
    /// refusal.
    async fn erin_does(&self, act: Act, namespace: &str, name: &str) -> Result<(), String> {
        let args = act.args(namespace, name);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match (act, self.kubectl("erin", &args).await) {
            (_, Ok(_)) => Ok(()),
            (Act::Exec, Err(e)) if !e.contains("Forbidden") => Ok(()),
            (_, Err(e)) => Err(e),
        }
    }

    /// How long until erin's `act` on web (or shell) in prod comes out `allowed`.
    async fn until_act(&self, act: Act, allowed: bool) -> Duration {
        eventually(Duration::from_secs(30), || async {
            self.erin_does(act, "prod", act.target()).await.is_ok() == allowed
        })
        .await
    }

    /// The expiry the grant object `kind` of approval `key` carries.
    async fn expiry_of(&self, kind: &str, key: &str) -> Option<jiff::Timestamp> {
        let object = self.object(kind, key).await?;
        object["metadata"]["annotations"][jitgate::rbac::EXPIRES_ANNOTATION]
            .as_str()?
            .parse()
            .ok()
    }

    /// Both grant objects of approval `key` are gone.
    /// Whether the Role and RoleBinding of `key` are both gone within seconds: a pass
    /// deletes them one after the other, so the binding (and erin's access) may go a
    /// moment before the Role does.
    async fn objects_gone(&self, key: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let gone =
                self.object("role", key).await.is_none() && self.object("rolebinding", key).await.is_none();
            if gone || Instant::now() >= deadline {
                return gone;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn erin_reads(&self) -> bool {
        self.kubectl("erin", &["-n", "prod", "get", "secret", "db-pass", "-o", "name"])
            .await
            .is_ok()
    }

    /// How long until erin's get of db-pass is `allowed`.
    async fn until_read(&self, allowed: bool) -> Duration {
        eventually(Duration::from_secs(30), || async {
            self.erin_reads().await == allowed
        })
        .await
    }

    /// The grant object `kind` of the approval `key`, if it exists.
    async fn object(&self, kind: &str, key: &str) -> Option<Value> {
        let name = jitgate::rbac::object_name(&format!("jitgate-approvals/{key}"));
        self.kubectl("admin", &["-n", "prod", "get", kind, &name, "-o", "json"])
            .await
            .ok()
            .map(|text| serde_json::from_str(&text).unwrap())
    }

    /// jitgate with `--grants rbac`, and its admission gate in the API server's chain (the
    /// gate's webhook alone, rendered from the policy: the ledger's is left out, so that
    /// the admin writes approvals as they stand).
    async fn jitgate_gating(&self) -> Harness {
        let jitgate = self.jitgate(GRACE).await;
        let mut vwc =
            crate::realk8s::webhook_configuration_of(&self.policies, jitgate.addr(), &jitgate.certs.ca_pem);
        vwc["webhooks"]
            .as_array_mut()
            .unwrap()
            .retain(|w| w["name"] == "gate.jitgate.dev");
        self.api
            .ok("admin", &["apply", "-f", "-"], Some(vwc.to_string()))
            .await;
        // The webhook loads asynchronously: wait until the gate judges the admin's scale.
        eventually(Duration::from_secs(30), || async {
            let mut args = Act::Scale.args("prod", "web");
            args.push("--dry-run=server".into());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            self.kubectl("admin", &args)
                .await
                .is_err_and(|e| e.contains("jitgate"))
        })
        .await;
        jitgate
    }

    /// jitgate in cluster mode, with `--grants rbac` and this grace.
    async fn jitgate(&self, grace: jiff::SignedDuration) -> Harness {
        self.jitgate_with(|cfg| {
            cfg.grants = jitgate::grants::Way::Rbac;
            cfg.grants_grace = grace;
        })
        .await
    }

    /// jitgate in cluster mode, its config changed as `tweak` says.
    async fn jitgate_with(&self, tweak: impl FnOnce(&mut jitgate::app::ServeConfig)) -> Harness {
        let kubeconfig = self.as_jitgate.clone();
        let policies = self.policies.clone();
        Harness::start_with(None, |cfg| {
            cfg.policies_dir = policies;
            cfg.cluster = Some(approvals_source(kubeconfig));
            tweak(cfg);
        })
        .await
    }

    /// jitgate that grants nothing by itself (`--grants webhook`): the test runs each pass
    /// of a reconciler with jitgate's view, audit trail and metrics, and sees what it did.
    async fn jitgate_passes_by_hand(
        &self,
        tweak: impl FnOnce(&mut jitgate::app::ServeConfig),
    ) -> (Harness, Reconciler) {
        let jitgate = self.jitgate_with(tweak).await;
        let store = jitgate.running.as_ref().unwrap().state.approvals.clone();
        let reconciler = self.replica(&jitgate, store, GRACE).await;
        (jitgate, reconciler)
    }

    /// Another replica, with jitgate's view of the approvals and a grace of a second: a
    /// grant object is past it at the next pass.
    async fn replica_past_grace(&self, jitgate: &Harness) -> Reconciler {
        let store = jitgate.running.as_ref().unwrap().state.approvals.clone();
        self.replica(jitgate, store, jiff::SignedDuration::from_secs(1))
            .await
    }

    /// Another replica, with its own view of the approvals (`store`), and the grace.
    async fn replica(
        &self,
        jitgate: &Harness,
        store: Arc<ApprovalStore>,
        grace: jiff::SignedDuration,
    ) -> Reconciler {
        let config = jitgate::sync::cluster::client_config(Some(&self.as_jitgate))
            .await
            .unwrap();
        let state = &jitgate.running.as_ref().unwrap().state;
        Reconciler::new(
            kube::Client::try_from(config).unwrap(),
            store,
            state.policies.clone(),
            state.metrics.clone(),
            state.audit.clone(),
            "replica-b".into(),
            grace,
        )
    }
}

/// Waits until `jitgate`'s view of the approvals holds `key`.
async fn seen(jitgate: &Harness, key: &str) {
    seen_as(jitgate, key, true).await;
}

/// Waits until `jitgate`'s view of the approvals holds `key` (`present`) or no longer does.
async fn seen_as(jitgate: &Harness, key: &str, present: bool) {
    let store = jitgate.running.as_ref().unwrap().state.approvals.clone();
    let id = format!("jitgate-approvals/{key}");
    eventually(Duration::from_secs(20), || {
        let store = store.clone();
        let id = id.clone();
        async move {
            store
                .current()
                .is_some_and(|s| s.approvals.iter().any(|a| a.id == id) == present)
        }
    })
    .await;
}

/// A Role `role` with `rules` in prod, and a RoleBinding `binding` of it to `user`.
fn role_and_binding(role: &str, rules: Value, binding: &str, user: &str) -> String {
    json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": role, "namespace": "prod"}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": binding, "namespace": "prod"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]},
    ]})
    .to_string()
}

/// The story's cluster on a real API server: the objects, the shipped RBAC and what
/// `jitgate manifests grants` renders for the test's policy, and a kubeconfig that acts as
/// jitgate's service account.
/// `None` (said, not silent) without the kit; the directory lives as long as the story.
async fn story() -> Option<(tempfile::TempDir, Story)> {
    story_with(POLICY).await
}

/// The same, under the granting policy `policy` instead.
async fn story_with(policy: &str) -> Option<(tempfile::TempDir, Story)> {
    let kit = kit()?;
    let work = tempfile::tempdir().unwrap();
    let policies = work.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("contractors-secrets.yaml"), policy).unwrap();
    let api = ApiServer::start_with(&kit, &[]);
    // jitgate runs as its service account, with the shipped RBAC and the grants RBAC
    // rendered from the test's policy, nothing else.
    let as_jitgate = work.path().join("kubeconfig-jitgate");
    let admin = std::fs::read_to_string(api.kubeconfig("admin")).unwrap();
    let impersonating = admin.replace(
        "{token: admin-token}",
        "{token: admin-token, as: \"system:serviceaccount:jitgate-system:jitgate\"}",
    );
    assert_ne!(admin, impersonating);
    std::fs::write(&as_jitgate, impersonating).unwrap();
    let story = Story {
        api,
        policies,
        as_jitgate,
    };
    story
        .api
        .ok(
            "admin",
            &["apply", "-f", "-"],
            Some(cluster_objects(policy).to_string()),
        )
        .await;
    let shipped =
        std::fs::read_to_string(std::path::Path::new(REPO).join("manifests/base/rbac.yaml")).unwrap();
    story.api.ok("admin", &["apply", "-f", "-"], Some(shipped)).await;
    let rendered = std::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .args(["manifests", "grants", "--policies"])
        .arg(&story.policies)
        .output()
        .unwrap();
    assert!(rendered.status.success());
    let rendered = String::from_utf8(rendered.stdout).unwrap();
    assert!(
        (rendered.contains("namespace: prod") || policy != POLICY)
            && !rendered.contains("- escalate")
            && !rendered.contains("- bind")
    );
    story.api.ok("admin", &["apply", "-f", "-"], Some(rendered)).await;
    Some((work, story))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_becomes_a_role_that_grants_exactly_it_and_ends_with_it_on_a_real_api_server() {
    let Some((_work, story)) = story().await else {
        return;
    };
    let jitgate = story.jitgate(GRACE).await;

    // Nothing at first: RBAC's Forbidden, and no jitgate anywhere in the chain.
    let refused = story
        .kubectl("erin", &["-n", "prod", "get", "secret", "db-pass"])
        .await
        .unwrap_err();
    assert!(refused.contains("Forbidden"), "{refused}");
    assert_eq!(story.can_i("get", "secret/db-pass", "prod").await, "no");

    // An approval that names more than the policy grants (a list, a watch, a delete):
    // the Role holds what decide grants, the get, and nothing more.
    story
        .set(
            "erin-db-pass",
            Some(entry(
                "verbs: [get, list, watch]\noperations: [DELETE]\napprovedBy: [alice]",
                HOUR,
            )),
        )
        .await;
    let took = story.until_read(true).await;
    println!("erin's get of db-pass granted {took:?} after the approval was written");
    let role = story.object("role", "erin-db-pass").await.expect("the Role");
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["db-pass"], "verbs": ["get"]}])
    );
    assert_eq!(
        role["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "jitgate"
    );
    let binding = story
        .object("rolebinding", "erin-db-pass")
        .await
        .expect("the RoleBinding");
    assert_eq!(
        binding["subjects"],
        json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "erin"}])
    );
    assert_eq!(story.can_i("get", "secret/db-pass", "prod").await, "yes");
    // `jitgate show` says the grant is live, and until when.
    let shown = story.show("erin-db-pass");
    assert!(
        shown.contains("grant:     live: RoleBinding prod/jitgate-grant-"),
        "{shown}"
    );
    for (verb, what, namespace) in [
        ("get", "secret/db-other", "prod"),
        ("list", "secrets", "prod"),
        ("watch", "secrets", "prod"),
        ("delete", "secret/db-pass", "prod"),
        ("update", "secret/db-pass", "prod"),
        ("get", "secret/db-pass", "default"),
        ("get", "configmaps", "prod"),
    ] {
        assert_eq!(
            story.can_i(verb, what, namespace).await,
            "no",
            "erin may not {verb} {what} in {namespace}"
        );
    }

    // A second replica whose view lags (it has not seen the approval yet, or sees it
    // still unapproved) leaves the fresh grant alone.
    let home = ConfigMapRef {
        namespace: "jitgate-system".into(),
        name: "jitgate-approvals".into(),
    };
    let empty = Arc::new(ApprovalStore::default());
    empty.replace(Snapshot::new(Vec::new(), 0, home.clone(), jiff::Timestamp::now()));
    let pending = Arc::new(ApprovalStore::default());
    let unapproved = jitgate::approvals::parse_entry(
        "jitgate-approvals/erin-db-pass",
        &entry("verbs: [get]\napprovedBy: []", HOUR),
    )
    .unwrap();
    pending.replace(Snapshot::new(
        vec![Arc::new(unapproved)],
        0,
        home,
        jiff::Timestamp::now(),
    ));
    for lagging in [empty, pending] {
        let mut b = story.replica(&jitgate, lagging, GRACE).await;
        let (report, _) = b.pass().await.unwrap();
        assert!(report.removed.is_empty(), "{report:?}");
    }
    assert!(story.erin_reads().await);

    // Revoked (the entry removed): refused again, the objects gone.
    let revoked = Instant::now();
    story.set("erin-db-pass", None).await;
    story.until_read(false).await;
    println!("erin refused {:?} after the revocation", revoked.elapsed());
    assert!(story.object("role", "erin-db-pass").await.is_none());
    assert!(story.object("rolebinding", "erin-db-pass").await.is_none());
    // Each grant created and removed is a record in the audit trail, and an Event beside it.
    let records = jitgate.records();
    let grant = |action: &str| {
        records.iter().any(|r| {
            r["event"] == "grant"
                && r["action"] == action
                && r["approval"] == "jitgate-approvals/erin-db-pass"
        })
    };
    assert!(grant("created") && grant("removed"), "{records:?}");
    assert!(
        records
            .iter()
            .any(|r| r["event"] == "grant" && r["why"] == "revoked")
    );
    let events = story.events().await;
    assert!(
        events.contains("GrantCreated") && events.contains("GrantRemoved"),
        "{events}"
    );

    // Expired: refused again when the clock passes expiresAt, with no edit.
    let ttl = Duration::from_secs(20);
    story.set("erin-short", Some(entry(APPROVED, ttl))).await;
    let expiry = Instant::now() + ttl;
    story.until_read(true).await;
    eventually(Duration::from_secs(60), || async { !story.erin_reads().await }).await;
    println!(
        "erin refused {:?} after the approval's expiry",
        Instant::now().saturating_duration_since(expiry)
    );
    assert!(story.object("rolebinding", "erin-short").await.is_none());

    // Revoked while jitgate is down: the replica that starts afterwards never saw the
    // approval, and removes its grant once it is older than the grace.
    story.set("erin-restart", Some(entry(APPROVED, HOUR))).await;
    story.until_read(true).await;
    jitgate.stop().await;
    story.set("erin-restart", None).await;
    assert!(
        story.erin_reads().await,
        "nothing removes it while jitgate is down"
    );
    let jitgate = story.jitgate(jiff::SignedDuration::from_secs(3)).await;
    let took = story.until_read(false).await;
    println!("erin refused {took:?} after a replica started again (grace 3 s)");
    assert!(story.object("role", "erin-restart").await.is_none());

    // A hand-made Role carrying jitgate's label, under the name the next approval's grant
    // will have, with wider rules: jitgate neither binds it nor changes it.
    let trap = jitgate::rbac::object_name("jitgate-approvals/erin-trap");
    let wide = json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}]);
    let hand_made = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": trap, "namespace": "prod", "labels": {
            "app.kubernetes.io/managed-by": "jitgate", "jitgate.dev/grant": jitgate::rbac::grant_label("jitgate-approvals/erin-trap")},
            "annotations": {"jitgate.dev/approval": "jitgate-approvals/erin-trap"}},
        "rules": wide});
    story
        .api
        .ok("admin", &["apply", "-f", "-"], Some(hand_made.to_string()))
        .await;
    // And erin's own request, approved by herself only.
    story.set("erin-trap", Some(entry(APPROVED, HOUR))).await;
    story
        .set("erin-self", Some(entry("verbs: [get]\napprovedBy: [erin]", HOUR)))
        .await;
    seen(&jitgate, "erin-trap").await;
    seen(&jitgate, "erin-self").await;
    let store = jitgate.running.as_ref().unwrap().state.approvals.clone();
    let mut b = story.replica(&jitgate, store, GRACE).await;
    let (report, _) = b.pass().await.unwrap();
    assert!(report.conflicts.iter().any(|c| c.ends_with(&trap)), "{report:?}");
    assert!(report.created.is_empty(), "{report:?}");
    assert_eq!(story.object("role", "erin-trap").await.unwrap()["rules"], wide);
    assert!(story.object("rolebinding", "erin-trap").await.is_none());
    assert!(story.object("role", "erin-self").await.is_none());
    assert_eq!(story.can_i("list", "secrets", "prod").await, "no");
    assert!(!story.erin_reads().await);
    // Grant records are sealed into the hash chain like any record.
    let verified = std::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .args(["audit", "verify"])
        .arg(jitgate.audit_path())
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    // The Secret's data never reaches a record.
    assert!(
        !std::fs::read_to_string(jitgate.audit_path())
            .unwrap()
            .contains("canary-zsp-rbac")
    );
    jitgate.stop().await;
}

/// The grant records of approval `key`, as `(action, objects)`.
fn grant_records(jitgate: &Harness, key: &str) -> Vec<(String, String)> {
    let id = format!("jitgate-approvals/{key}");
    jitgate
        .records()
        .into_iter()
        .filter(|r| r["event"] == "grant" && r["approval"] == id.as_str())
        .map(|r| {
            let s = |f: &str| r[f].as_str().unwrap_or_default().to_string();
            (s("action"), s("objects"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolebinding_of_the_grants_name_that_jitgate_did_not_make_is_not_taken_for_its_own_on_a_real_api_server()
 {
    let Some((_work, story)) = story().await else {
        return;
    };
    // Someone who may create RoleBindings in prod (not erin) takes the name the next
    // approval's grant will have: a RoleBinding without jitgate's labels, to a Role of
    // their own, for dave. The name is a digest of the approval's id: anyone can work it out.
    let squat = jitgate::rbac::object_name("jitgate-approvals/erin-squat");
    let theirs = role_and_binding("theirs", json!([]), &squat, "dave");
    story.api.ok("admin", &["apply", "-f", "-"], Some(theirs)).await;
    let (jitgate, mut reconciler) = story.jitgate_passes_by_hand(|_| {}).await;
    story.set("erin-squat", Some(entry(APPROVED, HOUR))).await;
    seen(&jitgate, "erin-squat").await;
    for _ in 0..2 {
        let (report, _) = reconciler.pass().await.unwrap();
        assert!(report.created.is_empty(), "{report:?}");
        assert!(report.conflicts.iter().any(|c| c.ends_with(&squat)), "{report:?}");
    }
    // erin holds nothing, and neither the audit trail nor an Event says she does: one
    // record, of the Role jitgate did create, and none of a RoleBinding.
    assert!(!story.erin_reads().await);
    assert_eq!(
        grant_records(&jitgate, "erin-squat"),
        [("created".to_string(), "Role".to_string())]
    );
    let events = story.events().await;
    assert!(!events.contains("GrantCreated"), "{events}");
    // Nor does `jitgate show`.
    let shown = story.show("erin-squat");
    assert!(
        shown.contains("grant:     not live: RoleBinding prod/"),
        "{shown}"
    );
    jitgate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_grant_stands_without_its_record_when_the_audit_log_cannot_be_written_on_a_real_api_server() {
    let Some((_work, story)) = story().await else {
        return;
    };
    // A full disk: no record can be written. The webhook way turns its grants into
    // audit_unavailable denials; the RBAC way must not leave a RoleBinding behind either.
    let (jitgate, mut reconciler) = story
        .jitgate_passes_by_hand(|cfg| cfg.audit_log = Some("/dev/full".into()))
        .await;
    story.set("erin-unrecorded", Some(entry(APPROVED, HOUR))).await;
    seen(&jitgate, "erin-unrecorded").await;
    let (report, _) = reconciler.pass().await.unwrap();
    assert!(report.created.is_empty() && report.failed > 0, "{report:?}");
    assert!(story.object("rolebinding", "erin-unrecorded").await.is_none());
    assert!(story.object("role", "erin-unrecorded").await.is_none());
    assert_eq!(story.can_i("get", "secret/db-pass", "prod").await, "no");

    // Nor does a grant that a replica killed before its record left standing: found
    // without a record once past the grace, and its standing not recordable either, its
    // RoleBinding is taken back.
    story.set("erin-crash", Some(entry(APPROVED, HOUR))).await;
    seen(&jitgate, "erin-crash").await;
    left_by_a_killed_replica(&story, &jitgate, "erin-crash").await;
    assert!(story.erin_reads().await);
    let mut later = story.replica_past_grace(&jitgate).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (report, _) = later.pass().await.unwrap();
        if !report.removed.is_empty() || Instant::now() >= deadline {
            assert!(report.found.is_empty(), "{report:?}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(story.object("rolebinding", "erin-crash").await.is_none());
    assert!(!story.erin_reads().await);
    assert_eq!(story.can_i("get", "secret/db-pass", "prod").await, "no");
    jitgate.stop().await;
}

/// What a replica killed between creating `key`'s grant and recording it leaves: its Role
/// and RoleBinding exactly as jitgate makes them, and no record of either.
async fn left_by_a_killed_replica(story: &Story, jitgate: &Harness, key: &str) {
    let state = &jitgate.running.as_ref().unwrap().state;
    let id = format!("jitgate-approvals/{key}");
    let snapshot = state.approvals.current().unwrap();
    let approval = snapshot.approvals.iter().find(|a| a.id == id).unwrap();
    let grant = jitgate::rbac::grant_of(
        approval,
        &state.policies.current(),
        &Arc::default(),
        "jitgate-system",
        jiff::Timestamp::now(),
    )
    .unwrap();
    let (role, binding) = jitgate::grants::objects(&grant);
    let list = json!({"apiVersion": "v1", "kind": "List", "items": [role, binding]});
    story
        .api
        .ok("admin", &["create", "-f", "-"], Some(list.to_string()))
        .await;
    assert!(grant_records(jitgate, key).is_empty());
}

/// `key`'s RoleBinding carries replica-b's mark, and a pass of `replica` past the grace
/// records nothing of it as found.
async fn marked_and_not_found_again(story: &Story, replica: &mut Reconciler, key: &str) {
    let binding = story.object("rolebinding", key).await.unwrap();
    assert_eq!(
        binding["metadata"]["annotations"][jitgate::rbac::RECORDED_ANNOTATION],
        "replica-b"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (report, _) = replica.pass().await.unwrap();
    assert!(report.found.is_empty(), "{report:?}");
}

/// Passes of `replica` until one records a grant found standing unrecorded (or 20 s).
async fn until_found(replica: &mut Reconciler) -> jitgate::grants::Report {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (report, _) = replica.pass().await.unwrap();
        if !report.found.is_empty() || Instant::now() >= deadline {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_left_standing_without_its_record_is_recorded_as_found_on_a_real_api_server() {
    let Some((_work, story)) = story().await else {
        return;
    };
    let (jitgate, mut reconciler) = story.jitgate_passes_by_hand(|_| {}).await;
    story.set("erin-crash", Some(entry(APPROVED, HOUR))).await;
    seen(&jitgate, "erin-crash").await;
    left_by_a_killed_replica(&story, &jitgate, "erin-crash").await;
    // erin holds the grant, and nothing in the audit trail says so.
    assert!(story.erin_reads().await);

    // Younger than the grace, it may be another replica's creation whose record is under
    // way: left alone.
    let (report, _) = reconciler.pass().await.unwrap();
    assert!(
        report.found.is_empty() && report.created.is_empty() && report.removed.is_empty(),
        "{report:?}"
    );
    assert!(grant_records(&jitgate, "erin-crash").is_empty());

    // Past it (a replica with a grace of a second), its standing is recorded, by that
    // replica, and the RoleBinding marked so; the grant is neither taken away nor made again.
    let mut later = story.replica_past_grace(&jitgate).await;
    let report = until_found(&mut later).await;
    assert_eq!(report.found.len(), 1, "{report:?}");
    assert!(
        report.created.is_empty() && report.removed.is_empty(),
        "{report:?}"
    );
    assert!(story.erin_reads().await);
    assert_eq!(
        grant_records(&jitgate, "erin-crash"),
        [("found".to_string(), "RoleBinding".to_string())]
    );
    let found = jitgate
        .records()
        .into_iter()
        .find(|r| r["event"] == "grant" && r["action"] == "found")
        .unwrap();
    assert_eq!(found["replica"], "replica-b");
    assert_eq!(found["subject"], "user:erin");
    let name = jitgate::rbac::object_name("jitgate-approvals/erin-crash");
    assert_eq!(found["binds"], format!("Role/{name}"));
    assert_eq!(found["why"], "not marked as recorded");
    // And people are told, as they were not when it was made: a Warning beside it.
    let events: serde_json::Value = serde_json::from_str(&story.events().await).unwrap();
    let told: Vec<&serde_json::Value> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "GrantFound")
        .collect();
    assert_eq!(told.len(), 1, "{events}");
    assert_eq!(told[0]["type"], "Warning");
    assert_eq!(told[0]["regarding"]["name"], name.as_str());
    let note = told[0]["note"].as_str().unwrap();
    assert!(
        note.contains("user:erin") && note.contains("jitgate-approvals/erin-crash"),
        "{note}"
    );
    // Once: a later pass finds it marked.
    marked_and_not_found_again(&story, &mut later, "erin-crash").await;
    assert_eq!(grant_records(&jitgate, "erin-crash").len(), 1);

    // A grant a replica makes is marked once its creation is recorded: never found.
    story.set("erin-fresh", Some(entry(APPROVED, HOUR))).await;
    seen(&jitgate, "erin-fresh").await;
    let (report, _) = later.pass().await.unwrap();
    assert_eq!(report.created.len(), 1, "{report:?}");
    marked_and_not_found_again(&story, &mut later, "erin-fresh").await;
    assert_eq!(
        grant_records(&jitgate, "erin-fresh"),
        [("created".to_string(), "Role,RoleBinding".to_string())]
    );
    jitgate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_found_grant_whose_mark_a_policy_refuses_is_recorded_once_by_its_replica_on_a_real_api_server() {
    let Some((_work, story)) = story().await else {
        return;
    };
    // A ValidatingAdmissionPolicy refuses every update of a RoleBinding: jitgate's mark too.
    let policy = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": "no-rolebinding-updates"},
            "spec": {"failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{"apiGroups": ["rbac.authorization.k8s.io"],
                    "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["rolebindings"]}]},
                "validations": [{"expression": "false", "message": "no updates of RoleBindings"}]}},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": "no-rolebinding-updates"},
            "spec": {"policyName": "no-rolebinding-updates", "validationActions": ["Deny"]}},
    ]});
    story
        .api
        .ok("admin", &["create", "-f", "-"], Some(policy.to_string()))
        .await;
    let probe = role_and_binding("probe", json!([]), "probe", "dave");
    story.api.ok("admin", &["apply", "-f", "-"], Some(probe)).await;
    eventually(Duration::from_secs(30), || async {
        story
            .kubectl(
                "admin",
                &[
                    "-n",
                    "prod",
                    "annotate",
                    "rolebinding",
                    "probe",
                    "x=y",
                    "--overwrite",
                ],
            )
            .await
            .is_err_and(|e| e.contains("no updates of RoleBindings"))
    })
    .await;

    let (jitgate, _) = story.jitgate_passes_by_hand(|_| {}).await;
    story.set("erin-crash", Some(entry(APPROVED, HOUR))).await;
    seen(&jitgate, "erin-crash").await;
    left_by_a_killed_replica(&story, &jitgate, "erin-crash").await;
    let mut later = story.replica_past_grace(&jitgate).await;
    let report = until_found(&mut later).await;
    assert_eq!(report.found.len(), 1, "{report:?}");
    let binding = story.object("rolebinding", "erin-crash").await.unwrap();
    assert!(binding["metadata"]["annotations"][jitgate::rbac::RECORDED_ANNOTATION].is_null());
    // Unmarked, it stands as it stood when recorded: this replica records it no more.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (report, _) = later.pass().await.unwrap();
        assert!(report.found.is_empty(), "{report:?}");
    }
    assert_eq!(
        grant_records(&jitgate, "erin-crash"),
        [("found".to_string(), "RoleBinding".to_string())]
    );
    assert!(story.erin_reads().await);
    jitgate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_end_with_their_approvals_while_the_audit_trail_is_stuck_on_a_real_api_server() {
    let Some((work, story)) = story().await else {
        return;
    };
    // The audit log is a FIFO that the test stops reading: once its buffer is full, every
    // write blocks, as with stdout's reader stopped in a pod.
    let fifo = work.path().join("audit.fifo");
    let opening = fifo_read_end(&fifo);
    let (jitgate, mut reconciler) = story
        .jitgate_passes_by_hand(|cfg| cfg.audit_log = Some(fifo.clone()))
        .await;
    let (go_on, gate) = std::sync::mpsc::channel::<()>();
    let read = Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let (mut fifo, read) = (opening.join().unwrap(), read.clone());
        std::thread::spawn(move || {
            use std::io::Read;
            let _ = gate.recv();
            let mut buf = [0u8; 65536];
            while let Ok(n) = fifo.read(&mut buf) {
                if n == 0 {
                    break;
                }
                read.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
    }
    // A pass that waits on the audit trail would never return: a watchdog, not a timing.
    let mut pass = async || {
        tokio::time::timeout(Duration::from_secs(120), reconciler.pass())
            .await
            .expect("a grants pass waited on the stuck audit trail")
            .unwrap()
            .0
    };

    // Two approvals of erin's read, granted while the trail takes records.
    for key in ["erin-one", "erin-two"] {
        story.set(key, Some(entry(APPROVED, HOUR))).await;
        seen(&jitgate, key).await;
    }
    assert_eq!(pass().await.created.len(), 2);
    assert!(story.erin_reads().await);

    // Requests until one is refused at its deadline: the trail takes no more records.
    let updates = UntilRefused::default();
    let clients = updates
        .send_until_refused(3000, || jitgate.conn(Proto::H1), update_review)
        .await;
    assert!(updates.refused(), "the audit log never filled");

    // A new approval gets no grant that stands: its record is not written in time, so
    // what was made of it is taken back.
    story.set("erin-three", Some(entry(APPROVED, HOUR))).await;
    seen(&jitgate, "erin-three").await;
    let report = pass().await;
    assert!(report.created.is_empty() && report.failed == 1, "{report:?}");
    assert!(story.object("rolebinding", "erin-three").await.is_none());
    assert!(story.object("role", "erin-three").await.is_none());

    // Both revoked: their grants end now, their records still waiting; and no grant is
    // made while they wait.
    for key in ["erin-one", "erin-two"] {
        story.set(key, None).await;
        seen_as(&jitgate, key, false).await;
    }
    let report = pass().await;
    assert_eq!(report.removed.len(), 4, "{report:?}");
    assert!(report.created.is_empty() && report.deferred == 1, "{report:?}");
    assert!(!story.erin_reads().await);
    assert_eq!(story.can_i("get", "secret/db-pass", "prod").await, "no");
    for key in ["erin-one", "erin-two", "erin-three"] {
        assert!(story.object("rolebinding", key).await.is_none(), "{key}");
    }

    // The trail takes records again: every grant record is written, in order, the third
    // approval's taking back after its late creation; then its grant is made again.
    go_on.send(()).unwrap();
    for client in clients {
        tokio::time::timeout(Duration::from_secs(60), client)
            .await
            .expect("a client waited for ever")
            .unwrap();
    }
    let grants_of = |key: &str| {
        let id = format!("jitgate-approvals/{key}");
        records_in(&read.lock().unwrap())
            .into_iter()
            .filter(|r| r["event"] == "grant" && r["approval"] == id.as_str())
            .map(|r| {
                let s = |f: &str| r[f].as_str().unwrap_or_default().to_string();
                (s("action"), s("objects"), s("why"))
            })
            .collect::<Vec<_>>()
    };
    let mut made_again = false;
    for _ in 0..60 {
        made_again = pass().await.created.len() == 1;
        if made_again {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(made_again, "the third grant was not made again");
    assert!(story.erin_reads().await);
    let line =
        |action: &str, objects: &str, why: &str| (action.to_string(), objects.to_string(), why.to_string());
    eventually(Duration::from_secs(30), || async {
        grants_of("erin-three").len() == 3
    })
    .await;
    assert_eq!(
        grants_of("erin-three"),
        [
            line("created", "Role,RoleBinding", ""),
            line(
                "removed",
                "Role,RoleBinding",
                "its record was not written in time"
            ),
            line("created", "Role,RoleBinding", ""),
        ]
    );
    for key in ["erin-one", "erin-two"] {
        assert_eq!(
            grants_of(key),
            [
                line("created", "Role,RoleBinding", ""),
                line("removed", "RoleBinding", "revoked"),
                line("removed", "Role", "revoked"),
            ],
            "{key}"
        );
    }
    jitgate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finalizer_someone_puts_on_a_grant_does_not_keep_it_past_its_revocation_on_a_real_api_server() {
    let Some((_work, story)) = story().await else {
        return;
    };
    // bob may edit RoleBindings and Roles in prod, and holds nothing of what erin's grant
    // gives: RBAC still lets him add a finalizer to them (a change only the garbage
    // collector's fields see is not checked for escalation).
    let edits = json!([{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"],
        "verbs": ["get", "patch"]}]);
    let bobs = role_and_binding("rbac-editor", edits, "bob-rbac-editor", "bob");
    story.api.ok("admin", &["apply", "-f", "-"], Some(bobs)).await;
    let (jitgate, mut reconciler) = story.jitgate_passes_by_hand(|_| {}).await;
    story.set("erin-kept", Some(entry(APPROVED, HOUR))).await;
    seen(&jitgate, "erin-kept").await;
    let (report, _) = reconciler.pass().await.unwrap();
    assert_eq!(report.created.len(), 1, "{report:?}");
    assert!(story.erin_reads().await);
    let name = jitgate::rbac::object_name("jitgate-approvals/erin-kept");
    let keep = r#"{"metadata":{"finalizers":["example.com/keep"]}}"#;
    for kind in ["rolebinding", "role"] {
        story
            .kubectl(
                "bob",
                &["-n", "prod", "patch", kind, &name, "--type=merge", "-p", keep],
            )
            .await
            .unwrap();
    }
    story.set("erin-kept", None).await;
    seen_as(&jitgate, "erin-kept", false).await;
    let (report, _) = reconciler.pass().await.unwrap();
    assert_eq!(report.removed.len(), 2, "{report:?}");
    // Removed means gone: erin is refused, and nothing of the grant is left.
    assert!(!story.erin_reads().await);
    assert_eq!(story.can_i("get", "secret/db-pass", "prod").await, "no");
    assert!(story.object("rolebinding", "erin-kept").await.is_none());
    assert!(story.object("role", "erin-kept").await.is_none());
    jitgate.stop().await;
}

/// erin holds nothing for `act` until its approval; then exactly it, and none of `beside`
/// (kubectl arguments, each refused as RBAC refuses); `list` says the grant is live and
/// until when; and she loses it within seconds of a revocation and of the expiry, and
/// across a restart of jitgate, each time with both objects gone. Returns the jitgate that
/// runs at the end.
async fn granted_exactly_until_it_ends(
    story: &Story,
    jitgate: Harness,
    act: Act,
    beside: &[&[&str]],
) -> Harness {
    let refused = story.erin_does(act, "prod", act.target()).await.unwrap_err();
    assert!(refused.contains("Forbidden"), "{refused}");
    let key = format!("erin-{act:?}").to_lowercase();
    for (k, text) in act.entries(&key, HOUR) {
        story.set(&k, Some(text)).await;
    }
    let took = story.until_act(act, true).await;
    println!("erin's {act:?} granted {took:?} after the approval was written");
    for args in beside {
        let refused = story.kubectl("erin", args).await.unwrap_err();
        assert!(refused.contains("Forbidden"), "erin may not {args:?}: {refused}");
    }
    // `jitgate list` says the grant is live, and until when.
    let listed = story.cli(&["list"]);
    let row = listed
        .lines()
        .find(|l| l.starts_with(&format!("jitgate-approvals/{key} ")))
        .unwrap_or_else(|| panic!("{listed}"));
    let until = story.object("rolebinding", &key).await.unwrap()["metadata"]["annotations"]
        [jitgate::rbac::EXPIRES_ANNOTATION]
        .as_str()
        .unwrap()
        .to_string();
    assert!(row.contains(&format!("live until {until}")), "{listed}");
    assert!(
        listed.starts_with("ID") && listed.lines().next().unwrap().contains("GRANT"),
        "{listed}"
    );

    // Revoked (the entry removed): refused again, the objects gone.
    let revoked = Instant::now();
    story.set(&key, None).await;
    story.until_act(act, false).await;
    println!(
        "erin's {act:?} refused {:?} after the revocation",
        revoked.elapsed()
    );
    assert!(story.objects_gone(&key).await);

    // Expired: refused again when the clock passes expiresAt, with no edit.
    let ttl = Duration::from_secs(20);
    let short = format!("{key}-short");
    for (k, text) in act.entries(&short, ttl) {
        story.set(&k, Some(text)).await;
    }
    let expiry = Instant::now() + ttl;
    story.until_act(act, true).await;
    eventually(Duration::from_secs(60), || async {
        story.erin_does(act, "prod", act.target()).await.is_err()
    })
    .await;
    println!(
        "erin's {act:?} refused {:?} after the approval's expiry",
        Instant::now().saturating_duration_since(expiry)
    );
    assert!(story.objects_gone(&short).await);

    // Revoked while jitgate is down: the replica that starts afterwards never saw the
    // approval, and removes its grant once it is older than the grace.
    let restart = format!("{key}-restart");
    for (k, text) in act.entries(&restart, HOUR) {
        story.set(&k, Some(text)).await;
    }
    story.until_act(act, true).await;
    jitgate.stop().await;
    story.set(&restart, None).await;
    assert!(
        story.erin_does(act, "prod", act.target()).await.is_ok(),
        "nothing removes it while jitgate is down"
    );
    let jitgate = story.jitgate(jiff::SignedDuration::from_secs(3)).await;
    let took = story.until_act(act, false).await;
    println!("erin's {act:?} refused {took:?} after a replica started again (grace 3 s)");
    assert!(story.objects_gone(&restart).await);
    jitgate
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_of_one_deployment_is_granted_exactly_and_ends_with_its_approval_on_a_real_api_server() {
    let Some((_work, story)) = story().await else {
        return;
    };
    let jitgate = story.jitgate(GRACE).await;
    let beside: &[&[&str]] = &[
        // Another Deployment's scale, the scale in another namespace, the Deployment
        // itself, a list, a delete.
        &[
            "-n",
            "prod",
            "patch",
            "deployment",
            "api",
            "--subresource=scale",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":2}}"#,
        ],
        &[
            "-n",
            "default",
            "patch",
            "deployment",
            "web",
            "--subresource=scale",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":2}}"#,
        ],
        &[
            "-n",
            "prod",
            "patch",
            "deployment",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":3}}"#,
        ],
        &["-n", "prod", "get", "deployments"],
        &["-n", "prod", "delete", "deployment", "web"],
    ];
    let jitgate = granted_exactly_until_it_ends(&story, jitgate, Act::Scale, beside).await;
    assert_eq!(story.api.replicas("web").await, "2");
    jitgate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_into_one_pod_is_granted_exactly_and_ends_with_its_approval_on_a_real_api_server() {
    let Some((_work, story)) = story().await else {
        return;
    };
    let jitgate = story.jitgate(GRACE).await;
    let beside: &[&[&str]] = &[
        // Another Pod, the Pod in another namespace, an attach, a list, a delete.
        &["-n", "prod", "exec", "other", "--", "true"],
        &["-n", "default", "exec", "shell", "--", "true"],
        &["-n", "prod", "attach", "shell"],
        &["-n", "prod", "get", "pods"],
        &["-n", "prod", "delete", "pod", "shell"],
    ];
    let jitgate = granted_exactly_until_it_ends(&story, jitgate, Act::Exec, beside).await;
    jitgate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_max_uses_scale_is_granted_for_its_use_and_removed_once_it_is_spent_on_a_real_api_server() {
    let Some((_work, story)) = story().await else {
        return;
    };
    let jitgate = story.jitgate_gating().await;
    // maxUses on a read: no admission webhook sees a read, so nothing would count them.
    // No Role, and `show` says why.
    story
        .set(
            "erin-read-once",
            Some(entry_for(
                WEB_SCALE,
                "verbs: [get]\nmaxUses: 1\napprovedBy: [alice]",
                HOUR,
            )),
        )
        .await;
    let shown = story.show("erin-read-once");
    assert!(
        shown.contains(
            "grant:     none: serve --grants rbac gives it no Role: it has maxUses and names reads (get)"
        ),
        "{shown}"
    );
    // One scale: the write once (maxUses: 1), and kubectl's read of the scale before it
    // in an approval of its own.
    story
        .set(
            "erin-web-read",
            Some(entry_for(WEB_SCALE, "verbs: [get]\napprovedBy: [alice]", HOUR)),
        )
        .await;
    story
        .set(
            "erin-web-once",
            Some(entry_for(
                WEB_SCALE,
                "operations: [UPDATE]\nmaxUses: 1\napprovedBy: [alice]",
                HOUR,
            )),
        )
        .await;
    let took = story.until_act(Act::Scale, true).await;
    let used = Instant::now();
    println!("erin's single scale granted {took:?} after the approval was written");
    assert!(story.object("rolebinding", "erin-read-once").await.is_none());
    // The second is refused: by the gate (the use is spent) or, once removed, by RBAC.
    let second = story.erin_does(Act::Scale, "prod", "web").await.unwrap_err();
    assert!(second.contains("use") || second.contains("Forbidden"), "{second}");
    let gone = eventually(Duration::from_secs(30), || story.objects_gone("erin-web-once")).await;
    println!(
        "the spent approval's Role and RoleBinding removed {:?} after its use ({gone:?} after the second was refused)",
        used.elapsed()
    );
    let refused = story.erin_does(Act::Scale, "prod", "web").await.unwrap_err();
    assert!(refused.contains("Forbidden"), "{refused}");
    assert!(story.object("rolebinding", "erin-web-read").await.is_some());
    let records = jitgate.records();
    assert!(
        records.iter().any(|r| r["event"] == "grant"
            && r["approval"] == "jitgate-approvals/erin-web-once"
            && r["why"] == "uses spent"),
        "{records:?}"
    );
    assert_eq!(story.api.replicas("web").await, "2");
    jitgate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_of_the_grants_name_that_jitgate_did_not_make_blocks_it_and_says_so_on_a_real_api_server() {
    let Some((_work, story)) = story().await else {
        return;
    };
    // Someone who may create Roles in prod takes the name the next approval's grant will
    // have: an empty Role without jitgate's labels. jitgate neither adopts nor changes it,
    // so the grant is blocked: that must not go unnoticed.
    let squat = jitgate::rbac::object_name("jitgate-approvals/erin-blocked");
    let theirs = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": squat, "namespace": "prod"}, "rules": []});
    story
        .api
        .ok("admin", &["apply", "-f", "-"], Some(theirs.to_string()))
        .await;
    let (jitgate, mut reconciler) = story.jitgate_passes_by_hand(|_| {}).await;
    story.set("erin-blocked", Some(entry(APPROVED, HOUR))).await;
    seen(&jitgate, "erin-blocked").await;
    let (report, _) = reconciler.pass().await.unwrap();
    assert!(report.created.is_empty(), "{report:?}");
    assert!(report.conflicts.iter().any(|c| c.ends_with(&squat)), "{report:?}");
    let role = story.object("role", "erin-blocked").await.unwrap();
    assert!(role["metadata"]["labels"].is_null(), "left as it was: {role}");
    assert!(story.object("rolebinding", "erin-blocked").await.is_none());
    assert!(!story.erin_reads().await);
    // `show` says what blocks it, and the metric counts it.
    let shown = story.show("erin-blocked");
    assert!(
        shown.contains(&format!(
            "grant:     not live: Role prod/{squat} is not jitgate's"
        )),
        "{shown}"
    );
    let mut c = jitgate.conn(Proto::H1).await;
    let metrics = String::from_utf8(
        c.send(hyper::Method::GET, "/metrics", None, Vec::new())
            .await
            .body,
    )
    .unwrap();
    assert!(metrics.contains("\njitgate_grants_blocked 1\n"), "{metrics}");
    jitgate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shortened_expiry_is_carried_by_the_grant_objects_and_ends_it_then_on_a_real_api_server() {
    let Some((_work, story)) = story().await else {
        return;
    };
    let jitgate = story.jitgate(GRACE).await;
    story.set("erin-shortened", Some(entry(APPROVED, HOUR))).await;
    story.until_read(true).await;
    // The objects carry the expiry: what a replica that sees no approvals (down, or stale)
    // removes them by. Shortened, they must carry the earlier one.
    let ttl = Duration::from_secs(20);
    let shortened = entry(APPROVED, ttl);
    let expires_at = jitgate::approvals::parse_entry("jitgate-approvals/erin-shortened", &shortened)
        .unwrap()
        .expires_at;
    story.set("erin-shortened", Some(shortened)).await;
    let expiry = Instant::now() + ttl;
    let took = eventually(Duration::from_secs(15), || async {
        story.expiry_of("role", "erin-shortened").await == Some(expires_at)
            && story.expiry_of("rolebinding", "erin-shortened").await == Some(expires_at)
    })
    .await;
    println!("the grant objects carry the shortened expiry {took:?} after the edit");
    assert!(story.erin_reads().await, "still granted until then");
    assert!(
        story
            .show("erin-shortened")
            .contains(&format!(", until {expires_at}")),
        "{}",
        story.show("erin-shortened")
    );
    eventually(Duration::from_secs(40), || async { !story.erin_reads().await }).await;
    println!(
        "erin refused {:?} after the shortened expiry",
        Instant::now().saturating_duration_since(expiry)
    );
    assert!(story.objects_gone("erin-shortened").await);
    jitgate.stop().await;
}

/// Grants configmaps and (of one type) Secrets in every namespace: `namespaces:` left out.
const EVERYWHERE: &str = r#"
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata:
  name: contractors-everywhere
spec:
  grant: true
  rules:
    - apiGroups: [""]
      resources: ["configmaps"]
      operations: ["UPDATE"]
    - apiGroups: [""]
      resources: ["secrets"]
      operations: ["CREATE"]
      objectTypes: ["kubernetes.io/tls"]
  approval:
    minApprovers: 1
    maxDuration: 2h
"#;

/// A granting policy without `namespaces:` covers jitgate's own namespace and the
/// cluster's, whose writes the admission gate never sees: a Role there would let erin
/// reset the count of `maxUses` uses in `jitgate-usage`, unchecked. And a rule with
/// `objectTypes`: the gate is sent only those types, a Role allows every type. Neither
/// gets a Role, and `show` says why; the same approval in prod does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_role_where_the_gate_never_sees_the_writes_nor_under_object_types_on_a_real_api_server() {
    let Some((_work, story)) = story_with(EVERYWHERE).await else {
        return;
    };
    let jitgate = story.jitgate(GRACE).await;
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let update = |namespace: &str, name: &str| {
        format!(
            "user: erin\nresource: configmaps\napiGroup: \"\"\nnamespace: {namespace}\nname: {name}\n\
             operations: [UPDATE]\nmaxUses: 1\napprovedBy: [alice]\nexpiresAt: \"{expires}\"\nreason: \"INC-7\"\n"
        )
    };
    story
        .set("erin-usage", Some(update("jitgate-system", "jitgate-usage")))
        .await;
    story
        .set("erin-kube", Some(update("kube-system", "kube-root-ca.crt")))
        .await;
    story
        .set(
            "erin-tls",
            Some(format!(
                "user: erin\nresource: secrets\napiGroup: \"\"\nnamespace: prod\noperations: [CREATE]\n\
                 approvedBy: [alice]\nexpiresAt: \"{expires}\"\nreason: \"INC-7\"\n"
            )),
        )
        .await;
    // The control: the same kind of approval in prod gets its Role.
    story.set("erin-prod", Some(update("prod", "settings"))).await;
    eventually(Duration::from_secs(30), || async {
        story.object("rolebinding", "erin-prod").await.is_some()
    })
    .await;
    assert_eq!(story.can_i("update", "configmaps/settings", "prod").await, "yes");
    // Passes after the control's have not made the others'.
    seen(&jitgate, "erin-tls").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (key, namespace) in [
        ("erin-usage", "jitgate-system"),
        ("erin-kube", "kube-system"),
        ("erin-tls", "prod"),
    ] {
        let name = jitgate::rbac::object_name(&format!("jitgate-approvals/{key}"));
        assert!(
            story
                .kubectl("admin", &["-n", namespace, "get", "role", &name])
                .await
                .is_err(),
            "{key}: a Role in {namespace}"
        );
    }
    assert_eq!(
        story
            .can_i("update", "configmaps/jitgate-usage", "jitgate-system")
            .await,
        "no"
    );
    assert_eq!(
        story
            .can_i("update", "configmaps/kube-root-ca.crt", "kube-system")
            .await,
        "no"
    );
    assert_eq!(story.can_i("create", "secrets", "prod").await, "no");
    let shown = story.show("erin-usage");
    assert!(
        shown.contains(
            "no Role: it is in namespace jitgate-system, whose requests never reach jitgate's webhooks"
        ),
        "{shown}"
    );
    let shown = story.show("erin-tls");
    assert!(
        shown.contains("no Role: a granting policy gates only some types"),
        "{shown}"
    );
    jitgate.stop().await;
}

/// RBAC has no subresource wildcard: a Role's `pods/*` allows neither `pods/exec` nor
/// `pods/log` (so says a real v1.36 API server), so jitgate holding it could make no grant
/// under a policy granting `pods/*`, and would fail on each pass. `jitgate manifests
/// grants` renders nothing for such a policy, and says why; no kit needed.
#[test]
fn jitgate_manifests_grants_refuses_a_granting_policy_with_a_subresource_wildcard() {
    let work = tempfile::tempdir().unwrap();
    for (resource, ops) in [("pods/*", "CONNECT"), ("*/*", "UPDATE"), ("pods/exec", "CONNECT")] {
        let policy = POLICY.replace(
            "resources: [\"pods/exec\"]\n      operations: [\"CONNECT\"]",
            &format!("resources: [\"{resource}\"]\n      operations: [\"{ops}\"]"),
        );
        assert!(policy.contains(resource));
        std::fs::write(work.path().join("p.yaml"), policy).unwrap();
        let rendered = std::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
            .args(["manifests", "grants", "--policies"])
            .arg(work.path())
            .output()
            .unwrap();
        let (out, err) = (
            String::from_utf8_lossy(&rendered.stdout),
            String::from_utf8_lossy(&rendered.stderr),
        );
        if resource == "pods/exec" {
            assert!(rendered.status.success() && out.contains("pods/exec"), "{err}");
            continue;
        }
        assert!(!rendered.status.success(), "{resource}: {out}");
        assert!(out.is_empty(), "{resource}: rendered {out}");
        assert!(
            err.contains(&format!(
                "grants resource {resource:?}, and RBAC has no subresource wildcard"
            )),
            "{resource}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_labelled_rolebinding_made_by_hand_is_removed_and_its_record_says_whom_it_bound_on_a_real_api_server()
 {
    let Some((_work, story)) = story().await else {
        return;
    };
    // Someone who may create RoleBindings in prod makes one that looks like a grant (the
    // grants' labels, no approval annotation), binding a Role of theirs to dave and to a
    // ServiceAccount of another namespace.
    let (key, value) = jitgate::rbac::MANAGED_BY;
    let labels = json!({key: value, jitgate::rbac::GRANT_LABEL: "by-hand"});
    let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "by-hand", "namespace": "prod"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "by-hand", "namespace": "prod", "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "by-hand"},
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "dave"},
                {"kind": "ServiceAccount", "name": "builder", "namespace": "ci"}]},
    ]});
    story
        .api
        .ok("admin", &["create", "-f", "-"], Some(objects.to_string()))
        .await;
    let (jitgate, _reconciler) = story.jitgate_passes_by_hand(|_| {}).await;
    // Past the grace, a pass takes it away as granted by no approval, and its record says
    // whom it bound and to what, which is all the audit trail will ever hold of it.
    let mut later = story.replica_past_grace(&jitgate).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let removal = loop {
        let _ = later.pass().await.unwrap();
        let found = jitgate
            .records()
            .into_iter()
            .find(|r| r["event"] == "grant" && r["action"] == "removed" && r["name"] == "by-hand");
        if let Some(r) = found {
            break r;
        }
        assert!(Instant::now() < deadline, "{:?}", jitgate.records());
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let gone = story
        .kubectl(
            "admin",
            &["-n", "prod", "get", "rolebinding", "by-hand", "-o", "json"],
        )
        .await;
    assert!(gone.is_err(), "{gone:?}");
    assert_eq!(removal["why"], "not granted", "{removal}");
    assert!(removal.get("approval").is_none_or(|a| a.is_null()), "{removal}");
    assert_eq!(removal["objects"], "RoleBinding", "{removal}");
    assert_eq!(removal["binds"], "Role/by-hand", "{removal}");
    assert_eq!(
        removal["subject"], "user:system:serviceaccount:ci:builder,user:dave",
        "{removal}"
    );
    jitgate.stop().await;
}
