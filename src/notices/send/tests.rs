//! What goes on the wire for each kind of sink.

use super::*;

fn cfg(text: &str) -> Config {
    super::super::config::parse(text).unwrap()
}

#[test]
fn a_matrix_message_is_a_put_to_the_room_with_the_notice_as_its_transaction() {
    let c = cfg(
        "sinks:\n  - name: m\n    matrix: {homeserver: \"https://matrix.internal\", room: \"!abc:internal\", token: tok}\n",
    );
    let n = message::sample();
    let Some(Payload::Http {
        method,
        url,
        headers,
        body,
    }) = payloads(&c, &c.sinks[0], &n, jiff::Timestamp::now()).pop()
    else {
        panic!()
    };
    assert_eq!(method, http::Method::PUT);
    assert_eq!(
        url.expose(),
        format!(
            "https://matrix.internal/_matrix/client/v3/rooms/%21abc%3Ainternal/send/m.room.message/{}",
            n.name
        )
    );
    assert!(
        headers
            .iter()
            .any(|(k, v)| *k == "authorization" && v.expose() == "Bearer tok")
    );
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["msgtype"], "m.text");
    assert!(
        body["body"]
            .as_str()
            .unwrap()
            .contains("kubectl jitgate approve jitgate-notify-test")
    );
}

#[test]
fn a_webhook_is_signed_with_hmac_sha256_of_the_body() {
    let c = cfg(
        "sinks:\n  - name: w\n    webhook: {url: \"https://c.internal/x\", secret: 0123456789abcdef0123456789abcdef}\n",
    );
    let Some(Payload::Http { headers, body, .. }) =
        payloads(&c, &c.sinks[0], &message::sample(), jiff::Timestamp::now()).pop()
    else {
        panic!()
    };
    let sig = headers
        .iter()
        .find(|(k, _)| *k == "x-jitgate-signature")
        .unwrap()
        .1
        .expose()
        .to_string();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"0123456789abcdef0123456789abcdef");
    let expected = crate::digest::hex_of(ring::hmac::sign(&key, &body).as_ref());
    assert_eq!(sig, format!("sha256={expected}"));
    // The RFC 4231 test case 2, to pin the algorithm.
    assert_eq!(
        signature(&Credential::new("Jefe".into()), b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn a_mail_without_recipients_is_not_sent() {
    let c = cfg("sinks:\n  - name: m\n    smtp: {host: relay, tls: none, from: j@corp}\n");
    assert!(payloads(&c, &c.sinks[0], &message::sample(), jiff::Timestamp::now()).is_empty());
}

#[test]
fn a_mail_goes_to_each_recipient_on_its_own() {
    let c = cfg(
        "sinks:\n  - name: m\n    smtp: {host: relay, tls: none, from: j@corp}\nmail:\n  addresses: {\"group:jitgate-approvers\": [b@corp, a@corp]}\n",
    );
    let mut n = message::sample();
    n.reason = "RequestFiled";
    n.facts.approver_groups = vec!["jitgate-approvers".into()];
    let to: Vec<String> = payloads(&c, &c.sinks[0], &n, jiff::Timestamp::now())
        .into_iter()
        .map(|p| match p {
            Payload::Mail { to, .. } => to,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(to, ["a@corp", "b@corp"]);
}
