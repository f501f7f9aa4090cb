//! A quick reader for the plainest approval entries: one `key: value` per line, values
//! that are plain words or double-quoted printable ASCII, lists written `[a, b]`. Those
//! are the entries that `jitgate request`, `approve` and most people write; the general
//! YAML parser takes about four times the CPU for them (at 100 000 such entries, 2.1–2.3 s
//! of CPU to load against 0.5–0.6 s, measured 2026-12-07).
//!
//! It never decides anything on its own: for any text outside that narrow shape (comments,
//! quotes of other kinds, escapes, block or nested values, words YAML reads as other than
//! strings, a key it does not know or sees twice) it gives up, and the YAML parser reads
//! the entry as before. Where it does read an entry, it reads exactly what the YAML parser
//! would. Why the two cannot disagree, and the tests that hold it to that:
//! - An entry it reads is lines of `key: value`, each key one it knows, at the start of its
//!   line, at most once, and each value on its one line: no value it reads can open
//!   something (a quote, a bracket, a block) that YAML would carry on to the next line. So
//!   YAML reads the entry line by line too, and the order and blank lines change nothing:
//!   every set of its fields, in two orders and with blank lines, is checked.
//! - It reads no entry longer than 16 KiB: the YAML parser's budgets, its only rules that
//!   depend on size, cannot be reached below that, so a larger entry is left to it.
//! - What YAML makes of a value of one line depends on its first and last characters, on
//!   pairs of characters next to each other (`: `, ` #`) and on whether the whole is a word
//!   it reads as other than a string. Every value of up to three characters of every kind
//!   (a letter, a digit, each character a word may hold, each blank, every indicator and
//!   quote, a character outside ASCII, control characters), bare, double-quoted and in a
//!   list, meets each of these rules in each place it can apply, and is checked; so is
//!   every case of every such word.
//! - And a property test mixes longer values, keys and separators.

use super::raw::RawEntry;
use crate::operation::Operation;
use serde::Deserialize;
use serde::de::value::{Error as ValueError, StrDeserializer};

/// The longest entry it reads. Far below where any of the YAML parser's budgets (250 000
/// nodes, a million events, 64 MiB of text: `crate::yaml`) can be reached, so that a
/// larger entry, which only those budgets may refuse, is the YAML parser's to read.
const MAX_TEXT: usize = 16 * 1024;

/// The entry, if `text` has the plain shape; `None` means: ask the YAML parser.
pub(super) fn read(text: &str) -> Option<RawEntry> {
    if text.len() > MAX_TEXT || text.contains('\r') {
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

    /// One character of each kind that the quick reader's rules or YAML's treat apart:
    /// letters (`n` and `y` begin words YAML may read as other than strings), a digit,
    /// each character a plain word may hold besides them, the blanks, every YAML
    /// indicator and quote, a character outside ASCII and two control characters.
    const KINDS: &[char] = &[
        'a', 'Z', 'n', 'y', '1', '.', '_', '@', '/', '-', ' ', '\t', '"', '\\', '\'', ',', '[', ']', '{',
        '}', ':', '#', '&', '*', '!', '|', '>', '%', '`', '?', '~', '=', '+', '<', 'é', '\u{1}', '\u{7f}',
    ];

    /// Every string of `KINDS` of up to `len` characters.
    fn every_string(len: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..len {
            last = last
                .iter()
                .flat_map(|s| KINDS.iter().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    /// `line` between two other lines of an entry, and whether the quick reader, where it
    /// reads that entry, reads what the YAML parser reads. A value that went on past its
    /// line in YAML (an open quote or bracket, a block indicator) would take the line after
    /// it along: the line after is there to show that.
    fn agrees(line: &str) -> Result<bool, String> {
        let reason = if line.starts_with("reason:") {
            ""
        } else {
            "reason: r\n"
        };
        let text = format!("resource: secrets\n{line}\nchange: c\n{reason}");
        let Some(quick) = read(&text) else {
            return Ok(false);
        };
        let yaml = crate::yaml::from_str::<RawEntry>(&text);
        if Some(&quick) == yaml.as_ref().ok() {
            Ok(true)
        } else {
            Err(format!("{text:?}: quick {quick:?}, YAML {yaml:?}"))
        }
    }

    /// The two rules YAML applies to a value of one line look at its first character, its
    /// last, and pairs of characters next to each other (`: `, ` #`); the words it reads
    /// as other than strings are listed below. Every value of up to three characters of
    /// every kind, bare, quoted and as a list item, therefore meets each rule in every
    /// place it can apply: where the quick reader reads one, the YAML parser must read the
    /// same.
    #[test]
    fn every_short_value_the_quick_reader_reads_is_what_the_yaml_parser_reads() {
        let (mut read, mut errors) = (0, Vec::new());
        for v in every_string(3) {
            for line in [
                format!("user: {v}"),
                format!("reason: {v}"),
                format!("user: \"{v}\""),
                format!("approvedBy: [{v}]"),
                format!("approvedBy: [\"{v}\", {v}]"),
                format!("operations: [{v}]"),
            ] {
                match agrees(&line) {
                    Ok(r) => read += usize::from(r),
                    Err(e) => errors.push(e),
                }
            }
        }
        assert!(
            errors.is_empty(),
            "{} disagreements, e.g. {:?}",
            errors.len(),
            &errors[..errors.len().min(2)]
        );
        assert!(read > 10_000, "the quick reader read only {read} of them");
    }

    /// An entry longer than 16 KiB is left to the YAML parser, whose budgets then apply:
    /// a list of 250 010 approvers, in half a megabyte, is refused by them.
    #[test]
    fn a_long_entry_is_left_to_the_yaml_parser_and_its_budgets() {
        let entry = |n: usize| {
            format!(
                "user: alice\nresource: secrets\nreason: r\napprovedBy: [{}]\n",
                vec!["a"; n].join(",")
            )
        };
        let longest = (0..)
            .map(entry)
            .take_while(|e| e.len() <= MAX_TEXT)
            .last()
            .unwrap();
        assert!(read(&longest).is_some());
        assert!(read(&entry(longest.matches(',').count() + 2)).is_none());
        let huge = entry(250_010);
        assert!(read(&huge).is_none());
        let err = crate::yaml::from_str::<RawEntry>(&huge).unwrap_err();
        assert!(err.contains("budget"), "{err}");
    }

    /// Every way of writing, in upper and lower case, the words a YAML parser may read as
    /// other than a string (YAML 1.2's core schema, and 1.1's booleans): the quick reader
    /// leaves each to the YAML parser, or reads what it reads. (Where a string is asked
    /// for, serde-saphyr reads only the forms of null otherwise; the quick reader leaves
    /// them all alone, so that a change of schema could not make the two differ.)
    #[test]
    fn words_yaml_reads_as_other_than_strings_are_read_as_the_yaml_parser_reads_them() {
        let words = [
            "null", "true", "false", "yes", "no", "on", "off", "y", "n", "inf", "nan", "infinity",
        ];
        let mut tried = 0;
        for word in words {
            for mask in 0..1u32 << word.len() {
                let cased: String = word
                    .chars()
                    .enumerate()
                    .map(|(i, c)| {
                        if mask >> i & 1 == 1 {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        }
                    })
                    .collect();
                for line in [
                    format!("user: {cased}"),
                    format!("reason: {cased}"),
                    format!("approvedBy: [{cased}]"),
                ] {
                    agrees(&line).unwrap();
                    tried += 1;
                }
            }
        }
        assert_eq!(tried, 3 * words.iter().map(|w| 1 << w.len()).sum::<usize>());
    }

    /// Every set of the fields the quick reader knows, each once with a value it reads,
    /// in the order jitgate writes them, in the reverse order, and with a blank line after
    /// each: the lines of an entry are read on their own, whichever are there and in
    /// whatever order.
    #[test]
    fn every_set_of_fields_in_any_order_is_read_as_the_yaml_parser_reads_it() {
        let fields = [
            "user: alice",
            "group: sre",
            "resource: secrets",
            "apiGroup: apps",
            "namespace: prod",
            "name: web",
            "operations: [UPDATE, DELETE]",
            "verbs: [get]",
            "expiresAt: \"2026-01-01T00:00:00Z\"",
            "for: \"2h\"",
            "approvedAt: \"2026-01-01T00:00:00Z\"",
            "reason: \"INC-1: rotate\"",
            "approvedBy: [bob, \"carol\"]",
            "change: c",
        ];
        let mut read = 0;
        for set in 0..1u32 << fields.len() {
            let chosen: Vec<&str> = (0..fields.len())
                .filter(|i| set >> i & 1 == 1)
                .map(|i| fields[i])
                .collect();
            let forward = chosen.join("\n");
            let backward: Vec<&str> = chosen.iter().rev().copied().collect();
            for text in [forward.clone(), backward.join("\n"), chosen.join("\n\n")] {
                let text = format!("{text}\n");
                if let Some(quick) = super::read(&text) {
                    assert_eq!(
                        Some(quick),
                        crate::yaml::from_str::<RawEntry>(&text).ok(),
                        "{text:?}"
                    );
                    read += 1;
                }
            }
        }
        // Each set with a resource and a reason is read.
        assert_eq!(read, 3 << (fields.len() - 2));
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
