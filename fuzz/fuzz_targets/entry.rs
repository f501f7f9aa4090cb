//! Any text as an approval entry. Invariants: nothing panics; an accepted entry names
//! exactly one subject, an exact namespace and resource, and a non-empty reason; written
//! back, it reads as the same entry with the same signed form, and checking its
//! signatures against a signer set never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(a) = jitgate::approvals::parse_entry("cm/key", text) {
        assert!(!a.namespace.contains('*') && !a.resource.contains('*'));
        assert!(!a.resource.is_empty());
        assert!(!a.reason.trim().is_empty());
        let back = jitgate::approvals::parse_entry("cm/key", &a.to_yaml()).expect("written back, it parses");
        let any = jitgate::signing::Binding::default();
        assert_eq!(
            jitgate::signing::canonical(&back.terms(), &any, None),
            jitgate::signing::canonical(&a.terms(), &any, None)
        );
        assert_eq!(back.signatures, a.signatures);
        let _ = a.checked_by(&jitgate::signing::Signers::default());
    }
});
