//! HTTP over TLS: the routes and what they share ([`AppState`]), the transport checks on
//! a review's caller (`transport`), reading its body within a deadline and a memory
//! budget (`bodies`), the one pipeline that reads, decides, records and answers both
//! `/validate` and `/authorize` (`pipeline`), the accept loop (`listen`) and the connection
//! slots it hands out (`connections`).

mod bodies;
mod connections;
mod listen;
mod pipeline;
mod transport;

pub use bodies::{BodyLimits, SLOW as SLOW_BODY};
pub use connections::Caps;
pub use listen::{Limits, Listening, MAX_CONNECTIONS, serve, serve_with};
pub use transport::BODY_LIMIT;

use crate::admission::Status;
use crate::approvals::ApprovalStore;
use crate::audit::AuditSink;
use crate::metrics::Metrics;
use crate::policy::PolicyStore;
use crate::usage::UseCounts;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use pipeline::{Admission, Authorization, Wire};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What the handlers share.
pub struct AppState {
    pub policies: Arc<PolicyStore>,
    pub approvals: Arc<ApprovalStore>,
    pub audit: AuditSink,
    /// Where uses of `maxUses` approvals are counted.
    pub usage: Arc<UseCounts>,
    pub metrics: Arc<Metrics>,
    /// Where answers hand their Events (none in file mode).
    pub notices: crate::news::emit::Notices,
    /// The serving certificate, for its expiry.
    pub serving_cert: Arc<crate::tls::ServingCert>,
    /// The deadline and the memory budget for reading review bodies.
    pub bodies: BodyLimits,
    pub shutting_down: AtomicBool,
}

impl AppState {
    pub fn is_ready(&self) -> bool {
        self.approvals.is_loaded() && !self.shutting_down.load(Ordering::Relaxed)
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/validate", post(validate).fallback(not_post::<Admission>))
        .route("/authorize", post(authorize).fallback(not_post::<Authorization>))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            transport::status(Status::failure(
                StatusCode::NOT_FOUND,
                "no such endpoint; admission reviews go to POST /validate, authorization reviews to POST /authorize"
                    .into(),
            ))
        })
        .with_state(state)
}

/// An AdmissionReview: a write or a CONNECT.
async fn validate(State(state): State<Arc<AppState>>, request: Request) -> Response {
    pipeline::handle::<Admission>(&state, request).await
}

/// A SubjectAccessReview: a read (or something jitgate has no opinion on).
async fn authorize(State(state): State<Arc<AppState>>, request: Request) -> Response {
    pipeline::handle::<Authorization>(&state, request).await
}

async fn not_post<W: Wire>(State(state): State<Arc<AppState>>) -> Response {
    pipeline::wrong_method::<W>(&state).await
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else if state.shutting_down.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "approvals not loaded yet").into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let body = state.metrics.render(
        &state.approvals,
        &state.policies.current(),
        &state.serving_cert,
        &state.audit,
    );
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
