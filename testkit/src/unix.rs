//! Clients over Unix-domain sockets, for servers listening on
//! `unix:PATH`: raw HTTP/1.1 ([`UnixClient`], the same parsing as
//! [`Client`](crate::Client)) and WebSocket (tungstenite over a
//! `UnixStream`).

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::{read_response, Resp, TIMEOUT};

/// A raw HTTP/1.1 client over one Unix-domain stream connection.
#[derive(Debug)]
pub struct UnixClient {
    /// The connection.
    pub stream: UnixStream,
    buf: Vec<u8>,
}

impl UnixClient {
    /// Connects to the socket at `path` with [`TIMEOUT`] as read and
    /// write timeout.
    pub fn connect(path: &Path) -> UnixClient {
        UnixClient::try_connect(path)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()))
    }

    /// [`UnixClient::connect`], or the error (refused, no such file).
    pub fn try_connect(path: &Path) -> io::Result<UnixClient> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        Ok(UnixClient {
            stream,
            buf: Vec::new(),
        })
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Sends a GET with `Host` and returns the response.
    pub fn get(&mut self, target: &str) -> Resp {
        self.send(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        self.read_response()
    }

    /// Reads one response (to a request that was not HEAD).
    pub fn read_response(&mut self) -> Resp {
        self.try_read_response().expect("read response")
    }

    /// Reads one response, or the I/O error (EOF is `UnexpectedEof`).
    pub fn try_read_response(&mut self) -> io::Result<Resp> {
        read_response(&mut self.stream, &mut self.buf, false)
    }
}

/// One GET on a fresh connection to the socket at `path`.
pub fn get(path: &Path, target: &str) -> Resp {
    UnixClient::connect(path).get(target)
}

/// One GET on a fresh connection, or the error (for loops that count
/// failures).
pub fn try_get(path: &Path, target: &str) -> io::Result<Resp> {
    let mut c = UnixClient::try_connect(path)?;
    c.stream
        .write_all(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())?;
    c.try_read_response()
}

/// A WebSocket client (tungstenite) over a Unix-domain stream.
pub type UnixWs = tungstenite::WebSocket<UnixStream>;

/// Opens a WebSocket to `target` (`/ws/echo`) over the socket at `path`.
pub fn ws_connect(path: &Path, target: &str) -> UnixWs {
    let stream = UnixStream::connect(path).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let (ws, resp) =
        tungstenite::client(format!("ws://localhost{target}"), stream).expect("handshake");
    assert_eq!(resp.status(), 101);
    ws
}
