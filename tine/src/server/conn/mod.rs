//! One client connection: its protocol state machine (HTTP/1.1, then
//! WebSocket after an upgrade) over a [`Transport`].
//!
//! The event loop owns the sockets' readiness, the timers and the order in
//! which connections run; a connection owns everything else. Its interface
//! is small: [`readable`](Conn::readable) when the socket reported input,
//! [`drive`](Conn::drive) to make all the progress it can without blocking
//! (within one turn's [`Budget`]), [`deadline`](Conn::deadline) for the
//! timer it wants, [`timed_out`](Conn::timed_out) when that passed, and
//! [`closed`](Conn::closed) before it is dropped.
//!
//! A connection holds no buffer while idle: read data lives in `rbuf` only
//! while a request is incomplete, and queued output in `wbuf` only while
//! the socket refuses more (the loop lends one spare buffer each way, see
//! [`Shared`]). That keeps an idle keep-alive connection to the size of
//! this struct, and a request that arrives and is answered in one turn
//! costs no allocation for either buffer.
//!
//! # Retiring: long-lived connections closed over a window
//!
//! A worker that stops (recycled, replaced by a rolling restart or a
//! binary upgrade, or stopped with the server) must end its WebSockets and
//! the streamed responses still running. Ending them all at once would
//! have every client reconnect at once, to the workers that remain: a
//! reconnect storm at every recycle. So the event loop gives each such
//! connection its own moment ([`retire_at`](Conn::retire_at)): the `n`
//! long-lived connections (WebSockets, event streams, streamed responses) of a draining worker are spread evenly over the
//! first half of [`Limits::drain_timeout`](crate::Limits::drain_timeout)
//! (the first at once, the last at `(n - 1) / n` of that half), which
//! leaves the second half for the close handshakes. At its moment a
//! WebSocket gets its close frame (`1001 going away`), an event stream its
//! last chunk; a streamed response
//! still running is cut (the connection closes, as it would at the drain
//! deadline). Ordinary requests in flight are not affected: they finish
//! as before.
//!
//! - `http1.rs`: reading requests, answering them in order, framing and
//!   sending responses (memory, stream, file), lingering close.
//! - `ws.rs`: the WebSocket phase.
//! - `sse.rs`: the server-sent events phase.
//! - `transport.rs`: the byte stream underneath (plain TCP, or TLS with
//!   the `tls` feature; `sendfile` only on plain TCP).

pub(crate) mod fuzz;
mod http1;
pub(crate) mod proxy_header;
mod sse;
mod transport;
mod ws;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::http::date::DateCache;
use crate::http::parse::Decoder;
use crate::http::FileBody;
use crate::server::recycle::RequestBudget;
use crate::server::timer::Stamp;
use crate::server::ServerConfig;
use crate::service::Service;
use crate::sse::SseSession;
use crate::ws::session::Session;

#[cfg(feature = "tls")]
pub(crate) use transport::{send_now_deadline, wait_writable};
pub(crate) use transport::{Link, Transport};

/// Size of the read scratch buffer: one read takes at most this much.
pub(crate) const READ_CHUNK: usize = 64 * 1024;
/// Pipelined responses are gathered until this much output is queued.
pub(crate) const OUT_BATCH: usize = 256 * 1024;
/// Most requests (or WebSocket frames) one connection may handle per loop
/// turn, and most bytes it may read, or write of a response body. A
/// connection with work left yields ([`Next::Yield`]), so one pipelining
/// client, or one that reads a long response as fast as it comes, cannot
/// hold the worker while others wait (and its stop signal with them: the
/// loop would not look for it until the response ended).
const TURN_REQUESTS: u32 = 64;
const TURN_READ: usize = 4 * READ_CHUNK;
const TURN_WRITE: usize = 4 * READ_CHUNK;
/// How long a closing connection waits for the peer to close after our
/// last response before closing anyway.
const LINGER: Duration = Duration::from_secs(2);
/// How long a connection idle during a drain is kept before it is closed.
pub(crate) const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// Buffers and settings shared by all connections of one loop.
pub(crate) struct Shared {
    pub(crate) service: Service,
    pub(crate) config: ServerConfig,
    pub(crate) date: DateCache,
    /// Where reads land before being appended to a connection's buffer.
    pub(crate) scratch: Vec<u8>,
    /// An output buffer lent to a connection while it writes, so idle
    /// connections hold none.
    pub(crate) spare_out: Vec<u8>,
    /// A read buffer lent to a connection while it holds request bytes,
    /// reused from one request to the next (requests are slices of it:
    /// once they are answered and dropped it is whole again), so reading
    /// a request allocates nothing.
    pub(crate) spare_in: BytesMut,
    /// The server is shutting down: answer with `Connection: close`.
    pub(crate) draining: bool,
    /// Open connections by client address, for
    /// `Limits::max_connections_per_ip`: counted at accept, or on a PROXY
    /// protocol listener once the header names the client.
    pub(crate) per_ip: crate::server::per_ip::PerIp,
    /// The time of the current loop turn (set with
    /// [`set_now`](Self::set_now)).
    pub(crate) now: Instant,
    /// `now` on the loop's clock, which connections keep their moments on
    /// (see [`Stamp`]).
    pub(crate) stamp: Stamp,
    /// The start of the loop's clock (the timing wheel's start too).
    pub(crate) epoch: Instant,
    /// Responses served against `max_requests` (see `recycle.rs`):
    /// unlimited until the loop of a worker sets it.
    pub(crate) budget: RequestBudget,
    /// The last clock reading: the loop turn's start, then the end of each
    /// handler (the scoreboard's handler time).
    pub(crate) clock: Instant,
    /// A handler that ends before this took under a millisecond (at most
    /// `clock` + 1 ms; see `http1::answer_counted`).
    pub(crate) fast_until: Instant,
}

impl Shared {
    pub(crate) fn new(service: Service, config: ServerConfig, now: Instant) -> Self {
        let per_ip = crate::server::per_ip::PerIp::new(config.limits.max_connections_per_ip);
        Shared {
            service,
            config,
            date: DateCache::new(),
            scratch: vec![0; READ_CHUNK],
            spare_out: Vec::with_capacity(OUT_BATCH),
            spare_in: BytesMut::new(),
            draining: false,
            per_ip,
            now,
            stamp: Stamp::since(now, now),
            epoch: now,
            budget: RequestBudget::new(None),
            clock: now,
            fast_until: now,
        }
    }

    /// Sets the time of the loop turn.
    #[inline]
    pub(crate) fn set_now(&mut self, now: Instant) {
        self.now = now;
        self.stamp = self.stamp_of(now);
    }

    /// `at` on the loop's clock.
    #[inline]
    pub(crate) fn stamp_of(&self, at: Instant) -> Stamp {
        Stamp::since(self.epoch, at)
    }

    /// A moment of the loop's clock as an `Instant`.
    #[cfg(test)]
    pub(crate) fn instant(&self, at: Stamp) -> Instant {
        at.instant(self.epoch)
    }
}

/// What a connection needs after being driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Wait for the socket's next event (or a timer).
    Keep,
    /// Its turn's budget is spent with work left (input buffered or still
    /// in the socket): drive it again after the others. Edge-triggered
    /// readiness will not report the unread input again.
    Yield,
    /// The publish outbox is full: read nothing more from it until the
    /// loop has delivered what is queued.
    Park,
    /// Done or broken: close it.
    Close,
}

/// What a connection should do once its deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// Close it now.
    Close,
    /// It queued something (a `408`, a ping): drive it.
    Drive,
}

/// What one connection may still do in the current loop turn.
struct Budget {
    requests: u32,
    read: usize,
    /// Bytes of response bodies still to write this turn.
    write: usize,
}

impl Budget {
    fn new() -> Self {
        Budget {
            requests: TURN_REQUESTS,
            read: TURN_READ,
            write: TURN_WRITE,
        }
    }

    fn spent(&self) -> bool {
        self.requests == 0 || self.read == 0
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading requests, writing responses.
    Open,
    /// The last response is queued; close once it is sent.
    Closing,
    /// Output done and write side shut; discarding input until the peer
    /// closes or the linger deadline passes, so the peer reads our last
    /// response instead of a reset.
    Lingering,
    /// Nothing to send or wait for: close now (a connection refused
    /// unanswered, its client over `max_connections_per_ip`).
    Done,
}

/// A body still being sent after its head.
enum Pending {
    Bytes(Bytes),
    Stream {
        chunks: crate::http::Chunks,
        chunked: bool,
    },
    File(FileBody),
}

/// One client connection over transport `T`.
pub(crate) struct Conn<T> {
    stream: T,
    peer: SocketAddr,
    rbuf: BytesMut,
    /// `rbuf` is the loop's buffer, lent for this turn.
    rbuf_lent: bool,
    decoder: Decoder,
    wbuf: Vec<u8>,
    wpos: usize,
    pending: Option<Pending>,
    phase: Phase,
    /// Responses completed on this connection.
    served: u32,
    /// Whether the socket may have unread data (edge-triggered readiness).
    input: Input,
    /// When the connection was accepted. (This and the other moments are
    /// [`Stamp`]s, half the size of an `Instant`: a connection keeps five.)
    opened: Stamp,
    /// When the current request head started arriving.
    head_started: Option<Stamp>,
    /// When the current request's head was complete, while its body is
    /// still arriving.
    body_started: Option<Stamp>,
    /// The moment the connection's give-up timer counts from, for the
    /// phase it is in (one field for all: a connection is in one at a
    /// time, and an idle one keeps no more than this):
    ///
    /// - lingering: when it began (for [`LINGER`]);
    /// - sending an HTTP response: its last write that made progress, or
    ///   when output was queued to a connection that had none waiting
    ///   (for `Limits::idle_timeout`);
    /// - an event stream: its last write that made progress, or the
    ///   heartbeat queued last (for its heartbeat interval);
    /// - a WebSocket: the ping waiting for its pong, or when the session
    ///   began to end (a peer too slow, the close handshake over) with
    ///   output still waiting, whichever came first (for
    ///   `WsConfig::pong_timeout`); otherwise the last input from the
    ///   peer (for `WsConfig::ping_interval`).
    ///
    /// Input moves it only in that last case: the others are limits on
    /// how long the peer may leave our output (or our ping) unread, and a
    /// peer that reads nothing but sends a byte now and then must not
    /// hold a connection and the output buffered for it forever. Our own
    /// output never moves it: a WebSocket fed published messages by a
    /// peer that is gone would otherwise never be pinged, and would hold
    /// what is queued for it until its buffer overflowed. (A deadline
    /// recomputed from the time of each drive would be moved by every
    /// event, deliveries included.)
    timer_from: Stamp,
    /// Set once the connection has switched to WebSocket.
    ws: Option<Box<Session>>,
    /// When a draining worker ends this long-lived connection (see the
    /// module docs), until it did.
    retire: Option<Stamp>,
    /// The request whose head was admitted and whose body is being read.
    admitted: Option<Box<Admitted>>,
    /// The answer to a request whose chunked body is being passed over
    /// unread: held until the body ends, so that it can say whether the
    /// connection stays open (see [`Conn::admit`]).
    held: Option<Box<(crate::http::Response, crate::http::encode::Exchange)>>,
    /// Set once the connection is a server-sent event stream.
    sse: Option<Box<SseSession>>,
    /// Whether a PROXY protocol header is expected, and what the
    /// connection is counted under (see [`counted_ip`](Self::counted_ip)):
    /// one byte where the address itself took twenty-four.
    proxy: Proxy,
}

/// A connection's PROXY protocol header, and with it the address
/// `max_connections_per_ip` counts the connection under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proxy {
    /// No header is expected (any more): counted under the peer (the
    /// socket's, or the client a header named).
    Counted,
    /// A header is expected before the first request; counted under
    /// nobody until it is read.
    Expected,
    /// The header was bad, or its client over the limit: counted under
    /// nobody, and closing.
    Refused,
}

/// What the readiness events said about a connection's input since it
/// last read the socket dry. One byte, where two flags would have grown
/// every connection by eight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// Read until `WouldBlock` (or a short read): wait for an event.
    Drained,
    /// Input may wait.
    Ready,
    /// Input may wait, and an event reported the peer's end of stream
    /// (`EPOLLRDHUP`, kqueue's `EV_EOF`): the connection reads on until it
    /// sees it, because no later event will announce it again.
    ToEof,
}

impl Input {
    fn ready(self) -> bool {
        self != Input::Drained
    }

    /// The state after a read of `n` bytes into a buffer of `len`
    /// (`n > 0`). A short read left the socket drained, so the read that
    /// would only say `EAGAIN` is skipped: edge-triggered readiness
    /// announces every later arrival as a new event, so nothing is missed,
    /// and that saves one system call per request or message (nginx does
    /// the same). Not when the transport may hold more (`more`: TLS
    /// records), nor after an event reported the peer's EOF
    /// ([`Input::ToEof`]).
    fn after_read(self, n: usize, len: usize, more: bool) -> Input {
        if n < len && self != Input::ToEof && !more {
            Input::Drained
        } else {
            self
        }
    }
}

/// A request admitted before its body ([`Service::admit`]), waiting for
/// it.
pub(crate) struct Admitted {
    req: crate::http::Request,
    exchange: crate::http::encode::Exchange,
    /// Its route group's body timeout, if it sets one.
    body_timeout: Option<Duration>,
}

impl<T: Transport> Conn<T> {
    pub(crate) fn new(stream: T, peer: SocketAddr, now: Stamp) -> Self {
        Conn {
            stream,
            peer,
            rbuf: BytesMut::new(),
            rbuf_lent: false,
            decoder: Decoder::new(),
            wbuf: Vec::new(),
            wpos: 0,
            pending: None,
            phase: Phase::Open,
            served: 0,
            input: Input::Ready,
            opened: now,
            head_started: None,
            body_started: None,
            timer_from: now,
            ws: None,
            retire: None,
            admitted: None,
            held: None,
            sse: None,
            proxy: Proxy::Counted,
        }
    }

    /// The address `max_connections_per_ip` counts this connection under
    /// (see [`Shared::per_ip`]): the socket's peer, or on a PROXY protocol
    /// listener the client its header named (nothing, the unspecified
    /// address, until the header is read). The count is released under it
    /// when the connection closes.
    pub(crate) fn counted_ip(&self) -> std::net::IpAddr {
        match self.proxy {
            Proxy::Counted => self.peer.ip(),
            Proxy::Expected | Proxy::Refused => std::net::Ipv4Addr::UNSPECIFIED.into(),
        }
    }

    /// The connection starts with a PROXY protocol header (its listener
    /// expects one): the header's source becomes the peer, and the
    /// connection is counted per client address once the header is read
    /// (the accept did not count it).
    pub(crate) fn expect_proxy_header(&mut self) {
        self.proxy = Proxy::Expected;
    }

    /// The transport, to (de)register it with the poller.
    pub(crate) fn transport_mut(&mut self) -> &mut T {
        &mut self.stream
    }

    /// The socket reported input (or EOF, or an error): the next
    /// [`drive`](Self::drive) reads. `eof` says the report included the
    /// peer's end of stream (`EPOLLRDHUP`, kqueue's `EV_EOF`).
    pub(crate) fn readable(&mut self, eof: bool) {
        self.input = if eof || self.input == Input::ToEof {
            Input::ToEof
        } else {
            Input::Ready
        };
    }

    /// Moves the connection as far as it can go without blocking, within
    /// one turn's budget: send queued output, answer buffered requests,
    /// read more.
    pub(crate) fn drive(&mut self, shared: &mut Shared) -> Next {
        let next = self.drive_http(shared, &mut Budget::new());
        if let Some(ws) = self.ws.as_deref_mut() {
            // A WebSocket that began to end during this drive, or since the
            // last one (a published message for a peer that reads too
            // slowly), gets a fixed time for its last output from here.
            // Every event wakes the connection, so the moment is noted
            // once: a deadline counted from each wake-up would never come
            // for a peer that keeps sending.
            // Asked first, so the moment is used up even when a ping
            // already waits for its pong: that earlier deadline stands.
            let began = ws.begins_to_end();
            if began && !ws.awaiting_pong() && self.phase != Phase::Lingering {
                self.timer_from = shared.stamp;
            }
        }
        next
    }

    /// Whether this connection is long-lived: a WebSocket (not already
    /// closing) or a streamed response being sent. A draining worker ends
    /// these over a window (see the module docs).
    pub(crate) fn long_lived(&self) -> bool {
        if self.phase == Phase::Lingering {
            return false;
        }
        self.ws.is_some()
            || self.sse.is_some()
            || matches!(self.pending, Some(Pending::Stream { .. }))
    }

    /// A draining worker ends this connection at `at` (see the module
    /// docs); [`deadline`](Self::deadline) includes it from now on.
    pub(crate) fn retire_at(&mut self, at: Stamp) {
        self.retire = Some(at);
    }

    /// When this connection wants its timer to fire, given its state
    /// after [`drive`](Self::drive).
    pub(crate) fn deadline(&self, shared: &Shared) -> Stamp {
        let own = self.own_deadline(shared);
        self.retire.map_or(own, |at| own.min(at))
    }

    fn own_deadline(&self, shared: &Shared) -> Stamp {
        let now = shared.stamp;
        if let Some(ws) = self
            .ws
            .as_deref()
            .filter(|_| self.phase != Phase::Lingering)
        {
            let config = ws.core.timing();
            // Giving up is timed from a fixed moment (see `timer_from`);
            // the ping is a heartbeat, due an interval after the peer's
            // last input.
            let own = if ws.closing() || ws.awaiting_pong() {
                self.timer_from.after(config.pong_timeout)
            } else if let Some(interval) = config.ping_interval {
                self.timer_from.after(interval)
            } else {
                now.after(Duration::from_secs(24 * 3600))
            };
            // A message being received has a deadline of its own.
            return match ws.message_started().filter(|_| !ws.closing()) {
                Some(started) => own.min(shared.stamp_of(started).after(config.message_timeout)),
                None => own,
            };
        }
        if let Some(sse) = self.sse.as_deref() {
            if self.phase != Phase::Lingering {
                // The heartbeat is due an interval after the last write;
                // output still waiting then gives up.
                return self.timer_from.after(sse.heartbeat);
            }
        }
        let limits = &shared.config.limits;
        if self.phase == Phase::Lingering {
            self.timer_from.after(LINGER)
        } else if self.writing() {
            // nginx's `send_timeout`: the longest pause between two writes
            // that made progress, not renewed by the client's input.
            self.timer_from.after(limits.idle_timeout)
        } else if let Some(started) = self.head_started {
            started.after(limits.header_timeout)
        } else if let Some(started) = self.body_started {
            let whole = self
                .admitted
                .as_ref()
                .and_then(|a| a.body_timeout)
                .unwrap_or(limits.body_timeout);
            // A timeout too long to add (`Duration::MAX`, which saturates
            // to never) is no deadline: only the pause inside the body is
            // timed.
            let pause = now.after(limits.idle_timeout);
            started.after(whole).min(pause)
        } else if self.decoder.mid_request() {
            now.after(limits.idle_timeout)
        } else if self.served == 0 {
            // Accepted, nothing read yet (a browser's preconnect, a first
            // packet retransmitted, a TLS hello to come): its request is
            // still owed an answer, draining or not, as nginx gives one.
            self.opened.after(limits.header_timeout)
        } else if shared.draining {
            // Idle between requests while draining: close soon, but not at
            // once, so a client that is sending its next request right now
            // gets an answer (with `Connection: close`) instead of a closed
            // socket.
            now.after(DRAIN_IDLE)
        } else {
            now.after(limits.idle_timeout)
        }
    }

    /// Its deadline passed: close it, or (a request that did not arrive in
    /// time, a WebSocket peer due a ping) queue something and drive it.
    pub(crate) fn timed_out(&mut self, shared: &mut Shared) -> Expired {
        if self.retire.is_some_and(|at| at <= shared.stamp) {
            self.retire = None;
            if self.phase != Phase::Lingering {
                if let Some(ws) = self.ws.as_mut() {
                    ws.go_away();
                    return Expired::Drive;
                }
                if let Some(sse) = self.sse.as_mut() {
                    // Its last chunk ends the stream; the browser
                    // reconnects to a worker that serves on.
                    sse.finish();
                    return Expired::Drive;
                }
                if matches!(self.pending, Some(Pending::Stream { .. })) {
                    return Expired::Close;
                }
            }
            // Ended on its own meanwhile: its own timer rules apply.
            if self.own_deadline(shared) > shared.stamp {
                return Expired::Drive;
            }
        }
        if let Some(ws) = self.ws.as_mut() {
            let message_due =
                ws.message_started()
                    .filter(|_| !ws.closing())
                    .is_some_and(|started| {
                        shared
                            .stamp_of(started)
                            .after(ws.core.timing().message_timeout)
                            <= shared.stamp
                    });
            if message_due {
                // The close frame gets the closing's usual time to go out.
                ws.message_too_slow(&self.stream);
                self.timer_from = shared.stamp;
                return Expired::Drive;
            }
            // Draining, a WebSocket waits for its moment to get the close
            // frame (pinged meanwhile as usual); once it got it, any timer
            // ends it.
            let ended = shared.draining && self.retire.is_none();
            if ws.awaiting_pong() || ws.closing() || ended {
                return Expired::Close;
            }
            ws.ping();
            self.timer_from = shared.stamp;
            return Expired::Drive;
        }
        if let Some(sse) = self.sse.as_mut().filter(|_| self.phase != Phase::Lingering) {
            // Output still waiting a whole interval after the last write
            // that made progress (or after the heartbeat before it was
            // queued): the socket's buffers are full and the client reads
            // nothing.
            let ended = shared.draining && self.retire.is_none();
            if !sse.unsent().is_empty() || sse.finished || ended {
                return Expired::Close;
            }
            sse.heartbeat();
            // The comment has an interval to go out.
            self.timer_from = shared.stamp;
            return Expired::Drive;
        }
        if self.phase != Phase::Open || self.writing() || !self.reading_request() {
            // Lingering done, a client that stopped reading, or an idle
            // keep-alive connection: nothing to say.
            return Expired::Close;
        }
        if self.decoder.discarding() {
            // The body of an answered request stopped coming. A held
            // answer goes out now, saying that the connection closes;
            // else there is nothing to say, but a lingering close, so that
            // a client still sending does not get a reset that could cost
            // it the answer.
            if !self.release_held(false, shared) {
                self.linger(shared.stamp);
            }
            return Expired::Drive;
        }
        self.request_timed_out(shared);
        Expired::Drive
    }

    /// The loop is about to drop the connection: a WebSocket handler
    /// learns of it (1006) unless it already did.
    pub(crate) fn closed(&mut self) {
        if let Some(ws) = self.ws.as_mut() {
            ws.closed(1006, String::new(), &self.stream);
        }
        self.stream.close_notify();
    }

    /// Whether it answered a request already (a keep-alive connection,
    /// when [`idle`](Self::idle)), rather than waiting for its first.
    pub(crate) fn served_any(&self) -> bool {
        self.served > 0
    }

    /// Whether nothing is in flight: safe to close during a drain.
    pub(crate) fn idle(&self) -> bool {
        !self.writing()
            && !self.reading_request()
            && self.phase == Phase::Open
            && self.ws.is_none()
            && self.sse.is_none()
    }

    /// The event stream, once the connection is one (also while
    /// lingering: its topics are still to be removed).
    pub(crate) fn any_sse(&self) -> Option<&SseSession> {
        self.sse.as_deref()
    }

    /// The event stream, for subscription changes and deliveries.
    pub(crate) fn any_sse_mut(&mut self) -> Option<&mut SseSession> {
        self.sse.as_deref_mut()
    }

    /// The event stream, while it is live (not lingering).
    pub(crate) fn sse_mut(&mut self) -> Option<&mut SseSession> {
        self.sse
            .as_deref_mut()
            .filter(|_| self.phase != Phase::Lingering)
    }

    /// The WebSocket session, once upgraded and not lingering.
    pub(crate) fn session_mut(&mut self) -> Option<&mut Session> {
        self.ws
            .as_deref_mut()
            .filter(|_| self.phase != Phase::Lingering)
    }

    /// The WebSocket session, once upgraded (also while lingering).
    pub(crate) fn any_session(&self) -> Option<&Session> {
        self.ws.as_deref()
    }

    /// The WebSocket session, once upgraded, for changes (also while
    /// lingering: its last topic changes still apply).
    pub(crate) fn any_session_mut(&mut self) -> Option<&mut Session> {
        self.ws.as_deref_mut()
    }

    /// Whether output is queued or a body is being sent.
    fn writing(&self) -> bool {
        self.wpos < self.wbuf.len() || self.pending.is_some()
    }

    /// Whether part of a request has arrived.
    fn reading_request(&self) -> bool {
        !self.rbuf.is_empty() || self.decoder.mid_request()
    }

    /// Output done: shut our side and discard input until the peer closes
    /// or the linger time passes.
    fn linger(&mut self, now: Stamp) {
        self.stream.shutdown_write();
        self.phase = Phase::Lingering;
        self.timer_from = now;
    }
}
