//! The stuck-worker watchdog end to end: a `hello` worker blocked in a
//! handler (`/block`) past `--worker-timeout-ms` is logged with the request
//! it is stuck in, killed and replaced, while the other worker serves on,
//! and the connections that queued on the stuck worker's listener are
//! answered by its replacement instead of being reset.
// The measured replacement time is printed (see it with `--nocapture`).
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use testkit::procs::{heavy, is_alive, wait_sleeping, ServerTree};
use testkit::{wait_until, Client};

const HELLO: &str = env!("CARGO_BIN_EXE_hello");

/// Bound of the waits for the processes to reach a state (generous: a
/// loaded machine must not fail the test).
const T: Duration = Duration::from_secs(30);

/// Connections opened while the worker is stuck: with two reuseport
/// listeners each lands on the stuck one with probability 1/2, so some do
/// (all 24 on the same side: 2^-23).
const QUEUED: usize = 24;

#[test]
fn a_stuck_worker_is_killed_and_replaced_and_its_queue_is_served() {
    let _g = heavy();
    let s = ServerTree::start_workers(HELLO, 2, &["--worker-timeout-ms", "2000"]);
    let first = s.wait_ready(2, T);
    let addr = s.addr();

    // One client blocks a worker for a minute.
    let blocker = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.send(b"GET /block?ms=60000 HTTP/1.1\r\nHost: t\r\n\r\n");
        // Its worker is killed: this connection ends without an answer.
        c.try_read_response(false).map(|r| r.status)
    });
    let stuck = wait_sleeping(&first, T).expect("a worker entered /block");
    let blocked_at = Instant::now();
    let survivor = *first.iter().find(|&&p| p != stuck).unwrap();

    // Connections opened now: those hashed to the stuck worker's listener
    // wait in its queue; the others are served by the survivor at once.
    let (tx, rx) = mpsc::channel();
    let clients: Vec<_> = (0..QUEUED)
        .map(|_| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.send(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n");
                let answer = c
                    .try_read_response(false)
                    .map(|r| (r.status, r.text().trim().parse::<i32>().unwrap_or(0)));
                let _ = tx.send((answer, Instant::now()));
            })
        })
        .collect();
    drop(tx);

    // The survivor answers while the stuck worker is still alive.
    let mut answers = Vec::new();
    let (first_answer, at) = rx.recv_timeout(T).expect("an answer");
    answers.push((first_answer, at));
    let survivor_served_during_block = matches!(answers[0].0, Ok((200, p)) if p == survivor);

    // The watchdog logs what the worker is stuck on and kills it.
    let log = s.wait_log(", killing it", T);
    let killed_at = Instant::now();
    let line = log.lines().find(|l| l.contains(", killing it")).unwrap();
    assert!(
        line.contains(&format!("(pid {stuck}) stuck "))
            && line.contains("in GET /block?ms=60000, killing it"),
        "{line}"
    );
    assert!(
        wait_until(T, || !is_alive(stuck)),
        "the stuck worker still runs"
    );
    // Replaced: two ready workers again, the survivor and a new one.
    let now = s.wait_ready(2, T);
    let replaced_in = blocked_at.elapsed();
    assert!(now.contains(&survivor) && !now.contains(&stuck), "{now:?}");
    let replacement = *now.iter().find(|&&p| p != survivor).unwrap();
    println!(
        "stuck worker logged {:.2} s and replaced {:.2} s after its handler began \
         (timeout 2 s)",
        (killed_at - blocked_at).as_secs_f64(),
        replaced_in.as_secs_f64()
    );
    // Generous: the exact time depends on the machine's load.
    assert!(replaced_in < Duration::from_secs(25), "{replaced_in:?}");

    // Every queued connection is answered, none reset: by the survivor or,
    // for those in the stuck worker's queue, by its replacement.
    for (answer, at) in rx.iter() {
        answers.push((answer, at));
    }
    for c in clients {
        c.join().unwrap();
    }
    let mut by_pid: BTreeMap<i32, usize> = BTreeMap::new();
    for (answer, _) in &answers {
        match answer {
            Ok((200, pid)) => *by_pid.entry(*pid).or_default() += 1,
            other => panic!("a queued connection failed: {other:?}\n{}", s.stderr()),
        }
    }
    println!("answers by pid: {by_pid:?} (survivor {survivor}, replacement {replacement})");
    assert_eq!(answers.len(), QUEUED);
    assert!(
        by_pid.keys().all(|p| *p == survivor || *p == replacement),
        "{by_pid:?}"
    );
    assert!(
        by_pid.get(&replacement).is_some_and(|&n| n > 0),
        "no queued connection reached the replacement: {by_pid:?}"
    );
    // The survivor served throughout: its answers came before the kill.
    let survivor_early = answers
        .iter()
        .filter(|(a, at)| matches!(a, Ok((200, p)) if *p == survivor) && *at < killed_at)
        .count();
    assert!(
        survivor_served_during_block || survivor_early > 0,
        "the survivor answered nothing while the other worker was stuck"
    );

    // The blocked request itself is lost with its worker.
    assert!(blocker.join().unwrap().is_err());
    // The master counts it as a timeout, not a crash: no backoff logged.
    let log = s.stderr();
    assert!(log.contains("killed by the watchdog"), "{log}");
    assert!(!log.contains("respawning in"), "{log}");
    s.stop(Duration::from_secs(20));
}

/// Short handlers one after another in one loop turn (pipelined on one
/// connection) add up past the timeout; each starting is progress, so the
/// worker is not killed.
#[test]
fn short_handlers_that_add_up_past_the_timeout_are_not_stuck() {
    let s = ServerTree::start_workers(HELLO, 2, &["--worker-timeout-ms", "1000"]);
    let workers = s.wait_ready(2, T);
    let mut c = Client::connect(s.addr());
    // 8 x 300 ms in one turn: 2.4 s, over twice the timeout.
    let mut batch = Vec::new();
    for _ in 0..8 {
        batch.extend_from_slice(b"GET /sleep?ms=300 HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    batch.extend_from_slice(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n");
    c.send(&batch);
    for i in 0..8 {
        assert_eq!(c.read_response().status, 200, "request {i}\n{}", s.stderr());
    }
    let pid: i32 = c.read_response().text().trim().parse().unwrap();
    assert!(workers.contains(&pid));
    assert!(!s.stderr().contains("killing it"), "{}", s.stderr());
    assert_eq!(s.wait_ready(2, T), workers, "no worker was replaced");
    s.stop(Duration::from_secs(20));
}

/// The same with WebSocket messages: a message handler called is
/// progress, however many run in one loop turn.
#[test]
fn websocket_messages_that_add_up_past_the_timeout_are_not_stuck() {
    let s = ServerTree::start_workers(HELLO, 2, &["--worker-timeout-ms", "1000"]);
    let workers = s.wait_ready(2, T);
    // 12 connections over two workers: one of them has at least 6, so
    // 6 x 300 ms in its turns, most of them together.
    use testkit::ws::{client_frame, op, read_frame, send};
    let mut sockets: Vec<_> = (0..12)
        .map(|_| testkit::ws::connect(s.addr(), "/ws/sleep"))
        .collect();
    for ws in &mut sockets {
        send(ws, &client_frame(op::TEXT, b"300"));
    }
    for (i, ws) in sockets.iter_mut().enumerate() {
        let frame = read_frame(ws);
        assert!(
            matches!(&frame, Ok((true, op::TEXT, text)) if text == b"300"),
            "socket {i}: {frame:?}\n{}",
            s.stderr()
        );
    }
    assert!(!s.stderr().contains("killing it"), "{}", s.stderr());
    assert_eq!(s.wait_ready(2, T), workers, "no worker was replaced");
    drop(sockets);
    s.stop(Duration::from_secs(20));
}

/// The same with a streamed body: each chunk made is progress, however
/// many go out in one loop turn.
#[test]
fn a_stream_of_slow_chunks_is_not_stuck() {
    let s = ServerTree::start_workers(HELLO, 2, &["--worker-timeout-ms", "1000"]);
    let workers = s.wait_ready(2, T);
    // 6 chunks of 300 ms, taken as they come: 1.8 s in one turn.
    let r = testkit::get(s.addr(), "/stream?n=6&size=10&delay_ms=300");
    assert_eq!((r.status, r.body.len()), (200, 60), "{}", s.stderr());
    assert!(!s.stderr().contains("killing it"), "{}", s.stderr());
    assert_eq!(s.wait_ready(2, T), workers, "no worker was replaced");
    s.stop(Duration::from_secs(20));
}

#[test]
fn an_unparsable_worker_timeout_is_a_start_up_error_naming_the_variable() {
    for bad in ["abc", "-1", "30s"] {
        let err = ServerTree::try_start_env(
            HELLO,
            &["--bind", "127.0.0.1:0", "--workers", "2"],
            &[("TINE_WORKER_TIMEOUT", bad)],
        )
        .err()
        .unwrap_or_else(|| panic!("TINE_WORKER_TIMEOUT={bad} was accepted"));
        assert!(!err.0.success(), "{bad}: {:?}", err.0);
        assert!(err.1.contains("TINE_WORKER_TIMEOUT"), "{bad}: {}", err.1);
    }
}

#[test]
fn tine_worker_timeout_in_seconds_sets_the_watchdog() {
    let _g = heavy();
    // 0.5 s from the environment wins over hello's (default) 30 s.
    let s = ServerTree::start_env(
        HELLO,
        &["--bind", "127.0.0.1:0", "--workers", "2"],
        &[("TINE_WORKER_TIMEOUT", "0.5")],
    );
    s.wait_ready(2, T);
    assert!(
        s.stderr().contains("workers stuck for 0.5 s are killed"),
        "{}",
        s.stderr()
    );
    s.stop(Duration::from_secs(20));
}
