//! The cached `Date` header value, refreshed at most once a second.

use std::time::{Duration, Instant, SystemTime};

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) formatted once a second
/// rather than per response, inside the beginning of the most common head
/// (`200`, with a length), which is then one copy.
#[derive(Debug)]
pub(crate) struct DateCache {
    /// `HTTP/1.1 200 OK\r\ndate: DATE\r\ncontent-length: `.
    head: [u8; OK_HEAD.len()],
    refreshed: Instant,
}

/// The head [`DateCache`] keeps, with a blank date at [`DATE`].
const OK_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ndate:                              \r\ncontent-length: ";
/// Where the date is in [`OK_HEAD`].
const DATE: std::ops::Range<usize> = 23..52;

impl DateCache {
    pub(crate) fn new() -> Self {
        let mut cache = DateCache {
            head: [0; OK_HEAD.len()],
            refreshed: Instant::now(),
        };
        cache.head.copy_from_slice(OK_HEAD);
        cache.refresh();
        cache
    }

    fn refresh(&mut self) {
        // Formatted in place (`fmt_http_date` would allocate a `String`
        // every second).
        use std::io::Write;
        let date = httpdate::HttpDate::from(SystemTime::now());
        let mut out = &mut self.head[DATE];
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

    /// A cache showing `date` (tests of the encoder).
    #[cfg(test)]
    pub(crate) fn fixed(date: &[u8; 29]) -> Self {
        let mut cache = DateCache::new();
        cache.head[DATE].copy_from_slice(date);
        cache
    }

    /// The date.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.head[DATE]
    }

    /// `HTTP/1.1 200 OK`, the `Date` header and `content-length: `, to be
    /// followed by the length.
    pub(crate) fn ok_head(&self) -> &[u8] {
        &self.head
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
        let head = std::str::from_utf8(d.ok_head()).unwrap();
        assert_eq!(
            head,
            format!("HTTP/1.1 200 OK\r\ndate: {s}\r\ncontent-length: ")
        );
    }
}
