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
        let text = httpdate::fmt_http_date(SystemTime::now());
        let n = text.len().min(29);
        self.bytes[..n].copy_from_slice(&text.as_bytes()[..n]);
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
