//! Response compression: gzip, brotli and (with the `zstd` feature) zstd,
//! chosen per request by `Accept-Encoding`.
//!
//! Installed as an after-hook ([`App::compress`](crate::App::compress)), so
//! it sees every answer: handler responses, static files, error pages.
//! Bodies in memory are compressed at once; streamed bodies stay streamed,
//! each chunk compressed and flushed as it is produced; files (without a
//! precompressed sibling) are read and compressed chunk by chunk as the
//! socket takes them.

mod accept;
mod encoder;

use std::rc::Rc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::StatusCode;

use crate::app::App;
use crate::http::{Body, Chunks, FileBody, Request, Response};
use crate::middleware::add_vary;
pub(crate) use accept::Coding;
use encoder::Encoder;

/// Response compression settings, installed with
/// [`App::compress`](crate::App::compress).
///
/// The coding is chosen by the request's `Accept-Encoding` (q-values,
/// `*`, `identity;q=0` honoured; on equal q-values zstd, then gzip, then
/// brotli, the cheapest first). A response is sent as it is when:
///
/// - the status is `1xx`, `204`, `206` or `304` (a `304` gets the weak
///   `ETag` and the `Vary` of the compressed `200` when the client's
///   `If-None-Match` names the weak tag, the copy it holds);
/// - it already has a `Content-Encoding` (a precompressed static file
///   served by [`App::static_dir`](crate::App::static_dir) wins this way)
///   or a `Content-Range`, or `Cache-Control: no-transform`;
/// - its type is compressed already (images other than SVG, audio, video,
///   fonts, archives and zip containers, packages, PDF) or is
///   `application/octet-stream` (binary downloads);
/// - its body is in memory and smaller than [`min_size`](Self::min_size)
///   (unless the client refused the uncompressed form with
///   `identity;q=0`), or did not get smaller when compressed;
/// - it is a file or a stream, and [`max_streams`](Self::max_streams)
///   such responses are being compressed by this worker already.
///
/// Every response whose form depends on `Accept-Encoding` gets
/// `Vary: Accept-Encoding`. A compressed response's `ETag` is made weak
/// (`W/"..."`, so a conditional request still matches it) and its
/// `Accept-Ranges` is removed.
///
/// The default levels are cheap: measured in CPU time per KiB of JSON on
/// the development machine, zstd 3 about 3 µs (ratio 30), gzip 1 about
/// 5 µs (ratio 10), brotli 3 about 27 µs (ratio 30), against about 5 µs
/// per KiB for building that JSON in a handler. Brotli, dearer at every
/// level, is chosen only when the client prefers it or accepts nothing
/// cheaper. See `docs/compression.md` for the table and the other levels.
///
/// ```
/// use tine::{App, Compression, Method, Request, Response};
/// let app = App::new()
///     .get("/data", |_: &Request| Response::text("tine ".repeat(1000)))
///     .compress(Compression::new().min_size(512).gzip_level(6));
/// let mut req = Request::builder(Method::GET, "/data")
///     .header("accept-encoding", "gzip")
///     .finish();
/// let res = app.handle(&mut req);
/// assert_eq!(res.headers()["content-encoding"], "gzip");
/// assert_eq!(res.headers()["vary"], "Accept-Encoding");
/// assert!(res.body_bytes().unwrap().len() < 100);
/// ```
#[derive(Debug, Clone)]
pub struct Compression {
    min_size: usize,
    gzip_level: u32,
    brotli_quality: u32,
    #[cfg(feature = "zstd")]
    zstd_level: i32,
    /// Enabled codings, in order of preference on equal q-values.
    codings: Vec<Coding>,
    max_streams: usize,
}

impl Default for Compression {
    fn default() -> Self {
        Self::new()
    }
}

impl Compression {
    /// Every coding built in, cheap levels, a 1 KiB threshold.
    pub fn new() -> Self {
        Compression {
            min_size: 1024,
            gzip_level: 1,
            brotli_quality: 3,
            #[cfg(feature = "zstd")]
            zstd_level: 3,
            codings: vec![
                #[cfg(feature = "zstd")]
                Coding::Zstd,
                Coding::Gzip,
                Coding::Br,
            ],
            max_streams: 64,
        }
    }

    /// How many files and streamed bodies one worker compresses at once
    /// (default 64); past that, such responses go uncompressed until one
    /// of them ends. Each holds its encoder's state until the client has
    /// taken the whole body: some hundreds of KiB for gzip, 0.8 MiB for brotli and
    /// 2.6 MiB for zstd, which a client that asks for a large file and
    /// never reads would otherwise hold per connection (thousands of them
    /// are gigabytes). Bodies in memory are compressed at once and hold no
    /// encoder; they do not count.
    ///
    /// ```
    /// let c = tine::Compression::new().max_streams(256);
    /// # let _ = c;
    /// ```
    pub fn max_streams(mut self, count: usize) -> Self {
        self.max_streams = count;
        self
    }

    /// Bodies in memory (and files) smaller than this many bytes are sent
    /// as they are (default 1024): compressing them saves little and costs
    /// a header and some CPU. Streams, whose size is unknown, are always
    /// compressed.
    pub fn min_size(mut self, bytes: usize) -> Self {
        self.min_size = bytes;
        self
    }

    /// The gzip level, 1 (fastest, the default) to 9 (smallest); values
    /// above 9 count as 9, and 0 as 1.
    pub fn gzip_level(mut self, level: u32) -> Self {
        self.gzip_level = level.clamp(1, 9);
        self
    }

    /// The brotli quality, 0 (fastest) to 11 (smallest, far too slow for
    /// responses made per request); default 3.
    pub fn brotli_quality(mut self, quality: u32) -> Self {
        self.brotli_quality = quality.min(11);
        self
    }

    /// The zstd level, 1 (fastest) to 19; default 3. (Only with the `zstd`
    /// feature, which compiles the C library.)
    #[cfg(feature = "zstd")]
    pub fn zstd_level(mut self, level: i32) -> Self {
        self.zstd_level = level.clamp(1, 19);
        self
    }

    /// Turns gzip on or off (on by default).
    pub fn gzip(self, on: bool) -> Self {
        self.toggle(Coding::Gzip, on)
    }

    /// Turns brotli on or off (on by default).
    pub fn brotli(self, on: bool) -> Self {
        self.toggle(Coding::Br, on)
    }

    /// Turns zstd on or off (on by default with the `zstd` feature).
    #[cfg(feature = "zstd")]
    pub fn zstd(self, on: bool) -> Self {
        self.toggle(Coding::Zstd, on)
    }

    fn toggle(mut self, coding: Coding, on: bool) -> Self {
        self.codings.retain(|&c| c != coding);
        if on {
            self.codings.push(coding);
            // Keep the preference order whatever the order of the calls.
            self.codings.sort_by_key(|&c| rank(c));
        }
        self
    }

    pub(crate) fn install(self, app: App) -> App {
        app.after(self.into_hook())
    }

    /// The after-hook that compresses (for an app or a group).
    pub(crate) fn into_hook(self) -> impl Fn(&Request, Response) -> Response + 'static {
        let config = Rc::new(self);
        move |req: &Request, res: Response| config.apply(req, res)
    }

    /// Compresses `res` if the request accepts a coding and nothing rules
    /// it out (see the type's docs).
    fn apply(&self, req: &Request, mut res: Response) -> Response {
        if res.status() == StatusCode::NOT_MODIFIED {
            let compressible = res.compressible;
            not_modified(req, &self.codings, compressible, res.headers_mut());
            return res;
        }
        // HEAD takes the same way as GET, so that it gets the same header
        // fields (RFC 9110 §9.3.2): the body is compressed (or its encoder
        // made) and then dropped unsent. HEAD is rare enough for that.
        if !eligible(&res) {
            return res;
        }
        add_vary(res.headers_mut(), &["Accept-Encoding"]);
        let negotiated = accept::negotiate(
            req.header_all(header::ACCEPT_ENCODING.as_str()),
            &self.codings,
        );
        let Some(coding) = negotiated.coding else {
            return res;
        };
        let small = |len: u64| len < self.min_size as u64 && !negotiated.identity_refused;
        let body = std::mem::replace(&mut res.body, Body::Empty);
        res.body = match body {
            Body::Full(bytes) if small(bytes.len() as u64) => {
                res.body = Body::Full(bytes);
                return res;
            }
            Body::Full(bytes) => match self.compress_all(coding, &bytes) {
                Some(out) if out.len() < bytes.len() || negotiated.identity_refused => {
                    Body::Full(out.into())
                }
                _ => {
                    res.body = Body::Full(bytes);
                    return res;
                }
            },
            // A handler's `String` or `Vec`: like any body in memory.
            Body::Vec(v) if small(v.len() as u64) => {
                res.body = Body::Vec(v);
                return res;
            }
            Body::Vec(v) => match self.compress_all(coding, &v) {
                Some(out) if out.len() < v.len() || negotiated.identity_refused => {
                    Body::Full(out.into())
                }
                _ => {
                    res.body = Body::Vec(v);
                    return res;
                }
            },
            Body::File(file) if small(file.len) => {
                res.body = Body::File(file);
                return res;
            }
            // A live stream is flushed after every chunk, so each reaches
            // the client as soon as it is produced; a batched one (always
            // ready) is not, which compresses better and costs less.
            body @ (Body::Stream(_) | Body::File(_)) if !Streaming::room(self.max_streams) => {
                res.body = body;
                return res;
            }
            Body::Stream(chunks) => match Encoder::new(coding, self, 0) {
                Ok(enc) => Body::Stream(Chunks::new(
                    Box::new(Compressing::new(chunks.iter, enc, !chunks.batched)),
                    chunks.batched,
                )),
                Err(e) => {
                    log::error!(
                        "compression: cannot start a {} encoder: {e}",
                        coding.token()
                    );
                    res.body = Body::Stream(chunks);
                    return res;
                }
            },
            Body::File(file) => match Encoder::new(coding, self, 0) {
                // File chunks are read without waiting: gathered into
                // large writes, and not flushed one by one.
                Ok(enc) => Body::Stream(Chunks::new(
                    Box::new(Compressing::new(Box::new(FileChunks(file)), enc, false)),
                    true,
                )),
                Err(e) => {
                    log::error!(
                        "compression: cannot start a {} encoder: {e}",
                        coding.token()
                    );
                    res.body = Body::File(file);
                    return res;
                }
            },
            other @ (Body::Empty | Body::Sse(_)) => {
                res.body = other;
                return res;
            }
        };
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.token()),
        );
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::ACCEPT_RANGES);
        weaken_etag(headers);
        res
    }

    /// A whole body compressed at once (`None` if the encoder failed,
    /// logged: the body is then sent as it is).
    fn compress_all(&self, coding: Coding, data: &[u8]) -> Option<Vec<u8>> {
        let done = Encoder::new(coding, self, data.len() / 2).and_then(|mut enc| {
            enc.write(data)?;
            enc.finish()
        });
        match done {
            Ok(out) => Some(out),
            Err(e) => {
                log::error!("compression: {} failed: {e}", coding.token());
                None
            }
        }
    }
}

/// Preference on equal q-values: the cheapest in CPU first (brotli costs
/// several times what gzip 1 does, at any level; `docs/compression.md`).
fn rank(c: Coding) -> u8 {
    match c {
        #[cfg(feature = "zstd")]
        Coding::Zstd => 0,
        Coding::Gzip => 1,
        Coding::Br => 2,
    }
}

/// A `304` carries the `ETag` and `Vary` the `200` would have (RFC 9110
/// §15.4.5). A handler or the static files compare `If-None-Match` weakly,
/// so a client holding a compressed copy (`W/"x"`) gets a `304` with the
/// strong `"x"` of the uncompressed one: made weak again here, with the
/// `Vary` of the compressed `200`. Whether that `200` would have been
/// compressed cannot be told from the `304` (it has no body): the client's
/// validator says which copy it holds. A client that sent none (a
/// revalidation by date) and accepts a coding holds a compressed copy if
/// the `200` would have been compressed: its `304` gets the weak tag too,
/// or a cache would label its compressed copy with the uncompressed
/// one's tag, and could resume it (`If-Range`) with the wrong bytes.
/// Whether it would, `compressible` says (the static files know: the
/// file's type, and whether a precompressed sibling was chosen), else
/// the `304`'s `Content-Type`; with neither, the tag is left strong.
fn not_modified(
    req: &Request,
    codings: &[Coding],
    compressible: Option<bool>,
    headers: &mut HeaderMap,
) {
    let Some(etag) = headers.get(header::ETAG) else {
        return;
    };
    let etag = etag.as_bytes();
    if etag.starts_with(b"W/") {
        return;
    }
    let mut validators = req.header_all(header::IF_NONE_MATCH.as_str()).peekable();
    let by_date = validators.peek().is_none();
    let holds_weak =
        validators.any(|field| crate::static_files::conditional::names_weak(field, etag));
    let would_compress = compressible.unwrap_or_else(|| {
        headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|ct| compressible_type(ct.as_bytes()))
    });
    let may_hold_compressed = by_date
        && would_compress
        && !headers.contains_key(header::CONTENT_ENCODING)
        && accept::negotiate(req.header_all(header::ACCEPT_ENCODING.as_str()), codings)
            .coding
            .is_some();
    if holds_weak || may_hold_compressed {
        weaken_etag(headers);
        add_vary(headers, &["Accept-Encoding"]);
    }
}

/// Whether a response could be compressed at all, whatever the request
/// accepts (a `false` here owes no `Vary`).
fn eligible(res: &Response) -> bool {
    let status = res.status();
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || matches!(res.body, Body::Empty | Body::Sse(_))
    {
        return false;
    }
    let h = res.headers();
    if h.contains_key(header::CONTENT_ENCODING) || h.contains_key(header::CONTENT_RANGE) {
        return false;
    }
    let no_transform = h.get_all(header::CACHE_CONTROL).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|d| d.trim_ascii().eq_ignore_ascii_case(b"no-transform"))
    });
    if no_transform {
        return false;
    }
    h.get(header::CONTENT_TYPE)
        .is_none_or(|ct| compressible_type(ct.as_bytes()))
}

/// Whether a `Content-Type` is worth compressing: everything but formats
/// that are compressed already, and `application/octet-stream`, the type
/// of binary downloads (installers, disk images, packages, archives of
/// types with no name of their own): mostly compressed already, and
/// compressing one chunk by chunk makes it larger and costs the download
/// its `Content-Length`.
pub(crate) fn compressible_type(ct: &[u8]) -> bool {
    let essence = ct
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    // Office document types run to about 80 bytes.
    let mut lower = [0u8; 128];
    let Some(lower) = lower.get_mut(..essence.len()) else {
        // Longer than any type we skip.
        return true;
    };
    lower.copy_from_slice(essence);
    lower.make_ascii_lowercase();
    let lower: &[u8] = lower;
    if let Some(image) = lower.strip_prefix(b"image/") {
        // SVG is text; BMP and icons are stored uncompressed.
        return matches!(
            image,
            b"svg+xml" | b"bmp" | b"x-icon" | b"vnd.microsoft.icon"
        );
    }
    if lower.starts_with(b"video/") || lower.starts_with(b"audio/") {
        return false;
    }
    // Zip containers: `application/epub+zip`, office documents.
    if lower.ends_with(b"+zip")
        || lower.starts_with(b"application/vnd.openxmlformats-officedocument.")
        || lower.starts_with(b"application/vnd.oasis.opendocument.")
    {
        return false;
    }
    !matches!(
        lower,
        b"application/octet-stream"
            | b"application/vnd.android.package-archive"
            | b"application/vnd.debian.binary-package"
            | b"application/x-rpm"
            | b"application/x-apple-diskimage"
            | b"application/x-msdownload"
            | b"application/x-chrome-extension"
            | b"application/x-xpinstall"
            | b"application/x-lzip"
            | b"application/x-lzma"
            | b"application/x-lz4"
            | b"font/woff"
            | b"font/woff2"
            | b"application/font-woff"
            | b"application/zip"
            | b"application/gzip"
            | b"application/x-gzip"
            | b"application/x-bzip"
            | b"application/x-bzip2"
            | b"application/x-xz"
            | b"application/x-7z-compressed"
            | b"application/x-rar-compressed"
            | b"application/vnd.rar"
            | b"application/zstd"
            | b"application/x-zstd"
            | b"application/x-compress"
            | b"application/x-compressed"
            | b"application/java-archive"
            | b"application/pdf"
            | b"text/event-stream"
    )
}

/// A compressed representation is not byte-for-byte the one a strong
/// `ETag` names: make it weak (`W/"..."`), which `If-None-Match` still
/// matches (weak comparison) and `If-Match`/`If-Range` never do.
fn weaken_etag(headers: &mut HeaderMap) {
    let Some(etag) = headers.get(header::ETAG) else {
        return;
    };
    if etag.as_bytes().starts_with(b"W/") {
        return;
    }
    let mut weak = Vec::with_capacity(etag.len() + 2);
    weak.extend_from_slice(b"W/");
    weak.extend_from_slice(etag.as_bytes());
    if let Ok(v) = HeaderValue::from_bytes(&weak) {
        headers.insert(header::ETAG, v);
    }
}

thread_local! {
    /// Responses this worker compresses as they stream (each holds an
    /// encoder until its body ends), against `Compression::max_streams`.
    static STREAMING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// The warning that the limit was reached was given.
    static WARNED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// One of the worker's [`Compression::max_streams`] places, held by a
/// [`Compressing`] body until it is dropped.
struct Streaming;

impl Streaming {
    /// Whether another streamed response may be compressed now (the
    /// first time not, said once per worker).
    fn room(max: usize) -> bool {
        let room = STREAMING.with(|n| n.get() < max);
        if !room && !WARNED.with(|w| w.replace(true)) {
            log::warn!(
                "compression: {max} files or streams are being compressed; more are sent \
                 uncompressed until one ends (Compression::max_streams)"
            );
        }
        room
    }

    fn take() -> Streaming {
        STREAMING.with(|n| n.set(n.get() + 1));
        Streaming
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        STREAMING.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// A streamed body, compressed chunk by chunk.
struct Compressing {
    inner: Box<dyn Iterator<Item = Bytes>>,
    /// `None` once the compressed stream is finished.
    enc: Option<Encoder>,
    /// Flush after every chunk, so each one reaches the client as soon as
    /// it is produced (a live stream), at a small cost in ratio.
    flush_each: bool,
    /// Its place among the worker's streams being compressed.
    _place: Streaming,
}

impl Compressing {
    fn new(inner: Box<dyn Iterator<Item = Bytes>>, enc: Encoder, flush_each: bool) -> Self {
        Compressing {
            inner,
            enc: Some(enc),
            flush_each,
            _place: Streaming::take(),
        }
    }
}

impl Iterator for Compressing {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        // Encoders write into memory, which cannot fail; if one still
        // reports an error, panicking here cuts the response off (no last
        // chunk), so the client sees a broken body, never a wrong one.
        const BROKEN: &str = "response compression failed";
        loop {
            let enc = self.enc.as_mut()?;
            match self.inner.next() {
                Some(chunk) => {
                    enc.write(&chunk).expect(BROKEN);
                    if self.flush_each {
                        enc.flush().expect(BROKEN);
                    }
                    let out = enc.take();
                    if !out.is_empty() {
                        return Some(out.into());
                    }
                }
                None => {
                    let enc = self.enc.take()?;
                    let out = enc.finish().expect(BROKEN);
                    return (!out.is_empty()).then(|| out.into());
                }
            }
        }
    }
}

/// A file region read in chunks, for compressing as the socket takes it.
struct FileChunks(FileBody);

impl Iterator for FileChunks {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        use std::os::unix::fs::FileExt;
        let file = &mut self.0;
        if file.len == 0 {
            return None;
        }
        let want = usize::try_from(file.len)
            .unwrap_or(usize::MAX)
            .min(64 * 1024);
        let mut buf = vec![0u8; want];
        match file.file.read_at(&mut buf, file.offset) {
            Ok(n) if n > 0 => {
                buf.truncate(n);
                file.offset += n as u64;
                file.len -= n as u64;
                Some(buf.into())
            }
            // Shrunk or unreadable: cut the response off (see
            // `Compressing::next`) rather than end it early looking whole.
            Ok(_) => panic!("a file shrank while being sent"),
            Err(e) => panic!("a file could not be read while being sent: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;
    use std::io::Read;

    fn app(c: Compression) -> App {
        App::new()
            .get("/big", |_: &Request| {
                Response::text("hello tine ".repeat(500))
            })
            .get("/small", |_: &Request| Response::text("short"))
            .get("/png", |_: &Request| {
                let mut res = Response::bytes(vec![7u8; 4096]);
                res.headers_mut()
                    .insert("content-type", HeaderValue::from_static("image/png"));
                res
            })
            .get("/no-transform", |_: &Request| {
                Response::text("x".repeat(4096))
                    .with_header("cache-control", "public, no-transform")
            })
            .get("/encoded", |_: &Request| {
                Response::bytes(vec![1u8; 4096]).with_header("content-encoding", "gzip")
            })
            .get("/tagged", |_: &Request| {
                Response::text("y".repeat(4096))
                    .with_header("etag", "\"v1\"")
                    .with_header("vary", "Origin")
            })
            .get("/noise", |_: &Request| {
                Response::bytes(testkit::incompressible(4096, 0))
            })
            .compress(c)
    }

    fn get(app: &App, path: &str, ae: Option<&str>) -> Response {
        let mut b = Request::builder(Method::GET, path);
        if let Some(ae) = ae {
            b = b.header("accept-encoding", ae);
        }
        app.handle(&mut b.finish())
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn compresses_by_accept_encoding() {
        let app = app(Compression::new());
        let res = get(&app, "/big", Some("gzip"));
        assert_eq!(res.headers()["content-encoding"], "gzip");
        let body = res.body_bytes().unwrap();
        assert_eq!(gunzip(&body), "hello tine ".repeat(500).as_bytes());
        let res = get(&app, "/big", Some("br;q=1, gzip;q=0.5"));
        assert_eq!(res.headers()["content-encoding"], "br");
        let mut out = Vec::new();
        brotli::Decompressor::new(&res.body_bytes().unwrap()[..], 4096)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, "hello tine ".repeat(500).as_bytes());
        // Without the header, or with nothing we know: as it is, with Vary.
        for ae in [None, Some("deflate"), Some("gzip;q=0, br;q=0")] {
            let res = get(&app, "/big", ae);
            assert!(!res.headers().contains_key("content-encoding"), "{ae:?}");
            assert_eq!(res.headers()["vary"], "Accept-Encoding");
        }
    }

    #[test]
    fn skips_what_must_not_or_need_not_be_compressed() {
        let app = app(Compression::new());
        for path in ["/small", "/png", "/no-transform", "/noise"] {
            let res = get(&app, path, Some("gzip"));
            assert!(!res.headers().contains_key("content-encoding"), "{path}");
        }
        // Already encoded: left alone, no second coding.
        let res = get(&app, "/encoded", Some("br"));
        assert_eq!(res.headers()["content-encoding"], "gzip");
        // Refusing identity compresses even a small body.
        let res = get(&app, "/small", Some("gzip, identity;q=0"));
        assert_eq!(res.headers()["content-encoding"], "gzip");
        assert_eq!(gunzip(&res.body_bytes().unwrap()), b"short");
        // A 404 page (tine's, tiny) too.
        assert_eq!(get(&app, "/nope", Some("gzip")).status(), 404);
    }

    #[test]
    fn threshold_is_configurable_and_codings_can_be_turned_off() {
        let res = get(&app(Compression::new()), "/big", Some("br, gzip"));
        assert_eq!(res.headers()["content-encoding"], "gzip");
        let app = app(Compression::new().min_size(1).brotli(false));
        let res = get(&app, "/small", Some("br, gzip;q=0.1"));
        // "short" does not get smaller: sent as it is.
        assert!(!res.headers().contains_key("content-encoding"));
        let res = get(&app, "/big", Some("br, gzip;q=0.1"));
        assert_eq!(res.headers()["content-encoding"], "gzip");
    }

    /// HEAD gets the header fields GET gets (RFC 9110 §9.3.2).
    #[test]
    fn head_gets_the_fields_of_get() {
        let app = app(Compression::new());
        for path in ["/big", "/small", "/tagged"] {
            let get = get(&app, path, Some("gzip"));
            let mut req = Request::builder(Method::HEAD, path)
                .header("accept-encoding", "gzip")
                .finish();
            let head = app.handle(&mut req);
            for name in ["content-encoding", "vary", "etag", "content-length"] {
                let all = |r: &Response| {
                    r.headers()
                        .get_all(name)
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                };
                assert_eq!(all(&head), all(&get), "{path} {name}");
            }
        }
    }

    /// A `304` to a client holding the compressed copy names that copy's
    /// (weak) tag, with its `Vary`; one to a client holding the
    /// uncompressed copy keeps the strong tag.
    #[test]
    fn a_304_names_the_copy_the_client_holds() {
        let app = app(Compression::new()).get("/fresh", |req: &Request| {
            let res = Response::empty(StatusCode::NOT_MODIFIED).with_header("etag", "\"v1\"");
            match req.query_string() {
                Some("typed") => res.with_header("content-type", "text/html"),
                _ => res,
            }
        });
        let not_modified = |inm: &str| {
            let mut req = Request::builder(Method::GET, "/fresh")
                .header("accept-encoding", "gzip")
                .header("if-none-match", inm)
                .finish();
            app.handle(&mut req)
        };
        let res = not_modified("\"v0\", W/\"v1\"");
        assert_eq!(res.headers()["etag"], "W/\"v1\"");
        assert_eq!(res.headers()["vary"], "Accept-Encoding");
        let res = not_modified("\"v1\"");
        assert_eq!(res.headers()["etag"], "\"v1\"");
        assert!(!res.headers().contains_key("vary"));

        // Revalidated by date only: the client may hold either copy; if it
        // accepts a coding, the weak tag is the safe answer.
        let by_date = |accept: &str| {
            let mut req = Request::builder(Method::GET, "/fresh?typed")
                .header("accept-encoding", accept)
                .header("if-modified-since", "Tue, 14 Nov 2023 22:13:20 GMT")
                .finish();
            app.handle(&mut req)
        };
        let res = by_date("gzip");
        assert_eq!(res.headers()["etag"], "W/\"v1\"");
        assert_eq!(res.headers()["vary"], "Accept-Encoding");
        let res = by_date("identity");
        assert_eq!(res.headers()["etag"], "\"v1\"");
        // Without a type the 200 may not have been compressed: left as is.
        let mut req = Request::builder(Method::GET, "/fresh")
            .header("accept-encoding", "gzip")
            .header("if-modified-since", "Tue, 14 Nov 2023 22:13:20 GMT")
            .finish();
        assert_eq!(app.handle(&mut req).headers()["etag"], "\"v1\"");
    }

    #[test]
    fn etag_weakened_vary_merged() {
        let app = app(Compression::new());
        let res = get(&app, "/tagged", Some("gzip"));
        assert_eq!(res.headers()["etag"], "W/\"v1\"");
        let vary: Vec<_> = res.headers().get_all("vary").iter().collect();
        assert_eq!(vary, ["Origin, Accept-Encoding"]);
    }

    #[test]
    fn streams_are_compressed_chunk_by_chunk() {
        let chunks = vec![Bytes::from("first line\n"), Bytes::from("second line\n")];
        let enc = Encoder::new(Coding::Gzip, &Compression::new(), 0).unwrap();
        let mut it = Compressing::new(Box::new(chunks.into_iter()), enc, true);
        // Each compressed piece decodes to its chunk on its own (a sync
        // flush), so the client sees it before the next exists.
        let first = it.next().unwrap();
        let mut d = flate2::write::GzDecoder::new(Vec::new());
        std::io::Write::write_all(&mut d, &first).unwrap();
        std::io::Write::flush(&mut d).unwrap();
        assert_eq!(d.get_ref().as_slice(), b"first line\n");
        let rest: Vec<u8> = it.flat_map(|b| b.to_vec()).collect();
        std::io::Write::write_all(&mut d, &rest).unwrap();
        assert_eq!(d.finish().unwrap(), b"first line\nsecond line\n");
    }

    /// The cost table in `docs/compression.md`: CPU time per KiB of JSON
    /// for each coding and level, and the ratio. A measurement, not a
    /// check: `cargo test --release -p tine --features zstd --lib
    /// compression_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    #[cfg(target_os = "linux")]
    #[allow(clippy::print_stdout)]
    fn compression_cost() {
        let rows: Vec<String> = (0..2000)
            .map(|i| {
                format!(
                    "{{\"id\":{i},\"text\":\"item number {i:08} of the list\",\"done\":{}}}",
                    i % 3 == 0
                )
            })
            .collect();
        let body = format!("[{}]", rows.join(","));
        let kib = body.len() as f64 / 1024.0;
        let mut cases: Vec<(Coding, Compression, String)> = Vec::new();
        for level in [1, 4, 6, 9] {
            cases.push((
                Coding::Gzip,
                Compression::new().gzip_level(level),
                format!("gzip {level}"),
            ));
        }
        for q in [1, 3, 4, 5, 6, 9] {
            cases.push((
                Coding::Br,
                Compression::new().brotli_quality(q),
                format!("br {q}"),
            ));
        }
        #[cfg(feature = "zstd")]
        for level in [1, 3, 6, 9] {
            cases.push((
                Coding::Zstd,
                Compression::new().zstd_level(level),
                format!("zstd {level}"),
            ));
        }
        println!("body: {:.0} KiB of JSON", kib);
        for (coding, config, name) in cases {
            // CPU time of this thread, not wall time: a busy machine
            // would inflate the latter.
            let cpu = || {
                let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
                t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
            };
            let rounds = 30;
            let start = cpu();
            let mut size = 0;
            for _ in 0..rounds {
                size = config.compress_all(coding, body.as_bytes()).unwrap().len();
            }
            let per_kib = (cpu() - start) * 1e6 / rounds as f64 / kib;
            println!(
                "{name:8} {per_kib:6.2} µs/KiB  ratio {:.1}",
                body.len() as f64 / size as f64
            );
        }
    }

    #[test]
    fn compressible_types() {
        for t in [
            "text/html; charset=utf-8",
            "application/json",
            "image/svg+xml",
            "TEXT/CSS",
        ] {
            assert!(compressible_type(t.as_bytes()), "{t}");
        }
        for t in [
            "image/png",
            "video/mp4",
            "font/woff2",
            "application/zip",
            "IMAGE/JPEG; x=y",
            "application/octet-stream",
            "application/vnd.android.package-archive",
            "application/epub+zip",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ] {
            assert!(!compressible_type(t.as_bytes()), "{t}");
        }
    }
}
