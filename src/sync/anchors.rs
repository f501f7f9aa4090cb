//! Writing this replica's anchor ([`crate::audit::anchor`]) into the cluster: when the
//! chain starts, every [`ANCHOR_EVERY`] while its head moves, and on shutdown.
//!
//! A write that fails (the API server away, the ConfigMap missing) is logged and tried
//! again at the next tick; it never holds up an answer, since records are already written
//! before they are anchored.

use crate::audit::AuditSink;
pub use crate::audit::anchor::ANCHOR_EVERY;
use crate::audit::anchor::{Anchor, CONFIGMAP};
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
