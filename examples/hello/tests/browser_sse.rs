//! Server-sent events in a real browser: Chromium's `EventSource` against
//! `hello --workers 4`, streams held by several workers, every message
//! published (from whichever worker takes the POST) reaching every page,
//! with its event id. The script is `examples/todo/browser/sse.mjs`
//! (sharing that folder's playwright-core install).
//!
//! Needs `chromium`, `node` and `npm ci` in `examples/todo/browser`;
//! without them the test says so loudly and passes, unless `CI` is set.

use std::time::Duration;

use testkit::{browser, ServerProcess};

#[test]
fn event_source_across_four_workers() {
    let dir = browser::shared_dir(env!("CARGO_MANIFEST_DIR"));
    let missing = browser::missing_prerequisites(&dir);
    if !missing.is_empty() {
        browser::not_run(&missing);
        return;
    }
    let server = ServerProcess::start(
        env!("CARGO_BIN_EXE_hello"),
        &["--bind", "127.0.0.1:0", "--workers", "4"],
    );
    let out = browser::run_script(
        &dir,
        "sse.mjs",
        &[("BASE_URL", format!("http://{}", server.addr))],
        Duration::from_secs(120),
    );
    println!("{out}");
    assert!(out.contains("all checks passed"), "{out}");
}
