//! A warning that a burst could repeat thousands of times (accepting out
//! of descriptors, a static file that cannot be opened for the same
//! reason) said at most once per interval, with a count of the rest.

use std::time::{Duration, Instant};

/// A warning said at most once per [`Throttle::EVERY`], then with how many
/// times it was held back since it was last said (which may be longer
/// ago than the interval: the count is told with the next occurrence).
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    next: Option<Instant>,
    held: u64,
}

impl Throttle {
    const EVERY: Duration = Duration::from_secs(10);

    /// `Some` (what to append to the warning) when it may be said now.
    pub(crate) fn allow(&mut self, now: Instant) -> Option<String> {
        if self.next.is_some_and(|next| now < next) {
            self.held += 1;
            return None;
        }
        self.next = Some(now + Self::EVERY);
        Some(match std::mem::take(&mut self.held) {
            0 => String::new(),
            n => format!(" ({n} more time(s) since it was last said)"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttled_warning_is_said_every_ten_seconds_with_a_count() {
        let mut t = Throttle::default();
        let start = Instant::now();
        assert_eq!(t.allow(start).as_deref(), Some(""));
        for ms in [100, 200, 9_999] {
            assert_eq!(t.allow(start + Duration::from_millis(ms)), None);
        }
        assert_eq!(
            t.allow(start + Duration::from_secs(10)).as_deref(),
            Some(" (3 more time(s) since it was last said)")
        );
        assert_eq!(t.allow(start + Duration::from_secs(15)), None);
    }
}
