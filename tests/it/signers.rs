//! The trusted signers come from one object only: the ConfigMap `jitgate-signers` beside
//! the approvals, which cluster admins own. Through the test API server with jitgate
//! admitting its edits: no label turns another ConfigMap into trusted signers, the fixed
//! one is guarded whatever its labels, and every change to it is recorded with its editor.

use crate::support::apiserver::ApiServer;
use crate::support::offline::keys_new;
use crate::support::*;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(15);

const ADMIN: (&str, &str, &[&str]) = ("admin-token", "admin@example.com", &["system:masters"]);
const ALICE: (&str, &str, &[&str]) = ("alice-token", "alice@example.com", &["dev"]);

/// Sends `body` to ConfigMap `name` in jitgate-system as `who`: a merge PATCH, or with
/// `Method::PUT` a whole UPDATE.
async fn edit_as(
    api: &ApiServer,
    who: (&str, &str, &[&str]),
    method: Method,
    name: &str,
    body: Value,
) -> (StatusCode, Value) {
    let mut c = api.conn_as(who.0).await;
    let content_type = if method == Method::PATCH {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    let reply = c
        .send(
            method,
            &format!("/api/v1/namespaces/jitgate-system/configmaps/{name}"),
            Some(content_type),
            body.to_string().into_bytes(),
        )
        .await;
    (reply.status, reply.json())
}

/// Creates ConfigMap `body` in jitgate-system as `who`.
async fn create_as(api: &ApiServer, who: (&str, &str, &[&str]), body: Value) -> (StatusCode, Value) {
    let mut c = api.conn_as(who.0).await;
    let reply = c
        .send(
            Method::POST,
            "/api/v1/namespaces/jitgate-system/configmaps",
            Some("application/json"),
            body.to_string().into_bytes(),
        )
        .await;
    (reply.status, reply.json())
}

/// The names of the signers the running server trusts.
fn trusted(h: &Harness) -> Vec<String> {
    let mut names: Vec<String> = h
        .running
        .as_ref()
        .unwrap()
        .state
        .approvals
        .signers()
        .iter()
        .map(|s| s.name.clone())
        .collect();
    names.sort();
    names
}

async fn cluster() -> (ApiServer, Harness) {
    let api = ApiServer::start().await;
    for (token, user, groups) in [ADMIN, ALICE] {
        api.add_user(token, user, groups);
    }
    api.apply_approvals("jitgate-approvals", &[]);
    api.apply_approvals("team-approvals", &[]);
    // As older manifests shipped it: labelled. The label means nothing now.
    api.apply(
        "jitgate-system",
        "jitgate-signers",
        &[("jitgate.dev/signers", "true")],
        &[],
    );
    let h = Harness::start_cluster(&api, Duration::from_secs(300), |_| {}).await;
    api.admit_with(h.addr(), &h.certs.ca_pem);
    eventually(PATIENCE, || async { h.readyz().await == StatusCode::OK }).await;
    (api, h)
}

/// The admin trusts carol through the one signers ConfigMap, and waits until jitgate
/// does: every change made before it has been seen by then.
async fn admin_trusts_carol(api: &ApiServer, h: &Harness, keys: &std::path::Path) {
    let carol = keys_new(keys, "carol");
    let (status, body) = edit_as(
        api,
        ADMIN,
        Method::PATCH,
        "jitgate-signers",
        json!({"data": {"carol": carol.entry("carol@example.com", "jitgate-approvers", "")}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually(PATIENCE, || async { trusted(h).contains(&"carol".to_string()) }).await;
}

#[tokio::test]
async fn a_requester_who_relabels_an_approvals_configmap_as_signers_is_never_a_trusted_signer() {
    let keys = tempfile::tempdir().unwrap();
    let (api, h) = cluster().await;
    let mine = keys_new(keys.path(), "alice-own");
    // The attack, in one UPDATE of an approvals ConfigMap she may edit: the approvals
    // label gone, the signers label added, and a signer with her own key.
    let mut object = api.object("jitgate-system", "jitgate-approvals").unwrap();
    object["metadata"]["labels"] = json!({"jitgate.dev/signers": "true"});
    object["data"] = json!({"alice-own": mine.entry("sam@example.com", "jitgate-approvers", "")});
    let (status, body) = edit_as(&api, ALICE, Method::PUT, "jitgate-approvals", object).await;
    // Whatever the ledger made of it (a revocation of the entries it held), ...
    assert!(
        status == StatusCode::OK || status == StatusCode::FORBIDDEN,
        "{body}"
    );
    // ... and a ConfigMap of any other name, labelled as signers by anyone: nobody they
    // name is trusted.
    let (status, body) = create_as(
        &api,
        ADMIN,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "more-signers", "namespace": "jitgate-system",
                "labels": {"jitgate.dev/signers": "true"}},
            "data": {"alice-two": mine.entry("sam@example.com", "jitgate-approvers", "")}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    admin_trusts_carol(&api, &h, keys.path()).await;
    assert_eq!(
        trusted(&h),
        ["carol"],
        "only the signers of jitgate-signers are trusted"
    );

    // She signs her own request as the signer she made, and carries it in: it grants
    // nothing, and the ledger says why.
    let cluster = api.cluster_id();
    let pending = entry(&[("approvedBy: [bob@example.com]", "approvedBy: []")]);
    let (status, body) = edit_as(
        &api,
        ALICE,
        Method::PATCH,
        "team-approvals",
        json!({"data": {"alice-db": pending}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let signed = mine.sign_for(keys.path(), &cluster, "team-approvals/alice-db", &pending);
    let (status, body) = edit_as(
        &api,
        ALICE,
        Method::PATCH,
        "team-approvals",
        json!({"data": {"alice-db": signed}}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("signature_invalid") && message.contains("\"alice-own\" is not a trusted signer"),
        "{body}"
    );
    for proto in [Proto::H1, Proto::H2] {
        let mut c = h.conn(proto).await;
        let answer = c.decide(&Req::secret_update().review()).await;
        assert_eq!(answer["allowed"], false, "{answer}");
    }
    h.stop().await;
}

#[tokio::test]
async fn the_signers_configmap_is_guarded_by_its_name_whatever_its_labels_and_every_edit_is_recorded() {
    let keys = tempfile::tempdir().unwrap();
    let (api, h) = cluster().await;
    // The admin takes the old label off jitgate-signers: it stays guarded, and the source.
    let (status, body) = edit_as(
        &api,
        ADMIN,
        Method::PATCH,
        "jitgate-signers",
        json!({"metadata": {"labels": {"jitgate.dev/signers": null}}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let unlabelled = api.object("jitgate-system", "jitgate-signers").unwrap();
    assert!(
        unlabelled["metadata"]["labels"]
            .get("jitgate.dev/signers")
            .is_none(),
        "{unlabelled}"
    );
    let dave = keys_new(keys.path(), "dave");
    let (status, body) = edit_as(
        &api,
        ADMIN,
        Method::PATCH,
        "jitgate-signers",
        json!({"data": {"broken": "publicKey: rsa:nope\nuser: x\n"}}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["message"].as_str().unwrap().contains("signer_malformed"),
        "{body}"
    );
    let (status, body) = edit_as(
        &api,
        ADMIN,
        Method::PATCH,
        "jitgate-signers",
        json!({"data": {"dave": dave.entry("dave@example.com", "jitgate-approvers", "")}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually(PATIENCE, || async { trusted(&h) == ["dave"] }).await;
    let record = h
        .records()
        .into_iter()
        .find(|r| r["event"] == "signer" && r["signer"] == "dave")
        .expect("a signer record");
    assert_eq!(record["action"], "added");
    assert_eq!(record["editor"], "admin@example.com");

    // Made an approvals ConfigMap as well: refused, one guard per object.
    let (status, body) = edit_as(
        &api,
        ADMIN,
        Method::PATCH,
        "jitgate-signers",
        json!({"metadata": {"labels": {"jitgate.dev/approvals": "true"}}}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("guard_crossed"),
        "{body}"
    );
    h.stop().await;
}

#[tokio::test]
async fn entries_in_the_signers_configmap_never_grant_even_if_it_carries_the_approvals_label() {
    let api = ApiServer::start().await;
    api.apply_approvals("jitgate-approvals", &[]);
    // Labelled so by someone who went around the webhook (its guard refuses it).
    api.apply(
        "jitgate-system",
        "jitgate-signers",
        &[("jitgate.dev/approvals", "true")],
        &[("grant", &entry(&[]))],
    );
    let h = Harness::start_cluster(&api, Duration::from_secs(300), |_| {}).await;
    eventually(PATIENCE, || async { h.readyz().await == StatusCode::OK }).await;
    for proto in [Proto::H1, Proto::H2] {
        let mut c = h.conn(proto).await;
        let answer = c.decide(&Req::secret_update().review()).await;
        assert_eq!(answer["allowed"], false, "{answer}");
    }
    h.stop().await;
}
