//! End-to-end tests of [`serve`] against a real directory tree.

use std::fs;
use std::os::unix::fs::{symlink, FileExt};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{
    ACCEPT_ENCODING, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_RANGE, CONTENT_TYPE,
    ETAG, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, LAST_MODIFIED, RANGE, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::*;

const HELLO: &[u8] = b"hello world\n";
/// 2023-11-14T22:13:20Z
const MTIME: u64 = 1_700_000_000;
const MTIME_HTTP: &str = "Tue, 14 Nov 2023 22:13:20 GMT";

/// A temp dir laid out as:
/// ```text
/// base/secret.txt            (beside the root: must never be served)
/// base/root/...              (the mount root)
/// ```
struct Fixture {
    _dir: tempfile::TempDir,
    base: std::path::PathBuf,
    mount: Mount,
}

fn write(path: &Path, data: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, data).unwrap();
    set_mtime(path, UNIX_EPOCH + Duration::from_secs(MTIME));
}

fn set_mtime(path: &Path, t: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn fixture_with(cfg: impl FnOnce(&mut StaticConfig)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let root = base.join("root");
    write(&base.join("secret.txt"), b"TOP SECRET");
    write(&base.join("secretdir/inner.txt"), b"TOP SECRET");
    write(&root.join("hello.txt"), HELLO);
    write(&root.join("index.html"), b"<h1>root</h1>");
    write(&root.join("dir/index.html"), b"<h1>dir</h1>");
    write(&root.join("dir/page.css"), b"p{}");
    fs::create_dir_all(root.join("emptydir")).unwrap();
    write(&root.join("app.js"), b"1");
    write(&root.join("app.mjs"), b"1");
    write(&root.join("data.json"), b"{}");
    write(&root.join("logo.svg"), b"<svg/>");
    write(&root.join("img.png"), b"\x89PNG");
    write(&root.join("noext"), b"?");
    write(&root.join(".hidden"), b"hidden");
    write(&root.join("empty.txt"), b"");
    write(&root.join("a b.txt"), b"space");
    write(&root.join("été.txt"), b"utf8");
    write(&root.join("style.css"), b"body { color: red }\n");
    write(&root.join("style.css.br"), b"BROTLI");
    write(&root.join("style.css.gz"), b"GZIP!!");
    write(&root.join("only.js"), b"plain js");
    write(&root.join("only.js.gz"), b"gz js");
    write(&root.join("brdir.txt"), b"plain");
    fs::create_dir_all(root.join("brdir.txt.br")).unwrap();
    write(&root.join("gzdir/index.html"), b"<p>gz index</p>");
    write(&root.join("gzdir/index.html.gz"), b"GZ INDEX");
    // Symlinks: inside the root (allowed) and escaping it (refused).
    symlink("hello.txt", root.join("link_in")).unwrap();
    symlink("dir", root.join("link_dir_in")).unwrap();
    symlink("../root/hello.txt", root.join("link_in_via_parent")).unwrap();
    symlink("dir/../hello.txt", root.join("link_in_dotdot")).unwrap();
    symlink("../secret.txt", root.join("link_out")).unwrap();
    symlink(base.join("secret.txt"), root.join("link_out_abs")).unwrap();
    symlink("..", root.join("link_parent")).unwrap();
    symlink("../secretdir", root.join("link_dir_out")).unwrap();
    symlink("/etc/passwd", root.join("passwd")).unwrap();
    symlink("/proc/self/root/etc/passwd", root.join("magic")).unwrap();
    symlink("missing", root.join("dangling")).unwrap();
    symlink("loop", root.join("loop")).unwrap();
    symlink("../secret.txt", root.join("dir/escape.txt")).unwrap();
    // Links whose resolution climbs with `..` (the portable lookup walks
    // those itself) or chains through other links.
    symlink("../hello.txt", root.join("dir/up")).unwrap();
    write(&root.join("deep/a/b/leaf.txt"), b"leaf");
    symlink("../../../hello.txt", root.join("deep/a/b/up3")).unwrap();
    symlink("../../../../secret.txt", root.join("deep/a/b/up4")).unwrap();
    symlink("../a/./b/../b/leaf.txt", root.join("deep/a/zigzag")).unwrap();
    symlink("b", root.join("deep/a/b_link")).unwrap();
    symlink("../../dir/up", root.join("deep/a/via_link")).unwrap();
    symlink("chain2", root.join("chain1")).unwrap();
    symlink("link_in", root.join("chain2")).unwrap();
    symlink(".", root.join("self")).unwrap();
    symlink("dir/..", root.join("updir")).unwrap();
    symlink("dir/", root.join("dirslash")).unwrap();
    symlink("hello.txt/", root.join("fileslash")).unwrap();
    symlink(
        "../link_parent/secret.txt",
        root.join("dir/via_parent_link"),
    )
    .unwrap();
    symlink("dir/../..", root.join("out_via_dotdot")).unwrap();
    // A chain of exactly MAX_LINKS links to hello.txt, and one more.
    for i in 0..beneath::MAX_LINKS {
        let target = match i + 1 {
            beneath::MAX_LINKS => "hello.txt".to_owned(),
            next => format!("hop{next}"),
        };
        symlink(target, root.join(format!("hop{i}"))).unwrap();
    }
    symlink("hop0", root.join("hop_too_many")).unwrap();
    // Special files.
    mkfifo(&root.join("fifo"));
    std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();

    let mut c = StaticConfig::new(&root);
    cfg(&mut c);
    let mount = Mount::open(c).unwrap();
    Fixture {
        _dir: dir,
        base,
        mount,
    }
}

#[cfg(not(target_vendor = "apple"))]
fn mkfifo(path: &Path) {
    let fifo = rustix::fs::FileType::Fifo;
    let mode = rustix::fs::Mode::from_raw_mode(0o644);
    rustix::fs::mknodat(rustix::fs::CWD, path, fifo, mode, 0).unwrap();
}

/// rustix has no `mknodat` for Apple targets: use the system's mkfifo(1).
#[cfg(target_vendor = "apple")]
fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo").arg(path).status();
    assert!(status.unwrap().success(), "mkfifo {}", path.display());
}

/// A character device (`/dev/null`'s numbers on Linux) at `path`, if this
/// system and file system allow it (root, no `nodev`); else nothing.
fn try_mknod_null(path: &Path) {
    #[cfg(not(target_vendor = "apple"))]
    let _ = rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    );
    #[cfg(target_vendor = "apple")]
    let _ = path;
}

fn fixture() -> Fixture {
    fixture_with(|_| {})
}

/// Runs `test` once per lookup (`openat2` on Linux, the portable
/// component walk everywhere), on a fresh fixture configured by `cfg`:
/// every path-safety property must hold for both.
fn each_lookup(cfg: impl Fn(&mut StaticConfig), mut test: impl FnMut(&Fixture)) {
    for portable in [false, true] {
        let f = fixture_with(|c| {
            cfg(c);
            c.portable_lookup = portable;
        });
        if portable {
            assert_eq!(f.mount.lookup, Lookup::Portable);
        }
        // The assertion's own message is printed first; this names the
        // lookup it failed with.
        let run = std::panic::AssertUnwindSafe(|| test(&f));
        if std::panic::catch_unwind(run).is_err() {
            panic!("failed with the {:?} lookup", f.mount.lookup);
        }
    }
}

#[test]
fn each_lookup_really_uses_both() {
    let lookups = std::cell::RefCell::new(Vec::new());
    each_lookup(|_| {}, |f| lookups.borrow_mut().push(f.mount.lookup));
    #[cfg(target_os = "linux")]
    assert_eq!(*lookups.borrow(), [Lookup::Openat2, Lookup::Portable]);
    #[cfg(not(target_os = "linux"))]
    assert_eq!(*lookups.borrow(), [Lookup::Portable, Lookup::Portable]);
}

fn headers(pairs: &[(HeaderName, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(n.clone(), HeaderValue::from_str(v).unwrap());
    }
    h
}

impl Fixture {
    fn req(&self, method: Method, rel: &str, pairs: &[(HeaderName, &str)]) -> Outcome {
        // Mounted at "/static"; `rel` is what follows the prefix.
        let raw = format!("/static{rel}");
        serve(&self.mount, &method, &raw, rel, &headers(pairs))
    }

    fn get(&self, rel: &str, pairs: &[(HeaderName, &str)]) -> Outcome {
        self.req(Method::GET, rel, pairs)
    }
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Option<FileBody>,
}

impl Resp {
    fn header(&self, name: HeaderName) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn body(&self) -> Vec<u8> {
        let b = self.body.as_ref().expect("no body");
        let mut buf = vec![0; usize::try_from(b.len).unwrap()];
        b.file.read_exact_at(&mut buf, b.offset).unwrap();
        buf
    }
}

#[track_caller]
fn respond(o: Outcome) -> Resp {
    match o {
        Outcome::Respond {
            status,
            headers,
            body,
            ..
        } => Resp {
            status,
            headers,
            body,
        },
        other => panic!("expected Respond, got {other:?}"),
    }
}

#[track_caller]
fn ok(o: Outcome) -> Resp {
    let r = respond(o);
    assert_eq!(r.status, StatusCode::OK);
    r
}

#[track_caller]
fn assert_not_found(o: Outcome, what: &str) {
    assert!(matches!(o, Outcome::NotFound), "{what}: {o:?}");
}

// ---------------------------------------------------------------- basics

#[test]
fn serves_a_file_with_representation_headers() {
    each_lookup(
        |c| c.cache_control = Some(HeaderValue::from_static("max-age=60")),
        |f| {
            let r = ok(f.get("/hello.txt", &[]));
            assert_eq!(r.body(), HELLO);
            let b = r.body.as_ref().unwrap();
            assert_eq!((b.offset, b.len), (0, HELLO.len() as u64));
            assert_eq!(r.header(CONTENT_TYPE), Some("text/plain; charset=utf-8"));
            assert_eq!(r.header(ACCEPT_RANGES), Some("bytes"));
            assert_eq!(r.header(CACHE_CONTROL), Some("max-age=60"));
            assert_eq!(r.header(LAST_MODIFIED), Some(MTIME_HTTP));
            let etag = r.header(ETAG).unwrap();
            assert!(etag.starts_with("\"c-") && etag.ends_with('"'), "{etag}");
            // Precompressed lookups are on: caches are always told to vary.
            assert_eq!(r.header(VARY), Some("Accept-Encoding"));
            assert_eq!(r.header(CONTENT_ENCODING), None);
            assert_eq!(r.header(CONTENT_RANGE), None);
            assert!(!r.headers.contains_key(http::header::CONTENT_LENGTH));
        },
    );
}

#[test]
fn content_types() {
    let f = fixture();
    for (rel, ct) in [
        ("/index.html", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/app.mjs", "application/javascript; charset=utf-8"),
        ("/data.json", "application/json; charset=utf-8"),
        ("/logo.svg", "image/svg+xml; charset=utf-8"),
        ("/dir/page.css", "text/css; charset=utf-8"),
        ("/img.png", "image/png"),
        ("/noext", "application/octet-stream"),
    ] {
        assert_eq!(ok(f.get(rel, &[])).header(CONTENT_TYPE), Some(ct), "{rel}");
    }
}

#[test]
fn etag_tracks_size_and_mtime() {
    let f = fixture();
    let e1 = ok(f.get("/hello.txt", &[]))
        .header(ETAG)
        .unwrap()
        .to_owned();
    assert_eq!(ok(f.get("/hello.txt", &[])).header(ETAG).unwrap(), e1);
    let path = f.base.join("root/hello.txt");
    set_mtime(&path, UNIX_EPOCH + Duration::new(MTIME, 5));
    let e2 = ok(f.get("/hello.txt", &[]))
        .header(ETAG)
        .unwrap()
        .to_owned();
    assert_ne!(e1, e2, "sub-second mtime change must change the ETag");
    write(&path, b"hello, world\n");
    let e3 = ok(f.get("/hello.txt", &[]))
        .header(ETAG)
        .unwrap()
        .to_owned();
    assert_ne!(e1, e3);
}

#[test]
fn percent_encoded_names_and_hidden_files() {
    each_lookup(
        |_| {},
        |f| {
            assert_eq!(ok(f.get("/a%20b.txt", &[])).body(), b"space");
            assert_eq!(ok(f.get("/%C3%A9t%C3%A9.txt", &[])).body(), b"utf8");
            assert_eq!(ok(f.get("/.hidden", &[])).body(), b"hidden");
            assert_eq!(ok(f.get("/%2ehidden", &[])).body(), b"hidden");
            assert_eq!(ok(f.get("/./hello.txt", &[])).body(), HELLO);
            assert_eq!(ok(f.get("hello.txt", &[])).body(), HELLO);
        },
    );
}

#[test]
fn missing_files() {
    each_lookup(
        |_| {},
        |f| {
            assert_not_found(f.get("/nope.txt", &[]), "missing");
            assert_not_found(f.get("/dir/nope", &[]), "missing in dir");
            assert_not_found(f.get("/nodir/x", &[]), "missing dir");
            assert_not_found(f.get("/hello.txt/", &[]), "file with trailing slash");
            // `file/.` is `file/` (RFC 3986 §5.2.4), not the file.
            assert_not_found(f.get("/hello.txt/.", &[]), "file with a last dot");
            assert_not_found(f.get("/hello.txt/%2e", &[]), "file with a last %2e");
            assert_not_found(f.get("/hello.txt/x", &[]), "file as dir");
            assert_not_found(f.get("/dangling", &[]), "dangling symlink");
            assert_not_found(f.get("/loop", &[]), "symlink loop");
            assert_not_found(f.get(&format!("/{}", "a".repeat(300)), &[]), "long name");
            assert_not_found(f.get(&"/a".repeat(3000), &[]), "long path");
        },
    );
}

#[test]
fn methods() {
    let f = fixture();
    for m in [
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::PATCH,
    ] {
        assert!(matches!(
            f.req(m, "/hello.txt", &[]),
            Outcome::MethodNotAllowed
        ));
    }
    // A path that does not exist is a 404 whatever the method: the mount
    // has nothing there to allow GET on.
    assert!(matches!(
        f.req(Method::POST, "/nope", &[]),
        Outcome::NotFound
    ));
    assert!(matches!(
        f.req(Method::DELETE, "/../etc/passwd", &[]),
        Outcome::NotFound
    ));
    assert_eq!(ALLOW, "GET, HEAD, OPTIONS");
}

#[test]
fn head_returns_body_handle_for_length() {
    let f = fixture();
    let r = ok(f.req(Method::HEAD, "/hello.txt", &[]));
    let b = r.body.as_ref().unwrap();
    assert_eq!((b.offset, b.len), (0, HELLO.len() as u64));
    assert_eq!(r.header(CONTENT_TYPE), Some("text/plain; charset=utf-8"));
    assert!(r.header(ETAG).is_some());
    // Range is ignored for HEAD.
    let r = ok(f.req(Method::HEAD, "/hello.txt", &[(RANGE, "bytes=0-1")]));
    assert_eq!(r.body.as_ref().unwrap().len, HELLO.len() as u64);
    assert_eq!(r.header(CONTENT_RANGE), None);
    // Conditionals apply to HEAD.
    let etag = r.header(ETAG).unwrap().to_owned();
    let r = respond(f.req(Method::HEAD, "/hello.txt", &[(IF_NONE_MATCH, &etag)]));
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
}

// ------------------------------------------------------ directories

#[test]
fn directory_index() {
    each_lookup(
        |_| {},
        |f| {
            assert_eq!(ok(f.get("/", &[])).body(), b"<h1>root</h1>");
            let r = ok(f.get("/dir/", &[]));
            assert_eq!(r.body(), b"<h1>dir</h1>");
            assert_eq!(r.header(CONTENT_TYPE), Some("text/html; charset=utf-8"));
            assert_eq!(ok(f.get("/link_dir_in/", &[])).body(), b"<h1>dir</h1>");
            assert_not_found(f.get("/emptydir/", &[]), "dir without index");
        },
    );
}

#[test]
fn directory_without_slash_redirects() {
    each_lookup(
        |_| {},
        |f| {
            let loc = |o: Outcome| match o {
                Outcome::Redirect { location } => location,
                other => panic!("expected redirect, got {other:?}"),
            };
            assert_eq!(loc(f.get("/dir", &[])), "/static/dir/");
            assert_eq!(loc(f.get("", &[])), "/static/");
            assert_eq!(loc(f.get("/emptydir", &[])), "/static/emptydir/");
            assert_eq!(loc(f.get("/link_dir_in", &[])), "/static/link_dir_in/");
            assert_eq!(loc(f.req(Method::HEAD, "/dir", &[])), "/static/dir/");
            // Query string kept; raw encoding kept.
            let h = HeaderMap::new();
            let o = serve(
                &f.mount,
                &Method::GET,
                "/static/d%69r?a=1&b=%20",
                "/d%69r",
                &h,
            );
            assert_eq!(loc(o), "/static/d%69r/?a=1&b=%20");
            // Raw bytes past ASCII (sent unencoded) go out percent-encoded.
            fs::create_dir_all(f.base.join("root/\u{e9}")).unwrap();
            let o = serve(
                &f.mount,
                &Method::GET,
                "/static/\u{e9}?q=\u{fc}",
                "/\u{e9}",
                &h,
            );
            assert_eq!(loc(o), "/static/%C3%A9/?q=%C3%BC");
            // A raw path that would turn into a network-path reference is refused.
            let o = serve(&f.mount, &Method::GET, "//evil.example/dir", "/dir", &h);
            assert_not_found(o, "open redirect");
            let o = serve(&f.mount, &Method::GET, "/\\evil.example/dir", "/dir", &h);
            assert_not_found(o, "open redirect backslash");
        },
    );
}

#[test]
fn index_can_be_disabled_or_renamed() {
    each_lookup(
        |c| c.index = None,
        |f| {
            assert_not_found(f.get("/dir/", &[]), "index disabled");
            assert!(matches!(f.get("/dir", &[]), Outcome::Redirect { .. }));
            let f = fixture_with(|c| c.index = Some("page.css".into()));
            assert_eq!(ok(f.get("/dir/", &[])).body(), b"p{}");
        },
    );
}

#[test]
fn mount_open_validates() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["", ".", "..", "a/b", "a\0b"] {
        let mut c = StaticConfig::new(dir.path());
        c.index = Some(bad.into());
        let e = Mount::open(c).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
    }
    assert!(Mount::open(StaticConfig::new(dir.path().join("missing"))).is_err());
    let file = dir.path().join("f");
    fs::write(&file, b"x").unwrap();
    assert!(Mount::open(StaticConfig::new(&file)).is_err());
    assert!(Mount::open(StaticConfig::new(&file).portable_lookup(true)).is_err());
    let c = StaticConfig::new(dir.path());
    assert!(!c.portable_lookup);
    assert!(
        StaticConfig::new(dir.path())
            .portable_lookup(true)
            .portable_lookup
    );
    assert_eq!(c.index.as_deref(), Some("index.html"));
    assert!(c.precompressed && c.cache_control.is_none());
}

#[test]
fn root_fd_survives_rename() {
    each_lookup(
        |_| {},
        |f| {
            fs::rename(f.base.join("root"), f.base.join("moved")).unwrap();
            assert_eq!(ok(f.get("/hello.txt", &[])).body(), HELLO);
            assert_eq!(ok(f.get("/deep/a/b/up3", &[])).body(), HELLO);
        },
    );
}

// ------------------------------------------------------ path safety

#[test]
fn traversal_forms_never_escape() {
    each_lookup(
        |_| {},
        |f| {
            for rel in [
                "/../secret.txt",
                "../secret.txt",
                "/..",
                "/../",
                "/../root/hello.txt",
                "/%2e%2e/secret.txt",
                "/%2E%2E/secret.txt",
                "/.%2e/secret.txt",
                "/..%2fsecret.txt",
                "/..%2Fsecret.txt",
                "/%2e%2e%2fsecret.txt",
                "/dir/../../secret.txt",
                "/dir/%2e%2e/%2e%2e/secret.txt",
                "/..\\secret.txt",
                "/..%5csecret.txt",
                "/%00",
                "/hello.txt%00.png",
                "//etc/passwd",
                "/%2fetc%2fpasswd",
                "/%2Fetc/passwd",
                "/%252e%252e/secret.txt",
            ] {
                assert_not_found(f.get(rel, &[]), rel);
            }
            // An absolute-looking rel is root-relative: root/etc/passwd, absent.
            assert_not_found(f.get("/etc/passwd", &[]), "absolute");
        },
    );
}

#[test]
fn symlinks_inside_root_are_followed() {
    each_lookup(
        |_| {},
        |f| {
            assert_eq!(ok(f.get("/link_in", &[])).body(), HELLO);
            assert_eq!(ok(f.get("/link_dir_in/page.css", &[])).body(), b"p{}");
            assert_eq!(ok(f.get("/link_in_dotdot", &[])).body(), HELLO);
        },
    );
}

#[test]
fn symlinks_leaving_root_are_refused() {
    each_lookup(
        |_| {},
        |f| {
            for rel in [
                "/link_out",
                "/link_out_abs",
                "/link_parent/secret.txt",
                "/link_parent/",
                "/link_parent",
                "/link_dir_out/inner.txt",
                "/link_dir_out/",
                "/passwd",
                "/magic",
                "/dir/escape.txt",
                // Goes out of the root and back in: RESOLVE_BENEATH still refuses.
                "/link_in_via_parent",
            ] {
                assert_not_found(f.get(rel, &[]), rel);
            }
        },
    );
}

#[test]
fn symlinks_climbing_with_dotdot_inside_the_root_resolve_like_the_kernel() {
    // The portable lookup resolves `..` and links itself; the expectations
    // are what openat2(RESOLVE_BENEATH) answers.
    each_lookup(
        |_| {},
        |f| {
            for (rel, body) in [
                ("/dir/up", HELLO),
                ("/deep/a/b/up3", HELLO),
                ("/deep/a/zigzag", b"leaf"),
                ("/deep/a/b_link/leaf.txt", b"leaf"),
                ("/deep/a/b_link/up3", HELLO),
                ("/deep/a/via_link", HELLO),
                ("/chain1", HELLO),
                ("/self/hello.txt", HELLO),
                ("/self/self/dir/page.css", b"p{}"),
                ("/updir/hello.txt", HELLO),
                ("/dirslash/page.css", b"p{}"),
                ("/self/", b"<h1>root</h1>"),
                ("/updir/", b"<h1>root</h1>"),
            ] {
                assert_eq!(ok(f.get(rel, &[])).body(), body, "{rel}");
            }
            for rel in ["/self", "/updir", "/dirslash"] {
                assert!(matches!(f.get(rel, &[]), Outcome::Redirect { .. }), "{rel}");
            }
            for rel in [
                "/deep/a/b/up4",
                "/dir/via_parent_link",
                "/out_via_dotdot",
                "/out_via_dotdot/secret.txt",
                "/out_via_dotdot/root/hello.txt",
                "/fileslash",
                "/fileslash/x",
            ] {
                assert_not_found(f.get(rel, &[]), rel);
            }
        },
    );
}

#[test]
fn at_most_forty_symlinks_per_lookup() {
    each_lookup(
        |_| {},
        |f| {
            assert_eq!(ok(f.get("/hop0", &[])).body(), HELLO, "40 links");
            assert_not_found(f.get("/hop_too_many", &[]), "41 links");
        },
    );
}

#[test]
fn fifo_socket_and_devices_are_not_served_and_never_block() {
    let (tx, rx) = mpsc::channel();
    // The mount is not Send (its cache is per worker): build it in the
    // thread that may block.
    std::thread::spawn(move || {
        let mut r = Vec::new();
        each_lookup(
            |_| {},
            |f| {
                let root = f.base.join("root");
                // A character device inside the root, if this file system allows it.
                try_mknod_null(&root.join("null"));
                r.extend(
                    ["/fifo", "/sock", "/null"]
                        .iter()
                        .map(|rel| matches!(f.get(rel, &[]), Outcome::NotFound)),
                );
            },
        );
        tx.send(r).unwrap();
    });
    let r = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("serving a FIFO blocked");
    assert_eq!(r, [true; 6]);
}

// ------------------------------------------------------ conditionals

#[test]
fn if_none_match_gives_304_with_validators() {
    let f = fixture_with(|c| c.cache_control = Some(HeaderValue::from_static("no-cache")));
    let etag = ok(f.get("/hello.txt", &[]))
        .header(ETAG)
        .unwrap()
        .to_owned();
    for inm in [
        etag.clone(),
        format!("W/{etag}"),
        "*".into(),
        format!("\"x\", {etag}"),
    ] {
        let r = respond(f.get("/hello.txt", &[(IF_NONE_MATCH, &inm)]));
        assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{inm}");
        assert!(r.body.is_none());
        assert_eq!(r.header(ETAG), Some(etag.as_str()));
        assert_eq!(r.header(LAST_MODIFIED), Some(MTIME_HTTP));
        assert_eq!(r.header(CACHE_CONTROL), Some("no-cache"));
        assert_eq!(r.header(CONTENT_TYPE), None);
    }
    ok(f.get("/hello.txt", &[(IF_NONE_MATCH, "\"other\"")]));
}

#[test]
fn if_modified_since_gives_304() {
    let f = fixture();
    let r = respond(f.get("/hello.txt", &[(IF_MODIFIED_SINCE, MTIME_HTTP)]));
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.header(ETAG).is_some());
    let later = "Wed, 15 Nov 2023 00:00:00 GMT";
    assert_eq!(
        respond(f.get("/hello.txt", &[(IF_MODIFIED_SINCE, later)])).status,
        StatusCode::NOT_MODIFIED
    );
    ok(f.get(
        "/hello.txt",
        &[(IF_MODIFIED_SINCE, "Tue, 14 Nov 2023 22:13:19 GMT")],
    ));
    ok(f.get("/hello.txt", &[(IF_MODIFIED_SINCE, "not a date")]));
    // Sub-second mtime still compares at second granularity.
    set_mtime(
        &f.base.join("root/hello.txt"),
        UNIX_EPOCH + Duration::new(MTIME, 999_999_999),
    );
    assert_eq!(
        respond(f.get("/hello.txt", &[(IF_MODIFIED_SINCE, MTIME_HTTP)])).status,
        StatusCode::NOT_MODIFIED
    );
}

#[test]
fn a_future_modification_time_is_sent_as_now_and_never_gives_a_stale_304() {
    // A file from an archive or a clock-skewed machine, dated 2030.
    let f = fixture();
    let path = f.base.join("root/hello.txt");
    let future = UNIX_EPOCH + Duration::from_secs(1_893_456_000);
    set_mtime(&path, future);
    let before = SystemTime::now();
    let r = ok(f.get("/hello.txt", &[]));
    let shown = httpdate::parse_http_date(r.header(LAST_MODIFIED).unwrap()).unwrap();
    // Not later than now (RFC 9110 §8.8.2.1), in whole seconds.
    assert!(shown <= SystemTime::now(), "{shown:?}");
    assert!(shown + Duration::from_secs(1) >= before, "{shown:?}");
    // Revalidating with that date: the file's own time is later, so the
    // client gets the file again, not a 304 (it may have changed since).
    let ims = r.header(LAST_MODIFIED).unwrap().to_string();
    ok(f.get("/hello.txt", &[(IF_MODIFIED_SINCE, &ims)]));
}

#[test]
fn if_none_match_overrides_if_modified_since() {
    let f = fixture();
    let r = ok(f.get(
        "/hello.txt",
        &[
            (IF_NONE_MATCH, "\"stale\""),
            (IF_MODIFIED_SINCE, MTIME_HTTP),
        ],
    ));
    assert_eq!(r.body(), HELLO);
}

#[test]
fn if_match_failure_is_412() {
    let f = fixture();
    let r = respond(f.get("/hello.txt", &[(IF_MATCH, "\"nope\"")]));
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert!(r.body.is_none());
    ok(f.get("/hello.txt", &[(IF_MATCH, "*")]));
}

#[test]
fn out_of_range_mtime_has_no_last_modified() {
    let f = fixture();
    let path = f.base.join("root/hello.txt");
    set_mtime(&path, UNIX_EPOCH - Duration::from_secs(86_400));
    let r = ok(f.get("/hello.txt", &[(IF_MODIFIED_SINCE, MTIME_HTTP)]));
    assert_eq!(r.header(LAST_MODIFIED), None);
    assert!(
        r.header(ETAG).unwrap().contains("-ffff"),
        "negative mtime in ETag"
    );
    // Beyond year 9999 (most file systems clamp earlier, so test the helper).
    assert_eq!(last_modified_secs(253_402_300_799), Some(253_402_300_799));
    assert_eq!(last_modified_secs(253_402_300_800), None);
    assert_eq!(last_modified_secs(-1), None);
    assert_eq!(last_modified_secs(0), Some(0));
}

// ------------------------------------------------------ ranges

#[test]
fn single_ranges_give_206() {
    let f = fixture();
    let size = HELLO.len();
    for (range, start, end) in [
        ("bytes=0-4", 0, 4),
        ("bytes=6-", 6, size - 1),
        ("bytes=-6", size - 6, size - 1),
        ("bytes=3-3", 3, 3),
        ("bytes=2-1000", 2, size - 1),
        ("bytes=-1000", 0, size - 1),
    ] {
        let r = respond(f.get("/hello.txt", &[(RANGE, range)]));
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(r.body(), &HELLO[start..=end], "{range}");
        let b = r.body.as_ref().unwrap();
        assert_eq!((b.offset, b.len), (start as u64, (end - start + 1) as u64));
        let cr = format!("bytes {start}-{end}/{size}");
        assert_eq!(r.header(CONTENT_RANGE), Some(cr.as_str()));
        assert_eq!(r.header(CONTENT_TYPE), Some("text/plain; charset=utf-8"));
        assert!(r.header(ETAG).is_some());
    }
}

#[test]
fn unsatisfiable_range_gives_416() {
    let f = fixture();
    for range in ["bytes=12-", "bytes=12-20", "bytes=100-200", "bytes=-0"] {
        let r = respond(f.get("/hello.txt", &[(RANGE, range)]));
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(r.header(CONTENT_RANGE), Some("bytes */12"));
        assert!(r.body.is_none());
    }
}

#[test]
fn invalid_or_multiple_ranges_give_200() {
    let f = fixture();
    for range in [
        "bytes=5-2",
        "bytes=abc",
        "lines=1-2",
        "bytes=0-1,3-4",
        "bytes=",
    ] {
        let r = ok(f.get("/hello.txt", &[(RANGE, range)]));
        assert_eq!(r.body(), HELLO, "{range}");
        assert_eq!(r.header(CONTENT_RANGE), None);
    }
    // Two Range fields: ignored as well.
    let r = ok(f.get("/hello.txt", &[(RANGE, "bytes=0-1"), (RANGE, "bytes=2-3")]));
    assert_eq!(r.body(), HELLO);
}

#[test]
fn empty_file_ranges() {
    let f = fixture();
    let r = respond(f.get("/empty.txt", &[(RANGE, "bytes=0-")]));
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header(CONTENT_RANGE), Some("bytes */0"));
    let r = ok(f.get("/empty.txt", &[(RANGE, "bytes=-5")]));
    assert_eq!(r.body.as_ref().unwrap().len, 0);
    let r = ok(f.get("/empty.txt", &[]));
    assert_eq!(r.body(), b"");
}

#[test]
fn if_range() {
    let f = fixture();
    let etag = ok(f.get("/hello.txt", &[]))
        .header(ETAG)
        .unwrap()
        .to_owned();
    let partial = |if_range: &str| {
        let r = respond(f.get("/hello.txt", &[(RANGE, "bytes=0-4"), (IF_RANGE, if_range)]));
        match r.status {
            StatusCode::PARTIAL_CONTENT => true,
            StatusCode::OK => {
                assert_eq!(r.body(), HELLO);
                false
            }
            s => panic!("unexpected {s}"),
        }
    };
    assert!(partial(&etag));
    assert!(partial(MTIME_HTTP));
    assert!(!partial(&format!("W/{etag}")), "weak never matches");
    assert!(!partial("\"stale\""));
    assert!(
        !partial("Tue, 14 Nov 2023 22:13:21 GMT"),
        "date must be exact"
    );
    assert!(!partial("garbage"));
    // A failed If-Range also bypasses the 416 check.
    let r = ok(f.get(
        "/hello.txt",
        &[(RANGE, "bytes=100-"), (IF_RANGE, "\"stale\"")],
    ));
    assert_eq!(r.body(), HELLO);
}

#[test]
fn not_modified_takes_precedence_over_range() {
    let f = fixture();
    let etag = ok(f.get("/hello.txt", &[]))
        .header(ETAG)
        .unwrap()
        .to_owned();
    let r = respond(f.get(
        "/hello.txt",
        &[(RANGE, "bytes=0-1"), (IF_NONE_MATCH, &etag)],
    ));
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
}

// ------------------------------------------------------ precompressed

#[test]
fn precompressed_brotli_preferred() {
    let f = fixture();
    let plain = ok(f.get("/style.css", &[]));
    let r = ok(f.get("/style.css", &[(ACCEPT_ENCODING, "gzip, deflate, br")]));
    assert_eq!(r.body(), b"BROTLI");
    assert_eq!(r.header(CONTENT_ENCODING), Some("br"));
    assert_eq!(r.header(CONTENT_TYPE), Some("text/css; charset=utf-8"));
    assert_eq!(r.header(VARY), Some("Accept-Encoding"));
    assert_ne!(r.header(ETAG), plain.header(ETAG));
    assert!(r.header(ETAG).unwrap().ends_with("-br\""));
}

#[test]
fn precompressed_gzip_when_br_not_accepted() {
    let f = fixture();
    for ae in [
        "gzip",
        "gzip, br;q=0",
        "x-gzip",
        "br;q=0.1, gzip;q=0.5",
        "*;q=0, gzip",
    ] {
        let r = ok(f.get("/style.css", &[(ACCEPT_ENCODING, ae)]));
        assert_eq!(r.body(), b"GZIP!!", "{ae}");
        assert_eq!(r.header(CONTENT_ENCODING), Some("gzip"));
        assert_eq!(r.header(CONTENT_TYPE), Some("text/css; charset=utf-8"));
        assert_eq!(r.header(VARY), Some("Accept-Encoding"));
        assert!(r.header(ETAG).unwrap().ends_with("-gz\""));
    }
    let br = ok(f.get("/style.css", &[(ACCEPT_ENCODING, "br")]));
    let gz = ok(f.get("/style.css", &[(ACCEPT_ENCODING, "gzip")]));
    assert_ne!(br.header(ETAG), gz.header(ETAG));
}

#[test]
fn precompressed_star_and_refusals() {
    let f = fixture();
    let r = ok(f.get("/style.css", &[(ACCEPT_ENCODING, "*")]));
    assert_eq!(r.header(CONTENT_ENCODING), Some("br"));
    for ae in ["identity", "*;q=0", "br;q=0, gzip;q=0", "deflate", ""] {
        let r = ok(f.get("/style.css", &[(ACCEPT_ENCODING, ae)]));
        assert_eq!(r.body(), b"body { color: red }\n", "{ae:?}");
        assert_eq!(r.header(CONTENT_ENCODING), None);
        assert_eq!(r.header(VARY), Some("Accept-Encoding"), "{ae:?}");
    }
    // No Accept-Encoding at all: identity, still Vary.
    let r = ok(f.get("/style.css", &[]));
    assert_eq!(r.header(CONTENT_ENCODING), None);
    assert_eq!(r.header(VARY), Some("Accept-Encoding"));
}

#[test]
fn vary_when_only_an_unaccepted_sibling_exists() {
    let f = fixture();
    // only.js has just a .gz sibling; a br-only client gets identity + Vary.
    let r = ok(f.get("/only.js", &[(ACCEPT_ENCODING, "br")]));
    assert_eq!(r.body(), b"plain js");
    assert_eq!(r.header(CONTENT_ENCODING), None);
    assert_eq!(r.header(VARY), Some("Accept-Encoding"));
    let r = ok(f.get("/only.js", &[(ACCEPT_ENCODING, "br, gzip")]));
    assert_eq!(r.body(), b"gz js");
    assert_eq!(
        r.header(CONTENT_TYPE),
        Some("text/javascript; charset=utf-8")
    );
}

#[test]
fn vary_even_without_siblings_while_precompressed_lookups_are_on() {
    let f = fixture();
    let r = ok(f.get("/hello.txt", &[(ACCEPT_ENCODING, "br, gzip")]));
    assert_eq!(r.header(VARY), Some("Accept-Encoding"));
    assert_eq!(r.header(CONTENT_ENCODING), None);
}

#[test]
fn sibling_that_is_not_a_regular_file_is_ignored() {
    each_lookup(
        |_| {},
        |f| {
            let r = ok(f.get("/brdir.txt", &[(ACCEPT_ENCODING, "br")]));
            assert_eq!(r.body(), b"plain");
            assert_eq!(r.header(CONTENT_ENCODING), None);
        },
    );
}

#[test]
fn precompressed_index_file() {
    each_lookup(
        |_| {},
        |f| {
            let r = ok(f.get("/gzdir/", &[(ACCEPT_ENCODING, "gzip")]));
            assert_eq!(r.body(), b"GZ INDEX");
            assert_eq!(r.header(CONTENT_TYPE), Some("text/html; charset=utf-8"));
            assert_eq!(r.header(CONTENT_ENCODING), Some("gzip"));
        },
    );
}

#[test]
fn precompressed_can_be_disabled() {
    let f = fixture_with(|c| c.precompressed = false);
    let r = ok(f.get("/style.css", &[(ACCEPT_ENCODING, "br, gzip")]));
    assert_eq!(r.body(), b"body { color: red }\n");
    assert_eq!(r.header(CONTENT_ENCODING), None);
    assert_eq!(r.header(VARY), None);
}

#[test]
fn precompressed_variant_has_own_conditionals_and_ranges() {
    let f = fixture();
    let ae = (ACCEPT_ENCODING, "br");
    let br = ok(f.get("/style.css", std::slice::from_ref(&ae)));
    let br_etag = br.header(ETAG).unwrap().to_owned();
    let r = respond(f.get("/style.css", &[ae.clone(), (IF_NONE_MATCH, &br_etag)]));
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert_eq!(r.header(VARY), Some("Accept-Encoding"));
    // The brotli ETag does not validate the identity representation.
    ok(f.get("/style.css", &[(IF_NONE_MATCH, &br_etag)]));
    // Ranges address the compressed bytes.
    let r = respond(f.get("/style.css", &[ae, (RANGE, "bytes=0-1")]));
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.body(), b"BR");
    assert_eq!(r.header(CONTENT_RANGE), Some("bytes 0-1/6"));
    assert_eq!(r.header(CONTENT_ENCODING), Some("br"));
}

#[test]
fn compressed_sibling_requested_directly() {
    let f = fixture();
    let r = ok(f.get("/style.css.gz", &[]));
    assert_eq!(r.body(), b"GZIP!!");
    assert_eq!(r.header(CONTENT_ENCODING), None);
    assert_eq!(r.header(CONTENT_TYPE), Some("application/gzip"));
}

#[test]
fn open_file_cache_serves_the_cached_file_until_it_expires() {
    let f = fixture_with(|c| c.open_file_cache = Some(std::time::Duration::from_millis(200)));
    assert_eq!(ok(f.get("/hello.txt", &[])).body(), HELLO);
    // Replace the file: within the TTL the cached open file still answers
    // (its inode is the old one), afterwards the new content.
    let path = f.base.join("root/hello.txt");
    fs::remove_file(&path).unwrap();
    write(&path, b"new content");
    assert_eq!(ok(f.get("/hello.txt", &[])).body(), HELLO);
    std::thread::sleep(std::time::Duration::from_millis(250));
    assert_eq!(ok(f.get("/hello.txt", &[])).body(), b"new content");
    // Unsafe paths are still refused (they never reach the cache).
    assert!(matches!(f.get("/../secret.txt", &[]), Outcome::NotFound));
    assert!(matches!(f.get("/link_out", &[]), Outcome::NotFound));
}

/// An open-file cache whose entries never expire (`Duration::MAX`)
/// caches and serves; its sweep time once overflowed an `Instant`.
#[test]
fn open_file_cache_without_expiry() {
    let f = fixture_with(|c| c.open_file_cache = Some(Duration::MAX));
    assert_eq!(ok(f.get("/hello.txt", &[])).body(), HELLO);
    assert_eq!(ok(f.get("/hello.txt", &[])).body(), HELLO);
    cache::tick(std::time::Instant::now());
    assert_eq!(f.mount.cache.as_ref().expect("a cache").len(), 1);
}

/// Five distinct files of the fixture.
const FIVE: [&str; 5] = [
    "/hello.txt",
    "/app.js",
    "/data.json",
    "/logo.svg",
    "/img.png",
];

fn cached(f: &Fixture) -> usize {
    f.mount.cache.as_ref().expect("a cache").len()
}

/// An idle server used to keep its cached descriptors until some later
/// static lookup swept them. The event loop's tick closes them once their
/// time is over, with no lookup at all.
#[test]
fn open_file_cache_entries_are_closed_by_time_alone() {
    let ttl = Duration::from_millis(100);
    let f = fixture_with(|c| c.open_file_cache = Some(ttl));
    let start = std::time::Instant::now();
    for path in FIVE {
        ok(f.get(path, &[]));
    }
    assert_eq!(cached(&f), 5);
    // Nothing is due yet: the tick leaves them.
    cache::tick(start);
    assert_eq!(cached(&f), 5);
    std::thread::sleep(ttl + Duration::from_millis(20));
    cache::tick(std::time::Instant::now());
    assert_eq!(cached(&f), 0);
    // Later files are cached (and swept) again.
    ok(f.get("/hello.txt", &[]));
    assert_eq!(cached(&f), 1);
    cache::tick(std::time::Instant::now() + ttl);
    assert_eq!(cached(&f), 0);
}

/// The caches of a process share what the open-file limit leaves beside
/// the connections: a mount keeps no more files than its share, and a
/// share of nothing caches nothing (every file is still served).
#[test]
fn open_file_caches_keep_to_their_share_of_the_budget() {
    let ttl = Some(Duration::from_secs(60));
    let a = fixture_with(|c| c.open_file_cache = ttl);
    let b = fixture_with(|c| c.open_file_cache = ttl);
    let uncached = fixture();
    assert_eq!(cache::wanted(), 2 * cache::OPEN_CACHE_MAX);
    assert_eq!(cache::fit(Some(7)), 6);
    for f in [&a, &b] {
        assert_eq!(f.mount.cache.as_ref().unwrap().capacity(), 3);
        for path in FIVE {
            assert_eq!(
                ok(f.get(path, &[])).body(),
                fs::read(f.base.join("root").join(&path[1..])).unwrap()
            );
            assert!(cached(f) <= 3, "{}", cached(f));
        }
    }
    assert!(matches!(
        uncached.get("/hello.txt", &[]),
        Outcome::Respond { .. }
    ));
    // A cache over its new share lets go of its files.
    assert_eq!(cache::fit(Some(1)), 0);
    assert_eq!((cached(&a), cached(&b)), (0, 0));
    for path in FIVE {
        ok(a.get(path, &[]));
    }
    assert_eq!(cached(&a), 0);
    // Plenty of room (or no limit): the per-mount maximum.
    assert_eq!(cache::fit(Some(1 << 20)), 2 * cache::OPEN_CACHE_MAX);
    assert_eq!(cache::fit(None), 2 * cache::OPEN_CACHE_MAX);
    drop(b);
    assert_eq!(cache::wanted(), cache::OPEN_CACHE_MAX);
}

/// Out of descriptors (`EMFILE`/`ENFILE`), the caches give theirs back
/// and the open is tried again, instead of a 503 while the cache sits on
/// the table. A file a response is still sending stays open, and is not
/// counted as closed. With nothing to give back, the error stands.
#[test]
fn out_of_descriptors_the_open_file_cache_gives_them_back() {
    let f = fixture_with(|c| c.open_file_cache = Some(Duration::from_secs(60)));
    let Some(FileBody { file: sending, .. }) = ok(f.get("/hello.txt", &[])).body else {
        panic!("a body");
    };
    for path in &FIVE[1..] {
        ok(f.get(path, &[]));
    }
    assert_eq!(cached(&f), 5);
    let mut calls = 0;
    let opened = cache::open_or_release(|| {
        calls += 1;
        if calls == 1 {
            Err(Errno::MFILE)
        } else {
            Ok(calls)
        }
    });
    assert_eq!(opened, Ok(2));
    assert_eq!(cached(&f), 0);
    // The response's file is still open and readable.
    let mut buf = [0; HELLO.len()];
    sending.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, HELLO);
    // Nothing cached: no retry, the error is the caller's (a 503).
    let mut calls = 0;
    let opened: Result<(), Errno> = cache::open_or_release(|| {
        calls += 1;
        Err(Errno::NFILE)
    });
    assert_eq!((opened, calls), (Err(Errno::NFILE), 1));
    // Other errors are not about descriptors: no release.
    ok(f.get("/hello.txt", &[]));
    let opened: Result<(), Errno> = cache::open_or_release(|| Err(Errno::NOENT));
    assert_eq!((opened, cached(&f)), (Err(Errno::NOENT), 1));
    // Only files nobody else holds count as closed.
    let Some(FileBody { file: held, .. }) = ok(f.get("/app.js", &[])).body else {
        panic!("a body");
    };
    assert_eq!(cached(&f), 2);
    assert_eq!(cache::release_all(), 1);
    drop(held);
}
