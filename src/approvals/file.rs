//! Reading an approvals file: the approvals ConfigMaps as manifests, exactly as applied to
//! a cluster, read a document at a time and their entries a batch at a time (with
//! `super::configmaps`' entry reader). A new version of the file reads again only the
//! entries whose ConfigMap name, key and text changed; the others are the approvals the
//! version before made.

use super::approval::{Approval, Names, Text};
use super::configmaps::{ConfigMapRef, DEFAULT_NAMESPACE, LABEL, entry_digest, has_label, read_in_order};
use super::parse::EntryError;
use std::collections::HashMap;
use std::sync::Arc;

/// Why an approvals file as a whole could not be used (the last good approvals stay).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not valid YAML: {reason}")]
    Syntax { path: String, reason: String },
    #[error("{path}, document {document}: not a ConfigMap: {reason}")]
    NotConfigMap {
        path: String,
        document: usize,
        reason: String,
    },
}

/// What an approvals file holds: its labelled ConfigMaps' approvals, the refused entries,
/// and the names of ConfigMaps left out for want of the label.
#[derive(Debug)]
pub struct FileApprovals {
    pub approvals: Vec<Arc<Approval>>,
    pub errors: Vec<EntryError>,
    pub unlabelled: Vec<String>,
    pub home: ConfigMapRef,
    /// How many of the labelled ConfigMaps' entries were read (the others were taken as
    /// the reading before made them).
    pub read: usize,
    /// What this reading made of each entry of the labelled ConfigMaps, for the next
    /// reading of the file to take again, once given the approvals as published
    /// ([`ReadEntries::published`]).
    pub entries: ReadEntries,
}

/// What a reading of an approvals file made of each entry of its labelled ConfigMaps:
/// by ConfigMap name, then by a digest of the entry's key and text, the approval (the very
/// `Arc` published) or the refusal. An approval is all of its id (`<configmap>/<key>`) and
/// text, and nothing else, so an entry found here under the same name, key and text is
/// what reading it again would make. A digest and a pointer an entry (32 bytes): texts
/// are not kept.
#[derive(Debug, Default)]
pub struct FileEntries {
    by_name: HashMap<Text, Record>,
    /// Whether a labelled ConfigMap had its `data` before its `metadata` (as `kubectl get
    /// -o yaml` writes them): the next reading then reads the documents' names first
    /// ([`document_names`]), to know under which name to look its entries up.
    data_first: bool,
}

/// [`FileEntries`] as a reading leaves them: the approvals it read are named by their
/// place among [`FileApprovals::approvals`], not held, so that until they are published
/// each is held once, and the store may check its signatures in place rather than copy
/// it.
#[derive(Debug, Default)]
pub struct ReadEntries {
    entries: FileEntries,
    /// How many approvals the reading made (read or kept): the length of the list the
    /// places are in.
    approvals: usize,
}

/// What reading one entry made.
#[derive(Debug, Clone)]
enum Made {
    Approval(Arc<Approval>),
    /// Boxed: refusals are few, and the map's every slot is as large as its largest.
    Refused(Box<EntryError>),
    /// The approval at this place among the reading's approvals (only in [`ReadEntries`]).
    Placed(usize),
}

/// One ConfigMap's entries by digest: sorted by it and looked up by binary search, in
/// about half the room a hash map of as many takes (a slot and a control byte each, and
/// up to twice the slots).
#[derive(Debug, Default)]
struct Record(Vec<(u128, Made)>);

impl Record {
    fn get(&self, digest: &u128) -> Option<&Made> {
        let at = self.0.binary_search_by_key(digest, |(d, _)| *d).ok()?;
        Some(&self.0[at].1)
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut Made> {
        self.0.iter_mut().map(|(_, made)| made)
    }

    /// Sorts what was pushed, keeping the last made of each digest (as a map's insert
    /// would), and gives back the room not used.
    fn sort(&mut self) {
        self.0.reverse();
        self.0.sort_by_key(|(d, _)| *d);
        self.0.dedup_by_key(|(d, _)| *d);
        self.0.shrink_to_fit();
    }
}

impl FileEntries {
    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.by_name.values().map(|r| r.0.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.values().all(|r| r.0.is_empty())
    }
}

impl ReadEntries {
    /// The entries, each approval the one at its place in `published`: the approvals of
    /// the reading, in order, as given to the store (the same `Arc`s). Given another
    /// list (another length, or an approval of another ConfigMap at a place), none are
    /// kept: the next reading reads them all, as it would with nothing before it.
    pub fn published(self, published: &[Arc<Approval>]) -> FileEntries {
        let mut entries = self.entries;
        if published.len() != self.approvals {
            return FileEntries::default();
        }
        for (name, record) in &mut entries.by_name {
            let mut consistent = true;
            for made in record.values_mut() {
                if let Made::Placed(at) = *made {
                    let a = &published[at];
                    consistent &=
                        a.id.strip_prefix(name.as_str())
                            .is_some_and(|k| k.starts_with('/'));
                    *made = Made::Approval(Arc::clone(a));
                }
            }
            if !consistent {
                return FileEntries::default();
            }
        }
        entries
    }
}

/// What a reading of a file hands each of its documents as it reads them.
struct Earlier {
    /// The reading before.
    entries: Arc<FileEntries>,
    /// Each document's `metadata.name`, by its place among the file's documents, as
    /// [`document_names`] read them; empty when not read.
    names: Vec<Option<String>>,
    /// How many documents have begun to be read: the place of the next.
    next: usize,
}

thread_local! {
    /// The reading before, while [`parse_file_after`] reads a file on this thread: the YAML
    /// reader of a stream of documents makes each document with `Deserialize`, which takes
    /// no argument, so this is how a [`FileDocument`] is handed it.
    static EARLIER: std::cell::RefCell<Option<Earlier>> = const { std::cell::RefCell::new(None) };
}

/// Sets [`EARLIER`] for as long as it lives, and puts back what was there when dropped,
/// on an error or a panic too: a reading never sees another's.
struct EarlierSet(Option<Earlier>);

impl EarlierSet {
    fn new(entries: Arc<FileEntries>, names: Vec<Option<String>>) -> Self {
        let earlier = Earlier {
            entries,
            names,
            next: 0,
        };
        EarlierSet(EARLIER.with_borrow_mut(|e| e.replace(earlier)))
    }
}

impl Drop for EarlierSet {
    fn drop(&mut self) {
        let before = self.0.take();
        EARLIER.with_borrow_mut(|e| *e = before);
    }
}

/// Each document's `metadata.name` (`None` where it has none), in the order the YAML
/// reader makes the documents, read with the same options as the documents themselves
/// are, everything else skipped; empty if the file does not read so (the reading proper
/// then says why, and reads every entry of a document whose `data` comes first).
fn document_names(text: &str) -> Vec<Option<String>> {
    #[derive(serde::Deserialize)]
    struct Document {
        metadata: Option<Metadata>,
    }
    #[derive(serde::Deserialize)]
    struct Metadata {
        name: Option<String>,
    }
    crate::yaml::documents_of::<Document>(text)
        .map(|docs| {
            docs.into_iter()
                .map(|d| d.metadata.and_then(|m| m.name))
                .collect()
        })
        .unwrap_or_default()
}

/// One document of an approvals file: a ConfigMap, its entries as text in the order
/// written.
struct FileDocument {
    kind: Option<String>,
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    data: Option<Entries>,
    /// Its `data` came before its `metadata`.
    data_first: bool,
    /// The name its entries were looked up under in the reading before when its `data`
    /// came first: the name [`document_names`] read for its place. [`Reading::take`]
    /// checks it is the name it has.
    looked_up: Option<String>,
}

/// What `#[derive(Deserialize)]` would read (the fields `kind`, `metadata` with its
/// default, `data`; others skipped; a field twice refused), read in the order written so
/// that the entries are read knowing their ConfigMap's name, and those that the reading
/// before (see [`EARLIER`]) made under the same name, key and text are taken from it
/// rather than read again. The name is the document's own when its `metadata` comes
/// first, else the one [`document_names`] read for its place (if it was run), which
/// [`Reading::take`] checks.
impl<'de> serde::Deserialize<'de> for FileDocument {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(field_identifier, rename_all = "lowercase")]
        enum Field {
            Kind,
            Metadata,
            Data,
            #[serde(other)]
            Other,
        }
        struct Visitor {
            entries: Option<Arc<FileEntries>>,
            /// The name [`document_names`] read for this document.
            named: Option<String>,
        }
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = FileDocument;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("struct FileDocument")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<FileDocument, A::Error> {
                use serde::de::Error;
                let mut kind: Option<Option<String>> = None;
                let mut metadata: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta> = None;
                let mut data: Option<Option<Entries>> = None;
                let (mut data_first, mut looked_up) = (false, None);
                while let Some(field) = map.next_key::<Field>()? {
                    match field {
                        Field::Kind if kind.is_some() => return Err(A::Error::duplicate_field("kind")),
                        Field::Kind => kind = Some(map.next_value()?),
                        Field::Metadata if metadata.is_some() => {
                            return Err(A::Error::duplicate_field("metadata"));
                        }
                        Field::Metadata => metadata = Some(map.next_value()?),
                        Field::Data if data.is_some() => return Err(A::Error::duplicate_field("data")),
                        Field::Data => {
                            // The name, if it came first, else the one read for this
                            // document's place; an entry read before under another name
                            // (or none) is read again.
                            let name = match &metadata {
                                Some(m) => m.name.as_deref(),
                                None => {
                                    data_first = true;
                                    looked_up.clone_from(&self.named);
                                    looked_up.as_deref()
                                }
                            };
                            let earlier = name
                                .zip(self.entries.as_deref())
                                .and_then(|(name, earlier)| earlier.by_name.get(name));
                            data = Some(map.next_value_seed(EntriesSeed(earlier))?);
                        }
                        Field::Other => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(FileDocument {
                    kind: kind.flatten(),
                    metadata: metadata.unwrap_or_default(),
                    data: data.flatten(),
                    data_first,
                    looked_up,
                })
            }
        }
        let visitor = EARLIER.with_borrow_mut(|e| match e {
            Some(e) => {
                let named = e.names.get(e.next).cloned().flatten();
                e.next += 1;
                Visitor {
                    entries: Some(Arc::clone(&e.entries)),
                    named,
                }
            }
            None => Visitor {
                entries: None,
                named: None,
            },
        });
        d.deserialize_struct("FileDocument", &["kind", "metadata", "data"], visitor)
    }
}

/// A ConfigMap's `data`, each entry read as an approval under its key alone (the
/// ConfigMap's name may come after its data; [`Reading::take`] puts it in the ids), or
/// taken as the reading before made it. The texts are read a batch at a time, on all
/// cores, and dropped once read: a document's entries are never all held as text, nor
/// as text and approvals at once.
struct Entries(Vec<FileEntry>);

/// One entry of a document's `data`.
struct FileEntry {
    /// [`entry_digest`] of its key and text.
    digest: u128,
    made: Entry,
}

// Most entries are read, and held by value until their document is done, as they were
// before any was kept: boxing them would cost an allocation each.
enum Entry {
    /// Read now: the approval's or refusal's id is the key alone.
    Read(Result<Approval, EntryError>),
    /// Taken from the reading before: its id is whole.
    Kept(Result<Arc<Approval>, Box<EntryError>>),
}

/// Entries read together: enough to keep the cores busy, few enough that their texts are
/// a small part of what their approvals take.
const BATCH: usize = 2048;

/// Reads a document's `data` (or its `null`, as `Option<Entries>` would), taking what it
/// can from the entries the reading before made under this ConfigMap's name, if known.
struct EntriesSeed<'a>(Option<&'a Record>);

impl<'de> serde::de::DeserializeSeed<'de> for EntriesSeed<'_> {
    type Value = Option<Entries>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<Entries>, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> serde::de::Visitor<'de> for EntriesSeed<'_> {
    type Value = Option<Entries>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a map of keys to approval entries")
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Option<Entries>, E> {
        Ok(None)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Option<Entries>, E> {
        Ok(None)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<Entries>, D::Error> {
        d.deserialize_map(EntriesMap(self.0)).map(Some)
    }
}

struct EntriesMap<'a>(Option<&'a Record>);

impl<'de> serde::de::Visitor<'de> for EntriesMap<'_> {
    type Value = Entries;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a map of keys to approval entries")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
        let mut names = Names::default();
        let mut out = Vec::new();
        let mut batch: Vec<(String, String)> = Vec::with_capacity(BATCH);
        while let Some(key) = map.next_key::<String>()? {
            let text: String = map.next_value()?;
            batch.push((key, text));
            if batch.len() == BATCH {
                read_batch(std::mem::take(&mut batch), self.0, &mut names, &mut out);
            }
        }
        read_batch(batch, self.0, &mut names, &mut out);
        Ok(Entries(out))
    }
}

/// Reads a batch of `(key, text)` entries into `out`, in order, but for those found in
/// `earlier` by their key and text: those are taken as they are.
fn read_batch(
    batch: Vec<(String, String)>,
    earlier: Option<&Record>,
    names: &mut Names,
    out: &mut Vec<FileEntry>,
) {
    let digests: Vec<u128> =
        super::parallel::map_in_order(batch.iter().collect(), |_: &mut (), (k, t): &(String, String)| {
            entry_digest(k, t)
        })
        .collect();
    let kept: Vec<Option<Result<Arc<Approval>, Box<EntryError>>>> = digests
        .iter()
        .map(|d| match earlier.and_then(|e| e.get(d)) {
            Some(Made::Approval(a)) => Some(Ok(Arc::clone(a))),
            Some(Made::Refused(e)) => Some(Err(e.clone())),
            // A place among another reading's approvals (published entries hold none):
            // read again.
            Some(Made::Placed(_)) | None => None,
        })
        .collect();
    let to_read: Vec<(String, String)> = batch
        .into_iter()
        .zip(&kept)
        .filter(|(_, kept)| kept.is_none())
        .map(|(entry, _)| entry)
        .collect();
    let mut read = read_in_order(to_read, None, names);
    for (digest, kept) in digests.into_iter().zip(kept) {
        let made = match kept {
            Some(made) => Entry::Kept(made),
            None => match read.next() {
                Some(entry) => Entry::Read(entry),
                None => continue,
            },
        };
        out.push(FileEntry { digest, made });
    }
}

/// An approvals file as its documents are read, one at a time (each ConfigMap's entries
/// read a batch at a time as its document is, see [`Entries`]), so that a large file's
/// entries are never all held as text, nor as text and approvals at once.
#[derive(Default)]
struct Reading {
    /// Documents read so far.
    documents: usize,
    approvals: Vec<Arc<Approval>>,
    errors: Vec<EntryError>,
    unlabelled: Vec<String>,
    home: Option<ConfigMapRef>,
    /// How many of the labelled ConfigMaps' entries were read, not kept.
    read: usize,
    entries: ReadEntries,
    /// The first document that is not a labelled ConfigMap's, and why: the file is
    /// refused (the documents after it are still read through, for a syntax error to
    /// take precedence as it always has, but their entries are not).
    not_configmap: Option<(usize, String)>,
    /// A document's entries were looked up under another name than its own: what was
    /// taken may bear another ConfigMap's ids, so the reading is thrown away.
    misnamed: bool,
}

impl Extend<FileDocument> for Reading {
    fn extend<I: IntoIterator<Item = FileDocument>>(&mut self, documents: I) {
        for doc in documents {
            self.documents += 1;
            self.take(doc);
        }
    }
}

impl Reading {
    /// What the file read makes, or why it is refused.
    fn finish(mut self, path: &str) -> Result<FileApprovals, FileError> {
        if let Some((document, reason)) = self.not_configmap {
            return Err(FileError::NotConfigMap {
                path: path.to_string(),
                document,
                reason,
            });
        }
        self.entries.entries.by_name.values_mut().for_each(Record::sort);
        Ok(FileApprovals {
            approvals: self.approvals,
            errors: self.errors,
            unlabelled: self.unlabelled,
            home: self.home.unwrap_or_default(),
            read: self.read,
            entries: self.entries,
        })
    }

    fn take(&mut self, doc: FileDocument) {
        if doc.looked_up.is_some() && doc.looked_up != doc.metadata.name {
            self.misnamed = true;
        }
        if self.misnamed || self.not_configmap.is_some() {
            return;
        }
        if doc.kind.as_deref() != Some("ConfigMap") {
            self.not_configmap = Some((self.documents, "kind must be ConfigMap".into()));
            return;
        }
        let name = doc.metadata.name.clone().unwrap_or_default();
        if name.is_empty() {
            self.not_configmap = Some((self.documents, "metadata.name is missing".into()));
            return;
        }
        if !has_label(&doc.metadata, LABEL) {
            self.unlabelled.push(name);
            return;
        }
        self.home.get_or_insert_with(|| ConfigMapRef {
            namespace: doc
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| DEFAULT_NAMESPACE.into()),
            name: name.clone(),
        });
        self.entries.entries.data_first |= doc.data_first;
        let entries = doc.data.map(|d| d.0).unwrap_or_default();
        let record = self
            .entries
            .entries
            .by_name
            .entry(Text::from(name.as_str()))
            .or_default();
        record.0.reserve(entries.len());
        for FileEntry { digest, made } in entries {
            let made = match made {
                Entry::Read(Ok(mut a)) => {
                    self.read += 1;
                    a.id = compact_str::format_compact!("{name}/{}", a.id);
                    self.approvals.push(Arc::new(a));
                    Made::Placed(self.approvals.len() - 1)
                }
                Entry::Read(Err(mut e)) => {
                    self.read += 1;
                    e.id = format!("{name}/{}", e.id);
                    self.errors.push(e.clone());
                    Made::Refused(Box::new(e))
                }
                Entry::Kept(Ok(a)) => {
                    self.approvals.push(Arc::clone(&a));
                    Made::Approval(a)
                }
                Entry::Kept(Err(e)) => {
                    self.errors.push((*e).clone());
                    Made::Refused(e)
                }
            };
            record.0.push((digest, made));
        }
        self.entries.approvals = self.approvals.len();
    }
}

/// Parses an approvals file: one or more ConfigMap manifests, exactly as applied to a
/// cluster. Only ConfigMaps labelled `jitgate.dev/approvals: "true"` count, as in a cluster.
pub fn parse_file(path: &str, text: &str) -> Result<FileApprovals, FileError> {
    parse_file_after(path, text, Arc::default())
}

/// Parses a new version of an approvals file whose reading before made `earlier`: an
/// entry is taken as the reading before made it (the same `Arc`, or the same refusal)
/// when its ConfigMap's name, its key and its text are all the same as then; every other
/// entry is read (parsed, and its signatures then checked by the store). The file's YAML
/// is still read whole. A ConfigMap's name is known when its entries are read if its
/// `metadata` comes before its `data`; if not (as `kubectl get -o yaml` writes it), it is
/// the name a first pass over the file read for the document's place, a pass made only
/// when the reading before saw such a ConfigMap (so the version that first puts a
/// ConfigMap in that order, in a file with none so before, reads all its entries).
/// Should a document's name differ from the one its entries were looked up under, the
/// reading is thrown away and the file read again with nothing before it. Which
/// ConfigMaps count, and whether the file is refused, is decided as [`parse_file`]
/// decides it.
pub fn parse_file_after(
    path: &str,
    text: &str,
    earlier: Arc<FileEntries>,
) -> Result<FileApprovals, FileError> {
    let names = if earlier.data_first && !earlier.is_empty() {
        document_names(text)
    } else {
        Vec::new()
    };
    parse_file_named(path, text, earlier, names)
}

/// [`parse_file_after`], the documents' names (by place) given.
fn parse_file_named(
    path: &str,
    text: &str,
    earlier: Arc<FileEntries>,
    names: Vec<Option<String>>,
) -> Result<FileApprovals, FileError> {
    let set = EarlierSet::new(earlier, names);
    let read: Result<Reading, String> = crate::yaml::documents_into(text);
    drop(set);
    let read = read.map_err(|reason| FileError::Syntax {
        path: path.to_string(),
        reason,
    })?;
    if read.misnamed {
        tracing::warn!(file = %path, "approvals file: a document's name is not the one its entries were looked up under; reading every entry");
        return parse_file_named(path, text, Arc::default(), Vec::new());
    }
    read.finish(path)
}

/// [`parse_file_after`] over the texts of the file's documents, as
/// `crate::yaml::DocumentTexts` reads them from the file, a text at a time, so that a
/// large file is never held whole (nor the names pass read over it whole). Each text is
/// read as a stream of its own, the names it needs (see [`parse_file_after`]) read from
/// it alone. `None` where the file must be read whole instead, for [`parse_file_after`]
/// to say what it makes of it: a text that is not UTF-8, that does not read as YAML on
/// its own (the whole file may read otherwise, and a syntax error should name its line
/// in the file), texts that together reach a limit the YAML parser sets a file read
/// whole (a budget against hostile YAML: so many documents, nodes, bytes; or that use an
/// alias, see `crate::yaml::Cost::reaches_limits`), or a document whose name is not the
/// one its entries were looked up under. Otherwise what [`parse_file_after`] would make
/// of the texts put end to end; an error reading the texts is [`FileError::Io`]. The
/// documents of one text are held together until it is read (a text is one document,
/// but for a file whose documents are not split by `---` lines).
pub fn parse_texts_after(
    path: &str,
    texts: impl IntoIterator<Item = std::io::Result<Vec<u8>>>,
    earlier: Arc<FileEntries>,
) -> Option<Result<FileApprovals, FileError>> {
    let named = earlier.data_first && !earlier.is_empty();
    let mut reading = Reading::default();
    // What the texts cost the YAML parser so far, against what it allows the file whole.
    let mut cost = crate::yaml::Cost::default();
    for text in texts {
        let text = match text {
            Ok(text) => String::from_utf8(text).ok()?,
            Err(source) => {
                return Some(Err(FileError::Io {
                    path: path.to_string(),
                    source,
                }));
            }
        };
        let names = if named { document_names(&text) } else { Vec::new() };
        let set = EarlierSet::new(Arc::clone(&earlier), names);
        let (documents, text_cost) = crate::yaml::documents_costed::<FileDocument>(&text);
        drop(set);
        cost.add(text_cost?);
        if cost.reaches_limits() {
            return None;
        }
        reading.extend(documents.ok()?);
        if reading.misnamed {
            return None;
        }
    }
    Some(reading.finish(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approvals::configmaps::parse_configmap;
    use crate::approvals::configmaps::tests::{assert_names_shared, mixed_texts};
    use std::collections::BTreeMap;

    const FILE: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: team-a
  namespace: ops
  labels: { jitgate.dev/approvals: "true" }
data:
  good: |
    user: alice
    resource: secrets
    namespace: prod
    expiresAt: "2099-01-01T00:00:00Z"
    reason: rotate
    approvedBy: [bob]
  broken: |
    user: alice
    resource: secrets
    colour: blue
---
apiVersion: v1
kind: ConfigMap
metadata: { name: stray }
data:
  x: "user: alice"
"#;

    #[test]
    fn a_file_yields_labelled_approvals_and_names_the_refused_ones() {
        let f = parse_file("a.yaml", FILE).unwrap();
        assert_eq!(f.approvals.len(), 1);
        assert_eq!(f.approvals[0].id, "team-a/good");
        assert_eq!(f.errors.len(), 1);
        assert_eq!(f.errors[0].id, "team-a/broken");
        assert_eq!(f.unlabelled, ["stray"]);
        assert_eq!(
            f.home,
            ConfigMapRef {
                namespace: "ops".into(),
                name: "team-a".into()
            }
        );
    }

    #[test]
    fn entries_are_named_by_their_configmap_wherever_its_name_is_written() {
        let data_first = "data:\n  late: |\n    user: alice\n    resource: secrets\n    namespace: prod\n    \
                          expiresAt: \"2099-01-01T00:00:00Z\"\n    reason: r\nkind: ConfigMap\napiVersion: v1\n\
                          metadata: { name: after, labels: { jitgate.dev/approvals: \"true\" } }\n";
        let f = parse_file("a.yaml", data_first).unwrap();
        assert_eq!(f.approvals.len(), 1);
        assert_eq!(f.approvals[0].id, "after/late");
    }

    #[test]
    fn a_key_given_twice_refuses_the_file() {
        let twice = "kind: ConfigMap\nmetadata: { name: a, labels: { jitgate.dev/approvals: \"true\" } }\n\
                     data:\n  k: |\n    user: alice\n  k: |\n    user: mallory\n";
        assert!(matches!(
            parse_file("a.yaml", twice),
            Err(FileError::Syntax { .. })
        ));
    }

    #[test]
    fn a_broken_file_is_an_error_not_an_empty_set() {
        assert!(matches!(
            parse_file("a.yaml", "data: [oops"),
            Err(FileError::Syntax { .. })
        ));
        let not_cm = "apiVersion: v1\nkind: Secret\nmetadata: { name: s }\n";
        assert!(matches!(
            parse_file("a.yaml", not_cm),
            Err(FileError::NotConfigMap { .. })
        ));
    }

    /// A file of one ConfigMap larger than a batch reads as that ConfigMap does from a
    /// cluster: the same approvals and refusals, ids and order, and each name held once
    /// across the batches.
    #[test]
    fn a_file_of_one_configmap_of_many_batches_reads_as_the_same_configmap_from_a_cluster() {
        let n = 2 * BATCH + 17;
        let data: BTreeMap<String, String> = mixed_texts(n).into_iter().collect();
        let mut file = String::from(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  labels: {jitgate.dev/approvals: \"true\"}\ndata:\n",
        );
        for (key, text) in &data {
            file += &format!("  {key}: {}\n", serde_json::to_string(text).unwrap());
        }
        let from_file = parse_file("f.yaml", &file).unwrap();
        let from_cluster = parse_configmap("cm", &data);
        assert_eq!(from_file.approvals.len() + from_file.errors.len(), n);
        assert_eq!(from_file.approvals.len(), from_cluster.approvals.len());
        for (a, b) in from_file.approvals.iter().zip(&from_cluster.approvals) {
            assert_eq!(**a, **b);
        }
        assert_eq!(from_file.errors, from_cluster.errors);
        assert_names_shared(from_file.approvals.iter().map(|a| &**a));
    }

    /// An approvals file of one labelled ConfigMap `name`, its `metadata` first.
    fn file_of(name: &str, entries: &[(&str, String)]) -> String {
        let mut file = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels: {{jitgate.dev/approvals: \"true\"}}\ndata:\n"
        );
        for (key, text) in entries {
            file += &format!("  {key}: {}\n", serde_json::to_string(text).unwrap());
        }
        file
    }

    fn grant(user: &str) -> String {
        format!(
            "user: {user}\nresource: secrets\nnamespace: prod\nexpiresAt: \"2099-01-01T00:00:00Z\"\nreason: r\n"
        )
    }

    /// Twenty entries, one refused, and `last` under the key `last`.
    fn twenty_and(last: String) -> Vec<(&'static str, String)> {
        let keys: [&str; 20] = [
            "k00", "k01", "k02", "k03", "k04", "k05", "k06", "k07", "k08", "k09", "k10", "k11", "k12", "k13",
            "k14", "k15", "k16", "k17", "k18", "bad",
        ];
        let mut entries: Vec<(&str, String)> = keys
            .iter()
            .map(|k| {
                (
                    *k,
                    if *k == "bad" {
                        "user: x".to_string()
                    } else {
                        grant(k)
                    },
                )
            })
            .collect();
        entries.push(("last", last));
        entries
    }

    /// Reads `text` after `earlier`, and what the next reading may take from it (its
    /// approvals published as they are).
    fn read_after(text: &str, earlier: &Arc<FileEntries>) -> (FileApprovals, Arc<FileEntries>) {
        let mut f = parse_file_after("f.yaml", text, Arc::clone(earlier)).unwrap();
        let entries = std::mem::take(&mut f.entries).published(&f.approvals);
        (f, Arc::new(entries))
    }

    fn by_id(f: &FileApprovals, id: &str) -> Arc<Approval> {
        f.approvals.iter().find(|a| a.id == id).cloned().expect(id)
    }

    #[test]
    fn a_file_edit_reads_again_only_the_entries_whose_text_changed() {
        let (first, earlier) = read_after(&file_of("cm", &twenty_and(grant("old"))), &Arc::default());
        assert_eq!((first.read, earlier.len()), (21, 21));
        let (second, earlier) = read_after(&file_of("cm", &twenty_and(grant("new"))), &earlier);
        assert_eq!(second.read, 1);
        assert_eq!(
            by_id(&second, "cm/last").subject,
            crate::approvals::Subject::User("new".into())
        );
        // The others: the very approvals read before, and the same refusal.
        assert_eq!(second.approvals.len(), 20);
        for a in &first.approvals {
            if a.id != "cm/last" {
                assert!(Arc::ptr_eq(a, &by_id(&second, &a.id)), "{}", a.id);
            }
        }
        assert_eq!(second.errors, first.errors);
        assert_eq!(second.errors[0].id, "cm/bad");
        // The same file again reads nothing; a reading without the one before reads all.
        let (third, _) = read_after(&file_of("cm", &twenty_and(grant("new"))), &earlier);
        assert_eq!(third.read, 0);
        assert_eq!(third.approvals.len(), 20);
        // The same text under another key (of the same length) is another entry: read.
        let mut moved = twenty_and(grant("new"));
        moved[0].0 = "k99";
        let (fourth, _) = read_after(&file_of("cm", &moved), &earlier);
        assert_eq!(fourth.read, 1);
        assert!(
            first
                .approvals
                .iter()
                .all(|a| !Arc::ptr_eq(a, &by_id(&fourth, "cm/k99")))
        );
        let fresh = parse_file("f.yaml", &file_of("cm", &twenty_and(grant("new")))).unwrap();
        assert_eq!(fresh.read, 21);
        // Given another list than the approvals it made, a reading keeps nothing.
        assert!(fresh.entries.published(&first.approvals[1..]).is_empty());
    }

    /// The same keys and texts under another ConfigMap name are other entries (their ids,
    /// which signatures bind, change): all read again, none taken.
    #[test]
    fn a_renamed_configmap_reads_its_entries_again() {
        let (first, earlier) = read_after(&file_of("cm", &twenty_and(grant("old"))), &Arc::default());
        let (renamed, _) = read_after(&file_of("other", &twenty_and(grant("old"))), &earlier);
        assert_eq!(renamed.read, 21);
        assert!(renamed.approvals.iter().all(|a| a.id.starts_with("other/")));
        assert!(renamed.errors.iter().all(|e| e.id.starts_with("other/")));
        for a in &renamed.approvals {
            assert!(first.approvals.iter().all(|b| !Arc::ptr_eq(a, b)));
        }
    }

    /// A ConfigMap that loses its label grants nothing, whatever the reading before made of
    /// its entries; given its label back, its entries are read again.
    #[test]
    fn a_configmap_that_loses_its_label_is_dropped_and_read_again_when_it_gets_it_back() {
        let labelled = file_of("cm", &twenty_and(grant("old")));
        let (_, earlier) = read_after(&labelled, &Arc::default());
        let unlabelled = labelled.replace("labels: {jitgate.dev/approvals: \"true\"}", "labels: {}");
        assert_ne!(unlabelled, labelled);
        let (dropped, earlier) = read_after(&unlabelled, &earlier);
        assert!(dropped.approvals.is_empty() && dropped.errors.is_empty());
        assert_eq!(dropped.unlabelled, ["cm"]);
        assert_eq!((dropped.read, earlier.len()), (0, 0));
        let (back, _) = read_after(&labelled, &earlier);
        assert_eq!((back.read, back.approvals.len()), (21, 20));
    }

    /// `file` with each document's keys in the order `kubectl get -o yaml` writes them:
    /// `apiVersion`, `data`, `kind`, `metadata`.
    fn kubectl_order(file: &str) -> String {
        file.split("---\n")
            .map(|doc| {
                let (head, data) = doc.split_at(doc.find("\ndata:\n").unwrap() + 1);
                let (api, rest) = head.split_at(head.find("kind:").unwrap());
                format!("{api}{data}{rest}")
            })
            .collect::<Vec<_>>()
            .join("---\n")
    }

    /// `f` as a reading with nothing before it makes it: the same approvals (contents and
    /// ids), refusals, unlabelled names and home.
    fn assert_reads_as_fresh(f: &FileApprovals, text: &str) {
        let fresh = parse_file("f.yaml", text).unwrap();
        assert_eq!(f.approvals.len(), fresh.approvals.len());
        for (a, b) in f.approvals.iter().zip(&fresh.approvals) {
            assert_eq!(**a, **b);
        }
        assert_eq!(f.errors, fresh.errors);
        assert_eq!(f.unlabelled, fresh.unlabelled);
        assert_eq!(f.home, fresh.home);
    }

    /// A document whose `data` comes before its `metadata` (kubectl's order) reads as the
    /// same document in the usual order does; read again, its entries are taken, not
    /// read: looked up under the name a first pass read for its place.
    #[test]
    fn a_document_with_data_before_metadata_reads_again_only_what_changed() {
        let usual = file_of("cm", &twenty_and(grant("old")));
        let data_first = kubectl_order(&usual);
        assert!(data_first.starts_with("apiVersion: v1\ndata:\n"), "{data_first}");
        let (first, earlier) = read_after(&data_first, &Arc::default());
        assert!(earlier.data_first);
        let (again, _) = read_after(&data_first, &earlier);
        assert_eq!((first.read, again.read), (21, 0));
        assert_reads_as_fresh(&first, &usual);
        assert_reads_as_fresh(&again, &usual);
        // What it read is taken by a document in the usual order, and the other way.
        let (usual_read, from_usual) = read_after(&usual, &earlier);
        assert_eq!(usual_read.read, 0);
        assert!(!from_usual.data_first);
        // Switching back to kubectl's order: no first pass, so read whole, once.
        let (switched, earlier) = read_after(&data_first, &from_usual);
        assert_eq!(switched.read, 21);
        assert_eq!(read_after(&data_first, &earlier).0.read, 0);
    }

    /// Two ConfigMaps in kubectl's order: an edit of one entry of the second reads that
    /// entry alone, and the others are the very approvals read before.
    #[test]
    fn an_edit_of_one_entry_of_a_data_first_file_reads_that_entry() {
        let version = |last: &str| {
            kubectl_order(&format!(
                "{}---\n{}",
                file_of("cm", &twenty_and(grant("old"))),
                file_of("cm2", &twenty_and(grant(last)))
            ))
        };
        let (first, earlier) = read_after(&version("old"), &Arc::default());
        assert_eq!(first.read, 42);
        let (second, _) = read_after(&version("new"), &earlier);
        assert_eq!(second.read, 1);
        assert_reads_as_fresh(&second, &version("new"));
        assert_eq!(
            by_id(&second, "cm2/last").subject,
            crate::approvals::Subject::User("new".into())
        );
        for a in &first.approvals {
            if a.id != "cm2/last" {
                assert!(Arc::ptr_eq(a, &by_id(&second, &a.id)), "{}", a.id);
            }
        }
        assert_eq!(second.errors, first.errors);
    }

    /// A `data`-first ConfigMap renamed, or two whose names are swapped, read their
    /// entries again under their new ids.
    #[test]
    fn a_renamed_data_first_configmap_reads_its_entries_again() {
        let two = |x: &str, y: &str| {
            kubectl_order(&format!(
                "{}---\n{}",
                file_of(x, &twenty_and(grant("x"))),
                file_of(y, &twenty_and(grant("y")))
            ))
        };
        let (first, earlier) = read_after(&two("a", "b"), &Arc::default());
        for (text, read) in [(two("b", "a"), 2), (two("a", "c"), 21)] {
            // Swapped, the entries alike in both (all but `last`) are found under the
            // other name: taken, as reading them again would make them.
            let (renamed, _) = read_after(&text, &earlier);
            assert_eq!(renamed.read, read);
            assert_reads_as_fresh(&renamed, &text);
            for a in &renamed.approvals {
                if first.approvals.iter().any(|b| Arc::ptr_eq(a, b)) {
                    assert!(first.approvals.iter().any(|b| b.id == a.id && Arc::ptr_eq(a, b)));
                }
            }
        }
    }

    /// Should a document's entries be looked up under another name than the one it has
    /// (the first pass and the reading disagreeing), the reading is thrown away and the
    /// file read whole: nothing is taken under another ConfigMap's ids.
    #[test]
    fn entries_looked_up_under_another_name_are_read_again() {
        let text = kubectl_order(&format!(
            "{}---\n{}",
            file_of("cm", &twenty_and(grant("old"))),
            file_of("cm2", &twenty_and(grant("old")))
        ));
        let (_, earlier) = read_after(&text, &Arc::default());
        let swapped = vec![Some("cm2".to_string()), Some("cm".to_string())];
        let f = parse_file_named("f.yaml", &text, earlier, swapped).unwrap();
        assert_eq!(f.read, 42);
        assert_reads_as_fresh(&f, &text);
    }

    /// What a reading made, to compare two: its approvals (ids and contents), refusals,
    /// unlabelled names, home and how many entries it read; or its error.
    fn made(r: &Result<FileApprovals, FileError>) -> String {
        match r {
            Ok(f) => format!(
                "{:?}\n{:?}\n{:?}\n{:?}\n{}",
                f.approvals, f.errors, f.unlabelled, f.home, f.read
            ),
            Err(e) => format!("refused: {e}"),
        }
    }

    fn by_document(text: &[u8], earlier: &Arc<FileEntries>) -> Option<Result<FileApprovals, FileError>> {
        parse_texts_after(
            "f.yaml",
            crate::yaml::DocumentTexts::new(text),
            Arc::clone(earlier),
        )
    }

    /// A file read a document at a time makes what it makes read whole, whatever stands
    /// between its documents, with a reading before it or not, in kubectl's key order or
    /// not; and where a document does not read on its own it asks to be read whole.
    #[test]
    fn a_file_read_a_document_at_a_time_makes_what_it_makes_read_whole_or_asks_for_that() {
        let two = |a: &str, b: &str| {
            file_of("a", &[("k1", grant(a)), ("k2", grant("bob"))])
                + "---\n"
                + &file_of("b", &[("k1", grant(b)), ("k2", "user: x".into())])
        };
        let v1 = two("alice", "carol");
        let v2 = two("alice", "dave");
        let not_configmap = format!("{v2}---\nkind: Secret\nmetadata: {{name: s}}\n");
        // (file, whether it must read a document at a time)
        let files: Vec<(String, bool)> = vec![
            (v2.clone(), true),
            (kubectl_order(&v2), true),
            (FILE.into(), true),
            (String::new(), true),
            ("# nothing here\n".into(), true),
            (format!("---\n{v2}---\n"), true),
            (v2.replace("---\n", "--- # the second\n"), true),
            (v2.replace('\n', "\r\n"), true),
            (format!("\u{feff}{v2}"), true),
            (v2.replace("---\n", "...\n---\n"), true),
            (not_configmap.clone(), true),
            // Errors that take precedence over a document that is not a ConfigMap.
            (format!("{not_configmap}---\ndata: [unclosed\n"), false),
            // A `---` line inside a quoted scalar: malformed YAML, split or not.
            (
                v2.replace("  k2: \"user: x\"\n", "  k2: \"user: x\n---\n  resource: y\"\n"),
                false,
            ),
            // An anchor named in a later document: YAML's anchors are a document's own.
            (
                v2.replace("name: a\n", "name: &n a\n")
                    .replace("name: b\n", "name: *n\n"),
                false,
            ),
            // Directives for the second document, after the first's end.
            (v2.replace("---\n", "...\n%YAML 1.2\n---\n"), false),
        ];
        // What the YAML parser allows a file read whole, its documents read one by one
        // would each be allowed: the whole reading refuses these, and so must this.
        let cm = |name: &str| file_of(name, &[("k", grant("alice"))]);
        let over_budget: Vec<String> = vec![
            format!("{}{}", cm("a"), "---\n".repeat(1100)),
            (0..1100)
                .map(|i| format!("---\nkind: ConfigMap\nmetadata: {{name: u{i}}}\n"))
                .chain([format!("---\n{}", cm("a"))])
                .collect(),
            {
                let big = "0,".repeat(150_000);
                format!("{}extra: [{big}0]\n---\n{}extra: [{big}0]\n", cm("a"), cm("b"))
            },
            (0..20)
                .map(|i| {
                    format!(
                        "---\n{}x: &x 1\ny: [{}*x]\n",
                        cm(&format!("c{i}")),
                        "*x,".repeat(90)
                    )
                })
                .collect(),
            // Anchors are numbered across the stream: 25 001 in each of two documents.
            {
                let anchored = |p: &str| (0..25_001).map(|i| format!("&{p}{i} 0,")).collect::<String>();
                format!(
                    "{}extra: [{}]
---
{}extra: [{}]
",
                    cm("a"),
                    anchored("a"),
                    cm("b"),
                    anchored("b")
                )
            },
            // 33 MiB of comment in each of two documents.
            {
                let comment = format!("# {}\n", "x".repeat(33 << 20));
                format!("{}{comment}---\n{}{comment}", cm("a"), cm("b"))
            },
        ];
        for file in &over_budget {
            let whole = parse_file_after("f.yaml", file, Arc::default());
            assert!(whole.is_err(), "{}", made(&whole));
            assert!(
                by_document(file.as_bytes(), &Arc::default()).is_none(),
                "read a document at a time: {} bytes, {:?}…",
                file.len(),
                &file[file.len().saturating_sub(60)..]
            );
        }
        let (_, after_v1) = read_after(&v1, &Arc::default());
        let (_, after_kubectl_v1) = read_after(&kubectl_order(&v1), &Arc::default());
        let mut compared = 0;
        for (file, must) in &files {
            for earlier in [&Arc::default(), &after_v1, &after_kubectl_v1] {
                let whole = parse_file_after("f.yaml", file, Arc::clone(earlier));
                match by_document(file.as_bytes(), earlier) {
                    Some(r) => {
                        assert_eq!(made(&r), made(&whole), "{file}");
                        compared += 1;
                    }
                    None => assert!(!must, "read whole, not a document at a time:\n{file}"),
                }
            }
        }
        assert!(compared >= 33, "{compared}");
        // An edit of one entry of either key order reads that one entry.
        for (before, after) in [(&v1, &v2), (&kubectl_order(&v1), &kubectl_order(&v2))] {
            let (_, earlier) = read_after(before, &Arc::default());
            let f = by_document(after.as_bytes(), &earlier).unwrap().unwrap();
            assert_eq!(f.read, 1, "{after}");
        }
        // A document that is not UTF-8 is read whole, which refuses it.
        let mut bytes = v2.clone().into_bytes();
        bytes.extend_from_slice(b"---\nkind: ConfigMap\nmetadata: {name: \xff}\n");
        assert!(by_document(&bytes, &Arc::default()).is_none());
    }

    /// The hand-written `Deserialize` of a document reads what `#[derive(Deserialize)]`
    /// read: the same documents accepted, refused and made.
    #[test]
    fn a_document_reads_as_the_derived_reader_read_it() {
        #[derive(serde::Deserialize)]
        struct Derived {
            kind: Option<String>,
            #[serde(default)]
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
            data: Option<BTreeMap<String, String>>,
        }
        let e = serde_json::to_string(&grant("a")).unwrap();
        let documents = [
            format!("kind: ConfigMap\nmetadata: {{name: a}}\ndata: {{k: {e}}}\n"),
            format!("data: {{k: {e}}}\nkind: ConfigMap\nmetadata: {{name: a}}\n"),
            format!("kind: ConfigMap\nextra: [1, 2]\nbinaryData: {{x: eQ==}}\ndata: {{k: {e}}}\n"),
            format!("data: {{k2: {e}, k1: 'user: x', k3: {e}}}\nmetadata: {{name: a}}\nkind: ConfigMap\n"),
            format!("kind: ConfigMap\ndata:\n  z: {e}\n  a: \"{{user: y}}\"\n"),
            "kind: ConfigMap\ndata: null\n".into(),
            "kind: ConfigMap\ndata: ~\nmetadata: ~\n".into(),
            "kind: ConfigMap\ndata: {}\n".into(),
            "kind: ConfigMap\n".into(),
            "kind: ~\n".into(),
            "metadata: {name: a}\n".into(),
            "kind: ConfigMap\nkind: ConfigMap\n".into(),
            "kind: ConfigMap\ndata: {}\ndata: {}\n".into(),
            "kind: ConfigMap\nmetadata: {}\nmetadata: {}\n".into(),
            "kind: ConfigMap\ndata: [a, b]\n".into(),
            "kind: ConfigMap\ndata: text\n".into(),
            "kind: ConfigMap\ndata: {k: [1]}\n".into(),
            "kind: [ConfigMap]\n".into(),
            "kind: 3\n".into(),
            "[ConfigMap, {name: a}, {k: v}]\n".into(),
            "[ConfigMap]\n".into(),
            "just text\n".into(),
            "kind: ConfigMap\nmetadata: {name: a, nope: 1}\n".into(),
            "kind: ConfigMap\n? [complex]\n: key\n".into(),
        ];
        for doc in &documents {
            let derived: Result<Vec<Derived>, String> = crate::yaml::documents_of(doc);
            let ours: Result<Vec<FileDocument>, String> = crate::yaml::documents_of(doc);
            match (derived, ours) {
                (Ok(d), Ok(o)) => {
                    assert_eq!(d.len(), o.len(), "{doc}");
                    for (d, o) in d.iter().zip(&o) {
                        assert_eq!(d.kind, o.kind, "{doc}");
                        assert_eq!(d.metadata, o.metadata, "{doc}");
                        // The same entries: each read under its key alone, as
                        // reading the derived reader's text would, digest included.
                        let expected = d.data.as_ref().map(|data| {
                            data.iter()
                                .map(|(k, t)| {
                                    (
                                        entry_digest(k, t),
                                        format!("{:?}", crate::approvals::parse_entry(k, t)),
                                    )
                                })
                                .collect::<BTreeMap<_, _>>()
                        });
                        let made = o.data.as_ref().map(|data| {
                            data.0
                                .iter()
                                .map(|e| match &e.made {
                                    Entry::Read(r) => (e.digest, format!("{r:?}")),
                                    Entry::Kept(_) => panic!("{doc}: nothing before to keep"),
                                })
                                .collect::<BTreeMap<_, _>>()
                        });
                        assert_eq!(expected, made, "{doc}");
                        assert_eq!(
                            o.data.as_ref().map(|d| d.0.len()),
                            d.data.as_ref().map(BTreeMap::len)
                        );
                    }
                }
                (Err(_), Err(_)) => {}
                (d, o) => panic!("{doc}: derived {:?}, ours {:?}", d.is_ok(), o.is_ok()),
            }
        }
    }

    #[test]
    fn the_shipped_approvals_manifest_parses_without_errors() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/approvals.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let f = parse_file(path, &text).unwrap();
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        assert!(f.unlabelled.is_empty());
    }
}
