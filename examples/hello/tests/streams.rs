//! hello's web-stream contract through the real binary with 4 workers:
//! `--compress` with `/big`, and `/sse/:topic` reached by
//! `POST /publish/:topic` from whichever worker takes the POST.

use std::collections::BTreeSet;
use std::io::Read;

use testkit::sse::{open, post, SseStream};
use testkit::{Client, Resp, ServerProcess};

const HELLO: &str = env!("CARGO_BIN_EXE_hello");

fn get_with(addr: std::net::SocketAddr, path: &str, extra: &str) -> Resp {
    let mut c = Client::connect(addr);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n").as_bytes());
    c.read_response()
}

#[test]
fn compress_flag_and_big_json() {
    let server = ServerProcess::start(
        HELLO,
        &["--bind", "127.0.0.1:0", "--workers", "2", "--compress"],
    );
    let plain = get_with(server.addr, "/big?kb=256", "");
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-type"), Some("application/json"));
    assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
    let len = plain.body.len();
    assert!((250 * 1024..=256 * 1024).contains(&len), "{len} bytes");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&plain.body).unwrap();
    assert!(rows.len() > 3000);

    let gz = get_with(server.addr, "/big?kb=256", "Accept-Encoding: gzip\r\n");
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert!(
        gz.body.len() * 5 < len,
        "{} bytes compressed",
        gz.body.len()
    );
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, plain.body);

    #[cfg(target_os = "linux")]
    {
        let z = get_with(
            server.addr,
            "/big?kb=256",
            "Accept-Encoding: gzip, br, zstd\r\n",
        );
        assert_eq!(z.header("content-encoding"), Some("zstd"));
        assert_eq!(zstd::stream::decode_all(&z.body[..]).unwrap(), plain.body);
    }
    assert_eq!(get_with(server.addr, "/big?kb=x", "").status, 400);

    // Without --compress nothing is compressed.
    let off = ServerProcess::start(HELLO, &["--bind", "127.0.0.1:0"]);
    let r = get_with(off.addr, "/big?kb=4", "Accept-Encoding: gzip\r\n");
    assert_eq!((r.status, r.header("content-encoding")), (200, None));
}

/// Opens streams on `topic` until they span at least two workers (each
/// says which in its first event).
fn streams_on_several_workers(
    addr: std::net::SocketAddr,
    topic: &str,
) -> (Vec<SseStream>, BTreeSet<String>) {
    let mut streams = Vec::new();
    let mut pids = BTreeSet::new();
    for _ in 0..100 {
        let mut s = open(addr, &format!("/sse/{topic}"), "").expect("a stream");
        let hello = s.next_event().unwrap();
        let hello = if hello.get("retry").is_some() {
            s.next_event().unwrap()
        } else {
            hello
        };
        assert_eq!(hello.get("event"), Some("hello"));
        pids.insert(hello.data());
        streams.push(s);
        if streams.len() >= 6 && pids.len() >= 2 {
            break;
        }
    }
    assert!(
        pids.len() >= 2,
        "all streams landed on one worker: {pids:?}"
    );
    (streams, pids)
}

#[test]
fn sse_streams_in_every_worker_get_what_is_published() {
    let server = ServerProcess::start(HELLO, &["--bind", "127.0.0.1:0", "--workers", "4"]);
    let (mut streams, pids) = streams_on_several_workers(server.addr, "live");
    eprintln!("streams on workers {pids:?}");
    // The first event was sent from the route that subscribed: from here
    // every publish, from any worker, reaches every stream.
    for i in 0..10 {
        assert_eq!(
            post(server.addr, "/publish/live", &format!("news {i}")),
            202
        );
    }
    // Each POST may go to another worker: messages from different
    // publishers have no order between them, but each arrives once.
    let want: BTreeSet<String> = (0..10).map(|i| format!("news {i}")).collect();
    for s in &mut streams {
        let got: BTreeSet<String> = (0..10).map(|_| s.next_event().unwrap().data()).collect();
        assert_eq!(got, want);
    }
    // An event with an id (published once the others arrived everywhere).
    assert_eq!(post(server.addr, "/publish/live?id=77", "with an id"), 202);
    for s in &mut streams {
        let e = s.next_event().unwrap();
        assert_eq!((e.get("id"), e.data().as_str()), (Some("77"), "with an id"));
    }
    // A reconnecting browser's Last-Event-ID reaches the route.
    let mut again = open(server.addr, "/sse/live", "Last-Event-ID: 77\r\n").unwrap();
    let first = again.next_event().unwrap();
    let resume = if first.get("retry").is_some() {
        again.next_event().unwrap()
    } else {
        first
    };
    assert_eq!(
        (resume.get("event"), resume.data().as_str()),
        (Some("resume"), "77")
    );
}

/// A graceful stop ends every event stream at once (their last chunk), so
/// browsers reconnect to the workers that serve on, and the server does
/// not wait for its drain deadline.
#[test]
fn sigterm_ends_event_streams_cleanly() {
    let mut server = ServerProcess::start(
        HELLO,
        &[
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--graceful-timeout-ms",
            "60000",
        ],
    );
    let (mut streams, _) = streams_on_several_workers(server.addr, "bye");
    server.signal(nix::sys::signal::Signal::SIGTERM);
    for s in &mut streams {
        assert!(s.ends(), "a stream did not end");
    }
    let status = server.wait_exit(std::time::Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
