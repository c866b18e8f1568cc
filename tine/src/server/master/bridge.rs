//! The publish/subscribe bridge between the two masters of a binary
//! upgrade (see `server/upgrade.rs`): while both run, each relays what its
//! own workers publish to the other, and what arrives from the other to
//! its own workers (never back: a message crosses once). So a message
//! published on either generation reaches the subscribers of both, as
//! `SIGHUP` (one master relaying to its draining workers too) already
//! had it; before, for the seconds the old workers drained, each
//! generation heard only itself.
//!
//! The bridge is a socket pair like a worker's control channel, with the
//! same framing, bound and flow control (`pubsub::relay`): while the
//! other master is behind on it, this master stops reading what its own
//! workers publish (their publishers are slowed down, not dropped), and
//! while this master's workers are behind, it stops reading the bridge;
//! only a master stalled for the relay's `STALL` loses messages, counted
//! and logged per streak, as a stuck worker does.

use std::io;

use log::{debug, error};
use mio::{Interest, Registry, Token};

use super::links::relay;
use super::Master;
use crate::pubsub::relay as flow;
use crate::server::control::{self, Channel, Msg, Received, SendNoSignal};

/// The bridge's token in the master's poll.
pub(super) const BRIDGE_TOKEN: Token = Token(usize::MAX - 2);

/// The source of messages that came over the bridge, for flow control (no
/// worker has this id).
pub(super) const FROM_BRIDGE: usize = usize::MAX;

/// This master's end of the bridge.
pub(super) struct Bridge {
    stream: mio::net::UnixStream,
    chan: Channel,
    lane: flow::Lane,
    /// The last read stopped at its limit: read on without an event.
    more: bool,
}

impl Bridge {
    /// Registers `stream` (one end of the pair) in the master's poll.
    pub(super) fn new(
        stream: std::os::unix::net::UnixStream,
        max_payload: usize,
        registry: &Registry,
    ) -> io::Result<Bridge> {
        stream.set_nonblocking(true)?;
        let mut stream = mio::net::UnixStream::from_std(stream);
        registry.register(
            &mut stream,
            BRIDGE_TOKEN,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        Ok(Bridge {
            stream,
            chan: Channel::with_limit(max_payload),
            lane: flow::Lane::default(),
            more: false,
        })
    }

    /// Whether the other master is behind on what this one sends it.
    pub(super) fn holds_back(&mut self, now: std::time::Instant) -> bool {
        self.lane.holds_back(self.chan.pending_out(), now)
    }

    /// A message one of this master's workers published: to the other
    /// master's workers too.
    pub(super) fn forward(&mut self, payload: &[u8]) {
        let queued = self.chan.try_queue(control::PUBLISH, payload);
        let ok = queued.is_ok();
        self.lane
            .queued(queued, &"the other master (binary upgrade)");
        if ok {
            let _ = self.chan.flush_to(&mut SendNoSignal(&self.stream));
        }
    }
}

impl Master {
    /// The bridge is readable or writable (or its last read stopped at
    /// its limit): what is queued goes out, and what the other master's
    /// workers published goes to this master's workers.
    pub(super) fn on_bridge(&mut self) {
        let Some(bridge) = self.bridge.as_mut() else {
            return;
        };
        bridge.more = false;
        if let Err(e) = bridge.chan.flush_to(&mut SendNoSignal(&bridge.stream)) {
            debug!("bridge write: {e}");
        }
        if self.relay_holds_back(FROM_BRIDGE) {
            // This master's workers are behind: read on once they caught
            // up (`resume_relay` comes back here).
            if let Some(bridge) = self.bridge.as_mut() {
                bridge.more = true;
            }
            return;
        }
        let Some(bridge) = self.bridge.as_mut() else {
            return;
        };
        let others = &mut self.links;
        let mut malformed = false;
        let received = bridge
            .chan
            .receive_some(&mut bridge.stream, flow::READ_LIMIT, |msg| match msg {
                Msg::Publish(payload) => relay(others, control::PUBLISH, &payload),
                Msg::Malformed { kind, len } => {
                    error!(
                        "malformed frame (kind {kind}, length {len}) from the other master; \
                         closing the bridge"
                    );
                    malformed = true;
                }
                other => debug!("ignoring {other:?} from the other master"),
            });
        let gone = match received {
            Ok(Received::Eof) => true,
            Ok(Received::Drained) => false,
            Ok(Received::More) => {
                bridge.more = true;
                false
            }
            Err(e) => {
                debug!("bridge read: {e}");
                true
            }
        };
        if gone || malformed {
            self.drop_bridge();
        }
    }

    /// Whether the bridge's last read stopped at its limit.
    pub(super) fn bridge_has_more(&self) -> bool {
        self.bridge.as_ref().is_some_and(|b| b.more)
    }

    /// The other master is gone (or the upgrade failed): nothing crosses
    /// any more.
    pub(super) fn drop_bridge(&mut self) {
        if let Some(mut b) = self.bridge.take() {
            let _ = self.poll.registry().deregister(&mut b.stream);
        }
    }
}
