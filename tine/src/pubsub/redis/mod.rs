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
//! At most once, like Redis pub/sub itself. While the publisher's outbound
//! queue holds [`MAX_OUTBOUND`] bytes, [`RedisBus::offer`] refuses more
//! (the message waits in the outbox, slowing the publisher down). A
//! message is dropped (counted in [`RedisBus::dropped`] and logged) when
//! the publisher is disconnected; messages still queued when a connection
//! fails are dropped too; and messages published while a subscriber is
//! reconnecting never reach it. What does
//! arrive arrives in publish order per publishing process: one connection
//! carries a process's messages, and Redis relays them in order.
//!
//! # Failures
//!
//! Any I/O error, EOF, protocol error, error reply (a wrong password, say),
//! connect taking longer than [`CONNECT_TIMEOUT`](link::CONNECT_TIMEOUT),
//! or a `PING` unanswered for [`PING_TIMEOUT`](link::PING_TIMEOUT) (sent
//! after [`PING_IDLE`](link::PING_IDLE) of silence, to notice
//! half-open connections) closes that connection; [`RedisBus::tick`]
//! reconnects it after a backoff of 100 ms doubling to 5 s, which resets
//! once the server answers properly. The subscriber sends `PSUBSCRIBE`
//! again on every reconnect.
//!
//! # Parts
//!
//! - `url.rs`: parsing `redis://` URLs;
//! - `resp.rs`: the RESP2 protocol (commands out, frames in);
//! - `link.rs`: one connection with its reconnect logic, and decoding of
//!   the messages it receives;
//! - this file: [`RedisBus`], the two links behind the [`Bus`](super::Bus).
//!
//! # Blocking
//!
//! Nothing blocks but resolving the host name in [`RedisBus::new`]; an IP
//! address needs no lookup. Reconnects reuse the addresses resolved there.

mod link;
mod resp;
mod url;

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Instant;

use mio::{Interest, Registry, Token};

use self::link::{Link, Role, State, KEEP_BUFFER};
use self::resp::{bulk_size, encode_bulk, encode_command, pattern_for, PUBLISH_HEAD};
pub(crate) use self::url::parse_url;
use super::{wire, Published};

#[cfg(test)]
use self::link::{CONNECT_TIMEOUT, PING_IDLE, PING_TIMEOUT};

/// Bytes the publisher may hold queued (not yet written to the socket);
/// a message that does not fit waits (one larger than this is dropped).
pub(crate) const MAX_OUTBOUND: usize = 8 * 1024 * 1024;

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::pubsub::Payload;

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

    #[test]
    fn new_rejects_bad_urls_and_starts_without_blocking() {
        assert!(RedisBus::new("http://127.0.0.1:1", "tine:").is_err());
        // Nothing listens on port 1: `new` still succeeds; the failure
        // shows up as an event and the bus retries.
        let bus = RedisBus::new("redis://127.0.0.1:1", "tine:").unwrap();
        assert_eq!(bus.dropped(), 0);
        assert!(format!("{bus:?}").contains("127.0.0.1:1"));
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

    fn free_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

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
    }
}
