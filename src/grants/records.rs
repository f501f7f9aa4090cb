//! Grant records, written in order by a task of their own, so that the reconciler never
//! waits on the audit trail to take power away.
//!
//! With the trail stuck (stdout's reader stopped, a log file on a hung disk), a removal's
//! record cannot be written; if the reconciler waited for it, every later removal would
//! wait too, and grants would outlive their approvals. So:
//! - a removal is done first and its record queued ([`Records::after`]), never waited for;
//! - a creation's record is waited for until a deadline ([`Records::standing_on`]). No
//!   grant stands without its record: one whose record is not written by then is taken
//!   back, and if that record still lands later, a record of the taking back follows it
//!   ([`Records::settle`]);
//! - while records still wait here a moment later ([`Records::drained`]), the reconciler
//!   creates nothing: the trail is not taking records, and a grant it cannot record must
//!   not be made.
//!
//! Records wait in memory: at most one per grant object removed, and one creation's. Those
//! still waiting when the process ends are lost (the objects are removed all the same).

use crate::audit::{AuditError, AuditSink};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A note to the audit trail under way.
pub type Noting = JoinHandle<Result<(), AuditError>>;

enum Item {
    /// A record of what was done already.
    After(Vec<u8>),
    /// A creation's record that was not written by its deadline, and the record of its
    /// taking back (when it was taken back), written only if the first was.
    Settle(Noting, Option<Vec<u8>>),
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
                    Item::Settle(noting, line) => match noting.await {
                        Ok(Ok(())) => match line {
                            Some(line) => writer.note(vec![line]).await,
                            None => Ok(()),
                        },
                        // The creation was never recorded: neither is its taking back.
                        Ok(Err(_)) | Err(_) => Ok(()),
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

    /// A late creation's record, and the record of that grant's taking back (`None` when
    /// it could not be taken back): written after it, if it is written. Until it is
    /// settled, it counts as behind.
    pub fn settle(&self, noting: Noting, taken_back: Option<Vec<u8>>) {
        self.push(Item::Settle(noting, taken_back));
    }

    fn push(&self, item: Item) {
        self.behind.fetch_add(1, Ordering::AcqRel);
        if self.queue.send(item).is_err() {
            // The task is gone (the runtime shuts down): nothing waits any more.
            self.behind.fetch_sub(1, Ordering::AcqRel);
            tracing::error!("grant record not written: the runtime is shutting down");
        }
    }
}
