//! Counters of this process's publish/subscribe, for diagnostics: see
//! [`stats`](super::stats).

use std::cell::Cell;

thread_local! {
    static STATS: Cell<Stats> = const { Cell::new(Stats {
        topics: 0,
        subscriptions: 0,
        queued: 0,
        queued_bytes: 0,
        dropped: 0,
    }) };
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
    /// Published messages waiting in this process for the bus (the master
    /// relay or Redis).
    pub queued: usize,
    /// Their size in bytes.
    pub queued_bytes: usize,
    /// Messages published in this process that could not be sent on
    /// (each drop is also logged, once per streak): the outbox was full
    /// (one handler published more than 8 MiB at once), a message was
    /// too large to publish (over [`max_size`](super::max_size); its
    /// `publish` returned an error), Redis was unreachable, or the
    /// control channel to the master had no memory for it. Also relayed
    /// messages this process had no memory to receive.
    pub dropped: u64,
}

fn update(f: impl FnOnce(&mut Stats)) {
    STATS.with(|c| {
        let mut s = c.get();
        f(&mut s);
        c.set(s);
    });
}

/// Records the topic index's size.
pub(crate) fn set_index(topics: usize, subscriptions: usize) {
    update(|s| {
        s.topics = topics;
        s.subscriptions = subscriptions;
    });
}

/// Records the outbox's size.
pub(crate) fn set_outbox(queued: usize, queued_bytes: usize) {
    update(|s| {
        s.queued = queued;
        s.queued_bytes = queued_bytes;
    });
}

/// Counts `n` messages dropped (here and in the scoreboard, which the
/// metrics read for every worker).
pub(crate) fn add_dropped(n: u64) {
    update(|s| s.dropped += n);
    if let Some(e) = crate::server::scoreboard::mine() {
        e.count_pubsub(&e.counters.dropped, n);
    }
}

/// Counts a message published by a handler (scoreboard only).
pub(crate) fn add_published() {
    if let Some(e) = crate::server::scoreboard::mine() {
        e.count_pubsub(&e.counters.published, 1);
    }
}

/// Counts `n` deliveries to this process's WebSocket subscribers
/// (scoreboard only).
pub(crate) fn add_delivered(n: u64) {
    if let Some(e) = crate::server::scoreboard::mine() {
        e.count_pubsub(&e.counters.delivered, n);
    }
}

pub(crate) fn snapshot() -> Stats {
    STATS.with(Cell::get)
}
