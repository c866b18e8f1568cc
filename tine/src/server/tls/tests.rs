//! The TLS transport against a real rustls client over loopback TCP.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use testkit::tls::{client_config, make_cert, TestCert, TlsClient};

use super::stream::{TlsStream, MAX_WRITE};
use super::TlsConfig;

fn cert(dir: &std::path::Path) -> TestCert {
    make_cert(dir, "cert", &["localhost", "127.0.0.1"])
}

/// A listener and, for each test, the server side of one accepted
/// connection as a `TlsStream`.
fn accept(listener: &std::net::TcpListener, config: Arc<rustls::ServerConfig>) -> TlsStream {
    let (sock, _) = listener.accept().unwrap();
    sock.set_nonblocking(true).unwrap();
    TlsStream::new(mio::net::TcpStream::from_std(sock), config).unwrap()
}

/// Waits (bounded) until the socket is readable or writable.
fn wait(stream: &TlsStream) {
    let mut fds = [rustix::event::PollFd::new(
        stream.socket(),
        rustix::event::PollFlags::IN | rustix::event::PollFlags::OUT,
    )];
    let t = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 20_000_000,
    };
    let _ = rustix::event::poll(&mut fds, Some(&t));
}

/// Reads until `want` plaintext bytes arrived (bounded).
fn read_exact(stream: &mut TlsStream, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < want {
        assert!(Instant::now() < deadline, "timed out with {got:?}");
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait(stream),
            Err(e) => panic!("{e}"),
        }
    }
    got
}

fn setup() -> (
    tempfile::TempDir,
    TestCert,
    std::net::TcpListener,
    SocketAddr,
    Arc<rustls::ServerConfig>,
) {
    let dir = tempfile::tempdir().unwrap();
    let c = cert(dir.path());
    let config = TlsConfig::from_pem_files(&c.cert, &c.key)
        .unwrap()
        .server_config();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (dir, c, listener, addr, config)
}

#[test]
fn an_idle_tls_connection_holds_no_buffers() {
    let (_dir, c, listener, addr, config) = setup();
    let client = std::thread::spawn(move || {
        let mut client = TlsClient::connect(addr, "localhost", &client_config(&[&c.der]));
        client.send(b"ping");
        let mut buf = [0u8; 4];
        client.stream.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"pong");
        // Hold the connection open (idle) until the server checked.
        let mut end = [0u8; 1];
        let _ = client.stream.read(&mut end);
    });
    let mut server = accept(&listener, config);
    assert_eq!(read_exact(&mut server, 4), b"ping");
    assert!(server.established());
    let mut sent = 0;
    while sent < 4 {
        match server.write(&b"pong"[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait(&server),
            Err(e) => panic!("{e}"),
        }
    }
    server.flush().unwrap();
    // Everything sent, nothing half-received: no input, output or
    // plaintext buffer is held (only rustls' session state).
    assert_eq!(server.buffered_capacity(), 0);
    let mut buf = [0u8; 16];
    assert_eq!(
        server.read(&mut buf).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    assert_eq!(server.buffered_capacity(), 0);
    assert!(!server.may_have_more());
    // close_notify: the client reads a clean end of stream.
    assert!(server.close_notify());
    client.join().unwrap();
}

#[test]
fn a_client_that_does_not_read_holds_at_most_one_write() {
    let (_dir, c, listener, addr, config) = setup();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let client = std::thread::spawn(move || {
        let mut client = TlsClient::connect(addr, "localhost", &client_config(&[&c.der]));
        client.send(b"go");
        // Read nothing until told.
        let _ = stop_rx.recv_timeout(Duration::from_secs(20));
    });
    let mut server = accept(&listener, config);
    assert_eq!(read_exact(&mut server, 2), b"go");
    let chunk = vec![b'x'; 256 * 1024];
    let mut accepted = 0usize;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "the socket never filled");
        match server.write(&chunk) {
            Ok(n) => {
                assert!(n <= MAX_WRITE, "{n}");
                accepted += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    // The kernel's buffers are full; tine holds at most one write's
    // ciphertext (plus record overhead) beyond them.
    assert!(accepted > 0);
    let held = server.buffered_capacity();
    assert!(held <= 2 * MAX_WRITE, "{held}");
    // Further writes are refused without growing anything.
    for _ in 0..10 {
        assert_eq!(
            server.write(&chunk).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }
    assert_eq!(server.buffered_capacity(), held);
    stop_tx.send(()).unwrap();
    client.join().unwrap();
}

#[test]
fn plain_http_on_the_tls_port_gets_a_readable_400() {
    let (_dir, _c, listener, addr, config) = setup();
    let client = std::thread::spawn(move || {
        let mut client = testkit::Client::connect(addr);
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let res = client.read_response();
        assert_eq!(res.status, 400);
        assert!(res.text().contains("speaks HTTPS"), "{}", res.text());
        assert!(client.is_closed());
    });
    let mut server = accept(&listener, config);
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    let err = loop {
        assert!(Instant::now() < deadline);
        match server.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait(&server),
            Err(e) => break e,
            Ok(n) => panic!("read {n} bytes of plaintext"),
        }
    };
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    drop(server);
    client.join().unwrap();
}

#[test]
fn garbage_instead_of_a_client_hello_is_an_error_not_a_hang() {
    let (_dir, _c, listener, addr, config) = setup();
    let client = std::thread::spawn(move || {
        let mut client = testkit::Client::connect(addr);
        // A handshake record header announcing a message, then junk.
        client.send(&[0x16, 0x03, 0x01, 0x00, 0x10]);
        client.send(&[0xff; 16]);
        // The server answers with an alert (or nothing) and closes.
        let mut buf = [0u8; 64];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < deadline);
            match client.stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    });
    let mut server = accept(&listener, config);
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline);
        match server.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait(&server),
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                break;
            }
            Ok(n) => panic!("read {n} bytes of plaintext"),
        }
    }
    drop(server);
    client.join().unwrap();
}

#[test]
fn an_sni_name_no_client_can_send_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let default = make_cert(dir.path(), "default", &["localhost"]);
    let other = make_cert(dir.path(), "other", &["other.test"]);
    for bad in ["not a name!", "", "a..b", "*", "a.*.b", "**.b"] {
        let err = TlsConfig::from_pem_files(&default.cert, &default.key)
            .unwrap()
            .sni_cert(bad, &other.cert, &other.key)
            .map(|_| ())
            .unwrap_err();
        assert!(
            err.to_string().contains("is not a DNS name"),
            "{bad:?}: {err}"
        );
    }
    for good in ["other.test", "Other.Test.", "*.other.test", "localhost"] {
        let tls = TlsConfig::from_pem_files(&default.cert, &default.key).unwrap();
        assert!(
            tls.sni_cert(good, &other.cert, &other.key).is_ok(),
            "{good}"
        );
    }
}

#[test]
fn sni_picks_the_certificate_and_unknown_names_follow_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let default = make_cert(dir.path(), "default", &["localhost"]);
    let other = make_cert(dir.path(), "other", &["other.test"]);
    let wild = make_cert(dir.path(), "wild", &["*.wild.test"]);
    let roots = [&default.der, &other.der, &wild.der];
    for reject in [false, true] {
        let mut tls = TlsConfig::from_pem_files(&default.cert, &default.key)
            .unwrap()
            .sni_cert("other.test", &other.cert, &other.key)
            .unwrap()
            .sni_cert("*.wild.test", &wild.cert, &wild.key)
            .unwrap();
        if reject {
            tls = tls.reject_unknown_names();
        }
        let config = tls.server_config();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            // Drive each connection's handshake until it ends.
            for _ in 0..5 {
                let mut s = accept(&listener, config.clone());
                let mut buf = [0u8; 64];
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    match s.read(&mut buf) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait(&s),
                        _ => break,
                    }
                }
            }
        });
        let client = client_config(&roots);
        let seen = |name: &str| {
            let mut c = TlsClient::try_connect(addr, name, &client).ok()?;
            let cert = c.peer_cert();
            c.send(b"x");
            cert
        };
        assert_eq!(seen("localhost"), Some(default.der.clone()));
        assert_eq!(seen("other.test"), Some(other.der.clone()));
        assert_eq!(seen("a.wild.test"), Some(wild.der.clone()));
        assert_eq!(seen("LOCALHOST"), Some(default.der.clone()));
        // An unknown name: the default certificate (which the client then
        // rejects, as it is not for that name), or an alert. Either way no
        // certificate is accepted, so tell the two apart by the alert.
        let unknown = TlsClient::try_connect(addr, "unknown.test", &client).unwrap_err();
        let text = unknown.to_string();
        if reject {
            assert!(text.contains("AccessDenied"), "{text}");
        } else {
            assert!(
                text.contains("NotValidForName") || text.contains("not valid"),
                "{text}"
            );
        }
        server.join().unwrap();
    }
}

#[test]
fn fuzz_echo_small_writes() {
    let dir = tempfile::tempdir().unwrap();
    let c = cert(dir.path());
    let config = super::fuzz::server_config(&c.cert, &c.key);
    let client = client_config(&[&c.der]);
    // More one-byte writes than any fixed number of turns would allow.
    let data = vec![b'x'; 12_000];
    super::fuzz::echo(&config, &client, &data, 1);
}

#[test]
fn tls_and_the_proxy_protocol_on_one_listener_are_refused_at_bind() {
    let dir = tempfile::tempdir().unwrap();
    let c = cert(dir.path());
    let tls = TlsConfig::from_pem_files(&c.cert, &c.key).unwrap();
    let listen = crate::Listen::tls(([127, 0, 0, 1], 0), tls).proxy_protocol(true);
    let err = crate::App::new()
        .workers(1)
        .listen(listen)
        .bind_listeners()
        .expect_err("TLS with the PROXY protocol must be refused");
    let msg = err.to_string();
    assert!(
        msg.contains("TLS and the PROXY protocol"),
        "unexpected error: {msg}"
    );
}

#[test]
fn certificate_files_that_cannot_be_used_are_refused_in_words_and_never_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let c = cert(dir.path());
    let load = |chain: &std::path::Path, key: &std::path::Path| {
        let (chain, key) = (chain.to_path_buf(), key.to_path_buf());
        // On a thread: a read that waits would hang the test, not fail it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(TlsConfig::from_pem_files(&chain, &key).map(|_| ()));
        });
        let result = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("loading the certificate waited");
        result.unwrap_err().to_string()
    };
    // A FIFO (a reload reads it in the master): refused at once.
    let fifo = dir.path().join("fifo.pem");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let e = load(&fifo, &c.key);
    assert!(e.contains("not a regular file"), "{e}");
    // A chain cut short: said in words, not as byte values.
    let pem = std::fs::read_to_string(&c.cert).unwrap();
    let cut = dir.path().join("cut.pem");
    std::fs::write(&cut, &pem[..pem.len() - 40]).unwrap();
    let e = load(&cut, &c.key);
    assert!(
        e.contains("END CERTIFICATE") && e.contains("cut short"),
        "{e}"
    );
    // A key file holding no key.
    let e = load(&c.cert, &c.cert);
    assert!(e.contains("no PRIVATE KEY"), "{e}");
    // A chain no client would take (a CA bundle pasted in, say).
    let huge = dir.path().join("huge.pem");
    std::fs::write(&huge, pem.repeat(400)).unwrap();
    let e = load(&huge, &c.key);
    assert!(
        e.contains("400 certificates") && e.contains("100 KiB"),
        "{e}"
    );
}

/// A key that needs a passphrase and files in DER instead of PEM were
/// reported as holding no key or no certificate at all: the message says
/// what the file is and the `openssl` command that converts it.
#[test]
fn encrypted_keys_and_der_files_are_named_with_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let c = cert(dir.path());
    let load = |chain: &std::path::Path, key: &std::path::Path| {
        TlsConfig::from_pem_files(chain, key)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    // PKCS #8 encrypted, as `openssl genpkey -aes256` writes it.
    let encrypted = dir.path().join("encrypted.pem");
    std::fs::write(
        &encrypted,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkq\n\
         -----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let e = load(&c.cert, &encrypted);
    assert!(
        e.contains("encrypted.pem: the private key is encrypted") && e.contains("openssl pkey"),
        "{e}"
    );
    // OpenSSL's traditional encrypted form.
    std::fs::write(
        &encrypted,
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
         DEK-Info: AES-256-CBC,0123456789ABCDEF0123456789ABCDEF\n\nMIIB\n\
         -----END RSA PRIVATE KEY-----\n",
    )
    .unwrap();
    let e = load(&c.cert, &encrypted);
    assert!(e.contains("the private key is encrypted"), "{e}");
    // The certificate in DER.
    let der = dir.path().join("cert.der");
    std::fs::write(&der, c.der.as_ref()).unwrap();
    let e = load(&der, &c.key);
    assert!(
        e.contains("cert.der: no CERTIFICATE in the file: it looks like DER")
            && e.contains("openssl x509 -inform DER"),
        "{e}"
    );
    // The key in DER (the PEM's base64 decoded).
    let pem = std::fs::read_to_string(&c.key).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let key_der = dir.path().join("key.der");
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap();
    std::fs::write(&key_der, bytes).unwrap();
    let e = load(&c.cert, &key_der);
    assert!(
        e.contains("key.der: no PRIVATE KEY in the file: it looks like DER")
            && e.contains("openssl pkey -inform DER"),
        "{e}"
    );
}
