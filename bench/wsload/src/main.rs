//! WebSocket echo load client.
//!
//! `wsload --url ws://127.0.0.1:P/ws/echo --conns C --duration SECS --size BYTES`
//!
//! Opens C connections (one thread each), then each sends a binary message of
//! BYTES bytes, waits for its echo, and repeats until SECS have passed. Prints one
//! line: `messages=.. seconds=.. msgs_per_sec=.. p50_us=.. p99_us=.. errors=..`.
//! Exits 1 when no connection could be opened (the server has no WebSocket).

use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tungstenite::{Bytes, Message, WebSocket};

struct Opts {
    url: String,
    conns: usize,
    duration: Duration,
    size: usize,
}

fn parse_opts() -> Opts {
    let mut opts = Opts { url: String::new(), conns: 64, duration: Duration::from_secs(10), size: 64 };
    let mut it = std::env::args().skip(1);
    while let (Some(flag), Some(value)) = (it.next(), it.next()) {
        let bad = || -> ! { fail(&format!("bad value for {flag}: {value}")) };
        match flag.as_str() {
            "--url" => opts.url = value.clone(),
            "--conns" => opts.conns = value.parse().unwrap_or_else(|_| bad()),
            "--size" => opts.size = value.parse().unwrap_or_else(|_| bad()),
            "--duration" => {
                let secs: f64 = value.trim_end_matches('s').parse().unwrap_or_else(|_| bad());
                opts.duration = Duration::from_secs_f64(secs);
            }
            _ => fail(&format!("unknown flag {flag}")),
        }
    }
    if !opts.url.starts_with("ws://") || opts.conns == 0 {
        fail("usage: wsload --url ws://HOST:PORT/PATH [--conns C] [--duration SECS] [--size BYTES]");
    }
    opts
}

fn fail(msg: &str) -> ! {
    eprintln!("wsload: {msg}");
    std::process::exit(2)
}

fn connect(url: &str) -> Result<WebSocket<TcpStream>, String> {
    let host = url["ws://".len()..].split('/').next().unwrap_or_default();
    let stream = TcpStream::connect(host).map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let (ws, _response) = tungstenite::client(url, stream).map_err(|e| e.to_string())?;
    Ok(ws)
}

/// One connection's echo loop; returns the round-trip latencies in microseconds.
fn echo_loop(ws: &mut WebSocket<TcpStream>, size: usize, end: Instant) -> Result<Vec<u32>, String> {
    let payload = Bytes::from(vec![b'x'; size]);
    let mut latencies = Vec::with_capacity(1 << 16);
    while Instant::now() < end {
        let start = Instant::now();
        ws.send(Message::Binary(payload.clone())).map_err(|e| e.to_string())?;
        loop {
            match ws.read().map_err(|e| e.to_string())? {
                Message::Binary(echo) if echo == payload => break,
                Message::Ping(_) | Message::Pong(_) => continue,
                other => return Err(format!("unexpected reply: {other:?}")),
            }
        }
        latencies.push(start.elapsed().as_micros() as u32);
    }
    let _ = ws.close(None);
    let _ = ws.flush();
    Ok(latencies)
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let opts = parse_opts();
    // Every thread connects first; the clock starts once all are ready.
    let ready = Arc::new(Barrier::new(opts.conns + 1));
    let threads: Vec<_> = (0..opts.conns)
        .map(|_| {
            let (url, ready, size, duration) = (opts.url.clone(), ready.clone(), opts.size, opts.duration);
            std::thread::spawn(move || {
                let ws = connect(&url);
                ready.wait();
                let end = Instant::now() + duration;
                ws.and_then(|mut ws| echo_loop(&mut ws, size, end))
            })
        })
        .collect();
    ready.wait();
    let start = Instant::now();

    let (mut all, mut errors, mut connected) = (Vec::new(), 0usize, 0usize);
    let mut first_error = None;
    for thread in threads {
        match thread.join().expect("load thread panicked") {
            Ok(latencies) => {
                connected += 1;
                all.extend(latencies);
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    if let Some(e) = &first_error {
        eprintln!("wsload: {errors} connection(s) failed, first: {e}");
    }
    if connected == 0 {
        std::process::exit(1);
    }
    all.sort_unstable();
    println!(
        "messages={} seconds={:.3} msgs_per_sec={:.0} p50_us={} p99_us={} errors={}",
        all.len(),
        seconds,
        all.len() as f64 / seconds,
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        errors
    );
}
