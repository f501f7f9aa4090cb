//! Any bytes as a /validate body: decoded, decided against the shipped policies and a set of
//! approvals (an edit of an approvals ConfigMap judged by the ledger), answered and
//! recorded, through the server's own entry point.
//! Invariants: nothing panics; an answer carries the request's uid; a grant names an
//! approval that matches the request.
#![no_main]

use jitgate::admission::decode;
use jitgate::approvals::{ConfigMapRef, Snapshot, parse_entry};
use jitgate::decision::{Approvals, Code, Inputs, Reason, Verdict, decide, judge};
use jitgate::policy::PolicySet;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, LazyLock};

static NOW: LazyLock<jiff::Timestamp> = LazyLock::new(|| "2026-11-21T20:00:00Z".parse().unwrap());
static POLICIES: LazyLock<PolicySet> =
    LazyLock::new(|| jitgate::sync::policies::load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies").as_ref()).unwrap());
static SNAPSHOT: LazyLock<Snapshot> = LazyLock::new(|| {
    let entries = [
        "user: kubernetes-admin\nresource: secrets\nnamespace: prod\nexpiresAt: \"2026-11-21T21:00:00Z\"\nreason: r\napprovedBy: [bob]\n",
        "group: system:masters\nresource: deployments\nnamespace: prod\noperations: [UPDATE]\nexpiresAt: \"2026-11-21T21:00:00Z\"\nreason: r\napprovedBy: [bob]\n",
        "user: alice\nresource: pods/exec\nnamespace: prod\nname: web\nexpiresAt: \"2026-11-21T20:30:00Z\"\nreason: r\napprovedBy: [alice]\n",
    ];
    let approvals = entries.iter().enumerate().map(|(i, e)| Arc::new(parse_entry(&format!("f/{i}"), e).unwrap()));
    Snapshot::new(approvals.collect(), 0, ConfigMapRef::default(), *NOW)
});

fuzz_target!(|body: &[u8]| {
    let Ok(req) = decode(body) else { return };
    let inputs = Inputs { policies: &POLICIES, approvals: Approvals::Loaded(&SNAPSHOT), now: *NOW };
    let d = decide(&req, &inputs);
    if d.allowed() {
        assert!(matches!(
            d.code(),
            Code::NotGated | Code::Exempt | Code::Approved | Code::BreakGlass | Code::LedgerAccepted
        ));
    }
    if let Reason::Approved { approval: a, requirement } = &d.reason {
        let change = jitgate::change::of(&req).map(|c| c.fingerprint);
        assert_eq!(judge(a, &req.user_info.username, requirement, change.as_deref(), *NOW), Verdict::Valid);
        assert_eq!(&*a.namespace, req.namespace.as_str());
        assert_eq!(&*a.resource, req.resource.resource.as_str());
    }
    let response = jitgate::respond::admission(&req, &d);
    assert_eq!(response.uid, req.uid);
    assert_eq!(response.allowed, d.allowed());
    let _ = jitgate::audit::DecisionRecord::decided(&req, Some(req.uid.clone()), &d, 1).to_line();
});
