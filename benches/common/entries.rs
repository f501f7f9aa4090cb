//! Approval entries as people write them, for the start-to-ready benchmark and the tests
//! that hold the entry reader to it: ten styles in turn (the plainest shape, unquoted values
//! with spaces, comments, single quotes, literal and folded block scalars, block lists, a
//! flow mapping, `for:` entries, and entries signed offline), each entry valid and granting.
//!
//! Shared by `#[path]` (benches/common/mod.rs, tests/it/): it uses only jitgate and jiff.
#![allow(dead_code)]

use jiff::{SignedDuration, Timestamp};
use jitgate::approvals::parse_entry;
use jitgate::signing::{Binding, PrivateKey, sign};

/// How many styles [`mixed`] cycles through.
pub const STYLES: usize = 10;

/// Who signs the signed styles: a trusted signer's name, its key, and the signers
/// ConfigMap entry that trusts it (in group `jitgate-approvers`).
pub struct Signer {
    pub name: String,
    pub key: PrivateKey,
}

impl Signer {
    pub fn new(name: &str) -> Signer {
        Signer {
            name: name.to_string(),
            key: PrivateKey::generate().expect("a new Ed25519 key").0,
        }
    }

    /// The value of this signer's key in the `jitgate-signers` ConfigMap.
    pub fn trusted(&self) -> String {
        format!(
            "publicKey: {}\nuser: {}@example.com\ngroups: [jitgate-approvers]\n",
            self.key.public(),
            self.name
        )
    }
}

const RESOURCES: [&str; 4] = ["deployments", "statefulsets", "deployments/scale", "secrets"];

/// Entry `i` in style `i % STYLES`, expiring at `expires` (a `for:` entry: approved at
/// `now`, for two hours). The signed styles are signed by `signer` for `binding`, under
/// the id `<configmap>/<key>` the entry will have.
pub fn mixed(
    i: usize,
    id: &str,
    now: Timestamp,
    expires: Timestamp,
    signer: &Signer,
    binding: &Binding,
) -> String {
    let user = format!("user-{i}@example.com");
    let res = RESOURCES[i % RESOURCES.len()];
    let ns = format!("prod-{}", i % 97);
    let app = format!("app-{}", i % 1013);
    let (a, b) = (i % 7, (i + 3) % 7);
    match i % STYLES {
        0 => format!(
            "user: {user}\nresource: {res}\nnamespace: {ns}\nname: {app}\nexpiresAt: \"{expires}\"\n\
             reason: \"CHG-{i}\"\napprovedBy: [approver-{a}@example.com]\n"
        ),
        1 => format!(
            "user: {user}\nresource: {res}\nnamespace: {ns}\nname: {app}\noperations: [UPDATE, DELETE]\n\
             expiresAt: {expires}\nreason: INC-{i} rotate the password after the leak\n\
             approvedBy: [approver-{a}@example.com, approver-{b}@example.com]\n"
        ),
        2 => format!(
            "# asked for in INC-{i}\nuser: {user}  # on call this week\nresource: {res}\nnamespace: {ns}\n\
             expiresAt: \"{expires}\"\nreason: \"INC-{i}: restart the stuck job\"  # see the ticket\n\
             approvedBy: [approver-{a}@example.com]\n"
        ),
        3 => format!(
            "user: '{user}'\nresource: '{res}'\nnamespace: '{ns}'\nname: '{app}'\nexpiresAt: '{expires}'\n\
             reason: 'it''s INC-{i}: scale up'\napprovedBy: ['approver-{a}@example.com']\n"
        ),
        4 => format!(
            "user: {user}\nresource: {res}\nnamespace: {ns}\nexpiresAt: \"{expires}\"\nreason: |\n  \
             INC-{i}: the nightly job is stuck\n  and needs a restart\napprovedBy: [approver-{a}@example.com]\n"
        ),
        5 => format!(
            "group: team-{}\nresource: {res}\nnamespace: {ns}\noperations:\n  - UPDATE\n  - DELETE\n\
             expiresAt: \"{expires}\"\nreason: >-\n  CHG-{i} migrate the\n  schema\napprovedBy:\n  \
             - approver-{a}@example.com\n  - approver-{b}@example.com\n",
            i % 13
        ),
        6 => format!(
            "{{user: {user}, resource: {res}, namespace: {ns}, name: {app}, expiresAt: \"{expires}\", \
             reason: \"CHG-{i}: flow style\", approvedBy: [approver-{a}@example.com]}}\n"
        ),
        7 => format!(
            "user: {user}\nresource: {res}\nnamespace: {ns}\nverbs: [get, list]\nfor: 2h\n\
             approvedAt: \"{now}\"\nreason: \"INC-{i}: read the logs\"\napprovedBy: [approver-{a}@example.com]\n"
        ),
        8 => signed(
            &format!(
                "user: {user}\nresource: {res}\nnamespace: {ns}\nname: {app}\nexpiresAt: \"{expires}\"\n\
                 reason: \"CHG-{i}: signed offline\"\n"
            ),
            id,
            None,
            signer,
            binding,
        ),
        _ => signed(
            &format!(
                "user: {user}\nresource: {res}\nnamespace: {ns}\nfor: 1h\napprovedAt: \"{now}\"\n\
                 reason: signed offline for INC-{i}\n"
            ),
            id,
            Some(expires + SignedDuration::from_hours(1)),
            signer,
            binding,
        ),
    }
}

/// `body` with a `signatures:` block by `signer` over the terms it has under `id`.
fn signed(body: &str, id: &str, not_after: Option<Timestamp>, signer: &Signer, binding: &Binding) -> String {
    let approval = parse_entry(id, body).expect("the generated entry parses");
    let s = sign(&approval.terms(), binding, &signer.name, &signer.key, not_after);
    let mut text = format!(
        "{body}signatures:\n  - signer: {}\n    key: \"{}\"\n    cluster: {}\n    namespace: {}\n",
        s.signer, s.key, binding.cluster, binding.namespace
    );
    if let Some(t) = not_after {
        text.push_str(&format!("    notAfter: \"{t}\"\n"));
    }
    text.push_str(&format!("    signature: {}\n", s.value_base64()));
    text
}

/// `n` mixed entries as `(configmap, key, text)`, `per_configmap` to a ConfigMap named
/// `approvals-<k>` (each well under a ConfigMap's 1 MiB), expiring an hour from `now`.
pub fn mixed_set(
    n: usize,
    per_configmap: usize,
    now: Timestamp,
    signer: &Signer,
    binding: &Binding,
) -> Vec<(String, String, String)> {
    let expires = now + SignedDuration::from_hours(1);
    (0..n)
        .map(|i| {
            let cm = format!("approvals-{}", i / per_configmap);
            let key = format!("e{i}");
            let text = mixed(i, &format!("{cm}/{key}"), now, expires, signer, binding);
            (cm, key, text)
        })
        .collect()
}

/// The approvals file holding `entries` (from [`mixed_set`]), one labelled ConfigMap
/// manifest per ConfigMap, in `namespace`; each entry a literal block.
pub fn manifests(entries: &[(String, String, String)], namespace: &str) -> String {
    let mut out = String::new();
    let mut current = "";
    for (cm, key, text) in entries {
        if cm != current {
            current = cm;
            out.push_str(&format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {cm}\n  namespace: {namespace}\n  \
                 labels:\n    jitgate.dev/approvals: \"true\"\ndata:\n"
            ));
        }
        out.push_str(&format!("  {key}: |\n"));
        for line in text.lines() {
            out.push_str("    ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The signers file trusting `signer`, in `namespace`.
pub fn signers_manifest(signer: &Signer, namespace: &str) -> String {
    let mut out = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: jitgate-signers\n  namespace: {namespace}\ndata:\n  {}: |\n",
        signer.name
    );
    for line in signer.trusted().lines() {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
    out
}
