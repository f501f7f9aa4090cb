//! Against a real kube-apiserver (v1.36, the realk8s kit of the project's shared material): the project's own rendered
//! ValidatingWebhookConfiguration, installed as `jitgate manifests webhook` prints it (its
//! rules, namespaceSelector and matchConditions unchanged; only `clientConfig` points at a
//! jitgate on loopback), closes the side doors to Pods for a person with ordinary rights
//! in prod, opens each with an approval, and lets the control plane's controllers through
//! without ever asking jitgate.
//!
//! The kit is found through `KUBE_APISERVER_KIT` (the realk8s directory); without it these
//! tests say so and pass. `.ci/run` sets it. One API server serves every story, so the
//! binary starts it once (about 10 s).

use crate::support::*;
use base64::Engine;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// A kube-apiserver started by the kit's `start.sh`, stopped by its `stop.sh` when this
/// is dropped, also when a story fails.
pub(crate) struct ApiServer {
    kit: PathBuf,
    dir: tempfile::TempDir,
}

impl ApiServer {
    fn start(kit: &Path) -> ApiServer {
        ApiServer::start_with(kit, &[])
    }

    /// Starts it with these extra kube-apiserver flags (`--authorization-config=FILE`).
    ///
    /// Tried up to three times, each in a new directory: the kit picks its ports by binding
    /// and releasing them, so a test beside it that binds one in between leaves etcd or the
    /// API server without its port (seen once in CI: "kube-apiserver never became ready",
    /// etcd's port refused). Each failure is printed; the third fails the story.
    pub(crate) fn start_with(kit: &Path, flags: &[&str]) -> ApiServer {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let dir = tempfile::tempdir().unwrap();
            let out = std::process::Command::new(kit.join("start.sh"))
                .arg(dir.path())
                .args(flags)
                .output()
                .expect("start.sh runs");
            // Stopped by its drop if it failed, so that a retry starts from nothing.
            let server = ApiServer {
                kit: kit.to_path_buf(),
                dir,
            };
            let why = format!(
                "start.sh failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success() || attempt < ATTEMPTS, "{why}");
            if out.status.success() {
                return server;
            }
            eprintln!("attempt {attempt} of {ATTEMPTS}: {why}");
        }
        unreachable!("the last attempt returns or fails the story")
    }

    /// Starts it with the authorizer chain `jitgate manifests authorization` renders from
    /// `policies` (Node, jitgate, RBAC), its jitgate webhook at `addr` trusting `ca_pem`;
    /// its files go in `work`.
    pub(crate) fn with_authorizer(
        kit: &Path,
        policies: &Path,
        addr: std::net::SocketAddr,
        ca_pem: &str,
        work: &Path,
    ) -> ApiServer {
        let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
        let webhook_kubeconfig = work.join("webhook-kubeconfig.yaml");
        std::fs::write(
            &webhook_kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: jitgate, cluster: {{server: \"https://{addr}/authorize\", certificate-authority-data: {ca}}}}}]\nusers: [{{name: api-server, user: {{}}}}]\ncontexts: [{{name: jitgate, context: {{cluster: jitgate, user: api-server}}}}]\ncurrent-context: jitgate\n"
            ),
        )
        .unwrap();
        let rendered = std::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
            .args(["manifests", "authorization", "--policies"])
            .arg(policies)
            .output()
            .unwrap();
        assert!(rendered.status.success());
        let authorization = String::from_utf8(rendered.stdout).unwrap().replace(
            jitgate::manifests::authorization::KUBECONFIG_PATH,
            &webhook_kubeconfig.display().to_string(),
        );
        let config = work.join("authorization-config.yaml");
        std::fs::write(&config, authorization).unwrap();
        ApiServer::start_with(kit, &[&format!("--authorization-config={}", config.display())])
    }

    pub(crate) fn kubeconfig(&self, user: &str) -> PathBuf {
        self.dir.path().join(format!("kubeconfig-{user}"))
    }

    /// Runs kubectl as `user` (`admin` for the cluster admin), off the runtime's threads
    /// so that jitgate keeps answering the API server meanwhile.
    pub(crate) async fn kubectl(&self, user: &str, args: &[&str], stdin: Option<String>) -> Output {
        let mut cmd = std::process::Command::new("kubectl");
        cmd.arg("--kubeconfig").arg(self.kubeconfig(user)).args(args);
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            use std::process::Stdio;
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().expect("kubectl is on the PATH");
            let mut input = child.stdin.take().unwrap();
            input.write_all(stdin.unwrap_or_default().as_bytes()).unwrap();
            drop(input);
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap()
    }

    /// kubectl as `user`, which must succeed.
    pub(crate) async fn ok(&self, user: &str, args: &[&str], stdin: Option<String>) -> String {
        let out = self.kubectl(user, args, stdin).await;
        assert!(
            out.status.success(),
            "kubectl {args:?} as {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The replicas of Deployment prod/`name`, as the admin reads them.
    pub(crate) async fn replicas(&self, name: &str) -> String {
        let jsonpath = "jsonpath={.spec.replicas}";
        self.ok(
            "admin",
            &["-n", "prod", "get", "deployment", name, "-o", jsonpath],
            None,
        )
        .await
    }

    /// `user` merges `data` into the approvals ConfigMap jitgate-approvals, as kubectl
    /// does (a key whose value is null is removed).
    pub(crate) async fn patch_approvals(&self, user: &str, data: &Value) -> Result<(), String> {
        let patch = json!({ "data": data }).to_string();
        let args = [
            "-n",
            "jitgate-system",
            "patch",
            "configmap",
            "jitgate-approvals",
            "--type=merge",
            "-p",
            &patch,
        ];
        outcome(&self.kubectl(user, &args, None).await)
    }

    /// `manifest` created in prod by `user`.
    async fn create(&self, user: &str, extra: &[&str], manifest: &Value) -> Result<(), String> {
        let mut args = vec!["-n", "prod", "create", "-f", "-"];
        args.extend_from_slice(extra);
        outcome(&self.kubectl(user, &args, Some(manifest.to_string())).await)
    }
}

/// Where a jitgate following the API server through `kubeconfig` finds its approvals:
/// the labelled ConfigMaps of jitgate-system, uses counted in jitgate-usage.
pub(crate) fn approvals_source(kubeconfig: PathBuf) -> jitgate::sync::cluster::ClusterSource {
    jitgate::sync::cluster::ClusterSource {
        namespace: "jitgate-system".into(),
        selector: "jitgate.dev/approvals=true".into(),
        kubeconfig: Some(kubeconfig),
        usage_configmap: "jitgate-usage".into(),
    }
}

/// kubectl's outcome: done, or what it printed on stderr when refused.
pub(crate) fn outcome(out: &Output) -> Result<(), String> {
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new(self.kit.join("stop.sh"))
            .arg(self.dir.path())
            .status();
    }
}

/// The kit, or `None` (said plainly) when `KUBE_APISERVER_KIT` is not set.
pub(crate) fn kit() -> Option<PathBuf> {
    match std::env::var_os("KUBE_APISERVER_KIT") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            println!(
                "KUBE_APISERVER_KIT is not set: the real kube-apiserver stories (tests/it/realk8s.rs, zsp.rs, impersonation.rs) did not run \
                 (set it to the realk8s kit's directory; .ci/run does, from the shared material beside the clone)"
            );
            None
        }
    }
}

/// The project's ValidatingWebhookConfiguration as `jitgate manifests webhook` prints it,
/// with every webhook's Service replaced by a URL to the loopback jitgate that trusts
/// `ca_pem`. Nothing else changes: rules, selectors and matchConditions stay as rendered.
pub(crate) fn webhook_configuration(addr: std::net::SocketAddr, ca_pem: &str) -> Value {
    webhook_configuration_of(Path::new("policies"), addr, ca_pem)
}

/// The same, rendered from the policies in `policies`.
pub(crate) fn webhook_configuration_of(policies: &Path, addr: std::net::SocketAddr, ca_pem: &str) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .args(["manifests", "webhook", "--policies"])
        .arg(Path::new(REPO).join(policies))
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut vwc: Value = serde_saphyr::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    for webhook in vwc["webhooks"].as_array_mut().unwrap() {
        let service = &webhook["clientConfig"]["service"];
        assert_eq!(service["path"], "/validate", "{webhook}");
        webhook["clientConfig"] = json!({"url": format!("https://{addr}/validate"), "caBundle": ca});
    }
    vwc
}

/// bob's rights in prod, as a namespace `edit` role gives them (the kit has no
/// controller-manager to aggregate the `edit` ClusterRole, so they are written out).
fn bobs_rights() -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "edit", "namespace": "prod"},
         "rules": [{"apiGroups": ["", "apps", "batch"], "resources": ["*"], "verbs": ["*"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "bob-edit", "namespace": "prod"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "edit"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]}
    ]})
}

fn pod_spec(image: &str) -> Value {
    json!({"containers": [{"name": "app", "image": image}], "automountServiceAccountToken": false})
}

fn template(image: &str) -> Value {
    json!({"metadata": {"labels": {"app": "x"}}, "spec": pod_spec(image)})
}

fn job(name: &str) -> Value {
    let mut spec = template("attacker/any:1");
    spec["spec"]["restartPolicy"] = "Never".into();
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": {"template": spec}})
}

fn deployment(name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template("attacker/any:1")}})
}

/// A `kind` that makes Pods from a template, as its API wants it.
fn pod_maker(kind: &str) -> Value {
    let selector = json!({"matchLabels": {"app": "x"}});
    let (api_version, spec) = match kind {
        "CronJob" => (
            "batch/v1",
            json!({"schedule": "* * * * *", "jobTemplate": {"spec": job("x")["spec"]}}),
        ),
        "ReplicationController" => (
            "v1",
            json!({"selector": {"app": "x"}, "template": template("attacker/any:1")}),
        ),
        "StatefulSet" => (
            "apps/v1",
            json!({"selector": selector, "serviceName": "x", "template": template("attacker/any:1")}),
        ),
        _ => (
            "apps/v1",
            json!({"selector": selector, "template": template("attacker/any:1")}),
        ),
    };
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}, "spec": spec})
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": pod_spec("nginx:1")})
}

fn secret(name: &str, ty: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": ty,
        "metadata": {"name": name, "annotations": {"kubernetes.io/service-account.name": "default"}}})
}

/// An approval for bob, approved by alice, of `operation` on `resource` `name` in prod.
fn grant(resource: &str, group: &str, name: &str, operation: &str) -> String {
    format!(
        "user: bob\nresource: {resource}\napiGroup: \"{group}\"\nnamespace: prod\nname: {name}\noperations: [{operation}]\nexpiresAt: \"{}\"\nreason: \"CHG-7: release\"\napprovedBy: [alice]\n",
        in_mins(30)
    )
}

/// Asserts that kubectl's error is jitgate's denial through the gate webhook, naming the
/// policy that gates it.
fn denied_by_jitgate(result: Result<(), String>, what: &str, policy: &str) {
    let Err(err) = result else {
        panic!("{what} was allowed without an approval");
    };
    assert!(
        err.contains("admission webhook \"gate.jitgate.dev\" denied the request"),
        "{err}"
    );
    assert!(err.contains(policy), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_doors_to_pods_are_closed_by_the_shipped_webhook_on_a_real_api_server_and_controllers_never_reach_jitgate()
 {
    let Some(kit) = kit() else { return };
    let jitgate = Harness::start(&approvals_manifest(&[])).await;
    let api = ApiServer::start(&kit);

    // bob's rights and the `default` service account that pods need (no controller-manager
    // makes it here), before the gate: prod-rbac gates the cluster admin's RoleBinding too.
    // Then the webhook as rendered.
    api.ok("admin", &["apply", "-f", "-"], Some(bobs_rights().to_string()))
        .await;
    api.ok(
        "admin",
        &["-n", "prod", "create", "serviceaccount", "default"],
        None,
    )
    .await;
    let vwc = webhook_configuration(jitgate.addr(), &jitgate.certs.ca_pem);
    api.ok("admin", &["apply", "-f", "-"], Some(vwc.to_string()))
        .await;
    // The API server loads webhook configurations asynchronously: wait until a dry run of
    // a RoleBinding in prod (gated by prod-rbac, for the admin too) reaches jitgate.
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "probe"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "erin"}]});
    eventually(Duration::from_secs(30), || async {
        api.create("admin", &["--dry-run=server"], &binding)
            .await
            .is_err_and(|e| e.contains("gate.jitgate.dev"))
    })
    .await;

    // The controllers creating Pods, a Job and a ReplicaSet in prod are allowed, and
    // jitgate is never asked: the matchConditions keep them away.
    let before = jitgate.records().len();
    // Each under its own service account, with its bootstrap RBAC role, as
    // kube-controller-manager runs them with --use-service-account-credentials.
    let replica_set = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-7d4b9c"},
        "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template("nginx:1")}});
    for (user, manifest) in [
        ("system:serviceaccount:kube-system:job-controller", pod("web")),
        (
            "system:serviceaccount:kube-system:cronjob-controller",
            job("nightly-29123"),
        ),
        (
            "system:serviceaccount:kube-system:deployment-controller",
            replica_set,
        ),
        (
            "system:serviceaccount:kube-system:replicaset-controller",
            pod("web-7d4b9c-x2x7q"),
        ),
    ] {
        let result = api.create("admin", &["--as", user], &manifest).await;
        assert_eq!(result, Ok(()), "{user}");
    }
    assert_eq!(
        jitgate.records().len(),
        before,
        "a controller's request reached jitgate: {:?}",
        &jitgate.records()[before..]
    );

    // bob, with edit rights in prod and no approval: every door is shut by jitgate.
    denied_by_jitgate(
        api.create("bob", &[], &job("jb")).await,
        "bob's Job in prod",
        "prod-workloads",
    );
    denied_by_jitgate(
        api.create("bob", &[], &deployment("db")).await,
        "bob's Deployment in prod",
        "prod-workloads",
    );
    // Every other kind that makes Pods, as the real API server admits it.
    for kind in [
        "ReplicaSet",
        "StatefulSet",
        "DaemonSet",
        "CronJob",
        "ReplicationController",
    ] {
        denied_by_jitgate(
            api.create("bob", &[], &pod_maker(kind)).await,
            &format!("bob's {kind} in prod"),
            "prod-workloads",
        );
    }
    // A cloud identity for the workloads' service account.
    let annotate = [
        "-n",
        "prod",
        "annotate",
        "serviceaccount",
        "default",
        "eks.amazonaws.com/role-arn=arn:aws:iam::1:role/admin",
    ];
    let out = api.kubectl("bob", &annotate, None).await;
    denied_by_jitgate(outcome(&out), "bob's service account annotation", "prod-tokens");
    denied_by_jitgate(
        api.create(
            "bob",
            &[],
            &secret("sa-token", "kubernetes.io/service-account-token"),
        )
        .await,
        "bob's service-account-token Secret in prod",
        "prod-tokens",
    );
    let set_image = ["-n", "prod", "set", "image", "pod/web", "app=attacker/any:1"];
    let out = api.kubectl("bob", &set_image, None).await;
    let result = outcome(&out);
    denied_by_jitgate(
        result,
        "bob's new image for a running Pod in prod",
        "prod-pod-update",
    );
    for (resource, name) in [
        ("jobs", "jb"),
        ("deployments", "db"),
        ("secrets", "sa-token"),
        ("pods", "web"),
    ] {
        let record = jitgate
            .records()
            .into_iter()
            .rev()
            .find(|r| r["user"] == "bob" && r["resource"] == resource && r["name"] == name)
            .unwrap_or_else(|| panic!("no record of bob's {resource}/{name}"));
        assert_eq!(record["reason"], "no_approval", "{record}");
        assert_eq!(record["allowed"], false, "{record}");
    }
    // The API server's proxies arrive as CONNECT, before it looks for the pod, service or
    // node: to bob's pods and services in prod, and to any node's kubelet (cluster-scoped,
    // gated for the cluster admin too).
    for (user, path, what, policy) in [
        (
            "bob",
            "/api/v1/namespaces/prod/pods/web:8080/proxy/",
            "bob's pods/proxy",
            "prod-pod-access",
        ),
        (
            "bob",
            "/api/v1/namespaces/prod/services/web:80/proxy/",
            "bob's services/proxy",
            "prod-pod-access",
        ),
        (
            "admin",
            "/api/v1/nodes/worker-1/proxy/pods",
            "the admin's nodes/proxy",
            "node-proxy",
        ),
    ] {
        let out = api.kubectl(user, &["get", "--raw", path], None).await;
        let result = outcome(&out);
        denied_by_jitgate(result, what, policy);
    }

    // kubectl debug adds an ephemeral container: an UPDATE of pods/ephemeralcontainers.
    let debug = ["-n", "prod", "debug", "web", "--image=busybox", "--attach=false"];
    let out = api.kubectl("bob", &debug, None).await;
    let result = outcome(&out);
    denied_by_jitgate(result, "bob's ephemeral container", "prod-pod-access");

    // An Opaque Secret is not a token: the matchConditions (object.type, as the real API
    // server evaluates it) do not send it, and bob creates it.
    let before = jitgate.records().len();
    assert_eq!(api.create("bob", &[], &secret("config", "Opaque")).await, Ok(()));
    assert_eq!(
        jitgate.records().len(),
        before,
        "an Opaque Secret reached jitgate"
    );

    // With approvals in jitgate's approvals, each is allowed.
    jitgate.write_approvals(&approvals_manifest(&[
        ("bob-job", &grant("jobs", "batch", "jb", "CREATE")),
        ("bob-deploy", &grant("deployments", "apps", "db", "CREATE")),
        ("bob-token", &grant("secrets", "", "sa-token", "CREATE")),
        ("bob-image", &grant("pods", "", "web", "UPDATE")),
    ]));
    eventually(Duration::from_secs(30), || async {
        api.create("bob", &["--dry-run=server"], &job("jb")).await.is_ok()
    })
    .await;
    assert_eq!(api.create("bob", &[], &job("jb")).await, Ok(()));
    assert_eq!(api.create("bob", &[], &deployment("db")).await, Ok(()));
    assert_eq!(
        api.create(
            "bob",
            &[],
            &secret("sa-token", "kubernetes.io/service-account-token")
        )
        .await,
        Ok(())
    );
    api.ok("bob", &set_image, None).await;
    let image = api
        .ok(
            "admin",
            &[
                "-n",
                "prod",
                "get",
                "pod",
                "web",
                "-o",
                "jsonpath={.spec.containers[0].image}",
            ],
            None,
        )
        .await;
    assert_eq!(image, "attacker/any:1");
    let approved = jitgate
        .records()
        .into_iter()
        .filter(|r| r["user"] == "bob" && r["reason"] == "approved" && r["dryRun"] != true)
        .count();
    assert_eq!(approved, 4, "{:?}", jitgate.records());

    jitgate.stop().await;
}
