//! Every limit and its status code, and the request-smuggling defences,
//! over real TCP.

mod support;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{serve, wait_until, Client};
use tine::{App, Limits, Request, Response};

fn app_with(limits: Limits) -> App {
    App::new()
        .get("/", |_: &Request| "ok")
        .post("/echo", |req: &Request| Response::bytes(req.body_bytes()))
        .limits(limits)
}

fn small() -> Limits {
    Limits::default()
        .max_header(1024)
        .max_body(64)
        .header_timeout(Duration::from_millis(400))
        .idle_timeout(Duration::from_millis(600))
        .max_connections(4)
}

#[test]
fn oversized_head_gets_431_and_close() {
    let addr = serve(|| app_with(small()));
    let mut c = Client::connect(addr);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(2000)
    );
    c.send(big.as_bytes());
    assert_eq!(c.read_response().status, 431);
    assert!(c.is_closed());
    // Even when the head never ends.
    let mut c = Client::connect(addr);
    c.send(format!("GET / HTTP/1.1\r\nX: {}", "b".repeat(1500)).as_bytes());
    assert_eq!(c.read_response().status, 431);
}

#[test]
fn too_many_headers_get_431() {
    let addr = serve(|| app_with(Limits::default().max_headers(5)));
    let mut c = Client::connect(addr);
    let mut req = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
    for i in 0..10 {
        req.push_str(&format!("X-{i}: {i}\r\n"));
    }
    req.push_str("\r\n");
    c.send(req.as_bytes());
    assert_eq!(c.read_response().status, 431);
}

#[test]
fn oversized_body_gets_413_before_the_body_is_sent() {
    let addr = serve(|| app_with(small()));
    let mut c = Client::connect(addr);
    // Only the head: the answer must come without the body.
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 413);
    assert_eq!(r.header("connection"), Some("close"));

    let mut c = Client::connect(addr);
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..3 {
        c.send(b"20\r\n01234567890123456789012345678901\r\n");
    }
    assert_eq!(c.read_response().status, 413);
    // A body at the limit is fine.
    let mut c = Client::connect(addr);
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 64\r\n\r\n");
    c.send(&[b'z'; 64]);
    assert_eq!(c.read_response().body.len(), 64);
}

#[test]
fn slow_head_gets_408_and_close() {
    let addr = serve(|| app_with(small()));
    let mut c = Client::connect(addr);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ");
    // Trickle one byte every 100 ms, for longer than the client waits for
    // an answer (`testkit::TIMEOUT`), until the server hangs up. If
    // progress extended the header deadline (400 ms), no answer would
    // come in time, however fast or slow the machine; 200 bytes stay
    // under the 1 KiB head limit.
    let mut trickle = c.stream.try_clone().unwrap();
    let trickler = std::thread::spawn(move || {
        for _ in 0..200 {
            std::thread::sleep(Duration::from_millis(100));
            if std::io::Write::write_all(&mut trickle, b"a").is_err() {
                return true;
            }
        }
        false
    });
    let r = c.read_response();
    assert_eq!(r.status, 408);
    assert!(c.is_closed());
    assert!(trickler.join().unwrap(), "the server kept reading the head");
}

#[test]
fn idle_keep_alive_connections_are_closed_silently() {
    let addr = serve(|| app_with(small()));
    let mut c = Client::connect(addr);
    assert_eq!(c.get("/").status, 200);
    let start = Instant::now();
    // Closed within `testkit::TIMEOUT`, and not at once: the idle timeout
    // is 600 ms, counted from just before the response was sent (a loaded
    // machine can only make the wait longer).
    assert!(c.is_closed(), "idle connection must be closed");
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
}

#[test]
fn connection_limit_pauses_accept_without_failing() {
    let addr = serve(|| app_with(Limits::default().max_connections(4)));
    let mut held: Vec<Client> = (0..4).map(|_| Client::connect(addr)).collect();
    for c in &mut held {
        assert_eq!(c.get("/").status, 200);
    }
    // A fifth connects (the kernel queues it) but is not served yet.
    let mut fifth = Client::connect(addr);
    fifth.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    fifth
        .stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        std::io::Read::read(&mut fifth.stream, &mut byte).is_err(),
        "served past the limit"
    );
    // Freeing a slot lets it through.
    drop(held.pop());
    fifth
        .stream
        .set_read_timeout(Some(testkit::TIMEOUT))
        .unwrap();
    assert_eq!(fifth.read_response().status, 200);
}

#[test]
fn smuggling_attempts_get_400_and_close() {
    let addr = serve(|| app_with(Limits::default()));
    let attempts: &[&[u8]] = &[
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length : 3\r\n\r\nabc",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
    ];
    for attempt in attempts {
        let mut c = Client::connect(addr);
        c.send(attempt);
        // A smuggled second request must never be answered.
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.read_response();
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(attempt));
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.is_closed(), "{}", String::from_utf8_lossy(attempt));
    }
}

#[test]
fn clients_that_vanish_leave_the_server_healthy() {
    let addr = serve(|| app_with(Limits::default()));
    for _ in 0..200 {
        let s = TcpStream::connect(addr).unwrap();
        let _ = std::io::Write::write_all(&mut &s, b"GET / HTTP/1.1\r\nHo");
        drop(s);
    }
    assert!(wait_until(Duration::from_secs(5), || Client::connect(addr)
        .get("/")
        .status
        == 200));
}

/// Reads from `c` while trickling one byte every 100 ms, until a response
/// arrives or `bytes` were sent; `None` if none came.
fn trickle_until_answer(c: &mut Client, byte: u8, bytes: usize) -> Option<u16> {
    c.stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    for _ in 0..bytes {
        if let Ok(r) = c.try_read_response(false) {
            return Some(r.status);
        }
        // The server may have closed already; a failed write ends it too.
        if std::io::Write::write_all(&mut c.stream, &[byte]).is_err() {
            break;
        }
    }
    c.stream.set_read_timeout(Some(testkit::TIMEOUT)).unwrap();
    c.try_read_response(false).ok().map(|r| r.status)
}

#[test]
fn a_stalled_response_is_closed_at_the_idle_timeout_whatever_the_client_sends() {
    // A body far larger than the loopback socket buffers, for a client
    // that reads none of it but sends a byte every 100 ms: the idle
    // timeout (600 ms) counts from the last byte the client took, and its
    // input must not renew it. Without the fix it stayed open as long as
    // the bytes came.
    let addr = serve(|| {
        app_with(small()).get("/big", |_: &Request| Response::bytes(vec![b'x'; 64 << 20]))
    });
    let mut c = TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(&mut c, b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let start = Instant::now();
    // The server's close shows as a failing write (a reset: our bytes are
    // unread in its socket). Bounded well past the timeout, however slow
    // the machine.
    let closed = wait_until(testkit::TIMEOUT, || {
        std::thread::sleep(Duration::from_millis(100));
        std::io::Write::write_all(&mut c, b"G").is_err()
    });
    assert!(
        closed,
        "a client sending bytes kept a stalled response open for {:?}",
        start.elapsed()
    );
    // Closed by that timeout, not at once: the idle timeout is a lower
    // bound (no upper one is asserted: the machine may be slow).
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "closed after {:?}, before the idle timeout",
        start.elapsed()
    );
}

#[test]
fn header_timeout_covers_a_head_started_behind_a_pipelined_request() {
    // A long idle timeout: only the header timeout can end the trickle.
    let addr = serve(|| {
        app_with(
            Limits::default()
                .header_timeout(Duration::from_millis(300))
                .idle_timeout(Duration::from_secs(60)),
        )
    });
    let mut c = Client::connect(addr);
    // A complete request and the first byte of the next one, in one write.
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nG");
    assert_eq!(c.read_response().status, 200);
    // The second head's clock started with its first byte: trickling more
    // bytes (each well within the idle timeout) must not keep it alive.
    // 100 bytes take 10 s, far past the 300 ms header timeout.
    assert_eq!(trickle_until_answer(&mut c, b'E', 100), Some(408));
    assert!(c.is_closed());
}

#[test]
fn a_body_trickled_byte_by_byte_gets_408_at_the_body_deadline() {
    // Each byte comes well within the idle timeout; only the whole-body
    // deadline can end this.
    let addr = serve(|| {
        app_with(
            Limits::default()
                .header_timeout(Duration::from_secs(60))
                .idle_timeout(Duration::from_secs(60))
                .body_timeout(Duration::from_millis(300)),
        )
    });
    let mut c = Client::connect(addr);
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 64\r\n\r\n");
    assert_eq!(trickle_until_answer(&mut c, b'z', 60), Some(408));
    assert!(c.is_closed());
}

/// A route group's body timeout replaces the app's for its routes, in
/// both directions: an upload route gives a slow body longer, the rest
/// keep the short one.
#[test]
fn a_group_sets_its_own_body_timeout() {
    let addr = serve(|| {
        app_with(
            Limits::default()
                .idle_timeout(Duration::from_secs(60))
                .body_timeout(Duration::from_secs(1)),
        )
        .nest(
            "/upload",
            tine::Group::new()
                .body_timeout(Duration::from_secs(60))
                .post("/", |req: &Request| format!("{} bytes", req.body_len())),
        )
        .nest(
            "/strict",
            tine::Group::new()
                .body_timeout(Duration::from_millis(100))
                .nest("/inner", tine::Group::new().post("/", |_: &Request| "ok")),
        )
    });
    // 8 bytes over about 1.6 s: past the app's 1 s, within the group's.
    let mut c = Client::connect(addr);
    c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\n\r\n");
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(200));
        c.send(b"q");
    }
    let r = c.read_response();
    assert_eq!((r.status, r.text().as_str()), (200, "8 bytes"));
    // The app's own route keeps the app's timeout.
    let mut c = Client::connect(addr);
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 64\r\n\r\n");
    assert_eq!(trickle_until_answer(&mut c, b'z', 60), Some(408));
    // A nested group inherits a shorter one: 408 well before the app's.
    let mut c = Client::connect(addr);
    let started = Instant::now();
    c.send(b"POST /strict/inner HTTP/1.1\r\nHost: t\r\nContent-Length: 64\r\n\r\n");
    assert_eq!(c.read_response().status, 408);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_body_slower_than_the_header_timeout_is_fine_within_the_body_timeout() {
    // The header timeout times the head only: a body may take longer.
    let addr = serve(|| {
        app_with(
            Limits::default()
                .header_timeout(Duration::from_millis(200))
                .body_timeout(Duration::from_secs(60)),
        )
    });
    let mut c = Client::connect(addr);
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\n\r\n");
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(100));
        c.send(b"q");
    }
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"qqqqqqqq");
}

#[test]
fn connections_over_the_per_address_limit_are_closed_at_once() {
    let addr = serve(|| app_with(Limits::default().max_connections_per_ip(3)));
    let mut held: Vec<Client> = (0..3).map(|_| Client::connect(addr)).collect();
    for c in &mut held {
        assert_eq!(c.get("/").status, 200);
    }
    // A fourth from the same address is closed without an answer.
    let mut fourth = Client::connect(addr);
    assert!(fourth.is_closed(), "a fourth connection was kept");
    // The held ones still work, and a freed slot is usable again.
    assert_eq!(held[0].get("/").status, 200);
    drop(held.pop());
    assert!(wait_until(testkit::TIMEOUT, || {
        let mut c = Client::connect(addr);
        c.stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        c.try_read_response(false).is_ok_and(|r| r.status == 200)
    }));
}

/// `keepalive_requests`: the last request a connection may make gets
/// `Connection: close` and the close, one at a time or pipelined (what
/// was pipelined behind it is not answered); a body's request counts too.
#[test]
fn a_connection_closes_after_keepalive_requests() {
    let addr = serve(|| app_with(Limits::default().keepalive_requests(3)));
    let mut c = Client::connect(addr);
    for _ in 0..2 {
        let r = c.get("/");
        assert_eq!((r.status, r.header("connection")), (200, None));
    }
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
    let r = c.read_response();
    assert_eq!(
        (r.status, r.text().as_str(), r.header("connection")),
        (200, "hi", Some("close"))
    );
    assert!(c.is_closed());
    // Five pipelined: three answers, the last one closing.
    let mut c = Client::connect(addr);
    c.send(&b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(5));
    for i in 0..3 {
        let r = c.read_response();
        let close = (i == 2).then_some("close");
        assert_eq!((r.status, r.header("connection")), (200, close), "{i}");
    }
    assert!(c.is_closed());
}

#[test]
fn a_header_count_without_limit_serves_and_refuses_cleanly() {
    // `usize::MAX` reads as "no limit" (as `max_connections_per_ip`'s
    // default is): it once made every request allocate that many header
    // slots and kill the worker ("capacity overflow").
    let addr = serve(|| {
        app_with(
            Limits::default()
                .max_headers(usize::MAX)
                .max_header(1 << 20),
        )
    });
    let mut c = Client::connect(addr);
    assert_eq!(c.get("/").status, 200);
    // An unsupported minor version is parsed again as 1.1 with its own
    // slots: the same.
    c.send(b"GET / HTTP/1.5\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().status, 200);

    // A refused request with more names than the `http` crate's header
    // map holds (about 24,000) once panicked building the map to log it.
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n");
    for i in 0..30_000 {
        many.push_str(&format!("x{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let mut c = Client::connect(addr);
    c.send(many.as_bytes());
    assert_eq!(c.read_response().status, 431);
    // The same count with one `Host`: over the most a limit can allow.
    let many = many.replacen("Host: b\r\n", "", 1);
    let mut c = Client::connect(addr);
    c.send(many.as_bytes());
    assert_eq!(c.read_response().status, 431);
    // And the server still serves.
    assert_eq!(Client::connect(addr).get("/").status, 200);
}
