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
    let mut names = Names::default();
    for (key, value) in data {
        let digest = digest16(value);
        let same = previous.and_then(|p| p.digests.get(key.as_str())) == Some(&digest);
        match earlier.get(key.as_str()).filter(|_| same) {
            Some(Ok(a)) => out.approvals.push(Arc::clone(a)),
            Some(Err(e)) => out.errors.push((*e).clone()),
            None => {
                out.read += 1;
                match parse_entry_in(&format!("{name}/{key}"), value, &mut names) {
                    Ok(a) => out.approvals.push(Arc::new(a)),
                    Err(e) => out.errors.push(e),
                }
            }
        }
        out.digests.insert(Text::from(key.as_str()), digest);
    }
    out
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

/// One document of an approvals file: a ConfigMap whose entries are parsed as they are
/// read, so that a large file's entries are never held as text and as approvals at once.
#[derive(serde::Deserialize)]
struct FileDocument {
    kind: Option<String>,
    #[serde(default)]
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    data: Option<Entries>,
}

/// A ConfigMap's `data`, each value parsed as an approval under its key alone (the
/// ConfigMap's name may come after its data; [`parse_file`] puts it in the ids).
struct Entries(Vec<Result<Approval, EntryError>>);

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
                while let Some(key) = map.next_key::<String>()? {
                    let text: String = map.next_value()?;
                    out.push(parse_entry_in(&key, &text, &mut names));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// Parses an approvals file: one or more ConfigMap manifests, exactly as applied to a
/// cluster. Only ConfigMaps labelled `jitgate.dev/approvals: "true"` count, as in a cluster.
pub fn parse_file(path: &str, text: &str) -> Result<FileApprovals, FileError> {
    let documents: Vec<FileDocument> =
        crate::yaml::documents_of(text).map_err(|reason| FileError::Syntax {
            path: path.to_string(),
            reason,
        })?;
    let mut out = FileApprovals {
        approvals: Vec::new(),
        errors: Vec::new(),
        unlabelled: Vec::new(),
        home: ConfigMapRef::default(),
    };
    let mut home = None;
    for (i, doc) in documents.into_iter().enumerate() {
        let not_cm = |reason: String| FileError::NotConfigMap {
            path: path.to_string(),
            document: i + 1,
            reason,
        };
        if doc.kind.as_deref() != Some("ConfigMap") {
            return Err(not_cm("kind must be ConfigMap".into()));
        }
        let name = doc.metadata.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err(not_cm("metadata.name is missing".into()));
        }
        if !has_label(&doc.metadata, LABEL) {
            out.unlabelled.push(name);
            continue;
        }
        home.get_or_insert_with(|| ConfigMapRef {
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
                    out.approvals.push(Arc::new(a));
                }
                Err(mut e) => {
                    e.id = format!("{name}/{}", e.id);
                    out.errors.push(e);
                }
            }
        }
    }
    if let Some(home) = home {
        out.home = home;
    }
    Ok(out)
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

    #[test]
    fn the_shipped_approvals_manifest_parses_without_errors() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/approvals.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let f = parse_file(path, &text).unwrap();
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        assert!(f.unlabelled.is_empty());
    }
}
