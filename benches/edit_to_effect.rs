//! Edit-to-effect latency: from an approval being written (a ConfigMap changed on the test
//! API server, or the approvals file rewritten) until the real server, over TLS, allows the
//! request it grants. Each round grants, measures, then revokes and waits for the revocation,
//! so every round starts from a denial.
//!
//! `cargo bench --bench edit_to_effect [-- ROUNDS]` prints the median, p99 and maximum for
//! cluster mode and file mode.

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};
use support::apiserver::ApiServer;
use support::*;

async fn allowed(c: &mut Conn, req: &Req) -> bool {
    c.decide(&req.clone().with(|_| {}).review()).await["allowed"] == true
}

/// Polls every millisecond until the request's answer is `allow`; returns the time taken.
async fn until(c: &mut Conn, req: &Req, allow: bool, since: Instant) -> Duration {
    loop {
        if allowed(c, req).await == allow {
            return since.elapsed();
        }
        assert!(since.elapsed() < Duration::from_secs(30), "no effect after 30 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn report(mode: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{mode:>8}: {} rounds, median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
    );
}

async fn cluster_mode(rounds: usize) -> Vec<Duration> {
    let api = ApiServer::start().await;
    let h = Harness::start_cluster(&api, Duration::from_secs(300), |_| {}).await;
    let mut c = h.conn(Proto::H1).await;
    let alice = Req::secret_update();
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        api.apply_approvals("jitgate-approvals", &[("grant", &entry(&[]))]);
        samples.push(until(&mut c, &alice, true, start).await);
        api.apply_approvals("jitgate-approvals", &[]);
        until(&mut c, &alice, false, Instant::now()).await;
    }
    h.stop().await;
    samples
}

async fn file_mode(rounds: usize) -> Vec<Duration> {
    let h = Harness::start(&approvals_manifest(&[])).await;
    let mut c = h.conn(Proto::H1).await;
    let alice = Req::secret_update();
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        h.write_approvals(&approvals_manifest(&[("grant", &entry(&[]))]));
        samples.push(until(&mut c, &alice, true, start).await);
        h.write_approvals(&approvals_manifest(&[]));
        until(&mut c, &alice, false, Instant::now()).await;
    }
    h.stop().await;
    samples
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("edit to effect (change written -> request allowed over TLS), {rounds} rounds each:");
        report("cluster", cluster_mode(rounds).await);
        report("file", file_mode(rounds).await);
    });
}
