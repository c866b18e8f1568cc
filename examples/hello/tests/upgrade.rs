//! Binary upgrade (`SIGUSR2`) end to end: `hello` is copied into a
//! temporary directory and started from there; the file is then replaced
//! by a "new build" (a script that runs the real binary with another
//! `--version-tag`, or one that fails) and the master gets `SIGUSR2`,
//! under client load.
// The load summary is printed (see it with `--nocapture`).

use std::time::Duration;

use testkit::load::{try_get, Load, LoadReport};
use testkit::procs::{children_of, heavy, is_alive, signal, wait_sleeping, ServerTree, Signal};
use testkit::systemd::NotifySocket;
use testkit::upgrade::Release;
use testkit::{wait_until, Client};

const HELLO: &str = env!("CARGO_BIN_EXE_hello");

/// Bound of the waits for the processes to reach a state.
const T: Duration = Duration::from_secs(30);

/// The arguments of the old build: a free port, 2 workers, the release's
/// pid file (`pid_file`), `--version-tag old`.
fn old_args(pid_file: &str) -> [&str; 8] {
    [
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--pid-file",
        pid_file,
        "--version-tag",
        "old",
    ]
}

/// With a request of `ms` milliseconds in flight on an old worker (which
/// keeps the old master draining after the hand-over), installs the
/// release's "new" build, sends `SIGUSR2` and waits for the hand-over.
/// Returns the new master's pid and the slow request.
fn hand_over_while_draining(
    r: &Release,
    s: &ServerTree,
    ms: u32,
) -> (i32, std::thread::JoinHandle<std::io::Result<testkit::Resp>>) {
    let (addr, workers) = (s.addr(), s.children());
    let slow = std::thread::spawn(move || try_get(addr, &format!("/sleep?ms={ms}")));
    assert!(wait_sleeping(&workers, T).is_some(), "{}", s.stderr());
    (hand_over(r, s), slow)
}

/// Installs the release's "new" build, sends `SIGUSR2` and waits for the
/// hand-over (the old master then drains). Returns the new master's pid.
fn hand_over(r: &Release, s: &ServerTree) -> i32 {
    r.install_tagged("new");
    s.signal(Signal::SIGUSR2);
    let new = r
        .wait_new_pid(s.pid(), T)
        .expect("the new master's pid file");
    s.wait_log("ready: handing over, the old master stops", T);
    new
}

/// Starts the release's `app` with [`old_args`] and `extra`.
fn start(r: &Release, extra: &[&str]) -> ServerTree {
    start_env(r, extra, &[])
}

fn start_env(r: &Release, extra: &[&str], env: &[(&str, &str)]) -> ServerTree {
    let pid_file = r.pid_file_str();
    let mut args = old_args(&pid_file).to_vec();
    args.extend_from_slice(extra);
    let s = ServerTree::start_env(&r.app_str(), &args, env);
    s.wait_ready(2, T);
    s
}

/// Client load on `addr` (2 threads with a fresh connection per request,
/// 2 reusing theirs), once 500 requests went through.
fn start_load(s: &ServerTree, addr: std::net::SocketAddr) -> Load {
    let load = Load::start(addr, 2, 2, 1_000_000, Duration::from_secs(120));
    assert!(load.wait_done(500, T), "{}", s.stderr());
    load
}

/// Lets 1000 more requests through, stops the load and checks that none
/// failed.
fn finish_load(s: &ServerTree, load: Load, what: &str) -> LoadReport {
    let at = load.done();
    assert!(load.wait_done(at + 1000, T), "{}", s.stderr());
    let rep = load.finish();
    rep.assert_clean(what);
    rep
}

/// The old build serves on after a failed upgrade, with its pid file back.
fn assert_rolled_back(r: &Release, s: &ServerTree, old: i32) {
    assert_eq!(version(s), "old");
    assert_eq!(r.pid(), Some(old), "the pid file is back");
    assert!(!r.oldbin().exists());
}

fn version(s: &ServerTree) -> String {
    try_get(s.addr(), "/version")
        .map(|r| r.text())
        .unwrap_or_else(|e| format!("error: {e}"))
}

/// The inode of the scoreboard memfd process `pid` holds (Linux).
fn scoreboard_inode(pid: i32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .find(|e| {
            std::fs::read_link(e.path())
                .is_ok_and(|l| l.to_string_lossy().starts_with("/memfd:tine-scoreboard"))
        })
        .and_then(|e| std::fs::metadata(e.path()).ok())
        .map(|m| m.ino())
}

/// What a worker of master `master` says of its health: the status and
/// body of `GET /healthz`, and `stopping` in `GET /status?format=json`.
/// Both go on a connection whose first request, `GET /pid`, was answered
/// by a child of `master` (during a hand-over both masters' workers may
/// accept on the shared sockets).
fn health_of(addr: std::net::SocketAddr, master: i32) -> (u16, String, Option<bool>) {
    let mut seen = None;
    let found = wait_until(T, || {
        let Ok(mut c) = Client::try_connect(addr) else {
            return false;
        };
        let on = c.try_get("/pid", false).ok().and_then(|r| r.pid());
        if !on.is_some_and(|p| children_of(master).contains(&p)) {
            return false;
        }
        let (Ok(health), Ok(status)) = (
            c.try_get("/healthz", false),
            c.try_get("/status?format=json", true),
        ) else {
            return false;
        };
        let v: serde_json::Value = serde_json::from_slice(&status.body).unwrap_or_default();
        seen = Some((health.status, health.text(), v["stopping"].as_bool()));
        true
    });
    assert!(found, "no worker of master {master} answered");
    seen.expect("an answer")
}

/// Stops a master that is not the test's child (a new master, re-parented
/// when the old one exited) and waits until every process of the tree is
/// gone.
/// The old master exits on its own (its workers have nothing left to
/// drain), then the new one is stopped.
fn old_then_new_master_stop(s: &mut ServerTree, new: i32) {
    assert!(
        s.wait_exit(T).is_some_and(|st| st.success()),
        "{}",
        s.stderr()
    );
    stop_new_master(s, new);
}

fn stop_new_master(s: &ServerTree, pid: i32) {
    signal(pid, Signal::SIGTERM).expect("SIGTERM to the new master");
    assert!(
        wait_until(T, || s.tagged().is_empty()),
        "left behind: {:?}\n{}",
        s.tagged(),
        s.stderr()
    );
}

#[test]
fn sigusr2_under_load_switches_to_the_new_build_without_a_failure() {
    let _g = heavy();
    let r = Release::new(HELLO);
    let mut s = start(&r, &[]);
    let old = s.pid();
    assert_eq!(r.pid(), Some(old));
    assert_eq!(version(&s), "old");
    let board = scoreboard_inode(old);
    let load = Load::start(s.addr(), 3, 3, 1_000_000, Duration::from_secs(120));
    assert!(load.wait_done(1000, T), "{}", s.stderr());

    r.install_tagged("new");
    s.signal(Signal::SIGUSR2);
    let mut seen = String::new();
    assert!(
        wait_until(T, || {
            seen = version(&s);
            seen == "new"
        }),
        "GET /version never answered the new build (last: {seen:?}):\n{}",
        s.stderr()
    );
    // The old master drains its workers and exits 0.
    let status = s.wait_exit(T).expect("the old master exits");
    assert!(status.success(), "{status}\n{}", s.stderr());
    let new = r.pid().expect("a pid file");
    assert_ne!(new, old);
    assert!(is_alive(new), "{}", s.stderr());
    // The new master maps the old one's scoreboard (the same memfd).
    if cfg!(target_os = "linux") {
        assert!(board.is_some());
        assert_eq!(scoreboard_inode(new), board);
    }
    assert!(!r.oldbin().exists(), "the old master removes .oldbin");
    // Load goes on against the new build alone.
    let at = load.done();
    assert!(
        load.wait_done_fresh((at + 1000).max(5000), 1000, T),
        "{}",
        s.stderr()
    );
    let rep = load.finish();
    rep.assert_clean("upgrade under load");
    assert!(rep.ok >= 5000, "{rep:?}");
    assert!(rep.fresh >= 1000 && rep.kept_alive >= 1000, "{rep:?}");
    let new_workers = testkit::procs::children_of(new);
    assert_eq!(new_workers.len(), 2, "{}", s.stderr());
    assert!(
        new_workers.iter().all(|p| rep.by_pid.contains_key(p)),
        "the new workers served: {:?} {:?}",
        new_workers,
        rep.by_pid
    );
    assert_eq!(version(&s), "new");
    let log = s.stderr();
    assert!(
        log.contains(&format!("new master (pid {new}) ready: handing over")),
        "{log}"
    );
    assert!(log.contains(&format!("master {old}: bye")), "{log}");
    stop_new_master(&s, new);
    assert!(
        !r.pid_file().exists(),
        "the new master removes its pid file"
    );
}

#[test]
fn a_new_build_that_exits_at_start_up_is_rolled_back() {
    let _g = heavy();
    let r = Release::new(HELLO);
    let s = start(&r, &[]);
    let old = s.pid();
    let load = start_load(&s, s.addr());

    r.install_script("exit 1");
    s.signal(Signal::SIGUSR2);
    let log = s.wait_log("binary upgrade failed: the new master (pid ", T);
    assert!(
        log.contains("exited before it was ready: exit status 1; the old master serves on"),
        "{log}"
    );
    finish_load(&s, load, "failed upgrade under load");
    assert_rolled_back(&r, &s, old);
    assert!(is_alive(old));
    s.stop(T);
}

#[test]
fn a_new_build_never_ready_is_stopped_after_the_timeout_and_a_second_sigusr2_is_refused() {
    let _g = heavy();
    let r = Release::new(HELLO);
    let s = start(&r, &["--upgrade-timeout-ms", "2000"]);
    let old = s.pid();
    let load = start_load(&s, s.addr());

    // It never says it is ready. `exec` keeps the pid the master knows,
    // and sleep dies of SIGTERM: the new master's signal mask is empty.
    r.install_script("exec sleep 600");
    s.signal(Signal::SIGUSR2);
    let log = s.wait_log(") started; waiting for its workers to be ready", T);
    let child: i32 = log
        .split("new master (pid ")
        .nth(1)
        .and_then(|t| t.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no new master pid in:\n{log}"));
    assert_eq!(r.pid(), None, "the pid file is at .oldbin meanwhile");
    assert_eq!(Release::read_pid(&r.oldbin()), Some(old));
    s.signal(Signal::SIGUSR2);
    s.wait_log("SIGUSR2 refused: a binary upgrade is already under way", T);
    let log = s.wait_log("was not ready within 2s", T);
    assert!(
        log.contains("stopping it, the old master serves on"),
        "{log}"
    );
    let log = s.wait_log("exited: killed by SIGTERM; the old master serves on", T);
    assert!(
        log.contains(&format!("the new master (pid {child}) was not ready")),
        "{log}"
    );
    assert!(!is_alive(child));
    finish_load(&s, load, "upgrade timed out under load");
    assert_rolled_back(&r, &s, old);
    // Only one new master was ever started.
    assert_eq!(s.stderr().matches("starting the new master").count(), 1);
    s.stop(T);
}

#[test]
fn the_new_master_refuses_sigusr2_until_the_old_one_has_gone() {
    let _g = heavy();
    let r = Release::new(HELLO);
    let mut s = start(&r, &[]);
    let old = s.pid();
    let (new, slow) = hand_over_while_draining(&r, &s, 4000);
    assert!(is_alive(old), "still draining the slow request");
    signal(new, Signal::SIGUSR2).expect("SIGUSR2 to the new master");
    let log = s.wait_log(
        "SIGUSR2 refused: this master was started by a binary upgrade",
        T,
    );
    assert!(
        log.contains(&format!("the old master (pid {old}) has not exited yet")),
        "{log}"
    );
    // The request in flight is answered by the old build.
    let res = slow.join().expect("the slow client").expect("an answer");
    assert_eq!((res.status, res.text()), (200, "slept".to_owned()));
    let status = s.wait_exit(T).expect("the old master exits");
    assert!(status.success(), "{status}");
    s.wait_log(&format!("the old master (pid {old}) has exited"), T);
    assert_eq!(version(&s), "new");
    stop_new_master(&s, new);
}

/// The old master stopping after the hand-over shares the scoreboard with
/// the new one, but its stop is not the new master's: the new workers
/// answer `/healthz` with 200 while the old master drains and after it
/// left, until the new master itself is asked to stop.
#[test]
fn healthz_stays_200_on_the_new_master_while_the_old_one_drains_and_after() {
    let _g = heavy();
    let r = Release::new(HELLO);
    // The delay keeps a stopping master accepting (with 503), so its own
    // stop can be seen at the end; a hand-over drains at once.
    let mut s = start(&r, &["--shutdown-delay-ms", "10000"]);
    let old = s.pid();
    let addr = s.addr();
    assert_eq!(health_of(addr, old), (200, "ok\n".into(), Some(false)));
    let (new, slow) = hand_over_while_draining(&r, &s, 6000);
    let draining = health_of(addr, new);
    assert!(is_alive(old), "the old master still drains");
    assert_eq!(
        draining,
        (200, "ok\n".into(), Some(false)),
        "while the old master drains:\n{}",
        s.stderr()
    );

    let res = slow.join().expect("the slow client").expect("an answer");
    assert_eq!(res.status, 200);
    let status = s.wait_exit(T).expect("the old master exits");
    assert!(status.success(), "{status}");
    assert_eq!(
        health_of(addr, new),
        (200, "ok\n".into(), Some(false)),
        "after the old master left:\n{}",
        s.stderr()
    );

    // The new master's own stop is its health's business.
    signal(new, Signal::SIGTERM).expect("SIGTERM to the new master");
    s.wait_log("(shutdown delay), then draining", T);
    assert_eq!(health_of(addr, new), (503, "stopping\n".into(), Some(true)));
    stop_new_master(&s, new);
}

/// A new master stopped because it never got ready shares the scoreboard
/// with the old one, which serves on: its stop does not turn the old
/// master's health to 503.
#[test]
fn healthz_stays_200_on_the_old_master_after_a_new_one_was_stopped() {
    let _g = heavy();
    let r = Release::new(HELLO);
    let s = start(&r, &["--upgrade-timeout-ms", "2000"]);
    let old = s.pid();
    let addr = s.addr();
    assert_eq!(health_of(addr, old), (200, "ok\n".into(), Some(false)));

    // A real master (it maps the old one's scoreboard) whose workers
    // are not ready in time: stopped at the timeout. (Workers that crash
    // at start make a master give up by itself; these are slow.)
    r.install_script("exec {real} \"$@\" --slow-start-ms 4000");
    s.signal(Signal::SIGUSR2);
    s.wait_log("was not ready within 2s", T);
    s.wait_log_count("the old master serves on", 2, T);
    let log = s.stderr();
    assert!(log.contains(") exited: "), "{log}");
    assert_rolled_back(&r, &s, old);
    assert_eq!(
        health_of(addr, old),
        (200, "ok\n".into(), Some(false)),
        "after the rollback:\n{}",
        s.stderr()
    );
    s.stop(T);
}

#[test]
fn systemd_hears_reloading_then_the_new_main_pid_or_why_the_upgrade_failed() {
    let _g = heavy();
    let mut notify = NotifySocket::new();
    let r = Release::new(HELLO);
    let path = notify.path().to_owned();
    let mut s = start_env(&r, &[], &[("NOTIFY_SOCKET", &path)]);
    let old = s.pid();
    notify.wait_for("READY=1", T);

    // A failed upgrade: RELOADING=1, then STATUS= saying why and READY=1.
    r.install_script("exit 1");
    s.signal(Signal::SIGUSR2);
    let reloading = notify.wait_for("RELOADING=1", T);
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    notify.wait_for("READY=1", T);
    let status = notify
        .seen
        .iter()
        .find(|m| m.starts_with("STATUS=binary upgrade failed: "))
        .unwrap_or_else(|| panic!("no STATUS= in {:?}", notify.seen));
    assert!(status.contains("exit status 1"), "{status}");

    // A good one: RELOADING=1, then MAINPID=<new> with READY=1 from the
    // old master, and no STOPPING=1 from it.
    r.install_tagged("new");
    s.signal(Signal::SIGUSR2);
    notify.wait_for("RELOADING=1", T);
    let new = r.wait_new_pid(old, T).expect("the new master's pid file");
    let handover = notify.wait_for(&format!("MAINPID={new}"), T);
    assert!(handover.lines().any(|l| l == "READY=1"), "{handover}");
    let exit = s.wait_exit(T).expect("the old master exits");
    assert!(exit.success());
    notify.drain();
    assert_eq!(notify.count("STOPPING=1"), 0, "{:?}", notify.seen);
    // The new master is systemd's main process now: it says STOPPING=1.
    signal(new, Signal::SIGTERM).expect("SIGTERM");
    notify.wait_for("STOPPING=1", T);
    assert!(wait_until(T, || s.tagged().is_empty()), "{}", s.stderr());
}

#[test]
fn a_single_process_ignores_sigusr2_with_a_log_line() {
    let r = Release::new(HELLO);
    let pid_file = r.pid_file_str();
    let s = ServerTree::start(
        &r.app_str(),
        &["--bind", "127.0.0.1:0", "--pid-file", &pid_file],
    );
    // Answering means the loop runs, its signal handlers installed.
    assert_eq!(version(&s), env!("CARGO_PKG_VERSION"));
    s.signal(Signal::SIGUSR2);
    s.wait_log("SIGUSR2 ignored: a binary upgrade needs a master", T);
    assert_eq!(version(&s), env!("CARGO_PKG_VERSION"));
    assert!(is_alive(s.pid()));
    s.stop(T);
}

#[test]
fn a_socket_activated_master_hands_the_systemd_socket_over() {
    let _g = heavy();
    let r = Release::new(HELLO);
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let pid_file = r.pid_file_str();
    let mut s = testkit::systemd::spawn_activated(
        &r.app_str(),
        &old_args(&pid_file),
        &socket,
        testkit::systemd::ListenPid::Server,
        &[],
    );
    drop(socket);
    assert!(wait_until(T, || s.listening().is_some()), "{}", s.stderr());
    assert_eq!(s.addr(), addr);
    s.wait_ready(2, T);
    let old = s.pid();
    let load = start_load(&s, addr);
    r.install_tagged("new");
    s.signal(Signal::SIGUSR2);
    assert!(wait_until(T, || version(&s) == "new"), "{}", s.stderr());
    assert!(s.wait_exit(T).expect("the old master exits").success());
    finish_load(&s, load, "socket-activated upgrade");
    // Still systemd's one socket: nothing was bound.
    assert_eq!(testkit::procs::listen_sockets(addr.port()), 1);
    let new = r.wait_new_pid(old, T).expect("the new pid");
    stop_new_master(&s, new);
}

/// In a container the master is often process 1 of its pid namespace: when
/// it exits, the kernel kills the whole namespace, a new master included.
/// So it refuses `SIGUSR2` (`unshare --pid` plays the container).
#[test]
fn a_master_that_is_process_1_refuses_sigusr2() {
    let usable = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !usable {
        eprintln!("SKIPPED: `unshare --pid` is not available here (needs root or user namespaces)");
        return;
    }
    let r = Release::new(HELLO);
    let app = r.app_str();
    let mut s = ServerTree::start(
        "unshare",
        &[
            "--pid",
            "--fork",
            "--kill-child",
            &app,
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "2",
        ],
    );
    // The master: the process of the tree whose pid in its namespace is 1.
    let mut master = None;
    assert!(wait_until(T, || {
        master = s.tagged().into_iter().find(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/status")).is_ok_and(|st| {
                st.lines()
                    .any(|l| l.starts_with("NSpid:") && l.ends_with("\t1"))
            })
        });
        master.is_some()
    }));
    let master = master.expect("the master");
    s.wait_log_count(") ready", 2, T);
    r.install_tagged("new");
    signal(master, Signal::SIGUSR2).expect("SIGUSR2");
    s.wait_log("SIGUSR2 refused: this master is process 1", T);
    assert_eq!(
        version(&s),
        env!("CARGO_PKG_VERSION"),
        "the old build serves on"
    );
    signal(master, Signal::SIGTERM).expect("SIGTERM");
    let status = s.wait_exit(T).expect("unshare exits with the master");
    assert!(status.success(), "{status}\n{}", s.stderr());
}

#[test]
fn a_malformed_upgrade_variable_is_a_start_up_error_and_another_parents_is_ignored() {
    let args = ["--bind", "127.0.0.1:0", "--workers", "2"];
    let (status, log) = ServerTree::try_start_env(HELLO, &args, &[("TINE_UPGRADE", "sockets=x")])
        .expect_err("a malformed TINE_UPGRADE must stop the start-up");
    assert!(!status.success());
    assert!(log.contains("TINE_UPGRADE"), "{log}");
    // A socket without its file flag is malformed too: whose file it is
    // cannot be guessed.
    let (status, log) = ServerTree::try_start_env(
        HELLO,
        &args,
        &[("TINE_UPGRADE", "parent=1 link=50 sockets=51:0:r")],
    )
    .expect_err("a socket without its file flag must stop the start-up");
    assert!(!status.success());
    assert!(log.contains("FD:ADDRESS:MODE:FILE"), "{log}");
    // Well formed but for another parent (left in the environment of an
    // unrelated process): ignored with a warning, the server binds.
    let s = ServerTree::start_env(
        HELLO,
        &args,
        &[("TINE_UPGRADE", "parent=1 link=50 sockets=51:0:r:-")],
    );
    s.wait_log("TINE_UPGRADE names parent 1", T);
    s.wait_ready(2, T);
    assert_eq!(version(&s), env!("CARGO_PKG_VERSION"));
    s.stop(T);
}

#[test]
fn the_admin_address_carries_over_and_the_metrics_count_the_upgrade() {
    let _g = heavy();
    let r = Release::new(HELLO);
    // A fixed port: the new master is started with the same arguments and
    // binds the admin address while the old master still serves it.
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let admin_arg = admin.to_string();
    let pid_file = r.pid_file_str();
    let mut args = old_args(&pid_file).to_vec();
    args.extend(["--admin-bind", &admin_arg]);
    // Two workers and the admin process (not a worker: `start`'s wait
    // for exactly two ready children does not fit).
    let mut s = ServerTree::start_env(&r.app_str(), &args, &[]);
    let old = s.pid();
    assert!(
        wait_until(T, || s.ready_pids().len() == 2),
        "{}",
        s.stderr()
    );
    s.wait_log("spawned the admin process", T);
    assert_eq!(try_get(admin, "/healthz").map(|r| r.status).ok(), Some(200));

    r.install_tagged("new");
    s.signal(Signal::SIGUSR2);
    let status = s.wait_exit(T).expect("the old master exits");
    assert!(status.success(), "{status}\n{}", s.stderr());
    let new = r.pid().expect("a pid file");
    assert_ne!(new, old);
    assert_eq!(version(&s), "new", "{}", s.stderr());
    // The new master's admin process answers on the same address, and the
    // restart counts carried over with one `upgrade` per slot.
    let mut metrics = String::new();
    let want: Vec<String> = (0..2)
        .map(|w| format!("tine_worker_restarts_total{{worker=\"{w}\",reason=\"upgrade\"}} 1\n"))
        .collect();
    assert!(
        wait_until(T, || {
            metrics = try_get(admin, "/metrics")
                .map(|r| r.text())
                .unwrap_or_default();
            want.iter().all(|w| metrics.contains(w.as_str()))
        }),
        "{metrics}\n{}",
        s.stderr()
    );
    // The old master's stop is not the new one's: healthy.
    let health = try_get(admin, "/healthz").expect("/healthz on the admin address");
    assert_eq!((health.status, health.text()), (200, "ok\n".into()));
    stop_new_master(&s, new);
}

/// A hand-over this process cannot take (its parent is not the master the
/// variable names: that master died and the process was reparented) is
/// ignored, and the descriptors it names are closed: they used to stay
/// open in the new master and its workers, so a listening socket among
/// them kept accepting connections nobody would serve (and binding its
/// address failed with "in use").
#[test]
fn an_ignored_hand_over_closes_the_descriptors_it_names() {
    use std::os::fd::AsRawFd;
    let handed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = handed.local_addr().unwrap().port();
    let (link, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
    // dup(2) leaves the copies without close-on-exec; the shell moves
    // them to fds 3 and 4, as an old master hands them over.
    let socket = nix::unistd::dup(&handed).unwrap();
    let link = nix::unistd::dup(&link).unwrap();
    let (s, l) = (socket.as_raw_fd(), link.as_raw_fd());
    let script = format!("exec \"$@\" 3<&{s} 4<&{l} {s}<&- {l}<&-");
    let mut tree = ServerTree::spawn_env(
        "bash",
        &[
            "-c",
            &script,
            "bash",
            HELLO,
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "2",
        ],
        &[("TINE_UPGRADE", "parent=1 link=4 sockets=3:0:r:-")],
    );
    drop((socket, link, handed));
    assert!(
        wait_until(T, || tree.listening().is_some()),
        "{}",
        tree.stderr()
    );
    assert_eq!(tree.wait_ready(2, T).len(), 2);
    // Nobody holds the handed socket any more: connecting is refused.
    let err = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(
        tree.stderr()
            .contains("ignored, and the 2 descriptor(s) it names closed"),
        "{}",
        tree.stderr()
    );
    tree.stop(T);
}

/// A `TINE_UPGRADE` left over in an environment copied without its
/// descriptors (an exported shell variable, a restart tool copying
/// `/proc/PID/environ`) names numbers this process uses itself: hello's
/// log writer holds a copy of stderr at fd 3. They are left alone. Before,
/// the ignored hand-over closed fd 3, the warning saying so was lost, and
/// every later log line went into whatever took the number next (with
/// workers, the scoreboard, whose counters `/metrics` then read from the
/// log's text).
#[test]
fn a_leftover_upgrade_variable_leaves_the_processes_own_descriptors_alone() {
    for workers in ["1", "2"] {
        let s = ServerTree::start_env(
            HELLO,
            &["--bind", "127.0.0.1:0", "--workers", workers],
            &[("TINE_UPGRADE", "parent=1 link=3 sockets=4:0:r:-")],
        );
        s.wait_log(
            "TINE_UPGRADE names parent 1 but this process's parent is",
            T,
        );
        assert!(
            s.stderr()
                .contains("ignored, and the 0 descriptor(s) it names closed"),
            "{}",
            s.stderr()
        );
        if workers == "2" {
            s.wait_ready(2, T);
            // The scoreboard is intact: what was served is counted as it was.
            for _ in 0..3 {
                assert_eq!(testkit::get(s.addr(), "/plaintext").status, 200);
            }
            let m = testkit::get(s.addr(), "/metrics").text();
            let served: u64 = m
                .lines()
                .filter(|l| l.starts_with("tine_http_requests_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum();
            assert!((3..10).contains(&served), "{served}\n{m}");
        } else {
            assert_eq!(testkit::get(s.addr(), "/plaintext").status, 200);
        }
        s.stop(T);
    }
}

/// An upgrade to more workers binds the extra `SO_REUSEPORT` sockets
/// without listening on them: each listens once its worker is ready, so
/// while the new build starts (slowly here) the kernel gives no
/// connection to a queue no one accepts from, and a new build that never
/// gets ready strands none.
#[test]
fn an_upgrade_to_more_workers_listens_on_the_new_sockets_once_their_workers_are_ready() {
    let _g = heavy();
    let r = Release::new(HELLO);
    let s = start(&r, &[]);
    s.wait_ready(2, T);
    let port = s.addr().port();
    assert_eq!(testkit::procs::listen_sockets(port), 2);
    r.install_script("TINE_WORKERS=4 exec {real} \"$@\" --slow-start-ms 3000 --version-tag new");
    s.signal(Signal::SIGUSR2);
    s.wait_log(") started; waiting for its workers to be ready", T);
    // Its four workers are starting (three seconds): the two new sockets
    // are bound, not listening, and every request is answered at once.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(testkit::procs::listen_sockets(port), 2);
    for i in 0..20 {
        let started = std::time::Instant::now();
        let r = try_get(s.addr(), "/version").expect("answered");
        assert_eq!(r.status, 200);
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(1500),
            "request {i} waited {took:?}"
        );
    }
    s.wait_log("ready: handing over, the old master stops", T);
    assert!(wait_until(T, || testkit::procs::listen_sockets(port) == 4));
    assert!(wait_until(T, || version(&s) == "new"));
    let new = r.pid().expect("the new master's pid");
    stop_new_master(&s, new);
}

/// A new master whose bridge variable names no descriptor of its own (a
/// wrapper that rewrote it, say) warns and takes over without the bridge:
/// the bridge is an extra, the hand-over is not.
#[test]
fn a_bridge_that_is_not_there_is_warned_about_and_the_upgrade_goes_on() {
    let _g = heavy();
    let r = Release::new(HELLO);
    let s = start(&r, &[]);
    s.wait_ready(2, T);
    r.install_script("TINE_UPGRADE_BRIDGE=987 exec {real} \"$@\" --version-tag new");
    s.signal(Signal::SIGUSR2);
    s.wait_log(
        "TINE_UPGRADE_BRIDGE=\"987\" names no descriptor of its own",
        T,
    );
    s.wait_log("ready: handing over, the old master stops", T);
    assert!(wait_until(T, || version(&s) == "new"));
    let new = r.pid().expect("the new master's pid");
    stop_new_master(&s, new);
}

/// While the old generation drains after a hand-over, a message published
/// on either generation reaches the subscribers of both (the masters
/// relay to each other over a bridge handed over with the sockets), as a
/// `SIGHUP` restart has it. Before, for the seconds the old workers
/// drained, each generation's WebSockets heard only their own.
#[test]
fn published_messages_cross_between_the_generations_while_the_old_one_drains() {
    use testkit::ws::{chat_join, Ws};
    use tungstenite::Message;
    /// The next text `ws` receives other than `skip`; `None` once closed.
    fn next_other(ws: &mut Ws, skip: &str) -> Option<String> {
        loop {
            match ws.read() {
                Ok(Message::Text(t)) if t.as_str() != skip => return Some(t.to_string()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
    let _g = heavy();
    let r = Release::new(HELLO);
    // A long drain: the old workers close their WebSockets (1001) one by
    // one over its first half, so most are still open below.
    let mut s = start(&r, &["--drain-timeout-ms", "60000"]);
    let (addr, old_workers) = (s.addr(), s.children());
    let mut olds: Vec<Ws> = (0..8).map(|_| chat_join(addr, "bridge").0).collect();
    let new = hand_over(&r, &s);
    // The old workers accept no more: this client is the new generation's.
    let (mut young, pid) = chat_join(addr, "bridge");
    assert!(
        !old_workers.contains(&(pid as i32)),
        "{pid} is an old worker"
    );
    young
        .send(Message::text("from the new generation"))
        .unwrap();
    let mut open = Vec::new();
    for mut ws in olds.drain(..) {
        // (`None`: closed by its draining worker meanwhile.)
        if let Some(t) = next_other(&mut ws, "") {
            assert_eq!(t, "from the new generation");
            open.push(ws);
        }
    }
    assert!(
        open.len() >= 2,
        "{} of 8 old subscribers heard the new generation\n{}",
        open.len(),
        s.stderr()
    );
    // And the other way.
    open[0]
        .send(Message::text("from the old generation"))
        .unwrap();
    assert_eq!(
        next_other(&mut young, "from the new generation").as_deref(),
        Some("from the old generation")
    );
    // Closed, the old workers have nothing left to drain.
    drop(open);
    old_then_new_master_stop(&mut s, new);
}

/// A burst published on the new generation during the hand-over reaches
/// the old generation's subscribers whole: the bridge takes part in the
/// relay's flow control (the publisher is slowed down while the other
/// master, or its workers, are behind), as the relay inside one
/// generation does. Before, the bridge dropped what did not fit its queue.
#[test]
fn a_burst_crosses_the_bridge_without_loss() {
    use std::io::Write;
    use testkit::ws::{chat_join, Ws};
    use tungstenite::Message;
    const N: usize = 600;
    /// Counts `N` texts of `len` bytes on `ws` in a thread of its own (so
    /// that no subscriber falls behind while another is read); returns
    /// how many arrived before it closed.
    fn count(mut ws: Ws, len: usize) -> std::thread::JoinHandle<usize> {
        std::thread::spawn(move || {
            let mut n = 0;
            while n < N {
                match ws.read() {
                    Ok(Message::Text(t)) if t.len() == len => n += 1,
                    Ok(Message::Close(_)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            n
        })
    }
    let _g = heavy();
    let r = Release::new(HELLO);
    // A long drain: the old WebSockets are closed one by one over a minute.
    let mut s = start(&r, &["--drain-timeout-ms", "120000"]);
    let addr = s.addr();
    let olds: Vec<Ws> = (0..8).map(|_| chat_join(addr, "burst").0).collect();
    let new = hand_over(&r, &s);
    let len = 32 * 1024;
    let counters: Vec<_> = olds.into_iter().map(|ws| count(ws, len)).collect();
    let young = count(chat_join(addr, "burst").0, len);
    // N publishes of 32 KiB pipelined on one connection (19 MB).
    let mut c = Client::connect(addr);
    let body = "b".repeat(len);
    let request = format!(
        "POST /publish/burst HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: {len}\r\n\r\n{body}"
    );
    let mut writer = c.stream.try_clone().unwrap();
    let send = std::thread::spawn(move || {
        for _ in 0..N {
            writer.write_all(request.as_bytes()).unwrap();
        }
    });
    for i in 0..N {
        assert_eq!(c.read_response().status, 202, "publish {i}");
    }
    send.join().unwrap();
    assert_eq!(young.join().unwrap(), N, "the publishing generation");
    let got: Vec<usize> = counters.into_iter().map(|t| t.join().unwrap()).collect();
    // The first one of each old worker may have been closed by the drain
    // meanwhile; every other one got all of them. (Without flow control
    // on the bridge, those of one old worker or both lost some: 433 or
    // 568 of 600.)
    let whole = got.iter().filter(|&&n| n == N).count();
    assert!(
        whole >= 6,
        "old subscribers' counts: {got:?}\n{}",
        s.stderr()
    );
    // The old subscribers are closed (their threads ended): the old
    // workers have nothing left to drain.
    drop(c);
    old_then_new_master_stop(&mut s, new);
}
