//! `GET /metrics`: every metric moves as the gate is driven.

use crate::support;

use crate::support::*;

/// The value of the series `name` (with exactly these labels, in the order exposed).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn scrape(h: &Harness) -> String {
    let mut c = h.conn(Proto::H1).await;
    let reply = c.send(hyper::Method::GET, "/metrics", None, Vec::new()).await;
    assert_eq!(reply.status, 200);
    String::from_utf8(reply.body).unwrap()
}

#[tokio::test]
async fn decisions_latency_approvals_freshness_and_certificate_expiry_are_exposed() {
    let h = Harness::start(&approvals_manifest(&[("grant", &entry(&[]))])).await;
    let before = scrape(&h).await;
    assert_eq!(value(&before, "jitgate_approvals{state=\"active\"}"), Some(1.0));
    assert_eq!(value(&before, "jitgate_approvals{state=\"pending\"}"), Some(0.0));
    let age = value(&before, "jitgate_approvals_sync_age_seconds").unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");
    let expiry = value(&before, "jitgate_serving_certificate_expiry_seconds").unwrap();
    assert!(
        expiry > 3600.0,
        "rcgen's default validity runs for years: {expiry}"
    );

    let mut c = h.conn(Proto::H1).await;
    c.decide(&Req::secret_update().review()).await;
    c.decide(&Req::secret_update().with(|r| r.user = "bob".into()).review())
        .await;
    c.decide(&Req::secret_update().with(|r| r.user = "bob".into()).review())
        .await;
    c.send(
        hyper::Method::POST,
        "/validate",
        Some("application/json"),
        b"{".to_vec(),
    )
    .await;
    let after = scrape(&h).await;
    let allow = "jitgate_decisions_total{review=\"admission\",decision=\"allow\",reason=\"approved\",policy=\"prod-secrets\"}";
    let deny = "jitgate_decisions_total{review=\"admission\",decision=\"deny\",reason=\"no_approval\",policy=\"prod-secrets\"}";
    let bad =
        "jitgate_decisions_total{review=\"admission\",decision=\"deny\",reason=\"bad_request\",policy=\"\"}";
    assert_eq!(value(&after, allow), Some(1.0), "{after}");
    assert_eq!(value(&after, deny), Some(2.0));
    assert_eq!(value(&after, bad), Some(1.0));
    assert_eq!(
        value(&after, "jitgate_decision_duration_seconds_count"),
        Some(4.0)
    );
    assert_eq!(value(&after, "jitgate_audit_errors_total"), Some(0.0));
    assert_eq!(value(&before, "jitgate_audit_sequence"), Some(0.0));
    assert_eq!(
        value(&after, "jitgate_audit_sequence"),
        Some(4.0),
        "four records written"
    );

    // A pending request, an expired approval and a refused entry are counted as such.
    h.write_approvals(&approvals_manifest(&[
        ("pending", &entry(&[("[bob@example.com]", "[]")])),
        ("expired", &expiring(-5, &[])),
        ("broken", "user: alice\ncolour: blue\n"),
    ]));
    eventually(std::time::Duration::from_secs(10), || async {
        let text = scrape(&h).await;
        value(&text, "jitgate_approvals{state=\"pending\"}") == Some(1.0)
            && value(&text, "jitgate_approvals{state=\"expired\"}") == Some(1.0)
            && value(&text, "jitgate_approvals{state=\"invalid\"}") == Some(1.0)
            && value(&text, "jitgate_approvals{state=\"active\"}") == Some(0.0)
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn audit_errors_are_counted() {
    let h = Harness::start_with(Some(&approvals_manifest(&[])), |cfg| {
        cfg.audit_log = Some("/dev/full".into())
    })
    .await;
    let mut c = h.conn(Proto::H1).await;
    c.decide(&Req::secret_update().review()).await;
    c.decide(&Req::secret_update().review()).await;
    let text = scrape(&h).await;
    assert_eq!(value(&text, "jitgate_audit_errors_total"), Some(2.0));
    assert_eq!(
        value(&text, "jitgate_audit_sequence"),
        Some(0.0),
        "nothing was written"
    );
    h.stop().await;
}

#[tokio::test]
async fn certificate_expiry_follows_a_rotated_certificate() {
    let h = Harness::start(&approvals_manifest(&[])).await;
    let before = value(&scrape(&h).await, "jitgate_serving_certificate_expiry_seconds").unwrap();
    assert!(before > 365.0 * 86400.0, "{before}");
    // A 30-day certificate replaces it (from a new CA, so the client trusts that one).
    let fresh = tempfile::tempdir().unwrap();
    let generated = jitgate::tls::write_pair(fresh.path(), &["localhost", "127.0.0.1"], 30, false).unwrap();
    let ca = generated.ca_pem;
    for file in ["tls.key", "tls.crt"] {
        std::fs::copy(fresh.path().join(file), h.dir.path().join(file)).unwrap();
    }
    let addr = h.addr();
    eventually(std::time::Duration::from_secs(10), || {
        let ca = ca.clone();
        async move {
            let Ok(mut c) = Conn::open(addr, &ca, Proto::H1).await else {
                return false;
            };
            let reply = c.send(hyper::Method::GET, "/metrics", None, Vec::new()).await;
            let text = String::from_utf8(reply.body).unwrap();
            value(&text, "jitgate_serving_certificate_expiry_seconds")
                .is_some_and(|s| (29.0 * 86400.0..=30.0 * 86400.0).contains(&s))
        }
    })
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_age_grows_while_the_api_server_is_silent_and_resets_when_it_returns() {
    let mut api = support::apiserver::ApiServer::start().await;
    api.apply_approvals("jitgate-approvals", &[]);
    let h = Harness::start_cluster(&api, std::time::Duration::from_secs(300), |_| {}).await;
    let age = |text: &str| value(text, "jitgate_approvals_sync_age_seconds").unwrap();
    // Ready: the approvals came from this API server, so the age measures it.
    eventually(std::time::Duration::from_secs(10), || async {
        h.readyz().await == hyper::StatusCode::OK
    })
    .await;
    eventually(std::time::Duration::from_secs(10), || async {
        age(&scrape(&h).await) < 1.0
    })
    .await;
    api.down().await;
    eventually(std::time::Duration::from_secs(20), || async {
        age(&scrape(&h).await) > 2.0
    })
    .await;
    api.up().await;
    eventually(std::time::Duration::from_secs(30), || async {
        age(&scrape(&h).await) < 1.0
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn pending_requests_by_age_and_approvals_about_to_expire_are_exposed() {
    let two_hours_ago = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2))
        .strftime("%Y%m%d%H%M")
        .to_string();
    let waiting_key = format!("alice-prod-secrets-{two_hours_ago}");
    let pending = entry(&[("approvedBy: [bob@example.com]", "approvedBy: []")]);
    let soon = expiring(5, &[("db-password", "other")]);
    let h = Harness::start(&approvals_manifest(&[
        (&waiting_key, &pending),
        ("unstamped", &pending),
        ("soon", &soon),
        ("later", &entry(&[("db-password", "third")])),
    ]))
    .await;
    let text = scrape(&h).await;
    assert_eq!(
        value(&text, "jitgate_pending_requests{age=\"1h_to_8h\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "jitgate_pending_requests{age=\"unknown\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "jitgate_pending_requests{age=\"under_1h\"}"),
        Some(0.0)
    );
    assert_eq!(
        value(&text, "jitgate_approvals_expiring_soon"),
        Some(1.0),
        "within the 10 minutes' lead"
    );
    h.stop().await;
}
