//! Listening sockets: binding them (socket2), and how the master lays
//! them out over its workers.
//!
//! A server listens on one or more addresses ([`Listen`]: the one given
//! to `App::bind`, then those added with `App::listen`). With workers, each
//! address is one of two [`Mode`]s (public as [`Balance`]):
//!
//! * [`Mode::ReusePort`]: one load-balancing reuseport socket per worker
//!   slot, all bound to the same address, so the kernel spreads
//!   connections over per-worker accept queues (`SO_REUSEPORT` on Linux,
//!   `SO_REUSEPORT_LB` on FreeBSD 12 and later). Closing such a socket
//!   resets every connection waiting in its queue, so the master binds
//!   them before forking and never closes one while it runs.
//! * [`Mode::Shared`]: one socket that every worker accepts on, for
//!   systems without a load-balancing `SO_REUSEPORT`: macOS has the option,
//!   but it does not spread connections over the sockets bound with it, so
//!   a shared queue is what balances there.
//!   Every worker waits on the one queue and whichever is free accepts,
//!   one connection per wake-up (on Linux registered level-triggered with
//!   `EPOLLEXCLUSIVE`, so a new connection wakes one or a few waiting
//!   workers: see the event loop's `accept.rs`).
//!
//! Which mode an address gets ([`workers_mode`]): the listener's
//! [`Balance`], else the app's, else the platform's:
//!
//! | platform | mode |
//! |---|---|
//! | Linux | [`Mode::ReusePort`] (`SO_REUSEPORT`) |
//! | FreeBSD 12+ (and other non-Apple systems) | [`Mode::ReusePort`] (`SO_REUSEPORT_LB` on FreeBSD, `SO_REUSEPORT` elsewhere) |
//! | macOS (and every Apple system) | [`Mode::Shared`] |
//!
//! `TINE_LISTENER=shared` (or `reuseport`) overrides every choice: a test
//! and diagnostic switch, so the shared mode is exercised on Linux too.
//!
//! Each worker knows, for every socket it holds, which address (index into
//! the server's listeners) it belongs to, so settings that differ per
//! listener are read at accept time.
//!
//! In single-process mode there is one plain socket ([`bind_single`]).
//!
//! Under socket activation (`systemd.rs`) nothing is bound: each socket a
//! socket unit passes is one [`Mode::Shared`] address, whatever the
//! platform.
//!
//! # Unix-domain sockets
//!
//! [`Listen::unix`] (`unix:/run/app.sock` on hello's command line) serves
//! a proxy on the same host, or a socket unit with `ListenStream=/path`.
//!
//! * **Always one shared socket.** `SO_REUSEPORT` does not balance
//!   `AF_UNIX` sockets (Linux hashes only TCP and UDP over a reuseport
//!   group; a second bind of the same path fails), so a Unix listener is
//!   one socket every worker accepts from: [`Mode::Shared`], with
//!   `EPOLLEXCLUSIVE` on Linux. [`Balance::ReusePort`] on a Unix listener
//!   is refused when binding (a clear error rather than a setting that
//!   silently does something else); `App::balance` and `TINE_LISTENER`
//!   do not apply to it.
//! * **The file's mode** is 0o666 by default ([`Listen::mode`]), what
//!   nginx sets and what gunicorn's default umask of 0 gives: who may
//!   connect is decided by the permissions of the directory the socket
//!   is in (`/run/app/`, owned by the app's user, mode 0750 with the
//!   proxy's group), or by a narrower mode. The mode is set on the socket
//!   before `bind` (Linux creates the file with it, so no client can
//!   connect in between through a wider one) and on the file after.
//! * **A file already at the path**: a socket file nobody listens on (a
//!   server that was killed left it) is removed and bound again; the test
//!   is a connection attempt, refused for a stale file. A live socket is
//!   an "address already in use" error, and any other kind of file an
//!   error too (never removed): both name the path.
//! * **Removal**: the master (or the single process) removes the file when
//!   it really stops, if it is still the file it bound, and so does a
//!   start-up that fails after binding it (another listener, the admin
//!   address, the pid file); not a master that hands the socket over to a
//!   new one in a binary upgrade (`SIGUSR2`: the new master removes it
//!   when it stops in turn), not a new master whose upgrade is abandoned
//!   while the old master still serves, never a worker, and never a
//!   socket inherited from a systemd socket unit (the unit owns the file:
//!   `RemoveOnStop=`), not even by a master a binary upgrade handed it to.
//! * **Relative paths** are made absolute against the working directory
//!   when the listener is made, so a binary upgrade or a later `chdir`
//!   finds the same file. The absolute path must fit the system's
//!   `sun_path` (107 bytes on Linux, 103 on macOS and FreeBSD): a longer
//!   one is an error naming it.
//! * **TLS** over a Unix socket is refused when binding (the proxy in
//!   front terminates TLS); the **PROXY protocol** works over it (nginx's
//!   `proxy_protocol on` to `unix:`, HAProxy's `send-proxy`).
//! * The accept-queue depth metric (`TCP_INFO`) is TCP's: Unix listeners
//!   are left out of it.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use socket2::{Domain, Protocol, Socket as Socket2, Type};

/// Backlog of each accept queue: room for bursts while a worker is busy
/// in a handler.
pub(crate) const BACKLOG: i32 = 1024;

/// One address the server listens on, and how it is served.
///
/// The address given to [`App::bind`](crate::App::bind) is the first
/// listener; [`App::listen`](crate::App::listen) adds more, served by the
/// same workers with the same routes: TCP ([`Listen::tcp`]), HTTPS
/// (`Listen::tls`, feature `tls`) or a Unix-domain socket
/// ([`Listen::unix`]); `"unix:/run/app.sock".parse()` and
/// `"127.0.0.1:8080".parse()` make one from text.
///
/// ```no_run
/// use tine::{App, Balance, Listen, Request};
/// let server = App::new()
///     .get("/", |_: &Request| "hi")
///     .workers(4)
///     // A second address whose workers share one accept queue.
///     .listen(Listen::tcp(([127, 0, 0, 1], 8081)).balance(Balance::Shared))
///     .bind("127.0.0.1:8080")?;
/// assert_eq!(server.local_addrs().len(), 2);
/// # Ok::<(), tine::ServeError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Listen {
    /// Where to listen.
    pub(crate) at: ListenAddr,
    /// A Unix socket file's permission bits.
    pub(crate) mode: u32,
    /// How workers share it (`None`: the app's [`Balance`], else the
    /// platform's).
    pub(crate) balance: Option<Balance>,
    /// Every connection starts with a PROXY protocol header (v1 or v2).
    pub(crate) proxy_protocol: bool,
    /// HTTPS: the TLS settings of this address.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::server::tls::TlsConfig>,
}

impl Listen {
    /// A TCP address (`"0.0.0.0:8080".parse()?`, `([127, 0, 0, 1], 8080)`,
    /// port 0 for any free port).
    ///
    /// ```
    /// let l = tine::Listen::tcp(([127, 0, 0, 1], 0));
    /// # let _ = l;
    /// ```
    pub fn tcp(addr: impl Into<SocketAddr>) -> Listen {
        Listen::at(ListenAddr::Tcp(addr.into()))
    }

    fn at(at: ListenAddr) -> Listen {
        Listen {
            at,
            mode: UNIX_MODE,
            balance: None,
            proxy_protocol: false,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// An HTTPS (and WSS) address: TLS with `config`, then the same routes
    /// as every other address (feature `tls`).
    ///
    /// ```no_run
    /// use tine::{App, Listen, Request, TlsConfig};
    /// let tls = TlsConfig::from_pem_files("cert.pem", "key.pem")?;
    /// App::new()
    ///     .get("/", |_: &Request| "hi")
    ///     .listen(Listen::tls(([0, 0, 0, 0], 8443), tls))
    ///     .serve("0.0.0.0:8080")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(addr: impl Into<SocketAddr>, config: crate::server::tls::TlsConfig) -> Listen {
        Listen {
            tls: Some(config),
            ..Listen::tcp(addr)
        }
    }

    /// Whether this address serves HTTPS.
    ///
    /// ```
    /// assert!(!tine::Listen::tcp(([127, 0, 0, 1], 0)).is_tls());
    /// ```
    pub fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// How the workers share this address (overrides
    /// [`App::balance`](crate::App::balance) for it). A Unix listener is
    /// always shared ([`Balance::Shared`]): [`Balance::ReusePort`] on one
    /// is refused when binding, since the kernel does not balance Unix
    /// sockets over `SO_REUSEPORT`.
    ///
    /// ```
    /// use tine::{Balance, Listen};
    /// let l = Listen::tcp(([127, 0, 0, 1], 0)).balance(Balance::Shared);
    /// # let _ = l;
    /// ```
    pub fn balance(mut self, balance: Balance) -> Listen {
        self.balance = Some(balance);
        self
    }

    /// Expects every connection on this address to start with a PROXY
    /// protocol header, version 1 (text) or 2 (binary), as sent by HAProxy
    /// (`send-proxy`, `send-proxy-v2`), AWS NLB or other TCP load
    /// balancers: the header's source address becomes the connection's
    /// peer ([`Request::peer_addr`](crate::Request::peer_addr), and so
    /// the client address, the per-address connection limit aside, which
    /// counts the balancer's own address). Never guessed: a listener
    /// without it treats such a header as a bad request, and a connection
    /// to one with it that starts without a valid header is answered 400
    /// and closed. A `LOCAL` (v2) or `UNKNOWN` (v1) header, a balancer's
    /// health check, keeps the socket's address. Not with TLS on the same
    /// listener (binding refuses it: the header would come before the
    /// handshake).
    ///
    /// ```
    /// let l = tine::Listen::tcp(([127, 0, 0, 1], 0)).proxy_protocol(true);
    /// # let _ = l;
    /// ```
    pub fn proxy_protocol(mut self, on: bool) -> Listen {
        self.proxy_protocol = on;
        self
    }

    /// The TCP address to listen on; for a Unix listener, the unspecified
    /// address `0.0.0.0:0` (see [`listen_addr`](Listen::listen_addr)).
    ///
    /// ```
    /// let l = tine::Listen::tcp(([127, 0, 0, 1], 8080));
    /// assert_eq!(l.addr().port(), 8080);
    /// ```
    pub fn addr(&self) -> SocketAddr {
        match &self.at {
            ListenAddr::Tcp(a) => *a,
            ListenAddr::Unix(_) => UNSPECIFIED,
        }
    }

    /// Where this listener listens: a TCP address or a Unix socket path.
    ///
    /// ```
    /// let l: tine::Listen = "unix:/run/app.sock".parse()?;
    /// assert_eq!(l.listen_addr().to_string(), "unix:/run/app.sock");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn listen_addr(&self) -> &ListenAddr {
        &self.at
    }

    /// A Unix-domain stream socket at `path`, for a proxy on the same host
    /// (nginx's `proxy_pass http://unix:/run/app.sock;`) or a socket unit
    /// with `ListenStream=/run/app.sock`. A relative path is made absolute
    /// against the working directory now. Every worker accepts from the
    /// one socket (`SO_REUSEPORT` does not balance Unix sockets); a stale
    /// socket file nobody listens on is replaced when binding, any other
    /// file at the path is an error, and the file is removed when the
    /// server stops (not when a binary upgrade hands it over). See the
    /// README's listener section.
    ///
    /// ```no_run
    /// use tine::{App, Listen, Request};
    /// App::new()
    ///     .get("/", |_: &Request| "hi")
    ///     .workers(2)
    ///     .listen(Listen::unix("/run/app/app.sock").mode(0o660))
    ///     .bind_listeners()?
    ///     .run()?;
    /// # Ok::<(), tine::ServeError>(())
    /// ```
    pub fn unix(path: impl AsRef<Path>) -> Listen {
        let path = path.as_ref();
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Listen::at(ListenAddr::Unix(path))
    }

    /// The permission bits of a Unix listener's socket file (default
    /// `0o666`, like nginx: limit access with the directory's permissions,
    /// or here, e.g. `0o660` for the user and group). Connecting needs
    /// write permission. Ignored for TCP.
    ///
    /// ```
    /// let l = tine::Listen::unix("/run/app/app.sock").mode(0o660);
    /// # let _ = l;
    /// ```
    pub fn mode(mut self, mode: u32) -> Listen {
        self.mode = mode & 0o777;
        self
    }
}

/// `"127.0.0.1:8080"`, `"[::1]:0"` (TCP) or `"unix:/run/app.sock"` (a
/// Unix socket; a relative path like `unix:app.sock` is made absolute).
/// Errors say what was expected.
///
/// ```
/// let tcp: tine::Listen = "127.0.0.1:8080".parse()?;
/// assert_eq!(tcp.addr().port(), 8080);
/// let unix: tine::Listen = "unix:/tmp/app.sock".parse()?;
/// assert!(unix.listen_addr().is_unix());
/// assert!("unix:".parse::<tine::Listen>().is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
impl std::str::FromStr for Listen {
    type Err = io::Error;

    fn from_str(s: &str) -> io::Result<Listen> {
        let bad = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("unix: needs a path (unix:/run/app.sock)".into()));
            }
            let listen = Listen::unix(path);
            if let ListenAddr::Unix(p) = &listen.at {
                check_unix_path(p)?;
            }
            return Ok(listen);
        }
        s.parse::<SocketAddr>().map(Listen::tcp).map_err(|_| {
            bad(format!(
                "{s:?} is neither an IP address with a port (127.0.0.1:8080, [::1]:8080) \
                 nor unix:PATH"
            ))
        })
    }
}

/// Where a listener listens: a TCP address, or the path of a Unix-domain
/// socket. Displayed as `127.0.0.1:8080` or `unix:/run/app.sock` (nginx's
/// spelling).
///
/// ```
/// let server = tine::App::new()
///     .listen(tine::Listen::tcp(([127, 0, 0, 1], 0)))
///     .bind_listeners()?;
/// let addrs = server.listen_addrs();
/// assert!(addrs[0].tcp().is_some() && !addrs[0].is_unix());
/// # Ok::<(), tine::ServeError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ListenAddr {
    /// A TCP address (with the real port once bound).
    Tcp(SocketAddr),
    /// A Unix-domain socket's path (absolute).
    Unix(PathBuf),
}

impl ListenAddr {
    /// The TCP address, if this is one.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            ListenAddr::Tcp(a) => Some(*a),
            ListenAddr::Unix(_) => None,
        }
    }

    /// The socket file's path, if this is a Unix socket.
    pub fn path(&self) -> Option<&Path> {
        match self {
            ListenAddr::Tcp(_) => None,
            ListenAddr::Unix(p) => Some(p),
        }
    }

    /// Whether this is a Unix-domain socket.
    pub fn is_unix(&self) -> bool {
        matches!(self, ListenAddr::Unix(_))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => a.fmt(f),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl From<SocketAddr> for ListenAddr {
    fn from(a: SocketAddr) -> ListenAddr {
        ListenAddr::Tcp(a)
    }
}

/// `0.0.0.0:0`: [`Listen::addr`] of a Unix listener, and the peer address
/// of a connection accepted on one (it has no IP; see
/// `Request::is_unix_peer`).
pub(crate) const UNSPECIFIED: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

/// The default mode of a Unix socket file (nginx's).
pub(crate) const UNIX_MODE: u32 = 0o666;

/// The longest path a `sockaddr_un` holds, its terminating NUL excluded.
#[cfg(any(target_os = "linux", target_os = "android"))]
const SUN_PATH_MAX: usize = 107;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SUN_PATH_MAX: usize = 103;

/// Whether `path` can name a Unix socket: not empty, without NUL, short
/// enough for `sun_path`.
pub(crate) fn check_unix_path(path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    let bad = |why: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("tine: cannot bind unix:{}: {why}", path.display()),
        )
    };
    if bytes.is_empty() {
        return Err(bad("the path is empty".into()));
    }
    if bytes.contains(&0) {
        return Err(bad("the path holds a NUL byte".into()));
    }
    if bytes.len() > SUN_PATH_MAX {
        return Err(bad(format!(
            "the path is {} bytes long; a Unix socket's path holds at most {SUN_PATH_MAX} \
             on this system (choose a shorter one, e.g. under /run)",
            bytes.len()
        )));
    }
    Ok(())
}

/// How several worker processes share the connections of one address.
///
/// | | `ReusePort` | `Shared` |
/// |---|---|---|
/// | sockets | one per worker (`SO_REUSEPORT`) | one, for every worker |
/// | who takes a new connection | the kernel hashes it to a worker's queue | whichever worker is waiting |
/// | a worker busy in a slow handler | its queue waits for it | it is not waiting, so others take the connection |
/// | accepting | a woken worker drains its own queue | one connection per wake-up; on Linux `EPOLLEXCLUSIVE` wakes one (or a few) of the waiting workers, in turn |
/// | keep-alive connections | stay with the worker that accepted them | the same |
/// | default on | Linux, FreeBSD | macOS (no balancing `SO_REUSEPORT`); socket activation; always for a Unix socket |
///
/// `ReusePort` spreads load evenly with no contention between workers;
/// `Shared` keeps a fast request on a *new* connection from queueing behind
/// a blocked worker: choose it when some handlers block (a slow query, a
/// call to another service) and clients open connections often. Requests
/// on a kept-alive connection wait for their worker in both modes; for
/// those, keep slow work short or off the request path, run more workers,
/// or have the client (or proxy) use short keep-alive for slow endpoints.
/// `docs/benchmarks.md` has the measurements.
/// `TINE_LISTENER=shared|reuseport` overrides every address's choice at
/// start-up (a test and diagnostic switch).
///
/// ```
/// let app = tine::App::new().balance(tine::Balance::Shared);
/// # let _ = app;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Balance {
    /// One `SO_REUSEPORT` socket per worker: the kernel balances.
    ReusePort,
    /// One socket every worker accepts on: the free worker takes it.
    Shared,
}

impl From<Balance> for Mode {
    fn from(b: Balance) -> Mode {
        match b {
            Balance::ReusePort => Mode::ReusePort,
            Balance::Shared => Mode::Shared,
        }
    }
}

/// How the workers share one address's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// One `SO_REUSEPORT` socket per worker slot.
    ReusePort,
    /// One socket accepted on by every worker.
    Shared,
}

/// The environment variable that overrides [`workers_mode`]'s platform
/// default: `shared` or `reuseport` (a test and diagnostic switch).
pub(crate) const MODE_VAR: &str = "TINE_LISTENER";

/// The mode of an address served by several workers: `chosen` (the
/// listener's or the app's [`Balance`]) or the platform's (see the module
/// docs), unless [`MODE_VAR`] says otherwise. An unknown value is an error
/// naming the variable.
pub(crate) fn workers_mode(chosen: Option<Balance>) -> io::Result<Mode> {
    match std::env::var(MODE_VAR) {
        Err(_) => Ok(chosen.map_or_else(platform_mode, Mode::from)),
        Ok(v) => parse_mode(&v).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("tine: {MODE_VAR} must be \"shared\" or \"reuseport\", not {v:?}"),
            )
        }),
    }
}

/// The platform's mode for several workers on one address.
pub(crate) fn platform_mode() -> Mode {
    if cfg!(target_vendor = "apple") {
        Mode::Shared
    } else {
        Mode::ReusePort
    }
}

fn parse_mode(v: &str) -> Option<Mode> {
    match v.trim() {
        "shared" => Some(Mode::Shared),
        "reuseport" => Some(Mode::ReusePort),
        _ => None,
    }
}

/// Binds `addr` for `workers` worker slots in `mode`: a reuseport group of
/// `workers` sockets ([`bind_reuseport_group`]), or one shared socket. A
/// shared socket is a plain one ([`bind_single`]), so another server on the
/// address is refused, unless `join_existing`: then it is one reuseport
/// socket joining the group already there.
pub(crate) fn bind_workers(
    addr: SocketAddr,
    mode: Mode,
    workers: usize,
    backlog: i32,
    join_existing: bool,
) -> io::Result<Bound> {
    let sockets = match mode {
        Mode::ReusePort => bind_reuseport_group(addr, workers, backlog, join_existing)?,
        Mode::Shared if join_existing => bind_reuseport_group(addr, 1, backlog, true)?,
        Mode::Shared => vec![bind_single(addr, backlog)?],
    };
    Ok(Bound {
        addr: ListenAddr::Tcp(sockets[0].local_addr()?),
        mode,
        sockets: sockets.into_iter().map(Socket::Tcp).collect(),
    })
}

/// Binds the address of `listen`: TCP in `mode` for `workers` slots (see
/// [`bind_workers`]; one shared socket when `workers` is 1: a plain one,
/// or with `join_existing` one that joins the reuseport group already
/// there), or a Unix socket, always shared. A Unix listener that asks for
/// [`Balance::ReusePort`], or TLS, is refused here.
pub(crate) fn bind_listen(
    listen: &Listen,
    default: Option<Balance>,
    workers: usize,
    join_existing: bool,
) -> io::Result<Bound> {
    match &listen.at {
        ListenAddr::Tcp(addr) if workers > 1 => {
            let mode = workers_mode(listen.balance.or(default))?;
            bind_workers(*addr, mode, workers, BACKLOG, join_existing)
        }
        ListenAddr::Tcp(addr) => bind_workers(*addr, Mode::Shared, 1, BACKLOG, join_existing),
        ListenAddr::Unix(path) => {
            check_unix_listen(listen)?;
            let socket = bind_unix(path, listen.mode, BACKLOG)?;
            Ok(Bound {
                addr: listen.at.clone(),
                mode: Mode::Shared,
                sockets: vec![Socket::Unix(socket)],
            })
        }
    }
}

/// What a Unix listener cannot have: a `SO_REUSEPORT` group (the kernel
/// does not balance Unix sockets over one: asking for it is a mistake to
/// point out, not to work around silently) and TLS (not supported over a
/// Unix socket: the proxy in front terminates it).
fn check_unix_listen(listen: &Listen) -> io::Result<()> {
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("tine: the listener on {}: {why}", listen.at),
        )
    };
    if listen.balance == Some(Balance::ReusePort) {
        return Err(bad(
            "Balance::ReusePort does not apply to a Unix socket (the kernel does not \
             balance them over SO_REUSEPORT); every worker accepts from its one socket",
        ));
    }
    if listen.is_tls() {
        return Err(bad(
            "TLS over a Unix socket is not supported (terminate TLS in the proxy in front)",
        ));
    }
    Ok(())
}

/// Binds a listening Unix stream socket at `path` with file mode `mode`
/// (non-blocking, close-on-exec), first removing a stale socket file
/// there (see the module docs). Errors are one line naming the path.
pub(crate) fn bind_unix(path: &Path, mode: u32, backlog: i32) -> io::Result<UnixListener> {
    check_unix_path(path)?;
    let named = |e: io::Error| unix_error(path, e);
    clear_stale(path)?;
    let socket = Socket2::new(Domain::UNIX, Type::STREAM, None).map_err(named)?;
    // On Linux the file `bind` creates takes the socket's own mode (less
    // the umask): set first, no client ever sees a wider one. Elsewhere
    // this may be refused or ignored; the `chmod` below decides.
    let _ = rustix::fs::fchmod(&socket, rustix::fs::Mode::from_raw_mode(mode as _));
    let addr = socket2::SockAddr::unix(path).map_err(named)?;
    socket.bind(&addr).map_err(named)?;
    let ready = || -> io::Result<()> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
        // `chmod` follows a symbolic link: one put in the socket's place
        // (in a directory others may write) must not get the mode. Where
        // `bind` already gave the mode (Linux, with a umask that kept it)
        // there is no `chmod` at all; otherwise what is there is checked
        // first, which leaves only a narrow window.
        let meta = std::fs::symlink_metadata(path)?;
        if !meta.file_type().is_socket() {
            return Err(io::Error::other("the socket file was replaced"));
        }
        if meta.mode() & 0o7777 != mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
        socket.listen(backlog)?;
        socket.set_nonblocking(true)?;
        rustix::io::fcntl_setfd(&socket, rustix::io::FdFlags::CLOEXEC)?;
        Ok(())
    };
    if let Err(e) = ready() {
        let _ = std::fs::remove_file(path);
        return Err(named(e));
    }
    Ok(UnixListener::from(OwnedFd::from(socket)))
}

/// Removes a socket file at `path` that nobody listens on; `Ok` if there
/// is nothing at `path` afterwards. A live socket, or a file of another
/// kind, is an error naming the path (and stays).
fn clear_stale(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(unix_error(path, e)),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "tine: cannot bind unix:{}: a file that is not a socket is in the way \
                 (not removed)",
                path.display()
            ),
        ));
    }
    // A non-blocking connection attempt: refused means nobody listens
    // (the file outlived its server); accepted, or "try again" (a full
    // queue), means a live server.
    let probe = Socket2::new(Domain::UNIX, Type::STREAM, None).map_err(|e| unix_error(path, e))?;
    probe
        .set_nonblocking(true)
        .map_err(|e| unix_error(path, e))?;
    let addr = socket2::SockAddr::unix(path).map_err(|e| unix_error(path, e))?;
    match probe.connect(&addr) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            log::info!("removing the stale socket file {}", path.display());
            match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(unix_error(path, e)),
            }
        }
        // Removed between the two looks: free now.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Ok(()) => Err(unix_error(path, io::ErrorKind::AddrInUse.into())),
        Err(e)
            if e.kind() == io::ErrorKind::WouldBlock
                || e.raw_os_error() == Some(rustix::io::Errno::INPROGRESS.raw_os_error()) =>
        {
            Err(unix_error(path, io::ErrorKind::AddrInUse.into()))
        }
        Err(e) => Err(unix_error(path, e)),
    }
}

/// The one-line error naming a Unix socket's path.
fn unix_error(path: &Path, e: io::Error) -> io::Error {
    let why = match e.kind() {
        io::ErrorKind::AddrInUse => "address already in use (a server listens on it)".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string(),
    };
    io::Error::new(
        e.kind(),
        format!("tine: cannot bind unix:{}: {why}", path.display()),
    )
}

/// The identity of the file a Unix listener bound (device and inode), so
/// that only that file is removed at the end: one replaced meanwhile by
/// someone else stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SocketFile {
    pub(crate) path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    /// The file at `path` now, if it is a socket.
    pub(crate) fn at(path: &Path) -> Option<SocketFile> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let m = std::fs::symlink_metadata(path).ok()?;
        m.file_type().is_socket().then(|| SocketFile {
            path: path.to_path_buf(),
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    /// Removes the file if it is still the one recorded.
    pub(crate) fn remove(&self) {
        if SocketFile::at(&self.path).as_ref() != Some(self) {
            log::debug!(
                "{} is no longer the socket file this server bound: not removed",
                self.path.display()
            );
            return;
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => log::debug!("removed the socket file {}", self.path.display()),
            Err(e) => log::warn!("cannot remove {}: {e}", self.path.display()),
        }
    }
}

/// The socket files a start-up bound so far: removed when dropped, so
/// that a start-up failing after binding (on any early return) leaves no
/// stale file; [`kept`](BoundFiles::kept) once the start-up succeeded as a
/// whole, and the files stay until the server stops.
///
/// Only for files this process bound itself: sockets inherited from an
/// old master or a socket unit are still someone else's while it starts.
#[derive(Debug, Default)]
pub(crate) struct BoundFiles(Vec<SocketFile>);

impl BoundFiles {
    /// Adds a file just bound.
    pub(crate) fn push(&mut self, file: SocketFile) {
        self.0.push(file);
    }

    /// The files, no longer removed on drop.
    pub(crate) fn kept(mut self) -> Vec<SocketFile> {
        std::mem::take(&mut self.0)
    }
}

impl Drop for BoundFiles {
    fn drop(&mut self) {
        self.0.iter().for_each(SocketFile::remove);
    }
}

/// A listening socket the master holds and hands to its workers: TCP or
/// Unix. The master only listens on it, lends it and passes it on; the
/// workers accept from it.
#[derive(Debug)]
pub(crate) enum Socket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Socket {
    /// Takes over an inherited listening socket (a binary upgrade's, a
    /// socket unit's), by its address family: IPv4 or IPv6 is TCP, else
    /// it must be a Unix socket.
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<Socket> {
        let local = socket2::SockRef::from(&fd).local_addr()?;
        if local.as_socket().is_some() {
            Ok(Socket::Tcp(TcpListener::from(fd)))
        } else if local.is_unix() {
            Ok(Socket::Unix(UnixListener::from(fd)))
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "neither a TCP nor a Unix socket",
            ))
        }
    }

    /// Where it listens. A Unix socket without a path (unnamed, or in
    /// Linux's abstract namespace) is an error.
    pub(crate) fn local(&self) -> io::Result<ListenAddr> {
        match self {
            Socket::Tcp(l) => l.local_addr().map(ListenAddr::Tcp),
            Socket::Unix(l) => l
                .local_addr()?
                .as_pathname()
                .map(|p| ListenAddr::Unix(p.to_path_buf()))
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a Unix socket without a path (tine serves Unix sockets with a path)",
                    )
                }),
        }
    }

    /// The TCP listener, for what only TCP has (the queue-depth metric).
    pub(crate) fn as_tcp(&self) -> Option<&TcpListener> {
        match self {
            Socket::Tcp(l) => Some(l),
            Socket::Unix(_) => None,
        }
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Socket::Tcp(l) => l.as_fd(),
            Socket::Unix(l) => l.as_fd(),
        }
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// One address the master serves, with its bound sockets: for
/// [`Mode::ReusePort`] at least one (slot `i` accepts on socket `j` for
/// every `j % workers == i`), for [`Mode::Shared`] exactly one.
#[derive(Debug)]
pub(crate) struct Bound {
    /// The address actually bound (the real port when asked for port 0).
    pub addr: ListenAddr,
    /// How the workers share it.
    pub mode: Mode,
    /// Its listening sockets.
    pub sockets: Vec<Socket>,
}

/// Binds one listener without `SO_REUSEPORT` (`SO_REUSEADDR`, non-blocking,
/// close-on-exec, `listen(backlog)`), for single-process mode or a
/// [`Mode::Shared`] address. Errors name the address in one line, as
/// [`bind_reuseport_group`] does.
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
/// and `SO_REUSEPORT` (`SO_REUSEPORT_LB` on FreeBSD), non-blocking,
/// close-on-exec, `listen(backlog)`.
///
/// Unless `join_existing`, the address is first probed with a socket
/// *without* `SO_REUSEPORT` (see [`probe`]), so that a port already served
/// by another process is refused. Errors are one line naming the address,
/// e.g. `tine: cannot bind 127.0.0.1:8080: address already in use`.
///
/// With port 0 the first listener picks the port and the others bind the
/// same one.
pub(crate) fn bind_reuseport_group(
    addr: SocketAddr,
    n: usize,
    backlog: i32,
    join_existing: bool,
) -> io::Result<Vec<TcpListener>> {
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "tine: bind_reuseport_group needs at least one listener",
        ));
    }
    let _probed = match !join_existing && addr.port() != 0 {
        true => Some(probe(addr).map_err(|e| bind_error(addr, e))?),
        false => None,
    };
    #[cfg(test)]
    std::thread::sleep(std::time::Duration::from_millis(
        tests::PAUSE_AFTER_PROBE_MS.load(std::sync::atomic::Ordering::Relaxed),
    ));
    let first = bind_reuseport(addr, backlog).map_err(|e| bind_error(addr, e))?;
    let actual = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..n {
        listeners.push(bind_reuseport(actual, backlog).map_err(|e| bind_error(actual, e))?);
    }
    Ok(listeners)
}

fn new_socket(addr: SocketAddr) -> io::Result<Socket2> {
    // socket2 creates sockets with SOCK_CLOEXEC on Linux.
    let socket = Socket2::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    Ok(socket)
}

/// `SO_REUSEPORT` lets any process of the same user bind the same address
/// and silently take a share of its connections, so a second instance
/// started by mistake would not fail: it would steal traffic. A bind
/// *without* `SO_REUSEPORT` fails if anyone listens on `addr`, which is
/// the check.
///
/// The check and the binds after it are not one step: two instances
/// started at the same moment could both find the address free, then
/// both join the group (an operator's hunt saw it in 3 starts of 40). So
/// the check takes the address's [`StartLock`] first, and the caller
/// holds it until its own group is bound: the other instance waits for
/// it, then finds the address taken.
pub(crate) fn probe(addr: SocketAddr) -> io::Result<StartLock> {
    let lock = StartLock::take(addr);
    let socket = new_socket(addr)?;
    socket.bind(&addr.into())?;
    Ok(lock)
}

/// Held by a process between [`probe`] and the bind of its reuseport
/// group on an address, so that no other tine starting on the same
/// address probes meanwhile: on Linux, a Unix socket in the abstract
/// namespace named after the address (it belongs to the network
/// namespace, as the address does; nothing is left on disk, and the
/// kernel releases it when the process dies). Elsewhere there is none,
/// and the race stays (a lock file would be left behind).
pub(crate) struct StartLock {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    _held: Option<std::os::unix::net::UnixDatagram>,
}

impl StartLock {
    /// Waits until no other process holds `addr`'s lock (5 s at most:
    /// a name squatted by someone else only slows the start), then takes
    /// it.
    fn take(addr: SocketAddr) -> StartLock {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                match Self::try_take(addr) {
                    Ok(lock) => return lock,
                    Err(e)
                        if e.kind() == io::ErrorKind::AddrInUse
                            && std::time::Instant::now() < give_up =>
                    {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(e) => {
                        log::debug!("start lock for {addr}: {e}; probing without it");
                        return StartLock { _held: None };
                    }
                }
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let _ = addr;
            StartLock {}
        }
    }

    /// Takes `addr`'s lock, or fails with `AddrInUse` while another
    /// process (or this one) holds it.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn try_take(addr: SocketAddr) -> io::Result<StartLock> {
        #[cfg(target_os = "android")]
        use std::os::android::net::SocketAddrExt;
        #[cfg(target_os = "linux")]
        use std::os::linux::net::SocketAddrExt;
        let name = format!("tine/start/{addr}");
        let name = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        let socket = std::os::unix::net::UnixDatagram::bind_addr(&name)?;
        Ok(StartLock {
            _held: Some(socket),
        })
    }
}

/// One more listening member of the `SO_REUSEPORT` group on `addr`.
pub(crate) fn bind_reuseport(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let listener = bind_reuseport_unlistened(addr)?;
    listen(&listener, backlog)?;
    Ok(listener)
}

/// A `SO_REUSEPORT` socket bound to `addr` but not listening yet: the
/// kernel queues no connection for it until [`listen`] is called, so a
/// scale-up whose fork fails leaves no accept queue behind (closing a
/// reuseport listener instead would reset the connections queued on it).
pub(crate) fn bind_reuseport_unlistened(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = new_socket(addr)?;
    set_reuse_port(&socket)?;
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Joins `socket` to the address's load-balancing reuseport group:
/// FreeBSD's `SO_REUSEPORT` only lets sockets share an address, without
/// spreading connections over them; its `SO_REUSEPORT_LB` (FreeBSD 12+)
/// balances like Linux's `SO_REUSEPORT`.
fn set_reuse_port(socket: &Socket2) -> io::Result<()> {
    #[cfg(target_os = "freebsd")]
    return socket.set_reuse_port_lb(true);
    #[cfg(not(target_os = "freebsd"))]
    socket.set_reuse_port(true)
}

/// Whether `socket` is a member of a reuseport group (see
/// [`set_reuse_port`]).
#[cfg(test)]
fn is_reuse_port(socket: &socket2::SockRef<'_>) -> bool {
    #[cfg(target_os = "freebsd")]
    return socket.reuse_port_lb().unwrap();
    #[cfg(not(target_os = "freebsd"))]
    socket.reuse_port().unwrap()
}

/// `listen(2)` on a bound socket (again on a listening one only updates
/// its backlog).
pub(crate) fn listen(listener: &impl AsFd, backlog: i32) -> io::Result<()> {
    socket2::SockRef::from(listener).listen(backlog)
}

/// The one-line error naming the address.
pub(crate) fn bind_error(addr: SocketAddr, e: io::Error) -> io::Error {
    let why = match e.kind() {
        io::ErrorKind::AddrInUse => "address already in use".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        io::ErrorKind::AddrNotAvailable => "address not available".to_owned(),
        _ => e.to_string(),
    };
    io::Error::new(e.kind(), format!("tine: cannot bind {addr}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    /// A pause between the probe and the group's bind, to make the window
    /// between them as wide as a busy machine makes it for processes.
    pub(super) static PAUSE_AFTER_PROBE_MS: std::sync::atomic::AtomicU64 =
        std::sync::atomic::AtomicU64::new(0);

    #[test]
    fn port_zero_binds_n_listeners_on_one_port() {
        let ls = bind_reuseport_group(any(), 3, BACKLOG, false).unwrap();
        assert_eq!(ls.len(), 3);
        let port = ls[0].local_addr().unwrap().port();
        assert_ne!(port, 0);
        for l in &ls {
            assert_eq!(l.local_addr().unwrap().port(), port);
            // Non-blocking: nothing queued means WouldBlock, not a hang.
            assert_eq!(l.accept().unwrap_err().kind(), io::ErrorKind::WouldBlock);
            let sock = socket2::SockRef::from(l);
            assert!(is_reuse_port(&sock));
            assert!(sock.reuse_address().unwrap());
        }
    }

    #[test]
    fn an_address_already_served_is_refused_unless_joining() {
        let first = bind_reuseport_group(any(), 2, BACKLOG, false).unwrap();
        let addr = first[0].local_addr().unwrap();
        // Another reuseport group of the same user would bind silently
        // without the probe; with it, the bind fails naming the address.
        let err = bind_reuseport_group(addr, 2, BACKLOG, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(
            err.to_string(),
            format!("tine: cannot bind {addr}: address already in use")
        );
        let joined = bind_reuseport_group(addr, 1, BACKLOG, true).unwrap();
        assert_eq!(joined[0].local_addr().unwrap(), addr);
        let err = bind_single(addr, 16).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("tine: cannot bind {addr}: address already in use")
        );
        assert_eq!(err.to_string().lines().count(), 1);
    }

    /// Two instances starting on one address at the same moment: exactly
    /// one gets it, every time (without the start lock both could find
    /// it free, then both join the group).
    #[test]
    fn of_two_simultaneous_starts_on_an_address_one_is_refused() {
        PAUSE_AFTER_PROBE_MS.store(20, std::sync::atomic::Ordering::Relaxed);
        for _ in 0..10 {
            let addr = std::net::TcpListener::bind(any())
                .unwrap()
                .local_addr()
                .unwrap();
            let start = std::sync::Arc::new(std::sync::Barrier::new(2));
            let starts: Vec<_> = (0..2)
                .map(|_| {
                    let start = start.clone();
                    std::thread::spawn(move || {
                        start.wait();
                        bind_reuseport_group(addr, 2, BACKLOG, false)
                    })
                })
                .collect();
            let results: Vec<_> = starts.into_iter().map(|t| t.join().unwrap()).collect();
            let won = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(won, 1, "{addr}: {results:?}");
            let lost = results.iter().find_map(|r| r.as_ref().err()).unwrap();
            assert_eq!(lost.kind(), io::ErrorKind::AddrInUse);
        }
        PAUSE_AFTER_PROBE_MS.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    #[test]
    fn bind_single_is_not_reuseport() {
        let l = bind_single(any(), 16).unwrap();
        let sock = socket2::SockRef::from(&l);
        assert!(!is_reuse_port(&sock));
        assert_eq!(l.accept().unwrap_err().kind(), io::ErrorKind::WouldBlock);
        // And nobody can join it.
        let addr = l.local_addr().unwrap();
        let err = bind_reuseport_group(addr, 1, BACKLOG, true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn the_mode_is_the_platforms_unless_overridden() {
        let want = if cfg!(target_vendor = "apple") {
            Mode::Shared
        } else {
            Mode::ReusePort
        };
        assert_eq!(platform_mode(), want);
        assert_eq!(parse_mode("shared"), Some(Mode::Shared));
        assert_eq!(parse_mode(" reuseport\n"), Some(Mode::ReusePort));
        assert_eq!(parse_mode("REUSEPORT"), None);
        assert_eq!(parse_mode(""), None);
    }

    #[test]
    fn shared_mode_binds_one_plain_socket_for_every_worker() {
        let bound = bind_workers(any(), Mode::Shared, 4, BACKLOG, false).unwrap();
        assert_eq!(bound.mode, Mode::Shared);
        assert_eq!(bound.sockets.len(), 1);
        assert_eq!(bound.sockets[0].local().unwrap(), bound.addr);
        assert!(!is_reuse_port(&socket2::SockRef::from(&bound.sockets[0])));
        let addr = bound.addr.tcp().unwrap();
        // A second server is refused, in either mode.
        for mode in [Mode::Shared, Mode::ReusePort] {
            let err = bind_workers(addr, mode, 2, BACKLOG, false).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{mode:?}");
        }
        let group = bind_workers(any(), Mode::ReusePort, 3, BACKLOG, false).unwrap();
        assert_eq!((group.mode, group.sockets.len()), (Mode::ReusePort, 3));
    }

    #[test]
    fn a_shared_socket_joins_an_existing_group_only_when_asked() {
        let group = bind_workers(any(), Mode::ReusePort, 2, BACKLOG, false).unwrap();
        let addr = group.addr.tcp().unwrap();
        let err = bind_workers(addr, Mode::Shared, 2, BACKLOG, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let joined = bind_workers(addr, Mode::Shared, 2, BACKLOG, true).unwrap();
        assert_eq!(joined.sockets.len(), 1);
        assert_eq!(joined.addr, group.addr);
        assert!(is_reuse_port(&socket2::SockRef::from(&joined.sockets[0])));
    }

    #[test]
    fn zero_listeners_is_an_error() {
        let err = bind_reuseport_group(any(), 0, BACKLOG, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_bound_socket_that_does_not_listen_refuses_connections_until_it_listens() {
        // Bound alone on its port (no other member of the group listens), a
        // connection attempt is refused: nothing is queued for it.
        let l = bind_reuseport_unlistened(any()).unwrap();
        let addr = l.local_addr().unwrap();
        let err = std::net::TcpStream::connect(addr).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        listen(&l, 16).unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let l = socket2::SockRef::from(&l);
        l.set_nonblocking(false).unwrap();
        assert!(l.accept().is_ok());
    }

    fn unix_listen(path: &Path) -> Listen {
        Listen::unix(path)
    }

    #[test]
    fn unix_addresses_parse_with_their_prefix() {
        let l: Listen = "unix:/run/app.sock".parse().unwrap();
        assert_eq!(l.listen_addr(), &ListenAddr::Unix("/run/app.sock".into()));
        assert_eq!(l.listen_addr().to_string(), "unix:/run/app.sock");
        assert_eq!(l.addr(), UNSPECIFIED);
        // Relative: made absolute against the working directory.
        let l: Listen = "unix:app.sock".parse().unwrap();
        let want = std::env::current_dir().unwrap().join("app.sock");
        assert_eq!(l.listen_addr().path(), Some(want.as_path()));
        let tcp: Listen = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            tcp.listen_addr().tcp(),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        for bad in ["unix:", "/run/app.sock", "localhost:80", "", "unix"] {
            let err = bad.parse::<Listen>().unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn a_path_too_long_for_sun_path_is_a_clear_error() {
        let long = format!("unix:/tmp/{}", "x".repeat(SUN_PATH_MAX));
        let err = long.parse::<Listen>().unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("a Unix socket's path holds at most"),
            "{text}"
        );
        assert!(
            text.starts_with("tine: cannot bind unix:/tmp/xxx"),
            "{text}"
        );
        // Binding says the same, not a generic EINVAL.
        let path = PathBuf::from(format!("/tmp/{}", "y".repeat(SUN_PATH_MAX)));
        let err = bind_unix(&path, UNIX_MODE, 16).unwrap_err();
        assert!(err.to_string().contains("at most"), "{err}");
        // The longest path that fits is fine.
        let fits = PathBuf::from("/").join("z".repeat(SUN_PATH_MAX - 1));
        assert!(check_unix_path(&fits).is_ok());
    }

    #[test]
    fn a_unix_socket_binds_with_its_mode_and_accepts() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.sock");
        let l = bind_unix(&path, 0o600, 16).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(l.accept().unwrap_err().kind(), io::ErrorKind::WouldBlock);
        let _client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        l.set_nonblocking(false).unwrap();
        assert!(l.accept().is_ok());
        let socket = Socket::Unix(l);
        assert_eq!(socket.local().unwrap(), ListenAddr::Unix(path.clone()));
        let bound = bind_listen(&unix_listen(&dir.path().join("b.sock")), None, 4, false).unwrap();
        assert_eq!((bound.mode, bound.sockets.len()), (Mode::Shared, 1));
        let mode = std::fs::metadata(dir.path().join("b.sock"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, UNIX_MODE);
    }

    #[test]
    fn a_stale_socket_file_is_replaced_but_a_live_one_or_another_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        // Stale: bound, then closed without removing the file.
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        assert!(stale.exists());
        let l = bind_unix(&stale, UNIX_MODE, 16).unwrap();
        let _client = std::os::unix::net::UnixStream::connect(&stale).unwrap();
        drop(l);

        // Live: another server listens there; the file stays and serves.
        let live = dir.path().join("live.sock");
        let other = std::os::unix::net::UnixListener::bind(&live).unwrap();
        let err = bind_unix(&live, UNIX_MODE, 16).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(
            err.to_string(),
            format!(
                "tine: cannot bind unix:{}: address already in use (a server listens on it)",
                live.display()
            )
        );
        let _client = std::os::unix::net::UnixStream::connect(&live).unwrap();
        assert!(other.accept().is_ok());

        // A regular file is never removed.
        let file = dir.path().join("file.sock");
        std::fs::write(&file, "data").unwrap();
        let err = bind_unix(&file, UNIX_MODE, 16).unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "data");
        // Nor a directory.
        let sub = dir.path().join("dir.sock");
        std::fs::create_dir(&sub).unwrap();
        assert!(bind_unix(&sub, UNIX_MODE, 16).is_err());
        assert!(sub.is_dir());
    }

    #[test]
    fn a_unix_listener_refuses_reuseport_and_tls() {
        let dir = tempfile::tempdir().unwrap();
        let l = unix_listen(&dir.path().join("a.sock")).balance(Balance::ReusePort);
        let err = bind_listen(&l, None, 2, false).unwrap_err();
        assert!(
            err.to_string()
                .contains("Balance::ReusePort does not apply"),
            "{err}"
        );
        assert!(!dir.path().join("a.sock").exists());
        // The app's default balance does not apply to it: shared.
        let l = unix_listen(&dir.path().join("b.sock"));
        let bound = bind_listen(&l, Some(Balance::ReusePort), 2, false).unwrap();
        assert_eq!(bound.mode, Mode::Shared);
    }

    #[test]
    fn only_the_socket_file_bound_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let _l = bind_unix(&path, UNIX_MODE, 16).unwrap();
        let ours = SocketFile::at(&path).unwrap();
        // Replaced by another server's socket meanwhile: kept.
        std::fs::remove_file(&path).unwrap();
        let _other = std::os::unix::net::UnixListener::bind(&path).unwrap();
        ours.remove();
        assert!(path.exists());
        let theirs = SocketFile::at(&path).unwrap();
        theirs.remove();
        assert!(!path.exists());
        assert!(
            SocketFile::at(dir.path()).is_none(),
            "a directory is no socket file"
        );
    }

    #[test]
    fn bound_files_are_removed_unless_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
        let _la = bind_unix(&a, UNIX_MODE, 16).unwrap();
        let _lb = bind_unix(&b, UNIX_MODE, 16).unwrap();
        // A start-up that fails: everything it bound goes.
        let mut failed = BoundFiles::default();
        failed.push(SocketFile::at(&a).unwrap());
        failed.push(SocketFile::at(&b).unwrap());
        drop(failed);
        assert!(!a.exists() && !b.exists());
        // One that succeeds: the files stay, for the stop to remove.
        let _la = bind_unix(&a, UNIX_MODE, 16).unwrap();
        let mut done = BoundFiles::default();
        done.push(SocketFile::at(&a).unwrap());
        let files = done.kept();
        assert!(a.exists());
        assert_eq!(files, vec![SocketFile::at(&a).unwrap()]);
    }
}
