//! Uses of `maxUses` approvals, counted across every replica.
//!
//! In cluster mode the count lives in the API server, in a ConfigMap (`jitgate-usage`)
//! that only jitgate's service account may update: one key per approval, holding the uids
//! of the requests it allowed. A use is recorded before the request is allowed, by an
//! update carrying the resourceVersion it read; if another replica wrote first (409
//! Conflict), the ConfigMap is read again and the count checked again. So N uses are never
//! exceeded, however many replicas race. A request whose uid is already recorded (the API
//! server retried it) is allowed again without spending a use. If the use cannot be
//! recorded, the request is denied. A dry run (`kubectl --dry-run=server`) is answered as
//! the real request would be, and spends nothing. In file mode, uses are counted in memory.
//!
//! A count belongs to the approval's id (`<configmap>/<key>`) for its whole life: no edit
//! of the entry gives spent uses back, whether it is shortened, revoked and pasted again,
//! or deleted and written anew under the same key. The record remembers the latest expiry
//! of the entries that asked for a use under that id, and is collected only [`KEEP`] after
//! it, when none of them grants any more. An approval renewed under the same key within
//! that time finds its uses spent, and is told to ask under a new key (`jitgate request`
//! makes a new one each minute).

use crate::approvals::Approval;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Reads and updates tried before a use is refused as contended.
const ATTEMPTS: u32 = 32;
/// How long after the latest expiry of an entry used under its id a usage record is kept.
pub const KEEP: SignedDuration = SignedDuration::from_hours(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Used {
    /// A new use: the approval has now been used this many times.
    Now(u32),
    /// This request uid was already counted (a retry).
    Again,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// Every use the id has allowed is spent (by this entry, or an earlier one under
    /// the same key).
    #[error("all {0} uses of the approval are spent")]
    Exhausted(u32),
    #[error("the use could not be recorded: {0}")]
    Unavailable(String),
}

/// One approval id's uses, as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    /// The latest expiry of the entries that asked for a use under the id: the record is
    /// kept until [`KEEP`] after it.
    /// (Stored as `expiresAt`, the name records written before kept it under.)
    #[serde(rename = "expiresAt")]
    latest_expiry: Timestamp,
    /// The requests that spent a use, whichever entry under the id they used.
    uids: Vec<String>,
}

impl Record {
    /// Counts `uid` against `a`, or says why not. The count never starts afresh: a
    /// changed expiry (shortened, or a new entry under the same key) only moves the time
    /// the record is kept until, and only later.
    fn spend(&mut self, a: &Approval, uid: &str, max: u32) -> Result<Used, UsageError> {
        self.latest_expiry = self.latest_expiry.max(could_grant_until(a));
        if self.uids.iter().any(|u| u == uid) {
            return Ok(Used::Again);
        }
        if self.uids.len() >= max as usize {
            return Err(UsageError::Exhausted(max));
        }
        self.uids.push(uid.to_string());
        Ok(Used::Now(u32::try_from(self.uids.len()).unwrap_or(u32::MAX)))
    }

    /// Whether the record is still needed at `now`: some entry seen under its id could
    /// still grant, or did so less than [`KEEP`] ago.
    fn kept_at(&self, now: Timestamp) -> bool {
        self.latest_expiry
            .checked_add(KEEP)
            .map_or(true, |until| until > now)
    }
}

/// Until when an entry under this id could still grant: its expiry, or, when it is signed,
/// the latest notAfter of its signatures if later. A signed `for:` entry can be pasted
/// again (and stamped anew) until its signatures' notAfter, so its count must outlive
/// that, not only the expiry of the paste that was used. A signature that does not verify
/// only keeps the record longer, which gives nothing back.
fn could_grant_until(a: &Approval) -> Timestamp {
    a.rare
        .signatures
        .iter()
        .filter_map(|s| s.not_after)
        .fold(a.expires_at, Timestamp::max)
}

/// The ConfigMap key of an approval's record: its id with `/` as `_`, which ConfigMap
/// names never hold, so that no two approvals share a key.
fn key_of(a: &Approval) -> String {
    a.id.replacen('/', "_", 1)
}

/// Where uses are counted, and how many uses this replica has recorded (so that what
/// depends on the counts, the RBAC way's grants, can look again when one was spent).
pub struct UseCounts(Store, AtomicU64);

enum Store {
    Memory(Mutex<HashMap<String, Record>>),
    Cluster { api: Box<Api<ConfigMap>>, name: String },
}

impl UseCounts {
    pub fn in_memory() -> Self {
        UseCounts(Store::Memory(Mutex::new(HashMap::new())), AtomicU64::new(0))
    }

    pub fn in_cluster(api: Api<ConfigMap>, name: String) -> Self {
        UseCounts(
            Store::Cluster {
                api: Box::new(api),
                name,
            },
            AtomicU64::new(0),
        )
    }

    /// How many uses this replica has recorded since it started: changes after each.
    pub fn recorded(&self) -> u64 {
        self.1.load(Ordering::Relaxed)
    }

    /// The ids of those of `approvals` whose every use is spent. One read of the
    /// ConfigMap in cluster mode, none when no approval has `maxUses`.
    pub async fn spent<'a>(
        &self,
        approvals: impl IntoIterator<Item = &'a Approval>,
    ) -> Result<BTreeSet<String>, UsageError> {
        let counted: Vec<(&Approval, u32)> = approvals
            .into_iter()
            .filter_map(|a| a.max_uses.map(|max| (a, max.get())))
            .collect();
        if counted.is_empty() {
            return Ok(BTreeSet::new());
        }
        let records: HashMap<String, Record> = match &self.0 {
            Store::Memory(records) => records.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            Store::Cluster { api, name } => {
                let cm = api
                    .get(name)
                    .await
                    .map_err(|e| UsageError::Unavailable(format!("reading ConfigMap {name}: {e}")))?;
                let mut records = HashMap::new();
                for (key, text) in cm.data.unwrap_or_default() {
                    let record = serde_json::from_str(&text).map_err(|_| {
                        UsageError::Unavailable(format!(
                            "the record {key:?} in ConfigMap {name} is unreadable"
                        ))
                    })?;
                    records.insert(key, record);
                }
                records
            }
        };
        Ok(counted
            .into_iter()
            .filter(|(a, max)| {
                records
                    .get(&key_of(a))
                    .is_some_and(|r| r.uids.len() >= *max as usize)
            })
            .map(|(a, _)| a.id.to_string())
            .collect())
    }

    /// Records one use of `a` by the request `uid`, unless its uses are spent. With
    /// `dry_run`, only says whether it could be: nothing is recorded.
    pub async fn spend(
        &self,
        a: &Approval,
        uid: &str,
        now: Timestamp,
        dry_run: bool,
    ) -> Result<Used, UsageError> {
        let max = a.max_uses.map_or(u32::MAX, |n| n.get());
        let used = match &self.0 {
            Store::Memory(records) => {
                let mut records = records.lock().unwrap_or_else(|e| e.into_inner());
                records.retain(|_, r| r.kept_at(now));
                if dry_run {
                    let mut copy = records.get(&key_of(a)).cloned().unwrap_or_default();
                    return copy.spend(a, uid, max);
                }
                records.entry(key_of(a)).or_default().spend(a, uid, max)
            }
            Store::Cluster { api, name } => spend_in_cluster(api, name, a, uid, max, now, dry_run).await,
        };
        if !dry_run && matches!(used, Ok(Used::Now(_))) {
            self.1.fetch_add(1, Ordering::Relaxed);
        }
        used
    }
}

async fn spend_in_cluster(
    api: &Api<ConfigMap>,
    name: &str,
    a: &Approval,
    uid: &str,
    max: u32,
    now: Timestamp,
    dry_run: bool,
) -> Result<Used, UsageError> {
    let unavailable = |why: String| UsageError::Unavailable(why);
    let key = key_of(a);
    for _ in 0..ATTEMPTS {
        let mut cm = api.get(name).await.map_err(|e| match e {
            kube::Error::Api(s) if s.is_not_found() => unavailable(format!(
                "ConfigMap {name} is missing (it is part of the install manifests)"
            )),
            other => unavailable(format!("reading ConfigMap {name}: {other}")),
        })?;
        let data = cm.data.get_or_insert_with(Default::default);
        let mut record = match data.get(&key) {
            None => Record::default(),
            Some(text) => serde_json::from_str(text)
                .map_err(|_| unavailable(format!("the record {key:?} in ConfigMap {name} is unreadable")))?,
        };
        let seen = record.latest_expiry;
        let used = record.spend(a, uid, max);
        match &used {
            Ok(Used::Again) => return used,
            _ if dry_run => return used,
            // Refused, but by an entry that runs later than any used before: the record
            // must be kept until it is over too, or it would find fresh uses then.
            Err(UsageError::Exhausted(_)) if record.latest_expiry > seen => {}
            Err(_) => return used,
            Ok(Used::Now(_)) => {}
        }
        data.insert(
            key.clone(),
            serde_json::to_string(&record).map_err(|e| unavailable(e.to_string()))?,
        );
        // Housekeeping: records of approvals long expired.
        data.retain(|_, text| serde_json::from_str::<Record>(text).map_or(true, |r| r.kept_at(now)));
        match api.replace(name, &PostParams::default(), &cm).await {
            Ok(_) => return used,
            Err(kube::Error::Api(s)) if s.is_conflict() => continue,
            // A refusal stands whether or not its later expiry was recorded.
            Err(_) if used.is_err() => return used,
            Err(e) => return Err(unavailable(format!("updating ConfigMap {name}: {e}"))),
        }
    }
    Err(unavailable(format!(
        "ConfigMap {name} changed under every one of {ATTEMPTS} attempts"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approvals::parse_entry;

    fn approval(expires: &str) -> Approval {
        let text = format!(
            "user: alice\nresource: secrets\nnamespace: prod\nmaxUses: 2\nexpiresAt: \"{expires}\"\nreason: r\napprovedBy: [bob]\n"
        );
        parse_entry("cm/k", &text).unwrap()
    }

    #[tokio::test]
    async fn uses_are_counted_once_per_request_and_capped() {
        let ledger = UseCounts::in_memory();
        let now: Timestamp = "2026-11-21T20:00:00Z".parse().unwrap();
        let a = approval("2026-11-21T21:00:00Z");
        // A dry run says what would happen, and spends nothing.
        assert_eq!(ledger.spend(&a, "d1", now, true).await, Ok(Used::Now(1)));
        assert_eq!(ledger.spend(&a, "u1", now, false).await, Ok(Used::Now(1)));
        assert_eq!(ledger.spend(&a, "u1", now, false).await, Ok(Used::Again));
        assert_eq!(ledger.spend(&a, "u2", now, false).await, Ok(Used::Now(2)));
        assert_eq!(
            ledger.spend(&a, "u3", now, true).await,
            Err(UsageError::Exhausted(2))
        );
        assert_eq!(
            ledger.spend(&a, "u3", now, false).await,
            Err(UsageError::Exhausted(2))
        );
        assert_eq!(ledger.spend(&a, "u2", now, false).await, Ok(Used::Again));
        // Neither a shorter expiry nor a new entry under the same key gives a use back.
        let shortened = approval("2026-11-21T20:59:59Z");
        assert_eq!(
            ledger.spend(&shortened, "u3", now, false).await,
            Err(UsageError::Exhausted(2))
        );
        let renewed = approval("2026-11-21T21:30:00Z");
        assert_eq!(
            ledger.spend(&renewed, "u3", now, false).await,
            Err(UsageError::Exhausted(2))
        );
    }

    #[tokio::test]
    async fn an_approval_is_spent_once_its_last_use_is_recorded_and_each_use_is_told() {
        let ledger = UseCounts::in_memory();
        let now: Timestamp = "2026-11-21T20:00:00Z".parse().unwrap();
        let a = approval("2026-11-21T21:00:00Z");
        assert!(ledger.spent([&a]).await.unwrap().is_empty());
        ledger.spend(&a, "u1", now, false).await.unwrap();
        ledger.spend(&a, "d2", now, true).await.unwrap();
        assert_eq!(ledger.recorded(), 1, "a dry run records nothing");
        assert!(ledger.spent([&a]).await.unwrap().is_empty());
        ledger.spend(&a, "u2", now, false).await.unwrap();
        assert_eq!(ledger.recorded(), 2);
        assert_eq!(
            ledger.spent([&a]).await.unwrap(),
            BTreeSet::from(["cm/k".to_string()])
        );
    }

    #[tokio::test]
    async fn a_record_is_kept_until_the_keep_window_after_the_latest_expiry_seen() {
        let ledger = UseCounts::in_memory();
        let now: Timestamp = "2026-11-21T20:00:00Z".parse().unwrap();
        let later = approval("2026-11-21T21:30:00Z");
        let earlier = approval("2026-11-21T21:00:00Z");
        assert_eq!(ledger.spend(&later, "u1", now, false).await, Ok(Used::Now(1)));
        assert_eq!(ledger.spend(&later, "u2", now, false).await, Ok(Used::Now(2)));
        // Shortened to 21:00: still spent an hour after that, as the 21:30 one could
        // have been pasted back until 21:30.
        let at = |t: &str| t.parse::<Timestamp>().unwrap();
        assert_eq!(
            ledger
                .spend(&earlier, "u3", at("2026-11-21T22:20:00Z"), false)
                .await,
            Err(UsageError::Exhausted(2))
        );
        // Only an hour after the latest expiry seen is the record collected.
        assert_eq!(
            ledger
                .spend(&earlier, "u3", at("2026-11-21T22:31:00Z"), false)
                .await,
            Ok(Used::Now(1))
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// However the entries under one id change (expiry earlier or later, removed and
        /// written again) and however time passes, an id never allows more new uses than
        /// its maxUses until every entry that was used under it has been over for [`KEEP`].
        /// (A use is asked for only while its entry grants: its expiry is ahead.)
        #[test]
        fn no_edit_of_an_entry_gives_back_a_spent_use(
            max in 1u32..4,
            steps in proptest::collection::vec((1i64..120, 0i64..40, proptest::bool::ANY), 1..40),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let ledger = UseCounts::in_memory();
            let start: Timestamp = "2026-11-21T20:00:00Z".parse().unwrap();
            let mut now = start;
            let mut latest = Timestamp::MIN;
            let mut granted = 0u32;
            for (i, (expires_in, wait, dry_run)) in steps.into_iter().enumerate() {
                now += SignedDuration::from_mins(wait);
                let expires = now + SignedDuration::from_mins(expires_in);
                let text = format!(
                    "user: alice\nresource: secrets\nnamespace: prod\nmaxUses: {max}\nexpiresAt: \"{expires}\"\nreason: r\napprovedBy: [bob]\n"
                );
                let a = parse_entry("cm/k", &text).unwrap();
                if latest.checked_add(KEEP).is_ok_and(|until| until <= now) {
                    // Every entry seen under the id has been over for the keep window.
                    granted = 0;
                }
                if !dry_run {
                    latest = latest.max(expires);
                }
                let used = runtime.block_on(ledger.spend(&a, &format!("u{i}"), now, dry_run));
                if let Ok(Used::Now(_)) = used && !dry_run {
                    granted += 1;
                }
                proptest::prop_assert!(granted <= max, "{granted} uses of {max}");
            }
        }
    }
}
