//! Any text as an approval entry. Invariants: nothing panics; an accepted entry names
//! exactly one subject, an exact namespace and resource, and a non-empty reason.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(a) = jitgate::approvals::parse_entry("cm/key", text) {
        assert!(!a.namespace.contains('*') && !a.resource.contains('*'));
        assert!(!a.resource.is_empty());
        assert!(!a.reason.trim().is_empty());
    }
});
