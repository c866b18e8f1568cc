//! Cross-worker publish/subscribe through the real `hello` binary with 4
//! workers: every subscriber in every worker gets each message once, in
//! order; unsubscribing works; a killed worker does not break the bus; a
//! subscriber that stops reading does not grow anyone's memory without
//! bound.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use testkit::procs;
use testkit::ws::{self as raw, chat_join, next_text, Ws};
use testkit::{counters, wait_until, Client, ServerProcess};
use tungstenite::Message;

const HELLO: &str = env!("CARGO_BIN_EXE_hello");

/// Opens chat clients until they span at least two workers.
fn clients_on_several_workers(addr: SocketAddr, room: &str, n: usize) -> (Vec<Ws>, BTreeSet<u32>) {
    let mut clients = Vec::new();
    let mut pids = BTreeSet::new();
    for _ in 0..200 {
        let (ws, pid) = chat_join(addr, room);
        clients.push(ws);
        pids.insert(pid);
        if clients.len() >= n && pids.len() >= 2 {
            break;
        }
    }
    assert!(
        pids.len() >= 2,
        "all connections landed on one worker: {pids:?}"
    );
    (clients, pids)
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn messages_reach_every_subscriber_once_and_in_order_across_workers() {
    let server = ServerProcess::start(HELLO, &["--bind", "127.0.0.1:0", "--workers", "4"]);
    let (mut clients, pids) = clients_on_several_workers(server.addr, "room1", 8);
    eprintln!("subscribers on workers {pids:?}");
    // No wait needed: `chat_join` returned after the room's first message,
    // sent from the callback that subscribed, and tine guarantees the
    // subscription is in place once such a message has been received
    // (`WebSocket::subscribe`).
    for i in 0..50 {
        clients[0]
            .send(Message::Text(format!("msg {i}").into()))
            .unwrap();
    }
    for (n, c) in clients.iter_mut().enumerate() {
        for i in 0..50 {
            assert_eq!(next_text(c), format!("msg {i}"), "client {n}");
        }
    }
    // Exactly once: nothing else arrives.
    for c in clients.iter_mut() {
        c.get_mut()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        assert!(c.read().is_err(), "a duplicate arrived");
    }
}

#[test]
fn http_handlers_publish_and_unsubscribe_stops_delivery() {
    let server = ServerProcess::start(HELLO, &["--bind", "127.0.0.1:0", "--workers", "4"]);
    let (mut clients, _) = clients_on_several_workers(server.addr, "room2", 4);
    clients[1].send(Message::Text("/leave".into())).unwrap();
    assert_eq!(next_text(&mut clients[1]), "left");
    let mut c = Client::connect(server.addr);
    c.send(b"POST /publish/room2 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(c.read_response().status, 202);
    for (n, ws) in clients.iter_mut().enumerate() {
        if n == 1 {
            ws.get_mut()
                .set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            assert!(ws.read().is_err(), "an unsubscribed client got a message");
        } else {
            assert_eq!(next_text(ws), "hello");
        }
    }
}

#[test]
fn a_thread_of_a_worker_publishes_through_its_publisher() {
    let server = ServerProcess::start(HELLO, &["--bind", "127.0.0.1:0", "--workers", "4"]);
    let (mut clients, _) = clients_on_several_workers(server.addr, "room4", 4);
    // The handler answers at once; its thread publishes 100 ms later,
    // while the worker is idle in its loop: the publisher wakes it.
    for i in 0..3 {
        let mut c = Client::connect(server.addr);
        let body = format!("late {i}");
        c.send(
            format!(
                "POST /publish/room4?thread_ms=100 HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        assert_eq!(c.read_response().status, 202);
        for (n, ws) in clients.iter_mut().enumerate() {
            assert_eq!(next_text(ws), body, "client {n}");
        }
    }
}

#[test]
fn the_bus_survives_a_killed_worker() {
    let server = ServerProcess::start(HELLO, &["--bind", "127.0.0.1:0", "--workers", "4"]);
    let (mut clients, pids) = clients_on_several_workers(server.addr, "room3", 6);
    let victim = *pids.iter().next().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    // The victim's clients are gone; the others keep the bus.
    let mut survivors: Vec<Ws> = Vec::new();
    for (mut ws, pid) in clients.drain(..).zip(pids.iter().cycle()) {
        let _ = pid;
        ws.get_mut()
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        match ws.read() {
            Err(tungstenite::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                ws.get_mut()
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                survivors.push(ws);
            }
            _ => {}
        }
    }
    assert!(!survivors.is_empty());
    // A replacement comes up; new clients (some on it) and old ones share messages.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut fresh = Vec::new();
    while Instant::now() < deadline && fresh.len() < 6 {
        let (ws, pid) = chat_join(server.addr, "room3");
        assert_ne!(pid, victim);
        fresh.push(ws);
    }
    // Every fresh client has its pid line: subscribed (see above).
    fresh[0]
        .send(Message::Text("after the crash".into()))
        .unwrap();
    for ws in survivors.iter_mut().chain(fresh.iter_mut()) {
        assert_eq!(next_text(ws), "after the crash");
    }
}

#[test]
fn a_subscriber_that_stops_reading_does_not_grow_memory_without_bound() {
    let server = ServerProcess::start(HELLO, &["--bind", "127.0.0.1:0", "--workers", "2"]);
    let addr = server.addr;
    // One subscriber never reads; another reads everything.
    let (_stuck, _) = chat_join(addr, "flood");
    let (mut reader, _) = chat_join(addr, "flood");
    let tree = || {
        let mut pids: Vec<i32> = procs::children_of(server.pid()).into_iter().collect();
        pids.push(server.pid());
        pids
    };
    let rss_before: u64 = tree().iter().map(|&p| rss_kib(p)).sum();
    // 1,000 messages of 16 KiB (16 MiB, twice the stuck subscriber's 8 MiB
    // outbound limit), paced so the test measures the stuck subscriber, not
    // the queues a flood fills by design (outbox, relay: a few MiB; the
    // flood tests below bound those).
    let body = "x".repeat(16 * 1024);
    let mut c = Client::connect(addr);
    let read = Arc::new(AtomicUsize::new(0));
    let counted = read.clone();
    let reader_thread = std::thread::spawn(move || {
        let mut got = 0usize;
        while got < 1000 {
            let _ = next_text(&mut reader);
            got += 1;
            counted.store(got, Ordering::Relaxed);
        }
        got
    });
    for i in 0..1000 {
        c.send(
            format!(
                "POST /publish/flood HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        assert_eq!(c.read_response().status, 202);
        // The reading subscriber is kept at most 50 messages behind: on a
        // busy machine it fell behind by megabytes, which the server
        // rightly held for it, and the test measured that instead.
        let behind = || read.load(Ordering::Relaxed) + 50 > i;
        assert!(
            wait_until(Duration::from_secs(10), behind),
            "the reader stalled"
        );
    }
    assert_eq!(reader_thread.join().unwrap(), 1000);
    let rss_after: u64 = tree().iter().map(|&p| rss_kib(p)).sum();
    // 16 MiB were published; the stuck subscriber may hold at most its
    // outbound limit (8 MiB) plus socket buffers before being closed.
    let growth = rss_after.saturating_sub(rss_before);
    eprintln!("RSS growth of the server tree: {growth} KiB");
    assert!(growth < 14 * 1024, "grew {growth} KiB");
}

/// Opens `/ws/chat` on a room of its own (an 8 KiB name) for each `i` in
/// `range`, leaves it and closes: every other one reads "left" before
/// closing, the others send `/leave` and the close frame in one write (so
/// the server reads them together and handles `/leave` on a closing
/// connection).
fn join_leave_close(addr: SocketAddr, range: std::ops::Range<usize>) {
    for i in range {
        let room = format!("{i:08}{}", "r".repeat(8 * 1024 - 8));
        let (mut ws, _) = chat_join(addr, &room);
        if i % 2 == 0 {
            ws.send(Message::Text("/leave".into())).unwrap();
            assert_eq!(next_text(&mut ws), "left");
            ws.close(None).unwrap();
        } else {
            ws.write(Message::Text("/leave".into())).unwrap();
            ws.write(Message::Close(None)).unwrap();
            ws.flush().unwrap();
        }
        // Until the server's close (or EOF).
        while ws.read().is_ok() {}
    }
}

/// Issue: an unsubscribe left an empty entry per topic name in the
/// worker's topic index (about 8 MB per 1,000 rooms of 8 KiB names), and a
/// `/leave` read together with the close frame was skipped, leaving a
/// stale subscriber. The index must hold only topics with subscribers.
#[test]
fn rooms_left_and_closed_leave_nothing_in_the_topic_index() {
    let server = ServerProcess::start(HELLO, &["--bind", "127.0.0.1:0", "--workers", "1"]);
    let addr = server.addr;
    let stats = || counters(addr, "/pubsub/stats");
    let empty = || {
        let s = stats();
        s["topics"] == 0 && s["subscriptions"] == 0
    };
    // Warm up the allocator and buffers before the baseline.
    join_leave_close(addr, 0..200);
    assert!(
        wait_until(Duration::from_secs(10), empty),
        "after 200 rooms: {:?}",
        stats()
    );
    let rss_before = rss_kib(server.pid());
    join_leave_close(addr, 200..2200);
    // Subscriptions are applied as the server reads the frames, before it
    // answers them; a closing connection is removed as it closes.
    assert!(
        wait_until(Duration::from_secs(10), empty),
        "after 2,200 rooms: {:?}",
        stats()
    );
    // A second, coarser check: 2,000 leaked 8 KiB names would be 16 MiB.
    let growth = rss_kib(server.pid()).saturating_sub(rss_before);
    eprintln!("RSS growth over 2,000 rooms: {growth} KiB");
    assert!(growth < 6 * 1024, "grew {growth} KiB");
    // The index still works: a new subscriber gets messages.
    let (mut ws, _) = chat_join(addr, "after");
    assert_eq!(stats()["topics"], 1);
    let mut c = Client::connect(addr);
    c.send(b"POST /publish/after HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(c.read_response().status, 202);
    assert_eq!(next_text(&mut ws), "hi");
}

/// Size of each flooding message: the issue's 60 KB.
const FLOOD_MSG: usize = 60 * 1024;
/// Messages per flood: 90 MiB in all.
const FLOOD_N: usize = 1500;
/// A worker's peak RSS (VmHWM) must stay under this while it carries a
/// flood. What it may hold by design: the outbox (1 MiB, plus what one
/// read's worth of requests published), the control channel to the master
/// (4 MiB), a subscriber's outbound buffer (8 MiB before a slow reader is
/// closed), one connection's read buffers, and the binary itself (a debug
/// build). Before the bound, the outbox held a whole loop turn of messages
/// (gigabytes, in the issue's run).
const WORKER_PEAK_KIB: u64 = 32 * 1024;

/// A flood message: its sequence number, then filler.
fn flood_message(i: usize) -> String {
    let mut m = format!("{i:08} ");
    m.push_str(&"x".repeat(FLOOD_MSG - m.len()));
    m
}

/// Raw WebSocket subscribers to `/ws/chat?room=ROOM`, opened until every
/// one of `workers` worker pids holds one (bounded tries).
fn raw_subscribers(addr: SocketAddr, room: &str, workers: usize) -> Vec<std::net::TcpStream> {
    let mut subs = Vec::new();
    let mut pids = BTreeSet::new();
    for _ in 0..200 {
        let mut s = raw::connect(addr, &format!("/ws/chat?room={room}"));
        let (_, _, first) = raw::read_frame(&mut s).unwrap();
        let pid = String::from_utf8(first).unwrap();
        if pids.insert(pid) {
            subs.push(s);
        }
        if pids.len() == workers {
            return subs;
        }
    }
    panic!("connections reached only workers {pids:?}");
}

/// How many flood messages the publishing client may send beyond what its
/// slowest subscriber has read: 128 of 60 KB is 7.5 MiB, under the 8 MiB
/// a subscriber may have queued before its worker closes it as too slow
/// (`WsConfig::max_outbuf`), so no subscriber is closed however the
/// machine schedules the test's reading threads; and still 7 times the
/// outbox's 1 MiB and more than the 4 MiB control channel, so the flood
/// fills both.
const FLOOD_WINDOW: usize = 128;

/// A thread reading a flood from one subscriber.
struct Reader {
    handle: std::thread::JoinHandle<Vec<usize>>,
    progress: Progress,
}

/// How far a [`Reader`] is, shared with the thread that floods.
#[derive(Clone, Default)]
struct Progress {
    /// Flood messages read so far.
    read: Arc<AtomicUsize>,
    /// The reader has stopped (done, or failed: its panic says why).
    stopped: Arc<AtomicBool>,
}

/// Sets [`Progress::stopped`] when the reading thread ends, panicking
/// or not.
struct Stopped(Arc<AtomicBool>);

impl Drop for Stopped {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Reader {
    fn join(self) -> std::thread::Result<Vec<usize>> {
        self.handle.join()
    }
}

/// Waits until every reader has read enough that flood message `i` may be
/// sent ([`FLOOD_WINDOW`]); false if one stopped short (the flood should
/// stop: the reader's panic says why).
fn wait_for_readers(readers: &[Progress], i: usize) -> bool {
    let need = (i + 1).saturating_sub(FLOOD_WINDOW);
    loop {
        if readers
            .iter()
            .all(|r| r.read.load(Ordering::Acquire) >= need)
        {
            return true;
        }
        if readers.iter().any(|r| r.stopped.load(Ordering::Acquire)) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The writing half of a raw WebSocket client, shared by the thread that
/// sends messages and the one that answers pings, so that their frames do
/// not interleave.
type Writer = Arc<std::sync::Mutex<std::net::TcpStream>>;

/// A [`Writer`] for `s`.
fn writer(s: &std::net::TcpStream) -> Writer {
    Arc::new(std::sync::Mutex::new(s.try_clone().unwrap()))
}

/// Sends one frame through `w`.
fn send_frame(w: &Writer, frame: &[u8]) {
    raw::send(&mut w.lock().unwrap(), frame);
}

/// Reads `n` text messages from a raw WebSocket stream and returns their
/// sequence numbers, in arrival order. Pings are answered through `pong`,
/// as any client must: the server closes a connection whose ping goes
/// unanswered for `pong_timeout`, and it pings one that had no traffic for
/// `ping_interval` (30 s: the time a loaded machine may take to get from
/// subscribing to the flood).
fn read_sequence(mut s: std::net::TcpStream, n: usize, pong: Writer) -> Reader {
    let progress = Progress::default();
    let shared = progress.clone();
    let handle = std::thread::spawn(move || {
        let _stopped = Stopped(shared.stopped);
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut seen = Vec::with_capacity(n);
        while seen.len() < n {
            match raw::read_frame(&mut s) {
                Ok((_, raw::op::TEXT, payload)) => {
                    assert_eq!(payload.len(), FLOOD_MSG);
                    seen.push(std::str::from_utf8(&payload[..8]).unwrap().parse().unwrap());
                    shared.read.store(seen.len(), Ordering::Release);
                }
                Ok((_, raw::op::CLOSE, payload)) => {
                    panic!("closed after {} messages: {payload:?}", seen.len())
                }
                Ok((_, raw::op::PING, payload)) => {
                    send_frame(&pong, &raw::client_frame(raw::op::PONG, &payload));
                }
                Ok(_) => {}
                Err(e) => panic!("after {} messages: {e}", seen.len()),
            }
        }
        seen
    });
    Reader { handle, progress }
}

/// Sends `FLOOD_N` messages as pipelined `POST /publish/TOPIC` requests
/// on one connection, from a second thread, and checks each response.
/// With `readers`, the flood keeps within [`FLOOD_WINDOW`] of the slowest
/// of them; without, it runs as fast as the client can write.
fn flood_http(addr: SocketAddr, topic: &str, readers: &[Progress]) {
    let mut c = Client::connect(addr);
    let mut w = c.stream.try_clone().unwrap();
    let readers = readers.to_vec();
    let topic = topic.to_owned();
    let writer = std::thread::spawn(move || {
        for i in 0..FLOOD_N {
            if !wait_for_readers(&readers, i) {
                return;
            }
            let body = flood_message(i);
            let request = format!(
                "POST /publish/{topic} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            std::io::Write::write_all(&mut w, request.as_bytes()).unwrap();
        }
    });
    for i in 0..FLOOD_N {
        assert_eq!(c.read_response().status, 202, "response {i}");
    }
    writer.join().unwrap();
}

/// The worker processes of a server started with `workers` workers.
fn worker_pids(server: &procs::ServerTree, workers: usize) -> Vec<i32> {
    if workers <= 1 {
        return vec![server.pid()];
    }
    let pids: Vec<i32> = server.children().into_iter().collect();
    assert_eq!(pids.len(), workers);
    pids
}

/// Checks what a flood left behind: every subscriber got every message
/// once, in order; no worker's peak memory passed the bound; nothing was
/// dropped anywhere (the workers' counters, and the master's log).
fn check_flood(server: &procs::ServerTree, workers: usize, readers: Vec<Reader>) {
    for (i, r) in readers.into_iter().enumerate() {
        let Ok(seen) = r.join() else {
            panic!(
                "subscriber {i} failed (its panic is above); server log:\n{}",
                server.stderr()
            );
        };
        assert!(
            seen.iter().copied().eq(0..FLOOD_N),
            "subscriber {i}: messages missing or out of order"
        );
    }
    for pid in worker_pids(server, workers) {
        let peak = procs::status_kib(pid, "VmHWM");
        eprintln!("worker {pid}: peak RSS {peak} KiB");
        assert!(
            peak > 0 && peak < WORKER_PEAK_KIB,
            "worker {pid}: {peak} KiB"
        );
    }
    let mut c = Client::connect(server.addr());
    for _ in 0..20 {
        let stats = c.get("/pubsub/stats").text();
        assert!(stats.contains("\ndropped 0\n"), "{stats}");
    }
    let log = server.stderr();
    assert!(
        !log.contains("dropping") && !log.contains("not relayed"),
        "{log}"
    );
}

/// Issue: one keep-alive client pipelining `POST /publish/T` with 60 KB
/// bodies grew the worker to gigabytes (the outbox was drained once per
/// loop turn), and with 2 workers the relay dropped nearly every message.
/// Now the publishing connection is slowed down instead: a bounded outbox,
/// drained after each connection, and no reading while it is full.
///
/// First a flood nobody subscribed to, as fast as the client writes: the
/// worker's memory and the relay (no drops) are checked for it. Then one
/// that subscribers read, kept within [`FLOOD_WINDOW`] of the slowest so
/// that none is closed as too slow on a loaded machine (that is
/// `max_outbuf` doing its job, not what this test is about): each gets
/// every message once, in order.
#[test]
fn a_publishing_http_client_is_slowed_down_not_buffered() {
    let _heavy = procs::heavy();
    for workers in [1, 2] {
        let server = procs::ServerTree::start_workers(HELLO, workers, &[]);
        let addr = server.addr();
        flood_http(addr, "nobody", &[]);
        let readers: Vec<_> = raw_subscribers(addr, "T", workers)
            .into_iter()
            .map(|s| {
                let pong = writer(&s);
                read_sequence(s, FLOOD_N, pong)
            })
            .collect();
        let progress: Vec<_> = readers.iter().map(|r| r.progress.clone()).collect();
        flood_http(addr, "T", &progress);
        check_flood(&server, workers, readers);
    }
}

/// The same flood through `/ws/chat`: one client sends 60 KB messages to
/// its room (and reads them back, being subscribed too). The sender is a
/// subscriber, so this flood is always kept within [`FLOOD_WINDOW`]; the
/// unpaced one is the HTTP test's.
#[test]
fn a_publishing_websocket_client_is_slowed_down_not_buffered() {
    let _heavy = procs::heavy();
    // Framed (and masked) beforehand, so the client outruns the server.
    // Before anyone subscribes: in a debug build this takes a while.
    let frames: Vec<Vec<u8>> = (0..FLOOD_N)
        .map(|i| raw::client_frame(raw::op::TEXT, flood_message(i).as_bytes()))
        .collect();
    for workers in [1, 2] {
        let server = procs::ServerTree::start_workers(HELLO, workers, &[]);
        let addr = server.addr();
        let mut readers: Vec<_> = raw_subscribers(addr, "W", workers)
            .into_iter()
            .map(|s| {
                let pong = writer(&s);
                read_sequence(s, FLOOD_N, pong)
            })
            .collect();
        let sender = raw::connect(addr, "/ws/chat?room=W");
        let mut first = sender.try_clone().unwrap();
        raw::read_frame(&mut first).unwrap(); // the pid line
        let send = writer(&sender);
        readers.push(read_sequence(sender, FLOOD_N, send.clone()));
        // Within [`FLOOD_WINDOW`] of the slowest reader (the sender's own
        // included): none is closed as too slow however the machine
        // schedules them.
        let progress: Vec<_> = readers.iter().map(|r| r.progress.clone()).collect();
        for (i, frame) in frames.iter().enumerate() {
            if !wait_for_readers(&progress, i) {
                break;
            }
            send_frame(&send, frame);
        }
        check_flood(&server, workers, readers);
    }
}

/// POSTs `body` to `/publish/<topic>` on `c`; the status.
fn post_publish(c: &mut Client, topic: &str, body: &str) -> u16 {
    c.send(
        format!(
            "POST /publish/{topic} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    c.read_response().status
}

/// The next text of each client, checked against `want` by length and
/// content (a mismatch does not print a MiB).
fn all_get(clients: &mut [(Ws, u32)], want: &str) {
    for (ws, pid) in clients.iter_mut() {
        let got = next_text(ws);
        assert!(
            got == want,
            "the subscriber on worker {pid} got {} bytes, not the {}-byte message",
            got.len(),
            want.len()
        );
    }
}

/// `hello` with two workers and `--max-body` set to `max_body`.
fn two_workers_with_max_body(max_body: &str) -> ServerProcess {
    ServerProcess::start(
        HELLO,
        &[
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--max-body",
            max_body,
        ],
    )
}

/// Chat clients in `room` until both of 2 workers hold some; with pids.
fn chat_on_two_workers(addr: SocketAddr, room: &str) -> Vec<(Ws, u32)> {
    let mut clients = Vec::new();
    let mut pids = BTreeSet::new();
    for _ in 0..200 {
        let (ws, pid) = chat_join(addr, room);
        clients.push((ws, pid));
        pids.insert(pid);
        if pids.len() == 2 {
            return clients;
        }
    }
    panic!("all connections landed on one worker: {pids:?}");
}

/// A message of exactly the default body and WebSocket message limit
/// (1 MiB) reaches the other worker's subscribers too: the relay once
/// capped its frames at that same 1 MiB, so with the topic added such a
/// message was delivered in the publishing worker only (a warning in the
/// log, 202 for the publisher).
#[test]
fn a_message_of_exactly_the_default_limit_reaches_every_worker() {
    let server = ServerProcess::start(HELLO, &["--bind", "127.0.0.1:0", "--workers", "2"]);
    let mut clients = chat_on_two_workers(server.addr, "full");
    // From a WebSocket client on one worker ...
    let text = "w".repeat(1 << 20);
    clients[0]
        .0
        .send(Message::Text(text.clone().into()))
        .unwrap();
    all_get(&mut clients, &text);
    // ... and from an HTTP handler on either.
    let body = "h".repeat(1 << 20);
    let mut c = Client::connect(server.addr);
    assert_eq!(post_publish(&mut c, "full", &body), 202);
    all_get(&mut clients, &body);
}

/// A raised body limit raises the relay's with it: a message of exactly
/// `--max-body` (3 MB, past the old 1 MiB cap) published on one worker
/// reaches a subscriber on the other.
#[test]
fn a_raised_limit_raises_the_relay_limit() {
    let limit = 3_000_000;
    let server = two_workers_with_max_body(&limit.to_string());
    let mut clients = chat_on_two_workers(server.addr, "large");
    let body = "b".repeat(limit);
    let mut c = Client::connect(server.addr);
    let publisher: u32 = c.get("/pid").text().parse().unwrap();
    assert_eq!(post_publish(&mut c, "large", &body), 202);
    assert!(clients.iter().any(|(_, pid)| *pid != publisher));
    all_get(&mut clients, &body);
}

/// A message past the relay's hard bound (4 MiB), though within the
/// app's body limit, is refused by `publish` at once: 413 for the HTTP
/// publisher, "not sent" for the WebSocket one, counted as dropped in the
/// publishing worker, and delivered to nobody, its own worker's
/// subscribers included (it once went to those alone).
#[test]
fn a_message_over_the_hard_bound_is_refused_not_delivered_in_part() {
    let server = two_workers_with_max_body("6000000");
    let mut clients = chat_on_two_workers(server.addr, "huge");
    let body = "y".repeat(5 << 20);
    let mut c = Client::connect(server.addr);
    assert_eq!(post_publish(&mut c, "huge", &body), 413);
    // The same connection, so the same worker.
    let stats = c.get("/pubsub/stats").text();
    assert!(stats.contains("\ndropped 1\n"), "{stats}");
    clients[0]
        .0
        .send(Message::Text(body.clone().into()))
        .unwrap();
    let answer = next_text(&mut clients[0].0);
    assert!(answer.starts_with("not sent: "), "{answer}");
    // Nobody got either; what comes next is the next message.
    assert_eq!(post_publish(&mut c, "huge", "after"), 202);
    for (ws, pid) in clients.iter_mut() {
        assert_eq!(next_text(ws), "after", "worker {pid}");
    }
}

/// Keep-alive connections until one reaches each of `workers` worker
/// pids; returned in pid order.
fn one_client_per_worker(addr: SocketAddr, workers: usize) -> Vec<(u32, Client)> {
    let mut by_pid = std::collections::BTreeMap::new();
    for _ in 0..200 {
        let mut c = Client::connect(addr);
        let pid: u32 = c.get("/pid").text().parse().unwrap();
        by_pid.entry(pid).or_insert(c);
        if by_pid.len() == workers {
            return by_pid.into_iter().collect();
        }
    }
    panic!("connections reached only workers {:?}", by_pid.keys());
}

/// A worker that stops reading (stuck in a 4-second handler) holds the
/// relay back for at most `relay::STALL` (2 s): then the master relays on
/// and drops what the stuck worker cannot queue, logging exactly how many
/// once it reads again. The publishing worker's own subscriber gets every
/// message, the stuck worker's gets the rest and everything after.
#[test]
fn a_stuck_worker_holds_the_relay_back_only_for_a_while() {
    let _heavy = procs::heavy();
    let server = procs::ServerTree::start_workers(HELLO, 2, &[]);
    let addr = server.addr();
    let mut clients = one_client_per_worker(addr, 2);
    let mut subs: Vec<(u32, std::net::TcpStream)> = Vec::new();
    for _ in 0..200 {
        let mut s = raw::connect(addr, "/ws/chat?room=S");
        let (_, _, first) = raw::read_frame(&mut s).unwrap();
        let pid: u32 = String::from_utf8(first).unwrap()[4..].parse().unwrap();
        if !subs.iter().any(|(p, _)| *p == pid) {
            subs.push((pid, s));
        }
        if subs.len() == 2 {
            break;
        }
    }
    subs.sort_by_key(|(pid, _)| *pid);
    let (stuck_pid, mut stuck_client) = clients.pop().unwrap();
    let (_, mut publisher) = clients.pop().unwrap();
    let stuck_sub = subs.pop().unwrap().1;
    let own_sub = subs.pop().unwrap().1;
    stuck_client.send(b"GET /sleep?ms=4000 HTTP/1.1\r\nHost: t\r\n\r\n");
    // 400 messages of 60 KB: far more than the 4 MiB the master may queue
    // for the stuck worker.
    let n = 400;
    let pong = writer(&own_sub);
    let own = read_sequence(own_sub, n, pong);
    for i in 0..n {
        let body = flood_message(i);
        publisher.send(
            format!(
                "POST /publish/S HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        assert_eq!(publisher.read_response().status, 202);
    }
    assert!(own.join().unwrap().iter().copied().eq(0..n));
    assert_eq!(stuck_client.read_response().text(), "slept");
    // The stuck worker's subscriber: what was queued before the queue
    // filled, then nothing of the dropped ones, then a marker.
    publisher.send(b"POST /publish/S HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nmarker");
    assert_eq!(publisher.read_response().status, 202);
    let mut s = stuck_sub;
    let mut got = Vec::new();
    loop {
        let (_, _, payload) = raw::read_frame(&mut s).unwrap();
        if payload == b"marker" {
            break;
        }
        got.push(
            std::str::from_utf8(&payload[..8])
                .unwrap()
                .parse::<usize>()
                .unwrap(),
        );
    }
    assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order");
    assert!(
        got.len() < n,
        "nothing was dropped: the worker was not stuck"
    );
    let line = server.wait_log(
        "published message(s) dropped for it",
        Duration::from_secs(10),
    );
    let dropped: usize = line
        .lines()
        .find(|l| l.contains("dropped for it") && l.contains(&format!("pid {stuck_pid}")))
        .and_then(|l| l.split("resumed; ").nth(1)?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no drop count for pid {stuck_pid}:\n{line}"));
    assert_eq!(
        got.len() + dropped,
        n,
        "received {} + dropped {dropped}",
        got.len()
    );
}
