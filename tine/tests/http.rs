//! HTTP/1.1 behaviour over real TCP: keep-alive, pipelining, bodies,
//! 100-continue, HEAD, routing errors, panics.

mod support;

use std::io::Write;
use std::time::Duration;

use support::{serve, Client};
use tine::{App, Request, Response, StatusCode};

fn app() -> App {
    App::new()
        .get("/plaintext", |_: &Request| "Hello, World!")
        .get("/hello/:name", |req: &Request| {
            format!("Hello, {}!", req.param("name").unwrap())
        })
        .post("/echo", |req: &Request| Response::bytes(req.body_bytes()))
        .get("/query", |req: &Request| format!("{:?}", req.query_pairs()))
        .get("/panic", |_: &Request| -> Response { panic!("deliberate") })
        .get("/bye", |_: &Request| {
            Response::text("bye").with_header("connection", "Close")
        })
        .get("/cookie", |req: &Request| {
            Response::text(
                req.cookie("a")
                    .map(|c| c.value().to_string())
                    .unwrap_or_default(),
            )
            .simple_cookie("sid", "x")
        })
}

#[test]
fn keep_alive_reuses_the_connection() {
    let addr = serve(app);
    let mut c = Client::connect(addr);
    for i in 0..5 {
        let r = c.get(&format!("/hello/n{i}"));
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("Hello, n{i}!"));
        assert!(r.header("connection").is_none());
        assert!(r.header("date").is_some());
        assert_eq!(r.header("content-length"), Some(&*r.body.len().to_string()));
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let addr = serve(app);
    let mut c = Client::connect(addr);
    let mut batch = Vec::new();
    for i in 0..50 {
        batch.extend_from_slice(format!("GET /hello/{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    batch.extend_from_slice(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nlast");
    c.send(&batch);
    for i in 0..50 {
        assert_eq!(c.read_response().text(), format!("Hello, {i}!"));
    }
    assert_eq!(c.read_response().text(), "last");
}

#[test]
fn content_length_and_chunked_bodies() {
    let addr = serve(app);
    let mut c = Client::connect(addr);
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello");
    std::thread::sleep(std::time::Duration::from_millis(50));
    c.send(b" world");
    assert_eq!(c.read_response().text(), "hello world");
    c.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n",
    );
    std::thread::sleep(std::time::Duration::from_millis(50));
    c.send(b"6\r\n world\r\n0\r\nTrailer: x\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello world");
    // The connection is still usable.
    assert_eq!(c.get("/plaintext").text(), "Hello, World!");
}

#[test]
fn expect_100_continue() {
    let addr = serve(app);
    let mut c = Client::connect(addr);
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    let interim = c.read_response();
    assert_eq!(interim.status, 100);
    c.send(b"abc");
    let r = c.read_response();
    assert_eq!((r.status, r.text().as_str()), (200, "abc"));
}

#[test]
fn a_body_no_route_takes_is_answered_before_it_is_sent() {
    let addr = serve(app);
    // 404 or 405 at once: no `100 Continue` first, the body not waited for.
    for (head, status) in [
        ("POST /nowhere", 404),
        ("PUT /plaintext", 405),
        ("POST /hello/x", 405),
    ] {
        let mut c = Client::connect(addr);
        c.send(
            format!(
                "{head} HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
            )
            .as_bytes(),
        );
        let r = c.read_response();
        assert_eq!(r.status, status, "{head}");
        assert_eq!(r.header("connection"), Some("close"), "{head}");
        assert!(c.is_closed(), "{head}");
    }
    // A 100 MiB upload to no route is not read (it would be spilled to a
    // temporary file first).
    let mut c = Client::connect(addr);
    c.send(b"POST /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: 104857600\r\n\r\n");
    assert_eq!(c.read_response().status, 404);
    // A body that came with its head is dropped and the connection goes on.
    let mut c = Client::connect(addr);
    c.send(b"POST /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    let r = c.read_response();
    assert_eq!(r.status, 404);
    assert!(r.header("connection").is_none());
    assert_eq!(c.get("/plaintext").text(), "Hello, World!");
}

#[test]
fn a_small_body_no_route_takes_is_passed_over_as_it_arrives() {
    let addr = serve(app);
    // The answer goes out before the body; the body, sent after it, is
    // dropped and the connection goes on (a pipelining client whose head
    // ended a read used to lose its connection here).
    let mut c = Client::connect(addr);
    c.send(b"POST /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nab");
    let r = c.read_response();
    assert_eq!(r.status, 404);
    assert!(r.header("connection").is_none());
    c.send(b"cde");
    assert_eq!(c.get("/plaintext").text(), "Hello, World!");
    // A chunked body likewise, checked as it is passed over; its length
    // shows only at its end, so the answer waits for it, to say whether
    // the connection stays open.
    c.send(b"PUT /plaintext HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
    assert!(c.nothing_within(Duration::from_millis(200)));
    c.send(b"lo\r\n0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 405);
    assert!(r.header("connection").is_none());
    assert_eq!(c.get("/plaintext").text(), "Hello, World!");
    // A chunked body that grows past what is passed over, or a malformed
    // one, gets its answer saying so, and the connection ends.
    for body in [
        format!("{:x}\r\n{}\r\n", 300 * 1024, "x".repeat(300 * 1024)),
        "zz\r\n".to_string(),
    ] {
        let mut c = Client::connect(addr);
        c.send(b"POST /nowhere HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
        c.send(body.as_bytes());
        let r = c.read_response();
        assert_eq!(r.status, 404);
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.is_closed());
    }
    // A client that stops sending its chunked body (here: shuts its side)
    // still gets the answer, saying the connection closes.
    let mut c = Client::connect(addr);
    c.send(b"POST /nowhere HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab");
    c.shutdown_write();
    let r = c.read_response();
    assert_eq!(r.status, 404);
    assert_eq!(r.header("connection"), Some("close"));
    // A body larger than that still to come is not waited for.
    let mut c = Client::connect(addr);
    c.send(b"POST /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: 262145\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 404);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed());
}

#[test]
fn head_has_headers_but_no_body() {
    let addr = serve(app);
    let mut c = Client::connect(addr);
    c.send(b"HEAD /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_head_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("13"));
    // No body bytes were sent: the next response parses cleanly.
    assert_eq!(c.get("/plaintext").text(), "Hello, World!");
}

#[test]
fn not_found_and_method_not_allowed() {
    let addr = serve(app);
    let mut c = Client::connect(addr);
    assert_eq!(c.get("/nope").status, 404);
    c.send(b"DELETE /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
}

#[test]
fn options_asterisk_is_answered_for_the_server() {
    let addr = serve(app);
    let mut c = Client::connect(addr);
    c.send(b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_eq!(c.get("/plaintext").text(), "Hello, World!");
    // With a body: answered before it is sent, as for no route.
    let mut c = Client::connect(addr);
    c.send(b"OPTIONS * HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n");
    assert_eq!(c.read_response().status, 204);
    // The pattern `*` takes it like any other path.
    let addr = serve(|| App::new().any("*", |req: &Request| format!("all {}", req.path())));
    let mut c = Client::connect(addr);
    c.send(b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().text(), "all *");
    // A wildcard path does not: `*` is not a path under `/` (a static
    // mount at `/` answered it 404, looking for a file named `*`).
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let addr = serve(move || {
        App::new()
            .static_dir("/", &root)
            .any("/api/*", |_: &Request| "api")
    });
    let mut c = Client::connect(addr);
    c.send(b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().status, 204);
    // Nor does the app's fallback (a single-page app's page), though it
    // is registered on the bare `*`.
    let addr = serve(|| App::new().fallback(|_: &Request| "the app's page"));
    let mut c = Client::connect(addr);
    c.send(b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().status, 204);
    assert_eq!(c.get("/anything").text(), "the app's page");
}

#[test]
fn a_panicking_handler_gives_500_and_the_connection_goes_on() {
    let addr = serve(app);
    let mut c = Client::connect(addr);
    let r = c.get("/panic");
    assert_eq!(r.status, 500);
    assert_eq!(c.get("/plaintext").text(), "Hello, World!");
}

#[test]
fn http10_closes_unless_keep_alive() {
    let addr = serve(app);
    let mut c = Client::connect(addr);
    c.send(b"GET /plaintext HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed());

    let mut c = Client::connect(addr);
    c.send(b"GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.read_response().header("connection"), Some("keep-alive"));
    c.send(b"GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.read_response().status, 200);
}

#[test]
fn connection_close_is_honoured() {
    let addr = serve(app);
    let mut c = Client::connect(addr);
    c.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(c.read_response().header("connection"), Some("close"));
    assert!(c.is_closed());

    // A handler's `Connection: close` closes too, with one field saying so;
    // what was pipelined behind the request is not answered.
    let mut c = Client::connect(addr);
    c.send(b"GET /bye HTTP/1.1\r\nHost: t\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.text(), "bye");
    assert_eq!(r.headers_all("connection"), ["close"]);
    assert!(c.is_closed());
}

#[test]
fn query_decoding_params_and_cookies() {
    let addr = serve(app);
    let mut c = Client::connect(addr);
    assert_eq!(
        c.get("/query?a=1&b=x+y%21").text(),
        r#"[("a", "1"), ("b", "x y!")]"#
    );
    assert_eq!(c.get("/hello/J%C3%BCrgen").text(), "Hello, Jürgen!");
    c.send(b"GET /cookie HTTP/1.1\r\nHost: t\r\nCookie: a=42; b=1\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.text(), "42");
    assert_eq!(
        r.header("set-cookie"),
        Some("sid=x; HttpOnly; SameSite=Lax; Path=/")
    );
}

#[test]
fn custom_error_handler_renders_server_errors() {
    let addr = serve(|| {
        app().errors(|_req, status: StatusCode| {
            Response::html(format!("<h1>{}</h1>", status.as_u16()))
        })
    });
    let mut c = Client::connect(addr);
    let r = c.get("/missing");
    assert_eq!((r.status, r.text().as_str()), (404, "<h1>404</h1>"));
    c.stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let r = c.read_response();
    assert_eq!((r.status, r.text().as_str()), (400, "<h1>400</h1>"));
}

/// Chunked framing another parser could read differently is refused, and
/// nothing after it is read as a request.
#[test]
fn malformed_chunk_lines_get_400_and_close() {
    let addr = serve(app);
    // A bare LF inside a chunk extension: a proxy that ends the line there
    // would see a chunk "Z\r\nA" of a different size than tine would.
    let bodies: &[&[u8]] = &[
        b"1;\nZ\r\nA\r\n0\r\n\r\n",
        // A bare LF in the trailers.
        b"1\r\nA\r\n0\r\nX-T: 1\n\r\n",
        // A size line without a digit: not the last chunk.
        b"5\r\nhello\r\n\r\n\r\n",
        b";x=1\r\n\r\n",
        // Trailer lines that are not fields.
        b"1\r\nA\r\n0\r\nGET /x HTTP/1.1\r\n\r\n",
        b"1\r\nA\r\n0\r\nX-T: 1\r\n folded\r\n\r\n",
    ];
    for body in bodies {
        let mut c = Client::connect(addr);
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
        c.send(body);
        // Whatever follows must never be answered.
        c.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.read_response();
        assert_eq!(r.status, 400, "{}", body.escape_ascii());
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.is_closed(), "{}", body.escape_ascii());
    }
}

/// A line of a head ending in a bare LF is refused at once (400, closed):
/// a front end that takes bare LFs as line ends would see another head, or
/// another end of it, than one that does not, and tine cannot know which
/// kind is in front of it. Before, a head ending in `\n\n` was answered
/// only by the header timeout, and one ending in `\r\n\n` took every byte
/// up to the next CRLF CRLF as its own, the next request's head included.
#[test]
fn bare_lf_line_ends_in_a_head_get_400_at_once() {
    let addr = serve(|| {
        app().limits(tine::Limits::default().header_timeout(std::time::Duration::from_secs(60)))
    });
    let heads: &[&[u8]] = &[
        b"GET /plaintext HTTP/1.1\nHost: t\n\n",
        b"GET /plaintext HTTP/1.1\r\nHost: t\n\r\n",
        b"GET /plaintext HTTP/1.1\nHost: t\r\n\r\n",
        // A bare-LF-tolerant proxy sees `GET /hello/first`, then a POST
        // whose body is the third request: tine must answer neither the
        // POST nor that body as requests.
        b"GET /hello/first HTTP/1.1\r\nHost: t\r\n\n\
          POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 41\r\n\r\n\
          GET /hello/smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
    ];
    for head in heads {
        let mut c = Client::connect(addr);
        c.send(head);
        let r = c.read_response();
        assert_eq!(r.status, 400, "{}", head.escape_ascii());
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.is_closed(), "{}", head.escape_ascii());
    }
    // A head still arriving: refused before its blank line comes.
    let mut c = Client::connect(addr);
    c.send(b"GET /plaintext HTTP/1.1\nHost: t\n");
    assert_eq!(c.read_response().status, 400);
    assert!(c.is_closed());
}

#[test]
fn empty_lines_before_a_request_are_ignored() {
    let addr = serve(app);
    // Any number of empty lines (CRLF or bare LF) before a request line.
    let mut c = Client::connect(addr);
    c.send(b"\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response();
    assert_eq!((r.status, r.text().as_str()), (200, "Hello, World!"));
    c.send(b"\r\n\n\r\n\r\n");
    c.send(b"\r");
    c.send(b"\nGET /hello/again HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().text(), "Hello, again!");

    // A body followed by empty lines, then a pipelined request.
    let mut c = Client::connect(addr);
    c.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc\r\n\r\n\
          GET /hello/next HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(c.read_response().text(), "abc");
    let r = c.read_response();
    assert_eq!((r.status, r.text().as_str()), (200, "Hello, next!"));

    // Empty lines count against the head limit (16 KiB by default).
    let mut c = Client::connect(addr);
    c.send(&b"\r\n".repeat(9000));
    let r = c.read_response();
    assert_eq!(r.status, 431);
    assert!(c.is_closed());
}

/// A request and the client's end of stream that arrive together (while
/// the one worker is busy, so one readiness event reports both): the
/// response goes out and the connection closes at once, not when the idle
/// timeout ends it. A short read no longer counts as "drained" once the
/// event said EOF, because no later event would say it again.
#[test]
fn a_request_and_eof_arriving_together_close_the_connection_at_once() {
    let addr = serve(|| {
        app()
            .get("/busy", |_: &Request| {
                std::thread::sleep(std::time::Duration::from_millis(300));
                "done"
            })
            .limits(tine::Limits::default().idle_timeout(std::time::Duration::from_secs(60)))
    });
    let mut c = Client::connect(addr);
    assert_eq!(c.get("/plaintext").status, 200);
    let mut busy = Client::connect(addr);
    busy.send(b"GET /busy HTTP/1.1\r\nHost: t\r\n\r\n");
    std::thread::sleep(std::time::Duration::from_millis(100));
    c.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(c.read_response().text(), "Hello, World!");
    assert!(
        c.is_closed(),
        "the connection stays open after the client's EOF"
    );
    assert_eq!(busy.read_response().text(), "done");
}
