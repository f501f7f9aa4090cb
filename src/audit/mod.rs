//! Decision records: one JSON line per answer, with the same keys every time, written to
//! `--audit-log` and stdout, sealed into a hash chain ([`chain`]) so that a deleted,
//! reordered or edited record is detectable.
//!
//! A record says what was answered, and nothing else: it is built from the request's
//! coordinates and the answer only (`object`, `oldObject` and `options` never reach it),
//! and it is rendered by the writer at the moment it is sealed. So when a request gives
//! up waiting at its deadline before the writer took its record, the record is written as
//! the `deadline_exceeded` denial the request answered; when the log cannot be written,
//! the records of that batch go to stdout as the `audit_unavailable` denials they became.
//!
//! The records of all the requests the runtime handles in one pass are sealed and written
//! as one batch (one write). Where every place records go takes a write at once (a regular
//! file, the null device), the runtime writes the batch itself. Stdout as a pipe (a
//! container's stdout) is written by the runtime too, but through a non-blocking description
//! of its own: what the pipe does not take at once is left to the writer thread, which
//! writes it (before anything after it) while the runtime sends it the next batches for a
//! while. Where one place can make a writer wait otherwise (a terminal, a socket, a FIFO
//! as `--audit-log`, a pipe that cannot be reopened non-blocking), or after a write on the
//! runtime was slow, batches go to the writer thread instead, so that request workers never
//! wait on a reader or a disk and a request still answers at its deadline. Each request
//! waits for its own record, and learns if it was not written.
//!
//! Records are held within a bound (`serve --audit-queue`, in places of [`PLACE`] bytes: a
//! record takes one place per started 4 KiB of its size, so one whose sender made its user,
//! groups or name long takes many), from when a record is accepted until it is written or
//! turned into a refusal, wherever it waits, whether or not its request still waits for
//! it; past the bound, a record is refused at once, and its request denied
//! (`audit_unavailable`), as is at once a record larger than the whole bound. So a reader
//! or a log that stops taking writes holds a bounded amount of memory (about the bound ×
//! 4 KiB of records), not one record per request, of any size, for as long as it stops.
//!
//! Nothing else in the process writes to stdout (logs go to stderr), and every write to it
//! is the writer's, under its lock: so a record the runtime left half-written is finished by
//! the writer thread before anything else of the writer's reaches the pipe. Logs could still
//! reach it in between where stderr is that same pipe (`2>&1`, runit, supervisord's
//! `redirect_stderr`): so then (seen at start by the device and inode of fds 1 and 2, or
//! when stderr cannot be told) the pipe is not reopened non-blocking and only the writer
//! thread writes it, as any place that can make a writer wait, each record in a write of
//! its own, while no log line is written ([`crate::telemetry::hold_log_lines`]: a pipe
//! takes a write of over 4 KiB in parts when it is full, and a line would land between
//! them). Log lines are written by a thread of their own, never on the runtime, and dropped
//! past a bound rather than waited for; that stdout's reader was behind is logged by the
//! writer thread once it has finished the batch.

use crate::refusal::Refusal;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

pub mod anchor;
pub mod chain;
mod file;
/// For tests elsewhere that need an audit log nobody reads.
#[cfg(test)]
pub(crate) use file::tests::fifo_read_end;
pub mod read;
mod record;
pub mod report;
pub mod verify;

pub use record::{
    Answer, ApprovalRecord, Coordinates, DecisionRecord, GrantRecord, Review, ScopeRecord, SignerRecord,
};

use chain::{Chain, ChainId};
use file::LogFile;

/// Places for records held at once by default (`serve --audit-queue`): records accepted
/// and not yet written or turned into refusals, wherever they are (queued, in a batch
/// waiting for the writer thread, in the writer's hands), each taking one place per
/// started [`PLACE`] bytes of its size. Past this, new ones are refused (and their requests
/// denied) rather than held without bound.
pub const QUEUE: usize = 16 * 1024;
/// The bytes of record one place holds: a record of up to this size (most are under 1 KiB)
/// takes one place, a larger one one per started `PLACE` bytes.
pub const PLACE: usize = 4 * 1024;
/// Batches that may wait for the writer thread.
const BATCHES: usize = 64;
/// A write on the runtime that waited longer than this for the file system (a page-cache
/// write takes microseconds; this is a disk holding writes back) sends batches to the
/// writer thread…
const SLOW_WRITE: Duration = Duration::from_millis(10);
/// …for this long, before the runtime tries again.
const SLOW_PAUSE: Duration = Duration::from_secs(10);

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
    #[error(
        "decision records would be kept nowhere: the log of record (--audit-log, else stdout) is the null or zero device, or stdout was closed; give --audit-log FILE, or send stdout where it is kept"
    )]
    Nowhere,
    #[error("the audit log {path} is {what}: {why}; give --audit-log a file of its own")]
    SharedLog {
        path: PathBuf,
        what: &'static str,
        why: &'static str,
    },
}

/// A job's progress, shared by the request that waits for it and the writer.
const PENDING: u8 = 0;
/// The writer sealed the record as it was queued.
const TAKEN: u8 = 1;
/// The request gave up at its deadline first: the record is sealed as that refusal.
const ABANDONED: u8 = 2;

struct Job {
    record: DecisionRecord,
    /// When the request stops waiting: a record taken later is written as that refusal.
    deadline: Instant,
    /// Records that follow the decision record only when it is written as decided (the
    /// approval records of a ledger edit: a refused edit changed nothing).
    then: Vec<Vec<u8>>,
    state: Arc<AtomicU8>,
    done: oneshot::Sender<Result<Sealed, Refusal>>,
    /// Its places in the bound of records held; given back when the job is dropped,
    /// however it leaves (written, refused, or dropped unwritten with the writer).
    slot: Slot,
}

impl Job {
    /// Gives back the job's places, then tells its request `told`: a request that hears may
    /// record again at once, and finds its places free.
    fn tell(self, told: Result<Sealed, Refusal>) {
        let Job { done, slot, .. } = self;
        drop(slot);
        let _ = done.send(told);
    }
}

/// The places one record takes in the bound (`--audit-queue`), taken when it is accepted
/// and given back when dropped: the count cannot leak either way, whichever path its job
/// leaves by.
struct Slot {
    held: Arc<AtomicUsize>,
    places: usize,
}

impl Slot {
    /// Takes `places` in `held` if that leaves at most `bound` taken; never when `places`
    /// alone is more than `bound`.
    fn take(held: &Arc<AtomicUsize>, bound: usize, places: usize) -> Option<Slot> {
        held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (places <= bound.saturating_sub(n)).then_some(n + places)
        })
        .ok()
        .map(|_| Slot {
            held: held.clone(),
            places,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.held.fetch_sub(self.places, Ordering::AcqRel);
    }
}

/// The places a record takes, with the records that follow it (`then`): one per started
/// [`PLACE`] bytes of their size, at least one.
fn places(record: &DecisionRecord, then: &[Vec<u8>]) -> usize {
    let then: usize = then
        .iter()
        .map(|line| line.len() + std::mem::size_of::<Vec<u8>>())
        .sum();
    (record.size() + then).div_ceil(PLACE).max(1)
}

/// Where a record landed in the chain: its `seq` and `hash`, which the answer can point to
/// (an admission response's `auditAnnotations`), so that an auditor can go from the API
/// server's audit event to jitgate's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub seq: u64,
    pub hash: String,
}

impl std::fmt::Display for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seq={},hash={}", self.seq, self.hash)
    }
}

/// Records waiting to be written, whether a flush is on its way, and who writes them.
struct Pending {
    jobs: Mutex<Vec<Job>>,
    /// Places taken by the records held anywhere (see [`QUEUE`]): in `jobs`, in batches on
    /// their way to the writer thread, in the writer's hands.
    held: Arc<AtomicUsize>,
    /// How many places may be taken at once.
    bound: usize,
    flush_scheduled: AtomicBool,
    to_writer: mpsc::Sender<Vec<Job>>,
    /// Shared by the runtime (when it writes) and the writer thread.
    writer: Arc<Mutex<Writer>>,
    here: WriteHere,
}

/// Whether the runtime may write a batch itself.
struct WriteHere {
    /// Every place records go takes a write at once.
    possible: bool,
    /// After a slow write, not before this many µs past `epoch`.
    paused_until: AtomicU64,
    epoch: Instant,
}

impl WriteHere {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn allowed(&self) -> bool {
        self.possible && self.now() >= self.paused_until.load(Ordering::Relaxed)
    }

    /// Sends batches to the writer thread for `SLOW_PAUSE`.
    fn pause(&self) {
        let until = self.now().saturating_add(SLOW_PAUSE.as_micros() as u64);
        self.paused_until.store(until, Ordering::Relaxed);
    }

    /// A write on the runtime waited `took` for the file system: if that was slow, pause
    /// writing here.
    fn took(&self, took: Duration) {
        if took > SLOW_WRITE {
            self.pause();
            tracing::warn!(
                took_ms = took.as_secs_f64() * 1e3,
                pause_secs = SLOW_PAUSE.as_secs(),
                "an audit write was slow; records go through the writer thread for a while"
            );
        }
    }
}

/// The head of a chain: its id, and the `seq` and `hash` of the last record written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub chain: ChainId,
    pub seq: u64,
    pub hash: String,
}

/// Where records go. Cheap to clone.
#[derive(Clone)]
pub struct AuditSink {
    pending: Arc<Pending>,
    /// The last record written.
    head: Arc<Mutex<Head>>,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink").finish_non_exhaustive()
    }
}

impl AuditSink {
    /// Opens the audit log (if any) for appending and starts the writer thread, which
    /// writes the chain `id`. Its first record follows the log's last record, if any, else
    /// `after` (the replica's last anchored chain). With `max_bytes`, the log is rotated
    /// when it reaches that size. Records held at once take at most `queue` places (at
    /// least 1; see [`PLACE`]).
    pub fn start(
        id: ChainId,
        after: Option<chain::Follows>,
        to_stdout: bool,
        file: Option<&Path>,
        max_bytes: Option<u64>,
        queue: usize,
    ) -> Result<Self, AuditError> {
        // Every answer leaves a record: the log of record (the file when there is one, else
        // stdout) must keep what is written to it. Stdout closed when `serve` starts is
        // found on the null device.
        let stdout = file::stdout_metadata();
        let nowhere = match file {
            Some(path) => std::fs::metadata(path).is_ok_and(|m| file::keeps_nothing(&m)),
            None => stdout.as_ref().is_some_and(file::keeps_nothing),
        };
        if nowhere {
            return Err(AuditError::Nowhere);
        }
        // The log is written a batch at a time, without regard for what else writes there.
        if let Some(path) = file
            && let Ok(log) = std::fs::metadata(path)
        {
            let shared = |other: Option<&std::fs::Metadata>| other.is_some_and(|o| file::same_file(&log, o));
            let refuse = |what, why| AuditError::SharedLog {
                path: path.to_path_buf(),
                what,
                why,
            };
            if shared(stdout.as_ref()) {
                return Err(refuse(
                    "stdout",
                    "records go to stdout anyway, and each would be written twice",
                ));
            }
            if shared(file::stderr_metadata().as_ref()) {
                return Err(refuse("stderr", "a log line would land inside a record"));
            }
        }
        let (file, follows) = match file {
            Some(path) => {
                let (log, follows) = LogFile::open(path, max_bytes)?;
                (Some(log), follows.or(after))
            }
            None => (None, after),
        };
        let chain = Chain::new(id, follows);
        let head = Arc::new(Mutex::new(Head {
            chain: chain.id.clone(),
            seq: chain.seq,
            hash: chain.hash.clone(),
        }));
        let (to_writer, from_requests) = mpsc::channel(BATCHES);
        // Stdout is written when there is no file, and besides one when asked; never when it
        // is the null device, where a write does nothing.
        let stdout_null = stdout.as_ref().is_some_and(file::is_null_device);
        let stdout_at_once = stdout.as_ref().is_some_and(file::takes_writes_at_once);
        let stdout_written = (file.is_none() || to_stdout) && !stdout_null;
        // A pipe is written here through a non-blocking description of its own; without
        // one, as any place that can make a writer wait, by the writer thread only.
        // Not when stderr, where logs go, is that same pipe (`2>&1`): a log line written
        // while the runtime leaves a record half-written would land inside it.
        // And the writer thread then writes each record in a write of its own, while no log
        // line is written (a pipe takes a write of over 4 KiB in parts when it is full).
        let mut one_write_per_record = false;
        let nonblocking = match &stdout {
            Some(meta) if stdout_written && !stdout_at_once => {
                let stderr = file::stderr_metadata();
                if file::stderr_shares_the_pipe(meta, stderr.as_ref()) {
                    one_write_per_record = true;
                    tracing::info!(
                        "stderr is stdout's pipe (2>&1): records go to it through the audit writer thread only, each in a write of its own, so that no log line lands inside a record"
                    );
                }
                file::stdout_nonblocking(1, meta, stderr.as_ref())
            }
            _ => None,
        };
        let possible = (!stdout_written || stdout_at_once || nonblocking.is_some())
            && file.as_ref().is_none_or(LogFile::takes_writes_at_once);
        let stdout = Stdout {
            nonblocking,
            blocking: None,
            one_write_per_record,
        };
        let writer = Arc::new(Mutex::new(Writer::new(
            chain,
            head.clone(),
            file,
            stdout,
            to_stdout && !stdout_null,
            stdout_null,
        )));
        let shared = writer.clone();
        std::thread::Builder::new()
            .name("jitgate-audit".into())
            .spawn(move || Writer::run(&shared, from_requests))
            .map_err(|e| AuditError::Write(e.to_string()))?;
        Ok(AuditSink {
            pending: Arc::new(Pending {
                jobs: Mutex::new(Vec::new()),
                held: Arc::new(AtomicUsize::new(0)),
                bound: queue.max(1),
                flush_scheduled: AtomicBool::new(false),
                to_writer,
                writer,
                here: WriteHere {
                    possible,
                    paused_until: AtomicU64::new(0),
                    epoch: Instant::now(),
                },
            }),
            head,
        })
    }

    /// The `seq` of the last record written.
    pub fn sequence(&self) -> u64 {
        self.head().seq
    }

    /// Places taken now (of `queue`) by the records held: accepted, and not yet written or
    /// turned into refusals; one per started [`PLACE`] bytes of each.
    pub fn queue_held(&self) -> usize {
        self.pending.held.load(Ordering::Acquire)
    }

    /// The chain's head: what an anchor records.
    pub fn head(&self) -> Head {
        self.head.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records what answers no request (a grant's Role and RoleBinding created or
    /// removed), sealed into the chain like any record, off the runtime's threads.
    pub async fn note(&self, lines: Vec<Vec<u8>>) -> Result<(), AuditError> {
        let writer = self.pending.writer.clone();
        tokio::task::spawn_blocking(move || {
            writer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .write_lines(&lines)
        })
        .await
        .map_err(|e| AuditError::Write(e.to_string()))?
    }

    /// Records an answer before it is given, and says which answer to give:
    /// - `Ok(sealed)`: the record was written as it was queued, where `sealed` says;
    ///   answer as decided.
    /// - `Err(DeadlineExceeded)`: `deadline` passed before the record was taken to be
    ///   written; it is written as that refusal (whenever the log takes writes again).
    /// - `Err(AuditUnavailable)`: the log could not be written; the record went to stdout
    ///   (where records go too) as that refusal. Or, at once, the records held leave no
    ///   room for this one (the log is not taking them, or not fast enough), or it is
    ///   larger than the whole bound: this answer is recorded only in a log line.
    ///
    /// A record taken to be written is waited for past the deadline: answering otherwise
    /// than a record that may still land would make the two disagree.
    ///
    /// Records that follow it (`then`) are written after it, and only when it is written
    /// as queued. A refusal's record is written as it is, whatever happens.
    pub async fn record(
        &self,
        record: DecisionRecord,
        then: Vec<Vec<u8>>,
        deadline: Instant,
    ) -> Result<Sealed, Refusal> {
        let (done, mut written) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(PENDING));
        let places = places(&record, &then);
        let Some(slot) = Slot::take(&self.pending.held, self.pending.bound, places) else {
            if places > self.pending.bound {
                tracing::error!(
                    uid = record.uid.as_deref(),
                    answer = "deny",
                    reason = "audit_unavailable",
                    places,
                    audit_queue = self.pending.bound,
                    "the decision record is larger than the whole audit queue; this answer is recorded only in this log line"
                );
            } else {
                tracing::error!(
                    uid = record.uid.as_deref(),
                    answer = "deny",
                    reason = "audit_unavailable",
                    places,
                    "the audit queue is full; this answer is recorded only in this log line"
                );
            }
            return Err(Refusal::AuditUnavailable);
        };
        self.pending
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Job {
                record,
                deadline,
                then,
                state: state.clone(),
                done,
                slot,
            });
        if !self.pending.flush_scheduled.swap(true, Ordering::AcqRel) {
            tokio::spawn(flush(self.pending.clone()));
        }
        let result = match tokio::time::timeout_at(deadline.into(), &mut written).await {
            Ok(result) => result,
            Err(_) => {
                if state
                    .compare_exchange(PENDING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Err(Refusal::DeadlineExceeded);
                }
                written.await
            }
        };
        result.unwrap_or(Err(Refusal::AuditUnavailable))
    }
}

async fn flush(pending: Arc<Pending>) {
    // Let the other requests of this pass through the run queue add their records first.
    BackOfTheQueue(false).await;
    pending.flush_scheduled.store(false, Ordering::Release);
    let batch = std::mem::take(&mut *pending.jobs.lock().unwrap_or_else(|e| e.into_inner()));
    if batch.is_empty() {
        return;
    }
    let Some(batch) = pending.write_here(batch) else {
        return;
    };
    if let Err(mpsc::error::SendError(batch)) = pending.to_writer.send(batch).await {
        for job in batch {
            tracing::error!(
                uid = job.record.uid.as_deref(),
                "the audit writer has stopped; record not written"
            );
            job.tell(Err(Refusal::AuditUnavailable));
        }
    }
}

/// Goes to the back of this worker's run queue once: the tasks already runnable run first.
/// (`tokio::task::yield_now` waits for the next poll of the I/O driver as well, which is a
/// system call more per pass and, with one connection, per request.)
struct BackOfTheQueue(bool);

impl std::future::Future for BackOfTheQueue {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

impl Pending {
    /// Writes `batch` on this thread when every sink takes writes at once (or, a pipe, is
    /// written without blocking), no write here was slow lately, and the writer is free
    /// with nothing left unfinished; else gives it back for the writer thread. When the
    /// pipe took only part of it, the rest is the writer thread's to finish: an empty batch
    /// comes back, to wake that thread.
    fn write_here(&self, batch: Vec<Job>) -> Option<Vec<Job>> {
        if !self.here.allowed() {
            return Some(batch);
        }
        let mut writer = match self.writer.try_lock() {
            Ok(w) => w,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            // The writer thread has it, perhaps stuck on a write: never wait for it here.
            Err(std::sync::TryLockError::WouldBlock) => return Some(batch),
        };
        if writer.unfinished.is_some() {
            return Some(batch);
        }
        let waited = writer.write(batch, true);
        drop(writer);
        match waited {
            Some(waited) => {
                self.here.took(waited);
                None
            }
            // Nothing is logged here: on the runtime, with a record perhaps half-written
            // (the writer thread says it once it has finished the batch).
            None => {
                self.here.pause();
                Some(Vec::new())
            }
        }
    }
}

/// What became of a job when the writer came to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Written as queued; its request waits for it.
    Taken,
    /// Its deadline had passed: written as `deadline_exceeded`, which its request is told.
    TooLate,
    /// Its request gave up at its deadline and answered `deadline_exceeded` already.
    GaveUp,
}

/// How the writer writes to stdout.
struct Stdout {
    /// A non-blocking description of stdout, a pipe (see [`file::pipe_nonblocking`]): what
    /// the runtime writes through, never waiting.
    nonblocking: Option<File>,
    /// Where blocking writes go: `None`, the process's stdout (tests give a pipe of their
    /// own, the one `nonblocking` describes).
    blocking: Option<File>,
    /// Stderr is the same pipe: each record (line) is written in a write of its own, while
    /// no log line is written ([`crate::telemetry::hold_log_lines`]), so that log lines
    /// fall between records.
    one_write_per_record: bool,
}

/// How far a write got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wrote {
    All,
    /// Stdout's non-blocking description took this many bytes of it, and no more at once.
    StdoutUpTo(usize),
}

/// A batch the runtime could not finish without waiting on stdout's reader: the writer
/// thread finishes it, then answers the batch's requests.
struct Unfinished {
    /// What stdout (a pipe) did not take of the batch, which is written wholly elsewhere
    /// (the log file) or not at all; `None`: the log file failed, and the batch's records
    /// go to stdout as the `audit_unavailable` refusals they became, by the writer thread.
    rest: Option<Vec<u8>>,
    /// The chain before the batch: where it goes back to if stdout, the log of record,
    /// fails.
    before: Chain,
    batch: Vec<Job>,
    fates: Vec<Fate>,
    sealed: Vec<Sealed>,
}

struct Writer {
    /// Besides the file.
    to_stdout: bool,
    /// Stdout is the null device: what would be written there is not.
    stdout_null: bool,
    stdout: Stdout,
    /// Left by the runtime for the writer thread, which finishes it before writing more.
    unfinished: Option<Unfinished>,
    /// The runtime left a batch unfinished because stdout's reader was behind: the writer
    /// thread says so once it has finished it (a log line, never on the runtime).
    reader_behind: bool,
    file: Option<LogFile>,
    chain: Chain,
    head: Arc<Mutex<Head>>,
    buf: Vec<u8>,
}

impl Writer {
    /// A writer of `chain`, whose head is `head`, to `file` and (`to_stdout`) to `stdout`;
    /// `stdout_null`: stdout is the null device, and nothing is written there.
    fn new(
        chain: Chain,
        head: Arc<Mutex<Head>>,
        file: Option<LogFile>,
        stdout: Stdout,
        to_stdout: bool,
        stdout_null: bool,
    ) -> Writer {
        Writer {
            to_stdout,
            stdout_null,
            stdout,
            unfinished: None,
            reader_behind: false,
            file,
            chain,
            head,
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    /// Writes sealed records where they go (the log, else stdout; and stdout besides when
    /// asked), and moves the head to the chain's end once they are written. `here`: on the
    /// runtime, where stdout is written only without blocking; what it did not take, the
    /// caller leaves for the writer thread (and the head stays where it was until then).
    fn append(&mut self, buf: &[u8], here: bool) -> std::io::Result<Wrote> {
        let wrote = match self.file.as_mut() {
            Some(f) => {
                f.append(buf)?;
                if self.to_stdout {
                    match self.stdout.write(buf, here) {
                        Ok(wrote) => wrote,
                        Err(e) => {
                            tracing::warn!(error = %e, "records written to the audit log but not to stdout");
                            Wrote::All
                        }
                    }
                } else {
                    Wrote::All
                }
            }
            None if self.stdout_null => Wrote::All,
            None => self.stdout.write(buf, here)?,
        };
        if wrote == Wrote::All {
            self.advance_head();
        }
        Ok(wrote)
    }

    fn advance_head(&self) {
        let mut head = self.head.lock().unwrap_or_else(|e| e.into_inner());
        head.seq = self.chain.seq;
        head.hash.clone_from(&self.chain.hash);
    }

    /// Seals and writes records that answer no request; on failure the chain stays where
    /// it was.
    fn write_lines(&mut self, lines: &[Vec<u8>]) -> Result<(), AuditError> {
        self.finish();
        let before = self.chain.clone();
        let mut buf = Vec::new();
        for line in lines {
            self.chain.seal(line, &mut buf);
        }
        self.append(&buf, false).map(|_| ()).map_err(|e| {
            self.chain = before;
            AuditError::Write(e.to_string())
        })
    }

    fn run(writer: &Mutex<Writer>, mut batches: mpsc::Receiver<Vec<Job>>) {
        while let Some(mut batch) = batches.blocking_recv() {
            while let Ok(more) = batches.try_recv() {
                batch.extend(more);
            }
            let mut writer = writer.lock().unwrap_or_else(|e| e.into_inner());
            writer.finish();
            if !batch.is_empty() {
                let _ = writer.write(batch, false);
            }
            let behind = std::mem::take(&mut writer.reader_behind);
            drop(writer);
            if behind {
                tracing::info!(
                    pause_secs = SLOW_PAUSE.as_secs(),
                    "stdout's reader was behind; the writer thread finished the records it did not take, and writes the next ones for a while"
                );
            }
        }
    }

    /// Writes what the runtime left unfinished on stdout (blocking), then answers its
    /// batch's requests: as written, or, if stdout is the log of record and failed (or the
    /// log file failed already), `audit_unavailable` with the chain back where it was
    /// before that batch.
    fn finish(&mut self) {
        let Some(Unfinished {
            rest,
            before,
            mut batch,
            fates,
            sealed,
        }) = self.unfinished.take()
        else {
            return;
        };
        let Some(rest) = rest else {
            // The chain is back where it was before the batch already.
            self.record_elsewhere(&mut batch, &fates, &mut Vec::new());
            answer(batch, fates, sealed, &Err(Refusal::AuditUnavailable));
            return;
        };
        let result = match self.stdout.write(&rest, false) {
            Ok(_) => {
                self.advance_head();
                Ok(())
            }
            Err(e) if self.file.is_some() => {
                tracing::warn!(error = %e, "records written to the audit log but not to stdout");
                self.advance_head();
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, records = batch.len(), "audit log not written; the answers become audit_unavailable denials");
                self.chain = before;
                self.record_elsewhere(&mut batch, &fates, &mut Vec::new());
                Err(Refusal::AuditUnavailable)
            }
        };
        answer(batch, fates, sealed, &result);
    }

    /// Seals and writes one batch, each record as what its request answers. A record whose
    /// request gave up, or whose deadline passed before it got here, is written as the
    /// `deadline_exceeded` refusal that request answers. If the log (stdout when there is
    /// none) cannot be written, the chain stays where it was, so the next batch links to
    /// the last record that is on disk; the batch's records, now `audit_unavailable`
    /// refusals, go to stdout if records go there too. Returns how long the writes took.
    ///
    /// `here`: on the runtime. Then stdout (a pipe) is written only as far as it takes
    /// without blocking; if that is not all, the rest is left unfinished for the writer
    /// thread, the batch's requests wait for it, and this returns `None`.
    fn write(&mut self, mut batch: Vec<Job>, here: bool) -> Option<Duration> {
        if !here {
            self.finish();
        }
        let mut buf = std::mem::take(&mut self.buf);
        let before = self.chain.clone();
        buf.clear();
        let now = Instant::now();
        let mut fates = Vec::with_capacity(batch.len());
        let mut sealed = Vec::with_capacity(batch.len());
        for job in &mut batch {
            let fate = if now < job.deadline {
                match job
                    .state
                    .compare_exchange(PENDING, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => Fate::Taken,
                    Err(_) => Fate::GaveUp,
                }
            } else {
                match job
                    .state
                    .compare_exchange(PENDING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => Fate::TooLate,
                    Err(_) => Fate::GaveUp,
                }
            };
            if fate != Fate::Taken {
                job.record.refuse(Refusal::DeadlineExceeded);
            }
            self.chain.seal(&job.record.to_line(), &mut buf);
            sealed.push(Sealed {
                seq: self.chain.seq,
                hash: self.chain.hash.clone(),
            });
            if fate == Fate::Taken && matches!(job.record.answer, Answer::Decided { .. }) {
                for line in &job.then {
                    self.chain.seal(line, &mut buf);
                }
            }
            fates.push(fate);
        }
        let writing = Instant::now();
        let result = match self.append(&buf, here) {
            Ok(Wrote::All) => Ok(()),
            Ok(Wrote::StdoutUpTo(n)) => {
                self.reader_behind = true;
                self.unfinished = Some(Unfinished {
                    rest: Some(buf[n..].to_vec()),
                    before,
                    batch,
                    fates,
                    sealed,
                });
                self.buf = buf;
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, records = batch.len(), "audit log not written; the answers become audit_unavailable denials");
                self.chain = before.clone();
                if here && self.stdout.nonblocking.is_some() && self.file.is_some() && self.to_stdout {
                    // The refusals' records go to stdout, a pipe: the writer thread writes
                    // them, never the runtime, which must not wait on the pipe's reader.
                    self.unfinished = Some(Unfinished {
                        rest: None,
                        before,
                        batch,
                        fates,
                        sealed,
                    });
                    self.buf = buf;
                    return None;
                }
                self.record_elsewhere(&mut batch, &fates, &mut buf);
                Err(Refusal::AuditUnavailable)
            }
        };
        let waited = writing.elapsed();
        self.buf = buf;
        answer(batch, fates, sealed, &result);
        Some(waited)
    }

    /// The records of a batch the log did not take, as the refusals they became: to
    /// stdout when records go there besides a log file (sealed as they would have been in
    /// the log, which itself continues without a gap), else to the error log.
    fn record_elsewhere(&self, batch: &mut [Job], fates: &[Fate], buf: &mut Vec<u8>) {
        for (job, fate) in batch.iter_mut().zip(fates) {
            if *fate == Fate::Taken {
                job.record.refuse(Refusal::AuditUnavailable);
            }
        }
        if self.file.is_some() && self.to_stdout {
            let mut scratch = self.chain.clone();
            buf.clear();
            for job in batch.iter() {
                scratch.seal(&job.record.to_line(), buf);
            }
            if self.stdout.write(buf, false).is_ok() {
                return;
            }
        }
        for job in batch.iter() {
            let (decision, reason, _) = job.record.labels();
            tracing::error!(
                uid = job.record.uid.as_deref(),
                decision,
                reason,
                "record not written anywhere but this log line"
            );
        }
    }
}

/// Tells each request of a written batch what became of its record.
fn answer(batch: Vec<Job>, fates: Vec<Fate>, sealed: Vec<Sealed>, result: &Result<(), Refusal>) {
    for ((job, fate), sealed) in batch.into_iter().zip(fates).zip(sealed) {
        match fate {
            Fate::Taken => job.tell(result.clone().map(|()| sealed)),
            Fate::TooLate => job.tell(Err(Refusal::DeadlineExceeded)),
            // Its request has answered already; dropping the job gives back its places.
            Fate::GaveUp => drop(job),
        }
    }
}

impl Stdout {
    /// Writes `buf` to stdout. `here` (on the runtime) through the non-blocking
    /// description, as far as the pipe takes it at once; else blocking, all of it.
    fn write(&self, buf: &[u8], here: bool) -> std::io::Result<Wrote> {
        if here && let Some(mut pipe) = self.nonblocking.as_ref() {
            let mut n = 0;
            while n < buf.len() {
                match pipe.write(&buf[n..]) {
                    Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(Wrote::StdoutUpTo(n)),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(Wrote::All);
        }
        let lines = if self.one_write_per_record {
            buf.split_inclusive(|b| *b == b'\n').collect()
        } else {
            vec![buf]
        };
        // Where stderr is this pipe, no log line is written while a record is: a record of
        // over 4 KiB goes into a full pipe in parts.
        let hold = || self.one_write_per_record.then(crate::telemetry::hold_log_lines);
        match self.blocking.as_ref() {
            Some(mut out) => {
                for line in lines {
                    let _held = hold();
                    out.write_all(line)?;
                }
            }
            None => {
                let mut out = std::io::stdout().lock();
                for line in lines {
                    let _held = hold();
                    out.write_all(line).and_then(|_| out.flush())?;
                }
            }
        }
        Ok(Wrote::All)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use std::time::Duration;

    fn refusal_record(uid: &str) -> DecisionRecord {
        DecisionRecord::refused(
            Review::Admission,
            Some(uid.into()),
            None,
            Refusal::WrongMethod("/validate"),
            Timestamp::now(),
            1,
        )
    }

    /// The record of an allowed answer (which a refusal after the fact turns into a denial).
    fn allowed_record(uid: &str) -> DecisionRecord {
        let mut record = refusal_record(uid);
        record.answer = Answer::Decided {
            outcome: "allow",
            reason: "approved",
            approval: None,
            refused_entry: None,
        };
        record
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    /// A place of its own, for a job made by hand.
    fn slot() -> Slot {
        Slot::take(&Arc::new(AtomicUsize::new(0)), 1, 1).unwrap()
    }

    #[tokio::test]
    async fn records_reach_the_file_in_order_each_sealed_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let sink = AuditSink::start(ChainId::new("test"), None, false, Some(&path), None, QUEUE).unwrap();
        for i in 0..100 {
            sink.record(refusal_record(&format!("u{i}")), Vec::new(), later())
                .await
                .unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut chain = Chain::new(sink.head().chain, None);
        for (i, line) in text.lines().enumerate() {
            chain.follow(line.as_bytes()).unwrap();
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(record["uid"], format!("u{i}"));
            assert_eq!(
                (record["reason"].as_str(), record["code"].as_u64()),
                (Some("bad_request"), Some(405))
            );
        }
        assert_eq!(chain.seq, 100);
        assert_eq!(sink.sequence(), 100);
    }

    #[tokio::test]
    async fn a_full_disk_turns_the_answer_into_audit_unavailable() {
        let sink = AuditSink::start(
            ChainId::new("test"),
            None,
            false,
            Some(Path::new("/dev/full")),
            None,
            QUEUE,
        )
        .unwrap();
        let err = sink
            .record(refusal_record("u"), Vec::new(), later())
            .await
            .unwrap_err();
        assert_eq!(err, Refusal::AuditUnavailable);
        assert_eq!(sink.sequence(), 0, "nothing reached the log");
    }

    #[test]
    fn a_record_refused_after_the_fact_says_so_and_names_no_approval() {
        let mut record = refusal_record("u");
        record.answer = Answer::Decided {
            outcome: "allow",
            reason: "approved",
            approval: None,
            refused_entry: None,
        };
        record.refuse(Refusal::DeadlineExceeded);
        let line: serde_json::Value = serde_json::from_slice(&record.to_line()).unwrap();
        assert_eq!(
            (
                line["allowed"].as_bool(),
                line["decision"].as_str(),
                line["reason"].as_str(),
                line["code"].as_u64()
            ),
            (Some(false), Some("deny"), Some("deadline_exceeded"), Some(503))
        );
        // A refusal stays the refusal it was.
        let mut refused = refusal_record("v");
        refused.refuse(Refusal::AuditUnavailable);
        assert!(matches!(refused.answer, Answer::Refused(Refusal::WrongMethod(_))));
    }

    #[test]
    fn a_record_reached_after_its_deadline_is_written_as_the_refusal_its_request_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (file, _) = LogFile::open(&path, None).unwrap();
        let mut writer = test_writer(Some(file), None, None, false, false);
        let job = |uid: &str, deadline| {
            let (done, answer) = oneshot::channel();
            let mut record = refusal_record(uid);
            record.answer = Answer::Decided {
                outcome: "allow",
                reason: "approved",
                approval: None,
                refused_entry: None,
            };
            let state = Arc::new(AtomicU8::new(PENDING));
            (
                Job {
                    record,
                    deadline,
                    then: vec![b"{\"then\":1}\n".to_vec()],
                    state: state.clone(),
                    done,
                    slot: slot(),
                },
                answer,
                state,
            )
        };
        let (late, late_answer, late_state) = job("late", Instant::now() - Duration::from_millis(1));
        let (timely, mut timely_answer, _) = job("timely", later());
        writer.write(vec![late, timely], false);

        assert_eq!(
            late_answer.blocking_recv().unwrap(),
            Err(Refusal::DeadlineExceeded)
        );
        assert_eq!(late_state.load(Ordering::Acquire), ABANDONED);
        assert_eq!(timely_answer.try_recv().unwrap().unwrap().seq, 2);
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let said: Vec<_> = lines
            .iter()
            .map(|l| (l["uid"].as_str(), l["reason"].as_str(), l["allowed"].as_bool()))
            .collect();
        // The late record says what its request answered, and what follows only an
        // allowed answer follows the timely one alone.
        assert_eq!(
            said,
            [
                (Some("late"), Some("deadline_exceeded"), Some(false)),
                (Some("timely"), Some("approved"), Some(true)),
                (None, None, None),
            ]
        );
    }

    /// A FIFO standing in for stdout: its read end, its (blocking) write end, and a
    /// non-blocking description of that write end.
    fn stdout_pipe(dir: &Path) -> (File, File, File) {
        use std::os::fd::AsRawFd;
        let (reader, blocking) = file::tests::fifo(&dir.join("stdout"));
        let nonblocking = file::pipe_nonblocking(blocking.as_raw_fd(), &blocking.metadata().unwrap())
            .expect("a pipe reopens non-blocking");
        (reader, blocking, nonblocking)
    }

    /// A writer of a new chain, to `file` and, with `to_stdout`, to a stdout described by
    /// `nonblocking` and `blocking` (see [`Stdout`]); `stdout_null`: stdout is the null
    /// device.
    fn test_writer(
        file: Option<LogFile>,
        nonblocking: Option<File>,
        blocking: Option<File>,
        to_stdout: bool,
        stdout_null: bool,
    ) -> Writer {
        let chain = Chain::default();
        let head = Arc::new(Mutex::new(Head {
            chain: chain.id.clone(),
            seq: 0,
            hash: chain.hash.clone(),
        }));
        let stdout = Stdout {
            nonblocking,
            blocking,
            one_write_per_record: false,
        };
        Writer::new(chain, head, file, stdout, to_stdout, stdout_null)
    }

    /// A writer of stdout only (no log file), as the shipped Deployment runs.
    fn stdout_writer(blocking: File, nonblocking: File) -> Writer {
        test_writer(None, Some(nonblocking), Some(blocking), true, false)
    }

    type Told = oneshot::Receiver<Result<Sealed, Refusal>>;

    /// Jobs of allowed answers (which a refusal after the fact turns into denials).
    fn jobs(uids: impl Iterator<Item = String>) -> (Vec<Job>, Vec<Told>) {
        uids.map(|uid| {
            let (done, answer) = oneshot::channel();
            let job = Job {
                record: allowed_record(&uid),
                deadline: later(),
                then: Vec::new(),
                state: Arc::new(AtomicU8::new(PENDING)),
                done,
                slot: slot(),
            };
            (job, answer)
        })
        .unzip()
    }

    /// The records in what stdout's reader got, after lines that are not records: each
    /// whole, in chain order (from seq 1).
    fn records_in(read: &[u8]) -> Vec<String> {
        said_in(read).into_iter().map(|(uid, _, _)| uid).collect()
    }

    /// What each record in what stdout's reader got says: uid, decision, reason.
    fn said_in(read: &[u8]) -> Vec<(String, String, String)> {
        let mut chain = Chain::default();
        let mut said = Vec::new();
        for line in read.split_inclusive(|b| *b == b'\n') {
            if line.starts_with(b"{\"filler\"") {
                continue;
            }
            chain.follow(line).expect("a whole record, next in the chain");
            let record: serde_json::Value = serde_json::from_slice(line).unwrap();
            let field = |k: &str| record[k].as_str().unwrap().to_string();
            said.push((field("uid"), field("decision"), field("reason")));
        }
        said
    }

    /// Fills the pipe through `nonblocking`, then reads `room` bytes of it (less than a
    /// batch of 40 records needs). Returns what was read.
    fn fill(nonblocking: &File, reader: &mut File, room: usize) -> Vec<u8> {
        use std::io::Read;
        let filler = format!("{{\"filler\":\"{}\"}}\n", "x".repeat(500));
        let mut filled = 0;
        while (&*nonblocking).write(filler.as_bytes()).is_ok() {
            filled += 1;
        }
        assert!(filled > 0);
        let mut read = vec![0u8; room];
        reader.read_exact(&mut read).unwrap();
        read
    }

    /// What the runtime writes through (as `AuditSink::start` makes it, stdout a pipe).
    fn pending_on(writer: Writer) -> (Arc<Pending>, mpsc::Receiver<Vec<Job>>) {
        let (to_writer, from_requests) = mpsc::channel(BATCHES);
        let pending = Pending {
            jobs: Mutex::new(Vec::new()),
            held: Arc::new(AtomicUsize::new(0)),
            bound: QUEUE,
            flush_scheduled: AtomicBool::new(false),
            to_writer,
            writer: Arc::new(Mutex::new(writer)),
            here: WriteHere {
                possible: true,
                paused_until: AtomicU64::new(0),
                epoch: Instant::now(),
            },
        };
        (Arc::new(pending), from_requests)
    }

    /// Reads the rest of the pipe, on a thread of its own.
    fn drain(mut reader: File) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut rest = Vec::new();
            std::io::Read::read_to_end(&mut reader, &mut rest).unwrap();
            rest
        })
    }

    #[test]
    fn a_batch_after_an_unfinished_one_is_left_to_the_writer_thread_unwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (mut reader, blocking, nonblocking) = stdout_pipe(dir.path());
        let mut read = fill(&nonblocking, &mut reader, 6000);
        let (pending, _from_requests) = pending_on(stdout_writer(blocking, nonblocking));
        let (batch, mut first) = jobs((0..40).map(|i| format!("a{i}")));
        let back = pending.write_here(batch).expect("the pipe took part of it");
        assert!(back.is_empty(), "an empty batch, to wake the writer thread");
        assert!(pending.writer.lock().unwrap().unfinished.is_some());
        // As if the pause had run out before the writer thread came to the unfinished
        // batch: the next batch is still not written here, but given back whole.
        pending.here.paused_until.store(0, Ordering::Relaxed);
        let (batch, second) = jobs((0..3).map(|i| format!("b{i}")));
        let back = pending.write_here(batch).expect("not written on the runtime");
        assert_eq!(back.len(), 3);
        for a in &mut first {
            assert_eq!(a.try_recv(), Err(oneshot::error::TryRecvError::Empty));
        }
        // The writer thread: the first batch whole, then the second.
        let drained = drain(reader);
        let mut writer = pending.writer.lock().unwrap();
        assert!(writer.write(back, false).is_some());
        let seqs: Vec<u64> = first
            .into_iter()
            .chain(second)
            .map(|mut a| a.try_recv().unwrap().unwrap().seq)
            .collect();
        assert_eq!(seqs, (1..=43).collect::<Vec<_>>());
        drop(writer);
        drop(pending);
        read.extend(drained.join().unwrap());
        let read = &read[read.iter().position(|b| *b == b'\n').unwrap() + 1..];
        let expected: Vec<String> = (0..40)
            .map(|i| format!("a{i}"))
            .chain((0..3).map(|i| format!("b{i}")))
            .collect();
        assert_eq!(records_in(read), expected);
    }

    #[tokio::test]
    async fn a_batch_the_pipe_took_part_of_is_answered_with_no_traffic_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut reader, blocking, nonblocking) = stdout_pipe(dir.path());
        let mut read = fill(&nonblocking, &mut reader, 6000);
        let (pending, from_requests) = pending_on(stdout_writer(blocking, nonblocking));
        let shared = pending.writer.clone();
        let thread = std::thread::spawn(move || Writer::run(&shared, from_requests));
        let (batch, answers) = jobs((0..40).map(|i| format!("a{i}")));
        pending.jobs.lock().unwrap().extend(batch);
        flush(pending.clone()).await;
        assert!(!pending.here.allowed(), "the runtime wrote part of it");
        // No request after it: the writer thread still finishes it once the reader reads.
        let drained = drain(reader);
        let mut seqs = Vec::new();
        for a in answers {
            let told = tokio::time::timeout(Duration::from_secs(60), a)
                .await
                .expect("a request of the unfinished batch waited for ever");
            seqs.push(told.unwrap().unwrap().seq);
        }
        assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
        drop(pending);
        thread.join().unwrap();
        read.extend(drained.join().unwrap());
        let read = &read[read.iter().position(|b| *b == b'\n').unwrap() + 1..];
        let expected: Vec<String> = (0..40).map(|i| format!("a{i}")).collect();
        assert_eq!(records_in(read), expected);
    }

    #[test]
    fn stdout_a_pipe_is_written_on_the_runtime_and_answered_there() {
        let dir = tempfile::tempdir().unwrap();
        let (mut reader, blocking, nonblocking) = stdout_pipe(dir.path());
        let mut writer = stdout_writer(blocking, nonblocking);
        let mut seqs = Vec::new();
        for b in 0..3 {
            let (batch, answers) = jobs((0..4).map(|i| format!("b{b}-{i}")));
            assert!(writer.write(batch, true).is_some(), "written at once");
            assert!(writer.unfinished.is_none());
            for mut a in answers {
                seqs.push(a.try_recv().unwrap().unwrap().seq);
            }
        }
        assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
        assert_eq!(writer.head.lock().unwrap().seq, 12);
        drop(writer);
        let mut read = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut read).unwrap();
        let uids = records_in(&read);
        let expected: Vec<String> = (0..3)
            .flat_map(|b| (0..4).map(move |i| format!("b{b}-{i}")))
            .collect();
        assert_eq!(uids, expected);
    }

    #[test]
    fn a_full_pipe_never_holds_the_runtime_and_the_writer_thread_finishes_the_batch_first() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let (mut reader, blocking, nonblocking) = stdout_pipe(dir.path());
        // Fill the pipe, then make a little room: less than the batch needs.
        let filler = format!("{{\"filler\":\"{}\"}}\n", "x".repeat(500));
        let mut filled = 0;
        while (&nonblocking).write(filler.as_bytes()).is_ok() {
            filled += 1;
        }
        assert!(filled > 0);
        let mut read = vec![0u8; 6000];
        reader.read_exact(&mut read).unwrap();

        // On the runtime: the pipe takes what it can, and the write returns without
        // waiting for the reader; the requests wait for their records.
        let (batch, mut first) = jobs((0..40).map(|i| format!("a{i}")));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            let mut writer = stdout_writer(blocking, nonblocking);
            let wrote = writer.write(batch, true);
            done_tx.send(()).unwrap();
            (writer, wrote)
        });
        done_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the runtime's write waited for the pipe's reader");
        let (mut writer, wrote) = handle.join().unwrap();
        assert_eq!(wrote, None, "the batch did not fit");
        assert!(writer.unfinished.is_some());
        assert_eq!(writer.head.lock().unwrap().seq, 0, "the head moves once written");
        for a in &mut first {
            assert_eq!(a.try_recv(), Err(oneshot::error::TryRecvError::Empty));
        }

        // The writer thread: the rest of that batch first (which moves the head and
        // answers its requests), then the next one.
        let drained = std::thread::spawn(move || {
            let mut rest = Vec::new();
            reader.read_to_end(&mut rest).unwrap();
            rest
        });
        writer.finish();
        assert!(writer.unfinished.is_none());
        assert_eq!(
            writer.head.lock().unwrap().seq,
            40,
            "the head moves once finished"
        );
        let (batch, second) = jobs((0..3).map(|i| format!("b{i}")));
        assert!(writer.write(batch, false).is_some());
        assert_eq!(writer.head.lock().unwrap().seq, 43);
        let seqs: Vec<u64> = first
            .into_iter()
            .chain(second)
            .map(|mut a| a.try_recv().unwrap().unwrap().seq)
            .collect();
        assert_eq!(seqs, (1..=43).collect::<Vec<_>>());
        drop(writer);
        read.extend(drained.join().unwrap());
        // The filler the reader took first was cut; what follows is whole records.
        let read = &read[read.iter().position(|b| *b == b'\n').unwrap() + 1..];
        let uids = records_in(read);
        let expected: Vec<String> = (0..40)
            .map(|i| format!("a{i}"))
            .chain((0..3).map(|i| format!("b{i}")))
            .collect();
        assert_eq!(uids, expected);
    }

    #[test]
    fn a_failed_log_with_a_full_stdout_pipe_leaves_the_refusals_copy_to_the_writer_thread() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let (mut reader, blocking, nonblocking) = stdout_pipe(dir.path());
        let filler = format!("{{\"filler\":\"{}\"}}\n", "x".repeat(500));
        while (&nonblocking).write(filler.as_bytes()).is_ok() {}
        let (batch, answers) = jobs((0..3).map(|i| format!("a{i}")));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            let mut writer = stdout_writer(blocking, nonblocking);
            writer.file = Some(LogFile::open(Path::new("/dev/full"), None).unwrap().0);
            let wrote = writer.write(batch, true);
            done_tx.send(()).unwrap();
            (writer, wrote)
        });
        done_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the runtime waited for the pipe's reader to record the refusals");
        let (mut writer, wrote) = handle.join().unwrap();
        assert_eq!(wrote, None);
        let mut answers = answers;
        for a in &mut answers {
            assert_eq!(
                a.try_recv(),
                Err(oneshot::error::TryRecvError::Empty),
                "answered before the refusals' records were written"
            );
        }
        let drained = std::thread::spawn(move || {
            let mut read = Vec::new();
            reader.read_to_end(&mut read).unwrap();
            read
        });
        writer.finish();
        for mut a in answers {
            assert_eq!(a.try_recv().unwrap(), Err(Refusal::AuditUnavailable));
        }
        assert_eq!(writer.chain.seq, 0, "the log goes on from where it was");
        drop(writer);
        let read = drained.join().unwrap();
        let said: Vec<_> = said_in(&read)
            .into_iter()
            .map(|(uid, decision, reason)| format!("{uid} {decision} {reason}"))
            .collect();
        assert_eq!(
            said,
            [
                "a0 deny audit_unavailable",
                "a1 deny audit_unavailable",
                "a2 deny audit_unavailable"
            ]
        );
    }

    #[test]
    fn a_slow_write_on_the_runtime_sends_batches_to_the_writer_thread_for_a_while() {
        let here = WriteHere {
            possible: true,
            paused_until: AtomicU64::new(0),
            epoch: Instant::now(),
        };
        here.took(Duration::from_micros(200));
        assert!(here.allowed());
        here.took(SLOW_WRITE * 2);
        assert!(!here.allowed());
        let never = WriteHere {
            possible: false,
            paused_until: AtomicU64::new(0),
            epoch: Instant::now(),
        };
        assert!(!never.allowed());
    }

    #[test]
    fn an_unopenable_audit_log_is_an_error_at_start() {
        let err = AuditSink::start(
            ChainId::new("test"),
            None,
            false,
            Some(Path::new("/nonexistent-dir/audit.jsonl")),
            None,
            QUEUE,
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/audit.jsonl"));
    }

    /// Waits (up to a minute) until the records `sink` holds take `n` places.
    async fn until_held(sink: &AuditSink, n: usize) {
        let start = Instant::now();
        while sink.queue_held() != n {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{} places held, not {n}",
                sink.queue_held()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_the_bound_a_record_is_refused_at_once_until_a_stuck_log_takes_writes_again() {
        use futures::FutureExt;
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.fifo");
        // A FIFO as the log, filled: the writer thread's next write waits for its reader.
        let (reader, writer) = file::tests::fifo(&path);
        let nonblocking = file::pipe_nonblocking(writer.as_raw_fd(), &writer.metadata().unwrap()).unwrap();
        let filler = format!("{{\"filler\":\"{}\"}}\n", "x".repeat(500));
        while (&nonblocking).write(filler.as_bytes()).is_ok() {}
        let sink = AuditSink::start(ChainId::new("test"), None, false, Some(&path), None, 4).unwrap();
        drop((writer, nonblocking));

        // Four records are held: those the writer thread took wait for the FIFO's reader,
        // the others are given up at their deadline but still held, to be written as the
        // refusals their requests answered.
        let soon = Instant::now() + Duration::from_millis(200);
        let held: Vec<_> = (0..4)
            .map(|i| {
                let sink = sink.clone();
                tokio::spawn(async move {
                    sink.record(allowed_record(&format!("held{i}")), Vec::new(), soon)
                        .await
                })
            })
            .collect();
        until_held(&sink, 4).await;
        // At the bound: refused at once, whatever the deadline, and nothing more is held.
        for i in 0..100 {
            let refused = sink
                .record(allowed_record(&format!("over{i}")), Vec::new(), later())
                .now_or_never();
            assert_eq!(refused, Some(Err(Refusal::AuditUnavailable)), "over{i}");
        }
        assert_eq!(sink.queue_held(), 4);

        // The reader reads again: the held records are written, their places given back,
        // and the sink takes records as before.
        let drained = std::thread::spawn(move || {
            let mut read = Vec::new();
            std::io::Read::read_to_end(&mut { reader }, &mut read).unwrap();
            read
        });
        let mut told = Vec::new();
        for (i, h) in held.into_iter().enumerate() {
            let answer = tokio::time::timeout(Duration::from_secs(60), h)
                .await
                .expect("a held record was never written")
                .unwrap();
            let reason = match answer {
                Ok(_) => "approved",
                Err(refusal) => {
                    assert_eq!(refusal, Refusal::DeadlineExceeded);
                    "deadline_exceeded"
                }
            };
            told.push((format!("held{i}"), reason.to_string()));
        }
        until_held(&sink, 0).await;
        for i in 0..10 {
            sink.record(allowed_record(&format!("after{i}")), Vec::new(), later())
                .await
                .unwrap();
        }
        assert_eq!(sink.queue_held(), 0);
        let id = sink.head().chain;
        drop(sink);

        // What the FIFO got after the filler: every record written whole, in chain order,
        // each saying what its request was told; none of those refused at once.
        let read = drained.join().unwrap();
        let mut chain = Chain::new(id, None);
        let mut said = Vec::new();
        for line in read.split_inclusive(|b| *b == b'\n') {
            if line.starts_with(b"{\"filler\"") {
                continue;
            }
            chain.follow(line).expect("a whole record, next in the chain");
            let record: serde_json::Value = serde_json::from_slice(line).unwrap();
            let field = |k: &str| record[k].as_str().unwrap().to_string();
            said.push((field("uid"), field("reason")));
        }
        let (first, rest) = said.split_at(4);
        let mut first = first.to_vec();
        first.sort();
        assert_eq!(first, told);
        let after: Vec<_> = (0..10)
            .map(|i| (format!("after{i}"), "approved".to_string()))
            .collect();
        assert_eq!(rest, after);
    }

    /// The record of an allowed update by a user in groups of `group_bytes` bytes in all.
    fn record_with_groups(uid: &str, group_bytes: usize) -> DecisionRecord {
        let mut record = allowed_record(uid);
        record.request = Some(Coordinates {
            user: "alice".into(),
            groups: (0..group_bytes / 100).map(|i| format!("{i:0>100}")).collect(),
            operation: "UPDATE".into(),
            api_group: String::new(),
            resource: "secrets".into(),
            sub_resource: String::new(),
            namespace: "prod".into(),
            name: "db-password".into(),
            dry_run: false,
        });
        record
    }

    #[test]
    fn a_record_takes_a_place_per_started_4_kib_of_its_size() {
        assert_eq!(places(&allowed_record("u"), &[]), 1);
        assert_eq!(places(&record_with_groups("u", 2_000), &[]), 1);
        // 40 KiB of groups, and what each group costs besides its bytes: 11 places.
        let large = record_with_groups("u", 40 * 1024);
        let at_least = large.request.as_ref().unwrap().groups.concat().len();
        assert!(large.size() > at_least);
        assert_eq!(places(&large, &[]), large.size().div_ceil(PLACE));
        assert_eq!(places(&large, &[]), 13);
        // As long a uid, or name, counts the same.
        assert_eq!(places(&allowed_record(&"u".repeat(40 * 1024)), &[]), 11);
        // The records that follow it count too.
        assert!(places(&allowed_record("u"), &[vec![b'x'; 3 * PLACE]]) >= 3);
    }

    #[test]
    fn places_are_taken_within_the_bound_and_given_back() {
        let held = Arc::new(AtomicUsize::new(0));
        let a = Slot::take(&held, 8, 3).unwrap();
        let b = Slot::take(&held, 8, 3).unwrap();
        assert!(Slot::take(&held, 8, 3).is_none(), "6 + 3 is past 8");
        let c = Slot::take(&held, 8, 2).unwrap();
        assert_eq!(held.load(Ordering::Acquire), 8);
        assert!(Slot::take(&held, 8, 1).is_none());
        drop((a, c));
        assert_eq!(held.load(Ordering::Acquire), 3);
        assert!(Slot::take(&held, 8, 9).is_none(), "more than the whole bound");
        drop(b);
        assert!(
            Slot::take(&held, 8, 9).is_none(),
            "more than the whole bound, even empty"
        );
        assert_eq!(held.load(Ordering::Acquire), 0);
        let whole = Slot::take(&held, 8, 8).unwrap();
        assert_eq!(held.load(Ordering::Acquire), 8);
        drop(whole);
        assert_eq!(held.load(Ordering::Acquire), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_larger_than_the_whole_bound_is_refused_at_once() {
        use futures::FutureExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let sink = AuditSink::start(ChainId::new("test"), None, false, Some(&path), None, 4).unwrap();
        // Nothing is held, and the log takes writes: still refused, never waiting for room
        // that can never be.
        let refused = sink
            .record(record_with_groups("large", 5 * PLACE), Vec::new(), later())
            .now_or_never();
        assert_eq!(refused, Some(Err(Refusal::AuditUnavailable)));
        assert_eq!(sink.queue_held(), 0);
        // One that fills the bound exactly is written, as are small ones after it.
        let fills = record_with_groups("fills", 3 * PLACE);
        assert_eq!(places(&fills, &[]), 4);
        sink.record(fills, Vec::new(), later()).await.unwrap();
        for i in 0..10 {
            sink.record(allowed_record(&format!("small{i}")), Vec::new(), later())
                .await
                .unwrap();
        }
        assert_eq!(sink.queue_held(), 0);
        let uids: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["uid"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let expected: Vec<String> = std::iter::once("fills".to_string())
            .chain((0..10).map(|i| format!("small{i}")))
            .collect();
        assert_eq!(uids, expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bound_of_one_takes_records_one_after_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let sink = AuditSink::start(ChainId::new("test"), None, false, Some(&path), None, 1).unwrap();
        // A request told of its record may record again at once: its place was given
        // back before it was told.
        for i in 0..200 {
            let sealed = sink
                .record(refusal_record(&format!("u{i}")), Vec::new(), later())
                .await
                .unwrap();
            assert_eq!(sealed.seq, i + 1);
        }
        assert_eq!(sink.queue_held(), 0);
    }

    #[tokio::test]
    async fn every_way_a_record_leaves_gives_its_place_back() {
        let held = Arc::new(AtomicUsize::new(0));
        let held_jobs = |uids: &[&str], deadline: Instant| -> (Vec<Job>, Vec<Told>, Vec<Arc<AtomicU8>>) {
            let mut made = (Vec::new(), Vec::new(), Vec::new());
            for uid in uids {
                let (done, told) = oneshot::channel();
                let state = Arc::new(AtomicU8::new(PENDING));
                made.0.push(Job {
                    record: allowed_record(uid),
                    deadline,
                    then: Vec::new(),
                    state: state.clone(),
                    done,
                    slot: Slot::take(&held, 8, 1).expect("a place"),
                });
                made.1.push(told);
                made.2.push(state);
            }
            made
        };
        let dir = tempfile::tempdir().unwrap();
        let (file, _) = LogFile::open(&dir.path().join("audit.jsonl"), None).unwrap();
        let mut writer = test_writer(Some(file), None, None, false, false);

        // Written: taken in time, too late, or given up by its request.
        let (mut batch, _told, _) = held_jobs(&["taken"], later());
        let (late, _late_told, _) = held_jobs(&["late"], Instant::now() - Duration::from_millis(1));
        let (gave_up, _, states) = held_jobs(&["gave-up"], later());
        states[0].store(ABANDONED, Ordering::Release);
        batch.extend(late);
        batch.extend(gave_up);
        assert_eq!(held.load(Ordering::Acquire), 3);
        assert!(writer.write(batch, false).is_some());
        assert_eq!(held.load(Ordering::Acquire), 0, "written");

        // The log failed: the records are refusals, and their places come back.
        writer.file = Some(LogFile::open(Path::new("/dev/full"), None).unwrap().0);
        let (batch, told, _) = held_jobs(&["a", "b"], later());
        assert!(writer.write(batch, false).is_some());
        for mut t in told {
            assert_eq!(t.try_recv().unwrap(), Err(Refusal::AuditUnavailable));
        }
        assert_eq!(held.load(Ordering::Acquire), 0, "refused");

        // Left unfinished for the writer thread, then dropped with the writer.
        let (batch, _told, _) = held_jobs(&["c", "d"], later());
        writer.unfinished = Some(Unfinished {
            rest: Some(b"x".to_vec()),
            before: writer.chain.clone(),
            fates: vec![Fate::Taken; batch.len()],
            sealed: Vec::new(),
            batch,
        });
        assert_eq!(held.load(Ordering::Acquire), 2);
        drop(writer);
        assert_eq!(held.load(Ordering::Acquire), 0, "dropped with the writer");

        // The writer thread has stopped: refused, and their places come back.
        let (pending, from_requests) = pending_on(stdout_writer_of_nothing());
        drop(from_requests);
        pending.here.pause();
        let (batch, told, _) = held_jobs(&["e", "f"], later());
        pending.jobs.lock().unwrap().extend(batch);
        flush(pending.clone()).await;
        for mut t in told {
            assert_eq!(t.try_recv().unwrap(), Err(Refusal::AuditUnavailable));
        }
        assert_eq!(held.load(Ordering::Acquire), 0, "writer stopped");

        // Queued, then dropped on shutdown.
        let (batch, _told, _) = held_jobs(&["g"], later());
        pending.jobs.lock().unwrap().extend(batch);
        assert_eq!(held.load(Ordering::Acquire), 1);
        drop(pending);
        assert_eq!(held.load(Ordering::Acquire), 0, "dropped unwritten");
    }

    /// A writer with nowhere to write, that the runtime never writes through.
    fn stdout_writer_of_nothing() -> Writer {
        test_writer(None, None, None, false, true)
    }
}
