//! Ed25519 key pairs (ring): a private key in a PKCS#8 PEM file of mode 0600, and a public
//! key written as `ed25519:<base64>`, known by its fingerprint `SHA256:<base64>`.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use std::path::{Path, PathBuf};

/// How a public key is written.
pub const PUBLIC_PREFIX: &str = "ed25519:";
/// How a key's fingerprint begins.
pub const FINGERPRINT_PREFIX: &str = "SHA256:";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} already exists; choose another --out or --name, or remove it")]
    Exists { path: PathBuf },
    #[error("cannot make a key: {0}")]
    Generate(String),
    #[error("{0}")]
    PublicKey(String),
}

/// A public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Reads `ed25519:<base64 of 32 bytes>`.
    pub fn parse(text: &str) -> Result<PublicKey, KeyError> {
        let b64 = text.trim().strip_prefix(PUBLIC_PREFIX).ok_or_else(|| {
            KeyError::PublicKey(format!(
                "a public key is written {PUBLIC_PREFIX}<base64>, as jitgate keys new prints it"
            ))
        })?;
        let bytes = STANDARD
            .decode(b64)
            .map_err(|e| KeyError::PublicKey(format!("the public key is not base64: {e}")))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::PublicKey("an Ed25519 public key is 32 bytes".into()))?;
        if !usable(&key) {
            return Err(KeyError::PublicKey(
                "the public key is not one that jitgate keys new makes: not a point of the curve, written in a non-canonical form, or with a small-order part (with which signatures can be made that verifiers disagree on, or by anyone)".into(),
            ));
        }
        Ok(PublicKey(key))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// `SHA256:` and the unpadded base64 of the key's SHA-256, as ssh-keygen shows keys.
    pub fn fingerprint(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.0);
        format!("{FINGERPRINT_PREFIX}{}", STANDARD_NO_PAD.encode(digest.as_ref()))
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

/// Whether `key` is a public key as key generation makes them: a point of the curve,
/// written canonically, of the prime-order subgroup (no small-order part). Only such keys
/// are trusted, so that one-by-one and batch verification agree on what a key verifies
/// (checked once, when a signer is read).
fn usable(key: &[u8; 32]) -> bool {
    let compressed = curve25519_dalek::edwards::CompressedEdwardsY(*key);
    compressed.decompress().is_some_and(|point| {
        point.compress() == compressed && point.is_torsion_free() && !point.is_small_order()
    })
}

/// Whether 32 bytes are the canonical encoding of a y coordinate and the sign of x (that
/// decompression, which reduces y and ignores the sign of a zero x, would not hide another
/// encoding of the same point): y < p = 2^255 - 19, and no sign bit when x is 0 (y = 1 or
/// y = p - 1). One-by-one verification compares R's bytes with the canonical encoding of
/// the point it computes, so a batch must refuse what that comparison would.
fn canonical_point(bytes: &[u8; 32]) -> bool {
    const P_MINUS_1: [u8; 32] = {
        let mut p = [0xff; 32];
        p[0] = 0xec;
        p[31] = 0x7f;
        p
    };
    let mut y = *bytes;
    let sign = y[31] >> 7;
    y[31] &= 0x7f;
    // y >= p: the top 250 bits all set and the lowest byte at least 0xed.
    let at_least_p = y[1..31].iter().all(|b| *b == 0xff) && y[31] == 0x7f && y[0] >= 0xed;
    let mut one = [0u8; 32];
    one[0] = 1;
    let x_is_zero = y == one || y == P_MINUS_1;
    !(at_least_p || (x_is_zero && sign == 1))
}

/// Whether every `(key, message, signature)` verifies, checked at once (ed25519-dalek's
/// batch equation, with 128-bit per-signature weights drawn from a hash of them all): a few
/// times cheaper per signature than [`PublicKey::verify`] for a large batch. `false` says
/// only that some one is not valid (or could not be read), and they must then be verified
/// one by one to know which.
///
/// `true` means each is valid as one-by-one verification has it, with one exception that
/// only the holder of a signer's private key can make: a signature whose `R` has a
/// small-order part (not a point key generation or signing ever makes) fails one by one and
/// passes a batch when its weight cancels that part, one time in two to eight. Keys with
/// such a part are refused when read ([`PublicKey::parse`]), and an `R` written in a
/// non-canonical form is refused here; checking every `R` for a small-order part would cost
/// as much as verifying it alone.
pub fn verify_all(items: &[(&PublicKey, &[u8], &[u8])]) -> bool {
    use ed25519_dalek::{Signature, VerifyingKey};
    // Signatures of a batch are mostly by a few signers: each key is read (a point
    // decompression) once.
    let mut keys: Vec<(&PublicKey, VerifyingKey)> = Vec::new();
    let mut verifying = Vec::with_capacity(items.len());
    let mut signatures = Vec::with_capacity(items.len());
    let mut messages = Vec::with_capacity(items.len());
    for &(key, message, signature) in items {
        let known = keys.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let Some(vk) = known.or_else(|| VerifyingKey::from_bytes(&key.0).ok()) else {
            return false;
        };
        if known.is_none() {
            keys.push((key, vk));
        }
        let Ok(signature) = Signature::from_slice(signature) else {
            return false;
        };
        if !canonical_point(signature.r_bytes()) {
            return false;
        }
        verifying.push(vk);
        signatures.push(signature);
        messages.push(message);
    }
    ed25519_dalek::verify_batch(&messages, &signatures, &verifying).is_ok()
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", STANDARD.encode(self.0))
    }
}

/// A private key, able to sign.
pub struct PrivateKey(Ed25519KeyPair);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({})", self.public().fingerprint())
    }
}

impl PrivateKey {
    /// A new key pair, and its PKCS#8 document.
    pub fn generate() -> Result<(PrivateKey, Vec<u8>), KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| KeyError::Generate(e.to_string()))?;
        let pair =
            Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| KeyError::Generate(e.to_string()))?;
        Ok((PrivateKey(pair), pkcs8.as_ref().to_vec()))
    }

    /// Reads a PEM `PRIVATE KEY` file (PKCS#8), as `jitgate keys new` writes it.
    pub fn load(path: &Path) -> Result<PrivateKey, KeyError> {
        let fail = |reason: String| KeyError::Read {
            path: path.to_path_buf(),
            reason,
        };
        let der = PrivatePkcs8KeyDer::from_pem_file(path).map_err(|e| fail(e.to_string()))?;
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der())
            .map(PrivateKey)
            .map_err(|e| fail(format!("not an Ed25519 private key ({e})")))
    }

    pub fn public(&self) -> PublicKey {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.0.public_key().as_ref());
        PublicKey(key)
    }

    /// An Ed25519 signature of `message`: 64 bytes.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut value = [0u8; 64];
        value.copy_from_slice(self.0.sign(message).as_ref());
        value
    }
}

/// The files `jitgate keys new` wrote.
#[derive(Debug)]
pub struct NewKey {
    pub private: PathBuf,
    pub public: PathBuf,
    pub key: PublicKey,
}

/// Writes `DIR/NAME.key` (the private key, mode 0600, never overwritten) and
/// `DIR/NAME.pub` (the public key line to publish).
pub fn write_new(dir: &Path, name: &str) -> Result<NewKey, KeyError> {
    use std::io::Write;
    let (key, pkcs8) = PrivateKey::generate()?;
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    for path in [&private, &public] {
        if path.exists() {
            return Err(KeyError::Exists { path: path.clone() });
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| KeyError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    let body = STANDARD.encode(&pkcs8);
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    let write_err = |source| KeyError::Write {
        path: private.clone(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&private).map_err(write_err)?;
    file.write_all(pem.as_bytes()).map_err(write_err)?;
    let public_key = key.public();
    std::fs::write(&public, format!("{public_key} {name}\n")).map_err(|source| KeyError::Write {
        path: public.clone(),
        source,
    })?;
    Ok(NewKey {
        private,
        public,
        key: public_key,
    })
}
