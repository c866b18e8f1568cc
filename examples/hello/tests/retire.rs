//! A worker that stops (here: replaced by a rolling restart) ends its
//! WebSockets one after another over the first half of the drain timeout,
//! not all at once, so its clients do not all reconnect at the same
//! moment.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use testkit::procs::{heavy, ServerTree, Signal};
use testkit::ws::{chat_join, Ws};

const HELLO: &str = env!("CARGO_BIN_EXE_hello");
const T: Duration = Duration::from_secs(30);

/// Reads until the close frame; its code and when it arrived.
fn wait_close(mut ws: Ws) -> (u16, Instant) {
    ws.get_mut()
        .set_read_timeout(Some(T))
        .expect("set_read_timeout");
    loop {
        match ws.read().expect("a close frame before the socket ends") {
            tungstenite::Message::Close(frame) => {
                let code = frame.map_or(1005, |f| u16::from(f.code));
                return (code, Instant::now());
            }
            _ => continue,
        }
    }
}

#[test]
fn a_retired_worker_closes_its_websockets_spread_over_half_the_drain_timeout() {
    let _g = heavy();
    // Drain timeout 8 s: the closes of each worker spread over 4 s.
    let s = ServerTree::start_workers(HELLO, 2, &["--drain-timeout-ms", "8000"]);
    let first = s.wait_ready(2, T);
    let (tx, rx) = mpsc::channel();
    let mut per_worker: BTreeMap<u32, usize> = BTreeMap::new();
    for i in 0..24 {
        let (ws, pid) = chat_join(s.addr(), &format!("room{i}"));
        *per_worker.entry(pid).or_default() += 1;
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send((pid, wait_close(ws)));
        });
    }
    drop(tx);
    s.signal(Signal::SIGHUP);
    let mut closes: BTreeMap<u32, Vec<Instant>> = BTreeMap::new();
    for (pid, (code, at)) in rx.iter().take(24) {
        assert_eq!(code, 1001, "going away");
        closes.entry(pid).or_default().push(at);
    }
    assert_eq!(closes.values().map(Vec::len).sum::<usize>(), 24);
    for (pid, times) in &closes {
        assert!(first.contains(&(*pid as i32)), "an old worker: {pid}");
        let n = times.len();
        if n < 4 {
            continue; // too few to measure a spread
        }
        let span = *times.iter().max().unwrap() - *times.iter().min().unwrap();
        // Spread evenly over 4 s: the last one (n - 1) / n * 4 s after the
        // first, at least 3 s for n >= 4. All at once would be a few ms;
        // the bound leaves room for a slow machine (a late close only
        // widens the span).
        assert!(
            span >= Duration::from_secs(2),
            "worker {pid}: {n} closes within {span:?}\n{}",
            s.stderr()
        );
    }
    assert!(
        closes.values().any(|t| t.len() >= 4),
        "no worker held 4 sockets: {per_worker:?}"
    );
    s.wait_ready(2, T);
    s.stop(T);
}
