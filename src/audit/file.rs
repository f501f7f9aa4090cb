//! The `--audit-log` file: appended to, resumed across restarts, rotated by size.
//!
//! On open, the file's last record names the chain the new one follows (every start of the
//! process writes a new chain, whose first record says so). A torn last line (the process
//! died mid-write, so its request was never answered) is cut off. A file whose last record
//! is not sealed (written by something else, or damaged) is rotated away unread, and the
//! new chain names none before it.
//!
//! When the file reaches `max_bytes`, it is renamed to `<path>.<n>` (n = 1, 2, …, never
//! reused) and a new file is started; the chain runs on across files. Devices and pipes
//! (`/dev/stdout`, a FIFO) are written as they are: no resuming, no rotation.

use super::AuditError;
use super::chain::{Chain, Follows};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// How far back from the end to look for the last record.
const TAIL: u64 = 1024 * 1024;

pub struct LogFile {
    path: PathBuf,
    file: File,
    /// Bytes in the file; tracked only for regular files.
    size: u64,
    regular: bool,
    /// Takes a write at once (see [`takes_writes_at_once`]).
    at_once: bool,
    max_bytes: Option<u64>,
}

impl LogFile {
    /// Opens (or creates) the log and returns it with the chain its last record ends, if
    /// that record is sealed.
    pub fn open(path: &Path, max_bytes: Option<u64>) -> Result<(LogFile, Option<Follows>), AuditError> {
        let open_err = |source| AuditError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut log = LogFile::create(path, max_bytes).map_err(open_err)?;
        if !log.regular || log.size == 0 {
            return Ok((log, None));
        }
        let tail = log.read_tail().map_err(open_err)?;
        let complete = tail.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if complete < tail.len() {
            let torn = (tail.len() - complete) as u64;
            tracing::warn!(path = %path.display(), bytes = torn, "audit log ends in a torn record (never answered); cutting it off");
            log.size -= torn;
            log.file.set_len(log.size).map_err(open_err)?;
        }
        let last = tail[..complete]
            .strip_suffix(b"\n")
            .map(|t| t.rsplit(|b| *b == b'\n').next().unwrap_or(t));
        match last.map(Chain::after) {
            Some(Ok(chain)) => {
                tracing::info!(path = %path.display(), chain = %chain.id, seq = chain.seq, "audit log opened; the new chain follows its last record");
                Ok((log, Some(chain.as_follows())))
            }
            None => Ok((log, None)),
            Some(Err(e)) => {
                tracing::warn!(path = %path.display(), error = %e, "audit log's last record is not sealed; rotating it away");
                log.rotate().map_err(open_err)?;
                Ok((log, None))
            }
        }
    }

    fn create(path: &Path, max_bytes: Option<u64>) -> std::io::Result<LogFile> {
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let meta = file.metadata()?;
        Ok(LogFile {
            path: path.to_path_buf(),
            regular: meta.is_file(),
            at_once: takes_writes_at_once(&meta),
            size: meta.len(),
            file,
            max_bytes,
        })
    }

    fn read_tail(&mut self) -> std::io::Result<Vec<u8>> {
        let from = self.size.saturating_sub(TAIL);
        self.file.seek(SeekFrom::Start(from))?;
        let mut tail = Vec::new();
        self.file.read_to_end(&mut tail)?;
        Ok(tail)
    }

    /// Whether a write to it returns at once (a regular file or the null device), rather
    /// than perhaps waiting on a reader (a FIFO, a terminal).
    pub fn takes_writes_at_once(&self) -> bool {
        self.at_once
    }

    /// Appends `buf`. On failure nothing of it stays in a regular file, so the log never
    /// holds half a record; the caller keeps its chain where it was.
    pub fn append(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Err(e) = self.file.write_all(buf).and_then(|_| self.file.flush()) {
            if self.regular {
                let _ = self.file.set_len(self.size);
            }
            return Err(e);
        }
        if self.regular {
            self.size += buf.len() as u64;
            if self.max_bytes.is_some_and(|max| self.size >= max) {
                if let Err(e) = self.rotate() {
                    // Records still go to the current file; losing none beats the size cap.
                    tracing::error!(path = %self.path.display(), error = %e, "audit log rotation failed; still appending");
                }
            }
        }
        Ok(())
    }

    /// Renames the file to the next free `<path>.<n>` and starts a new one.
    fn rotate(&mut self) -> std::io::Result<()> {
        let rotated = next_rotated_name(&self.path)?;
        std::fs::rename(&self.path, &rotated)?;
        let fresh = LogFile::create(&self.path, self.max_bytes)?;
        tracing::info!(path = %self.path.display(), rotated = %rotated.display(), "audit log rotated");
        *self = fresh;
        Ok(())
    }
}

fn next_rotated_name(path: &Path) -> std::io::Result<PathBuf> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stem = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!("{stem}.");
    let mut highest = 0u64;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_prefix(&prefix).and_then(|n| n.parse::<u64>().ok()) {
            highest = highest.max(n);
        }
    }
    Ok(dir.join(format!("{stem}.{}", highest + 1)))
}

/// Whether writes to what `meta` describes return at once: a regular file, which the page
/// cache takes, or the null device. A pipe, a terminal or a socket can make a writer wait
/// for its reader, and another device for anything.
pub fn takes_writes_at_once(meta: &std::fs::Metadata) -> bool {
    meta.is_file() || is_null_device(meta)
}

/// Whether `meta` describes the null device (`/dev/null`), where a write does nothing.
pub fn is_null_device(meta: &std::fs::Metadata) -> bool {
    is_device(meta, "/dev/null")
}

/// Whether `meta` describes a device that keeps nothing written to it: the null device,
/// or the zero device (which takes writes as the null device does).
pub fn keeps_nothing(meta: &std::fs::Metadata) -> bool {
    is_device(meta, "/dev/null") || is_device(meta, "/dev/zero")
}

/// Whether `meta` describes the character device at `dev`.
fn is_device(meta: &std::fs::Metadata, dev: &str) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        meta.file_type().is_char_device() && std::fs::metadata(dev).is_ok_and(|d| d.rdev() == meta.rdev())
    }
    #[cfg(not(unix))]
    {
        let _ = (meta, dev);
        false
    }
}

/// Whether `a` and `b` are the same file (a pipe, a FIFO, a file).
pub fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        a.dev() == b.dev() && a.ino() == b.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        false
    }
}

/// A second file description of the pipe this process has open as `fd` (stdout: 1; `meta`
/// is its metadata), opened non-blocking: so that a write that would wait for the reader
/// returns `WouldBlock` instead. O_NONBLOCK belongs to a file description, so it is set on
/// a description of its own (the fd's own stays blocking). `None` when the fd is not a
/// pipe, or `/proc/self/fd/<fd>` cannot be opened (no /proc, a pipe with no reader) or
/// opens something else than what `meta` describes.
pub fn pipe_nonblocking(fd: i32, meta: &std::fs::Metadata) -> Option<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
        if !meta.file_type().is_fifo() {
            return None;
        }
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(format!("/proc/self/fd/{fd}"))
            .ok()?;
        let opened = file.metadata().ok()?;
        (opened.file_type().is_fifo() && opened.dev() == meta.dev() && opened.ino() == meta.ino())
            .then_some(file)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (fd, meta);
        None
    }
}

/// What this process's stdout is, when that can be told.
pub fn stdout_metadata() -> Option<std::fs::Metadata> {
    #[cfg(unix)]
    return metadata_of(std::io::stdout());
    #[cfg(not(unix))]
    None
}

/// What this process's stderr (where logs go) is, when that can be told.
pub fn stderr_metadata() -> Option<std::fs::Metadata> {
    #[cfg(unix)]
    return metadata_of(std::io::stderr());
    #[cfg(not(unix))]
    None
}

/// What the file an open descriptor describes is (through a copy of it).
#[cfg(unix)]
fn metadata_of(fd: impl std::os::fd::AsFd) -> Option<std::fs::Metadata> {
    let fd = fd.as_fd().try_clone_to_owned().ok()?;
    File::from(fd).metadata().ok()
}

/// The non-blocking description the runtime writes stdout (`fd`, a pipe; `meta` its
/// metadata) through, if it may have one: not when stderr (`stderr`, its metadata, `None`
/// when it cannot be told) is that same pipe, where a log line written between two parts of
/// a record would land inside it (see [`pipe_nonblocking`] for the other cases).
pub fn stdout_nonblocking(
    fd: i32,
    meta: &std::fs::Metadata,
    stderr: Option<&std::fs::Metadata>,
) -> Option<File> {
    if stderr_shares_the_pipe(meta, stderr) {
        return None;
    }
    pipe_nonblocking(fd, meta)
}

/// Whether stderr is stdout's own pipe (`2>&1`, runit, supervisord's `redirect_stderr`):
/// then a log line written while a record is half-written lands inside it. `None` for
/// stderr: it cannot be told, so it may be.
pub fn stderr_shares_the_pipe(stdout: &std::fs::Metadata, stderr: Option<&std::fs::Metadata>) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        stdout.file_type().is_fifo() && stderr.is_none_or(|err| same_file(err, stdout))
    }
    #[cfg(not(unix))]
    {
        let _ = (stdout, stderr);
        true
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::audit::chain::ChainId;

    fn seal_into(log: &mut LogFile, chain: &mut Chain, n: u32) {
        let mut buf = Vec::new();
        chain.seal(format!("{{\"n\":{n}}}").as_bytes(), &mut buf);
        log.append(&buf).unwrap();
    }

    fn verify_all(paths: &[PathBuf]) -> u64 {
        let mut chain = Chain::default();
        for p in paths {
            for line in std::fs::read(p).unwrap().split_inclusive(|b| *b == b'\n') {
                chain.follow(line).unwrap();
            }
        }
        chain.seq
    }

    /// A FIFO made at `path`, opened at both ends: its reader, and its (blocking) writer.
    #[cfg(target_os = "linux")]
    pub(in crate::audit) fn fifo(path: &Path) -> (File, File) {
        let reader = fifo_read_end(path);
        let writer = File::options().write(true).open(path).unwrap();
        (reader.join().unwrap(), writer)
    }

    /// A FIFO made at `path`, and its read end, open once something opens it to write.
    pub(crate) fn fifo_read_end(path: &Path) -> std::thread::JoinHandle<File> {
        make_fifo(path);
        let path = path.to_path_buf();
        std::thread::spawn(move || File::open(path).unwrap())
    }

    fn make_fifo(path: &Path) {
        assert!(
            std::process::Command::new("mkfifo")
                .arg(path)
                .status()
                .unwrap()
                .success()
        );
    }

    #[test]
    fn only_regular_files_and_the_null_device_are_written_without_a_thread() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.jsonl");
        std::fs::write(&file, "").unwrap();
        let fifo = dir.path().join("audit.fifo");
        make_fifo(&fifo);
        let at_once = |p: &Path| takes_writes_at_once(&std::fs::metadata(p).unwrap());
        assert!(at_once(&file));
        assert!(at_once(Path::new("/dev/null")));
        assert!(!at_once(&fifo), "a FIFO waits for its reader");
        assert!(!at_once(Path::new("/dev/full")), "another device");
        assert!(!at_once(dir.path()));
        // Writes to the null device are skipped altogether.
        let null = |p: &Path| is_null_device(&std::fs::metadata(p).unwrap());
        assert!(null(Path::new("/dev/null")));
        assert!(!null(&file) && !null(Path::new("/dev/full")));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn only_a_pipe_is_reopened_non_blocking_and_its_own_description_stays_blocking() {
        use std::os::fd::AsRawFd;
        // The open file status flags of a descriptor, as /proc tells them (octal).
        let nonblocking = |fd: i32| {
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
                .unwrap();
            flags & libc::O_NONBLOCK as u32 != 0
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.jsonl");
        std::fs::write(&file, "").unwrap();
        let regular = File::options().append(true).open(&file).unwrap();
        assert!(pipe_nonblocking(regular.as_raw_fd(), &regular.metadata().unwrap()).is_none());

        let (_reader, writer) = fifo(&dir.path().join("stdout.fifo"));
        let meta = writer.metadata().unwrap();
        let reopened = pipe_nonblocking(writer.as_raw_fd(), &meta).expect("a pipe is reopened");
        assert!(nonblocking(reopened.as_raw_fd()));
        assert!(
            !nonblocking(writer.as_raw_fd()),
            "the fd's own description is untouched"
        );
        // Metadata of something else than what the fd is: not reopened.
        assert!(pipe_nonblocking(regular.as_raw_fd(), &meta).is_none());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn stdout_is_not_reopened_non_blocking_when_stderr_is_the_same_pipe() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let pipe = |name: &str| fifo(&dir.path().join(name));
        let (_out_reader, stdout) = pipe("stdout.fifo");
        let (_err_reader, other) = pipe("stderr.fifo");
        let meta = stdout.metadata().unwrap();
        let fd = stdout.as_raw_fd();
        // 2>&1: stderr is a dup of stdout.
        let dup = stdout.try_clone().unwrap().metadata().unwrap();
        assert!(stdout_nonblocking(fd, &meta, Some(&dup)).is_none());
        // Stderr cannot be told: it may be the same pipe.
        assert!(stdout_nonblocking(fd, &meta, None).is_none());
        // Stderr a pipe of its own, a file, or the null device: stdout is reopened.
        assert!(stdout_nonblocking(fd, &meta, Some(&other.metadata().unwrap())).is_some());
        let file = dir.path().join("stderr.log");
        std::fs::write(&file, "").unwrap();
        assert!(stdout_nonblocking(fd, &meta, Some(&std::fs::metadata(&file).unwrap())).is_some());
        assert!(stdout_nonblocking(fd, &meta, Some(&std::fs::metadata("/dev/null").unwrap())).is_some());
    }

    #[test]
    fn a_reopened_log_names_the_chain_its_last_record_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (mut log, follows) = LogFile::open(&path, None).unwrap();
        assert_eq!(follows, None);
        let mut chain = Chain::new(ChainId::new("a"), None);
        seal_into(&mut log, &mut chain, 1);
        seal_into(&mut log, &mut chain, 2);
        drop(log);
        let (_, follows) = LogFile::open(&path, None).unwrap();
        assert_eq!(follows, Some(chain.as_follows()));
        assert_eq!(follows.unwrap().seq, 2);
    }

    #[test]
    fn a_torn_last_line_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (mut log, _) = LogFile::open(&path, None).unwrap();
        let mut chain = Chain::default();
        seal_into(&mut log, &mut chain, 1);
        log.append(b"{\"n\":2,\"seq\":2,\"prev").unwrap();
        drop(log);
        let (mut log, follows) = LogFile::open(&path, None).unwrap();
        assert_eq!(follows.map(|f| f.seq), Some(1));
        seal_into(&mut log, &mut chain, 2);
        assert_eq!(verify_all(&[path]), 2);
    }

    #[test]
    fn rotation_keeps_one_chain_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (mut log, _) = LogFile::open(&path, Some(200)).unwrap();
        let mut chain = Chain::default();
        for n in 0..10 {
            seal_into(&mut log, &mut chain, n);
        }
        let rotated: Vec<PathBuf> = (1..)
            .map(|i| dir.path().join(format!("audit.jsonl.{i}")))
            .take_while(|p| p.exists())
            .collect();
        assert!(rotated.len() >= 3, "{rotated:?}");
        assert!(std::fs::metadata(&rotated[0]).unwrap().len() < 400);
        let mut all = rotated;
        all.push(path);
        assert_eq!(verify_all(&all), 10);
    }

    #[test]
    fn a_log_that_is_not_sealed_is_rotated_away() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, "{\"old\":true}\n").unwrap();
        let (mut log, follows) = LogFile::open(&path, None).unwrap();
        assert_eq!(follows, None);
        let mut chain = Chain::default();
        seal_into(&mut log, &mut chain, 1);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("audit.jsonl.1")).unwrap(),
            "{\"old\":true}\n"
        );
        assert_eq!(verify_all(&[path]), 1);
    }

    #[test]
    fn a_failed_write_leaves_no_partial_record() {
        let (mut log, _) = LogFile::open(Path::new("/dev/full"), None).unwrap();
        assert!(log.append(b"{}\n").is_err());
    }
}
