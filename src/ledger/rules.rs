//! The ledger's rules for one entry: created, rewritten (its text edited), or removed.

use super::judge::{Judge, distinct, refuse, same_terms};
use super::{Action, EntryEdit, LedgerRule, Violation};
use crate::approvals::{Approval, approvers, parse_entry};
use crate::signing::Signature;
use std::collections::BTreeSet;

impl Judge<'_> {
    /// A break-glass entry: its user writes it for themselves, with a reason and no
    /// approvers; approvers review it afterwards.
    pub(super) fn break_glass(&self, id: &str, a: Approval) -> Result<EntryEdit, Violation> {
        if !self.is_requester(&a) {
            return Err(refuse(
                id,
                LedgerRule::BreakGlassNotAllowed,
                format!(
                    "{:?} may break the glass only for themselves; this entry is for someone else",
                    self.editor.username
                ),
            ));
        }
        if !a.approved_by.is_empty() {
            return Err(refuse(
                id,
                LedgerRule::BreakGlassNotAllowed,
                "a break-glass entry starts with no approvers: approvers add their names when they review it"
                    .into(),
            ));
        }
        let gating = self.check_terms(id, &a)?;
        Ok(self.edit(id, Action::BreakGlass, a, &gating))
    }

    /// A new entry: a request by its requester (or by someone who may approve it), or a
    /// grant by an approver who lists only themselves.
    pub(super) fn created(&self, id: &str, text: &str) -> Result<EntryEdit, Violation> {
        let a = self.parse(id, text)?;
        if a.break_glass {
            return self.break_glass(id, a);
        }
        let gating = self.check_terms(id, &a)?;
        let approvers = distinct(&a.approved_by);
        if approvers.is_empty() && !a.rare.signatures.is_empty() {
            let added: Vec<&Signature> = a.rare.signatures.iter().collect();
            self.check_signatures(id, &a, &added, &gating)?;
            self.check_stamp(id, None, &a, &gating, true)?;
            return Ok(self.edit(id, Action::Signed, a, &gating));
        }
        if approvers.is_empty() {
            if !self.is_requester(&a) && !self.may_approve(&gating) {
                return Err(refuse(
                    id,
                    LedgerRule::NotRequester,
                    format!(
                        "{:?} may ask only for themselves (or a group they belong to); this entry is for someone else",
                        self.editor.username
                    ),
                ));
            }
            self.check_stamp(id, None, &a, &gating, false)?;
            return Ok(self.edit(id, Action::Requested, a, &gating));
        }
        self.check_added(id, &a, &approvers, &gating)?;
        let added: Vec<&Signature> = a.rare.signatures.iter().collect();
        self.check_signatures(id, &a, &added, &gating)?;
        self.check_stamp(id, None, &a, &gating, true)?;
        Ok(self.edit(id, Action::Approved, a, &gating))
    }

    /// An entry's text was rewritten (approved, amended, or stamped).
    pub(super) fn rewritten(&self, id: &str, old: &str, new: &str) -> Result<Option<EntryEdit>, Violation> {
        let Ok(o) = parse_entry(id, old) else {
            // The old text granted nothing: judge the new one as a new entry.
            return self.created(id, new).map(Some);
        };
        let n = self.parse(id, new)?;
        let before = distinct(&o.approved_by);
        if before.is_empty() && !o.break_glass && o.rare.signatures.is_empty() {
            // A pending request amended: by its requester, or by someone who may approve
            // it, for the same subject; then judged like a new entry.
            self.check_amender(id, &o, &n)?;
            return self.created(id, new).map(Some);
        }
        let same_terms = same_terms(&o, &n);
        let gating = self.gating(&n);
        let adds = distinct(&n.approved_by).difference(&before).next().is_some()
            || n.rare.signatures.iter().any(|s| !o.rare.signatures.contains(s));
        self.check_stamp(id, Some(&o), &n, &gating, adds)?;
        // The edit that starts a `for:` entry's clock sets its expiry from never.
        let starts = !o.started() && n.started();
        if !same_terms || (n.expires_at > o.expires_at && !starts) {
            return Err(refuse(
                id,
                LedgerRule::SignedEntryChanged,
                "once approved (or written as break-glass), an entry's terms, user or group, and reason are fixed and its expiry may only be brought forward; delete it and request anew".into(),
            ));
        }
        let after = distinct(&n.approved_by);
        if let Some(gone) = before.difference(&after).next() {
            return Err(refuse(
                id,
                LedgerRule::ApproverRemoved,
                format!("approver {gone:?} cannot be taken out of approvedBy; delete the entry to revoke it"),
            ));
        }
        if let Some(gone) = o.rare.signatures.iter().find(|s| !n.rare.signatures.contains(s)) {
            return Err(refuse(
                id,
                LedgerRule::ApproverRemoved,
                format!(
                    "the signature by {:?} cannot be taken out; delete the entry to revoke it",
                    gone.signer
                ),
            ));
        }
        if let Some((name, _)) = o
            .rare
            .approved_as
            .iter()
            .find(|(name, groups)| n.rare.approved_as.get(*name) != Some(groups))
        {
            return Err(refuse(
                id,
                LedgerRule::ForgedApprover,
                format!("approvedAs of {name:?} is fixed once written"),
            ));
        }
        let added: BTreeSet<&str> = after.difference(&before).copied().collect();
        if let Some(name) = n
            .rare
            .approved_as
            .keys()
            .find(|k| !o.rare.approved_as.contains_key(*k) && !added.contains(k.as_str()))
        {
            return Err(refuse(
                id,
                LedgerRule::ForgedApprover,
                format!(
                    "approvedAs of {name:?} is written by {name:?}, in the edit that adds them to approvedBy"
                ),
            ));
        }
        let signed: Vec<&Signature> = n
            .rare
            .signatures
            .iter()
            .filter(|s| !o.rare.signatures.contains(s))
            .collect();
        if !added.is_empty() || !signed.is_empty() {
            if n.expires_at != o.expires_at && !starts {
                return Err(refuse(
                    id,
                    LedgerRule::SignedEntryChanged,
                    "approve and change the expiry in separate edits".into(),
                ));
            }
            if !added.is_empty() {
                self.check_added(id, &n, &added, &gating)?;
            }
            self.check_signatures(id, &n, &signed, &gating)?;
            // A break-glass entry is reviewed after the fact, often once it has expired.
            if n.expires_at <= self.now && !n.break_glass {
                return Err(refuse(
                    id,
                    LedgerRule::ExpiryInPast,
                    format!("the entry expired at {}", n.expires_at),
                ));
            }
            let action = if n.break_glass {
                Action::Reviewed
            } else if added.is_empty() {
                Action::Signed
            } else {
                Action::Approved
            };
            return Ok(Some(self.edit(id, action, n, &gating)));
        }
        if n.expires_at < o.expires_at {
            self.check_revoker(id, &o, &gating)?;
            let action = if n.expires_at <= self.now {
                Action::Revoked
            } else {
                Action::Shortened
            };
            return Ok(Some(self.edit(id, action, n, &gating)));
        }
        // Same entry, written differently.
        Ok(None)
    }

    /// An entry removed: housekeeping when it had expired (or never parsed), else a
    /// revocation.
    pub(super) fn removed(&self, id: &str, old: &str) -> Result<EntryEdit, Violation> {
        let Ok(a) = parse_entry(id, old) else {
            return Ok(EntryEdit {
                id: id.to_string(),
                action: Action::ExpiredOnEdit,
                entry: None,
                approvers: 0,
                required: None,
                signers: Vec::new(),
            });
        };
        let gating = self.gating(&a);
        if a.break_glass && approvers(&a, self.requester_name(&a), self.now).count() == 0 {
            return Err(refuse(
                id,
                LedgerRule::BreakGlassUnreviewed,
                "a break-glass entry stays until an approver reviews it (adds their name to approvedBy); then it may be removed".into(),
            ));
        }
        if crate::approvals::state_of(&a, Some(self.policies), self.now).0 == crate::approvals::State::Expired
        {
            return Ok(self.edit(id, Action::ExpiredOnEdit, a, &gating));
        }
        self.check_revoker(id, &a, &gating)?;
        Ok(self.edit(id, Action::Revoked, a, &gating))
    }
}
