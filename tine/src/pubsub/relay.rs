//! The master's side of the relay: flow control between workers.
//!
//! A worker sends what it publishes to the master over its control
//! channel; the master queues each message for every other worker
//! (`master.rs`, `relay`). When a worker falls behind (its queue from the
//! master holds [`HIGH`] bytes or more), the master stops reading published
//! messages from the others, so their channels fill, their outboxes fill,
//! and their publishing connections stop being served: backpressure
//! reaches the publishing clients, and nothing is dropped.
//!
//! The master reads at most [`READ_LIMIT`] from one worker's channel
//! before it looks at the queues again, so a fast publisher cannot fill the
//! others' queues in a single read.
//!
//! A worker that stays behind for [`STALL`] (stuck in a long handler, say)
//! no longer holds the others back: the master reads on, and that worker
//! loses messages once its queue is full (the channel's bound), counted
//! and logged once per streak. It holds them back again once it caught up.
//! One stuck worker thus delays the others' pub/sub by at most [`STALL`].
//!
//! The master never aborts for lack of memory on a client's account: a
//! message it has no memory for (to read it, or to queue it for a worker,
//! see `control::try_grow`) is dropped for the workers it would have
//! reached, counted and logged per streak like the drops of a stuck
//! worker.

use std::time::{Duration, Instant};

use crate::server::control::Refused;

/// Queued bytes at which a worker is behind.
pub(crate) const HIGH: usize = 1 << 20;
/// How long a worker that is behind holds the others back.
pub(crate) const STALL: Duration = Duration::from_secs(2);
/// At most this much (plus one read) is read from one worker's channel
/// before flow control looks at the queues again. A worker that publishes
/// as fast as the master reads would otherwise be read on and on in one
/// go, and the others' queues would overflow (and drop) although none of
/// them was stuck. With it, a queue below [`HIGH`] when a read starts grows
/// by at most this, a 64 KiB read and one maximal message: within the
/// channel's bound, which is sized for that (`control::outbound_bound`).
pub(crate) const READ_LIMIT: usize = HIGH;

/// The relay state of one worker, as a destination of relayed messages.
#[derive(Debug, Default)]
pub(crate) struct Lane {
    /// Since when its queue holds [`HIGH`] bytes or more.
    behind_since: Option<Instant>,
    /// Messages dropped for it since the last one queued.
    streak: u64,
}

impl Lane {
    /// Whether this worker, with `pending` bytes queued for it, should
    /// stop the master from reading published messages at `now`.
    pub(crate) fn holds_back(&mut self, pending: usize, now: Instant) -> bool {
        if pending < HIGH {
            self.behind_since = None;
            return false;
        }
        let since = *self.behind_since.get_or_insert(now);
        now.saturating_duration_since(since) < STALL
    }

    /// Records whether a relayed message could be queued for worker
    /// `who`, or why not (for the log): drops are logged once at the start
    /// of a streak, with the first one's reason, and once, with their
    /// number, when it ends.
    pub(crate) fn queued(&mut self, outcome: Result<(), Refused>, who: &dyn std::fmt::Display) {
        match (outcome, self.streak) {
            (Ok(()), 0) => {}
            (Ok(()), n) => {
                log::warn!("relay to {who} resumed; {n} published message(s) dropped for it");
                self.streak = 0;
            }
            (Err(why), n) => {
                if n == 0 {
                    match why {
                        Refused::NoMemory => log::warn!(
                            "the master has no memory for a published message to {who}; \
                             dropping relayed messages for it"
                        ),
                        Refused::Full | Refused::TooLarge => log::warn!(
                            "control queue of {who} is full (it stopped reading); \
                             dropping relayed messages for it"
                        ),
                    }
                }
                self.streak += 1;
            }
        }
    }

    /// Messages dropped in the current streak.
    #[cfg(test)]
    pub(crate) fn streak(&self) -> u64 {
        self.streak
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_behind_holds_back_until_stalled() {
        let t0 = Instant::now();
        let mut lane = Lane::default();
        assert!(!lane.holds_back(HIGH - 1, t0));
        assert!(lane.holds_back(HIGH, t0));
        assert!(lane.holds_back(4 * HIGH, t0 + STALL / 2));
        // Stuck: the others are read again.
        assert!(!lane.holds_back(4 * HIGH, t0 + STALL));
        assert!(!lane.holds_back(HIGH, t0 + 10 * STALL));
        // Caught up, then behind again: holds back again, for STALL.
        let t1 = t0 + 11 * STALL;
        assert!(!lane.holds_back(0, t1));
        assert!(lane.holds_back(HIGH, t1));
        assert!(lane.holds_back(HIGH, t1 + STALL - Duration::from_millis(1)));
        assert!(!lane.holds_back(HIGH, t1 + STALL));
    }

    #[test]
    fn drops_are_counted_per_streak() {
        let mut lane = Lane::default();
        lane.queued(Ok(()), &"worker 1");
        assert_eq!(lane.streak(), 0);
        for _ in 0..3 {
            lane.queued(Err(Refused::Full), &"worker 1");
        }
        // Out of memory counts the same, in the same streak.
        lane.queued(Err(Refused::NoMemory), &"worker 1");
        assert_eq!(lane.streak(), 4);
        lane.queued(Ok(()), &"worker 1");
        assert_eq!(lane.streak(), 0);
    }
}
