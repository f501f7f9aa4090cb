//! Mail through a real SMTP server: aiosmtpd (`support::smtp`), reached by the real server
//! (file mode: a request filed in the approvals file is mailed to the approvers) and by
//! `jitgate notify test`. STARTTLS and implicit TLS under the sink's own CA, AUTH, IPv6;
//! and what must not happen: a password sent to a relay whose certificate is not trusted,
//! or that offers no STARTTLS; a refused recipient keeping the others from their mail; a
//! wrong password tried again and again (one failed login, then the relay is left alone); a
//! relay that is down holding a notice for every recipient's tries. Without aiosmtpd's
//! Python, each test that needs it says so and passes.

use crate::support::smtp::{Relay, SmtpServer, Tls, ipv6_loopback};
use crate::support::*;
use jitgate::notices::Retry;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(30);
const USER: &str = "jitgate";
const PASSWORD: &str = "relay-password-7fb2";
const APPROVERS: [&str; 3] = ["ann@example.com", "refused@example.com", "carl@example.com"];
/// Quick retries, so that a test sees every attempt end.
const QUICK: Retry = Retry {
    tries: 3,
    first: Duration::from_millis(200),
    attempt: Duration::from_secs(10),
};

/// A notifications file with one mail sink `mail`, written `smtp`, trusting `ca` (PEM),
/// mailing new requests to `approvers`.
fn notifications(
    dir: &std::path::Path,
    smtp: &str,
    ca: Option<&str>,
    approvers: &[&str],
) -> std::path::PathBuf {
    let mut text = format!("sinks:\n  - name: mail\n    smtp: {{{smtp}}}\n");
    if let Some(pem) = ca {
        let path = dir.join("ca.pem");
        std::fs::write(&path, pem).unwrap();
        text.push_str(&format!("    ca: {}\n", path.display()));
    }
    text.push_str(&format!(
        "mail:\n  addresses: {{\"group:jitgate-approvers\": [{}]}}\n",
        approvers.join(", ")
    ));
    let path = dir.join("notifications.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A receiver with `tls` under `certs` that takes USER with PASSWORD; `None` when there is
/// no Python to run it (it said so).
fn login_relay(tls: Tls, certs: &Certs) -> Option<SmtpServer> {
    Relay {
        tls,
        certs: Some(certs),
        login: Some((USER, PASSWORD)),
        ..Relay::default()
    }
    .start()
}

/// The sink's `smtp:` fields for a relay at `host` and `port` (`tls:` as written),
/// logging in as USER with `password`.
fn login_sink(host: &str, port: u16, tls: &str, password: &str) -> String {
    format!(
        "host: {host}, port: {port}, tls: {tls}, username: {USER}, password: \"{password}\", from: jitgate@example.com"
    )
}

/// The sink's `smtp:` fields for `relay` with STARTTLS, logging in as USER with `password`.
fn starttls_sink(relay: &SmtpServer, password: &str) -> String {
    login_sink(relay.host, relay.port, "starttls", password)
}

/// The real server in file mode, notifying as the file at `path` says.
async fn serve(path: std::path::PathBuf, retry: Retry) -> Harness {
    let h = Harness::start_with(Some(&approvals_manifest(&[])), |cfg| {
        cfg.notifications = Some(path);
        cfg.notification_retry = retry;
    })
    .await;
    eventually(PATIENCE, || async { h.readyz().await == hyper::StatusCode::OK }).await;
    h
}

/// Files alice's request in the approvals file: news for the approvers.
fn file_a_request(h: &Harness) {
    h.write_approvals(&approvals_manifest(&[(
        "alice-db",
        &entry(&[("approvedBy: [bob@example.com]", "approvedBy: []")]),
    )]));
}

async fn mail_counter(h: &Harness, outcome: &str) -> f64 {
    counter(
        &scrape(h).await,
        &format!("jitgate_notifications_total{{sink=\"mail\",outcome=\"{outcome}\"}}"),
    )
}

/// `jitgate notify test` on the file at `path`, mailing `to`.
async fn notify_test(path: &std::path::Path, to: &str) -> (i32, String, String) {
    jitgate(&["notify", "test", "--config", path.to_str().unwrap(), "--to", to]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_mailed_over_starttls_logged_in_to_a_relay_trusted_through_the_sinks_ca() {
    let certs = Certs::new();
    let Some(relay) = login_relay(Tls::Starttls, &certs) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = notifications(
        dir.path(),
        &starttls_sink(&relay, PASSWORD),
        Some(&certs.ca_pem),
        &["approvers@example.com"],
    );
    let h = serve(path, Retry::default()).await;
    file_a_request(&h);
    eventually(PATIENCE, || async { !relay.all().is_empty() }).await;
    let mail = &relay.all()[0];
    assert_eq!(mail.to, ["approvers@example.com"]);
    assert_eq!(mail.from, "jitgate@example.com");
    assert!(mail.tls, "the mail was sent before STARTTLS");
    assert_eq!(mail.user.as_deref(), Some(USER));
    for want in [
        "Subject: [jitgate] user:alice@example.com asks for UPDATE prod/secrets/db-password",
        "To: approvers@example.com",
        "kubectl jitgate approve alice-db",
    ] {
        assert!(mail.text.contains(want), "{want:?} not in {}", mail.text);
    }
    let auths = relay.auths();
    assert!(
        !auths.is_empty() && auths.iter().all(|a| a.tls && a.ok),
        "{auths:?}"
    );
    eventually(PATIENCE, || async { mail_counter(&h, "sent").await == 1.0 }).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_test_over_starttls_with_a_login_says_the_relay_took_the_sample_and_it_did() {
    let certs = Certs::new();
    let Some(relay) = login_relay(Tls::Starttls, &certs) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = notifications(
        dir.path(),
        &starttls_sink(&relay, PASSWORD),
        Some(&certs.ca_pem),
        &[],
    );
    let (code, out, err) = notify_test(&path, "me@example.com").await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("mail: sent (250"), "{out}");
    let got = relay.to("me@example.com");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].tls && got[0].user.as_deref() == Some(USER), "{:?}", got[0]);
    assert!(got[0].text.contains("Subject: [jitgate] "), "{}", got[0].text);
    assert!(!out.contains(PASSWORD) && !err.contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_test_over_implicit_tls_delivers() {
    let certs = Certs::new();
    let Some(relay) = login_relay(Tls::Implicit, &certs) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sink = login_sink("localhost", relay.port, "tls", PASSWORD);
    let path = notifications(dir.path(), &sink, Some(&certs.ca_pem), &[]);
    let (code, out, err) = notify_test(&path, "me@example.com").await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("mail: sent (250"), "{out}");
    let got = relay.to("me@example.com");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].tls && got[0].user.as_deref() == Some(USER), "{:?}", got[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_certificate_another_ca_signed_gets_no_password_and_no_mail() {
    let certs = Certs::new();
    let Some(relay) = login_relay(Tls::Starttls, &certs) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let other_ca = Certs::new().ca_pem;
    let path = notifications(dir.path(), &starttls_sink(&relay, PASSWORD), Some(&other_ca), &[]);
    let (code, out, err) = notify_test(&path, "me@example.com").await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("mail: failed: "), "{out}");
    assert!(out.to_lowercase().contains("certificate"), "{out}");
    assert!(!out.contains(PASSWORD) && !err.contains(PASSWORD));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(relay.auths().is_empty(), "{:?}", relay.auths());
    assert!(relay.all().is_empty(), "{:?}", relay.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_offers_no_starttls_gets_no_password_and_no_mail() {
    // The relay offers AUTH in the clear: a client that went on without TLS would log in.
    let Some(relay) = (Relay {
        login: Some((USER, PASSWORD)),
        ..Relay::default()
    })
    .start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = notifications(dir.path(), &starttls_sink(&relay, PASSWORD), None, &[]);
    let (code, out, err) = notify_test(&path, "me@example.com").await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("mail: failed: "), "{out}");
    assert!(
        out.contains("STARTTLS"),
        "the person setting it up is told why: {out}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(relay.auths().is_empty(), "{:?}", relay.auths());
    assert!(relay.all().is_empty(), "{:?}", relay.all());
}

/// Run on one thread, so that the log capture sees the server's log lines too.
#[tokio::test]
async fn a_wrong_password_is_one_failed_login_and_the_relay_is_left_alone_while_the_secret_is_wrong() {
    let logs = LogCapture::start();
    let certs = Certs::new();
    let Some(relay) = login_relay(Tls::Starttls, &certs) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wrong = "not-the-relay-password";
    let path = notifications(
        dir.path(),
        &starttls_sink(&relay, wrong),
        Some(&certs.ca_pem),
        &["approvers@example.com", "second@example.com"],
    );
    let h = serve(path, QUICK).await;
    file_a_request(&h);
    // Two approvers to tell: the first mail's login is refused, the second is not tried.
    eventually(PATIENCE, || async { mail_counter(&h, "dropped").await >= 2.0 }).await;
    // Well past where a retry's pause would have ended: nothing more is tried.
    tokio::time::sleep(QUICK.first * 8).await;
    assert_eq!(mail_counter(&h, "dropped").await, 2.0);
    assert_eq!(
        mail_counter(&h, "retried").await,
        0.0,
        "a refused login is not retried"
    );
    assert_eq!(mail_counter(&h, "sent").await, 0.0);
    let auths = relay.auths();
    assert_eq!(
        auths.len(),
        1,
        "one failed login in all, so the relay locks out no one: {auths:?}"
    );
    assert!(
        auths
            .iter()
            .all(|a| a.tls && !a.ok && a.user.as_deref() == Some(USER))
    );
    assert!(relay.all().is_empty(), "{:?}", relay.all());
    // It goes on answering.
    let mut c = h.conn(Proto::H1).await;
    assert_eq!(c.decide(&Req::secret_update().review()).await["allowed"], false);
    assert_eq!(
        logs.count("notification dropped: the sink did not take it", "sink", "mail"),
        1
    );
    let dropped_line = logs
        .lines()
        .into_iter()
        .find(|l| l["message"] == "notification dropped: the sink did not take it")
        .unwrap();
    assert!(
        dropped_line["error"].as_str().unwrap().contains("535"),
        "{dropped_line}"
    );
    let untried = "notification dropped untried: the relay refused jitgate's login less than 5 minutes ago (check the sink's username and password)";
    assert_eq!(logs.count(untried, "sink", "mail"), 1);
    for line in logs.lines() {
        assert!(!line.to_string().contains(wrong), "{line}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_on_ipv6_loopback_is_reached_written_with_or_without_brackets() {
    if !ipv6_loopback() {
        println!("the IPv6 mail test did not run: this machine cannot listen on ::1");
        return;
    }
    let certs = Certs::new();
    let Some(relay) = (Relay {
        ipv6: true,
        tls: Tls::Starttls,
        certs: Some(&certs),
        login: Some((USER, PASSWORD)),
        ..Relay::default()
    })
    .start() else {
        return;
    };
    for (host, to) in [
        ("\"::1\"", "bare@example.com"),
        ("\"[::1]\"", "brackets@example.com"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let sink = login_sink(host, relay.port, "starttls", PASSWORD);
        let path = notifications(dir.path(), &sink, Some(&certs.ca_pem), &[]);
        let (code, out, err) = notify_test(&path, to).await;
        assert_eq!(code, 0, "host {host}: {out}{err}");
        assert!(out.starts_with("mail: sent (250"), "host {host}: {out}");
        let got = relay.to(to);
        assert_eq!(got.len(), 1, "host {host}: {got:#?}");
        assert!(got[0].tls, "host {host}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_recipient_keeps_no_other_from_the_mail_and_each_address_is_counted() {
    let Some(relay) = (Relay {
        refuse: &["refused@example.com"],
        ..Relay::default()
    })
    .start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sink = format!(
        "host: 127.0.0.1, port: {}, tls: none, from: jitgate@example.com",
        relay.port
    );
    let path = notifications(dir.path(), &sink, None, &APPROVERS);
    let h = serve(path, QUICK).await;
    file_a_request(&h);
    // The refused address's one attempt, then time for any other mail to arrive.
    eventually(PATIENCE, || async { mail_counter(&h, "dropped").await >= 1.0 }).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for address in ["ann@example.com", "carl@example.com"] {
        let got = relay.to(address);
        assert_eq!(got.len(), 1, "{address}: {got:#?}");
        // Each its own mail: no recipient learns the others' addresses.
        assert_eq!(got[0].to, [address]);
        assert!(
            got[0].text.contains(&format!("To: {address}\n")),
            "{}",
            got[0].text
        );
        assert!(
            got[0].text.contains("kubectl jitgate approve alice-db"),
            "{}",
            got[0].text
        );
    }
    assert!(relay.to("refused@example.com").is_empty());
    assert_eq!(relay.all().len(), 2, "{:#?}", relay.all());
    // Counted per address: two sent, one dropped at once (a 550 is for good: no retry).
    assert_eq!(mail_counter(&h, "sent").await, 2.0);
    assert_eq!(mail_counter(&h, "dropped").await, 1.0);
    assert_eq!(mail_counter(&h, "retried").await, 0.0);
    h.stop().await;
}

/// Run on one thread, so that the log capture sees the server's log lines too. Needs no
/// SMTP server: nothing listens where the sink points.
#[tokio::test]
async fn a_relay_that_is_down_holds_a_notice_for_one_recipients_tries_not_for_every_recipients() {
    let logs = LogCapture::start();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let sink = format!("host: 127.0.0.1, port: {port}, tls: none, from: jitgate@example.com");
    let path = notifications(dir.path(), &sink, None, &APPROVERS);
    let h = serve(path, QUICK).await;
    file_a_request(&h);
    eventually(PATIENCE, || async { mail_counter(&h, "dropped").await >= 3.0 }).await;
    // Well past where another recipient's retries would have ended.
    tokio::time::sleep(QUICK.first * 8).await;
    assert_eq!(mail_counter(&h, "dropped").await, 3.0);
    assert_eq!(
        mail_counter(&h, "retried").await,
        f64::from(QUICK.tries - 1),
        "only the first recipient's mail is tried again"
    );
    assert_eq!(mail_counter(&h, "sent").await, 0.0);
    let untried =
        "notification dropped untried: the sink did not take this notice's previous message after every try";
    assert_eq!(logs.count(untried, "sink", "mail"), 1);
    h.stop().await;
}
