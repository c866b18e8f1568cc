//! Several addresses on one server (`--listen`, `App::listen`): every
//! worker serves each of them, through the master's restarts and scaling,
//! and each address keeps its own way of sharing connections.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use testkit::load::{spread, PID_PATH};
use testkit::procs::{listen_sockets, ServerTree, Signal};

const HELLO: &str = env!("CARGO_BIN_EXE_hello");
/// Bound of every wait for the processes to reach a state.
const T: Duration = Duration::from_secs(10);
/// Bound of a graceful stop without client connections.
const STOP: Duration = Duration::from_secs(10);

/// Both announced addresses, once the server printed them.
fn two_addrs(s: &ServerTree) -> (SocketAddr, SocketAddr) {
    assert!(
        testkit::wait_until(T, || s.addrs().len() == 2),
        "two `listening on` lines: {:?}",
        s.addrs()
    );
    let addrs = s.addrs();
    assert_ne!(addrs[0], addrs[1]);
    (addrs[0], addrs[1])
}

/// The worker pids answering on `addr`, over enough fresh connections to
/// reach each of `want` (bounded).
fn pids_on(addr: SocketAddr, want: &BTreeSet<i32>) -> BTreeSet<i32> {
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        seen.extend(spread(addr, 50).into_keys());
        if want.is_subset(&seen) {
            break;
        }
    }
    seen
}

#[test]
fn every_worker_serves_every_address_through_reload_and_scale_up() {
    let s = ServerTree::start_workers(HELLO, 3, &["--listen", "127.0.0.1:0"]);
    let kids = s.wait_ready(3, T);
    let (a, b) = two_addrs(&s);
    for addr in [a, b] {
        assert_eq!(
            listen_sockets(addr.port()),
            3,
            "a reuseport group on {addr}"
        );
        assert_eq!(pids_on(addr, &kids), kids, "every worker serves {addr}");
    }

    // A rolling restart: the new workers serve both addresses.
    s.signal(Signal::SIGHUP);
    let fresh = s.wait_children(T, "three new workers", |now| {
        now.len() == 3 && now.is_disjoint(&kids)
    });
    assert!(
        testkit::wait_until(T, || s.ready_pids().is_superset(&fresh)),
        "the replacements became ready"
    );
    for addr in [a, b] {
        assert_eq!(pids_on(addr, &fresh), fresh, "after SIGHUP, on {addr}");
    }

    // One worker more: the master binds a socket for each address, and the
    // new worker accepts on both.
    s.signal(Signal::SIGTTIN);
    let four = s.wait_ready(4, T);
    for addr in [a, b] {
        assert!(
            testkit::wait_until(T, || listen_sockets(addr.port()) == 4),
            "a fourth listener on {addr}"
        );
        assert_eq!(pids_on(addr, &four), four, "after SIGTTIN, on {addr}");
    }
    s.stop(STOP);
}

#[test]
fn an_address_shared_by_the_environment_is_one_socket_for_all_workers() {
    let s = ServerTree::start_env(
        HELLO,
        &[
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--listen",
            "127.0.0.1:0",
        ],
        &[("TINE_LISTENER", "shared")],
    );
    let kids = s.wait_ready(2, T);
    let (a, b) = two_addrs(&s);
    for addr in [a, b] {
        assert_eq!(
            listen_sockets(addr.port()),
            1,
            "one shared socket on {addr}"
        );
        let served = pids_on(addr, &BTreeSet::new());
        assert!(served.is_subset(&kids), "{served:?} not among {kids:?}");
    }
    s.stop(STOP);
}

#[test]
fn a_single_process_serves_every_address() {
    let s = ServerTree::start(HELLO, &["--bind", "127.0.0.1:0", "--listen", "127.0.0.1:0"]);
    let (a, b) = two_addrs(&s);
    for addr in [a, b] {
        assert_eq!(testkit::get(addr, PID_PATH).pid(), Some(s.pid()));
    }
    s.stop(STOP);
}

#[test]
fn a_busy_extra_address_is_a_one_line_start_up_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = holder.local_addr().unwrap().to_string();
    let err = ServerTree::try_start(
        HELLO,
        &["--bind", "127.0.0.1:0", "--workers", "2", "--listen", &busy],
    )
    .expect_err("a taken --listen address stops the start");
    assert_eq!(err.0.code(), Some(2), "{}", err.1);
    assert!(
        err.1
            .contains(&format!("tine: cannot bind {busy}: address already in use")),
        "{}",
        err.1
    );
}

#[test]
fn an_address_given_twice_is_said_to_be_given_twice() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    for workers in ["1", "2"] {
        let err = ServerTree::try_start(
            HELLO,
            &["--bind", &addr, "--workers", workers, "--listen", &addr],
        )
        .expect_err("an address given twice stops the start");
        assert_eq!(err.0.code(), Some(2), "{}", err.1);
        assert!(
            err.1.contains(&format!("tine: {addr} is given twice")),
            "{}",
            err.1
        );
    }
}
