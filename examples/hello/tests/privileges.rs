//! Workers that drop privileges: the master stays root (it binds and
//! supervises), every worker runs as the configured user and group, seen
//! from outside through `/proc/PID/status`; a Unix socket file is
//! theirs. Needs root (CI runs as root);
//! elsewhere the tests say so and pass.

#![cfg(target_os = "linux")]

use std::collections::BTreeSet;
use std::time::Duration;

use testkit::load::{spread, PID_PATH};
use testkit::procs::{ServerTree, Signal};

const HELLO: &str = env!("CARGO_BIN_EXE_hello");
/// Bound of every wait for the processes to reach a state.
const T: Duration = Duration::from_secs(10);
/// Bound of a graceful stop without client connections.
const STOP: Duration = Duration::from_secs(10);
/// `nobody` and `nogroup` on Debian.
const NOBODY: &str = "65534";

/// The values of the `field` line (`Uid:`, `Gid:`, `Groups:`) of
/// `/proc/PID/status`: real, effective, saved and filesystem ids.
fn ids(pid: i32, field: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in the status of {pid}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn assert_nobody(pid: i32) {
    assert_eq!(ids(pid, "Uid:"), [NOBODY; 4], "uids of {pid}");
    assert_eq!(ids(pid, "Gid:"), [NOBODY; 4], "gids of {pid}");
    assert_eq!(ids(pid, "Groups:"), [NOBODY], "groups of {pid}");
}

fn not_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the privilege tests need root under CI"
    );
    eprintln!("!!! SKIPPED: dropping privileges needs root");
    true
}

/// `tine::ServerHandle::stop` in a worker that runs as `nobody`: the
/// worker may not signal its root master, so it asks over its control
/// channel, and the server stops as on `SIGTERM`.
#[test]
fn a_worker_that_dropped_privileges_stops_the_server_with_its_handle() {
    if not_root() {
        return;
    }
    let mut s = ServerTree::start_workers(HELLO, 2, &["--user", "nobody", "--stop-route"]);
    s.wait_ready(2, T);
    let mut c = testkit::Client::connect(s.addr());
    c.send(b"POST /stop HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(c.read_response().status, 202);
    let status = s.wait_exit(STOP).expect("the master exits");
    assert!(status.success(), "{status:?}: {}", s.stderr());
    assert!(
        s.stderr().contains("asked for a graceful stop"),
        "{}",
        s.stderr()
    );
}

#[test]
fn workers_run_as_the_user_and_group_the_master_stays_root() {
    if not_root() {
        return;
    }
    let s = ServerTree::start_workers(HELLO, 2, &["--user", "nobody", "--group", NOBODY]);
    let kids = s.wait_ready(2, T);
    assert_eq!(ids(s.pid(), "Uid:"), ["0"; 4], "the master keeps root");
    for &pid in &kids {
        assert_nobody(pid);
    }
    let served: BTreeSet<i32> = spread(s.addr(), 200).keys().copied().collect();
    assert_eq!(served, kids);

    // A rolling restart and a scale-up fork from the master again: the new
    // workers drop too, and the scale-up's new socket (bound by the root
    // master) serves.
    s.signal(Signal::SIGHUP);
    s.wait_log_count(") ready", 4, T);
    let after = s.wait_ready(2, T);
    assert!(after.is_disjoint(&kids));
    s.signal(Signal::SIGTTIN);
    let three = s.wait_ready(3, T);
    for &pid in &three {
        assert_nobody(pid);
    }
    let served: BTreeSet<i32> = spread(s.addr(), 600).keys().copied().collect();
    assert_eq!(served, three);
    s.stop(STOP);
}

#[test]
fn a_single_process_drops_once_bound() {
    if not_root() {
        return;
    }
    let s = ServerTree::start(
        HELLO,
        &["--bind", "127.0.0.1:0", "--workers", "1", "--user", NOBODY],
    );
    assert_eq!(testkit::get(s.addr(), PID_PATH).pid(), Some(s.pid()));
    assert_nobody(s.pid());
    s.stop(STOP);
}

#[test]
fn a_unix_socket_file_belongs_to_the_workers_user_and_group() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if not_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let bind = format!("unix:{}", path.display());
    for workers in ["2", "1"] {
        let s = ServerTree::start(
            HELLO,
            &[
                "--bind",
                &bind,
                "--unix-mode",
                "660",
                "--workers",
                workers,
                "--user",
                "nobody",
                "--group",
                NOBODY,
            ],
        );
        assert_eq!(s.unix_paths(), vec![path.clone()], "{}", s.stderr());
        let meta = std::fs::metadata(&path).unwrap();
        let nobody: u32 = NOBODY.parse().unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (nobody, nobody),
            "{workers} worker(s)"
        );
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        assert_eq!(testkit::unix::get(&path, "/plaintext").status, 200);
        s.stop(STOP);
        // The master stays root and removes it. A single process that
        // became nobody may not unlink it from this root-only directory:
        // it stays (with a warning), and the next start replaces it.
        assert_eq!(path.exists(), workers == "1", "{workers} worker(s)");
    }
}

/// Two workers as `nobody` logging to `path` (`common` format), ready.
fn logging_as_nobody(path: &str) -> ServerTree {
    let log = ["--access-log", "common", "--access-log-file", path];
    ServerTree::start_workers(HELLO, 2, &[&["--user", "nobody"][..], &log[..]].concat())
}

/// The workers open the access log themselves, after dropping root: a
/// root-owned file is given to them at start-up, or no line would reach
/// it.
#[test]
fn an_access_log_file_is_given_to_the_workers() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if not_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("access.log");
    std::fs::write(&path, "").unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().uid(), 0);
    let p = path.to_str().unwrap();
    let s = ServerTree::start_workers(
        HELLO,
        2,
        &[
            "--user",
            "nobody",
            "--group",
            NOBODY,
            "--access-log",
            "common",
            "--access-log-file",
            p,
        ],
    );
    s.wait_ready(2, T);
    for _ in 0..10 {
        assert_eq!(testkit::get(s.addr(), "/plaintext").status, 200);
    }
    let logged = || std::fs::read_to_string(&path).unwrap().lines().count();
    assert!(
        testkit::wait_until(T, || logged() == 10),
        "{} lines\n{}",
        logged(),
        s.stderr()
    );
    let nobody: u32 = NOBODY.parse().unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().uid(), nobody);
    s.stop(STOP);

    // A log path that is a symbolic link is not given away through it,
    // nor a hard link (a second name of another file); the workers, who
    // then cannot open root's file, do not start, and the master gives up.
    let target = dir.path().join("elsewhere");
    std::fs::write(&target, "").unwrap();
    let link = dir.path().join("linked.log");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let hard = dir.path().join("hard.log");
    std::fs::hard_link(&target, &hard).unwrap();
    for planted in [&link, &hard] {
        let mut s = logging_as_nobody(planted.to_str().unwrap());
        let status = s
            .wait_exit(Duration::from_secs(20))
            .expect("the master gives up");
        assert!(!status.success(), "{}", s.stderr());
        let uid = std::fs::metadata(&target).unwrap().uid();
        assert_eq!(uid, 0, "given through {planted:?}");
    }

    // A dangling link's target is not created by root: no start.
    let nowhere = dir.path().join("nowhere");
    let dangling = dir.path().join("dangling.log");
    std::os::unix::fs::symlink(&nowhere, &dangling).unwrap();
    let d = dangling.to_str().unwrap();
    let args = [
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--user",
        "nobody",
    ];
    let log = ["--access-log", "common", "--access-log-file", d];
    let Err((status, _)) = ServerTree::try_start(HELLO, &[&args[..], &log[..]].concat()) else {
        panic!("started with a dangling link as its access log");
    };
    assert_eq!(status.code(), Some(2));
    assert!(!nowhere.exists(), "root created the link's target");
}

#[test]
fn an_unknown_user_or_group_is_a_start_up_error_naming_it() {
    for flag in ["--user", "--group"] {
        let err = ServerTree::try_start(
            HELLO,
            &[
                "--bind",
                "127.0.0.1:0",
                "--workers",
                "2",
                flag,
                "no-such-name-tine",
            ],
        )
        .expect_err("it must not start");
        assert_eq!(err.0.code(), Some(2), "{}", err.1);
        assert!(err.1.contains("\"no-such-name-tine\""), "{}", err.1);
    }
}

/// A directory in `parent` that only root may enter (mode 0700), holding
/// `files` (name, text).
fn root_only_dir(parent: &std::path::Path, files: &[(&str, &str)]) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = parent.join("rootonly");
    std::fs::create_dir(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// An access log file the master can open but the workers' user cannot
/// reach (a directory only root may enter): the workers do not serve
/// with every line lost; they fail to start, and the master gives up.
#[test]
fn an_access_log_the_workers_cannot_open_stops_the_start() {
    if not_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let private = root_only_dir(dir.path(), &[]);
    let log = private.join("access.log");
    let log = log.to_str().unwrap();
    let mut s = ServerTree::start_workers(
        HELLO,
        2,
        &[
            "--user",
            "nobody",
            "--access-log",
            "common",
            "--access-log-file",
            log,
        ],
    );
    let status = s
        .wait_exit(Duration::from_secs(20))
        .expect("the master gives up");
    s.wait_log_closed(T);
    let stderr = s.stderr();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot open it: Permission denied"),
        "{stderr}"
    );
    assert!(stderr.contains("not serving"), "{stderr}");
    assert!(stderr.contains("tine: no worker could start"), "{stderr}");
    assert!(s.tagged().is_empty(), "{stderr}");
}

/// A static directory only root may read, served by workers that dropped
/// root: every file is a 404 to clients (as a missing one), and the log
/// says why, once per worker.
#[test]
fn static_files_the_workers_may_not_read_are_404s_and_said_once() {
    if not_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let private = root_only_dir(dir.path(), &[("index.html", "hi")]);
    let s = ServerTree::start_workers(
        HELLO,
        1,
        &["--user", "nobody", "--static", private.to_str().unwrap()],
    );
    for _ in 0..3 {
        assert_eq!(testkit::get(s.addr(), "/static/index.html").status, 404);
    }
    let log = s.wait_log("static files: permission denied opening", T);
    assert_eq!(log.matches("permission denied opening").count(), 1, "{log}");
    s.stop(STOP);
}
