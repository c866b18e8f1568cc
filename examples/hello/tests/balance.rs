//! The shared-listener balancing mode with real worker processes: every
//! worker accepts from one queue, so a worker blocked in a slow handler
//! takes no new connection and the free ones serve them all; on Linux the
//! workers register that socket level-triggered with `EPOLLEXCLUSIVE`
//! (checked in the kernel's own account of each worker's epoll set).

// /proc and epoll: what this file checks is Linux's.
#![cfg(target_os = "linux")]

use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

use testkit::load::{spread, try_get, PID_PATH};
use testkit::procs::{heavy, thread_name, ServerTree};
use testkit::{wait_until, Client};

const HELLO: &str = env!("CARGO_BIN_EXE_hello");
/// Bound of every wait for the processes to reach a state.
const T: Duration = Duration::from_secs(10);

/// Starts `workers` workers of hello sharing one listener.
fn shared(workers: usize) -> (ServerTree, BTreeSet<i32>) {
    let n = workers.to_string();
    let s = ServerTree::start(
        HELLO,
        &[
            "--bind",
            "127.0.0.1:0",
            "--workers",
            &n,
            "--balance",
            "shared",
        ],
    );
    let kids = s.wait_ready(workers, T);
    assert!(
        s.stderr().contains("(one shared listener)"),
        "{}",
        s.stderr()
    );
    (s, kids)
}

fn sleeping(kids: &BTreeSet<i32>) -> BTreeSet<i32> {
    kids.iter()
        .copied()
        .filter(|&p| thread_name(p).as_deref() == Some("sleeping"))
        .collect()
}

#[test]
fn with_three_of_four_workers_blocked_the_free_one_serves_every_new_connection() {
    let _heavy = heavy();
    let (s, kids) = shared(4);
    let addr = s.addr();
    // Three workers blocked in a handler far longer than the test: each
    // /block goes out once the previous one is being slept in, so each
    // lands on a different (free) worker.
    let mut held = Vec::new();
    for n in 1..=3 {
        let mut c = Client::connect(addr);
        c.send(b"GET /block?ms=120000 HTTP/1.1\r\nHost: t\r\n\r\n");
        held.push(c);
        assert!(
            wait_until(T, || sleeping(&kids).len() == n),
            "{n} workers never blocked: {:?}",
            sleeping(&kids)
        );
    }
    let blocked = sleeping(&kids);
    let free: BTreeSet<i32> = kids.difference(&blocked).copied().collect();
    assert_eq!(free.len(), 1, "{kids:?} {blocked:?}");

    // Every fresh connection is served, by the free worker: a blocked one
    // would not answer within the client's timeout (the blocks outlast
    // it by far), and with one reuseport queue per worker three in four
    // of these connections would wait in a blocked worker's queue.
    for i in 0..60 {
        let r = try_get(addr, PID_PATH)
            .unwrap_or_else(|e| panic!("request {i} failed: {e}\n{}", s.stderr()));
        assert_eq!(r.status, 200);
        let pid = r.pid().expect("a pid");
        assert!(free.contains(&pid), "request {i}: {pid} is not in {free:?}");
    }
    assert_eq!(
        sleeping(&kids),
        blocked,
        "the blocked workers are still blocked"
    );
    drop(held);
    // The server is killed when `s` is dropped (its workers are blocked
    // for two minutes; a graceful stop would wait for them).
}

#[test]
fn idle_workers_take_turns_on_the_shared_listener() {
    let _heavy = heavy();
    let (s, kids) = shared(4);
    // Sequential connections, each closed once answered: every worker is
    // idle in epoll_wait when the next arrives. The kernel wakes the
    // first waiter in its queue; without turns, one worker takes them all.
    let by_pid = spread(s.addr(), 80);
    assert!(
        by_pid.keys().all(|p| kids.contains(p)),
        "{by_pid:?} not in {kids:?}"
    );
    assert_eq!(by_pid.len(), 4, "every worker takes some: {by_pid:?}");
    // Keep-alive connections opened one after another end up on several
    // workers too (a connection stays with the worker that accepted it).
    let mut held = Vec::new();
    let mut holders = BTreeSet::new();
    for _ in 0..8 {
        let mut c = Client::connect(s.addr());
        holders.insert(c.get(PID_PATH).pid().expect("a pid"));
        held.push(c);
    }
    assert!(
        holders.len() >= 3,
        "8 keep-alive connections on {holders:?}"
    );
    drop(held);
    s.stop(T);
}

/// The flags of `fd`'s registration in each epoll instance of process
/// `pid` (`/proc/PID/fdinfo`: "tfd: FD events: HEX data: HEX").
fn epoll_flags(pid: i32, fd: i32) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return found;
    };
    for entry in dir.flatten() {
        let is_epoll = fs::read_link(entry.path())
            .is_ok_and(|l| l.to_string_lossy() == "anon_inode:[eventpoll]");
        if !is_epoll {
            continue;
        }
        let name = entry.file_name();
        let Ok(info) = fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", name.to_string_lossy()))
        else {
            continue;
        };
        for line in info.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let ["tfd:", tfd, "events:", events, ..] = words[..] {
                if tfd.parse() == Ok(fd) {
                    found.extend(u32::from_str_radix(events, 16).ok());
                }
            }
        }
    }
    found
}

const EPOLLIN: u32 = 0x1;
const EPOLLEXCLUSIVE: u32 = 1 << 28;
const EPOLLET: u32 = 1 << 31;

#[test]
fn each_worker_watches_the_shared_listener_level_triggered_and_exclusive() {
    let (s, kids) = shared(2);
    // Each worker registers when its loop starts; the master logs "ready"
    // after that, but ask the kernel until it says so.
    for &pid in &kids {
        let fds = fds_listening(pid, s.addr().port());
        assert_eq!(fds.len(), 1, "one shared listener: {fds:?}");
        let fd = fds[0];
        let mut flags = Vec::new();
        assert!(
            wait_until(T, || {
                flags = epoll_flags(pid, fd);
                !flags.is_empty()
            }),
            "worker {pid} does not watch its listener (fd {fd})"
        );
        assert_eq!(flags.len(), 1, "{flags:?}");
        let f = flags[0];
        assert_eq!(
            f & (EPOLLIN | EPOLLEXCLUSIVE),
            EPOLLIN | EPOLLEXCLUSIVE,
            "{f:#x}"
        );
        assert_eq!(f & EPOLLET, 0, "edge-triggered: {f:#x}");
    }
    // Still serving, from both workers' one queue.
    let r = try_get(s.addr(), PID_PATH).unwrap();
    assert!(kids.contains(&r.pid().unwrap()));
    s.stop(T);
}

#[test]
fn reuseport_workers_keep_mios_edge_triggered_registration() {
    let s = ServerTree::start_workers(HELLO, 2, &["--balance", "reuseport"]);
    let kids = s.wait_ready(2, T);
    assert!(
        s.stderr().contains("(a reuseport listener each)"),
        "{}",
        s.stderr()
    );
    let port = s.addr().port();
    // Each worker holds both group members but watches only its own:
    // exactly one of the listening sockets is in its epoll set,
    // edge-triggered and without EPOLLEXCLUSIVE.
    for &pid in &kids {
        let mut watched = Vec::new();
        assert!(
            wait_until(T, || {
                watched = fds_listening(pid, port)
                    .into_iter()
                    .flat_map(|fd| epoll_flags(pid, fd))
                    .collect();
                !watched.is_empty()
            }),
            "worker {pid} watches no listener"
        );
        assert_eq!(watched.len(), 1, "{watched:?}");
        assert_eq!(watched[0] & EPOLLET, EPOLLET, "{:#x}", watched[0]);
        assert_eq!(watched[0] & EPOLLEXCLUSIVE, 0, "{:#x}", watched[0]);
    }
    s.stop(T);
}

/// Every descriptor of `pid` that is a socket listening on
/// 127.0.0.1:`port` (a reuseport group has several).
fn fds_listening(pid: i32, port: u16) -> Vec<i32> {
    let Ok(tcp) = fs::read_to_string("/proc/net/tcp") else {
        return Vec::new();
    };
    let local = format!("0100007F:{port:04X}");
    let inodes: BTreeSet<String> = tcp
        .lines()
        .skip(1)
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.get(1) == Some(&local.as_str()) && w.get(3) == Some(&"0A"))
                .then(|| Some(format!("socket:[{}]", w.get(9)?)))
                .flatten()
        })
        .collect();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| fs::read_link(e.path()).is_ok_and(|l| inodes.contains(&*l.to_string_lossy())))
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

#[test]
fn an_unknown_balance_is_refused_naming_the_flag() {
    let (status, stderr) = ServerTree::try_start(
        HELLO,
        &[
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--balance",
            "hash",
        ],
    )
    .expect_err("must fail");
    assert!(!status.success(), "{status}");
    assert!(stderr.contains("--balance"), "{stderr}");
    assert!(
        stderr.contains("reuseport") && stderr.contains("shared"),
        "{stderr}"
    );
}
