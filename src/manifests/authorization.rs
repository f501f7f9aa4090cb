//! The API server's `AuthorizationConfiguration` (`apiserver.config.k8s.io/v1`, passed with
//! `--authorization-config`) that sends jitgate the reads its policies gate, rendered from
//! the policies so that the two cannot drift.
//!
//! The chain is Node, jitgate, RBAC: jitgate answers only "denied" or "no opinion", so
//! RBAC still decides every read jitgate does not deny. `matchConditions` keep everything
//! else away from jitgate (so that an outage of jitgate touches only the gated reads):
//! only resource requests for a read verb and a resource some policy gates for it, never a
//! `system:` user (the control plane, nodes, service accounts), never a node, never a
//! namespace that is never gated. The API server's decision cache is switched off: a
//! cached answer would outlive a revoked approval, and would reach no record.

use super::NEVER_GATED;
use super::cel::{self, list, lit};
use crate::policy::PolicySet;
use serde::Serialize;

/// Where the API server reads the webhook's kubeconfig (`connectionInfo.kubeConfigFile`).
pub const KUBECONFIG_PATH: &str = "/etc/kubernetes/jitgate/webhook-kubeconfig.yaml";

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationConfiguration {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub authorizers: Vec<Authorizer>,
}

#[derive(Debug, Serialize)]
pub struct Authorizer {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub timeout: &'static str,
    pub subject_access_review_version: &'static str,
    pub match_condition_subject_access_review_version: &'static str,
    pub failure_policy: &'static str,
    #[serde(rename = "authorizedTTL")]
    pub authorized_ttl: &'static str,
    #[serde(rename = "unauthorizedTTL")]
    pub unauthorized_ttl: &'static str,
    pub cache_authorized_requests: bool,
    pub cache_unauthorized_requests: bool,
    pub connection_info: ConnectionInfo,
    pub match_conditions: Vec<MatchCondition>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionInfo {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub kube_config_file: &'static str,
}

#[derive(Debug, Serialize)]
pub struct MatchCondition {
    pub expression: String,
}

/// Where an authorization review's coordinates are in CEL. Its string fields are always
/// present, empty when unset.
const FIELDS: cel::Fields = cel::Fields {
    group: "request.resourceAttributes.group",
    resource: "request.resourceAttributes.resource",
    subresource: "request.resourceAttributes.subresource",
    verb: "request.resourceAttributes.verb",
};

/// One CEL clause per rule that gates reads, with the read verbs it gates, and per rule
/// of a policy that grants, with the verbs of the writes and CONNECTs it gates as well
/// ([`crate::authorization::verbs_of`]). `false` when no policy gates a read or grants.
pub fn gated_reads(policies: &PolicySet) -> String {
    let mut clauses: Vec<String> = Vec::new();
    for policy in policies.iter() {
        for rule in &policy.rules {
            let ops = if policy.grant {
                rule.operations
            } else {
                rule.operations.reads()
            };
            let mut verbs: Vec<&str> = Vec::new();
            for verb in ops
                .iter()
                .flat_map(|op| crate::authorization::verbs_of(op).iter())
            {
                if !verbs.contains(verb) {
                    verbs.push(verb);
                }
            }
            if verbs.is_empty() {
                continue;
            }
            let clause = cel::rule(&FIELDS, rule, Some(verbs));
            if !clauses.contains(&clause) {
                clauses.push(clause);
            }
        }
    }
    if clauses.is_empty() {
        "false".into()
    } else {
        clauses.join(" ||\n")
    }
}

/// The configuration: Node, then jitgate for the reads its policies gate (and what the
/// policies that grant cover), then RBAC.
pub fn configuration(policies: &PolicySet, jitgate_namespace: &str) -> AuthorizationConfiguration {
    let mut never: Vec<String> = NEVER_GATED.iter().map(|s| s.to_string()).collect();
    if !never.iter().any(|n| n == jitgate_namespace) {
        never.push(jitgate_namespace.into());
        never.sort();
    }
    let conditions = [
        // The API server's own identities, the controllers, nodes and service accounts.
        "!request.user.startsWith('system:')".to_string(),
        "!('system:nodes' in request.groups) && !('system:masters' in request.groups)".to_string(),
        // Resource requests only: /healthz, /api and the like have no resourceAttributes.
        "has(request.resourceAttributes)".to_string(),
        format!(
            "!(request.resourceAttributes.namespace in {})",
            list(never.iter().map(|n| lit(n)))
        ),
        gated_reads(policies),
    ];
    AuthorizationConfiguration {
        api_version: "apiserver.config.k8s.io/v1",
        kind: "AuthorizationConfiguration",
        authorizers: vec![
            Authorizer {
                kind: "Node",
                name: "node",
                webhook: None,
            },
            Authorizer {
                kind: "Webhook",
                name: "jitgate",
                webhook: Some(Webhook {
                    timeout: "3s",
                    subject_access_review_version: "v1",
                    match_condition_subject_access_review_version: "v1",
                    failure_policy: "Deny",
                    // Required to be positive, but unused: caching is off.
                    authorized_ttl: "1s",
                    unauthorized_ttl: "1s",
                    cache_authorized_requests: false,
                    cache_unauthorized_requests: false,
                    connection_info: ConnectionInfo {
                        kind: "KubeConfigFile",
                        kube_config_file: KUBECONFIG_PATH,
                    },
                    match_conditions: conditions
                        .into_iter()
                        .map(|expression| MatchCondition { expression })
                        .collect(),
                }),
            },
            Authorizer {
                kind: "RBAC",
                name: "rbac",
                webhook: None,
            },
        ],
    }
}

const HEADER: &str = "\
# Generated by `jitgate manifests authorization` from policies/; do not edit by hand.
# CI fails when this file differs from what the command prints.
#
# The API server's authorization chain with jitgate between Node and RBAC, for
# kube-apiserver --authorization-config=<this file> (it replaces --authorization-mode).
# jitgate answers \"denied\" or \"no opinion\" (RBAC still decides every other read), and
# \"allowed\" only for what a live approval names under a policy with grant: true.
# failurePolicy Deny: while jitgate is unreachable, the gated reads below fail (HTTP 500);
# every other request is decided as before. The decision cache is off, so an approval
# works, and a revoked one stops, on the next request.
";

/// The configuration as YAML, with a header saying where it comes from and what it does.
pub fn yaml(policies: &PolicySet, jitgate_namespace: &str) -> String {
    let body = serde_saphyr::to_string(&configuration(policies, jitgate_namespace)).unwrap_or_default();
    format!("{HEADER}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::policies::load_dir;
    use std::path::Path;

    fn shipped() -> PolicySet {
        load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
    }

    #[test]
    fn the_chain_is_node_jitgate_rbac_with_the_schemas_required_fields() {
        let c = configuration(&shipped(), "jitgate-system");
        let kinds: Vec<&str> = c.authorizers.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, ["Node", "Webhook", "RBAC"]);
        let w = c.authorizers[1].webhook.as_ref().unwrap();
        assert_eq!(w.failure_policy, "Deny");
        assert!(!w.cache_authorized_requests && !w.cache_unauthorized_requests);
        assert!(w.match_conditions.len() <= 64);
        assert_eq!(w.match_condition_subject_access_review_version, "v1");
        assert!(Path::new(w.connection_info.kube_config_file).is_absolute());
    }

    #[test]
    fn only_the_read_rules_of_the_policies_become_conditions() {
        let cel = gated_reads(&shipped());
        assert!(
            cel.contains("request.resourceAttributes.resource == 'secrets'"),
            "{cel}"
        );
        assert!(
            cel.contains("request.resourceAttributes.subresource == 'log'"),
            "{cel}"
        );
        assert!(!cel.contains("deployments"), "writes are admission's: {cel}");
        assert_eq!(gated_reads(&PolicySet::default()), "false");
    }
}
