//! Life and death of `hello`'s worker processes, driven from outside (the
//! test process never forks): graceful and immediate stops, crashes and
//! respawns with backoff, the master's death, and signals racing start-up;
//! and the routes of platforms without Linux's signalfd, `PR_SET_PDEATHSIG`
//! and balancing `SO_REUSEPORT` (self-pipe signals, a parent watch, a
//! shared listener), selected here by their switches.
//!
//! `hello`'s handlers are synchronous: a worker inside `/sleep` serves
//! nothing else. Tests that need requests in flight on every worker
//! therefore put one on a connection known to be served by each worker.
// A few tests print what they measured (see it with `--nocapture`).
#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::thread;
use std::time::{Duration, Instant};

use testkit::load::{connection_per_worker, spread, try_get, PID_PATH};
use testkit::procs::{
    all_gone, heavy, listen_sockets, signal, thread_name, wait_sleeping, ServerTree, Signal,
};
use testkit::{wait_until, Client};

const HELLO: &str = env!("CARGO_BIN_EXE_hello");
/// Bound of every wait for the processes to reach a state.
const T: Duration = Duration::from_secs(5);

fn graceful_stop(sig: Signal) {
    let mut s = ServerTree::start_workers(HELLO, 2, &["--graceful-timeout-ms", "10000"]);
    let kids = s.wait_ready(2, T);
    let addr = s.addr();
    // An idle kept-alive connection must not hold the stop up for long.
    // (Made first: a worker inside /sleep would not answer it.)
    let mut idle = Client::connect(addr);
    assert_eq!(idle.get(PID_PATH).status, 200);
    // One slow request in flight on each worker.
    let slow: Vec<_> = connection_per_worker(addr, &kids, 200)
        .into_iter()
        .enumerate()
        .map(|(i, (pid, mut conn))| {
            thread::spawn(move || {
                conn.send(
                    format!(
                        "GET /sleep?ms={} HTTP/1.1\r\nHost: t\r\n\r\n",
                        1200 + i * 100
                    )
                    .as_bytes(),
                );
                let res = conn.try_read_response(false);
                // Then the stopping worker closes the connection.
                let closed = conn.closed_within(Duration::from_secs(4));
                (pid, res, closed)
            })
        })
        .collect();
    // Signal once every worker is inside its /sleep (hello names the
    // thread meanwhile).
    assert!(
        wait_until(T, || kids
            .iter()
            .all(|&p| thread_name(p).as_deref() == Some("sleeping"))),
        "the slow requests did not all start"
    );
    let t0 = Instant::now();
    s.signal(sig);
    for h in slow {
        let (pid, res, closed) = h.join().unwrap();
        let r = res.unwrap_or_else(|e| panic!("in-flight request on worker {pid} failed: {e}"));
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "slept"),
            "worker {pid}"
        );
        assert!(
            closed,
            "worker {pid} kept the connection open while stopping"
        );
    }
    let status = s
        .wait_exit(Duration::from_secs(10))
        .expect("the master exits");
    let took = t0.elapsed();
    assert!(status.success(), "{sig}: {status}\n{}", s.stderr());
    assert!(
        took >= Duration::from_millis(800),
        "did not wait for in-flight requests: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(
        idle.closed_within(Duration::from_secs(1)),
        "idle connection left open"
    );
    assert!(all_gone(&kids), "workers left (or unreaped) after {sig}");
    assert!(s.tagged().is_empty(), "orphans: {:?}", s.tagged());
    s.wait_log("graceful stop", T);
}

#[test]
fn sigterm_is_a_graceful_stop() {
    graceful_stop(Signal::SIGTERM);
}

#[test]
fn sigint_is_a_graceful_stop() {
    graceful_stop(Signal::SIGINT);
}

#[test]
fn graceful_timeout_ends_in_sigkill() {
    let mut s = ServerTree::start_workers(HELLO, 2, &["--graceful-timeout-ms", "800"]);
    let kids = s.wait_ready(2, T);
    let addr = s.addr();
    // /sleep is capped at 10 s: far beyond the graceful timeout.
    let stuck = thread::spawn(move || try_get(addr, "/sleep?ms=10000"));
    assert!(wait_sleeping(&kids, T).is_some(), "/sleep never started");
    let t0 = Instant::now();
    s.signal(Signal::SIGTERM);
    let status = s
        .wait_exit(Duration::from_secs(10))
        .expect("the master exits");
    let took = t0.elapsed();
    assert!(status.success(), "{status}");
    // Killed at the graceful timeout, well before /sleep's 10 s would
    // have ended it (the upper bound leaves a loaded machine room).
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(9),
        "{took:?}"
    );
    let cut = stuck.join().unwrap();
    assert!(cut.is_err(), "the stuck request was not cut off: {cut:?}");
    s.wait_log("killed by SIGKILL", T);
    assert!(all_gone(&kids));
    assert!(s.tagged().is_empty());
}

#[test]
fn sigquit_is_an_immediate_stop() {
    let mut s = ServerTree::start_workers(HELLO, 3, &[]);
    let kids = s.wait_ready(3, T);
    let addr = s.addr();
    let slow = thread::spawn(move || try_get(addr, "/sleep?ms=5000"));
    assert!(wait_sleeping(&kids, T).is_some(), "/sleep never started");
    s.signal(Signal::SIGQUIT);
    let status = s
        .wait_exit(Duration::from_secs(5))
        .expect("the master exits");
    assert!(status.success(), "{status}");
    // Immediate: the request in flight was cut off, not waited for (no
    // wall-clock bound, which a loaded machine could miss).
    assert!(slow.join().unwrap().is_err());
    assert!(all_gone(&kids));
    assert!(s.tagged().is_empty());
}

#[test]
fn a_killed_worker_is_replaced_and_its_queue_survives() {
    let s = ServerTree::start_workers(HELLO, 3, &[]);
    let kids = s.wait_ready(3, T);
    let victim = *kids.iter().next().unwrap();
    let t0 = Instant::now();
    signal(victim, Signal::SIGKILL).unwrap();
    // Fresh connections right away: those hashed to the dead worker's
    // listener wait in its queue (the master holds it) for the respawn.
    let by_pid = spread(s.addr(), 40);
    let new = s.wait_children(Duration::from_secs(2), "a replacement", |c| {
        c.len() == 3 && !c.contains(&victim)
    });
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(!by_pid.contains_key(&victim), "{by_pid:?}");
    let spawned: Vec<i32> = new.difference(&kids).copied().collect();
    assert_eq!(spawned.len(), 1, "{kids:?} -> {new:?}");
    assert!(
        by_pid.contains_key(&spawned[0]) || by_pid.len() >= 2,
        "{by_pid:?}"
    );
    let log = s.wait_log("killed by SIGKILL", T);
    assert!(
        log.contains(&format!("(pid {victim}) exited unexpectedly")),
        "{log}"
    );
    assert!(s.zombies().is_empty(), "unreaped: {:?}", s.zombies());
    let after = spread(s.addr(), 30);
    assert!(
        after.keys().all(|p| new.contains(p)),
        "{after:?} vs {new:?}"
    );
    s.stop(Duration::from_secs(10));
}

/// Workers that cannot start are respawned with backoff (100 ms, then
/// 200 ms), and after three failures in a row on a slot, with no worker
/// ever ready, the master stops and exits with an error instead of
/// keeping an address that accepts connections no one serves (gunicorn's
/// "worker failed to boot"). (The backoff of workers that crash after
/// they started, which goes on to 5 s, is the supervisor's unit tests'.)
#[test]
fn workers_that_cannot_start_are_retried_then_the_master_gives_up() {
    let _g = heavy();
    let mut s = ServerTree::start_workers(HELLO, 2, &["--crash-on-start"]);
    let status = s
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("the master did not give up:\n{}", s.stderr()));
    s.wait_log_closed(Duration::from_secs(10));
    let log = s.stderr();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("exited before it was ready 3 times in a row"),
        "{log}"
    );
    assert!(log.contains("tine: no worker could start"), "{log}");
    let lines = s.log_lines();
    let spawned = |slot: usize| -> Vec<Duration> {
        lines
            .iter()
            .filter(|(_, l)| l.contains(&format!("spawned worker {slot} (")))
            .map(|(t, _)| *t)
            .collect()
    };
    // The slot that gave up was spawned three times, 100 then 200 ms
    // apart at least (less the jitter of reading lines).
    let gave_up = (0..2).find(|&slot| spawned(slot).len() == 3).expect(&log);
    let gaps: Vec<Duration> = spawned(gave_up).windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, ms) in gaps.iter().zip([100u64, 200]) {
        assert!(
            *gap >= Duration::from_millis(ms * 7 / 10),
            "{gaps:?}\n{log}"
        );
    }
    assert!(log.contains("respawning in 100ms"), "{log}");
    assert!(log.contains("respawning in 200ms"), "{log}");
    let left = s.tagged();
    assert!(left.is_empty(), "left behind: {left:?}\n{log}");
}

#[test]
fn killing_the_master_leaves_no_worker_behind() {
    let mut s = ServerTree::start_workers(HELLO, 3, &[]);
    let kids = s.wait_ready(3, T);
    // One worker is busy with a request when the master dies.
    let addr = s.addr();
    let slow = thread::spawn(move || try_get(addr, "/sleep?ms=500"));
    assert!(wait_sleeping(&kids, T).is_some(), "/sleep never started");
    s.signal(Signal::SIGKILL);
    s.wait_exit(T).expect("the master dies");
    // They finish the request in flight (500 ms) and exit: far sooner than
    // the 30 s drain deadline, which is what a worker that missed its
    // master's death would wait for. The bound is generous for a loaded
    // machine, not a timing claim.
    let gone = wait_until(Duration::from_secs(10), || orphans_gone(&s, &kids));
    assert!(gone, "workers survived the master: {:?}", s.tagged());
    let r = slow
        .join()
        .unwrap()
        .expect("the in-flight request still completes");
    assert_eq!((r.status, r.text().as_str()), (200, "slept"));
}

/// Starts `hello` with 3 workers `iterations` times and signals the
/// master somewhere between exec and its first forks; every run must end
/// with the master gone and no orphan. Returns how the runs ended.
fn signal_races(iterations: u64, env: &[(&str, &str)]) -> BTreeMap<String, usize> {
    let _g = heavy();
    let mut outcomes = BTreeMap::<String, usize>::new();
    for i in 0..iterations {
        let sig = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT][(i % 3) as usize];
        let mut s = ServerTree::spawn_env(HELLO, &["--bind", "127.0.0.1:0", "--workers", "3"], env);
        if i % 2 == 0 {
            // 0 to ~7 ms after exec: anywhere from before main to mid-fork.
            thread::sleep(Duration::from_micros((i * 290) % 7500));
        } else {
            // Just as the master starts forking.
            let deadline = Instant::now() + T;
            while s.listening().is_none() && Instant::now() < deadline {
                thread::sleep(Duration::from_micros(200));
            }
        }
        if i % 4 == 3 {
            let _ = signal(s.pid(), Signal::SIGHUP);
            thread::sleep(Duration::from_millis(2));
        }
        let _ = signal(s.pid(), sig);
        let status = s
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("iteration {i}: the master did not exit"));
        let left = s.tagged();
        assert!(left.is_empty(), "iteration {i} ({sig}): orphans {left:?}");
        s.wait_log_closed(T);
        let log = s.stderr();
        let outcome = match (status.code(), status.signal()) {
            (Some(0), _) => {
                assert!(
                    log.contains("all workers exited") || !log.contains("spawned"),
                    "iteration {i}:\n{log}"
                );
                "exit 0".to_owned()
            }
            (_, Some(n)) if n == sig as i32 || n == Signal::SIGHUP as i32 => {
                assert!(
                    !log.contains("spawned worker"),
                    "iteration {i}: killed after forking:\n{log}"
                );
                format!("killed by signal {n} before the master started")
            }
            _ => panic!("iteration {i}: unexpected status {status}\n{log}"),
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    println!("{iterations} start-up races: {outcomes:?}");
    outcomes
}

#[test]
fn a_signal_right_after_start_never_leaves_an_orphan() {
    let outcomes = signal_races(50, &[]);
    // Both ends of the race happened at least once.
    assert!(outcomes.len() >= 2, "{outcomes:?}");
}

#[test]
fn a_signal_right_after_start_never_leaves_an_orphan_with_portable_signals() {
    // The self-pipe route unblocks the signals once its handlers are in
    // place and blocks them around every fork: a signal at any point must
    // still end in a clean stop (or kill the master before it started).
    signal_races(20, &[PORTABLE_SIGNALS]);
}

#[test]
fn every_worker_is_a_distinct_child_and_none_is_left_after_stop() {
    let s = ServerTree::start_workers(HELLO, 3, &[]);
    let kids = s.wait_ready(3, T);
    let tagged = s.tagged();
    let mut want: BTreeSet<i32> = kids.clone();
    want.insert(s.pid());
    assert_eq!(tagged, want, "the master and its workers, nothing else");
    s.stop(Duration::from_secs(10));
    assert!(all_gone(&kids));
}

#[test]
fn a_dead_workers_queue_is_lent_to_a_survivor_and_released_when_it_is_back() {
    let s = ServerTree::start_workers(HELLO, 2, &[]);
    let kids = s.wait_ready(2, T);
    let victim = *kids.iter().next().unwrap();
    let survivor = *kids.iter().nth(1).unwrap();
    signal(victim, Signal::SIGKILL).unwrap();
    // The master lends the dead worker's listener to the survivor at once,
    // without waiting for the respawn...
    let log = s.wait_log("has no worker; lent to worker", T);
    assert!(log.contains(&format!("(pid {survivor})\n")), "{log}");
    // ...and takes it back once the replacement is ready: the survivor
    // stops accepting on it.
    let new = s.wait_children(T, "a ready replacement", |c| {
        c.len() == 2 && !c.contains(&victim) && c.is_subset(&s.ready_pids())
    });
    s.wait_log("has its worker back", T);
    s.wait_log("releasing listener", T);
    let by_pid = spread(s.addr(), 40);
    assert!(by_pid.keys().all(|p| new.contains(p)), "{by_pid:?}");
    s.stop(Duration::from_secs(10));
}

/// The switches that make the master take the routes of a platform without
/// Linux's signalfd, `PR_SET_PDEATHSIG` and load-balancing `SO_REUSEPORT`
/// (macOS): signals through signal-hook's self-pipe, workers watching
/// their parent with a thread, one listener shared by every worker.
const PORTABLE_SIGNALS: (&str, &str) = ("TINE_PORTABLE_SIGNALS", "1");
const SHARED_LISTENER: (&str, &str) = ("TINE_LISTENER", "shared");

#[test]
fn the_portable_routes_start_serve_respawn_and_stop() {
    let s = ServerTree::start_env(
        HELLO,
        &["--bind", "127.0.0.1:0", "--workers", "2"],
        &[PORTABLE_SIGNALS, SHARED_LISTENER],
    );
    let kids = s.wait_ready(2, T);
    let log = s.stderr();
    assert!(log.contains("self-pipe (portable route)"), "{log}");
    assert!(log.contains("(one shared listener)"), "{log}");
    let addr = s.addr();
    assert_eq!(listen_sockets(addr.port()), 1, "one socket for all workers");

    // Both workers accept from the one queue: with one of them held in a
    // handler, the other answers a new connection.
    let mut held = Client::connect(addr);
    let busy = held.get(PID_PATH).pid().expect("a pid");
    held.send(b"GET /sleep?ms=1500 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(wait_sleeping(&kids, T), Some(busy), "/sleep never started");
    let other = try_get(addr, PID_PATH).unwrap().pid().expect("a pid");
    assert_ne!(other, busy, "only the sleeping worker accepts");
    assert!(kids.contains(&other), "{other} is not one of {kids:?}");

    // A killed worker is reaped (SIGCHLD through the pipe) and replaced.
    let victim = other;
    signal(victim, Signal::SIGKILL).unwrap();
    let new = s.wait_children(T, "a ready replacement", |c| {
        c.len() == 2 && !c.contains(&victim) && c.is_subset(&s.ready_pids())
    });
    s.wait_log(&format!("(pid {victim}) exited unexpectedly"), T);
    assert!(s.zombies().is_empty(), "unreaped: {:?}", s.zombies());
    let r = held.read_response();
    assert_eq!((r.status, r.text().as_str()), (200, "slept"));
    let by_pid = spread(addr, 10);
    assert!(by_pid.keys().all(|p| new.contains(p)), "{by_pid:?}");

    // SIGTERM through the pipe: graceful stop, exit 0, nothing left.
    s.stop(Duration::from_secs(10));
}

#[test]
fn without_pdeathsig_a_worker_busy_in_a_handler_notices_its_master_is_gone() {
    let mut s = ServerTree::start_env(
        HELLO,
        &["--bind", "127.0.0.1:0", "--workers", "2"],
        &[PORTABLE_SIGNALS],
    );
    let kids = s.wait_ready(2, T);
    let addr = s.addr();
    // A worker inside a handler reads neither its control channel nor its
    // signals: only the parent watch (a thread) can notice the master die.
    let mut held = Client::connect(addr);
    let busy = held.get(PID_PATH).pid().expect("a pid");
    held.send(b"GET /sleep?ms=2500 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(wait_sleeping(&kids, T), Some(busy), "/sleep never started");
    let master = s.pid();
    s.signal(Signal::SIGKILL);
    s.wait_exit(T).expect("the master dies");
    // Logged by the busy worker's watch thread while its handler sleeps.
    s.wait_log(&format!("the master (pid {master}) is gone"), T);
    assert!(
        testkit::procs::is_alive(busy),
        "worker {busy} did not wait for its request"
    );
    let r = held.read_response();
    assert_eq!((r.status, r.text().as_str()), (200, "slept"));
    assert!(
        wait_until(T, || orphans_gone(&s, &kids)),
        "workers survived the master: {:?}",
        s.tagged()
    );
}

/// Whether the workers `kids` of a master that died are gone: neither
/// tagged nor alive. Both are waited for: a worker in the middle of its
/// exit has already given up its memory, environment included (so it no
/// longer counts as tagged), but is not a zombie yet (so it is alive).
fn orphans_gone(s: &ServerTree, kids: &BTreeSet<i32>) -> bool {
    s.tagged().is_empty() && kids.iter().all(|&p| !testkit::procs::is_alive(p))
}

/// An application that registered signal-hook handlers before serving
/// leaves signal-hook a registry of the handlers it installed, copied into
/// every worker: neither the master nor a worker may reset a disposition
/// behind its back, or its later registrations (the master's self-pipe,
/// the worker's stop handler) are never installed and `SIGTERM` kills
/// instead of draining.
fn graceful_stop_after_early_signal_hooks(env: &[(&str, &str)]) {
    let mut s = ServerTree::start_env(
        HELLO,
        &[
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--hook-signals-first",
        ],
        env,
    );
    let kids = s.wait_ready(2, T);
    let mut held = Client::connect(s.addr());
    let busy = held.get(PID_PATH).pid().expect("a pid");
    held.send(b"GET /sleep?ms=700 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(wait_sleeping(&kids, T), Some(busy), "/sleep never started");
    s.signal(Signal::SIGTERM);
    let r = held
        .try_read_response(false)
        .unwrap_or_else(|e| panic!("the in-flight request was cut: {e}\n{}", s.stderr()));
    assert_eq!((r.status, r.text().as_str()), (200, "slept"));
    let status = s.wait_exit(T).expect("the master exits");
    assert!(status.success(), "{status}\n{}", s.stderr());
    let log = s.stderr();
    assert!(!log.contains("killed by SIGTERM"), "{log}");
    assert!(all_gone(&kids));
}

#[test]
fn signal_hooks_registered_before_serving_leave_the_graceful_stop_intact() {
    graceful_stop_after_early_signal_hooks(&[]);
}

#[test]
fn signal_hooks_registered_before_serving_leave_the_self_pipe_intact() {
    graceful_stop_after_early_signal_hooks(&[PORTABLE_SIGNALS]);
}
