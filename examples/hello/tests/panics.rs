//! Panics in application code outside a handler, in real `hello`
//! processes: a panicking `Response::stream` costs only its own response
//! (the worker and its other connections live on), and a panicking
//! `on_worker_start` hook is a start-up error (single process) or a worker
//! exit the master answers with its crash backoff.

use std::io::Read;
use std::time::Duration;

use testkit::load::{connection_per_worker, PID_PATH};
use testkit::procs::{heavy, ServerTree};
use testkit::Client;

const HELLO: &str = env!("CARGO_BIN_EXE_hello");
/// Bound of every wait for the processes to reach a state.
const T: Duration = Duration::from_secs(5);

#[test]
fn a_panicking_stream_spares_the_worker_and_its_other_connections() {
    let _g = heavy();
    let s = ServerTree::start_workers(HELLO, 2, &[]);
    let kids = s.wait_ready(2, T);
    let addr = s.addr();
    // Two kept-alive connections on the same worker.
    let mut conns = connection_per_worker(addr, &kids, 200);
    let (&pid, _) = conns.iter().next().unwrap();
    let mut other = conns.remove(&pid).unwrap();
    let mut victim = (0..200)
        .map(|_| Client::connect(addr))
        .find_map(|mut c| (c.get(PID_PATH).text() == pid.to_string()).then_some(c))
        .expect("a second connection to the same worker");
    victim.send(b"GET /stream?n=5&size=3&panic_after=2 HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = victim.stream.read(&mut buf) {
        got.extend_from_slice(&buf[..n]);
    }
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
    assert!(got.contains("3\r\nxxx\r\n3\r\nxxx\r\n"), "{got:?}");
    assert!(
        !got.contains("\r\n0\r\n\r\n"),
        "a truncated body must not end: {got:?}"
    );
    // The worker lives on, and so does its other connection.
    assert_eq!(other.get(PID_PATH).text(), pid.to_string());
    let log = s.wait_log("response stream panicked", T);
    assert_eq!(
        log.matches("deliberate panic in /stream").count(),
        1,
        "{log}"
    );
    assert!(!log.contains("exited unexpectedly"), "{log}");
    assert_eq!(s.children(), kids);
    s.stop(T);
}

#[test]
fn a_panicking_worker_init_in_single_process_mode_is_a_start_up_error() {
    let mut s = ServerTree::start(HELLO, &["--bind", "127.0.0.1:0", "--panic-on-start"]);
    let status = s.wait_exit(T).expect("hello exits");
    // An error exit (1), not a panic's 101.
    assert_eq!(status.code(), Some(1), "{}", s.stderr());
    s.wait_log_closed(T);
    let log = s.stderr();
    assert!(log.contains("on_worker_start hook panicked"), "{log}");
    assert_eq!(
        log.matches("deliberate panic in on_worker_start").count(),
        1,
        "{log}"
    );
    assert!(log.contains("not serving"), "{log}");
    // One line, named once.
    assert!(!log.contains("tine: tine:"), "{log}");
}

#[test]
fn a_panicking_worker_init_is_a_worker_crash_with_backoff_then_a_start_up_failure() {
    let _g = heavy();
    let mut s = ServerTree::start_workers(HELLO, 2, &["--panic-on-start"]);
    // Each slot's worker fails, is logged, and is respawned later; no
    // worker ever starts, so the master gives up.
    for slot in 0..2 {
        s.wait_log(
            &format!("worker {slot}: tine: an on_worker_start hook panicked"),
            T,
        );
    }
    let status = s.wait_exit(T).expect("the master gives up");
    s.wait_log_closed(T);
    let log = s.stderr();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("exit status 1"), "{log}");
    assert!(log.contains("respawning in"), "{log}");
    assert!(log.contains("giving up"), "{log}");
    assert!(s.tagged().is_empty(), "{log}");
}
