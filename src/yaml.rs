//! YAML parsing with one set of rules for every file jitgate reads: parse budgets against
//! hostile documents, duplicate keys refused, and errors that name a line but never quote
//! the input (an approvals file is not a Secret, but nothing read is echoed on principle).

use serde::de::DeserializeOwned;

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        with_snippet: false,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
    }
}

/// Parses one YAML document into `T`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| e.to_string())
}

/// Parses a stream of YAML documents (separated by `---`), each into a `T`. Empty
/// documents are skipped.
pub fn documents_of<T: DeserializeOwned>(text: &str) -> Result<Vec<T>, String> {
    serde_saphyr::from_multiple_with_options(text, options()).map_err(|e| e.to_string())
}

/// Parses a stream of YAML documents (separated by `---`), each into a `T` handed to `C`
/// as soon as it is read (so that `C` may keep less than every document whole). Empty
/// documents are skipped.
pub fn documents_into<T: DeserializeOwned, C: Default + Extend<T>>(text: &str) -> Result<C, String> {
    serde_saphyr::from_str_multiple_with_options::<T, C>(text, options()).map_err(|e| e.to_string())
}

/// Parses a stream of YAML documents (separated by `---`) into generic values, so that
/// each document can then be checked on its own and an error can name its position.
/// Empty documents are skipped.
pub fn documents(text: &str) -> Result<Vec<serde_json::Value>, String> {
    documents_of(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_documents_are_read_in_order() {
        let docs = documents("a: 1\n---\nb: 2\n---\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["b"], 2);
    }

    #[test]
    fn a_duplicate_key_is_an_error() {
        assert!(documents("a: 1\na: 2\n").is_err());
    }

    #[test]
    fn errors_do_not_quote_the_input() {
        let err = documents("key: [unclosed canary-QQQ\n").unwrap_err();
        assert!(!err.contains("canary-QQQ"), "{err}");
    }
}
