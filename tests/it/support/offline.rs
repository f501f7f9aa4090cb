//! Offline approval as an approver on another network runs it: the `jitgate` binary with no
//! kubeconfig anywhere, making keys and signing entries.
#![allow(dead_code)]

use super::apiserver::Run;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_jitgate");

/// Runs the binary as an approver on another network would: no kubeconfig anywhere, and
/// an in-cluster address that goes nowhere.
pub fn offline(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("KUBECONFIG", dir.join("no-such-kubeconfig"))
        .env("KUBERNETES_SERVICE_HOST", "10.255.255.1")
        .env("KUBERNETES_SERVICE_PORT", "443")
        .env_remove("JITGATE_CLUSTER_ID")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap(),
        out: String::from_utf8(out.stdout).unwrap(),
        err: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A signer's key pair, made with `jitgate keys new`.
pub struct Signer {
    pub name: &'static str,
    pub key: PathBuf,
    pub public: String,
}

pub fn keys_new(dir: &Path, name: &'static str) -> Signer {
    let run = offline(dir, &["keys", "new", "--name", name, "--out", "keys"]);
    assert_eq!(run.code, 0, "{}", run.err);
    let public = run
        .out
        .lines()
        .find_map(|l| l.trim().strip_prefix("publicKey: "))
        .unwrap_or_else(|| panic!("no public key in {}", run.out))
        .to_string();
    Signer {
        name,
        key: dir.join("keys").join(format!("{name}.key")),
        public,
    }
}

impl Signer {
    /// Their entry in the signers ConfigMap.
    pub fn entry(&self, user: &str, groups: &str, extra: &str) -> String {
        format!(
            "publicKey: {}\nuser: {user}\ngroups: [{groups}]\n{extra}",
            self.public
        )
    }

    /// Signs the entry `text` (id `id`) offline with `args` added (such as
    /// `--cluster-id`); the run, whatever its outcome.
    pub fn try_sign(&self, dir: &Path, id: &str, text: &str, args: &[&str]) -> Run {
        let file = dir.join(format!("to-sign-{}.yaml", super::unique_uid()));
        std::fs::write(&file, text).unwrap();
        let mut all = vec![
            "sign",
            "--key",
            self.key.to_str().unwrap(),
            "-f",
            file.to_str().unwrap(),
            "--id",
            id,
        ];
        all.extend_from_slice(args);
        offline(dir, &all)
    }

    /// Signs the entry `text` (id `id`) offline for cluster `cluster`; returns the signed
    /// entry.
    pub fn sign_for(&self, dir: &Path, cluster: &str, id: &str, text: &str) -> String {
        let run = self.try_sign(dir, id, text, &["--cluster-id", cluster]);
        assert_eq!(run.code, 0, "{}", run.err);
        assert!(
            run.err.contains(&format!("signed {id} as {}", self.name)),
            "{}",
            run.err
        );
        run.out
    }
}

/// The trusted signers file: the ConfigMap jitgate-signers with these entries.
pub fn signers_manifest(entries: &[(&str, String)]) -> String {
    let mut out = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: jitgate-signers\n  namespace: jitgate-system\ndata:\n",
    );
    if entries.is_empty() {
        return out.replace("data:\n", "data: {}\n");
    }
    for (name, text) in entries {
        out.push_str(&format!("  {name}: |\n"));
        for line in text.lines() {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out
}

/// Ed25519 by hand, for signatures no signing tool makes (tests of what a signer's own
/// key could be made to do).
pub mod by_hand {
    use curve25519_dalek::Scalar;
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;

    /// The secret scalar of `seed` and its public key, as Ed25519 derives them.
    pub fn key(seed: [u8; 32]) -> (Scalar, [u8; 32]) {
        let h = ring::digest::digest(&ring::digest::SHA512, &seed);
        let mut a = [0u8; 32];
        a.copy_from_slice(&h.as_ref()[..32]);
        a[0] &= 248;
        a[31] &= 127;
        a[31] |= 64;
        let a = Scalar::from_bytes_mod_order(a);
        (a, (a * B).compress().to_bytes())
    }

    /// A signature `(R, s)` over `message` by `(a, public)` with nonce `r`, `R` written as
    /// `r_bytes` when given (else as r·B).
    pub fn sign(
        (a, public): (Scalar, [u8; 32]),
        r: Scalar,
        r_bytes: Option<[u8; 32]>,
        message: &[u8],
    ) -> Vec<u8> {
        let big_r = r_bytes.unwrap_or_else(|| (r * B).compress().to_bytes());
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA512);
        ctx.update(&big_r);
        ctx.update(&public);
        ctx.update(message);
        let mut wide = [0u8; 64];
        wide.copy_from_slice(ctx.finish().as_ref());
        let h = Scalar::from_bytes_mod_order_wide(&wide);
        [big_r, (r + h * a).to_bytes()].concat()
    }
}
