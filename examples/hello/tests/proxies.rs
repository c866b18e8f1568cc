//! The client behind a proxy, end to end: `hello --trusted-proxy` believes
//! `X-Forwarded-For`/`-Proto` only from trusted peers, takes the right-most
//! untrusted address, reads no further left than that, and falls back to
//! the socket (never a 500) on what it cannot read. The tests connect from
//! 127.0.0.1.

use testkit::procs::ServerTree;
use testkit::Client;

const HELLO: &str = env!("CARGO_BIN_EXE_hello");

fn whoami(s: &ServerTree, headers: &str) -> (u16, String) {
    let mut c = Client::connect(s.addr());
    c.send(format!("GET /whoami HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes());
    let r = c.read_response();
    (r.status, r.text())
}

#[test]
fn a_trusted_proxy_names_the_client_and_the_scheme() {
    let s = ServerTree::start(
        HELLO,
        &[
            "--bind",
            "127.0.0.1:0",
            "--trusted-proxy",
            "127.0.0.0/8",
            "--trusted-proxy",
            "10.0.0.0/8",
        ],
    );
    let ok = |h: &str, want: &str| assert_eq!(whoami(&s, h), (200, want.to_string()), "{h}");
    ok(
        "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n",
        "203.0.113.7 https",
    );
    // The left-most entry is the client's own claim: the right-most
    // untrusted one is believed (trusted hops skipped).
    ok(
        "X-Forwarded-For: 6.6.6.6, 203.0.113.7, 10.0.0.3\r\n",
        "203.0.113.7 http",
    );
    // No header: the socket.
    ok("", "127.0.0.1 http");
    // Malformed from a trusted proxy: the socket, never a 500.
    ok("X-Forwarded-For: <script>\r\n", "127.0.0.1 http");
    ok("X-Forwarded-For: 1.2.3.4,,\r\n", "127.0.0.1 http");
    // An unreadable scheme leaves the socket's; the address stands.
    ok(
        "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: ftp\r\n",
        "203.0.113.7 http",
    );
    s.stop(std::time::Duration::from_secs(30));
}

/// What nginx's `$proxy_add_x_forwarded_for` passes on when the client
/// sent junk of its own: the junk, then the client's real address. The
/// junk used to discard the header, and the client became the proxy.
#[test]
fn junk_the_client_sent_left_of_its_address_is_not_read() {
    let s = ServerTree::start(
        HELLO,
        &["--bind", "127.0.0.1:0", "--trusted-proxy", "127.0.0.1"],
    );
    for junk in ["garbage", "unknown", "1.2.3.4:5:6", "", "1.2.3.4,"] {
        let h = format!("X-Forwarded-For: {junk}, 203.0.113.7\r\nX-Forwarded-Proto: https\r\n");
        assert_eq!(
            whoami(&s, &h),
            (200, "203.0.113.7 https".to_string()),
            "{h}"
        );
    }
    s.stop(std::time::Duration::from_secs(30));
}

#[test]
fn spoofed_headers_from_an_untrusted_peer_are_ignored() {
    // Only 10.0.0.0/8 is trusted: the test's 127.0.0.1 is not.
    let s = ServerTree::start(
        HELLO,
        &["--bind", "127.0.0.1:0", "--trusted-proxy", "10.0.0.0/8"],
    );
    assert_eq!(
        whoami(
            &s,
            "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n"
        ),
        (200, "127.0.0.1 http".to_string())
    );
    s.stop(std::time::Duration::from_secs(30));
    // And without any trusted proxy.
    let s = ServerTree::start(HELLO, &["--bind", "127.0.0.1:0"]);
    assert_eq!(
        whoami(&s, "X-Forwarded-For: 203.0.113.7\r\n"),
        (200, "127.0.0.1 http".to_string())
    );
    s.stop(std::time::Duration::from_secs(30));
}

/// A bad entry is bad input: one line and exit 2, as for hello's other
/// flags (it was tine's builder panic, with a backtrace).
#[test]
fn a_bad_trusted_proxy_flag_fails_at_start_up() {
    for bad in ["10.0.0.0/99", "example.com", "unix:/run/x", ""] {
        let out = std::process::Command::new(HELLO)
            .args(["--bind", "127.0.0.1:0", "--trusted-proxy", bad])
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {err}");
        assert_eq!(
            err,
            format!("--trusted-proxy {bad}: not an address, a CIDR range or unix:\n")
        );
    }
}

/// hello with a plain address and a PROXY protocol one; their addresses.
fn proxy_server() -> (ServerTree, std::net::SocketAddr, std::net::SocketAddr) {
    proxy_server_with(&[])
}

/// [`proxy_server`] with more flags.
fn proxy_server_with(extra: &[&str]) -> (ServerTree, std::net::SocketAddr, std::net::SocketAddr) {
    let mut args = vec![
        "--bind",
        "127.0.0.1:0",
        "--proxy-protocol-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let s = ServerTree::start(HELLO, &args);
    assert!(testkit::wait_until(
        std::time::Duration::from_secs(30),
        || s.addrs().len() == 2
    ));
    let a = s.addrs();
    (s, a[0], a[1])
}

fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> (u16, String) {
    let mut c = Client::connect(addr);
    c.send(bytes);
    let r = c.read_response();
    (r.status, r.text())
}

#[test]
fn proxy_protocol_v1_and_v2_name_the_client() {
    let (s, plain, proxied) = proxy_server();
    let req = b"GET /whoami HTTP/1.1\r\nHost: t\r\n\r\n";
    // v1.
    let mut v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 80\r\n".to_vec();
    v1.extend_from_slice(req);
    assert_eq!(raw(proxied, &v1).0, 200);
    assert_eq!(raw(proxied, &v1).1, "203.0.113.7 http");
    // v1 with IPv6, and keep-alive goes on after the header.
    let mut c = Client::connect(proxied);
    c.send(b"PROXY TCP6 2001:db8::7 ::1 4000 443\r\n");
    c.send(req);
    assert_eq!(c.read_response().text(), "2001:db8::7 http");
    c.send(req);
    assert_eq!(c.read_response().text(), "2001:db8::7 http");
    // v2 (binary), in two writes (a header cut anywhere is unit-tested).
    let mut v2 = vec![
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, // signature
        0x21, 0x11, 0x00, 0x0C, // v2 PROXY, TCP over IPv4, 12 bytes
        198, 51, 100, 9, 10, 0, 0, 1, // source, destination
        0xC3, 0x50, 0x00, 0x50, // ports 50000, 80
    ];
    v2.extend_from_slice(req);
    let mut c = Client::connect(proxied);
    c.send(&v2[..7]);
    c.send(&v2[7..]);
    assert_eq!(c.read_response().text(), "198.51.100.9 http");
    // v2 LOCAL (a balancer's health check): the socket's address.
    let mut local = v2[..12].to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    local.extend_from_slice(req);
    assert_eq!(raw(proxied, &local).1, "127.0.0.1 http");
    // Never guessed: a header on the plain address is a bad request.
    assert_eq!(raw(plain, &v1).0, 400);
    assert_eq!(raw(plain, req).1, "127.0.0.1 http");
    s.stop(std::time::Duration::from_secs(30));
}

#[test]
fn a_bad_proxy_header_is_answered_400_and_closed() {
    let (s, _, proxied) = proxy_server();
    for bad in [
        &b"GET /whoami HTTP/1.1\r\nHost: t\r\n\r\n"[..],
        b"PROXY TCP4 1.2.3 10.0.0.1 1 2\r\nGET / HTTP/1.1\r\n\r\n",
        b"PROXY TCP4 203.0.113.7 10.0.0.1 99999 80\r\nGET / HTTP/1.1\r\n\r\n",
    ] {
        let mut c = Client::connect(proxied);
        c.send(bad);
        let r = c.read_response();
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(bad));
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.is_closed());
    }
    // The worker is fine.
    let mut ok = b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 80\r\n".to_vec();
    ok.extend_from_slice(b"GET /whoami HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(raw(proxied, &ok).1, "203.0.113.7 http");
    s.stop(std::time::Duration::from_secs(30));
}

/// `max_connections_per_ip` counts a PROXY protocol connection under the
/// client its header names, once the header is read, and releases it
/// under that client when it closes: one connection after another from
/// eight clients, with a limit of 2, are all served.
#[test]
fn per_ip_counts_of_proxied_connections_are_released() {
    let (s, _, proxied) = proxy_server_with(&["--max-connections-per-ip", "2"]);
    for i in 1..=8 {
        let header = format!("PROXY TCP4 203.0.113.{i} 10.0.0.1 51000 80\r\n");
        let mut c = Client::connect(proxied);
        c.send(header.as_bytes());
        c.send(b"GET /whoami HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let r = c.read_response();
        assert_eq!(
            (r.status, r.text()),
            (200, format!("203.0.113.{i} http")),
            "connection {i}"
        );
        assert!(c.is_closed(), "connection {i} is closed after its answer");
    }
    s.stop(std::time::Duration::from_secs(30));
}

/// Behind a balancer that sends the PROXY protocol,
/// `max_connections_per_ip` limits each client the headers name, not the
/// balancer: every connection comes from the balancer's address.
#[test]
fn per_ip_limits_count_the_client_a_proxy_header_names() {
    let (s, plain, proxied) = proxy_server_with(&["--max-connections-per-ip", "2"]);
    let open = |client: &str| {
        let mut c = Client::connect(proxied);
        c.send(format!("PROXY TCP4 {client} 10.0.0.1 51000 80\r\n").as_bytes());
        c.send(b"GET /whoami HTTP/1.1\r\nHost: t\r\n\r\n");
        c
    };
    // Four clients, two connections each, all open at once: eight from
    // the balancer's one address, all connected before any header is sent
    // (a burst the balancer passes on), and accepted (the metrics count
    // them, and the scrape's own connection).
    let mut held: Vec<Client> = (0..8).map(|_| Client::connect(proxied)).collect();
    let accepted = || {
        let text = testkit::get(plain, "/metrics").text();
        let line = text
            .lines()
            .find(|l| l.starts_with("tine_open_connections{"));
        line.and_then(|l| l.rsplit(' ').next()?.parse::<u32>().ok())
    };
    assert!(
        testkit::wait_until(std::time::Duration::from_secs(10), || accepted() == Some(9)),
        "the eight connections were not accepted: {:?}",
        accepted()
    );
    for (i, c) in held.iter_mut().enumerate() {
        let client = format!("203.0.113.{}", i / 2 + 1);
        c.send(format!("PROXY TCP4 {client} 10.0.0.1 51000 80\r\n").as_bytes());
        c.send(b"GET /whoami HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(
            c.read_response().text(),
            format!("{client} http"),
            "connection {i}"
        );
    }
    // A third from one client is closed unanswered, as at accept.
    let mut third = open("203.0.113.1");
    assert!(
        third.is_closed(),
        "the third connection of 203.0.113.1 was answered"
    );
    // Closing one frees its client's place.
    drop(held.remove(0));
    assert!(
        testkit::wait_until(std::time::Duration::from_secs(10), || {
            let mut c = open("203.0.113.1");
            !c.is_closed()
        }),
        "203.0.113.1 never got its place back"
    );
    s.stop(std::time::Duration::from_secs(30));
}
