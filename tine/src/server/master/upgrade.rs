//! The master's side of a binary upgrade (`SIGUSR2`): it performs what
//! the supervisor decided (`supervisor/upgrade.rs`) with the help of
//! `server/upgrade.rs` (starting the new master, the hand-over variable).
//!
//! * The old master holds the *successor* link (one end of a socket pair
//!   whose other end the new master inherited); one byte read on it means
//!   "every worker of the new master is ready" ([`Event::MasterReady`]).
//!   The new master's exit is seen by `waitpid` like a worker's.
//! * The new master holds the *predecessor* link: it writes that byte
//!   ([`Action::TellPredecessor`]) and reads EOF once the old master has
//!   exited ([`Event::PredecessorGone`]).

use std::io::{self, Read as _, Write as _};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use mio::{Interest, Token};

use super::super::scoreboard;
use super::super::supervisor::Event;
use super::super::upgrade::{self, Handed};
use super::{Master, HANDLED_SIGNALS};

/// The old master's end of the link to the new one.
pub(super) const SUCCESSOR_TOKEN: Token = Token(usize::MAX);
/// The new master's end of the link to the old one.
pub(super) const PREDECESSOR_TOKEN: Token = Token(usize::MAX - 1);

/// How often a master alone looks for entries of the other master's
/// workers that have exited (see [`Master::sweep_board`]).
const SWEEP_AGAIN: Duration = Duration::from_secs(1);

/// The byte a new master sends when every worker is ready.
const READY_BYTE: u8 = b'R';

impl Master {
    /// [`Action::SpawnMaster`](super::super::supervisor::Action::SpawnMaster):
    /// moves the pid file aside and starts the new master.
    pub(super) fn spawn_master(&mut self) -> Event {
        let Some(exec) = self.cfg.exec.clone() else {
            return Event::MasterSpawnFailed {
                reason: "the path this process was started from is unknown".into(),
            };
        };
        let (mine, theirs) = match std::os::unix::net::UnixStream::pair() {
            Ok(p) => p,
            Err(e) => {
                return Event::MasterSpawnFailed {
                    reason: format!("cannot create the link to it: {e}"),
                }
            }
        };
        let (bridge_mine, bridge_theirs) = match super::super::control::pair() {
            Ok(p) => p,
            Err(e) => {
                return Event::MasterSpawnFailed {
                    reason: format!("cannot create the publish/subscribe bridge to it: {e}"),
                }
            }
        };
        if let Some(path) = &self.cfg.pid_file {
            if let Err(e) = std::fs::rename(path, upgrade::oldbin(path)) {
                warn!(
                    "cannot rename the pid file {} to .oldbin: {e}",
                    path.display()
                );
            }
        }
        let handed: Vec<Handed> = self
            .listeners
            .iter()
            .zip(&self.socket_info)
            // A socket only bound (a scale-up whose fork keeps failing)
            // queues nothing: the new master binds its own if it needs one.
            .filter(|(l, _)| listening(l))
            .map(|(l, &(address, mode))| Handed {
                fd: l.as_raw_fd(),
                address,
                mode,
                owns_file: self.owns_socket_file(address),
            })
            .collect();
        info!(
            "starting the new master: {} (with {} listening socket(s))",
            exec.path.display(),
            handed.len()
        );
        // No signal handler may run in the child before `exec` (see `fork`).
        self.signals.hold();
        let board = self
            .board
            .and_then(|b| b.fd())
            .map(|fd| (fd.as_raw_fd(), scoreboard::origin_monotonic_us()));
        #[cfg(feature = "tls")]
        let tickets = crate::server::tls::ticket_keys_for_upgrade();
        #[cfg(not(feature = "tls"))]
        let tickets: Option<Vec<u8>> = None;
        let spawned = upgrade::spawn(
            &exec,
            &handed,
            &theirs,
            &bridge_theirs,
            board,
            tickets.as_deref(),
            &HANDLED_SIGNALS,
        );
        self.signals.release();
        drop(theirs);
        drop(bridge_theirs);
        match spawned {
            Ok(pid) => {
                // mio's `from_std` expects a non-blocking socket.
                let watched = mine.set_nonblocking(true).map(|()| {
                    let mut stream = mio::net::UnixStream::from_std(mine);
                    let registered = self.poll.registry().register(
                        &mut stream,
                        SUCCESSOR_TOKEN,
                        Interest::READABLE,
                    );
                    (stream, registered)
                });
                let (stream, registered) = match watched {
                    Ok((s, r)) => (Some(s), r),
                    Err(e) => (None, Err(e)),
                };
                if let Err(e) = registered {
                    // Never hearing "ready", the upgrade times out and is
                    // rolled back.
                    error!("cannot watch the link to the new master: {e}");
                }
                self.successor = stream;
                match super::bridge::Bridge::new(
                    bridge_mine,
                    self.cfg.relay_limit,
                    self.poll.registry(),
                ) {
                    Ok(b) => self.bridge = Some(b),
                    Err(e) => warn!(
                        "the publish/subscribe bridge to the new master: {e}; the two \
                         generations' subscribers will not hear each other"
                    ),
                }
                Event::MasterSpawned { pid }
            }
            Err(e) => Event::MasterSpawnFailed {
                reason: e.to_string(),
            },
        }
    }

    /// The successor link is readable: "ready", or EOF (its exit follows).
    pub(super) fn on_successor(&mut self, happened: &mut Vec<Event>) {
        let Some(stream) = self.successor.as_mut() else {
            return;
        };
        let mut buf = [0u8; 16];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => {
                    self.drop_successor();
                    return;
                }
                Ok(n) => {
                    if buf[..n].contains(&READY_BYTE) {
                        happened.push(Event::MasterReady);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.drop_successor();
                    return;
                }
            }
        }
    }

    pub(super) fn drop_successor(&mut self) {
        if let Some(mut s) = self.successor.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
    }

    /// The predecessor link is readable: only EOF is expected.
    pub(super) fn on_predecessor(&mut self, happened: &mut Vec<Event>) {
        let Some(stream) = self.predecessor.as_mut() else {
            return;
        };
        let mut buf = [0u8; 16];
        let gone = loop {
            match stream.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        if gone {
            if let Some(mut s) = self.predecessor.take() {
                let _ = self.poll.registry().deregister(&mut s);
            }
            happened.push(Event::PredecessorGone);
            if let Some(board) = self.board {
                // Its stop (the hand-over) was its own, not this master's.
                board.forget_other_masters();
            }
            self.sweep_at = Some(Instant::now());
        }
    }

    /// [`Action::TellPredecessor`](super::super::supervisor::Action::TellPredecessor).
    pub(super) fn tell_predecessor(&mut self) {
        if let Some(stream) = self.predecessor.as_mut() {
            if let Err(e) = stream.write_all(&[READY_BYTE]) {
                error!("cannot tell the old master this one is ready: {e}");
            }
        }
    }

    /// [`Action::HandOver`](super::super::supervisor::Action::HandOver):
    /// systemd learns the new main pid before this master exits.
    pub(super) fn hand_over(&mut self, pid: i32) {
        // The link stays open until this master exits: its EOF is how the
        // new master learns that the old one is gone.
        self.handed_over = true;
        if let Some(n) = &mut self.notify {
            n.hand_over(pid);
        }
    }

    /// [`Action::UpgradeFailed`](super::super::supervisor::Action::UpgradeFailed):
    /// the pid file comes back; systemd hears why.
    pub(super) fn upgrade_failed(&mut self, reason: &str) {
        self.drop_successor();
        self.drop_bridge();
        if let Some(board) = self.board {
            // The new master has exited (or never started): its stop
            // mark, if it got one, goes with it.
            board.forget_other_masters();
        }
        self.sweep_at = Some(Instant::now());
        self.restore_pid_file();
        if let Some(n) = &mut self.notify {
            n.status(&format!("binary upgrade failed: {reason}"));
        }
    }

    /// The pid file names this master again (`PATH.oldbin` back to
    /// `PATH`), once an upgrade failed. The new master, when it exits,
    /// leaves a pid file that is not its own in place.
    pub(super) fn restore_pid_file(&mut self) {
        if let Some(path) = &self.cfg.pid_file {
            let old = upgrade::oldbin(path);
            if old.exists() {
                if let Err(e) = std::fs::rename(&old, path) {
                    warn!(
                        "cannot rename {} back to {}: {e}",
                        old.display(),
                        path.display()
                    );
                }
            }
        }
    }

    /// Alone again (an upgrade rolled back, or the old master gone): the
    /// other master's entries in the shared scoreboard are freed once
    /// their processes have exited; looked at again every second while
    /// some still run.
    pub(super) fn sweep_board(&mut self) {
        let Some(board) = self.board else {
            self.sweep_at = None;
            return;
        };
        if self.sup.upgrading() || self.predecessor.is_some() {
            self.sweep_at = None; // another master shares the region
            return;
        }
        let ours: std::collections::BTreeSet<usize> = self.entries.values().copied().collect();
        let left = board.sweep(|i| ours.contains(&i));
        self.sweep_at = (left > 0).then(|| Instant::now() + SWEEP_AGAIN);
    }

    /// Whether the file of `address` (a Unix socket) is one this master
    /// removes when it stops: one it bound, or one an old master handed
    /// over with that duty; never a socket unit's. Handed on to a new
    /// master with the socket, so that it removes exactly these.
    fn owns_socket_file(&self, address: usize) -> bool {
        let Some(path) = self.addrs.get(address).and_then(|a| a.path()) else {
            return false;
        };
        self.cfg.socket_files.iter().any(|f| f.path == path)
    }

    /// On the way out: the Unix socket files this master bound (or took
    /// over) are removed, unless it handed them to a new master, or it is
    /// a new master stopped while the old one still serves them.
    pub(super) fn remove_socket_files(&self) {
        if self.handed_over || self.predecessor.is_some() {
            return;
        }
        self.cfg
            .socket_files
            .iter()
            .for_each(super::listener::SocketFile::remove);
    }

    /// On the way out after a hand-over: `PATH.oldbin` is this master's.
    pub(super) fn remove_oldbin(&self) {
        let Some(path) = &self.cfg.pid_file else {
            return;
        };
        if !self.handed_over {
            return;
        }
        let old = upgrade::oldbin(path);
        let ours = std::fs::read_to_string(&old)
            .is_ok_and(|t| t.trim().parse::<i32>().ok() == Some(self.pid.as_raw()));
        if ours {
            if let Err(e) = std::fs::remove_file(&old) {
                warn!("cannot remove {}: {e}", old.display());
            }
        }
    }
}

/// Whether `l` listens (`SO_ACCEPTCONN`; macOS has no such option: every
/// socket counts as listening there).
fn listening(l: &impl std::os::fd::AsFd) -> bool {
    #[cfg(not(target_vendor = "apple"))]
    return rustix::net::sockopt::socket_acceptconn(l).unwrap_or(true);
    #[cfg(target_vendor = "apple")]
    {
        let _ = l;
        true
    }
}
