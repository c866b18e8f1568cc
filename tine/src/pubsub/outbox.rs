//! The outbox: messages published in this process, waiting for the event
//! loop to hand them to the bus.
//!
//! [`publish`](super::publish) runs inside a handler, which has no access
//! to the loop, so it queues here (one outbox per thread: per event loop).
//! The loop takes messages from the front as fast as the bus accepts them,
//! after every connection it drives; when the bus is full they stay here.
//!
//! The outbox is bounded twice:
//! - above [`ROOM`] bytes, [`has_room`] is false, and the event loop stops
//!   reading from connections (and running their handlers) until the bus
//!   has taken enough: a client that publishes faster than the bus carries
//!   is slowed down instead of growing the worker's memory;
//! - a message that would take the outbox over [`MAX`] bytes (one handler
//!   publishing a great deal at once) is dropped, counted in
//!   [`stats`](super::stats) and logged (once per streak of drops).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use super::{stats, Published};

/// Above this many queued bytes the loop stops serving connections.
pub(crate) const ROOM: usize = 1 << 20;
/// A message that would take the outbox over this many bytes is dropped.
pub(crate) const MAX: usize = 8 << 20;

#[derive(Default)]
struct Outbox {
    queue: VecDeque<Published>,
    bytes: usize,
    /// Messages dropped since the last one queued.
    streak: u64,
}

thread_local! {
    static OUTBOX: RefCell<Outbox> = RefCell::new(Outbox::default());
    /// `OUTBOX`'s message count and bytes, readable without a borrow:
    /// the event loop asks for them on every request.
    static QUEUED: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// Mirrors the outbox's size for the cheap checks and for stats.
fn note(o: &Outbox) {
    QUEUED.with(|q| q.set((o.queue.len(), o.bytes)));
    stats::set_outbox(o.queue.len(), o.bytes);
}

/// Queues `p`, or drops it (counted, logged) when the outbox is full:
/// `false`.
///
/// Logs only once the outbox is no longer borrowed: the logger is the
/// app's code, and one that publishes what it logs (a live log on a
/// WebSocket) found the outbox borrowed, a panic outside any handler
/// when tine's own warning was what it published.
pub(crate) fn push(p: Published) -> bool {
    let size = p.size();
    let full = OUTBOX.with(|o| {
        let mut o = o.borrow_mut();
        if o.bytes + size <= MAX {
            return None;
        }
        o.streak += 1;
        Some((o.streak == 1, o.bytes))
    });
    if let Some((first, queued)) = full {
        stats::add_dropped(1);
        if first {
            log::warn!(
                "pub/sub: outbox full ({queued} bytes queued); dropping published messages, \
                 first to topic {:?}",
                p.topic
            );
        }
        return false;
    }
    let ended = OUTBOX.with(|o| {
        let mut o = o.borrow_mut();
        o.bytes += size;
        o.queue.push_back(p);
        note(&o);
        std::mem::take(&mut o.streak)
    });
    if ended > 0 {
        log::info!("pub/sub: publishing again after dropping {ended} message(s)");
    }
    true
}

/// Takes the oldest queued message.
pub(crate) fn pop() -> Option<Published> {
    OUTBOX.with(|o| {
        let mut o = o.borrow_mut();
        let p = o.queue.pop_front()?;
        o.bytes -= p.size();
        if o.queue.is_empty() && o.queue.capacity() > 1024 {
            o.queue = VecDeque::new();
        }
        note(&o);
        Some(p)
    })
}

/// Puts back a message [`pop`] returned (the bus could not take it), so
/// it goes first next time.
pub(crate) fn unpop(p: Published) {
    OUTBOX.with(|o| {
        let mut o = o.borrow_mut();
        o.bytes += p.size();
        o.queue.push_front(p);
        note(&o);
    });
}

/// Whether nothing is queued (cheap: checked on the loop's hot path).
pub(crate) fn is_empty() -> bool {
    QUEUED.with(|q| q.get().0 == 0)
}

/// Whether connections may be served: the outbox holds less than
/// [`ROOM`] bytes. A connection driver checks this before reading or
/// running a handler, and stops (keeping its input) while it is false; the
/// event loop drives such connections again once the bus took enough.
pub(crate) fn has_room() -> bool {
    QUEUED.with(|q| q.get().1 < ROOM)
}

#[cfg(test)]
mod tests {
    use super::super::Payload;
    use super::*;

    thread_local! {
        /// The test below's logger publishes what is logged on this
        /// thread while this is set.
        static PUBLISH_LOGS: Cell<bool> = const { Cell::new(false) };
    }

    /// An app's logger that publishes what it logs (a live log).
    struct Publishing;
    impl log::Log for Publishing {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            PUBLISH_LOGS.with(Cell::get)
        }
        fn log(&self, record: &log::Record<'_>) {
            if self.enabled(record.metadata()) {
                let _ = crate::publish("log", record.args().to_string());
            }
        }
        fn flush(&self) {}
    }

    /// The outbox's warnings reach a logger that publishes them: they
    /// were logged while the outbox was borrowed, and its publish
    /// panicked (`BorrowMutError`), in the event loop when tine's own
    /// warning was what it published.
    #[test]
    fn a_logger_that_publishes_may_log_the_outbox_warnings() {
        static LOGGER: Publishing = Publishing;
        // No other test of the library sets a logger.
        let _ = log::set_logger(&LOGGER);
        log::set_max_level(log::LevelFilter::Info);
        PUBLISH_LOGS.with(|p| p.set(true));
        while push(msg(512 * 1024)) {}
        assert!(!push(msg(512 * 1024)), "still full");
        while pop().is_some() {}
        assert!(push(msg(1)), "publishing again (logged)");
        PUBLISH_LOGS.with(|p| p.set(false));
        while pop().is_some() {}
        assert!(is_empty());
    }

    fn msg(n: usize) -> Published {
        Published {
            topic: "t".into(),
            payload: Payload::Binary(vec![0u8; n].into()),
        }
    }

    #[test]
    fn bounded_with_room_and_a_drop_counter() {
        assert!(is_empty() && has_room());
        let dropped = stats::snapshot().dropped;
        // 64 KiB messages: room is gone after ROOM bytes ...
        let each = msg(64 * 1024).size();
        let mut n = 0;
        while has_room() {
            push(msg(64 * 1024));
            n += 1;
        }
        assert_eq!(n, ROOM.div_ceil(each));
        // ... and pushing goes on up to MAX, then drops.
        for _ in 0..200 {
            push(msg(64 * 1024));
        }
        let queued = stats::snapshot().queued;
        assert_eq!(queued, MAX / each);
        assert_eq!(
            stats::snapshot().dropped - dropped,
            (n + 200 - queued) as u64
        );
        assert!(stats::snapshot().queued_bytes <= MAX);
        // Popping in order, putting one back, room again.
        let first = pop().unwrap();
        unpop(first.clone());
        assert_eq!(pop().as_ref(), Some(&first));
        while pop().is_some() {}
        assert!(is_empty() && has_room());
        assert_eq!(stats::snapshot().queued_bytes, 0);
        // Accepted again after the streak.
        assert!(push(msg(1)));
        assert_eq!(stats::snapshot().queued, 1);
        pop();
    }
}
