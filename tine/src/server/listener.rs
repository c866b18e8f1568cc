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

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Backlog of each accept queue: room for bursts while a worker is busy
/// in a handler.
pub(crate) const BACKLOG: i32 = 1024;

/// One address the server listens on, and how it is served.
///
/// The address given to [`App::bind`](crate::App::bind) is the first
/// listener; [`App::listen`](crate::App::listen) adds more, served by the
/// same workers with the same routes.
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
    pub(crate) addr: SocketAddr,
    /// How workers share it (`None`: the app's [`Balance`], else the
    /// platform's).
    pub(crate) balance: Option<Balance>,
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
        Listen {
            addr: addr.into(),
            balance: None,
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
    /// [`App::balance`](crate::App::balance) for it).
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

    /// The address to listen on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
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
/// | default on | Linux, FreeBSD | macOS (no balancing `SO_REUSEPORT`); socket activation |
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
        addr: sockets[0].local_addr()?,
        mode,
        sockets,
    })
}

/// One address the master serves, with its bound sockets: for
/// [`Mode::ReusePort`] at least one (slot `i` accepts on socket `j` for
/// every `j % workers == i`), for [`Mode::Shared`] exactly one.
#[derive(Debug)]
pub(crate) struct Bound {
    /// The address actually bound (the real port when asked for port 0).
    pub addr: SocketAddr,
    /// How the workers share it.
    pub mode: Mode,
    /// Its listening sockets.
    pub sockets: Vec<TcpListener>,
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
    if !join_existing && addr.port() != 0 {
        probe(addr).map_err(|e| bind_error(addr, e))?;
    }
    let first = bind_reuseport(addr, backlog).map_err(|e| bind_error(addr, e))?;
    let actual = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..n {
        listeners.push(bind_reuseport(actual, backlog).map_err(|e| bind_error(actual, e))?);
    }
    Ok(listeners)
}

fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    // socket2 creates sockets with SOCK_CLOEXEC on Linux.
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    Ok(socket)
}

/// `SO_REUSEPORT` lets any process of the same user bind the same address
/// and silently take a share of its connections, so a second instance
/// started by mistake would not fail: it would steal traffic. A bind
/// *without* `SO_REUSEPORT` fails if anyone listens on `addr`, which is
/// the check.
fn probe(addr: SocketAddr) -> io::Result<()> {
    let socket = new_socket(addr)?;
    socket.bind(&addr.into())
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
fn set_reuse_port(socket: &Socket) -> io::Result<()> {
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
pub(crate) fn listen(listener: &TcpListener, backlog: i32) -> io::Result<()> {
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
        assert_eq!(bound.sockets[0].local_addr().unwrap(), bound.addr);
        assert!(!is_reuse_port(&socket2::SockRef::from(&bound.sockets[0])));
        // A second server is refused, in either mode.
        for mode in [Mode::Shared, Mode::ReusePort] {
            let err = bind_workers(bound.addr, mode, 2, BACKLOG, false).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{mode:?}");
        }
        let group = bind_workers(any(), Mode::ReusePort, 3, BACKLOG, false).unwrap();
        assert_eq!((group.mode, group.sockets.len()), (Mode::ReusePort, 3));
    }

    #[test]
    fn a_shared_socket_joins_an_existing_group_only_when_asked() {
        let group = bind_workers(any(), Mode::ReusePort, 2, BACKLOG, false).unwrap();
        let err = bind_workers(group.addr, Mode::Shared, 2, BACKLOG, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let joined = bind_workers(group.addr, Mode::Shared, 2, BACKLOG, true).unwrap();
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
}
