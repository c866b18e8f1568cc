//! The event loop: one per process, owning every connection.
//!
//! mio (epoll/kqueue), edge-triggered: every accept drains until
//! `WouldBlock`. Connections live in a slab keyed by their mio token; the
//! loop tells a connection when its socket is ready, drives it, and keeps
//! the one timer it asks for in a timing wheel. What a connection does with
//! its bytes (HTTP/1.1, WebSocket) is its own business (`conn`).
//!
//! Fairness: a connection gets a bounded share of each loop turn (a number
//! of requests and of bytes read). One with work left when its share is
//! spent goes to a ready queue and is driven again after the others; the
//! loop then polls without sleeping. That queue matters with
//! edge-triggered epoll: input left in the socket raises no new event.
//! Connections whose handlers publish stop decoding while the publish
//! outbox is full (parked) and resume once the loop has delivered it.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use super::conn::{Conn, Expired, Next, Shared, DRAIN_IDLE};
use super::control::{self, Channel, Msg, SendNoSignal};
use super::per_ip::PerIp;
use super::timer::{Entry, Wheel};
use super::ServerConfig;
use crate::pubsub::{self, Bus, Offer, Payload, Published, Topics};
use crate::service::Service;

const SIGNALS: Token = Token(usize::MAX);
/// The control channel to the master (worker processes only).
const CONTROL: Token = Token(usize::MAX - 1);
/// The Redis subscriber and publisher connections.
const REDIS_SUB: Token = Token(usize::MAX - 2);
const REDIS_PUB: Token = Token(usize::MAX - 3);
/// Listener `i` has token `LISTENER0 + i`; connection keys stay below.
const LISTENER0: usize = usize::MAX / 2;
/// Pause in accepting after the process ran out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

struct Listener {
    socket: TcpListener,
    /// This process accepts on it (a worker holds every listener of the
    /// master but accepts only on its own, plus adopted ones).
    active: bool,
    registered: bool,
}

/// A worker's link to its master: READY/ADOPT messages, and EOF when the
/// master is gone.
struct MasterLink {
    stream: mio::net::UnixStream,
    channel: Channel,
}

/// A connection and the loop's bookkeeping for it.
struct Slot {
    conn: Conn<TcpStream>,
    /// Tells this connection from a later one given the same key.
    generation: u32,
    /// The deadline its timer was last set for.
    deadline: Instant,
    /// The wheel tick of its earliest live timer entry.
    timer_tick: Option<u64>,
    /// In the ready or parked list.
    scheduled: bool,
}

pub(crate) struct EventLoop {
    poll: Poll,
    listeners: Vec<Listener>,
    conns: Slab<Slot>,
    generation: u32,
    wheel: Wheel,
    due: Vec<Entry>,
    shared: Shared,
    now: Instant,
    drain_deadline: Option<Instant>,
    /// Accepting is paused (descriptor exhaustion) until then.
    accept_resume: Option<Instant>,
    signals: Signals,
    master: Option<MasterLink>,
    /// WebSocket subscribers by topic.
    topics: Topics,
    /// Where published messages go: the master relay, or Redis.
    bus: Bus,
    /// `deliver_published` is running (driving a connection from inside
    /// it must not start it again).
    delivering: bool,
    /// The outbox holds messages the bus could take but the delivery
    /// rounds ended: poll without waiting.
    more_to_deliver: bool,
    /// The bus refused the last message offered (until its socket drains).
    bus_full: bool,
    /// Connections that used up their turn with work left, by `(key,
    /// generation)`, in the order they are driven again.
    ready: VecDeque<(usize, u32)>,
    /// Connections waiting for room in the publish outbox.
    parked: Vec<(usize, u32)>,
    /// Open connections by client address.
    per_ip: PerIp,
}

impl EventLoop {
    /// A loop accepting on `listeners[i]` for each `i` in `active`; a
    /// worker also gets its control channel to the master.
    pub(crate) fn new(
        service: Service,
        config: ServerConfig,
        listeners: Vec<TcpListener>,
        active: &[usize],
        control: Option<std::os::unix::net::UnixStream>,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let now = Instant::now();
        let per_ip_limit = config.limits.max_connections_per_ip;
        let bus = Bus::new(config.redis_url.as_deref())?;
        let mut this = EventLoop {
            poll,
            listeners: listeners
                .into_iter()
                .enumerate()
                .map(|(i, socket)| Listener {
                    socket,
                    active: active.contains(&i),
                    registered: false,
                })
                .collect(),
            conns: Slab::new(),
            generation: 0,
            wheel: Wheel::new(now),
            due: Vec::new(),
            shared: Shared::new(service, config, now),
            now,
            drain_deadline: None,
            accept_resume: None,
            signals,
            master: None,
            topics: Topics::new(),
            bus,
            delivering: false,
            more_to_deliver: false,
            bus_full: false,
            ready: VecDeque::new(),
            parked: Vec::new(),
            per_ip: PerIp::new(per_ip_limit),
        };
        this.bus
            .register(this.poll.registry(), REDIS_SUB, REDIS_PUB)?;
        this.set_accepting(true);
        if let Some(control) = control {
            control.set_nonblocking(true)?;
            let mut stream = mio::net::UnixStream::from_std(control);
            this.poll.registry().register(
                &mut stream,
                CONTROL,
                Interest::READABLE | Interest::WRITABLE,
            )?;
            this.master = Some(MasterLink {
                stream,
                channel: Channel::new(),
            });
            this.tell_master_ready();
        }
        Ok(this)
    }

    /// Runs until a stop signal has been handled and the drain finished.
    pub(crate) fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = if self.ready.is_empty() && !self.more_to_deliver {
                self.wheel.until_next_tick(self.now)
            } else {
                // Work is waiting: only look for new events, do not sleep.
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            self.now = Instant::now();
            self.shared.now = self.now;
            self.shared.date.tick(self.now);
            for event in events.iter() {
                match event.token() {
                    SIGNALS => {
                        if self.signals.pending().next().is_some() {
                            self.begin_drain();
                        }
                    }
                    CONTROL => self.on_control(),
                    REDIS_SUB | REDIS_PUB => self.on_redis(event.token()),
                    Token(t) if t >= LISTENER0 => self.accept(t - LISTENER0),
                    Token(key) => {
                        if let Some(slot) = self.conns.get_mut(key) {
                            if event.is_readable() || event.is_read_closed() || event.is_error() {
                                slot.conn.readable();
                            }
                            self.drive(key);
                        }
                    }
                }
            }
            self.drive_ready();
            self.bus.tick(self.now, self.poll.registry());
            self.more_to_deliver = false;
            if !pubsub::outbox_is_empty() || !self.parked.is_empty() {
                self.deliver_published();
            }
            self.fire_timers();
            if let Some(at) = self.accept_resume {
                if self.now >= at {
                    self.accept_resume = None;
                    self.set_accepting(true);
                }
            }
            if let Some(deadline) = self.drain_deadline {
                if self.conns.is_empty() {
                    log::info!("drained; exiting");
                    return Ok(());
                }
                if self.now >= deadline {
                    log::warn!(
                        "drain deadline passed; closing {} connection(s)",
                        self.conns.len()
                    );
                    return Ok(());
                }
            }
        }
    }

    /// Starts a graceful shutdown: stop accepting, close idle connections,
    /// let the others finish their current exchange.
    fn begin_drain(&mut self) {
        if self.drain_deadline.is_some() {
            return;
        }
        self.drain_deadline = Some(self.now + self.shared.config.limits.drain_timeout);
        let dropped = pubsub::stats().dropped;
        if dropped > 0 {
            log::warn!("{dropped} published message(s) could not be sent on");
        }
        self.shared.draining = true;
        self.set_accepting(false);
        let idle: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, s)| s.conn.idle())
            .map(|(k, _)| k)
            .collect();
        for key in idle {
            self.set_deadline(key, self.now + DRAIN_IDLE);
        }
        // WebSocket peers get a close with 1001 and until the drain
        // deadline to answer it.
        let sockets: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, s)| s.conn.any_session().is_some())
            .map(|(k, _)| k)
            .collect();
        for key in sockets {
            self.conns[key].conn.go_away();
            self.drive(key);
        }
        log::info!(
            "stop requested: draining {} connection(s)",
            self.conns.len()
        );
    }

    /// Tells the master this worker is accepting (at start and after an
    /// adoption).
    fn tell_master_ready(&mut self) {
        if let Some(link) = &mut self.master {
            link.channel.queue(control::READY, &[]);
            if let Err(e) = link.channel.flush_to(&mut SendNoSignal(&link.stream)) {
                log::warn!("control channel: {e}");
            }
        }
    }

    fn on_control(&mut self) {
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

    /// Stops accepting on a listener the master had lent this worker
    /// (another worker accepts on it again); the socket stays open.
    fn release(&mut self, index: usize) {
        if let Some(l) = self.listeners.get_mut(index).filter(|l| l.active) {
            log::info!("releasing listener {index}");
            l.active = false;
            if l.registered {
                let _ = self.poll.registry().deregister(&mut l.socket);
                l.registered = false;
            }
        }
    }

    fn set_accepting(&mut self, on: bool) {
        let on = on && self.drain_deadline.is_none() && self.accept_resume.is_none();
        for (i, l) in self.listeners.iter_mut().enumerate() {
            if on && l.active && !l.registered {
                let token = Token(LISTENER0 + i);
                if let Err(e) =
                    self.poll
                        .registry()
                        .register(&mut l.socket, token, Interest::READABLE)
                {
                    log::error!("cannot watch the listener: {e}");
                    continue;
                }
                l.registered = true;
            } else if !on && l.registered {
                let _ = self.poll.registry().deregister(&mut l.socket);
                l.registered = false;
            }
        }
    }

    fn accept(&mut self, index: usize) {
        let max = self.shared.config.limits.max_connections;
        loop {
            if self.conns.len() >= max {
                log::warn!("{max} connections open (the limit); pausing accept");
                self.set_accepting(false);
                return;
            }
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            if !listener.registered {
                return;
            }
            match listener.socket.accept() {
                Ok((mut stream, peer)) => {
                    if !self.per_ip.admit(peer.ip()) {
                        log::debug!("{} has too many connections; closing one", peer.ip());
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let entry = self.conns.vacant_entry();
                    let key = entry.key();
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        Token(key),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        log::warn!("cannot watch a new connection: {e}");
                        self.per_ip.release(peer.ip());
                        continue;
                    }
                    self.generation = self.generation.wrapping_add(1);
                    entry.insert(Slot {
                        conn: Conn::new(stream, peer, self.now),
                        generation: self.generation,
                        deadline: self.now,
                        timer_tick: None,
                        scheduled: false,
                    });
                    let deadline = self.now + self.shared.config.limits.header_timeout;
                    self.set_deadline(key, deadline);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_resource_exhaustion(&e) => {
                    log::warn!("accept failed ({e}); pausing accept for {ACCEPT_BACKOFF:?}");
                    self.set_accepting(false);
                    self.accept_resume = Some(self.now + ACCEPT_BACKOFF);
                    return;
                }
                // ECONNABORTED and friends concern one connection only.
                Err(e) => log::debug!("accept: {e}"),
            }
        }
    }

    /// Drives once each connection that was ready when the turn began;
    /// those that yield again go to the back, behind any that yield now.
    fn drive_ready(&mut self) {
        for _ in 0..self.ready.len() {
            let Some((key, generation)) = self.ready.pop_front() else {
                break;
            };
            match self.conns.get_mut(key) {
                Some(slot) if slot.generation == generation => {
                    slot.scheduled = false;
                    self.drive(key);
                }
                _ => {}
            }
        }
    }

    /// Drives a connection, then hands what its handlers published to the
    /// bus at once (not only at the end of the loop turn, so the outbox
    /// does not fill up with a whole turn's worth of messages).
    fn drive(&mut self, key: usize) {
        self.drive_one(key);
        if !pubsub::outbox_is_empty() {
            self.deliver_published();
        }
    }

    fn drive_one(&mut self, key: usize) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        match slot.conn.drive(&mut self.shared) {
            Next::Close => {
                self.close(key);
                return;
            }
            Next::Keep => {}
            next => {
                if !slot.scheduled {
                    slot.scheduled = true;
                    let entry = (key, slot.generation);
                    if next == Next::Yield {
                        self.ready.push_back(entry);
                    } else {
                        self.parked.push(entry);
                    }
                }
            }
        }
        // Always, lingering too: a `/leave` read together with the close
        // frame must still leave.
        if let Some(ws) = slot.conn.any_session_mut() {
            self.topics
                .apply((key, slot.generation), ws.topic_changes.drain(..));
        }
        let deadline = slot.conn.deadline(&self.shared);
        self.set_deadline(key, deadline);
    }

    fn set_deadline(&mut self, key: usize, at: Instant) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        slot.deadline = at;
        let tick = self.wheel.tick_of(at);
        if slot.timer_tick.is_none_or(|t| tick < t) {
            slot.timer_tick = Some(self.wheel.schedule(key, slot.generation, at));
        }
    }

    fn fire_timers(&mut self) {
        self.wheel.expire(self.now, &mut self.due);
        let due = std::mem::take(&mut self.due);
        for entry in &due {
            let Some(slot) = self.conns.get_mut(entry.key) else {
                continue;
            };
            if slot.generation != entry.generation || slot.timer_tick != Some(entry.tick) {
                continue; // a stale entry: the connection has a sooner one
            }
            slot.timer_tick = None;
            if slot.deadline > self.now {
                let (key, at) = (entry.key, slot.deadline);
                self.set_deadline(key, at);
                continue;
            }
            match slot.conn.timed_out(&mut self.shared) {
                Expired::Close => self.close(entry.key),
                Expired::Drive => self.drive(entry.key),
            }
        }
        self.due = due;
        self.due.clear();
    }

    fn close(&mut self, key: usize) {
        let Slot { mut conn, .. } = self.conns.remove(key);
        self.per_ip.release(conn.peer().ip());
        let _ = self.poll.registry().deregister(conn.transport_mut());
        conn.closed();
        if let Some(ws) = conn.any_session() {
            let changed = ws.topic_changes.iter().map(|(_, t)| t.as_str());
            self.topics
                .remove_connection(key, ws.topics.iter().map(String::as_str).chain(changed));
        }
        drop(conn);
        if self.conns.len() < self.shared.config.limits.max_connections
            && self.listeners.iter().any(|l| l.active && !l.registered)
        {
            self.set_accepting(true);
        }
    }
}

impl EventLoop {
    /// Hands what handlers published to the bus, oldest first, delivering
    /// each message to this process's subscribers as it goes, until the
    /// outbox is empty or the bus is full (the rest waits in the outbox for
    /// the bus to drain, and publishing connections stay parked). Parked
    /// connections go back to the ready queue once the outbox has room.
    fn deliver_published(&mut self) {
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
    fn send_outbox(&mut self) {
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
    fn on_redis(&mut self, token: Token) {
        let mut incoming = Vec::new();
        self.bus
            .on_event(token, self.poll.registry(), &mut incoming);
        for published in &incoming {
            self.deliver_local(published);
        }
    }

    /// Sends a published message to this process's subscribers.
    fn deliver_local(&mut self, published: &Published) {
        let subscribers = self.topics.subscribers(&published.topic);
        if subscribers.is_empty() {
            return;
        }
        let message = match &published.payload {
            Payload::Text(t) => tungstenite::Message::Text(t.as_str().into()),
            Payload::Binary(b) => tungstenite::Message::Binary(b.clone()),
        };
        let keys: Vec<usize> = subscribers
            .iter()
            .filter_map(|&(key, generation)| {
                let slot = self
                    .conns
                    .get_mut(key)
                    .filter(|s| s.generation == generation)?;
                slot.conn.session_mut()?.deliver(message.clone());
                Some(key)
            })
            .collect();
        for key in keys {
            self.drive_one(key);
        }
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_errno::EMFILE | libc_errno::ENFILE | libc_errno::ENOBUFS | libc_errno::ENOMEM)
    )
}

/// errno values, from rustix so no `libc` dependency is needed.
mod libc_errno {
    pub(super) const EMFILE: i32 = rustix::io::Errno::MFILE.raw_os_error();
    pub(super) const ENFILE: i32 = rustix::io::Errno::NFILE.raw_os_error();
    pub(super) const ENOBUFS: i32 = rustix::io::Errno::NOBUFS.raw_os_error();
    pub(super) const ENOMEM: i32 = rustix::io::Errno::NOMEM.raw_os_error();
}
