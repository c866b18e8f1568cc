//! Publish/subscribe through Redis, end to end: real `redis-server`, real
//! `hello` processes (`--redis URL`), WebSocket clients. Two instances
//! share topics; Redis clients that are not tine publish too; tine
//! reconnects and resubscribes after the server kills its connections or
//! restarts; a wrong password keeps messages out without harming the
//! server. Without `redis-server` installed these tests say so loudly and
//! pass (except under CI).

use std::net::SocketAddr;
use std::time::Duration;

use testkit::redis::RedisServer;
use testkit::ws::{chat_join, next_text, Ws};
use testkit::{counters, wait_until, Client, ServerProcess};
use tungstenite::Message;

const HELLO: &str = env!("CARGO_BIN_EXE_hello");

/// Bound of every wait on Redis (reconnects back off up to 5 s).
const PATIENCE: Duration = Duration::from_secs(20);

fn start_hello(url: &str, workers: usize) -> ServerProcess {
    let workers = workers.to_string();
    ServerProcess::start(
        HELLO,
        &[
            "--bind",
            "127.0.0.1:0",
            "--workers",
            &workers,
            "--redis",
            url,
        ],
    )
}

/// Clients subscribed to a pattern (one per tine process whose subscriber
/// is connected).
fn patterns(redis: &RedisServer) -> usize {
    redis
        .cli(&["CLIENT", "LIST", "TYPE", "pubsub"])
        .lines()
        .filter(|l| l.contains("psub=1"))
        .count()
}

/// Connected plain (non-pub/sub) clients other than `redis-cli` itself:
/// tine's publishers.
fn publishers(redis: &RedisServer) -> usize {
    redis
        .cli(&["CLIENT", "LIST", "TYPE", "normal"])
        .lines()
        .filter(|l| l.contains("addr=") && !l.contains("cmd=client"))
        .count()
}

/// Waits until `n` tine processes are subscribed and publishing.
fn wait_connected(redis: &RedisServer, n: usize) {
    assert!(
        wait_until(PATIENCE, || patterns(redis) == n && publishers(redis) == n),
        "patterns {}, publishers {} (want {n})",
        patterns(redis),
        publishers(redis)
    );
}

/// Chat clients on `room` until they span `workers` worker pids.
fn clients_on_every_worker(addr: SocketAddr, room: &str, workers: usize) -> Vec<Ws> {
    let mut clients = Vec::new();
    let mut pids = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let (ws, pid) = chat_join(addr, room);
        clients.push(ws);
        pids.insert(pid);
        if pids.len() == workers && clients.len() >= 2 {
            return clients;
        }
    }
    panic!("connections reached only workers {pids:?}");
}

/// Sends `msgs` from `from` (to its room) and checks every client gets
/// exactly them, in order.
fn round_trip(clients: &mut [Ws], from: usize, msgs: &[String]) {
    for m in msgs {
        clients[from]
            .send(Message::Text(m.as_str().into()))
            .unwrap();
    }
    for (n, c) in clients.iter_mut().enumerate() {
        for (i, m) in msgs.iter().enumerate() {
            let got = next_text(c);
            assert!(&got == m, "client {n}, message {i}: {:.40}", got);
        }
    }
}

/// Nothing more arrives at `clients` (no duplicate, nothing foreign).
fn assert_quiet(clients: &mut [Ws]) {
    for c in clients.iter_mut() {
        c.get_mut()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        assert!(c.read().is_err(), "an unexpected message arrived");
        c.get_mut()
            .set_read_timeout(Some(testkit::TIMEOUT))
            .unwrap();
    }
}

fn batch(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag} ✓ {i}")).collect()
}

#[test]
fn two_instances_share_topics_through_redis() {
    let Some(redis) = RedisServer::start(&[]) else {
        return;
    };
    let a = start_hello(&redis.url(), 2);
    let b = start_hello(&redis.url(), 2);
    let mut clients: Vec<Ws> = (0..4)
        .map(|_| chat_join(a.addr, "shared").0)
        .chain((0..4).map(|_| chat_join(b.addr, "shared").0))
        .collect();
    wait_connected(&redis, 4);
    for i in 0..20 {
        clients[0]
            .send(Message::Text(format!("from a {i}").into()))
            .unwrap();
    }
    clients[7].send(Message::Text("from b".into())).unwrap();
    for (n, c) in clients.iter_mut().enumerate() {
        let mut got: Vec<String> = (0..21).map(|_| next_text(c)).collect();
        // Publisher order holds per publisher.
        let from_b = got
            .iter()
            .position(|m| m == "from b")
            .unwrap_or_else(|| panic!("client {n}: {got:?}"));
        got.remove(from_b);
        let expected: Vec<String> = (0..20).map(|i| format!("from a {i}")).collect();
        assert_eq!(got, expected, "client {n}");
    }
    // Exactly once.
    assert_quiet(&mut clients);
}

#[test]
fn redis_clients_restarts_and_killed_connections() {
    let Some(mut redis) = RedisServer::start(&[]) else {
        return;
    };
    let server = start_hello(&redis.url(), 2);
    let mut clients = clients_on_every_worker(server.addr, "r", 2);
    wait_connected(&redis, 2);

    // Order, and a large message (its frame is 512 KiB).
    let mut msgs = batch("first", 300);
    msgs.insert(150, "L".repeat(512 * 1024));
    round_trip(&mut clients, 0, &msgs);

    // Another Redis client publishing plain text on a tine channel; one
    // on another prefix reaches nobody.
    redis.cli(&["PUBLISH", "other:r", "not for tine"]);
    redis.cli(&["PUBLISH", "tine:r", "plain hello"]);
    for c in clients.iter_mut() {
        assert_eq!(next_text(c), "plain hello");
    }
    assert_quiet(&mut clients);

    // The server kills the subscribers: they come back and resubscribe.
    assert_eq!(redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]).trim(), "2");
    wait_connected(&redis, 2);
    round_trip(&mut clients, 1, &batch("after the subscribers' kill", 50));

    // The server kills the publishers (redis-cli spares itself).
    assert_eq!(redis.cli(&["CLIENT", "KILL", "TYPE", "normal"]).trim(), "2");
    wait_connected(&redis, 2);
    round_trip(&mut clients, 0, &batch("after the publishers' kill", 50));

    // The server goes away: publishing drops, counted; the worker serves
    // on. It comes back: everything reconnects by itself.
    redis.kill();
    let mut c = Client::connect(server.addr);
    let dropped = || counters(server.addr, "/pubsub/stats")["dropped"];
    assert!(
        wait_until(PATIENCE, || {
            c.send(b"POST /publish/r HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nlost");
            assert_eq!(c.read_response().status, 202);
            dropped() > 0
        }),
        "no drop counted while Redis is down"
    );
    assert_eq!(c.get("/plaintext").status, 200);
    redis.restart();
    wait_connected(&redis, 2);
    round_trip(&mut clients, 1, &batch("after the restart", 100));
    assert_quiet(&mut clients);
}

#[test]
fn password_authentication() {
    let Some(redis) = RedisServer::start(&["--requirepass", "s3cr:et"]) else {
        return;
    };
    let good = format!("redis://:s3cr%3Aet@127.0.0.1:{}/0", redis.port());
    let wrong = format!("redis://:nope@127.0.0.1:{}", redis.port());
    let ok = start_hello(&good, 1);
    let denied = start_hello(&wrong, 1);
    let mut clients = vec![chat_join(ok.addr, "pw").0, chat_join(ok.addr, "pw").0];
    let mut outsider = vec![chat_join(denied.addr, "pw").0];
    wait_connected(&redis, 1);
    round_trip(&mut clients, 0, &batch("authenticated", 20));
    // Without the right password nothing gets through either way; the
    // refused publisher counts its lost messages and the server serves on.
    outsider[0]
        .send(Message::Text("from outside".into()))
        .unwrap();
    let dropped = || counters(denied.addr, "/pubsub/stats")["dropped"];
    assert!(
        wait_until(PATIENCE, || {
            outsider[0].send(Message::Text("again".into())).unwrap();
            dropped() > 0
        }),
        "no drop counted"
    );
    assert_eq!(testkit::get(denied.addr, "/plaintext").status, 200);
    assert_quiet(&mut clients);
    assert_quiet(&mut outsider);
    assert_eq!(patterns(&redis), 1);
}
