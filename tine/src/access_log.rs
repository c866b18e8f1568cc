//! Access logs ([`App::access_log`](crate::App::access_log)) and request
//! ids: see [`AccessLog`](crate::AccessLog).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

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
/// interleave. Each line also carries the response time (the time to
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
/// **Request ids.** With an access log, every request gets an id: its
/// `X-Request-Id` header when that is 1 to 64 characters of
/// `A-Z a-z 0-9 - _ . : +`, otherwise a generated one (a per-process
/// random prefix and a counter, unique across workers). Handlers read it
/// with [`Request::request_id`]; the response echoes it in `X-Request-Id`.
///
/// **Rotation.** On `SIGUSR1` (to the master, which passes it to every
/// worker, or to a single process) the log file is closed and opened again
/// by its path, as with nginx: rename the file, send `SIGUSR1`, and new
/// lines go to a new file while the old one can be compressed.
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

    /// Appends to the file at `path` instead (created if missing; opened
    /// by each worker, and again on `SIGUSR1`).
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

thread_local! {
    /// This process's open log file (`None` until the first line).
    static FILE: RefCell<Option<File>> = const { RefCell::new(None) };
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
    let n = COUNTER.fetch_add(1, Relaxed);
    let id = format!("{:016x}-{n:x}", prefix());
    HeaderValue::from_str(&id).expect("hex digits and a dash")
}

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

fn write_line(log: &AccessLog, line: &[u8]) {
    let Some(path) = &log.path else {
        // One write per line: stdout's line buffer writes a whole line
        // at once when it ends in a newline.
        let _ = std::io::stdout().lock().write_all(line);
        return;
    };
    FILE.with(|f| {
        let mut f = f.borrow_mut();
        if REOPEN.swap(false, Relaxed) {
            *f = None;
        }
        if f.is_none() {
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                Ok(file) => *f = Some(file),
                Err(e) => {
                    log::warn!("access log {}: {e}", path.display());
                    return;
                }
            }
        }
        if let Some(file) = f.as_mut() {
            // O_APPEND: each write lands whole at the end, whichever
            // process writes.
            if let Err(e) = file.write_all(line) {
                log::warn!("access log {}: {e}", path.display());
                *f = None;
            }
        }
    });
}

/// The body size for the log (`None`: a stream).
fn body_bytes(req: &Request, res: &Response) -> Option<u64> {
    if req.method() == http::Method::HEAD {
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

/// `"` and `\` escaped with `\`, other bytes outside printable ASCII as
/// `\xHH`.
fn escape(out: &mut String, s: &[u8]) {
    for &b in s {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    }
}

fn target(req: &Request) -> String {
    match req.query_string() {
        Some(q) => format!("{}?{q}", req.raw_path()),
        None => req.raw_path().to_string(),
    }
}

pub(crate) fn format_line(
    format: LogFormat,
    req: &Request,
    res: &Response,
    took: Duration,
    now: SystemTime,
) -> String {
    let bytes = body_bytes(req, res);
    let id = req.request_id().unwrap_or("-");
    let worker = crate::worker().index;
    let header = |name: &str| req.headers().get(name).map(HeaderValue::as_bytes);
    let mut line = String::with_capacity(256);
    match format {
        LogFormat::Common | LogFormat::Combined => {
            let _ = write!(line, "{} - - [{}] \"", Client(req), clf_time(now));
            escape(&mut line, req.method().as_str().as_bytes());
            line.push(' ');
            escape(&mut line, target(req).as_bytes());
            let _ = write!(line, " {:?}\" {} ", req.version(), res.status.as_u16());
            match bytes {
                Some(n) => {
                    let _ = write!(line, "{n}");
                }
                None => line.push('-'),
            }
            if format == LogFormat::Combined {
                for h in ["referer", "user-agent"] {
                    line.push_str(" \"");
                    match header(h) {
                        Some(v) => escape(&mut line, v),
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
            let text = |h: &str| header(h).map(|v| String::from_utf8_lossy(v).into_owned());
            let v = serde_json::json!({
                "time": iso_time(now),
                "client": Client(req).to_string(),
                "method": req.method().as_str(),
                "target": target(req),
                "protocol": format!("{:?}", req.version()),
                "status": res.status.as_u16(),
                "bytes": bytes,
                "duration_seconds": took.as_secs_f64(),
                "referer": text("referer"),
                "user_agent": text("user-agent"),
                "worker": worker,
                "request_id": req.request_id(),
            });
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
struct Client<'a>(&'a Request);

impl std::fmt::Display for Client<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addr = self.0.client_addr();
        if addr.is_unspecified() && self.0.is_unix_peer() {
            f.write_str("unix:")
        } else {
            addr.fmt(f)
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
        escape(&mut out, "a\"b\\c\u{1}é".as_bytes());
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
}
