//! The master's side of the control channels: one [`Link`] per worker,
//! the messages it reads from them (READY, RECYCLE, PUBLISH, ...), and the
//! relay of published messages to the other workers, with its flow control
//! (`pubsub::relay`).

use std::collections::BTreeMap;
use std::time::Instant;

use log::{debug, error, info, warn};
use mio::Token;

use super::Master;
use crate::pubsub::relay;
use crate::server::control::{self, Channel, Msg, Received, Refused, SendNoSignal};
use crate::server::supervisor::{Command, Event, WorkerId};

pub(super) fn token(worker: WorkerId) -> Token {
    Token(worker + 1)
}

/// Forwards one frame to every worker of `others` (the publisher is not
/// among them) with an open channel. A worker whose queue is full, or for
/// which the master has no memory to queue the frame, loses it (counted
/// and logged per streak), so a stuck worker cannot make the master grow
/// and a failed allocation costs a message, not the master. Flow control
/// (`relay_holds_back`) keeps queues from filling up otherwise.
pub(super) fn relay(others: &mut BTreeMap<WorkerId, Link>, kind: u8, payload: &[u8]) {
    for link in others.values_mut() {
        let Some(stream) = link.stream.as_ref() else {
            continue;
        };
        let queued = link.chan.try_queue(kind, payload);
        link.lane.queued(
            queued,
            &format_args!("worker {} (pid {})", link.slot, link.pid),
        );
        if queued.is_ok() {
            let _ = link.chan.flush_to(&mut SendNoSignal(stream));
        }
    }
}

/// The master's end of one worker's control channel.
pub(super) struct Link {
    pub(super) pid: i32,
    pub(super) slot: usize,
    /// `None` once the channel hit EOF or was closed.
    pub(super) stream: Option<mio::net::UnixStream>,
    pub(super) chan: Channel,
    /// Flow control of the messages relayed to it.
    pub(super) lane: relay::Lane,
}

impl Master {
    pub(super) fn on_control(&mut self, token: Token, readable: bool, happened: &mut Vec<Event>) {
        let worker = token.0 - 1;
        let Some(link) = self.links.get_mut(&worker) else {
            return;
        };
        let Some(stream) = link.stream.as_mut() else {
            return;
        };
        // Writable (or any event): push out what is queued.
        if let Err(e) = link.chan.flush_to(&mut SendNoSignal(&*stream)) {
            debug!(
                "control write to worker {} (pid {}): {e}",
                link.slot, link.pid
            );
        }
        if !readable {
            return;
        }
        if self.relay_holds_back(worker) {
            // Read later (resume_relay), when the others have caught up.
            if !self.relay_paused.contains(&worker) {
                self.relay_paused.push(worker);
            }
            return;
        }
        // The link is out of the map while its channel is read, so that
        // each message is relayed to the others (still in it) as soon as it
        // is decoded. Gathering a read's messages first held up to
        // `READ_LIMIT` of them at once, each in an allocation of its own,
        // at a client's command (see `control::try_grow`).
        let Some(mut link) = self.links.remove(&worker) else {
            return;
        };
        let (slot, pid) = (link.slot, link.pid);
        let Some(stream) = link.stream.as_mut() else {
            self.links.insert(worker, link);
            return;
        };
        let mut close = false;
        let others = &mut self.links;
        // During a binary upgrade, the other master's workers hear them too.
        let mut bridge = self.bridge.as_mut();
        let received = link
            .chan
            .receive_some(stream, relay::READ_LIMIT, |msg| match msg {
                Msg::Ready => happened.push(Event::Ready { worker }),
                Msg::Publish(payload) => {
                    relay(others, control::PUBLISH, &payload);
                    if let Some(b) = bridge.as_deref_mut() {
                        b.forward(&payload);
                    }
                }
                Msg::Dropped {
                    kind: control::PUBLISH,
                    ..
                } => {
                    // No memory to read it: lost for every other worker.
                    for link in others.values_mut().filter(|l| l.stream.is_some()) {
                        let who = format_args!("worker {} (pid {})", link.slot, link.pid);
                        link.lane.queued(Err(Refused::NoMemory), &who);
                    }
                }
                // `ServerHandle::stop` in a worker: the stop `SIGTERM`
                // makes (the worker may run as a user that cannot signal
                // its master).
                Msg::Stop => {
                    info!(
                        "worker {slot} (pid {pid}) asked for a graceful stop (ServerHandle::stop)"
                    );
                    happened.push(Event::Command(Command::Stop));
                }
                Msg::Recycle(served) => happened.push(Event::Recycle {
                    worker,
                    reason: format!("served {served} responses (max_requests)"),
                }),
                Msg::Adopt(_) | Msg::Release(_) => {
                    warn!("worker {slot} (pid {pid}) sent a master's message; ignored");
                }
                Msg::Other { kind, .. } => {
                    debug!("ignoring control message kind {kind} from pid {pid}");
                }
                Msg::Dropped { kind, len } => {
                    warn!(
                        "no memory for a control message (kind {kind}, {len} bytes) from \
                         worker {slot} (pid {pid}); skipped"
                    );
                }
                Msg::Malformed { kind, len } => {
                    error!(
                        "malformed control frame (kind {kind}, length {len}) from worker {slot} \
                         (pid {pid}); closing its channel"
                    );
                    close = true;
                }
            });
        let eof = match received {
            Ok(Received::Eof) => true,
            Ok(Received::Drained) => false,
            Ok(Received::More) => {
                // Relay this much first; flow control decides about the rest.
                if !self.read_more.contains(&worker) {
                    self.read_more.push(worker);
                }
                false
            }
            Err(e) => {
                debug!("control read from worker {slot} (pid {pid}): {e}");
                true
            }
        };
        if eof || close {
            if let Some(mut stream) = link.stream.take() {
                let _ = self.poll.registry().deregister(&mut stream);
            }
            happened.push(Event::ChannelClosed { worker });
        }
        self.links.insert(worker, link);
    }

    /// Whether published messages from `source` must wait: another worker
    /// is behind on what the master relays to it (see `pubsub::relay`),
    /// or, for this master's own workers' messages during a binary
    /// upgrade, the other master is behind on the bridge. (What comes over
    /// the bridge, `source` [`super::bridge::FROM_BRIDGE`], goes to this
    /// master's workers only.)
    pub(super) fn relay_holds_back(&mut self, source: WorkerId) -> bool {
        let now = Instant::now();
        let mut held = false;
        for (&worker, link) in self.links.iter_mut() {
            let pending = if link.stream.is_some() {
                link.chan.pending_out()
            } else {
                0
            };
            held |= link.lane.holds_back(pending, now) && worker != source;
        }
        if let Some(bridge) = self.bridge.as_mut() {
            held |= bridge.holds_back(now) && source != super::bridge::FROM_BRIDGE;
        }
        held
    }

    /// Reads from the workers paused by flow control, once it allows, and
    /// on from those whose last read stopped at its limit.
    pub(super) fn resume_relay(&mut self, happened: &mut Vec<Event>) {
        if self.bridge_has_more() {
            self.on_bridge();
        }
        let paused = std::mem::take(&mut self.relay_paused);
        let more = std::mem::take(&mut self.read_more);
        for worker in paused.into_iter().chain(more) {
            self.on_control(token(worker), true, happened);
        }
    }

    pub(super) fn send(&mut self, worker: WorkerId, kind: u8, payload: &[u8]) -> bool {
        let Some(link) = self.links.get_mut(&worker) else {
            return false;
        };
        let Some(stream) = link.stream.as_ref() else {
            return false;
        };
        if !link.chan.queue(kind, payload) {
            return false;
        }
        let _ = link.chan.flush_to(&mut SendNoSignal(stream));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::control::starve::starve;

    /// The master's relay with no memory to queue a message for the other
    /// workers: the message is dropped for each and counted in its lane
    /// (as for a worker whose queue is full); the master goes on, and
    /// relays the next message once memory is back. (With `Vec`'s own
    /// growth, the allocation failure aborted the master.)
    #[test]
    fn a_relay_without_memory_drops_the_message_for_each_worker_and_goes_on() {
        let mut others = BTreeMap::new();
        let mut workers = Vec::new();
        for w in 0..2 {
            let (master_end, worker_end) = control::pair().unwrap();
            others.insert(
                w,
                Link {
                    pid: 100 + w as i32,
                    slot: w,
                    stream: Some(mio::net::UnixStream::from_std(master_end)),
                    chan: Channel::default(),
                    lane: relay::Lane::default(),
                },
            );
            workers.push(worker_end);
        }
        {
            let _starved = starve();
            relay(&mut others, control::PUBLISH, &vec![7u8; 100_000]);
            relay(&mut others, control::PUBLISH, b"second");
        }
        for link in others.values() {
            assert_eq!(link.lane.streak(), 2);
            assert_eq!(link.chan.pending_out(), 0);
        }
        relay(&mut others, control::PUBLISH, b"back");
        for (link, worker) in others.values().zip(&workers) {
            assert_eq!(link.lane.streak(), 0, "the streak ended");
            let mut rx = Channel::default();
            let mut got = Vec::new();
            let mut r = worker;
            assert!(!rx.receive(&mut r, |m| got.push(m)).unwrap());
            assert_eq!(got, [Msg::Publish(b"back".to_vec())]);
        }
    }
}
