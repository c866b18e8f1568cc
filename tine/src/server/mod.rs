//! The server: listening sockets, TCP or Unix-domain (`listener.rs`), the per-process event
//! loop, and (with several workers) the supervising master: `master/`
//! performs the system calls, `supervisor/` makes every decision as a
//! state machine unit-tested without forking. The master knows nothing of
//! HTTP. `static_files` opens the files that the event loop then sends, and
//! the pub/sub bus keeps its own Redis connections.
//!
//! Running as a service: `systemd.rs` takes over sockets passed by a
//! socket unit (`LISTEN_FDS`) instead of binding, `notify.rs` tells systemd
//! about readiness, reloads, stops and the watchdog (`NOTIFY_SOCKET`), and
//! `privileges.rs` switches workers to an unprivileged user after the fork.

pub(crate) mod conn;
pub(crate) mod control;
mod error;
mod event_loop;
mod handle;
mod listener;
mod master;
mod nofile;
mod notify;
mod per_ip;
mod pidfile;
pub(crate) mod privileges;
mod recycle;
mod sample;
pub(crate) mod scoreboard;
mod signals;
mod supervisor;
pub(crate) mod sys;
mod systemd;
pub(crate) mod timer;
#[cfg(feature = "tls")]
pub(crate) mod tls;
mod upgrade;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::handler;
use crate::limits::Limits;
use crate::service::Service;
use crate::ws::WsConfig;

pub use error::ServeError;
pub use handle::ServerHandle;
pub use listener::{Balance, Listen, ListenAddr};

/// The peer address of a connection accepted on a Unix-domain listener
/// (it has no IP): the unspecified `0.0.0.0:0`, which no TCP peer has.
pub(crate) const UNIX_PEER: SocketAddr = listener::UNSPECIFIED;

static WORKER_INDEX: AtomicUsize = AtomicUsize::new(0);
static WORKER_COUNT: AtomicUsize = AtomicUsize::new(1);

/// Which process is serving: see [`worker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerInfo {
    /// The worker's slot, `0..count` (0 in single-process mode). A
    /// replacement worker takes the slot of the one it replaces.
    pub index: usize,
    /// The number of worker slots configured at start-up.
    pub count: usize,
    /// This process's id.
    pub pid: u32,
}

/// The serving process's worker slot and pid.
///
/// ```
/// let me = tine::worker();
/// assert_eq!(me.pid, std::process::id());
/// ```
pub fn worker() -> WorkerInfo {
    WorkerInfo {
        index: WORKER_INDEX.load(Ordering::Relaxed),
        count: WORKER_COUNT.load(Ordering::Relaxed),
        pid: std::process::id(),
    }
}

/// A bound server, ready to [`run`](Server::run). Made by [`App::bind`](crate::App::bind).
///
/// From `bind` on, the server owns the signals that `run` handles: a
/// `SIGTERM` (or `SIGINT`) sent once the address is known, even before
/// `run` was called, stops the server gracefully as soon as it runs,
/// rather than killing the process.
///
/// ```no_run
/// let server = tine::App::new().bind("127.0.0.1:0").unwrap();
/// println!("listening on http://{}", server.local_addr());
/// server.run().unwrap();
/// ```
pub struct Server {
    service: Service,
    config: ServerConfig,
    /// Every address with its sockets, in the order of `config.listens`.
    addresses: Vec<listener::Bound>,
    workers: usize,
    /// Removed when the server is dropped (after `run`).
    _pid_file: Option<pidfile::PidFile>,
    /// Set when `TINE_WORKERS` chose `workers`: said in the start-up log.
    workers_note: Option<String>,
    /// `App::admin_bind`'s listener and routes (see `master/admin.rs`).
    admin: Option<(std::net::TcpListener, Service)>,
    /// This process is a new master started by a binary upgrade: the old
    /// master's pid and the link to it (see `upgrade.rs`).
    predecessor: Option<upgrade::Predecessor>,
    /// The executable and arguments a binary upgrade starts (taken at
    /// bind, before the app can change directory).
    exec: Option<upgrade::Exec>,
    /// The process's signals, taken over at bind so that none sent after
    /// the application announced its address kills it: see [`Early`].
    early: Early,
    /// The Unix socket files this server removes when it really stops
    /// (those it bound, or took over in a binary upgrade; not a socket
    /// unit's).
    socket_files: Vec<listener::SocketFile>,
    /// What a single process's [`ServerHandle`]s ask of its loop.
    local_stop: std::sync::Arc<handle::LocalStop>,
}

/// How a server holds its signals between `bind` and the moment its loop
/// reads them. Anything may announce the server as soon as `bind`
/// returns (hello prints `listening on`, a supervisor waits for the port),
/// and a `SIGTERM` sent then must stop it gracefully; left to its default
/// action it would kill the process.
enum Early {
    /// A single process: signal-hook's handlers installed, noting every
    /// signal in the self-pipe the event loop registers (see
    /// `event_loop::stop_signals`). Handlers rather than a blocked mask:
    /// a single process may run other threads (started by the
    /// application before `bind`), which a mask set in this thread would
    /// not cover.
    Single(signal_hook_mio::v1_0::Signals),
    /// A master: its handled signals blocked until its signal source
    /// reads them (see `signals::Held`).
    Master(signals::Held),
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addrs", &self.local_addrs())
            .field("workers", &self.workers)
            .finish()
    }
}

/// The settings the server reads besides the [`Service`]: built by
/// [`App`](crate::App), read at start-up and by the event loop.
#[derive(Debug, Clone)]
pub(crate) struct ServerConfig {
    pub(crate) limits: Limits,
    pub(crate) ws: WsConfig,
    pub(crate) workers: usize,
    pub(crate) graceful_timeout: Duration,
    pub(crate) join_existing: bool,
    pub(crate) redis_url: Option<String>,
    /// Responses after which a worker is recycled (`None`: never).
    pub(crate) max_requests: Option<u64>,
    /// Up to this many more, drawn per worker.
    pub(crate) max_requests_jitter: u64,
    /// Where the admin process listens (`App::admin_bind`).
    pub(crate) admin_addr: Option<SocketAddr>,
    /// Private memory (bytes) past which a worker is recycled.
    pub(crate) max_worker_memory: Option<u64>,
    /// Where the master (or single process) writes its pid.
    pub(crate) pid_file: Option<std::path::PathBuf>,
    /// The user workers switch to (a name or a number).
    pub(crate) user: Option<String>,
    /// The group workers switch to (default: the user's).
    pub(crate) group: Option<String>,
    /// `user` and `group` resolved at bind time.
    pub(crate) credentials: Option<privileges::Credentials>,
    /// A worker whose loop has not turned for this long is killed and
    /// replaced (`ZERO`: never).
    pub(crate) worker_timeout: Duration,
    /// A health route is served ([`App::health`](crate::App::health)).
    pub(crate) health: bool,
    /// How long a stop keeps serving before draining (`None`: the default,
    /// [`SHUTDOWN_DELAY`] with a health route, none without).
    pub(crate) shutdown_delay: Option<Duration>,
    /// The addresses served: before `bind`, those added with
    /// `App::listen`; from `bind` on, every address in order (the one
    /// given to `bind` first). A worker reads a connection's per-listener
    /// settings here, by the address index of the socket it came from.
    pub(crate) listens: Vec<listener::Listen>,
    /// The app's default [`Balance`](listener::Balance).
    pub(crate) balance: Option<listener::Balance>,
    /// How long a new master started by `SIGUSR2` may take to be ready.
    pub(crate) upgrade_timeout: Duration,
    /// The largest body or WebSocket message limit a route group sets
    /// (0: none), which the relay's message size must allow too.
    pub(crate) group_limit: usize,
}

impl ServerConfig {
    /// The largest message the master relay carries
    /// ([`pubsub::relay_limit`](crate::pubsub::relay_limit)).
    pub(crate) fn relay_limit(&self) -> usize {
        crate::pubsub::relay_limit(&self.limits, &self.ws, self.group_limit)
    }
}

/// The default shutdown delay of a server with a health route.
pub(crate) const SHUTDOWN_DELAY: Duration = Duration::from_secs(5);

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            limits: Limits::default(),
            ws: WsConfig::default(),
            workers: 1,
            graceful_timeout: Duration::from_secs(30),
            join_existing: false,
            redis_url: None,
            max_requests: None,
            max_requests_jitter: 0,
            max_worker_memory: None,
            pid_file: None,
            user: None,
            group: None,
            credentials: None,
            worker_timeout: WORKER_TIMEOUT,
            health: false,
            shutdown_delay: None,
            admin_addr: None,
            listens: Vec::new(),
            balance: None,
            upgrade_timeout: supervisor::UPGRADE_TIMEOUT,
            group_limit: 0,
        }
    }
}

/// The default [`ServerConfig::worker_timeout`] (gunicorn's `--timeout`).
pub(crate) const WORKER_TIMEOUT: Duration = Duration::from_secs(30);
/// Overrides the worker timeout at start-up, in seconds (`30`, `0.5`; `0`
/// disables the watchdog).
pub(crate) const WORKER_TIMEOUT_VAR: &str = "TINE_WORKER_TIMEOUT";

/// The watchdog's timeout: [`WORKER_TIMEOUT_VAR`] wins over the builder's
/// value; an unparsable value is an error naming the variable.
fn resolve_worker_timeout(configured: Duration) -> io::Result<Duration> {
    match std::env::var(WORKER_TIMEOUT_VAR) {
        Ok(v) => parse_seconds(&v).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "tine: {WORKER_TIMEOUT_VAR} must be a number of seconds \
                     (like 30 or 0.5; 0 disables), not {v:?}"
                ),
            )
        }),
        Err(_) => Ok(configured),
    }
}

/// `"30"`, `"0.5"`, `" 2 "` as a duration; `None` for anything else
/// (negative, not finite, not a number, absurdly large).
fn parse_seconds(v: &str) -> Option<Duration> {
    let secs: f64 = v.trim().parse().ok()?;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return None;
    }
    Some(Duration::from_secs_f64(secs))
}

/// The worker count: `TINE_WORKERS` (a number or `auto`) wins over the
/// builder's value. With it, also what the start-up log says about it.
/// More than [`MAX_WORKERS`](supervisor::MAX_WORKERS) is refused (`auto`
/// takes at most that many).
fn resolve_workers(configured: usize) -> io::Result<(usize, Option<String>)> {
    let most = supervisor::MAX_WORKERS;
    let too_many = |what: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("tine: {what}: the most a server runs is {most}"),
        )
    };
    let Ok(v) = std::env::var("TINE_WORKERS") else {
        if configured > most {
            return Err(too_many(format!("workers({configured})")));
        }
        return Ok((configured, None));
    };
    let workers = if v.trim() == "auto" {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(most)
    } else {
        let n: usize = v.trim().parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("tine: TINE_WORKERS must be a number or \"auto\", not {v:?}"),
            )
        })?;
        if n > most {
            return Err(too_many(format!("TINE_WORKERS={}", v.trim())));
        }
        n
    };
    Ok((workers, Some(workers_note(&v, configured))))
}

/// How the start-up log credits `TINE_WORKERS`: an operator who set it
/// long ago, or a reader of the code's `workers(n)`, sees at once where
/// the count came from.
fn workers_note(env: &str, configured: usize) -> String {
    format!(
        "TINE_WORKERS={} overrides the app's workers({configured})",
        env.trim()
    )
}

impl Server {
    /// Binds `first` (the address given to `App::bind`, if any) and then
    /// every address added with `App::listen`.
    pub(crate) fn bind(
        service: Service,
        mut config: ServerConfig,
        first: Option<SocketAddr>,
    ) -> io::Result<Server> {
        let (workers, workers_note) = resolve_workers(config.workers)?;
        config.credentials = privileges::resolve(config.user.as_deref(), config.group.as_deref())?;
        config.worker_timeout = resolve_worker_timeout(config.worker_timeout)?;
        if let Some(url) = &config.redis_url {
            // Fail at start-up, in one place, rather than in every worker.
            crate::pubsub::check_redis_url(url)?;
        }
        if let Some(log) = &service.access_log {
            // Likewise: a log file that cannot be opened stops the start,
            // rather than losing every line with a warning per request.
            crate::access_log::check(log, config.credentials.as_ref())?;
        }
        if let Some(addr) = first {
            config.listens.insert(0, listener::Listen::tcp(addr));
        }
        if config.listens.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "tine: no address to listen on (give one to bind, or add one with App::listen)",
            ));
        }
        // The second bind of an address would fail with "address already
        // in use", as if another program held it: say what is wrong.
        let given = |l: &listener::Listen| !matches!(&l.at, ListenAddr::Tcp(a) if a.port() == 0);
        for (i, l) in config.listens.iter().enumerate().filter(|(_, l)| given(l)) {
            if config.listens[..i].iter().any(|earlier| earlier.at == l.at) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "tine: {} is given twice (as the bind address and with App::listen, or \
                         listened on twice); give each address once",
                        l.at
                    ),
                ));
            }
        }
        // A PROXY protocol header arrives in clear before the TLS
        // handshake, but the TLS session reads the socket from its first
        // byte: the two on one listener are not supported.
        #[cfg(feature = "tls")]
        if let Some(l) = (config.listens.iter()).find(|l| l.tls.is_some() && l.proxy_protocol) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "tine: the listener on {} has both TLS and the PROXY protocol, which is \
                     not supported; terminate TLS at the balancer, or use a listener without \
                     the PROXY protocol",
                    l.at
                ),
            ));
        }
        let mut predecessor = None;
        // Files taken over from an old master: never removed here (it
        // still serves them if this start-up fails).
        let mut socket_files = Vec::new();
        // Files bound below: removed again on any early return from here
        // on, kept only once nothing can fail any more.
        let mut bound_files = listener::BoundFiles::default();
        let addresses = if let Some(up) = upgrade::inherited()? {
            // The old master's sockets (see upgrade.rs): their queues are
            // the ones clients connect to; nothing is bound.
            predecessor = Some(upgrade::Predecessor {
                pid: up.parent,
                link: up.link,
                bridge: up.bridge,
            });
            if let Some((fd, origin)) = up.board {
                // Before anything maps a scoreboard of its own.
                scoreboard::adopt(fd, origin);
            }
            // Before the TLS listeners are set up below, so tickets issued
            // by the old generation resume on the new one.
            #[cfg(feature = "tls")]
            if let Some(wire) = &up.tickets {
                tls::adopt_ticket_keys(wire);
            }
            // The Unix socket files the old master would have removed on
            // stop are this one's to remove when it stops for good; a
            // socket unit's file stays systemd's.
            socket_files.extend(up.socket_files);
            adopt_upgrade(&mut config.listens, up.addresses)
        } else if let Some(inherited) = systemd::inherited_listeners() {
            adopt_inherited(&mut config.listens, inherited)
        } else {
            let mut addresses: Vec<listener::Bound> = Vec::with_capacity(config.listens.len());
            for l in &mut config.listens {
                let bound =
                    listener::bind_listen(l, config.balance, workers, config.join_existing)?;
                if let Some(f) = bound.addr.path().and_then(listener::SocketFile::at) {
                    bound_files.push(f);
                }
                if let (Some(path), Some(who)) = (bound.addr.path(), &config.credentials) {
                    who.own(path)?;
                }
                // With port 0, the port the system picked.
                l.at = bound.addr.clone();
                addresses.push(bound);
            }
            addresses
        };
        // TLS configurations are made now, in the process that will be the
        // master: workers inherit them (keys, certificates), and the master
        // reloads them.
        #[cfg(feature = "tls")]
        for tls in config.listens.iter().filter_map(|l| l.tls.as_ref()) {
            tls.server_config();
        }
        let admin = match config.admin_addr {
            None => None,
            Some(_) if workers <= 1 => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "tine: admin_bind needs workers > 1 (the master runs the admin process)",
                ))
            }
            Some(a) => {
                // A `SO_REUSEPORT` socket, so that a new master started by
                // a binary upgrade can bind it while this one still serves
                // it; anyone else already listening there is refused first
                // (the probe binds without the option).
                let bound = match predecessor {
                    Some(_) => listener::bind_reuseport(a, listener::BACKLOG),
                    None => listener::probe(a)
                        .and_then(|_probed| listener::bind_reuseport(a, listener::BACKLOG)),
                };
                let l = bound.map_err(|e| {
                    io::Error::new(e.kind(), format!("tine: admin address {a}: {e}"))
                })?;
                // The admin process's event loop accepts until WouldBlock.
                l.set_nonblocking(true)?;
                Some((l, Service::default()))
            }
        };
        let _pid_file = match &config.pid_file {
            Some(path) => Some(pidfile::PidFile::create(path)?),
            None => None,
        };
        // Last, once nothing can fail any more, and before the caller can
        // say the server is up.
        let early = if workers <= 1 {
            Early::Single(event_loop::stop_signals(true)?)
        } else {
            Early::Master(signals::Held::block(&master::HANDLED_SIGNALS)?)
        };
        socket_files.extend(bound_files.kept());
        Ok(Server {
            service,
            config,
            addresses,
            workers,
            _pid_file,
            workers_note,
            admin,
            predecessor,
            exec: upgrade::Exec::current(),
            early,
            socket_files,
            local_stop: Default::default(),
        })
    }

    /// The routes the admin process serves (with `App::admin_bind`).
    pub(crate) fn set_admin_service(&mut self, service: Service) {
        if let Some((_, s)) = &mut self.admin {
            *s = service;
        }
    }

    /// A handle that stops this server gracefully from code, as `SIGTERM`
    /// does: from another thread (a test, a program that embeds the
    /// server), or with workers from a handler (see [`ServerHandle`]).
    pub fn handle(&self) -> ServerHandle {
        if self.workers <= 1 {
            ServerHandle::local(self.local_stop.clone())
        } else {
            ServerHandle::master(std::process::id())
        }
    }

    /// The admin listener's address, with `App::admin_bind`.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// The first bound TCP address (with the real port when bound to port
    /// 0): the one given to `bind`, else the first added with
    /// `App::listen`. A server with Unix listeners only has none: this is
    /// then the unspecified `0.0.0.0:0` (see
    /// [`listen_addrs`](Server::listen_addrs)).
    pub fn local_addr(&self) -> SocketAddr {
        (self.addresses.iter())
            .find_map(|a| a.addr.tcp())
            .unwrap_or(listener::UNSPECIFIED)
    }

    /// Every bound TCP address, in order: the one given to `bind` first,
    /// then those added with [`App::listen`](crate::App::listen). Unix
    /// listeners have no `SocketAddr` and are left out: see
    /// [`listen_addrs`](Server::listen_addrs), which lists every listener.
    ///
    /// ```
    /// let server = tine::App::new()
    ///     .listen(tine::Listen::tcp(([127, 0, 0, 1], 0)))
    ///     .bind("127.0.0.1:0")?;
    /// let addrs = server.local_addrs();
    /// assert_eq!(addrs.len(), 2);
    /// assert_ne!(addrs[0].port(), addrs[1].port());
    /// # Ok::<(), tine::ServeError>(())
    /// ```
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addresses.iter().filter_map(|a| a.addr.tcp()).collect()
    }

    /// Every listener's address, TCP or Unix, in the order of
    /// [`local_addrs`](Server::local_addrs) (the one given to `bind`
    /// first), with the real port of a TCP address bound to port 0.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("tine-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let server = tine::App::new()
    ///     .listen(tine::Listen::unix(dir.join("app.sock")))
    ///     .bind("127.0.0.1:0")?;
    /// let addrs = server.listen_addrs();
    /// assert!(addrs[0].tcp().is_some());
    /// assert_eq!(addrs[1].path(), Some(dir.join("app.sock").as_path()));
    /// assert_eq!(server.local_addrs().len(), 1);
    /// # drop(server);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn listen_addrs(&self) -> Vec<ListenAddr> {
        self.addresses.iter().map(|a| a.addr.clone()).collect()
    }

    /// Serves until SIGINT or SIGTERM, then stops accepting, finishes
    /// in-flight requests (up to [`Limits::drain_timeout`](crate::Limits))
    /// and returns.
    ///
    /// With several workers the calling process becomes the master: it
    /// forks the workers, replaces any that die, and handles the signals
    /// listed in the README (`TERM`/`INT` graceful stop, `QUIT` immediate
    /// stop, `HUP` rolling restart, `TTIN`/`TTOU` one worker more or
    /// fewer). It refuses to fork if the process already runs other
    /// threads.
    pub fn run(self) -> Result<(), ServeError> {
        self.run_io().map_err(ServeError::from)
    }

    fn run_io(self) -> io::Result<()> {
        handler::install_panic_hook();
        let sockets: usize = self.addresses.iter().map(|a| a.sockets.len()).sum();
        nofile::raise(self.config.limits.max_connections, sockets);
        let Server {
            mut service,
            config,
            addresses,
            workers,
            _pid_file,
            workers_note,
            admin,
            predecessor,
            exec,
            early,
            socket_files,
            local_stop,
        } = self;
        let note = workers_note.map(|n| format!("; {n}")).unwrap_or_default();
        if workers <= 1 && predecessor.is_some() {
            // Serving the sockets alone, it could never tell the old master
            // it is ready, nor be upgraded itself: refuse, and the old
            // master serves on.
            return Err(io::Error::other(
                "tine: started by a binary upgrade (SIGUSR2) but configured \
                 with workers <= 1: a binary upgrade needs workers > 1",
            ));
        }
        let shown = (addresses.iter().zip(&config.listens))
            .map(|(a, listen)| match &a.addr {
                ListenAddr::Tcp(addr) if listen.is_tls() => format!("https://{addr}"),
                ListenAddr::Tcp(addr) => format!("http://{addr}"),
                unix => unix.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        if workers <= 1 {
            log::info!("listening on {shown} (single process{note})");
            if config.max_requests.is_some() || config.max_worker_memory.is_some() {
                log::warn!(
                    "max_requests and max_worker_memory need workers > 1 \
                     (a single process has nobody to replace it): ignored"
                );
            }
            let served = (|| {
                if let Some(c) = &config.credentials {
                    c.apply()
                        .map_err(|e| io::Error::other(format!("tine: {e}")))?;
                    log::info!("running as {}", c.name);
                }
                // The single process keeps its scoreboard entry too (its
                // counters and current request), though no master watches
                // it.
                if let Some(i) = scoreboard::board().and_then(|b| b.claim(0)) {
                    scoreboard::attach(i);
                }
                service.init_worker()?;
                let mut listeners = Vec::new();
                for (address, bound) in addresses.into_iter().enumerate() {
                    for socket in bound.sockets {
                        listeners.push((socket, address));
                    }
                }
                let active: Vec<usize> = (0..listeners.len()).collect();
                let Early::Single(signals) = early else {
                    unreachable!("bind takes the signals of a single process for workers <= 1")
                };
                let mut event_loop =
                    event_loop::EventLoop::new(service, config, listeners, &active, None, signals)?;
                event_loop.stop_on(&local_stop);
                notify::single_ready();
                event_loop.run()
            })();
            // However it ended (a failed start-up too), the socket files go.
            socket_files.iter().for_each(listener::SocketFile::remove);
            return served;
        }
        let sharing = addresses
            .iter()
            .map(|a| match a.mode {
                listener::Mode::ReusePort => "a reuseport listener each",
                listener::Mode::Shared => "one shared listener",
            })
            .collect::<Vec<_>>()
            .join(" / ");
        log::info!("listening on {shown} with {workers} workers ({sharing}{note})");
        if let Early::Master(held) = early {
            // The master's signal source takes them over (and keeps them
            // blocked once it stops, on every route).
            held.keep();
        }
        if let Some(c) = &config.credentials {
            log::info!("workers run as {}", c.name);
        }
        WORKER_COUNT.store(workers, Ordering::Relaxed);
        let mut master = master_config(&config, workers);
        master.pid_file = config.pid_file.clone();
        master.exec = exec;
        master.socket_files = socket_files;
        if master.exec.is_none() {
            log::warn!("cannot tell the path this process was started from: SIGUSR2 will fail");
        }
        let (admin_listener, mut admin_served) = match admin {
            Some((l, s)) => {
                crate::observe::keep_off_public();
                let settings = admin_config(&config, l.local_addr()?);
                (Some(l), Some((s, settings)))
            }
            None => (None, None),
        };
        let mut served = Some((service, config));
        let code = master::run_master(
            addresses,
            master,
            admin_listener,
            predecessor,
            &mut |start| {
                // In the forked process: what it will not serve is dropped
                // first, so the admin process does not keep the app's
                // resources open (a static root's descriptor, a database
                // the app opened before serving), nor a worker the admin
                // routes'.
                if start.admin {
                    drop(served.take());
                    worker_main(admin_served.take(), start)
                } else {
                    drop(admin_served.take());
                    worker_main(served.take(), start)
                }
            },
        )?;
        match code {
            0 => Ok(()),
            supervisor::BOOT_FAILURE_STATUS => Err(io::Error::other(
                "tine: no worker could start (each exited before it was ready; the log says \
                 why); giving up",
            )),
            _ => Err(io::Error::other(format!(
                "tine: master exited with status {code}"
            ))),
        }
    }
}

/// The addresses of a socket-activated server: each inherited socket is
/// one [`Mode::Shared`](listener::Mode::Shared) address (see `systemd.rs`).
/// When the socket unit passes as many sockets as the app configured
/// addresses, the app's per-listener settings apply to them in order
/// (the inherited socket's address replaces the configured one);
/// otherwise every inherited socket is served with default settings.
fn adopt_inherited(
    listens: &mut Vec<listener::Listen>,
    inherited: Vec<listener::Socket>,
) -> Vec<listener::Bound> {
    let addrs: Vec<Option<ListenAddr>> = inherited.iter().map(|l| l.local().ok()).collect();
    let shown: Vec<String> = addrs.iter().flatten().map(|a| a.to_string()).collect();
    let configured: Vec<String> = listens.iter().map(|l| l.at.to_string()).collect();
    log::info!(
        "socket activation: serving the {} inherited socket(s) ({}); the configured {} {} ignored",
        inherited.len(),
        shown.join(", "),
        configured.join(", "),
        if configured.len() == 1 { "is" } else { "are" }
    );
    if listens.len() != inherited.len() {
        log::warn!(
            "socket activation: {} socket(s) passed for {} configured address(es): \
             serving them with default listener settings",
            inherited.len(),
            listens.len()
        );
        *listens = addrs
            .iter()
            .map(|a| match a {
                Some(ListenAddr::Unix(p)) => listener::Listen::unix(p),
                Some(ListenAddr::Tcp(a)) => listener::Listen::tcp(*a),
                None => listener::Listen::tcp(listener::UNSPECIFIED),
            })
            .collect();
    }
    inherited
        .into_iter()
        .zip(listens.iter_mut())
        .zip(addrs)
        .map(|((socket, listen), addr)| {
            let addr = addr.unwrap_or_else(|| listen.at.clone());
            listen.at = addr.clone();
            listener::Bound {
                addr,
                mode: listener::Mode::Shared,
                sockets: vec![socket],
            }
        })
        .collect()
}

/// The addresses of a master started by a binary upgrade: the old
/// master's sockets, address by address, in their own modes. When there
/// are as many as the app configured, the app's per-listener settings
/// apply to them in order; otherwise they are served with default
/// settings (a warning says so).
fn adopt_upgrade(
    listens: &mut Vec<listener::Listen>,
    addresses: Vec<listener::Bound>,
) -> Vec<listener::Bound> {
    if listens.len() != addresses.len() {
        log::warn!(
            "binary upgrade: {} address(es) handed over for {} configured: \
             serving them with default listener settings",
            addresses.len(),
            listens.len()
        );
        *listens = addresses
            .iter()
            .map(|a| match &a.addr {
                ListenAddr::Tcp(addr) => listener::Listen::tcp(*addr),
                ListenAddr::Unix(path) => listener::Listen::unix(path),
            })
            .collect();
    }
    for (l, a) in listens.iter_mut().zip(&addresses) {
        l.at = a.addr.clone();
    }
    addresses
}

fn master_config(config: &ServerConfig, workers: usize) -> master::MasterConfig {
    master::MasterConfig {
        workers,
        graceful_timeout: config.graceful_timeout,
        backlog: listener::BACKLOG,
        max_worker_memory: config.max_worker_memory,
        worker_timeout: config.worker_timeout,
        shutdown_delay: config.shutdown_delay.unwrap_or(if config.health {
            SHUTDOWN_DELAY
        } else {
            Duration::ZERO
        }),
        upgrade_timeout: config.upgrade_timeout,
        relay_limit: config.relay_limit(),
        ..master::MasterConfig::default()
    }
}

/// The admin process's settings: the app's limits, none of its workers'
/// duties (no Redis, no recycling), and one plain TCP address, its own.
fn admin_config(config: &ServerConfig, addr: SocketAddr) -> ServerConfig {
    ServerConfig {
        redis_url: None,
        max_requests: None,
        listens: vec![listener::Listen::tcp(addr)],
        ..config.clone()
    }
}

/// The body of a forked worker: per-worker init, then the event loop.
fn worker_main(served: Option<(Service, ServerConfig)>, start: master::WorkerStart) -> i32 {
    let Some((mut service, config)) = served else {
        log::error!("worker started without an app");
        return 1;
    };
    WORKER_INDEX.store(start.index, Ordering::Relaxed);
    if let Some(entry) = start.board_entry {
        scoreboard::attach(entry);
    }
    sys::ignore_master_signals();
    if let Some(c) = &config.credentials {
        if let Err(e) = c.apply() {
            log::error!("worker {}: {e}", start.index);
            return 1;
        }
        if !sys::rearm_after_credentials(nix::unistd::Pid::from_raw(start.master_pid)) {
            return 1;
        }
    }
    log::debug!(
        "worker {} (pid {}) of master {} starting",
        start.index,
        std::process::id(),
        start.master_pid
    );
    if start.admin {
        log::debug!("admin process (pid {}) starting", std::process::id());
    } else if let Err(e) = service.init_worker() {
        log::error!("worker {}: {e}", start.index);
        return 1;
    }
    // Listen on a socket that was only bound (see `WorkerStart::listen`)
    // before the loop registers it: accept(2) on a socket that does not
    // listen fails with EINVAL, and epoll reports it as hung up.
    for &s in &start.listen {
        if let Some(socket) = start.listeners.get(s) {
            if let Err(e) = listener::listen(socket, start.backlog) {
                log::error!("worker {}: cannot listen on listener {s}: {e}", start.index);
                return 1;
            }
        }
    }
    let listeners = start.listeners.into_iter().zip(start.addresses).collect();
    // The master's signals are still blocked here (from the fork on): one
    // sent to this worker before its loop is up waits as pending.
    let result = event_loop::stop_signals(false)
        .and_then(|signals| {
            event_loop::EventLoop::new(
                service,
                config,
                listeners,
                &start.active,
                Some(start.control),
                signals,
            )
        })
        .and_then(|event_loop| {
            // Handlers exist now: let the signals the master blocked in.
            master::worker_signals_ready();
            event_loop.run()
        });
    match result {
        Ok(()) => 0,
        Err(e) => {
            log::error!("worker {}: {e}", start.index);
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_timeout_seconds() {
        assert_eq!(parse_seconds("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_seconds(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_seconds("0"), Some(Duration::ZERO));
        for bad in ["", "-1", "abc", "NaN", "inf", "1e300", "30s"] {
            assert_eq!(parse_seconds(bad), None, "{bad:?}");
        }
    }
}
