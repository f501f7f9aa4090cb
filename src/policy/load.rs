//! Reading `GatePolicy` documents from YAML files, strictly: an unknown field, a missing
//! one or an impossible value is an error that names the file, the document and the reason.

use super::{BreakGlass, Enforcement, Level, Policy, ResourcePattern, Rule};
use crate::duration::parse_duration;
use crate::operation::{OpSet, Operation};
use crate::pattern::Pattern;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub const API_VERSION: &str = "jitgate.dev/v1alpha1";
pub const KIND: &str = "GatePolicy";

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policies from {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not valid YAML: {reason}")]
    Syntax { file: String, reason: String },
    #[error("{file}, document {document}: {reason}")]
    Invalid {
        file: String,
        document: usize,
        reason: String,
    },
    #[error("policy {name:?} is defined twice: in {first} and in {second}")]
    Duplicate {
        name: String,
        first: String,
        second: String,
    },
    #[error("no GatePolicy found in {0}: jitgate would gate nothing")]
    Empty(PathBuf),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPolicy {
    api_version: String,
    kind: String,
    metadata: RawMetadata,
    spec: RawSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetadata {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    #[allow(dead_code)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
struct RawSpec {
    rules: Vec<RawRule>,
    namespaces: Option<Vec<String>>,
    #[serde(default)]
    exempt: RawExempt,
    approval: RawApproval,
    #[serde(default)]
    enforcement: Enforcement,
    break_glass: Option<RawBreakGlass>,
    #[serde(default)]
    grant: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawBreakGlass {
    groups: Vec<String>,
    max_duration: String,
    review_within: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRule {
    api_groups: Vec<String>,
    resources: Vec<String>,
    /// Admission operations: writes and CONNECT.
    #[serde(default)]
    operations: Vec<String>,
    /// Read verbs, gated through the authorization webhook.
    #[serde(default)]
    verbs: Vec<String>,
    /// Only objects whose top-level `type` is one of these (a Secret's type).
    #[serde(default)]
    object_types: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExempt {
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawApproval {
    /// Required unless `levels` is given (then it defaults to their counts' sum).
    min_approvers: Option<u32>,
    max_duration: String,
    #[serde(default)]
    approver_groups: Vec<String>,
    /// Multi-level approval; `from` reads as well.
    #[serde(alias = "from")]
    levels: Option<Vec<RawLevel>>,
    /// How long a request may wait for its approvers (default 24h). Written `requestTTL`,
    /// as Kubernetes spells TTL; serde's camelCase alone would make it `requestTtl`.
    #[serde(rename = "requestTTL", alias = "requestTtl")]
    request_ttl: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLevel {
    groups: Vec<String>,
    #[serde(default = "one")]
    count: u32,
}

fn one() -> u32 {
    1
}

/// Parses every `GatePolicy` document in `text`; `file` names it in errors.
pub fn parse_policies(text: &str, file: &str) -> Result<Vec<Policy>, PolicyError> {
    let documents = crate::yaml::documents(text).map_err(|reason| PolicyError::Syntax {
        file: file.to_string(),
        reason,
    })?;
    documents
        .into_iter()
        .enumerate()
        .map(|(i, doc)| {
            let document = i + 1;
            let invalid = |reason: String| PolicyError::Invalid {
                file: file.to_string(),
                document,
                reason,
            };
            let raw: RawPolicy = serde_json::from_value(doc).map_err(|e| invalid(e.to_string()))?;
            compile(raw, format!("{file}#{document}")).map_err(invalid)
        })
        .collect()
}

fn compile(raw: RawPolicy, source: String) -> Result<Policy, String> {
    if raw.api_version != API_VERSION {
        return Err(format!(
            "apiVersion must be {API_VERSION:?}, got {:?}",
            raw.api_version
        ));
    }
    if raw.kind != KIND {
        return Err(format!("kind must be {KIND:?}, got {:?}", raw.kind));
    }
    let name = raw.metadata.name;
    if name.is_empty() {
        return Err("metadata.name is empty".into());
    }
    let named = |reason: String| format!("policy {name:?}: {reason}");
    if raw.spec.rules.is_empty() {
        return Err(named("spec.rules is empty: the policy would gate nothing".into()));
    }
    let rules = raw
        .spec
        .rules
        .into_iter()
        .enumerate()
        .map(|(i, r)| compile_rule(r).map_err(|e| named(format!("spec.rules[{i}]: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let patterns = |list: Vec<String>, field: &str| {
        list.iter()
            .map(|s| Pattern::new(s).map_err(|e| named(format!("{field}: {e}"))))
            .collect::<Result<Vec<_>, _>>()
    };
    let namespaces = match raw.spec.namespaces {
        None => None,
        Some(list) if list.is_empty() => {
            return Err(named(
                "spec.namespaces is empty: omit it to gate every namespace".into(),
            ));
        }
        Some(list) => Some(patterns(list, "spec.namespaces")?),
    };
    let exempt_users = patterns(raw.spec.exempt.users, "spec.exempt.users")?;
    let exempt_groups = patterns(raw.spec.exempt.groups, "spec.exempt.groups")?;
    let approval = raw.spec.approval;
    let max_duration = parse_duration(&approval.max_duration)
        .map_err(|e| named(format!("spec.approval.maxDuration: {e}")))?;
    let approver_groups = patterns(approval.approver_groups, "spec.approval.approverGroups")?;
    let mut levels = Vec::new();
    for (i, level) in approval.levels.unwrap_or_default().into_iter().enumerate() {
        let field = format!("spec.approval.levels[{i}]");
        if level.groups.is_empty() {
            return Err(named(format!(
                "{field}.groups is empty: name the groups that fill it"
            )));
        }
        if level.count == 0 {
            return Err(named(format!("{field}.count must be at least 1")));
        }
        levels.push(Level {
            groups: patterns(level.groups, &format!("{field}.groups"))?,
            count: level.count,
        });
    }
    if !levels.is_empty() && !approver_groups.is_empty() {
        return Err(named(
            "give spec.approval.approverGroups or levels, not both: with levels, who may approve is a member of a level's groups".into(),
        ));
    }
    let level_sum: u32 = levels.iter().map(|l| l.count).sum();
    let min_approvers = match approval.min_approvers {
        Some(0) => {
            return Err(named(
                "spec.approval.minApprovers must be at least 1: nobody approves their own request".into(),
            ));
        }
        Some(n) => n.max(level_sum),
        None if level_sum > 0 => level_sum,
        None => return Err(named("spec.approval.minApprovers is missing".into())),
    };
    let request_ttl = match &approval.request_ttl {
        None => super::DEFAULT_REQUEST_TTL,
        Some(t) => parse_duration(t).map_err(|e| named(format!("spec.approval.requestTTL: {e}")))?,
    };
    let break_glass = match raw.spec.break_glass {
        None => None,
        Some(bg) => {
            if bg.groups.is_empty() {
                return Err(named(
                    "spec.breakGlass.groups is empty: name who may break the glass, or omit breakGlass"
                        .into(),
                ));
            }
            let duration = |field: &str, text: &str| {
                parse_duration(text).map_err(|e| named(format!("spec.breakGlass.{field}: {e}")))
            };
            Some(BreakGlass {
                groups: patterns(bg.groups, "spec.breakGlass.groups")?,
                max_duration: duration("maxDuration", &bg.max_duration)?,
                review_within: duration("reviewWithin", &bg.review_within)?,
            })
        }
    };
    Ok(Policy {
        name,
        source,
        rules,
        namespaces,
        exempt_users,
        exempt_groups,
        min_approvers,
        max_duration,
        approver_groups,
        levels,
        request_ttl,
        enforcement: raw.spec.enforcement,
        break_glass,
        grant: raw.spec.grant,
    })
}

fn compile_rule(raw: RawRule) -> Result<Rule, String> {
    if raw.api_groups.is_empty() {
        return Err("apiGroups is empty (use [\"\"] for the core group, [\"*\"] for any)".into());
    }
    if raw.resources.is_empty() {
        return Err("resources is empty".into());
    }
    let resources = raw
        .resources
        .iter()
        .map(|r| ResourcePattern::parse(r))
        .collect::<Result<Vec<_>, _>>()?;
    let mut operations = OpSet::default();
    for op in &raw.operations {
        if op == "*" {
            operations = OpSet::from_iter(Operation::ADMISSION);
            continue;
        }
        let parsed = Operation::ADMISSION
            .into_iter()
            .find(|o| o.as_str() == op)
            .ok_or_else(|| match Operation::read_verb(&op.to_lowercase()) {
                Some(verb) => format!("{op:?} is a read: name it under verbs: [{verb}], not operations"),
                None => format!("unknown operation {op:?} (CREATE, UPDATE, DELETE, CONNECT or \"*\")"),
            })?;
        operations.insert(parsed);
    }
    for verb in &raw.verbs {
        let parsed = Operation::read_verb(verb).ok_or_else(|| {
            format!(
                "unknown verb {verb:?}: jitgate gates the reads get, list and watch; writes are operations"
            )
        })?;
        operations.insert(parsed);
    }
    if operations.is_empty() {
        return Err("a rule names no operations and no verbs".into());
    }
    let object_types = match raw.object_types {
        None => Vec::new(),
        Some(types) if types.is_empty() || types.iter().any(String::is_empty) => {
            return Err("objectTypes holds no type, or an empty one: omit it to gate every object".into());
        }
        // A read and a CONNECT carry no object whose type could be read: such a rule
        // would gate all of them, which is not what its author wrote.
        Some(_) if !operations.reads().is_empty() || operations.contains(Operation::Connect) => {
            return Err(
                "objectTypes applies to CREATE, UPDATE and DELETE only: reads and CONNECT carry no object"
                    .into(),
            );
        }
        Some(types) => types,
    };
    Ok(Rule {
        api_groups: raw.api_groups,
        resources,
        operations,
        object_types,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    const GOOD: &str = r#"
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata: { name: p }
spec:
  rules: [{ apiGroups: [""], resources: ["secrets"], operations: ["*"] }]
  approval: { minApprovers: 2, maxDuration: 90m, approverGroups: ["sre", "team-*"] }
"#;

    fn error_of(text: &str) -> String {
        parse_policies(text, "f.yaml").unwrap_err().to_string()
    }

    #[test]
    fn request_ttl_is_read_as_the_error_messages_and_the_docs_spell_it() {
        for field in ["requestTTL", "requestTtl"] {
            let text = GOOD.replace("approverGroups:", &format!("{field}: 2h, approverGroups:"));
            let p = &parse_policies(&text, "f.yaml").unwrap()[0];
            assert_eq!(p.request_ttl, SignedDuration::from_hours(2), "{field}");
        }
    }

    #[test]
    fn a_good_policy_compiles_with_its_limits() {
        let p = &parse_policies(GOOD, "f.yaml").unwrap()[0];
        assert_eq!(p.min_approvers, 2);
        assert_eq!(p.max_duration, SignedDuration::from_mins(90));
        assert_eq!(p.rules[0].operations, OpSet::ADMISSION);
        assert!(p.namespaces.is_none());
        assert_eq!(p.source, "f.yaml#1");
        assert_eq!(p.approver_groups.len(), 2);
    }

    #[test]
    fn an_unknown_field_names_the_file_document_and_field() {
        let text = format!(
            "{GOOD}---\n{}",
            GOOD.replace("minApprovers: 2", "minApprovers: 2, maxApprovers: 3")
        );
        let err = error_of(&text);
        assert!(err.starts_with("f.yaml, document 2:"), "{err}");
        assert!(err.contains("maxApprovers"), "{err}");
    }

    #[test]
    fn invalid_values_are_refused_with_a_reason() {
        for (from, to, needle) in [
            ("minApprovers: 2", "minApprovers: 0", "at least 1"),
            ("maxDuration: 90m", "maxDuration: soon", "not a duration"),
            ("maxDuration: 90m", "maxDuration: 0s", "longer than zero"),
            ("[\"*\"]", "[\"PATCH\"]", "unknown operation"),
            ("kind: GatePolicy", "kind: Policy", "kind must be"),
            ("jitgate.dev/v1alpha1", "jitgate.dev/v2", "apiVersion must be"),
            ("resources: [\"secrets\"]", "resources: []", "resources is empty"),
            (
                "operations: [\"*\"]",
                "operations: []",
                "no operations and no verbs",
            ),
            ("operations: [\"*\"]", "verbs: [\"delete\"]", "unknown verb"),
            ("[\"*\"]", "[\"GET\"]", "name it under verbs: [get]"),
            (
                "operations: [\"*\"]",
                "operations: [\"CREATE\"], objectTypes: []",
                "objectTypes holds no type",
            ),
            (
                "operations: [\"*\"]",
                "operations: [\"CREATE\"], verbs: [\"get\"], objectTypes: [\"Opaque\"]",
                "reads and CONNECT carry no object",
            ),
            (
                "operations: [\"*\"]",
                "objectTypes: [\"Opaque\"], operations: [\"*\"]",
                "reads and CONNECT carry no object",
            ),
        ] {
            let err = error_of(&GOOD.replace(from, to));
            assert!(err.contains(needle), "{to}: {err}");
        }
    }

    #[test]
    fn a_rule_names_reads_as_verbs_beside_operations() {
        let text = GOOD.replace(
            r#"operations: ["*"]"#,
            r#"operations: ["UPDATE"], verbs: ["get", "list"]"#,
        );
        let p = &parse_policies(&text, "f.yaml").unwrap()[0];
        let ops = p.rules[0].operations;
        assert!(
            ops.contains(Operation::Update) && ops.contains(Operation::Get) && ops.contains(Operation::List)
        );
        assert!(!ops.contains(Operation::Watch) && !ops.contains(Operation::Delete));
        let reads_only = GOOD.replace(r#"operations: ["*"]"#, r#"verbs: ["watch"]"#);
        let p = &parse_policies(&reads_only, "f.yaml").unwrap()[0];
        assert!(p.rules[0].operations.admission().is_empty());
    }

    #[test]
    fn levels_ask_for_approvers_from_several_groups() {
        let text = GOOD.replace(
            r#"{ minApprovers: 2, maxDuration: 90m, approverGroups: ["sre", "team-*"] }"#,
            "\n    maxDuration: 90m\n    levels: [{ groups: [team-leads], count: 1 }, { groups: [security] }]",
        );
        let p = &parse_policies(&text, "f.yaml").unwrap()[0];
        assert_eq!(p.levels.len(), 2);
        assert_eq!(p.levels[1].count, 1);
        // minApprovers defaults to the levels' sum, and is never below it.
        assert_eq!(p.min_approvers, 2);
        assert!(p.may_approve(&["security".into()]) && !p.may_approve(&["sre".into()]));
        let from = text
            .replace("levels:", "from:")
            .replace("maxDuration: 90m", "maxDuration: 90m\n    minApprovers: 1");
        assert_eq!(parse_policies(&from, "f.yaml").unwrap()[0].min_approvers, 2);
        for (to, needle) in [
            ("levels: [{ groups: [], count: 1 }]", "levels[0].groups is empty"),
            (
                "levels: [{ groups: [a], count: 0 }]",
                "levels[0].count must be at least 1",
            ),
            ("levels: [{ groups: [a] }]\n    approverGroups: [b]", "not both"),
        ] {
            let bad = text.replace(
                "levels: [{ groups: [team-leads], count: 1 }, { groups: [security] }]",
                to,
            );
            let err = error_of(&bad);
            assert!(err.contains(needle), "{to}: {err}");
        }
        let err = error_of(&GOOD.replace("minApprovers: 2, ", ""));
        assert!(err.contains("minApprovers is missing"), "{err}");
    }

    #[test]
    fn broken_yaml_is_a_syntax_error_naming_the_file() {
        let err = error_of("spec: [unclosed");
        assert!(err.starts_with("f.yaml: not valid YAML"), "{err}");
    }
}
