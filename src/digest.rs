//! SHA-256 as lowercase hex: the one hash of jitgate, for the audit chain and for change
//! fingerprints (ring's implementation).

use ring::digest::{SHA256, digest};
use std::fmt::Write;

pub fn sha256_hex(data: &[u8]) -> String {
    let mut hex = String::with_capacity(64);
    for byte in digest(&SHA256, data).as_ref() {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}
