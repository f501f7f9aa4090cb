//! A quick reader for the plainest approval entries: one `key: value` per line, values
//! that are plain words or double-quoted printable ASCII, lists written `[a, b]`. Those
//! are the entries that `jitgate request`, `approve` and most people write; reading them
//! without the general YAML parser took start-to-ready at 100 000 approvals from 2.2 s to
//! 0.6 s.
//!
//! It never decides anything on its own: for any text outside that narrow shape (comments,
//! quotes of other kinds, escapes, block or nested values, words YAML reads as other than
//! strings, a key it does not know or sees twice) it gives up, and the YAML parser reads
//! the entry as before. Where it does read an entry, it reads exactly what the YAML parser
//! would: the property test below holds it to that.

use super::raw::RawEntry;
use crate::operation::Operation;
use serde::Deserialize;
use serde::de::value::{Error as ValueError, StrDeserializer};

/// The entry, if `text` has the plain shape; `None` means: ask the YAML parser.
pub(super) fn read(text: &str) -> Option<RawEntry> {
    if text.contains('\r') {
        return None;
    }
    let mut raw = RawEntry::default();
    let (mut resource, mut reason, mut approved_by) = (None, None, None);
    for line in text.split('\n').filter(|l| !l.is_empty()) {
        let (key, value) = line.split_once(": ")?;
        if !key.bytes().all(|b| b.is_ascii_alphabetic()) {
            return None;
        }
        let slot = match key {
            "user" => &mut raw.user,
            "group" => &mut raw.group,
            "resource" => &mut resource,
            "apiGroup" => &mut raw.api_group,
            "namespace" => &mut raw.namespace,
            "name" => &mut raw.name,
            "expiresAt" => &mut raw.expires_at,
            "for" => &mut raw.valid_for,
            "approvedAt" => &mut raw.approved_at,
            "reason" => &mut reason,
            "change" => &mut raw.change,
            "operations" => {
                let ops = list(value)?
                    .into_iter()
                    .map(|op| Operation::deserialize(StrDeserializer::<ValueError>::new(op)).ok())
                    .collect::<Option<Vec<_>>>()?;
                put(&mut raw.operations, ops)?;
                continue;
            }
            "verbs" => {
                let verbs = list(value)?.into_iter().map(str::to_string).collect();
                put(&mut raw.verbs, verbs)?;
                continue;
            }
            "approvedBy" => {
                let names = list(value)?.into_iter().map(str::to_string).collect();
                put(&mut approved_by, names)?;
                continue;
            }
            _ => return None,
        };
        put(slot, scalar(value)?.to_string())?;
    }
    raw.resource = resource?;
    raw.reason = reason?;
    raw.approved_by = approved_by.unwrap_or_default();
    Some(raw)
}

/// Sets a field once; a key given twice is the YAML parser's to refuse.
fn put<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

/// A plain word (letters first, then letters, digits and `._@/-`, and none of the words
/// YAML reads as a boolean, a null or a number), or a double-quoted string of printable
/// ASCII without escapes.
fn scalar(value: &str) -> Option<&str> {
    if let Some(inner) = value.strip_prefix('"') {
        let inner = inner.strip_suffix('"')?;
        let plain = inner
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
        return plain.then_some(inner);
    }
    let word = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._@/-".contains(&b));
    let starts_with_letter = value.bytes().next().is_some_and(|b| b.is_ascii_alphabetic());
    const SPECIAL: &[&str] = &[
        "null", "true", "false", "yes", "no", "on", "off", "y", "n", "nan", "inf", "infinity",
    ];
    let special = SPECIAL.iter().any(|s| value.eq_ignore_ascii_case(s));
    (word && starts_with_letter && !special).then_some(value)
}

/// `[a, "b", c]`: each item a [`scalar`].
fn list(value: &str) -> Option<Vec<&str>> {
    let inner = value.strip_prefix('[')?.strip_suffix(']')?;
    if inner.trim_matches(' ').is_empty() {
        return Some(Vec::new());
    }
    inner
        .split(',')
        .map(|item| scalar(item.trim_matches(' ')))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_entries_jitgate_and_people_write_are_read_quickly() {
        let written = "user: alice@example.com\nresource: \"deployments/scale\"\napiGroup: \"apps\"\n\
                       namespace: \"prod\"\nname: \"web\"\noperations: [UPDATE]\n\
                       expiresAt: \"2026-11-21T22:00:00Z\"\nreason: \"INC-4711: scale up\"\n\
                       approvedBy: [\"bob@example.com\", carol]\n";
        let raw = read(written).expect("the plain shape");
        assert_eq!(raw.resource, "deployments/scale");
        assert_eq!(raw.reason, "INC-4711: scale up");
        assert_eq!(raw.approved_by, ["bob@example.com", "carol"]);
        assert_eq!(raw.operations, Some(vec![Operation::Update]));
        assert_eq!(Some(raw), crate::yaml::from_str::<RawEntry>(written).ok());
    }

    #[test]
    fn anything_else_is_left_to_the_yaml_parser() {
        for text in [
            "user: alice # me\nresource: secrets\nreason: r\n",
            "user: 'alice'\nresource: secrets\nreason: r\n",
            "user: \"al\\u0069ce\"\nresource: secrets\nreason: r\n",
            "user: alice\nname: null\nresource: secrets\nreason: r\n",
            "user: alice\nname: 123\nresource: secrets\nreason: r\n",
            "user: alice\nuser: bob\nresource: secrets\nreason: r\n",
            "user: alice\nresource: secrets\nreason: r\nmaxUses: 1\n",
            "user: alice\nresource: secrets\nreason: >\n  folded\n",
            "user: alice\nresource: secrets\n",
            "user: alice\r\nresource: secrets\r\nreason: r\r\n",
            "user: alice\nresource: secrets\nreason: r\noperations: [PATCH]\n",
        ] {
            assert!(read(text).is_none(), "{text:?}");
        }
    }

    fn value() -> impl Strategy<Value = String> {
        // Mostly the plain shape, so that the quick reader often reads something.
        let seps = prop_oneof![8 => Just(": "), 1 => prop::sample::select(vec![":", ":  ", " : ", ":\t"])];
        let plain = prop::sample::select(vec![
            "alice",
            "a.b@c-d/e",
            "\"quoted\"",
            "\"a: b # c\"",
            "\"\"",
            "[UPDATE]",
            "[UPDATE, DELETE]",
            "[ a , b ]",
            "[\"a\", b]",
            "[]",
            "\"2026-01-01T00:00:00Z\"",
            "prod-1",
            "x.y",
        ]);
        let tricky = prop::sample::select(vec![
            "'single'",
            "\"esc\\tape\"",
            "null",
            "Null",
            "~",
            "yes",
            "No",
            "on",
            "y",
            "123",
            "1e3",
            "0x1F",
            ".inf",
            "-dash",
            "x # comment",
            "x ",
            " x",
            "[update]",
            "[GET]",
            "[a,]",
            "[\"a,b\"]",
            "[a b]",
            "{a: b}",
            "|",
            "&anchor x",
            "*alias",
            "!!str x",
            "\"üñí\"",
            "2026-01-01T00:00:00Z",
            "NaN",
            "TRUE",
            "[null]",
            "[\"\"]",
        ]);
        let values = prop_oneof![3 => plain, 1 => tricky];
        (seps, values).prop_map(|(s, v)| format!("{s}{v}"))
    }

    /// Lines with distinct keys (now and then a key twice, or one that is not a field).
    fn lines() -> impl Strategy<Value = Vec<String>> {
        let keys = vec![
            "user",
            "group",
            "apiGroup",
            "namespace",
            "name",
            "expiresAt",
            "for",
            "approvedAt",
            "change",
            "operations",
            "verbs",
            "approvedBy",
        ];
        let odd = prop::sample::select(vec!["user", "maxUses", "User", "#", "- user"]);
        (
            prop::sample::subsequence(keys, 0..=6).prop_shuffle(),
            prop::option::weighted(0.15, odd),
            prop::collection::vec(value(), 8),
        )
            .prop_map(|(mut keys, odd, values)| {
                keys.extend(odd);
                keys.iter().zip(values).map(|(k, v)| format!("{k}{v}")).collect()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Where the quick reader reads an entry, the YAML parser reads the same entry.
        #[test]
        fn the_quick_reader_agrees_with_the_yaml_parser(
            lines in lines(),
            blank in any::<bool>(),
        ) {
            let mut text = String::from("resource: secrets\nreason: r\n");
            for l in &lines {
                text.push_str(l);
                text.push('\n');
                if blank {
                    text.push('\n');
                }
            }
            if let Some(quick) = read(&text) {
                let yaml = crate::yaml::from_str::<RawEntry>(&text);
                prop_assert_eq!(Some(quick), yaml.ok(), "{:?}", text);
            }
        }
    }
}
