//! HTTP over TLS: the routes and what they share ([`AppState`]), the transport checks on
//! a review's caller and body (`transport`), reading the body (`bodies`), the `/validate` handler that decides, records
//! and answers (`answer`), the `/authorize` handler that does the same for reads
//! (`authorize`), the accept loop (`listen`) and the connection slots it hands out
//! (`connections`).

mod answer;
mod authorize;
mod bodies;
mod connections;
mod listen;
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
use crate::usage::UsageLedger;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What the handlers share.
pub struct AppState {
    pub policies: Arc<PolicyStore>,
    pub approvals: Arc<ApprovalStore>,
    pub audit: AuditSink,
    /// Where uses of `maxUses` approvals are counted.
    pub usage: UsageLedger,
    pub metrics: Arc<Metrics>,
    /// Where answers hand their Events (none in file mode).
    pub notices: crate::notify::emit::Notices,
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
        .route("/validate", post(answer::validate).fallback(answer::wrong_method))
        .route("/authorize", post(authorize::authorize).fallback(authorize::wrong_method))
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
