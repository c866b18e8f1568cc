//! Listening sockets: binding them (socket2), and how the master lays
//! them out over its workers.
//!
//! A server listens on one or more addresses. With workers, each address
//! is one of two [`Mode`]s:
//!
//! * [`Mode::ReusePort`] (today's only mode in use): one `SO_REUSEPORT`
//!   socket per worker slot, all bound to the same address, so the kernel
//!   spreads connections over per-worker accept queues. On Linux, closing
//!   such a socket resets every connection waiting in its queue, so the
//!   master binds them before forking and never closes one while it runs.
//! * [`Mode::Shared`]: one socket that every worker accepts on (for
//!   handlers that block, and for systems without a load-balancing
//!   `SO_REUSEPORT`). The master side is modelled in the supervisor; the
//!   server does not offer it yet.
//!
//! In single-process mode there is one plain socket ([`bind_single`]).

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Backlog of each accept queue: room for bursts while a worker is busy
/// in a handler.
pub(crate) const BACKLOG: i32 = 1024;

/// How the workers share one address's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// One `SO_REUSEPORT` socket per worker slot.
    ReusePort,
    /// One socket accepted on by every worker.
    #[allow(dead_code)] // modelled and tested; not selectable yet
    Shared,
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
/// and `SO_REUSEPORT`, non-blocking, close-on-exec, `listen(backlog)`.
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
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
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
            assert!(sock.reuse_port().unwrap());
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
        assert!(!sock.reuse_port().unwrap());
        assert_eq!(l.accept().unwrap_err().kind(), io::ErrorKind::WouldBlock);
        // And nobody can join it.
        let addr = l.local_addr().unwrap();
        let err = bind_reuseport_group(addr, 1, BACKLOG, true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
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
