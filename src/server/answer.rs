//! `/validate`: read, decide, spend a use, record, answer, in that order, so that the
//! answer given is the one recorded. `/authorize` (`super::authorize`) goes the same way
//! through the steps here.
//!
//! A body that is not a review never reaches the decision: it is refused with a 4xx whose
//! body is a Kubernetes `Status`. A decided review is answered only once its record is
//! written; if the record cannot be written, or not before the API server's deadline, the
//! answer is the refusal the audit writer recorded instead.

use super::AppState;
use super::bodies;
use super::transport::{self, json};
use crate::admission::{self, AdmissionRequest, Status};
use crate::approvals::View;
use crate::audit::{ApprovalRecord, Coordinates, DecisionRecord, Review, Sealed, SignerRecord};
use crate::decision::{self, Approvals, Decision, Inputs, Reason, Request as Asked};
use crate::refusal::Refusal;
use crate::usage::UsageError;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use jiff::Timestamp;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the record of a refused body may take before the refusal is answered anyway.
const REFUSAL_RECORD_WAIT: Duration = Duration::from_secs(5);

pub(super) async fn validate(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    if let Err(refusal) = transport::check_caller(&parts) {
        return refuse_body(&state, Review::Admission, refusal, None, started).await;
    }
    let body = match bodies::read_review(&parts, body, &state.bodies).await {
        Ok(body) => body,
        Err(refusal) => return refuse_body(&state, Review::Admission, refusal, None, started).await,
    };
    let bytes = &body.bytes;
    let req = match admission::decode(bytes) {
        Ok(req) => req,
        Err(e) => {
            let uid = admission::salvage_uid(bytes);
            let refusal = Refusal::BadRequest(e.to_string());
            return refuse_body(&state, Review::Admission, refusal, uid, started).await;
        }
    };
    let deadline = transport::deadline(parts.uri.query(), started);
    let (decision, refusal) = spend_use(&state, &req.uid, req.dry_run, decide(&state, &req), deadline).await;
    let (answer, record, then) = match refusal {
        None => {
            let response = admission::respond(&req, &decision);
            let record = DecisionRecord::decided(&req, Some(req.uid.clone()), &decision, micros(started));
            (Ok(response), record, approval_records(&req, &decision))
        }
        Some(refusal) => {
            let record = refused_record(&req, Some(req.uid.clone()), refusal.clone(), &decision, started);
            (Err(refusal), record, Vec::new())
        }
    };
    let (mut response, answered) = answer_when_recorded(
        &state,
        &req.uid,
        answer,
        record,
        then,
        deadline,
        started,
        |refusal| admission::refused(&req, refusal),
    )
    .await;
    if answered.as_decided && !req.dry_run {
        state.notices.answered((&req).into(), &decision, &state.metrics);
    }
    response.audit_annotations = admission::audit_annotations(
        answered.decision,
        answered.reason,
        &answered.policy,
        decision
            .approval()
            .map(|a| a.id.as_str())
            .filter(|_| answered.as_decided),
        answered.sealed.as_ref(),
    );
    json(StatusCode::OK, &response.into_review())
}

/// Decides a request on the policies and approvals held now.
pub(super) fn decide<'r, 'a: 'r>(state: &AppState, req: impl Into<Asked<'r, 'a>>) -> Decision {
    let view = state.approvals.view();
    let policies = state.policies.current();
    let approvals = match &view {
        View::NotLoaded => Approvals::NotLoaded,
        View::Current(snapshot) => Approvals::Loaded(snapshot),
        View::Stale { silent_for, .. } => Approvals::Stale {
            silent_for: *silent_for,
        },
    };
    let inputs = Inputs {
        policies: &policies,
        approvals,
        now: Timestamp::now(),
    };
    decision::decide(req, &inputs)
}

/// The record of a decided request whose grant became a refusal (its use could not be
/// recorded).
pub(super) fn refused_record<'r, 'a: 'r>(
    req: impl Into<Asked<'r, 'a>>,
    uid: Option<String>,
    refusal: Refusal,
    decision: &Decision,
    started: Instant,
) -> DecisionRecord {
    let req = req.into();
    let mut record = DecisionRecord::refused(
        Review::of(req),
        uid,
        Some(Coordinates::of(req)),
        refusal,
        decision.at,
        micros(started),
    );
    record.policy = decision.policies().join(",");
    record
}

/// What was answered, as recorded: the labels it is counted under, and where its record
/// landed (`None` when it could not be written).
pub(super) struct Answered {
    pub decision: &'static str,
    pub reason: &'static str,
    pub policy: String,
    pub sealed: Option<Sealed>,
    /// True when the answer is the decision, not a refusal that replaced it.
    pub as_decided: bool,
}

/// Writes the record, then answers: as decided if the record was written as decided,
/// else with the refusal that was recorded instead (rendered by `refuse`).
#[allow(clippy::too_many_arguments)]
pub(super) async fn answer_when_recorded<R>(
    state: &AppState,
    id: &str,
    answer: Result<R, Refusal>,
    record: DecisionRecord,
    then: Vec<Vec<u8>>,
    deadline: Instant,
    started: Instant,
    refuse: impl FnOnce(&Refusal) -> R,
) -> (R, Answered) {
    let (decision, reason, policy) = record.labels();
    let policy = policy.to_string();
    let review = record.review;
    let written = state.audit.record(record, then, deadline).await;
    let (response, answered) = match (answer, written) {
        (Ok(response), Ok(sealed)) => (
            response,
            Answered {
                decision,
                reason,
                policy,
                sealed: Some(sealed),
                as_decided: true,
            },
        ),
        (Ok(_), Err(refusal)) => {
            state.metrics.audit_failed();
            tracing::error!(uid = %id, reason = refusal.code(), "decision record not written as decided; refusing");
            (
                refuse(&refusal),
                Answered {
                    decision: "deny",
                    reason: refusal.code(),
                    policy,
                    sealed: None,
                    as_decided: false,
                },
            )
        }
        // A refusal stands whether or not its record could be written.
        (Err(refusal), written) => {
            if written.is_err() {
                state.metrics.audit_failed();
            }
            (
                refuse(&refusal),
                Answered {
                    decision: "deny",
                    reason: refusal.code(),
                    policy,
                    sealed: written.ok(),
                    as_decided: false,
                },
            )
        }
    };
    state.metrics.answered(
        review,
        answered.decision,
        answered.reason,
        &answered.policy,
        started.elapsed(),
    );
    (response, answered)
}

/// The records of an edit the ledger accepted: one per approval entry, or trusted signer,
/// that it changes.
fn approval_records(req: &AdmissionRequest<'_>, d: &Decision) -> Vec<Vec<u8>> {
    match &d.reason {
        Reason::LedgerAccepted { changes } => changes
            .iter()
            .map(|change| ApprovalRecord::new(req, change, d.at).to_line())
            .collect(),
        Reason::SignersChanged { changes } => changes
            .iter()
            .map(|change| SignerRecord::new(req, change, d.at).to_line())
            .collect(),
        _ => Vec::new(),
    }
}

/// Records the use of a `maxUses` approval by the request `uid` before its grant is
/// answered: the one step that may change a decision once made. A dry run is checked the
/// same way and spends nothing (the webhook declares `sideEffects: NoneOnDryRun`). A use
/// that cannot be recorded is a refusal, returned beside the decision it refuses.
pub(super) async fn spend_use(
    state: &AppState,
    uid: &str,
    dry_run: bool,
    decision: Decision,
    deadline: Instant,
) -> (Decision, Option<Refusal>) {
    let Some(approval) = decision.use_to_record().cloned() else {
        return (decision, None);
    };
    let spending = state.usage.spend(&approval, uid, decision.at, dry_run);
    let unavailable = || Refusal::UsageUnavailable {
        approval: approval.id.to_string(),
    };
    match tokio::time::timeout_at(deadline.into(), spending).await {
        Ok(Ok(used)) => {
            tracing::info!(uid = %uid, approval = %approval.id, ?used, max_uses = approval.max_uses,
                dry_run, "use of a maxUses approval");
            (decision, None)
        }
        Ok(Err(UsageError::Exhausted(_))) => (decision.uses_exhausted(), None),
        Ok(Err(e)) => {
            tracing::error!(uid = %uid, approval = %approval.id, error = %e, "use not recorded; refusing");
            (decision, Some(unavailable()))
        }
        Err(_) => {
            tracing::error!(uid = %uid, approval = %approval.id, "use not recorded before the deadline; refusing");
            (decision, Some(unavailable()))
        }
    }
}

pub(super) async fn wrong_method(State(state): State<Arc<AppState>>) -> Response {
    refuse_body(
        &state,
        Review::Admission,
        Refusal::WrongMethod("/validate"),
        None,
        Instant::now(),
    )
    .await
}

/// Answers a request whose body cannot be read as a review, and records it.
pub(super) async fn refuse_body(
    state: &AppState,
    review: Review,
    refusal: Refusal,
    uid: Option<String>,
    started: Instant,
) -> Response {
    tracing::warn!(
        status = refusal.http_status().as_u16(),
        uid = uid.as_deref(),
        reason = %refusal,
        review = review.event(),
        "request refused before a review was read"
    );
    let status = Status::of(&refusal, None);
    let record = DecisionRecord::refused(
        review,
        uid,
        None,
        refusal.clone(),
        Timestamp::now(),
        micros(started),
    );
    state
        .metrics
        .answered(review, "deny", refusal.code(), "", started.elapsed());
    let wait = Instant::now() + REFUSAL_RECORD_WAIT;
    if let Err(e) = state.audit.record(record, Vec::new(), wait).await {
        state.metrics.audit_failed();
        tracing::error!(
            reason = e.code(),
            "record of a refused request not written as such"
        );
    }
    transport::status(status)
}

pub(super) fn micros(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}
