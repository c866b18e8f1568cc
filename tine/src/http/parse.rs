//! Request decoding on buffers: bytes in; "need more", a complete request,
//! or an error carrying the HTTP status to answer.
//!
//! Nothing here touches a socket. The event loop appends what it reads to a
//! connection's buffer and calls [`Decoder::decode`] until it says
//! [`Decoded::NeedMore`]. A head that arrived whole is parsed where it
//! lies, which also says where it ends; the end of a head still arriving
//! is searched incrementally (each byte is scanned once) before it is
//! parsed. The target and header values stay in the read buffer (no
//! copy).
//!
//! The parsing is `httparse`'s, with one exception: the common head (a
//! token method, an ASCII target, `HTTP/1.1` or `HTTP/1.0`, CRLF lines of
//! `name: value`) is read by a reader of tine's own (`parse_plain`), which
//! checks the fields tine reads as it goes. Hand-written because
//! `httparse` reads a head in two passes of its own (the request line's
//! target then checked again as UTF-8), and tine's field and line-ending
//! checks were a third over the same bytes: about a quarter of a
//! pipelined request's instructions. It takes only what `httparse` takes,
//! with the same byte classes, and hands anything else (a byte over 127,
//! a bare LF, too many fields, a head not whole, another version) to
//! `httparse` unchanged; a test and the `plain_head` fuzz target check
//! that the two answer alike wherever the first reads a head.
//!
//! Beyond what `httparse` checks: bytes that cannot start a request line
//! (a TLS ClientHello, binary garbage) are refused as soon as they arrive,
//! not when the header timeout ends a head that never comes; `HTTP/1.2`
//! to `HTTP/1.9` are read as HTTP/1.1 and other major versions answered
//! `505`; a `Host` must be a valid host (RFC 9110 §7.2) or the request is
//! a `400`. Each check runs where it costs nothing on a whole request
//! (only on a head still arriving, or only after `httparse` refused the
//! version), but the `Host` check, a few instructions a byte.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, StatusCode, Version};

use super::body::{ChunkedDecoder, ReadBody, SpillFile};
use super::request::{header_map, HeadBytes, RawHead};
use crate::limits::Limits;

/// The searcher for the blank line ending a head, built once.
static HEAD_END: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));

/// Header slots kept on the stack; a larger `max_headers` uses the heap.
const STACK_HEADERS: usize = 128;

/// The most body bytes passed over, unread, behind a request answered
/// before its body ([`Decoder::skip_body`]) so that the connection stays
/// open. A larger body ends the connection instead: reading it only to
/// drop it would cost the worker more than the client's next connection
/// costs. Go's `net/http` draws the same line at the same size.
pub(crate) const MAX_DISCARD: u64 = 256 * 1024;

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
    /// Method, version, target and header lines, as slices of the buffer.
    pub(crate) raw: RawHead,
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
    /// `100 Continue` before sending it. Reported once per request, and
    /// only once the body was admitted ([`Decoder::admit`]).
    Continue,
    /// A complete request without a body.
    Request(Head, Bytes),
    /// The head of a request with a body: the caller decides whether to
    /// read the body and up to which size ([`Decoder::admit`]), or not
    /// ([`Decoder::skip_body`]), before decoding goes on.
    Head(Head),
    /// The whole body of the request admitted last.
    Body(ReadBody),
    /// The body passed over behind a request answered before it
    /// ([`Decoder::skip_body`]) has ended. `true`: decoding goes on;
    /// `false`: it was malformed or grew past [`MAX_DISCARD`], and the
    /// connection closes once its answers are sent (without an error
    /// answer of its own: the request was answered already).
    Discarded(bool),
    /// The request is malformed or over a limit: answer with this status
    /// and close the connection (the rest of the stream cannot be trusted).
    Error(StatusCode),
}

#[derive(Debug)]
enum State {
    /// Reading a head; how far its request line was found plausible (see
    /// [`Decoder::check_start`]). Kept here, where it costs no memory per
    /// connection: the enum is as large as its other variants anyway.
    Head(Line),
    /// A head with a body was handed out ([`Decoded::Head`]); waiting for
    /// [`Decoder::admit`] or [`Decoder::skip_body`].
    Admit {
        framing: Framing,
        expect_continue: bool,
    },
    Body {
        body: Body,
        expect_continue: bool,
        continue_sent: bool,
        max_body: usize,
        /// Bodies past this many bytes are spilled to a file.
        buffer: usize,
    },
    /// Passing over the body of a request answered before it
    /// ([`Decoder::skip_body`]).
    Discard(Discard),
    /// A request was refused ([`Decoded::Error`]) after its head was taken
    /// from the buffer; this is what could be read of it (for
    /// [`Decoder::take_seen`]). Nothing more is decoded.
    Refused(Seen),
}

/// What could be read of a refused request (see [`Decoder::take_seen`]).
#[derive(Debug)]
pub(crate) enum Seen {
    /// Nothing to show: no input, or the connection holds the request.
    Nothing,
    /// Input that is not a request line tine can read (a bad byte in the
    /// method or the target, say): its first line as it came (without
    /// the line end), or what arrived of it, at most [`MAX_SEEN_LINE`]
    /// bytes. For the access log only.
    Line(Box<[u8]>),
    /// A request line, and the header lines that could be read.
    Head(Box<SeenHead>),
}

/// The most of an unreadable request line [`Seen::Line`] keeps (the
/// access log cuts it shorter).
pub(crate) const MAX_SEEN_LINE: usize = 4096;

impl Seen {
    /// Whether what was seen is a `HEAD` request, whose answer (a refusal
    /// too) carries no content (RFC 9110 §9.3.2): its request line read,
    /// or at least its method when the rest of the line could not be.
    pub(crate) fn is_head(&self) -> bool {
        match self {
            Seen::Head(head) => head.method == Method::HEAD,
            Seen::Line(line) => line.starts_with(b"HEAD "),
            Seen::Nothing => false,
        }
    }
}

#[cfg(test)]
impl Seen {
    /// The head, if one was read.
    pub(crate) fn head(self) -> Option<Box<SeenHead>> {
        match self {
            Seen::Head(head) => Some(head),
            _ => None,
        }
    }
}

/// What could be read of a refused request: enough for the `errors`
/// handler, the after-hooks and the request log to see which request it
/// was (CORS needs `Origin`). The body is never read.
#[derive(Debug)]
pub(crate) struct SeenHead {
    pub(crate) method: Method,
    pub(crate) target: PathAndQuery,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    /// The protocol as the client sent it, when it is not one `version`
    /// can hold (`HTTP/9.9`, refused with 505): `version` is then
    /// HTTP/1.1, the version of the answer; the access log shows this.
    pub(crate) sent_version: Option<Box<[u8]>>,
}

impl From<Head> for SeenHead {
    fn from(head: Head) -> Self {
        let raw = head.raw;
        SeenHead {
            // `PathAndQuery` accepts what `HeadBytes` does.
            target: PathAndQuery::try_from(raw.head.target())
                .unwrap_or_else(|_| PathAndQuery::from_static("/")),
            headers: header_map(&raw.head),
            method: raw.method,
            version: raw.version,
            sent_version: None,
        }
    }
}

#[derive(Debug)]
enum Body {
    /// `Content-Length` bytes, gathered in the read buffer.
    Length(usize),
    /// `Content-Length` bytes over the body buffer, written to a file as
    /// they arrive; this many left.
    SpillLength(Box<(SpillFile, u64)>),
    /// Chunked, decoded into the vector, which is moved to a file once it
    /// grows past the body buffer.
    Chunked(Box<Chunked>),
}

/// A body being passed over unread (see [`State::Discard`]).
#[derive(Debug)]
enum Discard {
    /// This many `Content-Length` bytes still to come.
    Length(u64),
    /// A chunked body, read only for where it ends (and checked as any
    /// chunked body is, so that the next request starts where a proxy in
    /// front thinks it does), and the bytes of it read so far: the limit
    /// counts those, chunk-size lines and their extensions included, not
    /// only the data. Boxed like [`Chunked`].
    Chunked(Box<(ChunkedDecoder, u64)>),
}

/// A chunked body in progress. Boxed, with the spill file above, so that
/// every connection's [`Decoder`] stays small: it sits in each connection,
/// idle ones and WebSockets included, and a body in either form allocates
/// anyway.
#[derive(Debug)]
struct Chunked {
    decoder: ChunkedDecoder,
    out: Vec<u8>,
    spill: Option<SpillFile>,
}

/// Incremental request decoder for one connection.
#[derive(Debug)]
pub(crate) struct Decoder {
    /// Bytes of the buffer already searched for the end of the head.
    /// Positions as `u32`, eight bytes less in every connection: both stay
    /// within a head still arriving, which is refused past `max_header`
    /// (they saturate beyond 4 GiB, where a search would only look again).
    scanned: u32,
    /// Bytes of empty lines (CRLF or bare LF) before the head's request
    /// line. They stay in the buffer and count against `max_header`;
    /// `httparse` skips them when it parses the head.
    skip: u32,
    state: State,
}

/// The part of a request line that [`Decoder::check_start`] is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// In the method (a token), or nothing read yet.
    Method,
    /// Past the method's space, in the request-target.
    Target,
    /// Past the target's space: nothing more is checked early.
    Done,
}

impl Decoder {
    pub(crate) fn new() -> Self {
        Decoder {
            scanned: 0,
            skip: 0,
            state: State::Head(Line::Method),
        }
    }

    /// Whether part of a request has been consumed from the buffer (a
    /// head whose body is still arriving).
    pub(crate) fn mid_request(&self) -> bool {
        matches!(
            self.state,
            State::Body { .. } | State::Admit { .. } | State::Discard(_)
        )
    }

    /// Whether the body of a request answered before it is being passed
    /// over ([`skip_body`](Self::skip_body)): nothing is owed to the
    /// client if it stops sending.
    pub(crate) fn discarding(&self) -> bool {
        matches!(self.state, State::Discard(_))
    }

    /// Admits the body of the head just handed out ([`Decoded::Head`]), up
    /// to `max_body` bytes; bodies over `buffer` bytes go to a temporary
    /// file instead of memory. `Err` (the connection must answer it and
    /// close): `413` for a `Content-Length` over `max_body`, before any of
    /// the body is read; `500` if no temporary file could be made.
    pub(crate) fn admit(&mut self, max_body: usize, buffer: usize) -> Result<(), StatusCode> {
        let State::Admit {
            framing,
            expect_continue,
        } = self.state
        else {
            return Ok(());
        };
        let body = match framing {
            Framing::Length(n) if n > max_body as u64 => {
                self.state = State::Refused(Seen::Nothing);
                return Err(StatusCode::PAYLOAD_TOO_LARGE);
            }
            Framing::Length(n) if n > buffer as u64 => match SpillFile::new() {
                Ok(file) => Body::SpillLength(Box::new((file, n))),
                Err(status) => {
                    self.state = State::Refused(Seen::Nothing);
                    return Err(status);
                }
            },
            Framing::Length(n) => Body::Length(n as usize),
            Framing::Chunked | Framing::Empty => Body::Chunked(Box::new(Chunked {
                decoder: ChunkedDecoder::new(),
                out: Vec::new(),
                spill: None,
            })),
        };
        self.state = State::Body {
            body,
            expect_continue,
            continue_sent: false,
            max_body,
            buffer,
        };
        Ok(())
    }

    /// Passes over the body of the head just handed out, unread, for a
    /// request answered before its body (by a before-hook, or because no
    /// route takes it). `true`: the connection can go on, and the body is
    /// dropped as it arrives (what is already in `buf` at once; the rest
    /// by [`decode`](Self::decode), which says [`Decoded::Discarded`] when
    /// the body has ended); `false`: nothing more is decoded (answer and
    /// close).
    ///
    /// Closing is the answer for a `Content-Length` over [`MAX_DISCARD`]
    /// that has not all arrived, and for a client that waits for `100
    /// Continue` before sending its body: given a final answer instead, it
    /// may never send the body (RFC 9110 §10.1.1), and its next request
    /// would be taken for the body. A chunked body is passed over until it
    /// ends or grows past [`MAX_DISCARD`].
    pub(crate) fn skip_body(&mut self, buf: &mut BytesMut) -> bool {
        let State::Admit {
            framing,
            expect_continue,
        } = self.state
        else {
            return false;
        };
        let discard = match framing {
            Framing::Length(n) if buf.len() as u64 >= n => {
                let _ = buf.split_to(n as usize);
                self.state = State::Head(Line::Method);
                return true;
            }
            _ if expect_continue => None,
            Framing::Length(n) if n <= MAX_DISCARD => {
                let left = n - buf.len() as u64;
                buf.clear();
                Some(Discard::Length(left))
            }
            Framing::Length(_) => None,
            Framing::Chunked | Framing::Empty => {
                Some(Discard::Chunked(Box::new((ChunkedDecoder::new(), 0))))
            }
        };
        match discard {
            Some(discard) => {
                self.state = State::Discard(discard);
                true
            }
            None => {
                self.state = State::Refused(Seen::Nothing);
                false
            }
        }
    }

    /// The head just handed out is refused before its body: nothing more
    /// is decoded (the connection answers and closes).
    pub(crate) fn refuse_body(&mut self) {
        self.state = State::Refused(Seen::Nothing);
    }

    /// What was read of the request being refused (after
    /// [`Decoded::Error`], or when its head or body did not arrive in
    /// time): its request line and the header lines that could be read,
    /// else the raw first line when not even a request line was parsed. `buf` is the
    /// connection's unconsumed input. Only for error paths: it may copy.
    #[cold]
    pub(crate) fn take_seen(&mut self, buf: &[u8], max_headers: usize) -> Seen {
        match std::mem::replace(&mut self.state, State::Head(Line::Method)) {
            State::Refused(seen) => seen,
            // The connection holds the admitted request itself.
            State::Body { .. } | State::Admit { .. } | State::Discard(_) => Seen::Nothing,
            State::Head(_) => salvage(buf, max_headers),
        }
    }

    /// Decodes the next request from `buf`, consuming its bytes.
    ///
    /// In three steps, which the connection's loop takes itself, inlined:
    /// [`parse_next`](Self::parse_next) and [`take_request`](Self::take_request)
    /// for the common case (a head none of which was searched yet, not
    /// after empty lines), whose head then goes from the parser to the
    /// request without being moved through a returned `Decoded` and a
    /// call (about 60 instructions a pipelined request), then
    /// [`decode_parsed`](Self::decode_parsed) for everything else.
    #[inline(always)]
    pub(crate) fn decode(&mut self, buf: &mut BytesMut, limits: &Limits) -> Decoded {
        let mut parse = self.parse_next(buf, limits);
        match self.take_request(buf, limits, &mut parse) {
            Some(Ok(head)) => Decoded::Request(head, Bytes::new()),
            Some(Err(status)) => Decoded::Error(status),
            None => self.decode_parsed(buf, limits, &mut parse),
        }
    }

    /// The first step of [`decode`](Self::decode): the head at the start
    /// of `buf` parsed where it lies, in the common case (a head none of
    /// which was searched yet, not after empty lines).
    #[inline(always)]
    pub(crate) fn parse_next(&self, buf: &[u8], limits: &Limits) -> Parse {
        if let State::Head(_) = self.state {
            if self.scanned == self.skip
                && !matches!(buf.get(self.skip as usize), Some(b'\r' | b'\n'))
            {
                // `parse_buf` by hand: the head is taken where the reader
                // wrote it, not moved out of its `Option` first (a copy of
                // the whole, about 10 instructions a request).
                let mut parsed = parse_plain(buf, limits.max_headers);
                if parsed.is_none() {
                    parsed = Some(parse_general(buf, limits.max_headers));
                }
                return Parse(parsed);
            }
        }
        Parse(None)
    }

    /// The second step of [`decode`](Self::decode): the common request
    /// (whole, without a body, its target in origin form) taken from
    /// `buf`, or `Err` with the status to answer if its target is
    /// invalid; `None` (nothing consumed) for anything else, which
    /// [`decode_parsed`](Self::decode_parsed) then decodes.
    ///
    /// Apart from the other outcomes, which come out of a call through
    /// memory: an answer that a call writes must live in memory, and the
    /// common request's head was stored there field by field and loaded
    /// back to build the `Request` (about 35 instructions a request,
    /// callgrind); here it stays in registers.
    #[inline(always)]
    pub(crate) fn take_request(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
        parse: &mut Parse,
    ) -> Option<Result<Head, StatusCode>> {
        let Some(Ok(parsed)) = &mut parse.0 else {
            return None;
        };
        if parsed.len > limits.max_header
            || parsed.framing != Framing::Empty
            || parsed.form != Form::Origin
        {
            return None;
        }
        self.next_head();
        let raw = buf.split_to(parsed.len).freeze();
        match HeadBytes::with(raw, parsed.target.clone(), parsed.lines, parsed.plain) {
            Ok((bytes, escaped)) => Some(Ok(parsed.head(bytes, escaped))),
            Err(raw) => {
                self.state = State::Refused(salvage(&raw, limits.max_headers));
                Some(Err(StatusCode::BAD_REQUEST))
            }
        }
    }

    /// The last step of [`decode`](Self::decode), where
    /// [`take_request`](Self::take_request) took nothing.
    #[inline(never)]
    pub(crate) fn decode_parsed(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
        parse: &mut Parse,
    ) -> Decoded {
        match &mut parse.0 {
            Some(parsed) => {
                if let Ok(parsed) = parsed {
                    if parsed.len <= limits.max_header {
                        return self.take_head(buf, parsed, limits.max_headers);
                    }
                }
                self.search_head(buf, limits)
            }
            None => self.decode_other(buf, limits),
        }
    }

    /// [`decode`](Self::decode) from its start.
    #[inline]
    fn decode_other(&mut self, buf: &mut BytesMut, limits: &Limits) -> Decoded {
        if let State::Refused(_) | State::Admit { .. } = self.state {
            return Decoded::NeedMore;
        }
        if let State::Discard(discard) = &mut self.state {
            return match pass_over(discard, buf, limits) {
                None => Decoded::NeedMore,
                Some(whole) => {
                    self.state = if whole {
                        State::Head(Line::Method)
                    } else {
                        State::Refused(Seen::Nothing)
                    };
                    Decoded::Discarded(whole)
                }
            };
        }
        if let State::Head(_) = self.state {
            // Only the first unscanned byte is looked at: a request line
            // never starts with CR or LF, so the common case costs one
            // comparison.
            if self.scanned == self.skip
                && matches!(buf.get(self.skip as usize), Some(b'\r' | b'\n'))
            {
                if let Some(early) = self.skip_empty_lines(buf, limits.max_header) {
                    return early;
                }
            }
            if self.scanned == self.skip {
                // Nothing of this head was searched yet: the parser finds
                // where it ends (in a pipelined batch or a head that
                // arrived whole, the common cases), with no search ahead
                // of it. Otherwise (a head still arriving, or one to
                // refuse), the search below goes on from where it stopped,
                // so a head sent a byte at a time is not parsed again and
                // again.
                if let Ok(parsed) = &mut parse_buf(buf, limits.max_headers) {
                    if parsed.len <= limits.max_header {
                        return self.take_head(buf, parsed, limits.max_headers);
                    }
                }
            }
            return self.search_head(buf, limits);
        }
        self.decode_body(buf, limits)
    }

    /// A head the parser did not take whole at once: one still arriving,
    /// or one to refuse. The search for its end goes on from where it
    /// stopped, so a head sent a byte at a time is not parsed again and
    /// again.
    #[inline(never)]
    fn search_head(&mut self, buf: &mut BytesMut, limits: &Limits) -> Decoded {
        let checked = self.scanned as usize;
        let Some(end) = self.find_head_end(buf) else {
            if buf.len() > limits.max_header {
                return Decoded::Error(head_too_large(buf, limits.max_header));
            }
            if has_bare_lf(buf, checked.max(self.skip as usize)) {
                return Decoded::Error(StatusCode::BAD_REQUEST);
            }
            // Only a head still arriving is checked here: a whole one
            // goes to the parser, which refuses the same bytes.
            return self.check_start(buf, checked);
        };
        if end > limits.max_header {
            return Decoded::Error(head_too_large(buf, limits.max_header));
        }
        match parse_buf(&buf[..end], limits.max_headers) {
            Ok(mut parsed) => self.take_head(buf, &mut parsed, limits.max_headers),
            Err(status) => {
                self.next_head();
                let raw = buf.split_to(end);
                self.state = State::Refused(salvage(&raw, limits.max_headers));
                Decoded::Error(status)
            }
        }
    }

    /// Takes a parsed head (`parsed.len` bytes) from the buffer.
    ///
    /// `parsed` is borrowed (its method taken out), not moved in, and the
    /// head is built in the answer itself, in each branch: moving the
    /// parsed head into the call, and the finished head through a
    /// `Result` and a local, each copied it whole (about 36 instructions
    /// a request together, callgrind).
    #[inline]
    fn take_head(
        &mut self,
        buf: &mut BytesMut,
        parsed: &mut Parsed,
        max_headers: usize,
    ) -> Decoded {
        self.next_head();
        let raw = buf.split_to(parsed.len).freeze();
        let made = match parsed.form {
            Form::Origin => HeadBytes::new(raw, parsed.target.clone(), parsed.lines),
            _ => other_form(&raw, parsed).ok_or(raw),
        };
        let (bytes, escaped) = match made {
            Ok(made) => made,
            Err(raw) => {
                self.state = State::Refused(salvage(&raw, max_headers));
                return Decoded::Error(StatusCode::BAD_REQUEST);
            }
        };
        if parsed.framing == Framing::Empty {
            return Decoded::Request(parsed.head(bytes, escaped), Bytes::new());
        }
        self.head_with_body(parsed.head(bytes, escaped))
    }

    /// Starts looking for the next head.
    #[inline]
    fn next_head(&mut self) {
        self.scanned = 0;
        self.skip = 0;
        if let State::Head(line) = &mut self.state {
            *line = Line::Method;
        }
    }

    /// Hands out a head whose body is to come, to be admitted first.
    #[cold]
    fn head_with_body(&mut self, head: Head) -> Decoded {
        self.state = State::Admit {
            framing: head.framing,
            expect_continue: head.expect_continue,
        };
        Decoded::Head(head)
    }

    /// Reads the admitted body from `buf`.
    fn decode_body(&mut self, buf: &mut BytesMut, limits: &Limits) -> Decoded {
        let State::Body {
            body,
            expect_continue,
            continue_sent,
            max_body,
            buffer,
        } = &mut self.state
        else {
            return Decoded::NeedMore;
        };
        let complete = match body {
            Body::Length(n) => {
                if buf.len() >= *n {
                    Some(ReadBody::Memory(buf.split_to(*n).freeze()))
                } else {
                    None
                }
            }
            Body::SpillLength(spill) => {
                let (file, left) = &mut **spill;
                let take = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                if take > 0 {
                    if let Err(status) = file.write(&buf[..take]) {
                        self.state = State::Refused(Seen::Nothing);
                        return Decoded::Error(status);
                    }
                    let _ = buf.split_to(take);
                    *left -= take as u64;
                }
                (*left == 0).then(|| ReadBody::File(file.take()))
            }
            Body::Chunked(chunked) => {
                let Chunked {
                    decoder,
                    out,
                    spill,
                } = &mut **chunked;
                match decoder.decode(buf, out, *max_body, limits.max_header) {
                    Ok((used, done)) => {
                        let _ = buf.split_to(used);
                        if out.len() > *buffer || (done && spill.is_some()) {
                            if let Err(status) = spill_out(spill, out) {
                                self.state = State::Refused(Seen::Nothing);
                                return Decoded::Error(status);
                            }
                        }
                        match (done, spill) {
                            (false, _) => None,
                            (true, Some(file)) => Some(ReadBody::File(file.take())),
                            (true, None) => {
                                Some(ReadBody::Memory(Bytes::from(std::mem::take(out))))
                            }
                        }
                    }
                    Err(status) => {
                        self.state = State::Refused(Seen::Nothing);
                        return Decoded::Error(status);
                    }
                }
            }
        };
        match complete {
            Some(body) => {
                self.state = State::Head(Line::Method);
                Decoded::Body(body)
            }
            None if *expect_continue && !*continue_sent => {
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
        let mut at = self.skip as usize;
        loop {
            match &buf[at..] {
                [b'\r', b'\n', ..] => at += 2,
                [b'\n', ..] => at += 1,
                _ => break,
            }
        }
        self.skip = position(at);
        self.scanned = self.skip;
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

    /// Refuses at once bytes that cannot start a request, rather than
    /// waiting for the blank line that ends a head until the header
    /// timeout: a TLS ClientHello sent to a plain port (its first byte is
    /// 0x16), a binary protocol, garbage. A request line begins with a
    /// method, a token (RFC 9110 §9.1), then one space and a
    /// request-target of visible characters (RFC 9112 §3). Only the bytes
    /// that arrived since the last call (`buf[checked..]`) are looked at,
    /// so a head sent a byte at a time is still checked once per byte.
    #[cold]
    #[inline(never)]
    fn check_start(&mut self, buf: &[u8], checked: usize) -> Decoded {
        let skip = self.skip as usize;
        let State::Head(line) = &mut self.state else {
            return Decoded::NeedMore;
        };
        for (i, &b) in buf.iter().enumerate().skip(checked.max(skip)) {
            match *line {
                Line::Method if b == b' ' && i > skip => *line = Line::Target,
                Line::Method if is_token(b) => {}
                // The target's first byte: a second space is no target.
                Line::Target if b == b' ' && buf[i - 1] != b' ' => *line = Line::Done,
                Line::Target if (0x21..0x7f).contains(&b) || b >= 0x80 => {}
                Line::Done => break,
                _ => return Decoded::Error(StatusCode::BAD_REQUEST),
            }
        }
        Decoded::NeedMore
    }

    /// Finds the end of the head (just past the blank line), scanning only
    /// bytes not scanned before and none of the empty lines before it.
    fn find_head_end(&mut self, buf: &[u8]) -> Option<usize> {
        let start = self.scanned.saturating_sub(3).max(self.skip) as usize;
        match HEAD_END.find(&buf[start..]) {
            Some(i) => Some(start + i + 4),
            None => {
                self.scanned = position(buf.len());
                None
            }
        }
    }
}

/// A position in the read buffer as the [`Decoder`] keeps it. Never
/// saturates in practice: `Limits::max_header` is at most 1 GiB, and the
/// buffer never holds much more than that before its head is refused.
#[inline]
fn position(at: usize) -> u32 {
    debug_assert!(at <= u32::MAX as usize, "a head position past 4 GiB: {at}");
    u32::try_from(at).unwrap_or(u32::MAX)
}

/// The status for a head over `max_header` bytes: `414 URI Too Long` when
/// the request line alone does not end within the limit (as nginx
/// answers), else `431`.
#[cold]
fn head_too_large(buf: &[u8], max_header: usize) -> StatusCode {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    // 414 only when the request line by itself fills the limit: a head
    // pushed over it by leading empty lines or by its fields is a 431.
    let line = &buf[start..buf.len().min(start + max_header)];
    if line.len() == max_header && memchr::memchr(b'\n', line).is_none() {
        StatusCode::URI_TOO_LONG
    } else {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    }
}

/// Whether a line of the head in `buf[from..]` ends in a bare LF (one
/// not preceded by CR): refused (400) like a head the parser finds one in
/// (`parse_with`), here before the blank line has arrived, so that such a
/// head gets its answer at once rather than at the header timeout.
#[cold]
fn has_bare_lf(buf: &[u8], from: usize) -> bool {
    memchr::memchr_iter(b'\n', &buf[from..]).any(|i| from + i == 0 || buf[from + i - 1] != b'\r')
}

/// Drops what `buf` holds of a body being passed over. `None` while more
/// is to come; `Some(true)` once it ended (the next request may follow in
/// `buf`); `Some(false)` for a malformed chunked body, or one of which
/// more than [`MAX_DISCARD`] bytes were read.
fn pass_over(discard: &mut Discard, buf: &mut BytesMut, limits: &Limits) -> Option<bool> {
    match discard {
        Discard::Length(left) => {
            let take = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
            let _ = buf.split_to(take);
            *left -= take as u64;
            (*left == 0).then_some(true)
        }
        Discard::Chunked(chunked) => {
            let (decoder, read) = &mut **chunked;
            let max = usize::try_from(MAX_DISCARD).unwrap_or(usize::MAX);
            match decoder.skip(buf, max, limits.max_header) {
                Ok((used, done)) => {
                    let _ = buf.split_to(used);
                    *read += used as u64;
                    if done {
                        Some(true)
                    } else if *read > MAX_DISCARD {
                        Some(false)
                    } else {
                        None
                    }
                }
                Err(_) => Some(false),
            }
        }
    }
}

/// Moves a chunked body gathered in memory to its temporary file
/// (making the file first).
#[cold]
fn spill_out(spill: &mut Option<SpillFile>, out: &mut Vec<u8>) -> Result<(), StatusCode> {
    let file = match spill {
        Some(file) => file,
        None => spill.insert(SpillFile::new()?),
    };
    file.write(out)?;
    out.clear();
    Ok(())
}

/// Parses the head at the start of `buf` (`Err(400)` if it is not
/// whole) and applies the framing rules of RFC 9112 §6, rejecting
/// anything ambiguous.
///
/// The common head is read by [`parse_plain`], which also checks its
/// fields as it goes; anything else goes to `httparse`
/// ([`parse_general`]).
#[inline]
fn parse_buf(buf: &[u8], max_headers: usize) -> Result<Parsed, StatusCode> {
    match parse_plain(buf, max_headers) {
        Some(parsed) => parsed,
        None => parse_general(buf, max_headers),
    }
}

/// [`parse_buf`] by `httparse`, for a head [`parse_plain`] does not read.
#[inline(never)]
fn parse_general(buf: &[u8], max_headers: usize) -> Result<Parsed, StatusCode> {
    if max_headers <= STACK_HEADERS {
        let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); STACK_HEADERS];
        parse_with(buf, &mut slots[..max_headers])
    } else {
        let mut slots =
            vec![MaybeUninit::<httparse::Header<'_>>::uninit(); heap_slots(buf, max_headers)];
        parse_with(buf, &mut slots)
    }
}

/// How many header slots parsing `buf` can use: `max_headers`, but no
/// more than `buf` has lines (a field line is at least 3 bytes, `a:\n`),
/// so a generous limit does not allocate for headers that cannot be
/// there.
#[cold]
fn heap_slots(buf: &[u8], max_headers: usize) -> usize {
    max_headers.min(buf.len() / 3 + 1)
}

/// Byte classes for [`parse_plain`], each as `httparse` has it.
const TCHAR: u8 = 1;
/// A byte of a target `parse_plain` reads: visible ASCII (`httparse`
/// takes bytes over 127 too, and then checks the target's UTF-8; those
/// targets go to it).
const VCHAR: u8 = 2;
/// A byte of a field value: HTAB, SP, visible ASCII, obs-text.
const FIELD: u8 = 4;
/// A byte of a target that needs no second look when the request is
/// built (see [`Parsed::plain`]): visible ASCII from `&` (0x26) on, but
/// `<`, `=`, `>`, `?` and `` ` ``. Narrower than what needs none (the
/// request's `PLAIN` table), so that [`span_plain`] finds the others a
/// word at a time in a few operations.
const PLAIN_TARGET: u8 = 8;

/// [`TCHAR`], [`VCHAR`], [`FIELD`] and [`PLAIN_TARGET`], by byte.
static CLASS: [u8; 256] = {
    let mut t = [0; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let mut class = 0;
        if c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            )
        {
            class |= TCHAR;
        }
        if c >= 0x21 && c < 0x7f {
            class |= VCHAR;
        }
        if c == b'\t' || (c >= 0x20 && c != 0x7f) {
            class |= FIELD;
        }
        if c >= 0x26 && c < 0x7f && !(c >= 0x3c && c <= 0x3f) && c != 0x60 {
            class |= PLAIN_TARGET;
        }
        t[b] = class;
        b += 1;
    }
    t
};

/// Where the run of bytes of `class` from `i` on ends.
#[inline(always)]
fn span(raw: &[u8], mut i: usize, class: u8) -> usize {
    while let Some(&b) = raw.get(i) {
        if CLASS[b as usize] & class == 0 {
            break;
        }
        i += 1;
    }
    i
}

/// Each byte of a word.
const ONES: u64 = u64::from_le_bytes([1; 8]);
/// Each byte's high bit.
const HIGHS: u64 = ONES * 0x80;

/// The bytes of `x` below `n` (`n` at most 128), as their high bits.
/// A byte's borrow may mark bytes above it falsely, never below: the
/// lowest mark is exact (the word is read little-endian).
#[inline(always)]
fn below(x: u64, n: u8) -> u64 {
    x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS
}

/// [`span`] of [`VCHAR`] (a target), a word at a time.
#[inline(always)]
fn span_vchar(raw: &[u8], mut i: usize) -> usize {
    while let Some(word) = raw.get(i..i + 8) {
        let x = u64::from_le_bytes(word.try_into().unwrap_or_default());
        // Below 0x21, or 0x7f and up (adding 1 sets the high bit of
        // 0x7f; the carry out of 0xff only reaches bytes above it).
        let out = below(x, 0x21) | ((x.wrapping_add(ONES) | x) & HIGHS);
        if out != 0 {
            return i + (out.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    span(raw, i, VCHAR)
}

/// [`span`] of [`PLAIN_TARGET`], a word at a time.
#[inline(always)]
fn span_plain(raw: &[u8], mut i: usize) -> usize {
    while let Some(word) = raw.get(i..i + 8) {
        let x = u64::from_le_bytes(word.try_into().unwrap_or_default());
        // Below 0x26; 0x7f and up (as in `span_vchar`); 0x3c to 0x3f
        // (the bytes whose six high bits are 0x3c's); 0x60.
        let quad = (x & (ONES * 0xfc)) ^ (ONES * 0x3c);
        let out = below(x, 0x26)
            | ((x.wrapping_add(ONES) | x) & HIGHS)
            | below(quad, 1)
            | below(x ^ (ONES * 0x60), 1);
        if out != 0 {
            return i + (out.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    span(raw, i, PLAIN_TARGET)
}

/// Where a target from `i` on ends ([`span_vchar`]), and whether all of
/// it is [`PLAIN_TARGET`]: one pass over the common target, which then
/// needs no second look when the request is built.
#[inline(always)]
fn span_target(raw: &[u8], i: usize) -> (usize, bool) {
    let at = span_plain(raw, i);
    match raw.get(at) {
        Some(&b) if CLASS[b as usize] & VCHAR != 0 => (span_vchar(raw, at), false),
        _ => (at, true),
    }
}

/// Whether all of `target` is [`PLAIN_TARGET`], as [`span_target`] says.
fn plain_target(target: &[u8]) -> bool {
    target
        .iter()
        .all(|&b| CLASS[b as usize] & PLAIN_TARGET != 0)
}

/// [`span`] of [`FIELD`] (a field value), a word at a time.
#[inline(always)]
fn span_field(raw: &[u8], mut i: usize) -> usize {
    while let Some(word) = raw.get(i..i + 8) {
        let x = u64::from_le_bytes(word.try_into().unwrap_or_default());
        // Controls (HTAB too, taken below) and DEL; obs-text is in.
        let out = below(x, 0x20) | below(x ^ (ONES * 0x7f), 1);
        if out != 0 {
            let at = i + (out.trailing_zeros() / 8) as usize;
            if raw[at] != b'\t' {
                return at;
            }
            i = at + 1;
            continue;
        }
        i += 8;
    }
    span(raw, i, FIELD)
}

/// The common head, read without `httparse` and with its fields checked
/// as they are read (one pass over the head instead of the parser's and
/// then the checks' over its fields): a token, a space, a target of
/// visible ASCII, a space, `HTTP/1.1` or `HTTP/1.0`, CRLF; then fields
/// `name:value` with optional whitespace around the value, each line
/// ending in CRLF, then CRLF.
///
/// `None` for anything else (a byte over 127 in the target, a bare LF,
/// an empty line before the request, an invalid byte, too many fields, a
/// head not whole): [`parse_general`] then reads the head with `httparse`
/// and answers exactly as before. What this reads, `httparse` reads
/// alike (the same byte classes, the value trimmed the same way), so a
/// head gets the same answer whichever way it went, and the errors in
/// the same order: the request line's, then the first field's.
#[inline]
fn parse_plain(raw: &[u8], max_headers: usize) -> Option<Result<Parsed, StatusCode>> {
    // `GET ` as one integer comparison, remembered so that the method is
    // not compared again below.
    let get = raw.first_chunk::<4>().copied().map(u32::from_le_bytes)
        == Some(u32::from_le_bytes(*b"GET "));
    let method_end = match get {
        true => 3,
        false => span(raw, 0, TCHAR),
    };
    if method_end == 0 || raw.get(method_end) != Some(&b' ') {
        return None;
    }
    let (target_end, plain) = span_target(raw, method_end + 1);
    let target = method_end + 1..target_end;
    if target.is_empty() || raw.get(target.end) != Some(&b' ') {
        return None;
    }
    let lines = target.end + 11;
    // Two fixed-size loads compared as integers, not slices of a length
    // known only at run time.
    let sent = raw.get(target.end + 1..lines)?;
    let (name, end) = sent.split_at(8);
    if end != b"\r\n" {
        return None;
    }
    let version = match u64::from_le_bytes(name.try_into().ok()?) {
        v if v == u64::from_le_bytes(*b"HTTP/1.1") => Version::HTTP_11,
        v if v == u64::from_le_bytes(*b"HTTP/1.0") => Version::HTTP_10,
        _ => return None,
    };
    let mut fields = Fields::new(version);
    // The first field refused; the head is still read to its end, since
    // `httparse` would refuse a head that goes wrong further on first.
    let mut refused = Ok(());
    let mut count = 0;
    let mut i = lines;
    loop {
        if raw.get(i..i + 2)? == b"\r\n" {
            i += 2;
            break;
        }
        let name_end = span(raw, i, TCHAR);
        if name_end == i || raw.get(name_end) != Some(&b':') || count == max_headers {
            return None;
        }
        count += 1;
        let mut start = name_end + 1;
        while let Some(b' ' | b'\t') = raw.get(start) {
            start += 1;
        }
        let end = span_field(raw, start);
        if raw.get(end..end + 2)? != b"\r\n" {
            return None;
        }
        let value = raw[start..end].trim_ascii_end();
        if refused.is_ok() {
            refused = fields.field(&raw[i..name_end], value);
        }
        i = end + 2;
    }
    let method = match get {
        // The common method without `Method::from_bytes`'s search.
        true => Method::GET,
        false => match Method::from_bytes(&raw[..method_end]) {
            Ok(method) => method,
            Err(_) => return Some(Err(StatusCode::BAD_REQUEST)),
        },
    };
    let form = match target_form(&raw[target.clone()], &method) {
        Ok(form) => form,
        Err(status) => return Some(Err(status)),
    };
    if let Err(status) = refused {
        return Some(Err(status));
    }
    // From the first field's name, or with none, the end (as `parse_with`).
    let lines = if count == 0 { i } else { lines };
    Some(fields.finish(i, method, version, target, form, lines, plain))
}

/// Whether [`parse_plain`] read `input`; where it did, it must have
/// answered as `httparse` and the checks after it ([`parse_general`]) do:
/// panics, showing the head, if not. For the `plain_head` fuzz target and
/// the tests.
pub(crate) fn plain_agrees(input: &[u8], max_headers: usize) -> bool {
    let Some(plain) = parse_plain(input, max_headers) else {
        return false;
    };
    let general = parse_general(input, max_headers);
    assert_eq!(
        format!("{plain:?}"),
        format!("{general:?}"),
        "{:?}",
        String::from_utf8_lossy(input)
    );
    true
}

/// The forms of request-target (RFC 9112 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `/path?query`, read in place.
    Origin,
    /// `*`, for `OPTIONS`.
    Asterisk,
    /// `http://host/path?query`, routed on its path.
    Absolute,
}

/// What [`Decoder::parse_next`] read: `None` if it was not the common
/// case it reads.
#[derive(Debug)]
pub(crate) struct Parse(Option<Result<Parsed, StatusCode>>);

/// A head as parsed, by positions in the buffer it was parsed from (so
/// the buffer can be split after the parser's borrow of it ends).
#[derive(Debug)]
struct Parsed {
    /// The head's length, up to and with its blank line.
    len: usize,
    method: Method,
    version: Version,
    target: std::ops::Range<usize>,
    form: Form,
    /// Where the first header line starts.
    lines: usize,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
    upgrade: bool,
    /// Every byte of the target is [`PLAIN_TARGET`]: no query, no
    /// escape, nothing `HeadBytes` refuses (it need not scan it again).
    plain: bool,
}

impl Parsed {
    /// The head, its target and header lines in `bytes`. The method is
    /// taken out (the rest is copied): see [`Decoder::take_head`].
    #[inline(always)]
    fn head(&mut self, bytes: HeadBytes, escaped: bool) -> Head {
        Head {
            raw: RawHead {
                method: std::mem::replace(&mut self.method, Method::GET),
                version: self.version,
                head: bytes,
                escaped,
                upgrade: self.upgrade,
            },
            framing: self.framing,
            keep_alive: self.keep_alive,
            expect_continue: self.expect_continue,
        }
    }
}

/// The head of a request whose target is `*` or in absolute form, in a
/// buffer of its own: the path and query (`*`, or the absolute form's),
/// then the header lines.
#[cold]
#[inline(never)]
fn other_form(raw: &[u8], parsed: &Parsed) -> Option<(HeadBytes, bool)> {
    let lines = raw.get(parsed.lines..).unwrap_or(&[]);
    if parsed.form == Form::Asterisk {
        return HeadBytes::owned("*", lines);
    }
    let target = std::str::from_utf8(raw.get(parsed.target.clone())?).ok()?;
    let uri: http::Uri = target.parse().ok()?;
    // The target names the host: RFC 9112 §3.2.2 has the server ignore
    // the `Host` field and use the target's authority instead, so that is
    // what the request's `Host` says (to the app, a redirect, the log).
    // An `http` URI needs a host (RFC 9110 §4.2.1), and userinfo in one
    // is an error (§4.2.4: it is how `http://good@evil/` deceives).
    let authority = uri.authority()?.as_str();
    if authority.contains('@')
        || uri.host().is_none_or(str::is_empty)
        || !valid_host(authority.as_bytes())
    {
        return None;
    }
    let lines = with_host(lines, authority);
    match uri.path_and_query().map_or("", |p| p.as_str()) {
        path if path.starts_with('/') => HeadBytes::owned(path, &lines),
        // `http://h` or `http://h?q`: the path is `/`.
        query => HeadBytes::owned(&format!("/{query}"), &lines),
    }
}

/// Header lines (each ending in CRLF, then the blank line) with every
/// `Host` field replaced by one saying `authority`, first.
#[cold]
fn with_host(lines: &[u8], authority: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.len() + authority.len() + 8);
    out.extend_from_slice(b"host: ");
    out.extend_from_slice(authority.as_bytes());
    out.extend_from_slice(b"\r\n");
    for line in lines.split_inclusive(|&b| b == b'\n') {
        // Names are tokens with no space before the colon (the parser
        // refused anything else), so a `Host` line starts with `host:`.
        let host = line.len() >= 5 && is_host(&line[..4]) && line[4] == b':';
        if !host {
            out.extend_from_slice(line);
        }
    }
    out
}

/// Reads what it can of a head that was refused or cut short: the request
/// line (method, target, version) and then every complete header line
/// that is a valid field, up to `max_headers`, stopping at the end of the
/// head. Without a whole request line that reads as one, the first line
/// as it came ([`Seen::Line`]; [`Seen::Nothing`] when nothing came).
///
/// Error paths only, and written apart from the request parser on
/// purpose: sharing its helpers made the compiler stop inlining them into
/// the hot path.
#[cold]
#[inline(never)]
fn salvage(buf: &[u8], max_headers: usize) -> Seen {
    let Some(start) = buf.iter().position(|&b| b != b'\r' && b != b'\n') else {
        return Seen::Nothing;
    };
    let first = &buf[start..];
    let line = match memchr::memchr(b'\n', first) {
        Some(end) => &first[..end],
        None => first,
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match salvage_head(buf, start, line, max_headers) {
        Some(head) => Seen::Head(head),
        None => Seen::Line(line[..line.len().min(MAX_SEEN_LINE)].into()),
    }
}

/// [`salvage`]'s request line and header lines, from the line at `start`.
#[cold]
fn salvage_head(
    buf: &[u8],
    start: usize,
    line: &[u8],
    max_headers: usize,
) -> Option<Box<SeenHead>> {
    let line_end = start + memchr::memchr(b'\n', &buf[start..])?;
    let mut parts = line.split(|&b| b == b' ');
    let method = Method::from_bytes(parts.next()?).ok()?;
    let target = std::str::from_utf8(parts.next()?).ok()?;
    let target = if target.starts_with('/') {
        PathAndQuery::try_from(target).ok()?
    } else if target == "*" && method == Method::OPTIONS {
        PathAndQuery::from_static("*")
    } else if is_absolute_form(target.as_bytes()) {
        let uri: http::Uri = target.parse().ok()?;
        uri.path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"))
    } else {
        return None;
    };
    let (version, sent_version) = match parts.next() {
        Some(b"HTTP/1.0") => (Version::HTTP_10, None),
        Some(b"HTTP/1.1") | None => (Version::HTTP_11, None),
        Some(other) => (Version::HTTP_11, Some(other.into())),
    };
    let mut rest = &buf[line_end + 1..];
    let mut headers = HeaderMap::new();
    // Whole lines only: the last one may be cut short.
    while let Some(end) = memchr::memchr(b'\n', rest) {
        let line = &rest[..end];
        rest = &rest[end + 1..];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || headers.len() >= max_headers {
            break;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    Some(Box::new(SeenHead {
        method,
        target,
        version,
        headers,
        sent_version,
    }))
}

fn parse_with<'b>(
    raw: &'b [u8],
    slots: &mut [MaybeUninit<httparse::Header<'b>>],
) -> Result<Parsed, StatusCode> {
    let mut req = httparse::Request::new(&mut []);
    let parsed = match req.parse_with_uninit_headers(raw, slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(StatusCode::BAD_REQUEST),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        }
        Err(httparse::Error::Version) => return other_version(raw, slots.len()),
        // Covers whitespace before a colon, obs-fold, bad tokens.
        Err(_) => return Err(StatusCode::BAD_REQUEST),
    };
    let method = match req.method.unwrap_or("").as_bytes() {
        // The common method without `Method::from_bytes`'s search.
        b"GET" => Method::GET,
        other => Method::from_bytes(other).map_err(|_| StatusCode::BAD_REQUEST)?,
    };
    let version = match req.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Err(StatusCode::HTTP_VERSION_NOT_SUPPORTED),
    };
    let path = req.path.unwrap_or("");
    let form = target_form(path.as_bytes(), &method)?;
    let target_start = path.as_ptr() as usize - raw.as_ptr() as usize;
    let target = target_start..target_start + path.len();

    let mut fields = Fields::new(version);
    // Every line must end in CRLF. The parser also takes a bare LF (RFC
    // 9112 §2.2 lets a recipient do either), but a proxy in front that
    // does not would see other lines, or another end of the head, than
    // tine: a way to smuggle a request past it. So a bare LF is refused:
    // the line before each field, and the last field's line and the blank
    // line, must end in CRLF.
    if !raw[..parsed].ends_with(b"\r\n\r\n") {
        return Err(StatusCode::BAD_REQUEST);
    }
    let mut lines_start = parsed;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let name_start = name.as_ptr() as usize - raw.as_ptr() as usize;
        if raw[name_start - 2] != b'\r' {
            return Err(StatusCode::BAD_REQUEST);
        }
        lines_start = lines_start.min(name_start);
        fields.field(name, h.value)?;
    }
    // From the first field's name (or the blank line) to the end.
    let plain = plain_target(&raw[target.clone()]);
    fields.finish(parsed, method, version, target, form, lines_start, plain)
}

/// The fields tine itself reads, recognised from the raw names (no
/// `HeaderName`, no map): the rest stay as the header lines, for a map
/// built only if a handler asks for one. The parser has checked every
/// name (a token) and value (visible characters, tab, obs-text), which
/// is all `HeaderName` and `HeaderValue` check too.
///
/// The yes-or-no facts are bits of one byte ([`flag`]): the reader keeps
/// this on its stack, and eight `bool`s cost eight stores to clear and
/// eight loads to finish on every head (about 10 instructions, callgrind).
struct Fields {
    content_length: Option<u64>,
    hosts: u32,
    flags: u8,
}

/// The bits of [`Fields::flags`].
mod flag {
    /// The request is HTTP/1.1.
    pub(super) const HTTP11: u8 = 1;
    pub(super) const CHUNKED: u8 = 1 << 1;
    /// A `Transfer-Encoding` field was sent.
    pub(super) const HAS_TE: u8 = 1 << 2;
    /// A transfer coding other than chunked came before it (RFC 9112
    /// §6.1: 501); read across every `Transfer-Encoding` line, which
    /// together make one list (empty items in it are ignored).
    pub(super) const TE_UNKNOWN: u8 = 1 << 3;
    pub(super) const KEEP_ALIVE: u8 = 1 << 4;
    /// `close` anywhere wins over `keep-alive` anywhere (RFC 9112 §9.3),
    /// whatever their order.
    pub(super) const CLOSE: u8 = 1 << 5;
    pub(super) const EXPECT_CONTINUE: u8 = 1 << 6;
    pub(super) const UPGRADE: u8 = 1 << 7;
}

impl Fields {
    #[inline(always)]
    fn new(version: Version) -> Self {
        let flags = match version == Version::HTTP_11 {
            true => flag::HTTP11 | flag::KEEP_ALIVE,
            false => 0,
        };
        Fields {
            content_length: None,
            hosts: 0,
            flags,
        }
    }

    #[inline(always)]
    fn has(&self, bit: u8) -> bool {
        self.flags & bit != 0
    }

    /// Takes in one field, in the order they came.
    #[inline(always)]
    fn field(&mut self, name: &[u8], value: &[u8]) -> Result<(), StatusCode> {
        match name.len() {
            // Every HTTP/1.1 request has a Host field.
            4 if is_host(name) => {
                self.hosts += 1;
                if !valid_host(value) {
                    return Err(StatusCode::BAD_REQUEST);
                }
            }
            6 if name.eq_ignore_ascii_case(b"expect") => {
                if value.eq_ignore_ascii_case(b"100-continue") {
                    if self.has(flag::HTTP11) {
                        self.flags |= flag::EXPECT_CONTINUE;
                    }
                } else {
                    return Err(StatusCode::EXPECTATION_FAILED);
                }
            }
            7 if name.eq_ignore_ascii_case(b"upgrade") => self.flags |= flag::UPGRADE,
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for token in tokens(value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        self.flags |= flag::CLOSE;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && !self.has(flag::HTTP11) {
                        self.flags |= flag::KEEP_ALIVE;
                    }
                }
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                // Any second Content-Length, even an equal one, is
                // refused: a proxy in front might have picked the other.
                if self.content_length.is_some() {
                    return Err(StatusCode::BAD_REQUEST);
                }
                self.content_length = Some(parse_content_length(value)?);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                self.flags |= flag::HAS_TE;
                let mut chunked = self.has(flag::CHUNKED);
                let mut unknown = self.has(flag::TE_UNKNOWN);
                let read = transfer_codings(value, &mut chunked, &mut unknown);
                if chunked {
                    self.flags |= flag::CHUNKED;
                }
                if unknown {
                    self.flags |= flag::TE_UNKNOWN;
                }
                read?;
            }
            // `HeaderName` takes names up to 64 KiB.
            n if n > MAX_NAME => return Err(StatusCode::BAD_REQUEST),
            _ => {}
        }
        Ok(())
    }

    /// The head's checks over all its fields, and the head as parsed.
    // The parts of the head the two readers found, as they found them:
    // gathered into a struct, they were one more thing built and taken
    // apart on every request's way.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn finish(
        self,
        len: usize,
        method: Method,
        version: Version,
        target: std::ops::Range<usize>,
        form: Form,
        lines: usize,
        plain: bool,
    ) -> Result<Parsed, StatusCode> {
        let http11 = self.has(flag::HTTP11);
        if http11 && self.hosts != 1 {
            return Err(StatusCode::BAD_REQUEST);
        }
        if self.hosts > 1 {
            return Err(StatusCode::BAD_REQUEST);
        }
        let framing = match (self.has(flag::HAS_TE), self.content_length) {
            (true, Some(_)) => return Err(StatusCode::BAD_REQUEST),
            (true, None) if !http11 => return Err(StatusCode::BAD_REQUEST),
            // Chunked not last: the body's length cannot be known (RFC
            // 9112 §6.3: 400, then close).
            (true, None) if !self.has(flag::CHUNKED) => return Err(StatusCode::BAD_REQUEST),
            (true, None) if self.has(flag::TE_UNKNOWN) => return Err(StatusCode::NOT_IMPLEMENTED),
            (true, None) => Framing::Chunked,
            (false, Some(0)) | (false, None) => Framing::Empty,
            (false, Some(n)) => Framing::Length(n),
        };
        Ok(Parsed {
            len,
            method,
            version,
            target,
            form,
            lines,
            framing,
            keep_alive: self.has(flag::KEEP_ALIVE) && !self.has(flag::CLOSE),
            expect_continue: self.has(flag::EXPECT_CONTINUE) && framing != Framing::Empty,
            upgrade: self.has(flag::UPGRADE),
            plain,
        })
    }
}

#[cfg(test)]
impl Head {
    fn target(&self) -> PathAndQuery {
        PathAndQuery::try_from(self.raw.head.target()).unwrap()
    }

    fn headers(&self) -> HeaderMap {
        header_map(&self.raw.head)
    }
}

/// The longest header name `http::HeaderName` accepts.
const MAX_NAME: usize = (1 << 16) - 1;

/// A request line whose version `httparse` refused (it knows exactly
/// `HTTP/1.0` and `HTTP/1.1`). RFC 9112 §2.3: a higher minor version of
/// HTTP/1 is answered as the highest minor version the server supports,
/// so `HTTP/1.2` to `HTTP/1.9` are parsed again as `HTTP/1.1`; another
/// major version (`HTTP/2.0`, the HTTP/2 preface's `PRI * HTTP/2.0`,
/// `HTTP/3`, `HTTP/0.9`) is `505 HTTP Version Not Supported` (RFC 9110
/// §15.6.6); anything else (no version, a space inside the target) is 400.
/// Rare: it copies the head.
#[cold]
#[inline(never)]
fn other_version(raw: &[u8], max_headers: usize) -> Result<Parsed, StatusCode> {
    let start = raw
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .ok_or(StatusCode::BAD_REQUEST)?;
    let end = start + memchr::memchr(b'\n', &raw[start..]).ok_or(StatusCode::BAD_REQUEST)?;
    let line = &raw[start..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(_), Some(_), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(StatusCode::BAD_REQUEST);
    };
    match version {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if minor.is_ascii_digit() => {
            // Only 1.2 and up get here: 1.0 and 1.1 parsed (so the retry
            // cannot come back).
            let at = start + line.len() - version.len();
            let mut copy = raw.to_vec();
            copy[at..at + 8].copy_from_slice(b"HTTP/1.1");
            // Not through `parse_buf`: a second caller stopped it being
            // inlined into the decoder, a cost on every request. The
            // positions parsed in the copy are those of `raw`: only the
            // version differs.
            let mut slots =
                vec![MaybeUninit::<httparse::Header<'_>>::uninit(); heap_slots(&copy, max_headers)];
            parse_with(&copy, &mut slots)
        }
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Err(StatusCode::HTTP_VERSION_NOT_SUPPORTED)
        }
        [b'H', b'T', b'T', b'P', b'/', major] if major.is_ascii_digit() => {
            Err(StatusCode::HTTP_VERSION_NOT_SUPPORTED)
        }
        _ => Err(StatusCode::BAD_REQUEST),
    }
}

/// Whether a byte is a `tchar` (RFC 9110 §5.6.2), as methods and field
/// names are made of.
pub(crate) fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether a field name is `Host`, in any case.
#[inline]
fn is_host(name: &[u8]) -> bool {
    // Setting bit 5 lower-cases letters, and only `H`/`h` become `h` (and
    // so on), so this is an exact case-insensitive comparison.
    match name {
        [a, b, c, d] => {
            u32::from_le_bytes([*a, *b, *c, *d]) | 0x2020_2020 == u32::from_le_bytes(*b"host")
        }
        _ => false,
    }
}

/// Bytes of a `reg-name` (RFC 3986 §3.2.2) but `%`: unreserved and
/// sub-delims (1; 0 for the rest, so lookups combine with `&`).
static REG_NAME: [u8; 256] = {
    let mut t = [0; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            )
        {
            t[b] = 1;
        }
        b += 1;
    }
    t
};

/// Whether a `Host` field value is valid (RFC 9110 §7.2: `uri-host [ ":"
/// port ]`, RFC 3986 §3.2.2 for the host). A reg-name of unreserved
/// characters, sub-delims and percent-encodings (so no spaces, slashes,
/// `@` or non-ASCII: a name in another script comes punycoded), an IPv4
/// address (which is a reg-name too) or a bracketed IPv6 or IPvFuture
/// literal; then optionally `:` and a port of at most 65535. Empty is
/// valid: RFC 9112 §3.2 has clients send an empty `Host` when the target
/// has no authority. So is an empty port after the colon (RFC 3986's
/// `port = *DIGIT`).
///
/// On every request, so the common value (a name without a port) costs
/// a few instructions a byte: four table lookups a step, combined without
/// a branch per byte. A value ending in a digit or colon goes to
/// [`valid_host_port`], the rest (percent-encodings, IP literals, anything
/// invalid) to [`valid_host_slow`]. Always inlined: called from the
/// head reader, it made the reader save and reload what it held around
/// the call (about 15 instructions a request, callgrind).
#[inline(always)]
fn valid_host(value: &[u8]) -> bool {
    match value.last() {
        Some(b'0'..=b'9' | b':') => valid_host_port(value),
        _ => reg_name_fast(value) || valid_host_slow(value),
    }
}

/// Whether every byte is in [`REG_NAME`].
#[inline(always)]
fn reg_name_fast(name: &[u8]) -> bool {
    super::request::all_in(&REG_NAME, name)
}

/// [`valid_host`] for a value that ends in a digit: `name:port`, or an
/// IPv4 address or a name ending in a digit.
#[inline(never)]
fn valid_host_port(value: &[u8]) -> bool {
    let mut end = value.len();
    while end > 0 && value[end - 1].is_ascii_digit() {
        end -= 1;
    }
    let name = match end.checked_sub(1) {
        Some(colon) if value[colon] == b':' => {
            if !valid_port(&value[end..]) {
                return false;
            }
            &value[..colon]
        }
        _ => value,
    };
    reg_name_fast(name) || valid_host_slow(value)
}

/// `port = *DIGIT` (RFC 3986 §3.2.3), within a TCP port's range.
#[inline]
fn valid_port(port: &[u8]) -> bool {
    port.len() <= 5
        && port.iter().all(u8::is_ascii_digit)
        && port.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= 65535
}

/// [`valid_host`] for hosts with percent-encodings or IP literals.
#[cold]
#[inline(never)]
fn valid_host_slow(value: &[u8]) -> bool {
    let (host_ok, rest) = if let Some(inside) = value.strip_prefix(b"[") {
        let Some(close) = memchr::memchr(b']', inside) else {
            return false;
        };
        (valid_ip_literal(&inside[..close]), &inside[close + 1..])
    } else {
        let end = memchr::memchr(b':', value).unwrap_or(value.len());
        (valid_reg_name(&value[..end]), &value[end..])
    };
    host_ok
        && match rest {
            [] => true,
            [b':', port @ ..] => valid_port(port),
            _ => false,
        }
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`.
fn valid_reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while i < name.len() {
        match name[i] {
            b'%' if name.len() > i + 2
                && name[i + 1].is_ascii_hexdigit()
                && name[i + 2].is_ascii_hexdigit() =>
            {
                i += 3
            }
            b if REG_NAME[b as usize] == 1 => i += 1,
            _ => return false,
        }
    }
    true
}

/// What goes between the brackets of an `IP-literal`: an IPv6 address or
/// `IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )`.
fn valid_ip_literal(inside: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = inside {
        let dot = rest.iter().position(|&b| b == b'.');
        return match dot {
            Some(dot) if dot > 0 && dot + 1 < rest.len() => {
                rest[..dot].iter().all(u8::is_ascii_hexdigit)
                    && rest[dot + 1..]
                        .iter()
                        .all(|&b| b == b':' || REG_NAME[b as usize] == 1)
            }
            _ => false,
        };
    }
    std::str::from_utf8(inside).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

/// The form of a request target: origin form (read in place), `*` for
/// `OPTIONS`, or absolute form (RFC 9112 §3.2.2, routed on its path).
///
/// Origin form inline (a call and its spills cost the common head about
/// 12 instructions), the others out of line.
#[inline(always)]
fn target_form(path: &[u8], method: &Method) -> Result<Form, StatusCode> {
    match path.first() {
        Some(b'/') => Ok(Form::Origin),
        _ => other_target_form(path, method),
    }
}

/// [`target_form`] of a target not in origin form.
#[cold]
#[inline(never)]
fn other_target_form(path: &[u8], method: &Method) -> Result<Form, StatusCode> {
    if path == b"*" && method == Method::OPTIONS {
        Ok(Form::Asterisk)
    } else if is_absolute_form(path) {
        Ok(Form::Absolute)
    } else {
        Err(StatusCode::BAD_REQUEST)
    }
}

/// Whether a target is in absolute form: `http://` or `https://`, the
/// scheme in any case (RFC 3986 §3.1: schemes are case-insensitive, so
/// `HTTP://h/` names the same resource as `http://h/`).
#[inline]
fn is_absolute_form(target: &[u8]) -> bool {
    let has = |scheme: &[u8]| {
        target
            .get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
    };
    has(b"http://") || has(b"https://")
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
fn transfer_codings(
    value: &[u8],
    chunked: &mut bool,
    unknown: &mut bool,
) -> Result<(), StatusCode> {
    for token in tokens(value) {
        if *chunked {
            // Something after chunked, or chunked twice.
            return Err(StatusCode::BAD_REQUEST);
        }
        if token.eq_ignore_ascii_case(b"chunked") {
            *chunked = true;
        } else {
            *unknown = true;
        }
    }
    Ok(())
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

    fn seen(buf: &[u8]) -> Option<Box<SeenHead>> {
        salvage(buf, 100).head()
    }

    #[test]
    fn salvage_reads_the_request_line_and_whole_header_lines() {
        let s =
            seen(b"\r\nPOST /up?x=1 HTTP/1.0\r\nOrigin: https://a\r\nBad Name: v\r\nX-Cut: par")
                .unwrap();
        assert_eq!(s.method, Method::POST);
        assert_eq!(s.target.as_str(), "/up?x=1");
        assert_eq!(s.version, Version::HTTP_10);
        assert_eq!(s.headers["origin"], "https://a");
        // Invalid names and the unfinished last line are left out.
        assert_eq!(s.headers.len(), 1);
        // Absolute form routes on its path; the head ends at the blank line.
        let s = seen(b"GET http://h/p HTTP/1.1\r\nA: 1\r\n\r\nB: 2\r\n").unwrap();
        assert_eq!(s.target.as_str(), "/p");
        assert_eq!(s.headers.len(), 1);
        assert_eq!(
            salvage(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n", 2)
                .head()
                .unwrap()
                .headers
                .len(),
            2
        );
    }

    #[test]
    fn salvage_needs_a_request_line() {
        assert!(seen(b"").is_none());
        assert!(seen(b"\r\n\r\n").is_none());
        assert!(seen(b"GET").is_none());
        assert!(seen(b"\x01\x02 x\r\n\r\n").is_none());
        assert!(seen(b"GET nopath HTTP/1.1\r\n\r\n").is_none());
        // The request line must be whole.
        assert!(seen(b"GET /a HTTP/1.1").is_none());
        assert_eq!(seen(b"GET /a HTTP/1.1\r\n").unwrap().target.as_str(), "/a");
        // For the access log: the first line as it came, or nothing.
        let line = |buf: &[u8]| match salvage(buf, 100) {
            Seen::Line(line) => Some(line),
            _ => None,
        };
        assert_eq!(
            line(b"\r\nGET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n").unwrap()[..],
            b"GET /\x7f HTTP/1.1"[..]
        );
        assert_eq!(
            line(b"G\"T / HTTP/1.1").unwrap()[..],
            b"G\"T / HTTP/1.1"[..]
        );
        assert_eq!(line(&[b'a'; 10_000]).unwrap().len(), MAX_SEEN_LINE);
        assert!(matches!(salvage(b"\r\n", 100), Seen::Nothing));
        // A protocol `Version` cannot hold is kept as sent.
        let s = seen(b"GET / HTTP/9.9\r\n\r\n").unwrap();
        assert_eq!(s.version, Version::HTTP_11);
        assert_eq!(s.sent_version.as_deref(), Some(&b"HTTP/9.9"[..]));
        assert_eq!(seen(b"GET / HTTP/1.1\r\n\r\n").unwrap().sent_version, None);
    }

    #[test]
    fn head_over_the_limit_is_414_when_the_request_line_is() {
        let limits = Limits {
            max_header: 32,
            ..Limits::default()
        };
        let status = |input: &[u8]| {
            let mut buf = BytesMut::from(input);
            match Decoder::new().decode(&mut buf, &limits) {
                Decoded::Error(s) => s.as_u16(),
                other => panic!("{other:?}"),
            }
        };
        let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(40));
        assert_eq!(status(long_line.as_bytes()), 414);
        assert_eq!(status(format!("{long_line}\r\n").as_bytes()), 414);
        let long_field = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(40));
        assert_eq!(status(long_field.as_bytes()), 431);
        assert_eq!(status(format!("{long_field}\r\n").as_bytes()), 431);
    }

    #[test]
    fn take_seen_after_each_kind_of_refusal() {
        let limits = Limits {
            max_body: 4,
            ..Limits::default()
        };
        // Over max_body by Content-Length: the head is handed out first
        // (the connection keeps it), the 413 comes from admitting it,
        // and nothing more is decoded.
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(
            &b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\nGET /next HTTP/1.1\r\n"[..],
        );
        assert!(matches!(d.decode(&mut buf, &limits), Decoded::Head(h) if h.target() == "/a"));
        assert_eq!(d.admit(4, 4), Err(StatusCode::PAYLOAD_TOO_LARGE));
        assert!(matches!(d.decode(&mut buf, &limits), Decoded::NeedMore));
        // A head that fails to parse: what could be read of it, not the
        // pipelined request behind it.
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(
            &b"GET /b HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\nGET /next HTTP/1.1\r\n"[..],
        );
        assert!(matches!(d.decode(&mut buf, &limits), Decoded::Error(s) if s == 400));
        assert_eq!(d.take_seen(&buf, 100).head().unwrap().target.as_str(), "/b");
        // Nothing more is decoded after a refusal.
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(
            &b"GET /c HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"[..],
        );
        assert!(matches!(d.decode(&mut buf, &limits), Decoded::Error(_)));
        assert!(matches!(d.decode(&mut buf, &limits), Decoded::NeedMore));
        // A body cut short (a timeout): the connection holds the
        // admitted request, the decoder nothing.
        let mut d = Decoder::new();
        let mut buf =
            BytesMut::from(&b"POST /d HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nx"[..]);
        assert!(matches!(next(&mut d, &mut buf, &limits), Decoded::NeedMore));
        assert!(matches!(d.take_seen(&buf, 100), Seen::Nothing));
        // A head cut short: salvaged from the buffer.
        let mut d = Decoder::new();
        assert_eq!(
            d.take_seen(b"GET /e HTTP/1.1\r\nHo", 100)
                .head()
                .unwrap()
                .target
                .as_str(),
            "/e"
        );
    }

    fn decode_one(input: &[u8]) -> Decoded {
        let mut buf = BytesMut::from(input);
        next(&mut Decoder::new(), &mut buf, &Limits::default())
    }

    /// Decodes as the connection does, admitting every body under
    /// `limits.max_body`.
    fn next(d: &mut Decoder, buf: &mut BytesMut, limits: &Limits) -> Decoded {
        loop {
            match d.decode(buf, limits) {
                Decoded::Head(_) => {
                    if let Err(s) = d.admit(limits.max_body, limits.spill_past()) {
                        return Decoded::Error(s);
                    }
                }
                other => return other,
            }
        }
    }

    fn memory(body: ReadBody) -> Bytes {
        match body {
            ReadBody::Memory(b) => b,
            ReadBody::File(_) => panic!("spilled"),
        }
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
        assert_eq!(head.raw.method, Method::GET);
        assert_eq!(head.target().path(), "/a/b");
        assert_eq!(head.target().query(), Some("x=1"));
        assert_eq!(head.headers()["x-a"], "1");
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
                    Decoded::Request(h, _) => paths.push(h.target().path().to_string()),
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
        assert!(matches!(next(&mut d, &mut buf, &limits), Decoded::NeedMore));
        assert!(d.mid_request());
        buf.extend_from_slice(b"lloGET");
        let Decoded::Body(body) = d.decode(&mut buf, &limits) else {
            panic!()
        };
        assert_eq!(&memory(body)[..], b"hello");
        assert_eq!(&buf[..], b"GET");
    }

    #[test]
    fn chunked_body() {
        let Decoded::Body(body) = decode_one(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ) else {
            panic!()
        };
        assert_eq!(&memory(body)[..], b"abc");
    }

    #[test]
    fn expect_continue_reported_once() {
        let mut d = Decoder::new();
        let limits = Limits::default();
        let mut buf = BytesMut::from(
            &b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"[..],
        );
        // Not before the head is admitted.
        assert!(matches!(d.decode(&mut buf, &limits), Decoded::Head(_)));
        assert!(matches!(d.decode(&mut buf, &limits), Decoded::NeedMore));
        d.admit(3, 3).unwrap();
        assert!(matches!(d.decode(&mut buf, &limits), Decoded::Continue));
        assert!(matches!(d.decode(&mut buf, &limits), Decoded::NeedMore));
        buf.extend_from_slice(b"abc");
        assert!(matches!(d.decode(&mut buf, &limits), Decoded::Body(..)));
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
        // `close` wins over `keep-alive`, in one field or two, either order.
        for fields in [
            "Connection: close, keep-alive\r\n",
            "Connection: keep-alive, close\r\n",
            "Connection: close\r\nConnection: keep-alive\r\n",
            "Connection: keep-alive\r\nConnection: close\r\n",
        ] {
            let head = format!("GET / HTTP/1.0\r\n{fields}\r\n");
            let Decoded::Request(h, _) = decode_one(head.as_bytes()) else {
                panic!()
            };
            assert!(!h.keep_alive, "{fields:?}");
        }
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
        // Chunked not last: 400 (RFC 9112 §6.3), however unknown the rest.
        for te in [
            "gzip",
            "identity",
            "xchunked",
            "chunked;q=1",
            "\"chunked\"",
            "",
        ] {
            let req = format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert_eq!(status(req.as_bytes()), StatusCode::BAD_REQUEST, "{te:?}");
        }
        // Chunked last after a coding tine does not implement: 501, also
        // across two lines.
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            StatusCode::NOT_IMPLEMENTED
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"),
            StatusCode::NOT_IMPLEMENTED
        );
        // An empty line of the list is an empty item, ignored (it was
        // refused on its own line, and taken after a `chunked` line).
        for fields in [
            "Transfer-Encoding: \r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: \r\n",
            "Transfer-Encoding: ,chunked,\r\n",
        ] {
            // A chunked body "ab": read as such.
            let req = format!("POST / HTTP/1.1\r\nHost: h\r\n{fields}\r\n2\r\nab\r\n0\r\n\r\n");
            match decode_one(req.as_bytes()) {
                Decoded::Body(body) => assert_eq!(format!("{body:?}"), "Memory(b\"ab\")"),
                other => panic!("{fields:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn limits() {
        let limits = Limits::default().max_header(64).max_headers(2).max_body(10);
        let mut d = Decoder::new();
        // A request line that does not end within the limit: 414.
        let mut buf = BytesMut::from(&[b'a'; 65][..]);
        assert!(matches!(
            d.decode(&mut buf, &limits),
            Decoded::Error(StatusCode::URI_TOO_LONG)
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
            next(&mut d, &mut buf, &limits),
            Decoded::Error(StatusCode::PAYLOAD_TOO_LARGE)
        ));
    }

    #[test]
    fn absolute_and_asterisk_forms() {
        let Decoded::Request(h, _) = decode_one(b"GET http://h/x?y HTTP/1.1\r\nHost: h\r\n\r\n")
        else {
            panic!()
        };
        assert_eq!(h.target().path(), "/x");
        // The scheme in any case (RFC 3986 §3.1).
        for target in ["HTTP://h/x?y", "Https://h/x?y", "hTtP://h/x?y"] {
            let head = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            let Decoded::Request(h, _) = decode_one(head.as_bytes()) else {
                panic!("{target} refused")
            };
            assert_eq!(h.target().as_str(), "/x?y", "{target}");
        }
        for target in ["HTTPS:/h/x", "httpx://h/x", "ftp://h/x", "http:"] {
            let head = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            assert!(
                matches!(decode_one(head.as_bytes()), Decoded::Error(_)),
                "{target} accepted"
            );
        }
        let Decoded::Request(h, _) = decode_one(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n") else {
            panic!()
        };
        assert_eq!(h.target().as_str(), "*");
    }

    #[test]
    fn an_absolute_form_target_names_the_host() {
        // RFC 9112 §3.2.2: the target's authority, not the `Host` field.
        let head = b"GET http://good:8080/x HTTP/1.1\r\nA: 1\r\nHOST: evil\r\nB: 2\r\n\r\n";
        let Decoded::Request(h, _) = decode_one(head) else {
            panic!()
        };
        let headers = h.headers();
        let hosts: Vec<_> = headers.get_all("host").iter().collect();
        assert_eq!(hosts, ["good:8080"]);
        assert_eq!(headers["a"], "1");
        assert_eq!(headers["b"], "2");
        assert_eq!(headers.len(), 3);
        // HTTP/1.0 needs no `Host`: the target gives one.
        let Decoded::Request(h, _) = decode_one(b"GET http://good/ HTTP/1.0\r\n\r\n") else {
            panic!()
        };
        assert_eq!(h.headers()["host"], "good");
        // Userinfo (RFC 9110 §4.2.4), an empty host (§4.2.1) or one that
        // is no valid `Host` is refused.
        for target in [
            "http://good@evil/x",
            "http://u:p@evil/",
            "http://:80/x",
            "http://a:99999/x",
        ] {
            let head = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            assert!(
                matches!(decode_one(head.as_bytes()), Decoded::Error(_)),
                "{target} accepted"
            );
        }
    }

    /// Decodes what `buf` holds until more is needed, adding the paths of
    /// the requests to `paths` (bodies admitted and skipped).
    fn decode_paths(
        d: &mut Decoder,
        buf: &mut BytesMut,
        limits: &Limits,
        paths: &mut Vec<String>,
    ) -> Result<(), StatusCode> {
        loop {
            match d.decode(buf, limits) {
                Decoded::Request(h, _) => paths.push(h.target().path().to_string()),
                Decoded::NeedMore => return Ok(()),
                Decoded::Error(s) => return Err(s),
                Decoded::Continue => panic!("no Expect sent"),
                Decoded::Head(h) => {
                    paths.push(h.target().path().to_string());
                    d.admit(limits.max_body, limits.spill_past())?;
                }
                Decoded::Body(_) => {}
                Decoded::Discarded(_) => panic!("nothing skipped"),
            }
        }
    }

    /// Feeds `input` one byte at a time and collects the paths decoded.
    fn paths_byte_at_a_time(input: &[u8], limits: &Limits) -> Result<Vec<String>, StatusCode> {
        let mut d = Decoder::new();
        let mut buf = BytesMut::new();
        let mut paths = Vec::new();
        for &b in input {
            buf.extend_from_slice(&[b]);
            decode_paths(&mut d, &mut buf, limits, &mut paths)?;
        }
        Ok(paths)
    }

    /// Decodes all of `buf` at once and collects the paths decoded.
    fn paths_whole(buf: &mut BytesMut, limits: &Limits) -> Result<Vec<String>, StatusCode> {
        let mut paths = Vec::new();
        decode_paths(&mut Decoder::new(), buf, limits, &mut paths)?;
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
            assert_eq!(h.target().path(), "/a");
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
        let mut buf = BytesMut::from(&input[..]);
        let paths = paths_whole(&mut buf, &limits).unwrap();
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

    #[test]
    fn host_values() {
        for good in [
            "h",
            "",
            "example.com",
            "example.com:8080",
            "h:",
            "h:0",
            "h:65535",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "[2001:db8::7]:",
            "[v1.fe80::a+en1]",
            "caf%C3%A9.example",
            "a-b_c~d!$&'()*+,;=",
            "xn--caf-dma.example",
        ] {
            assert!(valid_host(good.as_bytes()), "{good:?}");
            let req = format!("GET / HTTP/1.1\r\nHost: {good}\r\n\r\n");
            assert!(
                matches!(decode_one(req.as_bytes()), Decoded::Request(..)),
                "{good:?}"
            );
        }
        for bad in [
            "a b",
            "a/b",
            "h:80/x",
            "h:x",
            "h:65536",
            "h:123456",
            "h:8080:1",
            "user@h",
            "caf\u{e9}",
            "%zz",
            "h%2",
            "[::1",
            "[::1]x",
            "[zz::1]",
            "[v.x]",
            "::1",
            "h\\x",
            "h?",
            "h#",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad:?}");
            let req = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
            assert_eq!(status(req.as_bytes()), StatusCode::BAD_REQUEST, "{bad:?}");
        }
        // The name in any case is the Host field, and only it is.
        assert!(is_host(b"Host") && is_host(b"HOST") && is_host(b"hOsT"));
        assert!(!is_host(b"Hosu") && !is_host(b"hos") && !is_host(b"Hosts"));
        assert!(!is_host(b"H\x0fST") && !is_host(b"(OST"));
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHOST: a b\r\n\r\n"),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nhost: a\r\nHOST: a\r\n\r\n"),
            StatusCode::BAD_REQUEST
        );
        let Decoded::Request(head, _) = decode_one(b"GET / HTTP/1.1\r\nhOST: a:1\r\n\r\n") else {
            panic!()
        };
        assert_eq!(head.headers()[http::header::HOST], "a:1");
        // HTTP/1.0 needs no Host, but one it sends must be valid.
        assert_eq!(
            status(b"GET / HTTP/1.0\r\nHost: a b\r\n\r\n"),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn higher_http1_minor_versions_are_http11() {
        for minor in 2..=9 {
            let req = format!("GET /v?x=1 HTTP/1.{minor}\r\nHost: h\r\nX-A: 1\r\n\r\n");
            let Decoded::Request(head, _) = decode_one(req.as_bytes()) else {
                panic!("HTTP/1.{minor}")
            };
            assert_eq!(head.raw.version, Version::HTTP_11);
            assert_eq!(head.target().as_str(), "/v?x=1");
            assert_eq!(head.headers()["x-a"], "1");
            assert!(head.keep_alive);
        }
        // With a body and leading empty lines, and still HTTP/1.1's rules:
        // Host is required.
        let mut d = Decoder::new();
        let mut buf =
            BytesMut::from(&b"\r\nPOST / HTTP/1.5\r\nHost: h\r\nContent-Length: 2\r\n\r\nok"[..]);
        let Decoded::Head(head) = d.decode(&mut buf, &Limits::default()) else {
            panic!()
        };
        assert_eq!(
            (head.raw.method, head.raw.version),
            (Method::POST, Version::HTTP_11)
        );
        d.admit(2, 2).unwrap();
        let Decoded::Body(body) = d.decode(&mut buf, &Limits::default()) else {
            panic!()
        };
        assert_eq!(&memory(body)[..], b"ok");
        assert_eq!(status(b"GET / HTTP/1.2\r\n\r\n"), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn other_major_versions_are_505_and_bad_versions_400() {
        for req in [
            &b"GET / HTTP/2.0\r\nHost: h\r\n\r\n"[..],
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/3\r\nHost: h\r\n\r\n",
            b"GET / HTTP/0.9\r\n\r\n",
            b"GET / HTTP/9.9\r\n\r\n",
        ] {
            assert_eq!(
                status(req),
                StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                "{}",
                req.escape_ascii()
            );
        }
        for req in [
            &b"GET / HTTP/1.x\r\nHost: h\r\n\r\n"[..],
            b"GET / HTTP/1.10\r\nHost: h\r\n\r\n",
            b"GET / http/1.1\r\nHost: h\r\n\r\n",
            b"GET / FOO/1.1\r\nHost: h\r\n\r\n",
            b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /a HTTP/1.2 x\r\nHost: h\r\n\r\n",
            b"GET /\r\nHost: h\r\n\r\n",
            b"GET / HTTP/2.\r\nHost: h\r\n\r\n",
        ] {
            assert_eq!(
                status(req),
                StatusCode::BAD_REQUEST,
                "{}",
                req.escape_ascii()
            );
        }
    }

    #[test]
    fn bytes_that_cannot_start_a_request_are_refused_at_once() {
        let limits = Limits::default();
        for start in [
            // The start of a TLS 1.2 ClientHello record.
            &[
                0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ][..],
            b"\x00\x01\x02",
            b"\r\n\x16\x03",
            b" GET / HTTP/1.1\r\n",
            b"GE\x00T /",
            b"GET\t/ HTTP/1.1",
            b"G(T / HTTP/1.1",
            b"GET  / HTTP/1.1",
            b"GET /a\x01b HTTP/1.1",
            b"GET /a\x7f HTTP/1.1",
        ] {
            // Whole, and a byte at a time: refused as soon as the bad
            // byte arrives, with no blank line ending a head.
            assert!(
                matches!(decode_one(start), Decoded::Error(StatusCode::BAD_REQUEST)),
                "{}",
                start.escape_ascii()
            );
            assert_eq!(
                paths_byte_at_a_time(start, &limits),
                Err(StatusCode::BAD_REQUEST),
                "{}",
                start.escape_ascii()
            );
            // Nothing of a request line: the answer is a bare 400.
            let mut d = Decoder::new();
            let mut buf = BytesMut::from(start);
            let _ = d.decode(&mut buf, &limits);
            if !start.starts_with(b"GET") {
                assert!(d.take_seen(&buf, 100).head().is_none());
            }
        }
        // What can still become a request waits for more.
        for partial in [
            &b"G"[..],
            b"GET",
            b"GET /",
            b"M-SEARCH * HTTP/1.1\r\n",
            b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\nX: \x01",
            b"\r\n\r\nDELETE /x HTTP/1.",
        ] {
            assert_eq!(
                paths_byte_at_a_time(partial, &limits),
                Ok(vec![]),
                "{}",
                partial.escape_ascii()
            );
        }
        // After a whole request, the next one is checked afresh.
        assert_eq!(
            paths_byte_at_a_time(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n\x16\x03", &limits),
            Err(StatusCode::BAD_REQUEST)
        );
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(&b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HT"[..]);
        assert!(matches!(d.decode(&mut buf, &limits), Decoded::Request(..)));
        assert!(matches!(d.decode(&mut buf, &limits), Decoded::NeedMore));
        buf.extend_from_slice(b"TP/1.1\r\nHost: h\r\n\r\n");
        assert!(
            matches!(d.decode(&mut buf, &limits), Decoded::Request(h, _) if h.target() == "/b")
        );
    }

    /// A head that arrived whole is parsed where it lies (the parser
    /// finds its end); one arriving in pieces is searched for its end
    /// first. Both must read the same requests and refuse the same.
    #[test]
    fn whole_and_piecemeal_heads_decode_alike() {
        let limits = Limits::default();
        let whole = |input: &[u8]| paths_whole(&mut BytesMut::from(input), &limits);
        for input in [
            &b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b?x HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHo",
            b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nxGET /c HTTP/1.1\r\nHost: h\r\n\r\n",
            // Bare LFs, refused both ways, as soon as one arrives.
            b"GET /a HTTP/1.1\nHost: h\n\n",
            b"GET /a HTTP/1.1\r\nHost: h\n\r\n",
            b"GET /a HTTP/1.1\r\nHost: h\n\r\nX: 1\r\n\r\n",
            // Refused: a target `http`'s URI parser refuses, a bad Host,
            // a higher minor version read as HTTP/1.1, absolute form.
            b"GET /a<b HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /a?b\"c HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /a HTTP/1.1\r\nHost: a b\r\n\r\n",
            b"GET /v HTTP/1.4\r\nHost: h\r\n\r\nGET /w HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET http://h/abs?q HTTP/1.1\r\nHost: h\r\n\r\nGET http://h HTTP/1.1\r\nHost: h\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert_eq!(
                whole(input),
                paths_byte_at_a_time(input, &limits),
                "{}",
                input.escape_ascii()
            );
        }
        assert_eq!(
            whole(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b?x HTTP/1.1\r\nHost: h\r\n\r\n"),
            Ok(vec!["/a".to_string(), "/b".to_string()])
        );
        assert_eq!(
            whole(b"GET http://h/abs?q HTTP/1.1\r\nHost: h\r\n\r\nGET http://h HTTP/1.1\r\nHost: h\r\n\r\n"),
            Ok(vec!["/abs".to_string(), "/".to_string()])
        );
        for bare_lf in [
            &b"GET /a HTTP/1.1\nHost: h\n\n"[..],
            b"GET /a HTTP/1.1\r\nHost: h\n\r\n",
            b"GET /a HTTP/1.1\r\nHost: h\r\n\n",
            b"GET /a HTTP/1.1\n\r\n",
            b"GET /a HTTP/1.1\r\n\n",
            // Ends in CRLF CRLF, a bare LF before it.
            b"GET /a HTTP/1.1\nHost: h\r\n\r\n",
            b"GET /a HTTP/1.1\r\nHost: h\nX: 1\r\n\r\n",
        ] {
            assert_eq!(
                whole(bare_lf),
                Err(StatusCode::BAD_REQUEST),
                "{}",
                bare_lf.escape_ascii()
            );
            assert_eq!(
                paths_byte_at_a_time(bare_lf, &limits),
                Err(StatusCode::BAD_REQUEST),
                "{}",
                bare_lf.escape_ascii()
            );
        }
        // A head a front end that takes bare LFs would end early: the
        // request after it must not be read as part of it (or at all).
        assert_eq!(
            whole(b"GET /a HTTP/1.1\r\nHost: h\r\n\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            whole(b"GET /a<b HTTP/1.1\r\nHost: h\r\n\r\n"),
            Err(StatusCode::BAD_REQUEST)
        );
        // What was read of a head refused for its target.
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(&b"GET /a?b\"c HTTP/1.1\r\nHost: h\r\nX: 1\r\n\r\n"[..]);
        assert!(matches!(d.decode(&mut buf, &limits), Decoded::Error(s) if s == 400));
        assert!(buf.is_empty());
    }

    fn decode_one_with(input: &[u8], limits: &Limits) -> Decoded {
        let mut buf = BytesMut::from(input);
        next(&mut Decoder::new(), &mut buf, limits)
    }

    #[test]
    fn large_bodies_are_spilled_to_a_file() {
        use std::io::{Read, Seek};
        let limits = Limits::default().body_buffer(4);
        for input in [
            &b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789GET"[..],
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n012\r\n7\r\n3456789\r\n0\r\n\r\nGET",
        ] {
            // Fed a few bytes at a time: the read buffer never holds the body.
            let mut d = Decoder::new();
            let mut buf = BytesMut::new();
            let mut got = None;
            for piece in input.chunks(3) {
                buf.extend_from_slice(piece);
                match next(&mut d, &mut buf, &limits) {
                    Decoded::Body(body) => got = Some(body),
                    Decoded::NeedMore if d.mid_request() => assert!(buf.len() < 16, "{buf:?}"),
                    Decoded::NeedMore => {}
                    other => panic!("{other:?}"),
                }
            }
            let ReadBody::File(mut spilled) = got.unwrap() else {
                panic!("kept in memory")
            };
            assert_eq!(spilled.len, 10);
            let mut text = String::new();
            spilled.file.rewind().unwrap();
            spilled.file.read_to_string(&mut text).unwrap();
            assert_eq!(text, "0123456789");
            assert_eq!(&buf[..], b"GET");
        }
        // Small bodies stay in memory.
        let small = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nabcd";
        assert!(matches!(
            decode_one_with(small, &limits),
            Decoded::Body(ReadBody::Memory(_))
        ));
    }

    #[test]
    fn a_refused_head_skips_a_body_already_buffered() {
        let limits = Limits::default();
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(
            &b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nabGET / HTTP/1.1\r\nHost: h\r\n\r\n"[..],
        );
        assert!(matches!(d.decode(&mut buf, &limits), Decoded::Head(_)));
        assert!(d.skip_body(&mut buf));
        assert!(matches!(d.decode(&mut buf, &limits), Decoded::Request(..)));
        // Not all there: passed over as it arrives, then decoding goes on.
        let mut buf =
            BytesMut::from(&b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab"[..]);
        assert!(matches!(d.decode(&mut buf, &limits), Decoded::Head(_)));
        assert!(d.skip_body(&mut buf));
        assert!(d.discarding() && d.mid_request());
        assert!(matches!(d.decode(&mut buf, &limits), Decoded::NeedMore));
        buf.extend_from_slice(b"cdGET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(matches!(
            d.decode(&mut buf, &limits),
            Decoded::Discarded(true)
        ));
        assert!(!d.discarding());
        assert!(matches!(d.decode(&mut buf, &limits), Decoded::Request(..)));
    }

    #[test]
    fn a_body_to_pass_over_is_refused_when_it_may_not_come_or_is_large() {
        let limits = Limits::default();
        let refused = |head: &str| {
            let mut d = Decoder::new();
            let mut buf = BytesMut::from(head.as_bytes());
            assert!(matches!(d.decode(&mut buf, &limits), Decoded::Head(_)));
            let skipped = d.skip_body(&mut buf);
            assert!(matches!(d.decode(&mut buf, &limits), Decoded::NeedMore));
            !skipped
        };
        // The client waits for `100 Continue`: its next request could be
        // taken for the body.
        assert!(refused(
            "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        ));
        assert!(refused(&format!(
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
            MAX_DISCARD + 1
        )));
        assert!(!refused(&format!(
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {MAX_DISCARD}\r\n\r\n"
        )));
    }

    #[test]
    fn a_chunked_body_is_passed_over_to_its_end_or_its_limit() {
        let limits = Limits::default();
        let head = &b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"[..];
        let skip = |rest: &[u8]| {
            let mut d = Decoder::new();
            let mut buf = BytesMut::from(head);
            assert!(matches!(d.decode(&mut buf, &limits), Decoded::Head(_)));
            assert!(d.skip_body(&mut buf));
            buf.extend_from_slice(rest);
            let out = d.decode(&mut buf, &limits);
            (out, d, buf)
        };
        let (out, mut d, mut buf) = skip(b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(matches!(out, Decoded::Discarded(true)));
        assert!(matches!(d.decode(&mut buf, &limits), Decoded::Request(..)));
        let (out, ..) = skip(b"3\r\nabc\r\n");
        assert!(matches!(out, Decoded::NeedMore));
        let (out, mut d, mut buf) = skip(b"zz\r\n");
        assert!(matches!(out, Decoded::Discarded(false)));
        assert!(matches!(d.decode(&mut buf, &limits), Decoded::NeedMore));
        let big = format!("{:x}\r\n", MAX_DISCARD + 1);
        let (out, ..) = skip(big.as_bytes());
        assert!(matches!(out, Decoded::Discarded(false)));
        // One byte of data a chunk: the limit counts what is read (six
        // bytes a chunk), not only the data.
        let chunk = "1\r\na\r\n";
        let (out, ..) = skip(chunk.repeat(MAX_DISCARD as usize / 6 + 10).as_bytes());
        assert!(matches!(out, Decoded::Discarded(false)));
        let (out, ..) = skip(chunk.repeat(MAX_DISCARD as usize / 6 - 10).as_bytes());
        assert!(matches!(out, Decoded::NeedMore));
    }
}

#[cfg(test)]
mod plain_tests {
    use super::plain_agrees as agrees;

    #[test]
    fn plain_heads_parse_as_httparse_does() {
        let heads: &[&[u8]] = &[
            b"GET /plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"POST /a?b=c HTTP/1.1\r\nHost: x:80\r\nContent-Length: 5\r\n\r\nhello",
            b"PUT /u HTTP/1.1\r\nhost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, close\r\n\r\n",
            b"GET http://h:8/p HTTP/1.1\r\nHost:  a \t\r\nX-Y:\r\nUpgrade: websocket\r\n\r\n",
            b"GET /%41 HTTP/1.0\r\nConnection: Keep-Alive\r\nContent-Length: 01\r\n\r\nx",
            b"BREW /pot HTTP/1.1\r\nHost: [::1]\r\nHost: b\r\n\r\n",
            b"GET /a/rather/long/path/of/words?and=a&query=too HTTP/1.1\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\tx\r\nHost: example.com:8080\r\nAccept: */*\r\n\r\n",
        ];
        for head in heads {
            assert!(agrees(head, 100), "{:?}", String::from_utf8_lossy(head));
        }
        let bytes = b"\r\n \t:/?%*#0aAzZ~\x7f\x80\xff\x00HTTP/1.1";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut plain, mut runs) = (0, 0);
        for _ in 0..300_000 {
            let mut input = heads[next() as usize % heads.len()].to_vec();
            for _ in 0..1 + next() % 3 {
                let at = next() as usize % (input.len() + 1);
                let b = bytes[next() as usize % bytes.len()];
                match next() % 3 {
                    0 if at < input.len() => input[at] = b,
                    1 if at < input.len() => {
                        input.remove(at);
                    }
                    _ => input.insert(at, b),
                }
            }
            if next() % 2 == 0 {
                // Pipelined: the next request behind it.
                input.extend_from_slice(heads[0]);
            }
            runs += 1;
            if agrees(&input, [0, 1, 2, 3, 100][next() as usize % 5]) {
                plain += 1;
            }
        }
        // Most mutants are still heads for the plain reader to take.
        assert!(plain > runs / 10, "{plain} of {runs}");
    }
}
