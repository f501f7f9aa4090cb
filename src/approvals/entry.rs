//! One approval: a key of an approvals ConfigMap's `data`, whose value is a YAML mapping.
//! An entry that does not parse, or that is ambiguous, is refused whole: it never grants.

use super::raw::RawEntry;
use crate::operation::{OpSet, Operation};
use crate::signing::{Checked, Signature};
use jiff::Timestamp;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// A name that many approvals repeat (a user, a group, an approver, a namespace, a
/// resource): approvals parsed together share one copy of each (see [`Names`]).
pub type Name = Arc<str>;

/// One shared copy of each distinct name, handed out while a set of approvals is parsed:
/// a hundred thousand approvals name a few hundred namespaces and a few resources, and
/// keep each once.
#[derive(Debug, Default)]
pub struct Names(HashSet<Name>);

impl Names {
    pub fn get(&mut self, s: &str) -> Name {
        if let Some(name) = self.0.get(s) {
            return name.clone();
        }
        let name: Name = Arc::from(s);
        self.0.insert(name.clone());
        name
    }
}

/// A string kept inline when it is short (up to 24 bytes), as most approval ids, object
/// names and reasons are: a hundred thousand approvals save three allocations each.
pub type Text = compact_str::CompactString;

/// Who an approval is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    User(Name),
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
    /// `for: 1h`: valid for this long from `approvedAt`, instead of until an `expiresAt`.
    pub valid_for: Option<jiff::SignedDuration>,
    /// When the last approver it needed signed (stamped by `jitgate approve`, checked by
    /// the ledger); only with `for:`.
    pub approved_at: Option<Timestamp>,
    pub reason: Text,
    /// As written; counting distinct names other than the requester is the decision's job.
    pub approved_by: Vec<Name>,
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
    /// How many requests it allows at most, across all replicas.
    pub max_uses: Option<u32>,
    /// An emergency entry its user wrote for themselves under a policy's `breakGlass`.
    pub break_glass: bool,
}

impl Approval {
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
        self.valid_for.is_none() || self.approved_at.is_some()
    }

    /// Starts a `for:` entry's clock at `at` (its last approver signs then): it is valid
    /// until `at` plus its `for:`.
    pub fn start_at(&mut self, at: Timestamp) {
        if let Some(d) = self.valid_for {
            self.approved_at = Some(at);
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

    /// What the entry covers, for finding the policies that gate it.
    pub fn scope(&self) -> crate::policy::Scope<'_> {
        crate::policy::Scope {
            api_group: self.api_group.as_deref(),
            resource: &self.resource,
            sub_resource: &self.sub_resource,
            namespace: &self.namespace,
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
            expires_at: self.valid_for.is_none().then(|| self.expires_at.to_string()),
            valid_for_secs: self.valid_for.map(|d| d.as_secs()),
            reason: &self.reason,
            change: self.change.as_deref(),
            max_uses: self.max_uses,
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
        signers.check_all(&self.terms(), &self.signatures)
    }

    /// The key of this entry in its ConfigMap (`id` is `<configmap>/<key>`).
    pub fn key(&self) -> &str {
        self.id.split_once('/').map_or(self.id.as_str(), |(_, key)| key)
    }

    /// The entry as the YAML value of its ConfigMap key; [`parse_entry`] reads it back as
    /// the same approval. Strings are written as JSON strings, which YAML reads as
    /// double-quoted scalars, so nothing in a name or reason can break the entry.
    pub fn to_yaml(&self) -> String {
        use std::fmt::Write;
        let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        let mut e = String::new();
        let _ = match &self.subject {
            Subject::User(u) => writeln!(e, "user: {}", q(u)),
            Subject::Group(g) => writeln!(e, "group: {}", q(g)),
        };
        let _ = writeln!(e, "resource: {}", q(&self.resource_string()));
        if let Some(group) = &self.api_group {
            let _ = writeln!(e, "apiGroup: {}", q(group));
        }
        if !self.namespace.is_empty() {
            let _ = writeln!(e, "namespace: {}", q(&self.namespace));
        }
        if let Some(name) = &self.name {
            let _ = writeln!(e, "name: {}", q(name));
        }
        if let Some(ops) = self.operations {
            for (field, set) in [("operations", ops.admission()), ("verbs", ops.reads())] {
                if !set.is_empty() {
                    let names: Vec<&str> = set.iter().map(Operation::as_str).collect();
                    let _ = writeln!(e, "{field}: [{}]", names.join(", "));
                }
            }
        }
        if let Some(change) = &self.change {
            let _ = writeln!(e, "change: {}", q(change));
        }
        if let Some(n) = self.max_uses {
            let _ = writeln!(e, "maxUses: {n}");
        }
        if self.break_glass {
            let _ = writeln!(e, "breakGlass: true");
        }
        match self.valid_for {
            None => {
                let _ = writeln!(e, "expiresAt: \"{}\"", self.expires_at);
            }
            Some(d) => {
                // `1h 30m`, `90s` as `1m 30s`: read back as the same duration.
                let _ = writeln!(e, "for: {d:#}");
                if let Some(at) = self.approved_at {
                    let _ = writeln!(e, "approvedAt: \"{at}\"");
                }
            }
        }
        let _ = writeln!(e, "reason: {}", q(&self.reason));
        let approvers: Vec<String> = self.approved_by.iter().map(|a| q(a)).collect();
        let _ = writeln!(e, "approvedBy: [{}]", approvers.join(", "));
        if !self.approved_as.is_empty() {
            let _ = writeln!(e, "approvedAs:");
            for (name, groups) in &self.approved_as {
                let groups: Vec<String> = groups.iter().map(|g| q(g)).collect();
                let _ = writeln!(e, "  {}: [{}]", q(name), groups.join(", "));
            }
        }
        if !self.signatures.is_empty() {
            let _ = writeln!(e, "signatures:");
            for s in &self.signatures {
                let _ = writeln!(e, "- signer: {}", q(&s.signer));
                let _ = writeln!(e, "  key: {}", q(&s.key));
                if let Some(cluster) = &s.cluster {
                    let _ = writeln!(e, "  cluster: {}", q(cluster));
                }
                if let Some(namespace) = &s.namespace {
                    let _ = writeln!(e, "  namespace: {}", q(namespace));
                }
                if let Some(t) = s.not_after {
                    let _ = writeln!(e, "  notAfter: \"{t}\"");
                }
                let _ = writeln!(e, "  signature: {}", q(&s.value_base64()));
            }
        }
        e
    }
}

/// A ConfigMap key (`[-._a-zA-Z0-9]`, at most 253 characters) that says what an entry is
/// for: who, where, what, and when it was asked for, to the minute.
pub fn suggested_key(parts: &[&str], now: Timestamp) -> String {
    use std::fmt::Write;
    let mut key = String::new();
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
    let _ = write!(key, "-{}", now.strftime("%Y%m%d%H%M"));
    key
}

/// Why an entry was refused. Names the entry and the rule, never the entry's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("approval {id:?} ignored: {reason}")]
pub struct EntryError {
    pub id: String,
    pub reason: String,
}

/// When a `for:` entry stops granting: its approval plus its duration; never while its
/// clock has not started.
fn expiry(approved_at: Option<Timestamp>, valid_for: jiff::SignedDuration) -> Timestamp {
    approved_at.map_or(Timestamp::MAX, |at| {
        at.checked_add(valid_for).unwrap_or(Timestamp::MAX)
    })
}

/// Parses the value of one ConfigMap key.
pub fn parse_entry(id: &str, text: &str) -> Result<Approval, EntryError> {
    parse_entry_in(id, text, &mut Names::default())
}

/// Parses the value of one ConfigMap key, sharing its names with the other approvals
/// parsed with `names`.
pub fn parse_entry_in(id: &str, text: &str, names: &mut Names) -> Result<Approval, EntryError> {
    let fail = |reason: String| EntryError {
        id: id.to_string(),
        reason,
    };
    let raw: RawEntry = match super::flat::read(text) {
        Some(raw) => raw,
        None => crate::yaml::from_str(text).map_err(fail)?,
    };
    let subject = match (raw.user, raw.group) {
        (Some(u), None) if !u.is_empty() => Subject::User(names.get(&u)),
        (None, Some(g)) if !g.is_empty() => Subject::Group(names.get(&g)),
        (Some(_), Some(_)) => return Err(fail("give exactly one of user and group, not both".into())),
        _ => return Err(fail("give exactly one of user and group, not empty".into())),
    };
    let (resource, sub_resource) = raw.resource.split_once('/').unwrap_or((&raw.resource, ""));
    if resource.is_empty() || sub_resource.contains('/') || raw.resource.ends_with('/') {
        return Err(fail(format!(
            "resource {:?} must be a plural name, optionally with /subresource",
            raw.resource
        )));
    }
    let namespace = raw.namespace.unwrap_or_default();
    for (field, value) in [
        ("resource", raw.resource.as_str()),
        ("namespace", namespace.as_str()),
        ("name", raw.name.as_deref().unwrap_or("")),
        ("apiGroup", raw.api_group.as_deref().unwrap_or("")),
    ] {
        if value.contains(['*', '?', '[']) {
            return Err(fail(format!(
                "{field} must be exact: an approval names what it allows, no wildcards"
            )));
        }
    }
    if raw.name.as_deref() == Some("") {
        return Err(fail("name is empty: omit it to allow any object".into()));
    }
    if raw.operations.as_ref().is_some_and(Vec::is_empty) || raw.verbs.as_ref().is_some_and(Vec::is_empty) {
        return Err(fail(
            "operations or verbs is empty: omit both for every gated operation and read".into(),
        ));
    }
    let mut operations: Option<OpSet> = None;
    for op in raw.operations.into_iter().flatten() {
        operations.get_or_insert_default().insert(op);
    }
    for verb in raw.verbs.into_iter().flatten() {
        let verb = Operation::read_verb(&verb).ok_or_else(|| {
            fail(format!(
                "unknown verb {verb:?}: the reads are get, list and watch"
            ))
        })?;
        operations.get_or_insert_default().insert(verb);
    }
    let time = |field: &str, text: &str| {
        text.parse::<Timestamp>().map_err(|_| {
            fail(format!(
                "{field} must be an RFC 3339 time such as 2026-11-21T22:00:00Z"
            ))
        })
    };
    let approved_at = raw
        .approved_at
        .as_deref()
        .map(|t| time("approvedAt", t))
        .transpose()?;
    let (expires_at, valid_for) = match (&raw.expires_at, &raw.valid_for) {
        (Some(t), None) => {
            if approved_at.is_some() {
                return Err(fail("approvedAt goes with for:, not with expiresAt".into()));
            }
            (time("expiresAt", t)?, None)
        }
        (None, Some(d)) => {
            let d = crate::duration::parse_duration(d).map_err(|e| fail(format!("for: {e}")))?;
            // Approvers without approvedAt are those of an entry that needs more: its
            // clock has not started, and it grants nothing until the last one stamps it
            // (the ledger refuses the completing edit without the stamp).
            (expiry(approved_at, d), Some(d))
        }
        (Some(_), Some(_)) => return Err(fail("give expiresAt or for:, not both".into())),
        (None, None) => {
            return Err(fail(
                "give expiresAt (an RFC 3339 time) or for: (a duration from approval, such as 1h)".into(),
            ));
        }
    };
    if raw.reason.trim().is_empty() {
        return Err(fail("reason is empty: say why the access is needed".into()));
    }
    if raw.approved_by.iter().any(|a| a.is_empty()) {
        return Err(fail("approvedBy holds an empty name".into()));
    }
    if let Some(change) = &raw.change
        && !crate::change::is_fingerprint(change)
    {
        return Err(fail(
            "change must be a fingerprint as a denial prints it: sha256: and 64 hex digits".into(),
        ));
    }
    if raw.change.is_some() && operations.is_some_and(|ops| !ops.reads().is_empty()) {
        return Err(fail(
            "change pins an approval to one write; a read changes nothing: drop change or verbs".into(),
        ));
    }
    if raw.max_uses == Some(0) {
        return Err(fail("maxUses is 0: the approval would allow nothing".into()));
    }
    for (name, groups) in &raw.approved_as {
        if !raw.approved_by.contains(name) {
            return Err(fail(format!(
                "approvedAs names {name:?}, who is not in approvedBy"
            )));
        }
        if groups.is_empty() || groups.iter().any(String::is_empty) {
            return Err(fail(format!(
                "approvedAs of {name:?} names no group, or an empty one"
            )));
        }
    }
    let mut signatures: Vec<Signature> = Vec::new();
    for s in raw.signatures {
        let sig = Signature::parse(crate::signing::SignatureText {
            signer: s.signer,
            key: s.key,
            cluster: s.cluster,
            namespace: s.namespace,
            not_after: s.not_after,
            signature: s.signature,
        })
        .map_err(fail)?;
        if signatures.iter().any(|o| o.signer == sig.signer) {
            return Err(fail(format!("signed twice by {:?}", sig.signer)));
        }
        signatures.push(sig);
    }
    if raw.break_glass && !signatures.is_empty() {
        return Err(fail(
            "a break-glass entry is written by its user and reviewed through approvedBy, not signed".into(),
        ));
    }
    if raw.break_glass && !matches!(subject, Subject::User(_)) {
        return Err(fail(
            "breakGlass is for one user, who writes it for themselves: give user, not group".into(),
        ));
    }
    Ok(Approval {
        id: id.into(),
        subject,
        resource: names.get(resource),
        sub_resource: names.get(sub_resource),
        api_group: raw.api_group.as_deref().map(|g| names.get(g)),
        namespace: names.get(&namespace),
        name: raw.name.map(Text::from),
        operations,
        expires_at,
        valid_for,
        approved_at,
        reason: raw.reason.into(),
        approved_by: raw.approved_by.iter().map(|a| names.get(a)).collect(),
        change: raw.change,
        max_uses: raw.max_uses,
        break_glass: raw.break_glass,
        approved_as: raw.approved_as,
        signatures,
        checked: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: &str = r#"
user: alice@example.com
resource: deployments/scale
apiGroup: apps
namespace: prod
name: web
operations: [UPDATE]
expiresAt: "2026-11-21T22:00:00Z"
reason: "INC-4711: scale up"
approvedBy: [bob@example.com]
"#;

    fn reason_of(text: &str) -> String {
        parse_entry("cm/k", text).unwrap_err().reason
    }

    #[test]
    fn a_full_entry_parses() {
        let a = parse_entry("cm/k", ENTRY).unwrap();
        assert_eq!(a.subject, Subject::User("alice@example.com".into()));
        assert_eq!((&*a.resource, &*a.sub_resource), ("deployments", "scale"));
        assert_eq!(a.api_group.as_deref(), Some("apps"));
        assert_eq!(a.operations, Some([Operation::Update].into_iter().collect()));
        assert_eq!(a.expires_at.to_string(), "2026-11-21T22:00:00Z");
        assert_eq!(a.approved_by, [Name::from("bob@example.com")]);
        assert_eq!(a.resource_string(), "deployments/scale");
    }

    #[test]
    fn an_entry_written_out_reads_back_the_same() {
        let mut a = parse_entry("cm/k", ENTRY).unwrap();
        a.reason = "INC-1: \"quotes\", colons: and\nnewlines".into();
        a.operations = Some([Operation::Update, Operation::Delete].into_iter().collect());
        assert_eq!(parse_entry("cm/k", &a.to_yaml()), Ok(a.clone()));
        a.change = Some(format!("sha256:{}", "ab".repeat(32)));
        a.max_uses = Some(3);
        a.break_glass = true;
        assert_eq!(parse_entry("cm/k", &a.to_yaml()), Ok(a.clone()));
        let group = parse_entry(
            "cm/k",
            "group: sre\nresource: secrets\nexpiresAt: 2026-11-21T22:00:00Z\nreason: x\n",
        )
        .unwrap();
        assert_eq!(parse_entry("cm/k", &group.to_yaml()), Ok(group));
        assert_eq!(a.key(), "k");
    }

    #[test]
    fn a_for_entry_is_written_back_with_the_same_duration() {
        for valid_for in ["90s", "1h30m", "30s", "4h"] {
            let text = ENTRY.replace(
                "expiresAt: \"2026-11-21T22:00:00Z\"",
                &format!("for: {valid_for}"),
            );
            let mut a = parse_entry(
                "cm/k",
                &text.replace("approvedBy: [bob@example.com]", "approvedBy: []"),
            )
            .unwrap();
            assert_eq!(parse_entry("cm/k", &a.to_yaml()), Ok(a.clone()), "{valid_for}");
            a.approved_by = vec!["bob@example.com".into()];
            a.start_at("2026-11-21T20:00:00Z".parse().unwrap());
            let back = parse_entry("cm/k", &a.to_yaml()).unwrap();
            assert_eq!(back, a, "{valid_for}");
            assert_eq!(back.expires_at, a.approved_at.unwrap() + a.valid_for.unwrap());
        }
    }

    #[test]
    fn reads_are_named_as_verbs_and_written_back_so() {
        let text = ENTRY.replace("operations: [UPDATE]", "verbs: [get, watch]");
        let a = parse_entry("cm/k", &text).unwrap();
        let ops = a.operations.unwrap();
        assert!(ops.contains(Operation::Get) && ops.contains(Operation::Watch));
        assert!(!ops.contains(Operation::List) && ops.admission().is_empty());
        assert!(a.to_yaml().contains("verbs: [get, watch]\n"), "{}", a.to_yaml());
        assert_eq!(parse_entry("cm/k", &a.to_yaml()), Ok(a));
        let both = ENTRY.replace("operations: [UPDATE]", "operations: [UPDATE]\nverbs: [get]");
        let ops = parse_entry("cm/k", &both).unwrap().operations.unwrap();
        assert!(ops.contains(Operation::Update) && ops.contains(Operation::Get));
    }

    #[test]
    fn optional_fields_may_be_left_out() {
        let text = "group: sre\nresource: secrets\nnamespace: prod\nexpiresAt: 2026-11-21T22:00:00+01:00\nreason: x\n";
        let a = parse_entry("cm/k", text).unwrap();
        assert_eq!(a.subject, Subject::Group("sre".into()));
        assert!(a.name.is_none() && a.operations.is_none() && a.api_group.is_none());
        assert!(a.approved_by.is_empty());
        assert_eq!(a.expires_at.to_string(), "2026-11-21T21:00:00Z");
    }

    #[test]
    fn an_unknown_field_is_refused() {
        assert!(reason_of(&format!("{ENTRY}approvedUntil: never\n")).contains("approvedUntil"));
    }

    #[test]
    fn user_and_group_are_exclusive_and_one_is_required() {
        assert!(reason_of(&format!("{ENTRY}group: sre\n")).contains("not both"));
        assert!(reason_of(&ENTRY.replace("user: alice@example.com\n", "")).contains("exactly one"));
    }

    #[test]
    fn wildcards_and_bad_values_are_refused() {
        for (from, to, needle) in [
            ("namespace: prod", "namespace: prod-*", "no wildcards"),
            ("name: web", "name: \"*\"", "no wildcards"),
            ("2026-11-21T22:00:00Z", "tomorrow", "RFC 3339"),
            ("[UPDATE]", "[PATCH]", "PATCH"),
            ("[UPDATE]", "[]", "operations or verbs is empty"),
            ("operations: [UPDATE]", "verbs: [delete]", "unknown verb"),
            (
                "operations: [UPDATE]",
                "verbs: []",
                "operations or verbs is empty",
            ),
            (
                "name: web",
                &format!("name: web\nverbs: [get]\nchange: sha256:{}", "ab".repeat(32)),
                "a read changes nothing",
            ),
            ("\"INC-4711: scale up\"", "\"  \"", "reason is empty"),
            ("deployments/scale", "deployments/", "plural name"),
            ("name: web", "name: web\nchange: sha256:beef", "64 hex digits"),
            ("name: web", "name: web\nmaxUses: 0", "maxUses is 0"),
            ("name: web", "name: web\nmaxUses: -1", "invalid u32"),
        ] {
            let reason = reason_of(&ENTRY.replace(from, to));
            assert!(reason.contains(needle), "{to}: {reason}");
        }
    }

    #[test]
    fn break_glass_is_for_a_user_only() {
        let text = ENTRY.replace("user: alice@example.com", "group: sre") + "breakGlass: true\n";
        assert!(reason_of(&text).contains("give user, not group"));
        assert!(
            parse_entry("cm/k", &format!("{ENTRY}breakGlass: true\n"))
                .unwrap()
                .break_glass
        );
    }

    #[test]
    fn a_value_that_is_not_a_mapping_is_refused() {
        assert!(parse_entry("cm/k", "just a string").is_err());
        assert!(parse_entry("cm/k", "").is_err());
    }
}
