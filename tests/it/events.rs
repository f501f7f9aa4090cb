//! Events: three replicas follow one test API server; each piece of news (a request filed,
//! approved, revoked, about to expire, expired; a denial) becomes exactly one Event, and a
//! storm of identical denials a bounded number.

use crate::support;

use crate::support::apiserver::ApiServer;
use crate::support::*;
use serde_json::{Value, json};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(20);
/// Longer than the writers' tick (1 s) several times over: time for a duplicate to appear if any
/// replica were to write one.
const SETTLE: Duration = Duration::from_secs(5);

struct Replicas {
    api: ApiServer,
    replicas: Vec<Harness>,
}

async fn three_replicas() -> Replicas {
    let api = ApiServer::start().await;
    api.apply_approvals("jitgate-approvals", &[]);
    let (mut replicas, certs) = (Vec::new(), Certs::new());
    for _ in 0..3 {
        let h =
            Harness::start_cluster_with_certs(&api, certs.clone(), Duration::from_secs(300), |_| {}).await;
        eventually(PATIENCE, || async { h.readyz().await == hyper::StatusCode::OK }).await;
        replicas.push(h);
    }
    Replicas { api, replicas }
}

impl Replicas {
    fn with_reason(&self, reason: &str) -> Vec<Value> {
        self.api
            .events()
            .into_iter()
            .filter(|e| e["reason"] == reason)
            .collect()
    }

    /// Waits for an Event of `reason`, then long enough for duplicates, and returns all
    /// of that reason.
    async fn settled(&self, reason: &str) -> Vec<Value> {
        eventually(PATIENCE, || async { !self.with_reason(reason).is_empty() }).await;
        tokio::time::sleep(SETTLE).await;
        self.with_reason(reason)
    }

    async fn stop(self) {
        for h in self.replicas {
            h.stop().await;
        }
    }
}

fn pending() -> String {
    entry(&[("approvedBy: [bob@example.com]", "approvedBy: []")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_change_to_a_request_is_one_event_across_three_replicas() {
    let r = three_replicas().await;
    r.api
        .apply_approvals("jitgate-approvals", &[("alice-db", &pending())]);
    let filed = r.settled("RequestFiled").await;
    assert_eq!(filed.len(), 1, "{filed:?}");
    let e = &filed[0];
    assert_eq!(e["type"], "Normal");
    assert_eq!(e["action"], "Request");
    assert_eq!(e["reportingController"], "jitgate.dev/jitgate");
    assert_eq!(e["regarding"]["kind"], "ConfigMap");
    assert_eq!(e["regarding"]["name"], "jitgate-approvals");
    assert_eq!(e["metadata"]["namespace"], "jitgate-system");
    let note = e["note"].as_str().unwrap();
    assert!(
        note.starts_with("user:alice@example.com asks for UPDATE prod/secrets/db-password until")
            && note.contains("INC-1: rotate")
            && note.ends_with("kubectl jitgate approve alice-db"),
        "{note}"
    );

    r.api
        .apply_approvals("jitgate-approvals", &[("alice-db", &entry(&[]))]);
    let approved = r.settled("Approved").await;
    assert_eq!(approved.len(), 1, "{approved:?}");
    let note = approved[0]["note"].as_str().unwrap();
    assert!(
        note.starts_with("bob@example.com approved user:alice@example.com's")
            && note.contains("active until"),
        "{note}"
    );

    r.api.apply_approvals("jitgate-approvals", &[]);
    let revoked = r.settled("Revoked").await;
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["type"], "Warning");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_of_events_learns_of_a_request_as_it_is_filed() {
    let r = three_replicas().await;
    // `kubectl get events -n jitgate-system --watch`, as an approver would leave it open.
    let mut watcher = r.api.conn_as(support::apiserver::TOKEN).await;
    let watching = tokio::spawn(async move {
        watcher
            .send(
                hyper::Method::GET,
                "/apis/events.k8s.io/v1/namespaces/jitgate-system/events?watch=true&timeoutSeconds=6",
                None,
                Vec::new(),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    r.api
        .apply_approvals("jitgate-approvals", &[("alice-db", &pending())]);
    let streamed = String::from_utf8(watching.await.unwrap().body).unwrap();
    let filed: Vec<Value> = streamed
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == "ADDED" && e["object"]["reason"] == "RequestFiled")
        .collect();
    assert_eq!(filed.len(), 1, "{streamed}");
    r.stop().await;
}

/// More requests filed at once than the writer makes notices of in one pass (256): each
/// still becomes exactly one Event, over the passes that follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_requests_filed_at_once_becomes_one_event_each() {
    let api = ApiServer::start().await;
    api.apply_approvals("jitgate-approvals", &[]);
    let h = Harness::start_cluster(&api, Duration::from_secs(300), |_| {}).await;
    eventually(PATIENCE, || async { h.readyz().await == hyper::StatusCode::OK }).await;
    let text = pending();
    let keys: Vec<String> = (0..600).map(|i| format!("alice-{i}")).collect();
    let entries: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), text.as_str())).collect();
    api.apply_approvals("jitgate-approvals", &entries);
    let filed = || -> Vec<String> {
        api.events()
            .into_iter()
            .filter(|e| e["reason"] == "RequestFiled")
            .map(|e| {
                e["note"]
                    .as_str()
                    .unwrap()
                    .rsplit(' ')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    eventually(PATIENCE, || async { filed().len() >= keys.len() }).await;
    tokio::time::sleep(SETTLE).await;
    let mut told = filed();
    told.sort();
    let mut asked = keys.clone();
    asked.sort();
    assert_eq!(told, asked, "one Event for each request, none twice");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_about_to_expire_and_expired_are_told_once() {
    let r = three_replicas().await;
    r.api.apply_approvals(
        "jitgate-approvals",
        &[
            ("soon", &expiring(5, &[])),
            ("gone", &expiring(-2, &[])),
            ("later", &expiring(30, &[])),
        ],
    );
    let soon = r.settled("ExpiringSoon").await;
    assert_eq!(
        soon.len(),
        1,
        "only the one within the 10 minutes' lead: {soon:?}"
    );
    assert!(
        soon[0]["note"].as_str().unwrap().contains("expires at"),
        "{soon:?}"
    );
    let gone = r.settled("Expired").await;
    assert_eq!(gone.len(), 1, "{gone:?}");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_identical_denials_makes_one_event_a_minute_in_each_place() {
    let r = three_replicas().await;
    let denied = Req::secret_update().with(|q| q.name = "stormy".into());
    for i in 0..1000 {
        let mut c = r.replicas[i % 3].conn(Proto::H1).await;
        let mut review = denied.review();
        review["request"]["uid"] = unique_uid().into();
        assert_eq!(c.decide(&review).await["allowed"], false);
    }
    let storm = r.settled("Denied").await;
    // One about the approvals ConfigMap and one beside the Secret, per minute the storm
    // spans: at most two minutes here.
    let in_ns = |ns: &str| storm.iter().filter(|e| e["metadata"]["namespace"] == ns).count();
    assert!((1..=2).contains(&in_ns("jitgate-system")), "{storm:?}");
    assert!((1..=2).contains(&in_ns("prod")), "{storm:?}");
    let beside = storm
        .iter()
        .find(|e| e["metadata"]["namespace"] == "prod")
        .unwrap();
    assert_eq!(beside["regarding"]["kind"], "Secret");
    assert_eq!(beside["regarding"]["name"], "stormy");
    let note = beside["note"].as_str().unwrap();
    assert!(
        note.contains("denied (no_approval) under policy prod-secrets"),
        "{note}"
    );
    assert!(!note.contains("c2VjcmV0"), "never object data: {note}");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notices_event_cannot_be_taken_first_by_someone_who_may_create_events() {
    // One deployment tells of alice's request: the Event's name is all anyone can learn
    // of how jitgate names it, beside the facts, which anyone who may read the approvals
    // knows.
    let request = pending();
    let first = three_replicas().await;
    first
        .api
        .apply_approvals("jitgate-approvals", &[("alice-db", &request)]);
    let told = first.settled("RequestFiled").await;
    let learnt = told[0]["metadata"]["name"].as_str().unwrap().to_string();
    first.stop().await;

    // In another cluster, someone who may create Events in jitgate's namespace creates
    // one of that name before the same request (the same entry, word for word) is filed
    // there. Were names worked out from
    // the facts alone, jitgate's Event would be refused as another replica's, and nobody
    // told. Keyed with this deployment's own serving key, its name is another.
    let second = three_replicas().await;
    let decoy = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": learnt, "namespace": "jitgate-system"},
        "eventTime": "2026-12-07T00:00:00.000000Z", "reportingController": "example.com/decoy",
        "reportingInstance": "decoy", "action": "Nothing", "reason": "Decoy", "type": "Normal",
        "note": "nothing to see"});
    let mut attacker = second.api.conn_as(support::apiserver::TOKEN).await;
    let created = attacker
        .send(
            hyper::Method::POST,
            "/apis/events.k8s.io/v1/namespaces/jitgate-system/events",
            Some("application/json"),
            decoy.to_string().into_bytes(),
        )
        .await;
    assert_eq!(created.status, hyper::StatusCode::CREATED);
    second
        .api
        .apply_approvals("jitgate-approvals", &[("alice-db", &request)]);
    let filed = second.settled("RequestFiled").await;
    assert_eq!(filed.len(), 1, "{filed:?}");
    assert_ne!(filed[0]["metadata"]["name"], learnt.as_str());
    assert!(
        filed[0]["note"]
            .as_str()
            .unwrap()
            .ends_with("kubectl jitgate approve alice-db")
    );
    second.stop().await;
}
