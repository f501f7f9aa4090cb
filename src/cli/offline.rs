//! The commands that work with no network and no kubeconfig: `keys new`, `sign` and
//! `verify-entry`. An approver outside the enclave runs them on their own machine; the
//! signed text travels by whatever the enclave allows (a form, a USB stick, a one-way
//! transfer).

use super::{BindingArgs, EntryFile, KeysCommand, SignArgs, VerifyEntryArgs};
use crate::approvals::{Approval, DEFAULT_CONFIGMAP, DEFAULT_NAMESPACE, parse_entry};
use crate::signing::{Binding, Checked, PrivateKey, keys};
use k8s_openapi::api::core::v1::ConfigMap;
use std::process::ExitCode;

/// The annotation of an exported entry that names the cluster it is in, for the signer.
pub const CLUSTER_ANNOTATION: &str = "jitgate.dev/cluster-id";

/// An entry read from a file: its id, and whether it came as a ConfigMap manifest.
#[derive(Debug)]
pub struct EntryDoc {
    pub configmap: String,
    /// The namespace of its approvals ConfigMap, when the file says.
    pub namespace: Option<String>,
    /// The cluster it is in, when the file says (export writes it).
    pub cluster: Option<String>,
    pub key: String,
    pub text: String,
    manifest: bool,
}

impl EntryDoc {
    /// An entry of the cluster, to be written out as a one-key ConfigMap manifest.
    pub fn of_cluster(
        configmap: &str,
        namespace: &str,
        cluster: Option<&str>,
        key: &str,
        text: &str,
    ) -> EntryDoc {
        EntryDoc {
            configmap: configmap.to_string(),
            namespace: Some(namespace.to_string()),
            cluster: cluster.map(str::to_string),
            key: key.to_string(),
            text: text.to_string(),
            manifest: true,
        }
    }

    /// Where a signature of this entry is for: the flags, else what the file says; the
    /// cluster must be known one way or the other, and the two must agree.
    pub fn binding(&self, args: &BindingArgs) -> Result<Binding, String> {
        let pick = |flag: &Option<String>, file: &Option<String>, what: &str| match (flag, file) {
            (Some(f), Some(d)) if f != d => Err(format!(
                "--{what} {f:?} differs from the {d:?} the entry file names: check which is meant"
            )),
            (Some(f), _) => Ok(Some(f.clone())),
            (None, d) => Ok(d.clone()),
        };
        let cluster = pick(&args.cluster_id, &self.cluster, "cluster-id")?.ok_or_else(|| {
            "give the cluster's id with --cluster-id (jitgate's denial and kubectl jitgate export name it): a signature is valid in that cluster only".to_string()
        })?;
        let namespace =
            pick(&args.namespace, &self.namespace, "namespace")?.unwrap_or_else(|| DEFAULT_NAMESPACE.into());
        Ok(Binding { cluster, namespace })
    }

    pub fn id(&self) -> String {
        format!("{}/{}", self.configmap, self.key)
    }

    /// The entry parsed under its id.
    pub fn parse(&self) -> Result<Approval, String> {
        parse_entry(&self.id(), &self.text).map_err(|e| e.to_string())
    }

    /// `text` in the form the entry came in: a one-key ConfigMap manifest (which
    /// `kubectl patch --type merge --patch-file` also takes), or the entry alone.
    pub fn render(&self, text: &str) -> String {
        if !self.manifest {
            return text.to_string();
        }
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let mut out = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {}\n  namespace: {}\n",
            q(&self.configmap),
            q(self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)),
        );
        if let Some(cluster) = &self.cluster {
            out.push_str(&format!(
                "  annotations:\n    {CLUSTER_ANNOTATION}: {}\n",
                q(cluster)
            ));
        }
        out.push_str(&format!("data:\n  {}: |\n", q(&self.key)));
        for line in text.lines() {
            out.push_str("    ");
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// Reads an entry: a ConfigMap manifest with exactly one key, or the entry's YAML with an
/// id given.
pub fn read_entry(e: &EntryFile) -> Result<EntryDoc, String> {
    let shown = e.file.display().to_string();
    let text = if shown == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|err| format!("cannot read stdin: {err}"))?
    } else {
        std::fs::read_to_string(&e.file).map_err(|err| format!("cannot read {shown}: {err}"))?
    };
    let docs = crate::yaml::documents(&text).map_err(|err| format!("{shown}: not valid YAML: {err}"))?;
    let is_manifest = docs.len() == 1 && docs[0].get("kind").and_then(|k| k.as_str()) == Some("ConfigMap");
    if is_manifest {
        let cm: ConfigMap = serde_json::from_value(docs[0].clone())
            .map_err(|err| format!("{shown}: not a ConfigMap: {err}"))?;
        let data = cm.data.unwrap_or_default();
        let (key, entry) = match (data.len(), data.into_iter().next()) {
            (1, Some(kv)) => kv,
            _ => {
                return Err(format!(
                    "{shown}: the ConfigMap must hold exactly one entry (export one with {} export ID)",
                    crate::program::name()
                ));
            }
        };
        let configmap = cm.metadata.name.unwrap_or_else(|| DEFAULT_CONFIGMAP.into());
        if e.id
            .as_deref()
            .is_some_and(|id| id != format!("{configmap}/{key}") && id != key)
        {
            return Err(format!(
                "{shown} holds entry {configmap}/{key}, not {:?}",
                e.id.as_deref().unwrap_or_default()
            ));
        }
        let cluster = cm
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CLUSTER_ANNOTATION))
            .cloned();
        return Ok(EntryDoc {
            namespace: cm.metadata.namespace,
            cluster,
            configmap,
            key,
            text: entry,
            manifest: true,
        });
    }
    let id = e.id.as_deref().ok_or_else(|| {
        format!(
            "{shown} holds an entry alone: give its id with --id CONFIGMAP/KEY (the signature is bound to it)"
        )
    })?;
    let (configmap, key) = id.split_once('/').unwrap_or((DEFAULT_CONFIGMAP, id));
    Ok(EntryDoc {
        configmap: configmap.to_string(),
        namespace: None,
        cluster: None,
        key: key.to_string(),
        text,
        manifest: false,
    })
}

/// What a person checks before signing: who, what, where, until when, why.
pub fn summary(a: &Approval) -> String {
    let until = match a.rare.valid_for {
        Some(d) => format!("for {d:#} once approved"),
        None => format!("until {}", a.expires_at),
    };
    let mut terms = String::new();
    if let Some(n) = a.max_uses {
        terms.push_str(&format!(", at most {n} use(s)"));
    }
    if let Some(c) = &a.rare.change {
        terms.push_str(&format!(", only the change {c}"));
    }
    format!(
        "{} may {}, {until}{terms}; reason: {}",
        a.subject,
        a.scope(),
        a.reason
    )
}

fn fail(command: &str, why: impl std::fmt::Display) -> ExitCode {
    eprintln!("jitgate {command}: {why}");
    ExitCode::from(2)
}

pub fn keys(command: KeysCommand) -> ExitCode {
    let KeysCommand::New { name, out } = command;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
    {
        return fail(
            "keys new",
            "--name must be a ConfigMap key: letters, digits, '-', '.' and '_'",
        );
    }
    match keys::write_new(&out, &name) {
        Ok(new) => {
            eprintln!(
                "wrote {} (your private key: keep it to yourself; mode 0600) and {} (the public key line to publish)",
                new.private.display(),
                new.public.display()
            );
            eprintln!(
                "ask a cluster admin to add you to the trusted signers (ConfigMap jitgate-signers in jitgate-system), as below:"
            );
            println!(
                "{name}: |\n  publicKey: {}\n  user: USERNAME   # required: your username in the cluster (your signature counts as you, never as a second approver)\n  groups: [GROUP]   # the approver group(s) you sign as\n  notAfter: \"YYYY-MM-DDT00:00:00Z\"   # optional: when to stop trusting this key",
                new.key
            );
            eprintln!("fingerprint: {}", new.key.fingerprint());
            ExitCode::SUCCESS
        }
        Err(e) => fail("keys new", e),
    }
}

pub fn sign(args: SignArgs) -> ExitCode {
    let key = match PrivateKey::load(&args.key) {
        Ok(k) => k,
        Err(e) => return fail("sign", e),
    };
    let name = match args
        .name
        .or_else(|| args.key.file_stem().map(|s| s.to_string_lossy().into_owned()))
    {
        Some(n) if !n.is_empty() => n,
        _ => return fail("sign", "give your signer name with --name"),
    };
    let doc = match read_entry(&args.entry) {
        Ok(d) => d,
        Err(e) => return fail("sign", e),
    };
    let mut a = match doc.parse() {
        Ok(a) => a,
        Err(e) => return fail("sign", e),
    };
    if a.break_glass {
        return fail(
            "sign",
            "a break-glass entry is reviewed through approvedBy, not signed",
        );
    }
    if a.rare.signatures.iter().any(|s| *s.signer == *name) {
        return fail("sign", format!("{} is already signed by {name:?}", doc.id()));
    }
    let binding = match doc.binding(&args.binding) {
        Ok(b) => b,
        Err(e) => return fail("sign", e),
    };
    let now = jiff::Timestamp::now();
    let not_after = match (a.rare.valid_for, &args.not_after) {
        (None, None) => None,
        (None, Some(_)) => {
            return fail(
                "sign",
                "--not-after is for a for: entry; this one ends at its expiresAt, which the signature covers",
            );
        }
        (Some(d), None) => Some(now + crate::policy::DEFAULT_REQUEST_TTL + d),
        (Some(_), Some(t)) => match crate::cli::parse_time_ahead(t, now) {
            Ok(t) if t > now => Some(t),
            Ok(t) => return fail("sign", format!("--not-after {t} is not in the future")),
            Err(e) => return fail("sign", e),
        },
    };
    let signature = crate::signing::sign(&a.terms(), &binding, &name, &key, not_after);
    eprintln!(
        "signed {} as {name} (key {}) for {binding}{}: {}",
        doc.id(),
        signature.key,
        not_after
            .map(|t| format!(", counting until {t} at the latest"))
            .unwrap_or_default(),
        summary(&a)
    );
    a.rare.make_mut().signatures.push(signature);
    print!("{}", doc.render(&a.to_yaml()));
    ExitCode::SUCCESS
}

/// Exit 0 when the entry has signatures and every one is valid now, 1 when one is not,
/// 2 on an error.
pub fn verify(args: VerifyEntryArgs) -> ExitCode {
    let doc = match read_entry(&args.entry) {
        Ok(d) => d,
        Err(e) => return fail("verify-entry", e),
    };
    let binding = match doc.binding(&args.binding) {
        Ok(b) => b,
        Err(e) => return fail("verify-entry", e),
    };
    let signers = match crate::sync::signers::read_file(&args.signers, &binding) {
        Ok(Some((signers, errors))) => {
            for e in errors {
                eprintln!("note: {e}");
            }
            signers
        }
        Ok(None) => {
            return fail(
                "verify-entry",
                format!("no signers file at {}", args.signers.display()),
            );
        }
        Err(e) => return fail("verify-entry", e),
    };
    let a = match doc.parse() {
        Ok(a) => a,
        Err(e) => return fail("verify-entry", e),
    };
    println!("{} ({binding}): {}", doc.id(), summary(&a));
    if a.rare.signatures.is_empty() {
        println!("no signatures");
        return ExitCode::from(1);
    }
    let now = jiff::Timestamp::now();
    let mut all_valid = true;
    for (sig, checked) in a.rare.signatures.iter().zip(a.checked_by(&signers)) {
        match checked {
            Checked::Trusted(s) if s.valid_at(now) => println!(
                "{}: valid (key {}); counts as {} in groups [{}]{}",
                sig.signer,
                sig.key,
                s.user,
                s.groups.join(", "),
                s.signer
                    .not_after
                    .into_iter()
                    .chain(s.not_after)
                    .min()
                    .map(|t| format!(", until {t}"))
                    .unwrap_or_default()
            ),
            Checked::Trusted(s) => {
                all_valid = false;
                println!(
                    "{}: not valid: {}",
                    sig.signer,
                    s.expired(now).unwrap_or_default()
                );
            }
            Checked::Refused { why, .. } => {
                all_valid = false;
                println!("{}: not valid: {why}", sig.signer);
            }
        }
    }
    ExitCode::from(if all_valid { 0 } else { 1 })
}
