//! One WebSocket connection after the handshake: frames read where the
//! socket put them, messages handed to the handler, replies framed into
//! the connection's output buffer (the framing itself is in `frame.rs`).
//!
//! The event loop reads into its scratch buffer and passes it here
//! mutably: whole frames are unmasked in place and handled from there;
//! only the start of a frame whose rest has not arrived is kept (in
//! `input`, a buffer borrowed from the thread's spare while it holds
//! anything). A message sent in fragments is gathered in a buffer of its
//! own until its last fragment. Control frames may come between
//! fragments; pings are answered at once. Violations close the
//! connection with the RFC's code: 1002 (protocol), 1007 (UTF-8), 1009
//! (size, before the payload is buffered).
//!
//! So an idle WebSocket holds no buffer: its output buffer goes back to
//! the thread's spare once written, its input one once no partial frame
//! is left.

use std::io;
use std::rc::Rc;

use bytes::Bytes;
use tungstenite::Message;

use super::frame::{self, code, op, Violation};
use super::{WebSocket, WsConfig, WsEvent, WsHandler};
use crate::handler;
use crate::http::Request;

/// Writes bytes to the peer right away, waiting for the socket if it is
/// full. Implemented by the server for its sockets (for `send_now`).
pub(crate) trait Wire {
    /// Writes all of `data`, blocking (bounded) until the socket takes it.
    fn write_all_now(&self, data: &[u8]) -> io::Result<()>;
}

/// The sending side, which the handler's [`WebSocket`] handle works on.
pub(crate) struct Core {
    /// Frames to send, while there are any: from the thread's spare, and
    /// given back once written (boxed: an idle connection holds a null
    /// pointer instead of an empty buffer and its position).
    out: Option<Box<Out>>,
    /// The handler and limits, shared with the route's other connections.
    route: Rc<Route>,
    /// A close was sent because the peer read too slowly.
    pub(crate) overflowed: bool,
    /// Our close frame is queued: nothing may follow it.
    close_sent: bool,
    // The session's own flags, kept here rather than in `Session`: they
    // fill the room the two above leave before the struct's end, where in
    // the session they took eight bytes more and put it in a larger size
    // class of the allocator (320 bytes, not 336, for every WebSocket).
    /// The close handshake is over (or the connection failed): close TCP
    /// once the output is sent.
    finished: bool,
    /// A ping was sent and its pong has not come.
    awaiting_pong: bool,
    /// [`Session::begins_to_end`] said so already.
    end_noted: bool,
    closed_event_sent: bool,
    /// A turn's limit left whole frames in the session's `incoming`.
    more_input: bool,
}

/// What the connections of one route share: kept once, not per
/// connection.
struct Route {
    handler: WsHandler,
    /// The largest message (and frame) accepted.
    max_message: usize,
    /// See [`WsConfig::max_outbuf`].
    max_outbuf: usize,
    timing: Timing,
}

/// The route's timers (its [`WsConfig`]'s), for the connection's loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    /// See [`WsConfig::ping_interval`].
    pub(crate) ping_interval: Option<std::time::Duration>,
    /// See [`WsConfig::pong_timeout`].
    pub(crate) pong_timeout: std::time::Duration,
    /// See [`WsConfig::message_timeout`].
    pub(crate) message_timeout: std::time::Duration,
}

impl Timing {
    fn of(config: &WsConfig) -> Self {
        Timing {
            ping_interval: config.ping_interval,
            pong_timeout: config.pong_timeout,
            message_timeout: config.message_timeout,
        }
    }
}

thread_local! {
    /// The route the last connection was opened on: the next one on it
    /// shares it (a weak reference: it lives as long as its connections).
    static LAST_ROUTE: std::cell::RefCell<std::rc::Weak<Route>> =
        const { std::cell::RefCell::new(std::rc::Weak::new()) };
}

impl Route {
    /// The shared route for `handler` with these limits.
    fn shared(handler: WsHandler, max_message: usize, config: &WsConfig) -> Rc<Route> {
        let max_outbuf = config.max_outbuf;
        let timing = Timing::of(config);
        LAST_ROUTE.with(|last| {
            let same = last.borrow().upgrade().filter(|r| {
                Rc::ptr_eq(&r.handler, &handler)
                    && r.max_message == max_message
                    && r.max_outbuf == max_outbuf
                    && r.timing == timing
            });
            same.unwrap_or_else(|| {
                let route = Rc::new(Route {
                    handler,
                    max_message,
                    max_outbuf,
                    timing,
                });
                *last.borrow_mut() = Rc::downgrade(&route);
                route
            })
        })
    }
}

/// Output waiting for the socket.
#[derive(Default)]
struct Out {
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    sent: usize,
}

impl Core {
    /// The route's timers.
    pub(crate) fn timing(&self) -> Timing {
        self.route.timing
    }

    /// Queued, unsent output.
    pub(crate) fn unsent(&self) -> &[u8] {
        match self.out.as_deref() {
            Some(o) => &o.buf[o.sent..],
            None => &[],
        }
    }

    /// How many bytes are queued, unsent.
    pub(crate) fn backlog(&self) -> usize {
        self.unsent().len()
    }

    /// Queues a message (or a ping or pong) unless the close frame is
    /// queued, or the peer is too far behind, in which case the connection
    /// is closed with 1008 instead (memory stays bounded by the limit plus
    /// one message).
    pub(crate) fn queue(&mut self, opcode: u8, payload: &[u8]) {
        if self.close_sent {
            return;
        }
        if self.backlog() > self.route.max_outbuf {
            self.overflowed = true;
            log::warn!(
                "websocket peer reads too slowly ({} bytes queued); closing",
                self.backlog()
            );
            self.close(code::POLICY, "too slow");
            return;
        }
        frame::write_frame(self.out(), opcode, payload);
    }

    /// Queues the close frame (once).
    /// Whether a close frame went out (or is queued) already.
    pub(crate) fn close_sent(&self) -> bool {
        self.close_sent
    }

    pub(crate) fn close(&mut self, code: u16, reason: &str) {
        if !self.close_sent {
            self.close_sent = true;
            frame::write_close(self.out(), code, reason);
        }
    }

    /// The output buffer, borrowed from the spare if the connection held
    /// none.
    fn out(&mut self) -> &mut Vec<u8> {
        &mut self.out.get_or_insert_with(take_out).buf
    }

    /// Marks the first `n` unsent bytes as written; reclaims the buffer
    /// once everything is out, and the written part once it is most of
    /// the buffer (a peer that keeps reading while messages keep coming
    /// may never leave it empty, and the buffer would grow without bound).
    pub(crate) fn advance(&mut self, n: usize) {
        let Some(o) = self.out.as_deref_mut() else {
            return;
        };
        o.sent += n;
        if o.sent == o.buf.len() {
            // All sent: the buffer goes back to the thread's spare, so an
            // idle connection holds none.
            if let Some(o) = self.out.take() {
                give_out(o);
            }
        } else if o.sent >= 64 * 1024 && o.sent * 2 >= o.buf.len() {
            o.buf.drain(..o.sent);
            o.sent = 0;
        }
    }
}

/// A message arriving in fragments, gathered until its last one.
struct Partial {
    text: bool,
    data: Vec<u8>,
    /// Bytes of `data` known to be whole, valid UTF-8 (text only).
    checked: usize,
}

/// What a connection holds of frames and messages not handled yet.
#[derive(Default)]
struct Incoming {
    /// Received bytes not handled yet: the start of a frame whose rest has
    /// not arrived, or frames left by a turn's limit (a buffer from the
    /// thread's spare).
    bytes: Vec<u8>,
    /// The fragmented message being received.
    message: Option<Partial>,
    /// When the message being received began to arrive (a frame not whole
    /// yet, or a fragmented message), for `WsConfig::message_timeout`.
    /// Kept here, not in the session, so that an idle connection (which
    /// holds no `Incoming`) does not pay for it.
    started: Option<std::time::Instant>,
}

/// A WebSocket connection's state.
pub(crate) struct Session {
    pub(crate) core: Core,
    request: Request,
    pub(crate) topics: super::Topics,
    /// Subscriptions changed by the handler since the loop last looked.
    pub(crate) topic_changes: super::TopicChanges,
    /// Frames and messages in progress; boxed, and only while there are
    /// any, so an idle connection holds one null pointer for them.
    incoming: Option<Box<Incoming>>,
}

impl Session {
    pub(crate) fn new(
        request: Request,
        handler: WsHandler,
        config: &WsConfig,
        max_body: usize,
        leftover: Vec<u8>,
    ) -> Self {
        Session {
            core: Core {
                out: None,
                route: Route::shared(handler, config.max_message.unwrap_or(max_body), config),
                overflowed: false,
                close_sent: false,
                finished: false,
                awaiting_pong: false,
                end_noted: false,
                closed_event_sent: false,
                more_input: false,
            },
            request,
            topics: super::Topics::new(),
            topic_changes: super::TopicChanges::default(),
            incoming: (!leftover.is_empty()).then(|| {
                Box::new(Incoming {
                    bytes: leftover,
                    message: None,
                    started: None,
                })
            }),
        }
    }

    /// The close handshake is over (or the connection failed): close TCP
    /// once the output is sent.
    #[inline]
    pub(crate) fn finished(&self) -> bool {
        self.core.finished
    }

    /// A ping was sent and its pong has not come.
    #[inline]
    pub(crate) fn awaiting_pong(&self) -> bool {
        self.core.awaiting_pong
    }

    /// After input was fed: notes when the message now being received
    /// began (`now`, if it began since the last look), or that none is.
    /// The deadline counts from a message's first bytes and arriving ones
    /// do not extend it (like `Limits::body_timeout`), so a frame trickled
    /// a byte at a time cannot hold its buffer for ever.
    pub(crate) fn time_message(&mut self, now: std::time::Instant) {
        if let Some(i) = self.incoming.as_deref_mut() {
            let receiving = !i.bytes.is_empty() || i.message.is_some();
            if !receiving {
                i.started = None;
            } else if i.started.is_none() {
                i.started = Some(now);
            }
        }
    }

    /// When the message being received began to arrive, if one is.
    #[inline]
    pub(crate) fn message_started(&self) -> Option<std::time::Instant> {
        self.incoming.as_deref().and_then(|i| i.started)
    }

    /// A whole data message was handled: the next one's deadline counts
    /// from its own first bytes.
    #[inline]
    fn message_ended(&mut self) {
        if let Some(i) = self.incoming.as_deref_mut() {
            i.started = None;
        }
    }

    /// The peer took longer than `WsConfig::message_timeout` over one
    /// message: closed with 1008, what it sent of the message dropped.
    pub(crate) fn message_too_slow(&mut self, wire: &dyn Wire) {
        if let Some(i) = self.incoming.as_deref_mut() {
            i.bytes.clear();
            i.started = None;
        }
        self.fail(
            Violation {
                code: code::POLICY,
                reason: "message too slow",
            },
            wire,
        );
        self.rest();
    }

    fn call(&mut self, event: WsEvent, wire: &dyn Wire) {
        // Each call is progress for the watchdog: many short calls in one
        // loop turn (messages on many connections) are not a stuck worker.
        if let Some(e) = crate::server::scoreboard::mine() {
            e.progress();
        }
        let route = Rc::clone(&self.core.route);
        let handler = &route.handler;
        let mut ws = WebSocket {
            core: &mut self.core,
            request: &mut self.request,
            topics: &mut self.topics,
            changes: &mut self.topic_changes,
            wire,
        };
        if handler::catch_in(&handler::WS_HANDLER, || handler(&mut ws, event)).is_none() {
            // Logged by the panic hook; the peer learns of it as 1011.
            self.core.close(code::ERROR, "internal error");
        }
    }

    /// Calls the handler with `Open`; then processes frames that arrived
    /// with the handshake.
    pub(crate) fn open(&mut self, wire: &dyn Wire) {
        self.call(WsEvent::Open, wire);
        self.feed(&[], wire);
    }

    /// Takes bytes received from the peer, answering control frames and
    /// calling the handler once per complete message.
    pub(crate) fn feed(&mut self, data: &[u8], wire: &dyn Wire) {
        if !data.is_empty() {
            self.keep(data);
        }
        self.feed_some(&mut [], wire, u32::MAX);
    }

    /// Takes bytes read from the socket, handling them where they are
    /// (they are unmasked in place), at most `limit` frames: the rest is
    /// kept ([`has_input`](Self::has_input)) for the next call. Returns
    /// how many frames were handled.
    pub(crate) fn feed_some(&mut self, data: &mut [u8], wire: &dyn Wire, limit: u32) -> u32 {
        let held = self
            .incoming
            .as_deref()
            .is_some_and(|i| !i.bytes.is_empty());
        let (done, left_over) = if !held {
            // The common case: whole frames straight from the read buffer.
            let (used, done) = self.frames(data, wire, limit);
            if !self.core.finished && used < data.len() {
                self.keep(&data[used..]);
            }
            (done, used < data.len())
        } else {
            // A frame began in an earlier read (or a limit left frames).
            let mut input = std::mem::take(&mut self.incoming().bytes);
            input.extend_from_slice(data);
            let (used, done) = self.frames(&mut input, wire, limit);
            input.drain(..used);
            let left_over = !input.is_empty();
            self.incoming().bytes = input;
            (done, left_over)
        };
        if self.core.finished {
            if let Some(i) = self.incoming.as_deref_mut() {
                i.bytes.clear();
            }
        }
        self.core.more_input = done == limit && left_over && !self.core.finished;
        self.rest();
        done
    }

    /// Keeps received bytes for later, in a buffer from the spare.
    fn keep(&mut self, data: &[u8]) {
        let i = self.incoming();
        if i.bytes.capacity() == 0 {
            i.bytes = take_buffer();
        }
        i.bytes.extend_from_slice(data);
    }

    fn incoming(&mut self) -> &mut Incoming {
        self.incoming.get_or_insert_with(Box::default)
    }

    /// The fragmented message being received, if any.
    fn message(&self) -> Option<&Partial> {
        self.incoming.as_deref()?.message.as_ref()
    }

    /// Forgets the fragmented message being received, if any.
    fn drop_message(&mut self) {
        if let Some(i) = self.incoming.as_deref_mut() {
            i.message = None;
        }
    }

    /// Handles the whole frames at the start of `buf`, at most `limit`:
    /// returns the bytes they took and how many there were.
    fn frames(&mut self, buf: &mut [u8], wire: &dyn Wire, limit: u32) -> (usize, u32) {
        let mut pos = 0;
        let mut done = 0;
        while !self.core.finished && done < limit {
            let header = match frame::parse_header(&buf[pos..], self.core.route.max_message) {
                Ok(Some(header)) => header,
                Ok(None) => break,
                Err(v) => {
                    self.fail(v, wire);
                    break;
                }
            };
            // What the header alone says about the message: checked before
            // its payload is waited for.
            if let Err(v) = self.fits(&header) {
                self.fail(v, wire);
                break;
            }
            let start = pos + header.size;
            if buf.len() - start < header.len {
                break;
            }
            let payload = &mut buf[start..start + header.len];
            frame::unmask(payload, header.mask);
            pos = start + header.len;
            done += 1;
            if let Err(v) = self.frame(header.fin, header.opcode, payload, wire) {
                self.fail(v, wire);
            }
        }
        (pos, done)
    }

    /// Whether a data frame fits the message state: a continuation needs
    /// an open message, a new message none, and the whole stays within
    /// the limit.
    fn fits(&self, header: &frame::Header) -> Result<(), Violation> {
        let open = self.message();
        match (header.opcode, open) {
            (op::CONTINUATION, None) => Err(Violation {
                code: code::PROTOCOL,
                reason: "continuation without a message",
            }),
            (op::TEXT | op::BINARY, Some(_)) => Err(Violation {
                code: code::PROTOCOL,
                reason: "new message inside a fragmented one",
            }),
            (op::CONTINUATION, Some(m))
                if header.len > self.core.route.max_message.saturating_sub(m.data.len()) =>
            {
                Err(Violation {
                    code: code::TOO_BIG,
                    reason: "message too big",
                })
            }
            _ => Ok(()),
        }
    }

    /// Handles one whole, unmasked frame.
    fn frame(
        &mut self,
        fin: bool,
        opcode: u8,
        payload: &[u8],
        wire: &dyn Wire,
    ) -> Result<(), Violation> {
        match opcode {
            op::TEXT if fin => {
                let text = std::str::from_utf8(payload).map_err(|_| frame::BAD_UTF8)?;
                self.message_ended();
                self.call(WsEvent::Text(text.to_owned()), wire);
            }
            op::BINARY if fin => {
                self.message_ended();
                self.call(WsEvent::Binary(Bytes::copy_from_slice(payload)), wire);
            }
            op::TEXT | op::BINARY => {
                let mut m = Partial {
                    text: opcode == op::TEXT,
                    data: payload.to_vec(),
                    checked: 0,
                };
                if m.text {
                    frame::check_utf8(&m.data, &mut m.checked, false)?;
                }
                self.incoming().message = Some(m);
            }
            op::CONTINUATION => {
                let Some(m) = self
                    .incoming
                    .as_deref_mut()
                    .and_then(|i| i.message.as_mut())
                else {
                    return Ok(()); // refused by `fits`
                };
                m.data.extend_from_slice(payload);
                if m.text {
                    frame::check_utf8(&m.data, &mut m.checked, fin)?;
                }
                if fin {
                    let Some(m) = self.incoming.as_deref_mut().and_then(|i| i.message.take())
                    else {
                        return Ok(());
                    };
                    let event = if m.text {
                        WsEvent::Text(String::from_utf8(m.data).map_err(|_| frame::BAD_UTF8)?)
                    } else {
                        WsEvent::Binary(Bytes::from(m.data))
                    };
                    self.message_ended();
                    self.call(event, wire);
                }
            }
            op::PING => {
                self.core.awaiting_pong = false;
                self.core.queue(op::PONG, payload);
            }
            op::PONG => self.core.awaiting_pong = false,
            _ => {
                // op::CLOSE (`parse_header` lets no other opcode through).
                let (code, reason) = frame::parse_close(payload)?;
                // Answer with the peer's code and reason (RFC 6455 §5.5.1:
                // "typically echoes the status code it received"; the
                // reason too, as tungstenite did), unless we began the
                // close ourselves.
                if code == code::NONE {
                    if !self.core.close_sent {
                        self.core.close_sent = true;
                        frame::write_frame(self.core.out(), op::CLOSE, &[]);
                    }
                } else {
                    self.core.close(code, reason);
                }
                self.core.finished = true;
                self.drop_message();
                self.closed(code, reason.to_string(), wire);
            }
        }
        Ok(())
    }

    /// Fails the connection: our close frame with the violation's code,
    /// the handler's `Close` event with it, nothing read after.
    fn fail(&mut self, v: Violation, wire: &dyn Wire) {
        log::debug!("websocket: {}; closing with {}", v.reason, v.code);
        self.core.close(v.code, v.reason);
        self.core.finished = true;
        self.drop_message();
        self.closed(v.code, v.reason.to_string(), wire);
    }

    /// Gives the input buffer back to the thread's spare once it holds
    /// nothing and no message is open (the output buffer goes back once
    /// written, see [`Core::advance`]): an idle WebSocket then holds only
    /// this struct, its request and its topics.
    pub(crate) fn rest(&mut self) {
        let idle = self
            .incoming
            .as_deref()
            .is_some_and(|i| i.bytes.is_empty() && i.message.is_none());
        if idle {
            if let Some(i) = self.incoming.take() {
                give_back(i.bytes);
            }
        }
    }

    /// Output queued for the socket and not yet written.
    pub(crate) fn unsent(&self) -> &[u8] {
        self.core.unsent()
    }

    /// Marks the first `n` bytes of [`unsent`](Self::unsent) as written.
    pub(crate) fn written(&mut self, n: usize) {
        self.core.advance(n);
    }

    /// Whether the connection is at rest (no buffer held).
    #[cfg(test)]
    pub(crate) fn at_rest(&self) -> bool {
        self.incoming.is_none() && self.core.out.is_none()
    }

    /// Whether the peer read too slowly and is being closed (1008).
    #[cfg(test)]
    pub(crate) fn overflowed(&self) -> bool {
        self.core.overflowed
    }

    /// Whether the session is ending: our close frame is queued (the
    /// handler closed it, a drain sent 1001, the peer read too slowly and
    /// gets 1008) or the close
    /// handshake is over ([`finished`](Self::finished)). Its last output,
    /// and the peer's close, then have a fixed time.
    pub(crate) fn closing(&self) -> bool {
        self.core.close_sent || self.core.finished
    }

    /// Whether the session began to end ([`closing`](Self::closing))
    /// since this was last asked. True once.
    pub(crate) fn begins_to_end(&mut self) -> bool {
        if self.core.end_noted || !self.closing() {
            return false;
        }
        self.core.end_noted = true;
        true
    }

    /// Whether received frames wait to be processed (a call to
    /// [`feed_some`](Self::feed_some) stopped at its limit).
    pub(crate) fn has_input(&self) -> bool {
        self.core.more_input
    }

    /// Tells the handler the connection is over (once).
    pub(crate) fn closed(&mut self, code: u16, reason: String, wire: &dyn Wire) {
        if !self.core.closed_event_sent {
            self.core.closed_event_sent = true;
            self.call(WsEvent::Close { code, reason }, wire);
        }
    }

    /// Sends a ping to check the peer is alive.
    pub(crate) fn ping(&mut self) {
        self.core.awaiting_pong = true;
        self.core.queue(op::PING, b"tine");
    }

    /// Starts the close handshake with 1001 (server going away).
    pub(crate) fn go_away(&mut self) {
        self.core.close(code::AWAY, "server shutting down");
    }

    /// Delivers a published message.
    pub(crate) fn deliver(&mut self, msg: Message) {
        match msg {
            Message::Text(text) => self.core.queue(op::TEXT, text.as_bytes()),
            Message::Binary(data) => self.core.queue(op::BINARY, &data),
            Message::Ping(data) => self.core.queue(op::PING, &data),
            Message::Pong(data) => self.core.queue(op::PONG, &data),
            Message::Close(close) => match close {
                Some(c) => self.core.close(u16::from(c.code), &c.reason),
                None => self.core.close(code::NORMAL, ""),
            },
            Message::Frame(_) => {}
        }
    }
}

thread_local! {
    /// Buffers left by connections that came to rest, for the next one
    /// that needs them: a worker is one thread, and an echo then costs no
    /// allocation for either.
    static SPARE: std::cell::RefCell<Spare> = const {
        std::cell::RefCell::new(Spare {
            input: Vec::new(),
            out: None,
        })
    };
}

/// What connections at rest left behind.
struct Spare {
    input: Vec<u8>,
    out: Option<Box<Out>>,
}

/// Buffers larger than this are freed rather than kept spare.
const SPARE_BUFFER: usize = 64 * 1024;

/// Keeps an emptied input buffer as the spare, if it is the larger and
/// not too large, for the next connection.
fn give_back(mut buf: Vec<u8>) {
    buf.clear();
    if buf.capacity() > SPARE_BUFFER || buf.capacity() == 0 {
        return;
    }
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        if s.input.capacity() < buf.capacity() {
            s.input = buf;
        }
    });
}

/// The spare input buffer, or an empty one.
fn take_buffer() -> Vec<u8> {
    SPARE.with(|s| std::mem::take(&mut s.borrow_mut().input))
}

/// Keeps a written-out output as the spare (its buffer too, unless too
/// large), for the next connection with something to send.
fn give_out(mut out: Box<Out>) {
    out.sent = 0;
    out.buf.clear();
    if out.buf.capacity() > SPARE_BUFFER {
        out.buf = Vec::new();
    }
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        let keep = s
            .out
            .as_deref()
            .is_none_or(|spare| spare.buf.capacity() < out.buf.capacity());
        if keep {
            s.out = Some(out);
        }
    });
}

/// The spare output, or a new one.
fn take_out() -> Box<Out> {
    SPARE
        .with(|s| s.borrow_mut().out.take())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::WsEvent;
    use std::cell::RefCell;

    struct NoWire;
    impl Wire for NoWire {
        fn write_all_now(&self, _: &[u8]) -> io::Result<()> {
            Ok(())
        }
    }

    /// A client frame: FIN as given, opcode, payload masked with `mask`.
    fn masked(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        crate::ws::frame::tests::client((u8::from(fin) << 7) | opcode, payload, mask)
    }

    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        masked(fin, opcode, payload, [1, 2, 3, 4])
    }

    /// A session whose handler echoes and records every event.
    fn session_with(max_message: usize) -> (Session, Rc<RefCell<Vec<WsEvent>>>) {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let log = Rc::clone(&seen);
        let handler: WsHandler = Rc::new(move |ws: &mut crate::WebSocket<'_>, event| {
            log.borrow_mut().push(event.clone());
            match event {
                WsEvent::Text(t) => ws.send_text(t),
                WsEvent::Binary(b) => ws.send_binary(b),
                _ => {}
            }
        });
        let req = Request::builder(http::Method::GET, "/ws").finish();
        let config = WsConfig::default().max_message(max_message);
        let mut session = Session::new(req, handler, &config, 1 << 20, Vec::new());
        session.open(&NoWire);
        (session, seen)
    }

    fn echo_session() -> Session {
        session_with(1 << 20).0
    }

    /// Writes out what the session queued, as the loop does.
    fn sent(session: &mut Session) -> Vec<u8> {
        let out = session.unsent().to_vec();
        session.written(out.len());
        session.rest();
        out
    }

    /// The close code of the first close frame in `out` (server frames).
    fn close_code(mut out: &[u8]) -> Option<u16> {
        while out.len() >= 2 {
            let (head, len) = match out[1] {
                126 => (4, usize::from(u16::from_be_bytes([out[2], out[3]]))),
                127 => (
                    10,
                    usize::try_from(u64::from_be_bytes(out[2..10].try_into().ok()?)).ok()?,
                ),
                n => (2, usize::from(n)),
            };
            if out[0] & 15 == 8 {
                return (len >= 2).then(|| u16::from_be_bytes([out[head], out[head + 1]]));
            }
            out = out.get(head + len..)?;
        }
        None
    }

    /// Feeds `bytes` to a fresh session and returns the close code it
    /// answered with and whether it finished.
    fn verdict(bytes: &[u8]) -> (Option<u16>, bool) {
        let (mut s, _) = session_with(1 << 20);
        s.feed(bytes, &NoWire);
        (close_code(&sent(&mut s)), s.finished())
    }

    #[test]
    fn an_idle_session_holds_no_buffers() {
        let mut s = echo_session();
        assert!(s.at_rest(), "after the handshake");
        // Half a frame: the session keeps it.
        let msg = frame(true, 1, b"hello");
        s.feed(&msg[..4], &NoWire);
        assert!(!s.at_rest());
        s.feed(&msg[4..], &NoWire);
        assert_eq!(sent(&mut s), b"\x81\x05hello");
        assert!(s.at_rest(), "after a whole message and its echo");
        // A fragmented message is gathered.
        s.feed(&frame(false, 1, b"one "), &NoWire);
        assert!(!s.at_rest());
        // A ping between fragments is answered; still mid-message.
        s.feed(&frame(true, 9, b"p"), &NoWire);
        assert_eq!(sent(&mut s), b"\x8a\x01p");
        assert!(!s.at_rest());
        s.feed(&frame(true, 0, b"two"), &NoWire);
        assert_eq!(sent(&mut s), b"\x81\x07one two");
        assert!(s.at_rest());
        // A message to send (a publish) borrows the output buffer.
        s.deliver(Message::text("news"));
        assert!(!s.at_rest());
        assert_eq!(sent(&mut s), b"\x81\x04news");
        assert!(s.at_rest());
        // A long frame (16-bit length) arriving in pieces.
        let long = frame(true, 2, &[7; 300]);
        for piece in long.chunks(7) {
            s.feed(piece, &NoWire);
        }
        assert_eq!(sent(&mut s).len(), 4 + 300);
        assert!(s.at_rest());
    }

    #[test]
    fn frames_are_read_in_place_from_the_read_buffer() {
        let (mut s, seen) = session_with(1 << 20);
        let mut read = frame(true, 1, b"abc");
        read.extend(frame(true, 2, &[1, 2, 3, 4, 5, 6, 7, 8, 9]));
        read.extend(&frame(true, 1, b"cut")[..5]);
        assert_eq!(s.feed_some(&mut read, &NoWire, 64), 2);
        assert_eq!(&read[6..9], b"abc", "unmasked where it was read");
        assert_eq!(
            seen.borrow()[1..],
            [
                WsEvent::Text("abc".into()),
                WsEvent::Binary(Bytes::from_static(&[1, 2, 3, 4, 5, 6, 7, 8, 9]))
            ]
        );
        assert!(!s.at_rest(), "the cut frame is kept");
        let mut rest = frame(true, 1, b"cut")[5..].to_vec();
        assert_eq!(s.feed_some(&mut rest, &NoWire, 64), 1);
        assert_eq!(seen.borrow().last(), Some(&WsEvent::Text("cut".into())));
    }

    #[test]
    fn a_turn_limit_keeps_the_rest_for_later() {
        let (mut s, seen) = session_with(1 << 20);
        let mut read: Vec<u8> = (0..5)
            .flat_map(|i| frame(true, 1, format!("m{i}").as_bytes()))
            .collect();
        assert_eq!(s.feed_some(&mut read, &NoWire, 2), 2);
        assert!(s.has_input());
        assert_eq!(s.feed_some(&mut [], &NoWire, 2), 2);
        assert!(s.has_input());
        assert_eq!(s.feed_some(&mut [], &NoWire, 2), 1);
        assert!(!s.has_input());
        assert_eq!(seen.borrow().len(), 6);
    }

    #[test]
    fn masks_across_reads_byte_by_byte() {
        let (mut s, seen) = session_with(1 << 20);
        let text = "masked across reads: ünïcödé €";
        let f = masked(true, 1, text.as_bytes(), [0x9a, 0x01, 0xff, 0x37]);
        for b in &f {
            s.feed_some(&mut [*b], &NoWire, 64);
        }
        assert_eq!(seen.borrow().last(), Some(&WsEvent::Text(text.into())));
        let mut long = vec![0u8; 70_000];
        long.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
        let f = masked(true, 2, &long, [3, 5, 7, 11]);
        assert_eq!(f[1], 0x80 | 127, "a 64-bit length");
        for piece in f.chunks(4099) {
            s.feed_some(&mut piece.to_vec(), &NoWire, 64);
        }
        assert_eq!(seen.borrow().last(), Some(&WsEvent::Binary(long.into())));
    }

    #[test]
    fn fragmented_text_with_a_split_character() {
        let (mut s, seen) = session_with(1 << 20);
        // "κόσμε" cut inside its second character, then a ping.
        let text = "κόσμε".as_bytes();
        s.feed(&frame(false, 1, &text[..3]), &NoWire);
        s.feed(&frame(true, 9, b"mid"), &NoWire);
        s.feed(&frame(false, 0, &text[3..7]), &NoWire);
        s.feed(&frame(true, 0, &text[7..]), &NoWire);
        assert_eq!(seen.borrow().last(), Some(&WsEvent::Text("κόσμε".into())));
        let out = sent(&mut s);
        assert!(out.starts_with(b"\x8a\x03mid"), "ping answered first");
        assert!(!s.finished());
    }

    #[test]
    fn protocol_violations_close_with_their_codes() {
        // Unmasked, reserved bits, reserved opcodes.
        assert_eq!(verdict(b"\x81\x02hi"), (Some(1002), true));
        let mut rsv = frame(true, 1, b"x");
        rsv[0] |= 0x40;
        assert_eq!(verdict(&rsv), (Some(1002), true));
        assert_eq!(verdict(&frame(true, 3, b"x")), (Some(1002), true));
        assert_eq!(verdict(&frame(true, 11, b"x")), (Some(1002), true));
        // 125-byte ping answered, 126-byte ping refused.
        let (mut s, _) = session_with(1 << 20);
        s.feed(&frame(true, 9, &[b'p'; 125]), &NoWire);
        let out = sent(&mut s);
        assert_eq!(&out[..2], b"\x8a\x7d");
        assert!(!s.finished());
        assert_eq!(verdict(&frame(true, 9, &[b'p'; 126])), (Some(1002), true));
        // Fragmented control frame.
        assert_eq!(verdict(&frame(false, 9, b"p")), (Some(1002), true));
        // Continuation with nothing to continue; new message mid-message.
        assert_eq!(verdict(&frame(true, 0, b"x")), (Some(1002), true));
        let mut two = frame(false, 1, b"a");
        two.extend(frame(true, 1, b"b"));
        assert_eq!(verdict(&two), (Some(1002), true));
        // Invalid UTF-8: whole, in a fragment (before the message ends),
        // cut at the end.
        assert_eq!(
            verdict(&frame(true, 1, b"\xce\xba\xff")),
            (Some(1007), true)
        );
        assert_eq!(
            verdict(&frame(false, 1, b"ok\xed\xa0\x80")),
            (Some(1007), true)
        );
        let mut cut = frame(false, 1, b"\xce");
        cut.extend(frame(true, 0, b""));
        assert_eq!(verdict(&cut), (Some(1007), true));
        // Bad close code, one-byte close, bad reason.
        assert_eq!(
            verdict(&frame(true, 8, &999u16.to_be_bytes())),
            (Some(1002), true)
        );
        assert_eq!(
            verdict(&frame(true, 8, &1005u16.to_be_bytes())),
            (Some(1002), true)
        );
        assert_eq!(verdict(&frame(true, 8, b"\x03")), (Some(1002), true));
        assert_eq!(
            verdict(&frame(true, 8, b"\x03\xe8\xc3")),
            (Some(1007), true)
        );
        // Nothing after the failure is read.
        let mut after = frame(true, 3, b"x");
        after.extend(frame(true, 1, b"never"));
        let (mut s, seen) = session_with(1 << 20);
        s.feed(&after, &NoWire);
        assert!(!seen
            .borrow()
            .iter()
            .any(|e| *e == WsEvent::Text("never".into())));
    }

    #[test]
    fn size_limits_apply_to_frames_and_whole_messages() {
        let (mut s, seen) = session_with(10);
        s.feed(&frame(true, 2, &[0; 10]), &NoWire);
        assert_eq!(sent(&mut s).len(), 12);
        // 11 bytes: refused from its header, before the payload.
        s.feed(&frame(true, 2, &[0; 11])[..4], &NoWire);
        assert!(s.finished());
        assert_eq!(
            seen.borrow().last(),
            Some(&WsEvent::Close {
                code: 1009,
                reason: "message too big".into()
            })
        );
        // Fragments adding up past the limit.
        let (mut s, _) = session_with(10);
        s.feed(&frame(false, 1, b"123456"), &NoWire);
        s.feed(&frame(true, 0, b"78901"), &NoWire);
        assert_eq!(close_code(&sent(&mut s)), Some(1009));
        assert!(s.finished());
    }

    #[test]
    fn close_handshake() {
        // The peer closes: its code and reason come back, the handler
        // sees them.
        let (mut s, seen) = session_with(1 << 20);
        s.feed(&frame(true, 8, b"\x0f\xa0done"), &NoWire);
        assert_eq!(sent(&mut s), b"\x88\x06\x0f\xa0done");
        assert!(s.finished());
        assert_eq!(
            seen.borrow().last(),
            Some(&WsEvent::Close {
                code: 4000,
                reason: "done".into()
            })
        );
        // An empty close is answered with an empty close.
        let (mut s, seen) = session_with(1 << 20);
        s.feed(&frame(true, 8, b""), &NoWire);
        assert_eq!(sent(&mut s), b"\x88\x00");
        assert_eq!(
            seen.borrow().last(),
            Some(&WsEvent::Close {
                code: 1005,
                reason: String::new()
            })
        );
        // We close first: nothing more goes out; the peer's answer ends it.
        let (mut s, seen) = session_with(1 << 20);
        s.go_away();
        s.deliver(Message::text("late"));
        let out = sent(&mut s);
        assert_eq!(&out[..4], b"\x88\x16\x03\xe9");
        assert_eq!(out.len(), 2 + 2 + "server shutting down".len());
        assert!(!s.finished());
        s.feed(&frame(true, 8, b"\x03\xe9"), &NoWire);
        assert!(s.finished());
        assert!(sent(&mut s).is_empty(), "no second close");
        assert_eq!(
            seen.borrow().last(),
            Some(&WsEvent::Close {
                code: 1001,
                reason: String::new()
            })
        );
    }

    #[test]
    fn pings_and_pongs() {
        let mut s = echo_session();
        s.ping();
        assert!(s.awaiting_pong());
        assert_eq!(sent(&mut s), b"\x89\x04tine");
        s.feed(&frame(true, 10, b"tine"), &NoWire);
        assert!(!s.awaiting_pong());
        s.feed(&frame(true, 9, b""), &NoWire);
        assert_eq!(sent(&mut s), b"\x8a\x00");
    }
}
