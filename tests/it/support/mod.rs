//! Shared test support: certificates made here with rcgen, a client that talks to the
//! webhook as the API server does (TLS verified against the CA, HTTP/1.1 or HTTP/2 chosen
//! by ALPN), builders for AdmissionReviews and approval entries, and a harness that starts
//! the real server.
#![allow(dead_code)]

pub mod apiserver;
pub mod offline;
pub mod smtp;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jitgate::app::{self, Running, ServeConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A CA and a serving certificate for localhost (and 127.0.0.1 and ::1), made for one test.
#[derive(Clone)]
pub struct Certs {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Certs {
    pub fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Its own name: OpenSSL clients (curl) take a leaf whose issuer is its subject
        // for self-signed.
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "jitgate test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let leaf = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])
        .unwrap();
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        Certs {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A CA that issues client certificates, as the cluster's CA issues the API server's.
pub struct ClientCa {
    pub ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A client certificate and its key, PEM encoded.
#[derive(Clone)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl ClientCa {
    pub fn new(name: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = ca.self_signed(&key).unwrap();
        ClientCa {
            ca_pem: cert.pem(),
            issuer: Issuer::new(ca, key),
        }
    }

    /// A client certificate for `common_name` (the API server's is kube-apiserver).
    pub fn issue(&self, common_name: &str) -> Identity {
        use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair};
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = leaf.signed_by(&key, &self.issuer).unwrap();
        Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A TLS connection to `addr` trusting any of `cas`, asking for `server_name` and the
/// protocol `alpn`, presenting `identity` when given.
pub async fn tls_connect(
    addr: SocketAddr,
    cas: &[&str],
    server_name: &str,
    alpn: &[u8],
    identity: Option<&Identity>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for ca_pem in cas {
        roots
            .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
            .unwrap();
    }
    let builder =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    let mut cfg = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(id.cert_pem.as_bytes()).unwrap()],
                rustls::pki_types::PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(server_name.to_string()).unwrap(), tcp)
        .await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
}

pub const BOTH: [Proto; 2] = [Proto::H1, Proto::H2];

/// `jitgate request` arguments: an UPDATE of Secret db-password in prod for 30 minutes.
pub const ROTATE_DB_PASSWORD: [&str; 15] = [
    "request",
    "--resource",
    "secrets",
    "-n",
    "prod",
    "--name",
    "db-password",
    "--api-group",
    "",
    "--operation",
    "UPDATE",
    "--for",
    "30m",
    "--reason",
    "INC-7: rotate the password",
];

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One client connection, kept alive across requests.
pub struct Conn {
    sender: Sender,
    /// The protocol the server agreed to in the TLS handshake.
    pub alpn: Option<Vec<u8>>,
    /// The certificate the server presented (DER).
    pub peer: Vec<u8>,
    /// Sent as `Authorization: Bearer ...` when set.
    pub bearer: Option<String>,
}

pub struct Reply {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

impl Conn {
    pub async fn open(addr: SocketAddr, ca_pem: &str, proto: Proto) -> std::io::Result<Conn> {
        Conn::open_as(addr, &[ca_pem], "localhost", proto).await
    }

    /// Connects trusting any of `cas`, asking for (and verifying) `server_name`.
    pub async fn open_as(
        addr: SocketAddr,
        cas: &[&str],
        server_name: &str,
        proto: Proto,
    ) -> std::io::Result<Conn> {
        Conn::open_with(addr, cas, server_name, proto, None).await
    }

    /// Connects as `open_as` does, presenting `identity` as its client certificate.
    pub async fn open_with(
        addr: SocketAddr,
        cas: &[&str],
        server_name: &str,
        proto: Proto,
        identity: Option<&Identity>,
    ) -> std::io::Result<Conn> {
        let alpn: &[u8] = match proto {
            Proto::H1 => b"http/1.1",
            Proto::H2 => b"h2",
        };
        let tls = tls_connect(addr, cas, server_name, alpn, identity).await?;
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let io = TokioIo::new(tls);
        let sender = match proto {
            Proto::H1 => {
                let (s, c) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(std::io::Error::other)?;
                tokio::spawn(c);
                Sender::H1(s)
            }
            Proto::H2 => {
                let (s, c) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(std::io::Error::other)?;
                tokio::spawn(c);
                Sender::H2(s)
            }
        };
        Ok(Conn {
            sender,
            alpn,
            peer,
            bearer: None,
        })
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Reply {
        self.try_send(method, path, content_type, body)
            .await
            .expect("the server answers")
    }

    /// Sends a request; a connection that fails or closes is an error, not a panic.
    pub async fn try_send(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Reply, String> {
        let uri = match self.sender {
            Sender::H1(_) => path.to_string(),
            Sender::H2(_) => format!("https://localhost{path}"),
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "localhost")
            .header("user-agent", "kube-apiserver-admission")
            .header("accept", "application/json, */*");
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        if let Some(token) = &self.bearer {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let request = builder.body(Full::new(Bytes::from(body))).unwrap();
        // A kept-alive connection takes new requests once it has finished the last one.
        let response = match &mut self.sender {
            Sender::H1(s) => match s.ready().await {
                Ok(()) => s.send_request(request).await,
                Err(e) => Err(e),
            },
            Sender::H2(s) => match s.ready().await {
                Ok(()) => s.send_request(request).await,
                Err(e) => Err(e),
            },
        }
        .map_err(|e| e.to_string())?;
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or_default().to_string());
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes()
            .to_vec();
        Ok(Reply {
            status,
            content_type,
            body,
        })
    }

    /// POSTs an AdmissionReview to /validate as the API server does (`?timeout=10s`).
    pub async fn review(&mut self, review: &Value) -> Reply {
        let body = serde_json::to_vec(review).unwrap();
        self.send(
            Method::POST,
            "/validate?timeout=10s",
            Some("application/json"),
            body,
        )
        .await
    }

    /// POSTs a SubjectAccessReview body to /authorize exactly as the API server does
    /// (`?timeout=3s`, compact JSON).
    pub async fn authorize(&mut self, body: &[u8]) -> Reply {
        self.send(
            Method::POST,
            "/authorize?timeout=3s",
            Some("application/json"),
            body.to_vec(),
        )
        .await
    }

    /// POSTs a review and returns its `response`, checking the envelope.
    pub async fn decide(&mut self, review: &Value) -> Value {
        let reply = self.review(review).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.content_type.as_deref(), Some("application/json"));
        let json = reply.json();
        assert_eq!(json["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(json["kind"], "AdmissionReview");
        assert_eq!(
            json["response"]["uid"], review["request"]["uid"],
            "the response carries the request's uid"
        );
        json["response"].clone()
    }
}

/// A request as the API server describes it.
#[derive(Clone)]
pub struct Req {
    pub uid: String,
    pub user: String,
    pub groups: Vec<String>,
    pub group: String,
    pub resource: String,
    pub sub: String,
    pub namespace: String,
    pub name: String,
    pub op: String,
}

impl Req {
    /// alice updates Secret prod/db-password.
    pub fn secret_update() -> Self {
        Req {
            uid: unique_uid(),
            user: "alice@example.com".into(),
            groups: vec!["dev".into(), "system:authenticated".into()],
            group: "".into(),
            resource: "secrets".into(),
            sub: "".into(),
            namespace: "prod".into(),
            name: "db-password".into(),
            op: "UPDATE".into(),
        }
    }

    pub fn with(mut self, f: impl FnOnce(&mut Req)) -> Self {
        f(&mut self);
        self.uid = unique_uid();
        self
    }

    /// The AdmissionReview, with `object` and `oldObject` shaped like a Secret whose data
    /// holds `secret_value`.
    pub fn review_with_data(&self, secret_value: &str) -> Value {
        let object = json!({
            "kind": "Secret", "apiVersion": "v1",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "data": {"password": secret_value}, "type": "Opaque"
        });
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": self.uid,
                "kind": {"group": self.group, "version": "v1", "kind": "Secret"},
                "resource": {"group": self.group, "version": "v1", "resource": self.resource},
                "subResource": self.sub,
                "requestKind": {"group": self.group, "version": "v1", "kind": "Secret"},
                "requestResource": {"group": self.group, "version": "v1", "resource": self.resource},
                "name": self.name,
                "namespace": self.namespace,
                "operation": self.op,
                "userInfo": {"username": self.user, "uid": "u-1", "groups": self.groups},
                "object": object,
                "oldObject": object,
                "dryRun": false,
                "options": {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}
            }
        })
    }

    pub fn review(&self) -> Value {
        self.review_with_data("c2VjcmV0")
    }
}

/// A FIFO made at `path`, and its read end, open once something opens it to write (an
/// audit log nobody reads until the test says so).
pub fn fifo_read_end(path: &std::path::Path) -> std::thread::JoinHandle<std::fs::File> {
    assert!(
        std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap()
            .success()
    );
    let path = path.to_path_buf();
    std::thread::spawn(move || std::fs::File::open(path).unwrap())
}

/// The gated update of [`Req::secret_update`], as a review's bytes.
pub fn update_review() -> Vec<u8> {
    serde_json::to_vec(&Req::secret_update().review()).unwrap()
}

/// Gated updates (Secret `db-password` in `prod`, a 1 s deadline), each sent on a
/// connection of its own until one is refused: the stories where the audit writer stopped
/// taking records and requests queue behind it.
#[derive(Clone, Default)]
pub struct UntilRefused {
    replies: Arc<std::sync::Mutex<Vec<Reply>>>,
    refused: Arc<std::sync::atomic::AtomicBool>,
}

impl UntilRefused {
    /// True once an update was refused.
    pub fn refused(&self) -> bool {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends one update on `c`, in a task of its own; its reply is kept.
    pub fn send(&self, c: Conn) -> tokio::task::JoinHandle<()> {
        self.send_review(c, update_review())
    }

    /// Sends reviews made by `review`, each on a connection of its own from `open`, 2 ms
    /// apart, until one is refused or `most` were sent; the tasks awaiting their replies.
    pub async fn send_until_refused<C: std::future::Future<Output = Conn>>(
        &self,
        most: usize,
        mut open: impl FnMut() -> C,
        review: impl Fn() -> Vec<u8>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut clients = Vec::new();
        for _ in 0..most {
            if self.refused() {
                break;
            }
            clients.push(self.send_review(open().await, review()));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        clients
    }

    /// Sends `review` (an update) on `c`, in a task of its own; its reply is kept.
    pub fn send_review(&self, mut c: Conn, review: Vec<u8>) -> tokio::task::JoinHandle<()> {
        let (replies, refused) = (self.replies.clone(), self.refused.clone());
        tokio::spawn(async move {
            let reply = c
                .send(
                    Method::POST,
                    "/validate?timeout=1s",
                    Some("application/json"),
                    review,
                )
                .await;
            assert_eq!(reply.status, StatusCode::OK);
            if reply.json()["response"]["allowed"] == false {
                refused.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            replies.lock().unwrap().push(reply);
        })
    }

    /// The response of a refused update.
    pub fn denial(&self) -> Value {
        self.replies
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.json()["response"]["allowed"] == false)
            .map(|r| r.json()["response"].clone())
            .expect("an update was refused")
    }

    /// How many replies so far `is`.
    pub fn count(&self, is: impl Fn(&Reply) -> bool) -> usize {
        self.replies.lock().unwrap().iter().filter(|r| is(r)).count()
    }

    /// Every reply so far, taken.
    pub fn take(&self) -> Vec<Reply> {
        std::mem::take(&mut *self.replies.lock().unwrap())
    }
}

pub fn unique_uid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("uid-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// An RFC 3339 time `mins` minutes from now.
pub fn in_mins(mins: i64) -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_mins(mins)).to_string()
}

/// The approval entry that lets alice update prod/db-password for 30 minutes, approved
/// by bob. `edits` replace parts of it.
pub fn entry(edits: &[(&str, &str)]) -> String {
    expiring(30, edits)
}

/// The same entry, expiring `mins` minutes from now (negative: in the past).
pub fn expiring(mins: i64, edits: &[(&str, &str)]) -> String {
    let mut text = format!(
        "user: alice@example.com\nresource: secrets\nnamespace: prod\nname: db-password\noperations: [UPDATE]\nexpiresAt: \"{}\"\nreason: \"INC-1: rotate\"\napprovedBy: [bob@example.com]\n",
        in_mins(mins)
    );
    for (from, to) in edits {
        assert!(text.contains(from), "{from:?} not in the entry");
        text = text.replace(from, to);
    }
    text
}

/// An approvals ConfigMap manifest with these entries.
pub fn approvals_manifest(entries: &[(&str, &str)]) -> String {
    let mut out = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: jitgate-approvals\n  namespace: jitgate-system\n  labels:\n    jitgate.dev/approvals: \"true\"\ndata:\n",
    );
    if entries.is_empty() {
        out.push_str("  {}\n");
        return out.replace("data:\n  {}", "data: {}");
    }
    for (key, value) in entries {
        out.push_str(&format!("  {key}: |\n"));
        for line in value.lines() {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out
}

/// The real server on a free loopback port, with its files in a temporary directory.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub certs: Certs,
    pub running: Option<Running>,
}

impl Harness {
    pub fn approvals_path(&self) -> PathBuf {
        self.dir.path().join("approvals.yaml")
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }

    pub fn config(dir: &Path) -> ServeConfig {
        ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls_cert: dir.join("tls.crt"),
            tls_key: dir.join("tls.key"),
            policies_dir: Path::new(REPO).join("policies"),
            approvals_file: dir.join("approvals.yaml"),
            signers_file: dir.join("signers.yaml"),
            cluster_id: None,
            cluster: None,
            max_staleness: Duration::from_secs(300),
            audit_log: Some(dir.join("audit.jsonl")),
            audit_log_max_bytes: None,
            audit_queue: jitgate::audit::QUEUE,
            records_to_stdout: false,
            shutdown_drain: Duration::ZERO,
            cert_check_every: Duration::from_millis(200),
            expiry_warning: jitgate::news::EXPIRY_LEAD,
            client_ca_file: None,
            limits: jitgate::server::Limits::default(),
            anchor_every: jitgate::sync::anchors::ANCHOR_EVERY,
            grants: jitgate::grants::Way::Webhook,
            grants_grace: jitgate::grants::plan::GRACE,
            notifications: None,
            notification_retry: jitgate::notices::Retry::default(),
        }
    }

    /// Starts the server with the repository's policies and these approvals (`None`: no
    /// approvals file at all), changing the config as `tweak` says.
    pub async fn start_with(approvals: Option<&str>, tweak: impl FnOnce(&mut ServeConfig)) -> Harness {
        Harness::start_with_certs(Certs::new(), approvals, tweak).await
    }

    /// [`Harness::start_with`], serving with `certs` (replicas of one deployment share
    /// their serving key, as they mount one Secret).
    pub async fn start_with_certs(
        certs: Certs,
        approvals: Option<&str>,
        tweak: impl FnOnce(&mut ServeConfig),
    ) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tls.crt"), &certs.cert_pem).unwrap();
        std::fs::write(dir.path().join("tls.key"), &certs.key_pem).unwrap();
        if let Some(text) = approvals {
            std::fs::write(dir.path().join("approvals.yaml"), text).unwrap();
        }
        let mut cfg = Harness::config(dir.path());
        tweak(&mut cfg);
        let running = app::start(cfg).await.expect("the server starts");
        Harness {
            dir,
            certs,
            running: Some(running),
        }
    }

    /// Starts the server in cluster mode, following the approvals on `api`.
    pub async fn start_cluster(
        api: &apiserver::ApiServer,
        max_staleness: Duration,
        tweak: impl FnOnce(&mut ServeConfig),
    ) -> Harness {
        Harness::start_cluster_with_certs(api, Certs::new(), max_staleness, tweak).await
    }

    /// [`Harness::start_cluster`], serving with `certs`: a replica of those serving with them.
    pub async fn start_cluster_with_certs(
        api: &apiserver::ApiServer,
        certs: Certs,
        max_staleness: Duration,
        tweak: impl FnOnce(&mut ServeConfig),
    ) -> Harness {
        let source = api.source();
        Harness::start_with_certs(certs, None, |cfg| {
            cfg.cluster = Some(source);
            cfg.max_staleness = max_staleness;
            tweak(cfg);
        })
        .await
    }

    pub async fn start(approvals: &str) -> Harness {
        Harness::start_with(Some(approvals), |_| {}).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.as_ref().unwrap().addr
    }

    pub async fn conn(&self, proto: Proto) -> Conn {
        Conn::open(self.addr(), &self.certs.ca_pem, proto).await.unwrap()
    }

    /// A connection presenting `identity` as its client certificate.
    pub async fn conn_as(&self, identity: &Identity, proto: Proto) -> Conn {
        Conn::open_with(
            self.addr(),
            &[&self.certs.ca_pem],
            "localhost",
            proto,
            Some(identity),
        )
        .await
        .unwrap()
    }

    pub fn write_approvals(&self, text: &str) {
        // Write then rename, as editors and kubelet do, so the server never reads half a file.
        let tmp = self.dir.path().join(".approvals.yaml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.approvals_path()).unwrap();
    }

    /// The decision records written so far.
    pub fn records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.audit_path()).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// The record of the request with this uid.
    pub fn record_of(&self, uid: &str) -> Value {
        self.records()
            .into_iter()
            .find(|r| r["uid"] == uid)
            .unwrap_or_else(|| panic!("no record for {uid}"))
    }

    pub async fn readyz(&self) -> StatusCode {
        let mut c = self.conn(Proto::H1).await;
        c.send(Method::GET, "/readyz", None, Vec::new()).await.status
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

/// Asserts that `record` says exactly what the client received in `reply`: the uid, whether
/// it was allowed, the decision, the status code, and for a refusal the reason its message
/// The records in what stdout held, each a whole line.
pub fn records_in(read: &[u8]) -> Vec<Value> {
    read.split_inclusive(|b| *b == b'\n')
        .map(|l| serde_json::from_slice(l).expect("a whole record per line"))
        .collect()
}

/// Each of `answers` has its one record among `records`, saying the answer it gave; how
/// many of them were refused at their deadline (`deadline_exceeded`).
pub fn each_recorded_once(answers: &[Reply], records: &[Value]) -> usize {
    let mut refusals = 0;
    for reply in answers {
        let uid = reply.json()["response"]["uid"].as_str().unwrap().to_string();
        let mine: Vec<_> = records.iter().filter(|r| r["uid"] == uid.as_str()).collect();
        assert_eq!(mine.len(), 1, "one record for {uid}");
        assert_record_is_the_answer(mine[0], reply);
        refusals += usize::from(mine[0]["reason"] == "deadline_exceeded");
    }
    refusals
}

/// names.
pub fn assert_record_is_the_answer(record: &Value, reply: &Reply) {
    let (allowed, code, message, uid) = if reply.status == StatusCode::OK {
        let response = &reply.json()["response"];
        let code = response["status"]["code"].as_u64().unwrap_or(200);
        (
            response["allowed"].as_bool().unwrap(),
            code,
            response["status"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            response["uid"].as_str().map(str::to_string),
        )
    } else {
        let status = reply.json();
        assert_eq!(status["kind"], "Status", "a refusal's body is a Status");
        (
            false,
            u64::from(reply.status.as_u16()),
            status["message"].as_str().unwrap().to_string(),
            None,
        )
    };
    if let Some(uid) = uid {
        assert_eq!(record["uid"], uid.as_str(), "{record}");
    }
    assert_eq!(record["allowed"], allowed, "{record} / {message}");
    assert_eq!(record["code"], code, "{record} / {message}");
    assert_eq!(record["decision"] == "deny", !allowed, "{record}");
    if code == 503 {
        let reason = record["reason"].as_str().unwrap();
        assert!(message.contains(&format!("({reason})")), "{record} / {message}");
    }
}

/// The shipped policy files.
pub const POLICY_FILES: [&str; 4] = [
    "prod-secrets.yaml",
    "prod-workloads.yaml",
    "prod-pod-access.yaml",
    "prod-reads.yaml",
];

/// A directory holding the shipped policies, each file's text changed by `edit`.
pub fn policies_with(edit: impl Fn(&str, String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in POLICY_FILES {
        let text = std::fs::read_to_string(Path::new(REPO).join("policies").join(file)).unwrap();
        std::fs::write(dir.path().join(file), edit(file, text)).unwrap();
    }
    dir
}

/// The shipped policies, with break-glass for group `oncall` under prod-secrets.
pub fn break_glass_policies() -> tempfile::TempDir {
    policies_with(|file, text| {
        if file == "prod-secrets.yaml" {
            text.replace(
                "    approverGroups: [\"jitgate-approvers\"]",
                "    approverGroups: [\"jitgate-approvers\"]\n  breakGlass:\n    groups: [\"oncall\"]\n    maxDuration: 1h\n    reviewWithin: 24h",
            )
        } else {
            text
        }
    })
}

/// Retries `check` until it holds, for up to `limit`; returns how long it took. Used to
/// wait for an asynchronous effect, never to assert a speed.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "condition not met within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Captures the log lines emitted on this thread (JSON, one per line) while alive. With
/// `#[tokio::test]`'s single-threaded runtime, that includes the server's own tasks.
pub struct LogCapture {
    buf: Arc<std::sync::Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

#[derive(Clone)]
struct CaptureWriter(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    pub fn start() -> LogCapture {
        let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = CaptureWriter(buf.clone());
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        LogCapture {
            buf,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    pub fn lines(&self) -> Vec<Value> {
        let text = String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Lines whose message is `message` and whose field `field` is `value`.
    pub fn count(&self, message: &str, field: &str, value: &str) -> usize {
        self.lines()
            .iter()
            .filter(|l| l["message"] == message && l[field] == value)
            .count()
    }
}

/// Runs `jitgate ARGS…` off the runtime, which serves the test's receivers meanwhile: its
/// exit code, stdout and stderr.
pub async fn jitgate(args: &[&str]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The server's `/metrics`.
pub async fn scrape(h: &Harness) -> String {
    let mut c = h.conn(Proto::H1).await;
    String::from_utf8(
        c.send(hyper::Method::GET, "/metrics", None, Vec::new())
            .await
            .body,
    )
    .unwrap()
}

/// The value of `series` (name and labels, as written) in `metrics`; 0 when absent.
pub fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}
