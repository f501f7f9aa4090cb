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
//! The approvals are written into the ConfigMap by the cluster admin (no admission webhook
//! here: the ledger's own stories are in `zsp.rs` and `ledger.rs`), so what stands between
//! an entry and a Role is the reconciler's own use of `decide`.
//!
//! Like `realk8s`, it finds the kit through `KUBE_APISERVER_KIT`, and says so and passes
//! without it.

use crate::realk8s::{ApiServer, kit, outcome};
use crate::support::*;
use jitgate::approvals::{ApprovalStore, ConfigMapRef, Snapshot};
use jitgate::grants::{Reconciler, plan::GRACE};
use jitgate::sync::cluster::ClusterSource;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Approvals under it grant a get of Secrets in prod, and nothing else.
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
  namespaces: ["prod"]
  approval:
    minApprovers: 1
    maxDuration: 2h
"#;

fn cluster_objects() -> Value {
    let secret = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "prod"},
            "stringData": {"password": "canary-zsp-rbac"}})
    };
    json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "jitgate-approvals", "namespace": "jitgate-system",
            "labels": {"jitgate.dev/approvals": "true"}}, "data": {}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "jitgate-usage", "namespace": "jitgate-system"}, "data": {}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "jitgate-policies", "namespace": "jitgate-system"},
            "data": {"contractors-secrets.yaml": POLICY}},
        secret("db-pass"),
        secret("db-other"),
    ]})
}

/// erin's entry for `db-pass`: `lines` say what and who approved; it expires in `ttl`.
fn entry(lines: &str, ttl: Duration) -> String {
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::try_from(ttl).unwrap();
    format!(
        "user: erin\nresource: secrets\napiGroup: \"\"\nnamespace: prod\nname: db-pass\n{lines}\nexpiresAt: \"{expires}\"\nreason: \"INC-7: contractor on call\"\n"
    )
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
        let shown = std::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
            .args(["show", key, "--kubeconfig"])
            .arg(self.api.kubeconfig("admin"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&shown.stdout).into_owned()
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
            cfg.cluster = Some(ClusterSource {
                namespace: "jitgate-system".into(),
                selector: "jitgate.dev/approvals=true".into(),
                kubeconfig: Some(kubeconfig),
                usage_configmap: "jitgate-usage".into(),
            });
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
    let kit = kit()?;
    let work = tempfile::tempdir().unwrap();
    let policies = work.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("contractors-secrets.yaml"), POLICY).unwrap();
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
            Some(cluster_objects().to_string()),
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
        rendered.contains("namespace: prod")
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
