//! Multi-process servers (a master and its forked workers) seen from
//! outside: process-tree inspection through `/proc`, signals, and
//! [`ServerTree`], a harness that starts a server binary (never forking the
//! test process), captures its log, and makes sure that every process it
//! started, workers included, is gone when it is dropped.
//!
//! Every process a [`ServerTree`] starts carries a unique tag in its
//! environment ([`TAG_VAR`]), inherited by the workers the master forks, so
//! [`tagged`] finds them even after they were re-parented (orphans).

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

pub use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::{wait_until, ServerProcess};

/// Environment variable holding the tag of the processes a [`ServerTree`]
/// starts.
pub const TAG_VAR: &str = "TINE_TEST_TAG";

/// How long [`ServerTree::start`] waits for the `listening on` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One process, from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    /// Process id.
    pub pid: i32,
    /// Parent process id.
    pub ppid: i32,
    /// Process group id.
    pub pgrp: i32,
    /// State letter (`R`, `S`, `Z` for a zombie, ...).
    pub state: char,
}

impl Proc {
    /// Whether it has exited but not been reaped yet.
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }
}

/// The process `pid`, if it exists (zombies included).
pub fn proc_stat(pid: i32) -> Option<Proc> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces or parentheses: split after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(Proc {
        pid,
        ppid,
        pgrp,
        state,
    })
}

/// The name of process `pid`'s main thread (`/proc/PID/comm`), if it
/// exists. `hello`'s `/sleep` names it `sleeping` while it sleeps.
pub fn thread_name(pid: i32) -> Option<String> {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end_matches('\n').to_string())
}

/// Waits (up to `limit`) until one of `pids` is inside `hello`'s `/sleep`
/// handler; returns that pid.
pub fn wait_sleeping(pids: &BTreeSet<i32>, limit: Duration) -> Option<i32> {
    let mut found = None;
    crate::wait_until(limit, || {
        found = pids
            .iter()
            .copied()
            .find(|&p| thread_name(p).as_deref() == Some("sleeping"));
        found.is_some()
    });
    found
}

/// Every process in `/proc`.
pub fn processes() -> Vec<Proc> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(proc_stat)
        .collect()
}

/// Whether `pid` exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|p| !p.is_zombie())
}

/// Whether none of `pids` exists any more, not even as a zombie (they
/// exited and were reaped).
pub fn all_gone(pids: &BTreeSet<i32>) -> bool {
    pids.iter().all(|&p| proc_stat(p).is_none())
}

/// Child pids of `ppid`, zombies included, from the kernel's per-thread
/// `children` lists (falling back to a scan of `/proc`).
fn child_pids(ppid: i32) -> BTreeSet<i32> {
    let listed: Option<BTreeSet<i32>> =
        fs::read_dir(format!("/proc/{ppid}/task"))
            .ok()
            .map(|tasks| {
                tasks
                    .flatten()
                    .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
                    .flat_map(|c| {
                        c.split_whitespace()
                            .filter_map(|p| p.parse().ok())
                            .collect::<Vec<i32>>()
                    })
                    .collect()
            });
    listed.unwrap_or_else(|| {
        processes()
            .into_iter()
            .filter(|p| p.ppid == ppid)
            .map(|p| p.pid)
            .collect()
    })
}

/// Children of `ppid` in the given state (zombie or not), as two
/// consecutive readings agree: one reading is not atomic (a child may fork
/// or exit between listing the children and reading their states), and a
/// torn one could show, say, an old worker gone but not yet its
/// replacement.
fn stable_children(ppid: i32, zombie: bool) -> BTreeSet<i32> {
    let read = || -> BTreeSet<i32> {
        child_pids(ppid)
            .into_iter()
            .filter(|&c| proc_stat(c).is_some_and(|p| p.ppid == ppid && p.is_zombie() == zombie))
            .collect()
    };
    let mut last = read();
    for _ in 0..20 {
        let now = read();
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// Live (non-zombie) children of `ppid`.
pub fn children_of(ppid: i32) -> BTreeSet<i32> {
    stable_children(ppid, false)
}

/// Zombie children of `ppid`: exited, not yet reaped by it.
pub fn zombies_of(ppid: i32) -> BTreeSet<i32> {
    stable_children(ppid, true)
}

/// Live (non-zombie) processes whose environment has `TAG_VAR=tag`.
pub fn tagged(tag: &str) -> BTreeSet<i32> {
    let want = format!("{TAG_VAR}={tag}");
    processes()
        .into_iter()
        .filter(|p| !p.is_zombie())
        .filter(|p| {
            fs::read(format!("/proc/{}/environ", p.pid))
                .map(|env| env.split(|&b| b == 0).any(|kv| kv == want.as_bytes()))
                .unwrap_or(false)
        })
        .map(|p| p.pid)
        .collect()
}

/// Sends `sig` to `pid`.
pub fn signal(pid: i32, sig: Signal) -> nix::Result<()> {
    nix::sys::signal::kill(Pid::from_raw(pid), sig)
}

/// `SIGKILL`s every live process tagged `tag` until none is left (bounded:
/// 2 s); returns whether none is left.
pub fn kill_tagged(tag: &str) -> bool {
    wait_until(Duration::from_secs(2), || {
        let left = tagged(tag);
        for &pid in &left {
            let _ = signal(pid, Signal::SIGKILL);
        }
        left.is_empty()
    })
}

/// Number of IPv4 sockets listening on `port` (from `/proc/net/tcp`): each
/// member of a `SO_REUSEPORT` group counts once, however many processes
/// hold its descriptor.
pub fn listen_sockets(port: u16) -> usize {
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let want = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // local_address is field 1, state field 3 (0A = LISTEN).
            f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
        })
        .count()
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, or `VmHWM`: the peak
/// resident set), in KiB; 0 if the process or field is gone.
pub fn status_kib(pid: i32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Serializes, within one test binary, the tests that load the machine
/// (client load, many start-ups) so timing-sensitive assertions of one do
/// not suffer from another.
pub fn heavy() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn unique_tag() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "tinetest-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// What the reader threads collected from the server's output.
#[derive(Debug, Default)]
struct Output {
    /// stderr lines with their arrival time (since the spawn).
    log: Vec<(Duration, String)>,
    /// The address of the first `listening on http://ADDR` (or `https://`)
    /// line on stdout.
    addr: Option<SocketAddr>,
    /// Every such line's address, in order (one per listener).
    addrs: Vec<SocketAddr>,
    /// Every `listening on unix:PATH` line's path, in order.
    unix_paths: Vec<std::path::PathBuf>,
    /// stderr reached EOF: every process holding it is gone.
    log_closed: bool,
    /// stdout reached EOF.
    out_closed: bool,
    /// Every stdout line but the `listening on` ones (an access log on
    /// stdout), invalid UTF-8 replaced.
    out: Vec<String>,
    /// The reader threads read nothing while this is set (see
    /// [`ServerTree::hold_output`]).
    held: bool,
}

/// Reads one of the server's output streams into `output`. On stdout,
/// `on_listening` (a pid and a signal) is sent the moment the first
/// `listening on` line is read, by this thread, before anything else, and
/// `pause` (if any) is waited after every line: a slow reader, whose pipe
/// fills up.
fn read_lines(
    stream: impl Read + Send + 'static,
    output: Arc<Mutex<Output>>,
    start: Instant,
    stdout: bool,
    mut on_listening: Option<(i32, Signal)>,
    pause: Option<Duration>,
) {
    thread::spawn(move || {
        // A slow reader also reads in small pieces: a pipe's writer waiting
        // for room gets it a page at a time.
        let capacity = if pause.is_some() { 512 } else { 8192 };
        let mut reader = BufReader::with_capacity(capacity, stream);
        let mut line = Vec::new();
        loop {
            while output.lock().unwrap_or_else(|e| e.into_inner()).held {
                thread::sleep(Duration::from_millis(2));
            }
            if reader.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                break;
            }
            if line.starts_with(b"listening on ") {
                if let Some((pid, sig)) = on_listening.take() {
                    let _ = signal(pid, sig);
                }
            }
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            let mut out = output.lock().unwrap_or_else(|e| e.into_inner());
            if stdout {
                // Plain and TLS addresses alike, in the order announced.
                let addr = text
                    .strip_prefix("listening on http://")
                    .or_else(|| text.strip_prefix("listening on https://"));
                if let Some(addr) = addr {
                    out.addr = out.addr.or(addr.parse().ok());
                    out.addrs.extend(addr.parse::<SocketAddr>().ok());
                }
                if let Some(path) = text.strip_prefix("listening on unix:") {
                    out.unix_paths.push(path.into());
                }
                if !text.starts_with("listening on ") {
                    out.out.push(text);
                }
            } else {
                out.log.push((start.elapsed(), text));
            }
            drop(out);
            line.clear();
            if let Some(pause) = pause {
                thread::sleep(pause);
            }
        }
        let mut out = output.lock().unwrap_or_else(|e| e.into_inner());
        if stdout {
            out.out_closed = true;
        } else {
            out.log_closed = true;
        }
    });
}

/// A server binary running as a master process with forked workers (or as
/// a single process), started with a unique tag; see the module docs.
///
/// Dropping it `SIGKILL`s the master, then every process still carrying
/// its tag (workers normally die with the master through
/// `PR_SET_PDEATHSIG`; this does not rely on it). On a panic the captured
/// log is printed.
#[derive(Debug)]
pub struct ServerTree {
    /// The master process. Its `addr` is only meaningful once the server
    /// announced it (see [`ServerTree::addr`]).
    pub server: ServerProcess,
    /// The tag in the environment of its processes.
    pub tag: String,
    output: Arc<Mutex<Output>>,
    /// A directory to remove once the server is gone (a copy of the binary
    /// made for another user).
    scratch: Option<std::path::PathBuf>,
}

impl ServerTree {
    /// Starts `bin` with exactly `args` and returns at once, without
    /// waiting for the `listening on` line ([`ServerTree::addr`] panics
    /// until [`ServerTree::listening`] reports it).
    ///
    /// stdin is closed; stdout and stderr are captured. `RUST_LOG=info`,
    /// uncoloured; `TINE_WORKERS` is removed so `--workers` applies. Core
    /// dumps are disabled in the test process (and so in its children):
    /// `SIGQUIT` before the master takes its signals over would dump one.
    /// The rest of the environment is inherited (so the whole suite can be
    /// run with, say, `TINE_PORTABLE_SIGNALS=1`).
    pub fn spawn(bin: &str, args: &[&str]) -> ServerTree {
        ServerTree::spawn_env(bin, args, &[])
    }

    /// [`ServerTree::spawn`] with `env` (name, value) added to the
    /// environment of the server.
    pub fn spawn_env(bin: &str, args: &[&str], env: &[(&str, &str)]) -> ServerTree {
        ServerTree::spawn_signalled(bin, args, env, None, None, None)
    }

    /// [`ServerTree::start`] with the server's `RLIMIT_NOFILE` (soft and
    /// hard) set to `nofile`, in the child between fork and exec: the
    /// server process is limited, not this test process (whose other
    /// tests run on with its own limit). The server cannot raise a hard
    /// limit, so it runs with exactly `nofile` descriptors.
    pub fn start_with_open_file_limit(bin: &str, nofile: u64, args: &[&str]) -> ServerTree {
        let mut tree = ServerTree::spawn_signalled(bin, args, &[], None, None, Some(nofile));
        assert!(
            wait_until(START_TIMEOUT, || tree.listening().is_some()),
            "{bin} never announced its address:\n{}",
            tree.stderr()
        );
        tree
    }

    /// [`ServerTree::start_workers`] whose stdout pipe is read slowly: a
    /// pause of `pause` after every line, so that the pipe fills up and
    /// the server's writes to it wait (see [`ServerTree::stdout_lines`]).
    pub fn start_workers_slow_stdout(
        bin: &str,
        workers: usize,
        extra: &[&str],
        pause: Duration,
    ) -> ServerTree {
        let n = workers.to_string();
        let mut args = vec!["--bind", "127.0.0.1:0", "--workers", &n];
        args.extend_from_slice(extra);
        let mut tree = ServerTree::spawn_signalled(bin, &args, &[], None, Some(pause), None);
        assert!(
            wait_until(START_TIMEOUT, || tree.listening().is_some()),
            "{bin} never announced its address:\n{}",
            tree.stderr()
        );
        tree
    }

    /// [`ServerTree::spawn_env`] that sends `sig` to the server the moment
    /// it prints its first `listening on` line, from the thread reading its
    /// stdout (no polling delay): what a supervisor that stops a server as
    /// soon as it is up does, at the earliest moment it can.
    pub fn spawn_signal_on_listening(
        bin: &str,
        args: &[&str],
        env: &[(&str, &str)],
        sig: Signal,
    ) -> ServerTree {
        ServerTree::spawn_signalled(bin, args, env, Some(sig), None, None)
    }

    fn spawn_signalled(
        bin: &str,
        args: &[&str],
        env: &[(&str, &str)],
        on_listening: Option<Signal>,
        stdout_pause: Option<Duration>,
        nofile: Option<u64>,
    ) -> ServerTree {
        let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
        let tag = unique_tag();
        let start = Instant::now();
        let mut command = Command::new(bin);
        if let Some(n) = nofile {
            limit_open_files(&mut command, n);
        }
        let mut child = command
            .args(args)
            .env(TAG_VAR, &tag)
            .env("RUST_LOG", "info")
            .env("RUST_LOG_STYLE", "never")
            .env_remove("TINE_WORKERS")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let output = Arc::new(Mutex::new(Output::default()));
        let pid = child.id() as i32;
        if let Some(out) = child.stdout.take() {
            let on_listening = on_listening.map(|sig| (pid, sig));
            read_lines(out, output.clone(), start, true, on_listening, stdout_pause);
        }
        if let Some(err) = child.stderr.take() {
            read_lines(err, output.clone(), start, false, None, None);
        }
        ServerTree {
            server: ServerProcess {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            },
            tag,
            output,
            scratch: None,
        }
    }

    /// Starts `bin` with exactly `args` and waits (up to [`START_TIMEOUT`])
    /// for its `listening on http://ADDR` (or `unix:PATH`) line; `Err((status, stderr))` if
    /// it exits first.
    pub fn try_start(bin: &str, args: &[&str]) -> Result<ServerTree, (ExitStatus, String)> {
        ServerTree::try_start_env(bin, args, &[])
    }

    /// [`ServerTree::try_start`] with `env` added to the server's
    /// environment.
    pub fn try_start_env(
        bin: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<ServerTree, (ExitStatus, String)> {
        let mut tree = ServerTree::spawn_env(bin, args, env);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if tree.listening().is_some() || !tree.unix_paths().is_empty() {
                return Ok(tree);
            }
            if let Some(status) = tree.server.child.try_wait().expect("try_wait") {
                // Whatever it wrote before exiting is worth having, and it
                // may have announced its address just before exiting (the
                // reader threads can lag behind the exit).
                wait_until(Duration::from_secs(2), || {
                    let out = tree.lock();
                    out.log_closed && out.out_closed
                });
                if tree.listening().is_some() || !tree.unix_paths().is_empty() {
                    return Ok(tree);
                }
                return Err((status, tree.stderr()));
            }
            assert!(
                Instant::now() < deadline,
                "{bin} never announced its address:\n{}",
                tree.stderr()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts `bin` with exactly `args`, panicking with its log if it exits
    /// before announcing its address.
    pub fn start(bin: &str, args: &[&str]) -> ServerTree {
        ServerTree::start_env(bin, args, &[])
    }

    /// [`ServerTree::start`] with `env` added to the server's environment.
    pub fn start_env(bin: &str, args: &[&str], env: &[(&str, &str)]) -> ServerTree {
        ServerTree::try_start_env(bin, args, env)
            .unwrap_or_else(|(status, log)| panic!("{bin} exited early ({status}):\n{log}"))
    }

    /// Starts `bin --bind 127.0.0.1:0 --workers N EXTRA...`.
    pub fn start_workers(bin: &str, workers: usize, extra: &[&str]) -> ServerTree {
        let n = workers.to_string();
        let mut args = vec!["--bind", "127.0.0.1:0", "--workers", &n];
        args.extend_from_slice(extra);
        ServerTree::start(bin, &args)
    }

    /// The address from the `listening on` line, once it was printed (it
    /// also becomes [`ServerProcess::addr`]).
    pub fn listening(&mut self) -> Option<SocketAddr> {
        let addr = self.lock().addr;
        if let Some(addr) = addr {
            self.server.addr = addr;
        }
        addr
    }

    /// Every address announced so far (one `listening on` line each: the
    /// `--bind` address first, then each `--listen`).
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.lock().addrs.clone()
    }

    /// Every Unix socket path announced so far (`listening on unix:PATH`
    /// lines), in order.
    pub fn unix_paths(&self) -> Vec<std::path::PathBuf> {
        self.lock().unix_paths.clone()
    }

    /// Stops reading the server's stdout and stderr (`true`), as a log
    /// reader that got stuck would, so that the pipes fill up; or reads on
    /// (`false`). What was already read stays available.
    pub fn hold_output(&self, held: bool) {
        self.lock().held = held;
    }

    /// The address the server listens on.
    ///
    /// # Panics
    /// If it has not announced it (only possible after [`ServerTree::spawn`]).
    pub fn addr(&self) -> SocketAddr {
        let addr = self.lock().addr;
        addr.expect("the server has not announced its address yet")
    }

    /// The master's pid.
    pub fn pid(&self) -> i32 {
        self.server.pid()
    }

    /// Sends `sig` to the master.
    pub fn signal(&self, sig: Signal) {
        self.server.signal(sig);
    }

    /// Waits up to `limit` for the master to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.server.wait_exit(limit)
    }

    fn lock(&self) -> MutexGuard<'_, Output> {
        self.output.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The captured stderr so far.
    pub fn stderr(&self) -> String {
        let out = self.lock();
        let mut text = String::new();
        for (_, line) in &out.log {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// The stdout lines read so far, but the `listening on` ones (an
    /// access log on stdout, say).
    pub fn stdout_lines(&self) -> Vec<String> {
        self.lock().out.clone()
    }

    /// The captured stderr lines so far, each with the time it arrived
    /// (measured from the spawn, in the test process).
    pub fn log_lines(&self) -> Vec<(Duration, String)> {
        self.lock().log.clone()
    }

    /// Waits (up to `limit`) until every process holding the server's
    /// stderr has exited, so [`ServerTree::stderr`] is complete.
    pub fn wait_log_closed(&self, limit: Duration) -> bool {
        wait_until(limit, || self.lock().log_closed)
    }

    /// Waits until the log contains `needle`; returns the log, or panics
    /// with it.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> String {
        self.wait_log_count(needle, 1, limit)
    }

    /// Waits until the log contains `needle` at least `n` times; returns
    /// the log, or panics with it.
    pub fn wait_log_count(&self, needle: &str, n: usize, limit: Duration) -> String {
        if wait_until(limit, || self.stderr().matches(needle).count() >= n) {
            return self.stderr();
        }
        panic!(
            "the log never contained {needle:?} {n} time(s):\n{}",
            self.stderr()
        )
    }

    /// Live (non-zombie) children of the master.
    pub fn children(&self) -> BTreeSet<i32> {
        children_of(self.pid())
    }

    /// Children of the master that exited and were not reaped.
    pub fn zombies(&self) -> BTreeSet<i32> {
        zombies_of(self.pid())
    }

    /// Live processes carrying this server's tag: the master and its
    /// workers, including any that outlived the master.
    pub fn tagged(&self) -> BTreeSet<i32> {
        tagged(&self.tag)
    }

    /// Polls until `cond(children)` holds and returns the children, or
    /// panics naming `what`, with the log.
    pub fn wait_children(
        &self,
        limit: Duration,
        what: &str,
        cond: impl Fn(&BTreeSet<i32>) -> bool,
    ) -> BTreeSet<i32> {
        let mut last = BTreeSet::new();
        if wait_until(limit, || {
            last = self.children();
            cond(&last)
        }) {
            return last;
        }
        panic!(
            "timed out waiting for {what}; children now {last:?}\n--- log ---\n{}",
            self.stderr()
        )
    }

    /// Waits until the master has exactly `n` live children.
    pub fn wait_count(&self, n: usize, limit: Duration) -> BTreeSet<i32> {
        self.wait_children(limit, &format!("{n} workers"), |c| c.len() == n)
    }

    /// Pids the master logged as ready (`worker K (pid P) ready`).
    pub fn ready_pids(&self) -> BTreeSet<i32> {
        self.lock()
            .log
            .iter()
            .filter(|(_, l)| l.ends_with(") ready"))
            .filter_map(|(_, l)| l.rsplit("(pid ").next()?.split(')').next()?.parse().ok())
            .collect()
    }

    /// Waits until the master has exactly `n` live children, all of them
    /// logged as ready; returns them, or panics with the log.
    pub fn wait_ready(&self, n: usize, limit: Duration) -> BTreeSet<i32> {
        let mut kids = BTreeSet::new();
        if wait_until(limit, || {
            kids = self.children();
            let ready = self.ready_pids();
            kids.len() == n && kids.is_subset(&ready)
        }) {
            return kids;
        }
        panic!(
            "{n} ready workers never showed up (children {kids:?}, ready {:?}):\n{}",
            self.ready_pids(),
            self.stderr()
        )
    }

    /// Graceful stop: `SIGTERM` to the master, then asserts that it exits
    /// with status 0 within `limit` and leaves no process behind.
    pub fn stop(mut self, limit: Duration) {
        self.signal(Signal::SIGTERM);
        let status = self.wait_exit(limit).unwrap_or_else(|| {
            panic!(
                "the master did not exit within {limit:?}:\n{}",
                self.stderr()
            )
        });
        assert!(status.success(), "{status}\n{}", self.stderr());
        let left = self.tagged();
        assert!(left.is_empty(), "left behind: {left:?}\n{}", self.stderr());
    }
}

impl Drop for ServerTree {
    #[allow(clippy::print_stderr)]
    fn drop(&mut self) {
        // Whether the master had already exited (a crash, say) before the
        // test gave up on it: worth saying in a failure's report.
        let exited = self.server.child.try_wait().ok().flatten();
        let _ = self.server.child.kill();
        let _ = self.server.child.wait();
        let clean = kill_tagged(&self.tag);
        if thread::panicking() {
            // Every process is gone: the log is complete once the reader
            // thread has caught up (it may lag on a loaded machine).
            self.wait_log_closed(Duration::from_secs(2));
            if let Some(status) = exited {
                eprintln!("the master had already exited: {status}");
            }
            eprintln!(
                "--- log of the server (tag {}) ---\n{}",
                self.tag,
                self.stderr()
            );
        }
        if !clean {
            eprintln!("processes tagged {} survived SIGKILL", self.tag);
        }
        if let Some(dir) = self.scratch.take() {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// Sets `RLIMIT_NOFILE` to `n` (soft and hard) in the child `command`
/// starts, after its fork and before its exec.
#[allow(unsafe_code)]
fn limit_open_files(command: &mut Command, n: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: it makes one `setrlimit` system
    // call and allocates nothing (the error is a plain errno).
    // `rlim_t` is unsigned on Linux, signed on FreeBSD.
    let n = n as nix::libc::rlim_t;
    unsafe {
        command.pre_exec(move || {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, n, n)
                .map_err(std::io::Error::from)
        });
    }
}

/// The unprivileged user and group the process-limited server runs as
/// (`nobody`/`nogroup` on Debian; numeric, so no name lookup can fail).
const NOBODY: u32 = 65534;

/// Why [`ServerTree::start_with_process_limit`] cannot run here, if it
/// cannot: it needs root (to switch to `nobody`) and util-linux's
/// `setpriv` and `prlimit`.
pub fn process_limit_unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root (needed to run the server as nobody)".into());
    }
    for tool in ["setpriv", "prlimit"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("{tool} (util-linux) is not installed"));
        }
    }
    None
}

/// `setpriv` arguments that run a command as [`NOBODY`].
fn as_nobody() -> [String; 3] {
    [
        format!("--reuid={NOBODY}"),
        format!("--regid={NOBODY}"),
        "--clear-groups".to_owned(),
    ]
}

/// Whether [`NOBODY`] may execute `bin` (the file and every directory
/// above it).
fn nobody_can_run(bin: &str) -> bool {
    Command::new("setpriv")
        .args(as_nobody())
        .args(["test", "-x", bin])
        .status()
        .is_ok_and(|s| s.success())
}

/// A process of `nobody` that only sleeps: started before
/// [`ServerTree::start_with_process_limit`], it takes one process of that
/// server's limit, and gives it back when dropped (killed and reaped), so
/// that a test can let one more fork succeed at a moment of its choosing
/// (raising the server's limit instead would need `CAP_SYS_RESOURCE`).
#[derive(Debug)]
pub struct ProcessSlot {
    child: std::process::Child,
}

impl ProcessSlot {
    /// Starts the process and waits until it runs as `nobody` (counted by
    /// the limit from then on).
    pub fn take() -> ProcessSlot {
        let child = Command::new("setpriv")
            .args(as_nobody())
            .args(["sleep", "600"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start setpriv sleep");
        let slot = ProcessSlot { child };
        let pid = slot.child.id();
        assert!(
            wait_until(Duration::from_secs(10), || real_uid(pid) == Some(NOBODY)),
            "pid {pid} never ran as nobody"
        );
        slot
    }
}

impl Drop for ProcessSlot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real user id of process `pid` (`None` once it is gone).
fn real_uid(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Number of tasks (threads included) owned by the real user `uid`: what
/// `RLIMIT_NPROC` counts.
fn tasks_of_user(uid: u32) -> usize {
    processes()
        .into_iter()
        .filter_map(|p| {
            let status = fs::read_to_string(format!("/proc/{}/status", p.pid)).ok()?;
            let real: u32 = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            let threads: usize = status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))?
                .trim()
                .parse()
                .ok()?;
            (real == uid).then_some(threads)
        })
        .sum()
}

impl ServerTree {
    /// Starts `bin ARGS...` as user `nobody` (uid and gid 65534) allowed at
    /// most `nproc` processes (`setpriv ... prlimit --nproc`), so that the
    /// master's forks beyond that fail with `EAGAIN`, as on a machine out
    /// of processes. Processes `nobody` already runs are added to the
    /// limit, and tests using this must not run at the same time (hold
    /// [`heavy`]). If `nobody` cannot execute `bin` where it is (a private
    /// target directory), a copy in a fresh temporary directory is run.
    ///
    /// Returns `None` after printing why when this machine cannot do it
    /// (see [`process_limit_unavailable`]); panics instead when `CI` is
    /// set, so CI never skips.
    #[allow(clippy::print_stderr)]
    pub fn start_with_process_limit(bin: &str, nproc: usize, args: &[&str]) -> Option<ServerTree> {
        if let Some(why) = process_limit_unavailable() {
            let msg = format!("SKIPPED: cannot limit the server's processes: {why}");
            assert!(std::env::var_os("CI").is_none(), "{msg}");
            eprintln!("{msg}");
            return None;
        }
        let mut scratch = None;
        let mut program = bin.to_owned();
        if !nobody_can_run(bin) {
            use std::os::unix::fs::PermissionsExt;
            let dir = std::env::temp_dir().join(unique_tag());
            fs::create_dir(&dir).expect("a scratch directory");
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
            let copy = dir.join("server");
            fs::copy(bin, &copy).expect("copy the server binary");
            fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("chmod");
            program = copy.to_string_lossy().into_owned();
            scratch = Some(dir);
        }
        let nproc_arg = format!("--nproc={}", tasks_of_user(NOBODY) + nproc);
        let mut full: Vec<String> = as_nobody().into();
        full.extend(["prlimit".to_owned(), nproc_arg, program]);
        full.extend(args.iter().map(|a| (*a).to_owned()));
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        let mut tree = ServerTree::start("setpriv", &full);
        tree.scratch = scratch;
        Some(tree)
    }
}
