//! The operations that span several events: rolling restart (and
//! recycling, a rolling restart of one slot), scale-up (with its binds)
//! and scale-down (with its hand-over), each driven forward by
//! `Supervisor::drive` as workers report `READY` or exit.

use std::collections::VecDeque;
use std::time::Instant;

use crate::server::timer::later;
use log::{debug, error, info, warn};

use super::{
    Action, Command, Mode, Role, Slot, Socket, Supervisor, WorkerId, MAX_WORKERS, RECYCLE_RETRY,
};

/// The operation under way (at most one; others wait in `ops`).
#[derive(Debug)]
pub(super) enum Current {
    /// Replacing slot `slot`'s worker by `candidate` (none yet: fork one).
    /// A rolling restart goes through every slot; a recycle (`recycle`:
    /// the worker to replace) only through that worker's slot.
    Reload {
        slot: usize,
        candidate: Option<WorkerId>,
        deadline: Instant,
        recycle: Option<WorkerId>,
        /// (Rolling restart) the fork of `slot`'s replacement failed: it
        /// is forked again at this time (the slot's fork backoff).
        retry_at: Option<Instant>,
        /// (Rolling restart) slots passed whose old worker was kept: its
        /// replacement died or was not ready in time.
        kept: usize,
    },
    /// Waiting for `Event::Bound` answers.
    ScaleUp {
        sockets: Vec<usize>,
        /// Sockets taken back from slots that had adopted them: (socket, slot).
        taken: Vec<(usize, usize)>,
        /// Addresses still to bind a socket for.
        binds: VecDeque<usize>,
    },
    /// Moving the sockets of slot `removed` (the last) to `survivor`.
    ScaleDown {
        removed: usize,
        survivor: usize,
        /// Length of the survivor's socket list before the hand-over.
        survivor_had: usize,
        /// The survivor's worker must have inherited this many sockets.
        need_fds: usize,
        /// A replacement for the survivor, forked because its current worker
        /// was forked before one of the moved sockets existed.
        candidate: Option<WorkerId>,
        deadline: Instant,
    },
}

impl Supervisor {
    /// The answer to `Action::Bind`: the next bind, or the new slot's fork;
    /// on failure the scale-up is dropped and taken sockets go back.
    pub(super) fn bound(&mut self, address: usize, ok: bool, now: Instant, out: &mut Vec<Action>) {
        let Some(Current::ScaleUp {
            mut sockets,
            taken,
            mut binds,
        }) = self.current.take()
        else {
            return;
        };
        if !ok {
            error!("scale-up failed: cannot bind address {address}");
            for (socket, donor) in taken {
                if let Some(d) = self.slots.get_mut(donor) {
                    d.sockets.push(socket);
                }
            }
            return;
        }
        let id = self.sockets.len();
        self.sockets.push(Socket {
            address,
            listening: false,
        });
        sockets.push(id);
        binds.pop_front();
        if let Some(&next) = binds.front() {
            out.push(Action::Bind { address: next });
            self.current = Some(Current::ScaleUp {
                sockets,
                taken,
                binds,
            });
        } else {
            self.finish_scale_up(sockets, now, out);
        }
    }

    /// Sends `ADOPT` for each of `sockets` to `id`; each counts as a
    /// `READY` to wait for.
    fn adopt(&mut self, id: WorkerId, sockets: &[usize], out: &mut Vec<Action>) {
        if let Some(w) = self.workers.get_mut(&id) {
            for &s in sockets {
                // Counted even if the channel turns out closed: then this
                // worker never confirms, and the operation times out.
                w.acks_pending += 1;
                if !w.accepts.contains(&s) {
                    w.accepts.push(s);
                }
                out.push(Action::Adopt {
                    worker: id,
                    socket: s,
                });
            }
        }
    }

    /// Promotes candidate `c` to current worker of `slot` and retires the
    /// one it replaces.
    fn promote(&mut self, slot: usize, c: WorkerId, now: Instant, out: &mut Vec<Action>) {
        let old = self.slots[slot].worker.replace(c);
        if let Some(cw) = self.workers.get_mut(&c) {
            cw.role = Role::Current;
        }
        if let Some(old) = old.filter(|&o| o != c) {
            if let (Some(ow), Some(cw)) = (self.workers.get(&old), self.workers.get(&c)) {
                info!(
                    "worker {slot} replaced (pid {} -> {}); draining the old one",
                    ow.pid.unwrap_or(0),
                    cw.pid.unwrap_or(0)
                );
            }
            self.retire(old, now, out);
        }
    }

    /// Advances the current operation as far as it can go now, then starts
    /// queued ones.
    pub(super) fn drive(&mut self, now: Instant, out: &mut Vec<Action>) {
        while !self.stopping {
            match self.current {
                None => {
                    let Some(op) = self.ops.pop_front() else {
                        return;
                    };
                    self.start_op(op, now, out);
                }
                Some(Current::ScaleUp { .. }) => return,
                Some(Current::Reload {
                    slot,
                    candidate: None,
                    recycle: Some(old),
                    ..
                }) => {
                    if !self.recycle_step(slot, old, now, out) {
                        self.current = None;
                        continue;
                    }
                    return;
                }
                Some(Current::Reload {
                    slot,
                    candidate: None,
                    recycle: None,
                    retry_at,
                    kept,
                    ..
                }) => {
                    if slot >= self.slots.len() {
                        if kept == 0 {
                            info!("rolling restart complete");
                        } else {
                            warn!(
                                "rolling restart over; {kept} worker(s) kept their old \
                                 process (the replacement died or was not ready in time)"
                            );
                        }
                        self.current = None;
                        continue;
                    }
                    let s = &self.slots[slot];
                    let next = Current::Reload {
                        slot: slot + 1,
                        candidate: None,
                        deadline: now,
                        recycle: None,
                        retry_at: None,
                        kept,
                    };
                    if s.removing || s.worker.is_none() {
                        // A slot waiting for its respawn gets a new worker anyway.
                        self.current = Some(next);
                        continue;
                    }
                    if retry_at.is_some_and(|t| t > now) {
                        // Its replacement could not be forked: wait for the
                        // backoff (`next_deadline`).
                        return;
                    }
                    if retry_at.is_some() {
                        info!("rolling restart: forking a replacement for worker {slot} again");
                    } else {
                        // Counted once per slot and restart, not per attempt.
                        self.count_restart(slot, super::Restart::Reload);
                    }
                    let c = self.fork(slot, Role::Candidate, "reload", now, out);
                    self.current = Some(Current::Reload {
                        slot,
                        candidate: Some(c),
                        deadline: later(now, self.ready_timeout),
                        recycle: None,
                        retry_at: None,
                        kept,
                    });
                    return;
                }
                Some(Current::Reload {
                    slot,
                    candidate: Some(c),
                    deadline,
                    recycle,
                    kept,
                    ..
                }) => {
                    let next = |kept| Current::Reload {
                        slot: slot + 1,
                        candidate: None,
                        deadline,
                        recycle,
                        retry_at: None,
                        kept,
                    };
                    let Some(cw) = self.workers.get(&c) else {
                        // It died before READY (logged). (A rolling
                        // restart's failed fork is retried: `fork_failed`;
                        // a recycle's, like this, by `recycle_step`.)
                        if recycle.is_none() {
                            warn!("rolling restart: no replacement for worker {slot}; keeping it");
                        }
                        self.current = Some(next(kept + 1));
                        continue;
                    };
                    if cw.role == Role::Retiring {
                        self.current = Some(next(kept + 1));
                        continue;
                    }
                    if !cw.ready {
                        return;
                    }
                    self.promote(slot, c, now, out);
                    self.current = Some(next(kept));
                }
                Some(Current::ScaleDown {
                    removed,
                    survivor,
                    survivor_had,
                    need_fds,
                    candidate,
                    deadline,
                }) => {
                    if let Some(c) = candidate {
                        match self.workers.get(&c).map(|w| (w.role, w.ready)) {
                            Some((Role::Candidate, false)) => return,
                            Some((Role::Candidate, true)) => self.promote(survivor, c, now, out),
                            // Promoted already: the old survivor died.
                            Some((Role::Current, _)) => {}
                            _ => {
                                self.abort_scale_down(
                                    "the survivor's replacement failed",
                                    now,
                                    out,
                                );
                                continue;
                            }
                        }
                        self.current = Some(Current::ScaleDown {
                            removed,
                            survivor,
                            survivor_had,
                            need_fds,
                            candidate: None,
                            deadline,
                        });
                    }
                    let confirmed = self.slots[survivor]
                        .worker
                        .and_then(|id| self.workers.get(&id))
                        .is_some_and(|w| {
                            w.ready && w.acks_pending == 0 && w.channel && w.fds >= need_fds
                        });
                    if !confirmed {
                        return;
                    }
                    if let Some(id) = self.slots[removed].worker.take() {
                        self.retire(id, now, out);
                    }
                    self.slots.truncate(removed);
                    info!(
                        "scaled down to {} workers (worker {survivor} now accepts on listeners {:?})",
                        self.slots.len(),
                        self.slots[survivor].sockets
                    );
                    self.current = None;
                }
            }
        }
    }

    /// The fork of `id` failed: if it was a rolling restart's replacement,
    /// the restart stays on its slot and forks it again after the slot's
    /// backoff (100 ms doubling to 5 s, as a respawn). Moving on instead
    /// (as before) ended the restart with old workers left, reported as
    /// complete, and never tried again: a `SIGHUP` sent while the process
    /// limit was reached was lost for good. (A recycle's failed fork is
    /// retried by `recycle_step`, a scale-down's aborts it.)
    pub(super) fn replacement_fork_failed(&mut self, id: WorkerId, now: Instant) {
        let Some(Current::Reload {
            slot,
            candidate: Some(c),
            deadline,
            recycle: None,
            kept,
            ..
        }) = self.current
        else {
            return;
        };
        if c != id {
            return;
        }
        let delay = self.next_backoff(slot);
        warn!(
            "rolling restart: no replacement for worker {slot} (its fork failed); \
             keeping it, forking again in {delay:?}"
        );
        self.current = Some(Current::Reload {
            slot,
            candidate: None,
            deadline,
            recycle: None,
            retry_at: Some(now + delay),
            kept,
        });
    }

    /// Whether a rolling restart waits to fork a replacement again.
    pub(super) fn reload_retrying(&self) -> bool {
        matches!(
            self.current,
            Some(Current::Reload {
                recycle: None,
                retry_at: Some(_),
                ..
            })
        )
    }

    /// Undoes a scale-down that could not complete: the removed worker
    /// keeps its slot and sockets.
    pub(super) fn abort_scale_down(&mut self, why: &str, now: Instant, out: &mut Vec<Action>) {
        let Some(Current::ScaleDown {
            removed,
            survivor,
            survivor_had,
            candidate,
            ..
        }) = self.current.take()
        else {
            return;
        };
        warn!("scale-down aborted: {why}; keeping worker {removed}");
        self.slots[survivor].sockets.truncate(survivor_had);
        self.slots[removed].removing = false;
        if self.slots[removed].worker.is_none() {
            self.schedule_respawn(removed, now);
        }
        if let Some(c) = candidate {
            if self
                .workers
                .get(&c)
                .is_some_and(|w| w.role == Role::Candidate)
            {
                self.retire(c, now, out);
            }
        }
    }

    /// One turn of a recycle of worker `old` at `slot`: forks its
    /// replacement and returns `true` (wait for it) if `old` is still its
    /// slot's current worker and has not been replaced yet; otherwise the
    /// recycle is over (`false`), and if `old` is still serving, its
    /// replacement failed: it is tried again after [`RECYCLE_RETRY`].
    fn recycle_step(
        &mut self,
        slot: usize,
        old: WorkerId,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> bool {
        let Some(w) = self.workers.get_mut(&old) else {
            return false;
        };
        let current = w.role == Role::Current
            && self
                .slots
                .get(w.slot)
                .is_some_and(|s| s.worker == Some(old) && !s.removing);
        let pid = w.pid.unwrap_or(0);
        if !current {
            debug!(
                "worker {} (pid {pid}) was replaced before its recycle",
                w.slot
            );
            return false;
        }
        if slot != w.slot {
            // Its replacement died, could not be forked or was never ready.
            warn!(
                "recycling worker {} (pid {pid}) failed; keeping it, trying again in {:?}",
                w.slot, RECYCLE_RETRY
            );
            w.recycle_retry = Some(now + RECYCLE_RETRY);
            return false;
        }
        info!(
            "recycling worker {slot} (pid {pid}): {}; starting its replacement",
            w.recycle.as_deref().unwrap_or("asked")
        );
        let c = self.fork(slot, Role::Candidate, "recycle", now, out);
        self.count_restart(slot, super::Restart::Recycled);
        self.current = Some(Current::Reload {
            slot,
            candidate: Some(c),
            deadline: later(now, self.ready_timeout),
            recycle: Some(old),
            retry_at: None,
            kept: 0,
        });
        true
    }

    fn start_op(&mut self, op: Command, now: Instant, out: &mut Vec<Action>) {
        match op {
            Command::Reload => {
                info!("rolling restart of {} workers", self.slots.len());
                self.current = Some(Current::Reload {
                    slot: 0,
                    candidate: None,
                    deadline: now,
                    recycle: None,
                    retry_at: None,
                    kept: 0,
                });
            }
            Command::Recycle(old) => {
                if let Some(w) = self.workers.get(&old) {
                    self.current = Some(Current::Reload {
                        slot: w.slot,
                        candidate: None,
                        deadline: now,
                        recycle: Some(old),
                        retry_at: None,
                        kept: 0,
                    });
                }
            }
            // A worker added now would accept on a socket bound after the
            // new master got its sockets, which the old master's stop
            // would close with connections queued on it. Checked here,
            // where the socket would be bound, so a `SIGTTIN` queued
            // behind another operation before the upgrade began is caught
            // too.
            Command::ScaleUp if self.upgrading() => warn!(
                "SIGTTIN dropped: a binary upgrade is under way (a new worker's listening \
                 socket would not reach the new master); send it again afterwards"
            ),
            Command::ScaleUp if self.slots.len() >= MAX_WORKERS => {
                warn!("SIGTTIN dropped: {MAX_WORKERS} workers is the most a server runs");
            }
            Command::ScaleUp => self.start_scale_up(now, out),
            Command::ScaleDown => self.start_scale_down(now, out),
            Command::Stop | Command::Quit | Command::Upgrade => {}
        }
    }

    fn start_scale_up(&mut self, now: Instant, out: &mut Vec<Action>) {
        let mut sockets = Vec::new();
        let mut taken = Vec::new();
        let mut binds = VecDeque::new();
        for (address, &mode) in self.modes.iter().enumerate() {
            let of_address = |slot: &Slot| -> Vec<usize> {
                slot.sockets
                    .iter()
                    .copied()
                    .filter(|&s| self.sockets[s].address == address)
                    .collect()
            };
            if mode == Mode::Shared {
                if let Some(first) = self.slots.first() {
                    sockets.extend(of_address(first));
                }
                continue;
            }
            // Take back a socket a slot adopted in a scale-down (the slot
            // holding most of this address's sockets), else bind one more.
            let donor = (0..self.slots.len())
                .map(|i| (of_address(&self.slots[i]), i))
                .filter(|(own, _)| own.len() > 1)
                .max_by_key(|(own, i)| (own.len(), usize::MAX - i));
            match donor {
                Some((own, d)) => {
                    let s = *own.last().expect("more than one");
                    self.slots[d].sockets.retain(|&x| x != s);
                    taken.push((s, d));
                    sockets.push(s);
                }
                None => binds.push_back(address),
            }
        }
        match binds.front() {
            None => self.finish_scale_up(sockets, now, out),
            Some(&address) => {
                out.push(Action::Bind { address });
                self.current = Some(Current::ScaleUp {
                    sockets,
                    taken,
                    binds,
                });
            }
        }
    }

    fn finish_scale_up(&mut self, sockets: Vec<usize>, now: Instant, out: &mut Vec<Action>) {
        let slot = self.slots.len();
        info!(
            "scaling up to {} workers (worker {slot} accepts on listeners {sockets:?})",
            slot + 1
        );
        self.slots.push(Slot::new(sockets));
        let id = self.fork(slot, Role::Current, "scale-up", now, out);
        self.slots[slot].worker = Some(id);
    }

    fn start_scale_down(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.slots.len() <= 1 {
            warn!("SIGTTOU ignored: already down to 1 worker");
            return;
        }
        let removed = self.slots.len() - 1;
        // Shared sockets are accepted on by every slot already.
        let moved: Vec<usize> = self.slots[removed]
            .sockets
            .iter()
            .copied()
            .filter(|&s| self.modes[self.sockets[s].address] == Mode::ReusePort)
            .collect();
        let need_fds = moved.iter().max().map_or(0, |&m| m + 1);
        // Prefer a survivor whose worker inherited the moved sockets (it
        // can ADOPT them), then a ready one, then the fewest sockets.
        let key = |i: usize| {
            let w = self.slots[i].worker.and_then(|id| self.workers.get(&id));
            let has_fds = w.is_some_and(|w| w.channel && w.pid.is_some() && w.fds >= need_fds);
            let ready = w.is_some_and(|w| w.ready);
            (!has_fds, !ready, self.slots[i].sockets.len(), i)
        };
        let survivor = (0..removed).min_by_key(|&i| key(i)).unwrap_or(0);
        let can_adopt = !key(survivor).0;
        let survivor_had = self.slots[survivor].sockets.len();
        self.slots[survivor].sockets.extend(&moved);
        self.slots[removed].removing = true;
        self.slots[removed].respawn_at = None;
        let mut candidate = None;
        match self.slots[survivor].worker {
            Some(id) if can_adopt => {
                info!(
                    "scaling down to {removed} workers: worker {survivor} adopts \
                     listeners {moved:?} of worker {removed}"
                );
                self.adopt(id, &moved, out);
            }
            Some(_) => {
                // Its worker predates a moved socket and has no fd for it:
                // start a replacement that inherits them all and accepts on
                // the survivor's and the moved sockets, then retire both
                // old workers.
                info!(
                    "scaling down to {removed} workers: worker {survivor} is replaced \
                     by one that also accepts on listeners {moved:?} of worker {removed}"
                );
                candidate =
                    Some(self.fork(survivor, Role::Candidate, "scale-down hand-over", now, out));
            }
            None => info!(
                "scaling down to {removed} workers: worker {survivor}, when respawned, \
                 also accepts on listeners {moved:?} of worker {removed}"
            ),
        }
        self.current = Some(Current::ScaleDown {
            removed,
            survivor,
            survivor_had,
            need_fds,
            candidate,
            deadline: later(now, self.ready_timeout),
        });
    }
}
