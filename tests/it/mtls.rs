//! Knowing the caller: with `serve --client-ca-file`, a review is decided only for a caller
//! whose client certificate chains to that CA (the API server's); anyone else who reaches
//! the port is refused before the body is read, recorded, and spends nothing. Without the
//! flag, the same forged review is believed: the hole the flag closes.

use crate::support::*;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

const CAPTURED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/admission/captured/configmap-update-user-alice-with-groups.json"
);

fn once() -> String {
    entry(&[]) + "maxUses: 1\n"
}

/// Alice's request, pending or approved by bob.
fn request(approved: bool) -> String {
    entry(&[(
        "[bob@example.com]",
        if approved { "[bob@example.com]" } else { "[]" },
    )])
}

fn configmap(value: &str) -> Value {
    json!({"kind": "ConfigMap", "apiVersion": "v1",
        "metadata": {"name": "jitgate-approvals", "namespace": "jitgate-system", "resourceVersion": "220",
            "labels": {"jitgate.dev/approvals": "true"}},
        "data": {"pending": value}})
}

/// Bob approving Alice's pending request, as the API server would send the edit.
fn approval_edit() -> Value {
    let mut review: Value = serde_json::from_slice(&std::fs::read(CAPTURED).unwrap()).unwrap();
    let r = &mut review["request"];
    r["uid"] = json!(unique_uid());
    r["name"] = json!("jitgate-approvals");
    r["namespace"] = json!("jitgate-system");
    r["operation"] = json!("UPDATE");
    r["userInfo"] = json!({"username": "bob@example.com", "uid": "u", "groups": ["jitgate-approvers"]});
    r["oldObject"] = configmap(&request(false));
    r["object"] = configmap(&request(true));
    review
}

/// A SubjectAccessReview as the API server sends one: Alice reads a Secret in prod.
fn read_review() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "alice@example.com", "groups": ["dev"],
            "resourceAttributes": {"namespace": "prod", "verb": "get", "group": "", "version": "v1",
                "resource": "secrets", "name": "db-password"}}
    }))
    .unwrap()
}

async fn start(client_ca: Option<&ClientCa>) -> Harness {
    let manifest = approvals_manifest(&[("once", &once()), ("pending", &request(false))]);
    let ca = client_ca.map(|ca| ca.ca_pem.clone());
    Harness::start_with(Some(&manifest), |cfg| {
        if let Some(ca) = ca {
            let path = cfg.tls_cert.with_file_name("client-ca.crt");
            std::fs::write(&path, ca).unwrap();
            cfg.client_ca_file = Some(path);
        }
    })
    .await
}

fn approval_records(h: &Harness) -> usize {
    h.records().iter().filter(|r| r["event"] == "approval").count()
}

/// Sends the forged reviews on `c`: a use of the single-use approval, an approval of a
/// pending request, and a read. Returns the replies.
async fn forge(c: &mut Conn) -> Vec<Reply> {
    let review = serde_json::to_vec(&Req::secret_update().review()).unwrap();
    let edit = serde_json::to_vec(&approval_edit()).unwrap();
    vec![
        c.send(
            Method::POST,
            "/validate?timeout=10s",
            Some("application/json"),
            review,
        )
        .await,
        c.send(
            Method::POST,
            "/validate?timeout=10s",
            Some("application/json"),
            edit,
        )
        .await,
        c.authorize(&read_review()).await,
    ]
}

#[tokio::test]
async fn without_a_client_ca_a_forged_review_is_believed_and_spends_another_users_single_use() {
    let h = start(None).await;
    let mut forger = h.conn(Proto::H1).await;
    let replies = forge(&mut forger).await;
    assert_eq!(replies[0].json()["response"]["allowed"], true);
    assert_eq!(replies[1].json()["response"]["allowed"], true);
    assert_eq!(approval_records(&h), 1, "an approval nobody made is recorded");
    // Alice's real request now finds her single use spent.
    let mut api = h.conn(Proto::H1).await;
    let alice = Req::secret_update();
    assert_eq!(api.decide(&alice.review()).await["allowed"], false);
    assert_eq!(h.record_of(&alice.uid)["reason"], "uses_exhausted");
    h.stop().await;
}

#[tokio::test]
async fn with_a_client_ca_a_review_from_anyone_but_the_api_server_is_refused_recorded_and_spends_nothing() {
    let cluster_ca = ClientCa::new("cluster CA");
    let other_ca = ClientCa::new("someone else's CA");
    let apiserver = cluster_ca.issue("kube-apiserver");
    let stranger = other_ca.issue("kube-apiserver");
    let h = start(Some(&cluster_ca)).await;
    for proto in BOTH {
        for (who, identity) in [
            ("no certificate", None),
            ("another CA's certificate", Some(&stranger)),
        ] {
            let mut c = match identity {
                None => h.conn(proto).await,
                Some(id) => h.conn_as(id, proto).await,
            };
            let before = h.records().len();
            for reply in forge(&mut c).await {
                assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{proto:?}, {who}");
                let status = reply.json();
                assert_eq!(status["kind"], "Status", "{proto:?}, {who}");
                let message = status["message"].as_str().unwrap();
                assert!(
                    message.contains("only from the API server"),
                    "{proto:?}, {who}: {message}"
                );
                if identity.is_none() {
                    assert!(message.contains("no client certificate"), "{message}");
                } else {
                    assert!(message.contains("not accepted by the client CA"), "{message}");
                }
            }
            // Probes need no certificate.
            for path in ["/healthz", "/readyz"] {
                let probe = c.send(Method::GET, path, None, Vec::new()).await;
                assert_eq!(probe.status, StatusCode::OK, "{path}, {proto:?}, {who}");
            }
            let records = h.records();
            let refused: Vec<&Value> = records[before..].iter().collect();
            assert_eq!(
                refused.len(),
                3,
                "one record per refusal, {proto:?}, {who}: {refused:?}"
            );
            for r in refused {
                assert_eq!(r["reason"], "unauthenticated", "{r}");
                assert_eq!(r["code"], 401, "{r}");
                assert_eq!(r["allowed"], false, "{r}");
            }
        }
    }
    assert_eq!(approval_records(&h), 0, "no approval recorded from a forged edit");
    let metrics = h
        .conn(Proto::H1)
        .await
        .send(Method::GET, "/metrics", None, Vec::new())
        .await;
    assert_eq!(metrics.status, StatusCode::OK, "/metrics needs no certificate");
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("jitgate_decisions_total{")
            && l.contains("reason=\"unauthenticated\"")
            && l.contains("review=\"admission\"")
            && l.ends_with(" 8")),
        "{text}"
    );

    // The API server's own certificate: everything works as before, and the single use
    // is still there to spend.
    for proto in BOTH {
        let mut api = h.conn_as(&apiserver, proto).await;
        let reply = api.authorize(&read_review()).await;
        assert_eq!(reply.status, StatusCode::OK, "{proto:?}");
    }
    let mut api = h.conn_as(&apiserver, Proto::H2).await;
    let alice = Req::secret_update();
    assert_eq!(api.decide(&alice.review()).await["allowed"], true);
    assert_eq!(h.record_of(&alice.uid)["reason"], "approved");
    let again = Req::secret_update();
    assert_eq!(api.decide(&again.review()).await["allowed"], false);
    assert_eq!(h.record_of(&again.uid)["reason"], "uses_exhausted");
    let edit = approval_edit();
    assert_eq!(api.decide(&edit).await["allowed"], true);
    assert_eq!(approval_records(&h), 1, "the real approval is recorded");
    h.stop().await;
}

#[tokio::test]
async fn a_changed_client_ca_file_judges_new_connections_by_the_new_ca() {
    let (first, second) = (ClientCa::new("first"), ClientCa::new("second"));
    let h = start(Some(&first)).await;
    let (old, new) = (first.issue("kube-apiserver"), second.issue("kube-apiserver"));
    assert_eq!(review(h.conn_as(&old, Proto::H1).await).await, StatusCode::OK);
    std::fs::write(h.dir.path().join("client-ca.crt"), &second.ca_pem).unwrap();
    eventually(std::time::Duration::from_secs(10), || async {
        review(h.conn_as(&new, Proto::H1).await).await == StatusCode::OK
    })
    .await;
    assert_eq!(
        review(h.conn_as(&old, Proto::H1).await).await,
        StatusCode::UNAUTHORIZED
    );
    // A broken file is refused and the current CA kept.
    std::fs::write(h.dir.path().join("client-ca.crt"), "not a certificate").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(review(h.conn_as(&new, Proto::H1).await).await, StatusCode::OK);
    h.stop().await;
}

/// The status of an ungated review sent on `c`.
async fn review(mut c: Conn) -> StatusCode {
    let body =
        serde_json::to_vec(&Req::secret_update().with(|r| r.namespace = "dev".into()).review()).unwrap();
    c.send(Method::POST, "/validate", Some("application/json"), body)
        .await
        .status
}
