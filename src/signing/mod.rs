//! Offline approval: an approver signs an entry with their own Ed25519 key on their own
//! machine; jitgate trusts the signature (checked against the trusted signers), not
//! whoever carried it in.
//!
//! A signature covers the entry's canonical form ([`canonical`]): its id and every field
//! that gives it power (who, the scope, operations and verbs, name, expiry, reason, change
//! pin, maxUses, breakGlass), as parsed, so key order and YAML formatting do not matter
//! and any change to one of them invalidates it. Crypto is ring's.
//!
//! - [`keys`]: key pairs and the files they live in.
//! - [`signers`]: the trusted signers, from a ConfigMap (or a file).
//!
//! Verification happens when approvals are loaded ([`Signers::check`]), never per request;
//! its results are remembered by (key, entry, signature), so a reload does not verify
//! again what it verified before.

pub mod keys;
pub mod signers;

pub use keys::{KeyError, PrivateKey, PublicKey};
pub use signers::{SIGNERS_LABEL, Signer, SignerError, Signers, parse_signers_file};

use crate::approvals::{Approval, Subject};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use std::sync::{Arc, LazyLock};

/// What the signed bytes begin with, so a signature is never valid for anything but an
/// approval entry of this form.
const CONTEXT: &str = "jitgate.dev/signed-approval/v1";

/// One item of an entry's `signatures:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Signature {
    /// The signer's name in the signers ConfigMap.
    pub signer: String,
    /// The fingerprint of the key that signed (`SHA256:…`).
    pub key: String,
    /// 64 bytes of Ed25519 signature.
    pub value: Vec<u8>,
}

impl Signature {
    /// Reads one `signatures:` item; the reason names what is wrong.
    pub fn parse(signer: String, key: String, value: &str) -> Result<Signature, String> {
        if signer.is_empty() {
            return Err("a signature names no signer".into());
        }
        if !key.starts_with(keys::FINGERPRINT_PREFIX) {
            return Err(format!(
                "the key of {signer:?}'s signature must be a fingerprint such as SHA256:…, as jitgate sign writes it"
            ));
        }
        let value = STANDARD
            .decode(value.trim())
            .ok()
            .filter(|v| v.len() == 64)
            .ok_or_else(|| format!("the signature by {signer:?} is not 64 bytes of base64"))?;
        Ok(Signature { signer, key, value })
    }

    /// The signature as base64, as written in the entry.
    pub fn value_base64(&self) -> String {
        STANDARD.encode(&self.value)
    }
}

/// The fields of an approval that a signature covers, in a fixed order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Canonical<'a> {
    context: &'static str,
    id: &'a str,
    user: Option<&'a str>,
    group: Option<&'a str>,
    api_group: Option<&'a str>,
    resource: String,
    namespace: &'a str,
    name: Option<&'a str>,
    operations: Option<Vec<&'static str>>,
    /// For an entry with `expiresAt`; RFC 3339 in UTC, whatever offset was written.
    expires_at: Option<String>,
    /// For a `for:` entry: the duration, in seconds.
    valid_for_secs: Option<i64>,
    reason: &'a str,
    change: Option<&'a str>,
    max_uses: Option<u32>,
    break_glass: bool,
}

/// The bytes a signature over `a` covers.
pub fn canonical(a: &Approval) -> Vec<u8> {
    let (user, group) = match &a.subject {
        Subject::User(u) => (Some(&**u), None),
        Subject::Group(g) => (None, Some(&**g)),
    };
    let form = Canonical {
        context: CONTEXT,
        id: &a.id,
        user,
        group,
        api_group: a.api_group.as_deref(),
        resource: a.resource_string(),
        namespace: &a.namespace,
        name: a.name.as_deref(),
        operations: a.operations.map(|ops| ops.iter().map(|o| o.as_str()).collect()),
        expires_at: a.valid_for.is_none().then(|| a.expires_at.to_string()),
        valid_for_secs: a.valid_for.map(|d| d.as_secs()),
        reason: &a.reason,
        change: a.change.as_deref(),
        max_uses: a.max_uses,
        break_glass: a.break_glass,
    };
    serde_json::to_vec(&form).unwrap_or_default()
}

/// Signs `a` as `signer` with `key`.
pub fn sign(a: &Approval, signer: &str, key: &PrivateKey) -> Signature {
    Signature {
        signer: signer.to_string(),
        key: key.public().fingerprint(),
        value: key.sign(&canonical(a)),
    }
}

/// What loading made of one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// It verifies against a trusted signer's key. Whether it counts also depends on the
    /// time (the signer's notAfter) and on who asks (never their own).
    Trusted(Arc<Signer>),
    /// It grants nothing, for this reason.
    Refused { signer: String, why: String },
}

/// Results of verifications already made: (key, message, signature) → valid.
static VERIFIED: LazyLock<moka::sync::Cache<[u8; 32], bool>> =
    LazyLock::new(|| moka::sync::Cache::new(1 << 18));

/// Verifies `sig` over `message` with `key`, once per distinct triple.
fn verify(key: &PublicKey, message: &[u8], sig: &[u8]) -> bool {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(key.as_bytes());
    ctx.update(sig);
    ctx.update(message);
    let mut memo = [0u8; 32];
    memo.copy_from_slice(ctx.finish().as_ref());
    if let Some(valid) = VERIFIED.get(&memo) {
        return valid;
    }
    let valid = key.verify(message, sig);
    VERIFIED.insert(memo, valid);
    valid
}

/// Forgets every remembered verification (for benchmarks of a cold load).
#[doc(hidden)]
pub fn forget_verifications() {
    VERIFIED.invalidate_all();
}

impl Signers {
    /// Checks every signature of `a` against the trusted signers.
    pub fn check_all(&self, a: &Approval) -> Vec<Checked> {
        if a.signatures.is_empty() {
            return Vec::new();
        }
        let message = canonical(a);
        a.signatures.iter().map(|s| self.check(&message, s)).collect()
    }

    /// Checks one signature over `message` (the entry's [`canonical`] form).
    pub fn check(&self, message: &[u8], sig: &Signature) -> Checked {
        let refused = |why: String| Checked::Refused {
            signer: sig.signer.clone(),
            why,
        };
        let Some(signer) = self.get(&sig.signer) else {
            return refused(format!(
                "{:?} is not a trusted signer (not in the signers ConfigMap)",
                sig.signer
            ));
        };
        if signer.fingerprint != sig.key {
            return refused(format!(
                "key {} is not {:?}'s trusted key ({})",
                sig.key, sig.signer, signer.fingerprint
            ));
        }
        if !verify(&signer.key, message, &sig.value) {
            return refused(format!(
                "the signature by {:?} does not verify: the entry changed after it was signed, or it was signed for another entry",
                sig.signer
            ));
        }
        Checked::Trusted(signer.clone())
    }
}

#[cfg(test)]
mod tests;
