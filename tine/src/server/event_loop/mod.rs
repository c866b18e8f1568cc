//! The event loop: one per process, owning every connection.
//!
//! mio (epoll/kqueue), edge-triggered: every accept drains until
//! `WouldBlock`, except on a listener shared by every worker
//! (level-triggered on Linux, one connection per wake-up: see
//! `accept.rs`). Connections live in a slab keyed by their mio token; the
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
//!
//! This file holds the loop itself (poll, drive, timers, drain, close);
//! `accept.rs` the listening sockets, `messages.rs` the control channel to
//! the master and the pub/sub bus.

mod accept;
mod messages;
mod periodic;

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use self::accept::Listener;
use self::messages::MasterLink;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use super::conn::{Conn, Expired, Link, Next, Shared, DRAIN_IDLE};
use super::control::Channel;
use super::recycle::RequestBudget;
use super::scoreboard;
use super::timer::{later, Entry, Stamp, Wheel};
use super::ServerConfig;
use crate::pubsub::{self, Bus, Topics};
use crate::service::Service;

const SIGNALS: Token = Token(usize::MAX);
/// The control channel to the master (worker processes only).
const CONTROL: Token = Token(usize::MAX - 1);
/// The Redis subscriber and publisher connections.
const REDIS_SUB: Token = Token(usize::MAX - 2);
const REDIS_PUB: Token = Token(usize::MAX - 3);
/// Other threads of the worker published (see `pubsub::Publisher`).
const HANDOFF: Token = Token(usize::MAX - 4);
/// [`Slot::timer_tick`] of a connection with no timer entry: later than
/// any tick the wheel hands out.
const NO_TICK: u64 = u64::MAX;
/// Listener `i` has token `LISTENER0 + i`; connection keys stay below.
const LISTENER0: usize = usize::MAX / 2;
/// A connection and the loop's bookkeeping for it.
struct Slot {
    conn: Conn<Link>,
    /// Tells this connection from a later one given the same key.
    generation: u32,
    /// The deadline its timer was last set for (on the loop's clock: half
    /// the size of an `Instant`).
    deadline: Stamp,
    /// The wheel tick of its earliest live timer entry, [`NO_TICK`] for
    /// none (a plain `u64`: an `Option` would add a word to every
    /// connection's slot).
    timer_tick: u64,
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
    /// The warnings that accepting paused, which could otherwise repeat
    /// ten times a second for as long as the condition lasts.
    accept_warnings: [crate::throttle::Throttle; 2],
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
    /// Shared listeners (one accept per wake-up) reported ready this
    /// turn: accepted after the turn's connection events, so a request
    /// already waiting on this worker is answered before the worker
    /// takes a connection that may turn out to be slow.
    accept_later: Vec<usize>,
    /// When the app's periodic tasks (`App::every`) are due.
    periodic: periodic::Schedule,
    /// The tasks due this turn (kept for its room).
    periodic_due: Vec<usize>,
    /// A single process's stop requests ([`ServerHandle`](crate::ServerHandle)).
    stop: Option<std::sync::Arc<crate::server::handle::LocalStop>>,
    /// The loop's one waker (mio allows one per poll): other threads'
    /// published messages and a [`ServerHandle`](crate::ServerHandle)'s
    /// stop both wake it, with the token `HANDOFF`.
    waker: std::sync::Arc<mio::Waker>,
}

/// The signals an event loop handles, with signal-hook's handlers
/// installed from this call on: every one of them that arrives later is
/// noted in a self-pipe that the loop reads once it runs, none takes its
/// default action (which would end the process). `SIGINT` and `SIGTERM`
/// drain and stop; `SIGUSR1` reopens the access log, and in a `single`
/// process (no master to do it) re-reads the TLS certificates too. A
/// single process also takes the master's other signals, whose default
/// actions would end (`SIGUSR2`, `SIGHUP`) or stop (`SIGTTIN`, `SIGTTOU`)
/// it: `SIGHUP` re-reads the TLS certificates (there are no workers to
/// restart), the others are refused with a log line (an upgrade or a
/// change in the number of workers needs a master).
///
/// A single process calls this when it binds, before it can announce its
/// address: a `SIGTERM` sent the moment a supervisor (or a test) reads
/// `listening on` must drain the server, not kill it. A worker calls it
/// while the master's signals are still blocked in it (see
/// `master::worker_signals_ready`).
pub(crate) fn stop_signals(single: bool) -> io::Result<Signals> {
    use signal_hook::consts::{SIGHUP, SIGTTIN, SIGTTOU, SIGUSR2};
    if single {
        Signals::new([SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGHUP, SIGTTIN, SIGTTOU])
    } else {
        Signals::new([SIGINT, SIGTERM, SIGUSR1])
    }
    .map_err(crate::server::sys::while_doing(
        "set up the signal handlers (a self-pipe)",
    ))
}

impl EventLoop {
    /// A loop accepting on `listeners[i]` for each `i` in `active` (each
    /// listener with its address: an index into `config.listens`); a
    /// worker also gets its control channel to the master.
    ///
    /// `signals` come from [`stop_signals`], made by the caller as early
    /// as it must (see there).
    pub(crate) fn new(
        service: Service,
        config: ServerConfig,
        listeners: Vec<(crate::server::listener::Socket, usize)>,
        active: &[usize],
        control: Option<std::os::unix::net::UnixStream>,
        mut signals: Signals,
    ) -> io::Result<Self> {
        let poll = Poll::new().map_err(crate::server::sys::while_doing(
            "create the event loop (epoll/kqueue)",
        ))?;
        // A signal caught before this registration left a byte in the
        // self-pipe: the pipe is readable at once, and epoll reports a
        // source that is ready when it is added.
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let now = Instant::now();
        let bus = Bus::new(config.redis_url.as_deref())
            .map_err(crate::server::sys::while_doing("set up publish/subscribe"))?;
        // What `publish` takes: what the bus carries to every process.
        let relay_limit = config.relay_limit();
        pubsub::set_max_size(match (&control, &config.redis_url) {
            (Some(_), None) => relay_limit,
            _ => pubsub::MAX_SIZE,
        });
        let waker = std::sync::Arc::new(mio::Waker::new(poll.registry(), HANDOFF).map_err(
            crate::server::sys::while_doing("create the event loop's waker"),
        )?);
        pubsub::start_handoff(waker.clone());
        let periodic = periodic::Schedule::new(service.periods(), now);
        let mut this = EventLoop {
            poll,
            listeners: listeners
                .into_iter()
                .enumerate()
                .map(|(i, (socket, address))| Listener::new(socket, address, active.contains(&i)))
                .collect(),
            conns: Slab::new(),
            generation: 0,
            wheel: Wheel::new(now),
            due: Vec::new(),
            shared: Shared::new(service, config, now),
            now,
            drain_deadline: None,
            accept_resume: None,
            accept_warnings: Default::default(),
            signals,
            master: None,
            topics: Topics::new(),
            bus,
            delivering: false,
            more_to_deliver: false,
            bus_full: false,
            ready: VecDeque::new(),
            parked: Vec::new(),
            accept_later: Vec::new(),
            periodic,
            periodic_due: Vec::new(),
            stop: None,
            waker,
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
                // The master sizes its end the same way (`master_config`).
                channel: Channel::with_limit(relay_limit),
            });
            this.shared.budget = RequestBudget::for_worker(&this.shared.config);
            this.tell_master_ready();
            // A `ServerHandle` used in this worker wakes the loop to ask
            // the master for the stop.
            crate::server::handle::WORKER_STOP.install(this.waker.clone());
        }
        Ok(this)
    }

    /// On the way out: what other threads queued (see `pubsub::Publisher`)
    /// goes to the outbox, and the outbox to the bus, as far as it takes.
    fn last_messages(&mut self) {
        pubsub::close_handoff();
        if !pubsub::outbox_is_empty() {
            self.deliver_published();
        }
    }

    /// Lets `stop`'s handles stop this loop: gives them its waker. A stop
    /// asked for already is taken at the loop's first turn.
    pub(crate) fn stop_on(&mut self, stop: &std::sync::Arc<crate::server::handle::LocalStop>) {
        stop.install(self.waker.clone());
        self.stop = Some(stop.clone());
    }

    /// Runs until a stop signal has been handled and the drain finished.
    pub(crate) fn run(mut self) -> io::Result<()> {
        /// Publishers of other threads refuse once the loop has ended,
        /// however it ends.
        struct Ended;
        impl Drop for Ended {
            fn drop(&mut self) {
                pubsub::close_handoff();
            }
        }
        let _ended = Ended;
        let mut events = Events::with_capacity(1024);
        if self.stop.as_ref().is_some_and(|s| s.requested()) {
            self.begin_drain();
        }
        if self.master.is_some() && crate::server::handle::WORKER_STOP.take() {
            self.tell_master_stop();
        }
        loop {
            let timeout = if self.ready.is_empty() && !self.more_to_deliver {
                let tick = self.wheel.until_next_tick(self.now);
                match self.periodic.next() {
                    Some(at) => tick.min(at.saturating_duration_since(Instant::now())),
                    None => tick,
                }
            } else {
                // Work is waiting: only look for new events, do not sleep.
                Duration::ZERO
            };
            let board = scoreboard::mine();
            if let Some(e) = board {
                e.idle();
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            self.now = Instant::now();
            self.shared.set_now(self.now);
            self.shared.clock = self.now;
            self.shared.fast_until = self.now + scoreboard::FAST;
            if let Some(e) = board {
                e.turn(self.now);
            }
            self.shared.date.tick(self.now);
            for event in events.iter() {
                match event.token() {
                    SIGNALS => {
                        // SIGUSR1 reopens the access log (rotation);
                        // SIGUSR2 is refused; the others stop.
                        let mut stop = false;
                        for sig in self.signals.pending() {
                            match sig {
                                SIGUSR1 => {
                                    // Log rotation; a single process (no
                                    // master to hand them over) also re-reads
                                    // its certificates.
                                    self.shared.service.reopen_access_log();
                                    #[cfg(feature = "tls")]
                                    if self.master.is_none() {
                                        let _ = crate::server::tls::reload();
                                    }
                                }
                                signal_hook::consts::SIGUSR2 => log::warn!(
                                    "SIGUSR2 ignored: a binary upgrade needs a master \
                                     (workers > 1); this is a single process"
                                ),
                                // Only a single process takes these.
                                signal_hook::consts::SIGHUP => {
                                    log::info!(
                                        "SIGHUP: no workers to restart in a single \
                                         process (TLS certificates, if any, are re-read)"
                                    );
                                    #[cfg(feature = "tls")]
                                    let _ = crate::server::tls::reload();
                                }
                                signal_hook::consts::SIGTTIN | signal_hook::consts::SIGTTOU => {
                                    log::warn!(
                                        "SIGTTIN/SIGTTOU ignored: the number of workers \
                                         changes only with a master (workers > 1); this is \
                                         a single process"
                                    );
                                }
                                _ => stop = true,
                            }
                        }
                        if stop {
                            self.begin_drain();
                        }
                    }
                    CONTROL => self.on_control(),
                    HANDOFF => {
                        pubsub::take_handoff();
                        if self.stop.as_ref().is_some_and(|s| s.requested()) {
                            self.begin_drain();
                        }
                        if self.master.is_some() && crate::server::handle::WORKER_STOP.take() {
                            self.tell_master_stop();
                        }
                    }
                    REDIS_SUB | REDIS_PUB => self.on_redis(event.token()),
                    Token(t) if t >= LISTENER0 => {
                        let index = t - LISTENER0;
                        if self.listeners.get(index).is_some_and(|l| l.one_per_wakeup) {
                            self.accept_later.push(index);
                        } else {
                            self.accept(index);
                        }
                    }
                    Token(key) => {
                        if let Some(slot) = self.conns.get_mut(key) {
                            if event.is_readable() || event.is_read_closed() || event.is_error() {
                                slot.conn
                                    .readable(event.is_read_closed() || event.is_error());
                            }
                            self.drive(key);
                        }
                    }
                }
            }
            while let Some(index) = self.accept_later.pop() {
                self.accept(index);
            }
            self.drive_ready();
            if self.periodic.next().is_some_and(|at| self.now >= at) {
                self.run_periodic();
            }
            if self.shared.budget.due() {
                self.ask_for_replacement();
            }
            self.bus.tick(self.now, self.poll.registry());
            self.more_to_deliver = false;
            if !pubsub::outbox_is_empty() || !self.parked.is_empty() {
                self.deliver_published();
            }
            // Other threads' messages left waiting for room in the outbox.
            if pubsub::handoff_pending() && pubsub::outbox_has_room() {
                pubsub::take_handoff();
                self.deliver_published();
            }
            self.fire_timers();
            // Cached static files past their time are closed here, not
            // only at a later static lookup: an idle worker must not keep
            // descriptors (see `static_files::cache`). One comparison
            // when nothing is due; the poll above waits at most a tick.
            crate::static_files::cache::tick(self.now);
            if let Some(at) = self.accept_resume {
                if self.now >= at {
                    self.accept_resume = None;
                    self.set_accepting(true);
                }
            }
            if let Some(deadline) = self.drain_deadline {
                if self.conns.is_empty() {
                    log::info!("drained; exiting");
                    self.last_messages();
                    self.shared.service.report_log_losses();
                    return Ok(());
                }
                if self.now >= deadline {
                    log::warn!(
                        "drain deadline passed; closing {} connection(s)",
                        self.conns.len()
                    );
                    self.last_messages();
                    self.shared.service.report_log_losses();
                    return Ok(());
                }
            }
        }
    }

    /// Runs the app's periodic tasks that are due, before the turn's
    /// published messages go out (so what they publish goes with them).
    /// A task that never returns is a stuck worker: the turn does not end,
    /// and the watchdog sees that as it sees a stuck handler.
    #[cold]
    fn run_periodic(&mut self) {
        self.periodic.take_due(self.now, &mut self.periodic_due);
        for i in self.periodic_due.drain(..) {
            self.shared.service.run_periodic(i);
        }
    }

    /// Starts a graceful shutdown: stop accepting, close idle connections,
    /// let the others finish their current exchange.
    fn begin_drain(&mut self) {
        if self.drain_deadline.is_some() {
            return;
        }
        // A stopping worker runs no more periodic tasks.
        self.periodic.stop();
        self.drain_deadline = Some(later(self.now, self.shared.config.limits.drain_timeout));
        // Single-process mode under systemd: the stop is under way.
        crate::server::notify::single_stopping();
        // A summary of the worker's whole life, not a loss at the stop
        // (messages still queued are sent while it drains).
        let dropped = pubsub::stats().dropped;
        if dropped > 0 {
            log::warn!(
                "{dropped} published message(s) could not be sent on while this worker ran                  (tine_pubsub_dropped_total)"
            );
        }
        self.shared.draining = true;
        if let Some(e) = scoreboard::mine() {
            e.set_draining();
        }
        self.let_go_of_listeners();
        // Keep-alive connections between requests close soon; one that
        // has not sent its first request yet keeps its header timeout.
        let idle: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, s)| s.conn.idle() && s.conn.served_any())
            .map(|(k, _)| k)
            .collect();
        for key in idle {
            self.set_deadline(key, self.shared.stamp.after(DRAIN_IDLE));
        }
        // WebSockets (a close with 1001) and streams still running are
        // ended one after another over the first half of the drain
        // timeout, not all at once: their clients reconnect spread out
        // too (see the conn module docs).
        let long: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, s)| s.conn.long_lived())
            .map(|(k, _)| k)
            .collect();
        let window = self.shared.config.limits.drain_timeout / 2;
        let n = long.len() as u32;
        for (i, key) in (0u32..).zip(long) {
            let at = self.shared.stamp.after(spread(window, i, n));
            let conn = &mut self.conns[key].conn;
            conn.retire_at(at);
            let deadline = conn.deadline(&self.shared);
            self.set_deadline(key, deadline);
        }
        log::info!(
            "stop requested: draining {} connection(s)",
            self.conns.len()
        );
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
            // Taken, not drained: an idle connection keeps no buffer.
            let changes = ws.topic_changes.take();
            self.topics
                .apply((pubsub::key32(key), slot.generation), changes);
        }
        if let Some(sse) = slot.conn.any_sse_mut() {
            self.topics.apply(
                (pubsub::key32(key), slot.generation),
                sse.topic_changes.drain(..),
            );
        }
        let deadline = slot.conn.deadline(&self.shared);
        self.set_deadline(key, deadline);
    }

    fn set_deadline(&mut self, key: usize, at: Stamp) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        slot.deadline = at;
        let tick = self.wheel.tick_of(at);
        if tick < slot.timer_tick {
            slot.timer_tick = self.wheel.schedule(key, slot.generation, at);
        }
    }

    fn fire_timers(&mut self) {
        self.wheel.expire(self.shared.stamp, &mut self.due);
        let due = std::mem::take(&mut self.due);
        for entry in &due {
            let Some(slot) = self.conns.get_mut(entry.key()) else {
                continue;
            };
            if slot.generation != entry.generation || slot.timer_tick != entry.tick {
                continue; // a stale entry: the connection has a sooner one
            }
            slot.timer_tick = NO_TICK;
            if slot.deadline > self.shared.stamp {
                let (key, at) = (entry.key(), slot.deadline);
                self.set_deadline(key, at);
                continue;
            }
            match slot.conn.timed_out(&mut self.shared) {
                Expired::Close => self.close(entry.key()),
                Expired::Drive => self.drive(entry.key()),
            }
        }
        self.due = due;
        self.due.clear();
        crate::server::timer::give_back(&mut self.due);
    }

    fn close(&mut self, key: usize) {
        let Slot { mut conn, .. } = self.conns.remove(key);
        if let Some(e) = scoreboard::mine() {
            scoreboard::Entry::gauge(&e.gauges.connections, -1);
            if conn.any_session().is_some() {
                scoreboard::Entry::gauge(&e.gauges.websockets, -1);
            }
        }
        self.shared.per_ip.release(conn.counted_ip());
        let _ = self.poll.registry().deregister(conn.transport_mut());
        conn.closed();
        if let Some(ws) = conn.any_session() {
            let changed = ws.topic_changes.iter().map(|(_, t)| t.as_str());
            self.topics
                .remove_connection(key, ws.topics.iter().map(String::as_str).chain(changed));
        }
        if let Some(sse) = conn.any_sse() {
            let changed = sse.topic_changes.iter().map(|(_, t)| t.as_str());
            self.topics
                .remove_connection(key, sse.topics.iter().map(String::as_str).chain(changed));
        }
        drop(conn);
        if self.conns.len() < self.shared.config.limits.max_connections
            && self.listeners.iter().any(|l| l.active && !l.registered)
        {
            self.set_accepting(true);
        }
    }
}

/// The moment of the `i`-th of `n` connections ended over `window` (see
/// `begin_drain`): `window * i / n`, without overflowing for a window as
/// long as `Duration::MAX / 2` (a drain timeout meaning "no limit").
fn spread(window: Duration, i: u32, n: u32) -> Duration {
    match window.checked_mul(i) {
        Some(w) => w / n.max(1),
        None => window / n.max(1) * i,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connections a draining worker ends are spread over the window,
    /// however long the drain timeout: `Duration::MAX` (no limit) once
    /// overflowed `window * i` at the third connection.
    #[test]
    fn drain_moments_are_spread_without_overflow() {
        let window = Duration::from_secs(5);
        assert_eq!(spread(window, 0, 4), Duration::ZERO);
        assert_eq!(spread(window, 3, 4), Duration::from_millis(3750));
        let window = Duration::MAX / 2;
        let moments: Vec<Duration> = (0..5).map(|i| spread(window, i, 5)).collect();
        assert!(moments.windows(2).all(|w| w[0] < w[1]), "{moments:?}");
        assert!(moments[4] < window);
        let now = Instant::now();
        assert!(later(now, moments[4]) > now);
        assert!(later(now, Duration::MAX) > now);
    }

    /// What an idle connection costs the worker: its slot (the connection
    /// and the loop's bookkeeping, in a slab sized for every open
    /// connection, HTTP or WebSocket alike), and for a WebSocket its boxed
    /// session (the upgrade request in it) and its timer entry. An idle
    /// WebSocket should cost well under a kilobyte in all (see
    /// `bench/idle_ws.sh`): these bounds keep the pieces from growing back
    /// unnoticed. A field added to one of them must pay for itself.
    #[test]
    fn an_idle_connection_stays_small() {
        use std::mem::size_of;
        let sizes = [
            ("Slot", size_of::<Slot>(), SLOT),
            ("Conn", size_of::<Conn<Link>>(), CONN),
            ("Session", size_of::<crate::ws::session::Session>(), SESSION),
            ("timer Entry", size_of::<Entry>(), ENTRY),
        ];
        for (name, size, most) in sizes {
            assert!(size <= most, "{name} is {size} bytes, over {most}");
        }
    }
    const SLOT: usize = 312;
    const CONN: usize = 288;
    const SESSION: usize = 312;
    const ENTRY: usize = 16;
}
