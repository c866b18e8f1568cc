//! The binary upgrade (`SIGUSR2`), on both sides: the old master that
//! starts a new one and hands over, and the new master that tells its
//! predecessor when it is ready.
//!
//! | event in | actions out |
//! |---|---|
//! | `Command(Upgrade)` | `SpawnMaster` (answered by `MasterSpawned` or `MasterSpawnFailed`); refused with a log line while stopping, while an upgrade is under way, or while this master's own predecessor has not exited |
//! | `MasterReady` (the new master says all its workers are ready) | `HandOver` (systemd learns the new main pid), then the graceful stop of every worker, as on `SIGTERM`; the new master is no longer this master's business |
//! | `Exited` of the new master, before it was ready | `UpgradeFailed` (pid file back, `READY=1` and `STATUS=` to systemd): the old master serves on |
//! | `Tick` past the upgrade timeout | `RestorePidFile`, `Signal Term` to the new master (`Kill` after the graceful timeout), then `UpgradeFailed` once its exit is reaped |
//! | `Command(Stop)` / `Command(Quit)` during an upgrade | the new master is stopped with the workers (`Term` / `Kill`); the old one exits once it is reaped too |
//! | (new master) every worker ready, predecessor still there | `TellPredecessor`, once |
//! | (new master) `PredecessorGone` | `SIGUSR2` accepted from now on |

use std::time::{Duration, Instant};

use crate::server::timer::later;
use log::{error, info, warn};

use super::{Action, Sig, Supervisor};

/// How long a new master may take to report every worker ready, by
/// default ([`App::upgrade_timeout`](crate::App::upgrade_timeout)).
pub(crate) const UPGRADE_TIMEOUT: Duration = Duration::from_secs(60);

/// An upgrade under way, seen from the old master.
#[derive(Debug, Clone)]
pub(crate) struct Upgrade {
    /// The new master's pid, once spawned.
    pid: Option<i32>,
    /// When it must be ready.
    deadline: Instant,
    /// Why it is being stopped (set once it was sent `SIGTERM`).
    abandoned: Option<String>,
    /// When a new master that was sent `SIGTERM` gets `SIGKILL`.
    kill_at: Option<Instant>,
}

/// The upgrade settings and state of a [`Supervisor`].
#[derive(Debug, Clone)]
pub(crate) struct UpgradeState {
    pub(super) timeout: Duration,
    /// The upgrade this master started, if under way.
    pub(super) current: Option<Upgrade>,
    /// This master is itself a new master whose old master (this pid) has
    /// not exited yet.
    pub(super) predecessor: Option<i32>,
    /// `TellPredecessor` was sent.
    pub(super) told: bool,
    /// Why every `SIGUSR2` is refused, if it is (see
    /// [`Supervisor::refuse_upgrades`]).
    pub(super) refused: Option<&'static str>,
}

impl Default for UpgradeState {
    fn default() -> Self {
        UpgradeState {
            timeout: UPGRADE_TIMEOUT,
            current: None,
            predecessor: None,
            told: false,
            refused: None,
        }
    }
}

impl Supervisor {
    /// Sets the upgrade timeout and, for a master started by a binary
    /// upgrade, its predecessor's pid (the old master, still running).
    pub(crate) fn set_upgrade(&mut self, timeout: Duration, predecessor: Option<i32>) {
        self.upgrade.timeout = timeout;
        self.upgrade.predecessor = predecessor;
    }

    /// Refuses every `SIGUSR2`, saying `why` in the log (a master that is
    /// process 1 of a container: see `master/upgrade.rs`).
    pub(crate) fn refuse_upgrades(&mut self, why: &'static str) {
        self.upgrade.refused = Some(why);
    }

    /// Whether a binary upgrade started by this master is under way.
    pub(crate) fn upgrading(&self) -> bool {
        self.upgrade.current.is_some()
    }

    /// `SIGUSR2`: start the new master, unless refused (see the module docs).
    pub(super) fn start_upgrade(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.stopping {
            info!("SIGUSR2 ignored: stopping");
            return;
        }
        if let Some(why) = self.upgrade.refused {
            warn!("SIGUSR2 refused: {why}");
            return;
        }
        if let Some(u) = &self.upgrade.current {
            let pid = u.pid.map_or("starting".to_owned(), |p| format!("pid {p}"));
            warn!("SIGUSR2 refused: a binary upgrade is already under way (new master {pid})");
            return;
        }
        if let Some(old) = self.upgrade.predecessor {
            warn!(
                "SIGUSR2 refused: this master was started by a binary upgrade \
                 and the old master (pid {old}) has not exited yet"
            );
            return;
        }
        info!(
            "SIGUSR2 received: starting a new master from the executable \
             (ready timeout {:?})",
            self.upgrade.timeout
        );
        self.upgrade.current = Some(Upgrade {
            pid: None,
            deadline: later(now, self.upgrade.timeout),
            abandoned: None,
            kill_at: None,
        });
        out.push(Action::SpawnMaster);
    }

    pub(super) fn master_spawned(&mut self, pid: i32, now: Instant, out: &mut Vec<Action>) {
        let stopping = self.stopping;
        let grace = self.graceful_timeout;
        let Some(u) = &mut self.upgrade.current else {
            return;
        };
        u.pid = Some(pid);
        info!("new master (pid {pid}) started; waiting for its workers to be ready");
        if stopping && u.kill_at.is_none() {
            // A stop came while it was being spawned.
            u.abandoned
                .get_or_insert_with(|| "the old master was asked to stop".into());
            u.kill_at = Some(later(now, grace));
            out.push(Action::Signal {
                pid,
                sig: Sig::Term,
            });
        }
    }

    pub(super) fn master_spawn_failed(&mut self, reason: &str, out: &mut Vec<Action>) {
        if self.upgrade.current.take().is_none() {
            return;
        }
        let why = format!("cannot start the new master: {reason}");
        error!("binary upgrade failed: {why}; the old master serves on");
        out.push(Action::UpgradeFailed { reason: why });
    }

    /// The new master reported every worker ready: hand over and stop.
    pub(super) fn master_ready(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(u) = &self.upgrade.current else {
            return;
        };
        let (Some(pid), None) = (u.pid, &u.abandoned) else {
            return; // being stopped already: too late
        };
        self.upgrade.current = None;
        info!("new master (pid {pid}) ready: handing over, the old master stops");
        out.push(Action::HandOver { pid });
        self.stop(true, now, out);
    }

    /// A child was reaped: if it was the new master, the upgrade is over.
    /// Whether it was.
    pub(super) fn master_exited(&mut self, pid: i32, status: &str, out: &mut Vec<Action>) -> bool {
        let Some(u) = &self.upgrade.current else {
            return false;
        };
        if u.pid != Some(pid) {
            return false;
        }
        let reason = match &u.abandoned {
            Some(why) => format!("{why}; the new master (pid {pid}) exited: {status}"),
            None => format!("the new master (pid {pid}) exited before it was ready: {status}"),
        };
        self.upgrade.current = None;
        if self.stopping {
            info!("{reason}");
        } else {
            error!("binary upgrade failed: {reason}; the old master serves on");
        }
        out.push(Action::UpgradeFailed { reason });
        true
    }

    /// The new master's timers: the ready deadline, then `SIGKILL`.
    pub(super) fn upgrade_timers(&mut self, now: Instant, out: &mut Vec<Action>) {
        let timeout = self.upgrade.timeout;
        let grace = self.graceful_timeout;
        let Some(u) = &mut self.upgrade.current else {
            return;
        };
        let Some(pid) = u.pid else {
            return;
        };
        if u.abandoned.is_none() && u.deadline <= now {
            let why = format!("the new master (pid {pid}) was not ready within {timeout:?}");
            error!("binary upgrade failed: {why}; stopping it, the old master serves on");
            u.abandoned = Some(why);
            u.kill_at = Some(later(now, grace));
            out.push(Action::RestorePidFile);
            out.push(Action::Signal {
                pid,
                sig: Sig::Term,
            });
        } else if u.kill_at.is_some_and(|k| k <= now) {
            u.kill_at = None;
            warn!("new master (pid {pid}) still running after the graceful timeout; SIGKILL");
            out.push(Action::Signal {
                pid,
                sig: Sig::Kill,
            });
        }
    }

    /// A stop during an upgrade stops the new master as well.
    pub(super) fn stop_upgrade(&mut self, graceful: bool, now: Instant, out: &mut Vec<Action>) {
        let grace = self.graceful_timeout;
        let Some(u) = &mut self.upgrade.current else {
            return;
        };
        if u.abandoned.is_none() {
            u.abandoned = Some("the old master was asked to stop".into());
        }
        let Some(pid) = u.pid else {
            return; // signalled once spawned (`master_spawned`)
        };
        if graceful {
            if u.kill_at.is_none() {
                info!("stopping the new master (pid {pid}) too");
                out.push(Action::Signal {
                    pid,
                    sig: Sig::Term,
                });
                u.kill_at = Some(later(now, grace));
            }
        } else {
            u.kill_at = None;
            out.push(Action::Signal {
                pid,
                sig: Sig::Kill,
            });
        }
    }

    /// The earliest upgrade deadline.
    pub(super) fn upgrade_deadline(&self) -> Option<Instant> {
        let u = self.upgrade.current.as_ref()?;
        u.pid?;
        match u.abandoned {
            None => Some(u.deadline),
            Some(_) => u.kill_at,
        }
    }

    /// Whether a new master this one started still has to be reaped.
    pub(super) fn upgrade_child_alive(&self) -> bool {
        self.upgrade
            .current
            .as_ref()
            .is_some_and(|u| u.pid.is_some())
    }

    /// New master: tell the old one once every worker is ready.
    pub(super) fn tell_predecessor(&mut self, out: &mut Vec<Action>) {
        if self.upgrade.predecessor.is_some() && !self.upgrade.told && self.all_ready() {
            self.upgrade.told = true;
            info!(
                "every worker ready: telling the old master (pid {}) to stop",
                self.upgrade.predecessor.unwrap_or(0)
            );
            out.push(Action::TellPredecessor);
        }
    }

    /// New master: the old one has exited.
    pub(super) fn predecessor_gone(&mut self) {
        if let Some(old) = self.upgrade.predecessor.take() {
            info!("the old master (pid {old}) has exited; this master serves alone");
        }
    }
}
