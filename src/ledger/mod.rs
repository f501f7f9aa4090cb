//! The approval ledger: jitgate guards its own approvals ConfigMaps, so that every name in
//! `approvedBy` was written by the authenticated user it names, nobody approves their own
//! request, and a signed approval cannot be widened.
//!
//! Pure logic, no I/O: it compares the old and new `data` of a ConfigMap edit, key by key,
//! against the editor the API server authenticated, and either refuses the edit naming the
//! key and the rule, or returns the accepted edits of its entries (`EntryEdit`, for the audit record).

mod checks;
mod judge;
mod rules;
pub mod signers;
#[cfg(test)]
mod tests;

pub use judge::Grace;
pub use signers::SignerEdit;

use crate::admission::AdmissionRequest;
use crate::approvals::{self, Approval};
use crate::operation::Operation;
use crate::policy::PolicySet;
use crate::signing::Signers;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use std::collections::BTreeMap;
use std::fmt;

/// The rule an edit broke. Stable codes, as written in records and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerRule {
    /// The entry does not parse, or has an unknown field.
    Malformed,
    /// No policy gates the entry's scope: it would allow nothing.
    NotGated,
    /// A name added to `approvedBy` is not the editor's own.
    ForgedApprover,
    /// One edit added more than one name to `approvedBy`.
    SeveralApprovers,
    /// The editor approved a request that is their own (by user, or by group membership).
    SelfApproval,
    /// The editor is not in the approverGroups of a policy gating the entry.
    ApproverNotAllowed,
    /// The scope, user or group, reason, or (lengthened) expiry of a signed entry changed.
    SignedEntryChanged,
    /// A name was taken out of `approvedBy`.
    ApproverRemoved,
    /// The expiry lies beyond now + the policy's maxDuration.
    ExpiryTooFar,
    /// The expiry lies in the past.
    ExpiryInPast,
    /// A new request names someone else, by an editor who may not approve it; or someone
    /// else's pending request amended by an editor who is neither its requester nor may
    /// approve it.
    NotRequester,
    /// Whom an entry is for (its user or group) changed: fixed once written, even while
    /// pending.
    SubjectChanged,
    /// The editor may not revoke (or shorten) this entry.
    RevocationNotAllowed,
    /// `binaryData` cannot hold approvals and is not accepted in an approvals ConfigMap.
    BinaryData,
    /// The ConfigMap in the request could not be read.
    Unreadable,
    /// A break-glass entry written for someone else, with approvers, or under a policy
    /// that does not allow the editor to break the glass.
    BreakGlassNotAllowed,
    /// A break-glass entry removed before an approver reviewed it.
    BreakGlassUnreviewed,
    /// `approvedAt` written otherwise than by the edit of the last approver a `for:` entry
    /// needs, at the time of that edit; or that edit without it.
    ApprovedAtNotStamped,
    /// A signature added that is not a trusted signer's valid signature over the entry.
    SignatureInvalid,
    /// An edit of the trusted signers ConfigMap that holds an entry that does not parse.
    SignerMalformed,
    /// An edit that would make one ConfigMap both the trusted signers and approvals, or
    /// of the signers ConfigMap before jitgate knows where it lives.
    GuardCrossed,
}

impl LedgerRule {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerRule::Malformed => "malformed",
            LedgerRule::NotGated => "not_gated",
            LedgerRule::ForgedApprover => "forged_approver",
            LedgerRule::SeveralApprovers => "several_approvers",
            LedgerRule::SelfApproval => "self_approval",
            LedgerRule::ApproverNotAllowed => "approver_not_allowed",
            LedgerRule::SignedEntryChanged => "signed_entry_changed",
            LedgerRule::ApproverRemoved => "approver_removed",
            LedgerRule::ExpiryTooFar => "expiry_too_far",
            LedgerRule::ExpiryInPast => "expiry_in_past",
            LedgerRule::NotRequester => "not_requester",
            LedgerRule::SubjectChanged => "subject_changed",
            LedgerRule::RevocationNotAllowed => "revocation_not_allowed",
            LedgerRule::BinaryData => "binary_data",
            LedgerRule::Unreadable => "unreadable",
            LedgerRule::BreakGlassNotAllowed => "break_glass_not_allowed",
            LedgerRule::BreakGlassUnreviewed => "break_glass_unreviewed",
            LedgerRule::ApprovedAtNotStamped => "approved_at_not_stamped",
            LedgerRule::SignatureInvalid => "signature_invalid",
            LedgerRule::SignerMalformed => "signer_malformed",
            LedgerRule::GuardCrossed => "guard_crossed",
        }
    }
}

/// Why an edit was refused: which key, which rule, and a sentence for the editor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `<configmap>/<key>`, or the ConfigMap's name when the whole object is at fault.
    pub id: String,
    pub rule: LedgerRule,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "jitgate ledger: {} refused (rule {}): {}",
            self.id,
            self.rule.as_str(),
            self.message
        )
    }
}

/// What an allowed edit did to one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A new or amended entry without approvers: a request awaiting approval.
    Requested,
    /// The editor added their name to `approvedBy`.
    Approved,
    /// A live entry was removed, or its expiry moved into the past.
    Revoked,
    /// A live entry's expiry was brought forward.
    Shortened,
    /// An entry that had already expired (or never parsed) was removed.
    ExpiredOnEdit,
    /// Its user wrote a break-glass entry for themselves.
    BreakGlass,
    /// An approver added their name to a break-glass entry: it is reviewed.
    Reviewed,
    /// Signatures by trusted signers were added (carried in by whoever edited).
    Signed,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Requested => "requested",
            Action::Approved => "approved",
            Action::Revoked => "revoked",
            Action::Shortened => "shortened",
            Action::ExpiredOnEdit => "expired-on-edit",
            Action::BreakGlass => "break-glass",
            Action::Reviewed => "reviewed",
            Action::Signed => "signed",
        }
    }
}

/// One accepted edit of one approval entry (created, rewritten or removed), for the audit
/// record.
#[derive(Debug, Clone)]
pub struct EntryEdit {
    pub id: String,
    pub action: Action,
    /// The entry after the edit (before it, for a removal). `None` for the removal of an
    /// entry that never parsed.
    pub entry: Option<Approval>,
    /// Distinct approvers other than the requester, after the edit.
    pub approvers: u32,
    /// Approvers its policies require (the largest minApprovers), when gated.
    pub required: Option<u32>,
    /// The trusted signers whose signatures count, after the edit.
    pub signers: Vec<String>,
}

/// The editor, as the API server authenticated them.
#[derive(Debug, Clone, Copy)]
pub struct Editor<'a> {
    pub username: &'a str,
    pub groups: &'a [String],
}

/// True when the request edits an approvals ConfigMap: the ledger, not the policies,
/// decides it.
pub fn applies(req: &AdmissionRequest<'_>) -> bool {
    configmap_edit(req) && objects(req).any(|raw| labelled(raw.get(), approvals::LABEL))
}

/// True when the request creates, updates or deletes a ConfigMap.
fn configmap_edit(req: &AdmissionRequest<'_>) -> bool {
    req.resource.group.is_empty()
        && req.resource.resource == "configmaps"
        && req.sub_resource.is_empty()
        && matches!(
            req.operation,
            Operation::Create | Operation::Update | Operation::Delete
        )
}

/// The objects of an edit: the new one, the old one, or both.
fn objects<'r>(req: &'r AdmissionRequest<'_>) -> impl Iterator<Item = &'r serde_json::value::RawValue> {
    [req.object, req.old_object].into_iter().flatten()
}

/// True when the raw object carries `label: "true"`; only its metadata is read.
fn labelled(raw: &str, label: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Meta {
        metadata: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
    }
    serde_json::from_str::<Meta>(raw)
        .ok()
        .and_then(|m| m.metadata)
        .is_some_and(|m| approvals::has_label(&m, label))
}

/// The entries a ConfigMap holds as a ledger: its `data` if it carries the label, else
/// nothing (an unlabelled ConfigMap's entries grant nothing).
fn ledger_of(
    raw: Option<&serde_json::value::RawValue>,
    name: &str,
) -> Result<BTreeMap<String, String>, Violation> {
    let Some(raw) = raw else {
        return Ok(BTreeMap::new());
    };
    let unreadable = |why: String| Violation {
        id: name.to_string(),
        rule: LedgerRule::Unreadable,
        message: format!("the ConfigMap could not be read: {why}"),
    };
    let cm: ConfigMap =
        serde_json::from_str(raw.get()).map_err(|e| unreadable(crate::redact::values(&e.to_string())))?;
    if !approvals::is_labelled(&cm) {
        return Ok(BTreeMap::new());
    }
    if cm.binary_data.as_ref().is_some_and(|b| !b.is_empty()) {
        return Err(Violation {
            id: name.to_string(),
            rule: LedgerRule::BinaryData,
            message: "an approvals ConfigMap keeps its entries in data; binaryData is not accepted".into(),
        });
    }
    Ok(cm.data.unwrap_or_default())
}

/// Reviews an edit of an approvals ConfigMap by `editor`. Only keys whose text changed
/// are judged: an unrelated edit is never refused for a neighbour's sake.
///
/// `signers` are the trusted signers, against which added signatures are checked; `None`
/// while they are not loaded (an edit that adds a signature is then refused).
pub fn review(
    req: &AdmissionRequest<'_>,
    policies: &PolicySet,
    signers: Option<&Signers>,
    now: Timestamp,
    grace: Grace,
) -> Result<Vec<EntryEdit>, Violation> {
    let name = if req.name.is_empty() {
        // A create with generateName has no name yet; entry ids use what there is.
        "(new)"
    } else {
        req.name.as_str()
    };
    let old = ledger_of(req.old_object, name)?;
    let new = match req.operation {
        Operation::Delete => BTreeMap::new(),
        _ => ledger_of(req.object, name)?,
    };
    let editor = Editor {
        username: &req.user_info.username,
        groups: &req.user_info.groups,
    };
    let judge = judge::Judge {
        policies,
        signers,
        editor,
        now,
        grace,
    };
    let mut changes = Vec::new();
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for key in keys {
        let id = format!("{name}/{key}");
        let change = match (old.get(key), new.get(key)) {
            (Some(o), Some(n)) if o == n => None,
            (None, Some(n)) => Some(judge.created(&id, n)?),
            (Some(o), None) => Some(judge.removed(&id, o)?),
            (Some(o), Some(n)) => judge.rewritten(&id, o, n)?,
            (None, None) => None,
        };
        changes.extend(change);
    }
    Ok(changes)
}
