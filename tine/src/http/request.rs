//! The request a handler sees.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::fmt;
use std::mem::ManuallyDrop;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, StatusCode, Version};
use percent_encoding::percent_decode_str;
use serde::de::DeserializeOwned;
use smallvec::SmallVec;

use crate::error::Error;

/// An HTTP request, fully read (head and body) before the handler runs.
///
/// Handlers get `&Request`; before-hooks get `&mut Request` and may add
/// [`extensions`](Request::extensions_mut). Header names are
/// case-insensitive (they are [`http::HeaderName`]s).
///
/// ```
/// use tine::{Method, Request};
/// let req = Request::builder(Method::POST, "/users/42?page=2&q=a+b")
///     .header("content-type", "application/json")
///     .body(r#"{"name":"ada"}"#)
///     .finish();
/// assert_eq!(req.path(), "/users/42");
/// assert_eq!(req.query_param("q").as_deref(), Some("a b"));
/// assert_eq!(req.body(), br#"{"name":"ada"}"#);
/// ```
pub struct Request {
    method: Method,
    /// The percent-decoded path when it differs from the raw one.
    decoded_path: Option<Box<str>>,
    /// The path's escapes are not UTF-8: it stays undecoded.
    undecodable: bool,
    version: Version,
    /// The header map, built from the header lines on the first call to
    /// [`headers`](Request::headers): most requests never need one, and
    /// building it (hashing every name, two allocations) used to be the
    /// largest single cost of a small request.
    headers: OnceCell<Box<HeaderMap>>,
    /// A header named `Upgrade` was sent (checked on every request when the
    /// app has WebSocket routes).
    upgrade: bool,
    body: Bytes,
    /// The path captures, and the head they point into: the head as
    /// received, a slice of the read buffer, with the target (path, then
    /// `?` and the query if any; a fragment is cut off) and the header
    /// lines (validated by the parser), each `name: value` ending in CRLF
    /// or LF, up to the blank line; no header lines for a request built by
    /// hand (whose map is then set). Kept once, in the captures, where
    /// [`Request::params`] hands it out: a second handle in the request
    /// would cost every request a reference count and every idle
    /// WebSocket 48 bytes.
    params: Params,
    peer: SocketAddr,
    extensions: Extensions,
    state: Option<Rc<Extensions>>,
    /// It arrived over TLS.
    https: bool,
    /// The before-hooks ran when the head was admitted.
    hooks_done: bool,
    /// The body, when it was written to a temporary file instead of
    /// `body` (see [`Limits::body_buffer`](crate::Limits::body_buffer)).
    spilled: Option<Box<super::body::SpilledBody>>,
    /// The request's id, when the app keeps an access log (see
    /// [`Request::request_id`]). Boxed: a request lives on in every
    /// WebSocket session, and one allocation is still far cheaper than
    /// an entry in `extensions` (a hash map).
    pub(crate) id: Option<Box<HeaderValue>>,
}

/// A request head as the parser left it: a slice of the read buffer,
/// checked, nothing copied or hashed yet.
#[derive(Debug)]
pub(crate) struct RawHead {
    pub(crate) method: Method,
    pub(crate) version: Version,
    /// The target in origin form (path, `?query`), fragment cut off, and
    /// the header lines, valid fields as `httparse` checked them.
    pub(crate) head: HeadBytes,
    /// The path has percent-escapes (to decode).
    pub(crate) escaped: bool,
    /// A header named `Upgrade` is among them.
    pub(crate) upgrade: bool,
}

/// The bytes of a request head, with where its request-target and its
/// header lines are in them: one shared buffer (a slice of the read
/// buffer, no copy) for both.
///
/// The target is held as text without `http::uri::PathAndQuery`, whose
/// constructor scans every byte again (after `httparse` did) and which
/// took a second reference on the buffer (two atomic updates more per
/// request, with the header lines' own). [`HeadBytes::new`] scans the
/// target once, with a table, to find the query and refuse what
/// `PathAndQuery` refuses, and that scan is also what proves the target
/// is UTF-8 (all ASCII; a target with other bytes is checked by
/// `str::from_utf8` on a cold path), so it can be read as `&str` later
/// without checking again.
#[derive(Clone, Default)]
pub(crate) struct HeadBytes {
    bytes: Bytes,
    /// `bytes[start..end]` is the target, valid UTF-8 (see `new`, the
    /// only constructor besides `Default`'s empty head, whose empty
    /// ranges are UTF-8 too: nothing else sets these fields, and `Bytes`
    /// never changes what it holds).
    start: u32,
    /// The path is `bytes[start..query]`; the query, if any, is
    /// `bytes[query + 1..end]` (`bytes[query]` is its `?`).
    query: u32,
    end: u32,
    /// The header lines are `bytes[lines..]`.
    lines: u32,
}

/// Whether every byte of `bytes` is marked 1 in `table`: one lookup a
/// byte, four at a time without a branch each (chunks of a known length:
/// no bounds check a byte).
#[inline(always)]
pub(crate) fn all_in(table: &[u8; 256], bytes: &[u8]) -> bool {
    let mut ok = 1;
    let quads = bytes.chunks_exact(4);
    for rest in quads.remainder() {
        ok &= table[*rest as usize];
    }
    for q in quads {
        ok &= table[q[0] as usize]
            & table[q[1] as usize]
            & table[q[2] as usize]
            & table[q[3] as usize];
    }
    ok == 1
}

/// A path with percent-escapes, decoded (when that changes it), and
/// whether its escapes are not UTF-8 (then it stays undecoded).
#[cold]
fn decode_path(path: &str) -> (Option<Box<str>>, bool) {
    match percent_decode_str(path).decode_utf8() {
        Ok(Cow::Borrowed(_)) => (None, false),
        Ok(Cow::Owned(s)) => (Some(s.into_boxed_str()), false),
        Err(_) => (None, true),
    }
}

/// A request-target [`HeadBytes::new`] refused.
#[derive(Debug)]
struct InvalidTarget;

/// The longest target `http::uri::PathAndQuery` accepts: kept, so that
/// what was refused before is refused still.
const MAX_TARGET: usize = u16::MAX as usize - 1;

/// Bytes of a target that need no second look: visible ASCII but `?`
/// (the query starts), `#` (a fragment starts), `%` (an escape: the path
/// must be decoded), and `<`, `>` and `` ` ``, which `http`'s URI parser
/// refuses in a path (RFC 3986 has them percent-encoded; `"`, `{`, `}`,
/// which it accepts, are plain). Bytes over 127 are not plain either:
/// then the target's UTF-8 is checked.
static PLAIN: [u8; 256] = {
    let mut t = [0; 256];
    let mut b = 0x21;
    while b < 0x7f {
        t[b] = !matches!(b as u8, b'?' | b'#' | b'%' | b'<' | b'>' | b'`') as u8;
        b += 1;
    }
    t
};

/// What [`scan_target`] found.
struct Scanned {
    /// Where the query's `?` is (or the end).
    query: usize,
    /// Where the target ends (a fragment is cut off).
    end: usize,
    /// The path has a `%`.
    escaped: bool,
}

/// Finds the query and a fragment in a target and refuses the bytes that
/// `PathAndQuery` refuses. The common target (plain ASCII, no query, no
/// escape) costs one table lookup a byte, four at a time without a
/// branch each.
#[inline]
fn scan_target(target: &[u8]) -> Result<Scanned, InvalidTarget> {
    let n = target.len();
    if all_in(&PLAIN, target) && n <= MAX_TARGET {
        return Ok(Scanned {
            query: n,
            end: n,
            escaped: false,
        });
    }
    scan_target_slow(target)
}

/// [`scan_target`] for a target with a query, an escape, a fragment,
/// bytes over 127, or one to refuse. The classes are `http` 1.x's
/// (`uri/path.rs`): in the path, visible ASCII but `<`, `>`, `` ` ``;
/// in the query, visible ASCII but `"`, `<`, `>`; `#` starts a fragment
/// in both; bytes over 127 must be UTF-8.
#[cold]
#[inline(never)]
fn scan_target_slow(target: &[u8]) -> Result<Scanned, InvalidTarget> {
    if target.is_empty() || target.len() > MAX_TARGET {
        return Err(InvalidTarget);
    }
    let mut query = None;
    let mut end = target.len();
    let mut escaped = false;
    let mut high = false;
    for (i, &b) in target.iter().enumerate() {
        match (b, query.is_some()) {
            (b'#', _) => {
                end = i;
                break;
            }
            (b'?', false) => query = Some(i),
            (b'%', false) => escaped = true,
            (b'<' | b'>' | b'`', false) | (b'"' | b'<' | b'>', true) => return Err(InvalidTarget),
            (0x80.., _) => high = true,
            (0x21..=0x7e, _) => {}
            _ => return Err(InvalidTarget),
        }
    }
    if high && std::str::from_utf8(&target[..end]).is_err() {
        return Err(InvalidTarget);
    }
    Ok(Scanned {
        query: query.unwrap_or(end),
        end,
        escaped,
    })
}

impl HeadBytes {
    /// The head in `bytes`, its target at `target` and its header lines
    /// from `lines` on; the target is scanned (see [`scan_target`]).
    /// Returns whether the path has percent-escapes, too; `Err` (an
    /// invalid target) gives the bytes back.
    #[inline]
    pub(crate) fn new(
        bytes: Bytes,
        target: std::ops::Range<usize>,
        lines: usize,
    ) -> Result<(HeadBytes, bool), Bytes> {
        Self::with(bytes, target, lines, false)
    }

    /// [`new`](Self::new) of a target the parser found plain (its
    /// `PLAIN_TARGET` bytes: visible ASCII from `&` on, without `<`, `=`,
    /// `>`, `?` or `` ` ``, so no query, fragment or escape): not scanned
    /// again. A stricter test than this module's, which only costs a
    /// target outside it the second scan.
    #[inline(always)]
    pub(crate) fn with(
        bytes: Bytes,
        target: std::ops::Range<usize>,
        lines: usize,
        plain: bool,
    ) -> Result<(HeadBytes, bool), Bytes> {
        let scanned = match bytes.get(target.clone()) {
            Some(t) if plain && t.len() <= MAX_TARGET => Scanned {
                query: t.len(),
                end: t.len(),
                escaped: false,
            },
            Some(t) => match scan_target(t) {
                Ok(scanned) => scanned,
                Err(InvalidTarget) => return Err(bytes),
            },
            None => return Err(bytes),
        };
        // Positions as `u32` (a request is large enough as it is): the
        // target's end within them, so all of its positions are.
        let (Ok(_), Ok(lines)) = (
            u32::try_from(target.end),
            u32::try_from(lines.min(bytes.len())),
        ) else {
            return Err(bytes);
        };
        let head = HeadBytes {
            start: target.start as u32,
            query: (target.start + scanned.query) as u32,
            end: (target.start + scanned.end) as u32,
            lines,
            bytes,
        };
        Ok((head, scanned.escaped))
    }

    /// A target and header lines in a buffer of their own (a target in
    /// absolute form, or a request built by hand).
    #[cold]
    pub(crate) fn owned(target: &str, lines: &[u8]) -> Option<(HeadBytes, bool)> {
        let mut bytes = Vec::with_capacity(target.len() + lines.len());
        bytes.extend_from_slice(target.as_bytes());
        bytes.extend_from_slice(lines);
        HeadBytes::new(Bytes::from(bytes), 0..target.len(), target.len()).ok()
    }

    /// `bytes[from..to]` as text: only for bounds within the target that
    /// fall on its `?` or ends.
    #[inline]
    #[allow(unsafe_code)]
    fn text(&self, from: u32, to: u32) -> &str {
        let bytes = self.bytes.get(from as usize..to as usize).unwrap_or(&[]);
        debug_assert!(std::str::from_utf8(bytes).is_ok());
        // SAFETY: `new`, the only constructor, checked that
        // `bytes[start..end]` is UTF-8 (every byte ASCII, or
        // `str::from_utf8`), the fields are set nowhere else, and `Bytes`
        // is immutable. The callers' bounds are `start`, `query`,
        // `query + 1` and `end`: `query` is the position of an ASCII `?`
        // (or `end`), so every sub-range starts and ends on a character
        // boundary.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// The target: path, then `?` and the query if any.
    #[inline]
    pub(crate) fn target(&self) -> &str {
        self.text(self.start, self.end)
    }

    /// The path, still percent-encoded.
    #[inline]
    pub(crate) fn path(&self) -> &str {
        self.text(self.start, self.query)
    }

    /// The query (after `?`), if any.
    #[inline]
    pub(crate) fn query(&self) -> Option<&str> {
        (self.query < self.end).then(|| self.text(self.query + 1, self.end))
    }

    /// The header lines, up to the blank line (or none).
    #[inline]
    pub(crate) fn lines(&self) -> &[u8] {
        self.bytes.get(self.lines as usize..).unwrap_or(&[])
    }

    /// The same head in a buffer of its own: only its target and header
    /// lines, which are all that is read of it (the method and version are
    /// fields of the request), not the request line's method and version
    /// between them. A detached head is kept as long as a WebSocket lives:
    /// that is fifteen bytes less for most, and a smaller allocation.
    #[cold]
    fn detached(&self) -> HeadBytes {
        match HeadBytes::owned(self.target(), self.lines()) {
            Some((head, _)) => head,
            None => HeadBytes {
                bytes: Bytes::copy_from_slice(&self.bytes),
                ..*self
            },
        }
    }
}

impl fmt::Debug for HeadBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadBytes")
            .field("target", &self.target())
            .field("lines", &self.lines().escape_ascii().to_string())
            .finish()
    }
}

impl Request {
    /// A request as decoded. `Err` (to be answered `400`) carries the
    /// request anyway, with its path left undecoded, when the path's
    /// percent-escapes are not UTF-8.
    pub(crate) fn new(head: RawHead, body: Bytes, peer: SocketAddr) -> Result<Self, Box<Self>> {
        let req = Self::decoded(head, body, peer);
        if req.undecodable {
            return Err(Box::new(req));
        }
        Ok(req)
    }

    /// A request as decoded, built where the caller keeps it (a request is
    /// large enough that moving it out of a `Result` shows in a profile);
    /// [`undecodable`](Self::undecodable) says whether it must be refused.
    #[inline]
    pub(crate) fn decoded(head: RawHead, body: Bytes, peer: SocketAddr) -> Self {
        // Paths without escapes are plain ASCII or UTF-8 the parser
        // checked: no decoding. Decoded before the request is built, so
        // that it is built where the caller keeps it (changing it after
        // building made the compiler build it aside and copy it).
        let (decoded_path, undecodable) = match head.escaped {
            false => (None, false),
            true => decode_path(head.head.path()),
        };
        Request {
            method: head.method,
            decoded_path,
            undecodable,
            version: head.version,
            headers: OnceCell::new(),
            upgrade: head.upgrade,
            body,
            params: Params {
                src: head.head,
                list: ManuallyDrop::new(SmallVec::new()),
            },
            peer,
            extensions: Extensions::default(),
            state: None,
            https: false,
            hooks_done: false,
            spilled: None,
            id: None,
        }
    }

    /// Whether the path's percent-escapes are not UTF-8 (the request is to
    /// be answered `400`).
    pub(crate) fn undecodable(&self) -> bool {
        self.undecodable
    }

    /// A request from parts already in `http`'s types (built by hand, or
    /// what could be read of a refused one): the headers are the map.
    pub(crate) fn from_parts(
        method: Method,
        target: PathAndQuery,
        version: Version,
        headers: HeaderMap,
        body: Bytes,
        peer: SocketAddr,
    ) -> Result<Self, Box<Self>> {
        let upgrade = headers.contains_key(header::UPGRADE);
        // `PathAndQuery` accepts what `HeadBytes` does.
        let (head, escaped) = HeadBytes::owned(target.as_str(), b"")
            .or_else(|| HeadBytes::owned("/", b""))
            .expect("`/` is a valid target");
        let head = RawHead {
            method,
            version,
            head,
            escaped,
            upgrade,
        };
        let lift = |mut req: Request| {
            req.headers = OnceCell::from(Box::new(headers));
            req
        };
        match Request::new(head, body, peer) {
            Ok(req) => Ok(lift(req)),
            Err(req) => Err(Box::new(lift(*req))),
        }
    }

    /// Whether the request arrived over TLS (an HTTPS listener).
    ///
    /// ```
    /// let req = tine::Request::builder(tine::Method::GET, "/").finish();
    /// assert!(!req.is_https());
    /// ```
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// Marks the request as received over TLS.
    pub(crate) fn set_https(&mut self) {
        self.https = true;
    }

    /// Starts building a request by hand, for testing handlers and hooks
    /// without a socket. `target` is a path with an optional query, or an
    /// absolute URL (`http://host/path`, as proxies send), whose host
    /// becomes the request's `Host` as the server reads it.
    pub fn builder(method: Method, target: &str) -> RequestBuilder {
        RequestBuilder {
            method,
            target: target.to_string(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            peer: SocketAddr::from(([127, 0, 0, 1], 0)),
            params: Vec::new(),
            https: false,
        }
    }

    /// The request method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The percent-decoded path (`/a%20b` → `/a b`), without the query.
    ///
    /// Decoded, `%2F` is a `/` here, while routing keeps it inside its
    /// segment (`/public%2F..%2Fadmin/x` matches `/:user/x`, and its path
    /// here starts with `/public/`). So a hook that lets requests through
    /// by a path prefix should test [`raw_path`](Self::raw_path), or
    /// better, be attached to the routes it guards (a [`Group`](crate::Group)'s
    /// `before`).
    pub fn path(&self) -> &str {
        self.decoded_path.as_deref().unwrap_or(self.raw_path())
    }

    /// The path exactly as sent, still percent-encoded.
    pub fn raw_path(&self) -> &str {
        self.params.src.path()
    }

    /// The raw query string (after `?`), if any.
    pub fn query_string(&self) -> Option<&str> {
        self.params.src.query()
    }

    /// The target as sent: path, then `?` and the query if there is one.
    pub(crate) fn raw_target(&self) -> &str {
        self.params.src.target()
    }

    /// The decoded query parameters, in order (`+` is a space).
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query_string()
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One decoded query parameter; the last one wins if repeated.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let q = self.query_string()?;
        form_urlencoded::parse(q.as_bytes())
            .filter(|(k, _)| k == name)
            .last()
            .map(|(_, v)| v.into_owned())
    }

    /// The query string deserialized into `T` (`serde_urlencoded`); a
    /// mismatch is a `400` whose message names the field.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Page {
    ///     page: u32,
    /// }
    /// let req = tine::Request::builder(tine::Method::GET, "/list?page=abc").finish();
    /// let err = req.query::<Page>().err().unwrap();
    /// assert_eq!(err.status(), 400);
    /// assert_eq!(
    ///     err.message(),
    ///     "invalid query string: page: invalid digit found in string"
    /// );
    /// ```
    pub fn query<T: DeserializeOwned>(&self) -> Result<T, Error> {
        from_urlencoded(self.query_string().unwrap_or("").as_bytes())
            .map_err(|e| Error::bad_request(format!("invalid query string: {e}")))
    }

    /// The HTTP version of the request.
    pub fn version(&self) -> Version {
        self.version
    }

    /// All request headers, as an [`http::HeaderMap`].
    ///
    /// The map is built on the first call (tine reads the fields it needs
    /// itself without one); [`header`](Request::header) and
    /// [`header_all`](Request::header_all) read single fields without
    /// building it.
    ///
    /// ```
    /// use tine::{header, Method, Request};
    /// let req = Request::builder(Method::GET, "/")
    ///     .header("Accept", "text/html")
    ///     .finish();
    /// assert_eq!(req.headers()[header::ACCEPT], "text/html");
    /// assert_eq!(req.headers().len(), 1);
    /// ```
    pub fn headers(&self) -> &HeaderMap {
        self.headers
            .get_or_init(|| Box::new(header_map(&self.params.src)))
    }

    /// The first value of a header as text, if present and visible ASCII
    /// (like [`HeaderValue::to_str`]). The name is case-insensitive: a
    /// [`HeaderName`](http::HeaderName) such as `header::ACCEPT`, or text.
    ///
    /// ```
    /// use tine::{header, Method, Request};
    /// let req = Request::builder(Method::GET, "/")
    ///     .header("X-Request-Id", "7")
    ///     .finish();
    /// assert_eq!(req.header("x-request-id"), Some("7"));
    /// assert_eq!(req.header(header::ACCEPT), None);
    /// ```
    pub fn header(&self, name: impl AsRef<str>) -> Option<&str> {
        self.header_all(name.as_ref())
            .next()
            .and_then(visible_ascii)
    }

    /// Every value of a header, in the order received, as raw bytes.
    ///
    /// ```
    /// use tine::{Method, Request};
    /// let req = Request::builder(Method::GET, "/")
    ///     .header("accept", "text/html")
    ///     .header("Accept", "*/*")
    ///     .finish();
    /// let all: Vec<&[u8]> = req.header_all("accept").collect();
    /// assert_eq!(all, [&b"text/html"[..], b"*/*"]);
    /// // A `HeaderName` as text:
    /// assert_eq!(req.header_all(tine::header::ACCEPT.as_str()).count(), 2);
    /// ```
    pub fn header_all<'a, 'n>(&'a self, name: &'n str) -> HeaderValues<'a, 'n> {
        match self.headers.get() {
            Some(map) => HeaderValues(Values::Map(map.get_all(name).into_iter())),
            None => HeaderValues(Values::Lines {
                lines: HeaderLines(self.params.src.lines()),
                name: HeaderNameRef::new(name),
            }),
        }
    }

    /// The first values of two headers, found in one pass over the header
    /// lines (or from the map, once built): for the access log, which
    /// reads `Referer` and `User-Agent` on every request.
    pub(crate) fn header_pair(&self, names: [&str; 2]) -> [Option<&[u8]>; 2] {
        if let Some(map) = self.headers.get() {
            return names.map(|n| map.get(n).map(HeaderValue::as_bytes));
        }
        let wanted = names.map(HeaderNameRef::new);
        let mut found = [None, None];
        for (name, value) in HeaderLines(self.params.src.lines()) {
            for (slot, want) in found.iter_mut().zip(wanted) {
                if slot.is_none() && want.matches(name) {
                    *slot = Some(value);
                }
            }
            if found.iter().all(Option::is_some) {
                break;
            }
        }
        found
    }

    /// Copies what the request holds of the read buffer into buffers of
    /// its own, for a request kept beyond its exchange (a WebSocket
    /// session's): slices would keep the whole read buffer alive.
    #[cold]
    pub(crate) fn detach(&mut self) {
        self.params.src = self.params.src.detached();
        self.body = Bytes::copy_from_slice(&self.body);
        if let Some(map) = self.headers.get_mut() {
            // Its values are slices of the head too.
            **map = header_map(&self.params.src);
        }
    }

    /// Whether a header named `Upgrade` was sent (no map needed).
    pub(crate) fn has_upgrade_header(&self) -> bool {
        self.upgrade
    }

    /// The request body (empty when there was none). A body that was
    /// spilled to a temporary file, because it is larger than
    /// [`Limits::body_buffer`](crate::Limits::body_buffer), is read back
    /// into memory on the first call: stream large bodies with
    /// [`body_reader`](Request::body_reader) instead.
    #[inline]
    pub fn body(&self) -> &[u8] {
        match &self.spilled {
            None => &self.body,
            Some(spilled) => spilled.load(),
        }
    }

    /// The length of the body in bytes, in memory or spilled.
    ///
    /// ```
    /// let req = tine::Request::builder(tine::Method::POST, "/").body("abc").finish();
    /// assert_eq!(req.body_len(), 3);
    /// ```
    pub fn body_len(&self) -> u64 {
        match &self.spilled {
            Some(s) => s.len,
            None => self.body.len() as u64,
        }
    }

    /// Whether the body was spilled to a temporary file (then
    /// [`body_reader`](Request::body_reader) streams it, and
    /// [`body`](Request::body) reads it all into memory).
    pub fn body_is_spilled(&self) -> bool {
        self.spilled.is_some()
    }

    /// Reads the body from its start, wherever it is: memory, or the
    /// temporary file a large body was spilled to (see
    /// [`Limits::body_buffer`](crate::Limits::body_buffer)). Each call
    /// gives a new reader from the first byte. The file is deleted
    /// when the request is dropped (it never had a name).
    ///
    /// ```
    /// use std::io::Read;
    /// let req = tine::Request::builder(tine::Method::POST, "/").body("hello").finish();
    /// let mut text = String::new();
    /// req.body_reader().read_to_string(&mut text).unwrap();
    /// assert_eq!(text, "hello");
    /// ```
    pub fn body_reader(&self) -> BodyReader<'_> {
        BodyReader {
            source: match &self.spilled {
                Some(s) => Source::File(&s.file, s.len),
                None => Source::Memory(&self.body),
            },
            pos: 0,
        }
    }

    /// The request body as a cheaply clonable [`Bytes`].
    pub fn body_bytes(&self) -> Bytes {
        match &self.spilled {
            None => self.body.clone(),
            Some(spilled) => spilled.load().clone(),
        }
    }

    /// The body as UTF-8 text; invalid UTF-8 is a `400`.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(self.body())
            .map_err(|_| Error::bad_request("request body is not valid UTF-8"))
    }

    /// The body parsed as `multipart/form-data` (an HTML form with
    /// files) with the default [`MultipartLimits`](crate::MultipartLimits):
    /// text fields, and files in memory or, past 256 KiB, in temporary
    /// files. A `Content-Type` other than `multipart/form-data` is a
    /// `415`, a malformed body a `400`, a part over a limit a `413`, each
    /// with a message naming the problem (and the limit).
    ///
    /// ```
    /// let req = tine::Request::builder(tine::Method::POST, "/upload")
    ///     .header("content-type", "multipart/form-data; boundary=B")
    ///     .body("--B\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhi\r\n--B--\r\n")
    ///     .finish();
    /// let form = req.multipart().unwrap();
    /// assert_eq!(form.field("title"), Some("hi"));
    /// ```
    pub fn multipart(&self) -> Result<crate::Multipart, Error> {
        crate::multipart::parse(self, &crate::MultipartLimits::default())
    }

    /// Like [`multipart`](Request::multipart), with other limits.
    ///
    /// ```
    /// let limits = tine::MultipartLimits::default().max_parts(10).max_file(20 << 20);
    /// let req = tine::Request::builder(tine::Method::POST, "/").finish();
    /// assert_eq!(req.multipart_with(&limits).unwrap_err().status(), 415);
    /// ```
    pub fn multipart_with(
        &self,
        limits: &crate::MultipartLimits,
    ) -> Result<crate::Multipart, Error> {
        crate::multipart::parse(self, limits)
    }

    /// The body parsed as JSON. A `Content-Type` other than JSON is a `415`,
    /// a body that does not parse into `T` a `400` naming the problem and
    /// where it is (`items[0].qty: invalid type: string "2", expected u32
    /// at line 1 column 22`).
    ///
    /// ```
    /// use tine::{Method, Request};
    /// #[derive(serde::Deserialize)]
    /// struct Order { items: Vec<Item> }
    /// #[derive(serde::Deserialize)]
    /// struct Item { qty: u32 }
    /// let req = Request::builder(Method::POST, "/orders")
    ///     .header("content-type", "application/json")
    ///     .body(r#"{"items":[{"qty":"2"}]}"#)
    ///     .finish();
    /// let Err(err) = req.json::<Order>() else { panic!("a string is not a number") };
    /// assert_eq!(err.status(), 400);
    /// assert!(err.message().contains("items[0].qty: invalid type"), "{}", err.message());
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        if !self.content_type_is(is_json) {
            return Err(Error::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected Content-Type: application/json",
            ));
        }
        from_json(self.body()).map_err(|e| Error::bad_request(format!("invalid JSON body: {e}")))
    }

    /// The body parsed as `application/x-www-form-urlencoded` (`+` is a
    /// space, percent-escapes decoded). Only when the `Content-Type` says so
    /// (`415` otherwise); a mismatch with `T` is a `400`.
    pub fn form<T: DeserializeOwned>(&self) -> Result<T, Error> {
        if !self.content_type_is(|m| m == "application/x-www-form-urlencoded") {
            return Err(Error::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected Content-Type: application/x-www-form-urlencoded",
            ));
        }
        from_urlencoded(self.body())
            .map_err(|e| Error::bad_request(format!("invalid form body: {e}")))
    }

    /// The form body as a map where the last duplicate wins; empty unless
    /// the `Content-Type` is a form.
    pub fn form_map(&self) -> HashMap<String, String> {
        if !self.content_type_is(|m| m == "application/x-www-form-urlencoded") {
            return HashMap::new();
        }
        form_urlencoded::parse(self.body())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn content_type_is(&self, pred: impl Fn(&str) -> bool) -> bool {
        self.header(header::CONTENT_TYPE)
            .map(|ct| {
                let mime = ct.split(';').next().unwrap_or("").trim();
                pred(&mime.to_ascii_lowercase())
            })
            .unwrap_or(false)
    }

    /// A path capture by name (`:id` in the route, or `*` for a trailing
    /// wildcard), percent-decoded.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name)
    }

    /// A path capture parsed as `T` (any [`FromStr`](std::str::FromStr)
    /// type: numbers, `bool`, `Uuid`, ...), for handlers that return
    /// `Result<_, tine::Error>`: `let id: u64 = req.param_as("id")?;`. A
    /// value that does not parse is a `400` naming the parameter and why
    /// (as axum's `Path` answers). A name the route does not capture is a
    /// mistake in the app, not the client's: a `500`, logged.
    ///
    /// ```
    /// use tine::{Method, Request};
    /// let req = Request::builder(Method::GET, "/users/42").param("id", "42").finish();
    /// assert_eq!(req.param_as::<u64>("id").unwrap(), 42);
    /// let req = Request::builder(Method::GET, "/users/x").param("id", "x").finish();
    /// let err = req.param_as::<u64>("id").unwrap_err();
    /// assert_eq!(err.status(), 400);
    /// assert_eq!(err.message(), "invalid path parameter `id`: invalid digit found in string");
    /// assert_eq!(req.param_as::<u64>("ID").unwrap_err().status(), 500);
    /// ```
    pub fn param_as<T>(&self, name: &str) -> Result<T, Error>
    where
        T: std::str::FromStr,
        T::Err: fmt::Display,
    {
        let Some(value) = self.param(name) else {
            log::error!(
                "param_as: the route of {} captures no `{}`",
                self.raw_path().escape_debug(),
                name.escape_debug()
            );
            return Err(Error::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal server error",
            ));
        };
        value.parse().map_err(|e: T::Err| {
            Error::bad_request(format!(
                "invalid path parameter `{}`: {}",
                name.escape_debug(),
                e.to_string().escape_debug()
            ))
        })
    }

    /// All path captures.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Takes the router's captures, which point into this request's raw
    /// path.
    #[inline]
    pub(crate) fn set_params(&mut self, params: Captures) {
        if !params.is_empty() {
            self.params.set_list(params);
        } else if !params.spilled() {
            // Nothing to drop (no buffer, no capture): skips a call to
            // drop glue on every request to a route without captures.
            std::mem::forget(params);
        }
    }

    /// A cookie sent by the client, by name.
    pub fn cookie(&self, name: &str) -> Option<cookie::Cookie<'_>> {
        self.cookies().find(|c| c.name() == name)
    }

    /// Every cookie sent by the client (all `Cookie` headers), values
    /// percent-decoded, names as sent. A pair that is not UTF-8 or not
    /// `name=value` is skipped alone: the other cookies on its line stay
    /// readable (a script can set a cookie with any bytes).
    ///
    /// Names are not decoded: a browser applies the `__Host-` and
    /// `__Secure-` rules (secure origin, no `Domain`) to a name as set, so
    /// a sibling subdomain could set `__%48ost-csrf` without them, and a
    /// decoded name would pass it off as `__Host-csrf`.
    ///
    /// ```
    /// use tine::{Method, Request};
    /// let req = Request::builder(Method::GET, "/")
    ///     .header("cookie", "sid=42; pref=café; junk; theme=dark%20blue")
    ///     .finish();
    /// let names: Vec<String> = req.cookies().map(|c| c.name().to_string()).collect();
    /// assert_eq!(names, ["sid", "pref", "theme"]);
    /// assert_eq!(req.cookie("pref").unwrap().value(), "café");
    /// assert_eq!(req.cookie("theme").unwrap().value(), "dark blue");
    /// ```
    pub fn cookies(&self) -> impl Iterator<Item = cookie::Cookie<'_>> {
        self.header_all(header::COOKIE.as_str())
            .flat_map(|line| line.split(|&b| b == b';'))
            .filter_map(|pair| std::str::from_utf8(pair).ok())
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
            .filter_map(|pair| {
                let raw = cookie::Cookie::parse(pair).ok()?;
                if !raw.value().contains('%') {
                    return Some(raw);
                }
                let name = raw.name_raw()?;
                let value = percent_encoding::percent_decode_str(raw.value())
                    .decode_utf8()
                    .ok()?
                    .into_owned();
                Some(cookie::Cookie::new(name, value))
            })
    }

    /// A signed cookie sent by the client, with its signature checked and
    /// removed: `None` when it is missing, or when its signature does not
    /// hold (tampered with, forged, or signed by a key the app no longer
    /// accepts). The value is readable by the client, but cannot be
    /// changed by it. Signed by [`Response::set_signed_cookie`](crate::Response::set_signed_cookie)
    /// with the key of [`App::cookie_key`](crate::App::cookie_key); keys
    /// given to [`App::old_cookie_key`](crate::App::old_cookie_key) are
    /// accepted too.
    ///
    /// The signature covers the value, not the cookie's name (the `cookie`
    /// crate's format): a client could copy one signed cookie's value into
    /// another signed cookie of the same app. Where that matters (say a
    /// `user` and an `admin_of` cookie holding ids), put the meaning in
    /// the value (`user:42`) or use a [private](Self::private_cookie)
    /// cookie, whose name is authenticated.
    ///
    /// Panics (a 500, logged) in an app without a cookie key: a
    /// configuration mistake.
    ///
    /// ```
    /// use tine::cookie::{Cookie, Key};
    /// use tine::{test::TestClient, App, Request, Response};
    /// let app = App::new()
    ///     .cookie_key(Key::generate())
    ///     .get("/login", |req: &Request| Response::text("hi").set_signed_cookie(req, Cookie::new("user", "ada")))
    ///     .get("/me", |req: &Request| req.signed_cookie("user").map(|c| c.value().to_string()).unwrap_or_default());
    /// let client = TestClient::new(app);
    /// client.get("/login").send();
    /// assert_eq!(client.get("/me").send().text(), "ada");
    /// client.set_cookie("user", "admin"); // forged: no valid signature
    /// assert_eq!(client.get("/me").send().text(), "");
    /// ```
    #[track_caller]
    pub fn signed_cookie(&self, name: &str) -> Option<cookie::Cookie<'static>> {
        self.sealed_cookie(name, super::cookies::Kind::Signed)
    }

    /// A private (encrypted and authenticated) cookie sent by the client,
    /// decrypted: `None` when it is missing or does not decrypt with any
    /// of the app's keys (tampered with, forged, or too old a key). The
    /// client can neither read nor change the value. Set by
    /// [`Response::set_private_cookie`](crate::Response::set_private_cookie);
    /// keys as for [`signed_cookie`](Self::signed_cookie).
    ///
    /// ```
    /// use tine::cookie::{Cookie, Key};
    /// use tine::{test::TestClient, App, Request, Response};
    /// let app = App::new()
    ///     .cookie_key(Key::generate())
    ///     .get("/login", |req: &Request| Response::text("hi").set_private_cookie(req, Cookie::new("sid", "s3cret")))
    ///     .get("/me", |req: &Request| req.private_cookie("sid").map(|c| c.value().to_string()).unwrap_or_default());
    /// let client = TestClient::new(app);
    /// client.get("/login").send();
    /// assert!(!client.cookie("sid").unwrap().contains("s3cret"));
    /// assert_eq!(client.get("/me").send().text(), "s3cret");
    /// ```
    #[track_caller]
    pub fn private_cookie(&self, name: &str) -> Option<cookie::Cookie<'static>> {
        self.sealed_cookie(name, super::cookies::Kind::Private)
    }

    #[track_caller]
    fn sealed_cookie(
        &self,
        name: &str,
        kind: super::cookies::Kind,
    ) -> Option<cookie::Cookie<'static>> {
        let keys = super::cookies::keys(self);
        // Several cookies may share a name (other paths or domains): the
        // first one that opens wins.
        self.cookies()
            .filter(|c| c.name() == name)
            .find_map(|c| keys.open(kind, &c))
    }

    /// Per-worker state of type `T`, built by
    /// [`App::on_worker_start`](crate::App::on_worker_start).
    pub fn state<T: 'static>(&self) -> Option<&T> {
        self.state.as_deref()?.get()
    }

    /// Whether the before-hooks already ran (at admission, before the
    /// body was read).
    pub(crate) fn hooks_done(&self) -> bool {
        self.hooks_done
    }

    pub(crate) fn set_hooks_done(&mut self) {
        self.hooks_done = true;
    }

    /// Takes an in-memory body off the request (the test client admits
    /// a request without its body, as the server does, then gives it
    /// back with [`set_body`](Self::set_body)).
    pub(crate) fn take_body(&mut self) -> Bytes {
        std::mem::take(&mut self.body)
    }

    /// Attaches the body read after the head was admitted.
    pub(crate) fn set_body(&mut self, body: super::body::ReadBody) {
        match body {
            super::body::ReadBody::Memory(bytes) => self.body = bytes,
            super::body::ReadBody::File(file) => self.spilled = Some(Box::new(file)),
        }
    }

    pub(crate) fn set_state(&mut self, state: Rc<Extensions>) {
        self.state = Some(state);
    }

    /// The address of the client (the TCP peer).
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Typed values attached to this request by middleware.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// Mutable access to the extensions, for before-hooks.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.extensions
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("target", &self.raw_target())
            .field("version", &self.version)
            .field("headers", self.headers())
            .field("body_len", &self.body_len())
            .field("params", &self.params)
            .field("peer", &self.peer)
            .finish()
    }
}

fn is_json(mime: &str) -> bool {
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Builds a [`Request`] by hand (see [`Request::builder`]).
#[derive(Debug)]
pub struct RequestBuilder {
    method: Method,
    target: String,
    headers: HeaderMap,
    body: Bytes,
    peer: SocketAddr,
    params: Vec<(Rc<str>, String)>,
    https: bool,
}

impl RequestBuilder {
    /// Adds a header. Panics on an invalid name or value (this is for tests).
    #[track_caller]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = header::HeaderName::from_bytes(name.as_bytes()).expect("valid header name");
        let value = header::HeaderValue::from_str(value).expect("valid header value");
        self.headers.append(name, value);
        self
    }

    /// Adds every header of `headers`.
    pub(crate) fn headers(mut self, headers: HeaderMap) -> Self {
        let mut last = None;
        for (name, value) in headers {
            // Later values of one name come without it.
            if let Some(name) = name {
                last = Some(name);
            }
            if let Some(name) = &last {
                self.headers.append(name, value);
            }
        }
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the peer address.
    pub fn peer(mut self, peer: SocketAddr) -> Self {
        self.peer = peer;
        self
    }

    /// Marks the request as received over TLS (see [`Request::is_https`]).
    ///
    /// ```
    /// let req = tine::Request::builder(tine::Method::GET, "/").https().finish();
    /// assert!(req.is_https());
    /// ```
    pub fn https(mut self) -> Self {
        self.https = true;
        self
    }

    /// Adds a path capture, as the router would.
    pub fn param(mut self, name: &str, value: &str) -> Self {
        self.params.push((Rc::from(name), value.to_string()));
        self
    }

    /// Finishes the request. Panics on a target that is not a valid path,
    /// or whose escapes do not decode to UTF-8.
    #[track_caller]
    pub fn finish(self) -> Request {
        self.try_finish().expect("valid UTF-8 path")
    }

    /// Finishes the request; `Err` holds one whose path escapes do not
    /// decode to UTF-8 (`/%FF`), which the server answers `400` (the test
    /// client does the same). Panics on a target that is not a valid path.
    #[track_caller]
    pub(crate) fn try_finish(mut self) -> Result<Request, Box<Request>> {
        // An absolute-form target (`http://host/path`, as proxies send)
        // names the host, as the server reads it (RFC 9112 §3.2.2).
        let scheme = |s: &str| {
            self.target
                .get(..s.len())
                .is_some_and(|t| t.eq_ignore_ascii_case(s))
        };
        if scheme("http://") || scheme("https://") {
            let uri: http::Uri = self.target.parse().expect("valid request target");
            if let Some(authority) = uri.authority() {
                let host = HeaderValue::from_str(authority.as_str()).expect("valid host");
                self.headers.insert(http::header::HOST, host);
            }
            self.target = uri
                .path_and_query()
                .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
        }
        let target = PathAndQuery::try_from(self.target.as_str()).expect("valid request target");
        let made = Request::from_parts(
            self.method,
            target,
            Version::HTTP_11,
            self.headers,
            self.body,
            self.peer,
        );
        let params = self
            .params
            .into_iter()
            .map(|(k, v)| (Some(k), Capture::Owned(v.into_boxed_str())))
            .collect();
        let https = self.https;
        let finish = |mut req: Request| {
            req.params.set_list(params);
            req.https = https;
            req
        };
        match made {
            Ok(req) => Ok(finish(req)),
            Err(req) => Err(Box::new(finish(*req))),
        }
    }
}

/// Reads a request body from its start: see [`Request::body_reader`].
#[derive(Debug)]
pub struct BodyReader<'a> {
    source: Source<'a>,
    pos: u64,
}

#[derive(Debug)]
enum Source<'a> {
    Memory(&'a [u8]),
    /// Read with `pread`, so readers never share a file offset.
    File(&'a std::fs::File, u64),
}

impl std::io::Read for BodyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = match self.source {
            Source::Memory(bytes) => read_memory_at(bytes, self.pos, buf),
            Source::File(file, len) => read_file_at(file, len, self.pos, buf)?,
        };
        self.pos += n as u64;
        Ok(n)
    }
}

/// Copies into `buf` what `src` holds from `pos` on; how many bytes.
pub(crate) fn read_memory_at(src: &[u8], pos: u64, buf: &mut [u8]) -> usize {
    let rest = src.get(pos as usize..).unwrap_or(&[]);
    let n = rest.len().min(buf.len());
    buf[..n].copy_from_slice(&rest[..n]);
    n
}

/// Reads into `buf` from `pos` of the first `len` bytes of `file`, with
/// `pread` (readers never share a file offset); 0 at `len`.
pub(crate) fn read_file_at(
    file: &std::fs::File,
    len: u64,
    pos: u64,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let left = len.saturating_sub(pos);
    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
    if want == 0 {
        return Ok(0);
    }
    file.read_at(&mut buf[..want], pos)
}

/// Path captures of the matched route, in pattern order.
///
/// Captures without percent-escapes are kept as positions in the request's
/// path (no copy, no allocation); the first of them is held
/// inline.
#[derive(Default, Clone)]
pub struct Params {
    /// The request's head, whose raw path the captures' positions point
    /// into (see the `params` field of [`Request`]).
    pub(crate) src: HeadBytes,
    /// `(name, value)`; the name `None` is the trailing wildcard `*`.
    /// Dropped by hand (see `Drop` below): most requests have no capture.
    pub(crate) list: ManuallyDrop<Captures>,
}

/// An empty list held inline owns nothing: only a list with captures, or
/// a heap buffer, is dropped. The drop glue of a `SmallVec` is not
/// inlined, and was a call (about 20 instructions, callgrind) on every
/// request, most of which have no capture.
impl Drop for Params {
    #[inline]
    fn drop(&mut self) {
        if !self.list.is_empty() || self.list.spilled() {
            drop(std::mem::take(&mut *self.list));
        }
    }
}

impl Params {
    /// Replaces the captures, dropping the previous ones.
    #[inline]
    pub(crate) fn set_list(&mut self, list: Captures) {
        drop(std::mem::replace(&mut *self.list, list));
    }
}

/// The router's captures for a path: `(name, value)`, the name `None` for
/// the trailing `*`; a value without escapes is its position in the raw
/// path, not a copy.
pub(crate) type Captures = SmallVec<[(Option<Rc<str>>, Capture); INLINE_PARAMS]>;

/// Captures held without a heap allocation.
pub(crate) const INLINE_PARAMS: usize = 1;

/// One captured value.
#[derive(Debug, Clone)]
pub(crate) enum Capture {
    /// `src[start..end]`, needing no decoding.
    Raw(u32, u32),
    /// Decoded from percent-escapes.
    Owned(Box<str>),
}

/// The captures as a map; not the head they point into, which holds every
/// header line (cookies included) and has no place in a log.
impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Params {
    /// The capture named `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// All captures as `(name, value)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.list.iter().map(|(k, v)| {
            let value = match v {
                Capture::Raw(a, b) => self.src.path().get(*a as usize..*b as usize).unwrap_or(""),
                Capture::Owned(s) => s,
            };
            (k.as_deref().unwrap_or("*"), value)
        })
    }

    /// Number of captures.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are no captures.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// The values of one header, from [`Request::header_all`].
#[derive(Debug)]
pub struct HeaderValues<'a, 'n>(Values<'a, 'n>);

#[derive(Debug)]
enum Values<'a, 'n> {
    /// Read from the map.
    Map(http::header::ValueIter<'a, HeaderValue>),
    /// Read from the header lines as received.
    Lines {
        lines: HeaderLines<'a>,
        name: HeaderNameRef<'n>,
    },
}

impl<'a> Iterator for HeaderValues<'a, '_> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        match &mut self.0 {
            Values::Map(values) => values.next().map(HeaderValue::as_bytes),
            Values::Lines { lines, name } => {
                let name = *name;
                lines.find(|(n, _)| name.matches(n)).map(|(_, v)| v)
            }
        }
    }
}

/// A header name to look for among header lines, case-insensitively.
#[derive(Debug, Clone, Copy)]
struct HeaderNameRef<'a>(&'a [u8]);

impl<'a> HeaderNameRef<'a> {
    fn new(name: &'a str) -> Self {
        HeaderNameRef(name.as_bytes())
    }

    #[inline]
    fn matches(self, name: &[u8]) -> bool {
        name.len() == self.0.len() && name.eq_ignore_ascii_case(self.0)
    }
}

/// The `(name, value)` pairs of header lines the parser accepted: each
/// line is `name:value` (no space before the colon, no folding: the
/// parser refused those), ending in CRLF or LF; the value without the
/// spaces and tabs around it, as `httparse` gives it.
#[derive(Debug, Clone)]
pub(crate) struct HeaderLines<'a>(&'a [u8]);

impl<'a> Iterator for HeaderLines<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let end = memchr::memchr(b'\n', self.0)?;
        let line = &self.0[..end];
        self.0 = &self.0[end + 1..];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = memchr::memchr(b':', line) else {
            // The blank line ending the head.
            self.0 = &[];
            return None;
        };
        let value = &line[colon + 1..];
        let start = value
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(value.len());
        let end = value
            .iter()
            .rposition(|&b| b != b' ' && b != b'\t')
            .map_or(start, |i| i + 1);
        Some((&line[..colon], &value[start..end]))
    }
}

/// The header map of header lines the parser accepted (so every name and
/// value is valid: this cannot fail).
#[cold]
pub(crate) fn header_map(head: &HeadBytes) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in HeaderLines(head.lines()) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_maybe_shared(head.bytes.slice_ref(value)),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// A header value as text when it is visible ASCII (or tab), as
/// [`HeaderValue::to_str`] has it.
fn visible_ascii(value: &[u8]) -> Option<&str> {
    if value.iter().all(|&b| b == b'\t' || (32..127).contains(&b)) {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// A map of values keyed by their type, for data middleware attaches to a
/// request (an authenticated user, a request id, ...).
///
/// Unlike `http::Extensions` it needs no `Send` or `Sync`: a worker is one
/// thread.
///
/// ```
/// let mut ext = tine::Extensions::default();
/// ext.insert(42u32);
/// assert_eq!(ext.get::<u32>(), Some(&42));
/// assert_eq!(ext.get::<String>(), None);
/// ```
#[derive(Default)]
pub struct Extensions {
    /// Boxed: most requests carry none, and a request is moved a few
    /// times on its way (a pointer is cheaper to move than a map).
    #[allow(clippy::box_collection)]
    map: Option<Box<HashMap<TypeId, Box<dyn Any>>>>,
}

impl Drop for Extensions {
    /// Inlined where a request is dropped: most requests carry no map,
    /// and the drop glue of an `Option` of one (too large to inline) was a
    /// call on every request. Once the map is taken out, the glue that
    /// follows sees `None` and does nothing.
    #[inline]
    fn drop(&mut self) {
        if let Some(map) = self.map.take() {
            drop(map);
        }
    }
}

impl Extensions {
    /// Stores `value`, returning the previous value of that type.
    pub fn insert<T: 'static>(&mut self, value: T) -> Option<T> {
        self.map
            .get_or_insert_with(Default::default)
            .insert(TypeId::of::<T>(), Box::new(value))
            .and_then(|old| old.downcast().ok().map(|b| *b))
    }

    /// The stored value of type `T`.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.map
            .as_ref()?
            .get(&TypeId::of::<T>())
            .and_then(|b| b.downcast_ref())
    }

    /// The stored value of type `T`, mutably.
    pub fn get_mut<T: 'static>(&mut self) -> Option<&mut T> {
        self.map
            .as_mut()?
            .get_mut(&TypeId::of::<T>())
            .and_then(|b| b.downcast_mut())
    }

    /// Removes and returns the value of type `T`.
    pub fn remove<T: 'static>(&mut self) -> Option<T> {
        self.map
            .as_mut()?
            .remove(&TypeId::of::<T>())
            .and_then(|b| b.downcast().ok().map(|b| *b))
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("len", &self.map.as_ref().map_or(0, |m| m.len()))
            .finish()
    }
}

/// Deserializes a JSON body into `T`, naming where a failure is
/// (`items[0].qty: invalid type ...`) as [`from_urlencoded`] does; errors
/// about the whole document (a syntax error, a missing field) name their
/// place themselves.
fn from_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|plain| {
        // Parsed again, tracking the path, only to say where: the common
        // case, a body that parses, pays nothing for it.
        let mut de = serde_json::Deserializer::from_slice(body);
        match serde_path_to_error::deserialize::<_, T>(&mut de) {
            // The path names the client's keys: escaped, so a key with a
            // line break cannot forge a line in a log.
            Err(e) if names_a_place(e.path()) => {
                format!("{}: {}", e.path().to_string().escape_debug(), e.inner())
            }
            _ => plain.to_string(),
        }
    })
}

/// Deserializes `application/x-www-form-urlencoded` bytes (a query string
/// or a form body) into `T`, naming the field a failure is about
/// (`page: invalid digit found in string`): `serde_urlencoded`'s own errors
/// do not say which field they are about, and `serde_path_to_error`
/// (dtolnay's, a thin wrapper around any deserializer) tracks the path
/// without a second parse. Errors about the whole value (a missing field)
/// are left as they are: they name the field themselves.
fn from_urlencoded<T: DeserializeOwned>(input: &[u8]) -> Result<T, String> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(input));
    serde_path_to_error::deserialize(de).map_err(|e| {
        if names_a_place(e.path()) {
            format!("{}: {}", e.path(), e.inner())
        } else {
            e.inner().to_string()
        }
    })
}

/// Whether a failure's path says where it is: not empty, and not only
/// places the deserializer could not name (`?`, as for a JSON syntax
/// error before the first key).
fn names_a_place(path: &serde_path_to_error::Path) -> bool {
    path.iter()
        .any(|s| !matches!(s, serde_path_to_error::Segment::Unknown))
}

#[cfg(test)]
mod tests {
    /// A JSON error names where the problem is, with the client's keys
    /// escaped: a key with a line break does not break the log line.
    #[test]
    fn json_errors_name_the_place_escaped() {
        use std::collections::HashMap;
        let req = |body: &'static str| {
            super::Request::builder(http::Method::POST, "/")
                .header("content-type", "application/json")
                .body(body)
                .finish()
        };
        let Err(e) = req("{\"a\\nb\": 1}").json::<HashMap<String, String>>() else {
            panic!("a number is not a string");
        };
        assert!(
            e.message().contains("a\\nb: invalid type"),
            "{}",
            e.message()
        );
        assert!(!e.message().contains('\n'), "{}", e.message());
        // A syntax error before any key names no place (it said `?: `).
        let Err(e) = req("{").json::<HashMap<String, String>>() else {
            panic!("not JSON");
        };
        assert_eq!(
            e.message(),
            "invalid JSON body: EOF while parsing an object at line 1 column 1"
        );
        let ok: HashMap<String, u32> = req("{\"n\": 1}").json().unwrap();
        assert_eq!(ok["n"], 1);
    }

    #[test]
    fn cookie_names_are_not_decoded_so_prefixes_cannot_be_forged() {
        use http::Method;
        let req = super::Request::builder(Method::GET, "/")
            .header("cookie", "__%48ost-csrf=forged; __Host-csrf=real; v=a%20b")
            .finish();
        assert_eq!(req.cookie("__Host-csrf").unwrap().value(), "real");
        let names: Vec<String> = req.cookies().map(|c| c.name().to_string()).collect();
        assert_eq!(names, ["__%48ost-csrf", "__Host-csrf", "v"]);
        assert_eq!(req.cookie("v").unwrap().value(), "a b");
        // Only the planted one: it is not taken for the prefixed name.
        let req = super::Request::builder(Method::GET, "/")
            .header("cookie", "__%48ost-csrf=forged")
            .finish();
        assert!(req.cookie("__Host-csrf").is_none());
    }

    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Login {
        user: String,
        pass: String,
    }

    #[test]
    fn header_pair_reads_the_lines_in_one_pass_or_the_map() {
        let mut buf = bytes::BytesMut::from(
            &b"GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: ua\r\nX-A:  1 \r\nuser-agent: two\r\n\r\n"
                [..],
        );
        let limits = crate::Limits::default();
        let crate::http::parse::Decoded::Request(head, body) =
            crate::http::parse::Decoder::new().decode(&mut buf, &limits)
        else {
            panic!("a request");
        };
        let req = Request::new(head.raw, body, "127.0.0.1:1".parse().unwrap()).unwrap();
        let pair = req.header_pair(["x-a", "USER-AGENT"]);
        assert_eq!(pair, [Some(&b"1"[..]), Some(&b"ua"[..])]);
        assert_eq!(
            req.header_pair(["referer", "host"]),
            [None, Some(&b"h"[..])]
        );
        // Once the map is built, from the map: the same answers.
        assert_eq!(req.headers().len(), 4);
        assert_eq!(req.header_pair(["x-a", "USER-AGENT"]), pair);
    }

    /// A detached request (a WebSocket's, kept for the connection's life)
    /// holds only its target and header lines: what it answers is the
    /// same, captures included.
    #[test]
    fn a_detached_request_reads_as_before() {
        let mut buf = bytes::BytesMut::from(
            &b"GET /rooms/r1/x?a=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\n\r\n"[..],
        );
        let limits = crate::Limits::default();
        let crate::http::parse::Decoded::Request(head, body) =
            crate::http::parse::Decoder::new().decode(&mut buf, &limits)
        else {
            panic!("a request");
        };
        let mut req = Request::new(head.raw, body, "127.0.0.1:1".parse().unwrap()).unwrap();
        let mut params = Captures::new();
        params.push((Some(Rc::from("room")), Capture::Raw(7, 9)));
        req.set_params(params);
        let before = format!("{req:?}");
        let len = req.params.src.bytes.len();
        req.detach();
        assert_eq!(
            req.params.src.bytes.len(),
            len - "GET ".len() - " HTTP/1.1\r\n".len()
        );
        assert_eq!(format!("{req:?}"), before);
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.version(), ::http::Version::HTTP_11);
        assert_eq!(req.raw_target(), "/rooms/r1/x?a=1");
        assert_eq!(req.path(), "/rooms/r1/x");
        assert_eq!(req.query_string(), Some("a=1"));
        assert_eq!(req.query_param("a").as_deref(), Some("1"));
        assert_eq!(req.param("room"), Some("r1"));
        assert_eq!(req.header("host"), Some("h"));
        assert_eq!(req.header_all("x-a").collect::<Vec<_>>(), [b"1", b"2"]);
        assert_eq!(req.headers().len(), 3);
    }

    #[test]
    fn decoded_path_and_query() {
        let req = Request::builder(Method::GET, "/a%20b/c?x=1&y=a+b%21&x=2").finish();
        assert_eq!(req.path(), "/a b/c");
        assert_eq!(req.raw_path(), "/a%20b/c");
        assert_eq!(req.query_param("x").as_deref(), Some("2"));
        assert_eq!(req.query_param("y").as_deref(), Some("a b!"));
        assert_eq!(req.query_pairs().len(), 3);
    }

    #[test]
    fn json_and_form() {
        let req = Request::builder(Method::POST, "/")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("user=ada+l&pass=%3Dx")
            .finish();
        let login: Login = req.form().unwrap();
        assert_eq!(login.user, "ada l");
        assert_eq!(login.pass, "=x");
        assert_eq!(
            req.json::<Login>().unwrap_err().status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );

        let req = Request::builder(Method::POST, "/")
            .header("content-type", "application/json; charset=utf-8")
            .body("{\"user\": 1}")
            .finish();
        let err = req.json::<Login>().unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err.message().contains("invalid JSON"), "{err}");
        assert!(req.form_map().is_empty());
    }

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Listing {
        page: u32,
        per_page: Option<u8>,
        sort: Option<Sort>,
        done: Option<bool>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "lowercase")]
    enum Sort {
        Asc,
    }

    #[test]
    fn query_and_form_errors_name_the_field() {
        let query = |q: &str| {
            Request::builder(Method::GET, &format!("/l?{q}"))
                .finish()
                .query::<Listing>()
                .unwrap_err()
                .message()
                .to_string()
        };
        assert_eq!(
            query("page=abc"),
            "invalid query string: page: invalid digit found in string"
        );
        assert_eq!(
            query("page=1&per_page=300"),
            "invalid query string: per_page: number too large to fit in target type"
        );
        assert_eq!(
            query("page=1&done=maybe"),
            "invalid query string: done: provided string was not `true` or `false`"
        );
        assert!(
            query("page=1&sort=up").starts_with("invalid query string: sort: unknown variant `up`"),
            "{}",
            query("page=1&sort=up")
        );
        // A missing field names itself; no path is added.
        assert_eq!(
            query("per_page=1"),
            "invalid query string: missing field `page`"
        );
        // Percent-escapes in the name are decoded before naming it.
        assert_eq!(
            query("pa%67e=x"),
            "invalid query string: page: invalid digit found in string"
        );
        let req = Request::builder(Method::POST, "/")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("page=2&per_page=-1")
            .finish();
        let err = req.form::<Listing>().unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            err.message(),
            "invalid form body: per_page: invalid digit found in string"
        );
        // What parses still parses.
        let req = Request::builder(Method::GET, "/l?page=3&sort=asc&done=true").finish();
        assert_eq!(req.query::<Listing>().unwrap().page, 3);
    }

    #[test]
    fn form_map_last_wins() {
        let req = Request::builder(Method::POST, "/")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("a=1&a=2&b=x%20y")
            .finish();
        let m = req.form_map();
        assert_eq!(m["a"], "2");
        assert_eq!(m["b"], "x y");
        // `+` is a space, `%2B` a plus, empty pairs are skipped, a key
        // without `=` has an empty value, bad UTF-8 is replaced.
        let req = Request::builder(Method::POST, "/")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("q=1+%2B+1&&flag&n=%C3%A9%FF")
            .finish();
        let m = req.form_map();
        assert_eq!(m.len(), 3);
        assert_eq!(m["q"], "1 + 1");
        assert_eq!(m["flag"], "");
        assert_eq!(m["n"], "é\u{fffd}");
    }

    #[test]
    fn cookies() {
        let req = Request::builder(Method::GET, "/")
            .header("cookie", "a=1; b=hello%20world")
            .header("cookie", "c=3")
            .finish();
        assert_eq!(req.cookie("b").unwrap().value(), "hello world");
        assert_eq!(req.cookie("c").unwrap().value(), "3");
        assert!(req.cookie("d").is_none());
    }

    /// `HeadBytes` reads and refuses targets exactly as
    /// `http::uri::PathAndQuery` does (which it replaced).
    #[test]
    fn targets_as_path_and_query_reads_them() {
        let mut targets: Vec<Vec<u8>> = Vec::new();
        for b in 0u8..=255 {
            for shape in [&b"/a_c"[..], b"/a?x_y", b"/_", b"/a?_", b"/a#x_", b"/a?b#_"] {
                targets.push(
                    shape
                        .iter()
                        .map(|&c| if c == b'_' { b } else { c })
                        .collect(),
                );
            }
        }
        for t in [
            "/",
            "/plaintext",
            "/hello/world",
            "/a%20b?c=%20",
            "/caf\u{e9}?q=\u{e9}t\u{e9}",
            "/a?",
            "/?",
            "/a??b",
            "/a?b?c",
            "/a#",
            "/a#?b",
            "/a?#",
            "/%",
            "/{\"a\":1}",
            "/a?b=`",
            "/a<b",
            "/a?b<",
        ] {
            targets.push(t.as_bytes().to_vec());
        }
        targets.push(b"/caf\xc3".to_vec());
        targets.push(b"/a?\xff".to_vec());
        targets.push(b"/a#\xff".to_vec());
        let long = format!("/{}", "a".repeat(MAX_TARGET - 1));
        targets.push(long.as_bytes().to_vec());
        targets.push(format!("{long}b").into_bytes());
        for t in targets {
            let expected = PathAndQuery::try_from(&t[..]).ok();
            let mut raw = b"GET ".to_vec();
            raw.extend_from_slice(&t);
            raw.extend_from_slice(b" HTTP/1.1\r\nHost: h\r\n\r\n");
            let lines = 4 + t.len() + 11;
            let got = HeadBytes::new(Bytes::from(raw), 4..4 + t.len(), lines).ok();
            let shown = t.escape_ascii().to_string();
            match (expected, got) {
                (None, None) => {}
                (Some(pq), Some((head, escaped))) => {
                    assert_eq!(head.target(), pq.as_str(), "{shown}");
                    assert_eq!(head.path(), pq.path(), "{shown}");
                    assert_eq!(head.query(), pq.query(), "{shown}");
                    assert_eq!(escaped, pq.path().contains('%'), "{shown}");
                    assert_eq!(head.lines(), b"Host: h\r\n\r\n", "{shown}");
                }
                (pq, head) => panic!("{shown}: PathAndQuery {pq:?}, HeadBytes {head:?}"),
            }
        }
    }

    #[test]
    fn invalid_utf8_path_is_rejected() {
        let target = PathAndQuery::from_static("/%ff");
        let err = Request::from_parts(
            Method::GET,
            target,
            Version::HTTP_11,
            HeaderMap::new(),
            Bytes::new(),
            SocketAddr::from(([127, 0, 0, 1], 1)),
        )
        .unwrap_err();
        // The refused request is still there, for the error page and log.
        assert_eq!(err.raw_path(), "/%ff");
        assert_eq!(err.path(), "/%ff");
    }
}
