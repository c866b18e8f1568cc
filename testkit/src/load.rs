//! Clients for multi-worker servers: fallible requests, a reconnecting
//! keep-alive client, per-worker connections, and a bounded background
//! load that counts every failure. All of them talk to 127.0.0.1 only and
//! bound every wait.
//!
//! They rely on a route answering the serving process's pid as its body
//! (`GET /pid` of the `hello` example).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::{get, wait_until, Client, Resp, TIMEOUT};

/// The route answering the serving process's pid.
pub const PID_PATH: &str = "/pid";

impl Resp {
    /// The body parsed as a pid (`GET /pid`).
    pub fn pid(&self) -> Option<i32> {
        self.text().trim().parse().ok()
    }

    /// Whether the response says `Connection: close`.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

impl Client {
    /// Like [`Client::connect`], but returns the error instead of panicking.
    pub fn try_connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: Vec::new(),
        })
    }

    /// Sends a GET (adding `Connection: close` if `close`) and reads the
    /// response, returning any error instead of panicking.
    pub fn try_get(&mut self, path: &str, close: bool) -> io::Result<Resp> {
        let extra = if close { "Connection: close\r\n" } else { "" };
        self.stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n").as_bytes())?;
        self.try_read_response(false)
    }

    /// Whether the server closes the connection (EOF or reset) within
    /// `limit`, sending nothing more. Unlike [`Client::is_closed`], a
    /// connection still open when `limit` passes counts as open.
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let deadline = Instant::now() + limit;
        let mut byte = [0u8; 1];
        let closed = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            let _ = self.stream.set_read_timeout(Some(left));
            match self.stream.read(&mut byte) {
                Ok(0) => break true,
                Ok(_) => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break false
                }
                Err(_) => break true,
            }
        };
        let _ = self.stream.set_read_timeout(Some(TIMEOUT));
        closed
    }
}

/// One GET on a fresh connection that asks the server to close it
/// (`Connection: close`); errors are returned, not panics.
pub fn try_get(addr: SocketAddr, path: &str) -> io::Result<Resp> {
    Client::try_connect(addr)?.try_get(path, true)
}

/// The pid serving `GET /pid` on a fresh connection (panics on failure).
pub fn pid_of_fresh_connection(addr: SocketAddr) -> i32 {
    let r = get(addr, PID_PATH);
    assert_eq!(r.status, 200, "{}", r.text());
    r.pid().expect("a pid")
}

/// Requests per pid over `n` fresh connections (panics on any failure).
pub fn spread(addr: SocketAddr, n: usize) -> BTreeMap<i32, usize> {
    let mut by_pid = BTreeMap::new();
    for _ in 0..n {
        *by_pid.entry(pid_of_fresh_connection(addr)).or_default() += 1;
    }
    by_pid
}

/// One kept-alive connection to each of `pids` (the kernel spreads new
/// connections over the workers' listeners): opens up to `max_attempts`
/// connections, keeping the first one each worker answers on. Panics if
/// some worker never answered.
pub fn connection_per_worker(
    addr: SocketAddr,
    pids: &BTreeSet<i32>,
    max_attempts: usize,
) -> BTreeMap<i32, Client> {
    let mut conns = BTreeMap::new();
    for _ in 0..max_attempts {
        if conns.len() == pids.len() {
            break;
        }
        let mut c = Client::connect(addr);
        let r = c.get(PID_PATH);
        assert!(!r.closes(), "the server closed a keep-alive connection");
        let pid = r.pid().expect("a pid");
        assert!(pids.contains(&pid), "pid {pid} is not one of {pids:?}");
        conns.entry(pid).or_insert(c);
    }
    assert_eq!(
        conns.len(),
        pids.len(),
        "not every worker got one of {max_attempts} connections"
    );
    conns
}

/// A kept-alive connection that reconnects after the server closed it
/// (`Connection: close` or an error).
#[derive(Debug)]
pub struct KeepAlive {
    addr: SocketAddr,
    conn: Option<Client>,
    /// Connections opened so far.
    pub connections: usize,
}

impl KeepAlive {
    /// No connection is opened before the first request.
    pub fn new(addr: SocketAddr) -> KeepAlive {
        KeepAlive {
            addr,
            conn: None,
            connections: 0,
        }
    }

    /// Sends a GET on the current connection (opening one if needed).
    pub fn get(&mut self, path: &str) -> io::Result<Resp> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => {
                self.connections += 1;
                Client::try_connect(self.addr)?
            }
        };
        let res = conn.try_get(path, false);
        if matches!(&res, Ok(r) if !r.closes()) {
            self.conn = Some(conn);
        }
        res
    }
}

/// What a [`Load`] saw.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// Requests answered 200 with a pid.
    pub ok: usize,
    /// Requests that failed in any way.
    pub failed: usize,
    /// Failures that were connection resets.
    pub resets: usize,
    /// Requests sent on a fresh connection each.
    pub fresh: usize,
    /// Requests sent on kept-alive connections.
    pub kept_alive: usize,
    /// Connections opened by the kept-alive clients.
    pub keep_alive_connections: usize,
    /// Successful requests per serving pid.
    pub by_pid: BTreeMap<i32, usize>,
    /// The first failures, described.
    pub errors: Vec<String>,
}

impl LoadReport {
    const MAX_ERRORS: usize = 20;

    /// One line for a test's output: counts, failures, resets and the
    /// requests served per pid.
    pub fn summary(&self) -> String {
        format!(
            "{} ok ({} fresh, {} kept-alive over {} connections), {} failed, {} resets; per pid {:?}",
            self.ok,
            self.fresh,
            self.kept_alive,
            self.keep_alive_connections,
            self.failed,
            self.resets,
            self.by_pid
        )
    }

    /// Prints the [`summary`](LoadReport::summary) headed by `what`, then
    /// asserts that no request failed and no connection was reset.
    #[allow(clippy::print_stdout)]
    pub fn assert_clean(&self, what: &str) {
        println!("{what}: {}", self.summary());
        assert_eq!(self.failed, 0, "{what}: failures {:?}", self.errors);
        assert_eq!(self.resets, 0, "{what}: resets {:?}", self.errors);
    }

    fn merge(&mut self, other: LoadReport) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.resets += other.resets;
        self.fresh += other.fresh;
        self.kept_alive += other.kept_alive;
        self.keep_alive_connections += other.keep_alive_connections;
        for (pid, n) in other.by_pid {
            *self.by_pid.entry(pid).or_default() += n;
        }
        for e in other.errors {
            if self.errors.len() < Self::MAX_ERRORS {
                self.errors.push(e);
            }
        }
    }

    fn record(&mut self, res: io::Result<Resp>) {
        match res {
            Ok(r) if r.status == 200 && r.pid().is_some_and(|p| p > 0) => {
                self.ok += 1;
                *self.by_pid.entry(r.pid().unwrap_or(0)).or_default() += 1;
            }
            Ok(r) => {
                self.failed += 1;
                if self.errors.len() < Self::MAX_ERRORS {
                    self.errors.push(format!("{} {:?}", r.status, r.text()));
                }
            }
            Err(e) => {
                self.failed += 1;
                if e.kind() == io::ErrorKind::ConnectionReset {
                    self.resets += 1;
                }
                if self.errors.len() < Self::MAX_ERRORS {
                    self.errors.push(format!("{:?}: {e}", e.kind()));
                }
            }
        }
    }
}

/// Background client load on `GET /pid`: `fresh` threads opening one
/// connection per request and `kept` threads reusing connections, each
/// until [`Load::finish`], `max_per_thread` requests or `max_time`.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    fresh_done: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<LoadReport>>,
}

impl Load {
    /// Starts the client threads.
    pub fn start(
        addr: SocketAddr,
        fresh: usize,
        kept: usize,
        max_per_thread: usize,
        max_time: Duration,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let fresh_done = Arc::new(AtomicUsize::new(0));
        let threads = (0..fresh + kept)
            .map(|i| {
                let (stop, done, fresh_done) = (stop.clone(), done.clone(), fresh_done.clone());
                let keep = i >= fresh;
                thread::spawn(move || {
                    let end = Instant::now() + max_time;
                    let mut rep = LoadReport::default();
                    let mut ka = KeepAlive::new(addr);
                    for _ in 0..max_per_thread {
                        if stop.load(Ordering::Relaxed) || Instant::now() >= end {
                            break;
                        }
                        if keep {
                            rep.record(ka.get(PID_PATH));
                            rep.kept_alive += 1;
                        } else {
                            rep.record(try_get(addr, PID_PATH));
                            rep.fresh += 1;
                            fresh_done.fetch_add(1, Ordering::Relaxed);
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    rep.keep_alive_connections = ka.connections;
                    rep
                })
            })
            .collect();
        Load {
            stop,
            done,
            fresh_done,
            threads,
        }
    }

    /// Requests completed so far (successful or not).
    pub fn done(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    /// Waits (up to `limit`) until at least `n` requests are done.
    pub fn wait_done(&self, n: usize, limit: Duration) -> bool {
        self.wait_done_fresh(n, 0, limit)
    }

    /// Waits (up to `limit`) until at least `n` requests, `fresh` of them
    /// on fresh connections, are done.
    pub fn wait_done_fresh(&self, n: usize, fresh: usize, limit: Duration) -> bool {
        wait_until(limit, || {
            self.done() >= n && self.fresh_done.load(Ordering::Relaxed) >= fresh
        })
    }

    /// Stops the clients and returns what they saw.
    pub fn finish(mut self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut rep = LoadReport::default();
        for t in std::mem::take(&mut self.threads) {
            rep.merge(t.join().expect("a load thread panicked"));
        }
        rep
    }
}

impl Drop for Load {
    /// Stops the clients (without waiting for them) if the test ended
    /// before [`Load::finish`], e.g. by panicking.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
