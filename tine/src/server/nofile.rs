//! The open-file limit (`RLIMIT_NOFILE`). Every connection is a
//! descriptor, and [`Limits::max_connections`](crate::Limits::max_connections)
//! defaults to 10,000 while the usual soft limit is 1,024: past it,
//! `accept` fails with `EMFILE` and clients wait. So at start-up the master
//! (or the single process) raises its soft limit to the hard limit, which
//! any process may do, and its workers inherit it; if that still cannot
//! hold `max_connections` plus the listeners and [`FD_MARGIN`], it warns.
//!
//! The open-file caches of static mounts
//! ([`StaticConfig::open_file_cache`](crate::StaticConfig::open_file_cache))
//! keep descriptors too, up to 1,024 per mount and process. They were not
//! counted here, so a limit that passed this check could still be filled
//! by cached files and new connections failed `accept` with `EMFILE`
//! (see `static_files::cache`). Now they get what is left after the
//! connections, the listeners and the margin: the caches' maximum is part
//! of what the limit is raised for when it can be, and when the limit is
//! fixed they are made smaller to fit, with a warning naming the numbers.

/// Descriptors kept aside besides connections and listeners: the event
/// loop's epoll and signal fds, the control channel, Redis connections,
/// static files being sent, logs. (Not the open-file caches: they get
/// what is left over, see [`cache_room`].)
pub(crate) const FD_MARGIN: u64 = 64;

/// What to do about the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Set the soft limit to this (`None`: leave it).
    pub(crate) raise_to: Option<u64>,
    /// Descriptors one process needs: connections, listeners, margin.
    pub(crate) needed: u64,
    /// `needed` plus what the open-file caches would keep at most.
    pub(crate) wanted: u64,
}

/// The decision, from the current `soft` and `hard` limits (`None`:
/// unlimited) and what one process needs (`cache`: descriptors the
/// open-file caches would keep at most): raise the soft limit to the hard
/// one when it is lower (to `wanted` when the hard limit is unlimited,
/// since some systems refuse an unlimited soft `RLIMIT_NOFILE`).
pub(crate) fn plan(
    soft: Option<u64>,
    hard: Option<u64>,
    max_connections: usize,
    listeners: usize,
    cache: usize,
) -> Plan {
    let needed = (max_connections as u64)
        .saturating_add(listeners as u64)
        .saturating_add(FD_MARGIN);
    let wanted = needed.saturating_add(cache as u64);
    let raise_to = match (soft, hard) {
        (None, _) => None,
        (Some(s), Some(h)) => (s < h).then_some(h),
        (Some(s), None) => (s < wanted).then_some(wanted),
    };
    Plan {
        raise_to,
        needed,
        wanted,
    }
}

/// Descriptors the limit `soft` leaves for the open-file caches once
/// `needed` are set aside (`None`: no limit).
pub(crate) fn cache_room(soft: Option<u64>, needed: u64) -> Option<usize> {
    soft.map(|s| usize::try_from(s.saturating_sub(needed)).unwrap_or(usize::MAX))
}

/// The warning to log when the open-file caches were given `given`
/// descriptors, fewer than the `wanted` they would keep, because the limit
/// `soft` leaves only that much beside `max_connections`, the listeners
/// and [`FD_MARGIN`].
pub(crate) fn cache_shortfall(
    soft: Option<u64>,
    max_connections: usize,
    listeners: usize,
    wanted: usize,
    given: usize,
) -> Option<String> {
    let soft = soft?;
    (given < wanted).then(|| {
        let cache = if given == 0 {
            "is off (every request opens its file)".to_owned()
        } else {
            format!("keeps at most {given} open files per process")
        };
        format!(
            "the open-file limit ({soft}) leaves {given} descriptors beside max_connections \
             ({max_connections}), {listeners} listening socket(s) and {FD_MARGIN} kept aside: \
             the static open-file cache {cache} instead of up to {wanted}; raise the hard \
             limit (ulimit -Hn, systemd's LimitNOFILE=) or lower max_connections"
        )
    })
}

/// The warning to log when the limit `soft` (after raising) cannot hold
/// `needed` descriptors.
pub(crate) fn shortfall(soft: Option<u64>, needed: u64, max_connections: usize) -> Option<String> {
    let soft = soft?;
    (soft < needed).then(|| {
        format!(
            "the open-file limit ({soft}) cannot hold max_connections ({max_connections}) plus \
             listeners and {FD_MARGIN} more descriptors ({needed} in all): connections past it \
             wait in the queue; raise the hard limit (ulimit -Hn, systemd's LimitNOFILE=) or \
             lower max_connections"
        )
    })
}

/// Raises this process's soft `RLIMIT_NOFILE` as [`plan`] says, gives the
/// open-file caches of the static mounts what is left (their workers
/// inherit it), and warns when it is still too low for either. Never
/// fails: the server can run anyway.
pub(crate) fn raise(max_connections: usize, listeners: usize) {
    use crate::static_files::cache;
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    // `None` is unlimited, on every platform.
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let cache_wanted = cache::wanted();
    let plan = plan(current, maximum, max_connections, listeners, cache_wanted);
    let mut now = current;
    if let Some(to) = plan.raise_to {
        let want = Rlimit {
            current: Some(to),
            maximum,
        };
        match setrlimit(Resource::Nofile, want) {
            Ok(()) => {
                log::debug!("open-file limit raised from {current:?} to {to}");
                now = Some(to);
            }
            Err(e) => log::warn!("cannot raise the open-file limit from {current:?} to {to}: {e}"),
        }
    }
    if let Some(warning) = shortfall(now, plan.needed, max_connections) {
        log::warn!("{warning}");
    }
    let given = cache::fit(cache_room(now, plan.needed));
    if let Some(warning) = cache_shortfall(now, max_connections, listeners, cache_wanted, given) {
        log::warn!("{warning}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let p = plan(Some(1024), Some(524_288), 10_000, 4, 0);
        assert_eq!(p.raise_to, Some(524_288));
        assert_eq!(p.needed, 10_000 + 4 + FD_MARGIN);
        assert_eq!(shortfall(Some(524_288), p.needed, 10_000), None);
    }

    #[test]
    fn nothing_to_raise_when_soft_is_hard_or_unlimited() {
        assert_eq!(plan(Some(4096), Some(4096), 100, 1, 0).raise_to, None);
        assert_eq!(plan(None, None, 100, 1, 0).raise_to, None);
        assert_eq!(shortfall(None, 1_000_000, 100), None);
    }

    #[test]
    fn an_unlimited_hard_limit_raises_to_what_is_needed() {
        assert_eq!(plan(Some(256), None, 10_000, 2, 0).raise_to, Some(10_066));
        assert_eq!(plan(Some(20_000), None, 10_000, 2, 0).raise_to, None);
    }

    #[test]
    fn a_hard_limit_too_low_is_warned_about() {
        let p = plan(Some(1024), Some(4096), 10_000, 8, 0);
        assert_eq!(p.raise_to, Some(4096));
        let w = shortfall(Some(4096), p.needed, 10_000).expect("a warning");
        assert!(
            w.contains("(4096)") && w.contains("max_connections (10000)"),
            "{w}"
        );
        assert!(w.contains("LimitNOFILE"), "{w}");
        // Just enough is enough.
        assert_eq!(shortfall(Some(p.needed), p.needed, 10_000), None);
    }

    #[test]
    fn huge_settings_do_not_overflow() {
        let p = plan(Some(1024), Some(4096), usize::MAX, usize::MAX, usize::MAX);
        assert_eq!((p.needed, p.wanted), (u64::MAX, u64::MAX));
        assert_eq!(cache_room(Some(10), u64::MAX), Some(0));
    }

    /// The case that showed the problem: a limit of 1,200 passed the check for 1,000
    /// connections (1,065 needed), yet the cache kept 400 descriptors and
    /// 211 new connections were refused. The cache gets the 135 left.
    #[test]
    fn the_open_file_cache_gets_what_the_connections_leave() {
        let p = plan(Some(1200), Some(1200), 1000, 1, 1024);
        assert_eq!((p.raise_to, p.needed, p.wanted), (None, 1065, 2089));
        assert_eq!(shortfall(Some(1200), p.needed, 1000), None);
        assert_eq!(cache_room(Some(1200), p.needed), Some(135));
        let w = cache_shortfall(Some(1200), 1000, 1, 1024, 135).expect("a warning");
        assert!(
            w.contains("(1200) leaves 135 descriptors")
                && w.contains("max_connections (1000)")
                && w.contains("at most 135 open files")
                && w.contains("up to 1024"),
            "{w}"
        );
        // A limit that cannot hold the connections leaves the cache nothing.
        assert_eq!(
            cache_room(Some(64), plan(Some(64), Some(64), 10_000, 1, 1024).needed),
            Some(0)
        );
        let w = cache_shortfall(Some(64), 10_000, 1, 1024, 0).expect("a warning");
        assert!(w.contains("is off"), "{w}");
        // Room enough, or no limit: nothing to say.
        assert_eq!(cache_shortfall(Some(1 << 20), 1000, 1, 2048, 2048), None);
        assert_eq!(cache_shortfall(None, 1000, 1, 2048, 2048), None);
        assert_eq!(cache_room(None, 1065), None);
    }

    #[test]
    fn an_unlimited_hard_limit_raises_to_hold_the_caches_too() {
        let p = plan(Some(1024), None, 1000, 1, 2048);
        assert_eq!(p.raise_to, Some(1065 + 2048));
        assert_eq!(cache_room(p.raise_to, p.needed), Some(2048));
    }
}
