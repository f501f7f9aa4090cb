//! What a record says: one JSON line per answer ([`DecisionRecord`]), per change to the
//! approval ledger ([`ApprovalRecord`]) and per change to the trusted signers
//! ([`SignerRecord`]), with the same keys every time. Built from the request's coordinates
//! and the answer only: `object`, `oldObject` and `options` never reach a record. The
//! writer (`super`) seals and writes them.

use crate::admission::AdmissionRequest;
use crate::approvals::Approval;
use crate::decision::{Decision, Reason, Request};
use crate::refusal::Refusal;
use jiff::Timestamp;
use serde::Serialize;
use std::sync::Arc;

/// What was answered.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A decision, answered as decided.
    Decided {
        /// `allow`, `deny`, `warn` or `dryrun`: only `deny` refuses (with `status.code` 403).
        outcome: &'static str,
        reason: &'static str,
        approval: Option<Arc<Approval>>,
        /// The entry an edit of the ledger was refused for.
        refused_entry: Option<String>,
    },
    /// A refusal by the server.
    Refused(Refusal),
}

/// Which review an answer was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Review {
    /// An AdmissionReview on `/validate`: its records are `event: "decision"`.
    Admission,
    /// A SubjectAccessReview on `/authorize`: its records are `event: "authorization"`.
    Authorization,
}

impl Review {
    pub fn event(self) -> &'static str {
        match self {
            Review::Admission => "decision",
            Review::Authorization => "authorization",
        }
    }

    /// The review a request came in.
    pub fn of(req: Request<'_, '_>) -> Self {
        match req {
            Request::Admission(_) => Review::Admission,
            Request::Access(_) => Review::Authorization,
        }
    }
}

/// The request an answer was for, as far as it could be read.
#[derive(Debug, Clone)]
pub struct Coordinates {
    pub user: String,
    pub groups: Vec<String>,
    /// The admission operation (`UPDATE`) or the verb of an authorization review (`get`).
    pub operation: String,
    pub api_group: String,
    pub resource: String,
    pub sub_resource: String,
    pub namespace: String,
    pub name: String,
    pub dry_run: bool,
}

impl Coordinates {
    pub fn of<'r, 'a: 'r>(req: impl Into<Request<'r, 'a>>) -> Self {
        let req = req.into();
        Coordinates {
            user: req.user().to_string(),
            groups: req.groups().to_vec(),
            operation: req.verb().to_string(),
            api_group: req.api_group().to_string(),
            resource: req.resource().to_string(),
            sub_resource: req.sub_resource().to_string(),
            namespace: req.namespace().to_string(),
            name: req.name().to_string(),
            dry_run: match req {
                Request::Admission(r) => r.dry_run,
                Request::Access(_) => false,
            },
        }
    }
}

/// The record of one answer, kept as values until the writer seals it.
#[derive(Debug, Clone)]
pub struct DecisionRecord {
    pub review: Review,
    pub timestamp: Timestamp,
    /// The AdmissionReview's uid; for an authorization review, which has none, the id
    /// jitgate gave the read.
    pub uid: Option<String>,
    pub answer: Answer,
    /// The policies the answer concerns, comma-separated; empty for none.
    pub policy: String,
    /// `None` for a body that could not be read as an AdmissionReview.
    pub request: Option<Coordinates>,
    pub latency_us: u64,
}

impl DecisionRecord {
    /// What a record holds besides its variable-length fields: the struct, its job while it
    /// waits, the timestamp and keys it is written with.
    const FIXED: usize = 512;

    /// About how many bytes the record holds while it waits to be written: the lengths of
    /// its variable-length fields, at whatever length the sender chose them (`uid`, the
    /// user, each group, the name…), plus a constant. Cheap: no field is read, only
    /// measured. (An approval it names is shared with the ledger, not held by the record.)
    ///
    /// Every field is named here, so that a field added to the record is counted or
    /// passed over on purpose.
    pub fn size(&self) -> usize {
        let DecisionRecord {
            review: _,
            timestamp: _,
            uid,
            answer,
            policy,
            request,
            latency_us: _,
        } = self;
        let answer = match answer {
            Answer::Decided {
                outcome: _,
                reason: _,
                approval: _,
                refused_entry,
            } => refused_entry.as_ref().map_or(0, String::len),
            Answer::Refused(_) => 0,
        };
        let request = request.as_ref().map_or(0, |c| {
            let Coordinates {
                user,
                groups,
                operation,
                api_group,
                resource,
                sub_resource,
                namespace,
                name,
                dry_run: _,
            } = c;
            let groups: usize = groups
                .iter()
                .map(|g| g.len() + std::mem::size_of::<String>())
                .sum();
            [
                user,
                operation,
                api_group,
                resource,
                sub_resource,
                namespace,
                name,
            ]
            .iter()
            .map(|s| s.len())
            .sum::<usize>()
                + groups
        });
        Self::FIXED + uid.as_ref().map_or(0, String::len) + policy.len() + answer + request
    }
}

/// The keys of a decision record, as written.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RecordLine<'a> {
    timestamp: String,
    event: &'static str,
    uid: Option<&'a str>,
    allowed: bool,
    decision: &'static str,
    reason: &'static str,
    /// The HTTP status of a refusal answered before a review was read, the `status.code`
    /// of a denial (403 for every denied read, as the API server answers it), or 200.
    code: u16,
    policy: Option<&'a str>,
    user: Option<&'a str>,
    groups: Option<&'a [String]>,
    operation: Option<&'a str>,
    api_group: Option<&'a str>,
    resource: Option<&'a str>,
    sub_resource: Option<&'a str>,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    dry_run: Option<bool>,
    approval: Option<&'a str>,
    approved_by: Option<&'a [crate::approvals::Name]>,
    expires_at: Option<String>,
    latency_us: u64,
}

impl DecisionRecord {
    /// The record of a decided request, answered as decided. `uid` is the admission
    /// request's, or the id given to a read.
    pub fn decided<'r, 'a: 'r>(
        req: impl Into<Request<'r, 'a>>,
        uid: Option<String>,
        d: &Decision,
        latency_us: u64,
    ) -> Self {
        let req = req.into();
        DecisionRecord {
            review: Review::of(req),
            timestamp: d.at,
            uid,
            answer: Answer::Decided {
                outcome: d.outcome().as_str(),
                reason: d.code().as_str(),
                approval: d.approval().cloned(),
                refused_entry: match &d.reason {
                    Reason::LedgerRefused { violation } => Some(violation.id.clone()),
                    _ => None,
                },
            },
            policy: d.policies().join(","),
            request: Some(Coordinates::of(req)),
            latency_us,
        }
    }

    /// The record of a refusal: of a body that could not be read (`request: None`), or of
    /// a review the server could not stand behind.
    pub fn refused(
        review: Review,
        uid: Option<String>,
        request: Option<Coordinates>,
        refusal: Refusal,
        now: Timestamp,
        latency_us: u64,
    ) -> Self {
        DecisionRecord {
            review,
            timestamp: now,
            uid,
            answer: Answer::Refused(refusal),
            policy: String::new(),
            request,
            latency_us,
        }
    }

    /// The answer became `refusal` (a refusal stays the refusal it was).
    pub fn refuse(&mut self, refusal: Refusal) {
        if matches!(self.answer, Answer::Decided { .. }) {
            self.answer = Answer::Refused(refusal);
        }
    }

    /// The labels it is counted under in metrics: decision, reason, policy.
    pub fn labels(&self) -> (&'static str, &'static str, &str) {
        match &self.answer {
            Answer::Decided { outcome, reason, .. } => (outcome, reason, &self.policy),
            Answer::Refused(r) => ("deny", r.code(), &self.policy),
        }
    }

    /// The record as one JSON line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let (allowed, decision, reason, code, approval, refused_entry) = match &self.answer {
            Answer::Decided {
                outcome,
                reason,
                approval,
                refused_entry,
            } => {
                let allowed = *outcome != "deny";
                let code = if allowed { 200 } else { 403 };
                (
                    allowed,
                    *outcome,
                    *reason,
                    code,
                    approval.as_deref(),
                    refused_entry.as_deref(),
                )
            }
            Answer::Refused(r) => {
                // A read review that was refused is answered as a denial: 403 to the client.
                let code = match (self.review, &self.request) {
                    (Review::Authorization, Some(_)) => 403,
                    _ => r.http_status().as_u16(),
                };
                (false, "deny", r.code(), code, None, None)
            }
        };
        let c = self.request.as_ref();
        json_line(&RecordLine {
            timestamp: self.timestamp.to_string(),
            event: self.review.event(),
            uid: self.uid.as_deref(),
            allowed,
            decision,
            reason,
            code,
            policy: (!self.policy.is_empty()).then_some(self.policy.as_str()),
            user: c.map(|c| c.user.as_str()),
            groups: c.map(|c| c.groups.as_slice()),
            operation: c.map(|c| c.operation.as_str()),
            api_group: c.map(|c| c.api_group.as_str()),
            resource: c.map(|c| c.resource.as_str()),
            sub_resource: c.map(|c| c.sub_resource.as_str()),
            namespace: c.map(|c| c.namespace.as_str()),
            name: c.map(|c| c.name.as_str()),
            dry_run: c.map(|c| c.dry_run),
            approval: approval.map(|a| a.id.as_str()).or(refused_entry),
            approved_by: approval.map(|a| &*a.approved_by),
            expires_at: approval.map(|a| a.expires_at.to_string()),
            latency_us: self.latency_us,
        })
    }
}

/// The record of one change to the approval ledger: who changed which entry, how, for
/// whom, over what scope, and how many approvers it has now.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRecord<'a> {
    pub timestamp: String,
    pub event: &'static str,
    /// The uid of the ConfigMap edit that made the change.
    pub uid: &'a str,
    /// `<configmap>/<key>`.
    pub key: &'a str,
    pub action: &'static str,
    pub editor: &'a str,
    pub editor_groups: &'a [String],
    /// `user:<name>` or `group:<name>`; null when the entry never parsed.
    pub requester: Option<String>,
    pub scope: Option<ScopeRecord<'a>>,
    pub reason: Option<&'a str>,
    pub expires_at: Option<String>,
    pub approved_by: Option<&'a [crate::approvals::Name]>,
    /// The trusted signers whose signatures count, after the change.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub signed_by: &'a [String],
    /// Distinct approvers other than the requester, after the change.
    pub approvers: u32,
    /// Approvers its policies require.
    pub required: Option<u32>,
    pub dry_run: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeRecord<'a> {
    pub api_group: Option<&'a str>,
    pub resource: String,
    pub namespace: &'a str,
    pub name: Option<&'a str>,
    pub operations: Option<Vec<&'static str>>,
}

impl<'a> ApprovalRecord<'a> {
    pub fn new(req: &'a AdmissionRequest<'_>, change: &'a crate::ledger::EntryEdit, now: Timestamp) -> Self {
        let entry = change.entry.as_ref();
        ApprovalRecord {
            timestamp: now.to_string(),
            event: "approval",
            uid: &req.uid,
            key: &change.id,
            action: change.action.as_str(),
            editor: &req.user_info.username,
            editor_groups: &req.user_info.groups,
            requester: entry.map(|a| a.subject.to_string()),
            scope: entry.map(|a| ScopeRecord {
                api_group: a.api_group.as_deref(),
                resource: a.resource_string(),
                namespace: &a.namespace,
                name: a.name.as_deref(),
                operations: a.operations.map(|ops| ops.iter().map(|o| o.as_str()).collect()),
            }),
            reason: entry.map(|a| a.reason.as_str()),
            expires_at: entry.map(|a| a.expires_at.to_string()),
            approved_by: entry.map(|a| &*a.approved_by),
            signed_by: &change.signers,
            approvers: change.approvers,
            required: change.required,
            dry_run: req.dry_run,
        }
    }

    pub fn to_line(&self) -> Vec<u8> {
        json_line(self)
    }
}

/// The record of one change to the trusted signers: who changed which signer, how, and
/// the key and groups it has now.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignerRecord<'a> {
    pub timestamp: String,
    pub event: &'static str,
    /// The uid of the ConfigMap edit that made the change.
    pub uid: &'a str,
    pub configmap: &'a str,
    pub signer: &'a str,
    pub action: &'static str,
    pub editor: &'a str,
    pub editor_groups: &'a [String],
    pub fingerprint: &'a str,
    pub groups: &'a [String],
    pub not_after: Option<&'a str>,
    pub dry_run: bool,
}

impl<'a> SignerRecord<'a> {
    pub fn new(req: &'a AdmissionRequest<'_>, change: &'a crate::ledger::SignerEdit, now: Timestamp) -> Self {
        SignerRecord {
            timestamp: now.to_string(),
            event: "signer",
            uid: &req.uid,
            configmap: &req.name,
            signer: &change.name,
            action: change.action,
            editor: &req.user_info.username,
            editor_groups: &req.user_info.groups,
            fingerprint: &change.fingerprint,
            groups: &change.groups,
            not_after: change.not_after.as_deref(),
            dry_run: req.dry_run,
        }
    }

    pub fn to_line(&self) -> Vec<u8> {
        json_line(self)
    }
}

/// The record of a grant's objects created or removed (`serve --grants rbac`): which
/// approval, which Role and RoleBinding, for whom, until when, and why removed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantRecord<'a> {
    pub timestamp: String,
    pub event: &'static str,
    /// `created`, `removed`, or `found` (a RoleBinding kept as a grant's that stood with
    /// no record of its creation, its standing recorded then).
    pub action: &'static str,
    /// The approval's id (`<configmap>/<key>`), as the objects' annotation says.
    pub approval: Option<&'a str>,
    pub namespace: &'a str,
    /// The Role's and RoleBinding's name.
    pub name: &'a str,
    /// `Role`, `RoleBinding`, or both (`Role,RoleBinding`).
    pub objects: &'a str,
    /// `user:<name>` or `group:<name>`, when created; when a RoleBinding is found, or
    /// removed by a pass, each subject it names so (a ServiceAccount as the user it is,
    /// `user:system:serviceaccount:<namespace>:<name>`), sorted and joined by commas, at
    /// most 64 KiB (cut, and ended with `…`, past it: the API server bounds no name).
    pub subject: Option<String>,
    pub expires_at: Option<String>,
    /// Why removed: `expired`, `revoked`, `not granted`, `uses spent`, `expiry shortened`,
    /// the Role not as jitgate makes it, or the creation's record not written in time;
    /// why found: not marked as recorded.
    pub why: Option<&'a str>,
    /// The replica that wrote the objects.
    pub replica: &'a str,
    /// What a RoleBinding found standing, or removed by a pass, binds, as it says
    /// (`Role/<name>`, `ClusterRole/<name>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binds: Option<String>,
}

impl GrantRecord<'_> {
    pub fn to_line(&self) -> Vec<u8> {
        json_line(self)
    }
}

/// A record as one JSON line, newline included.
fn json_line(record: &impl Serialize) -> Vec<u8> {
    let mut line = serde_json::to_vec(record).unwrap_or_else(|_| b"{}".to_vec());
    line.push(b'\n');
    line
}
