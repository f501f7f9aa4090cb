//! One pipeline for both reviews: read, decide, spend a use, record, answer, in that
//! order, so that the answer given is the one recorded. `/validate` (an AdmissionReview)
//! and `/authorize` (a SubjectAccessReview) differ only in their wire format, which
//! [`Wire`] says; the steps are written once, here.
//!
//! A body that is not a review never reaches the decision: it is refused with a 4xx whose
//! body is a Kubernetes `Status`, and recorded. A decided review is answered only once
//! its record is written; if the record cannot be written, or not before the API server's
//! deadline, the answer is the refusal the audit writer recorded instead. The response,
//! its audit annotations, the metrics and the Events are all read from that [`Answer`].

use super::AppState;
use super::bodies;
use super::transport::{self, json};
use crate::admission::{self, AdmissionRequest, AdmissionResponse};
use crate::approvals::View;
use crate::audit::{ApprovalRecord, Coordinates, DecisionRecord, Review, Sealed, SignerRecord};
use crate::authorization::{self, AccessRequest, AccessStatus};
use crate::decision::{self, Approvals, Decision, Inputs, Reason};
use crate::refusal::Refusal;
use crate::request::Request as Asked;
use crate::respond;
use crate::usage::UsageError;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use jiff::Timestamp;
use std::time::{Duration, Instant};

/// How long the record of a refused body may take before the refusal is answered anyway.
const REFUSAL_RECORD_WAIT: Duration = Duration::from_secs(5);

/// What the two reviews do differently.
pub(super) trait Wire {
    const REVIEW: Review;
    /// The path it is served on, for a wrong method's refusal.
    const PATH: &'static str;
    /// The request as decoded; it may borrow the body.
    type Request<'b>;
    type Response;

    /// Reads a body as this review, or says why not (with the request's uid, when one
    /// could still be read, for the record).
    fn decode(body: &[u8]) -> Result<Self::Request<'_>, (Refusal, Option<String>)>;
    /// The id its record carries, and a use of a `maxUses` approval is counted under.
    fn id(req: &Self::Request<'_>) -> String;
    /// True for a question rather than an act (a dry run, `kubectl auth can-i`): it is
    /// answered the same, spends no use and tells nobody.
    fn asks_only(req: &Self::Request<'_>) -> bool;
    /// True for a dry run: one the API server may still act on (a token request) or
    /// answer with the object, while it spends no use.
    fn dry_run(_req: &Self::Request<'_>) -> bool {
        false
    }
    /// The request as the decision sees it.
    fn asked<'r, 'b: 'r>(req: &'r Self::Request<'b>) -> Asked<'r, 'b>;
    fn respond(req: &Self::Request<'_>, d: &Decision) -> Self::Response;
    fn refused(req: &Self::Request<'_>, refusal: &Refusal) -> Self::Response;
    /// Records written in the same batch as the decision's: what an accepted edit of the
    /// approvals or the signers changed.
    fn follow_ups(_req: &Self::Request<'_>, _d: &Decision) -> Vec<Vec<u8>> {
        Vec::new()
    }
    /// The HTTP answer for `answer`, as recorded (`policy`: the policies it concerns,
    /// comma-separated; `sealed`: where its record landed).
    fn reply(response: Self::Response, answer: &Answer, policy: &str, sealed: Option<&Sealed>) -> Response;
}

/// What a review was answered, as it was recorded.
pub(super) enum Answer {
    /// As decided.
    Decided(Decision),
    /// A refusal by the server that replaced the decision: its use could not be spent, or
    /// its record could not be written in time. The decision is kept for its policies.
    Refused { refusal: Refusal, decision: Decision },
}

impl Answer {
    /// The answer once its record could not be written as it stands: a decision becomes
    /// the writer's refusal; a refusal stays the refusal it was.
    fn unrecorded(self, by: Refusal) -> Answer {
        match self {
            Answer::Decided(decision) => Answer::Refused {
                refusal: by,
                decision,
            },
            refused => refused,
        }
    }

    fn decision(&self) -> &Decision {
        match self {
            Answer::Decided(d) | Answer::Refused { decision: d, .. } => d,
        }
    }

    /// `allow`, `deny`, `warn` or `dryrun`, as counted and annotated.
    pub(super) fn outcome(&self) -> &'static str {
        match self {
            Answer::Decided(d) => d.outcome().as_str(),
            Answer::Refused { .. } => "deny",
        }
    }

    /// The decision's code, or the refusal's.
    pub(super) fn reason(&self) -> &'static str {
        match self {
            Answer::Decided(d) => d.code().as_str(),
            Answer::Refused { refusal, .. } => refusal.code(),
        }
    }

    /// The policies it concerns, comma-separated.
    pub(super) fn policy(&self) -> String {
        self.decision().policies().join(",")
    }

    /// The approval that granted, or the closest one that did not; none once refused.
    pub(super) fn approval(&self) -> Option<&str> {
        match self {
            Answer::Decided(d) => d.approval().map(|a| a.id.as_str()),
            Answer::Refused { .. } => None,
        }
    }
}

/// Answers one review of wire format `W`.
pub(super) async fn handle<W: Wire>(state: &AppState, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    if let Err(refusal) = transport::check_caller(&parts) {
        return refuse_body(state, W::REVIEW, refusal, None, started).await;
    }
    let body = match bodies::read_review(&parts, body, &state.bodies).await {
        Ok(body) => body,
        Err(refusal) => return refuse_body(state, W::REVIEW, refusal, None, started).await,
    };
    let req = match W::decode(&body.bytes) {
        Ok(req) => req,
        Err((refusal, uid)) => return refuse_body(state, W::REVIEW, refusal, uid, started).await,
    };
    let id = W::id(&req);
    let asked = W::asked(&req);
    let deadline = transport::deadline(parts.uri.query(), started);
    let asks_only = W::asks_only(&req);
    let asking = Asking {
        only: asks_only,
        dry_run: W::dry_run(&req),
    };
    let answer = spend_use(state, &id, asking, decide(state, asked), deadline).await;
    let (record, then) = match &answer {
        Answer::Decided(d) => (
            DecisionRecord::decided(asked, Some(id.clone()), d, micros(started)),
            W::follow_ups(&req, d),
        ),
        Answer::Refused { refusal, decision } => {
            let mut record = DecisionRecord::refused(
                W::REVIEW,
                Some(id.clone()),
                Some(Coordinates::of(asked)),
                refusal.clone(),
                decision.at,
                micros(started),
            );
            record.policy = decision.policies().join(",");
            (record, Vec::new())
        }
    };
    let (answer, sealed) = match state.audit.record(record, then, deadline).await {
        Ok(sealed) => (answer, Some(sealed)),
        Err(refusal) => {
            state.metrics.audit_failed();
            if matches!(answer, Answer::Decided(_)) {
                tracing::error!(uid = %id, reason = refusal.code(), "decision record not written as decided; refusing");
            }
            (answer.unrecorded(refusal), None)
        }
    };
    let policy = answer.policy();
    state.metrics.answered(
        W::REVIEW,
        answer.outcome(),
        answer.reason(),
        &policy,
        started.elapsed(),
    );
    let response = match &answer {
        Answer::Decided(d) => {
            if !asks_only {
                state.notices.answered(asked, d, &state.metrics);
            }
            W::respond(&req, d)
        }
        Answer::Refused { refusal, .. } => W::refused(&req, refusal),
    };
    W::reply(response, &answer, &policy, sealed.as_ref())
}

/// Decides a request on the policies and approvals held now.
fn decide(state: &AppState, req: Asked<'_, '_>) -> Decision {
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

/// What a request asks of the count of uses.
#[derive(Clone, Copy)]
struct Asking {
    /// A question (a dry run, `can-i`, a write authorized before admission counts it):
    /// it is checked and spends nothing.
    only: bool,
    /// A dry run, which a `maxUses` approval does not cover.
    dry_run: bool,
}

/// Records the use of a `maxUses` approval by the request `id` before its grant is
/// answered: the one step that may change a decision once made. A question
/// (`asking.only`: a dry run, `can-i`) is checked the same way and spends nothing (the
/// webhook declares `sideEffects: NoneOnDryRun`). A dry run is then refused: the API
/// server may still act on it (a token request) or return the object, so it would be a
/// use nobody counts. A use that cannot be recorded is a refusal.
async fn spend_use(
    state: &AppState,
    id: &str,
    asking: Asking,
    decision: Decision,
    deadline: Instant,
) -> Answer {
    let Some(approval) = decision.use_to_record().cloned() else {
        return Answer::Decided(decision);
    };
    let asks_only = asking.only || asking.dry_run;
    let spending = state.usage.spend(&approval, id, decision.at, asks_only);
    let unavailable = Refusal::UsageUnavailable {
        approval: approval.id.to_string(),
    };
    match tokio::time::timeout_at(deadline.into(), spending).await {
        Ok(Ok(used)) => {
            tracing::info!(uid = %id, approval = %approval.id, ?used, max_uses = approval.max_uses,
                dry_run = asks_only, "use of a maxUses approval");
            if asking.dry_run {
                Answer::Decided(decision.dry_run_not_counted())
            } else {
                Answer::Decided(decision)
            }
        }
        Ok(Err(UsageError::Exhausted(_))) => Answer::Decided(decision.uses_exhausted()),
        Ok(Err(e)) => {
            tracing::error!(uid = %id, approval = %approval.id, error = %e, "use not recorded; refusing");
            Answer::Refused {
                refusal: unavailable,
                decision,
            }
        }
        Err(_) => {
            tracing::error!(uid = %id, approval = %approval.id, "use not recorded before the deadline; refusing");
            Answer::Refused {
                refusal: unavailable,
                decision,
            }
        }
    }
}

/// Answers a request to a review's path with another method than POST, and records it.
pub(super) async fn wrong_method<W: Wire>(state: &AppState) -> Response {
    refuse_body(
        state,
        W::REVIEW,
        Refusal::WrongMethod(W::PATH),
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
    let status = respond::status(&refusal, None);
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

fn micros(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// `/validate`: an AdmissionReview, for a write or a CONNECT.
pub(super) struct Admission;

impl Wire for Admission {
    const REVIEW: Review = Review::Admission;
    const PATH: &'static str = "/validate";
    type Request<'b> = AdmissionRequest<'b>;
    type Response = AdmissionResponse;

    fn decode(body: &[u8]) -> Result<AdmissionRequest<'_>, (Refusal, Option<String>)> {
        admission::decode(body)
            .map_err(|e| (Refusal::BadRequest(e.to_string()), admission::salvage_uid(body)))
    }

    fn id(req: &AdmissionRequest<'_>) -> String {
        req.uid.clone()
    }

    fn asks_only(req: &AdmissionRequest<'_>) -> bool {
        req.dry_run
    }

    fn dry_run(req: &AdmissionRequest<'_>) -> bool {
        req.dry_run
    }

    fn asked<'r, 'b: 'r>(req: &'r AdmissionRequest<'b>) -> Asked<'r, 'b> {
        Asked::Admission(req)
    }

    fn respond(req: &AdmissionRequest<'_>, d: &Decision) -> AdmissionResponse {
        respond::admission(req, d)
    }

    fn refused(req: &AdmissionRequest<'_>, refusal: &Refusal) -> AdmissionResponse {
        respond::admission_refused(req, refusal)
    }

    /// The records of an edit the ledger accepted: one per approval entry, or trusted
    /// signer, that it changes.
    fn follow_ups(req: &AdmissionRequest<'_>, d: &Decision) -> Vec<Vec<u8>> {
        match &d.reason {
            Reason::LedgerAccepted { edits } => edits
                .iter()
                .map(|change| ApprovalRecord::new(req, change, d.at).to_line())
                .collect(),
            Reason::SignersChanged { edits } => edits
                .iter()
                .map(|change| SignerRecord::new(req, change, d.at).to_line())
                .collect(),
            _ => Vec::new(),
        }
    }

    fn reply(
        mut response: AdmissionResponse,
        answer: &Answer,
        policy: &str,
        sealed: Option<&Sealed>,
    ) -> Response {
        response.audit_annotations = respond::audit_annotations(
            answer.outcome(),
            answer.reason(),
            policy,
            answer.approval(),
            sealed,
        );
        json(StatusCode::OK, &response.into_review())
    }
}

/// `/authorize`: a SubjectAccessReview, for a read (or, under a policy that grants, a
/// write or a CONNECT). A review has no uid of its own, so each one is given an id (`read-`
/// and 16 hex digits): its record carries it, and a use of a `maxUses` approval is counted
/// under it. A `kubectl auth can-i` question (version `*`) is answered the same and spends
/// nothing.
pub(super) struct Authorization;

impl Wire for Authorization {
    const REVIEW: Review = Review::Authorization;
    const PATH: &'static str = "/authorize";
    type Request<'b> = AccessRequest;
    type Response = AccessStatus;

    fn decode(body: &[u8]) -> Result<AccessRequest, (Refusal, Option<String>)> {
        authorization::decode(body).map_err(|e| (Refusal::BadRequest(e.to_string()), None))
    }

    fn id(_req: &AccessRequest) -> String {
        read_id()
    }

    /// A `can-i` question, and a write: a granted write spends its use when admission
    /// sees it, so authorizing it only checks that a use is left.
    fn asks_only(req: &AccessRequest) -> bool {
        req.is_probe() || req.operation().is_some_and(|op| !op.is_read())
    }

    fn asked<'r, 'b: 'r>(req: &'r AccessRequest) -> Asked<'r, 'b> {
        Asked::Access(req)
    }

    fn respond(req: &AccessRequest, d: &Decision) -> AccessStatus {
        respond::access(req, d)
    }

    fn refused(req: &AccessRequest, refusal: &Refusal) -> AccessStatus {
        respond::access_refused(req, refusal)
    }

    fn reply(status: AccessStatus, _answer: &Answer, _policy: &str, _sealed: Option<&Sealed>) -> Response {
        json(StatusCode::OK, &status.into_review())
    }
}

/// A fresh id for one read: unique across replicas, which count uses in one ConfigMap.
fn read_id() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    // The system's randomness failing is not a reason to refuse a read; the clock still
    // tells two reads apart.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        let nanos = jiff::Timestamp::now().as_nanosecond();
        bytes = (nanos as u64).to_be_bytes();
    }
    format!("read-{}", crate::digest::hex_of(&bytes))
}
