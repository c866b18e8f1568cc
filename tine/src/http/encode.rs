//! Response heads and chunk framing, written into a caller's buffer.

use http::header::{self, HeaderMap};
use http::StatusCode;

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
pub(crate) fn encode_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    length: Length,
    connection: Connection,
    date: &[u8],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\ndate: ");
    out.extend_from_slice(date);
    match length {
        Length::Fixed(n) => {
            out.extend_from_slice(b"\r\ncontent-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        }
        Length::Chunked => out.extend_from_slice(b"\r\ntransfer-encoding: chunked"),
        Length::None | Length::UntilClose => {}
    }
    match connection {
        Connection::Close => out.extend_from_slice(b"\r\nconnection: close"),
        Connection::KeepAlive10 => out.extend_from_slice(b"\r\nconnection: keep-alive"),
        Connection::Upgrade => out.extend_from_slice(b"\r\nconnection: upgrade"),
        Connection::Default => {}
    }
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
            || name == header::DATE
        {
            continue;
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
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
    /// A protocol switch (`101`).
    Upgrade,
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
    fn head_with_length() {
        let mut out = Vec::new();
        let mut h = HeaderMap::new();
        h.insert("content-type", "text/plain".parse().unwrap());
        h.insert("content-length", "999".parse().unwrap());
        encode_head(
            &mut out,
            StatusCode::OK,
            &h,
            Length::Fixed(13),
            Connection::Default,
            b"Thu, 01 Jan 1970 00:00:00 GMT",
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\ncontent-length: 13\r\ncontent-type: text/plain\r\n\r\n"
        );
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
