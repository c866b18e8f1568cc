//! RESP2, the Redis protocol: encoding commands, and a parser for the
//! replies and pushes a pub/sub client receives.
//!
//! The RESP2 parser below is hand-written rather than taken from the
//! `redis-protocol` crate: we need five frame types, borrowed from our own
//! buffer, and a length check on a bulk string's header before its body is
//! buffered; the crate would bring `nom`, `crc16` and an exactly pinned
//! `cookie-factory` for that, and would still need the header check.

use std::io;

/// The longest status line, error line or length header accepted.
const MAX_LINE: usize = 64 * 1024;
/// The most elements an array frame from Redis may have (pushes have 3
/// or 4).
const MAX_ARRAY: usize = 64;
/// How deeply array frames may nest.
const MAX_DEPTH: usize = 2;

/// Appends a RESP2 command (an array of bulk strings) to `out`.
pub(super) fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(itoa::Buffer::new().format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        encode_bulk(out, &[arg]);
    }
}

/// Appends one RESP2 bulk string, the concatenation of `parts`.
pub(super) fn encode_bulk(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.push(b'$');
    out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
    out.extend_from_slice(b"\r\n");
    for part in parts {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
}

/// The start of a `PUBLISH` command, before its two arguments.
pub(super) const PUBLISH_HEAD: &[u8] = b"*3\r\n$7\r\nPUBLISH\r\n";

/// The `PSUBSCRIBE` pattern matching every channel that starts with
/// `prefix`: the prefix with glob characters escaped, then `*`.
pub(super) fn pattern_for(prefix: &str) -> Vec<u8> {
    let mut pattern = Vec::with_capacity(prefix.len() + 1);
    for &b in prefix.as_bytes() {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            pattern.push(b'\\');
        }
        pattern.push(b);
    }
    pattern.push(b'*');
    pattern
}

/// One RESP2 value, borrowed from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Frame<'a> {
    /// `+OK`
    Simple(&'a [u8]),
    /// `-ERR ...`
    Error(&'a [u8]),
    /// `:1`
    Integer(i64),
    /// `$3\r\nabc`, or `$-1` (`None`).
    Bulk(Option<&'a [u8]>),
    /// `*2\r\n...`, or `*-1` (`None`).
    Array(Option<Vec<Frame<'a>>>),
}

/// An error for data that breaks RESP2 (or our limits on it).
pub(super) fn protocol_error(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("Redis protocol error: {why}"),
    )
}

/// Decodes the frame at the start of `buf`: `Ok(None)` when `buf` holds
/// only part of it, else the frame and the bytes it took. Bulk strings
/// longer than `max_bulk` are refused from their header on.
pub(super) fn parse_frame(buf: &[u8], max_bulk: usize) -> io::Result<Option<(Frame<'_>, usize)>> {
    parse_at(buf, 0, max_bulk, 0)
}

/// [`parse_frame`] for the frame at `buf[pos..]`, nested `depth` arrays
/// deep; the position returned is where the frame ends in `buf`.
fn parse_at(
    buf: &[u8],
    pos: usize,
    max_bulk: usize,
    depth: usize,
) -> io::Result<Option<(Frame<'_>, usize)>> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some(end) = find_crlf(buf, pos + 1)? else {
        return Ok(None);
    };
    let line = &buf[pos + 1..end];
    let next = end + 2;
    let frame = match kind {
        b'+' => (Frame::Simple(line), next),
        b'-' => (Frame::Error(line), next),
        b':' => (Frame::Integer(parse_int(line)?), next),
        b'$' => match parse_int(line)? {
            -1 => (Frame::Bulk(None), next),
            n if n < 0 => return Err(protocol_error("negative length")),
            n if n as u64 > max_bulk as u64 => {
                return Err(protocol_error(&format!(
                    "a {n}-byte string exceeds the {max_bulk}-byte limit"
                )))
            }
            n => {
                let n = n as usize;
                if buf.len() < next + n + 2 {
                    return Ok(None);
                }
                if &buf[next + n..next + n + 2] != b"\r\n" {
                    return Err(protocol_error("string not followed by CRLF"));
                }
                (Frame::Bulk(Some(&buf[next..next + n])), next + n + 2)
            }
        },
        b'*' => match parse_int(line)? {
            -1 => (Frame::Array(None), next),
            n if n < 0 || n as u64 > MAX_ARRAY as u64 => {
                return Err(protocol_error("bad array length"))
            }
            _ if depth >= MAX_DEPTH => return Err(protocol_error("arrays nested too deeply")),
            n => {
                let mut items = Vec::with_capacity(n as usize);
                let mut at = next;
                for _ in 0..n {
                    let Some((item, after)) = parse_at(buf, at, max_bulk, depth + 1)? else {
                        return Ok(None);
                    };
                    items.push(item);
                    at = after;
                }
                (Frame::Array(Some(items)), at)
            }
        },
        other => {
            return Err(protocol_error(&format!(
                "unexpected type byte {:?}",
                other as char
            )))
        }
    };
    Ok(Some(frame))
}

/// The index of the CRLF ending the line that starts at `from`.
fn find_crlf(buf: &[u8], from: usize) -> io::Result<Option<usize>> {
    let window = &buf[from.min(buf.len())..buf.len().min(from + MAX_LINE)];
    match memchr::memchr(b'\n', window) {
        Some(i) if i > 0 && window[i - 1] == b'\r' => Ok(Some(from + i - 1)),
        Some(_) => Err(protocol_error("bare LF")),
        None if window.len() >= MAX_LINE => Err(protocol_error("line too long")),
        None => Ok(None),
    }
}

/// A decimal integer (a length or an integer reply).
fn parse_int(line: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| protocol_error("bad integer"))
}

/// Bytes of a RESP bulk string of `len` bytes, header included.
pub(super) fn bulk_size(len: usize) -> usize {
    1 + itoa::Buffer::new().format(len).len() + 2 + len + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_encoding() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"PUBLISH", b"tine:x", b"\x00a\r\nb"]);
        assert_eq!(
            out,
            b"*3\r\n$7\r\nPUBLISH\r\n$6\r\ntine:x\r\n$5\r\n\x00a\r\nb\r\n"
        );
        let mut out = Vec::new();
        encode_command(&mut out, &[b"AUTH", b"u", b""]);
        assert_eq!(out, b"*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$0\r\n\r\n");
        for len in [0, 9, 10, 99, 100, 123_456] {
            let data = vec![b'x'; len];
            let mut out = Vec::new();
            encode_command(&mut out, &[b"PUBLISH", b"tine:t", &data]);
            assert_eq!(
                out.len(),
                PUBLISH_HEAD.len() + bulk_size(6) + bulk_size(len)
            );
            assert!(out.starts_with(PUBLISH_HEAD));
        }
        assert_eq!(pattern_for("tine:"), b"tine:*");
        assert_eq!(pattern_for(""), b"*");
        assert_eq!(pattern_for("a*b?[c]\\:"), b"a\\*b\\?\\[c\\]\\\\:*");
    }

    #[test]
    fn frame_parsing() {
        let cases: Vec<(&[u8], Frame<'_>)> = vec![
            (b"+OK\r\n", Frame::Simple(b"OK")),
            (b"-ERR no\r\n", Frame::Error(b"ERR no")),
            (b":-42\r\n", Frame::Integer(-42)),
            (b"$3\r\na\r\n\r\n", Frame::Bulk(Some(b"a\r\n"))),
            (b"$0\r\n\r\n", Frame::Bulk(Some(b""))),
            (b"$-1\r\n", Frame::Bulk(None)),
            (b"*-1\r\n", Frame::Array(None)),
            (b"*0\r\n", Frame::Array(Some(vec![]))),
            (
                b"*3\r\n$10\r\npsubscribe\r\n$6\r\ntine:*\r\n:1\r\n",
                Frame::Array(Some(vec![
                    Frame::Bulk(Some(b"psubscribe")),
                    Frame::Bulk(Some(b"tine:*")),
                    Frame::Integer(1),
                ])),
            ),
        ];
        for (wire, want) in cases {
            let mut buf = wire.to_vec();
            buf.extend_from_slice(b"+next\r\n");
            let (frame, used) = parse_frame(&buf, 100).unwrap().unwrap();
            assert_eq!((frame, used), (want, wire.len()));
            for cut in 0..wire.len() {
                assert!(
                    parse_frame(&wire[..cut], 100).unwrap().is_none(),
                    "{wire:?} at {cut}"
                );
            }
        }
        for bad in [
            &b"?x\r\n"[..],
            b":12a\r\n",
            b"$-2\r\n",
            b"$5\r\nabcdefg",
            b"$101\r\n",
            b"*65\r\n",
            b"*1\r\n*1\r\n*1\r\n:1\r\n",
            b"+a\nb\r\n",
        ] {
            assert!(parse_frame(bad, 100).is_err(), "{bad:?}");
        }
        let long = vec![b'+'; MAX_LINE + 10];
        assert!(parse_frame(&long, 100).is_err());
        assert!(parse_frame(&long[..MAX_LINE - 10], 100).unwrap().is_none());
    }
}
