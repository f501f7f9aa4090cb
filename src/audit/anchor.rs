//! Anchors: the head of each chain (id, `seq`, `hash`), written by its replica into the
//! cluster, where someone who can edit logs cannot reach it.
//!
//! They live in one ConfigMap, `jitgate-anchors` in jitgate's namespace, one key per chain
//! (the chain id is a valid key), each value one JSON object ([`Anchor`]). jitgate's
//! service account may only `patch` that ConfigMap by name (a merge patch of its own key);
//! jitgate never removes a key, so the ConfigMap names every chain this cluster's replicas
//! ever started (prune old keys by hand, if ever, after archiving the logs they anchor).
//! Auditors read it with `kubectl get configmap jitgate-anchors -o yaml` and give that to
//! `jitgate audit verify --anchors`.
//!
//! A replica writes its anchor when it starts (seq 0: the chain exists), then every
//! [`ANCHOR_EVERY`] when its head moved, and once more on shutdown.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The ConfigMap the anchors are written to, in jitgate's namespace.
pub const CONFIGMAP: &str = "jitgate-anchors";
/// How often a replica anchors its head, when it moved.
pub const ANCHOR_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// The head of one chain when it was anchored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub chain: String,
    pub replica: String,
    /// The last record written when anchored (0: none yet).
    pub seq: u64,
    pub hash: String,
    /// When it was anchored (RFC 3339).
    pub time: String,
}

impl Anchor {
    /// The merge patch that sets this anchor's key and touches no other.
    pub fn patch(&self) -> serde_json::Value {
        let value = serde_json::to_string(self).unwrap_or_default();
        serde_json::json!({ "data": { self.chain.as_str(): value } })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnchorError {
    #[error("the anchors are neither JSON nor YAML of a ConfigMap: {0}")]
    Unreadable(String),
    #[error("anchor {key:?} is not an anchor: {why}")]
    Malformed { key: String, why: String },
    #[error("anchor {key:?} names chain {chain:?}: an anchor is kept under its own chain's id")]
    Misfiled { key: String, chain: String },
}

#[derive(Deserialize)]
struct ConfigMap {
    #[serde(default)]
    data: Option<BTreeMap<String, String>>,
}

/// The anchors of a ConfigMap as `kubectl get configmap jitgate-anchors -o yaml` (or
/// `-o json`) prints it, by chain id.
pub fn parse(text: &str) -> Result<BTreeMap<String, Anchor>, AnchorError> {
    let cm: ConfigMap = match serde_json::from_str(text) {
        Ok(cm) => cm,
        Err(_) => crate::yaml::from_str(text).map_err(AnchorError::Unreadable)?,
    };
    let mut anchors = BTreeMap::new();
    for (key, value) in cm.data.unwrap_or_default() {
        let anchor: Anchor = serde_json::from_str(&value).map_err(|e| AnchorError::Malformed {
            key: key.clone(),
            why: e.to_string(),
        })?;
        if anchor.chain != key {
            return Err(AnchorError::Misfiled {
                key,
                chain: anchor.chain,
            });
        }
        anchors.insert(key, anchor);
    }
    Ok(anchors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_are_read_from_the_configmap_as_kubectl_prints_it_in_yaml_or_json() {
        let a = Anchor {
            chain: "jitgate-0_00000000000000aa".into(),
            replica: "jitgate-0".into(),
            seq: 12,
            hash: "ab".repeat(32),
            time: "2026-12-04T15:00:00Z".into(),
        };
        let json = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": CONFIGMAP}, "data": a.patch()["data"]});
        assert_eq!(parse(&json.to_string()).unwrap()[&a.chain], a);
        let yaml = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {CONFIGMAP}\ndata:\n  {}: '{}'\n",
            a.chain,
            serde_json::to_string(&a).unwrap()
        );
        assert_eq!(parse(&yaml).unwrap()[&a.chain], a);
        assert_eq!(parse("data: {}\n").unwrap().len(), 0);
        let moved = yaml.replacen(&format!("  {}:", a.chain), "  other_1:", 1);
        assert!(matches!(parse(&moved), Err(AnchorError::Misfiled { .. })));
    }
}
