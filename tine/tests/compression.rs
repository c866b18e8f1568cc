//! Response compression over real TCP, decoded with the real crates:
//! buffered, streamed (still streamed, chunk by chunk) and static bodies,
//! what is skipped, and precompressed files winning.

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{serve, Client, Resp};
use tine::{App, Bytes, Compression, Request, Response};

fn json_rows(n: usize) -> String {
    let rows: Vec<String> = (0..n)
        .map(|i| format!("{{\"id\":{i},\"name\":\"row {i}\",\"done\":false}}"))
        .collect();
    format!("[{}]", rows.join(","))
}

fn app(dir: std::path::PathBuf) -> App {
    App::new()
        .get("/json", |_: &Request| {
            Response::text(json_rows(200)).with_header("x-kind", "json")
        })
        .get("/tiny", |_: &Request| Response::text("tiny"))
        .get("/stream", |_: &Request| {
            // A stream's default type, `application/octet-stream`, is not
            // compressed (binary downloads): this one says it is text.
            Response::stream((0..50).map(|i| format!("line {i} of a streamed body\n")))
                .with_header("content-type", "text/plain; charset=utf-8")
                .with_header("x-stream", "1")
        })
        .get("/no-content", |_: &Request| tine::StatusCode::NO_CONTENT)
        .static_dir("/static", dir)
        .compress(Compression::new())
}

fn request(addr: SocketAddr, method: &str, path: &str, extra: &str) -> Resp {
    let mut c = Client::connect(addr);
    c.send(format!("{method} {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n").as_bytes());
    if method == "HEAD" {
        c.read_head_response()
    } else {
        c.read_response()
    }
}

fn decode(coding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .unwrap();
        }
        "br" => {
            brotli::Decompressor::new(data, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        #[cfg(target_os = "linux")]
        "zstd" => out = zstd::stream::decode_all(data).unwrap(),
        other => panic!("unexpected coding {other}"),
    }
    out
}

fn static_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.js"),
        "console.log('tine');\n".repeat(300),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("pre.css"),
        "body { margin: 0 }\n".repeat(300),
    )
    .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(b"PRECOMPRESSED").unwrap();
    std::fs::write(dir.path().join("pre.css.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(dir.path().join("photo.png"), vec![9u8; 8192]).unwrap();
    dir
}

#[test]
fn buffered_bodies_in_each_coding() {
    let dir = static_dir();
    let path = dir.path().to_path_buf();
    let addr = serve(move || app(path));
    let expected = json_rows(200);
    let mut codings = vec!["gzip", "br"];
    if cfg!(feature = "zstd") {
        codings.push("zstd");
    }
    for coding in codings {
        let r = request(
            addr,
            "GET",
            "/json",
            &format!("Accept-Encoding: {coding}\r\n"),
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), Some(coding));
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        assert_eq!(r.header("x-kind"), Some("json"));
        let len: usize = r.header("content-length").unwrap().parse().unwrap();
        assert_eq!(len, r.body.len());
        assert!(len * 4 < expected.len(), "{coding}: {len} bytes");
        assert_eq!(decode(coding, &r.body), expected.as_bytes(), "{coding}");
    }
    // A browser's header: the preferred coding among those built in.
    let r = request(
        addr,
        "GET",
        "/json",
        "Accept-Encoding: gzip, deflate, br, zstd\r\n",
    );
    let want = if cfg!(feature = "zstd") {
        "zstd"
    } else {
        "gzip"
    };
    assert_eq!(r.header("content-encoding"), Some(want));
    // q-values over the wire.
    let r = request(
        addr,
        "GET",
        "/json",
        "Accept-Encoding: br;q=0.2, gzip;q=0.8\r\n",
    );
    assert_eq!(r.header("content-encoding"), Some("gzip"));
}

#[test]
fn skipped_responses_keep_vary_where_it_matters() {
    let dir = static_dir();
    let path = dir.path().to_path_buf();
    let addr = serve(move || app(path));
    let ae = "Accept-Encoding: gzip\r\n";
    // No Accept-Encoding: as it is, but Vary says it could differ.
    let r = request(addr, "GET", "/json", "");
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert_eq!(r.body, json_rows(200).as_bytes());
    // Below the threshold; but compressed when identity is refused.
    let r = request(addr, "GET", "/tiny", ae);
    assert_eq!(
        (r.header("content-encoding"), r.text().as_str()),
        (None, "tiny")
    );
    let r = request(
        addr,
        "GET",
        "/tiny",
        "Accept-Encoding: gzip, identity;q=0\r\n",
    );
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &r.body), b"tiny");
    // 204, an image, a range: as they are.
    let r = request(addr, "GET", "/no-content", ae);
    assert_eq!((r.status, r.header("content-encoding")), (204, None));
    let r = request(addr, "GET", "/static/photo.png", ae);
    assert_eq!((r.status, r.header("content-encoding")), (200, None));
    assert_eq!(r.body.len(), 8192);
    let r = request(
        addr,
        "GET",
        "/static/app.js",
        "Accept-Encoding: gzip\r\nRange: bytes=0-9\r\n",
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.text(), "console.lo");
}

/// HEAD gets the header fields GET gets (RFC 9110 §9.3.2), compressed
/// or not, buffered, static or streamed.
/// A `304` to a revalidation by date only names the copy the client
/// would hold: the compressed one's weak tag for a file that is
/// compressed on the fly, the strong tag for one that never is (an
/// image) or for a precompressed sibling, whose own tag is strong.
#[test]
fn a_304_by_date_names_the_copy_the_client_would_hold() {
    let dir = static_dir();
    let path = dir.path().to_path_buf();
    let addr = serve(move || app(path));
    for (file, weak) in [("app.js", true), ("photo.png", false), ("pre.css", false)] {
        let path = format!("/static/{file}");
        let ok = request(addr, "GET", &path, "Accept-Encoding: gzip\r\n");
        let lm = ok.header("last-modified").unwrap().to_string();
        let etag = ok.header("etag").unwrap().to_string();
        assert_eq!(etag.starts_with("W/"), weak, "{file} 200: {etag}");
        let r = request(
            addr,
            "GET",
            &path,
            &format!("Accept-Encoding: gzip\r\nIf-Modified-Since: {lm}\r\n"),
        );
        assert_eq!(r.status, 304, "{file}");
        assert_eq!(
            r.header("etag"),
            Some(etag.as_str()),
            "{file}: the 200's tag"
        );
    }
}

#[test]
fn head_gets_the_header_fields_of_get() {
    let dir = static_dir();
    let path = dir.path().to_path_buf();
    let addr = serve(move || app(path));
    for (path, extra) in [
        ("/json", "Accept-Encoding: gzip\r\n"),
        ("/json", ""),
        ("/tiny", "Accept-Encoding: gzip\r\n"),
        ("/static/app.js", "Accept-Encoding: br\r\n"),
        ("/static/pre.css", "Accept-Encoding: gzip\r\n"),
        ("/stream", "Accept-Encoding: gzip\r\n"),
    ] {
        let get = request(addr, "GET", path, extra);
        let head = request(addr, "HEAD", path, extra);
        assert_eq!(head.status, get.status, "{path}");
        for name in [
            "content-encoding",
            "content-length",
            "transfer-encoding",
            "vary",
            "etag",
            "accept-ranges",
        ] {
            assert_eq!(
                head.header(name),
                get.header(name),
                "{path} {extra:?} {name}"
            );
        }
    }
}

#[test]
fn static_files_compressed_on_the_fly_and_precompressed_ones_win() {
    let dir = static_dir();
    let path = dir.path().to_path_buf();
    let addr = serve(move || app(path));
    let js = "console.log('tine');\n".repeat(300);
    let r = request(addr, "GET", "/static/app.js", "Accept-Encoding: br\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("br"));
    assert_eq!(r.header("accept-ranges"), None);
    let etag = r.header("etag").unwrap().to_string();
    assert!(etag.starts_with("W/\""), "{etag}");
    assert_eq!(decode("br", &r.body), js.as_bytes());
    // The weak tag still validates: 304.
    let r = request(
        addr,
        "GET",
        "/static/app.js",
        &format!("Accept-Encoding: br\r\nIf-None-Match: {etag}\r\n"),
    );
    assert_eq!(r.status, 304);
    // Naming the copy the client holds (RFC 9110 §15.4.5).
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    // A precompressed sibling is sent as it is (no second coding).
    let r = request(
        addr,
        "GET",
        "/static/pre.css",
        "Accept-Encoding: gzip, br\r\n",
    );
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &r.body), b"PRECOMPRESSED");
}

#[test]
fn streamed_bodies_stay_streamed() {
    let dir = static_dir();
    let path = dir.path().to_path_buf();
    let addr = serve(move || app(path));
    let expected: String = (0..50)
        .map(|i| format!("line {i} of a streamed body\n"))
        .collect();
    for coding in ["gzip", "br"] {
        let r = request(
            addr,
            "GET",
            "/stream",
            &format!("Accept-Encoding: {coding}\r\n"),
        );
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));
        assert_eq!(r.header("content-encoding"), Some(coding));
        assert_eq!(decode(coding, &r.body), expected.as_bytes());
    }
}

/// A producer that waits between chunks: its first chunk reaches the
/// client, compressed and decodable, before the second is produced.
/// Before streams wrote as they produced, the server gathered 64 KiB (so
/// here everything) before writing, and this test timed out.
#[test]
fn a_slow_compressed_stream_delivers_each_chunk_as_produced() {
    let (tx, rx) = mpsc::channel::<()>();
    let rx = std::sync::Mutex::new(Some(rx));
    let addr = serve(move || {
        App::new()
            .get("/slow", move |_: &Request| {
                let go = rx.lock().unwrap().take().expect("one request");
                let mut n = 0;
                Response::stream(std::iter::from_fn(move || {
                    n += 1;
                    match n {
                        1 => Some(Bytes::from("first chunk\n".repeat(200))),
                        // Waits for the client to have seen the first.
                        2 => go
                            .recv_timeout(Duration::from_secs(20))
                            .ok()
                            .map(|()| Bytes::from("second chunk\n")),
                        _ => None,
                    }
                }))
                .with_header("content-type", "text/plain")
            })
            .compress(Compression::new())
    });
    let mut c = Client::connect(addr);
    c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n");
    // Read raw bytes until the decoded body so far holds the first chunk.
    let mut raw = Vec::new();
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    let mut body_from = None;
    let mut fed = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    let want = "first chunk\n".repeat(200);
    while decoder.get_ref().len() < want.len() {
        assert!(Instant::now() < deadline, "first chunk never arrived");
        let mut buf = [0u8; 4096];
        let n = c
            .stream
            .read(&mut buf)
            .expect("first chunk before the second was produced");
        assert!(n > 0, "closed");
        raw.extend_from_slice(&buf[..n]);
        if body_from.is_none() {
            body_from = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
        }
        // Feed whole chunk payloads (size line, data, CRLF) to the decoder.
        let Some(start) = body_from else { continue };
        let mut pos = start + fed;
        while let Some(eol) = raw[pos..].windows(2).position(|w| w == b"\r\n") {
            let size =
                usize::from_str_radix(std::str::from_utf8(&raw[pos..pos + eol]).unwrap(), 16)
                    .unwrap();
            let data = pos + eol + 2;
            if raw.len() < data + size + 2 {
                break;
            }
            decoder.write_all(&raw[data..data + size]).unwrap();
            decoder.flush().unwrap();
            pos = data + size + 2;
        }
        fed = pos - start;
    }
    assert_eq!(decoder.get_ref().as_slice(), want.as_bytes());
    tx.send(()).unwrap();
}

#[test]
fn a_group_compresses_its_answers_only() {
    let addr = serve(|| {
        App::new()
            .nest(
                "/api",
                tine::Group::new()
                    .get("/rows", |_: &Request| Response::text(json_rows(200)))
                    .compress(Compression::new().brotli(false)),
            )
            .get("/rows", |_: &Request| Response::text(json_rows(200)))
    });
    let gzip = "Accept-Encoding: gzip, br\r\n";
    let r = request(addr, "GET", "/api/rows", gzip);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &r.body), json_rows(200).as_bytes());
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    let r = request(addr, "GET", "/rows", gzip);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.text(), json_rows(200));
}

/// Files and streams hold an encoder (megabytes for zstd) until the
/// client has taken the whole body: a worker compresses at most
/// `max_streams` of them at once, and sends the others as they are, so
/// clients that ask and never read cannot make it hold an encoder each.
#[test]
fn at_most_max_streams_responses_are_compressed_as_they_stream() {
    testkit::logs::capture();
    let addr = serve(|| {
        App::new()
            .get("/endless", |_: &Request| {
                // Bytes that do not compress fill the sockets' buffers
                // with the least work, so the server soon blocks.
                let mut seed = 0;
                Response::stream(std::iter::from_fn(move || {
                    seed += 1;
                    Some(testkit::incompressible(64 * 1024, seed))
                }))
                .with_header("content-type", "text/plain")
            })
            .get("/json", |_: &Request| Response::text(json_rows(200)))
            .compress(Compression::new().max_streams(2))
    });
    // Sends the request and reads the head only; the body stays unread
    // (the server blocks on it, its encoder alive).
    let open = || {
        let mut c = Client::connect(addr);
        c.send(b"GET /endless HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8];
            c.stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
        (c, head.contains("content-encoding: gzip"))
    };
    let (first, compressed) = open();
    assert!(compressed);
    let (_second, compressed) = open();
    assert!(compressed);
    let (_third, compressed) = open();
    assert!(!compressed, "a third stream compressed at once");
    // Said once per worker, not per stream sent uncompressed.
    let (_fourth, compressed) = open();
    assert!(!compressed);
    let warned = testkit::logs::matching("compression: 2 files or streams are being compressed");
    assert_eq!(warned.len(), 1, "{warned:?}");
    // Bodies in memory hold no encoder: still compressed.
    let r = request(addr, "GET", "/json", "Accept-Encoding: gzip\r\n");
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    // Once a client is gone, its place is free again.
    drop(first);
    assert!(support::wait_until(Duration::from_secs(10), || open().1));
}
