//! A small Kubernetes API server for tests: real HTTPS on 127.0.0.1, bearer-token auth, and
//! the parts of the API that watching and editing ConfigMaps use, answering in the shapes a
//! real kube-apiserver answered (`tests/fixtures/apiserver/`):
//!
//! - LIST `/api/v1/namespaces/{ns}/configmaps` with `labelSelector`, `fieldSelector`
//!   (`metadata.name=NAME` only), `limit`/`continue`, and `metadata.resourceVersion` on the
//!   list;
//! - GET of the Namespace `kube-system`, whose uid is this server's own (the cluster id
//!   jitgate reads);
//! - WATCH (the same path with `watch=true`) as a stream of JSON lines `{"type", "object"}`:
//!   ADDED, MODIFIED, DELETED (also when an object stops matching the selector), BOOKMARK
//!   when asked for, and, for a resourceVersion older than the history kept, a single
//!   ERROR event carrying a 410 `Expired` Status;
//! - GET, POST (create), PUT (update) and PATCH (merge patch) with `resourceVersion`
//!   preconditions answered by 409 Conflict (checked and written atomically), and DELETE;
//! - POST `selfsubjectreviews` (`kubectl auth whoami`);
//! - POST, LIST and WATCH (`watch=true`, until `timeoutSeconds`) of `events.k8s.io/v1`
//!   Events (a second Event of a name is refused with 409 AlreadyExists, as the API server
//!   refuses it);
//! - GET of Secrets (one, or the list) and of a pod's log, authorized as a kube-apiserver
//!   with `--authorization-config` does: an authorization webhook first (a
//!   SubjectAccessReview shaped as `tests/fixtures/authorization/` shows; denied →
//!   403 Forbidden with its reason, no opinion → the next authorizer), then a small RBAC
//!   (members of `dev-team` may read Secrets and logs).
//!
//! Tests change ConfigMaps directly, cut open watches, forget history (so resumed watches
//! get 410 and clients re-list), and take the server down and up again on the same port.
#![allow(dead_code)]

use super::Certs;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

pub const TOKEN: &str = "test-token-for-jitgate";

/// What a run of the `jitgate` binary printed, and its exit status.
pub struct Run {
    pub code: i32,
    pub out: String,
    pub err: String,
}

impl Run {
    /// The key of the entry `jitgate request` wrote (`requested jitgate-approvals/KEY: …`).
    pub fn requested_key(&self) -> String {
        self.out
            .split_whitespace()
            .nth(1)
            .and_then(|id| id.strip_prefix("jitgate-approvals/"))
            .and_then(|k| k.strip_suffix(':'))
            .unwrap_or_else(|| panic!("no key in: {}{}", self.out, self.err))
            .to_string()
    }
}

/// One change, kept so that a watch resuming from any later resourceVersion replays it.
#[derive(Clone)]
struct Change {
    rv: u64,
    old: Option<Value>,
    /// `None` for a deletion.
    new: Option<Value>,
}

/// Where the API server sends approvals ConfigMap writes for admission.
#[derive(Clone)]
struct Webhook {
    addr: SocketAddr,
    ca_pem: String,
}

struct Inner {
    /// Bearer token → (username, groups).
    users: HashMap<String, (String, Vec<String>)>,
    webhook: Option<Webhook>,
    /// Where writes of other ConfigMaps (outside jitgate-system) are sent for admission:
    /// the gate webhook, reached over one kept-alive connection, as the API server does.
    gate: Option<Webhook>,
    /// Where reads are sent for authorization before RBAC.
    authorizer: Option<Webhook>,
    /// Secrets, by (namespace, name): only ever read.
    secrets: BTreeMap<(String, String), Value>,
    /// Events, by (namespace, name), in the order written.
    events: Vec<((String, String), Value)>,
    rv: u64,
    objects: BTreeMap<(String, String), Value>,
    history: Vec<Change>,
    /// A watch from a resourceVersion below this gets 410 Gone.
    oldest_rv: u64,
    bookmark_every: Duration,
    requests: Vec<String>,
    /// Updates that will find the object changed by someone else just before they land.
    interference: u32,
    /// The uid of this cluster's kube-system Namespace.
    cluster_uid: String,
}

/// What handlers share. `latest` wakes watches on every change; `cuts` ends them.
#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    latest: watch::Sender<u64>,
    cuts: watch::Sender<u64>,
    garbage: watch::Sender<u64>,
    /// The gate webhook's kept-alive connection.
    gate_conn: Arc<tokio::sync::Mutex<Option<super::Conn>>>,
}

pub struct ApiServer {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    shared: Shared,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ApiServer {
    pub async fn start() -> ApiServer {
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs::new();
        std::fs::write(dir.path().join("ca.crt"), &certs.ca_pem).unwrap();
        std::fs::write(dir.path().join("tls.crt"), &certs.cert_pem).unwrap();
        std::fs::write(dir.path().join("tls.key"), &certs.key_pem).unwrap();
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner {
                users: HashMap::from([(
                    TOKEN.to_string(),
                    (
                        "system:serviceaccount:jitgate-system:jitgate".to_string(),
                        vec![
                            "system:serviceaccounts".to_string(),
                            "system:authenticated".to_string(),
                        ],
                    ),
                )]),
                webhook: None,
                gate: None,
                authorizer: None,
                secrets: BTreeMap::new(),
                events: Vec::new(),
                rv: 100,
                objects: BTreeMap::new(),
                history: Vec::new(),
                oldest_rv: 0,
                bookmark_every: Duration::from_millis(250),
                requests: Vec::new(),
                interference: 0,
                cluster_uid: super::unique_uid(),
            })),
            latest: watch::channel(100).0,
            cuts: watch::channel(0).0,
            garbage: watch::channel(0).0,
            gate_conn: Default::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut server = ApiServer {
            addr,
            dir,
            shared,
            stop: None,
            task: None,
        };
        server.serve(listener);
        server
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let tls =
            jitgate::tls::server_config(&self.dir.path().join("tls.crt"), &self.dir.path().join("tls.key"))
                .unwrap();
        let app = Router::new()
            .route(
                "/api/v1/namespaces/{ns}/configmaps",
                get(list_or_watch).post(create),
            )
            .route(
                "/api/v1/namespaces/{ns}/configmaps/{name}",
                get(get_one).put(replace).patch(patch).delete(delete),
            )
            .route(
                "/apis/events.k8s.io/v1/namespaces/{ns}/events",
                get(list_events).post(create_event),
            )
            .route("/api/v1/namespaces/{ns}", get(get_namespace))
            .route("/api/v1/namespaces/{ns}/secrets", get(list_secrets))
            .route("/api/v1/namespaces/{ns}/secrets/{name}", get(get_secret))
            .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log))
            .route(
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                axum::routing::post(whoami),
            )
            .layer(axum::middleware::from_fn_with_state(
                self.shared.clone(),
                authenticate,
            ))
            .with_state(self.shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        self.stop = Some(stop);
        self.task = Some(tokio::spawn(jitgate::server::serve(listener, tls, app, async {
            let _ = stopped.await;
        })));
    }

    /// This cluster's id as jitgate reads it: the uid of its kube-system Namespace.
    pub fn cluster_id(&self) -> String {
        self.shared.inner.lock().unwrap().cluster_uid.clone()
    }

    /// Where jitgate finds the approvals on this server: `jitgate-system`, the default
    /// selector, through [`ApiServer::kubeconfig`].
    pub fn source(&self) -> jitgate::sync::ClusterSource {
        jitgate::sync::ClusterSource {
            namespace: "jitgate-system".into(),
            selector: "jitgate.dev/approvals=true".into(),
            kubeconfig: Some(self.kubeconfig()),
            usage_configmap: "jitgate-usage".into(),
        }
    }

    /// A kubeconfig that reaches this server as a cluster would be reached.
    pub fn kubeconfig(&self) -> std::path::PathBuf {
        let path = self.dir.path().join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: https://{}\n    certificate-authority: {}\nusers:\n- name: jitgate\n  user:\n    token: {TOKEN}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: jitgate\n    namespace: jitgate-system\ncurrent-context: test\n",
            self.addr,
            self.dir.path().join("ca.crt").display()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Lets `token` authenticate as `username` with `groups`.
    pub fn add_user(&self, token: &str, username: &str, groups: &[&str]) {
        let groups = groups
            .iter()
            .map(|g| g.to_string())
            .chain(["system:authenticated".to_string()]);
        self.shared
            .inner
            .lock()
            .unwrap()
            .users
            .insert(token.to_string(), (username.to_string(), groups.collect()));
    }

    /// Sends every write of an approvals ConfigMap (labelled before or after) to this
    /// validating webhook first, as a ValidatingWebhookConfiguration with an objectSelector
    /// would; a denial refuses the write with the webhook's message.
    pub fn admit_with(&self, addr: SocketAddr, ca_pem: &str) {
        self.shared.inner.lock().unwrap().webhook = Some(Webhook {
            addr,
            ca_pem: ca_pem.to_string(),
        });
    }

    /// Sends every write of a ConfigMap outside jitgate-system to this gate webhook
    /// (`None`: to none), over one kept-alive HTTP/1.1 connection, as the API server calls
    /// a webhook Service.
    pub fn gate_with(&self, webhook: Option<(SocketAddr, &str)>) {
        self.shared.inner.lock().unwrap().gate = webhook.map(|(addr, ca_pem)| Webhook {
            addr,
            ca_pem: ca_pem.to_string(),
        });
    }

    /// Sends every read of Secrets and pod logs to this authorization webhook before RBAC,
    /// as an AuthorizationConfiguration with jitgate before RBAC would.
    pub fn authorize_with(&self, addr: SocketAddr, ca_pem: &str) {
        self.shared.inner.lock().unwrap().authorizer = Some(Webhook {
            addr,
            ca_pem: ca_pem.to_string(),
        });
    }

    /// The Events written so far, in order.
    pub fn events(&self) -> Vec<Value> {
        self.shared
            .inner
            .lock()
            .unwrap()
            .events
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// Stores a Secret with `data` (values base64 as in the API).
    pub fn add_secret(&self, ns: &str, name: &str, data: &[(&str, &str)]) {
        let data: BTreeMap<&str, &str> = data.iter().copied().collect();
        let object = json!({
            "kind": "Secret", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": ns}, "type": "Opaque", "data": data,
        });
        self.shared
            .inner
            .lock()
            .unwrap()
            .secrets
            .insert((ns.to_string(), name.to_string()), object);
    }

    /// A connection to this server as the user of `token`.
    pub async fn conn_as(&self, token: &str) -> super::Conn {
        let ca = std::fs::read_to_string(self.dir.path().join("ca.crt")).unwrap();
        let mut c = super::Conn::open(self.addr, &ca, super::Proto::H1).await.unwrap();
        c.bearer = Some(token.to_string());
        c
    }

    /// Creates or replaces a ConfigMap, bypassing admission (as a cluster's bootstrap would).
    pub fn apply(&self, ns: &str, name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) {
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        let data: BTreeMap<&str, &str> = data.iter().copied().collect();
        let object = json!({
            "kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "data": data,
        });
        self.shared.write(ns, name, Some(object));
    }

    /// An approvals ConfigMap (labelled) in `jitgate-system`.
    pub fn apply_approvals(&self, name: &str, data: &[(&str, &str)]) {
        self.apply("jitgate-system", name, &[("jitgate.dev/approvals", "true")], data);
    }

    pub fn delete(&self, ns: &str, name: &str) {
        self.shared.write(ns, name, None);
    }

    pub fn object(&self, ns: &str, name: &str) -> Option<Value> {
        let inner = self.shared.inner.lock().unwrap();
        inner.objects.get(&(ns.to_string(), name.to_string())).cloned()
    }

    /// Ends every open watch stream; clients resume from their last resourceVersion.
    pub fn cut_watches(&self) {
        self.shared.cuts.send_modify(|n| *n += 1);
    }

    /// Sends a line that is not JSON down every open watch stream, which stays open.
    pub fn garble_watches(&self) {
        self.shared.garbage.send_modify(|n| *n += 1);
    }

    /// Forgets all history and ends open watches: a client resuming from any earlier
    /// resourceVersion gets 410 Gone and must list again.
    pub fn compact(&self) {
        let rv = {
            let mut inner = self.shared.inner.lock().unwrap();
            // Like etcd compaction: history is gone, but the current state (and a list of
            // it) stays watchable from its resourceVersion.
            inner.rv += 1;
            inner.oldest_rv = inner.rv;
            inner.history.clear();
            inner.rv
        };
        self.shared.latest.send_replace(rv);
        self.cut_watches();
    }

    pub fn set_bookmark_interval(&self, every: Duration) {
        self.shared.inner.lock().unwrap().bookmark_every = every;
    }

    /// Stops serving: open watches end, and new connections are refused.
    pub async fn down(&mut self) {
        self.cut_watches();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    /// Serves again on the same address.
    pub async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    /// Makes the next `n` updates (PUT or PATCH) lose a race: another write lands on the
    /// object just before each, so a client that sent a resourceVersion gets 409 Conflict.
    pub fn interfere_with_next_updates(&self, n: u32) {
        self.shared.inner.lock().unwrap().interference = n;
    }

    /// A kubeconfig for the user of `token`, for tools run as that user.
    pub fn kubeconfig_as(&self, token: &str) -> std::path::PathBuf {
        let path = self.dir.path().join(format!("kubeconfig-{token}"));
        let text = std::fs::read_to_string(self.kubeconfig())
            .unwrap()
            .replace(TOKEN, token);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs `jitgate ARGS…` as the user of `token`, through a kubeconfig for this server
    /// (off the runtime, which serves the API server and jitgate meanwhile).
    pub async fn jitgate_as(&self, token: &str, args: &[&str]) -> Run {
        let kubeconfig = self.kubeconfig_as(token);
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
                .args(&args)
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        Run {
            code: out.status.code().unwrap(),
            out: String::from_utf8(out.stdout).unwrap(),
            err: String::from_utf8(out.stderr).unwrap(),
        }
    }

    /// Requests seen so far, as `METHOD path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().requests.clone()
    }
}

impl Shared {
    /// Stores a new version of an object (or deletes it), recording the change.
    fn write(&self, ns: &str, name: &str, object: Option<Value>) -> Option<Value> {
        self.write_if(ns, name, object, None)
            .unwrap_or_else(|_| unreachable!())
    }

    /// Stores a new version unless the object's resourceVersion is no longer `expected`
    /// (409 Conflict): checked and written under one lock, as etcd's compare-and-swap.
    fn write_if(
        &self,
        ns: &str,
        name: &str,
        object: Option<Value>,
        expected: Option<&str>,
    ) -> Result<Option<Value>, ApiError> {
        let mut inner = self.inner.lock().unwrap();
        if let Some(rv) = expected {
            let now = inner.objects.get(&(ns.to_string(), name.to_string()));
            if now.and_then(|o| o["metadata"]["resourceVersion"].as_str()) != Some(rv) {
                return Err(conflict(name));
            }
        }
        inner.rv += 1;
        let rv = inner.rv;
        let key = (ns.to_string(), name.to_string());
        let old = inner.objects.get(&key).cloned();
        let stored = object.map(|mut o| {
            let created = old
                .as_ref()
                .map(|o| o["metadata"]["creationTimestamp"].clone())
                .unwrap_or_else(|| json!(jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()));
            let uid = old
                .as_ref()
                .map(|o| o["metadata"]["uid"].clone())
                .unwrap_or_else(|| json!(format!("uid-{name}-{rv}")));
            let meta = &mut o["metadata"];
            meta["resourceVersion"] = json!(rv.to_string());
            meta["creationTimestamp"] = created;
            meta["uid"] = uid;
            meta["namespace"] = json!(ns);
            o
        });
        let change = match &stored {
            Some(o) => {
                inner.objects.insert(key, o.clone());
                Change {
                    rv,
                    old,
                    new: Some(o.clone()),
                }
            }
            None => {
                inner.objects.remove(&key);
                // A deleted object is reported with the deletion's resourceVersion.
                let old = old.map(|mut o| {
                    o["metadata"]["resourceVersion"] = json!(rv.to_string());
                    o
                });
                Change { rv, old, new: None }
            }
        };
        inner.history.push(change);
        drop(inner);
        self.latest.send_replace(rv);
        Ok(stored)
    }
}

async fn authenticate(
    State(shared): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let line = format!(
        "{} {}",
        request.method(),
        request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("")
    );
    shared.inner.lock().unwrap().requests.push(line);
    let user = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| shared.inner.lock().unwrap().users.get(token).cloned());
    let Some((username, groups)) = user else {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized".into());
    };
    let mut request = request;
    request.extensions_mut().insert(User { username, groups });
    next.run(request).await
}

/// `kubectl auth whoami`: the user the request was authenticated as.
async fn whoami(axum::Extension(user): axum::Extension<User>) -> Response {
    ok_json(
        StatusCode::CREATED,
        &json!({"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": {"username": user.username, "groups": user.groups}}}),
    )
}

/// Who a request was authenticated as.
#[derive(Clone)]
struct User {
    username: String,
    groups: Vec<String>,
}

/// An Event written by a client; a name taken is 409 AlreadyExists.
async fn create_event(State(shared): State<Shared>, Path(ns): Path<String>, body: Bytes) -> Response {
    let Ok(mut event) = serde_json::from_slice::<Value>(&body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON".into());
    };
    let name = event["metadata"]["name"].as_str().unwrap_or_default().to_string();
    for field in [
        "eventTime",
        "reportingController",
        "reportingInstance",
        "action",
        "reason",
    ] {
        if event.get(field).is_none_or(Value::is_null) {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("Event.events.k8s.io \"{name}\" is invalid: {field}: Required value"),
            );
        }
    }
    let mut inner = shared.inner.lock().unwrap();
    let key = (ns.clone(), name.clone());
    if inner.events.iter().any(|(k, _)| *k == key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("events.events.k8s.io \"{name}\" already exists"),
        );
    }
    event["metadata"]["namespace"] = ns.into();
    inner.events.push((key, event.clone()));
    ok_json(StatusCode::CREATED, &event)
}

/// `kubectl get events.events.k8s.io -n NS [--watch]`.
async fn list_events(
    State(shared): State<Shared>,
    Path(ns): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let timeout = q.get("timeoutSeconds").and_then(|t| t.parse().ok()).unwrap_or(30);
        let until = tokio::time::Instant::now() + Duration::from_secs(timeout);
        // Every Event of the namespace as ADDED, then each new one as it is written.
        let lines = futures::stream::unfold(0usize, move |sent| {
            let (shared, ns) = (shared.clone(), ns.clone());
            async move {
                loop {
                    let next = {
                        let inner = shared.inner.lock().unwrap();
                        inner
                            .events
                            .iter()
                            .filter(|((n, _), _)| *n == ns)
                            .nth(sent)
                            .map(|(_, e)| e.clone())
                    };
                    if let Some(event) = next {
                        let line = format!("{}\n", json!({"type": "ADDED", "object": event}));
                        return Some((Ok::<_, Infallible>(Bytes::from(line)), sent + 1));
                    }
                    if tokio::time::Instant::now() >= until {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(lines),
        )
            .into_response();
    }
    let items: Vec<Value> = shared
        .inner
        .lock()
        .unwrap()
        .events
        .iter()
        .filter(|((n, _), _)| *n == ns)
        .map(|(_, e)| e.clone())
        .collect();
    ok_json(
        StatusCode::OK,
        &json!({"kind": "EventList", "apiVersion": "events.k8s.io/v1", "metadata": {"resourceVersion": "1"}, "items": items}),
    )
}

/// `kubectl get secret NAME`.
async fn get_secret(
    State(shared): State<Shared>,
    axum::Extension(user): axum::Extension<User>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    if let Err(e) = authorize(&shared, &user, "get", "secrets", "", &ns, &name).await {
        return e.into_response();
    }
    let secret = shared
        .inner
        .lock()
        .unwrap()
        .secrets
        .get(&(ns, name.clone()))
        .cloned();
    match secret {
        Some(s) => ok_json(StatusCode::OK, &s),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("secrets \"{name}\" not found"),
        ),
    }
}

/// `kubectl get secrets`.
async fn list_secrets(
    State(shared): State<Shared>,
    axum::Extension(user): axum::Extension<User>,
    Path(ns): Path<String>,
) -> Response {
    if let Err(e) = authorize(&shared, &user, "list", "secrets", "", &ns, "").await {
        return e.into_response();
    }
    let items: Vec<Value> = shared
        .inner
        .lock()
        .unwrap()
        .secrets
        .iter()
        .filter(|((n, _), _)| *n == ns)
        .map(|(_, s)| s.clone())
        .collect();
    ok_json(
        StatusCode::OK,
        &json!({"kind": "SecretList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}),
    )
}

/// `kubectl logs POD`: every pod logs one line.
async fn pod_log(
    State(shared): State<Shared>,
    axum::Extension(user): axum::Extension<User>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    if let Err(e) = authorize(&shared, &user, "get", "pods", "log", &ns, &name).await {
        return e.into_response();
    }
    (StatusCode::OK, format!("{name}: started\n")).into_response()
}

/// Authorizes a read as kube-apiserver does with jitgate before RBAC: the webhook's
/// denial is final (403 with its reason after RBAC's words); no opinion goes on to RBAC;
/// a webhook that cannot be reached or answers an error is a 500 (failurePolicy Deny).
async fn authorize(
    shared: &Shared,
    user: &User,
    verb: &str,
    resource: &str,
    sub: &str,
    ns: &str,
    name: &str,
) -> Result<(), ApiError> {
    let full = if sub.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}/{sub}")
    };
    let forbidden = |reason: &str| {
        let object = if name.is_empty() {
            resource.to_string()
        } else {
            format!("{resource} \"{name}\"")
        };
        let mut message = format!(
            "{object} is forbidden: User \"{}\" cannot {verb} resource \"{full}\" in API group \"\" in the namespace \"{ns}\"",
            user.username
        );
        if !reason.is_empty() {
            message.push_str(": ");
            message.push_str(reason);
        }
        ApiError(StatusCode::FORBIDDEN, "Forbidden", message)
    };
    let authorizer = shared.inner.lock().unwrap().authorizer.clone();
    let mut reason = String::new();
    if let Some(webhook) = authorizer {
        let mut attributes = serde_json::Map::new();
        attributes.insert("namespace".into(), ns.into());
        attributes.insert("verb".into(), verb.into());
        attributes.insert("version".into(), "v1".into());
        attributes.insert("resource".into(), resource.into());
        if !sub.is_empty() {
            attributes.insert("subresource".into(), sub.into());
        }
        if !name.is_empty() {
            attributes.insert("name".into(), name.into());
        }
        let review = json!({
            "kind": "SubjectAccessReview", "apiVersion": "authorization.k8s.io/v1", "metadata": {},
            "spec": {"resourceAttributes": attributes, "user": user.username, "groups": user.groups,
                "uid": format!("uid-{}", user.username)},
            "status": {"allowed": false},
        });
        let failed = |why: String| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!(
                    "Internal error occurred: Post \"https://{}/authorize?timeout=3s\": {why}",
                    webhook.addr
                ),
            )
        };
        let mut c = super::Conn::open(webhook.addr, &webhook.ca_pem, super::Proto::H1)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut body = serde_json::to_vec(&review).unwrap();
        body.push(b'\n');
        let reply = c.authorize(&body).await;
        if reply.status != StatusCode::OK {
            return Err(failed(format!("HTTP {}", reply.status)));
        }
        let answer = reply.json();
        if answer["kind"] != "SubjectAccessReview" {
            return Err(failed("not a SubjectAccessReview".into()));
        }
        let s = &answer["status"];
        reason = s["reason"].as_str().unwrap_or("").to_string();
        if s["denied"] == true {
            return Err(forbidden(&reason));
        }
        if s["allowed"] == true {
            return Ok(());
        }
    }
    // RBAC: dev-team reads Secrets and logs.
    if user.groups.iter().any(|g| g == "dev-team") {
        Ok(())
    } else {
        Err(forbidden(&reason))
    }
}

/// Runs admission for a write, as the API server does: a validating webhook sees the
/// request with the user, the new object and the old one, and may refuse it.
async fn admit(
    shared: &Shared,
    user: &User,
    operation: &str,
    ns: &str,
    name: &str,
    old: Option<&Value>,
    new: Option<&Value>,
) -> Result<(), ApiError> {
    // As the shipped webhook configuration routes them: approvals ConfigMaps by their
    // label, the trusted signers' one by its name in jitgate-system.
    let labelled = |o: Option<&Value>| {
        o.is_some_and(|o| matches("jitgate.dev/approvals=true", o))
            || (ns == "jitgate-system" && name == "jitgate-signers")
    };
    let (webhook, gate) = {
        let inner = shared.inner.lock().unwrap();
        if labelled(old) || labelled(new) {
            (inner.webhook.clone(), false)
        } else if ns != "jitgate-system" {
            (inner.gate.clone(), true)
        } else {
            (None, false)
        }
    };
    let Some(webhook) = webhook else {
        return Ok(());
    };
    let hook = if gate {
        "gate.jitgate.dev"
    } else {
        "approvals.jitgate.dev"
    };
    let uid = super::unique_uid();
    let options = match operation {
        "CREATE" => "CreateOptions",
        "DELETE" => "DeleteOptions",
        _ => "UpdateOptions",
    };
    let options = json!({"kind": options, "apiVersion": "meta.k8s.io/v1"});
    let review = json!({
        "kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "resource": {"group": "", "version": "v1", "resource": "configmaps"},
            "requestKind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "requestResource": {"group": "", "version": "v1", "resource": "configmaps"},
            "name": name, "namespace": ns, "operation": operation,
            "userInfo": {"username": user.username, "groups": user.groups},
            "object": new, "oldObject": old, "dryRun": false, "options": options,
        }
    });
    let failed = |why: String| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("Internal error occurred: failed calling webhook \"{hook}\": {why}"),
        )
    };
    let reply = if gate {
        let mut pooled = shared.gate_conn.lock().await;
        if pooled.is_none() {
            *pooled = Some(
                super::Conn::open(webhook.addr, &webhook.ca_pem, super::Proto::H1)
                    .await
                    .map_err(|e| failed(e.to_string()))?,
            );
        }
        pooled.as_mut().unwrap().review(&review).await
    } else {
        let mut c = super::Conn::open(webhook.addr, &webhook.ca_pem, super::Proto::H1)
            .await
            .map_err(|e| failed(e.to_string()))?;
        c.review(&review).await
    };
    if reply.status != StatusCode::OK {
        return Err(failed(format!("HTTP {}", reply.status)));
    }
    let response = &reply.json()["response"];
    if response["uid"] != uid.as_str() {
        return Err(failed("wrong uid".into()));
    }
    if response["allowed"] == true {
        return Ok(());
    }
    let message = response["status"]["message"].as_str().unwrap_or("");
    Err(ApiError(
        StatusCode::FORBIDDEN,
        "Forbidden",
        format!("admission webhook \"{hook}\" denied the request: {message}"),
    ))
}

/// A Kubernetes `Status` error response.
fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
    });
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok_json(code: StatusCode, value: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// A field selector term, as [`selector_of`] carries it among the label terms.
const FIELD_NAME: &str = "field:metadata.name=";

/// The label selector of a query, with a field selector on the name as one more term.
fn selector_of(q: &HashMap<String, String>) -> String {
    let mut selector = q.get("labelSelector").cloned().unwrap_or_default();
    if let Some(fields) = q.get("fieldSelector") {
        for term in fields.split(',').filter(|t| !t.is_empty()) {
            let name = term
                .strip_prefix("metadata.name==")
                .or_else(|| term.strip_prefix("metadata.name="))
                .unwrap_or_else(|| panic!("field selector {term:?} is not supported here"));
            selector.push_str(&format!(",{FIELD_NAME}{name}"));
        }
    }
    selector
}

/// Equality-based label selectors: `a=b`, `a==b`, `a!=b`, `a`, `!a`, comma-separated.
fn matches(selector: &str, object: &Value) -> bool {
    let labels = &object["metadata"]["labels"];
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        if let Some(name) = term.strip_prefix(FIELD_NAME) {
            object["metadata"]["name"].as_str() == Some(name)
        } else if let Some((k, v)) = term.split_once("!=") {
            labels[k.trim()].as_str() != Some(v.trim())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            labels[k.trim()].as_str() == Some(v.trim())
        } else if let Some(k) = term.strip_prefix('!') {
            labels.get(k.trim()).is_none()
        } else {
            labels.get(term.trim()).is_some()
        }
    })
}

async fn list_or_watch(
    State(shared): State<Shared>,
    Path(ns): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let selector = selector_of(&q);
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        return watch_stream(shared, ns, selector, &q);
    }
    let inner = shared.inner.lock().unwrap();
    let mut items: Vec<Value> = inner
        .objects
        .iter()
        .filter(|((n, _), o)| *n == ns && matches(&selector, o))
        .map(|(_, o)| {
            // As a real server answers: list items carry no kind or apiVersion.
            let mut o = o.clone();
            if let Some(map) = o.as_object_mut() {
                map.remove("kind");
                map.remove("apiVersion");
            }
            o
        })
        .collect();
    let start: usize = q.get("continue").and_then(|c| c.parse().ok()).unwrap_or(0);
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let total = items.len();
    items = items.into_iter().skip(start).take(limit).collect();
    let mut metadata = json!({"resourceVersion": inner.rv.to_string()});
    if start + items.len() < total {
        metadata["continue"] = json!((start + items.len()).to_string());
        metadata["remainingItemCount"] = json!(total - start - items.len());
    }
    ok_json(
        StatusCode::OK,
        &json!({"kind": "ConfigMapList", "apiVersion": "v1", "metadata": metadata, "items": items}),
    )
}

fn event(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

/// How a change looks to a watch with `selector`, if at all.
fn as_seen(change: &Change, selector: &str) -> Option<Bytes> {
    let was = change.old.as_ref().is_some_and(|o| matches(selector, o));
    match &change.new {
        Some(new) if matches(selector, new) => Some(event(if was { "MODIFIED" } else { "ADDED" }, new)),
        // Modified out of the selector: the watch sees it leave.
        Some(new) if was => Some(event("DELETED", new)),
        Some(_) => None,
        None if was => Some(event("DELETED", change.old.as_ref().unwrap())),
        None => None,
    }
}

fn watch_stream(shared: Shared, ns: String, selector: String, q: &HashMap<String, String>) -> Response {
    let from: u64 = q.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let timeout = Duration::from_secs(
        q.get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .unwrap_or(290),
    );
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    {
        let inner = shared.inner.lock().unwrap();
        if from != 0 && from < inner.oldest_rv {
            let gone = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "The resourceVersion for the provided watch is too old.", "reason": "Expired", "code": 410});
            let _ = tx.try_send(event("ERROR", &gone));
            drop(tx);
            return streamed(rx);
        }
    }
    let mut latest = shared.latest.subscribe();
    let mut cuts = shared.cuts.subscribe();
    cuts.mark_unchanged();
    let mut garbage = shared.garbage.subscribe();
    garbage.mark_unchanged();
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut sent_up_to = from;
        if from == 0 {
            // "Any" resourceVersion: start with every current object as ADDED.
            let (objects, rv) = {
                let inner = shared.inner.lock().unwrap();
                let objects: Vec<Value> = inner
                    .objects
                    .iter()
                    .filter(|((n, _), o)| *n == ns && matches(&selector, o))
                    .map(|(_, o)| o.clone())
                    .collect();
                (objects, inner.rv)
            };
            for o in objects {
                if tx.send(event("ADDED", &o)).await.is_err() {
                    return;
                }
            }
            sent_up_to = rv;
        }
        loop {
            let pending: Vec<Bytes> = {
                let inner = shared.inner.lock().unwrap();
                let out = inner
                    .history
                    .iter()
                    .filter(|c| c.rv > sent_up_to)
                    .filter(|c| {
                        let o = c.new.as_ref().or(c.old.as_ref()).unwrap();
                        o["metadata"]["namespace"] == ns.as_str()
                    })
                    .filter_map(|c| as_seen(c, &selector))
                    .collect();
                sent_up_to = inner.rv;
                out
            };
            for line in pending {
                if tx.send(line).await.is_err() {
                    return;
                }
            }
            let every = shared.inner.lock().unwrap().bookmark_every;
            tokio::select! {
                changed = latest.changed() => if changed.is_err() { return },
                _ = cuts.changed() => return,
                _ = garbage.changed() => {
                    if tx.send(Bytes::from_static(b"{\"type\":\"MODIFIED\",\"object\":{not json at all\n")).await.is_err() {
                        return;
                    }
                }
                () = &mut deadline => return,
                () = tokio::time::sleep(every), if bookmarks => {
                    let mark = json!({"kind": "ConfigMap", "apiVersion": "v1",
                        "metadata": {"resourceVersion": sent_up_to.to_string()}});
                    if tx.send(event("BOOKMARK", &mark)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    streamed(rx)
}

fn streamed(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Response {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(stream))
        .unwrap()
}

async fn get_one(State(shared): State<Shared>, Path((ns, name)): Path<(String, String)>) -> Response {
    let inner = shared.inner.lock().unwrap();
    match inner.objects.get(&(ns, name.clone())) {
        Some(o) => ok_json(StatusCode::OK, o),
        None => not_found(&name).into_response(),
    }
}

/// GET of a Namespace: only `kube-system` exists here, with this server's uid.
async fn get_namespace(State(shared): State<Shared>, Path(name): Path<String>) -> Response {
    if name != "kube-system" {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("namespaces \"{name}\" not found"),
        );
    }
    let uid = shared.inner.lock().unwrap().cluster_uid.clone();
    ok_json(
        StatusCode::OK,
        &json!({"kind": "Namespace", "apiVersion": "v1",
            "metadata": {"name": "kube-system", "uid": uid, "resourceVersion": "1"},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
    )
}

/// An API error, answered as a Kubernetes `Status`.
struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        status(self.0, self.1, self.2)
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("configmaps \"{name}\" not found"),
    )
}

fn conflict(name: &str) -> ApiError {
    ApiError(
        StatusCode::CONFLICT,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on configmaps \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
        ),
    )
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("invalid body: {e}"),
        )
    })
}

async fn create(
    State(shared): State<Shared>,
    Path(ns): Path<String>,
    axum::Extension(user): axum::Extension<User>,
    body: Bytes,
) -> Response {
    let object = match parse_body(&body) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if shared
        .inner
        .lock()
        .unwrap()
        .objects
        .contains_key(&(ns.clone(), name.clone()))
    {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("configmaps \"{name}\" already exists"),
        );
    }
    if let Err(e) = admit(&shared, &user, "CREATE", &ns, &name, None, Some(&object)).await {
        return e.into_response();
    }
    let stored = shared.write(&ns, &name, Some(object)).unwrap();
    ok_json(StatusCode::CREATED, &stored)
}

/// The current object, if `precondition` (a resourceVersion, when given) still holds.
fn current(shared: &Shared, ns: &str, name: &str, precondition: Option<&str>) -> Result<Value, ApiError> {
    let inner = shared.inner.lock().unwrap();
    let Some(existing) = inner.objects.get(&(ns.to_string(), name.to_string())) else {
        return Err(not_found(name));
    };
    if let Some(rv) = precondition.filter(|rv| !rv.is_empty()) {
        if existing["metadata"]["resourceVersion"].as_str() != Some(rv) {
            return Err(conflict(name));
        }
    }
    Ok(existing.clone())
}

async fn replace(
    State(shared): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    axum::Extension(user): axum::Extension<User>,
    body: Bytes,
) -> Response {
    let object = match parse_body(&body) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let old = match current(
        &shared,
        &ns,
        &name,
        object["metadata"]["resourceVersion"].as_str(),
    ) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    store_update(&shared, &user, &ns, &name, old, object).await
}

/// Admits an update, then stores it unless the object changed meanwhile (409).
async fn store_update(
    shared: &Shared,
    user: &User,
    ns: &str,
    name: &str,
    old: Value,
    new: Value,
) -> Response {
    if let Err(e) = admit(shared, user, "UPDATE", ns, name, Some(&old), Some(&new)).await {
        return e.into_response();
    }
    let rv = old["metadata"]["resourceVersion"].as_str().map(str::to_string);
    let interfere = {
        let mut inner = shared.inner.lock().unwrap();
        let n = inner.interference;
        inner.interference = n.saturating_sub(1);
        n > 0
    };
    if interfere {
        // Someone else's write lands first.
        shared.write(ns, name, Some(old));
    }
    match shared.write_if(ns, name, Some(new), rv.as_deref()) {
        Ok(stored) => ok_json(StatusCode::OK, &stored.unwrap()),
        Err(e) => e.into_response(),
    }
}

async fn patch(
    State(shared): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    axum::Extension(user): axum::Extension<User>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type != "application/merge-patch+json" {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the test API server supports merge patches only, not {content_type:?}"),
        );
    }
    let patch = match parse_body(&body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let old = match current(&shared, &ns, &name, patch["metadata"]["resourceVersion"].as_str()) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let mut new = old.clone();
    json_patch::merge(&mut new, &patch);
    store_update(&shared, &user, &ns, &name, old, new).await
}

async fn delete(
    State(shared): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    axum::Extension(user): axum::Extension<User>,
) -> Response {
    let old = match current(&shared, &ns, &name, None) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = admit(&shared, &user, "DELETE", &ns, &name, Some(&old), None).await {
        return e.into_response();
    }
    shared.write(&ns, &name, None);
    ok_json(
        StatusCode::OK,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": name, "kind": "configmaps"}}),
    )
}
