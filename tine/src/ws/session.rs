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
    pub(crate) ctx: WebSocketContext,
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
        if self.overflowed || !self.ctx.can_write() {
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
        if let Err(e) = self.ctx.write(&mut self.io, msg) {
            log::debug!("websocket write: {e}");
        }
        let _ = self.ctx.flush(&mut self.io);
    }

    pub(crate) fn close(&mut self, code: CloseCode, reason: &str) {
        let frame = CloseFrame {
            code,
            reason: reason.to_string().into(),
        };
        let _ = self.ctx.close(&mut self.io, Some(frame));
        let _ = self.ctx.flush(&mut self.io);
    }

    /// Marks the first `n` unsent bytes as written; reclaims the buffer
    /// once everything is out, and the written part once it is most of
    /// the buffer (a peer that keeps reading while messages keep coming
    /// may never leave it empty, and the buffer would grow without bound).
    pub(crate) fn advance(&mut self, n: usize) {
        self.sent += n;
        if self.sent == self.io.output.len() {
            self.io.output.clear();
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
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message));
        let ctx = WebSocketContext::new(Role::Server, Some(ws_config));
        let io = WsIo {
            input: leftover,
            ..WsIo::default()
        };
        Session {
            core: Core {
                ctx,
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
        self.core.io.input.extend_from_slice(data);
        let mut done = 0;
        while !self.finished && done < limit {
            done += 1;
            match self.core.ctx.read(&mut self.core.io) {
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
        let _ = self.core.ctx.flush(&mut self.core.io);
        // Stopped by the limit: frames may wait in the protocol's own
        // read buffer, which cannot be inspected.
        self.more_input = done == limit && !self.finished;
        done
    }

    /// Output queued for the socket and not yet written.
    pub(crate) fn unsent(&self) -> &[u8] {
        &self.core.io.output[self.core.sent..]
    }

    /// Marks the first `n` bytes of [`unsent`](Self::unsent) as written.
    pub(crate) fn written(&mut self, n: usize) {
        self.core.advance(n);
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
        if self.core.ctx.can_write() {
            self.core.close(CloseCode::Away, "server shutting down");
        }
    }

    /// Delivers a published message.
    pub(crate) fn deliver(&mut self, msg: Message) {
        self.core.queue(msg);
    }
}
