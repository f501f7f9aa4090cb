//! The trusted signers ConfigMap, guarded like the approvals: an edit that would hold a
//! signer entry that does not parse is refused (it would trust nobody, silently), and
//! every accepted change is recorded with who made it. Who may change it at all is RBAC's
//! to say: cluster admins only, as the manifests ship.
//!
//! The guard applies to the one object `jitgate-signers` beside the approvals, by its
//! name and namespace, whatever labels it carries; no label moves a ConfigMap into or out
//! of it. It refuses an edit that would also make that object an approvals ConfigMap.

use super::{LedgerRule, Violation};
use crate::admission::AdmissionRequest;
use crate::operation::Operation;
use crate::signing::signers::{SIGNERS_CONFIGMAP, parse_signer};
use k8s_openapi::api::core::v1::ConfigMap;
use std::collections::BTreeMap;

/// What an accepted edit did to one signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerEdit {
    pub name: String,
    /// `added`, `removed` or `changed`.
    pub action: &'static str,
    /// The key's fingerprint after the edit (before it, for a removal).
    pub fingerprint: String,
    pub groups: Vec<String>,
    pub not_after: Option<String>,
}

/// True when the request edits the trusted signers ConfigMap (`jitgate-signers` in
/// `namespace`, beside the approvals), by its name and namespace, whatever its labels.
pub fn applies(req: &AdmissionRequest<'_>, namespace: &str) -> bool {
    super::configmap_edit(req) && req.name == SIGNERS_CONFIGMAP && req.namespace == namespace
}

/// True when the request edits a ConfigMap named like the signers one, in any namespace:
/// what the guard must hold on to while it does not know which namespace is its own.
pub fn may_apply(req: &AdmissionRequest<'_>) -> bool {
    super::configmap_edit(req) && req.name == SIGNERS_CONFIGMAP
}

fn signers_of(raw: Option<&serde_json::value::RawValue>) -> BTreeMap<String, String> {
    raw.and_then(|r| serde_json::from_str::<ConfigMap>(r.get()).ok())
        .and_then(|cm| cm.data)
        .unwrap_or_default()
}

/// Reviews an edit of the signers ConfigMap: it never becomes an approvals ConfigMap, and
/// every signer it holds afterwards must parse.
pub fn review(req: &AdmissionRequest<'_>) -> Result<Vec<SignerEdit>, Violation> {
    let new = match req.operation {
        Operation::Delete => BTreeMap::new(),
        _ => signers_of(req.object),
    };
    if req.operation != Operation::Delete
        && req
            .object
            .is_some_and(|raw| super::labelled(raw.get(), crate::approvals::LABEL))
    {
        return Err(Violation {
            id: req.name.to_string(),
            rule: LedgerRule::GuardCrossed,
            message: format!(
                "{} holds the trusted signers and is guarded as such; it cannot also be an approvals ConfigMap: remove the label {}",
                req.name,
                crate::approvals::LABEL
            ),
        });
    }
    let old = signers_of(req.old_object);
    let mut changes = Vec::new();
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for name in names {
        let (action, text) = match (old.get(name), new.get(name)) {
            (Some(o), Some(n)) if o == n => continue,
            (None, Some(n)) => ("added", n),
            (Some(_), Some(n)) => ("changed", n),
            (Some(o), None) => ("removed", o),
            (None, None) => continue,
        };
        let parsed = parse_signer(name, text);
        let signer = match (parsed, action) {
            (Ok(s), _) => Some(s),
            (Err(_), "removed") => None,
            (Err(e), _) => {
                return Err(Violation {
                    id: format!("{}/{name}", req.name),
                    rule: LedgerRule::SignerMalformed,
                    message: format!("the signer entry does not parse: {}", e.reason),
                });
            }
        };
        changes.push(SignerEdit {
            name: name.clone(),
            action,
            fingerprint: signer.as_ref().map(|s| s.fingerprint.clone()).unwrap_or_default(),
            groups: signer.as_ref().map(|s| s.groups.clone()).unwrap_or_default(),
            not_after: signer.and_then(|s| s.not_after.map(|t| t.to_string())),
        });
    }
    Ok(changes)
}
