//! Hostile clients, faults, and secrets: jitgate sits in the path of every gated change with
//! failurePolicy Fail, so it must neither hang, nor leak, nor grant what it should not.

use crate::support;

use crate::support::apiserver::ApiServer;
use crate::support::*;
use hyper::StatusCode;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn five_hundred_idle_or_trickling_connections_do_not_stop_real_requests() {
    let h = Harness::start(&approvals_manifest(&[("grant", &entry(&[]))])).await;
    let mut held = Vec::new();
    for i in 0..500 {
        let mut tcp = tokio::net::TcpStream::connect(h.addr()).await.unwrap();
        if i % 2 == 1 {
            // The start of a TLS record, then nothing more: a client that trickles.
            tcp.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
        }
        held.push(tcp);
    }
    // A handful of trickling writers keep sending a byte at a time meanwhile.
    let trickle = tokio::spawn(async move {
        for _ in 0..10 {
            for tcp in held.iter_mut().skip(1).step_by(50) {
                let _ = tcp.write_all(&[0x00]).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        held
    });
    for proto in BOTH {
        let mut c = h.conn(proto).await;
        for _ in 0..20 {
            assert_eq!(c.decide(&Req::secret_update().review()).await["allowed"], true);
        }
    }
    let held = trickle.await.unwrap();
    assert_eq!(h.readyz().await, StatusCode::OK);
    drop(held);
    h.stop().await;
}

/// Every place something jitgate says could surface.
fn everything_said(h: &Harness, logs: &LogCapture, replies: &[String]) -> String {
    let mut all = String::new();
    for l in logs.lines() {
        all.push_str(&l.to_string());
    }
    all.push_str(&std::fs::read_to_string(h.audit_path()).unwrap_or_default());
    for r in replies {
        all.push_str(r);
    }
    all
}

#[tokio::test]
async fn a_secrets_data_never_leaves_through_any_path() {
    const CANARY: &str = "Q0FOQVJZLXRvcC1zZWNyZXQtdmFsdWU=";
    let logs = LogCapture::start();
    let h = Harness::start(&approvals_manifest(&[("grant", &entry(&[]))])).await;
    let mut c = h.conn(Proto::H1).await;
    let mut replies = Vec::new();
    let mut say = |r: support::Reply| replies.push(String::from_utf8_lossy(&r.body).into_owned());

    // Allowed, denied, ungated.
    say(c.review(&Req::secret_update().review_with_data(CANARY)).await);
    say(c
        .review(
            &Req::secret_update()
                .with(|r| r.user = "bob".into())
                .review_with_data(CANARY),
        )
        .await);
    say(c
        .review(
            &Req::secret_update()
                .with(|r| r.namespace = "dev".into())
                .review_with_data(CANARY),
        )
        .await);
    // Malformed and undecodable bodies that carry the canary in every place a value can go.
    let review = Req::secret_update().review_with_data(CANARY);
    let mut bad_type = review.clone();
    bad_type["request"]["dryRun"] = CANARY.into();
    let mut bad_op = review.clone();
    bad_op["request"]["operation"] = CANARY.into();
    let mut bad_version = review.clone();
    bad_version["apiVersion"] = CANARY.into();
    let mut bad_kind = review.clone();
    bad_kind["kind"] = CANARY.into();
    for body in [&bad_type, &bad_op, &bad_version, &bad_kind] {
        say(c
            .send(
                hyper::Method::POST,
                "/validate",
                Some("application/json"),
                serde_json::to_vec(body).unwrap(),
            )
            .await);
    }
    let truncated = serde_json::to_vec(&review).unwrap();
    say(c
        .send(
            hyper::Method::POST,
            "/validate",
            Some("application/json"),
            truncated[..truncated.len() - 40].to_vec(),
        )
        .await);
    say(c
        .send(
            hyper::Method::POST,
            "/validate",
            Some("text/plain"),
            truncated.clone(),
        )
        .await);
    // A ledger edit whose entry is broken and quotes the canary.
    let cm = |data: serde_json::Value| {
        serde_json::json!({"kind": "ConfigMap", "apiVersion": "v1",
        "metadata": {"name": "jitgate-approvals", "labels": {"jitgate.dev/approvals": "true"}}, "data": data})
    };
    let mut ledger = Req::secret_update().review();
    ledger["request"]["resource"] =
        serde_json::json!({"group": "", "version": "v1", "resource": "configmaps"});
    ledger["request"]["oldObject"] = cm(serde_json::json!({}));
    ledger["request"]["object"] = cm(serde_json::json!({"k": format!("user: {CANARY}\ncolour: [{CANARY}")}));
    say(c.review(&ledger).await);

    let all = everything_said(&h, &logs, &replies);
    assert!(replies.len() >= 10);
    assert!(!all.contains(CANARY), "the canary leaked:\n{all}");
    h.stop().await;

    // `jitgate check` on the same review: its output and its errors.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r.json");
    let approvals = dir.path().join("a.yaml");
    std::fs::write(&approvals, approvals_manifest(&[])).unwrap();
    for body in [&review, &bad_type, &bad_op] {
        std::fs::write(&file, serde_json::to_vec(body).unwrap()).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
            .args(["check", "--request"])
            .arg(&file)
            .arg("--policies")
            .arg(std::path::Path::new(REPO).join("policies"))
            .arg("--approvals-file")
            .arg(&approvals)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!said.contains(CANARY), "jitgate check leaked the canary: {said}");
    }
}

#[tokio::test]
async fn an_approval_expires_on_time_with_no_change_to_any_file() {
    let soon = (jiff::Timestamp::now() + jiff::SignedDuration::from_millis(1500)).to_string();
    let approval = entry(&[])
        .lines()
        .map(|l| {
            if l.starts_with("expiresAt") {
                format!("expiresAt: \"{soon}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let h = Harness::start(&approvals_manifest(&[("short", &approval)])).await;
    let mut c = h.conn(Proto::H1).await;
    assert_eq!(c.decide(&Req::secret_update().review()).await["allowed"], true);
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let alice = Req::secret_update();
    assert_eq!(c.decide(&alice.review()).await["allowed"], false);
    assert_eq!(h.record_of(&alice.uid)["reason"], "approval_expired");
    h.stop().await;
}

#[tokio::test]
async fn certificate_files_deleted_while_serving_leave_the_current_one_in_use() {
    let h = Harness::start(&approvals_manifest(&[])).await;
    std::fs::remove_file(h.dir.path().join("tls.crt")).unwrap();
    std::fs::remove_file(h.dir.path().join("tls.key")).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut c = h.conn(Proto::H1).await;
    assert_eq!(c.decide(&Req::secret_update().review()).await["allowed"], false);
    assert_eq!(h.readyz().await, StatusCode::OK);
    h.stop().await;
}

async fn cluster(api: &ApiServer, max_staleness: Duration) -> Harness {
    Harness::start_cluster(api, max_staleness, |_| {}).await
}

async fn alice_allowed(h: &Harness) -> bool {
    let mut c = h.conn(Proto::H1).await;
    c.decide(&Req::secret_update().review()).await["allowed"] == true
}

#[tokio::test]
async fn a_410_storm_loses_no_change_and_grants_nothing_revoked() {
    let api = ApiServer::start().await;
    api.apply_approvals("jitgate-approvals", &[("grant", &entry(&[]))]);
    let h = cluster(&api, Duration::from_secs(300)).await;
    eventually(PATIENCE, || alice_allowed(&h)).await;
    for i in 0..30 {
        api.compact();
        if i == 10 {
            api.delete("jitgate-system", "jitgate-approvals");
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    eventually(PATIENCE, || async { !alice_allowed(&h).await }).await;
    api.apply_approvals("jitgate-approvals", &[("grant", &entry(&[]))]);
    eventually(PATIENCE, || alice_allowed(&h)).await;
    h.stop().await;
}

#[tokio::test]
async fn a_garbage_watch_stream_goes_stale_then_recovers_by_itself() {
    let api = ApiServer::start().await;
    api.set_bookmark_interval(Duration::from_millis(200));
    api.apply_approvals("jitgate-approvals", &[("grant", &entry(&[]))]);
    let h = cluster(&api, Duration::from_secs(2)).await;
    eventually(PATIENCE, || alice_allowed(&h)).await;
    // One line of garbage: what came after it on that stream cannot be trusted, so the
    // approvals go stale (no grants), and jitgate starts the watch over by itself.
    api.garble_watches();
    eventually(PATIENCE, || async { !alice_allowed(&h).await }).await;
    assert_eq!(h.records().last().unwrap()["reason"], "approvals_stale");
    eventually(Duration::from_secs(30), || alice_allowed(&h)).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_audit_sink_becomes_a_denial_before_the_api_servers_deadline_recorded_as_answered() {
    // A FIFO nobody reads: once its buffer is full, every write blocks.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("audit.fifo");
    let reader = fifo_read_end(&fifo);
    let h = Harness::start_with(Some(&approvals_manifest(&[("grant", &entry(&[]))])), |cfg| {
        cfg.audit_log = Some(fifo.clone());
    })
    .await;
    let held = reader.join().unwrap();
    // Requests keep coming, each on its own connection, until one is refused at its
    // deadline. A request whose record the writer took when the FIFO filled waits for it:
    // answering otherwise than a record that may still land would make them disagree.
    // Those that queue behind it are refused at their deadline.
    let updates = UntilRefused::default();
    let clients = updates
        .send_until_refused(3000, || h.conn(Proto::H1), update_review)
        .await;
    assert!(updates.refused(), "the sink never filled");
    let denial = updates.denial();
    let message = denial["status"]["message"].as_str().unwrap();
    assert!(message.contains("deadline_exceeded"), "{message}");
    assert_eq!(denial["status"]["code"], 503);

    // Read the FIFO now: the writer goes on, and every answer given has its one record.
    let read = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let read = read.clone();
        let mut held = held;
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 65536];
            while let Ok(n) = held.read(&mut buf) {
                if n == 0 {
                    break;
                }
                read.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
    }
    for client in clients {
        tokio::time::timeout(Duration::from_secs(60), client)
            .await
            .expect("a client waited for ever")
            .unwrap();
    }
    let answers = updates.take();
    let records = |read: &std::sync::Mutex<Vec<u8>>| -> Vec<serde_json::Value> {
        let text = String::from_utf8_lossy(&read.lock().unwrap()).to_string();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    eventually(PATIENCE, || {
        let n = records(&read).len();
        let expected = answers.len();
        async move { n >= expected }
    })
    .await;
    assert!(each_recorded_once(&answers, &records(&read)) >= 1);
    h.stop().await;
}

// --- Bounded under abuse: deadlines, slots and the body budget -------------------------

/// A metric's value in the server's /metrics, 0 when absent.
async fn metric(h: &Harness, line_start: &str) -> f64 {
    let mut c = h.conn(Proto::H1).await;
    let text = String::from_utf8(
        c.send(hyper::Method::GET, "/metrics", None, Vec::new())
            .await
            .body,
    )
    .unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The head of an HTTP/1.1 POST to /validate declaring `length` bytes of body.
fn h1_head(length: usize) -> Vec<u8> {
    format!(
        "POST /validate?timeout=10s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    .into_bytes()
}

/// Reads an HTTP/1.1 answer's status line and body (until the connection closes or the
/// declared length has arrived).
async fn h1_answer(tls: &mut (impl tokio::io::AsyncRead + Unpin)) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tls.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_string)
                })
                .and_then(|n| n.trim().parse::<usize>().ok());
            if length.is_some_and(|n| body.len() >= n) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&got).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// An HTTP/2 request to /validate whose body sends `first` and then nothing, for ever.
async fn h2_stalled(h: &Harness, first: Vec<u8>) -> hyper::Response<hyper::body::Incoming> {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    let tls = tls_connect(h.addr(), &[&h.certs.ca_pem], "localhost", b"h2", None)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let length = first.len() + 1000;
    let frames = futures::stream::iter([Ok::<_, std::convert::Infallible>(Frame::data(
        axum::body::Bytes::from(first),
    ))])
    .chain(futures::stream::pending());
    let request = hyper::Request::post("https://localhost/validate?timeout=10s")
        .header("content-type", "application/json")
        .header("content-length", length)
        .body(StreamBody::new(frames))
        .unwrap();
    sender.send_request(request).await.unwrap()
}

use futures::StreamExt;

#[tokio::test]
async fn a_body_that_never_completes_is_refused_within_the_body_deadline_and_recorded() {
    let body_timeout = Duration::from_secs(1);
    let h = Harness::start_with(Some(&approvals_manifest(&[("grant", &entry(&[]))])), |cfg| {
        cfg.limits.body_timeout = body_timeout;
    })
    .await;
    let slack = Duration::from_secs(5);
    // HTTP/1.1: headers and one byte of a 1000-byte body.
    let mut tls = tls_connect(h.addr(), &[&h.certs.ca_pem], "localhost", b"http/1.1", None)
        .await
        .unwrap();
    tls.write_all(&h1_head(1000)).await.unwrap();
    tls.write_all(b"{").await.unwrap();
    let (status, body) = tokio::time::timeout(body_timeout + slack, h1_answer(&mut tls))
        .await
        .expect("HTTP/1.1: no answer within the body deadline and slack");
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("did not arrive within 1 s"), "{body}");
    // HTTP/2: the same, on a stream.
    let response = tokio::time::timeout(body_timeout + slack, h2_stalled(&h, b"{".to_vec()))
        .await
        .expect("HTTP/2: no answer within the body deadline and slack");
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    let refused: Vec<_> = h.records().into_iter().filter(|r| r["code"] == 408).collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused.iter().all(|r| r["allowed"] == false));
    assert_eq!(metric(&h, "jitgate_request_bodies_timed_out_total").await, 2.0);
    h.stop().await;
}

#[tokio::test]
async fn when_idle_connections_hold_every_slot_the_api_servers_review_still_gets_in() {
    let h = Harness::start_with(Some(&approvals_manifest(&[("grant", &entry(&[]))])), |cfg| {
        cfg.limits.max_connections = 32;
    })
    .await;
    let mut idle = Vec::new();
    for i in 0..32 {
        idle.push(h.conn(if i % 2 == 0 { Proto::H2 } else { Proto::H1 }).await);
    }
    for proto in BOTH {
        let mut api = h.conn(proto).await;
        let review = tokio::time::timeout(
            Duration::from_secs(10),
            api.decide(&Req::secret_update().review()),
        )
        .await
        .expect("the review was not answered within the API server's timeout");
        assert_eq!(review["allowed"], true);
    }
    let evicted = metric(&h, "jitgate_connections_closed_total{why=\"evicted\"}").await;
    // At least the first: the API server's first connection closed after its review.
    assert!(evicted >= 1.0, "{evicted}");
    assert!(metric(&h, "jitgate_connections{caller=\"other\"}").await <= 32.0);
    drop(idle);
    h.stop().await;
}

#[tokio::test]
async fn with_a_client_ca_callers_without_a_certificate_never_take_the_api_servers_slots() {
    let cluster_ca = ClientCa::new("cluster CA");
    let apiserver = cluster_ca.issue("kube-apiserver");
    let ca_pem = cluster_ca.ca_pem.clone();
    let h = Harness::start_with(Some(&approvals_manifest(&[("grant", &entry(&[]))])), |cfg| {
        let path = cfg.tls_cert.with_file_name("client-ca.crt");
        std::fs::write(&path, ca_pem).unwrap();
        cfg.client_ca_file = Some(path);
        cfg.limits.max_connections = 16;
        cfg.limits.max_unverified_connections = 4;
    })
    .await;
    let mut api = Vec::new();
    for i in 0..12 {
        let mut c = h
            .conn_as(&apiserver, if i % 2 == 0 { Proto::H2 } else { Proto::H1 })
            .await;
        assert_eq!(c.decide(&Req::secret_update().review()).await["allowed"], true);
        api.push(c);
    }
    // Forty connections without a certificate, kept open: they share four slots.
    let mut others = Vec::new();
    for i in 0..40 {
        others.push(h.conn(if i % 2 == 0 { Proto::H2 } else { Proto::H1 }).await);
    }
    for c in &mut api {
        let answer = tokio::time::timeout(Duration::from_secs(10), c.decide(&Req::secret_update().review()))
            .await
            .expect("a kept-alive API server connection was not answered");
        assert_eq!(answer["allowed"], true);
    }
    assert!(metric(&h, "jitgate_connections{caller=\"other\"}").await <= 4.0);
    assert_eq!(metric(&h, "jitgate_connections{caller=\"verified\"}").await, 12.0);
    // Four more API server connections fill the house, closing those without one.
    for _ in 0..4 {
        let mut c = h.conn_as(&apiserver, Proto::H2).await;
        assert_eq!(c.decide(&Req::secret_update().review()).await["allowed"], true);
        api.push(c);
    }
    // With every slot the API server's, newcomers without a certificate are turned away,
    // and close none of its connections.
    for i in 0..40 {
        let _ = Conn::open(
            h.addr(),
            &h.certs.ca_pem,
            if i % 2 == 0 { Proto::H2 } else { Proto::H1 },
        )
        .await;
    }
    for c in &mut api {
        let answer = tokio::time::timeout(Duration::from_secs(10), c.decide(&Req::secret_update().review()))
            .await
            .expect("a kept-alive API server connection was not answered");
        assert_eq!(answer["allowed"], true);
    }
    drop(others);
    h.stop().await;
}

#[tokio::test]
async fn a_slow_fat_body_gives_way_when_the_budget_is_spent_and_the_api_servers_review_is_answered() {
    let limit = jitgate::server::BODY_LIMIT;
    let h = Harness::start_with(Some(&approvals_manifest(&[("grant", &entry(&[]))])), |cfg| {
        cfg.limits.body_budget = limit;
        cfg.limits.body_timeout = Duration::from_secs(30);
    })
    .await;
    // Nearly the whole budget in one body that then stops arriving.
    let mut fat = tls_connect(h.addr(), &[&h.certs.ca_pem], "localhost", b"http/1.1", None)
        .await
        .unwrap();
    fat.write_all(&h1_head(limit)).await.unwrap();
    fat.write_all(&vec![b' '; limit - 100]).await.unwrap();
    eventually(PATIENCE, || async {
        metric(&h, "jitgate_body_bytes_held").await >= (limit - 100) as f64
    })
    .await;
    tokio::time::sleep(jitgate::server::SLOW_BODY + Duration::from_millis(200)).await;
    for proto in BOTH {
        let mut api = h.conn(proto).await;
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            api.decide(&Req::secret_update().review()),
        )
        .await
        .expect("the review was not answered within the API server's timeout");
        assert_eq!(answer["allowed"], true, "{proto:?}: {answer}");
    }
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), h1_answer(&mut fat))
        .await
        .expect("the slow body was not answered");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("too many request bodies"), "{body}");
    assert!(metric(&h, "jitgate_body_bytes_held").await < 1024.0 * 1024.0);
    h.stop().await;
}
