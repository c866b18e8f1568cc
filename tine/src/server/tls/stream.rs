//! A TLS connection on the event loop: rustls' *unbuffered* API over a
//! non-blocking TCP socket, behind the connection's transport seam.
//!
//! # Why the unbuffered API
//!
//! rustls' buffered `ServerConnection` owns its input and output buffers
//! for the connection's whole life (its input buffer never drops below
//! 4 KiB once used). The unbuffered `UnbufferedServerConnection` works on
//! buffers its caller passes in, so tine decides when they exist: the
//! ciphertext input buffer is held only while a TLS record is incomplete,
//! the ciphertext output buffer only while the socket refuses bytes, and
//! both go back to a small per-thread pool otherwise. An idle keep-alive
//! TLS connection therefore holds no I/O buffer (as a plain one holds
//! none): only rustls' session state, whose keys it needs anyway.
//!
//! # Limits
//!
//! - Input: at most [`MAX_INPUT`] bytes of ciphertext are buffered (a
//!   record, or a handshake message spanning several, never needs more);
//!   a peer that sends more without completing a record is cut off.
//! - Output: one [`write`](std::io::Write::write) encrypts at most
//!   [`MAX_WRITE`] bytes, and refuses (`WouldBlock`) while ciphertext from
//!   an earlier write is still unsent: a stalled client holds at most one
//!   write's worth, like the plain socket's own buffer.
//! - Plain HTTP sent to a TLS port gets a plain-text `400` saying so and a
//!   close (no TLS alert, which a person at a terminal could not read).
//!
//! The handshake happens inside the first reads: the connection sees no
//! plaintext (and so no request) until it is done, and the connection's
//! header timeout (counted from the accept) covers it.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};

/// Largest plaintext of one TLS record.
const MAX_PLAIN_RECORD: usize = 16 * 1024;
/// Ciphertext read from the socket at once (more than one full record,
/// 16 KiB + 2 KiB + header, so one read completes a record).
const READ_SIZE: usize = 20 * 1024;
/// Most ciphertext buffered while a record (or handshake message) is
/// incomplete.
pub(crate) const MAX_INPUT: usize = 80 * 1024;
/// Most plaintext one write encrypts.
pub(crate) const MAX_WRITE: usize = 64 * 1024;

/// The body of the answer to plain HTTP on a TLS port.
const PLAIN_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 61\r\n\
Connection: close\r\n\
\r\n\
This port speaks HTTPS: a plain HTTP request was sent to it.\n";

/// Buffers lent to TLS connections while they need one (one event loop
/// per thread, so a thread-local pool needs no lock).
mod pool {
    use std::cell::RefCell;

    const KEEP: usize = 4;

    thread_local! {
        static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    }

    /// A zero-initialised buffer of at least `len` bytes (`len()` is its
    /// usable size).
    pub(super) fn take(len: usize) -> Vec<u8> {
        let mut buf = SPARE.with(|s| s.borrow_mut().pop()).unwrap_or_default();
        if buf.len() < len {
            buf.resize(len, 0);
        }
        buf
    }

    /// Gives a buffer back (or frees it when the pool is full or it grew
    /// unusually large).
    pub(super) fn give(buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.len() > 2 * super::MAX_WRITE {
            return;
        }
        SPARE.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < KEEP {
                s.push(buf);
            }
        });
    }
}

/// A TLS server connection over a non-blocking TCP socket.
pub(crate) struct TlsStream {
    sock: TcpStream,
    /// In a `RefCell` because `Wire::write_all_now` (a WebSocket handler's
    /// `send_now`) only has `&self`; `Read`/`Write` use `get_mut`.
    state: RefCell<State>,
}

/// Where the TLS session is.
struct State {
    conn: UnbufferedServerConnection,
    /// Ciphertext received and not yet processed: `input[..in_len]`;
    /// empty (no allocation) when there is none.
    input: Vec<u8>,
    in_len: usize,
    /// Ciphertext to send; empty (no allocation) when all was sent.
    out: Out,
    /// Plaintext decrypted but not yet read (only when a reader's buffer
    /// was smaller than a record, or records arrived during a write).
    leftover: Vec<u8>,
    left_pos: usize,
    /// The last socket read left nothing behind (a short read or EAGAIN).
    socket_drained: bool,
    /// Complete records may remain in `input` (a read stopped for room).
    more_records: bool,
    /// TCP end of file seen.
    eof: bool,
    /// The peer sent `close_notify`.
    peer_closed: bool,
    /// The handshake is complete.
    established: bool,
    /// Our `close_notify` is queued.
    closing: bool,
    /// The first bytes were looked at (plain HTTP detection).
    first_checked: bool,
    /// A TLS error happened: the next call fails.
    failed: bool,
}

/// Ciphertext waiting for the socket: `buf[start..end]`.
#[derive(Default)]
struct Out {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Out {
    /// Room for `need` more bytes (a pooled buffer if there is none).
    fn room(&mut self, need: usize) -> &mut [u8] {
        if self.buf.capacity() == 0 {
            self.buf = pool::take(need.max(READ_SIZE));
        }
        if self.buf.len() < self.end + need {
            self.buf.resize(self.end + need, 0);
        }
        &mut self.buf[self.end..]
    }
}

/// What processing the buffered ciphertext produced.
enum Step {
    /// `n` plaintext bytes were copied to the reader's buffer.
    Plain(usize),
    /// More ciphertext is needed.
    NeedInput,
    /// The session is closed (the peer's `close_notify`, or both ways).
    Closed,
}

impl TlsStream {
    /// A server session on `sock` with `config`.
    pub(crate) fn new(
        sock: TcpStream,
        config: Arc<rustls::ServerConfig>,
    ) -> Result<TlsStream, rustls::Error> {
        Ok(TlsStream {
            sock,
            state: RefCell::new(State {
                conn: UnbufferedServerConnection::new(config)?,
                input: Vec::new(),
                in_len: 0,
                out: Out::default(),
                leftover: Vec::new(),
                left_pos: 0,
                socket_drained: false,
                more_records: false,
                eof: false,
                peer_closed: false,
                established: false,
                closing: false,
                first_checked: false,
                failed: false,
            }),
        })
    }

    /// The TCP socket.
    pub(crate) fn socket(&self) -> &TcpStream {
        &self.sock
    }

    pub(crate) fn socket_mut(&mut self) -> &mut TcpStream {
        &mut self.sock
    }

    /// Whether plaintext or complete records may be waiting without a
    /// new socket event (so a short read does not mean "drained").
    pub(crate) fn may_have_more(&self) -> bool {
        let s = self.state.borrow();
        s.left_pos < s.leftover.len() || s.more_records || !s.socket_drained
    }

    /// Whether the handshake is done (for tests and logs).
    #[cfg(test)]
    pub(crate) fn established(&self) -> bool {
        self.state.borrow().established
    }

    /// Bytes of buffers this connection holds now (input, output,
    /// leftover plaintext): 0 when idle.
    #[cfg(test)]
    pub(crate) fn buffered_capacity(&self) -> usize {
        let s = self.state.borrow();
        s.input.capacity() + s.out.buf.capacity() + s.leftover.capacity()
    }

    /// The response being sent was cut off and its end is known only by
    /// the close: no `close_notify` then, which would tell the client the
    /// data ended cleanly (RFC 8446 §6.1: a truncation must not look like
    /// a proper close).
    pub(crate) fn abandon(&self) {
        self.state.borrow_mut().failed = true;
    }

    /// Queues `close_notify` (once, after the handshake) and sends what
    /// it can without waiting; `true` if nothing is left unsent.
    pub(crate) fn close_notify(&self) -> bool {
        let mut s = self.state.borrow_mut();
        if s.established && !s.closing && !s.failed {
            s.closing = true;
            let _ = s.encrypt(&self.sock, None);
        }
        matches!(s.send_pending(&self.sock), Ok(true))
    }

    /// Sends `data` whole, waiting (bounded) while the socket is full.
    pub(crate) fn write_all_now(&self, mut data: &[u8]) -> io::Result<()> {
        let deadline = crate::server::conn::send_now_deadline();
        let mut s = self.state.borrow_mut();
        loop {
            if s.send_pending(&self.sock)? {
                if data.is_empty() {
                    return Ok(());
                }
                let n = s.encrypt(&self.sock, Some(data))?;
                data = &data[n..];
                continue;
            }
            crate::server::conn::wait_writable(&self.sock, deadline)?;
        }
    }
}

impl State {
    /// Writes pending ciphertext; `Ok(true)` once none is left (and the
    /// buffer is back in the pool), `Ok(false)` if the socket is full.
    fn send_pending(&mut self, mut sock: &TcpStream) -> io::Result<bool> {
        while self.out.start < self.out.end {
            match sock.write(&self.out.buf[self.out.start..self.out.end]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    if let Some(e) = crate::server::scoreboard::mine() {
                        e.bytes_out(n);
                    }
                    self.out.start += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.start = 0;
        self.out.end = 0;
        if self.out.buf.capacity() > 0 {
            pool::give(std::mem::take(&mut self.out.buf));
        }
        Ok(true)
    }

    /// Runs rustls over the buffered ciphertext: handshake messages are
    /// encoded and sent, application data is copied into `buf` (and past
    /// its room into `leftover`). With `buf` `None` (a writer), records
    /// that are already decrypted go to `leftover` and processing stops as
    /// soon as rustls is ready for application data.
    fn process(&mut self, sock: &TcpStream, mut buf: Option<&mut [u8]>) -> io::Result<Step> {
        let mut copied = 0usize;
        loop {
            if let Some(b) = buf.as_deref() {
                if copied > 0 && b.len() - copied < MAX_PLAIN_RECORD {
                    // No room for another record: leave it encrypted.
                    self.more_records = self.in_len > 0;
                    return Ok(Step::Plain(copied));
                }
            }
            self.more_records = false;
            let UnbufferedStatus { mut discard, state } = self
                .conn
                .process_tls_records(&mut self.input[..self.in_len]);
            let mut transmit = false;
            let mut alert = false;
            let outcome = match state {
                Err(e) => {
                    log::debug!("tls: {e}");
                    self.failed = true;
                    alert = true;
                    Some(Err(io::Error::new(io::ErrorKind::InvalidData, e)))
                }
                Ok(ConnectionState::ReadTraffic(mut r)) => {
                    self.established = true;
                    while let Some(record) = r.next_record() {
                        let record = match record {
                            Ok(record) => record,
                            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                        };
                        discard += record.discard;
                        let payload = record.payload;
                        let mut rest = payload;
                        if let Some(b) = buf.as_deref_mut() {
                            let n = rest.len().min(b.len() - copied);
                            b[copied..copied + n].copy_from_slice(&rest[..n]);
                            copied += n;
                            rest = &rest[n..];
                        }
                        if !rest.is_empty() {
                            if self.left_pos == self.leftover.len() {
                                self.leftover.clear();
                                self.left_pos = 0;
                            }
                            self.leftover.extend_from_slice(rest);
                        }
                    }
                    None
                }
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    let mut need = READ_SIZE;
                    loop {
                        let room = self.out.room(need);
                        match e.encode(room) {
                            Ok(n) => {
                                self.out.end += n;
                                break;
                            }
                            Err(EncodeError::InsufficientSize(s)) => need = s.required_size,
                            Err(EncodeError::AlreadyEncoded) => break,
                        }
                    }
                    None
                }
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    // The bytes are ours now: sent below, or kept until the
                    // socket takes them.
                    t.done();
                    transmit = true;
                    None
                }
                Ok(ConnectionState::BlockedHandshake) if self.failed => {
                    Some(Err(io::ErrorKind::InvalidData.into()))
                }
                Ok(ConnectionState::BlockedHandshake) => Some(Ok(Step::NeedInput)),
                Ok(ConnectionState::WriteTraffic(_)) => {
                    self.established = true;
                    if self.failed {
                        // The alert is out; the session is over.
                        Some(Err(io::ErrorKind::InvalidData.into()))
                    } else if buf.is_none() {
                        Some(Ok(Step::Plain(0)))
                    } else if copied > 0 {
                        Some(Ok(Step::Plain(copied)))
                    } else {
                        Some(Ok(Step::NeedInput))
                    }
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    None
                }
                Ok(ConnectionState::Closed) => Some(Ok(Step::Closed)),
                // Early data is never enabled, so never offered.
                Ok(_) => Some(Err(io::ErrorKind::InvalidData.into())),
            };
            self.consume(discard);
            if alert {
                self.send_alert(sock);
            }
            if transmit {
                self.send_pending(sock)?;
            }
            match outcome {
                None => {}
                Some(Ok(Step::NeedInput)) if self.peer_closed => {
                    return Ok(if copied > 0 {
                        Step::Plain(copied)
                    } else {
                        Step::Closed
                    })
                }
                Some(Ok(Step::NeedInput)) if copied > 0 => return Ok(Step::Plain(copied)),
                Some(other) => return other,
            }
            if self.peer_closed && copied > 0 {
                return Ok(Step::Plain(copied));
            }
        }
    }

    /// After an error: sends what rustls queued before and for it (the
    /// alert, and in TLS 1.3 the ServerHello and ChangeCipherSpec ahead of
    /// it), one record per call, as rustls hands queued records out before
    /// it looks at any input. Only the first call sees the input; the
    /// others get none, so nothing after the error is processed (and with
    /// input, rustls would only return the stored error again).
    fn send_alert(&mut self, sock: &TcpStream) {
        // A handful of records at most; the bound only guards the loop.
        for call in 0..16 {
            let input = if call == 0 {
                &mut self.input[..self.in_len]
            } else {
                &mut []
            };
            let UnbufferedStatus { state, .. } = self.conn.process_tls_records(input);
            let Ok(ConnectionState::EncodeTlsData(mut e)) = state else {
                break;
            };
            let mut need = 64;
            loop {
                match e.encode(self.out.room(need)) {
                    Ok(n) => {
                        self.out.end += n;
                        break;
                    }
                    Err(EncodeError::InsufficientSize(s)) => need = s.required_size,
                    Err(EncodeError::AlreadyEncoded) => break,
                }
            }
        }
        let _ = self.send_pending(sock);
    }

    /// Drops `n` processed bytes from the front of the input buffer, and
    /// the buffer itself once it is empty.
    fn consume(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        if n >= self.in_len {
            self.in_len = 0;
            pool::give(std::mem::take(&mut self.input));
        } else {
            self.input.copy_within(n..self.in_len, 0);
            self.in_len -= n;
        }
    }

    /// Reads ciphertext from the socket: `Ok(0)` at end of file.
    fn fill(&mut self, mut sock: &TcpStream) -> io::Result<usize> {
        if self.input.capacity() == 0 {
            self.input = pool::take(READ_SIZE);
        }
        if self.in_len == self.input.len() {
            if self.input.len() >= MAX_INPUT {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "tls: record or handshake message too large",
                ));
            }
            let grown = (self.input.len() * 2).min(MAX_INPUT);
            self.input.resize(grown, 0);
        }
        let room = self.input.len() - self.in_len;
        loop {
            match sock.read(&mut self.input[self.in_len..]) {
                Ok(n) => {
                    self.socket_drained = n < room;
                    if n == 0 {
                        self.eof = true;
                    } else if let Some(e) = crate::server::scoreboard::mine() {
                        e.bytes_in(n);
                    }
                    self.in_len += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        self.socket_drained = true;
                    }
                    if self.in_len == 0 {
                        pool::give(std::mem::take(&mut self.input));
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Answers a plain-HTTP request on a TLS port (see the module docs)
    /// if the first bytes are one. `true`: it was.
    fn refuse_plain_http(&mut self, mut sock: &TcpStream) -> bool {
        self.first_checked = true;
        // A TLS connection starts with a handshake record (0x16); an HTTP
        // request with a method in capitals.
        if self.input[0] == 0x16 || !self.input[0].is_ascii_uppercase() {
            return false;
        }
        log::debug!("plain HTTP on a TLS port; answering 400");
        // Read what else the request sent (bounded), so the close does not
        // turn into a reset that would destroy the answer.
        let mut scratch = [0u8; 4096];
        for _ in 0..16 {
            match sock.read(&mut scratch) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = sock.write(PLAIN_ANSWER);
        let _ = sock.shutdown(std::net::Shutdown::Write);
        self.failed = true;
        true
    }

    /// Reads plaintext into `buf` (see [`Read::read`]).
    fn read(&mut self, sock: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        if self.left_pos < self.leftover.len() {
            let n = buf.len().min(self.leftover.len() - self.left_pos);
            buf[..n].copy_from_slice(&self.leftover[self.left_pos..self.left_pos + n]);
            self.left_pos += n;
            if self.left_pos == self.leftover.len() {
                self.leftover = Vec::new();
                self.left_pos = 0;
            }
            return Ok(n);
        }
        if self.failed {
            return Err(io::ErrorKind::InvalidData.into());
        }
        loop {
            if self.in_len > 0 || self.conn_wants_attention() {
                match self.process(sock, Some(buf))? {
                    Step::Plain(n) => return Ok(n),
                    Step::Closed => return Ok(0),
                    Step::NeedInput => {}
                }
            }
            if self.eof {
                // The peer closed without close_notify: for HTTP (whose
                // framing tells a complete message) that is an end of file.
                return Ok(0);
            }
            if self.fill(sock)? > 0 && !self.first_checked && self.refuse_plain_http(sock) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "plain HTTP on a TLS port",
                ));
            }
        }
    }

    /// Whether rustls may have something to say without new input (the
    /// first call, or output it has queued).
    fn conn_wants_attention(&self) -> bool {
        !self.established
    }

    /// Encrypts (up to [`MAX_WRITE`] of) `data` (or, with `None`, the
    /// `close_notify` alert) into the output buffer and sends what the
    /// socket takes. Returns the plaintext bytes taken.
    fn encrypt(&mut self, sock: &TcpStream, data: Option<&[u8]>) -> io::Result<usize> {
        loop {
            let UnbufferedStatus { discard, state } = self
                .conn
                .process_tls_records(&mut self.input[..self.in_len]);
            let mut taken = None;
            let mut transmit = false;
            match state {
                Err(e) => {
                    self.failed = true;
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
                Ok(ConnectionState::ReadTraffic(mut r)) => {
                    // Records that arrived while writing wait for the reader.
                    while let Some(Ok(record)) = r.next_record() {
                        if self.left_pos == self.leftover.len() {
                            self.leftover.clear();
                            self.left_pos = 0;
                        }
                        self.leftover.extend_from_slice(record.payload);
                    }
                }
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    let mut need = READ_SIZE;
                    loop {
                        let room = self.out.room(need);
                        match e.encode(room) {
                            Ok(n) => {
                                self.out.end += n;
                                break;
                            }
                            Err(EncodeError::InsufficientSize(s)) => need = s.required_size,
                            Err(EncodeError::AlreadyEncoded) => break,
                        }
                    }
                }
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    t.done();
                    transmit = true;
                }
                Ok(ConnectionState::WriteTraffic(mut w)) => {
                    self.established = true;
                    let plain = data.map(|d| &d[..d.len().min(MAX_WRITE)]);
                    // Records add a header and a tag each: ask for room.
                    let mut need = plain.map_or(64, |p| p.len() + p.len() / 256 + 512);
                    loop {
                        let room = self.out.room(need);
                        let done = match plain {
                            Some(p) => w.encrypt(p, room),
                            None => w.queue_close_notify(room),
                        };
                        match done {
                            Ok(n) => {
                                self.out.end += n;
                                break;
                            }
                            Err(EncryptError::InsufficientSize(s)) => need = s.required_size,
                            Err(EncryptError::EncryptExhausted) => {
                                return Err(io::Error::other("tls: encrypter exhausted"))
                            }
                        }
                    }
                    taken = Some(plain.map_or(0, <[u8]>::len));
                }
                Ok(ConnectionState::BlockedHandshake) => {
                    // Nothing can be encrypted before the handshake is done.
                    self.consume(discard);
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(ConnectionState::PeerClosed) => self.peer_closed = true,
                Ok(_) => return Err(io::ErrorKind::BrokenPipe.into()),
            }
            self.consume(discard);
            if transmit {
                self.send_pending(sock)?;
            }
            if let Some(n) = taken {
                self.send_pending(sock)?;
                return Ok(n);
            }
        }
    }

    /// Writes plaintext (see [`Write::write`]).
    fn write(&mut self, sock: &TcpStream, data: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::ErrorKind::InvalidData.into());
        }
        if !self.send_pending(sock)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if data.is_empty() {
            return Ok(0);
        }
        self.encrypt(sock, Some(data))
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.state.get_mut().read(&self.sock, buf)
    }
}

impl Write for TlsStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.state.get_mut().write(&self.sock, data)
    }

    /// Sends ciphertext left from earlier writes: `WouldBlock` while the
    /// socket is full.
    fn flush(&mut self) -> io::Result<()> {
        if self.state.get_mut().send_pending(&self.sock)? {
            Ok(())
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }
}
