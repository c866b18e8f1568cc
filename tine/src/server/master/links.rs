//! The master's side of the control channels: one [`Link`] per worker,
//! the messages it reads from them (READY, RECYCLE, PUBLISH, ...), and the
//! relay of published messages to the other workers, with its flow control
//! (`pubsub::relay`).

use std::time::Instant;

use log::{debug, error, warn};
use mio::Token;

use super::Master;
use crate::pubsub::relay;
use crate::server::control::{self, Channel, Msg, Received, SendNoSignal};
use crate::server::supervisor::{Event, WorkerId};

pub(super) fn token(worker: WorkerId) -> Token {
    Token(worker + 1)
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
        let Some(link) = self.links.get_mut(&worker) else {
            return;
        };
        let Some(stream) = link.stream.as_mut() else {
            return;
        };
        let mut msgs = Vec::new();
        let eof = match link
            .chan
            .receive_some(stream, relay::READ_LIMIT, |m| msgs.push(m))
        {
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
                debug!(
                    "control read from worker {} (pid {}): {e}",
                    link.slot, link.pid
                );
                true
            }
        };
        let (slot, pid) = (link.slot, link.pid);
        let mut close = eof;
        for msg in msgs {
            match msg {
                Msg::Ready => happened.push(Event::Ready { worker }),
                Msg::Publish(payload) => self.relay(worker, control::PUBLISH, &payload),
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
                Msg::Malformed { kind, len } => {
                    error!(
                        "malformed control frame (kind {kind}, length {len}) from worker {slot} \
                         (pid {pid}); closing its channel"
                    );
                    close = true;
                }
            }
        }
        if close {
            if let Some(mut stream) = self.links.get_mut(&worker).and_then(|l| l.stream.take()) {
                let _ = self.poll.registry().deregister(&mut stream);
            }
            happened.push(Event::ChannelClosed { worker });
        }
    }

    /// Forwards one frame to every other worker with an open channel; a
    /// worker whose queue is full loses the frame (counted and logged per
    /// streak), so a stuck worker cannot make the master grow. Flow
    /// control (`relay_holds_back`) keeps queues from filling up otherwise.
    pub(super) fn relay(&mut self, from: WorkerId, kind: u8, payload: &[u8]) {
        for (&worker, link) in self.links.iter_mut() {
            if worker == from {
                continue;
            }
            let Some(stream) = link.stream.as_ref() else {
                continue;
            };
            let queued = link.chan.queue(kind, payload);
            link.lane.queued(
                queued,
                &format_args!("worker {} (pid {})", link.slot, link.pid),
            );
            if queued {
                let _ = link.chan.flush_to(&mut SendNoSignal(stream));
            }
        }
    }

    /// Whether published messages from `source` must wait: another worker
    /// is behind on what the master relays to it (see `pubsub::relay`).
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
        held
    }

    /// Reads from the workers paused by flow control, once it allows, and
    /// on from those whose last read stopped at its limit.
    pub(super) fn resume_relay(&mut self, happened: &mut Vec<Event>) {
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
