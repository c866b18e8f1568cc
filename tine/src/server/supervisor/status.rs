//! What the supervisor's state means to the outside (systemd's readiness
//! protocol, see `systemd.rs`): queries only, no decisions.

use super::ops::Current;
use super::{Role, Supervisor};

impl Supervisor {
    /// Whether every slot's current worker has reported `READY`: all
    /// workers accept.
    pub(crate) fn all_ready(&self) -> bool {
        !self.stopping
            && self.slots.iter().all(|s| {
                s.worker
                    .and_then(|id| self.workers.get(&id))
                    .is_some_and(|w| w.role == Role::Current && w.ready)
            })
    }

    /// Whether a rolling restart (`SIGHUP`, not a recycle) or a binary
    /// upgrade (`SIGUSR2`) is under way.
    pub(crate) fn reloading(&self) -> bool {
        !self.stopping
            && (matches!(self.current, Some(Current::Reload { recycle: None, .. }))
                || self.upgrading())
    }

    /// Whether the master is stopping (graceful or immediate).
    pub(crate) fn stopping(&self) -> bool {
        self.stopping
    }

    /// Whether the service works: some worker accepts, or a stop is under
    /// way (draining is what it should be doing then).
    pub(crate) fn healthy(&self) -> bool {
        self.stopping
            || self
                .workers
                .values()
                .any(|w| w.ready && w.role != Role::Retiring)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::{Action, Command, Event, Mode, Supervisor};

    fn forks(actions: &[Action]) -> Vec<usize> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Fork { worker, .. } => Some(*worker),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn ready_reloading_and_stopping_follow_the_workers() {
        let t = Duration::from_secs(30);
        let now = Instant::now();
        let mut sup = Supervisor::new(2, t, t, &[(Mode::ReusePort, 2)]);
        let started = forks(&sup.start(now));
        assert_eq!(started.len(), 2);
        for (i, &w) in started.iter().enumerate() {
            sup.handle(
                now,
                Event::Forked {
                    worker: w,
                    pid: 100 + i as i32,
                },
            );
        }
        assert!(!sup.all_ready() && !sup.healthy());
        sup.handle(now, Event::Ready { worker: started[0] });
        assert!(!sup.all_ready(), "one of two is not ready");
        assert!(sup.healthy());
        sup.handle(now, Event::Ready { worker: started[1] });
        assert!(sup.all_ready() && !sup.reloading());

        // A rolling restart: reloading until the last replacement is ready.
        let mut pid = 200;
        let mut next = forks(&sup.handle(now, Event::Command(Command::Reload)));
        assert!(sup.reloading());
        while let Some(w) = next.pop() {
            sup.handle(now, Event::Forked { worker: w, pid });
            pid += 1;
            assert!(sup.reloading());
            next = forks(&sup.handle(now, Event::Ready { worker: w }));
        }
        assert!(!sup.reloading());
        assert!(sup.all_ready());

        sup.handle(now, Event::Command(Command::Stop));
        assert!(sup.stopping() && sup.healthy() && !sup.all_ready());
    }

    #[test]
    fn a_recycle_is_not_a_reload() {
        let t = Duration::from_secs(30);
        let now = Instant::now();
        let mut sup = Supervisor::new(1, t, t, &[(Mode::ReusePort, 1)]);
        let w = forks(&sup.start(now))[0];
        sup.handle(
            now,
            Event::Forked {
                worker: w,
                pid: 100,
            },
        );
        sup.handle(now, Event::Ready { worker: w });
        let next = sup.handle(
            now,
            Event::Recycle {
                worker: w,
                reason: "test".into(),
            },
        );
        assert_eq!(forks(&next).len(), 1, "the recycle is under way");
        assert!(!sup.reloading());
    }
}
