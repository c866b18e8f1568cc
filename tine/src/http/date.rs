//! The cached `Date` header value, refreshed as each second of the clock
//! begins.

use std::time::{Duration, Instant, SystemTime};

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) formatted once a second
/// rather than per response, inside the beginning of the most common head
/// (`200`, with a length), which is then one copy.
#[derive(Debug)]
pub(crate) struct DateCache {
    /// `HTTP/1.1 200 OK\r\ndate: DATE\r\ncontent-length: `.
    head: [u8; OK_HEAD.len()],
    /// When the clock's next second begins: the date is made again then.
    next: Instant,
}

/// The head [`DateCache`] keeps, with a blank date at [`DATE`].
const OK_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ndate:                              \r\ncontent-length: ";
/// Where the date is in [`OK_HEAD`].
const DATE: std::ops::Range<usize> = 23..52;

impl DateCache {
    pub(crate) fn new() -> Self {
        let now = Instant::now();
        let mut cache = DateCache {
            head: [0; OK_HEAD.len()],
            next: now,
        };
        cache.head.copy_from_slice(OK_HEAD);
        cache.refresh(now);
        cache
    }

    /// Formats the clock's current second, and notes when the next one
    /// begins. (Refreshed merely a second after the last refresh, the
    /// date lagged the clock by up to a second and more: a file modified
    /// just now could show a `Last-Modified` later than the `Date`, which
    /// RFC 9110 §8.8.2.1 forbids, and caches would overestimate ages.)
    fn refresh(&mut self, now: Instant) {
        // Formatted in place (`fmt_http_date` would allocate a `String`
        // every second).
        use std::io::Write;
        let clock = SystemTime::now();
        let date = httpdate::HttpDate::from(clock);
        let mut out = &mut self.head[DATE];
        let _ = write!(out, "{date}");
        let into_second = clock
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        self.next = now + Duration::from_nanos(u64::from(1_000_000_000 - into_second));
    }

    /// Re-formats the date once the clock's next second has begun (`now`:
    /// the loop turn's time).
    pub(crate) fn tick(&mut self, now: Instant) {
        if now >= self.next {
            self.refresh(now);
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

    #[test]
    fn the_date_turns_with_the_clocks_second() {
        let shown = |d: &DateCache| {
            httpdate::parse_http_date(std::str::from_utf8(d.bytes()).unwrap()).unwrap()
        };
        let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        let mut d = DateCache::new();
        let made = secs(shown(&d));
        // Just past the clock's next second (well under a second after the
        // cache was made): the date is that second's already.
        let into = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        std::thread::sleep(Duration::from_nanos(
            u64::from(1_000_000_000 - into) + 5_000_000,
        ));
        d.tick(Instant::now());
        let clock = secs(SystemTime::now());
        let date = secs(shown(&d));
        assert!(date > made, "still {made}'s date");
        // The second may have turned again between the tick and the clock
        // read on a loaded machine: never more than that.
        assert!(
            date == clock || date + 1 == clock,
            "{date} shown at {clock}"
        );
        assert!(d.next > Instant::now() && d.next <= Instant::now() + Duration::from_secs(1));
    }
}
