//! The scoreboard: a shared memory region, created by the master before its
//! first fork, in which every worker process publishes what it is doing and
//! what it has done (like Apache httpd's scoreboard). The master reads it to
//! find stuck workers (the watchdog); anything that reads every entry (a
//! status page, a metrics scrape, in any worker) sees the whole server.
//!
//! # Memory
//!
//! On Linux the region is a `memfd` (named `tine-scoreboard`) mapped
//! `MAP_SHARED`, so that its descriptor can be handed across an `execve`
//! (a binary upgrade) like a listening socket; elsewhere it is an anonymous
//! `MAP_SHARED` mapping, shared with every child forked after it. Either
//! way every process maps the same pages: a store by one is seen by all.
//!
//! # Layout (version [`VERSION`])
//!
//! The region is a [`Header`] (about 70 KiB: per-slot totals and restart
//! counts for [`MAX_ENTRIES`] slots) followed by [`MAX_ENTRIES`] entries of
//! [`ENTRY_SIZE`] bytes (`#[repr(C)]`, 64-byte aligned, every field an
//! atomic in native byte order; the text words hold their bytes in
//! little-endian order):
//!
//! | header field | meaning |
//! |---|---|
//! | `magic`, `version` | `b"TINESCB1"` as a `u64`, [`VERSION`] |
//! | `entries` | [`MAX_ENTRIES`] |
//! | `retire_seq` | master | a sequence number, odd while a master moves a reaped worker's counters into the retired totals (taken by compare-and-swap, so it is also the lock between two masters during a binary upgrade): readers summing live entries and retired totals retry while it is odd or changed |
//! | `_legacy_stopping` | (older builds) | ignored; kept for the layout (see below) |
//! | `started_unix_ms` | master | when the region was created (the server started), Unix time in ms |
//! | `retired` | the [`Counters`] of every worker that has exited, added when the master frees its entry: a sum over the live entries plus `retired` never goes backwards |
//! | `slot_retired` | master | the same per worker slot ([`MAX_ENTRIES`] of them): a slot's counters never go backwards when its worker is replaced |
//! | `restarts` | master | per slot, worker replacements by [`Restart`] reason (crash, timeout, recycled, reload, upgrade), copied from the supervisor, never lowered (a new master started by a binary upgrade counts on from the old master's) |
//! | `queues` | master | per listening socket (up to [`MAX_LISTENERS`]): its address and accept-queue depth and limit, sampled every second (Linux `TCP_INFO`) |
//! | `stopping` | master | [`STOP_MARKS`] pids (0: unused): the masters asked to stop (`SIGTERM`, or the old master of a hand-over): health checks of their workers answer 503 |
//!
//! | entry field | written by | meaning |
//! |---|---|---|
//! | `state` | master (claim, free), worker | [`State`]: 0 free, 1 starting, 2 idle (waiting in `poll`), 3 busy (a loop turn), 4 in a handler |
//! | `draining` | worker | 1 once it stopped accepting (a `SIGTERM`) |
//! | `slot` | master | the worker slot (0..workers) the process serves |
//! | `generation` | master | counts the processes that used this entry |
//! | `pid` | worker | its process id (0 until it attached) |
//! | `heartbeat_ms` | worker | the start of its last loop turn, in [`now_ms`] units |
//! | `since_ms` | worker | when the current request's handler started (the heartbeat of its loop turn: no clock read per request) |
//! | `seq`, `method`, `text_len`, `text` | worker | the request being handled: its method as a code ([`METHODS`]; 0 for any other) and its target (path and query as sent) truncated to [`TEXT_MAX`] bytes, under a seqlock (`seq` odd while written) |
//! | `started_ms` | master | when the entry was claimed for its process |
//! | `memory` | master | the process's private memory in bytes, sampled every second (Linux; 0 elsewhere) |
//! | `counters` | worker | [`Counters`]: requests, responses by status class (1xx..5xx), bytes in and out, handler time in 8 buckets ([`HANDLER_BUCKETS_MS`]), routed requests by method ([`METHODS`]; counted when the handler starts), pub/sub messages published, delivered and dropped |
//! | `gauges` | worker | [`Gauges`]: open connections, open WebSockets |
//!
//! Handler time costs one clock read per batch of requests answered
//! together (pipelined on one connection), not per request: a batch done
//! within 1 ms counts each of its handlers in the first bucket; a slower
//! batch of several counts each with the batch's average. Without
//! pipelining every request is its own batch.
//!
//! Times are milliseconds of the monotonic clock since the master created
//! the region (`0`: never); the origin is a process-wide value the workers
//! inherit with the fork, and a master started by a binary upgrade takes
//! over along with the memfd (see below).
//!
//! # Across a binary upgrade (Linux)
//!
//! The old master hands the memfd to the new one with the listening
//! sockets, with the origin as a `CLOCK_MONOTONIC` time ([`adopt`]). The
//! new master maps the same region: its workers take free entries beside
//! the old generation's, which the new master sees draining (its
//! `draining` flag) until the old master frees them, adding their
//! counters to `retired`: the server's totals carry on across the upgrade.
//! Two masters may then claim and free entries at the same time, so a
//! claim takes its entry with a compare-and-swap and `retired` is added to
//! with atomic additions. A master that is alone again (its upgrade rolled
//! back, or its predecessor gone) frees the entries nobody owns any more
//! ([`Board::sweep`]): those of the other master's workers once they have
//! exited. Without a memfd (other systems) the new master maps a fresh
//! scoreboard. Slots are not entries: a slot's replacement
//! worker (rolling restart, recycling) and its draining predecessor each
//! have their own entry, so [`MAX_ENTRIES`] bounds processes alive at once
//! (workers plus those draining), not the slot count; a master refuses to
//! fork beyond it.
//!
//! A stop is marked per master (`stopping` holds the pids of the masters
//! asked to stop), and each process reads the mark of its own master (the
//! process that mapped the region: [`Board::stopping`]): when the old
//! master stops after the hand-over, or a new master that never got ready
//! is stopped, the master that serves on still reports itself healthy. A
//! master that learns the other one has exited forgets its mark
//! ([`Board::forget_other_masters`]), so marks never pile up: at most two
//! masters share the region at once. (Builds of layout version 2 before
//! these marks raised the one `_legacy_stopping` flag for whichever master
//! stopped; it is ignored, and the marks sit in what was the header's
//! padding, so the layout, and a hand-over between such builds, is
//! unchanged.)
//!
//! Only the worker that owns an entry writes its worker fields, with
//! `Relaxed` loads and stores (no read-modify-write instruction: one
//! writer); readers tolerate a counter that is a moment stale. A reader
//! summing a counter over the server adds `retired` to the live entries
//! (an entry's counters start from zero for each new process). The text is
//! the one multi-word field, so it has a seqlock: a reader retries while
//! `seq` is odd or changed under it.
//!
//! The crate denies `unsafe_code`; this module allows it for the mapping
//! and for viewing the mapped bytes as atomics, each block with its safety
//! argument.
#![allow(unsafe_code)]

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::*};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How many worker processes (serving or draining) the scoreboard tracks.
pub(crate) const MAX_ENTRIES: usize = 256;
/// Longest request target kept (`/path?query`), in bytes; longer ones are
/// cut (a cut UTF-8 sequence reads as U+FFFD).
pub(crate) const TEXT_MAX: usize = 96;
/// Layout version in the header.
pub(crate) const VERSION: u32 = 2;
const MAGIC: u64 = u64::from_ne_bytes(*b"TINESCB1");
const TEXT_WORDS: usize = TEXT_MAX / 8;

/// Upper bounds (inclusive, as Prometheus's `le`; milliseconds) of the
/// handler-time histogram buckets; the last bucket counts everything
/// slower.
pub(crate) const HANDLER_BUCKETS_MS: [u64; 7] = [1, 5, 25, 100, 500, 2_500, 10_000];
/// The first bucket's bound.
pub(crate) const FAST: Duration = Duration::from_millis(HANDLER_BUCKETS_MS[0]);
const HANDLER_BUCKETS: [Duration; 7] = {
    let mut d = [Duration::ZERO; 7];
    let mut i = 0;
    while i < 7 {
        d[i] = Duration::from_millis(HANDLER_BUCKETS_MS[i]);
        i += 1;
    }
    d
};

/// Request methods by their code in an entry (0: another method).
pub(crate) const METHODS: [&str; 10] = [
    "OTHER", "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
];

#[inline]
fn method_code(m: &http::Method) -> u32 {
    use http::Method as M;
    if m == M::GET {
        1
    } else if m == M::POST {
        2
    } else {
        [
            M::PUT,
            M::DELETE,
            M::HEAD,
            M::OPTIONS,
            M::PATCH,
            M::CONNECT,
            M::TRACE,
        ]
        .iter()
        .position(|x| x == m)
        .map_or(0, |i| i as u32 + 3)
    }
}

/// What a worker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum State {
    Free = 0,
    Starting = 1,
    /// Waiting in `poll`: not stuck, however old its heartbeat.
    Idle = 2,
    /// Running a loop turn.
    Busy = 3,
    /// Running a handler (the request text says which).
    Handler = 4,
}

impl State {
    fn from_u32(v: u32) -> State {
        match v {
            1 => State::Starting,
            2 => State::Idle,
            3 => State::Busy,
            4 => State::Handler,
            _ => State::Free,
        }
    }
}

/// Monotone totals of one worker (or of all retired workers).
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Requests answered (handler or refusal).
    pub requests: AtomicU64,
    /// Responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub status: [AtomicU64; 5],
    /// Bytes read from and written to clients.
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Handler time histogram (see [`HANDLER_BUCKETS_MS`]; 8 buckets).
    pub handler: [AtomicU64; 8],
    /// Requests routed (that reached hooks and handlers), by method code
    /// ([`METHODS`]: 0 is any other method, so the label set is bounded).
    pub methods: [AtomicU64; METHODS.len()],
    /// Pub/sub: messages published by handlers of this worker, deliveries
    /// to its WebSocket subscribers, and published messages dropped.
    pub published: AtomicU64,
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
}

/// Why a slot's worker was replaced (the master counts them per slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Restart {
    /// An unexpected exit (a panic that killed it, a signal, `exit`).
    Crash = 0,
    /// Killed by the watchdog (stuck past `worker_timeout`).
    Timeout = 1,
    /// Replaced past `max_requests` or `max_worker_memory`.
    Recycled = 2,
    /// Replaced by a rolling restart (`SIGHUP`).
    Reload = 3,
    /// Replaced by a binary upgrade (`SIGUSR2`).
    Upgrade = 4,
}

/// [`Restart`] reasons by index, as the metrics label them.
pub(crate) const RESTART_REASONS: [&str; 5] = ["crash", "timeout", "recycled", "reload", "upgrade"];

/// The most listening sockets whose queue the master samples.
pub(crate) const MAX_LISTENERS: usize = 64;

/// One listening socket's accept queue, sampled by the master.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Queue {
    /// 1 while sampled (the socket exists and the platform reports it).
    pub used: AtomicU32,
    /// The port (host order).
    pub port: AtomicU32,
    /// The address as IPv6 (an IPv4 address mapped), high and low half.
    pub ip: [AtomicU64; 2],
    /// Connections waiting to be accepted, and the queue's limit.
    pub depth: AtomicU64,
    pub max: AtomicU64,
}

/// Gauges: current values, not summed into `retired`.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    pub connections: AtomicU64,
    pub websockets: AtomicU64,
}

/// The region's header.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct Header {
    magic: AtomicU64,
    version: AtomicU32,
    entries: AtomicU32,
    /// Bumped (odd while under way) around the master's moving of a reaped
    /// worker's counters into the retired totals: a reader summing live
    /// entries and retired totals retries while it changes.
    retire_seq: AtomicU32,
    /// Set to 1 by builds that had one stop flag for every master sharing
    /// the region; neither read nor written now (see `stopping`).
    _legacy_stopping: AtomicU32,
    /// When the master (or single process) started: Unix time in ms.
    pub started_unix_ms: AtomicU64,
    pub retired: Counters,
    /// The retired totals of each slot (a slot's counters never go
    /// backwards when its worker is replaced).
    pub slot_retired: [Counters; MAX_ENTRIES],
    /// Worker restarts of each slot by [`Restart`] reason (master).
    pub restarts: [[AtomicU64; 5]; MAX_ENTRIES],
    /// Accept queues of the listening sockets (master), by socket number.
    pub queues: [Queue; MAX_LISTENERS],
    /// The pids of the masters asked to stop (0: an unused mark); see
    /// [`Board::set_stopping`].
    stopping: [AtomicU32; STOP_MARKS],
    /// Each master's worker count (its slots), as `pid << 32 | count`
    /// (0: unused); see [`Board::set_workers`]. Slots past it were
    /// removed (`SIGTTOU`, an upgrade to fewer workers): their counters
    /// stay, their gauges go.
    workers: [AtomicU64; STOP_MARKS],
}

/// How many masters the header can mark as stopping at once: two share
/// the region during a binary upgrade; the others are spare.
pub(crate) const STOP_MARKS: usize = 4;

/// One worker process's entry.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub(crate) struct Entry {
    state: AtomicU32,
    draining: AtomicU32,
    slot: AtomicU32,
    generation: AtomicU32,
    pid: AtomicU32,
    seq: AtomicU32,
    method: AtomicU32,
    heartbeat_ms: AtomicU64,
    since_ms: AtomicU64,
    text_len: AtomicU32,
    text: [AtomicU64; TEXT_WORDS],
    /// When the master claimed the entry for a new process ([`now_ms`]).
    started_ms: AtomicU64,
    /// The worker's private memory in bytes, sampled by the master about
    /// once a second (Linux; 0: not measured).
    pub memory: AtomicU64,
    pub counters: Counters,
    pub gauges: Gauges,
}

/// Bytes per entry.
pub(crate) const ENTRY_SIZE: usize = std::mem::size_of::<Entry>();
const REGION: usize = std::mem::size_of::<Header>() + MAX_ENTRIES * ENTRY_SIZE;
// Entries stay whole cache lines (no false sharing between two workers'
// entries) and small (256 entries in 112 KiB).
const _: () = assert!(std::mem::size_of::<Header>() % 64 == 0);
// The stop marks and the worker counts fill what was the header's tail
// padding: the header (and so the region) keeps the size of layout
// version 2 without them.
const _: () = assert!(
    std::mem::offset_of!(Header, stopping).next_multiple_of(64) == std::mem::size_of::<Header>()
);
const _: () = assert!(
    std::mem::offset_of!(Header, workers) + 8 * STOP_MARKS <= std::mem::size_of::<Header>()
        && std::mem::offset_of!(Header, stopping) < std::mem::offset_of!(Header, workers)
);
const _: () = assert!(ENTRY_SIZE % 64 == 0 && ENTRY_SIZE <= 448);

/// The clock origin every process shares (set in the master before the
/// first fork; a forked worker inherits it).
static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// `t` as scoreboard milliseconds (at least 1: 0 means never).
pub(crate) fn now_ms(t: Instant) -> u64 {
    let origin = *ORIGIN.get_or_init(|| t);
    t.saturating_duration_since(origin).as_millis() as u64 + 1
}

fn store_add(c: &AtomicU64, n: u64) {
    // One writer: a load and a store, not a locked read-modify-write.
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl Counters {
    /// Adds `other` into these totals (the `retired` ones): with atomic
    /// additions, since two masters (during a binary upgrade) may free
    /// entries at the same time. Masters only, never on a request's path.
    fn add_from(&self, other: &Counters) {
        let add = |a: &AtomicU64, b: &AtomicU64| {
            a.fetch_add(b.load(Relaxed), Relaxed);
        };
        add(&self.requests, &other.requests);
        for (a, b) in self.status.iter().zip(&other.status) {
            add(a, b);
        }
        add(&self.bytes_in, &other.bytes_in);
        add(&self.bytes_out, &other.bytes_out);
        for (a, b) in self.handler.iter().zip(&other.handler) {
            add(a, b);
        }
        for (a, b) in self.methods.iter().zip(&other.methods) {
            add(a, b);
        }
        add(&self.published, &other.published);
        add(&self.delivered, &other.delivered);
        add(&self.dropped, &other.dropped);
    }

    fn clear(&self) {
        self.requests.store(0, Relaxed);
        self.status.iter().for_each(|c| c.store(0, Relaxed));
        self.bytes_in.store(0, Relaxed);
        self.bytes_out.store(0, Relaxed);
        self.handler.iter().for_each(|c| c.store(0, Relaxed));
        self.methods.iter().for_each(|c| c.store(0, Relaxed));
        self.published.store(0, Relaxed);
        self.delivered.store(0, Relaxed);
        self.dropped.store(0, Relaxed);
    }

    /// A plain copy.
    pub(crate) fn load(&self) -> Totals {
        Totals {
            requests: self.requests.load(Relaxed),
            status: std::array::from_fn(|i| self.status[i].load(Relaxed)),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            handler: std::array::from_fn(|i| self.handler[i].load(Relaxed)),
            methods: std::array::from_fn(|i| self.methods[i].load(Relaxed)),
            published: self.published.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
        }
    }
}

/// [`Counters`] as plain numbers (a reader's copy, summable).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub requests: u64,
    pub status: [u64; 5],
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub handler: [u64; 8],
    pub methods: [u64; METHODS.len()],
    pub published: u64,
    pub delivered: u64,
    pub dropped: u64,
}

impl Totals {
    /// Adds `o` to `self`.
    pub(crate) fn add(&mut self, o: &Totals) {
        self.requests += o.requests;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.published += o.published;
        self.delivered += o.delivered;
        self.dropped += o.dropped;
        for (a, b) in self.status.iter_mut().zip(o.status) {
            *a += b;
        }
        for (a, b) in self.handler.iter_mut().zip(o.handler) {
            *a += b;
        }
        for (a, b) in self.methods.iter_mut().zip(o.methods) {
            *a += b;
        }
    }
}

/// A consistent-enough copy of an entry, for readers (a status page, a
/// metrics scrape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub state: State,
    pub draining: bool,
    pub slot: u32,
    pub generation: u32,
    pub pid: u32,
    pub heartbeat_ms: u64,
    pub since_ms: u64,
    /// When the master claimed the entry ([`now_ms`] units).
    pub started_ms: u64,
    /// Private memory in bytes (0: not measured).
    pub memory: u64,
    /// The request in the handler (empty outside one).
    pub text: String,
    pub requests: u64,
    pub status: [u64; 5],
    pub totals: Totals,
    pub connections: u64,
    pub websockets: u64,
}

/// Everything a status page or a scrape shows, read at once.
#[derive(Debug, Clone, Default)]
pub(crate) struct View {
    /// The live entries (not free), by entry number.
    pub entries: Vec<(usize, Snapshot)>,
    /// Per slot (index): the retired totals, plus every live entry of the
    /// slot; the slots with anything to show are those below `slots`.
    pub slot_totals: Vec<Totals>,
    /// Per slot: restarts by [`Restart`] reason.
    pub restarts: Vec<[u64; 5]>,
    /// Sampled accept queues: (socket number, address, depth, max).
    pub queues: Vec<(usize, std::net::SocketAddr, u64, u64)>,
    /// The master's start (Unix ms; 0 unknown).
    pub started_unix_ms: u64,
    /// This process's master got `SIGTERM` (a stop is under way or
    /// imminent); see [`Board::stopping`].
    pub stopping: bool,
    /// [`now_ms`] when read.
    pub now_ms: u64,
    /// How many worker slots this process's master runs now
    /// ([`Board::workers`]): slots past it were removed.
    pub workers: Option<usize>,
}

impl Entry {
    // ---- worker side (the entry's only writer) ----

    /// The worker took this entry over (right after its fork). It stays
    /// `Starting` (timed by the watchdog from now, shown as "start-up")
    /// until its loop's first turn: the health check counts no worker as
    /// serving before that.
    pub(crate) fn attach(&self, pid: u32, now: Instant) {
        self.pid.store(pid, Relaxed);
        self.heartbeat_ms.store(now_ms(now), Relaxed);
        self.state.store(State::Starting as u32, Release);
    }

    /// The start of a loop turn (after `poll` returned).
    #[inline]
    pub(crate) fn turn(&self, now: Instant) {
        self.heartbeat_ms.store(now_ms(now), Relaxed);
        self.state.store(State::Busy as u32, Release);
    }

    /// About to wait in `poll` (not stuck however long it waits).
    #[inline]
    pub(crate) fn idle(&self) {
        self.state.store(State::Idle as u32, Release);
    }

    pub(crate) fn set_draining(&self) {
        self.draining.store(1, Relaxed);
    }

    /// A handler starts on `method target`: the target as sent (path,
    /// then `?` and the query if any), which the request holds in one
    /// piece, so that nothing is joined here. Its start ("since") is the
    /// loop turn's (the heartbeat): no clock read per request. The method
    /// is stored as a code ([`METHODS`]), the target as text.
    #[inline]
    pub(crate) fn begin(&self, method: &http::Method, target: &str) {
        let seq = self.seq.load(Relaxed);
        self.seq.store(seq.wrapping_add(1), Relaxed);
        fence(Release);
        let len = self.put_text(target.as_bytes());
        let code = method_code(method);
        self.method.store(code, Relaxed);
        store_add(&self.counters.methods[code as usize], 1);
        self.text_len.store(len as u32, Relaxed);
        self.since_ms
            .store(self.heartbeat_ms.load(Relaxed), Relaxed);
        self.seq.store(seq.wrapping_add(2), Release);
        self.state.store(State::Handler as u32, Release);
    }

    /// A request answered when its head arrived (by a before-hook, or a
    /// 404/405, before its body): counted by method like one whose
    /// handler runs ([`begin`](Self::begin)), since it reached routing and
    /// the hooks.
    pub(crate) fn count_request(&self, method: &http::Method) {
        store_add(&self.counters.methods[method_code(method) as usize], 1);
    }

    /// App code runs that shows no request (a WebSocket handler called
    /// for a message, a streamed body's next chunk): progress for the
    /// watchdog
    /// ([`Board::stuck`]), which sees `seq` move on. The text stays; the
    /// bump by 2 keeps the seqlock even.
    #[inline]
    pub(crate) fn progress(&self) {
        let seq = self.seq.load(Relaxed);
        self.seq.store(seq.wrapping_add(2), Release);
    }

    /// Stores up to [`TEXT_MAX`] bytes of `text` word by word; its length.
    #[inline]
    fn put_text(&self, text: &[u8]) -> usize {
        let text = &text[..text.len().min(TEXT_MAX)];
        let mut words = self.text.iter();
        let mut chunks = text.chunks_exact(8);
        // Chunks first: `zip` stops at the first `None` without taking a
        // word for it, so the remainder goes to the next word.
        for (chunk, w) in (&mut chunks).zip(&mut words) {
            w.store(
                u64::from_le_bytes(chunk.try_into().expect("8 bytes")),
                Relaxed,
            );
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let last = if let Some(tail) = text.last_chunk::<8>() {
                // The text's last 8 bytes in one load (overlapping the
                // chunk before), shifted down to the remainder's: a few
                // instructions where the loop below took about 15 for a
                // typical path (callgrind).
                u64::from_le_bytes(*tail) >> (8 * (8 - rest.len()))
            } else {
                // Shifted in byte by byte: a `copy_from_slice` of a
                // variable length would call `memcpy` for at most 7
                // bytes.
                let mut last = 0u64;
                for (i, &b) in rest.iter().enumerate() {
                    last |= u64::from(b) << (8 * i);
                }
                last
            };
            if let Some(w) = words.next() {
                w.store(last, Relaxed);
            }
        }
        text.len()
    }

    /// The handler returned (its time is counted by [`Entry::end`] or
    /// [`Entry::end_fast`], possibly for a batch).
    #[inline]
    pub(crate) fn handler_returned(&self) {
        self.state.store(State::Busy as u32, Release);
    }

    /// `n` handlers each returned within a millisecond (the first bucket).
    #[inline]
    pub(crate) fn end_fast(&self, n: u32) {
        store_add(&self.counters.handler[0], u64::from(n));
    }

    /// `n` handlers each took `elapsed`: counted in the first bucket whose
    /// bound it does not pass (Prometheus's `le`, "less or equal").
    #[inline]
    pub(crate) fn end(&self, elapsed: Duration, n: u32) {
        let bucket = HANDLER_BUCKETS
            .iter()
            .position(|&b| elapsed <= b)
            .unwrap_or(HANDLER_BUCKETS.len());
        store_add(&self.counters.handler[bucket], u64::from(n));
    }

    /// A response with `status` was queued (a handler's, or a refusal).
    #[inline]
    pub(crate) fn count_response(&self, status: u16) {
        store_add(&self.counters.requests, 1);
        let class = (status / 100).clamp(1, 5) as usize - 1;
        store_add(&self.counters.status[class], 1);
    }

    #[inline]
    pub(crate) fn bytes_in(&self, n: usize) {
        store_add(&self.counters.bytes_in, n as u64);
    }

    #[inline]
    pub(crate) fn bytes_out(&self, n: usize) {
        store_add(&self.counters.bytes_out, n as u64);
    }

    /// A pub/sub counter of this entry grows by `n`.
    pub(crate) fn count_pubsub(&self, c: &AtomicU64, n: u64) {
        store_add(c, n);
    }

    /// Open connections or WebSockets changed by `delta`.
    #[inline]
    pub(crate) fn gauge(g: &AtomicU64, delta: i64) {
        g.store(g.load(Relaxed).wrapping_add(delta as u64), Relaxed);
    }

    // ---- readers ----

    pub(crate) fn state(&self) -> State {
        State::from_u32(self.state.load(Acquire))
    }

    /// The request text, read under the seqlock (`None` if the writer kept
    /// changing it for every one of a few tries).
    pub(crate) fn text(&self) -> Option<String> {
        for _ in 0..64 {
            let s1 = self.seq.load(Acquire);
            if s1 % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let len = (self.text_len.load(Relaxed) as usize).min(TEXT_MAX);
            let method = METHODS
                .get(self.method.load(Relaxed) as usize)
                .unwrap_or(&METHODS[0]);
            let mut bytes = [0u8; TEXT_MAX];
            for (i, w) in self.text.iter().enumerate() {
                bytes[i * 8..i * 8 + 8].copy_from_slice(&w.load(Relaxed).to_le_bytes());
            }
            fence(Acquire);
            if self.seq.load(Relaxed) == s1 {
                let target = String::from_utf8_lossy(&bytes[..len]);
                return Some(format!("{method} {target}"));
            }
        }
        None
    }

    /// A copy of the entry's fields.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let state = self.state();
        Snapshot {
            state,
            draining: self.draining.load(Relaxed) == 1,
            slot: self.slot.load(Relaxed),
            generation: self.generation.load(Relaxed),
            pid: self.pid.load(Relaxed),
            heartbeat_ms: self.heartbeat_ms.load(Relaxed),
            since_ms: self.since_ms.load(Relaxed),
            started_ms: self.started_ms.load(Relaxed),
            memory: self.memory.load(Relaxed),
            text: if state == State::Handler {
                self.text().unwrap_or_default()
            } else {
                String::new()
            },
            requests: self.counters.requests.load(Relaxed),
            status: std::array::from_fn(|i| self.counters.status[i].load(Relaxed)),
            totals: self.counters.load(),
            connections: self.gauges.connections.load(Relaxed),
            websockets: self.gauges.websockets.load(Relaxed),
        }
    }
}

static BOARD: OnceLock<Option<&'static Board>> = OnceLock::new();

/// The board if this process has one (mapped by the master, or by a single
/// process at start), without mapping one.
pub(crate) fn existing() -> Option<&'static Board> {
    BOARD.get().copied().flatten()
}
static MINE: OnceLock<&'static Entry> = OnceLock::new();

/// The process tree's scoreboard, mapped at the first call (the master
/// calls it before its first fork; a worker inherits it). `None`, with a
/// warning, if the region cannot be mapped: the server then runs without
/// a scoreboard (and without the watchdog).
pub(crate) fn board() -> Option<&'static Board> {
    *BOARD.get_or_init(|| match Board::create() {
        Ok(b) => Some(b.leak()),
        Err(e) => {
            log::warn!("cannot map the scoreboard: {e}; running without it (no watchdog)");
            None
        }
    })
}

/// A master started by a binary upgrade: maps the old master's region
/// (`fd`, a memfd) instead of a new one, with the clock origin the old
/// generation writes its times against (`origin_us`, `CLOCK_MONOTONIC`
/// microseconds). Call it before anything else touches the scoreboard;
/// whether it was adopted (if not, with a warning, a fresh region is
/// mapped later as usual).
pub(crate) fn adopt(fd: std::os::fd::OwnedFd, origin_us: u64) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let now = Instant::now();
        let age = Duration::from_micros(monotonic_us().saturating_sub(origin_us));
        let origin = now.checked_sub(age).unwrap_or(now);
        if ORIGIN.set(origin).is_err() {
            log::warn!("scoreboard: clock already in use; not taking over the old master's");
            return false;
        }
        match Board::from_fd(fd) {
            Ok(board) => BOARD.set(Some(board.leak())).is_ok(),
            Err(e) => {
                log::warn!("scoreboard handed over unusable ({e}); mapping a new one");
                false
            }
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (fd, origin_us);
        false
    }
}

/// The scoreboard clock's origin as `CLOCK_MONOTONIC` microseconds (what
/// [`adopt`] takes in a new master).
pub(crate) fn origin_monotonic_us() -> u64 {
    let now = Instant::now();
    let origin = *ORIGIN.get_or_init(|| now);
    monotonic_us().saturating_sub(now.saturating_duration_since(origin).as_micros() as u64)
}

/// `CLOCK_MONOTONIC` in microseconds, through the C library (nix) rather
/// than rustix: rustix finds the vDSO itself and does not find it under
/// valgrind, which then killed a master doing a binary upgrade, the one
/// path that reads this clock (so the upgrade could not be checked under
/// valgrind's memcheck). Not on a hot path.
pub(crate) fn monotonic_us() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(t) => (t.tv_sec() as u64) * 1_000_000 + (t.tv_nsec() as u64) / 1_000,
        // CLOCK_MONOTONIC always exists where tine runs.
        Err(_) => 0,
    }
}

/// Worker: takes over entry `i` (claimed by the master before the fork).
pub(crate) fn attach(i: usize) {
    if let Some(b) = BOARD.get().copied().flatten() {
        let e = b.entry(i);
        e.attach(std::process::id(), Instant::now());
        let _ = MINE.set(e);
    }
}

/// This worker's own entry (`None` in the master, a single-process server,
/// or without a scoreboard).
#[inline]
pub(crate) fn mine() -> Option<&'static Entry> {
    MINE.get().copied()
}

/// The mapped region: owned by the master, inherited by every worker.
pub(crate) struct Board {
    base: NonNull<u8>,
    /// The memfd behind the mapping (Linux), for a later `execve` hand-over.
    fd: Option<std::os::fd::OwnedFd>,
    /// The pid of the process that mapped the region: the master (whose
    /// workers inherit the mapping), or a single process. Its stop mark is
    /// the one [`Board::stopping`] reads.
    master: u32,
}

// SAFETY: the board is a pointer to a mapping that lives as long as the
// Board, and every access through it goes through atomics (`header`,
// `entry`): sharing or sending it between threads is as sound as sharing
// the atomics themselves.
unsafe impl Send for Board {}
// SAFETY: see `Send` above.
unsafe impl Sync for Board {}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board")
            .field("entries", &MAX_ENTRIES)
            .finish()
    }
}

impl Board {
    /// Maps a new, zeroed region (see the module docs).
    pub(crate) fn create() -> io::Result<Board> {
        let _ = now_ms(Instant::now());
        let fd = memfd()?;
        let base = match &fd {
            // SAFETY: mapping a fresh region cannot alias any Rust object:
            // the kernel picks an unused address (null hint). The memfd was
            // sized to REGION bytes just before.
            Some(fd) => unsafe {
                rustix::mm::mmap(
                    std::ptr::null_mut(),
                    REGION,
                    rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                    rustix::mm::MapFlags::SHARED,
                    fd,
                    0,
                )
            },
            // SAFETY: as above, for an anonymous shared mapping.
            None => unsafe {
                rustix::mm::mmap_anonymous(
                    std::ptr::null_mut(),
                    REGION,
                    rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                    rustix::mm::MapFlags::SHARED,
                )
            },
        }?;
        let base = NonNull::new(base.cast::<u8>()).ok_or_else(|| io::Error::other("mmap: null"))?;
        let board = Board {
            base,
            fd,
            master: std::process::id(),
        };
        let h = board.header();
        h.magic.store(MAGIC, Relaxed);
        h.version.store(VERSION, Relaxed);
        h.entries.store(MAX_ENTRIES as u32, Relaxed);
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        h.started_unix_ms.store(unix_ms, Relaxed);
        Ok(board)
    }

    /// Maps the region of an inherited memfd (a binary upgrade), if it is
    /// one: its size and header must match this build's layout.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn from_fd(fd: std::os::fd::OwnedFd) -> io::Result<Board> {
        let size = rustix::fs::fstat(&fd)?.st_size;
        if size != REGION as i64 {
            return Err(io::Error::other(format!(
                "{size} bytes where this build's layout has {REGION}"
            )));
        }
        // SAFETY: as in `create`: a fresh mapping at an address the kernel
        // picks, REGION bytes of a memfd that holds REGION bytes.
        let base = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                REGION,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED,
                &fd,
                0,
            )
        }?;
        let base = NonNull::new(base.cast::<u8>()).ok_or_else(|| io::Error::other("mmap: null"))?;
        let board = Board {
            base,
            fd: Some(fd),
            master: std::process::id(),
        };
        let h = board.header();
        let ok = h.magic.load(Relaxed) == MAGIC
            && h.version.load(Relaxed) == VERSION
            && h.entries.load(Relaxed) == MAX_ENTRIES as u32;
        if !ok {
            return Err(io::Error::other("another layout (magic or version)"));
        }
        // Just started, this master is not stopping: a mark with its pid
        // is a gone master's whose pid was reused.
        board.unmark(board.master);
        Ok(board)
    }

    /// The memfd to hand to a new master, if the region is one.
    pub(crate) fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.fd.as_ref().map(|f| f.as_fd())
    }

    /// Master: frees every entry in use that `ours` does not claim and
    /// whose process is gone (or that never got one). Call it only while
    /// no other master shares the region (see the module docs). Returns
    /// how many such entries are still in use (processes still running).
    pub(crate) fn sweep(&self, ours: impl Fn(usize) -> bool) -> usize {
        let mut left = 0;
        for i in (0..MAX_ENTRIES).filter(|&i| !ours(i)) {
            let e = self.entry(i);
            if e.state() == State::Free {
                continue;
            }
            let pid = e.pid.load(Relaxed);
            let gone = pid == 0
                || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None)
                    == Err(nix::errno::Errno::ESRCH);
            if gone {
                self.free(i);
            } else {
                left += 1;
            }
        }
        left
    }

    /// The header.
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: the region starts with a Header (page-aligned, so aligned
        // to 64), it was zero-filled by the kernel and an all-zero Header is
        // valid (atomics of 0). Every field is an atomic, so shared access
        // from other processes is never a data race. The reference lives
        // as long as `self`, which keeps the mapping.
        unsafe { &*self.base.as_ptr().cast::<Header>() }
    }

    /// Entry `i` (`i < MAX_ENTRIES`).
    pub(crate) fn entry(&self, i: usize) -> &Entry {
        assert!(i < MAX_ENTRIES, "scoreboard entry {i} out of range");
        let offset = std::mem::size_of::<Header>() + i * ENTRY_SIZE;
        // SAFETY: `offset + ENTRY_SIZE <= REGION` by the assertion; the
        // header's size is a multiple of 64 and so is ENTRY_SIZE, so the
        // pointer is aligned for Entry. Zero bytes are a valid Entry and
        // every field is atomic (see `header`).
        unsafe { &*self.base.as_ptr().add(offset).cast::<Entry>() }
    }

    /// Entry `i` for the rest of the process's life (a worker's own entry:
    /// the board is never unmapped in a worker, see [`Board::leak`]).
    pub(crate) fn leak(self) -> &'static Board {
        Box::leak(Box::new(self))
    }

    /// Master: takes a free entry for a worker of `slot` about to be
    /// forked; `None` if all [`MAX_ENTRIES`] are in use.
    pub(crate) fn claim(&self, slot: usize) -> Option<usize> {
        // Taken with a compare-and-swap: during a binary upgrade two
        // masters claim entries in the same region.
        let i = (0..MAX_ENTRIES).find(|&i| {
            self.entry(i)
                .state
                .compare_exchange(State::Free as u32, State::Starting as u32, Acquire, Relaxed)
                .is_ok()
        })?;
        let e = self.entry(i);
        e.pid.store(0, Relaxed);
        e.slot.store(slot as u32, Relaxed);
        e.generation
            .store(e.generation.load(Relaxed).wrapping_add(1), Relaxed);
        e.draining.store(0, Relaxed);
        e.text_len.store(0, Relaxed);
        e.since_ms.store(0, Relaxed);
        let now = now_ms(Instant::now());
        e.heartbeat_ms.store(now, Relaxed);
        e.started_ms.store(now, Relaxed);
        e.memory.store(0, Relaxed);
        e.counters.clear();
        e.gauges.connections.store(0, Relaxed);
        e.gauges.websockets.store(0, Relaxed);
        e.state.store(State::Starting as u32, Release);
        Some(i)
    }

    /// Master: the process of entry `i` is gone (reaped) or never started:
    /// its counters go to the retired totals and the entry is free again.
    pub(crate) fn free(&self, i: usize) {
        let e = self.entry(i);
        if e.state() == State::Free {
            return;
        }
        let h = self.header();
        // Readers summing live entries and retired totals retry while the
        // sequence is odd or changed (see `view`): they never see the
        // counters twice or not at all.
        // During a binary upgrade two masters may free entries at once:
        // the odd sequence is also their lock, taken by compare-and-swap
        // (bounded: a master that died holding it does not stop the
        // other).
        let mut seq = h.retire_seq.load(Relaxed);
        for _ in 0..1_000_000 {
            if seq % 2 == 0 {
                match h
                    .retire_seq
                    .compare_exchange_weak(seq, seq.wrapping_add(1), Acquire, Relaxed)
                {
                    Ok(_) => break,
                    Err(now) => seq = now,
                }
            } else {
                std::hint::spin_loop();
                seq = h.retire_seq.load(Relaxed);
            }
        }
        let seq = seq & !1;
        fence(Release);
        h.retired.add_from(&e.counters);
        if let Some(r) = h.slot_retired.get(e.slot.load(Relaxed) as usize) {
            r.add_from(&e.counters);
        }
        e.counters.clear();
        e.pid.store(0, Relaxed);
        e.state.store(State::Free as u32, Release);
        h.retire_seq.store(seq.wrapping_add(2), Release);
    }

    /// Whether this process's master (the process that mapped the region)
    /// was asked to stop: another master sharing the region during a
    /// binary upgrade may be stopping while this one serves on.
    /// Whether some worker serves: past its start-up (its loop has run)
    /// and not draining. Read by the health check, so it reads two words
    /// per entry and nothing else.
    pub(crate) fn any_serving(&self) -> bool {
        (0..MAX_ENTRIES).any(|i| {
            let e = self.entry(i);
            !matches!(e.state(), State::Free | State::Starting) && e.draining.load(Relaxed) == 0
        })
    }

    pub(crate) fn stopping(&self) -> bool {
        self.header()
            .stopping
            .iter()
            .any(|m| m.load(Relaxed) == self.master)
    }

    /// Master: marks this master as stopping (a stop was asked for: its
    /// workers' health checks answer 503 from now on). Idempotent and
    /// cheap once marked, so a master may call it on every update while
    /// stopping. Whether it is marked: a free mark is taken, else one of a
    /// master that is gone; never another running master's.
    pub(crate) fn set_stopping(&self) -> bool {
        let me = self.master;
        let marks = &self.header().stopping;
        if marks.iter().any(|m| m.load(Relaxed) == me) {
            return true;
        }
        if marks
            .iter()
            .any(|m| m.compare_exchange(0, me, Relaxed, Relaxed).is_ok())
        {
            return true;
        }
        // Every mark taken (a master that learnt of the other's exit
        // forgets its mark, so only if that went wrong): take a gone one.
        marks.iter().any(|m| {
            let pid = m.load(Relaxed);
            pid != 0
                && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None)
                    == Err(nix::errno::Errno::ESRCH)
                && m.compare_exchange(pid, me, Relaxed, Relaxed).is_ok()
        })
    }

    /// Master: the other master that shared the region (its predecessor,
    /// or a new master whose upgrade failed) has exited: its stop mark
    /// and worker count, and any other but this master's, are forgotten.
    pub(crate) fn forget_other_masters(&self) {
        for m in &self.header().stopping {
            let pid = m.load(Relaxed);
            if pid != self.master && pid != 0 {
                let _ = m.compare_exchange(pid, 0, Relaxed, Relaxed);
            }
        }
        for w in &self.header().workers {
            let v = w.load(Relaxed);
            if v >> 32 != u64::from(self.master) && v != 0 {
                let _ = w.compare_exchange(v, 0, Relaxed, Relaxed);
            }
        }
    }

    /// Master: it runs `count` worker slots now (at start, and after each
    /// `SIGTTIN` or `SIGTTOU`). Taken as [`set_stopping`](Self::set_stopping)
    /// takes a mark: this master's entry, else a free one, else a gone
    /// master's.
    pub(crate) fn set_workers(&self, count: usize) {
        let me = u64::from(self.master);
        let value = (me << 32) | u64::try_from(count).unwrap_or(0).min(u64::from(u32::MAX));
        let marks = &self.header().workers;
        if let Some(m) = marks.iter().find(|m| m.load(Relaxed) >> 32 == me) {
            m.store(value, Relaxed);
            return;
        }
        if marks
            .iter()
            .any(|m| m.compare_exchange(0, value, Relaxed, Relaxed).is_ok())
        {
            return;
        }
        marks.iter().any(|m| {
            let v = m.load(Relaxed);
            let pid = (v >> 32) as i32;
            pid != 0
                && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                    == Err(nix::errno::Errno::ESRCH)
                && m.compare_exchange(v, value, Relaxed, Relaxed).is_ok()
        });
    }

    /// How many worker slots this process's master runs, if it said
    /// (`None`: a single process, or a master of a build before the
    /// count).
    pub(crate) fn workers(&self) -> Option<usize> {
        let me = u64::from(self.master);
        self.header().workers.iter().find_map(|m| {
            let v = m.load(Relaxed);
            (v >> 32 == me).then(|| (v & u64::from(u32::MAX)) as usize)
        })
    }

    /// Clears the stop mark of `pid`, if any (for a region mapped from an
    /// inherited memfd, which only Linux has).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn unmark(&self, pid: u32) {
        for m in &self.header().stopping {
            let _ = m.compare_exchange(pid, 0, Relaxed, Relaxed);
        }
        for w in &self.header().workers {
            let v = w.load(Relaxed);
            if v >> 32 == u64::from(pid) {
                let _ = w.compare_exchange(v, 0, Relaxed, Relaxed);
            }
        }
    }

    /// Master: `slot`'s worker was restarted `n` times for `reason`
    /// ([`Restart`] as index) so far.
    ///
    /// Never lowers a count: during a binary upgrade the old master (whose
    /// counts the new one started from) goes on writing its own, smaller
    /// ones until it exits.
    pub(crate) fn set_restarts(&self, slot: usize, reason: usize, n: u64) {
        if let Some(r) = self.header().restarts.get(slot).and_then(|r| r.get(reason)) {
            r.fetch_max(n, Relaxed);
        }
    }

    /// The restart counts of slots `0..slots` (a new master started by a
    /// binary upgrade carries them on).
    pub(crate) fn restarts(&self, slots: usize) -> Vec<[u64; 5]> {
        let h = self.header();
        (0..slots.min(MAX_ENTRIES))
            .map(|i| std::array::from_fn(|r| h.restarts[i][r].load(Relaxed)))
            .collect()
    }

    /// Master: the sampled accept queue of listening socket `socket`.
    pub(crate) fn set_queue(
        &self,
        socket: usize,
        addr: std::net::SocketAddr,
        depth: u64,
        max: u64,
    ) {
        let Some(q) = self.header().queues.get(socket) else {
            return;
        };
        let ip = match addr.ip() {
            std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            std::net::IpAddr::V6(v6) => v6,
        };
        let bits = u128::from(ip);
        q.ip[0].store((bits >> 64) as u64, Relaxed);
        q.ip[1].store(bits as u64, Relaxed);
        q.port.store(u32::from(addr.port()), Relaxed);
        q.depth.store(depth, Relaxed);
        q.max.store(max, Relaxed);
        q.used.store(1, Release);
    }

    /// Everything readers show, read at once (see [`View`]): the live
    /// entries and every slot's totals, retried while the master moves a
    /// reaped worker's counters (so a sum never counts them twice or not
    /// at all).
    pub(crate) fn view(&self) -> View {
        let h = self.header();
        let mut view = View::default();
        for _ in 0..64 {
            let s1 = h.retire_seq.load(Acquire);
            if s1 % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            view = self.read_view();
            fence(Acquire);
            if h.retire_seq.load(Relaxed) == s1 {
                break;
            }
        }
        view
    }

    fn read_view(&self) -> View {
        let h = self.header();
        let entries: Vec<(usize, Snapshot)> = (0..MAX_ENTRIES)
            .filter(|&i| self.entry(i).state() != State::Free)
            .map(|i| (i, self.entry(i).snapshot()))
            .collect();
        // Slots to show: up to the highest slot with a live entry, a
        // restart or retired counts.
        let used = |i: usize| {
            h.slot_retired[i].requests.load(Relaxed) > 0
                || h.restarts[i].iter().any(|r| r.load(Relaxed) > 0)
        };
        let slots = entries
            .iter()
            .map(|(_, s)| s.slot as usize + 1)
            .chain((0..MAX_ENTRIES).filter(|&i| used(i)).map(|i| i + 1))
            .max()
            .unwrap_or(0)
            .min(MAX_ENTRIES);
        let mut slot_totals: Vec<Totals> = (0..slots).map(|i| h.slot_retired[i].load()).collect();
        for (_, s) in &entries {
            if let Some(t) = slot_totals.get_mut(s.slot as usize) {
                t.add(&s.totals);
            }
        }
        let restarts = (0..slots)
            .map(|i| std::array::from_fn(|r| h.restarts[i][r].load(Relaxed)))
            .collect();
        let queues = h
            .queues
            .iter()
            .enumerate()
            .filter(|(_, q)| q.used.load(Acquire) == 1)
            .map(|(i, q)| {
                let bits =
                    (u128::from(q.ip[0].load(Relaxed)) << 64) | u128::from(q.ip[1].load(Relaxed));
                let v6 = std::net::Ipv6Addr::from(bits);
                let ip = v6
                    .to_ipv4_mapped()
                    .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4);
                let addr = std::net::SocketAddr::new(ip, q.port.load(Relaxed) as u16);
                (i, addr, q.depth.load(Relaxed), q.max.load(Relaxed))
            })
            .collect();
        View {
            entries,
            slot_totals,
            restarts,
            queues,
            started_unix_ms: h.started_unix_ms.load(Relaxed),
            stopping: self.stopping(),
            now_ms: now_ms(Instant::now()),
            workers: self.workers(),
        }
    }

    /// Master: whether the worker in entry `i` has made no progress for at
    /// least `limit` at `now`: running one loop turn (not waiting in
    /// `poll`) in which no handler started since `progress` (what the
    /// master saw at its last look, updated here); then for how long and
    /// the request it is in (if any).
    ///
    /// Progress is a handler starting, not only a turn starting: one turn
    /// answers every connection that is ready, up to 64 pipelined requests
    /// each, so many short handlers (each far under `limit`) add up to a
    /// long turn, and timing the turn alone killed healthy workers. A
    /// handler start (HTTP, or a WebSocket handler called for an event)
    /// bumps `seq` (no clock read per request); the master notes when it
    /// sees it change, so a handler that runs on is caught at most two
    /// looks after `limit` (one to see it start, one past `limit`).
    pub(crate) fn stuck(
        &self,
        i: usize,
        now: Instant,
        limit: Duration,
        progress: &mut Option<Progress>,
    ) -> Option<(Duration, String)> {
        let e = self.entry(i);
        let state = e.state();
        if matches!(state, State::Free | State::Idle) {
            return None;
        }
        let beat = e.heartbeat_ms.load(Relaxed);
        let turn = Duration::from_millis(now_ms(now).saturating_sub(beat));
        let seq = e.seq.load(Relaxed) & !1;
        let since = match progress {
            Some(p) if p.seq == seq => now.saturating_duration_since(p.at),
            // First look: no later progress than the turn's start known.
            None => {
                *progress = Some(Progress {
                    seq,
                    at: now.checked_sub(turn).unwrap_or(now),
                });
                turn
            }
            Some(p) => {
                *p = Progress { seq, at: now };
                Duration::ZERO
            }
        };
        let age = turn.min(since);
        if age < limit {
            return None;
        }
        let what = match state {
            State::Handler => e.text().unwrap_or_else(|| "a request".into()),
            State::Starting => "start-up".into(),
            _ => "its event loop".into(),
        };
        Some((age, what))
    }
}

/// What the master last saw of a worker's progress, for
/// [`Board::stuck`]: the handler count (`seq`, even) and when it saw it
/// change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    seq: u32,
    at: Instant,
}

impl Drop for Board {
    fn drop(&mut self) {
        // SAFETY: `base` is the start of a REGION-byte mapping made by
        // `create`; references from `header`/`entry` borrow `self`, so none
        // outlives this call.
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), REGION) };
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn memfd() -> io::Result<Option<std::os::fd::OwnedFd>> {
    use rustix::fs::{ftruncate, memfd_create, MemfdFlags};
    let fd = memfd_create("tine-scoreboard", MemfdFlags::CLOEXEC)?;
    ftruncate(&fd, REGION as u64)?;
    Ok(Some(fd))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn memfd() -> io::Result<Option<std::os::fd::OwnedFd>> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary upgrade's view: a second mapping of the same memfd (as the
    /// new master maps it) sees the old generation's entries and counters,
    /// claims other entries, and what either frees adds up in `retired`.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_second_mapping_of_the_memfd_shares_entries_and_counters() {
        let old = Board::create().unwrap();
        let i = old.claim(0).unwrap();
        old.entry(i).attach(std::process::id(), Instant::now());
        old.entry(i).count_response(200);
        let fd = old.fd().unwrap().try_clone_to_owned().unwrap();
        let new = Board::from_fd(fd).unwrap();
        assert_eq!(new.entry(i).snapshot().pid, std::process::id());
        assert_eq!(new.entry(i).snapshot().status[1], 1);
        let j = new.claim(0).unwrap();
        assert_ne!(i, j, "claimed in the shared region, not twice");
        assert_eq!(old.entry(j).state(), State::Starting);
        new.entry(j).count_response(500);
        old.free(i);
        new.free(j);
        let retired = &old.header().retired;
        assert_eq!(retired.status[1].load(Relaxed), 1);
        assert_eq!(retired.status[4].load(Relaxed), 1);
        assert_eq!(retired.requests.load(Relaxed), 2);
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_memfd_of_another_size_or_layout_is_refused() {
        let fd = rustix::fs::memfd_create("not-a-board", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 4096).unwrap();
        assert!(Board::from_fd(fd).is_err());
        let fd = rustix::fs::memfd_create("zeroes", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, REGION as u64).unwrap();
        let err = Board::from_fd(fd).expect_err("no magic");
        assert!(err.to_string().contains("layout"), "{err}");
    }

    /// Two masters during a binary upgrade: a second mapping of the memfd
    /// (as the new master maps it) that belongs to another master.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn two_masters(old_pid: u32, new_pid: u32) -> (Board, Board) {
        let mut old = Board::create().unwrap();
        old.master = old_pid;
        let fd = old.fd().unwrap().try_clone_to_owned().unwrap();
        let mut new = Board::from_fd(fd).unwrap();
        new.master = new_pid;
        (old, new)
    }

    /// Pids far above any the system hands out: never a running process.
    const OLD: u32 = 0x3fff_ff01;
    const NEW: u32 = 0x3fff_ff02;

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn the_old_masters_stop_after_a_hand_over_is_not_the_new_ones() {
        let (old, new) = two_masters(OLD, NEW);
        assert!(!old.stopping() && !new.stopping());
        // The hand-over: the old master stops, the new one serves.
        assert!(old.set_stopping());
        assert!(old.set_stopping(), "idempotent");
        assert!(old.stopping() && old.view().stopping);
        assert!(!new.stopping() && !new.view().stopping);
        // The old master has exited: its mark is forgotten, and the new
        // master's own stop still shows.
        new.forget_other_masters();
        assert!(!new.stopping());
        assert_eq!(marks(&new), [0; STOP_MARKS]);
        assert!(new.set_stopping());
        assert!(new.stopping() && new.view().stopping);
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_new_master_stopped_in_a_failed_upgrade_leaves_the_old_one_healthy() {
        let (old, new) = two_masters(OLD, NEW);
        assert!(new.set_stopping());
        assert!(new.stopping());
        assert!(!old.stopping() && !old.view().stopping);
        old.forget_other_masters();
        assert_eq!(marks(&old), [0; STOP_MARKS]);
        assert!(!old.stopping());
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn both_masters_stopping_each_see_their_own_stop() {
        let (old, new) = two_masters(OLD, NEW);
        assert!(old.set_stopping() && new.set_stopping());
        assert!(old.stopping() && new.stopping());
        // Forgetting the other keeps this master's own mark.
        old.forget_other_masters();
        assert!(old.stopping() && !new.stopping());
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_new_mapping_drops_a_stale_mark_of_its_own_pid() {
        let mut old = Board::create().unwrap();
        // A gone master's mark whose pid this process now has.
        old.master = std::process::id();
        assert!(old.set_stopping());
        old.master = OLD;
        let fd = old.fd().unwrap().try_clone_to_owned().unwrap();
        let new = Board::from_fd(fd).unwrap();
        assert!(!new.stopping());
        assert_eq!(marks(&old), [0; STOP_MARKS]);
    }

    /// The stop marks as stored.
    fn marks(b: &Board) -> [u32; STOP_MARKS] {
        std::array::from_fn(|i| b.header().stopping[i].load(Relaxed))
    }

    #[test]
    fn stop_marks_never_run_out_over_many_upgrades() {
        let mut b = Board::create().unwrap();
        // Each generation stops after handing over to the next, which
        // forgets it once it has exited.
        for pid in 1_000..1_100 {
            b.master = pid;
            assert!(!b.stopping(), "generation {pid}");
            assert!(b.set_stopping());
            b.master = pid + 1;
            assert!(!b.stopping());
            b.forget_other_masters();
        }
        assert_eq!(marks(&b), [0; STOP_MARKS]);
    }

    #[test]
    fn with_every_mark_taken_only_a_gone_masters_is_reused() {
        let mut b = Board::create().unwrap();
        let h = b.header();
        // Process 1 runs; the other pids never do.
        h.stopping[0].store(1, Relaxed);
        for (i, m) in h.stopping.iter().enumerate().skip(1) {
            m.store(OLD + i as u32, Relaxed);
        }
        b.master = NEW;
        assert!(b.set_stopping());
        assert!(b.stopping());
        assert_eq!(marks(&b)[0], 1, "a running process's mark stays");
        // All taken by running processes: no mark, and none is stolen.
        for m in &b.header().stopping {
            m.store(1, Relaxed);
        }
        b.master = NEW + 1;
        assert!(!b.set_stopping());
        assert!(!b.stopping());
        assert_eq!(marks(&b), [1; STOP_MARKS]);
    }

    #[test]
    fn a_sweep_frees_foreign_entries_whose_process_is_gone() {
        let b = Board::create().unwrap();
        let mine = b.claim(0).unwrap();
        let alive = b.claim(1).unwrap();
        b.entry(alive).attach(std::process::id(), Instant::now());
        let never = b.claim(2).unwrap(); // claimed, never attached
        let dead = b.claim(3).unwrap();
        // Far above any pid the system hands out.
        b.entry(dead).attach(0x3fff_fff0, Instant::now());
        b.entry(dead).count_response(200);
        let left = b.sweep(|i| i == mine);
        assert_eq!(left, 1, "the live process's entry stays");
        assert_eq!(b.entry(mine).state(), State::Starting);
        assert_ne!(b.entry(alive).state(), State::Free);
        assert_eq!(b.entry(never).state(), State::Free);
        assert_eq!(b.entry(dead).state(), State::Free);
        assert_eq!(b.header().retired.status[1].load(Relaxed), 1);
    }

    #[test]
    fn layout_is_aligned_and_documented() {
        let b = Board::create().unwrap();
        assert_eq!(b.header().magic.load(Relaxed), MAGIC);
        assert_eq!(b.header().entries.load(Relaxed), MAX_ENTRIES as u32);
        // Zeroed: every entry free.
        assert!((0..MAX_ENTRIES).all(|i| b.entry(i).state() == State::Free));
    }

    #[test]
    fn claim_attach_and_free() {
        let b = Board::create().unwrap();
        let i = b.claim(3).unwrap();
        let j = b.claim(3).unwrap();
        assert_ne!(i, j);
        let e = b.entry(i);
        assert_eq!(e.state(), State::Starting);
        e.attach(4242, Instant::now());
        let s = e.snapshot();
        // Starting until its loop turns: not serving yet.
        assert_eq!(
            (s.slot, s.pid, s.generation, s.state),
            (3, 4242, 1, State::Starting)
        );
        assert!(!b.any_serving());
        e.turn(Instant::now());
        assert_eq!(e.state(), State::Busy);
        assert!(b.any_serving());
        e.set_draining();
        assert!(!b.any_serving());
        e.count_response(200);
        e.count_response(404);
        e.count_response(503);
        e.end(Duration::from_millis(30), 1);
        e.end_fast(2);
        e.end(Duration::from_millis(10_000), 1);
        e.bytes_in(10);
        e.bytes_out(25);
        let s = e.snapshot();
        assert_eq!(s.requests, 3);
        assert_eq!(s.status, [0, 1, 0, 1, 1]);
        assert_eq!(
            e.counters.handler[3].load(Relaxed),
            1,
            "30 ms is in (25, 100]"
        );
        // A bound includes its value (`le`): 10 s is in `le="10"`.
        assert_eq!(e.counters.handler[6].load(Relaxed), 1, "10 s");
        assert_eq!(e.counters.handler[7].load(Relaxed), 0, "10 s is not +Inf");
        b.free(i);
        assert_eq!(e.state(), State::Free);
        let r = &b.header().retired;
        assert_eq!(r.requests.load(Relaxed), 3);
        assert_eq!(r.bytes_out.load(Relaxed), 25);
        // Freed twice: counted once.
        b.free(i);
        assert_eq!(r.requests.load(Relaxed), 3);
        // Reused: next generation, counters from zero.
        let k = b.claim(0).unwrap();
        assert_eq!(k, i);
        assert_eq!(b.entry(k).snapshot().generation, 2);
        assert_eq!(b.entry(k).snapshot().requests, 0);
    }

    #[test]
    fn full_board_refuses() {
        let b = Board::create().unwrap();
        for _ in 0..MAX_ENTRIES {
            assert!(b.claim(0).is_some());
        }
        assert_eq!(b.claim(0), None);
    }

    #[test]
    fn request_text_is_truncated_and_read_back() {
        let b = Board::create().unwrap();
        let e = b.entry(b.claim(0).unwrap());
        e.begin(&http::Method::GET, "/report?id=7");
        assert_eq!(e.state(), State::Handler);
        assert_eq!(e.text().unwrap(), "GET /report?id=7");
        assert_eq!(e.seq.load(Relaxed) % 2, 0);
        let long = format!("/{}", "x".repeat(200));
        e.begin(&http::Method::POST, &long);
        let text = e.text().unwrap();
        assert_eq!(text.len(), "POST ".len() + TEXT_MAX);
        assert!(text.starts_with("POST /xxx"));
        // A shorter text after a longer one leaves no tail behind.
        e.begin(&http::Method::GET, "/");
        assert_eq!(e.text().unwrap(), "GET /");
        // Exactly 8 and 16 bytes (word boundaries).
        e.begin(&http::Method::GET, "/abcd");
        assert_eq!(e.text().unwrap(), "GET /abc".to_string() + "d");
        e.begin(&http::Method::GET, "/abcdefghijkl");
        assert_eq!(e.text().unwrap(), "GET /abcdefghijkl");
        // Every length around the words' boundaries, each byte its own.
        let bytes: String = ('a'..='z').chain('A'..='Z').collect();
        for n in 0..=40 {
            let path = format!("/{}", &bytes[..n]);
            e.begin(&http::Method::GET, &path);
            assert_eq!(e.text().unwrap(), format!("GET {path}"));
            e.begin(&http::Method::GET, &format!("{path}?q"));
            assert_eq!(e.text().unwrap(), format!("GET {path}?q"));
        }
    }

    #[test]
    fn a_text_being_written_is_not_read() {
        let b = Board::create().unwrap();
        let e = b.entry(b.claim(0).unwrap());
        e.begin(&http::Method::GET, "/a");
        // A writer stopped half-way (odd sequence): readers give up
        // rather than return a torn text.
        e.seq.store(e.seq.load(Relaxed) + 1, Relaxed);
        assert_eq!(e.text(), None);
    }

    #[test]
    fn seqlock_readers_never_see_a_torn_text() {
        let b = Board::create().unwrap().leak();
        let e = b.entry(b.claim(0).unwrap());
        let texts = [
            "/aaaaaaaaaaaaaaaaaaaaaaaa",
            "/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        ];
        e.begin(&http::Method::GET, texts[1]);
        let writer = std::thread::spawn(move || {
            for i in 0..20_000 {
                e.begin(&http::Method::GET, texts[i % 2]);
            }
        });
        let mut seen = 0;
        while !writer.is_finished() {
            if let Some(t) = e.text() {
                assert!(
                    t == format!("GET {}", texts[0]) || t == format!("GET {}", texts[1]),
                    "torn: {t}"
                );
                seen += 1;
            }
        }
        writer.join().unwrap();
        let _ = seen;
    }

    #[test]
    fn stuck_only_outside_poll_and_past_the_limit() {
        let b = Board::create().unwrap();
        let i = b.claim(1).unwrap();
        let e = b.entry(i);
        let t0 = Instant::now();
        e.attach(7, t0);
        let limit = Duration::from_secs(2);
        let mut seen = None;
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(b.stuck(i, at(1), limit, &mut seen), None);
        e.begin(&http::Method::GET, "/block?ms=60000");
        // The master sees the handler start at its next look, and times it
        // from there.
        assert_eq!(b.stuck(i, at(3), limit, &mut seen), None);
        let (age, what) = b.stuck(i, at(5), limit, &mut seen).unwrap();
        assert_eq!(age, limit);
        assert_eq!(what, "GET /block?ms=60000");
        // Waiting in poll is never stuck.
        e.idle();
        assert_eq!(b.stuck(i, at(60), limit, &mut seen), None);
        e.turn(at(60));
        assert_eq!(b.stuck(i, at(61), limit, &mut seen), None);
        let (_, what) = b.stuck(i, at(63), limit, &mut seen).unwrap();
        assert_eq!(what, "its event loop");
        b.free(i);
        assert_eq!(b.stuck(i, at(99), limit, &mut seen), None);
    }

    /// A board with one worker attached at the instant returned.
    fn one_worker() -> (Board, usize, Instant) {
        let b = Board::create().unwrap();
        let i = b.claim(1).unwrap();
        let t0 = Instant::now();
        b.entry(i).attach(7, t0);
        (b, i, t0)
    }

    #[test]
    fn websocket_handler_calls_are_progress() {
        let (b, i, t0) = one_worker();
        let e = b.entry(i);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        e.turn(t0);
        let limit = Duration::from_secs(1);
        let mut seen = None;
        // One turn of 3 s: a message handler every 400 ms.
        for look in 1..=6 {
            e.progress();
            assert_eq!(b.stuck(i, at(look * 500), limit, &mut seen), None);
        }
        // None after that: stuck.
        assert!(b.stuck(i, at(3_500), limit, &mut seen).is_none());
        assert!(b.stuck(i, at(4_000), limit, &mut seen).is_some());
    }

    #[test]
    fn short_handlers_in_one_long_turn_are_progress() {
        let (b, i, t0) = one_worker();
        let e = b.entry(i);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let limit = Duration::from_secs(5);
        let mut seen = None;
        // One turn from t0: a handler of 800 ms after another (pipelined,
        // or one per ready connection), the master looking every 500 ms.
        e.turn(t0);
        let mut started = 0;
        for look in 1..=40 {
            let now = at(look * 500);
            while started * 800 <= look * 500 {
                e.begin(&http::Method::GET, "/sleep?ms=800");
                started += 1;
            }
            assert_eq!(b.stuck(i, now, limit, &mut seen), None, "at {now:?}");
        }
        // Then one handler that runs on: caught once `limit` has passed
        // since the master saw it start.
        e.begin(&http::Method::GET, "/block");
        assert_eq!(b.stuck(i, at(20_500), limit, &mut seen), None);
        assert_eq!(b.stuck(i, at(25_000), limit, &mut seen), None);
        let (age, what) = b.stuck(i, at(25_500), limit, &mut seen).unwrap();
        assert_eq!((age, what.as_str()), (limit, "GET /block"));
    }
}
