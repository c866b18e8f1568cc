//! What the todo binary refuses at start-up, and how: one line naming the
//! problem and exit status 2, before any worker serves.

use std::process::{Command, Stdio};

const TODO: &str = env!("CARGO_BIN_EXE_todo");

/// An error that cannot be told on stderr (`2>/dev/full`) was a panic
/// (`failed printing to stderr`, exit status 101); the exit status still
/// tells it.
#[cfg(target_os = "linux")]
#[test]
fn an_unwritable_stderr_is_no_panic() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(TODO)
        .args(["--bind", &addr, "--workers", "1", "--db"])
        .arg(dir.path().join("todo.db"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create("/dev/full").unwrap())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}
