//! Error messages about what the API server sent, with the input's values taken out.
//! Parsers quote what they could not accept ("invalid type: string \"…\"", "unknown
//! variant `…`"); in an AdmissionReview those values are request contents, never ours to
//! echo or log. Our own vocabulary in a message (field names, expected variants) is kept.
//! (Approval entries are not redacted: an editor needs to read which field or operation
//! was wrong in the ConfigMap they wrote.)

/// Removes every double-quoted value, and the backtick-quoted value after "unknown
/// variant", "unknown field" or "invalid value", from `message`.
pub fn values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(['"', '`']) {
        let quote = rest.as_bytes()[i] as char;
        let before = &rest[..i];
        out.push_str(before);
        let Some(len) = rest[i + 1..].find(quote) else {
            out.push(quote);
            out.push('…');
            return out;
        };
        let quoted = &rest[i + 1..i + 1 + len];
        let is_value = quote == '"'
            || ["unknown variant ", "unknown field ", "invalid value: "]
                .iter()
                .any(|p| before.ends_with(p));
        out.push(quote);
        out.push_str(if is_value { "…" } else { quoted });
        out.push(quote);
        rest = &rest[i + 2 + len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::values;

    #[test]
    fn values_are_removed_and_our_vocabulary_kept() {
        assert_eq!(
            values("unknown variant `s3cr3t`, expected one of `CREATE`, `UPDATE`"),
            "unknown variant `…`, expected one of `CREATE`, `UPDATE`"
        );
        assert_eq!(
            values("invalid type: string \"s3cr3t\", expected a boolean"),
            "invalid type: string \"…\", expected a boolean"
        );
        assert_eq!(
            values("missing field `uid` at line 1"),
            "missing field `uid` at line 1"
        );
        assert_eq!(
            values("unknown field `s3cr3t`, expected one of `user`"),
            "unknown field `…`, expected one of `user`"
        );
        assert_eq!(values("unterminated \"s3cr3t"), "unterminated \"…");
    }
}
