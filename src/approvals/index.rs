//! The in-memory approval cache, indexed by what a request carries: the namespace and the
//! resource, then who asks (the user, or one of their groups). A lookup is one cache probe,
//! then a binary search per subject within the bucket.
//!
//! Buckets (one per namespace and resource) live in a moka cache whose per-entry expiry
//! drops a bucket from memory once its last approval has expired (plus a grace period, so
//! that a denial can still say which approval expired). Eviction only saves memory: the
//! decision checks every approval's expiry against the clock itself, and an index is never
//! changed after it is built, so a new state of the approvals replaces the whole index at
//! once. A bucket per namespace and resource, rather than per subject too, keeps the cache
//! small: a hundred thousand approvals for as many users fill a few hundred buckets.

use super::approval::{Approval, Subject};
use jiff::Timestamp;
use moka::sync::Cache;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an expired approval stays findable, to explain a denial.
const EXPIRED_GRACE: Duration = Duration::from_secs(3600);
const GRACE_SIGNED: jiff::SignedDuration = jiff::SignedDuration::from_secs(3600);

/// The approvals of one namespace and resource, each with a hash of whom it is for, in
/// the order of those hashes (one allocation per bucket, none per subject).
#[derive(Debug)]
struct Bucket {
    by_subject: Box<[(u64, Arc<Approval>)]>,
    /// Whether every approval here has the same namespace, resource and subresource
    /// (always, unless the hashes of two places collide): then a lookup checks the first
    /// one's place once, not the place of each approval it finds.
    one_place: bool,
    latest_expiry: Timestamp,
}

impl Bucket {
    /// A bucket of approvals, each with the hash of whom it is for.
    fn new(mut by_subject: Vec<(u64, Arc<Approval>)>, now: Timestamp) -> Self {
        let latest_expiry = by_subject.iter().map(|(_, a)| a.expires_at).max().unwrap_or(now);
        by_subject.sort_unstable_by_key(|(who, _)| *who);
        let one_place = by_subject
            .first()
            .is_some_and(|(_, first)| by_subject.iter().all(|(_, a)| place_of(a) == place_of(first)));
        Bucket {
            by_subject: by_subject.into_boxed_slice(),
            one_place,
            latest_expiry,
        }
    }
}

/// An approval's namespace, resource and subresource.
fn place_of(a: &Approval) -> (&str, &str, &str) {
    (&a.namespace, &a.resource, &a.sub_resource)
}

/// Whether `a` is for the looked-up namespace, resource and subresource.
fn is_at(a: &Approval, k: &LookupKey<'_>) -> bool {
    place_of(a) == (k.namespace, k.resource, k.sub_resource)
}

/// The approvals of a bucket whose subject hashes to `who`.
fn of(by_subject: &[(u64, Arc<Approval>)], who: u64) -> &[(u64, Arc<Approval>)] {
    let start = by_subject.partition_point(|(h, _)| *h < who);
    let len = by_subject[start..].partition_point(|(h, _)| *h == who);
    &by_subject[start..start + len]
}

struct BucketExpiry;

impl moka::Expiry<u64, Arc<Bucket>> for BucketExpiry {
    fn expire_after_create(&self, _key: &u64, bucket: &Arc<Bucket>, _created: Instant) -> Option<Duration> {
        Some(until(bucket.latest_expiry, Timestamp::now()) + EXPIRED_GRACE)
    }
}

fn until(t: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO)
}

/// A request's coordinates for lookup.
#[derive(Debug, Clone, Copy)]
pub struct LookupKey<'a> {
    pub user: &'a str,
    pub groups: &'a [String],
    pub namespace: &'a str,
    pub resource: &'a str,
    pub sub_resource: &'a str,
}

pub struct ApprovalIndex {
    buckets: Cache<u64, Arc<Bucket>>,
    hasher: RandomState,
    len: usize,
}

impl std::fmt::Debug for ApprovalIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApprovalIndex").field("len", &self.len).finish()
    }
}

impl ApprovalIndex {
    /// Indexes `approvals`. Approvals that expired more than the grace period ago are left
    /// out: they can neither grant nor explain anything.
    pub fn build(approvals: &[Arc<Approval>], now: Timestamp) -> Self {
        let hasher = RandomState::new();
        let kept = || {
            approvals
                .iter()
                .filter(move |a| now.duration_since(a.expires_at) <= GRACE_SIGNED)
        };
        let place_hash = |a: &Approval| hasher.hash_one((&*a.namespace, &*a.resource, &*a.sub_resource));
        // Counted first, so that each bucket is made at its size: grown a push at a time,
        // the buckets of a hundred thousand approvals held up to 1.6 MB of room for nothing
        // while the index was built.
        let mut sizes: HashMap<u64, usize> = HashMap::new();
        for a in kept() {
            *sizes.entry(place_hash(a)).or_default() += 1;
        }
        let len = sizes.values().sum();
        let mut grouped: HashMap<u64, Vec<(u64, Arc<Approval>)>> = sizes
            .into_iter()
            .map(|(place, n)| (place, Vec::with_capacity(n)))
            .collect();
        for a in kept() {
            let who = hasher.hash_one(subject_parts(&a.subject));
            if let Some(bucket) = grouped.get_mut(&place_hash(a)) {
                bucket.push((who, Arc::clone(a)));
            }
        }
        let buckets = Cache::builder().expire_after(BucketExpiry).build();
        for (place, by_subject) in grouped {
            buckets.insert(place, Arc::new(Bucket::new(by_subject, now)));
        }
        ApprovalIndex { buckets, hasher, len }
    }

    /// Number of approvals indexed.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The approvals for this subject, namespace and resource (any name, operation, group
    /// or expiry: those are the decision's to check), borrowed from their bucket: a lookup
    /// copies nothing and allocates nothing, found or not.
    pub fn candidates<'i>(&'i self, k: &LookupKey<'i>) -> Candidates<'i> {
        let place = self.hasher.hash_one((k.namespace, k.resource, k.sub_resource));
        Candidates {
            bucket: self.buckets.get(&place),
            key: *k,
            hasher: &self.hasher,
        }
    }
}

/// What [`ApprovalIndex::candidates`] found: the bucket of the request's namespace and
/// resource, if any, to be walked for the request's user and groups.
pub struct Candidates<'i> {
    bucket: Option<Arc<Bucket>>,
    key: LookupKey<'i>,
    hasher: &'i RandomState,
}

impl<'i> Candidates<'i> {
    /// Calls `f` with each approval for the user, then for each of their groups.
    pub fn for_each<'c>(&'c self, mut f: impl FnMut(&'c Arc<Approval>)) {
        let Some(bucket) = self.bucket.as_deref() else {
            return;
        };
        let k = &self.key;
        // Buckets and subjects are found by hash: keep only exact matches. The bucket's
        // place is compared once, when the first approval for a subject is found.
        let mut here = None;
        let subjects = std::iter::once((0u8, k.user)).chain(k.groups.iter().map(|g| (1u8, g.as_str())));
        for subject in subjects {
            for (_, a) in of(&bucket.by_subject, self.hasher.hash_one(subject)) {
                if subject_parts(&a.subject) != subject {
                    continue;
                }
                let at = if bucket.one_place {
                    *here.get_or_insert_with(|| is_at(&bucket.by_subject[0].1, k))
                } else {
                    is_at(a, k)
                };
                if at {
                    f(a);
                }
            }
        }
    }
}

fn subject_parts(s: &Subject) -> (u8, &str) {
    match s {
        Subject::User(u) => (0, u),
        Subject::Group(g) => (1, g),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approvals::parse_entry;

    fn approval(id: &str, who: &str, ns: &str, resource: &str, expires: &str) -> Arc<Approval> {
        let text =
            format!("{who}\nresource: {resource}\nnamespace: {ns}\nexpiresAt: \"{expires}\"\nreason: r\n");
        Arc::new(parse_entry(id, &text).unwrap())
    }

    fn found(index: &ApprovalIndex, k: &LookupKey<'_>) -> Vec<Arc<Approval>> {
        let mut out = Vec::new();
        index.candidates(k).for_each(|a| out.push(a.clone()));
        out
    }

    fn key<'a>(
        user: &'a str,
        groups: &'a [String],
        ns: &'a str,
        resource: &'a str,
        sub: &'a str,
    ) -> LookupKey<'a> {
        LookupKey {
            user,
            groups,
            namespace: ns,
            resource,
            sub_resource: sub,
        }
    }

    /// A user's name is held inline up to 24 bytes and on the heap past that: either way
    /// the approval is found for that user (the name as the API server sends it), and only
    /// for them, and its signed terms name them as written.
    #[test]
    fn a_users_approval_is_found_by_their_name_whatever_its_length() {
        let far = "2099-01-01T00:00:00Z";
        let names = [
            "abcdefghijklmnopqrstuvwx",  // 24 bytes: inline
            "abcdefghijklmnopqrstuvwxy", // 25: on the heap
            "jürgen.müller@example.com", // not ASCII, 27 bytes
            "https://issuer.example.com#a-very-long-subject-claim-0123456789",
        ];
        let approvals: Vec<Arc<Approval>> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                approval(
                    &format!("cm/u{i}"),
                    &format!("user: \"{n}\""),
                    "prod",
                    "secrets",
                    far,
                )
            })
            .collect();
        let index = ApprovalIndex::build(&approvals, Timestamp::now());
        for (i, n) in names.iter().enumerate() {
            let user = n.to_string();
            let got = found(&index, &key(&user, &[], "prod", "secrets", ""));
            assert_eq!(got.len(), 1, "{n}");
            assert_eq!(got[0].id, format!("cm/u{i}"));
            assert_eq!(got[0].subject, Subject::User(user.as_str().into()));
            assert_eq!(got[0].terms().user, Some(*n));
            // One more byte, or another case, finds nothing.
            for other in [format!("{n}z"), n.to_uppercase()] {
                assert!(found(&index, &key(&other, &[], "prod", "secrets", "")).is_empty());
            }
        }
    }

    #[test]
    fn lookup_finds_the_users_and_their_groups_approvals_only() {
        let far = "2099-01-01T00:00:00Z";
        let index = ApprovalIndex::build(
            &[
                approval("cm/a", "user: alice", "prod", "secrets", far),
                approval("cm/b", "group: sre", "prod", "secrets", far),
                approval("cm/c", "user: bob", "prod", "secrets", far),
                approval("cm/d", "user: alice", "prod-eu", "secrets", far),
                approval("cm/e", "user: alice", "prod", "deployments/scale", far),
            ],
            Timestamp::now(),
        );
        assert_eq!(index.len(), 5);
        let groups = vec!["sre".to_string()];
        let mut ids: Vec<_> = found(&index, &key("alice", &groups, "prod", "secrets", ""))
            .iter()
            .map(|a| a.id.clone())
            .collect();
        ids.sort();
        assert_eq!(ids, ["cm/a", "cm/b"]);
        let scale = found(&index, &key("alice", &[], "prod", "deployments", "scale"));
        assert_eq!(scale.len(), 1);
        assert!(found(&index, &key("alice", &[], "prod", "deployments", "")).is_empty());
        assert!(found(&index, &key("carol", &[], "prod", "secrets", "")).is_empty());
    }

    /// An index whose one bucket sits where `ns`/`resource` hashes to but holds
    /// `approvals`, as when the hashes of two places collide.
    fn collided(ns: &str, resource: &str, approvals: Vec<Arc<Approval>>) -> ApprovalIndex {
        let hasher = RandomState::new();
        let by_subject = approvals
            .into_iter()
            .map(|a| (hasher.hash_one(subject_parts(&a.subject)), a))
            .collect();
        let buckets = Cache::builder().build();
        buckets.insert(
            hasher.hash_one((ns, resource, "")),
            Arc::new(Bucket::new(by_subject, Timestamp::now())),
        );
        ApprovalIndex {
            buckets,
            hasher,
            len: 1,
        }
    }

    #[test]
    fn a_bucket_found_by_a_colliding_hash_yields_only_approvals_for_the_place_asked() {
        let far = "2099-01-01T00:00:00Z";
        // All the bucket's approvals are for another place: nothing is found.
        let elsewhere = collided(
            "prod",
            "secrets",
            vec![
                approval("cm/a", "user: alice", "dev", "secrets", far),
                approval("cm/b", "user: alice", "dev", "secrets", far),
            ],
        );
        assert!(found(&elsewhere, &key("alice", &[], "prod", "secrets", "")).is_empty());
        // A bucket that holds two places: each approval is checked on its own.
        let mixed = collided(
            "prod",
            "secrets",
            vec![
                approval("cm/a", "user: alice", "dev", "secrets", far),
                approval("cm/b", "user: alice", "prod", "secrets", far),
                approval("cm/c", "user: alice", "prod", "configmaps", far),
            ],
        );
        let ids: Vec<_> = found(&mixed, &key("alice", &[], "prod", "secrets", ""))
            .iter()
            .map(|a| a.id.clone())
            .collect();
        assert_eq!(ids, ["cm/b"]);
    }

    #[test]
    fn a_recently_expired_approval_is_still_findable_to_explain_a_denial() {
        let now = Timestamp::now();
        let recent = (now - jiff::SignedDuration::from_mins(5)).to_string();
        let ancient = (now - jiff::SignedDuration::from_hours(5)).to_string();
        let index = ApprovalIndex::build(
            &[
                approval("cm/recent", "user: alice", "prod", "secrets", &recent),
                approval("cm/ancient", "user: alice", "prod", "pods", &ancient),
            ],
            now,
        );
        assert_eq!(found(&index, &key("alice", &[], "prod", "secrets", "")).len(), 1);
        assert!(found(&index, &key("alice", &[], "prod", "pods", "")).is_empty());
        assert_eq!(index.len(), 1);
    }
}
