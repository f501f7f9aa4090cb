//! The notifications file: what is accepted, and errors that name the sink and the field
//! without quoting a credential.

use super::*;

const GOOD: &str = r#"
sinks:
  - name: security-chat
    chat: {url: "https://mattermost.internal/hooks/xyz-secret-hook"}
  - name: ops-matrix
    matrix: {homeserver: "https://matrix.internal/", room: "!abc:internal", token: "syt_secret_token"}
  - name: siem
    webhook: {url: "https://collector.internal/jitgate", secret: "0123456789abcdef0123456789abcdef"}
    ca: /etc/jitgate/ca.pem
  - name: mail
    smtp: {host: relay.internal, port: 587, tls: starttls, username: jitgate, password: "mail-secret", from: jitgate@corp}
routes:
  - sinks: [security-chat]
    policies: [prod-secrets]
    reasons: [RequestFiled, BreakGlassUsed]
mail:
  requester: true
  approvers: false
  addresses: {alice: alice@corp, "group:security-approvers": [sec-team@corp, sec-lead@corp]}
"#;

fn sink_error(text: &str) -> (String, &'static str, String) {
    match parse(text) {
        Err(ConfigError::Sink { sink, field, problem }) => (sink, field, problem),
        other => panic!("expected a sink error, got {other:?}"),
    }
}

#[test]
fn a_full_file_is_read_with_every_kind_of_sink() {
    let c = parse(GOOD).unwrap();
    let kinds: Vec<&str> = c.sinks.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds, ["chat", "matrix", "webhook", "smtp"]);
    let Kind::Matrix { homeserver, .. } = &c.sinks[1].kind else {
        panic!()
    };
    assert_eq!(homeserver, "https://matrix.internal");
    assert_eq!(c.sinks[2].ca.as_deref(), Some(Path::new("/etc/jitgate/ca.pem")));
    assert_eq!(c.routes[0].reasons, ["RequestFiled", "BreakGlassUsed"]);
    assert!(!c.mail.approvers);
    assert_eq!(c.mail.addresses["alice"], ["alice@corp"]);
    assert_eq!(c.mail.addresses["group:security-approvers"].len(), 2);
}

#[test]
fn no_credential_shows_in_the_debug_form() {
    let shown = format!("{:?}", parse(GOOD).unwrap());
    for secret in [
        "xyz-secret-hook",
        "syt_secret_token",
        "hmac-secret",
        "mail-secret",
        "collector.internal/jitgate",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

#[test]
fn an_unknown_key_is_refused_and_named() {
    let err =
        parse("sinks:\n  - name: a\n    chat: {url: \"https://x.internal/h\", channel: ops}\n").unwrap_err();
    assert!(err.to_string().contains("channel"), "{err}");
    let err = parse("sink: []\n").unwrap_err();
    assert!(err.to_string().contains("sink"), "{err}");
}

#[test]
fn a_bad_url_names_the_sink_and_the_field_and_never_quotes_the_url() {
    let (sink, field, problem) =
        sink_error("sinks:\n  - name: chat1\n    chat: {url: \"ftp://hooks.internal/secret-path\"}\n");
    assert_eq!((sink.as_str(), field), ("chat1", "chat.url"));
    assert!(!problem.contains("secret-path"));
    let err = parse("sinks:\n  - name: chat1\n    chat: {url: \"not a url secret-path\"}\n").unwrap_err();
    assert!(!err.to_string().contains("secret-path"), "{err}");
    assert!(
        err.to_string().contains("chat1") && err.to_string().contains("chat.url"),
        "{err}"
    );
}

#[test]
fn plain_http_is_only_for_loopback() {
    let (_, field, problem) =
        sink_error("sinks:\n  - name: w\n    webhook: {url: \"http://collector.internal/x\", secret: s}\n");
    assert_eq!(field, "webhook.url");
    assert!(problem.contains("https"), "{problem}");
    assert!(
        parse("sinks:\n  - name: w\n    webhook: {url: \"http://127.0.0.1:9000/x\", secret: 0123456789abcdef0123456789abcdef}\n").is_ok()
    );
}

#[test]
fn a_missing_token_or_secret_is_named() {
    let (sink, field, _) =
        sink_error("sinks:\n  - name: m\n    matrix: {homeserver: \"https://m.internal\", room: \"!r:m\"}\n");
    assert_eq!((sink.as_str(), field), ("m", "matrix.token"));
    let (_, field, _) = sink_error("sinks:\n  - name: w\n    webhook: {url: \"https://c.internal/x\"}\n");
    assert_eq!(field, "webhook.secret");
    let (sink, field, problem) = sink_error(
        "sinks:\n  - name: siem\n    webhook: {url: \"https://c.internal/x\", secret: short-and-guessable}\n",
    );
    assert_eq!((sink.as_str(), field), ("siem", "webhook.secret"));
    assert!(
        problem.contains("32 bytes") && !problem.contains("short-and-guessable"),
        "{problem}"
    );
    let (_, field, _) = sink_error("sinks:\n  - name: s\n    smtp: {host: relay, from: a@b, username: u}\n");
    assert_eq!(field, "smtp.password");
}

#[test]
fn a_sink_is_exactly_one_kind_with_a_unique_name() {
    let (_, field, _) = sink_error(
        "sinks:\n  - name: x\n    chat: {url: \"https://a.internal/h\"}\n    webhook: {url: \"https://a.internal/h\", secret: s}\n",
    );
    assert_eq!(field, "chat|matrix|webhook|smtp");
    let (sink, field, _) = sink_error("sinks:\n  - chat: {url: \"https://a.internal/h\"}\n");
    assert_eq!((sink.as_str(), field), ("#1", "name"));
    let (_, field, _) = sink_error(
        "sinks:\n  - name: x\n    chat: {url: \"https://a.internal/h\"}\n  - name: x\n    chat: {url: \"https://b.internal/h\"}\n",
    );
    assert_eq!(field, "name");
}

#[test]
fn a_password_is_never_sent_in_the_clear_to_a_remote_relay() {
    let (_, field, _) = sink_error(
        "sinks:\n  - name: s\n    smtp: {host: relay.internal, tls: none, username: u, password: p, from: a@b}\n",
    );
    assert_eq!(field, "smtp.tls");
    let c = parse("sinks:\n  - name: s\n    smtp: {host: relay.internal, tls: none, from: a@b}\n").unwrap();
    let Kind::Smtp(s) = &c.sinks[0].kind else { panic!() };
    assert_eq!(s.port, 25);
}

#[test]
fn routes_name_known_sinks_and_reasons() {
    let base = "sinks:\n  - name: a\n    chat: {url: \"https://a.internal/h\"}\nroutes:\n";
    let err = parse(&format!("{base}  - sinks: [b]\n")).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Route {
                index: 0,
                field: "sinks",
                ..
            }
        ),
        "{err}"
    );
    let err = parse(&format!("{base}  - sinks: [a]\n    reasons: [Filed]\n")).unwrap_err();
    assert!(
        matches!(err, ConfigError::Route { field: "reasons", .. }),
        "{err}"
    );
}

#[test]
fn a_mapped_address_must_be_an_address() {
    let err = parse("mail:\n  addresses: {alice: [alice@corp, \"not an address\"]}\n").unwrap_err();
    assert!(
        err.to_string().contains("alice") && err.to_string().contains("#2"),
        "{err}"
    );
}

#[test]
fn mail_domains_must_be_domains() {
    let c = parse("sinks: []\nmail:\n  domains: [Corp.Example]\n").unwrap();
    assert_eq!(c.mail.domains, ["corp.example"]);
    let e = parse("sinks: []\nmail:\n  domains: [\"a b\"]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("mail.domains"), "{e}");
}

#[test]
fn an_ipv6_relay_is_written_bare_or_in_brackets_and_kept_bare() {
    for written in ["\"::1\"", "\"[::1]\"", "\"[0:0:0:0:0:0:0:1]\""] {
        let c = parse(&format!(
            "sinks:\n  - name: s\n    smtp: {{host: {written}, tls: none, from: a@b}}\n"
        ))
        .unwrap();
        let Kind::Smtp(s) = &c.sinks[0].kind else { panic!() };
        assert_eq!(s.host, "::1", "{written}");
    }
    for bad in [
        "relay.internal:587",
        "\"[relay.internal]\"",
        "\"[::1\"",
        "\"[::1]:587\"",
        "\"a b\"",
    ] {
        let (_, field, problem) = sink_error(&format!(
            "sinks:\n  - name: s\n    smtp: {{host: {bad}, from: a@b}}\n"
        ));
        assert_eq!(field, "smtp.host", "{bad}");
        assert!(problem.contains("[::1]"), "{problem}");
    }
}
