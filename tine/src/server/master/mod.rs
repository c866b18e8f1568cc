//! The prefork master: forks the workers, supervises them, and turns
//! signals into graceful stop, rolling restart and scaling. It knows
//! nothing of HTTP, and decides nothing itself: it is the shell that
//! performs the [`Supervisor`](super::supervisor)'s actions (fork, signal,
//! bind, listen, send `ADOPT`) and reports back what happened (signals,
//! `READY`, exits, failed forks, time). The listening sockets are bound in
//! `listener.rs`; how they are laid out over the workers, and every
//! decision, is in `supervisor.rs`.
//!
//! # Listeners without lost connections
//!
//! Closing a `SO_REUSEPORT` listener resets every connection waiting in
//! its accept queue. So the master creates one reuseport listener per
//! worker slot *before* forking and never closes any of them while it
//! runs. Worker `k` inherits every listener fd and accepts on listener `k`
//! ([`WorkerStart::active`]). (Where the kernel does not balance
//! `SO_REUSEPORT` sockets, macOS, an address has one shared listener that
//! every worker accepts on instead: see `listener.rs`. What follows is about
//! reuseport listeners; a shared one needs no hand-over.)
//!
//! * **Rolling restart (`SIGHUP`)**: for one slot at a time, the replacement
//!   is forked first; it inherits the same listener, so old and new share
//!   one accept queue. Once the replacement reports [`READY`](control::READY)
//!   the old worker gets `SIGTERM`, deregisters the listener (without closing
//!   the kernel socket, which the master still holds) and finishes its
//!   in-flight connections. The queue is never without an acceptor, and
//!   there are never fewer than `n` workers accepting.
//! * **Recycling** (`max_requests`, `max_worker_memory`): a worker past its
//!   request count says so with [`RECYCLE`](control::RECYCLE); the master
//!   reads each serving worker's private memory every second (see
//!   `recycle.rs`). Either way the worker is replaced like one step of a
//!   rolling restart: its replacement shares its queue and accepts first,
//!   then the old worker drains. One recycle runs at a time, queued with
//!   the other operations; the log names the worker, the reason and the
//!   measured value (`worker 1 (pid 4242) to be recycled: private memory
//!   80.4 MiB over max_worker_memory 64.0 MiB`).
//! * **Watchdog** (`worker_timeout`): every worker writes a heartbeat (the
//!   start of each loop turn) and the request it is in to the shared
//!   scoreboard (`scoreboard.rs`, mapped here before the first fork, one
//!   entry per worker process, freed when it is reaped). Twice a second
//!   the master looks for a worker busy (not waiting in `poll`) for longer
//!   than the timeout, logs it (`worker 2 (pid 4242) stuck 30.0 s in GET
//!   /report?id=7, killing it`) and sends `SIGKILL` (the supervisor's
//!   `Event::Stuck`); a current worker's slot is forked again at once, with
//!   no crash backoff, on the same listener, whose queue is kept. The
//!   master never waits on a worker: it only reads shared memory.
//! * **Scale-down (`SIGTTOU`)**: the last slot's listeners are handed to a
//!   surviving worker with [`ADOPT`](control::ADOPT); only after that worker
//!   confirms (it answers `READY`) does the removed worker get `SIGTERM`.
//!   The listener stays open in the master and keeps being served. If every
//!   survivor was forked before one of those listeners existed (it was bound
//!   by a later `SIGTTIN`), the survivor has no fd to adopt: it is replaced
//!   instead, like one step of a rolling restart, by a worker that inherits
//!   all listeners and accepts on its own and the moved ones.
//! * **Scale-up (`SIGTTIN`)**: a listener previously adopted by a survivor
//!   is given back to the new slot; otherwise one more reuseport socket is
//!   bound on the same port (the master's own group, so no probe), but it
//!   only starts listening once its worker is ready: a bound socket that
//!   does not listen receives no connection, so a fork that fails (retried
//!   with backoff) or a worker slow to start (`on_worker_start`) strands
//!   none; the address's other sockets take them meanwhile. The same holds
//!   for the extra sockets of a binary upgrade to more workers.
//! * **Crash**: the dead worker's queue survives in the kernel because the
//!   master holds the fd; it is lent at once to a ready survivor
//!   ([`ADOPT`](control::ADOPT)), so its connections are served while the
//!   slot waits for its respawn (after a backoff of at least 100 ms), even
//!   if that respawn keeps failing to fork. Once the slot's new worker is
//!   ready, the borrower is told to stop accepting on it
//!   ([`RELEASE`](control::RELEASE)).
//! * **Graceful stop**: workers stop accepting and finish what they
//!   accepted; connections still queued when the master exits are reset, as
//!   with any server that stops.
//!
//! # systemd
//!
//! With `NOTIFY_SOCKET` set, the master reports after every batch of events
//! what changed (see `notify.rs`): `READY=1` once every slot's worker is
//! ready, `RELOADING=1` and `READY=1` around a rolling restart or a binary
//! upgrade (with `MAINPID=` of the new master, or `STATUS=` saying why it
//! failed), `STOPPING=1`, and `WATCHDOG=1` from its own loop while some
//! worker accepts. The
//! supervisor answers the questions (`all_ready`, `reloading`, `stopping`,
//! `healthy`) without knowing about systemd.
//!
//! # Signals
//!
//! The server blocks [`HANDLED_SIGNALS`] with `sigprocmask` when it
//! binds, before the application can announce its address (one sent from
//! then on waits as pending, see `signals::Held`). On Linux it keeps them blocked and reads them from a
//! signalfd in its mio loop, installing no handler at all, so no signal
//! can arrive "too early". Elsewhere (and on Linux with
//! `TINE_PORTABLE_SIGNALS=1`, a test and diagnostic switch) signal-hook's
//! handlers feed a self-pipe the loop polls: they are installed while the
//! signals are blocked, which are unblocked only then, and blocked again
//! around every fork (see `signals.rs`). A forked worker makes sure it will
//! not outlive the master (`PR_SET_PDEATHSIG`, or a thread watching its
//! parent pid where that does not exist), checks the master is still its
//! parent, and keeps the mask blocked until its own handlers are installed
//! ([`worker_signals_ready`]).
//!
//! | signal to the master | effect |
//! |---|---|
//! | `SIGINT`, `SIGTERM` | graceful stop: `SIGTERM` to every worker, wait; `SIGKILL` whatever is left after `graceful_timeout`; reap all; exit 0 |
//! | `SIGQUIT` | immediate stop: `SIGKILL` every worker, reap all, exit 0 |
//! | `SIGHUP` | rolling restart, one slot at a time (see above); a replacement not ready within `ready_timeout` is stopped (`SIGTERM`, `SIGKILL` after `graceful_timeout`) and the old worker kept; one that cannot be forked is forked again with the backoff below until it can (the restart is not over before; another `SIGHUP` starts it over, a stop ends it) |
//! | `SIGUSR1` | re-read the files outside tools replace: TLS certificates and keys (checked, then switched in the running workers; no restart). `SIGHUP` does the same before its rolling restart. Also passed on to every worker and the admin process: they reopen their access log files (log rotation) |
//! | `SIGTTIN` | one worker more |
//! | `SIGTTOU` | one worker fewer, never below 1, without losing its queue |
//! | `SIGUSR2` | binary upgrade: start a new master from the executable this one was started from, handing it the listening sockets; once all its workers are ready, stop like on `SIGTERM`. A new master that exits or is not ready within `upgrade_timeout` is stopped and this one serves on (see `upgrade.rs`) |
//! | `SIGCHLD` | reap (`waitpid(-1, WNOHANG)` until none); an unexpected exit is logged with pid and status/signal and the slot respawned after an exponential backoff (100 ms doubling to 5 s; reset once a worker has lived 10 s) |
//!
//! A fork that fails (say, the process limit was reached) is logged with
//! its reason and retried with the same backoff; the master keeps serving
//! with the workers it has. That holds for a rolling restart's replacement
//! too: the old worker serves on, and the restart waits on its slot.
//!
//! Signals sent to the master coalesce like any standard signal: several
//! `SIGTTIN` sent at once may count as one. Operations (`HUP`, `TTIN`,
//! `TTOU`) run one after another, in arrival order.
//!
//! Workers never outlive the master: they see EOF on their control channel
//! when it dies (even by `SIGKILL`), and get `SIGTERM` as well: from the
//! kernel on Linux (`PR_SET_PDEATHSIG`), elsewhere from a thread of their
//! own that notices they were re-parented (checked every 100 ms), which
//! works even while the worker is busy in a handler.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::{self, Write as _};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::{Events, Interest, Poll, Token};
use nix::errno::Errno;
use nix::sys::signal::{kill, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::control::{self, Channel};
use super::listener::{self, Bound, ListenAddr, Mode, Socket};
use super::notify;
use super::recycle;
use super::sample;
use super::scoreboard::{self, Board};
use super::signals::{self, Source};
use super::supervisor::{Action, Command, Event, Sig, Supervisor, WorkerId};
use super::sys;
use crate::pubsub::relay;

mod admin;
mod bridge;
mod links;
mod upgrade;

use self::bridge::BRIDGE_TOKEN;
use self::links::{token, Link};
use self::upgrade::{PREDECESSOR_TOKEN, SUCCESSOR_TOKEN};

/// The signals the master takes over (see `signals.rs`): blocked before
/// forking, read from its signalfd or self-pipe.
pub(crate) const HANDLED_SIGNALS: [Signal; 9] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGQUIT,
    Signal::SIGHUP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGCHLD,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Settings of the master.
#[derive(Debug, Clone)]
pub(crate) struct MasterConfig {
    /// Number of worker processes (slots) to run; at least 1.
    pub workers: usize,
    /// How long stopping workers may drain before they get `SIGKILL`
    /// (graceful stop, and workers retired by reload or scale-down).
    pub graceful_timeout: Duration,
    /// `listen(2)` backlog of every listener.
    pub backlog: i32,
    /// How long a new worker may take to report `READY` during a rolling
    /// restart or a scale-down hand-over before the step is abandoned.
    pub ready_timeout: Duration,
    /// Recycle a worker whose private memory passes this many bytes
    /// (checked every [`recycle::MEMORY_CHECK`]; Linux only).
    pub max_worker_memory: Option<u64>,
    /// Kill and replace a worker whose event loop has not turned for this
    /// long (read from the scoreboard; `ZERO`: never).
    pub worker_timeout: Duration,
    /// How long a `SIGTERM` keeps the workers serving (health checks
    /// answer 503) before the drain starts; `ZERO`: drain at once.
    pub shutdown_delay: Duration,
    /// How long a new master started by `SIGUSR2` may take to have every
    /// worker ready before it is stopped and the upgrade rolled back.
    pub upgrade_timeout: Duration,
    /// Largest payload of the control channels, so the largest published
    /// message the relay carries (`pubsub::relay_limit`); the workers size
    /// their ends of the channels the same way.
    pub relay_limit: usize,
    /// The pid file (moved to `.oldbin` during an upgrade).
    pub pid_file: Option<std::path::PathBuf>,
    /// What `SIGUSR2` starts (`None`: unknown, the upgrade fails).
    pub exec: Option<super::upgrade::Exec>,
    /// Unix socket files removed when this master really stops (not
    /// when it hands them over to a new master).
    pub socket_files: Vec<listener::SocketFile>,
}

impl Default for MasterConfig {
    /// 1 worker, 30 s graceful timeout, backlog 1024, 30 s ready timeout.
    fn default() -> Self {
        Self {
            workers: 1,
            graceful_timeout: Duration::from_secs(30),
            backlog: listener::BACKLOG,
            ready_timeout: Duration::from_secs(30),
            max_worker_memory: None,
            worker_timeout: Duration::from_secs(30),
            shutdown_delay: Duration::ZERO,
            upgrade_timeout: super::supervisor::UPGRADE_TIMEOUT,
            relay_limit: control::MAX_PAYLOAD,
            pid_file: None,
            exec: None,
            socket_files: Vec::new(),
        }
    }
}

/// What a freshly forked worker gets.
#[derive(Debug)]
pub(crate) struct WorkerStart {
    /// Slot number, `0..workers`.
    pub index: usize,
    /// All listeners the master holds (inherited fds), every address's in
    /// order. The worker must keep them open (deregistering is how it stops
    /// accepting); closing its own copy is harmless to the kernel socket
    /// since the master holds one, but a later [`ADOPT`](control::ADOPT)
    /// names an index into this vector. Some may be bound but not listening
    /// (a scale-up whose worker is not forked yet): only `active` ones are
    /// guaranteed to listen.
    pub listeners: Vec<Socket>,
    /// The address (index into the server's listeners) of each of
    /// `listeners`.
    pub addresses: Vec<usize>,
    /// Indices into `listeners` this worker accepts on: normally `[index]`,
    /// more after a scale-down adoption.
    pub active: Vec<usize>,
    /// Worker end of the control socketpair, already non-blocking; register
    /// it in the worker's `Poll`, send [`READY`](control::READY) once the
    /// active listeners are registered, treat EOF as "the master died".
    pub control: UnixStream,
    /// The master's pid (compare with `getppid()`).
    pub master_pid: i32,
    /// The worker's entry in the scoreboard (see `scoreboard.rs`), if the
    /// master has one.
    pub board_entry: Option<usize>,
    /// The admin process (see `admin.rs`), not a worker: it serves only
    /// the admin routes on `listeners[0]`.
    pub admin: bool,
    /// Indices into `listeners` that were only bound (a scale-up's new
    /// socket): the worker listens on them once it is set up, right
    /// before it accepts, with this backlog.
    pub listen: Vec<usize>,
    pub backlog: i32,
}

/// Unblocks [`HANDLED_SIGNALS`], which the master blocked before forking.
/// A worker calls this *after* installing its own handlers (e.g. with
/// signal-hook), so a signal sent early waits as pending instead of hitting
/// a default disposition.
pub(crate) fn worker_signals_ready() {
    let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&handled_set()), None);
}

fn handled_set() -> SigSet {
    signals::set_of(&HANDLED_SIGNALS)
}

/// Runs the master until it is stopped by a signal and returns its exit
/// code (0 after a graceful or immediate stop).
///
/// Forks `cfg.workers` workers (binding more `SO_REUSEPORT` listeners on an
/// address if fewer than that were given); in each child `worker_main` runs
/// and the child exits with its return value (`std::process::exit`), so
/// this function returns only in the master.
///
/// Errors: the process runs more than one thread (forking would be
/// unsound), signal setup failed, or no worker could be forked at all
/// (`tine: no workers spawned; exiting`). A fork that fails later is logged
/// and retried with backoff. [`HANDLED_SIGNALS`] stay blocked in this
/// process after it returns, so a late signal cannot kill it on the way out.
///
/// `predecessor`: for a master started by a binary upgrade, the old
/// master's pid and the link to it (see `upgrade.rs`).
pub(crate) fn run_master(
    addresses: Vec<Bound>,
    cfg: MasterConfig,
    admin: Option<TcpListener>,
    predecessor: Option<super::upgrade::Predecessor>,
    worker_main: &mut dyn FnMut(WorkerStart) -> i32,
) -> io::Result<i32> {
    let outcome = Master::new(addresses, cfg, predecessor).map(|mut master| {
        let pid = master.pid;
        master.admin = admin.map(|l| admin::Admin::new(l, pid));
        master.run()
    });
    // In a child, `master` has been dropped by now: its signalfd or
    // self-pipe (with signal-hook's registrations), epoll instance and the
    // master ends of every control channel are closed.
    let result = match outcome {
        Err(e) => Err(e),
        Ok(Ok(result)) => result,
        Ok(Err(InChild(start))) => std::process::exit(worker_main(*start)),
    };
    // The self-pipe route unblocked them; keep the promise on both routes.
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&handled_set()), None);
    result
}

/// Returned up the master's call stack in a freshly forked child, so every
/// master-only resource is dropped before `worker_main` runs.
struct InChild(Box<WorkerStart>);

/// How often the master reads the heartbeats: twice a second, or faster
/// for a timeout under a second (the kill comes at most one period late).
fn watchdog_period(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_millis(10), Duration::from_millis(500))
}

/// `Err(InChild)` means "we are the child now": propagate with `?`.
type Step<T> = Result<T, InChild>;

const SIGNAL_TOKEN: Token = Token(0);
/// How often the relay's flow control is looked at while it holds a worker
/// back.
const RELAY_RECHECK: Duration = Duration::from_millis(100);

struct Master {
    cfg: MasterConfig,
    pid: Pid,
    /// Every address, in order, with the sockets' address indices.
    addrs: Vec<ListenAddr>,
    listeners: Vec<Socket>,
    /// The address of each of `listeners`.
    socket_address: Vec<usize>,
    sup: Supervisor,
    links: BTreeMap<WorkerId, Link>,
    poll: Poll,
    signals: Source,
    /// Workers whose published messages wait for flow control.
    relay_paused: Vec<WorkerId>,
    /// Workers whose channel still had input when the master stopped
    /// reading it (`relay::READ_LIMIT`): read on at once, next turn.
    read_more: Vec<WorkerId>,
    /// When the workers' memory is read next (with `max_worker_memory`).
    memory_check: Option<Instant>,
    /// systemd's readiness protocol, when `NOTIFY_SOCKET` is set.
    notify: Option<notify::Announcer>,
    /// The scoreboard every worker writes its heartbeat to.
    board: Option<&'static Board>,
    /// Each worker's scoreboard entry.
    entries: BTreeMap<WorkerId, usize>,
    /// What the watchdog last saw of each worker's progress.
    progress: BTreeMap<WorkerId, Option<scoreboard::Progress>>,
    /// When the heartbeats are looked at next (with `worker_timeout`).
    watchdog_check: Option<Instant>,
    /// When memory and accept queues are sampled next (for the metrics).
    sample_check: Option<Instant>,
    /// The admin process, with `App::admin_bind`.
    admin: Option<admin::Admin>,
    /// Each socket's address index and mode, in `listeners`' order.
    socket_info: Vec<(usize, Mode)>,
    /// The link to a new master this one started (`SIGUSR2`).
    successor: Option<mio::net::UnixStream>,
    /// The link to the old master, while it runs (this master was started
    /// by a binary upgrade).
    predecessor: Option<mio::net::UnixStream>,
    /// The publish/subscribe bridge to the other master of a binary
    /// upgrade, while both run (see `bridge.rs`).
    bridge: Option<bridge::Bridge>,
    /// A new master took over: this one stops, and removes `.oldbin`.
    handed_over: bool,
    /// When the scoreboard is swept of the other master's entries next
    /// (after an upgrade, see `upgrade.rs`).
    sweep_at: Option<Instant>,
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
    fn new(
        addresses: Vec<Bound>,
        mut cfg: MasterConfig,
        predecessor: Option<super::upgrade::Predecessor>,
    ) -> io::Result<Master> {
        let threads = sys::thread_count()?;
        if threads != 1 {
            return Err(sys::threads_error(threads));
        }
        if addresses.iter().all(|a| a.sockets.is_empty()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "tine: run_master needs a listener",
            ));
        }
        cfg.workers = cfg.workers.max(1);
        let mut addrs = Vec::new();
        let mut layout = Vec::new();
        let mut listeners = Vec::new();
        let mut socket_address = Vec::new();
        let mut socket_info = Vec::new();
        // Sockets bound here, one per worker the sockets handed over do
        // not cover (a binary upgrade to more workers): they listen once
        // their workers are ready, or the kernel would queue connections
        // on them while a new build starts, or for good if it never does.
        let mut unlistened = Vec::new();
        for (address, mut a) in addresses.into_iter().enumerate() {
            // (A Unix socket is always shared: `listener.rs`.)
            if let (Mode::ReusePort, ListenAddr::Tcp(addr)) = (a.mode, &a.addr) {
                while a.sockets.len() < cfg.workers {
                    let l = listener::bind_reuseport_unlistened(*addr)
                        .map_err(|e| listener::bind_error(*addr, e))?;
                    unlistened.push(listeners.len() + a.sockets.len());
                    a.sockets.push(Socket::Tcp(l));
                }
            }
            layout.push((a.mode, a.sockets.len()));
            socket_info.extend(std::iter::repeat_n((address, a.mode), a.sockets.len()));
            addrs.push(a.addr.clone());
            socket_address.extend(std::iter::repeat_n(address, a.sockets.len()));
            listeners.extend(a.sockets);
        }
        let mut sup = Supervisor::new(
            cfg.workers,
            cfg.graceful_timeout,
            cfg.ready_timeout,
            &layout,
        );
        sup.not_listening(&unlistened);
        sup.set_shutdown_delay(cfg.shutdown_delay);
        sup.set_upgrade(cfg.upgrade_timeout, predecessor.as_ref().map(|p| p.pid));
        if nix::unistd::getpid().as_raw() == 1 {
            // Process 1 of a pid namespace (a container): when it exits,
            // the kernel kills every process of the namespace, the new
            // master included. An upgrade would end the service.
            sup.refuse_upgrades(
                "this master is process 1 (a container's init): when it exits the \
                 container ends, taking the new master with it; replace the container instead",
            );
        }

        // From here on every handled signal reaches the loop through
        // `signals`; it is blocked in every child forked later until the
        // worker installed its own handlers (see `signals.rs`).
        // Mapped before the first fork, so every worker shares it.
        let board = scoreboard::board();
        if predecessor.is_some() {
            // A binary upgrade: the old master's restart counts carry on
            // (the scoreboard was handed over), and every slot's worker
            // was replaced once more, by the upgrade.
            let mut counts = board.map(|b| b.restarts(cfg.workers)).unwrap_or_default();
            counts.resize(cfg.workers, [0; 5]);
            for c in &mut counts {
                c[scoreboard::Restart::Upgrade as usize] += 1;
            }
            sup.seed_restarts(counts);
        }
        let poll = Poll::new().map_err(sys::while_doing("create the master's event loop"))?;
        let signals = Source::new(poll.registry(), SIGNAL_TOKEN, &HANDLED_SIGNALS).map_err(
            sys::while_doing("set up the master's signals (a signalfd or a self-pipe)"),
        )?;
        if signals.is_pipe() {
            info!("master signals through a self-pipe (portable route)");
        }
        let mut notify = notify::Announcer::from_env(Instant::now());
        let mut bridge = None;
        let predecessor = match predecessor {
            Some(super::upgrade::Predecessor {
                pid: old,
                link,
                bridge: handed,
            }) => {
                if let Some(stream) = handed {
                    match bridge::Bridge::new(stream, cfg.relay_limit, poll.registry()) {
                        Ok(b) => bridge = Some(b),
                        Err(e) => warn!(
                            "the publish/subscribe bridge to the old master: {e}; its \
                             workers' subscribers will not hear this master's workers"
                        ),
                    }
                }
                link.set_nonblocking(true)?;
                let mut link = mio::net::UnixStream::from_std(link);
                poll.registry()
                    .register(&mut link, PREDECESSOR_TOKEN, Interest::READABLE)?;
                info!("started by a binary upgrade: taking over from master {old}");
                if let Some(n) = &mut notify {
                    // The old master, still systemd's main process, says
                    // READY=1 along with this master's pid.
                    n.assume_started();
                }
                Some(link)
            }
            None => None,
        };
        Ok(Master {
            cfg,
            pid: nix::unistd::getpid(),
            addrs,
            listeners,
            socket_address,
            sup,
            links: BTreeMap::new(),
            poll,
            signals,
            relay_paused: Vec::new(),
            read_more: Vec::new(),
            memory_check: None,
            notify,
            board,
            entries: BTreeMap::new(),
            progress: BTreeMap::new(),
            watchdog_check: None,
            sample_check: board.map(|_| Instant::now()),
            admin: None,
            socket_info,
            successor: None,
            predecessor,
            bridge,
            handed_over: false,
            sweep_at: None,
        })
    }

    /// [`supervise`](Self::supervise), and on any way out of the master
    /// (an error, a stop before the first worker), the Unix socket files
    /// are removed (as the normal stop does), not left for the next start
    /// to find stale. Not in a forked child: the files are the master's.
    fn run(&mut self) -> Step<io::Result<i32>> {
        let result = self.supervise();
        if result.is_ok() {
            self.remove_socket_files();
        }
        result
    }

    fn supervise(&mut self) -> Step<io::Result<i32>> {
        info!(
            "master {} starting {} workers on {}",
            self.pid,
            self.cfg.workers,
            (self.addrs.iter().map(|a| a.to_string()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let start = self.sup.start(Instant::now());
        if let Some(code) = self.perform(start)? {
            return Ok(Ok(code));
        }
        if self.links.is_empty() {
            return Ok(Err(io::Error::other("tine: no workers spawned; exiting")));
        }
        self.spawn_admin()?;
        if let Some(limit) = self.cfg.max_worker_memory {
            if recycle::MEMORY_SUPPORTED {
                info!(
                    "workers are recycled past {} of private memory",
                    recycle::mib(limit)
                );
                self.memory_check = Some(Instant::now() + recycle::MEMORY_CHECK);
            } else {
                warn!("max_worker_memory is only supported on Linux: ignored");
            }
        }
        if !self.cfg.worker_timeout.is_zero() && self.board.is_some() {
            info!(
                "workers stuck for {:.1} s are killed and replaced",
                self.cfg.worker_timeout.as_secs_f64()
            );
            self.watchdog_check = Some(Instant::now() + watchdog_period(self.cfg.worker_timeout));
        }
        let mut events = Events::with_capacity(64);
        loop {
            let mut timeout = self
                .sup
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            if !self.relay_paused.is_empty() {
                // Look again soon: a worker that stays behind stops holding
                // the others back after relay::STALL.
                timeout = Some(timeout.map_or(RELAY_RECHECK, |t| t.min(RELAY_RECHECK)));
            }
            if !self.read_more.is_empty() {
                // Input is left that no new event will announce: poll
                // without waiting, then read on (resume_relay).
                timeout = Some(Duration::ZERO);
            }
            if let Some(at) = self.notify.as_ref().and_then(|n| n.next_deadline()) {
                let left = at.saturating_duration_since(Instant::now());
                timeout = Some(timeout.map_or(left, |t| t.min(left)));
            }
            #[cfg(feature = "tls")]
            let rotation = crate::server::tls::next_rotation();
            #[cfg(not(feature = "tls"))]
            let rotation = None;
            let admin_due = self.admin.as_ref().and_then(|a| a.due());
            for at in [
                self.memory_check,
                self.watchdog_check,
                self.sample_check,
                self.sweep_at,
                rotation,
                admin_due,
            ]
            .into_iter()
            .flatten()
            {
                let left = at.saturating_duration_since(Instant::now());
                timeout = Some(timeout.map_or(left, |t| t.min(left)));
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                error!("master poll failed: {e}; killing workers");
                self.kill_all_and_reap();
                return Ok(Err(e));
            }
            let mut happened = Vec::new();
            for event in events.iter() {
                if event.token() == SIGNAL_TOKEN {
                    self.read_signals(&mut happened);
                } else if event.token() == SUCCESSOR_TOKEN {
                    self.on_successor(&mut happened);
                } else if event.token() == PREDECESSOR_TOKEN {
                    self.on_predecessor(&mut happened);
                } else if event.token() == BRIDGE_TOKEN {
                    self.on_bridge();
                } else {
                    let readable =
                        event.is_readable() || event.is_read_closed() || event.is_error();
                    self.on_control(event.token(), readable, &mut happened);
                }
            }
            self.resume_relay(&mut happened);
            self.rotate_tickets();
            if self.memory_check.is_some_and(|at| at <= Instant::now()) {
                self.check_memory(&mut happened);
                self.memory_check = Some(Instant::now() + recycle::MEMORY_CHECK);
            }
            if self.watchdog_check.is_some_and(|at| at <= Instant::now()) {
                self.check_heartbeats(&mut happened);
                self.watchdog_check =
                    Some(Instant::now() + watchdog_period(self.cfg.worker_timeout));
            }
            if self.sample_check.is_some_and(|at| at <= Instant::now()) {
                if let Some(board) = self.board {
                    let live: Vec<(usize, i32)> = (self.entries.iter())
                        .filter_map(|(w, &i)| Some((i, self.links.get(w)?.pid)))
                        .collect();
                    sample::sample(board, &self.listeners, &live);
                }
                self.sample_check = Some(Instant::now() + sample::PERIOD);
            }
            self.spawn_admin()?;
            if self.sweep_at.is_some_and(|at| at <= Instant::now()) {
                self.sweep_board();
            }
            happened.push(Event::Tick);
            for event in happened {
                let actions = self.sup.handle(Instant::now(), event);
                if let Some(code) = self.perform(actions)? {
                    // A stop with no worker left to wait for ends here.
                    self.announce();
                    self.remove_oldbin();
                    self.remove_socket_files();
                    info!("master {}: bye", self.pid);
                    return Ok(Ok(code));
                }
            }
            self.announce();
        }
    }

    /// Performs `actions` in order, feeding the outcome of each fork and
    /// bind back to the supervisor (whose answers are performed too).
    /// `Some(code)`: exit with it.
    fn perform(&mut self, actions: Vec<Action>) -> Step<Option<i32>> {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            let outcome = match action {
                Action::Fork {
                    worker,
                    slot,
                    accept,
                    listen,
                    why,
                } => Some(self.fork(worker, slot, accept, &listen, why)?),
                Action::Bind { address } => {
                    // Only reuseport addresses, TCP ones, bind more.
                    let addr = self.addrs[address].tcp().unwrap_or(listener::UNSPECIFIED);
                    let ok = match listener::bind_reuseport_unlistened(addr) {
                        Ok(l) => {
                            self.listeners.push(Socket::Tcp(l));
                            self.socket_address.push(address);
                            self.socket_info.push((address, Mode::ReusePort));
                            true
                        }
                        Err(e) => {
                            error!("{}", listener::bind_error(addr, e));
                            false
                        }
                    };
                    Some(Event::Bound { address, ok })
                }
                Action::Listen { socket } => {
                    if let Some(l) = self.listeners.get(socket) {
                        if let Err(e) = listener::listen(l, self.cfg.backlog) {
                            error!("cannot listen on listener {socket}: {e}");
                        }
                    }
                    None
                }
                Action::Signal { pid, sig } => {
                    let sig = match sig {
                        Sig::Term => Signal::SIGTERM,
                        Sig::Kill => Signal::SIGKILL,
                    };
                    let _ = kill(Pid::from_raw(pid), sig);
                    None
                }
                Action::Adopt { worker, socket } => {
                    if !self.send(worker, control::ADOPT, &(socket as u32).to_le_bytes()) {
                        debug!("cannot send ADOPT {socket} to worker {worker}");
                    }
                    None
                }
                Action::Release { worker, socket } => {
                    if !self.send(worker, control::RELEASE, &(socket as u32).to_le_bytes()) {
                        debug!("cannot send RELEASE {socket} to worker {worker}");
                    }
                    None
                }
                Action::CloseListeners => {
                    self.listeners.clear();
                    None
                }
                Action::Exit(code) => return Ok(Some(code)),
                Action::SpawnMaster => Some(self.spawn_master()),
                Action::HandOver { pid } => {
                    self.hand_over(pid);
                    None
                }
                Action::UpgradeFailed { reason } => {
                    self.upgrade_failed(&reason);
                    None
                }
                Action::RestorePidFile => {
                    self.restore_pid_file();
                    None
                }
                Action::TellPredecessor => {
                    self.tell_predecessor();
                    None
                }
            };
            if let Some(event) = outcome {
                queue.extend(self.sup.handle(Instant::now(), event));
            }
        }
        Ok(None)
    }

    /// Tells systemd what changed (readiness, reload, stop, watchdog), and
    /// the scoreboard the restart counts and whether a stop was asked for
    /// (health checks answer 503 from then on).
    fn announce(&mut self) {
        if let Some(b) = self.board {
            for (slot, counts) in self.sup.restarts().iter().enumerate() {
                for (reason, &n) in counts.iter().enumerate() {
                    b.set_restarts(slot, reason, n);
                }
            }
            b.set_workers(self.sup.slot_count());
            if self.sup.stop_requested() {
                b.set_stopping();
            }
        }
        if let Some(n) = &mut self.notify {
            let state = notify::State {
                all_ready: self.sup.all_ready(),
                reloading: self.sup.reloading(),
                stopping: self.sup.stopping(),
                healthy: self.sup.healthy(),
            };
            n.update(state, Instant::now());
        }
    }

    /// Forks `worker` for `slot`; the event to report.
    fn fork(
        &mut self,
        worker: WorkerId,
        slot: usize,
        accept: Vec<usize>,
        listen: &[usize],
        why: &str,
    ) -> Step<Event> {
        let entry = self.board.and_then(|b| b.claim(slot));
        if self.board.is_some() && entry.is_none() {
            let reason = format!(
                "all {} scoreboard entries are in use",
                scoreboard::MAX_ENTRIES
            );
            return Ok(Event::ForkFailed { worker, reason });
        }
        let free_entry = |board: Option<&'static Board>| {
            if let (Some(b), Some(i)) = (board, entry) {
                b.free(i);
            }
        };
        let (master_end, worker_end) = match control::pair() {
            Ok(p) => p,
            Err(e) => {
                free_entry(self.board);
                let reason = format!("cannot create its control channel: {e}");
                return Ok(Event::ForkFailed { worker, reason });
            }
        };
        // Whatever sits in stdout's buffer would otherwise be written twice.
        let _ = io::stdout().flush();
        // No handler may run in the child before it has dropped the
        // master's signal registrations and installed its own.
        self.signals.hold();
        let forked = sys::fork();
        if !matches!(forked, Ok(sys::Fork::Child)) {
            self.signals.release();
        }
        match forked {
            Err(e) => {
                free_entry(self.board);
                Ok(Event::ForkFailed {
                    worker,
                    reason: e.to_string(),
                })
            }
            Ok(sys::Fork::Child) => {
                if !sys::child_after_fork(self.pid) {
                    // The master died before the worker could arrange to
                    // follow it (PR_SET_PDEATHSIG or the parent watch).
                    std::process::exit(1);
                }
                drop(master_end);
                // A socket only bound so far joins its address's
                // `SO_REUSEPORT` group when it listens, and from then on the
                // kernel hands it connections: the worker listens once its
                // setup (`on_worker_start`) is done, not here, so that a slow
                // or failing start strands no connection. (The master
                // listens too when the worker reports ready; either call
                // makes the shared socket listen.)
                Err(InChild(Box::new(WorkerStart {
                    index: slot,
                    listeners: std::mem::take(&mut self.listeners),
                    addresses: std::mem::take(&mut self.socket_address),
                    active: accept,
                    control: worker_end,
                    master_pid: self.pid.as_raw(),
                    board_entry: entry,
                    admin: false,
                    listen: listen.to_vec(),
                    backlog: self.cfg.backlog,
                })))
            }
            Ok(sys::Fork::Parent(pid)) => {
                drop(worker_end);
                let mut stream = mio::net::UnixStream::from_std(master_end);
                let stream = match self.poll.registry().register(
                    &mut stream,
                    token(worker),
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
                info!("spawned worker {slot} (pid {pid}, {why})");
                if let Some(i) = entry {
                    self.entries.insert(worker, i);
                }
                self.links.insert(
                    worker,
                    Link {
                        pid: pid.as_raw(),
                        slot,
                        stream,
                        chan: Channel::with_limit(self.cfg.relay_limit),
                        lane: relay::Lane::default(),
                    },
                );
                Ok(Event::Forked {
                    worker,
                    pid: pid.as_raw(),
                })
            }
        }
    }

    /// Reads every worker's heartbeat and reports those that made no
    /// progress (no loop turn, no handler started) for `worker_timeout`
    /// (see `Board::stuck`).
    fn check_heartbeats(&mut self, happened: &mut Vec<Event>) {
        let Some(board) = self.board else {
            return;
        };
        let now = Instant::now();
        // Workers gone since the last look are forgotten.
        self.progress.retain(|w, _| self.entries.contains_key(w));
        for (&worker, &i) in &self.entries {
            let seen = self.progress.entry(worker).or_default();
            if let Some((stuck, what)) = board.stuck(i, now, self.cfg.worker_timeout, seen) {
                happened.push(Event::Stuck {
                    worker,
                    stuck,
                    what,
                });
            }
        }
    }

    /// Reads the private memory of every serving worker and asks for the
    /// recycling of those past `max_worker_memory`.
    fn check_memory(&mut self, happened: &mut Vec<Event>) {
        let Some(limit) = self.cfg.max_worker_memory else {
            return;
        };
        for (worker, slot, pid) in self.sup.serving() {
            match recycle::private_bytes(pid) {
                Ok(bytes) if bytes > limit => happened.push(Event::Recycle {
                    worker,
                    reason: format!(
                        "private memory {} over max_worker_memory {}",
                        recycle::mib(bytes),
                        recycle::mib(limit)
                    ),
                }),
                Ok(_) => {}
                // It may have exited a moment ago (its reaping comes later).
                Err(e) => debug!("cannot read the memory of worker {slot} (pid {pid}): {e}"),
            }
        }
    }

    fn read_signals(&mut self, happened: &mut Vec<Event>) {
        let mut got = Vec::new();
        self.signals.read(&mut got);
        // Stops first, then reaping, then operations.
        if got.contains(&Signal::SIGQUIT) {
            happened.push(Event::Command(Command::Quit));
        }
        if got.contains(&Signal::SIGINT) || got.contains(&Signal::SIGTERM) {
            happened.push(Event::Command(Command::Stop));
        }
        if got.contains(&Signal::SIGCHLD) {
            self.reap(happened);
        }
        if got.contains(&Signal::SIGHUP) || got.contains(&Signal::SIGUSR1) {
            // Files that outside tools replace (certificates) are read
            // again at once; SIGHUP then restarts the workers as well.
            self.reopen_files();
        }
        if got.contains(&Signal::SIGUSR1) {
            // The workers and the admin process reopen their access logs.
            self.forward_usr1();
        }
        for sig in got {
            let op = match sig {
                Signal::SIGUSR2 => Command::Upgrade,
                Signal::SIGHUP => Command::Reload,
                Signal::SIGTTIN => Command::ScaleUp,
                Signal::SIGTTOU => Command::ScaleDown,
                _ => continue,
            };
            happened.push(Event::Command(op));
        }
    }

    /// `SIGUSR1` (and `SIGHUP`, before its rolling restart): re-reads the
    /// files outside tools replace. TLS certificates: checked here, then
    /// switched in the running workers for their new handshakes.
    fn reopen_files(&mut self) {
        #[cfg(feature = "tls")]
        for payload in crate::server::tls::reload() {
            self.broadcast(control::TLS, &payload);
        }
    }

    /// Sends one message to every live worker.
    #[cfg(feature = "tls")]
    fn broadcast(&mut self, kind: u8, payload: &[u8]) {
        let workers: Vec<WorkerId> = self.links.keys().copied().collect();
        for worker in workers {
            if !self.send(worker, kind, payload) {
                warn!("cannot send a TLS update to worker {worker}");
            }
        }
    }

    /// Draws a new session-ticket key when one is due, for every worker.
    fn rotate_tickets(&mut self) {
        #[cfg(feature = "tls")]
        if let Some(payload) = crate::server::tls::rotate_due(Instant::now()) {
            self.broadcast(control::TLS, &payload);
        }
    }

    fn reap(&mut self, happened: &mut Vec<Event>) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(status) => happened.extend(self.exited(status)),
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    error!("waitpid failed: {e}");
                    break;
                }
            }
        }
    }

    /// Forgets the channel of a reaped worker; the event to report.
    fn exited(&mut self, status: WaitStatus) -> Option<Event> {
        let pid = status.pid()?;
        if !matches!(status, WaitStatus::Exited(..) | WaitStatus::Signaled(..)) {
            return None; // stopped/continued: still alive
        }
        if let Some(a) = &mut self.admin {
            if a.exited(pid.as_raw(), &Status(status).to_string(), false) {
                return None;
            }
        }
        let worker = self
            .links
            .iter()
            .find_map(|(&w, l)| (l.pid == pid.as_raw()).then_some(w));
        if let (Some(b), Some(i)) = (self.board, worker.and_then(|w| self.entries.remove(&w))) {
            b.free(i);
        }
        if let Some(mut link) = worker.and_then(|w| self.links.remove(&w)) {
            if let Some(mut stream) = link.stream.take() {
                let _ = self.poll.registry().deregister(&mut stream);
            }
        }
        Some(Event::Exited {
            pid: pid.as_raw(),
            status: Status(status).to_string(),
        })
    }

    fn kill_all_and_reap(&mut self) {
        if let Some(a) = &mut self.admin {
            a.stop();
        }
        for pid in self.sup.pids() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // Until ECHILD: no child left.
        while matches!(waitpid(Pid::from_raw(-1), None), Ok(_) | Err(Errno::EINTR)) {}
    }
}

#[cfg(test)]
mod tests {
    //! In-process tests never fork: `run_master` is only called here while a
    //! second thread is alive, so it must refuse before forking.
    use super::*;

    #[test]
    fn defaults() {
        let c = MasterConfig::default();
        assert_eq!(c.workers, 1);
        assert_eq!(c.graceful_timeout, Duration::from_secs(30));
        assert_eq!(c.backlog, 1024);
    }

    #[test]
    fn run_master_refuses_a_multithreaded_process() {
        // Keep a second thread alive for the whole call.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let helper = std::thread::spawn(move || rx.recv());
        let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        let sockets = listener::bind_reuseport_group(addr, 1, 16, false).unwrap();
        let bound = Bound {
            addr: ListenAddr::Tcp(sockets[0].local_addr().unwrap()),
            mode: Mode::ReusePort,
            sockets: sockets.into_iter().map(Socket::Tcp).collect(),
        };
        let mut called = false;
        let res = run_master(
            vec![bound],
            MasterConfig {
                workers: 2,
                ..MasterConfig::default()
            },
            None,
            None,
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
