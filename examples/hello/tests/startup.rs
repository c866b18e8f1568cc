//! What a server says at start-up: a failure is one readable line (the
//! README's example, whose `main` returns `tine::ServeError`), and a worker
//! count that `TINE_WORKERS` imposes is credited in the log.

use std::time::Duration;

use testkit::procs::ServerTree;

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
