//! The judge of one edit: who edits, against which policies and signers, at what time;
//! what it knows of an entry (who asked, under which policies, whether it is complete),
//! and the edit it records. Its checks are in `checks`, its rules in `rules`.

use super::{Action, Editor, EntryEdit, LedgerRule, Violation};
use crate::approvals::{Approval, Subject, approvers, parse_entry};
use crate::policy::{Policy, PolicySet};
use crate::signing::Signers;
use jiff::{SignedDuration, Timestamp};
use std::collections::BTreeSet;

/// Clock skew tolerated between the editor, the API server and jitgate.
#[derive(Debug, Clone, Copy)]
pub struct Grace(pub SignedDuration);

impl Default for Grace {
    fn default() -> Self {
        Grace(SignedDuration::from_secs(30))
    }
}

/// Judges the entries of one edit, for one editor.
pub(super) struct Judge<'a> {
    pub policies: &'a PolicySet,
    pub signers: Option<&'a Signers>,
    pub editor: Editor<'a>,
    pub now: Timestamp,
    pub grace: Grace,
}

pub(super) fn refuse(id: &str, rule: LedgerRule, message: String) -> Violation {
    Violation {
        id: id.to_string(),
        rule,
        message,
    }
}

/// Whether two entries ask for the same: whom for, what, why, and on what terms (all but
/// the expiry, the approvers and the signatures).
pub(super) fn same_terms(o: &Approval, n: &Approval) -> bool {
    o.subject == n.subject
        && o.resource == n.resource
        && o.sub_resource == n.sub_resource
        && o.api_group == n.api_group
        && o.namespace == n.namespace
        && o.name == n.name
        && o.operations == n.operations
        && o.reason == n.reason
        && o.rare.change == n.rare.change
        && o.max_uses == n.max_uses
        && o.break_glass == n.break_glass
        && o.rare.valid_for == n.rare.valid_for
}

pub(super) fn distinct(names: &[crate::approvals::Name]) -> BTreeSet<&str> {
    names.iter().map(|n| &**n).collect()
}

impl Judge<'_> {
    pub(super) fn gating(&self, a: &Approval) -> Vec<&Policy> {
        self.policies.gating_scope(&a.scope())
    }

    /// The editor is the one the entry asks for: its user, or a member of its group.
    pub(super) fn is_requester(&self, a: &Approval) -> bool {
        match &a.subject {
            Subject::User(u) => **u == *self.editor.username,
            Subject::Group(g) => self.editor.groups.iter().any(|eg| **eg == **g),
        }
    }

    /// The editor may approve under every policy that gates the entry.
    pub(super) fn may_approve(&self, gating: &[&Policy]) -> bool {
        gating.iter().all(|p| p.may_approve(self.editor.groups))
    }

    /// Parses an entry and checks its signatures against the trusted signers.
    pub(super) fn parse(&self, id: &str, text: &str) -> Result<Approval, Violation> {
        let mut a = parse_entry(id, text).map_err(|e| {
            refuse(
                id,
                LedgerRule::Malformed,
                format!("the entry does not parse: {}", e.reason),
            )
        })?;
        if let Some(signers) = self.signers {
            a.rare.make_mut().checked = a.checked_by(signers);
        }
        Ok(a)
    }

    /// Whether the entry's approvers (and trusted signers) suffice under `gating`.
    pub(super) fn complete(&self, a: &Approval, gating: &[&Policy]) -> bool {
        approvers(a, self.requester_name(a), self.now).suffice(
            crate::policy::required_approvers(gating).unwrap_or(1),
            &crate::policy::required_levels(gating),
        )
    }

    pub(super) fn requester_name<'a>(&self, a: &'a Approval) -> &'a str {
        a.subject.user().unwrap_or_default()
    }

    pub(super) fn edit(&self, id: &str, action: Action, entry: Approval, gating: &[&Policy]) -> EntryEdit {
        let found = approvers(&entry, self.requester_name(&entry), self.now);
        let (count, signers) = (
            found.count(),
            found.signers().into_iter().map(str::to_string).collect(),
        );
        EntryEdit {
            id: id.to_string(),
            action,
            approvers: count,
            required: crate::policy::required_approvers(gating),
            signers,
            entry: Some(entry),
        }
    }
}
