//! Publish/subscribe through Redis: two separate server instances (each
//! with two workers) on two ports share a chat room.

use std::time::Duration;

use testkit::redis::RedisServer;
use testkit::ws::{chat_join, next_text, Ws};
use testkit::{wait_until, ServerProcess, TIMEOUT};
use tungstenite::Message;

const HELLO: &str = env!("CARGO_BIN_EXE_hello");

#[test]
fn two_instances_share_topics_through_redis() {
    let Some(redis) = RedisServer::start(&[]) else {
        return;
    };
    let url = redis.url();
    let args = |url: &str| {
        vec![
            "--bind".to_string(),
            "127.0.0.1:0".into(),
            "--workers".into(),
            "2".into(),
            "--redis".into(),
            url.to_string(),
        ]
    };
    let a_args = args(&url);
    let b_args = args(&url);
    let a = ServerProcess::start(
        HELLO,
        &a_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let b = ServerProcess::start(
        HELLO,
        &b_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let mut clients: Vec<Ws> = (0..4)
        .map(|_| chat_join(a.addr, "shared").0)
        .chain((0..4).map(|_| chat_join(b.addr, "shared").0))
        .collect();
    // A room subscription is local to its worker, but each worker's
    // `PSUBSCRIBE` to Redis may still be on its way: wait until Redis lists
    // all four workers' subscriber connections (Redis runs commands in
    // order, so every `PUBLISH` after this reaches them) and their four
    // publisher connections.
    let connections = || {
        let list = redis.cli(&["CLIENT", "LIST"]);
        let clients: Vec<&str> = list
            .lines()
            .filter(|l| !l.contains(" cmd=client"))
            .collect();
        let subscribers = clients.iter().filter(|l| l.contains(" psub=1 ")).count();
        (subscribers, clients.len() - subscribers)
    };
    assert!(
        wait_until(TIMEOUT, || connections() == (4, 4)),
        "Redis connections (subscribers, others): {:?}",
        connections()
    );
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
    for c in clients.iter_mut() {
        c.get_mut()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        assert!(c.read().is_err(), "a duplicate arrived");
    }
}
