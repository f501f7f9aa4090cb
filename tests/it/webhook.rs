//! The webhook over real TLS, called as the API server calls it: CA-verified, HTTP/1.1
//! (every in-cluster `service` webhook) and HTTP/2 (a loopback URL negotiates it).

use crate::support;

use crate::support::*;
use hyper::{Method, StatusCode};
use serde_json::Value;

/// Approvals for the matrix below: one per key, each a near miss of alice's secret update
/// except `good`.
fn matrix_approvals() -> String {
    approvals_manifest(&[("good", &entry(&[]))])
}

#[tokio::test]
async fn ungated_denied_and_approved_requests_over_http1_and_http2() {
    let h = Harness::start(&matrix_approvals()).await;
    for proto in BOTH {
        let mut c = h.conn(proto).await;
        let expected: &[u8] = if proto == Proto::H1 { b"http/1.1" } else { b"h2" };
        assert_eq!(c.alpn.as_deref(), Some(expected));

        // Ungated: a Secret in a namespace no policy names.
        let ungated = Req::secret_update().with(|r| r.namespace = "staging".into());
        let response = c.decide(&ungated.review()).await;
        assert_eq!(response["allowed"], true);
        assert!(response.get("status").is_none());
        assert_eq!(h.record_of(&ungated.uid)["reason"], "not_gated");

        // Gated, no approval for bob: denied the way kubectl shows "(Forbidden)".
        let bob = Req::secret_update().with(|r| r.user = "bob@example.com".into());
        let response = c.decide(&bob.review()).await;
        assert_eq!(response["allowed"], false);
        assert_eq!(response["status"]["code"], 403);
        assert_eq!(response["status"]["reason"], "Forbidden");
        assert_eq!(h.record_of(&bob.uid)["reason"], "no_approval");

        // Gated, approved: allowed, on the same keep-alive connection.
        let alice = Req::secret_update();
        let response = c.decide(&alice.review()).await;
        assert_eq!(response["allowed"], true, "{response}");
        let record = h.record_of(&alice.uid);
        assert_eq!(record["reason"], "approved");
        assert_eq!(record["approval"], "jitgate-approvals/good");
        assert_eq!(record["approvedBy"], serde_json::json!(["bob@example.com"]));
    }
    h.stop().await;
}

#[tokio::test]
async fn a_denial_says_what_which_policy_what_is_needed_and_how_to_ask() {
    let h = Harness::start(&approvals_manifest(&[])).await;
    let mut c = h.conn(Proto::H1).await;
    let req = Req::secret_update();
    let response = c.decide(&req.review()).await;
    let message = response["status"]["message"].as_str().unwrap();
    for needle in [
        "UPDATE of secrets \"db-password\" in namespace \"prod\" by \"alice@example.com\"",
        "policy prod-secrets",
        "It needs 1 approver other than you, and may last at most 4h.",
        "ConfigMap jitgate-approvals in namespace jitgate-system",
        "kubectl edit configmap jitgate-approvals -n jitgate-system",
        "    user: \"alice@example.com\"",
        "    name: \"db-password\"",
        "    operations: [UPDATE]",
        "    approvedBy: []",
    ] {
        assert!(message.contains(needle), "missing {needle:?} in:\n{message}");
    }
    h.stop().await;
}

#[tokio::test]
async fn near_miss_approvals_are_denied_each_with_its_reason() {
    // Each case: an approval that almost fits alice's request (or a request that almost
    // fits the approval), and the reason the denial must give.
    let cases: Vec<(&str, String, Req, &str)> = vec![
        (
            "expired",
            expiring(-1, &[]),
            Req::secret_update(),
            "approval_expired",
        ),
        (
            "wrong user",
            entry(&[]),
            Req::secret_update().with(|r| r.user = "mallory".into()),
            "no_approval",
        ),
        (
            "wrong namespace",
            entry(&[]),
            Req::secret_update().with(|r| r.namespace = "prod-eu".into()),
            "no_approval",
        ),
        (
            "wrong name",
            entry(&[]),
            Req::secret_update().with(|r| r.name = "api-token".into()),
            "no_approval",
        ),
        (
            "wrong operation",
            entry(&[]),
            Req::secret_update().with(|r| r.op = "DELETE".into()),
            "no_approval",
        ),
        (
            "too few approvers",
            entry(&[("[bob@example.com]", "[]")]),
            Req::secret_update(),
            "too_few_approvers",
        ),
        (
            "self-approval",
            entry(&[("[bob@example.com]", "[alice@example.com]")]),
            Req::secret_update(),
            "too_few_approvers",
        ),
        (
            "longer than maxDuration",
            expiring(5 * 60, &[]),
            Req::secret_update(),
            "approval_exceeds_max_duration",
        ),
    ];
    for (case, approval, req, expected) in cases {
        let h = Harness::start(&approvals_manifest(&[("case", &approval)])).await;
        let mut c = h.conn(Proto::H1).await;
        let response = c.decide(&req.review()).await;
        assert_eq!(response["allowed"], false, "{case}: {response}");
        let record = h.record_of(&req.uid);
        assert_eq!(record["reason"], expected, "{case}");
        if expected != "no_approval" {
            assert_eq!(
                record["approval"], "jitgate-approvals/case",
                "{case}: the record names the approval"
            );
        }
        h.stop().await;
    }
}

#[tokio::test]
async fn self_approval_is_named_in_the_message() {
    let approval = entry(&[("[bob@example.com]", "[alice@example.com]")]);
    let h = Harness::start(&approvals_manifest(&[("mine", &approval)])).await;
    let mut c = h.conn(Proto::H1).await;
    let response = c.decide(&Req::secret_update().review()).await;
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("has 0 of the 1 approvers it needs (your own name does not count)"),
        "{message}"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_group_approval_allows_its_members() {
    let approval = entry(&[("user: alice@example.com", "group: dev")]);
    let h = Harness::start(&approvals_manifest(&[("devs", &approval)])).await;
    let mut c = h.conn(Proto::H2).await;
    let member = Req::secret_update().with(|r| r.user = "carol@example.com".into());
    assert_eq!(c.decide(&member.review()).await["allowed"], true);
    let outsider = Req::secret_update().with(|r| {
        r.user = "dave@example.com".into();
        r.groups = vec!["ops".into()];
    });
    assert_eq!(c.decide(&outsider.review()).await["allowed"], false);
    h.stop().await;
}

#[tokio::test]
async fn the_shipped_policies_gate_workloads_and_pod_access() {
    let h = Harness::start(&approvals_manifest(&[])).await;
    let mut c = h.conn(Proto::H1).await;
    let gated = [
        ("apps", "deployments", "", "UPDATE", "prod-workloads"),
        ("apps", "deployments", "scale", "UPDATE", "prod-workloads"),
        ("apps", "statefulsets", "", "DELETE", "prod-workloads"),
        ("", "pods", "exec", "CONNECT", "prod-pod-access"),
        ("", "pods", "portforward", "CONNECT", "prod-pod-access"),
        ("", "pods", "ephemeralcontainers", "UPDATE", "prod-pod-access"),
    ];
    for (group, resource, sub, op, policy) in gated {
        let req = Req::secret_update().with(|r| {
            r.group = group.into();
            r.resource = resource.into();
            r.sub = sub.into();
            r.op = op.into();
            r.namespace = "prod-payments".into();
        });
        assert_eq!(
            c.decide(&req.review()).await["allowed"],
            false,
            "{resource}/{sub}"
        );
        assert_eq!(h.record_of(&req.uid)["policy"], policy);
    }
    let controller = Req::secret_update()
        .with(|r| r.user = "system:serviceaccount:kube-system:generic-garbage-collector".into());
    assert_eq!(c.decide(&controller.review()).await["allowed"], true);
    assert_eq!(h.record_of(&controller.uid)["reason"], "exempt");
    h.stop().await;
}

#[tokio::test]
async fn every_decision_record_has_the_fixed_keys_and_no_object_data() {
    const CANARY: &str = "Q0FOQVJZLXNlY3JldC12YWx1ZQ==";
    let h = Harness::start(&approvals_manifest(&[("good", &entry(&[]))])).await;
    let mut c = h.conn(Proto::H1).await;
    let approved = Req::secret_update();
    let denied = Req::secret_update().with(|r| r.user = "bob@example.com".into());
    for req in [&approved, &denied] {
        let reply = c.review(&req.review_with_data(CANARY)).await;
        assert!(!String::from_utf8_lossy(&reply.body).contains(CANARY));
    }
    let audit = std::fs::read_to_string(h.audit_path()).unwrap();
    assert!(!audit.contains(CANARY), "object data leaked into the records");
    let keys = [
        "timestamp",
        "event",
        "uid",
        "allowed",
        "decision",
        "reason",
        "code",
        "policy",
        "user",
        "groups",
        "operation",
        "apiGroup",
        "resource",
        "subResource",
        "namespace",
        "name",
        "dryRun",
        "approval",
        "approvedBy",
        "expiresAt",
        "latencyUs",
        // The chain's links; the first record of a chain that follows another also has
        // "follows" (not here: no log before this server).
        "chain",
        "seq",
        "prevHash",
        "hash",
    ];
    for uid in [&approved.uid, &denied.uid] {
        let record = h.record_of(uid);
        let object = record.as_object().unwrap();
        let mut present: Vec<&str> = object.keys().map(String::as_str).collect();
        present.sort();
        let mut expected = keys.to_vec();
        expected.sort();
        assert_eq!(present, expected);
        assert_eq!(record["event"], "decision");
        assert_eq!(record["policy"], "prod-secrets");
        assert_eq!(
            record["user"],
            if uid == &approved.uid {
                "alice@example.com"
            } else {
                "bob@example.com"
            }
        );
        assert_eq!(
            record["groups"],
            serde_json::json!(["dev", "system:authenticated"])
        );
        assert_eq!(
            (record["operation"].as_str(), record["namespace"].as_str()),
            (Some("UPDATE"), Some("prod"))
        );
        assert!(record["latencyUs"].is_u64());
        let timestamp = record["timestamp"].as_str().unwrap();
        assert!(timestamp.parse::<jiff::Timestamp>().is_ok(), "{timestamp}");
    }
    assert_eq!(h.record_of(&approved.uid)["decision"], "allow");
    assert_eq!(h.record_of(&denied.uid)["decision"], "deny");
    h.stop().await;
}

type BadInput = (Method, Option<&'static str>, Vec<u8>, StatusCode, &'static str);

fn status_of(reply: &support::Reply) -> (StatusCode, Value) {
    (reply.status, reply.json())
}

#[tokio::test]
async fn bad_input_gets_a_4xx_with_a_reason_and_is_recorded_as_a_denial() {
    let h = Harness::start(&approvals_manifest(&[])).await;
    for proto in BOTH {
        let mut c = h.conn(proto).await;
        let valid = serde_json::to_vec(&Req::secret_update().review()).unwrap();
        // (method, content type, body, expected status, what the message must say)
        let cases: Vec<BadInput> = vec![
            (
                Method::POST,
                Some("application/json"),
                b"{not json".to_vec(),
                StatusCode::BAD_REQUEST,
                "not valid JSON",
            ),
            (
                Method::POST,
                Some("application/json"),
                br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#
                    .to_vec(),
                StatusCode::BAD_REQUEST,
                "apiVersion must be",
            ),
            (
                Method::POST,
                Some("application/json"),
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
                StatusCode::BAD_REQUEST,
                "has no request",
            ),
            (
                Method::POST,
                Some("application/json"),
                String::from_utf8(valid.clone())
                    .unwrap()
                    .replace("\"UPDATE\"", "\"PATCH\"")
                    .into_bytes(),
                StatusCode::BAD_REQUEST,
                "unknown variant",
            ),
            (
                Method::POST,
                Some("application/json"),
                {
                    let mut forged = Req::secret_update().review();
                    forged["request"]["uid"] = "u".repeat(64 * 1024).into();
                    serde_json::to_vec(&forged).unwrap()
                },
                StatusCode::BAD_REQUEST,
                "request.uid is longer than 128 bytes",
            ),
            (
                Method::GET,
                None,
                Vec::new(),
                StatusCode::METHOD_NOT_ALLOWED,
                "only POST",
            ),
            (
                Method::PUT,
                Some("application/json"),
                valid.clone(),
                StatusCode::METHOD_NOT_ALLOWED,
                "only POST",
            ),
            (
                Method::POST,
                Some("text/plain"),
                valid.clone(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "application/json",
            ),
            (
                Method::POST,
                None,
                valid.clone(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "application/json",
            ),
            (
                Method::POST,
                Some("application/json"),
                vec![b' '; 7 * 1024 * 1024 + 1],
                StatusCode::PAYLOAD_TOO_LARGE,
                "larger than",
            ),
        ];
        for (method, ct, body, expected, needle) in cases {
            let before = h.records().len();
            let reply = c.send(method.clone(), "/validate", ct, body).await;
            let (status, json) = status_of(&reply);
            assert_eq!(status, expected, "{method} {ct:?}: {json}");
            assert_eq!(json["kind"], "Status");
            assert_eq!(json["code"], expected.as_u16());
            let message = json["message"].as_str().unwrap();
            assert!(message.contains(needle), "{message}");
            let records = h.records();
            assert_eq!(records.len(), before + 1, "one record per answer");
            let last = records.last().unwrap();
            assert_eq!(
                (last["decision"].as_str(), last["reason"].as_str()),
                (Some("deny"), Some("bad_request"))
            );
            // A uid named in a refused body is kept in its record, shortened.
            assert!(last["uid"].as_str().is_none_or(|u| u.len() <= 128), "{last}");
        }
    }
    // An unknown path is a 404, and the connection still serves.
    let mut c = h.conn(Proto::H1).await;
    assert_eq!(
        c.send(Method::GET, "/nope", None, Vec::new()).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(c.decide(&Req::secret_update().review()).await["allowed"], false);
    h.stop().await;
}

#[tokio::test]
async fn a_body_that_names_a_uid_keeps_it_in_the_record_of_its_refusal() {
    let h = Harness::start(&approvals_manifest(&[])).await;
    let mut c = h.conn(Proto::H1).await;
    let mut review = Req::secret_update().review();
    review["request"]["operation"] = "PATCH".into();
    let uid = review["request"]["uid"].as_str().unwrap().to_string();
    assert_eq!(c.review(&review).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(h.record_of(&uid)["reason"], "bad_request");
    h.stop().await;
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let h = Harness::start(&approvals_manifest(&[])).await;
    let mut c = h.conn(Proto::H2).await;
    let health = c.send(Method::GET, "/healthz", None, Vec::new()).await;
    assert_eq!(
        (health.status, health.body.as_slice()),
        (StatusCode::OK, b"ok".as_slice())
    );
    assert_eq!(h.readyz().await, StatusCode::OK);
    h.stop().await;
}

#[tokio::test]
async fn an_unwritable_audit_log_turns_grants_into_denials() {
    let approvals = approvals_manifest(&[("good", &entry(&[]))]);
    let h = Harness::start_with(Some(&approvals), |cfg| cfg.audit_log = Some("/dev/full".into())).await;
    let mut c = h.conn(Proto::H1).await;
    let response = c.decide(&Req::secret_update().review()).await;
    assert_eq!(response["allowed"], false);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("audit_unavailable") && message.contains("audit record could not be written"),
        "{message}"
    );
    h.stop().await;
}

/// curl, as an HTTP/2 client that is still sending when the answer comes: the refusal
/// must reach it as its Status, not as a reset stream ("curl: (92) Stream error").
fn curl_h2(port: u16, ca_pem: &str, content_type: &str, body: &[u8]) -> support::Reply {
    let dir = tempfile::tempdir().unwrap();
    let (ca, data, out) = (
        dir.path().join("ca.crt"),
        dir.path().join("body"),
        dir.path().join("out"),
    );
    std::fs::write(&ca, ca_pem).unwrap();
    std::fs::write(&data, body).unwrap();
    let run = std::process::Command::new("curl")
        .args(["--http2", "-sS", "--max-time", "60", "--cacert"])
        .arg(&ca)
        .args(["-H", &format!("Content-Type: {content_type}"), "--data-binary"])
        .arg(format!("@{}", data.display()))
        .arg("-o")
        .arg(&out)
        .args(["-w", "%{http_code} %{http_version}"])
        .arg(format!("https://localhost:{port}/validate"))
        .output()
        .expect("curl is needed for this test (apt-get install curl)");
    let said = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(
        run.status.success(),
        "curl failed: {said} {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let (code, version) = said.split_once(' ').unwrap();
    assert_eq!(version, "2", "not HTTP/2");
    support::Reply {
        status: StatusCode::from_u16(code.parse().unwrap()).unwrap(),
        content_type: None,
        body: std::fs::read(&out).unwrap(),
    }
}

#[tokio::test]
async fn early_refusals_over_http2_are_answered_with_their_status_and_recorded_as_answered() {
    let h = Harness::start(&approvals_manifest(&[])).await;
    let valid = serde_json::to_vec(&Req::secret_update().review()).unwrap();
    let too_large = vec![b' '; 8 * 1024 * 1024];
    for (content_type, body, expected) in [
        ("text/plain", valid.as_slice(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (
            "text/plain",
            too_large.as_slice(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "application/json",
            too_large.as_slice(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let before = h.records().len();
        let (port, ca, body) = (h.addr().port(), h.certs.ca_pem.clone(), body.to_vec());
        let reply = tokio::task::spawn_blocking(move || curl_h2(port, &ca, content_type, &body))
            .await
            .unwrap();
        assert_eq!(reply.status, expected);
        let records = h.records();
        assert_eq!(records.len(), before + 1, "one record per answer");
        assert_record_is_the_answer(records.last().unwrap(), &reply);
    }
    h.stop().await;
}
