//! A request's entries: from flags, or from a file a denial printed.

use super::RequestArgs;
use super::*;
use crate::approvals::{Approval, Subject, parse_entry, suggested_key};
use jiff::Timestamp;
use serde_json::{Value, json};

pub(super) fn draft_from_flags(
    args: &RequestArgs,
    me: &str,
    now: Timestamp,
) -> Result<(String, Approval), CliError> {
    let resource = args
        .resource
        .as_deref()
        .ok_or_else(|| CliError::Usage("give --resource (or -f FILE)".into()))?;
    let reason = args
        .reason
        .clone()
        .ok_or_else(|| CliError::Usage("give --reason: say why you need this".into()))?;
    let subject = match &args.group {
        Some(g) => Subject::Group(g.as_str().into()),
        None => Subject::User(me.into()),
    };
    let expires_at = now
        .checked_add(args.duration)
        .map_err(|e| CliError::Usage(e.to_string()))?
        .round(
            jiff::TimestampRound::new()
                .smallest(jiff::Unit::Second)
                .mode(jiff::RoundMode::Trunc),
        )
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let mut fields = serde_json::Map::new();
    let (who_key, who) = match &subject {
        Subject::User(u) => ("user", &**u),
        Subject::Group(g) => ("group", &**g),
    };
    fields.insert(who_key.into(), json!(who));
    fields.insert("resource".into(), json!(resource));
    for (field, value) in [
        ("apiGroup", &args.api_group),
        ("namespace", &args.namespace),
        ("name", &args.name),
    ] {
        if let Some(v) = value {
            fields.insert(field.into(), json!(v));
        }
    }
    if !args.operation.is_empty() {
        let ops: Vec<String> = args.operation.iter().map(|o| o.to_uppercase()).collect();
        fields.insert("operations".into(), json!(ops));
    }
    if !args.verb.is_empty() {
        let verbs: Vec<String> = args.verb.iter().map(|v| v.to_lowercase()).collect();
        fields.insert("verbs".into(), json!(verbs));
    }
    if let Some(change) = &args.change {
        fields.insert("change".into(), json!(change));
    }
    if let Some(n) = args.max_uses {
        fields.insert("maxUses".into(), json!(n));
    }
    if args.break_glass {
        fields.insert("breakGlass".into(), json!(true));
    }
    if args.once_approved {
        fields.insert("for".into(), json!(format!("{:#}", args.duration)));
    } else {
        fields.insert("expiresAt".into(), json!(expires_at.to_string()));
    }
    fields.insert("reason".into(), json!(reason));
    // JSON is YAML: the entry is parsed like any other, so the CLI never writes one that
    // the webhook would refuse to read.
    let text = Value::Object(fields).to_string();
    let a = parse_entry("new", &text).map_err(|e| CliError::Usage(e.reason))?;
    let who = a.subject.name();
    let ops = a.operations.map_or(String::new(), |o| {
        o.iter().map(|o| o.as_str()).collect::<Vec<_>>().join("-")
    });
    let key = suggested_key(
        &[
            who,
            &a.namespace,
            &a.resource,
            &a.sub_resource,
            a.name.as_deref().unwrap_or(""),
            &ops,
        ],
        now,
    );
    Ok((key, a))
}

/// The entries of a snippet that a denial printed (`KEY: |` and the entry indented under
/// it), or of a ConfigMap manifest's `data`. `--reason` replaces their reasons; a reason
/// still reading as the placeholder is refused.
pub(super) fn drafts_from_file(
    path: &std::path::Path,
    args: &RequestArgs,
    now: Timestamp,
) -> Result<Vec<(String, Approval)>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
    let doc: Value = crate::yaml::from_str(&text)
        .map_err(|e| CliError::Usage(format!("{}: not YAML: {e}", path.display())))?;
    let data = match doc.get("data") {
        Some(Value::Object(data)) => data.clone(),
        _ => match doc {
            Value::Object(map) => map,
            _ => {
                return Err(CliError::Usage(format!(
                    "{}: expected KEY: | and an entry under it, as a denial prints",
                    path.display()
                )));
            }
        },
    };
    let mut drafts = Vec::new();
    for (key, value) in data {
        let Value::String(entry) = value else {
            return Err(CliError::Usage(format!(
                "{key:?}: the entry must be a string (KEY: | then the entry)"
            )));
        };
        let mut a = parse_entry(&key, &entry).map_err(|e| CliError::Usage(e.to_string()))?;
        if let Some(reason) = &args.reason {
            a.reason = reason.as_str().into();
        }
        if args.max_uses.is_some() {
            a.max_uses = args.max_uses;
        }
        if args.change.is_some() {
            a.rare.make_mut().change = args.change.clone();
        }
        if a.reason.starts_with("TICKET-123") {
            return Err(CliError::Usage(format!(
                "{key:?}: replace the placeholder reason (or give --reason)"
            )));
        }
        if !a.approved_by.is_empty() {
            return Err(CliError::Usage(format!(
                "{key:?}: a request carries no approvers; approvers run {} approve",
                crate::program::name()
            )));
        }
        if a.expires_at <= now {
            return Err(CliError::Usage(format!(
                "{key:?}: expiresAt {} has passed; ask again from a fresh denial, or use --resource and --for",
                a.expires_at
            )));
        }
        drafts.push((key, a));
    }
    if drafts.is_empty() {
        return Err(CliError::Usage(format!("{}: no entries", path.display())));
    }
    Ok(drafts)
}
