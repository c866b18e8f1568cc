//! A raw server-sent events client: one GET over TCP, then events decoded
//! from the chunked body as they arrive (comments kept, so tests can see
//! heartbeats).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::{Client, Resp};

/// One block of an event stream: its fields in order (`("", text)` for a
/// comment line).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// `(name, value)` per line.
    pub fields: Vec<(String, String)>,
}

impl Event {
    /// The value of the first field `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `data:` lines joined with newlines, as a browser does.
    pub fn data(&self) -> String {
        let lines: Vec<&str> = self
            .fields
            .iter()
            .filter(|(n, _)| n == "data")
            .map(|(_, v)| v.as_str())
            .collect();
        lines.join("\n")
    }

    /// Whether the block is only comments (a heartbeat).
    pub fn is_comment(&self) -> bool {
        self.fields.iter().all(|(n, _)| n.is_empty())
    }
}

/// An open event stream.
#[derive(Debug)]
pub struct SseStream {
    /// The connection.
    pub stream: TcpStream,
    /// The response head (its body is empty).
    pub head: Resp,
    raw: Vec<u8>,
    text: Vec<u8>,
    chunked: bool,
}

/// Sends `GET path` with `extra` header lines (each ending in CRLF) and
/// reads the head. Non-200 answers are returned whole in `Err`.
pub fn open(addr: SocketAddr, path: &str, extra: &str) -> Result<SseStream, Resp> {
    let mut c = Client::connect(addr);
    c.send(
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n{extra}\r\n")
            .as_bytes(),
    );
    // Read the head only: the body never ends.
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = c.stream.read(&mut buf).expect("read head");
        assert!(n > 0, "closed before the head");
        raw.extend_from_slice(&buf[..n]);
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    parsed.parse(&raw[..end]).expect("a response head");
    let head = Resp {
        status: parsed.code.unwrap_or(0),
        headers: parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: Vec::new(),
    };
    if head.status != 200 {
        return Err(head);
    }
    let chunked = head.header("transfer-encoding") == Some("chunked");
    Ok(SseStream {
        stream: c.stream,
        head,
        raw: raw.split_off(end),
        text: Vec::new(),
        chunked,
    })
}

impl SseStream {
    /// The next block (event or comment), waiting up to [`TIMEOUT`](crate::TIMEOUT).
    /// `Err` on EOF, a reset or the timeout.
    pub fn next_block(&mut self) -> io::Result<Event> {
        loop {
            if let Some(i) = self.text.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.text.drain(..i + 2).collect();
                let block = String::from_utf8_lossy(&block[..i]).into_owned();
                let fields = block
                    .split('\n')
                    .map(|line| match line.strip_prefix(':') {
                        Some(comment) => (String::new(), comment.trim_start().to_string()),
                        None => match line.split_once(':') {
                            Some((n, v)) => {
                                (n.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string())
                            }
                            None => (line.to_string(), String::new()),
                        },
                    })
                    .collect();
                return Ok(Event { fields });
            }
            if !self.decode()? {
                let mut buf = [0u8; 16384];
                let n = self.stream.read(&mut buf)?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                self.raw.extend_from_slice(&buf[..n]);
            }
        }
    }

    /// The next event, skipping comments.
    pub fn next_event(&mut self) -> io::Result<Event> {
        loop {
            let block = self.next_block()?;
            if !block.is_comment() {
                return Ok(block);
            }
        }
    }

    /// Moves whole chunks from `raw` to `text`; whether any moved. The
    /// last chunk is EOF.
    fn decode(&mut self) -> io::Result<bool> {
        if !self.chunked {
            let moved = !self.raw.is_empty();
            self.text.append(&mut self.raw);
            return Ok(moved);
        }
        let mut moved = false;
        while let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(&String::from_utf8_lossy(&self.raw[..eol]), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let data = eol + 2;
            if self.raw.len() < data + size + 2 {
                break;
            }
            self.text.extend_from_slice(&self.raw[data..data + size]);
            self.raw.drain(..data + size + 2);
            moved = true;
        }
        Ok(moved)
    }

    /// Whether the server ends the stream (EOF, its last chunk, or a
    /// reset) within [`TIMEOUT`](crate::TIMEOUT), skipping blocks until then.
    pub fn ends(&mut self) -> bool {
        loop {
            match self.next_block() {
                Ok(_) => {}
                Err(e) => {
                    return !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    )
                }
            }
        }
    }
}

/// Sends `POST /publish/<topic>`-style requests: a POST of `body` to
/// `path`, returning the status.
pub fn post(addr: SocketAddr, path: &str, body: &str) -> u16 {
    let mut c = Client::connect(addr);
    c.stream
        .write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .expect("send");
    c.read_response().status
}
