//! What a server says and does at start-up: a failure is one readable
//! line (the README's example, whose `main` returns `tine::ServeError`), a
//! worker count that `TINE_WORKERS` imposes is credited in the log, and a
//! `SIGTERM` sent the moment it announces its address stops it gracefully.

use std::time::Duration;

use testkit::procs::{heavy, ServerTree, Signal};

const HELLO: &str = env!("CARGO_BIN_EXE_hello");
const README: &str = env!("CARGO_BIN_EXE_readme");
const T: Duration = Duration::from_secs(10);

#[test]
fn the_readme_example_fails_on_a_taken_port_with_one_line() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let public = tempfile::tempdir().unwrap();
    let public = public.path().to_str().unwrap();
    let (status, stderr) =
        ServerTree::try_start(README, &[&addr, public]).expect_err("port is taken");
    // What Rust's runtime does with an `Err` from `main`: `Error: ` and
    // the error's Debug, exit status 1.
    assert_eq!(status.code(), Some(1), "{stderr:?}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines,
        [format!(
            "Error: tine: cannot bind {addr}: address already in use"
        )],
        "{stderr:?}"
    );
}

#[test]
fn a_worker_count_from_tine_workers_is_said_in_the_startup_log() {
    let s = ServerTree::start_env(
        HELLO,
        &["--bind", "127.0.0.1:0", "--workers", "1"],
        &[("TINE_WORKERS", "2")],
    );
    let log = s.wait_log("listening on http://", T);
    let line = log
        .lines()
        .find(|l| l.contains("listening on http://"))
        .unwrap();
    assert!(line.contains("with 2 workers"), "{line}");
    assert!(
        line.contains("TINE_WORKERS=2 overrides the app's workers(1)"),
        "{line}"
    );
    s.wait_ready(2, T);
    s.stop(T);

    // Single process by the variable, 4 in the code.
    let s = ServerTree::start_env(
        HELLO,
        &["--bind", "127.0.0.1:0", "--workers", "4"],
        &[("TINE_WORKERS", "1")],
    );
    let log = s.wait_log("listening on http://", T);
    assert!(
        log.contains("(single process; TINE_WORKERS=1 overrides the app's workers(4))"),
        "{log}"
    );
    s.stop(T);

    // Without the variable, the log does not mention it.
    let s = ServerTree::start_workers(HELLO, 2, &[]);
    let log = s.wait_log("listening on http://", T);
    assert!(!log.contains("TINE_WORKERS"), "{log}");
    s.wait_ready(2, T);
    s.stop(T);
}

#[test]
fn a_worker_count_past_the_most_is_refused_with_one_line() {
    // A count this large once made the master allocate a slot per worker
    // before forking (an abort, or a "capacity overflow" panic).
    for (workers, env, says) in [
        ("129", None, "workers(129)"),
        ("2", Some("129"), "TINE_WORKERS=129"),
        ("2", Some("100000000000"), "TINE_WORKERS=100000000000"),
        (
            "2",
            Some("18446744073709551615"),
            "TINE_WORKERS=18446744073709551615",
        ),
    ] {
        let args = [
            "--bind",
            "127.0.0.1:0",
            "--workers",
            workers,
            "--balance",
            "shared",
        ];
        let env: Vec<(&str, &str)> = env.map(|n| ("TINE_WORKERS", n)).into_iter().collect();
        let (status, stderr) = match ServerTree::try_start_env(HELLO, &args, &env) {
            Ok(s) => panic!("{says} started a server:\n{}", s.stderr()),
            Err(refused) => refused,
        };
        assert_eq!(status.code(), Some(2), "{says}: {stderr}");
        assert!(
            stderr.contains(&format!("tine: {says}: the most a server runs is 128")),
            "{says}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{says}: {stderr}");
    }
    // `auto` is never refused: it takes at most that many.
    let s = ServerTree::start_env(
        HELLO,
        &["--bind", "127.0.0.1:0", "--workers", "1"],
        &[("TINE_WORKERS", "auto")],
    );
    s.wait_log("listening on http://", T);
    s.stop(T);
}

/// Starts hello with `args` `runs` times, each time sending `SIGTERM` the
/// moment its `listening on` line is read; each run must stop gracefully:
/// exit 0, log `drain_line`, leave no process behind.
fn sigterm_on_listening(args: &[&str], runs: usize, drain_line: &str) {
    let _g = heavy();
    for run in 0..runs {
        let mut s = ServerTree::spawn_signal_on_listening(HELLO, args, &[], Signal::SIGTERM);
        let status = s
            .wait_exit(T)
            .unwrap_or_else(|| panic!("run {run}: still running {T:?} after SIGTERM"));
        assert!(s.wait_log_closed(T), "run {run}: the log stayed open");
        let log = s.stderr();
        assert!(status.success(), "run {run}: {status}\n{log}");
        assert!(s.listening().is_some(), "run {run}: never announced\n{log}");
        assert!(
            log.contains(drain_line),
            "run {run}: no {drain_line:?}\n{log}"
        );
        let left = s.tagged();
        assert!(left.is_empty(), "run {run}: left behind {left:?}\n{log}");
    }
}

/// The single process takes its signals over when it binds, before hello
/// prints `listening on`: installed only when `run` built the event loop,
/// a `SIGTERM` that came in between took its default action and killed
/// the process (exit by signal, no drain).
#[test]
fn a_sigterm_right_after_listening_on_drains_a_single_process() {
    sigterm_on_listening(
        &["--bind", "127.0.0.1:0", "--workers", "1"],
        30,
        "drained; exiting",
    );
}

/// The same for a master: its signals are blocked from bind on, so a
/// `SIGTERM` sent before its signal source exists waits as pending and
/// then stops it like any other.
#[test]
fn a_sigterm_right_after_listening_on_stops_a_master() {
    sigterm_on_listening(
        &["--bind", "127.0.0.1:0", "--workers", "2"],
        30,
        "all workers exited; bye",
    );
}

/// stdout or stderr that cannot be written (`>/dev/full`, or a pipe whose
/// reader went away: `hello | (exit 0)`) made hello panic with `failed
/// printing to stdout` (exit status 101). The `listening on` line is for
/// whoever watches; a server nobody watches still serves. And an error
/// that cannot be told on stderr is still told by the exit status (2).
#[cfg(target_os = "linux")]
#[test]
fn unwritable_stdout_and_stderr_are_no_panic() {
    use std::process::{Command, Stdio};
    let full = || Stdio::from(std::fs::File::create("/dev/full").unwrap());
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("hello.sock");
    let bind = format!("unix:{}", sock.display());
    let mut child = Command::new(HELLO)
        .args(["--bind", &bind, "--workers", "2"])
        .env_remove("TINE_WORKERS")
        .stdin(Stdio::null())
        .stdout(full())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = None;
    let served = testkit::wait_until(T, || {
        status = child.try_wait().unwrap();
        status.is_some() || testkit::unix::try_get(&sock, "/plaintext").is_ok()
    });
    assert!(served && status.is_none(), "hello exited: {status:?}");
    assert_eq!(testkit::unix::get(&sock, "/plaintext").status, 200);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));

    // A taken port, told to an stderr that cannot be written: exit 2.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let out = Command::new(HELLO)
        .args(["--bind", &addr])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(full())
        .status()
        .unwrap();
    assert_eq!(out.code(), Some(2));
}
