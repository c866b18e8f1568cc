//! One connection driven by arbitrary client bytes, for the `connection`
//! fuzz target in `tine/fuzz`: the whole request-to-answer path (decoder,
//! routing, hooks, group limits, forms, multipart, cookies, compression,
//! static files, streams, SSE and the WebSocket upgrade and session, the
//! trusted-proxy headers, and on request the PROXY protocol header) with
//! no event loop, as `conn/tests.rs` drives it. Any panic, caught by the
//! service's boundary or not, is a finding: tine's own code must not
//! panic on input, and the app below does not panic on purpose.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{Conn, Expired, Next, Shared};
use crate::http::{Request, Response};
use crate::{App, Compression, Group, Limits, StaticConfig, StatusCode, WsEvent};

/// A directory with a few files for the static mount, written once per
/// fuzzing process (the same files each time; it stays in the temporary
/// directory).
fn static_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join("tine-fuzz-static");
        let _ = std::fs::create_dir_all(dir.join("sub"));
        let _ = std::fs::write(dir.join("a.txt"), "hello static\n".repeat(40));
        let _ = std::fs::write(dir.join("sub/b.json"), "{\"k\": 1}");
        let _ = std::fs::write(dir.join("index.html"), "<p>index</p>");
        dir
    })
    .clone()
}

fn app() -> App {
    let guarded = Group::new()
        .max_body(64)
        .before(|req: &mut Request| {
            req.header("x-deny")
                .map(|_| Response::error(StatusCode::FORBIDDEN))
        })
        .post("/p", |req: &Request| Response::bytes(req.body_bytes()))
        .fallback(|_: &Request| Response::text("group fallback"));
    App::new()
        .get("/", |_: &Request| "ok")
        .post("/echo", |req: &Request| Response::bytes(req.body_bytes()))
        .get("/hello/:name", |req: &Request| {
            format!("Hello, {}!", req.param("name").unwrap_or(""))
        })
        .get("/q", |req: &Request| format!("{:?}", req.query_pairs()))
        .post("/form", |req: &Request| format!("{:?}", req.form_map()))
        .post("/json", |req: &Request| {
            req.json::<serde_json::Value>().map(|v| Response::json(&v))
        })
        .post("/upload", |req: &Request| -> Result<String, crate::Error> {
            let form = req.multipart()?;
            let mut out = String::new();
            for (name, value) in form.fields() {
                out.push_str(name);
                out.push_str(value);
            }
            for part in form.files() {
                let mut body = Vec::new();
                part.reader()
                    .read_to_end(&mut body)
                    .map_err(|e| crate::Error::new(StatusCode::BAD_REQUEST, e.to_string()))?;
                out.push_str(&format!(
                    "{} {:?} {}",
                    part.name(),
                    part.file_name(),
                    body.len()
                ));
            }
            Ok(out)
        })
        .get("/cookie", |req: &Request| {
            let seen = req.signed_cookie("s").map(|c| c.value().to_string());
            let private = req.private_cookie("p").map(|c| c.value().to_string());
            Response::text(format!("{seen:?} {private:?} {:?}", req.cookie("plain")))
                .simple_cookie("plain", "v")
        })
        .get("/stream", |_: &Request| Response::stream(["a", "bc"]))
        .get("/big", |_: &Request| "compress me please ".repeat(200))
        .sse("/sse", |req: &Request, sse: &mut crate::Sse| {
            sse.subscribe(req.query_param("t").as_deref().unwrap_or("t"));
        })
        .ws(
            "/ws",
            |ws: &mut crate::WebSocket<'_>, ev: WsEvent| match ev {
                WsEvent::Text(t) => ws.send_text(t),
                WsEvent::Binary(b) => ws.send_binary(b),
                _ => {}
            },
        )
        .nest("/g", guarded)
        .static_files("/static", StaticConfig::new(static_dir()))
        .compress(Compression::new())
        .cookie_key(cookie::Key::from(&[7u8; 64]))
        // The connection's peer is 127.0.0.1: its forwarding headers are
        // believed, so the X-Forwarded-For and Forwarded walks run.
        .trusted_proxies(["127.0.0.1"])
        .limits(
            Limits::default()
                .max_connections_per_ip(1)
                .max_body(4096)
                .body_buffer(1024)
                .header_timeout(Duration::from_secs(5))
                .body_timeout(Duration::from_secs(7))
                .idle_timeout(Duration::from_secs(60)),
        )
}

/// Reads and drops what the connection wrote so far; whether it shut its
/// sending side.
fn drain(client: &mut UnixStream) -> bool {
    let mut buf = [0u8; 65536];
    loop {
        match client.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

/// Drives the connection until it waits for input; `false` once it is
/// done.
fn settle(
    conn: &mut Conn<mio::net::UnixStream>,
    client: &mut UnixStream,
    shared: &mut Shared,
) -> bool {
    // Bounded: a connection yields only while it has buffered work.
    for _ in 0..64 {
        let next = conn.drive(shared);
        drain(client);
        match next {
            Next::Close => return false,
            Next::Keep | Next::Park => return true,
            Next::Yield => conn.readable(false),
        }
    }
    true
}

/// Feeds `data` to one connection in pieces of `split` bytes, then its
/// end of stream after a long pause (the timers fire: 408, idle close).
/// With `proxied`, the connection is on a PROXY protocol listener: `data`
/// starts with the header (v1 or v2), and the client it names is counted
/// against the per-IP limit.
pub fn connection(data: &[u8], split: usize, proxied: bool) {
    let (server, mut client) = UnixStream::pair().expect("a socket pair");
    server.set_nonblocking(true).expect("non-blocking");
    client.set_nonblocking(true).expect("non-blocking");
    let now = Instant::now();
    let peer: std::net::SocketAddr = "127.0.0.1:9".parse().expect("an address");
    let (service, config) = app().into_parts();
    let mut shared = Shared::new(service, config, now);
    let mut conn = Conn::new(mio::net::UnixStream::from_std(server), peer, shared.stamp);
    // Counted as the event loop counts it at accept.
    let counted = if proxied {
        conn.expect_proxy_header();
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        peer.ip()
    };
    assert!(shared.per_ip.admit(counted));
    // On some inputs the balancer already has its one connection, so a
    // header counted under it (`LOCAL`, or naming 127.0.0.1) is refused.
    let balancer_taken = proxied && split % 4 == 1;
    if balancer_taken {
        assert!(shared.per_ip.admit(peer.ip()));
    }
    drive_all(&mut conn, &mut client, &mut shared, data, split);
    // The connection's count is released under what it says, as the event
    // loop does at its close: then nothing may be left counted.
    shared.per_ip.release(conn.counted_ip());
    if balancer_taken {
        shared.per_ip.release(peer.ip());
    }
    assert!(shared.per_ip.is_clear(), "a per-IP count leaked");
}

/// Feeds the data, then lets time pass and ends the stream.
fn drive_all(
    conn: &mut Conn<mio::net::UnixStream>,
    client: &mut UnixStream,
    shared: &mut Shared,
    data: &[u8],
    split: usize,
) {
    for piece in data.chunks(split.max(1)) {
        // A piece the socket cannot take now is dropped: the client
        // would wait, and the connection is not reading anyway.
        let _ = client.write(piece);
        conn.readable(false);
        if !settle(conn, client, shared) {
            return;
        }
        shared.set_now(shared.now + Duration::from_millis(10));
    }
    // Time passes: deadlines fire as the event loop's timer would.
    for _ in 0..3 {
        shared.set_now(shared.now + Duration::from_secs(3600));
        if conn.deadline(shared) <= shared.stamp {
            match conn.timed_out(shared) {
                Expired::Close => return,
                Expired::Drive => {
                    if !settle(conn, client, shared) {
                        return;
                    }
                }
            }
        }
    }
    let _ = client.shutdown(std::net::Shutdown::Write);
    conn.readable(true);
    settle(conn, client, shared);
}
