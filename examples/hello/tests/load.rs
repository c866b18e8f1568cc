//! `hello`'s workers under continuous client load: rolling restarts
//! (`SIGHUP`) and scaling (`SIGTTIN`/`SIGTTOU`) must not fail or reset a
//! single request, on fresh or kept-alive connections.
// The load summary is printed (see it with `--nocapture`).

use std::time::{Duration, Instant};

use testkit::load::{spread, Load, LoadReport};
use testkit::procs::{heavy, listen_sockets, ServerTree, Signal};

const HELLO: &str = env!("CARGO_BIN_EXE_hello");
/// Bound of the waits for the processes to reach a state.
const T: Duration = Duration::from_secs(15);
/// Requests (all kinds) and fresh-connection requests each run must see.
const MIN_REQUESTS: usize = 5000;
const MIN_FRESH: usize = 1500;
/// Requests to let through between two events.
const BETWEEN: usize = 300;

fn start_load(s: &ServerTree) -> Load {
    // 3 threads with a fresh connection per request, 3 reusing connections.
    let load = Load::start(s.addr(), 3, 3, 50_000, Duration::from_secs(40));
    assert!(
        load.wait_done(BETWEEN, Duration::from_secs(10)),
        "the load does not get going"
    );
    load
}

/// Lets `n` more requests through (bounded).
fn step(load: &Load, n: usize) {
    let at = load.done();
    load.wait_done(at + n, Duration::from_secs(10));
}

fn finish(load: Load, what: &str) -> LoadReport {
    let want = MIN_REQUESTS.max(load.done() + 1500);
    load.wait_done_fresh(want, MIN_FRESH, Duration::from_secs(25));
    let rep = load.finish();
    rep.assert_clean(what);
    assert!(rep.ok >= MIN_REQUESTS, "{what}: only {} requests", rep.ok);
    assert!(
        rep.fresh >= MIN_FRESH && rep.kept_alive >= 1000,
        "{what}: {rep:?}"
    );
    rep
}

#[test]
fn sighup_rolling_restart_under_load_loses_nothing() {
    let _g = heavy();
    let s = ServerTree::start_workers(HELLO, 2, &[]);
    let first = s.wait_ready(2, T);
    let load = start_load(&s);
    let mut before = first.clone();
    for round in 1..=5 {
        let t0 = Instant::now();
        s.signal(Signal::SIGHUP);
        before = s.wait_children(T, &format!("2 new workers (round {round})"), |c| {
            c.len() == 2 && c.is_disjoint(&before)
        });
        assert!(t0.elapsed() < T);
        step(&load, BETWEEN);
    }
    let last = before;
    s.wait_log_count("rolling restart complete", 5, T);
    let rep = finish(load, "5 x SIGHUP under load");
    assert!(
        rep.by_pid.keys().any(|p| first.contains(p)) && rep.by_pid.keys().any(|p| last.contains(p)),
        "{:?}",
        rep.by_pid
    );
    // Afterwards only the newest workers answer.
    let by_pid = spread(s.addr(), 50);
    assert!(
        by_pid.keys().all(|p| last.contains(p)),
        "{by_pid:?} vs {last:?}"
    );
    assert_eq!(listen_sockets(s.addr().port()), 2);
    s.stop(Duration::from_secs(10));
}

#[test]
fn sigttou_and_sigttin_under_load_lose_nothing() {
    let _g = heavy();
    let s = ServerTree::start_workers(HELLO, 2, &[]);
    s.wait_ready(2, T);
    let load = start_load(&s);
    // +1: a third listener is bound; workers 0 and 1 have no fd for it.
    s.signal(Signal::SIGTTIN);
    s.wait_count(3, T);
    step(&load, 500);
    // -1: the survivor is replaced by a worker that inherits listener 2.
    s.signal(Signal::SIGTTOU);
    s.wait_count(2, T);
    s.wait_log("is replaced by one that also accepts on listeners [2]", T);
    step(&load, 500);
    // +1: listener 2 goes back to a new worker 2.
    s.signal(Signal::SIGTTIN);
    s.wait_count(3, T);
    step(&load, 500);
    // -1: this time the survivor adopts listener 2 in place (ADOPT).
    s.signal(Signal::SIGTTOU);
    s.wait_count(2, T);
    s.wait_log("adopts listeners [2]", T);
    let rep = finish(load, "SIGTTIN/SIGTTOU x2 under load");
    assert!(rep.by_pid.len() >= 3, "{:?}", rep.by_pid);
    assert_eq!(listen_sockets(s.addr().port()), 3, "no listener was closed");
    let kids = s.children();
    let by_pid = spread(s.addr(), 60);
    assert!(
        by_pid.keys().all(|p| kids.contains(p)),
        "{by_pid:?} vs {kids:?}"
    );
    s.stop(Duration::from_secs(10));
}
