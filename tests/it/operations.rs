//! Running jitgate for years: certificates rotated under load, `jitgate certs` for clusters
//! without cert-manager, and shutdowns that drop no request.

use crate::support::*;
use base64::Engine;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_jitgate");

/// Each connection attempt: the certificate served, or why it failed.
type Seen = Arc<Mutex<Vec<Result<Vec<u8>, String>>>>;
/// Each request: when it was sent, and whether it got a proper answer.
type Outcomes = Arc<Mutex<Vec<(Instant, Result<(), String>)>>>;

#[tokio::test]
async fn certificate_rotation_under_load_changes_the_served_certificate_without_a_failed_handshake() {
    let h = Harness::start(&approvals_manifest(&[])).await;
    let first = h.certs.ca_pem.clone();
    let second = Certs::new();
    let cas = [first.clone(), second.ca_pem.clone()];

    // A client that connects over and over, trusting both CAs, and keeps what it saw.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen: Seen = Arc::default();
    let client = {
        let (stop, seen, addr, cas) = (stop.clone(), seen.clone(), h.addr(), cas.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let cas: Vec<&str> = cas.iter().map(String::as_str).collect();
                let outcome = match Conn::open_as(addr, &cas, "localhost", Proto::H1).await {
                    Ok(mut c) => {
                        let reply = c.send(hyper::Method::GET, "/healthz", None, Vec::new()).await;
                        if reply.status == 200 {
                            Ok(c.peer)
                        } else {
                            Err(format!("HTTP {}", reply.status))
                        }
                    }
                    Err(e) => Err(e.to_string()),
                };
                seen.lock().unwrap().push(outcome);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let served = |seen: &Mutex<Vec<Result<Vec<u8>, String>>>| -> Option<Vec<u8>> {
        seen.lock()
            .unwrap()
            .iter()
            .rev()
            .find_map(|o| o.as_ref().ok().cloned())
    };
    eventually(Duration::from_secs(5), || async { served(&seen).is_some() }).await;
    let original = served(&seen).unwrap();

    // Rotate: write the new pair the way kubelet updates a Secret volume (rename into place).
    let write = |name: &str, text: &str| {
        let tmp = h.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, h.dir.path().join(name)).unwrap();
    };
    write("tls.key", &second.key_pem);
    write("tls.crt", &second.cert_pem);
    eventually(Duration::from_secs(10), || async {
        served(&seen).is_some_and(|p| p != original)
    })
    .await;
    let rotated = served(&seen).unwrap();

    // A broken pair (the new certificate with the old key), then garbage: refused, and the
    // rotated certificate is still what new connections get.
    write("tls.key", &h.certs.key_pem);
    tokio::time::sleep(Duration::from_millis(600)).await;
    write(
        "tls.crt",
        "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = seen.lock().unwrap().len();
    eventually(Duration::from_secs(5), || async {
        seen.lock().unwrap().len() > before + 5
    })
    .await;
    assert_eq!(
        served(&seen).unwrap(),
        rotated,
        "the refused pair did not replace the good one"
    );

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    client.await.unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let failures: Vec<&String> = seen.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} handshakes failed: {failures:?}",
        failures.len(),
        seen.len()
    );
    assert!(seen.len() > 50, "only {} connections made", seen.len());
    h.stop().await;
}

#[tokio::test]
async fn certs_makes_a_serving_certificate_that_verifies_with_the_ca_it_printed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let run = |force: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["certs", "--out"]).arg(&out).args([
            "--service",
            "jitgate",
            "--namespace",
            "jitgate-system",
            "--days",
            "30",
        ]);
        if force {
            cmd.arg("--force");
        }
        cmd.output().unwrap()
    };
    let made = run(false);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let bundle = String::from_utf8(made.stdout).unwrap();
    let ca_pem = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(bundle.trim())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(ca_pem, std::fs::read_to_string(out.join("ca.crt")).unwrap());

    // Serve with it, and reach it by its in-cluster name, trusting only the printed CA.
    let (cert, key) = (out.join("tls.crt"), out.join("tls.key"));
    let h = Harness::start_with(Some(&approvals_manifest(&[])), |cfg| {
        cfg.tls_cert = cert;
        cfg.tls_key = key;
    })
    .await;
    for name in [
        "jitgate.jitgate-system.svc",
        "jitgate.jitgate-system.svc.cluster.local",
    ] {
        let mut c = Conn::open_as(h.addr(), &[&ca_pem], name, Proto::H1)
            .await
            .unwrap();
        assert_eq!(c.decide(&Req::secret_update().review()).await["allowed"], false);
    }
    assert!(
        Conn::open_as(h.addr(), &[&ca_pem], "other.example.com", Proto::H1)
            .await
            .is_err()
    );
    h.stop().await;

    // An existing key is not replaced by accident.
    let again = run(false);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert!(run(true).status.success());
}

#[tokio::test]
async fn sigterm_drains_every_request_sent_before_the_drain_ends() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::new();
    std::fs::write(dir.path().join("tls.crt"), &certs.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &certs.key_pem).unwrap();
    std::fs::write(dir.path().join("approvals.yaml"), approvals_manifest(&[])).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let drain = Duration::from_millis(1500);
    let mut child = Command::new(BIN)
        .arg("serve")
        .args([
            "--listen",
            &addr.to_string(),
            "--log-format",
            "text",
            "--shutdown-drain",
            "1500ms",
        ])
        .arg("--tls-cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .arg("--approvals-file")
        .arg(dir.path().join("approvals.yaml"))
        .arg("--policies")
        .arg(std::path::Path::new(REPO).join("policies"))
        .arg("--audit-log")
        .arg(dir.path().join("audit.jsonl"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ca = certs.ca_pem.clone();
    eventually(Duration::from_secs(20), || {
        let ca = ca.clone();
        async move {
            match Conn::open(addr, &ca, Proto::H1).await {
                Ok(mut c) => {
                    c.send(hyper::Method::GET, "/readyz", None, Vec::new())
                        .await
                        .status
                        == 200
                }
                Err(_) => false,
            }
        }
    })
    .await;

    // Four keep-alive clients send a steady stream of reviews, as the API server does.
    // Each outcome is kept with the moment its request was sent.
    let outcomes: Outcomes = Arc::default();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (outcomes, ca) = (outcomes.clone(), ca.clone());
        clients.push(tokio::spawn(async move {
            let Ok(mut c) = Conn::open(addr, &ca, Proto::H1).await else {
                return;
            };
            loop {
                let review = serde_json::to_vec(&Req::secret_update().review()).unwrap();
                let sent = Instant::now();
                let result = tokio::time::timeout(
                    Duration::from_secs(5),
                    c.try_send(
                        hyper::Method::POST,
                        "/validate?timeout=10s",
                        Some("application/json"),
                        review,
                    ),
                )
                .await;
                let outcome = match result {
                    Ok(Ok(reply)) if reply.status == 200 && reply.json()["response"]["allowed"] == false => {
                        Ok(())
                    }
                    Ok(Ok(reply)) => Err(format!("HTTP {}", reply.status)),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err("no answer within 5 s".into()),
                };
                let failed = outcome.is_err();
                outcomes.lock().unwrap().push((sent, outcome));
                if failed {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let term = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );

    // During the drain: not ready, still answering.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut probe = Conn::open(addr, &ca, Proto::H1).await.unwrap();
    assert_eq!(
        probe
            .send(hyper::Method::GET, "/readyz", None, Vec::new())
            .await
            .status,
        503
    );
    drop(probe);

    for c in clients {
        let _ = tokio::time::timeout(Duration::from_secs(20), c).await;
    }
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let outcomes = outcomes.lock().unwrap();
    let drain_end = term + drain;
    let before_end: Vec<_> = outcomes
        .iter()
        .filter(|(sent, _)| *sent < drain_end - Duration::from_millis(100))
        .collect();
    let after_term = before_end.iter().filter(|(sent, _)| *sent > term).count();
    let failed: Vec<_> = before_end
        .iter()
        .filter_map(|(sent, o)| o.as_ref().err().map(|e| (sent.duration_since(term), e)))
        .collect();
    assert!(
        failed.is_empty(),
        "requests sent before the drain ended failed: {failed:?}"
    );
    assert!(
        after_term > 20,
        "only {after_term} requests were sent during the drain"
    );
}
