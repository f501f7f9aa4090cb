//! Keeping the approval store in step with where approvals live: a local file
//! ([`file`](mod@file)), or labelled ConfigMaps in a cluster, followed with a watch ([`cluster`]).
//! Both parse entries with the same code and replace the store's whole state at once.
//! The other things jitgate follows live here too: the policy directory ([`policies`]),
//! the report of unreviewed break-glass entries ([`break_glass`]), the removal of
//! expired entries ([`prune`]), and the trusted signers of offline approvals ([`signers`]). (The serving
//! certificate is followed by `crate::tls`.)

pub mod anchors;
pub mod break_glass;
pub mod cluster;
pub mod file;
pub mod policies;
pub mod prune;
pub mod signers;

pub use cluster::{ClusterError, ClusterSource};
pub use file::FileSync;

use kube::runtime::utils::{Backoff, ResetTimerBackoff};
use kube::runtime::watcher::ExponentialBackoff;
use std::time::Duration;

/// The longest a broken watch waits before it tries the API server again, jitter
/// excluded (jitter adds up to as much again).
pub const WATCH_RETRY_MAX: Duration = Duration::from_secs(4);

/// How the watches of approvals and signers retry when the API server is gone: from
/// half a second, doubling, to at most [`WATCH_RETRY_MAX`], with jitter so that replicas
/// do not retry in step. kube's default goes to 30 s (60 s with its jitter): after an
/// API server restart jitgate would serve stale approvals, and deny what they grant once
/// past `--max-staleness`, for up to a minute longer than it needs to. One watch request
/// every few seconds while the API server is down costs it nothing.
pub fn watch_backoff() -> impl Backoff {
    let retries = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(WATCH_RETRY_MAX)
        .with_factor(2.0)
        .without_max_times()
        .with_jitter();
    ResetTimerBackoff::new(ExponentialBackoff::from(retries), Duration::from_secs(120))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_watch_never_waits_longer_than_twice_the_cap_to_retry() {
        let mut backoff = watch_backoff();
        let waits: Vec<Duration> = (0..50).map(|_| backoff.next().unwrap()).collect();
        assert!(waits[0] >= Duration::from_millis(500), "{waits:?}");
        assert!(waits.iter().all(|w| *w <= 2 * WATCH_RETRY_MAX), "{waits:?}");
        assert!(waits[10..].iter().all(|w| *w >= WATCH_RETRY_MAX), "{waits:?}");
        backoff.reset();
        assert!(backoff.next().unwrap() <= Duration::from_secs(1));
    }
}
