//! The `jitgate` binary itself: `serve` on its embedded defaults in a fresh directory, and
//! `check` on request files.

use crate::support::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_jitgate");
const CAPTURED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/admission/captured");

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `jitgate serve` on its embedded defaults in `dir`, with the shipped policies and
/// `approvals` as its approvals file; returns the child and its port.
fn serve_in(dir: &Path, approvals: &str, extra: &[&str]) -> (Child, u16) {
    serve_shell(dir, approvals, "", extra)
}

/// [`serve_in`], with its stdout redirected by the shell as `stdout` says (`>/dev/null`,
/// `>&-`, `2>&1`; nothing for a pipe); its stderr a pipe.
fn serve_shell(dir: &Path, approvals: &str, stdout: &str, extra: &[&str]) -> (Child, u16) {
    copy_dir(&Path::new(REPO).join("policies"), &dir.join("policies"));
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    std::fs::write(dir.join("manifests/approvals.yaml"), approvals).unwrap();
    let port = free_port();
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "port=$1; shift; exec \"$0\" serve --listen 127.0.0.1:$port \"$@\" {stdout}"
        ))
        .arg(BIN)
        .arg(port.to_string())
        .args(extra)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, port)
}

/// Waits for every client's answer (a watchdog, not a timing), then stops `child` with
/// SIGTERM and sees it end cleanly.
async fn answered_then_stopped(clients: Vec<tokio::task::JoinHandle<()>>, child: &mut Child) {
    for client in clients {
        tokio::time::timeout(Duration::from_secs(240), client)
            .await
            .expect("a client waited for ever")
            .unwrap();
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// `serve` with one approval (alice's, `good`), once it listens: its log lines as they
/// come, those seen so far, and how to reach it.
struct Served {
    child: Child,
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
    ca: String,
    addr: std::net::SocketAddr,
}

/// [`Served`] in `dir`, with `extra` arguments.
fn serve_good(dir: &Path, extra: &[&str]) -> Served {
    let approvals = approvals_manifest(&[("good", &entry(&[]))]);
    let (mut child, port) = serve_in(dir, &approvals, extra);
    let rx = lines_of(&mut child);
    let mut seen = Vec::new();
    wait_for_line(&rx, &mut seen, "jitgate listening");
    Served {
        child,
        rx,
        seen,
        ca: std::fs::read_to_string(dir.join("certs-dev/ca.crt")).unwrap(),
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
    }
}

/// Collects a child's stderr lines as they come.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

fn wait_for_line(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>, needle: &str) -> String {
    if let Some(line) = seen.iter().find(|l| l.contains(needle)) {
        return line.clone();
    }
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no log line with {needle:?}; saw:\n{}", seen.join("\n")));
        seen.push(line.clone());
        if line.contains(needle) {
            return line;
        }
    }
}

/// `serve` with one approval (alice's, `good`), its stdout redirected by the shell as
/// `stdout` says; and its port.
fn serve_redirected(dir: &Path, stdout: &str, extra: &[&str]) -> (Child, u16) {
    serve_shell(dir, &approvals_manifest(&[("good", &entry(&[]))]), stdout, extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_while_stderr_takes_no_log_lines_and_counts_those_it_drops() {
    // stderr a pipe whose reader stops once serve listens; every malformed request logs a
    // line. Records go to a file, so that only stderr is stuck.
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port) = serve_redirected(dir.path(), ">/dev/null", &["--audit-log", "audit.jsonl"]);
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("jitgate listening") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "serve ended");
    }
    let ca = std::fs::read_to_string(dir.path().join("certs-dev/ca.crt")).unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // More malformed requests than the lines serve holds for stderr, and than its pipe
    // takes: each is answered (a watchdog, not a timing).
    let malformed = (0..16)
        .map(|_| {
            let ca = ca.clone();
            tokio::spawn(async move {
                let mut c = Conn::open(addr, &ca, Proto::H1).await.unwrap();
                for _ in 0..(jitgate::telemetry::LINES_HELD / 16 + 100) {
                    let reply = c
                        .send(
                            hyper::Method::POST,
                            "/validate?timeout=10s",
                            Some("application/json"),
                            b"{".to_vec(),
                        )
                        .await;
                    assert_eq!(reply.status, hyper::StatusCode::BAD_REQUEST);
                }
            })
        })
        .collect::<Vec<_>>();
    for m in malformed {
        tokio::time::timeout(Duration::from_secs(120), m)
            .await
            .expect("a malformed request waited on stderr")
            .unwrap();
    }
    // Reviews are answered as ever, and the lines dropped are counted.
    let reply = tokio::time::timeout(Duration::from_secs(30), one_update(addr, &ca, "10s"))
        .await
        .expect("a review waited on stderr");
    assert_eq!(refused_for(&reply), None);
    let dropped = metric(addr, &ca, "jitgate_log_lines_dropped_total").await;
    assert!(dropped >= 1.0, "{dropped}");

    // stderr read again: the lines held come, whole, and serve stops cleanly.
    let reading = std::thread::spawn(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        rest
    });
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    let rest = reading.join().unwrap();
    let refused = rest
        .lines()
        .filter(|l| l.contains("request refused before a review was read"))
        .count();
    assert!(refused > 1000, "{refused} lines of refusals read");
}

#[test]
fn serve_refuses_to_start_when_its_records_would_be_kept_nowhere() {
    // Without --audit-log, stdout is the log of record: on the null device, or closed at
    // start (the process then finds it on the null device), every answer would go
    // unrecorded.
    let dir = tempfile::tempdir().unwrap();
    let serve = |stdout: &str, extra: &[&str]| serve_redirected(dir.path(), stdout, extra).0;
    // A watchdog, not a timing: a server that starts would run for ever.
    let refused = |mut child: Child, what: &str| {
        for _ in 0..200 {
            if child.try_wait().unwrap().is_some() {
                return child.wait_with_output().unwrap();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        child.kill().unwrap();
        panic!("{what}: serve started");
    };
    for (stdout, log) in [
        (">/dev/null", None),
        (">&-", None),
        (">/dev/zero", None),
        (">/dev/null", Some("/dev/null")),
    ] {
        let extra: Vec<&str> = log.map(|l| vec!["--audit-log", l]).unwrap_or_default();
        let out = refused(serve(stdout, &extra), stdout);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stdout}: {said}");
        assert!(
            said.contains("decision records would be kept nowhere"),
            "{stdout}: {said}"
        );
        assert!(!said.contains("jitgate listening"), "{stdout}: {said}");
    }
    // Nor is the audit log stdout itself (each record would be written there twice), or
    // stderr, whose log lines would land inside records.
    for (log, what) in [("/dev/stdout", "is stdout"), ("/dev/stderr", "is stderr")] {
        let out = refused(serve("", &["--audit-log", log]), log);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{log}: {said}");
        assert!(said.contains(what), "{log}: {said}");
        assert!(!said.contains("jitgate listening"), "{log}: {said}");
    }
    // With a log file, stdout on the null device is fine: records go to the file.
    let mut child = serve(">/dev/null", &["--audit-log", "audit.jsonl"]);
    let rx = lines_of(&mut child);
    wait_for_line(&rx, &mut Vec::new(), "jitgate listening");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn serve_runs_on_its_embedded_defaults_in_a_fresh_directory() {
    let dir = tempfile::tempdir().unwrap();
    let approvals = approvals_manifest(&[
        ("good", &entry(&[])),
        ("broken-entry", "user: alice\ncolour: blue\n"),
    ]);
    let (mut child, port) = serve_in(dir.path(), &approvals, &[]);
    let rx = lines_of(&mut child);
    let mut seen = Vec::new();

    let generated = wait_for_line(&rx, &mut seen, "generated a development CA");
    let generated: serde_json::Value = serde_json::from_str(&generated).expect("logs are JSON by default");
    assert_eq!(generated["level"], "INFO");
    for file in ["ca.crt", "tls.crt", "tls.key"] {
        assert!(dir.path().join("certs-dev").join(file).exists(), "{file}");
    }
    let ignored = wait_for_line(&rx, &mut seen, "approval entry ignored");
    assert!(ignored.contains("jitgate-approvals/broken-entry"), "{ignored}");
    assert!(ignored.contains("colour"), "the log names the reason: {ignored}");
    wait_for_line(&rx, &mut seen, "jitgate listening");

    // A client that trusts only the generated CA gets a decision.
    let ca = std::fs::read_to_string(dir.path().join("certs-dev/ca.crt")).unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = Conn::open(addr, &ca, Proto::H1).await.unwrap();
    let alice = Req::secret_update();
    assert_eq!(c.decide(&alice.review()).await["allowed"], true);
    drop(c);

    // SIGTERM: it drains and exits cleanly.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");

    // Decision records went to stdout, one JSON line each.
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    let record: serde_json::Value = serde_json::from_str(stdout.lines().next().expect("a record")).unwrap();
    assert_eq!(record["uid"], alice.uid.as_str());
    assert_eq!(record["reason"], "approved");
}

#[tokio::test]
async fn a_full_disk_answers_audit_unavailable_and_stdout_records_that_answer() {
    let dir = tempfile::tempdir().unwrap();
    let extra = ["--audit-log", "/dev/full", "--shutdown-drain", "0s"];
    let Served {
        mut child,
        rx,
        mut seen,
        ca,
        addr,
    } = serve_good(dir.path(), &extra);
    let mut c = Conn::open(addr, &ca, Proto::H1).await.unwrap();
    // Approved, so it would be allowed: without its record it is refused.
    let alice = Req::secret_update();
    let reply = c.review(&alice.review()).await;
    let response = reply.json()["response"].clone();
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 503);
    drop(c);
    let logged = wait_for_line(&rx, &mut seen, "audit log not written");
    assert!(logged.contains("audit_unavailable"), "{logged}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    let records: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        records.len(),
        1,
        "exactly one record, and it is the refusal: {stdout}"
    );
    assert_eq!(records[0]["reason"], "audit_unavailable");
    assert_record_is_the_answer(&records[0], &reply);
}

#[test]
fn serve_refuses_to_start_on_a_broken_policy_naming_file_and_document() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&Path::new(REPO).join("policies"), &dir.path().join("policies"));
    let bad = "apiVersion: jitgate.dev/v1alpha1\nkind: GatePolicy\nmetadata: { name: x }\nspec:\n  rules: []\n  approval: { minApprovers: 1, maxDuration: 1h }\n  colour: blue\n";
    std::fs::write(dir.path().join("policies/zz-bad.yaml"), format!("---\n{bad}")).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "text"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("zz-bad.yaml, document 1"), "{stderr}");
    assert!(stderr.contains("colour"), "{stderr}");
}

#[test]
fn serve_help_lists_every_flag_with_its_environment_variable() {
    let out = Command::new(BIN).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for (flag, env) in [
        ("--listen", "JITGATE_LISTEN"),
        ("--tls-cert", "JITGATE_TLS_CERT"),
        ("--tls-key", "JITGATE_TLS_KEY"),
        ("--policies", "JITGATE_POLICIES"),
        ("--approvals-file", "JITGATE_APPROVALS_FILE"),
        ("--audit-log", "JITGATE_AUDIT_LOG"),
        ("--audit-queue", "JITGATE_AUDIT_QUEUE"),
        ("--log-format", "JITGATE_LOG_FORMAT"),
    ] {
        assert!(
            help.contains(flag) && help.contains(env),
            "{flag} / {env} missing:\n{help}"
        );
    }
}

#[test]
fn serve_refuses_an_audit_queue_of_no_records() {
    for (value, says) in [("0", "must be at least 1"), ("many", "not a number of places")] {
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--audit-queue", value])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--audit-queue") && stderr.contains(says),
            "{stderr}"
        );
    }
}

/// A captured review from a real API server, moved into namespace `ns`.
fn captured_in(file: &str, ns: &str, dir: &Path) -> std::path::PathBuf {
    let mut review: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Path::new(CAPTURED).join(file)).unwrap()).unwrap();
    review["request"]["namespace"] = ns.into();
    let path = dir.join(file);
    std::fs::write(&path, serde_json::to_vec(&review).unwrap()).unwrap();
    path
}

fn check(request: &Path, approvals: &Path, now: &str) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(["check", "--request"])
        .arg(request)
        .arg("--policies")
        .arg(Path::new(REPO).join("policies"))
        .arg("--approvals-file")
        .arg(approvals)
        .args(["--now", now])
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_decides_request_files_with_exit_status_0_1_2() {
    let dir = tempfile::tempdir().unwrap();
    // The captured `kubectl patch secret db-pass` by kubernetes-admin.
    let in_prod = captured_in("secret-update-via-kubectl-patch.json", "prod", dir.path());
    let default_dir = dir.path().join("default");
    std::fs::create_dir_all(&default_dir).unwrap();
    let in_default = captured_in("secret-update-via-kubectl-patch.json", "default", &default_dir);
    let grant = "user: kubernetes-admin\nresource: secrets\nnamespace: prod\nname: db-pass\nexpiresAt: \"2026-11-21T22:00:00Z\"\nreason: \"INC-9: rotate\"\napprovedBy: [bob]\n";
    let approvals = dir.path().join("approvals.yaml");
    std::fs::write(&approvals, approvals_manifest(&[("admin-rotate", grant)])).unwrap();

    // Within the approval's life: allowed, exit 0, the response review on stdout.
    let (code, stdout, _) = check(&in_prod, &approvals, "2026-11-21T21:00:00Z");
    assert_eq!(code, 0, "{stdout}");
    let review: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(review["response"]["allowed"], true);
    assert_eq!(review["response"]["uid"], "1e01b949-9a2e-4a94-bcaa-c1300d4e9cfa");

    // After it expired: denied, exit 1, with the message.
    let (code, stdout, _) = check(&in_prod, &approvals, "2026-11-21T22:00:01Z");
    assert_eq!(code, 1);
    let review: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let message = review["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("expired at 2026-11-21T22:00:00Z"), "{message}");

    // Ungated namespace: allowed whatever the approvals.
    let (code, _, _) = check(&in_default, &approvals, "2026-11-21T23:00:00Z");
    assert_eq!(code, 0);

    // Errors: a file that is not a review, a missing file, a broken policy directory.
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{\"kind\":\"Pod\"}").unwrap();
    let (code, _, stderr) = check(&junk, &approvals, "2026-11-21T21:00:00Z");
    assert_eq!(code, 2);
    assert!(
        stderr.contains("junk.json") && stderr.contains("apiVersion"),
        "{stderr}"
    );
    let (code, _, stderr) = check(
        &dir.path().join("missing.json"),
        &approvals,
        "2026-11-21T21:00:00Z",
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("missing.json"), "{stderr}");
}

#[test]
fn check_says_when_an_approvals_configmap_is_ignored_for_its_missing_label() {
    let dir = tempfile::tempdir().unwrap();
    let in_prod = captured_in("secret-update-via-kubectl-patch.json", "prod", dir.path());
    let grant = "user: kubernetes-admin\nresource: secrets\nnamespace: prod\nexpiresAt: \"2026-11-21T22:00:00Z\"\nreason: r\napprovedBy: [bob]\n";
    let unlabelled = approvals_manifest(&[("g", grant)]).replace("jitgate.dev/approvals", "team");
    let approvals = dir.path().join("approvals.yaml");
    std::fs::write(&approvals, unlabelled).unwrap();
    let (code, _, stderr) = check(&in_prod, &approvals, "2026-11-21T21:00:00Z");
    assert_eq!(code, 1, "its entries grant nothing");
    assert!(
        stderr.contains("ConfigMap jitgate-approvals ignored")
            && stderr.contains("lacks the label jitgate.dev/approvals"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("{\"timestamp\""),
        "plain text for a person: {stderr}"
    );
}

#[test]
fn check_decides_a_subject_access_review_as_the_authorize_endpoint_does() {
    let dir = tempfile::tempdir().unwrap();
    let sar = Path::new(REPO).join("tests/fixtures/authorization/captured/secret-get-bob.json");
    let read = "user: bob\nresource: secrets\nnamespace: prod\nname: db-pass\nverbs: [get]\nexpiresAt: \"2026-11-21T22:00:00Z\"\nreason: \"INC-9: read\"\napprovedBy: [carol]\n";
    let approvals = dir.path().join("approvals.yaml");
    std::fs::write(&approvals, approvals_manifest(&[("bob-read", read)])).unwrap();

    // Approved: no opinion (RBAC decides), exit 0, and no change line: a read has none.
    let (code, stdout, stderr) = check(&sar, &approvals, "2026-11-21T21:00:00Z");
    assert_eq!(code, 0, "{stdout}{stderr}");
    let review: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(review["kind"], "SubjectAccessReview");
    assert_eq!(review["status"], serde_json::json!({"allowed": false}));
    assert!(!stderr.contains("change:"), "{stderr}");

    // Expired: denied with the reason kubectl would append, exit 1.
    let (code, stdout, _) = check(&sar, &approvals, "2026-11-21T22:00:01Z");
    assert_eq!(code, 1);
    let review: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(review["status"]["denied"], true);
    let reason = review["status"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("approval \"jitgate-approvals/bob-read\" expired"),
        "{reason}"
    );
}

#[test]
fn check_decides_every_captured_connect_and_scale_review_like_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let approvals = dir.path().join("approvals.yaml");
    std::fs::write(&approvals, approvals_manifest(&[])).unwrap();
    for file in [
        "pods-exec-connect.json",
        "pods-attach-connect.json",
        "deployment-scale-subresource-update.json",
        "deployment-update-via-set-image-patch.json",
        "deployment-update-via-rollout-restart.json",
        "deployment-delete-oldobject.json",
        "secret-delete-oldobject.json",
    ] {
        let in_prod = captured_in(file, "prod", dir.path());
        let (code, stdout, stderr) = check(&in_prod, &approvals, "2026-11-21T21:00:00Z");
        assert_eq!(code, 1, "{file} is gated in prod: {stdout}{stderr}");
        let in_dev = captured_in(file, "dev", dir.path());
        let (code, _, _) = check(&in_dev, &approvals, "2026-11-21T21:00:00Z");
        assert_eq!(code, 0, "{file} is not gated in dev");
    }
}

#[test]
fn check_prints_the_change_fingerprint_and_a_pinned_approval_allows_only_that_change() {
    let dir = tempfile::tempdir().unwrap();
    // The captured `kubectl scale deployment web --replicas=…` by kubernetes-admin.
    let scale = captured_in("deployment-scale-subresource-update.json", "prod", dir.path());
    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, approvals_manifest(&[])).unwrap();
    let (code, stdout, stderr) = check(&scale, &empty, "2026-11-21T21:00:00Z");
    assert_eq!(code, 1);
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("change: "))
        .unwrap_or_else(|| panic!("no change line in {stderr}"));
    let fingerprint = line.split_whitespace().next().unwrap();
    assert!(
        fingerprint.starts_with("sha256:") && fingerprint.len() == 71,
        "{line}"
    );
    assert!(line.contains("replace /spec/replicas"), "{line}");
    // The denial shows it too, ready to pin.
    let message =
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .to_string();
    assert!(
        message.contains(&format!("add change: \"{fingerprint}\"")),
        "{message}"
    );

    let pinned = |pin: &str| {
        let grant = format!(
            "user: kubernetes-admin\nresource: deployments/scale\napiGroup: apps\nnamespace: prod\nname: web\nchange: \"{pin}\"\nexpiresAt: \"2026-11-21T22:00:00Z\"\nreason: \"INC-9: scale\"\napprovedBy: [bob]\n"
        );
        let path = dir.path().join("pinned.yaml");
        std::fs::write(&path, approvals_manifest(&[("scale", &grant)])).unwrap();
        check(&scale, &path, "2026-11-21T21:00:00Z")
    };
    assert_eq!(pinned(fingerprint).0, 0);
    let other = format!("sha256:{}", "0".repeat(64));
    let (code, stdout, _) = pinned(&other);
    assert_eq!(code, 1);
    assert!(stdout.contains("allows only the change"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_a_pipe_whose_reader_stops_answers_at_the_deadline_and_gets_every_record_whole_in_order() {
    // Records to stdout only, as the shipped Deployment writes them; stdout is a pipe.
    let dir = tempfile::tempdir().unwrap();
    let Served {
        mut child,
        rx,
        mut seen,
        ca,
        addr,
    } = serve_good(dir.path(), &["--shutdown-drain", "0s"]);

    // Nobody reads stdout: once the pipe is full, records wait. Requests keep coming, each
    // on its own connection, until one is refused at its deadline.
    let updates = UntilRefused::default();
    let clients = updates
        .send_until_refused(
            3000,
            || async { Conn::open(addr, &ca, Proto::H1).await.unwrap() },
            update_review,
        )
        .await;
    assert!(updates.refused(), "the pipe never filled");
    let denial = updates.denial();
    let message = denial["status"]["message"].as_str().unwrap();
    assert!(message.contains("deadline_exceeded"), "{message}");

    // Read stdout now: every answer given has its one record, whole, in chain order.
    let mut stdout = child.stdout.take().unwrap();
    let reading = std::thread::spawn(move || {
        let mut read = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut read).unwrap();
        read
    });
    answered_then_stopped(clients, &mut child).await;
    seen.extend(rx.iter());
    // Which path wrote the records does not change what is asserted here, but what is
    // logged: the runtime writes until the pipe is full and the writer thread finishes the
    // rest and says so; unless a write on the runtime took over 10 ms (a loaded machine),
    // which sends the batches to the writer thread for 10 s, perhaps all of them.
    assert!(
        !seen.iter().any(|l| l.contains("stderr is stdout's pipe")),
        "stderr is a pipe of its own here"
    );
    if !seen.iter().any(|l| l.contains("an audit write was slow")) {
        assert!(
            seen.iter().any(|l| l.contains("stdout's reader was behind")),
            "the runtime wrote until the pipe was full; saw:\n{}",
            seen.join("\n")
        );
    }
    let read = reading.join().unwrap();
    let records = records_in(&read);
    assert!(each_recorded_once(&updates.take(), &records) >= 1);
    let said = verify_stdout(&read, records.len());
    assert!(said.contains("ok: 1 chain(s), 1 intact, 0 broken"), "{said}");
}

/// A metric's value in the server's /metrics at `addr`, 0 when absent.
async fn metric(addr: std::net::SocketAddr, ca: &str, name: &str) -> f64 {
    let mut c = Conn::open(addr, ca, Proto::H1).await.unwrap();
    let reply = c.send(hyper::Method::GET, "/metrics", None, Vec::new()).await;
    let text = String::from_utf8(reply.body).unwrap();
    text.lines()
        .find(|l| l.split(' ').next() == Some(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// One gated update (alice's, which an approval allows) with the API server's `timeout`,
/// on a connection of its own.
async fn one_update(addr: std::net::SocketAddr, ca: &str, timeout: &str) -> Reply {
    one_review(addr, ca, timeout, update_review()).await
}

/// One review with `timeout`, on a connection of its own; it must be answered (200).
async fn one_review(addr: std::net::SocketAddr, ca: &str, timeout: &str, review: Vec<u8>) -> Reply {
    let mut c = Conn::open(addr, ca, Proto::H1).await.unwrap();
    let reply = c
        .send(
            hyper::Method::POST,
            &format!("/validate?timeout={timeout}"),
            Some("application/json"),
            review,
        )
        .await;
    assert_eq!(reply.status, hyper::StatusCode::OK);
    reply
}

/// Sends `one()` until an answer is refused `audit_unavailable` for the records held,
/// fewer than `most` times (past that the story fails, naming the places held); the
/// answers, the refusal last.
async fn until_audit_unavailable<F: std::future::Future<Output = Reply>>(
    addr: std::net::SocketAddr,
    ca: &str,
    most: usize,
    mut one: impl FnMut() -> F,
) -> Vec<Reply> {
    let mut replies = Vec::new();
    while replies
        .last()
        .is_none_or(|r| refused_for(r).as_deref() != Some("audit_unavailable"))
    {
        assert!(
            replies.len() < most,
            "nothing was refused for the records held; {} places held",
            metric(addr, ca, HELD).await
        );
        replies.push(one().await);
    }
    replies
}

/// Why an update was refused, if it was.
fn refused_for(reply: &Reply) -> Option<String> {
    let response = &reply.json()["response"];
    (response["allowed"] == false).then(|| {
        let message = response["status"]["message"].as_str().unwrap();
        ["audit_unavailable", "deadline_exceeded"]
            .into_iter()
            .find(|r| message.contains(r))
            .unwrap_or(message)
            .to_string()
    })
}

/// Places taken in the bound of records held (`--audit-queue`).
const HELD: &str = "jitgate_audit_queue_held";

/// The end of a stalled-stdout story: stdout is read again, the clients still waiting get
/// their answers, the places held come back to 0, and 20 ordinary updates are allowed;
/// then the server stops (its log lines kept in `seen`). Returns all that stdout held and
/// the 20 replies.
async fn resume_stdout(
    child: &mut Child,
    clients: Vec<tokio::task::JoinHandle<()>>,
    addr: std::net::SocketAddr,
    ca: &str,
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
) -> (Vec<u8>, Vec<Reply>) {
    let mut stdout = child.stdout.take().unwrap();
    let reading = std::thread::spawn(move || {
        let mut read = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut read).unwrap();
        read
    });
    for client in clients {
        tokio::time::timeout(Duration::from_secs(60), client)
            .await
            .expect("a client waited for ever")
            .unwrap();
    }
    eventually(Duration::from_secs(60), || async {
        metric(addr, ca, HELD).await == 0.0
    })
    .await;
    let mut ordinary = Vec::new();
    for _ in 0..20 {
        let reply = one_update(addr, ca, "10s").await;
        assert_eq!(refused_for(&reply), None, "refused after the reader resumed");
        ordinary.push(reply);
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    seen.extend(rx.iter());
    (reading.join().unwrap(), ordinary)
}

/// Whether `reply` has its one record among `records`, saying the answer it gave (true);
/// refused at once for the records held (`audit_unavailable`), it has none, and its error
/// log line instead (false).
fn recorded_once_or_logged(reply: &Reply, records: &[serde_json::Value], seen: &[String]) -> bool {
    let uid = reply.json()["response"]["uid"].as_str().unwrap().to_string();
    let mine: Vec<_> = records.iter().filter(|r| r["uid"] == uid.as_str()).collect();
    let logged = seen
        .iter()
        .any(|l| l.contains("the audit queue is full") && l.contains(&format!("\"{uid}\"")));
    if refused_for(reply).as_deref() == Some("audit_unavailable") {
        assert!(mine.is_empty(), "a record for {uid}, refused before it was held");
        assert!(logged, "no log line for {uid}");
        false
    } else {
        assert_eq!(mine.len(), 1, "one record for {uid}");
        assert_record_is_the_answer(mine[0], reply);
        assert!(!logged);
        true
    }
}

/// `jitgate audit verify -` of what stdout held, which must pass with `records` records
/// from seq 1; what it said.
fn verify_stdout(read: &[u8], records: usize) -> String {
    let mut verify = Command::new(BIN)
        .args(["audit", "verify", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut verify.stdin.take().unwrap(), read).unwrap();
    let verified = verify.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&verified.stdout).into_owned();
    assert!(verified.status.success(), "{said}");
    assert!(said.contains(&format!("records: {records} (seq 1 at")), "{said}");
    said
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_a_pipe_whose_reader_stops_holds_at_most_audit_queue_records_and_refuses_the_rest_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let Served {
        mut child,
        rx,
        mut seen,
        ca,
        addr,
    } = serve_good(dir.path(), &["--shutdown-drain", "0s", "--audit-queue", "8"]);

    // Nobody reads stdout: once the pipe is full, records are held, each request's until
    // its record is written, whether it waits for it or answered at its deadline.
    let updates = UntilRefused::default();
    let clients = updates
        .send_until_refused(
            3000,
            || async { Conn::open(addr, &ca, Proto::H1).await.unwrap() },
            update_review,
        )
        .await;
    assert!(updates.refused(), "the pipe never filled");
    // Until 8 are held: then the next update is refused at once, its record not held.
    let mut replies = until_audit_unavailable(addr, &ca, 20, || one_update(addr, &ca, "1s")).await;
    assert_eq!(metric(addr, &ca, HELD).await, 8.0);
    // At the bound, every update is refused at once as audit_unavailable (not at its
    // deadline, as deadline_exceeded), and the records held do not grow.
    let more: Vec<_> = (0..50)
        .map(|_| {
            let ca = ca.clone();
            tokio::spawn(async move { one_update(addr, &ca, "1s").await })
        })
        .collect();
    let mut at_once = Vec::new();
    for m in more {
        let reply = m.await.unwrap();
        assert_eq!(refused_for(&reply).as_deref(), Some("audit_unavailable"));
        assert_eq!(reply.json()["response"]["status"]["code"], 503);
        at_once.push(reply);
    }
    assert_eq!(metric(addr, &ca, HELD).await, 8.0);
    // A request whose record is held and not yet taken to be written answers at its
    // deadline (deadline_exceeded), its record still held, to be written as that denial:
    // wait for one (a watchdog, not a timed assertion), so that the place of a record given
    // up must come back too once the reader resumes.
    let gave_up = |r: &Reply| refused_for(r).as_deref() == Some("deadline_exceeded");
    eventually(Duration::from_secs(60), || {
        let n = updates.count(gave_up) + replies.iter().filter(|r| gave_up(r)).count();
        async move { n >= 1 }
    })
    .await;
    assert_eq!(metric(addr, &ca, HELD).await, 8.0, "given up, still held");

    // Read stdout now: the records held are written, and updates are allowed again.
    let (read, replies_after) = resume_stdout(&mut child, clients, addr, &ca, &rx, &mut seen).await;
    replies.extend(replies_after);

    // Every answer given has its one record, whole, in chain order; but those refused at
    // once for the records held, which only their error log line records.
    let records = records_in(&read);
    let mut answers = updates.take();
    answers.extend(replies);
    answers.extend(at_once);
    let unrecorded = answers
        .iter()
        .filter(|reply| !recorded_once_or_logged(reply, &records, &seen))
        .count();
    assert!(unrecorded >= 51, "{unrecorded}");
    assert!(
        answers.iter().any(gave_up),
        "no held request answered at its deadline"
    );
    let said = verify_stdout(&read, records.len());
    assert!(said.contains("ok: 1 chain(s), 1 intact, 0 broken"), "{said}");
}

/// alice's gated update as anyone who reaches the port can forge it (no client CA here),
/// in groups of `group_bytes` bytes in all, 100 bytes each, which its record keeps.
fn forged_update(group_bytes: usize) -> Vec<u8> {
    let req = Req::secret_update().with(|r| {
        r.groups = (0..group_bytes / 100)
            .map(|i| format!("forged-{i:0>93}"))
            .collect();
    });
    serde_json::to_vec(&req.review()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_a_pipe_whose_reader_stops_holds_large_forged_reviews_by_their_size() {
    // 40 KiB of groups: each record takes 13 places of 4 KiB, so 64 places hold 4 of them.
    const GROUPS: usize = 40 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let Served {
        mut child,
        rx,
        mut seen,
        ca,
        addr,
    } = serve_good(dir.path(), &["--shutdown-drain", "0s", "--audit-queue", "64"]);

    // Nobody reads stdout, whose pipe (64 KiB) takes at most one such record whole: the
    // others are held, until one is refused.
    let forged = UntilRefused::default();
    let clients = forged
        .send_until_refused(
            500,
            || async { Conn::open(addr, &ca, Proto::H1).await.unwrap() },
            || forged_update(GROUPS),
        )
        .await;
    assert!(forged.refused(), "no forged review was refused");
    // Until no other fits: then each is refused at once, its record not held.
    let one_forged = || one_review(addr, &ca, "1s", forged_update(GROUPS));
    let mut refused = until_audit_unavailable(addr, &ca, 200, one_forged).await;
    for _ in 0..20 {
        let reply = one_forged().await;
        assert_eq!(refused_for(&reply).as_deref(), Some("audit_unavailable"));
        assert_eq!(reply.json()["response"]["status"]["code"], 503);
        refused.push(reply);
    }
    let held = metric(addr, &ca, HELD).await;
    assert!(held <= 64.0, "{held} places held");

    // Read stdout now: the records held are written, and ordinary updates are answered
    // and recorded again.
    let (read, ordinary) = resume_stdout(&mut child, clients, addr, &ca, &rx, &mut seen).await;
    let records = records_in(&read);
    let mut forged_answers = forged.take();
    forged_answers.extend(refused);
    let recorded = |reply: &Reply| recorded_once_or_logged(reply, &records, &seen);
    // Every forged review recorded was held or written before stdout's reader stopped:
    // at most the one the pipe took whole, and 4 held (13 places each of 64), not 64.
    let accepted = forged_answers.iter().filter(|r| recorded(r)).count();
    assert!(
        (1..=6).contains(&accepted),
        "{accepted} forged reviews recorded, of {}",
        forged_answers.len()
    );
    assert!(forged_answers.len() >= accepted + 21);
    for reply in &ordinary {
        assert!(recorded(reply));
    }
    verify_stdout(&read, records.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_a_pipe_that_stderr_shares_gets_records_over_4_kib_whole_amid_log_lines() {
    // `serve 2>&1 | a slow reader`: a pipe takes a write of over 4 KiB in parts when it is
    // full, so a log line written meanwhile would land inside the record.
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port) = serve_redirected(dir.path(), "2>&1", &["--shutdown-drain", "0s"]);
    let mut out = child.stdout.take().unwrap();
    // Read slowly, 700 bytes at a time: the pipe is full most of the time.
    let (listening_tx, listening) = mpsc::channel::<()>();
    let reading = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 700];
        let mut told = false;
        loop {
            match std::io::Read::read(&mut out, &mut buf) {
                Ok(0) | Err(_) => return all,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
            if !told && all.windows(17).any(|w| w == b"jitgate listening") {
                told = true;
                let _ = listening_tx.send(());
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    });
    listening
        .recv_timeout(Duration::from_secs(20))
        .expect("no listening line");
    let ca = std::fs::read_to_string(dir.path().join("certs-dev/ca.crt")).unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Records of 20 KiB (forged groups) on four connections, malformed requests that each
    // log a line on four others.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let ca = ca.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(addr, &ca, Proto::H1).await.unwrap();
            for _ in 0..150 {
                let (body, expect) = if i % 2 == 0 {
                    (forged_update(20 * 1024), hyper::StatusCode::OK)
                } else {
                    (b"{".to_vec(), hyper::StatusCode::BAD_REQUEST)
                };
                let reply = c
                    .send(
                        hyper::Method::POST,
                        "/validate?timeout=30s",
                        Some("application/json"),
                        body,
                    )
                    .await;
                assert_eq!(reply.status, expect);
            }
        }));
    }
    answered_then_stopped(tasks, &mut child).await;
    let all = reading.join().unwrap();
    // Every line whole: a log line or a record, never one inside the other.
    let (mut records, mut logs) = (0, 0);
    for line in all.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let value: serde_json::Value = serde_json::from_slice(line).unwrap_or_else(|_| {
            let text = String::from_utf8_lossy(line);
            panic!("a torn line: {}", &text[..text.len().min(300)])
        });
        if value.get("level").is_some() {
            logs += 1;
        } else {
            records += 1;
        }
    }
    assert!(
        records >= 1200 && logs >= 600,
        "{records} records, {logs} log lines"
    );
}

#[tokio::test]
async fn stdout_a_pipe_that_stderr_shares_gets_every_line_whole_when_its_reader_stops() {
    // `serve 2>&1 | …` (runit, supervisord's redirect_stderr): logs and records in one pipe.
    let dir = tempfile::tempdir().unwrap();
    let approvals = approvals_manifest(&[("good", &entry(&[]))]);
    copy_dir(&Path::new(REPO).join("policies"), &dir.path().join("policies"));
    std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
    std::fs::write(dir.path().join("manifests/approvals.yaml"), approvals).unwrap();
    let fifo = dir.path().join("out.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::File::open(fifo).unwrap())
    };
    let out = std::fs::File::options().write(true).open(&fifo).unwrap();
    let reader = reader.join().unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--shutdown-drain", "0s"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    // Read the pipe up to "listening", then stop reading until told to go on.
    let (go_on, gate) = mpsc::channel::<()>();
    let (lines_tx, lines) = mpsc::channel::<Vec<u8>>();
    let reading = std::thread::spawn(move || {
        let mut reader = BufReader::new(reader);
        let mut gated = Some(gate);
        loop {
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line).unwrap() == 0 {
                return;
            }
            let listening = line.windows(17).any(|w| w == b"jitgate listening");
            let _ = lines_tx.send(line);
            if listening && let Some(gate) = gated.take() {
                let _ = gate.recv();
            }
        }
    });
    let mut all = Vec::new();
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("no listening line");
        let listening = String::from_utf8_lossy(&line).contains("jitgate listening");
        all.push(line);
        if listening {
            break;
        }
    }
    let ca = std::fs::read_to_string(dir.path().join("certs-dev/ca.crt")).unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let updates = UntilRefused::default();
    let mut clients = Vec::new();
    // In bursts, so that the records of one pass of the runtime (one write) are more than
    // the 4 KiB a pipe takes whole or not at all.
    let mut stuck = false;
    for _ in 0..200 {
        if stuck || updates.refused() {
            break;
        }
        let mut burst = Vec::new();
        for _ in 0..16 {
            // Logs are written on the runtime, to the full pipe here: a worker that logs
            // (a request refused at its deadline does) waits for the reader, and a new
            // connection may not be accepted until then. That too says the pipe is full.
            match tokio::time::timeout(Duration::from_secs(5), Conn::open(addr, &ca, Proto::H1)).await {
                Ok(c) => burst.push(c.unwrap()),
                Err(_) => {
                    stuck = true;
                    break;
                }
            }
        }
        clients.extend(burst.into_iter().map(|c| updates.send(c)));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(stuck || updates.refused(), "the pipe never filled");
    go_on.send(()).unwrap();
    answered_then_stopped(clients, &mut child).await;
    reading.join().unwrap();
    all.extend(lines.try_iter());
    // Every line whole: a log line or a record, never one inside the other.
    let mut records = Vec::new();
    let mut logs = Vec::new();
    for line in &all {
        let value: serde_json::Value = serde_json::from_slice(line)
            .unwrap_or_else(|_| panic!("a torn line: {}", String::from_utf8_lossy(line)));
        if value.get("level").is_some() {
            logs.push(value);
        } else {
            records.push((line.clone(), value));
        }
    }
    assert!(
        logs.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("stderr is stdout's pipe"))),
        "said at start"
    );
    let answers = updates.take();
    let mut refusals = 0;
    for reply in &answers {
        let uid = reply.json()["response"]["uid"].as_str().unwrap().to_string();
        let mine: Vec<_> = records.iter().filter(|(_, r)| r["uid"] == uid.as_str()).collect();
        assert_eq!(mine.len(), 1, "one record for {uid}");
        assert_record_is_the_answer(&mine[0].1, reply);
        refusals += usize::from(mine[0].1["reason"] == "deadline_exceeded");
    }
    assert!(refusals >= 1 || stuck);
    let mut verify = Command::new(BIN)
        .args(["audit", "verify", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let read: Vec<u8> = records.iter().flat_map(|(l, _)| l.clone()).collect();
    std::io::Write::write_all(&mut verify.stdin.take().unwrap(), &read).unwrap();
    let verified = verify.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{said}");
    assert!(
        said.contains(&format!("records: {} (seq 1 at", records.len())),
        "{said}"
    );
}
