//! A master that cannot fork (the real `hello` binary run as `nobody`
//! under a process limit, so the kernel refuses the fork with `EAGAIN`)
//! keeps serving with the workers it has: no connection waits on a
//! listener nobody accepts from, and every failed fork is logged with its
//! reason and retried, a rolling restart's included.

use std::collections::BTreeSet;
use std::time::Duration;

use testkit::load::{try_get, PID_PATH};
use testkit::procs::{heavy, listen_sockets, signal, ProcessSlot, ServerTree, Signal};

const HELLO: &str = env!("CARGO_BIN_EXE_hello");
/// Bound of every wait for the processes to reach a state.
const T: Duration = Duration::from_secs(10);
/// Bound of a graceful stop without client connections.
const STOP: Duration = Duration::from_secs(10);
/// Sequential connections that must all be answered: with one queue out
/// of two (or three) stranded, the kernel sends some of them there.
const CONNECTIONS: usize = 40;

/// Opens `CONNECTIONS` fresh connections one after another; each must be
/// answered (within the client's read timeout) by one of `workers`.
fn every_connection_answered(s: &ServerTree, workers: &BTreeSet<i32>, what: &str) {
    for i in 0..CONNECTIONS {
        let r = try_get(s.addr(), PID_PATH).unwrap_or_else(|e| {
            panic!(
                "{what}: connection {i} of {CONNECTIONS} not answered ({e}): \
                 a listener nobody accepts from\n{}",
                s.stderr()
            )
        });
        assert_eq!(r.status, 200, "{what}: {}", r.text());
        let pid = r.pid().expect("a pid");
        assert!(workers.contains(&pid), "{what}: pid {pid} vs {workers:?}");
    }
}

#[test]
fn a_slot_whose_fork_keeps_failing_lends_its_listener_to_a_survivor() {
    // The limit counts every process of `nobody`: one such test at a time.
    let _serial = heavy();
    // Two processes allowed: the master and one worker. Worker 1 cannot be
    // forked, and its listener (bound and listening at start-up, before
    // any fork) would hold half of the connections forever.
    let Some(s) = ServerTree::start_with_process_limit(
        HELLO,
        2,
        &["--bind", "127.0.0.1:0", "--workers", "2"],
    ) else {
        return;
    };
    // EAGAIN's own text does not say which resource ran out.
    s.wait_log(
        "fork failed for worker 1: Resource temporarily unavailable (os error 11): the limit \
         on processes is reached (the user's: `ulimit -u`, RLIMIT_NPROC;",
        T,
    );
    let kids = s.wait_ready(1, T);
    every_connection_answered(&s, &kids, "worker 1 never forked");
    s.wait_log("listener 1 has no worker; lent to worker 0", T);
    // Retried with backoff, not given up.
    s.wait_log_count("fork failed for worker 1: ", 3, T);

    // Crash the only worker: both slots race for the one process allowed;
    // whichever wins must serve the other's queue too.
    let victim = *kids.iter().next().unwrap();
    signal(victim, Signal::SIGKILL).unwrap();
    s.wait_log("killed by SIGKILL", T);
    let kids = s.wait_children(T, "a respawned ready worker", |c| {
        c.len() == 1 && !c.contains(&victim) && c.is_subset(&s.ready_pids())
    });
    every_connection_answered(&s, &kids, "after the crash");
    s.wait_log_count("has no worker; lent to worker", 2, T);
    s.stop(STOP);
}

#[test]
fn a_scale_up_whose_fork_fails_leaves_no_listening_socket() {
    let _serial = heavy();
    // Three processes: the master and its two workers, nothing more.
    let Some(s) = ServerTree::start_with_process_limit(
        HELLO,
        3,
        &["--bind", "127.0.0.1:0", "--workers", "2"],
    ) else {
        return;
    };
    let port = s.addr().port();
    let kids = s.wait_ready(2, T);
    s.signal(Signal::SIGTTIN);
    s.wait_log("fork failed for worker 2: ", T);
    assert_eq!(
        listen_sockets(port),
        2,
        "the new slot's socket is bound but must not listen without a worker"
    );
    every_connection_answered(&s, &kids, "after a failed scale-up");

    // A crash frees one process: the respawn of either slot may take it,
    // and every connection is still answered by the two workers running.
    let victim = *kids.iter().next().unwrap();
    signal(victim, Signal::SIGKILL).unwrap();
    s.wait_log("killed by SIGKILL", T);
    let kids = s.wait_children(T, "two ready workers", |c| {
        c.len() == 2 && !c.contains(&victim) && c.is_subset(&s.ready_pids())
    });
    every_connection_answered(&s, &kids, "after a crash with a pending scale-up");
    s.stop(STOP);
}

#[test]
fn a_rolling_restart_that_cannot_fork_waits_and_completes_once_it_can() {
    let _serial = heavy();
    // The master and its two workers, and one process more once `spare`
    // is gone: until then no replacement can be forked.
    let spare = ProcessSlot::take();
    let Some(s) = ServerTree::start_with_process_limit(
        HELLO,
        3,
        &["--bind", "127.0.0.1:0", "--workers", "2"],
    ) else {
        return;
    };
    let old = s.wait_ready(2, T);
    s.signal(Signal::SIGHUP);
    // Retried with backoff, not given up (it used to end the restart at
    // once, reported complete, with both old workers left for good).
    let retry = |slot: usize| {
        format!(
            "rolling restart: no replacement for worker {slot} (its fork failed); \
             keeping it, forking again in"
        )
    };
    s.wait_log_count(&retry(0), 3, T);
    assert!(
        !s.stderr().contains("rolling restart complete"),
        "{}",
        s.stderr()
    );
    every_connection_answered(&s, &old, "while the restart cannot fork");
    assert_eq!(s.children(), old);

    // Room for one more process: the next retry forks worker 0's
    // replacement. Worker 1's is forked while the old worker 0 still
    // drains, so it fails too, and is retried until that one has exited.
    drop(spare);
    s.wait_log("rolling restart complete", T);
    let log = s.stderr();
    assert!(log.contains(&retry(1)), "{log}");
    let new = s.wait_children(T, "two new ready workers", |c| {
        c.len() == 2 && c.is_disjoint(&old) && c.is_subset(&s.ready_pids())
    });
    every_connection_answered(&s, &new, "after the rolling restart");
    s.stop(STOP);
}

/// Under a low open-file limit, a fork failed with "cannot count this
/// process's threads", and a single process stopped with a bare "Too many
/// open files": neither said what was being opened. (The limits are where
/// those steps are the ones to run out, with stdin, stdout and stderr
/// open.)
#[test]
fn out_of_descriptors_at_start_up_says_what_was_being_opened() {
    let s = ServerTree::start_with_open_file_limit(
        HELLO,
        15,
        &["--bind", "127.0.0.1:0", "--workers", "4"],
    );
    s.wait_log(
        "cannot count this process's threads: /proc/self/task: Too many open files (os error 24)",
        T,
    );
    s.stop(STOP);

    let mut s = ServerTree::start_with_open_file_limit(HELLO, 8, &["--bind", "127.0.0.1:0"]);
    let status = s.wait_exit(T).expect("it stops");
    assert!(!status.success());
    let log = s.stderr();
    assert!(
        log.contains("tine: cannot create the event loop (epoll/kqueue): Too many open files"),
        "{log}"
    );
}
