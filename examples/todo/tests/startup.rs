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

/// Runs todo in `cwd` with `args`, which it must refuse: exit status 2
/// within 10 s (a todo that serves instead is killed and fails the test).
/// Its stderr.
fn refused(cwd: &std::path::Path, args: &[&str]) -> String {
    use std::io::Read;
    let mut child = Command::new(TODO)
        .args(["--bind", "127.0.0.1:0", "--quiet"])
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    testkit::wait_until(std::time::Duration::from_secs(10), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if status.is_none() {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    err
}

/// `:memory:` is a database per connection: with two workers, GETs
/// alternated between two lists.
#[test]
fn a_private_database_with_several_workers_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = refused(dir.path(), &["--workers", "2", "--db", ":memory:"]);
    assert!(
        err.contains("--db \":memory:\" is private to each process") && err.contains("--workers 1"),
        "{err}"
    );
}

/// A database the workers cannot use started a server answering 500 to
/// everything; the start now stops, naming the absolute path.
#[test]
fn an_unusable_database_stops_the_start_naming_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 4096]).unwrap();
    std::fs::create_dir(dir.path().join("adir")).unwrap();
    let cwd = dir.path().canonicalize().unwrap();
    for (db, why) in [
        ("missing/todo.db", "unable to open"),
        ("adir", "unable to open"),
        ("garbage.db", "not a database"),
    ] {
        let err = refused(&cwd, &["--workers", "2", "--db", db]);
        let abs = cwd.join(db);
        assert!(
            err.contains(&format!(
                "todo: cannot use the database {}: ",
                abs.display()
            )) && err.contains(why),
            "{db}: {err}"
        );
    }
}

/// SQLite takes a busy timeout of at most `i32::MAX` ms: a larger one
/// panicked in every worker's start.
#[test]
fn a_busy_timeout_past_sqlites_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = refused(
        dir.path(),
        &["--workers", "1", "--busy-timeout-ms", "2147483648"],
    );
    assert!(
        err.contains("--busy-timeout-ms") && err.contains("2147483647"),
        "{err}"
    );
}
