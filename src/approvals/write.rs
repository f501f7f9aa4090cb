//! Writing an approval back as the YAML value of its ConfigMap key: what `jitgate request`,
//! `approve`, `sign`, `export` and the paste-ready entry of a denial write.
//!
//! Hand-written rather than through `serde-saphyr`'s serializer (already a dependency, for
//! the manifests), for two reasons:
//! - the shape people read and diff is fixed: the fields in one order (whom, what, where,
//!   limits, time, reason, approvers, signatures), read verbs as `verbs:`, the admission
//!   operations as `operations:`, a `for:` duration as `1h 30m`;
//! - every string is written as a JSON string, which YAML reads as a double-quoted scalar,
//!   so nothing in a name or a reason can end the value early or add a field, whatever it
//!   holds (`parse_entry` reads it back as the same approval: the tests below and the
//!   `entry` fuzz target).

use super::approval::{Approval, Subject};
use crate::operation::Operation;

impl Approval {
    /// The entry as the YAML value of its ConfigMap key; [`super::parse_entry`] reads it back as
    /// the same approval. Strings are written as JSON strings, which YAML reads as
    /// double-quoted scalars, so nothing in a name or reason can break the entry.
    pub fn to_yaml(&self) -> String {
        let mut e = String::with_capacity(256);
        self.write_yaml(&mut e, "");
        e
    }

    /// Writes [`Approval::to_yaml`]'s lines into `out`, each after `indent`: a denial's
    /// paste-ready entry writes its lines indented under their key in one pass.
    pub fn write_yaml(&self, out: &mut String, indent: &str) {
        use std::fmt::Write;
        // One line of the entry, after the indent.
        macro_rules! line {
            ($($arg:tt)*) => {{
                out.push_str(indent);
                let _ = writeln!(out, $($arg)*);
            }};
        }
        let q = quoted;
        match &self.subject {
            Subject::User(u) => line!("user: {}", q(u)),
            Subject::Group(g) => line!("group: {}", q(g)),
        }
        line!("resource: {}", q(&self.resource_string()));
        if let Some(group) = &self.api_group {
            line!("apiGroup: {}", q(group));
        }
        if !self.namespace.is_empty() {
            line!("namespace: {}", q(&self.namespace));
        }
        if let Some(name) = &self.name {
            line!("name: {}", q(name));
        }
        if let Some(ops) = self.operations {
            for (field, set) in [("operations", ops.admission()), ("verbs", ops.reads())] {
                if !set.is_empty() {
                    let names: Vec<&str> = set.iter().map(Operation::as_str).collect();
                    line!("{field}: [{}]", names.join(", "));
                }
            }
        }
        if let Some(change) = &self.rare.change {
            line!("change: {}", q(change));
        }
        if let Some(n) = self.max_uses {
            line!("maxUses: {n}");
        }
        if self.break_glass {
            line!("breakGlass: true");
        }
        match self.rare.valid_for {
            None => line!("expiresAt: \"{}\"", self.expires_at),
            Some(d) => {
                // `1h 30m`, `90s` as `1m 30s`: read back as the same duration.
                line!("for: {d:#}");
                if let Some(at) = self.rare.approved_at {
                    line!("approvedAt: \"{at}\"");
                }
            }
        }
        line!("reason: {}", q(&self.reason));
        let approvers: Vec<String> = self.approved_by.iter().map(|a| q(a)).collect();
        line!("approvedBy: [{}]", approvers.join(", "));
        if !self.rare.approved_as.is_empty() {
            line!("approvedAs:");
            for (name, groups) in &self.rare.approved_as {
                let groups: Vec<String> = groups.iter().map(|g| q(g)).collect();
                line!("  {}: [{}]", q(name), groups.join(", "));
            }
        }
        if !self.rare.signatures.is_empty() {
            line!("signatures:");
            for s in &self.rare.signatures {
                line!("- signer: {}", q(&s.signer));
                line!("  key: {}", q(&s.key));
                if let Some(cluster) = &s.cluster {
                    line!("  cluster: {}", q(cluster));
                }
                if let Some(namespace) = &s.namespace {
                    line!("  namespace: {}", q(namespace));
                }
                if let Some(t) = s.not_after {
                    line!("  notAfter: \"{t}\"");
                }
                line!("  signature: {}", q(&s.value_base64()));
            }
        }
    }
}

/// `s` as a JSON string, which YAML reads as a double-quoted scalar, with the characters
/// JSON leaves as they are but YAML does not take in a document (DEL, the C1 controls but
/// NEL, U+FFFE and U+FFFF) written as `\u` escapes, which both read.
fn quoted(s: &str) -> String {
    let json = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let unprintable =
        |c: char| matches!(c, '\u{7f}'..='\u{84}' | '\u{86}'..='\u{9f}' | '\u{fffe}' | '\u{ffff}');
    if !json.contains(unprintable) {
        return json;
    }
    json.chars()
        .fold(String::with_capacity(json.len() + 8), |mut out, c| {
            if unprintable(c) {
                let _ = std::fmt::Write::write_fmt(&mut out, format_args!("\\u{:04X}", u32::from(c)));
            } else {
                out.push(c);
            }
            out
        })
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse_entry;
    use super::super::parse::tests::ENTRY;
    use crate::operation::Operation;

    #[test]
    fn an_entry_written_out_reads_back_the_same() {
        let mut a = parse_entry("cm/k", ENTRY).unwrap();
        a.reason = "INC-1: \"quotes\", colons: and\nnewlines".into();
        a.operations = Some([Operation::Update, Operation::Delete].into_iter().collect());
        assert_eq!(parse_entry("cm/k", &a.to_yaml()), Ok(a.clone()));
        a.rare.make_mut().change = Some(format!("sha256:{}", "ab".repeat(32)));
        a.max_uses = std::num::NonZeroU32::new(3);
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
    fn characters_yaml_does_not_take_as_they_are_are_written_escaped_and_read_back() {
        let mut a = parse_entry("cm/k", ENTRY).unwrap();
        a.reason = "del \u{7f} c1 \u{80}\u{9f} nel \u{85} nbsp \u{a0} \u{fffe}\u{ffff} ok".into();
        let text = a.to_yaml();
        assert!(!text.contains('\u{7f}') && text.contains("\\u007F"), "{text:?}");
        assert_eq!(parse_entry("cm/k", &text), Ok(a));
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
            a.approved_by = std::sync::Arc::from(["bob@example.com".into()]);
            a.start_at("2026-11-21T20:00:00Z".parse().unwrap());
            let back = parse_entry("cm/k", &a.to_yaml()).unwrap();
            assert_eq!(back, a, "{valid_for}");
            assert_eq!(
                back.expires_at,
                a.rare.approved_at.unwrap() + a.rare.valid_for.unwrap()
            );
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
    fn quotes_colons_newlines_and_a_change_read_back_as_written() {
        let mut a = parse_entry("cm/k", ENTRY).unwrap();
        a.reason = "INC-1: \"quotes\", colons: and\nnewlines # not a comment".into();
        a.rare.make_mut().change = Some(format!("sha256:{}", "ab".repeat(32)));
        let text = a.to_yaml();
        assert_eq!(parse_entry("cm/k", &text), Ok(a), "{text}");
    }
}
