//! Gated reads: jitgate as the API server's authorization webhook. SubjectAccessReviews
//! are posted over real TLS exactly as kube-apiserver sent them (the captured bodies of
//! `tests/fixtures/authorization/`), over HTTP/1.1 and HTTP/2; then reads go through
//! the test API server, which asks jitgate before RBAC as a real one does, with an
//! approval requested and granted by the `jitgate` CLI.

use crate::support::apiserver::ApiServer;
use crate::support::*;
use hyper::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(15);
const CANARY: &str = "c2VjcmV0LWNhbmFyeS03MzQ2"; // base64 of a secret canary

/// The captured SubjectAccessReview bodies, raw as the API server sent them, by file.
fn captured() -> Vec<(String, Vec<u8>)> {
    let path = std::path::Path::new(REPO).join("tests/fixtures/authorization/webhook-exchanges.jsonl");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let exchange: Value = serde_json::from_str(line).unwrap();
            let file = exchange["file"]
                .as_str()
                .unwrap()
                .trim_start_matches("captured/")
                .to_string();
            let body = exchange["request_body_raw"].as_str().unwrap().as_bytes().to_vec();
            (file, body)
        })
        .collect()
}

fn body_of(file: &str) -> Vec<u8> {
    captured()
        .into_iter()
        .find(|(f, _)| f == file)
        .unwrap_or_else(|| panic!("{file} not captured"))
        .1
}

/// bob's `get` of Secret prod/db-pass, edited: `(from, to)` replace text in the raw body.
fn get_with(edits: &[(&str, &str)]) -> Vec<u8> {
    let mut text = String::from_utf8(body_of("secret-get-bob.json")).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "{from} not in the body");
        text = text.replace(from, to);
    }
    text.into_bytes()
}

/// An approval for bob to `get` Secret prod/db-pass, approved by carol, for 30 minutes;
/// `edits` replace lines.
fn read_approval(edits: &[(&str, &str)]) -> String {
    read_approval_expiring(30, edits)
}

/// The same, expiring in `mins` minutes (negative: expired): the shared test entry made
/// bob's read.
fn read_approval_expiring(mins: i64, edits: &[(&str, &str)]) -> String {
    let mut all = vec![
        ("[bob@example.com]", "[carol]"),
        ("alice@example.com", "bob"),
        ("db-password", "db-pass"),
        ("operations: [UPDATE]", "verbs: [get]"),
    ];
    all.extend_from_slice(edits);
    expiring(mins, &all)
}

/// The `status` of a SubjectAccessReview answer, checking the envelope.
fn status_of(reply: &Reply) -> Value {
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let review = reply.json();
    assert_eq!(review["apiVersion"], "authorization.k8s.io/v1");
    assert_eq!(review["kind"], "SubjectAccessReview");
    assert_eq!(
        review["status"]["allowed"], false,
        "jitgate never grants: {review}"
    );
    review["status"].clone()
}

fn denied(reply: &Reply) -> bool {
    status_of(reply)["denied"] == true
}

/// Asserts that the record says what a SubjectAccessReview answer said: denied ⇔ `deny`
/// with code 403 (what the API server answers), no opinion ⇔ allowed with code 200.
fn assert_read_record_is_the_answer(record: &Value, reply: &Reply) {
    assert_eq!(record["event"], "authorization", "{record}");
    let denied = denied(reply);
    assert_eq!(record["allowed"], !denied, "{record}");
    assert_eq!(record["decision"] == "deny", denied, "{record}");
    assert_eq!(record["code"], if denied { 403 } else { 200 }, "{record}");
    assert!(
        record["uid"].as_str().is_some_and(|u| u.starts_with("read-")),
        "{record}"
    );
}

#[tokio::test]
async fn every_captured_review_is_answered_over_both_protocols_and_recorded_once() {
    let h = Harness::start(&approvals_manifest(&[])).await;
    let gated = [
        "secret-get-bob.json",
        "secret-get-carol.json",
        "secret-list-bob.json",
        "secret-list-carol.json",
        "secret-list-labelselector-bob.json",
        "secret-list-fieldselector-bob.json",
        "secret-watch-bob.json",
        "secret-watch-carol.json",
        "pods-log-get-bob.json",
        "pods-log-get-carol.json",
        "selfsar-secret-get-bob.json",
        "selfsar-pods-log-get-bob.json",
    ];
    let mut sent = 0;
    for proto in BOTH {
        let mut c = h.conn(proto).await;
        for (file, body) in captured() {
            let reply = c.authorize(&body).await;
            sent += 1;
            let status = status_of(&reply);
            let records = h.records();
            let record = records.last().unwrap();
            assert_read_record_is_the_answer(record, &reply);
            if gated.contains(&file.as_str()) {
                assert_eq!(status["denied"], true, "{proto:?} {file}: {status}");
                let reason = status["reason"].as_str().unwrap();
                assert!(
                    reason.contains("is gated by policy prod-reads"),
                    "{file}: {reason}"
                );
                assert!(
                    reason.contains("kubectl jitgate request --resource "),
                    "{file}: {reason}"
                );
                assert!(
                    reason.lines().count() <= 3,
                    "short enough for a terminal: {reason}"
                );
                assert_eq!(record["policy"], "prod-reads", "{record}");
                assert_eq!(record["reason"], "no_approval", "{record}");
            } else {
                // Writes and exec are admission's; default is not a gated namespace.
                assert_eq!(status, serde_json::json!({"allowed": false}), "{proto:?} {file}");
                assert_eq!(record["reason"], "not_gated", "{record}");
            }
        }
    }
    assert_eq!(h.records().len(), sent, "one record per answer");
    // Counted like admission decisions, under their own review label.
    let metrics = scrape_metrics(&h).await;
    let denied_reads = "jitgate_decisions_total{review=\"authorization\",decision=\"deny\",reason=\"no_approval\",policy=\"prod-reads\"}";
    assert!(
        metrics
            .lines()
            .any(|l| l == format!("{denied_reads} {}", 2 * gated.len())),
        "{metrics}"
    );
    // The words kubectl shows after "is forbidden: User ... cannot get ...:".
    let mut c = h.conn(Proto::H1).await;
    let reason = status_of(&c.authorize(&body_of("secret-get-bob.json")).await)["reason"].clone();
    assert_eq!(
        reason.as_str().unwrap().lines().next().unwrap(),
        "jitgate: get of secrets \"db-pass\" in namespace \"prod\" by \"bob\" is gated by policy prod-reads \
         and needs an approval: no approval matches user \"bob\" for get \"db-pass\"."
    );
    assert!(reason.as_str().unwrap().ends_with(
        "To request it: kubectl jitgate request --resource secrets -n prod --name db-pass --verb get --for 1h --reason \"...\""
    ));
    let record = h.records().pop().unwrap();
    for (key, want) in [
        ("user", "bob"),
        ("operation", "get"),
        ("resource", "secrets"),
        ("namespace", "prod"),
        ("name", "db-pass"),
    ] {
        assert_eq!(record[key], want, "{record}");
    }
    assert_eq!(
        record["groups"],
        serde_json::json!(["dev-team", "system:authenticated"])
    );
    h.stop().await;
}

async fn scrape_metrics(h: &Harness) -> String {
    let mut c = h.conn(Proto::H1).await;
    String::from_utf8(c.send(Method::GET, "/metrics", None, Vec::new()).await.body).unwrap()
}

#[tokio::test]
async fn an_approval_opens_exactly_the_read_it_names() {
    let entries = [
        ("bob-read", read_approval(&[])),
        (
            "bob-expired",
            read_approval_expiring(-5, &[("name: db-pass", "name: old")]),
        ),
        (
            "bob-self",
            read_approval(&[("name: db-pass", "name: own"), ("[carol]", "[bob]")]),
        ),
        (
            "bob-log",
            read_approval(&[
                ("resource: secrets", "resource: pods/log"),
                ("name: db-pass", "name: shell"),
            ]),
        ),
    ];
    let manifest: Vec<(&str, &str)> = entries.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let h = Harness::start(&approvals_manifest(&manifest)).await;
    for proto in BOTH {
        let mut c = h.conn(proto).await;
        let reply = c.authorize(&get_with(&[])).await;
        assert!(
            !denied(&reply),
            "{proto:?}: the approved get has no opinion from jitgate"
        );
        let record = h.records().pop().unwrap();
        assert_read_record_is_the_answer(&record, &reply);
        assert_eq!(record["reason"], "approved");
        assert_eq!(record["approval"], "jitgate-approvals/bob-read");
        assert_eq!(record["approvedBy"], serde_json::json!(["carol"]));
        let log = c.authorize(&body_of("pods-log-get-bob.json")).await;
        assert!(!denied(&log), "bob's log approval covers pods/log of shell");

        for (what, body, reason) in [
            (
                "another name",
                get_with(&[("\"db-pass\"", "\"spare\"")]),
                "no_approval",
            ),
            (
                "another namespace",
                get_with(&[("\"prod\"", "\"prod-eu\"")]),
                "no_approval",
            ),
            (
                "another verb",
                get_with(&[("\"verb\":\"get\"", "\"verb\":\"watch\"")]),
                "no_approval",
            ),
            (
                "a list, with a named approval",
                body_of("secret-list-bob.json"),
                "no_approval",
            ),
            (
                "a list in every namespace",
                String::from_utf8(body_of("secret-list-bob.json"))
                    .unwrap()
                    .replace("\"namespace\":\"prod\",", "")
                    .into_bytes(),
                "no_approval",
            ),
            ("another user", body_of("secret-get-carol.json"), "no_approval"),
            (
                "an expired approval",
                get_with(&[("\"db-pass\"", "\"old\"")]),
                "approval_expired",
            ),
            (
                "a self-approval",
                get_with(&[("\"db-pass\"", "\"own\"")]),
                "too_few_approvers",
            ),
        ] {
            let reply = c.authorize(&body).await;
            assert!(
                denied(&reply),
                "{proto:?} {what}: {}",
                String::from_utf8_lossy(&reply.body)
            );
            let record = h.records().pop().unwrap();
            assert_read_record_is_the_answer(&record, &reply);
            assert_eq!(record["reason"], reason, "{what}: {record}");
        }
    }
    h.stop().await;
}

#[tokio::test]
async fn a_malformed_review_gets_a_400_with_a_reason_and_never_a_decision() {
    let h = Harness::start(&approvals_manifest(&[])).await;
    for proto in BOTH {
        let mut c = h.conn(proto).await;
        for (body, needle) in [
            (b"{\"kind\": \"SubjectAccessRev".to_vec(), "not valid JSON"),
            (
                get_with(&[("authorization.k8s.io/v1", "authorization.k8s.io/v1beta1")]),
                "apiVersion must be",
            ),
            (
                get_with(&[("\"resourceAttributes\"", "\"attributes\"")]),
                "neither resourceAttributes",
            ),
            (
                get_with(&[("\"name\":\"db-pass\"", "\"name\":7")]),
                "not a SubjectAccessReview",
            ),
        ] {
            let reply = c.authorize(&body).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{needle}");
            let status = reply.json();
            assert_eq!(status["kind"], "Status");
            assert!(status["message"].as_str().unwrap().contains(needle), "{status}");
            let record = h.records().pop().unwrap();
            assert_eq!(
                (
                    record["event"].as_str(),
                    record["code"].as_u64(),
                    record["reason"].as_str()
                ),
                (Some("authorization"), Some(400), Some("bad_request")),
                "{record}"
            );
        }
        let reply = c.send(Method::GET, "/authorize", None, Vec::new()).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(
            reply.json()["message"]
                .as_str()
                .unwrap()
                .contains("only POST is accepted on /authorize")
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn what_a_review_carries_beyond_its_coordinates_never_reaches_a_record_or_a_log() {
    let logs = LogCapture::start();
    let h = Harness::start(&approvals_manifest(&[])).await;
    let mut c = h.conn(Proto::H2).await;
    let selector = String::from_utf8(body_of("secret-list-labelselector-bob.json"))
        .unwrap()
        .replace("\"web\"", &format!("\"{CANARY}\""));
    assert!(selector.contains(CANARY));
    let reply = c.authorize(selector.as_bytes()).await;
    assert!(denied(&reply));
    let broken = get_with(&[(
        "\"name\":\"db-pass\"",
        &format!("\"name\":{{\"x\":\"{CANARY}\"}}"),
    )]);
    assert_eq!(c.authorize(&broken).await.status, StatusCode::BAD_REQUEST);
    let audit = std::fs::read_to_string(h.audit_path()).unwrap();
    assert_eq!(audit.lines().count(), 2);
    assert!(!audit.contains(CANARY), "{audit}");
    let lines = logs.lines();
    assert!(!lines.is_empty(), "the refusal is logged");
    assert!(!format!("{lines:?}").contains(CANARY));
    h.stop().await;
}

/// The test API server with jitgate guarding the approvals and authorizing reads, users
/// bob and carol (group dev-team, which RBAC lets read Secrets and logs; carol also in
/// jitgate-approvers, the shipped policies' approvers) and eve (in neither), and Secret
/// prod/db-pass.
struct Cluster {
    api: ApiServer,
    h: Harness,
}

const BOB: &str = "bob-token";
const CAROL: &str = "carol-token";
const EVE: &str = "eve-token";

async fn cluster() -> Cluster {
    let api = ApiServer::start().await;
    api.add_user(BOB, "bob", &["dev-team"]);
    api.add_user(CAROL, "carol", &["dev-team", "jitgate-approvers"]);
    api.add_user(EVE, "eve", &["contractors"]);
    api.apply_approvals("jitgate-approvals", &[]);
    let policies: Vec<(&str, String)> = POLICY_FILES
        .iter()
        .map(|f| {
            (
                *f,
                std::fs::read_to_string(std::path::Path::new(REPO).join("policies").join(f)).unwrap(),
            )
        })
        .collect();
    let data: Vec<(&str, &str)> = policies.iter().map(|(f, t)| (*f, t.as_str())).collect();
    api.apply("jitgate-system", "jitgate-policies", &[], &data);
    api.add_secret("prod", "db-pass", &[("password", CANARY)]);
    api.add_secret("prod", "spare", &[("password", "c3BhcmU=")]);
    let h = Harness::start_cluster(&api, Duration::from_secs(300), |_| {}).await;
    api.admit_with(h.addr(), &h.certs.ca_pem);
    api.authorize_with(h.addr(), &h.certs.ca_pem);
    eventually(PATIENCE, || async { h.readyz().await == StatusCode::OK }).await;
    Cluster { api, h }
}

impl Cluster {
    /// `GET path` on the API server as the user of `token`: what kubectl would get.
    async fn get(&self, token: &str, path: &str) -> Reply {
        let mut c = self.api.conn_as(token).await;
        c.send(Method::GET, path, None, Vec::new()).await
    }

    /// bob's (or another's) `kubectl jitgate request` for `get` of Secret prod/db-pass:
    /// the key of the entry it wrote.
    async fn request_read(&self, token: &str) -> String {
        let r = self
            .api
            .jitgate_as(
                token,
                &[
                    "request",
                    "--resource",
                    "secrets",
                    "-n",
                    "prod",
                    "--name",
                    "db-pass",
                    "--verb",
                    "get",
                    "--for",
                    "30m",
                    "--reason",
                    "INC-9: check the DB password",
                ],
            )
            .await;
        assert_eq!(r.code, 0, "{}{}", r.out, r.err);
        r.requested_key()
    }

    /// `kubectl jitgate VERB KEY` as the user of `token`: its exit status.
    async fn ledger(&self, token: &str, verb: &str, key: &str) -> i32 {
        let r = self.api.jitgate_as(token, &[verb, key]).await;
        r.code
    }
}

const SECRET: &str = "/api/v1/namespaces/prod/secrets/db-pass";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_secret_and_logs_through_the_api_server_request_approve_read_revoke() {
    let c = cluster().await;
    // Before any approval: kubectl get secret and kubectl logs are forbidden, in kubectl's
    // words followed by jitgate's; RBAC is not asked.
    for (path, prefix) in [
        (
            SECRET,
            "secrets \"db-pass\" is forbidden: User \"bob\" cannot get resource \"secrets\"",
        ),
        (
            "/api/v1/namespaces/prod/secrets",
            "secrets is forbidden: User \"bob\" cannot list resource \"secrets\"",
        ),
        (
            "/api/v1/namespaces/prod/pods/shell/log",
            "pods \"shell\" is forbidden: User \"bob\" cannot get resource \"pods/log\"",
        ),
    ] {
        let reply = c.get(BOB, path).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
        let message = reply.json()["message"].as_str().unwrap().to_string();
        assert!(message.starts_with(prefix), "{message}");
        assert!(
            message.contains(": jitgate: ") && message.contains("policy prod-reads"),
            "{message}"
        );
    }
    // Reads nothing gates are left to RBAC, which lets dev-team read in other namespaces.
    assert_eq!(
        c.get(BOB, "/api/v1/namespaces/staging/secrets").await.status,
        StatusCode::OK
    );

    // bob asks; carol approves; bob reads exactly that Secret.
    let key = c.request_read(BOB).await;
    assert_eq!(
        c.get(BOB, SECRET).await.status,
        StatusCode::FORBIDDEN,
        "pending is not approved"
    );
    assert_eq!(
        c.ledger(BOB, "approve", &key).await,
        1,
        "nobody approves their own request"
    );
    assert_eq!(c.ledger(CAROL, "approve", &key).await, 0);
    eventually(PATIENCE, || async {
        c.get(BOB, SECRET).await.status == StatusCode::OK
    })
    .await;
    let secret = c.get(BOB, SECRET).await.json();
    assert_eq!(
        secret["data"]["password"], CANARY,
        "the API server served the Secret"
    );
    for (token, path) in [
        (BOB, "/api/v1/namespaces/prod/secrets/spare"),
        (BOB, "/api/v1/namespaces/prod/secrets"),
        (CAROL, SECRET),
    ] {
        assert_eq!(
            c.get(token, path).await.status,
            StatusCode::FORBIDDEN,
            "{token} {path}"
        );
    }

    // jitgate never grants what RBAC would not: eve, approved the same way, is still
    // refused by RBAC, with no word from jitgate.
    let eve_key = c.request_read(EVE).await;
    assert_eq!(c.ledger(CAROL, "approve", &eve_key).await, 0);
    eventually(PATIENCE, || async {
        let reply = c.get(EVE, SECRET).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "RBAC still refuses eve");
        let message = reply.json()["message"].as_str().unwrap().to_string();
        let jitgate_approved =
            c.h.records()
                .iter()
                .rev()
                .find(|r| r["event"] == "authorization" && r["user"] == "eve")
                .is_some_and(|r| r["reason"] == "approved");
        jitgate_approved && !message.contains("jitgate")
    })
    .await;

    // Revoked: the next read is forbidden again.
    assert_eq!(c.ledger(CAROL, "revoke", &key).await, 0);
    eventually(PATIENCE, || async {
        c.get(BOB, SECRET).await.status == StatusCode::FORBIDDEN
    })
    .await;

    // Every read left one authorization record; none holds the Secret's data.
    let audit = std::fs::read_to_string(c.h.audit_path()).unwrap();
    assert!(!audit.contains(CANARY));
    let reads =
        c.h.records()
            .into_iter()
            .filter(|r| r["event"] == "authorization")
            .count();
    assert!(reads >= 10, "{reads} authorization records");
    c.h.stop().await;
}

#[tokio::test]
async fn each_read_spends_one_use_and_a_can_i_question_spends_none() {
    let entry = read_approval(&[("verbs: [get]", "verbs: [get]\nmaxUses: 2")]);
    let h = Harness::start(&approvals_manifest(&[("bob-twice", &entry)])).await;
    let mut c = h.conn(Proto::H1).await;
    // kubectl auth can-i get secrets/db-pass: version "*", answered alike, spends nothing.
    let can_i = get_with(&[("\"version\":\"v1\"", "\"version\":\"*\"")]);
    for _ in 0..3 {
        assert!(!denied(&c.authorize(&can_i).await));
    }
    assert!(!denied(&c.authorize(&get_with(&[])).await), "first use");
    assert!(!denied(&c.authorize(&get_with(&[])).await), "second use");
    let third = c.authorize(&get_with(&[])).await;
    assert!(denied(&third), "a third read is past maxUses: 2");
    let reason = status_of(&third)["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains("has been used 2 times, all it allows"),
        "{reason}"
    );
    let record = h.records().pop().unwrap();
    assert_read_record_is_the_answer(&record, &third);
    assert_eq!(record["reason"], "uses_exhausted");
    h.stop().await;
}

/// A policy under which approvals grant a get of Secrets in prod.
const GRANTING_SECRETS: &str = "apiVersion: jitgate.dev/v1alpha1\nkind: GatePolicy\nmetadata: { name: grants-secrets }\nspec:\n  grant: true\n  rules: [{ apiGroups: [\"\"], resources: [\"secrets\"], verbs: [\"get\"] }]\n  namespaces: [\"prod\"]\n  approval: { minApprovers: 1, maxDuration: 1h }\n";

#[tokio::test]
async fn an_approval_to_a_system_user_or_group_grants_nothing_under_a_granting_policy() {
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(policies.path().join("grants.yaml"), GRANTING_SECRETS).unwrap();
    let robot = "system:serviceaccount:prod:builder";
    // (whose approval, who asks, granted?): bob's own is granted; one to every
    // authenticated user, or to a service account, is not: the webhook way never grants
    // to a `system:` user or group, as the RBAC way never binds one.
    for (subject, asker, granted) in [
        ("user: bob", "bob", true),
        ("group: system:authenticated", "bob", false),
        (&*format!("user: {robot}"), robot, false),
    ] {
        let entry = read_approval(&[("user: bob", subject)]);
        let manifest = approvals_manifest(&[("the-approval", &entry)]);
        let dir = policies.path().to_path_buf();
        let h = Harness::start_with(Some(&manifest), |cfg| cfg.policies_dir = dir).await;
        let mut c = h.conn(Proto::H1).await;
        let reply = c
            .authorize(&get_with(&[(r#""user":"bob""#, &format!(r#""user":"{asker}""#))]))
            .await;
        let status = reply.json()["status"].clone();
        assert_eq!(status["allowed"], granted, "{subject} asked by {asker}: {status}");
        if !granted {
            assert_eq!(
                status["denied"], true,
                "a gated read without its grant is denied: {status}"
            );
        }
        h.stop().await;
    }
}

/// A granting policy without `namespaces:` covers jitgate's own namespace and the
/// cluster's, whose writes the admission gate never sees (the rendered configurations
/// leave them out). Asked there anyway, `/authorize` grants nothing: an update of
/// `jitgate-usage` would reset the count of `maxUses` uses, unchecked.
#[tokio::test]
async fn nothing_is_granted_where_the_admission_gate_never_sees_the_writes() {
    let policies = tempfile::tempdir().unwrap();
    let everywhere = GRANTING_SECRETS
        .replace("  namespaces: [\"prod\"]\n", "")
        .replace(
            "resources: [\"secrets\"], verbs: [\"get\"]",
            "resources: [\"configmaps\"], verbs: [\"get\"], operations: [\"UPDATE\"]",
        );
    assert!(!everywhere.contains("namespaces") && everywhere.contains("UPDATE"));
    std::fs::write(policies.path().join("grants.yaml"), everywhere).unwrap();
    for (namespace, granted) in [
        ("prod", true),
        ("jitgate-system", false),
        ("kube-system", false),
        ("kube-public", false),
        ("kube-node-lease", false),
    ] {
        let entry = read_approval(&[
            ("namespace: prod", &format!("namespace: {namespace}")),
            ("resource: secrets", "resource: configmaps"),
            ("name: db-pass", "name: jitgate-usage"),
            ("verbs: [get]", "operations: [UPDATE]\nverbs: [get]"),
        ]);
        let manifest = approvals_manifest(&[("the-approval", &entry)]);
        let dir = policies.path().to_path_buf();
        let h = Harness::start_with(Some(&manifest), |cfg| cfg.policies_dir = dir).await;
        let mut c = h.conn(Proto::H1).await;
        for verb in ["update", "patch", "get"] {
            let reply = c
                .authorize(&get_with(&[
                    (r#""namespace":"prod""#, &format!(r#""namespace":"{namespace}""#)),
                    (r#""verb":"get""#, &format!(r#""verb":"{verb}""#)),
                    (r#""resource":"secrets""#, r#""resource":"configmaps""#),
                    (r#""name":"db-pass""#, r#""name":"jitgate-usage""#),
                ]))
                .await;
            let status = reply.json()["status"].clone();
            assert_eq!(status["allowed"], granted, "{verb} in {namespace}: {status}");
        }
        h.stop().await;
    }
}

/// A granting rule with `objectTypes` gates only those types at admission (the rendered
/// configuration sends no other), and a SubjectAccessReview carries no object: granting
/// `create secrets` there would let the person create a Secret of any type, unchecked.
/// Nothing is granted under it; the same rule without `objectTypes` grants.
#[tokio::test]
async fn no_write_is_granted_under_a_granting_rule_with_object_types() {
    for (types, granted) in [("", true), (", objectTypes: [\"kubernetes.io/tls\"]", false)] {
        let policies = tempfile::tempdir().unwrap();
        let policy = GRANTING_SECRETS.replace(
            "verbs: [\"get\"] }",
            &format!("operations: [\"CREATE\"]{types} }}"),
        );
        assert!(policy.contains("CREATE"));
        std::fs::write(policies.path().join("grants.yaml"), policy).unwrap();
        let entry = read_approval(&[("name: db-pass\n", ""), ("verbs: [get]", "operations: [CREATE]")]);
        let manifest = approvals_manifest(&[("the-approval", &entry)]);
        let dir = policies.path().to_path_buf();
        let h = Harness::start_with(Some(&manifest), |cfg| cfg.policies_dir = dir).await;
        let mut c = h.conn(Proto::H1).await;
        let reply = c
            .authorize(&get_with(&[
                (r#""verb":"get""#, r#""verb":"create""#),
                (r#","name":"db-pass""#, ""),
            ]))
            .await;
        let status = reply.json()["status"].clone();
        assert_eq!(status["allowed"], granted, "{types}: {status}");
        h.stop().await;
    }
}
