//! Unix-domain socket listeners (`--bind unix:PATH`, `Listen::unix`) end
//! to end: `hello` listens on a socket in a temporary directory and is
//! driven over `std::os::unix::net::UnixStream` (testkit's `unix`
//! module): requests, keep-alive and a WebSocket with two workers, TCP
//! beside it, a stale file replaced, a live socket or another file
//! refused, the file removed on a real stop but kept across a binary
//! upgrade, removed again when start-up fails after binding, a socket
//! unit's Unix socket (never removed, even by a master started by a binary
//! upgrade), and the PROXY protocol over it.
// The load summary is printed (see it with `--nocapture`).
#![allow(clippy::print_stdout)]

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use testkit::load::PID_PATH;
use testkit::procs::{heavy, is_alive, signal, ServerTree, Signal};
use testkit::systemd::{spawn_activated, ListenPid};
use testkit::unix::{self, UnixClient};
use testkit::upgrade::Release;
use testkit::wait_until;

const HELLO: &str = env!("CARGO_BIN_EXE_hello");
/// Bound of every wait for the processes to reach a state.
const T: Duration = Duration::from_secs(20);

fn pid_over(path: &Path) -> i32 {
    let r = unix::get(path, PID_PATH);
    assert_eq!(r.status, 200);
    r.text().trim().parse().expect("a pid")
}

/// Installs the release's "new" build, sends `SIGUSR2`, and waits until
/// the new build answers over the socket at `path` and the old master has
/// exited (successfully).
fn upgrade_to_new(r: &Release, s: &mut ServerTree, path: &Path) {
    r.install_tagged("new");
    s.signal(Signal::SIGUSR2);
    assert!(
        wait_until(T, || unix::try_get(path, "/version")
            .is_ok_and(|r| r.text() == "new")),
        "the new build never answered over {}:\n{}",
        path.display(),
        s.stderr()
    );
    let status = s.wait_exit(T).expect("the old master exits");
    assert!(status.success(), "{status}\n{}", s.stderr());
}

/// `hello --bind unix:DIR/app.sock --workers N EXTRA...`, once it
/// announced the socket and its workers are ready.
fn start(dir: &Path, workers: usize, extra: &[&str]) -> (ServerTree, PathBuf) {
    let path = dir.join("app.sock");
    let bind = format!("unix:{}", path.display());
    let n = workers.to_string();
    let mut args = vec!["--bind", &bind, "--workers", &n];
    args.extend_from_slice(extra);
    let s = ServerTree::start(HELLO, &args);
    assert_eq!(s.unix_paths(), vec![path.clone()], "{}", s.stderr());
    if workers > 1 {
        s.wait_ready(workers, T);
    }
    (s, path)
}

#[test]
fn a_unix_socket_serves_requests_keep_alive_and_a_websocket_from_every_worker() {
    let dir = tempfile::tempdir().unwrap();
    let (s, path) = start(dir.path(), 2, &[]);
    let kids = s.wait_ready(2, T);
    s.wait_log(&format!("listening on unix:{}", path.display()), T);
    s.wait_log("one shared listener", T);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o666, "nginx's default mode");

    // Keep-alive: three requests on one connection, one worker.
    let mut c = UnixClient::connect(&path);
    let first = c.get(PID_PATH);
    assert_eq!(first.status, 200);
    for _ in 0..2 {
        assert_eq!(c.get(PID_PATH).text(), first.text());
    }
    // No IP: the client is the unspecified address.
    assert_eq!(c.get("/whoami").text(), "0.0.0.0 http");

    // Every worker accepts from the one socket (fresh connections take
    // turns among idle workers).
    let mut seen = BTreeSet::new();
    for _ in 0..400 {
        seen.insert(pid_over(&path));
        if seen == kids {
            break;
        }
    }
    assert_eq!(seen, kids, "both workers serve the Unix socket");

    // A WebSocket over it.
    let mut ws = unix::ws_connect(&path, "/ws/echo");
    ws.send(tungstenite::Message::text("over unix")).unwrap();
    match ws.read().unwrap() {
        tungstenite::Message::Text(t) => assert_eq!(t.as_str(), "over unix"),
        other => panic!("unexpected {other:?}"),
    }
    ws.close(None).unwrap();
    drop(c);
    s.stop(T);
    assert!(!path.exists(), "the socket file is removed on a stop");
}

#[test]
fn tcp_and_unix_listeners_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("side.sock");
    let listen = format!("unix:{}", path.display());
    let s = ServerTree::start_workers(HELLO, 2, &["--listen", &listen, "--unix-mode", "660"]);
    let kids = s.wait_ready(2, T);
    assert_eq!(s.unix_paths(), vec![path.clone()]);
    assert_eq!(s.addrs().len(), 1, "one TCP address");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "--unix-mode");
    let over_tcp = testkit::get(s.addr(), PID_PATH);
    assert!(kids.contains(&over_tcp.text().trim().parse().unwrap()));
    assert!(kids.contains(&pid_over(&path)));
    // The TCP peer keeps its address.
    assert_eq!(testkit::get(s.addr(), "/whoami").text(), "127.0.0.1 http");
    s.stop(T);
    assert!(!path.exists());
}

#[test]
fn a_stale_socket_file_is_replaced_and_removed_by_a_single_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    // A server that died without cleaning up leaves its file.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let (s, path) = start(dir.path(), 1, &[]);
    s.wait_log("removing the stale socket file", T);
    assert_eq!(pid_over(&path), s.pid());
    s.stop(T);
    assert!(!path.exists(), "removed by the single process too");
}

#[test]
fn a_live_socket_or_another_file_at_the_path_is_a_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let bind = format!("unix:{}", path.display());
    let other = UnixListener::bind(&path).unwrap();
    let (status, log) = ServerTree::try_start(HELLO, &["--bind", &bind, "--workers", "2"])
        .expect_err("a live socket is refused");
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains(&format!(
            "tine: cannot bind unix:{}: address already in use",
            path.display()
        )),
        "{log}"
    );
    // The other server's socket is untouched and still serves.
    assert!(path.exists());
    let _c = std::os::unix::net::UnixStream::connect(&path).unwrap();
    assert!(other.accept().is_ok());
    drop(other);

    let file = dir.path().join("notes.sock");
    std::fs::write(&file, "keep me").unwrap();
    let bind = format!("unix:{}", file.display());
    let (status, log) =
        ServerTree::try_start(HELLO, &["--bind", &bind]).expect_err("a regular file is refused");
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains(&file.display().to_string()), "{log}");
    assert!(log.contains("not a socket"), "{log}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");

    let long = format!("unix:/tmp/{}", "x".repeat(120));
    let (status, log) =
        ServerTree::try_start(HELLO, &["--bind", &long]).expect_err("a path too long");
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("a Unix socket's path holds at most"), "{log}");
}

#[test]
fn sigterm_removes_the_file_but_a_kill_leaves_it_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let (s, path) = start(dir.path(), 2, &[]);
    s.signal(Signal::SIGTERM);
    let mut s = s;
    let status = s.wait_exit(T).expect("the master exits");
    assert!(status.success(), "{status}\n{}", s.stderr());
    assert!(!path.exists(), "{}", s.stderr());

    // SIGKILL: nobody removes it; the next start replaces it.
    let (mut s, path) = start(dir.path(), 2, &[]);
    s.signal(Signal::SIGKILL);
    assert!(s.wait_exit(T).is_some());
    assert!(wait_until(T, || s.tagged().is_empty()));
    assert!(path.exists(), "a killed master leaves its file");
    let (s, path) = start(dir.path(), 2, &[]);
    s.wait_log("removing the stale socket file", T);
    assert!(pid_over(&path) > 0);
    s.stop(T);
    assert!(!path.exists());
}

#[test]
fn the_proxy_protocol_and_a_trusted_local_proxy_over_unix() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.sock");
    let proxied = dir.path().join("proxied.sock");
    let (bind, pp) = (
        format!("unix:{}", plain.display()),
        format!("unix:{}", proxied.display()),
    );
    let s = ServerTree::start(
        HELLO,
        &[
            "--bind",
            &bind,
            "--proxy-protocol-listen",
            &pp,
            "--trusted-proxy",
            "unix:",
            "--workers",
            "2",
        ],
    );
    s.wait_ready(2, T);
    assert_eq!(s.unix_paths(), vec![plain.clone(), proxied.clone()]);
    // nginx -> unix socket with `proxy_protocol on`.
    let mut c = UnixClient::connect(&proxied);
    c.send(b"PROXY TCP4 203.0.113.7 10.0.0.1 5000 80\r\nGET /whoami HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().text(), "203.0.113.7 http");
    // Without a header it is refused (400), as on TCP.
    assert_eq!(unix::get(&proxied, "/whoami").status, 400);
    // The Unix peer is trusted only because of "unix:".
    let mut c = UnixClient::connect(&plain);
    c.send(
        b"GET /whoami HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 198.51.100.9\r\n\
          X-Forwarded-Proto: https\r\n\r\n",
    );
    assert_eq!(c.read_response().text(), "198.51.100.9 https");
    s.stop(T);

    let (s, path) = start(dir.path(), 1, &["--trusted-proxy", "127.0.0.1"]);
    let mut c = UnixClient::connect(&path);
    c.send(b"GET /whoami HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 198.51.100.9\r\n\r\n");
    assert_eq!(
        c.read_response().text(),
        "0.0.0.0 http",
        "not trusted without \"unix:\""
    );
    s.stop(T);
}

#[test]
fn a_socket_units_unix_socket_is_served_by_every_worker_and_left_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unit.sock");
    let socket = UnixListener::bind(&path).unwrap();
    let mut s = spawn_activated(
        HELLO,
        &["--bind", "127.0.0.1:0", "--workers", "2"],
        &socket,
        ListenPid::Server,
        &[],
    );
    drop(socket);
    assert!(
        wait_until(T, || !s.unix_paths().is_empty()),
        "{}",
        s.stderr()
    );
    assert_eq!(s.unix_paths(), vec![path.clone()]);
    assert!(s.listening().is_none(), "nothing bound on TCP");
    let kids = s.wait_ready(2, T);
    s.wait_log("socket activation: serving the 1 inherited socket(s)", T);
    let mut seen = BTreeSet::new();
    for _ in 0..400 {
        seen.insert(pid_over(&path));
        if seen == kids {
            break;
        }
    }
    assert_eq!(seen, kids, "both workers accept from the unit's socket");
    s.stop(T);
    assert!(
        path.exists(),
        "the socket unit's file is systemd's to remove"
    );
}

#[test]
fn sigusr2_keeps_the_socket_file_and_requests_flow_throughout() {
    let _g = heavy();
    let r = Release::new(HELLO);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let bind = format!("unix:{}", path.display());
    let pid_file = r.pid_file_str();
    let mut s = ServerTree::start(
        &r.app_str(),
        &[
            "--bind",
            &bind,
            "--workers",
            "2",
            "--pid-file",
            &pid_file,
            "--version-tag",
            "old",
        ],
    );
    s.wait_ready(2, T);
    let old = s.pid();

    // Clients over the socket throughout, each on a fresh connection.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok, failed, errors, path) = (
                stop.clone(),
                ok.clone(),
                failed.clone(),
                errors.clone(),
                path.clone(),
            );
            std::thread::spawn(move || {
                // Bounded: the test stops it well before.
                for _ in 0..1_000_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match unix::try_get(&path, "/version") {
                        Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        Ok(r) => {
                            errors.lock().unwrap().push(format!("status {}", r.status));
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(e) => {
                            errors.lock().unwrap().push(e.to_string());
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    assert!(wait_until(T, || ok.load(Ordering::Relaxed) >= 500));

    upgrade_to_new(&r, &mut s, &path);
    assert!(
        path.exists(),
        "the old master hands the socket over and leaves its file"
    );
    let at = ok.load(Ordering::Relaxed);
    assert!(wait_until(T, || ok.load(Ordering::Relaxed) >= at + 500));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("upgrade over a Unix socket: {ok} ok, {failed} failed");
    assert_eq!(failed, 0, "{:?}", errors.lock().unwrap());
    assert_eq!(unix::get(&path, "/version").text(), "new");

    // The new master owns the file now: its real stop removes it.
    let new = r.pid().expect("the new master's pid file");
    assert_ne!(new, old);
    assert!(is_alive(new));
    signal(new, Signal::SIGTERM).unwrap();
    assert!(
        wait_until(T, || s.tagged().is_empty()),
        "left behind: {:?}\n{}",
        s.tagged(),
        s.stderr()
    );
    assert!(!path.exists(), "{}", s.stderr());
}

#[test]
fn a_socket_units_unix_socket_file_outlives_an_upgrade_and_the_new_masters_stop() {
    let _g = heavy();
    let r = Release::new(HELLO);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unit.sock");
    // Kept open, as systemd keeps the unit's socket: once the server has
    // stopped, connections still queue there (and start it again).
    let unit = UnixListener::bind(&path).unwrap();
    let pid_file = r.pid_file_str();
    let mut s = spawn_activated(
        &r.app_str(),
        &[
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--pid-file",
            &pid_file,
            "--version-tag",
            "old",
        ],
        &unit,
        ListenPid::Server,
        &[],
    );
    s.wait_ready(2, T);
    assert_eq!(s.unix_paths(), vec![path.clone()], "{}", s.stderr());
    assert_eq!(unix::get(&path, "/version").text(), "old");
    let old = s.pid();

    upgrade_to_new(&r, &mut s, &path);
    assert!(path.exists(), "{}", s.stderr());

    // The new master took the socket over, not the file: its stop leaves
    // the file to systemd, like the old master's stop would have.
    let new = r.pid().expect("the new master's pid file");
    assert_ne!(new, old);
    signal(new, Signal::SIGTERM).unwrap();
    assert!(
        wait_until(T, || s.tagged().is_empty()),
        "left behind: {:?}\n{}",
        s.tagged(),
        s.stderr()
    );
    assert!(
        path.exists(),
        "the socket unit's file is systemd's to remove\n{}",
        s.stderr()
    );
    let _c = std::os::unix::net::UnixStream::connect(&path)
        .expect("the unit's socket is still reachable by its path");
    assert!(unit.accept().is_ok());
}

#[test]
fn a_start_up_failure_after_binding_removes_the_socket_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let bind = format!("unix:{}", path.display());

    // The admin address is bound after the listeners: taken, it fails the
    // start-up.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = taken.local_addr().unwrap().to_string();
    let (status, log) = ServerTree::try_start(
        HELLO,
        &["--bind", &bind, "--workers", "2", "--admin-bind", &admin],
    )
    .expect_err("the admin address is in use");
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains(&format!("tine: admin address {admin}")),
        "{log}"
    );
    assert!(!path.exists(), "the socket file is left behind\n{log}");
    drop(taken);

    // So is the pid file: one in a missing directory fails it too.
    let pid_file = dir.path().join("missing").join("app.pid");
    let pid_file = pid_file.to_str().unwrap();
    let (status, log) = ServerTree::try_start(
        HELLO,
        &["--bind", &bind, "--workers", "2", "--pid-file", pid_file],
    )
    .expect_err("the pid file cannot be written");
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains(pid_file), "{log}");
    assert!(!path.exists(), "the socket file is left behind\n{log}");

    // After the announcement: a process whose start-up hook panics (a
    // single process: `run` fails), and a master whose workers never
    // start (it gives up).
    for workers in ["1", "2"] {
        let mut s = ServerTree::spawn(
            HELLO,
            &["--bind", &bind, "--workers", workers, "--panic-on-start"],
        );
        let status = s.wait_exit(T).expect("the start-up fails");
        s.wait_log_closed(T);
        assert!(!status.success(), "{}", s.stderr());
        assert!(
            !path.exists(),
            "the socket file is left behind ({workers} workers)\n{}",
            s.stderr()
        );
    }

    // And the start after it binds the same path.
    let (s, path) = start(dir.path(), 2, &[]);
    assert!(pid_over(&path) > 0);
    s.stop(T);
    assert!(!path.exists());
}
