//! What is checked before a body is read as a review (method, content type, size), and
//! how answers are put on the wire. A refused body is drained first (up to a bound), so
//! that over HTTP/2 the client gets its `Status` rather than a reset stream.

use crate::admission::Status;
use crate::refusal::Refusal;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use std::time::{Duration, Instant};

/// Largest request body: two objects at the 3 MiB etcd limit, plus room.
pub const BODY_LIMIT: usize = 7 * 1024 * 1024;
/// How much of a refused body is read and thrown away before answering, and for how long.
const DRAIN_LIMIT: usize = 2 * BODY_LIMIT + 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// The body of a review, or why it is refused.
pub async fn read_review(parts: &Parts, mut body: Body) -> Result<Bytes, Refusal> {
    let refusal = if !is_json(&parts.headers) {
        Refusal::UnsupportedMediaType
    } else if declared_length(&parts.headers).is_some_and(|n| n > BODY_LIMIT) {
        Refusal::TooLarge { limit: BODY_LIMIT }
    } else {
        let mut read = Vec::new();
        loop {
            match body.frame().await {
                None => return Ok(Bytes::from(read)),
                Some(Err(_)) => return Err(Refusal::UnreadableBody),
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        if read.len() + data.len() > BODY_LIMIT {
                            break Refusal::TooLarge { limit: BODY_LIMIT };
                        }
                        read.extend_from_slice(data);
                    }
                }
            }
        }
    };
    drain(body).await;
    Err(refusal)
}

/// Reads the rest of a refused body and throws it away, within bounds: an HTTP/2 client
/// still sending when the answer ends its stream gets a reset instead of the answer.
async fn drain(mut body: Body) {
    let mut left = DRAIN_LIMIT;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
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
