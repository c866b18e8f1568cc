//! One dispatch path, over real TCP: HTTP routes, WebSocket upgrades and
//! the errors tine answers itself all go through the same steps, so the
//! `errors` handler renders the same responses everywhere, and after-hooks
//! (CORS, request ids) and the request log see every answer, refusals
//! included.

mod support;

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use support::{serve, Client};
use testkit::logs;
use tine::{App, Cors, Error, Limits, Request, Response, StatusCode, WebSocket, WsEvent};

const ORIGIN: &str = "https://app.example";

fn limits() -> Limits {
    Limits::default()
        .max_header(2048)
        .max_headers(10)
        .max_body(64)
        .header_timeout(Duration::from_millis(300))
}

/// An app with CORS for [`ORIGIN`], a request-id after-hook, a custom
/// error page showing what it was given, and the request log.
fn app() -> App {
    App::new()
        .get("/ok", |_: &Request| "ok")
        .get("/gz", |_: &Request| {
            Response::text("ok").with_header("vary", "Accept-Encoding")
        })
        .get("/boom", |_: &Request| -> Response {
            panic!("dispatch-test boom")
        })
        .post("/upload", |req: &Request| Response::bytes(req.body_bytes()))
        .get("/resp-not-found", |_: &Request| Response::not_found())
        .get("/error-404", |_: &Request| {
            Response::error(StatusCode::NOT_FOUND)
        })
        .get("/err-not-found", |_: &Request| -> Result<Response, Error> {
            Err(Error::not_found("no such thing"))
        })
        .get("/own-404", |_: &Request| {
            Response::text("my own page").with_status(StatusCode::NOT_FOUND)
        })
        .ws("/ws", |ws: &mut WebSocket, ev: WsEvent| {
            if let WsEvent::Text(t) = ev {
                ws.send_text(t)
            }
        })
        .before(|req: &mut Request| {
            (req.header("authorization") == Some("no"))
                .then(|| Response::error(StatusCode::UNAUTHORIZED))
        })
        .after(|_: &Request, res: Response| res.with_header("x-request-id", "rid-1"))
        .cors(Cors::new().allow_origin(ORIGIN))
        .errors(|req, status| {
            Response::text(format!(
                "custom {} {}",
                status.as_u16(),
                req.map_or("-".to_string(), |r| format!("{} {}", r.method(), r.path()))
            ))
        })
        .log_requests()
        .limits(limits())
}

fn start() -> SocketAddr {
    logs::capture();
    serve(app)
}

/// Sends raw bytes on a fresh connection and reads one response.
fn exchange(addr: SocketAddr, raw: &[u8]) -> support::Resp {
    let mut c = Client::connect(addr);
    c.send(raw);
    c.read_response()
}

/// The answer carries what the after-hooks add.
fn has_hooks(r: &support::Resp) {
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some(ORIGIN),
        "{r:?}"
    );
    assert_eq!(r.header("x-request-id"), Some("rid-1"), "{r:?}");
}

/// The request log has exactly `n` lines ending like `line`.
fn logged(line: &str, n: usize) {
    let found: Vec<String> = logs::matching(line)
        .into_iter()
        .filter(|l| l.contains("tine::access"))
        .collect();
    assert_eq!(found.len(), n, "{line}: {found:?}");
}

fn upgrade(path: &str, version: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nOrigin: {ORIGIN}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: {version}\r\n{extra}\r\n"
    )
    .into_bytes()
}

#[test]
fn before_hook_error_page_is_rendered_on_http_and_websocket_routes() {
    let addr = start();
    let http = exchange(
        addr,
        format!("GET /ok HTTP/1.1\r\nHost: t\r\nOrigin: {ORIGIN}\r\nAuthorization: no\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(http.status, 401);
    assert_eq!(http.text(), "custom 401 GET /ok");
    has_hooks(&http);
    let ws = exchange(addr, &upgrade("/ws", "13", "Authorization: no\r\n"));
    assert_eq!(ws.status, 401);
    assert_eq!(ws.text(), "custom 401 GET /ws");
    has_hooks(&ws);
}

#[test]
fn refused_upgrade_gets_the_after_hooks_and_is_logged() {
    let addr = start();
    let r = exchange(addr, &upgrade("/ws?refused-426", "8", ""));
    assert_eq!(r.status, 426);
    assert_eq!(r.header("sec-websocket-version"), Some("13"));
    assert_eq!(r.text(), "custom 426 GET /ws");
    has_hooks(&r);
    logged("GET /ws 426", 1);
    // An accepted one is logged too (as 101), and works.
    let mut s = testkit::ws::connect(addr, "/ws");
    testkit::ws::send(
        &mut s,
        &testkit::ws::client_frame(testkit::ws::op::TEXT, b"hi"),
    );
    assert_eq!(testkit::ws::read_frame(&mut s).unwrap().2, b"hi");
    assert!(!logs::matching("GET /ws 101").is_empty());
}

#[test]
fn error_page_rule_for_handler_responses() {
    let addr = start();
    let mut c = Client::connect(addr);
    // Error pages: rendered by the errors handler.
    assert_eq!(
        c.get("/resp-not-found").text(),
        "custom 404 GET /resp-not-found"
    );
    assert_eq!(c.get("/error-404").text(), "custom 404 GET /error-404");
    assert_eq!(c.get("/missing").text(), "custom 404 GET /missing");
    // The app's own content: sent as is.
    let r = c.get("/err-not-found");
    assert_eq!((r.status, r.text().as_str()), (404, "no such thing"));
    let r = c.get("/own-404");
    assert_eq!((r.status, r.text().as_str()), (404, "my own page"));
}

#[test]
fn payload_too_large_carries_cors_and_the_custom_page() {
    let addr = start();
    let r = exchange(
        addr,
        format!(
            "POST /upload?big HTTP/1.1\r\nHost: t\r\nOrigin: {ORIGIN}\r\nContent-Length: 1000\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 413);
    assert_eq!(r.text(), "custom 413 POST /upload");
    has_hooks(&r);
    // Found while reading a chunked body: same.
    let chunk = "x".repeat(100);
    let r = exchange(
        addr,
        format!(
            "POST /upload HTTP/1.1\r\nHost: t\r\nOrigin: {ORIGIN}\r\n\
             Transfer-Encoding: chunked\r\n\r\n64\r\n{chunk}\r\n0\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 413);
    assert_eq!(r.text(), "custom 413 POST /upload");
    has_hooks(&r);
    logged("POST /upload 413", 2);
}

#[test]
fn header_fields_too_large_carries_cors_and_the_custom_page() {
    let addr = start();
    // A head over max_header, Origin early in it.
    let r = exchange(
        addr,
        format!(
            "GET /ok?h431 HTTP/1.1\r\nHost: t\r\nOrigin: {ORIGIN}\r\nX-Big: {}\r\n\r\n",
            "a".repeat(3000)
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 431);
    assert_eq!(r.text(), "custom 431 GET /ok");
    has_hooks(&r);
    // Too many fields.
    let mut raw = format!("GET /many HTTP/1.1\r\nHost: t\r\nOrigin: {ORIGIN}\r\n");
    for i in 0..20 {
        raw.push_str(&format!("X-{i}: {i}\r\n"));
    }
    raw.push_str("\r\n");
    let r = exchange(addr, raw.as_bytes());
    assert_eq!(r.status, 431);
    assert_eq!(r.text(), "custom 431 GET /many");
    has_hooks(&r);
    logged("GET /many 431", 1);
}

#[test]
fn malformed_head_after_the_request_line_carries_cors() {
    let addr = start();
    let r = exchange(
        addr,
        format!(
            "POST /upload?cl HTTP/1.1\r\nHost: t\r\nOrigin: {ORIGIN}\r\nContent-Length: 1\r\n\
             Content-Length: 1\r\n\r\nx"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.text(), "custom 400 POST /upload");
    has_hooks(&r);
    // A path whose escapes are not UTF-8.
    let r = exchange(
        addr,
        format!("GET /bad%ff HTTP/1.1\r\nHost: t\r\nOrigin: {ORIGIN}\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.text(), "custom 400 GET /bad%ff");
    has_hooks(&r);
    logged("GET /bad%ff 400", 1);
}

#[test]
fn request_timeout_carries_cors() {
    let addr = start();
    // The head never ends: 408 once the header timeout passes.
    let mut c = Client::connect(addr);
    c.send(format!("GET /slow HTTP/1.1\r\nHost: t\r\nOrigin: {ORIGIN}\r\n").as_bytes());
    let r = c.read_response();
    assert_eq!(r.status, 408);
    assert_eq!(r.text(), "custom 408 GET /slow");
    has_hooks(&r);
    logged("GET /slow 408", 1);
}

#[test]
fn without_a_request_line_the_error_page_is_bare() {
    let addr = start();
    let mut c = Client::connect(addr);
    c.send(b"\x01\x02 nonsense\r\nOrigin: https://app.example\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 400);
    // The errors handler saw no request; no after-hook could run.
    assert_eq!(r.text(), "custom 400 -");
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(r.header("x-request-id"), None);
    let mut rest = Vec::new();
    let _ = c.stream.read_to_end(&mut rest);
}

#[test]
fn a_request_line_over_the_head_limit_is_414() {
    let addr = start();
    // The line never ends within what the server reads: no request to show.
    let mut c = Client::connect(addr);
    c.send(format!("GET /{}", "u".repeat(3000)).as_bytes());
    let r = c.read_response();
    assert_eq!(r.status, 414);
    assert_eq!(r.text(), "custom 414 -");
    assert!(c.is_closed());
    // It did arrive whole: the page, the hooks and the log see it.
    let path = format!("/{}", "v".repeat(3000));
    let r = exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nOrigin: {ORIGIN}\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 414);
    assert_eq!(r.text(), format!("custom 414 GET {path}"));
    has_hooks(&r);
    logged(&format!("GET {path} 414"), 1);
}

#[test]
fn a_handler_panic_is_a_500_page_with_the_after_hooks() {
    let addr = start();
    let r = exchange(
        addr,
        format!("GET /boom HTTP/1.1\r\nHost: t\r\nOrigin: {ORIGIN}\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 500);
    assert_eq!(r.text(), "custom 500 GET /boom");
    has_hooks(&r);
    logged("GET /boom 500", 1);
}

/// With an origin list the answer depends on `Origin` even when it carries
/// no CORS headers (no `Origin`, another one, an error page): every answer
/// says `Vary: Origin`, else a shared cache could hand a listed origin an
/// answer stored without them. A handler's own `Vary` is kept.
#[test]
fn every_answer_varies_on_origin() {
    let addr = start();
    let ask = |raw: String| exchange(addr, raw.as_bytes());
    for (raw, status) in [
        ("GET /ok?vary HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), 200),
        (
            "GET /ok?vary HTTP/1.1\r\nHost: t\r\nOrigin: https://evil.example\r\n\r\n".into(),
            200,
        ),
        ("GET /vary-nowhere HTTP/1.1\r\nHost: t\r\n\r\n".into(), 404),
    ] {
        let r = ask(raw);
        assert_eq!(r.status, status, "{r:?}");
        assert_eq!(r.headers_all("vary"), ["Origin"], "{r:?}");
        assert_eq!(r.header("access-control-allow-origin"), None);
    }

    let r = ask(format!(
        "GET /gz HTTP/1.1\r\nHost: t\r\nOrigin: {ORIGIN}\r\n\r\n"
    ));
    assert_eq!(r.headers_all("vary"), ["Accept-Encoding, Origin"], "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));

    for origin in [ORIGIN, "https://evil.example"] {
        let r = ask(format!(
            "OPTIONS /ok HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\n\
             Access-Control-Request-Method: GET\r\n\r\n"
        ));
        assert_eq!(r.status, 204, "{r:?}");
        assert_eq!(
            r.headers_all("vary"),
            ["Origin, Access-Control-Request-Method, Access-Control-Request-Headers"],
            "{r:?}"
        );
    }
}

/// Scheme and host are case-insensitive: a listed origin matches whatever
/// case it arrives in, and the answer echoes it as sent.
#[test]
fn origins_match_without_regard_to_case() {
    let addr = start();
    let r = exchange(
        addr,
        b"GET /ok?case HTTP/1.1\r\nHost: t\r\nOrigin: HTTPS://App.Example\r\n\r\n",
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("HTTPS://App.Example"),
        "{r:?}"
    );
}
