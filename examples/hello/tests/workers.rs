//! Worker processes of the real `hello` binary, driven from outside (the
//! test process never forks): the master forks and supervises them, the
//! kernel spreads connections over their `SO_REUSEPORT` listeners, a second
//! instance is refused unless it joins on purpose, and `SIGTTIN`/`SIGTTOU`
//! scale without closing a listener.

use std::collections::BTreeSet;
use std::time::Duration;

use testkit::load::{spread, KeepAlive, PID_PATH};
use testkit::procs::{listen_sockets, ServerTree, Signal};
use testkit::{wait_until, Client};

const HELLO: &str = env!("CARGO_BIN_EXE_hello");
/// Bound of every wait for the processes to reach a state.
const T: Duration = Duration::from_secs(5);
/// Bound of a graceful stop without client connections.
const STOP: Duration = Duration::from_secs(10);

#[test]
fn four_workers_are_children_of_the_master_and_share_connections() {
    let s = ServerTree::start_workers(HELLO, 4, &[]);
    let kids = s.wait_ready(4, T);
    assert_eq!(
        listen_sockets(s.addr().port()),
        4,
        "one reuseport listener per worker"
    );
    let by_pid = spread(s.addr(), 400);
    assert!(
        by_pid.len() >= 3,
        "only {} distinct pids: {by_pid:?}",
        by_pid.len()
    );
    for pid in by_pid.keys() {
        assert!(
            kids.contains(pid),
            "pid {pid} is not a child of the master ({kids:?})"
        );
    }
    assert!(!by_pid.contains_key(&s.pid()), "the master never serves");
    s.stop(STOP);
}

#[test]
fn two_workers_both_serve() {
    let s = ServerTree::start_workers(HELLO, 2, &[]);
    let kids = s.wait_ready(2, T);
    let by_pid = spread(s.addr(), 400);
    assert_eq!(by_pid.keys().copied().collect::<BTreeSet<_>>(), kids);
    s.stop(STOP);
}

#[test]
fn workers_one_and_zero_serve_in_a_single_process() {
    for w in [1, 0] {
        let s = ServerTree::start_workers(HELLO, w, &[]);
        let r = testkit::get(s.addr(), PID_PATH);
        assert_eq!(
            r.pid(),
            Some(s.pid()),
            "--workers {w}: the process itself serves"
        );
        let mut ka = KeepAlive::new(s.addr());
        for _ in 0..5 {
            let r = ka.get(PID_PATH).expect("request");
            assert_eq!(r.pid(), Some(s.pid()));
            assert!(!r.closes());
        }
        assert_eq!(ka.connections, 1, "keep-alive reused one connection");
        assert!(
            s.children().is_empty(),
            "--workers {w} forked: {:?}",
            s.children()
        );
        assert_eq!(listen_sockets(s.addr().port()), 1);
        drop(ka);
        s.stop(STOP);
    }
}

#[test]
fn an_unknown_listener_mode_fails_with_one_line() {
    let (status, stderr) = ServerTree::try_start_env(
        HELLO,
        &["--bind", "127.0.0.1:0", "--workers", "2"],
        &[("TINE_LISTENER", "balanced")],
    )
    .expect_err("must fail");
    assert!(!status.success(), "{status}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one line: {stderr:?}");
    assert!(
        lines[0].contains("TINE_LISTENER must be \"shared\" or \"reuseport\""),
        "{stderr:?}"
    );
}

#[test]
fn binding_an_address_in_use_fails_with_one_line() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    for w in ["4", "1"] {
        let (status, stderr) = ServerTree::try_start(HELLO, &["--bind", &addr, "--workers", w])
            .expect_err("must fail");
        assert!(!status.success(), "{status}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "--workers {w}: exactly one line: {stderr:?}"
        );
        assert!(lines[0].contains(&addr), "{stderr:?}");
        assert!(lines[0].contains("address already in use"), "{stderr:?}");
    }
}

#[test]
fn a_second_instance_does_not_silently_join_the_reuseport_group() {
    let a = ServerTree::start_workers(HELLO, 2, &[]);
    let a_kids = a.wait_ready(2, T);
    let addr = a.addr().to_string();
    let (status, stderr) = ServerTree::try_start(HELLO, &["--bind", &addr, "--workers", "2"])
        .expect_err("a second instance must be refused");
    assert!(!status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.contains(&format!("cannot bind {addr}: address already in use")),
        "{stderr:?}"
    );
    // Joining on purpose works and does take a share.
    let b = ServerTree::try_start(
        HELLO,
        &["--bind", &addr, "--workers", "2", "--join-existing"],
    )
    .unwrap_or_else(|(s, e)| panic!("--join-existing failed: {s} {e}"));
    let b_kids = b.wait_ready(2, T);
    assert_eq!(listen_sockets(a.addr().port()), 4);
    let by_pid = spread(a.addr(), 100);
    assert!(by_pid.keys().any(|p| a_kids.contains(p)), "{by_pid:?}");
    assert!(
        by_pid.keys().any(|p| b_kids.contains(p)),
        "the joined instance got no traffic: {by_pid:?}"
    );
    b.stop(STOP);
    // A single process joins the same way (it has no workers: it serves
    // itself).
    let c = ServerTree::try_start(HELLO, &["--bind", &addr, "--join-existing"])
        .unwrap_or_else(|(s, e)| panic!("--join-existing, one process, failed: {s} {e}"));
    assert_eq!(listen_sockets(a.addr().port()), 3);
    let by_pid = spread(a.addr(), 100);
    assert!(
        by_pid.contains_key(&c.pid()),
        "the joined process got no traffic: {by_pid:?}"
    );
    c.stop(STOP);
    a.stop(STOP);
}

/// A scale-up's new socket listens only once its worker is ready: while
/// that worker is still in `on_worker_start`, new connections go to the
/// address's other sockets instead of waiting in a queue no one reads.
#[test]
fn a_scaled_up_socket_takes_no_connection_before_its_worker_is_ready() {
    let s = ServerTree::start_workers(HELLO, 2, &["--slow-start-ms", "3000"]);
    let port = s.addr().port();
    s.wait_ready(2, T);
    s.signal(Signal::SIGTTIN);
    s.wait_count(3, T);
    // Forked, three seconds from ready.
    assert_eq!(listen_sockets(port), 2, "bound, not yet listening");
    for i in 0..30 {
        let started = std::time::Instant::now();
        let mut c = Client::connect(s.addr());
        assert_eq!(c.get("/plaintext").status, 200);
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(1500),
            "request {i} waited {took:?}"
        );
    }
    s.wait_ready(3, T);
    assert!(wait_until(T, || listen_sockets(port) == 3));
    s.stop(STOP);
}

/// A stop while a scaled-up worker is still starting (its socket only
/// bound): the others drain, taking what is queued on the sockets they
/// hold, and every process exits at once, the starting one included.
#[test]
fn a_stop_during_a_slow_scale_up_ends_promptly() {
    let mut s = ServerTree::start_workers(HELLO, 2, &["--slow-start-ms", "2000"]);
    s.wait_ready(2, T);
    s.signal(Signal::SIGTTIN);
    s.wait_count(3, T);
    let started = std::time::Instant::now();
    s.signal(Signal::SIGTERM);
    let status = s
        .wait_exit(Duration::from_secs(10))
        .expect("the master exits");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn ttin_and_ttou_change_the_worker_count_without_closing_listeners() {
    let s = ServerTree::start_workers(HELLO, 2, &[]);
    let port = s.addr().port();
    s.wait_ready(2, T);
    assert_eq!(listen_sockets(port), 2);

    s.signal(Signal::SIGTTIN);
    s.wait_count(3, T);
    // The master listens on the new socket once the worker is forked: the
    // child can show before the listener does.
    wait_until(T, || listen_sockets(port) == 3);
    assert_eq!(listen_sockets(port), 3, "scale-up binds one more listener");

    // Workers 0 and 1 were forked before listener 2 existed, so the
    // survivor is replaced by a worker that inherits it.
    s.signal(Signal::SIGTTOU);
    let kids = s.wait_count(2, T);
    s.wait_log("is replaced by one that also accepts on listeners [2]", T);
    assert_eq!(
        listen_sockets(port),
        3,
        "scale-down never closes a listener"
    );
    // Connections hashed to the removed worker's listener are served by
    // the adopter: every request answers.
    let by_pid = spread(s.addr(), 60);
    assert!(
        by_pid.keys().all(|p| kids.contains(p)),
        "{by_pid:?} vs {kids:?}"
    );

    s.signal(Signal::SIGTTIN);
    s.wait_count(3, T);
    assert_eq!(
        listen_sockets(port),
        3,
        "scale-up reuses the adopted listener"
    );

    // This time the survivor has the descriptor and adopts it in place.
    s.signal(Signal::SIGTTOU);
    s.wait_count(2, T);
    s.wait_log("adopts listeners [2]", T);
    s.signal(Signal::SIGTTOU);
    let kids = s.wait_count(1, T);
    let by_pid = spread(s.addr(), 60);
    assert_eq!(by_pid.keys().copied().collect::<BTreeSet<_>>(), kids);
    assert_eq!(listen_sockets(port), 3);

    s.signal(Signal::SIGTTOU);
    s.wait_log("SIGTTOU ignored", T);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.children(), kids, "never below 1 worker");
    // A kept-alive connection on the last worker still works.
    assert_eq!(Client::connect(s.addr()).get(PID_PATH).status, 200);
    // The slots scaled away keep their counters but are no workers down.
    let metrics = Client::connect(s.addr()).get("/metrics").text();
    assert!(
        metrics.contains("tine_worker_up{worker=\"0\"} 1\n"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("tine_worker_up{worker=\"1\"}"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("tine_worker_up{worker=\"2\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tine_worker_restarts_total{worker=\"1\","),
        "{metrics}"
    );
    s.stop(STOP);
}
