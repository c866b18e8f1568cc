//! The cached `Date` header value, refreshed at most once a second.

use std::time::{Duration, Instant, SystemTime};

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) formatted once a second
/// rather than per response.
#[derive(Debug)]
pub(crate) struct DateCache {
    bytes: [u8; 29],
    refreshed: Instant,
}

impl DateCache {
    pub(crate) fn new() -> Self {
        let mut cache = DateCache {
            bytes: [b' '; 29],
            refreshed: Instant::now(),
        };
        cache.refresh();
        cache
    }

    fn refresh(&mut self) {
        // Formatted in place (`fmt_http_date` would allocate a `String`
        // every second).
        use std::io::Write;
        let date = httpdate::HttpDate::from(SystemTime::now());
        let mut out = &mut self.bytes[..];
        let _ = write!(out, "{date}");
    }

    /// Re-formats the date when a second or more has passed since `now`'s
    /// last refresh.
    pub(crate) fn tick(&mut self, now: Instant) {
        if now.duration_since(self.refreshed) >= Duration::from_secs(1) {
            self.refreshed = now;
            self.refresh();
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_an_http_date() {
        let d = DateCache::new();
        let s = std::str::from_utf8(d.bytes()).unwrap();
        assert!(s.ends_with(" GMT"), "{s}");
        assert!(httpdate::parse_http_date(s).is_ok());
    }
}
