//! The response a handler returns, and its body kinds.

use std::cell::OnceCell;
use std::fmt;
use std::fs::File;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use serde::Serialize;

/// An HTTP response: a status, headers and a body.
///
/// tine writes `Date`, `Content-Length` (or `Transfer-Encoding: chunked`
/// for streams) and `Connection` itself; values a handler sets for those
/// names are ignored, except that `Connection: close` closes the
/// connection after the response (and says so).
///
/// ```
/// use tine::{Response, StatusCode};
/// let res = Response::text("created")
///     .with_status(StatusCode::CREATED)
///     .with_header("x-request-id", "7");
/// assert_eq!(res.status(), StatusCode::CREATED);
/// assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
/// assert_eq!(res.body_bytes().unwrap(), "created");
/// ```
pub struct Response {
    pub(crate) status: StatusCode,
    /// The `Content-Type` a constructor set, while nothing else touched
    /// the headers: most responses have no other header, and need no map.
    content_type: Option<&'static KnownType>,
    /// The headers, once anything asks for them as a map (the
    /// `Content-Type` above is then moved into it).
    headers: OnceCell<Box<HeaderMap>>,
    pub(crate) body: Body,
    /// Render this status through the app's error handler (keeping the
    /// headers set here, such as `Allow`).
    pub(crate) error_page: bool,
    /// On a static file's `304`: whether its `200` could be compressed
    /// (for the compression middleware; see `static_files::Outcome`).
    pub(crate) compressible: Option<bool>,
    /// A whole file from [`Response::file`]: the request it answers may
    /// make it a `304`, `412`, `206` or `416` (see
    /// `static_files::answer_file`).
    pub(crate) whole_file: bool,
}

/// What follows the head of a response.
pub(crate) enum Body {
    /// No body (`Content-Length: 0` where a body is allowed).
    Empty,
    /// A body held in memory.
    Full(Bytes),
    /// A body in a `String` or `Vec` of the handler's, kept as it came:
    /// turning a `Vec` whose capacity exceeds its length into `Bytes`
    /// allocates (a shared header), and a small body is copied behind its
    /// head anyway.
    Vec(Vec<u8>),
    /// A body produced piece by piece, pulled only when the socket can take
    /// more, sent with chunked transfer coding.
    Stream(Chunks),
    /// A region of a file, sent with `sendfile(2)`.
    File(FileBody),
    /// A server-sent event stream: after the head, the connection becomes
    /// an event stream fed by publish/subscribe.
    Sse(Box<crate::sse::SseSession>),
}

/// The producer of a streamed body, and how its chunks are written.
pub(crate) struct Chunks {
    pub(crate) iter: Box<dyn Iterator<Item = Bytes>>,
    /// The producer's chunks are always ready at once (in memory, or
    /// computed without waiting): gather them into writes of up to 64 KiB.
    /// Otherwise each chunk is written before the next is pulled, so a
    /// producer that waits (for a database, a timer, another service)
    /// does not hold back what it already produced.
    pub(crate) batched: bool,
}

impl Chunks {
    pub(crate) fn new(iter: Box<dyn Iterator<Item = Bytes>>, batched: bool) -> Self {
        Chunks { iter, batched }
    }
}

/// What [`fill_stream`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fill {
    /// The batch is full; the stream has more.
    More,
    /// The stream ended; its end (the last chunk) is written.
    Done,
    /// The iterator panicked (logged once): the response must be cut off,
    /// without its end, so the client sees a truncated message rather
    /// than a complete one.
    Aborted,
}

/// Pulls chunks from a [`Response::stream`] body into `out`, with chunked
/// framing if `chunked` (else raw bytes, for a body delimited by the
/// connection's close): one chunk, so the caller writes it before the
/// producer is asked for the next, or, for a [batched](Chunks::batched)
/// producer, until `out` holds `batch` bytes or the stream ends.
///
/// The iterator is application code running after the handler returned,
/// so it runs inside the panic boundary: one boundary per call (not per
/// chunk), no allocation.
pub(crate) fn fill_stream(
    chunks: &mut Chunks,
    chunked: bool,
    out: &mut Vec<u8>,
    batch: usize,
) -> Fill {
    use super::encode::{encode_chunk, LAST_CHUNK};
    let Chunks { iter, batched } = chunks;
    let limit = if *batched { batch } else { 1 };
    let board = crate::server::scoreboard::mine();
    let filled = crate::handler::catch_in(&crate::handler::STREAM, || {
        while out.len() < limit {
            // Each chunk pulled is the app's code running: progress for
            // the watchdog, so a stream of slow chunks that the client
            // takes as fast as they come is not a stuck worker.
            if let Some(e) = board {
                e.progress();
            }
            match iter.next() {
                Some(chunk) if chunked => encode_chunk(out, &chunk),
                Some(chunk) => out.extend_from_slice(&chunk),
                None => {
                    if chunked {
                        out.extend_from_slice(LAST_CHUNK);
                    }
                    return Fill::Done;
                }
            }
        }
        Fill::More
    });
    filled.unwrap_or(Fill::Aborted)
}

/// A body from anything that converts into `Bytes`: a `String` or a
/// `Vec<u8>` is kept as it is (see [`Body::Vec`]), the rest converted.
fn body_of<B: Into<Bytes> + 'static>(body: B) -> Body {
    let mut body = Some(body);
    let any = &mut body as &mut dyn std::any::Any;
    if let Some(s) = any.downcast_mut::<Option<String>>() {
        return Body::Vec(s.take().unwrap_or_default().into_bytes());
    }
    if let Some(v) = any.downcast_mut::<Option<Vec<u8>>>() {
        return Body::Vec(v.take().unwrap_or_default());
    }
    match body {
        Some(body) => Body::Full(body.into()),
        None => Body::Empty,
    }
}

/// A region of an open file sent as a body.
#[derive(Debug)]
pub(crate) struct FileBody {
    /// Shared with the static-file cache when it is on.
    pub(crate) file: std::rc::Rc<File>,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

/// A content type that a constructor sets, with its header line as the
/// encoder writes it: the common response's headers are one copy.
pub(crate) struct KnownType {
    value: HeaderValue,
    /// `\r\ncontent-type: VALUE\r\n\r\n`: the end of the head.
    pub(crate) line: KnownLine,
}

/// A head's last line, padded to a fixed size: the encoder copies all
/// [`KnownLine::SIZE`] bytes and cuts the padding off again, a few moves,
/// where copying a length known only at run time is a call to `memcpy`
/// (about 10 instructions more a response, callgrind).
pub(crate) struct KnownLine {
    pub(crate) padded: [u8; KnownLine::SIZE],
    pub(crate) len: usize,
}

impl KnownLine {
    /// Room for the longest line (`text/plain; charset=utf-8`'s, 45
    /// bytes); a longer one fails to compile.
    pub(crate) const SIZE: usize = 48;

    const fn new(line: &[u8]) -> KnownLine {
        let mut padded = [0; KnownLine::SIZE];
        let mut i = 0;
        while i < line.len() {
            padded[i] = line[i];
            i += 1;
        }
        KnownLine {
            padded,
            len: line.len(),
        }
    }
}

macro_rules! known_type {
    ($name:ident, $value:literal) => {
        static $name: KnownType = KnownType {
            value: HeaderValue::from_static($value),
            line: KnownLine::new(concat!("\r\ncontent-type: ", $value, "\r\n\r\n").as_bytes()),
        };
    };
}

known_type!(TEXT, "text/plain; charset=utf-8");
known_type!(HTML, "text/html; charset=utf-8");
known_type!(JSON, "application/json");
known_type!(OCTETS, "application/octet-stream");

/// How the headers of a response go on the wire (see
/// [`Response::fields`]).
pub(crate) enum Fields<'a> {
    /// No header but tine's own.
    None,
    /// Only a constructor's content type: its line, with the head's end.
    Known(&'static KnownLine),
    /// A map, written field by field.
    Map(&'a HeaderMap),
}

/// Adds a field as [`Response::with_header`] does: appended, or in place
/// of the one there for a field a response has at most once.
pub(crate) fn add_header(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    if SINGLETONS.contains(&name) {
        headers.insert(name, value);
    } else {
        headers.append(name, value);
    }
}

/// The fields [`Response::with_header`] replaces rather than appends.
const SINGLETONS: [HeaderName; 8] = [
    header::CONTENT_TYPE,
    header::ETAG,
    header::LAST_MODIFIED,
    header::LOCATION,
    header::CONTENT_DISPOSITION,
    header::CONTENT_RANGE,
    header::EXPIRES,
    header::RETRY_AFTER,
];

/// A signed or private cookie's attributes that its maker left unset, as
/// a session cookie has them: `Path=/`, `HttpOnly`, `SameSite=Lax`.
fn session_defaults(mut cookie: cookie::Cookie<'static>) -> cookie::Cookie<'static> {
    if cookie.path().is_none() {
        cookie.set_path("/");
    }
    if cookie.http_only().is_none() {
        cookie.set_http_only(true);
    }
    if cookie.same_site().is_none() {
        cookie.set_same_site(cookie::SameSite::Lax);
    }
    cookie
}

impl Response {
    /// An empty response with `status`.
    pub fn empty(status: StatusCode) -> Self {
        Response {
            status,
            content_type: None,
            headers: OnceCell::new(),
            body: Body::Empty,
            error_page: false,
            compressible: None,
            whole_file: false,
        }
    }

    /// An error page: the status is rendered by the app's error handler
    /// ([`App::errors`](crate::App::errors)), like the errors tine
    /// generates itself, whether a handler or a before-hook returns it,
    /// on HTTP and WebSocket routes alike. Headers set on it are kept.
    /// (A response with a body of your own, such as
    /// `Response::text("gone").with_status(StatusCode::GONE)`, is sent as
    /// it is.)
    ///
    /// ```
    /// use tine::{App, Method, Request, Response, StatusCode};
    /// let app = App::new()
    ///     .get("/gone", |_: &Request| Response::error(StatusCode::GONE))
    ///     .errors(|_, status| Response::text(format!("custom {}", status.as_u16())));
    /// let mut req = Request::builder(Method::GET, "/gone").finish();
    /// assert_eq!(app.handle(&mut req).body_bytes().unwrap(), "custom 410");
    /// ```
    pub fn error(status: StatusCode) -> Self {
        let mut res = Response::empty(status);
        res.error_page = true;
        res
    }

    fn with_body(content_type: &'static KnownType, body: Body) -> Self {
        Response {
            status: StatusCode::OK,
            content_type: Some(content_type),
            headers: OnceCell::new(),
            body,
            error_page: false,
            compressible: None,
            whole_file: false,
        }
    }

    /// `200` with a `text/plain; charset=utf-8` body. A `&'static str` is
    /// not copied; a `String` is sent from where it is.
    pub fn text(body: impl Into<Bytes> + 'static) -> Self {
        Self::with_body(&TEXT, body_of(body))
    }

    /// `200` with a `text/html; charset=utf-8` body.
    pub fn html(body: impl Into<Bytes> + 'static) -> Self {
        Self::with_body(&HTML, body_of(body))
    }

    /// `200` with `value` serialized as JSON. If serialization fails (a map
    /// with non-string keys, say) the answer is a `500` error page
    /// (rendered by the app's `errors` handler) and the error is logged.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::with_body(&JSON, Body::Vec(body)),
            Err(e) => {
                log::error!("Response::json: cannot serialize the value: {e}");
                Response::error(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    /// `200` with raw bytes, `application/octet-stream` unless a
    /// `Content-Type` is set afterwards.
    pub fn bytes(body: impl Into<Bytes> + 'static) -> Self {
        Self::with_body(&OCTETS, body_of(body))
    }

    /// `404 Not Found`: an error page like [`Response::error`], rendered by
    /// the app's error handler (its short text body is what you see when
    /// the response is used without an app).
    ///
    /// ```
    /// use tine::{App, Method, Request, Response};
    /// let app = App::new()
    ///     .get("/x", |_: &Request| Response::not_found())
    ///     .errors(|_, status| Response::text(format!("custom {}", status.as_u16())));
    /// let mut req = Request::builder(Method::GET, "/x").finish();
    /// assert_eq!(app.handle(&mut req).body_bytes().unwrap(), "custom 404");
    /// ```
    pub fn not_found() -> Self {
        Self::error_page_with(StatusCode::NOT_FOUND, "Not Found")
    }

    /// `400 Bad Request`: an error page like [`Response::error`], rendered
    /// by the app's error handler.
    pub fn bad_request() -> Self {
        Self::error_page_with(StatusCode::BAD_REQUEST, "Bad Request")
    }

    fn error_page_with(status: StatusCode, text: &'static str) -> Self {
        let mut res = Response::text(text).with_status(status);
        res.error_page = true;
        res
    }

    /// `302 Found` to `location`.
    ///
    /// ```
    /// let res = tine::Response::redirect("/login");
    /// assert_eq!(res.status(), 302);
    /// assert_eq!(res.headers()["location"], "/login");
    /// ```
    #[track_caller]
    pub fn redirect(location: &str) -> Self {
        Self::redirect_with(StatusCode::FOUND, location)
    }

    /// A redirect with a chosen status: 301, 303, 307 or 308 (or 302).
    /// Panics if `location` is not a valid header value.
    #[track_caller]
    pub fn redirect_with(status: StatusCode, location: &str) -> Self {
        Response::empty(status).with_header(header::LOCATION, location)
    }

    /// A body streamed from an iterator with chunked transfer coding. The
    /// iterator is pulled only when the socket accepts more data, so a slow
    /// client holds back the producer instead of filling memory.
    ///
    /// Each chunk is written as soon as it is produced, before the next one
    /// is asked for: a producer that takes its time (a query per page, a
    /// report computed row by row) delivers its first chunks while it works
    /// on the rest. That costs one write per chunk; a producer whose chunks
    /// are always ready at once, or that yields many small ones, is better
    /// served by [`stream_batched`](Self::stream_batched).
    ///
    /// The iterator runs on the worker's event loop: while `next` waits,
    /// the worker serves nobody else. For events that arrive over time
    /// (notifications, progress), use server-sent events
    /// ([`App::sse`](crate::App::sse)), which need no waiting producer.
    ///
    /// ```
    /// let res = tine::Response::stream((0..3).map(|i| format!("line {i}\n")));
    /// assert!(res.body_bytes().is_none()); // not in memory
    /// ```
    pub fn stream<I, B>(chunks: I) -> Self
    where
        I: IntoIterator<Item = B>,
        I::IntoIter: 'static,
        B: Into<Bytes> + 'static,
    {
        Self::stream_with(chunks, false)
    }

    /// Like [`stream`](Self::stream), for a producer whose chunks are
    /// always ready at once: chunks are gathered into writes of up to
    /// 64 KiB instead of one write each, which is much cheaper for many
    /// small chunks (see `docs/streaming.md`). A producer that waits would
    /// hold back everything gathered so far, so use this only when `next`
    /// never waits.
    ///
    /// ```
    /// let rows = (0..1000).map(|i| format!("{i},{}\n", i * i));
    /// let res = tine::Response::stream_batched(rows).with_header("content-type", "text/csv");
    /// assert!(res.body_bytes().is_none());
    /// ```
    pub fn stream_batched<I, B>(chunks: I) -> Self
    where
        I: IntoIterator<Item = B>,
        I::IntoIter: 'static,
        B: Into<Bytes> + 'static,
    {
        Self::stream_with(chunks, true)
    }

    fn stream_with<I, B>(chunks: I, batched: bool) -> Self
    where
        I: IntoIterator<Item = B>,
        I::IntoIter: 'static,
        B: Into<Bytes> + 'static,
    {
        let mut res = Response::empty(StatusCode::OK);
        res.content_type = Some(&OCTETS);
        let iter = chunks
            .into_iter()
            .map(Into::into)
            .filter(|b: &Bytes| !b.is_empty());
        res.body = Body::Stream(Chunks::new(Box::new(iter), batched));
        res
    }

    /// A body sent with chunked transfer coding from chunks already in
    /// memory (gathered into large writes, like
    /// [`stream_batched`](Self::stream_batched)).
    pub fn chunked<B: Into<Bytes> + 'static>(chunks: Vec<B>) -> Self {
        Self::stream_batched(chunks)
    }

    /// Replaces the status. A final answer's status is 200 to 599: an
    /// answer with a `1xx` (tine sends `100 Continue` and an upgrade's
    /// `101` itself) or a code past 599 is sent as a `500`, and logged. A
    /// `204` or `304` carries no content, a `205` a `Content-Length: 0`,
    /// whatever the body.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Appends a header (several values of one name are allowed), except
    /// the fields a response has at most once (`Content-Type`, `ETag`,
    /// `Last-Modified`, `Location`, `Content-Disposition`, `Content-Range`,
    /// `Expires`, `Retry-After`), which replace the one already there: the
    /// type the constructor set (`Response::text`'s `text/plain`, a
    /// stream's `application/octet-stream`), the validators of a
    /// [`Response::file`]. Two such fields would contradict each other
    /// (RFC 9110 §5.3). Panics, pointing at the caller, if the name or
    /// value is invalid; a panic in a handler becomes a `500`.
    ///
    /// ```
    /// let res = tine::Response::stream(["a,b\n"]).with_header("content-type", "text/csv");
    /// let types: Vec<_> = res.headers().get_all("content-type").iter().collect();
    /// assert_eq!(types, ["text/csv"]);
    /// let res = tine::Response::text("v2").with_header("etag", "\"1\"").with_header("etag", "\"2\"");
    /// let tags: Vec<_> = res.headers().get_all("etag").iter().collect();
    /// assert_eq!(tags, ["\"2\""]);
    /// let res = res.with_header("vary", "Accept").with_header("vary", "Cookie");
    /// assert_eq!(res.headers().get_all("vary").iter().count(), 2);
    /// ```
    #[track_caller]
    pub fn with_header<K, V>(mut self, name: K, value: V) -> Self
    where
        K: TryInto<HeaderName>,
        K::Error: fmt::Debug,
        V: TryInto<HeaderValue>,
        V::Error: fmt::Debug,
    {
        let name = name.try_into().expect("invalid header name");
        let value = value.try_into().expect("invalid header value");
        add_header(self.headers_mut(), name, value);
        self
    }

    /// Adds a `Set-Cookie` header for a cookie built with the `cookie`
    /// crate (re-exported as [`tine::cookie`](crate::cookie)).
    ///
    /// The value is percent-encoded where it needs to be; a name that is a
    /// token (RFC 6265's cookie-name) is written as it is, since browsers
    /// send it back unchanged and [`Request::cookie`](crate::Request::cookie)
    /// reads names as sent.
    ///
    /// ```
    /// use tine::cookie::Cookie;
    /// let res = tine::Response::text("hi").set_cookie(Cookie::build(("theme", "dark")).path("/").build());
    /// assert_eq!(res.headers()["set-cookie"], "theme=dark; Path=/");
    /// let res = tine::Response::text("hi").set_cookie(Cookie::new("a#b", "x y"));
    /// assert_eq!(res.headers()["set-cookie"], "a#b=x%20y");
    /// ```
    pub fn set_cookie(self, cookie: cookie::Cookie<'_>) -> Self {
        let encoded = cookie.encoded().to_string();
        let name = cookie.name();
        let token = !name.is_empty() && name.bytes().all(super::parse::is_token);
        // The `cookie` crate encodes the name too (`a#b` as `a%23b`), which
        // no browser decodes: the cookie would never be found by its name.
        let value = match encoded.find('=') {
            Some(i) if token => format!("{name}{}", &encoded[i..]),
            _ => encoded,
        };
        self.with_header(header::SET_COOKIE, value)
    }

    /// Adds a `Set-Cookie` header for `cookie` signed with the app's key
    /// ([`App::cookie_key`](crate::App::cookie_key)): the client can read
    /// the value but not change it; read it back with
    /// [`Request::signed_cookie`](crate::Request::signed_cookie). `req` is
    /// the request being answered (it carries the app's keys). The
    /// cookie's attributes (`Path`, `HttpOnly`, `Max-Age`, ...) are kept;
    /// those it leaves unset get a session cookie's: `Path=/` (the
    /// browser's default, the request's directory, would hide a cookie
    /// set by `POST /auth/login` from `/api`, and
    /// [`remove_cookie`](Self::remove_cookie) could not remove it),
    /// `HttpOnly` and `SameSite=Lax`. Set them on the cookie to choose
    /// otherwise (`.http_only(false)` for a value scripts must read).
    ///
    /// Panics (a 500, logged) in an app without a cookie key.
    ///
    /// ```
    /// use tine::cookie::{Cookie, Key};
    /// use tine::{test::TestClient, App, Request, Response};
    /// let app = App::new().cookie_key(Key::generate()).get("/", |req: &Request| {
    ///     let cookie = Cookie::build(("user", "ada")).path("/").http_only(true).build();
    ///     Response::text("hi").set_signed_cookie(req, cookie)
    /// });
    /// let res = TestClient::new(app).get("/").send();
    /// let set = res.cookie("user").unwrap();
    /// assert!(set.value().ends_with("ada") && set.value() != "ada"); // signature, then the value
    /// assert_eq!(set.path(), Some("/"));
    /// ```
    #[track_caller]
    pub fn set_signed_cookie(self, req: &crate::Request, cookie: cookie::Cookie<'_>) -> Self {
        let cookie = session_defaults(cookie.into_owned());
        let sealed = super::cookies::keys(req).seal(super::cookies::Kind::Signed, cookie);
        self.set_cookie(sealed)
    }

    /// Adds a `Set-Cookie` header for `cookie` encrypted with the app's key
    /// ([`App::cookie_key`](crate::App::cookie_key)): the client can
    /// neither read nor change the value; read it back with
    /// [`Request::private_cookie`](crate::Request::private_cookie).
    /// Attributes it leaves unset get `Path=/`, `HttpOnly` and
    /// `SameSite=Lax`, as for [`set_signed_cookie`](Self::set_signed_cookie).
    ///
    /// Panics (a 500, logged) in an app without a cookie key.
    ///
    /// ```
    /// use tine::cookie::{Cookie, Key};
    /// use tine::{test::TestClient, App, Request, Response};
    /// let app = App::new().cookie_key(Key::generate()).get("/", |req: &Request| {
    ///     Response::text("hi").set_private_cookie(req, Cookie::new("sid", "s3cret"))
    /// });
    /// let res = TestClient::new(app).get("/").send();
    /// assert!(!res.cookie("sid").unwrap().value().contains("s3cret"));
    /// ```
    #[track_caller]
    pub fn set_private_cookie(self, req: &crate::Request, cookie: cookie::Cookie<'_>) -> Self {
        let cookie = session_defaults(cookie.into_owned());
        let sealed = super::cookies::keys(req).seal(super::cookies::Kind::Private, cookie);
        self.set_cookie(sealed)
    }

    /// Tells the client to forget the cookie `name` (an expired, empty
    /// `Set-Cookie` with `Path=/`): log-out. For a cookie set with another
    /// path or a domain, use [`set_cookie`](Self::set_cookie) with
    /// `Cookie::build(..).removal()` and the same attributes.
    ///
    /// ```
    /// let res = tine::Response::text("bye").remove_cookie("sid");
    /// let set = res.headers()["set-cookie"].to_str().unwrap();
    /// assert!(set.starts_with("sid=; ") && set.contains("Max-Age=0"), "{set}");
    /// ```
    pub fn remove_cookie(self, name: &str) -> Self {
        let cookie = cookie::Cookie::build(name.to_string())
            .path("/")
            .removal()
            .build();
        self.set_cookie(cookie)
    }

    /// Sets a simple session-style cookie: `Path=/; HttpOnly; SameSite=Lax`.
    ///
    /// ```
    /// let res = tine::Response::text("hi").simple_cookie("sid", "abc");
    /// assert_eq!(res.headers()["set-cookie"], "sid=abc; HttpOnly; SameSite=Lax; Path=/");
    /// ```
    pub fn simple_cookie(self, name: &str, value: &str) -> Self {
        let cookie = cookie::Cookie::build((name.to_string(), value.to_string()))
            .path("/")
            .http_only(true)
            .same_site(cookie::SameSite::Lax)
            .build();
        self.set_cookie(cookie)
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers set so far (tine adds `Date`, `Content-Length` and
    /// `Connection` when it sends the response).
    pub fn headers(&self) -> &HeaderMap {
        self.headers.get_or_init(|| Self::map_of(self.content_type))
    }

    /// Mutable access to the headers.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        if self.headers.get().is_none() {
            let map = Self::map_of(self.content_type.take());
            self.headers = OnceCell::from(map);
        } else {
            // The content type moved into the map when it was made.
            self.content_type = None;
        }
        self.headers.get_mut().expect("just set")
    }

    /// Replaces every header.
    pub(crate) fn set_headers(&mut self, headers: HeaderMap) {
        self.content_type = None;
        self.headers = OnceCell::from(Box::new(headers));
    }

    /// Calls `f` with each header, in order, without building a map.
    #[inline]
    pub(crate) fn each_header(&self, mut f: impl FnMut(&HeaderName, &HeaderValue)) {
        match self.headers.get() {
            Some(map) => map.iter().for_each(|(k, v)| f(k, v)),
            None => {
                if let Some(ct) = self.content_type {
                    f(&header::CONTENT_TYPE, &ct.value);
                }
            }
        }
    }

    /// Whether the handler set `Connection: close`: the connection closes
    /// after this response (the field itself is framing, which tine
    /// writes).
    #[inline]
    pub(crate) fn asks_to_close(&self) -> bool {
        self.headers
            .get()
            .is_some_and(|map| map.contains_key(header::CONNECTION) && Self::close_listed(map))
    }

    #[cold]
    fn close_listed(map: &HeaderMap) -> bool {
        map.get_all(header::CONNECTION).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
        })
    }

    /// The headers as the encoder writes them.
    #[inline]
    pub(crate) fn fields(&self) -> Fields<'_> {
        match (self.headers.get(), self.content_type) {
            (Some(map), _) => Fields::Map(map),
            (None, Some(ct)) => Fields::Known(&ct.line),
            (None, None) => Fields::None,
        }
    }

    #[cold]
    fn map_of(content_type: Option<&'static KnownType>) -> Box<HeaderMap> {
        let mut map = HeaderMap::new();
        if let Some(ct) = content_type {
            map.insert(header::CONTENT_TYPE, ct.value.clone());
        }
        Box::new(map)
    }

    /// The body, when it is held in memory (`None` for streams and files).
    pub fn body_bytes(&self) -> Option<Bytes> {
        match &self.body {
            Body::Empty => Some(Bytes::new()),
            Body::Full(b) => Some(b.clone()),
            Body::Vec(v) => Some(Bytes::copy_from_slice(v)),
            Body::Stream(_) | Body::File(_) | Body::Sse(_) => None,
        }
    }

    /// A file from disk, sent with `sendfile(2)` (zero copy) and a
    /// `Content-Type` guessed from its extension. A missing or unreadable
    /// file is a `404` rendered by the app's error handler.
    ///
    /// It answers as [`App::static_dir`](crate::App::static_dir)'s files
    /// do: with an `ETag` and a `Last-Modified` from the file, and
    /// `Accept-Ranges: bytes`, so a conditional request gets `304` (or
    /// `412`) and a `Range` a `206` (or `416`): downloads resume, and
    /// browsers can seek in a video sent this way. Set another `ETag` or
    /// `Last-Modified` on it and those are the ones compared; remove both
    /// and only the range applies. (This happens after the handler, for
    /// `GET` and `HEAD` answered `200`; the after-hooks see the result.)
    ///
    /// ```no_run
    /// use tine::{App, Request, Response};
    /// let app = App::new().get("/report", |_: &Request| Response::file("/var/reports/latest.pdf"));
    /// ```
    pub fn file(path: impl AsRef<std::path::Path>) -> Self {
        let path = path.as_ref();
        // Not blocking, as the static files open theirs: opening a FIFO
        // with no writer would wait for one, and the worker with it.
        let flags = rustix::fs::OFlags::RDONLY
            | rustix::fs::OFlags::CLOEXEC
            | rustix::fs::OFlags::NONBLOCK
            | rustix::fs::OFlags::NOCTTY;
        let opened = rustix::fs::open(path, flags, rustix::fs::Mode::empty())
            .map(File::from)
            .map_err(std::io::Error::from)
            .and_then(|f| {
                let meta = f.metadata()?;
                if meta.is_file() {
                    Ok((f, meta))
                } else {
                    Err(std::io::ErrorKind::NotFound.into())
                }
            });
        match opened {
            Ok((file, meta)) => {
                let len = meta.len();
                let mime = mime_guess::from_path(path).first_or_octet_stream();
                let ct = if mime.type_() == mime_guess::mime::TEXT {
                    format!("{mime}; charset=utf-8")
                } else {
                    mime.to_string()
                };
                let (etag, last_modified) = crate::static_files::file_validators(&meta);
                let mut res = Response::from_file(std::rc::Rc::new(file), 0, len);
                let headers = res.headers_mut();
                if let Ok(v) = HeaderValue::from_str(&ct) {
                    headers.insert(header::CONTENT_TYPE, v);
                }
                headers.insert(header::ETAG, etag);
                if let Some(date) = last_modified {
                    headers.insert(header::LAST_MODIFIED, date);
                }
                headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                res.whole_file = true;
                res
            }
            Err(e) => {
                log::debug!("Response::file({}): {e}", path.display());
                Response::error(StatusCode::NOT_FOUND)
            }
        }
    }

    pub(crate) fn from_file(file: std::rc::Rc<File>, offset: u64, len: u64) -> Self {
        let mut res = Response::empty(StatusCode::OK);
        res.body = Body::File(FileBody { file, offset, len });
        res
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = match &self.body {
            Body::Empty => "empty".to_string(),
            Body::Full(b) => format!("{} bytes", b.len()),
            Body::Vec(v) => format!("{} bytes", v.len()),
            Body::Stream(_) => "stream".to_string(),
            Body::File(fb) => format!("file, {} bytes", fb.len),
            Body::Sse(_) => "event stream".to_string(),
        };
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", self.headers())
            .field("body", &body)
            .finish()
    }
}

/// Anything a handler may return.
///
/// Implemented for [`Response`], [`Error`](crate::Error), [`StatusCode`],
/// text (`&'static str`, `String`: `200 text/plain`), `(StatusCode, T)`
/// and `Result<T, E>` where both sides convert, so handlers can use `?`.
///
/// ```
/// use tine::{IntoResponse, Request, Response, StatusCode};
/// fn create(req: &Request) -> Result<Response, tine::Error> {
///     let name: String = req.json()?;
///     Ok(Response::text(format!("hi {name}")).with_status(StatusCode::CREATED))
/// }
/// let req = Request::builder(tine::Method::POST, "/").body("\"x\"").finish();
/// assert_eq!(create(&req).into_response().status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
/// ```
pub trait IntoResponse {
    /// Converts into a response.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for crate::Error {
    fn into_response(self) -> Response {
        self.into()
    }
}

impl IntoResponse for StatusCode {
    fn into_response(self) -> Response {
        Response::empty(self)
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl<T: IntoResponse> IntoResponse for (StatusCode, T) {
    fn into_response(self) -> Response {
        self.1.into_response().with_status(self.0)
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(t) => t.into_response(),
            Err(e) => e.into_response(),
        }
    }
}
