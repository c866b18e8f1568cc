//! One WebSocket connection after the handshake: RFC 6455 framing by
//! tungstenite's `WebSocketContext`, driven on buffers this module owns.
//!
//! The context takes a stream on each call; here that stream is [`WsIo`],
//! a pair of byte buffers. The event loop moves bytes between the socket
//! and these buffers, so protocol code never touches a socket and never
//! blocks. tungstenite checks masking, reserved bits, opcodes, UTF-8,
//! fragmentation (control frames may interleave) and sizes (before buffering
//! a payload); this module maps its errors to close codes and calls the
//! handler once per whole message.

use std::io::{self, Read, Write};
use std::rc::Rc;

use bytes::Bytes;
use tungstenite::error::{CapacityError, Error as WsError};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::Message;

use super::{WebSocket, WsConfig, WsEvent, WsHandler};
use crate::handler;
use crate::http::Request;

/// Where the loop writes to and reads from: byte buffers standing in for
/// the socket.
#[derive(Debug, Default)]
pub(crate) struct WsIo {
    input: Vec<u8>,
    in_pos: usize,
    pub(crate) output: Vec<u8>,
}

impl WsIo {
    /// Appends bytes read from the peer.
    pub(crate) fn push_input(&mut self, data: &[u8]) {
        self.input.extend_from_slice(data);
    }
}

impl Read for WsIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = &self.input[self.in_pos..];
        if available.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.in_pos += n;
        if self.in_pos == self.input.len() {
            self.input.clear();
            self.in_pos = 0;
        }
        Ok(n)
    }
}

impl Write for WsIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.output.capacity() == 0 {
            self.output = take_buffer(true);
        }
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes bytes to the peer right away, waiting for the socket if it is
/// full. Implemented by the server for its sockets (for `send_now`).
pub(crate) trait Wire {
    /// Writes all of `data`, blocking (bounded) until the socket takes it.
    fn write_all_now(&self, data: &[u8]) -> io::Result<()>;
}

/// The protocol state the handler's [`WebSocket`] handle works on.
pub(crate) struct Core {
    /// tungstenite's state, with its read buffer: `None` while the
    /// connection is at rest (see [`Session::rest`]), taken from the
    /// thread's spare or made anew when a frame arrives or goes out.
    ctx: Option<Box<WebSocketContext>>,
    /// The largest message (and frame) accepted.
    max_message: usize,
    pub(crate) io: WsIo,
    /// Bytes of `io.output` already written to the socket.
    pub(crate) sent: usize,
    pub(crate) max_outbuf: usize,
    /// A close was sent because the peer read too slowly.
    pub(crate) overflowed: bool,
}

impl Core {
    /// Queued, unsent output.
    pub(crate) fn backlog(&self) -> usize {
        self.io.output.len() - self.sent
    }

    /// Queues a message unless the peer is too far behind, in which case
    /// the connection is closed with 1008 instead (memory stays bounded by
    /// the limit plus one message).
    pub(crate) fn queue(&mut self, msg: Message) {
        if self.overflowed || !self.ctx().can_write() {
            return;
        }
        if self.backlog() > self.max_outbuf {
            self.overflowed = true;
            log::warn!(
                "websocket peer reads too slowly ({} bytes queued); closing",
                self.backlog()
            );
            self.close(CloseCode::Policy, "too slow");
            return;
        }
        let (ctx, io) = self.parts();
        if let Err(e) = ctx.write(io, msg) {
            log::debug!("websocket write: {e}");
        }
        let _ = ctx.flush(io);
    }

    pub(crate) fn close(&mut self, code: CloseCode, reason: &str) {
        let frame = CloseFrame {
            code,
            reason: reason.to_string().into(),
        };
        let (ctx, io) = self.parts();
        let _ = ctx.close(io, Some(frame));
        let _ = ctx.flush(io);
    }

    /// The protocol state, woken if the connection was at rest.
    pub(crate) fn ctx(&mut self) -> &mut WebSocketContext {
        let max_message = self.max_message;
        self.ctx.get_or_insert_with(|| spare_context(max_message))
    }

    /// The protocol state and the buffers it reads from and writes to.
    fn parts(&mut self) -> (&mut WebSocketContext, &mut WsIo) {
        self.ctx();
        let ctx = self.ctx.as_deref_mut().expect("just woken");
        (ctx, &mut self.io)
    }

    /// Marks the first `n` unsent bytes as written; reclaims the buffer
    /// once everything is out, and the written part once it is most of
    /// the buffer (a peer that keeps reading while messages keep coming
    /// may never leave it empty, and the buffer would grow without bound).
    pub(crate) fn advance(&mut self, n: usize) {
        self.sent += n;
        if self.sent == self.io.output.len() {
            // All sent: the buffer goes back to the thread's spare, so an
            // idle connection holds none.
            give_back(std::mem::take(&mut self.io.output), true);
            self.sent = 0;
        } else if self.sent >= 64 * 1024 && self.sent * 2 >= self.io.output.len() {
            self.io.output.drain(..self.sent);
            self.sent = 0;
        }
    }
}

/// A WebSocket connection's state.
pub(crate) struct Session {
    pub(crate) core: Core,
    request: Request,
    handler: WsHandler,
    pub(crate) topics: Vec<String>,
    /// Subscriptions changed by the handler since the loop last looked:
    /// `(subscribed, topic)`.
    pub(crate) topic_changes: Vec<(bool, String)>,
    /// The close handshake is over (or the connection failed): close TCP
    /// once the output is sent.
    pub(crate) finished: bool,
    pub(crate) awaiting_pong: bool,
    closed_event_sent: bool,
    more_input: bool,
    /// Where the input is, frame by frame.
    frames: FrameEdge,
}

impl Session {
    pub(crate) fn new(
        request: Request,
        handler: WsHandler,
        config: &WsConfig,
        max_body: usize,
        leftover: Vec<u8>,
    ) -> Self {
        let max_message = config.max_message.unwrap_or(max_body);
        let mut frames = FrameEdge::default();
        frames.saw(&leftover);
        let io = WsIo {
            input: leftover,
            ..WsIo::default()
        };
        Session {
            core: Core {
                ctx: None,
                max_message,
                io,
                sent: 0,
                max_outbuf: config.max_outbuf,
                overflowed: false,
            },
            request,
            handler,
            topics: Vec::new(),
            topic_changes: Vec::new(),
            finished: false,
            awaiting_pong: false,
            closed_event_sent: false,
            more_input: false,
            frames,
        }
    }

    fn call(&mut self, event: WsEvent, wire: &dyn Wire) {
        let handler = Rc::clone(&self.handler);
        let mut ws = WebSocket {
            core: &mut self.core,
            request: &mut self.request,
            topics: &mut self.topics,
            changes: &mut self.topic_changes,
            wire,
        };
        if handler::catch_in(&handler::WS_HANDLER, || handler(&mut ws, event)).is_none() {
            // Logged by the panic hook; the peer learns of it as 1011.
            self.core.close(CloseCode::Error, "internal error");
        }
    }

    /// Calls the handler with `Open`; then processes frames that arrived
    /// with the handshake.
    pub(crate) fn open(&mut self, wire: &dyn Wire) {
        self.call(WsEvent::Open, wire);
        self.feed(&[], wire);
    }

    /// Takes bytes read from the socket, answering control frames and
    /// calling the handler once per complete message.
    pub(crate) fn feed(&mut self, data: &[u8], wire: &dyn Wire) {
        self.feed_some(data, wire, u32::MAX);
    }

    /// Like [`feed`](Self::feed), but processes at most `limit` frames;
    /// the rest stays buffered ([`has_input`](Self::has_input)) for the
    /// next call. Returns how many were processed.
    pub(crate) fn feed_some(&mut self, data: &[u8], wire: &dyn Wire, limit: u32) -> u32 {
        self.frames.saw(data);
        if self.core.io.input.capacity() == 0 && !data.is_empty() {
            self.core.io.input = take_buffer(false);
        }
        self.core.io.input.extend_from_slice(data);
        let mut done = 0;
        while !self.finished && done < limit {
            done += 1;
            let (ctx, io) = self.core.parts();
            match ctx.read(io) {
                Ok(Message::Text(text)) => {
                    self.call(WsEvent::Text(text.as_str().to_string()), wire)
                }
                Ok(Message::Binary(data)) => self.call(WsEvent::Binary(data), wire),
                Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => self.awaiting_pong = false,
                Ok(Message::Close(frame)) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.as_str().to_string()))
                        .unwrap_or((1005, String::new()));
                    self.closed(code, reason, wire);
                }
                Ok(Message::Frame(_)) => {}
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    done -= 1;
                    break;
                }
                Err(WsError::ConnectionClosed) | Err(WsError::AlreadyClosed) => {
                    self.finished = true;
                }
                Err(e) => {
                    let (code, reason) = match &e {
                        WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
                            (CloseCode::Size, "message too big")
                        }
                        WsError::Capacity(_) => (CloseCode::Size, "too big"),
                        WsError::Utf8(_) => (CloseCode::Invalid, "invalid UTF-8"),
                        _ => (CloseCode::Protocol, "protocol error"),
                    };
                    log::debug!("websocket: {e}; closing with {}", u16::from(code));
                    self.core.close(code, reason);
                    self.closed(u16::from(code), reason.to_string(), wire);
                    self.finished = true;
                }
            }
        }
        let (ctx, io) = self.core.parts();
        let _ = ctx.flush(io);
        // Stopped by the limit: frames may wait in the protocol's own
        // read buffer, which cannot be inspected.
        self.more_input = done == limit && !self.finished;
        self.rest();
        done
    }

    /// Puts the connection at rest when nothing is in flight: tungstenite's
    /// state (with its read buffer, 4 KiB) goes to the thread's spare and
    /// the input buffer is dropped, so an idle WebSocket holds only this
    /// struct, its request and its topics. Safe exactly when a fresh
    /// context would behave the same: every byte received was read as
    /// whole frames, no fragmented message is open, and the connection is
    /// open both ways (tungstenite answers pings on the flush above, so no
    /// reply is pending either).
    pub(crate) fn rest(&mut self) {
        if self.more_input || self.finished || !self.frames.at_rest() {
            return;
        }
        let Some(ctx) = self.core.ctx.as_deref() else {
            return;
        };
        if !(ctx.can_read() && ctx.can_write() && self.core.io.input.is_empty()) {
            return;
        }
        if let Some(ctx) = self.core.ctx.take() {
            park_context(ctx);
        }
        give_back(std::mem::take(&mut self.core.io.input), false);
        self.core.io.in_pos = 0;
    }

    /// Output queued for the socket and not yet written.
    pub(crate) fn unsent(&self) -> &[u8] {
        &self.core.io.output[self.core.sent..]
    }

    /// Marks the first `n` bytes of [`unsent`](Self::unsent) as written.
    pub(crate) fn written(&mut self, n: usize) {
        self.core.advance(n);
    }

    /// Whether the connection is at rest (no protocol state held).
    #[cfg(test)]
    pub(crate) fn at_rest(&self) -> bool {
        self.core.ctx.is_none()
            && self.core.io.input.capacity() == 0
            && self.core.io.output.capacity() == 0
    }

    /// Whether the peer read too slowly and is being closed (1008).
    pub(crate) fn overflowed(&self) -> bool {
        self.core.overflowed
    }

    /// Whether received bytes may wait to be processed (a call to
    /// [`feed_some`](Self::feed_some) stopped at its limit).
    pub(crate) fn has_input(&self) -> bool {
        self.more_input
    }

    /// Tells the handler the connection is over (once).
    pub(crate) fn closed(&mut self, code: u16, reason: String, wire: &dyn Wire) {
        if !self.closed_event_sent {
            self.closed_event_sent = true;
            self.call(WsEvent::Close { code, reason }, wire);
        }
    }

    /// Sends a ping to check the peer is alive.
    pub(crate) fn ping(&mut self) {
        self.awaiting_pong = true;
        self.core.queue(Message::Ping(Bytes::from_static(b"tine")));
    }

    /// Starts the close handshake with 1001 (server going away).
    pub(crate) fn go_away(&mut self) {
        if self.core.ctx().can_write() {
            self.core.close(CloseCode::Away, "server shutting down");
        }
    }

    /// Delivers a published message.
    pub(crate) fn deliver(&mut self, msg: Message) {
        self.core.queue(msg);
    }
}

/// Follows frame boundaries in the bytes received (headers only: lengths,
/// FIN, opcode), to know when tungstenite holds nothing of a frame or of a
/// fragmented message, which it does not tell.
#[derive(Debug, Default)]
struct FrameEdge {
    /// Bytes of the current frame's header read so far.
    head: [u8; 14],
    head_len: u8,
    /// Payload bytes of the current frame still to come.
    payload_left: u64,
    /// A data frame without FIN began a message not yet finished.
    fragmented: bool,
}

impl FrameEdge {
    fn saw(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.head_len == 0 && self.payload_left == 0 && data.len() >= 2 {
                // A whole header at hand (the common case): read it at once.
                let (b0, b1) = (data[0], data[1]);
                let extended = match b1 & 0x7f {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                };
                let size = 2 + extended + if b1 & 0x80 != 0 { 4 } else { 0 };
                if data.len() >= size {
                    self.payload_left = match extended {
                        0 => u64::from(b1 & 0x7f),
                        2 => u64::from(u16::from_be_bytes([data[2], data[3]])),
                        _ => u64::from_be_bytes(data[2..10].try_into().unwrap_or([0xff; 8])),
                    };
                    if b0 & 0x0f < 8 {
                        self.fragmented = b0 & 0x80 == 0;
                    }
                    data = &data[size..];
                    let n = data
                        .len()
                        .min(usize::try_from(self.payload_left).unwrap_or(usize::MAX));
                    self.payload_left -= n as u64;
                    data = &data[n..];
                    continue;
                }
            }
            if self.payload_left > 0 {
                let n = data
                    .len()
                    .min(usize::try_from(self.payload_left).unwrap_or(usize::MAX));
                self.payload_left -= n as u64;
                data = &data[n..];
                continue;
            }
            self.head[usize::from(self.head_len)] = data[0];
            self.head_len += 1;
            data = &data[1..];
            if self.head_len < 2 {
                continue;
            }
            let (b0, b1) = (self.head[0], self.head[1]);
            let extended = match b1 & 0x7f {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
            if usize::from(self.head_len) < 2 + extended + mask {
                continue;
            }
            self.payload_left = match extended {
                0 => u64::from(b1 & 0x7f),
                2 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
                _ => u64::from_be_bytes(self.head[2..10].try_into().unwrap_or([0xff; 8])),
            };
            let opcode = b0 & 0x0f;
            if opcode < 8 {
                // Text, binary or continuation: FIN ends the message.
                self.fragmented = b0 & 0x80 == 0;
            }
            self.head_len = 0;
        }
    }

    /// At a frame boundary with no message open.
    fn at_rest(&self) -> bool {
        self.head_len == 0 && self.payload_left == 0 && !self.fragmented
    }
}

thread_local! {
    /// A protocol state and an output buffer left by connections that came
    /// to rest, for the next one that needs them: a worker is one thread,
    /// and an echo then costs no allocation for either.
    static SPARE: std::cell::RefCell<Spare> = const {
        std::cell::RefCell::new(Spare {
            ctx: None,
            input: Vec::new(),
            output: Vec::new(),
        })
    };
}

/// What connections at rest left behind.
struct Spare {
    ctx: Option<Box<WebSocketContext>>,
    input: Vec<u8>,
    output: Vec<u8>,
}

/// Buffers larger than this are freed rather than kept spare.
const SPARE_BUFFER: usize = 64 * 1024;

/// A protocol state for a connection that was at rest: the spare one
/// (fresh in every way that matters: see [`Session::rest`]) or a new one.
fn spare_context(max_message: usize) -> Box<WebSocketContext> {
    let spare = SPARE.with(|s| s.borrow_mut().ctx.take());
    let mut ctx = spare.unwrap_or_else(|| {
        Box::new(WebSocketContext::new(
            Role::Server,
            Some(
                WebSocketConfig::default()
                    .read_buffer_size(4096)
                    .write_buffer_size(0),
            ),
        ))
    });
    // The app's limits, whichever app's connection left it.
    ctx.set_config(|c| {
        c.max_message_size = Some(max_message);
        c.max_frame_size = Some(max_message);
    });
    ctx
}

fn park_context(ctx: Box<WebSocketContext>) {
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        if s.ctx.is_none() {
            s.ctx = Some(ctx);
        }
    });
}

/// Keeps an emptied buffer as the spare input (or output) buffer, if it
/// is the larger and not too large, for the next connection.
fn give_back(mut buf: Vec<u8>, output: bool) {
    buf.clear();
    if buf.capacity() > SPARE_BUFFER || buf.capacity() == 0 {
        return;
    }
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        let slot = if output { &mut s.output } else { &mut s.input };
        if slot.capacity() < buf.capacity() {
            *slot = buf;
        }
    });
}

/// The spare input (or output) buffer, or an empty one.
fn take_buffer(output: bool) -> Vec<u8> {
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        std::mem::take(if output { &mut s.output } else { &mut s.input })
    })
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::WsEvent;

    struct NoWire;
    impl Wire for NoWire {
        fn write_all_now(&self, _: &[u8]) -> io::Result<()> {
            Ok(())
        }
    }

    /// A client frame: FIN as given, opcode, masked payload.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut f = vec![u8::from(fin) << 7 | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    fn echo_session() -> Session {
        let handler: WsHandler = Rc::new(|ws: &mut crate::WebSocket<'_>, event| match event {
            WsEvent::Text(t) => ws.send_text(t),
            WsEvent::Binary(b) => ws.send_binary(b),
            _ => {}
        });
        let req = Request::builder(http::Method::GET, "/ws").finish();
        let mut session = Session::new(req, handler, &WsConfig::default(), 1 << 20, Vec::new());
        session.open(&NoWire);
        session
    }

    /// Writes out what the session queued, as the loop does.
    fn sent(session: &mut Session) -> Vec<u8> {
        let out = session.unsent().to_vec();
        session.written(out.len());
        session.rest();
        out
    }

    #[test]
    fn an_idle_session_holds_no_protocol_state_or_buffers() {
        let mut s = echo_session();
        assert!(s.at_rest(), "after the handshake");
        // Half a frame: tungstenite holds it, so the session must too.
        let msg = frame(true, 1, b"hello");
        s.feed(&msg[..4], &NoWire);
        assert!(!s.at_rest());
        s.feed(&msg[4..], &NoWire);
        assert_eq!(sent(&mut s), b"\x81\x05hello");
        assert!(s.at_rest(), "after a whole message and its echo");
        // A fragmented message keeps its first part in tungstenite.
        s.feed(&frame(false, 1, b"one "), &NoWire);
        assert!(!s.at_rest());
        // A ping between fragments is answered; still mid-message.
        s.feed(&frame(true, 9, b"p"), &NoWire);
        assert_eq!(sent(&mut s), b"\x8a\x01p");
        assert!(!s.at_rest());
        s.feed(&frame(true, 0, b"two"), &NoWire);
        assert_eq!(sent(&mut s), b"\x81\x07one two");
        assert!(s.at_rest());
        // Woken by a message to send (a publish), at rest once it is out.
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
    fn frame_edges() {
        let mut e = FrameEdge::default();
        assert!(e.at_rest());
        let f = frame(true, 1, &[0; 200]);
        e.saw(&f[..3]);
        assert!(!e.at_rest());
        e.saw(&f[3..]);
        assert!(e.at_rest());
        let mut two = frame(false, 2, b"ab");
        two.extend(frame(true, 10, b""));
        e.saw(&two);
        assert!(!e.at_rest(), "a message is open");
        e.saw(&frame(true, 0, b"c"));
        assert!(e.at_rest());
    }
}
