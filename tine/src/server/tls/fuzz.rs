//! The TLS fuzz target's driver (`tine/fuzz`, target `tls_session`): a
//! `TlsStream` on one end of a loopback TCP connection, a rustls client
//! (or raw bytes) on the other, both non-blocking and driven by hand.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;

use super::{TlsConfig, TlsStream};

/// tine's rustls configuration for the PEM files (the fuzz target makes
/// them once).
pub fn server_config(cert: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
    TlsConfig::from_pem_files(cert, key)
        .expect("the fuzz certificate loads")
        .server_config()
}

thread_local! {
    static LISTENER: TcpListener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
}

fn pair() -> (TcpStream, TlsStreamParts) {
    LISTENER.with(|l| {
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        client.set_nonblocking(true).unwrap();
        (
            client,
            TlsStreamParts(mio::net::TcpStream::from_std(server)),
        )
    })
}

struct TlsStreamParts(mio::net::TcpStream);

/// Drives the server side: reads all it can; echoes plaintext back
/// (`echo` holds what the socket did not take). `Err`: the session failed
/// (which ends the run; it must never panic or hang).
fn pump_server(server: &mut TlsStream, echo: &mut Vec<u8>, got: &mut Vec<u8>) -> io::Result<()> {
    let mut buf = [0u8; 64 * 1024];
    for _ in 0..64 {
        match server.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                echo.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    while !echo.is_empty() {
        match server.write(echo) {
            Ok(n) => {
                echo.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    match server.flush() {
        Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
        _ => Ok(()),
    }
}

/// Raw mode: `data` is sent as is, in pieces of `split` bytes (a ClientHello
/// and what follows, as an attacker would write them).
pub fn raw(config: &Arc<rustls::ServerConfig>, data: &[u8], split: usize) {
    let (mut client, parts) = pair();
    let mut server = TlsStream::new(parts.0, config.clone()).unwrap();
    let (mut echo, mut got) = (Vec::new(), Vec::new());
    let mut sink = [0u8; 16 * 1024];
    for piece in data.chunks(split.max(1)) {
        let _ = client.write_all(piece);
        if pump_server(&mut server, &mut echo, &mut got).is_err() {
            return;
        }
        while matches!(client.read(&mut sink), Ok(n) if n > 0) {}
    }
    server.close_notify();
}

/// Echo mode: a real rustls client completes the handshake, then sends
/// `data` as application data in writes of `split` bytes; the server
/// echoes every byte, and both directions must arrive whole and in order.
pub fn echo(
    config: &Arc<rustls::ServerConfig>,
    client_config: &Arc<rustls::ClientConfig>,
    data: &[u8],
    split: usize,
) {
    let (mut sock, parts) = pair();
    let mut server = TlsStream::new(parts.0, config.clone()).unwrap();
    let mut client =
        rustls::ClientConnection::new(client_config.clone(), "localhost".try_into().unwrap())
            .unwrap();
    let (mut echo, mut got, mut back) = (Vec::new(), Vec::new(), Vec::new());
    let mut pieces = data.chunks(split.max(1));
    let mut plain = [0u8; 64 * 1024];
    // One piece per turn, plus turns for the handshake and the last echo.
    for _ in 0..pieces.len() + 2_000 {
        if !client.is_handshaking() {
            if let Some(piece) = pieces.next() {
                client.writer().write_all(piece).unwrap();
            }
        }
        while client.wants_write() {
            match client.write_tls(&mut sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("client write: {e}"),
            }
        }
        pump_server(&mut server, &mut echo, &mut got).expect("server");
        loop {
            match client.read_tls(&mut sock) {
                Ok(0) => break,
                Ok(_) => {
                    client.process_new_packets().expect("client");
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("client read: {e}"),
            }
        }
        loop {
            match client.reader().read(&mut plain) {
                Ok(0) => break,
                Ok(n) => back.extend_from_slice(&plain[..n]),
                Err(_) => break,
            }
        }
        if pieces.len() == 0 && back.len() < data.len() {
            // Everything is sent: wait (bounded) for the echo to arrive
            // instead of spinning through the iterations.
            let mut fds = [rustix::event::PollFd::new(
                &sock,
                rustix::event::PollFlags::IN,
            )];
            let t = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 10_000_000,
            };
            let _ = rustix::event::poll(&mut fds, Some(&t));
        }
        if back.len() == data.len() && pieces.len() == 0 {
            break;
        }
    }
    assert!(got == data, "the server read other bytes than were sent");
    assert!(
        back == data,
        "the echo differs: {} of {} bytes back",
        back.len(),
        data.len()
    );
}
