//! Open-loop HTTP/1.1 load client for the tail-latency scenario: fast
//! requests mixed with a few slow ones, at a fixed rate.
//!
//! ```text
//! openloop --addr 127.0.0.1:P --rate R --duration SECS [--warmup SECS]
//!          [--conns K] [--threads T] [--fast PATH] [--slow PATH] [--slow-every N]
//! ```
//!
//! * Request `i` is *scheduled* at `start + i / R`, whatever happened to the
//!   ones before it, and timed from that scheduled instant to its last
//!   response byte. A request that had to wait (for a free connection, or
//!   because the client itself fell behind) is counted with its wait: a
//!   stalled server cannot hide behind a stalled sender (no coordinated
//!   omission, unlike a closed loop such as wrk's).
//! * Every `N`th request (`--slow-every`, default 1000; 0: none) asks for
//!   `--slow` (default `/sleep?ms=20`), the others for `--fast` (default
//!   `/plaintext`); the two classes are reported apart.
//! * `--conns 0` (the default): a new connection per request, with
//!   `Connection: close`. `--conns K`: K keep-alive connections opened
//!   before the run; a request goes out on the connection that has been
//!   idle longest (a client pool), or waits in order for one to be free.
//! * `--threads T` (default 1) split the schedule (thread `k` sends the
//!   requests `i` with `i % T == k`) and the connections. Each thread is a
//!   mio loop woken for the next scheduled send by a `timerfd` (epoll's own
//!   timeout has millisecond steps, too coarse at these rates).
//! * Requests scheduled during the first `--warmup` seconds (default 1)
//!   are sent but not counted. Requests still unanswered 10 s after the
//!   last one was scheduled count as errors.
//!
//! Prints one line per class and one for the client:
//!
//! ```text
//! class=fast requests=.. errors=.. p50_us=.. p99_us=.. p999_us=.. max_us=..
//! class=slow requests=.. errors=.. p50_us=.. p99_us=.. p999_us=.. max_us=..
//! client sent=.. seconds=.. rate=.. lag_p99_us=.. lag_max_us=.. failed=.. bad_status=.. unanswered=..
//! ```
//!
//! `lag` is how late the client sent requests behind their schedule (a
//! health check of the client and of the machine: it is included in the
//! latencies, for every server alike). Errors, by kind: `failed` (refused,
//! reset or closed before the whole answer), `bad_status` (not a 200),
//! `unanswered` (still waiting at the end).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};
use slab::Slab;

const TIMER: Token = Token(usize::MAX);
/// How long requests may still be answered after the last was scheduled.
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Opts {
    addr: SocketAddr,
    rate: f64,
    duration: Duration,
    warmup: Duration,
    conns: usize,
    threads: usize,
    fast: String,
    slow: String,
    slow_every: u64,
}

fn parse_opts() -> Opts {
    let mut opts = Opts {
        addr: ([127, 0, 0, 1], 8080).into(),
        rate: 1000.0,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(1),
        conns: 0,
        threads: 1,
        fast: "/plaintext".into(),
        slow: "/sleep?ms=20".into(),
        slow_every: 1000,
    };
    let secs = |v: &str| -> Option<Duration> {
        v.trim_end_matches('s')
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| fail(&format!("{flag} needs a value")));
        let bad = || -> ! { fail(&format!("bad value for {flag}: {value}")) };
        match flag.as_str() {
            "--addr" => opts.addr = value.parse().unwrap_or_else(|_| bad()),
            "--rate" => opts.rate = value.parse().unwrap_or_else(|_| bad()),
            "--duration" => opts.duration = secs(&value).unwrap_or_else(|| bad()),
            "--warmup" => opts.warmup = secs(&value).unwrap_or_else(|| bad()),
            "--conns" => opts.conns = value.parse().unwrap_or_else(|_| bad()),
            "--threads" => opts.threads = value.parse().unwrap_or_else(|_| bad()),
            "--fast" => opts.fast = value.clone(),
            "--slow" => opts.slow = value.clone(),
            "--slow-every" => opts.slow_every = value.parse().unwrap_or_else(|_| bad()),
            _ => fail(&format!("unknown flag {flag}")),
        }
    }
    if !(opts.rate.is_finite() && opts.rate > 0.0) || opts.threads == 0 {
        fail("--rate must be positive and --threads at least 1");
    }
    if opts.conns > 0 {
        opts.threads = opts.threads.min(opts.conns);
    }
    opts
}

fn fail(msg: &str) -> ! {
    eprintln!(
        "openloop: {msg}\nusage: openloop --addr HOST:PORT --rate R --duration SECS [--warmup SECS] \
         [--conns K (0: a new connection per request)] [--threads T] [--fast PATH] [--slow PATH] \
         [--slow-every N (0: none)]"
    );
    std::process::exit(2)
}

/// One scheduled request.
#[derive(Clone, Copy)]
struct Req {
    sched: Instant,
    slow: bool,
    counted: bool,
}

struct Conn {
    stream: TcpStream,
    req: Option<Req>,
    /// Bytes of the request written so far.
    written: usize,
    resp: Vec<u8>,
}

/// What one class of requests saw.
#[derive(Default)]
struct Class {
    micros: Vec<u32>,
    errors: u64,
}

#[derive(Default)]
struct Tally {
    fast: Class,
    slow: Class,
    /// Microseconds each request was sent behind its schedule.
    lag: Vec<u32>,
    sent: u64,
    /// Errors by kind: the connection failed (refused, reset, closed
    /// early), the answer was not a 200, no answer before the end.
    failed: u64,
    bad_status: u64,
    unanswered: u64,
}

impl Tally {
    fn class(&mut self, slow: bool) -> &mut Class {
        if slow {
            &mut self.slow
        } else {
            &mut self.fast
        }
    }

    fn merge(&mut self, other: Tally) {
        self.fast.micros.extend(other.fast.micros);
        self.fast.errors += other.fast.errors;
        self.slow.micros.extend(other.slow.micros);
        self.slow.errors += other.slow.errors;
        self.lag.extend(other.lag);
        self.sent += other.sent;
        self.failed += other.failed;
        self.bad_status += other.bad_status;
        self.unanswered += other.unanswered;
    }
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

/// The response in `buf` is complete: `Some(status)`.
fn complete(buf: &[u8]) -> Option<u16> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let status = head.get(9..12)?.parse().ok()?;
    let mut length = None;
    let mut chunked = false;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let body = &buf[end..];
    let done = if chunked {
        body.ends_with(b"0\r\n\r\n")
    } else {
        body.len() >= length.unwrap_or(0)
    };
    done.then_some(status)
}

struct Worker {
    opts: Opts,
    index: usize,
    poll: Poll,
    timer: OwnedFd,
    conns: Slab<Conn>,
    /// Keep-alive connections with nothing in flight, longest idle first.
    idle: VecDeque<usize>,
    /// Requests waiting for a free keep-alive connection.
    waiting: VecDeque<Req>,
    fast_req: Vec<u8>,
    slow_req: Vec<u8>,
    tally: Tally,
}

impl Worker {
    fn new(opts: Opts, index: usize) -> io::Result<Worker> {
        let poll = Poll::new()?;
        let timer = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        poll.registry().register(
            &mut SourceFd(&timer.as_fd().as_raw_fd()),
            TIMER,
            Interest::READABLE,
        )?;
        let close = if opts.conns == 0 {
            "Connection: close\r\n"
        } else {
            ""
        };
        let request = |path: &str| {
            format!("GET {path} HTTP/1.1\r\nHost: {}\r\n{close}\r\n", opts.addr).into_bytes()
        };
        let (fast_req, slow_req) = (request(&opts.fast), request(&opts.slow));
        let mut w = Worker {
            opts,
            index,
            poll,
            timer,
            conns: Slab::new(),
            idle: VecDeque::new(),
            waiting: VecDeque::new(),
            fast_req,
            slow_req,
            tally: Tally::default(),
        };
        let mine = (0..w.opts.conns)
            .filter(|j| j % w.opts.threads == index)
            .count();
        for _ in 0..mine {
            let key = w.open_keepalive()?;
            w.idle.push_back(key);
        }
        Ok(w)
    }

    /// Opens one keep-alive connection (connected before the run starts).
    fn open_keepalive(&mut self) -> io::Result<usize> {
        let std = std::net::TcpStream::connect(self.opts.addr)?;
        std.set_nodelay(true)?;
        std.set_nonblocking(true)?;
        self.add(TcpStream::from_std(std))
    }

    fn add(&mut self, mut stream: TcpStream) -> io::Result<usize> {
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        entry.insert(Conn {
            stream,
            req: None,
            written: 0,
            resp: Vec::with_capacity(256),
        });
        Ok(key)
    }

    fn run(mut self, start: Instant) -> Tally {
        let opts = self.opts.clone();
        let total = (opts.rate * (opts.warmup + opts.duration).as_secs_f64()) as u64;
        let interval = 1.0 / opts.rate;
        let sched = |i: u64| start + Duration::from_secs_f64(i as f64 * interval);
        let counted_from = start + opts.warmup;
        let mut next = self.index as u64;
        let step = opts.threads as u64;
        let mut events = Events::with_capacity(1024);
        let deadline = sched(total) + DRAIN;
        loop {
            let now = Instant::now();
            while next < total && sched(next) <= now {
                let at = sched(next);
                let slow = opts.slow_every > 0 && next % opts.slow_every == opts.slow_every / 2;
                self.dispatch(
                    Req {
                        sched: at,
                        slow,
                        counted: at >= counted_from,
                    },
                    now,
                );
                next += step;
            }
            let timeout = if next < total {
                self.arm(sched(next).saturating_duration_since(Instant::now()));
                None
            } else if self.busy() && now < deadline {
                Some(deadline - now)
            } else {
                break;
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    fail(&format!("poll: {e}"));
                }
            }
            for event in events.iter() {
                match event.token() {
                    TIMER => {
                        let mut buf = [0u8; 8];
                        let _ = rustix::io::read(&self.timer, &mut buf);
                    }
                    Token(key) => self.progress(key),
                }
            }
        }
        // Whatever is still in flight or waiting never got its answer.
        let unanswered: Vec<Req> = self
            .conns
            .iter()
            .filter_map(|(_, c)| c.req)
            .chain(self.waiting.iter().copied())
            .collect();
        for req in unanswered.into_iter().filter(|r| r.counted) {
            self.tally.class(req.slow).errors += 1;
            self.tally.unanswered += 1;
        }
        self.tally
    }

    fn busy(&self) -> bool {
        !self.waiting.is_empty() || self.conns.iter().any(|(_, c)| c.req.is_some())
    }

    /// Wakes the loop after `after` (at once if zero).
    fn arm(&self, after: Duration) {
        let after = after.max(Duration::from_nanos(1));
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: after.as_secs() as _,
                tv_nsec: after.subsec_nanos() as _,
            },
        };
        if let Err(e) = timerfd_settime(&self.timer, TimerfdTimerFlags::empty(), &spec) {
            fail(&format!("timerfd_settime: {e}"));
        }
    }

    fn dispatch(&mut self, req: Req, now: Instant) {
        if self.opts.conns == 0 {
            self.note_sent(req, now);
            let key = match TcpStream::connect(self.opts.addr).and_then(|s| {
                s.set_nodelay(true)?;
                self.add(s)
            }) {
                Ok(key) => key,
                Err(_) => {
                    if req.counted {
                        self.tally.class(req.slow).errors += 1;
                        self.tally.failed += 1;
                    }
                    return;
                }
            };
            self.conns[key].req = Some(req);
            self.progress(key);
        } else if let Some(key) = self.idle.pop_front() {
            self.note_sent(req, now);
            self.conns[key].req = Some(req);
            self.progress(key);
        } else {
            self.waiting.push_back(req);
        }
    }

    fn note_sent(&mut self, req: Req, now: Instant) {
        self.tally.sent += 1;
        if req.counted {
            self.tally
                .lag
                .push(micros(now.saturating_duration_since(req.sched)));
        }
    }

    /// Writes what is left of the connection's request and reads what has
    /// arrived of its response.
    fn progress(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Some(req) = conn.req else {
            // An idle keep-alive connection: anything here is a close.
            let mut byte = [0u8; 1];
            match conn.stream.read(&mut byte) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                _ => self.replace(key),
            }
            return;
        };
        let bytes = if req.slow {
            &self.slow_req
        } else {
            &self.fast_req
        };
        let result = (|| -> io::Result<Option<u16>> {
            while conn.written < bytes.len() {
                match conn.stream.write(&bytes[conn.written..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => conn.written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    // Still connecting.
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(None),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            let mut buf = [0u8; 4096];
            loop {
                match conn.stream.read(&mut buf) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => {
                        conn.resp.extend_from_slice(&buf[..n]);
                        if let Some(status) = complete(&conn.resp) {
                            return Ok(Some(status));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        })();
        let done = match result {
            Ok(None) => return,
            Ok(Some(200)) => {
                if req.counted {
                    let took = micros(Instant::now().saturating_duration_since(req.sched));
                    self.tally.class(req.slow).micros.push(took);
                }
                true
            }
            Ok(Some(_)) => {
                if req.counted {
                    self.tally.class(req.slow).errors += 1;
                    self.tally.bad_status += 1;
                }
                false
            }
            Err(_) => {
                if req.counted {
                    self.tally.class(req.slow).errors += 1;
                    self.tally.failed += 1;
                }
                false
            }
        };
        if self.opts.conns == 0 {
            let mut conn = self.conns.remove(key);
            let _ = self.poll.registry().deregister(&mut conn.stream);
            return;
        }
        if !done {
            self.replace(key);
            return;
        }
        let conn = &mut self.conns[key];
        conn.req = None;
        conn.written = 0;
        conn.resp.clear();
        self.next_on(key);
    }

    /// A keep-alive connection is free: the oldest waiting request goes
    /// out on it, or it joins the idle ones.
    fn next_on(&mut self, key: usize) {
        match self.waiting.pop_front() {
            Some(req) => {
                self.note_sent(req, Instant::now());
                self.conns[key].req = Some(req);
                self.progress(key);
            }
            None => self.idle.push_back(key),
        }
    }

    /// A keep-alive connection failed or was closed: open another.
    fn replace(&mut self, key: usize) {
        let mut conn = self.conns.remove(key);
        let _ = self.poll.registry().deregister(&mut conn.stream);
        self.idle.retain(|&k| k != key);
        drop(conn);
        match self.open_keepalive() {
            Ok(new) => self.next_on(new),
            Err(e) => eprintln!("openloop: cannot reopen a connection: {e}"),
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn report(name: &str, class: &mut Class) {
    class.micros.sort_unstable();
    let m = &class.micros;
    println!(
        "class={name} requests={} errors={} p50_us={} p99_us={} p999_us={} max_us={}",
        m.len(),
        class.errors,
        pct(m, 0.50),
        pct(m, 0.99),
        pct(m, 0.999),
        m.last().copied().unwrap_or(0)
    );
}

fn main() {
    let opts = parse_opts();
    let workers: Vec<Worker> = (0..opts.threads)
        .map(|k| {
            Worker::new(opts.clone(), k)
                .unwrap_or_else(|e| fail(&format!("cannot connect to {}: {e}", opts.addr)))
        })
        .collect();
    // A shared start a little ahead, so every thread is ready for it.
    let start = Instant::now() + Duration::from_millis(50);
    let handles: Vec<_> = workers
        .into_iter()
        .map(|w| std::thread::spawn(move || w.run(start)))
        .collect();
    let mut tally = Tally::default();
    for h in handles {
        tally.merge(h.join().expect("a load thread panicked"));
    }
    let seconds = start.elapsed().as_secs_f64();
    report("fast", &mut tally.fast);
    report("slow", &mut tally.slow);
    tally.lag.sort_unstable();
    println!(
        "client sent={} seconds={seconds:.1} rate={} lag_p99_us={} lag_max_us={} \
         failed={} bad_status={} unanswered={}",
        tally.sent,
        opts.rate,
        pct(&tally.lag, 0.99),
        tally.lag.last().copied().unwrap_or(0),
        tally.failed,
        tally.bad_status,
        tally.unanswered
    );
}
