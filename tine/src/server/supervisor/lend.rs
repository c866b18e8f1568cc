//! Lending: a listening socket whose slot has no worker (it died, its
//! respawn is pending or keeps failing to fork) is accepted on by a
//! survivor until the slot's own worker is back.

use log::{info, warn};

use super::{Action, Role, Supervisor, Worker, WorkerId};

impl Supervisor {
    /// Takes lent sockets back: once a ready worker whose slot owns the
    /// socket accepts on it (and confirmed every `ADOPT`), the borrower is
    /// told to `RELEASE` it, so the queue is again served by its own
    /// worker only. A lend ends silently when the borrower is gone or
    /// retiring, or when the socket became its own (a scale-down moved it
    /// to the borrower's slot).
    pub(super) fn take_back(&mut self, out: &mut Vec<Action>) {
        let lent: Vec<(usize, WorkerId)> = self.lent.iter().map(|(&s, &b)| (s, b)).collect();
        for (s, b) in lent {
            let owns = |w: &Worker| {
                self.slots
                    .get(w.slot)
                    .is_some_and(|sl| sl.sockets.contains(&s))
            };
            let Some(bw) = self.workers.get(&b).filter(|w| w.role != Role::Retiring) else {
                self.lent.remove(&s);
                continue;
            };
            if owns(bw) {
                self.lent.remove(&s);
                continue;
            }
            let owner_back = self.workers.iter().any(|(&id, w)| {
                id != b
                    && w.role != Role::Retiring
                    && w.ready
                    && w.acks_pending == 0
                    && w.accepts.contains(&s)
                    && owns(w)
            });
            if !owner_back {
                continue;
            }
            self.lent.remove(&s);
            let bw = self.workers.get_mut(&b).expect("listed");
            bw.accepts.retain(|&x| x != s);
            info!(
                "listener {s} has its worker back; worker {} (pid {}) releases it",
                bw.slot,
                bw.pid.unwrap_or(0)
            );
            out.push(Action::Release {
                worker: b,
                socket: s,
            });
        }
    }

    /// Lends every listening socket that no running worker accepts on (its
    /// slot's worker died and its respawn is pending, or keeps failing to
    /// fork) to the ready worker with the fewest sockets that inherited it:
    /// a queue nobody accepts from holds its connections until the backlog
    /// overflows.
    pub(super) fn cover_stranded(&mut self, out: &mut Vec<Action>) {
        for s in 0..self.sockets.len() {
            if !self.sockets[s].listening {
                continue;
            }
            let covered = self
                .workers
                .values()
                .any(|w| w.role != Role::Retiring && w.accepts.contains(&s));
            if covered {
                continue;
            }
            let borrower = self
                .workers
                .iter()
                .filter(|(_, w)| w.role == Role::Current && w.ready && w.channel && w.fds > s)
                .min_by_key(|(_, w)| w.accepts.len())
                .map(|(&id, _)| id);
            let Some(id) = borrower else { continue };
            let w = self.workers.get_mut(&id).expect("listed");
            w.acks_pending += 1;
            w.accepts.push(s);
            self.lent.insert(s, id);
            warn!(
                "listener {s} has no worker; lent to worker {} (pid {})",
                w.slot,
                w.pid.unwrap_or(0)
            );
            out.push(Action::Adopt {
                worker: id,
                socket: s,
            });
        }
    }
}
