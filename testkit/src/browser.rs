//! Running a Node script that drives Debian's Chromium through
//! `playwright-core` (installed once, by `npm ci` in
//! `examples/todo/browser`, which every browser test shares).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The shared folder with `node_modules/playwright-core`, from a test's
/// `CARGO_MANIFEST_DIR` (any member of the workspace).
pub fn shared_dir(manifest_dir: &str) -> PathBuf {
    let root = Path::new(manifest_dir)
        .ancestors()
        .find(|p| p.join("examples/todo/browser/package.json").is_file())
        .expect("the workspace root");
    root.join("examples/todo/browser")
}

/// The browser binary: `$CHROMIUM` or `/usr/bin/chromium`.
pub fn chromium() -> PathBuf {
    PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()))
}

/// What is missing to run a browser test, if anything.
pub fn missing_prerequisites(browser_dir: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    let chromium = chromium();
    if !chromium.is_file() {
        missing.push(format!(
            "{} (apt-get install -y chromium)",
            chromium.display()
        ));
    }
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        missing.push("node (apt-get install -y nodejs npm)".to_string());
    }
    if !browser_dir.join("node_modules/playwright-core").is_dir() {
        missing.push(format!(
            "{0}/node_modules/playwright-core (cd {0} && npm ci)",
            browser_dir.display()
        ));
    }
    missing
}

/// Says loudly that a browser test cannot run; panics under CI (`CI`
/// set), where it must.
pub fn not_run(missing: &[String]) {
    let banner = "!".repeat(72);
    // Straight to the process's stderr: the harness hides a passing
    // test's output.
    let _ = writeln!(
        std::io::stderr(),
        "\n{banner}\nBROWSER TEST NOT RUN: missing\n  {}\n{banner}\n",
        missing.join("\n  ")
    );
    if std::env::var_os("CI").is_some() {
        panic!("the browser test cannot run in CI: missing {missing:?}");
    }
}

/// Runs `node script` in `dir` with `env`, at most `limit`; returns its
/// stdout, or panics with its stderr if it failed or did not finish.
pub fn run_script(dir: &Path, script: &str, env: &[(&str, String)], limit: Duration) -> String {
    let out_dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (out_dir.path().join("out"), out_dir.path().join("err"));
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .current_dir(dir)
        .env("CHROMIUM", chromium())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start node");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    match status {
        Some(s) if s.success() => out,
        Some(s) => panic!("{script} failed ({s}):\n{out}\n{err}"),
        None => panic!("{script} did not finish within {limit:?}:\n{out}\n{err}"),
    }
}
