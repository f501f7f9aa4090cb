//! The naive webhook jitgate is measured against (benches/load.sh): axum, rustls and hyper
//! like jitgate, but it parses the whole review into a `serde_json::Value` and answers a
//! fixed allow. No policy, no approvals, no record.
//!
//! `cargo run --release --example baseline -- LISTEN CERT KEY`

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;

async fn allow(body: Bytes) -> ([(&'static str, &'static str); 1], Vec<u8>) {
    let review: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let uid = review["request"]["uid"].as_str().unwrap_or_default();
    let answer = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": true}
    });
    (
        [("content-type", "application/json")],
        serde_json::to_vec(&answer).unwrap(),
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, cert, key] = &args[..] else {
        eprintln!("usage: baseline LISTEN CERT KEY");
        std::process::exit(2);
    };
    let tls = jitgate::tls::server_config(cert.as_ref(), key.as_ref()).expect("certificate and key");
    let listener = tokio::net::TcpListener::bind(listen).await.expect("listen");
    serve(listener, tls).await;
}

/// Answers every review on `listener` with an allow, over TLS with `tls`, until dropped.
/// (Also started in process by `benches/real_api_server.rs`.)
pub async fn serve(listener: tokio::net::TcpListener, tls: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let app = Router::new().route("/validate", post(allow));
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, builder, app) = (acceptor.clone(), builder.clone(), app.clone());
        tokio::spawn(async move {
            if let Ok(stream) = acceptor.accept(tcp).await {
                let _ = builder
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
                    .await;
            }
        });
    }
}
