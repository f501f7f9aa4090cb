//! The trusted signers: one key per signer of the one ConfigMap named `jitgate-signers`
//! beside the approvals (the file `manifests/signers.yaml` in file mode), read like the
//! approvals. Only that object, by its name: a label on another ConfigMap trusts nobody.
//!
//! ```yaml
//! data:
//!   alice-laptop: |
//!     publicKey: ed25519:…        # as jitgate keys new prints it
//!     user: alice@example.com     # who she is to the API server (required)
//!     groups: [security]          # whom her signature counts for
//!     notAfter: "2027-06-30T00:00:00Z"
//! ```
//!
//! `user` is required: it is the person her signature counts as, the same person whether
//! she approves online or signs offline, never a second approver.
//!
//! A signer entry that does not parse is left out, named in a log line: it trusts nobody.

use super::keys::PublicKey;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The name of the one ConfigMap, beside the approvals, whose entries are the trusted
/// signers.
pub const SIGNERS_CONFIGMAP: &str = "jitgate-signers";

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

/// The trusted signers, by name, and the cluster and namespace their signatures must be
/// made for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Signers {
    by_name: HashMap<String, Arc<Signer>>,
    binding: Arc<super::Binding>,
}

impl Signers {
    /// Nobody trusted, in `binding`.
    pub fn none(binding: super::Binding) -> Signers {
        Signers {
            by_name: HashMap::new(),
            binding: Arc::new(binding),
        }
    }

    /// The same signers, trusted for signatures made for `binding`.
    pub fn bound(self, binding: super::Binding) -> Signers {
        Signers {
            binding: Arc::new(binding),
            ..self
        }
    }

    /// The cluster and approvals namespace signatures must be made for.
    pub fn binding(&self) -> &Arc<super::Binding> {
        &self.binding
    }

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

    /// The signers of the signers ConfigMap's `data`, in `binding`, and the entries left
    /// out.
    pub fn from_data(
        binding: super::Binding,
        data: &BTreeMap<String, String>,
    ) -> (Signers, Vec<SignerError>) {
        let mut by_name = HashMap::new();
        let mut errors = Vec::new();
        for (name, text) in data {
            match parse_signer(name, text) {
                Ok(s) => {
                    by_name.insert(name.clone(), Arc::new(s));
                }
                Err(e) => errors.push(e),
            }
        }
        (
            Signers {
                by_name,
                binding: Arc::new(binding),
            },
            errors,
        )
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
    // Defaulting to the entry's name made one person two approvers when it differed from
    // their username (alice online, alice-laptop offline).
    let user = raw.user.filter(|u| !u.is_empty()).ok_or_else(|| {
        fail("user is missing: give the username this signer has in the cluster, the person their signature counts as".into())
    })?;
    Ok(Signer {
        name: name.to_string(),
        user,
        fingerprint: key.fingerprint(),
        key,
        groups: raw.groups,
        not_after,
    })
}

/// Reads a signers file: the ConfigMap manifest named `jitgate-signers`, in `binding`'s
/// namespace (or none given). Any other ConfigMap in the file is named in an error
/// and trusts nobody, whatever its labels.
pub fn parse_signers_file(
    path: &str,
    text: &str,
    binding: super::Binding,
) -> Result<(Signers, Vec<SignerError>), String> {
    let documents = crate::yaml::documents(text).map_err(|e| format!("{path}: not valid YAML: {e}"))?;
    let mut data: Option<BTreeMap<String, String>> = None;
    let mut errors = Vec::new();
    for (i, doc) in documents.into_iter().enumerate() {
        let cm: ConfigMap = serde_json::from_value(doc)
            .map_err(|e| format!("{path}, document {}: not a ConfigMap: {e}", i + 1))?;
        let name = cm.metadata.name.unwrap_or_default();
        let namespace_ok = cm
            .metadata
            .namespace
            .as_ref()
            .is_none_or(|ns| *ns == binding.namespace);
        if name != SIGNERS_CONFIGMAP || !namespace_ok || data.is_some() {
            errors.push(SignerError {
                name: format!("{path}, document {}", i + 1),
                reason: format!(
                    "only the ConfigMap {SIGNERS_CONFIGMAP} in namespace {} holds trusted signers; ConfigMap {name:?} trusts nobody",
                    binding.namespace
                ),
            });
            continue;
        }
        data = Some(cm.data.unwrap_or_default());
    }
    let (signers, mut refused) = Signers::from_data(binding, &data.unwrap_or_default());
    errors.append(&mut refused);
    Ok((signers, errors))
}
