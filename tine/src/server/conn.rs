//! One connection's state, and its socket I/O: flushing queued bytes,
//! sending bodies (memory, stream, file), lingering close.
//!
//! A connection holds no buffer while idle: read data lives in `rbuf` only
//! while a request is incomplete, and queued output in `wbuf` only while
//! the socket refuses more. That keeps an idle keep-alive connection to the
//! size of this struct.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use mio::net::TcpStream;

use crate::http::encode::{encode_chunk, LAST_CHUNK};
use crate::http::parse::Decoder;
use crate::http::FileBody;
use crate::ws::session::{Session, Wire};

/// Most bytes of stream chunks gathered per write.
const STREAM_BATCH: usize = 64 * 1024;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Reading requests, writing responses.
    Open,
    /// The last response is queued; close once it is sent.
    Closing,
    /// Output done and write side shut; discarding input until the peer
    /// closes or the linger deadline passes, so the peer reads our last
    /// response instead of a reset.
    Lingering,
}

/// A body still being sent after its head.
pub(crate) enum Pending {
    Bytes(Bytes),
    Stream {
        chunks: Box<dyn Iterator<Item = Bytes>>,
        chunked: bool,
    },
    File(FileBody),
}

pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) generation: u32,
    pub(crate) rbuf: BytesMut,
    pub(crate) decoder: Decoder,
    pub(crate) wbuf: Vec<u8>,
    pub(crate) wpos: usize,
    pub(crate) pending: Option<Pending>,
    pub(crate) phase: Phase,
    /// Responses completed on this connection.
    pub(crate) served: u32,
    /// The socket may have unread data (edge-triggered readiness).
    pub(crate) readable: bool,
    /// When the current request head started arriving.
    pub(crate) head_started: Option<Instant>,
    /// When the current request's head was complete, while its body is
    /// still arriving.
    pub(crate) body_started: Option<Instant>,
    /// When the connection last made progress.
    pub(crate) last_active: Instant,
    pub(crate) deadline: Instant,
    /// The wheel tick of this connection's earliest live timer entry.
    pub(crate) timer_tick: Option<u64>,
    /// Set once the connection has switched to WebSocket.
    pub(crate) ws: Option<Box<Session>>,
    /// In the loop's ready or parked list.
    pub(crate) scheduled: bool,
}

/// The outcome of discarding input while lingering.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Discard {
    /// The socket has nothing more for now.
    Drained,
    /// The limit was reached with input possibly left.
    More,
    /// The peer closed or failed: time to close.
    Closed,
}

/// The outcome of pushing queued output to the socket.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Everything queued was sent.
    Done,
    /// The socket is full; wait for a writable event.
    Blocked,
    /// The connection is broken; close it.
    Failed,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream, peer: SocketAddr, generation: u32, now: Instant) -> Self {
        Conn {
            stream,
            peer,
            generation,
            rbuf: BytesMut::new(),
            decoder: Decoder::new(),
            wbuf: Vec::new(),
            wpos: 0,
            pending: None,
            phase: Phase::Open,
            served: 0,
            readable: true,
            head_started: None,
            body_started: None,
            last_active: now,
            deadline: now,
            timer_tick: None,
            ws: None,
            scheduled: false,
        }
    }

    /// Whether output is queued or a body is being sent.
    pub(crate) fn writing(&self) -> bool {
        self.wpos < self.wbuf.len() || self.pending.is_some()
    }

    /// Whether part of a request has arrived.
    pub(crate) fn reading_request(&self) -> bool {
        !self.rbuf.is_empty() || self.decoder.mid_request()
    }

    /// Whether nothing is in flight: safe to close during a drain.
    pub(crate) fn idle(&self) -> bool {
        !self.writing() && !self.reading_request() && self.phase == Phase::Open && self.ws.is_none()
    }

    /// Reads once into `scratch` and appends to `rbuf`. `Ok(0)` is EOF.
    pub(crate) fn read_some(&mut self, scratch: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.stream.read(scratch) {
                Ok(n) => {
                    if n > 0 {
                        if self.rbuf.is_empty() && !self.decoder.mid_request() {
                            self.head_started.get_or_insert_with(Instant::now);
                        }
                        self.rbuf.extend_from_slice(&scratch[..n]);
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes queued bytes; on `Done` the buffer is empty.
    pub(crate) fn flush(&mut self) -> Flush {
        // A head followed by sendfile: tell the kernel more is coming, so
        // head and first body bytes share a segment (like TCP_CORK).
        let more = matches!(self.pending, Some(Pending::File(_)));
        while self.wpos < self.wbuf.len() {
            let sent = if more {
                rustix::net::send(
                    &self.stream,
                    &self.wbuf[self.wpos..],
                    rustix::net::SendFlags::MORE,
                )
                .map_err(io::Error::from)
            } else {
                self.stream.write(&self.wbuf[self.wpos..])
            };
            match sent {
                Ok(0) => return Flush::Failed,
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flush::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Flush::Failed,
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        Flush::Done
    }

    /// Sends more of the pending body. `Done` means the body is finished
    /// (and `pending` is `None`); the head must have been flushed first.
    pub(crate) fn pump(&mut self) -> Flush {
        loop {
            let Some(pending) = &mut self.pending else {
                return Flush::Done;
            };
            match pending {
                Pending::Bytes(bytes) => {
                    while !bytes.is_empty() {
                        match self.stream.write(bytes) {
                            Ok(0) => return Flush::Failed,
                            Ok(n) => {
                                let _ = bytes.split_to(n);
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                return Flush::Blocked
                            }
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(_) => return Flush::Failed,
                        }
                    }
                    self.pending = None;
                }
                Pending::Stream { chunks, chunked } => {
                    // Pull only as much as one write can take; the
                    // producer waits while the client is slow.
                    let mut finished = false;
                    while self.wbuf.len() < STREAM_BATCH {
                        match chunks.next() {
                            Some(chunk) if *chunked => encode_chunk(&mut self.wbuf, &chunk),
                            Some(chunk) => self.wbuf.extend_from_slice(&chunk),
                            None => {
                                if *chunked {
                                    self.wbuf.extend_from_slice(LAST_CHUNK);
                                }
                                finished = true;
                                break;
                            }
                        }
                    }
                    if finished {
                        self.pending = None;
                    }
                    match self.flush() {
                        Flush::Done => {}
                        other => return other,
                    }
                }
                Pending::File(file) => {
                    while file.len > 0 {
                        let count = usize::try_from(file.len).unwrap_or(usize::MAX).min(1 << 30);
                        match rustix::fs::sendfile(
                            &self.stream,
                            &*file.file,
                            Some(&mut file.offset),
                            count,
                        ) {
                            Ok(0) => return Flush::Failed, // the file shrank
                            Ok(n) => file.len -= n as u64,
                            Err(rustix::io::Errno::AGAIN) => return Flush::Blocked,
                            Err(rustix::io::Errno::INTR) => {}
                            Err(_) => return Flush::Failed,
                        }
                    }
                    self.pending = None;
                }
            }
        }
    }

    /// Reads and drops input while lingering, at most about `limit` bytes.
    pub(crate) fn discard_input(&mut self, scratch: &mut [u8], limit: usize) -> Discard {
        let mut read = 0;
        loop {
            if read >= limit {
                return Discard::More;
            }
            match self.stream.read(scratch) {
                Ok(0) => return Discard::Closed,
                Ok(n) => read += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Discard::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Discard::Closed,
            }
        }
    }
}

/// How long `send_now` waits for a full socket before giving up.
const SEND_NOW_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Wire for TcpStream {
    fn write_all_now(&self, mut data: &[u8]) -> io::Result<()> {
        let deadline = Instant::now() + SEND_NOW_TIMEOUT;
        while !data.is_empty() {
            match (&*self).write(data) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    // Wait (bounded) until the socket can take more.
                    let mut fds = [rustix::event::PollFd::new(
                        self,
                        rustix::event::PollFlags::OUT,
                    )];
                    let slice = rustix::event::Timespec {
                        tv_sec: 0,
                        tv_nsec: 100_000_000,
                    };
                    let _ = rustix::event::poll(&mut fds, Some(&slice));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
