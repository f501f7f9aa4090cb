//! Gate policies: which operations on which resources, in which namespaces, need an
//! approval, and what that approval must look like.
//!
//! Resource names follow the Kubernetes webhook rule conventions, so that the webhook
//! configuration can be rendered from the same policies: `pods` is the resource alone,
//! `pods/exec` one subresource, `pods/*` every subresource of pods, `*/scale` the scale
//! subresource of anything, `*` every resource (no subresources) and `*/*` everything.
//!
//! A rule may also name `objectTypes`: then it gates only objects whose top-level `type`
//! is one of them (a Secret of type `kubernetes.io/service-account-token`), and, failing
//! closed, any object whose type cannot be read.

mod levels;
mod load;
mod store;

pub use levels::{Level, Unmet, merge as merge_levels, unmet};

pub use load::{PolicyError, parse_policies};
pub use store::PolicyStore;

use crate::operation::{OpSet, Operation};
use crate::pattern::{self, Pattern};
use jiff::SignedDuration;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;

/// What a request is, as far as policy matching is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub api_group: &'a str,
    pub resource: &'a str,
    pub sub_resource: &'a str,
    pub namespace: &'a str,
    pub operation: Operation,
    /// The object the request writes (for a DELETE, the one it deletes), raw; `None` for
    /// a CONNECT or a read, or when the review carries none. Read only by a rule that
    /// names `objectTypes`.
    pub object: Option<&'a RawValue>,
}

/// What an approval entry covers. Policies match it on all but the object's name
/// ([`PolicySet::gating_scope`]); people read it as [`Scope`]'s `Display`, the one way
/// jitgate writes an approval's scope (the CLI's tables, Events, the signing summary).
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// `None`: any group.
    pub api_group: Option<&'a str>,
    pub resource: &'a str,
    pub sub_resource: &'a str,
    /// Empty: requests without a namespace (cluster-scoped objects, reads across all
    /// namespaces).
    pub namespace: &'a str,
    /// `None`: any object of the resource in the namespace.
    pub name: Option<&'a str>,
    pub operations: OpSet,
}

/// `UPDATE,DELETE prod/deployments.apps/scale/web`: the operations and read verbs (`ALL`
/// for every gated operation and read), then the namespace (none when empty), the
/// resource with its API group and subresource, and the object's name (`*`: any).
impl std::fmt::Display for Scope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.operations == OpSet::ALL {
            f.write_str("ALL")?;
        } else {
            for (i, op) in self.operations.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                f.write_str(op.as_str())?;
            }
        }
        f.write_str(" ")?;
        if !self.namespace.is_empty() {
            write!(f, "{}/", self.namespace)?;
        }
        f.write_str(self.resource)?;
        if let Some(group) = self.api_group.filter(|g| !g.is_empty()) {
            write!(f, ".{group}")?;
        }
        if !self.sub_resource.is_empty() {
            write!(f, "/{}", self.sub_resource)?;
        }
        write!(f, "/{}", self.name.unwrap_or("*"))
    }
}

/// What a [`ResourcePattern`] says of the subresource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sub {
    /// The resource itself, no subresource.
    None,
    /// Any subresource (but not the resource itself).
    Any,
    Named(String),
}

/// One entry of a rule's `resources`, e.g. `deployments/scale`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePattern {
    /// The resource's plural name, or `*`.
    resource: String,
    sub: Sub,
}

impl ResourcePattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (resource, sub) = match text.split_once('/') {
            None => (text, Sub::None),
            Some((_, "")) => return Err(format!("resource {text:?} ends with '/'")),
            Some((r, "*")) => (r, Sub::Any),
            Some((_, s)) if s.contains(['/', '*']) => {
                return Err(format!("resource {text:?}: a subresource is one name or '*'"));
            }
            Some((r, s)) => (r, Sub::Named(s.to_string())),
        };
        if resource.is_empty() || (resource.contains('*') && resource != "*") {
            return Err(format!("resource {text:?}: a resource is a plural name or '*'"));
        }
        Ok(ResourcePattern {
            resource: resource.to_string(),
            sub,
        })
    }

    /// The resource's plural name, or `*`.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    pub fn sub(&self) -> &Sub {
        &self.sub
    }

    pub fn matches(&self, resource: &str, sub_resource: &str) -> bool {
        let resource_ok = self.resource == "*" || self.resource == resource;
        resource_ok
            && match &self.sub {
                Sub::None => sub_resource.is_empty(),
                Sub::Any => !sub_resource.is_empty(),
                Sub::Named(s) => s == sub_resource,
            }
    }

    /// The form written in policies and in webhook rules.
    pub fn as_rule_string(&self) -> String {
        match &self.sub {
            Sub::None => self.resource.clone(),
            Sub::Any => format!("{}/*", self.resource),
            Sub::Named(s) => format!("{}/{s}", self.resource),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    /// API groups; `""` is core, `"*"` any.
    pub api_groups: Vec<String>,
    pub resources: Vec<ResourcePattern>,
    pub operations: OpSet,
    /// The objects' `type`s it gates (`objectTypes`); empty: every object.
    pub object_types: Vec<String>,
}

impl Rule {
    fn matches(&self, t: &Target<'_>) -> bool {
        self.operations.contains(t.operation)
            && self.api_groups.iter().any(|g| g == "*" || g == t.api_group)
            && self
                .resources
                .iter()
                .any(|r| r.matches(t.resource, t.sub_resource))
            && self.matches_type(t.object)
    }

    /// True when the rule names no `objectTypes`, or the object's type is one of them, or
    /// it cannot be read (fail closed: an object jitgate cannot tell apart is gated).
    fn matches_type(&self, object: Option<&RawValue>) -> bool {
        self.object_types.is_empty()
            || match object_type(object) {
                ObjectType::Unknown => true,
                ObjectType::Named(ty) => self.object_types.iter().any(|t| *t == ty),
                ObjectType::Other => false,
            }
    }
}

/// What a rule's `objectTypes` sees of an object's top-level `type`.
#[derive(Debug, PartialEq, Eq)]
pub enum ObjectType<'a> {
    /// No object, not JSON, or no `type` in it: jitgate cannot tell what it is.
    Unknown,
    /// A `type` that is a string, such as a Secret's.
    Named(Cow<'a, str>),
    /// A `type` that is not a string: no type a policy can name.
    Other,
}

/// An object's top-level `type`, read from its raw JSON. Nothing else of the object is
/// kept (a Secret's data is skipped over, never copied).
pub fn object_type(object: Option<&RawValue>) -> ObjectType<'_> {
    #[derive(serde::Deserialize)]
    struct Typed<'a> {
        #[serde(borrow, rename = "type")]
        ty: Option<&'a RawValue>,
    }
    let Some(Ok(Typed { ty: Some(ty) })) = object.map(|o| serde_json::from_str::<Typed<'_>>(o.get())) else {
        return ObjectType::Unknown;
    };
    match serde_json::from_str::<Cow<'_, str>>(ty.get()) {
        Ok(name) => ObjectType::Named(name),
        Err(_) => ObjectType::Other,
    }
}

/// One compiled `GatePolicy`.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    /// Where it was read from: `file#document`.
    pub source: String,
    pub rules: Vec<Rule>,
    /// `None`: every namespace, and cluster-scoped objects too.
    pub namespaces: Option<Vec<Pattern>>,
    pub exempt_users: Vec<Pattern>,
    pub exempt_groups: Vec<Pattern>,
    /// Distinct approvers needed in all (with `levels`, at least their counts' sum).
    pub min_approvers: u32,
    pub max_duration: SignedDuration,
    /// Who may approve: members of any of these groups. Empty (and no `levels`): anyone who
    /// may edit the approvals ConfigMap.
    pub approver_groups: Vec<Pattern>,
    /// Multi-level approval: every level must be met, by distinct people. Who may approve
    /// is then a member of some level's groups.
    pub levels: Vec<Level>,
    /// How long a request may wait for its approvers before it expires unapproved.
    pub request_ttl: SignedDuration,
    /// What a denial under this policy does.
    pub enforcement: Enforcement,
    /// Who may grant themselves emergency access, for how long, and how soon it must be
    /// reviewed. `None`: nobody.
    pub break_glass: Option<BreakGlass>,
    /// `spec.grant`: an approval under it also grants what it names, through the
    /// authorization webhook, to someone who holds no RBAC rights for it ("zero standing
    /// privilege"). Without it jitgate only takes power away.
    pub grant: bool,
}

/// `spec.enforcement`: how a policy is rolled out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// Allow, and record what would have been denied. Nobody is told.
    #[serde(rename = "dryrun")]
    DryRun,
    /// Allow, with the denial's text as a warning that kubectl prints.
    Warn,
    /// Deny (the default).
    #[default]
    Deny,
}

impl Enforcement {
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::DryRun => "dryrun",
            Enforcement::Warn => "warn",
            Enforcement::Deny => "deny",
        }
    }
}

/// `spec.breakGlass`: emergency self-approval, loud and reviewed afterwards.
#[derive(Debug, Clone)]
pub struct BreakGlass {
    pub groups: Vec<Pattern>,
    pub max_duration: SignedDuration,
    pub review_within: SignedDuration,
}

impl BreakGlass {
    pub fn admits(&self, groups: &[String]) -> bool {
        groups.iter().any(|g| pattern::any_matches(&self.groups, g))
    }
}

impl Policy {
    /// True when this policy gates the target, whoever asks.
    pub fn gates(&self, t: &Target<'_>) -> bool {
        self.covers_namespace(t.namespace, t.operation.is_read()) && self.rules.iter().any(|r| r.matches(t))
    }

    /// True when a rule of the policy that names `objectTypes` covers the target: the
    /// policy gates only some objects of its resource (and those it cannot read).
    pub fn types_objects(&self, t: &Target<'_>) -> bool {
        self.covers_namespace(t.namespace, t.operation.is_read())
            && self
                .rules
                .iter()
                .any(|r| !r.object_types.is_empty() && r.matches(t))
    }

    /// True when the policy applies in `namespace` (all do when `namespaces` is omitted).
    /// A read without a namespace (`kubectl get secrets --all-namespaces`) spans every
    /// namespace, the policy's among them, so every policy applies to it; a write without
    /// one is of a cluster-scoped object, which only a policy without `namespaces` covers.
    fn covers_namespace(&self, namespace: &str, read: bool) -> bool {
        (read && namespace.is_empty())
            || self
                .namespaces
                .as_ref()
                .is_none_or(|globs| pattern::any_matches(globs, namespace))
    }

    /// True when a member of `groups` may approve under this policy: they are in its
    /// approverGroups, or in the groups of one of its levels.
    pub fn may_approve(&self, groups: &[String]) -> bool {
        if self.approver_groups.is_empty() && self.levels.is_empty() {
            return true;
        }
        groups.iter().any(|g| {
            pattern::any_matches(&self.approver_groups, g)
                || self.levels.iter().any(|l| l.admits(std::iter::once(g.as_str())))
        })
    }

    /// The groups that may approve under it, as written; empty when anyone may.
    pub fn approver_group_names(&self) -> Vec<&str> {
        self.approver_groups
            .iter()
            .chain(self.levels.iter().flat_map(|l| &l.groups))
            .map(Pattern::as_str)
            .collect()
    }

    /// True when this policy gates some request that an approval with this scope would
    /// allow: the approval would have work to do under it.
    pub fn gates_scope(&self, scope: &Scope<'_>) -> bool {
        self.rules.iter().any(|r| {
            let group_ok = match scope.api_group {
                None => true,
                Some(g) => r.api_groups.iter().any(|rg| rg == "*" || rg == g),
            };
            group_ok
                && r.resources
                    .iter()
                    .any(|p| p.matches(scope.resource, scope.sub_resource))
                && r.operations.iter().any(|op| {
                    scope.operations.contains(op) && self.covers_namespace(scope.namespace, op.is_read())
                })
        })
    }

    /// True when the user, or one of their groups, is exempt from this policy.
    pub fn exempts(&self, user: &str, groups: &[String]) -> bool {
        pattern::any_matches(&self.exempt_users, user)
            || groups
                .iter()
                .any(|g| pattern::any_matches(&self.exempt_groups, g))
    }
}

/// All loaded policies, indexed by the resource names their rules mention so that a
/// request only looks at the policies that could gate it.
#[derive(Debug, Default)]
pub struct PolicySet {
    policies: Vec<Policy>,
    by_resource: HashMap<String, Vec<usize>>,
    any_resource: Vec<usize>,
}

impl PolicySet {
    /// Builds the set; names must be unique.
    pub fn new(policies: Vec<Policy>) -> Result<Self, PolicyError> {
        let mut by_resource: HashMap<String, Vec<usize>> = HashMap::new();
        let mut any_resource = Vec::new();
        for (i, policy) in policies.iter().enumerate() {
            if let Some(first) = policies[..i].iter().find(|p| p.name == policy.name) {
                return Err(PolicyError::Duplicate {
                    name: policy.name.clone(),
                    first: first.source.clone(),
                    second: policy.source.clone(),
                });
            }
            for pattern in policy.rules.iter().flat_map(|r| &r.resources) {
                let list = if pattern.resource == "*" {
                    &mut any_resource
                } else {
                    by_resource.entry(pattern.resource.clone()).or_default()
                };
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        Ok(PolicySet {
            policies,
            by_resource,
            any_resource,
        })
    }

    pub fn len(&self) -> usize {
        self.policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Policy> {
        self.policies.iter()
    }

    /// The policies under which an approval with this scope would allow something.
    pub fn gating_scope(&self, scope: &Scope<'_>) -> Vec<&Policy> {
        self.policies.iter().filter(|p| p.gates_scope(scope)).collect()
    }

    /// The policies that gate the target, in load order.
    pub fn gating(&self, t: &Target<'_>) -> Vec<&Policy> {
        let named = self.by_resource.get(t.resource).map(Vec::as_slice).unwrap_or(&[]);
        let mut ids: Vec<usize> = named.iter().chain(&self.any_resource).copied().collect();
        if !self.any_resource.is_empty() {
            ids.sort_unstable();
            ids.dedup();
        }
        ids.into_iter()
            .map(|i| &self.policies[i])
            .filter(|p| p.gates(t))
            .collect()
    }
}

/// Namespaces whose requests never go to jitgate's webhooks: the cluster's own, and
/// jitgate's, so that neither the cluster nor jitgate can be locked out.
pub const NEVER_GATED: [&str; 4] = ["jitgate-system", "kube-node-lease", "kube-public", "kube-system"];

/// True for a namespace whose requests the rendered webhook configurations never send to
/// jitgate: one of [`NEVER_GATED`], or `jitgate_namespace`, jitgate's own.
pub fn never_gated(namespace: &str, jitgate_namespace: &str) -> bool {
    namespace == jitgate_namespace || NEVER_GATED.contains(&namespace)
}

/// How long a request waits for approvers when its policy does not say.
pub const DEFAULT_REQUEST_TTL: SignedDuration = SignedDuration::from_hours(24);

/// How long a request under these gating policies may wait for its approvers: the
/// shortest `requestTTL` among them.
pub fn request_ttl(gating: &[&Policy]) -> SignedDuration {
    gating
        .iter()
        .map(|p| p.request_ttl)
        .min()
        .unwrap_or(DEFAULT_REQUEST_TTL)
}

/// How many approvers an approval under these gating policies needs: the largest
/// minApprovers among them; `None` when no policy gates it. The decision, the ledger and
/// the CLI all ask here.
pub fn required_approvers(gating: &[&Policy]) -> Option<u32> {
    gating.iter().map(|p| p.min_approvers).max()
}

/// The groups that may approve under these gating policies, as written, sorted, each
/// once; empty when anyone may.
pub fn approver_groups(gating: &[&Policy]) -> Vec<String> {
    let mut groups: Vec<String> = gating
        .iter()
        .flat_map(|p| p.approver_group_names())
        .map(str::to_string)
        .collect();
    groups.sort();
    groups.dedup();
    groups
}

/// The levels an approval under these gating policies must meet, merged.
pub fn required_levels(gating: &[&Policy]) -> Vec<Level> {
    levels::merge(gating.iter().flat_map(|p| &p.levels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target<'a>(group: &'a str, resource: &'a str, sub: &'a str, ns: &'a str, op: Operation) -> Target<'a> {
        Target {
            api_group: group,
            resource,
            sub_resource: sub,
            namespace: ns,
            operation: op,
            object: None,
        }
    }

    const POLICIES: &str = r#"
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata: { name: secrets }
spec:
  rules: [{ apiGroups: [""], resources: ["secrets"], operations: ["UPDATE", "DELETE"] }]
  namespaces: ["prod", "prod-*"]
  exempt: { users: ["system:serviceaccount:argocd:*"], groups: ["breakers"] }
  approval: { minApprovers: 1, maxDuration: 4h }
---
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata: { name: scale-anywhere }
spec:
  rules: [{ apiGroups: ["apps"], resources: ["*/scale"], operations: ["UPDATE"] }]
  approval: { minApprovers: 2, maxDuration: 1h }
"#;

    fn set() -> PolicySet {
        PolicySet::new(parse_policies(POLICIES, "test.yaml").unwrap()).unwrap()
    }

    fn names(ps: &[&Policy]) -> Vec<String> {
        ps.iter().map(|p| p.name.clone()).collect()
    }

    #[test]
    fn a_secret_update_in_prod_is_gated() {
        let set = set();
        let t = target("", "secrets", "", "prod", Operation::Update);
        assert_eq!(names(&set.gating(&t)), ["secrets"]);
    }

    #[test]
    fn a_namespace_glob_gates_matching_namespaces_only() {
        let set = set();
        assert_eq!(
            set.gating(&target("", "secrets", "", "prod-eu", Operation::Delete))
                .len(),
            1
        );
        assert!(
            set.gating(&target("", "secrets", "", "staging", Operation::Update))
                .is_empty()
        );
    }

    #[test]
    fn an_operation_not_in_the_rule_is_not_gated() {
        let set = set();
        assert!(
            set.gating(&target("", "secrets", "", "prod", Operation::Create))
                .is_empty()
        );
    }

    #[test]
    fn a_subresource_is_not_gated_by_a_rule_for_its_resource() {
        let set = set();
        assert!(
            set.gating(&target("", "secrets", "status", "prod", Operation::Update))
                .is_empty()
        );
    }

    #[test]
    fn a_wildcard_resource_with_a_subresource_gates_every_scale() {
        let set = set();
        let t = target("apps", "statefulsets", "scale", "anywhere", Operation::Update);
        assert_eq!(names(&set.gating(&t)), ["scale-anywhere"]);
        let t = target("apps", "deployments", "", "anywhere", Operation::Update);
        assert!(set.gating(&t).is_empty());
    }

    #[test]
    fn the_api_group_must_match() {
        let set = set();
        let t = target("example.com", "secrets", "", "prod", Operation::Update);
        assert!(set.gating(&t).is_empty());
    }

    #[test]
    fn exemptions_match_users_by_glob_and_groups_by_name() {
        let set = set();
        let p = set.iter().next().unwrap();
        assert!(p.exempts("system:serviceaccount:argocd:controller", &[]));
        assert!(p.exempts("bob", &["breakers".into()]));
        assert!(!p.exempts("bob", &["dev".into()]));
    }

    #[test]
    fn resource_patterns_follow_webhook_rule_semantics() {
        let p = |s| ResourcePattern::parse(s).unwrap();
        assert!(p("pods").matches("pods", ""));
        assert!(!p("pods").matches("pods", "exec"));
        assert!(p("pods/exec").matches("pods", "exec"));
        assert!(p("pods/*").matches("pods", "attach"));
        assert!(!p("pods/*").matches("pods", ""));
        assert!(p("*").matches("anything", ""));
        assert!(!p("*").matches("anything", "status"));
        assert!(p("*/*").matches("anything", "status"));
        assert!(ResourcePattern::parse("po*s").is_err());
        assert!(ResourcePattern::parse("pods/").is_err());
        assert!(ResourcePattern::parse("pods/a/b").is_err());
    }

    #[test]
    fn a_read_without_a_namespace_spans_every_namespace_and_a_write_does_not() {
        let set = PolicySet::new(
            parse_policies(
                r#"
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata: { name: reads }
spec:
  rules: [{ apiGroups: [""], resources: ["secrets"], verbs: ["list"], operations: ["UPDATE"] }]
  namespaces: ["prod"]
  approval: { minApprovers: 1, maxDuration: 1h }
"#,
                "p.yaml",
            )
            .unwrap(),
        )
        .unwrap();
        let everywhere = |op| target("", "secrets", "", "", op);
        assert_eq!(set.gating(&everywhere(Operation::List)).len(), 1);
        assert!(set.gating(&everywhere(Operation::Update)).is_empty());
        assert!(
            set.gating(&target("", "secrets", "", "staging", Operation::List))
                .is_empty()
        );
        let scope = |op| Scope {
            api_group: Some(""),
            resource: "secrets",
            sub_resource: "",
            namespace: "",
            name: None,
            operations: [op].into_iter().collect(),
        };
        assert_eq!(
            set.gating_scope(&scope(Operation::List)).len(),
            1,
            "an approval to list everywhere has work to do"
        );
        assert!(set.gating_scope(&scope(Operation::Update)).is_empty());
    }

    #[test]
    fn an_approval_scope_is_written_one_way() {
        let scope = |group, resource, sub, ns, name, ops: &[Operation]| {
            Scope {
                api_group: group,
                resource,
                sub_resource: sub,
                namespace: ns,
                name,
                operations: ops.iter().copied().collect(),
            }
            .to_string()
        };
        let ops = [Operation::Update, Operation::Delete];
        assert_eq!(
            scope(Some("apps"), "deployments", "scale", "prod", Some("web"), &ops),
            "UPDATE,DELETE prod/deployments.apps/scale/web"
        );
        assert_eq!(
            scope(
                Some(""),
                "secrets",
                "",
                "prod",
                None,
                &[Operation::Get, Operation::List]
            ),
            "get,list prod/secrets/*"
        );
        assert_eq!(scope(None, "nodes", "", "", None, &Operation::ALL), "ALL nodes/*");
    }

    #[test]
    fn an_approval_scope_is_gated_when_some_operation_and_group_it_covers_is() {
        let set = set();
        let scope = |group, resource, sub, ns, ops: &[Operation]| Scope {
            api_group: group,
            resource,
            sub_resource: sub,
            namespace: ns,
            name: None,
            operations: ops.iter().copied().collect(),
        };
        let names = |s: &Scope<'_>| {
            set.gating_scope(s)
                .iter()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&scope(None, "secrets", "", "prod", &Operation::ALL)),
            ["secrets"]
        );
        assert_eq!(
            names(&scope(Some(""), "secrets", "", "prod-eu", &[Operation::Delete])),
            ["secrets"]
        );
        assert!(names(&scope(None, "secrets", "", "prod", &[Operation::Create])).is_empty());
        assert!(names(&scope(None, "secrets", "", "staging", &Operation::ALL)).is_empty());
        // A write approval without a namespace is for cluster-scoped objects: not
        // prod's Secrets. A read approval without one spans every namespace: see below.
        assert!(names(&scope(None, "secrets", "", "", &[Operation::Update])).is_empty());
        assert!(
            names(&scope(
                Some("example.com"),
                "secrets",
                "",
                "prod",
                &Operation::ALL
            ))
            .is_empty()
        );
        assert_eq!(
            names(&scope(Some("apps"), "deployments", "scale", "x", &Operation::ALL)),
            ["scale-anywhere"]
        );
    }

    #[test]
    fn approver_groups_limit_who_may_approve() {
        let mut set = parse_policies(POLICIES, "t.yaml").unwrap();
        assert!(set[0].may_approve(&[]), "empty approverGroups: anyone");
        set[0].approver_groups = vec![Pattern::new("sre").unwrap()];
        assert!(set[0].may_approve(&["dev".into(), "sre".into()]));
        assert!(!set[0].may_approve(&["dev".into()]));
    }

    #[test]
    fn a_rule_with_object_types_gates_only_objects_of_those_types_and_any_it_cannot_read() {
        let set = PolicySet::new(
            parse_policies(
                r#"
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata: { name: tokens }
spec:
  rules: [{ apiGroups: [""], resources: ["secrets"], operations: ["CREATE", "DELETE"], objectTypes: ["kubernetes.io/service-account-token"] }]
  namespaces: ["prod"]
  approval: { minApprovers: 1, maxDuration: 1h }
"#,
                "p.yaml",
            )
            .unwrap(),
        )
        .unwrap();
        let raw = |json: &str| RawValue::from_string(json.to_string()).unwrap();
        let token =
            raw(r#"{"kind":"Secret","data":{"x":"eQ=="},"type":"kubernetes.io/service-account-token"}"#);
        let opaque = raw(r#"{"kind":"Secret","type":"Opaque","data":{"type":"a2V5"}}"#);
        let untyped = raw(r#"{"kind":"Secret"}"#);
        let not_json = raw(r#""a string""#);
        let odd = raw(r#"{"kind":"Secret","type":7}"#);
        let gated = |object: Option<&RawValue>, op| {
            let mut t = target("", "secrets", "", "prod", op);
            t.object = object;
            !set.gating(&t).is_empty()
        };
        assert!(gated(Some(&token), Operation::Create));
        assert!(gated(Some(&token), Operation::Delete));
        assert!(
            !gated(Some(&opaque), Operation::Create),
            "a data key named type is not the type"
        );
        assert!(
            !gated(Some(&odd), Operation::Create),
            "a type that is no name is none of them"
        );
        for unreadable in [Some(&*untyped), Some(&*not_json), None] {
            assert!(
                gated(unreadable, Operation::Create),
                "{unreadable:?}: fails closed"
            );
        }
        assert!(
            !gated(Some(&token), Operation::Update),
            "the rule names no UPDATE"
        );
        assert_eq!(
            object_type(Some(&token)),
            ObjectType::Named("kubernetes.io/service-account-token".into())
        );
    }

    #[test]
    fn two_policies_with_one_name_are_refused() {
        let mut policies = parse_policies(POLICIES, "a.yaml").unwrap();
        policies.extend(parse_policies(POLICIES, "b.yaml").unwrap());
        let err = PolicySet::new(policies).unwrap_err().to_string();
        assert!(err.contains("a.yaml#1") && err.contains("b.yaml#1"), "{err}");
    }
}
