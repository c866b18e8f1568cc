//! Access logs ([`App::access_log`](crate::App::access_log)) and request
//! ids: see [`AccessLog`](crate::AccessLog).

mod format;

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};

use http::header::HeaderValue;

use crate::http::{Request, Response};
use format::{Record, RequestLine};

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
/// place of `METHOD TARGET PROTOCOL` (in JSON, which has no way to carry
/// a byte that is not UTF-8, such a byte becomes U+FFFD: `"request"`, with
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
/// second one that another process's line could come between. On stdout
/// a full pipe (or socket) is waited for up to a second, so a slow reader
/// slows the server down and loses nothing; a reader that is stuck costs
/// that wait once, and lines are then dropped without waiting until one
/// goes out again (see [`LogWriter`](crate::LogWriter)), so that it
/// cannot freeze the workers. A line that cannot be written (that, or a
/// full disk) is dropped, not retried; a write cut short (possible on a
/// full disk, not on a pipe for lines of this size) is ended with a
/// newline, or if even that fails, the next line starts with one, so that
/// it starts whole. Lost lines are counted and reported in a warning, at
/// most once a minute, and once more when lines go out again.
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

    /// Where lines go, as warnings name it.
    fn destination(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None => "stdout".to_string(),
        }
    }
}

/// The response field that echoes a request's id.
const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

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
    /// The file's last line was cut short without its newline: see
    /// [`write_once`].
    cut: bool,
    /// After a warning about a lost line: no other until then.
    quiet_until: Option<Instant>,
    /// The line being written, kept between lines (no allocation per
    /// line once it has grown).
    line: Vec<u8>,
    /// The date texts of the current second.
    stamp: format::Stamp,
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

/// The request's id: its own if acceptable, else a new one. Read from
/// the head as sent (no header map).
pub(crate) fn request_id(req: &Request) -> HeaderValue {
    if let Some(v) = req.header_all("x-request-id").next() {
        if acceptable(v) {
            return HeaderValue::from_bytes(v).expect("checked by acceptable");
        }
    }
    generated_id()
}

/// A new request id: the process's prefix and a counter, in hex, made
/// on the stack.
fn generated_id() -> HeaderValue {
    let mut id = [0u8; 33];
    let len = id_text(prefix(), COUNTER.fetch_add(1, Relaxed), &mut id);
    HeaderValue::from_bytes(&id[..len]).expect("hex digits and a dash")
}

/// Writes `{prefix:016x}-{n:x}` into `out`, returning its length.
fn id_text(prefix: u64, n: u64, out: &mut [u8; 33]) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in out[..16].iter_mut().enumerate() {
        *b = HEX[(prefix >> (60 - 4 * i)) as usize & 0xf];
    }
    out[16] = b'-';
    let digits = (16 - n.leading_zeros() as usize / 4).max(1);
    for i in 0..digits {
        out[17 + i] = HEX[(n >> (4 * (digits - 1 - i))) as usize & 0xf];
    }
    17 + digits
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
        self.id.as_deref().and_then(|id| id.to_str().ok())
    }
}

/// Starts a request's log record: its id (echoed by [`finish`]).
pub(crate) fn begin(req: &mut Request) {
    req.id = Some(Box::new(request_id(req)));
}

/// Echoes the id on the response and writes the line.
pub(crate) fn finish(log: &AccessLog, req: &Request, res: &mut Response, took: Duration) {
    if let Some(id) = req.id.as_deref() {
        res.headers_mut().insert(X_REQUEST_ID, id.clone());
    }
    write_line(log, &Record::of(req, res), took);
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
        client: format::client_text(
            crate::proxies::canonical(peer.ip()),
            peer == crate::server::UNIX_PEER,
        ),
        request: match line {
            Some(line) => RequestLine::Raw(line),
            None => RequestLine::Nothing,
        },
        status: res.status.as_u16(),
        bytes: format::body_size(false, res),
        referer: None,
        user_agent: None,
        request_id: id.to_str().ok(),
    };
    write_line(log, &record, took);
    res.headers_mut().insert(X_REQUEST_ID, id);
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
        // Stdout: set up the way to write it without blocking now, while
        // the process may still open the pipe behind it again (before the
        // fork and before workers drop privileges).
        crate::LogWriter::stdout();
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

/// Opens the log file now (a failure is warned about, and the open tried
/// again later): in a process about to serve, and on `SIGUSR1`. The
/// error says the process has no file open to write to.
pub(crate) fn open_now(log: &AccessLog) -> io::Result<()> {
    match &log.path {
        Some(path) => SINK.with(|sink| sink.borrow_mut().open(path)),
        None => Ok(()),
    }
}

fn open(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Writes the line of `record` (at most [`MAX_LINE`] bytes) with one
/// `write(2)`: see "Lost lines" on [`AccessLog`]. The line is made in the
/// sink's buffer, kept from line to line.
///
/// (See also [`report_lost`], for the lines still to be reported when the
/// process stops.)
fn write_line(log: &AccessLog, record: &Record<'_>, took: Duration) {
    SINK.with(|sink| {
        let mut sink = sink.borrow_mut();
        let sink = &mut *sink;
        let mut line = std::mem::take(&mut sink.line);
        line.clear();
        format::write(
            &mut line,
            log.format,
            record,
            took,
            SystemTime::now(),
            &mut sink.stamp,
        );
        debug_assert!(line.len() <= MAX_LINE, "{} bytes", line.len());
        let written = match &log.path {
            // Straight to the descriptor, without blocking when a pipe's
            // reader stops reading (see `LogWriter`), and not through
            // `Stdout`'s buffer, which would finish a partial write with a
            // second one (and block).
            None => crate::LogWriter::stdout().write_line(&line).map_err(Some),
            Some(path) => {
                let _ = sink.open(path);
                match &sink.file {
                    Some(file) => write_once(&line, &mut sink.cut, |l| {
                        let mut file = file;
                        file.write(l)
                    }),
                    None => Err(None),
                }
            }
        };
        sink.line = line;
        match written {
            Ok(()) if sink.lost > 0 => sink.writing_again(log),
            Ok(()) => {}
            Err(e) => sink.lost(log, e),
        }
    });
}

/// One `write` of `line`, again only when interrupted before anything was
/// written. A write cut short is ended with a newline (the line is lost);
/// if even that newline could not be written (a full disk), `cut` says so,
/// and the next line is written after a newline of its own, so that it
/// starts whole rather than glued to the fragment.
fn write_once(
    line: &[u8],
    cut: &mut bool,
    mut write: impl FnMut(&[u8]) -> io::Result<usize>,
) -> Result<(), Option<io::Error>> {
    let after_cut;
    let bytes = if *cut {
        after_cut = [b"\n", line].concat();
        &after_cut[..]
    } else {
        line
    };
    loop {
        match write(bytes) {
            Ok(n) if n == bytes.len() => {
                *cut = false;
                return Ok(());
            }
            Ok(n) => {
                *cut = !matches!(write(b"\n"), Ok(1));
                return Err(Some(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("a line cut short after {n} of {} bytes", bytes.len()),
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
    fn open(&mut self, path: &Path) -> io::Result<()> {
        let reopen = REOPEN.swap(false, Relaxed);
        let due = match self.retry_at {
            None => self.file.is_none(),
            Some(at) => Instant::now() >= at,
        };
        if !(reopen || due) {
            return Ok(());
        }
        match open(path) {
            Ok(file) => {
                self.file = Some(file);
                self.retry_at = None;
                Ok(())
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
                match self.file {
                    Some(_) => Ok(()),
                    None => Err(io::Error::new(
                        e.kind(),
                        format!("tine: access log {}: cannot open it: {e}", path.display()),
                    )),
                }
            }
        }
    }

    /// Whether a warning may be said now: at most one a minute (the
    /// minute after it is then quiet).
    fn may_warn(&mut self) -> bool {
        let now = Instant::now();
        if self.quiet_until.is_some_and(|until| now < until) {
            return false;
        }
        self.quiet_until = Some(now + RETRY);
        true
    }

    /// A line went out after lines were lost: say how many, once the
    /// quiet minute after the last warning is over (a log that fails and
    /// recovers again and again warns once a minute, not per line).
    #[cold]
    fn writing_again(&mut self, log: &AccessLog) {
        if !self.may_warn() {
            return;
        }
        log::warn!(
            "access log {}: writing again; {} line(s) lost since the last warning",
            log.destination(),
            std::mem::take(&mut self.lost)
        );
    }

    /// Counts a lost line, and warns at most once a minute (`e`: why, if
    /// not that the file could not be opened, already warned about).
    #[cold]
    fn lost(&mut self, log: &AccessLog, e: Option<io::Error>) {
        self.lost += 1;
        let Some(e) = e else {
            return;
        };
        if !self.may_warn() {
            return;
        }
        log::warn!(
            "access log {}: {e}; {} line(s) lost since the last warning",
            log.destination(),
            std::mem::take(&mut self.lost)
        );
    }
}

/// When this process stops: says how many lines it lost since its last
/// warning, which the quiet minute after a warning (or a log that never
/// wrote again) had held back. Without it a worker that is recycled or
/// replaced takes its count with it.
pub(crate) fn report_lost(log: &AccessLog) {
    SINK.with(|sink| {
        let lost = std::mem::take(&mut sink.borrow_mut().lost);
        if lost > 0 {
            log::warn!(
                "access log {}: {lost} line(s) lost since the last warning (this process stops)",
                log.destination()
            );
        }
    });
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

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
        for (prefix, n) in [(0, 0), (0x3f2a, 0xf), (u64::MAX, 0x10), (1 << 60, u64::MAX)] {
            let mut id = [0u8; 33];
            let len = id_text(prefix, n, &mut id);
            assert_eq!(&id[..len], format!("{prefix:016x}-{n:x}").as_bytes());
        }
    }

    #[test]
    fn a_line_is_one_write_and_a_short_one_is_ended() {
        // Interrupted before anything was written: the whole line again.
        let mut calls = Vec::new();
        let mut interrupted = false;
        let mut cut = false;
        let r = write_once(b"line\n", &mut cut, |l| {
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
        let r = write_once(b"line\n", &mut cut, |l| {
            calls.push(l.to_vec());
            Ok(l.len().min(2))
        });
        assert!(matches!(r, Err(Some(_))));
        assert_eq!(calls, [b"line\n".to_vec(), b"\n".to_vec()]);
        assert!(!cut, "the newline went out");
        // Cut short, and no room for the newline either (a full disk):
        // the next line starts with one, not glued to the fragment.
        let mut calls = Vec::new();
        let r = write_once(b"line\n", &mut cut, |l| {
            calls.push(l.to_vec());
            match l {
                b"\n" => Err(io::Error::from_raw_os_error(28)),
                _ => Ok(2),
            }
        });
        assert!(matches!(r, Err(Some(_))));
        assert!(cut);
        let mut calls = Vec::new();
        let r = write_once(b"next\n", &mut cut, |l| {
            calls.push(l.to_vec());
            Ok(l.len())
        });
        assert!(r.is_ok() && !cut);
        assert_eq!(calls, [b"\nnext\n".to_vec()]);
        // A full non-blocking pipe: dropped, not retried.
        let mut n = 0;
        let r = write_once(b"line\n", &mut cut, |_| {
            n += 1;
            Err(io::ErrorKind::WouldBlock.into())
        });
        assert!(matches!(r, Err(Some(_))) && n == 1);
    }
}
