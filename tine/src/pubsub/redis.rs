//! A Redis pub/sub backend, so that several machines share
//! [`publish`](crate::publish) topics.
//!
//! [`RedisBus`] owns two non-blocking connections to one Redis server,
//! driven by the event loop's mio `Poll` like any other socket:
//!
//! * the **subscriber** sends `PSUBSCRIBE <prefix>*` and from then on only
//!   receives `pmessage` pushes, which it decodes into [`Published`]
//!   messages for the loop to deliver;
//! * the **publisher** sends `PUBLISH <prefix><topic> <message>` for each
//!   message the loop hands it, and reads (and discards) the integer
//!   replies.
//!
//! The Redis message is [`wire::encode`]'s form of the [`Published`]
//! value, so text and binary payloads survive the trip. A message that does
//! not decode as that form, or names another topic than its channel, came
//! from some other Redis client (`PUBLISH tine:news hello`): it is
//! delivered to the channel's topic as text when it is UTF-8, else as
//! binary.
//!
//! # Delivery guarantees
//!
//! At most once, like Redis pub/sub itself. A message is dropped (counted
//! in [`RedisBus::dropped`] and logged) when the publisher is disconnected
//! or its outbound queue holds [`MAX_OUTBOUND`] bytes already; messages
//! still queued when a connection fails are dropped too; and messages
//! published while a subscriber is reconnecting never reach it. What does
//! arrive arrives in publish order per publishing process: one connection
//! carries a process's messages, and Redis relays them in order.
//!
//! # Failures
//!
//! Any I/O error, EOF, protocol error, error reply (a wrong password, say),
//! connect taking longer than [`CONNECT_TIMEOUT`], or a `PING` unanswered
//! for [`PING_TIMEOUT`] (sent after [`PING_IDLE`] of silence, to notice
//! half-open connections) closes that connection; [`RedisBus::tick`]
//! reconnects it after a backoff of 100 ms doubling to 5 s, which resets
//! once the server answers properly. The subscriber sends `PSUBSCRIBE`
//! again on every reconnect.
//!
//! # Blocking
//!
//! Nothing blocks but resolving the host name in [`RedisBus::new`]; an IP
//! address needs no lookup. Reconnects reuse the addresses resolved there.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::{wire, Payload, Published};

// The RESP2 parser below is hand-written rather than taken from the
// `redis-protocol` crate: we need five frame types, borrowed from our own
// buffer, and a length check on a bulk string's header before its body is
// buffered; the crate would bring `nom`, `crc16` and an exactly pinned
// `cookie-factory` for that, and would still need the header check.

/// Bytes the publisher may hold queued (not yet written to the socket);
/// a message that does not fit is dropped.
pub(crate) const MAX_OUTBOUND: usize = 8 * 1024 * 1024;
/// The largest frame a connection accepts from Redis; a larger one closes
/// the connection (which then reconnects).
const MAX_INBOUND: usize = 16 * 1024 * 1024;
/// First reconnect delay after a failure.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A connect not done by then fails.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection that received nothing for this long sends a `PING`.
pub(crate) const PING_IDLE: Duration = Duration::from_secs(15);
/// A `PING` unanswered for this long fails the connection.
pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Free space wanted in the read buffer before each read.
const READ_CHUNK: usize = 64 * 1024;
/// Buffers larger than this are released once empty.
const KEEP_BUFFER: usize = 1024 * 1024;
/// The port of a URL without one.
const DEFAULT_PORT: u16 = 6379;
/// The longest status line, error line or length header accepted.
const MAX_LINE: usize = 64 * 1024;
/// The most elements an array frame from Redis may have (pushes have 3
/// or 4).
const MAX_ARRAY: usize = 64;
/// How deeply array frames may nest.
const MAX_DEPTH: usize = 2;

/// The parts of a `redis://` URL that matter here.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RedisUrl {
    /// Host name or IP address (without IPv6 brackets).
    host: String,
    /// TCP port, 6379 unless given.
    port: u16,
    /// ACL user name, for `AUTH user password` (Redis 6+).
    username: Option<String>,
    /// Password, for `AUTH`.
    password: Option<String>,
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `url` with any user and password replaced by `***`, for messages.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_string(),
    }
}

/// Parses `redis://[[user]:password@]host[:port][/db][?query]`. The
/// database and query are ignored (pub/sub spans databases); user and
/// password may be percent-encoded.
pub(crate) fn parse_url(url: &str) -> io::Result<RedisUrl> {
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("tine: bad Redis URL {:?}: {why}", redacted(url)),
        )
    };
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("redis") => rest,
        Some((scheme, _)) => {
            return Err(bad(&format!(
                "scheme {scheme:?} is not supported (only redis://)"
            )))
        }
        None => return Err(bad("expected redis://host:port")),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let decode = |s: &str| -> io::Result<String> {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| bad("user or password is not UTF-8"))
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(info) => match info.split_once(':') {
            Some((user, pass)) => {
                let user = (!user.is_empty()).then(|| decode(user)).transpose()?;
                (user, Some(decode(pass)?))
            }
            // `redis://secret@host`: a lone userinfo is taken as the
            // password, as redis-cli and most clients do.
            None => (None, Some(decode(info)?)),
        },
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
            ),
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => return Err(bad("bad port")),
        },
    };
    Ok(RedisUrl {
        host: host.to_string(),
        port,
        username,
        password,
    })
}

/// Appends a RESP2 command (an array of bulk strings) to `out`.
fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(itoa::Buffer::new().format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        encode_bulk(out, &[arg]);
    }
}

/// Appends one RESP2 bulk string, the concatenation of `parts`.
fn encode_bulk(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.push(b'$');
    out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
    out.extend_from_slice(b"\r\n");
    for part in parts {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
}

/// The start of a `PUBLISH` command, before its two arguments.
const PUBLISH_HEAD: &[u8] = b"*3\r\n$7\r\nPUBLISH\r\n";

/// The `PSUBSCRIBE` pattern matching every channel that starts with
/// `prefix`: the prefix with glob characters escaped, then `*`.
fn pattern_for(prefix: &str) -> Vec<u8> {
    let mut pattern = Vec::with_capacity(prefix.len() + 1);
    for &b in prefix.as_bytes() {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            pattern.push(b'\\');
        }
        pattern.push(b);
    }
    pattern.push(b'*');
    pattern
}

/// One RESP2 value, borrowed from the read buffer.
#[derive(Debug, PartialEq, Eq)]
enum Frame<'a> {
    /// `+OK`
    Simple(&'a [u8]),
    /// `-ERR ...`
    Error(&'a [u8]),
    /// `:1`
    Integer(i64),
    /// `$3\r\nabc`, or `$-1` (`None`).
    Bulk(Option<&'a [u8]>),
    /// `*2\r\n...`, or `*-1` (`None`).
    Array(Option<Vec<Frame<'a>>>),
}

/// An error for data that breaks RESP2 (or our limits on it).
fn protocol_error(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("Redis protocol error: {why}"),
    )
}

/// Decodes the frame at the start of `buf`: `Ok(None)` when `buf` holds
/// only part of it, else the frame and the bytes it took. Bulk strings
/// longer than `max_bulk` are refused from their header on.
fn parse_frame(buf: &[u8], max_bulk: usize) -> io::Result<Option<(Frame<'_>, usize)>> {
    parse_at(buf, 0, max_bulk, 0)
}

/// [`parse_frame`] for the frame at `buf[pos..]`, nested `depth` arrays
/// deep; the position returned is where the frame ends in `buf`.
fn parse_at(
    buf: &[u8],
    pos: usize,
    max_bulk: usize,
    depth: usize,
) -> io::Result<Option<(Frame<'_>, usize)>> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some(end) = find_crlf(buf, pos + 1)? else {
        return Ok(None);
    };
    let line = &buf[pos + 1..end];
    let next = end + 2;
    let frame = match kind {
        b'+' => (Frame::Simple(line), next),
        b'-' => (Frame::Error(line), next),
        b':' => (Frame::Integer(parse_int(line)?), next),
        b'$' => match parse_int(line)? {
            -1 => (Frame::Bulk(None), next),
            n if n < 0 => return Err(protocol_error("negative length")),
            n if n as u64 > max_bulk as u64 => {
                return Err(protocol_error(&format!(
                    "a {n}-byte string exceeds the {max_bulk}-byte limit"
                )))
            }
            n => {
                let n = n as usize;
                if buf.len() < next + n + 2 {
                    return Ok(None);
                }
                if &buf[next + n..next + n + 2] != b"\r\n" {
                    return Err(protocol_error("string not followed by CRLF"));
                }
                (Frame::Bulk(Some(&buf[next..next + n])), next + n + 2)
            }
        },
        b'*' => match parse_int(line)? {
            -1 => (Frame::Array(None), next),
            n if n < 0 || n as u64 > MAX_ARRAY as u64 => {
                return Err(protocol_error("bad array length"))
            }
            _ if depth >= MAX_DEPTH => return Err(protocol_error("arrays nested too deeply")),
            n => {
                let mut items = Vec::with_capacity(n as usize);
                let mut at = next;
                for _ in 0..n {
                    let Some((item, after)) = parse_at(buf, at, max_bulk, depth + 1)? else {
                        return Ok(None);
                    };
                    items.push(item);
                    at = after;
                }
                (Frame::Array(Some(items)), at)
            }
        },
        other => {
            return Err(protocol_error(&format!(
                "unexpected type byte {:?}",
                other as char
            )))
        }
    };
    Ok(Some(frame))
}

/// The index of the CRLF ending the line that starts at `from`.
fn find_crlf(buf: &[u8], from: usize) -> io::Result<Option<usize>> {
    let window = &buf[from.min(buf.len())..buf.len().min(from + MAX_LINE)];
    match memchr::memchr(b'\n', window) {
        Some(i) if i > 0 && window[i - 1] == b'\r' => Ok(Some(from + i - 1)),
        Some(_) => Err(protocol_error("bare LF")),
        None if window.len() >= MAX_LINE => Err(protocol_error("line too long")),
        None => Ok(None),
    }
}

/// A decimal integer (a length or an integer reply).
fn parse_int(line: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| protocol_error("bad integer"))
}

/// Which of the two connections a [`Link`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
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
enum State {
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
struct Link {
    /// Which connection this is.
    role: Role,
    /// The caller's token, once [`RedisBus::register`] gave it.
    token: Option<Token>,
    /// The socket, unless waiting to reconnect.
    stream: Option<TcpStream>,
    /// Whether `stream` is registered with the poll.
    registered: bool,
    /// Where the connection stands.
    state: State,
    /// Which of the bus's addresses the current or next attempt uses.
    addr_index: usize,
    /// What every new connection sends first (`AUTH`, then `PSUBSCRIBE`
    /// or `PING`).
    hello: Vec<u8>,
    /// Queued output; `out[out_pos..]` is still unwritten.
    out: Vec<u8>,
    /// How much of `out` is written.
    out_pos: usize,
    /// Position in the connection's output stream of `out[0]`.
    out_base: u64,
    /// Stream positions where the queued `PUBLISH` commands end, for those
    /// not yet written whole: the messages lost if the connection fails.
    pending: VecDeque<u64>,
    /// The last write stopped at `WouldBlock`: wait for a writable event.
    write_blocked: bool,
    /// Read buffer; `inbuf[..in_len]` holds received bytes.
    inbuf: Vec<u8>,
    /// How much of `inbuf` holds data.
    in_len: usize,
    /// Delay before the next reconnect attempt.
    backoff: Duration,
    /// The server answered properly since this connection was made.
    healthy: bool,
    /// The current outage was logged (later retries log at debug level).
    outage_logged: bool,
    /// When something was last received.
    last_rx: Instant,
    /// When the unanswered `PING` was sent.
    ping_sent: Option<Instant>,
    /// Subscriber: `PSUBSCRIBE` is confirmed on this connection.
    subscribed: bool,
    /// How many connections reached `healthy` (for logs and tests).
    sessions: u64,
}

impl Link {
    /// A link waiting to connect, which will send `hello` first.
    fn new(role: Role, hello: Vec<u8>, now: Instant) -> Link {
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
    fn start(&mut self, addrs: &[SocketAddr], now: Instant, registry: Option<&Registry>) -> u64 {
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
    fn fail(
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
    fn check_connected(&self) -> io::Result<bool> {
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
    fn on_ready(
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
    fn flush(&mut self) -> io::Result<()> {
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
    fn read(
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
    fn process(&mut self, prefix: &str, incoming: &mut Vec<Published>) -> io::Result<()> {
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
    fn queued(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Timers: reconnect when due, time out a connect, send or time out a
    /// keep-alive `PING`. Returns the messages lost to a failure.
    fn tick(&mut self, now: Instant, registry: &Registry, addrs: &[SocketAddr]) -> u64 {
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
fn decode_message(prefix: &str, channel: &[u8], data: &[u8]) -> Option<Published> {
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

/// The Redis pub/sub backend of one event loop: see the [module
/// docs](self). Make one per process, after fork (its sockets must not be
/// shared between processes).
pub(crate) struct RedisBus {
    /// The server's addresses, resolved once by [`RedisBus::new`].
    addrs: Vec<SocketAddr>,
    /// Channel prefix: topic `t` is channel `<prefix>t`.
    prefix: String,
    /// The `PSUBSCRIBE` connection.
    sub: Link,
    /// The `PUBLISH` connection.
    publ: Link,
    /// Messages dropped so far.
    dropped: u64,
    /// Messages dropped since the last one queued (a drop streak is logged
    /// once at its start and once at its end).
    streak: u64,
    /// Scratch buffer for a message's encoded form.
    scratch: Vec<u8>,
}

impl fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBus")
            .field("addrs", &self.addrs)
            .field("prefix", &self.prefix)
            .field("subscriber", &self.sub.state)
            .field("subscribed", &self.sub.subscribed)
            .field("publisher", &self.publ.state)
            .field("queued", &self.publ.queued())
            .field("dropped", &self.dropped)
            .finish()
    }
}

impl RedisBus {
    /// Parses `url` (`redis://[[user]:password@]host[:port][/db]`; the
    /// database is ignored), resolves the host (the only step that may
    /// block, and only for a name, not an IP address) and starts both
    /// non-blocking connects. Channels are named `<prefix><topic>`
    /// (`"tine:"` is the usual prefix). Fails only on a bad URL or a host
    /// that does not resolve; an unreachable server is retried.
    pub(crate) fn new(url: &str, prefix: &str) -> io::Result<RedisBus> {
        let parsed = parse_url(url)?;
        let addrs: Vec<SocketAddr> = (parsed.host.as_str(), parsed.port)
            .to_socket_addrs()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("tine: cannot resolve Redis host {:?}: {e}", parsed.host),
                )
            })?
            .collect();
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("tine: Redis host {:?} has no address", parsed.host),
            ));
        }
        let mut auth = Vec::new();
        if let Some(password) = &parsed.password {
            match &parsed.username {
                Some(user) => {
                    encode_command(&mut auth, &[b"AUTH", user.as_bytes(), password.as_bytes()])
                }
                None => encode_command(&mut auth, &[b"AUTH", password.as_bytes()]),
            }
        }
        let mut sub_hello = auth.clone();
        encode_command(&mut sub_hello, &[b"PSUBSCRIBE", &pattern_for(prefix)]);
        let mut pub_hello = auth;
        // The PING's answer shows the server works before anything is
        // published (it resets the backoff).
        encode_command(&mut pub_hello, &[b"PING"]);
        let now = Instant::now();
        let mut bus = RedisBus {
            sub: Link::new(Role::Subscriber, sub_hello, now),
            publ: Link::new(Role::Publisher, pub_hello, now),
            addrs,
            prefix: prefix.to_string(),
            dropped: 0,
            streak: 0,
            scratch: Vec::new(),
        };
        bus.dropped += bus.sub.start(&bus.addrs, now, None);
        bus.dropped += bus.publ.start(&bus.addrs, now, None);
        Ok(bus)
    }

    /// Registers both connections with the loop's poll, the subscriber
    /// under `sub` and the publisher under `publ`; reconnects reuse the
    /// tokens. Call once, before polling.
    pub(crate) fn register(
        &mut self,
        registry: &Registry,
        sub: Token,
        publ: Token,
    ) -> io::Result<()> {
        for (link, token) in [(&mut self.sub, sub), (&mut self.publ, publ)] {
            link.token = Some(token);
            if let Some(stream) = &mut link.stream {
                if !link.registered {
                    registry.register(stream, token, Interest::READABLE | Interest::WRITABLE)?;
                    link.registered = true;
                }
            }
        }
        Ok(())
    }

    /// Queues `p` for `PUBLISH` (and writes it at once when the socket
    /// takes it); a message queued while a connect is under way is sent
    /// once it completes. Returns `false`, queueing nothing, while the
    /// outbound queue cannot take it ([`MAX_OUTBOUND`] bytes): the caller
    /// keeps it and offers it again once the queue drained. Dropped,
    /// counted and logged (and `true`) when the publisher is disconnected
    /// (waiting to reconnect) or the message can never fit.
    pub(crate) fn offer(&mut self, p: &Published, registry: &Registry) -> bool {
        if matches!(self.publ.state, State::Idle { .. }) {
            self.drop_message(p, "not connected");
            return true;
        }
        if p.topic.len() > usize::from(u16::MAX) {
            // wire::encode would cut the topic short.
            self.drop_message(p, "topic longer than 65535 bytes");
            return true;
        }
        let size =
            PUBLISH_HEAD.len() + bulk_size(self.prefix.len() + p.topic.len()) + bulk_size(p.size());
        if size > MAX_OUTBOUND {
            self.drop_message(p, "message larger than the outbound queue");
            return true;
        }
        if self.publ.queued() + size > MAX_OUTBOUND {
            return false;
        }
        self.scratch.clear();
        wire::encode(p, &mut self.scratch);
        {
            let link = &mut self.publ;
            link.out.extend_from_slice(PUBLISH_HEAD);
            encode_bulk(&mut link.out, &[self.prefix.as_bytes(), p.topic.as_bytes()]);
            encode_bulk(&mut link.out, &[&self.scratch]);
            link.pending
                .push_back(link.out_base + link.out.len() as u64);
            if self.streak > 0 {
                log::info!(
                    "redis: publishing again after dropping {} message(s)",
                    self.streak
                );
                self.streak = 0;
            }
            if link.state == State::Connected && !link.write_blocked {
                if let Err(e) = link.flush() {
                    self.dropped +=
                        link.fail(Some(registry), Instant::now(), &self.addrs, &e.to_string());
                }
            }
        }
        if self.scratch.capacity() > KEEP_BUFFER {
            self.scratch = Vec::new();
        }
        true
    }

    /// Counts (and logs, once per streak) a message not published.
    fn drop_message(&mut self, p: &Published, why: &str) {
        self.dropped += 1;
        if self.streak == 0 {
            log::warn!(
                "redis: dropping published messages ({why}), first to topic {:?}",
                p.topic
            );
        }
        self.streak += 1;
    }

    /// Handles a readiness event for `token` (ignored unless it is one of
    /// the two given to [`register`](Self::register)): completes a connect,
    /// writes, reads, and appends the messages received to `incoming`, in
    /// the order Redis sent them.
    pub(crate) fn on_event(
        &mut self,
        token: Token,
        registry: &Registry,
        incoming: &mut Vec<Published>,
    ) {
        let link = if self.sub.token == Some(token) {
            &mut self.sub
        } else if self.publ.token == Some(token) {
            &mut self.publ
        } else {
            return;
        };
        self.dropped += link.on_ready(registry, &self.addrs, &self.prefix, incoming);
    }

    /// Runs the timers; call it on every loop iteration (it is cheap).
    /// Reconnects a failed connection once its backoff is over (the
    /// subscriber then subscribes again), fails a connect that takes too
    /// long, and pings an idle connection to find a dead one.
    pub(crate) fn tick(&mut self, now: Instant, registry: &Registry) {
        self.dropped += self.sub.tick(now, registry, &self.addrs);
        self.dropped += self.publ.tick(now, registry, &self.addrs);
    }

    /// How many published messages were dropped: while disconnected, with
    /// the queue full, or queued when a connection failed.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether the subscriber's `PSUBSCRIBE` is confirmed.
    #[cfg(test)]
    fn subscribed(&self) -> bool {
        self.sub.subscribed
    }
}

/// Bytes of a RESP bulk string of `len` bytes, header included.
fn bulk_size(len: usize) -> usize {
    1 + itoa::Buffer::new().format(len).len() + 2 + len + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("redis://127.0.0.1:6380").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 6380));
        assert_eq!((u.username, u.password), (None, None));
        let u = parse_url("redis://localhost").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("localhost", 6379));
        let u = parse_url("redis://:s3cret@h:1/3").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("h", 1));
        assert_eq!((u.username, u.password.as_deref()), (None, Some("s3cret")));
        let u = parse_url("REDIS://bob:p%40ss:w@h:2/0?x=1").unwrap();
        assert_eq!(u.username.as_deref(), Some("bob"));
        assert_eq!(u.password.as_deref(), Some("p@ss:w"));
        assert_eq!((u.host.as_str(), u.port), ("h", 2));
        let u = parse_url("redis://onlypw@h").unwrap();
        assert_eq!((u.username, u.password.as_deref()), (None, Some("onlypw")));
        let u = parse_url("redis://[::1]:7000/0").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 7000));
        let u = parse_url("redis://[::1]").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 6379));
        assert!(!format!("{:?}", parse_url("redis://:pw@h").unwrap()).contains("pw"));
        let err = parse_url("redis://u:hunter2@h:x/0")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("redis://***@h:x/0") && !err.contains("hunter2"),
            "{err}"
        );
        assert_eq!(redacted("redis://h:1/a@b"), "redis://h:1/a@b");
        for bad in [
            "http://h:1",
            "rediss://h:1",
            "unix:///tmp/redis.sock",
            "h:6379",
            "redis://",
            "redis://:6379",
            "redis://h:",
            "redis://h:0",
            "redis://h:65536",
            "redis://h:x",
            "redis://[::1",
            "redis://[::1]x",
        ] {
            let err = parse_url(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn new_rejects_bad_urls_and_starts_without_blocking() {
        assert!(RedisBus::new("http://127.0.0.1:1", "tine:").is_err());
        // Nothing listens on port 1: `new` still succeeds; the failure
        // shows up as an event and the bus retries.
        let bus = RedisBus::new("redis://127.0.0.1:1", "tine:").unwrap();
        assert_eq!(bus.dropped(), 0);
        assert!(format!("{bus:?}").contains("127.0.0.1:1"));
    }

    #[test]
    fn command_encoding() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"PUBLISH", b"tine:x", b"\x00a\r\nb"]);
        assert_eq!(
            out,
            b"*3\r\n$7\r\nPUBLISH\r\n$6\r\ntine:x\r\n$5\r\n\x00a\r\nb\r\n"
        );
        let mut out = Vec::new();
        encode_command(&mut out, &[b"AUTH", b"u", b""]);
        assert_eq!(out, b"*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$0\r\n\r\n");
        for len in [0, 9, 10, 99, 100, 123_456] {
            let data = vec![b'x'; len];
            let mut out = Vec::new();
            encode_command(&mut out, &[b"PUBLISH", b"tine:t", &data]);
            assert_eq!(
                out.len(),
                PUBLISH_HEAD.len() + bulk_size(6) + bulk_size(len)
            );
            assert!(out.starts_with(PUBLISH_HEAD));
        }
        assert_eq!(pattern_for("tine:"), b"tine:*");
        assert_eq!(pattern_for(""), b"*");
        assert_eq!(pattern_for("a*b?[c]\\:"), b"a\\*b\\?\\[c\\]\\\\:*");
    }

    #[test]
    fn frame_parsing() {
        let cases: Vec<(&[u8], Frame<'_>)> = vec![
            (b"+OK\r\n", Frame::Simple(b"OK")),
            (b"-ERR no\r\n", Frame::Error(b"ERR no")),
            (b":-42\r\n", Frame::Integer(-42)),
            (b"$3\r\na\r\n\r\n", Frame::Bulk(Some(b"a\r\n"))),
            (b"$0\r\n\r\n", Frame::Bulk(Some(b""))),
            (b"$-1\r\n", Frame::Bulk(None)),
            (b"*-1\r\n", Frame::Array(None)),
            (b"*0\r\n", Frame::Array(Some(vec![]))),
            (
                b"*3\r\n$10\r\npsubscribe\r\n$6\r\ntine:*\r\n:1\r\n",
                Frame::Array(Some(vec![
                    Frame::Bulk(Some(b"psubscribe")),
                    Frame::Bulk(Some(b"tine:*")),
                    Frame::Integer(1),
                ])),
            ),
        ];
        for (wire, want) in cases {
            let mut buf = wire.to_vec();
            buf.extend_from_slice(b"+next\r\n");
            let (frame, used) = parse_frame(&buf, 100).unwrap().unwrap();
            assert_eq!((frame, used), (want, wire.len()));
            for cut in 0..wire.len() {
                assert!(
                    parse_frame(&wire[..cut], 100).unwrap().is_none(),
                    "{wire:?} at {cut}"
                );
            }
        }
        for bad in [
            &b"?x\r\n"[..],
            b":12a\r\n",
            b"$-2\r\n",
            b"$5\r\nabcdefg",
            b"$101\r\n",
            b"*65\r\n",
            b"*1\r\n*1\r\n*1\r\n:1\r\n",
            b"+a\nb\r\n",
        ] {
            assert!(parse_frame(bad, 100).is_err(), "{bad:?}");
        }
        let long = vec![b'+'; MAX_LINE + 10];
        assert!(parse_frame(&long, 100).is_err());
        assert!(parse_frame(&long[..MAX_LINE - 10], 100).unwrap().is_none());
    }

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

    /// A listener that never accepts: connects complete in the kernel, and
    /// without polling the bus stays "connecting" and only queues.
    #[test]
    fn outbound_queue_is_bounded() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let mut bus = RedisBus::new(&url, "tine:").unwrap();
        let poll = mio::Poll::new().unwrap();
        bus.register(poll.registry(), Token(0), Token(1)).unwrap();
        let mb = binary("big", &vec![7u8; 1024 * 1024]);
        // Each takes a little over 1 MiB: seven fit in 8 MiB; the others
        // are refused (for the caller to keep), not dropped.
        let taken: Vec<bool> = (0..9).map(|_| bus.offer(&mb, poll.registry())).collect();
        assert_eq!(
            taken,
            [true, true, true, true, true, true, true, false, false]
        );
        assert_eq!(bus.dropped(), 0);
        assert_eq!(bus.publ.pending.len(), 7);
        // What can never fit is dropped.
        assert!(bus.offer(&binary("huge", &vec![0u8; MAX_OUTBOUND]), poll.registry()));
        assert_eq!(bus.dropped(), 1);
        assert!(bus.offer(&text(&"t".repeat(65536), "x"), poll.registry()));
        assert_eq!(bus.dropped(), 2);
        assert!(bus.offer(&text("small", "fits"), poll.registry()));
        assert_eq!(bus.dropped(), 2);
        let mut want = Vec::new();
        encode_command(
            &mut want,
            &[b"PUBLISH", b"tine:small", b"\x00\x05\x00smallfits"],
        );
        assert!(bus.publ.out.ends_with(&want));
    }

    /// A connect that never completes times out; a connected server that
    /// never answers is pinged and then dropped. Time is simulated through
    /// `tick`'s `now`.
    #[test]
    fn connect_timeout_and_unanswered_ping() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let mut h = Harness::new(&[(&url, "tine:")]);
        let t0 = Instant::now();
        h.buses[0].tick(t0 + CONNECT_TIMEOUT, h.poll.registry());
        assert!(matches!(h.buses[0].publ.state, State::Idle { .. }));
        assert!(matches!(h.buses[0].sub.state, State::Idle { .. }));
        // A fresh bus connects (the kernel completes the handshake; nobody
        // accepts or answers).
        let mut h = Harness::new(&[(&url, "tine:")]);
        assert!(h.pump_until(Duration::from_secs(5), |h| {
            h.buses[0].sub.state == State::Connected && h.buses[0].publ.state == State::Connected
        }));
        let t1 = Instant::now() + PING_IDLE;
        h.buses[0].tick(t1, h.poll.registry());
        assert!(h.buses[0].sub.ping_sent.is_some() && h.buses[0].publ.ping_sent.is_some());
        h.buses[0].tick(t1 + PING_TIMEOUT / 2, h.poll.registry());
        assert_eq!(h.buses[0].sub.state, State::Connected);
        h.buses[0].tick(t1 + PING_TIMEOUT, h.poll.registry());
        assert!(matches!(h.buses[0].sub.state, State::Idle { .. }));
        assert!(matches!(h.buses[0].publ.state, State::Idle { .. }));
        drop(listener);
    }

    #[test]
    fn unreachable_server_drops_and_retries() {
        // A port with nothing listening (bound, then released).
        let port = free_port();
        let mut h = Harness::new(&[(&format!("redis://127.0.0.1:{port}"), "tine:")]);
        assert!(h.pump_until(Duration::from_secs(5), |h| matches!(
            h.buses[0].publ.state,
            State::Idle { .. }
        )));
        assert!(h.buses[0].offer(&text("t", "x"), h.poll.registry()));
        assert_eq!(h.buses[0].dropped(), 1);
        // The backoff grows while the server stays away.
        h.pump_for(Duration::from_millis(800));
        assert!(h.buses[0].publ.backoff >= Duration::from_millis(800));
        assert!(h.buses[0].sub.sessions == 0 && !h.buses[0].subscribed());
    }

    // ---- end to end, against a real redis-server ----

    fn free_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    use testkit::redis::RedisServer;

    /// Drives buses with their own poll, as the event loop would: bus `i`
    /// has tokens `2i` (subscriber) and `2i + 1` (publisher).
    struct Harness {
        poll: mio::Poll,
        events: mio::Events,
        buses: Vec<RedisBus>,
        got: Vec<Vec<Published>>,
    }

    impl Harness {
        fn new(specs: &[(&str, &str)]) -> Harness {
            let poll = mio::Poll::new().unwrap();
            let mut buses = Vec::new();
            for (i, (url, prefix)) in specs.iter().enumerate() {
                let mut bus = RedisBus::new(url, prefix).unwrap();
                bus.register(poll.registry(), Token(2 * i), Token(2 * i + 1))
                    .unwrap();
                buses.push(bus);
            }
            Harness {
                poll,
                events: mio::Events::with_capacity(64),
                got: vec![Vec::new(); buses.len()],
                buses,
            }
        }

        fn step(&mut self) {
            self.poll
                .poll(&mut self.events, Some(Duration::from_millis(10)))
                .unwrap();
            for event in self.events.iter() {
                let i = event.token().0 / 2;
                self.buses[i].on_event(event.token(), self.poll.registry(), &mut self.got[i]);
            }
            let now = Instant::now();
            for bus in &mut self.buses {
                bus.tick(now, self.poll.registry());
            }
        }

        fn pump_until(&mut self, limit: Duration, done: impl Fn(&Harness) -> bool) -> bool {
            let deadline = Instant::now() + limit;
            while !done(self) {
                if Instant::now() >= deadline {
                    return false;
                }
                self.step();
            }
            true
        }

        fn pump_for(&mut self, d: Duration) {
            let deadline = Instant::now() + d;
            while Instant::now() < deadline {
                self.step();
            }
        }

        fn all_subscribed(&self) -> bool {
            self.buses.iter().all(|b| b.subscribed())
        }

        fn publish(&mut self, bus: usize, p: &Published) {
            assert!(self.buses[bus].offer(p, self.poll.registry()), "queue full");
        }

        /// Publishes `msgs` from bus `from`, then checks that every bus in
        /// `to` receives exactly them, in order.
        fn round_trip(&mut self, from: usize, to: &[usize], msgs: &[Published]) {
            for g in &mut self.got {
                g.clear();
            }
            for p in msgs {
                self.publish(from, p);
            }
            let ok = self.pump_until(Duration::from_secs(10), |h| {
                to.iter().all(|&i| h.got[i].len() >= msgs.len())
            });
            for &i in to {
                assert!(
                    ok,
                    "bus {i} got {} of {} messages",
                    self.got[i].len(),
                    msgs.len()
                );
                assert!(self.got[i] == msgs, "bus {i} got other messages or order");
            }
        }
    }

    fn sample(n: usize, tag: &str) -> Vec<Published> {
        (0..n)
            .map(|i| match i % 4 {
                0 => text("chat", &format!("{tag} message {i}")),
                1 => binary("bin", &[i as u8, 0, 255, b'\r', b'\n', (i >> 8) as u8]),
                2 => text("ünïcode ✓", &format!("{tag} ✓ {i}")),
                _ => binary("bin", b""),
            })
            .collect()
    }

    #[test]
    fn end_to_end_with_redis_server() {
        let Some(mut server) = RedisServer::start(&[]) else {
            return;
        };
        let url = server.url();
        // Two tine processes on the same prefix, one on another prefix.
        let mut h = Harness::new(&[(&url, "tine:"), (&url, "tine:"), (&url, "other:")]);
        assert!(h.pump_until(Duration::from_secs(10), Harness::all_subscribed));

        // Keep-alive PINGs are answered (a `pong` push on the subscriber)
        // and change nothing.
        let later = Instant::now() + PING_IDLE;
        for bus in &mut h.buses {
            bus.tick(later, h.poll.registry());
            assert!(bus.sub.ping_sent.is_some() && bus.publ.ping_sent.is_some());
        }
        assert!(
            h.pump_until(Duration::from_secs(5), |h| h.buses.iter().all(|b| b
                .sub
                .ping_sent
                .is_none()
                && b.publ.ping_sent.is_none()))
        );
        assert!(h.all_subscribed() && h.got.iter().all(Vec::is_empty));

        // Order, text and binary, large messages.
        let all_bytes: Vec<u8> = (0..=255u8).cycle().take(3 * 1024 * 1024).collect();
        let mut msgs = sample(2000, "first");
        msgs.insert(1000, binary("big", &all_bytes));
        msgs.push(text("", ""));
        h.round_trip(0, &[0, 1], &msgs);
        h.round_trip(1, &[0, 1], &sample(100, "from b"));
        // The other prefix saw none of it, and gets its own.
        h.pump_for(Duration::from_millis(100));
        assert!(h.got[2].is_empty());
        h.round_trip(2, &[2], &sample(10, "other"));
        assert!(h.got[0].is_empty() && h.got[1].is_empty());

        // Another Redis client publishing plain text on a tine channel.
        server.cli(&["PUBLISH", "tine:news", "plain hello"]);
        assert!(h.pump_until(Duration::from_secs(5), |h| h.got[0].len() == 1
            && h.got[1].len() == 1));
        assert_eq!(h.got[0], vec![text("news", "plain hello")]);

        // The server kills the subscribers: they come back and resubscribe.
        let sessions: Vec<u64> = h.buses.iter().map(|b| b.sub.sessions).collect();
        let killed = server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        assert_eq!(killed.trim(), "3", "{killed:?}");
        assert!(h.pump_until(Duration::from_secs(10), |h| {
            h.all_subscribed()
                && h.buses
                    .iter()
                    .zip(&sessions)
                    .all(|(b, &s)| b.sub.sessions > s)
        }));
        h.round_trip(0, &[0, 1], &sample(50, "after kill"));

        // The server kills the publishers (redis-cli spares itself).
        let sessions: Vec<u64> = h.buses.iter().map(|b| b.publ.sessions).collect();
        let killed = server.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
        assert_eq!(killed.trim(), "3", "{killed:?}");
        assert!(h.pump_until(Duration::from_secs(10), |h| {
            h.buses
                .iter()
                .zip(&sessions)
                .all(|(b, &s)| b.publ.sessions > s)
        }));
        h.round_trip(1, &[0, 1], &sample(50, "after publisher kill"));

        // The server goes away: publishing drops; it comes back: all
        // reconnect by themselves.
        server.kill();
        assert!(h
            .pump_until(Duration::from_secs(10), |h| h.buses.iter().all(|b| !b
                .subscribed()
                && matches!(b.publ.state, State::Idle { .. }))));
        let before = h.buses[0].dropped();
        h.publish(0, &text("chat", "lost"));
        assert_eq!(h.buses[0].dropped(), before + 1);
        h.pump_for(Duration::from_millis(500));
        server.restart();
        assert!(h.pump_until(Duration::from_secs(15), |h| h.all_subscribed()
            && h.buses.iter().all(|b| b.publ.healthy)));
        h.round_trip(0, &[0, 1], &sample(200, "after restart"));
        assert!(h.got[2].is_empty());
    }

    #[test]
    fn password_authentication() {
        let Some(server) = RedisServer::start(&["--requirepass", "s3cr:et"]) else {
            return;
        };
        let good = format!("redis://:s3cr%3Aet@127.0.0.1:{}/0", server.port());
        let acl = format!("redis://default:s3cr%3Aet@127.0.0.1:{}", server.port());
        let wrong = format!("redis://:nope@127.0.0.1:{}", server.port());
        let none = server.url();
        let mut h = Harness::new(&[
            (&good, "tine:"),
            (&acl, "tine:"),
            (&wrong, "tine:"),
            (&none, "tine:"),
        ]);
        assert!(
            h.pump_until(Duration::from_secs(10), |h| h.buses[0].subscribed()
                && h.buses[1].subscribed())
        );
        h.round_trip(0, &[0, 1], &sample(20, "authenticated"));
        // Without the right password nothing gets through, and the error
        // reply makes the bus back off and retry.
        h.pump_for(Duration::from_millis(300));
        for i in [2, 3] {
            assert!(!h.buses[i].subscribed() && h.got[i].is_empty());
            assert!(h.buses[i].sub.backoff > BACKOFF_MIN);
        }
        h.got[0].clear();
        let sent: Vec<Published> = sample(5, "denied");
        for p in &sent {
            h.publish(2, p);
        }
        h.pump_for(Duration::from_millis(300));
        assert!(h.got[0].is_empty());
    }
}
