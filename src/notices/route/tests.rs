//! Who hears what.

use super::*;
use crate::news::{Facts, Notice};

fn cfg(text: &str) -> Config {
    super::super::config::parse(text).unwrap()
}

const SINKS: &str = "sinks:\n  - name: sec\n    chat: {url: \"https://chat.internal/h\"}\n  - name: ops\n    chat: {url: \"https://chat.internal/o\"}\n  - name: mail\n    smtp: {host: relay, tls: none, from: jitgate@corp}\n";

fn notice(reason: &'static str, policy: &str) -> Notice {
    let mut n = super::super::message::sample();
    n.reason = reason;
    n.facts = Facts {
        requester: "user:alice".into(),
        requester_user: Some("alice".into()),
        policies: vec![policy.into()],
        approver_groups: vec!["security-approvers".into()],
        ..Facts::default()
    };
    n
}

fn names(sinks: Vec<&Sink>) -> Vec<&str> {
    sinks.into_iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn without_routes_every_sink_hears_everything_but_a_repeat() {
    let c = cfg(SINKS);
    assert_eq!(
        names(sinks_for(&c, &notice("Denied", "x"))),
        ["sec", "ops", "mail"]
    );
    let mut copy = notice("Denied", "x");
    copy.facts.copy = true;
    assert!(
        sinks_for(&c, &copy).is_empty(),
        "the same denial about the object is not told twice"
    );
}

#[test]
fn routes_filter_by_policy_reason_and_approver_group() {
    let c = cfg(&format!(
        "{SINKS}routes:\n  - sinks: [sec]\n    policies: [prod-secrets]\n    reasons: [RequestFiled, BreakGlassUsed]\n  - sinks: [ops, mail]\n    groups: [security-approvers]\n    reasons: [Approved]\n"
    ));
    assert_eq!(
        names(sinks_for(&c, &notice("RequestFiled", "prod-secrets"))),
        ["sec"]
    );
    assert!(sinks_for(&c, &notice("RequestFiled", "prod-workloads")).is_empty());
    assert!(sinks_for(&c, &notice("Denied", "prod-secrets")).is_empty());
    assert_eq!(names(sinks_for(&c, &notice("Approved", "any"))), ["ops", "mail"]);
}

#[test]
fn new_requests_mail_the_approver_groups_and_answers_the_requester() {
    let c = cfg(&format!(
        "{SINKS}mail:\n  addresses: {{alice: alice@corp, \"group:security-approvers\": [sec@corp, lead@corp]}}\n"
    ));
    assert_eq!(
        recipients(&c.mail, &notice("RequestFiled", "p")),
        ["lead@corp", "sec@corp"]
    );
    assert_eq!(
        recipients(&c.mail, &notice("BreakGlassUsed", "p")),
        ["lead@corp", "sec@corp"]
    );
    assert_eq!(recipients(&c.mail, &notice("Approved", "p")), ["alice@corp"]);
    assert_eq!(recipients(&c.mail, &notice("ExpiringSoon", "p")), ["alice@corp"]);
    assert!(
        recipients(&c.mail, &notice("Denied", "p")).is_empty(),
        "the denied person saw the denial"
    );
}

#[test]
fn a_username_that_is_an_address_is_used_as_is_and_others_need_the_mapping() {
    let c = cfg(SINKS);
    let mut n = notice("Approved", "p");
    assert!(recipients(&c.mail, &n).is_empty(), "alice has no address");
    assert!(!has_audience(&c, &c.sinks[2], &n));
    assert!(has_audience(&c, &c.sinks[0], &n), "a chat needs no recipients");
    n.facts.requester_user = Some("alice@corp".into());
    assert_eq!(recipients(&c.mail, &n), ["alice@corp"]);
    let off = cfg(&format!("{SINKS}mail:\n  requester: false\n"));
    assert!(recipients(&off.mail, &n).is_empty());
}

#[test]
fn a_break_glass_use_mails_its_approver_groups_and_reaches_their_routes() {
    let c = cfg(&format!(
        "{SINKS}routes:\n  - sinks: [sec, mail]\n    groups: [sec-approvers]\nmail:\n  addresses: {{\"group:sec-approvers\": [sec@corp]}}\n"
    ));
    let news = crate::news::tests::break_glass_use();
    assert_eq!(news[0].reason, "BreakGlassUsed");
    assert_eq!(names(sinks_for(&c, &news[0])), ["sec", "mail"]);
    assert_eq!(recipients(&c.mail, &news[0]), ["sec@corp"]);
}

#[test]
fn with_mail_domains_a_username_elsewhere_is_no_address() {
    let c = cfg(&format!("{SINKS}mail:\n  domains: [corp]\n"));
    let mut n = notice("Approved", "p");
    n.facts.requester_user = Some("victim@external.example".into());
    assert!(recipients(&c.mail, &n).is_empty(), "not a domain of ours");
    n.facts.requester_user = Some("alice@CORP".into());
    assert_eq!(recipients(&c.mail, &n), ["alice@CORP"]);
}

#[test]
fn an_address_in_two_groups_or_two_cases_gets_one_mail() {
    let c = cfg(&format!(
        "{SINKS}mail:\n  addresses: {{\"group:security-approvers\": [Lead@Corp, sec@corp], \"group:db-approvers\": [lead@corp, SEC@corp]}}\n"
    ));
    let mut n = notice("RequestFiled", "p");
    n.facts.approver_groups = vec!["security-approvers".into(), "db-approvers".into()];
    let to = recipients(&c.mail, &n);
    assert_eq!(to.len(), 2, "{to:?}");
    assert!(
        to[0].eq_ignore_ascii_case("lead@corp") && to[1].eq_ignore_ascii_case("sec@corp"),
        "{to:?}"
    );
}
