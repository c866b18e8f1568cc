//! Counters of this process's publish/subscribe, for diagnostics: see
//! [`stats`](super::stats).

use std::cell::Cell;

thread_local! {
    static TOPICS: Cell<usize> = const { Cell::new(0) };
    static SUBSCRIPTIONS: Cell<usize> = const { Cell::new(0) };
}

/// A snapshot of this process's publish/subscribe state, from
/// [`stats`](super::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Topics with at least one subscriber in this process.
    pub topics: usize,
    /// Subscriptions of this process's WebSocket connections, over all
    /// topics.
    pub subscriptions: usize,
}

/// Records the topic index's size.
pub(crate) fn set_index(topics: usize, subscriptions: usize) {
    TOPICS.with(|c| c.set(topics));
    SUBSCRIPTIONS.with(|c| c.set(subscriptions));
}

pub(crate) fn snapshot() -> Stats {
    Stats {
        topics: TOPICS.with(Cell::get),
        subscriptions: SUBSCRIPTIONS.with(Cell::get),
    }
}
