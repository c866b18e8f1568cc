//! WebSocket (RFC 6455) on the event loop: the handshake, and an
//! event-style handler API.
//!
//! A WebSocket route's handler is called once per event: [`WsEvent::Open`]
//! after the handshake, [`WsEvent::Text`] / [`WsEvent::Binary`] per whole
//! message (fragments are reassembled), and [`WsEvent::Close`] once at the
//! end. It answers through the [`WebSocket`] handle. Like HTTP handlers, it
//! runs on the worker's only thread: a handler that blocks, blocks the
//! worker (use [`WebSocket::send_text_now`] to stream from a long-running
//! handler).
//!
//! ```no_run
//! use tine::{App, WebSocket, WsEvent};
//! App::new()
//!     .ws("/ws/echo", |ws: &mut WebSocket, event: WsEvent| match event {
//!         WsEvent::Text(text) => ws.send_text(text),
//!         WsEvent::Binary(data) => ws.send_binary(data),
//!         _ => {}
//!     })
//!     .serve("127.0.0.1:8080")
//!     .unwrap();
//! ```

pub(crate) mod frame;
pub(crate) mod handshake;
pub(crate) mod session;

use std::io;
use std::rc::Rc;
use std::time::Duration;

use crate::http::{Extensions, Request};
use bytes::Bytes;
use frame::op;
use session::{Core, Wire};

/// The topics one connection is subscribed to: most hold one, kept
/// inline (no allocation for the list itself).
pub(crate) type Topics = smallvec::SmallVec<[String; 1]>;

/// Subscriptions a handler changed, `(subscribed, topic)`, until the loop
/// applies them after the callback. Boxed, and only while there are any:
/// a connection spends nearly all its life with none, and an idle
/// WebSocket should cost as little as it can. (A `Box<Vec>` is one word;
/// the `Vec` alone would be three.)
#[derive(Debug, Default)]
#[allow(clippy::box_collection)]
pub(crate) struct TopicChanges(Option<Box<Vec<(bool, String)>>>);

impl TopicChanges {
    pub(crate) fn push(&mut self, subscribed: bool, topic: String) {
        self.0.get_or_insert_default().push((subscribed, topic));
    }

    /// The changes, leaving none (and no allocation) behind.
    pub(crate) fn take(&mut self) -> Vec<(bool, String)> {
        self.0.take().map(|v| *v).unwrap_or_default()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &(bool, String)> {
        self.0.iter().flat_map(|v| v.iter())
    }

    pub(crate) fn clear(&mut self) {
        self.0 = None;
    }
}

/// A WebSocket handler.
pub(crate) type WsHandler = Rc<dyn Fn(&mut WebSocket<'_>, WsEvent)>;

/// An accepted upgrade: the route's handler, and the settings of the
/// route's group where it has its own ([`Group::ws_config`](crate::Group::ws_config)).
pub(crate) struct Upgrade {
    pub(crate) handler: WsHandler,
    pub(crate) config: Option<Rc<WsConfig>>,
}

impl Upgrade {
    /// The settings the connection runs with: its route's, else the
    /// app's.
    pub(crate) fn config<'a>(&'a self, app: &'a WsConfig) -> &'a WsConfig {
        self.config.as_deref().unwrap_or(app)
    }
}

/// What happened on a WebSocket connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// The handshake completed.
    Open,
    /// A whole text message (valid UTF-8).
    Text(String),
    /// A whole binary message.
    Binary(Bytes),
    /// The connection is over: the peer's close code and reason, `1005`
    /// when its close frame had none, `1006` when the connection dropped
    /// without one, or the code tine closed with (1002 protocol error,
    /// 1007 invalid UTF-8, 1009 too big, 1011 handler panic).
    Close {
        /// The close code.
        code: u16,
        /// The close reason (may be empty).
        reason: String,
    },
}

/// WebSocket settings, set with [`App::ws_config`](crate::App::ws_config)
/// for the app, and with [`Group::ws_config`](crate::Group::ws_config) for
/// a group's routes (a chat socket and an upload socket need different
/// limits).
///
/// Start from the defaults and change what you need; each setter documents
/// its setting and default. (The struct is `#[non_exhaustive]`: settings
/// can be added without breaking code written this way.)
///
/// ```
/// use std::time::Duration;
/// let config = tine::WsConfig::default()
///     .max_message(64 * 1024)
///     .ping_interval(Duration::from_secs(20))
///     .protocols(["chat.v2", "chat.v1"]);
/// let app = tine::App::new().ws_config(config);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WsConfig {
    /// See [`WsConfig::max_message`].
    pub(crate) max_message: Option<usize>,
    /// See [`WsConfig::max_outbuf`].
    pub(crate) max_outbuf: usize,
    /// See [`WsConfig::ping_interval`].
    pub(crate) ping_interval: Option<Duration>,
    /// See [`WsConfig::pong_timeout`].
    pub(crate) pong_timeout: Duration,
    /// See [`WsConfig::message_timeout`].
    pub(crate) message_timeout: Duration,
    /// See [`WsConfig::protocols`].
    pub(crate) protocols: Vec<String>,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_message: None,
            max_outbuf: 8 * 1024 * 1024,
            ping_interval: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(10),
            message_timeout: Duration::from_secs(60),
            protocols: Vec::new(),
        }
    }
}

impl WsConfig {
    /// Largest message (and frame) accepted, in bytes. `None` (the default)
    /// uses the app's [`Limits::max_body`](crate::Limits::max_body). Over it
    /// the connection is closed with 1009 before the payload is buffered.
    ///
    /// ```
    /// let config = tine::WsConfig::default().max_message(1 << 20);
    /// let back_to_max_body = config.max_message(None);
    /// ```
    #[must_use]
    pub fn max_message(mut self, bytes: impl Into<Option<usize>>) -> Self {
        self.max_message = bytes.into();
        self
    }

    /// Most bytes queued for a peer that reads slowly. Default 8 MiB. Past
    /// it, further messages are dropped and the connection is closed with
    /// 1008 (policy violation): a slow reader never makes the worker buffer
    /// without bound. What is queued, the close frame last, then has
    /// [`pong_timeout`](Self::pong_timeout) from that moment to go out;
    /// after it the connection is dropped, whatever the peer sends
    /// meanwhile (so does a connection whose close handshake is over while
    /// its output still waits).
    ///
    /// ```
    /// let config = tine::WsConfig::default().max_outbuf(1 << 20);
    /// ```
    #[must_use]
    pub fn max_outbuf(mut self, bytes: usize) -> Self {
        self.max_outbuf = bytes;
        self
    }

    /// Send a ping after this long without input from the peer (messages
    /// sent to it do not count: they do not show that it is there).
    /// Default 30 s; `None` disables pings (idle connections then stay
    /// open).
    ///
    /// ```
    /// let config = tine::WsConfig::default().ping_interval(None);
    /// ```
    #[must_use]
    pub fn ping_interval(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.ping_interval = interval.into().map(crate::limits::no_longer_than_forever);
        self
    }

    /// Drop the connection when a ping is not answered within this time.
    /// Default 10 s. Also the time a closing connection has, from the
    /// moment it began to close (or from an earlier ping still
    /// unanswered), for its last output and the peer's close frame (after [`WebSocket::close`], a server going away, a peer too
    /// slow for [`max_outbuf`](Self::max_outbuf), a finished close
    /// handshake): what the peer sends meanwhile does not extend it.
    ///
    /// ```
    /// let config = tine::WsConfig::default().pong_timeout(std::time::Duration::from_secs(5));
    /// ```
    #[must_use]
    pub fn pong_timeout(mut self, timeout: Duration) -> Self {
        self.pong_timeout = crate::limits::no_longer_than_forever(timeout);
        self
    }

    /// Time a peer has to deliver a whole message (all its frames) once
    /// its first bytes arrived. Default 60 s, like
    /// [`Limits::body_timeout`](crate::Limits::body_timeout), and like it
    /// a deadline that arriving bytes do not extend: the default
    /// [`max_message`](Self::max_message) of 1 MiB then needs about
    /// 17 KiB/s. On expiry the connection is closed with 1008 (policy
    /// violation) and what arrived of the message is dropped. Without
    /// it, a peer that sent most of a large frame and then a byte now and
    /// then held that buffer for as long as it liked.
    ///
    /// ```
    /// let config = tine::WsConfig::default()
    ///     .max_message(16 << 20)
    ///     .message_timeout(std::time::Duration::from_secs(300));
    /// ```
    #[must_use]
    pub fn message_timeout(mut self, timeout: Duration) -> Self {
        self.message_timeout = crate::limits::no_longer_than_forever(timeout);
        self
    }

    /// Subprotocols the server speaks. Of those a client offers
    /// (`Sec-WebSocket-Protocol`), the first the server speaks is
    /// selected: the client's order decides. When none is, the answer
    /// names none (browsers then open the socket; some clients, such as
    /// Node's `ws`, refuse it). Default: none.
    ///
    /// ```
    /// let config = tine::WsConfig::default().protocols(["chat.v2", "chat.v1"]);
    /// ```
    ///
    /// # Panics
    /// On a name that is not a token (RFC 6455 §4.1: empty, or with a
    /// space, a comma or another separator), which no client could offer
    /// and the answer could not name.
    #[must_use]
    #[track_caller]
    pub fn protocols<S: Into<String>>(mut self, protocols: impl IntoIterator<Item = S>) -> Self {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        if let Some(bad) = self
            .protocols
            .iter()
            .find(|p| p.is_empty() || !p.bytes().all(crate::http::parse::is_token))
        {
            panic!("WsConfig::protocols: {bad:?} is not a token (RFC 6455 §4.1)");
        }
        self
    }
}

/// The handle a WebSocket handler answers through.
pub struct WebSocket<'a> {
    pub(crate) core: &'a mut Core,
    pub(crate) request: &'a mut Request,
    pub(crate) topics: &'a mut Topics,
    pub(crate) changes: &'a mut TopicChanges,
    pub(crate) wire: &'a dyn Wire,
}

impl std::fmt::Debug for WebSocket<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("path", &self.request.path())
            .field("topics", &self.topics)
            .finish()
    }
}

impl WebSocket<'_> {
    /// Queues a text message; the event loop sends it when the socket
    /// can take it.
    pub fn send_text(&mut self, text: impl Into<String>) {
        self.core.queue(op::TEXT, text.into().as_bytes());
    }

    /// Queues a binary message.
    pub fn send_binary(&mut self, data: impl Into<Bytes>) {
        self.core.queue(op::BINARY, &data.into());
    }

    /// Sends a text message at once, waiting (up to 10 s) for the socket to
    /// take it: for handlers that run long and stream results.
    pub fn send_text_now(&mut self, text: impl Into<String>) -> io::Result<()> {
        self.send_text(text);
        self.flush_now()
    }

    /// Sends a binary message at once (see [`send_text_now`](Self::send_text_now)).
    pub fn send_binary_now(&mut self, data: impl Into<Bytes>) -> io::Result<()> {
        self.send_binary(data);
        self.flush_now()
    }

    fn flush_now(&mut self) -> io::Result<()> {
        let pending = self.core.unsent();
        let n = pending.len();
        self.wire.write_all_now(pending)?;
        self.core.advance(n);
        Ok(())
    }

    /// Starts the close handshake with `code` (1000 for a normal close)
    /// and a short reason (cut to the 123 bytes a close frame holds); the
    /// connection closes once the peer answers.
    ///
    /// Panics on a code no close frame may carry (RFC 6455 §7.4: below
    /// 1000, 1004–1006, 1015, and the unassigned 1016–2999 and 5000 up):
    /// a peer would take it as a protocol error. Use 1000–1003 or
    /// 1007–1014 as RFC 6455 and IANA define them, 3000–3999 as
    /// registered for libraries, or 4000–4999, which are the
    /// application's. (In a handler the panic is caught: the connection
    /// closes with 1011 and the log names the code.)
    ///
    /// Once a close frame went out (the handshake is under way, or over:
    /// a handler that echoes the code of [`WsEvent::Close`], which may be
    /// 1005 or 1006), it does nothing, whatever the code.
    #[track_caller]
    pub fn close(&mut self, code: u16, reason: &str) {
        if self.core.close_sent() {
            return;
        }
        assert!(
            frame::valid_close_code(code),
            "WebSocket::close: {code} is not a close code a frame may carry \
             (use 1000-1003, 1007-1014 or 3000-4999)"
        );
        self.core.close(code, reason);
    }

    /// The upgrade request: path, params, headers, and extensions set by
    /// before-hooks (for example an authenticated user).
    pub fn request(&self) -> &Request {
        self.request
    }

    /// A path capture of the WebSocket route.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.request.param(name)
    }

    /// Per-connection state: the upgrade request's extensions, kept for
    /// the connection's life.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        self.request.extensions_mut()
    }

    /// Subscribes this connection to `topic`: every message
    /// [`publish`](crate::publish)ed to it, in any worker, is sent here.
    ///
    /// The subscription takes effect when this callback returns, before
    /// the worker handles anything else. So once the client has received a
    /// message sent from the same callback, every message published after
    /// that, in any worker, reaches it: a client needs no delay between
    /// "joined" and its first publish. (With [`App::redis`](crate::App::redis),
    /// this also needs the worker's own subscription to Redis, made when
    /// it starts, to be confirmed.)
    pub fn subscribe(&mut self, topic: &str) {
        if !self.topics.iter().any(|t| t == topic) {
            // Most connections hold a topic or two for a long time: the
            // first is inline; past it, room for exactly one more, not the
            // four a first push reserves.
            self.topics.reserve_exact(1);
            self.topics.push(topic.to_string());
            self.changes.push(true, topic.to_string());
        }
    }

    /// Stops delivering `topic` to this connection.
    pub fn unsubscribe(&mut self, topic: &str) {
        if let Some(i) = self.topics.iter().position(|t| t == topic) {
            self.topics.swap_remove(i);
            self.changes.push(false, topic.to_string());
        }
    }

    /// The topics this connection is subscribed to.
    pub fn topics(&self) -> &[String] {
        self.topics
    }
}
