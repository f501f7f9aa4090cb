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

#[test]
fn a_notice_mailed_to_many_takes_one_place_in_the_queue_and_leaves_room_for_a_break_glass_use() {
    let approvers: Vec<String> = (0..300).map(|i| format!("a{i:03}@corp")).collect();
    let c = cfg(&format!(
        "sinks:\n  - name: m\n    smtp: {{host: relay, tls: none, from: j@corp}}\nmail:\n  addresses: {{\"group:jitgate-approvers\": [{}]}}\n",
        approvers.join(", ")
    ));
    let (tx, mut rx) = mpsc::channel::<Job>(SINK_QUEUE);
    let queues = [Queue {
        name: "m".into(),
        tx,
        queued: Arc::new(std::sync::Mutex::new(Queued::default())),
    }];
    let metrics = Metrics::new(jiff::SignedDuration::from_secs(600));
    let mut denials = Denials::default();
    let mut filed = message::sample();
    filed.reason = "RequestFiled";
    filed.facts.approver_groups = vec!["jitgate-approvers".into()];
    let mut broke = filed.clone();
    broke.reason = "BreakGlassUsed";
    // The queue is full but for one place; the request to 300 people takes just that one.
    for _ in 0..SINK_QUEUE - 2 {
        assert!(queues[0].offer(Job {
            notice: "filler".into(),
            payloads: Vec::new(),
            denied: false,
            size: 0,
        }));
    }
    dispatch(&c, &queues, &mut denials, &metrics, filed);
    dispatch(&c, &queues, &mut denials, &metrics, broke);
    let mut jobs = Vec::new();
    while let Ok(job) = rx.try_recv() {
        if job.notice != "filler" {
            jobs.push(job);
        }
    }
    assert_eq!(jobs.len(), 2, "both notices queued");
    assert!(jobs.iter().all(|j| j.payloads.len() == 300));
    let first_to = match &jobs[0].payloads[0] {
        Payload::Mail { to, .. } => to.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(first_to, "a000@corp");
}
