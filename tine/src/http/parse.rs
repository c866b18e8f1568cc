//! Request decoding on buffers: bytes in; "need more", a complete request,
//! or an error carrying the HTTP status to answer.
//!
//! Nothing here touches a socket. The event loop appends what it reads to a
//! connection's buffer and calls [`Decoder::decode`] until it says
//! [`Decoded::NeedMore`]. The end of the request head is searched
//! incrementally (each byte is scanned once), the head is parsed with
//! `httparse`, and header values are slices of the read buffer (no copy).

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, StatusCode, Version};

use super::body::ChunkedDecoder;
use crate::limits::Limits;

/// The searcher for the blank line ending a head, built once.
static HEAD_END: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));

/// Header slots kept on the stack; a larger `max_headers` uses the heap.
const STACK_HEADERS: usize = 128;

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed and validated request head.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) method: Method,
    pub(crate) target: PathAndQuery,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) framing: Framing,
    /// Whether the client allows the connection to stay open afterwards.
    pub(crate) keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub(crate) expect_continue: bool,
}

/// What one call to [`Decoder::decode`] produced.
// A request is the common result; boxing it cost an allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Decoded {
    /// The buffer holds no complete request yet.
    NeedMore,
    /// The head is complete, the body is not, and the client asked for
    /// `100 Continue` before sending it. Reported once per request.
    Continue,
    /// A complete request.
    Request(Head, Bytes),
    /// The request is malformed or over a limit: answer with this status
    /// and close the connection (the rest of the stream cannot be trusted).
    Error(StatusCode),
}

#[derive(Debug)]
enum State {
    Head,
    Body {
        head: Box<Head>,
        body: Body,
        continue_sent: bool,
    },
}

#[derive(Debug)]
enum Body {
    Length(usize),
    Chunked(ChunkedDecoder, Vec<u8>),
}

/// Incremental request decoder for one connection.
#[derive(Debug)]
pub(crate) struct Decoder {
    /// Bytes of the buffer already searched for the end of the head.
    scanned: usize,
    /// Bytes of empty lines (CRLF or bare LF) before the head's request
    /// line. They stay in the buffer and count against `max_header`;
    /// `httparse` skips them when it parses the head.
    skip: usize,
    state: State,
}

impl Decoder {
    pub(crate) fn new() -> Self {
        Decoder {
            scanned: 0,
            skip: 0,
            state: State::Head,
        }
    }

    /// Whether part of a request has been consumed from the buffer (a
    /// head whose body is still arriving).
    pub(crate) fn mid_request(&self) -> bool {
        matches!(self.state, State::Body { .. })
    }

    /// Decodes the next request from `buf`, consuming its bytes.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut, limits: &Limits) -> Decoded {
        if let State::Head = self.state {
            // Only the first unscanned byte is looked at: a request line
            // never starts with CR or LF, so the common case costs one
            // comparison.
            if self.scanned == self.skip && matches!(buf.get(self.skip), Some(b'\r' | b'\n')) {
                if let Some(early) = self.skip_empty_lines(buf, limits.max_header) {
                    return early;
                }
            }
            let Some(end) = self.find_head_end(buf) else {
                if buf.len() > limits.max_header {
                    return Decoded::Error(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
                }
                return Decoded::NeedMore;
            };
            if end > limits.max_header {
                return Decoded::Error(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
            }
            self.scanned = 0;
            self.skip = 0;
            let raw = buf.split_to(end).freeze();
            let head = match parse_head(raw, limits.max_headers) {
                Ok(head) => head,
                Err(status) => return Decoded::Error(status),
            };
            let body = match head.framing {
                Framing::Empty => return Decoded::Request(head, Bytes::new()),
                Framing::Length(n) if n > limits.max_body as u64 => {
                    return Decoded::Error(StatusCode::PAYLOAD_TOO_LARGE)
                }
                Framing::Length(n) => Body::Length(n as usize),
                Framing::Chunked => Body::Chunked(ChunkedDecoder::new(), Vec::new()),
            };
            self.state = State::Body {
                head: Box::new(head),
                body,
                continue_sent: false,
            };
        }
        let State::Body {
            head,
            body,
            continue_sent,
        } = &mut self.state
        else {
            unreachable!("state is Body here");
        };
        let complete = match body {
            Body::Length(n) => {
                if buf.len() >= *n {
                    Some(buf.split_to(*n).freeze())
                } else {
                    None
                }
            }
            Body::Chunked(decoder, out) => {
                match decoder.decode(buf, out, limits.max_body, limits.max_header) {
                    Ok((used, done)) => {
                        let _ = buf.split_to(used);
                        done.then(|| Bytes::from(std::mem::take(out)))
                    }
                    Err(status) => return Decoded::Error(status),
                }
            }
        };
        match complete {
            Some(bytes) => {
                let State::Body { head, .. } = std::mem::replace(&mut self.state, State::Head)
                else {
                    unreachable!("state is Body here");
                };
                Decoded::Request(*head, bytes)
            }
            None if head.expect_continue && !*continue_sent => {
                *continue_sent = true;
                Decoded::Continue
            }
            None => Decoded::NeedMore,
        }
    }

    /// Steps over empty lines before a request line (RFC 9112 §2.2: a
    /// client may send CRLFs between requests, after a body for instance).
    /// Without this, two of them would look like a complete, empty head.
    /// Returns what to answer now if the buffer holds nothing else yet.
    #[cold]
    fn skip_empty_lines(&mut self, buf: &[u8], max_header: usize) -> Option<Decoded> {
        let mut at = self.skip;
        loop {
            match &buf[at..] {
                [b'\r', b'\n', ..] => at += 2,
                [b'\n', ..] => at += 1,
                _ => break,
            }
        }
        self.skip = at;
        self.scanned = at;
        match &buf[at..] {
            // Nothing but empty lines (and maybe half of the next): wait
            // for more, within the head's size limit.
            [] | [b'\r'] if buf.len() > max_header => {
                Some(Decoded::Error(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE))
            }
            [] | [b'\r'] => Some(Decoded::NeedMore),
            _ => None,
        }
    }

    /// Finds the end of the head (just past the blank line), scanning only
    /// bytes not scanned before and none of the empty lines before it.
    fn find_head_end(&mut self, buf: &[u8]) -> Option<usize> {
        let start = self.scanned.saturating_sub(3).max(self.skip);
        match HEAD_END.find(&buf[start..]) {
            Some(i) => Some(start + i + 4),
            None => {
                self.scanned = buf.len();
                None
            }
        }
    }
}

/// Parses a complete head (ending with the blank line) and applies the
/// framing rules of RFC 9112 §6, rejecting anything ambiguous.
pub(crate) fn parse_head(raw: Bytes, max_headers: usize) -> Result<Head, StatusCode> {
    if max_headers <= STACK_HEADERS {
        let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); STACK_HEADERS];
        parse_with(&raw, &mut slots[..max_headers])
    } else {
        let mut slots = vec![MaybeUninit::<httparse::Header<'_>>::uninit(); max_headers];
        parse_with(&raw, &mut slots)
    }
}

fn parse_with<'b>(
    raw: &'b Bytes,
    slots: &mut [MaybeUninit<httparse::Header<'b>>],
) -> Result<Head, StatusCode> {
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(raw, slots) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(StatusCode::BAD_REQUEST),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        }
        // Covers whitespace before a colon, obs-fold, bad tokens.
        Err(_) => return Err(StatusCode::BAD_REQUEST),
    }
    let method = Method::from_bytes(req.method.unwrap_or("").as_bytes())
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    let version = match req.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Err(StatusCode::HTTP_VERSION_NOT_SUPPORTED),
    };
    let target = parse_target(raw, req.path.unwrap_or(""), &method)?;

    let mut headers = HeaderMap::with_capacity(req.headers.len());
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut has_te = false;
    let mut hosts = 0;
    let mut keep_alive = version == Version::HTTP_11;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let name =
            HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| StatusCode::BAD_REQUEST)?;
        let value = HeaderValue::from_maybe_shared(raw.slice_ref(h.value))
            .map_err(|_| StatusCode::BAD_REQUEST)?;
        if name == header::CONTENT_LENGTH {
            // Any second Content-Length, even an equal one, is refused: a
            // proxy in front might have picked the other one.
            if content_length.is_some() {
                return Err(StatusCode::BAD_REQUEST);
            }
            content_length = Some(parse_content_length(h.value)?);
        } else if name == header::TRANSFER_ENCODING {
            has_te = true;
            chunked = transfer_coding_is_chunked(h.value, chunked)?;
        } else if name == header::HOST {
            hosts += 1;
        } else if name == header::CONNECTION {
            for token in tokens(h.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && version == Version::HTTP_10 {
                    keep_alive = true;
                }
            }
        } else if name == header::EXPECT {
            if h.value.eq_ignore_ascii_case(b"100-continue") {
                expect_continue = version == Version::HTTP_11;
            } else {
                return Err(StatusCode::EXPECTATION_FAILED);
            }
        }
        headers.append(name, value);
    }
    if version == Version::HTTP_11 && hosts != 1 {
        return Err(StatusCode::BAD_REQUEST);
    }
    if hosts > 1 {
        return Err(StatusCode::BAD_REQUEST);
    }
    let framing = match (has_te, content_length) {
        (true, Some(_)) => return Err(StatusCode::BAD_REQUEST),
        (true, None) if version == Version::HTTP_10 => return Err(StatusCode::BAD_REQUEST),
        (true, None) if !chunked => return Err(StatusCode::BAD_REQUEST),
        (true, None) => Framing::Chunked,
        (false, Some(0)) | (false, None) => Framing::Empty,
        (false, Some(n)) => Framing::Length(n),
    };
    Ok(Head {
        method,
        target,
        version,
        headers,
        framing,
        keep_alive,
        expect_continue: expect_continue && framing != Framing::Empty,
    })
}

fn parse_target(raw: &Bytes, path: &str, method: &Method) -> Result<PathAndQuery, StatusCode> {
    if path.starts_with('/') {
        PathAndQuery::from_maybe_shared(raw.slice_ref(path.as_bytes()))
            .map_err(|_| StatusCode::BAD_REQUEST)
    } else if path == "*" && method == Method::OPTIONS {
        Ok(PathAndQuery::from_static("*"))
    } else if path.starts_with("http://") || path.starts_with("https://") {
        // absolute-form (RFC 9112 §3.2.2): route on its path.
        let uri: http::Uri = path.parse().map_err(|_| StatusCode::BAD_REQUEST)?;
        Ok(uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")))
    } else {
        Err(StatusCode::BAD_REQUEST)
    }
}

/// `Content-Length`: one or more ASCII digits, nothing else (no sign, no
/// list, no whitespace inside), without overflow.
fn parse_content_length(value: &[u8]) -> Result<u64, StatusCode> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(StatusCode::BAD_REQUEST);
    }
    let mut n: u64 = 0;
    for &d in value {
        n = n * 10 + u64::from(d - b'0');
    }
    Ok(n)
}

/// Folds one `Transfer-Encoding` field into whether the body is chunked.
/// Chunked must be the final coding, and tine decodes no other coding, so
/// anything but exactly `chunked` is refused (501 for a coding we could in
/// principle support, 400 for chunked applied twice or not last).
fn transfer_coding_is_chunked(value: &[u8], already: bool) -> Result<bool, StatusCode> {
    let mut chunked = already;
    for token in tokens(value) {
        if chunked {
            // Something after chunked, or chunked twice.
            return Err(StatusCode::BAD_REQUEST);
        }
        if token.eq_ignore_ascii_case(b"chunked") {
            chunked = true;
        } else {
            return Err(StatusCode::NOT_IMPLEMENTED);
        }
    }
    if !chunked {
        return Err(StatusCode::BAD_REQUEST);
    }
    Ok(chunked)
}

/// Comma-separated tokens of a header value, trimmed, empty ones skipped.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_one(input: &[u8]) -> Decoded {
        let mut buf = BytesMut::from(input);
        Decoder::new().decode(&mut buf, &Limits::default())
    }

    fn status(input: &[u8]) -> StatusCode {
        match decode_one(input) {
            Decoded::Error(s) => s,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn simple_get() {
        let Decoded::Request(head, body) =
            decode_one(b"GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n")
        else {
            panic!()
        };
        assert_eq!(head.method, Method::GET);
        assert_eq!(head.target.path(), "/a/b");
        assert_eq!(head.target.query(), Some("x=1"));
        assert_eq!(head.headers["x-a"], "1");
        assert!(head.keep_alive);
        assert!(body.is_empty());
    }

    #[test]
    fn incremental_head_and_pipelining() {
        let mut d = Decoder::new();
        let mut buf = BytesMut::new();
        let limits = Limits::default();
        let two = b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
        let mut paths = Vec::new();
        for &b in two.iter() {
            buf.extend_from_slice(&[b]);
            loop {
                match d.decode(&mut buf, &limits) {
                    Decoded::Request(h, _) => paths.push(h.target.path().to_string()),
                    Decoded::NeedMore => break,
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(paths, ["/1", "/2"]);
        assert!(buf.is_empty());
    }

    #[test]
    fn content_length_body() {
        let mut d = Decoder::new();
        let limits = Limits::default();
        let mut buf =
            BytesMut::from(&b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhe"[..]);
        assert!(matches!(d.decode(&mut buf, &limits), Decoded::NeedMore));
        assert!(d.mid_request());
        buf.extend_from_slice(b"lloGET");
        let Decoded::Request(_, body) = d.decode(&mut buf, &limits) else {
            panic!()
        };
        assert_eq!(&body[..], b"hello");
        assert_eq!(&buf[..], b"GET");
    }

    #[test]
    fn chunked_body() {
        let Decoded::Request(_, body) = decode_one(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ) else {
            panic!()
        };
        assert_eq!(&body[..], b"abc");
    }

    #[test]
    fn expect_continue_reported_once() {
        let mut d = Decoder::new();
        let limits = Limits::default();
        let mut buf = BytesMut::from(
            &b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"[..],
        );
        assert!(matches!(d.decode(&mut buf, &limits), Decoded::Continue));
        assert!(matches!(d.decode(&mut buf, &limits), Decoded::NeedMore));
        buf.extend_from_slice(b"abc");
        assert!(matches!(d.decode(&mut buf, &limits), Decoded::Request(..)));
    }

    #[test]
    fn http10_keep_alive_rules() {
        let Decoded::Request(h, _) = decode_one(b"GET / HTTP/1.0\r\n\r\n") else {
            panic!()
        };
        assert!(!h.keep_alive);
        let Decoded::Request(h, _) =
            decode_one(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
        else {
            panic!()
        };
        assert!(h.keep_alive);
        let Decoded::Request(h, _) =
            decode_one(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: x, close\r\n\r\n")
        else {
            panic!()
        };
        assert!(!h.keep_alive);
    }

    #[test]
    fn smuggling_defences() {
        let bad: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length : 3\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  folded\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET nopath HTTP/1.1\r\nHost: h\r\n\r\n",
        ];
        for req in bad {
            assert_eq!(
                status(req),
                StatusCode::BAD_REQUEST,
                "{}",
                String::from_utf8_lossy(req)
            );
        }
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n"),
            StatusCode::NOT_IMPLEMENTED
        );
    }

    #[test]
    fn limits() {
        let limits = Limits::default().max_header(64).max_headers(2).max_body(10);
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(&[b'a'; 65][..]);
        assert!(matches!(
            d.decode(&mut buf, &limits),
            Decoded::Error(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        ));
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n"[..]);
        assert!(matches!(
            d.decode(&mut buf, &limits),
            Decoded::Error(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        ));
        let mut d = Decoder::new();
        let mut buf =
            BytesMut::from(&b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n"[..]);
        assert!(matches!(
            d.decode(&mut buf, &limits),
            Decoded::Error(StatusCode::PAYLOAD_TOO_LARGE)
        ));
    }

    #[test]
    fn absolute_and_asterisk_forms() {
        let Decoded::Request(h, _) = decode_one(b"GET http://h/x?y HTTP/1.1\r\nHost: h\r\n\r\n")
        else {
            panic!()
        };
        assert_eq!(h.target.path(), "/x");
        let Decoded::Request(h, _) = decode_one(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n") else {
            panic!()
        };
        assert_eq!(h.target.as_str(), "*");
    }

    /// Feeds `input` one byte at a time and collects the paths decoded.
    fn paths_byte_at_a_time(input: &[u8], limits: &Limits) -> Result<Vec<String>, StatusCode> {
        let mut d = Decoder::new();
        let mut buf = BytesMut::new();
        let mut paths = Vec::new();
        for &b in input {
            buf.extend_from_slice(&[b]);
            loop {
                match d.decode(&mut buf, limits) {
                    Decoded::Request(h, _) => paths.push(h.target.path().to_string()),
                    Decoded::NeedMore => break,
                    Decoded::Error(s) => return Err(s),
                    Decoded::Continue => panic!("no Expect sent"),
                }
            }
        }
        Ok(paths)
    }

    #[test]
    fn empty_lines_before_a_request_are_ignored() {
        let limits = Limits::default();
        for input in [
            &b"\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"\r\n\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n",
            b"\r\n\r\n\r\n\r\n\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n",
            b"\n\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n",
            b"\r\n\n\r\n\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            let Decoded::Request(h, _) = decode_one(input) else {
                panic!("{}", input.escape_ascii())
            };
            assert_eq!(h.target.path(), "/a");
            // Arriving one byte at a time (a lone CR waits for its LF).
            assert_eq!(
                paths_byte_at_a_time(input, &limits),
                Ok(vec!["/a".to_string()]),
                "{}",
                input.escape_ascii()
            );
        }
        // A CR that does not start a CRLF is no empty line.
        assert_eq!(
            status(b"\r\rGET /a HTTP/1.1\r\nHost: h\r\n\r\n"),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(b"\r\n\rGET /a HTTP/1.1\r\nHost: h\r\n\r\n"),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn empty_lines_between_pipelined_requests_are_ignored() {
        let input = b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nab\r\n\r\n\
GET /g HTTP/1.1\r\nHost: h\r\n\r\n\r\n\r\n\r\nGET /h HTTP/1.1\r\nHost: h\r\n\r\n";
        let limits = Limits::default();
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(&input[..]);
        let mut paths = Vec::new();
        while let Decoded::Request(h, _) = d.decode(&mut buf, &limits) {
            paths.push(h.target.path().to_string());
        }
        assert_eq!(paths, ["/p", "/g", "/h"]);
        assert!(buf.is_empty());
        assert_eq!(paths_byte_at_a_time(input, &limits), Ok(paths));
    }

    #[test]
    fn empty_lines_count_against_the_head_limit() {
        let limits = Limits::default().max_header(64);
        let request = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
        // Within the limit, empty lines and head together.
        let mut input = b"\r\n".repeat(10);
        input.extend_from_slice(request);
        assert_eq!(paths_byte_at_a_time(&input, &limits), Ok(vec!["/a".into()]));
        // Past it: 431, whether or not a request line follows.
        let mut input = b"\r\n".repeat(30);
        input.extend_from_slice(request);
        assert_eq!(
            paths_byte_at_a_time(&input, &limits),
            Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        assert!(matches!(
            decode_one_with(&input, &limits),
            Decoded::Error(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        ));
        assert_eq!(
            paths_byte_at_a_time(&b"\n".repeat(65), &limits),
            Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        assert_eq!(paths_byte_at_a_time(&b"\n".repeat(64), &limits), Ok(vec![]));
    }

    fn decode_one_with(input: &[u8], limits: &Limits) -> Decoded {
        let mut buf = BytesMut::from(input);
        Decoder::new().decode(&mut buf, limits)
    }
}
