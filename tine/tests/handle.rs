//! Stopping a server from code with its `ServerHandle`, over real TCP:
//! servers in this test process run on threads (no fork), so a signal
//! would reach them all; a handle stops one.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use testkit::Client;
use tine::{App, Request};

/// Binds an app on a new thread; its address, its handle and the thread
/// (which returns what `run` returned).
fn start() -> (
    std::net::SocketAddr,
    tine::ServerHandle,
    std::thread::JoinHandle<Result<(), tine::ServeError>>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let server = App::new()
            .get("/", |_: &Request| "hi")
            .get("/slow", |_: &Request| {
                std::thread::sleep(Duration::from_millis(400));
                "slow"
            })
            .bind("127.0.0.1:0")
            .expect("bind");
        tx.send((server.local_addr(), server.handle())).unwrap();
        server.run()
    });
    let (addr, handle) = rx.recv_timeout(testkit::TIMEOUT).expect("started");
    (addr, handle, thread)
}

/// Waits (bounded) for `thread` to end.
fn joined<T>(thread: std::thread::JoinHandle<T>) -> T {
    let start = Instant::now();
    while !thread.is_finished() {
        assert!(start.elapsed() < testkit::TIMEOUT, "run did not return");
        std::thread::sleep(Duration::from_millis(10));
    }
    thread.join().unwrap()
}

#[test]
fn a_handle_stops_its_server_and_no_other() {
    let (a, stop_a, run_a) = start();
    let (b, _stop_b, _run_b) = start();
    let mut kept = Client::connect(a);
    assert_eq!(kept.get("/").status, 200);
    // A request in flight when the stop comes is answered.
    let slow = std::thread::spawn(move || Client::connect(a).get("/slow"));
    std::thread::sleep(Duration::from_millis(100));
    stop_a.stop().unwrap();
    let r = slow.join().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "slow"));
    joined(run_a).expect("a graceful stop");
    // Its keep-alive connection was closed and its port refuses.
    assert!(kept.is_closed());
    assert!(TcpStream::connect(a).is_err());
    // A second stop does nothing.
    stop_a.stop().unwrap();
    // The other server serves on.
    assert_eq!(Client::connect(b).get("/").status, 200);
}

#[test]
fn a_stop_asked_before_run_ends_it_at_once() {
    let thread = std::thread::spawn(|| {
        let server = App::new()
            .get("/", |_: &Request| "hi")
            .bind("127.0.0.1:0")
            .unwrap();
        server.handle().stop().unwrap();
        server.run()
    });
    joined(thread).expect("a graceful stop");
}
