//! The todo app in a real browser: starts the app with 4 workers on an
//! ephemeral port and runs `browser/test.mjs` (playwright-core driving
//! Debian's Chromium, two separate browser contexts), which also saves the
//! screenshot (`TODO_SCREENSHOT=$PWD/docs/todo.png` refreshes the README's).
//!
//! Needs `chromium`, `node` and `browser/node_modules` (`npm ci` in
//! `examples/todo/browser`). Without them the test says so loudly and
//! passes, unless `CI` is set, where it fails.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::ServerProcess;

/// Upper bound for the Node script (it has its own, shorter one).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn two_browsers_add_toggle_edit_delete() {
    let browser_dir = manifest_dir().join("browser");
    let chromium = testkit::browser::chromium();
    let missing = testkit::browser::missing_prerequisites(&browser_dir);
    if !missing.is_empty() {
        let banner = "!".repeat(72);
        let list = missing.join("\n  ");
        // Straight to the process's stderr: the test harness would hide
        // eprintln! output of a passing test.
        let _ = writeln!(
            std::io::stderr(),
            "\n{banner}\nBROWSER TEST NOT RUN: missing\n  {list}\n\
             See examples/todo/README.md, \"Tests\".\n{banner}\n"
        );
        if std::env::var_os("CI").is_some() {
            panic!("the browser test cannot run in CI: missing {missing:?}");
        }
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("todo.db");
    let server = ServerProcess::start(
        env!("CARGO_BIN_EXE_todo"),
        &[
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "4",
            "--db",
            db.to_str().unwrap(),
            "--quiet",
        ],
    );
    let screenshot = std::env::var("TODO_SCREENSHOT").map_or_else(
        // Not docs/todo.png by default: a test run must not dirty the tree.
        // Refresh the README's picture with TODO_SCREENSHOT=docs/todo.png.
        |_| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("todo.png"),
        PathBuf::from,
    );

    let stdout_path = dir.path().join("node.out");
    let stderr_path = dir.path().join("node.err");
    let mut cmd = Command::new("node");
    cmd.arg("test.mjs")
        .current_dir(&browser_dir)
        .env("BASE_URL", format!("http://{}", server.addr))
        .env("SCREENSHOT", &screenshot)
        .env("CHROMIUM", &chromium)
        // Also check that every change reaches the other context, without
        // a reload, within 2 s (live updates across workers).
        .env("TODO_LIVE", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    let mut child = cmd.spawn().expect("start node");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    println!("{out}");
    eprintln!("{err}");
    drop(server);
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("the browser script failed ({s}):\n{err}"),
        None => panic!("the browser script did not finish within {SCRIPT_TIMEOUT:?}"),
    }
    assert!(
        out.contains("all checks passed"),
        "the script did not report success"
    );
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );
}
