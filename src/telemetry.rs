//! Logging: structured logs to stderr, JSON by default. Decision records are not logs;
//! they go to stdout through the audit writer.

use tracing_subscriber::EnvFilter;

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
/// overrides its level.
pub fn init(format: Option<LogFormat>, audience: Audience) {
    let level = match audience {
        Audience::Machines => "info",
        Audience::People => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let format = format.unwrap_or(match audience {
        Audience::Machines => LogFormat::Json,
        Audience::People => LogFormat::Text,
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match (format, audience) {
        (LogFormat::Json, _) => builder
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .init(),
        (LogFormat::Text, Audience::Machines) => builder.with_writer(std::io::stderr).init(),
        (LogFormat::Text, Audience::People) => builder
            .with_writer(OnceEach::default())
            .without_time()
            .with_ansi(false)
            .init(),
    }
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
