//! The event loop: one per process, owning every connection.
//!
//! mio (epoll/kqueue), edge-triggered: every accept and read drains until
//! `WouldBlock`. Connections live in a slab keyed by their mio token.
//! Requests are decoded from a connection's buffer, answered in order, and
//! their responses gathered into one buffer that is written once per batch
//! (pipelining costs one write, not one per request). A connection whose
//! socket is full keeps its queued output and gets no more reading until it
//! drains, so a slow client only slows itself.
//!
//! Fairness: a connection gets a bounded share of each loop turn (a number
//! of requests and of bytes read). One with work left when its share is
//! spent goes to a ready queue and is driven again after the others; the
//! loop then polls without sleeping. That queue matters with
//! edge-triggered epoll: input left in the socket raises no new event.
//! Connections whose handlers publish stop decoding while the publish
//! outbox is full (parked) and resume once the loop has delivered it.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use http::{Method, StatusCode, Version};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use super::conn::{Conn, Discard, Flush, Pending, Phase};
use super::control::{self, Channel, Msg, SendNoSignal};
use super::redis::RedisBus;
use super::timer::{Entry, Wheel};
use crate::app::{Answer, App};
use crate::http::date::DateCache;
use crate::http::encode::{encode_head, status_allows_body, Connection, Length};
use crate::http::parse::Decoded;
use crate::http::{Body, Request, Response};
use crate::pubsub::{self, Payload, Published};
use crate::ws::session::Session;

const SIGNALS: Token = Token(usize::MAX);
/// The control channel to the master (worker processes only).
const CONTROL: Token = Token(usize::MAX - 1);
/// The Redis subscriber and publisher connections.
const REDIS_SUB: Token = Token(usize::MAX - 2);
const REDIS_PUB: Token = Token(usize::MAX - 3);
/// Listener `i` has token `LISTENER0 + i`; connection keys stay below.
const LISTENER0: usize = usize::MAX / 2;
/// Size of the read scratch buffer: one read takes at most this much.
const READ_CHUNK: usize = 64 * 1024;
/// Bodies up to this size are copied behind their head into one write;
/// larger ones are written from their own buffer.
const INLINE_BODY: usize = 16 * 1024;
/// Pipelined responses are gathered until this much output is queued.
const OUT_BATCH: usize = 256 * 1024;
/// Most requests (or WebSocket frames) one connection may have handled per
/// loop turn, and most bytes it may have read. A connection with
/// work left goes to the back of the ready queue, so one pipelining client
/// cannot hold the worker while others wait.
const TURN_REQUESTS: u32 = 64;
const TURN_READ: usize = 4 * READ_CHUNK;
/// How long a closing connection waits for the peer to close after our
/// last response before closing anyway.
const LINGER: Duration = Duration::from_secs(2);
/// How long a connection idle during a drain is kept before it is closed.
const DRAIN_IDLE: Duration = Duration::from_secs(1);
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

/// Buffers and settings shared by all connections of the loop, split from
/// the connection slab so both can be borrowed at once.
struct Shared {
    app: App,
    date: DateCache,
    scratch: Vec<u8>,
    /// An output buffer lent to a connection while it writes, so idle
    /// connections hold none.
    spare_out: Vec<u8>,
    draining: bool,
    /// The time of the current loop turn.
    now: Instant,
}

/// What a connection needs after being driven.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Wait for the socket's next event (or a timer).
    Keep,
    /// Its turn's budget is spent with work left (input buffered or still
    /// in the socket): drive it again after the others. Edge-triggered
    /// epoll will not report the unread input again.
    Yield,
    /// The publish outbox is full: read nothing more from it until the
    /// loop has delivered what is queued.
    Park,
    Close,
}

/// What one connection may still do in the current loop turn.
struct Budget {
    requests: u32,
    read: usize,
}

impl Budget {
    fn new() -> Self {
        Budget {
            requests: TURN_REQUESTS,
            read: TURN_READ,
        }
    }

    fn spent(&self) -> bool {
        self.requests == 0 || self.read == 0
    }
}

pub(crate) struct EventLoop {
    poll: Poll,
    listeners: Vec<Listener>,
    conns: Slab<Conn>,
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
    /// WebSocket subscribers by topic: `(key, generation)` of each
    /// connection.
    topics: HashMap<String, Vec<(usize, u32)>>,
    /// With Redis configured, published messages go there (and come back
    /// from there) instead of through the master.
    redis: Option<RedisBus>,
    /// Connections that used up their turn with work left, by `(key,
    /// generation)`, in the order they are driven again.
    ready: VecDeque<(usize, u32)>,
    /// Connections waiting for room in the publish outbox.
    parked: Vec<(usize, u32)>,
    /// Open connections by client address, kept only when
    /// [`Limits::max_connections_per_ip`](crate::Limits) is set.
    per_ip: HashMap<IpAddr, usize>,
}

impl EventLoop {
    /// A loop accepting on `listeners[i]` for each `i` in `active`; a
    /// worker also gets its control channel to the master.
    pub(crate) fn new(
        app: App,
        listeners: Vec<TcpListener>,
        active: &[usize],
        control: Option<std::os::unix::net::UnixStream>,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let now = Instant::now();
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
            shared: Shared {
                app,
                date: DateCache::new(),
                scratch: vec![0; READ_CHUNK],
                spare_out: Vec::with_capacity(OUT_BATCH),
                draining: false,
                now,
            },
            now,
            drain_deadline: None,
            accept_resume: None,
            signals,
            master: None,
            topics: HashMap::new(),
            redis: None,
            ready: VecDeque::new(),
            parked: Vec::new(),
            per_ip: HashMap::new(),
        };
        if let Some(url) = this.shared.app.redis_url.clone() {
            let mut bus = RedisBus::new(&url, "tine:")?;
            bus.register(this.poll.registry(), REDIS_SUB, REDIS_PUB)?;
            this.redis = Some(bus);
        }
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
            let timeout = if self.ready.is_empty() {
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
                        if let Some(conn) = self.conns.get_mut(key) {
                            if event.is_readable() || event.is_read_closed() || event.is_error() {
                                conn.readable = true;
                            }
                            self.drive(key);
                        }
                    }
                }
            }
            self.drive_ready();
            if let Some(bus) = &mut self.redis {
                bus.tick(self.now, self.poll.registry());
            }
            if !pubsub::outbox_is_empty() {
                self.deliver_published();
            }
            if !self.parked.is_empty() && pubsub::outbox_has_room() {
                self.ready.extend(self.parked.drain(..));
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
        self.drain_deadline = Some(self.now + self.shared.app.limits.drain_timeout);
        if let Some(bus) = &self.redis {
            if bus.dropped() > 0 {
                log::warn!(
                    "{} published message(s) could not be sent to Redis",
                    bus.dropped()
                );
            }
        }
        self.shared.draining = true;
        self.set_accepting(false);
        let idle: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.idle())
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
            .filter(|(_, c)| c.ws.is_some())
            .map(|(k, _)| k)
            .collect();
        for key in sockets {
            if let Some(ws) = self.conns[key].ws.as_mut() {
                ws.go_away();
            }
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
                Msg::Publish(payload) => match pubsub::decode(&payload) {
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
        let max = self.shared.app.limits.max_connections;
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
                    if !self.admit(peer.ip()) {
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
                        self.release(peer.ip());
                        continue;
                    }
                    self.generation = self.generation.wrapping_add(1);
                    entry.insert(Conn::new(stream, peer, self.generation, self.now));
                    let deadline = self.now + self.shared.app.limits.header_timeout;
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
                Some(conn) if conn.generation == generation => {
                    conn.scheduled = false;
                    self.drive(key);
                }
                _ => {}
            }
        }
    }

    fn drive(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match drive_conn(conn, &mut self.shared) {
            Next::Close => {
                self.close(key);
                return;
            }
            Next::Keep => {}
            next => {
                if !conn.scheduled {
                    conn.scheduled = true;
                    let entry = (key, conn.generation);
                    if next == Next::Yield {
                        self.ready.push_back(entry);
                    } else {
                        self.parked.push(entry);
                    }
                }
            }
        }
        let limits = &self.shared.app.limits;
        if let Some(ws) = conn.ws.as_mut().filter(|_| conn.phase != Phase::Lingering) {
            for (subscribed, topic) in ws.topic_changes.drain(..) {
                let subscribers = self.topics.entry(topic).or_default();
                if subscribed {
                    subscribers.push((key, conn.generation));
                } else {
                    subscribers.retain(|&(k, _)| k != key);
                }
            }
            let config = &self.shared.app.ws_config;
            let deadline = if ws.core.overflowed {
                self.now + config.pong_timeout
            } else if ws.awaiting_pong {
                conn.deadline
            } else if let Some(interval) = config.ping_interval {
                self.now + interval
            } else {
                self.now + Duration::from_secs(24 * 3600)
            };
            self.set_deadline(key, deadline);
            return;
        }
        let deadline = if conn.phase == Phase::Lingering {
            conn.deadline
        } else if conn.writing() {
            self.now + limits.idle_timeout
        } else if let Some(started) = conn.head_started {
            started + limits.header_timeout
        } else if let Some(started) = conn.body_started {
            (started + limits.body_timeout).min(self.now + limits.idle_timeout)
        } else if conn.decoder.mid_request() {
            self.now + limits.idle_timeout
        } else if self.shared.draining {
            // Idle while draining: close soon, but not at once, so a client
            // that is sending its next request right now gets an answer
            // (with `Connection: close`) instead of a closed socket.
            self.now + DRAIN_IDLE
        } else if conn.served == 0 {
            conn.last_active + limits.header_timeout
        } else {
            self.now + limits.idle_timeout
        };
        self.set_deadline(key, deadline);
    }

    fn set_deadline(&mut self, key: usize, at: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.deadline = at;
        let tick = self.wheel.tick_of(at);
        if conn.timer_tick.is_none_or(|t| tick < t) {
            conn.timer_tick = Some(self.wheel.schedule(key, conn.generation, at));
        }
    }

    fn fire_timers(&mut self) {
        self.wheel.expire(self.now, &mut self.due);
        let due = std::mem::take(&mut self.due);
        for entry in &due {
            let Some(conn) = self.conns.get_mut(entry.key) else {
                continue;
            };
            if conn.generation != entry.generation || conn.timer_tick != Some(entry.tick) {
                continue; // a stale entry: the connection has a sooner one
            }
            conn.timer_tick = None;
            if conn.deadline > self.now {
                let (key, at) = (entry.key, conn.deadline);
                self.set_deadline(key, at);
                continue;
            }
            self.timeout(entry.key);
        }
        self.due = due;
        self.due.clear();
    }

    fn timeout(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if let Some(ws) = conn.ws.as_mut() {
            if ws.awaiting_pong || ws.core.overflowed || ws.finished || self.shared.draining {
                self.close(key);
            } else {
                ws.ping();
                conn.deadline = self.now + self.shared.app.ws_config.pong_timeout;
                self.drive(key);
            }
            return;
        }
        if conn.phase != Phase::Open || conn.writing() || !conn.reading_request() {
            // Lingering done, a client that stopped reading, or an idle
            // keep-alive connection: nothing to say.
            self.close(key);
            return;
        }
        // A request that did not arrive in time: 408, then close.
        let res = self
            .shared
            .app
            .error_response(None, StatusCode::REQUEST_TIMEOUT);
        lend_output(conn, &mut self.shared.spare_out);
        encode_response(conn, res, false, false, false, &self.shared.date);
        conn.rbuf.clear();
        conn.head_started = None;
        conn.body_started = None;
        // Sending it moves the connection to lingering, with its deadline.
        self.drive(key);
    }

    /// Counts a new connection from `ip`; `false` if that address is at
    /// its limit (the connection is not counted then).
    fn admit(&mut self, ip: IpAddr) -> bool {
        let limit = self.shared.app.limits.max_connections_per_ip;
        if limit == usize::MAX {
            return true;
        }
        let count = self.per_ip.entry(client_key(ip)).or_insert(0);
        if *count >= limit {
            return false;
        }
        *count += 1;
        true
    }

    /// Uncounts a connection counted by [`admit`](Self::admit).
    fn release(&mut self, ip: IpAddr) {
        if self.shared.app.limits.max_connections_per_ip == usize::MAX {
            return;
        }
        let key = client_key(ip);
        if let Some(count) = self.per_ip.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                self.per_ip.remove(&key);
            }
        }
    }

    fn close(&mut self, key: usize) {
        let mut conn = self.conns.remove(key);
        self.release(conn.peer.ip());
        let _ = self.poll.registry().deregister(&mut conn.stream);
        if let Some(ws) = conn.ws.as_mut() {
            ws.closed(1006, String::new(), &conn.stream);
            for topic in &ws.topics {
                if let Some(subscribers) = self.topics.get_mut(topic) {
                    subscribers.retain(|&(k, _)| k != key);
                    if subscribers.is_empty() {
                        self.topics.remove(topic);
                    }
                }
            }
        }
        drop(conn);
        if self.conns.len() < self.shared.app.limits.max_connections
            && self.listeners.iter().any(|l| l.active && !l.registered)
        {
            self.set_accepting(true);
        }
    }
}

impl EventLoop {
    /// Delivers what handlers published: to this process's subscribers,
    /// and through the master to the other workers.
    fn deliver_published(&mut self) {
        // Delivery may run handlers (a Close event) that publish again;
        // bound the rounds so a feedback loop cannot spin forever.
        for _ in 0..8 {
            let batch = pubsub::take_outbox();
            if batch.is_empty() {
                return;
            }
            if let Some(bus) = &mut self.redis {
                // Redis fans out to every process, this one included.
                for published in &batch {
                    bus.publish(published, self.poll.registry());
                }
                continue;
            }
            let mut wire = Vec::new();
            for published in &batch {
                if let Some(link) = &mut self.master {
                    wire.clear();
                    pubsub::encode(published, &mut wire);
                    if !link.channel.queue(control::PUBLISH, &wire) {
                        log::warn!(
                            "control channel full; message to {:?} not relayed",
                            published.topic
                        );
                    }
                }
                self.deliver_local(published);
            }
            if let Some(link) = &mut self.master {
                if let Err(e) = link.channel.flush_to(&mut SendNoSignal(&link.stream)) {
                    log::warn!("control channel: {e}");
                }
            }
        }
    }

    /// Drives the Redis connections and delivers what they received.
    fn on_redis(&mut self, token: Token) {
        let Some(bus) = &mut self.redis else {
            return;
        };
        let mut incoming = Vec::new();
        bus.on_event(token, self.poll.registry(), &mut incoming);
        for published in &incoming {
            self.deliver_local(published);
        }
    }

    /// Sends a published message to this process's subscribers.
    fn deliver_local(&mut self, published: &Published) {
        let Some(subscribers) = self.topics.get(&published.topic) else {
            return;
        };
        let message = match &published.payload {
            Payload::Text(t) => tungstenite::Message::Text(t.as_str().into()),
            Payload::Binary(b) => tungstenite::Message::Binary(b.clone()),
        };
        let keys: Vec<usize> = subscribers
            .iter()
            .filter_map(|&(key, generation)| {
                let conn = self.conns.get_mut(key)?;
                let ws = conn.ws.as_mut().filter(|_| conn.generation == generation)?;
                ws.deliver(message.clone());
                Some(key)
            })
            .collect();
        for key in keys {
            self.drive(key);
        }
    }
}

/// The address a connection counts against for the per-address limit:
/// the address itself for IPv4 (also when mapped into IPv6), its /64
/// network for IPv6.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u64::MAX as u128))),
        v4 => v4,
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

/// Moves a connection as far as it can go without blocking: send queued
/// output, answer buffered requests, read more.
fn drive_conn(conn: &mut Conn, shared: &mut Shared) -> Next {
    let mut budget = Budget::new();
    loop {
        if conn.phase == Phase::Lingering {
            if conn.readable {
                match conn.discard_input(&mut shared.scratch, budget.read) {
                    Discard::Drained => conn.readable = false,
                    Discard::More => return Next::Yield,
                    Discard::Closed => return Next::Close,
                }
            }
            return Next::Keep;
        }
        match conn.flush() {
            Flush::Done => {}
            Flush::Blocked => return Next::Keep,
            Flush::Failed => return Next::Close,
        }
        if conn.ws.is_some() {
            return drive_ws(conn, shared, &mut budget);
        }
        match conn.pump() {
            Flush::Done => {}
            Flush::Blocked => return Next::Keep,
            Flush::Failed => return Next::Close,
        }
        // Everything queued is sent: give the output buffer back.
        if conn.wbuf.capacity() > 0 {
            if shared.spare_out.capacity() < conn.wbuf.capacity() {
                std::mem::swap(&mut conn.wbuf, &mut shared.spare_out);
            }
            conn.wbuf = Vec::new();
        }
        if conn.phase == Phase::Closing {
            let _ = conn.stream.shutdown(std::net::Shutdown::Write);
            conn.phase = Phase::Lingering;
            conn.deadline = Instant::now() + LINGER;
            continue;
        }
        if budget.spent() {
            // Everything answered so far is sent; the rest waits its turn.
            return if conn.readable || !conn.rbuf.is_empty() {
                Next::Yield
            } else {
                Next::Keep
            };
        }
        if !pubsub::outbox_has_room() {
            // Its handlers' messages cannot be queued: decode and read
            // nothing more until the loop has delivered the outbox.
            return Next::Park;
        }
        if answer_buffered(conn, shared, &mut budget) {
            continue;
        }
        if !conn.readable {
            return Next::Keep;
        }
        match conn.read_some(&mut shared.scratch) {
            // EOF: a half-sent request cannot be answered.
            Ok(0) => return Next::Close,
            // A short read drained the socket: skip the read that would
            // only say EAGAIN. Edge-triggered epoll reports every later
            // arrival (and EOF) as a new event, so nothing is missed; this
            // saves one syscall per request (nginx does the same).
            Ok(n) if n < shared.scratch.len() => {
                conn.readable = false;
                budget.read = budget.read.saturating_sub(n);
            }
            Ok(n) => budget.read = budget.read.saturating_sub(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                conn.readable = false;
                return Next::Keep;
            }
            Err(_) => return Next::Close,
        }
    }
}

/// Moves a WebSocket connection along: send queued frames, read and
/// process incoming ones.
fn drive_ws(conn: &mut Conn, shared: &mut Shared, budget: &mut Budget) -> Next {
    let Conn {
        stream,
        ws,
        readable,
        phase,
        deadline,
        ..
    } = conn;
    let Some(session) = ws.as_mut() else {
        return Next::Close;
    };
    loop {
        while session.core.backlog() > 0 {
            let core = &mut session.core;
            match io::Write::write(&mut &*stream, &core.io.output[core.sent..]) {
                Ok(0) => return Next::Close,
                Ok(n) => core.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
        if session.finished {
            // Close like HTTP does: shut our side, then read until the peer
            // closes, so unread input cannot turn into a reset that makes
            // the peer lose our close frame.
            let _ = stream.shutdown(std::net::Shutdown::Write);
            *phase = Phase::Lingering;
            *deadline = Instant::now() + LINGER;
            return Next::Keep;
        }
        if !*readable && !session.has_input() {
            return Next::Keep;
        }
        if budget.spent() {
            return Next::Yield;
        }
        if !pubsub::outbox_has_room() {
            return Next::Park;
        }
        if session.has_input() {
            // Frames left over from the last turn come first.
            budget.requests -= session.feed_some(&[], &*stream, budget.requests);
            continue;
        }
        match io::Read::read(&mut &*stream, &mut shared.scratch) {
            Ok(0) => {
                session.closed(1006, String::new(), &*stream);
                return Next::Close;
            }
            Ok(n) => {
                budget.read = budget.read.saturating_sub(n);
                budget.requests -=
                    session.feed_some(&shared.scratch[..n], &*stream, budget.requests);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *readable = false;
                return Next::Keep;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Next::Close,
        }
    }
}

/// Decodes and answers the requests already in the read buffer, queueing
/// their responses. Returns whether anything was queued.
fn answer_buffered(conn: &mut Conn, shared: &mut Shared, budget: &mut Budget) -> bool {
    let mut produced = false;
    while conn.pending.is_none() && conn.phase == Phase::Open && conn.wbuf.len() < OUT_BATCH {
        if conn.rbuf.is_empty() && !conn.decoder.mid_request() {
            break;
        }
        if budget.requests == 0 || (produced && !pubsub::outbox_has_room()) {
            break;
        }
        let decoded = conn.decoder.decode(&mut conn.rbuf, &shared.app.limits);
        if conn.body_started.is_none() && conn.decoder.mid_request() {
            // The head is complete and its body is arriving: from here the
            // body deadline applies instead of the header deadline.
            conn.head_started = None;
            conn.body_started = Some(shared.now);
        }
        match decoded {
            Decoded::NeedMore => break,
            Decoded::Continue => {
                lend_output(conn, &mut shared.spare_out);
                conn.wbuf
                    .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                produced = true;
            }
            Decoded::Error(status) => {
                let res = shared.app.error_response(None, status);
                lend_output(conn, &mut shared.spare_out);
                encode_response(conn, res, false, false, false, &shared.date);
                conn.rbuf.clear();
                budget.requests -= 1;
                produced = true;
            }
            Decoded::Request(head, body) => {
                // Bytes left behind this request (pipelined, or the start
                // of a slow next head) begin the next head now: it is timed
                // by the header timeout from here, not by the idle timeout
                // that every trickled byte would renew.
                conn.head_started = if conn.rbuf.is_empty() {
                    None
                } else {
                    Some(shared.now)
                };
                conn.body_started = None;
                let keep_alive = head.keep_alive && !shared.draining;
                let is_head = head.method == Method::HEAD;
                let http10 = head.version == Version::HTTP_10;
                let res = match Request::new(
                    head.method,
                    head.target,
                    head.version,
                    head.headers,
                    body,
                    conn.peer,
                ) {
                    Ok(mut req) => {
                        req.set_state(shared.app.state.clone());
                        match shared.app.answer(&mut req) {
                            Answer::Response(res) => res,
                            Answer::Upgrade(res, handler) => {
                                lend_output(conn, &mut shared.spare_out);
                                encode_response(conn, res, true, false, false, &shared.date);
                                let leftover = std::mem::take(&mut conn.rbuf).to_vec();
                                let mut session = Box::new(Session::new(
                                    req,
                                    handler,
                                    &shared.app.ws_config,
                                    shared.app.limits.max_body,
                                    leftover,
                                ));
                                session.open(&conn.stream);
                                conn.ws = Some(session);
                                return true;
                            }
                        }
                    }
                    Err(status) => shared.app.error_response(None, status),
                };
                lend_output(conn, &mut shared.spare_out);
                encode_response(conn, res, keep_alive, is_head, http10, &shared.date);
                conn.served = conn.served.saturating_add(1);
                budget.requests -= 1;
                produced = true;
            }
        }
    }
    if conn.rbuf.is_empty() && conn.rbuf.capacity() > 0 {
        // Release the read buffer: idle connections hold none.
        conn.rbuf = bytes::BytesMut::new();
    }
    produced
}

/// Gives a connection the loop's spare output buffer if it has none.
fn lend_output(conn: &mut Conn, spare: &mut Vec<u8>) {
    if conn.wbuf.capacity() == 0 {
        std::mem::swap(&mut conn.wbuf, spare);
    }
}

/// Appends a small file region to `out`; `false` (with `out` unchanged)
/// if it could not be read whole, so the caller falls back to sendfile.
fn read_inline(out: &mut Vec<u8>, file: &crate::http::FileBody) -> bool {
    use std::os::unix::fs::FileExt;
    let start = out.len();
    out.resize(start + file.len as usize, 0);
    if file
        .file
        .read_exact_at(&mut out[start..], file.offset)
        .is_ok()
    {
        true
    } else {
        out.truncate(start);
        false
    }
}

/// Queues a response: its head, and its body inline or as pending.
fn encode_response(
    conn: &mut Conn,
    res: Response,
    mut keep_alive: bool,
    is_head: bool,
    http10: bool,
    date: &DateCache,
) {
    let Response {
        status,
        headers,
        body,
        ..
    } = res;
    let (length, pending) = if !status_allows_body(status) {
        (Length::None, None)
    } else {
        match body {
            Body::Empty => (Length::Fixed(0), None),
            Body::Full(bytes) => (
                Length::Fixed(bytes.len() as u64),
                Some(Pending::Bytes(bytes)),
            ),
            Body::File(file) => (Length::Fixed(file.len), Some(Pending::File(file))),
            Body::Stream(chunks) if http10 => {
                keep_alive = false;
                (
                    Length::UntilClose,
                    Some(Pending::Stream {
                        chunks,
                        chunked: false,
                    }),
                )
            }
            Body::Stream(chunks) => (
                Length::Chunked,
                Some(Pending::Stream {
                    chunks,
                    chunked: true,
                }),
            ),
        }
    };
    let connection = match (keep_alive, http10) {
        _ if status == StatusCode::SWITCHING_PROTOCOLS => Connection::Upgrade,
        (false, _) => Connection::Close,
        (true, true) => Connection::KeepAlive10,
        (true, false) => Connection::Default,
    };
    encode_head(
        &mut conn.wbuf,
        status,
        &headers,
        length,
        connection,
        date.bytes(),
    );
    if !is_head {
        match pending {
            Some(Pending::Bytes(bytes)) if bytes.len() <= INLINE_BODY => {
                conn.wbuf.extend_from_slice(&bytes);
            }
            // A small file is read behind its head: one write, one TCP
            // segment, instead of a write and a sendfile.
            Some(Pending::File(file)) if file.len <= INLINE_BODY as u64 => {
                if !read_inline(&mut conn.wbuf, &file) {
                    conn.pending = Some(Pending::File(file));
                }
            }
            other => conn.pending = other,
        }
    }
    if !keep_alive {
        conn.phase = Phase::Closing;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_keys_group_ipv6_by_64_and_unmap_ipv4() {
        let key = |s: &str| client_key(s.parse().unwrap());
        assert_eq!(key("192.0.2.7"), key("::ffff:192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }
}
