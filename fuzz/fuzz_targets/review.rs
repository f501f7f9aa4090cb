//! Any bytes as a /validate body: decoded, decided against the shipped policies and a set of
//! approvals, explained, recorded, or judged by the ledger, exactly as the server does.
//! Invariants: nothing panics; an answer carries the request's uid; a grant names an
//! approval that matches the request.
#![no_main]

use jitgate::admission::decode;
use jitgate::approvals::{ApprovalIndex, ConfigMapRef, parse_entry};
use jitgate::decision::{Approvals, Reason, Verdict, decide, judge};
use jitgate::policy::PolicySet;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, LazyLock};

static NOW: LazyLock<jiff::Timestamp> = LazyLock::new(|| "2026-11-21T20:00:00Z".parse().unwrap());
static POLICIES: LazyLock<PolicySet> =
    LazyLock::new(|| jitgate::policy::load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies").as_ref()).unwrap());
static INDEX: LazyLock<ApprovalIndex> = LazyLock::new(|| {
    let entries = [
        "user: kubernetes-admin\nresource: secrets\nnamespace: prod\nexpiresAt: \"2026-11-21T21:00:00Z\"\nreason: r\napprovedBy: [bob]\n",
        "group: system:masters\nresource: deployments\nnamespace: prod\noperations: [UPDATE]\nexpiresAt: \"2026-11-21T21:00:00Z\"\nreason: r\napprovedBy: [bob]\n",
        "user: alice\nresource: pods/exec\nnamespace: prod\nname: web\nexpiresAt: \"2026-11-21T20:30:00Z\"\nreason: r\napprovedBy: [alice]\n",
    ];
    let approvals = entries.iter().enumerate().map(|(i, e)| Arc::new(parse_entry(&format!("f/{i}"), e).unwrap()));
    ApprovalIndex::build(approvals, *NOW)
});

fuzz_target!(|body: &[u8]| {
    let Ok(req) = decode(body) else { return };
    if jitgate::ledger::applies(&req) {
        let _ = jitgate::ledger::review(&req, &POLICIES, *NOW, Default::default());
        return;
    }
    let d = decide(&req, &POLICIES, Approvals::Loaded(&INDEX), *NOW);
    if d.allowed() {
        assert!(matches!(d.reason, Reason::NotGated | Reason::Exempt | Reason::Approved | Reason::BreakGlass));
    }
    if d.reason == Reason::Approved {
        let a = d.approval.as_ref().expect("a grant names its approval");
        let requirement = d.requirement.as_ref().expect("a grant has a requirement");
        let change = jitgate::change::of(&req).map(|c| c.fingerprint);
        assert_eq!(judge(a, &req.user_info.username, requirement, change.as_deref(), *NOW), Verdict::Valid);
        assert_eq!(a.namespace, req.namespace);
        assert_eq!(a.resource, req.resource.resource);
    }
    let response = jitgate::explain::response(&req, &d, &ConfigMapRef::default(), *NOW);
    assert_eq!(response.uid, req.uid);
    let _ = jitgate::audit::DecisionRecord::decided(&req, &d, *NOW, 1).to_line();
});
