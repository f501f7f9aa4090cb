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
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::File::open(fifo).unwrap())
    };
    let h = Harness::start_with(Some(&approvals_manifest(&[("grant", &entry(&[]))])), |cfg| {
        cfg.audit_log = Some(fifo.clone());
    })
    .await;
    let held = reader.join().unwrap();
    // Requests keep coming, each on its own connection, until one is refused at its
    // deadline. A request whose record the writer took when the FIFO filled waits for it:
    // answering otherwise than a record that may still land would make them disagree.
    // Those that queue behind it are refused at their deadline.
    let answers = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..3000 {
        if refused.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        let (mut c, answers, refused) = (h.conn(Proto::H1).await, answers.clone(), refused.clone());
        clients.push(tokio::spawn(async move {
            let review = serde_json::to_vec(&Req::secret_update().review()).unwrap();
            let reply = c
                .send(
                    hyper::Method::POST,
                    "/validate?timeout=1s",
                    Some("application/json"),
                    review,
                )
                .await;
            assert_eq!(reply.status, StatusCode::OK);
            if reply.json()["response"]["allowed"] == false {
                refused.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            answers.lock().unwrap().push(reply);
        }));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        refused.load(std::sync::atomic::Ordering::Relaxed),
        "the sink never filled"
    );
    let denial = answers
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.json()["response"]["allowed"] == false)
        .map(|r| r.json()["response"].clone())
        .unwrap();
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
    let answers = std::mem::take(&mut *answers.lock().unwrap());
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
    let records = records(&read);
    let mut refusals = 0;
    for reply in &answers {
        let uid = reply.json()["response"]["uid"].as_str().unwrap().to_string();
        let mine: Vec<_> = records.iter().filter(|r| r["uid"] == uid.as_str()).collect();
        assert_eq!(mine.len(), 1, "one record for {uid}");
        assert_record_is_the_answer(mine[0], reply);
        refusals += usize::from(mine[0]["reason"] == "deadline_exceeded");
    }
    assert!(refusals >= 1);
    h.stop().await;
}
