//! The master's decisions, as a state machine with no system calls: events
//! go in ([`Supervisor::handle`]), actions come out ([`Action`]), and the
//! master (`master/`) performs them (fork, kill, bind, listen, send
//! `ADOPT`/`RELEASE`) and reports back what happened. Time is an
//! argument, so every path (timeouts and backoffs included) is unit-tested
//! without forking or waiting (`tests.rs`). This file holds the model,
//! start, stop, exits and timers; `lend.rs` the lending of stranded
//! sockets; `ops.rs` the operations that span several events (rolling
//! restart, scale-up, scale-down); `upgrade.rs` the binary upgrade.
//!
//! # Events and actions
//!
//! | event in | typical actions out |
//! |---|---|
//! | `Command(Stop)` / `Command(Quit)` | `Signal Term` to every worker (then `Kill` at the graceful deadline) / `Signal Kill` now; `Exit(0)` once all exited |
//! | `Command(Reload)` | `Fork` a replacement for slot 0; on its `Ready`, `Signal Term` to the old worker and `Fork` for slot 1, ...; a replacement that cannot be forked is forked again after the slot's backoff, and the restart waits on that slot meanwhile (a new `Reload` starts it over) |
//! | `Command(ScaleUp)` | `Bind` (or take back an adopted socket), then `Fork` the new slot; `Listen` once its worker is ready; refused while an upgrade is under way |
//! | `Command(ScaleDown)` | `Adopt` the last slot's sockets to a survivor (or `Fork` a replacement survivor that inherits them); on `Ready`, `Signal Term` to the removed worker |
//! | `Exited` (unexpected) | `Adopt` the slot's sockets to a ready survivor; `Fork` again after the backoff; `Release` them from the survivor once the new worker is `Ready` |
//! | `ForkFailed` | retry `Fork` after the backoff; the slot's listening sockets are lent meanwhile |
//! | `Recycle` (a worker past `max_requests` or `max_worker_memory`) | queued like `Reload`, for that worker's slot only: `Fork` its replacement; on its `Ready`, `Signal Term` to the old worker |
//! | `Stuck` (the watchdog: no loop turn for `worker_timeout`) | `Signal Kill` once; when a current worker's exit is reaped, `Fork` its slot at once (no backoff; a timeout is counted apart from crashes) |
//! | `Tick` | whatever deadline passed: respawn, `Kill` after the graceful timeout, abandon a replacement or hand-over not ready in time |
//! | `Command(Upgrade)` (`SIGUSR2`) | `SpawnMaster`; on `MasterReady`, `HandOver` and the graceful stop; on the new master's exit or timeout, `UpgradeFailed` (see `upgrade.rs`) |
//!
//! # Model
//!
//! * **Sockets** are numbered in the order the master holds them (the same
//!   numbers the workers inherit and [`Action::Adopt`] names). Each belongs
//!   to an address ([`Mode::ReusePort`]: one socket per slot, or
//!   [`Mode::Shared`]: one socket every slot accepts on) and is listening or
//!   only bound.
//! * **Slots** `0..n` each run one worker; a slot's socket list is what a
//!   worker forked for it accepts on: its own sockets first, then sockets
//!   moved to it by a scale-down.
//! * **Workers** are processes (or forks under way). Each knows the sockets
//!   it accepts on (its slot's at fork time plus every `ADOPT` sent to it:
//!   a worker never gives one up) and its role: the slot's current worker,
//!   a replacement not yet promoted (candidate), or retiring (sent
//!   `SIGTERM`/`SIGKILL`, its exit expected).
//!
//! # Invariants the decisions keep
//!
//! * No socket is ever closed while the master runs (closing a
//!   `SO_REUSEPORT` socket resets its queue).
//! * A listening socket is accepted on by some running worker: a slot
//!   waiting for its respawn (or whose fork keeps failing) lends its
//!   sockets to a ready worker with `ADOPT`, and takes them back with
//!   `RELEASE` once the slot's own worker is ready. A socket bound for a
//!   scale-up only listens once its worker was forked.
//! * A rolling restart or a scale-down never leaves fewer workers accepting
//!   on a queue than before: the old worker gets `SIGTERM` only once its
//!   replacement or adopter reported `READY`.
//! * Operations (`HUP`, `TTIN`, `TTOU`, recycles) run one after another,
//!   in arrival order; a stop cancels them.
//! * A rolling restart is over (`reloading` false, "rolling restart
//!   complete") only once it went through every slot. A replacement that
//!   could not be forked (the process limit reached) is forked again after
//!   the slot's backoff, 100 ms doubling to 5 s, for as long as it takes:
//!   the old worker serves meanwhile, and operations queued behind wait. A
//!   replacement that was forked but died or was not ready in time is
//!   stopped and the old worker kept, and the end of the restart says how
//!   many were kept.
//!
//! # Recycling
//!
//! A worker past one of its limits (its request count, which it reports
//! itself, or its memory, which the master measures) is replaced like one
//! step of a rolling restart: the replacement is forked for the same slot
//! and accepts on the same sockets, and only once it is `READY` does the
//! old worker get `SIGTERM` and drain. A worker is queued at most once;
//! one recycle runs at a time, behind any operation already queued. When
//! its turn comes, a worker that is no longer its slot's current worker (a
//! rolling restart replaced it, it died, its slot was removed) is not
//! recycled again. A replacement that dies, cannot be forked or is not
//! ready within the ready timeout is stopped and the old worker kept; the
//! recycle is tried again [`RECYCLE_RETRY`] later. A stop cancels every
//! recycle, queued or under way, and ignores new requests.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::server::timer::later;
use log::{debug, error, info, warn};

use ops::Current;

pub(crate) use super::scoreboard::Restart;

mod lend;
mod ops;
mod status;
#[cfg(test)]
mod tests;
mod upgrade;

use upgrade::UpgradeState;

pub(crate) use upgrade::UPGRADE_TIMEOUT;

pub(crate) use super::listener::Mode;

/// First respawn delay after an unexpected worker exit or a failed fork.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Largest respawn delay for a slot that keeps crashing.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A worker that lived this long resets its slot's backoff.
pub(crate) const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);
/// A master none of whose workers was ever ready gives up (exit status
/// [`BOOT_FAILURE_STATUS`]) once a slot's worker died before it was ready
/// this many times in a row: a worker that cannot start (its
/// `on_worker_start` panics, the database it opens is not there, its
/// user cannot be switched to) would otherwise be respawned for ever
/// behind an address that accepts connections no one serves.
pub(crate) const BOOT_FAILURES_TO_GIVE_UP: u32 = 3;
/// The master's exit status when its workers cannot start (gunicorn's
/// "worker failed to boot" status).
pub(crate) const BOOT_FAILURE_STATUS: i32 = 3;
/// How long after a failed recycle (its replacement died or was never
/// ready) the same worker's recycle is tried again.
pub(crate) const RECYCLE_RETRY: Duration = Duration::from_secs(10);
/// The most workers a server runs: a rolling restart keeps every old
/// worker draining beside its replacement, and each holds one of the
/// scoreboard's entries.
pub(crate) const MAX_WORKERS: usize = crate::server::scoreboard::MAX_ENTRIES / 2;

/// The supervisor's name for a worker (a fork under way has no pid yet).
pub(crate) type WorkerId = usize;

/// What the operator asked for (from the signals the master reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// `SIGINT`/`SIGTERM`: `SIGTERM` every worker, `SIGKILL` after the
    /// graceful timeout, exit once all are gone.
    Stop,
    /// `SIGQUIT`: `SIGKILL` every worker, exit once all are gone.
    Quit,
    /// `SIGHUP`: rolling restart.
    Reload,
    /// `SIGTTIN`: one worker more.
    ScaleUp,
    /// `SIGTTOU`: one worker fewer (never below 1).
    ScaleDown,
    /// Replace this worker (queued by [`Event::Recycle`], not a signal).
    Recycle(WorkerId),
    /// `SIGUSR2`: binary upgrade (see `upgrade.rs`).
    Upgrade,
}

/// What happened, as the master reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// An operator command.
    Command(Command),
    /// The fork of [`Action::Fork`] succeeded.
    Forked { worker: WorkerId, pid: i32 },
    /// The fork of [`Action::Fork`] failed (the reason is logged).
    ForkFailed { worker: WorkerId, reason: String },
    /// The bind of [`Action::Bind`]: `ok` means the master now holds one
    /// more socket (numbered after the existing ones), not listening.
    Bound { address: usize, ok: bool },
    /// A worker reported `READY` (started, or adopted a socket).
    Ready { worker: WorkerId },
    /// A worker's control channel hit EOF or went out of sync.
    ChannelClosed { worker: WorkerId },
    /// A child was reaped; `status` describes how it ended.
    Exited { pid: i32, status: String },
    /// A worker is past one of its recycling limits: replace it. `reason`
    /// (for the log) names the limit and the measured value.
    Recycle { worker: WorkerId, reason: String },
    /// A worker's event loop has not turned for `stuck` (the watchdog,
    /// from the scoreboard's heartbeat); `what` is what it is stuck in
    /// (`GET /report?id=7`, or `its event loop` outside a handler).
    Stuck {
        worker: WorkerId,
        stuck: Duration,
        what: String,
    },
    /// Time passed (a deadline from [`Supervisor::next_deadline`]).
    Tick,
    /// The new master of [`Action::SpawnMaster`] runs as `pid`.
    MasterSpawned { pid: i32 },
    /// The new master could not be started.
    MasterSpawnFailed { reason: String },
    /// The new master reported every one of its workers ready.
    MasterReady,
    /// (In a new master) the old master has exited.
    PredecessorGone,
}

/// A signal the supervisor sends to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sig {
    /// Stop accepting, drain, exit.
    Term,
    /// Now.
    Kill,
}

/// What the master must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Bind one more (not yet listening) `SO_REUSEPORT` socket on
    /// `address`; answer with [`Event::Bound`].
    Bind { address: usize },
    /// Fork `worker` for `slot`, accepting on the sockets `accept`; the
    /// child first calls `listen` on those in `listen` (sockets only bound
    /// so far: a worker must not register a socket that does not listen).
    /// Answer with [`Event::Forked`] or [`Event::ForkFailed`].
    Fork {
        worker: WorkerId,
        slot: usize,
        accept: Vec<usize>,
        listen: Vec<usize>,
        /// Why (for the log): start, respawn, reload, scale-up, ...
        why: &'static str,
    },
    /// `listen(2)` on a socket that was only bound (after its fork).
    Listen { socket: usize },
    /// Send a signal to a worker process.
    Signal { pid: i32, sig: Sig },
    /// Send `ADOPT socket` to a worker: it also accepts on that socket and
    /// answers `READY`.
    Adopt { worker: WorkerId, socket: usize },
    /// Send `RELEASE socket` to a worker: it stops accepting on a socket it
    /// was lent, now that the socket's own worker is back.
    Release { worker: WorkerId, socket: usize },
    /// A stop began: close the master's copies of the listening sockets,
    /// so that each closes (and new connections are refused) once its
    /// workers have closed theirs, instead of queueing connections no one
    /// will accept until the master exits and resets them. Sockets that
    /// another process also holds (a new master after a binary upgrade,
    /// systemd's socket unit) stay open.
    CloseListeners,
    /// Every worker is gone after a stop: exit with this code.
    Exit(i32),
    /// Start a new master from the executable, passing it the listening
    /// sockets; answer with [`Event::MasterSpawned`] or
    /// [`Event::MasterSpawnFailed`].
    SpawnMaster,
    /// The new master `pid` takes over (tell systemd its pid); this master
    /// now stops.
    HandOver { pid: i32 },
    /// The upgrade failed and the new master is gone: put the pid file
    /// back, tell systemd why; this master serves on.
    UpgradeFailed { reason: String },
    /// The upgrade failed and the new master is being stopped (by the old
    /// one, or, in the new one, by a signal before it took over): put the
    /// pid file back now, so that `kill $(cat PID_FILE)` reaches the
    /// master that serves on, not the one on its way out.
    RestorePidFile,
    /// (In a new master) tell the old master that every worker is ready.
    TellPredecessor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The slot's serving worker.
    Current,
    /// A replacement not yet promoted.
    Candidate,
    /// Sent `SIGTERM` (or `SIGKILL`); its exit is expected.
    Retiring,
}

#[derive(Debug)]
struct Worker {
    /// `None` while the fork is under way.
    pid: Option<i32>,
    slot: usize,
    role: Role,
    ready: bool,
    /// `READY`s still expected: 1 for start-up plus 1 per `ADOPT` sent.
    acks_pending: u32,
    started: Instant,
    /// How many sockets the worker inherited: it can only adopt below this.
    fds: usize,
    /// Sockets the process accepts on.
    accepts: Vec<usize>,
    /// Its control channel is open (so `ADOPT` can reach it).
    channel: bool,
    /// When a retiring worker gets `SIGKILL`.
    kill_at: Option<Instant>,
    /// A signal decided before its fork completed.
    pending_signal: Option<Sig>,
    /// Why it is to be recycled, once asked (queued, under way, or
    /// waiting for `recycle_retry`).
    recycle: Option<String>,
    /// When a failed recycle is queued again.
    recycle_retry: Option<Instant>,
    /// Killed by the watchdog: its exit is a timeout, not a crash.
    timed_out: bool,
}

#[derive(Debug)]
struct Slot {
    /// Socket numbers: its own first, then moved ones.
    sockets: Vec<usize>,
    worker: Option<WorkerId>,
    backoff: Duration,
    respawn_at: Option<Instant>,
    /// Being removed by a scale-down: not respawned.
    removing: bool,
    /// Its workers that died before they were ready, in a row.
    boot_failures: u32,
}

impl Slot {
    fn new(sockets: Vec<usize>) -> Slot {
        Slot {
            sockets,
            worker: None,
            backoff: BACKOFF_MIN,
            respawn_at: None,
            removing: false,
            boot_failures: 0,
        }
    }
}

#[derive(Debug)]
struct Socket {
    address: usize,
    listening: bool,
}

/// The master's state and decisions; see the module docs.
#[derive(Debug)]
pub(crate) struct Supervisor {
    graceful_timeout: Duration,
    ready_timeout: Duration,
    modes: Vec<Mode>,
    sockets: Vec<Socket>,
    slots: Vec<Slot>,
    workers: BTreeMap<WorkerId, Worker>,
    next_worker: WorkerId,
    ops: VecDeque<Command>,
    current: Option<Current>,
    /// Sockets lent to a worker while their slot had none: socket -> borrower.
    lent: BTreeMap<usize, WorkerId>,
    stopping: bool,
    exited: bool,
    /// Whether any worker of this master has reported ready.
    ever_ready: bool,
    /// Workers cannot start: stop, and exit with [`BOOT_FAILURE_STATUS`].
    give_up: bool,
    /// Workers killed by the watchdog so far.
    timeouts: u64,
    /// Worker restarts per slot by reason ([`Restart`] as index), for the
    /// metrics (the master copies them to the scoreboard).
    restarts: Vec<[u64; 5]>,
    /// How long a `Stop` keeps serving before the drain starts (see
    /// [`Supervisor::set_shutdown_delay`]).
    shutdown_delay: Duration,
    /// When the delayed stop begins.
    stop_at: Option<Instant>,
    /// The binary upgrade, either side (see `upgrade.rs`).
    upgrade: UpgradeState,
}

impl Supervisor {
    /// `addresses`: each address's mode and number of bound, listening
    /// sockets (sockets are numbered address by address; see
    /// [`not_listening`](Self::not_listening) for those only bound).
    /// `workers` is at least 1.
    pub(crate) fn new(
        workers: usize,
        graceful_timeout: Duration,
        ready_timeout: Duration,
        addresses: &[(Mode, usize)],
    ) -> Supervisor {
        let workers = workers.max(1);
        let mut slots: Vec<Slot> = (0..workers).map(|_| Slot::new(Vec::new())).collect();
        let mut sockets = Vec::new();
        for (address, &(mode, n)) in addresses.iter().enumerate() {
            for j in 0..n {
                let id = sockets.len();
                sockets.push(Socket {
                    address,
                    listening: true,
                });
                match mode {
                    // Slot i accepts on socket j of the group for j % workers == i.
                    Mode::ReusePort => slots[j % workers].sockets.push(id),
                    Mode::Shared => slots.iter_mut().for_each(|s| s.sockets.push(id)),
                }
            }
        }
        Supervisor {
            graceful_timeout,
            ready_timeout,
            modes: addresses.iter().map(|&(m, _)| m).collect(),
            sockets,
            slots,
            workers: BTreeMap::new(),
            next_worker: 0,
            ops: VecDeque::new(),
            current: None,
            lent: BTreeMap::new(),
            stopping: false,
            exited: false,
            ever_ready: false,
            give_up: false,
            timeouts: 0,
            restarts: Vec::new(),
            shutdown_delay: Duration::ZERO,
            stop_at: None,
            upgrade: UpgradeState::default(),
        }
    }

    /// Says which of the sockets given to [`new`](Self::new) are only
    /// bound (a binary upgrade to more workers binds the extra ones): each
    /// listens once its worker is ready, as a scale-up's does.
    pub(crate) fn not_listening(&mut self, sockets: &[usize]) {
        for &s in sockets {
            if let Some(socket) = self.sockets.get_mut(s) {
                socket.listening = false;
            }
        }
    }

    /// Delays a graceful stop by `delay`: on `Stop` the workers keep
    /// serving (and accepting) for that long, while health checks answer
    /// 503 ([`Supervisor::stop_requested`]), so a load balancer takes the
    /// server out of rotation before connections are refused; then the
    /// drain starts as without a delay. A second `Stop` during the delay
    /// starts it at once; `Quit` stops at once. Like Kubernetes' pre-stop
    /// sleep.
    pub(crate) fn set_shutdown_delay(&mut self, delay: Duration) {
        self.shutdown_delay = delay;
    }

    /// Whether a stop was asked for (delayed or under way).
    pub(crate) fn stop_requested(&self) -> bool {
        self.stopping || self.stop_at.is_some()
    }

    /// Worker restarts per slot, by reason ([`Restart`] as index).
    pub(crate) fn restarts(&self) -> &[[u64; 5]] {
        &self.restarts
    }

    /// Starts from restart counts kept before this supervisor (the old
    /// master's, after a binary upgrade): counted on from there, so the
    /// metrics never go backwards.
    pub(crate) fn seed_restarts(&mut self, counts: Vec<[u64; 5]>) {
        self.restarts = counts;
    }

    /// Counts one restart of `slot` for `why`.
    fn count_restart(&mut self, slot: usize, why: Restart) {
        if self.restarts.len() <= slot {
            self.restarts.resize(slot + 1, [0; 5]);
        }
        self.restarts[slot][why as usize] += 1;
    }

    /// The first actions: one fork per slot.
    pub(crate) fn start(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        for slot in 0..self.slots.len() {
            let id = self.fork(slot, Role::Current, "start", now, &mut out);
            self.slots[slot].worker = Some(id);
        }
        out
    }

    /// Pids of every worker process alive (for an emergency stop).
    pub(crate) fn pids(&self) -> Vec<i32> {
        self.workers.values().filter_map(|w| w.pid).collect()
    }

    /// How many worker slots there are now (`SIGTTIN`/`SIGTTOU` change it).
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The serving workers whose memory the master watches: each slot's
    /// current, ready worker not already due for recycling, as
    /// `(worker, slot, pid)`.
    pub(crate) fn serving(&self) -> Vec<(WorkerId, usize, i32)> {
        if self.stopping {
            return Vec::new();
        }
        self.slots
            .iter()
            .filter_map(|s| s.worker)
            .filter_map(|id| {
                let w = self.workers.get(&id)?;
                let ok = w.role == Role::Current && w.ready && w.recycle.is_none();
                ok.then_some((id, w.slot, w.pid?))
            })
            .collect()
    }

    /// The earliest time at which [`Event::Tick`] has something to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let respawns = self.slots.iter().filter_map(|s| s.respawn_at);
        let kills = self
            .workers
            .values()
            .filter_map(|w| w.kill_at)
            .chain(self.workers.values().filter_map(|w| w.recycle_retry));
        let stop = self.stop_at;
        let op = match &self.current {
            Some(Current::Reload {
                candidate: Some(_),
                deadline,
                ..
            })
            | Some(Current::ScaleDown { deadline, .. }) => Some(*deadline),
            Some(Current::Reload {
                candidate: None,
                retry_at,
                ..
            }) => *retry_at,
            _ => None,
        };
        respawns
            .chain(kills)
            .chain(op)
            .chain(stop)
            .chain(self.upgrade_deadline())
            .min()
    }

    /// Applies `event` at time `now` and returns what to do.
    pub(crate) fn handle(&mut self, now: Instant, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Command(Command::Stop) => {
                if self.stop_at.is_none() && !self.stopping && !self.shutdown_delay.is_zero() {
                    info!(
                        "stop requested: serving {:.1} s more (shutdown delay), then draining",
                        self.shutdown_delay.as_secs_f64()
                    );
                    self.stop_at = Some(later(now, self.shutdown_delay));
                } else {
                    self.stop_at = None;
                    self.stop(true, now, &mut out);
                }
            }
            Event::Command(Command::Quit) => {
                self.stop_at = None;
                self.stop(false, now, &mut out);
            }
            Event::Command(Command::Upgrade) => self.start_upgrade(now, &mut out),
            Event::Command(op) => self.queue(op),
            Event::Forked { worker, pid } => self.forked(worker, pid, now, &mut out),
            Event::ForkFailed { worker, reason } => self.fork_failed(worker, &reason, now),
            Event::Bound { address, ok } => self.bound(address, ok, now, &mut out),
            Event::Ready { worker } => self.ready(worker, &mut out),
            Event::ChannelClosed { worker } => {
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.channel = false;
                }
            }
            Event::Exited { pid, status } => {
                if !self.master_exited(pid, &status, &mut out) {
                    self.exited(pid, &status, now);
                }
            }
            Event::MasterSpawned { pid } => self.master_spawned(pid, now, &mut out),
            Event::MasterSpawnFailed { reason } => self.master_spawn_failed(&reason, &mut out),
            Event::MasterReady => self.master_ready(now, &mut out),
            Event::PredecessorGone => self.predecessor_gone(),
            Event::Recycle { worker, reason } => self.request_recycle(worker, reason),
            Event::Stuck {
                worker,
                stuck,
                what,
            } => self.stuck(worker, stuck, &what, &mut out),
            Event::Tick => {}
        }
        if self.stop_at.is_some_and(|t| t <= now) {
            self.stop_at = None;
            info!("shutdown delay over: draining");
            self.stop(true, now, &mut out);
        }
        if self.give_up && !self.stopping {
            self.stop(true, now, &mut out);
        }
        self.on_timers(now, &mut out);
        self.drive(now, &mut out);
        if !self.stopping {
            self.take_back(&mut out);
            self.cover_stranded(&mut out);
            self.tell_predecessor(&mut out);
        }
        if self.stopping && self.workers.is_empty() && !self.upgrade_child_alive() && !self.exited {
            self.exited = true;
            info!("all workers exited; bye");
            out.push(Action::Exit(match self.give_up {
                true => BOOT_FAILURE_STATUS,
                false => 0,
            }));
        }
        out
    }

    /// How many workers the watchdog has killed (a timeout is not a
    /// crash: counted apart, and respawned without backoff).
    #[allow(dead_code)] // read by the tests; the metrics will read it too
    pub(crate) fn timeouts(&self) -> u64 {
        self.timeouts
    }

    /// The watchdog found `id` stuck: `SIGKILL` it (once). A slot's
    /// current worker is respawned at once when its exit is reaped.
    fn stuck(&mut self, id: WorkerId, stuck: Duration, what: &str, out: &mut Vec<Action>) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        let Some(pid) = w.pid else {
            return;
        };
        if w.timed_out {
            return;
        }
        w.timed_out = true;
        w.kill_at = None;
        self.timeouts += 1;
        let slot = w.slot;
        self.count_restart(slot, Restart::Timeout);
        let w = &self.workers[&id];
        let role = match w.role {
            Role::Retiring => " while draining",
            Role::Candidate => " (a replacement not yet ready)",
            Role::Current => "",
        };
        warn!(
            "worker {} (pid {pid}) stuck {:.1} s in {what}{role}, killing it",
            w.slot,
            stuck.as_secs_f64()
        );
        out.push(Action::Signal {
            pid,
            sig: Sig::Kill,
        });
    }

    /// Queues the recycling of `id` unless it is already queued (or
    /// waiting for a retry), retiring, or the master is stopping.
    fn request_recycle(&mut self, id: WorkerId, reason: String) {
        let stopping = self.stopping;
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        let pid = w.pid.unwrap_or(0);
        if stopping || w.role == Role::Retiring || w.recycle.is_some() {
            debug!(
                "worker {} (pid {pid}): recycle ({reason}) not needed now",
                w.slot
            );
            return;
        }
        info!("worker {} (pid {pid}) to be recycled: {reason}", w.slot);
        w.recycle = Some(reason);
        self.ops.push_back(Command::Recycle(id));
    }

    fn queue(&mut self, op: Command) {
        let name = match op {
            Command::Reload => "SIGHUP",
            Command::ScaleUp => "SIGTTIN",
            Command::Recycle(_) => "recycle",
            _ => "SIGTTOU",
        };
        if self.stopping {
            info!("{name} ignored: stopping");
        } else if op == Command::Reload && self.reload_retrying() {
            // The rolling restart under way cannot fork (see
            // `replacement_fork_failed`); this one replaces every worker
            // anyway, so it takes its place (in its turn, like any `SIGHUP`)
            // rather than wait for it.
            info!("SIGHUP received: the rolling restart waiting to fork again starts over");
            self.current = None;
            if !self.ops.contains(&Command::Reload) {
                self.ops.push_back(op);
            }
        } else if op == Command::Reload && self.ops.contains(&Command::Reload) {
            info!("SIGHUP: a rolling restart is already queued");
        } else {
            info!("{name} received: {op:?} queued");
            self.ops.push_back(op);
        }
    }

    fn fork(
        &mut self,
        slot: usize,
        role: Role,
        why: &'static str,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> WorkerId {
        let id = self.next_worker;
        self.next_worker += 1;
        let accept = self.slots[slot].sockets.clone();
        let listen = accept
            .iter()
            .copied()
            .filter(|&s| !self.sockets[s].listening)
            .collect();
        self.workers.insert(
            id,
            Worker {
                pid: None,
                slot,
                role,
                ready: false,
                acks_pending: 1,
                started: now,
                fds: self.sockets.len(),
                accepts: accept.clone(),
                channel: true,
                kill_at: None,
                pending_signal: None,
                recycle: None,
                recycle_retry: None,
                timed_out: false,
            },
        );
        out.push(Action::Fork {
            worker: id,
            slot,
            accept,
            listen,
            why,
        });
        id
    }

    fn forked(&mut self, id: WorkerId, pid: i32, now: Instant, out: &mut Vec<Action>) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        w.pid = Some(pid);
        w.started = now;
        if let Some(sig) = w.pending_signal.take() {
            out.push(Action::Signal { pid, sig });
        }
    }

    fn fork_failed(&mut self, id: WorkerId, reason: &str, now: Instant) {
        let Some(w) = self.workers.remove(&id) else {
            return;
        };
        let slot = w.slot;
        error!("fork failed for worker {slot}: {reason}");
        if self.slots.get(slot).and_then(|s| s.worker) == Some(id) {
            self.slots[slot].worker = None;
            if !self.stopping && !self.slots[slot].removing {
                let delay = self.schedule_respawn(slot, now);
                info!("worker {slot}: retrying the fork in {delay:?}");
            }
        }
        // A failed replacement: a rolling restart forks it again later;
        // other operations see it missing.
        self.replacement_fork_failed(id, now);
    }

    fn ready(&mut self, id: WorkerId, out: &mut Vec<Action>) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        w.acks_pending = w.acks_pending.saturating_sub(1);
        let pid = w.pid.unwrap_or(0);
        if !w.ready {
            w.ready = true;
            self.ever_ready = true;
            if let Some(slot) = self.slots.get_mut(w.slot) {
                slot.boot_failures = 0;
            }
            info!("worker {} (pid {pid}) ready", w.slot);
            // A socket only bound so far (a scale-up's, an upgrade's
            // extra one) listens from now on: the worker listened on it
            // just before it reported ready, and the master's copy says
            // so too. Until then the kernel gave its connections to the
            // other sockets of the address, not to a queue no one reads.
            for &s in &w.accepts {
                if !self.sockets[s].listening {
                    self.sockets[s].listening = true;
                    out.push(Action::Listen { socket: s });
                }
            }
        } else {
            debug!("worker {} (pid {pid}) confirmed adoption", w.slot);
        }
    }

    fn exited(&mut self, pid: i32, status: &str, now: Instant) {
        let Some(id) = self
            .workers
            .iter()
            .find_map(|(&id, w)| (w.pid == Some(pid)).then_some(id))
        else {
            debug!("reaped unknown child {pid}: {status}");
            return;
        };
        let Some(w) = self.workers.remove(&id) else {
            return;
        };
        let slot = w.slot;
        match w.role {
            Role::Retiring => info!("worker {slot} (pid {pid}) exited: {status}"),
            Role::Candidate => {
                warn!("replacement worker {slot} (pid {pid}) exited before it was ready: {status}")
            }
            Role::Current => {
                if self.slots.get(slot).and_then(|s| s.worker) == Some(id) {
                    self.slots[slot].worker = None;
                }
                if self.stopping {
                    info!("worker {slot} (pid {pid}) exited: {status}");
                    return;
                }
                if !w.timed_out {
                    self.count_restart(slot, Restart::Crash);
                }
                if !w.ready && !w.timed_out && self.boot_failed(slot, status) {
                    return;
                }
                // A replacement being started for this slot takes over.
                if let Some(c) = self.candidate_for(slot) {
                    if let Some(cw) = self.workers.get_mut(&c) {
                        if cw.role == Role::Candidate {
                            cw.role = Role::Current;
                            self.slots[slot].worker = Some(c);
                            warn!(
                                "worker {slot} (pid {pid}) exited unexpectedly: {status}; \
                                 its replacement (pid {}) takes over",
                                cw.pid.unwrap_or(0)
                            );
                            return;
                        }
                    }
                }
                if self.slots.get(slot).is_none_or(|s| s.removing) {
                    warn!(
                        "worker {slot} (pid {pid}) exited unexpectedly: {status} (slot being removed)"
                    );
                    return;
                }
                if w.timed_out {
                    // Not a crash: no backoff (and the slot's backoff is
                    // left as it was); its sockets are lent meanwhile.
                    self.slots[slot].respawn_at = Some(now);
                    warn!("worker {slot} (pid {pid}) killed by the watchdog: {status}; respawning now");
                    return;
                }
                let lived = now.saturating_duration_since(w.started);
                if lived >= BACKOFF_RESET_AFTER {
                    self.slots[slot].backoff = BACKOFF_MIN;
                }
                let delay = self.schedule_respawn(slot, now);
                warn!(
                    "worker {slot} (pid {pid}) exited unexpectedly after {:.1}s: {status}; \
                     respawning in {delay:?}",
                    lived.as_secs_f64()
                );
            }
        }
    }

    /// A slot's worker died before it was ready: counted, and once
    /// [`BOOT_FAILURES_TO_GIVE_UP`] did in a row while no worker of this
    /// master ever was, the master gives up (`true`).
    fn boot_failed(&mut self, slot: usize, status: &str) -> bool {
        let Some(s) = self.slots.get_mut(slot) else {
            return false;
        };
        s.boot_failures += 1;
        if self.ever_ready || s.boot_failures < BOOT_FAILURES_TO_GIVE_UP {
            return false;
        }
        error!(
            "worker {slot} exited before it was ready {} times in a row (the last: {status}), \
             and no worker has started: giving up (exit status {BOOT_FAILURE_STATUS}); \
             the log above says why",
            s.boot_failures
        );
        self.give_up = true;
        true
    }

    /// The replacement being started for `slot`, if any.
    fn candidate_for(&self, slot: usize) -> Option<WorkerId> {
        match self.current {
            Some(Current::Reload {
                slot: s, candidate, ..
            }) if s == slot => candidate,
            Some(Current::ScaleDown {
                survivor,
                candidate,
                ..
            }) if survivor == slot => candidate,
            _ => None,
        }
    }

    /// Schedules the slot's respawn after its backoff, doubles the backoff
    /// (up to [`BACKOFF_MAX`]) and returns the delay.
    fn schedule_respawn(&mut self, slot: usize, now: Instant) -> Duration {
        let delay = self.next_backoff(slot);
        self.slots[slot].respawn_at = Some(now + delay);
        delay
    }

    /// The slot's backoff, doubled (up to [`BACKOFF_MAX`]) for next time.
    fn next_backoff(&mut self, slot: usize) -> Duration {
        let s = &mut self.slots[slot];
        let delay = s.backoff;
        s.backoff = (s.backoff * 2).min(BACKOFF_MAX);
        delay
    }

    fn signal(&mut self, id: WorkerId, sig: Sig, out: &mut Vec<Action>) {
        if let Some(w) = self.workers.get_mut(&id) {
            match w.pid {
                Some(pid) => out.push(Action::Signal { pid, sig }),
                None => w.pending_signal = Some(sig),
            }
        }
    }

    /// `SIGTERM` now, `SIGKILL` after the graceful timeout.
    fn retire(&mut self, id: WorkerId, now: Instant, out: &mut Vec<Action>) {
        self.signal(id, Sig::Term, out);
        if let Some(w) = self.workers.get_mut(&id) {
            w.role = Role::Retiring;
            w.kill_at = Some(later(now, self.graceful_timeout));
        }
    }

    fn stop(&mut self, graceful: bool, now: Instant, out: &mut Vec<Action>) {
        if graceful && self.stopping {
            info!("already stopping");
            return;
        }
        let first = !self.stopping;
        self.stopping = true;
        if first {
            out.push(Action::CloseListeners);
            // A new master stopped before it took over (an upgrade being
            // abandoned): the pid file names the old one again at once.
            if self.upgrade.predecessor.is_some() && !self.upgrade.told {
                out.push(Action::RestorePidFile);
            }
        }
        self.stop_upgrade(graceful, now, out);
        self.ops.clear();
        self.current = None;
        for slot in &mut self.slots {
            slot.respawn_at = None;
        }
        for w in self.workers.values_mut() {
            w.recycle_retry = None;
        }
        let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
        if graceful {
            info!(
                "graceful stop: SIGTERM to {} workers, SIGKILL after {:?}",
                ids.len(),
                self.graceful_timeout
            );
            let deadline = later(now, self.graceful_timeout);
            for id in ids {
                let w = &self.workers[&id];
                // A worker already retiring got its SIGTERM.
                let term = w.role != Role::Retiring || w.kill_at.is_none();
                if term {
                    self.signal(id, Sig::Term, out);
                }
                let w = self.workers.get_mut(&id).expect("listed");
                w.role = Role::Retiring;
                w.kill_at = Some(w.kill_at.map_or(deadline, |k| k.min(deadline)));
            }
        } else {
            info!(
                "immediate stop{}: SIGKILL to {} workers",
                if first { "" } else { " (escalated)" },
                ids.len()
            );
            for id in ids {
                self.signal(id, Sig::Kill, out);
                let w = self.workers.get_mut(&id).expect("listed");
                w.role = Role::Retiring;
                w.kill_at = None;
            }
        }
    }

    fn on_timers(&mut self, now: Instant, out: &mut Vec<Action>) {
        let due: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.kill_at.is_some_and(|k| k <= now))
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            let w = self.workers.get_mut(&id).expect("listed");
            w.kill_at = None;
            warn!(
                "worker {} (pid {}) still running after the graceful timeout; SIGKILL",
                w.slot,
                w.pid.unwrap_or(0)
            );
            self.signal(id, Sig::Kill, out);
        }
        self.upgrade_timers(now, out);
        if self.stopping {
            return;
        }
        let retries: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.recycle_retry.is_some_and(|t| t <= now))
            .map(|(&id, _)| id)
            .collect();
        for id in retries {
            let w = self.workers.get_mut(&id).expect("listed");
            w.recycle_retry = None;
            info!(
                "worker {} (pid {}): trying its recycle again",
                w.slot,
                w.pid.unwrap_or(0)
            );
            self.ops.push_back(Command::Recycle(id));
        }
        for slot in 0..self.slots.len() {
            let s = &self.slots[slot];
            if s.removing || s.worker.is_some() || s.respawn_at.is_none_or(|t| t > now) {
                continue;
            }
            self.slots[slot].respawn_at = None;
            let id = self.fork(slot, Role::Current, "respawn", now, out);
            self.slots[slot].worker = Some(id);
        }
        match self.current {
            Some(Current::Reload {
                slot,
                candidate: Some(c),
                deadline,
                recycle,
                kept,
                ..
            }) if deadline <= now => {
                if let Some(w) = self.workers.get(&c).filter(|w| w.role == Role::Candidate) {
                    warn!(
                        "replacement worker {slot} (pid {}) not ready within {:?}; \
                         stopping it and keeping the old worker",
                        w.pid.unwrap_or(0),
                        self.ready_timeout
                    );
                    self.retire(c, now, out);
                }
                self.current = Some(Current::Reload {
                    slot: slot + 1,
                    candidate: None,
                    deadline,
                    recycle,
                    retry_at: None,
                    kept: kept + 1,
                });
            }
            Some(Current::ScaleDown {
                survivor, deadline, ..
            }) if deadline <= now => {
                let why = format!(
                    "worker {survivor} did not confirm the hand-over within {:?}",
                    self.ready_timeout
                );
                self.abort_scale_down(&why, now, out);
            }
            _ => {}
        }
    }
}
