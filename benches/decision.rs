//! The pure decision path, in process: decide() on a decoded request, for an ungated, a
//! denied and an approved request, as the number of approvals and of policies grows. The
//! approvals index is keyed by what a request carries, so the time should stay flat. And
//! a read (authorization review) beside a write (admission review) of the same scope, and
//! a read under a policy that grants, approved (granted) and not (denied).
//!
//! `cargo bench --bench decision`

mod common;

use common::{KINDS, approvals, policies, review};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use jitgate::admission::decode;
use jitgate::approvals::{ConfigMapRef, Snapshot};
use jitgate::decision::{Approvals, Inputs, Outcome, decide};
use std::hint::black_box;
use std::time::Duration;

fn by_approvals(c: &mut Criterion) {
    let now = Timestamp::now();
    let policies = policies(3);
    let mut group = c.benchmark_group("decide/approvals");
    for n in [10, 1_000, 10_000, 100_000] {
        let snapshot = Snapshot::new(approvals(n, now), 0, ConfigMapRef::default(), now);
        let inputs = Inputs {
            policies: &policies,
            approvals: Approvals::Loaded(&snapshot),
            now,
        };
        for (kind, name) in KINDS {
            let body = review(kind);
            let req = decode(body.as_bytes()).unwrap();
            let expected = !matches!(kind, common::Kind::Denied);
            assert_eq!(decide(&req, &inputs).allowed(), expected, "{name}");
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| decide(black_box(&req), &inputs))
            });
        }
    }
    group.finish();
}

fn by_policies(c: &mut Criterion) {
    let now = Timestamp::now();
    let snapshot = Snapshot::new(approvals(10_000, now), 0, ConfigMapRef::default(), now);
    let mut group = c.benchmark_group("decide/policies");
    for n in [1, 10, 100] {
        let policies = policies(n);
        let inputs = Inputs {
            policies: &policies,
            approvals: Approvals::Loaded(&snapshot),
            now,
        };
        for (kind, name) in KINDS {
            let body = review(kind);
            let req = decode(body.as_bytes()).unwrap();
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| decide(black_box(&req), &inputs))
            });
        }
    }
    group.finish();
}

/// Decoding the 2.2 KB review, which the server does before deciding.
fn decoding(c: &mut Criterion) {
    let body = review(common::Kind::Denied);
    c.bench_function("decode/2.2KB-review", |b| {
        b.iter(|| decode(black_box(body.as_bytes())).unwrap().uid.len())
    });
}

/// The change fingerprint of the 2.2 KB Deployment update: computed for a denial's
/// message, and for a decision only when an approval in scope is pinned to a change.
fn fingerprint(c: &mut Criterion) {
    let body = review(common::Kind::Denied);
    let req = decode(body.as_bytes()).unwrap();
    assert!(jitgate::change::of(&req).is_some());
    c.bench_function("change/2.2KB-deployment-update", |b| {
        b.iter(|| jitgate::change::of(black_box(&req)).map(|c| c.paths.len()))
    });
}

/// The whole answer to a denied request: decision, and the denial message with its
/// paste-ready entry and change fingerprint.
fn denial(c: &mut Criterion) {
    let now = Timestamp::now();
    let policies = policies(3);
    let snapshot = Snapshot::new(approvals(10_000, now), 0, ConfigMapRef::default(), now);
    let inputs = Inputs {
        policies: &policies,
        approvals: Approvals::Loaded(&snapshot),
        now,
    };
    let body = review(common::Kind::Denied);
    let req = decode(body.as_bytes()).unwrap();
    c.bench_function("answer/denied-2.2KB", |b| {
        b.iter(|| {
            let d = decide(black_box(&req), &inputs);
            jitgate::respond::admission(&req, &d)
        })
    });
}

/// A read (an authorization review) against a write (an admission review) of the same
/// scope: alice's Deployment prod-payments/payments-api, approved and denied, among
/// 10 000 approvals. The same decide() answers both; the read should cost no more.
fn read_and_write(c: &mut Criterion) {
    let now = Timestamp::now();
    let yaml = common::policies_yaml(3)
        + "---\napiVersion: jitgate.dev/v1alpha1\nkind: GatePolicy\nmetadata: { name: prod-reads }\nspec:\n  rules: [{ apiGroups: [\"apps\"], resources: [\"deployments\"], verbs: [\"get\"] }]\n  namespaces: [\"prod-*\"]\n  approval: { minApprovers: 1, maxDuration: 4h }\n";
    let policies =
        jitgate::policy::PolicySet::new(jitgate::policy::parse_policies(&yaml, "bench.yaml").unwrap())
            .unwrap();
    let mut entries = approvals(10_000, now);
    let read = common::entry(0, now + jiff::SignedDuration::from_hours(1))
        .replace("operations: [UPDATE]", "verbs: [get]");
    entries.push(std::sync::Arc::new(
        jitgate::approvals::parse_entry("bench/read", &read).unwrap(),
    ));
    let snapshot = Snapshot::new(entries, 0, ConfigMapRef::default(), now);
    let inputs = Inputs {
        policies: &policies,
        approvals: Approvals::Loaded(&snapshot),
        now,
    };
    let granting = jitgate::policy::PolicySet::new(
        jitgate::policy::parse_policies(
            &yaml.replace(
                "metadata: { name: prod-reads }\nspec:\n",
                "metadata: { name: prod-reads }\nspec:\n  grant: true\n",
            ),
            "bench.yaml",
        )
        .unwrap(),
    )
    .unwrap();
    assert!(granting.iter().any(|p| p.grant));
    let granting_inputs = Inputs {
        policies: &granting,
        ..inputs
    };
    let mut group = c.benchmark_group("decide/read-vs-write");
    for (kind, name) in [
        (common::Kind::Approved, "approved"),
        (common::Kind::Denied, "denied"),
    ] {
        let body = review(kind);
        let write = decode(body.as_bytes()).unwrap();
        let sar = serde_json::json!({"kind": "SubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
            "metadata": {}, "spec": {"resourceAttributes": {"namespace": write.namespace, "verb": "get",
            "group": "apps", "version": "v1", "resource": "deployments", "name": write.name},
            "user": write.user_info.username, "groups": write.user_info.groups}, "status": {"allowed": false}})
        .to_string();
        let read = jitgate::authorization::decode(sar.as_bytes()).unwrap();
        let expected = matches!(kind, common::Kind::Approved);
        assert_eq!(decide(&write, &inputs).allowed(), expected, "admission {name}");
        assert_eq!(decide(&read, &inputs).allowed(), expected, "authorization {name}");
        group.bench_function(BenchmarkId::new("admission", name), |b| {
            b.iter(|| decide(black_box(&write), &inputs))
        });
        group.bench_function(BenchmarkId::new("authorization", name), |b| {
            b.iter(|| decide(black_box(&read), &inputs))
        });
        // The same read under a policy with grant: true: an approved one is granted
        // (allowed: true), a denied one denied. A grant should cost no more than a denial.
        let expected = if expected { Outcome::Grant } else { Outcome::Deny };
        assert_eq!(
            decide(&read, &granting_inputs).outcome(),
            expected,
            "granting {name}"
        );
        group.bench_function(BenchmarkId::new("authorization-granting", name), |b| {
            b.iter(|| decide(black_box(&read), &granting_inputs))
        });
    }
    group.finish();
}

/// Offline approvals: loading 10 000 signed entries (parsing them, and verifying each
/// signature once: cold, and again after the signers change, when every verification is
/// remembered), and the per-request decision when the approval that grants is signed
/// rather than approved through the API server.
fn signed(c: &mut Criterion) {
    use jitgate::signing::{PrivateKey, Signers, sign};
    use std::collections::BTreeMap;
    use std::sync::Arc;
    let now = Timestamp::now();
    let policies = policies(3);
    let key = PrivateKey::generate().unwrap().0;
    let signers_data = BTreeMap::from([(
        "carol".to_string(),
        format!("publicKey: {}\nuser: carol\ngroups: [approvers]\n", key.public()),
    )]);
    let binding = jitgate::signing::Binding::default();
    let signers = Arc::new(Signers::from_data(binding.clone(), &signers_data).0);
    // The same 10 000 entries, each signed by carol instead of approved by name.
    let data: BTreeMap<String, String> = approvals(10_000, now)
        .iter()
        .map(|a| {
            let mut a = (**a).clone();
            a.approved_by = Default::default();
            a.id = format!("bench/{}", a.key()).into();
            let s = sign(&a.terms(), &binding, "carol", &key, None);
            a.rare.make_mut().signatures.push(s);
            (a.key().to_string(), a.to_yaml())
        })
        .collect();
    let load = || {
        let parsed = jitgate::approvals::parse_configmap("bench", &data);
        assert!(parsed.errors.is_empty());
        Snapshot::signed(parsed.approvals, 0, ConfigMapRef::default(), signers.clone(), now)
    };
    let mut group = c.benchmark_group("signed");
    group.sample_size(10);
    group.bench_function("load-10k/cold", |b| {
        b.iter_batched(
            jitgate::signing::forget_verifications,
            |()| load(),
            criterion::BatchSize::PerIteration,
        )
    });
    group.bench_function("load-10k/remembered", |b| b.iter(load));
    group.sample_size(50);
    let signed_snapshot = load();
    let named_snapshot = Snapshot::new(approvals(10_000, now), 0, ConfigMapRef::default(), now);
    let body = review(common::Kind::Approved);
    let req = decode(body.as_bytes()).unwrap();
    for (name, snapshot) in [("by-name", &named_snapshot), ("signed", &signed_snapshot)] {
        let inputs = Inputs {
            policies: &policies,
            approvals: Approvals::Loaded(snapshot),
            now,
        };
        assert!(decide(&req, &inputs).allowed(), "{name}");
        group.bench_function(BenchmarkId::new("decide-approved-10k", name), |b| {
            b.iter(|| decide(black_box(&req), &inputs))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(50);
    targets = by_approvals, by_policies, decoding, fingerprint, denial, read_and_write, signed
}
criterion_main!(benches);
