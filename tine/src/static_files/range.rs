//! `Range: bytes=…` parsing (RFC 9110 §14.1–14.2), single range only.

/// What to do with a `Range` header for a representation of a given size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RangeDecision {
    /// Ignore the header and send the whole representation with 200: the
    /// header is syntactically invalid, uses another unit, asks for several
    /// ranges, or (empty file) is a non-zero suffix range, which RFC 9110
    /// calls satisfiable but which no `Content-Range` can express.
    Full,
    /// Send `len` bytes starting at `start` with 206.
    Partial {
        /// First byte offset.
        start: u64,
        /// Number of bytes (at least 1).
        len: u64,
    },
    /// 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// Decides how to answer `Range: <value>` for a representation of `size`
/// bytes.
///
/// Accepted forms: `bytes=a-b`, `bytes=a-`, `bytes=-n` (unit is
/// case-insensitive, optional whitespace around list elements, empty list
/// elements are skipped). Numbers too large for `u64` saturate, so a huge
/// `first-pos` is unsatisfiable and a huge `last-pos`/suffix covers the rest
/// of the file.
pub(super) fn decide(value: &[u8], size: u64) -> RangeDecision {
    let Some(set) = strip_prefix_ignore_case(value, b"bytes=") else {
        return RangeDecision::Full;
    };
    let mut specs = set
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        // No range at all (invalid) or several ranges: serve it whole.
        return RangeDecision::Full;
    };
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return RangeDecision::Full;
    };
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    if first.is_empty() {
        // suffix-range: "-n"
        let Some(n) = parse_digits(last) else {
            return RangeDecision::Full;
        };
        if n == 0 {
            RangeDecision::Unsatisfiable
        } else if size == 0 {
            RangeDecision::Full
        } else {
            let len = n.min(size);
            RangeDecision::Partial {
                start: size - len,
                len,
            }
        }
    } else {
        let Some(start) = parse_digits(first) else {
            return RangeDecision::Full;
        };
        let end = if last.is_empty() {
            u64::MAX
        } else {
            match parse_digits(last) {
                Some(end) if end >= start => end,
                _ => return RangeDecision::Full,
            }
        };
        if start >= size {
            return RangeDecision::Unsatisfiable;
        }
        let end = end.min(size - 1);
        RangeDecision::Partial {
            start,
            len: end - start + 1,
        }
    }
}

/// 1*DIGIT, saturating at `u64::MAX`.
fn parse_digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |acc, &d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// Trims optional whitespace (SP / HTAB) on both ends.
pub(super) fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ' && b != b'\t');
    let Some(start) = start else { return &[] };
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .unwrap_or(start);
    &s[start..=end]
}

#[cfg(test)]
mod tests {
    use super::RangeDecision::{Full, Partial, Unsatisfiable};
    use super::*;

    fn d(v: &str, size: u64) -> RangeDecision {
        decide(v.as_bytes(), size)
    }

    #[test]
    fn closed_ranges() {
        assert_eq!(d("bytes=0-0", 10), Partial { start: 0, len: 1 });
        assert_eq!(d("bytes=0-9", 10), Partial { start: 0, len: 10 });
        assert_eq!(d("bytes=2-5", 10), Partial { start: 2, len: 4 });
        assert_eq!(d("bytes=9-9", 10), Partial { start: 9, len: 1 });
        // last-pos past the end is clamped.
        assert_eq!(d("bytes=5-100", 10), Partial { start: 5, len: 5 });
        assert_eq!(
            d("bytes=5-99999999999999999999999", 10),
            Partial { start: 5, len: 5 }
        );
    }

    #[test]
    fn open_and_suffix_ranges() {
        assert_eq!(d("bytes=3-", 10), Partial { start: 3, len: 7 });
        assert_eq!(d("bytes=0-", 10), Partial { start: 0, len: 10 });
        assert_eq!(d("bytes=-3", 10), Partial { start: 7, len: 3 });
        assert_eq!(d("bytes=-10", 10), Partial { start: 0, len: 10 });
        assert_eq!(d("bytes=-50", 10), Partial { start: 0, len: 10 });
        assert_eq!(
            d("bytes=-99999999999999999999999", 10),
            Partial { start: 0, len: 10 }
        );
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(d("bytes=10-", 10), Unsatisfiable);
        assert_eq!(d("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(d("bytes=99999999999999999999999-", 10), Unsatisfiable);
        assert_eq!(d("bytes=-0", 10), Unsatisfiable);
    }

    #[test]
    fn empty_representation() {
        assert_eq!(d("bytes=0-", 0), Unsatisfiable);
        assert_eq!(d("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(d("bytes=-0", 0), Unsatisfiable);
        // Satisfiable per RFC 9110 but inexpressible as 206: whole (empty) 200.
        assert_eq!(d("bytes=-5", 0), Full);
    }

    #[test]
    fn syntax_variants_accepted() {
        assert_eq!(d("BYTES=1-2", 10), Partial { start: 1, len: 2 });
        assert_eq!(d("Bytes= 1-2 ", 10), Partial { start: 1, len: 2 });
        assert_eq!(d("bytes=1-2,", 10), Partial { start: 1, len: 2 });
        assert_eq!(d("bytes=, 1-2 ,,", 10), Partial { start: 1, len: 2 });
    }

    #[test]
    fn invalid_is_ignored() {
        for v in [
            "",
            "bytes",
            "bytes=",
            "bytes=,",
            "bytes=-",
            "bytes=abc",
            "bytes=5",
            "bytes=5-3",
            "bytes=a-3",
            "bytes=1-b",
            "bytes=+1-2",
            "bytes=1 - 2",
            "bytes=--1",
            "bytes=-1-2",
            "bytes=0x1-2",
            "items=0-1",
            "bytes 0-1",
            "bytes =0-1",
        ] {
            assert_eq!(d(v, 10), Full, "{v:?}");
        }
    }

    #[test]
    fn multiple_ranges_served_whole() {
        assert_eq!(d("bytes=0-1,3-4", 10), Full);
        assert_eq!(d("bytes=0-1, -2", 10), Full);
        assert_eq!(d("bytes=0-1,50-60", 10), Full);
    }

    #[test]
    fn ows_trim() {
        assert_eq!(trim_ows(b"  a b\t"), b"a b");
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b"x"), b"x");
    }
}
