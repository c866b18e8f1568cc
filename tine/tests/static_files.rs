//! Static files over real TCP: index, redirects, traversal attempts,
//! validators, ranges, precompressed variants, HEAD, slow downloads.

mod support;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{serve, Client};
use tine::{App, Request, StaticConfig};

struct Site {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
}

fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("public");
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::write(dir.path().join("secret.txt"), "TOP SECRET").unwrap();
    std::fs::write(root.join("index.html"), "<h1>home</h1>").unwrap();
    std::fs::write(root.join("docs/index.html"), "<h1>docs</h1>").unwrap();
    std::fs::write(root.join("app.js"), "console.log(1)").unwrap();
    std::fs::write(root.join("app.js.gz"), "GZIPPED").unwrap();
    std::fs::write(root.join("app.js.br"), "BROTLI").unwrap();
    std::fs::write(root.join("digits.txt"), "0123456789").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("escape.txt")).unwrap();
    // Relative links whose resolution stays inside work; absolute links
    // and relative ones that climb out are refused.
    std::os::unix::fs::symlink("digits.txt", root.join("inside.txt")).unwrap();
    std::os::unix::fs::symlink("../digits.txt", root.join("docs/up.txt")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", root.join("climb.txt")).unwrap();
    std::os::unix::fs::symlink("..", root.join("parent")).unwrap();
    Site { _dir: dir, root }
}

fn serve_site(root: &Path) -> std::net::SocketAddr {
    let root = root.to_path_buf();
    serve(move || {
        App::new()
            .get("/dynamic", |_: &Request| "dyn")
            .static_dir("/static", root)
    })
}

/// Serves the site once with each lookup: the default (`openat2` on
/// Linux) and the portable component walk that macOS and FreeBSD use.
fn serve_site_each_lookup(root: &Path) -> [std::net::SocketAddr; 2] {
    let portable = {
        let root = root.to_path_buf();
        serve(move || {
            App::new().static_files("/static", StaticConfig::new(root).portable_lookup(true))
        })
    };
    [serve_site(root), portable]
}

fn req(addr: std::net::SocketAddr, raw: &str) -> support::Resp {
    let mut c = Client::connect(addr);
    c.send(raw.as_bytes());
    c.read_response()
}

#[test]
fn index_redirect_and_types() {
    let site = site();
    let addr = serve_site(&site.root);
    let r = Client::connect(addr).get("/static/");
    assert_eq!((r.status, r.text().as_str()), (200, "<h1>home</h1>"));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let r = Client::connect(addr).get("/static/docs?x=1");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/static/docs/?x=1"));
    assert_eq!(
        Client::connect(addr).get("/static/docs/").text(),
        "<h1>docs</h1>"
    );
    assert_eq!(
        Client::connect(addr).get("/static/inside.txt").text(),
        "0123456789"
    );
    assert_eq!(Client::connect(addr).get("/static/nope.txt").status, 404);
    assert_eq!(Client::connect(addr).get("/dynamic").text(), "dyn");
    let r = req(
        addr,
        "POST /static/digits.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(r.status, 405);
}

#[test]
fn traversal_never_escapes_the_root() {
    let site = site();
    for addr in serve_site_each_lookup(&site.root) {
        traversal_never_escapes(addr);
    }
}

fn traversal_never_escapes(addr: std::net::SocketAddr) {
    // Links that stay inside are served (so the refusals below are not
    // just a broken lookup).
    assert_eq!(
        Client::connect(addr).get("/static/inside.txt").text(),
        "0123456789"
    );
    assert_eq!(
        Client::connect(addr).get("/static/docs/up.txt").text(),
        "0123456789"
    );
    for path in [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/..%2fsecret.txt",
        "/static/%2e%2e%2fsecret.txt",
        "/static/..%5csecret.txt",
        "/static/..\\secret.txt",
        "/static/%00secret.txt",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/escape.txt",
        "/static/climb.txt",
        "/static/parent/secret.txt",
        "/static/parent/public/digits.txt",
        "/static/docs/../../secret.txt",
        "/static/docs/%2e%2e/%2e%2e/secret.txt",
        "/static/%2e%2e%5csecret.txt",
        "/static/secret.txt%00",
        "/static/\\..\\secret.txt",
    ] {
        let r = Client::connect(addr).get(path);
        assert_eq!(r.status, 404, "{path}");
        assert!(!r.text().contains("SECRET"), "{path}");
    }
}

#[test]
fn validators_give_304() {
    let site = site();
    let addr = serve_site(&site.root);
    let r = Client::connect(addr).get("/static/digits.txt");
    let etag = r.header("etag").unwrap().to_string();
    let modified = r.header("last-modified").unwrap().to_string();
    let r = req(
        addr,
        &format!("GET /static/digits.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n"),
    );
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = req(
        addr,
        &format!(
            "GET /static/digits.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: {modified}\r\n\r\n"
        ),
    );
    assert_eq!(r.status, 304);
    let r = req(
        addr,
        "GET /static/digits.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"other\"\r\n\r\n",
    );
    assert_eq!(r.status, 200);
}

#[test]
fn ranges() {
    let site = site();
    let addr = serve_site(&site.root);
    let r = req(
        addr,
        "GET /static/digits.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=2-4\r\n\r\n",
    );
    assert_eq!((r.status, r.text().as_str()), (206, "234"));
    assert_eq!(r.header("content-range"), Some("bytes 2-4/10"));
    let r = req(
        addr,
        "GET /static/digits.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=-3\r\n\r\n",
    );
    assert_eq!(r.text(), "789");
    let r = req(
        addr,
        "GET /static/digits.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=20-\r\n\r\n",
    );
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */10"));
    let etag = Client::connect(addr)
        .get("/static/digits.txt")
        .header("etag")
        .unwrap()
        .to_string();
    let r = req(addr, &format!("GET /static/digits.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-0\r\nIf-Range: {etag}\r\n\r\n"));
    assert_eq!((r.status, r.text().as_str()), (206, "0"));
    let r = req(addr, "GET /static/digits.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-0\r\nIf-Range: \"stale\"\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "0123456789"));
}

#[test]
fn precompressed_variants_and_vary() {
    let site = site();
    let addr = serve_site(&site.root);
    let r = req(
        addr,
        "GET /static/app.js HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip, br\r\n\r\n",
    );
    assert_eq!(
        (r.text().as_str(), r.header("content-encoding")),
        ("BROTLI", Some("br"))
    );
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert!(r.header("content-type").unwrap().contains("javascript"));
    let r = req(
        addr,
        "GET /static/app.js HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n",
    );
    assert_eq!(r.text(), "GZIPPED");
    let r = Client::connect(addr).get("/static/app.js");
    assert_eq!(
        (r.text().as_str(), r.header("content-encoding")),
        ("console.log(1)", None)
    );
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
}

#[test]
fn head_sends_the_length_only() {
    let site = site();
    let addr = serve_site(&site.root);
    let mut c = Client::connect(addr);
    c.send(b"HEAD /static/digits.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_head_response();
    assert_eq!((r.status, r.header("content-length")), (200, Some("10")));
    assert_eq!(c.get("/static/digits.txt").text(), "0123456789");
}

#[test]
fn a_slow_64_mib_download_does_not_stall_others() {
    let site = site();
    let size = 64 * 1024 * 1024;
    std::fs::write(site.root.join("big.bin"), vec![7u8; size]).unwrap();
    let addr = serve_site(&site.root);
    let mut slow = Client::connect(addr);
    slow.send(b"GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0;
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(50));
            total += slow.stream.read(&mut buf).unwrap();
        }
        while total < size {
            let n = slow.stream.read(&mut buf).unwrap();
            assert!(n > 0);
            total += n;
        }
        total
    });
    for _ in 0..20 {
        let start = Instant::now();
        assert_eq!(Client::connect(addr).get("/static/digits.txt").status, 200);
        assert!(start.elapsed() < Duration::from_millis(500));
    }
    assert!(reader.join().unwrap() >= size);
}

/// The mount's prefix is matched per segment after percent-decoding, so a
/// path spelling it with escapes names the same file as the plain one
/// (it used to be cut off by its decoded length: `/stati%63/a.txt` served
/// `63/a.txt`).
#[test]
fn an_escaped_mount_prefix_names_the_same_file() {
    let site = site();
    std::fs::create_dir_all(site.root.join("63")).unwrap();
    std::fs::write(site.root.join("63/digits.txt"), "WRONG FILE").unwrap();
    std::fs::create_dir_all(site.root.join("ic")).unwrap();
    std::fs::write(site.root.join("ic/digits.txt"), "WRONG FILE").unwrap();
    let addr = serve_site(&site.root);
    for path in [
        "/static/digits.txt",
        "/stati%63/digits.txt",
        "/%73tatic/digits.txt",
    ] {
        let r = Client::connect(addr).get(path);
        assert_eq!((r.status, r.text().as_str()), (200, "0123456789"), "{path}");
    }
}

/// The descriptors this process holds open on `path` after it was deleted.
#[cfg(target_os = "linux")]
fn deleted_fds(path: &Path) -> usize {
    let gone = format!("{} (deleted)", path.display());
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy() == gone)
        .count()
}

/// The open-file cache lets go of a deleted file's descriptor (and so its
/// disk space) once its time is over: when the path is asked for again,
/// and otherwise at a later lookup of any path. It used to keep it
/// until the same path was asked for and found again.
#[cfg(target_os = "linux")]
#[test]
fn the_open_file_cache_closes_deleted_files() {
    let site = site();
    let root = site.root.clone();
    let addr = serve(move || {
        App::new().static_files(
            "/static",
            StaticConfig::new(root).open_file_cache(Duration::from_millis(200)),
        )
    });
    for (name, ask_again) in [("again.txt", true), ("other.txt", false)] {
        let path = site.root.join(name);
        std::fs::write(&path, "old").unwrap();
        let url = format!("/static/{name}");
        assert_eq!(Client::connect(addr).get(&url).text(), "old");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(deleted_fds(&path), 1, "{name}: cached");
        if ask_again {
            // Within its time the cached copy is still served (as
            // documented); after it, the path is looked up again.
            std::thread::sleep(Duration::from_millis(250));
            assert_eq!(Client::connect(addr).get(&url).status, 404);
        } else {
            std::thread::sleep(Duration::from_millis(450));
            assert_eq!(Client::connect(addr).get("/static/digits.txt").status, 200);
        }
        assert_eq!(deleted_fds(&path), 0, "{name}: still open");
    }
}

#[test]
fn a_file_a_handler_sends_answers_conditional_and_range_requests() {
    let site = site();
    let digits = site.root.join("digits.txt");
    let addr = serve(move || {
        let (plain, own_tag, posted) = (digits.clone(), digits.clone(), digits.clone());
        App::new()
            .get("/dl", move |_: &Request| tine::Response::file(&plain))
            .get("/tagged", move |_: &Request| {
                tine::Response::file(&own_tag)
                    .with_header("etag", "\"v1\"")
                    .with_header("content-disposition", "attachment")
            })
            .post("/dl", move |_: &Request| tine::Response::file(&posted))
            .after(|_: &Request, res: tine::Response| {
                let status = res.status().as_u16().to_string();
                res.with_header("x-seen-by-hook", status)
            })
    });
    let get = |path: &str, extra: &str| {
        req(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n"),
        )
    };
    let r = get("/dl", "");
    assert_eq!((r.status, r.text().as_str()), (200, "0123456789"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let etag = r.header("etag").unwrap().to_string();
    let modified = r.header("last-modified").unwrap().to_string();
    // The static files' validators for the same file: one rule.
    let same = serve_site(&site.root);
    assert_eq!(
        Client::connect(same)
            .get("/static/digits.txt")
            .header("etag"),
        Some(etag.as_str())
    );

    let r = get("/dl", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!((r.status, r.body.len()), (304, 0));
    assert_eq!(r.header("content-type"), None);
    assert_eq!(r.header("x-seen-by-hook"), Some("304"));
    let r = get("/dl", &format!("If-Modified-Since: {modified}\r\n"));
    assert_eq!(r.status, 304);
    let r = get("/dl", "If-Match: \"other\"\r\n");
    assert_eq!((r.status, r.body.len()), (412, 0));

    let r = get("/dl", "Range: bytes=2-4\r\n");
    assert_eq!((r.status, r.text().as_str()), (206, "234"));
    assert_eq!(r.header("content-range"), Some("bytes 2-4/10"));
    assert_eq!(r.header("x-seen-by-hook"), Some("206"));
    let r = get("/dl", "Range: bytes=20-\r\n");
    assert_eq!((r.status, r.body.len()), (416, 0));
    assert_eq!(r.header("content-range"), Some("bytes */10"));
    let r = get("/dl", "Range: bytes=0-0\r\nIf-Range: \"stale\"\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "0123456789"));
    let r = get("/dl", &format!("Range: bytes=9-\r\nIf-Range: {etag}\r\n"));
    assert_eq!((r.status, r.text().as_str()), (206, "9"));

    // A tag the handler set is the one compared.
    let r = get("/tagged", "If-None-Match: \"v1\"\r\n");
    assert_eq!((r.status, r.header("content-disposition")), (304, None));
    assert_eq!(r.header("etag"), Some("\"v1\""));
    assert_eq!(
        get("/tagged", &format!("If-None-Match: {etag}\r\n")).status,
        200
    );

    // Only GET and HEAD: a POST that answers with a file gets it whole.
    let r = req(
        addr,
        "POST /dl HTTP/1.1\r\nHost: t\r\nRange: bytes=2-4\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!((r.status, r.text().as_str()), (200, "0123456789"));
}
