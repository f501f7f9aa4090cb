//! The accept loop: TLS handshakes (asking for a client certificate when a client CA is
//! set), HTTP/1.1 and HTTP/2 on one port, connection slots that make room rather than turn
//! the API server away (`connections`), idle connections closed, and a graceful drain on
//! shutdown.
//!
//! What bounds a hostile client, connection by connection: a handshake must finish within
//! `handshake_timeout` and holds one of `max_handshakes` slots meanwhile; an HTTP/1.1
//! request's headers must arrive within 10 s (hyper's header read timeout, which also
//! closes a kept-alive connection that sends nothing for that long); a connection with no
//! request open for `idle_timeout` is closed (HTTP/2 with a GOAWAY); HTTP/2 pings a quiet
//! peer every 20 s and drops it after 10 s without an answer; flow-control windows and
//! header buffers are kept small so that unread bytes cannot pile up in memory; a body must
//! arrive whole within `body_timeout` against a shared budget of bytes (`transport`).

use super::connections::{Caps, Class, Slots};
use super::transport::Sent;
use crate::metrics::Metrics;
use crate::mtls::{Caller, ClientCa};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Open connections at most, by default.
pub const MAX_CONNECTIONS: usize = 1024;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
const H2_PING_EVERY: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 flow-control windows: what a peer may send before the server reads it. The
/// protocol's own default; a megabyte (hyper's) times a thousand connections is more than
/// the pod's memory.
const H2_WINDOW: u32 = 65_535;
/// Request headers, and what an HTTP/1.1 connection buffers, at most.
const HEADER_BYTES: u32 = 64 * 1024;

/// The limits a hostile client meets. The defaults are what `serve` uses unless told.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Established connections at most (all callers together).
    pub max_connections: usize,
    /// With a client CA: connections without a verified client certificate (probes,
    /// scrapers, anyone else) at most.
    pub max_unverified_connections: usize,
    /// TLS handshakes in progress at most; past it the oldest is dropped.
    pub max_handshakes: usize,
    pub handshake_timeout: Duration,
    /// A connection with no request open for this long is closed.
    pub idle_timeout: Duration,
    /// From a request's headers to the last byte of its body.
    pub body_timeout: Duration,
    /// Bytes of request bodies held at once, all requests together.
    pub body_budget: usize,
    /// How long a request waits for body budget before it is refused as overloaded.
    pub body_budget_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            max_unverified_connections: 64,
            max_handshakes: 256,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(5),
            body_budget: 64 * 1024 * 1024,
            body_budget_wait: Duration::from_secs(1),
        }
    }
}

/// How the server listens.
pub struct Listening {
    pub tls: Arc<rustls::ServerConfig>,
    /// Set: callers are told apart by their client certificate (see [`crate::mtls`]).
    pub client_ca: Option<Arc<ClientCa>>,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
}

/// [`serve_with`] with the default limits and no client CA.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()>,
) {
    let listening = Listening {
        tls,
        client_ca: None,
        limits: Limits::default(),
        metrics: Arc::new(Metrics::new(crate::news::EXPIRY_LEAD)),
    };
    serve_with(listener, listening, app, shutdown).await
}

/// Accepts TLS connections until `shutdown` completes, then stops accepting, lets
/// in-flight requests finish (up to a deadline) and closes idle keep-alive connections.
pub async fn serve_with(
    listener: TcpListener,
    listening: Listening,
    app: Router,
    shutdown: impl Future<Output = ()>,
) {
    let Listening {
        tls,
        client_ca,
        limits,
        metrics,
    } = listening;
    let acceptor = TlsAcceptor::from(tls);
    let other = if client_ca.is_some() {
        limits.max_unverified_connections.min(limits.max_connections)
    } else {
        limits.max_connections
    };
    let slots = Slots::new(
        Caps {
            connections: limits.max_connections,
            other,
            handshakes: limits.max_handshakes,
        },
        metrics.clone(),
    );
    let (closing, _) = tokio::sync::watch::channel(false);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(HEADER_BYTES as usize)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(H2_PING_EVERY)
        .keep_alive_timeout(H2_PING_TIMEOUT)
        .initial_stream_window_size(H2_WINDOW)
        .initial_connection_window_size(H2_WINDOW)
        .max_header_list_size(HEADER_BYTES);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
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
        // Handshakes always make room: the oldest one gives way.
        let Some(handshake) = slots.admit(Class::Handshaking) else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, builder, slots, metrics) =
            (acceptor.clone(), builder.clone(), slots.clone(), metrics.clone());
        let (app, client_ca, limits) = (app.clone(), client_ca.clone(), limits.clone());
        let mut closing = closing.subscribe();
        tokio::spawn(async move {
            let stream = tokio::select! {
                accepted = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)) => match accepted {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        metrics.connection_closed("handshake_timeout");
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
                () = handshake.activity.evicted() => return,
            };
            drop(handshake);
            let caller = match &client_ca {
                None => Caller::Unchecked,
                Some(ca) => ca.caller_of(stream.get_ref().1),
            };
            let class = match caller {
                Caller::Verified => Class::Verified,
                _ => Class::Other,
            };
            let Some(slot) = slots.admit(class) else {
                tracing::debug!(%peer, caller = class.label(), "every connection slot is deciding a request; closing a new connection");
                return;
            };
            let activity = slot.activity.clone();
            let service =
                TowerToHyperService::new(app.map_request(move |mut request: http::Request<Incoming>| {
                    request.extensions_mut().insert(Sent {
                        caller: caller.clone(),
                        in_flight: Arc::new(activity.request()),
                    });
                    request
                }));
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let mut ending = false;
            loop {
                let idle_left = limits.idle_timeout.saturating_sub(slot.activity.idle_for());
                tokio::select! {
                    ended = connection.as_mut() => {
                        if let Err(e) = ended {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    // Closed at once, to make room for another.
                    () = slot.activity.evicted() => break,
                    _ = closing.changed(), if !ending => {
                        connection.as_mut().graceful_shutdown();
                        ending = true;
                    }
                    () = tokio::time::sleep(idle_left.max(Duration::from_millis(50))), if !ending => {
                        if slot.activity.idle_for() >= limits.idle_timeout {
                            metrics.connection_closed("idle");
                            connection.as_mut().graceful_shutdown();
                            ending = true;
                        }
                    }
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    closing.send_replace(true);
    tokio::select! {
        () = slots.all_closed() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("drain deadline passed; closing remaining connections"),
    }
}
