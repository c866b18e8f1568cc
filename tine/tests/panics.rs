//! Panics in application code, over real TCP: wherever user code runs
//! (handler, before- and after-hooks, the errors handler, a streamed body's
//! iterator, WebSocket callbacks, worker-init), a panic is logged once,
//! costs at most the request or connection it belongs to, and the server
//! serves on.

mod support;

use std::io::Read;
use std::net::SocketAddr;

use support::{serve, Client};
use testkit::{logs, ws};
use tine::{App, Request, Response, WebSocket, WsEvent};

/// Reads until the server closes (EOF or reset) and returns what came.
fn read_to_close(c: &mut Client) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match c.stream.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// The server still answers on a fresh connection.
fn serves_on(addr: SocketAddr) {
    assert_eq!(Client::connect(addr).get("/ok").text(), "ok");
}

/// The panic with this unique message was logged exactly once, by tine.
fn logged_once(marker: &str) {
    let lines = logs::matching(marker);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("panicked"), "{lines:?}");
}

fn base() -> App {
    App::new().get("/ok", |_: &Request| "ok")
}

fn panicking_stream(marker: &'static str) -> Response {
    let mut n = 0;
    Response::stream(std::iter::from_fn(move || {
        n += 1;
        match n {
            1 => Some("one"),
            2 => Some("two"),
            _ => panic!("{marker}"),
        }
    }))
}

#[test]
fn a_panicking_stream_is_cut_off_and_the_server_serves_on() {
    logs::capture();
    let addr = serve(|| {
        base().get("/stream", |_: &Request| {
            panicking_stream("stream-marker-chunked")
        })
    });
    let mut c = Client::connect(addr);
    c.send(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    let got = String::from_utf8_lossy(&read_to_close(&mut c)).into_owned();
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
    assert!(got.contains("transfer-encoding: chunked"), "{got:?}");
    // What the iterator produced goes out, but never the last chunk: the
    // client sees a truncated message, not a complete one.
    assert!(got.contains("3\r\none\r\n3\r\ntwo\r\n"), "{got:?}");
    assert!(!got.contains("\r\n0\r\n\r\n"), "{got:?}");
    serves_on(addr);
    logged_once("stream-marker-chunked");
}

#[test]
fn a_panicking_stream_to_http10_is_not_a_complete_message() {
    logs::capture();
    let addr = serve(|| {
        base().get("/stream", |_: &Request| {
            panicking_stream("stream-marker-http10")
        })
    });
    let mut c = Client::connect(addr);
    c.send(b"GET /stream HTTP/1.0\r\n\r\n");
    // The body is delimited by the close, so a clean close would pass for
    // a complete body: the connection is reset instead.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let reset = loop {
        match c.stream.read(&mut chunk) {
            Ok(0) => break false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => break e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    };
    assert!(reset, "{:?}", String::from_utf8_lossy(&buf));
    serves_on(addr);
    logged_once("stream-marker-http10");
}

#[test]
fn a_panicking_before_hook_answers_500() {
    logs::capture();
    let addr = serve(|| {
        base().before(|req: &mut Request| {
            if req.path() == "/before" {
                panic!("before-marker");
            }
            None
        })
    });
    assert_eq!(Client::connect(addr).get("/before").status, 500);
    serves_on(addr);
    logged_once("before-marker");
}

#[test]
fn a_panicking_after_hook_answers_500() {
    logs::capture();
    let addr = serve(|| {
        base()
            .after(|req: &Request, res: Response| {
                if req.path() == "/ok2" {
                    panic!("after-marker");
                }
                res
            })
            .get("/ok2", |_: &Request| "fine")
    });
    let mut c = Client::connect(addr);
    assert_eq!(c.get("/ok2").status, 500);
    // Same connection: it stays usable.
    assert_eq!(c.get("/ok").text(), "ok");
    logged_once("after-marker");
}

#[test]
fn a_panicking_error_handler_falls_back_to_the_plain_page() {
    logs::capture();
    let addr = serve(|| {
        base().errors(|req, status| {
            if req.is_some_and(|r| r.path() == "/missing") {
                panic!("errors-marker");
            }
            Response::text(format!("custom {}", status.as_u16()))
        })
    });
    let mut c = Client::connect(addr);
    let r = c.get("/missing");
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "404 Not Found\n");
    assert_eq!(c.get("/other").text(), "custom 404");
    logged_once("errors-marker");
}

#[test]
fn a_panicking_websocket_callback_closes_with_1011() {
    logs::capture();
    let addr = serve(|| {
        base().ws("/ws", |ws: &mut WebSocket, ev: WsEvent| match ev {
            WsEvent::Text(t) if t == "boom" => panic!("ws-marker"),
            WsEvent::Text(t) => ws.send_text(t),
            _ => {}
        })
    });
    let mut s = ws::connect(addr, "/ws");
    ws::send(&mut s, &ws::client_frame(ws::op::TEXT, b"hi"));
    assert_eq!(ws::read_frame(&mut s).unwrap().2, b"hi");
    ws::send(&mut s, &ws::client_frame(ws::op::TEXT, b"boom"));
    assert_eq!(ws::read_close_code(&mut s), 1011);
    serves_on(addr);
    logged_once("ws-marker");
}

#[test]
fn a_panicking_worker_init_is_a_start_up_error() {
    logs::capture();
    let (tx, rx) = std::sync::mpsc::channel();
    let run = std::thread::spawn(move || {
        let server = App::new()
            .on_worker_start(|_| panic!("init-marker"))
            .get("/ok", |_: &Request| "ok")
            .bind("127.0.0.1:0")
            .unwrap();
        tx.send(server.local_addr()).unwrap();
        server.run().map_err(|e| e.to_string())
    });
    let addr = rx.recv().unwrap();
    // Single-process mode: `run` returns the error before serving.
    let err = run
        .join()
        .expect("run returns instead of panicking")
        .expect_err("a start-up error");
    assert!(err.contains("on_worker_start"), "{err}");
    logged_once("init-marker");
    // Nothing listens there any more.
    assert!(std::net::TcpStream::connect(addr).is_err());
}
