//! `Range` headers for a static file: a range served lies within the file.
//!
//! The input is a file size then a `Range` header value. Whatever the
//! value, a `Partial` answer is at least one byte, starts inside the file
//! and ends by its end (no overflow), and the answer is the reference's
//! below: RFC 9110 §14.1.2 for a single range, as `range.rs` documents its
//! choices (a header it does not take, or several ranges, is served whole;
//! numbers too large for `u64` saturate; a suffix range of an empty file
//! is served whole). The reference does its arithmetic in `u128`.
//!
//! The size: the first input byte's low bit picks a small size (the next
//! byte, so that most ranges land in or near the file) or a full `u64`
//! (the next eight bytes, for the arithmetic at the top of the range).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tine::__fuzz::RangeAnswer;

/// 1*DIGIT, saturating at `u64::MAX` as `range.rs` documents (so that
/// `bytes=<huge>-<huger>` and `bytes=<huger>-<huge>` are both the same
/// unsatisfiable range, although RFC 9110 calls the second invalid); kept
/// in a `u128` so that the arithmetic below cannot overflow.
fn digits(s: &[u8]) -> Option<u128> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = s.iter().fold(0u128, |n, &d| {
        n.saturating_mul(10).saturating_add(u128::from(d - b'0'))
    });
    Some(n.min(u128::from(u64::MAX)))
}

fn reference(value: &[u8], size: u64) -> RangeAnswer {
    let size = u128::from(size);
    if value.len() < 6 || !value[..6].eq_ignore_ascii_case(b"bytes=") {
        return RangeAnswer::Full;
    }
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let specs: Vec<&[u8]> = value[6..]
        .split(|&b| b == b',')
        .map(|s| {
            let start = s.iter().position(|b| !ows(b)).unwrap_or(s.len());
            let end = s.iter().rposition(|b| !ows(b)).map_or(start, |i| i + 1);
            &s[start..end.max(start)]
        })
        .filter(|s| !s.is_empty())
        .collect();
    let [spec] = specs[..] else {
        return RangeAnswer::Full;
    };
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return RangeAnswer::Full;
    };
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    let (start, end) = if first.is_empty() {
        let Some(n) = digits(last) else {
            return RangeAnswer::Full;
        };
        if n == 0 {
            return RangeAnswer::Unsatisfiable;
        }
        if size == 0 {
            return RangeAnswer::Full;
        }
        (size - n.min(size), size - 1)
    } else {
        let Some(start) = digits(first) else {
            return RangeAnswer::Full;
        };
        let end = if last.is_empty() {
            u128::MAX
        } else {
            match digits(last) {
                Some(end) if end >= start => end,
                _ => return RangeAnswer::Full,
            }
        };
        if start >= size {
            return RangeAnswer::Unsatisfiable;
        }
        (start, end.min(size - 1))
    };
    RangeAnswer::Partial {
        start: start as u64,
        len: (end - start + 1) as u64,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (size, value) = if mode & 1 == 0 {
        match rest.split_first() {
            Some((&size, value)) => (u64::from(size), value),
            None => return,
        }
    } else {
        if rest.len() < 8 {
            return;
        }
        let (size, value) = rest.split_at(8);
        (u64::from_le_bytes(size.try_into().unwrap()), value)
    };
    let got = tine::__fuzz::range(value, size);
    if let RangeAnswer::Partial { start, len } = got {
        assert!(len >= 1, "{got:?} for size {size}");
        let end = start.checked_add(len).expect("range end overflows");
        assert!(end <= size, "{got:?} past the end of {size} bytes");
    }
    assert_eq!(
        got,
        reference(value, size),
        "Range: {:?}, size {size}",
        String::from_utf8_lossy(value)
    );
});
