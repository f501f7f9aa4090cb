//! Reading a review's body: within a deadline for the whole body, against a budget of
//! bytes held by all bodies at once (the server's memory under a flood of fat or trickling
//! bodies).
//!
//! Budget is taken as bytes arrive, never for a length only declared, so holding it costs
//! a client the bytes themselves. A request that cannot get budget at once stops the body
//! that has been arriving longest, if it has taken more than [`SLOW`] so far (the API
//! server sends a body in milliseconds; a body still arriving after a second is a slow
//! client's), and waits for what that frees; waiters are not queued, whoever fits takes
//! what is given back, so a small review does not wait behind fat bodies. A request that still cannot get budget within
//! the wait is refused as overloaded (503): a clear refusal, never a grant.

use super::connections::Deciding;
use super::transport::{BODY_LIMIT, Sent, declared_length, is_json};
use crate::metrics::Metrics;
use crate::refusal::Refusal;
use axum::body::Bytes;
use axum::http::request::Parts;
use http_body_util::BodyExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// How much of a refused body is read and thrown away before answering, and for how long.
const DRAIN_LIMIT: usize = 2 * BODY_LIMIT + 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(5);
/// A body still arriving after this long may be stopped to free budget for another.
pub const SLOW: Duration = Duration::from_secs(1);

/// The deadline and the budget for reading bodies, shared by all requests.
pub struct BodyLimits {
    /// From the request's headers to its last byte of body.
    pub timeout: Duration,
    /// How long a request waits for budget before it is refused as overloaded.
    pub budget_wait: Duration,
    budget: Arc<Semaphore>,
    /// Told whenever budget is given back.
    freed: Arc<Notify>,
    readers: Mutex<Readers>,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct Readers {
    next: u64,
    reading: Vec<(u64, Instant, Arc<Notify>)>,
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
            freed: Arc::new(Notify::new()),
            readers: Mutex::new(Readers::default()),
            metrics,
        }
    }

    fn register(&self, since: Instant) -> Reader<'_> {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        readers.next += 1;
        let (id, stop) = (readers.next, Arc::new(Notify::new()));
        readers.reading.push((id, since, stop.clone()));
        Reader {
            limits: self,
            id,
            stop,
        }
    }

    /// Stops the body arriving longest, if slow, other than `me`'s.
    fn stop_slowest(&self, me: u64) {
        let readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        let slowest = readers
            .reading
            .iter()
            .filter(|(id, since, _)| *id != me && since.elapsed() > SLOW)
            .min_by_key(|(_, since, _)| *since);
        if let Some((_, _, stop)) = slowest {
            stop.notify_one();
        }
    }

    /// Takes `n` bytes of budget for `me`, waiting until `until` at most.
    async fn take(&self, me: u64, n: usize, until: Instant) -> Result<Budget, Refusal> {
        let n32 = u32::try_from(n).map_err(|_| Refusal::TooLarge { limit: BODY_LIMIT })?;
        // Not a queue: whoever fits when budget is given back takes it, so that a small
        // review does not wait behind fat bodies that asked first.
        let mut stopped = false;
        let permit = loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Ok(permit) = self.budget.clone().try_acquire_many_owned(n32) {
                break permit;
            }
            if !stopped {
                self.stop_slowest(me);
                stopped = true;
            }
            if tokio::time::timeout_at(until.into(), freed).await.is_err() {
                self.metrics.body_budget_exhausted();
                return Err(Refusal::Overloaded);
            }
        };
        self.metrics.body_bytes_held(n as i64);
        Ok(Budget {
            permit: Some(permit),
            metrics: self.metrics.clone(),
            freed: self.freed.clone(),
        })
    }
}

/// A body being read, known to the budget until dropped.
struct Reader<'a> {
    limits: &'a BodyLimits,
    id: u64,
    stop: Arc<Notify>,
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        let mut readers = self.limits.readers.lock().unwrap_or_else(|e| e.into_inner());
        readers.reading.retain(|(id, _, _)| *id != self.id);
    }
}

/// Bytes of budget held by a body, given back when dropped.
struct Budget {
    permit: Option<OwnedSemaphorePermit>,
    metrics: Arc<Metrics>,
    /// Told when the bytes are given back.
    freed: Arc<Notify>,
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
        if let Some(permit) = self.permit.take() {
            self.metrics
                .body_bytes_held(-i64::try_from(permit.num_permits()).unwrap_or(i64::MAX));
            drop(permit);
            self.freed.notify_waiters();
        }
    }
}

/// A review's body, read whole, and what it holds while it is decided: its budget, and its
/// connection's mark that a request is being decided there.
pub struct Body {
    pub bytes: Bytes,
    _budget: Option<Budget>,
    _deciding: Option<Deciding>,
}

/// The body of a review, or why it is refused.
pub async fn read_review(
    parts: &Parts,
    body: axum::body::Body,
    limits: &BodyLimits,
) -> Result<Body, Refusal> {
    let started = Instant::now();
    let deadline = started + limits.timeout;
    let refusal = if !is_json(&parts.headers) {
        Refusal::UnsupportedMediaType
    } else if declared_length(&parts.headers).is_some_and(|n| n > BODY_LIMIT) {
        Refusal::TooLarge { limit: BODY_LIMIT }
    } else {
        return read_whole(parts, body, limits, started, deadline).await;
    };
    drain(body, deadline).await;
    Err(refusal)
}

async fn read_whole(
    parts: &Parts,
    mut body: axum::body::Body,
    limits: &BodyLimits,
    started: Instant,
    deadline: Instant,
) -> Result<Body, Refusal> {
    let reader = limits.register(started);
    let mut budget: Option<Budget> = None;
    // Each frame is copied in, so that a frame never keeps the connection's read buffer
    // alive behind it. The buffer doubles as bytes arrive, never past the declared length:
    // what it holds is at most twice the budget it took, and a whole body sits in a buffer
    // of its own size.
    let declared = declared_length(&parts.headers).unwrap_or(0).min(BODY_LIMIT);
    let mut read: Vec<u8> = Vec::new();
    let reading = async {
        loop {
            let frame = tokio::select! {
                frame = body.frame() => frame,
                () = reader.stop.notified() => return Err(Refusal::Overloaded),
            };
            match frame {
                None => return Ok(()),
                Some(Err(_)) => return Err(Refusal::UnreadableBody),
                Some(Ok(frame)) => {
                    let Some(data) = frame.data_ref() else { continue };
                    if read.len() + data.len() > BODY_LIMIT {
                        return Err(Refusal::TooLarge { limit: BODY_LIMIT });
                    }
                    let until = (Instant::now() + limits.budget_wait).min(deadline);
                    let more = limits.take(reader.id, data.len(), until).await?;
                    match &mut budget {
                        Some(b) => b.merge(more),
                        None => budget = Some(more),
                    }
                    let needed = read.len() + data.len();
                    if needed > read.capacity() {
                        let room = needed.max((read.capacity() * 2).min(declared.max(needed)));
                        read.reserve_exact(room - read.len());
                    }
                    read.extend_from_slice(data);
                }
            }
        }
    };
    let outcome = tokio::time::timeout_at(deadline.into(), reading).await;
    drop(reader);
    match outcome {
        Ok(Ok(())) => Ok(Body {
            bytes: Bytes::from(read),
            _budget: budget,
            _deciding: parts.extensions.get::<Sent>().map(|s| s.in_flight.deciding()),
        }),
        Ok(Err(refusal @ Refusal::TooLarge { .. })) => {
            drop((budget, read));
            drain(body, deadline).await;
            Err(refusal)
        }
        // An overloaded server reads no more of it, and a body that has not arrived in
        // time is not waited for any longer.
        Ok(Err(refusal)) => Err(refusal),
        Err(_) => {
            limits.metrics.body_timed_out();
            Err(Refusal::BodyTimeout {
                seconds: limits.timeout.as_secs(),
            })
        }
    }
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
