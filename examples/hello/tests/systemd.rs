//! systemd integration seen from outside: `hello` started the way a socket
//! unit starts it (the listening socket inherited as fd 3, `LISTEN_FDS`,
//! `LISTEN_PID`), and its `sd_notify` messages read from a fake
//! `NOTIFY_SOCKET`.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::time::Duration;

use testkit::load::{connection_per_worker, Load, PID_PATH};
use testkit::procs::{heavy, listen_sockets, ServerTree, Signal};
use testkit::systemd::{
    spawn_activated, spawn_activated_with_a_bad_second_fd, ListenPid, NotifySocket,
};

const HELLO: &str = env!("CARGO_BIN_EXE_hello");
/// Bound of every wait for the processes to reach a state.
const T: Duration = Duration::from_secs(10);
/// Bound of a graceful stop without client connections.
const STOP: Duration = Duration::from_secs(10);

fn wait_listening(s: &mut ServerTree) -> std::net::SocketAddr {
    assert!(
        testkit::wait_until(T, || s.listening().is_some()),
        "hello never announced its address:\n{}",
        s.stderr()
    );
    s.addr()
}

/// hello started by "systemd" with `args` and a fresh listening socket as
/// fd 3 (`LISTEN_PID` its own): once it serves, only it holds the socket.
fn activated(args: &[&str]) -> (ServerTree, std::net::SocketAddr) {
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let inherited = socket.local_addr().unwrap();
    let mut s = spawn_activated(HELLO, args, &socket, ListenPid::Server, &[]);
    drop(socket);
    assert_eq!(wait_listening(&mut s), inherited, "{}", s.stderr());
    (s, inherited)
}

#[test]
fn an_inherited_socket_is_served_by_every_worker_and_bind_is_ignored() {
    let (s, inherited) = activated(&["--bind", "127.0.0.1:0", "--workers", "2"]);
    let kids = s.wait_ready(2, T);
    s.wait_log("socket activation: serving the 1 inherited socket(s)", T);
    s.wait_log("127.0.0.1:0 is ignored", T);
    assert_eq!(
        listen_sockets(inherited.port()),
        1,
        "nothing else was bound"
    );
    // Both workers accept from the one inherited queue.
    let conns = connection_per_worker(inherited, &kids, 2000);
    assert_eq!(conns.keys().copied().collect::<BTreeSet<_>>(), kids);
    let r = testkit::get(inherited, PID_PATH);
    assert_eq!(r.status, 200);
    drop(conns);
    s.stop(STOP);
}

#[test]
fn an_inherited_socket_serves_a_single_process() {
    let (s, inherited) = activated(&["--bind", "127.0.0.1:0", "--workers", "1"]);
    let r = testkit::get(inherited, PID_PATH);
    assert_eq!(r.pid(), Some(s.pid()), "the single process serves");
    s.stop(STOP);
}

#[test]
fn sockets_for_another_pid_are_ignored_with_a_warning() {
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let inherited = socket.local_addr().unwrap();
    let mut s = spawn_activated(
        HELLO,
        &["--bind", "127.0.0.1:0", "--workers", "2"],
        &socket,
        ListenPid::Other,
        &[],
    );
    let addr = wait_listening(&mut s);
    assert_ne!(addr, inherited, "it bound its own address");
    s.wait_log(
        "socket activation ignored: LISTEN_PID=1 names another process",
        T,
    );
    s.wait_ready(2, T);
    assert_eq!(testkit::get(addr, PID_PATH).status, 200);
    s.stop(STOP);
}

#[test]
fn a_socket_that_does_not_listen_is_ignored_with_a_warning() {
    // A UDP socket where a listening stream socket belongs.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut s = spawn_activated(
        HELLO,
        &["--bind", "127.0.0.1:0", "--workers", "2"],
        &udp,
        ListenPid::Server,
        &[],
    );
    let addr = wait_listening(&mut s);
    s.wait_log("socket activation ignored: fd 3 is not a stream socket", T);
    s.wait_ready(2, T);
    assert_eq!(testkit::get(addr, PID_PATH).status, 200);
    s.stop(STOP);
}

/// A socket unit whose second fd is no socket: the first, a good listening
/// socket, was kept open in the master and every worker and accepted on by
/// none (its clients hung in the queue, and it held the address). It is
/// closed before binding: no process of the server holds it.
#[test]
fn a_fallback_from_socket_activation_closes_the_inherited_sockets() {
    use std::os::unix::fs::MetadataExt;
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let inherited = socket.local_addr().unwrap();
    // The socket's inode, as /proc/PID/fd/N links name it.
    let fd_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&socket));
    let link = format!("socket:[{}]", std::fs::metadata(fd_path).unwrap().ino());
    let mut s = spawn_activated_with_a_bad_second_fd(
        HELLO,
        &["--bind", "127.0.0.1:0", "--workers", "2"],
        &socket,
    );
    let addr = wait_listening(&mut s);
    assert_ne!(addr, inherited, "it bound its own address");
    let log = s.wait_log("socket activation ignored: fd 4 is not a socket", T);
    assert!(
        log.contains("; closing the 1 inherited listening socket(s) and binding"),
        "{log}"
    );
    let kids = s.wait_ready(2, T);
    assert_eq!(testkit::get(addr, PID_PATH).status, 200);
    for pid in kids.iter().copied().chain([s.pid()]) {
        let holds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .any(|target| target.as_os_str() == link.as_str());
        assert!(!holds, "process {pid} still holds the inherited socket");
    }
    drop(socket);
    s.stop(STOP);
}

// --- sd_notify -------------------------------------------------------------

#[test]
fn the_master_announces_ready_reloading_ready_and_stopping() {
    let mut notify = NotifySocket::new();
    let s = ServerTree::start_env(
        HELLO,
        &["--bind", "127.0.0.1:0", "--workers", "2"],
        &[("NOTIFY_SOCKET", notify.path())],
    );
    notify.wait_for("READY=1", T);
    // Both workers had reported ready to the master by then.
    let kids = s.wait_ready(2, T);
    assert_eq!(notify.count("READY=1"), 1);

    s.signal(Signal::SIGHUP);
    let reloading = notify.wait_for("RELOADING=1", T);
    let usec = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"));
    assert!(usec.parse::<u64>().unwrap() > 0, "{reloading:?}");
    notify.wait_for("READY=1", T);
    // Every slot was replaced before the second READY=1.
    s.wait_log_count(") ready", 4, T);
    let after = s.wait_ready(2, T);
    assert!(after.is_disjoint(&kids), "{kids:?} -> {after:?}");
    assert_eq!(notify.count("RELOADING=1"), 1);

    s.signal(Signal::SIGTERM);
    notify.wait_for("STOPPING=1", T);
    s.stop(STOP);
}

#[test]
fn the_watchdog_beats_while_workers_serve() {
    let mut notify = NotifySocket::new();
    let s = ServerTree::start_env(
        HELLO,
        &["--bind", "127.0.0.1:0", "--workers", "2"],
        &[
            ("NOTIFY_SOCKET", notify.path()),
            // WATCHDOG=1 every 50 ms.
            ("WATCHDOG_USEC", "100000"),
        ],
    );
    notify.wait_for("READY=1", T);
    for _ in 0..3 {
        notify.wait_for("WATCHDOG=1", T);
    }
    s.stop(STOP);
}

#[test]
fn no_ready_and_no_watchdog_while_no_worker_comes_up() {
    let mut notify = NotifySocket::new();
    let s = ServerTree::start_env(
        HELLO,
        &[
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--crash-on-start",
        ],
        &[
            ("NOTIFY_SOCKET", notify.path()),
            ("WATCHDOG_USEC", "100000"),
        ],
    );
    // Crash-and-respawn rounds, each longer than the watchdog interval
    // (the backoff starts at 100 ms), until the master gives up.
    let mut s = s;
    let status = s.wait_exit(T).expect("the master gives up");
    assert!(!status.success(), "{}", s.stderr());
    assert!(s.stderr().contains("exit status 1"), "{}", s.stderr());
    notify.drain();
    assert_eq!(notify.count("READY=1"), 0, "{:?}", notify.seen);
    // No beat while no worker came up. (The stop that giving up starts
    // may beat, as every stop does while it drains, so that a long drain
    // is not taken for a hang.)
    let before_the_stop = notify
        .seen
        .iter()
        .take_while(|m| !m.contains("STOPPING=1"))
        .filter(|m| m.contains("WATCHDOG=1"))
        .count();
    assert_eq!(before_the_stop, 0, "{:?}", notify.seen);
}

#[test]
fn a_single_process_announces_ready_and_stopping() {
    let mut notify = NotifySocket::new();
    let s = ServerTree::start_env(
        HELLO,
        &["--bind", "127.0.0.1:0", "--workers", "1"],
        &[("NOTIFY_SOCKET", notify.path())],
    );
    notify.wait_for("READY=1", T);
    assert_eq!(testkit::get(s.addr(), PID_PATH).status, 200);
    s.signal(Signal::SIGTERM);
    notify.wait_for("STOPPING=1", T);
    s.stop(STOP);
}

#[test]
fn a_restart_on_a_kept_socket_loses_no_connection() {
    // What a socket unit gives a deploy: the socket outlives the service,
    // so stopping one binary and starting the next drops nothing; the
    // connections that arrive in between wait in the queue.
    let _serial = heavy();
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let args = ["--bind", "127.0.0.1:0", "--workers", "2"];
    let mut old = spawn_activated(HELLO, &args, &socket, ListenPid::Server, &[]);
    assert_eq!(wait_listening(&mut old), addr);
    let old_workers = old.wait_ready(2, T);

    let load = Load::start(addr, 4, 2, 100_000, Duration::from_secs(60));
    assert!(load.wait_done(500, T), "the load never got going");
    old.signal(Signal::SIGTERM);
    let status = old.wait_exit(STOP).expect("the old master exits");
    assert!(status.success(), "{status}\n{}", old.stderr());
    let before = load.done();

    let mut new = spawn_activated(HELLO, &args, &socket, ListenPid::Server, &[]);
    assert_eq!(wait_listening(&mut new), addr);
    let new_workers = new.wait_ready(2, T);
    assert!(
        load.wait_done(before + 500, T),
        "the load stalled after the restart"
    );
    let report = load.finish();
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(report.resets, 0, "{report:?}");
    let served: BTreeSet<i32> = report.by_pid.keys().copied().collect();
    assert!(!served.is_disjoint(&old_workers), "{report:?}");
    assert!(!served.is_disjoint(&new_workers), "{report:?}");
    new.stop(STOP);
}

#[test]
fn systemd_socket_activate_starts_hello_on_the_first_connection() {
    // systemd's own tool, where it is installed: it binds, waits for the
    // first connection, then execs hello with LISTEN_FDS, LISTEN_PID and
    // LISTEN_FDNAMES set as a socket unit would.
    let tool = "systemd-socket-activate";
    let found = std::process::Command::new(tool)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is needed under CI"
        );
        eprintln!("!!! SKIPPED: {tool} (package systemd) is not installed");
        return;
    }
    // A free port (the tool wants an address, not a socket).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut s = ServerTree::spawn(
        tool,
        &[
            "-l",
            &listen,
            HELLO,
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "2",
        ],
    );
    // The tool listens before hello exists: this request waits in the
    // queue until hello is started and takes it.
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut first = None;
    testkit::wait_until(T, || {
        first = testkit::load::try_get(addr, PID_PATH).ok();
        first.is_some()
    });
    let first = first.unwrap_or_else(|| panic!("no answer:\n{}", s.stderr()));
    assert_eq!(first.status, 200);
    assert_eq!(wait_listening(&mut s), addr);
    let kids = s.wait_ready(2, T);
    assert!(kids.contains(&first.pid().unwrap()), "{kids:?}");
    s.wait_log("socket activation: serving the 1 inherited socket(s)", T);
    s.stop(STOP);
}
