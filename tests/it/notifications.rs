//! Notifications: three replicas follow one test API server and tell real receivers on
//! loopback: an HTTP server standing in for Mattermost and for a CloudEvents collector
//! (checking the JSON and the HMAC), and aiosmtpd, a real SMTP server, receiving mail
//! (`support::smtp`: without its Python, the mail checks are skipped, saying so, and the
//! rest runs). Each piece of news arrives once across the replicas; a sink that fails is
//! retried, one that hangs delays no answer and no other sink; a Secret's data reaches no
//! sink, record or log.

use crate::support::apiserver::ApiServer;
use crate::support::smtp::SmtpServer;
use crate::support::*;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

const PATIENCE: Duration = Duration::from_secs(30);
/// Several of the news writers' ticks (1 s): time for a duplicate to arrive if any
/// replica were to send one.
const SETTLE: Duration = Duration::from_secs(5);
const SECRET: &str = "hmac-key-for-the-test-32-bytes-long";
const ALICE: (&str, &str, &[&str]) = ("alice-token", "alice@example.com", &["dev"]);
const BOB: (&str, &str, &[&str]) = ("bob-token", "bob@example.com", &["jitgate-approvers"]);
/// How long the hanging sink holds each request.
const HANG: Duration = Duration::from_secs(60);

/// One HTTP request a receiver got.
#[derive(Clone, Debug)]
struct Got {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
    at: Instant,
    answered: u16,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An HTTP server on loopback: `/chat` and `/hook` answer 200, `/flaky` 500 twice then
/// 200, `/hang` holds each request for a minute.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    flaky_hits: Arc<Mutex<u32>>,
}

impl Receiver {
    fn router(&self) -> axum::Router {
        let state = self.clone();
        axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move {
                let path = uri.path().to_string();
                let answered = match path.as_str() {
                    "/flaky" => {
                        let mut hits = state.flaky_hits.lock().unwrap();
                        *hits += 1;
                        if *hits <= 2 { 500 } else { 200 }
                    }
                    "/hang" => 0,
                    _ => 200,
                };
                state.got.lock().unwrap().push(Got {
                    path: path.clone(),
                    headers,
                    body: body.to_vec(),
                    at: Instant::now(),
                    answered,
                });
                if path == "/hang" {
                    tokio::time::sleep(HANG).await;
                    return StatusCode::OK;
                }
                StatusCode::from_u16(answered).unwrap()
            }
        })
    }

    async fn start() -> (Receiver, String) {
        let r = Receiver::default();
        let app = r.router();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, base)
    }

    /// The same over HTTPS, with a certificate for `localhost` that `certs`' CA signed.
    async fn start_tls(certs: &Certs) -> (Receiver, String) {
        use rustls_pki_types::pem::PemObject;
        let r = Receiver::default();
        let app = r.router();
        let chain = rustls_pki_types::CertificateDer::pem_slice_iter(certs.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(certs.key_pem.as_bytes()).unwrap();
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("https://localhost:{}", listener.local_addr().unwrap().port());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ =
                        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                            .await;
                });
            }
        });
        (r, base)
    }

    /// What `path` received and answered with 200.
    fn delivered(&self, path: &str) -> Vec<Got> {
        let got = self.got.lock().unwrap();
        got.iter()
            .filter(|g| g.path == path && g.answered == 200)
            .cloned()
            .collect()
    }

    fn all(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

/// The sink `mail` to the SMTP server on `port`; nothing without one.
fn mail_sink(port: Option<u16>) -> String {
    port.map(|port| {
        format!("  - name: mail\n    smtp: {{host: 127.0.0.1, port: {port}, tls: none, from: jitgate@example.com}}\n")
    })
    .unwrap_or_default()
}

/// A chat and a webhook sink on the receiver at `base`, the `extra` sinks, and mail to
/// the SMTP server on `port` (none without one), with the approvers' address.
fn sinks(base: &str, port: Option<u16>, extra: &str) -> String {
    let mail = mail_sink(port);
    format!(
        r#"sinks:
  - name: security-chat
    chat: {{url: "{base}/chat"}}
  - name: siem
    webhook: {{url: "{base}/hook", secret: "{SECRET}"}}
{extra}{mail}mail:
  addresses: {{"group:jitgate-approvers": [approvers@example.com]}}
"#
    )
}

struct Setup {
    api: ApiServer,
    replicas: Vec<Harness>,
    _config: tempfile::TempDir,
}

/// Three replicas against one test API server, notifying as `config` says; the API
/// server sends its admission reviews (the approvals ConfigMap's guard) to the first.
async fn three_replicas(config: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notifications.yaml");
    std::fs::write(&path, config).unwrap();
    let api = ApiServer::start().await;
    for (token, user, groups) in [ALICE, BOB] {
        api.add_user(token, user, groups);
    }
    api.apply_approvals("jitgate-approvals", &[]);
    let (mut replicas, certs) = (Vec::new(), Certs::new());
    for _ in 0..3 {
        let path = path.clone();
        let h = Harness::start_cluster_with_certs(&api, certs.clone(), Duration::from_secs(300), |cfg| {
            cfg.notifications = Some(path);
        })
        .await;
        eventually(PATIENCE, || async { h.readyz().await == hyper::StatusCode::OK }).await;
        replicas.push(h);
    }
    api.admit_with(replicas[0].addr(), &replicas[0].certs.ca_pem);
    Setup {
        api,
        replicas,
        _config: dir,
    }
}

impl Setup {
    async fn stop(self) {
        for h in self.replicas {
            h.stop().await;
        }
    }
}

fn verify_signature(got: &Got) -> bool {
    let Some(header) = got
        .headers
        .get("x-jitgate-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(hex) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Some(tag) = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    ring::hmac::verify(&key, &got.body, &tag).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_and_its_approval_reach_chat_the_webhook_and_mail_once_across_three_replicas() {
    let (http, base) = Receiver::start().await;
    let smtp = SmtpServer::start();
    let matrix = format!(
        "  - name: ops-matrix\n    matrix: {{homeserver: \"{base}\", room: \"!ops:matrix.test\", token: syt_bot_token}}\n"
    );
    let s = three_replicas(&sinks(&base, smtp.as_ref().map(|m| m.port), &matrix)).await;

    let filed_at = Instant::now();
    let r = s.api.jitgate_as(ALICE.0, &ROTATE_DB_PASSWORD).await;
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    let key = r.requested_key();
    eventually(PATIENCE, || async { !http.delivered("/chat").is_empty() }).await;
    let to_approver = http.delivered("/chat")[0].at.duration_since(filed_at);
    let mut approver_mail = None;
    if let Some(smtp) = &smtp {
        eventually(PATIENCE, || async {
            !smtp.to("approvers@example.com").is_empty()
        })
        .await;
        approver_mail = Some(smtp.to("approvers@example.com")[0].at.duration_since(filed_at));
    }

    let approved_at = Instant::now();
    let r = s.api.jitgate_as(BOB.0, &["approve", &key]).await;
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    let mut to_requester = None;
    if let Some(smtp) = &smtp {
        eventually(PATIENCE, || async { !smtp.to("alice@example.com").is_empty() }).await;
        to_requester = Some(smtp.to("alice@example.com")[0].at.duration_since(approved_at));
    }
    let shown = |d: Option<Duration>| d.map_or("not measured".to_string(), |d| format!("{d:?}"));
    println!(
        "timings: request filed -> approver's chat message {to_approver:?} (approver's mail {}); approved -> requester's mail {}",
        shown(approver_mail),
        shown(to_requester)
    );
    tokio::time::sleep(SETTLE).await;

    // Chat: the request, then the approval; each once across the three replicas.
    let chat = http.delivered("/chat");
    let texts: Vec<String> = chat
        .iter()
        .map(|g| g.json()["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts.len(), 2, "{texts:#?}");
    assert!(
        texts[0].starts_with("**user:alice@example.com asks for UPDATE prod/secrets/db-password**"),
        "{}",
        texts[0]
    );
    for want in [
        "- Reason: `INC-7: rotate the password`",
        "- For: 30m",
        &format!("`kubectl jitgate approve {key}`"),
        "- Still needed: 1 approver other than the requester",
    ] {
        assert!(texts[0].contains(want), "{want:?} not in\n{}", texts[0]);
    }
    assert!(
        texts[1].contains("approved user:alice@example.com"),
        "{}",
        texts[1]
    );
    assert_eq!(chat[0].headers["content-type"], "application/json");

    // Matrix: the same two, each PUT once under its own transaction id, with the token.
    let room: Vec<Got> = http
        .all()
        .into_iter()
        .filter(|g| g.path.starts_with("/_matrix/"))
        .collect();
    assert_eq!(room.len(), 2, "{room:#?}");
    for got in &room {
        assert!(
            got.path
                .starts_with("/_matrix/client/v3/rooms/%21ops%3Amatrix.test/send/m.room.message/jitgate."),
            "{}",
            got.path
        );
        assert_eq!(got.headers["authorization"], "Bearer syt_bot_token");
    }
    assert_ne!(room[0].path, room[1].path);
    assert!(
        room[0].json()["body"]
            .as_str()
            .unwrap()
            .contains(&format!("kubectl jitgate approve {key}"))
    );

    // The webhook: two CloudEvents, signed, with distinct ids.
    let hook = http.delivered("/hook");
    assert_eq!(hook.len(), 2, "{hook:#?}");
    for got in &hook {
        assert!(verify_signature(got), "a valid HMAC: {got:?}");
        assert_eq!(
            got.headers["content-type"],
            "application/cloudevents+json; charset=utf-8"
        );
        let mut forged = got.clone();
        forged.body.push(b' ');
        assert!(!verify_signature(&forged), "the HMAC covers the body");
    }
    let events: Vec<Value> = hook.iter().map(Got::json).collect();
    assert_eq!(events[0]["specversion"], "1.0");
    assert_eq!(events[0]["type"], "dev.jitgate.request.filed");
    assert_eq!(events[1]["type"], "dev.jitgate.request.approved");
    assert_eq!(events[0]["data"]["key"], key.as_str());
    assert_ne!(events[0]["id"], events[1]["id"]);
    let filed_events: Vec<Value> = s
        .api
        .events()
        .into_iter()
        .filter(|e| e["reason"] == "RequestFiled")
        .collect();
    assert_eq!(filed_events.len(), 1);
    assert_eq!(
        events[0]["id"], filed_events[0]["metadata"]["name"],
        "the CloudEvent's id is the Event's name"
    );

    // Mail: the request to the approvers, the approval to the requester; once each.
    if let Some(smtp) = &smtp {
        let mails = smtp.all();
        assert_eq!(mails.len(), 2, "{mails:#?}");
        let to_approvers = &smtp.to("approvers@example.com")[0];
        assert_eq!(to_approvers.to, ["approvers@example.com"]);
        assert_eq!(to_approvers.from, "jitgate@example.com");
        for want in [
            "Subject: [jitgate] user:alice@example.com asks for".to_string(),
            "To: approvers@example.com".to_string(),
            format!("kubectl jitgate approve {key}"),
        ] {
            assert!(
                to_approvers.text.contains(&want),
                "{want:?} not in {}",
                to_approvers.text
            );
        }
        let to_alice = &smtp.to("alice@example.com")[0];
        assert_eq!(to_alice.to, ["alice@example.com"]);
        for want in [
            "bob@example.com approved".to_string(),
            format!("kubectl jitgate wait {key}"),
        ] {
            assert!(to_alice.text.contains(&want), "{want:?} not in {}", to_alice.text);
        }
    }
    s.stop().await;
}

/// Run on one thread, so that the log capture sees the servers' log lines too.
#[tokio::test]
async fn a_failing_sink_is_retried_a_hanging_one_delays_nothing_and_a_secret_reaches_no_one() {
    let logs = LogCapture::start();
    let (http, base) = Receiver::start().await;
    let smtp = SmtpServer::start();
    let mail = mail_sink(smtp.as_ref().map(|m| m.port));
    let config = format!(
        r#"
sinks:
  - name: flaky-chat
    chat: {{url: "{base}/flaky"}}
  - name: hanging-chat
    chat: {{url: "{base}/hang"}}
  - name: siem
    webhook: {{url: "{base}/hook", secret: "{SECRET}"}}
{mail}mail:
  addresses: {{"group:jitgate-approvers": [approvers@example.com]}}
"#
    );
    let s = three_replicas(&config).await;
    let canary = "Q0FOQVJZLTcxOTMtZG8tbm90LWxlYWs=";

    // Denials of a Secret update whose object carries the canary, to each replica: news
    // for every sink, the hanging one included.
    let started = Instant::now();
    for (i, h) in s.replicas.iter().enumerate() {
        let req = Req::secret_update().with(|r| {
            r.user = "mallory@example.com".into();
            r.name = format!("db-{i}");
        });
        let mut c = h.conn(Proto::H1).await;
        let answer = c.decide(&req.review_with_data(canary)).await;
        assert_eq!(answer["allowed"], false);
    }
    // And a request filed, for the mail sink.
    s.api.apply_approvals(
        "jitgate-approvals",
        &[(
            "alice-db",
            &entry(&[("approvedBy: [bob@example.com]", "approvedBy: []")]),
        )],
    );
    let answered = started.elapsed();
    assert!(
        answered < HANG / 2,
        "the answers came back in {answered:?}, while the hanging sink holds each message {HANG:?}"
    );

    // The flaky sink answered 500 twice, then took each piece of news once (three denials
    // and the request); the webhook took them while the hanging sink still held its first.
    eventually(PATIENCE, || async { http.delivered("/flaky").len() == 4 }).await;
    eventually(PATIENCE, || async { http.delivered("/hook").len() >= 4 }).await;
    if let Some(smtp) = &smtp {
        eventually(PATIENCE, || async {
            !smtp.to("approvers@example.com").is_empty()
        })
        .await;
    }
    tokio::time::sleep(SETTLE).await;
    let flaky = http
        .all()
        .into_iter()
        .filter(|g| g.path == "/flaky")
        .collect::<Vec<_>>();
    assert_eq!(flaky.len(), 6, "2 failures, then 4 deliveries: {flaky:#?}");
    assert_eq!(http.delivered("/flaky").len(), 4);
    let ids: std::collections::BTreeSet<String> = http
        .delivered("/flaky")
        .iter()
        .map(|g| g.json()["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 4, "each piece of news once: {ids:#?}");
    let hung = http.all().into_iter().filter(|g| g.path == "/hang").count();
    assert!(hung >= 1, "the hanging sink was tried");
    assert!(
        http.delivered("/hang").is_empty(),
        "and answered nothing within the test"
    );
    assert_eq!(
        http.delivered("/hook").len(),
        4,
        "three denials and a request reached the webhook"
    );
    let mut sent = 0.0;
    let mut retried = 0.0;
    for h in &s.replicas {
        let m = scrape(h).await;
        sent += counter(
            &m,
            "jitgate_notifications_total{sink=\"flaky-chat\",outcome=\"sent\"}",
        );
        retried += counter(
            &m,
            "jitgate_notifications_total{sink=\"flaky-chat\",outcome=\"retried\"}",
        );
    }
    assert_eq!((sent, retried), (4.0, 2.0));

    // The canary reached no sink, no mail, no record and no log line.
    for got in http.all() {
        assert!(!String::from_utf8_lossy(&got.body).contains(canary), "{got:?}");
    }
    for mail in smtp.iter().flat_map(SmtpServer::all) {
        assert!(
            !mail.data.contains(canary) && !mail.text.contains(canary),
            "{mail:?}"
        );
    }
    for h in &s.replicas {
        let records = std::fs::read_to_string(h.audit_path()).unwrap();
        assert!(
            records.contains("mallory@example.com"),
            "each replica recorded its denial"
        );
        assert!(!records.contains(canary), "a record holds the canary");
    }
    let lines = logs.lines();
    assert!(!lines.is_empty(), "the log capture saw the servers");
    for line in &lines {
        assert!(!line.to_string().contains(canary), "{line}");
        let text = line.to_string();
        assert!(
            !text.contains(SECRET) && !text.contains(&base),
            "a log line holds a credential: {text}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_test_sends_one_sample_to_each_sink_and_says_what_each_answered() {
    let (http, base) = Receiver::start().await;
    let smtp = SmtpServer::start();
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notifications.yaml");
    let broken = format!(
        "  - name: broken\n    chat: {{url: \"http://127.0.0.1:{closed_port}/hooks/token-in-the-path\"}}\n"
    );
    std::fs::write(&path, sinks(&base, smtp.as_ref().map(|m| m.port), &broken)).unwrap();
    let (code, out, err) = jitgate(&[
        "notify",
        "test",
        "--config",
        path.to_str().unwrap(),
        "--to",
        "me@example.com",
    ])
    .await;
    assert_eq!(code, 1, "one sink failed: {out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "security-chat: sent (HTTP 200)");
    assert_eq!(lines[1], "siem: sent (HTTP 200)");
    assert!(lines[2].starts_with("broken: failed: "), "{out}");
    assert!(
        !out.contains("token-in-the-path") && !err.contains("token-in-the-path"),
        "{out}{err}"
    );
    assert_eq!(http.delivered("/chat").len(), 1);
    assert!(verify_signature(&http.delivered("/hook")[0]));
    if let Some(smtp) = &smtp {
        assert!(lines[3].starts_with("mail: sent (250"), "{out}");
        let sample = smtp.to("me@example.com");
        assert_eq!(sample.len(), 1, "{sample:#?}");
        assert!(
            sample[0].text.contains("Subject: [jitgate] "),
            "{}",
            sample[0].text
        );
    }

    // A file with a mistake: exit 2, naming the sink and the field, quoting no credential.
    std::fs::write(&path, "sinks:\n  - name: ops-matrix\n    matrix: {homeserver: \"https://m.internal\", room: \"!r:m\", token: \"\"}\n").unwrap();
    let (code, out, err) = jitgate(&["notify", "test", "--config", path.to_str().unwrap()]).await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("sink \"ops-matrix\": matrix.token: missing"),
        "{err}"
    );
}

#[tokio::test]
async fn serve_refuses_to_start_with_a_bad_notifications_file_and_names_the_sink_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notifications.yaml");
    std::fs::write(
        &path,
        "sinks:\n  - name: siem\n    webhook: {url: \"http://collector.internal/s3cret-hook\", secret: x}\n",
    )
    .unwrap();
    let h = tempfile::tempdir().unwrap();
    let certs = Certs::new();
    std::fs::write(h.path().join("tls.crt"), &certs.cert_pem).unwrap();
    std::fs::write(h.path().join("tls.key"), &certs.key_pem).unwrap();
    let mut cfg = Harness::config(h.path());
    cfg.notifications = Some(path);
    let err = match jitgate::app::start(cfg).await {
        Ok(_) => panic!("serve started with a plain-http webhook to a remote host"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("sink \"siem\": webhook.url"), "{err}");
    assert!(!err.contains("s3cret-hook"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_sink_signed_by_an_internal_ca_is_trusted_only_through_its_ca_file() {
    let certs = Certs::new();
    let (http, base) = Receiver::start_tls(&certs).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &certs.ca_pem).unwrap();
    let path = dir.path().join("notifications.yaml");
    std::fs::write(
        &path,
        format!(
            "sinks:\n  - name: internal-ca\n    chat: {{url: \"{base}/chat\"}}\n    ca: {}\n  - name: system-roots\n    chat: {{url: \"{base}/chat\"}}\n",
            dir.path().join("ca.pem").display()
        ),
    )
    .unwrap();
    let (code, out, err) = jitgate(&["notify", "test", "--config", path.to_str().unwrap()]).await;
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "internal-ca: sent (HTTP 200)", "{out}{err}");
    assert!(lines[1].starts_with("system-roots: failed: "), "{out}");
    assert!(lines[1].to_lowercase().contains("certificate"), "{out}");
    assert_eq!(http.delivered("/chat").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_file_mode_the_one_process_sends_what_it_sees() {
    let (http, base) = Receiver::start().await;
    let smtp = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notifications.yaml");
    std::fs::write(&path, sinks(&base, smtp.as_ref().map(|m| m.port), "")).unwrap();
    let h = Harness::start_with(Some(&approvals_manifest(&[])), |cfg| {
        cfg.notifications = Some(path)
    })
    .await;
    eventually(PATIENCE, || async { h.readyz().await == hyper::StatusCode::OK }).await;
    h.write_approvals(&approvals_manifest(&[(
        "alice-db",
        &entry(&[("approvedBy: [bob@example.com]", "approvedBy: []")]),
    )]));
    eventually(PATIENCE, || async { !http.delivered("/chat").is_empty() }).await;
    let text = http.delivered("/chat")[0].json()["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.contains("asks for UPDATE prod/secrets/db-password"),
        "{text}"
    );
    assert!(text.contains("`kubectl jitgate approve alice-db`"), "{text}");
    h.stop().await;
}

/// One process (file mode) notifying as `config` says, under the shipped policies with
/// break-glass for group `oncall`, where alice holds a break-glass entry.
async fn with_break_glass(config: &str) -> (Harness, [tempfile::TempDir; 2]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notifications.yaml");
    std::fs::write(&path, config).unwrap();
    let policies = break_glass_policies();
    let glass = format!(
        "user: alice@example.com\nresource: secrets\nnamespace: prod\nbreakGlass: true\nexpiresAt: \"{}\"\nreason: \"INC-12: database down\"\napprovedBy: []\n",
        in_mins(45)
    );
    let policies_dir = policies.path().to_path_buf();
    let h = Harness::start_with(Some(&approvals_manifest(&[("alice-glass", &glass)])), |cfg| {
        cfg.policies_dir = policies_dir;
        cfg.notifications = Some(path);
    })
    .await;
    eventually(PATIENCE, || async { h.readyz().await == hyper::StatusCode::OK }).await;
    (h, [dir, policies])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_break_glass_use_mails_the_approver_group_and_is_loud_in_chat_through_a_groups_route() {
    let (http, base) = Receiver::start().await;
    let smtp = SmtpServer::start();
    // Only what concerns the approver group reaches chat and mail.
    let config = format!(
        "{}routes:\n  - sinks: [security-chat{}]\n    groups: [jitgate-approvers]\n",
        sinks(&base, smtp.as_ref().map(|m| m.port), ""),
        if smtp.is_some() { ", mail" } else { "" }
    );
    let (h, _dirs) = with_break_glass(&config).await;
    let mut c = h.conn(Proto::H1).await;
    let oncall =
        Req::secret_update().with(|r| r.groups = vec!["oncall".into(), "system:authenticated".into()]);
    assert_eq!(c.decide(&oncall.review()).await["allowed"], true);

    eventually(PATIENCE, || async {
        !http.delivered("/chat").is_empty()
            && smtp
                .as_ref()
                .is_none_or(|m| !m.to("approvers@example.com").is_empty())
    })
    .await;
    let text = http.delivered("/chat")[0].json()["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.starts_with("**🚨 BREAK-GLASS: user:alice@example.com used a break-glass entry for UPDATE"),
        "{text}"
    );
    assert!(text.contains("- Reason: `INC-12: database down`"), "{text}");
    assert!(text.contains("`kubectl jitgate approve alice-glass`"), "{text}");
    if let Some(smtp) = &smtp {
        let mail = &smtp.to("approvers@example.com")[0];
        assert_eq!(mail.to, ["approvers@example.com"]);
        for want in [
            "BREAK-GLASS: user:alice@example.com used a break-glass entry",
            "kubectl jitgate approve alice-glass",
        ] {
            assert!(mail.text.contains(want), "{want:?} not in {}", mail.text);
        }
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_denials_and_a_megabyte_name_are_bounded_and_a_break_glass_use_still_gets_through() {
    let (http, base) = Receiver::start().await;
    let smtp = SmtpServer::start();
    let (h, _dirs) = with_break_glass(&sinks(&base, smtp.as_ref().map(|m| m.port), "")).await;
    let mut c = h.conn(Proto::H1).await;
    let minute = || jiff::Timestamp::now().as_second().div_euclid(60);

    // A name of a megabyte: the message about it is clipped.
    let huge = Req::secret_update().with(|r| {
        r.user = "eve@example.com".into();
        r.name = "A".repeat(1_000_000);
    });
    assert_eq!(c.decide(&huge.review()).await["allowed"], false);
    // One user's flood, each denial about another object (past the once-a-minute rule).
    let first_minute = minute();
    for i in 0..20 {
        let flood = Req::secret_update().with(|r| {
            r.user = "mallory@example.com".into();
            r.name = format!("db-{i}");
        });
        assert_eq!(c.decide(&flood.review()).await["allowed"], false);
    }
    let minutes = minute() - first_minute + 1;
    let oncall =
        Req::secret_update().with(|r| r.groups = vec!["oncall".into(), "system:authenticated".into()]);
    assert_eq!(c.decide(&oncall.review()).await["allowed"], true);

    let texts = || -> Vec<String> {
        http.delivered("/chat")
            .iter()
            .map(|g| g.json()["text"].as_str().unwrap().to_string())
            .collect()
    };
    eventually(PATIENCE, || async {
        let t = texts();
        t.iter().any(|t| t.starts_with("**🚨 BREAK-GLASS")) && t.iter().any(|t| t.contains("user:eve@"))
    })
    .await;
    tokio::time::sleep(SETTLE).await;
    let t = texts();
    let eve = t.iter().find(|t| t.contains("user:eve@")).unwrap();
    assert!(eve.len() <= 16 * 1024, "{} bytes", eve.len());
    assert!(eve.contains("AAAA…"), "clipped, and marked so");
    let mallory = t.iter().filter(|t| t.contains("user:mallory@")).count();
    assert!(
        (1..=5 * minutes as usize).contains(&mallory),
        "{mallory} of mallory's 20 denials told, in {minutes} minute(s)"
    );
    let hook = http.delivered("/hook");
    assert!(hook.iter().all(|g| g.body.len() <= 16 * 1024));
    h.stop().await;
}
