//! The admin process (`App::admin_bind`): one more child of the master,
//! serving only the observability routes (`/metrics`, `/status`,
//! `/healthz`) on its own listener and never any user handler, so a
//! scrape or a health check is answered even when every worker is stuck.
//!
//! It is not a worker slot: the supervisor does not know it (it holds no
//! worker listener, takes no part in restarts or scaling, has no
//! scoreboard entry) and the master keeps it alive by itself: forked after
//! the first workers, forked again after an exit (100 ms, doubling to 5 s
//! while it keeps dying), and killed and reaped when the master exits.
//! While the master runs a stop's shutdown delay it keeps answering (the
//! health check's 503 comes from it), and it follows the master out like
//! any worker: EOF on its control channel, or the parent-death signal.

use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::{control, sys, InChild, Master, Step, WorkerStart};

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The master's view of its admin process.
pub(super) struct Admin {
    listener: TcpListener,
    pid: Option<i32>,
    /// The master's end of its control channel: held, never read (its
    /// closing is how the admin process learns the master is gone).
    channel: Option<UnixStream>,
    respawn_at: Option<Instant>,
    backoff: Duration,
    started: Instant,
    master: Pid,
}

impl Admin {
    pub(super) fn new(listener: TcpListener, master: Pid) -> Admin {
        Admin {
            listener,
            pid: None,
            channel: None,
            respawn_at: Some(Instant::now()),
            backoff: BACKOFF_MIN,
            started: Instant::now(),
            master,
        }
    }

    /// When it is to be forked (again).
    pub(super) fn due(&self) -> Option<Instant> {
        self.respawn_at
    }

    /// Whether `pid` was the admin process; if so, it is forgotten and its
    /// respawn scheduled (unless `stopping`).
    pub(super) fn exited(&mut self, pid: i32, status: &str, stopping: bool) -> bool {
        if self.pid != Some(pid) {
            return false;
        }
        self.pid = None;
        self.channel = None;
        // One that lived is no crash loop: start from the shortest delay.
        if self.started.elapsed() >= Duration::from_secs(10) {
            self.backoff = BACKOFF_MIN;
        }
        if stopping {
            info!("admin process (pid {pid}) exited: {status}");
        } else {
            warn!(
                "admin process (pid {pid}) exited: {status}; forking it again in {:?}",
                self.backoff
            );
            self.respawn_at = Some(Instant::now() + self.backoff);
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        }
        true
    }

    /// Kills and reaps it (the master is exiting).
    pub(super) fn stop(&mut self) {
        self.respawn_at = None;
        if let Some(pid) = self.pid.take() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            while matches!(
                waitpid(Pid::from_raw(pid), None),
                Err(nix::errno::Errno::EINTR)
            ) {}
        }
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        // Only in the master: a forked child drops its copy of the master
        // on its way to `worker_main`.
        if nix::unistd::getpid() == self.master {
            self.stop();
        }
    }
}

impl Master {
    /// `SIGUSR1` (reopen the access logs) to every worker and the admin
    /// process.
    pub(super) fn forward_usr1(&self) {
        let admin = self.admin.as_ref().and_then(|a| a.pid);
        for pid in self.sup.pids().into_iter().chain(admin) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGUSR1);
        }
    }

    /// Forks the admin process if it is due.
    pub(super) fn spawn_admin(&mut self) -> Step<()> {
        let Some(admin) = &mut self.admin else {
            return Ok(());
        };
        if admin.pid.is_some() || admin.respawn_at.is_none_or(|t| t > Instant::now()) {
            return Ok(());
        }
        admin.respawn_at = None;
        let socket = match admin.listener.try_clone() {
            Ok(s) => s,
            Err(e) => {
                error!("admin process: cannot copy its listener: {e}");
                admin.respawn_at = Some(Instant::now() + BACKOFF_MAX);
                return Ok(());
            }
        };
        let (master_end, child_end) = match control::pair() {
            Ok(p) => p,
            Err(e) => {
                error!("admin process: cannot create its control channel: {e}");
                admin.respawn_at = Some(Instant::now() + BACKOFF_MAX);
                return Ok(());
            }
        };
        self.signals.hold();
        let forked = sys::fork();
        if !matches!(forked, Ok(sys::Fork::Child)) {
            self.signals.release();
        }
        let admin = self.admin.as_mut().expect("checked above");
        match forked {
            Err(e) => {
                error!("admin process: fork failed: {e}");
                admin.respawn_at = Some(Instant::now() + admin.backoff);
                admin.backoff = (admin.backoff * 2).min(BACKOFF_MAX);
                Ok(())
            }
            Ok(sys::Fork::Child) => {
                if !sys::child_after_fork(self.pid) {
                    std::process::exit(1);
                }
                drop(master_end);
                Err(InChild(Box::new(WorkerStart {
                    index: 0,
                    listeners: vec![super::Socket::Tcp(socket)],
                    // Its one socket is address 0 of the admin process's
                    // settings (see `admin_config` in `server/mod.rs`).
                    addresses: vec![0],
                    active: vec![0],
                    control: child_end,
                    master_pid: self.pid.as_raw(),
                    board_entry: None,
                    admin: true,
                    listen: Vec::new(),
                    backlog: 0,
                })))
            }
            Ok(sys::Fork::Parent(pid)) => {
                drop(child_end);
                info!(
                    "spawned the admin process (pid {pid}) on http://{}",
                    admin
                        .listener
                        .local_addr()
                        .map_or("?".into(), |a| a.to_string())
                );
                admin.pid = Some(pid.as_raw());
                admin.channel = Some(master_end);
                admin.started = Instant::now();
                Ok(())
            }
        }
    }
}
