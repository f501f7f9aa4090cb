//! Reading approvals where they are written: the `data` of an approvals ConfigMap (watched
//! in a cluster) and an approvals file (the same ConfigMaps as manifests). One bad entry is
//! refused on its own; the others still count.

use super::approval::{Approval, Names, Text};
use super::parse::{EntryError, parse_entry_in};
use k8s_openapi::api::core::v1::ConfigMap;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The label that marks a ConfigMap as holding approvals.
pub const LABEL: &str = "jitgate.dev/approvals";
/// Where denial messages tell engineers to file a request when nothing else is known.
pub use crate::names::DEFAULT_NAMESPACE;
pub const DEFAULT_CONFIGMAP: &str = "jitgate-approvals";

/// A ConfigMap that engineers add approval requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMapRef {
    pub namespace: String,
    pub name: String,
}

impl Default for ConfigMapRef {
    fn default() -> Self {
        ConfigMapRef {
            namespace: DEFAULT_NAMESPACE.into(),
            name: DEFAULT_CONFIGMAP.into(),
        }
    }
}

/// The approvals of one ConfigMap, and the entries that were refused.
#[derive(Debug, Default)]
pub struct ParsedConfigMap {
    pub approvals: Vec<Arc<Approval>>,
    pub errors: Vec<EntryError>,
    /// Each key's SHA-256 of the text it was read from (the first 16 bytes), so that a
    /// later version of the ConfigMap re-reads only the entries whose text changed.
    digests: HashMap<Text, u128>,
    /// How many entries were read to make it (the others were kept from the version
    /// before).
    pub read: usize,
}

/// Parses every key of a ConfigMap's `data`; the approval id is `<configmap>/<key>`.
/// One bad entry is refused on its own; the others still count.
pub fn parse_configmap(name: &str, data: &BTreeMap<String, String>) -> ParsedConfigMap {
    parse_configmap_after(name, data, None)
}

/// Parses a new version of a ConfigMap read before as `previous`: an entry whose key and
/// text are the same as then (by SHA-256) keeps what reading it made then, approval or
/// refusal; only the others are read.
pub fn parse_configmap_after(
    name: &str,
    data: &BTreeMap<String, String>,
    previous: Option<&ParsedConfigMap>,
) -> ParsedConfigMap {
    let earlier: HashMap<&str, Result<&Arc<Approval>, &EntryError>> = previous
        .map(|p| {
            let approvals = p.approvals.iter().map(|a| (a.key(), Ok(a)));
            let errors = p.errors.iter().map(|e| (key_of(&e.id), Err(e)));
            approvals.chain(errors).collect()
        })
        .unwrap_or_default();
    let mut out = ParsedConfigMap::default();
    out.digests.reserve(data.len());
    // Each entry kept from before, or to be read (by its place among those read).
    let mut kept: Vec<Option<Result<&Arc<Approval>, &EntryError>>> = Vec::with_capacity(data.len());
    let mut to_read: Vec<(&str, &str)> = Vec::new();
    for (key, value) in data {
        let digest = digest16(value);
        let same = previous.and_then(|p| p.digests.get(key.as_str())) == Some(&digest);
        let earlier = earlier.get(key.as_str()).filter(|_| same).copied();
        if earlier.is_none() {
            to_read.push((key, value));
        }
        kept.push(earlier);
        out.digests.insert(Text::from(key.as_str()), digest);
    }
    out.read = to_read.len();
    let mut read = read_entries(name, to_read).into_iter();
    for earlier in kept {
        match earlier {
            Some(Ok(a)) => out.approvals.push(Arc::clone(a)),
            Some(Err(e)) => out.errors.push(e.clone()),
            None => match read.next() {
                Some(Ok(a)) => out.approvals.push(a),
                Some(Err(e)) => out.errors.push(e),
                None => {}
            },
        }
    }
    out
}

/// Reads `(key, text)` entries of ConfigMap `name`, in order, spread over the cores; each
/// approval's id is `<name>/<key>`. What it returns is what reading them one after the
/// other with one [`Names`] returns: the approvals share their names as that would.
fn read_entries(name: &str, entries: Vec<(&str, &str)>) -> Vec<Result<Arc<Approval>, EntryError>> {
    let mut names = Names::default();
    read_in_order(entries, Some(name), &mut names)
        .map(|entry| entry.map(Arc::new))
        .collect()
}

/// Reads `(key, text)` entries in order, spread over the cores, each under the id
/// `<configmap>/<key>` (or its key alone, when the ConfigMap's name is not known yet),
/// sharing their names through `names` as reading them one after the other would.
fn read_in_order<K: AsRef<str> + Send, T: AsRef<str> + Send>(
    entries: Vec<(K, T)>,
    configmap: Option<&str>,
    names: &mut Names,
) -> impl Iterator<Item = Result<Approval, EntryError>> {
    super::parallel::map_in_order(entries, move |names: &mut Names, (key, text)| {
        let (key, text) = (key.as_ref(), text.as_ref());
        match configmap {
            Some(name) => parse_entry_in(&format!("{name}/{key}"), text, names),
            None => parse_entry_in(key, text, names),
        }
    })
    .map(|entry| {
        entry.map(|mut a| {
            a.share_names(names);
            a
        })
    })
}

/// The key of an entry id `<configmap>/<key>`.
fn key_of(id: &str) -> &str {
    id.split_once('/').map_or(id, |(_, key)| key)
}

/// The first 16 bytes of the SHA-256 of `text`: as good as the whole for telling two
/// texts apart, at half the memory per entry.
fn digest16(text: &str) -> u128 {
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&d.as_ref()[..16]);
    u128::from_be_bytes(first)
}

/// True when the ConfigMap carries `jitgate.dev/approvals: "true"`.
pub fn is_labelled(cm: &ConfigMap) -> bool {
    has_label(&cm.metadata, LABEL)
}

/// True when an object's metadata carries `label: "true"` (the approvals label, or the
/// trusted signers' one).
pub fn has_label(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, label: &str) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(label))
        .is_some_and(|v| v == "true")
}

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
}

/// One document of an approvals file: a ConfigMap, its entries as text in the order
/// written.
#[derive(serde::Deserialize)]
struct FileDocument {
    kind: Option<String>,
    #[serde(default)]
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    data: Option<Entries>,
}

/// A ConfigMap's `data`, each entry read as an approval under its key alone (the
/// ConfigMap's name may come after its data; [`Reading::take`] puts it in the ids). The
/// texts are read a batch at a time, on all cores, and dropped once read: a document's
/// entries are never all held as text, nor as text and approvals at once.
struct Entries(Vec<Result<Approval, EntryError>>);

/// Entries read together: enough to keep the cores busy, few enough that their texts are
/// a small part of what their approvals take.
const BATCH: usize = 2048;

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
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
                        out.extend(read_in_order(std::mem::take(&mut batch), None, &mut names));
                    }
                }
                out.extend(read_in_order(batch, None, &mut names));
                Ok(Entries(out))
            }
        }
        d.deserialize_map(Visitor)
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
    /// The first document that is not a labelled ConfigMap's, and why: the file is
    /// refused (the documents after it are still read through, for a syntax error to
    /// take precedence as it always has, but their entries are not).
    not_configmap: Option<(usize, String)>,
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
    fn take(&mut self, doc: FileDocument) {
        if self.not_configmap.is_some() {
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
        for entry in doc.data.map(|d| d.0).unwrap_or_default() {
            match entry {
                Ok(mut a) => {
                    a.id = compact_str::format_compact!("{name}/{}", a.id);
                    self.approvals.push(Arc::new(a));
                }
                Err(mut e) => {
                    e.id = format!("{name}/{}", e.id);
                    self.errors.push(e);
                }
            }
        }
    }
}

/// Parses an approvals file: one or more ConfigMap manifests, exactly as applied to a
/// cluster. Only ConfigMaps labelled `jitgate.dev/approvals: "true"` count, as in a cluster.
pub fn parse_file(path: &str, text: &str) -> Result<FileApprovals, FileError> {
    let read: Reading = crate::yaml::documents_into(text).map_err(|reason| FileError::Syntax {
        path: path.to_string(),
        reason,
    })?;
    if let Some((document, reason)) = read.not_configmap {
        return Err(FileError::NotConfigMap {
            path: path.to_string(),
            document,
            reason,
        });
    }
    Ok(FileApprovals {
        approvals: read.approvals,
        errors: read.errors,
        unlabelled: read.unlabelled,
        home: read.home.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_new_version_reads_again_only_the_entries_whose_text_changed() {
        let good = |user: &str| {
            format!(
                "user: {user}\nresource: secrets\nnamespace: prod\nexpiresAt: \"2099-01-01T00:00:00Z\"\nreason: r\n"
            )
        };
        let mut data: BTreeMap<String, String> = [
            ("a", good("alice")),
            ("b", good("bob")),
            ("bad", "user: x".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let first = parse_configmap("cm", &data);
        data.insert("b".into(), good("mallory"));
        let second = parse_configmap_after("cm", &data, Some(&first));
        let by_key = |p: &ParsedConfigMap, key: &str| p.approvals.iter().find(|a| a.key() == key).cloned();
        // Unchanged: the very approval read before, and the same refusal.
        assert!(Arc::ptr_eq(
            &by_key(&first, "a").unwrap(),
            &by_key(&second, "a").unwrap()
        ));
        assert_eq!(second.errors, first.errors);
        // Changed under the same key: read again, never kept.
        assert_eq!(
            by_key(&second, "b").unwrap().subject,
            crate::approvals::Subject::User("mallory".into())
        );
        // Gone: gone.
        data.remove("a");
        let third = parse_configmap_after("cm", &data, Some(&second));
        assert!(by_key(&third, "a").is_none());
        assert_eq!(third.approvals.len(), 1);
    }

    /// `n` entries in five shapes, a fifth of them refused, names repeating across them.
    fn mixed_texts(n: usize) -> Vec<(String, String)> {
        (0..n)
            .map(|i| {
                let text = match i % 5 {
                    0 => format!(
                        "user: u{}\nresource: secrets\nnamespace: ns-{}\nexpiresAt: \"2099-01-01T00:00:00Z\"\nreason: r\napprovedBy: [a{}, u{}]\n",
                        i % 37,
                        i % 11,
                        i % 3,
                        i % 5
                    ),
                    1 => format!(
                        "group: g{} # c\nresource: deployments/scale\napiGroup: apps\nnamespace: ns-{}\nfor: 1h\nreason: >\n  r {i}\n",
                        i % 7,
                        i % 13
                    ),
                    2 => format!("user: u{i}\nresource: secrets\ncolour: blue\n"),
                    3 => "{user: x, group: y, resource: s, expiresAt: never, reason: r}".to_string(),
                    _ => format!(
                        "user: 'u{}'\nresource: pods\nexpiresAt: 2099-01-01T00:00:00Z\nreason: it's {i}\n",
                        i % 19
                    ),
                };
                (format!("k{i}"), text)
            })
            .collect()
    }

    /// Each distinct name is held once among `approvals`.
    fn assert_names_shared<'a>(approvals: impl Iterator<Item = &'a Approval>) {
        let mut seen: HashMap<&str, *const u8> = HashMap::new();
        for a in approvals {
            let (crate::approvals::Subject::User(who) | crate::approvals::Subject::Group(who)) = &a.subject;
            let all = [who, &a.resource, &a.sub_resource, &a.namespace]
                .into_iter()
                .chain(a.api_group.iter())
                .chain(a.approved_by.iter());
            for name in all {
                let at = seen.entry(name).or_insert(name.as_ptr());
                assert_eq!(*at, name.as_ptr(), "{name:?} held twice");
            }
        }
    }

    /// Entries read on several threads are what reading them one after the other gives:
    /// the same approvals and refusals in the same order, and names shared the same way
    /// (one copy of each distinct name in the ConfigMap).
    #[test]
    fn entries_read_on_all_cores_are_what_one_thread_reads() {
        let texts = mixed_texts(1500);
        let entries: Vec<(&str, &str)> = texts.iter().map(|(k, t)| (k.as_str(), t.as_str())).collect();
        let mut names = Names::default();
        let one_by_one: Vec<Result<Approval, EntryError>> = entries
            .iter()
            .map(|(k, t)| parse_entry_in(&format!("cm/{k}"), t, &mut names))
            .collect();
        let spread = read_entries("cm", entries.clone());
        assert_eq!(spread.len(), one_by_one.len());
        for (a, b) in spread.iter().zip(&one_by_one) {
            assert_eq!(a.as_ref().map(|a| &**a), b.as_ref());
        }
        assert!(spread.iter().filter(|e| e.is_err()).count() > 500);
        assert_names_shared(spread.iter().flatten().map(|a| &**a));
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

    #[test]
    fn the_shipped_approvals_manifest_parses_without_errors() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/approvals.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let f = parse_file(path, &text).unwrap();
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        assert!(f.unlabelled.is_empty());
    }
}
