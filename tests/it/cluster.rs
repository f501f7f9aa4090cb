//! Cluster mode, end to end: jitgate follows approvals ConfigMaps on a real HTTPS test API
//! server through its kube client and a kubeconfig, exactly as it would follow a cluster.

use crate::support::apiserver::ApiServer;
use crate::support::*;
use hyper::StatusCode;
use std::time::Duration;

/// Patience for asynchronous effects; the edit-to-effect figure is measured by
/// `cargo bench --bench edit_to_effect`, not asserted here.
const PATIENCE: Duration = Duration::from_secs(15);

async fn start_jitgate(api: &ApiServer, max_staleness: Duration) -> Harness {
    Harness::start_cluster(api, max_staleness, |_| {}).await
}

async fn allowed(h: &Harness, req: &Req) -> bool {
    let mut c = h.conn(Proto::H1).await;
    c.decide(&req.clone().with(|_| {}).review()).await["allowed"] == true
}

/// Waits until alice's secret update is allowed (or, with `false`, denied).
async fn until_alice(h: &Harness, allow: bool) -> Duration {
    let alice = Req::secret_update();
    eventually(PATIENCE, || async { allowed(h, &alice).await == allow }).await
}

async fn until_ready(h: &Harness) {
    eventually(PATIENCE, || async { h.readyz().await == StatusCode::OK }).await;
}

#[tokio::test]
async fn a_configmap_added_after_start_grants_and_its_deletion_revokes() {
    let api = ApiServer::start().await;
    let h = start_jitgate(&api, Duration::from_secs(300)).await;
    until_ready(&h).await;
    assert!(!allowed(&h, &Req::secret_update()).await);

    api.apply_approvals("team-a", &[("grant", &entry(&[]))]);
    let took = until_alice(&h, true).await;
    eprintln!("a new approvals ConfigMap took effect after {took:?}");
    assert_eq!(h.records().last().unwrap()["approval"], "team-a/grant");

    api.delete("jitgate-system", "team-a");
    until_alice(&h, false).await;
    h.stop().await;
}

#[tokio::test]
async fn edits_to_scope_and_expiry_take_effect_and_removing_a_key_revokes() {
    let api = ApiServer::start().await;
    api.apply_approvals(
        "jitgate-approvals",
        &[("grant", &entry(&[])), ("other", &entry(&[("alice@", "bob@")]))],
    );
    let h = start_jitgate(&api, Duration::from_secs(300)).await;
    until_ready(&h).await;
    assert!(allowed(&h, &Req::secret_update()).await);

    // Narrow the scope to another Secret: denied.
    api.apply_approvals(
        "jitgate-approvals",
        &[("grant", &entry(&[("name: db-password", "name: other")]))],
    );
    until_alice(&h, false).await;
    // Widen it back: allowed.
    api.apply_approvals("jitgate-approvals", &[("grant", &entry(&[]))]);
    until_alice(&h, true).await;
    // Expiry moved into the past: denied, and the record says why.
    api.apply_approvals("jitgate-approvals", &[("grant", &expiring(-1, &[]))]);
    until_alice(&h, false).await;
    assert_eq!(h.records().last().unwrap()["reason"], "approval_expired");
    // The key removed: denied with nothing to show.
    api.apply_approvals("jitgate-approvals", &[("grant", &entry(&[]))]);
    until_alice(&h, true).await;
    api.apply_approvals(
        "jitgate-approvals",
        &[("unrelated", &entry(&[("alice@", "bob@")]))],
    );
    until_alice(&h, false).await;
    assert_eq!(h.records().last().unwrap()["reason"], "no_approval");
    h.stop().await;
}

#[tokio::test]
async fn unlabelled_configmaps_are_ignored_and_unlabelling_revokes() {
    let api = ApiServer::start().await;
    api.apply("jitgate-system", "stray", &[], &[("grant", &entry(&[]))]);
    api.apply(
        "jitgate-system",
        "wrong-value",
        &[("jitgate.dev/approvals", "false")],
        &[("grant", &entry(&[]))],
    );
    api.apply(
        "other-namespace",
        "elsewhere",
        &[("jitgate.dev/approvals", "true")],
        &[("grant", &entry(&[]))],
    );
    let h = start_jitgate(&api, Duration::from_secs(300)).await;
    until_ready(&h).await;
    assert!(!allowed(&h, &Req::secret_update()).await);

    api.apply_approvals("labelled", &[("grant", &entry(&[]))]);
    until_alice(&h, true).await;
    // The label taken off: the watch sees the ConfigMap leave, and the grant goes with it.
    api.apply("jitgate-system", "labelled", &[], &[("grant", &entry(&[]))]);
    until_alice(&h, false).await;
    h.stop().await;
}

#[tokio::test]
async fn approvals_from_two_configmaps_are_both_used() {
    let api = ApiServer::start().await;
    api.apply_approvals("team-a", &[("alice", &entry(&[]))]);
    let bob = entry(&[
        ("alice@example.com", "bob@example.com"),
        ("[bob@example.com]", "[carol@example.com]"),
    ]);
    api.apply_approvals("team-b", &[("bob", &bob)]);
    let h = start_jitgate(&api, Duration::from_secs(300)).await;
    until_ready(&h).await;
    assert!(allowed(&h, &Req::secret_update()).await);
    let bob_req = Req::secret_update().with(|r| r.user = "bob@example.com".into());
    assert!(allowed(&h, &bob_req).await);
    assert_eq!(h.records().last().unwrap()["approval"], "team-b/bob");
    h.stop().await;
}

#[tokio::test]
async fn a_malformed_entry_is_skipped_logged_once_per_change_and_its_neighbours_work() {
    let logs = LogCapture::start();
    let api = ApiServer::start().await;
    let broken = "user: alice@example.com\nresource: secrets\ncolour: blue\n";
    api.apply_approvals("jitgate-approvals", &[("broken", broken), ("grant", &entry(&[]))]);
    let h = start_jitgate(&api, Duration::from_secs(300)).await;
    until_ready(&h).await;
    assert!(allowed(&h, &Req::secret_update()).await);
    let ignored =
        |logs: &LogCapture| logs.count("approval entry ignored", "approval", "jitgate-approvals/broken");
    assert_eq!(ignored(&logs), 1);

    // A change to a neighbour, a cut watch and a full re-list (410) do not log it again.
    let bob = entry(&[
        ("alice@example.com", "bob@example.com"),
        ("[bob@example.com]", "[carol@example.com]"),
    ]);
    api.apply_approvals(
        "jitgate-approvals",
        &[("broken", broken), ("grant", &entry(&[])), ("bob", &bob)],
    );
    let bob_req = Req::secret_update().with(|r| r.user = "bob@example.com".into());
    eventually(PATIENCE, || allowed(&h, &bob_req)).await;
    api.cut_watches();
    api.compact();
    api.apply_approvals("jitgate-approvals", &[("broken", broken), ("grant", &entry(&[]))]);
    eventually(PATIENCE, || async { !allowed(&h, &bob_req).await }).await;
    assert_eq!(ignored(&logs), 1, "logged once, not at every resync");

    // Changing the broken entry is a new change: logged again.
    api.apply_approvals(
        "jitgate-approvals",
        &[
            ("broken", "user: alice@example.com\ncolour: red\n"),
            ("grant", &entry(&[])),
        ],
    );
    eventually(PATIENCE, || async { ignored(&logs) == 2 }).await;
    assert!(allowed(&h, &Req::secret_update()).await);
    h.stop().await;
}

#[tokio::test]
async fn not_ready_and_granting_nothing_before_the_first_list() {
    let mut api = ApiServer::start().await;
    api.apply_approvals("jitgate-approvals", &[("grant", &entry(&[]))]);
    api.down().await;
    let h = start_jitgate(&api, Duration::from_secs(300)).await;
    // The API server refuses connections: no list, so not ready and no grants.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.readyz().await, StatusCode::SERVICE_UNAVAILABLE);
    let alice = Req::secret_update();
    assert!(!allowed(&h, &alice).await);
    assert_eq!(h.records().last().unwrap()["reason"], "approvals_unavailable");

    api.up().await;
    until_ready(&h).await;
    until_alice(&h, true).await;
    h.stop().await;
}

#[tokio::test]
async fn a_change_made_while_the_watch_is_cut_is_not_lost() {
    let mut api = ApiServer::start().await;
    api.apply_approvals("jitgate-approvals", &[("grant", &entry(&[]))]);
    let h = start_jitgate(&api, Duration::from_secs(300)).await;
    until_ready(&h).await;
    until_alice(&h, true).await;

    // Cut: the change lands before the client resumes, and the resumed watch replays it.
    api.cut_watches();
    api.apply_approvals(
        "jitgate-approvals",
        &[("grant", &entry(&[("name: db-password", "name: other")]))],
    );
    until_alice(&h, false).await;

    // Down: the change lands while nobody can connect.
    api.down().await;
    api.apply_approvals("jitgate-approvals", &[("grant", &entry(&[]))]);
    api.up().await;
    until_alice(&h, true).await;

    // Down, changed, and history compacted: the resumed watch gets 410 and re-lists.
    api.down().await;
    api.delete("jitgate-system", "jitgate-approvals");
    api.compact();
    api.up().await;
    until_alice(&h, false).await;
    let relists = api
        .requests()
        .iter()
        .filter(|r| {
            r.starts_with("GET /api/v1/namespaces/jitgate-system/configmaps?") && !r.contains("watch=true")
        })
        .count();
    assert!(
        relists >= 2,
        "a 410 makes the client list again: {:?}",
        api.requests()
    );
    h.stop().await;
}

#[tokio::test]
async fn a_quiet_watch_kept_alive_by_bookmarks_does_not_go_stale() {
    let api = ApiServer::start().await;
    api.set_bookmark_interval(Duration::from_millis(200));
    api.apply_approvals("jitgate-approvals", &[("grant", &entry(&[]))]);
    let h = start_jitgate(&api, Duration::from_secs(1)).await;
    until_ready(&h).await;
    until_alice(&h, true).await;
    // Three times the budget with no change at all: bookmarks alone keep it fresh.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(allowed(&h, &Req::secret_update()).await);
    h.stop().await;
}

#[tokio::test]
async fn the_api_server_down_past_the_staleness_budget_stops_grants_until_it_returns() {
    let mut api = ApiServer::start().await;
    api.set_bookmark_interval(Duration::from_millis(200));
    api.apply_approvals("jitgate-approvals", &[("grant", &entry(&[]))]);
    let h = start_jitgate(&api, Duration::from_secs(2)).await;
    until_ready(&h).await;
    until_alice(&h, true).await;

    api.down().await;
    // Within the budget, the last good state keeps serving.
    assert!(allowed(&h, &Req::secret_update()).await);
    // Past it, grants stop, and the denial says why.
    until_alice(&h, false).await;
    let record = h.records().last().unwrap().clone();
    assert_eq!(record["reason"], "approvals_stale");
    let mut c = h.conn(Proto::H1).await;
    let response = c.decide(&Req::secret_update().review()).await;
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("has not heard from the Kubernetes API"),
        "{message}"
    );
    // Still ready: ungated requests are served, gated ones told why.
    assert_eq!(h.readyz().await, StatusCode::OK);

    api.up().await;
    until_alice(&h, true).await;
    h.stop().await;
}

/// The counter of entries read, from `/metrics`.
async fn entries_read(h: &Harness) -> u64 {
    let mut c = h.conn(Proto::H1).await;
    let reply = c.send(hyper::Method::GET, "/metrics", None, Vec::new()).await;
    let text = String::from_utf8(reply.body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("jitgate_approval_entries_read "))
        .and_then(|n| n.trim().parse().ok())
        .expect("the counter of entries read")
}

// The counter is the server's own (its approvals store's), so tests running beside it in
// the same process do not move it.
#[tokio::test]
async fn an_edit_of_one_entry_reads_that_entry_again_not_its_whole_configmap() {
    let api = ApiServer::start().await;
    let others: Vec<(String, String)> = (0..20)
        .map(|i| {
            let e = entry(&[("alice@example.com", &format!("user-{i}@example.com"))]);
            (format!("other-{i}"), e)
        })
        .collect();
    let with = |grant: String| {
        let mut data: Vec<(&str, String)> = others.iter().map(|(k, e)| (k.as_str(), e.clone())).collect();
        data.push(("grant", grant));
        data
    };
    let apply = |data: Vec<(&str, String)>| {
        let data: Vec<(&str, &str)> = data.iter().map(|(k, e)| (*k, e.as_str())).collect();
        api.apply_approvals("team-a", &data);
    };
    apply(with(expiring(-5, &[])));
    let h = start_jitgate(&api, Duration::from_secs(300)).await;
    until_ready(&h).await;
    assert!(!allowed(&h, &Req::secret_update()).await);
    let before = entries_read(&h).await;

    apply(with(entry(&[])));
    until_alice(&h, true).await;
    assert_eq!(
        entries_read(&h).await - before,
        1,
        "only the edited entry is read again"
    );
    // The others still grant as they did: they were kept, not lost.
    let other = Req::secret_update().with(|r| r.user = "user-3@example.com".into());
    assert!(allowed(&h, &other).await);
    h.stop().await;
}

/// The first list asks for the approvals ConfigMaps a few at a time, so that jitgate never
/// holds them all at once as a list's body and objects; every page counts.
#[tokio::test]
async fn approvals_configmaps_are_listed_a_page_at_a_time_and_every_page_counts() {
    let api = ApiServer::start().await;
    let other = entry(&[("alice@example.com", "bob@example.com")]);
    for i in 0..24 {
        api.apply_approvals(&format!("team-{i:02}"), &[("other", &other)]);
    }
    // Listed last (by name), on the third page.
    api.apply_approvals("team-zz", &[("grant", &entry(&[]))]);
    let h = start_jitgate(&api, Duration::from_secs(300)).await;
    until_ready(&h).await;
    assert!(allowed(&h, &Req::secret_update()).await);
    let lists: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| {
            r.starts_with("GET /api/v1/namespaces/jitgate-system/configmaps?")
                && !r.contains("watch=true")
                && r.contains("labelSelector")
        })
        .collect();
    assert!(
        lists.len() >= 3 && lists.iter().all(|r| r.contains("limit=10")),
        "{lists:?}"
    );
    h.stop().await;
}
