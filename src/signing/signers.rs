//! The trusted signers: one key of a labelled `jitgate-signers` ConfigMap per signer (the
//! file `manifests/signers.yaml` in file mode), read like the approvals.
//!
//! ```yaml
//! data:
//!   alice: |
//!     publicKey: ed25519:…        # as jitgate keys new prints it
//!     user: alice@example.com     # who she is to the API server (default: the key)
//!     groups: [security]          # whom her signature counts for
//!     notAfter: "2027-06-30T00:00:00Z"
//! ```
//!
//! A signer entry that does not parse is left out, named in a log line: it trusts nobody.

use super::keys::PublicKey;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The label that marks a ConfigMap as holding trusted signers.
pub const SIGNERS_LABEL: &str = "jitgate.dev/signers";

/// One trusted signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// The key in the signers ConfigMap, as signatures name it.
    pub name: String,
    /// Who the signer is to the API server: their own request is never theirs to sign.
    pub user: String,
    pub key: PublicKey,
    pub fingerprint: String,
    /// The groups their signature counts under (for approverGroups and levels).
    pub groups: Vec<String>,
    /// After this, their signatures count for nothing.
    pub not_after: Option<Timestamp>,
}

impl Signer {
    /// True while the signer's key may be relied on.
    pub fn valid_at(&self, now: Timestamp) -> bool {
        self.not_after.is_none_or(|t| now < t)
    }
}

/// Why a signer entry was left out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signer {name:?} ignored: {reason}")]
pub struct SignerError {
    pub name: String,
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSigner {
    public_key: String,
    user: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    not_after: Option<String>,
}

/// The trusted signers, by name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Signers {
    by_name: HashMap<String, Arc<Signer>>,
}

impl Signers {
    pub fn get(&self, name: &str) -> Option<&Arc<Signer>> {
        self.by_name.get(name)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Signer>> {
        self.by_name.values()
    }

    /// The signers of several ConfigMaps' `data`, and the entries left out. A name given
    /// twice trusts nobody under that name.
    pub fn from_data<'d>(
        data: impl IntoIterator<Item = &'d BTreeMap<String, String>>,
    ) -> (Signers, Vec<SignerError>) {
        let mut by_name = HashMap::new();
        let mut errors = Vec::new();
        let mut twice = Vec::new();
        for map in data {
            for (name, text) in map {
                match parse_signer(name, text) {
                    Ok(s) => {
                        if by_name.insert(name.clone(), Arc::new(s)).is_some() {
                            twice.push(name.clone());
                        }
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        for name in twice {
            by_name.remove(&name);
            errors.push(SignerError {
                name,
                reason: "named in two signers ConfigMaps: trusted in neither".into(),
            });
        }
        (Signers { by_name }, errors)
    }
}

/// Parses one signer entry.
pub fn parse_signer(name: &str, text: &str) -> Result<Signer, SignerError> {
    let fail = |reason: String| SignerError {
        name: name.to_string(),
        reason,
    };
    let raw: RawSigner = crate::yaml::from_str(text).map_err(fail)?;
    let key = PublicKey::parse(&raw.public_key).map_err(|e| fail(e.to_string()))?;
    if raw.groups.iter().any(String::is_empty) {
        return Err(fail("groups holds an empty name".into()));
    }
    let not_after = raw
        .not_after
        .map(|t| {
            t.parse::<Timestamp>()
                .map_err(|_| fail("notAfter must be an RFC 3339 time such as 2027-06-30T00:00:00Z".into()))
        })
        .transpose()?;
    let user = raw
        .user
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| name.to_string());
    Ok(Signer {
        name: name.to_string(),
        user,
        fingerprint: key.fingerprint(),
        key,
        groups: raw.groups,
        not_after,
    })
}

/// True when the ConfigMap carries `jitgate.dev/signers: "true"`.
pub fn is_labelled(cm: &ConfigMap) -> bool {
    crate::approvals::has_label(&cm.metadata, SIGNERS_LABEL)
}

/// Reads a signers file: ConfigMap manifests, of which the labelled ones count.
pub fn parse_signers_file(path: &str, text: &str) -> Result<(Signers, Vec<SignerError>), String> {
    let documents = crate::yaml::documents(text).map_err(|e| format!("{path}: not valid YAML: {e}"))?;
    let mut data = Vec::new();
    for (i, doc) in documents.into_iter().enumerate() {
        let cm: ConfigMap = serde_json::from_value(doc)
            .map_err(|e| format!("{path}, document {}: not a ConfigMap: {e}", i + 1))?;
        if is_labelled(&cm) {
            data.push(cm.data.unwrap_or_default());
        }
    }
    Ok(Signers::from_data(&data))
}
