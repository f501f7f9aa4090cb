//! The hash chain that makes the audit log tamper-evident.
//!
//! Each record is sealed as it is written: `"seq"` (1, 2, 3, … without gaps) and
//! `"prevHash"` (the previous record's hash) are appended to its JSON object, and then
//! `"hash"`, the SHA-256 (hex) of the record's bytes as written up to that point with the
//! closing brace, that is of the line with its `,"hash":"…"` member removed. Since the
//! previous hash is inside what is hashed, deleting, reordering or editing any record
//! breaks the chain at that record. The first record of a fresh log has `prevHash` of 64
//! zeros.
//!
//! What the chain cannot show by itself is that records were cut off the end; compare the
//! last `seq` with the one the server logs at shutdown, or with another copy of the log.

use crate::digest::sha256_hex;
use serde::Deserialize;
use std::fmt::Write as _;

/// The `prevHash` of the first record of a fresh log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const HASH_KEY: &[u8] = b",\"hash\":\"";
/// `,"hash":"` + 64 hex digits + `"}`.
const SUFFIX_LEN: usize = HASH_KEY.len() + 64 + 2;

/// Where the chain stands: the last record's sequence number and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub seq: u64,
    pub hash: String,
}

impl Default for Chain {
    fn default() -> Self {
        Chain {
            seq: 0,
            hash: GENESIS.to_string(),
        }
    }
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
}

impl Chain {
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
            seq: sealed.seq,
            hash: sealed.hash,
        })
    }
}

/// A sealed line, checked against its own hash.
pub struct Sealed {
    pub seq: u64,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Links {
    seq: u64,
    prev_hash: String,
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
            seq: links.seq,
            prev_hash: links.prev_hash,
            hash: String::from_utf8_lossy(hash).into_owned(),
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
