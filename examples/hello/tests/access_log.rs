//! Access logs end to end: `hello --access-log FORMAT --access-log-file
//! PATH` with several workers writes one whole line per request (never two
//! interleaved, to a file or to a pipe on stdout), echoes the request id,
//! and reopens the file on `SIGUSR1` to the master (rename, signal, the
//! new file gets the new lines; a file that cannot be opened again leaves
//! the old one in use, with one warning). A file that cannot be opened at
//! all stops the start. Refused requests are logged too. A log reader that
//! stops reading (stdout or stderr) does not stop the server.

use std::time::Duration;

use testkit::procs::{ServerTree, Signal};
use testkit::{get, wait_until, Client};

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
    // Every worker reopens at once, with no request to log: the new file
    // is there and no process keeps the rotated one open (a log shipper
    // waits for that; an idle worker would hold it for good).
    let holds_rotated = |pid: i32| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|p| p == rotated))
    };
    assert!(wait_until(T, || path.exists()
        && !s.children().into_iter().any(holds_rotated)));
    // Every worker writes its next line there: requests until the new file
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

/// Two workers log long lines to stdout, a pipe the test reads slowly (so
/// that it is often full and writes to it wait), for requests from several
/// clients at once: every line is one whole JSON object. A line longer than
/// a pipe's atomic write (4096 bytes) could be split by the kernel and
/// another worker's line land in between.
#[test]
fn lines_to_a_slowly_read_pipe_are_whole() {
    let s = ServerTree::start_workers_slow_stdout(
        HELLO,
        2,
        &["--access-log", "json"],
        Duration::from_millis(10),
    );
    s.wait_ready(2, T);
    const CLIENTS: usize = 8;
    const EACH: usize = 30;
    let addr = s.addr();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            std::thread::spawn(move || {
                for i in 0..EACH {
                    // 12 KB of user agent, and tabs, which JSON escapes
                    // (a line of 18 KB before lines were cut).
                    let agent = format!("ua-{c}-{i}/{}", "x\t".repeat(6000));
                    let mut client = Client::connect(addr);
                    client.send(
                        format!(
                            "GET /plaintext?c={c} HTTP/1.1\r\nHost: t\r\nUser-Agent: {agent}\r\n\
                             X-Request-Id: r-{c}-{i}\r\n\r\n"
                        )
                        .as_bytes(),
                    );
                    assert_eq!(client.read_response().status, 200);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    // Each line ends in one newline, torn or not: wait for all of them.
    assert!(
        wait_until(T, || s.stdout_lines().len() >= CLIENTS * EACH),
        "{} lines",
        s.stdout_lines().len()
    );
    let lines = s.stdout_lines();
    let torn: Vec<&String> = (lines.iter())
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
        .collect();
    assert!(
        torn.is_empty(),
        "{} of {} lines torn",
        torn.len(),
        lines.len()
    );
    let mut ids = std::collections::BTreeSet::new();
    for line in &lines {
        assert!(line.len() <= 4096, "{} bytes", line.len());
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = v["request_id"].as_str().unwrap().to_string();
        let agent = v["user_agent"].as_str().unwrap();
        // The user agent was cut, visibly.
        assert!(agent.starts_with(&format!("ua-{}/", &id[2..])), "{agent}");
        assert!(agent.ends_with("..."), "{agent}");
        ids.insert(id);
    }
    assert_eq!(ids.len(), CLIENTS * EACH, "every request once");
    s.stop(T);
}

#[test]
fn a_log_file_that_cannot_be_opened_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("access.log");
    let p = path.to_str().unwrap();
    let args = ["--bind", "127.0.0.1:0", "--workers", "2"];
    let log = ["--access-log", "common", "--access-log-file", p];
    let Err((status, err)) = ServerTree::try_start(HELLO, &[&args[..], &log[..]].concat()) else {
        panic!("hello started with an access log it cannot open");
    };
    assert_eq!(status.code(), Some(2));
    assert!(err.contains(&format!("access log {p}")), "{err}");
}

/// After `SIGUSR1`, a file that cannot be opened again (its directory was
/// moved away): lines go on to the file already open, with one warning
/// per worker, not one per request.
#[test]
fn a_failed_reopen_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let path = logs.join("access.log");
    let s = start("common", &path);
    assert_eq!(request(&s, "/plaintext", "").status, 200);
    let moved = dir.path().join("logs.old");
    std::fs::rename(&logs, &moved).unwrap();
    let old = moved.join("access.log");
    s.signal(Signal::SIGUSR1);
    let mut sent = 1;
    // Until a worker found it cannot open the file again.
    assert!(wait_until(T, || {
        assert_eq!(request(&s, "/plaintext", "").status, 200);
        sent += 1;
        s.stderr().contains("access log")
    }));
    for _ in 0..50 {
        assert_eq!(request(&s, "/plaintext", "").status, 200);
        sent += 1;
    }
    assert!(
        wait_until(T, || lines(&old).len() == sent),
        "{} of {sent} lines in the old file",
        lines(&old).len()
    );
    let log = s.stderr();
    let warnings = log.lines().filter(|l| l.contains("access log")).count();
    assert!((1..=2).contains(&warnings), "{warnings} warnings:\n{log}");
    assert!(!path.exists());
    s.stop(T);
}

/// Refusals before a request line could be read are logged (with the line
/// as it came, or `-`), and a protocol tine does not speak as it was sent.
#[test]
fn refused_requests_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let s = ServerTree::start_workers(
        HELLO,
        2,
        &[
            "--access-log",
            "json",
            "--access-log-file",
            path.to_str().unwrap(),
            "--proxy-protocol-listen",
            "127.0.0.1:0",
        ],
    );
    s.wait_ready(2, T);
    let refused = |addr, raw: &[u8]| {
        let mut c = Client::connect(addr);
        c.send(raw);
        c.read_response()
    };
    let r = refused(s.addr(), b"GET /a\x7fb HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 400);
    assert_eq!(
        refused(s.addr(), b"G\"T / HTTP/1.1\r\nHost: t\r\n\r\n").status,
        400
    );
    assert_eq!(
        refused(s.addr(), b"GET / HTTP/9.9\r\nHost: t\r\n\r\n").status,
        505
    );
    let proxied = s.addrs()[1];
    assert_eq!(refused(proxied, b"PROXY NONSENSE\r\n").status, 400);
    assert!(wait_until(T, || lines(&path).len() == 4));
    let all: Vec<serde_json::Value> = lines(&path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |status: u64, key: &str, value: &str| {
        all.iter()
            .find(|v| v["status"] == status && v[key] == value)
            .unwrap_or_else(|| panic!("no {status} with {key} {value:?} in {all:#?}"))
    };
    let bad_target = find(400, "request", "GET /a\u{7f}b HTTP/1.1");
    assert_eq!(bad_target["client"], "127.0.0.1");
    assert!(bad_target["method"].is_null() && bad_target["target"].is_null());
    assert_eq!(bad_target["request_id"], r.header("x-request-id").unwrap());
    find(400, "request", "G\"T / HTTP/1.1");
    let version = find(505, "protocol", "HTTP/9.9");
    assert_eq!(version["target"], "/");
    // Nothing of a request arrived: logged with none.
    let proxy = all
        .iter()
        .find(|v| v["status"] == 400 && v.get("request").is_none())
        .unwrap_or_else(|| panic!("no bare 400 in {all:#?}"));
    assert!(proxy["method"].is_null() && proxy["bytes"].as_u64().unwrap() > 0);
    s.stop(T);
}

#[test]
fn a_log_reader_that_stops_reading_does_not_stop_the_server() {
    // An access log line on stdout and a `--log` line on stderr per
    // request, and a panic's log line now and then; then nobody reads
    // either pipe. A blocking write would freeze the workers once a pipe
    // is full (64 KiB), and the master with them.
    let s = ServerTree::start_workers(HELLO, 2, &["--access-log", "common", "--log"]);
    s.wait_ready(2, T);
    s.hold_output(true);
    let addr = s.addr();
    let clients: Vec<_> = (0..4)
        .map(|c| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                for i in 0..600 {
                    let path = if i % 100 == 0 { "/panic" } else { "/plaintext" };
                    let r = client.get(&format!(
                        "{path}?client={c}&request={i}&{}",
                        "x".repeat(100)
                    ));
                    assert!(r.status == 200 || r.status == 500, "{}", r.status);
                    if r.status == 500 {
                        // A panic's answer closes nothing; a new
                        // connection anyway, to reach both workers.
                        client = Client::connect(addr);
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join()
            .expect("every request answered while the logs were stuck");
    }
    // The master is not stuck either: it still answers a status request
    // through a worker and takes signals.
    assert_eq!(testkit::get(addr, "/plaintext").status, 200);
    // The reader comes back: logging goes on, saying what was lost.
    s.hold_output(false);
    assert!(
        wait_until(T, || {
            let _ = testkit::get(addr, "/plaintext");
            s.stderr()
                .contains("log line(s) dropped: the reader had no room")
                && s.stderr().contains("line(s) lost since the last warning")
        }),
        "{}",
        s.stderr()
    );
    s.stop(T);
}

/// Lines lost while the log cannot be written are counted in a warning at
/// most once a minute; what is still uncounted when the process stops is
/// said then, not taken away with it (a recycled or replaced worker's
/// losses were never reported). `/dev/full` fails every write.
#[test]
fn lines_lost_are_reported_when_the_process_stops() {
    let mut s = ServerTree::start(
        HELLO,
        &[
            "--bind",
            "127.0.0.1:0",
            "--access-log",
            "common",
            "--access-log-file",
            "/dev/full",
        ],
    );
    for _ in 0..5 {
        assert_eq!(get(s.addr(), "/plaintext").status, 200);
    }
    s.signal(Signal::SIGTERM);
    assert!(s.wait_exit(T).expect("exited").success());
    let err = s.stderr();
    assert!(
        err.contains("1 line(s) lost since the last warning"),
        "{err}"
    );
    assert!(
        err.contains("4 line(s) lost since the last warning (this process stops)"),
        "{err}"
    );
}
