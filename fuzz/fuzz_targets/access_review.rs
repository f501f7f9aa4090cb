//! Any bytes as a /authorize body: decoded as a SubjectAccessReview, decided against the
//! shipped policies and a set of approvals, answered and recorded, through the server's
//! own entry point.
//! Invariants: nothing panics; the answer is never `allowed: true`; it is a denial exactly
//! when the decision denies; a read no policy gates is never denied.
#![no_main]

use jitgate::approvals::{ConfigMapRef, Snapshot, parse_entry};
use jitgate::authorization::decode;
use jitgate::respond::access as respond;
use jitgate::decision::{Approvals, Code, Inputs, decide};
use jitgate::policy::PolicySet;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, LazyLock};

static NOW: LazyLock<jiff::Timestamp> = LazyLock::new(|| "2026-11-21T20:00:00Z".parse().unwrap());
static POLICIES: LazyLock<PolicySet> =
    LazyLock::new(|| jitgate::sync::policies::load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies").as_ref()).unwrap());
static SNAPSHOT: LazyLock<Snapshot> = LazyLock::new(|| {
    let entries = [
        "user: bob\nresource: secrets\nnamespace: prod\nname: db-pass\nverbs: [get]\nexpiresAt: \"2026-11-21T20:30:00Z\"\nreason: r\napprovedBy: [carol]\n",
        "group: dev-team\nresource: secrets\nnamespace: prod\nverbs: [list, watch]\nmaxUses: 1\nexpiresAt: \"2026-11-21T20:30:00Z\"\nreason: r\napprovedBy: [carol]\n",
        "user: bob\nresource: pods/log\nnamespace: prod\nexpiresAt: \"2026-11-21T20:30:00Z\"\nreason: r\napprovedBy: [bob]\n",
    ];
    let approvals = entries.iter().enumerate().map(|(i, e)| Arc::new(parse_entry(&format!("f/{i}"), e).unwrap()));
    Snapshot::new(approvals.collect(), 0, ConfigMapRef::default(), *NOW)
});

fuzz_target!(|body: &[u8]| {
    let Ok(req) = decode(body) else { return };
    let inputs = Inputs { policies: &POLICIES, approvals: Approvals::Loaded(&SNAPSHOT), now: *NOW };
    let d = decide(&req, &inputs);
    let status = respond(&req, &d);
    assert!(!status.allowed);
    assert_eq!(status.denied, !d.allowed());
    // No shipped policy grants, so a write or a CONNECT is never jitgate's to answer here.
    if req.operation().is_none_or(|op| !op.is_read()) {
        assert_eq!(d.code(), Code::NotGated);
    }
    let _ = jitgate::audit::DecisionRecord::decided(&req, Some("read-0".into()), &d, 1).to_line();
});
