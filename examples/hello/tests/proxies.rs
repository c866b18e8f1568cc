//! The client behind a proxy, end to end: `hello --trusted-proxy` believes
//! `X-Forwarded-For`/`-Proto` only from trusted peers, takes the right-most
//! untrusted address, and falls back to the socket (never a 500) on a
//! header it cannot read. The tests connect from 127.0.0.1.

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
    ok(
        "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: ftp\r\n",
        "127.0.0.1 http",
    );
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

#[test]
fn a_bad_trusted_proxy_flag_fails_at_start_up() {
    let out = std::process::Command::new(HELLO)
        .args(["--bind", "127.0.0.1:0", "--trusted-proxy", "10.0.0.0/99"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("10.0.0.0/99"), "{err}");
}
