//! One connection to Redis (the subscriber's or the publisher's): a
//! non-blocking socket with its buffers, its connect/reconnect state
//! machine with backoff, keep-alive pings, and the decoding of what Redis
//! sends into published messages.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::resp::{encode_command, parse_frame, protocol_error, Frame};
use crate::pubsub::{wire, Payload, Published};

/// The largest frame a connection accepts from Redis; a larger one closes
/// the connection (which then reconnects).
pub(crate) const MAX_INBOUND: usize = 16 * 1024 * 1024;
/// First reconnect delay after a failure.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A connect not done by then fails.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection that received nothing for this long sends a `PING`.
pub(crate) const PING_IDLE: Duration = Duration::from_secs(15);
/// A `PING` unanswered for this long fails the connection.
pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Free space wanted in the read buffer before each read.
pub(crate) const READ_CHUNK: usize = 64 * 1024;
/// Buffers larger than this are released once empty.
pub(crate) const KEEP_BUFFER: usize = 1024 * 1024;

/// Which of the two connections a [`Link`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// `PSUBSCRIBE`, then receives pushes.
    Subscriber,
    /// Sends `PUBLISH` commands.
    Publisher,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Subscriber => "subscriber",
            Role::Publisher => "publisher",
        })
    }
}

/// A connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// No socket; (re)connect once `tick` sees this instant.
    Idle { retry_at: Instant },
    /// Non-blocking connect under way since then.
    Connecting { since: Instant },
    /// Connected: reading and writing.
    Connected,
}

/// What a batch of frames from Redis told.
#[derive(Debug, Default)]
struct Seen {
    /// A proper reply: the server works (resets the backoff).
    healthy: bool,
    /// A `psubscribe` confirmation.
    subscribed: bool,
}

/// One connection to Redis, reconnecting after failures.
pub(super) struct Link {
    /// Which connection this is.
    pub(super) role: Role,
    /// The caller's token, once [`RedisBus::register`] gave it.
    pub(super) token: Option<Token>,
    /// The socket, unless waiting to reconnect.
    pub(super) stream: Option<TcpStream>,
    /// Whether `stream` is registered with the poll.
    pub(super) registered: bool,
    /// Where the connection stands.
    pub(super) state: State,
    /// Which of the bus's addresses the current or next attempt uses.
    pub(super) addr_index: usize,
    /// What every new connection sends first (`AUTH`, then `PSUBSCRIBE`
    /// or `PING`).
    pub(super) hello: Vec<u8>,
    /// Queued output; `out[out_pos..]` is still unwritten.
    pub(super) out: Vec<u8>,
    /// How much of `out` is written.
    pub(super) out_pos: usize,
    /// Position in the connection's output stream of `out[0]`.
    pub(super) out_base: u64,
    /// Stream positions where the queued `PUBLISH` commands end, for those
    /// not yet written whole: the messages lost if the connection fails.
    pub(super) pending: VecDeque<u64>,
    /// The last write stopped at `WouldBlock`: wait for a writable event.
    pub(super) write_blocked: bool,
    /// Read buffer; `inbuf[..in_len]` holds received bytes.
    pub(super) inbuf: Vec<u8>,
    /// How much of `inbuf` holds data.
    pub(super) in_len: usize,
    /// Delay before the next reconnect attempt.
    pub(super) backoff: Duration,
    /// The server answered properly since this connection was made.
    pub(super) healthy: bool,
    /// The current outage was logged (later retries log at debug level).
    pub(super) outage_logged: bool,
    /// When something was last received.
    pub(super) last_rx: Instant,
    /// When the unanswered `PING` was sent.
    pub(super) ping_sent: Option<Instant>,
    /// Subscriber: `PSUBSCRIBE` is confirmed on this connection.
    pub(super) subscribed: bool,
    /// How many connections reached `healthy` (for logs and tests).
    pub(super) sessions: u64,
}

impl Link {
    /// A link waiting to connect, which will send `hello` first.
    pub(super) fn new(role: Role, hello: Vec<u8>, now: Instant) -> Link {
        Link {
            role,
            token: None,
            stream: None,
            registered: false,
            state: State::Idle { retry_at: now },
            addr_index: 0,
            hello,
            out: Vec::new(),
            out_pos: 0,
            out_base: 0,
            pending: VecDeque::new(),
            write_blocked: false,
            inbuf: Vec::new(),
            in_len: 0,
            backoff: BACKOFF_MIN,
            healthy: false,
            outage_logged: false,
            last_rx: now,
            ping_sent: None,
            subscribed: false,
            sessions: 0,
        }
    }

    /// Starts a non-blocking connect; registers the socket when a registry
    /// and token are known. Returns the messages lost if that already
    /// fails (see [`Link::fail`]).
    pub(super) fn start(
        &mut self,
        addrs: &[SocketAddr],
        now: Instant,
        registry: Option<&Registry>,
    ) -> u64 {
        let addr = addrs[self.addr_index % addrs.len()];
        let mut stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => return self.fail(registry, now, addrs, &format!("connect to {addr}: {e}")),
        };
        // Latency matters more than packet count for small messages.
        let _ = stream.set_nodelay(true);
        if let (Some(registry), Some(token)) = (registry, self.token) {
            if let Err(e) =
                registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            {
                return self.fail(None, now, addrs, &format!("register: {e}"));
            }
            self.registered = true;
        }
        log::debug!("redis {}: connecting to {addr}", self.role);
        self.stream = Some(stream);
        self.state = State::Connecting { since: now };
        self.out.clear();
        self.out.extend_from_slice(&self.hello);
        self.out_pos = 0;
        self.out_base = 0;
        self.pending.clear();
        self.write_blocked = false;
        self.in_len = 0;
        self.healthy = false;
        self.subscribed = false;
        self.ping_sent = None;
        self.last_rx = now;
        0
    }

    /// Closes the connection after `why` and schedules a reconnect.
    /// Returns how many queued messages were lost.
    pub(super) fn fail(
        &mut self,
        registry: Option<&Registry>,
        now: Instant,
        addrs: &[SocketAddr],
        why: &str,
    ) -> u64 {
        if let Some(mut stream) = self.stream.take() {
            if self.registered {
                if let Some(registry) = registry {
                    let _ = registry.deregister(&mut stream);
                }
            }
        }
        self.registered = false;
        let lost = self.pending.len() as u64;
        self.pending.clear();
        self.out.clear();
        self.out_pos = 0;
        self.in_len = 0;
        if self.inbuf.len() > KEEP_BUFFER {
            self.inbuf = Vec::new();
        }
        if self.out.capacity() > KEEP_BUFFER {
            self.out = Vec::new();
        }
        self.subscribed = false;
        self.ping_sent = None;
        if self.healthy {
            self.backoff = BACKOFF_MIN;
            self.healthy = false;
        }
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        // Try the next address (if the name had several) next time.
        self.addr_index = (self.addr_index + 1) % addrs.len().max(1);
        self.state = State::Idle {
            retry_at: now + delay,
        };
        let lost_note = if lost > 0 {
            format!("; {lost} queued message(s) dropped")
        } else {
            String::new()
        };
        if self.outage_logged {
            log::debug!(
                "redis {}: {why}{lost_note}; retrying in {delay:?}",
                self.role
            );
        } else {
            self.outage_logged = true;
            log::warn!(
                "redis {}: {why}{lost_note}; reconnecting in {delay:?}",
                self.role
            );
        }
        lost
    }

    /// Whether a pending non-blocking connect has finished: `Ok(false)`
    /// while it is still under way.
    pub(super) fn check_connected(&self) -> io::Result<bool> {
        let Some(stream) = &self.stream else {
            return Ok(false);
        };
        match stream.take_error() {
            Ok(Some(e)) | Err(e) => return Err(e),
            Ok(None) => {}
        }
        match stream.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Handles readiness (of any kind) of this link's socket: finishes a
    /// connect, writes what is queued, reads and decodes what arrived.
    /// Returns the messages lost if the connection failed.
    pub(super) fn on_ready(
        &mut self,
        registry: &Registry,
        addrs: &[SocketAddr],
        prefix: &str,
        incoming: &mut Vec<Published>,
    ) -> u64 {
        let now = Instant::now();
        match self.state {
            State::Idle { .. } => return 0,
            State::Connecting { .. } => match self.check_connected() {
                Ok(true) => {
                    log::debug!("redis {}: connected", self.role);
                    self.state = State::Connected;
                    self.last_rx = now;
                }
                Ok(false) => return 0,
                Err(e) => {
                    let addr = addrs[self.addr_index % addrs.len()];
                    return self.fail(
                        Some(registry),
                        now,
                        addrs,
                        &format!("connect to {addr}: {e}"),
                    );
                }
            },
            State::Connected => {}
        }
        self.write_blocked = false;
        let result = self.flush().and_then(|()| self.read(now, prefix, incoming));
        match result {
            Ok(()) => 0,
            Err(e) => self.fail(Some(registry), now, addrs, &e.to_string()),
        }
    }

    /// Writes queued output until done or `WouldBlock`.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        let Some(stream) = &mut self.stream else {
            return Ok(());
        };
        while self.out_pos < self.out.len() {
            match stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.write_blocked = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let written = self.out_base + self.out_pos as u64;
        while self.pending.front().is_some_and(|&end| end <= written) {
            self.pending.pop_front();
        }
        if self.out_pos == self.out.len() {
            self.out_base = written;
            self.out.clear();
            self.out_pos = 0;
            if self.out.capacity() > KEEP_BUFFER {
                self.out = Vec::new();
            }
        } else if self.out_pos >= READ_CHUNK && self.out_pos * 2 >= self.out.len() {
            self.out.drain(..self.out_pos);
            self.out_base = written;
            self.out_pos = 0;
        }
        Ok(())
    }

    /// Reads until `WouldBlock`, decoding each batch as it comes.
    pub(super) fn read(
        &mut self,
        now: Instant,
        prefix: &str,
        incoming: &mut Vec<Published>,
    ) -> io::Result<()> {
        loop {
            if self.inbuf.len() - self.in_len < READ_CHUNK / 4 {
                let size = (self.inbuf.len() * 2).max(self.in_len + READ_CHUNK);
                self.inbuf.resize(size, 0);
            }
            let Some(stream) = &mut self.stream else {
                return Ok(());
            };
            match stream.read(&mut self.inbuf[self.in_len..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed by the server",
                    ))
                }
                Ok(n) => {
                    self.in_len += n;
                    self.last_rx = now;
                    self.ping_sent = None;
                    self.process(prefix, incoming)?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Decodes the complete frames in the read buffer and keeps the rest.
    pub(super) fn process(
        &mut self,
        prefix: &str,
        incoming: &mut Vec<Published>,
    ) -> io::Result<()> {
        let mut seen = Seen::default();
        let mut used = 0;
        while let Some((frame, len)) = parse_frame(&self.inbuf[used..self.in_len], MAX_INBOUND)? {
            used += len;
            on_frame(self.role, frame, prefix, incoming, &mut seen)?;
        }
        self.inbuf.copy_within(used..self.in_len, 0);
        self.in_len -= used;
        if self.in_len > MAX_INBOUND {
            return Err(protocol_error(&format!(
                "a message exceeds the {MAX_INBOUND}-byte limit"
            )));
        }
        if self.in_len == 0 && self.inbuf.len() > KEEP_BUFFER {
            self.inbuf = Vec::new();
        }
        if seen.healthy && !self.healthy {
            self.healthy = true;
            self.backoff = BACKOFF_MIN;
            self.sessions += 1;
            if self.role == Role::Publisher {
                if self.outage_logged {
                    log::info!("redis publisher: connected again");
                }
                self.outage_logged = false;
            }
        }
        if seen.subscribed && !self.subscribed {
            self.subscribed = true;
            if self.outage_logged {
                log::info!("redis subscriber: subscribed again");
            } else {
                log::debug!("redis subscriber: subscribed (session {})", self.sessions);
            }
            self.outage_logged = false;
        }
        Ok(())
    }

    /// Bytes queued but not yet written.
    pub(super) fn queued(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Timers: reconnect when due, time out a connect, send or time out a
    /// keep-alive `PING`. Returns the messages lost to a failure.
    pub(super) fn tick(&mut self, now: Instant, registry: &Registry, addrs: &[SocketAddr]) -> u64 {
        match self.state {
            State::Idle { retry_at } if now >= retry_at => self.start(addrs, now, Some(registry)),
            State::Idle { .. } => 0,
            State::Connecting { since }
                if now.saturating_duration_since(since) >= CONNECT_TIMEOUT =>
            {
                let addr = addrs[self.addr_index % addrs.len()];
                self.fail(
                    Some(registry),
                    now,
                    addrs,
                    &format!("connect to {addr} timed out"),
                )
            }
            State::Connecting { .. } => 0,
            State::Connected => match self.ping_sent {
                Some(sent) if now.saturating_duration_since(sent) >= PING_TIMEOUT => self.fail(
                    Some(registry),
                    now,
                    addrs,
                    &format!("no answer to PING in {PING_TIMEOUT:?}"),
                ),
                Some(_) => 0,
                None if now.saturating_duration_since(self.last_rx) >= PING_IDLE => {
                    self.ping_sent = Some(now);
                    encode_command(&mut self.out, &[b"PING"]);
                    if self.write_blocked {
                        return 0;
                    }
                    match self.flush() {
                        Ok(()) => 0,
                        Err(e) => self.fail(Some(registry), now, addrs, &e.to_string()),
                    }
                }
                None => 0,
            },
        }
    }
}

/// Acts on one frame from Redis: a `pmessage` becomes a [`Published`]
/// value in `incoming`; an error reply fails the connection.
fn on_frame(
    role: Role,
    frame: Frame<'_>,
    prefix: &str,
    incoming: &mut Vec<Published>,
    seen: &mut Seen,
) -> io::Result<()> {
    match frame {
        Frame::Error(e) => Err(io::Error::other(format!(
            "Redis replied {:?}",
            String::from_utf8_lossy(e)
        ))),
        Frame::Simple(_) | Frame::Integer(_) => {
            seen.healthy |= role == Role::Publisher;
            Ok(())
        }
        Frame::Array(Some(items)) if role == Role::Subscriber => {
            match items.as_slice() {
                [Frame::Bulk(Some(kind)), _, Frame::Bulk(Some(channel)), Frame::Bulk(Some(data))]
                    if kind.eq_ignore_ascii_case(b"pmessage") =>
                {
                    if let Some(p) = decode_message(prefix, channel, data) {
                        incoming.push(p);
                    } else {
                        log::debug!(
                            "redis subscriber: ignoring a message on {:?}",
                            String::from_utf8_lossy(channel)
                        );
                    }
                }
                [Frame::Bulk(Some(kind)), ..] if kind.eq_ignore_ascii_case(b"psubscribe") => {
                    seen.healthy = true;
                    seen.subscribed = true;
                }
                [Frame::Bulk(Some(kind)), ..] if kind.eq_ignore_ascii_case(b"pong") => {}
                _ => log::debug!("redis subscriber: ignoring an unexpected push"),
            }
            Ok(())
        }
        _ => {
            log::debug!("redis {role}: ignoring an unexpected reply");
            Ok(())
        }
    }
}

/// The message a `pmessage` on `channel` carries: [`wire::decode`]'s
/// form when it decodes and names the channel's topic, else (a message
/// from another Redis client) the raw data as text if UTF-8, else binary.
pub(super) fn decode_message(prefix: &str, channel: &[u8], data: &[u8]) -> Option<Published> {
    let topic = std::str::from_utf8(channel.strip_prefix(prefix.as_bytes())?).ok()?;
    if let Some(p) = wire::decode(data).filter(|p| p.topic == topic) {
        return Some(p);
    }
    let payload = match std::str::from_utf8(data) {
        Ok(text) => Payload::Text(text.to_string()),
        Err(_) => Payload::Binary(Bytes::copy_from_slice(data)),
    };
    Some(Published {
        topic: topic.to_string(),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::super::resp::encode_command;
    use super::*;

    fn pmessage(channel: &[u8], data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"pmessage", b"tine:*", channel, data]);
        out
    }

    fn wire(p: &Published) -> Vec<u8> {
        let mut data = Vec::new();
        wire::encode(p, &mut data);
        pmessage(format!("tine:{}", p.topic).as_bytes(), &data)
    }

    fn text(topic: &str, t: &str) -> Published {
        Published {
            topic: topic.to_string(),
            payload: Payload::Text(t.to_string()),
        }
    }

    fn binary(topic: &str, b: &[u8]) -> Published {
        Published {
            topic: topic.to_string(),
            payload: Payload::Binary(Bytes::copy_from_slice(b)),
        }
    }

    /// Feeds `bytes` to a subscriber link in pieces of `step` bytes.
    fn feed(link: &mut Link, bytes: &[u8], step: usize) -> io::Result<Vec<Published>> {
        let mut incoming = Vec::new();
        for piece in bytes.chunks(step.max(1)) {
            if link.inbuf.len() < link.in_len + piece.len() {
                link.inbuf.resize(link.in_len + piece.len(), 0);
            }
            link.inbuf[link.in_len..link.in_len + piece.len()].copy_from_slice(piece);
            link.in_len += piece.len();
            link.process("tine:", &mut incoming)?;
        }
        Ok(incoming)
    }

    #[test]
    fn pmessage_decoding_across_split_reads() {
        let all_bytes: Vec<u8> = (0..=255u8).collect();
        let sent = vec![
            text("chat", "hello"),
            binary("bin", &all_bytes),
            text("ünï\r\ncode", "\r\n*3\r\n"),
            text("empty", ""),
            binary("empty", b""),
            text("", "no topic"),
        ];
        let mut stream = b"*3\r\n$10\r\npsubscribe\r\n$6\r\ntine:*\r\n:1\r\n".to_vec();
        for p in &sent {
            stream.extend_from_slice(&wire(p));
        }
        // Messages from other Redis clients, and one on a foreign channel.
        stream.extend_from_slice(&pmessage(b"tine:news", b"plain text"));
        stream.extend_from_slice(&pmessage(b"tine:raw", b"\xff\x00"));
        stream.extend_from_slice(&pmessage(b"other:x", b"ignored"));
        stream.extend_from_slice(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
        let mut want = sent.clone();
        want.push(text("news", "plain text"));
        want.push(binary("raw", b"\xff\x00"));
        for step in [1, 2, 3, 7, 64, stream.len()] {
            let mut link = Link::new(Role::Subscriber, Vec::new(), Instant::now());
            let got = feed(&mut link, &stream, step).unwrap();
            assert_eq!(got, want, "step {step}");
            assert!(link.subscribed && link.healthy);
            assert_eq!(link.in_len, 0);
        }
    }

    #[test]
    fn tine_form_with_another_topic_is_taken_as_raw() {
        let mut data = Vec::new();
        wire::encode(&text("a", "x"), &mut data);
        let got = decode_message("tine:", b"tine:b", &data).unwrap();
        let raw = String::from_utf8(data.clone()).unwrap();
        assert_eq!(got, text("b", &raw));
        assert_eq!(decode_message("tine:", b"other:a", &data), None);
        assert_eq!(decode_message("tine:", b"tine:\xff", b"x"), None);
    }

    #[test]
    fn errors_and_oversize_frames_fail_the_link() {
        let mut link = Link::new(Role::Subscriber, Vec::new(), Instant::now());
        let err = feed(&mut link, b"-WRONGPASS invalid password\r\n", 5).unwrap_err();
        assert!(err.to_string().contains("WRONGPASS"), "{err}");
        let mut link = Link::new(Role::Publisher, Vec::new(), Instant::now());
        assert!(feed(&mut link, b"-NOAUTH Authentication required.\r\n", 100).is_err());
        let mut link = Link::new(Role::Publisher, Vec::new(), Instant::now());
        assert!(feed(&mut link, b":1\r\n:2\r\n+PONG\r\n", 3)
            .unwrap()
            .is_empty());
        assert!(link.healthy);
        // A bulk string over the limit is refused from its header.
        let mut link = Link::new(Role::Subscriber, Vec::new(), Instant::now());
        let header = format!(
            "*4\r\n$8\r\npmessage\r\n$6\r\ntine:*\r\n$6\r\ntine:x\r\n${}\r\n",
            MAX_INBOUND + 1
        );
        assert!(feed(&mut link, header.as_bytes(), 1000).is_err());
    }
}
