//! A grant in RBAC's terms, for clusters whose authorizer chain jitgate cannot join
//! (`serve --grants rbac`): what Role, bound to whom, a live approval under granting
//! policies becomes. Pure: no I/O; `crate::grants` writes what this module renders.
//!
//! The rules are derived from [`decide`] itself, never beside it: each RBAC verb a rule
//! would hold is asked of `decide`, as the authorization webhook would ask it, for the
//! approval alone, and kept only when `decide` grants it. So a Role never holds a verb
//! the webhook way would refuse (a policy that does not grant, too few approvers, past
//! `maxDuration`, expired, not yet approved).
//!
//! Where a Role cannot hold exactly what `decide` grants, it holds less, or there is no
//! Role at all and [`NoGrant`] says why (fail closed):
//! - `maxUses`: RBAC cannot count uses. The admission gate counts each write (and each
//!   CONNECT) it lets through, and refuses the one past the last: an approval with
//!   `maxUses` that names writes only gets its Role while uses remain, and the reconciler
//!   removes it once they are spent ([`crate::grants`]). Reads (`get`, `list`, `watch`)
//!   and `impersonate` reach no admission webhook, so nothing could count them: an
//!   approval with `maxUses` that names any ([`OpSet::ALL`] when it names none) gets no
//!   Role at all, rather than reads without a count.
//! - A `create` of a named object: RBAC cannot restrict `create` by name (the API server
//!   asks it before the object has one), so a named approval's CREATE is left out; a
//!   CONNECT names the Pod and is kept. `deletecollection` is never granted: it names no
//!   object and a Role would let it delete every object of the resource at once.
//! - A cluster-scoped object (no namespace): a Role cannot hold it.
//! - A namespace whose requests never reach jitgate's webhooks ([`policy::NEVER_GATED`]
//!   and jitgate's own, where its approvals and its count of uses live): the admission
//!   gate would see none of the writes, and the webhook way never grants there.
//! - A granting policy rule with `objectTypes` that covers it: the admission gate is only
//!   sent objects of the listed types, and a Role cannot tell types apart, so it would
//!   allow writes of every type, unchecked and (under `maxUses`) uncounted.
//! - No `apiGroup`, under a policy rule for every group (`"*"`): a Role would grant the
//!   resource in every group, so there is none. Without `apiGroup` under rules naming
//!   their groups, the Role names those groups that `decide` grants.
//! - A policy that exempts groups (or, for an approval to a group, exempts anyone):
//!   jitgate cannot know who is in a group, and an exempt person is one `decide` never
//!   grants to, so there is no Role.
//! - An approval to a group that one of its approvers may be in: RBAC would give the
//!   approver what they approved for themselves. The Role is made only when the approval
//!   still suffices with each approver taken as the requester.
//! - A break-glass entry: whether it may be used depends on the requester's groups, which
//!   jitgate does not know outside a request; it gets no Role.
//! - A `system:` user or group (service accounts, nodes, the anonymous user, everyone
//!   authenticated or not): the webhook way never grants to a `system:` user (its
//!   matchConditions never send one), and a RoleBinding to such a group would.

use crate::admission::{GroupVersionResource, UserInfo};
use crate::approvals::{Approval, ConfigMapRef, Snapshot, Subject};
use crate::authorization::{AccessRequest, CONNECT_SUBRESOURCES};
use crate::decision::{Approvals, Inputs, Outcome, decide};
use crate::operation::{OpSet, Operation};
use crate::policy::{self, PolicySet, Target};
use crate::signing::{Checked, Signers};
use jiff::Timestamp;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The label every object jitgate creates for a grant carries; only objects carrying it
/// are ever deleted.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "jitgate");
/// The label naming the grant (the digest in the objects' name): label values cannot
/// hold an approval's id, which the annotation [`APPROVAL_ANNOTATION`] holds whole.
pub const GRANT_LABEL: &str = "jitgate.dev/grant";
/// The annotation holding the approval's id (`<configmap>/<key>`).
pub const APPROVAL_ANNOTATION: &str = "jitgate.dev/approval";
/// The annotation holding when the approval expires (RFC 3339).
pub const EXPIRES_ANNOTATION: &str = "jitgate.dev/expires-at";
/// The annotation a grant's RoleBinding carries once its creation (or, when found without
/// it, its standing) is in the audit trail: the replica that recorded it.
pub const RECORDED_ANNOTATION: &str = "jitgate.dev/recorded-by";

/// One rule of a Role, as RBAC writes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    pub api_groups: Vec<String>,
    /// `resource` or `resource/subresource`.
    pub resources: Vec<String>,
    /// Empty: every object of the resource.
    pub resource_names: Vec<String>,
    pub verbs: Vec<&'static str>,
}

/// A Role and its RoleBinding for one live approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The approval's id.
    pub approval: String,
    /// The name of both the Role and the RoleBinding: [`object_name`] of the approval.
    pub name: String,
    pub namespace: String,
    pub subject: Subject,
    pub rules: Vec<Rule>,
    pub expires_at: Timestamp,
    /// The approval's `maxUses`: the grant ends when they are spent.
    pub max_uses: Option<u32>,
}

impl Grant {
    /// True when the Role, bound to its subject, lets this review through (RBAC's
    /// matching: group, resource with subresource, verb, and name when it names any).
    pub fn allows(&self, req: &AccessRequest) -> bool {
        let member = match &self.subject {
            Subject::User(u) => req.user.username == **u,
            Subject::Group(g) => req.user.groups.iter().any(|m| *m == **g),
        };
        let resource = if req.sub_resource.is_empty() {
            req.resource.resource.clone()
        } else {
            format!("{}/{}", req.resource.resource, req.sub_resource)
        };
        member
            && req.non_resource_path.is_none()
            && req.namespace == self.namespace
            && self.rules.iter().any(|r| {
                r.api_groups.contains(&req.resource.group)
                    && r.resources.contains(&resource)
                    && r.verbs.contains(&req.verb.as_str())
                    && (r.resource_names.is_empty() || r.resource_names.contains(&req.name))
            })
    }
}

/// Why a granting approval gets no Role. Each is said in a log line and a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoGrant {
    #[error(
        "it has maxUses and names reads ({0}), which no admission webhook sees, so nothing would count them; ask for the reads in an approval without maxUses"
    )]
    MaxUsesReads(String),
    #[error("it names a cluster-scoped object, which a Role cannot hold")]
    ClusterScoped,
    #[error(
        "it is in namespace {0}, whose requests never reach jitgate's webhooks (the cluster's own, and jitgate's), so no use would be counted and no write checked; the webhook way never grants there either"
    )]
    UngatedNamespace(String),
    #[error(
        "a granting policy gates only some types of its objects (objectTypes), and a Role would allow every type, whose writes the admission gate is not sent"
    )]
    ObjectTypes,
    #[error(
        "it names no apiGroup and a granting policy covers every group, so a Role would grant the resource in every group"
    )]
    AnyApiGroup,
    #[error("a policy that gates it exempts {0}, and jitgate cannot know who is in a group")]
    Exemptions(&'static str),
    #[error("it is a break-glass entry, whose use depends on the requester's groups")]
    BreakGlass,
    #[error(
        "it is for a system: user or group (service accounts, nodes, the anonymous user), to whom the webhook way never grants"
    )]
    SystemSubject,
    #[error(
        "it is for a group its approver {0} may be in, and without them it does not have the approvers it needs"
    )]
    ApproverInGroup(String),
    #[error(
        "nothing it names is granted now (not approved, expired, past maxDuration, or not under policies that all grant)"
    )]
    NothingGranted,
}

/// The name of a grant's Role and RoleBinding: derived from the approval's id alone, so
/// every replica names it the same and none creates two.
pub fn object_name(approval_id: &str) -> String {
    let digest = crate::digest::sha256_hex(approval_id.as_bytes());
    format!("jitgate-grant-{}", &digest[..20])
}

/// The label value naming a grant: the digest part of [`object_name`].
pub fn grant_label(approval_id: &str) -> String {
    object_name(approval_id)
        .trim_start_matches("jitgate-grant-")
        .to_string()
}

/// An approval's subject as RBAC names a RoleBinding's subject: its kind (`User` or
/// `Group`) and name.
pub fn subject_kind(s: &Subject) -> (&'static str, &str) {
    match s {
        Subject::User(u) => ("User", u),
        Subject::Group(g) => ("Group", g),
    }
}

/// True when an object carries the labels the reconciler lists grant objects by.
pub fn is_grant_object(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    let label = |k: &str| meta.labels.as_ref().and_then(|l| l.get(k)).map(String::as_str);
    label(MANAGED_BY.0) == Some(MANAGED_BY.1) && label(GRANT_LABEL).is_some()
}

/// True when an object's labels and annotations say it is jitgate's grant object for the
/// approval `approval_id` (what the reconciler lists by, and the approval it names).
pub fn is_grant_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    approval_id: &str,
) -> bool {
    let label = |k: &str| meta.labels.as_ref().and_then(|l| l.get(k)).map(String::as_str);
    let annotation = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(APPROVAL_ANNOTATION))
        .map(String::as_str);
    label(MANAGED_BY.0) == Some(MANAGED_BY.1)
        && label(GRANT_LABEL) == Some(grant_label(approval_id).as_str())
        && annotation == Some(approval_id)
}

/// True when some granting policy gates what the approval names: the approval is one the
/// RBAC way concerns itself with, granted or refused.
pub fn concerns(a: &Approval, policies: &PolicySet) -> bool {
    policies.gating_scope(&a.scope()).iter().any(|p| p.grant)
}

/// The RBAC verbs by which the RBAC way grants `op` on `sub_resource`, for an approval
/// that names an object (`named`) or not. Narrower than
/// [`crate::authorization::verbs_of`] where a Role cannot be exact (see the module).
pub fn role_verbs_of(op: Operation, sub_resource: &str, named: bool) -> &'static [&'static str] {
    let connects = CONNECT_SUBRESOURCES.contains(&sub_resource);
    match op {
        // Any verb on a connect subresource is a CONNECT, which an approval must name.
        _ if connects && op != Operation::Connect => &[],
        Operation::Connect if connects => &["get", "create"],
        Operation::Connect => &[],
        Operation::Create if named && sub_resource.is_empty() => &[],
        Operation::Create => &["create"],
        Operation::Update => &["update", "patch"],
        Operation::Delete => &["delete"],
        Operation::Get => &["get"],
        Operation::List => &["list"],
        Operation::Watch => &["watch"],
        Operation::Impersonate => &["impersonate"],
    }
}

/// What the approval grants as a Role, at `now`, under `policies`; `signers` are the
/// trusted signers its signatures were checked against; `jitgate_namespace` is jitgate's
/// own (where its approvals and its count of uses live).
pub fn grant_of(
    a: &Arc<Approval>,
    policies: &PolicySet,
    signers: &Arc<Signers>,
    jitgate_namespace: &str,
    now: Timestamp,
) -> Result<Grant, NoGrant> {
    let ops = a.operations.unwrap_or(OpSet::ALL);
    if a.max_uses.is_some() {
        let reads: Vec<&str> = ops
            .iter()
            .filter(|op| op.is_read())
            .map(|op| op.as_str())
            .collect();
        if !reads.is_empty() {
            return Err(NoGrant::MaxUsesReads(reads.join(", ")));
        }
    }
    if a.namespace.is_empty() {
        return Err(NoGrant::ClusterScoped);
    }
    if policy::never_gated(&a.namespace, jitgate_namespace) {
        return Err(NoGrant::UngatedNamespace(a.namespace.to_string()));
    }
    if a.break_glass {
        return Err(NoGrant::BreakGlass);
    }
    if a.subject.is_system() {
        return Err(NoGrant::SystemSubject);
    }
    let api_groups: Vec<String> = match &a.api_group {
        Some(g) => vec![g.to_string()],
        None => {
            let mut groups = BTreeSet::new();
            for rule in policies
                .iter()
                .filter(|p| p.grant)
                .flat_map(|p| &p.rules)
                .filter(|r| {
                    r.resources
                        .iter()
                        .any(|p| p.matches(&a.resource, &a.sub_resource))
                })
            {
                if rule.api_groups.iter().any(|g| g == "*") {
                    return Err(NoGrant::AnyApiGroup);
                }
                groups.extend(rule.api_groups.iter().cloned());
            }
            groups.into_iter().collect()
        }
    };
    let group_subject = matches!(a.subject, Subject::Group(_));
    // Exemptions, over every policy that gates any of it.
    for group in &api_groups {
        for op in ops.iter() {
            let target = Target {
                api_group: group,
                resource: &a.resource,
                sub_resource: &a.sub_resource,
                namespace: &a.namespace,
                operation: op,
                object: None,
            };
            for p in policies.gating(&target) {
                if p.grant && p.types_objects(&target) {
                    return Err(NoGrant::ObjectTypes);
                }
                if !p.exempt_groups.is_empty() {
                    return Err(NoGrant::Exemptions("groups"));
                }
                if group_subject && !p.exempt_users.is_empty() {
                    return Err(NoGrant::Exemptions("users"));
                }
            }
        }
    }
    // Who `decide` is asked about: the user; for a group, someone in it who approved
    // nothing, and each approver as if they were in it.
    let (probes, groups): (Vec<String>, Vec<String>) = match &a.subject {
        Subject::User(u) => (vec![u.to_string()], Vec::new()),
        Subject::Group(g) => {
            let mut who = vec![format!("jitgate:grant-probe:{g}")];
            who.extend(a.approved_by.iter().map(|n| n.to_string()));
            who.extend(a.rare.checked.iter().filter_map(|c| match c {
                Checked::Trusted(t) => Some(t.signer.user.clone()),
                _ => None,
            }));
            (who, vec![g.to_string()])
        }
    };
    let alone = Snapshot::signed(vec![a.clone()], 0, ConfigMapRef::default(), signers.clone(), now);
    let inputs = Inputs {
        policies,
        approvals: Approvals::Loaded(&alone),
        now,
    };
    let name = a.name.as_deref().unwrap_or("");
    let granted = |user: &str, group: &str, verb: &str| {
        let req = AccessRequest {
            user: UserInfo {
                username: user.to_string(),
                groups: groups.clone(),
            },
            verb: verb.to_string(),
            resource: GroupVersionResource {
                group: group.to_string(),
                version: "v1".into(),
                resource: a.resource.to_string(),
            },
            sub_resource: a.sub_resource.to_string(),
            namespace: a.namespace.to_string(),
            name: name.to_string(),
            non_resource_path: None,
        };
        decide(&req, &inputs).outcome() == Outcome::Grant
    };
    let mut rules: Vec<Rule> = Vec::new();
    for group in &api_groups {
        let mut verbs: Vec<&'static str> = Vec::new();
        for op in ops.iter() {
            for &verb in role_verbs_of(op, &a.sub_resource, a.name.is_some()) {
                if verbs.contains(&verb) {
                    continue;
                }
                if !granted(&probes[0], group, verb) {
                    continue;
                }
                if let Some(approver) = probes[1..].iter().find(|p| !granted(p, group, verb)) {
                    return Err(NoGrant::ApproverInGroup(approver.clone()));
                }
                verbs.push(verb);
            }
        }
        if verbs.is_empty() {
            continue;
        }
        verbs.sort_unstable();
        rules.push(Rule {
            api_groups: vec![group.clone()],
            resources: vec![a.resource_string()],
            resource_names: a.name.iter().map(|n| n.to_string()).collect(),
            verbs,
        });
    }
    if rules.is_empty() {
        return Err(NoGrant::NothingGranted);
    }
    Ok(Grant {
        approval: a.id.to_string(),
        name: object_name(&a.id),
        namespace: a.namespace.to_string(),
        subject: a.subject.clone(),
        rules,
        expires_at: a.expires_at,
        max_uses: a.max_uses.map(|n| n.get()),
    })
}

/// Every approval of the snapshot that granting policies concern, each with its Role or
/// why it has none.
pub fn grants_of(
    snapshot: &Snapshot,
    policies: &PolicySet,
    now: Timestamp,
) -> Vec<(Arc<Approval>, Result<Grant, NoGrant>)> {
    snapshot
        .approvals
        .iter()
        .filter(|a| concerns(a, policies))
        .map(|a| {
            let grant = grant_of(a, policies, &snapshot.signers, &snapshot.home.namespace, now);
            (a.clone(), grant)
        })
        .collect()
}

#[cfg(test)]
mod tests;
