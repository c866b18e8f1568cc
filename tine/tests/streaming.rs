//! Large and streamed responses to slow readers, and many concurrent
//! connections, over real TCP.

mod support;

use std::io::Read;
use std::time::{Duration, Instant};

use support::{serve, Client};
use tine::{App, Bytes, Request, Response};

const TEN_MIB: usize = 10 * 1024 * 1024;

fn app() -> App {
    App::new()
        .get("/fast", |_: &Request| "fast")
        .get("/stream", |_: &Request| {
            let chunk = Bytes::from(vec![b's'; 64 * 1024]);
            Response::stream((0..TEN_MIB / (64 * 1024)).map(move |_| chunk.clone()))
        })
        .get("/big", |_: &Request| Response::bytes(vec![b'b'; TEN_MIB]))
}

/// A client that stops reading a 10 MiB response only slows itself: while
/// its response is stuck, other clients are served, then it gets the rest.
fn slow_reader_does_not_stall_others(path: &'static str) {
    let addr = serve(app);
    let mut slow = Client::connect(addr);
    slow.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    let mut buf = vec![0u8; 256 * 1024];
    // The response has started (its first bytes are here), and the client
    // reads nothing more for now.
    assert!(slow.stream.peek(&mut buf).unwrap() > 0);
    // Others are served meanwhile, each within `testkit::TIMEOUT`: a worker
    // stuck on the slow client would answer none of them.
    for _ in 0..20 {
        assert_eq!(Client::connect(addr).get("/fast").text(), "fast");
    }
    // The slow response really was stuck, not already delivered: what
    // waits in the client's receive queue is less than the whole (socket
    // buffers are far smaller than 10 MiB while nobody reads).
    slow.stream.set_nonblocking(true).unwrap();
    let mut all = vec![0u8; TEN_MIB + 4096];
    let queued = slow.stream.peek(&mut all).unwrap_or(0);
    slow.stream.set_nonblocking(false).unwrap();
    assert!(queued < TEN_MIB, "{queued} bytes already delivered");
    // Now it reads, and gets all of it.
    let mut total = 0usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while total < TEN_MIB && Instant::now() < deadline {
        let n = slow.stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed early");
        total += n;
    }
    // Head plus chunk framing plus body.
    assert!(total >= TEN_MIB, "{total}");
}

#[test]
fn streamed_body_to_a_slow_reader() {
    slow_reader_does_not_stall_others("/stream");
}

#[test]
fn large_body_to_a_slow_reader() {
    slow_reader_does_not_stall_others("/big");
}

#[test]
fn streamed_body_decodes_completely() {
    let addr = serve(app);
    let r = Client::connect(addr).get("/stream");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body.len(), TEN_MIB);
}

#[test]
fn a_thousand_concurrent_connections() {
    let addr = serve(app);
    let mut clients: Vec<Client> = (0..1000).map(|_| Client::connect(addr)).collect();
    for c in &mut clients {
        c.send(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    for c in &mut clients {
        assert_eq!(c.read_response().text(), "fast");
    }
    // All still open and usable.
    for c in clients.iter_mut().step_by(10) {
        assert_eq!(c.get("/fast").status, 200);
    }
}

/// A producer that waits between chunks delivers its first chunk before it
/// produces the next: each chunk is written before the next pull. (Before,
/// chunks were gathered up to 64 KiB before the first write, so nothing
/// arrived until the producer was done: this test timed out.)
#[test]
fn a_slow_producer_sends_each_chunk_as_it_is_produced() {
    use std::sync::{mpsc, Mutex};
    let (tx, rx) = mpsc::channel::<()>();
    let rx = Mutex::new(rx);
    let addr = serve(move || {
        App::new().get("/slow", move |_: &Request| {
            let mut n = 0;
            let rx = std::mem::replace(&mut *rx.lock().unwrap(), mpsc::channel().1);
            Response::stream(std::iter::from_fn(move || {
                n += 1;
                match n {
                    1 => Some(Bytes::from_static(b"first|")),
                    2 => rx
                        .recv_timeout(Duration::from_secs(20))
                        .ok()
                        .map(|()| Bytes::from_static(b"second|")),
                    _ => None,
                }
            }))
        })
    });
    let mut c = Client::connect(addr);
    c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.windows(6).any(|w| w == b"first|") {
        let n = c
            .stream
            .read(&mut buf)
            .expect("the first chunk, before the second exists");
        assert!(n > 0, "closed early");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(!seen.windows(7).any(|w| w == b"second|"));
    tx.send(()).unwrap();
    while !seen.ends_with(b"second|\r\n0\r\n\r\n") {
        let n = c.stream.read(&mut buf).expect("the rest");
        assert!(n > 0, "closed early: {}", seen.escape_ascii());
        seen.extend_from_slice(&buf[..n]);
    }
}

/// A client that reads an endless response as fast as it comes does not
/// hold its worker: another connection's request is answered meanwhile,
/// for a producer whose chunks are always ready (each turn writes a
/// bounded share) and for one that waits for each chunk (the others are
/// served between chunks). Before, the worker pulled the stream until the
/// socket was full, which a fast reader never lets happen: `/ping` waited
/// for the stream's end, and so did a stop signal.
#[test]
fn a_fast_reader_of_an_endless_stream_does_not_hold_the_worker() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let addr = serve(|| {
        App::new()
            .get("/ping", |_: &Request| "pong")
            .get("/ready", |_: &Request| {
                let chunk = Bytes::from(vec![b'r'; 4096]);
                Response::stream_batched(std::iter::repeat(chunk))
            })
            .get("/waits", |_: &Request| {
                Response::stream(std::iter::repeat_with(|| {
                    std::thread::sleep(Duration::from_millis(20));
                    "tick\n"
                }))
            })
    });
    for path in ["/ready", "/waits"] {
        let mut reader = Client::connect(addr);
        reader.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let stop = Arc::new(AtomicBool::new(false));
        let read = Arc::new(AtomicUsize::new(0));
        let drain = std::thread::spawn({
            let (stop, read) = (stop.clone(), read.clone());
            let mut stream = reader.stream;
            move || {
                let mut buf = vec![0u8; 256 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            read.fetch_add(n, Ordering::Relaxed);
                        }
                    }
                }
            }
        });
        assert!(support::wait_until(Duration::from_secs(10), || {
            read.load(Ordering::Relaxed) > 1000
        }));
        let r = support::get(addr, "/ping");
        assert_eq!((r.status, r.text().as_str()), (200, "pong"), "{path}");
        stop.store(true, Ordering::Relaxed);
        drain.join().unwrap();
    }
}
