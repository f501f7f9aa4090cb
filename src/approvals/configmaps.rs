//! Reading approvals where they are written: the `data` of an approvals ConfigMap (watched
//! in a cluster; an approvals file's ConfigMaps are read by `super::file` with the same
//! entry reader). One bad entry is refused on its own; the others still count.

use super::approval::{Approval, Names};
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
    /// Each entry's [`entry_digest`] of its key and text, sorted, so that a later version
    /// of the ConfigMap re-reads only the entries whose text changed (16 bytes an entry: a
    /// hash set took 35, keyed by the key as text a map took 40 and often a key's
    /// allocation besides).
    digests: Box<[u128]>,
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
    let mut digests = Vec::with_capacity(data.len());
    // Each entry kept from before, or to be read (by its place among those read).
    let mut kept: Vec<Option<Result<&Arc<Approval>, &EntryError>>> = Vec::with_capacity(data.len());
    let mut to_read: Vec<(&str, &str)> = Vec::new();
    for (key, value) in data {
        let digest = entry_digest(key, value);
        let same = previous.is_some_and(|p| p.digests.binary_search(&digest).is_ok());
        let earlier = earlier.get(key.as_str()).filter(|_| same).copied();
        if earlier.is_none() {
            to_read.push((key, value));
        }
        kept.push(earlier);
        digests.push(digest);
    }
    digests.sort_unstable();
    digests.dedup();
    out.digests = digests.into_boxed_slice();
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
pub(super) fn read_in_order<K: AsRef<str> + Send, T: AsRef<str> + Send>(
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

/// The first 16 bytes of the SHA-256 of an entry's key and text, the key's length first
/// so that no two (key, text) pairs write the same bytes: as good as the whole for telling
/// two entries apart, at half the memory.
pub(super) fn entry_digest(key: &str, text: &str) -> u128 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&(key.len() as u64).to_le_bytes());
    ctx.update(key.as_bytes());
    ctx.update(text.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&ctx.finish().as_ref()[..16]);
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

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

    /// `n` entries in five shapes, a fifth of them refused, names repeating across them (a
    /// fifth signed, not validly).
    pub(crate) fn mixed_texts(n: usize) -> Vec<(String, String)> {
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
                        "user: 'u{}'\nresource: pods\nexpiresAt: 2099-01-01T00:00:00Z\nreason: it's {i}\n\
                         signatures:\n  - signer: s{}\n    key: SHA256:k{}\n    cluster: c\n    namespace: n\n    \
                         signature: {}==\n",
                        i % 19,
                        i % 3,
                        i % 2,
                        "A".repeat(86)
                    ),
                };
                (format!("k{i}"), text)
            })
            .collect()
    }

    /// Each distinct name, and each distinct list of approvers, is held once among
    /// `approvals`.
    pub(crate) fn assert_names_shared<'a>(approvals: impl Iterator<Item = &'a Approval>) {
        let mut seen: HashMap<&str, *const u8> = HashMap::new();
        let mut lists: HashMap<&[crate::approvals::Name], *const crate::approvals::Name> = HashMap::new();
        for a in approvals {
            let list = lists.entry(&a.approved_by).or_insert(a.approved_by.as_ptr());
            assert_eq!(*list, a.approved_by.as_ptr(), "{:?} held twice", a.approved_by);
            let group = match &a.subject {
                crate::approvals::Subject::Group(g) => Some(g),
                crate::approvals::Subject::User(_) => None,
            };
            let all = [&a.resource, &a.sub_resource, &a.namespace]
                .into_iter()
                .chain(group)
                .chain(a.api_group.iter())
                .chain(a.approved_by.iter())
                .chain(a.rare.signatures.iter().flat_map(|s| {
                    [&s.signer, &s.key]
                        .into_iter()
                        .chain(s.cluster.iter())
                        .chain(s.namespace.iter())
                }));
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
}
