//! `/authorize`: the API server's authorization webhook. A SubjectAccessReview goes the
//! way an AdmissionReview goes on `/validate` (read, decide, spend a use, record, answer),
//! through the same decision and the same audit writer; only the wire format differs.
//!
//! A read has no uid of its own, so each one is given an id (`read-` and 16 hex digits):
//! its record carries it, and a use of a `maxUses` approval is counted under it. A
//! `kubectl auth can-i` question (version `*`) is answered the same and spends nothing.

use super::AppState;
use super::answer::{answer_when_recorded, decide, micros, refuse_body, refused_record, spend_use};
use super::bodies;
use super::transport::{self, json};
use crate::audit::{DecisionRecord, Review};
use crate::authorization;
use crate::refusal::Refusal;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use ring::rand::SecureRandom;
use std::sync::Arc;
use std::time::Instant;

pub(super) async fn authorize(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    if let Err(refusal) = transport::check_caller(&parts) {
        return refuse_body(&state, Review::Authorization, refusal, None, started).await;
    }
    let body = match bodies::read_review(&parts, body, &state.bodies).await {
        Ok(body) => body,
        Err(refusal) => return refuse_body(&state, Review::Authorization, refusal, None, started).await,
    };
    let req = match authorization::decode(&body.bytes) {
        Ok(req) => req,
        Err(e) => {
            let refusal = Refusal::BadRequest(e.to_string());
            return refuse_body(&state, Review::Authorization, refusal, None, started).await;
        }
    };
    let id = read_id();
    let deadline = transport::deadline(parts.uri.query(), started);
    let (decision, refusal) = spend_use(&state, &id, req.is_probe(), decide(&state, &req), deadline).await;
    let (answer, record) = match refusal {
        None => {
            let status = authorization::respond(&req, &decision);
            let record = DecisionRecord::decided(&req, Some(id.clone()), &decision, micros(started));
            (Ok(status), record)
        }
        Some(refusal) => {
            let record = refused_record(&req, Some(id.clone()), refusal.clone(), &decision, started);
            (Err(refusal), record)
        }
    };
    let (status, answered) = answer_when_recorded(
        &state,
        &id,
        answer,
        record,
        Vec::new(),
        deadline,
        started,
        |refusal| authorization::refused(&req, refusal),
    )
    .await;
    if answered.as_decided && !req.is_probe() {
        state.notices.answered((&req).into(), &decision, &state.metrics);
    }
    json(StatusCode::OK, &status.into_review())
}

pub(super) async fn wrong_method(State(state): State<Arc<AppState>>) -> Response {
    let refusal = Refusal::WrongMethod("/authorize");
    refuse_body(&state, Review::Authorization, refusal, None, Instant::now()).await
}

/// A fresh id for one read: unique across replicas, which count uses in one ConfigMap.
fn read_id() -> String {
    let mut bytes = [0u8; 8];
    // The system's randomness failing is not a reason to refuse a read; the clock still
    // tells two reads apart.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        let nanos = jiff::Timestamp::now().as_nanosecond();
        bytes = (nanos as u64).to_be_bytes();
    }
    format!("read-{}", crate::digest::hex_of(&bytes))
}
