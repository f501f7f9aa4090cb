//! The approvals file while the server runs: edits take effect, a broken file keeps the
//! last good approvals, a bad entry is skipped while its neighbours work, and nothing is
//! granted before the first load.

use crate::support::*;
use hyper::StatusCode;
use std::time::Duration;

/// Long enough for any machine; the figure the user cares about (edit to effect) is
/// printed and measured by the benchmark, not asserted here.
const PATIENCE: Duration = Duration::from_secs(10);

async fn allowed(h: &Harness, req: &Req) -> bool {
    let mut c = h.conn(Proto::H1).await;
    c.decide(&req.clone().with(|_| {}).review()).await["allowed"] == true
}

#[tokio::test]
async fn an_edit_to_the_approvals_file_takes_effect_while_running() {
    let h = Harness::start(&approvals_manifest(&[])).await;
    let alice = Req::secret_update();
    assert!(!allowed(&h, &alice).await);

    h.write_approvals(&approvals_manifest(&[("grant", &entry(&[]))]));
    let took = eventually(PATIENCE, || allowed(&h, &alice)).await;
    eprintln!("approval took effect after {took:?}");

    // Narrowing the scope takes effect too: the same key now names another Secret.
    h.write_approvals(&approvals_manifest(&[(
        "grant",
        &entry(&[("name: db-password", "name: other")]),
    )]));
    eventually(PATIENCE, || async { !allowed(&h, &alice).await }).await;
    h.stop().await;
}

#[tokio::test]
async fn removing_an_entry_revokes_it() {
    let h = Harness::start(&approvals_manifest(&[
        ("grant", &entry(&[])),
        ("other", &entry(&[("alice@", "bob@")])),
    ]))
    .await;
    let alice = Req::secret_update();
    assert!(allowed(&h, &alice).await);
    h.write_approvals(&approvals_manifest(&[("other", &entry(&[("alice@", "bob@")]))]));
    eventually(PATIENCE, || async { !allowed(&h, &alice).await }).await;
    h.stop().await;
}

#[tokio::test]
async fn a_malformed_entry_is_skipped_while_its_neighbours_work() {
    let broken = "user: alice@example.com\nresource: secrets\nnamespace: prod\ncolour: blue\n";
    let not_yaml = "user: [unclosed";
    let group_and_user = entry(&[("user: alice@example.com", "user: alice@example.com\ngroup: dev")]);
    let bob = entry(&[
        ("alice@example.com", "bob@example.com"),
        ("[bob@example.com]", "[carol@example.com]"),
    ]);
    let h = Harness::start(&approvals_manifest(&[
        ("a-broken", broken),
        ("b-alice", &entry(&[])),
        ("c-not-yaml", not_yaml),
        ("d-ambiguous", &group_and_user),
        ("e-bob", &bob),
    ]))
    .await;
    assert!(allowed(&h, &Req::secret_update()).await);
    assert!(
        allowed(
            &h,
            &Req::secret_update().with(|r| r.user = "bob@example.com".into())
        )
        .await
    );
    // The ambiguous entry (user and group) grants nothing to the group.
    assert!(
        !allowed(
            &h,
            &Req::secret_update().with(|r| r.user = "dave@example.com".into())
        )
        .await
    );
    h.stop().await;
}

#[tokio::test]
async fn a_broken_file_keeps_the_last_good_approvals() {
    let good = approvals_manifest(&[("grant", &entry(&[]))]);
    let h = Harness::start(&good).await;
    let alice = Req::secret_update();
    assert!(allowed(&h, &alice).await);

    // Broken YAML, then a file that is not a ConfigMap, then no file at all: each is
    // refused, and the last good approvals keep working. Each state is held well past
    // the change notification that makes the server re-read the file.
    let broken_states: [Option<&str>; 3] = [
        Some("apiVersion: v1\nkind: ConfigMap\ndata: [unclosed\n"),
        Some("apiVersion: v1\nkind: Secret\nmetadata: { name: s }\n"),
        None,
    ];
    for state in broken_states {
        match state {
            Some(text) => h.write_approvals(text),
            None => std::fs::remove_file(h.approvals_path()).unwrap(),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(allowed(&h, &alice).await, "last good approvals kept");
        assert_eq!(h.readyz().await, StatusCode::OK);
    }

    // A good file again is applied.
    h.write_approvals(&approvals_manifest(&[]));
    eventually(PATIENCE, || async { !allowed(&h, &alice).await }).await;
    h.stop().await;
}

#[tokio::test]
async fn nothing_is_granted_before_the_first_load_and_readiness_waits_for_it() {
    let h = Harness::start_with(None, |_| {}).await;
    assert_eq!(h.readyz().await, StatusCode::SERVICE_UNAVAILABLE);
    let mut c = h.conn(Proto::H1).await;
    let alice = Req::secret_update();
    let response = c.decide(&alice.review()).await;
    assert_eq!(response["allowed"], false);
    assert_eq!(h.record_of(&alice.uid)["reason"], "approvals_unavailable");
    assert!(
        response["status"]["message"]
            .as_str()
            .unwrap()
            .contains("has not loaded its approvals yet")
    );
    // Ungated requests do not depend on approvals.
    let ungated = Req::secret_update().with(|r| r.namespace = "dev".into());
    assert_eq!(c.decide(&ungated.review()).await["allowed"], true);

    h.write_approvals(&approvals_manifest(&[("grant", &entry(&[]))]));
    eventually(PATIENCE, || async { h.readyz().await == StatusCode::OK }).await;
    assert!(allowed(&h, &alice).await);
    h.stop().await;
}

/// How many approval entries the server has read since it started.
async fn entries_read(h: &Harness) -> f64 {
    counter(&scrape(h).await, "jitgate_approval_entries_read")
}

/// `manifest` (of one ConfigMap, `metadata` first) in the order `kubectl get -o yaml`
/// writes its keys: `apiVersion`, `data`, `kind`, `metadata`.
fn kubectl_order(manifest: &str) -> String {
    let (head, data) = manifest.split_at(manifest.find("\ndata:").unwrap() + 1);
    let rest = head.strip_prefix("apiVersion: v1\n").unwrap();
    format!("apiVersion: v1\n{data}{rest}")
}

// The counter is the server's own (its approvals store's), so tests running beside it in
// the same process do not move it.
#[tokio::test]
async fn an_edit_of_one_entry_of_the_file_reads_that_entry_again_not_the_whole_file() {
    an_edit_of_one_entry_reads_that_entry(|m| m).await;
}

/// The same with the file written as `kubectl get -o yaml` writes a ConfigMap (its `data`
/// before its `metadata`).
#[tokio::test]
async fn an_edit_of_one_entry_of_a_file_in_kubectl_order_reads_that_entry_again() {
    an_edit_of_one_entry_reads_that_entry(|m| {
        let k = kubectl_order(&m);
        assert!(k.starts_with("apiVersion: v1\ndata:\n") && k.contains("kind: ConfigMap\nmetadata:"));
        k
    })
    .await;
}

async fn an_edit_of_one_entry_reads_that_entry(order: fn(String) -> String) {
    let others: Vec<(String, String)> = (0..20)
        .map(|i| {
            let e = entry(&[("alice@example.com", &format!("user-{i}@example.com"))]);
            (format!("other-{i}"), e)
        })
        .collect();
    let with = |grant: &str| {
        let mut entries: Vec<(&str, &str)> = others.iter().map(|(k, e)| (k.as_str(), e.as_str())).collect();
        entries.push(("grant", grant));
        order(approvals_manifest(&entries))
    };
    let h = Harness::start(&with(&expiring(-5, &[]))).await;
    let alice = Req::secret_update();
    assert!(!allowed(&h, &alice).await);
    let before = entries_read(&h).await;
    assert_eq!(before, 21.0, "the first load reads every entry");

    h.write_approvals(&with(&entry(&[])));
    eventually(PATIENCE, || allowed(&h, &alice)).await;
    assert_eq!(
        entries_read(&h).await - before,
        1.0,
        "only the edited entry is read again"
    );
    // The others still grant as they did: they were kept, not lost.
    let other = Req::secret_update().with(|r| r.user = "user-3@example.com".into());
    assert!(allowed(&h, &other).await);
    h.stop().await;
}

/// A file of several ConfigMaps is read a document at a time, never held whole, and
/// reads as it would whole: its approvals grant, and the log line says how it was read.
/// A file with a document that does not read on its own is read whole, so that the error
/// names the line of the file it is on, not of the document.
#[tokio::test]
async fn a_file_of_several_configmaps_is_read_a_document_at_a_time() {
    let stray = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stray}\ndata: {}\n";
    let file = format!(
        "{stray}---\n{}---\n{stray}",
        approvals_manifest(&[("grant", &entry(&[]))])
    );
    let logs = LogCapture::start();
    let h = Harness::start(&file).await;
    assert!(allowed(&h, &Req::secret_update()).await);
    assert_eq!(logs.count("approvals loaded", "read", "by document"), 1);
    h.stop().await;

    // Line 31 of the file, line 4 of its fourth document.
    let broken = format!("{file}---\nkind: ConfigMap\nmetadata: {{name: s}}\ndata: [unclosed\n");
    assert_eq!(broken.lines().position(|l| l == "data: [unclosed"), Some(30));
    let h = Harness::start_with(Some(&broken), |_| {}).await;
    assert_eq!(h.readyz().await, StatusCode::SERVICE_UNAVAILABLE);
    let refused: Vec<String> = logs
        .lines()
        .iter()
        .filter(|l| l["message"] == "approvals file not applied; keeping the last good approvals")
        .map(|l| l["error"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].contains("line 31"), "{refused:?}");
    h.stop().await;
}
