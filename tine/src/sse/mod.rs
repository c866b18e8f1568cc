//! Server-sent events (the HTML standard's `text/event-stream`), pushed
//! from anywhere through publish/subscribe.
//!
//! An SSE route ([`App::sse`](crate::App::sse), or a handler returning an
//! [`Sse`]) answers with the stream's head and a few first events, and
//! subscribes the connection to topics. From then on the connection is an
//! event stream owned by the event loop, like a WebSocket: no handler and
//! no producer runs for it. Whatever any handler in any worker
//! [`publish`](crate::publish)es (or [`publish_event`]s) to one of its
//! topics is written to it as an event; a comment line is sent as a
//! heartbeat when nothing else was for a while (so proxies keep the
//! connection and the client notices a dead one).
//!
//! Memory stays bounded: a client that reads too slowly for what is
//! published to it is disconnected once more than
//! [`max_buffered`](Sse::max_buffered) bytes wait for it (its browser
//! reconnects, sending `Last-Event-ID`). While the server drains, the
//! stream ends cleanly and the browser reconnects to a worker that serves
//! on.
//!
//! The connection code is in `server/conn/sse.rs`.

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::StatusCode;

use crate::http::{Body, IntoResponse, Request, Response};
use crate::pubsub::{self, Payload};

/// The first character of a published text that carries a whole event
/// ([`publish_event`]) rather than plain data: ASCII record separator,
/// which no event field may contain.
///
/// The mark travels in the text itself, since Redis carries plain texts
/// (and other programs may publish there). So that a plain text cannot
/// pass for an event, [`publish`](crate::publish) doubles the mark of a
/// text that starts with one ([`escape_plain`]) and receivers take one
/// off again ([`Published::of`]): a text from a client, published as it
/// is, stays that text, never fields of an event.
const EVENT_MARK: char = '\u{1e}';

/// A plain text as it is published: one that starts with [`EVENT_MARK`]
/// gets a second one (taken off by [`Published::of`]).
pub(crate) fn escape_plain(mut text: String) -> String {
    if text.starts_with(EVENT_MARK) {
        text.insert(0, EVENT_MARK);
    }
    text
}

/// What a published text is.
#[derive(Debug, PartialEq, Eq)]
enum Published<'a> {
    /// A whole event from [`publish_event`], as SSE writes it.
    Event(&'a str),
    /// A plain text, as it was published.
    Plain(&'a str),
}

impl<'a> Published<'a> {
    fn of(text: &'a str) -> Published<'a> {
        let Some(rest) = text.strip_prefix(EVENT_MARK) else {
            return Published::Plain(text);
        };
        if rest.starts_with(EVENT_MARK) {
            return Published::Plain(rest);
        }
        // Only a well-formed single event is one: a marked text that is
        // not (from another publisher on Redis, say) must not inject
        // fields or extra events.
        if well_formed(rest) {
            Published::Event(rest)
        } else {
            Published::Plain(text)
        }
    }
}

/// Default heartbeat interval.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// Default most bytes waiting for a client before it is disconnected.
const MAX_BUFFERED: usize = 1 << 20;

/// One server-sent event: data, and optionally an id, an event type and a
/// reconnection delay.
///
/// ```
/// let event = tine::SseEvent::new("line one\nline two").id("42").event("update");
/// assert_eq!(event.to_string(), "event: update\ndata: line one\ndata: line two\nid: 42\n\n");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    data: String,
    id: Option<String>,
    event: Option<String>,
    retry: Option<u64>,
}

impl SseEvent {
    /// An event with `data` (several lines become several `data:` fields,
    /// which the browser joins with newlines).
    pub fn new(data: impl Into<String>) -> Self {
        SseEvent {
            data: data.into(),
            ..SseEvent::default()
        }
    }

    /// The event's id: the browser sends the last one it saw as
    /// `Last-Event-ID` when it reconnects. Line breaks and NUL are
    /// dropped (an id cannot hold them).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(one_line(id.into()));
        self
    }

    /// The event type (`addEventListener(type, ...)` in the browser;
    /// `message` when absent). Line breaks are dropped.
    pub fn event(mut self, event: impl Into<String>) -> Self {
        self.event = Some(one_line(event.into()));
        self
    }

    /// Tells the browser to wait this long before reconnecting.
    pub fn retry(mut self, delay: Duration) -> Self {
        self.retry = Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Appends the event's wire form.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        if let Some(event) = &self.event {
            field(out, "event", event);
        }
        encode_data(out, &self.data);
        if let Some(id) = &self.id {
            field(out, "id", id);
        }
        if let Some(ms) = self.retry {
            field(out, "retry", itoa::Buffer::new().format(ms));
        }
        out.push(b'\n');
    }
}

impl std::fmt::Display for SseEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = Vec::new();
        self.encode(&mut out);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

fn one_line(mut s: String) -> String {
    s.retain(|c| !matches!(c, '\r' | '\n' | '\0'));
    s
}

fn field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.push(b'\n');
}

/// `data:` fields for `data`, one per line (CRLF, CR and LF all end a
/// line, as the browser's parser has it).
fn encode_data(out: &mut Vec<u8>, data: &str) {
    let mut rest = data;
    loop {
        match rest.find(['\r', '\n']) {
            Some(i) => {
                field(out, "data", &rest[..i]);
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[i + skip..];
            }
            None => {
                field(out, "data", rest);
                return;
            }
        }
    }
}

/// Publishes a whole event (with its id, type or retry) to `topic`: every
/// SSE connection subscribed to it, in every worker, receives it as it
/// is. WebSocket subscribers of the topic receive its data as a text
/// message. (A plain [`publish`](crate::publish) reaches SSE clients as an
/// event with that text as its data.)
///
/// # Errors
///
/// As [`publish`](crate::publish)'s (the size counted is the event as
/// written on the stream).
///
/// ```
/// use tine::{App, Request, SseEvent, StatusCode};
/// let app = App::new().post("/news", |req: &Request| -> Result<StatusCode, tine::Error> {
///     let text = req.text()?;
///     tine::publish_event("news", SseEvent::new(text).id("7").event("headline"))?;
///     Ok(StatusCode::ACCEPTED)
/// });
/// ```
pub fn publish_event(topic: &str, event: SseEvent) -> Result<(), crate::Error> {
    pubsub::publish_event_text(topic, event_text(&event))
}

/// The text [`publish_event`] publishes: the mark, then the event's wire
/// form.
pub(crate) fn event_text(event: &SseEvent) -> String {
    let mut wire = Vec::with_capacity(event.data.len() + 32);
    wire.extend_from_slice(EVENT_MARK.to_string().as_bytes());
    event.encode(&mut wire);
    String::from_utf8(wire).unwrap_or_default()
}

/// What an SSE connection writes for a published message: a whole event
/// ([`publish_event`]), or the text as data. Binary messages are not
/// events: `None`.
pub(crate) fn event_bytes(payload: &Payload, out: &mut Vec<u8>) -> bool {
    let Payload::Text(text) = payload else {
        return false;
    };
    match Published::of(text) {
        Published::Event(event) => out.extend_from_slice(event.as_bytes()),
        Published::Plain(text) => {
            encode_data(out, text);
            out.push(b'\n');
        }
    }
    true
}

/// The data of a [`publish_event`] text, for WebSocket subscribers (a
/// plain text is returned as it is).
pub(crate) fn websocket_text(text: &str) -> std::borrow::Cow<'_, str> {
    match Published::of(text) {
        Published::Event(event) => {
            let lines: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            lines.join("\n").into()
        }
        Published::Plain(text) => text.into(),
    }
}

/// Whether `s` is one event as [`SseEvent::encode`] writes it: known
/// fields, no CR, one blank line, at the end.
fn well_formed(s: &str) -> bool {
    let Some(body) = s.strip_suffix("\n\n") else {
        return false;
    };
    !s.contains('\r')
        && body.split('\n').all(|line| {
            ["data: ", "id: ", "event: ", "retry: "]
                .iter()
                .any(|f| line.starts_with(f))
        })
}

/// The start of a server-sent event stream: the handle an SSE route
/// answers through (see [`App::sse`](crate::App::sse)). A handler may
/// also return it directly (it is a response).
///
/// ```
/// use std::time::Duration;
/// use tine::{App, Request, Sse, SseEvent};
/// let app = App::new().get("/feed", |req: &Request| {
///     let mut sse = Sse::new(req);
///     sse.subscribe("feed");
///     sse.retry(Duration::from_secs(2));
///     if let Some(last) = sse.last_event_id() {
///         sse.send(SseEvent::new(format!("resumed after {last}")));
///     }
///     sse
/// });
/// ```
#[derive(Debug)]
pub struct Sse {
    last_event_id: Option<String>,
    session: Box<SseSession>,
    rejected: Option<Response>,
}

impl Sse {
    /// A stream answering `req` (its `Last-Event-ID` is kept for
    /// [`last_event_id`](Self::last_event_id)).
    pub fn new(req: &Request) -> Self {
        Sse {
            last_event_id: req.header("last-event-id").map(str::to_string),
            session: Box::new(SseSession::new()),
            rejected: None,
        }
    }

    /// The `Last-Event-ID` the browser sent on reconnecting: the id of
    /// the last event it received, to resume from.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// Subscribes the stream to `topic`: every message published to it,
    /// in any worker, is sent as an event. Subscriptions take effect
    /// before the worker handles anything else.
    pub fn subscribe(&mut self, topic: &str) {
        let s = &mut self.session;
        if !s.topics.iter().any(|t| t == topic) {
            s.topics.push(topic.to_string());
            s.topic_changes.push((true, topic.to_string()));
        }
    }

    /// Sends `event` first, before anything published (a greeting, or
    /// the events missed since [`last_event_id`](Self::last_event_id)).
    pub fn send(&mut self, event: SseEvent) {
        event.encode(&mut self.session.initial);
    }

    /// Sends a `retry:` field: how long the browser waits before
    /// reconnecting after the stream ends.
    pub fn retry(&mut self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        let s = &mut self.session.initial;
        field(s, "retry", itoa::Buffer::new().format(ms));
        s.push(b'\n');
    }

    /// How long the stream may be silent before a comment line is sent
    /// as a heartbeat (default 15 s; at least 10 ms, a shorter interval
    /// is taken as 10 ms).
    pub fn heartbeat(&mut self, interval: Duration) {
        self.session.heartbeat =
            crate::limits::no_longer_than_forever(interval.max(Duration::from_millis(10)));
    }

    /// Most bytes that may wait for a client that reads slowly (default
    /// 1 MiB); past that it is disconnected.
    ///
    /// # Panics
    /// If `bytes` is 0: the stream's first line could not wait for the
    /// socket, and every client would be disconnected at once.
    #[track_caller]
    pub fn max_buffered(&mut self, bytes: usize) {
        assert!(
            bytes > 0,
            "Sse::max_buffered(0): every stream would be cut off at once (the least is 1)"
        );
        self.session.max_buffered = bytes;
    }

    /// Answers `response` instead of starting the stream (a `401`, say;
    /// an error page made with [`Response::error`] goes through the app's
    /// error handler).
    pub fn reject(&mut self, response: impl IntoResponse) {
        self.rejected = Some(response.into_response());
    }
}

impl IntoResponse for Sse {
    fn into_response(self) -> Response {
        if let Some(res) = self.rejected {
            return res;
        }
        let mut res = Response::empty(StatusCode::OK);
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // nginx (and proxies that follow it) must not buffer the stream.
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        res.body = Body::Sse(self.session);
        res
    }
}

/// An SSE connection's state once its head is sent: subscriptions, the
/// output waiting for the socket, limits.
#[derive(Debug)]
pub(crate) struct SseSession {
    /// The topics subscribed to.
    pub(crate) topics: Vec<String>,
    /// Subscription changes not yet applied to the loop's topic index.
    pub(crate) topic_changes: Vec<(bool, String)>,
    /// Events from the route, written first.
    initial: Vec<u8>,
    /// Framed output waiting for the socket, and how much of it was sent.
    out: Vec<u8>,
    sent: usize,
    /// Chunked transfer coding (HTTP/1.1); else raw bytes until the close.
    chunked: bool,
    pub(crate) heartbeat: Duration,
    max_buffered: usize,
    /// Disconnected for reading too slowly.
    pub(crate) overflowed: bool,
    /// The end is queued: close once it is sent.
    pub(crate) finished: bool,
}

impl SseSession {
    fn new() -> Self {
        SseSession {
            topics: Vec::new(),
            topic_changes: Vec::new(),
            initial: Vec::new(),
            out: Vec::new(),
            sent: 0,
            chunked: true,
            heartbeat: HEARTBEAT,
            max_buffered: MAX_BUFFERED,
            overflowed: false,
            finished: false,
        }
    }

    /// The head is sent (with chunked framing or not): queue the route's
    /// first events.
    pub(crate) fn start(&mut self, chunked: bool) {
        self.chunked = chunked;
        let initial = std::mem::take(&mut self.initial);
        // A first comment makes the browser fire `open` at once, even
        // when the route sends no event.
        self.queue(b":ok\n\n");
        if !initial.is_empty() {
            self.queue(&initial);
        }
    }

    /// Queues a published message as an event.
    pub(crate) fn deliver(&mut self, payload: &Payload) {
        let mut event = Vec::new();
        if event_bytes(payload, &mut event) {
            self.queue(&event);
        }
    }

    /// Queues a heartbeat comment.
    pub(crate) fn heartbeat(&mut self) {
        self.queue(b":\n\n");
    }

    /// Ends the stream (the server is draining): the browser reconnects,
    /// to a worker that serves on.
    pub(crate) fn finish(&mut self) {
        if !self.finished && !self.overflowed {
            if self.chunked {
                self.out.extend_from_slice(crate::http::encode::LAST_CHUNK);
            }
            self.finished = true;
        }
    }

    fn queue(&mut self, data: &[u8]) {
        if self.finished || self.overflowed {
            return;
        }
        if self.chunked {
            crate::http::encode::encode_chunk(&mut self.out, data);
        } else {
            self.out.extend_from_slice(data);
        }
        if self.out.len() - self.sent > self.max_buffered {
            // The client reads too slowly: drop what waits for it, and
            // the connection (its memory stays bounded).
            self.overflowed = true;
            self.out = Vec::new();
            self.sent = 0;
        }
    }

    /// Output waiting for the socket.
    pub(crate) fn unsent(&self) -> &[u8] {
        &self.out[self.sent..]
    }

    /// `n` bytes of [`unsent`](Self::unsent) were written. The sent part
    /// is dropped once it is most of the buffer (and not small), as a
    /// WebSocket's output does: a client that reads steadily but never
    /// quite catches up would otherwise keep the whole stream ever sent to
    /// it in memory (only the unsent part counts against `max_buffered`;
    /// a reader 0.1 % slower than the events held about a gigabyte before
    /// it was cut off).
    pub(crate) fn written(&mut self, n: usize) {
        self.sent += n;
        if self.sent == self.out.len() {
            self.sent = 0;
            self.out.clear();
            if self.out.capacity() > 64 * 1024 {
                self.out = Vec::new();
            }
        } else if self.sent >= 64 * 1024 && self.sent * 2 >= self.out.len() {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    #[should_panic(expected = "Sse::max_buffered(0)")]
    fn no_room_for_a_slow_reader_is_refused() {
        let req = Request::builder(http::Method::GET, "/events").finish();
        Sse::new(&req).max_buffered(0);
    }

    /// A client that keeps reading but stays behind by a constant lag:
    /// the session holds about the lag, not everything it ever sent.
    #[test]
    fn a_reader_that_never_catches_up_does_not_keep_what_was_sent() {
        let mut s = SseSession::new();
        let lag = 512 * 1024;
        let event = vec![b'x'; 64 * 1024];
        for _ in 0..200 {
            s.queue(&event);
            let unsent = s.unsent().len();
            if unsent > lag {
                s.written(unsent - lag);
            }
        }
        assert!(!s.overflowed);
        assert!(s.unsent().len() <= lag + event.len() + 16);
        // 12.8 MB went through it.
        assert!(s.out.len() < 3 * lag, "{} bytes held", s.out.len());
    }

    #[test]
    fn events_encode_and_sanitize() {
        let e = SseEvent::new("a\r\nb\rc\nd")
            .id("1\n2")
            .event("x\ry")
            .retry(Duration::from_millis(1500));
        assert_eq!(
            e.to_string(),
            "event: xy\ndata: a\ndata: b\ndata: c\ndata: d\nid: 12\nretry: 1500\n\n"
        );
        assert_eq!(SseEvent::new("").to_string(), "data: \n\n");
    }

    #[test]
    fn published_texts_become_events_and_forged_marks_do_not_inject() {
        let mut out = Vec::new();
        assert!(event_bytes(&Payload::Text("hi\nthere".into()), &mut out));
        assert_eq!(out, b"data: hi\ndata: there\n\n");
        let mut text = String::from(EVENT_MARK);
        text.push_str(&SseEvent::new("x").id("9").to_string());
        out.clear();
        event_bytes(&Payload::Text(text.clone()), &mut out);
        assert_eq!(out, b"data: x\nid: 9\n\n");
        assert_eq!(websocket_text(&text), "x");
        // A marked text that is not one event is data, not fields.
        let forged = format!("{EVENT_MARK}data: a\n\nid: 666\n\n");
        out.clear();
        event_bytes(&Payload::Text(forged), &mut out);
        assert!(out.starts_with(b"data: \x1edata: a\ndata: \ndata: id: 666"));
        assert!(!event_bytes(
            &Payload::Binary(Bytes::from_static(b"x")),
            &mut out
        ));
    }

    /// A plain text that looks exactly like a marked event (from a client,
    /// say) stays plain text: `publish` doubles its mark.
    #[test]
    fn a_plain_text_shaped_like_an_event_stays_text() {
        let forged = format!("{EVENT_MARK}event: logout\ndata: x\nid: 9\n\n");
        let wire = escape_plain(forged.clone());
        let mut out = Vec::new();
        event_bytes(&Payload::Text(wire.clone()), &mut out);
        assert_eq!(
            out,
            b"data: \x1eevent: logout\ndata: data: x\ndata: id: 9\ndata: \ndata: \n\n"
        );
        assert_eq!(websocket_text(&wire), forged);
        // Texts without the mark travel as they are.
        assert_eq!(escape_plain("plain".into()), "plain");
        assert_eq!(websocket_text("plain"), "plain");
        assert_eq!(
            Published::of(&escape_plain("\u{1e}".into())),
            Published::Plain("\u{1e}")
        );
    }

    #[test]
    fn a_slow_reader_overflows_and_frees_its_buffer() {
        let mut s = SseSession::new();
        s.max_buffered = 150;
        s.start(true);
        s.written(s.unsent().len());
        for _ in 0..3 {
            s.deliver(&Payload::Text("0123456789".repeat(3)));
        }
        assert!(!s.overflowed);
        s.deliver(&Payload::Text("0123456789".repeat(3)));
        assert!(s.overflowed);
        assert_eq!(s.out.capacity(), 0);
    }
}
