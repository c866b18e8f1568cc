//! Publish/subscribe across worker processes, for WebSocket and
//! server-sent event clients.
//!
//! Any handler may [`publish`] a message to a topic; every WebSocket
//! connection subscribed to that topic ([`WebSocket::subscribe`]) receives
//! it as a message, and every event stream subscribed to it
//! ([`Sse::subscribe`](crate::Sse::subscribe)) as an event, in every worker
//! process of the server, the publisher's own included.
//!
//! How a published message travels:
//!
//! 1. `publish` queues it in this process's outbox (`outbox.rs`).
//! 2. After each connection it drives, the event loop offers the outbox,
//!    oldest first, to the bus (`bus.rs`): the control channel to the
//!    master in a worker (nothing in single-process mode), or Redis.
//! 3. Each message the bus takes is delivered at once to this process's
//!    subscribers (`index.rs` knows them); the master relays it to every
//!    other worker, which delivers it to its own subscribers.
//!
//! Messages from one publisher arrive in publish order. Every queue on the
//! way is bounded, and a full queue slows the publisher down instead of
//! growing: while the bus cannot take more, messages wait in the outbox,
//! and while the outbox holds more than 1 MiB the worker reads nothing
//! from its connections and runs no handler, until the bus has drained.
//! A message that cannot be queued at all (one handler publishing over
//! 8 MiB at once, a message over the relay's 1 MiB frame limit, Redis
//! unreachable) is dropped, logged and counted in [`stats`]. The master
//! stops reading from the workers while one of them is behind on what it
//! relays (`relay.rs`); a worker behind for over 2 s (stuck in a handler)
//! stops holding the others back and loses what does not fit in its 4 MiB
//! queue (logged with the count). A subscriber that reads too slowly is
//! closed with 1008 by its worker ([`WsConfig::max_outbuf`]), so no client
//! or worker can grow anyone's memory without bound. A worker restarted by
//! the master gets a fresh channel and rejoins the bus by itself.
//!
//! With [`App::redis`](crate::App::redis) configured, every process
//! publishes to Redis (`PUBLISH tine:<topic>`) and delivers what its own
//! subscription (`PSUBSCRIBE tine:*`) brings back, itself included, so
//! servers on several machines share topics; the master relay is not used.
//! Delivery is then at most once, as with Redis pub/sub itself.
//!
//! [`WebSocket::subscribe`]: crate::WebSocket::subscribe
//! [`WsConfig::max_outbuf`]: crate::WsConfig::max_outbuf

mod bus;
mod index;
mod outbox;
mod redis;
pub(crate) mod relay;
pub(crate) mod stats;
pub(crate) mod wire;

use bytes::Bytes;

pub(crate) use bus::{Bus, Offer};
pub(crate) use index::Topics;
pub(crate) use outbox::{has_room as outbox_has_room, is_empty as outbox_is_empty};
pub(crate) use outbox::{pop as outbox_pop, unpop as outbox_unpop};
pub use stats::Stats;

/// A published message waiting for the event loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Published {
    pub(crate) topic: String,
    pub(crate) payload: Payload,
}

impl Published {
    /// Bytes of its [wire form](wire::encode) (what the outbox counts).
    pub(crate) fn size(&self) -> usize {
        let data = match &self.payload {
            Payload::Text(t) => t.len(),
            Payload::Binary(b) => b.len(),
        };
        wire::OVERHEAD + self.topic.len().min(usize::from(u16::MAX)) + data
    }
}

/// A message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Payload {
    Text(String),
    Binary(Bytes),
}

/// Publishes a text message to `topic`: every WebSocket connection
/// subscribed to it, in every worker, receives it once the current handler
/// returns, exactly as published. SSE connections subscribed to it get it
/// as the data of an event, whatever it holds (a text from a client
/// cannot set an event's type, id or retry: that is
/// [`publish_event`](crate::publish_event)'s).
///
/// ```
/// use tine::{App, Request, StatusCode};
/// let app = App::new().post("/announce", |req: &Request| {
///     tine::publish("news", req.text().unwrap_or_default());
///     StatusCode::ACCEPTED
/// });
/// ```
pub fn publish(topic: &str, text: impl Into<String>) {
    push(topic, Payload::Text(crate::sse::escape_plain(text.into())));
}

/// Publishes a marked event text as it is (for
/// [`publish_event`](crate::publish_event), whose mark [`publish`] would
/// escape).
pub(crate) fn publish_event_text(topic: &str, text: String) {
    push(topic, Payload::Text(text));
}

/// Publishes a binary message to `topic` (see [`publish`]).
pub fn publish_binary(topic: &str, data: impl Into<Bytes>) {
    push(topic, Payload::Binary(data.into()));
}

fn push(topic: &str, payload: Payload) {
    stats::add_published();
    outbox::push(Published {
        topic: topic.to_string(),
        payload,
    });
}

/// This process's publish/subscribe counters (the worker serving the
/// current request, in a server with several workers): how many topics and
/// subscriptions its WebSocket connections hold.
///
/// ```
/// let stats = tine::pubsub::stats();
/// assert_eq!(stats.topics, 0);
/// ```
pub fn stats() -> Stats {
    stats::snapshot()
}

/// Checks a Redis URL at start-up (`App::redis`), so a typo fails once, in
/// the master, rather than in every worker.
pub(crate) fn check_redis_url(url: &str) -> std::io::Result<()> {
    redis::parse_url(url).map(drop)
}
