//! What is checked before a body is read as a review (the caller, the content type, the
//! size), how the body is read (within a deadline, against a budget of bytes held at
//! once), and how answers are put on the wire. A body refused for its size or type is
//! drained first (up to a bound), so that over HTTP/2 the client gets its `Status` rather
//! than a reset stream; a caller who is not the API server, or a body that did not arrive
//! in time, is answered without reading any more.

use super::connections::InFlight;
use crate::admission::Status;
use crate::mtls::Caller;
use crate::refusal::Refusal;
use axum::http::{HeaderMap, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest request body: two objects at the 3 MiB etcd limit, plus room.
pub const BODY_LIMIT: usize = 7 * 1024 * 1024;

/// Who sent a request, and its place in its connection's activity (absent when the router
/// is driven without [`super::serve`]).
#[derive(Debug, Clone)]
pub struct Sent {
    pub caller: Caller,
    pub in_flight: Arc<InFlight>,
}

/// Refuses a review from a caller that is not the API server, before its body is read.
pub fn check_caller(parts: &Parts) -> Result<(), Refusal> {
    match parts.extensions.get::<Sent>().and_then(|s| s.caller.refusal()) {
        Some(why) => Err(Refusal::Unauthenticated(why)),
        None => Ok(()),
    }
}

pub(super) fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
}

pub(super) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// When to give up: the API server abandons the call after `?timeout=` (10 s when absent),
/// so answer a clear denial well before that rather than let it time out.
pub fn deadline(query: Option<&str>, started: Instant) -> Instant {
    let timeout = query
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("timeout=")))
        .and_then(|t| crate::duration::parse_duration(t).ok())
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or(Duration::from_secs(10));
    let margin = (timeout / 4).max(Duration::from_millis(100)).min(timeout);
    started + (timeout - margin)
}

pub fn json<T: serde::Serialize>(code: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (code, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A `Status` as the whole answer, under its own HTTP status.
pub fn status(status: Status) -> Response {
    let code = StatusCode::from_u16(status.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(code, &status)
}
