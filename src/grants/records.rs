//! Grant records, written in order by a task of their own, so that the reconciler never
//! waits on the audit trail to take power away.
//!
//! With the trail stuck (stdout's reader stopped, a log file on a hung disk), a removal's
//! record cannot be written; if the reconciler waited for it, every later removal would
//! wait too, and grants would outlive their approvals. So:
//! - a removal is done first and its record queued ([`Records::after`]), never waited for;
//! - a creation's record is waited for until a deadline ([`Records::standing_on`]): a
//!   grant stands at most that long before its record. One whose record is not written
//!   by then is taken back, and if that record still lands later, a record of the taking
//!   back follows it, naming what was deleted ([`Records::settle`]); if it never lands,
//!   the grant stood that long unrecorded; one left standing by a process killed in
//!   between is recorded as found by a later pass, once older than the grace;
//! - while records still wait here a moment later ([`Records::drained`]), the reconciler
//!   creates nothing: the trail is not taking records, and a grant it cannot record must
//!   not be made.
//!
//! Records wait in memory, at most [`WAITING`] of them (one per grant object removed, and
//! one creation's; objects someone else labels as jitgate's grants count too): past that,
//! a removal's record is dropped with an error log line naming it, and the removal done
//! all the same. Those still waiting when the process ends are lost.

use crate::audit::{AuditError, AuditSink};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Records waiting at most.
pub const WAITING: usize = 10_000;

/// A note to the audit trail under way.
pub type Noting = JoinHandle<Result<(), AuditError>>;

enum Item {
    /// A record of what was done already.
    After(Vec<u8>),
    /// A record a grant stood on that was not written by its deadline, and the record of
    /// its taking back (when it was taken back), written after it: only if it was written,
    /// or (`always`: a grant found standing, which stood whatever became of its record)
    /// whatever became of it.
    Settle(Noting, Option<Vec<u8>>, bool),
}

/// What became of a creation's record.
#[derive(Debug)]
pub enum Standing {
    /// Written: the grant may stand.
    Written,
    /// It could not be written, and never will be.
    Failed(AuditError),
    /// Not written by the deadline: it may still be. Pass it to [`Records::settle`].
    Late(Noting),
}

/// The reconciler's side of the queue.
pub struct Records {
    audit: AuditSink,
    queue: mpsc::UnboundedSender<Item>,
    behind: Arc<AtomicUsize>,
    /// Told each time the last record waiting is written.
    drained: Arc<Notify>,
}

impl Records {
    /// Starts the task that writes what is queued, in order. It ends once `Records` is
    /// dropped and what it holds is written.
    pub fn start(audit: AuditSink) -> Self {
        let (queue, mut items) = mpsc::unbounded_channel::<Item>();
        let behind = Arc::new(AtomicUsize::new(0));
        let drained = Arc::new(Notify::new());
        let writer = audit.clone();
        let count = behind.clone();
        let told = drained.clone();
        tokio::spawn(async move {
            while let Some(item) = items.recv().await {
                let result = match item {
                    Item::After(line) => writer.note(vec![line]).await,
                    Item::Settle(noting, line, always) => match (noting.await, line) {
                        (Ok(Ok(())), Some(line)) => writer.note(vec![line]).await,
                        (_, Some(line)) if always => writer.note(vec![line]).await,
                        // The creation was never recorded: neither is its taking back.
                        _ => Ok(()),
                    },
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, "grant record not written");
                }
                if count.fetch_sub(1, Ordering::AcqRel) == 1 {
                    told.notify_waiters();
                }
            }
        });
        Records {
            audit,
            queue,
            behind,
            drained,
        }
    }

    /// Records waiting to be written.
    pub fn behind(&self) -> usize {
        self.behind.load(Ordering::Acquire)
    }

    /// Waits until no record waits, or `deadline`; says whether none does.
    pub async fn drained(&self, deadline: Instant) -> bool {
        loop {
            let told = self.drained.notified();
            if self.behind() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, told).await.is_err() {
                return self.behind() == 0;
            }
        }
    }

    /// Queues the record of what was done already; it is written when the trail takes it.
    pub fn after(&self, line: Vec<u8>) {
        self.push(Item::After(line));
    }

    /// Writes the record a grant stands on, waiting for it until `deadline`.
    pub async fn standing_on(&self, line: Vec<u8>, deadline: Instant) -> Standing {
        let audit = self.audit.clone();
        let mut noting = tokio::spawn(async move { audit.note(vec![line]).await });
        match tokio::time::timeout_at(deadline, &mut noting).await {
            Ok(Ok(Ok(()))) => Standing::Written,
            Ok(Ok(Err(e))) => Standing::Failed(e),
            Ok(Err(e)) => Standing::Failed(AuditError::Write(e.to_string())),
            Err(_) => Standing::Late(noting),
        }
    }

    /// A late record a grant stood on, and the record of that grant's taking back (`None`
    /// when it could not be taken back): written after it, if it is written, or
    /// (`always`) whatever becomes of it. Until it is settled, it counts as behind.
    pub fn settle(&self, noting: Noting, taken_back: Option<Vec<u8>>, always: bool) {
        self.push(Item::Settle(noting, taken_back, always));
    }

    fn push(&self, item: Item) {
        if self.behind.fetch_add(1, Ordering::AcqRel) >= WAITING {
            self.behind.fetch_sub(1, Ordering::AcqRel);
            let line = match &item {
                Item::After(line) | Item::Settle(_, Some(line), _) => {
                    String::from_utf8_lossy(line).into_owned()
                }
                Item::Settle(_, None, _) => String::new(),
            };
            tracing::error!(waiting = WAITING, record = %line.trim_end(),
                "grant record dropped: the audit trail is not taking grant records, and as many wait already");
            return;
        }
        if self.queue.send(item).is_err() {
            // The task is gone (the runtime shuts down): nothing waits any more.
            self.behind.fetch_sub(1, Ordering::AcqRel);
            tracing::error!("grant record not written: the runtime is shutting down");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::ChainId;
    use std::io::Read;
    use std::time::Duration;

    fn line(text: &str) -> Vec<u8> {
        format!("{{\"event\":\"grant\",\"what\":\"{text}\"}}\n").into_bytes()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_wait_in_order_while_the_trail_is_stuck_and_none_is_waited_for_by_who_queues_it() {
        // The audit log is a FIFO read only once the test says so.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("audit.fifo");
        let opening = crate::audit::fifo_read_end(&fifo);
        let audit = AuditSink::start(ChainId::new("test"), None, false, Some(&fifo), None, 64).unwrap();
        let mut reader = opening.join().unwrap();
        let records = Records::start(audit);

        // A removal's record larger than the FIFO takes: the writer is stuck in it, and the
        // reconciler is not.
        records.after(line(&"x".repeat(256 * 1024)));
        let soon = || Instant::now() + Duration::from_millis(300);
        // A creation's record is not written in time: late, and its taking back follows it.
        let Standing::Late(noting) = records.standing_on(line("created"), soon()).await else {
            panic!("a creation's record was written while the trail was stuck");
        };
        records.settle(noting, Some(line("taken back")), false);
        assert_eq!(records.behind(), 2);
        assert!(!records.drained(soon()).await);
        // At most WAITING wait: the rest are dropped, and who queues them never waits.
        for i in 0..WAITING {
            records.after(line(&format!("removed {i}")));
        }
        assert_eq!(records.behind(), WAITING);

        // The trail takes records again: every record kept lands, in order.
        let reading = std::thread::spawn(move || {
            let mut read = Vec::new();
            let mut buf = [0u8; 65536];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                read.extend_from_slice(&buf[..n]);
                let last = format!("removed {}", WAITING - 3);
                if read.ends_with(b"\n") && read.windows(last.len()).any(|w| w == last.as_bytes()) {
                    return read;
                }
            }
            read
        });
        assert!(records.drained(Instant::now() + Duration::from_secs(60)).await);
        let read = reading.join().unwrap();
        let whats: Vec<String> = read
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                serde_json::from_slice::<serde_json::Value>(l).unwrap()["what"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(whats.len(), 3 + WAITING - 2, "{:?}", &whats[..3]);
        assert_eq!(whats[1..3], ["created", "taken back"]);
        assert_eq!(whats[3], "removed 0");
        assert_eq!(whats.last().unwrap(), &format!("removed {}", WAITING - 3));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_found_grants_taking_back_is_recorded_even_when_its_late_record_then_fails() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let audit = AuditSink::start(ChainId::new("test"), None, false, Some(&log), None, 64).unwrap();
        let records = Records::start(audit);
        let failed =
            || -> Noting { tokio::spawn(async { Err(AuditError::Write("the disk failed".into())) }) };
        // A creation whose record failed was never recorded: nor is its taking back.
        records.settle(failed(), Some(line("created, taken back")), false);
        // A grant found standing stood, whatever became of the record of it.
        records.settle(failed(), Some(line("found, taken back")), true);
        assert!(records.drained(Instant::now() + Duration::from_secs(10)).await);
        let written = std::fs::read_to_string(&log).unwrap();
        assert!(written.contains("found, taken back"), "{written}");
        assert!(!written.contains("created, taken back"), "{written}");
    }
}
