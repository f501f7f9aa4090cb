//! Edits of an approvals ConfigMap, built from structured input: who edits, which entries
//! were there and which are there after, each from templates or raw text. Invariants:
//! nothing panics; an accepted approval (or review) was added by the editor, who is not the
//! requester; a break-glass entry is accepted only from its own user, in a break-glass
//! group, with no approvers; a break-glass entry is never removed unreviewed; a signature
//! counted after an accepted edit is a trusted signer's, never the requester's.
#![no_main]

use arbitrary::Arbitrary;
use jitgate::admission::decode;
use jitgate::decision::{Approvals, Inputs, Reason, decide};
use jitgate::ledger::Action;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static NOW: LazyLock<jiff::Timestamp> = LazyLock::new(|| "2026-11-21T20:00:00Z".parse().unwrap());
/// The shipped policies, with approvers from group `sre` and break-glass for group `oncall`
/// on prod-secrets.
static POLICIES: LazyLock<jitgate::policy::PolicySet> = LazyLock::new(|| {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies");
    let mut all = Vec::new();
    for file in ["prod-secrets.yaml", "prod-workloads.yaml", "prod-pod-access.yaml"] {
        let mut text = std::fs::read_to_string(format!("{dir}/{file}")).unwrap();
        if file == "prod-secrets.yaml" {
            text = text.replace(
                "    approverGroups: [\"jitgate-approvers\"]",
                "    approverGroups: [sre]\n  breakGlass: { groups: [oncall], maxDuration: 1h, reviewWithin: 24h }",
            );
            assert!(text.contains("breakGlass"), "the shipped prod-secrets policy changed: update the fuzz target");
        }
        all.extend(jitgate::policy::parse_policies(&text, file).unwrap());
    }
    jitgate::policy::PolicySet::new(all).unwrap()
});

const PEOPLE: [&str; 4] = ["alice", "bob", "carol", "system:admin"];

/// Keys for alice, bob and carol (trusted, in group sre), and one trusted under no name.
static KEYS: LazyLock<Vec<jitgate::signing::PrivateKey>> =
    LazyLock::new(|| (0..4).map(|_| jitgate::signing::PrivateKey::generate().unwrap().0).collect());
static SNAPSHOT: LazyLock<jitgate::approvals::Snapshot> = LazyLock::new(|| {
    let data: std::collections::BTreeMap<String, String> = (0..3)
        .map(|i| (PEOPLE[i].to_string(), format!("publicKey: {}\nuser: {}\ngroups: [sre]\n", KEYS[i].public(), PEOPLE[i])))
        .collect();
    let signers = jitgate::signing::Signers::from_data(Default::default(), &data).0;
    jitgate::approvals::Snapshot::signed(
        Vec::new(),
        0,
        Default::default(),
        std::sync::Arc::new(signers),
        *NOW,
    )
});
const GROUPS: [&str; 4] = ["sre", "dev", "system:masters", "oncall"];

#[derive(Arbitrary, Debug)]
enum Text {
    Template {
        user: u8,
        group_entry: bool,
        expires_min: i16,
        approvers: Vec<u8>,
        name: bool,
        break_glass: bool,
        /// (signer name, key): signed as PEOPLE[name] with KEYS[key].
        signatures: Vec<(u8, u8)>,
        /// Sign for another key of the ConfigMap than the one it is written under.
        sign_other_id: bool,
    },
    Raw(String),
}

impl Text {
    fn render(&self, key: &str) -> String {
        match self {
            Text::Raw(s) => s.clone(),
            Text::Template { user, group_entry, expires_min, approvers, name, break_glass, signatures, sign_other_id } => {
                let subject = if *group_entry {
                    format!("group: {}", GROUPS[*user as usize % 4])
                } else {
                    format!("user: {}", PEOPLE[*user as usize % 4])
                };
                let expires = *NOW + jiff::SignedDuration::from_mins(i64::from(*expires_min));
                let approvers: Vec<&str> = approvers.iter().take(4).map(|a| PEOPLE[*a as usize % 4]).collect();
                let text = format!(
                    "{subject}\nresource: secrets\nnamespace: prod\n{}{}expiresAt: \"{expires}\"\nreason: r\napprovedBy: [{}]\n",
                    if *name { "name: db\n" } else { "" },
                    if *break_glass { "breakGlass: true\n" } else { "" },
                    approvers.join(", ")
                );
                if signatures.is_empty() {
                    return text;
                }
                let id = if *sign_other_id { "approvals/other".to_string() } else { format!("approvals/{key}") };
                let Ok(mut a) = jitgate::approvals::parse_entry(&id, &text) else { return text };
                for (signer, k) in signatures.iter().take(3) {
                    let not_after = a.valid_for.map(|d| *NOW + d);
                    let sig = jitgate::signing::sign(
                        &a.terms(),
                        &Default::default(),
                        PEOPLE[*signer as usize % 4],
                        &KEYS[*k as usize % 4],
                        not_after,
                    );
                    a.signatures.push(sig);
                }
                a.to_yaml()
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Edit {
    editor: u8,
    groups: Vec<u8>,
    operation: u8,
    old: Vec<(u8, Text)>,
    new: Vec<(u8, Text)>,
    old_labelled: bool,
    new_labelled: bool,
}

fn configmap(entries: &[(u8, Text)], labelled: bool) -> serde_json::Value {
    let data: serde_json::Map<String, serde_json::Value> =
        entries.iter().take(6).map(|(k, t)| {
            let key = format!("k{}", k % 4);
            let text = t.render(&key);
            (key, text.into())
        }).collect();
    let labels = if labelled { serde_json::json!({"jitgate.dev/approvals": "true"}) } else { serde_json::json!({}) };
    serde_json::json!({"kind": "ConfigMap", "apiVersion": "v1",
        "metadata": {"name": "approvals", "namespace": "jitgate-system", "labels": labels}, "data": data})
}

fuzz_target!(|e: Edit| {
    let editor = PEOPLE[e.editor as usize % 4];
    let groups: Vec<&str> = e.groups.iter().take(3).map(|g| GROUPS[*g as usize % 4]).collect();
    let op = ["CREATE", "UPDATE", "DELETE"][e.operation as usize % 3];
    let old = (op != "CREATE").then(|| configmap(&e.old, e.old_labelled || !e.new_labelled));
    let new = (op != "DELETE").then(|| configmap(&e.new, e.new_labelled));
    let body = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u", "resource": {"group": "", "version": "v1", "resource": "configmaps"},
        "namespace": "jitgate-system", "name": "approvals", "operation": op,
        "userInfo": {"username": editor, "groups": groups}, "object": new, "oldObject": old}})
    .to_string();
    let req = decode(body.as_bytes()).unwrap();
    let inputs = Inputs { policies: &POLICIES, approvals: Approvals::Loaded(&SNAPSHOT), now: *NOW };
    let decision = decide(&req, &inputs);
    assert_eq!(jitgate::respond::admission(&req, &decision).allowed, decision.allowed());
    let Reason::LedgerAccepted { edits: changes } = decision.reason else { return };
    for change in changes {
        if change.action == Action::BreakGlass {
            let entry = change.entry.as_ref().expect("a break-glass change has its entry");
            assert!(entry.break_glass);
            assert_eq!(entry.subject, jitgate::approvals::Subject::User(editor.into()), "break-glass for another");
            assert!(entry.approved_by.is_empty(), "break-glass with approvers");
            assert!(groups.contains(&"oncall"), "break-glass outside a break-glass group");
        }
        if matches!(change.action, Action::Revoked | Action::ExpiredOnEdit)
            && change.entry.as_ref().is_some_and(|e| e.break_glass)
        {
            assert!(change.approvers > 0, "an unreviewed break-glass entry removed");
        }
        if let Some(entry) = change.entry.as_ref() {
            for signer in &change.signers {
                assert!(PEOPLE[..3].contains(&signer.as_str()), "an untrusted signer counted");
                match &entry.subject {
                    jitgate::approvals::Subject::User(u) => assert_ne!(&**u, signer.as_str(), "a self-signature counted"),
                    jitgate::approvals::Subject::Group(g) => assert_ne!(&**g, "sre", "a signature by a member counted"),
                }
            }
        }
        if matches!(change.action, Action::Approved | Action::Reviewed) {
            let entry = change.entry.expect("an approval has its entry");
            assert!(entry.approved_by.iter().any(|n| &**n == editor), "approved without the editor's name");
            match &entry.subject {
                jitgate::approvals::Subject::User(u) => assert_ne!(&**u, editor, "self-approval accepted"),
                jitgate::approvals::Subject::Group(g) => assert!(!groups.contains(&&**g), "self-approval by group"),
            }
        }
    }
});
