//! Fan-out load client: S WebSocket subscribers join tine's chat room
//! (`/ws/chat?room=R`, which reports the serving worker's pid first), one
//! more client publishes M messages of B bytes into the room, and every
//! subscriber counts what it receives.
//!
//! `fanout --addr 127.0.0.1:P --subs 100 --messages 2000 --size 32`
//!
//! Prints one line:
//! `subscribers=.. workers=.. messages=.. delivered=.. expected=.. seconds=.. deliveries_per_sec=..`
//! (seconds: from the first publish to the last delivery; a subscriber
//! stops waiting 5 s after its last message, so drops show as
//! delivered < expected instead of a hang).

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tungstenite::{Message, WebSocket};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn join(addr: &str, room: &str) -> (WebSocket<TcpStream>, u32) {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).unwrap();
    let (mut ws, _) =
        tungstenite::client(format!("ws://{addr}/ws/chat?room={room}"), stream).expect("handshake");
    let pid = match ws.read().expect("pid line") {
        Message::Text(t) => t.as_str().trim_start_matches("pid ").parse().unwrap_or(0),
        _ => 0,
    };
    (ws, pid)
}

fn main() {
    let addr = arg("--addr", "127.0.0.1:8080");
    let subs: usize = arg("--subs", "100").parse().unwrap();
    let messages: usize = arg("--messages", "2000").parse().unwrap();
    let size: usize = arg("--size", "32").parse().unwrap();
    let room = format!("fan{}", std::process::id());

    let mut pids = BTreeSet::new();
    let mut sockets = Vec::new();
    for _ in 0..subs {
        let (ws, pid) = join(&addr, &room);
        pids.insert(pid);
        sockets.push(ws);
    }
    let (mut publisher, _) = join(&addr, &room);
    // Let every subscription reach its worker before publishing.
    std::thread::sleep(Duration::from_millis(300));

    let start = Arc::new(Barrier::new(subs + 1));
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            let start = start.clone();
            std::thread::spawn(move || {
                ws.get_mut()
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                start.wait();
                let mut got = 0usize;
                let mut last = Instant::now();
                while got < messages {
                    match ws.read() {
                        Ok(Message::Text(_)) => {
                            got += 1;
                            last = Instant::now();
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                (got, last)
            })
        })
        .collect();
    start.wait();
    let body = "x".repeat(size);
    let t0 = Instant::now();
    for _ in 0..messages {
        publisher
            .send(Message::Text(body.as_str().into()))
            .expect("publish");
    }
    let mut delivered = 0usize;
    let mut end = t0;
    for r in readers {
        let (got, last) = r.join().unwrap();
        delivered += got;
        end = end.max(last);
    }
    // The publisher is subscribed too; it is not counted.
    let seconds = (end - t0).as_secs_f64();
    println!(
        "subscribers={subs} workers={} messages={messages} delivered={delivered} expected={} seconds={seconds:.3} deliveries_per_sec={:.0}",
        pids.len(),
        subs * messages,
        delivered as f64 / seconds
    );
}
