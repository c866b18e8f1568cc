//! When the app's periodic tasks ([`App::every`](crate::App::every)) are
//! due. The loop sleeps no longer than until the next one, runs those due
//! after a turn's events, and stops running them once the worker drains.

use std::time::{Duration, Instant};

use crate::server::timer::later;

/// Each task's period and next time.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    periods: Vec<Duration>,
    due: Vec<Instant>,
    /// The soonest of `due`; `None` with no task, or once stopped.
    next: Option<Instant>,
}

impl Schedule {
    /// Every task first runs one period after `now`.
    pub(crate) fn new(periods: Vec<Duration>, now: Instant) -> Self {
        let due: Vec<Instant> = periods.iter().map(|&p| later(now, p)).collect();
        let next = due.iter().min().copied();
        Schedule { periods, due, next }
    }

    /// When the next task is due.
    #[inline]
    pub(crate) fn next(&self) -> Option<Instant> {
        self.next
    }

    /// No task runs again (the worker drains).
    pub(crate) fn stop(&mut self) {
        self.next = None;
    }

    /// Puts the tasks due at `now` in `out`, in the order they were added,
    /// and reschedules each one period after its time, or one period after
    /// `now` if that time has passed too: a run made late (by a busy loop)
    /// does not make up the runs it missed in a burst.
    pub(crate) fn take_due(&mut self, now: Instant, out: &mut Vec<usize>) {
        if self.next.is_none_or(|next| now < next) {
            return;
        }
        for (i, (due, &period)) in self.due.iter_mut().zip(&self.periods).enumerate() {
            if now >= *due {
                out.push(i);
                let after = later(*due, period);
                *due = if after > now {
                    after
                } else {
                    later(now, period)
                };
            }
        }
        self.next = self.due.iter().min().copied();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn due(s: &mut Schedule, now: Instant) -> Vec<usize> {
        let mut out = Vec::new();
        s.take_due(now, &mut out);
        out
    }

    #[test]
    fn tasks_run_each_at_its_period() {
        let t0 = Instant::now();
        let mut s = Schedule::new(vec![100 * MS, 250 * MS], t0);
        assert_eq!(s.next(), Some(t0 + 100 * MS));
        assert!(due(&mut s, t0 + 99 * MS).is_empty());
        assert_eq!(due(&mut s, t0 + 100 * MS), [0]);
        assert_eq!(s.next(), Some(t0 + 200 * MS));
        assert_eq!(due(&mut s, t0 + 200 * MS), [0]);
        // Both due: in the order they were added.
        assert_eq!(due(&mut s, t0 + 300 * MS), [0, 1]);
        assert_eq!(s.next(), Some(t0 + 400 * MS));
        // A run a little late keeps the task's rhythm.
        assert_eq!(due(&mut s, t0 + 430 * MS), [0]);
        assert_eq!(s.next(), Some(t0 + 500 * MS));
    }

    #[test]
    fn a_late_run_does_not_make_up_missed_ones() {
        let t0 = Instant::now();
        let mut s = Schedule::new(vec![100 * MS], t0);
        // The loop was busy for three and a half periods: one run, and
        // the next a period after it.
        assert_eq!(due(&mut s, t0 + 450 * MS), [0]);
        assert_eq!(s.next(), Some(t0 + 550 * MS));
        assert!(due(&mut s, t0 + 500 * MS).is_empty());
    }

    #[test]
    fn nothing_is_due_without_tasks_or_once_stopped() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Vec::new(), t0);
        assert_eq!(s.next(), None);
        assert!(due(&mut s, t0 + Duration::from_secs(9)).is_empty());
        let mut s = Schedule::new(vec![MS], t0);
        s.stop();
        assert_eq!(s.next(), None);
        assert!(due(&mut s, t0 + Duration::from_secs(9)).is_empty());
        // A period of "for ever" does not overflow.
        let s = Schedule::new(vec![Duration::MAX], t0);
        assert!(s.next().unwrap() > t0 + Duration::from_secs(1 << 30));
    }
}
