//! The access-log line: its fields, read from a request (or from what is
//! known of a refused one), written in one of the [`LogFormat`]s into a
//! buffer the caller keeps (see [`AccessLog`](super::AccessLog) for the
//! formats and the caps).
//!
//! A line is written on every request, so it is built the way a response
//! head is: bytes appended to a reused buffer, numbers with `itoa`, the
//! date once a second ([`Stamp`]), and fields copied as they are when
//! they need no escaping and fit (nearly always: a request target is
//! visible ASCII). Only a field that must be escaped or cut takes the
//! slower path. `core::fmt` (and `serde_json::Value`) cost several times
//! the whole request's handling.

use std::borrow::Cow;
use std::io::Write as _;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use super::{LogFormat, SentVersion};
use crate::http::{Body, Request, Response};

/// The caps of the fields a client chooses, in bytes as written (after
/// escaping), `...` included. With the other fields at their longest
/// (an IPv6 client, a 64-character request id, 20-digit numbers) a line
/// stays under [`MAX_LINE`](super::MAX_LINE) (a test checks the worst
/// case).
const METHOD_CAP: usize = 32;
const TARGET_CAP: usize = 2048;
const PROTOCOL_CAP: usize = 16;
const REFERER_CAP: usize = 768;
const AGENT_CAP: usize = 768;
/// A raw request line takes the place of the method, target and protocol.
const LINE_CAP: usize = METHOD_CAP + TARGET_CAP + PROTOCOL_CAP + 2;

/// What a line says of the request.
pub(super) enum RequestLine<'a> {
    /// A request line that was read.
    Parsed {
        method: &'a str,
        /// As sent: the path, then `?` and the query if any.
        target: &'a str,
        protocol: &'a [u8],
    },
    /// A first line that could not be read as a request line, as it came.
    Raw(&'a [u8]),
    /// Nothing came (or nothing that could be shown).
    Nothing,
}

/// The fields of a line, from a request or from what is known of a
/// refused one.
pub(super) struct Record<'a> {
    pub(super) client: ClientText,
    pub(super) request: RequestLine<'a>,
    pub(super) status: u16,
    pub(super) bytes: Option<u64>,
    pub(super) referer: Option<&'a [u8]>,
    pub(super) user_agent: Option<&'a [u8]>,
    pub(super) request_id: Option<&'a str>,
}

impl<'a> Record<'a> {
    /// The record of an answered request. Its header fields are read from
    /// the head as sent, without building the header map.
    pub(super) fn of(req: &'a Request, res: &Response) -> Record<'a> {
        let protocol = match req.extensions().get::<SentVersion>() {
            Some(sent) => &sent.0[..],
            None => version_text(req.version()),
        };
        let [referer, user_agent] = req.header_pair(["referer", "user-agent"]);
        Record {
            client: client_text(req.client_addr(), req.is_unix_peer()),
            request: RequestLine::Parsed {
                method: req.method().as_str(),
                target: req.raw_target(),
                protocol,
            },
            status: res.status.as_u16(),
            bytes: body_size(req.method() == http::Method::HEAD, res),
            referer,
            user_agent,
            request_id: req.request_id(),
        }
    }
}

/// The date as the formats write it, made again only when the second
/// changes (like a response's `Date`).
#[derive(Default)]
pub(super) struct Stamp {
    /// The second since the epoch the texts are for (`None`: none yet).
    secs: Option<u64>,
    /// `03/Dec/2026:21:27:27 +0000`.
    clf: String,
    /// `2026-12-03T21:27:27` (the milliseconds and `Z` are added per line).
    iso: String,
}

impl Stamp {
    /// The texts for `now`'s second.
    fn at(&mut self, now: SystemTime) -> &Stamp {
        let secs = since_epoch(now).as_secs();
        if self.secs != Some(secs) {
            self.secs = Some(secs);
            self.clf = clf_time(now);
            self.iso = iso_secs(now);
        }
        self
    }
}

/// Appends the line (ending in a newline) to `out`.
pub(super) fn write(
    out: &mut Vec<u8>,
    format: LogFormat,
    r: &Record<'_>,
    took: Duration,
    now: SystemTime,
    stamp: &mut Stamp,
) {
    let worker = crate::worker().index;
    let stamp = stamp.at(now);
    let mut n = itoa::Buffer::new();
    match format {
        LogFormat::Common | LogFormat::Combined => {
            write_client(out, r.client);
            out.extend_from_slice(b" - - [");
            out.extend_from_slice(stamp.clf.as_bytes());
            out.extend_from_slice(b"] \"");
            match &r.request {
                RequestLine::Parsed {
                    method,
                    target,
                    protocol,
                } => {
                    escape(out, method.as_bytes(), METHOD_CAP);
                    out.push(b' ');
                    escape(out, target.as_bytes(), TARGET_CAP);
                    out.push(b' ');
                    escape(out, protocol, PROTOCOL_CAP);
                }
                RequestLine::Raw(raw) => escape(out, raw, LINE_CAP),
                RequestLine::Nothing => out.push(b'-'),
            }
            out.extend_from_slice(b"\" ");
            out.extend_from_slice(n.format(r.status).as_bytes());
            out.push(b' ');
            match r.bytes {
                Some(bytes) => out.extend_from_slice(n.format(bytes).as_bytes()),
                None => out.push(b'-'),
            }
            if format == LogFormat::Combined {
                for (value, cap) in [(r.referer, REFERER_CAP), (r.user_agent, AGENT_CAP)] {
                    out.extend_from_slice(b" \"");
                    match value {
                        Some(v) => escape(out, v, cap),
                        None => out.push(b'-'),
                    }
                    out.push(b'"');
                }
            }
            out.extend_from_slice(b" rt=");
            write_seconds(out, took);
            out.extend_from_slice(b" worker=");
            out.extend_from_slice(n.format(worker).as_bytes());
            out.extend_from_slice(b" id=");
            out.extend_from_slice(r.request_id.unwrap_or("-").as_bytes());
            out.push(b'\n');
        }
        LogFormat::Json => {
            out.extend_from_slice(b"{\"time\":\"");
            out.extend_from_slice(stamp.iso.as_bytes());
            out.push(b'.');
            let ms = since_epoch(now).subsec_millis();
            let ms = n.format(ms);
            out.extend_from_slice(&b"00"[ms.len() - 1..]);
            out.extend_from_slice(ms.as_bytes());
            out.extend_from_slice(b"Z\",\"client\":\"");
            write_client(out, r.client);
            out.push(b'"');
            let (method, target, protocol) = match &r.request {
                RequestLine::Parsed {
                    method,
                    target,
                    protocol,
                } => (
                    Some(method.as_bytes()),
                    Some(target.as_bytes()),
                    Some(*protocol),
                ),
                _ => (None, None, None),
            };
            json_field(out, b"method", method, METHOD_CAP);
            json_field(out, b"target", target, TARGET_CAP);
            json_field(out, b"protocol", protocol, PROTOCOL_CAP);
            if let RequestLine::Raw(raw) = &r.request {
                json_field(out, b"request", Some(raw), LINE_CAP);
            }
            out.extend_from_slice(b",\"status\":");
            out.extend_from_slice(n.format(r.status).as_bytes());
            out.extend_from_slice(b",\"bytes\":");
            match r.bytes {
                Some(bytes) => out.extend_from_slice(n.format(bytes).as_bytes()),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"duration_seconds\":");
            // `ryu` through serde_json, as `serde_json::Value` wrote it.
            let _ = serde_json::to_writer(&mut *out, &took.as_secs_f64());
            json_field(out, b"referer", r.referer, REFERER_CAP);
            json_field(out, b"user_agent", r.user_agent, AGENT_CAP);
            out.extend_from_slice(b",\"worker\":");
            out.extend_from_slice(n.format(worker).as_bytes());
            json_field(
                out,
                b"request_id",
                r.request_id.map(str::as_bytes),
                usize::MAX,
            );
            out.extend_from_slice(b"}\n");
        }
    }
}

/// `rt=`'s seconds with six decimals, rounded to the microsecond.
fn write_seconds(out: &mut Vec<u8>, took: Duration) {
    let mut secs = took.as_secs();
    let nanos = took.subsec_nanos();
    let mut micros = nanos / 1000 + u32::from(nanos % 1000 >= 500);
    if micros == 1_000_000 {
        match secs.checked_add(1) {
            Some(s) => {
                secs = s;
                micros = 0;
            }
            None => micros = 999_999,
        }
    }
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(n.format(secs).as_bytes());
    out.push(b'.');
    let digits = n.format(micros);
    out.extend_from_slice(&b"00000"[..6 - digits.len()]);
    out.extend_from_slice(digits.as_bytes());
}

/// The client: an IPv4 address octet by octet (the common case, without
/// `core::fmt`), another address as `Display` writes it, or `unix:`.
fn write_client(out: &mut Vec<u8>, client: ClientText) {
    match client.0 {
        Some(IpAddr::V4(ip)) => {
            let mut n = itoa::Buffer::new();
            for (i, octet) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(n.format(octet).as_bytes());
            }
        }
        Some(ip) => {
            let _ = write!(out, "{ip}");
        }
        None => out.extend_from_slice(b"unix:"),
    }
}

/// Whether `s` is written as it is, in both formats: printable ASCII
/// without `"` and `\`.
fn plain(s: &[u8]) -> bool {
    s.iter()
        .all(|&b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\')
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
fn escape(out: &mut Vec<u8>, s: &[u8], cap: usize) {
    if s.len() <= cap && plain(s) {
        out.extend_from_slice(s);
        return;
    }
    let whole = s.iter().map(|&b| escaped_len(b)).sum::<usize>() <= cap;
    let room = if whole { usize::MAX } else { cap - 3 };
    let mut used = 0;
    for &b in s {
        used += escaped_len(b);
        if used > room {
            break;
        }
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x20..=0x7e => out.push(b),
            _ => {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    }
    if !whole {
        out.extend_from_slice(b"...");
    }
}

/// `,"name":` and the value as a JSON string (see [`json_text`]), or
/// `null`.
fn json_field(out: &mut Vec<u8>, name: &[u8], value: Option<&[u8]>, cap: usize) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name);
    out.extend_from_slice(b"\":");
    match value {
        Some(v) if v.len() <= cap && plain(v) => {
            out.push(b'"');
            out.extend_from_slice(v);
            out.push(b'"');
        }
        Some(v) => {
            let _ = serde_json::to_writer(&mut *out, &json_text(v, cap));
        }
        None => out.extend_from_slice(b"null"),
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
fn json_text(s: &[u8], cap: usize) -> Cow<'_, str> {
    let s = String::from_utf8_lossy(s);
    if s.chars().map(json_len).sum::<usize>() <= cap {
        return s;
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
    Cow::Owned(out)
}

/// The body size for the log (`None`: a stream).
pub(super) fn body_size(head: bool, res: &Response) -> Option<u64> {
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

/// The client as logged: its address, or `unix:` for a Unix-domain peer
/// that no trusted proxy named (it has no address).
pub(super) fn client_text(addr: IpAddr, unix_peer: bool) -> ClientText {
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

/// A line's client: its address, or `None` for a Unix-socket peer.
#[derive(Debug, Clone, Copy)]
pub(super) struct ClientText(Option<IpAddr>);

fn since_epoch(now: SystemTime) -> Duration {
    now.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
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

/// Year, month, day and second of the day.
fn split(now: SystemTime) -> (i64, u32, u32, u64) {
    let secs = since_epoch(now).as_secs();
    let (y, m, day) = civil((secs / 86_400) as i64);
    (y, m, day, secs % 86_400)
}

/// `03/Dec/2026:21:27:27 +0000` (UTC).
fn clf_time(now: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, s) = split(now);
    format!(
        "{d:02}/{}/{y}:{:02}:{:02}:{:02} +0000",
        MONTHS[m as usize - 1],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// `2026-12-03T21:27:27` (UTC).
fn iso_secs(now: SystemTime) -> String {
    let (y, m, d, s) = split(now);
    format!(
        "{y}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(secs * 1000 + 123)
    }

    /// A line as text.
    fn text(format: LogFormat, r: &Record<'_>, took: Duration, now: SystemTime) -> String {
        let mut out = Vec::new();
        write(&mut out, format, r, took, now, &mut Stamp::default());
        String::from_utf8(out).expect("lines are UTF-8")
    }

    fn request_line(format: LogFormat, req: &Request, res: &Response, took: Duration) -> String {
        text(format, &Record::of(req, res), took, at(0))
    }

    #[test]
    fn text_fields_are_escaped() {
        let mut out = Vec::new();
        escape(&mut out, "a\"b\\c\u{1}é".as_bytes(), 100);
        assert_eq!(out, b"a\\\"b\\\\c\\x01\\xC3\\xA9");
    }

    #[test]
    fn dates() {
        assert_eq!(clf_time(at(0)), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(iso_secs(at(951_782_400)), "2000-02-29T00:00:00");
        // 2026-12-03 21:27:27 UTC
        assert_eq!(clf_time(at(1_796_333_247)), "03/Dec/2026:21:27:27 +0000");
        // The cached texts follow the second.
        let mut stamp = Stamp::default();
        assert_eq!(stamp.at(at(0)).clf, "01/Jan/1970:00:00:00 +0000");
        assert_eq!(stamp.at(at(1)).iso, "1970-01-01T00:00:01");
        assert_eq!(stamp.at(at(1)).clf, "01/Jan/1970:00:00:01 +0000");
    }

    #[test]
    fn seconds_have_six_decimals_rounded() {
        let text = |d: Duration| {
            let mut out = Vec::new();
            write_seconds(&mut out, d);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text(Duration::ZERO), "0.000000");
        assert_eq!(text(Duration::from_nanos(41_499)), "0.000041");
        assert_eq!(text(Duration::from_nanos(41_500)), "0.000042");
        assert_eq!(text(Duration::from_nanos(999_999_600)), "1.000000");
        assert_eq!(text(Duration::new(12, 345_678_000)), "12.345678");
        assert_eq!(text(Duration::MAX), "18446744073709551615.999999");
    }

    #[test]
    fn lines_in_each_format() {
        let mut req = Request::builder(Method::GET, "/a%20b?q=1")
            .peer("192.0.2.1:40000".parse().unwrap())
            .header("user-agent", "ua \"quoted\"")
            .header("x-request-id", "req-1")
            .finish();
        super::super::begin(&mut req);
        let res = Response::text("hello");
        let t = Duration::from_micros(1500);
        let common = request_line(LogFormat::Common, &req, &res, t);
        assert_eq!(
            common,
            "192.0.2.1 - - [01/Jan/1970:00:00:00 +0000] \"GET /a%20b?q=1 HTTP/1.1\" 200 5 \
             rt=0.001500 worker=0 id=req-1\n"
        );
        let combined = request_line(LogFormat::Combined, &req, &res, t);
        assert!(
            combined.contains("200 5 \"-\" \"ua \\\"quoted\\\"\" rt="),
            "{combined}"
        );
        let json = request_line(LogFormat::Json, &req, &res, t);
        assert!(json.ends_with('\n') && json.matches('\n').count() == 1);
        assert!(
            json.starts_with("{\"time\":\"1970-01-01T00:00:00.123Z\",\"client\":\"192.0.2.1\","),
            "{json}"
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes"], 5);
        assert_eq!(v["duration_seconds"], 0.0015);
        assert_eq!(v["request_id"], "req-1");
        assert_eq!(v["user_agent"], "ua \"quoted\"");
        assert_eq!(v["target"], "/a%20b?q=1");
        assert!(v["referer"].is_null());
        assert_eq!(v["worker"], 0);
        let stream = Response::stream(std::iter::once(bytes::Bytes::from_static(b"x")));
        let line = request_line(LogFormat::Common, &req, &stream, t);
        assert!(line.contains(" 200 - rt="), "{line}");
        // An IPv6 client, and the milliseconds padded.
        let req = Request::builder(Method::GET, "/")
            .peer("[2001:db8::1]:1".parse().unwrap())
            .finish();
        let r = Record::of(&req, &res);
        let json = text(LogFormat::Json, &r, t, SystemTime::UNIX_EPOCH);
        assert!(
            json.starts_with("{\"time\":\"1970-01-01T00:00:00.000Z\",\"client\":\"2001:db8::1\""),
            "{json}"
        );
        assert!(text(LogFormat::Common, &r, t, at(0)).starts_with("2001:db8::1 - - "));
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
        super::super::begin(&mut req);
        let res = Response::text("x");
        let slow = Duration::from_secs(u64::MAX / 4);
        for format in [LogFormat::Common, LogFormat::Combined, LogFormat::Json] {
            let line = text(
                format,
                &Record::of(&req, &res),
                slow,
                at(u64::MAX / 1_000_000),
            );
            assert!(
                line.len() <= super::super::MAX_LINE,
                "{format:?}: {} bytes",
                line.len()
            );
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
            let line = text(format, &record, Duration::MAX, at(0));
            assert!(
                line.len() <= super::super::MAX_LINE,
                "{format:?}: {} bytes",
                line.len()
            );
        }
        // Fields that fit are whole, not marked.
        let mut out = Vec::new();
        escape(&mut out, b"abc", 3);
        assert_eq!(out, b"abc");
        out.clear();
        escape(&mut out, b"a\"bcd", 5);
        assert_eq!(out, b"a...", "an escape is never cut in two");
        assert_eq!(json_text("aé".as_bytes(), 3), "aé");
        assert_eq!(json_text("aéé".as_bytes(), 4), "a...");
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
        assert_eq!(
            text(LogFormat::Combined, &raw, t, at(0)),
            "::ffff:192.0.2.1 - - [01/Jan/1970:00:00:00 +0000] \"GET /\\x7F \\\"x\\\" HTTP/1.1\" \
             400 16 \"-\" \"-\" rt=0.000002 worker=0 id=r-1\n"
        );
        let v: serde_json::Value =
            serde_json::from_str(&text(LogFormat::Json, &raw, t, at(0))).unwrap();
        assert_eq!(v["request"], "GET /\u{7f} \"x\" HTTP/1.1");
        assert!(v["method"].is_null() && v["target"].is_null() && v["protocol"].is_null());
        let none = text(LogFormat::Common, &record(RequestLine::Nothing), t, at(0));
        assert!(none.contains("] \"-\" 400 16 rt="), "{none}");
        let v: serde_json::Value = serde_json::from_str(&text(
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
        let line = request_line(LogFormat::Common, &req, &res, Duration::ZERO);
        assert!(line.contains("\"GET / HTTP/9.9\" 505 0 "), "{line}");
    }
}
