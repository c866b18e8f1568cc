//! A coarse timing wheel for connection deadlines.
//!
//! mio has no timers. Each connection has one deadline (header read, idle
//! keep-alive, write progress, linger); the wheel holds at most a few
//! entries per connection in slots of [`TICK`]. Scheduling is O(1); a
//! deadline that moves later is not rescheduled at once: its old entry
//! fires, sees the new deadline and re-files itself (lazy rescheduling), so
//! a busy connection costs nothing per request. Firing visits only the
//! slots that came due, never every connection.

use std::num::NonZeroU64;
use std::time::{Duration, Instant};

/// Resolution of deadlines.
pub(crate) const TICK: Duration = Duration::from_millis(250);
/// [`TICK`] in nanoseconds.
const TICK_NANOS: u64 = TICK.as_nanos() as u64;
/// Number of slots: a horizon of 128 s. Later deadlines wrap around and
/// are re-filed when their slot comes up early.
const SLOTS: usize = 512;
/// Entries a slot keeps room for whatever it holds (see [`give_back`]).
const KEEP: usize = 32;
/// The longest any timeout reaches: a century, as good as never.
pub(crate) const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `at + d`, with `d` cut to [`FOREVER`]. Timeouts come from the
/// configuration, where `Duration::MAX` reads as "no limit": added to an
/// `Instant` as it is, it overflows, and the panic would end the process
/// (a worker and its connections, or the master).
pub(crate) fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d.min(FOREVER)).unwrap_or(at)
}

/// A moment on an event loop's clock: nanoseconds since the loop's epoch
/// (its start), plus one, so that an `Option<Stamp>` is as small as a
/// `Stamp`. Eight bytes where an `Instant` takes sixteen: every connection
/// keeps several moments for its timers, and an idle one should cost
/// little more than its own fields. As exact as an `Instant` (which counts
/// nanoseconds too), for 584 years past the epoch; later moments saturate,
/// which for a deadline means never. Moments before the epoch read as the
/// epoch (none is ever taken: the loop's clock only moves on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stamp(NonZeroU64);

impl Stamp {
    /// The latest moment: a deadline that never comes.
    #[cfg(test)]
    pub(crate) const NEVER: Stamp = Stamp(NonZeroU64::MAX);

    /// `at` on the clock that started at `epoch`.
    #[inline]
    pub(crate) fn since(epoch: Instant, at: Instant) -> Stamp {
        Stamp(NonZeroU64::MIN.saturating_add(nanos(at.saturating_duration_since(epoch))))
    }

    /// This moment as an `Instant`, on the clock that started at `epoch`.
    #[cfg(test)]
    pub(crate) fn instant(self, epoch: Instant) -> Instant {
        let d = Duration::from_nanos(self.nanos());
        epoch.checked_add(d).unwrap_or_else(|| later(epoch, d))
    }

    /// Nanoseconds since the epoch.
    #[inline]
    pub(crate) fn nanos(self) -> u64 {
        self.0.get() - 1
    }

    /// `self + d`, saturating (a timeout of `Duration::MAX` is no limit).
    #[inline]
    pub(crate) fn after(self, d: Duration) -> Stamp {
        Stamp(self.0.saturating_add(nanos(d)))
    }
}

/// `d` in nanoseconds, saturating.
#[inline]
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// An entry: a connection key and the generation of the connection that
/// held that key when the entry was made (keys are reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The slab key, in a `u32` (see [`crate::pubsub::key32`]): sixteen
    /// bytes an entry, not twenty-four, and every connection has one.
    key: u32,
    pub(crate) generation: u32,
    /// The tick the entry was filed for.
    pub(crate) tick: u64,
}

impl Entry {
    /// The connection's slab key.
    #[inline]
    pub(crate) fn key(&self) -> usize {
        self.key as usize
    }
}

#[derive(Debug)]
pub(crate) struct Wheel {
    start: Instant,
    slots: Vec<Vec<Entry>>,
    /// Every tick before this one has been fired.
    next_tick: u64,
}

impl Wheel {
    pub(crate) fn new(now: Instant) -> Self {
        Wheel {
            start: now,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            next_tick: 0,
        }
    }

    /// The tick a deadline falls in (rounded up: never fires early by more
    /// than the lazy re-check allows). `at` is on the clock that started
    /// with the wheel (see [`Stamp`]): in a `u64`, dividing by the tick is
    /// a multiplication.
    pub(crate) fn tick_of(&self, at: Stamp) -> u64 {
        // Saturates below `u64::MAX`, which the loop keeps for "no entry".
        at.nanos()
            .div_ceil(TICK_NANOS)
            .clamp(self.next_tick, u64::MAX - 1)
    }

    /// Files an entry for `key` at `at`; returns the tick used, which the
    /// caller remembers to recognise the entry when it fires.
    pub(crate) fn schedule(&mut self, key: usize, generation: u32, at: Stamp) -> u64 {
        let tick = self.tick_of(at);
        self.slots[(tick % SLOTS as u64) as usize].push(Entry {
            key: crate::pubsub::key32(key),
            generation,
            tick,
        });
        tick
    }

    /// Moves every entry due by `now` (on the wheel's clock) into `due`.
    pub(crate) fn expire(&mut self, now: Stamp, due: &mut Vec<Entry>) {
        let now_tick = now.nanos() / TICK_NANOS;
        while self.next_tick <= now_tick {
            let slot = &mut self.slots[(self.next_tick % SLOTS as u64) as usize];
            let current = self.next_tick;
            let mut i = 0;
            while i < slot.len() {
                if slot[i].tick <= current {
                    due.push(slot.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            give_back(slot);
            self.next_tick += 1;
        }
    }

    /// Room for entries, over all slots (for tests).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.slots.iter().map(Vec::capacity).sum()
    }

    /// Time until the next tick boundary: the longest a poll may sleep.
    pub(crate) fn until_next_tick(&self, now: Instant) -> Duration {
        let next = self.start + TICK * (self.next_tick as u32);
        next.saturating_duration_since(now)
            .max(Duration::from_millis(1))
    }
}

/// Frees most of a vector's room once it holds under a quarter of it. A
/// burst of new connections (each files a header deadline, then a linger
/// one) grows the slots it lands in; kept, that room would stay with the
/// worker for good, slot by slot, up to 512 times the busiest
/// quarter-second's entries (tens of MB at tens of thousands of
/// connections a second). Under steady load a slot regrows once per turn
/// of the wheel, a few reallocations every 128 s.
pub(crate) fn give_back<T>(v: &mut Vec<T>) {
    if v.capacity() > KEEP && v.len() < v.capacity() / 4 {
        v.shrink_to((2 * v.len()).max(KEEP));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_when_due_and_not_before() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        w.schedule(1, 0, Stamp::since(t0, t0 + Duration::from_secs(1)));
        w.schedule(2, 0, Stamp::since(t0, t0 + Duration::from_secs(3)));
        let mut due = Vec::new();
        w.expire(Stamp::since(t0, t0 + Duration::from_millis(900)), &mut due);
        assert!(due.is_empty());
        w.expire(Stamp::since(t0, t0 + Duration::from_millis(1000)), &mut due);
        assert_eq!(due.iter().map(Entry::key).collect::<Vec<_>>(), [1]);
        due.clear();
        w.expire(Stamp::since(t0, t0 + Duration::from_secs(5)), &mut due);
        assert_eq!(due.iter().map(Entry::key).collect::<Vec<_>>(), [2]);
    }

    /// No deadline, however far, gets the tick `u64::MAX`: the event
    /// loop keeps that value for "no timer entry".
    #[test]
    fn ticks_stay_below_the_loop_s_sentinel() {
        let t0 = Instant::now();
        let w = Wheel::new(t0);
        assert!(w.tick_of(Stamp::NEVER) < u64::MAX);
        let far = Stamp::since(t0, t0).after(Duration::MAX);
        assert_eq!(far, Stamp::NEVER);
        assert!(w.tick_of(Stamp::since(t0, t0 + Duration::from_secs(3600))) < u64::MAX - 1);
    }

    #[test]
    fn far_deadlines_wrap_and_wait_their_turn() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        let far = Stamp::since(t0, t0 + TICK * (SLOTS as u32 + 10));
        let tick = w.schedule(7, 3, far);
        let mut due = Vec::new();
        w.expire(Stamp::since(t0, t0 + TICK * 20), &mut due);
        assert!(
            due.is_empty(),
            "an entry for a later lap must not fire early"
        );
        w.expire(far, &mut due);
        assert_eq!(
            due,
            [Entry {
                key: 7,
                generation: 3,
                tick
            }]
        );
    }

    #[test]
    fn a_burst_leaves_no_room_behind_once_it_fired() {
        let now = Instant::now();
        let mut w = Wheel::new(now);
        let mut due = Vec::new();
        // 100,000 deadlines in each of 8 ticks.
        for t in 0..8u32 {
            for key in 0..100_000 {
                w.schedule(key, 0, Stamp::since(now, now + TICK * t));
            }
        }
        assert!(w.capacity() >= 800_000);
        w.expire(Stamp::since(now, now + TICK * 8), &mut due);
        assert_eq!(due.len(), 800_000);
        assert!(
            w.capacity() <= SLOTS * KEEP,
            "{} entries of room kept",
            w.capacity()
        );
        let mut v: Vec<u8> = Vec::with_capacity(1000);
        v.extend([1, 2, 3]);
        give_back(&mut v);
        assert!(v.capacity() < 1000 && v.capacity() >= 3);
        let mut kept: Vec<u8> = Vec::with_capacity(1000);
        kept.resize(300, 0);
        give_back(&mut kept);
        assert_eq!(kept.capacity(), 1000, "a quarter or more in use: kept");
    }

    /// A stamp is exact to the nanosecond both ways, and ordered as the
    /// moments are.
    #[test]
    fn stamps_are_exact() {
        let t0 = Instant::now();
        let at = t0 + Duration::new(3, 7);
        let s = Stamp::since(t0, at);
        assert_eq!(s.nanos(), 3_000_000_007);
        assert_eq!(s.instant(t0), at);
        assert_eq!(
            s.after(Duration::from_nanos(5)).instant(t0),
            at + Duration::from_nanos(5)
        );
        assert!(Stamp::since(t0, t0) < s);
        assert_eq!(Stamp::since(at, t0), Stamp::since(at, at));
        assert_eq!(std::mem::size_of::<Option<Stamp>>(), 8);
    }

    #[test]
    fn past_deadlines_fire_on_the_next_expire() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        let mut due = Vec::new();
        w.expire(Stamp::since(t0, t0 + Duration::from_secs(2)), &mut due);
        w.schedule(1, 0, Stamp::since(t0, t0));
        w.expire(
            Stamp::since(t0, t0 + Duration::from_secs(2) + TICK),
            &mut due,
        );
        assert_eq!(due.len(), 1);
    }
}
