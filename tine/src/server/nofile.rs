//! The open-file limit (`RLIMIT_NOFILE`). Every connection is a
//! descriptor, and [`Limits::max_connections`](crate::Limits::max_connections)
//! defaults to 10,000 while the usual soft limit is 1,024: past it,
//! `accept` fails with `EMFILE` and clients wait. So at start-up the master
//! (or the single process) raises its soft limit to the hard limit, which
//! any process may do, and its workers inherit it; if that still cannot
//! hold `max_connections` plus the listeners and [`FD_MARGIN`], it warns.

/// Descriptors kept aside besides connections and listeners: the event
/// loop's epoll and signal fds, the control channel, Redis connections,
/// static files being sent, logs.
pub(crate) const FD_MARGIN: u64 = 64;

/// What to do about the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Set the soft limit to this (`None`: leave it).
    pub(crate) raise_to: Option<u64>,
    /// Descriptors one process needs.
    pub(crate) needed: u64,
}

/// The decision, from the current `soft` and `hard` limits (`None`:
/// unlimited) and what one process needs: raise the soft limit to the hard
/// one when it is lower (to `needed` when the hard limit is unlimited,
/// since some systems refuse an unlimited soft `RLIMIT_NOFILE`).
pub(crate) fn plan(
    soft: Option<u64>,
    hard: Option<u64>,
    max_connections: usize,
    listeners: usize,
) -> Plan {
    let needed = (max_connections as u64)
        .saturating_add(listeners as u64)
        .saturating_add(FD_MARGIN);
    let raise_to = match (soft, hard) {
        (None, _) => None,
        (Some(s), Some(h)) => (s < h).then_some(h),
        (Some(s), None) => (s < needed).then_some(needed),
    };
    Plan { raise_to, needed }
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

/// Raises this process's soft `RLIMIT_NOFILE` as [`plan`] says and warns
/// when it is still too low. Never fails: the server can run anyway.
pub(crate) fn raise(max_connections: usize, listeners: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    // `None` is unlimited, on every platform.
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let plan = plan(current, maximum, max_connections, listeners);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let p = plan(Some(1024), Some(524_288), 10_000, 4);
        assert_eq!(p.raise_to, Some(524_288));
        assert_eq!(p.needed, 10_000 + 4 + FD_MARGIN);
        assert_eq!(shortfall(Some(524_288), p.needed, 10_000), None);
    }

    #[test]
    fn nothing_to_raise_when_soft_is_hard_or_unlimited() {
        assert_eq!(plan(Some(4096), Some(4096), 100, 1).raise_to, None);
        assert_eq!(plan(None, None, 100, 1).raise_to, None);
        assert_eq!(shortfall(None, 1_000_000, 100), None);
    }

    #[test]
    fn an_unlimited_hard_limit_raises_to_what_is_needed() {
        assert_eq!(plan(Some(256), None, 10_000, 2).raise_to, Some(10_066));
        assert_eq!(plan(Some(20_000), None, 10_000, 2).raise_to, None);
    }

    #[test]
    fn a_hard_limit_too_low_is_warned_about() {
        let p = plan(Some(1024), Some(4096), 10_000, 8);
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
        let p = plan(Some(1024), Some(4096), usize::MAX, usize::MAX);
        assert_eq!(p.needed, u64::MAX);
    }
}
