//! The prefork master: binds the listeners, forks the workers, supervises
//! them, and turns signals into graceful stop, rolling restart and scaling.
//! It knows nothing of HTTP.
//!
//! # Listeners: the technique (nginx's, the research notes' Trap 1)
//!
//! On Linux, closing a `SO_REUSEPORT` listener resets every connection
//! waiting in its accept queue. So the master creates one reuseport listener
//! per worker slot *before* forking ([`bind_listeners`]) and never closes
//! any of them while it runs. Worker `k` inherits every listener fd and
//! accepts on listener `k` ([`WorkerStart::active`]).
//!
//! * **Rolling restart (`SIGHUP`)**: for one slot at a time, the replacement
//!   is forked first; it inherits the same listener, so old and new share
//!   one accept queue. Once the replacement reports [`READY`](control::READY)
//!   the old worker gets `SIGTERM`, deregisters the listener (without closing
//!   the kernel socket, which the master still holds) and finishes its
//!   in-flight connections. The queue is never without an acceptor, and
//!   there are never fewer than `n` workers accepting.
//! * **Scale-down (`SIGTTOU`)**: the last slot's listeners are handed to a
//!   surviving worker with [`ADOPT`](control::ADOPT); only after that worker
//!   confirms (it answers `READY`) does the removed worker get `SIGTERM`.
//!   The listener stays open in the master and keeps being served. If every
//!   survivor was forked before one of those listeners existed (it was bound
//!   by a later `SIGTTIN`), the survivor has no fd to adopt: it is replaced
//!   instead, like one step of a rolling restart, by a worker that inherits
//!   all listeners and accepts on its own and the moved ones.
//! * **Scale-up (`SIGTTIN`)**: a listener previously adopted by a survivor
//!   is given back to the new slot; otherwise one more reuseport listener is
//!   bound on the same port (the master's own group, so no Trap 3 probe).
//! * **Crash**: the dead worker's queue survives in the kernel because the
//!   master holds the fd; queued connections wait for the respawned worker
//!   (after a backoff of at least 100 ms) instead of being reset. (The other
//!   side of that coin: while a slot is crash-looping, the connections the
//!   kernel hashes to its listener wait until the backlog overflows.)
//! * **Graceful stop**: workers stop accepting and finish what they
//!   accepted; connections still queued when the master exits are reset, as
//!   with any server that stops.
//!
//! # Signals
//!
//! Before the first fork the master blocks [`HANDLED_SIGNALS`] with
//! `sigprocmask` and keeps them blocked; it reads them from a signalfd in
//! its mio loop and installs no handler at all, so no signal can arrive
//! "too early". A forked worker resets their dispositions, asks for
//! `SIGTERM` on the master's death (`PR_SET_PDEATHSIG`), checks the master is
//! still its parent, and keeps the mask blocked until its own handlers are
//! installed ([`worker_signals_ready`]).
//!
//! | signal to the master | effect |
//! |---|---|
//! | `SIGINT`, `SIGTERM` | graceful stop: `SIGTERM` to every worker, wait; `SIGKILL` whatever is left after `graceful_timeout`; reap all; exit 0 |
//! | `SIGQUIT` | immediate stop: `SIGKILL` every worker, reap all, exit 0 |
//! | `SIGHUP` | rolling restart, one slot at a time (see above); a replacement not ready within `ready_timeout` is stopped (`SIGTERM`, `SIGKILL` after `graceful_timeout`) and the old worker kept |
//! | `SIGTTIN` | one worker more |
//! | `SIGTTOU` | one worker fewer, never below 1, without losing its queue |
//! | `SIGCHLD` | reap (`waitpid(-1, WNOHANG)` until none); an unexpected exit is logged with pid and status/signal and the slot respawned after an exponential backoff (100 ms doubling to 5 s; reset once a worker has lived 10 s) |
//!
//! Signals sent to the master coalesce like any standard signal: several
//! `SIGTTIN` sent at once may count as one. Operations (`HUP`, `TTIN`,
//! `TTOU`) run one after another, in arrival order.
//!
//! Workers never outlive the master: `PR_SET_PDEATHSIG` sends them
//! `SIGTERM` when it dies (even by `SIGKILL`), and they also see EOF on their
//! control channel.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::errno::Errno;
use nix::sys::signal::{kill, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use socket2::{Domain, Protocol, Socket, Type};

use super::control::{self, Channel, Msg, SendNoSignal};
use super::sys;
use crate::pubsub::relay;

/// The signals the master blocks before forking and reads from its signalfd.
pub(crate) const HANDLED_SIGNALS: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGQUIT,
    Signal::SIGHUP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGCHLD,
];

/// First respawn delay after an unexpected worker exit.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Largest respawn delay for a slot that keeps crashing.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A worker that lived this long resets its slot's backoff.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);

/// Settings of the master.
#[derive(Debug, Clone)]
pub(crate) struct MasterConfig {
    /// Number of worker processes (slots) to run; at least 1.
    pub workers: usize,
    /// How long stopping workers may drain before they get `SIGKILL`
    /// (graceful stop, and workers retired by reload or scale-down).
    pub graceful_timeout: Duration,
    /// Join an existing `SO_REUSEPORT` group on the address on purpose
    /// (skips the Trap 3 probe in [`bind_listeners`]).
    pub join_existing: bool,
    /// `listen(2)` backlog of every listener.
    pub backlog: i32,
    /// How long a new worker may take to report `READY` during a rolling
    /// restart or a scale-down hand-over before the step is abandoned.
    pub ready_timeout: Duration,
}

impl Default for MasterConfig {
    /// 1 worker, 30 s graceful timeout, no joining, backlog 1024, 30 s ready
    /// timeout.
    fn default() -> Self {
        Self {
            workers: 1,
            graceful_timeout: Duration::from_secs(30),
            join_existing: false,
            backlog: 1024,
            ready_timeout: Duration::from_secs(30),
        }
    }
}

/// What a freshly forked worker gets.
#[derive(Debug)]
pub(crate) struct WorkerStart {
    /// Slot number, `0..workers`.
    pub index: usize,
    /// All listeners the master holds (inherited fds). The worker must keep
    /// them open (deregistering is how it stops accepting); closing its own
    /// copy is harmless to the kernel socket since the master holds one,
    /// but a later [`ADOPT`](control::ADOPT) names an index into this vector.
    pub listeners: Vec<TcpListener>,
    /// Indices into `listeners` this worker accepts on: normally `[index]`,
    /// more after a scale-down adoption.
    pub active: Vec<usize>,
    /// Worker end of the control socketpair, already non-blocking; register
    /// it in the worker's `Poll`, send [`READY`](control::READY) once the
    /// active listeners are registered, treat EOF as "the master died".
    pub control: UnixStream,
    /// The master's pid (compare with `getppid()`).
    pub master_pid: i32,
}

/// Binds one listener without `SO_REUSEPORT` (`SO_REUSEADDR`, non-blocking,
/// close-on-exec, `listen(backlog)`), for single-process mode. Errors name
/// the address in one line, as [`bind_listeners`] does.
pub(crate) fn bind_single(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let bind = || -> io::Result<TcpListener> {
        let socket = new_socket(addr)?;
        socket.bind(&addr.into())?;
        socket.listen(backlog)?;
        socket.set_nonblocking(true)?;
        Ok(socket.into())
    };
    bind().map_err(|e| bind_error(addr, e))
}

/// Binds `n` (at least 1) `SO_REUSEPORT` listeners on `addr`: `SO_REUSEADDR`
/// and `SO_REUSEPORT`, non-blocking, close-on-exec, `listen(cfg.backlog)`.
///
/// Unless `cfg.join_existing`, the address is first probed with a socket
/// *without* `SO_REUSEPORT`, so that a port already served by another
/// process (even one of the same user using `SO_REUSEPORT`, which would
/// otherwise silently share the traffic) is refused. Errors are one line
/// naming the address, e.g.
/// `tine: cannot bind 127.0.0.1:8080: address already in use`.
///
/// With port 0 the first listener picks the port and the others bind the
/// same one.
pub(crate) fn bind_listeners(
    addr: SocketAddr,
    n: usize,
    cfg: &MasterConfig,
) -> io::Result<Vec<TcpListener>> {
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "tine: bind_listeners needs at least one listener",
        ));
    }
    if !cfg.join_existing && addr.port() != 0 {
        probe(addr).map_err(|e| bind_error(addr, e))?;
    }
    let first = bind_reuseport(addr, cfg.backlog).map_err(|e| bind_error(addr, e))?;
    let actual = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..n {
        listeners.push(bind_reuseport(actual, cfg.backlog).map_err(|e| bind_error(actual, e))?);
    }
    Ok(listeners)
}

fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    // socket2 creates sockets with SOCK_CLOEXEC on Linux.
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    Ok(socket)
}

/// Trap 3: a bind without `SO_REUSEPORT` fails if anyone listens on `addr`.
fn probe(addr: SocketAddr) -> io::Result<()> {
    let socket = new_socket(addr)?;
    socket.bind(&addr.into())
}

fn bind_reuseport(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let socket = new_socket(addr)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn bind_error(addr: SocketAddr, e: io::Error) -> io::Error {
    let why = match e.kind() {
        io::ErrorKind::AddrInUse => "address already in use".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        io::ErrorKind::AddrNotAvailable => "address not available".to_owned(),
        _ => e.to_string(),
    };
    io::Error::new(e.kind(), format!("tine: cannot bind {addr}: {why}"))
}

/// Unblocks [`HANDLED_SIGNALS`], which the master blocked before forking.
/// A worker calls this *after* installing its own handlers (e.g. with
/// signal-hook), so a signal sent early waits as pending instead of hitting
/// a default disposition.
pub(crate) fn worker_signals_ready() {
    let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&handled_set()), None);
}

fn handled_set() -> SigSet {
    let mut set = SigSet::empty();
    for sig in HANDLED_SIGNALS {
        set.add(sig);
    }
    set
}

/// Runs the master until it is stopped by a signal and returns its exit
/// code (0 after a graceful or immediate stop).
///
/// Forks `cfg.workers` workers (binding more listeners on the same address
/// if fewer than that were given); in each child `worker_main` runs and the
/// child exits with its return value (`std::process::exit`), so this
/// function returns only in the master.
///
/// Errors: the process runs more than one thread (forking would be
/// unsound), signal setup failed, or no worker could be forked at all
/// (`tine: no workers spawned; exiting`). A fork that fails later is logged
/// and retried with backoff. [`HANDLED_SIGNALS`] stay blocked in this
/// process after it returns, so a late signal cannot kill it on the way out.
pub(crate) fn run_master(
    listeners: Vec<TcpListener>,
    cfg: MasterConfig,
    worker_main: &mut dyn FnMut(WorkerStart) -> i32,
) -> io::Result<i32> {
    let outcome = Master::new(listeners, cfg).map(|mut master| master.run());
    // In a child, `master` has been dropped by now: its signalfd, epoll
    // instance and the master ends of every control channel are closed.
    match outcome {
        Err(e) => Err(e),
        Ok(Ok(result)) => result,
        Ok(Err(InChild(start))) => std::process::exit(worker_main(start)),
    }
}

/// Returned up the master's call stack in a freshly forked child, so every
/// master-only resource is dropped before `worker_main` runs.
struct InChild(WorkerStart);

/// `Err(InChild)` means "we are the child now": propagate with `?`.
type Step<T> = Result<T, InChild>;

const SIGNAL_TOKEN: Token = Token(0);
/// How often the relay's flow control is looked at while it holds a worker
/// back.
const RELAY_RECHECK: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The slot's serving worker.
    Current,
    /// A rolling-restart replacement not yet promoted.
    Candidate,
    /// Sent `SIGTERM` (or `SIGKILL`); its exit is expected.
    Retiring,
}

struct Worker {
    pid: Pid,
    slot: usize,
    role: Role,
    ready: bool,
    /// `READY`s still expected: 1 for start-up plus 1 per `ADOPT` sent.
    acks_pending: u32,
    started: Instant,
    /// How many listeners the worker inherited (`listeners.len()` at fork):
    /// it can only `ADOPT` indices below this.
    fds: usize,
    /// `None` once the channel hit EOF or was closed.
    stream: Option<mio::net::UnixStream>,
    chan: Channel,
    /// Flow control of the messages relayed to it.
    lane: relay::Lane,
    kill_at: Option<Instant>,
}

struct Slot {
    /// Listener indices; the first is the slot's own, the rest adopted.
    listeners: Vec<usize>,
    worker: Option<Token>,
    backoff: Duration,
    respawn_at: Option<Instant>,
    /// Being removed by a scale-down: not respawned.
    removing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Reload,
    ScaleUp,
    ScaleDown,
}

enum Current {
    Reload {
        slot: usize,
        candidate: Option<Token>,
        deadline: Instant,
    },
    ScaleDown {
        removed: usize,
        survivor: usize,
        /// Length of the survivor's listener list before the hand-over.
        survivor_had: usize,
        /// The survivor's worker must have inherited this many listeners.
        need_fds: usize,
        /// A replacement for the survivor, forked because its current worker
        /// was forked before one of the moved listeners existed.
        candidate: Option<Token>,
        deadline: Instant,
    },
}

impl Current {
    /// The replacement being started for `slot`, if any.
    fn candidate_for(&self, slot: usize) -> Option<Token> {
        match *self {
            Current::Reload {
                slot: s, candidate, ..
            } if s == slot => candidate,
            Current::ScaleDown {
                survivor,
                candidate,
                ..
            } if survivor == slot => candidate,
            _ => None,
        }
    }
}

struct Master {
    cfg: MasterConfig,
    addr: SocketAddr,
    pid: Pid,
    listeners: Vec<TcpListener>,
    slots: Vec<Slot>,
    workers: BTreeMap<Token, Worker>,
    next_token: usize,
    poll: Poll,
    sigfd: SignalFd,
    ops: VecDeque<Op>,
    current: Option<Current>,
    stopping: bool,
    /// Workers whose published messages wait for flow control.
    relay_paused: Vec<Token>,
}

struct Status(WaitStatus);

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            WaitStatus::Exited(_, code) => write!(f, "exit status {code}"),
            WaitStatus::Signaled(_, sig, core) => {
                write!(f, "killed by {sig}")?;
                if core {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
            other => write!(f, "{other:?}"),
        }
    }
}

impl Master {
    fn new(mut listeners: Vec<TcpListener>, mut cfg: MasterConfig) -> io::Result<Master> {
        let threads = sys::thread_count()?;
        if threads != 1 {
            return Err(sys::threads_error(threads));
        }
        let first = listeners.first().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "tine: run_master needs a listener",
            )
        })?;
        let addr = first.local_addr()?;
        cfg.workers = cfg.workers.max(1);
        while listeners.len() < cfg.workers {
            listeners.push(bind_reuseport(addr, cfg.backlog).map_err(|e| bind_error(addr, e))?);
        }
        // Slot i accepts on listener i, plus any surplus listener j with
        // j % workers == i.
        let mut slots: Vec<Slot> = (0..cfg.workers)
            .map(|_| Slot {
                listeners: Vec::new(),
                worker: None,
                backoff: BACKOFF_MIN,
                respawn_at: None,
                removing: false,
            })
            .collect();
        for j in 0..listeners.len() {
            slots[j % cfg.workers].listeners.push(j);
        }

        // Block first, then take the dispositions over: from here on every
        // handled signal waits in the signalfd, in the master and in every
        // child forked later (the mask is inherited).
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&handled_set()), None)?;
        sys::reset_dispositions(&HANDLED_SIGNALS)?;
        let sigfd = SignalFd::with_flags(
            &handled_set(),
            SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
        )?;
        let poll = Poll::new()?;
        poll.registry().register(
            &mut SourceFd(&sigfd.as_raw_fd()),
            SIGNAL_TOKEN,
            Interest::READABLE,
        )?;
        Ok(Master {
            cfg,
            addr,
            pid: nix::unistd::getpid(),
            listeners,
            slots,
            workers: BTreeMap::new(),
            relay_paused: Vec::new(),
            next_token: 1,
            poll,
            sigfd,
            ops: VecDeque::new(),
            current: None,
            stopping: false,
        })
    }

    fn run(&mut self) -> Step<io::Result<i32>> {
        info!(
            "master {} starting {} workers on {}",
            self.pid,
            self.slots.len(),
            self.addr
        );
        let mut started = 0;
        for slot in 0..self.slots.len() {
            match self.spawn(slot, Role::Current, "start")? {
                Some(token) => {
                    self.slots[slot].worker = Some(token);
                    started += 1;
                }
                None => self.schedule_respawn(slot),
            }
        }
        if started == 0 {
            return Ok(Err(io::Error::other("tine: no workers spawned; exiting")));
        }
        let mut events = Events::with_capacity(64);
        loop {
            let mut timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            if !self.relay_paused.is_empty() {
                // Look again soon: a worker that stays behind stops holding
                // the others back after relay::STALL.
                timeout = Some(timeout.map_or(RELAY_RECHECK, |t| t.min(RELAY_RECHECK)));
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                error!("master poll failed: {e}; killing workers");
                self.kill_all(Signal::SIGKILL);
                self.reap_all_blocking();
                return Ok(Err(e));
            }
            for event in events.iter() {
                if event.token() == SIGNAL_TOKEN {
                    self.on_signals()?;
                } else {
                    let readable =
                        event.is_readable() || event.is_read_closed() || event.is_error();
                    self.on_control(event.token(), readable);
                }
            }
            self.resume_relay();
            self.on_timers()?;
            self.drive()?;
            if self.stopping && self.workers.is_empty() {
                info!("master {}: all workers exited; bye", self.pid);
                return Ok(Ok(0));
            }
        }
    }

    /// Forks a worker for `slot`. `Ok(None)`: the fork failed (logged).
    fn spawn(&mut self, slot: usize, role: Role, why: &str) -> Step<Option<Token>> {
        let pair = UnixStream::pair().and_then(|(m, w)| {
            m.set_nonblocking(true)?;
            w.set_nonblocking(true)?;
            Ok((m, w))
        });
        let (master_end, worker_end) = match pair {
            Ok(p) => p,
            Err(e) => {
                error!("cannot create control channel for worker {slot}: {e}");
                return Ok(None);
            }
        };
        // Whatever sits in stdout's buffer would otherwise be written twice.
        let _ = io::stdout().flush();
        match sys::fork() {
            Err(e) => {
                error!("fork failed for worker {slot}: {e}");
                Ok(None)
            }
            Ok(sys::Fork::Child) => {
                if !sys::child_after_fork(self.pid, &HANDLED_SIGNALS) {
                    // The master died between fork and PR_SET_PDEATHSIG.
                    std::process::exit(1);
                }
                drop(master_end);
                Err(InChild(WorkerStart {
                    index: slot,
                    listeners: std::mem::take(&mut self.listeners),
                    active: self.slots[slot].listeners.clone(),
                    control: worker_end,
                    master_pid: self.pid.as_raw(),
                }))
            }
            Ok(sys::Fork::Parent(pid)) => {
                drop(worker_end);
                let token = Token(self.next_token);
                self.next_token += 1;
                let mut stream = mio::net::UnixStream::from_std(master_end);
                let stream = match self.poll.registry().register(
                    &mut stream,
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    Ok(()) => Some(stream),
                    Err(e) => {
                        // Without its channel the worker would wait forever
                        // for EOF; it gets no chance to serve.
                        error!("cannot watch worker {slot} (pid {pid}): {e}; killing it");
                        let _ = kill(pid, Signal::SIGKILL);
                        None
                    }
                };
                let role = if stream.is_some() {
                    role
                } else {
                    Role::Retiring
                };
                info!("spawned worker {slot} (pid {pid}, {why})");
                self.workers.insert(
                    token,
                    Worker {
                        pid,
                        slot,
                        role,
                        ready: false,
                        acks_pending: 1,
                        started: Instant::now(),
                        fds: self.listeners.len(),
                        stream,
                        chan: Channel::new(),
                        lane: relay::Lane::default(),
                        kill_at: None,
                    },
                );
                Ok((role != Role::Retiring).then_some(token))
            }
        }
    }

    fn schedule_respawn(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        let delay = s.backoff;
        s.backoff = (s.backoff * 2).min(BACKOFF_MAX);
        s.respawn_at = Some(Instant::now() + delay);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let slots = self.slots.iter().filter_map(|s| s.respawn_at);
        let kills = self.workers.values().filter_map(|w| w.kill_at);
        let op = match &self.current {
            Some(Current::Reload {
                candidate: Some(_),
                deadline,
                ..
            })
            | Some(Current::ScaleDown { deadline, .. }) => Some(*deadline),
            _ => None,
        };
        slots.chain(kills).chain(op).min()
    }

    fn on_signals(&mut self) -> Step<()> {
        let mut got = Vec::new();
        loop {
            match self.sigfd.read_signal() {
                Ok(Some(info)) => {
                    if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                        got.push(sig);
                    }
                }
                Ok(None) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    error!("reading signalfd failed: {e}");
                    break;
                }
            }
        }
        // Stops first, then reaping, then operations.
        if got.contains(&Signal::SIGQUIT) {
            self.stop(false);
        }
        if got.contains(&Signal::SIGINT) || got.contains(&Signal::SIGTERM) {
            self.stop(true);
        }
        if got.contains(&Signal::SIGCHLD) {
            self.reap();
        }
        for sig in got {
            let op = match sig {
                Signal::SIGHUP => Op::Reload,
                Signal::SIGTTIN => Op::ScaleUp,
                Signal::SIGTTOU => Op::ScaleDown,
                _ => continue,
            };
            if self.stopping {
                info!("{sig} ignored: stopping");
            } else if op == Op::Reload && self.ops.contains(&Op::Reload) {
                info!("SIGHUP: a rolling restart is already queued");
            } else {
                info!("{sig} received: {op:?} queued");
                self.ops.push_back(op);
            }
        }
        self.drive()
    }

    fn stop(&mut self, graceful: bool) {
        if graceful && self.stopping {
            info!("already stopping");
            return;
        }
        let first = !self.stopping;
        self.stopping = true;
        self.ops.clear();
        self.current = None;
        for slot in &mut self.slots {
            slot.respawn_at = None;
        }
        if graceful {
            info!(
                "graceful stop: SIGTERM to {} workers, SIGKILL after {:?}",
                self.workers.len(),
                self.cfg.graceful_timeout
            );
            let deadline = Instant::now() + self.cfg.graceful_timeout;
            for w in self.workers.values_mut() {
                if w.role != Role::Retiring || w.kill_at.is_none() {
                    let _ = kill(w.pid, Signal::SIGTERM);
                }
                w.role = Role::Retiring;
                w.kill_at = Some(w.kill_at.map_or(deadline, |k| k.min(deadline)));
            }
        } else {
            info!(
                "immediate stop{}: SIGKILL to {} workers",
                if first { "" } else { " (escalated)" },
                self.workers.len()
            );
            self.kill_all(Signal::SIGKILL);
        }
    }

    fn kill_all(&mut self, sig: Signal) {
        for w in self.workers.values_mut() {
            let _ = kill(w.pid, sig);
            w.role = Role::Retiring;
            w.kill_at = None;
        }
    }

    fn reap_all_blocking(&mut self) {
        while !self.workers.is_empty() {
            match waitpid(Pid::from_raw(-1), None) {
                Ok(status) => self.on_exit(status),
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
    }

    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(status) => self.on_exit(status),
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    error!("waitpid failed: {e}");
                    break;
                }
            }
        }
    }

    fn on_exit(&mut self, status: WaitStatus) {
        let Some(pid) = status.pid() else { return };
        if !matches!(status, WaitStatus::Exited(..) | WaitStatus::Signaled(..)) {
            return; // stopped/continued: still alive
        }
        let Some(token) = self
            .workers
            .iter()
            .find_map(|(t, w)| (w.pid == pid).then_some(*t))
        else {
            debug!("reaped unknown child {pid}: {}", Status(status));
            return;
        };
        let Some(mut w) = self.workers.remove(&token) else {
            return;
        };
        if let Some(mut stream) = w.stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
        }
        let status = Status(status);
        let lived = w.started.elapsed();
        match w.role {
            Role::Retiring => info!("worker {} (pid {pid}) exited: {status}", w.slot),
            Role::Candidate => warn!(
                "replacement worker {} (pid {pid}) exited before it was ready: {status}",
                w.slot
            ),
            Role::Current => {
                let slot = w.slot;
                if self.slots.get(slot).and_then(|s| s.worker) == Some(token) {
                    self.slots[slot].worker = None;
                }
                if self.stopping {
                    info!("worker {slot} (pid {pid}) exited: {status}");
                    return;
                }
                // A replacement being started for this slot takes over.
                let candidate = self.current.as_ref().and_then(|c| c.candidate_for(slot));
                if let Some(c) = candidate {
                    if let Some(cw) = self.workers.get_mut(&c) {
                        if cw.role == Role::Candidate {
                            cw.role = Role::Current;
                            self.slots[slot].worker = Some(c);
                            warn!(
                                "worker {slot} (pid {pid}) exited unexpectedly: {status}; \
                                 its replacement (pid {}) takes over",
                                cw.pid
                            );
                            return;
                        }
                    }
                }
                if self.slots.get(slot).is_none_or(|s| s.removing) {
                    warn!("worker {slot} (pid {pid}) exited unexpectedly: {status} (slot being removed)");
                    return;
                }
                if lived >= BACKOFF_RESET_AFTER {
                    self.slots[slot].backoff = BACKOFF_MIN;
                }
                let delay = self.slots[slot].backoff;
                self.schedule_respawn(slot);
                warn!(
                    "worker {slot} (pid {pid}) exited unexpectedly after {:.1}s: {status}; \
                     respawning in {delay:?}",
                    lived.as_secs_f64()
                );
            }
        }
    }

    fn on_control(&mut self, token: Token, readable: bool) {
        let Some(w) = self.workers.get_mut(&token) else {
            return;
        };
        let Some(stream) = w.stream.as_mut() else {
            return;
        };
        // Writable (or any event): push out what is queued.
        if let Err(e) = w.chan.flush_to(&mut SendNoSignal(&*stream)) {
            debug!("control write to worker {} (pid {}): {e}", w.slot, w.pid);
        }
        if !readable {
            return;
        }
        if self.relay_holds_back(token) {
            // Read later (resume_relay), when the others have caught up.
            if !self.relay_paused.contains(&token) {
                self.relay_paused.push(token);
            }
            return;
        }
        let Some(w) = self.workers.get_mut(&token) else {
            return;
        };
        let Some(stream) = w.stream.as_mut() else {
            return;
        };
        let mut msgs = Vec::new();
        let eof = match w.chan.receive(stream, |m| msgs.push(m)) {
            Ok(eof) => eof,
            Err(e) => {
                debug!("control read from worker {} (pid {}): {e}", w.slot, w.pid);
                true
            }
        };
        let mut close = eof;
        for msg in msgs {
            close |= self.on_message(token, msg);
        }
        if close {
            if let Some(w) = self.workers.get_mut(&token) {
                if let Some(mut stream) = w.stream.take() {
                    let _ = self.poll.registry().deregister(&mut stream);
                }
            }
        }
    }

    /// Handles one message from a worker; `true` closes its channel.
    fn on_message(&mut self, from: Token, msg: Msg) -> bool {
        let Some(w) = self.workers.get_mut(&from) else {
            return true;
        };
        match msg {
            Msg::Ready => {
                w.acks_pending = w.acks_pending.saturating_sub(1);
                if !w.ready {
                    w.ready = true;
                    info!("worker {} (pid {}) ready", w.slot, w.pid);
                } else {
                    debug!("worker {} (pid {}) confirmed adoption", w.slot, w.pid);
                }
                false
            }
            Msg::Publish(payload) => {
                self.relay(from, control::PUBLISH, &payload);
                false
            }
            Msg::Adopt(_) => {
                warn!("worker {} (pid {}) sent ADOPT; ignored", w.slot, w.pid);
                false
            }
            Msg::Other { kind, .. } => {
                debug!("ignoring control message kind {kind} from pid {}", w.pid);
                false
            }
            Msg::Malformed { kind, len } => {
                error!(
                    "malformed control frame (kind {kind}, length {len}) from worker {} (pid {}); \
                     closing its channel",
                    w.slot, w.pid
                );
                true
            }
        }
    }

    /// Forwards one frame to every other worker with an open channel; a
    /// worker whose queue is full loses the frame (counted and logged per
    /// streak), so a stuck worker cannot make the master grow. Flow
    /// control (`relay_holds_back`) keeps queues from filling up otherwise.
    fn relay(&mut self, from: Token, kind: u8, payload: &[u8]) {
        for (&token, w) in self.workers.iter_mut() {
            if token == from {
                continue;
            }
            let Some(stream) = w.stream.as_ref() else {
                continue;
            };
            let queued = w.chan.queue(kind, payload);
            w.lane
                .queued(queued, &format_args!("worker {} (pid {})", w.slot, w.pid));
            if queued {
                let _ = w.chan.flush_to(&mut SendNoSignal(stream));
            }
        }
    }

    /// Whether published messages from `source` must wait: another worker
    /// is behind on what the master relays to it (see `pubsub::relay`).
    fn relay_holds_back(&mut self, source: Token) -> bool {
        let now = Instant::now();
        let mut held = false;
        for (&token, w) in self.workers.iter_mut() {
            let pending = if w.stream.is_some() {
                w.chan.pending_out()
            } else {
                0
            };
            held |= w.lane.holds_back(pending, now) && token != source;
        }
        held
    }

    /// Reads from the workers paused by flow control, once it allows.
    fn resume_relay(&mut self) {
        for token in std::mem::take(&mut self.relay_paused) {
            self.on_control(token, true);
        }
    }

    fn send(&mut self, token: Token, kind: u8, payload: &[u8]) -> bool {
        let Some(w) = self.workers.get_mut(&token) else {
            return false;
        };
        let Some(stream) = w.stream.as_ref() else {
            return false;
        };
        if !w.chan.queue(kind, payload) {
            return false;
        }
        let _ = w.chan.flush_to(&mut SendNoSignal(stream));
        true
    }

    fn retire(&mut self, token: Token) {
        let deadline = Instant::now() + self.cfg.graceful_timeout;
        if let Some(w) = self.workers.get_mut(&token) {
            let _ = kill(w.pid, Signal::SIGTERM);
            w.role = Role::Retiring;
            w.kill_at = Some(deadline);
        }
    }

    fn on_timers(&mut self) -> Step<()> {
        let now = Instant::now();
        for w in self.workers.values_mut() {
            if w.kill_at.is_some_and(|k| k <= now) {
                warn!(
                    "worker {} (pid {}) still running after the graceful timeout; SIGKILL",
                    w.slot, w.pid
                );
                let _ = kill(w.pid, Signal::SIGKILL);
                w.kill_at = None;
            }
        }
        if self.stopping {
            return Ok(());
        }
        for slot in 0..self.slots.len() {
            let s = &self.slots[slot];
            if s.removing || s.worker.is_some() || s.respawn_at.is_none_or(|t| t > now) {
                continue;
            }
            self.slots[slot].respawn_at = None;
            match self.spawn(slot, Role::Current, "respawn")? {
                Some(token) => self.slots[slot].worker = Some(token),
                None => self.schedule_respawn(slot),
            }
        }
        match self.current {
            Some(Current::Reload {
                slot,
                candidate: Some(c),
                deadline,
            }) if deadline <= now => {
                if let Some(w) = self.workers.get(&c) {
                    if w.role == Role::Candidate {
                        warn!(
                            "replacement worker {slot} (pid {}) not ready within {:?}; \
                             stopping it and keeping the old worker",
                            w.pid, self.cfg.ready_timeout
                        );
                        self.retire(c);
                    }
                }
                self.current = Some(Current::Reload {
                    slot: slot + 1,
                    candidate: None,
                    deadline,
                });
            }
            Some(Current::ScaleDown {
                survivor, deadline, ..
            }) if deadline <= now => {
                self.abort_scale_down(&format!(
                    "worker {survivor} did not confirm the hand-over within {:?}",
                    self.cfg.ready_timeout
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// Advances the current operation as far as it can go now, then starts
    /// queued ones.
    fn drive(&mut self) -> Step<()> {
        while !self.stopping {
            match self.current {
                None => {
                    let Some(op) = self.ops.pop_front() else {
                        return Ok(());
                    };
                    self.start_op(op)?;
                }
                Some(Current::Reload {
                    slot,
                    candidate: None,
                    ..
                }) => {
                    if slot >= self.slots.len() {
                        info!("rolling restart complete");
                        self.current = None;
                        continue;
                    }
                    let s = &self.slots[slot];
                    if s.removing || s.worker.is_none() {
                        // A slot waiting for its respawn gets a new worker anyway.
                        self.current = Some(Current::Reload {
                            slot: slot + 1,
                            candidate: None,
                            deadline: Instant::now(),
                        });
                        continue;
                    }
                    let candidate = self.spawn(slot, Role::Candidate, "reload")?;
                    if candidate.is_none() {
                        warn!("rolling restart: could not fork a replacement for worker {slot}; keeping it");
                    }
                    self.current = Some(Current::Reload {
                        slot: if candidate.is_some() { slot } else { slot + 1 },
                        candidate,
                        deadline: Instant::now() + self.cfg.ready_timeout,
                    });
                    if candidate.is_some() {
                        return Ok(());
                    }
                }
                Some(Current::Reload {
                    slot,
                    candidate: Some(c),
                    deadline,
                }) => {
                    let next = Current::Reload {
                        slot: slot + 1,
                        candidate: None,
                        deadline,
                    };
                    let Some(cw) = self.workers.get(&c) else {
                        self.current = Some(next); // died before READY (logged)
                        continue;
                    };
                    if cw.role == Role::Retiring {
                        self.current = Some(next);
                        continue;
                    }
                    if !cw.ready {
                        return Ok(());
                    }
                    let old = self.slots[slot].worker.replace(c);
                    if let Some(cw) = self.workers.get_mut(&c) {
                        cw.role = Role::Current;
                    }
                    if let Some(old) = old.filter(|&o| o != c) {
                        if let Some(ow) = self.workers.get(&old) {
                            info!(
                                "rolling restart: worker {slot} replaced (pid {} -> {}); draining the old one",
                                ow.pid, self.workers[&c].pid
                            );
                        }
                        self.retire(old);
                    }
                    self.current = Some(next);
                }
                Some(Current::ScaleDown {
                    removed,
                    survivor,
                    survivor_had,
                    need_fds,
                    candidate,
                    deadline,
                }) => {
                    if let Some(c) = candidate {
                        match self.workers.get(&c).map(|w| (w.role, w.ready)) {
                            Some((Role::Candidate, false)) => return Ok(()),
                            Some((Role::Candidate, true)) => {
                                let old = self.slots[survivor].worker.replace(c);
                                if let Some(cw) = self.workers.get_mut(&c) {
                                    cw.role = Role::Current;
                                }
                                if let Some(old) = old.filter(|&o| o != c) {
                                    self.retire(old);
                                }
                            }
                            // Promoted already: the old survivor died.
                            Some((Role::Current, _)) => {}
                            _ => {
                                self.abort_scale_down("the survivor's replacement failed");
                                continue;
                            }
                        }
                        self.current = Some(Current::ScaleDown {
                            removed,
                            survivor,
                            survivor_had,
                            need_fds,
                            candidate: None,
                            deadline,
                        });
                    }
                    let confirmed = self.slots[survivor]
                        .worker
                        .and_then(|t| self.workers.get(&t))
                        .is_some_and(|w| {
                            w.ready
                                && w.acks_pending == 0
                                && w.stream.is_some()
                                && w.fds >= need_fds
                        });
                    if !confirmed {
                        return Ok(());
                    }
                    if let Some(t) = self.slots[removed].worker.take() {
                        self.retire(t);
                    }
                    self.slots.truncate(removed);
                    info!(
                        "scaled down to {} workers (worker {survivor} now accepts on listeners {:?})",
                        self.slots.len(),
                        self.slots[survivor].listeners
                    );
                    self.current = None;
                }
            }
        }
        Ok(())
    }

    /// Undoes a scale-down that could not complete: the removed worker
    /// keeps its slot and listeners.
    fn abort_scale_down(&mut self, why: &str) {
        let Some(Current::ScaleDown {
            removed,
            survivor,
            survivor_had,
            candidate,
            ..
        }) = self.current.take()
        else {
            return;
        };
        warn!("scale-down aborted: {why}; keeping worker {removed}");
        self.slots[survivor].listeners.truncate(survivor_had);
        self.slots[removed].removing = false;
        if self.slots[removed].worker.is_none() {
            self.schedule_respawn(removed);
        }
        if let Some(c) = candidate {
            if self
                .workers
                .get(&c)
                .is_some_and(|w| w.role == Role::Candidate)
            {
                self.retire(c);
            }
        }
    }

    fn start_op(&mut self, op: Op) -> Step<()> {
        match op {
            Op::Reload => {
                info!("rolling restart of {} workers", self.slots.len());
                self.current = Some(Current::Reload {
                    slot: 0,
                    candidate: None,
                    deadline: Instant::now(),
                });
            }
            Op::ScaleUp => {
                let slot = self.slots.len();
                // Take back a listener a survivor adopted, else bind one more.
                let donor = (0..slot)
                    .filter(|&i| self.slots[i].listeners.len() > 1)
                    .max_by_key(|&i| self.slots[i].listeners.len());
                let listener = match donor {
                    Some(d) => self.slots[d].listeners.pop(),
                    None => match bind_reuseport(self.addr, self.cfg.backlog) {
                        Ok(l) => {
                            self.listeners.push(l);
                            Some(self.listeners.len() - 1)
                        }
                        Err(e) => {
                            error!("scale-up failed: {}", bind_error(self.addr, e));
                            None
                        }
                    },
                };
                let Some(listener) = listener else {
                    return Ok(());
                };
                self.slots.push(Slot {
                    listeners: vec![listener],
                    worker: None,
                    backoff: BACKOFF_MIN,
                    respawn_at: None,
                    removing: false,
                });
                info!(
                    "scaling up to {} workers (worker {slot} accepts on listener {listener})",
                    slot + 1
                );
                match self.spawn(slot, Role::Current, "scale-up")? {
                    Some(t) => self.slots[slot].worker = Some(t),
                    None => self.schedule_respawn(slot),
                }
            }
            Op::ScaleDown => {
                if self.slots.len() <= 1 {
                    warn!("SIGTTOU ignored: already down to 1 worker");
                    return Ok(());
                }
                let removed = self.slots.len() - 1;
                let moved = self.slots[removed].listeners.clone();
                let need_fds = moved.iter().max().map_or(0, |&m| m + 1);
                // Prefer a survivor whose worker inherited the moved listeners
                // (it can ADOPT them), then a ready one, then the fewest
                // listeners.
                let key = |i: usize| {
                    let w = self.slots[i].worker.and_then(|t| self.workers.get(&t));
                    let has_fds = w.is_some_and(|w| w.stream.is_some() && w.fds >= need_fds);
                    let ready = w.is_some_and(|w| w.ready);
                    (!has_fds, !ready, self.slots[i].listeners.len(), i)
                };
                let survivor = (0..removed).min_by_key(|&i| key(i)).unwrap_or(0);
                let can_adopt = !key(survivor).0;
                let survivor_had = self.slots[survivor].listeners.len();
                self.slots[survivor].listeners.extend(&moved);
                self.slots[removed].removing = true;
                self.slots[removed].respawn_at = None;
                let mut candidate = None;
                match self.slots[survivor].worker {
                    Some(t) if can_adopt => {
                        info!(
                            "scaling down to {removed} workers: worker {survivor} adopts \
                             listeners {moved:?} of worker {removed}"
                        );
                        for &idx in &moved {
                            // Counted even if the send fails: then this worker
                            // never confirms, and its respawn (which starts with
                            // the moved listeners) confirms with its first READY.
                            let _ = self.send(t, control::ADOPT, &(idx as u32).to_le_bytes());
                            if let Some(w) = self.workers.get_mut(&t) {
                                w.acks_pending += 1;
                            }
                        }
                    }
                    Some(_) => {
                        // Its worker predates a moved listener and has no fd
                        // for it: start a replacement that inherits them all
                        // and accepts on the survivor's and the moved
                        // listeners, then retire both old workers.
                        info!(
                            "scaling down to {removed} workers: worker {survivor} is replaced \
                             by one that also accepts on listeners {moved:?} of worker {removed}"
                        );
                        candidate =
                            self.spawn(survivor, Role::Candidate, "scale-down hand-over")?;
                    }
                    None => info!(
                        "scaling down to {removed} workers: worker {survivor}, when respawned, \
                         also accepts on listeners {moved:?} of worker {removed}"
                    ),
                }
                self.current = Some(Current::ScaleDown {
                    removed,
                    survivor,
                    survivor_had,
                    need_fds,
                    candidate,
                    deadline: Instant::now() + self.cfg.ready_timeout,
                });
                if self.slots[survivor].worker.is_some() && candidate.is_none() && !can_adopt {
                    self.abort_scale_down("could not fork the survivor's replacement");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! In-process tests never fork: `run_master` is only called here while a
    //! second thread is alive, so it must refuse before forking.
    use super::*;

    fn cfg() -> MasterConfig {
        MasterConfig::default()
    }

    #[test]
    fn defaults() {
        let c = cfg();
        assert_eq!(c.workers, 1);
        assert_eq!(c.graceful_timeout, Duration::from_secs(30));
        assert!(!c.join_existing);
        assert_eq!(c.backlog, 1024);
    }

    #[test]
    fn port_zero_binds_n_listeners_on_one_port() {
        let ls = bind_listeners("127.0.0.1:0".parse().unwrap(), 3, &cfg()).unwrap();
        assert_eq!(ls.len(), 3);
        let port = ls[0].local_addr().unwrap().port();
        assert_ne!(port, 0);
        for l in &ls {
            assert_eq!(l.local_addr().unwrap().port(), port);
            // Non-blocking: nothing queued means WouldBlock, not a hang.
            assert_eq!(l.accept().unwrap_err().kind(), io::ErrorKind::WouldBlock);
            let sock = socket2::SockRef::from(l);
            assert!(sock.reuse_port().unwrap());
            assert!(sock.reuse_address().unwrap());
        }
    }

    #[test]
    fn an_address_already_served_is_refused_unless_joining() {
        let first = bind_listeners("127.0.0.1:0".parse().unwrap(), 2, &cfg()).unwrap();
        let addr = first[0].local_addr().unwrap();
        // Another reuseport group of the same user would bind silently
        // without the probe; with it, the bind fails naming the address.
        let err = bind_listeners(addr, 2, &cfg()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(
            err.to_string(),
            format!("tine: cannot bind {addr}: address already in use")
        );
        let joined = bind_listeners(
            addr,
            1,
            &MasterConfig {
                join_existing: true,
                ..cfg()
            },
        )
        .unwrap();
        assert_eq!(joined[0].local_addr().unwrap(), addr);
        let err = bind_single(addr, 16).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("tine: cannot bind {addr}: address already in use")
        );
        assert_eq!(err.to_string().lines().count(), 1);
    }

    #[test]
    fn bind_single_is_not_reuseport() {
        let l = bind_single("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let sock = socket2::SockRef::from(&l);
        assert!(!sock.reuse_port().unwrap());
        assert_eq!(l.accept().unwrap_err().kind(), io::ErrorKind::WouldBlock);
        // And nobody can join it.
        let addr = l.local_addr().unwrap();
        let err = bind_listeners(
            addr,
            1,
            &MasterConfig {
                join_existing: true,
                ..cfg()
            },
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn zero_listeners_is_an_error() {
        let err = bind_listeners("127.0.0.1:0".parse().unwrap(), 0, &cfg()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn run_master_refuses_a_multithreaded_process() {
        // Keep a second thread alive for the whole call.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let helper = std::thread::spawn(move || rx.recv());
        let ls = bind_listeners("127.0.0.1:0".parse().unwrap(), 1, &cfg()).unwrap();
        let mut called = false;
        let res = run_master(
            ls,
            MasterConfig {
                workers: 2,
                ..cfg()
            },
            &mut |_| {
                called = true;
                0
            },
        );
        tx.send(()).unwrap();
        helper.join().unwrap().unwrap();
        let err = res.unwrap_err();
        assert!(err.to_string().contains("refusing to fork"), "{err}");
        assert!(!called);
    }

    #[test]
    fn exit_status_display() {
        let pid = Pid::from_raw(42);
        assert_eq!(
            Status(WaitStatus::Exited(pid, 3)).to_string(),
            "exit status 3"
        );
        assert_eq!(
            Status(WaitStatus::Signaled(pid, Signal::SIGKILL, false)).to_string(),
            "killed by SIGKILL"
        );
        assert_eq!(
            Status(WaitStatus::Signaled(pid, Signal::SIGSEGV, true)).to_string(),
            "killed by SIGSEGV (core dumped)"
        );
    }
}
