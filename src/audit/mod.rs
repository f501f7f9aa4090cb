//! Decision records: one JSON line per answer, with the same keys every time, written to
//! stdout and appended to `--audit-log`, sealed into a hash chain ([`chain`]) so that a
//! deleted, reordered or edited record is detectable.
//!
//! A record is built from the request's coordinates and the decision only; `object`,
//! `oldObject` and `options` never reach it. Lines are written by one thread, so request
//! workers never block on a disk; the lines of all the requests the runtime handles in one
//! pass go to it as one batch (one hand-off, one write). Each request still waits for its
//! own line to be written, and learns if it was not.

use crate::admission::AdmissionRequest;
use crate::decision::Decision;
use jiff::Timestamp;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

pub mod chain;
mod file;
pub mod read;

use chain::Chain;
use file::LogFile;

/// Records that may wait for the writer; past this, new ones are refused (and their
/// requests denied) rather than queued without bound.
const QUEUE: usize = 16 * 1024;
/// Batches that may wait for the writer thread.
const BATCHES: usize = 64;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRecord<'a> {
    pub timestamp: String,
    pub event: &'static str,
    pub uid: Option<&'a str>,
    pub allowed: bool,
    pub decision: &'static str,
    pub reason: &'static str,
    pub policy: Option<String>,
    pub user: Option<&'a str>,
    pub groups: Option<&'a [String]>,
    pub operation: Option<&'static str>,
    pub api_group: Option<&'a str>,
    pub resource: Option<&'a str>,
    pub sub_resource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    pub dry_run: Option<bool>,
    pub approval: Option<&'a str>,
    pub approved_by: Option<&'a [String]>,
    pub expires_at: Option<String>,
    pub latency_us: u64,
}

impl<'a> DecisionRecord<'a> {
    /// The record of a decided request.
    pub fn decided(req: &'a AdmissionRequest<'_>, d: &'a Decision, now: Timestamp, latency_us: u64) -> Self {
        let approval = d.approval.as_deref();
        DecisionRecord {
            timestamp: now.to_string(),
            event: "decision",
            uid: Some(&req.uid),
            allowed: d.allowed(),
            decision: d.outcome.as_str(),
            reason: d.reason.as_str(),
            policy: (!d.policies.is_empty()).then(|| d.policies.join(",")),
            user: Some(&req.user_info.username),
            groups: Some(&req.user_info.groups),
            operation: Some(req.operation.as_str()),
            api_group: Some(&req.resource.group),
            resource: Some(&req.resource.resource),
            sub_resource: Some(&req.sub_resource),
            namespace: Some(&req.namespace),
            name: Some(&req.name),
            dry_run: Some(req.dry_run),
            approval: approval.map(|a| a.id.as_str()),
            approved_by: approval.map(|a| a.approved_by.as_slice()),
            expires_at: approval.map(|a| a.expires_at.to_string()),
            latency_us,
        }
    }

    /// The record of a body that could not be read as an AdmissionReview.
    pub fn refused(uid: Option<&'a str>, d: &'a Decision, now: Timestamp, latency_us: u64) -> Self {
        DecisionRecord {
            timestamp: now.to_string(),
            event: "decision",
            uid,
            allowed: false,
            decision: "deny",
            reason: d.reason.as_str(),
            policy: None,
            user: None,
            groups: None,
            operation: None,
            api_group: None,
            resource: None,
            sub_resource: None,
            namespace: None,
            name: None,
            dry_run: None,
            approval: None,
            approved_by: None,
            expires_at: None,
            latency_us,
        }
    }

    /// The record as one JSON line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        json_line(self)
    }
}

/// The record of one change to the approval ledger: who changed which entry, how, for
/// whom, over what scope, and how many approvers it has now.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRecord<'a> {
    pub timestamp: String,
    pub event: &'static str,
    /// The uid of the ConfigMap edit that made the change.
    pub uid: &'a str,
    /// `<configmap>/<key>`.
    pub key: &'a str,
    pub action: &'static str,
    pub editor: &'a str,
    pub editor_groups: &'a [String],
    /// `user:<name>` or `group:<name>`; null when the entry never parsed.
    pub requester: Option<String>,
    pub scope: Option<ScopeRecord<'a>>,
    pub reason: Option<&'a str>,
    pub expires_at: Option<String>,
    pub approved_by: Option<&'a [String]>,
    /// Distinct approvers other than the requester, after the change.
    pub approvers: u32,
    /// Approvers its policies require.
    pub required: Option<u32>,
    pub dry_run: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeRecord<'a> {
    pub api_group: Option<&'a str>,
    pub resource: String,
    pub namespace: &'a str,
    pub name: Option<&'a str>,
    pub operations: Option<Vec<&'static str>>,
}

impl<'a> ApprovalRecord<'a> {
    pub fn new(req: &'a AdmissionRequest<'_>, change: &'a crate::ledger::Change, now: Timestamp) -> Self {
        let entry = change.entry.as_ref();
        ApprovalRecord {
            timestamp: now.to_string(),
            event: "approval",
            uid: &req.uid,
            key: &change.id,
            action: change.action.as_str(),
            editor: &req.user_info.username,
            editor_groups: &req.user_info.groups,
            requester: entry.map(|a| match &a.subject {
                crate::approvals::Subject::User(u) => format!("user:{u}"),
                crate::approvals::Subject::Group(g) => format!("group:{g}"),
            }),
            scope: entry.map(|a| ScopeRecord {
                api_group: a.api_group.as_deref(),
                resource: a.resource_string(),
                namespace: &a.namespace,
                name: a.name.as_deref(),
                operations: a.operations.map(|ops| ops.iter().map(|o| o.as_str()).collect()),
            }),
            reason: entry.map(|a| a.reason.as_str()),
            expires_at: entry.map(|a| a.expires_at.to_string()),
            approved_by: entry.map(|a| a.approved_by.as_slice()),
            approvers: change.approvers,
            required: change.required,
            dry_run: req.dry_run,
        }
    }

    pub fn to_line(&self) -> Vec<u8> {
        json_line(self)
    }
}

/// A record as one JSON line, newline included.
fn json_line(record: &impl Serialize) -> Vec<u8> {
    let mut line = serde_json::to_vec(record).unwrap_or_else(|_| b"{}".to_vec());
    line.push(b'\n');
    line
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open audit log {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the decision record: {0}")]
    Write(String),
    #[error("the audit writer has stopped")]
    Stopped,
}

struct Job {
    line: Vec<u8>,
    done: oneshot::Sender<Result<(), String>>,
}

/// Records waiting to be handed to the writer, and whether a flush is on its way.
struct Pending {
    jobs: Mutex<Vec<Job>>,
    flush_scheduled: AtomicBool,
    to_writer: mpsc::Sender<Vec<Job>>,
}

/// Where records go. Cheap to clone.
#[derive(Clone)]
pub struct AuditSink {
    pending: Arc<Pending>,
    /// The `seq` of the last record written.
    sequence: Arc<AtomicU64>,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink").finish_non_exhaustive()
    }
}

impl AuditSink {
    /// Opens the audit log (if any) for appending, resuming its chain, and starts the
    /// writer thread. With `max_bytes`, the log is rotated when it reaches that size.
    pub fn start(to_stdout: bool, file: Option<&Path>, max_bytes: Option<u64>) -> Result<Self, AuditError> {
        let (file, chain) = match file {
            Some(path) => {
                let (log, chain) = LogFile::open(path, max_bytes)?;
                (Some(log), chain)
            }
            None => (None, Chain::default()),
        };
        let sequence = Arc::new(AtomicU64::new(chain.seq));
        let (to_writer, from_requests) = mpsc::channel(BATCHES);
        let writer = Writer {
            to_stdout,
            file,
            chain,
            sequence: sequence.clone(),
        };
        std::thread::Builder::new()
            .name("jitgate-audit".into())
            .spawn(move || writer.run(from_requests))
            .map_err(|e| AuditError::Write(e.to_string()))?;
        Ok(AuditSink {
            pending: Arc::new(Pending {
                jobs: Mutex::new(Vec::new()),
                flush_scheduled: AtomicBool::new(false),
                to_writer,
            }),
            sequence,
        })
    }

    /// The `seq` of the last record written: an anchor to compare a log's end against.
    pub fn sequence(&self) -> u64 {
        self.sequence.load(Ordering::Relaxed)
    }

    /// Queues a line and waits until it is written. Lines queued while the runtime works
    /// through its ready requests go to the writer as one batch: one hand-off (and one
    /// `write`) for many records, instead of a thread switch for each.
    pub async fn write(&self, line: Vec<u8>) -> Result<(), AuditError> {
        let (done, written) = oneshot::channel();
        {
            let mut jobs = self.pending.jobs.lock().unwrap_or_else(|e| e.into_inner());
            if jobs.len() >= QUEUE {
                return Err(AuditError::Write("the audit queue is full".into()));
            }
            jobs.push(Job { line, done });
        }
        if !self.pending.flush_scheduled.swap(true, Ordering::AcqRel) {
            tokio::spawn(flush(self.pending.clone()));
        }
        written
            .await
            .map_err(|_| AuditError::Stopped)?
            .map_err(AuditError::Write)
    }
}

async fn flush(pending: Arc<Pending>) {
    // Let the other requests of this pass through the run queue add their records first.
    tokio::task::yield_now().await;
    pending.flush_scheduled.store(false, Ordering::Release);
    let batch = std::mem::take(&mut *pending.jobs.lock().unwrap_or_else(|e| e.into_inner()));
    if batch.is_empty() {
        return;
    }
    if let Err(mpsc::error::SendError(batch)) = pending.to_writer.send(batch).await {
        for job in batch {
            let _ = job.done.send(Err("the audit writer has stopped".into()));
        }
    }
}

struct Writer {
    to_stdout: bool,
    file: Option<LogFile>,
    chain: Chain,
    sequence: Arc<AtomicU64>,
}

impl Writer {
    fn run(mut self, mut batches: mpsc::Receiver<Vec<Job>>) {
        let mut buf = Vec::with_capacity(64 * 1024);
        while let Some(mut batch) = batches.blocking_recv() {
            while let Ok(more) = batches.try_recv() {
                batch.extend(more);
            }
            let result = self.write(&batch, &mut buf).map_err(|e| e.to_string());
            for job in batch {
                let _ = job.done.send(result.clone());
            }
        }
    }

    /// Seals and writes one batch. If it cannot be written, the chain stays where it was,
    /// so the next batch links to the last record that is on disk.
    fn write(&mut self, batch: &[Job], buf: &mut Vec<u8>) -> std::io::Result<()> {
        let before = self.chain.clone();
        buf.clear();
        for job in batch {
            self.chain.seal(&job.line, buf);
        }
        let mut result = Ok(());
        if self.to_stdout {
            let mut out = std::io::stdout().lock();
            result = out.write_all(buf).and_then(|_| out.flush());
        }
        if let (Ok(()), Some(f)) = (&result, self.file.as_mut()) {
            result = f.append(buf);
        }
        match result {
            Ok(()) => self.sequence.store(self.chain.seq, Ordering::Relaxed),
            Err(_) => self.chain = before,
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_reach_the_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let sink = AuditSink::start(false, Some(&path), None).unwrap();
        for i in 0..100 {
            sink.write(format!("{{\"n\":{i}}}\n").into_bytes()).await.unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut chain = Chain::default();
        for (i, line) in text.lines().enumerate() {
            chain.follow(line.as_bytes()).unwrap();
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(record["n"], i);
        }
        assert_eq!(chain.seq, 100);
        assert_eq!(sink.sequence(), 100);
    }

    #[tokio::test]
    async fn a_full_disk_is_reported_to_the_writer() {
        let sink = AuditSink::start(false, Some(Path::new("/dev/full")), None).unwrap();
        let err = sink.write(b"{}\n".to_vec()).await.unwrap_err();
        assert!(matches!(err, AuditError::Write(_)), "{err}");
    }

    #[test]
    fn an_unopenable_audit_log_is_an_error_at_start() {
        let err = AuditSink::start(false, Some(Path::new("/nonexistent-dir/audit.jsonl")), None).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/audit.jsonl"));
    }
}
