//! Graceful shutdown of the real `hello` binary, driven by signals from
//! outside (never forking inside the test process).

use std::time::{Duration, Instant};

use std::collections::BTreeSet;

use nix::sys::signal::Signal;
use testkit::procs::wait_sleeping;
use testkit::{Client, ServerProcess, TIMEOUT};

const HELLO: &str = env!("CARGO_BIN_EXE_hello");

/// `GET /sleep?ms=MS` on a connection of its own, returned once its
/// handler runs in `server` (a single process: hello names its thread
/// meanwhile), so that what the test does next meets it in flight.
fn sleeping_in(server: &ServerProcess, ms: u64) -> std::thread::JoinHandle<testkit::Resp> {
    let addr = server.addr;
    let slow = std::thread::spawn(move || Client::connect(addr).get(&format!("/sleep?ms={ms}")));
    let serving = BTreeSet::from([server.pid()]);
    assert!(
        wait_sleeping(&serving, TIMEOUT).is_some(),
        "/sleep never started"
    );
    slow
}

fn drains_in_flight_request_on(sig: Signal) {
    let mut server = ServerProcess::start(HELLO, &["--bind", "127.0.0.1:0"]);
    let mut idle = Client::connect(server.addr);
    assert_eq!(idle.get("/plaintext").status, 200);
    let slow = sleeping_in(&server, 1500);
    let start = Instant::now();
    server.signal(sig);
    let r = slow.join().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "slept"));
    let status = server.wait_exit(Duration::from_secs(5)).expect("exited");
    assert!(status.success(), "{status:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    // The idle keep-alive connection was closed, not left hanging.
    assert!(idle.is_closed());
}

#[test]
fn sigterm_drains_in_flight_requests() {
    drains_in_flight_request_on(Signal::SIGTERM);
}

#[test]
fn sigint_drains_in_flight_requests() {
    drains_in_flight_request_on(Signal::SIGINT);
}

#[test]
fn drain_deadline_bounds_shutdown() {
    let mut server = ServerProcess::start(
        HELLO,
        &["--bind", "127.0.0.1:0", "--drain-timeout-ms", "300"],
    );
    let addr = server.addr;
    // A client that never finishes its request holds a connection open.
    // The server's `100 Continue` shows it has read the head: the request
    // is in flight when the signal comes.
    let mut stuck = Client::connect(addr);
    stuck.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
    );
    assert_eq!(stuck.read_response().status, 100);
    stuck.send(b"ab");
    server.signal(Signal::SIGTERM);
    let start = Instant::now();
    let status = server.wait_exit(Duration::from_secs(5)).expect("exited");
    assert!(status.success());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

/// A client reading a long stream as fast as it comes does not keep the
/// process from seeing its stop signal: the drain deadline still bounds
/// the stop. (Before, the loop pulled the stream for as long as the
/// client kept up, and looked at its signals only after the last chunk.)
#[test]
fn a_fast_reader_of_a_long_stream_does_not_delay_the_stop() {
    use std::io::Read;
    let mut server = ServerProcess::start(
        HELLO,
        &["--bind", "127.0.0.1:0", "--drain-timeout-ms", "300"],
    );
    let mut reader = Client::connect(server.addr);
    // About 6 GB of 64-byte chunks: minutes to send, whatever the machine.
    reader.send(b"GET /stream?n=100000000&size=64 HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut stream = reader.stream;
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0usize;
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    });
    std::thread::sleep(Duration::from_millis(300));
    server.signal(Signal::SIGTERM);
    let start = Instant::now();
    let status = server.wait_exit(Duration::from_secs(10)).expect("exited");
    assert!(status.success(), "{status:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    // It was cut at the deadline, well before its end.
    let read = drain.join().unwrap();
    assert!(read > 0 && read < 6_000_000_000, "{read}");
}

#[test]
fn binding_a_used_address_fails_with_one_clear_line() {
    let first = ServerProcess::start(HELLO, &["--bind", "127.0.0.1:0"]);
    let out = std::process::Command::new(HELLO)
        .args(["--bind", &first.addr.to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&first.addr.to_string()) && stderr.contains("in use"),
        "{stderr}"
    );
}

/// A WebSocket upgraded after the stop began, on a keep-alive connection
/// kept from before it, is closed with 1001 at once like every other one
/// (it used to get no close frame and be cut at the drain deadline).
#[test]
fn a_websocket_upgraded_during_the_drain_gets_its_1001() {
    use std::io::Write;
    let mut server = ServerProcess::start(
        HELLO,
        &["--bind", "127.0.0.1:0", "--drain-timeout-ms", "8000"],
    );
    let addr = server.addr;
    let mut keep = std::net::TcpStream::connect(addr).unwrap();
    keep.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut buf = Vec::new();
    keep.write_all(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = testkit::read_response(&mut keep, &mut buf, false).unwrap();
    assert_eq!(r.status, 200);
    // The one thread is busy when the signal comes, so the stop has begun
    // (the signal is read first) when the upgrade request is.
    let slow = std::thread::spawn(move || Client::connect(addr).get("/sleep?ms=800"));
    let serving = BTreeSet::from([server.pid()]);
    assert!(
        wait_sleeping(&serving, TIMEOUT).is_some(),
        "/sleep never started"
    );
    server.signal(Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(100));
    testkit::ws::upgrade(&mut keep, "/ws/echo");
    let started = Instant::now();
    assert_eq!(testkit::ws::read_close_code(&mut keep), 1001);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(slow.join().unwrap().status, 200);
    drop(keep);
    let status = server.wait_exit(Duration::from_secs(10)).expect("exited");
    assert!(status.success(), "{status:?}");
}

/// A single process takes the master's signals without dying or stopping:
/// `SIGHUP` (whose default action ends a process), `SIGTTIN` and `SIGTTOU`
/// (which stop one) and `SIGUSR2` are logged, and the request in flight
/// and the next ones are served.
#[test]
fn a_single_process_outlives_the_masters_signals() {
    let mut server = ServerProcess::start(HELLO, &["--bind", "127.0.0.1:0"]);
    let addr = server.addr;
    let slow = sleeping_in(&server, 600);
    for sig in [
        Signal::SIGHUP,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
        Signal::SIGUSR2,
    ] {
        server.signal(sig);
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = slow.join().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "slept"));
    for _ in 0..3 {
        assert_eq!(Client::connect(addr).get("/plaintext").status, 200);
    }
    let stat = testkit::procs::proc_stat(server.pid()).expect("still running");
    assert!(!stat.is_zombie(), "{stat:?}");
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(10)).expect("exited");
    assert!(status.success(), "{status:?}");
}

/// A request kept in flight (a body that has not all come) holds the
/// drain open; its `100 Continue` shows the server has read its head.
fn body_in_flight(addr: std::net::SocketAddr) -> Client {
    let mut c = Client::connect(addr);
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    assert_eq!(c.read_response().status, 100);
    c.send(b"ab");
    c
}

/// Once a stop's drain begins, the server lets go of its listening
/// sockets: a new connection is refused at once, as nginx's are, instead
/// of being queued for the whole drain and reset when the process exits
/// (a client cannot tell whether such a request ran). With workers, the
/// master closes its copies of the sockets too.
fn new_connections_are_refused_once_the_drain_begins(extra: &[&str]) {
    let mut args = vec!["--bind", "127.0.0.1:0", "--drain-timeout-ms", "8000"];
    args.extend_from_slice(extra);
    let mut s = testkit::procs::ServerTree::start(HELLO, &args);
    let addr = s.addr();
    let mut held = body_in_flight(addr);
    s.signal(Signal::SIGTERM);
    s.wait_log("stop requested: draining", TIMEOUT);
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            Err(e) => panic!("connect: {e}"),
            Ok(stream) => {
                // Accepted before the sockets closed: it must be answered,
                // not held and reset.
                let mut c = Client::from_stream(stream);
                c.stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                c.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
                let r = c
                    .try_read_response(false)
                    .expect("a connection taken during the drain was not answered");
                assert_eq!(r.status, 200);
            }
        }
        assert!(
            Instant::now() < until,
            "new connections still taken 3 s into the drain"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The request in flight still completes.
    held.send(b"cd");
    let r = held.read_response();
    assert_eq!((r.status, r.text().as_str()), (200, "abcd"));
    let status = s.wait_exit(Duration::from_secs(5)).expect("exited");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_single_process_refuses_new_connections_once_it_drains() {
    new_connections_are_refused_once_the_drain_begins(&[]);
}

#[test]
fn workers_and_master_refuse_new_connections_once_they_drain() {
    new_connections_are_refused_once_the_drain_begins(&["--workers", "2"]);
}

/// A connection accepted before the stop that has not sent its request
/// yet (a browser's preconnect, a retransmitted first packet) is owed an
/// answer as much as one whose request came: it keeps its header timeout,
/// where a keep-alive connection between requests is closed after a
/// second.
#[test]
fn a_connection_yet_to_send_its_request_is_served_during_the_drain() {
    let mut s = testkit::procs::ServerTree::start(HELLO, &["--bind", "127.0.0.1:0"]);
    let addr = s.addr();
    let mut fresh = Client::connect(addr);
    let mut kept = Client::connect(addr);
    assert_eq!(kept.get("/plaintext").status, 200);
    let mut held = body_in_flight(addr);
    s.signal(Signal::SIGTERM);
    s.wait_log("stop requested: draining", TIMEOUT);
    std::thread::sleep(Duration::from_millis(1500));
    fresh.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = fresh.read_response();
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert!(kept.is_closed(), "the idle keep-alive connection is closed");
    held.send(b"cd");
    assert_eq!(held.read_response().status, 200);
    assert!(s
        .wait_exit(Duration::from_secs(5))
        .expect("exited")
        .success());
}

/// A worker busy in a handler when the stop comes still holds every
/// socket (each worker holds them all), so connections keep queueing on
/// the sockets of workers already gone. When its handler returns, its
/// drain takes all of them (not one per socket) and serves them before it
/// lets the sockets go: a connection made during the stop is answered or
/// refused, never taken and reset.
#[test]
fn connections_queued_behind_a_busy_worker_are_served_at_its_drain() {
    let mut s = testkit::procs::ServerTree::start_workers(HELLO, 2, &[]);
    let kids = s.wait_ready(2, TIMEOUT);
    let addr = s.addr();
    let slow = std::thread::spawn(move || Client::connect(addr).get("/sleep?ms=2000"));
    assert!(
        wait_sleeping(&kids, TIMEOUT).is_some(),
        "/sleep never started"
    );
    s.signal(Signal::SIGTERM);
    s.wait_log("stop requested: draining", TIMEOUT);
    // The idle worker is gone (or going); the busy one still sleeps.
    std::thread::sleep(Duration::from_millis(300));
    let mut taken = Vec::new();
    for _ in 0..16 {
        if let Ok(stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            let mut c = Client::from_stream(stream);
            c.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
            taken.push(c);
        }
    }
    let r = slow.join().unwrap();
    assert_eq!(r.status, 200);
    for (i, mut c) in taken.into_iter().enumerate() {
        let r = c
            .try_read_response(false)
            .unwrap_or_else(|e| panic!("connection {i}, taken during the stop, lost: {e}"));
        assert_eq!(r.status, 200, "connection {i}");
    }
    assert!(s
        .wait_exit(Duration::from_secs(10))
        .expect("exited")
        .success());
}

/// `tine::ServerHandle::stop` from a handler: a single process drains as
/// on `SIGTERM` (the request in flight is answered); with workers the
/// handle signals the master, which stops them all.
#[test]
fn a_handler_stops_the_server_with_its_handle() {
    let stop = b"POST /stop HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n";
    let mut server = ServerProcess::start(HELLO, &["--bind", "127.0.0.1:0", "--stop-route"]);
    let slow = sleeping_in(&server, 600);
    let mut c = Client::connect(server.addr);
    c.send(stop);
    let r = slow.join().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "slept"));
    assert_eq!(c.read_response().status, 202);
    let status = server.wait_exit(Duration::from_secs(5)).expect("exited");
    assert!(status.success(), "{status:?}");

    let mut server = ServerProcess::start(
        HELLO,
        &["--bind", "127.0.0.1:0", "--workers", "2", "--stop-route"],
    );
    let mut c = Client::connect(server.addr);
    c.send(stop);
    assert_eq!(c.read_response().status, 202);
    let status = server.wait_exit(Duration::from_secs(10)).expect("exited");
    assert!(status.success(), "{status:?}");
}
