//! An approval entry as written, before it is checked: what the YAML parser reads an
//! entry's text into. `super::parse` checks it and makes it an approval.

use crate::operation::Operation;
use serde::Deserialize;
use std::collections::BTreeMap;

/// An entry as written, before it is checked.
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawEntry {
    pub(super) user: Option<String>,
    pub(super) group: Option<String>,
    pub(super) resource: String,
    pub(super) api_group: Option<String>,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    pub(super) operations: Option<Vec<Operation>>,
    pub(super) verbs: Option<Vec<String>>,
    pub(super) expires_at: Option<String>,
    #[serde(rename = "for")]
    pub(super) valid_for: Option<String>,
    pub(super) approved_at: Option<String>,
    pub(super) reason: String,
    #[serde(default)]
    pub(super) approved_by: Vec<String>,
    pub(super) change: Option<String>,
    pub(super) max_uses: Option<u32>,
    #[serde(default)]
    pub(super) break_glass: bool,
    #[serde(default)]
    pub(super) approved_as: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub(super) signatures: Vec<RawSignature>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawSignature {
    pub(super) signer: String,
    pub(super) key: String,
    pub(super) cluster: Option<String>,
    pub(super) namespace: Option<String>,
    pub(super) not_after: Option<String>,
    pub(super) signature: String,
}
