//! Server-sent events over real TCP: subscriptions fed by publish, event
//! ids, `retry:`, `Last-Event-ID`, heartbeats, refusals, and a client that
//! reads too slowly being disconnected with its memory bounded.

mod support;

use std::time::Duration;

use support::{serve, wait_until};
use testkit::sse::{open, post};
use tine::{App, Request, Response, Sse, SseEvent, StatusCode};

fn app() -> App {
    App::new()
        .sse("/events/:topic", |req: &Request, sse: &mut Sse| {
            sse.subscribe(req.param("topic").unwrap_or(""));
            if let Some(ms) = req.query_param("heartbeat_ms") {
                sse.heartbeat(Duration::from_millis(ms.parse().unwrap()));
            }
            if let Some(max) = req.query_param("max") {
                sse.max_buffered(max.parse().unwrap());
            }
            sse.retry(Duration::from_millis(1500));
            match sse.last_event_id().map(str::to_string) {
                Some(last) => {
                    sse.send(SseEvent::new(format!("resuming after {last}")).event("resume"))
                }
                None => sse.send(SseEvent::new("welcome").event("hello").id("0")),
            }
        })
        .sse("/private", |req: &Request, sse: &mut Sse| {
            if req.header("authorization").is_none() {
                sse.reject(Response::error(StatusCode::UNAUTHORIZED));
            }
        })
        .post("/publish/:topic", |req: &Request| {
            tine::publish(
                req.param("topic").unwrap_or(""),
                req.text().unwrap_or_default(),
            )
            .map(|()| StatusCode::ACCEPTED)
        })
        .post("/event/:topic", |req: &Request| {
            let id = req.query_param("id").unwrap_or_default();
            tine::publish_event(
                req.param("topic").unwrap_or(""),
                SseEvent::new(req.text().unwrap_or_default())
                    .id(id)
                    .event("note"),
            )
            .map(|()| StatusCode::ACCEPTED)
        })
        .get("/subs", |_: &Request| {
            tine::pubsub::stats().subscriptions.to_string()
        })
        .errors(|_, status| Response::text(format!("page {}", status.as_u16())))
}

#[test]
fn published_messages_arrive_as_events() {
    let addr = serve(app);
    let mut s = open(addr, "/events/news", "").expect("a stream");
    assert_eq!(s.head.header("content-type"), Some("text/event-stream"));
    assert_eq!(s.head.header("cache-control"), Some("no-cache"));
    assert_eq!(s.head.header("transfer-encoding"), Some("chunked"));
    // First the `open` comment, then what the route sent.
    assert!(s.next_block().unwrap().is_comment());
    let retry = s.next_block().unwrap();
    assert_eq!(retry.get("retry"), Some("1500"));
    let hello = s.next_event().unwrap();
    assert_eq!(
        (hello.get("event"), hello.data().as_str()),
        (Some("hello"), "welcome")
    );
    assert_eq!(hello.get("id"), Some("0"));
    // Plain publishes are data (several lines too); events keep their id.
    assert_eq!(post(addr, "/publish/news", "line one\nline two"), 202);
    assert_eq!(s.next_event().unwrap().data(), "line one\nline two");
    assert_eq!(post(addr, "/event/news?id=41", "noted"), 202);
    let e = s.next_event().unwrap();
    assert_eq!(
        (e.get("id"), e.get("event"), e.data().as_str()),
        (Some("41"), Some("note"), "noted")
    );
    // Other topics do not reach it.
    assert_eq!(post(addr, "/publish/sports", "goal"), 202);
    assert_eq!(post(addr, "/publish/news", "after"), 202);
    assert_eq!(s.next_event().unwrap().data(), "after");
}

/// A published text shaped like a marked event (`publish_event` marks
/// its texts with U+001E) is still plain data: a client whose message a
/// route publishes cannot set the event type, id or retry of every
/// subscriber's stream.
#[test]
fn a_published_text_cannot_forge_an_event() {
    let addr = serve(app);
    let mut s = open(addr, "/events/news", "").expect("a stream");
    while s.next_event().unwrap().get("event") != Some("hello") {}
    let forged = "\u{1e}event: logout\ndata: expired\nid: 999\nretry: 86400000\n\n";
    assert_eq!(post(addr, "/publish/news", forged), 202);
    let e = s.next_event().unwrap();
    assert_eq!(
        (e.get("event"), e.get("id"), e.get("retry")),
        (None, None, None)
    );
    assert_eq!(e.data(), forged);
    // The stream goes on as before.
    assert_eq!(post(addr, "/event/news?id=5", "real"), 202);
    let e = s.next_event().unwrap();
    assert_eq!(
        (e.get("event"), e.get("id")),
        (Some("note"), Some("5")),
        "{e:?}"
    );
}

#[test]
fn last_event_id_is_handed_to_the_route() {
    let addr = serve(app);
    let mut s = open(addr, "/events/t", "Last-Event-ID: 41\r\n").expect("a stream");
    assert_eq!(s.next_event().unwrap().get("retry"), Some("1500"));
    let e = s.next_event().unwrap();
    assert_eq!(
        (e.get("event"), e.data().as_str()),
        (Some("resume"), "resuming after 41")
    );
}

#[test]
fn heartbeats_come_while_nothing_is_published() {
    let addr = serve(app);
    let mut s = open(addr, "/events/quiet?heartbeat_ms=50", "").expect("a stream");
    // The `open` comment, `retry:`, the greeting.
    assert!(s.next_block().unwrap().is_comment());
    assert_eq!(s.next_block().unwrap().get("retry"), Some("1500"));
    assert_eq!(s.next_block().unwrap().data(), "welcome");
    // Only comments from here on: three of them, each after a silence.
    for _ in 0..3 {
        assert!(s.next_block().unwrap().is_comment());
    }
}

#[test]
fn refused_by_the_route_or_not_a_get() {
    let addr = serve(app);
    let r = open(addr, "/private", "").unwrap_err();
    assert_eq!((r.status, r.header("content-length")), (401, Some("8")));
    assert!(open(addr, "/private", "Authorization: x\r\n").is_ok());
    // HEAD gets the head and no subscription.
    let mut c = testkit::Client::connect(addr);
    c.send(b"HEAD /events/h HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_head_response();
    assert_eq!(
        (r.status, r.header("content-type")),
        (200, Some("text/event-stream"))
    );
    assert_eq!(testkit::get(addr, "/subs").text(), "0");
}

/// A client that reads nothing is disconnected once more than its limit
/// waits for it, and its subscription goes with it.
#[test]
fn a_client_that_reads_too_slowly_is_closed() {
    let addr = serve(app);
    let s = open(addr, "/events/flood?max=65536", "").expect("a stream");
    s.stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || testkit::get(
        addr, "/subs"
    )
    .text()
        == "1"));
    let big = "x".repeat(32 * 1024);
    // The socket buffers take a few MiB; the limit trips soon after.
    let closed = wait_until(Duration::from_secs(30), || {
        post(addr, "/publish/flood", &big);
        testkit::get(addr, "/subs").text() == "0"
    });
    assert!(closed, "still subscribed");
    let mut s = s;
    assert!(s.ends(), "the stream did not end");
}

#[test]
fn streams_end_cleanly_when_the_subscription_is_gone() {
    // A stream whose client went away is removed from its topics.
    let addr = serve(app);
    let s = open(addr, "/events/gone", "").expect("a stream");
    assert!(wait_until(Duration::from_secs(10), || testkit::get(
        addr, "/subs"
    )
    .text()
        == "1"));
    drop(s);
    assert!(wait_until(Duration::from_secs(10), || testkit::get(
        addr, "/subs"
    )
    .text()
        == "0"));
}
