//! Shared helpers for tine's end-to-end tests: a raw HTTP/1.1 client that
//! speaks exact bytes (so tests can send malformed input), and a harness
//! that starts a server binary as a subprocess and drives it with signals.
//! Everything talks to 127.0.0.1 only, with bounded waits.

pub mod browser;
pub mod logs;
pub mod sse;
#[cfg(feature = "tls")]
pub mod tls;
pub mod unix;
pub mod ws;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Default read timeout of test clients: a hung server fails the test
/// instead of hanging it.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The decoded body.
    pub body: Vec<u8>,
}

impl Resp {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of a header.
    pub fn headers_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw HTTP/1.1 client over one TCP connection.
#[derive(Debug)]
pub struct Client {
    /// The connection.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects with [`TIMEOUT`] as read and write timeout.
    pub fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect"))
    }

    /// A client over a connection made elsewhere, with [`TIMEOUT`] as read
    /// and write timeout.
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Sends a GET with `Host` and returns the response.
    pub fn get(&mut self, path: &str) -> Resp {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        self.read_response()
    }

    fn fill(&mut self) -> io::Result<usize> {
        fill(&mut self.stream, &mut self.buf)
    }

    /// Reads one response (to a request that was not HEAD).
    pub fn read_response(&mut self) -> Resp {
        self.try_read_response(false).expect("read response")
    }

    /// Reads one response to a HEAD request (no body follows).
    pub fn read_head_response(&mut self) -> Resp {
        self.try_read_response(true).expect("read response")
    }

    /// Reads one response, or the I/O error (EOF is `UnexpectedEof`).
    pub fn try_read_response(&mut self, head: bool) -> io::Result<Resp> {
        read_response(&mut self.stream, &mut self.buf, head)
    }

    /// Whether nothing at all arrives within `limit`: no byte, and no
    /// close. The read timeout is [`TIMEOUT`] again afterwards.
    pub fn nothing_within(&mut self, limit: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        self.stream.set_read_timeout(Some(limit)).unwrap();
        let silent = matches!(
            self.fill(),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
        );
        self.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        silent
    }

    /// Shuts the sending side: the server reads the end of the stream,
    /// and this client can still read.
    pub fn shutdown_write(&mut self) {
        self.stream
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
    }

    /// Whether the server has closed the connection (EOF or reset) within
    /// [`TIMEOUT`], with no further response bytes. Still open when the
    /// read times out: `false`.
    pub fn is_closed(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        match self.fill() {
            Ok(n) => n == 0,
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
        }
    }
}

/// One GET on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> Resp {
    Client::connect(addr).get(path)
}

/// GETs `path` and parses its body of `name value` lines (a diagnostic
/// route such as `hello`'s `/pubsub/stats`) into a map.
pub fn counters(addr: SocketAddr, path: &str) -> std::collections::BTreeMap<String, u64> {
    let resp = get(addr, path);
    assert_eq!(resp.status, 200, "{path}: {}", resp.text());
    resp.text()
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(' ')?;
            Some((name.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// A server binary running as a child process; killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    /// The child.
    pub child: Child,
    /// The address it reported on stdout.
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `bin` with `args` and waits (bounded) for the line
    /// `listening on http://ADDR` on its stdout.
    pub fn start(bin: &str, args: &[&str]) -> ServerProcess {
        let mut child = Command::new(bin)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start server binary");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(addr) = line.trim().strip_prefix("listening on http://") {
                    let _ = tx.send(addr.parse::<SocketAddr>().ok());
                }
                line.clear();
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Some(addr)) => addr,
            other => {
                let _ = child.kill();
                panic!("server did not report its address: {other:?}");
            }
        };
        ServerProcess { child, addr }
    }

    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal to the child.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("kill");
    }

    /// Waits up to `limit` for the child to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `len` bytes that do not compress (a xorshift sequence from `seed`): a
/// body that compression makes no smaller, or that fills the sockets'
/// buffers with the least work.
pub fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

pub mod load;
pub mod procs;
pub mod redis;
pub mod systemd;

/// Reads once from `stream` into `buf`.
fn fill(stream: &mut dyn Read, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 16384];
    let n = stream.read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Reads one HTTP/1.1 response from `stream` (`buf` holds bytes already
/// read and keeps what follows the response); EOF is `UnexpectedEof`.
pub fn read_response(stream: &mut dyn Read, buf: &mut Vec<u8>, head: bool) -> io::Result<Resp> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(buf) {
            Ok(httparse::Status::Complete(n)) => {
                let status = parsed.code.unwrap_or(0);
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                buf.drain(..n);
                let mut resp = Resp {
                    status,
                    headers,
                    body: Vec::new(),
                };
                if head || status < 200 || status == 204 || status == 304 {
                    return Ok(resp);
                }
                if resp
                    .header("transfer-encoding")
                    .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
                {
                    resp.body = read_chunked(stream, buf)?;
                } else if let Some(len) = resp.header("content-length") {
                    let len: usize = len.parse().expect("numeric content-length");
                    while buf.len() < len {
                        if fill(stream, buf)? == 0 {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                    }
                    resp.body = buf.drain(..len).collect();
                } else {
                    while fill(stream, buf)? > 0 {}
                    resp.body = std::mem::take(buf);
                }
                return Ok(resp);
            }
            Ok(httparse::Status::Partial) => {
                if fill(stream, buf)? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        }
    }
}

fn read_chunked(stream: &mut dyn Read, buf: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            if fill(stream, buf)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        };
        let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        buf.drain(..line_end + 2);
        while buf.len() < size + 2 {
            if fill(stream, buf)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        if size == 0 {
            buf.drain(..2);
            return Ok(body);
        }
        body.extend(buf.drain(..size));
        buf.drain(..2);
    }
}
pub mod upgrade;
