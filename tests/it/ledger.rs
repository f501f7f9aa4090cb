//! The approval ledger over real TLS: edits of approvals ConfigMaps, shaped as the API
//! server sends them (based on a captured review), each rule allowed and refused; then the
//! whole request, approve and revoke flow through the test API server with the guard in the
//! loop.

use crate::support;

use crate::support::apiserver::ApiServer;
use crate::support::*;
use serde_json::{Value, json};
use std::time::Duration;

const CAPTURED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/admission/captured/configmap-update-user-alice-with-groups.json"
);

/// The shipped policies, with approvers for Secrets limited to group `sre`, and none
/// named for the others.
fn policies_dir() -> tempfile::TempDir {
    policies_with(|file, text| match file {
        "prod-secrets.yaml" => text.replace(
            "    approverGroups: [\"jitgate-approvers\"]",
            "    approverGroups: [\"sre\"]",
        ),
        // Anyone who may edit the ledger approves under the others.
        _ => text.replace("    approverGroups: [\"jitgate-approvers\"]\n", ""),
    })
}

async fn start(policies: &tempfile::TempDir) -> Harness {
    let dir = policies.path().to_path_buf();
    Harness::start_with(Some(&approvals_manifest(&[])), |cfg| cfg.policies_dir = dir).await
}

fn configmap(data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = data.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    json!({"kind": "ConfigMap", "apiVersion": "v1",
        "metadata": {"name": "jitgate-approvals", "namespace": "jitgate-system", "resourceVersion": "220",
            "labels": {"jitgate.dev/approvals": "true"}},
        "data": data})
}

/// A ConfigMap review as the API server sent one, with this editor, operation and objects.
fn edit(editor: &str, groups: &[&str], op: &str, old: Option<Value>, new: Option<Value>) -> Value {
    let mut review: Value = serde_json::from_slice(&std::fs::read(CAPTURED).unwrap()).unwrap();
    let r = &mut review["request"];
    r["uid"] = json!(unique_uid());
    r["name"] = json!("jitgate-approvals");
    r["namespace"] = json!("jitgate-system");
    r["operation"] = json!(op);
    r["userInfo"] = json!({"username": editor, "uid": "u", "groups": groups});
    r["object"] = new.unwrap_or(Value::Null);
    r["oldObject"] = old.unwrap_or(Value::Null);
    review
}

/// Alice's request for prod/db-password, approved by `approvers`.
fn request(approvers: &[&str]) -> String {
    let list = approvers
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    entry(&[("[bob@example.com]", &format!("[{list}]"))])
}

/// Sends the edit; returns None when allowed, or the denial message.
async fn judge(h: &Harness, review: &Value) -> Option<String> {
    let mut c = h.conn(Proto::H1).await;
    let response = c.decide(review).await;
    if response["allowed"] == true {
        return None;
    }
    assert_eq!(response["status"]["code"], 403);
    Some(response["status"]["message"].as_str().unwrap().to_string())
}

async fn refused(h: &Harness, review: &Value, key: &str, rule: &str) {
    let message = judge(h, review)
        .await
        .unwrap_or_else(|| panic!("expected rule {rule} to refuse"));
    assert!(
        message.contains(&format!("jitgate-approvals/{key} refused (rule {rule})")),
        "{message}"
    );
    let record = h.record_of(review["request"]["uid"].as_str().unwrap());
    assert_eq!(
        (record["decision"].as_str(), record["reason"].as_str()),
        (Some("deny"), Some("ledger_refused"))
    );
    assert_eq!(record["approval"], format!("jitgate-approvals/{key}"));
}

async fn accepted(h: &Harness, review: &Value) -> Vec<Value> {
    if let Some(message) = judge(h, review).await {
        panic!("refused: {message}");
    }
    let uid = review["request"]["uid"].as_str().unwrap();
    assert_eq!(h.record_of(uid)["reason"], "ledger_accepted");
    h.records()
        .into_iter()
        .filter(|r| r["event"] == "approval" && r["uid"] == uid)
        .collect()
}

const ALICE: (&str, &[&str]) = ("alice@example.com", &["dev"]);
const BOB: (&str, &[&str]) = ("bob@example.com", &["sre"]);
const MALLORY: (&str, &[&str]) = ("mallory@example.com", &["dev", "system:masters"]);

#[tokio::test]
async fn a_request_then_an_approval_are_accepted_and_recorded() {
    let p = policies_dir();
    let h = start(&p).await;
    let pending = configmap(&[("k", &request(&[]))]);
    let records = accepted(
        &h,
        &edit(
            ALICE.0,
            ALICE.1,
            "UPDATE",
            Some(configmap(&[])),
            Some(pending.clone()),
        ),
    )
    .await;
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (r["action"].as_str(), r["key"].as_str()),
        (Some("requested"), Some("jitgate-approvals/k"))
    );
    assert_eq!(
        (r["editor"].as_str(), r["requester"].as_str()),
        (Some(ALICE.0), Some("user:alice@example.com"))
    );
    assert_eq!(r["scope"]["resource"], "secrets");
    assert_eq!(r["scope"]["namespace"], "prod");
    assert_eq!(
        (r["approvers"].as_u64(), r["required"].as_u64()),
        (Some(0), Some(1))
    );

    let signed = configmap(&[("k", &request(&[BOB.0]))]);
    let records = accepted(&h, &edit(BOB.0, BOB.1, "UPDATE", Some(pending), Some(signed))).await;
    assert_eq!(records[0]["action"], "approved");
    assert_eq!(records[0]["editor"], BOB.0);
    assert_eq!(records[0]["approvers"], 1);
    h.stop().await;
}

#[tokio::test]
async fn forged_doubled_and_self_approvals_are_refused() {
    let p = policies_dir();
    let h = start(&p).await;
    let pending = configmap(&[("k", &request(&[]))]);
    // Mallory writes Bob's name.
    let forged = edit(
        MALLORY.0,
        &["sre"],
        "UPDATE",
        Some(pending.clone()),
        Some(configmap(&[("k", &request(&[BOB.0]))])),
    );
    refused(&h, &forged, "k", "forged_approver").await;
    // Bob adds himself and Carol at once.
    let doubled = configmap(&[("k", &request(&[BOB.0, "carol@example.com"]))]);
    refused(
        &h,
        &edit(BOB.0, BOB.1, "UPDATE", Some(pending.clone()), Some(doubled)),
        "k",
        "several_approvers",
    )
    .await;
    // Alice approves her own request, even as a member of sre.
    let own = configmap(&[("k", &request(&[ALICE.0]))]);
    refused(
        &h,
        &edit(ALICE.0, &["sre"], "UPDATE", Some(pending), Some(own)),
        "k",
        "self_approval",
    )
    .await;
    // A request for group sre cannot be approved by a member of sre.
    let for_group = entry(&[
        ("user: alice@example.com", "group: sre"),
        ("[bob@example.com]", "[]"),
    ]);
    let group_signed = for_group.replace("approvedBy: []", "approvedBy: [\"bob@example.com\"]");
    let review = edit(
        BOB.0,
        BOB.1,
        "UPDATE",
        Some(configmap(&[("g", &for_group)])),
        Some(configmap(&[("g", &group_signed)])),
    );
    refused(&h, &review, "g", "self_approval").await;
    h.stop().await;
}

#[tokio::test]
async fn approvers_outside_approver_groups_are_refused_even_cluster_admins() {
    let p = policies_dir();
    let h = start(&p).await;
    let pending = configmap(&[("k", &request(&[]))]);
    let signed = configmap(&[("k", &request(&[MALLORY.0]))]);
    let review = edit(MALLORY.0, MALLORY.1, "UPDATE", Some(pending), Some(signed));
    refused(&h, &review, "k", "approver_not_allowed").await;
    let message = judge(&h, &review).await.unwrap();
    assert!(
        message.contains("policy prod-secrets allows groups sre"),
        "{message}"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_signed_entry_cannot_be_widened_or_lengthened() {
    let p = policies_dir();
    let h = start(&p).await;
    let signed = request(&[BOB.0]);
    let old = configmap(&[("k", &signed)]);
    for (what, new) in [
        ("scope", signed.replace("name: db-password\n", "")),
        (
            "user",
            signed.replace("user: alice@example.com", "user: mallory@example.com"),
        ),
        ("reason", signed.replace("INC-1: rotate", "INC-2: other")),
        ("operations", signed.replace("[UPDATE]", "[UPDATE, DELETE]")),
        ("expiry", expiring(60, &[])),
    ] {
        let review = edit(
            ALICE.0,
            ALICE.1,
            "UPDATE",
            Some(old.clone()),
            Some(configmap(&[("k", &new)])),
        );
        let message = judge(&h, &review)
            .await
            .unwrap_or_else(|| panic!("{what} change accepted"));
        assert!(
            message.contains("rule signed_entry_changed") || message.contains("rule expiry"),
            "{what}: {message}"
        );
    }
    // Shortening is allowed and recorded.
    let shorter = configmap(&[("k", &expiring(10, &[]))]);
    let records = accepted(&h, &edit(ALICE.0, ALICE.1, "UPDATE", Some(old), Some(shorter))).await;
    assert_eq!(records[0]["action"], "shortened");
    h.stop().await;
}

#[tokio::test]
async fn expiry_limits_and_entry_validity_are_enforced_on_write() {
    let p = policies_dir();
    let h = start(&p).await;
    let cases = [
        (expiring(5 * 60, &[("[bob@example.com]", "[]")]), "expiry_too_far"),
        (expiring(-10, &[("[bob@example.com]", "[]")]), "expiry_in_past"),
        (
            "user: alice@example.com\nresource: secrets\ncolour: blue\n".to_string(),
            "malformed",
        ),
        (
            request(&[]).replace("namespace: prod", "namespace: staging"),
            "not_gated",
        ),
        (
            request(&[]).replace("namespace: prod", "namespace: \"prod-*\""),
            "malformed",
        ),
    ];
    for (text, rule) in cases {
        let review = edit(ALICE.0, ALICE.1, "CREATE", None, Some(configmap(&[("k", &text)])));
        refused(&h, &review, "k", rule).await;
    }
    // Within the limits: accepted.
    let ok = configmap(&[("k", &expiring(4 * 60 - 1, &[("[bob@example.com]", "[]")]))]);
    accepted(&h, &edit(ALICE.0, ALICE.1, "CREATE", None, Some(ok))).await;
    h.stop().await;
}

#[tokio::test]
async fn revocation_is_for_the_requester_approvers_and_eligible_approvers_only() {
    let p = policies_dir();
    let h = start(&p).await;
    let dave = request(&[]).replace("alice@", "dave@");
    let old = configmap(&[("k", &request(&[BOB.0])), ("other", &dave)]);
    let without_k = configmap(&[("other", &dave)]);
    refused(
        &h,
        &edit(
            MALLORY.0,
            MALLORY.1,
            "UPDATE",
            Some(old.clone()),
            Some(without_k.clone()),
        ),
        "k",
        "revocation_not_allowed",
    )
    .await;
    // Deleting the whole ConfigMap revokes every entry: refused for Mallory too.
    refused(
        &h,
        &edit(MALLORY.0, MALLORY.1, "DELETE", Some(old.clone()), None),
        "k",
        "revocation_not_allowed",
    )
    .await;
    for (who, groups) in [ALICE, BOB, ("carol@example.com", &["sre"][..])] {
        let records = accepted(
            &h,
            &edit(who, groups, "UPDATE", Some(old.clone()), Some(without_k.clone())),
        )
        .await;
        assert_eq!(records[0]["action"], "revoked", "{who}");
        assert_eq!(records[0]["editor"], who);
    }
    // An expired entry is housekeeping: anyone may remove it.
    let expired = configmap(&[("k", &expiring(-5, &[]))]);
    let records = accepted(
        &h,
        &edit(
            MALLORY.0,
            MALLORY.1,
            "UPDATE",
            Some(expired),
            Some(configmap(&[])),
        ),
    )
    .await;
    assert_eq!(records[0]["action"], "expired-on-edit");
    h.stop().await;
}

#[tokio::test]
async fn removing_the_label_is_a_revocation_and_adding_it_a_creation() {
    let p = policies_dir();
    let h = start(&p).await;
    let signed = configmap(&[("k", &request(&[BOB.0]))]);
    let mut unlabelled = signed.clone();
    unlabelled["metadata"]["labels"] = json!({});
    refused(
        &h,
        &edit(
            MALLORY.0,
            MALLORY.1,
            "UPDATE",
            Some(signed.clone()),
            Some(unlabelled.clone()),
        ),
        "k",
        "revocation_not_allowed",
    )
    .await;
    // Labelling a ConfigMap whose entry names Bob as approver, as Mallory: a forgery.
    refused(
        &h,
        &edit(MALLORY.0, MALLORY.1, "UPDATE", Some(unlabelled), Some(signed)),
        "k",
        "forged_approver",
    )
    .await;
    h.stop().await;
}

#[tokio::test]
async fn an_approvals_configmap_edit_is_judged_by_the_ledger_not_the_policies() {
    let p = policies_dir();
    let h = start(&p).await;
    // An unrelated, unlabelled ConfigMap is not the ledger's business: ungated, allowed.
    let mut plain = configmap(&[("k", "anything")]);
    plain["metadata"]["labels"] = json!({});
    let review = edit(MALLORY.0, MALLORY.1, "UPDATE", Some(plain.clone()), Some(plain));
    assert!(judge(&h, &review).await.is_none());
    assert_eq!(
        h.record_of(review["request"]["uid"].as_str().unwrap())["reason"],
        "not_gated"
    );
    // An edit that changes nothing in the entries is accepted with no approval record.
    let same = configmap(&[("k", &request(&[BOB.0]))]);
    let records = accepted(
        &h,
        &edit(MALLORY.0, MALLORY.1, "UPDATE", Some(same.clone()), Some(same)),
    )
    .await;
    assert!(records.is_empty());
    h.stop().await;
}

/// True when a fresh copy of `req` is answered with `allowed == allow`.
async fn answers(h: &Harness, req: &Req, allow: bool) -> bool {
    let mut c = h.conn(Proto::H1).await;
    c.decide(&req.clone().with(|_| {}).review()).await["allowed"] == allow
}

/// Merge-patches the approvals ConfigMap on the test API server as the user of `token`.
async fn patch_as(api: &ApiServer, token: &str, data: Value) -> support::Reply {
    let mut c = api.conn_as(token).await;
    c.send(
        hyper::Method::PATCH,
        "/api/v1/namespaces/jitgate-system/configmaps/jitgate-approvals",
        Some("application/merge-patch+json"),
        serde_json::to_vec(&json!({"data": data})).unwrap(),
    )
    .await
}

#[tokio::test]
async fn request_approve_and_use_end_to_end_and_a_forgery_is_stopped_at_the_edit() {
    let p = policies_dir();
    let api = ApiServer::start().await;
    api.add_user("alice-token", ALICE.0, ALICE.1);
    api.add_user("bob-token", BOB.0, BOB.1);
    api.add_user("mallory-token", MALLORY.0, MALLORY.1);
    api.apply_approvals("jitgate-approvals", &[]);
    let dir = p.path().to_path_buf();
    let h = Harness::start_cluster(&api, Duration::from_secs(300), |cfg| cfg.policies_dir = dir).await;
    api.admit_with(h.addr(), &h.certs.ca_pem);
    let patience = Duration::from_secs(15);
    eventually(patience, || async { h.readyz().await == hyper::StatusCode::OK }).await;

    // Alice files the request from her denial message.
    let reply = patch_as(&api, "alice-token", json!({"alice-db": request(&[])})).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let alice = Req::secret_update();
    let mut c = h.conn(Proto::H1).await;
    eventually(patience, || {
        let h = &h;
        async move { h.records().iter().any(|r| r["reason"] == "ledger_accepted") }
    })
    .await;
    assert_eq!(c.decide(&alice.review()).await["allowed"], false);

    // Bob approves: his name, by his own hand. Then Alice's update is allowed.
    let reply = patch_as(&api, "bob-token", json!({"alice-db": request(&[BOB.0])})).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let granted = eventually(patience, || answers(&h, &alice, true)).await;
    eprintln!("approved -> allowed after {granted:?}");

    // Mallory files a request and forges Bob's approval: refused at the edit, with the
    // guard's words, and her update stays denied.
    let forged = request(&[BOB.0]).replace("alice@example.com", "mallory@example.com");
    let reply = patch_as(&api, "mallory-token", json!({"mallory-db": forged})).await;
    assert_eq!(reply.status, 403);
    let status = reply.json();
    let message = status["message"].as_str().unwrap();
    assert!(
        message
            .starts_with("admission webhook \"approvals.jitgate.dev\" denied the request: jitgate ledger:"),
        "{message}"
    );
    assert!(
        message.contains("jitgate-approvals/mallory-db refused (rule forged_approver)"),
        "{message}"
    );
    assert!(
        api.object("jitgate-system", "jitgate-approvals").unwrap()["data"]
            .get("mallory-db")
            .is_none()
    );
    let mallory = Req::secret_update().with(|r| r.user = MALLORY.0.into());
    assert_eq!(c.decide(&mallory.review()).await["allowed"], false);

    // Bob revokes: Alice's grant ends.
    let reply = patch_as(&api, "bob-token", json!({"alice-db": null})).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    eventually(patience, || answers(&h, &alice, false)).await;
    let actions: Vec<String> = h
        .records()
        .iter()
        .filter(|r| r["event"] == "approval")
        .map(|r| {
            format!(
                "{} {} {}",
                r["action"].as_str().unwrap(),
                r["editor"].as_str().unwrap(),
                r["key"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            "requested alice@example.com jitgate-approvals/alice-db",
            "approved bob@example.com jitgate-approvals/alice-db",
            "revoked bob@example.com jitgate-approvals/alice-db",
        ]
    );
    h.stop().await;
}

/// Runs `jitgate check` on `review` with the server's policies and approvals file.
fn check_offline(h: &Harness, policies: &std::path::Path, review: &Value) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("review.json");
    std::fs::write(&file, serde_json::to_vec(review).unwrap()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .arg("check")
        .arg("--request")
        .arg(&file)
        .arg("--policies")
        .arg(policies)
        .arg("--approvals-file")
        .arg(h.approvals_path())
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn check_judges_an_approvals_configmap_edit_exactly_as_the_server_does() {
    let p = policies_dir();
    let h = start(&p).await;
    let pending = configmap(&[("k", &request(&[]))]);
    let approved = configmap(&[("k", &request(&[BOB.0]))]);
    let edits = [
        // Alice files a request: accepted.
        edit(
            ALICE.0,
            ALICE.1,
            "UPDATE",
            Some(configmap(&[])),
            Some(pending.clone()),
        ),
        // Mallory writes Bob's name: a forged approver, refused.
        edit(
            MALLORY.0,
            MALLORY.1,
            "UPDATE",
            Some(pending.clone()),
            Some(approved.clone()),
        ),
        // Bob approves: accepted.
        edit(BOB.0, BOB.1, "UPDATE", Some(pending.clone()), Some(approved)),
        // Alice approves her own request: refused.
        edit(
            ALICE.0,
            ALICE.1,
            "UPDATE",
            Some(pending.clone()),
            Some(configmap(&[("k", &request(&[ALICE.0]))])),
        ),
    ];
    let mut allowed = Vec::new();
    for review in &edits {
        let mut online = h.conn(Proto::H1).await.review(review).await.json();
        let offline = check_offline(&h, p.path(), review);
        // Only the server writes a record, so only its answer points to one.
        let annotations = online["response"]
            .as_object_mut()
            .unwrap()
            .remove("auditAnnotations");
        assert!(annotations.is_some_and(|a| a["record"].is_string()));
        assert_eq!(
            online["response"], offline["response"],
            "server and check disagree"
        );
        allowed.push(online["response"]["allowed"] == true);
    }
    assert_eq!(allowed, [true, false, true, false]);
    // The ledger's records (a decision record, then one approval record per entry it
    // changes) are each sealed on their own: the log verifies.
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .args(["audit", "verify"])
        .arg(h.audit_path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stdout).to_string() + &String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "{said}");
    assert!(
        said.contains("records: 6 (seq 1 "),
        "4 decisions and 2 approval records: {said}"
    );
    h.stop().await;
}

/// Alice's `for:` request for prod/db-password, approved by `approvers`, stamped at `at`.
fn for_request(approvers: &[&str], at: Option<&str>) -> String {
    let list = approvers
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let stamp = at.map_or(String::new(), |t| format!("approvedAt: \"{t}\"\n"));
    format!(
        "user: alice@example.com\nresource: secrets\nnamespace: prod\nname: db-password\noperations: [UPDATE]\nfor: 1h\n{stamp}reason: \"INC-1: rotate\"\napprovedBy: [{list}]\n"
    )
}

#[tokio::test]
async fn a_for_entry_needing_two_approvers_is_approved_online_one_after_the_other() {
    let p = policies_with(|file, text| match file {
        "prod-secrets.yaml" => text
            .replace(
                "    approverGroups: [\"jitgate-approvers\"]",
                "    approverGroups: [\"sre\"]",
            )
            .replace("minApprovers: 1", "minApprovers: 2"),
        _ => text.replace("    approverGroups: [\"jitgate-approvers\"]\n", ""),
    });
    let api = ApiServer::start().await;
    api.add_user("alice-token", ALICE.0, ALICE.1);
    api.add_user("bob-token", BOB.0, BOB.1);
    api.add_user("carol-token", "carol@example.com", &["sre"]);
    api.apply_approvals("jitgate-approvals", &[]);
    let dir = p.path().to_path_buf();
    let h = Harness::start_cluster(&api, Duration::from_secs(300), |cfg| cfg.policies_dir = dir).await;
    api.admit_with(h.addr(), &h.certs.ca_pem);
    let patience = Duration::from_secs(15);
    eventually(patience, || async { h.readyz().await == hyper::StatusCode::OK }).await;

    let ok =
        |reply: support::Reply| assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    ok(patch_as(&api, "alice-token", json!({"k": for_request(&[], None)})).await);
    // The first of two approvers: no stamp, the clock has not started.
    ok(patch_as(&api, "bob-token", json!({"k": for_request(&[BOB.0], None)})).await);
    let alice = Req::secret_update();
    let mut c = h.conn(Proto::H1).await;
    eventually(patience, || {
        let h = &h;
        async move { h.records().iter().filter(|r| r["event"] == "approval").count() == 2 }
    })
    .await;
    let pending = c.decide(&alice.review()).await;
    assert_eq!(pending["allowed"], false, "one of two approvers grants nothing");
    let message = pending["status"]["message"].as_str().unwrap();
    assert!(
        message.contains(
            "has 1 of the 2 approvers it needs; its for: clock starts when its last approver signs"
        ),
        "{message}"
    );
    // The second approver completes it and starts its clock.
    let stamp = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap()
        .to_string();
    ok(patch_as(
        &api,
        "carol-token",
        json!({"k": for_request(&[BOB.0, "carol@example.com"], Some(&stamp))}),
    )
    .await);
    eventually(patience, || answers(&h, &alice, true)).await;
    let granted = alice.clone().with(|_| {});
    assert_eq!(c.decide(&granted.review()).await["allowed"], true);
    let record = h.record_of(&granted.uid);
    assert_eq!(record["reason"], "approved");
    let until: jiff::Timestamp = record["expiresAt"].as_str().unwrap().parse().unwrap();
    let stamp: jiff::Timestamp = stamp.parse().unwrap();
    assert_eq!(
        until,
        stamp + jiff::SignedDuration::from_hours(1),
        "for: 1h from the second approval"
    );
    let actions: Vec<String> = h
        .records()
        .iter()
        .filter(|r| r["event"] == "approval")
        .map(|r| {
            format!(
                "{} {} {}",
                r["action"].as_str().unwrap(),
                r["editor"].as_str().unwrap(),
                r["approvers"]
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            "requested alice@example.com 0",
            "approved bob@example.com 1",
            "approved carol@example.com 2"
        ]
    );
    h.stop().await;
}

#[tokio::test]
async fn someone_elses_pending_request_cannot_be_taken_over_or_rewritten() {
    let p = policies_dir();
    let h = start(&p).await;
    let pending = configmap(&[("k", &request(&[]))]);
    // Mallory rewrites Alice's pending request to name herself.
    let hers = request(&[]).replace("alice@example.com", MALLORY.0);
    let takeover = edit(
        MALLORY.0,
        MALLORY.1,
        "UPDATE",
        Some(pending.clone()),
        Some(configmap(&[("k", &hers)])),
    );
    refused(&h, &takeover, "k", "not_requester").await;
    let message = judge(&h, &takeover).await.unwrap();
    assert!(
        message.contains(
            "\"mallory@example.com\" may not amend this pending request: it is user:alice@example.com's"
        ),
        "{message}"
    );
    // Nor may she widen it, for Alice to be blamed for.
    let wider = request(&[]).replace("name: db-password\n", "");
    refused(
        &h,
        &edit(
            MALLORY.0,
            MALLORY.1,
            "UPDATE",
            Some(pending.clone()),
            Some(configmap(&[("k", &wider)])),
        ),
        "k",
        "not_requester",
    )
    .await;
    // Alice cannot hand her request to someone else either: a new request, a new key.
    let carols = request(&[]).replace("alice@example.com", "carol@example.com");
    let handed = edit(
        ALICE.0,
        ALICE.1,
        "UPDATE",
        Some(pending.clone()),
        Some(configmap(&[("k", &carols)])),
    );
    refused(&h, &handed, "k", "subject_changed").await;
    assert!(
        judge(&h, &handed)
            .await
            .unwrap()
            .contains("delete it and request anew")
    );
    // Alice may still amend her own request's terms.
    let records = accepted(
        &h,
        &edit(
            ALICE.0,
            ALICE.1,
            "UPDATE",
            Some(pending),
            Some(configmap(&[("k", &wider)])),
        ),
    )
    .await;
    assert_eq!(records[0]["action"], "requested");
    h.stop().await;
}

#[tokio::test]
async fn nobody_approves_an_entry_no_policy_gates_so_their_name_never_counts_under_a_later_policy() {
    let p = policies_dir();
    let h = start(&p).await;
    // An entry for a namespace no policy gates (written before, or by hand): grants nothing.
    let staging = request(&[BOB.0]).replace("namespace: prod", "namespace: staging");
    let signed = staging.replace(
        "approvedBy: [\"bob@example.com\"]",
        &format!("approvedBy: [\"bob@example.com\", {:?}]", MALLORY.0),
    );
    assert_ne!(signed, staging);
    let review = edit(
        MALLORY.0,
        MALLORY.1,
        "UPDATE",
        Some(configmap(&[("k", &staging)])),
        Some(configmap(&[("k", &signed)])),
    );
    refused(&h, &review, "k", "not_gated").await;
    let message = judge(&h, &review).await.unwrap();
    assert!(
        message.contains("nobody can be checked as its approver"),
        "{message}"
    );
    h.stop().await;
}

#[tokio::test]
async fn only_the_edit_that_adds_the_last_approver_starts_a_for_entrys_clock() {
    let p = policies_dir();
    let h = start(&p).await;
    // Approved by bob but never stamped (written by hand): pending, its clock not started.
    let unstamped = for_request(&[BOB.0], None);
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap()
        .to_string();
    let stamped = for_request(&[BOB.0], Some(&now));
    let review = edit(
        ALICE.0,
        ALICE.1,
        "UPDATE",
        Some(configmap(&[("k", &unstamped)])),
        Some(configmap(&[("k", &stamped)])),
    );
    refused(&h, &review, "k", "approved_at_not_stamped").await;
    h.stop().await;
}
