//! What an approval is: the [`Approval`] an entry makes once checked, whom it is for
//! ([`Subject`]), the shared names it holds ([`Name`], [`Names`], [`Text`]), and the key
//! an entry is filed under ([`suggested_key`], read back by [`Approval::requested_at`]).
//! Reading an entry's text is `super::parse`; writing it back, `super::write`.

use crate::operation::OpSet;
use crate::signing::{Checked, Signature};
use jiff::Timestamp;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// A name that many approvals repeat (a group, an approver, a namespace, a resource, a
/// signer): approvals parsed together share one copy of each (see `Names`). A user's
/// name is kept in the approval itself (see [`Subject`]).
pub type Name = Arc<str>;

/// The people who approved an entry (`approvedBy`), in the order written: one list that
/// approvals naming the same approvers in the same order share (see [`Names::list`]).
pub type Approvers = Arc<[Name]>;

/// One shared copy of each distinct name, and of each distinct list of approvers, handed
/// out while a set of approvals is parsed: a hundred thousand approvals name a few hundred
/// namespaces, a few resources and a few lists of approvers, and keep each once.
#[derive(Debug, Default)]
pub struct Names {
    names: HashSet<Name>,
    lists: HashSet<Approvers>,
}

impl Names {
    pub fn get(&mut self, s: &str) -> Name {
        if let Some(name) = self.names.get(s) {
            return name.clone();
        }
        let name: Name = Arc::from(s);
        self.names.insert(name.clone());
        name
    }

    /// The shared list of these approvers, each name shared as [`Names::get`] shares it.
    pub fn list<S: AsRef<str>>(&mut self, approvers: &[S]) -> Approvers {
        let named: Vec<Name> = approvers.iter().map(|a| self.get(a.as_ref())).collect();
        if let Some(list) = self.lists.get(named.as_slice()) {
            return list.clone();
        }
        let list: Approvers = named.into();
        self.lists.insert(list.clone());
        list
    }

    /// Shares a signature's signer, key, cluster and namespace (a few signers sign many
    /// entries, each with one key, for one cluster and namespace).
    pub fn share_signature(&mut self, s: &mut Signature) {
        s.signer = self.get(&s.signer);
        s.key = self.get(&s.key);
        for part in [&mut s.cluster, &mut s.namespace].into_iter().flatten() {
            *part = self.get(part);
        }
    }
}

/// A string kept inline when it is short (up to 24 bytes), as most approval ids, object
/// names and reasons are: a hundred thousand approvals save three allocations each.
pub type Text = compact_str::CompactString;

/// Who an approval is for. A user's name is kept inline when it is short (see [`Text`]):
/// most approvals are for one user each, whose name is seldom another's; a group's is
/// shared, as many approvals name one group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    User(Text),
    Group(Name),
}

/// `user:alice` or `group:sre`: how records, the CLI's tables and the ledger's messages
/// name whom an approval is for.
impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::User(u) => write!(f, "user:{u}"),
            Subject::Group(g) => write!(f, "group:{g}"),
        }
    }
}

impl Subject {
    /// True for a `system:` user or group (service accounts, nodes, the anonymous user,
    /// everyone authenticated or not): an approval grants such a subject nothing, either
    /// way (`crate::rbac`, and the authorization webhook's `decide`).
    pub fn is_system(&self) -> bool {
        self.name().starts_with("system:")
    }

    /// The user's or the group's name.
    pub fn name(&self) -> &str {
        match self {
            Subject::User(u) => u,
            Subject::Group(g) => g,
        }
    }

    /// The user an approval is for: its requester. `None` for a group's, which has no
    /// one requester.
    pub fn user(&self) -> Option<&str> {
        match self {
            Subject::User(u) => Some(u),
            Subject::Group(_) => None,
        }
    }
}

/// A parsed approval entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// `<configmap>/<key>`. (Short strings such as ids, names and reasons are kept inline,
    /// without an allocation of their own: see [`Text`].)
    pub id: Text,
    pub subject: Subject,
    /// Plural resource name, e.g. `deployments`.
    pub resource: Name,
    /// Subresource, e.g. `scale`; empty for the resource itself.
    pub sub_resource: Name,
    /// `None`: any API group.
    pub api_group: Option<Name>,
    /// Empty for cluster-scoped objects.
    pub namespace: Name,
    /// `None`: any object of the resource in the namespace.
    pub name: Option<Text>,
    /// The operations (`operations:`) and read verbs (`verbs:`) it covers. `None`: every
    /// gated operation and every gated read.
    pub operations: Option<OpSet>,
    /// When it stops granting. For a `for:` entry not yet approved, [`Timestamp::MAX`]:
    /// its clock has not started (see [`Approval::started`]).
    pub expires_at: Timestamp,
    pub reason: Text,
    /// As written; counting distinct names other than the requester is the decision's job.
    pub approved_by: Approvers,
    /// How many requests it allows at most, across all replicas.
    pub max_uses: Option<std::num::NonZeroU32>,
    /// An emergency entry its user wrote for themselves under a policy's `breakGlass`.
    pub break_glass: bool,
    /// `for:`, `approvedAt`, `approvedAs`, `change` and signatures: what most approvals
    /// do not have, read through [`Rare`] as if each approval had it.
    pub rare: Rare,
}

/// The terms of an approval that most approvals do not have, kept behind one pointer so
/// that an approval without any is some 130 bytes smaller (a hundred thousand approvals
/// hold 13 MB less). Read as [`RareTerms`] (empty when there are none); written through
/// [`Rare::make_mut`].
#[derive(Clone, Default)]
pub struct Rare(Option<Box<RareTerms>>);

/// See [`Rare`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RareTerms {
    /// `for: 1h`: valid for this long from `approvedAt`, instead of until an `expiresAt`.
    pub valid_for: Option<jiff::SignedDuration>,
    /// When the last approver it needed signed (stamped by `jitgate approve`, checked by
    /// the ledger); only with `for:`.
    pub approved_at: Option<Timestamp>,
    /// `approvedAs`: the groups an approver in `approvedBy` approved as (written by
    /// `jitgate approve`, checked by the ledger against the groups the API server gave
    /// them), for policies with levels.
    pub approved_as: BTreeMap<String, Vec<String>>,
    /// Offline approvals: signatures by trusted signers, as written.
    pub signatures: Vec<Signature>,
    /// What loading made of each signature, in order (empty until checked against the
    /// trusted signers; see [`crate::approvals::Snapshot::signed`]).
    pub checked: Vec<Checked>,
    /// `sha256:<hex>`: the approval allows only a request making exactly this change.
    pub change: Option<String>,
}

static NO_RARE_TERMS: RareTerms = RareTerms {
    valid_for: None,
    approved_at: None,
    approved_as: BTreeMap::new(),
    signatures: Vec::new(),
    checked: Vec::new(),
    change: None,
};

impl Rare {
    /// Holds `terms`, or nothing if they are all empty.
    pub fn new(terms: RareTerms) -> Rare {
        Rare((terms != NO_RARE_TERMS).then(|| Box::new(terms)))
    }

    /// The terms, to change (made, empty, if there were none).
    pub fn make_mut(&mut self) -> &mut RareTerms {
        self.0.get_or_insert_default()
    }
}

impl std::ops::Deref for Rare {
    type Target = RareTerms;

    fn deref(&self) -> &RareTerms {
        self.0.as_deref().unwrap_or(&NO_RARE_TERMS)
    }
}

impl PartialEq for Rare {
    fn eq(&self, other: &Rare) -> bool {
        **self == **other
    }
}

impl Eq for Rare {}

impl std::fmt::Debug for Rare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl Approval {
    /// Takes its names from `names`, in the order parsing asks for them: approvals parsed
    /// apart (on other threads) and then passed through here in order share names exactly
    /// as if `names` had parsed them all.
    pub(super) fn share_names(&mut self, names: &mut Names) {
        if let Subject::Group(group) = &mut self.subject {
            *group = names.get(group);
        }
        self.resource = names.get(&self.resource);
        self.sub_resource = names.get(&self.sub_resource);
        if let Some(g) = &mut self.api_group {
            *g = names.get(g);
        }
        self.namespace = names.get(&self.namespace);
        self.approved_by = names.list(&self.approved_by);
        if !self.rare.signatures.is_empty() {
            for s in &mut self.rare.make_mut().signatures {
                names.share_signature(s);
            }
        }
    }

    /// When it was asked for, as its key says: keys that `jitgate request` and denials
    /// suggest end in the minute they were made (`-YYYYMMDDHHMM`). `None` for other keys.
    pub fn requested_at(&self) -> Option<Timestamp> {
        let stamp = self
            .key()
            .rsplit('-')
            .next()
            .filter(|s| s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()))?;
        jiff::civil::DateTime::strptime("%Y%m%d%H%M", stamp)
            .ok()?
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp())
    }

    /// False for a `for:` entry whose clock has not started: not approved yet.
    pub fn started(&self) -> bool {
        self.rare.valid_for.is_none() || self.rare.approved_at.is_some()
    }

    /// Starts a `for:` entry's clock at `at` (its last approver signs then): it is valid
    /// until `at` plus its `for:`.
    pub fn start_at(&mut self, at: Timestamp) {
        if let Some(d) = self.rare.valid_for {
            self.rare.make_mut().approved_at = Some(at);
            self.expires_at = expiry(Some(at), d);
        }
    }

    /// `resource` or `resource/subresource`, as written in the entry.
    pub fn resource_string(&self) -> String {
        if self.sub_resource.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}/{}", self.resource, self.sub_resource)
        }
    }

    /// What the entry covers: for finding the policies that gate it, and (its `Display`)
    /// as people read it.
    pub fn scope(&self) -> crate::policy::Scope<'_> {
        crate::policy::Scope {
            api_group: self.api_group.as_deref(),
            resource: &self.resource,
            sub_resource: &self.sub_resource,
            namespace: &self.namespace,
            name: self.name.as_deref(),
            operations: self.operations.unwrap_or(crate::operation::OpSet::ALL),
        }
    }

    /// What a signature of this entry covers: its id and every field that gives it power.
    pub fn terms(&self) -> crate::signing::Terms<'_> {
        let (user, group) = match &self.subject {
            Subject::User(u) => (Some(&**u), None),
            Subject::Group(g) => (None, Some(&**g)),
        };
        crate::signing::Terms {
            id: &self.id,
            user,
            group,
            api_group: self.api_group.as_deref(),
            resource: self.resource_string(),
            namespace: &self.namespace,
            name: self.name.as_deref(),
            operations: self
                .operations
                .map(|ops| ops.iter().map(|o| o.as_str()).collect()),
            expires_at: self.rare.valid_for.is_none().then(|| self.expires_at.to_string()),
            valid_for_secs: self.rare.valid_for.map(|d| d.as_secs()),
            reason: &self.reason,
            change: self.rare.change.as_deref(),
            max_uses: self.max_uses.map(|n| n.get()),
            break_glass: self.break_glass,
        }
    }

    /// True when the two entries have the same terms, approvals aside: what two copies of
    /// one entry must share for a signature of one to be valid on the other.
    pub fn same_terms(&self, other: &Approval) -> bool {
        self.terms() == other.terms()
    }

    /// Its signatures, each checked against the trusted signers.
    pub fn checked_by(&self, signers: &crate::signing::Signers) -> Vec<Checked> {
        signers.check_all(&self.terms(), &self.rare.signatures)
    }

    /// The key of this entry in its ConfigMap (`id` is `<configmap>/<key>`).
    pub fn key(&self) -> &str {
        self.id.split_once('/').map_or(self.id.as_str(), |(_, key)| key)
    }
}

/// A ConfigMap key (`[-._a-zA-Z0-9]`, at most 253 characters) that says what an entry is
/// for: who, where, what, and when it was asked for, to the minute.
pub fn suggested_key(parts: &[&str], now: Timestamp) -> String {
    use std::fmt::Write;
    let mut key = String::with_capacity(64);
    for part in parts.iter().filter(|p| !p.is_empty()) {
        if !key.is_empty() {
            key.push('-');
        }
        for c in part.chars() {
            let c = c.to_ascii_lowercase();
            let keep = c.is_ascii_alphanumeric() || c == '.' || c == '_';
            if keep {
                key.push(c);
            } else if !key.ends_with('-') {
                key.push('-');
            }
        }
    }
    key.truncate(200);
    // The minute in UTC, as `%Y%m%d%H%M` writes it, without parsing a format each time.
    let t = now.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    let _ = write!(
        key,
        "-{:04}{:02}{:02}{:02}{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute()
    );
    key
}

/// When a `for:` entry stops granting: its approval plus its duration; never while its
/// clock has not started.
pub(super) fn expiry(approved_at: Option<Timestamp>, valid_for: jiff::SignedDuration) -> Timestamp {
    approved_at.map_or(Timestamp::MAX, |at| {
        at.checked_add(valid_for).unwrap_or(Timestamp::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::{Rare, RareTerms, suggested_key};

    /// An approval's rare terms read the same, and compare equal, whether they were never
    /// set or set and emptied; only terms there are take room of their own.
    #[test]
    fn rare_terms_read_alike_held_or_not() {
        let none = Rare::new(RareTerms::default());
        assert!(none.0.is_none());
        let mut emptied = Rare::new(RareTerms {
            change: Some("sha256:00".into()),
            ..RareTerms::default()
        });
        assert_eq!(emptied.change.as_deref(), Some("sha256:00"));
        assert_ne!(emptied, none);
        emptied.make_mut().change = None;
        assert_eq!(emptied, none);
        assert!(none.signatures.is_empty() && none.valid_for.is_none());
    }

    /// What `docs/performance.md` says an approval takes: 208 bytes (224 in its `Arc`),
    /// with its rare terms behind one pointer (360 with them inline) and its approvers a
    /// shared list.
    #[test]
    fn an_approval_is_208_bytes() {
        assert_eq!(std::mem::size_of::<super::Approval>(), 208);
        // A user's name inline takes no more room than a shared one did.
        assert_eq!(std::mem::size_of::<super::Subject>(), 24);
    }

    #[test]
    fn a_suggested_key_ends_with_the_minute_in_utc_zero_padded() {
        let at = "2027-01-05T03:07:59+05:00".parse().unwrap();
        assert_eq!(
            suggested_key(&["Alice@Example.com", "", "prod", "pods/exec"], at),
            "alice-example.com-prod-pods-exec-202701042207"
        );
    }
}
