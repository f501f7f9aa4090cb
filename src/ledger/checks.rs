//! The checks an edit of an entry must pass: its terms and expiry, who may add an
//! approver or a signature, how a `for:` entry's clock is stamped, and who may amend or
//! revoke it. Each returns the [`Violation`] that refuses the edit.

use super::judge::{Judge, refuse};
use super::{LedgerRule, Violation};
use crate::approvals::{Approval, Subject};
use crate::policy::Policy;
use crate::signing::{Checked, Signature};
use jiff::SignedDuration;
use std::collections::BTreeSet;

impl Judge<'_> {
    /// Signatures added by this edit: each must be a trusted signer's, verify over the
    /// entry as it now stands, come from a key still valid, not be by whom the entry is
    /// for, and be by someone who may approve under every gating policy. Whoever the
    /// editor is: the signature is the approval, the editor only carries it.
    pub(super) fn check_signatures(
        &self,
        id: &str,
        a: &Approval,
        added: &[&Signature],
        gating: &[&Policy],
    ) -> Result<(), Violation> {
        if added.is_empty() {
            return Ok(());
        }
        if self.signers.is_none() {
            return Err(refuse(
                id,
                LedgerRule::SignatureInvalid,
                "jitgate has not loaded the trusted signers yet, so it cannot check a signature; try again in a moment".into(),
            ));
        }
        self.check_deadline(id, a, gating)?;
        for sig in added {
            let position = a.rare.signatures.iter().position(|s| s == *sig);
            let checked = position.and_then(|i| a.rare.checked.get(i));
            let signer = match checked {
                Some(Checked::Trusted(s)) => s,
                Some(Checked::Refused { why, .. }) => {
                    return Err(refuse(id, LedgerRule::SignatureInvalid, why.clone()));
                }
                None => {
                    return Err(refuse(
                        id,
                        LedgerRule::SignatureInvalid,
                        format!("the signature by {:?} could not be checked", sig.signer),
                    ));
                }
            };
            if let Some(why) = signer.expired(self.now) {
                return Err(refuse(
                    id,
                    LedgerRule::SignatureInvalid,
                    format!("{why}: it grants nothing now"),
                ));
            }
            // A `for:` entry's clock starts when it is carried in; the signature's own
            // notAfter bounds how long after signing that may be, and the policies bound it.
            if let Some(not_after) = signer.not_after {
                let max = gating.iter().map(|p| p.max_duration).min().unwrap_or_default();
                let latest = self.now + crate::policy::request_ttl(gating) + max + self.grace.0;
                if not_after > latest {
                    return Err(refuse(
                        id,
                        LedgerRule::SignatureInvalid,
                        format!(
                            "the signature by {:?} counts until {not_after}, later than its policies allow (requestTTL {} and maxDuration {} from now: {}); sign again with an earlier --not-after",
                            signer.name,
                            crate::duration::human(crate::policy::request_ttl(gating)),
                            crate::duration::human(max),
                            latest.strftime("%Y-%m-%dT%H:%M:%SZ")
                        ),
                    ));
                }
            }
            if crate::approvals::signed_by_requester(a, signer, self.requester_name(a)) {
                return Err(refuse(
                    id,
                    LedgerRule::SelfApproval,
                    format!(
                        "the signature by {:?} is by whom the entry is for: nobody approves their own request",
                        signer.name
                    ),
                ));
            }
            if let Some(p) = gating.iter().find(|p| !p.may_approve(&signer.groups)) {
                return Err(refuse(
                    id,
                    LedgerRule::ApproverNotAllowed,
                    format!(
                        "signer {:?} signs as groups [{}], and policy {} takes approvers from {}",
                        signer.name,
                        signer.groups.join(", "),
                        p.name,
                        p.approver_group_names().join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The groups the editor writes into `approvedAs` for themselves must be theirs, as
    /// the API server authenticated them; under a policy with levels they must be given,
    /// or the approval could fill no level.
    pub(super) fn check_approved_as(
        &self,
        id: &str,
        a: &Approval,
        gating: &[&Policy],
    ) -> Result<(), Violation> {
        let me = self.editor.username;
        match a.rare.approved_as.get(me) {
            Some(groups) => {
                if let Some(g) = groups.iter().find(|g| !self.editor.groups.contains(g)) {
                    return Err(refuse(
                        id,
                        LedgerRule::ForgedApprover,
                        format!(
                            "approvedAs says {me:?} approves as group {g:?}, which the API server does not put them in"
                        ),
                    ));
                }
            }
            None if gating.iter().any(|p| !p.levels.is_empty()) => {
                return Err(refuse(
                    id,
                    LedgerRule::ApproverNotAllowed,
                    format!(
                        "its policies ask for levels of approvers: say which of your groups you approve as, approvedAs: {{{me:?}: [GROUP]}} ({} approve writes it)",
                        crate::program::name()
                    ),
                ));
            }
            None => {}
        }
        Ok(())
    }

    /// A request that waited past its policies' requestTTL can no longer be approved.
    pub(super) fn check_deadline(&self, id: &str, a: &Approval, gating: &[&Policy]) -> Result<(), Violation> {
        if let Some(until) = crate::approvals::request_deadline(a, gating)
            && !a.break_glass
            && until <= self.now
        {
            return Err(refuse(
                id,
                LedgerRule::ExpiryInPast,
                format!(
                    "the request waited for approvers until {until}, its policies' requestTTL, and expired unapproved; ask anew"
                ),
            ));
        }
        Ok(())
    }

    /// What every entry written by this edit must satisfy: it is gated, and its expiry is
    /// neither past nor further ahead than its policies allow.
    pub(super) fn check_terms<'p>(&'p self, id: &str, a: &Approval) -> Result<Vec<&'p Policy>, Violation> {
        let gating = self.gating(a);
        if gating.is_empty() {
            return Err(refuse(
                id,
                LedgerRule::NotGated,
                format!(
                    "no policy gates {} in namespace {:?}, so this approval would allow nothing; check resource, apiGroup, namespace and operations",
                    a.resource_string(),
                    a.namespace
                ),
            ));
        }
        let max = if a.break_glass {
            self.break_glass_limit(id, &gating)?
        } else {
            gating.iter().map(|p| p.max_duration).min().unwrap_or_default()
        };
        if let Some(d) = a.rare.valid_for {
            if d > max {
                return Err(refuse(
                    id,
                    LedgerRule::ExpiryTooFar,
                    format!(
                        "for: {} is longer than {}, the most its policies allow",
                        crate::duration::human(d),
                        crate::duration::human(max)
                    ),
                ));
            }
            if !a.started() {
                return Ok(gating);
            }
        }
        if a.expires_at <= self.now - self.grace.0 {
            return Err(refuse(
                id,
                LedgerRule::ExpiryInPast,
                format!("expiresAt {} is in the past", a.expires_at),
            ));
        }
        if a.expires_at.duration_since(self.now) > max + self.grace.0 {
            return Err(refuse(
                id,
                LedgerRule::ExpiryTooFar,
                format!(
                    "expiresAt {} is more than {} from now, the most its policies allow; use {} or earlier",
                    a.expires_at,
                    crate::duration::human(max),
                    (self.now + max).strftime("%Y-%m-%dT%H:%M:%SZ")
                ),
            ));
        }
        Ok(gating)
    }

    /// How long a break-glass entry by the editor may last: every gating policy must allow
    /// break-glass to a group of theirs.
    pub(super) fn break_glass_limit(
        &self,
        id: &str,
        gating: &[&Policy],
    ) -> Result<SignedDuration, Violation> {
        let mut limit: Option<SignedDuration> = None;
        for p in gating {
            match &p.break_glass {
                Some(bg) if bg.admits(self.editor.groups) => {
                    limit = Some(limit.map_or(bg.max_duration, |l| l.min(bg.max_duration)));
                }
                Some(_) => {
                    return Err(refuse(
                        id,
                        LedgerRule::BreakGlassNotAllowed,
                        format!(
                            "{:?} is in none of the breakGlass groups of policy {}",
                            self.editor.username, p.name
                        ),
                    ));
                }
                None => {
                    return Err(refuse(
                        id,
                        LedgerRule::BreakGlassNotAllowed,
                        format!("policy {} allows no break-glass", p.name),
                    ));
                }
            }
        }
        Ok(limit.unwrap_or_default())
    }

    /// The checks on the editor adding their own name as an approver.
    pub(super) fn check_approver(&self, id: &str, a: &Approval, gating: &[&Policy]) -> Result<(), Violation> {
        if self.is_requester(a) {
            let how = match &a.subject {
                Subject::User(_) => "it is your own request".to_string(),
                Subject::Group(_) => format!("it is a request for {}, which you belong to", a.subject),
            };
            return Err(refuse(
                id,
                LedgerRule::SelfApproval,
                format!("{:?} cannot approve this entry: {how}", self.editor.username),
            ));
        }
        if !self.may_approve(gating) {
            let groups: Vec<String> = gating
                .iter()
                .filter(|p| !p.may_approve(self.editor.groups))
                .map(|p| {
                    format!(
                        "policy {} allows groups {}",
                        p.name,
                        p.approver_group_names().join(", ")
                    )
                })
                .collect();
            return Err(refuse(
                id,
                LedgerRule::ApproverNotAllowed,
                format!(
                    "{:?} may not approve under its policies ({})",
                    self.editor.username,
                    groups.join("; ")
                ),
            ));
        }
        Ok(())
    }

    /// A `for:` entry's clock starts with the edit that gives it the last approver it
    /// needs: that edit, and only that one, writes `approvedAt`, as the time of the edit.
    /// `adds` says whether this edit adds an approver or a signature: an edit that adds
    /// neither never starts the clock (not even of an entry complete but unstamped, as one
    /// written by hand may be).
    pub(super) fn check_stamp(
        &self,
        id: &str,
        before: Option<&Approval>,
        a: &Approval,
        gating: &[&Policy],
        adds: bool,
    ) -> Result<(), Violation> {
        if a.rare.valid_for.is_none() {
            return Ok(());
        }
        let complete = self.complete(a, gating);
        let was_stamped = before.and_then(|b| b.rare.approved_at);
        match (was_stamped, a.rare.approved_at) {
            (Some(old), Some(new)) if old == new => Ok(()),
            (Some(_), _) => Err(refuse(
                id,
                LedgerRule::ApprovedAtNotStamped,
                "approvedAt is fixed once written: the approval's clock started then".into(),
            )),
            (None, Some(_)) if !adds => Err(refuse(
                id,
                LedgerRule::ApprovedAtNotStamped,
                "approvedAt is written by the last approver the entry needs, in the edit that adds them".into(),
            )),
            (None, None) if complete && adds => Err(refuse(
                id,
                LedgerRule::ApprovedAtNotStamped,
                format!(
                    "this edit gives the entry its last approver, so it starts its clock: add approvedAt: \"{}\" (jitgate approve does)",
                    self.now.strftime("%Y-%m-%dT%H:%M:%SZ")
                ),
            )),
            (None, None) => Ok(()),
            (None, Some(_)) if !complete => Err(refuse(
                id,
                LedgerRule::ApprovedAtNotStamped,
                "approvedAt is written by the last approver the entry needs, when they sign; it is not complete yet".into(),
            )),
            (None, Some(at)) => {
                if self.now.duration_since(at).abs() > self.grace.0 {
                    return Err(refuse(
                        id,
                        LedgerRule::ApprovedAtNotStamped,
                        format!("approvedAt {at} is not now ({}): the clock starts when the last approver signs", self.now),
                    ));
                }
                Ok(())
            }
        }
    }

    /// Names newly in `approvedBy` must be exactly the editor's own.
    pub(super) fn check_added(
        &self,
        id: &str,
        a: &Approval,
        added: &BTreeSet<&str>,
        gating: &[&Policy],
    ) -> Result<(), Violation> {
        if added.len() > 1 {
            return Err(refuse(
                id,
                LedgerRule::SeveralApprovers,
                format!(
                    "one edit may add one approver, the editor; this one adds {}",
                    added
                        .iter()
                        .map(|n| format!("{n:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if gating.is_empty() {
            // Approvers are checked against the policies that gate the entry when they
            // sign; with none, anyone would pass, and their name would count once a
            // policy came to gate it.
            return Err(refuse(
                id,
                LedgerRule::NotGated,
                format!(
                    "no policy gates {} in namespace {:?}, so nobody can be checked as its approver; it grants nothing, so there is nothing to approve",
                    a.resource_string(),
                    a.namespace
                ),
            ));
        }
        self.check_deadline(id, a, gating)?;
        if let Some(name) = added.iter().find(|n| **n != self.editor.username) {
            return Err(refuse(
                id,
                LedgerRule::ForgedApprover,
                format!(
                    "approvedBy may gain only the editor's own username; {:?} cannot add {name:?}",
                    self.editor.username
                ),
            ));
        }
        self.check_approver(id, a, gating)?;
        self.check_approved_as(id, a, gating)
    }

    /// Who may amend a pending request `o` into `n`: its requester, or someone who may
    /// approve it (not when no policy gates it any more: then only its requester). Whom it
    /// is for never changes: a request for someone else is a new request, under a new key.
    /// An edit that adds approvers or signatures is an approval, judged by the rules for
    /// those (which refuse anyone who may not approve, other than a trusted signer's
    /// signature carried in).
    pub(super) fn check_amender(&self, id: &str, o: &Approval, n: &Approval) -> Result<(), Violation> {
        let gating = self.gating(o);
        let may_amend = self.is_requester(o) || (!gating.is_empty() && self.may_approve(&gating));
        let approving = !n.approved_by.is_empty() || !n.rare.signatures.is_empty();
        if !may_amend && (o.subject != n.subject || !approving) {
            return Err(refuse(
                id,
                LedgerRule::NotRequester,
                format!(
                    "{:?} may not amend this pending request: it is {}'s, and only they or someone who may approve it may change it",
                    self.editor.username, o.subject
                ),
            ));
        }
        if o.subject != n.subject {
            return Err(refuse(
                id,
                LedgerRule::SubjectChanged,
                format!(
                    "whom an entry is for is fixed once written ({}, not {}): delete it and request anew, under a new key",
                    o.subject, n.subject
                ),
            ));
        }
        Ok(())
    }

    /// Revoking (or shortening) a live entry is for its requester, its approvers, and
    /// anyone who may approve under its policies (anyone at all when no policy gates it any
    /// more: then it grants nothing).
    pub(super) fn check_revoker(&self, id: &str, a: &Approval, gating: &[&Policy]) -> Result<(), Violation> {
        let listed = a.approved_by.iter().any(|n| **n == *self.editor.username);
        if self.is_requester(a) || listed || self.may_approve(gating) {
            return Ok(());
        }
        Err(refuse(
            id,
            LedgerRule::RevocationNotAllowed,
            format!(
                "{:?} is neither the requester, an approver of this entry, nor allowed to approve under its policies",
                self.editor.username
            ),
        ))
    }
}
