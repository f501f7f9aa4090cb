//! What a request changes, pinned by a fingerprint.
//!
//! For an UPDATE, the change is the JSON Patch (RFC 6902) from `oldObject` to `object`; for
//! a CREATE, the object; for a DELETE, the object deleted (`oldObject`); for a CONNECT, its
//! options (PodExecOptions and the like, which arrive as `object`). Fields the API server
//! or controllers own are left out first, so the same edit made again has the same
//! fingerprint: `metadata.resourceVersion`, `generation`, `managedFields`, `uid`,
//! `creationTimestamp`, `selfLink`, `deletionTimestamp`, `deletionGracePeriodSeconds`,
//! and `status`.
//!
//! The fingerprint is `sha256:` and the hex SHA-256 of `jitgate/v1 <OPERATION>\n` followed
//! by the canonical JSON of the change (keys sorted, no spaces), so one made for an UPDATE
//! never matches a DELETE. The summary lists the paths that change, never their values: a
//! Secret's data is named by its keys only.

use crate::admission::AdmissionRequest;
use crate::operation::Operation;
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// At most this many paths are listed in a summary.
const PATHS: usize = 8;

const OWNED_METADATA: [&str; 8] = [
    "resourceVersion",
    "generation",
    "managedFields",
    "uid",
    "creationTimestamp",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// A request's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub fingerprint: String,
    /// `replace /spec/replicas`, … (for a CREATE, DELETE or CONNECT: the top-level fields).
    pub paths: Vec<String>,
    /// For a CONNECT, what an approver approves in words: `exec in container "shell": id`.
    pub connect: Option<String>,
}

impl Change {
    /// What the change is, for a message: a CONNECT's container and command, or the
    /// paths that change, shortened to a few.
    pub fn summary(&self) -> String {
        if let Some(connect) = &self.connect {
            return connect.clone();
        }
        let mut text = self
            .paths
            .iter()
            .take(PATHS)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if self.paths.len() > PATHS {
            text.push_str(&format!(", and {} more", self.paths.len() - PATHS));
        }
        if text.is_empty() {
            text.push_str("no change to any field it owns");
        }
        text
    }
}

/// True for `sha256:` and 64 lowercase hex digits.
pub fn is_fingerprint(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn parse(raw: Option<&RawValue>) -> Option<Value> {
    let value: Value = serde_json::from_str(raw?.get()).ok()?;
    (!value.is_null()).then_some(value)
}

/// The object without what the API server and controllers own.
fn strip(mut object: Value) -> Value {
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in OWNED_METADATA {
                meta.remove(field);
            }
        }
    }
    object
}

/// Where in the object a comparison is, for leaving out the fields that are owned.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Top,
    Metadata,
    Below,
}

fn owned(level: Level, key: &str) -> bool {
    match level {
        Level::Top => key == "status",
        Level::Metadata => OWNED_METADATA.contains(&key),
        Level::Below => false,
    }
}

/// An object's fields, their values left as text; `None` when it is not an object. Keys
/// are borrowed unless they hold escapes.
fn fields(raw: &RawValue) -> Option<BTreeMap<Cow<'_, str>, &RawValue>> {
    match serde_json::from_str::<BTreeMap<&str, &RawValue>>(raw.get()) {
        Ok(map) => Some(map.into_iter().map(|(k, v)| (Cow::Borrowed(k), v)).collect()),
        Err(_) => serde_json::from_str::<BTreeMap<String, &RawValue>>(raw.get())
            .ok()
            .map(|map| map.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect()),
    }
}

/// The two objects reduced to what differs between them, for the diff: fields whose JSON
/// text is the same on both sides are left out (they add nothing to the patch), owned
/// fields are left out, and only what is left is parsed into values. The API server writes
/// `object` and `oldObject` alike, so most of an object is compared as text and never
/// parsed; text that differs but means the same is parsed, and the diff finds it equal.
/// The patch is the one the whole objects would give.
fn differing(old: &RawValue, new: &RawValue, level: Level) -> Option<(Value, Value)> {
    let (Some(old_map), Some(new_map)) = (fields(old), fields(new)) else {
        // Not both objects (or a null): compared whole.
        let parse = |raw: &RawValue| serde_json::from_str::<Value>(raw.get()).ok();
        let (old, new) = (parse(old)?, parse(new)?);
        if level == Level::Top && (old.is_null() || new.is_null()) {
            return None;
        }
        return Some((old, new));
    };
    let mut left = serde_json::Map::new();
    let mut right = serde_json::Map::new();
    let whole = |raw: &RawValue| serde_json::from_str::<Value>(raw.get()).ok();
    for (key, old_value) in &old_map {
        if owned(level, key) {
            continue;
        }
        match new_map.get(key) {
            Some(new_value) if old_value.get() == new_value.get() => {}
            Some(new_value) => {
                let below = if level == Level::Top && key == "metadata" {
                    Level::Metadata
                } else {
                    Level::Below
                };
                let (l, r) = differing(old_value, new_value, below)?;
                left.insert(key.to_string(), l);
                right.insert(key.to_string(), r);
            }
            None => {
                left.insert(key.to_string(), whole(old_value)?);
            }
        }
    }
    for (key, new_value) in &new_map {
        if !owned(level, key) && !old_map.contains_key(key) {
            right.insert(key.to_string(), whole(new_value)?);
        }
    }
    Some((Value::Object(left), Value::Object(right)))
}

fn top_level(object: &Value) -> Vec<String> {
    object
        .as_object()
        .map(|m| m.keys().map(|k| format!("/{}", escape(k))).collect())
        .unwrap_or_default()
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// How many recent changes [`of_recent`] remembers.
const RECENT: u64 = 1024;

/// The change a request makes, for a denial's reader: remembered by a keyed hash of the
/// request's operation and raw objects, since a denied client retries the same change and
/// the fingerprint (parsing both objects and diffing them) is most of a denial's cost.
/// Only messages use it; a decision about an approval pinned to a change always computes
/// it afresh with [`of`].
pub fn of_recent(req: &AdmissionRequest<'_>) -> Option<Change> {
    use std::hash::{BuildHasher, Hash, Hasher};
    use std::sync::LazyLock;
    static SEEN: LazyLock<(std::hash::RandomState, moka::sync::Cache<u64, Option<Change>>)> =
        LazyLock::new(|| (std::hash::RandomState::new(), moka::sync::Cache::new(RECENT)));
    let (keys, seen) = &*SEEN;
    let mut h = keys.build_hasher();
    req.operation.as_str().hash(&mut h);
    req.sub_resource.hash(&mut h);
    for raw in [req.object, req.old_object, req.options] {
        raw.map(RawValue::get).hash(&mut h);
    }
    let key = h.finish();
    if let Some(change) = seen.get(&key) {
        return change;
    }
    let change = of(req);
    seen.insert(key, change.clone());
    change
}

/// The change a request makes, or `None` when the objects it needs are missing or not
/// JSON (then no pinned approval can match it: fail closed).
pub fn of(req: &AdmissionRequest<'_>) -> Option<Change> {
    let mut connect = None;
    let (canonical, paths) = match req.operation {
        Operation::Update => {
            let (old, new) = differing(req.old_object?, req.object?, Level::Top)?;
            let patch = json_patch::diff(&old, &new);
            let paths = patch
                .0
                .iter()
                .map(|op| {
                    let name = match op {
                        json_patch::PatchOperation::Add(_) => "add",
                        json_patch::PatchOperation::Remove(_) => "remove",
                        json_patch::PatchOperation::Replace(_) => "replace",
                        json_patch::PatchOperation::Move(_) => "move",
                        json_patch::PatchOperation::Copy(_) => "copy",
                        json_patch::PatchOperation::Test(_) => "test",
                    };
                    format!("{name} {}", op.path())
                })
                .collect();
            (serde_json::to_string(&patch).ok()?, paths)
        }
        Operation::Create => {
            let object = strip(parse(req.object)?);
            (object.to_string(), top_level(&object))
        }
        Operation::Delete => {
            let object = strip(parse(req.old_object)?);
            (object.to_string(), top_level(&object))
        }
        Operation::Connect => {
            let options = parse(req.object).or_else(|| parse(req.options))?;
            connect = Some(describe_connect(&req.sub_resource, &options));
            (options.to_string(), top_level(&options))
        }
        // Never in an admission review; a read changes nothing.
        Operation::Get | Operation::List | Operation::Watch | Operation::Impersonate => return None,
    };
    let mut hashed = format!("jitgate/v1 {}\n", req.operation).into_bytes();
    hashed.extend_from_slice(canonical.as_bytes());
    Some(Change {
        fingerprint: format!("sha256:{}", crate::digest::sha256_hex(&hashed)),
        paths,
        connect,
    })
}

/// A CONNECT's options in words: `exec in container "shell": sh -c 'echo hi'
/// (interactive)`, `attach to container "shell"`, `port-forward to ports 5432`.
fn describe_connect(sub_resource: &str, options: &Value) -> String {
    const MAX: usize = 200;
    let container = options
        .get("container")
        .and_then(Value::as_str)
        .map_or("the default container".to_string(), |c| {
            format!("container {c:?}")
        });
    let interactive = if options.get("stdin").and_then(Value::as_bool) == Some(true) {
        if options.get("tty").and_then(Value::as_bool) == Some(true) {
            " (interactive, with a terminal)"
        } else {
            " (interactive)"
        }
    } else {
        ""
    };
    let mut text = match sub_resource {
        "exec" => {
            let command: Vec<String> = options
                .get("command")
                .and_then(Value::as_array)
                .map(|args| args.iter().filter_map(Value::as_str).map(shell_word).collect())
                .unwrap_or_default();
            format!("exec in {container}: {}{interactive}", command.join(" "))
        }
        "attach" => format!("attach to {container}{interactive}"),
        "portforward" => {
            let ports: Vec<String> = match options.get("ports") {
                Some(Value::Array(ports)) => ports
                    .iter()
                    .map(|p| p.to_string().trim_matches('"').to_string())
                    .collect(),
                Some(p) => vec![p.to_string().trim_matches('"').to_string()],
                None => Vec::new(),
            };
            format!("port-forward to ports {}", ports.join(", "))
        }
        other => format!("{other} with options {}", top_level(options).join(", ")),
    };
    if text.chars().count() > MAX {
        text = text.chars().take(MAX - 1).collect::<String>() + "…";
    }
    text
}

/// An argument as a shell would need it written: quoted when it holds anything but plain
/// characters.
fn shell_word(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::decode;
    use serde_json::json;

    #[test]
    fn a_recent_change_is_remembered_as_it_was_and_another_is_not_mistaken_for_it() {
        let body = |replicas: u32| {
            review(
                "UPDATE",
                json!({"kind": "Deployment", "spec": {"replicas": 1}}),
                json!({"kind": "Deployment", "spec": {"replicas": replicas}}),
            )
        };
        for replicas in [2, 3, 2] {
            let text = body(replicas);
            let req = decode(text.as_bytes()).unwrap();
            assert_eq!(of_recent(&req), of(&req));
            assert!(of_recent(&req).is_some());
        }
        let (two, three) = (body(2), body(3));
        let two = decode(two.as_bytes()).unwrap();
        let three = decode(three.as_bytes()).unwrap();
        assert_ne!(of_recent(&two), of_recent(&three));
    }

    #[test]
    fn an_exec_is_summarised_as_what_an_approver_approves() {
        for (file, want) in [
            (
                "pods-exec-connect-stdin.json",
                "exec in container \"execme\": sh -c 'echo hi' (interactive)",
            ),
            ("pods-attach-connect.json", "attach to container \"execme\""),
        ] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/admission/captured")
                .join(file);
            let body = std::fs::read(path).unwrap();
            let c = of(&decode(&body).unwrap()).unwrap();
            assert!(c.summary().starts_with(want), "{file}: {}", c.summary());
            assert!(
                c.paths.contains(&"/container".to_string()),
                "the paths are still there"
            );
        }
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word("/bin/sh"), "/bin/sh");
    }

    fn review(op: &str, old: Value, new: Value) -> String {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u", "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "namespace": "prod", "name": "web", "operation": op,
            "userInfo": {"username": "alice"}, "object": new, "oldObject": old}})
        .to_string()
    }

    fn change(op: &str, old: Value, new: Value) -> Option<Change> {
        let body = review(op, old, new);
        of(&decode(body.as_bytes()).unwrap())
    }

    fn deployment(replicas: u32, image: &str, rv: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "prod", "resourceVersion": rv, "generation": 3,
                "managedFields": [{"manager": "kubectl", "time": rv}], "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "web", "image": image}]}}},
            "status": {"replicas": 2, "observedGeneration": 3}})
    }

    #[test]
    fn an_update_is_pinned_to_its_diff_alone() {
        let scale = change(
            "UPDATE",
            deployment(2, "web:1", "10"),
            deployment(5, "web:1", "11"),
        )
        .unwrap();
        assert_eq!(scale.paths, ["replace /spec/replicas"]);
        assert!(is_fingerprint(&scale.fingerprint));
        // The same edit on a later version of the object: the same fingerprint.
        let again = change(
            "UPDATE",
            deployment(2, "web:1", "20"),
            deployment(5, "web:1", "21"),
        )
        .unwrap();
        assert_eq!(again.fingerprint, scale.fingerprint);
        // One more field changed: another fingerprint.
        let more = change(
            "UPDATE",
            deployment(2, "web:1", "10"),
            deployment(5, "web:2", "11"),
        )
        .unwrap();
        assert_ne!(more.fingerprint, scale.fingerprint);
        assert_eq!(more.paths.len(), 2);
        // To another value: another fingerprint.
        let six = change(
            "UPDATE",
            deployment(2, "web:1", "10"),
            deployment(6, "web:1", "11"),
        )
        .unwrap();
        assert_ne!(six.fingerprint, scale.fingerprint);
    }

    #[test]
    fn key_order_and_server_owned_fields_do_not_matter() {
        let a = r#"{"metadata":{"name":"x","labels":{"a":"1","b":"2"}},"data":{"k":"v"}}"#;
        let b = r#"{"data":{"k":"v"},"metadata":{"labels":{"b":"2","a":"1"},"name":"x","uid":"9","creationTimestamp":"t"},"status":{}}"#;
        let body = |o: &str| review("CREATE", Value::Null, serde_json::from_str(o).unwrap());
        let (ba, bb) = (body(a), body(b));
        let ca = of(&decode(ba.as_bytes()).unwrap()).unwrap();
        let cb = of(&decode(bb.as_bytes()).unwrap()).unwrap();
        assert_eq!(ca, cb);
        assert_eq!(ca.paths, ["/data", "/metadata"]);
    }

    #[test]
    fn the_operation_is_part_of_the_fingerprint() {
        let d = deployment(2, "web:1", "10");
        let create = change("CREATE", Value::Null, d.clone()).unwrap();
        let delete = change("DELETE", d, Value::Null).unwrap();
        assert_ne!(create.fingerprint, delete.fingerprint);
    }

    #[test]
    fn secret_values_never_appear_in_the_summary() {
        let old = json!({"kind": "Secret", "data": {"password": "b2xk"}});
        let new = json!({"kind": "Secret", "data": {"password": "Y2FuYXJ5", "token": "Y2FuYXJ5"}});
        let c = change("UPDATE", old, new).unwrap();
        assert_eq!(c.paths, ["replace /data/password", "add /data/token"]);
        assert!(!c.summary().contains("Y2FuYXJ5"));
    }

    #[test]
    fn the_reduced_diff_is_the_diff_of_the_whole_objects() {
        let old = deployment(2, "web:1", "10");
        let mut new = deployment(5, "web:2", "11");
        new["metadata"]["labels"]["tier"] = json!("canary");
        new["metadata"]["annotations"] = json!({"a": "b"});
        new["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "side", "image": "x"}));
        // The same text, differently spaced: equal in meaning, so no operation.
        let old_text = serde_json::to_string_pretty(&old).unwrap();
        let whole = json_patch::diff(&strip(old.clone()), &strip(new.clone()));
        let old_raw = RawValue::from_string(old_text).unwrap();
        let new_raw = RawValue::from_string(new.to_string()).unwrap();
        let (l, r) = differing(&old_raw, &new_raw, Level::Top).unwrap();
        assert_eq!(json_patch::diff(&l, &r), whole);
        assert_eq!(
            change("UPDATE", old.clone(), new.clone()).unwrap().paths.len(),
            whole.0.len()
        );
    }

    #[test]
    fn without_its_objects_a_request_has_no_fingerprint() {
        assert!(change("UPDATE", Value::Null, deployment(1, "x", "1")).is_none());
        assert!(change("DELETE", Value::Null, Value::Null).is_none());
    }
}
