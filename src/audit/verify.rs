//! `jitgate audit verify`: every chain in any mix of files and streams, each on its own.
//!
//! Lines are read from every source in turn; a line is a record when it ends in a sealed
//! record (`…,"hash":"<64 hex>"}`), whatever comes before it (a log shipper's prefix such as
//! the kubelet's `<time> stdout F `); anything else (jitgate's own log lines, other
//! programs') is counted and skipped. Records go to their chain by their `chain` member.
//!
//! Memory does not grow with a chain's length: a chain is held as its runs of consecutive,
//! linked records (first and last `seq` and hash of each), so a chain read in order is one
//! run, and records out of order (rotated files in any order) cost one run per file until
//! the runs between them arrive and they merge. What is left between runs at the end is a
//! gap. A `seq` seen again is compared with the copy seen first when that copy is one of
//! the last `RECENT` records of the chain or ends a run (a log shipper's retry, the same
//! file given twice); otherwise it is reported, since it cannot be told from a forgery.

use super::anchor::Anchor;
use super::chain::{ChainError, ChainId, Follows, GENESIS, Sealed};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Hashes of this many of a chain's latest records are kept to check repeated lines.
const RECENT: usize = 256;
/// Breaks listed per chain; more are counted.
const BREAKS_LISTED: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where a line was read: `file:line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub source: std::sync::Arc<str>,
    pub line: u64,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.source, self.line)
    }
}

/// What breaks a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    /// The record's hash does not match its contents.
    Edited { seq: Option<u64>, at: Place },
    /// The record does not link to the one before it.
    Unlinked { seq: u64, at: Place },
    /// Two different records claim the same `seq`.
    Conflict { seq: u64, at: Place },
    /// A `seq` seen again, whose first copy could not be compared.
    Repeated { seq: u64, at: Place },
    /// The anchored record is there, with another hash: the chain was rewritten.
    AnchorMismatch { seq: u64, at: Place },
    /// The chain's successor names a last record other than the one the chain has.
    SuccessorMismatch { seq: u64, successor: String },
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Break::Edited { seq: Some(seq), at } => {
                write!(f, "seq {seq} at {at}: {}", ChainError::HashMismatch)
            }
            Break::Edited { seq: None, at } => write!(
                f,
                "at {at}: a record whose seq cannot be read: {}",
                ChainError::HashMismatch
            ),
            Break::Unlinked { seq, at } => write!(f, "seq {seq} at {at}: {}", ChainError::Unlinked),
            Break::Conflict { seq, at } => write!(
                f,
                "seq {seq} at {at}: a different record with the same seq was seen before: one of them is forged"
            ),
            Break::Repeated { seq, at } => write!(
                f,
                "seq {seq} at {at}: seen again, too far from its first copy to compare them (give each file once)"
            ),
            Break::AnchorMismatch { seq, at } => write!(
                f,
                "seq {seq} at {at}: its hash is not the anchored one: the chain was rewritten up to its anchor"
            ),
            Break::SuccessorMismatch { seq, successor } => write!(
                f,
                "seq {seq}: the chain after it ({successor}) names another hash for this record"
            ),
        }
    }
}

/// A run of consecutive, linked records.
#[derive(Debug, Clone)]
struct Run {
    first: u64,
    first_prev: String,
    first_hash: String,
    first_time: String,
    first_at: Place,
    last: u64,
    last_hash: String,
    last_time: String,
}

#[derive(Debug, Default)]
struct ChainState {
    runs: BTreeMap<u64, Run>,
    recent: VecDeque<(u64, String)>,
    records: u64,
    repeats: u64,
    breaks: Vec<Break>,
    breaks_unlisted: u64,
    /// `seq`s of records that failed their own hash: not gaps, but breaks.
    edited: BTreeSet<u64>,
    follows: Option<Follows>,
    anchor: Option<Anchor>,
    /// The anchored record was seen with the anchored hash.
    anchor_seen: bool,
}

impl ChainState {
    fn broke(&mut self, b: Break) {
        if self.breaks.len() < BREAKS_LISTED {
            self.breaks.push(b);
        } else {
            self.breaks_unlisted += 1;
        }
    }

    fn remember(&mut self, seq: u64, hash: &str) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((seq, hash.to_string()));
    }

    fn add(&mut self, r: Sealed, at: Place) {
        if let Some(anchor) = &self.anchor
            && anchor.seq == r.seq
        {
            if anchor.hash == r.hash {
                self.anchor_seen = true;
            } else {
                self.broke(Break::AnchorMismatch {
                    seq: r.seq,
                    at: at.clone(),
                });
            }
        }
        // A run this record extends, or holds already.
        let before = self
            .runs
            .range(..=r.seq)
            .next_back()
            .map(|(k, run)| (*k, run.last, run.last_hash == r.prev_hash));
        match before {
            Some((key, last, linked)) if last + 1 == r.seq => {
                if !linked {
                    self.broke(Break::Unlinked { seq: r.seq, at });
                }
                let run = self.runs.get_mut(&key).expect("found above");
                run.last = r.seq;
                run.last_hash.clone_from(&r.hash);
                run.last_time.clone_from(&r.timestamp);
                self.records += 1;
                self.remember(r.seq, &r.hash);
                self.merge_after(key);
            }
            Some((key, last, _)) if r.seq <= last => {
                self.repeats += 1;
                let run = &self.runs[&key];
                let known = if run.last == r.seq {
                    Some(run.last_hash == r.hash)
                } else if run.first == r.seq {
                    Some(run.first_hash == r.hash)
                } else {
                    self.recent
                        .iter()
                        .find(|(s, _)| *s == r.seq)
                        .map(|(_, h)| *h == r.hash)
                };
                match known {
                    Some(true) => {}
                    Some(false) => self.broke(Break::Conflict { seq: r.seq, at }),
                    None => self.broke(Break::Repeated { seq: r.seq, at }),
                }
            }
            _ => {
                if r.seq == 1 {
                    if r.prev_hash != GENESIS {
                        self.broke(Break::Unlinked {
                            seq: 1,
                            at: at.clone(),
                        });
                    }
                    self.follows = r.follows.clone();
                }
                self.records += 1;
                self.remember(r.seq, &r.hash);
                self.runs.insert(
                    r.seq,
                    Run {
                        first: r.seq,
                        first_prev: r.prev_hash,
                        first_hash: r.hash.clone(),
                        first_time: r.timestamp.clone(),
                        first_at: at,
                        last: r.seq,
                        last_hash: r.hash,
                        last_time: r.timestamp,
                    },
                );
                self.merge_after(r.seq);
            }
        }
    }

    /// Joins the run at `key` with the run that starts right after it, if any.
    fn merge_after(&mut self, key: u64) {
        let next = self.runs[&key].last + 1;
        let Some(after) = self.runs.remove(&next) else {
            return;
        };
        if after.first_prev != self.runs[&key].last_hash {
            self.broke(Break::Unlinked {
                seq: after.first,
                at: after.first_at.clone(),
            });
        }
        let run = self.runs.get_mut(&key).expect("present");
        run.last = after.last;
        run.last_hash = after.last_hash;
        run.last_time = after.last_time;
    }
}

/// Checks chains line by line; [`Verifier::finish`] says what it found.
#[derive(Debug, Default)]
pub struct Verifier {
    chains: BTreeMap<ChainId, ChainState>,
    /// Lines that are not records.
    pub foreign: u64,
    anchored: bool,
}

impl Verifier {
    /// A verifier that also checks the records against `anchors`.
    pub fn with_anchors(anchors: BTreeMap<String, Anchor>) -> Verifier {
        let mut v = Verifier {
            anchored: true,
            ..Verifier::default()
        };
        for (id, anchor) in anchors {
            v.chains.entry(ChainId(id)).or_default().anchor = Some(anchor);
        }
        v
    }

    /// Reads every line of `source`, named `name` in what is reported.
    pub fn read(&mut self, name: &str, source: impl Read) -> std::io::Result<()> {
        let name: std::sync::Arc<str> = name.into();
        let mut reader = BufReader::with_capacity(256 * 1024, source);
        let mut line = Vec::with_capacity(4096);
        let mut n = 0;
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            n += 1;
            self.line(
                &line,
                Place {
                    source: name.clone(),
                    line: n,
                },
            );
        }
    }

    /// Reads `path`, or stdin for `-`.
    pub fn read_path(&mut self, path: &Path) -> Result<(), VerifyError> {
        let io = |source| VerifyError::Io {
            path: path.to_path_buf(),
            source,
        };
        if path == Path::new("-") {
            self.read("(stdin)", std::io::stdin().lock()).map_err(io)
        } else {
            let file = std::fs::File::open(path).map_err(io)?;
            self.read(&path.display().to_string(), file).map_err(io)
        }
    }

    /// Takes one line.
    pub fn line(&mut self, line: &[u8], at: Place) {
        let Some(record) = record_in(line) else {
            self.foreign += 1;
            return;
        };
        match Sealed::parse(record) {
            Ok(sealed) => {
                let id = ChainId(sealed.chain.clone());
                self.chains.entry(id).or_default().add(sealed, at);
            }
            Err(ChainError::NotSealed) => self.foreign += 1,
            Err(_) => {
                // Whose it claims to be, read without trusting it.
                let claimed = serde_json::from_slice::<Value>(record).ok();
                let field = |k: &str| claimed.as_ref().and_then(|v| v.get(k).cloned());
                let chain = field("chain")
                    .and_then(|c| c.as_str().map(String::from))
                    .unwrap_or_default();
                let seq = field("seq").and_then(|s| s.as_u64());
                let state = self.chains.entry(ChainId(chain)).or_default();
                if let Some(seq) = seq {
                    state.edited.insert(seq);
                }
                state.broke(Break::Edited { seq, at });
            }
        }
    }

    /// What was found, chain by chain. With `partial`, a chain whose first records (or
    /// whose predecessor) are not among those given is not a failure.
    pub fn finish(self, partial: bool) -> Verdict {
        let mut chains: Vec<ChainReport> = Vec::new();
        let lasts: BTreeMap<ChainId, (u64, String)> = self
            .chains
            .iter()
            .filter_map(|(id, c)| {
                let last = c.runs.values().next_back()?;
                Some((id.clone(), (last.last, last.last_hash.clone())))
            })
            .collect();
        // What each chain's successor says of its last record.
        let mut named_last: BTreeMap<ChainId, (u64, String, ChainId)> = BTreeMap::new();
        for (id, c) in &self.chains {
            if let Some(f) = &c.follows {
                named_last.insert(ChainId(f.chain.clone()), (f.seq, f.hash.clone(), id.clone()));
            }
        }
        let mut missing = Vec::new();
        for (id, mut c) in self.chains {
            let anchor = c.anchor.take();
            if c.runs.is_empty() && c.breaks.is_empty() {
                // Known only from the anchors.
                if let Some(a) = anchor
                    && a.seq > 0
                {
                    missing.push(a);
                }
                continue;
            }
            let mut gaps = Vec::new();
            let mut findings = Vec::new();
            let first = c.runs.values().next().cloned();
            let last = c.runs.values().next_back().cloned();
            if let Some(first) = &first
                && first.first > 1
            {
                if partial {
                    findings.push(Finding::note(format!(
                        "starts at seq {}: the records before it are not among those given",
                        first.first
                    )));
                } else {
                    gaps.push((1, first.first - 1));
                }
            }
            let mut previous: Option<u64> = None;
            for run in c.runs.values() {
                if let Some(end) = previous {
                    gaps.push((end + 1, run.first - 1));
                }
                previous = Some(run.last);
            }
            // A record that failed its own hash is a break, not also a gap.
            let mut gaps: Vec<(u64, u64)> = gaps
                .into_iter()
                .flat_map(|(from, to)| without(&c.edited, from, to))
                .collect();
            if let Some(f) = &c.follows {
                let before = ChainId(f.chain.clone());
                if !lasts.contains_key(&before) {
                    let text = format!(
                        "follows chain {before}, which is not among the records given (it ended at seq {} or later)",
                        f.seq
                    );
                    findings.push(if partial {
                        Finding::note(text)
                    } else {
                        Finding::fail(text)
                    });
                } else {
                    findings.push(Finding::note(format!(
                        "follows chain {before} from its seq {}",
                        f.seq
                    )));
                }
            }
            if let (Some((seq, hash, successor)), Some(last)) = (named_last.get(&id), &last) {
                if last.last < *seq {
                    gaps.push((last.last + 1, *seq));
                    findings.push(Finding::fail(format!(
                        "cut short: the chain after it ({successor}) says it ran to seq {seq}"
                    )));
                } else if last.last == *seq && last.last_hash != *hash {
                    c.broke(Break::SuccessorMismatch {
                        seq: *seq,
                        successor: successor.to_string(),
                    });
                }
            }
            match (&anchor, &last) {
                (None, _) if self.anchored => findings.push(Finding::fail(
                    "not anchored: no replica of this cluster anchored this chain (another cluster's, or written after the anchors were read)".to_string(),
                )),
                (Some(a), Some(last)) if a.seq > 0 && !c.anchor_seen => {
                    findings.push(Finding::fail(if last.last < a.seq {
                        format!(
                            "cut short: anchored at seq {} ({}), but the last record given is seq {}",
                            a.seq, a.time, last.last
                        )
                    } else {
                        format!("the anchored record, seq {} ({}), is not among those given", a.seq, a.time)
                    }));
                }
                (Some(a), Some(last)) => findings.push(Finding::note(if a.seq == 0 {
                    format!("anchored at its start ({}); no record of it is anchored", a.time)
                } else if last.last > a.seq {
                    format!(
                        "anchored at seq {} ({}); the {} record(s) after it are not anchored",
                        a.seq,
                        a.time,
                        last.last - a.seq
                    )
                } else {
                    format!("anchored at its last record, seq {} ({})", a.seq, a.time)
                })),
                _ => {}
            }
            chains.push(ChainReport {
                replica: id.replica().to_string(),
                id,
                records: c.records,
                repeats: c.repeats,
                first: first.map(|r| (r.first, r.first_time)),
                last: last.map(|r| (r.last, r.last_time, r.last_hash)),
                gaps,
                breaks: c.breaks,
                breaks_unlisted: c.breaks_unlisted,
                findings,
            });
        }
        Verdict {
            chains,
            missing,
            foreign: self.foreign,
        }
    }
}

/// `from..=to` without the numbers in `out`, as ranges.
fn without(out: &BTreeSet<u64>, from: u64, to: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    let mut start = from;
    for &s in out.range(from..=to) {
        if s > start {
            ranges.push((start, s - 1));
        }
        start = s + 1;
    }
    if start <= to {
        ranges.push((start, to));
    }
    ranges
}

/// The sealed record a line ends with, after whatever prefix a log shipper gave it; `None`
/// when the line cannot be one.
pub(crate) fn record_in(line: &[u8]) -> Option<&[u8]> {
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map(|i| i + 1)?;
    let line = &line[..end];
    if !line.ends_with(b"\"}") {
        return None;
    }
    if line.first() == Some(&b'{') {
        return Some(line);
    }
    let start = find(line, b"{\"timestamp\":").or_else(|| find(line, b"{\""))?;
    Some(&line[start..])
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Something said of a chain: a failure, or a note for the reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub fails: bool,
    pub text: String,
}

impl Finding {
    fn fail(text: String) -> Finding {
        Finding { fails: true, text }
    }
    fn note(text: String) -> Finding {
        Finding { fails: false, text }
    }
}

/// What was found of one chain.
#[derive(Debug, Clone)]
pub struct ChainReport {
    pub id: ChainId,
    pub replica: String,
    pub records: u64,
    /// Lines that repeated a record already seen.
    pub repeats: u64,
    /// `seq` and time of its first record given.
    pub first: Option<(u64, String)>,
    /// `seq`, time and hash of its last record given.
    pub last: Option<(u64, String, String)>,
    /// `seq` ranges missing, inclusive.
    pub gaps: Vec<(u64, u64)>,
    pub breaks: Vec<Break>,
    pub breaks_unlisted: u64,
    pub findings: Vec<Finding>,
}

impl ChainReport {
    pub fn intact(&self) -> bool {
        self.gaps.is_empty() && self.breaks.is_empty() && !self.findings.iter().any(|f| f.fails)
    }
}

/// What `jitgate audit verify` found.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub chains: Vec<ChainReport>,
    /// Anchored chains of which no record was given.
    pub missing: Vec<Anchor>,
    pub foreign: u64,
}

impl Verdict {
    pub fn intact(&self) -> bool {
        self.missing.is_empty() && self.chains.iter().all(ChainReport::intact)
    }

    /// The report for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.chains {
            let _ = writeln!(
                out,
                "chain {} (replica {}): {}",
                c.id,
                if c.replica.is_empty() { "-" } else { &c.replica },
                if c.intact() { "intact" } else { "BROKEN" }
            );
            match (&c.first, &c.last) {
                (Some((f, ft)), Some((l, lt, lh))) => {
                    let _ = writeln!(
                        out,
                        "  records: {} (seq {f} at {ft} .. seq {l} at {lt}); last hash {lh}",
                        c.records
                    );
                }
                _ => {
                    let _ = writeln!(out, "  records: none readable");
                }
            }
            if c.repeats > 0 {
                let _ = writeln!(out, "  {} line(s) repeated a record already read", c.repeats);
            }
            for (from, to) in &c.gaps {
                if from == to {
                    let _ = writeln!(out, "  GAP: seq {from} is missing");
                } else {
                    let _ = writeln!(
                        out,
                        "  GAP: seq {from}..{to} are missing ({} records)",
                        to - from + 1
                    );
                }
            }
            for b in &c.breaks {
                let _ = writeln!(out, "  BREAK: {b}");
            }
            if c.breaks_unlisted > 0 {
                let _ = writeln!(out, "  BREAK: {} more", c.breaks_unlisted);
            }
            for f in &c.findings {
                let _ = writeln!(out, "  {}{}", if f.fails { "FAIL: " } else { "" }, f.text);
            }
        }
        for a in &self.missing {
            let _ = writeln!(
                out,
                "chain {} (replica {}): MISSING: anchored at seq {} ({}), but none of its records were given",
                a.chain, a.replica, a.seq, a.time
            );
        }
        let broken = self.chains.iter().filter(|c| !c.intact()).count();
        let _ = writeln!(
            out,
            "{}: {} chain(s), {} intact, {} broken, {} missing; {} line(s) that are not records skipped",
            if self.intact() { "ok" } else { "BROKEN" },
            self.chains.len() + self.missing.len(),
            self.chains.len() - broken,
            broken,
            self.missing.len(),
            self.foreign
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::{Chain, ChainId};

    fn chain_lines(chain: &mut Chain, n: u64) -> Vec<String> {
        (0..n)
            .map(|i| {
                let mut out = Vec::new();
                chain.seal(
                    format!("{{\"timestamp\":\"2026-12-04T15:00:{:02}Z\",\"n\":{i}}}", i % 60).as_bytes(),
                    &mut out,
                );
                String::from_utf8(out).unwrap()
            })
            .collect()
    }

    fn verdict(sources: &[Vec<String>], partial: bool) -> Verdict {
        let mut v = Verifier::default();
        for (i, lines) in sources.iter().enumerate() {
            v.read(&format!("s{i}"), lines.concat().as_bytes()).unwrap();
        }
        v.finish(partial)
    }

    #[test]
    fn interleaved_chains_with_prefixes_and_foreign_lines_verify_each_on_its_own() {
        let mut a = Chain::new(ChainId::new("pod-a"), None);
        let mut b = Chain::new(ChainId::new("pod-b"), None);
        let (la, lb) = (chain_lines(&mut a, 50), chain_lines(&mut b, 30));
        let mut mixed = Vec::new();
        for i in 0..50 {
            mixed.push(format!("2026-12-04T15:00:00.1Z stdout F {}", la[i]));
            mixed.push("{\"timestamp\":\"x\",\"level\":\"INFO\",\"message\":\"hi\"}\n".to_string());
            if i < 30 {
                mixed.push(lb[i].clone());
            }
        }
        let v = verdict(&[mixed], false);
        assert!(v.intact(), "{}", v.render());
        assert_eq!(v.chains.len(), 2);
        assert_eq!(v.foreign, 50);
        assert_eq!(v.chains.iter().map(|c| c.records).sum::<u64>(), 80);
    }

    #[test]
    fn rotated_files_in_any_order_merge_into_one_run_and_a_missing_one_is_a_gap() {
        let mut a = Chain::new(ChainId::new("pod-a"), None);
        let lines = chain_lines(&mut a, 30);
        let files: Vec<Vec<String>> = lines.chunks(10).map(<[String]>::to_vec).collect();
        let v = verdict(&[files[2].clone(), files[0].clone(), files[1].clone()], false);
        assert!(v.intact(), "{}", v.render());
        assert_eq!(v.chains[0].last.as_ref().unwrap().0, 30);
        let v = verdict(&[files[2].clone(), files[0].clone()], false);
        assert_eq!(v.chains[0].gaps, [(11, 20)]);
        let v = verdict(&[files[2].clone(), files[1].clone()], false);
        assert_eq!(v.chains[0].gaps, [(1, 10)], "{}", v.render());
        assert!(verdict(&[files[2].clone(), files[1].clone()], true).intact());
    }

    #[test]
    fn a_repeated_line_is_compared_with_its_first_copy() {
        let mut a = Chain::new(ChainId::new("pod-a"), None);
        let lines = chain_lines(&mut a, 10);
        let mut again = lines.clone();
        again.insert(6, lines[4].clone());
        let v = verdict(&[again, lines.clone()], false);
        assert!(v.intact(), "{}", v.render());
        assert_eq!(v.chains[0].repeats, 11);
        // A forged copy of seq 5, sealed anew with the right link, conflicts.
        let mut forger = Chain::new(a.id.clone(), None);
        let mut forged = chain_lines(&mut forger, 4);
        let mut out = Vec::new();
        forger.seal(b"{\"timestamp\":\"2026-12-04T15:00:04Z\",\"n\":40}", &mut out);
        forged.push(String::from_utf8(out).unwrap());
        let v = verdict(&[lines, forged], false);
        assert!(
            matches!(v.chains[0].breaks[..], [Break::Conflict { seq: 5, .. }]),
            "{}",
            v.render()
        );
    }

    #[test]
    fn a_chain_whose_successor_names_a_later_record_was_cut_short() {
        let mut a = Chain::new(ChainId::new("pod-a"), None);
        let first = chain_lines(&mut a, 10);
        let mut b = Chain::new(ChainId::new("pod-a"), Some(a.as_follows()));
        let second = chain_lines(&mut b, 3);
        assert!(verdict(&[first.clone(), second.clone()], false).intact());
        let v = verdict(&[first[..7].to_vec(), second.clone()], false);
        let cut = &v.chains.iter().find(|c| c.id == a.id).unwrap();
        assert_eq!(cut.gaps, [(8, 10)], "{}", v.render());
        let v = verdict(std::slice::from_ref(&second), false);
        assert!(
            !v.intact() && v.render().contains("not among the records given"),
            "{}",
            v.render()
        );
        assert!(verdict(&[second], true).intact());
    }

    #[test]
    fn gaps_leave_out_records_that_are_there_but_edited() {
        let set: BTreeSet<u64> = [3, 4, 8].into();
        assert_eq!(without(&set, 2, 9), [(2, 2), (5, 7), (9, 9)]);
        assert_eq!(without(&set, 3, 4), []);
    }
}
