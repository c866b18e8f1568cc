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
//! On Linux, closing a `SO_REUSEPORT` listener resets every connection
//! waiting in its accept queue. So the master creates one reuseport listener
//! per worker slot *before* forking and never closes any of them while it
//! runs. Worker `k` inherits every listener fd and accepts on listener `k`
//! ([`WorkerStart::active`]).
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
//!   is given back to the new slot; otherwise one more reuseport socket is
//!   bound on the same port (the master's own group, so no probe), but it
//!   only starts listening once its worker was forked: if the fork fails,
//!   a bound socket that does not listen receives no connection, and the
//!   fork is retried with backoff.
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
//! A fork that fails (say, the process limit was reached) is logged with
//! its reason and retried with the same backoff; the master keeps serving
//! with the workers it has.
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

use super::control::{self, Channel, Msg, SendNoSignal};
use super::listener::{self, Bound, Mode};
use super::supervisor::{Action, Command, Event, Sig, Supervisor, WorkerId};
use super::sys;

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
}

impl Default for MasterConfig {
    /// 1 worker, 30 s graceful timeout, backlog 1024, 30 s ready timeout.
    fn default() -> Self {
        Self {
            workers: 1,
            graceful_timeout: Duration::from_secs(30),
            backlog: listener::BACKLOG,
            ready_timeout: Duration::from_secs(30),
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
pub(crate) fn run_master(
    addresses: Vec<Bound>,
    cfg: MasterConfig,
    worker_main: &mut dyn FnMut(WorkerStart) -> i32,
) -> io::Result<i32> {
    let outcome = Master::new(addresses, cfg).map(|mut master| master.run());
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

fn token(worker: WorkerId) -> Token {
    Token(worker + 1)
}

/// The master's end of one worker's control channel.
struct Link {
    pid: i32,
    slot: usize,
    /// `None` once the channel hit EOF or was closed.
    stream: Option<mio::net::UnixStream>,
    chan: Channel,
}

struct Master {
    cfg: MasterConfig,
    pid: Pid,
    /// Every address, in order, with the sockets' address indices.
    addrs: Vec<SocketAddr>,
    listeners: Vec<TcpListener>,
    sup: Supervisor,
    links: BTreeMap<WorkerId, Link>,
    poll: Poll,
    sigfd: SignalFd,
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
    fn new(addresses: Vec<Bound>, mut cfg: MasterConfig) -> io::Result<Master> {
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
        for mut a in addresses {
            if a.mode == Mode::ReusePort {
                while a.sockets.len() < cfg.workers {
                    let l = listener::bind_reuseport(a.addr, cfg.backlog)
                        .map_err(|e| listener::bind_error(a.addr, e))?;
                    a.sockets.push(l);
                }
            }
            layout.push((a.mode, a.sockets.len()));
            addrs.push(a.addr);
            listeners.extend(a.sockets);
        }
        let sup = Supervisor::new(
            cfg.workers,
            cfg.graceful_timeout,
            cfg.ready_timeout,
            &layout,
        );

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
            pid: nix::unistd::getpid(),
            addrs,
            listeners,
            sup,
            links: BTreeMap::new(),
            poll,
            sigfd,
        })
    }

    fn run(&mut self) -> Step<io::Result<i32>> {
        info!(
            "master {} starting {} workers on {:?}",
            self.pid, self.cfg.workers, self.addrs
        );
        let start = self.sup.start(Instant::now());
        if let Some(code) = self.perform(start)? {
            return Ok(Ok(code));
        }
        if self.links.is_empty() {
            return Ok(Err(io::Error::other("tine: no workers spawned; exiting")));
        }
        let mut events = Events::with_capacity(64);
        loop {
            let timeout = self
                .sup
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
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
                } else {
                    let readable =
                        event.is_readable() || event.is_read_closed() || event.is_error();
                    self.on_control(event.token(), readable, &mut happened);
                }
            }
            happened.push(Event::Tick);
            for event in happened {
                let actions = self.sup.handle(Instant::now(), event);
                if let Some(code) = self.perform(actions)? {
                    info!("master {}: bye", self.pid);
                    return Ok(Ok(code));
                }
            }
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
                    let addr = self.addrs[address];
                    let ok = match listener::bind_reuseport_unlistened(addr) {
                        Ok(l) => {
                            self.listeners.push(l);
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
                    if let Err(e) = listener::listen(&self.listeners[socket], self.cfg.backlog) {
                        error!("cannot listen on listener {socket}: {e}");
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
                Action::Exit(code) => return Ok(Some(code)),
            };
            if let Some(event) = outcome {
                queue.extend(self.sup.handle(Instant::now(), event));
            }
        }
        Ok(None)
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
        let pair = UnixStream::pair().and_then(|(m, w)| {
            m.set_nonblocking(true)?;
            w.set_nonblocking(true)?;
            Ok((m, w))
        });
        let (master_end, worker_end) = match pair {
            Ok(p) => p,
            Err(e) => {
                let reason = format!("cannot create its control channel: {e}");
                return Ok(Event::ForkFailed { worker, reason });
            }
        };
        // Whatever sits in stdout's buffer would otherwise be written twice.
        let _ = io::stdout().flush();
        match sys::fork() {
            Err(e) => Ok(Event::ForkFailed {
                worker,
                reason: e.to_string(),
            }),
            Ok(sys::Fork::Child) => {
                if !sys::child_after_fork(self.pid, &HANDLED_SIGNALS) {
                    // The master died between fork and PR_SET_PDEATHSIG.
                    std::process::exit(1);
                }
                drop(master_end);
                // Listen before the worker registers the socket: accept(2)
                // on a socket that is not listening fails with EINVAL, and
                // epoll reports such a socket as hung up, so the worker
                // would spin on it. (The master listens too, once it sees
                // the fork succeed; either call makes the shared socket
                // listen.)
                for &s in listen {
                    let _ = listener::listen(&self.listeners[s], self.cfg.backlog);
                }
                Err(InChild(WorkerStart {
                    index: slot,
                    listeners: std::mem::take(&mut self.listeners),
                    active: accept,
                    control: worker_end,
                    master_pid: self.pid.as_raw(),
                }))
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
                self.links.insert(
                    worker,
                    Link {
                        pid: pid.as_raw(),
                        slot,
                        stream,
                        chan: Channel::new(),
                    },
                );
                Ok(Event::Forked {
                    worker,
                    pid: pid.as_raw(),
                })
            }
        }
    }

    fn read_signals(&mut self, happened: &mut Vec<Event>) {
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
            happened.push(Event::Command(Command::Quit));
        }
        if got.contains(&Signal::SIGINT) || got.contains(&Signal::SIGTERM) {
            happened.push(Event::Command(Command::Stop));
        }
        if got.contains(&Signal::SIGCHLD) {
            self.reap(happened);
        }
        for sig in got {
            let op = match sig {
                Signal::SIGHUP => Command::Reload,
                Signal::SIGTTIN => Command::ScaleUp,
                Signal::SIGTTOU => Command::ScaleDown,
                _ => continue,
            };
            happened.push(Event::Command(op));
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
        let worker = self
            .links
            .iter()
            .find_map(|(&w, l)| (l.pid == pid.as_raw()).then_some(w));
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
        for pid in self.sup.pids() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // Until ECHILD: no child left.
        while matches!(waitpid(Pid::from_raw(-1), None), Ok(_) | Err(Errno::EINTR)) {}
    }

    fn on_control(&mut self, token: Token, readable: bool, happened: &mut Vec<Event>) {
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
        let mut msgs = Vec::new();
        let eof = match link.chan.receive(stream, |m| msgs.push(m)) {
            Ok(eof) => eof,
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
    /// worker whose queue is full loses the frame (logged), so a stuck
    /// worker cannot make the master grow.
    fn relay(&mut self, from: WorkerId, kind: u8, payload: &[u8]) {
        for (&worker, link) in self.links.iter_mut() {
            if worker == from {
                continue;
            }
            let Some(stream) = link.stream.as_ref() else {
                continue;
            };
            if !link.chan.queue(kind, payload) {
                warn!(
                    "control queue of worker {} (pid {}) is full; dropping a relayed message",
                    link.slot, link.pid
                );
                continue;
            }
            let _ = link.chan.flush_to(&mut SendNoSignal(stream));
        }
    }

    fn send(&mut self, worker: WorkerId, kind: u8, payload: &[u8]) -> bool {
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
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let sockets = listener::bind_reuseport_group(addr, 1, 16, false).unwrap();
        let bound = Bound {
            addr: sockets[0].local_addr().unwrap(),
            mode: Mode::ReusePort,
            sockets,
        };
        let mut called = false;
        let res = run_master(
            vec![bound],
            MasterConfig {
                workers: 2,
                ..MasterConfig::default()
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
