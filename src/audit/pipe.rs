//! Stdout as a container has it: a pipe (a FIFO) that a log collector reads. A blocking
//! write to it waits whenever the collector falls behind, so such writes used to go to the
//! writer thread, two thread hand-offs per batch. When the pipe is stdout's own, it is set
//! non-blocking instead: the runtime writes what the pipe takes at once (nearly always the
//! whole batch) and leaves only the rest to the writer thread, which waits for room.
//!
//! Non-blocking is a property of the open pipe, shared by every descriptor of it. So this
//! is done only when stderr is not the same pipe (`2>&1`), whose log lines are written with
//! blocking writes, and once it is done, records reach stdout only through [`PipeOut`].

use std::io;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;

/// Stdout, non-blocking, with the runtime that watches it for room.
pub struct PipeOut {
    sender: pipe::Sender,
    runtime: tokio::runtime::Handle,
}

impl PipeOut {
    /// Stdout as a non-blocking pipe, when it is a pipe of its own (not stderr's too) and
    /// this is called on a Tokio runtime; else `None`, and records take the blocking way.
    pub fn stdout() -> Option<PipeOut> {
        use std::os::fd::AsFd;
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let out = io::stdout().as_fd().try_clone_to_owned().ok()?;
        let err = io::stderr().as_fd().try_clone_to_owned().ok()?;
        let out_meta = std::fs::File::from(out.try_clone().ok()?).metadata().ok()?;
        let err_meta = std::fs::File::from(err).metadata().ok()?;
        if !out_meta.file_type().is_fifo()
            || (out_meta.dev() == err_meta.dev() && out_meta.ino() == err_meta.ino())
        {
            return None;
        }
        let sender = pipe::Sender::from_owned_fd(out).ok()?;
        Some(PipeOut { sender, runtime })
    }

    /// Writes what the pipe takes without waiting; returns how much that was. Never waits.
    pub fn write_now(&self, buf: &[u8]) -> io::Result<usize> {
        let mut at = 0;
        while at < buf.len() {
            match self.sender.try_write(&buf[at..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(at)
    }

    /// Writes all of `buf`, waiting for the reader to make room. Only for the writer
    /// thread: it blocks the calling thread, which must not be one of the runtime's.
    pub fn write_waiting(&mut self, buf: &[u8]) -> io::Result<()> {
        let PipeOut { sender, runtime } = self;
        runtime.block_on(async { sender.write_all(buf).await })
    }
}
