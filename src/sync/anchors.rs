//! Writing this replica's anchor ([`crate::audit::anchor`]) into the cluster: when the
//! chain starts, every [`ANCHOR_EVERY`] while its head moves, and on shutdown.
//!
//! A write that fails (the API server away, the ConfigMap missing) is logged and tried
//! again at the next tick; it never holds up an answer, since records are already written
//! before they are anchored.

use crate::audit::AuditSink;
pub use crate::audit::anchor::ANCHOR_EVERY;
use crate::audit::anchor::{Anchor, CONFIGMAP};
use crate::audit::chain::Follows;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// Writes one replica's anchor. Cheap to share.
pub struct Anchorer {
    api: Api<ConfigMap>,
    sink: AuditSink,
    /// The `seq` last anchored; `None` before the first anchor landed.
    anchored: Mutex<Option<u64>>,
}

impl Anchorer {
    /// Anchors through `api` (jitgate's namespace) the chain `sink` writes.
    pub fn new(api: Api<ConfigMap>, sink: AuditSink) -> Arc<Anchorer> {
        Arc::new(Anchorer {
            api,
            sink,
            anchored: Mutex::new(None),
        })
    }

    /// Writes the head if it moved since the last anchor that landed.
    pub async fn anchor(&self) {
        let mut anchored = self.anchored.lock().await;
        let head = self.sink.head();
        if *anchored == Some(head.seq) {
            return;
        }
        let anchor = Anchor {
            replica: head.chain.replica().to_string(),
            chain: head.chain.0,
            seq: head.seq,
            hash: head.hash,
            time: jiff::Timestamp::now().to_string(),
        };
        match self
            .api
            .patch(CONFIGMAP, &PatchParams::default(), &Patch::Merge(&anchor.patch()))
            .await
        {
            Ok(_) => {
                tracing::debug!(chain = %anchor.chain, seq = anchor.seq, "audit chain anchored");
                *anchored = Some(anchor.seq);
            }
            Err(e) => tracing::warn!(
                configmap = CONFIGMAP,
                chain = %anchor.chain,
                seq = anchor.seq,
                error = %e,
                "audit chain not anchored; trying again later"
            ),
        }
    }

    /// Anchors now, then every `every` while the head moves.
    pub fn spawn(self: &Arc<Self>, every: Duration) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.anchor().await;
            }
        })
    }
}

/// The last chain `replica` anchored, read from the anchors ConfigMap through `api`: what a
/// restarted container's new chain follows when it has no `--audit-log` to read it from.
/// `None` when there is none, or the API server does not answer within a few seconds
/// (the new chain then names none; the anchors still list every chain).
pub async fn last_of(api: &Api<ConfigMap>, replica: &str) -> Option<Follows> {
    let read = tokio::time::timeout(Duration::from_secs(3), api.get_opt(CONFIGMAP)).await;
    let configmap = match read {
        Ok(Ok(configmap)) => configmap?,
        Ok(Err(e)) => {
            tracing::warn!(configmap = CONFIGMAP, error = %e, "anchors not read; the new audit chain names none before it");
            return None;
        }
        Err(_) => {
            tracing::warn!(
                configmap = CONFIGMAP,
                "anchors not read in time; the new audit chain names none before it"
            );
            return None;
        }
    };
    configmap
        .data
        .unwrap_or_default()
        .into_values()
        .filter_map(|v| serde_json::from_str::<Anchor>(&v).ok())
        .filter(|a| a.replica == replica)
        .filter_map(|a| Some((a.time.parse::<jiff::Timestamp>().ok()?, a)))
        .max_by_key(|(t, _)| *t)
        .map(|(_, a)| Follows {
            chain: a.chain,
            seq: a.seq,
            hash: a.hash,
        })
}
