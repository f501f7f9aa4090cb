//! The hash chain that makes the audit log tamper-evident.
//!
//! Each record is sealed as it is written: `"chain"` (whose chain it is: see [`ChainId`]),
//! `"seq"` (1, 2, 3, … without gaps within the chain) and `"prevHash"` (the previous
//! record's hash) are appended to its JSON object, and then `"hash"`, the SHA-256 (hex) of
//! the record's bytes as written up to that point with the closing brace, that is of the
//! line with its `,"hash":"…"` member removed. Since the chain id and the previous hash
//! are inside what is hashed, deleting, reordering or editing any record, or moving it to
//! another chain, breaks the chain at that record. The first record of a chain has
//! `prevHash` of 64 zeros and, when the process knew the chain before it on the same
//! replica (the last record of `--audit-log`), a `"follows"` member naming that chain and
//! its last record's `seq` and `hash`.
//!
//! Every start of jitgate begins a new chain, so the records of three replicas restarted
//! any number of times are so many chains, each verifiable on its own whatever order the
//! log pipeline put their lines in ([`super::verify`]). What a chain cannot show by itself
//! is that records were cut off its end, or that a whole chain is missing: the anchors
//! ([`super::anchor`]) that each replica writes to the cluster do.

use crate::digest::sha256_hex;
use serde::Deserialize;
use std::fmt::Write as _;

/// The `prevHash` of the first record of a fresh log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const HASH_KEY: &[u8] = b",\"hash\":\"";
/// `,"hash":"` + 64 hex digits + `"}`.
const SUFFIX_LEN: usize = HASH_KEY.len() + 64 + 2;

/// Where the chain stands: which chain, the last record's sequence number and hash, and
/// the chain before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Empty only for the unnamed chains of logs written before chains had ids (and in
    /// tests): then no `"chain"` member is written.
    pub id: ChainId,
    pub seq: u64,
    pub hash: String,
    /// Written into the first record only.
    pub follows: Option<Follows>,
}

impl Default for Chain {
    fn default() -> Self {
        Chain {
            id: ChainId::default(),
            seq: 0,
            hash: GENESIS.to_string(),
            follows: None,
        }
    }
}

/// A chain's name: `<replica>_<16 hex digits>`, the replica being the pod's name (or the
/// host's), the digits random for every start of the process. It is a valid ConfigMap
/// key as it stands (a pod name has no `_`), which is how it is anchored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChainId(pub String);

impl ChainId {
    /// A fresh id for a chain written by `replica`. Characters a ConfigMap key may not
    /// hold become `-`, and the name is cut to leave room for the random part.
    pub fn new(replica: &str) -> ChainId {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 8];
        // Without the system's randomness, the time in nanoseconds is unique enough for
        // a name (it is not a secret).
        if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            bytes = now.to_be_bytes();
        }
        let replica: String = replica
            .chars()
            .take(200)
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let replica = if replica.is_empty() {
            "jitgate".into()
        } else {
            replica
        };
        ChainId(format!("{replica}_{}", crate::digest::hex_of(&bytes)))
    }

    /// The replica that wrote the chain: the id up to its last `_`.
    pub fn replica(&self) -> &str {
        self.0.rsplit_once('_').map_or(self.0.as_str(), |(r, _)| r)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for ChainId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("(unnamed)")
        } else {
            f.write_str(&self.0)
        }
    }
}

/// The chain a chain follows on the same replica, as its last record known to the process
/// that started the new one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Follows {
    pub chain: String,
    pub seq: u64,
    pub hash: String,
}

/// Why a line is not a sealed record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("not a sealed record (no \"hash\" member at its end)")]
    NotSealed,
    #[error("the record is not valid JSON, or lacks seq or prevHash")]
    Malformed,
    #[error("hash does not match the record's contents: it was edited")]
    HashMismatch,
    #[error("seq is {found}, expected {expected}: a record before it was deleted, or records were reordered")]
    OutOfSequence { expected: u64, found: u64 },
    #[error(
        "prevHash does not match the previous record's hash: a record before it was deleted, replaced or reordered"
    )]
    Unlinked,
    #[error("the record belongs to chain {found}, not {expected}")]
    OtherChain { expected: String, found: String },
}

impl Chain {
    /// A new chain named `id`, after `follows`.
    pub fn new(id: ChainId, follows: Option<Follows>) -> Chain {
        Chain {
            id,
            follows,
            ..Chain::default()
        }
    }

    /// Seals one record (a JSON object, with or without its trailing newline) and appends
    /// the sealed line, newline included, to `out`.
    pub fn seal(&mut self, record: &[u8], out: &mut Vec<u8>) {
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        let open = match record.strip_suffix(b"}") {
            Some(open) if open.starts_with(b"{") => open,
            // Records are built by this crate and are always objects; anything else is
            // kept, as a string, rather than lost.
            _ => b"{\"unsealable\":true",
        };
        self.seq += 1;
        let start = out.len();
        out.extend_from_slice(open);
        if open.len() > 1 {
            out.push(b',');
        }
        if !self.id.is_empty() {
            // Ids are made by [`ChainId::new`]: nothing in them needs escaping.
            let _ = write!(Bytes(out), "\"chain\":\"{}\",", self.id.0);
        }
        if self.seq == 1
            && let Some(f) = &self.follows
            && let Ok(json) = serde_json::to_string(f)
        {
            let _ = write!(Bytes(out), "\"follows\":{json},");
        }
        let _ = write!(
            Bytes(out),
            "\"seq\":{},\"prevHash\":\"{}\"}}",
            self.seq,
            self.hash
        );
        self.hash = sha256_hex(&out[start..]);
        out.pop();
        out.extend_from_slice(HASH_KEY);
        out.extend_from_slice(self.hash.as_bytes());
        out.extend_from_slice(b"\"}\n");
    }

    /// Checks that `line` is the record that follows this chain, and advances to it.
    pub fn follow(&mut self, line: &[u8]) -> Result<(), ChainError> {
        let sealed = Sealed::parse(line)?;
        if sealed.chain != self.id.0 {
            return Err(ChainError::OtherChain {
                expected: self.id.to_string(),
                found: ChainId(sealed.chain).to_string(),
            });
        }
        if sealed.seq != self.seq + 1 {
            return Err(ChainError::OutOfSequence {
                expected: self.seq + 1,
                found: sealed.seq,
            });
        }
        if sealed.prev_hash != self.hash {
            return Err(ChainError::Unlinked);
        }
        self.seq = sealed.seq;
        self.hash = sealed.hash;
        Ok(())
    }

    /// The chain as it stands after `line`, taken on trust (for the first record a
    /// verifier sees, and for resuming a log). The line's own hash is still checked.
    pub fn after(line: &[u8]) -> Result<Chain, ChainError> {
        let sealed = Sealed::parse(line)?;
        Ok(Chain {
            id: ChainId(sealed.chain),
            seq: sealed.seq,
            hash: sealed.hash,
            follows: None,
        })
    }

    /// What a chain that follows this one names in its first record.
    pub fn as_follows(&self) -> Follows {
        Follows {
            chain: self.id.0.clone(),
            seq: self.seq,
            hash: self.hash.clone(),
        }
    }
}

/// A sealed line, checked against its own hash.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// Empty for a record of an unnamed chain.
    pub chain: String,
    pub seq: u64,
    pub prev_hash: String,
    pub hash: String,
    /// The record's `timestamp`, as written.
    pub timestamp: String,
    pub follows: Option<Follows>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Links<'a> {
    #[serde(borrow, default)]
    chain: Option<std::borrow::Cow<'a, str>>,
    seq: u64,
    #[serde(borrow)]
    prev_hash: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    timestamp: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    follows: Option<Follows>,
}

impl Sealed {
    pub fn parse(line: &[u8]) -> Result<Sealed, ChainError> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        if line.len() < SUFFIX_LEN + 2 || !line.ends_with(b"\"}") {
            return Err(ChainError::NotSealed);
        }
        let cut = line.len() - SUFFIX_LEN;
        let (body, suffix) = line.split_at(cut);
        if !suffix.starts_with(HASH_KEY) {
            return Err(ChainError::NotSealed);
        }
        let hash = &suffix[HASH_KEY.len()..HASH_KEY.len() + 64];
        if !hash
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        {
            return Err(ChainError::NotSealed);
        }
        let mut hashed = Vec::with_capacity(body.len() + 1);
        hashed.extend_from_slice(body);
        hashed.push(b'}');
        if sha256_hex(&hashed).as_bytes() != hash {
            return Err(ChainError::HashMismatch);
        }
        let links: Links = serde_json::from_slice(&hashed).map_err(|_| ChainError::Malformed)?;
        Ok(Sealed {
            chain: links.chain.map(|c| c.into_owned()).unwrap_or_default(),
            seq: links.seq,
            prev_hash: links.prev_hash.into_owned(),
            hash: String::from_utf8_lossy(hash).into_owned(),
            timestamp: links.timestamp.map(|t| t.into_owned()).unwrap_or_default(),
            follows: links.follows,
        })
    }
}

/// `fmt::Write` onto a byte buffer.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(records: &[&str]) -> Vec<Vec<u8>> {
        let mut chain = Chain::default();
        records
            .iter()
            .map(|r| {
                let mut out = Vec::new();
                chain.seal(r.as_bytes(), &mut out);
                out
            })
            .collect()
    }

    fn verify(lines: &[Vec<u8>]) -> Result<(), (usize, ChainError)> {
        let mut chain = Chain::default();
        for (i, line) in lines.iter().enumerate() {
            chain.follow(line).map_err(|e| (i, e))?;
        }
        Ok(())
    }

    #[test]
    fn a_sealed_record_keeps_its_fields_and_gains_the_links() {
        let lines = sealed(&["{\"event\":\"decision\",\"allowed\":true}\n", "{}"]);
        let first: serde_json::Value = serde_json::from_slice(&lines[0]).unwrap();
        assert_eq!(first["event"], "decision");
        assert_eq!(first["seq"], 1);
        assert_eq!(first["prevHash"], GENESIS);
        let second: serde_json::Value = serde_json::from_slice(&lines[1]).unwrap();
        assert_eq!(second["seq"], 2);
        assert_eq!(second["prevHash"], first["hash"]);
        assert!(lines.iter().all(|l| l.ends_with(b"\"}\n")));
        assert_eq!(verify(&lines), Ok(()));
    }

    #[test]
    fn deleting_swapping_or_editing_a_record_is_caught_at_that_record() {
        let lines = sealed(&["{\"n\":1}", "{\"n\":2}", "{\"n\":3}", "{\"n\":4}"]);

        let mut deleted = lines.clone();
        deleted.remove(1);
        assert_eq!(
            verify(&deleted),
            Err((
                1,
                ChainError::OutOfSequence {
                    expected: 2,
                    found: 3
                }
            ))
        );

        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        assert!(matches!(
            verify(&swapped),
            Err((1, ChainError::OutOfSequence { .. }))
        ));

        let mut edited = lines.clone();
        edited[2] = String::from_utf8(edited[2].clone())
            .unwrap()
            .replace("\"n\":3", "\"n\":5")
            .into_bytes();
        assert_eq!(verify(&edited), Err((2, ChainError::HashMismatch)));
    }

    #[test]
    fn a_record_rebuilt_with_a_fresh_hash_still_breaks_the_link_after_it() {
        // A forger who edits record 2 and recomputes its hash must also rewrite every
        // later record: record 3 still names the old hash.
        let mut lines = sealed(&["{\"n\":1}", "{\"n\":2}", "{\"n\":3}"]);
        let mut chain = Chain::default();
        let mut scratch = Vec::new();
        chain.seal(b"{\"n\":1}", &mut scratch);
        let mut forged = Vec::new();
        chain.seal(b"{\"n\":20}", &mut forged);
        lines[1] = forged;
        assert_eq!(verify(&lines), Err((2, ChainError::Unlinked)));
    }

    #[test]
    fn lines_that_are_not_sealed_records_are_named_as_such() {
        assert_eq!(Sealed::parse(b"{\"n\":1}").err(), Some(ChainError::NotSealed));
        assert_eq!(Sealed::parse(b"").err(), Some(ChainError::NotSealed));
        let mut line = sealed(&["{\"n\":1}"]).remove(0);
        let at = line.len() - 5;
        line[at] = b'Z';
        assert_eq!(Sealed::parse(&line).err(), Some(ChainError::NotSealed));
    }

    #[test]
    fn a_named_chain_says_whose_it_is_in_every_record_and_what_it_follows_in_its_first() {
        let before = Follows {
            chain: "jitgate-0_00000000000000aa".into(),
            seq: 7,
            hash: "ab".repeat(32),
        };
        let id = ChainId::new("jitgate-0");
        assert_eq!(id.replica(), "jitgate-0");
        assert_ne!(id, ChainId::new("jitgate-0"), "every start names a new chain");
        let mut chain = Chain::new(id.clone(), Some(before.clone()));
        let mut lines = Vec::new();
        for n in 0..2 {
            let mut out = Vec::new();
            chain.seal(format!("{{\"n\":{n}}}").as_bytes(), &mut out);
            lines.push(out);
        }
        let first = Sealed::parse(&lines[0]).unwrap();
        let second = Sealed::parse(&lines[1]).unwrap();
        assert_eq!((first.chain.as_str(), first.follows), (id.as_str(), Some(before)));
        assert_eq!((second.chain.as_str(), second.follows), (id.as_str(), None));
        let mut check = Chain::new(id.clone(), None);
        for line in &lines {
            check.follow(line).unwrap();
        }
        // Moving a record to another chain is an edit: the id is inside what is hashed.
        let moved = String::from_utf8(lines[1].clone())
            .unwrap()
            .replace(id.as_str(), "jitgate-1_0000000000000001");
        assert_eq!(
            Sealed::parse(moved.as_bytes()).err(),
            Some(ChainError::HashMismatch)
        );
        // And a record of another chain does not follow this one.
        let mut other = Chain::new(ChainId::new("jitgate-1"), None);
        assert!(matches!(
            other.follow(&lines[0]),
            Err(ChainError::OtherChain { .. })
        ));
    }

    #[test]
    fn a_resumed_chain_continues_where_the_log_ended() {
        let lines = sealed(&["{\"n\":1}", "{\"n\":2}"]);
        let mut chain = Chain::after(&lines[1]).unwrap();
        assert_eq!(chain.seq, 2);
        let mut next = Vec::new();
        chain.seal(b"{\"n\":3}", &mut next);
        let mut all = lines;
        all.push(next);
        assert_eq!(verify(&all), Ok(()));
    }
}
