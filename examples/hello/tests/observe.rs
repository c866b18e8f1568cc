//! Metrics, status page and health check end to end, against `hello` with
//! several workers: one scrape sums exactly what every worker served, a
//! `kill -9` shows as one crash, blocked workers show their accept queues,
//! the output parses with the Prometheus client's own parser (Python's
//! `prometheus_client`, Debian's `python3-prometheus-client`: without it
//! these tests say so loudly and pass, except under CI), the status page is
//! well-formed and lists every worker, and `/healthz` turns 503 at once on
//! `SIGTERM` while the server keeps accepting for the shutdown delay.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::procs::{heavy, signal, wait_sleeping, ServerTree, Signal};
use testkit::{get, wait_until, Client};

const HELLO: &str = env!("CARGO_BIN_EXE_hello");
const T: Duration = Duration::from_secs(30);

/// Parses Prometheus text with `prometheus_client.parser` and prints one
/// `name{labels} value` line per sample, labels sorted, as JSON lines.
const PARSE: &str = r#"
import sys, json
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        print(json.dumps([fam.type, s.name, s.labels, s.value]))
"#;

/// One parsed sample.
#[derive(Debug, Clone)]
struct Sample {
    kind: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Runs `script` with `input` on stdin; `None` (after saying why) when
/// Python or the module is missing outside CI.
fn python(script: &str, input: &str) -> Option<String> {
    // Debian's interpreter, where `apt-get install python3-prometheus-client`
    // puts the module (a `python3` earlier on PATH, say pyenv's, does not
    // see it).
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("SKIPPED: cannot run python3 ({e})");
            assert!(std::env::var_os("CI").is_none(), "{msg}");
            eprintln!("{msg}");
            return None;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if err.contains("No module named 'prometheus_client'") {
        let msg = "SKIPPED: python3-prometheus-client is not installed";
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("{msg}");
        return None;
    }
    assert!(
        out.status.success(),
        "python failed: {err}\ninput:\n{input}"
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

/// Scrapes `/metrics` and parses it with the real parser.
fn scrape(addr: std::net::SocketAddr) -> Option<Vec<Sample>> {
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    parse(&r.text())
}

/// hello with two ready workers, and a first scrape of its metrics
/// (`None` without the Python parser).
fn two_ready_workers_scraped() -> Option<(ServerTree, std::net::SocketAddr, Vec<Sample>)> {
    let s = ServerTree::start_workers(HELLO, 2, &[]);
    s.wait_ready(2, T);
    let addr = s.addr();
    let before = scrape(addr)?;
    Some((s, addr, before))
}

fn parse(text: &str) -> Option<Vec<Sample>> {
    let out = python(PARSE, text)?;
    Some(
        out.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                Sample {
                    kind: v[0].as_str().unwrap().into(),
                    name: v[1].as_str().unwrap().into(),
                    labels: v[2]
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().into()))
                        .collect(),
                    value: v[3].as_f64().unwrap(),
                }
            })
            .collect(),
    )
}

fn sum(samples: &[Sample], name: &str, filter: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            filter
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

#[test]
fn one_scrape_sums_every_worker_and_names_follow_the_conventions() {
    let _g = heavy();
    let s = ServerTree::start_workers(HELLO, 4, &[]);
    let workers = s.wait_ready(4, T);
    let addr = s.addr();
    // Requests on fresh connections until every worker served some (the
    // kernel spreads connections over the reuseport listeners), then up
    // to exactly N.
    const N: usize = 400;
    let mut seen = BTreeSet::new();
    for i in 0..N {
        let r = get(addr, if i % 2 == 0 { "/pid" } else { "/plaintext" });
        assert_eq!(r.status, 200);
        if i % 2 == 0 {
            seen.insert(r.text().trim().parse::<i32>().unwrap());
        }
    }
    assert_eq!(seen, workers, "every worker served some of the {N}");
    let Some(samples) = scrape(addr) else {
        return;
    };
    // The scrape itself is still in its handler: not counted yet.
    assert_eq!(sum(&samples, "tine_http_responses_total", &[]), N as f64);
    assert_eq!(
        sum(&samples, "tine_http_responses_total", &[("class", "2xx")]),
        N as f64
    );
    // Routed requests: the N, plus the scrape (counted when routed).
    assert_eq!(
        sum(&samples, "tine_http_requests_total", &[("method", "GET")]),
        N as f64 + 1.0
    );
    for w in 0..4 {
        let w = w.to_string();
        assert!(sum(&samples, "tine_http_responses_total", &[("worker", &w)]) > 0.0);
        assert_eq!(sum(&samples, "tine_worker_up", &[("worker", &w)]), 1.0);
    }
    let pids: BTreeSet<i32> = samples
        .iter()
        .filter(|s| s.name == "tine_worker_pid")
        .map(|s| s.value as i32)
        .collect();
    assert_eq!(pids, workers);
    // The histogram's count is the number of handlers timed.
    assert_eq!(
        sum(&samples, "tine_http_handler_duration_seconds_count", &[]),
        N as f64
    );
    // Conventions: counters end in _total, durations in _seconds, sizes
    // in _bytes; the build info carries the version.
    for s in &samples {
        if s.kind == "counter" {
            assert!(s.name.ends_with("_total"), "{}", s.name);
        }
        assert!(
            !s.name.contains("_ms") && !s.name.contains("milli"),
            "{}",
            s.name
        );
        assert!(s.value >= 0.0);
    }
    assert_eq!(
        sum(
            &samples,
            "tine_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    let started = sum(&samples, "tine_start_time_seconds", &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(started > now - 600.0 && started <= now + 1.0, "{started}");
    #[cfg(target_os = "linux")]
    {
        // The master samples memory and queues every second.
        assert!(wait_until(T, || {
            let s = scrape(addr).unwrap();
            let with_memory = s
                .iter()
                .filter(|x| x.name == "tine_worker_private_memory_bytes" && x.value > 0.0)
                .count();
            with_memory == 4 && s.iter().any(|x| x.name == "tine_listener_queue_limit")
        }));
    }
    s.stop(T);
}

#[test]
fn a_killed_worker_counts_as_one_crash_and_its_slot_keeps_its_counts() {
    let _g = heavy();
    let s = ServerTree::start_workers(HELLO, 2, &[]);
    let workers = s.wait_ready(2, T);
    let addr = s.addr();
    for _ in 0..50 {
        assert_eq!(get(addr, "/plaintext").status, 200);
    }
    let Some(before) = scrape(addr) else {
        return;
    };
    let victim = *workers.iter().next().unwrap();
    let slot = before
        .iter()
        .find(|x| x.name == "tine_worker_pid" && x.value as i32 == victim)
        .map(|x| x.labels["worker"].clone())
        .expect("the victim's slot");
    let served = sum(&before, "tine_http_responses_total", &[("worker", &slot)]);
    signal(victim, Signal::SIGKILL).unwrap();
    s.wait_log(&format!("(pid {victim}) exited unexpectedly"), T);
    let mut after = Vec::new();
    assert!(wait_until(T, || {
        after = scrape(addr).unwrap();
        let up = sum(&after, "tine_worker_up", &[("worker", &slot)]) == 1.0;
        up && !after
            .iter()
            .any(|x| x.name == "tine_worker_pid" && x.value as i32 == victim)
    }));
    let crash = |w: &str| {
        sum(
            &after,
            "tine_worker_restarts_total",
            &[("worker", w), ("reason", "crash")],
        )
    };
    assert_eq!(crash(&slot), 1.0);
    let other = if slot == "0" { "1" } else { "0" };
    assert_eq!(crash(other), 0.0);
    for reason in ["timeout", "recycled", "reload", "upgrade"] {
        assert_eq!(
            sum(&after, "tine_worker_restarts_total", &[("reason", reason)]),
            0.0
        );
    }
    // The dead worker's responses stay in its slot's counter (no reset
    // for rate() to misread), though its process is gone.
    assert!(
        sum(&after, "tine_http_responses_total", &[("worker", &slot)]) >= served,
        "{served}"
    );
    s.stop(T);
}

#[cfg(target_os = "linux")]
#[test]
fn blocked_workers_show_their_accept_queues() {
    let _g = heavy();
    // Three workers, two of them blocked in /sleep; connections that land
    // on their listeners wait in the kernel's queues, which the master
    // samples. The admin process answers the scrapes: a scrape on the
    // public port could itself land on a blocked listener and wait, and
    // on a loaded machine even the free worker's answer may be slow.
    let s = start_with_admin(3);
    let (_, admin) = admin_addr(&s);
    assert!(wait_until(T, || s.ready_pids().len() == 3));
    let workers = s.ready_pids();
    let addr = s.addr();
    let sleepers = block_workers(addr, &workers, 2, 10_000);
    // Clients waiting behind them.
    let waiting: Vec<Client> = (0..30).map(|_| Client::connect(addr)).collect();
    let mut depth_seen = 0.0;
    // The master samples once a second; the sleeps last 10 s.
    let found = wait_until(Duration::from_secs(6), || {
        let r = get(admin, "/metrics");
        let Some(samples) = parse(&r.text()) else {
            depth_seen = 1.0;
            return true;
        };
        depth_seen = samples
            .iter()
            .filter(|x| x.name == "tine_listener_queue_depth")
            .map(|x| x.value)
            .fold(0.0, f64::max);
        depth_seen > 0.0
    });
    assert!(found, "no queue depth above zero ({depth_seen})");
    drop(waiting);
    drop(sleepers);
    s.stop(T);
}

/// Well-formedness (the page is XHTML-compatible), one row per worker with
/// its pid, checked by Python's XML parser.
const STATUS_CHECK: &str = r#"
import sys, xml.etree.ElementTree as ET
doc = sys.stdin.read()
assert doc.startswith("<!DOCTYPE html>")
root = ET.fromstring(doc[len("<!DOCTYPE html>"):])
rows = root.findall(".//tbody/tr")
for r in rows:
    cells = r.findall("td")
    print(cells[0].text, cells[1].text, cells[3].text)
"#;

#[test]
fn the_status_page_lists_every_worker_in_html_and_json() {
    let _g = heavy();
    let s = ServerTree::start_workers(HELLO, 3, &[]);
    let workers = s.wait_ready(3, T);
    let addr = s.addr();
    let r = get(addr, "/status");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let Some(rows) = python(STATUS_CHECK, &r.text()) else {
        return;
    };
    let pids: BTreeSet<i32> = rows
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(pids, workers, "{}", r.text());
    let slots: BTreeSet<&str> = rows.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(slots, ["0", "1", "2"].into_iter().collect());
    // The worker answering is in its handler, on this very request.
    assert!(rows.lines().any(|l| l.ends_with("handler")), "{rows}");
    assert!(r.text().contains("GET /status"));

    let j = get(addr, "/status?format=json");
    assert_eq!(j.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&j.body).unwrap();
    let pids: BTreeSet<i32> = v["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["pid"].as_i64().unwrap() as i32)
        .collect();
    assert_eq!(pids, workers);

    let bad = get(addr, "/status?format=bogus");
    assert_eq!(bad.status, 400);
    assert!(
        bad.text().contains("html") && bad.text().contains("json"),
        "{}",
        bad.text()
    );
    s.stop(T);
}

#[test]
fn healthz_stays_up_through_a_reload_and_turns_503_on_sigterm_while_accepting() {
    let _g = heavy();
    let s = ServerTree::start_workers(HELLO, 2, &["--shutdown-delay-ms", "4000"]);
    s.wait_ready(2, T);
    let addr = s.addr();
    assert_eq!(get(addr, "/healthz").status, 200);
    // A rolling restart is invisible to the load balancer.
    s.signal(Signal::SIGHUP);
    let mut checks = 0;
    assert!(wait_until(T, || {
        let r = get(addr, "/healthz");
        assert_eq!(r.status, 200, "{}", r.text());
        checks += 1;
        s.ready_pids().len() >= 4 && s.children().len() == 2
    }));
    assert!(checks > 0);
    // A stop: 503 at once, and new connections are still served. (The
    // reload's old workers drained already: count the drains from here.)
    assert!(wait_until(T, || s
        .stderr()
        .matches("stop requested: draining")
        .count()
        >= 2));
    let drains = s.stderr().matches("stop requested: draining").count();
    s.signal(Signal::SIGTERM);
    assert!(wait_until(T, || get(addr, "/healthz").status == 503));
    s.wait_log("shutdown delay", T);
    let r = get(addr, "/healthz");
    assert_eq!((r.status, r.text()), (503, "stopping\n".to_string()));
    let r = get(addr, "/plaintext");
    assert_eq!(r.status, 200, "still accepting during the delay");
    let log = s.stderr();
    assert!(
        !log.contains("shutdown delay over")
            && log.matches("stop requested: draining").count() == drains,
        "the drain waits for the delay:\n{log}"
    );
    // Then the drain, and a clean exit.
    s.stop(T);
}

/// The admin address from the master's log line.
/// hello with `workers` workers and an admin process. Tests block workers
/// with `/sleep`, and several sleeps may queue on one worker (reuseport
/// hashes them), which a graceful stop would serve one after the other:
/// the stop's SIGKILL comes after 5 s, not the default 30 s that
/// `stop(T)` also waits.
fn start_with_admin(workers: usize) -> ServerTree {
    ServerTree::start_workers(
        HELLO,
        workers,
        &[
            "--admin-bind",
            "127.0.0.1:0",
            "--graceful-timeout-ms",
            "5000",
        ],
    )
}

/// Sends `/sleep?ms=MS` on new connections until `n` of `workers` sleep
/// in it (each lands on some worker); returns the connections, to keep
/// open meanwhile.
fn block_workers(
    addr: std::net::SocketAddr,
    workers: &BTreeSet<i32>,
    n: usize,
    ms: u32,
) -> Vec<Client> {
    let mut sleepers = Vec::new();
    let mut blocked = BTreeSet::new();
    while blocked.len() < n {
        assert!(sleepers.len() < 40, "could not block {n} workers");
        let mut c = Client::connect(addr);
        c.send(format!("GET /sleep?ms={ms} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        sleepers.push(c);
        let rest: BTreeSet<i32> = workers.difference(&blocked).copied().collect();
        if let Some(p) = wait_sleeping(&rest, Duration::from_millis(500)) {
            blocked.insert(p);
        }
    }
    sleepers
}

fn admin_addr(s: &ServerTree) -> (i32, std::net::SocketAddr) {
    let log = s.wait_log("spawned the admin process", T);
    let line = log
        .lines()
        .rfind(|l| l.contains("spawned the admin process"))
        .unwrap();
    let pid = line
        .split("(pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .expect("admin pid");
    let addr = line
        .rsplit("http://")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .expect("admin address");
    (pid, addr)
}

/// The descriptors of process `pid` that name `path`.
fn fds_naming(pid: i32, path: &std::path::Path) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l == path))
                .count()
        })
        .unwrap_or(0)
}

/// The admin process serves the admin routes only: it does not keep the
/// app's resources open (here the static root's descriptor, which every
/// worker holds; an app's database would be the same), which it held for
/// its whole life before.
#[test]
fn the_admin_process_holds_none_of_the_apps_resources() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::write(root.join("a.txt"), "a").unwrap();
    let root_arg = root.to_str().unwrap();
    let s = ServerTree::start_workers(
        HELLO,
        2,
        &["--admin-bind", "127.0.0.1:0", "--static", root_arg],
    );
    s.wait_count(3, T);
    let (admin_pid, admin) = admin_addr(&s);
    assert!(wait_until(T, || s.ready_pids().len() == 2));
    let worker = *s.ready_pids().iter().next().unwrap();
    assert_eq!(get(s.addr(), "/static/a.txt").status, 200);
    assert_eq!(get(admin, "/healthz").status, 200);
    assert!(fds_naming(worker, &root) > 0, "the worker holds the root");
    assert_eq!(
        fds_naming(admin_pid, &root),
        0,
        "the admin process holds the root"
    );
    s.stop(T);
}

#[test]
fn the_admin_process_answers_while_every_worker_is_stuck() {
    let _g = heavy();
    let s = start_with_admin(2);
    // Two workers and the admin process (which is no worker: never
    // logged ready).
    let children = s.wait_count(3, T);
    let (admin_pid, admin) = admin_addr(&s);
    assert!(children.contains(&admin_pid));
    assert!(wait_until(T, || s.ready_pids().len() == 2));
    let workers = s.ready_pids();
    assert!(!workers.contains(&admin_pid));
    let addr = s.addr();
    // Off the public port, on the admin one.
    for path in ["/metrics", "/status", "/healthz"] {
        assert_eq!(get(addr, path).status, 404, "{path} on the public port");
        assert_eq!(get(admin, path).status, 200, "{path} on the admin port");
    }
    // No user route there.
    assert_eq!(get(admin, "/plaintext").status, 404);
    // Both workers blocked: the admin process still answers, and sees
    // them in their handlers.
    let sleepers = block_workers(addr, &workers, 2, 6000);
    let st = get(admin, "/status?format=json");
    assert_eq!(st.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&st.body).unwrap();
    let in_handler = v["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["state"] == "handler" && w["request"] == "GET /sleep?ms=6000")
        .count();
    assert_eq!(in_handler, 2, "{v}");
    assert_eq!(get(admin, "/healthz").status, 200);
    // A crashed admin process is forked again.
    signal(admin_pid, Signal::SIGKILL).unwrap();
    s.wait_log(&format!("admin process (pid {admin_pid}) exited"), T);
    assert!(wait_until(T, || s
        .stderr()
        .matches("spawned the admin process")
        .count()
        == 2));
    assert!(wait_until(T, || {
        let mut c = match std::net::TcpStream::connect(admin) {
            Ok(c) => c,
            Err(_) => return false,
        };
        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .is_ok()
            && {
                let mut buf = String::new();
                let _ = std::io::Read::read_to_string(&mut c, &mut buf);
                buf.starts_with("HTTP/1.1 200")
            }
    }));
    drop(sleepers);
    // The master takes it along when it exits (stop checks nothing is left).
    s.stop(T);
}

/// The byte counters count what crosses the sockets, whatever writes it:
/// a body too large to copy behind its head (sent from where it is), a
/// WebSocket's frames. Plain TCP here; TLS counts its ciphertext once (see
/// `tls.rs`).
#[test]
fn byte_counters_count_every_byte_on_the_wire() {
    let _g = heavy();
    let Some((s, addr, before)) = two_ready_workers_scraped() else {
        return; // no Python parser here (said by `python`)
    };
    let big = get(addr, "/big?kb=64");
    assert_eq!(big.status, 200);
    let body = vec![b'x'; 100_000];
    let mut c = Client::connect(addr);
    c.send(
        format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.send(&body);
    let echo = c.read_response();
    assert_eq!(echo.body.len(), body.len());
    let stream = std::net::TcpStream::connect(addr).unwrap();
    let (mut ws, _) =
        tungstenite::client(format!("ws://{addr}/ws/echo"), stream).expect("handshake");
    for _ in 0..10 {
        ws.send(tungstenite::Message::Binary(vec![7u8; 1000].into()))
            .unwrap();
        assert_eq!(ws.read().unwrap().len(), 1000);
    }
    // A counter moves just after its write returns, and the client can
    // read those bytes (and scrape) before it does: one more echo, which
    // the worker sends only after it counted the last, makes the counts
    // above complete.
    ws.send(tungstenite::Message::Binary(vec![7u8; 1].into()))
        .unwrap();
    assert_eq!(ws.read().unwrap().len(), 1);
    drop(ws);
    let after = scrape(addr).expect("parsed");
    let delta = |name: &str| sum(&after, name, &[]) - sum(&before, name, &[]);
    let sent = delta("tine_http_sent_bytes_total");
    let received = delta("tine_http_received_bytes_total");
    // The bodies, their heads and frames, and the first scrape's answer
    // (some 10 KB); nothing else was sent.
    let bodies = (big.body.len() + body.len() + 10 * 1000) as f64;
    assert!(
        sent >= bodies && sent < bodies + 30_000.0,
        "sent {sent}, bodies {bodies}"
    );
    let uploads = (body.len() + 10 * 1000) as f64;
    assert!(
        received >= uploads && received < uploads + 10_000.0,
        "received {received}, uploads {uploads}"
    );
    s.stop(T);
}

/// A request with a body answered when its head arrives (a 405, a 404,
/// a before-hook's refusal) reached routing and the hooks: it counts in
/// `tine_http_requests_total` like one whose handler ran.
#[test]
fn requests_answered_before_their_body_are_counted() {
    let _g = heavy();
    let Some((s, addr, before)) = two_ready_workers_scraped() else {
        return; // no Python parser here (said by `python`)
    };
    for (head, status) in [
        ("PUT /plaintext", 405),
        ("PUT /nowhere", 404),
        ("PUT /plaintext", 405),
    ] {
        let mut c = Client::connect(addr);
        c.send(format!("{head} HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nab").as_bytes());
        assert_eq!(c.read_response().status, status, "{head}");
    }
    let after = scrape(addr).expect("parsed");
    let put = |s: &[Sample]| sum(s, "tine_http_requests_total", &[("method", "PUT")]);
    assert_eq!(put(&after) - put(&before), 3.0);
    s.stop(T);
}

/// The admin process answers while the workers start: its health check
/// says 503 until one serves (a slow `on_worker_start` here; workers
/// that die at every start likewise), then 200.
#[test]
fn the_admin_health_check_is_503_until_a_worker_serves() {
    let _g = heavy();
    let s = ServerTree::start_workers(
        HELLO,
        2,
        &["--admin-bind", "127.0.0.1:0", "--slow-start-ms", "3000"],
    );
    let (_, admin) = admin_addr(&s);
    if s.ready_pids().is_empty() {
        let r = get(admin, "/healthz");
        // (Unless the workers got ready in between: then 200 below.)
        if s.ready_pids().is_empty() {
            assert_eq!((r.status, r.text().as_str()), (503, "starting\n"));
        }
    }
    assert!(wait_until(T, || s.ready_pids().len() == 2));
    assert!(wait_until(T, || get(admin, "/healthz").status == 200));
    assert_eq!(get(admin, "/healthz").text(), "ok\n");
    s.stop(T);
}
