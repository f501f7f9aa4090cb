//! What people read: everything they need to act, the command to run, no object data,
//! and break-glass uses that cannot be missed.

use super::*;
use crate::admission::decode;
use crate::approvals::{ConfigMapRef, Snapshot, parse_entry};
use crate::decision::{Approvals, Inputs, decide};
use crate::policy::PolicySet;
use jiff::SignedDuration;
use std::sync::Arc;

fn now() -> Timestamp {
    "2026-11-21T20:00:00Z".parse().unwrap()
}

fn shipped() -> PolicySet {
    crate::sync::policies::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
        .unwrap()
}

fn filed(reason: &str, approved_by: &str) -> (Notice, Notice) {
    let text = format!(
        "user: alice@corp\nresource: secrets\nnamespace: prod\nname: db\noperations: [UPDATE]\nexpiresAt: \"{}\"\nreason: \"{reason}\"\napprovedBy: [{approved_by}]\nchange: \"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n",
        now() + SignedDuration::from_hours(2)
    );
    let a = Arc::new(parse_entry("jitgate-approvals/alice-db", &text).unwrap());
    let before = Snapshot::new(vec![], 0, ConfigMapRef::default(), now());
    let pending = Snapshot::new(vec![a.clone()], 0, ConfigMapRef::default(), now());
    let p = shipped();
    let request = crate::news::changes(&before, &pending, &p, now(), |_| false, (0, usize::MAX))
        .0
        .remove(0);
    let mut approved = (*a).clone();
    approved.approved_by = Arc::from(["bob@corp".into()]);
    let after = Snapshot::new(vec![Arc::new(approved)], 0, ConfigMapRef::default(), now());
    let answer = crate::news::changes(&pending, &after, &p, now(), |_| false, (0, usize::MAX))
        .0
        .remove(0);
    (request, answer)
}

#[test]
fn a_request_says_who_what_why_the_pin_what_is_missing_and_the_commands() {
    let (request, _) = filed("INC-7: rotate", "");
    assert_eq!(request.reason, "RequestFiled");
    let m = of(&request);
    assert_eq!(m.headline, "user:alice@corp asks for UPDATE prod/secrets/db");
    let text = plain(&m);
    for want in [
        "Requester: user:alice@corp",
        "Operations: UPDATE",
        "Object: prod/secrets/db",
        "Reason: INC-7: rotate",
        "Change: pinned to exactly one change: sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "Policies: prod-secrets",
        "Still needed: 1 approver other than the requester",
        "Approvers: jitgate-approvers",
        "kubectl jitgate approve alice-db",
        "kubectl jitgate show alice-db",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
    let md = markdown(&m);
    assert!(md.contains("`kubectl jitgate approve alice-db`"), "{md}");
    assert!(
        subject(&m).starts_with("[jitgate] user:alice@corp asks for"),
        "{}",
        subject(&m)
    );
}

#[test]
fn an_approval_tells_the_requester_it_is_active_and_how_to_wait() {
    let (_, answer) = filed("INC-7", "");
    assert_eq!(answer.reason, "Approved");
    let m = of(&answer);
    assert_eq!(
        m.headline,
        "bob@corp approved user:alice@corp's UPDATE prod/secrets/db: it is active"
    );
    assert_eq!(m.commands, ["kubectl jitgate wait alice-db"]);
}

#[test]
fn what_the_requester_wrote_is_code_and_mentions_nobody() {
    let (request, _) = filed("@channel **urgent** `rm -rf` [click](http://x) <!here>", "");
    let m = of(&request);
    let md = markdown(&m);
    let line = md.lines().find(|l| l.starts_with("- Reason:")).unwrap();
    assert_eq!(
        line,
        "- Reason: `@channel **urgent** 'rm -rf' [click](http://x) ‹!here›`"
    );
    assert_eq!(
        matrix_body(&m)["m.mentions"],
        serde_json::json!({}),
        "Matrix: nobody mentioned"
    );
    // Our own words escape a username that could mention a channel.
    assert_eq!(escape("@all and @channel"), "@\u{2060}all and @\u{2060}channel");
    assert_eq!(escape("alice@example.com"), "alice@example.com");
}

fn secret_review(user: &str, groups: &[&str], canary: &str) -> crate::admission::AdmissionRequest<'static> {
    let body = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Secret"},
        "resource": {"group": "", "version": "v1", "resource": "secrets"},
        "namespace": "prod", "name": "db", "operation": "UPDATE",
        "userInfo": {"username": user, "groups": groups},
        "object": {"metadata": {"name": "db", "uid": "s-1"}, "data": {"password": canary}, "stringData": {"p": canary}},
        "oldObject": {"metadata": {"name": "db", "uid": "s-1"}, "data": {"password": canary}}}})
    .to_string();
    decode(Box::leak(body.into_boxed_str()).as_bytes()).unwrap()
}

/// The news of `req` under the shipped policies, with no approvals.
fn news_of(req: &crate::admission::AdmissionRequest<'_>) -> Vec<Notice> {
    let p = shipped();
    let s = Snapshot::new(vec![], 0, ConfigMapRef::default(), now());
    let inputs = Inputs {
        policies: &p,
        approvals: Approvals::Loaded(&s),
        now: now(),
    };
    crate::news::answered(req.into(), &decide(req, &inputs), &p)
}

#[test]
fn a_denial_carries_the_command_to_ask_and_never_the_objects_data() {
    let canary = "Q0FOQVJZLXNlY3JldC0xMjM0NQ==";
    let req = secret_review("mallory@corp", &[], canary);
    let news = news_of(&req);
    assert_eq!(news[0].reason, "Denied");
    let m = of(&news[0]);
    assert_eq!(
        m.headline,
        "UPDATE prod/secrets/db by user:mallory@corp was denied"
    );
    assert!(m.commands[0].contains("jitgate request"), "{:?}", m.commands);
    for n in &news {
        let m = of(n);
        let all = [
            markdown(&m),
            plain(&m),
            subject(&m),
            cloudevent(n, &m, now()).to_string(),
            matrix_body(&m).to_string(),
        ];
        for text in all {
            assert!(!text.contains(canary) && !text.contains("CANARY"), "{text}");
        }
    }
}

#[test]
fn a_break_glass_use_is_loud_in_every_form() {
    let news = crate::news::tests::break_glass_use();
    let m = of(&news[0]);
    assert!(
        m.headline
            .starts_with("🚨 BREAK-GLASS: user:alice used a break-glass entry for UPDATE prod/secrets/db"),
        "{}",
        m.headline
    );
    assert!(markdown(&m).starts_with("**🚨 BREAK-GLASS"));
    assert!(plain(&m).starts_with("🚨 BREAK-GLASS"));
    assert!(subject(&m).starts_with("[jitgate] 🚨 BREAK-GLASS"));
    assert_eq!(m.commands[1], "kubectl jitgate approve glass");
    assert_eq!(
        cloudevent(&news[0], &m, now())["type"],
        "dev.jitgate.breakglass.used"
    );
}

#[test]
fn a_cloudevent_is_structured_and_its_id_is_the_notices_name() {
    let (request, _) = filed("INC-7", "");
    let e = cloudevent(&request, &of(&request), now());
    assert_eq!(e["specversion"], "1.0");
    assert_eq!(e["id"], request.name.as_str());
    assert_eq!(e["type"], "dev.jitgate.request.filed");
    assert_eq!(e["source"], "jitgate.dev/jitgate");
    assert_eq!(e["time"], "2026-11-21T20:00:00Z");
    assert_eq!(e["data"]["key"], "alice-db");
    assert_eq!(e["data"]["requester"], "user:alice@corp");
}

#[test]
fn a_denial_of_a_megabyte_name_makes_a_bounded_message_in_every_form() {
    let body =
        serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Secret"},
        "resource": {"group": "", "version": "v1", "resource": "secrets"},
        "namespace": "prod", "name": "A".repeat(1_000_000), "operation": "UPDATE",
        "userInfo": {"username": "m".repeat(1_000_000), "groups": []}}})
        .to_string();
    let req = decode(body.as_bytes()).unwrap();
    let news = news_of(&req);
    assert_eq!(news[0].reason, "Denied");
    let m = of(&news[0]);
    for text in [
        markdown(&m),
        plain(&m),
        subject(&m),
        cloudevent(&news[0], &m, now()).to_string(),
        chat_body(&m).to_string(),
        matrix_body(&m).to_string(),
    ] {
        assert!(text.len() <= BODY_MAX, "{} bytes", text.len());
    }
    assert!(markdown(&m).contains("AAAA…"), "clipped, and marked so");
}

#[test]
fn a_backslash_cannot_undo_the_escape_and_names_are_code() {
    let mut n = sample();
    n.facts.object = r"prod/secrets/\[APPROVED, click\](https://evil.example/x) \*\*bold\*\*".into();
    n.facts.requester = "user:[x](https://evil.example/y)".into();
    let m = of(&n);
    let md = markdown(&m);
    let headline = md.lines().next().unwrap();
    // Every active character of the headline is escaped, the backslashes too: no link.
    assert_eq!(
        escape(r"\[a\](b)!"),
        r"\\\[a\\\]\(b\)\!",
        "a backslash, brackets, parentheses and ! are all escaped"
    );
    // Each `[ ] ( )` is preceded by an odd run of backslashes: escaped, not undone.
    let chars: Vec<char> = headline.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if "[]()".contains(*c) {
            let run = chars[..i].iter().rev().take_while(|b| **b == '\\').count();
            assert!(run % 2 == 1, "{c} at {i} is active in {headline}");
        }
    }
    assert!(
        md.contains(r"- Object: `prod/secrets/\[APPROVED, click\](https://evil.example/x) \*\*bold\*\*`"),
        "{md}"
    );
    assert!(
        md.contains("- Requester: `user:[x](https://evil.example/y)`"),
        "{md}"
    );
    // A backtick cannot end the code span early.
    n.facts.object = "a`[x](https://evil.example)`b".into();
    let md = markdown(&of(&n));
    assert!(md.contains("- Object: `a'[x](https://evil.example)'b`"), "{md}");
}

#[test]
fn invisible_characters_are_taken_out_of_every_form() {
    let mut n = sample();
    let hidden = [
        "\u{202E}",
        "\u{200B}",
        "\u{2028}",
        "\u{2029}",
        "\u{2066}",
        "\u{FEFF}",
        "\u{00AD}",
        "\u{E0041}",
    ];
    n.facts.justification = format!("ok{}**bob approved**", hidden.join(""));
    n.facts.requester = format!("user:mal{}lory", hidden.join(""));
    n.facts.object = format!("prod/secrets/d{}b", hidden.join(""));
    let m = of(&n);
    for text in [markdown(&m), plain(&m), subject(&m)] {
        for h in hidden {
            assert!(!text.contains(h), "{h:?} in {text:?}");
        }
        assert!(text.contains("user:mallory"), "{text}");
    }
    assert!(markdown(&m).contains("prod/secrets/db"));
    // Our own word joiner after `@` stays: it is ours, added after the cleaning.
    assert_eq!(escape("@\u{200B}here"), "@\u{2060}here");
}
