//! Logging: structured logs to stderr, JSON by default. Decision records are not logs;
//! they go to stdout through the audit writer.
//!
//! `serve` never waits on stderr: its lines are handed to a thread of their own, which
//! writes them in order; past [`LINES_HELD`] lines or [`BYTES_HELD`] bytes waiting
//! (stderr's reader stopped, or slower than the lines come), further lines are dropped
//! and counted ([`dropped_lines`]) rather than hold up a request, or a grant's removal,
//! that logs.
//! The commands people type write their lines at once.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// Lines `serve` holds for stderr at most (each is one log event, a few hundred bytes).
pub const LINES_HELD: usize = 16_384;
/// Bytes of lines `serve` holds for stderr at most: a line may quote what an operator
/// wrote (an approval entry refused), of any length.
pub const BYTES_HELD: usize = 8 << 20;
/// How long the lines held at exit are waited for at most: stderr may be stuck.
const FLUSH_WAIT: Duration = Duration::from_secs(1);

/// The lines of the one [`Lines`] that `serve` logs through.
static SERVED: std::sync::OnceLock<Arc<Held>> = std::sync::OnceLock::new();

/// What a [`Lines`] holds, and what it dropped.
#[derive(Default)]
struct Held {
    bytes: AtomicUsize,
    dropped: AtomicU64,
}

/// Held around each write of a log line, and of a record where stderr is stdout's pipe
/// (`2>&1`): a pipe takes a write of over 4 KiB in parts when it is full, and another
/// writer's line would land between them.
static PIPE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Keeps log lines from being written until dropped: for a record written to a pipe
/// that stderr shares.
pub fn hold_log_lines() -> std::sync::MutexGuard<'static, ()> {
    PIPE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Log lines `serve` dropped since it started, stderr not taking them.
pub fn dropped_lines() -> u64 {
    SERVED.get().map_or(0, |h| h.dropped.load(Ordering::Relaxed))
}

enum Msg {
    Line(Vec<u8>),
    /// Answered once every line before it is written.
    Flushed(SyncSender<()>),
}

/// Writes the lines still held when dropped (for at most `FLUSH_WAIT`).
#[must_use = "dropped at once, it does not wait for the lines held"]
pub struct Flush(Option<SyncSender<Msg>>);

impl Drop for Flush {
    fn drop(&mut self) {
        let Some(lines) = self.0.take() else { return };
        let until = Instant::now() + FLUSH_WAIT;
        let (ack, flushed) = sync_channel(1);
        let mut msg = Msg::Flushed(ack);
        loop {
            match lines.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < until => {
                    msg = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
        let _ = flushed.recv_timeout(until.saturating_duration_since(Instant::now()));
    }
}

/// The writer of one log event: its bytes go to the lines' thread as one line when it is
/// dropped, or are dropped and counted when [`LINES_HELD`] lines, or [`BYTES_HELD`] bytes
/// with it, wait already.
struct Line<'a> {
    buf: Vec<u8>,
    lines: &'a Lines,
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.buf);
        let (len, held) = (line.len(), &self.lines.held);
        if held.bytes.fetch_add(len, Ordering::AcqRel) + len > BYTES_HELD
            || self.lines.to_thread.try_send(Msg::Line(line)).is_err()
        {
            held.bytes.fetch_sub(len, Ordering::AcqRel);
            held.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Hands each event's line to a thread that writes them in order.
struct Lines {
    to_thread: SyncSender<Msg>,
    held: Arc<Held>,
}

impl Lines {
    /// Starts the thread that writes to stderr; `None` if it cannot be (then lines are
    /// written where logged).
    fn start() -> Option<Self> {
        let lines = Lines::start_to(std::io::stderr())?;
        let _ = SERVED.set(lines.held.clone());
        Some(lines)
    }

    /// Starts the thread that writes to `out`.
    fn start_to(mut out: impl Write + Send + 'static) -> Option<Self> {
        let (to_thread, taken) = sync_channel::<Msg>(LINES_HELD);
        let held = Arc::new(Held::default());
        let written = held.clone();
        std::thread::Builder::new()
            .name("jitgate-log".into())
            .spawn(move || {
                for msg in taken {
                    match msg {
                        Msg::Line(line) => {
                            {
                                let _held = hold_log_lines();
                                let _ = out.write_all(&line);
                            }
                            written.bytes.fetch_sub(line.len(), Ordering::AcqRel);
                        }
                        Msg::Flushed(ack) => {
                            let _ = ack.send(());
                        }
                    }
                }
            })
            .ok()?;
        Some(Lines { to_thread, held })
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            buf: Vec::new(),
            lines: self,
        }
    }
}

/// How logs are written: JSON lines (the server's default) or plain text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Who reads the logs of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// `serve`: a log pipeline. JSON, at `info`.
    Machines,
    /// The commands people type: plain text, warnings and errors only, each said once.
    People,
}

/// Installs the global subscriber. `format` overrides the audience's format; `RUST_LOG`
/// overrides its level. Keep what it returns until the program ends.
pub fn init(format: Option<LogFormat>, audience: Audience) -> Flush {
    let level = match audience {
        Audience::Machines => "info",
        Audience::People => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let format = format.unwrap_or(match audience {
        Audience::Machines => LogFormat::Json,
        Audience::People => LogFormat::Text,
    });
    // `serve` hands its lines to a thread of their own; the commands people type, and
    // `serve` if that thread cannot be started, write them where they are logged.
    let lines = (audience == Audience::Machines).then(Lines::start).flatten();
    let flush = Flush(lines.as_ref().map(|l| l.to_thread.clone()));
    let writer = match (lines, format, audience) {
        (Some(lines), _, _) => BoxMakeWriter::new(lines),
        (None, LogFormat::Text, Audience::People) => BoxMakeWriter::new(OnceEach::default()),
        (None, _, _) => BoxMakeWriter::new(std::io::stderr),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(writer);
    match (format, audience) {
        (LogFormat::Json, _) => builder.json().flatten_event(true).init(),
        (LogFormat::Text, Audience::Machines) => builder.init(),
        (LogFormat::Text, Audience::People) => builder.without_time().with_ansi(false).init(),
    }
    if audience == Audience::Machines && flush.0.is_none() {
        tracing::warn!("no thread for log lines; they are written where they are logged");
    }
    flush
}

/// Writes each distinct line to stderr once: a client that warns on every connection
/// (the kube client's "Server cert bypassed") says it to a person once.
#[derive(Default, Clone)]
struct OnceEach(std::sync::Arc<std::sync::Mutex<std::collections::HashSet<Vec<u8>>>>);

impl std::io::Write for OnceEach {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let fresh = self
            .0
            .lock()
            .map(|mut seen| seen.insert(buf.to_vec()))
            .unwrap_or(true);
        if fresh {
            std::io::stderr().write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for OnceEach {
    type Writer = OnceEach;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tracing_subscriber::fmt::MakeWriter;

    /// Written only while the test lets it.
    struct Stuck {
        gate: Arc<Mutex<()>>,
        out: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _open = self.gate.lock().unwrap();
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_waiting_for_a_stuck_stderr_are_held_up_to_their_bytes_and_the_rest_dropped() {
        let gate = Arc::new(Mutex::new(()));
        let out = Arc::new(Mutex::new(Vec::new()));
        let closed = gate.lock().unwrap();
        let lines = Lines::start_to(Stuck {
            gate: gate.clone(),
            out: out.clone(),
        })
        .unwrap();
        // Lines of a MiB each, as an approval entry quoted in a warning could be: who logs
        // never waits, 8 are held (one being written), the other 12 dropped and counted.
        let mib = |i: u8| {
            let mut line = vec![b'a' + i; (1 << 20) - 1];
            line.push(b'\n');
            line
        };
        for i in 0..20 {
            let mut w = lines.make_writer();
            w.write_all(&mib(i)).unwrap();
        }
        assert_eq!(lines.held.dropped.load(Ordering::Relaxed), 12);
        assert_eq!(lines.held.bytes.load(Ordering::Acquire), BYTES_HELD);
        // Stderr takes lines again: those held are written whole, in order.
        drop(closed);
        let flush = Flush(Some(lines.to_thread.clone()));
        drop(flush);
        let out = out.lock().unwrap();
        let written: Vec<u8> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| l[0])
            .collect();
        assert_eq!(written, (0..8).map(|i| b'a' + i).collect::<Vec<_>>());
        assert!(
            out.split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .all(|l| l.len() == (1 << 20) - 1)
        );
        assert_eq!(lines.held.bytes.load(Ordering::Acquire), 0);
    }
}
