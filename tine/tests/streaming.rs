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

/// Reads a 10 MiB response slowly while another client must be served
/// promptly: a slow reader only slows itself.
fn slow_reader_does_not_stall_others(path: &'static str) {
    let addr = serve(app);
    let mut slow = Client::connect(addr);
    slow.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    let reader = std::thread::spawn(move || {
        let mut total = 0usize;
        let mut buf = vec![0u8; 256 * 1024];
        let deadline = Instant::now() + Duration::from_secs(60);
        // Slow at first (the socket buffers fill), then read it all.
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(50));
            total += slow.stream.read(&mut buf).unwrap();
        }
        while total < TEN_MIB && Instant::now() < deadline {
            let n = slow.stream.read(&mut buf).unwrap();
            assert!(n > 0, "closed early");
            total += n;
        }
        total
    });
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..20 {
        let start = Instant::now();
        assert_eq!(Client::connect(addr).get("/fast").text(), "fast");
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "{:?}",
            start.elapsed()
        );
    }
    let total = reader.join().unwrap();
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
