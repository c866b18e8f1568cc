//! The bus: where the event loop sends what this process published, and
//! where messages published elsewhere come from.
//!
//! Two backends:
//! - **the master relay** (the default): a worker queues each message on
//!   its control channel to the master ([`control::PUBLISH`]), which relays
//!   it to every other worker; the message is delivered to this process's
//!   own subscribers at the same time. In single-process mode there is no
//!   channel and local delivery is all there is.
//! - **Redis** ([`App::redis`](crate::App::redis)): every process publishes
//!   to Redis and delivers what its subscription brings back, its own
//!   messages included (see [`super::redis`]).
//!
//! Either backend has a bounded queue. When it is full, [`Bus::offer`]
//! says so and the message stays in the outbox, which in turn stops the
//! loop from serving connections once it holds too much: backpressure
//! reaches the publishing client instead of messages being dropped.

use std::io;
use std::time::Instant;

use mio::{Registry, Token};

use super::redis::RedisBus;
use super::{stats, wire, Published};
use crate::server::control::{self, Channel, Refused};

/// What [`Bus::offer`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Taken (or dropped, counted and logged, if it can never be sent:
    /// then `local` is not set either, as a message reaches all
    /// subscribers or none); deliver it to this process's subscribers now
    /// when `local` is set.
    Taken { local: bool },
    /// The backend's queue is full: keep the message and offer it again
    /// once the queue drained (a writable event on its socket).
    Full,
}

/// This process's bus: the master relay or Redis.
#[derive(Debug)]
pub(crate) struct Bus {
    redis: Option<RedisBus>,
    /// Redis drops already added to [`stats`].
    redis_dropped: u64,
    /// Scratch buffer for a message's wire form.
    scratch: Vec<u8>,
    /// Messages dropped in a row for want of memory on the control
    /// channel (logged once at the start of the streak and at its end).
    no_memory: u64,
}

impl Bus {
    /// The master relay, or Redis at `redis_url`.
    pub(crate) fn new(redis_url: Option<&str>) -> io::Result<Bus> {
        let redis = redis_url
            .map(|url| RedisBus::new(url, "tine:"))
            .transpose()?;
        Ok(Bus {
            redis,
            redis_dropped: 0,
            scratch: Vec::new(),
            no_memory: 0,
        })
    }

    /// Registers the Redis connections (if any) with the loop's poll.
    pub(crate) fn register(
        &mut self,
        registry: &Registry,
        sub: Token,
        publ: Token,
    ) -> io::Result<()> {
        match &mut self.redis {
            Some(redis) => redis.register(registry, sub, publ),
            None => Ok(()),
        }
    }

    /// Offers one published message; `relay` is the control channel to the
    /// master (a worker's, without Redis), flushed by the caller.
    pub(crate) fn offer(
        &mut self,
        p: &Published,
        relay: Option<&mut Channel>,
        registry: &Registry,
    ) -> Offer {
        if let Some(redis) = &mut self.redis {
            let taken = redis.offer(p, registry);
            self.count_redis_drops();
            // Redis fans out to every process, this one included.
            return if taken {
                Offer::Taken { local: false }
            } else {
                Offer::Full
            };
        }
        let Some(channel) = relay else {
            return Offer::Taken { local: true };
        };
        if p.size() > channel.max_payload() || p.topic.len() > usize::from(u16::MAX) {
            // `publish` refuses these (its limit is the channel's), so this
            // is a bug; delivering it here alone would hide it.
            log::error!(
                "pub/sub: a {}-byte message to topic {:?} is too large to relay \
                 (limit {} bytes); dropped",
                p.size(),
                p.topic.get(..64).unwrap_or(&p.topic),
                channel.max_payload()
            );
            stats::add_dropped(1);
            return Offer::Taken { local: false };
        }
        self.scratch.clear();
        wire::encode(p, &mut self.scratch);
        let queued = channel.try_queue(control::PUBLISH, &self.scratch);
        if self.scratch.capacity() > 64 * 1024 {
            self.scratch = Vec::new();
        }
        if queued != Err(Refused::NoMemory) && self.no_memory > 0 {
            log::warn!(
                "pub/sub: memory for the relay is back; {} message(s) dropped meanwhile",
                self.no_memory
            );
            self.no_memory = 0;
        }
        match queued {
            Ok(()) => Offer::Taken { local: true },
            Err(Refused::Full) => Offer::Full,
            // The channel's queue could not grow (`control::try_grow`).
            // Kept for later, the message would wait for a writable event
            // that an empty queue never brings: dropped, like one that
            // can never be sent.
            Err(Refused::NoMemory | Refused::TooLarge) => {
                if self.no_memory == 0 {
                    log::error!(
                        "pub/sub: no memory to queue a {}-byte message for the relay; \
                         dropping messages until there is",
                        p.size()
                    );
                }
                self.no_memory += 1;
                stats::add_dropped(1);
                Offer::Taken { local: false }
            }
        }
    }

    /// Handles a readiness event of a Redis connection, appending what it
    /// received to `incoming`.
    pub(crate) fn on_event(
        &mut self,
        token: Token,
        registry: &Registry,
        incoming: &mut Vec<Published>,
    ) {
        if let Some(redis) = &mut self.redis {
            redis.on_event(token, registry, incoming);
            self.count_redis_drops();
        }
    }

    /// Runs the Redis timers (reconnects, keep-alive pings).
    pub(crate) fn tick(&mut self, now: Instant, registry: &Registry) {
        if let Some(redis) = &mut self.redis {
            redis.tick(now, registry);
            self.count_redis_drops();
        }
    }

    fn count_redis_drops(&mut self) {
        if let Some(redis) = &self.redis {
            stats::add_dropped(redis.dropped() - self.redis_dropped);
            self.redis_dropped = redis.dropped();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pubsub::Payload;
    use crate::server::control::starve::starve;

    /// A worker whose control channel has no memory for a message drops it
    /// (counted): kept for later, it would wait for a writable event an
    /// empty queue never brings.
    #[test]
    fn a_message_the_channel_has_no_memory_for_is_dropped_and_counted() {
        let poll = mio::Poll::new().unwrap();
        let mut bus = Bus::new(None).unwrap();
        let mut chan = Channel::default();
        let p = Published {
            topic: "t".into(),
            payload: Payload::Text("hello".into()),
        };
        let dropped = stats::snapshot().dropped;
        {
            let _starved = starve();
            let offer = bus.offer(&p, Some(&mut chan), poll.registry());
            assert_eq!(offer, Offer::Taken { local: false });
        }
        assert_eq!(stats::snapshot().dropped, dropped + 1);
        assert_eq!(chan.pending_out(), 0);
        let offer = bus.offer(&p, Some(&mut chan), poll.registry());
        assert_eq!(offer, Offer::Taken { local: true });
        assert_eq!(chan.pending_out(), control::HEADER_LEN + p.size());
        assert_eq!(bus.no_memory, 0);
    }
}
