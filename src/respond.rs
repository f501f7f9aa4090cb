//! Answers on the wire: a decision, or a refusal by the server, turned into the response
//! of the review it answers, built from the request so that the uid cannot be lost. The
//! wire modules ([`crate::admission`], [`crate::authorization`]) only read requests and
//! hold the response types; the words come from [`crate::explain`] and
//! [`crate::refusal`]. The server and `jitgate check` answer through here, and only here.

use crate::admission::{AdmissionRequest, AdmissionResponse, Status};
use crate::authorization::{AccessRequest, AccessStatus};
use crate::decision::{Decision, Outcome};
use crate::explain;
use crate::refusal::Refusal;
use crate::request::Request;
use std::collections::BTreeMap;

/// The response to a decided admission request: an allow (with warnings for a
/// break-glass use or a policy in `warn` mode), or a denial that explains itself.
pub fn admission(req: &AdmissionRequest<'_>, d: &Decision) -> AdmissionResponse {
    match d.outcome() {
        Outcome::Deny => AdmissionResponse::deny(&req.uid, explain::denial_message(req.into(), d)),
        // Grant and no opinion are the authorization webhook's alone: admission never
        // decides them, and would allow.
        Outcome::Allow | Outcome::Warn | Outcome::DryRun | Outcome::Grant | Outcome::NoOpinion => {
            AdmissionResponse {
                warnings: explain::warnings(req.into(), d),
                ..AdmissionResponse::allow(&req.uid)
            }
        }
    }
}

/// The response to an admission review the server read but could not stand behind.
pub fn admission_refused(req: &AdmissionRequest<'_>, refusal: &Refusal) -> AdmissionResponse {
    AdmissionResponse {
        uid: req.uid.clone(),
        allowed: false,
        status: Some(status(refusal, Some(req))),
        warnings: Vec::new(),
        audit_annotations: Default::default(),
    }
}

/// The answer to a decided authorization review: a denial that explains itself; a grant
/// (a live approval under policies that grant covers it); no opinion with the reason a
/// person reads after RBAC's own refusal (a write that no approval grants); or plain no
/// opinion (an ungated read, one approved under policies that only take power away, and
/// one under a policy in rollout, which lets it through).
pub fn access(req: &AccessRequest, d: &Decision) -> AccessStatus {
    match d.outcome() {
        Outcome::Deny => AccessStatus::deny(explain::denial_message(Request::Access(req), d)),
        Outcome::Grant => AccessStatus::allow(explain::grant_reason(d)),
        Outcome::NoOpinion => {
            AccessStatus::no_opinion_because(explain::denial_message(Request::Access(req), d))
        }
        Outcome::Allow | Outcome::Warn | Outcome::DryRun => AccessStatus::no_opinion(),
    }
}

/// The answer to an authorization review the server read but could not stand behind: a
/// denial, so that a read is never let through on a decision that was not recorded.
pub fn access_refused(req: &AccessRequest, refusal: &Refusal) -> AccessStatus {
    AccessStatus::deny(refusal.about(Request::Access(req)))
}

/// A refusal as a Kubernetes `Status`. Refusing a review that was read (`about`), the
/// message names the operation and the code, and tells the engineer to retry.
pub fn status(refusal: &Refusal, about: Option<&AdmissionRequest<'_>>) -> Status {
    let message = match about {
        None => refusal.to_string(),
        Some(req) => refusal.about(req.into()),
    };
    Status::failure(refusal.http_status(), message)
}

/// The audit annotations of an answer, which the API server writes into its own audit
/// event for the request (as `<webhook name>/<key>`: `gate.jitgate.dev/decision`), so an
/// auditor can go from a kube-apiserver audit event to jitgate's record and back. Keys are
/// qualified-name parts (`[A-Za-z0-9][-A-Za-z0-9_.]*`, at most 63 bytes); values are short.
/// `record` is the record's place in the hash chain (`seq=…,hash=…`), when it was written.
pub fn audit_annotations(
    decision: &str,
    reason: &str,
    policy: &str,
    approval: Option<&str>,
    record: Option<&crate::audit::Sealed>,
) -> BTreeMap<&'static str, String> {
    let mut a = BTreeMap::new();
    a.insert("decision", decision.to_string());
    a.insert("reason", reason.to_string());
    if !policy.is_empty() {
        a.insert("policy", policy.to_string());
    }
    if let Some(approval) = approval {
        a.insert("approval", approval.to_string());
    }
    if let Some(record) = record {
        a.insert("record", record.to_string());
    }
    a
}
