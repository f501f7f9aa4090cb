//! Where an approval stands: how many approvers it has, how many its policies require,
//! and so whether it is pending, active, break-glass or expired. `/metrics` and
//! `jitgate list` both count through here, so they agree.

use super::{Approval, Subject};
use crate::policy::{self, Level, PolicySet, Unmet};
use crate::signing::{Checked, Signer, Trust};
use jiff::Timestamp;

/// Where an entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Active,
    /// A live break-glass entry.
    BreakGlass,
    Expired,
    Invalid,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Active => "active",
            State::BreakGlass => "break-glass",
            State::Expired => "expired",
            State::Invalid => "invalid",
        }
    }
}

/// The state of an approval: its approvers (other than whom it is for) against what its
/// policies require, or, when the policies are not known, against one. Also returns the
/// approvers counted and the number required.
pub fn state_of(a: &Approval, policies: Option<&PolicySet>, now: Timestamp) -> (State, u32, Option<u32>) {
    let requester = a.subject.user().unwrap_or_default();
    let found = approvers(a, requester, now);
    let counted = found.count();
    let gating = policies.map(|p| p.gating_scope(&a.scope()));
    let required = gating.as_deref().and_then(policy::required_approvers);
    let levels = gating.as_deref().map(policy::required_levels).unwrap_or_default();
    let waited_too_long =
        || request_deadline(a, gating.as_deref().unwrap_or_default()).is_some_and(|t| t <= now);
    let complete = found.suffice(required.unwrap_or(1), &levels) && a.started();
    let state = if now >= a.expires_at || (!a.break_glass && !complete && waited_too_long()) {
        State::Expired
    } else if a.break_glass {
        State::BreakGlass
    } else if complete {
        State::Active
    } else {
        State::Pending
    };
    (state, counted, required)
}

/// When a request stops waiting for approvers: the minute it was asked (from its key)
/// plus the `requestTTL` of the policies that gate it; `None` when the key does not say.
pub fn request_deadline(a: &Approval, gating: &[&policy::Policy]) -> Option<Timestamp> {
    a.requested_at().map(|at| at + policy::request_ttl(gating))
}

/// One person whose approval counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person<'a> {
    pub name: &'a str,
    /// The groups they approve as: from `approvedAs` for an approver through the API
    /// server (none when not recorded), from the signers ConfigMap for a signer.
    pub groups: Vec<&'a str>,
    /// They signed offline (also true when they approved online as well).
    pub signed: bool,
}

/// Who has approved an entry, as far as a request by `requester` is concerned.
#[derive(Debug, Clone, Default)]
pub struct Approvers<'a> {
    /// Distinct people other than the requester (and, for a user approval, the user it
    /// names; for a group approval, signers in that group).
    pub people: Vec<Person<'a>>,
    /// The requester (or whom the entry is for) approved or signed it themselves.
    pub self_approved: bool,
}

impl Approvers<'_> {
    pub fn count(&self) -> u32 {
        u32::try_from(self.people.len()).unwrap_or(u32::MAX)
    }

    /// The levels these people leave unmet.
    pub fn unmet(&self, levels: &[Level]) -> Vec<Unmet> {
        if levels.is_empty() {
            return Vec::new();
        }
        let groups: Vec<&[&str]> = self.people.iter().map(|p| p.groups.as_slice()).collect();
        policy::unmet(levels, &groups)
    }

    /// True when they are enough: `min` people, and every level met.
    pub fn suffice(&self, min: u32, levels: &[Level]) -> bool {
        self.count() >= min && self.unmet(levels).is_empty()
    }

    /// The signers among them.
    pub fn signers(&self) -> Vec<&str> {
        self.people.iter().filter(|p| p.signed).map(|p| p.name).collect()
    }
}

/// The people who approved `a`, for a request by `requester`, at `now`: the distinct names
/// in approvedBy, and the trusted signers whose signatures verified when the entry was
/// loaded and whose keys are still valid, neither being whom the entry is for.
pub fn approvers<'a>(a: &'a Approval, requester: &str, now: Timestamp) -> Approvers<'a> {
    // Sized once: at most one person per name and per signature.
    let mut out = Approvers {
        people: Vec::with_capacity(a.approved_by.len() + a.rare.checked.len()),
        self_approved: false,
    };
    for mark in marks(a, requester, now) {
        let Mark::By { name, signer } = mark else {
            out.self_approved = true;
            continue;
        };
        match (out.people.iter_mut().find(|p| p.name == name), signer) {
            // Named twice in approvedBy.
            (Some(_), None) => {}
            (Some(p), Some(signer)) => {
                p.groups.extend(signer.groups.iter().map(String::as_str));
                p.signed = true;
            }
            (None, None) => out.people.push(Person {
                name,
                groups: a
                    .rare
                    .approved_as
                    .get(name)
                    .map(|g| g.iter().map(String::as_str).collect())
                    .unwrap_or_default(),
                signed: false,
            }),
            (None, Some(signer)) => out.people.push(Person {
                name,
                groups: signer.groups.iter().map(String::as_str).collect(),
                signed: true,
            }),
        }
    }
    out
}

/// One approval of `a` as [`approvers`] reads them, in order: each name in approvedBy, then
/// each trusted signature still valid at the time.
#[derive(Clone, Copy)]
enum Mark<'a> {
    /// By the requester, or by whom the entry is for: it never counts.
    Own,
    /// By someone who counts, once however often they are named or sign.
    By {
        name: &'a str,
        /// Their signature, when it is one.
        signer: Option<&'a Trust>,
    },
}

fn marks<'a>(a: &'a Approval, requester: &str, now: Timestamp) -> impl Iterator<Item = Mark<'a>> + Clone {
    let named_user = a.subject.user();
    let named = a.approved_by.iter().map(move |name| {
        if **name == *requester || Some(&**name) == named_user {
            Mark::Own
        } else {
            Mark::By { name, signer: None }
        }
    });
    let signed = a.rare.checked.iter().filter_map(move |checked| match checked {
        Checked::Trusted(signer) if signer.valid_at(now) => {
            Some(if signed_by_requester(a, signer, requester) {
                Mark::Own
            } else {
                Mark::By {
                    name: &signer.user,
                    signer: Some(signer),
                }
            })
        }
        Checked::Trusted(_) | Checked::Refused { .. } => None,
    });
    named.chain(signed)
}

/// True when `signer` is whom `a` is for, or the one asking: its user (or the requester),
/// or, for a group's entry, a member of that group. Their signature never counts.
pub fn signed_by_requester(a: &Approval, signer: &Signer, requester: &str) -> bool {
    match &a.subject {
        Subject::User(u) => *signer.user == **u || signer.user == requester,
        Subject::Group(g) => signer.groups.iter().any(|m| **m == **g) || signer.user == requester,
    }
}

/// Distinct approvers other than the requester (see [`approvers`]); and whether the
/// requester tried to approve their own request. Counted without gathering who they are
/// (no allocation): what a grant checks when its policies have no levels.
pub fn count_approvers(a: &Approval, requester: &str, now: Timestamp) -> (u32, bool) {
    let marks = marks(a, requester, now);
    let mut counted = 0u32;
    let mut self_approved = false;
    for (i, mark) in marks.clone().enumerate() {
        match mark {
            Mark::Own => self_approved = true,
            // A person counts where they first appear.
            Mark::By { name, .. } => {
                let seen = marks
                    .clone()
                    .take(i)
                    .any(|m| matches!(m, Mark::By { name: earlier, .. } if earlier == name));
                if !seen {
                    counted = counted.saturating_add(1);
                }
            }
        }
    }
    (counted, self_approved)
}

/// Why each signature of `a` that grants nothing, for a request by `requester` at `now`,
/// grants nothing: for a denial to say.
pub fn signature_problems(a: &Approval, requester: &str, now: Timestamp) -> Vec<String> {
    a.rare
        .checked
        .iter()
        .filter_map(|c| match c {
            Checked::Refused { why, .. } => Some(why.clone()),
            Checked::Trusted(s) if !s.valid_at(now) => s.expired(now),
            Checked::Trusted(s) if signed_by_requester(a, s, requester) => Some(format!(
                "the signature by {:?} is the requester's own and does not count",
                s.name
            )),
            Checked::Trusted(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approvals::parse_entry;
    use crate::signing::{Binding, PrivateKey, Signers, sign};
    use std::collections::BTreeMap;

    /// Counting approvers without gathering them (what a grant checks when its policies
    /// have no levels) agrees with gathering them (levels, a denial's message): each
    /// person once, however often named or signing; never the requester or whom the entry
    /// is for; never a signer past their notAfter.
    #[test]
    fn counting_approvers_agrees_with_listing_them() {
        let keys: Vec<PrivateKey> = (0..4).map(|_| PrivateKey::generate().unwrap().0).collect();
        // carol signs under two names, once as a member of sre; dave's key has expired.
        let data = BTreeMap::from([
            (
                "carol".to_string(),
                format!("publicKey: {}\nuser: carol\ngroups: [sre]\n", keys[0].public()),
            ),
            (
                "carol2".to_string(),
                format!("publicKey: {}\nuser: carol\n", keys[1].public()),
            ),
            (
                "dave".to_string(),
                format!(
                    "publicKey: {}\nuser: dave\nnotAfter: \"2000-01-01T00:00:00Z\"\n",
                    keys[2].public()
                ),
            ),
            (
                "alice".to_string(),
                format!("publicKey: {}\nuser: alice\n", keys[3].public()),
            ),
        ]);
        let signers = Signers::from_data(Binding::default(), &data).0;
        let names = ["carol", "carol2", "dave", "alice"];
        let now = Timestamp::now();
        let entry = |subject: &str, approved_by: &str, signed_by: u32| {
            let text = format!(
                "{subject}\nresource: secrets\nnamespace: prod\nexpiresAt: \"2099-01-01T00:00:00Z\"\nreason: r\napprovedBy: {approved_by}\n"
            );
            let mut a = parse_entry("cm/e", &text).unwrap();
            for (i, key) in keys.iter().enumerate().filter(|(i, _)| signed_by & (1 << i) != 0) {
                let signature = sign(&a.terms(), &Binding::default(), names[i], key, None);
                a.rare.make_mut().signatures.push(signature);
            }
            a.rare.make_mut().checked = a.checked_by(&signers);
            a
        };
        // alice's own approval and signature do not count; bob named twice and carol
        // named and signing twice count once each.
        let a = entry("user: alice", "[alice, bob, bob, carol]", 0b1011);
        assert_eq!(count_approvers(&a, "alice", now), (2, true));
        for subject in ["user: alice", "group: sre"] {
            for approved_by in [
                "[]",
                "[bob]",
                "[bob, bob]",
                "[alice, bob, carol]",
                "[carol, alice, dave]",
            ] {
                for signed_by in 0..16 {
                    let a = entry(subject, approved_by, signed_by);
                    for requester in ["alice", "bob", "carol"] {
                        let found = approvers(&a, requester, now);
                        assert_eq!(
                            count_approvers(&a, requester, now),
                            (found.count(), found.self_approved),
                            "{subject}, approvedBy {approved_by}, signed by {signed_by:04b}, asked by {requester}"
                        );
                    }
                }
            }
        }
    }
}
