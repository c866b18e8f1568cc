//! Access logs ([`App::access_log`](crate::App::access_log)) and request
//! ids: see [`AccessLog`](crate::AccessLog).

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};

use http::header::HeaderValue;

use crate::http::{Body, Request, Response};

/// The line format of an [`AccessLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// NCSA common log format, plus `rt=`, `worker=` and `id=` fields.
    Common,
    /// Common plus the quoted `Referer` and `User-Agent` (Apache's and
    /// nginx's `combined`), plus the same fields.
    Combined,
    /// One JSON object per line.
    Json,
}

/// Where and how requests are logged: see [`App::access_log`](crate::App::access_log).
///
/// One line per answered request, in the common or combined log format or
/// as a JSON object, written whole with one `write` to a file opened for
/// appending (or to stdout): lines from several worker processes never
/// interleave (see *Line length* for why this holds on a pipe too). Each
/// line also carries the response time (the time to
/// produce the response: hooks and handler), the response's body size,
/// the worker slot and the request id:
///
/// ```text
/// 203.0.113.7 - - [03/Dec/2026:21:27:27 +0000] "GET /hello/x HTTP/1.1" 200 13 rt=0.000041 worker=2 id=3f2a09c1d4e5b6a7-1c
/// 203.0.113.7 - - [03/Dec/2026:21:27:27 +0000] "GET / HTTP/1.1" 200 13 "https://example.com/" "curl/8.0" rt=0.000041 worker=2 id=3f2a09c1d4e5b6a7-1d
/// {"time":"2026-12-03T21:27:27.123Z","client":"203.0.113.7","method":"GET","target":"/","protocol":"HTTP/1.1","status":200,"bytes":13,"duration_seconds":0.000041,"referer":null,"user_agent":"curl/8.0","worker":2,"request_id":"3f2a09c1d4e5b6a7-1e"}
/// ```
///
/// The client is [`Request::client_addr`] (so the address behind trusted
/// proxies); `unix:` for a client on a Unix-domain listener that no
/// trusted proxy named (nginx's spelling). The size is the response body's (`-` in the text formats, `null`
/// in JSON, for a streamed body, whose size is not known up front; 0 for
/// `HEAD`). In the text formats, `"` and `\` in the request line, referer
/// and user agent are escaped with `\`, and other bytes outside printable
/// ASCII as `\xHH`, as nginx does.
///
/// **Refused requests.** A request tine refuses is logged too, with what
/// could be read of it: a request line that cannot be read as one (a bad
/// byte in the method or the target) is logged as it came, escaped, in
/// place of `METHOD TARGET PROTOCOL` (in JSON: `"request"`, with
/// `"method"`, `"target"` and `"protocol"` null), and nothing at all as
/// `-` (in JSON: no `"request"` key, and those three null; a bad PROXY
/// protocol header); a protocol tine does not speak
/// (`HTTP/9.9`, answered 505) is logged as sent.
///
/// **Line length.** A line is at most 4096 bytes (`PIPE_BUF` on Linux):
/// a write of at most that many bytes to a pipe is atomic, so lines from
/// several workers sharing a pipe on stdout (a container's log collector)
/// never tear, while a longer write may be split and interleaved with
/// another worker's. The fields a client chooses are cut to make room:
/// the method to 32 bytes, the request target to 2048, the referer and
/// the user agent to 768 each, the protocol to 16 (as written, after
/// escaping); a field that was cut ends in `...` (inside the JSON string,
/// so a JSON line stays valid JSON).
///
/// **Lost lines.** Each line is one `write(2)`, never completed by a
/// second one that another process's line could come between. A line
/// that cannot be written (a non-blocking pipe that is full, a full disk)
/// is dropped, not retried, so that a stuck log reader does not stall the
/// server; a write cut short (possible on a full disk, not on a pipe for
/// lines of this size) is ended with a newline so that the next line
/// starts whole. Lost lines are counted and reported in a warning, at
/// most once a minute.
///
/// **Request ids.** With an access log, every request gets an id: its
/// `X-Request-Id` header when that is 1 to 64 characters of
/// `A-Z a-z 0-9 - _ . : +`, otherwise a generated one (a per-process
/// random prefix and a counter, unique across workers). Handlers read it
/// with [`Request::request_id`]; the response echoes it in `X-Request-Id`.
///
/// **The file.** The file is opened at start-up, in the process that
/// starts, by [`App::bind`](crate::App::bind): a file that cannot be
/// opened (a missing directory, no permission) is an error there, and the
/// server does not start, as with nginx. A file created then belongs to
/// the workers' [user](crate::App::user). Each worker then opens it
/// for itself as it starts.
///
/// **Rotation.** On `SIGUSR1` (to the master, which passes it to every
/// worker, or to a single process) the log file is opened again by its
/// path, as with nginx: rename the file, send `SIGUSR1`, and new lines go
/// to a new file while the old one can be compressed. If it cannot be
/// opened again (its directory is gone), lines still go to the file
/// already open, and the open is tried again at most once a minute, with
/// a warning each time it fails.
///
/// ```
/// use tine::AccessLog;
/// let to_stdout = AccessLog::combined();
/// let to_file = AccessLog::json().to_file("/var/log/app/access.log");
/// ```
#[derive(Debug, Clone)]
pub struct AccessLog {
    format: LogFormat,
    path: Option<PathBuf>,
}

impl AccessLog {
    /// The common log format, to stdout.
    pub fn common() -> AccessLog {
        AccessLog::new(LogFormat::Common)
    }

    /// The combined log format, to stdout.
    pub fn combined() -> AccessLog {
        AccessLog::new(LogFormat::Combined)
    }

    /// JSON lines, to stdout.
    pub fn json() -> AccessLog {
        AccessLog::new(LogFormat::Json)
    }

    /// `format`, to stdout.
    pub fn new(format: LogFormat) -> AccessLog {
        AccessLog { format, path: None }
    }

    /// Appends to the file at `path` instead (created if missing; checked
    /// at start-up, opened by each worker, and again on `SIGUSR1`).
    pub fn to_file(mut self, path: impl Into<PathBuf>) -> AccessLog {
        self.path = Some(path.into());
        self
    }

    /// The format.
    pub fn format(&self) -> LogFormat {
        self.format
    }
}

/// A request's id (see the module docs), in its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestId(pub(crate) HeaderValue);

/// Set by `SIGUSR1`: the next line reopens the file first.
static REOPEN: AtomicBool = AtomicBool::new(false);

/// Asks for the log file to be reopened (the event loop calls this on
/// `SIGUSR1`).
pub(crate) fn reopen() {
    REOPEN.store(true, Relaxed);
}

/// The longest line: `PIPE_BUF` on Linux, the most a write to a pipe
/// keeps whole (see "Line length" on [`AccessLog`]).
pub(crate) const MAX_LINE: usize = 4096;

/// The caps of the fields a client chooses, in bytes as written (after
/// escaping), `...` included. With the other fields at their longest
/// (an IPv6 client, a 64-character request id, 20-digit numbers) a line
/// stays under [`MAX_LINE`] (a test checks the worst case).
const METHOD_CAP: usize = 32;
const TARGET_CAP: usize = 2048;
const PROTOCOL_CAP: usize = 16;
const REFERER_CAP: usize = 768;
const AGENT_CAP: usize = 768;
/// A raw request line takes the place of the method, target and protocol.
const LINE_CAP: usize = METHOD_CAP + TARGET_CAP + PROTOCOL_CAP + 2;

/// How often a failing log file is tried again (and warned about).
const RETRY: Duration = Duration::from_secs(60);

/// This process's log file and what went wrong with it.
#[derive(Default)]
struct Sink {
    /// The open file (`None` until the worker opened it at its start, or
    /// while it cannot be opened).
    file: Option<File>,
    /// After a failed open: when to try again.
    retry_at: Option<Instant>,
    /// Lines lost since the last warning.
    lost: u64,
    /// After a warning about a lost line: no other until then.
    quiet_until: Option<Instant>,
}

thread_local! {
    static SINK: RefCell<Sink> = RefCell::new(Sink::default());
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A random per-process prefix: hashed from the pid, the time and a
/// `RandomState` (whose keys are random per process start; forked workers
/// differ by pid and time).
fn prefix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    thread_local! {
        static PREFIX: std::cell::Cell<(u32, u64)> = const { std::cell::Cell::new((0, 0)) };
    }
    let pid = std::process::id();
    PREFIX.with(|p| {
        let (owner, value) = p.get();
        if owner == pid {
            return value;
        }
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(pid);
        h.write_u128(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let v = h.finish();
        p.set((pid, v));
        v
    })
}

/// Whether a client's `X-Request-Id` is kept.
fn acceptable(id: &[u8]) -> bool {
    (1..=64).contains(&id.len())
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-_.:+".contains(&b))
}

/// The request's id: its own if acceptable, else a new one.
pub(crate) fn request_id(req: &Request) -> HeaderValue {
    if let Some(v) = req.headers().get("x-request-id") {
        if acceptable(v.as_bytes()) {
            return v.clone();
        }
    }
    generated_id()
}

/// A new request id.
fn generated_id() -> HeaderValue {
    let n = COUNTER.fetch_add(1, Relaxed);
    let id = format!("{:016x}-{n:x}", prefix());
    HeaderValue::from_str(&id).expect("hex digits and a dash")
}

/// The protocol a refused request named when it is not one
/// [`http::Version`] holds (`HTTP/9.9`): logged as sent.
#[derive(Debug, Clone)]
pub(crate) struct SentVersion(pub(crate) Box<[u8]>);

impl Request {
    /// This request's id, when the app keeps an
    /// [access log](crate::App::access_log): its `X-Request-Id` if that is
    /// short and made of safe characters, else one tine generated. The
    /// response carries it back in `X-Request-Id`.
    ///
    /// ```
    /// use tine::{Method, Request};
    /// let req = Request::builder(Method::GET, "/").finish();
    /// assert_eq!(req.request_id(), None); // no access log here
    /// ```
    pub fn request_id(&self) -> Option<&str> {
        self.extensions()
            .get::<RequestId>()
            .and_then(|id| id.0.to_str().ok())
    }
}

/// Starts a request's log record: its id (in the extensions; echoed by
/// [`finish`]).
pub(crate) fn begin(req: &mut Request) {
    let id = request_id(req);
    req.extensions_mut().insert(RequestId(id));
}

/// Echoes the id on the response and writes the line.
pub(crate) fn finish(log: &AccessLog, req: &Request, res: &mut Response, took: Duration) {
    if let Some(id) = req.extensions().get::<RequestId>() {
        res.headers_mut().insert("x-request-id", id.0.clone());
    }
    let line = format_line(log.format, req, res, took, SystemTime::now());
    write_line(log, line.as_bytes());
}

/// Like [`finish`], for a refusal before any request line could be read:
/// `line` is the raw first line, if anything came. The refusal gets a
/// generated id.
pub(crate) fn finish_bare(
    log: &AccessLog,
    line: Option<&[u8]>,
    peer: SocketAddr,
    res: &mut Response,
    took: Duration,
) {
    let id = generated_id();
    let record = Record {
        client: client_text(
            crate::proxies::canonical(peer.ip()),
            peer == crate::server::UNIX_PEER,
        ),
        request: match line {
            Some(line) => RequestLine::Raw(line),
            None => RequestLine::Nothing,
        },
        status: res.status.as_u16(),
        bytes: body_size(false, res),
        referer: None,
        user_agent: None,
        request_id: id.to_str().ok(),
    };
    let text = format_record(log.format, &record, took, SystemTime::now());
    res.headers_mut().insert("x-request-id", id);
    write_line(log, text.as_bytes());
}

/// Checks at start-up that the log file can be opened for appending,
/// creating it if missing: an error names the file.
///
/// With `owner` (the workers' user and group, `App::user`) the file is
/// made theirs, since the workers open it themselves after dropping root:
/// a root-owned file would pass this check and then take no line. A file
/// created here gets their user and group; one already there gets their
/// user only (its group, such as `adm` for log readers, stays), as nginx
/// does with its logs. Never through a link: the log directory may be
/// writable by that user, and a link planted there must not have root
/// hand its target over, or create it. So the file is opened without
/// following a symbolic link, and given only if it is a regular file with
/// no other name (a hard link to another file has two); otherwise it is
/// checked, not created, and left as it is, with a warning.
pub(crate) fn check(
    log: &AccessLog,
    owner: Option<&crate::server::privileges::Credentials>,
) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let Some(path) = &log.path else {
        return Ok(());
    };
    let named = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("tine: access log {}: {e}", path.display()),
        )
    };
    let Some(who) = owner else {
        return open(path).map(drop).map_err(named);
    };
    let existed = std::fs::symlink_metadata(path).is_ok();
    let no_follow = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path);
    let not_given = |why: &str| {
        log::warn!(
            "access log {}: {why}; not given to {}, whose workers may be unable to write it",
            path.display(),
            who.name
        );
    };
    let file = match no_follow {
        Ok(file) => file,
        // A symbolic link (the error differs: `ELOOP` on Linux and macOS,
        // `EMLINK` on FreeBSD): checked without creating its target.
        Err(_) if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) => {
            std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(named)?;
            not_given("a symbolic link");
            return Ok(());
        }
        Err(e) => return Err(named(e)),
    };
    let meta = file.metadata().map_err(named)?;
    if !meta.file_type().is_file() || meta.nlink() != 1 {
        not_given("not a regular file of one name");
        return Ok(());
    }
    let uid = who.uid.map(nix::unistd::Uid::as_raw);
    let gid = (!existed).then(|| who.gid.as_raw());
    let changes = uid.is_some_and(|u| u != meta.uid()) || gid.is_some_and(|g| g != meta.gid());
    if changes {
        std::os::unix::fs::fchown(&file, uid, gid).map_err(|e| {
            io::Error::other(format!(
                "tine: cannot give the access log {} to {}: {e}",
                path.display(),
                who.name
            ))
        })?;
    }
    Ok(())
}

/// Opens the log file in a process about to serve (a failure is warned
/// about; the open is tried again later).
pub(crate) fn open_now(log: &AccessLog) {
    if let Some(path) = &log.path {
        SINK.with(|sink| sink.borrow_mut().open(path));
    }
}

fn open(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Writes a line (at most [`MAX_LINE`] bytes) with one `write(2)`: see
/// "Lost lines" on [`AccessLog`].
fn write_line(log: &AccessLog, line: &[u8]) {
    debug_assert!(line.len() <= MAX_LINE, "{} bytes", line.len());
    SINK.with(|sink| {
        let mut sink = sink.borrow_mut();
        let sink = &mut *sink;
        let written = match &log.path {
            None => {
                // Straight to the file descriptor: `Stdout`'s buffer would
                // finish a partial write with a second one. Anything this
                // process left in that buffer goes first.
                let mut out = io::stdout().lock();
                let _ = out.flush();
                write_once(line, |l| Ok(nix::unistd::write(out.as_fd(), l)?))
            }
            Some(path) => {
                sink.open(path);
                match &sink.file {
                    Some(file) => write_once(line, |l| {
                        let mut file = file;
                        file.write(l)
                    }),
                    None => Err(None),
                }
            }
        };
        if let Err(e) = written {
            sink.lost(log, e);
        }
    });
}

/// One `write` of `line`, again only when interrupted before anything was
/// written. A write cut short is ended with a newline (the line is lost,
/// the next one starts whole).
fn write_once(
    line: &[u8],
    mut write: impl FnMut(&[u8]) -> io::Result<usize>,
) -> Result<(), Option<io::Error>> {
    loop {
        match write(line) {
            Ok(n) if n == line.len() => return Ok(()),
            Ok(n) => {
                let _ = write(b"\n");
                return Err(Some(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("a line cut short after {n} of {} bytes", line.len()),
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Some(e)),
        }
    }
}

impl Sink {
    /// Opens the file if it is not open yet, or again after `SIGUSR1` or
    /// once a failed open is due for another try; keeps the file already
    /// open when that fails.
    fn open(&mut self, path: &Path) {
        let reopen = REOPEN.swap(false, Relaxed);
        let due = match self.retry_at {
            None => self.file.is_none(),
            Some(at) => Instant::now() >= at,
        };
        if !(reopen || due) {
            return;
        }
        match open(path) {
            Ok(file) => {
                self.file = Some(file);
                self.retry_at = None;
            }
            Err(e) => {
                self.retry_at = Some(Instant::now() + RETRY);
                let now = match self.file {
                    Some(_) => "lines go to the file already open",
                    None => "lines are lost",
                };
                log::warn!(
                    "access log {}: cannot open it: {e}; {now}, trying again in {}s",
                    path.display(),
                    RETRY.as_secs()
                );
            }
        }
    }

    /// Counts a lost line, and warns at most once a minute (`e`: why, if
    /// not that the file could not be opened, already warned about).
    #[cold]
    fn lost(&mut self, log: &AccessLog, e: Option<io::Error>) {
        self.lost += 1;
        let Some(e) = e else {
            return;
        };
        let now = Instant::now();
        if self.quiet_until.is_some_and(|until| now < until) {
            return;
        }
        self.quiet_until = Some(now + RETRY);
        let to = match &log.path {
            Some(path) => path.display().to_string(),
            None => "stdout".to_string(),
        };
        log::warn!(
            "access log {to}: {e}; {} line(s) lost since the last warning",
            std::mem::take(&mut self.lost)
        );
    }
}

/// The body size for the log (`None`: a stream).
fn body_size(head: bool, res: &Response) -> Option<u64> {
    if head {
        return Some(0);
    }
    match &res.body {
        Body::Empty => Some(0),
        Body::Full(b) => Some(b.len() as u64),
        Body::Vec(v) => Some(v.len() as u64),
        Body::File(f) => Some(f.len),
        Body::Stream(_) | Body::Sse(_) => None,
    }
}

/// The length of a byte as [`escape`] writes it.
fn escaped_len(b: u8) -> usize {
    match b {
        b'"' | b'\\' => 2,
        0x20..=0x7e => 1,
        _ => 4,
    }
}

/// `"` and `\` escaped with `\`, other bytes outside printable ASCII as
/// `\xHH`; at most `cap` bytes, ending in `...` when cut.
fn escape(out: &mut String, s: &[u8], cap: usize) {
    let whole = s.iter().map(|&b| escaped_len(b)).sum::<usize>() <= cap;
    let room = if whole { usize::MAX } else { cap - 3 };
    let mut used = 0;
    for &b in s {
        used += escaped_len(b);
        if used > room {
            break;
        }
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    }
    if !whole {
        out.push_str("...");
    }
}

/// The most bytes `c` takes in a JSON string (`serde_json` writes control
/// characters as `\n` or `\u00XX`, `"` and `\` escaped, the rest as is).
fn json_len(c: char) -> usize {
    match c {
        '"' | '\\' => 2,
        '\u{0}'..='\u{1f}' => 6,
        c => c.len_utf8(),
    }
}

/// `s` (as UTF-8, invalid sequences replaced) cut so that it takes at
/// most `cap` bytes inside a JSON string, ending in `...` when cut.
fn json_text(s: &[u8], cap: usize) -> String {
    let s = String::from_utf8_lossy(s);
    if s.chars().map(json_len).sum::<usize>() <= cap {
        return s.into_owned();
    }
    let mut out = String::with_capacity(cap);
    let mut used = 0;
    for c in s.chars() {
        used += json_len(c);
        if used > cap - 3 {
            break;
        }
        out.push(c);
    }
    out.push_str("...");
    out
}

fn target(req: &Request) -> String {
    match req.query_string() {
        Some(q) => format!("{}?{q}", req.raw_path()),
        None => req.raw_path().to_string(),
    }
}

/// What a line says of the request.
enum RequestLine<'a> {
    /// A request line that was read.
    Parsed {
        method: &'a str,
        target: String,
        protocol: Cow<'a, [u8]>,
    },
    /// A first line that could not be read as a request line, as it came.
    Raw(&'a [u8]),
    /// Nothing came (or nothing that could be shown).
    Nothing,
}

/// The fields of a line, from a request or from what is known of a
/// refused one.
struct Record<'a> {
    client: ClientText,
    request: RequestLine<'a>,
    status: u16,
    bytes: Option<u64>,
    referer: Option<&'a [u8]>,
    user_agent: Option<&'a [u8]>,
    request_id: Option<&'a str>,
}

pub(crate) fn format_line(
    format: LogFormat,
    req: &Request,
    res: &Response,
    took: Duration,
    now: SystemTime,
) -> String {
    let header = |name: &str| req.headers().get(name).map(HeaderValue::as_bytes);
    let protocol = match req.extensions().get::<SentVersion>() {
        Some(sent) => Cow::Borrowed(&sent.0[..]),
        None => Cow::Borrowed(version_text(req.version())),
    };
    let record = Record {
        client: client_text(req.client_addr(), req.is_unix_peer()),
        request: RequestLine::Parsed {
            method: req.method().as_str(),
            target: target(req),
            protocol,
        },
        status: res.status.as_u16(),
        bytes: body_size(req.method() == http::Method::HEAD, res),
        referer: header("referer"),
        user_agent: header("user-agent"),
        request_id: req.request_id(),
    };
    format_record(format, &record, took, now)
}

/// A line: at most [`MAX_LINE`] bytes, ending in a newline.
fn format_record(format: LogFormat, r: &Record<'_>, took: Duration, now: SystemTime) -> String {
    let worker = crate::worker().index;
    let id = r.request_id.unwrap_or("-");
    let mut line = String::with_capacity(256);
    match format {
        LogFormat::Common | LogFormat::Combined => {
            let _ = write!(line, "{} - - [{}] \"", r.client, clf_time(now));
            match &r.request {
                RequestLine::Parsed {
                    method,
                    target,
                    protocol,
                } => {
                    escape(&mut line, method.as_bytes(), METHOD_CAP);
                    line.push(' ');
                    escape(&mut line, target.as_bytes(), TARGET_CAP);
                    line.push(' ');
                    escape(&mut line, protocol, PROTOCOL_CAP);
                }
                RequestLine::Raw(raw) => escape(&mut line, raw, LINE_CAP),
                RequestLine::Nothing => line.push('-'),
            }
            let _ = write!(line, "\" {} ", r.status);
            match r.bytes {
                Some(n) => {
                    let _ = write!(line, "{n}");
                }
                None => line.push('-'),
            }
            if format == LogFormat::Combined {
                for (value, cap) in [(r.referer, REFERER_CAP), (r.user_agent, AGENT_CAP)] {
                    line.push_str(" \"");
                    match value {
                        Some(v) => escape(&mut line, v, cap),
                        None => line.push('-'),
                    }
                    line.push('"');
                }
            }
            let _ = writeln!(
                line,
                " rt={:.6} worker={worker} id={id}",
                took.as_secs_f64()
            );
        }
        LogFormat::Json => {
            let text = |v: Option<&[u8]>, cap| v.map(|v| json_text(v, cap));
            let (method, target, protocol, raw) = match &r.request {
                RequestLine::Parsed {
                    method,
                    target,
                    protocol,
                } => (
                    Some(json_text(method.as_bytes(), METHOD_CAP)),
                    Some(json_text(target.as_bytes(), TARGET_CAP)),
                    Some(json_text(protocol, PROTOCOL_CAP)),
                    None,
                ),
                RequestLine::Raw(raw) => (None, None, None, Some(json_text(raw, LINE_CAP))),
                RequestLine::Nothing => (None, None, None, None),
            };
            let mut v = serde_json::json!({
                "time": iso_time(now),
                "client": r.client.to_string(),
                "method": method,
                "target": target,
                "protocol": protocol,
                "status": r.status,
                "bytes": r.bytes,
                "duration_seconds": took.as_secs_f64(),
                "referer": text(r.referer, REFERER_CAP),
                "user_agent": text(r.user_agent, AGENT_CAP),
                "worker": worker,
                "request_id": r.request_id,
            });
            if let Some(raw) = raw {
                v["request"] = raw.into();
            }
            line = v.to_string();
            line.push('\n');
        }
    }
    line
}

/// Days since 1970-01-01 as a civil (proleptic Gregorian) date: the
/// standard algorithm (Howard Hinnant's `civil_from_days`), since the
/// standard library formats no dates.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn split(now: SystemTime) -> (i64, u32, u32, u64, u32) {
    let d = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil((secs / 86_400) as i64);
    (y, m, day, secs % 86_400, d.subsec_millis())
}

/// `03/Dec/2026:21:27:27 +0000` (UTC).
fn clf_time(now: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, s, _) = split(now);
    format!(
        "{d:02}/{}/{y}:{:02}:{:02}:{:02} +0000",
        MONTHS[m as usize - 1],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// `2026-12-03T21:27:27.123Z`.
fn iso_time(now: SystemTime) -> String {
    let (y, m, d, s, ms) = split(now);
    format!(
        "{y}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

impl crate::App {
    /// Writes an access log line per request (see [`AccessLog`] for the
    /// formats and the fields),
    /// each line in one write, and gives every request an id (kept from
    /// `X-Request-Id` when short and safe, else generated) that the
    /// response echoes. The file is reopened on `SIGUSR1` (logrotate).
    /// [`log_requests`](crate::App::log_requests) keeps its own short
    /// lines through the `log` facade; the two can be combined.
    ///
    /// ```
    /// use tine::{AccessLog, App};
    /// let app = App::new().access_log(AccessLog::combined().to_file("access.log"));
    /// ```
    pub fn access_log(mut self, log: AccessLog) -> Self {
        self.service.access_log = Some(std::rc::Rc::new(log));
        self
    }
}

/// The client as logged: its address, or `unix:` for a Unix-domain peer
/// that no trusted proxy named (it has no address).
fn client_text(addr: IpAddr, unix_peer: bool) -> ClientText {
    ClientText(if addr.is_unspecified() && unix_peer {
        None
    } else {
        Some(addr)
    })
}

/// The protocol of a request that was read, as its request line says it.
fn version_text(v: http::Version) -> &'static [u8] {
    match v {
        http::Version::HTTP_09 => b"HTTP/0.9",
        http::Version::HTTP_10 => b"HTTP/1.0",
        http::Version::HTTP_2 => b"HTTP/2.0",
        http::Version::HTTP_3 => b"HTTP/3.0",
        _ => b"HTTP/1.1",
    }
}

/// A line's client as written: its address, or `unix:` for a Unix-socket
/// peer (written into the line, not made into a `String` first).
#[derive(Debug, Clone, Copy)]
struct ClientText(Option<IpAddr>);

impl std::fmt::Display for ClientText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => ip.fmt(f),
            None => f.write_str("unix:"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(secs * 1000 + 123)
    }

    #[test]
    fn text_fields_are_escaped() {
        let mut out = String::new();
        escape(&mut out, "a\"b\\c\u{1}é".as_bytes(), 100);
        assert_eq!(out, "a\\\"b\\\\c\\x01\\xC3\\xA9");
    }

    #[test]
    fn dates() {
        assert_eq!(clf_time(at(0)), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(iso_time(at(951_782_400)), "2000-02-29T00:00:00.123Z");
        // 2026-12-03 21:27:27 UTC
        assert_eq!(clf_time(at(1_796_333_247)), "03/Dec/2026:21:27:27 +0000");
    }

    #[test]
    fn ids_are_kept_when_safe_and_generated_otherwise() {
        let with = |v: &str| {
            let r = Request::builder(Method::GET, "/")
                .header("x-request-id", v)
                .finish();
            request_id(&r).to_str().unwrap().to_string()
        };
        assert_eq!(with("abc-123_x.y:z+1"), "abc-123_x.y:z+1");
        for bad in ["a b", "x\"y", &"a".repeat(65), "é"] {
            let id = with(bad);
            assert_ne!(id, bad);
            assert!(acceptable(id.as_bytes()), "{id}");
        }
        let r = Request::builder(Method::GET, "/").finish();
        assert_ne!(request_id(&r), request_id(&r), "a counter");
    }

    #[test]
    fn lines_in_each_format() {
        let mut req = Request::builder(Method::GET, "/a%20b?q=1")
            .peer("192.0.2.1:40000".parse().unwrap())
            .header("user-agent", "ua \"quoted\"")
            .header("x-request-id", "req-1")
            .finish();
        begin(&mut req);
        let res = Response::text("hello");
        let t = Duration::from_micros(1500);
        let common = format_line(LogFormat::Common, &req, &res, t, at(0));
        assert_eq!(
            common,
            "192.0.2.1 - - [01/Jan/1970:00:00:00 +0000] \"GET /a%20b?q=1 HTTP/1.1\" 200 5 \
             rt=0.001500 worker=0 id=req-1\n"
        );
        let combined = format_line(LogFormat::Combined, &req, &res, t, at(0));
        assert!(
            combined.contains("200 5 \"-\" \"ua \\\"quoted\\\"\" rt="),
            "{combined}"
        );
        let json = format_line(LogFormat::Json, &req, &res, t, at(0));
        assert!(json.ends_with('\n') && json.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes"], 5);
        assert_eq!(v["request_id"], "req-1");
        assert_eq!(v["user_agent"], "ua \"quoted\"");
        assert_eq!(v["target"], "/a%20b?q=1");
        let stream = Response::stream(std::iter::once(bytes::Bytes::from_static(b"x")));
        let line = format_line(LogFormat::Common, &req, &stream, t, at(0));
        assert!(line.contains(" 200 - rt="), "{line}");
    }

    #[test]
    fn lines_are_bounded_and_cut_fields_are_marked() {
        // Every field at its longest, with bytes escaping the most.
        let long = "\u{1}".repeat(16 * 1024);
        let target = format!("/{}?q={}", "%22".repeat(4000), "a".repeat(4000));
        let mut req = Request::builder(Method::from_bytes(&[b'X'; 100]).unwrap(), &target)
            .peer(
                "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:1"
                    .parse()
                    .unwrap(),
            )
            .header("referer", &"\u{ff}".repeat(8 * 1024))
            .header("user-agent", &"é".repeat(8 * 1024))
            .header("x-request-id", &"a".repeat(64))
            .finish();
        req.extensions_mut()
            .insert(SentVersion(long.as_bytes().into()));
        begin(&mut req);
        let res = Response::text("x");
        let slow = Duration::from_secs(u64::MAX / 4);
        for format in [LogFormat::Common, LogFormat::Combined, LogFormat::Json] {
            let line = format_line(format, &req, &res, slow, at(u64::MAX / 1_000_000));
            assert!(line.len() <= MAX_LINE, "{format:?}: {} bytes", line.len());
            assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
            if format == LogFormat::Json {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                for field in ["method", "target", "protocol", "referer", "user_agent"] {
                    let text = v[field].as_str().unwrap();
                    assert!(text.ends_with("..."), "{field}: {text}");
                }
                assert_eq!(v["request_id"], "a".repeat(64));
            } else {
                assert!(line.contains("...\" 200 1"), "{line}");
                assert!(
                    line.contains(&format!(" id={}\n", "a".repeat(64))),
                    "{line}"
                );
            }
        }
        // A raw first line too.
        let mut res = Response::text("x");
        let raw = vec![0xff; 16 * 1024];
        for format in [LogFormat::Combined, LogFormat::Json] {
            let record = Record {
                client: ClientText(None),
                request: RequestLine::Raw(&raw),
                status: 400,
                bytes: Some(u64::MAX),
                referer: None,
                user_agent: None,
                request_id: Some(&"a".repeat(64)),
            };
            let line = format_record(format, &record, Duration::MAX, at(0));
            assert!(line.len() <= MAX_LINE, "{format:?}: {} bytes", line.len());
        }
        // Fields that fit are whole, not marked.
        let mut out = String::new();
        escape(&mut out, b"abc", 3);
        assert_eq!(out, "abc");
        out.clear();
        escape(&mut out, b"a\"bcd", 5);
        assert_eq!(out, "a...", "an escape is never cut in two");
        assert_eq!(json_text("aé".as_bytes(), 3), "aé");
        assert_eq!(json_text("aéé".as_bytes(), 4), "a...");
        res.headers_mut().clear();
    }

    #[test]
    fn refusals_without_a_request_line() {
        let record = |request| Record {
            client: client_text("::ffff:192.0.2.1".parse().unwrap(), false),
            request,
            status: 400,
            bytes: Some(16),
            referer: None,
            user_agent: None,
            request_id: Some("r-1"),
        };
        let t = Duration::from_micros(2);
        let raw = record(RequestLine::Raw(b"GET /\x7f \"x\" HTTP/1.1"));
        let line = format_record(LogFormat::Combined, &raw, t, at(0));
        assert_eq!(
            line,
            "::ffff:192.0.2.1 - - [01/Jan/1970:00:00:00 +0000] \"GET /\\x7F \\\"x\\\" HTTP/1.1\" \
             400 16 \"-\" \"-\" rt=0.000002 worker=0 id=r-1\n"
        );
        let v: serde_json::Value =
            serde_json::from_str(&format_record(LogFormat::Json, &raw, t, at(0))).unwrap();
        assert_eq!(v["request"], "GET /\u{7f} \"x\" HTTP/1.1");
        assert!(v["method"].is_null() && v["target"].is_null() && v["protocol"].is_null());
        let none = format_record(LogFormat::Common, &record(RequestLine::Nothing), t, at(0));
        assert!(none.contains("] \"-\" 400 16 rt="), "{none}");
        let v: serde_json::Value = serde_json::from_str(&format_record(
            LogFormat::Json,
            &record(RequestLine::Nothing),
            t,
            at(0),
        ))
        .unwrap();
        assert!(v.get("request").is_none() && v["method"].is_null());
    }

    #[test]
    fn a_protocol_tine_does_not_speak_is_logged_as_sent() {
        let mut req = Request::builder(Method::GET, "/").finish();
        req.extensions_mut()
            .insert(SentVersion(b"HTTP/9.9"[..].into()));
        let res = Response::empty(http::StatusCode::HTTP_VERSION_NOT_SUPPORTED);
        let line = format_line(LogFormat::Common, &req, &res, Duration::ZERO, at(0));
        assert!(line.contains("\"GET / HTTP/9.9\" 505 0 "), "{line}");
    }

    #[test]
    fn a_line_is_one_write_and_a_short_one_is_ended() {
        // Interrupted before anything was written: the whole line again.
        let mut calls = Vec::new();
        let mut interrupted = false;
        let r = write_once(b"line\n", |l| {
            calls.push(l.to_vec());
            if !interrupted {
                interrupted = true;
                return Err(io::ErrorKind::Interrupted.into());
            }
            Ok(l.len())
        });
        assert!(r.is_ok());
        assert_eq!(calls, [b"line\n".to_vec(), b"line\n".to_vec()]);
        // Cut short: never the rest of the line, a newline instead.
        let mut calls = Vec::new();
        let r = write_once(b"line\n", |l| {
            calls.push(l.to_vec());
            Ok(l.len().min(2))
        });
        assert!(matches!(r, Err(Some(_))));
        assert_eq!(calls, [b"line\n".to_vec(), b"\n".to_vec()]);
        // A full non-blocking pipe: dropped, not retried.
        let mut n = 0;
        let r = write_once(b"line\n", |_| {
            n += 1;
            Err(io::ErrorKind::WouldBlock.into())
        });
        assert!(matches!(r, Err(Some(_))) && n == 1);
    }
}
