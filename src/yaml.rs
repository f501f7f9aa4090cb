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

/// What reading a stream cost against the YAML parser's budget, in the counters that add
/// up when several streams are read one after another: see [`Cost::reaches_limits`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    events: usize,
    aliases: usize,
    anchors: usize,
    documents: usize,
    nodes: usize,
    scalar_bytes: usize,
    recorded_anchor_events: usize,
    recorded_anchor_bytes: usize,
    merge_keys: usize,
    comment_bytes: usize,
}

impl Cost {
    fn of(r: &serde_saphyr::budget::BudgetReport) -> Cost {
        Cost {
            events: r.events,
            aliases: r.aliases,
            anchors: r.anchors,
            documents: r.documents,
            nodes: r.nodes,
            scalar_bytes: r.total_scalar_bytes,
            recorded_anchor_events: r.recorded_anchor_events,
            recorded_anchor_bytes: r.recorded_anchor_bytes,
            merge_keys: r.merge_keys,
            comment_bytes: r.total_comment_bytes,
        }
    }

    pub fn add(&mut self, other: Cost) {
        self.events = self.events.saturating_add(other.events);
        self.aliases = self.aliases.saturating_add(other.aliases);
        self.anchors = self.anchors.saturating_add(other.anchors);
        self.documents = self.documents.saturating_add(other.documents);
        self.nodes = self.nodes.saturating_add(other.nodes);
        self.scalar_bytes = self.scalar_bytes.saturating_add(other.scalar_bytes);
        self.recorded_anchor_events = self
            .recorded_anchor_events
            .saturating_add(other.recorded_anchor_events);
        self.recorded_anchor_bytes = self
            .recorded_anchor_bytes
            .saturating_add(other.recorded_anchor_bytes);
        self.merge_keys = self.merge_keys.saturating_add(other.merge_keys);
        self.comment_bytes = self.comment_bytes.saturating_add(other.comment_bytes);
    }

    /// Whether streams that cost this much in all reach any limit the parser sets one
    /// stream read whole (or come within one of it), or use an alias or a merge key (whose
    /// limits, the replays of anchors and the ratio of aliases to anchors, do not add up
    /// so): where true, only reading the streams as one says whether it is within budget.
    /// Each counter of the streams together is at least the one stream's (the events
    /// more, by each stream's start and end), so a stream this finds within the limits is.
    pub fn reaches_limits(&self) -> bool {
        let limits = serde_saphyr::Budget::default();
        self.aliases > 0
            || self.merge_keys > 0
            || self.events >= limits.max_events
            || self.anchors >= limits.max_anchors
            || self.documents >= limits.max_documents
            || self.nodes >= limits.max_nodes
            || self.scalar_bytes >= limits.max_total_scalar_bytes
            || self.recorded_anchor_events >= limits.max_recorded_anchor_events
            || self.recorded_anchor_bytes >= limits.max_recorded_anchor_bytes
            || self.comment_bytes >= limits.max_total_comment_bytes
    }
}

/// [`documents_of`], and what reading the stream cost (`None` if the parser did not say).
pub fn documents_costed<T: DeserializeOwned>(text: &str) -> (Result<Vec<T>, String>, Option<Cost>) {
    let report = std::rc::Rc::new(std::cell::Cell::new(None));
    let slot = std::rc::Rc::clone(&report);
    let options = options().with_budget_report(move |r| slot.set(Some(Cost::of(&r))));
    let read = serde_saphyr::from_multiple_with_options(text, options).map_err(|e| e.to_string());
    (read, report.get())
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

/// The texts of a YAML stream's documents, read from `reader` one document at a time so
/// that a long stream is never held whole. A document begins at each line that begins
/// with `---` followed by a space, a tab, a line break or the end of the stream: YAML's
/// document marker (the marker line is the first line of its document's text, so that
/// what follows the marker on it stays that document's; `kubectl apply -f` splits a file
/// at the same lines, and refuses one with more than a comment after a marker). The first
/// text is what comes before the first such line (it may be empty, or hold only comments
/// or directives). No byte is dropped or added: the texts put end to end are the stream.
///
/// YAML reads such a line as a document marker wherever it stands, but where it would be
/// malformed (inside a quoted or flow scalar, which the split then leaves unterminated) or
/// where a document's directives or end marker sit before it (`...`, `%YAML`): a reader of
/// the texts must read the stream whole wherever a text does not read on its own.
pub struct DocumentTexts<R> {
    reader: R,
    /// The marker line that ended the last text: the first line of the next.
    next: Vec<u8>,
    /// The stream has been read to its end.
    ended: bool,
}

impl<R: std::io::BufRead> DocumentTexts<R> {
    pub fn new(reader: R) -> Self {
        DocumentTexts {
            reader,
            next: Vec::new(),
            ended: false,
        }
    }
}

/// A line that begins a document: `---`, then a space, a tab, a line break or nothing.
fn is_document_marker(line: &[u8]) -> bool {
    line.strip_prefix(b"---")
        .is_some_and(|rest| matches!(rest.first(), None | Some(b' ' | b'\t' | b'\r' | b'\n')))
}

impl<R: std::io::BufRead> Iterator for DocumentTexts<R> {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        let mut text = std::mem::take(&mut self.next);
        loop {
            let start = text.len();
            match self.reader.read_until(b'\n', &mut text) {
                Ok(0) => {
                    self.ended = true;
                    return Some(Ok(text));
                }
                Ok(_) if start > 0 && is_document_marker(&text[start..]) => {
                    self.next = text.split_off(start);
                    return Some(Ok(text));
                }
                Ok(_) => {}
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e));
                }
            }
        }
    }
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

    fn texts_of(stream: &str) -> Vec<String> {
        DocumentTexts::new(stream.as_bytes())
            .map(|t| String::from_utf8(t.unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn a_stream_is_split_at_each_line_that_begins_a_document_and_nowhere_else() {
        let stream = "# head\na: 1\n---\nb: 2\n--- # c\nc: |\n  ---\n ---\n----\n---x\n---\t\n---\r\nd: 4\n--- |\n  e\n---";
        assert_eq!(
            texts_of(stream),
            [
                "# head\na: 1\n",
                "---\nb: 2\n",
                "--- # c\nc: |\n  ---\n ---\n----\n---x\n",
                "---\t\n",
                "---\r\nd: 4\n",
                "--- |\n  e\n",
                "---"
            ]
        );
        assert_eq!(texts_of(stream).concat(), stream, "no byte lost or added");
        assert_eq!(
            texts_of("---\na: 1\n"),
            ["---\na: 1\n"],
            "a first marker is the first text's"
        );
        assert_eq!(texts_of(""), [""]);
        assert_eq!(texts_of("a: 1"), ["a: 1"]);
    }

    #[test]
    fn each_text_reads_as_its_documents_in_the_whole_stream() {
        let stream = "a: 1\n---\nb: 2\n...\n---\n--- {c: 3}\n";
        let whole = documents(stream).unwrap();
        let split: Vec<serde_json::Value> = texts_of(stream)
            .iter()
            .flat_map(|t| documents(t).unwrap())
            .collect();
        assert_eq!(split, whole);
        assert_eq!(whole.len(), 3);
    }

    #[test]
    fn an_error_reading_the_stream_ends_the_texts() {
        struct Failing;
        impl std::io::Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk gone"))
            }
        }
        let mut texts = DocumentTexts::new(std::io::BufReader::new(Failing));
        assert!(texts.next().unwrap().is_err());
        assert!(texts.next().is_none());
    }

    #[test]
    fn errors_do_not_quote_the_input() {
        let err = documents("key: [unclosed canary-QQQ\n").unwrap_err();
        assert!(!err.contains("canary-QQQ"), "{err}");
    }
}
