//! The ledger's rules for one entry: created, changed, or removed.

use super::{Action, Editor, LedgerChange, LedgerRule, Violation};
use crate::approvals::{Approval, Subject, approvers, parse_entry};
use crate::policy::{Policy, PolicySet};
use crate::signing::{Checked, Signature, Signers};
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

pub(super) struct Judge<'a> {
    pub policies: &'a PolicySet,
    pub signers: Option<&'a Signers>,
    pub editor: Editor<'a>,
    pub now: Timestamp,
    pub grace: Grace,
}

fn refuse(id: &str, rule: LedgerRule, message: String) -> Violation {
    Violation {
        id: id.to_string(),
        rule,
        message,
    }
}

/// Whether two entries ask for the same: whom for, what, why, and on what terms (all but
/// the expiry, the approvers and the signatures).
fn same_terms(o: &Approval, n: &Approval) -> bool {
    o.subject == n.subject
        && o.resource == n.resource
        && o.sub_resource == n.sub_resource
        && o.api_group == n.api_group
        && o.namespace == n.namespace
        && o.name == n.name
        && o.operations == n.operations
        && o.reason == n.reason
        && o.change == n.change
        && o.max_uses == n.max_uses
        && o.break_glass == n.break_glass
        && o.valid_for == n.valid_for
}

/// `user:alice` or `group:sre`.
fn subject_of(a: &Approval) -> String {
    match &a.subject {
        Subject::User(u) => format!("user:{u}"),
        Subject::Group(g) => format!("group:{g}"),
    }
}

fn distinct(names: &[crate::approvals::Name]) -> BTreeSet<&str> {
    names.iter().map(|n| &**n).collect()
}

impl Judge<'_> {
    fn gating(&self, a: &Approval) -> Vec<&Policy> {
        self.policies.gating_scope(&a.scope())
    }

    /// The editor is the one the entry asks for: its user, or a member of its group.
    fn is_requester(&self, a: &Approval) -> bool {
        match &a.subject {
            Subject::User(u) => **u == *self.editor.username,
            Subject::Group(g) => self.editor.groups.iter().any(|eg| **eg == **g),
        }
    }

    /// The editor may approve under every policy that gates the entry.
    fn may_approve(&self, gating: &[&Policy]) -> bool {
        gating.iter().all(|p| p.may_approve(self.editor.groups))
    }

    /// Parses an entry and checks its signatures against the trusted signers.
    fn parse(&self, id: &str, text: &str) -> Result<Approval, Violation> {
        let mut a = parse_entry(id, text).map_err(|e| {
            refuse(
                id,
                LedgerRule::Malformed,
                format!("the entry does not parse: {}", e.reason),
            )
        })?;
        if let Some(signers) = self.signers {
            a.checked = a.checked_by(signers);
        }
        Ok(a)
    }

    /// Whether the entry's approvers (and trusted signers) suffice under `gating`.
    fn complete(&self, a: &Approval, gating: &[&Policy]) -> bool {
        approvers(a, self.requester_name(a), self.now).suffice(
            crate::policy::required_approvers(gating).unwrap_or(1),
            &crate::policy::required_levels(gating),
        )
    }

    /// Signatures added by this edit: each must be a trusted signer's, verify over the
    /// entry as it now stands, come from a key still valid, not be by whom the entry is
    /// for, and be by someone who may approve under every gating policy. Whoever the
    /// editor is: the signature is the approval, the editor only carries it.
    fn check_signatures(
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
            let position = a.signatures.iter().position(|s| s == *sig);
            let checked = position.and_then(|i| a.checked.get(i));
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
    fn check_approved_as(&self, id: &str, a: &Approval, gating: &[&Policy]) -> Result<(), Violation> {
        let me = self.editor.username;
        match a.approved_as.get(me) {
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
    fn check_deadline(&self, id: &str, a: &Approval, gating: &[&Policy]) -> Result<(), Violation> {
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
    fn check_terms<'p>(&'p self, id: &str, a: &Approval) -> Result<Vec<&'p Policy>, Violation> {
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
        if let Some(d) = a.valid_for {
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
    fn break_glass_limit(&self, id: &str, gating: &[&Policy]) -> Result<SignedDuration, Violation> {
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

    /// A break-glass entry: its user writes it for themselves, with a reason and no
    /// approvers; approvers review it afterwards.
    fn break_glass(&self, id: &str, a: Approval) -> Result<LedgerChange, Violation> {
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
        Ok(self.change(id, Action::BreakGlass, a, &gating))
    }

    /// The checks on the editor adding their own name as an approver.
    fn check_approver(&self, id: &str, a: &Approval, gating: &[&Policy]) -> Result<(), Violation> {
        if self.is_requester(a) {
            let how = match &a.subject {
                Subject::User(_) => "it is your own request".to_string(),
                Subject::Group(g) => format!("it is a request for group {g:?}, which you belong to"),
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

    fn requester_name<'a>(&self, a: &'a Approval) -> &'a str {
        match &a.subject {
            Subject::User(u) => u,
            Subject::Group(_) => "",
        }
    }

    /// A `for:` entry's clock starts with the edit that gives it the last approver it
    /// needs: that edit, and only that one, writes `approvedAt`, as the time of the edit.
    /// `adds` says whether this edit adds an approver or a signature: an edit that adds
    /// neither never starts the clock (not even of an entry complete but unstamped, as one
    /// written by hand may be).
    fn check_stamp(
        &self,
        id: &str,
        before: Option<&Approval>,
        a: &Approval,
        gating: &[&Policy],
        adds: bool,
    ) -> Result<(), Violation> {
        if a.valid_for.is_none() {
            return Ok(());
        }
        let complete = self.complete(a, gating);
        let was_stamped = before.and_then(|b| b.approved_at);
        match (was_stamped, a.approved_at) {
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

    fn change(&self, id: &str, action: Action, entry: Approval, gating: &[&Policy]) -> LedgerChange {
        let found = approvers(&entry, self.requester_name(&entry), self.now);
        let (count, signers) = (
            found.count(),
            found.signers().into_iter().map(str::to_string).collect(),
        );
        LedgerChange {
            id: id.to_string(),
            action,
            approvers: count,
            required: crate::policy::required_approvers(gating),
            signers,
            entry: Some(entry),
        }
    }

    /// A new entry: a request by its requester (or by someone who may approve it), or a
    /// grant by an approver who lists only themselves.
    pub fn created(&self, id: &str, text: &str) -> Result<LedgerChange, Violation> {
        let a = self.parse(id, text)?;
        if a.break_glass {
            return self.break_glass(id, a);
        }
        let gating = self.check_terms(id, &a)?;
        let approvers = distinct(&a.approved_by);
        if approvers.is_empty() && !a.signatures.is_empty() {
            let added: Vec<&Signature> = a.signatures.iter().collect();
            self.check_signatures(id, &a, &added, &gating)?;
            self.check_stamp(id, None, &a, &gating, true)?;
            return Ok(self.change(id, Action::Signed, a, &gating));
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
            return Ok(self.change(id, Action::Requested, a, &gating));
        }
        self.check_added(id, &a, &approvers, &gating)?;
        let added: Vec<&Signature> = a.signatures.iter().collect();
        self.check_signatures(id, &a, &added, &gating)?;
        self.check_stamp(id, None, &a, &gating, true)?;
        Ok(self.change(id, Action::Approved, a, &gating))
    }

    /// Names newly in `approvedBy` must be exactly the editor's own.
    fn check_added(
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

    /// An entry's text changed.
    pub fn changed(&self, id: &str, old: &str, new: &str) -> Result<Option<LedgerChange>, Violation> {
        let Ok(o) = parse_entry(id, old) else {
            // The old text granted nothing: judge the new one as a new entry.
            return self.created(id, new).map(Some);
        };
        let n = self.parse(id, new)?;
        let before = distinct(&o.approved_by);
        if before.is_empty() && !o.break_glass && o.signatures.is_empty() {
            // A pending request amended: by its requester, or by someone who may approve
            // it, for the same subject; then judged like a new entry.
            self.check_amender(id, &o, &n)?;
            return self.created(id, new).map(Some);
        }
        let same_terms = same_terms(&o, &n);
        let gating = self.gating(&n);
        let adds = distinct(&n.approved_by).difference(&before).next().is_some()
            || n.signatures.iter().any(|s| !o.signatures.contains(s));
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
        if let Some(gone) = o.signatures.iter().find(|s| !n.signatures.contains(s)) {
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
            .approved_as
            .iter()
            .find(|(name, groups)| n.approved_as.get(*name) != Some(groups))
        {
            return Err(refuse(
                id,
                LedgerRule::ForgedApprover,
                format!("approvedAs of {name:?} is fixed once written"),
            ));
        }
        let added: BTreeSet<&str> = after.difference(&before).copied().collect();
        if let Some(name) = n
            .approved_as
            .keys()
            .find(|k| !o.approved_as.contains_key(*k) && !added.contains(k.as_str()))
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
            .signatures
            .iter()
            .filter(|s| !o.signatures.contains(s))
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
            return Ok(Some(self.change(id, action, n, &gating)));
        }
        if n.expires_at < o.expires_at {
            self.check_revoker(id, &o, &gating)?;
            let action = if n.expires_at <= self.now {
                Action::Revoked
            } else {
                Action::Shortened
            };
            return Ok(Some(self.change(id, action, n, &gating)));
        }
        // Same entry, written differently.
        Ok(None)
    }

    /// Who may amend a pending request `o` into `n`: its requester, or someone who may
    /// approve it (not when no policy gates it any more: then only its requester). Whom it
    /// is for never changes: a request for someone else is a new request, under a new key.
    /// An edit that adds approvers or signatures is an approval, judged by the rules for
    /// those (which refuse anyone who may not approve, other than a trusted signer's
    /// signature carried in).
    fn check_amender(&self, id: &str, o: &Approval, n: &Approval) -> Result<(), Violation> {
        let gating = self.gating(o);
        let may_amend = self.is_requester(o) || (!gating.is_empty() && self.may_approve(&gating));
        let approving = !n.approved_by.is_empty() || !n.signatures.is_empty();
        if !may_amend && (o.subject != n.subject || !approving) {
            return Err(refuse(
                id,
                LedgerRule::NotRequester,
                format!(
                    "{:?} may not amend this pending request: it is {}'s, and only they or someone who may approve it may change it",
                    self.editor.username,
                    subject_of(o)
                ),
            ));
        }
        if o.subject != n.subject {
            return Err(refuse(
                id,
                LedgerRule::SubjectChanged,
                format!(
                    "whom an entry is for is fixed once written ({}, not {}): delete it and request anew, under a new key",
                    subject_of(o),
                    subject_of(n)
                ),
            ));
        }
        Ok(())
    }

    /// Revoking (or shortening) a live entry is for its requester, its approvers, and
    /// anyone who may approve under its policies (anyone at all when no policy gates it any
    /// more: then it grants nothing).
    fn check_revoker(&self, id: &str, a: &Approval, gating: &[&Policy]) -> Result<(), Violation> {
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

    /// An entry removed: housekeeping when it had expired (or never parsed), else a
    /// revocation.
    pub fn removed(&self, id: &str, old: &str) -> Result<LedgerChange, Violation> {
        let Ok(a) = parse_entry(id, old) else {
            return Ok(LedgerChange {
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
            return Ok(self.change(id, Action::ExpiredOnEdit, a, &gating));
        }
        self.check_revoker(id, &a, &gating)?;
        Ok(self.change(id, Action::Revoked, a, &gating))
    }
}
