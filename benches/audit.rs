//! `jitgate audit verify` and `jitgate audit report` over 1,000,000 records: time and peak
//! memory of the release binary, measured with `/usr/bin/time -v`. Not a timed test: it
//! prints figures.
//!
//! The records are made with the real writer code (`DecisionRecord::to_line`, and the
//! `Chain` sealer): three replicas, each started twice (six chains), interleaved line by
//! line into one stream as a log pipeline would hand them over, with one of jitgate's own
//! JSON log lines after every ten records. 1,000 approvals, each requested and approved
//! (approval records with the keys `ApprovalRecord` writes) and half of them revoked at
//! the end; four in five decisions are uses of an approval, one in five a denial.
//!
//! `cargo bench --bench audit` (AUDIT_RECORDS=100000 for fewer; AUDIT_BENCH_DIR to keep the
//! file somewhere other than the system's temporary directory; it takes ~0.6 GB).

use jitgate::audit::chain::{Chain, ChainId};
use jitgate::audit::{Answer, Coordinates, DecisionRecord, Review};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

const APPROVALS: usize = 1000;
const CHAINS: usize = 6;

fn main() {
    let n: usize = std::env::var("AUDIT_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::var("AUDIT_BENCH_DIR").map_or_else(|_| std::env::temp_dir(), Into::into);
    let path = dir.join("jitgate-audit-bench.log");
    let started = std::time::Instant::now();
    generate(&path, n);
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "generated {n} records in {CHAINS} chains, {:.0} MB, in {:.1} s: {}",
        size as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        path.display()
    );
    let bin = env!("CARGO_BIN_EXE_jitgate");
    for args in [
        vec!["verify"],
        vec!["report"],
        vec!["report", "--format", "json"],
        vec!["report", "--format", "csv", "--namespace", "ns-7"],
    ] {
        let out = Command::new("/usr/bin/time")
            .arg("-v")
            .arg(bin)
            .arg("audit")
            .args(&args)
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .output()
            .expect("/usr/bin/time (apt-get install time)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let field = |name: &str| {
            stderr
                .lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .unwrap_or("?")
                .trim()
                .to_string()
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.lines().last().unwrap_or("").to_string();
        println!(
            "audit {:<40} exit {:?}  wall {}  user {} s  peak RSS {} MB  ({} bytes out; last line: {})",
            args.join(" "),
            out.status.code(),
            field("Elapsed (wall clock) time (h:mm:ss or m:ss):"),
            field("User time (seconds):"),
            field("Maximum resident set size (kbytes):")
                .parse::<u64>()
                .map_or("?".into(), |kb| format!("{:.1}", kb as f64 / 1024.0)),
            out.stdout.len(),
            last.chars().take(120).collect::<String>()
        );
    }
    let _ = std::fs::remove_file(&path);
}

fn approval(i: usize) -> Arc<jitgate::approvals::Approval> {
    let text = format!(
        "user: user-{i}@example.com\nresource: secrets\nnamespace: ns-{}\nname: db-{i}\noperations: [UPDATE]\nexpiresAt: \"2026-12-31T00:00:00Z\"\nreason: \"INC-{i}\"\napprovedBy: [bob@example.com]\n",
        i % 50
    );
    Arc::new(jitgate::approvals::parse_entry(&format!("jitgate-approvals/k{i}"), &text).unwrap())
}

fn approval_line(i: usize, action: &str, editor: &str, at: &str) -> Vec<u8> {
    let line = serde_json::json!({
        "timestamp": at, "event": "approval", "uid": format!("edit-{i}-{action}"),
        "key": format!("jitgate-approvals/k{i}"), "action": action, "editor": editor,
        "editorGroups": ["jitgate-approvers"], "requester": format!("user:user-{i}@example.com"),
        "scope": {"apiGroup": null, "resource": "secrets", "namespace": format!("ns-{}", i % 50),
            "name": format!("db-{i}"), "operations": ["UPDATE"]},
        "reason": format!("INC-{i}"), "expiresAt": "2026-12-31T00:00:00Z",
        "approvedBy": if action == "requested" { vec![] } else { vec!["bob@example.com"] },
        "approvers": u32::from(action != "requested"), "required": 1, "dryRun": false,
    });
    let mut bytes = serde_json::to_vec(&line).unwrap();
    bytes.push(b'\n');
    bytes
}

fn generate(path: &Path, n: usize) {
    let approvals: Vec<_> = (0..APPROVALS).map(approval).collect();
    let mut chains: Vec<Chain> = (0..CHAINS)
        .map(|c| Chain::new(ChainId::new(&format!("jitgate-{}", c % 3)), None))
        .collect();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let base = jiff::Timestamp::from_second(1_796_000_000).unwrap();
    let mut buf = Vec::with_capacity(4096);
    let mut written = 0;
    let mut seal = |i: usize, line: &[u8], out: &mut dyn Write| {
        buf.clear();
        chains[i % CHAINS].seal(line, &mut buf);
        out.write_all(&buf).unwrap();
        if i % 10 == 9 {
            out.write_all(b"{\"timestamp\":\"2026-12-04T16:00:00Z\",\"level\":\"INFO\",\"message\":\"audit chain anchored\"}\n")
                .unwrap();
        }
    };
    let at = |i: usize| (base + jiff::SignedDuration::from_millis(i as i64)).to_string();
    for (i, _) in approvals.iter().enumerate() {
        seal(
            written,
            &approval_line(i, "requested", &format!("user-{i}@example.com"), &at(written)),
            &mut out,
        );
        written += 1;
        seal(
            written,
            &approval_line(i, "approved", "bob@example.com", &at(written)),
            &mut out,
        );
        written += 1;
    }
    let revocations = APPROVALS / 2;
    while written < n.saturating_sub(revocations) {
        let i = written % APPROVALS;
        let denied = written % 5 == 0;
        let a = &approvals[i];
        let record = DecisionRecord {
            review: Review::Admission,
            timestamp: base + jiff::SignedDuration::from_millis(written as i64),
            uid: Some(format!("uid-{written}")),
            answer: Answer::Decided {
                outcome: if denied { "deny" } else { "allow" },
                reason: if denied { "no_approval" } else { "approved" },
                approval: (!denied).then(|| a.clone()),
                refused_entry: None,
            },
            policy: "prod-secrets".into(),
            request: Some(Coordinates {
                user: if denied {
                    format!("other-{i}@example.com")
                } else {
                    format!("user-{i}@example.com")
                },
                groups: vec!["dev".into()],
                operation: "UPDATE".into(),
                api_group: String::new(),
                resource: "secrets".into(),
                sub_resource: String::new(),
                namespace: format!("ns-{}", i % 50),
                name: format!("db-{i}"),
                dry_run: false,
            }),
            latency_us: 80,
        };
        seal(written, &record.to_line(), &mut out);
        written += 1;
    }
    for i in 0..revocations.min(n.saturating_sub(written)) {
        seal(
            written,
            &approval_line(i, "revoked", "bob@example.com", &at(written)),
            &mut out,
        );
        written += 1;
    }
    out.flush().unwrap();
}
