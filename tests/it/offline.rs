//! Offline approval: keys made and entries signed with no network, signed entries carried
//! into the approvals file or the cluster, and the real server over TLS counting each
//! signature as an approval by its signer, or saying why it does not. Levels of approvers.

use crate::support::apiserver::ApiServer;
use crate::support::offline::{Signer, keys_new, offline, signers_manifest};
use crate::support::*;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(15);

/// File mode's cluster id, when serve is given no --cluster-id.
const LOCAL: &str = "local";

/// alice's pending request to update Secret prod/db-password.
fn pending() -> String {
    entry(&[("approvedBy: [bob@example.com]", "approvedBy: []")])
}

#[test]
fn keys_are_made_and_entries_signed_and_checked_with_no_network() {
    let dir = tempfile::tempdir().unwrap();
    let carol = keys_new(dir.path(), "carol");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&carol.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the private key is the signer's alone");
    }
    let pub_line = std::fs::read_to_string(dir.path().join("keys/carol.pub")).unwrap();
    assert_eq!(pub_line.trim(), format!("{} carol", carol.public));
    // Never overwrites a key.
    let again = offline(dir.path(), &["keys", "new", "--name", "carol", "--out", "keys"]);
    assert_eq!(again.code, 2);
    assert!(again.err.contains("already exists"), "{}", again.err);

    let signed = carol.sign_for(dir.path(), LOCAL, "jitgate-approvals/alice-db", &pending());
    assert!(signed.contains("signatures:\n- signer: \"carol\""), "{signed}");
    let signers = dir.path().join("signers.yaml");
    std::fs::write(
        &signers,
        signers_manifest(&[("carol", carol.entry("carol@example.com", "jitgate-approvers", ""))]),
    )
    .unwrap();
    let verify = |text: &str, id: &str| {
        let file = dir.path().join("check.yaml");
        std::fs::write(&file, text).unwrap();
        offline(
            dir.path(),
            &[
                "verify-entry",
                "-f",
                file.to_str().unwrap(),
                "--id",
                id,
                "--signers",
                signers.to_str().unwrap(),
                "--cluster-id",
                LOCAL,
            ],
        )
    };
    let ok = verify(&signed, "jitgate-approvals/alice-db");
    assert_eq!(ok.code, 0, "{}{}", ok.out, ok.err);
    assert!(
        ok.out.contains("carol: valid")
            && ok
                .out
                .contains("counts as carol@example.com in groups [jitgate-approvers]"),
        "{}",
        ok.out
    );
    // Another id, or a widened scope: the signature is worth nothing, and it says why.
    let other = verify(&signed, "jitgate-approvals/other");
    assert_eq!(other.code, 1);
    assert!(other.out.contains("does not verify"), "{}", other.out);
    let widened = verify(
        &signed.replace("name: \"db-password\"\n", ""),
        "jitgate-approvals/alice-db",
    );
    assert_eq!(widened.code, 1);
    assert!(widened.out.contains("does not verify"), "{}", widened.out);
}

/// The two-level variant of the shipped prod-secrets policy: a team lead and a security
/// officer.
fn two_level_policies() -> tempfile::TempDir {
    policies_with(|file, text| match file {
        "prod-secrets.yaml" => text.replace(
            "    approverGroups: [\"jitgate-approvers\"]",
            "    levels: [{ groups: [team-leads], count: 1 }, { groups: [security], count: 1 }]",
        ),
        _ => text,
    })
}

#[tokio::test]
async fn file_mode_counts_a_trusted_signature_and_says_why_others_count_for_nothing() {
    let keys = tempfile::tempdir().unwrap();
    let carol = keys_new(keys.path(), "carol");
    let alice = keys_new(keys.path(), "alice");
    let mallory = keys_new(keys.path(), "mallory");
    let olga = keys_new(keys.path(), "olga");
    let trusted = |with_carol: bool| {
        let mut entries = vec![
            ("alice", alice.entry("alice@example.com", "jitgate-approvers", "")),
            (
                "olga",
                olga.entry(
                    "olga@example.com",
                    "jitgate-approvers",
                    "notAfter: \"2026-01-01T00:00:00Z\"\n",
                ),
            ),
        ];
        if with_carol {
            entries.push((
                "carol",
                carol.entry("carol@example.com", "jitgate-approvers, security", ""),
            ));
        }
        signers_manifest(&entries)
    };
    let id = "jitgate-approvals/alice-db";
    let by_carol = carol.sign_for(keys.path(), LOCAL, id, &pending());
    let h = Harness::start_with(Some(&approvals_manifest(&[("alice-db", &by_carol)])), |cfg| {
        std::fs::write(&cfg.signers_file, trusted(true)).unwrap();
    })
    .await;
    let decide = |h: &Harness| {
        let addr = h.addr();
        let ca = h.certs.ca_pem.clone();
        async move {
            let mut out = Vec::new();
            for proto in [Proto::H1, Proto::H2] {
                let mut c = Conn::open(addr, &ca, proto).await.unwrap();
                out.push(c.decide(&Req::secret_update().review()).await);
            }
            out
        }
    };
    // Over HTTP/1.1 and HTTP/2 alike: allowed, or denied for this reason.
    let allowed = |answers: &[Value]| answers.iter().all(|a| a["allowed"] == true);
    let denied_for = |answers: &[Value], why: &str| {
        answers
            .iter()
            .all(|a| a["allowed"] == false && a["status"]["message"].as_str().unwrap_or("").contains(why))
    };
    let answers = decide(&h).await;
    assert!(allowed(&answers), "{answers:?}");
    // Each signature that grants nothing, and the words of the denial.
    let widened = by_carol.replace("name: \"db-password\"\n", "");
    let cases = [
        (
            alice.sign_for(keys.path(), LOCAL, id, &pending()),
            "the signature by \"alice\" is the requester's own",
        ),
        (
            mallory.sign_for(keys.path(), LOCAL, id, &pending()),
            "\"mallory\" is not a trusted signer",
        ),
        (widened, "the signature by \"carol\" does not verify"),
        (
            olga.sign_for(keys.path(), LOCAL, id, &pending()),
            "signer \"olga\"'s key expired at 2026-01-01T00:00:00Z",
        ),
    ];
    for (entry, why) in cases {
        h.write_approvals(&approvals_manifest(&[("alice-db", &entry)]));
        eventually(PATIENCE, || async { denied_for(&decide(&h).await, why) }).await;
    }
    // carol's signature counts again; then she is removed from the signers: at once, it
    // counts for nothing, and the denial says so.
    h.write_approvals(&approvals_manifest(&[("alice-db", &by_carol)]));
    eventually(PATIENCE, || async { allowed(&decide(&h).await) }).await;
    std::fs::write(h.dir.path().join("signers.yaml"), trusted(false)).unwrap();
    eventually(PATIENCE, || async {
        denied_for(&decide(&h).await, "\"carol\" is not a trusted signer")
    })
    .await;
    h.stop().await;

    // Two levels: bob approved online as a team lead; carol signs as security.
    let policies = two_level_policies();
    let lead = entry(&[(
        "approvedBy: [bob@example.com]",
        "approvedBy: [bob@example.com]\napprovedAs: {bob@example.com: [team-leads]}",
    )]);
    let dir = policies.path().to_path_buf();
    let h = Harness::start_with(Some(&approvals_manifest(&[("alice-db", &lead)])), |cfg| {
        cfg.policies_dir = dir;
        std::fs::write(&cfg.signers_file, trusted(true)).unwrap();
    })
    .await;
    let answers = decide(&h).await;
    assert!(
        denied_for(&answers, "still missing: 1 of security"),
        "{answers:?}"
    );
    h.write_approvals(&approvals_manifest(&[(
        "alice-db",
        &carol.sign_for(keys.path(), LOCAL, id, &lead),
    )]));
    eventually(PATIENCE, || async { allowed(&decide(&h).await) }).await;
    h.stop().await;
}

const ADMIN: (&str, &str, &[&str]) = ("admin-token", "admin@example.com", &["system:masters"]);
const ALICE: (&str, &str, &[&str]) = ("alice-token", "alice@example.com", &["dev"]);
const BOB: (&str, &str, &[&str]) = ("bob-token", "bob@example.com", &["team-leads"]);

/// PATCHes (merge) ConfigMap `name` in jitgate-system as `who`, through the API server.
async fn patch_as(
    api: &ApiServer,
    who: (&str, &str, &[&str]),
    name: &str,
    patch: Value,
) -> (StatusCode, Value) {
    let mut c = api.conn_as(who.0).await;
    let reply = c
        .send(
            Method::PATCH,
            &format!("/api/v1/namespaces/jitgate-system/configmaps/{name}"),
            Some("application/merge-patch+json"),
            patch.to_string().into_bytes(),
        )
        .await;
    (reply.status, reply.json())
}

#[tokio::test]
async fn in_a_cluster_a_signed_entry_carried_in_by_the_requester_lets_them_act() {
    let keys = tempfile::tempdir().unwrap();
    let carol = keys_new(keys.path(), "carol");
    let alice_key = keys_new(keys.path(), "alice");
    let olga = keys_new(keys.path(), "olga");
    let stranger = keys_new(keys.path(), "stranger");
    let policies = two_level_policies();
    let files: Vec<(&str, String)> = POLICY_FILES
        .iter()
        .map(|f| (*f, std::fs::read_to_string(policies.path().join(f)).unwrap()))
        .collect();
    let api = ApiServer::start().await;
    for (token, user, groups) in [ADMIN, ALICE, BOB] {
        api.add_user(token, user, groups);
    }
    api.apply_approvals("jitgate-approvals", &[]);
    let data: Vec<(&str, &str)> = files.iter().map(|(f, t)| (*f, t.as_str())).collect();
    api.apply("jitgate-system", "jitgate-policies", &[], &data);
    api.apply(
        "jitgate-system",
        "jitgate-signers",
        &[("jitgate.dev/signers", "true")],
        &[],
    );
    let dir = policies.path().to_path_buf();
    let h = Harness::start_cluster(&api, Duration::from_secs(300), |cfg| cfg.policies_dir = dir).await;
    api.admit_with(h.addr(), &h.certs.ca_pem);
    eventually(PATIENCE, || async { h.readyz().await == StatusCode::OK }).await;

    // A cluster admin trusts carol (security), alice, and olga (whose key has expired);
    // a malformed signer is refused; each change is a record naming the admin.
    let signer = |s: &Signer, user: &str, groups: &str, extra: &str| json!(s.entry(user, groups, extra));
    let (status, body) = patch_as(
        &api,
        ADMIN,
        "jitgate-signers",
        json!({"data": {"carol": signer(&carol, "carol@example.com", "security", ""),
            "alice": signer(&alice_key, "alice@example.com", "security", ""),
            "olga": signer(&olga, "olga@example.com", "security", "notAfter: \"2026-01-01T00:00:00Z\"\n")}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = patch_as(
        &api,
        ADMIN,
        "jitgate-signers",
        json!({"data": {"broken": "publicKey: rsa:nope\n"}}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["message"].as_str().unwrap().contains("signer_malformed"),
        "{body}"
    );
    let added: Vec<Value> = h
        .records()
        .into_iter()
        .filter(|r| r["event"] == "signer")
        .collect();
    assert_eq!(added.len(), 3, "{added:?}");
    assert!(
        added
            .iter()
            .all(|r| r["action"] == "added" && r["editor"] == "admin@example.com")
    );

    let run = api
        .jitgate_as(
            ALICE.0,
            &[
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
                "1h",
                "--reason",
                "INC-9: rotate",
            ],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.err);
    let key = run.requested_key();
    let run = api.jitgate_as(BOB.0, &["approve", &key]).await;
    assert_eq!(run.code, 0, "{}", run.err);
    let may_update = || async {
        let mut c = h.conn(Proto::H1).await;
        c.decide(&Req::secret_update().review()).await
    };
    let answer = may_update().await;
    assert_eq!(answer["allowed"], false);
    assert!(
        answer["status"]["message"]
            .as_str()
            .unwrap()
            .contains("still missing: 1 of security"),
        "{answer}"
    );

    // alice exports the entry; carol signs it on her own machine; alice imports it.
    let export = api.jitgate_as(ALICE.0, &["export", &key]).await;
    assert_eq!(export.code, 0, "{}", export.err);
    let exported = keys.path().join("exported.yaml");
    std::fs::write(&exported, &export.out).unwrap();
    let sign = |s: &Signer, file: &Path| {
        let run = offline(
            keys.path(),
            &[
                "sign",
                "--key",
                s.key.to_str().unwrap(),
                "-f",
                file.to_str().unwrap(),
            ],
        );
        assert_eq!(run.code, 0, "{}", run.err);
        let out = keys.path().join(format!("signed-{}.yaml", unique_uid()));
        std::fs::write(&out, &run.out).unwrap();
        out
    };
    // Refused by the ledger, each with its reason: her own signature, an expired key,
    // a key trusted under another name.
    for (s, why) in [
        (&alice_key, "is by whom the entry is for"),
        (&olga, "key expired at 2026-01-01T00:00:00Z"),
    ] {
        let run = api
            .jitgate_as(ALICE.0, &["import", "-f", sign(s, &exported).to_str().unwrap()])
            .await;
        assert_eq!(run.code, 1, "{}{}", run.out, run.err);
        assert!(run.err.contains(why), "{}", run.err);
    }
    let forged = std::fs::read_to_string(sign(&stranger, &exported))
        .unwrap()
        .replace("signer: \"stranger\"", "signer: \"carol\"");
    let forged_file = keys.path().join("forged.yaml");
    std::fs::write(&forged_file, forged).unwrap();
    let run = api
        .jitgate_as(ALICE.0, &["import", "-f", forged_file.to_str().unwrap()])
        .await;
    assert_eq!(run.code, 1, "{}{}", run.out, run.err);
    assert!(run.err.contains("is not \"carol\"'s trusted key"), "{}", run.err);

    let by_carol = sign(&carol, &exported);
    // Widened after signing, pasted straight into the ConfigMap: refused by the ledger.
    let signed_entry: Value = {
        let text = std::fs::read_to_string(&by_carol).unwrap();
        let start = text
            .find(&format!("  \"{key}\": |\n"))
            .or_else(|| text.find(&format!("  {key}: |\n")))
            .unwrap();
        let body: String = text[start..]
            .lines()
            .skip(1)
            .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
            .collect();
        json!(body)
    };
    let widened = signed_entry
        .as_str()
        .unwrap()
        .replace("name: \"db-password\"\n", "");
    let (status, body) = patch_as(
        &api,
        ALICE,
        "jitgate-approvals",
        json!({"data": {key.clone(): widened}}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["message"].as_str().unwrap().contains("signed_entry_changed"),
        "{body}"
    );

    let run = api
        .jitgate_as(ALICE.0, &["import", "-f", by_carol.to_str().unwrap()])
        .await;
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
    eventually(PATIENCE, || async { may_update().await["allowed"] == true }).await;
    let show = api.jitgate_as(BOB.0, &["show", &key]).await;
    assert!(
        show.out
            .contains("signed by: carol (valid: carol@example.com in security)"),
        "{}",
        show.out
    );
    assert!(
        show.out.contains("1 of team-leads: met; 1 of security: met"),
        "{}",
        show.out
    );
    let signed_record = h
        .records()
        .into_iter()
        .find(|r| r["event"] == "approval" && r["action"] == "signed")
        .expect("a record of the signature");
    assert_eq!(signed_record["signedBy"], json!(["carol@example.com"]));
    assert_eq!(signed_record["editor"], "alice@example.com");

    // The admin removes carol: at once, her signature counts for nothing.
    let (status, body) = patch_as(&api, ADMIN, "jitgate-signers", json!({"data": {"carol": null}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually(PATIENCE, || async {
        let a = may_update().await;
        a["allowed"] == false
            && a["status"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("\"carol\" is not a trusted signer")
    })
    .await;
    assert!(
        h.records()
            .iter()
            .any(|r| r["event"] == "signer" && r["action"] == "removed" && r["signer"] == "carol")
    );
    h.stop().await;
}

const APPROVER: (&str, &str, &[&str]) = ("bob-approver-token", "bob@example.com", &["jitgate-approvers"]);

/// A cluster with the shipped policies edited by `edit`, an empty jitgate-signers, and
/// jitgate admitting the edits of both; jitgate learns the cluster's id itself.
async fn signing_cluster(policies: &tempfile::TempDir) -> (ApiServer, Harness) {
    let api = ApiServer::start().await;
    for (token, user, groups) in [ADMIN, ALICE, APPROVER] {
        api.add_user(token, user, groups);
    }
    api.apply_approvals("jitgate-approvals", &[]);
    let files: Vec<(&str, String)> = POLICY_FILES
        .iter()
        .map(|f| (*f, std::fs::read_to_string(policies.path().join(f)).unwrap()))
        .collect();
    let data: Vec<(&str, &str)> = files.iter().map(|(f, t)| (*f, t.as_str())).collect();
    api.apply("jitgate-system", "jitgate-policies", &[], &data);
    api.apply("jitgate-system", "jitgate-signers", &[], &[]);
    let dir = policies.path().to_path_buf();
    let h = Harness::start_cluster(&api, Duration::from_secs(300), |cfg| cfg.policies_dir = dir).await;
    api.admit_with(h.addr(), &h.certs.ca_pem);
    eventually(PATIENCE, || async { h.readyz().await == StatusCode::OK }).await;
    (api, h)
}

/// The admin trusts `s` as `user` in jitgate-approvers; waits until jitgate does.
async fn trust(api: &ApiServer, h: &Harness, s: &Signer, user: &str) {
    let (status, body) = patch_as(
        api,
        ADMIN,
        "jitgate-signers",
        json!({"data": {s.name: s.entry(user, "jitgate-approvers", "")}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let state = &h.running.as_ref().unwrap().state;
    eventually(PATIENCE, || async {
        state.approvals.signers().get(s.name).is_some()
    })
    .await;
}

/// alice's update of Secret prod/db-password, over HTTP/1.1 and HTTP/2.
async fn answers(h: &Harness) -> Vec<Value> {
    let mut out = Vec::new();
    for proto in [Proto::H1, Proto::H2] {
        let mut c = h.conn(proto).await;
        out.push(c.decide(&Req::secret_update().review()).await);
    }
    out
}

fn all_denied_for(answers: &[Value], why: &str) -> bool {
    answers
        .iter()
        .all(|a| a["allowed"] == false && a["status"]["message"].as_str().unwrap_or("").contains(why))
}

#[tokio::test]
async fn an_entry_signed_for_another_cluster_is_refused_and_grants_nothing_here() {
    let keys = tempfile::tempdir().unwrap();
    let policies = policies_with(|_, text| text);
    let (api, h) = signing_cluster(&policies).await;
    let carol = keys_new(keys.path(), "carol");
    trust(&api, &h, &carol, "carol@example.com").await;
    let here = api.cluster_id();
    let id = "jitgate-approvals/alice-db";
    let pending = pending();
    let (status, body) = patch_as(
        &api,
        ALICE,
        "jitgate-approvals",
        json!({"data": {"alice-db": pending}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // carol signed it for cluster-a (where she meant it); alice pastes it here.
    let for_a = carol.sign_for(keys.path(), "cluster-a", id, &pending);
    let (status, body) = patch_as(
        &api,
        ALICE,
        "jitgate-approvals",
        json!({"data": {"alice-db": for_a}}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("signature_invalid")
            && message.contains(&format!(
                "was made for cluster \"cluster-a\", and this is cluster \"{here}\""
            )),
        "{body}"
    );
    // Rewriting the cluster beside the signature does not make it this cluster's.
    let relabelled = for_a.replace("cluster: \"cluster-a\"", &format!("cluster: {here:?}"));
    let (status, body) = patch_as(
        &api,
        ALICE,
        "jitgate-approvals",
        json!({"data": {"alice-db": relabelled}}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("does not verify"),
        "{body}"
    );
    // The denial tells alice what her signer needs for this cluster.
    let denied = answers(&h).await;
    assert!(
        all_denied_for(
            &denied,
            &format!("jitgate sign --cluster-id {here} --namespace jitgate-system")
        ),
        "{denied:?}"
    );
    // Signed for this cluster, the same signature grants.
    let for_here = carol.sign_for(keys.path(), &here, id, &pending);
    let (status, body) = patch_as(
        &api,
        ALICE,
        "jitgate-approvals",
        json!({"data": {"alice-db": for_here}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually(PATIENCE, || async {
        answers(&h).await.iter().all(|a| a["allowed"] == true)
    })
    .await;
    h.stop().await;

    // In file mode, an entry signed for cluster-a grants nothing either, and says why.
    let for_a = carol.sign_for(keys.path(), "cluster-a", id, &pending);
    let h = Harness::start_with(Some(&approvals_manifest(&[("alice-db", &for_a)])), |cfg| {
        std::fs::write(
            &cfg.signers_file,
            signers_manifest(&[("carol", carol.entry("carol@example.com", "jitgate-approvers", ""))]),
        )
        .unwrap();
    })
    .await;
    let denied = answers(&h).await;
    assert!(
        all_denied_for(
            &denied,
            "was made for cluster \"cluster-a\", and this is cluster \"local\""
        ),
        "{denied:?}"
    );
    h.stop().await;
    // Served as cluster-a (serve --cluster-id cluster-a), it grants.
    let h = Harness::start_with(Some(&approvals_manifest(&[("alice-db", &for_a)])), |cfg| {
        cfg.cluster_id = Some("cluster-a".into());
        std::fs::write(
            &cfg.signers_file,
            signers_manifest(&[("carol", carol.entry("carol@example.com", "jitgate-approvers", ""))]),
        )
        .unwrap();
    })
    .await;
    let granted = answers(&h).await;
    assert!(granted.iter().all(|a| a["allowed"] == true), "{granted:?}");
    h.stop().await;
}

#[tokio::test]
async fn a_signed_for_entry_grants_nothing_after_its_not_after_and_cannot_be_pasted_again() {
    let keys = tempfile::tempdir().unwrap();
    let policies = policies_with(|_, text| text);
    let (api, h) = signing_cluster(&policies).await;
    let carol = keys_new(keys.path(), "carol");
    trust(&api, &h, &carol, "carol@example.com").await;
    let here = api.cluster_id();
    // A for: entry under a key with no minute stamp, which requestTTL never reaches.
    let pending = "user: alice@example.com\nresource: secrets\nnamespace: prod\nname: db-password\noperations: [UPDATE]\nfor: 1h\nreason: \"INC-1: rotate\"\napprovedBy: []\n";
    let (status, body) = patch_as(
        &api,
        ALICE,
        "jitgate-approvals",
        json!({"data": {"alice-db": pending}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let export = api.jitgate_as(ALICE.0, &["export", "alice-db"]).await;
    assert_eq!(export.code, 0, "{}", export.err);
    assert!(
        export.out.contains(&format!("jitgate.dev/cluster-id: {here:?}")),
        "{}",
        export.out
    );
    let exported = keys.path().join("exported.yaml");
    std::fs::write(&exported, &export.out).unwrap();
    // carol signs it to count for a few seconds only, learning the cluster from the file.
    let run = offline(
        keys.path(),
        &[
            "sign",
            "--key",
            carol.key.to_str().unwrap(),
            "-f",
            exported.to_str().unwrap(),
            "--not-after",
            "3s",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.err);
    assert!(
        run.err
            .contains(&format!("for cluster {here:?}, namespace \"jitgate-system\"")),
        "{}",
        run.err
    );
    let signed = keys.path().join("signed.yaml");
    std::fs::write(&signed, &run.out).unwrap();
    let import = api
        .jitgate_as(ALICE.0, &["import", "-f", signed.to_str().unwrap()])
        .await;
    assert_eq!(import.code, 0, "{}{}", import.out, import.err);
    eventually(PATIENCE, || async {
        answers(&h).await.iter().all(|a| a["allowed"] == true)
    })
    .await;
    // Past its notAfter, whatever approvedAt says: nothing, and the denial says why.
    eventually(PATIENCE, || async {
        all_denied_for(&answers(&h).await, "was good until")
    })
    .await;
    // Deleted and pasted again, its clock would start anew: the ledger refuses it.
    let (status, body) = patch_as(
        &api,
        ALICE,
        "jitgate-approvals",
        json!({"data": {"alice-db": null}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = patch_as(
        &api,
        ALICE,
        "jitgate-approvals",
        json!({"data": {"alice-db": pending}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let again = api
        .jitgate_as(ALICE.0, &["import", "-f", signed.to_str().unwrap()])
        .await;
    assert_eq!(again.code, 1, "{}{}", again.out, again.err);
    assert!(
        again.err.contains("signature_invalid") && again.err.contains("was good until"),
        "{}",
        again.err
    );
    let denied = answers(&h).await;
    assert!(denied.iter().all(|a| a["allowed"] == false), "{denied:?}");
    h.stop().await;
}

#[tokio::test]
async fn a_person_who_approves_online_and_signs_offline_counts_once() {
    let keys = tempfile::tempdir().unwrap();
    let policies = policies_with(|file, text| match file {
        "prod-secrets.yaml" => text.replace("minApprovers: 1", "minApprovers: 2"),
        _ => text,
    });
    let (api, h) = signing_cluster(&policies).await;
    let laptop = keys_new(keys.path(), "bob-laptop");
    // A signer entry that does not say whose it is: refused, it would count as a second
    // person named bob-laptop.
    let (status, body) = patch_as(
        &api,
        ADMIN,
        "jitgate-signers",
        json!({"data": {"bob-laptop": format!("publicKey: {}\ngroups: [jitgate-approvers]\n", laptop.public)}}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("user is missing"),
        "{body}"
    );
    trust(&api, &h, &laptop, "bob@example.com").await;
    // bob approves online, then signs the same entry offline as bob-laptop.
    let run = api
        .jitgate_as(
            ALICE.0,
            &[
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
                "1h",
                "--reason",
                "INC-9: rotate",
            ],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.err);
    let key = run.requested_key();
    let run = api.jitgate_as(APPROVER.0, &["approve", &key]).await;
    assert_eq!(run.code, 0, "{}", run.err);
    let export = api.jitgate_as(ALICE.0, &["export", &key]).await;
    assert_eq!(export.code, 0, "{}", export.err);
    let exported = keys.path().join("exported.yaml");
    std::fs::write(&exported, &export.out).unwrap();
    let run = offline(
        keys.path(),
        &[
            "sign",
            "--key",
            laptop.key.to_str().unwrap(),
            "-f",
            exported.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.err);
    let signed = keys.path().join("signed.yaml");
    std::fs::write(&signed, &run.out).unwrap();
    let import = api
        .jitgate_as(ALICE.0, &["import", "-f", signed.to_str().unwrap()])
        .await;
    // The ledger takes the signature; bob is still one approver of the two.
    assert_eq!(import.code, 0, "{}{}", import.out, import.err);
    let state = &h.running.as_ref().unwrap().state;
    eventually(PATIENCE, || async {
        state
            .approvals
            .current()
            .is_some_and(|s| s.approvals.iter().any(|a| !a.rare.signatures.is_empty()))
    })
    .await;
    let denied = answers(&h).await;
    assert!(
        all_denied_for(&denied, "has 1 of the 2 approvers it needs"),
        "{denied:?}"
    );
    h.stop().await;
}

/// When approvals load, their signatures are verified many at a time: an entry altered after
/// it was signed is refused wherever it stands among hundreds of good ones, and spoils none
/// of them (each answer over HTTP/1.1 and HTTP/2, through the server).
#[tokio::test]
async fn among_many_signed_entries_verified_together_only_the_altered_ones_grant_nothing() {
    use jitgate::signing::{Binding, PrivateKey, sign};
    let carol = PrivateKey::generate().unwrap().0;
    let binding = Binding {
        cluster: LOCAL.into(),
        namespace: "jitgate-system".into(),
    };
    let n = 300;
    // Widened after they were signed: no longer limited to the Secret db-password.
    let altered = [0, 5, 127, 128, 299];
    let user = |i: usize| format!("user-{i}@example.com");
    let entries: Vec<(String, String)> = (0..n)
        .map(|i| {
            let key = format!("e{i}");
            let text = pending().replace("alice@example.com", &user(i));
            let mut a = jitgate::approvals::parse_entry(&format!("jitgate-approvals/{key}"), &text).unwrap();
            let s = sign(&a.terms(), &binding, "carol", &carol, None);
            a.rare.make_mut().signatures.push(s);
            let mut signed = a.to_yaml();
            if altered.contains(&i) {
                assert!(signed.contains("name: \"db-password\"\n"), "{signed}");
                signed = signed.replace("name: \"db-password\"\n", "");
            }
            (key, signed)
        })
        .collect();
    let entries: Vec<(&str, &str)> = entries.iter().map(|(k, t)| (&**k, &**t)).collect();
    let signers = signers_manifest(&[(
        "carol",
        format!(
            "publicKey: {}\nuser: carol@example.com\ngroups: [jitgate-approvers]\n",
            carol.public()
        ),
    )]);
    let h = Harness::start_with(Some(&approvals_manifest(&entries)), |cfg| {
        std::fs::write(&cfg.signers_file, &signers).unwrap();
    })
    .await;
    for i in [0, 1, 4, 5, 6, 126, 127, 128, 129, 200, 298, 299] {
        for proto in [Proto::H1, Proto::H2] {
            let mut c = Conn::open(h.addr(), &h.certs.ca_pem, proto).await.unwrap();
            let mut req = Req::secret_update();
            req.user = user(i);
            let answer = c.decide(&req.review()).await;
            if altered.contains(&i) {
                assert_eq!(answer["allowed"], false, "altered entry {i}: {answer}");
                assert_signature_refused(&answer, "carol");
            } else {
                assert_eq!(answer["allowed"], true, "entry {i}: {answer}");
            }
        }
    }
    h.stop().await;
}

/// What a trusted signer's own key could be made to do past a batch. `R` written as the
/// identity in a non-canonical form (y = p + 1) with s = h·a satisfies the batch equation
/// and fails one-by-one verification, which compares `R`'s bytes: the entry so signed is
/// refused, and the honest entries verified beside it grant. And a key with a small-order
/// part is not trusted at all (with one, signatures verifiers disagree on are easy).
#[tokio::test]
async fn a_signers_key_cannot_sign_past_a_batch_what_one_by_one_verification_refuses() {
    use crate::support::offline::by_hand;
    use base64::Engine;
    use jitgate::signing::{Binding, PublicKey, Signature, canonical};
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let (a, public) = by_hand::key([7; 32]);
    let key = PublicKey::parse(&format!("ed25519:{}", b64(&public))).unwrap();
    let binding = Binding {
        cluster: LOCAL.into(),
        namespace: "jitgate-system".into(),
    };
    let mut p_plus_1 = [0xff; 32];
    p_plus_1[0] = 0xee;
    p_plus_1[31] = 0x7f;
    let user = |i: usize| format!("user-{i}@example.com");
    let crafted = 3;
    let entries: Vec<(String, String)> = (0..8)
        .map(|i| {
            let key_name = format!("e{i}");
            let text = pending().replace("alice@example.com", &user(i));
            let mut e =
                jitgate::approvals::parse_entry(&format!("jitgate-approvals/{key_name}"), &text).unwrap();
            let message = canonical(&e.terms(), &binding, None);
            let value = if i == crafted {
                by_hand::sign(
                    (a, public),
                    curve25519_dalek::Scalar::ZERO,
                    Some(p_plus_1),
                    &message,
                )
            } else {
                by_hand::sign(
                    (a, public),
                    curve25519_dalek::Scalar::from(1000 + i as u64),
                    None,
                    &message,
                )
            };
            e.rare.make_mut().signatures.push(Signature {
                signer: "mallet".into(),
                key: key.fingerprint().into(),
                cluster: Some(binding.cluster.as_str().into()),
                namespace: Some(binding.namespace.as_str().into()),
                not_after: None,
                value: value.try_into().expect("64 bytes"),
            });
            (key_name, e.to_yaml())
        })
        .collect();
    let entries: Vec<(&str, &str)> = entries.iter().map(|(k, t)| (&**k, &**t)).collect();
    let trusting = |public: &[u8]| {
        signers_manifest(&[(
            "mallet",
            format!(
                "publicKey: ed25519:{}\nuser: mallet@example.com\ngroups: [jitgate-approvers]\n",
                b64(public)
            ),
        )])
    };
    let signers = trusting(&public);
    let h = Harness::start_with(Some(&approvals_manifest(&entries)), |cfg| {
        std::fs::write(&cfg.signers_file, &signers).unwrap();
    })
    .await;
    let ask = |i: usize| {
        let (addr, ca) = (h.addr(), h.certs.ca_pem.clone());
        async move {
            let mut out = Vec::new();
            for proto in [Proto::H1, Proto::H2] {
                let mut c = Conn::open(addr, &ca, proto).await.unwrap();
                let mut req = Req::secret_update();
                req.user = user(i);
                out.push(c.decide(&req.review()).await);
            }
            out
        }
    };
    for i in 0..8 {
        for answer in ask(i).await {
            if i == crafted {
                assert_eq!(answer["allowed"], false, "{answer}");
                assert_signature_refused(&answer, "mallet");
            } else {
                assert_eq!(answer["allowed"], true, "entry {i}: {answer}");
            }
        }
    }
    // The same key with the point of order two added: mallet is no longer trusted, and
    // none of the signatures counts.
    let mut order_two = [0xff; 32];
    order_two[0] = 0xec;
    order_two[31] = 0x7f;
    let two = curve25519_dalek::edwards::CompressedEdwardsY(order_two)
        .decompress()
        .unwrap();
    let mixed = (curve25519_dalek::edwards::CompressedEdwardsY(public)
        .decompress()
        .unwrap()
        + two)
        .compress();
    std::fs::write(h.dir.path().join("signers.yaml"), trusting(mixed.as_bytes())).unwrap();
    eventually(PATIENCE, || async {
        ask(0).await.iter().all(|a| {
            a["allowed"] == false
                && a["status"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("\"mallet\" is not a trusted signer")
        })
    })
    .await;
    h.stop().await;
}

/// `answer` names `signer`'s signature as one that does not verify.
fn assert_signature_refused(answer: &serde_json::Value, signer: &str) {
    let why = answer["status"]["message"].as_str().unwrap_or("");
    assert!(
        why.contains(&format!("the signature by \"{signer}\" does not verify")),
        "{why}"
    );
}
