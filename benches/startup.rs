//! Start-to-ready: from `jitgate serve` (the release binary) being started until `/readyz`
//! answers 200, and its peak resident memory then, with approvals written in the ten styles
//! of `benches/common/entries.rs` (a tenth of them signed offline, a tenth more `for:` and
//! signed). File mode reads them from an approvals file of ConfigMap manifests; cluster
//! mode lists them from the test API server (`tests/it/support/apiserver.rs`), which runs
//! in this process and so shares the machine with jitgate as an API server would not.
//!
//! `cargo bench --bench startup [-- N [RUNS]]`: N approvals (100 000 by default), RUNS
//! interleaved rounds of file then cluster mode (3 by default). It prints each run and the
//! spread, and how many approvals jitgate counted active, pending and invalid (all should
//! be active: a signature that did not verify would leave its entry pending).
//! `STARTUP_BENCH_DIR=DIR` writes the approvals, signers and certificates there and keeps
//! them, for a profiler to start jitgate on the same files; and `approvals-cluster.yaml`,
//! the same entries signed for the cluster id `STARTUP_BENCH_CLUSTER_ID` (`bench` unless
//! set), to apply to a real API server.

#[path = "common/entries.rs"]
mod entries;
#[path = "../tests/it/support/mod.rs"]
mod support;

use hyper::Method;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::apiserver::ApiServer;
use support::{Certs, Conn, Proto, REPO};

const PER_CONFIGMAP: usize = 1000;
const NAMESPACE: &str = "jitgate-system";

struct Figures {
    ready: Duration,
    peak_mib: f64,
    counts: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `VmHWM` (the peak resident set) of a process, in MiB.
fn peak_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Starts jitgate with `args` and times it to ready; stops it after.
async fn run(dir: &Path, certs: &Certs, args: &[&str]) -> Figures {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let start = Instant::now();
    let mut child: Child = Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .args(["serve", "--listen", &listen, "--log-format", "text"])
        .arg("--tls-cert")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.join("tls.key"))
        .arg("--policies")
        .arg(Path::new(REPO).join("policies"))
        .arg("--audit-log")
        .arg(dir.join("audit.jsonl"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the release binary starts");
    let addr = listen.parse().unwrap();
    let mut conn = loop {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "not listening after 120 s"
        );
        if let Ok(c) = Conn::open(addr, &certs.ca_pem, Proto::H1).await {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "not ready after 120 s"
        );
        if conn.send(Method::GET, "/readyz", None, Vec::new()).await.status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let ready = start.elapsed();
    let peak = peak_mib(child.id());
    let metrics = conn.send(Method::GET, "/metrics", None, Vec::new()).await;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    let counts = ["active", "pending", "invalid"]
        .iter()
        .map(|state| {
            let needle = format!("approvals{{state=\"{state}\"}} ");
            let n = text
                .lines()
                .find_map(|l| l.split_once(&needle).map(|(_, n)| n.trim().to_string()))
                .unwrap_or_else(|| "?".into());
            format!("{state} {n}")
        })
        .collect::<Vec<_>>()
        .join(", ");
    let _ = child.kill();
    let _ = child.wait();
    Figures {
        ready,
        peak_mib: peak,
        counts,
    }
}

fn spread(label: &str, runs: &[Figures]) {
    let secs: Vec<f64> = runs.iter().map(|f| f.ready.as_secs_f64()).collect();
    let mib: Vec<f64> = runs.iter().map(|f| f.peak_mib).collect();
    let lo_hi = |v: &[f64]| {
        (
            v.iter().cloned().fold(f64::INFINITY, f64::min),
            v.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        )
    };
    let ((s0, s1), (m0, m1)) = (lo_hi(&secs), lo_hi(&mib));
    println!("{label:>8}: start to ready {s0:.2}-{s1:.2} s, peak resident {m0:.1}-{m1:.1} MiB");
}

fn main() {
    let mut numbers = std::env::args().skip(1).filter_map(|a| a.parse::<usize>().ok());
    let n = numbers.next().unwrap_or(100_000);
    let rounds = numbers.next().unwrap_or(3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let temp = tempfile::tempdir().unwrap();
        let kept = std::env::var_os("STARTUP_BENCH_DIR").map(std::path::PathBuf::from);
        let dir_path = kept.clone().unwrap_or_else(|| temp.path().to_path_buf());
        std::fs::create_dir_all(&dir_path).unwrap();
        let dir = dir_path.as_path();
        let certs = Certs::new();
        std::fs::write(dir.join("tls.crt"), &certs.cert_pem).unwrap();
        std::fs::write(dir.join("tls.key"), &certs.key_pem).unwrap();
        let signer = entries::Signer::new("offline-approver");
        let now = jiff::Timestamp::now();

        let file_binding = jitgate::signing::Binding::default();
        let set = entries::mixed_set(n, PER_CONFIGMAP, now, &signer, &file_binding);
        let approvals = dir.join("approvals.yaml");
        std::fs::write(&approvals, entries::manifests(&set, NAMESPACE)).unwrap();
        drop(set);
        let signers = dir.join("signers.yaml");
        std::fs::write(&signers, entries::signers_manifest(&signer, NAMESPACE)).unwrap();
        if kept.is_some() {
            // The same entries signed for a cluster of this id, to apply to a real API
            // server and start jitgate on with `--cluster-id` (docs/performance.md).
            let cluster = std::env::var("STARTUP_BENCH_CLUSTER_ID").unwrap_or_else(|_| "bench".into());
            let binding = jitgate::signing::Binding {
                cluster,
                namespace: NAMESPACE.into(),
            };
            let set = entries::mixed_set(n, PER_CONFIGMAP, now, &signer, &binding);
            std::fs::write(
                dir.join("approvals-cluster.yaml"),
                entries::manifests(&set, NAMESPACE),
            )
            .unwrap();
        }

        let api = ApiServer::start().await;
        let cluster_binding = jitgate::signing::Binding {
            cluster: api.cluster_id(),
            namespace: NAMESPACE.into(),
        };
        let set = entries::mixed_set(n, PER_CONFIGMAP, now, &signer, &cluster_binding);
        for chunk in set.chunk_by(|a, b| a.0 == b.0) {
            let data: Vec<(&str, &str)> = chunk.iter().map(|(_, k, t)| (k.as_str(), t.as_str())).collect();
            api.apply_approvals(&chunk[0].0, &data);
        }
        drop(set);
        api.apply(
            NAMESPACE,
            "jitgate-signers",
            &[],
            &[(&signer.name, &signer.trusted())],
        );
        let kubeconfig = api.kubeconfig();

        println!(
            "start to ready, {n} approvals in {} styles ({PER_CONFIGMAP} to a ConfigMap), {rounds} rounds:",
            entries::STYLES
        );
        let (mut file, mut cluster) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let f = run(
                dir,
                &certs,
                &[
                    "--approvals-file",
                    &approvals.display().to_string(),
                    "--signers-file",
                    &signers.display().to_string(),
                ],
            )
            .await;
            println!(
                "    file: {:.2} s, {:.1} MiB ({})",
                f.ready.as_secs_f64(),
                f.peak_mib,
                f.counts
            );
            file.push(f);
            let c = run(
                dir,
                &certs,
                &[
                    "--approvals-namespace",
                    NAMESPACE,
                    "--kubeconfig",
                    &kubeconfig.display().to_string(),
                ],
            )
            .await;
            println!(
                " cluster: {:.2} s, {:.1} MiB ({})",
                c.ready.as_secs_f64(),
                c.peak_mib,
                c.counts
            );
            cluster.push(c);
        }
        spread("file", &file);
        spread("cluster", &cluster);
    });
}
