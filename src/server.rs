//! HTTP over TLS: the routes, the `/validate` handler, and the accept loop.
//!
//! The handler is a thin layer: check the transport (method, content type, size), decode,
//! decide, explain, record, answer. A body that is not an AdmissionReview never reaches the
//! decision; it gets a 4xx with a Kubernetes `Status` that says why.

use crate::admission::{self, AdmissionRequest, AdmissionResponse};
use crate::approvals::{ApprovalStore, ConfigMapRef, View};
use crate::audit::{ApprovalRecord, AuditSink, DecisionRecord};
use crate::decision::{self, Approvals, Decision, Reason};
use crate::explain;
use crate::ledger;
use crate::metrics::Metrics;
use crate::policy::PolicyStore;
use crate::usage::{UsageError, UsageLedger};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use jiff::Timestamp;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// Largest request body: two objects at the 3 MiB etcd limit, plus room.
pub const BODY_LIMIT: usize = 7 * 1024 * 1024;
/// Open connections at most; past it, new ones wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Where denials point engineers before any approvals ConfigMap is known.
static DEFAULT_HOME: std::sync::LazyLock<ConfigMapRef> = std::sync::LazyLock::new(ConfigMapRef::default);

/// What the handlers share.
pub struct AppState {
    pub policies: Arc<PolicyStore>,
    pub approvals: Arc<ApprovalStore>,
    pub audit: AuditSink,
    /// Where uses of `maxUses` approvals are counted.
    pub usage: UsageLedger,
    pub metrics: Metrics,
    /// The serving certificate, for its expiry.
    pub serving_cert: Arc<crate::tls::ServingCert>,
    pub shutting_down: AtomicBool,
}

impl AppState {
    pub fn is_ready(&self) -> bool {
        self.approvals.is_loaded() && !self.shutting_down.load(Ordering::Relaxed)
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/validate", post(validate).fallback(wrong_method))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            status(
                StatusCode::NOT_FOUND,
                "no such endpoint; admission reviews go to POST /validate",
            )
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

async fn validate(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    if !is_json(&parts.headers) {
        let why = "Content-Type must be application/json";
        return refuse(&state, StatusCode::UNSUPPORTED_MEDIA_TYPE, None, why, started).await;
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT) {
        return refuse(&state, StatusCode::PAYLOAD_TOO_LARGE, None, &too_large(), started).await;
    }
    let bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) if is_length_limit(&e) => {
            return refuse(&state, StatusCode::PAYLOAD_TOO_LARGE, None, &too_large(), started).await;
        }
        Err(_) => {
            let why = "the request body could not be read";
            return refuse(&state, StatusCode::BAD_REQUEST, None, why, started).await;
        }
    };
    let req = match admission::decode(&bytes) {
        Ok(r) => r,
        Err(e) => {
            let uid = admission::salvage_uid(&bytes);
            return refuse(&state, StatusCode::BAD_REQUEST, uid, &e.to_string(), started).await;
        }
    };

    let deadline = deadline(parts.uri.query(), started);
    if ledger::applies(&req) {
        return ledger_answer(&state, &req, started, deadline).await;
    }
    let now = Timestamp::now();
    let view = state.approvals.view();
    let (approvals, snapshot) = match &view {
        View::NotLoaded => (Approvals::NotLoaded, None),
        View::Current(s) => (Approvals::Loaded(&s.index), Some(s)),
        View::Stale { snapshot, silent_for } => (
            Approvals::Stale {
                silent_for: *silent_for,
            },
            Some(snapshot),
        ),
    };
    let mut decision = decision::decide(&req, &state.policies.current(), approvals, now);
    if let Err(reason) = spend_use(&state, &req, &decision, now, deadline).await {
        decision.deny_for(reason);
    }
    let home = snapshot.map_or(&*DEFAULT_HOME, |s| &s.home);
    let response = explain::response(&req, &decision, home, now);
    let took = started.elapsed();
    state.metrics.decided(&decision, took);
    let latency_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    let line = DecisionRecord::decided(&req, &decision, now, latency_us).to_line();
    answer(&state, &req, response, line, deadline).await
}

/// Records the use of a `maxUses` approval before its grant is answered. A dry run is
/// checked the same way and spends nothing (the webhook declares `sideEffects:
/// NoneOnDryRun`).
async fn spend_use(
    state: &AppState,
    req: &AdmissionRequest<'_>,
    d: &Decision,
    now: Timestamp,
    deadline: Instant,
) -> Result<(), Reason> {
    let Some(approval) = d.approval.as_deref().filter(|a| a.max_uses.is_some()) else {
        return Ok(());
    };
    if !matches!(d.reason, Reason::Approved | Reason::BreakGlass) {
        return Ok(());
    }
    let spending = state.usage.spend(approval, &req.uid, now, req.dry_run);
    let spent = tokio::time::timeout_at(deadline.into(), spending).await;
    match spent {
        Ok(Ok(used)) => {
            tracing::info!(uid = %req.uid, approval = %approval.id, ?used, max_uses = approval.max_uses,
                dry_run = req.dry_run, "use of a maxUses approval");
            Ok(())
        }
        Ok(Err(UsageError::Exhausted(_))) => Err(Reason::UsesExhausted),
        Ok(Err(e)) => {
            tracing::error!(uid = %req.uid, approval = %approval.id, error = %e, "use not recorded; denying");
            Err(Reason::UsageUnavailable)
        }
        Err(_) => {
            tracing::error!(uid = %req.uid, approval = %approval.id, "use not recorded before the deadline; denying");
            Err(Reason::UsageUnavailable)
        }
    }
}

/// When to give up: the API server abandons the call after `?timeout=` (10 s when absent),
/// so answer a clear denial well before that rather than let it time out.
fn deadline(query: Option<&str>, started: Instant) -> Instant {
    let timeout = query
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("timeout=")))
        .and_then(|t| crate::policy::parse_duration(t).ok())
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or(Duration::from_secs(10));
    let margin = (timeout / 4).max(Duration::from_millis(100)).min(timeout);
    started + (timeout - margin)
}

/// An edit of an approvals ConfigMap, judged by the ledger: one decision record, and one
/// approval record for each entry the edit changes.
async fn ledger_answer(
    state: &AppState,
    req: &AdmissionRequest<'_>,
    started: Instant,
    deadline: Instant,
) -> Response {
    let now = Timestamp::now();
    let verdict = ledger::review(req, &state.policies.current(), now, ledger::Grace::default());
    let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let (response, decision, refused_key, changes) = match verdict {
        Ok(changes) => {
            let accepted = Decision::allow(Reason::LedgerAccepted, Vec::new());
            (AdmissionResponse::allow(&req.uid), accepted, None, changes)
        }
        Err(v) => {
            let response = AdmissionResponse::deny(&req.uid, v.to_string());
            (
                response,
                Decision::refused(Reason::LedgerRefused),
                Some(v.id),
                Vec::new(),
            )
        }
    };
    state.metrics.decided(&decision, started.elapsed());
    let mut record = DecisionRecord::decided(req, &decision, now, latency_us);
    record.approval = refused_key.as_deref();
    let mut lines = record.to_line();
    for change in &changes {
        lines.extend(ApprovalRecord::new(req, change, now).to_line());
    }
    answer(state, req, response, lines, deadline).await
}

/// Writes the records, then answers; if they cannot be written, or not before the
/// deadline, the answer is a denial.
async fn answer(
    state: &AppState,
    req: &AdmissionRequest<'_>,
    response: AdmissionResponse,
    lines: Vec<u8>,
    deadline: Instant,
) -> Response {
    let written = tokio::time::timeout_at(deadline.into(), state.audit.write(lines)).await;
    let refusal = match written {
        Ok(Ok(())) => return json(StatusCode::OK, &response.into_review()),
        Ok(Err(e)) => {
            state.metrics.audit_failed();
            // Fail closed: a grant that leaves no record is not a grant.
            tracing::error!(uid = %req.uid, error = %e, "decision record not written; denying");
            (
                Reason::AuditUnavailable,
                "the audit record could not be written, and nothing is allowed without one",
            )
        }
        Err(_) => {
            state.metrics.audit_failed();
            tracing::error!(uid = %req.uid, "decision record not written before the API server's deadline; denying");
            (
                Reason::DeadlineExceeded,
                "the audit record could not be written before the API server's deadline",
            )
        }
    };
    let (reason, why) = refusal;
    let denial = AdmissionResponse::deny(
        &req.uid,
        format!(
            "jitgate: {} of {} refused ({}): {why}. Retry shortly; tell the cluster operators if this persists.",
            req.operation,
            req.resource.resource,
            reason.as_str()
        ),
    );
    json(StatusCode::OK, &denial.into_review())
}

async fn wrong_method(State(state): State<Arc<AppState>>) -> Response {
    let why = "only POST is accepted on /validate";
    refuse(&state, StatusCode::METHOD_NOT_ALLOWED, None, why, Instant::now()).await
}

/// Answers a request that cannot be decided, and records it as a denial.
async fn refuse(
    state: &AppState,
    code: StatusCode,
    uid: Option<String>,
    why: &str,
    started: Instant,
) -> Response {
    tracing::warn!(
        status = code.as_u16(),
        uid = uid.as_deref(),
        reason = why,
        "admission request refused"
    );
    let decision = Decision::refused(Reason::BadRequest);
    state.metrics.decided(&decision, started.elapsed());
    let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let line = DecisionRecord::refused(uid.as_deref(), &decision, Timestamp::now(), latency_us).to_line();
    if let Err(e) = state.audit.write(line).await {
        state.metrics.audit_failed();
        tracing::error!(error = %e, "record of a refused request not written");
    }
    status(code, why)
}

fn too_large() -> String {
    format!("the request body is larger than {BODY_LIMIT} bytes")
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

fn json<T: serde::Serialize>(code: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (code, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A Kubernetes `Status` object: the error shape API clients expect.
fn status(code: StatusCode, message: &str) -> Response {
    let reason = match code {
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
        StatusCode::PAYLOAD_TOO_LARGE => "RequestEntityTooLarge",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaType",
        _ => "InternalError",
    };
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "code": code.as_u16(),
        "reason": reason,
        "message": message,
    });
    json(code, &body)
}

/// Accepts TLS connections until `shutdown` completes, then stops accepting, lets
/// in-flight requests finish (up to a deadline) and closes idle keep-alive connections.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let service = TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("drain deadline passed; closing remaining connections"),
    }
}
