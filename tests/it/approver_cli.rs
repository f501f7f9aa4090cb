//! `jitgate request | approve | revoke | list | show`, run as the binary, as different
//! users, against the test API server with jitgate's ledger guard in the loop, and as a
//! kubectl plugin.

use crate::support::apiserver::{ApiServer, Run};
use crate::support::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_jitgate");
const PATIENCE: Duration = Duration::from_secs(15);
const ALICE: (&str, &str, &[&str]) = ("alice-token", "alice@example.com", &["dev"]);
const BOB: (&str, &str, &[&str]) = ("bob-token", "bob@example.com", &["sre"]);
const MALLORY: (&str, &str, &[&str]) = ("mallory-token", "mallory@example.com", &["dev", "system:masters"]);
const CAROL: (&str, &str, &[&str]) = ("carol-token", "carol@example.com", &["oncall"]);

/// A cluster: the test API server holding an empty approvals ConfigMap and the policies
/// ConfigMap (Secrets approvable by group `sre` only), and jitgate following it and
/// guarding its writes.
struct Cluster {
    api: ApiServer,
    h: Harness,
    _policies: tempfile::TempDir,
}

async fn cluster() -> Cluster {
    let policies = policies_with(|file, text| {
        match file {
        "prod-secrets.yaml" => text.replace(
            "    approverGroups: [\"jitgate-approvers\"]",
            "    approverGroups: [\"sre\"]\n  breakGlass:\n    groups: [\"oncall\"]\n    maxDuration: 1h\n    reviewWithin: 24h",
        ),
        // Anyone who may edit the ledger approves under the others.
        _ => text.replace("    approverGroups: [\"jitgate-approvers\"]\n", ""),
    }
    });
    let files: Vec<(&str, String)> = POLICY_FILES
        .iter()
        .map(|f| (*f, std::fs::read_to_string(policies.path().join(f)).unwrap()))
        .collect();
    let api = ApiServer::start().await;
    for (token, user, groups) in [ALICE, BOB, MALLORY, CAROL] {
        api.add_user(token, user, groups);
    }
    api.apply_approvals("jitgate-approvals", &[]);
    let data: Vec<(&str, &str)> = files.iter().map(|(f, t)| (*f, t.as_str())).collect();
    api.apply("jitgate-system", "jitgate-policies", &[], &data);
    let dir = policies.path().to_path_buf();
    let h = Harness::start_cluster(&api, Duration::from_secs(300), |cfg| cfg.policies_dir = dir).await;
    api.admit_with(h.addr(), &h.certs.ca_pem);
    eventually(PATIENCE, || async { h.readyz().await == hyper::StatusCode::OK }).await;
    Cluster {
        api,
        h,
        _policies: policies,
    }
}

impl Cluster {
    /// Runs `jitgate ARGS…` as `who`.
    async fn jitgate(&self, who: (&str, &str, &[&str]), args: &[&str]) -> Run {
        self.api.jitgate_as(who.0, args).await
    }

    /// Whether alice's update of Secret prod/db-password is allowed now.
    async fn alice_may_update(&self) -> bool {
        let mut c = self.h.conn(Proto::H1).await;
        c.decide(&Req::secret_update().review()).await["allowed"] == true
    }

    fn entries(&self) -> serde_json::Map<String, serde_json::Value> {
        let cm = self.api.object("jitgate-system", "jitgate-approvals").unwrap();
        cm["data"].as_object().cloned().unwrap_or_default()
    }
}

/// The table row (split on whitespace) whose first cell ends with `key`.
fn row<'a>(table: &'a str, key: &str) -> Option<Vec<&'a str>> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first().is_some_and(|c| c.ends_with(key)))
}

const GUARD: &str = "admission webhook \"approvals.jitgate.dev\" denied the request: jitgate ledger:";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_approve_list_show_and_revoke_through_the_api_server() {
    let c = cluster().await;
    let r = c.jitgate(ALICE, &ROTATE_DB_PASSWORD).await;
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    let key = r.requested_key();
    assert!(
        key.starts_with("alice-example.com-prod-secrets-db-password-update-"),
        "{key}"
    );
    assert!(r.out.contains(&format!("jitgate approve {key}")), "{}", r.out);
    assert!(c.entries().contains_key(&key));

    let list = c.jitgate(ALICE, &["list", "--pending"]).await;
    assert_eq!(list.code, 0, "{}", list.err);
    let cells = row(&list.out, &key).unwrap_or_else(|| panic!("{}", list.out));
    assert_eq!(
        &cells[1..6],
        [
            "user:alice@example.com",
            "UPDATE",
            "prod/secrets/db-password",
            "0/1",
            "29m"
        ]
    );
    assert_eq!(cells[6], "pending");
    assert!(!c.alice_may_update().await);

    // Alice cannot approve her own request, nor Mallory outside group sre, even as a
    // cluster admin: the guard refuses, and its words reach them as it wrote them.
    let own = c.jitgate(ALICE, &["approve", &key]).await;
    assert_eq!(own.code, 1, "{}", own.err);
    assert!(
        own.err.contains(GUARD) && own.err.contains("it is your own request"),
        "{}",
        own.err
    );
    let forged = c.jitgate(MALLORY, &["approve", &key]).await;
    assert_eq!(forged.code, 1, "{}", forged.err);
    assert!(
        forged.err.contains(GUARD) && forged.err.contains("may not approve"),
        "{}",
        forged.err
    );

    // Bob approves; then the update is allowed.
    let ok = c.jitgate(BOB, &["approve", &key]).await;
    assert_eq!(ok.code, 0, "{}", ok.err);
    assert!(ok.out.contains("1/1 approvers, now active"), "{}", ok.out);
    // Without --pin, it still says exactly what it signed.
    assert!(
        ok.out.contains("the entry as approved (pin ")
            && ok.out.contains("  name: \"db-password\"\n")
            && ok.out.contains("  approvedBy: [\"bob@example.com\"]\n"),
        "{}",
        ok.out
    );
    eventually(PATIENCE, || c.alice_may_update()).await;

    let active = c.jitgate(BOB, &["list", "--active"]).await;
    assert!(
        row(&active.out, &key).is_some_and(|r| r[4] == "1/1" && r[6] == "active"),
        "{}",
        active.out
    );
    let expired = c.jitgate(BOB, &["list", "--expired"]).await;
    assert!(row(&expired.out, &key).is_none(), "{}", expired.out);
    let show = c.jitgate(BOB, &["show", &key]).await;
    assert_eq!(show.code, 0, "{}", show.err);
    for line in [
        "state:     active",
        "approvers: 1 of 1 required (bob@example.com)",
        "policies:  prod-secrets",
        "reason:    INC-7: rotate the password",
        "  approvedBy: [\"bob@example.com\"]",
    ] {
        assert!(show.out.contains(line), "{line:?} missing from\n{}", show.out);
    }

    // Mallory may not revoke it; Alice may, and the grant ends.
    let not_hers = c.jitgate(MALLORY, &["revoke", &key]).await;
    assert_eq!(not_hers.code, 1);
    assert!(
        not_hers.err.contains(GUARD) && not_hers.err.contains("neither the requester"),
        "{}",
        not_hers.err
    );
    let revoked = c.jitgate(ALICE, &["revoke", &key]).await;
    assert_eq!(revoked.code, 0, "{}", revoked.err);
    assert!(!c.entries().contains_key(&key));
    eventually(PATIENCE, || async { !c.alice_may_update().await }).await;

    // The records name each step and each hand.
    let changes: Vec<(String, String)> =
        c.h.records()
            .iter()
            .filter(|r| r["event"] == "approval")
            .map(|r| {
                (
                    r["action"].as_str().unwrap().into(),
                    r["editor"].as_str().unwrap().into(),
                )
            })
            .collect();
    let expected = [("requested", ALICE.1), ("approved", BOB.1), ("revoked", ALICE.1)];
    assert_eq!(changes, expected.map(|(a, e)| (a.to_string(), e.to_string())));
    c.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_can_be_filed_from_the_snippet_a_denial_printed() {
    let c = cluster().await;
    let mut conn = c.h.conn(Proto::H1).await;
    let reply = conn.decide(&Req::secret_update().review()).await;
    let message = reply["status"]["message"].as_str().unwrap();
    let snippet = &message[message.find("  alice").expect("the entry")..];
    let file = c.h.dir.path().join("snippet.yaml");
    std::fs::write(&file, snippet).unwrap();

    let placeholder = c.jitgate(ALICE, &["request", "-f", file.to_str().unwrap()]).await;
    assert_eq!(placeholder.code, 2);
    assert!(
        placeholder.err.contains("replace the placeholder reason"),
        "{}",
        placeholder.err
    );

    // Mallory cannot file Alice's snippet as her own doing: it asks for Alice.
    let theirs = c
        .jitgate(
            MALLORY,
            &["request", "-f", file.to_str().unwrap(), "--reason", "x"],
        )
        .await;
    assert_eq!(theirs.code, 1, "{}", theirs.err);
    assert!(
        theirs.err.contains(GUARD) && theirs.err.contains("may ask only for themselves"),
        "{}",
        theirs.err
    );

    let filed = c
        .jitgate(
            ALICE,
            &["request", "-f", file.to_str().unwrap(), "--reason", "INC-8: fix"],
        )
        .await;
    assert_eq!(filed.code, 0, "{}", filed.err);
    let key = snippet.trim_start().split(':').next().unwrap();
    let entry = c.entries()[key].as_str().unwrap().to_string();
    assert!(entry.contains("reason: \"INC-8: fix\""), "{entry}");
    let approve = c.jitgate(BOB, &["approve", key]).await;
    assert_eq!(approve.code, 0, "{}", approve.err);
    eventually(PATIENCE, || c.alice_may_update()).await;
    c.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_write_is_retried_on_the_latest_version() {
    let c = cluster().await;
    let args = [
        "request",
        "--resource",
        "secrets",
        "-n",
        "prod",
        "--name",
        "db-password",
        "--reason",
        "INC-9",
    ];
    assert_eq!(c.jitgate(ALICE, &args).await.code, 0);
    let key = c.entries().keys().next().unwrap().clone();

    c.api.interfere_with_next_updates(2);
    let r = c.jitgate(BOB, &["approve", &key]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.err.matches("changed meanwhile; reading it again").count(),
        2,
        "{}",
        r.err
    );
    let patches = c
        .api
        .requests()
        .iter()
        .filter(|l| l.starts_with("PATCH /api/v1/namespaces/jitgate-system/configmaps/jitgate-approvals"))
        .count();
    assert_eq!(patches, 4, "one request, then three tries at the approval");
    assert!(c.entries()[&key].as_str().unwrap().contains("bob@example.com"));

    // A ConfigMap that never holds still gives up, and says so.
    c.api.interfere_with_next_updates(100);
    let r = c.jitgate(ALICE, &["revoke", &key]).await;
    assert_eq!(r.code, 2);
    assert!(
        r.err.contains("kept changing; gave up after 5 attempts"),
        "{}",
        r.err
    );
    c.api.interfere_with_next_updates(0);
    c.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_before_anything_is_written() {
    let c = cluster().await;
    for (args, needle) in [
        (vec!["request", "--resource", "secrets", "-n", "prod"], "--reason"),
        (
            vec![
                "request",
                "--resource",
                "secrets",
                "-n",
                "prod-*",
                "--reason",
                "x",
            ],
            "no wildcards",
        ),
        (
            vec![
                "request",
                "--resource",
                "secrets",
                "--operation",
                "PATCH",
                "--reason",
                "x",
            ],
            "PATCH",
        ),
        (
            vec!["approve", "no-such-key"],
            "no approval entry \"no-such-key\"",
        ),
    ] {
        let r = c.jitgate(ALICE, &args).await;
        assert_eq!(r.code, 2, "{args:?}: {}{}", r.out, r.err);
        assert!(r.err.contains(needle), "{args:?}: {}", r.err);
    }
    assert!(c.entries().is_empty());
    c.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_as_kubectl_jitgate_it_is_a_kubectl_plugin() {
    let c = cluster().await;
    let bin = tempfile::tempdir().unwrap();
    let plugin = bin.path().join("kubectl-jitgate");
    std::os::unix::fs::symlink(BIN, &plugin).unwrap();
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap());
    let kubeconfig: PathBuf = c.api.kubeconfig_as(ALICE.0);
    let kubectl = |args: Vec<&'static str>| {
        let (path, kubeconfig) = (path.clone(), kubeconfig.clone());
        tokio::task::spawn_blocking(move || {
            Command::new("kubectl")
                .args(args)
                .env("PATH", path)
                .env("KUBECONFIG", kubeconfig)
                .output()
                .expect("kubectl is on the PATH (CI needs it for the manifests too)")
        })
    };
    let help = kubectl(vec!["jitgate", "--help"]).await.unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("Usage: kubectl jitgate"), "{help}");

    let filed = kubectl(vec![
        "jitgate",
        "request",
        "--resource",
        "secrets",
        "-n",
        "prod",
        "--name",
        "db-password",
        "--reason",
        "INC-10",
    ])
    .await
    .unwrap();
    assert!(
        filed.status.success(),
        "{}",
        String::from_utf8_lossy(&filed.stderr)
    );
    let out = String::from_utf8(filed.stdout).unwrap();
    assert!(
        out.contains("ask an approver to run: kubectl jitgate approve "),
        "{out}"
    );
    let list = kubectl(vec!["jitgate", "list"]).await.unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(list.starts_with("ID"), "{list}");
    assert!(
        list.contains("user:alice@example.com") && list.contains("INC-10"),
        "{list}"
    );
    c.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_people_type_log_plain_text_each_warning_once() {
    let c = cluster().await;
    // A kubeconfig that skips TLS verification: the kube client warns about it on every
    // connection it makes.
    let insecure = c.api.dir.path().join("kubeconfig-insecure");
    let text = std::fs::read_to_string(c.api.kubeconfig_as(ALICE.0)).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("certificate-authority:") {
                "    insecure-skip-tls-verify: true".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&insecure, text).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["list", "--kubeconfig"])
            .arg(insecure)
            .env_remove("RUST_LOG")
            .env_remove("JITGATE_LOG_FORMAT")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        !lines.iter().any(|l| l.trim_start().starts_with('{')),
        "no JSON at a person: {err}"
    );
    let mut distinct = lines.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), lines.len(), "each warning once: {err}");
    assert!(!err.contains("INFO"), "nothing at info by default: {err}");
    assert_eq!(err.matches("Server cert bypassed").count(), 1, "{err}");
    c.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_through_the_cli_is_written_listed_and_reviewed() {
    let c = cluster().await;
    let r = c
        .jitgate(
            CAROL,
            &[
                "request",
                "--break-glass",
                "--resource",
                "secrets",
                "-n",
                "prod",
                "--name",
                "db-password",
                // Without it the entry would cover reads too, where prod-reads allows
                // no break-glass: the ledger would refuse it.
                "--operation",
                "UPDATE",
                "--for",
                "30m",
                "--reason",
                "INC-13: primary down, rotating credentials",
            ],
        )
        .await;
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    let key = c.entries().keys().next().unwrap().clone();
    // Usable at once, and loud about it.
    let carol = Req::secret_update().with(|r| {
        r.user = CAROL.1.into();
        r.groups = vec!["oncall".into()];
    });
    eventually(PATIENCE, || {
        let review = carol.clone().with(|_| {}).review();
        let h = &c.h;
        async move { h.conn(Proto::H1).await.decide(&review).await["allowed"] == true }
    })
    .await;
    let mut conn = c.h.conn(Proto::H1).await;
    let used = conn.decide(&carol.clone().with(|_| {}).review()).await;
    assert!(
        used["warnings"][0].as_str().unwrap().contains("BREAK-GLASS"),
        "{used}"
    );

    let list = c.jitgate(BOB, &["list", "--break-glass"]).await;
    let cells = row(&list.out, &key).unwrap_or_else(|| panic!("{}", list.out));
    assert_eq!(
        (cells[4], cells[6]),
        ("unreviewed", "break-glass"),
        "{}",
        list.out
    );
    assert!(row(&c.jitgate(BOB, &["list", "--pending"]).await.out, &key).is_none());

    // Carol can neither make it vanish nor review it herself.
    let gone = c.jitgate(CAROL, &["revoke", &key]).await;
    assert_eq!(gone.code, 1);
    assert!(gone.err.contains("break_glass_unreviewed"), "{}", gone.err);
    let own = c.jitgate(CAROL, &["approve", &key]).await;
    assert_eq!(own.code, 1);
    assert!(own.err.contains("self_approval"), "{}", own.err);
    // Bob reviews it; then it may be removed.
    let reviewed = c.jitgate(BOB, &["approve", &key]).await;
    assert_eq!(reviewed.code, 0, "{}", reviewed.err);
    assert!(
        reviewed.out.starts_with("reviewed break-glass entry"),
        "{}",
        reviewed.out
    );
    let list = c.jitgate(BOB, &["list", "--break-glass"]).await;
    assert_eq!(row(&list.out, &key).unwrap()[4], "reviewed:1", "{}", list.out);
    assert_eq!(c.jitgate(CAROL, &["revoke", &key]).await.code, 0);
    let actions: Vec<String> =
        c.h.records()
            .iter()
            .filter(|r| r["event"] == "approval")
            .map(|r| r["action"].as_str().unwrap().to_string())
            .collect();
    assert_eq!(actions, ["break-glass", "reviewed", "revoked"]);
    c.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approvers_inbox_and_a_requesters_wait_through_the_api_server() {
    let c = cluster().await;
    let request = |who, name: &'static str| {
        let c = &c;
        async move {
            let args = [
                "request",
                "--resource",
                "secrets",
                "-n",
                "prod",
                "--name",
                name,
                "--operation",
                "UPDATE",
                "--for",
                "30m",
                "--reason",
                "INC-11: rotate",
            ];
            let r = c.jitgate(who, &args).await;
            assert_eq!(r.code, 0, "{}", r.err);
            r.requested_key()
        }
    };
    let key = request(ALICE, "db-password").await;
    let bobs_own = request(BOB, "other").await;

    // Bob (sre) sees Alice's request, not his own; Carol (not sre) sees nothing to approve.
    let inbox = c.jitgate(BOB, &["inbox"]).await;
    assert_eq!(inbox.code, 0, "{}", inbox.err);
    let cells = row(&inbox.out, &key).unwrap_or_else(|| panic!("{}", inbox.out));
    assert_eq!(
        &cells[1..4],
        ["user:alice@example.com", "UPDATE", "prod/secrets/db-password"]
    );
    assert_eq!(cells[4], "0/1");
    assert!(row(&inbox.out, &bobs_own).is_none(), "not his own: {}", inbox.out);
    assert!(
        inbox
            .out
            .contains(&format!("  jitgate approve jitgate-approvals/{key} --pin ")),
        "{}",
        inbox.out
    );
    let carol = c.jitgate(CAROL, &["inbox"]).await;
    assert!(
        carol.out.starts_with("nothing waits for your approval"),
        "{}",
        carol.out
    );

    // `inbox --watch` redraws when the ConfigMap changes.
    let kubeconfig = c.api.kubeconfig_as(BOB.0);
    let mut watching = std::process::Command::new(BIN)
        .args(["inbox", "--watch", "--kubeconfig"])
        .arg(&kubeconfig)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watching.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let seen_until = |needle: &str| {
        let deadline = std::time::Instant::now() + PATIENCE;
        while std::time::Instant::now() < deadline {
            if let Ok(line) = lines_rx.recv_timeout(std::time::Duration::from_millis(200))
                && line.contains(needle)
            {
                return true;
            }
        }
        false
    };
    assert!(
        tokio::task::block_in_place(|| seen_until(&key)),
        "the watched inbox shows the request"
    );

    // Alice waits; Bob approves; her wait ends at once, with exit 0.
    let alice = c.api.kubeconfig_as(ALICE.0);
    let waited_key = key.clone();
    let waiting = tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(BIN)
            .args(["wait", &waited_key, "--kubeconfig"])
            .arg(alice)
            .output()
            .unwrap();
        (out, std::time::Instant::now())
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "wait blocks while the request is pending");
    let approve = c.jitgate(BOB, &["approve", &key]).await;
    let approved_at = std::time::Instant::now();
    assert_eq!(approve.code, 0, "{}", approve.err);
    let (out, ended) = waiting.await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(said.contains("approved by bob@example.com"), "{said}");
    let after = ended.saturating_duration_since(approved_at);
    eprintln!("wait ended {after:?} after the approval command returned");
    assert!(after < std::time::Duration::from_secs(5), "{after:?}");
    assert!(
        tokio::task::block_in_place(|| seen_until("nothing waits for your approval")),
        "the watched inbox empties once approved"
    );
    let _ = watching.kill();
    let _ = watching.wait();

    // A revoked request ends a wait with exit 1; an unknown one is a usage error (2).
    let waited_key = bobs_own.clone();
    let bob = c.api.kubeconfig_as(BOB.0);
    let waiting = tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN)
            .args(["wait", &waited_key, "--kubeconfig"])
            .arg(bob)
            .output()
            .unwrap()
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(c.jitgate(BOB, &["revoke", &bobs_own]).await.code, 0);
    let out = waiting.await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("was revoked"));
    assert_eq!(c.jitgate(ALICE, &["wait", "no-such-entry"]).await.code, 2);
    c.h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_valid_once_approved_starts_its_clock_when_approved() {
    let c = cluster().await;
    let args = [
        "request",
        "--resource",
        "secrets",
        "-n",
        "prod",
        "--name",
        "db-password",
        "--operation",
        "UPDATE",
        "--for",
        "30m",
        "--once-approved",
        "--reason",
        "INC-12: rotate",
    ];
    let r = c.jitgate(ALICE, &args).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.out.contains("for 30m once approved"), "{}", r.out);
    let key = r.requested_key();
    assert!(c.entries()[&key].as_str().unwrap().contains("for: 30m"));
    assert!(!c.alice_may_update().await, "not before it is approved");
    let ok = c.jitgate(BOB, &["approve", &key]).await;
    assert_eq!(ok.code, 0, "{}", ok.err);
    let stored = c.entries()[&key].as_str().unwrap().to_string();
    let stamp: jiff::Timestamp = stored
        .lines()
        .find_map(|l| l.strip_prefix("approvedAt: "))
        .unwrap_or_else(|| panic!("{stored}"))
        .trim_matches('"')
        .parse()
        .unwrap();
    assert!(jiff::Timestamp::now().duration_since(stamp).abs() < jiff::SignedDuration::from_secs(30));
    eventually(PATIENCE, || c.alice_may_update()).await;
    let show = c.jitgate(BOB, &["show", &key]).await;
    assert!(
        show.out
            .contains(&format!("until {}", stamp + jiff::SignedDuration::from_mins(30))),
        "{}",
        show.out
    );
    c.h.stop().await;
}

/// The value of `show`'s line starting with `label`.
fn shown<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in\n{out}"))
        .trim()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_with_a_pin_refuses_an_entry_changed_since_it_was_shown() {
    let c = cluster().await;
    let args = [
        "request",
        "--resource",
        "secrets",
        "-n",
        "prod",
        "--name",
        "db-password",
        "--operation",
        "UPDATE",
        "--reason",
        "INC-14: rotate",
    ];
    let r = c.jitgate(ALICE, &args).await;
    assert_eq!(r.code, 0, "{}", r.err);
    let key = r.requested_key();
    // Bob reads the request; show gives its pin and the command that approves it as shown.
    let show = c.jitgate(BOB, &["show", &key]).await;
    assert_eq!(show.code, 0, "{}", show.err);
    let pin = shown(&show.out, "pin:").to_string();
    let command = shown(&show.out, "approve:").to_string();
    assert_eq!(
        command,
        format!("jitgate approve jitgate-approvals/{key} --pin {pin}")
    );
    let inbox = c.jitgate(BOB, &["inbox"]).await;
    assert!(inbox.out.contains(&command), "{}", inbox.out);

    // Meanwhile Alice widens her request to every Secret in prod (hers to amend).
    let widened = c.entries()[&key]
        .as_str()
        .unwrap()
        .replace("name: \"db-password\"\n", "");
    assert_ne!(widened, c.entries()[&key].as_str().unwrap());
    let mut conn = c.api.conn_as(ALICE.0).await;
    let reply = conn
        .send(
            hyper::Method::PATCH,
            "/api/v1/namespaces/jitgate-system/configmaps/jitgate-approvals",
            Some("application/merge-patch+json"),
            serde_json::to_vec(&serde_json::json!({"data": {&key: widened}})).unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));

    // Bob runs the command he was shown: refused, nothing approved.
    let words: Vec<&str> = command.split_whitespace().skip(1).collect();
    let pinned = c.jitgate(BOB, &words).await;
    assert_eq!(pinned.code, 1, "{}{}", pinned.out, pinned.err);
    assert!(
        pinned.err.contains(&format!(
            "jitgate-approvals/{key} changed since you read it (pin {pin}, now "
        )) && pinned.err.contains("nothing was approved"),
        "{}",
        pinned.err
    );
    assert!(!c.entries()[&key].as_str().unwrap().contains(BOB.1));

    // Read again, approved with the new pin: the output is the entry as signed.
    let again = c.jitgate(BOB, &["show", &key]).await;
    let new_pin = shown(&again.out, "pin:").to_string();
    assert_ne!(new_pin, pin);
    let ok = c.jitgate(BOB, &["approve", &key, "--pin", &new_pin]).await;
    assert_eq!(ok.code, 0, "{}", ok.err);
    assert!(
        ok.out.contains(&format!(
            "the entry as approved (pin {new_pin}):\n  user: \"alice@example.com\"\n"
        )),
        "{}",
        ok.out
    );
    assert!(
        !ok.out.contains("  name: "),
        "what was approved: every Secret: {}",
        ok.out
    );
    assert!(
        ok.out.contains("  approvedBy: [\"bob@example.com\"]"),
        "{}",
        ok.out
    );
    c.h.stop().await;
}
