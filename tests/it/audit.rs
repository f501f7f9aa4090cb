//! The audit log as an auditor meets it: written by the real server under concurrent load,
//! rotated, then checked and searched with `jitgate audit verify` and `jitgate audit query`.

use crate::support::apiserver::ApiServer;
use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_jitgate");

/// Runs `jitgate audit ARGS…` and returns its exit code and stdout.
fn audit(args: &[&str], files: &[PathBuf]) -> (i32, String) {
    let out = Command::new(BIN)
        .arg("audit")
        .args(args)
        .args(files)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty() || out.status.code() == Some(2), "{stderr}");
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap())
}

/// The log files in `dir`, in the order a shell glob would list them
/// (`audit.jsonl`, `audit.jsonl.1`, `audit.jsonl.10`, `audit.jsonl.2`, …).
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("audit.jsonl")
        })
        .collect();
    files.sort();
    files
}

/// The same files in the order they were written: `.1`, `.2`, …, then the live one.
fn in_chain_order(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut ordered = files.to_vec();
    ordered.sort_by_key(|p| {
        p.extension()
            .and_then(|e| e.to_str()?.parse::<u64>().ok())
            .unwrap_or(u64::MAX)
    });
    ordered
}

/// Serves 400 requests from 8 concurrent clients over both protocols, half of them
/// allowed, with the log rotating every 32 KiB, and returns the log files.
async fn log_under_load() -> (Harness, Vec<PathBuf>) {
    let h = Harness::start_with(Some(&approvals_manifest(&[("grant", &entry(&[]))])), |cfg| {
        cfg.audit_log_max_bytes = Some(32 * 1024)
    })
    .await;
    let mut clients = Vec::new();
    for i in 0..8 {
        let mut c = h.conn(BOTH[i % 2]).await;
        clients.push(tokio::spawn(async move {
            for n in 0..50 {
                let user = if n % 2 == 0 {
                    "alice@example.com"
                } else {
                    "carol@example.com"
                };
                let req = Req::secret_update().with(|r| r.user = user.into());
                let allowed = c.decide(&req.review()).await["allowed"] == true;
                assert_eq!(allowed, n % 2 == 0);
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let files = log_files(h.dir.path());
    (h, files)
}

#[tokio::test]
async fn a_log_written_under_load_verifies_and_any_tampering_is_named() {
    let (h, files) = log_under_load().await;
    assert!(files.len() >= 4, "expected several rotated files: {files:?}");
    let (code, out) = audit(&["verify"], &files);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("  records: 400 (seq 1 at "), "{out}");
    assert!(out.contains(" .. seq 400 at "), "{out}");
    assert!(
        out.ends_with(
            "ok: 1 chain(s), 1 intact, 0 broken, 0 missing; 0 line(s) that are not records skipped\n"
        ),
        "{out}"
    );

    // Tamper with copies of the second file written.
    let ordered = in_chain_order(&files);
    let victim = &ordered[1];
    let original: Vec<String> = std::fs::read_to_string(victim)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let seq_of = |line: &str| {
        serde_json::from_str::<serde_json::Value>(line).unwrap()["seq"]
            .as_u64()
            .unwrap()
    };
    let third = seq_of(&original[2]);
    let tamper = |edit: &dyn Fn(&mut Vec<String>)| {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = original.clone();
        edit(&mut lines);
        let copies: Vec<PathBuf> = files
            .iter()
            .map(|f| {
                let to = dir.path().join(f.file_name().unwrap());
                if f == victim {
                    std::fs::write(&to, lines.join("\n") + "\n").unwrap();
                } else {
                    std::fs::copy(f, &to).unwrap();
                }
                to
            })
            .collect();
        let (code, out) = audit(&["verify"], &copies);
        let named = format!("{}:3", dir.path().join(victim.file_name().unwrap()).display());
        (code, out, named)
    };

    let (code, out, _) = tamper(&|lines| {
        lines.remove(2);
    });
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("GAP: seq {third} is missing")),
        "deleted: {out}"
    );

    // Records are put in order by their seq, so lines in another order are the same chain.
    let (code, out, _) = tamper(&|lines| lines.swap(2, 3));
    assert_eq!(code, 0, "swapped: {out}");

    let (code, out, named) =
        tamper(&|lines| lines[2] = lines[2].replacen("\"uid\":\"uid-", "\"uid\":\"uiD-", 1));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("BREAK: seq {third} at {named}")) && out.contains("edited"),
        "edited: {out}"
    );
    assert!(
        !out.contains("GAP"),
        "an edited record is there, not missing: {out}"
    );

    // Dropping a whole rotated file in the middle leaves a gap of its records.
    let seqs_of = |f: &PathBuf| {
        let text = std::fs::read_to_string(f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        (seq_of(lines[0]), seq_of(lines[lines.len() - 1]))
    };
    let (from, to) = seqs_of(&ordered[1]);
    let mut missing = ordered.clone();
    missing.remove(1);
    let (code, out) = audit(&["verify"], &missing);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("GAP: seq {from}..{to} are missing")),
        "{out}"
    );

    // Dropping the first file is caught too, unless the check is asked to start later.
    let (from, to) = seqs_of(&ordered[0]);
    let (code, out) = audit(&["verify"], &ordered[1..]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("GAP: seq {from}..{to} are missing")),
        "{out}"
    );
    let (code, out) = audit(&["verify", "--partial"], &ordered[1..]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("starts at seq {}", to + 1)), "{out}");
    h.stop().await;
}

#[tokio::test]
async fn a_restarted_server_starts_a_new_chain_that_names_the_one_before_it() {
    let (h, _) = log_under_load().await;
    let dir = h.dir.path().to_path_buf();
    let Harness {
        dir: keep,
        certs,
        running,
    } = h;
    running.unwrap().stop().await;
    let h2 = Harness::start_with(None, |cfg| {
        *cfg = Harness::config(&dir);
        cfg.audit_log_max_bytes = Some(32 * 1024);
    })
    .await;
    let mut c = Conn::open(h2.addr(), &certs.ca_pem, Proto::H2).await.unwrap();
    c.decide(&Req::secret_update().review()).await;
    h2.stop().await;
    let files = log_files(&dir);
    let (code, out) = audit(&["verify"], &files);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("  records: 400 (seq 1 at "), "{out}");
    assert!(out.contains("  records: 1 (seq 1 at "), "{out}");
    assert!(out.contains("from its seq 400"), "{out}");
    assert!(out.contains("ok: 2 chain(s), 2 intact"), "{out}");
    // Without the older files, the first chain lacks its beginning (or, when the log
    // rotated right before the restart, the chain the second follows is not there).
    let newest: Vec<PathBuf> = files
        .iter()
        .filter(|f| f.ends_with("audit.jsonl"))
        .cloned()
        .collect();
    let (code, out) = audit(&["verify"], &newest);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("GAP: seq 1..") || out.contains("which is not among the records given"),
        "{out}"
    );
    drop(keep);
}

#[tokio::test]
async fn query_filters_records_and_sums_them_up() {
    let (h, files) = log_under_load().await;
    let (code, out) = audit(
        &["query", "--user", "carol@example.com", "--decision", "deny"],
        &files,
    );
    assert_eq!(code, 0);
    let records: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 200);
    assert!(
        records
            .iter()
            .all(|r| r["reason"] == "no_approval" && r["user"] == "carol@example.com")
    );

    let (code, out) = audit(
        &["query", "--since", "1h", "--policy", "prod-secrets", "--summary"],
        &files,
    );
    assert_eq!(code, 0);
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert!(
        rows.contains(&vec!["prod-secrets", "allow", "approved", "200"]),
        "{out}"
    );
    assert!(
        rows.contains(&vec!["prod-secrets", "deny", "no_approval", "200"]),
        "{out}"
    );

    let (code, out) = audit(&["query", "--until", "1h"], &files);
    assert_eq!((code, out.as_str()), (0, ""), "nothing is older than an hour");
    h.stop().await;
}

/// A qualified-name part, as the API server requires of an audit annotation key (it
/// prefixes it with the webhook's name): `[A-Za-z0-9][-A-Za-z0-9_.]*`, at most 63 bytes,
/// ending alphanumeric.
fn is_qualified_name_part(key: &str) -> bool {
    let b = key.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
}

#[tokio::test]
async fn every_answer_points_the_api_servers_audit_log_to_its_record() {
    let h = Harness::start(&approvals_manifest(&[("grant", &entry(&[]))])).await;
    let allowed = Req::secret_update();
    let denied = Req::secret_update().with(|r| r.name = "other".into());
    for (req, decision, reason) in [(&allowed, "allow", "approved"), (&denied, "deny", "no_approval")] {
        let mut c = h.conn(Proto::H1).await;
        let response = c.decide(&req.review()).await;
        let annotations = response["auditAnnotations"]
            .as_object()
            .expect("auditAnnotations")
            .clone();
        for (key, value) in &annotations {
            assert!(is_qualified_name_part(key), "{key}");
            assert!(
                value.as_str().is_some_and(|v| !v.is_empty() && v.len() <= 256),
                "{key}: {value}"
            );
        }
        assert_eq!(annotations["decision"], decision);
        assert_eq!(annotations["reason"], reason);
        assert_eq!(annotations["policy"], "prod-secrets");
        let record = h.record_of(&req.uid);
        assert_eq!(
            annotations["record"],
            format!("seq={},hash={}", record["seq"], record["hash"].as_str().unwrap()),
            "the annotation names the record of this very answer"
        );
        // And back: the seq an API server audit event carries finds the record.
        let out = Command::new(BIN)
            .args(["audit", "query", "--seq", &record["seq"].to_string()])
            .arg(h.audit_path())
            .output()
            .unwrap();
        let found = String::from_utf8(out.stdout).unwrap();
        assert_eq!(found.lines().count(), 1, "{found}");
        assert!(found.contains(&req.uid), "{found}");
        if decision == "allow" {
            assert_eq!(annotations["approval"], "jitgate-approvals/grant");
            assert_eq!(record["approval"], "jitgate-approvals/grant");
        } else {
            assert!(!annotations.contains_key("approval"));
        }
    }
    h.stop().await;
}

/// What one start of a replica wrote: its records (stdout) and its own log lines (stderr).
struct Run {
    records: Vec<String>,
    logs: Vec<String>,
}

/// Starts `jitgate serve` as the pod `pod` of the cluster `api`, as the shipped Deployment
/// does (records to stdout only, JSON logs to stderr, POD_NAME from the downward API), has
/// it answer `requests` reviews, stops it with SIGTERM and returns what it wrote.
async fn replica(api: &ApiServer, dir: &Path, certs: &Certs, pod: &str, requests: usize) -> Run {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--tls-cert")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.join("tls.key"))
        .arg("--policies")
        .arg(Path::new(REPO).join("policies"))
        .args(["--approvals-namespace", "jitgate-system", "--kubeconfig"])
        .arg(api.kubeconfig())
        .args(["--anchor-every", "1h", "--shutdown-drain", "0s"])
        .env("POD_NAME", pod)
        .env("JITGATE_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut conn = None;
    for _ in 0..200 {
        if let Ok(c) = Conn::open(addr, &certs.ca_pem, Proto::H2).await {
            conn = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let mut conn = conn.expect("the replica listens");
    for _ in 0..requests {
        conn.decide(&Req::secret_update().review()).await;
    }
    drop(conn);
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .lines()
            .map(|l| format!("{l}\n"))
            .collect()
    };
    Run {
        records: lines(&out.stdout),
        logs: lines(&out.stderr),
    }
}

/// Interleaves the lines of every run into one stream, as a log pipeline hands them over,
/// every other record behind the kubelet's prefix.
fn interleave(runs: &[Run]) -> String {
    let streams: Vec<Vec<String>> = runs
        .iter()
        .flat_map(|r| {
            let prefixed = r
                .records
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    if i % 2 == 0 {
                        format!("2026-12-04T16:00:00.000000001Z stdout F {l}")
                    } else {
                        l.clone()
                    }
                })
                .collect();
            [prefixed, r.logs.clone()]
        })
        .collect();
    let mut out = String::new();
    let longest = streams.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for s in &streams {
            if let Some(l) = s.get(i) {
                out.push_str(l);
            }
        }
    }
    out
}

/// `jitgate audit verify ARGS… -` with `stream` on stdin.
fn verify_stream(args: &[&str], stream: &str) -> (i32, String) {
    use std::io::Write as _;
    let mut child = Command::new(BIN)
        .args(["audit", "verify"])
        .args(args)
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stream.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap())
}

/// What verify says of chain `id`: its lines, up to the next chain's.
fn chain_section(out: &str, id: &str) -> String {
    let head = format!("chain {id} ");
    let mut lines = out.lines().skip_while(|l| !l.starts_with(&head));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("no section for {id}: {out}"));
    std::iter::once(first)
        .chain(lines.take_while(|l| l.starts_with("  ")))
        .collect::<Vec<_>>()
        .join("\n")
}

fn field(line: &str, key: &str) -> serde_json::Value {
    let start = line.find('{').unwrap();
    serde_json::from_str::<serde_json::Value>(&line[start..]).unwrap()[key].clone()
}

#[tokio::test]
async fn three_replicas_restarted_and_interleaved_verify_per_chain_and_every_tampering_is_named() {
    let api = ApiServer::start().await;
    api.apply("jitgate-system", "jitgate-anchors", &[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::new();
    std::fs::write(dir.path().join("tls.crt"), &certs.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &certs.key_pem).unwrap();
    let mut runs = Vec::new();
    for start in 0..2 {
        for pod in ["jitgate-a", "jitgate-b", "jitgate-c"] {
            runs.push(replica(&api, dir.path(), &certs, pod, 3 + start).await);
        }
    }
    let anchors = dir.path().join("anchors.json");
    std::fs::write(
        &anchors,
        api.object("jitgate-system", "jitgate-anchors")
            .unwrap()
            .to_string(),
    )
    .unwrap();
    let anchors_arg = ["--anchors", anchors.to_str().unwrap()];
    let chain_of = |r: &Run| field(&r.records[0], "chain").as_str().unwrap().to_string();

    // Intact: six chains, each named by its replica, with other log lines between records.
    let stream = interleave(&runs);
    let (code, out) = verify_stream(&anchors_arg, &stream);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok: 6 chain(s), 6 intact, 0 broken, 0 missing"),
        "{out}"
    );
    for r in &runs {
        let id = chain_of(r);
        let n = r.records.len();
        assert!(out.contains(&format!("chain {id} (replica jitgate-")), "{out}");
        assert!(
            out.contains(&format!("anchored at its last record, seq {n} (")),
            "{out}"
        );
    }
    assert!(
        out.contains(&format!(
            "{} line(s) that are not records skipped",
            runs.iter().map(|r| r.logs.len()).sum::<usize>()
        )),
        "{out}"
    );
    // A restarted container's chain names the one before it on that pod (from its anchor).
    for (before, after) in runs[..3].iter().zip(&runs[3..]) {
        assert_eq!(
            field(&after.records[0], "follows"),
            serde_json::json!({"chain": chain_of(before), "seq": before.records.len(),
                "hash": field(before.records.last().unwrap(), "hash")})
        );
        assert!(
            chain_section(&out, &chain_of(after)).contains(&format!(
                "follows chain {} from its seq {}",
                chain_of(before),
                before.records.len()
            )),
            "{out}"
        );
    }
    // The same records given as files in any order verify alike.
    let files: Vec<PathBuf> = runs
        .iter()
        .rev()
        .enumerate()
        .map(|(i, r)| {
            let path = dir.path().join(format!("pod-{i}.log"));
            std::fs::write(&path, r.records.concat()).unwrap();
            path
        })
        .collect();
    let (code, out) = audit(&["verify", "--anchors", anchors.to_str().unwrap()], &files);
    assert_eq!(code, 0, "{out}");

    let tampered = |edit: &dyn Fn(&mut Vec<Run>)| {
        let mut copy: Vec<Run> = runs
            .iter()
            .map(|r| Run {
                records: r.records.clone(),
                logs: r.logs.clone(),
            })
            .collect();
        edit(&mut copy);
        let stream = interleave(&copy);
        (verify_stream(&anchors_arg, &stream), verify_stream(&[], &stream))
    };
    let victim = chain_of(&runs[4]);
    let section = |out: &str| chain_section(out, &victim);

    // A record edited.
    let ((code, out), _) = tampered(&|runs| {
        runs[4].records[1] = runs[4].records[1].replacen("\"uid\":\"uid-", "\"uid\":\"uiD-", 1)
    });
    assert_eq!(code, 1, "{out}");
    assert!(
        section(&out).contains("BREAK: seq 2 at (stdin):") && out.contains("edited"),
        "{out}"
    );

    // A record removed from the middle.
    let ((code, out), _) = tampered(&|runs| {
        runs[4].records.remove(1);
    });
    assert_eq!(code, 1, "{out}");
    assert!(section(&out).contains("GAP: seq 2 is missing"), "{out}");

    // The tail cut after its last anchor: without the anchors nothing can tell.
    let ((code, out), (plain_code, plain)) = tampered(&|runs| {
        runs[4].records.truncate(2);
    });
    assert_eq!(code, 1, "{out}");
    assert!(
        section(&out).contains("FAIL: cut short: anchored at seq 4 (")
            && out.contains("but the last record given is seq 2"),
        "{out}"
    );
    assert_eq!(
        plain_code, 0,
        "the chain alone cannot show its end is gone: {plain}"
    );

    // A whole chain missing.
    let ((code, out), (plain_code, _)) = tampered(&|runs| {
        runs[4].records.clear();
    });
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "chain {victim} (replica jitgate-b): MISSING: anchored at seq 4 ("
        )),
        "{out}"
    );
    assert_eq!(plain_code, 0);

    // A chain from another cluster, written by a replica of the same name.
    let mut foreign =
        jitgate::audit::chain::Chain::new(jitgate::audit::chain::ChainId::new("jitgate-a"), None);
    let mut lines = Vec::new();
    for r in &runs[0].records {
        let start = r.find('{').unwrap();
        let mut record: serde_json::Value = serde_json::from_str(&r[start..]).unwrap();
        for key in ["chain", "seq", "prevHash", "hash"] {
            record.as_object_mut().unwrap().remove(key);
        }
        let mut out = Vec::new();
        foreign.seal(record.to_string().as_bytes(), &mut out);
        lines.push(String::from_utf8(out).unwrap());
    }
    let ((code, out), (plain_code, _)) = tampered(&|runs| {
        runs.push(Run {
            records: lines.clone(),
            logs: Vec::new(),
        })
    });
    assert_eq!(code, 1, "{out}");
    let foreign_section = chain_section(&out, foreign.id.as_str());
    assert!(foreign_section.contains("FAIL: not anchored"), "{out}");
    assert_eq!(plain_code, 0);
}

const CAPTURED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/admission/captured/configmap-update-user-alice-with-groups.json"
);

/// An edit of the approvals ConfigMap as the API server sends it for review.
fn ledger_edit(
    editor: &str,
    groups: &[&str],
    old: &[(&str, &str)],
    new: &[(&str, &str)],
) -> serde_json::Value {
    let configmap = |data: &[(&str, &str)]| {
        let data: serde_json::Map<String, serde_json::Value> = data
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect();
        serde_json::json!({"kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": "jitgate-approvals", "namespace": "jitgate-system", "resourceVersion": "220",
                "labels": {"jitgate.dev/approvals": "true"}},
            "data": data})
    };
    let mut review: serde_json::Value = serde_json::from_slice(&std::fs::read(CAPTURED).unwrap()).unwrap();
    let r = &mut review["request"];
    r["uid"] = serde_json::json!(unique_uid());
    r["name"] = serde_json::json!("jitgate-approvals");
    r["namespace"] = serde_json::json!("jitgate-system");
    r["operation"] = serde_json::json!("UPDATE");
    r["userInfo"] = serde_json::json!({"username": editor, "uid": "u", "groups": groups});
    r["object"] = configmap(new);
    r["oldObject"] = configmap(old);
    review
}

#[tokio::test]
async fn report_tells_the_story_of_an_approval_from_request_to_revocation_in_text_csv_and_json() {
    let approved = entry(&[]);
    let pending = entry(&[("[bob@example.com]", "[]")]);
    // The approval is live in the file the server follows; the ledger edits below are what
    // the records say of it, in the order they happened.
    let h = Harness::start(&approvals_manifest(&[("db", &approved)])).await;
    let alice = ("alice@example.com", &["dev"][..]);
    let bob = ("bob@example.com", &["jitgate-approvals", "jitgate-approvers"][..]);
    let mut c = h.conn(Proto::H1).await;
    for (who, old, new) in [
        (alice, vec![], vec![("db", pending.as_str())]),
        (
            bob,
            vec![("db", pending.as_str())],
            vec![("db", approved.as_str())],
        ),
    ] {
        let r = c.decide(&ledger_edit(who.0, who.1, &old, &new)).await;
        assert_eq!(r["allowed"], true, "{r}");
    }
    for _ in 0..2 {
        assert_eq!(c.decide(&Req::secret_update().review()).await["allowed"], true);
    }
    let carol = Req::secret_update().with(|r| r.user = "carol@example.com".into());
    assert_eq!(c.decide(&carol.review()).await["allowed"], false);
    let r = c
        .decide(&ledger_edit(bob.0, bob.1, &[("db", approved.as_str())], &[]))
        .await;
    assert_eq!(r["allowed"], true, "{r}");

    let files = vec![h.audit_path()];
    // Times as the record they come from: t<seq>; expiry as EXPIRY.
    let records = h.records();
    let named = |text: String| {
        let mut text = text;
        for r in records.iter().rev() {
            text = text.replace(r["timestamp"].as_str().unwrap(), &format!("t{}", r["seq"]));
            if let Some(e) = r["expiresAt"].as_str() {
                text = text.replace(e, "EXPIRY");
            }
        }
        text
    };
    let said: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["event"].as_str().unwrap(),
                r["action"].as_str().or(r["reason"].as_str()).unwrap()
            )
        })
        .collect();
    assert_eq!(
        said,
        [
            "decision ledger_accepted",
            "approval requested",
            "decision ledger_accepted",
            "approval approved",
            "decision approved",
            "decision approved",
            "decision no_approval",
            "decision ledger_accepted",
            "approval revoked",
        ]
    );

    let (code, text) = audit(&["report"], &files);
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        named(text),
        "APPROVAL jitgate-approvals/db
  allows           UPDATE on secrets prod/db-password for user:alice@example.com
  requested        t2  by alice@example.com: \"INC-1: rotate\" (for user:alice@example.com; 0 of 1 approvers; until EXPIRY)
  approved         t4  by bob@example.com (1 of 1 approvers)
  use              t5  alice@example.com UPDATE secrets prod/db-password: allow (approved)
  use              t6  alice@example.com UPDATE secrets prod/db-password: allow (approved)
  revoked          t9  by bob@example.com
DENIED WITHOUT AN APPROVAL (1)
  denied           t7  carol@example.com UPDATE secrets prod/db-password: deny (no_approval)  [prod-secrets]
records end at t9
"
    );

    let (_, csv) = audit(&["report", "--format", "csv"], &files);
    assert_eq!(
        named(csv),
        "approval,event,time,user,operation,resource,namespace,name,outcome,reason,policy,detail\r
jitgate-approvals/db,requested,t2,alice@example.com,,,,,,INC-1: rotate,,for user:alice@example.com; 0 of 1 approvers; until EXPIRY\r
jitgate-approvals/db,approved,t4,bob@example.com,,,,,,,,1 of 1 approvers\r
jitgate-approvals/db,use,t5,alice@example.com,UPDATE,secrets,prod,db-password,allow,approved,prod-secrets,\r
jitgate-approvals/db,use,t6,alice@example.com,UPDATE,secrets,prod,db-password,allow,approved,prod-secrets,\r
jitgate-approvals/db,revoked,t9,bob@example.com,,,,,,,,\r
,denied,t7,carol@example.com,UPDATE,secrets,prod,db-password,deny,no_approval,prod-secrets,\r
"
    );

    let (_, json) = audit(&["report", "--format", "json"], &files);
    let json: serde_json::Value = serde_json::from_str(&named(json)).unwrap();
    let story = &json["approvals"][0];
    assert_eq!(json["approvals"].as_array().unwrap().len(), 1);
    assert_eq!(
        (
            story["id"].as_str(),
            story["requester"].as_str(),
            story["reason"].as_str(),
            story["allows"].as_str()
        ),
        (
            Some("jitgate-approvals/db"),
            Some("user:alice@example.com"),
            Some("INC-1: rotate"),
            Some("UPDATE on secrets prod/db-password")
        )
    );
    let events: Vec<(&str, &str, &str, &str)> = story["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap();
            (s("event"), s("time"), s("user"), s("outcome"))
        })
        .collect();
    assert_eq!(
        events,
        [
            ("requested", "t2", "alice@example.com", ""),
            ("approved", "t4", "bob@example.com", ""),
            ("use", "t5", "alice@example.com", "allow"),
            ("use", "t6", "alice@example.com", "allow"),
            ("revoked", "t9", "bob@example.com", ""),
        ]
    );
    assert_eq!(json["denials"][0]["user"], "carol@example.com");
    assert_eq!(json["denials"][0]["time"], "t7");
    assert_eq!(json["denials"].as_array().unwrap().len(), 1);
    assert_eq!(json["breakGlass"], serde_json::json!([]));

    // Filtered to Carol: her denial and nothing of Alice's approval.
    let (_, carol) = audit(
        &["report", "--format", "csv", "--user", "carol@example.com"],
        &files,
    );
    assert_eq!(carol.lines().count(), 2, "{carol}");
    assert!(carol.contains(",denied,"), "{carol}");
    h.stop().await;
}
