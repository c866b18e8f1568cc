//! Publish/subscribe across worker processes, for WebSocket clients.
//!
//! Any handler may [`publish`] a message to a topic; every WebSocket
//! connection subscribed to that topic ([`WebSocket::subscribe`]) receives
//! it as a message, in every worker process of the server, the
//! publisher's own included.
//!
//! How it travels: `publish` only queues the message in the calling
//! process. When the handler returns, the event loop delivers it to its own
//! subscribers and sends it to the master over the control socket pair
//! created at fork; the master relays it to every other worker, which
//! delivers it to its subscribers. Messages from one publisher arrive in
//! publish order (one stream per worker, relayed in order). Queues are
//! bounded: the master drops (and logs) messages for a worker whose queue
//! to it exceeds 4 MiB, and a subscriber that reads too slowly is closed
//! with 1008 by its worker ([`WsConfig::max_outbuf`]), so a stuck client or
//! worker cannot grow anyone's memory without bound. A worker restarted by
//! the master gets a fresh channel and rejoins the bus by itself. In
//! single-process mode there is no relay.
//!
//! With [`App::redis`](crate::App::redis) configured, every process
//! publishes to Redis (`PUBLISH tine:<topic>`) and delivers what its own
//! subscription (`PSUBSCRIBE tine:*`) brings back, itself included, so
//! servers on several machines share topics; the master relay is not used.
//! Delivery is then at most once, as with Redis pub/sub itself.
//!
//! [`WebSocket::subscribe`]: crate::WebSocket::subscribe
//! [`WsConfig::max_outbuf`]: crate::WsConfig::max_outbuf

use std::cell::RefCell;

use bytes::Bytes;

/// A published message waiting for the event loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Published {
    pub(crate) topic: String,
    pub(crate) payload: Payload,
}

/// A message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Payload {
    Text(String),
    Binary(Bytes),
}

thread_local! {
    static OUTBOX: RefCell<Vec<Published>> = const { RefCell::new(Vec::new()) };
}

/// Publishes a text message to `topic`: every WebSocket connection
/// subscribed to it, in every worker, receives it once the current handler
/// returns.
///
/// ```
/// use tine::{App, Request, StatusCode};
/// let app = App::new().post("/announce", |req: &Request| {
///     tine::publish("news", req.text().unwrap_or_default());
///     StatusCode::ACCEPTED
/// });
/// ```
pub fn publish(topic: &str, text: impl Into<String>) {
    push(topic, Payload::Text(text.into()));
}

/// Publishes a binary message to `topic` (see [`publish`]).
pub fn publish_binary(topic: &str, data: impl Into<Bytes>) {
    push(topic, Payload::Binary(data.into()));
}

fn push(topic: &str, payload: Payload) {
    OUTBOX.with(|o| {
        o.borrow_mut().push(Published {
            topic: topic.to_string(),
            payload,
        })
    });
}

/// Takes what handlers published since the last call.
pub(crate) fn take_outbox() -> Vec<Published> {
    OUTBOX.with(|o| std::mem::take(&mut *o.borrow_mut()))
}

/// Whether anything is waiting (cheap check for the loop's hot path).
pub(crate) fn outbox_is_empty() -> bool {
    OUTBOX.with(|o| o.borrow().is_empty())
}

/// Most messages the outbox holds before publishing connections are
/// paused (they read no more input until the loop has delivered it).
const OUTBOX_MAX: usize = 1024;

/// Whether the outbox can take more: when not, the event loop stops
/// decoding input from connections until it has been delivered.
pub(crate) fn outbox_has_room() -> bool {
    OUTBOX.with(|o| o.borrow().len() < OUTBOX_MAX)
}

/// Wire form for the master relay: `[kind: 0 text | 1 binary][topic length:
/// u16 LE][topic][payload]`.
pub(crate) fn encode(p: &Published, out: &mut Vec<u8>) {
    let (kind, data): (u8, &[u8]) = match &p.payload {
        Payload::Text(t) => (0, t.as_bytes()),
        Payload::Binary(b) => (1, b),
    };
    let topic = &p.topic.as_bytes()[..p.topic.len().min(u16::MAX as usize)];
    out.push(kind);
    out.extend_from_slice(&(topic.len() as u16).to_le_bytes());
    out.extend_from_slice(topic);
    out.extend_from_slice(data);
}

/// Decodes [`encode`]'s form; `None` for anything malformed.
pub(crate) fn decode(buf: &[u8]) -> Option<Published> {
    let (&kind, rest) = buf.split_first()?;
    let len = u16::from_le_bytes([*rest.first()?, *rest.get(1)?]) as usize;
    let topic = std::str::from_utf8(rest.get(2..2 + len)?).ok()?.to_string();
    let data = &rest[2 + len..];
    let payload = match kind {
        0 => Payload::Text(std::str::from_utf8(data).ok()?.to_string()),
        1 => Payload::Binary(Bytes::copy_from_slice(data)),
        _ => return None,
    };
    Some(Published { topic, payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_and_wire_round_trip() {
        publish("a", "hello");
        publish_binary("b", vec![0u8, 255]);
        let out = take_outbox();
        assert_eq!(out.len(), 2);
        assert!(take_outbox().is_empty());
        for p in &out {
            let mut wire = Vec::new();
            encode(p, &mut wire);
            assert_eq!(decode(&wire).as_ref(), Some(p));
        }
        assert_eq!(decode(&[9, 0, 0]), None);
        assert_eq!(decode(&[0, 5, 0, b'x']), None);
    }
}
