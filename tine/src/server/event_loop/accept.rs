//! The listening sockets of one loop: which ones it accepts on, accepting
//! (within the connection limits), and pausing when descriptors run out.
//!
//! Two ways to accept, by how the socket is shared:
//!
//! * A socket of this process alone (a member of a `SO_REUSEPORT` group,
//!   whose kernel queue only this worker takes from): registered through
//!   mio, edge-triggered, and drained until `WouldBlock` at each event.
//! * A socket every worker of the address accepts from (the shared mode:
//!   socket activation, macOS, `TINE_LISTENER=shared`), told apart by not
//!   being a `SO_REUSEPORT` socket. On Linux it is registered
//!   level-triggered with `EPOLLEXCLUSIVE` (`accept/exclusive.rs`) and
//!   the worker takes **one** connection per wake-up (nginx's
//!   `multi_accept off`): a worker about to block in a slow handler does
//!   not hold a batch of connections that other, idle workers could have
//!   served, and a worker busy in a handler is not in `epoll_wait`, so the
//!   kernel wakes an idle one instead (it promises "one or more").
//!   One blind spot remains, as in nginx: connections that arrive together
//!   while one worker is waking can all be credited to that worker's
//!   wake-up; it takes them one per loop turn, and if a handler blocks it
//!   meanwhile, the rest wait in the queue until the next new connection
//!   wakes an idle worker (who then takes the oldest first). Under a
//!   steady load that is one arrival interval; it is why a handler should
//!   not block for long in any mode.
//!
//!   The kernel wakes the waiting workers in the order they registered the
//!   socket, so the first worker would take nearly every connection while
//!   it is idle (and hold every keep-alive connection of a light load).
//!   After each connection it takes, a worker registers again, which puts
//!   it at the back of that line: idle workers take turns.
//!
//!   A single process's one plain socket is accepted the same way (no
//!   other process is there to wake; it costs one `epoll_wait` per
//!   connection).
//!
//!   Elsewhere (kqueue: macOS, FreeBSD) the shared socket keeps mio's
//!   portable registration and is drained: kqueue has no exclusive
//!   wake-up, so every worker waiting in `kevent` wakes for a new
//!   connection and races for it (the losers find the queue empty), and
//!   mio's kqueue registration is edge-triggered (`EV_CLEAR`), so taking
//!   one connection could leave the rest unreported. A worker busy in a
//!   handler is not waiting there either, so the idle workers still take
//!   the new connections; what is lost is CPU (the herd) and, at a burst,
//!   a batch taken by one worker.
//!
//! A Unix-domain listener is always a shared socket (the kernel does not
//! balance Unix sockets over `SO_REUSEPORT`): accepted as above, its
//! connections are `Link::Unix`, with the unspecified peer address
//! `0.0.0.0:0` (no IP: see `Request::is_unix_peer`), which the
//! per-address connection limit does not count.

use std::io;
use std::time::Duration;

use std::os::fd::{AsFd, BorrowedFd};

use mio::net::{TcpListener, UnixListener};
use mio::{Interest, Registry, Token};

use crate::server::listener::{Socket, UNSPECIFIED};

use super::{Conn, EventLoop, Link, Slot, LISTENER0};

/// Pause in accepting after the process ran out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[cfg(target_os = "linux")]
mod exclusive;

/// A listening socket of the loop: TCP or Unix.
pub(super) enum Acceptor {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Acceptor {
    fn new(socket: Socket) -> Acceptor {
        match socket {
            Socket::Tcp(l) => Acceptor::Tcp(TcpListener::from_std(l)),
            Socket::Unix(l) => Acceptor::Unix(UnixListener::from_std(l)),
        }
    }
}

impl AsFd for Acceptor {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Acceptor::Tcp(l) => l.as_fd(),
            Acceptor::Unix(l) => l.as_fd(),
        }
    }
}

impl mio::event::Source for Acceptor {
    fn register(&mut self, r: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Acceptor::Tcp(l) => l.register(r, token, interests),
            Acceptor::Unix(l) => l.register(r, token, interests),
        }
    }

    fn reregister(&mut self, r: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Acceptor::Tcp(l) => l.reregister(r, token, interests),
            Acceptor::Unix(l) => l.reregister(r, token, interests),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Acceptor::Tcp(l) => l.deregister(r),
            Acceptor::Unix(l) => l.deregister(r),
        }
    }
}

/// A connection just accepted.
enum Accepted {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

pub(super) struct Listener {
    pub(super) socket: Acceptor,
    /// The address it serves: its settings are `config.listens[address]`.
    pub(super) address: usize,
    /// This process accepts on it (a worker holds every listener of the
    /// master but accepts only on its own, plus adopted ones).
    pub(super) active: bool,
    pub(super) registered: bool,
    /// Every worker accepts from this socket's one queue (it is not a
    /// `SO_REUSEPORT` socket); see the module docs. Only Linux accepts
    /// those differently.
    #[cfg(target_os = "linux")]
    shared: bool,
    /// Registered with `EPOLLEXCLUSIVE` (Linux 4.5+).
    #[cfg(target_os = "linux")]
    exclusive: bool,
    /// Registered level-triggered (Linux, a shared socket): take one
    /// connection per event.
    pub(super) one_per_wakeup: bool,
}

impl Listener {
    pub(super) fn new(socket: Socket, address: usize, active: bool) -> Listener {
        let socket = Acceptor::new(socket);
        Listener {
            address,
            #[cfg(target_os = "linux")]
            shared: shares_its_queue(&socket),
            #[cfg(target_os = "linux")]
            exclusive: false,
            socket,
            active,
            registered: false,
            one_per_wakeup: false,
        }
    }

    /// Starts watching the socket for connections.
    fn watch(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if self.shared {
            self.exclusive = exclusive::watch(registry, &self.socket, token)?;
            if !self.exclusive {
                warn_not_exclusive();
            }
            self.one_per_wakeup = true;
            self.registered = true;
            return Ok(());
        }
        registry.register(&mut self.socket, token, Interest::READABLE)?;
        self.registered = true;
        Ok(())
    }

    /// After taking a connection from a shared socket: moves this worker
    /// to the back of the line of workers the kernel wakes for the next
    /// one (see `exclusive::rotate`), so idle workers take turns.
    #[cfg(target_os = "linux")]
    fn rotate(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        if !self.exclusive {
            return Ok(());
        }
        if let Err(e) = exclusive::rotate(registry, &self.socket, token) {
            // Removed but not added again: watched no more.
            self.registered = false;
            self.one_per_wakeup = false;
            return Err(e);
        }
        Ok(())
    }

    /// Stops watching it (the socket stays open).
    fn unwatch(&mut self, registry: &Registry) {
        if !self.registered {
            return;
        }
        #[cfg(target_os = "linux")]
        let result = if self.one_per_wakeup {
            exclusive::unwatch(registry, &self.socket)
        } else {
            registry.deregister(&mut self.socket)
        };
        #[cfg(not(target_os = "linux"))]
        let result = registry.deregister(&mut self.socket);
        if let Err(e) = result {
            log::debug!("cannot stop watching a listener: {e}");
        }
        self.registered = false;
        self.one_per_wakeup = false;
    }
}

/// Whether every worker of the address accepts from `socket`'s queue: a
/// listener without `SO_REUSEPORT` (a shared or inherited socket, or a
/// single process's). A shared socket that joined an existing reuseport
/// group on purpose (`join_existing`) is a reuseport socket and is
/// drained like the others.
#[cfg(target_os = "linux")]
fn shares_its_queue(socket: &Acceptor) -> bool {
    match socket {
        Acceptor::Tcp(l) => !socket2::SockRef::from(l).reuse_port().unwrap_or(true),
        // Never a reuseport group (see `listener.rs`).
        Acceptor::Unix(_) => true,
    }
}

/// Said once per process: the kernel predates `EPOLLEXCLUSIVE` (Linux 4.5).
#[cfg(target_os = "linux")]
fn warn_not_exclusive() {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        log::warn!(
            "this kernel has no EPOLLEXCLUSIVE: every idle worker wakes for \
             each new connection on a shared listener"
        );
    });
}

impl EventLoop {
    /// Stops accepting on a listener the master had lent this worker
    /// (another worker accepts on it again); the socket stays open.
    pub(super) fn release(&mut self, index: usize) {
        if let Some(l) = self.listeners.get_mut(index).filter(|l| l.active) {
            log::info!("releasing listener {index}");
            l.active = false;
            l.unwatch(self.poll.registry());
        }
    }

    /// At the start of a drain: accepts what is already queued on every
    /// listener this process holds (those clients may have sent their
    /// requests; they are served, with `Connection: close`: were this the
    /// last process holding a socket, they would be reset), then closes
    /// this process's copies of them. A socket that no other
    /// process holds (the last worker of a stop, a single process) closes
    /// with it, and new connections are refused at once, as nginx's are,
    /// instead of being queued for the drain's whole length and reset when
    /// the master exits. One that others hold (the master's in a rolling
    /// restart, a new master's after a binary upgrade, systemd's socket
    /// unit) serves on.
    pub(super) fn let_go_of_listeners(&mut self) {
        for i in 0..self.listeners.len() {
            // One connection per call on a shared socket: take them all.
            // Bounded, as `accept` is by `max_connections`.
            for _ in 0..self.shared.config.limits.max_connections {
                let before = self.conns.len();
                self.accept_from(i, true);
                let one = self.listeners.get(i).is_some_and(|l| l.one_per_wakeup);
                if !one || self.conns.len() == before {
                    break;
                }
            }
        }
        // Deregistered before they are closed: an epoll registration lives
        // as long as the open socket, which other processes may still hold.
        self.set_accepting(false);
        self.listeners.clear();
    }

    pub(super) fn set_accepting(&mut self, on: bool) {
        let on = on && self.drain_deadline.is_none() && self.accept_resume.is_none();
        for (i, l) in self.listeners.iter_mut().enumerate() {
            if on && l.active && !l.registered {
                if let Err(e) = l.watch(self.poll.registry(), Token(LISTENER0 + i)) {
                    log::error!("cannot watch the listener: {e}");
                }
            } else if !on && l.registered {
                l.unwatch(self.poll.registry());
            }
        }
    }

    /// Accepts on listener `index`: until `WouldBlock`, or one connection
    /// (or one failed attempt) on a level-triggered shared socket, which
    /// is reported again at the next poll while connections are queued.
    pub(super) fn accept(&mut self, index: usize) {
        self.accept_from(index, false);
    }

    /// [`accept`](Self::accept), also on a listener this process does not
    /// watch if `unwatched` (the drain's last look at every queue).
    fn accept_from(&mut self, index: usize, unwatched: bool) {
        let max = self.shared.config.limits.max_connections;
        let Some(one) = self.listeners.get(index).map(|l| l.one_per_wakeup) else {
            return;
        };
        loop {
            if self.conns.len() >= max {
                if let Some(more) = self.accept_warnings[0].allow(self.now) {
                    log::warn!("{max} connections open (the limit); pausing accept{more}");
                }
                self.set_accepting(false);
                return;
            }
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            if !listener.registered && !unwatched {
                return;
            }
            // Settings that differ per listener (TLS, the PROXY protocol)
            // are `self.shared.config.listens[address]`.
            let address = listener.address;
            let accepted = match &listener.socket {
                Acceptor::Tcp(l) => l.accept().map(|(s, peer)| (Accepted::Tcp(s), peer)),
                // A Unix peer has no IP address: the unspecified one stands
                // for it (and is not counted per address).
                Acceptor::Unix(l) => l.accept().map(|(s, _)| (Accepted::Unix(s), UNSPECIFIED)),
            };
            match accepted {
                Ok((stream, peer)) => {
                    log::trace!("accepted {peer} on listener {index} (address {address})");
                    let proxied =
                        (self.shared.config.listens.get(address)).is_some_and(|l| l.proxy_protocol);
                    // Behind the PROXY protocol every connection comes from
                    // the balancer: counted per client once its header is
                    // read (see `Conn::expect_proxy_header`).
                    let counted = if proxied { UNSPECIFIED.ip() } else { peer.ip() };
                    if !self.shared.per_ip.admit(counted) {
                        log::debug!("{} has too many connections; closing one", peer.ip());
                        drop(stream);
                        if one {
                            return;
                        }
                        continue;
                    }
                    if let Accepted::Tcp(s) = &stream {
                        let _ = s.set_nodelay(true);
                    }
                    // Apple systems have no MSG_NOSIGNAL: a write to a peer
                    // that has gone must not raise SIGPIPE should the app
                    // have restored its default action.
                    #[cfg(target_vendor = "apple")]
                    let _ = match &stream {
                        Accepted::Tcp(s) => socket2::SockRef::from(s).set_nosigpipe(true),
                        Accepted::Unix(s) => socket2::SockRef::from(s).set_nosigpipe(true),
                    };
                    let Some(mut link) = link(&self.shared.config, address, stream) else {
                        self.shared.per_ip.release(counted);
                        if one {
                            return;
                        }
                        continue;
                    };
                    let entry = self.conns.vacant_entry();
                    let key = entry.key();
                    if let Err(e) = self.poll.registry().register(
                        &mut link,
                        Token(key),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        log::warn!("cannot watch a new connection: {e}");
                        self.shared.per_ip.release(counted);
                        if one {
                            return;
                        }
                        continue;
                    }
                    self.generation = self.generation.wrapping_add(1);
                    if let Some(e) = super::scoreboard::mine() {
                        super::scoreboard::Entry::gauge(&e.gauges.connections, 1);
                    }
                    let mut conn = Conn::new(link, peer, self.shared.stamp);
                    if proxied {
                        conn.expect_proxy_header();
                    }
                    entry.insert(Slot {
                        conn,
                        generation: self.generation,
                        deadline: self.shared.stamp,
                        timer_tick: super::NO_TICK,
                        scheduled: false,
                    });
                    let deadline = self
                        .shared
                        .stamp
                        .after(self.shared.config.limits.header_timeout);
                    self.set_deadline(key, deadline);
                    if one {
                        #[cfg(target_os = "linux")]
                        self.rotate(index);
                        // Serve what the client already sent before this
                        // worker can take another connection: a shared
                        // queue's point is that a worker blocked in a slow
                        // handler holds nothing else. Left for the next
                        // poll, this connection would wait behind any
                        // connection accepted meanwhile, and one of those
                        // could be the slow one.
                        if let Some(slot) = self.conns.get_mut(key) {
                            // Registering it made epoll look at the socket
                            // as it is: an EOF already there comes with the
                            // first event.
                            slot.conn.readable(false);
                        }
                        self.drive(key);
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Out of descriptors: the open-file caches of static
                // mounts give theirs back first (they may hold hundreds
                // that no request uses now), and the accept is tried
                // again; only when that freed nothing does accepting
                // pause. Without it an idle cache kept new clients out.
                Err(e)
                    if crate::server::sys::out_of_descriptors(&e) && release_cached_files(&e) => {}
                Err(e) if is_resource_exhaustion(&e) => {
                    if let Some(more) = self.accept_warnings[1].allow(self.now) {
                        log::warn!(
                            "accept failed ({e}); pausing accept for {ACCEPT_BACKOFF:?}{more}"
                        );
                    }
                    self.set_accepting(false);
                    self.accept_resume = Some(self.now + ACCEPT_BACKOFF);
                    return;
                }
                // ECONNABORTED and friends concern one connection only. On
                // the drain's last look (`unwatched`) any error ends it: a
                // socket still only bound (a scale-up's) answers EINVAL
                // every time.
                Err(e) => {
                    log::debug!("accept: {e}");
                    if one || unwatched {
                        return;
                    }
                }
            }
        }
    }
}

impl EventLoop {
    /// [`Listener::rotate`] for listener `index`; if it is left unwatched,
    /// watching it is retried like after descriptor exhaustion.
    #[cfg(target_os = "linux")]
    fn rotate(&mut self, index: usize) {
        let Some(l) = self.listeners.get_mut(index) else {
            return;
        };
        if let Err(e) = l.rotate(self.poll.registry(), Token(LISTENER0 + index)) {
            log::error!("cannot watch the listener again ({e}); retrying in {ACCEPT_BACKOFF:?}");
            if !l.registered {
                self.accept_resume = Some(self.now + ACCEPT_BACKOFF);
            }
        }
    }
}

/// The transport for a connection accepted on `address`: TLS where that
/// address has TLS settings (TCP only: binding refuses TLS on a Unix
/// listener). `None`: it could not be set up (the socket is dropped).
fn link(config: &crate::server::ServerConfig, address: usize, stream: Accepted) -> Option<Link> {
    let stream = match stream {
        Accepted::Unix(s) => return Some(Link::Unix(s)),
        Accepted::Tcp(s) => s,
    };
    {
        #[cfg(feature = "tls")]
        if let Some(tls) = config.listens.get(address).and_then(|l| l.tls.as_ref()) {
            return match crate::server::tls::TlsStream::new(stream, tls.server_config()) {
                Ok(t) => Some(Link::Tls(Box::new(t))),
                Err(e) => {
                    log::warn!("cannot start a TLS session: {e}");
                    None
                }
            };
        }
        let _ = (config, address);
        Some(Link::Plain(stream))
    }
}

/// Closes the static open-file caches' descriptors after `e` (a failed
/// accept); whether that closed any (then the accept is worth trying
/// again at once; the next failure finds the caches empty and pauses).
fn release_cached_files(e: &io::Error) -> bool {
    let closed = crate::static_files::cache::release_all();
    if closed > 0 {
        log::warn!("accept failed ({e}): closed {closed} cached static file(s) to make room");
    }
    closed > 0
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_errno::EMFILE | libc_errno::ENFILE | libc_errno::ENOBUFS | libc_errno::ENOMEM)
    )
}

/// errno values, from rustix so no `libc` dependency is needed.
mod libc_errno {
    pub(super) const EMFILE: i32 = rustix::io::Errno::MFILE.raw_os_error();
    pub(super) const ENFILE: i32 = rustix::io::Errno::NFILE.raw_os_error();
    pub(super) const ENOBUFS: i32 = rustix::io::Errno::NOBUFS.raw_os_error();
    pub(super) const ENOMEM: i32 = rustix::io::Errno::NOMEM.raw_os_error();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Out of descriptors, accepting first takes back what the static
    /// open-file caches hold (an idle cache used to keep new clients out
    /// for good), and pauses only when that freed nothing.
    #[test]
    fn out_of_descriptors_accept_takes_the_cached_files_back_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "a").unwrap();
        let config = crate::StaticConfig::new(dir.path()).open_file_cache(Duration::from_secs(60));
        let mount = crate::static_files::Mount::open(config).unwrap();
        let headers = http::HeaderMap::new();
        let outcome =
            crate::static_files::serve(&mount, &http::Method::GET, "/a", "/a.txt", &headers);
        drop(outcome);
        let emfile = io::Error::from_raw_os_error(libc_errno::EMFILE);
        let enfile = io::Error::from_raw_os_error(libc_errno::ENFILE);
        assert!(
            crate::server::sys::out_of_descriptors(&emfile)
                && crate::server::sys::out_of_descriptors(&enfile)
        );
        // One file closed: accept again at once.
        assert!(release_cached_files(&emfile));
        // Nothing left to close: the pause.
        assert!(!release_cached_files(&enfile));
        let enobufs = io::Error::from_raw_os_error(libc_errno::ENOBUFS);
        assert!(
            !crate::server::sys::out_of_descriptors(&enobufs) && is_resource_exhaustion(&enobufs)
        );
    }
}
