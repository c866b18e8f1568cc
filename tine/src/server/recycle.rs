//! Worker recycling: replacing a worker that served its share of requests
//! ([`App::max_requests`](crate::App::max_requests)) or grew past a memory
//! limit ([`App::max_worker_memory`](crate::App::max_worker_memory)).
//!
//! The replacement itself is the supervisor's (a rolling restart of one
//! slot: the replacement accepts first, the old worker drains). This file
//! holds the two measurements:
//!
//! * **Requests**, counted by the worker itself: [`RequestBudget`] costs
//!   the event loop one increment and one comparison per response. Past
//!   its limit the worker sends [`RECYCLE`](super::control::RECYCLE) to
//!   the master once ([`RequestBudget::tell_master`]) and keeps serving
//!   until the master stops it. Each worker's limit is `n + random(0..=j)`
//!   ([`request_limit`]; gunicorn's `max_requests_jitter`), so workers
//!   started together do not all recycle together.
//! * **Memory**, read by the master about once a second
//!   ([`MEMORY_CHECK`]) from `/proc/PID/smaps_rollup` ([`private_bytes`]).
//!   The measure is the worker's *private* memory, `Private_Clean +
//!   Private_Dirty` (the unique set size): the pages only this worker
//!   maps, which is what a leak grows and what its exit gives back. Not
//!   RSS, which also counts the pages the worker still shares with the
//!   master after the fork (the whole app, before any write), nor PSS,
//!   which charges each worker a share of those that changes whenever a
//!   sibling starts or exits. Linux only: elsewhere the setting is accepted
//!   and a warning logged at start-up.

use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use super::control::{self, Channel, SendNoSignal};

/// How often the master reads its workers' memory.
pub(crate) const MEMORY_CHECK: Duration = Duration::from_secs(1);

/// A worker's response count against its limit (see the module docs).
#[derive(Debug)]
pub(crate) struct RequestBudget {
    served: u64,
    /// `u64::MAX`: no limit.
    limit: u64,
    /// The limit was reached and the master not told yet.
    due: bool,
}

impl RequestBudget {
    /// A budget of `limit` responses (`None`: unlimited).
    pub(crate) fn new(limit: Option<u64>) -> RequestBudget {
        RequestBudget {
            served: 0,
            limit: limit.unwrap_or(u64::MAX),
            due: false,
        }
    }

    /// The budget of a worker (a process with a master to replace it):
    /// its own limit drawn from the settings (see [`request_limit`]). A
    /// single process keeps the unlimited [`RequestBudget::new`]`(None)`.
    pub(crate) fn for_worker(config: &super::ServerConfig) -> RequestBudget {
        let jitter = jitter_seed();
        let limit = request_limit(config.max_requests, config.max_requests_jitter, jitter);
        if let Some(limit) = limit {
            log::debug!("this worker is recycled after {limit} responses");
        }
        RequestBudget::new(limit)
    }

    /// Counts one response; the event loop calls this once per response.
    #[inline]
    pub(crate) fn count(&mut self) {
        self.served += 1;
        if self.served == self.limit {
            self.due = true;
        }
    }

    /// Whether the limit was just reached: the loop then calls
    /// [`tell_master`](RequestBudget::tell_master).
    #[inline]
    pub(crate) fn due(&self) -> bool {
        self.due
    }

    /// Responses counted so far.
    #[cfg(test)]
    pub(crate) fn served(&self) -> u64 {
        self.served
    }

    /// Sends `RECYCLE` (payload: the responses served, `u64` LE) on the
    /// control channel, once; a process without a master (single-process
    /// mode) has nobody to tell and goes on serving.
    pub(crate) fn tell_master<F: AsFd>(&mut self, master: Option<(&mut Channel, &F)>) {
        if !self.due {
            return;
        }
        self.due = false;
        let Some((channel, stream)) = master else {
            return;
        };
        log::info!(
            "served {} responses (max_requests {}): asking the master for a replacement",
            self.served,
            self.limit
        );
        if !channel.queue(control::RECYCLE, &self.served.to_le_bytes()) {
            log::warn!("control channel full: cannot ask for a replacement");
            return;
        }
        if let Err(e) = channel.flush_to(&mut SendNoSignal(stream)) {
            log::warn!("control channel: {e}");
        }
    }
}

/// A worker's request limit: `max + random % (jitter + 1)`, or `None`
/// without a limit (`max` of 0 also means none).
///
/// ```text
/// request_limit(Some(1000), 50, r) is in 1000..=1050
/// ```
pub(crate) fn request_limit(max: Option<u64>, jitter: u64, random: u64) -> Option<u64> {
    let max = max.filter(|&m| m > 0)?;
    let extra = match jitter.checked_add(1) {
        Some(span) => random % span,
        None => random,
    };
    Some(max.saturating_add(extra))
}

/// A random number for the jitter, different in every worker: std's
/// randomly keyed hasher over the pid and the time. Not for secrets; it
/// only needs to differ between workers, and needs no dependency.
pub(crate) fn jitter_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

/// `Private_Clean + Private_Dirty` of a `/proc/PID/smaps_rollup` text, in
/// bytes; `None` if neither line is there.
// Read on Linux only, but unit-tested everywhere.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn parse_private(smaps_rollup: &str) -> Option<u64> {
    let mut total = None;
    for line in smaps_rollup.lines() {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name != "Private_Clean" && name != "Private_Dirty" {
            continue;
        }
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        total = Some(total.unwrap_or(0) + kb * 1024);
    }
    total
}

/// The private memory of process `pid`, in bytes (see the module docs).
#[cfg(target_os = "linux")]
pub(crate) fn private_bytes(pid: i32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    parse_private(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "no Private_Clean/Private_Dirty in smaps_rollup",
        )
    })
}

/// Memory is only measured on Linux.
#[cfg(not(target_os = "linux"))]
pub(crate) fn private_bytes(_pid: i32) -> io::Result<u64> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Whether worker memory can be measured on this platform.
pub(crate) const MEMORY_SUPPORTED: bool = cfg!(target_os = "linux");

/// `bytes` for a log line, in MiB with one decimal.
pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_due_once_at_its_limit() {
        let mut b = RequestBudget::new(Some(3));
        b.count();
        b.count();
        assert!(!b.due());
        b.count();
        assert!(b.due());
        // Told once (no master here: nothing is sent), then never again.
        b.tell_master::<std::os::unix::net::UnixStream>(None);
        assert!(!b.due());
        for _ in 0..10 {
            b.count();
        }
        assert!(!b.due());
        assert_eq!(b.served(), 13);
        let mut unlimited = RequestBudget::new(None);
        for _ in 0..1000 {
            unlimited.count();
        }
        assert!(!unlimited.due());
    }

    #[test]
    fn the_master_is_told_once_with_the_count() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        let mut chan = Channel::new();
        let mut budget = RequestBudget::new(Some(2));
        for _ in 0..5 {
            budget.count();
            budget.tell_master(Some((&mut chan, &a)));
        }
        let mut rx = Channel::new();
        let mut got = Vec::new();
        rx.receive(&mut &b, |m| got.push(m)).unwrap();
        assert_eq!(got, [control::Msg::Recycle(2)]);
    }

    #[test]
    fn limits_with_jitter_stay_in_range_and_spread() {
        assert_eq!(request_limit(None, 10, 7), None);
        assert_eq!(request_limit(Some(0), 10, 7), None);
        assert_eq!(request_limit(Some(100), 0, 12345), Some(100));
        assert_eq!(request_limit(Some(100), 10, 21), Some(110));
        assert_eq!(request_limit(Some(100), 10, 22), Some(100));
        assert_eq!(request_limit(Some(u64::MAX), 10, 5), Some(u64::MAX));
        assert_eq!(request_limit(Some(1), u64::MAX, 5), Some(6));
        let limits: std::collections::BTreeSet<u64> = (0..50)
            .map(|_| request_limit(Some(1000), 100, jitter_seed()).unwrap())
            .collect();
        assert!(limits.iter().all(|l| (1000..=1100).contains(l)));
        assert!(limits.len() > 10, "seeds do not spread: {limits:?}");
    }

    #[test]
    fn private_memory_is_private_clean_plus_dirty() {
        let text = "55d0c0a0d000-7ffd5b9fe000 ---p 00000000 00:00 0  [rollup]\n\
                    Rss:               12000 kB\n\
                    Pss:                6000 kB\n\
                    Shared_Clean:       7000 kB\n\
                    Shared_Dirty:        500 kB\n\
                    Private_Clean:       300 kB\n\
                    Private_Dirty:      4200 kB\n\
                    Referenced:        12000 kB\n";
        assert_eq!(parse_private(text), Some(4500 * 1024));
        assert_eq!(parse_private("Rss: 10 kB\n"), None);
        assert_eq!(parse_private("Private_Dirty: lots kB\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_private_memory_grows_with_what_it_writes() {
        let pid = std::process::id() as i32;
        let before = private_bytes(pid).unwrap();
        assert!(before > 0);
        let block = vec![1u8; 32 << 20];
        let after = private_bytes(pid).unwrap();
        assert!(block.iter().all(|&b| b == 1));
        // Other test threads allocate too; the 32 MiB written must show.
        assert!(after >= before + (16 << 20), "{before} -> {after}");
        assert!(private_bytes(i32::MAX).is_err());
    }

    #[test]
    fn mib_has_one_decimal() {
        assert_eq!(mib(3 * 1024 * 1024 + 512 * 1024), "3.5 MiB");
    }
}
