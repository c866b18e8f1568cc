//! Raw WebSocket helpers: an upgrade over a plain TCP stream and frame
//! encoding/decoding done by hand, so tests can send exactly the frames
//! they mean (unmasked, reserved bits, bad opcodes, fragments).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::TIMEOUT;

/// The RFC 6455 §1.3 sample key and its accept value.
pub const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The accept value for [`SAMPLE_KEY`].
pub const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Opcodes.
pub mod op {
    /// Continuation frame.
    pub const CONT: u8 = 0;
    /// Text frame.
    pub const TEXT: u8 = 1;
    /// Binary frame.
    pub const BINARY: u8 = 2;
    /// Close frame.
    pub const CLOSE: u8 = 8;
    /// Ping frame.
    pub const PING: u8 = 9;
    /// Pong frame.
    pub const PONG: u8 = 10;
}

/// Connects and performs the upgrade on `path`; panics unless the server
/// answers 101 with the right accept key. Returns the stream, positioned
/// after the handshake response.
pub fn connect(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    upgrade(&mut s, path);
    s
}

/// A WebSocket upgrade request for `path`, with [`SAMPLE_KEY`].
pub fn upgrade_request(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {SAMPLE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// Performs the upgrade on `path` over a connection already open (a
/// keep-alive connection that served requests first); panics unless the
/// server answers 101 with the right accept key. The stream is left
/// after the handshake response.
pub fn upgrade(s: &mut TcpStream, path: &str) {
    s.write_all(&upgrade_request(path)).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("handshake response");
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 101"), "{text}");
    assert!(
        text.contains(&format!(
            "sec-websocket-accept: {}",
            SAMPLE_ACCEPT.to_ascii_lowercase()
        )),
        "{text}"
    );
}

/// Encodes a client frame; `mask: None` sends it unmasked (a protocol
/// error). `rsv` sets the three reserved bits.
pub fn frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | ((rsv & 7) << 4) | (opcode & 15)];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked, final client frame.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(true, 0, opcode, payload, Some([0x37, 0xfa, 0x21, 0x3d]))
}

/// Reads one server frame: `(fin, opcode, payload)`. Panics if it is
/// masked (servers must not mask).
pub fn read_frame(s: &mut TcpStream) -> std::io::Result<(bool, u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h)?;
    assert_eq!(h[1] & 0x80, 0, "server frames must not be masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b)?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b)?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload)?;
    Ok((h[0] & 0x80 != 0, h[0] & 15, payload))
}

/// Reads frames until a close frame; returns its code (1005 if none).
pub fn read_close_code(s: &mut TcpStream) -> u16 {
    loop {
        let (_, opcode, payload) = read_frame(s).expect("a close frame");
        if opcode == op::CLOSE {
            return if payload.len() >= 2 {
                u16::from_be_bytes([payload[0], payload[1]])
            } else {
                1005
            };
        }
    }
}

/// Sends `bytes`.
pub fn send(s: &mut TcpStream, bytes: &[u8]) {
    s.write_all(bytes).expect("send");
}

/// A WebSocket client from the `tungstenite` crate (an independent
/// implementation, unlike the hand-made frames above).
pub type Ws = tungstenite::WebSocket<TcpStream>;

/// Joins `hello`'s chat room `room` (`/ws/chat?room=...`); returns the
/// socket and the pid of the worker serving it (the room's first message).
pub fn chat_join(addr: SocketAddr, room: &str) -> (Ws, u32) {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let (mut ws, _) =
        tungstenite::client(format!("ws://{addr}/ws/chat?room={room}"), stream).expect("handshake");
    let tungstenite::Message::Text(first) = ws.read().expect("the pid line") else {
        panic!("expected the pid line")
    };
    let pid = first
        .as_str()
        .strip_prefix("pid ")
        .and_then(|p| p.parse().ok())
        .expect("a pid");
    (ws, pid)
}

/// The next text message, skipping pings and pongs.
pub fn next_text(ws: &mut Ws) -> String {
    loop {
        match ws.read().expect("a message") {
            tungstenite::Message::Text(t) => return t.as_str().to_string(),
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}
