//! Response heads and chunk framing, written into a caller's buffer.

#[cfg(test)]
use http::header::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};
use http::StatusCode;

use super::date::DateCache;
use super::response::{Fields, KnownLine};

/// How the body after an encoded head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Length {
    /// The status forbids a body (1xx, 204, 304): no length header at all.
    None,
    /// `Content-Length: n`.
    Fixed(u64),
    /// `Transfer-Encoding: chunked` (HTTP/1.1 streams).
    Chunked,
    /// No length: the body ends when the connection closes (HTTP/1.0
    /// streams).
    UntilClose,
}

/// Whether `status` may carry a body.
pub(crate) fn status_allows_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

/// Writes a status line and headers, ending with the blank line.
///
/// Headers that tine controls (`Date`, `Content-Length`,
/// `Transfer-Encoding`, `Connection`) are taken from the arguments, never
/// from `headers`.
#[cfg(test)]
pub(crate) fn encode_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    length: Length,
    connection: Connection,
    date: &DateCache,
) {
    encode_status(out, status, length, connection, date);
    encode_fields(out, Fields::Map(headers));
}

/// Writes the status line and the headers tine controls (`Date`, the
/// length, `Connection`), without a map: the first part of a head, which
/// [`encode_fields`] ends.
#[inline]
pub(crate) fn encode_status(
    out: &mut Vec<u8>,
    status: StatusCode,
    length: Length,
    connection: Connection,
    date: &DateCache,
) {
    // One reservation for the common head (status line, date, length,
    // a content type, with the padding of the fixed-size copies): the
    // writes below then only copy.
    out.reserve(192);
    match length {
        // The common head: status line, date and the length's name are
        // one copy, kept with the date.
        Length::Fixed(n) if status == StatusCode::OK => {
            out.extend_from_slice(date.ok_head());
            put_decimal(out, n);
        }
        _ => encode_other_status(out, status, length, date.bytes()),
    }
    match connection {
        Connection::Close => out.extend_from_slice(b"\r\nconnection: close"),
        Connection::KeepAlive10 => out.extend_from_slice(b"\r\nconnection: keep-alive"),
        Connection::Upgrade => out.extend_from_slice(b"\r\nconnection: upgrade"),
        Connection::UpgradeClose => out.extend_from_slice(b"\r\nconnection: upgrade, close"),
        Connection::UpgradeKeepAlive10 => {
            out.extend_from_slice(b"\r\nconnection: upgrade, keep-alive");
        }
        Connection::Default => {}
    }
}

/// Appends `n` in decimal. The digits are made right to left, two at a
/// time, ending at a fixed place in a buffer twice their largest count; a
/// fixed-size window from the first digit is copied and cut back to them:
/// a few moves, where copying a length known only at run time (as from
/// `itoa`) is a call to `memcpy` (about 15 instructions a response more,
/// callgrind). Always inlined: it is on every response's way, and the
/// compiler would otherwise keep it as a call.
#[inline(always)]
fn put_decimal(out: &mut Vec<u8>, mut n: u64) {
    const MAX: usize = 20; // u64::MAX has 20 digits
    let mut buf = [0u8; 2 * MAX];
    let mut first = MAX;
    while n >= 100 {
        let pair = 2 * (n % 100) as usize;
        n /= 100;
        first -= 2;
        buf[first..first + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = 2 * n as usize;
        first -= 2;
        buf[first..first + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    } else {
        first -= 1;
        buf[first] = b'0' + n as u8;
    }
    let window: &[u8; MAX] = buf[first..first + MAX].try_into().expect("MAX bytes");
    out.extend_from_slice(window);
    // The window's bytes past the digits (`first` of them) go again.
    out.truncate(out.len() - first);
}

/// `00` to `99`, for [`put_decimal`].
const DIGIT_PAIRS: [u8; 200] = {
    let mut pairs = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        pairs[2 * i] = b'0' + (i / 10) as u8;
        pairs[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    pairs
};

/// [`encode_status`] for every head but a `200` with a length.
fn encode_other_status(out: &mut Vec<u8>, status: StatusCode, length: Length, date: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\ndate: ");
    out.extend_from_slice(date);
    match length {
        Length::Fixed(n) => {
            out.extend_from_slice(b"\r\ncontent-length: ");
            put_decimal(out, n);
        }
        Length::Chunked => out.extend_from_slice(b"\r\ntransfer-encoding: chunked"),
        Length::None | Length::UntilClose => {}
    }
}

/// Writes one header line of a head begun by [`encode_status`], unless
/// it is one that tine writes itself.
#[inline]
pub(crate) fn encode_field(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    if name == header::CONTENT_LENGTH
        || name == header::TRANSFER_ENCODING
        || name == header::CONNECTION
        || name == header::DATE
    {
        return;
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
}

/// Writes the headers of a response after [`encode_status`], and the end
/// of the head: the common response (a constructor's content type, no
/// other header) in one copy of a line made at compile time.
#[inline]
pub(crate) fn encode_fields(out: &mut Vec<u8>, fields: Fields<'_>) {
    match fields {
        Fields::Known(line) => {
            // All of it, padding too (one fixed-size copy), then the
            // padding goes.
            out.extend_from_slice(&line.padded);
            out.truncate(out.len() - (KnownLine::SIZE - line.len));
        }
        Fields::None => out.extend_from_slice(b"\r\n\r\n"),
        Fields::Map(map) => {
            for (name, value) in map {
                encode_field(out, name, value);
            }
            out.extend_from_slice(b"\r\n\r\n");
        }
    }
}

/// The `Connection` header to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Connection {
    /// HTTP/1.1 keep-alive: no header needed.
    Default,
    /// The connection closes after this response.
    Close,
    /// An HTTP/1.0 client asked for keep-alive and gets it.
    KeepAlive10,
    /// A protocol switch (`101`), or a `426` on a connection kept open.
    Upgrade,
    /// A `426` on a connection that closes: `Upgrade` is listed too.
    UpgradeClose,
    /// A `426` to an HTTP/1.0 client kept alive: `Upgrade` is listed too.
    UpgradeKeepAlive10,
}

/// A response body's shape, as far as framing is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyShape {
    /// No body bytes.
    Empty,
    /// A body of known length (bytes in memory, a file region).
    Sized(u64),
    /// A body produced piece by piece, length unknown.
    Stream,
}

/// The request side of an exchange, as far as framing is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exchange {
    /// The request was `HEAD`: send the head only.
    pub(crate) head: bool,
    /// The request was HTTP/1.0.
    pub(crate) http10: bool,
    /// The connection may stay open after this response (the request
    /// allows it and the server is not draining).
    pub(crate) keep_alive: bool,
}

impl Exchange {
    /// The same exchange, closing the connection after its response (a
    /// request refused once its head was read: `HEAD` still gets no body,
    /// and HTTP/1.0 no chunks).
    pub(crate) fn closing(self) -> Exchange {
        Exchange {
            keep_alive: false,
            ..self
        }
    }

    /// A response after which the connection closes (errors that end it,
    /// `408`) when nothing of its request is known: HTTP/1.1 form, body
    /// sent.
    pub(crate) const CLOSE: Exchange = Exchange {
        head: false,
        http10: false,
        keep_alive: false,
    };
    /// The `101` of a WebSocket upgrade: the connection stays, for the
    /// new protocol.
    pub(crate) const UPGRADE: Exchange = Exchange {
        head: false,
        http10: false,
        keep_alive: true,
    };
}

/// How a response goes on the wire: what [`framing`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Framing {
    /// How the body is delimited.
    pub(crate) length: Length,
    /// The `Connection` header.
    pub(crate) connection: Connection,
    /// Whether the body bytes are sent after the head.
    pub(crate) send_body: bool,
    /// Whether the connection stays open afterwards.
    pub(crate) keep_alive: bool,
}

/// Decides a response's framing (RFC 9112 §6): 1xx, 204 and 304 carry no
/// body and no length; sized bodies get `Content-Length`; streams are
/// chunked for HTTP/1.1 and delimited by closing the connection for
/// HTTP/1.0 (which has no chunking); `HEAD` gets the head a `GET` would
/// have, without the body; `101` says `Connection: upgrade`.
#[inline]
pub(crate) fn framing(status: StatusCode, body: BodyShape, exchange: Exchange) -> Framing {
    // Most answers: a `200` with a sized body on a kept HTTP/1.1
    // connection. What the general rules below decide for it, in four
    // tests instead of about ten (callgrind); `framing_general`'s test
    // checks the two agree.
    if let (StatusCode::OK, BodyShape::Sized(n), true, false) =
        (status, body, exchange.keep_alive, exchange.http10)
    {
        return Framing {
            length: Length::Fixed(n),
            connection: Connection::Default,
            send_body: !exchange.head,
            keep_alive: true,
        };
    }
    framing_general(status, body, exchange)
}

/// [`framing`] for every response.
fn framing_general(status: StatusCode, body: BodyShape, exchange: Exchange) -> Framing {
    let mut keep_alive = exchange.keep_alive;
    let length = if !status_allows_body(status) {
        Length::None
    } else if status == StatusCode::RESET_CONTENT {
        // No content, and a length of 0 saying so (RFC 9110 §15.3.6),
        // whatever body the app gave it.
        Length::Fixed(0)
    } else {
        match body {
            BodyShape::Empty => Length::Fixed(0),
            BodyShape::Sized(n) => Length::Fixed(n),
            BodyShape::Stream if exchange.http10 => {
                keep_alive = false;
                Length::UntilClose
            }
            BodyShape::Stream => Length::Chunked,
        }
    };
    let connection = if status == StatusCode::SWITCHING_PROTOCOLS {
        Connection::Upgrade
    } else if status == StatusCode::UPGRADE_REQUIRED {
        // A `426` names the protocol in `Upgrade`, and a sender of
        // `Upgrade` lists it in `Connection` (RFC 9110 §7.8), whatever
        // else `Connection` says.
        match (keep_alive, exchange.http10) {
            (false, _) => Connection::UpgradeClose,
            (true, true) => Connection::UpgradeKeepAlive10,
            (true, false) => Connection::Upgrade,
        }
    } else if !keep_alive {
        Connection::Close
    } else if exchange.http10 {
        Connection::KeepAlive10
    } else {
        Connection::Default
    };
    Framing {
        length,
        connection,
        send_body: !exchange.head && length != Length::None && status != StatusCode::RESET_CONTENT,
        keep_alive,
    }
}

/// Frames one chunk of a chunked body.
pub(crate) fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let mut hex = [0u8; 16];
    let mut n = data.len();
    let mut i = hex.len();
    while n > 0 {
        i -= 1;
        hex[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
    }
    out.extend_from_slice(&hex[i..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk of a chunked body (no trailers).
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_as_itoa_writes_them() {
        for n in [
            0,
            7,
            9,
            10,
            13,
            99,
            100,
            16_384,
            1 << 40,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut out = b"x".to_vec();
            put_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    #[test]
    fn known_lines_end_the_head() {
        let mut out = Vec::new();
        use crate::Response;
        encode_fields(&mut out, Response::text("").fields());
        assert_eq!(out, b"\r\ncontent-type: text/plain; charset=utf-8\r\n\r\n");
        let mut out = Vec::new();
        encode_fields(&mut out, Response::json(&1).fields());
        assert_eq!(out, b"\r\ncontent-type: application/json\r\n\r\n");
        let mut out = Vec::new();
        encode_fields(&mut out, Response::bytes("").fields());
        assert_eq!(out, b"\r\ncontent-type: application/octet-stream\r\n\r\n");
        let mut out = Vec::new();
        encode_fields(&mut out, Response::html("").fields());
        assert_eq!(out, b"\r\ncontent-type: text/html; charset=utf-8\r\n\r\n");
    }

    #[test]
    fn head_with_length() {
        let date = DateCache::fixed(b"Thu, 01 Jan 1970 00:00:00 GMT");
        let head = |status: u16, length: Length, connection: Connection| {
            let mut out = Vec::new();
            let mut h = HeaderMap::new();
            h.insert("content-type", "text/plain".parse().unwrap());
            h.insert("content-length", "999".parse().unwrap());
            let status = StatusCode::from_u16(status).unwrap();
            encode_head(&mut out, status, &h, length, connection, &date);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            head(200, Length::Fixed(13), Connection::Default),
            "HTTP/1.1 200 OK\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\ncontent-length: 13\r\ncontent-type: text/plain\r\n\r\n"
        );
        assert_eq!(
            head(200, Length::Fixed(0), Connection::Close),
            "HTTP/1.1 200 OK\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\ncontent-length: 0\r\nconnection: close\r\ncontent-type: text/plain\r\n\r\n"
        );
        assert_eq!(
            head(404, Length::Fixed(9), Connection::KeepAlive10),
            "HTTP/1.1 404 Not Found\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\ncontent-length: 9\r\nconnection: keep-alive\r\ncontent-type: text/plain\r\n\r\n"
        );
        assert_eq!(
            head(200, Length::Chunked, Connection::Default),
            "HTTP/1.1 200 OK\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\ntransfer-encoding: chunked\r\ncontent-type: text/plain\r\n\r\n"
        );
        assert_eq!(
            head(304, Length::None, Connection::Default),
            "HTTP/1.1 304 Not Modified\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\ncontent-type: text/plain\r\n\r\n"
        );
    }

    #[test]
    fn fields_of_common_and_mapped_responses() {
        use crate::Response;
        let head = |res: &Response| {
            let mut out = Vec::new();
            encode_fields(&mut out, res.fields());
            String::from_utf8(out).unwrap()
        };
        // A constructor's content type is one line made in advance.
        let text = Response::text("hi");
        assert!(matches!(text.fields(), Fields::Known(_)));
        assert_eq!(
            head(&text),
            "\r\ncontent-type: text/plain; charset=utf-8\r\n\r\n"
        );
        assert_eq!(
            head(&Response::json(&1)),
            "\r\ncontent-type: application/json\r\n\r\n"
        );
        assert_eq!(head(&Response::empty(StatusCode::OK)), "\r\n\r\n");
        // Once the headers are a map, every field is written from it,
        // and tine's own are left out.
        let res = Response::html("x")
            .with_header("x-a", "1")
            .with_header("content-length", "99");
        assert!(matches!(res.fields(), Fields::Map(_)));
        assert_eq!(
            head(&res),
            "\r\ncontent-type: text/html; charset=utf-8\r\nx-a: 1\r\n\r\n"
        );
        // Asking for the map (even without changing it) keeps the type.
        let res = Response::bytes("x");
        assert_eq!(res.headers().len(), 1);
        assert_eq!(
            head(&res),
            "\r\ncontent-type: application/octet-stream\r\n\r\n"
        );
    }

    #[test]
    fn framing_common_case_is_the_general_rules() {
        let statuses = [100, 101, 200, 201, 204, 304, 404, 426, 500];
        let shapes = [
            BodyShape::Empty,
            BodyShape::Sized(0),
            BodyShape::Sized(13),
            BodyShape::Stream,
        ];
        for code in statuses {
            let status = StatusCode::from_u16(code).unwrap();
            for body in shapes {
                for bits in 0..8 {
                    let exchange = Exchange {
                        head: bits & 1 != 0,
                        http10: bits & 2 != 0,
                        keep_alive: bits & 4 != 0,
                    };
                    assert_eq!(
                        framing(status, body, exchange),
                        framing_general(status, body, exchange),
                        "{code} {body:?} {exchange:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn framing_table() {
        use BodyShape::{Empty, Sized, Stream};
        use Connection::{Close, Default, KeepAlive10, Upgrade, UpgradeClose, UpgradeKeepAlive10};
        use Length::{Chunked, Fixed, None as NoLength, UntilClose};
        let s = |code: u16| StatusCode::from_u16(code).unwrap();
        // (status, body, head, http10, keep-alive) =>
        // (length, connection, send body, stays open)
        #[rustfmt::skip]
        let table = [
            (200, Sized(5), false, false, true, Fixed(5), Default, true, true),
            (200, Empty, false, false, true, Fixed(0), Default, true, true),
            (200, Sized(5), false, false, false, Fixed(5), Close, true, false),
            (200, Sized(5), false, true, true, Fixed(5), KeepAlive10, true, true),
            (200, Sized(5), false, true, false, Fixed(5), Close, true, false),
            (200, Stream, false, false, true, Chunked, Default, true, true),
            // HTTP/1.0 has no chunking: the close ends the body.
            (200, Stream, false, true, true, UntilClose, Close, true, false),
            // HEAD: the same head as GET, no body.
            (200, Sized(5), true, false, true, Fixed(5), Default, false, true),
            (200, Stream, true, false, true, Chunked, Default, false, true),
            (200, Stream, true, true, true, UntilClose, Close, false, false),
            // No body and no length for 1xx, 204 and 304.
            (204, Sized(5), false, false, true, NoLength, Default, false, true),
            (304, Stream, false, false, true, NoLength, Default, false, true),
            (304, Stream, false, true, true, NoLength, KeepAlive10, false, true),
            (101, Empty, false, false, true, NoLength, Upgrade, false, true),
            (103, Empty, false, false, true, NoLength, Default, false, true),
            (404, Sized(9), false, false, false, Fixed(9), Close, true, false),
            // 205: a length of 0, never the body the app gave it.
            (205, Sized(4), false, false, true, Fixed(0), Default, false, true),
            (205, Stream, false, false, true, Fixed(0), Default, false, true),
            // A 426 lists `upgrade` in `Connection`, as its `Upgrade` asks.
            (426, Sized(9), false, false, true, Fixed(9), Upgrade, true, true),
            (426, Sized(9), false, false, false, Fixed(9), UpgradeClose, true, false),
            (426, Sized(9), false, true, true, Fixed(9), UpgradeKeepAlive10, true, true),
        ];
        for (code, body, head, http10, keep, length, connection, send, stays) in table {
            let exchange = Exchange {
                head,
                http10,
                keep_alive: keep,
            };
            assert_eq!(
                framing(s(code), body, exchange),
                Framing {
                    length,
                    connection,
                    send_body: send,
                    keep_alive: stays,
                },
                "{code} {body:?} {exchange:?}"
            );
        }
    }

    #[test]
    fn chunks() {
        let mut out = Vec::new();
        encode_chunk(&mut out, &[b'x'; 26]);
        encode_chunk(&mut out, b"");
        out.extend_from_slice(LAST_CHUNK);
        let mut expect = b"1a\r\n".to_vec();
        expect.extend_from_slice(&[b'x'; 26]);
        expect.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(out, expect);
    }
}
