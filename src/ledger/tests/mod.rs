//! The ledger rules, one by one, on ConfigMap edits shaped as the API server sends them.

use super::*;
use crate::admission::decode;
use crate::policy::parse_policies;
use jiff::SignedDuration;

const POLICIES: &str = r#"
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata: { name: prod-secrets }
spec:
  rules: [{ apiGroups: [""], resources: ["secrets"], operations: ["UPDATE", "DELETE"] }]
  namespaces: ["prod"]
  approval: { minApprovers: 1, maxDuration: 4h, approverGroups: ["sre"] }
"#;

fn now() -> Timestamp {
    "2026-11-21T20:00:00Z".parse().unwrap()
}

fn entry(user: &str, approvers: &[&str], expires_in_mins: i64) -> String {
    let expires = now() + SignedDuration::from_mins(expires_in_mins);
    let approvers: Vec<String> = approvers.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "user: {user}\nresource: secrets\nnamespace: prod\nname: db\noperations: [UPDATE]\nexpiresAt: \"{expires}\"\nreason: \"INC-1\"\napprovedBy: [{}]\n",
        approvers.join(", ")
    )
}

fn cm(data: &[(&str, &str)]) -> serde_json::Value {
    let data: serde_json::Map<String, serde_json::Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
        .collect();
    serde_json::json!({"kind": "ConfigMap", "apiVersion": "v1",
        "metadata": {"name": "approvals", "namespace": "jitgate-system", "labels": {"jitgate.dev/approvals": "true"}},
        "data": data})
}

fn edit(
    op: &str,
    editor: &str,
    groups: &[&str],
    old: Option<serde_json::Value>,
    new: Option<serde_json::Value>,
) -> Result<Vec<EntryEdit>, Violation> {
    edit_under(POLICIES, op, editor, groups, old, new)
}

fn edit_under(
    policies: &str,
    op: &str,
    editor: &str,
    groups: &[&str],
    old: Option<serde_json::Value>,
    new: Option<serde_json::Value>,
) -> Result<Vec<EntryEdit>, Violation> {
    let body =
        serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u", "resource": {"group": "", "version": "v1", "resource": "configmaps"},
        "namespace": "jitgate-system", "name": "approvals", "operation": op,
        "userInfo": {"username": editor, "groups": groups}, "object": new, "oldObject": old}})
        .to_string();
    let req = decode(body.as_bytes()).unwrap();
    assert!(applies(&req));
    let policies = PolicySet::new(parse_policies(policies, "p.yaml").unwrap()).unwrap();
    let signers = SIGNERS.with(|s| s.borrow().clone());
    review(&req, &policies, Some(&signers), now(), Grace::default())
}

thread_local! {
    /// The trusted signers the edits of a test are judged against.
    static SIGNERS: std::cell::RefCell<crate::signing::Signers> = Default::default();
}

mod signed;

fn rule_of(r: Result<Vec<EntryEdit>, Violation>) -> LedgerRule {
    r.unwrap_err().rule
}

#[test]
fn a_requester_files_a_pending_request() {
    let changes = edit(
        "UPDATE",
        "alice",
        &["dev"],
        Some(cm(&[])),
        Some(cm(&[("k", &entry("alice", &[], 60))])),
    )
    .unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].action, Action::Requested);
    assert_eq!((changes[0].approvers, changes[0].required), (0, Some(1)));
}

#[test]
fn an_approver_signs_with_their_own_name() {
    let old = cm(&[("k", &entry("alice", &[], 60))]);
    let new = cm(&[("k", &entry("alice", &["bob"], 60))]);
    let changes = edit("UPDATE", "bob", &["sre"], Some(old), Some(new)).unwrap();
    assert_eq!(changes[0].action, Action::Approved);
    assert_eq!(changes[0].approvers, 1);
}

#[test]
fn a_forged_or_doubled_approval_is_refused() {
    let old = cm(&[("k", &entry("alice", &[], 60))]);
    let forged = cm(&[("k", &entry("alice", &["bob"], 60))]);
    assert_eq!(
        rule_of(edit(
            "UPDATE",
            "mallory",
            &["sre"],
            Some(old.clone()),
            Some(forged)
        )),
        LedgerRule::ForgedApprover
    );
    let doubled = cm(&[("k", &entry("alice", &["bob", "carol"], 60))]);
    assert_eq!(
        rule_of(edit("UPDATE", "bob", &["sre"], Some(old), Some(doubled))),
        LedgerRule::SeveralApprovers
    );
}

#[test]
fn nobody_approves_their_own_request_by_name_or_group() {
    let old = cm(&[("k", &entry("alice", &[], 60))]);
    let own = cm(&[("k", &entry("alice", &["alice"], 60))]);
    assert_eq!(
        rule_of(edit("UPDATE", "alice", &["sre"], Some(old), Some(own))),
        LedgerRule::SelfApproval
    );
    let group_entry = entry("alice", &[], 60).replace("user: alice", "group: sre");
    let old = cm(&[("k", &group_entry)]);
    let signed = cm(&[(
        "k",
        &group_entry.replace("approvedBy: []", "approvedBy: [\"bob\"]"),
    )]);
    assert_eq!(
        rule_of(edit("UPDATE", "bob", &["sre"], Some(old), Some(signed))),
        LedgerRule::SelfApproval
    );
}

#[test]
fn an_approver_outside_approver_groups_is_refused() {
    let old = cm(&[("k", &entry("alice", &[], 60))]);
    let new = cm(&[("k", &entry("alice", &["bob"], 60))]);
    assert_eq!(
        rule_of(edit(
            "UPDATE",
            "bob",
            &["dev", "system:masters"],
            Some(old),
            Some(new)
        )),
        LedgerRule::ApproverNotAllowed
    );
}

#[test]
fn a_signed_entry_cannot_be_widened_or_lengthened_but_may_be_shortened() {
    let signed = entry("alice", &["bob"], 60);
    let old = cm(&[("k", &signed)]);
    let wider = cm(&[("k", &signed.replace("name: db\n", ""))]);
    assert_eq!(
        rule_of(edit("UPDATE", "alice", &[], Some(old.clone()), Some(wider))),
        LedgerRule::SignedEntryChanged
    );
    let longer = cm(&[("k", &entry("alice", &["bob"], 90))]);
    assert_eq!(
        rule_of(edit("UPDATE", "alice", &[], Some(old.clone()), Some(longer))),
        LedgerRule::SignedEntryChanged
    );
    let shorter = cm(&[("k", &entry("alice", &["bob"], 30))]);
    let changes = edit("UPDATE", "alice", &[], Some(old.clone()), Some(shorter)).unwrap();
    assert_eq!(changes[0].action, Action::Shortened);
    let unsigned = cm(&[("k", &entry("alice", &[], 60))]);
    assert_eq!(
        rule_of(edit("UPDATE", "bob", &["sre"], Some(old), Some(unsigned))),
        LedgerRule::ApproverRemoved
    );
}

#[test]
fn expiry_must_be_ahead_and_within_max_duration() {
    let too_far = cm(&[("k", &entry("alice", &[], 4 * 60 + 5))]);
    assert_eq!(
        rule_of(edit("CREATE", "alice", &[], None, Some(too_far))),
        LedgerRule::ExpiryTooFar
    );
    let past = cm(&[("k", &entry("alice", &[], -5))]);
    assert_eq!(
        rule_of(edit("CREATE", "alice", &[], None, Some(past))),
        LedgerRule::ExpiryInPast
    );
    let at_limit = cm(&[("k", &entry("alice", &[], 4 * 60))]);
    assert!(edit("CREATE", "alice", &[], None, Some(at_limit)).is_ok());
}

#[test]
fn a_malformed_or_ungated_entry_is_refused() {
    let broken = cm(&[("k", "user: alice\ncolour: blue\n")]);
    assert_eq!(
        rule_of(edit("CREATE", "alice", &[], None, Some(broken))),
        LedgerRule::Malformed
    );
    let staging = cm(&[(
        "k",
        &entry("alice", &[], 60).replace("namespace: prod", "namespace: staging"),
    )]);
    assert_eq!(
        rule_of(edit("CREATE", "alice", &[], None, Some(staging))),
        LedgerRule::NotGated
    );
    let wildcard = cm(&[(
        "k",
        &entry("alice", &[], 60).replace("namespace: prod", "namespace: \"prod*\""),
    )]);
    assert_eq!(
        rule_of(edit("CREATE", "alice", &[], None, Some(wildcard))),
        LedgerRule::Malformed
    );
}

#[test]
fn a_request_for_someone_else_needs_an_approver() {
    let for_alice = cm(&[("k", &entry("alice", &[], 60))]);
    assert_eq!(
        rule_of(edit("CREATE", "mallory", &["dev"], None, Some(for_alice.clone()))),
        LedgerRule::NotRequester
    );
    let grant = cm(&[("k", &entry("alice", &["bob"], 60))]);
    let changes = edit("CREATE", "bob", &["sre"], None, Some(grant)).unwrap();
    assert_eq!(
        changes[0].action,
        Action::Approved,
        "an approver grants directly, listing only themselves"
    );
}

#[test]
fn revocation_is_for_the_requester_approvers_and_eligible_approvers() {
    let old = cm(&[("k", &entry("alice", &["bob"], 60))]);
    for (who, groups) in [("alice", vec![]), ("bob", vec![]), ("carol", vec!["sre"])] {
        let changes = edit("UPDATE", who, &groups, Some(old.clone()), Some(cm(&[]))).unwrap();
        assert_eq!(changes[0].action, Action::Revoked, "{who}");
    }
    assert_eq!(
        rule_of(edit(
            "UPDATE",
            "mallory",
            &["dev"],
            Some(old.clone()),
            Some(cm(&[]))
        )),
        LedgerRule::RevocationNotAllowed
    );
    assert_eq!(
        rule_of(edit(
            "DELETE",
            "system:admin",
            &["system:masters"],
            Some(old),
            None
        )),
        LedgerRule::RevocationNotAllowed
    );
}

#[test]
fn removing_an_expired_entry_is_housekeeping_anyone_may_do() {
    let old = cm(&[("k", &entry("alice", &["bob"], -10))]);
    let changes = edit("UPDATE", "mallory", &[], Some(old), Some(cm(&[]))).unwrap();
    assert_eq!(changes[0].action, Action::ExpiredOnEdit);
}

#[test]
fn unchanged_entries_are_not_judged_again() {
    let expired = entry("alice", &["bob"], -10);
    let old = cm(&[("old", &expired)]);
    let new = cm(&[("old", &expired), ("k", &entry("dave", &[], 60))]);
    let changes = edit("UPDATE", "dave", &[], Some(old), Some(new)).unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].id, "approvals/k");
}

/// POLICIES, with break-glass for group `oncall`.
fn break_glass_policies() -> String {
    POLICIES.replace(
        "approverGroups: [\"sre\"] }",
        "approverGroups: [\"sre\"] }\n  breakGlass: { groups: [\"oncall\"], maxDuration: 1h, reviewWithin: 24h }",
    )
}

fn glass(user: &str, approvers: &[&str], expires_in_mins: i64) -> String {
    entry(user, approvers, expires_in_mins) + "breakGlass: true\n"
}

fn bg_edit(
    editor: &str,
    groups: &[&str],
    old: &[(&str, &str)],
    new: &[(&str, &str)],
) -> Result<Vec<EntryEdit>, Violation> {
    edit_under(
        &break_glass_policies(),
        "UPDATE",
        editor,
        groups,
        Some(cm(old)),
        Some(cm(new)),
    )
}

#[test]
fn a_break_glass_entry_is_written_by_its_user_in_a_break_glass_group() {
    let own = glass("alice", &[], 30);
    let changes = bg_edit("alice", &["oncall"], &[], &[("k", &own)]).unwrap();
    assert_eq!(changes[0].action, Action::BreakGlass);
    assert_eq!(changes[0].approvers, 0);

    let refused = |editor: &str, groups: &[&str], text: &str| {
        bg_edit(editor, groups, &[], &[("k", text)])
            .map(|_| ())
            .unwrap_err()
    };
    let v = refused("alice", &["dev"], &own);
    assert_eq!(v.rule, LedgerRule::BreakGlassNotAllowed);
    assert!(
        v.message
            .contains("none of the breakGlass groups of policy prod-secrets"),
        "{}",
        v.message
    );
    assert_eq!(
        refused("bob", &["oncall", "sre"], &own).rule,
        LedgerRule::BreakGlassNotAllowed,
        "for someone else"
    );
    assert_eq!(
        refused("alice", &["oncall"], &glass("alice", &["bob"], 30)).rule,
        LedgerRule::BreakGlassNotAllowed
    );
    assert_eq!(
        refused("alice", &["oncall"], &glass("alice", &[], 90)).rule,
        LedgerRule::ExpiryTooFar,
        "past breakGlass.maxDuration"
    );
    let no_reason = own.replace("reason: \"INC-1\"", "reason: \"\"");
    assert_eq!(
        refused("alice", &["oncall"], &no_reason).rule,
        LedgerRule::Malformed
    );
    // Under a policy without breakGlass, nobody may.
    let v = edit(
        "UPDATE",
        "alice",
        &["oncall"],
        Some(cm(&[])),
        Some(cm(&[("k", &own)])),
    )
    .unwrap_err();
    assert_eq!(v.rule, LedgerRule::BreakGlassNotAllowed);
    assert!(v.message.contains("allows no break-glass"), "{}", v.message);
}

#[test]
fn a_break_glass_entry_is_reviewed_by_an_approver_and_only_then_removed() {
    let open = glass("alice", &[], -10);
    let reviewed = glass("alice", &["bob"], -10);
    // Removing it unreviewed is refused to everyone, its user and approvers alike.
    for (editor, groups) in [("alice", &["oncall"][..]), ("bob", &["sre"][..])] {
        let v = bg_edit(editor, groups, &[("k", &open)], &[]).unwrap_err();
        assert_eq!(v.rule, LedgerRule::BreakGlassUnreviewed);
    }
    // Its user cannot review it; an approver can, after it expired.
    let v = bg_edit(
        "alice",
        &["oncall", "sre"],
        &[("k", &open)],
        &[("k", &glass("alice", &["alice"], -10))],
    )
    .unwrap_err();
    assert_eq!(v.rule, LedgerRule::SelfApproval);
    let v = bg_edit(
        "carol",
        &["dev"],
        &[("k", &open)],
        &[("k", &reviewed.replace("bob", "carol"))],
    )
    .unwrap_err();
    assert_eq!(v.rule, LedgerRule::ApproverNotAllowed);
    let changes = bg_edit("bob", &["sre"], &[("k", &open)], &[("k", &reviewed)]).unwrap();
    assert_eq!(changes[0].action, Action::Reviewed);
    // Its terms are fixed: it cannot be lengthened.
    let v = bg_edit(
        "alice",
        &["oncall"],
        &[("k", &glass("alice", &[], 10))],
        &[("k", &glass("alice", &[], 50))],
    )
    .unwrap_err();
    assert_eq!(v.rule, LedgerRule::SignedEntryChanged);
    let changes = bg_edit("carol", &["dev"], &[("k", &reviewed)], &[]).unwrap();
    assert_eq!(changes[0].action, Action::ExpiredOnEdit);
}

/// alice's `for:` entry, `approvers` and `approved_at` (minutes from now) as given.
fn for_entry(approvers: &[&str], valid_for: &str, approved_at: Option<i64>) -> String {
    let approvers: Vec<String> = approvers.iter().map(|a| format!("{a:?}")).collect();
    let stamp = approved_at.map_or(String::new(), |m| {
        format!("approvedAt: \"{}\"\n", now() + SignedDuration::from_mins(m))
    });
    format!(
        "user: alice\nresource: secrets\nnamespace: prod\nname: db\noperations: [UPDATE]\nfor: {valid_for}\n{stamp}reason: \"INC-1\"\napprovedBy: [{}]\n",
        approvers.join(", ")
    )
}

#[test]
fn a_for_entry_starts_its_clock_with_the_last_approver_and_only_then() {
    let pending = cm(&[("k", &for_entry(&[], "1h", None))]);
    assert!(edit("UPDATE", "alice", &["dev"], Some(cm(&[])), Some(pending.clone())).is_ok());
    // The approver who completes it stamps approvedAt, now.
    let stamped = cm(&[("k", &for_entry(&["bob"], "1h", Some(0)))]);
    let changes = edit(
        "UPDATE",
        "bob",
        &["sre"],
        Some(pending.clone()),
        Some(stamped.clone()),
    )
    .unwrap();
    assert_eq!(changes[0].action, Action::Approved);
    assert_eq!(
        changes[0].entry.as_ref().unwrap().expires_at,
        now() + SignedDuration::from_hours(1),
        "valid until approval + 1h"
    );
    // Completing it without the stamp, or with a stamp that is not now, is refused.
    let unstamped = cm(&[("k", &for_entry(&["bob"], "1h", None))]);
    let r = edit("UPDATE", "bob", &["sre"], Some(pending.clone()), Some(unstamped));
    assert_eq!(
        rule_of(r),
        LedgerRule::ApprovedAtNotStamped,
        "the last approver must start the clock"
    );
    let backdated = cm(&[("k", &for_entry(&["bob"], "1h", Some(-45)))]);
    assert_eq!(
        rule_of(edit(
            "UPDATE",
            "bob",
            &["sre"],
            Some(pending.clone()),
            Some(backdated)
        )),
        LedgerRule::ApprovedAtNotStamped
    );
    // The requester cannot set it by hand, nor anyone move it later.
    let by_hand = cm(&[("k", &for_entry(&[], "1h", Some(0)))]);
    assert_eq!(
        rule_of(edit("UPDATE", "alice", &["dev"], Some(cm(&[])), Some(by_hand))),
        LedgerRule::ApprovedAtNotStamped
    );
    let moved = cm(&[("k", &for_entry(&["bob", "carol"], "1h", Some(20)))]);
    assert_eq!(
        rule_of(edit("UPDATE", "carol", &["sre"], Some(stamped), Some(moved))),
        LedgerRule::ApprovedAtNotStamped
    );
    // Never longer than the policy allows.
    let too_long = cm(&[("k", &for_entry(&[], "5h", None))]);
    assert_eq!(
        rule_of(edit("UPDATE", "alice", &["dev"], Some(cm(&[])), Some(too_long))),
        LedgerRule::ExpiryTooFar
    );
}

#[test]
fn a_for_entry_needing_two_approvers_takes_the_first_unstamped_and_the_second_stamped() {
    let two = POLICIES.replace("minApprovers: 1", "minApprovers: 2");
    let pending = cm(&[("k", &for_entry(&[], "1h", None))]);
    let first = cm(&[("k", &for_entry(&["bob"], "1h", None))]);
    let changes = edit_under(
        &two,
        "UPDATE",
        "bob",
        &["sre"],
        Some(pending.clone()),
        Some(first.clone()),
    )
    .unwrap();
    assert_eq!((changes[0].action, changes[0].approvers), (Action::Approved, 1));
    // The first approver may not start the clock: the entry is not complete.
    let early = cm(&[("k", &for_entry(&["bob"], "1h", Some(0)))]);
    assert_eq!(
        rule_of(edit_under(
            &two,
            "UPDATE",
            "bob",
            &["sre"],
            Some(pending),
            Some(early)
        )),
        LedgerRule::ApprovedAtNotStamped
    );
    let second = cm(&[("k", &for_entry(&["bob", "carol"], "1h", Some(0)))]);
    let changes = edit_under(
        &two,
        "UPDATE",
        "carol",
        &["sre"],
        Some(first.clone()),
        Some(second),
    )
    .unwrap();
    assert_eq!((changes[0].action, changes[0].approvers), (Action::Approved, 2));
    assert_eq!(
        changes[0].entry.as_ref().unwrap().expires_at,
        now() + SignedDuration::from_hours(1)
    );
    // The second without the stamp is refused, saying what to add.
    let unstamped = cm(&[("k", &for_entry(&["bob", "carol"], "1h", None))]);
    let v = edit_under(&two, "UPDATE", "carol", &["sre"], Some(first), Some(unstamped)).unwrap_err();
    assert_eq!(v.rule, LedgerRule::ApprovedAtNotStamped);
    assert!(v.message.contains("add approvedAt"), "{}", v.message);
}

#[test]
fn a_request_that_waited_past_its_request_ttl_cannot_be_approved_and_anyone_may_clear_it() {
    // Keys that `jitgate request` writes end in the minute they were asked.
    let asked = |hours_ago: i64| {
        (now() - SignedDuration::from_hours(hours_ago))
            .strftime("%Y%m%d%H%M")
            .to_string()
    };
    let stale_key = format!("alice-db-{}", asked(25));
    let fresh_key = format!("alice-db-{}", asked(1));
    let stale = cm(&[(&stale_key, &entry("alice", &[], 60))]);
    let approved = cm(&[(&stale_key, &entry("alice", &["bob"], 60))]);
    let r = edit("UPDATE", "bob", &["sre"], Some(stale.clone()), Some(approved));
    let v = r.unwrap_err();
    assert_eq!(v.rule, LedgerRule::ExpiryInPast);
    assert!(v.message.contains("expired unapproved"), "{}", v.message);
    let fresh = cm(&[(&fresh_key, &entry("alice", &[], 60))]);
    let approved = cm(&[(&fresh_key, &entry("alice", &["bob"], 60))]);
    assert!(edit("UPDATE", "bob", &["sre"], Some(fresh), Some(approved)).is_ok());
    // jitgate's own service account clears it: housekeeping, allowed to anyone.
    let changes = edit(
        "UPDATE",
        "system:serviceaccount:jitgate-system:jitgate",
        &[],
        Some(stale),
        Some(cm(&[])),
    )
    .unwrap();
    assert_eq!(changes[0].action, Action::ExpiredOnEdit);
}

#[test]
fn a_pending_request_is_amended_only_by_its_requester_or_an_approver_and_never_for_someone_else() {
    let pending = cm(&[("k", &entry("alice", &[], 60))]);
    let amend = |editor: &str, groups: &[&str], text: String| {
        edit(
            "UPDATE",
            editor,
            groups,
            Some(pending.clone()),
            Some(cm(&[("k", &text)])),
        )
    };
    // Mallory takes Alice's request over, or rewrites its terms: refused.
    let taken = amend("mallory", &["dev"], entry("mallory", &[], 60)).unwrap_err();
    assert_eq!(taken.rule, LedgerRule::NotRequester);
    assert!(
        taken
            .message
            .contains("\"mallory\" may not amend this pending request: it is user:alice's"),
        "{}",
        taken.message
    );
    let reworded = entry("alice", &[], 60).replace("INC-1", "INC-666");
    assert_eq!(
        rule_of(amend("mallory", &["dev"], reworded.clone())),
        LedgerRule::NotRequester
    );
    // Nobody changes whom it is for, not even its requester or an approver.
    for (who, groups) in [("alice", &["dev"][..]), ("bob", &["sre"][..])] {
        let v = amend(who, groups, entry("carol", &[], 60)).unwrap_err();
        assert_eq!(v.rule, LedgerRule::SubjectChanged, "{who}");
        assert!(v.message.contains("delete it and request anew"), "{}", v.message);
    }
    // Its requester, or an approver, may amend its terms.
    for (who, groups) in [("alice", &["dev"][..]), ("bob", &["sre"][..])] {
        let changes = amend(who, groups, reworded.clone()).unwrap();
        assert_eq!(changes[0].action, Action::Requested, "{who}");
    }
}
