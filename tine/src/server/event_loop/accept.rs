//! The listening sockets of one loop: which ones it accepts on, accepting
//! (within the connection limits), and pausing when descriptors run out.

use std::io;
use std::time::Duration;

use mio::net::TcpListener;
use mio::{Interest, Token};

use super::{Conn, EventLoop, Slot, LISTENER0};

/// Pause in accepting after the process ran out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub(super) struct Listener {
    pub(super) socket: TcpListener,
    /// The address it serves: its settings are `config.listens[address]`.
    pub(super) address: usize,
    /// This process accepts on it (a worker holds every listener of the
    /// master but accepts only on its own, plus adopted ones).
    pub(super) active: bool,
    pub(super) registered: bool,
}

impl EventLoop {
    /// Stops accepting on a listener the master had lent this worker
    /// (another worker accepts on it again); the socket stays open.
    pub(super) fn release(&mut self, index: usize) {
        if let Some(l) = self.listeners.get_mut(index).filter(|l| l.active) {
            log::info!("releasing listener {index}");
            l.active = false;
            if l.registered {
                let _ = self.poll.registry().deregister(&mut l.socket);
                l.registered = false;
            }
        }
    }

    pub(super) fn set_accepting(&mut self, on: bool) {
        let on = on && self.drain_deadline.is_none() && self.accept_resume.is_none();
        for (i, l) in self.listeners.iter_mut().enumerate() {
            if on && l.active && !l.registered {
                let token = Token(LISTENER0 + i);
                if let Err(e) =
                    self.poll
                        .registry()
                        .register(&mut l.socket, token, Interest::READABLE)
                {
                    log::error!("cannot watch the listener: {e}");
                    continue;
                }
                l.registered = true;
            } else if !on && l.registered {
                let _ = self.poll.registry().deregister(&mut l.socket);
                l.registered = false;
            }
        }
    }

    pub(super) fn accept(&mut self, index: usize) {
        let max = self.shared.config.limits.max_connections;
        loop {
            if self.conns.len() >= max {
                log::warn!("{max} connections open (the limit); pausing accept");
                self.set_accepting(false);
                return;
            }
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            if !listener.registered {
                return;
            }
            // Settings that differ per listener (TLS, the PROXY protocol)
            // are `self.shared.config.listens[address]`.
            let address = listener.address;
            match listener.socket.accept() {
                Ok((mut stream, peer)) => {
                    log::trace!("accepted {peer} on listener {index} (address {address})");
                    if !self.per_ip.admit(peer.ip()) {
                        log::debug!("{} has too many connections; closing one", peer.ip());
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    // Apple systems have no MSG_NOSIGNAL: a write to a peer
                    // that has gone must not raise SIGPIPE should the app
                    // have restored its default action.
                    #[cfg(target_vendor = "apple")]
                    let _ = socket2::SockRef::from(&stream).set_nosigpipe(true);
                    let entry = self.conns.vacant_entry();
                    let key = entry.key();
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        Token(key),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        log::warn!("cannot watch a new connection: {e}");
                        self.per_ip.release(peer.ip());
                        continue;
                    }
                    self.generation = self.generation.wrapping_add(1);
                    if let Some(e) = super::scoreboard::mine() {
                        super::scoreboard::Entry::gauge(&e.gauges.connections, 1);
                    }
                    let mut conn = Conn::new(stream, peer, self.now);
                    if self
                        .shared
                        .config
                        .listens
                        .get(address)
                        .is_some_and(|l| l.proxy_protocol)
                    {
                        conn.expect_proxy_header();
                    }
                    entry.insert(Slot {
                        conn,
                        generation: self.generation,
                        deadline: self.now,
                        timer_tick: None,
                        scheduled: false,
                    });
                    let deadline = self.now + self.shared.config.limits.header_timeout;
                    self.set_deadline(key, deadline);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_resource_exhaustion(&e) => {
                    log::warn!("accept failed ({e}); pausing accept for {ACCEPT_BACKOFF:?}");
                    self.set_accepting(false);
                    self.accept_resume = Some(self.now + ACCEPT_BACKOFF);
                    return;
                }
                // ECONNABORTED and friends concern one connection only.
                Err(e) => log::debug!("accept: {e}"),
            }
        }
    }
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
