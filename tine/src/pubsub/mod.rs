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
//! `publish` works on the thread of the worker's event loop (in handlers,
//! hooks, WebSocket handlers, `on_worker_start`); called on another
//! thread it returns an error, since nothing would ever take that
//! thread's outbox. A thread of the app's own (slow work a handler hands
//! off, a ticker started in `on_worker_start`) publishes through a
//! [`Publisher`], taken with [`publisher`] in the worker and moved to it:
//! its messages wait in the worker's inbox (`handoff.rs`), and a waker
//! tells the loop to move them to the outbox.
//!
//! Messages from one publisher arrive in publish order. Every queue on the
//! way is bounded, and a full queue slows the publisher down instead of
//! growing: while the bus cannot take more, messages wait in the outbox,
//! and while the outbox holds more than 1 MiB the worker reads nothing
//! from its connections and runs no handler, until the bus has drained.
//! A message that cannot be queued at all (one handler publishing over
//! 8 MiB at once, Redis unreachable) is dropped, logged and counted in
//! [`stats`].
//!
//! # How large a message may be
//!
//! A message too large to reach every worker is refused by [`publish`]
//! itself (an [`Error`] with 413, counted as dropped), never delivered to
//! only some subscribers. The limit (on the topic and the message
//! together, see [`max_size`]) is sized at start-up from the app's own
//! limits: room for a message as large as the largest of
//! [`Limits::max_body`](crate::Limits::max_body) and
//! [`WsConfig::max_message`](crate::WsConfig::max_message), the app's or
//! a route group's ([`Group::max_body`](crate::Group::max_body),
//! [`Group::ws_config`](crate::Group::ws_config)), with any
//! topic, so whatever a client could send in one body or one WebSocket
//! message can be published on with [`publish`] (an event of
//! [`publish_event`](crate::publish_event) is measured as written on the
//! stream, with `data: ` before each line). It is never below 1 MiB and never above
//! 4 MiB: the master relays each message as one frame, and for every
//! worker holds one incoming frame (up to the limit) and a queue of
//! 4 MiB, or 2 MiB + 64 KiB plus one largest message where that is more
//! (about 6 MiB at the 4 MiB cap): about 5 MiB per worker with the
//! default limits and 10 MiB at the cap, and up to twice that allocated
//! after a burst (buffers grow by doubling and are kept). A higher cap
//! would raise that with every worker. (A route with its own larger
//! [`Group::max_body`](crate::Group::max_body) does not raise the limit.)
//! In single-process mode and with Redis the limit is 4 MiB (the Redis
//! publisher's 8 MiB queue and the subscriber's 16 MiB frame limit take
//! such a message with its channel name; Redis's own default
//! `client-output-buffer-limit pubsub 32mb 8mb 60` too, unless many
//! arrive faster than a subscriber reads).
//!
//! The master
//! stops reading from the workers while one of them is behind on what it
//! relays (`relay.rs`); a worker behind for over 2 s (stuck in a handler)
//! stops holding the others back and loses what does not fit in its
//! queue (logged with the count). A subscriber that reads too slowly is
//! closed with 1008 by its worker ([`WsConfig::max_outbuf`]), so no client
//! or worker can grow anyone's memory without bound. A worker restarted by
//! the master gets a fresh channel and rejoins the bus by itself.
//!
//! Within those bounds memory may still run out (a tight `ulimit -v`, a
//! full machine). The control channels' buffers then refuse to grow
//! rather than abort the process: a message there is no memory for is
//! dropped for the workers it would have reached (by the master: logged
//! with the count, like a stuck worker's; by a worker: counted in
//! [`stats`]), and the master, whose abort would take every worker with
//! it, goes on serving.
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
mod handoff;
mod index;
mod outbox;
mod redis;
pub(crate) mod relay;
pub(crate) mod stats;
pub(crate) mod wire;

use std::cell::Cell;

use bytes::Bytes;

use crate::{Error, Limits, StatusCode, WsConfig};

pub(crate) use bus::{Bus, Offer};
pub(crate) use handoff::{
    close as close_handoff, pending as handoff_pending, start as start_handoff,
    take as take_handoff,
};
pub use handoff::{publisher, Publisher};
pub(crate) use index::{key32, Topics};
pub(crate) use outbox::{has_room as outbox_has_room, is_empty as outbox_is_empty};
pub(crate) use outbox::{pop as outbox_pop, unpop as outbox_unpop};
pub use stats::Stats;

/// The most bytes a published message may take (its topic and data,
/// plus 3 bytes), whatever the configuration: see the [module
/// docs](self#how-large-a-message-may-be). Half of the outbox's bound, so
/// that one fits beside what a busy worker's outbox holds.
pub(crate) const MAX_SIZE: usize = outbox::MAX / 2;

/// What [`relay_limit`] adds to the app's largest body or WebSocket
/// message: the longest topic (64 KiB, the wire form's bound), the wire
/// form's 3 bytes, and what [`publish`] and
/// [`publish_event`](crate::publish_event) add to a text (an escape mark,
/// an event's field names and id; not a `data:` field per line of a text
/// of many short lines, which can grow it several times).
const RELAY_SLACK: usize = 128 * 1024;

/// The largest message (wire size, see [`Published::size`]) that the
/// master relay carries for an app with these limits: the largest of
/// `limits.max_body`, `ws.max_message` and the largest limit a route
/// group sets (`groups`, its `max_body` or its WebSocket `max_message`)
/// plus [`RELAY_SLACK`], between
/// the control channel's default payload limit (1 MiB) and [`MAX_SIZE`].
/// The master and every worker size their channels with it (the same
/// configuration gives the same number on both ends).
///
/// A cap equal to the default body and message limit (1 MiB, as it once
/// was) relayed no message of exactly that limit: the frame also carries
/// the topic and the wire form's bytes, so the message reached only the
/// publishing worker's subscribers.
pub(crate) fn relay_limit(limits: &Limits, ws: &WsConfig, groups: usize) -> usize {
    let largest = limits.max_body.max(ws.max_message.unwrap_or(0)).max(groups);
    largest
        .saturating_add(RELAY_SLACK)
        .clamp(crate::server::control::MAX_PAYLOAD, MAX_SIZE)
}

thread_local! {
    /// This event loop's [`max_size`]: set by the loop at start, from its
    /// bus ([`set_max_size`]).
    static LIMIT: Cell<usize> = const { Cell::new(MAX_SIZE) };
    /// Whether this thread runs (or is about to run) a worker's event
    /// loop, which alone drains this thread's outbox.
    static ATTACHED: Cell<bool> = const { Cell::new(false) };
}

/// Sets this thread's [`max_size`] (the event loop does, at start-up: the
/// [`relay_limit`] in a worker on the master relay, [`MAX_SIZE`] with Redis
/// or in a single process), and marks it a worker's.
pub(crate) fn set_max_size(bytes: usize) {
    LIMIT.with(|l| l.set(bytes.min(MAX_SIZE)));
    attach();
}

/// Marks this thread as the one whose loop delivers what it publishes
/// (the worker's, from `on_worker_start` on).
pub(crate) fn attach() {
    ATTACHED.with(|a| a.set(true));
}

fn attached() -> bool {
    ATTACHED.with(Cell::get)
}

/// This thread's limit on a message's wire size.
fn limit() -> usize {
    LIMIT.with(Cell::get)
}

/// The largest message [`publish`] takes in this process: the topic's
/// length plus the message's (its text, or its data), in bytes, may be up
/// to this. (For [`publish_event`](crate::publish_event) the message is
/// the event as written on the stream: its data with `data: ` before
/// every line, so a text of many short lines takes several times its
/// length.)
/// See the [module docs](self#how-large-a-message-may-be) for how it is
/// chosen; with the default limits it is over 1 MiB + 64 KiB.
///
/// ```
/// assert!(tine::pubsub::max_size() > (1 << 20) + (64 << 10));
/// ```
pub fn max_size() -> usize {
    LIMIT.with(Cell::get) - wire::OVERHEAD
}

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
/// # Errors
///
/// Nothing is published, and the message is counted as dropped, when:
/// - the topic and the message together are larger than [`max_size`], or
///   the topic alone is longer than 65,535 bytes: `413 Payload Too
///   Large`. The limit has room for anything a client can send in one body
///   or WebSocket message with the app's limits, so a handler that
///   publishes what it received gets this only for a very long topic, a
///   larger route-specific body limit, or text of its own;
/// - this process has more than 8 MiB of published messages waiting (one
///   handler publishing a great deal at once): `503 Service Unavailable`.
///
/// - it is called outside a worker's thread (a thread of the app's own):
///   `500`; such a thread publishes through a [`Publisher`].
///
/// A message that is taken is delivered to this process's subscribers and
/// to every other worker's; it can still be lost later only where the
/// [module docs](crate::pubsub) say (a worker stuck for seconds, Redis
/// unreachable).
///
/// ```
/// use tine::{App, Request, StatusCode};
/// let app = App::new().post("/announce", |req: &Request| -> Result<StatusCode, tine::Error> {
///     tine::publish("news", req.text()?)?;
///     Ok(StatusCode::ACCEPTED)
/// });
/// ```
pub fn publish(topic: &str, text: impl Into<String>) -> Result<(), Error> {
    push(topic, Payload::Text(crate::sse::escape_plain(text.into())))
}

/// Publishes a marked event text as it is (for
/// [`publish_event`](crate::publish_event), whose mark [`publish`] would
/// escape).
pub(crate) fn publish_event_text(topic: &str, text: String) -> Result<(), Error> {
    push(topic, Payload::Text(text))
}

/// Publishes a binary message to `topic` (see [`publish`], also for the
/// errors).
pub fn publish_binary(topic: &str, data: impl Into<Bytes>) -> Result<(), Error> {
    push(topic, Payload::Binary(data.into()))
}

fn push(topic: &str, payload: Payload) -> Result<(), Error> {
    if !attached() {
        // Another thread's outbox would never be drained: the message
        // would be lost while the call said it was taken.
        return Err(Error::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "tine::publish called outside a worker's thread: nothing would deliver it; \
             publish from another thread with tine::pubsub::publisher()",
        ));
    }
    stats::add_published();
    let p = Published {
        topic: topic.to_string(),
        payload,
    };
    if let Err(e) = check_size(&p, limit()) {
        stats::add_dropped(1);
        return Err(e);
    }
    if outbox::push(p) {
        Ok(())
    } else {
        Err(Error::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many published messages waiting; message dropped",
        ))
    }
}

/// Refuses a message too large for the bus (`limit`: its wire size), or
/// with a topic longer than 65,535 bytes, with `413`.
fn check_size(p: &Published, limit: usize) -> Result<(), Error> {
    let size = p.size();
    let topic = &p.topic;
    if size <= limit && topic.len() <= usize::from(u16::MAX) {
        return Ok(());
    }
    log::debug!(
        "pub/sub: refused a {size}-byte message to topic {:?} (limit {limit} bytes)",
        topic.get(..64).unwrap_or(topic)
    );
    Err(Error::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "message too large to publish: {} bytes of topic and message, the limit is {}",
            size - wire::OVERHEAD,
            limit - wire::OVERHEAD
        ),
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The relay's limit leaves room for a message of the app's largest
    /// body or WebSocket message with the longest topic, within bounds.
    #[test]
    fn the_relay_limit_follows_the_app_limits_within_bounds() {
        let longest_topic = "t".repeat(usize::from(u16::MAX));
        for (body, message) in [
            (1 << 20, None),
            (1 << 20, Some(3_000_000)),
            (3 << 20, Some(10)),
        ] {
            let limits = Limits::default().max_body(body);
            let ws = WsConfig::default().max_message(message);
            let p = Published {
                topic: longest_topic.clone(),
                payload: Payload::Binary(vec![0; body.max(message.unwrap_or(0))].into()),
            };
            assert!(
                p.size() <= relay_limit(&limits, &ws, 0),
                "{body} {message:?}"
            );
            let groups = body.max(message.unwrap_or(0));
            assert!(p.size() <= relay_limit(&Limits::default(), &WsConfig::default(), groups));
        }
        assert_eq!(
            relay_limit(&Limits::default().max_body(100), &WsConfig::default(), 0),
            crate::server::control::MAX_PAYLOAD
        );
        assert_eq!(
            relay_limit(
                &Limits::default().max_body(1 << 30),
                &WsConfig::default(),
                0
            ),
            MAX_SIZE
        );
    }

    /// With the outbox full (one handler publishing a great deal at once)
    /// `publish` says so with 503 and counts the drop; once the loop has
    /// taken what is queued, it publishes again.
    #[test]
    fn publish_says_when_the_outbox_is_full() {
        set_max_size(MAX_SIZE);
        let big = || vec![0u8; MAX_SIZE - 1024];
        let dropped = stats::snapshot().dropped;
        let mut taken = 0;
        let err = loop {
            match publish_binary("t", big()) {
                Ok(()) => taken += 1,
                Err(e) => break e,
            }
            assert!(taken < 100, "the outbox never filled");
        };
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(stats::snapshot().dropped, dropped + 1);
        while outbox_pop().is_some() {}
        publish_binary("t", big()).unwrap();
        while outbox_pop().is_some() {}
    }

    /// Over this process's limit `publish` says so and queues nothing;
    /// at the limit it takes the message.
    #[test]
    fn publish_refuses_what_the_bus_cannot_carry() {
        set_max_size(2 << 20);
        let room = max_size() - "t".len();
        let dropped = stats::snapshot().dropped;
        let err = publish_binary("t", vec![0u8; room + 1]).unwrap_err();
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(outbox_is_empty());
        assert_eq!(stats::snapshot().dropped, dropped + 1);
        let long_topic = "t".repeat(usize::from(u16::MAX) + 1);
        assert!(publish(&long_topic, "x").is_err());
        publish_binary("t", vec![0u8; room]).unwrap();
        let p = outbox_pop().unwrap();
        assert_eq!(p.size(), LIMIT.with(Cell::get));
        set_max_size(MAX_SIZE);
    }
}
