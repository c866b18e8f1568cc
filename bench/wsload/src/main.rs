//! WebSocket echo load client.
//!
//! `wsload --url ws://127.0.0.1:P/ws/echo --conns C --threads T --duration SECS --size BYTES`
//!
//! T threads share C connections. Each thread, in rounds until SECS have
//! passed, sends one binary message of BYTES bytes on each of its connections,
//! then reads every echo back: one message in flight per connection, few
//! context switches, so the client stays cheap. Prints one line:
//! `messages=.. seconds=.. msgs_per_sec=.. p50_us=.. p99_us=.. errors=..`
//! (latency: send to echo received; errors: connections that failed).
//! Exits 1 when no connection could be opened (the server has no WebSocket).

use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tungstenite::{Bytes, Message, WebSocket};

struct Opts {
    url: String,
    conns: usize,
    threads: usize,
    duration: Duration,
    size: usize,
}

fn parse_opts() -> Opts {
    let mut opts = Opts {
        url: String::new(),
        conns: 64,
        threads: 1,
        duration: Duration::from_secs(10),
        size: 64,
    };
    let mut it = std::env::args().skip(1);
    while let (Some(flag), Some(value)) = (it.next(), it.next()) {
        let bad = || -> ! { fail(&format!("bad value for {flag}: {value}")) };
        match flag.as_str() {
            "--url" => opts.url = value.clone(),
            "--conns" => opts.conns = value.parse().unwrap_or_else(|_| bad()),
            "--threads" => opts.threads = value.parse().unwrap_or_else(|_| bad()),
            "--size" => opts.size = value.parse().unwrap_or_else(|_| bad()),
            "--duration" => {
                let secs: f64 = value
                    .trim_end_matches('s')
                    .parse()
                    .unwrap_or_else(|_| bad());
                opts.duration = Duration::from_secs_f64(secs);
            }
            _ => fail(&format!("unknown flag {flag}")),
        }
    }
    if !opts.url.starts_with("ws://") || opts.conns == 0 || opts.threads == 0 {
        fail("usage: wsload --url ws://HOST:PORT/PATH [--conns C] [--threads T] [--duration SECS] [--size BYTES]");
    }
    opts.threads = opts.threads.min(opts.conns);
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
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let (ws, _response) = tungstenite::client(url, stream).map_err(|e| e.to_string())?;
    Ok(ws)
}

/// One thread's echo rounds over its connections; returns latencies in microseconds.
fn echo_rounds(
    conns: &mut [WebSocket<TcpStream>],
    size: usize,
    end: Instant,
) -> Result<Vec<u32>, String> {
    let payload = Bytes::from(vec![b'x'; size]);
    let mut sent_at = vec![Instant::now(); conns.len()];
    let mut latencies = Vec::with_capacity(1 << 16);
    while Instant::now() < end {
        for (ws, at) in conns.iter_mut().zip(&mut sent_at) {
            *at = Instant::now();
            ws.send(Message::Binary(payload.clone()))
                .map_err(|e| e.to_string())?;
        }
        for (ws, at) in conns.iter_mut().zip(&sent_at) {
            loop {
                match ws.read().map_err(|e| e.to_string())? {
                    Message::Binary(echo) if echo == payload => break,
                    Message::Ping(_) | Message::Pong(_) => continue,
                    other => return Err(format!("unexpected reply: {other:?}")),
                }
            }
            latencies.push(at.elapsed().as_micros() as u32);
        }
    }
    for ws in conns {
        let _ = ws.close(None);
        let _ = ws.flush();
    }
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
    let ready = Arc::new(Barrier::new(opts.threads + 1));
    let threads: Vec<_> = (0..opts.threads)
        .map(|t| {
            // Split the connections as evenly as possible over the threads.
            let n = (opts.conns + opts.threads - 1 - t) / opts.threads;
            let (url, ready, size, duration) =
                (opts.url.clone(), ready.clone(), opts.size, opts.duration);
            std::thread::spawn(move || {
                let conns: Result<Vec<_>, _> = (0..n).map(|_| connect(&url)).collect();
                ready.wait();
                let end = Instant::now() + duration;
                (
                    n,
                    conns.and_then(|mut conns| echo_rounds(&mut conns, size, end)),
                )
            })
        })
        .collect();
    ready.wait();
    let start = Instant::now();

    let (mut all, mut errors, mut connected) = (Vec::new(), 0usize, 0usize);
    let mut first_error = None;
    for thread in threads {
        match thread.join().expect("load thread panicked") {
            (n, Ok(latencies)) => {
                connected += n;
                all.extend(latencies);
            }
            (n, Err(e)) => {
                errors += n;
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
