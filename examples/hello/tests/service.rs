//! `hello` as a service: its pid file, its open-file limit, and the routes
//! outside checks rely on (`/version`, `/block`).

use std::time::Duration;

use testkit::procs::{heavy, ServerTree};
use testkit::{get, Client};

const HELLO: &str = env!("CARGO_BIN_EXE_hello");
const T: Duration = Duration::from_secs(15);

fn read_pid(path: &std::path::Path) -> i32 {
    let text = std::fs::read_to_string(path).expect("the pid file");
    assert!(text.ends_with('\n'), "{text:?}");
    text.trim().parse().expect("a pid")
}

#[test]
fn the_masters_pid_file_is_written_and_removed_on_stop() {
    let _g = heavy();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hello.pid");
    let p = path.to_str().unwrap();
    let s = ServerTree::start_workers(HELLO, 2, &["--pid-file", p]);
    let workers = s.wait_ready(2, T);
    assert_eq!(read_pid(&path), s.pid());
    assert!(!workers.contains(&read_pid(&path)));
    // Worker exits (a SIGHUP retires both) leave it alone.
    s.signal(testkit::procs::Signal::SIGHUP);
    s.wait_log("rolling restart complete", T);
    s.wait_children(T, "the old workers gone", |c| {
        c.len() == 2 && c.is_disjoint(&workers)
    });
    assert_eq!(read_pid(&path), s.pid());
    s.stop(T);
    assert!(!path.exists(), "the pid file is left behind");
}

#[test]
fn a_single_process_writes_its_pid_file_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hello.pid");
    let s = ServerTree::start(
        HELLO,
        &[
            "--bind",
            "127.0.0.1:0",
            "--pid-file",
            path.to_str().unwrap(),
        ],
    );
    assert_eq!(read_pid(&path), s.pid());
    assert_eq!(get(s.addr(), "/pid").text(), s.pid().to_string());
    s.stop(T);
    assert!(!path.exists());
}

#[test]
fn a_pid_file_taken_over_by_another_process_is_left_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hello.pid");
    let s = ServerTree::start(
        HELLO,
        &[
            "--bind",
            "127.0.0.1:0",
            "--pid-file",
            path.to_str().unwrap(),
        ],
    );
    std::fs::write(&path, "1\n").unwrap();
    s.stop(T);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n");
}

#[test]
fn an_unwritable_pid_file_is_a_start_up_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("hello.pid");
    let p = path.to_str().unwrap();
    for workers in ["1", "2"] {
        let (status, log) = ServerTree::try_start(
            HELLO,
            &[
                "--bind",
                "127.0.0.1:0",
                "--workers",
                workers,
                "--pid-file",
                p,
            ],
        )
        .map(|_| ())
        .expect_err("it must not start");
        assert!(!status.success());
        assert!(
            log.contains("cannot write the pid file") && log.contains(p),
            "{log}"
        );
    }
}

/// The soft and hard "Max open files" of a process.
#[cfg(target_os = "linux")]
fn nofile(pid: i32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line")
        .to_string();
    let mut words = line["Max open files".len()..].split_whitespace();
    (
        words.next().unwrap().to_string(),
        words.next().unwrap().to_string(),
    )
}

#[cfg(target_os = "linux")]
#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit_in_master_and_workers() {
    let _g = heavy();
    // Start it with a soft limit below the hard one (this test process's
    // limit is inherited; the other tests here need few descriptors).
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard_now) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, 512.min(hard_now), hard_now).unwrap();
    let s = ServerTree::start_workers(HELLO, 2, &[]);
    let workers = s.wait_ready(2, T);
    let (soft, hard) = nofile(s.pid());
    assert_eq!(hard, hard_now.to_string());
    assert_eq!(soft, hard, "master");
    for w in workers {
        assert_eq!(nofile(w), (soft.clone(), hard.clone()), "worker {w}");
    }
    assert!(!s.stderr().contains("open-file limit"), "{}", s.stderr());
    s.stop(T);
}

#[test]
fn a_max_connections_past_the_open_file_limit_is_warned_about() {
    // More than any hard limit Linux allows (nr_open is at most 2^30).
    let s = ServerTree::start(
        HELLO,
        &["--bind", "127.0.0.1:0", "--max-connections", "4000000000"],
    );
    let log = s.wait_log("cannot hold max_connections (4000000000)", T);
    assert!(log.contains("LimitNOFILE"), "{log}");
    assert_eq!(get(s.addr(), "/plaintext").status, 200);
    s.stop(T);
}

#[test]
fn version_and_block_routes() {
    let s = ServerTree::start(
        HELLO,
        &["--bind", "127.0.0.1:0", "--version-tag", "build-7 (test)"],
    );
    assert_eq!(get(s.addr(), "/version").text(), "build-7 (test)");
    let mut c = Client::connect(s.addr());
    let r = c.get("/block?ms=50");
    assert_eq!((r.status, r.text()), (200, "blocked".to_string()));
    assert_eq!(get(s.addr(), "/block?ms=soon").status, 400);
    assert_eq!(get(s.addr(), "/block").status, 400);
    s.stop(T);
    let plain = ServerTree::start(HELLO, &["--bind", "127.0.0.1:0"]);
    assert_eq!(
        get(plain.addr(), "/version").text(),
        env!("CARGO_PKG_VERSION")
    );
    plain.stop(T);
}
