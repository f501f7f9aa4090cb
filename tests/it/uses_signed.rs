//! A signed `for:` entry's `maxUses` never comes back (found by the adversarial review
//! after issue 25).
//!
//! The holder of a signed `for:` entry (its requester) may revoke it and paste it again
//! until the signature's notAfter, which `jitgate sign` sets by default to requestTTL (24 h)
//! plus the entry's `for:` after signing; each paste is stamped a new approvedAt, so a new
//! expiry. The use count of the id is collected [`KEEP`] (1 h) after the latest expiry it
//! saw, by whichever spend next writes jitgate-usage (anyone's), so a paste made after
//! that finds a fresh count. `for: 1h` with `maxUses: 1`, signed with the default
//! notAfter, gives about twelve uses in its 25 h, not one. The threat model says of a
//! copy of a signed entry: "nothing beyond its maxUses (counted by id, never reset)".
//! The record is now kept until an hour after the latest notAfter of the entry's
//! signatures too.
//!
//! Driven through jitgate's own UseCounts in cluster mode (the test API server's
//! jitgate-usage), with the times of the story given, as the server gives them.

use crate::support::apiserver::ApiServer;
use jiff::{SignedDuration, Timestamp};
use jitgate::approvals::parse_entry;
use jitgate::usage::{UsageError, UseCounts, Used};

fn alice_for_entry(approved_at: Timestamp) -> jitgate::approvals::Approval {
    // As the ledger stamps it when the signed entry is pasted: the signature's notAfter
    // is what `jitgate sign` sets by default, 25 h after signing (the count does not
    // verify the signature; the ledger and the decision do).
    let not_after = t0() + SignedDuration::from_hours(25);
    let signature = "A".repeat(86) + "==";
    let text = format!(
        "user: alice@example.com\nresource: secrets\nnamespace: prod\nname: db-password\noperations: [UPDATE]\nfor: 1h\nmaxUses: 1\napprovedAt: \"{approved_at}\"\nreason: \"INC-1: rotate\"\napprovedBy: []\nsignatures:\n- signer: bob\n  key: \"SHA256:bob\"\n  cluster: local\n  namespace: jitgate-system\n  notAfter: \"{not_after}\"\n  signature: \"{signature}\"\n"
    );
    parse_entry("jitgate-approvals/alice-db", &text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_for_entry_pasted_again_before_its_not_after_never_gets_its_spent_use_back() {
    let api = ApiServer::start().await;
    api.apply("jitgate-system", "jitgate-usage", &[], &[]);
    let config = jitgate::sync::cluster::client_config(Some(&api.kubeconfig()))
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let usage = UseCounts::in_cluster(
        kube::Api::namespaced(client, "jitgate-system"),
        "jitgate-usage".into(),
    );
    let t0: Timestamp = t0();
    let at = |h: i64, m: i64| t0 + SignedDuration::from_hours(h) + SignedDuration::from_mins(m);

    // Pasted at t0, used once.
    let first = alice_for_entry(t0);
    assert_eq!(first.max_uses.map(|n| n.get()), Some(1));
    assert_eq!(usage.spend(&first, "u1", at(0, 1), false).await, Ok(Used::Now(1)));
    assert_eq!(
        usage.spend(&first, "u2", at(0, 2), false).await,
        Err(UsageError::Exhausted(1))
    );

    // Someone else's maxUses approval is used a little over two hours later (any spend
    // writes jitgate-usage and collects what is past its keep window).
    let other = parse_entry(
        "jitgate-approvals/carol-web",
        "user: carol@example.com\nresource: secrets\nnamespace: prod\nmaxUses: 5\nexpiresAt: \"2099-01-01T00:00:00Z\"\nreason: r\napprovedBy: [bob]\n",
    )
    .unwrap();
    assert!(usage.spend(&other, "c1", at(2, 1), false).await.is_ok());

    // alice revoked her entry and pastes the same signed text again, well before the
    // signature's default notAfter (t0 + 25 h): the ledger stamps approvedAt anew.
    let again = alice_for_entry(at(2, 2));
    assert_eq!(again.id, first.id);
    assert_eq!(
        usage.spend(&again, "u3", at(2, 3), false).await,
        Err(UsageError::Exhausted(1)),
        "the id's single use, spent at t0, came back on the re-paste"
    );
    // Still spent a day later, while the signature could still be pasted.
    let late = alice_for_entry(at(23, 0));
    assert_eq!(
        usage.spend(&late, "u4", at(23, 1), false).await,
        Err(UsageError::Exhausted(1))
    );
}

/// When the story starts, to the second (the entry's notAfter is counted from it).
fn t0() -> Timestamp {
    static T0: std::sync::OnceLock<Timestamp> = std::sync::OnceLock::new();
    *T0.get_or_init(|| Timestamp::now().round(jiff::Unit::Second).unwrap())
}
