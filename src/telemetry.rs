//! Logging: structured logs to stderr, JSON by default. Decision records are not logs;
//! they go to stdout through the audit writer.
//!
//! `serve` never waits on stderr: its lines are handed to a thread of their own, which
//! writes them in order; past [`LINES_HELD`] lines waiting (stderr's reader stopped, or
//! slower than the lines come), further lines are dropped and counted
//! ([`dropped_lines`]) rather than hold up a request, or a grant's removal, that logs.
//! The commands people type write their lines at once.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// Lines `serve` holds for stderr at most (each is one log event, a few hundred bytes).
pub const LINES_HELD: usize = 16_384;
/// How long the lines held at exit are waited for at most: stderr may be stuck.
const FLUSH_WAIT: Duration = Duration::from_secs(1);

static DROPPED: AtomicU64 = AtomicU64::new(0);

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
    DROPPED.load(Ordering::Relaxed)
}

enum Msg {
    Line(Vec<u8>),
    /// Answered once every line before it is written.
    Flushed(SyncSender<()>),
}

/// Writes the lines still held when dropped (for at most [`FLUSH_WAIT`]).
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
/// dropped, or are dropped and counted when [`LINES_HELD`] lines wait already.
struct Line {
    buf: Vec<u8>,
    lines: SyncSender<Msg>,
}

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.buf);
        if self.lines.try_send(Msg::Line(line)).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Hands each event's line to a thread that writes them to stderr in order.
#[derive(Clone)]
struct Lines(SyncSender<Msg>);

impl Lines {
    /// Starts the thread; `None` if it cannot be (then lines are written where logged).
    fn start() -> Option<Self> {
        let (lines, taken) = sync_channel::<Msg>(LINES_HELD);
        std::thread::Builder::new()
            .name("jitgate-log".into())
            .spawn(move || {
                let mut stderr = std::io::stderr();
                for msg in taken {
                    match msg {
                        Msg::Line(line) => {
                            let _held = hold_log_lines();
                            let _ = stderr.write_all(&line);
                        }
                        Msg::Flushed(ack) => {
                            let _ = ack.send(());
                        }
                    }
                }
            })
            .ok()?;
        Some(Lines(lines))
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
    type Writer = Line;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            buf: Vec::new(),
            lines: self.0.clone(),
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
    let flush = Flush(lines.as_ref().map(|l| l.0.clone()));
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
