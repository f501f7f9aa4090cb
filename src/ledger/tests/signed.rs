//! Offline approvals and levels of approvers, as the ledger judges them.

use super::*;
use crate::approvals::parse_entry;
use crate::signing::{PrivateKey, Signers, sign};
use std::collections::BTreeMap;

struct Keys {
    alice: PrivateKey,
    bob: PrivateKey,
    olivia: PrivateKey,
    stranger: PrivateKey,
}

/// Trusted: alice (sre, until well after now), bob (the requester, sre), olivia (sre, her
/// key expired), dev-dan (only in dev). The stranger's key is trusted under no name.
fn trust() -> Keys {
    let keys = Keys {
        alice: PrivateKey::generate().unwrap().0,
        bob: PrivateKey::generate().unwrap().0,
        olivia: PrivateKey::generate().unwrap().0,
        stranger: PrivateKey::generate().unwrap().0,
    };
    let data = BTreeMap::from([
        (
            "alice".to_string(),
            format!(
                "publicKey: {}\nuser: alice@corp\ngroups: [sre, security]\nnotAfter: \"2027-01-01T00:00:00Z\"\n",
                keys.alice.public()
            ),
        ),
        (
            "bob".to_string(),
            format!("publicKey: {}\nuser: bob\ngroups: [sre]\n", keys.bob.public()),
        ),
        (
            "olivia".to_string(),
            format!(
                "publicKey: {}\nuser: olivia\ngroups: [sre]\nnotAfter: \"2026-11-01T00:00:00Z\"\n",
                keys.olivia.public()
            ),
        ),
        (
            "dev-dan".to_string(),
            format!(
                "publicKey: {}\nuser: dan\ngroups: [dev]\n",
                keys.stranger.public()
            ),
        ),
    ]);
    let (signers, errors) = Signers::from_data(crate::signing::Binding::default(), &data);
    assert!(errors.is_empty(), "{errors:?}");
    SIGNERS.with(|s| *s.borrow_mut() = signers);
    keys
}

/// `text` (the entry `approvals/k`) with a signature by `name` made with `key`.
fn signed_by(text: &str, name: &str, key: &PrivateKey) -> String {
    let mut a = parse_entry("approvals/k", text).unwrap();
    let s = sign(&a.terms(), &crate::signing::Binding::default(), name, key, None);
    a.rare.make_mut().signatures.push(s);
    a.to_yaml()
}

fn paste(editor: &str, old: &str, new: &str) -> Result<Vec<EntryEdit>, Violation> {
    edit(
        "UPDATE",
        editor,
        &["dev"],
        Some(cm(&[("k", old)])),
        Some(cm(&[("k", new)])),
    )
}

#[test]
fn a_signed_entry_pasted_by_its_requester_is_accepted_and_names_the_signer() {
    let keys = trust();
    let pending = entry("bob", &[], 60);
    let changes = paste("bob", &pending, &signed_by(&pending, "alice", &keys.alice)).unwrap();
    assert_eq!(changes[0].action, Action::Signed);
    assert_eq!(changes[0].signers, ["alice@corp"]);
    assert_eq!(changes[0].approvers, 1);
    // Pasted as a new entry, by anyone, it is accepted the same.
    let created = edit(
        "UPDATE",
        "carol",
        &[],
        Some(cm(&[])),
        Some(cm(&[("k", &signed_by(&pending, "alice", &keys.alice))])),
    )
    .unwrap();
    assert_eq!(created[0].action, Action::Signed);
}

#[test]
fn bad_signatures_are_refused_each_with_its_reason() {
    let keys = trust();
    let pending = entry("bob", &[], 60);
    let widened = pending.replace("name: db\n", "");
    let cases = [
        (
            signed_by(&pending, "bob", &keys.bob),
            LedgerRule::SelfApproval,
            "is by whom the entry is for",
        ),
        (
            signed_by(&pending, "mallory", &keys.stranger),
            LedgerRule::SignatureInvalid,
            "not a trusted signer",
        ),
        (
            signed_by(&pending, "alice", &keys.stranger),
            LedgerRule::SignatureInvalid,
            "is not \"alice\"'s trusted key",
        ),
        (
            // Signed for one scope, pasted with a wider one.
            {
                let sig = parse_entry("approvals/k", &signed_by(&pending, "alice", &keys.alice))
                    .unwrap()
                    .rare
                    .signatures
                    .clone();
                let mut a = parse_entry("approvals/k", &widened).unwrap();
                a.rare.make_mut().signatures = sig;
                a.to_yaml()
            },
            LedgerRule::SignatureInvalid,
            "does not verify",
        ),
        (
            signed_by(&pending, "dev-dan", &keys.stranger),
            LedgerRule::ApproverNotAllowed,
            "policy prod-secrets takes approvers from sre",
        ),
    ];
    for (pasted, rule, needle) in cases {
        let v = paste("bob", &pending, &pasted).unwrap_err();
        assert_eq!(v.rule, rule, "{v}");
        assert!(v.message.contains(needle), "{v}");
    }
}

#[test]
fn a_signer_past_their_not_after_signs_nothing() {
    let keys = trust();
    let pending = entry("bob", &[], 60);
    let v = paste("bob", &pending, &signed_by(&pending, "olivia", &keys.olivia)).unwrap_err();
    assert_eq!(v.rule, LedgerRule::SignatureInvalid);
    assert!(v.message.contains("expired at 2026-11-01T00:00:00Z"), "{v}");
}

#[test]
fn once_signed_the_terms_are_fixed_and_the_signature_stays() {
    let keys = trust();
    let pending = entry("bob", &[], 60);
    let signed = signed_by(&pending, "alice", &keys.alice);
    // Widening the signed entry afterwards, signature kept.
    let widened = signed.replace("name: \"db\"\n", "");
    assert_eq!(
        rule_of(paste("bob", &signed, &widened)),
        LedgerRule::SignedEntryChanged
    );
    // Taking the signature out.
    let v = paste("bob", &signed, &pending).unwrap_err();
    assert_eq!(v.rule, LedgerRule::ApproverRemoved);
    assert!(v.message.contains("signature by \"alice\""), "{v}");
}

const LEVELS: &str = r#"
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata: { name: prod-secrets }
spec:
  rules: [{ apiGroups: [""], resources: ["secrets"], operations: ["UPDATE", "DELETE"] }]
  namespaces: ["prod"]
  approval:
    maxDuration: 4h
    levels: [{ groups: [team-leads], count: 1 }, { groups: [security], count: 1 }]
"#;

fn approve_as(editor: &str, groups: &[&str], old: &str, new: &str) -> Result<Vec<EntryEdit>, Violation> {
    edit_under(
        LEVELS,
        "UPDATE",
        editor,
        groups,
        Some(cm(&[("k", old)])),
        Some(cm(&[("k", new)])),
    )
}

#[test]
fn under_levels_an_approver_says_which_of_their_groups_they_approve_as() {
    trust();
    let pending = entry("bob", &[], 60);
    let approved = entry("bob", &["lena"], 60);
    let v = approve_as("lena", &["team-leads"], &pending, &approved).unwrap_err();
    assert_eq!(v.rule, LedgerRule::ApproverNotAllowed);
    assert!(v.message.contains("approvedAs"), "{v}");
    let with = format!("{approved}approvedAs: {{lena: [team-leads]}}\n");
    let forged = format!("{approved}approvedAs: {{lena: [security]}}\n");
    assert_eq!(
        rule_of(approve_as("lena", &["team-leads"], &pending, &forged)),
        LedgerRule::ForgedApprover
    );
    let changes = approve_as("lena", &["team-leads"], &pending, &with).unwrap();
    assert_eq!(changes[0].action, Action::Approved);
    // Someone else cannot rewrite lena's groups, nor write them for her.
    let both = entry("bob", &["lena", "sam"], 60);
    let rewritten = format!("{both}approvedAs: {{lena: [security], sam: [security]}}\n");
    assert_eq!(
        rule_of(approve_as("sam", &["security"], &with, &rewritten)),
        LedgerRule::ForgedApprover
    );
    // A signer fills the security level: alice signs as sre and security.
    let keys = trust();
    let signed = signed_by(&with, "alice", &keys.alice);
    let changes = approve_as("bob", &["dev"], &with, &signed).unwrap();
    assert_eq!(changes[0].action, Action::Signed);
    assert_eq!(changes[0].approvers, 2);
}
