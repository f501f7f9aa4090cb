//! Precise approvals over the wire: single-use approvals counted across four replicas,
//! dry runs, break-glass, policies in rollout (warn, dryrun), and change-pinned approvals.

use crate::support::apiserver::ApiServer;
use crate::support::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(15);
const CAPTURED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/admission/captured");

async fn start_with_policies(approvals: &str, policies: &tempfile::TempDir) -> Harness {
    let dir = policies.path().to_path_buf();
    Harness::start_with(Some(approvals), |cfg| cfg.policies_dir = dir).await
}

fn once(edits: &[(&str, &str)]) -> String {
    entry(edits) + "maxUses: 1\n"
}

/// The records of every harness.
fn all_records(hs: &[Harness]) -> Vec<Value> {
    hs.iter().flat_map(|h| h.records()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_uses_1_allows_exactly_one_of_200_concurrent_requests_across_4_replicas() {
    let api = ApiServer::start().await;
    api.apply("jitgate-system", "jitgate-usage", &[], &[]);
    api.apply_approvals("jitgate-approvals", &[("once", &once(&[]))]);
    let mut replicas = Vec::new();
    for _ in 0..4 {
        let h = Harness::start_cluster(&api, Duration::from_secs(300), |_| {}).await;
        eventually(PATIENCE, || async { h.readyz().await == hyper::StatusCode::OK }).await;
        replicas.push(h);
    }
    let mut conns = Vec::new();
    for i in 0..200 {
        conns.push(replicas[i % 4].conn(Proto::H1).await);
    }
    // Every request ready and connected; then all at once.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(200));
    let mut tasks = Vec::new();
    for mut c in conns {
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            let review = Req::secret_update().review();
            start.wait().await;
            let allowed = c.decide(&review).await["allowed"] == true;
            (allowed, review)
        }));
    }
    let mut allowed = Vec::new();
    for t in tasks {
        let (ok, review) = t.await.unwrap();
        if ok {
            allowed.push(review);
        }
    }
    assert_eq!(allowed.len(), 1, "exactly one use");
    let records = all_records(&replicas);
    let reasons: Vec<&str> = records.iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.iter().filter(|r| **r == "approved").count(), 1);
    assert_eq!(
        reasons.iter().filter(|r| **r == "uses_exhausted").count(),
        199,
        "{reasons:?}"
    );

    let calls = api.requests();
    let count = |prefix: &str| calls.iter().filter(|l| l.starts_with(prefix)).count();
    let (gets, puts) = (
        count("GET /api/v1/namespaces/jitgate-system/configmaps/jitgate-usage"),
        count("PUT /api/v1/namespaces/jitgate-system/configmaps/jitgate-usage"),
    );
    eprintln!("usage ConfigMap: {gets} reads, {puts} updates (one landed, the rest lost the race)");
    assert!(gets >= 200 && puts >= 1, "{gets} reads, {puts} updates");

    let usage = api.object("jitgate-system", "jitgate-usage").unwrap();
    let record: Value =
        serde_json::from_str(usage["data"]["jitgate-approvals_once"].as_str().unwrap()).unwrap();
    let uid = allowed[0]["request"]["uid"].clone();
    assert_eq!(record["uids"], serde_json::json!([uid]));

    // The API server retries the allowed request, at another replica: allowed again, and
    // no further use is spent.
    for h in &replicas {
        let mut c = h.conn(Proto::H2).await;
        assert_eq!(c.decide(&allowed[0]).await["allowed"], true);
    }
    let usage = api.object("jitgate-system", "jitgate-usage").unwrap();
    let record: Value =
        serde_json::from_str(usage["data"]["jitgate-approvals_once"].as_str().unwrap()).unwrap();
    assert_eq!(record["uids"].as_array().unwrap().len(), 1);
    // And a new request is still refused, saying why.
    let mut c = replicas[0].conn(Proto::H1).await;
    let denied = c.decide(&Req::secret_update().review()).await;
    let message = denied["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("has been used 1 time, all it allows"),
        "{message}"
    );
    for h in replicas {
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_use_that_cannot_be_recorded_is_not_granted() {
    let api = ApiServer::start().await;
    // No jitgate-usage ConfigMap.
    api.apply_approvals("jitgate-approvals", &[("once", &once(&[]))]);
    let h = Harness::start_cluster(&api, Duration::from_secs(300), |_| {}).await;
    eventually(PATIENCE, || async { h.readyz().await == hyper::StatusCode::OK }).await;
    let mut c = h.conn(Proto::H1).await;
    let req = Req::secret_update();
    let answer = c.review(&req.review()).await;
    let reply = answer.json()["response"].clone();
    assert_eq!(reply["allowed"], false);
    let message = reply["status"]["message"].as_str().unwrap();
    assert!(message.contains("this use could not be recorded"), "{message}");
    assert_eq!(h.record_of(&req.uid)["reason"], "usage_unavailable");
    assert_record_is_the_answer(&h.record_of(&req.uid), &answer);
    h.stop().await;
}

fn dry_run(req: &Req) -> Value {
    let mut review = req.review();
    review["request"]["dryRun"] = true.into();
    review
}

#[tokio::test]
async fn dry_runs_are_answered_as_the_real_request_would_be() {
    let h = Harness::start(&approvals_manifest(&[("open", &entry(&[]))])).await;
    let mut c = h.conn(Proto::H2).await;
    let probe = Req::secret_update();
    assert_eq!(c.decide(&dry_run(&probe)).await["allowed"], true);
    let record = h.record_of(&probe.uid);
    assert_eq!(
        (record["dryRun"].clone(), record["reason"].clone()),
        (true.into(), "approved".into())
    );
    let other = Req::secret_update().with(|r| r.name = "other".into());
    assert_eq!(c.decide(&dry_run(&other)).await["allowed"], false);
    assert_eq!(h.record_of(&other.uid)["reason"], "no_approval");
    h.stop().await;
}

/// A dry run spends no use, yet the API server may act on it (a token request) or return
/// the object (a PATCH of a Secret answers with its data): under `maxUses` it would be an
/// uncounted use, as many times as anyone asks. It is refused, and leaves the use.
#[tokio::test]
async fn a_max_uses_approval_does_not_cover_dry_runs_and_they_spend_nothing() {
    let h = Harness::start(&approvals_manifest(&[("once", &once(&[]))])).await;
    let mut c = h.conn(Proto::H2).await;
    for _ in 0..3 {
        let probe = Req::secret_update();
        let reply = c.decide(&dry_run(&probe)).await;
        assert_eq!(reply["allowed"], false, "{reply}");
        let message = reply["status"]["message"].as_str().unwrap();
        assert!(
            message.contains("does not cover dry runs") && message.contains("run it for real"),
            "{message}"
        );
        let record = h.record_of(&probe.uid);
        assert_eq!(
            (record["dryRun"].clone(), record["reason"].clone()),
            (true.into(), "dry_run_not_counted".into())
        );
    }
    // The dry runs left the use for the real request.
    assert_eq!(c.decide(&Req::secret_update().review()).await["allowed"], true);
    // Now a dry run says what the real request would hear.
    let late = Req::secret_update();
    assert_eq!(c.decide(&dry_run(&late)).await["allowed"], false);
    assert_eq!(h.record_of(&late.uid)["reason"], "uses_exhausted");
    assert_eq!(c.decide(&Req::secret_update().review()).await["allowed"], false);
    h.stop().await;
}

fn glass(approvers: &str) -> String {
    format!(
        "user: alice@example.com\nresource: secrets\nnamespace: prod\nbreakGlass: true\nexpiresAt: \"{}\"\nreason: \"INC-12: database down, rotating credentials\"\napprovedBy: {approvers}\n",
        in_mins(45)
    )
}

async fn metric(h: &Harness, name: &str) -> Option<f64> {
    let mut c = h.conn(Proto::H1).await;
    let reply = c.send(hyper::Method::GET, "/metrics", None, Vec::new()).await;
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn break_glass_is_allowed_loudly_counted_and_logged_until_reviewed() {
    let logs = LogCapture::start();
    let policies = break_glass_policies();
    let h = start_with_policies(&approvals_manifest(&[("alice-glass", &glass("[]"))]), &policies).await;
    let mut c = h.conn(Proto::H1).await;
    let oncall =
        Req::secret_update().with(|r| r.groups = vec!["oncall".into(), "system:authenticated".into()]);
    let reply = c.decide(&oncall.review()).await;
    assert_eq!(reply["allowed"], true);
    let warnings: Vec<&str> = reply["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        warnings[0].contains("BREAK-GLASS use of jitgate-approvals/alice-glass"),
        "{warnings:?}"
    );
    assert!(warnings.iter().all(|w| w.chars().count() <= 120), "{warnings:?}");
    let record = h.record_of(&oncall.uid);
    assert_eq!(
        (record["reason"].clone(), record["approval"].clone()),
        ("break_glass".into(), "jitgate-approvals/alice-glass".into())
    );
    assert_eq!(metric(&h, "jitgate_break_glass_unreviewed").await, Some(1.0));
    assert_eq!(
        metric(
            &h,
            "jitgate_decisions_total{review=\"admission\",decision=\"allow\",reason=\"break_glass\",policy=\"prod-secrets\"}"
        )
        .await,
        Some(1.0)
    );
    eventually(PATIENCE, || async {
        logs.count(
            "break-glass entry not reviewed yet: an approver must add their name to its approvedBy",
            "approval",
            "jitgate-approvals/alice-glass",
        ) > 0
    })
    .await;

    // Without a break-glass group, the same entry grants nothing.
    let reply = c.decide(&Req::secret_update().review()).await;
    assert_eq!(reply["allowed"], false);
    assert!(
        reply["status"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot be used")
    );

    // Reviewed by bob: no longer counted; still a break-glass use, still loud.
    h.write_approvals(&approvals_manifest(&[(
        "alice-glass",
        &glass("[bob@example.com]"),
    )]));
    eventually(PATIENCE, || async {
        metric(&h, "jitgate_break_glass_unreviewed").await == Some(0.0)
    })
    .await;
    let again = c.decide(&oncall.clone().with(|_| {}).review()).await;
    assert!(again["warnings"][0].as_str().unwrap().contains("BREAK-GLASS"));
    assert_eq!(again["warnings"][1], "jitgate: reviewed by bob@example.com.");
    h.stop().await;
}

#[tokio::test]
async fn policies_in_warn_or_dryrun_let_denials_through_and_record_them() {
    for mode in ["warn", "dryrun"] {
        let policies = policies_with(|file, text| {
            if file == "prod-secrets.yaml" {
                text.replace("  approval:", &format!("  enforcement: {mode}\n  approval:"))
            } else {
                text
            }
        });
        let h = start_with_policies(&approvals_manifest(&[]), &policies).await;
        let mut c = h.conn(Proto::H2).await;
        let req = Req::secret_update();
        let reply = c.decide(&req.review()).await;
        assert_eq!(reply["allowed"], true, "{mode}");
        let record = h.record_of(&req.uid);
        assert_eq!(record["decision"], mode);
        assert_eq!(
            record["reason"], "no_approval",
            "the reason it would have been denied"
        );
        match mode {
            "warn" => {
                let warnings = reply["warnings"].as_array().unwrap();
                assert!(
                    warnings[0]
                        .as_str()
                        .unwrap()
                        .contains("policy prod-secrets (warn mode) would deny"),
                    "{warnings:?}"
                );
                assert!(
                    warnings
                        .iter()
                        .all(|w| w.as_str().unwrap().chars().count() <= 120)
                );
            }
            _ => assert!(reply.get("warnings").is_none(), "dryrun is silent: {reply}"),
        }
        // Workloads stay enforced.
        let mut scale: Value = serde_json::from_slice(
            &std::fs::read(Path::new(CAPTURED).join("deployment-scale-subresource-update.json")).unwrap(),
        )
        .unwrap();
        scale["request"]["namespace"] = "prod".into();
        assert_eq!(c.decide(&scale).await["allowed"], false);
        h.stop().await;
    }
}

fn captured(file: &str, ns: &str) -> Value {
    let mut review: Value =
        serde_json::from_slice(&std::fs::read(Path::new(CAPTURED).join(file)).unwrap()).unwrap();
    review["request"]["namespace"] = ns.into();
    review["request"]["uid"] = unique_uid().into();
    review
}

#[tokio::test]
async fn a_change_pinned_approval_allows_the_approved_diff_and_nothing_else() {
    let h = Harness::start(&approvals_manifest(&[])).await;
    let mut c = h.conn(Proto::H1).await;
    // The captured `kubectl set image`, denied: the message carries its fingerprint.
    let set_image = captured("deployment-update-via-set-image-patch.json", "prod");
    let reply = c.decide(&set_image).await;
    let message = reply["status"]["message"].as_str().unwrap().to_string();
    let at = message
        .find("This change is sha256:")
        .expect("fingerprint in the denial")
        + "This change is ".len();
    let fingerprint = &message[at..at + 71];
    assert!(
        message.contains("/spec/template/spec/containers/0/image"),
        "{message}"
    );

    let user = set_image["request"]["userInfo"]["username"]
        .as_str()
        .unwrap()
        .to_string();
    let grant = format!(
        "user: {user}\nresource: deployments\napiGroup: apps\nnamespace: prod\nname: web\nchange: \"{fingerprint}\"\nexpiresAt: \"{}\"\nreason: \"CHG-7: roll out web:2\"\napprovedBy: [bob@example.com]\n",
        in_mins(30)
    );
    h.write_approvals(&approvals_manifest(&[("set-image", &grant)]));
    let retry = captured("deployment-update-via-set-image-patch.json", "prod");
    eventually(PATIENCE, || {
        let retry = retry.clone();
        let h = &h;
        async move { h.conn(Proto::H1).await.decide(&retry).await["allowed"] == true }
    })
    .await;

    // One extra field in the same update: another change, denied.
    let mut extra = captured("deployment-update-via-set-image-patch.json", "prod");
    extra["request"]["object"]["metadata"]["labels"]["tier"] = "canary".into();
    let reply = c.decide(&extra).await;
    assert_eq!(reply["allowed"], false);
    assert!(
        reply["status"]["message"]
            .as_str()
            .unwrap()
            .contains("allows only the change"),
        "{reply}"
    );
    assert_eq!(
        h.record_of(extra["request"]["uid"].as_str().unwrap())["reason"],
        "change_not_approved"
    );
    // A server-owned field moving on does not change the fingerprint.
    let mut later = captured("deployment-update-via-set-image-patch.json", "prod");
    for side in ["object", "oldObject"] {
        later["request"][side]["metadata"]["resourceVersion"] = "999999".into();
        later["request"][side]["metadata"]["managedFields"] = serde_json::json!([]);
    }
    assert_eq!(c.decide(&later).await["allowed"], true);
    h.stop().await;
}

/// Waits until the server judges `req` with the approval expiring at `expires` loaded (a
/// dry run, which spends nothing, names the approval it found and its expiry); returns the
/// dry run's reason. `None`: until it finds no approval at all.
async fn loaded(h: &Harness, req: &Req, expires: Option<&str>) -> String {
    let want: Option<jiff::Timestamp> = expires.map(|t| t.parse().unwrap());
    let start = std::time::Instant::now();
    loop {
        let probe = req.clone().with(|_| {});
        h.conn(Proto::H1).await.decide(&dry_run(&probe)).await;
        let record = h.record_of(&probe.uid);
        let reason = record["reason"].as_str().unwrap().to_string();
        let seen: Option<jiff::Timestamp> = record["expiresAt"].as_str().map(|t| t.parse().unwrap());
        let done = match want {
            Some(_) => seen == want,
            None => reason == "no_approval",
        };
        if done {
            return reason;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "not loaded within {PATIENCE:?}: {record}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `expiresAt` written in an entry.
fn expiry_of(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("expiresAt: "))
        .unwrap()
        .trim_matches('"')
        .to_string()
}

/// Asserts that a fresh request of `req` is denied `uses_exhausted`, telling the person to
/// ask under a new key.
async fn denied_as_spent(h: &Harness, req: &Req) {
    let mut c = h.conn(Proto::H2).await;
    let again = req.clone().with(|_| {});
    let reply = c.decide(&again.review()).await;
    assert_eq!(reply["allowed"], false, "{reply}");
    let message = reply["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("has been used 1 time, all it allows") && message.contains("under a new key"),
        "{message}"
    );
    assert_eq!(h.record_of(&again.uid)["reason"], "uses_exhausted");
}

/// Sends a ConfigMap UPDATE of the approvals ConfigMap, from entry `old` to `new` under
/// key `key`, by `editor`, to the server's ledger; returns its answer.
async fn ledger_edit(h: &Harness, editor: &str, key: &str, old: Option<&str>, new: Option<&str>) -> Value {
    let cm = |text: Option<&str>| {
        let data: serde_json::Map<String, Value> =
            text.map(|t| (key.to_string(), t.into())).into_iter().collect();
        serde_json::json!({"kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": "jitgate-approvals", "namespace": "jitgate-system",
                "labels": {"jitgate.dev/approvals": "true"}},
            "data": data})
    };
    let review = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": unique_uid(), "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
        "resource": {"group": "", "version": "v1", "resource": "configmaps"},
        "name": "jitgate-approvals", "namespace": "jitgate-system", "operation": "UPDATE",
        "userInfo": {"username": editor, "groups": ["dev", "system:authenticated"]},
        "object": cm(new), "oldObject": cm(old), "dryRun": false}});
    h.conn(Proto::H1).await.decide(&review).await
}

#[tokio::test]
async fn in_file_mode_a_spent_use_stays_spent_when_its_entry_is_shortened_or_deleted_and_written_again() {
    let first = once(&[]);
    let h = Harness::start(&approvals_manifest(&[("once", &first)])).await;
    let alice = Req::secret_update();
    assert_eq!(
        h.conn(Proto::H1).await.decide(&alice.review()).await["allowed"],
        true
    );

    // Alice brings the expiry forward by a minute: an edit the ledger accepts ("shortened").
    let shorter = first.replace(&expiry_of(&first), &in_mins(29));
    let answer = ledger_edit(&h, "alice@example.com", "once", Some(&first), Some(&shorter)).await;
    assert_eq!(answer["allowed"], true, "{answer}");
    h.write_approvals(&approvals_manifest(&[("once", &shorter)]));
    assert_eq!(
        loaded(&h, &alice, Some(&expiry_of(&shorter))).await,
        "uses_exhausted"
    );
    denied_as_spent(&h, &alice).await;

    // Deleted, then written again as it was first approved: still spent.
    h.write_approvals(&approvals_manifest(&[]));
    loaded(&h, &alice, None).await;
    h.write_approvals(&approvals_manifest(&[("once", &first)]));
    assert_eq!(
        loaded(&h, &alice, Some(&expiry_of(&first))).await,
        "uses_exhausted"
    );
    denied_as_spent(&h, &alice).await;
    h.stop().await;
}

/// Merge-patches the approvals ConfigMap's `data` on the test API server as `token`'s user;
/// the webhook judges the write.
async fn patch_approvals(api: &ApiServer, token: &str, data: Value) {
    let mut c = api.conn_as(token).await;
    let reply = c
        .send(
            hyper::Method::PATCH,
            "/api/v1/namespaces/jitgate-system/configmaps/jitgate-approvals",
            Some("application/merge-patch+json"),
            serde_json::to_vec(&serde_json::json!({"data": data})).unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_mode_a_spent_use_stays_spent_when_its_entry_is_shortened_or_revoked_and_written_again() {
    let api = ApiServer::start().await;
    api.add_user("alice-token", "alice@example.com", &["dev"]);
    api.add_user("bob-token", "bob@example.com", &["jitgate-approvers"]);
    api.apply("jitgate-system", "jitgate-usage", &[], &[]);
    let first = once(&[]);
    api.apply_approvals("jitgate-approvals", &[("once", &first)]);
    let h = Harness::start_cluster(&api, Duration::from_secs(300), |_| {}).await;
    api.admit_with(h.addr(), &h.certs.ca_pem);
    eventually(PATIENCE, || async { h.readyz().await == hyper::StatusCode::OK }).await;
    let alice = Req::secret_update();
    assert_eq!(
        loaded(&h, &alice, Some(&expiry_of(&first))).await,
        "dry_run_not_counted"
    );
    assert_eq!(
        h.conn(Proto::H1).await.decide(&alice.review()).await["allowed"],
        true
    );

    // Alice shortens her entry by a minute, through the API server and the ledger.
    let shorter = first.replace(&expiry_of(&first), &in_mins(29));
    patch_approvals(&api, "alice-token", serde_json::json!({"once": shorter})).await;
    assert_eq!(
        loaded(&h, &alice, Some(&expiry_of(&shorter))).await,
        "uses_exhausted"
    );
    denied_as_spent(&h, &alice).await;

    // Bob revokes it, then writes the same grant again under the same key.
    patch_approvals(&api, "bob-token", serde_json::json!({"once": null})).await;
    loaded(&h, &alice, None).await;
    patch_approvals(&api, "bob-token", serde_json::json!({"once": first})).await;
    assert_eq!(
        loaded(&h, &alice, Some(&expiry_of(&first))).await,
        "uses_exhausted"
    );
    denied_as_spent(&h, &alice).await;

    // Renewed under the same key, for longer: still spent, and the count is now kept until
    // an hour past the renewal's expiry (else it would be collected while the renewal grants).
    patch_approvals(&api, "bob-token", serde_json::json!({"once": null})).await;
    loaded(&h, &alice, None).await;
    let renewed = first.replace(&expiry_of(&first), &in_mins(90));
    patch_approvals(&api, "bob-token", serde_json::json!({"once": renewed})).await;
    assert_eq!(
        loaded(&h, &alice, Some(&expiry_of(&renewed))).await,
        "uses_exhausted"
    );
    denied_as_spent(&h, &alice).await;
    let usage = api.object("jitgate-system", "jitgate-usage").unwrap();
    let record: Value =
        serde_json::from_str(usage["data"]["jitgate-approvals_once"].as_str().unwrap()).unwrap();
    let kept: jiff::Timestamp = record["expiresAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(kept, expiry_of(&renewed).parse::<jiff::Timestamp>().unwrap());
    assert_eq!(record["uids"].as_array().unwrap().len(), 1, "{record}");
    let actions: Vec<String> = h
        .records()
        .iter()
        .filter(|r| r["event"] == "approval")
        .map(|r| {
            format!(
                "{} {}",
                r["action"].as_str().unwrap(),
                r["editor"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            "shortened alice@example.com",
            "revoked bob@example.com",
            "approved bob@example.com",
            "revoked bob@example.com",
            "approved bob@example.com"
        ]
    );
    h.stop().await;
}
