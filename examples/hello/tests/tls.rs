//! HTTPS and WSS end to end: hello with `--tls-bind` as a real server
//! process, driven by real clients (rustls in this process, `curl` and
//! `openssl s_client`), certificates made at test time.
#![cfg(all(feature = "tls", target_os = "linux"))]

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testkit::procs::{ServerTree, Signal};
use testkit::tls::{client_config, make_cert, rustls, TestCert, TlsClient};

const HELLO: &str = env!("CARGO_BIN_EXE_hello");
/// Bound of every wait for a state.
const T: Duration = Duration::from_secs(20);
/// Bound of waits for a number of HTTPS requests (full handshakes of a
/// debug build on a loaded machine).
const SLOW: Duration = Duration::from_secs(90);

/// hello with a plain and an HTTPS address; returns (plain, https).
fn start(
    dir: &Path,
    cert: &TestCert,
    workers: usize,
    extra: &[&str],
) -> (ServerTree, SocketAddr, SocketAddr) {
    let n = workers.to_string();
    let mut args = vec![
        "--bind",
        "127.0.0.1:0",
        "--workers",
        &n,
        "--tls-bind",
        "127.0.0.1:0",
        "--tls-cert",
        cert.cert.to_str().unwrap(),
        "--tls-key",
        cert.key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let _ = dir;
    let s = ServerTree::start(HELLO, &args);
    assert!(
        testkit::wait_until(T, || s.addrs().len() == 2),
        "two addresses: {:?}",
        s.addrs()
    );
    let addrs = s.addrs();
    if workers > 1 {
        s.wait_ready(workers, T);
    }
    (s, addrs[0], addrs[1])
}

fn cert(dir: &Path, stem: &str) -> TestCert {
    make_cert(dir, stem, &["localhost", "127.0.0.1"])
}

#[test]
fn every_kind_of_response_works_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let c = cert(dir.path(), "cert");
    let files = dir.path().join("static");
    std::fs::create_dir(&files).unwrap();
    // Larger than any one write or record: read and encrypted in pieces.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(files.join("big.bin"), &big).unwrap();
    std::fs::write(files.join("small.txt"), "small file\n").unwrap();
    let (s, plain, https) = start(dir.path(), &c, 1, &["--static", files.to_str().unwrap()]);
    let config = client_config(&[&c.der]);

    // Keep-alive: several requests on one connection.
    let mut client = TlsClient::connect(https, "localhost", &config);
    for _ in 0..3 {
        let res = client.get("/plaintext");
        assert_eq!(res.status, 200);
        assert_eq!(res.text(), "Hello, World!");
    }
    assert_eq!(client.get("/json").text(), r#"{"message":"Hello, World!"}"#);
    // ALPN chose http/1.1.
    assert_eq!(client.stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));

    // Pipelining: three requests in one write, three answers in order.
    client.send(b"GET /hello/a HTTP/1.1\r\nHost: t\r\n\r\nGET /hello/b HTTP/1.1\r\nHost: t\r\n\r\nGET /hello/c HTTP/1.1\r\nHost: t\r\n\r\n");
    for name in ["a", "b", "c"] {
        assert_eq!(client.read_response().text(), format!("Hello, {name}!"));
    }

    // A chunked, streamed body.
    let res = client.get("/stream?n=200&size=5000");
    assert_eq!(res.header("transfer-encoding"), Some("chunked"));
    assert_eq!(res.body.len(), 200 * 5000);

    // A large request body echoed back.
    let body: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
    client.send(
        format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    client.send(&body);
    let res = client.read_response();
    assert_eq!(res.status, 200);
    assert!(res.body == body, "echoed body differs");

    // Static files: small (read behind the head) and large (in pieces).
    assert_eq!(client.get("/static/small.txt").text(), "small file\n");
    let res = client.get("/static/big.bin");
    assert_eq!(res.status, 200);
    assert!(res.body == big, "static file differs over TLS");
    // The connection is still usable after all that.
    assert_eq!(client.get("/plaintext").status, 200);

    // Requests know they came over TLS; the plain address still serves.
    assert_eq!(testkit::get(plain, "/plaintext").text(), "Hello, World!");

    // curl, a real client: keep-alive over two URLs.
    let port = https.port();
    let out = Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            c.cert.to_str().unwrap(),
            "--resolve",
            &format!("localhost:{port}:127.0.0.1"),
            &format!("https://localhost:{port}/plaintext"),
            &format!("https://localhost:{port}/hello/curl"),
        ])
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Hello, World!Hello, curl!"
    );
    drop(s);
}

#[test]
fn plain_http_to_the_tls_port_gets_400_and_a_close() {
    let dir = tempfile::tempdir().unwrap();
    let c = cert(dir.path(), "cert");
    let (s, _plain, https) = start(dir.path(), &c, 1, &[]);
    let mut client = testkit::Client::connect(https);
    client.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
    let res = client.read_response();
    assert_eq!(res.status, 400);
    assert!(res.text().contains("HTTPS"), "{}", res.text());
    assert!(client.is_closed());
    // The worker serves on.
    let config = client_config(&[&c.der]);
    assert_eq!(
        testkit::tls::get(https, "localhost", &config, "/plaintext").status,
        200
    );
    drop(s);
}

#[test]
fn redirect_https_sends_plain_requests_to_the_https_listener() {
    let dir = tempfile::tempdir().unwrap();
    let c = cert(dir.path(), "cert");
    // The redirect names the HTTPS port, so it needs a fixed one: take a
    // free port from the system first.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tls_bind = format!("127.0.0.1:{port}");
    let s = ServerTree::start(
        HELLO,
        &[
            "--bind",
            "127.0.0.1:0",
            "--tls-bind",
            &tls_bind,
            "--tls-cert",
            c.cert.to_str().unwrap(),
            "--tls-key",
            c.key.to_str().unwrap(),
            "--redirect-https",
        ],
    );
    assert!(testkit::wait_until(T, || s.addrs().len() == 2));
    let (plain, https) = (s.addrs()[0], s.addrs()[1]);
    let mut client = testkit::Client::connect(plain);
    client.send(b"GET /hello/x?a=1&b=2 HTTP/1.1\r\nHost: example.test:8080\r\n\r\n");
    let res = client.read_response();
    assert_eq!(res.status, 308);
    assert_eq!(
        res.header("location"),
        Some(format!("https://example.test:{port}/hello/x?a=1&b=2").as_str())
    );
    // Unknown paths are redirected too; the HTTPS listener serves.
    client.send(b"POST /nowhere HTTP/1.1\r\nHost: [::1]:80\r\nContent-Length: 0\r\n\r\n");
    let res = client.read_response();
    assert_eq!(res.status, 308);
    assert_eq!(
        res.header("location"),
        Some(format!("https://[::1]:{port}/nowhere").as_str())
    );
    // An absolute-form target names the host, whatever `Host` says (RFC
    // 9112 §3.2.2): a proxy that forwards it as it came cannot be made to
    // redirect (and perhaps cache a redirect) to another host.
    client.send(b"GET http://good.test/x?y HTTP/1.1\r\nHost: evil.test\r\n\r\n");
    let res = client.read_response();
    assert_eq!(res.status, 308);
    assert_eq!(
        res.header("location"),
        Some(format!("https://good.test:{port}/x?y").as_str())
    );
    // An asterisk-form target has no URL: the root stands for it.
    client.send(b"OPTIONS * HTTP/1.1\r\nHost: example.test\r\n\r\n");
    let res = client.read_response();
    assert_eq!(res.status, 308);
    assert_eq!(
        res.header("location"),
        Some(format!("https://example.test:{port}/").as_str())
    );
    let config = client_config(&[&c.der]);
    assert_eq!(
        testkit::tls::get(https, "localhost", &config, "/hello/y").text(),
        "Hello, y!"
    );
    // The log names the HTTPS listener as such.
    assert!(
        s.stderr().contains(&format!("https://127.0.0.1:{port}")),
        "{}",
        s.stderr()
    );
    drop(s);
}

/// A WSS connection: tungstenite over a rustls client stream.
type Wss = tungstenite::WebSocket<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>;

fn wss(addr: SocketAddr, config: &Arc<rustls::ClientConfig>, path: &str) -> Wss {
    let client = TlsClient::connect(addr, "localhost", config);
    let url = format!("wss://localhost:{}{path}", addr.port());
    let (ws, res) = tungstenite::client(url, client.stream).expect("wss handshake");
    assert_eq!(res.status(), 101);
    ws
}

fn next_text(ws: &mut Wss) -> String {
    loop {
        match ws.read().expect("wss read") {
            tungstenite::Message::Text(t) => return t.to_string(),
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn wss_echo_and_pubsub_across_workers() {
    let dir = tempfile::tempdir().unwrap();
    let c = cert(dir.path(), "cert");
    let (s, _plain, https) = start(dir.path(), &c, 2, &[]);
    let config = client_config(&[&c.der]);
    let mut echo = wss(https, &config, "/ws/echo");
    echo.send(tungstenite::Message::text("hello over wss"))
        .unwrap();
    assert_eq!(next_text(&mut echo), "hello over wss");
    let big = "y".repeat(200_000);
    echo.send(tungstenite::Message::text(big.clone())).unwrap();
    assert_eq!(next_text(&mut echo), big);
    echo.send(tungstenite::Message::binary(vec![1u8, 2, 3]))
        .unwrap();
    loop {
        match echo.read().unwrap() {
            tungstenite::Message::Binary(b) => {
                assert_eq!(&b[..], &[1, 2, 3]);
                break;
            }
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
            other => panic!("{other:?}"),
        }
    }

    // Chat members on both workers: a message reaches every member.
    let mut members = Vec::new();
    let mut pids = BTreeSet::new();
    for _ in 0..40 {
        let mut ws = wss(https, &config, "/ws/chat?room=tls");
        let first = next_text(&mut ws);
        let pid: i32 = first.strip_prefix("pid ").unwrap().parse().unwrap();
        let new = pids.insert(pid);
        if new || members.len() < 2 {
            members.push(ws);
        }
        if pids.len() == 2 && members.len() >= 2 {
            break;
        }
    }
    assert_eq!(pids.len(), 2, "members on both workers");
    members[0]
        .send(tungstenite::Message::text("to everyone"))
        .unwrap();
    for m in members.iter_mut() {
        assert_eq!(next_text(m), "to everyone");
    }
    // A clean close.
    echo.close(None).unwrap();
    while echo.read().is_ok() {}
    drop(s);
}

#[test]
fn sessions_resume_on_any_worker_even_after_a_key_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let c = cert(dir.path(), "cert");
    // Keys rotate every 2 s here: a session made before a rotation still
    // resumes after it, on another worker.
    let (s, _plain, https) = start(dir.path(), &c, 4, &["--tls-ticket-rotation-ms", "2000"]);
    let mut resumed_elsewhere = 0;
    let mut rounds = 0;
    while resumed_elsewhere < 40 {
        rounds += 1;
        assert!(
            rounds < 400,
            "only {resumed_elsewhere} resumptions elsewhere"
        );
        // A fresh client (no ticket yet): a full handshake on some worker.
        let config = client_config(&[&c.der]);
        let mut first = TlsClient::connect(https, "localhost", &config);
        assert!(!first.resumed());
        let pid_a = first.get("/pid").text();
        drop(first);
        // Connect again until the kernel hands the connection to another
        // worker; every such connection must have resumed.
        for _ in 0..20 {
            let mut again = TlsClient::connect(https, "localhost", &config);
            let pid_b = again.get("/pid").text();
            if pid_b != pid_a {
                assert!(
                    again.resumed(),
                    "session made on {pid_a} not resumed on {pid_b} (after {resumed_elsewhere})"
                );
                resumed_elsewhere += 1;
                break;
            }
        }
        if resumed_elsewhere == 20 {
            // Half way: let the master rotate the key at least once.
            s.wait_log("new session-ticket key", T);
        }
    }
    // A real client: openssl saves the session and resumes it.
    let sess = dir.path().join("session.pem");
    let port = https.port().to_string();
    let run = |extra: &[&str]| {
        let mut child = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-servername",
                "localhost",
                // Read until the server closes (`Connection: close`), so
                // the session ticket that follows the handshake is in.
                "-ign_eof",
                "-CAfile",
            ])
            .arg(&c.cert)
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("openssl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = run(&["-sess_out", sess.to_str().unwrap()]);
    assert!(first.contains("New, TLSv1.3"), "{first}");
    let second = run(&["-sess_in", sess.to_str().unwrap()]);
    assert!(second.contains("Reused, TLSv1.3"), "{second}");
    drop(s);
}

#[test]
fn certificates_reload_on_sigusr1_and_sighup_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let a = cert(dir.path(), "live");
    // The replacements are made first, elsewhere, then moved into place.
    let spare = tempfile::tempdir().unwrap();
    let b = cert(spare.path(), "b");
    let cc = cert(spare.path(), "c");
    let (s, _plain, https) = start(dir.path(), &a, 2, &[]);
    let config = client_config(&[&a.der, &b.der, &cc.der]);
    // Full handshakes only: a resumed session shows the certificate of the
    // session it resumes, not the one the server would send now.
    let mut fresh = (*config).clone();
    fresh.resumption = rustls::client::Resumption::disabled();
    let fresh = Arc::new(fresh);

    // A WebSocket open across the SIGUSR1 reload must stay open.
    let mut ws = wss(https, &config, "/ws/echo");

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<Vec<rustls::pki_types::CertificateDer<'static>>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let looper = {
        let (stop, done, seen, failures, config) = (
            stop.clone(),
            done.clone(),
            seen.clone(),
            failures.clone(),
            fresh,
        );
        std::thread::spawn(move || {
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(600) {
                match TlsClient::try_connect(https, "localhost", &config) {
                    Ok(mut c) => {
                        let cert = c.peer_cert().unwrap();
                        match c.try_get("/plaintext") {
                            Ok(res) if res.status == 200 => {
                                seen.lock().unwrap().push(cert);
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            other => failures.lock().unwrap().push(format!("{other:?}")),
                        }
                    }
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
            }
        })
    };
    let wait_count = |n: usize| {
        assert!(
            testkit::wait_until(Duration::from_secs(400), || done.load(Ordering::Relaxed)
                >= n),
            "only {} requests",
            done.load(Ordering::Relaxed)
        )
    };
    let last_is = |der: &rustls::pki_types::CertificateDer<'static>, n: usize| {
        let seen = seen.lock().unwrap();
        seen.len() >= n && seen[seen.len() - n..].iter().all(|c| c == der)
    };
    wait_count(300);
    assert!(last_is(&a.der, 300));

    // Renewal 1: new files, SIGUSR1 (no restart).
    let kids = s.children();
    for (from, to) in [(&b.cert, &a.cert), (&b.key, &a.key)] {
        std::fs::copy(from, to.with_extension("new")).unwrap();
        std::fs::rename(to.with_extension("new"), to).unwrap();
    }
    s.signal(Signal::SIGUSR1);
    s.wait_log("tls: certificates reloaded", T);
    let mark = done.load(Ordering::Relaxed);
    assert!(
        testkit::wait_until(SLOW, || done.load(Ordering::Relaxed) >= mark + 100
            && last_is(&b.der, 50)),
        "new connections see the new certificate"
    );
    assert_eq!(s.children(), kids, "SIGUSR1 restarts no worker");
    ws.send(tungstenite::Message::text("still here")).unwrap();
    assert_eq!(next_text(&mut ws), "still here");

    // A bad key: logged, the certificate in use stays.
    std::fs::write(&a.key, "not a key\n").unwrap();
    s.signal(Signal::SIGUSR1);
    s.wait_log("keeping the certificates in use", T);
    let mark = done.load(Ordering::Relaxed);
    wait_count(mark + 200);
    assert!(last_is(&b.der, 200));

    // Renewal 2 with SIGHUP: the files are read at once, then the workers
    // are restarted one by one.
    for (from, to) in [(&cc.cert, &a.cert), (&cc.key, &a.key)] {
        std::fs::copy(from, to.with_extension("new")).unwrap();
        std::fs::rename(to.with_extension("new"), to).unwrap();
    }
    s.signal(Signal::SIGHUP);
    s.wait_children(T, "two new workers", |now| {
        now.len() == 2 && now.is_disjoint(&kids)
    });
    let mark = done.load(Ordering::Relaxed);
    assert!(
        testkit::wait_until(SLOW, || done.load(Ordering::Relaxed) >= mark + 100
            && last_is(&cc.der, 50)),
        "after SIGHUP new connections see the newest certificate"
    );
    wait_count(2000);
    stop.store(true, Ordering::Relaxed);
    looper.join().unwrap();
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    drop(s);
}

/// A real ClientHello's bytes.
fn client_hello(config: &Arc<rustls::ClientConfig>) -> Vec<u8> {
    let mut conn =
        rustls::ClientConnection::new(config.clone(), "localhost".try_into().unwrap()).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// Writes at most one byte per call: every handshake byte its own segment.
struct OneByte(TcpStream);

impl std::io::Read for OneByte {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for OneByte {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.0.write(&buf[..1])
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Whether the server closes `sock` within [`T`] (EOF or reset; bytes it
/// sends first, an alert, are skipped).
fn closed_by_server(sock: &mut TcpStream) -> bool {
    use std::io::Read;
    sock.set_read_timeout(Some(T)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

#[test]
fn hostile_handshakes_are_closed_and_the_worker_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let c = cert(dir.path(), "cert");
    let (s, _plain, https) = start(dir.path(), &c, 1, &["--header-timeout-ms", "700"]);
    let config = client_config(&[&c.der]);
    let hello = client_hello(&config);

    // A truncated ClientHello, then nothing: closed at the header timeout
    // (the handshake counts against it).
    let mut sock = TcpStream::connect(https).unwrap();
    sock.write_all(&hello[..hello.len() / 2]).unwrap();
    let started = Instant::now();
    assert!(closed_by_server(&mut sock), "a stalled handshake is closed");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "not before the timeout"
    );

    // A client that connects and never says anything: the same.
    let mut idle = TcpStream::connect(https).unwrap();
    assert!(closed_by_server(&mut idle));

    // A truncated ClientHello and the client's end of file.
    let mut sock = TcpStream::connect(https).unwrap();
    sock.write_all(&hello[..20]).unwrap();
    sock.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed_by_server(&mut sock));

    // A whole handshake and request sent one byte per segment: served.
    let tcp = TcpStream::connect(https).unwrap();
    tcp.set_read_timeout(Some(T)).unwrap();
    tcp.set_nodelay(true).unwrap();
    let conn =
        rustls::ClientConnection::new(config.clone(), "localhost".try_into().unwrap()).unwrap();
    let mut slow = rustls::StreamOwned::new(conn, OneByte(tcp));
    slow.write_all(b"GET /hello/slow HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    slow.flush().unwrap();
    let mut buf = Vec::new();
    let res = testkit::read_response(&mut slow, &mut buf, false).unwrap();
    assert_eq!(res.text(), "Hello, slow!");

    // Garbage after the handshake: the session ends, with an alert.
    let mut client = TlsClient::connect(https, "localhost", &config);
    assert_eq!(client.get("/plaintext").status, 200);
    client
        .stream
        .sock
        .write_all(&[0x17, 0x03, 0x03, 0x00, 0x20])
        .unwrap();
    client.stream.sock.write_all(&[0xab; 32]).unwrap();
    assert!(closed_by_server(&mut client.stream.sock));

    // Random bytes instead of a handshake.
    let mut junk = TcpStream::connect(https).unwrap();
    junk.write_all(&[0x16, 0x03, 0x01, 0x01, 0x00]).unwrap();
    junk.write_all(&[0x5a; 256]).unwrap();
    assert!(closed_by_server(&mut junk));

    // The process serves on.
    assert_eq!(
        testkit::tls::get(https, "localhost", &config, "/plaintext").status,
        200
    );
    drop(s);
}

#[test]
fn a_thousand_concurrent_handshakes() {
    let dir = tempfile::tempdir().unwrap();
    let c = cert(dir.path(), "cert");
    // A generous header timeout: on a loaded machine the last of 1,000
    // debug-build client handshakes may finish long after its connect, and
    // the server rightly closes connections idle for that long.
    let (s, _plain, https) = start(dir.path(), &c, 2, &["--header-timeout-ms", "300000"]);
    let config = client_config(&[&c.der]);
    let started = Instant::now();
    const THREADS: usize = 8;
    const EACH: usize = 125;
    let barrier = Arc::new(std::sync::Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (config, barrier) = (config.clone(), barrier.clone());
            std::thread::spawn(move || {
                // Every ClientHello is sent before any handshake completes.
                let mut conns = Vec::new();
                for _ in 0..EACH {
                    let tcp = TcpStream::connect(https).unwrap();
                    tcp.set_read_timeout(Some(T)).unwrap();
                    let mut conn = rustls::ClientConnection::new(
                        config.clone(),
                        "localhost".try_into().unwrap(),
                    )
                    .unwrap();
                    let mut tcp_w = &tcp;
                    while conn.wants_write() {
                        conn.write_tls(&mut tcp_w).unwrap();
                    }
                    conns.push(rustls::StreamOwned::new(conn, tcp));
                }
                barrier.wait();
                let mut ok = 0;
                for stream in &mut conns {
                    while stream.conn.is_handshaking() {
                        stream.conn.complete_io(&mut stream.sock).unwrap();
                    }
                }
                // All 125 of this thread's (1,000 in all) are open now.
                for stream in &mut conns {
                    stream
                        .write_all(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n")
                        .unwrap();
                    let mut buf = Vec::new();
                    let res = testkit::read_response(stream, &mut buf, false).unwrap();
                    if res.status == 200 {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let ok: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(ok, THREADS * EACH);
    eprintln!(
        "1,000 concurrent handshakes and requests in {:?}",
        started.elapsed()
    );
    drop(s);
}

#[test]
fn a_single_process_reloads_its_certificates_on_sigusr1() {
    let dir = tempfile::tempdir().unwrap();
    let a = cert(dir.path(), "live");
    let spare = tempfile::tempdir().unwrap();
    let b = cert(spare.path(), "b");
    let (s, _plain, https) = start(dir.path(), &a, 1, &[]);
    let config = client_config(&[&a.der, &b.der]);
    let seen = || {
        let mut c = TlsClient::connect(https, "localhost", &config);
        assert_eq!(c.get("/plaintext").status, 200);
        c.peer_cert().unwrap()
    };
    assert_eq!(seen(), a.der);
    for (from, to) in [(&b.cert, &a.cert), (&b.key, &a.key)] {
        std::fs::copy(from, to.with_extension("new")).unwrap();
        std::fs::rename(to.with_extension("new"), to).unwrap();
    }
    s.signal(Signal::SIGUSR1);
    s.wait_log("tls: certificates reloaded", T);
    // A new client (no session to resume) sees the new certificate.
    let config = client_config(&[&a.der, &b.der]);
    let mut c = TlsClient::connect(https, "localhost", &config);
    assert_eq!(c.get("/plaintext").status, 200);
    assert_eq!(c.peer_cert().unwrap(), b.der);
    drop(s);
}

#[test]
fn a_session_made_before_a_binary_upgrade_resumes_after_it() {
    let _heavy = testkit::procs::heavy();
    let dir = tempfile::tempdir().unwrap();
    let c = cert(dir.path(), "cert");
    let r = testkit::upgrade::Release::new(HELLO);
    let args = [
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--tls-bind",
        "127.0.0.1:0",
        "--tls-cert",
        c.cert.to_str().unwrap(),
        "--tls-key",
        c.key.to_str().unwrap(),
        "--version-tag",
        "old",
    ];
    let mut s = ServerTree::start(&r.app_str(), &args);
    assert!(testkit::wait_until(T, || s.addrs().len() == 2));
    s.wait_ready(2, T);
    let https = s.addrs()[1];
    let config = client_config(&[&c.der]);
    let mut first = TlsClient::connect(https, "localhost", &config);
    assert!(!first.resumed());
    assert_eq!(first.get("/version").text(), "old");
    drop(first);

    r.install_tagged("new");
    s.signal(Signal::SIGUSR2);
    let status = s
        .wait_exit(SLOW)
        .expect("the old master hands over and exits");
    assert!(status.success(), "{status}\n{}", s.stderr());
    // Only the new generation serves now; the ticket from the old one
    // resumes there because the keys were handed over with the sockets.
    let mut again = TlsClient::connect(https, "localhost", &config);
    assert_eq!(again.get("/version").text(), "new", "{}", s.stderr());
    assert!(
        again.resumed(),
        "the old generation's ticket did not resume:\n{}",
        s.stderr()
    );
}

/// A handshake that fails after the ServerHello is queued (TLS 1.3, a
/// client offering only `h2`) still sends its alert: every record rustls
/// queued goes out, not only the first (the client used to see the
/// ServerHello, then an end of file).
#[test]
fn a_tls13_handshake_refused_for_its_alpn_gets_the_alert() {
    let dir = tempfile::tempdir().unwrap();
    let c = cert(dir.path(), "cert");
    let (s, _plain, https) = start(dir.path(), &c, 1, &[]);
    for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12]] {
        let config = testkit::tls::client_config_versions(&[&c.der], versions);
        let mut config = Arc::unwrap_or_clone(config);
        config.alpn_protocols = vec![b"h2".to_vec()];
        let err = TlsClient::try_connect(https, "localhost", &Arc::new(config))
            .expect_err("no protocol in common");
        assert!(
            err.to_string().contains("NoApplicationProtocol"),
            "{versions:?}: {err}"
        );
    }
    // The server serves on.
    let config = client_config(&[&c.der]);
    assert_eq!(
        TlsClient::connect(https, "localhost", &config)
            .get("/plaintext")
            .status,
        200
    );
    s.stop(Duration::from_secs(10));
}

#[test]
fn a_stream_cut_off_over_tls_does_not_end_with_close_notify() {
    // An HTTP/1.0 response is delimited by the close: a clean TLS close
    // (close_notify) after the panic would make the cut body look whole.
    let dir = tempfile::tempdir().unwrap();
    let c = cert(dir.path(), "cert");
    let (s, _plain, https) = start(dir.path(), &c, 1, &[]);
    let config = client_config(&[&c.der]);
    let mut client = TlsClient::connect(https, "localhost", &config);
    client.send(b"GET /stream?n=10&size=10&panic_after=3 HTTP/1.0\r\n\r\n");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        match std::io::Read::read(&mut client.stream, &mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break Err(e),
        }
    };
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // The client is told the stream ended badly: no close_notify (rustls
    // reports an unexpected EOF) or a reset.
    let e = end.expect_err("a clean TLS close after a cut body");
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
        ),
        "{e}"
    );
    // A whole response still ends with a clean close.
    let mut client = TlsClient::connect(https, "localhost", &config);
    client.send(b"GET /stream?n=3&size=10 HTTP/1.0\r\n\r\n");
    let mut got = Vec::new();
    loop {
        match std::io::Read::read(&mut client.stream, &mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("a whole response ended with {e}"),
        }
    }
    assert!(
        got.ends_with(&[b'x'; 30]),
        "{}",
        String::from_utf8_lossy(&got)
    );
    drop(s);
}

/// Over TLS the byte counters count what crosses the socket, the
/// ciphertext, once: not the plaintext besides it.
#[test]
fn byte_counters_count_tls_bytes_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = cert(dir.path(), "cert");
    let (s, plain, https) = start(dir.path(), &c, 2, &[]);
    let counted = |name: &str| -> f64 {
        let text = testkit::get(plain, "/metrics").text();
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let (sent0, received0) = (
        counted("tine_http_sent_bytes_total"),
        counted("tine_http_received_bytes_total"),
    );
    let config = client_config(&[&c.der]);
    let mut client = TlsClient::connect(https, "localhost", &config);
    let big = client.get("/big?kb=64");
    assert_eq!(big.status, 200);
    let body = vec![b'y'; 50_000];
    client.send(
        format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    client.send(&body);
    assert_eq!(client.read_response().body.len(), body.len());
    // A counter moves just after its write returns, and the client can
    // read those bytes (and scrape) before it does: one more exchange on
    // the connection, which the worker answers only after it counted the
    // last, makes the counts above complete.
    assert_eq!(client.get("/plaintext").status, 200);
    drop(client);
    let sent = counted("tine_http_sent_bytes_total") - sent0;
    let received = counted("tine_http_received_bytes_total") - received0;
    // The bodies, their records' overhead, the handshake and the two
    // scrapes' answers on the plain port (about 20 KB): far below twice.
    let out = (big.body.len() + body.len()) as f64;
    assert!(
        sent >= out && sent < out * 1.25 + 30_000.0,
        "sent {sent} for {out}"
    );
    let up = body.len() as f64;
    assert!(
        received >= up && received < up * 1.25 + 10_000.0,
        "received {received} for {up}"
    );
    s.stop(T);
}
