//! Listening sockets, built with socket2 (mio's own bind sets no
//! backlog and no SO_REUSEPORT).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Backlog of the accept queue.
pub(crate) const BACKLOG: i32 = 1024;

/// Binds a non-blocking listener. With `reuse_port`, SO_REUSEPORT is set so
/// several sockets (one per worker) can share the address.
pub(crate) fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Turns a bind error into one clear line naming the address.
pub(crate) fn describe_bind_error(addr: SocketAddr, e: io::Error) -> io::Error {
    let what = match e.kind() {
        io::ErrorKind::AddrInUse => "address already in use".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        io::ErrorKind::AddrNotAvailable => "address not available on this machine".to_string(),
        _ => e.to_string(),
    };
    io::Error::new(e.kind(), format!("tine: cannot bind {addr}: {what}"))
}
