//! HTTP details over real TCP: `Host` values, request-line versions,
//! bytes that cannot start a request, and query and form errors that name
//! their field.

mod support;

use std::io::Read;
use std::time::Duration;

use support::{serve, Client};
use tine::{App, Limits, Request};

#[derive(serde::Deserialize)]
struct Page {
    page: u32,
}

/// A header timeout far beyond the clients' read timeout: an answer that
/// arrives at all was not waiting for it.
fn app() -> App {
    App::new()
        .get("/plaintext", |_: &Request| "Hello, World!")
        .get("/version", |req: &Request| format!("{:?}", req.version()))
        .get("/list", |req: &Request| -> Result<String, tine::Error> {
            let page: Page = req.query()?;
            Ok(format!("page {}", page.page))
        })
        .post("/list", |req: &Request| -> Result<String, tine::Error> {
            let page: Page = req.form()?;
            Ok(format!("page {}", page.page))
        })
        .limits(Limits::default().header_timeout(Duration::from_secs(600)))
}

#[test]
fn invalid_host_values_get_400_and_close() {
    let addr = serve(app);
    for host in ["a b", "a/b", "h:port", "h:99999", "user@h", "[::1"] {
        let mut c = Client::connect(addr);
        c.send(format!("GET /plaintext HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
        let r = c.read_response();
        assert_eq!(r.status, 400, "{host:?}");
        assert_eq!(r.header("connection"), Some("close"), "{host:?}");
        assert!(c.is_closed(), "{host:?}");
    }
    let mut c = Client::connect(addr);
    for host in ["", "example.com:8080", "[::1]:80", "127.0.0.1", "h:"] {
        c.send(format!("GET /plaintext HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
        assert_eq!(c.read_response().status, 200, "{host:?}");
    }
}

#[test]
fn higher_http1_minor_versions_are_answered_as_http11() {
    let addr = serve(app);
    let mut c = Client::connect(addr);
    // Keep-alive by default, as in HTTP/1.1.
    c.send(b"GET /version HTTP/1.2\r\nHost: t\r\n\r\nGET /version HTTP/1.9\r\nHost: t\r\n\r\n");
    for _ in 0..2 {
        let r = c.read_response();
        assert_eq!((r.status, r.text().as_str()), (200, "HTTP/1.1"));
    }
    // The status line says HTTP/1.1 (RFC 9112 §2.3: the highest minor
    // version the server supports).
    c.send(b"GET /plaintext HTTP/1.3\r\nHost: t\r\nConnection: close\r\n\r\n");
    let mut raw = Vec::new();
    c.stream.read_to_end(&mut raw).unwrap();
    assert!(
        raw.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        raw.escape_ascii()
    );
}

#[test]
fn other_major_versions_get_505() {
    let addr = serve(app);
    for req in [
        &b"GET /plaintext HTTP/2.0\r\nHost: t\r\n\r\n"[..],
        // The HTTP/2 connection preface (prior knowledge, no upgrade).
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET /plaintext HTTP/3\r\nHost: t\r\n\r\n",
    ] {
        let mut c = Client::connect(addr);
        c.send(req);
        let r = c.read_response();
        assert_eq!(r.status, 505, "{}", req.escape_ascii());
        assert!(c.is_closed());
    }
}

#[test]
fn bytes_that_cannot_start_a_request_get_400_and_close_at_once() {
    let addr = serve(app);
    // The first record of a TLS 1.3 ClientHello, as a browser would send
    // to https://127.0.0.1:PORT: no CRLF in sight, so a server waiting
    // for the end of a head would sit until the header timeout (600 s
    // here, far past the client's 10 s read timeout).
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,
    ];
    hello.extend((0..32).map(|i| i as u8 * 7));
    let garbage: &[&[u8]] = &[&hello, b"\x00\x00\x00\x01", b"\r\n\x80\x81", b"GET\x00/"];
    for bytes in garbage {
        let mut c = Client::connect(addr);
        c.send(bytes);
        let r = c.read_response();
        assert_eq!(r.status, 400, "{}", bytes.escape_ascii());
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.is_closed(), "{}", bytes.escape_ascii());
    }
    // A request arriving in pieces (separate segments: no Nagle) is
    // still served.
    let mut c = Client::connect(addr);
    for piece in [
        &b"GE"[..],
        b"T /plain",
        b"text HTTP/1.1\r\nHo",
        b"st: t\r\n\r\n",
    ] {
        c.send(piece);
    }
    assert_eq!(c.read_response().status, 200);
}

#[test]
fn query_and_form_errors_name_the_field() {
    let addr = serve(app);
    let mut c = Client::connect(addr);
    assert_eq!(c.get("/list?page=7").text(), "page 7");
    let r = c.get("/list?page=abc");
    assert_eq!(
        (r.status, r.text().as_str()),
        (
            400,
            "invalid query string: page: invalid digit found in string"
        )
    );
    let r = c.get("/list");
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "invalid query string: missing field `page`")
    );
    let body = "page=99999999999";
    c.send(
        format!(
            "POST /list HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(
        (r.status, r.text().as_str()),
        (
            400,
            "invalid form body: page: number too large to fit in target type"
        )
    );
}

/// What a handler can make tine send is a well-formed final response, and
/// the connection stays in step: a `1xx` or a code past 599 becomes a
/// `500` (a `103` sent as the answer would be taken for an interim one,
/// and the next answer for this one's), a `205` carries a length of 0 and
/// no content, an explicit `HEAD` route declares the `GET`'s length, and
/// a `Response::file` on a FIFO with no writer is a `404` (opening it
/// waited for a writer, and the worker with it).
#[test]
fn handlers_cannot_make_tine_send_a_malformed_answer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let addr = serve(move || {
        App::new()
            .get("/status/:code", |req: &Request| {
                let code: u16 = req.param_as("code").unwrap();
                tine::Response::text("body").with_status(tine::StatusCode::from_u16(code).unwrap())
            })
            .get("/size", |_: &Request| "x".repeat(1234))
            .head("/size", |_: &Request| {
                tine::Response::empty(tine::StatusCode::OK).with_header("content-length", "1234")
            })
            .get("/fifo", move |_: &Request| tine::Response::file(&fifo))
            .get("/plaintext", |_: &Request| "Hello, World!")
    });
    let mut c = Client::connect(addr);
    for code in [100, 101, 103, 600, 999] {
        let r = c.get(&format!("/status/{code}"));
        assert_eq!(r.status, 500, "{code}");
        assert_eq!(c.get("/plaintext").text(), "Hello, World!", "after {code}");
    }
    // Pipelined: the answers stay in step.
    c.send(
        b"GET /status/103 HTTP/1.1\r\nHost: t\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(c.read_response().status, 500);
    assert_eq!(c.read_response().text(), "Hello, World!");
    let r = c.get("/status/205");
    assert_eq!(
        (r.status, r.header("content-length"), r.body.len()),
        (205, Some("0"), 0)
    );
    assert_eq!(c.get("/plaintext").text(), "Hello, World!");
    c.send(b"HEAD /size HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_head_response();
    assert_eq!((r.status, r.header("content-length")), (200, Some("1234")));
    assert_eq!(c.get("/plaintext").text(), "Hello, World!");
    let r = c.get("/fifo");
    assert_eq!(r.status, 404);
    assert_eq!(c.get("/plaintext").text(), "Hello, World!");
}

/// Reads everything the server sends until it closes.
fn all_until_close(c: &mut Client) -> Vec<u8> {
    let mut all = Vec::new();
    c.stream.read_to_end(&mut all).unwrap();
    all
}

/// A `HEAD` request refused before it was routed (a malformed head, an
/// unsupported version or expectation, a head too large or too slow)
/// gets its refusal's head without content (RFC 9110 §9.3.2), as every
/// other answer to `HEAD` does.
#[test]
fn a_refused_head_request_gets_no_content() {
    let addr = serve(|| {
        app().limits(
            Limits::default()
                .max_header(1024)
                .header_timeout(Duration::from_millis(300)),
        )
    });
    let big = format!(
        "HEAD / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
        "a".repeat(2000)
    );
    for (request, status) in [
        ("HEAD / HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n", "400"),
        ("HEAD / HTTP/1.1\r\nHost: h\r\nExpect: foo\r\n\r\n", "417"),
        ("HEAD / HTTP/9.9\r\nHost: h\r\n\r\n", "505"),
        ("HEAD /a\x01b HTTP/1.1\r\nHost: h\r\n\r\n", "400"),
        (big.as_str(), "431"),
        // Never finished: the header timeout's answer.
        ("HEAD / HTTP/1.1\r\nHost: h\r\n", "408"),
    ] {
        let mut c = Client::connect(addr);
        c.send(request.as_bytes());
        let all = all_until_close(&mut c);
        let text = String::from_utf8_lossy(&all);
        assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text:?}");
        assert!(
            text.ends_with("\r\n\r\n"),
            "content after the head: {text:?}"
        );
    }
    // A `GET` refused alike still gets its page.
    let mut c = Client::connect(addr);
    c.send(b"GET / HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n");
    let all = all_until_close(&mut c);
    assert!(String::from_utf8_lossy(&all).ends_with("400 Bad Request\n"));
}
