//! The audit log as an auditor meets it: written by the real server under concurrent load,
//! rotated, then checked and searched with `jitgate audit verify` and `jitgate audit query`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

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
    // Without the older files, the first chain lacks its beginning.
    let newest: Vec<PathBuf> = files
        .iter()
        .filter(|f| f.ends_with("audit.jsonl"))
        .cloned()
        .collect();
    let (code, out) = audit(&["verify"], &newest);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("GAP: seq 1.."), "{out}");
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
