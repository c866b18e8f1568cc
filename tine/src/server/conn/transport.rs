//! The byte stream under a connection.
//!
//! Plain TCP, a Unix-domain stream (a Unix listener's connections), or
//! TLS over TCP (feature `tls`: `server::tls::TlsStream`), whose
//! reads and writes go through the TLS session and which cannot use
//! `sendfile` (the kernel would send the file unencrypted), so it leaves
//! [`Transport::send_file`] to its default and file bodies are copied
//! through the connection's buffer in bounded pieces, encrypted on the
//! way. The loop's connections are `Conn<Link>`: a [`Link`] is either, and
//! costs a branch per call (no dynamic dispatch); unit tests use other
//! transports through the same generic parameter.
//!
//! A TLS write may take plaintext whose ciphertext the socket did not
//! take yet: [`Write::flush`] sends that remainder (`WouldBlock` while the
//! socket is full), and the connection calls it before it considers its
//! output sent.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::ws::session::Wire;

/// A connection's byte stream: non-blocking reads and writes, plus what
/// the plain socket can do better.
pub(crate) trait Transport: Read + Write + Wire + mio::event::Source {
    /// Writes, hinting that more follows at once (a head before a file
    /// body), so both can share a segment.
    fn write_more(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write(buf)
    }

    /// Sends up to `count` bytes of `file` from `*offset` without copying
    /// them through user space, advancing `*offset`; `None` if this
    /// transport cannot (the caller copies instead).
    fn send_file(
        &mut self,
        _file: &File,
        _offset: &mut u64,
        _count: usize,
    ) -> Option<io::Result<usize>> {
        None
    }

    /// Shuts the sending side (our last byte is out), keeping the
    /// receiving side open for the lingering close.
    fn shutdown_write(&self);

    /// Makes the coming close a reset (`SO_LINGER` 0), for a response that
    /// must not look complete to the peer.
    fn reset_on_close(&self) {}

    /// Whether input may be waiting that no new readiness event will
    /// announce, although the last read returned less than asked (TLS:
    /// decrypted records, or a socket read that filled its buffer). A
    /// plain socket's short read means it is drained.
    fn may_have_more(&self) -> bool {
        false
    }

    /// Whether this is a TLS connection (requests say so: `is_https`).
    fn is_tls(&self) -> bool {
        false
    }

    /// The connection is about to be closed: say so to the peer if the
    /// protocol has a way (TLS `close_notify`), without waiting.
    fn close_notify(&self) {}
}

/// The loop's transport: plain TCP, a Unix stream, or TLS over TCP.
pub(crate) enum Link {
    Plain(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
    #[cfg(feature = "tls")]
    Tls(Box<crate::server::tls::TlsStream>),
}

impl Link {
    fn tcp(&self) -> Option<&mio::net::TcpStream> {
        match self {
            Link::Plain(s) => Some(s),
            Link::Unix(_) => None,
            #[cfg(feature = "tls")]
            Link::Tls(t) => Some(t.socket()),
        }
    }
}

/// Bytes this worker read from a client's socket (`tine_http_received_bytes_total`).
/// Counted where they cross the socket, whatever reads them (a request, a
/// WebSocket, the PROXY header); a TLS stream counts its own ciphertext.
#[inline]
fn counted_in(read: io::Result<usize>) -> io::Result<usize> {
    if let Ok(n @ 1..) = read {
        if let Some(e) = crate::server::scoreboard::mine() {
            e.bytes_in(n);
        }
    }
    read
}

/// Bytes this worker wrote to a client's socket (`tine_http_sent_bytes_total`),
/// whatever wrote them: a head, a body copied or sent by `sendfile`, a
/// WebSocket frame, an event. A TLS stream counts its own ciphertext.
#[inline]
fn counted_out(written: io::Result<usize>) -> io::Result<usize> {
    if let Ok(n @ 1..) = written {
        if let Some(e) = crate::server::scoreboard::mine() {
            e.bytes_out(n);
        }
    }
    written
}

impl Read for Link {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Plain(s) => counted_in(s.read(buf)),
            Link::Unix(s) => counted_in(s.read(buf)),
            #[cfg(feature = "tls")]
            Link::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Link {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Link::Plain(s) => counted_out(s.write(buf)),
            Link::Unix(s) => counted_out(unix_send(s, buf)),
            #[cfg(feature = "tls")]
            Link::Tls(t) => t.write(buf),
        }
    }

    #[inline]
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Link::Plain(_) | Link::Unix(_) => Ok(()),
            #[cfg(feature = "tls")]
            Link::Tls(t) => t.flush(),
        }
    }
}

impl Wire for Link {
    fn write_all_now(&self, data: &[u8]) -> io::Result<()> {
        let plain = match self {
            Link::Plain(s) => write_all_now(s, data),
            Link::Unix(s) => write_all_now(s, data),
            #[cfg(feature = "tls")]
            Link::Tls(t) => return t.write_all_now(data),
        };
        counted_out(plain.map(|()| data.len())).map(|_| ())
    }
}

impl mio::event::Source for Link {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        match self {
            Link::Plain(s) => s.register(registry, token, interests),
            Link::Unix(s) => s.register(registry, token, interests),
            #[cfg(feature = "tls")]
            Link::Tls(t) => t.socket_mut().register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        match self {
            Link::Plain(s) => s.reregister(registry, token, interests),
            Link::Unix(s) => s.reregister(registry, token, interests),
            #[cfg(feature = "tls")]
            Link::Tls(t) => t.socket_mut().reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        match self {
            Link::Plain(s) => s.deregister(registry),
            Link::Unix(s) => s.deregister(registry),
            #[cfg(feature = "tls")]
            Link::Tls(t) => t.socket_mut().deregister(registry),
        }
    }
}

impl Transport for Link {
    #[inline]
    fn write_more(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Link::Plain(s) => counted_out(s.write_more(buf)),
            Link::Unix(s) => counted_out(unix_send(s, buf)),
            #[cfg(feature = "tls")]
            Link::Tls(t) => t.write(buf),
        }
    }

    #[inline]
    fn send_file(
        &mut self,
        file: &File,
        offset: &mut u64,
        count: usize,
    ) -> Option<io::Result<usize>> {
        match self {
            Link::Plain(s) => s.send_file(file, offset, count).map(counted_out),
            // Linux's sendfile writes to any socket.
            #[cfg(target_os = "linux")]
            Link::Unix(s) => Some(counted_out(
                rustix::fs::sendfile(&*s, file, Some(offset), count).map_err(io::Error::from),
            )),
            #[cfg(not(target_os = "linux"))]
            Link::Unix(_) => None,
            // sendfile would bypass the encryption: copy instead.
            #[cfg(feature = "tls")]
            Link::Tls(_) => None,
        }
    }

    fn shutdown_write(&self) {
        match self {
            Link::Plain(s) => s.shutdown_write(),
            Link::Unix(s) => s.shutdown_write(),
            #[cfg(feature = "tls")]
            Link::Tls(t) => {
                // close_notify first; if the socket cannot take it now, the
                // write side stays open (the linger deadline closes it).
                if t.close_notify() {
                    t.socket().shutdown_write();
                }
            }
        }
    }

    fn reset_on_close(&self) {
        // Over TLS, no `close_notify` either: it would make the cut look
        // like the end.
        #[cfg(feature = "tls")]
        if let Link::Tls(t) = self {
            t.abandon();
        }
        // A Unix stream has no reset to ask for: closing it with input
        // unread already makes the peer's next read fail (ECONNRESET).
        if let Some(tcp) = self.tcp() {
            tcp.reset_on_close();
        }
    }

    #[inline]
    fn is_tls(&self) -> bool {
        match self {
            Link::Plain(_) | Link::Unix(_) => false,
            #[cfg(feature = "tls")]
            Link::Tls(_) => true,
        }
    }

    #[inline]
    fn may_have_more(&self) -> bool {
        match self {
            Link::Plain(_) | Link::Unix(_) => false,
            #[cfg(feature = "tls")]
            Link::Tls(t) => t.may_have_more(),
        }
    }

    fn close_notify(&self) {
        match self {
            Link::Plain(_) | Link::Unix(_) => {}
            #[cfg(feature = "tls")]
            Link::Tls(t) => {
                t.close_notify();
            }
        }
    }
}

/// Plain TCP. On Linux a head followed by a file goes out with `MSG_MORE`
/// and the file by `sendfile(2)`; elsewhere (macOS, FreeBSD: their
/// `sendfile` has another signature, which rustix does not wrap) the
/// defaults apply and file bodies are copied through the connection's
/// buffer in bounded pieces, the same path TLS will take.
impl Transport for mio::net::TcpStream {
    #[cfg(target_os = "linux")]
    fn write_more(&mut self, buf: &[u8]) -> io::Result<usize> {
        rustix::net::send(&*self, buf, rustix::net::SendFlags::MORE).map_err(io::Error::from)
    }

    #[cfg(target_os = "linux")]
    fn send_file(
        &mut self,
        file: &File,
        offset: &mut u64,
        count: usize,
    ) -> Option<io::Result<usize>> {
        Some(rustix::fs::sendfile(&*self, file, Some(offset), count).map_err(io::Error::from))
    }

    fn shutdown_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }

    fn reset_on_close(&self) {
        let _ = socket2::SockRef::from(self).set_linger(Some(Duration::ZERO));
    }
}

/// A Unix socket: a Unix listener's connections go through
/// [`Link::Unix`] (with `sendfile` on Linux); the connection's unit tests
/// use it directly (a socket pair needs no listener), where file bodies
/// take the copying path.
impl Transport for mio::net::UnixStream {
    fn shutdown_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

/// A write to a Unix stream that cannot raise `SIGPIPE` when the peer has
/// gone (`MSG_NOSIGNAL`; a plain `write(2)` would raise it should the app
/// have restored the signal's default action). std's `UnixStream` sends
/// with the flag too on Linux today, but does not promise it; this does.
/// Apple systems have no such flag: their sockets get `SO_NOSIGPIPE` when
/// accepted.
#[inline]
fn unix_send(s: &mio::net::UnixStream, buf: &[u8]) -> io::Result<usize> {
    #[cfg(not(target_vendor = "apple"))]
    return rustix::net::send(s, buf, rustix::net::SendFlags::NOSIGNAL).map_err(io::Error::from);
    #[cfg(target_vendor = "apple")]
    {
        let mut s = s;
        s.write(buf)
    }
}

/// How long `send_now` waits for a full socket before giving up.
const SEND_NOW_TIMEOUT: Duration = Duration::from_secs(10);

/// When a `send_now` that starts now gives up on a full socket.
pub(crate) fn send_now_deadline() -> Instant {
    Instant::now() + SEND_NOW_TIMEOUT
}

/// Waits up to 100 ms for `socket` to take more output, or says
/// `TimedOut` once `deadline` has passed: the wait of a `send_now` (plain
/// sockets here, TLS in `server/tls/stream.rs`).
pub(crate) fn wait_writable(socket: &impl AsFd, deadline: Instant) -> io::Result<()> {
    if Instant::now() >= deadline {
        return Err(io::ErrorKind::TimedOut.into());
    }
    let mut fds = [rustix::event::PollFd::new(
        socket,
        rustix::event::PollFlags::OUT,
    )];
    let slice = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    let _ = rustix::event::poll(&mut fds, Some(&slice));
    Ok(())
}

/// Writes all of `data` to a non-blocking socket, waiting (bounded) while
/// it is full: for a WebSocket handler's `send_now`.
fn write_all_now<S>(socket: &S, mut data: &[u8]) -> io::Result<()>
where
    S: AsFd,
    for<'a> &'a S: Write,
{
    let deadline = send_now_deadline();
    let mut writer = socket;
    while !data.is_empty() {
        match writer.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_writable(socket, deadline)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Wire for mio::net::TcpStream {
    fn write_all_now(&self, data: &[u8]) -> io::Result<()> {
        write_all_now(self, data)
    }
}

impl Wire for mio::net::UnixStream {
    fn write_all_now(&self, data: &[u8]) -> io::Result<()> {
        write_all_now(self, data)
    }
}
