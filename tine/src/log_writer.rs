//! Log output to stdout or stderr that never stalls the server.
//!
//! A process writing to a pipe blocks once the pipe is full (64 KiB on
//! Linux) until its reader takes something. A log reader that stops
//! reading (a paused pager, a stuck log shipper, a container runtime's
//! full buffer) would then freeze every worker in the middle of a request,
//! and the master in the middle of its supervision, watchdog included:
//! nothing would answer, and `SIGTERM` would wait on the pipe too.
//!
//! Making the inherited descriptor non-blocking is no cure: the flag
//! belongs to the open file description, which the shell and any sibling
//! process writing to the same pipe share, and they would start failing
//! with `EAGAIN`. So each kind of output gets a way of its own:
//!
//! - a pipe or FIFO is opened again through `/proc/self/fd/N` (Linux),
//!   which gives these processes a description of the same pipe of their
//!   own, made non-blocking;
//! - a socket (systemd's journal stream) is written with `MSG_DONTWAIT`,
//!   which leaves the descriptor as it is;
//! - a pipe that cannot be opened again (other systems, or no `/proc`) is
//!   polled for room before each line. That is best effort: the poll
//!   promises room for `PIPE_BUF` bytes (512 on macOS and FreeBSD, 4096
//!   on Linux), so a longer line, or two processes that both saw room for
//!   one line, can still block while the reader is stuck;
//! - anything else (a regular file, a terminal, `/dev/null`) is written as
//!   it is.
//!
//! A line that finds a full pipe waits up to a second for room: a reader
//! that is slow but reading slows the server down, as a blocking write
//! would, and loses nothing. A reader that is stuck costs one such wait;
//! after it, lines are dropped at once (and counted) until one goes out
//! again, and that one is preceded by a line saying how many were lost.
//! Each line is one `write(2)`, so lines of up to `PIPE_BUF` bytes (4096
//! on Linux) from several processes never tear on a pipe.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

/// A writer of log lines to stdout or stderr that never blocks for long:
/// for the application's logger, so that a log reader that stops reading
/// cannot freeze the master or the workers (see the module docs of
/// `tine/src/log_writer.rs` for how). A line that finds no room waits up
/// to a second for the reader; if the reader is stuck, that line and the
/// ones after it are dropped without waiting, and the next one that goes
/// out is preceded by a line saying how many were lost. Writing never
/// fails. (Linux; elsewhere a pipe is polled for room first, which a line
/// longer than `PIPE_BUF` can still block past: see the module docs.)
///
/// Each `write` call is taken as one whole record: a logger must hand it
/// a record at once (as `env_logger` does, with one `write_all` per
/// record), not in fragments, or records from several processes may
/// interleave.
///
/// Make it before the server starts (before the master forks and drops
/// privileges): on Linux it opens the pipe behind the descriptor again,
/// which an unprivileged worker may not be allowed to do.
///
/// ```
/// use std::io::Write;
/// let mut err = tine::LogWriter::stderr();
/// writeln!(err, "starting").unwrap();
/// // With env_logger:
/// // env_logger::Builder::from_default_env()
/// //     .target(env_logger::Target::Pipe(Box::new(tine::LogWriter::stderr())))
/// //     .init();
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LogWriter {
    out: &'static Output,
}

impl LogWriter {
    /// Writes to the process's standard error.
    pub fn stderr() -> LogWriter {
        static STDERR: OnceLock<Output> = OnceLock::new();
        LogWriter {
            out: STDERR.get_or_init(|| Output::new(io::stderr().as_fd())),
        }
    }

    /// Writes to the process's standard output.
    pub fn stdout() -> LogWriter {
        static STDOUT: OnceLock<Output> = OnceLock::new();
        LogWriter {
            out: STDOUT.get_or_init(|| Output::new(io::stdout().as_fd())),
        }
    }

    /// How many lines were dropped so far in this process (and not yet
    /// reported by a line written after them).
    pub fn dropped(&self) -> u64 {
        self.out.dropped.load(Relaxed)
    }

    /// Writes `line` with one `write(2)`: `Ok` when it went out whole,
    /// else why not. Neither counted nor reported here: for the access
    /// log, which counts and reports its lost lines itself, and whose
    /// stream must hold access log lines only.
    pub(crate) fn write_line(&self, line: &[u8]) -> io::Result<()> {
        self.out.write_line(line, false)
    }
}

impl io::Write for LogWriter {
    /// Writes `buf` as one line (or several, ending in a newline): whole,
    /// or not at all. Always `Ok(buf.len())`: a log line that cannot be
    /// written is not the caller's error.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = self.out.write_line(buf, true);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How an output is written without blocking.
#[derive(Debug, PartialEq, Eq)]
enum How {
    /// `send(MSG_DONTWAIT)`.
    Socket,
    /// Our own non-blocking description of the pipe.
    Reopened,
    /// A pipe we could not open again: polled for room first.
    Poll,
    /// A file, a terminal: written as it is.
    Plain,
}

#[derive(Debug)]
struct Output {
    /// A duplicate of the descriptor (the same description), or for
    /// [`How::Reopened`] the pipe's description of our own.
    fd: Option<OwnedFd>,
    how: How,
    /// The last line was cut short (a partial write): the next one starts
    /// on a line of its own.
    cut: AtomicBool,
    /// Lines dropped since the last report.
    dropped: AtomicU64,
    /// The last line found no room even after waiting: the next is not
    /// waited for.
    stalled: AtomicBool,
}

/// The longest a line waits for room in a full pipe or socket (see
/// [`Output::write_whole`]).
const WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// How a line goes to a socket: without waiting, and without `SIGPIPE`
/// where the flag exists (elsewhere Rust programs ignore `SIGPIPE`).
#[cfg(not(any(target_os = "macos", target_os = "ios")))]
const SEND: rustix::net::SendFlags =
    rustix::net::SendFlags::DONTWAIT.union(rustix::net::SendFlags::NOSIGNAL);
#[cfg(any(target_os = "macos", target_os = "ios"))]
const SEND: rustix::net::SendFlags = rustix::net::SendFlags::DONTWAIT;

/// A full pipe or socket.
fn is_full(result: &io::Result<usize>) -> bool {
    matches!(result, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

impl Output {
    /// The output to `fd` (stdout or stderr: open for the life of the
    /// process).
    fn new(fd: BorrowedFd<'_>) -> Output {
        let kind = rustix::fs::fstat(fd).map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode));
        let (fd, how) = match kind {
            Ok(rustix::fs::FileType::Socket) => (dup(fd), How::Socket),
            Ok(rustix::fs::FileType::Fifo) => match reopen(fd) {
                Some(own) => (Some(own), How::Reopened),
                None => (dup(fd), How::Poll),
            },
            _ => (dup(fd), How::Plain),
        };
        Output {
            fd,
            how,
            cut: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
        }
    }

    /// Writes `line` whole or not at all (see the type's docs); with
    /// `count`, a line dropped is counted, and the count reported before
    /// the next line that goes out.
    fn write_line(&self, line: &[u8], count: bool) -> io::Result<()> {
        let cut = self.cut.load(Relaxed);
        if !cut && (!count || self.dropped.load(Relaxed) == 0) {
            return self.write_whole(line, count, 0);
        }
        // Taken, not read: two threads reporting at once must not both
        // report (and take off) the same lines.
        let dropped = if count {
            self.dropped.swap(0, Relaxed)
        } else {
            0
        };
        // Cold: after a loss, the report and the line in one write.
        let mut with = Vec::with_capacity(line.len() + 64);
        if cut {
            with.push(b'\n');
        }
        if dropped > 0 {
            with.extend_from_slice(
                format!("tine: {dropped} log line(s) dropped: the reader had no room\n").as_bytes(),
            );
        }
        with.extend_from_slice(line);
        let result = self.write_whole(&with, count, dropped);
        if result.is_ok() {
            self.cut.store(false, Relaxed);
        }
        result
    }

    /// One write of `bytes`; on failure the `reported` drops (taken off the
    /// count by the caller) go back on it, with (with `count`) one more.
    fn write_whole(&self, bytes: &[u8], count: bool, reported: u64) -> io::Result<()> {
        let mut result = self.write_once(bytes);
        if is_full(&result) && !self.stalled.load(Relaxed) {
            // A reader that is slow but reading makes room soon: wait for
            // it, up to `WAIT`, so that a slow reader slows the server
            // down, as a blocking write would, and loses nothing. One that
            // is stuck costs one such wait; then lines are dropped at once
            // until one goes out again.
            if self.wait_for_room() {
                result = self.write_once(bytes);
            }
        }
        self.stalled.store(is_full(&result), Relaxed);
        match result {
            Ok(n) if n == bytes.len() => Ok(()),
            Ok(n) => {
                // Only a line longer than `PIPE_BUF`, or a full disk.
                self.cut.store(true, Relaxed);
                if count {
                    self.dropped.fetch_add(reported + 1, Relaxed);
                }
                Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("a line cut short after {n} of {} bytes", bytes.len()),
                ))
            }
            Err(e) => {
                if count {
                    self.dropped.fetch_add(reported + 1, Relaxed);
                }
                Err(e)
            }
        }
    }

    /// Waits up to [`WAIT`] until the output has room.
    fn wait_for_room(&self) -> bool {
        let Some(fd) = &self.fd else {
            return false;
        };
        let mut polled = [rustix::event::PollFd::new(
            fd,
            rustix::event::PollFlags::OUT,
        )];
        let wait = rustix::time::Timespec {
            tv_sec: WAIT.as_secs() as _,
            tv_nsec: WAIT.subsec_nanos() as _,
        };
        matches!(rustix::event::poll(&mut polled, Some(&wait)), Ok(n) if n > 0)
    }

    /// One write of `bytes`, again when interrupted before anything was
    /// written.
    fn write_once(&self, bytes: &[u8]) -> io::Result<usize> {
        loop {
            match self.try_write(bytes) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        let Some(fd) = &self.fd else {
            // No descriptor to write with (the process was out of them).
            return Err(io::ErrorKind::NotConnected.into());
        };
        let n = match &self.how {
            How::Socket => rustix::net::send(fd, bytes, SEND)?,
            How::Poll => {
                let mut polled = [rustix::event::PollFd::new(
                    &fd,
                    rustix::event::PollFlags::OUT,
                )];
                let ready =
                    rustix::event::poll(&mut polled, Some(&rustix::time::Timespec::default()))?;
                if ready == 0 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                rustix::io::write(fd, bytes)?
            }
            How::Reopened | How::Plain => rustix::io::write(fd, bytes)?,
        };
        Ok(n)
    }
}

/// A duplicate of `fd` (the same description), closed on `exec`.
fn dup(fd: BorrowedFd<'_>) -> Option<OwnedFd> {
    rustix::io::fcntl_dupfd_cloexec(fd, 3).ok()
}

/// Opens the pipe behind `fd` again, for writing, non-blocking: a
/// description of our own (see the module docs). Linux only: elsewhere
/// `/dev/fd/N` duplicates the descriptor, sharing its description.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn reopen(fd: BorrowedFd<'_>) -> Option<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    use std::os::fd::AsRawFd;
    rustix::fs::open(
        format!("/proc/self/fd/{}", fd.as_raw_fd()),
        OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn reopen(_fd: BorrowedFd<'_>) -> Option<OwnedFd> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// An output over a pipe of our own (not the test process's stdout).
    fn over_pipe() -> (Output, std::fs::File, OwnedFd) {
        let (read, write) = rustix::pipe::pipe().unwrap();
        let out = Output::new(write.as_fd());
        (out, std::fs::File::from(read), write)
    }

    #[test]
    fn a_full_pipe_drops_lines_instead_of_blocking_and_says_so_later() {
        let (out, mut reader, _write) = over_pipe();
        if cfg!(target_os = "linux") {
            assert_eq!(out.how, How::Reopened);
        }
        let line = [b'x'; 1023]
            .iter()
            .chain(b"\n")
            .copied()
            .collect::<Vec<u8>>();
        // Far more than a pipe holds: with a blocking write this test
        // would hang here.
        let mut failed = 0;
        for _ in 0..1000 {
            if out.write_line(&line, true).is_err() {
                failed += 1;
            }
        }
        assert!(failed > 0, "nothing dropped: the pipe held 1000 KiB?");
        assert_eq!(out.dropped.load(Relaxed), failed);
        // The reader catches up: the next line is preceded by the count.
        let mut drained = vec![0u8; 1 << 20];
        let mut got = Vec::new();
        while got.len() < (1000 - failed as usize) * line.len() {
            let n = reader.read(&mut drained).unwrap();
            got.extend_from_slice(&drained[..n]);
        }
        assert!(got.chunks(1024).all(|l| l == line), "whole lines only");
        out.write_line(b"after\n", true).unwrap();
        let n = reader.read(&mut drained).unwrap();
        assert_eq!(
            std::str::from_utf8(&drained[..n]).unwrap(),
            format!("tine: {failed} log line(s) dropped: the reader had no room\nafter\n")
        );
        assert_eq!(out.dropped.load(Relaxed), 0);
        // And the descriptor the pipe was inherited through is unchanged:
        // still blocking, for whoever else writes to it.
        let flags = rustix::fs::fcntl_getfl(&_write).unwrap();
        assert!(!flags.contains(rustix::fs::OFlags::NONBLOCK));
    }

    #[test]
    fn a_slow_reader_loses_nothing() {
        let (out, mut reader, _write) = over_pipe();
        let line = [b'z'; 4095]
            .iter()
            .chain(b"\n")
            .copied()
            .collect::<Vec<u8>>();
        const LINES: usize = 64;
        // 256 KiB, four times what the pipe holds, read 4 KiB every 2 ms.
        let slow = std::thread::spawn(move || {
            let mut got = 0;
            let mut buf = [0u8; 4096];
            while got < LINES * 4096 {
                std::thread::sleep(std::time::Duration::from_millis(2));
                got += reader.read(&mut buf).unwrap();
            }
        });
        for _ in 0..LINES {
            out.write_line(&line, true).unwrap();
        }
        assert_eq!(out.dropped.load(Relaxed), 0);
        slow.join().unwrap();
    }

    #[test]
    fn a_socket_is_written_without_waiting() {
        let (mut reader, writer) = std::os::unix::net::UnixStream::pair().unwrap();
        let out = Output::new(writer.as_fd());
        assert_eq!(out.how, How::Socket);
        let line = vec![b'y'; 4096];
        let mut failed = 0;
        for _ in 0..2000 {
            if out.write_line(&line, true).is_err() {
                failed += 1;
            }
        }
        assert!(failed > 0);
        assert!(!writer.nonblocking_flag(), "the socket's own flag changed");
        let mut buf = [0u8; 16];
        assert_eq!(reader.read(&mut buf).unwrap(), 16);
    }

    trait Flag {
        fn nonblocking_flag(&self) -> bool;
    }

    impl Flag for std::os::unix::net::UnixStream {
        fn nonblocking_flag(&self) -> bool {
            rustix::fs::fcntl_getfl(self)
                .unwrap()
                .contains(rustix::fs::OFlags::NONBLOCK)
        }
    }
}
