//! Access logs end to end: `hello --access-log FORMAT --access-log-file
//! PATH` with several workers writes one whole line per request (never two
//! interleaved), echoes the request id, and reopens the file on `SIGUSR1`
//! to the master (rename, signal, the new file gets the new lines).

use std::time::Duration;

use testkit::procs::{ServerTree, Signal};
use testkit::{wait_until, Client};

const HELLO: &str = env!("CARGO_BIN_EXE_hello");
const T: Duration = Duration::from_secs(30);

fn start(format: &str, path: &std::path::Path) -> ServerTree {
    let p = path.to_str().unwrap();
    let s = ServerTree::start_workers(
        HELLO,
        2,
        &[
            "--access-log",
            format,
            "--access-log-file",
            p,
            "--trusted-proxy",
            "127.0.0.1",
        ],
    );
    s.wait_ready(2, T);
    s
}

fn request(s: &ServerTree, path: &str, extra: &str) -> testkit::Resp {
    let mut c = Client::connect(s.addr());
    c.send(
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nUser-Agent: test/1\r\n{extra}\r\n").as_bytes(),
    );
    c.read_response()
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn json_lines_are_whole_and_carry_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let s = start("json", &path);
    let r = request(
        &s,
        "/hello/x?a=1",
        "X-Request-Id: abc-123\r\nX-Forwarded-For: 203.0.113.7\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    // An unsafe id is replaced, and the new one echoed.
    let r = request(&s, "/plaintext", "X-Request-Id: <script>\r\n");
    let generated = r.header("x-request-id").unwrap().to_string();
    assert_ne!(generated, "<script>");
    // Many requests from many connections over both workers: every line
    // is one whole JSON object.
    const N: usize = 200;
    for _ in 0..N {
        assert_eq!(request(&s, "/plaintext", "").status, 200);
    }
    assert!(wait_until(T, || lines(&path).len() == N + 2));
    let all = lines(&path);
    let first: serde_json::Value = serde_json::from_str(&all[0]).unwrap();
    assert_eq!(first["request_id"], "abc-123");
    assert_eq!(first["client"], "203.0.113.7");
    assert_eq!(first["target"], "/hello/x?a=1");
    assert_eq!(first["status"], 200);
    assert_eq!(first["bytes"], "Hello, x!".len());
    assert_eq!(first["user_agent"], "test/1");
    assert!(first["duration_seconds"].as_f64().unwrap() >= 0.0);
    let second: serde_json::Value = serde_json::from_str(&all[1]).unwrap();
    assert_eq!(second["request_id"], generated.as_str());
    let mut workers = std::collections::BTreeSet::new();
    for l in &all {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        workers.insert(v["worker"].as_u64().unwrap());
    }
    assert_eq!(workers.len(), 2, "lines from both workers");
    s.stop(T);
}

#[test]
fn common_and_combined_formats_and_sigusr1_reopens_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let s = start("combined", &path);
    assert_eq!(
        request(&s, "/plaintext", "Referer: http://r/\r\n").status,
        200
    );
    assert!(wait_until(T, || lines(&path).len() == 1));
    let line = &lines(&path)[0];
    let re_prefix = "127.0.0.1 - - [";
    assert!(line.starts_with(re_prefix), "{line}");
    assert!(
        line.contains("] \"GET /plaintext HTTP/1.1\" 200 13 \"http://r/\" \"test/1\" rt="),
        "{line}"
    );
    assert!(line.contains(" worker=") && line.contains(" id="), "{line}");
    // Rotation: rename, SIGUSR1 to the master, new lines in a new file.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    s.signal(Signal::SIGUSR1);
    // Every worker reopens on its next line: requests until the new file
    // has lines from both (each worker writes to the old file at most
    // until it handled the signal, which it does before its next request
    // once the signal arrived).
    assert!(wait_until(T, || {
        assert_eq!(request(&s, "/plaintext", "").status, 200);
        let fresh = lines(&path);
        let ws: std::collections::BTreeSet<&str> = fresh
            .iter()
            .filter_map(|l| l.split(" worker=").nth(1)?.split(' ').next())
            .collect();
        ws.len() == 2
    }));
    // Nothing was lost: the old file kept its line(s), and every line in
    // either file is whole.
    for l in lines(&rotated).iter().chain(lines(&path).iter()) {
        assert!(l.starts_with(re_prefix) && l.contains(" id="), "{l}");
    }
    assert!(!lines(&rotated).is_empty());
    // The master is still there and serving (SIGUSR1 killed nobody).
    assert_eq!(s.children().len(), 2);
    s.stop(T);

    let path = dir.path().join("common.log");
    let s = start("common", &path);
    assert_eq!(request(&s, "/plaintext", "").status, 200);
    assert!(wait_until(T, || lines(&path).len() == 1));
    let line = &lines(&path)[0];
    assert!(
        line.contains("\"GET /plaintext HTTP/1.1\" 200 13 rt="),
        "{line}"
    );
    s.stop(T);
}

#[test]
fn a_bad_format_is_refused_at_start_up() {
    let out = std::process::Command::new(HELLO)
        .args(["--bind", "127.0.0.1:0", "--access-log", "xml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("common, combined or json"), "{err}");
}
