//! Reading an approval entry: the text of one ConfigMap key, checked field by field and
//! made an [`Approval`]. An entry that does not parse, or that is ambiguous, is refused
//! whole ([`EntryError`], which names the entry and the rule, never its text): it never
//! grants.

use super::approval::{Approval, Names, Rare, RareTerms, Subject, Text, expiry};
use super::raw::RawEntry;
use crate::operation::{OpSet, Operation};
use crate::signing::Signature;
use jiff::Timestamp;

/// Why an entry was refused. Names the entry and the rule, never the entry's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("approval {id:?} ignored: {reason}")]
pub struct EntryError {
    pub id: String,
    pub reason: String,
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
    let raw: RawEntry = crate::yaml::from_str(text).map_err(fail)?;
    let subject = match (raw.user, raw.group) {
        (Some(u), None) if !u.is_empty() => Subject::User(u.into()),
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
    // Refused, never read as no limit at all.
    let max_uses = match raw.max_uses {
        None => None,
        Some(n) => Some(
            std::num::NonZeroU32::new(n)
                .ok_or_else(|| fail("maxUses is 0: the approval would allow nothing".into()))?,
        ),
    };
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
    // Sized to what is written: a vector grown by a push holds room for four, and a
    // signature is 152 bytes (20 000 signed entries held 8.6 MB of room for nothing).
    let mut signatures: Vec<Signature> = Vec::with_capacity(raw.signatures.len());
    for s in raw.signatures {
        let mut sig = Signature::parse(crate::signing::SignatureText {
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
        names.share_signature(&mut sig);
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
        reason: raw.reason.into(),
        approved_by: names.list(&raw.approved_by),
        max_uses,
        break_glass: raw.break_glass,
        rare: Rare::new(RareTerms {
            valid_for,
            approved_at,
            approved_as: raw.approved_as,
            signatures,
            checked: Vec::new(),
            change: raw.change,
        }),
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::approvals::Name;

    pub(in crate::approvals) const ENTRY: &str = r#"
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
        assert_eq!(*a.approved_by, [Name::from("bob@example.com")]);
        assert_eq!(a.resource_string(), "deployments/scale");
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

    /// A key given twice is refused, at the top and inside `approvedAs` (a map, where
    /// serde alone would let the last one win): an entry means one thing or nothing.
    #[test]
    fn a_key_given_twice_is_refused() {
        assert!(reason_of(&format!("{ENTRY}namespace: dev\n")).contains("duplicate"));
        let twice = format!("{ENTRY}approvedAs:\n  bob@example.com: [sre]\n  bob@example.com: [admins]\n");
        assert!(reason_of(&twice).contains("duplicate"), "{}", reason_of(&twice));
        let once = format!("{ENTRY}approvedAs:\n  bob@example.com: [sre]\n");
        assert!(parse_entry("cm/k", &once).is_ok());
    }

    /// One entry past the YAML parser's budget (250 000 nodes) is refused whole; one just
    /// within it is read.
    #[test]
    fn an_entry_past_the_parsers_budget_is_refused() {
        let entry = |n: usize| {
            let approvers = vec!["bob@example.com"; n].join(",");
            ENTRY.replace("[bob@example.com]", &format!("[{approvers}]"))
        };
        let huge = entry(250_010);
        assert!(reason_of(&huge).contains("budget"), "{}", reason_of(&huge));
        assert!(parse_entry("cm/k", &entry(1_000)).is_ok());
    }

    #[test]
    fn a_value_that_is_not_a_mapping_is_refused() {
        assert!(parse_entry("cm/k", "just a string").is_err());
        assert!(parse_entry("cm/k", "").is_err());
    }
}
