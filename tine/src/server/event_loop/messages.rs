//! What a loop hears besides its connections: the control channel to the
//! master (READY, ADOPT, RELEASE, relayed messages, EOF; RECYCLE sent) and the pub/sub
//! bus (handing the outbox over, Redis events, local delivery).

use mio::Token;

use super::EventLoop;
use crate::pubsub::{self, Offer, Payload, Published};
use crate::server::control::{self, Channel, Msg, SendNoSignal};

/// A worker's link to its master: READY/ADOPT messages, and EOF when the
/// master is gone.
pub(super) struct MasterLink {
    pub(super) stream: mio::net::UnixStream,
    pub(super) channel: Channel,
}

impl EventLoop {
    /// Tells the master this worker is accepting (at start and after an
    /// adoption).
    pub(super) fn tell_master_ready(&mut self) {
        if let Some(link) = &mut self.master {
            link.channel.queue(control::READY, &[]);
            if let Err(e) = link.channel.flush_to(&mut SendNoSignal(&link.stream)) {
                log::warn!("control channel: {e}");
            }
        }
    }

    /// A [`ServerHandle`](crate::ServerHandle) used in this worker asked
    /// for the server's stop: the master is asked for it (`STOP`), which
    /// it takes as `SIGTERM`.
    pub(super) fn tell_master_stop(&mut self) {
        if let Some(link) = &mut self.master {
            link.channel.queue(control::STOP, &[]);
            if let Err(e) = link.channel.flush_to(&mut SendNoSignal(&link.stream)) {
                log::warn!("control channel: {e}");
            }
        }
    }

    /// Past `max_requests`: asks the master, once, for a replacement
    /// (`RECYCLE`); this worker serves on until the master stops it.
    pub(super) fn ask_for_replacement(&mut self) {
        let master = self.master.as_mut().map(|l| (&mut l.channel, &l.stream));
        self.shared.budget.tell_master(master);
    }

    pub(super) fn on_control(&mut self) {
        let Some(link) = &mut self.master else {
            return;
        };
        let mut messages = Vec::new();
        let eof = match link.channel.receive(&mut link.stream, |m| messages.push(m)) {
            Ok(eof) => eof,
            Err(e) => {
                log::warn!("control channel: {e}");
                true
            }
        };
        let _ = link.channel.flush_to(&mut SendNoSignal(&link.stream));
        for msg in messages {
            match msg {
                Msg::Adopt(index) => {
                    let index = index as usize;
                    if let Some(l) = self.listeners.get_mut(index) {
                        log::info!("adopting listener {index}");
                        l.active = true;
                        self.set_accepting(true);
                        self.tell_master_ready();
                    }
                }
                Msg::Release(index) => self.release(index as usize),
                Msg::Publish(payload) => match pubsub::wire::decode(&payload) {
                    Some(published) => self.deliver_local(&published),
                    None => log::warn!("dropping a malformed relayed message"),
                },
                #[cfg(feature = "tls")]
                Msg::Other {
                    kind: control::TLS,
                    payload,
                } => crate::server::tls::on_control(&payload),
                Msg::Dropped { kind, len } => {
                    // No memory to read it (`control::try_grow`).
                    log::warn!(
                        "no memory for a control message (kind {kind}, {len} bytes); skipped"
                    );
                    if kind == control::PUBLISH {
                        pubsub::stats::add_dropped(1);
                    }
                }
                Msg::Malformed { .. } => {
                    log::error!("malformed control message; stopping");
                    self.begin_drain();
                }
                _ => {}
            }
        }
        if eof {
            log::warn!("the master is gone; draining and exiting");
            if let Some(mut link) = self.master.take() {
                let _ = self.poll.registry().deregister(&mut link.stream);
            }
            self.begin_drain();
        }
    }
}

impl EventLoop {
    /// Hands what handlers published to the bus, oldest first, delivering
    /// each message to this process's subscribers as it goes, until the
    /// outbox is empty or the bus is full (the rest waits in the outbox for
    /// the bus to drain, and publishing connections stay parked). Parked
    /// connections go back to the ready queue once the outbox has room.
    pub(super) fn deliver_published(&mut self) {
        if self.delivering {
            return;
        }
        self.delivering = true;
        // Delivery drives subscribers, whose handlers may publish again;
        // bound the rounds so a feedback loop cannot spin here (the loop
        // comes back at once while work is left).
        for _ in 0..16 {
            self.send_outbox();
            if pubsub::outbox_is_empty() || self.bus_full {
                break;
            }
        }
        self.more_to_deliver = !pubsub::outbox_is_empty() && !self.bus_full;
        if !self.parked.is_empty() && pubsub::outbox_has_room() {
            self.ready.extend(self.parked.drain(..));
        }
        self.delivering = false;
    }

    /// Moves messages from the outbox to the bus until it is empty or the
    /// bus is full.
    pub(super) fn send_outbox(&mut self) {
        self.bus_full = false;
        while let Some(published) = pubsub::outbox_pop() {
            let relay = self.master.as_mut().map(|link| &mut link.channel);
            match self.bus.offer(&published, relay, self.poll.registry()) {
                Offer::Full => {
                    pubsub::outbox_unpop(published);
                    self.bus_full = true;
                    break;
                }
                Offer::Taken { local } => {
                    if local {
                        self.deliver_local(&published);
                    }
                }
            }
        }
        if let Some(link) = &mut self.master {
            if let Err(e) = link.channel.flush_to(&mut SendNoSignal(&link.stream)) {
                log::warn!("control channel: {e}");
            }
        }
    }

    /// Drives the Redis connections and delivers what they received.
    pub(super) fn on_redis(&mut self, token: Token) {
        let mut incoming = Vec::new();
        self.bus
            .on_event(token, self.poll.registry(), &mut incoming);
        for published in &incoming {
            self.deliver_local(published);
        }
    }

    /// Sends a published message to this process's subscribers.
    pub(super) fn deliver_local(&mut self, published: &Published) {
        let subscribers = self.topics.subscribers(&published.topic);
        if subscribers.is_empty() {
            return;
        }
        let message = match &published.payload {
            Payload::Text(t) => {
                tungstenite::Message::Text((&*crate::sse::websocket_text(t)).into())
            }
            Payload::Binary(b) => tungstenite::Message::Binary(b.clone()),
        };
        let keys: Vec<usize> = subscribers
            .iter()
            .filter_map(|&(key, generation)| {
                let key = key as usize;
                let slot = self
                    .conns
                    .get_mut(key)
                    .filter(|s| s.generation == generation)?;
                if let Some(sse) = slot.conn.sse_mut() {
                    sse.deliver(&published.payload);
                } else {
                    slot.conn.session_mut()?.deliver(message.clone());
                }
                Some(key)
            })
            .collect();
        crate::pubsub::stats::add_delivered(keys.len() as u64);
        for key in keys {
            self.drive_one(key);
        }
    }
}
