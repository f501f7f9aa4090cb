//! Connection slots: how many connections may be open, by whom, and which one gives way
//! when they are all taken.
//!
//! Under `failurePolicy: Fail` a gate that cannot take the API server's connection blocks
//! every gated change, so a full house never turns the newcomer away while someone else
//! is only holding a slot: a connection whose request body is still arriving (the API
//! server's arrive in milliseconds; a trickler's never do), else the one quiet longest
//! (no answer since), is closed to make room. A connection whose request is
//! being decided is never closed that way; only when every slot is deciding is the new
//! connection refused. The API server may keep many connections from one address, so no
//! limit here is by address.
//!
//! With a client CA set, connections without a verified client certificate (probes,
//! scrapers, anyone else) share a small number of slots among themselves and make room
//! only among themselves: they can never close one of the API server's. TLS handshakes in
//! progress have their own slots; when those are full the oldest handshake is dropped.

use crate::metrics::Metrics;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Whom a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A TLS handshake in progress.
    Handshaking,
    /// A client certificate that chains to the client CA (only with a client CA set).
    Verified,
    /// Anyone else; every connection when no client CA is set.
    Other,
}

impl Class {
    pub fn label(self) -> &'static str {
        match self {
            Class::Handshaking => "handshaking",
            Class::Verified => "verified",
            Class::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How many slots of each kind.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Established connections, all classes together.
    pub connections: usize,
    /// Established connections of class `Class::Other`.
    pub other: usize,
    /// TLS handshakes in progress.
    pub handshakes: usize,
}

/// What one connection is doing, as its requests report it.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    /// Requests received and not yet answered.
    open: AtomicUsize,
    /// Requests whose body was read whole, being decided.
    deciding: AtomicUsize,
    /// Milliseconds after `epoch` of the connection's opening or its last answer.
    quiet_since: AtomicU64,
    /// Told to close, to make room.
    evicted: Notify,
}

impl Activity {
    fn new(epoch: Instant) -> Arc<Activity> {
        let activity = Activity {
            epoch,
            open: AtomicUsize::new(0),
            deciding: AtomicUsize::new(0),
            quiet_since: AtomicU64::new(0),
            evicted: Notify::new(),
        };
        activity.touch();
        Arc::new(activity)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.quiet_since.store(self.now(), Ordering::Relaxed);
    }

    fn quiet_since(&self) -> u64 {
        self.quiet_since.load(Ordering::Relaxed)
    }

    fn may_be_evicted(&self) -> bool {
        self.deciding.load(Ordering::Relaxed) == 0
    }

    /// Whether a request's body is still arriving: for the API server a matter of
    /// milliseconds, for a client that trickles its whole life.
    fn reading(&self) -> bool {
        self.open.load(Ordering::Relaxed) > self.deciding.load(Ordering::Relaxed)
    }

    /// How long the connection has had no request open and given no answer (zero while a
    /// request is open).
    pub fn idle_for(&self) -> Duration {
        if self.open.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(self.now().saturating_sub(self.quiet_since()))
    }

    /// Completes when the connection is told to close to make room for another.
    pub async fn evicted(&self) {
        self.evicted.notified().await
    }

    /// Marks a request received; the guard marks it answered when dropped.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.open.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// A request received and not yet answered.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl InFlight {
    /// Marks the request's body read whole: from now until the guard is dropped its
    /// connection is not closed to make room.
    pub fn deciding(&self) -> Deciding {
        self.0.deciding.fetch_add(1, Ordering::Relaxed);
        Deciding(self.0.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request being decided.
#[derive(Debug)]
pub struct Deciding(Arc<Activity>);

impl Drop for Deciding {
    fn drop(&mut self) {
        self.0.deciding.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Entry {
    id: u64,
    class: Class,
    activity: Arc<Activity>,
}

#[derive(Default)]
struct Held {
    next: u64,
    entries: Vec<Entry>,
    counts: [usize; 3],
}

/// Every slot, open or in handshake.
pub struct Slots {
    caps: Caps,
    epoch: Instant,
    held: Mutex<Held>,
    metrics: Arc<Metrics>,
    emptied: Notify,
}

impl Slots {
    pub fn new(caps: Caps, metrics: Arc<Metrics>) -> Arc<Slots> {
        Arc::new(Slots {
            caps,
            epoch: Instant::now(),
            held: Mutex::new(Held::default()),
            metrics,
            emptied: Notify::new(),
        })
    }

    /// A slot for a connection of `class`, closing another to make room if need be; `None`
    /// when every candidate is busy deciding.
    pub fn admit(self: &Arc<Self>, class: Class) -> Option<Slot> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let established = held.counts[Class::Verified.index()] + held.counts[Class::Other.index()];
        let full = match class {
            Class::Handshaking => held.counts[class.index()] >= self.caps.handshakes,
            Class::Other => {
                held.counts[class.index()] >= self.caps.other || established >= self.caps.connections
            }
            Class::Verified => established >= self.caps.connections,
        };
        if full {
            // Whom the newcomer may close: a handshake another handshake; anyone else only
            // those of its own class, except that a verified caller may close any other
            // connection, those without a certificate first. Then one whose body is still
            // arriving before an idle one, and the one quiet longest.
            let victim = held
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| match class {
                    Class::Handshaking | Class::Other => e.class == class,
                    Class::Verified => e.class != Class::Handshaking,
                })
                .filter(|(_, e)| e.activity.may_be_evicted())
                .min_by_key(|(_, e)| {
                    let a = &e.activity;
                    (e.class == Class::Verified, !a.reading(), a.quiet_since())
                })
                .map(|(i, _)| i);
            let Some(i) = victim else {
                drop(held);
                self.metrics.connection_closed("refused_all_busy");
                return None;
            };
            let evicted = held.entries.swap_remove(i);
            held.counts[evicted.class.index()] -= 1;
            self.metrics
                .connections_open(evicted.class.label(), held.counts[evicted.class.index()]);
            self.metrics.connection_closed(match evicted.class {
                Class::Handshaking => "handshake_evicted",
                _ => "evicted",
            });
            evicted.activity.evicted.notify_one();
        }
        held.next += 1;
        let id = held.next;
        let activity = Activity::new(self.epoch);
        held.entries.push(Entry {
            id,
            class,
            activity: activity.clone(),
        });
        held.counts[class.index()] += 1;
        self.metrics
            .connections_open(class.label(), held.counts[class.index()]);
        Some(Slot {
            slots: self.clone(),
            id,
            activity,
        })
    }

    fn release(&self, id: u64) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = held.entries.iter().position(|e| e.id == id) {
            let entry = held.entries.swap_remove(i);
            held.counts[entry.class.index()] -= 1;
            self.metrics
                .connections_open(entry.class.label(), held.counts[entry.class.index()]);
        }
        if held.entries.is_empty() {
            self.emptied.notify_waiters();
        }
    }

    /// Completes once no slot is held.
    pub async fn all_closed(&self) {
        loop {
            let emptied = self.emptied.notified();
            if self
                .held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entries
                .is_empty()
            {
                return;
            }
            emptied.await;
        }
    }
}

/// A held slot, given back when dropped.
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    pub activity: Arc<Activity>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(connections: usize, other: usize, handshakes: usize) -> Arc<Slots> {
        Slots::new(
            Caps {
                connections,
                other,
                handshakes,
            },
            Arc::new(Metrics::new(crate::news::EXPIRY_LEAD)),
        )
    }

    #[test]
    fn a_full_house_closes_the_connection_quiet_longest() {
        let s = slots(2, 2, 1);
        let first = s.admit(Class::Other).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let second = s.admit(Class::Other).unwrap();
        let _third = s.admit(Class::Other).unwrap();
        assert!(first.activity.evicted.notified().now_or_never_is_ready());
        assert!(!second.activity.evicted.notified().now_or_never_is_ready());
    }

    #[test]
    fn a_connection_trickling_a_body_is_closed_before_an_idle_one() {
        let s = slots(2, 2, 1);
        let idle = s.admit(Class::Other).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let trickling = s.admit(Class::Other).unwrap();
        let _request = trickling.activity.request();
        let _new = s.admit(Class::Other).unwrap();
        assert!(trickling.activity.evicted.notified().now_or_never_is_ready());
        assert!(!idle.activity.evicted.notified().now_or_never_is_ready());
    }

    #[test]
    fn a_connection_deciding_is_never_closed_to_make_room() {
        let s = slots(1, 1, 1);
        let busy = s.admit(Class::Other).unwrap();
        let request = busy.activity.request();
        let _deciding = request.deciding();
        assert!(s.admit(Class::Other).is_none());
    }

    #[test]
    fn callers_without_a_certificate_never_close_a_verified_one() {
        let s = slots(2, 2, 1);
        let api = s.admit(Class::Verified).unwrap();
        let _other = s.admit(Class::Other).unwrap();
        // Full: another connection without a certificate closes the one of its own class.
        let _newer = s.admit(Class::Other).unwrap();
        assert!(!api.activity.evicted.notified().now_or_never_is_ready());
        // Only verified connections left and the house full: the next Other is refused.
        let s = slots(1, 1, 1);
        let _api = s.admit(Class::Verified).unwrap();
        assert!(s.admit(Class::Other).is_none());
    }

    #[test]
    fn a_verified_caller_closes_one_without_a_certificate_first() {
        let s = slots(2, 2, 1);
        let old_api = s.admit(Class::Verified).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let other = s.admit(Class::Other).unwrap();
        let _new_api = s.admit(Class::Verified).unwrap();
        assert!(other.activity.evicted.notified().now_or_never_is_ready());
        assert!(!old_api.activity.evicted.notified().now_or_never_is_ready());
    }

    trait ReadyNow {
        fn now_or_never_is_ready(self) -> bool;
    }

    impl<F: std::future::Future> ReadyNow for F {
        fn now_or_never_is_ready(self) -> bool {
            use futures::FutureExt;
            self.now_or_never().is_some()
        }
    }
}
