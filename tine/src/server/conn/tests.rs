//! The connection on its own: a Unix socket pair stands in for the
//! client, so no listener, poller or event loop is involved. The test
//! drives the connection by hand, as the loop would after each event.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::*;
use crate::http::{Request, Response};
use crate::{App, Limits, StatusCode};
use testkit::ws::upgrade_request;

fn app() -> App {
    App::new()
        .get("/", |_: &Request| "ok")
        .post("/echo", |req: &Request| Response::bytes(req.body_bytes()))
        .get("/stream", |_: &Request| Response::stream(["a", "bc"]))
        .limits(
            Limits::default()
                .header_timeout(Duration::from_secs(5))
                .body_timeout(Duration::from_secs(7))
                .idle_timeout(Duration::from_secs(60)),
        )
}

/// A connection over one end of a socket pair, the other end for the
/// test, and the loop-wide state.
fn setup(app: App) -> (Conn<mio::net::UnixStream>, UnixStream, Shared) {
    let (server, client) = UnixStream::pair().unwrap();
    server.set_nonblocking(true).unwrap();
    client.set_nonblocking(true).unwrap();
    let (service, config) = app.into_parts();
    let shared = Shared::new(service, config, Instant::now());
    let conn = Conn::new(
        mio::net::UnixStream::from_std(server),
        "127.0.0.1:9".parse().unwrap(),
        shared.stamp,
    );
    (conn, client, shared)
}

/// Everything the connection has written so far, as text.
fn received(client: &mut UnixStream) -> String {
    String::from_utf8(received_bytes(client)).unwrap()
}

/// Everything the connection has written so far (it writes before
/// `drive` returns, so nothing is in flight).
fn received_bytes(client: &mut UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    out
}

/// Whether the connection shut its sending side (EOF after its output).
fn write_side_closed(client: &mut UnixStream) -> bool {
    matches!(client.read(&mut [0u8; 1]), Ok(0))
}

fn statuses(text: &str) -> Vec<&str> {
    text.match_indices("HTTP/1.1 ")
        .map(|(i, _)| &text[i + 9..i + 12])
        .collect()
}

#[test]
fn pipelined_requests_are_answered_in_order_in_one_write_batch() {
    let (mut conn, mut client, mut shared) = setup(app());
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\nPOST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
        .unwrap();
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    let text = received(&mut client);
    assert_eq!(statuses(&text), ["200", "404", "200"]);
    assert!(text.ends_with("\r\n\r\nabc"), "{text}");
    assert!(conn.idle());
}

#[test]
fn a_turn_answers_a_bounded_number_of_requests_then_yields() {
    let (mut conn, mut client, mut shared) = setup(app());
    let n = TURN_REQUESTS as usize + 10;
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(n).as_slice())
        .unwrap();
    assert_eq!(conn.drive(&mut shared), Next::Yield);
    assert_eq!(
        statuses(&received(&mut client)).len(),
        TURN_REQUESTS as usize
    );
    // Driven again (as the ready queue does), it answers the rest.
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    assert_eq!(statuses(&received(&mut client)).len(), 10);
}

#[test]
fn deadlines_follow_the_request_phase() {
    let (mut conn, mut client, mut shared) = setup(app());
    let opened = shared.now;
    // Fresh connection: the header timeout from the moment it opened.
    assert_eq!(
        shared.instant(conn.deadline(&shared)),
        opened + Duration::from_secs(5)
    );
    // A head started later is timed from its first byte.
    shared.set_now(opened + Duration::from_secs(1));
    client.write_all(b"POST /echo HTTP/1.1\r\n").unwrap();
    conn.readable(false);
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    assert_eq!(
        shared.instant(conn.deadline(&shared)),
        shared.now + Duration::from_secs(5)
    );
    // Once the head is complete, the body has its own whole-body deadline
    // that later bytes do not extend.
    shared.set_now(opened + Duration::from_secs(2));
    client
        .write_all(b"Host: t\r\nContent-Length: 4\r\n\r\na")
        .unwrap();
    conn.readable(false);
    conn.drive(&mut shared);
    let body_deadline = opened + Duration::from_secs(2 + 7);
    assert_eq!(shared.instant(conn.deadline(&shared)), body_deadline);
    shared.set_now(opened + Duration::from_secs(3));
    client.write_all(b"b").unwrap();
    conn.readable(false);
    conn.drive(&mut shared);
    assert_eq!(shared.instant(conn.deadline(&shared)), body_deadline);
    // A request and the first byte of the next in one read: the next
    // head is timed by the header timeout, from now.
    shared.set_now(opened + Duration::from_secs(4));
    client.write_all(b"cdG").unwrap();
    conn.readable(false);
    conn.drive(&mut shared);
    assert_eq!(statuses(&received(&mut client)), ["200"]);
    assert_eq!(
        shared.instant(conn.deadline(&shared)),
        shared.now + Duration::from_secs(5)
    );
}

#[test]
fn a_late_request_gets_408_then_a_lingering_close() {
    let (mut conn, mut client, mut shared) = setup(app());
    client.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
    conn.drive(&mut shared);
    assert_eq!(conn.timed_out(&mut shared), Expired::Drive);
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    let text = received(&mut client);
    assert_eq!(statuses(&text), ["408"]);
    assert!(text.contains("connection: close"), "{text}");
    assert!(write_side_closed(&mut client));
    // Lingering: the deadline is the linger time; then it closes.
    assert_eq!(shared.instant(conn.deadline(&shared)), shared.now + LINGER);
    assert_eq!(conn.timed_out(&mut shared), Expired::Close);
    // An idle keep-alive connection just closes.
    let (mut conn, _client, mut shared) = setup(app());
    assert_eq!(conn.timed_out(&mut shared), Expired::Close);
}

#[test]
fn a_body_passed_over_is_timed_like_a_body_and_ends_without_a_word() {
    let (mut conn, mut client, mut shared) = setup(app());
    let opened = shared.now;
    // Answered before its body: 404 at once, the body passed over.
    client
        .write_all(b"POST /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\na")
        .unwrap();
    conn.drive(&mut shared);
    assert_eq!(statuses(&received(&mut client)), ["404"]);
    // The rest of the body is owed within the body timeout.
    shared.set_now(opened + Duration::from_secs(1));
    client.write_all(b"b").unwrap();
    conn.readable(false);
    conn.drive(&mut shared);
    assert_eq!(
        shared.instant(conn.deadline(&shared)),
        opened + Duration::from_secs(7)
    );
    assert!(!conn.idle());
    // It did not come: no 408 for a request already answered, but a
    // lingering close (a client still sending gets no reset).
    shared.set_now(opened + Duration::from_secs(7));
    assert_eq!(conn.timed_out(&mut shared), Expired::Drive);
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    assert!(write_side_closed(&mut client));
    assert_eq!(shared.instant(conn.deadline(&shared)), shared.now + LINGER);
    // When it did come, the connection is idle again, under the idle
    // timeout, and the next request is answered.
    let (mut conn, mut client, mut shared) = setup(app());
    client
        .write_all(b"POST /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab")
        .unwrap();
    conn.drive(&mut shared);
    client.write_all(b"cd").unwrap();
    conn.readable(false);
    conn.drive(&mut shared);
    assert!(conn.idle());
    assert_eq!(
        shared.instant(conn.deadline(&shared)),
        shared.now + Duration::from_secs(60)
    );
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    conn.readable(false);
    conn.drive(&mut shared);
    assert_eq!(statuses(&received(&mut client)), ["404", "200"]);
    // A whole body dropped at once, and the start of the next head behind
    // it: that head is timed by the header timeout.
    let (mut conn, mut client, mut shared) = setup(app());
    client
        .write_all(b"POST /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nabGET / HT")
        .unwrap();
    conn.drive(&mut shared);
    assert_eq!(statuses(&received(&mut client)), ["404"]);
    assert_eq!(
        shared.instant(conn.deadline(&shared)),
        shared.now + Duration::from_secs(5)
    );
}

#[test]
fn a_chunked_body_passed_over_past_its_limit_leaves_nothing_buffered() {
    let (mut conn, mut client, mut shared) = setup(app());
    client
        .write_all(b"POST /nope HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    conn.drive(&mut shared);
    // The answer waits for the body's end (see the next test).
    assert_eq!(received(&mut client), "");
    // 20 chunks of 16 KiB: the limit is crossed inside a read, with more
    // of the body behind it in the same read.
    let mut chunk = b"4000\r\n".to_vec();
    chunk.extend_from_slice(&[b'x'; 0x4000]);
    chunk.extend_from_slice(b"\r\n");
    let body = chunk.repeat(20);
    let mut sent = 0;
    while sent < body.len() && conn.phase == Phase::Open {
        match client.write(&body[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
        conn.readable(false);
        conn.drive(&mut shared);
    }
    assert_eq!(conn.phase, Phase::Lingering, "closed past the limit");
    assert!(conn.rbuf.is_empty(), "{} bytes kept", conn.rbuf.len());
    assert_eq!(conn.rbuf.capacity(), 0, "a buffer kept while lingering");
    let text = received(&mut client);
    assert_eq!(statuses(&text), ["404"]);
    assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
}

#[test]
fn a_chunked_body_passed_over_holds_its_answer_until_its_end() {
    // Only its end tells whether a chunked body is short enough and well
    // formed: the answer waits for it, to say whether the connection
    // stays open.
    let (mut conn, mut client, mut shared) = setup(app());
    let opened = shared.now;
    client
        .write_all(b"POST /nope HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
        .unwrap();
    conn.drive(&mut shared);
    assert_eq!(received(&mut client), "");
    client.write_all(b"cde\r\n0\r\n\r\n").unwrap();
    conn.readable(false);
    conn.drive(&mut shared);
    let text = received(&mut client);
    assert_eq!(statuses(&text), ["404"]);
    assert!(!text.contains("connection: close"), "{text}");
    assert!(conn.idle());
    // A body that stops coming: the answer goes out at the body timeout,
    // saying that the connection closes (no 408: the request had an
    // answer), and the connection lingers.
    let (mut conn, mut client, mut shared) = setup(app());
    client
        .write_all(b"HEAD /nope HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
        .unwrap();
    conn.drive(&mut shared);
    assert_eq!(received(&mut client), "");
    shared.set_now(opened + Duration::from_secs(6));
    assert_eq!(conn.timed_out(&mut shared), Expired::Drive);
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    let text = received(&mut client);
    assert!(text.starts_with("HTTP/1.1 404 "), "{text}");
    assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
    // Still a `HEAD`'s answer: no body.
    assert!(text.ends_with("\r\n\r\n"), "{text}");
    assert!(write_side_closed(&mut client));
    assert_eq!(shared.instant(conn.deadline(&shared)), shared.now + LINGER);
}

#[test]
fn a_head_refused_before_its_body_gets_no_body_whatever_closes_it() {
    // Too large to pass over, or waiting for `100 Continue`: the answer
    // closes the connection, and is still a `HEAD`'s answer.
    for head in [
        "HEAD /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 300000\r\n\r\nabc",
        "HEAD /nope HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
    ] {
        let (mut conn, mut client, mut shared) = setup(app());
        client.write_all(head.as_bytes()).unwrap();
        conn.drive(&mut shared);
        let text = received(&mut client);
        assert!(text.starts_with("HTTP/1.1 404 "), "{text}");
        assert!(text.contains("connection: close"), "{text}");
        assert!(
            text.ends_with("\r\n\r\n"),
            "a body after a HEAD's head: {text}"
        );
    }
    // Admitted (a `GET` route answers `HEAD`), its body not all sent in
    // time: the `408` is a `HEAD`'s answer too.
    let (mut conn, mut client, mut shared) = setup(app());
    client
        .write_all(b"HEAD / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab")
        .unwrap();
    conn.drive(&mut shared);
    assert_eq!(received(&mut client), "");
    shared.set_now(shared.now + Duration::from_secs(7));
    assert_eq!(conn.timed_out(&mut shared), Expired::Drive);
    conn.drive(&mut shared);
    let text = received(&mut client);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(
        text.ends_with("\r\n\r\n"),
        "a body after a HEAD's head: {text}"
    );
}

#[test]
fn http10_streams_are_delimited_by_close() {
    let (mut conn, mut client, mut shared) = setup(app());
    client
        .write_all(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    conn.drive(&mut shared);
    let text = received(&mut client);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    assert!(!text.contains("transfer-encoding"), "{text}");
    assert!(text.ends_with("\r\n\r\nabc"), "{text}");
    assert!(write_side_closed(&mut client));
}

#[test]
fn file_bodies_are_copied_where_the_transport_cannot_sendfile() {
    use std::io::Seek;
    let mut file = tempfile::tempfile().unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    file.write_all(&data).unwrap();
    file.rewind().unwrap();
    let file = std::rc::Rc::new(file);
    let app = app().get("/file", move |_: &Request| {
        Response::from_file(file.clone(), 10, 90_000)
    });
    let (mut conn, mut client, mut shared) = setup(app);
    client
        .write_all(b"GET /file HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // The socket buffer may fill: read and drive until the body is out.
    let mut out = Vec::new();
    for _ in 0..1000 {
        conn.drive(&mut shared);
        out.extend_from_slice(&received_bytes(&mut client));
        let head_end = out.windows(4).position(|w| w == b"\r\n\r\n");
        if head_end.is_some_and(|h| out.len() >= h + 4 + 90_000) {
            break;
        }
    }
    let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(String::from_utf8_lossy(&out[..head_end]).contains("content-length: 90000"));
    assert!(out[head_end..] == data[10..90_010], "the body differs");
    assert_eq!(
        StatusCode::OK.as_str(),
        &String::from_utf8_lossy(&out[9..12])
    );
}

#[test]
fn an_upgrade_switches_to_websocket_and_frames_count_against_the_budget() {
    use testkit::ws::{client_frame, op};
    let app = app().ws(
        "/echo",
        |ws: &mut crate::WebSocket, event: crate::WsEvent| {
            if let crate::WsEvent::Text(t) = event {
                ws.send_text(t);
            }
        },
    );
    let (mut conn, mut client, mut shared) = setup(app);
    let mut input = upgrade_request("/echo");
    // More frames than one turn may handle, sent with the handshake.
    let frames = TURN_REQUESTS as usize + 6;
    input.extend(client_frame(op::TEXT, b"hi").repeat(frames));
    client.write_all(&input).unwrap();
    // The handshake's leftover frames are handled when the session opens;
    // frames read later count against the turn's budget.
    let first = conn.drive(&mut shared);
    let out = received_bytes(&mut client);
    assert!(out.starts_with(b"HTTP/1.1 101 "));
    assert!(conn.any_session().is_some());
    let echoed = |out: &[u8]| out.windows(4).filter(|w| *w == b"\x81\x02hi").count();
    let mut total = echoed(&out);
    assert_eq!(first, Next::Keep, "all frames came with the handshake");
    assert_eq!(total, frames);
    // Frames arriving later: one turn handles at most its budget.
    client
        .write_all(&client_frame(op::TEXT, b"hi").repeat(frames))
        .unwrap();
    conn.readable(false);
    assert_eq!(conn.drive(&mut shared), Next::Yield);
    total += echoed(&received_bytes(&mut client));
    assert_eq!(total, frames + TURN_REQUESTS as usize);
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    total += echoed(&received_bytes(&mut client));
    assert_eq!(total, 2 * frames);
    // A WebSocket peer's deadline is the ping interval or a day.
    assert!(shared.instant(conn.deadline(&shared)) > shared.now);
}

#[test]
fn the_loops_read_buffer_is_reused_and_never_pinned_by_a_stalled_request() {
    let (mut conn, mut client, mut shared) = setup(app());
    // Two requests one after the other: the second reads into the buffer
    // the first was read into (no allocation: that is what
    // tests/alloc.rs counts); between them the connection holds none.
    for _ in 0..2 {
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        conn.readable(false);
        conn.drive(&mut shared);
        assert!(received(&mut client).ends_with("ok"));
        assert_eq!(
            conn.rbuf.capacity(),
            0,
            "an idle connection holds no buffer"
        );
        assert!(
            shared.spare_in.capacity() > 0,
            "the buffer is back with the loop"
        );
    }
    // A head whose body stalls: the connection keeps what it has in a
    // buffer of its own, and the head's slices are copied out too, so
    // the loop's buffer is whole again for the next connection.
    client
        .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nab")
        .unwrap();
    conn.readable(false);
    conn.drive(&mut shared);
    assert!(!conn.rbuf_lent);
    assert_eq!(&conn.rbuf[..], b"ab");
    // The head was taken from the front of the loop's buffer: getting that
    // space back without allocating works only if nothing refers to it.
    let mut spare = std::mem::take(&mut shared.spare_in);
    let cap = spare.capacity();
    assert!(cap > 0);
    assert!(
        spare.try_reclaim(cap + 1),
        "nothing else refers to the loop's buffer"
    );
    client.write_all(b"cdef").unwrap();
    conn.readable(false);
    conn.drive(&mut shared);
    assert!(received(&mut client).ends_with("abcdef"));
}

/// Sends requests for `/big` (a body far larger than the socket pair's
/// buffers) until the connection is blocked writing: the client reads
/// nothing.
fn stall_on_big_response(
    conn: &mut Conn<mio::net::UnixStream>,
    client: &mut UnixStream,
    shared: &mut Shared,
) {
    client
        .write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    conn.readable(false);
    assert_eq!(conn.drive(shared), Next::Keep);
    assert!(
        conn.writing(),
        "the body must not fit in the socket buffers"
    );
}

fn big_app() -> App {
    app().get("/big", |_: &Request| Response::bytes(vec![b'x'; 16 << 20]))
}

#[test]
fn a_stalled_response_is_not_kept_alive_by_client_input() {
    let (mut conn, mut client, mut shared) = setup(big_app());
    let start = shared.now;
    stall_on_big_response(&mut conn, &mut client, &mut shared);
    let idle = Duration::from_secs(60);
    assert_eq!(shared.instant(conn.deadline(&shared)), start + idle);
    // The client reads nothing but sends a byte every 2 s: each wakes the
    // connection, none may move its deadline.
    for s in (2..60).step_by(2) {
        shared.set_now(start + Duration::from_secs(s));
        client.write_all(b"G").unwrap();
        conn.readable(false);
        assert_eq!(conn.drive(&mut shared), Next::Keep);
        assert_eq!(
            shared.instant(conn.deadline(&shared)),
            start + idle,
            "after {s} s"
        );
    }
    shared.set_now(start + idle);
    assert_eq!(conn.timed_out(&mut shared), Expired::Close);
}

#[test]
fn write_progress_renews_the_idle_timeout_of_a_response() {
    let (mut conn, mut client, mut shared) = setup(big_app());
    let start = shared.now;
    stall_on_big_response(&mut conn, &mut client, &mut shared);
    // The client takes some of it 50 s later: the pause is measured from
    // there.
    shared.set_now(start + Duration::from_secs(50));
    assert!(!received_bytes(&mut client).is_empty());
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    assert!(conn.writing());
    assert_eq!(
        shared.instant(conn.deadline(&shared)),
        shared.now + Duration::from_secs(60)
    );
}

#[test]
fn a_response_queued_behind_a_full_socket_gets_a_whole_idle_timeout() {
    // The socket's buffers are full (of earlier output the client has not
    // read) when a request comes 30 s after the connection opened: its
    // response cannot write a byte, and is timed from when it was queued.
    let (mut conn, mut client, mut shared) = setup(app());
    let start = shared.now;
    let chunk = [b'x'; 4096];
    while conn.stream.write(&chunk).is_ok() {}
    shared.set_now(start + Duration::from_secs(30));
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    conn.readable(false);
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    assert!(conn.writing());
    assert_eq!(
        shared.instant(conn.deadline(&shared)),
        shared.now + Duration::from_secs(60)
    );
}

#[test]
fn an_overflowed_websocket_is_closed_at_a_fixed_time_whatever_wakes_it() {
    use testkit::ws::{client_frame, op};
    // Each message from the client is answered with 2 MiB: far past
    // `max_outbuf` for a client that reads nothing.
    let app = app()
        .ws(
            "/flood",
            |ws: &mut crate::WebSocket, event: crate::WsEvent| {
                if let crate::WsEvent::Text(_) = event {
                    for _ in 0..32 {
                        ws.send_binary(vec![0u8; 64 * 1024]);
                    }
                }
            },
        )
        .ws_config(crate::WsConfig::default().max_outbuf(1 << 20));
    let (mut conn, mut client, mut shared) = setup(app);
    let start = shared.now;
    client.write_all(&upgrade_request("/flood")).unwrap();
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    shared.set_now(start + Duration::from_secs(1));
    client.write_all(&client_frame(op::TEXT, b"go")).unwrap();
    conn.readable(false);
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    assert!(conn.any_session().unwrap().overflowed());
    let pong_timeout = shared.config.ws.pong_timeout;
    let give_up = shared.now + pong_timeout;
    assert_eq!(shared.instant(conn.deadline(&shared)), give_up);
    // Input from the client and messages published to it wake it; none
    // moves the deadline.
    for s in 2..pong_timeout.as_secs() {
        shared.set_now(start + Duration::from_secs(s));
        if s % 2 == 0 {
            client.write_all(&client_frame(op::TEXT, b"x")).unwrap();
            conn.readable(false);
        } else {
            let msg = tungstenite::Message::Text("news".into());
            conn.session_mut().unwrap().deliver(msg);
        }
        assert_eq!(conn.drive(&mut shared), Next::Keep);
        assert_eq!(
            shared.instant(conn.deadline(&shared)),
            give_up,
            "after {s} s"
        );
    }
    shared.set_now(give_up);
    assert_eq!(conn.timed_out(&mut shared), Expired::Close);
}

#[test]
fn a_websocket_is_pinged_an_interval_after_its_peers_input_whatever_we_send() {
    use testkit::ws::{client_frame, op};
    let app = app().ws("/news", |_: &mut crate::WebSocket, _: crate::WsEvent| {});
    let (mut conn, mut client, mut shared) = setup(app);
    let start = shared.now;
    client.write_all(&upgrade_request("/news")).unwrap();
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    let interval = shared.config.ws.ping_interval.expect("pings by default");
    let ping_due = start + interval;
    assert_eq!(shared.instant(conn.deadline(&shared)), ping_due);
    // Messages published to a peer that sends nothing (gone, or not
    // reading) do not put the ping off: it would never come.
    for s in 1..interval.as_secs() {
        shared.set_now(start + Duration::from_secs(s));
        let msg = tungstenite::Message::Text("news".into());
        conn.session_mut().unwrap().deliver(msg);
        assert_eq!(conn.drive(&mut shared), Next::Keep);
        assert_eq!(
            shared.instant(conn.deadline(&shared)),
            ping_due,
            "after {s} s"
        );
    }
    let _ = received_bytes(&mut client);
    // Due: a ping, then the pong timeout.
    shared.set_now(ping_due);
    assert_eq!(conn.timed_out(&mut shared), Expired::Drive);
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    assert!(received_bytes(&mut client).starts_with(b"\x89"), "a ping");
    let pong_timeout = shared.config.ws.pong_timeout;
    assert_eq!(
        shared.instant(conn.deadline(&shared)),
        ping_due + pong_timeout
    );
    // The pong: the next ping is an interval after it.
    shared.set_now(ping_due + Duration::from_secs(1));
    client.write_all(&client_frame(op::PONG, b"tine")).unwrap();
    conn.readable(false);
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    assert_eq!(
        shared.instant(conn.deadline(&shared)),
        shared.now + interval
    );
    // A message from the peer counts as much.
    shared.set_now(shared.now + Duration::from_secs(5));
    client.write_all(&client_frame(op::TEXT, b"hi")).unwrap();
    conn.readable(false);
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    assert_eq!(
        shared.instant(conn.deadline(&shared)),
        shared.now + interval
    );
    // No pong to the next ping: closed.
    shared.set_now(shared.now + interval);
    assert_eq!(conn.timed_out(&mut shared), Expired::Drive);
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    shared.set_now(shared.now + pong_timeout);
    assert_eq!(conn.timed_out(&mut shared), Expired::Close);
}

#[test]
fn a_websocket_we_closed_gets_a_fixed_time_however_much_the_peer_sends() {
    use testkit::ws::{client_frame, op};
    // The handler closes on the first message (an abusive client); the
    // client goes on sending and never answers the close.
    let app = app().ws(
        "/strict",
        |ws: &mut crate::WebSocket, event: crate::WsEvent| {
            if let crate::WsEvent::Text(_) = event {
                ws.close(1008, "no");
            }
        },
    );
    let (mut conn, mut client, mut shared) = setup(app);
    let start = shared.now;
    client.write_all(&upgrade_request("/strict")).unwrap();
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    client.write_all(&client_frame(op::TEXT, b"go")).unwrap();
    conn.readable(false);
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    let give_up = start + shared.config.ws.pong_timeout;
    assert_eq!(shared.instant(conn.deadline(&shared)), give_up);
    for s in 1..shared.config.ws.pong_timeout.as_secs() {
        shared.set_now(start + Duration::from_secs(s));
        client.write_all(&client_frame(op::TEXT, b"more")).unwrap();
        conn.readable(false);
        assert_eq!(conn.drive(&mut shared), Next::Keep);
        assert_eq!(
            shared.instant(conn.deadline(&shared)),
            give_up,
            "after {s} s"
        );
    }
    shared.set_now(give_up);
    assert_eq!(conn.timed_out(&mut shared), Expired::Close);
}

#[test]
fn a_proxied_client_over_its_limit_is_closed_at_once_holding_no_count() {
    let app = app().limits(Limits::default().max_connections_per_ip(1));
    let (mut conn, mut client, mut shared) = setup(app);
    conn.expect_proxy_header();
    let ip: std::net::IpAddr = "203.0.113.7".parse().unwrap();
    // The client already has its one connection.
    assert!(shared.per_ip.admit(ip));
    client
        .write_all(b"PROXY TCP4 203.0.113.7 10.0.0.1 5000 80\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(conn.drive(&mut shared), Next::Close);
    assert!(received_bytes(&mut client).is_empty(), "unanswered");
    assert!(conn.counted_ip().is_unspecified(), "counted under nobody");
    // Still that one: released, it frees the place.
    assert!(!shared.per_ip.admit(ip));
    shared.per_ip.release(ip);
    assert!(shared.per_ip.admit(ip));
}

#[test]
fn a_stalled_event_stream_is_not_kept_alive_by_input_or_deliveries() {
    // A first event larger than the socket pair's buffers, for a client
    // that reads nothing.
    let app = app().sse("/events", |_: &Request, sse: &mut crate::Sse| {
        sse.send(crate::SseEvent::new("x".repeat(600 * 1024)));
    });
    let (mut conn, mut client, mut shared) = setup(app);
    let start = shared.now;
    client
        .write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    assert!(!conn.any_sse().unwrap().unsent().is_empty());
    let heartbeat = conn.any_sse().unwrap().heartbeat;
    let give_up = start + heartbeat;
    assert_eq!(shared.instant(conn.deadline(&shared)), give_up);
    for s in 1..heartbeat.as_secs() {
        shared.set_now(start + Duration::from_secs(s));
        if s % 2 == 0 {
            client.write_all(b"x").unwrap();
            conn.readable(false);
        } else {
            let event = crate::pubsub::Payload::Text("news".into());
            conn.sse_mut().unwrap().deliver(&event);
        }
        assert_eq!(conn.drive(&mut shared), Next::Keep);
        assert_eq!(
            shared.instant(conn.deadline(&shared)),
            give_up,
            "after {s} s"
        );
    }
    shared.set_now(give_up);
    assert_eq!(conn.timed_out(&mut shared), Expired::Close);
}

#[test]
fn an_event_stream_that_is_read_gets_its_heartbeat_an_interval_after_the_last_write() {
    let app = app().sse("/events", |_: &Request, _: &mut crate::Sse| {});
    let (mut conn, mut client, mut shared) = setup(app);
    let start = shared.now;
    client
        .write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    let heartbeat = conn.any_sse().unwrap().heartbeat;
    assert_eq!(shared.instant(conn.deadline(&shared)), start + heartbeat);
    // An event sent 5 s later moves the heartbeat.
    shared.set_now(start + Duration::from_secs(5));
    conn.sse_mut()
        .unwrap()
        .deliver(&crate::pubsub::Payload::Text("news".into()));
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    assert!(received(&mut client).ends_with("data: news\n\n\r\n"));
    assert_eq!(
        shared.instant(conn.deadline(&shared)),
        shared.now + heartbeat
    );
    // When it falls due, the comment goes out and the next is an interval
    // later.
    shared.set_now(shared.now + heartbeat);
    assert_eq!(conn.timed_out(&mut shared), Expired::Drive);
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    assert!(received(&mut client).ends_with(":\n\n\r\n"));
    assert_eq!(
        shared.instant(conn.deadline(&shared)),
        shared.now + heartbeat
    );
}

#[test]
fn a_finished_websocket_gets_a_fixed_time_for_its_last_output() {
    use testkit::ws::{client_frame, op};
    // Answered with more than the socket pair's buffers take, then the
    // client closes without reading: the close handshake is over, our
    // output still waits.
    let app = app().ws(
        "/big",
        |ws: &mut crate::WebSocket, event: crate::WsEvent| {
            if let crate::WsEvent::Text(_) = event {
                ws.send_binary(vec![0u8; 1 << 20]);
            }
        },
    );
    let (mut conn, mut client, mut shared) = setup(app);
    let start = shared.now;
    client.write_all(&upgrade_request("/big")).unwrap();
    let mut input = client_frame(op::TEXT, b"go");
    input.extend(client_frame(op::CLOSE, &1000u16.to_be_bytes()));
    client.write_all(&input).unwrap();
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    let ws = conn.any_session().unwrap();
    assert!(ws.finished() && !ws.unsent().is_empty());
    let give_up = start + shared.config.ws.pong_timeout;
    assert_eq!(shared.instant(conn.deadline(&shared)), give_up);
    shared.set_now(start + Duration::from_secs(5));
    client.write_all(b"junk").unwrap();
    conn.readable(false);
    conn.drive(&mut shared);
    assert_eq!(shared.instant(conn.deadline(&shared)), give_up);
    shared.set_now(give_up);
    assert_eq!(conn.timed_out(&mut shared), Expired::Close);
}

/// Timeouts of `Duration::MAX` (no limit) give far deadlines, not an
/// `Instant` overflow: that panic, outside any handler, ended the worker
/// and every connection on it.
#[test]
fn timeouts_of_duration_max_mean_no_limit() {
    use testkit::ws::{client_frame, op};
    let forever = Duration::MAX;
    let app = || {
        App::new()
            .get("/", |_: &Request| "ok")
            .ws("/ws", |ws: &mut crate::WebSocket, event: crate::WsEvent| {
                if let crate::WsEvent::Text(t) = event {
                    ws.send_text(t);
                }
            })
            .sse("/events", move |_: &Request, sse: &mut crate::Sse| {
                sse.heartbeat(forever);
            })
            .limits(
                Limits::default()
                    .header_timeout(forever)
                    .idle_timeout(forever)
                    .body_timeout(forever),
            )
            .ws_config(
                crate::WsConfig::default()
                    .ping_interval(forever)
                    .pong_timeout(forever),
            )
    };
    let far = |shared: &Shared| shared.now + Duration::from_secs(10 * 365 * 24 * 3600);
    // A fresh connection (header timeout), a keep-alive one (idle).
    let (mut conn, mut client, mut shared) = setup(app());
    assert!(shared.instant(conn.deadline(&shared)) > far(&shared));
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    conn.readable(false);
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    assert!(received(&mut client).starts_with("HTTP/1.1 200 "));
    assert!(shared.instant(conn.deadline(&shared)) > far(&shared));
    // Half a head.
    client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    conn.readable(false);
    conn.drive(&mut shared);
    assert!(shared.instant(conn.deadline(&shared)) > far(&shared));
    // A WebSocket, waiting for its ping and then for its pong.
    let (mut conn, mut client, mut shared) = setup(app());
    client.write_all(&upgrade_request("/ws")).unwrap();
    client.write_all(&client_frame(op::TEXT, b"hi")).unwrap();
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    assert!(conn.any_session().is_some());
    assert!(shared.instant(conn.deadline(&shared)) > far(&shared));
    shared.set_now(shared.instant(conn.deadline(&shared)));
    assert_eq!(conn.timed_out(&mut shared), Expired::Drive);
    conn.drive(&mut shared);
    assert!(shared.instant(conn.deadline(&shared)) > far(&shared));
    // An event stream, waiting for its heartbeat.
    let (mut conn, mut client, mut shared) = setup(app());
    client
        .write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(conn.drive(&mut shared), Next::Keep);
    assert!(conn.any_sse().is_some());
    assert!(shared.instant(conn.deadline(&shared)) > far(&shared));
}
