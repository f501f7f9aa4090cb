//! Offline approval: an approver signs an entry with their own Ed25519 key on their own
//! machine; jitgate trusts the signature (checked against the trusted signers), not
//! whoever carried it in.
//!
//! A signature covers the entry's canonical form ([`canonical`]): the cluster and the
//! approvals namespace it was made for ([`Binding`]), its id and every field that gives it
//! power (who, the scope, operations and verbs, name, expiry, reason, change pin, maxUses,
//! breakGlass), and, for a `for:` entry, the signature's own `notAfter` (after it, the
//! signature counts for nothing, whenever the entry's clock started), as parsed, so key
//! order and YAML formatting do not matter and any change to one of them invalidates it.
//! Keys, signing and one-by-one verification are ring's; when many approvals load, their
//! signatures are first verified in batches ([`Signers::verify_ahead`], ed25519-dalek's
//! batch verification, a few times cheaper per signature).
//!
//! - [`keys`]: key pairs and the files they live in.
//! - [`signers`]: the trusted signers, from the one ConfigMap `jitgate-signers` (or a file).
//!
//! Verification happens when approvals are loaded ([`Signers::check`]), never per request;
//! its results are remembered by (key, entry, signature), so a reload does not verify
//! again what it verified before.

pub mod keys;
pub mod signers;

pub use keys::{KeyError, PrivateKey, PublicKey};
pub use signers::{SIGNERS_CONFIGMAP, Signer, SignerError, Signers, parse_signers_file};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;
use serde::Serialize;
use std::sync::{Arc, LazyLock};

/// What the signed bytes begin with, so a signature is never valid for anything but an
/// approval entry of this form. v1 named no cluster; its signatures are refused, saying so.
const CONTEXT: &str = "jitgate.dev/signed-approval/v2";

/// The cluster id in file mode when `--cluster-id` is not given.
pub const DEFAULT_CLUSTER_ID: &str = "local";

/// Where a signature is valid: one cluster (the id its admin set with `--cluster-id`, or
/// the uid of its `kube-system` Namespace) and the namespace of its approvals ConfigMaps.
/// A signature made for another cluster or namespace does not verify here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Binding {
    pub cluster: String,
    pub namespace: String,
}

impl Default for Binding {
    fn default() -> Self {
        Binding {
            cluster: DEFAULT_CLUSTER_ID.into(),
            namespace: crate::names::DEFAULT_NAMESPACE.into(),
        }
    }
}

impl std::fmt::Display for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cluster {:?}, namespace {:?}", self.cluster, self.namespace)
    }
}

/// One item of an entry's `signatures:`. Its names are shared strings: a set of approvals
/// loaded together holds one copy of each signer's name, key, cluster and namespace
/// (`crate::approvals`' `Names`), and the signature's bytes inline.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Signature {
    /// The signer's name in the signers ConfigMap.
    pub signer: Arc<str>,
    /// The fingerprint of the key that signed (`SHA256:…`).
    pub key: Arc<str>,
    /// The cluster and approvals namespace it was made for, as written beside it (the
    /// signed form holds this cluster's, so a wrong one here only makes the refusal say
    /// why). `None`: made by a jitgate before signatures were bound to a cluster.
    pub cluster: Option<Arc<str>>,
    pub namespace: Option<Arc<str>>,
    /// For a `for:` entry: after this, the signature counts for nothing. Signed.
    pub not_after: Option<Timestamp>,
    /// The Ed25519 signature.
    pub value: [u8; 64],
}

/// One `signatures:` item as written, before it is checked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SignatureText {
    pub signer: String,
    pub key: String,
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    pub not_after: Option<String>,
    pub signature: String,
}

impl Signature {
    /// Reads one `signatures:` item; the reason names what is wrong.
    pub fn parse(text: SignatureText) -> Result<Signature, String> {
        let SignatureText {
            signer,
            key,
            cluster,
            namespace,
            not_after,
            signature: value,
        } = text;
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
            .and_then(|v| <[u8; 64]>::try_from(v).ok())
            .ok_or_else(|| format!("the signature by {signer:?} is not 64 bytes of base64"))?;
        let not_after = not_after
            .map(|t| {
                t.parse::<Timestamp>()
                    .map_err(|_| format!("the notAfter of {signer:?}'s signature must be an RFC 3339 time"))
            })
            .transpose()?;
        Ok(Signature {
            signer: signer.into(),
            key: key.into(),
            cluster: cluster.map(Arc::from),
            namespace: namespace.map(Arc::from),
            not_after,
            value,
        })
    }

    /// The signature as base64, as written in the entry.
    pub fn value_base64(&self) -> String {
        STANDARD.encode(self.value)
    }
}

/// The terms of an approval entry that a signature covers: its id and every field that
/// gives it power, as parsed (so key order and YAML formatting do not matter). The
/// approvals module builds them from an entry (`Approval::terms`); this module knows
/// nothing else of entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Terms<'a> {
    pub id: &'a str,
    pub user: Option<&'a str>,
    pub group: Option<&'a str>,
    pub api_group: Option<&'a str>,
    pub resource: String,
    pub namespace: &'a str,
    pub name: Option<&'a str>,
    pub operations: Option<Vec<&'static str>>,
    /// For an entry with `expiresAt`; RFC 3339 in UTC, whatever offset was written.
    pub expires_at: Option<String>,
    /// For a `for:` entry: the duration, in seconds.
    pub valid_for_secs: Option<i64>,
    pub reason: &'a str,
    pub change: Option<&'a str>,
    pub max_uses: Option<u32>,
    pub break_glass: bool,
}

/// What is signed, in a fixed order: the form's context, where the signature is valid,
/// the entry's terms, and the signature's own notAfter.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Canonical<'a> {
    context: &'static str,
    cluster: &'a str,
    namespace_of_approvals: &'a str,
    #[serde(flatten)]
    terms: &'a Terms<'a>,
    /// The signature's own notAfter (required for a `for:` entry).
    not_after: Option<String>,
}

/// The bytes a signature over `terms`, made for `binding`, with `not_after`, covers.
pub fn canonical(terms: &Terms<'_>, binding: &Binding, not_after: Option<Timestamp>) -> Vec<u8> {
    let form = Canonical {
        context: CONTEXT,
        cluster: &binding.cluster,
        namespace_of_approvals: &binding.namespace,
        terms,
        not_after: not_after.map(|t| t.to_string()),
    };
    serde_json::to_vec(&form).unwrap_or_default()
}

/// Signs the terms `a` as `signer` with `key`, for `binding`. A `for:` entry needs
/// `not_after`: after it, the signature counts for nothing.
pub fn sign(
    a: &Terms<'_>,
    binding: &Binding,
    signer: &str,
    key: &PrivateKey,
    not_after: Option<Timestamp>,
) -> Signature {
    Signature {
        signer: signer.into(),
        key: key.public().fingerprint().into(),
        cluster: Some(binding.cluster.as_str().into()),
        namespace: Some(binding.namespace.as_str().into()),
        not_after,
        value: key.sign(&canonical(a, binding, not_after)),
    }
}

/// A trusted signer's valid signature, and until when it counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    pub signer: Arc<Signer>,
    /// The signature's own notAfter (a `for:` entry's).
    pub not_after: Option<Timestamp>,
}

impl std::ops::Deref for Trust {
    type Target = Signer;
    fn deref(&self) -> &Signer {
        &self.signer
    }
}

impl Trust {
    /// True while the signature counts: the signer's key and the signature itself are
    /// both within their notAfter.
    pub fn valid_at(&self, now: Timestamp) -> bool {
        self.signer.valid_at(now) && self.not_after.is_none_or(|t| now < t)
    }

    /// Why it no longer counts at `now`, if it does not.
    pub fn expired(&self, now: Timestamp) -> Option<String> {
        if !self.signer.valid_at(now) {
            return Some(format!(
                "signer {:?}'s key expired at {}",
                self.signer.name,
                self.signer.not_after.map(|t| t.to_string()).unwrap_or_default()
            ));
        }
        match self.not_after {
            Some(t) if now >= t => Some(format!(
                "the signature by {:?} was good until {t} (its notAfter) and counts for nothing since; ask for a new one",
                self.signer.name
            )),
            _ => None,
        }
    }
}

/// What loading made of one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// It verifies against a trusted signer's key. Whether it counts also depends on the
    /// time (the signer's and the signature's notAfter) and on who asks (never their own).
    Trusted(Trust),
    /// It grants nothing, for this reason.
    Refused { signer: String, why: String },
}

/// Results of verifications already made: (key, message, signature) → valid.
static VERIFIED: LazyLock<Memo> = LazyLock::new(|| Memo::new(1 << 18));

/// What verifications came to, by [`memo_key`], up to a bound. Past the bound it forgets
/// them all and starts again: verifying again is only a cost (of CPU, never of what is
/// trusted), and a lookup is a hash probe, some 34 to 68 bytes a verification remembered
/// by the map's fill (the moka cache it replaced took about 200: a hundred thousand
/// approvals, a fifth of them signed, held 4 MB for it, and more at its peak). Whoever may
/// write signed entries can make it forget sooner, as they could make that cache evict;
/// a load of more signatures than the bound verifies some twice. Loading
/// asks it, on the threads that read approvals, and the ledger for the signed entries of
/// an edit it judges; the lock is held for one probe or insertion, nothing else.
struct Memo {
    verified: std::sync::Mutex<std::collections::HashMap<[u8; 32], bool>>,
    bound: usize,
}

impl Memo {
    fn new(bound: usize) -> Memo {
        Memo {
            verified: Default::default(),
            bound,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<[u8; 32], bool>> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, memo: &[u8; 32]) -> Option<bool> {
        self.lock().get(memo).copied()
    }

    fn contains_key(&self, memo: &[u8; 32]) -> bool {
        self.lock().contains_key(memo)
    }

    fn insert(&self, memo: [u8; 32], valid: bool) {
        let mut verified = self.lock();
        if verified.len() >= self.bound && !verified.contains_key(&memo) {
            *verified = Default::default();
        }
        verified.insert(memo, valid);
    }

    fn invalidate_all(&self) {
        *self.lock() = Default::default();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The key under which the verification of `sig` over `message` with `key` is remembered.
fn memo_key(key: &PublicKey, message: &[u8], sig: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(key.as_bytes());
    // Key and signature are of fixed length, the signature's written out all the same.
    ctx.update(&(sig.len() as u64).to_be_bytes());
    ctx.update(sig);
    ctx.update(message);
    let mut memo = [0u8; 32];
    memo.copy_from_slice(ctx.finish().as_ref());
    memo
}

/// Verifies `sig` over `message` with `key`, once per distinct triple.
fn verify(key: &PublicKey, message: &[u8], sig: &[u8]) -> bool {
    let memo = memo_key(key, message, sig);
    if let Some(valid) = VERIFIED.get(&memo) {
        return valid;
    }
    let valid = key.verify(message, sig);
    VERIFIED.insert(memo, valid);
    valid
}

/// Signatures verified together by [`Signers::verify_ahead`]: enough for the batch equation
/// to pay (about a third of one-by-one's cost per signature at this size), few enough that
/// a batch with a bad signature in it, which is then verified one by one, wastes little.
const BATCH: usize = 128;

/// Forgets every remembered verification (for benchmarks of a cold load).
#[doc(hidden)]
pub fn forget_verifications() {
    VERIFIED.invalidate_all();
}

impl Signers {
    /// Checks each of `signatures` of the terms `a` against the trusted signers, for this
    /// cluster and approvals namespace.
    pub fn check_all(&self, a: &Terms<'_>, signatures: &[Signature]) -> Vec<Checked> {
        signatures.iter().map(|s| self.check(a, s)).collect()
    }

    /// Checks one signature of the terms `a`.
    pub fn check(&self, a: &Terms<'_>, sig: &Signature) -> Checked {
        let (signer, message) = match self.to_verify(a, sig) {
            Ok(it) => it,
            Err(refused) => return refused,
        };
        if !verify(&signer.key, &message, &sig.value) {
            return Checked::Refused {
                signer: sig.signer.to_string(),
                why: format!(
                    "the signature by {:?} does not verify: the entry changed after it was signed, or it was signed for another entry",
                    sig.signer
                ),
            };
        }
        Checked::Trusted(Trust {
            signer: signer.clone(),
            not_after: sig.not_after,
        })
    }

    /// The trusted signer whose key `sig` must verify with, and the bytes it must verify
    /// over; or why it is refused before any verification (an unknown signer or key, another
    /// cluster or namespace, an old form, a `for:` entry's signature without notAfter).
    fn to_verify(&self, a: &Terms<'_>, sig: &Signature) -> Result<(&Arc<Signer>, Vec<u8>), Checked> {
        let refused = |why: String| Checked::Refused {
            signer: sig.signer.to_string(),
            why,
        };
        if self.binding().cluster.is_empty() {
            return Err(refused(
                "the cluster's id is not known yet (jitgate reads it from the API server; the CLI needs --cluster-id), so no signature can be checked".into(),
            ));
        }
        let Some(signer) = self.get(&sig.signer) else {
            return Err(refused(format!(
                "{:?} is not a trusted signer (not in the signers ConfigMap)",
                sig.signer
            )));
        };
        if *signer.fingerprint != *sig.key {
            return Err(refused(format!(
                "key {} is not {:?}'s trusted key ({})",
                sig.key, sig.signer, signer.fingerprint
            )));
        }
        let here = self.binding();
        let (Some(cluster), Some(namespace)) = (&sig.cluster, &sig.namespace) else {
            return Err(refused(format!(
                "the signature by {:?} is in an older form (v1) that names no cluster, which this jitgate no longer accepts; ask {:?} to sign the entry again (jitgate sign --cluster-id {} --namespace {})",
                sig.signer, sig.signer, here.cluster, here.namespace
            )));
        };
        if **cluster != *here.cluster {
            return Err(refused(format!(
                "the signature by {:?} was made for cluster {cluster:?}, and this is cluster {:?}: it grants nothing here",
                sig.signer, here.cluster
            )));
        }
        if **namespace != *here.namespace {
            return Err(refused(format!(
                "the signature by {:?} was made for approvals in namespace {namespace:?}, and these are in {:?}: it grants nothing here",
                sig.signer, here.namespace
            )));
        }
        if a.valid_for_secs.is_some() && sig.not_after.is_none() {
            return Err(refused(format!(
                "the signature by {:?} of a for: entry names no notAfter, so it could be replayed without end; ask for a new one (jitgate sign adds it)",
                sig.signer
            )));
        }
        Ok((signer, canonical(a, here, sig.not_after)))
    }

    /// Verifies ahead, many at a time, the signatures that [`Signers::check`] would verify
    /// of `entries` (each one's terms and signatures), and remembers those that verify, so
    /// that checking them afterwards finds each verification made. A batch in which some
    /// signature does not verify is left for `check` to verify one by one (and to refuse the
    /// bad one): nothing is remembered valid that was not shown valid.
    pub fn verify_ahead<'a>(&self, entries: impl IntoIterator<Item = (Terms<'a>, &'a [Signature])>) {
        let mut batch = Vec::with_capacity(BATCH);
        for (terms, signatures) in entries {
            for sig in signatures {
                let Ok((signer, message)) = self.to_verify(&terms, sig) else {
                    continue;
                };
                let memo = memo_key(&signer.key, &message, &sig.value);
                if !VERIFIED.contains_key(&memo) {
                    batch.push(Unverified {
                        memo,
                        key: &signer.key,
                        message,
                        signature: &sig.value,
                    });
                }
                if batch.len() == BATCH {
                    verify_together(&mut batch);
                }
            }
        }
        verify_together(&mut batch);
    }
}

/// A signature that [`Signers::verify_ahead`] has yet to verify.
struct Unverified<'a> {
    memo: [u8; 32],
    key: &'a PublicKey,
    message: Vec<u8>,
    signature: &'a [u8],
}

/// Verifies `batch` together and, if every one verifies, remembers each valid; empties it.
fn verify_together(batch: &mut Vec<Unverified<'_>>) {
    let items: Vec<_> = batch
        .iter()
        .map(|u| (u.key, &u.message[..], u.signature))
        .collect();
    if items.len() > 1 && keys::verify_all(&items) {
        for u in batch.iter() {
            VERIFIED.insert(u.memo, true);
        }
    }
    batch.clear();
}

#[cfg(test)]
mod tests;

/// For the tests of the modules that check signatures: a binding (cluster `c`, namespace
/// `ns`), a new key, and the signers ConfigMap's `data` that trusts it as user `name`.
#[cfg(test)]
pub(crate) fn trusted_for_tests(
    name: &str,
) -> (Binding, PrivateKey, std::collections::BTreeMap<String, String>) {
    let binding = Binding {
        cluster: "c".into(),
        namespace: "ns".into(),
    };
    let key = PrivateKey::generate().unwrap().0;
    let data = std::collections::BTreeMap::from([(
        name.to_string(),
        format!("publicKey: {}\nuser: {name}\n", key.public()),
    )]);
    (binding, key, data)
}
