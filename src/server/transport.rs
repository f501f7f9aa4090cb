//! What is checked before a body is read as a review (the caller, the content type, the
//! size), how the body is read (within a deadline, against a budget of bytes held at
//! once), and how answers are put on the wire. A body refused for its size or type is
//! drained first (up to a bound), so that over HTTP/2 the client gets its `Status` rather
//! than a reset stream; a caller who is not the API server, or a body that did not arrive
//! in time, is answered without reading any more.

use super::connections::{Deciding, InFlight};
use crate::admission::Status;
use crate::metrics::Metrics;
use crate::mtls::Caller;
use crate::refusal::Refusal;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Largest request body: two objects at the 3 MiB etcd limit, plus room.
pub const BODY_LIMIT: usize = 7 * 1024 * 1024;
/// How much of a refused body is read and thrown away before answering, and for how long.
const DRAIN_LIMIT: usize = 2 * BODY_LIMIT + 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// How request bodies are read: a deadline for the whole body, and a budget for the bytes
/// of all bodies held at once (the server's memory under a flood of fat or trickling
/// bodies).
pub struct BodyLimits {
    /// From the request's headers to its last byte of body.
    pub timeout: Duration,
    /// How long a request waits for budget before it is refused as overloaded.
    pub budget_wait: Duration,
    budget: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl BodyLimits {
    pub fn new(timeout: Duration, budget_bytes: usize, budget_wait: Duration, metrics: Arc<Metrics>) -> Self {
        // A body may be as large as BODY_LIMIT; a budget smaller than that would refuse it
        // for ever.
        let budget_bytes = budget_bytes.clamp(BODY_LIMIT, Semaphore::MAX_PERMITS);
        BodyLimits {
            timeout,
            budget_wait,
            budget: Arc::new(Semaphore::new(budget_bytes)),
            metrics,
        }
    }

    /// Takes `n` bytes of budget, waiting until `until` at most.
    async fn take(&self, n: usize, until: Instant) -> Result<Budget, Refusal> {
        let n32 = u32::try_from(n).map_err(|_| Refusal::TooLarge { limit: BODY_LIMIT })?;
        match tokio::time::timeout_at(until.into(), self.budget.clone().acquire_many_owned(n32)).await {
            Ok(Ok(permit)) => {
                self.metrics.body_bytes_held(n as i64);
                Ok(Budget {
                    permit: Some(permit),
                    metrics: self.metrics.clone(),
                })
            }
            _ => {
                self.metrics.body_budget_exhausted();
                Err(Refusal::Overloaded)
            }
        }
    }
}

/// Bytes of budget held by a body, given back when dropped.
pub struct Budget {
    permit: Option<OwnedSemaphorePermit>,
    metrics: Arc<Metrics>,
}

impl Budget {
    fn merge(&mut self, mut other: Budget) {
        // `other` is dropped with no permits left: its bytes are counted here now.
        match (&mut self.permit, other.permit.take()) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine, theirs) => *mine = mine.take().or(theirs),
        }
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        if let Some(permit) = &self.permit {
            self.metrics.body_bytes_held(-(permit.num_permits() as i64));
        }
    }
}

/// A review's body, read whole, and what it holds while it is decided.
pub struct Body {
    pub bytes: Bytes,
    _budget: Option<Budget>,
    _deciding: Option<Deciding>,
}

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

/// The body of a review, or why it is refused.
pub async fn read_review(
    parts: &Parts,
    mut body: axum::body::Body,
    limits: &BodyLimits,
) -> Result<Body, Refusal> {
    let started = Instant::now();
    let deadline = started + limits.timeout;
    let declared = declared_length(&parts.headers);
    let refusal = if !is_json(&parts.headers) {
        Refusal::UnsupportedMediaType
    } else if declared.is_some_and(|n| n > BODY_LIMIT) {
        Refusal::TooLarge { limit: BODY_LIMIT }
    } else {
        let wait = (started + limits.budget_wait).min(deadline);
        // A declared length takes its budget at once; a body without one, as it arrives.
        let mut budget = match declared {
            Some(n) if n > 0 => match limits.take(n, wait).await {
                Ok(b) => Some(b),
                Err(refusal) => return Err(refuse_unread(refusal, body, deadline).await),
            },
            _ => None,
        };
        let reserved = declared.unwrap_or(0);
        let mut read = Vec::with_capacity(reserved);
        let outcome = tokio::time::timeout_at(deadline.into(), async {
            loop {
                match body.frame().await {
                    None => return Ok(()),
                    Some(Err(_)) => return Err(Refusal::UnreadableBody),
                    Some(Ok(frame)) => {
                        let Some(data) = frame.data_ref() else { continue };
                        if read.len() + data.len() > BODY_LIMIT {
                            return Err(Refusal::TooLarge { limit: BODY_LIMIT });
                        }
                        let beyond = (read.len() + data.len()).saturating_sub(reserved.max(read.len()));
                        if beyond > 0 {
                            let until = (Instant::now() + limits.budget_wait).min(deadline);
                            let more = limits.take(beyond, until).await?;
                            match &mut budget {
                                Some(b) => b.merge(more),
                                None => budget = Some(more),
                            }
                        }
                        read.extend_from_slice(data);
                    }
                }
            }
        })
        .await;
        match outcome {
            Ok(Ok(())) => {
                let deciding = parts.extensions.get::<Sent>().map(|s| s.in_flight.deciding());
                return Ok(Body {
                    bytes: Bytes::from(read),
                    _budget: budget,
                    _deciding: deciding,
                });
            }
            Ok(Err(refusal)) => refusal,
            Err(_) => {
                limits.metrics.body_timed_out();
                // A body that has not arrived in time is not waited for any longer.
                return Err(Refusal::BodyTimeout {
                    seconds: limits.timeout.as_secs(),
                });
            }
        }
    };
    Err(refuse_unread(refusal, body, deadline).await)
}

/// A refusal of a body not read whole: its rest is drained first, within the body's
/// deadline, so that an HTTP/2 client still sending gets the answer.
async fn refuse_unread(refusal: Refusal, body: axum::body::Body, deadline: Instant) -> Refusal {
    drain(body, deadline).await;
    refusal
}

/// Reads the rest of a refused body and throws it away, within bounds: an HTTP/2 client
/// still sending when the answer ends its stream gets a reset instead of the answer.
async fn drain(mut body: axum::body::Body, deadline: Instant) {
    let mut left = DRAIN_LIMIT;
    let until = deadline.min(Instant::now() + DRAIN_TIME);
    let _ = tokio::time::timeout_at(until.into(), async {
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, |d| d.len());
            left = left.saturating_sub(n);
            if left == 0 {
                return;
            }
        }
    })
    .await;
}

fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
}

fn is_json(headers: &HeaderMap) -> bool {
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
        .and_then(|t| crate::policy::parse_duration(t).ok())
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
