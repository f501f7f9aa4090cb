//! Any text as a policy file: parsed, indexed, and rendered into a webhook configuration.
//! Invariant: nothing panics; an accepted policy requires at least one approver.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(policies) = jitgate::policy::parse_policies(text, "fuzz.yaml") else { return };
    assert!(policies.iter().all(|p| p.min_approvers >= 1));
    if let Ok(set) = jitgate::policy::PolicySet::new(policies) {
        let target = jitgate::manifests::Service { service: "jitgate", namespace: "jitgate-system" };
        let _ = jitgate::manifests::webhook_yaml(&set, &target);
    }
});
