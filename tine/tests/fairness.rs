//! One busy connection cannot hold a worker: a pipelining client gets a
//! bounded share of each loop turn, and a client that sends without
//! reading is not read from without bound. Over real TCP.

mod support;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{serve, wait_until, Client};
use tine::{App, Request, Response, WebSocket, WsEvent};

/// Pipelined small `POST`s, alternating a route that answers `405` (no
/// handler runs) and an echo route.
fn flood_requests(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let path = if i % 2 == 1 { "/echo" } else { "/" };
        write!(
            out,
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx"
        )
        .unwrap();
    }
    out
}

/// Occurrences of `needle` in `hay`.
fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// The most flood requests (or frames) the server may handle between a
/// second client's request arriving and its answer: a few turns' budget
/// of the flooding connection (64 a turn). Without the budget it is the
/// whole content of the flood's socket buffer, thousands.
const FAIR_SHARE: usize = 4 * 64;

/// Waits (bounded) until the server has handled part of a flood, checking
/// without sleeping: `wait_until`'s 20 ms naps would let a fast server
/// finish the whole flood before the probe starts.
fn flood_started(count: &AtomicUsize) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < testkit::TIMEOUT {
        if count.load(Ordering::SeqCst) > 0 {
            return true;
        }
        std::thread::yield_now();
    }
    false
}

/// Five `GET /count` from a second client while a flood is handled: for
/// each, how far the flood had got (`flood`, counted on the server) when
/// the request was sent, and the server's count when it answered.
fn probe(addr: std::net::SocketAddr, flood: &AtomicUsize) -> Vec<(usize, usize)> {
    let mut other = Client::connect(addr);
    let mut progress = Vec::new();
    for _ in 0..5 {
        other.send(b"GET /count HTTP/1.1\r\nHost: t\r\n\r\n");
        // Read once the request is in the server's socket: a test thread
        // that runs late only makes this larger, never the check stricter.
        let sent = flood.load(Ordering::SeqCst);
        let r = other.read_response();
        assert_eq!(r.status, 200);
        let during: usize = r.text().parse().unwrap();
        progress.push((sent, during));
    }
    progress
}

#[test]
fn a_pipelining_client_does_not_hold_the_worker() {
    const FLOOD: usize = 40_000;
    // Flood requests answered so far, counted by the server itself (an
    // after-hook sees every answer, 405s included), so the check does not
    // depend on how fast any client reads.
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&answered);
    let addr = serve(move || {
        let hook = Arc::clone(&counter);
        App::new()
            .get("/", |_: &Request| "ok")
            .get("/count", move |_: &Request| {
                counter.load(Ordering::SeqCst).to_string()
            })
            .post("/echo", |req: &Request| Response::bytes(req.body_bytes()))
            .after(move |req: &Request, res: Response| {
                if req.path() != "/count" {
                    hook.fetch_add(1, Ordering::SeqCst);
                }
                res
            })
    });
    let mut flood = Client::connect(addr);
    let mut writer_stream = flood.stream.try_clone().unwrap();
    let batch = flood_requests(FLOOD);
    let writer = std::thread::spawn(move || writer_stream.write_all(&batch));
    // Read the answers as fast as they come (counting status lines), so
    // the server is never held up by a full socket to this client.
    let reader = std::thread::spawn(move || {
        let (mut ok, mut refused) = (0, 0);
        let mut buf = vec![0u8; 256 * 1024];
        let mut kept = 0;
        while ok + refused < FLOOD {
            let n = flood.stream.read(&mut buf[kept..]).expect("flood answers");
            assert!(n > 0, "closed after {} answers", ok + refused);
            let end = kept + n;
            ok += count(&buf[..end], b"HTTP/1.1 200 ");
            refused += count(&buf[..end], b"HTTP/1.1 405 ");
            // Keep a tail that may hold the start of a status line
            // (shorter than the status line, so never counted twice).
            kept = 12.min(end);
            buf.copy_within(end - kept..end, 0);
        }
        (ok, refused)
    });
    assert!(flood_started(&answered));
    // While the flood is being answered, a second client is served within
    // a fair share of it: each answer says how far the flood had got.
    let progress = probe(addr, &answered);
    writer.join().unwrap().unwrap();
    assert_eq!(reader.join().unwrap(), (FLOOD / 2, FLOOD / 2));
    assert!(
        progress.iter().all(|&(_, during)| during < FLOOD),
        "the flood was over before the second client was answered: {progress:?}"
    );
    assert!(
        progress
            .iter()
            .all(|&(sent, during)| during.saturating_sub(sent) <= FAIR_SHARE),
        "the second client waited behind the flood: {progress:?}"
    );
}

#[test]
fn a_client_that_does_not_read_is_not_read_from_without_bound() {
    let addr =
        serve(|| App::new().post("/echo", |req: &Request| Response::bytes(req.body_bytes())));
    // 16 KB echoes, sent without ever reading an answer: once the socket
    // buffers on both sides are full the server must stop reading, so the
    // client's writes stall. What it took must stay bounded.
    let body = vec![b'y'; 16 * 1024];
    let mut request = Vec::new();
    write!(
        request,
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    request.extend_from_slice(&body);
    let c = Client::connect(addr);
    c.stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    const BOUND: usize = 64 * 1024 * 1024;
    let mut sent = 0;
    let stalled = loop {
        if sent > BOUND {
            break false;
        }
        match (&c.stream).write(&request) {
            Ok(n) => sent += n,
            Err(_) => break true,
        }
    };
    assert!(stalled, "the server took {sent} bytes without being read");
    // The server is still healthy for others.
    assert_eq!(Client::connect(addr).get("/nothing").status, 404);
}

#[test]
fn a_flooding_websocket_does_not_hold_the_worker() {
    // The flood goes on until the probe is done (in batches, bounded):
    // a fixed-size flood could be over before the probe starts, now that
    // a frame costs the server well under a microsecond.
    const BATCH: usize = 10_000;
    const MAX_FLOOD: usize = 4_000_000;
    let received = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&received);
    let addr = serve(move || {
        let seen = Arc::clone(&counter);
        App::new()
            .get("/count", move |_: &Request| {
                counter.load(Ordering::SeqCst).to_string()
            })
            .ws("/sink", move |_: &mut WebSocket, event: WsEvent| {
                if matches!(event, WsEvent::Text(_)) {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
            })
    });
    let mut sink = testkit::ws::connect(addr, "/sink");
    let frame = testkit::ws::client_frame(testkit::ws::op::TEXT, b"hi");
    let batch: Vec<u8> = frame.repeat(BATCH);
    let stop = Arc::new(AtomicBool::new(false));
    let stop_writer = Arc::clone(&stop);
    let writer = std::thread::spawn(move || {
        let mut sent = 0;
        while !stop_writer.load(Ordering::SeqCst) && sent < MAX_FLOOD {
            sink.write_all(&batch)?;
            sent += BATCH;
        }
        Ok::<_, std::io::Error>((sink, sent))
    });
    assert!(flood_started(&received));
    let progress = probe(addr, &received);
    stop.store(true, Ordering::SeqCst);
    let (_sink, flood) = writer.join().unwrap().unwrap();
    assert!(wait_until(testkit::TIMEOUT, || received
        .load(Ordering::SeqCst)
        == flood));
    assert!(
        progress.iter().all(|&(_, during)| during < flood),
        "the flood was over before the second client was answered: {progress:?} of {flood}"
    );
    assert!(
        progress
            .iter()
            .all(|&(sent, during)| during.saturating_sub(sent) <= FAIR_SHARE),
        "the second client waited behind the flood: {progress:?}"
    );
}
