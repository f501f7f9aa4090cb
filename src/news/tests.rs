//! What is news, one rule each.

use super::*;
use crate::admission::decode;
use crate::approvals::parse_entry;
use crate::decision::{Approvals, Inputs, decide};
use crate::policy::parse_policies;

fn now() -> Timestamp {
    "2026-11-21T20:00:00Z".parse().unwrap()
}

fn policies() -> PolicySet {
    crate::sync::policies::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
        .unwrap()
}

fn entry(key: &str, approvers: &str, expires_in_mins: i64) -> Arc<Approval> {
    let text = format!(
        "user: alice\nresource: secrets\nnamespace: prod\nname: db\noperations: [UPDATE]\nexpiresAt: \"{}\"\nreason: INC-1 rotate\napprovedBy: [{approvers}]\n",
        now() + SignedDuration::from_mins(expires_in_mins)
    );
    Arc::new(parse_entry(&format!("jitgate-approvals/{key}"), &text).unwrap())
}

fn snapshot(entries: Vec<Arc<Approval>>) -> Snapshot {
    Snapshot::new(entries, 0, ConfigMapRef::default(), now())
}

/// Every change between two loads, none told before.
fn all_changes(before: &Snapshot, after: &Snapshot, p: &PolicySet, at: Timestamp) -> Vec<Notice> {
    changes(before, after, p, at, |_| false, (0, usize::MAX)).0
}

#[test]
fn a_new_request_an_approval_and_a_removal_are_news_about_the_configmap() {
    let p = policies();
    let before = snapshot(vec![entry("old", "bob", 30)]);
    let after = snapshot(vec![entry("new", "", 30), entry("old", "bob, carol", 30)]);
    let news = all_changes(&before, &after, &p, now());
    let reasons: Vec<&str> = news.iter().map(|n| n.reason).collect();
    assert_eq!(reasons, ["RequestFiled", "Approved"]);
    assert!(
        news[0]
            .note
            .contains("user:alice asks for UPDATE prod/secrets/db"),
        "{}",
        news[0].note
    );
    assert!(
        news[0].note.contains("kubectl jitgate approve new"),
        "{}",
        news[0].note
    );
    assert!(
        news[1]
            .note
            .starts_with("carol approved user:alice's UPDATE prod/secrets/db "),
        "{}",
        news[1].note
    );
    assert!(news[1].note.contains("active until"), "{}", news[1].note);
    assert_eq!(news[0].regarding.kind, "ConfigMap");
    assert_eq!(news[0].regarding.name, "jitgate-approvals");
    assert_eq!(news[0].namespace, "jitgate-system");

    let gone = all_changes(&after, &snapshot(vec![entry("new", "", 30)]), &p, now());
    assert_eq!(gone.iter().map(|n| n.reason).collect::<Vec<_>>(), ["Revoked"]);
    assert!(gone[0].warning);
    assert!(
        all_changes(&after, &after, &p, now()).is_empty(),
        "nothing changed, no news"
    );
}

#[test]
fn the_same_news_has_the_same_name_and_other_news_another() {
    let p = policies();
    let before = snapshot(vec![]);
    let after = snapshot(vec![entry("new", "", 30)]);
    let first = all_changes(&before, &after, &p, now());
    let again = all_changes(&before, &after, &p, now() + SignedDuration::from_mins(5));
    assert_eq!(first[0].name, again[0].name, "every replica names it alike");
    let approved = all_changes(&after, &snapshot(vec![entry("new", "bob", 30)]), &p, now());
    assert_ne!(first[0].name, approved[0].name);
    assert!(first[0].name.starts_with("jitgate.") && first[0].name.len() == 72);
}

#[test]
fn time_makes_news_of_approvals_about_to_expire_and_just_expired_only() {
    let p = policies();
    let s = snapshot(vec![
        entry("soon", "bob", 5),
        entry("later", "bob", 30),
        entry("pending", "", 5),
        entry("gone", "bob", -10),
        entry("long-gone", "bob", -120),
    ]);
    let (news, _) = due(&s, &p, now(), EXPIRY_LEAD, |_| false, (0, usize::MAX));
    let got: Vec<(&str, &str)> = news
        .iter()
        .map(|n| (n.reason, n.note.split('\'').next().unwrap()))
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(news[0].reason, "ExpiringSoon");
    assert!(
        news[0].note.contains("expires at") && news[0].note.contains("(in 5m)"),
        "{}",
        news[0].note
    );
    assert_eq!(news[1].reason, "Expired");
}

/// An approval removed while it was active is told as revoked even when the pass that
/// tells of it comes after it would have expired (passes may catch up on many changes for
/// minutes): the removal is judged as of the load that no longer holds it.
#[test]
fn a_removal_is_judged_as_of_the_load_without_it() {
    let p = policies();
    let before = snapshot(vec![entry("soon", "bob", 5), entry("gone", "bob", -5)]);
    let after = snapshot(vec![]);
    let late = now() + SignedDuration::from_mins(10);
    let (news, _) = changes(&before, &after, &p, late, |_| false, (0, usize::MAX));
    let told: Vec<_> = news
        .iter()
        .map(|n| (n.reason, n.note.split('\'').next().unwrap()))
        .collect();
    assert_eq!(told, [("Revoked", "user:alice")], "{news:?}");
}

/// Passes as the writer makes them, each going on where the last stopped, until one comes
/// to the end: how many notices each made, and every notice's name and reason.
#[allow(clippy::type_complexity)]
fn passes(
    mut pass: impl FnMut(usize) -> (Vec<Notice>, Option<usize>),
) -> (Vec<usize>, Vec<(String, &'static str)>) {
    let (mut sizes, mut told, mut from) = (Vec::new(), Vec::new(), 0);
    loop {
        assert!(sizes.len() < 100, "passes that never end: {sizes:?}");
        let (news, next) = pass(from);
        sizes.push(news.len());
        told.extend(news.into_iter().map(|n| (n.name, n.reason)));
        match next {
            Some(at) => from = at,
            None => return (sizes, told),
        }
    }
}

/// Each name once, and the reasons told, sorted.
fn told_once(told: &[(String, &'static str)]) -> Vec<&'static str> {
    let names: std::collections::HashSet<&String> = told.iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), told.len(), "told twice: {told:?}");
    let mut reasons: Vec<_> = told.iter().map(|(_, r)| *r).collect();
    reasons.sort();
    reasons
}

/// However many approvals expire together, a pass makes at most so many notices, and
/// none whose Event was written already; the next pass goes on where it stopped, until
/// every approval was told of once. That comes to an end even when the names told are
/// not remembered (the writer's memory of them is bounded, and may be full).
#[test]
fn time_makes_news_a_bounded_batch_at_a_time_each_once() {
    let p = policies();
    let s = snapshot((0..10).map(|i| entry(&format!("soon-{i}"), "bob", 5)).collect());
    let seen = std::cell::RefCell::new(std::collections::HashSet::new());
    let remembered = passes(|from| {
        let pass = due(
            &s,
            &p,
            now(),
            EXPIRY_LEAD,
            |n| seen.borrow().contains(n),
            (from, 4),
        );
        seen.borrow_mut().extend(pass.0.iter().map(|n| n.name.clone()));
        pass
    });
    let forgotten = passes(|from| due(&s, &p, now(), EXPIRY_LEAD, |_| false, (from, 4)));
    for (sizes, told) in [remembered, forgotten] {
        assert_eq!(sizes, [4, 4, 2]);
        assert_eq!(told_once(&told), ["ExpiringSoon"; 10]);
    }
    let again = due(&s, &p, now(), EXPIRY_LEAD, |n| seen.borrow().contains(n), (0, 4));
    assert!(again.0.is_empty() && again.1.is_none(), "told again");
}

/// Tens of thousands of requests filed (or removed) at once make their notices a bounded
/// batch a pass, as time does.
#[test]
fn a_change_makes_news_a_bounded_batch_at_a_time_each_once() {
    let p = policies();
    let before = snapshot((0..6).map(|i| entry(&format!("gone-{i}"), "bob", 30)).collect());
    let mut after: Vec<_> = (0..7).map(|i| entry(&format!("filed-{i}"), "", 30)).collect();
    after.push(entry("gone-0", "bob, carol", 30));
    let after = snapshot(after);
    let seen = std::cell::RefCell::new(std::collections::HashSet::new());
    let remembered = passes(|from| {
        let pass = changes(
            &before,
            &after,
            &p,
            now(),
            |n| seen.borrow().contains(n),
            (from, 4),
        );
        seen.borrow_mut().extend(pass.0.iter().map(|n| n.name.clone()));
        pass
    });
    let forgotten = passes(|from| changes(&before, &after, &p, now(), |_| false, (from, 4)));
    for (sizes, told) in [remembered, forgotten] {
        assert_eq!(sizes, [4, 4, 4, 1]);
        assert_eq!(
            told_once(&told),
            [["Approved"; 1].as_slice(), &["RequestFiled"; 7], &["Revoked"; 5]].concat()
        );
    }
    assert_eq!(seen.borrow().len(), all_changes(&before, &after, &p, now()).len());
    let again = changes(&before, &after, &p, now(), |n| seen.borrow().contains(n), (0, 4));
    assert!(again.0.is_empty() && again.1.is_none(), "told again");
}

fn denied_at(at: Timestamp, name: &str) -> (Vec<Notice>, Vec<Notice>) {
    let body =
        serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Secret"},
        "resource": {"group": "", "version": "v1", "resource": "secrets"},
        "namespace": "prod", "name": name, "operation": "UPDATE",
        "userInfo": {"username": "mallory", "groups": []},
        "object": {"metadata": {"name": name, "uid": "uid-of-the-secret"}, "data": {"password": "Y2FuYXJ5LTc3"}},
        "oldObject": {"metadata": {"name": name, "uid": "uid-of-the-secret"}, "data": {"password": "b2xk"}}}})
        .to_string();
    let req = decode(body.as_bytes()).unwrap();
    let p = policies();
    let s = snapshot(vec![]);
    let inputs = Inputs {
        policies: &p,
        approvals: Approvals::Loaded(&s),
        now: at,
    };
    let d = decide(&req, &inputs);
    assert!(!d.allowed());
    let allowed_policies = PolicySet::new(parse_policies("", "none.yaml").unwrap()).unwrap();
    let allowed = decide(
        &req,
        &Inputs {
            policies: &allowed_policies,
            approvals: Approvals::Loaded(&s),
            now: at,
        },
    );
    (
        answered((&req).into(), &d, &p),
        answered((&req).into(), &allowed, &allowed_policies),
    )
}

#[test]
fn a_denial_is_news_once_a_minute_about_the_configmap_and_the_object() {
    let (news, allowed) = denied_at(now(), "db");
    assert!(allowed.is_empty(), "an allowed request is no news");
    assert_eq!(news.len(), 2);
    assert_eq!(news[0].reason, "Denied");
    assert_eq!(news[0].regarding.kind, "ConfigMap");
    assert_eq!(news[0].related.as_ref().unwrap().name, "db");
    assert_eq!(
        news[1].namespace, "prod",
        "written beside the object, for kubectl describe"
    );
    assert_eq!(news[1].regarding.kind, "Secret");
    assert_eq!(
        news[1].regarding.uid.as_deref(),
        Some("uid-of-the-secret"),
        "kubectl describe finds it by uid"
    );
    assert!(
        news[0]
            .note
            .contains("UPDATE of prod/secrets/db by mallory denied (no_approval) under policy prod-secrets"),
        "{}",
        news[0].note
    );
    assert!(!news[0].note.contains("Y2FuYXJ5LTc3"), "never object data");
    let (retry, _) = denied_at(now() + SignedDuration::from_secs(30), "db");
    assert_eq!(
        retry[0].name, news[0].name,
        "a retry within the minute is the same Event"
    );
    let (later, _) = denied_at(now() + SignedDuration::from_secs(90), "db");
    assert_ne!(later[0].name, news[0].name, "the next minute may tell again");
    let (other, _) = denied_at(now(), "other");
    assert_ne!(other[0].name, news[0].name, "another object is other news");
}

/// The news of alice using a break-glass entry under a policy that lets group oncall.
pub(crate) fn break_glass_use() -> Vec<Notice> {
    let body =
        serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Secret"},
        "resource": {"group": "", "version": "v1", "resource": "secrets"},
        "namespace": "prod", "name": "db", "operation": "UPDATE",
        "userInfo": {"username": "alice", "groups": ["oncall"]}}})
        .to_string();
    let req = decode(body.as_bytes()).unwrap();
    let text = r#"
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata: { name: p }
spec:
  rules: [{ apiGroups: [""], resources: ["secrets"], operations: ["UPDATE"] }]
  approval: { minApprovers: 1, maxDuration: 4h, approverGroups: ["sec-approvers"] }
  breakGlass: { groups: ["oncall"], maxDuration: 1h, reviewWithin: 24h }
"#;
    let p = PolicySet::new(parse_policies(text, "p.yaml").unwrap()).unwrap();
    let glass = format!(
        "user: alice\nresource: secrets\nnamespace: prod\nexpiresAt: \"{}\"\nreason: INC-9 outage\nbreakGlass: true\napprovedBy: []\n",
        now() + SignedDuration::from_mins(30)
    );
    let s = snapshot(vec![Arc::new(
        parse_entry("jitgate-approvals/glass", &glass).unwrap(),
    )]);
    let d = decide(
        &req,
        &Inputs {
            policies: &p,
            approvals: Approvals::Loaded(&s),
            now: now(),
        },
    );
    answered((&req).into(), &d, &p)
}

#[test]
fn a_break_glass_use_is_news_once_a_minute() {
    let news = break_glass_use();
    assert_eq!(news[0].reason, "BreakGlassUsed");
    assert!(
        news[0]
            .note
            .contains("alice used break-glass entry jitgate-approvals/glass for UPDATE of prod/secrets/db"),
        "{}",
        news[0].note
    );
}

#[test]
fn a_break_glass_use_names_its_approver_groups_and_the_reason_written() {
    let news = break_glass_use();
    let f = &news[0].facts;
    assert_eq!(f.approver_groups, ["sec-approvers"], "whom it concerns");
    assert_eq!(f.justification, "INC-9 outage", "why the glass was broken");
    assert_eq!(f.key.as_deref(), Some("glass"));
    assert!(f.expires_at.is_some());
}

#[test]
fn a_denial_names_its_approver_groups() {
    let (news, _) = denied_at(now(), "db");
    assert_eq!(news[0].reason, "Denied");
    assert_eq!(news[0].facts.approver_groups, ["jitgate-approvers"]);
}

#[test]
fn a_megabyte_name_makes_bounded_facts_and_no_event_about_an_object() {
    let name = "A".repeat(1_000_000);
    let (news, _) = denied_at(now(), &name);
    let f = &news[0].facts;
    assert!(
        f.object.len() <= NAME_MAX && f.object.ends_with('…'),
        "{}",
        f.object.len()
    );
    assert!(f.ask.as_ref().unwrap().len() <= TEXT_MAX);
    assert!(news[0].note.len() <= NOTE_MAX);
    assert_eq!(news.len(), 1, "no object has such a name: no Event beside it");
    assert!(news[0].related.is_none());
}

#[test]
fn every_text_of_the_facts_is_clipped_when_built() {
    let long = "é".repeat(5000);
    let f = Facts {
        requester: long.clone(),
        requester_user: Some(long.clone()),
        operations: long.clone(),
        object: long.clone(),
        justification: long.clone(),
        policies: vec![long.clone(); 100],
        approver_groups: vec![long.clone(); 100],
        key: Some(long.clone()),
        change: Some(long.clone()),
        missing_levels: vec![long.clone(); 100],
        approvers_added: vec![long.clone(); 100],
        ask: Some(long.clone()),
        ..Facts::default()
    }
    .bounded();
    for s in [
        &f.requester,
        f.requester_user.as_ref().unwrap(),
        &f.operations,
        &f.object,
        f.change.as_ref().unwrap(),
    ] {
        assert!(s.len() <= NAME_MAX && s.ends_with('…'));
    }
    assert!(f.justification.len() <= TEXT_MAX && f.justification.ends_with('…'));
    assert!(f.ask.as_ref().unwrap().len() <= TEXT_MAX);
    assert!(f.key.as_ref().unwrap().len() <= 2 * NAME_MAX);
    for l in [
        &f.policies,
        &f.approver_groups,
        &f.missing_levels,
        &f.approvers_added,
    ] {
        assert_eq!(l.len(), LIST_MAX);
        assert!(l.iter().all(|s| s.len() <= NAME_MAX));
    }
}
