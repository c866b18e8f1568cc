//! Cross-worker publish/subscribe through the real `hello` binary with 4
//! workers: every subscriber in every worker gets each message once, in
//! order; unsubscribing works; a killed worker does not break the bus; a
//! subscriber that stops reading does not grow anyone's memory without
//! bound.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use testkit::procs;
use testkit::ws::{chat_join, next_text, Ws};
use testkit::{Client, ServerProcess};
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
    // outbound limit), paced so the relay is not overloaded: under overload
    // the relay drops messages by design, which is not what this test is
    // about.
    let body = "x".repeat(16 * 1024);
    let mut c = Client::connect(addr);
    let reader_thread = std::thread::spawn(move || {
        let mut got = 0usize;
        while got < 1000 {
            let _ = next_text(&mut reader);
            got += 1;
        }
        got
    });
    for _ in 0..1000 {
        c.send(
            format!(
                "POST /publish/flood HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        assert_eq!(c.read_response().status, 202);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(reader_thread.join().unwrap(), 1000);
    let rss_after: u64 = tree().iter().map(|&p| rss_kib(p)).sum();
    // 16 MiB were published; the stuck subscriber may hold at most its
    // outbound limit (8 MiB) plus socket buffers before being closed.
    let growth = rss_after.saturating_sub(rss_before);
    eprintln!("RSS growth of the server tree: {growth} KiB");
    assert!(growth < 14 * 1024, "grew {growth} KiB");
}
