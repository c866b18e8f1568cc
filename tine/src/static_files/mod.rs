//! Static file serving: all the *decisions* (path safety, file lookup,
//! content negotiation, conditional requests, ranges), none of the I/O.
//!
//! [`serve`] maps a request to an [`Outcome`]. For a body it hands back an
//! open [`FileBody`] (file + offset + length) that the event loop streams
//! (with `sendfile(2)` where the platform has it). Nothing here blocks
//! except the `openat`/`fstat` calls on the local file system.
//!
//! Safety model: the request path is percent-decoded segment by segment and
//! rejected if any segment is `..`, empty, or decodes to something containing
//! `/`, `\` or NUL. The result is opened relative to the root directory fd by
//! one of two lookups that both refuse any resolution — including through
//! symlinks — that leaves the root, even for a moment:
//!
//! - **Linux** (default): one `openat2(RESOLVE_BENEATH |
//!   RESOLVE_NO_MAGICLINKS)` call; the kernel enforces the rule.
//! - **Portable** (macOS, FreeBSD, other Unixes; Linux kernels before 5.6,
//!   which lack `openat2`; or chosen with
//!   [`StaticConfig::portable_lookup`]): a walk one component at a time
//!   with `openat(O_NOFOLLOW)`, resolving `..` and symlinks itself (see the
//!   `beneath` module). It costs one `openat` per directory on the way.
//!
//! Both serve the same paths: relative symlinks whose resolution stays
//! inside the root work; absolute symlinks, magic links (`/proc/PID/fd/N`)
//! and any link that steps above the root (even to come back) are refused;
//! at most 40 links per lookup. The portable lookup differs only at the
//! edges: on systems without `O_PATH` (all but Linux) it opens the
//! directories on the way read-only, so they must be readable, not just
//! searchable; a link's text plus the rest of the path must fit in
//! `PATH_MAX`; and it gives up after 4096 single-name opens (reached only
//! by links that climb out of and back into trees dozens of levels deep).
//! Everything refused looks exactly like a missing file
//! ([`Outcome::NotFound`]).

use std::ffi::{CStr, OsStr};
use std::fmt::Write as _;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cache::OpenCache;

use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_ENCODING, CONTENT_LANGUAGE,
    CONTENT_RANGE, CONTENT_TYPE, ETAG, LAST_MODIFIED, RANGE, VARY,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use percent_encoding::{utf8_percent_encode, CONTROLS};
use rustix::fd::AsFd;
use rustix::fs::OFlags;
#[cfg(target_os = "linux")]
use rustix::fs::{Mode, ResolveFlags};
use rustix::io::Errno;

use crate::http::Body;
use crate::http::Response;

mod beneath;
pub(crate) mod cache;
pub(crate) mod conditional;
pub(crate) mod encoding;
#[doc(hidden)]
pub(crate) mod fuzz;
mod path;
mod range;
#[cfg(test)]
mod tests;

use conditional::Precondition;
use encoding::Coding;
use path::RelPath;
use range::RangeDecision;

/// Value for the `Allow` header of a [`Outcome::MethodNotAllowed`] response.
pub(crate) const ALLOW: HeaderValue = HeaderValue::from_static("GET, HEAD, OPTIONS");

/// Configuration of one static-file mount, for
/// [`App::static_files`](crate::App::static_files).
///
/// Start from [`StaticConfig::new`] and change what you need; each setter
/// documents its setting and default. (The struct is `#[non_exhaustive]`:
/// settings can be added without breaking code written this way.)
///
/// ```no_run
/// use std::time::Duration;
/// use tine::{App, HeaderValue, StaticConfig};
/// let config = StaticConfig::new("./public")
///     .cache_control(HeaderValue::from_static("public, max-age=3600"))
///     .open_file_cache(Duration::from_secs(10));
/// let app = App::new().static_files("/assets", config);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StaticConfig {
    /// Directory whose contents are served. Nothing outside it is ever
    /// served, whatever the request path or symlinks say.
    pub(crate) root: PathBuf,
    /// See [`StaticConfig::index`].
    pub(crate) index: Option<String>,
    /// See [`StaticConfig::cache_control`].
    pub(crate) cache_control: Option<HeaderValue>,
    /// See [`StaticConfig::precompressed`].
    pub(crate) precompressed: bool,
    /// See [`StaticConfig::open_file_cache`].
    pub(crate) open_file_cache: Option<Duration>,
    /// See [`StaticConfig::portable_lookup`].
    pub(crate) portable_lookup: bool,
}

impl StaticConfig {
    /// Serves the directory `root`, with the defaults: `index.html`, no
    /// `Cache-Control`, precompressed siblings looked up, no open-file
    /// cache. Nothing outside `root` is ever served, whatever the request
    /// path or symlinks say.
    ///
    /// ```
    /// let config = tine::StaticConfig::new("./public");
    /// ```
    pub fn new(root: impl Into<PathBuf>) -> StaticConfig {
        StaticConfig {
            root: root.into(),
            index: Some("index.html".to_owned()),
            cache_control: None,
            precompressed: true,
            open_file_cache: None,
            portable_lookup: false,
        }
    }

    /// File served for a directory request ending in `/` (default
    /// `index.html`). Must be a single path component.
    ///
    /// ```
    /// let config = tine::StaticConfig::new("./public").index("home.html");
    /// ```
    #[must_use]
    pub fn index(mut self, file_name: impl Into<String>) -> Self {
        self.index = Some(file_name.into());
        self
    }

    /// No index file: a directory request ending in `/` gets `404` (there
    /// is no directory listing).
    ///
    /// ```
    /// let config = tine::StaticConfig::new("./public").no_index();
    /// ```
    #[must_use]
    pub fn no_index(mut self) -> Self {
        self.index = None;
        self
    }

    /// `Cache-Control` value added to 200/206/304 responses (default:
    /// none).
    ///
    /// ```
    /// use tine::{HeaderValue, StaticConfig};
    /// let config = StaticConfig::new("./public")
    ///     .cache_control(HeaderValue::from_static("public, max-age=3600"));
    /// ```
    #[must_use]
    pub fn cache_control(mut self, value: impl Into<Option<HeaderValue>>) -> Self {
        self.cache_control = value.into();
        self
    }

    /// Look for precompressed siblings `<file>.br` / `<file>.gz` and serve
    /// them to clients that accept the coding; responses then always carry
    /// `Vary: Accept-Encoding`. Turn off to save the lookups when a
    /// directory has no such files. Default `true`.
    ///
    /// ```
    /// let config = tine::StaticConfig::new("./public").precompressed(false);
    /// ```
    #[must_use]
    pub fn precompressed(mut self, look_up: bool) -> Self {
        self.precompressed = look_up;
        self
    }

    /// Keep opened files and their metadata for this long, per worker
    /// (nginx's `open_file_cache`): a hit saves the open, stat and close
    /// system calls. A file changed on disk may then be served as it was
    /// for up to this long. Default `None` (every request looks again).
    ///
    /// The cached files are open descriptors, counted against the
    /// open-file limit like nginx's:
    ///
    /// - A mount's cache keeps at most 1,024 files per worker, and no more
    ///   than its share of what the open-file limit leaves beside
    ///   [`Limits::max_connections`](crate::Limits::max_connections), the
    ///   listeners and 64 more descriptors (worked out at start-up, with a
    ///   warning naming the numbers when it is less; none at all when the
    ///   limit cannot even hold `max_connections`). When full, it drops
    ///   the files past their time, and if that is not enough, starts
    ///   over.
    /// - Files past their time are closed by the worker's timer, even
    ///   when no request comes: an idle server keeps none open for longer
    ///   than this time plus a quarter of it (and a timer tick, 250 ms),
    ///   and the descriptor of a file deleted meanwhile does not keep its
    ///   disk space.
    /// - When a worker runs out of descriptors (`EMFILE`, `ENFILE`), its
    ///   caches close their files before a lookup gives up with a 503 or
    ///   accepting new connections pauses.
    ///
    /// ```
    /// let config = tine::StaticConfig::new("./public")
    ///     .open_file_cache(std::time::Duration::from_secs(10));
    /// ```
    #[must_use]
    pub fn open_file_cache(mut self, ttl: impl Into<Option<Duration>>) -> Self {
        self.open_file_cache = ttl.into();
        self
    }

    /// Resolve paths with the portable lookup (one `openat(O_NOFOLLOW)` per
    /// path component, `..` and symlinks resolved by tine) instead of
    /// Linux's single `openat2(RESOLVE_BENEATH)` call. Both refuse the same
    /// paths; the portable one costs a system call per directory on the
    /// way. It is what macOS, FreeBSD and Linux before 5.6 always use (there
    /// `false` changes nothing); on Linux, turn it on to try on your machine
    /// what those systems will serve. Default `false`.
    ///
    /// ```
    /// let public = std::env::temp_dir();
    /// let config = tine::StaticConfig::new(public).portable_lookup(true);
    /// let app = tine::App::new().static_files("/static", config);
    /// # let _ = app;
    /// ```
    #[must_use]
    pub fn portable_lookup(mut self, on: bool) -> Self {
        self.portable_lookup = on;
        self
    }
}

/// How a mount resolves paths beneath its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// One `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`.
    #[cfg(target_os = "linux")]
    Openat2,
    /// [`beneath::open`]: component by component.
    Portable,
}

/// Flags of the root descriptor: `O_PATH` where it exists (Linux), so only
/// search permission is needed; elsewhere the root must be readable.
#[cfg(target_os = "linux")]
const ROOT_FLAGS: OFlags = OFlags::PATH.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);
#[cfg(not(target_os = "linux"))]
const ROOT_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);

/// A ready-to-serve mount: a descriptor of the root directory
/// ([`ROOT_FLAGS`]) plus the validated configuration. Opening it once at
/// startup means later renames of the root path do not change what is
/// served.
#[derive(Debug)]
pub(crate) struct Mount {
    root: rustix::fd::OwnedFd,
    lookup: Lookup,
    index: Option<Box<[u8]>>,
    cache_control: Option<HeaderValue>,
    precompressed: bool,
    /// The open-file cache (see the `cache` module).
    cache: Option<Rc<OpenCache>>,
    /// The root as configured, for log lines.
    root_path: PathBuf,
    /// Whether a permission refusal was logged (see `refused_once`).
    refusal_told: std::cell::Cell<bool>,
}

impl Mount {
    /// Opens `cfg.root` and chooses the lookup: `openat2` on Linux unless
    /// `cfg.portable_lookup` is set or the kernel lacks it (`ENOSYS`, before
    /// 5.6), the portable one elsewhere.
    ///
    /// Errors: the root cannot be opened or is not a directory;
    /// `cfg.index` is not a single path component (`InvalidInput`).
    pub(crate) fn open(cfg: StaticConfig) -> io::Result<Mount> {
        let index = match cfg.index {
            Some(name) => {
                let b = name.as_bytes();
                if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("static index {name:?} must be a single file name"),
                    ));
                }
                Some(name.into_bytes().into_boxed_slice())
            }
            None => None,
        };
        let root =
            rustix::fs::open(&cfg.root, ROOT_FLAGS, rustix::fs::Mode::empty()).map_err(|e| {
                let e = io::Error::from(e);
                io::Error::new(e.kind(), format!("static root {}: {e}", cfg.root.display()))
            })?;
        let lookup = if cfg.portable_lookup {
            Lookup::Portable
        } else {
            default_lookup(&root)?
        };
        Ok(Mount {
            root,
            lookup,
            index,
            cache_control: cfg.cache_control,
            precompressed: cfg.precompressed,
            cache: cfg.open_file_cache.map(OpenCache::new),
            root_path: cfg.root,
            refusal_told: std::cell::Cell::new(false),
        })
    }
}

/// The open file and the byte span of it to send.
#[derive(Debug)]
pub(crate) struct FileBody {
    /// The file (opened read-only, close-on-exec; may carry `O_NONBLOCK`,
    /// which has no effect on regular files).
    pub file: Rc<File>,
    /// Offset of the first byte to send.
    pub offset: u64,
    /// Number of bytes to send; also the `Content-Length` to declare.
    pub len: u64,
}

/// What to answer.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Answer 404 Not Found. Also used for everything unsafe, outside the
    /// root, unreadable, or not a regular file, so existence is never
    /// revealed.
    NotFound,
    /// 405: the method is neither GET nor HEAD. Send `Allow:` [`ALLOW`].
    MethodNotAllowed,
    /// 301 to `location`: a directory was requested without a trailing
    /// slash. `location` is the raw request path plus `/`, with the query
    /// string (if `raw_path` had one) kept.
    Redirect {
        /// Value for the `Location` header (already percent-encoded).
        location: String,
    },
    /// A response about the file.
    Respond {
        /// 200, 206, 304, 412 or 416.
        status: StatusCode,
        /// Representation headers (`Content-Type`, `ETag`,
        /// `Last-Modified`, `Accept-Ranges`, `Cache-Control`,
        /// `Content-Encoding`, `Vary`, `Content-Range`, as applicable).
        /// `Content-Length` is *not* included: derive it from `body.len`.
        headers: HeaderMap,
        /// `Some` for 200/206 — **including HEAD requests**, so the encoder
        /// can send `Content-Length: len`; for HEAD the caller must send the
        /// headers only and drop the file. `None` for 304/412/416 (no body;
        /// 412/416 get `Content-Length: 0`, 304 none).
        body: Option<FileBody>,
        /// For a 304: whether the 200 it stands for could be compressed
        /// (a file served as it is, of a type worth compressing), which
        /// the compression middleware cannot tell from a bodiless 304.
        compressible: Option<bool>,
    },
    /// An unexpected local error (out of file descriptors, out of memory,
    /// I/O error) that should become a 500/503, not a 404.
    Error(io::Error),
}

/// Decides how to answer a request for a file under `mount`.
///
/// - `method`: only GET and HEAD are served; Range is honoured for GET only.
/// - `raw_path`: the request target as on the wire (percent-encoded, may
///   include `?query`), used only to build a redirect `Location`.
/// - `rel`: the part of the request path after the mount prefix, still
///   percent-encoded and without the query (e.g. `/css/site.css` or
///   `css/site.css`; one leading `/` is ignored, `""` and `/` mean the root
///   directory).
/// - `headers`: the request headers (`Accept-Encoding`, `Range`, `If-*`).
///
/// A directory requested with a trailing slash is served through its index
/// file; without it, a [`Outcome::Redirect`] adds the slash.
pub(crate) fn serve(
    mount: &Mount,
    method: &Method,
    raw_path: &str,
    rel: &str,
    headers: &HeaderMap,
) -> Outcome {
    let is_get = *method == Method::GET;
    if !is_get && *method != Method::HEAD {
        // Another method: 405 where the mount has something to GET, 404
        // where it has not (the path does not exist, whatever the method).
        return match serve(mount, &Method::HEAD, raw_path, rel, &HeaderMap::new()) {
            Outcome::NotFound => Outcome::NotFound,
            Outcome::Error(e) => Outcome::Error(e),
            _ => Outcome::MethodNotAllowed,
        };
    }
    let Some(mut path) = RelPath::parse(rel) else {
        return Outcome::NotFound;
    };

    // 1. Find the regular file to serve.
    let plain = if path.trailing_slash() {
        // "dir/" → "dir/index.html" directly: a regular file "x/" fails with
        // ENOTDIR, a directory without index with ENOENT; both are 404.
        match &mount.index {
            Some(index) if path.join(index) => open_file(mount, &path),
            _ => return Outcome::NotFound,
        }
    } else {
        match open_node(mount, path.as_cstr()) {
            Ok((_, meta)) if meta.is_dir() => return redirect(raw_path),
            Ok(node) => Ok(node),
            Err(miss) => Err(miss),
        }
        .and_then(only_regular)
    };
    let (file, meta) = match plain {
        Ok(found) => found,
        Err(Miss::NotFound) => return Outcome::NotFound,
        Err(Miss::Error(e)) => return Outcome::Error(e),
    };

    // 2. Content negotiation between the file and its precompressed siblings.
    let (mut file, mut meta, mut coding) = (file, meta, None);
    // With lookups on, other clients may get other bytes for this URL
    // whether or not a sibling exists: caches must know. Always saying so
    // (as nginx's `gzip_vary on`) spares probing for siblings per request.
    let vary = mount.precompressed;
    if mount.precompressed {
        let mark = path.len();
        for c in encoding::preferred(headers) {
            if path.push(c.suffix()) {
                if let Ok((f, m)) = open_file(mount, &path) {
                    (file, meta, coding) = (f, m, Some(c));
                }
            }
            path.truncate(mark);
            if coding.is_some() {
                break;
            }
        }
    }

    // 3. Validators of the selected representation.
    let size = meta.len();
    let etag = etag(&meta, coding);
    let last_modified = last_modified_secs(meta.mtime());
    let mut h = HeaderMap::with_capacity(10);
    if let Some(cc) = &mount.cache_control {
        h.insert(CACHE_CONTROL, cc.clone());
    }
    if vary {
        h.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    if let Some(secs) = last_modified {
        h.insert(LAST_MODIFIED, last_modified_field(secs));
    }

    // 4 and 5. Conditional requests, then a range.
    let decision = select(headers, is_get, etag.as_bytes(), last_modified, size);
    h.insert(ETAG, etag);
    let (status, offset, len) = match decision {
        Selected::NotModified => {
            let compressible = coding.is_none()
                && crate::middleware::compressible_type(content_type(path.as_bytes()).as_bytes());
            return Outcome::Respond {
                status: StatusCode::NOT_MODIFIED,
                headers: h,
                body: None,
                compressible: Some(compressible),
            };
        }
        Selected::Failed => {
            h.remove(CACHE_CONTROL);
            return Outcome::Respond {
                status: StatusCode::PRECONDITION_FAILED,
                headers: h,
                body: None,
                compressible: None,
            };
        }
        Selected::Unsatisfiable => {
            h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            h.insert(CONTENT_RANGE, unsatisfiable_range(size));
            return Outcome::Respond {
                status: StatusCode::RANGE_NOT_SATISFIABLE,
                headers: h,
                body: None,
                compressible: None,
            };
        }
        Selected::Whole => (StatusCode::OK, 0, size),
        Selected::Part { start, len } => {
            h.insert(CONTENT_RANGE, content_range(start, len, size));
            (StatusCode::PARTIAL_CONTENT, start, len)
        }
    };
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // Type of the original file, even when a .br/.gz sibling is sent.
    h.insert(CONTENT_TYPE, content_type(path.as_bytes()));
    if let Some(c) = coding {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static(c.token()));
    }
    Outcome::Respond {
        status,
        headers: h,
        body: Some(FileBody { file, offset, len }),
        compressible: None,
    }
}

/// What a `GET` or `HEAD` of a file of `size` bytes gets, given its
/// validators: see [`select`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Selected {
    /// `304 Not Modified`.
    NotModified,
    /// `412 Precondition Failed`.
    Failed,
    /// `416 Range Not Satisfiable`.
    Unsatisfiable,
    /// `200` with the whole file.
    Whole,
    /// `206` with `len` bytes from `start`.
    Part { start: u64, len: u64 },
}

/// The conditional requests (RFC 9110 §13.2.2), then a range (GET only;
/// one `Range` field; a failed `If-Range` means "send everything", which
/// also skips the 416 check), for a file whose validators are `etag`
/// (with its quotes; empty if it has none) and `last_modified` (Unix
/// seconds). One rule for the static files and for
/// [`Response::file`](crate::Response::file).
pub(crate) fn select(
    headers: &HeaderMap,
    is_get: bool,
    etag: &[u8],
    last_modified: Option<u64>,
    size: u64,
) -> Selected {
    match conditional::evaluate(headers, etag, last_modified) {
        Precondition::Proceed => {}
        Precondition::NotModified => return Selected::NotModified,
        Precondition::Failed => return Selected::Failed,
    }
    let mut ranges = headers.get_all(RANGE).iter();
    let decision = match (ranges.next(), ranges.next()) {
        (Some(v), None) if is_get && conditional::if_range_allows(headers, etag, last_modified) => {
            range::decide(v.as_bytes(), size)
        }
        _ => RangeDecision::Full,
    };
    match decision {
        RangeDecision::Full => Selected::Whole,
        RangeDecision::Partial { start, len } => Selected::Part { start, len },
        RangeDecision::Unsatisfiable => Selected::Unsatisfiable,
    }
}

/// `Content-Range` of a `206`: `len` (at least 1) bytes from `start`.
fn content_range(start: u64, len: u64, size: u64) -> HeaderValue {
    let end = start + len - 1;
    fmt_value(format_args!("bytes {start}-{end}/{size}"))
}

/// `Content-Range` of a `416`.
fn unsatisfiable_range(size: u64) -> HeaderValue {
    fmt_value(format_args!("bytes */{size}"))
}

/// Answers a conditional or range request for a whole file a handler
/// sent ([`Response::file`](crate::Response::file), a `200` that carries
/// the file's validators, or those the handler put in their place), by
/// [`select`]'s rule: `304`, `412`, `416` or `206`, or the `200` as it is.
#[cold]
pub(crate) fn answer_file(method: &Method, headers: &HeaderMap, mut res: Response) -> Response {
    res.whole_file = false;
    let is_get = *method == Method::GET;
    let size = match &res.body {
        Body::File(file) if res.status == StatusCode::OK && (is_get || *method == Method::HEAD) => {
            file.len
        }
        _ => return res,
    };
    let h = res.headers_mut();
    let last_modified = h.get(LAST_MODIFIED).and_then(conditional::parse_date);
    let etag = h.get(ETAG).map_or(&b""[..], |v| v.as_bytes());
    let (status, range) = match select(headers, is_get, etag, last_modified, size) {
        Selected::Whole => return res,
        Selected::Part { start, len } => {
            h.insert(CONTENT_RANGE, content_range(start, len, size));
            if let Body::File(file) = &mut res.body {
                file.offset += start;
                file.len = len;
            }
            res.status = StatusCode::PARTIAL_CONTENT;
            return res;
        }
        Selected::NotModified => (StatusCode::NOT_MODIFIED, None),
        Selected::Failed => (StatusCode::PRECONDITION_FAILED, None),
        Selected::Unsatisfiable => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            Some(unsatisfiable_range(size)),
        ),
    };
    // No body: the fields about it go, as for the static files' answers
    // (a `304` says whether its `200` could be compressed, which the
    // compression middleware cannot tell without its type).
    let compressible = h
        .get(CONTENT_TYPE)
        .is_some_and(|ct| crate::middleware::compressible_type(ct.as_bytes()));
    for name in [CONTENT_TYPE, CONTENT_DISPOSITION, CONTENT_LANGUAGE] {
        h.remove(name);
    }
    if status == StatusCode::PRECONDITION_FAILED {
        h.remove(CACHE_CONTROL);
    }
    if let Some(range) = range {
        h.insert(CONTENT_RANGE, range);
    }
    if status == StatusCode::NOT_MODIFIED {
        res.compressible = Some(compressible);
    }
    res.status = status;
    res.body = Body::Empty;
    res
}

/// Why a lookup produced no file.
#[derive(Debug)]
enum Miss {
    /// Missing, refused, unsafe, not a regular file: all look the same.
    NotFound,
    /// Resource exhaustion or I/O error: not the client's fault.
    Error(io::Error),
}

/// `openat2` if the kernel has it (Linux >= 5.6), else the portable lookup.
#[cfg(target_os = "linux")]
fn default_lookup(root: &rustix::fd::OwnedFd) -> io::Result<Lookup> {
    match openat2(root, c".", OFlags::PATH | OFlags::CLOEXEC) {
        Ok(_) => Ok(Lookup::Openat2),
        Err(Errno::NOSYS) => {
            log::info!("static files: no openat2(2) (Linux < 5.6), using the portable lookup");
            Ok(Lookup::Portable)
        }
        Err(e) => Err(e.into()),
    }
}

/// Only the portable lookup exists outside Linux.
#[cfg(not(target_os = "linux"))]
fn default_lookup(_root: &rustix::fd::OwnedFd) -> io::Result<Lookup> {
    Ok(Lookup::Portable)
}

/// `openat2` beneath the root, retrying the transient `EINTR`/`EAGAIN`
/// (the latter is returned when a concurrent rename races a `..`
/// resolution inside a symlink target).
#[cfg(target_os = "linux")]
fn openat2(
    root: &rustix::fd::OwnedFd,
    path: &CStr,
    flags: OFlags,
) -> Result<rustix::fd::OwnedFd, Errno> {
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    let mut attempts = 0;
    loop {
        match rustix::fs::openat2(root, path, flags, Mode::empty(), resolve) {
            Err(Errno::INTR | Errno::AGAIN) if attempts < 3 => attempts += 1,
            other => return other,
        }
    }
}

/// Opens `path` (any type) for reading and stats it. `O_NONBLOCK` keeps a
/// FIFO from blocking the event loop on open; `O_NOCTTY` keeps a terminal
/// from becoming the controlling one. Sockets fail with `ENXIO`.
fn open_node(mount: &Mount, path: &CStr) -> Result<(Rc<File>, Metadata), Miss> {
    let Some(cache) = &mount.cache else {
        return open_uncached(mount, path);
    };
    let key = path.to_bytes();
    let now = Instant::now();
    if let Some(hit) = cache.get(key, now) {
        return Ok(hit);
    }
    let opened = open_uncached(mount, path);
    match &opened {
        Ok((file, meta)) => cache.insert(key, file, meta, now),
        // Gone (or failing) now: its old descriptor goes too.
        Err(_) => cache.remove(key),
    }
    opened
}

fn open_uncached(mount: &Mount, path: &CStr) -> Result<(Rc<File>, Metadata), Miss> {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    // Out of descriptors, the open-file caches give theirs back and the
    // lookup is tried again before it becomes a 503 (see `cache`).
    let fd = cache::open_or_release(|| match mount.lookup {
        #[cfg(target_os = "linux")]
        Lookup::Openat2 => openat2(&mount.root, path, flags),
        Lookup::Portable => beneath::open(mount.root.as_fd(), path.to_bytes(), flags),
    });
    let fd = fd.map_err(|e| match e {
        Errno::MFILE | Errno::NFILE | Errno::NOMEM | Errno::IO => Miss::Error(e.into()),
        Errno::ACCESS | Errno::PERM => {
            refused_once(mount, path);
            Miss::NotFound
        }
        _ => Miss::NotFound,
    })?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(Miss::Error)?;
    Ok((Rc::new(file), meta))
}

/// A file (or a directory on the way) this process may not open: still a
/// `404` to the client, like a missing file, but said once per mount in
/// the log at warn level. A root that only root can read, served by
/// workers that dropped privileges, is otherwise a site of silent 404s.
#[cold]
fn refused_once(mount: &Mount, path: &CStr) {
    if !mount.refusal_told.replace(true) {
        log::warn!(
            "static files: permission denied opening {:?} under {} (can this process's \
             user read it?); such files are answered 404; said once",
            path,
            mount.root_path.display()
        );
    }
}

/// [`open_node`] restricted to regular files.
fn open_file(mount: &Mount, path: &RelPath) -> Result<(Rc<File>, Metadata), Miss> {
    open_node(mount, path.as_cstr()).and_then(only_regular)
}

fn only_regular((file, meta): (Rc<File>, Metadata)) -> Result<(Rc<File>, Metadata), Miss> {
    if meta.is_file() {
        Ok((file, meta))
    } else {
        Err(Miss::NotFound)
    }
}

/// 301 target for a directory requested without its trailing slash.
fn redirect(raw_path: &str) -> Outcome {
    let (path, query) = match raw_path.find('?') {
        Some(q) => raw_path.split_at(q),
        None => (raw_path, ""),
    };
    // "//host/x/" or "/\host/x/" would be read as a network-path reference
    // (an open redirect); refuse rather than rewrite.
    if !path.starts_with('/') || path[1..].starts_with(['/', '\\']) {
        return Outcome::NotFound;
    }
    // A client may send raw bytes past ASCII in the target (httparse lets
    // them through, as servers commonly do); a `Location` carries them
    // percent-encoded, as a URI must (RFC 3986 §2.1).
    let mut location = String::with_capacity(raw_path.len() + 1);
    location.extend(utf8_percent_encode(path, CONTROLS));
    location.push('/');
    location.extend(utf8_percent_encode(query, CONTROLS));
    Outcome::Redirect { location }
}

/// `Content-Type` of the original (uncompressed) file, from its extension.
/// Textual types get `; charset=utf-8`.
fn content_type(path: &[u8]) -> HeaderValue {
    let guess = mime_guess::from_path(Path::new(OsStr::from_bytes(path)));
    let mime = guess.first_raw().unwrap_or("application/octet-stream");
    let textual = mime.starts_with("text/")
        || matches!(
            mime,
            "application/javascript" | "application/json" | "image/svg+xml"
        );
    if textual {
        fmt_value(format_args!("{mime}; charset=utf-8"))
    } else {
        HeaderValue::from_static(mime)
    }
}

/// Strong ETag `"<size hex>-<mtime secs hex>.<mtime nanos hex>[-br|-gz]"`.
/// The coding suffix makes each precompressed variant's tag distinct from
/// the identity one even if sizes and mtimes collide.
fn etag(meta: &Metadata, coding: Option<Coding>) -> HeaderValue {
    let suffix = match coding {
        Some(Coding::Br) => "-br",
        Some(Coding::Gzip) => "-gz",
        None => "",
    };
    let (size, secs, nanos) = (meta.len(), meta.mtime(), meta.mtime_nsec());
    fmt_value(format_args!("\"{size:x}-{secs:x}.{nanos:x}{suffix}\""))
}

/// The validators of a whole file as it is (no coding), for
/// [`Response::file`](crate::Response::file): its `ETag`, and its
/// `Last-Modified` when it has a usable time.
pub(crate) fn file_validators(meta: &Metadata) -> (HeaderValue, Option<HeaderValue>) {
    let last_modified = last_modified_secs(meta.mtime()).map(last_modified_field);
    (etag(meta, None), last_modified)
}

/// `Last-Modified` for a file modified at `secs`, never later than now
/// (RFC 9110 §8.8.2.1: a time in the future, from an archive or a
/// clock-skewed build machine, is sent as the message's date).
/// Conditions are still evaluated against the file's own time, so a
/// client holding the clamped date gets the file again rather than a 304
/// once it changes (before its future time).
fn last_modified_field(secs: u64) -> HeaderValue {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let date = httpdate::HttpDate::from(UNIX_EPOCH + Duration::from_secs(secs.min(now)));
    fmt_value(format_args!("{date}"))
}

/// Modification time in whole Unix seconds, if it can be written as an
/// HTTP-date (1970 ..= 9999); otherwise no `Last-Modified` is sent and date
/// conditions are ignored.
fn last_modified_secs(mtime: i64) -> Option<u64> {
    const YEAR_10000: u64 = 253_402_300_800;
    u64::try_from(mtime).ok().filter(|&s| s < YEAR_10000)
}

/// Formats a header value on the stack, then copies it into the value's
/// own exact-size buffer: one allocation per header value, no `String`.
/// Only used for text we generate (visible ASCII, < 128 bytes).
fn fmt_value(args: std::fmt::Arguments<'_>) -> HeaderValue {
    struct StackBuf {
        buf: [u8; 128],
        len: usize,
    }
    impl std::fmt::Write for StackBuf {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let end = self.len + s.len();
            let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
            dst.copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }
    let mut b = StackBuf {
        buf: [0; 128],
        len: 0,
    };
    match b.write_fmt(args) {
        Ok(()) => HeaderValue::from_bytes(&b.buf[..b.len]),
        Err(_) => HeaderValue::from_str(&args.to_string()),
    }
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}
