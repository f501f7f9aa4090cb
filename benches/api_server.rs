//! Through a Kubernetes API server: gated, approved updates sent to the test API server in
//! `tests/it/support` (which calls jitgate's gate webhook over one kept-alive HTTPS
//! connection before storing, as a real API server calls a webhook Service), with the
//! webhook and without it, interleaved request by request. Reports what jitgate adds to
//! each request at p50 and p99.
//!
//! `cargo bench --bench api_server [-- REQUESTS]` (default 4000: half with the webhook)

#[path = "../tests/it/support/mod.rs"]
mod support;

use hyper::{Method, StatusCode};
use std::time::{Duration, Instant};
use support::apiserver::ApiServer;
use support::*;

const ALICE: (&str, &str, &[&str]) = ("alice-token", "alice@example.com", &["dev"]);

/// The shipped policies plus one that gates ConfigMap updates in `prod` (the test API
/// server stores ConfigMaps, so they stand for any gated object).
fn policies() -> tempfile::TempDir {
    let dir = policies_with(|_, text| text);
    std::fs::write(
        dir.path().join("bench-configmaps.yaml"),
        "apiVersion: jitgate.dev/v1alpha1\nkind: GatePolicy\nmetadata: { name: bench-configmaps }\nspec:\n  rules: [{ apiGroups: [\"\"], resources: [\"configmaps\"], operations: [\"UPDATE\"] }]\n  namespaces: [\"prod\"]\n  approval: { minApprovers: 1, maxDuration: 4h }\n",
    )
    .unwrap();
    dir
}

fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * q).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let requests: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(4000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let policies = policies();
        let api = ApiServer::start().await;
        api.add_user(ALICE.0, ALICE.1, ALICE.2);
        let grant = "user: alice@example.com\nresource: configmaps\napiGroup: \"\"\nnamespace: prod\nname: app-config\noperations: [UPDATE]\nexpiresAt: \"EXPIRES\"\nreason: \"CHG-1: tune\"\napprovedBy: [bob@example.com]\n"
            .replace("EXPIRES", &in_mins(180));
        api.apply_approvals("jitgate-approvals", &[("alice-app-config", &grant)]);
        api.apply("prod", "app-config", &[], &[("k", "0")]);
        let dir = policies.path().to_path_buf();
        let h = Harness::start_cluster(&api, Duration::from_secs(300), |cfg| cfg.policies_dir = dir).await;
        eventually(Duration::from_secs(15), || async { h.readyz().await == StatusCode::OK }).await;
        let mut client = api.conn_as(ALICE.0).await;
        let mut update = async |i: usize| {
            let body = serde_json::json!({"data": {"k": i.to_string()}}).to_string();
            let start = Instant::now();
            let reply = client
                .send(
                    Method::PATCH,
                    "/api/v1/namespaces/prod/configmaps/app-config",
                    Some("application/merge-patch+json"),
                    body.into_bytes(),
                )
                .await;
            let took = start.elapsed();
            assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
            took
        };
        // Warm up both paths; then check that the webhook is really called and gates.
        let gate = Some((h.addr(), h.certs.ca_pem.as_str()));
        api.gate_with(gate);
        for i in 0..200 {
            update(i).await;
        }
        let before = h.records().len();
        update(0).await;
        let record = h.records().pop().unwrap();
        assert!(h.records().len() > before && record["reason"] == "approved", "{record}");
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for i in 0..requests {
            let on = i % 2 == 0;
            api.gate_with(if on { gate } else { None });
            let took = update(i).await;
            if on { with.push(took) } else { without.push(took) }
        }
        let (w50, w99) = (quantile(&mut with, 0.5), quantile(&mut with, 0.99));
        let (o50, o99) = (quantile(&mut without, 0.5), quantile(&mut without, 0.99));
        println!("api_server: {requests} approved ConfigMap updates through the test API server, interleaved");
        println!("  without the webhook: p50 {:>8.1} µs  p99 {:>8.1} µs", us(o50), us(o99));
        println!("  with jitgate:        p50 {:>8.1} µs  p99 {:>8.1} µs", us(w50), us(w99));
        println!(
            "  added by jitgate:    p50 {:>8.1} µs  p99 {:>8.1} µs",
            us(w50) - us(o50),
            us(w99) - us(o99)
        );
        h.stop().await;
    });
}
