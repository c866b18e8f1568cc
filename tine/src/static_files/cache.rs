//! The open-file cache ([`StaticConfig::open_file_cache`], like nginx's
//! `open_file_cache`): open files and their metadata by path, per mount
//! and process, so that a hit costs no `open`, `fstat` or `close`.
//!
//! Its descriptors come out of the same table as the connections'. They
//! used to be counted nowhere: the start-up check of the open-file limit
//! promised room for `max_connections` while every mount's cache could
//! keep up to [`OPEN_CACHE_MAX`] files open for as long as no static
//! request came to sweep them. One client fetching a few hundred distinct
//! files left that many descriptors behind when it closed, and new
//! connections past what was left failed `accept` with `EMFILE` for good;
//! at a low limit a single keep-alive client could fill the table, get
//! 503s for its own requests and keep everyone else out. So, as nginx's
//! cache counts against `worker_rlimit_nofile` and evicts on pressure:
//!
//! 1. **Budget.** At start-up (`server::nofile`) the caches of a process
//!    get what the open-file limit leaves beside `max_connections`, the
//!    listeners and the fixed margin, shared evenly between the mounts
//!    and at most [`OPEN_CACHE_MAX`] each ([`fit`]); nothing when the
//!    limit cannot even hold the connections. A warning names the numbers
//!    when that is less than they would keep.
//! 2. **Time.** Entries past their time are closed by the event loop's
//!    timer ([`tick`]), even when no static request comes, not only by a
//!    later lookup: an idle server keeps no descriptor (and no deleted
//!    file's disk space) for longer than the time-to-live, plus a quarter
//!    of it at most (sweeps are spaced so) and a loop tick.
//! 3. **Pressure.** When opening a file or accepting a connection fails
//!    with `EMFILE`/`ENFILE`, every cache of the process gives its
//!    descriptors back ([`release_all`]) and the call is tried once more,
//!    before the 503 or the pause in accepting.
//!
//! A worker is one thread and mounts are `!Send` (made and used on the
//! thread that runs the server; forked workers inherit that thread's
//! copy), so the caches of the process are found through a thread-local
//! list. The hot path is unchanged (a hit is still one clock read, one
//! hash lookup and two comparisons, no system call); the loop's own check
//! is one comparison per turn.
//!
//! [`StaticConfig::open_file_cache`]: super::StaticConfig::open_file_cache

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use rustix::io::Errno;

use crate::server::timer::later;

/// Most cached open files per mount and process; past it the cache drops
/// its expired entries, and if it is still full, starts over (a simple
/// bound on descriptors and memory). The budget ([`fit`]) may allow less.
pub(crate) const OPEN_CACHE_MAX: usize = 1024;

/// An open file, its metadata, and when it was opened.
type Cached = (Rc<File>, Metadata, Instant);

/// Open files by path relative to a mount's root.
#[derive(Debug)]
pub(super) struct OpenCache {
    ttl: Duration,
    entries: RefCell<HashMap<Box<[u8]>, Cached>>,
    /// When entries past their time are closed next: when the oldest one
    /// expires, but no sooner than a quarter of the time-to-live after the
    /// last sweep (each sweep walks every entry). `None`: nothing cached.
    next_sweep: Cell<Option<Instant>>,
    /// Most entries it keeps: [`OPEN_CACHE_MAX`], or its share of the
    /// open-file budget ([`fit`]); 0 caches nothing.
    capacity: Cell<usize>,
}

thread_local! {
    /// The caches of this process's mounts (dropped mounts leave a dead
    /// reference, pruned as met).
    static CACHES: RefCell<Vec<Weak<OpenCache>>> = const { RefCell::new(Vec::new()) };
    /// No later than the earliest `next_sweep` of [`CACHES`] (`None`:
    /// none to sweep), so the loop's check each turn is one comparison.
    static NEXT_SWEEP: Cell<Option<Instant>> = const { Cell::new(None) };
}

impl OpenCache {
    /// A cache whose entries live for `ttl`, holding up to
    /// [`OPEN_CACHE_MAX`] files until [`fit`] says otherwise.
    pub(super) fn new(ttl: Duration) -> Rc<OpenCache> {
        let cache = Rc::new(OpenCache {
            ttl,
            entries: RefCell::default(),
            next_sweep: Cell::new(None),
            capacity: Cell::new(OPEN_CACHE_MAX),
        });
        CACHES.with_borrow_mut(|caches| {
            caches.retain(|c| c.strong_count() > 0);
            caches.push(Rc::downgrade(&cache));
        });
        cache
    }

    /// The cached file for `key`, if it is still within its time. Sweeps
    /// first if a sweep is due (for an app driven without the event loop,
    /// as through `App::handle`).
    pub(super) fn get(&self, key: &[u8], now: Instant) -> Option<(Rc<File>, Metadata)> {
        if self.next_sweep.get().is_some_and(|at| now >= at) {
            self.sweep(now);
        }
        let entries = self.entries.borrow();
        let (file, meta, at) = entries.get(key)?;
        (now.duration_since(*at) < self.ttl).then(|| (file.clone(), meta.clone()))
    }

    /// Keeps `file` for `key`, opened at `now`, if the budget allows any.
    pub(super) fn insert(&self, key: &[u8], file: &Rc<File>, meta: &Metadata, now: Instant) {
        let capacity = self.capacity.get();
        let mut entries = self.entries.borrow_mut();
        // An expired entry for the same path goes whatever happens next.
        entries.remove(key);
        if capacity == 0 {
            return;
        }
        if entries.len() >= capacity {
            drop(entries);
            self.sweep(now);
            entries = self.entries.borrow_mut();
            if entries.len() >= capacity {
                entries.clear();
            }
        }
        entries.insert(key.into(), (file.clone(), meta.clone(), now));
        if self.next_sweep.get().is_none() {
            let at = later(now, self.ttl);
            self.next_sweep.set(Some(at));
            NEXT_SWEEP.with(|next| {
                if next.get().is_none_or(|n| at < n) {
                    next.set(Some(at));
                }
            });
        }
    }

    /// Forgets `key` (its file is gone or failing now).
    pub(super) fn remove(&self, key: &[u8]) {
        self.entries.borrow_mut().remove(key);
    }

    /// Closes the entries past their time and sets the next sweep.
    fn sweep(&self, now: Instant) {
        let mut oldest: Option<Instant> = None;
        self.entries.borrow_mut().retain(|_, (_, _, at)| {
            let keep = now.duration_since(*at) < self.ttl;
            if keep && oldest.is_none_or(|o| *at < o) {
                oldest = Some(*at);
            }
            keep
        });
        let next = oldest.map(|at| later(at, self.ttl).max(later(now, self.ttl / 4)));
        self.next_sweep.set(next);
    }

    /// Drops every entry; returns how many descriptors that closed (an
    /// entry whose file a response is still sending stays open until the
    /// response is done).
    fn release(&self) -> usize {
        let entries = std::mem::take(&mut *self.entries.borrow_mut());
        self.next_sweep.set(None);
        entries
            .into_values()
            .filter(|(file, _, _)| Rc::strong_count(file) == 1)
            .count()
    }

    /// Entries held.
    pub(super) fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    /// Most entries it keeps (for tests).
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.capacity.get()
    }
}

/// Calls `f` with each live cache of this process.
fn each(mut f: impl FnMut(&OpenCache)) {
    CACHES.with_borrow_mut(|caches| {
        caches.retain(|weak| match weak.upgrade() {
            Some(cache) => {
                f(&cache);
                true
            }
            None => false,
        });
    });
}

/// Closes the cached files past their time, in every cache of this
/// process: called by the event loop on each turn (at least once per
/// timer tick, busy or idle). Nothing to do costs one comparison.
pub(crate) fn tick(now: Instant) {
    if NEXT_SWEEP.with(Cell::get).is_none_or(|at| now < at) {
        return;
    }
    let mut earliest: Option<Instant> = None;
    each(|cache| {
        if cache.next_sweep.get().is_some_and(|at| now >= at) {
            cache.sweep(now);
        }
        if let Some(at) = cache.next_sweep.get() {
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
    });
    NEXT_SWEEP.with(|next| next.set(earliest));
}

/// Gives back every cached descriptor of this process (the descriptor
/// table is full: a connection or a file needs one more than is left).
/// Returns how many were closed.
pub(crate) fn release_all() -> usize {
    let mut closed = 0;
    each(|cache| closed += cache.release());
    closed
}

/// Descriptors the caches of this process would keep at most, unbudgeted:
/// [`OPEN_CACHE_MAX`] per mount with a cache.
pub(crate) fn wanted() -> usize {
    let mut mounts = 0usize;
    each(|_| mounts += 1);
    mounts.saturating_mul(OPEN_CACHE_MAX)
}

/// Shares `room` descriptors (`None`: no limit) evenly between the caches
/// of this process, at most [`OPEN_CACHE_MAX`] each; returns what they
/// were given in all. A cache holding more than its new share lets go of
/// its files.
pub(crate) fn fit(room: Option<usize>) -> usize {
    let mut mounts = 0usize;
    each(|_| mounts += 1);
    let share = match room {
        Some(room) if mounts > 0 => (room / mounts).min(OPEN_CACHE_MAX),
        _ => OPEN_CACHE_MAX,
    };
    let mut given = 0usize;
    each(|cache| {
        cache.capacity.set(share);
        if cache.len() > share {
            cache.release();
        }
        given += share;
    });
    given
}

/// Runs `open`; if it fails because the descriptor table (the process's
/// or the system's) is full, empties the caches of this process and, if
/// that closed anything, runs it once more. The caller turns a second
/// failure into a 503.
pub(super) fn open_or_release<T>(mut open: impl FnMut() -> Result<T, Errno>) -> Result<T, Errno> {
    match open() {
        Err(e @ (Errno::MFILE | Errno::NFILE)) => {
            let closed = release_all();
            if closed == 0 {
                return Err(e);
            }
            log::warn!(
                "out of file descriptors ({e}): the open-file cache closed {closed} file(s) \
                 to make room"
            );
            open()
        }
        other => other,
    }
}
