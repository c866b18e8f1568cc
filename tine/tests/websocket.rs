//! WebSocket over real TCP, checked with independent clients: the
//! `tungstenite` client crate, and hand-made frames (testkit::ws) for what a
//! well-behaved client would never send.

mod support;

use std::net::TcpStream;
use std::time::Duration;

use support::{echo, serve, Client};
use testkit::ws::{self, client_frame, frame, op, read_close_code, read_frame};
use tine::{App, Limits, WebSocket, WsConfig, WsEvent};
use tungstenite::Message;

fn app() -> App {
    App::new()
        .ws("/echo", echo)
        .ws("/params/:room", |ws: &mut WebSocket, event: WsEvent| {
            if event == WsEvent::Open {
                let room = ws.param("room").unwrap_or("").to_string();
                ws.send_text(format!("joined {room}"));
            }
        })
        .limits(Limits::default().max_body(2 * 1024 * 1024))
        .ws_config(WsConfig::default().max_message(1024 * 1024 + 16))
}

fn client(addr: std::net::SocketAddr, path: &str) -> tungstenite::WebSocket<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(testkit::TIMEOUT)).unwrap();
    let (socket, response) =
        tungstenite::client(format!("ws://{addr}{path}"), stream).expect("handshake");
    assert_eq!(response.status(), 101);
    socket
}

#[test]
fn echo_text_and_binary_at_boundary_sizes() {
    let addr = serve(app);
    let mut c = client(addr, "/echo");
    for len in [0usize, 125, 126, 65535, 65536, 1024 * 1024] {
        let text = "a".repeat(len);
        c.send(Message::Text(text.clone().into())).unwrap();
        assert_eq!(c.read().unwrap(), Message::Text(text.into()), "text {len}");
        let bin: Vec<u8> = (0..len).map(|i| i as u8).collect();
        c.send(Message::Binary(bin.clone().into())).unwrap();
        assert_eq!(
            c.read().unwrap(),
            Message::Binary(bin.into()),
            "binary {len}"
        );
    }
    c.close(None).unwrap();
}

#[test]
fn handshake_accept_key_and_route_params() {
    let addr = serve(app);
    let mut s = ws::connect(addr, "/params/lobby");
    let (_, opcode, payload) = read_frame(&mut s).unwrap();
    assert_eq!(
        (opcode, payload.as_slice()),
        (op::TEXT, &b"joined lobby"[..])
    );
}

#[test]
fn bad_handshakes_get_400_or_426() {
    let addr = serve(app);
    let req = |extra: &str| {
        let mut c = Client::connect(addr);
        c.send(format!("GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}\r\n").as_bytes());
        c.read_response()
    };
    let r = req("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
    assert_eq!(r.status, 426);
    assert_eq!(r.header("sec-websocket-version"), Some("13"));
    let r = req("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 7\r\n");
    assert_eq!(r.status, 426);
    // Every 426 names the protocol to upgrade to (RFC 9110 §15.5.22).
    assert_eq!(r.header("upgrade"), Some("websocket"));
    let r = req("Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n");
    assert_eq!(r.status, 400);
    // The key given twice (RFC 6455 §11.3.1: once at most).
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let r = req(&format!("{key}{key}Sec-WebSocket-Version: 13\r\n"));
    assert_eq!(r.status, 400);
    // An HTTP/1.0 request's `Upgrade` is ignored (RFC 9110 §7.8): a plain
    // request, which a WebSocket route answers `426`, not a bad handshake.
    let mut c = Client::connect(addr);
    c.send(b"GET /echo HTTP/1.0\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    let r = c.read_response();
    // Its `Upgrade` is listed in `Connection` (RFC 9110 §7.8) beside the
    // close an HTTP/1.0 exchange ends with.
    assert_eq!(
        (r.status, r.header("upgrade"), r.header("connection")),
        (426, Some("websocket"), Some("upgrade, close"))
    );
    // An upgrade to a path without a WebSocket route is plain HTTP.
    let mut c = Client::connect(addr);
    c.send(b"GET /nowhere HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    assert_eq!(c.read_response().status, 404);
    // A handshake whose `Upgrade` a proxy dropped: a plain request to a
    // WebSocket route gets `426` naming the protocol, not a `404`; the
    // connection stays open.
    c.send(b"GET /params/a HTTP/1.1\r\nHost: t\r\nConnection: keep-alive\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    let r = c.read_response();
    assert_eq!((r.status, r.header("upgrade")), (426, Some("websocket")));
    assert_eq!(r.header("connection"), Some("upgrade"));
    assert_eq!(c.get("/nowhere").status, 404);
    // Other methods on the path get what a path routed for `GET` gets.
    c.send(b"POST /params/a HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
    let r = c.read_response();
    assert_eq!(
        (r.status, r.header("allow")),
        (405, Some("GET, HEAD, OPTIONS"))
    );
    c.send(b"OPTIONS /params/a HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response();
    assert_eq!(
        (r.status, r.header("allow")),
        (204, Some("GET, HEAD, OPTIONS"))
    );
    // A static directory at `/` does not hide it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "home").unwrap();
    let public = dir.path().to_path_buf();
    let addr = serve(move || app().static_dir("/", public.clone()));
    let mut c = Client::connect(addr);
    assert_eq!(c.get("/params/a").status, 426);
    assert_eq!(c.get("/index.html").text(), "home");
    // Nor does a fallback (a single-page app's), which answers only what
    // no route takes, as it leaves a path routed for other methods `405`.
    let addr = serve(|| app().fallback(|_: &tine::Request| "the app's page"));
    let mut c = Client::connect(addr);
    assert_eq!(c.get("/params/a").status, 426);
    assert_eq!(c.get("/elsewhere").text(), "the app's page");
    // By the router's rule for fallbacks: a WebSocket route less deep than
    // a fallback (`/*` against a group's `/api/*`) leaves it its paths.
    let addr = serve(|| {
        App::new().ws("/*", echo).nest(
            "/api",
            tine::Group::new().fallback(|_: &tine::Request| "the api's 404"),
        )
    });
    let mut c = Client::connect(addr);
    assert_eq!(c.get("/api/nothing").text(), "the api's 404");
    assert_eq!(c.get("/elsewhere").status, 426);
}

#[test]
fn fragmented_message_with_interleaved_ping() {
    let addr = serve(app);
    let mut s = ws::connect(addr, "/echo");
    let key = Some([1, 2, 3, 4]);
    ws::send(&mut s, &frame(false, 0, op::TEXT, b"Hel", key));
    ws::send(&mut s, &frame(true, 0, op::PING, b"ping-data", key));
    ws::send(&mut s, &frame(false, 0, op::CONT, b"lo, ", key));
    ws::send(&mut s, &frame(true, 0, op::CONT, b"World", key));
    assert_eq!(
        read_frame(&mut s).unwrap(),
        (true, op::PONG, b"ping-data".to_vec())
    );
    assert_eq!(
        read_frame(&mut s).unwrap(),
        (true, op::TEXT, b"Hello, World".to_vec())
    );
}

#[test]
fn close_handshake_is_echoed() {
    let addr = serve(app);
    let mut s = ws::connect(addr, "/echo");
    ws::send(
        &mut s,
        &client_frame(op::CLOSE, &[0x03, 0xe8, b'b', b'y', b'e']),
    );
    assert_eq!(read_close_code(&mut s), 1000);
    let mut rest = Vec::new();
    assert_eq!(
        std::io::Read::read_to_end(&mut s, &mut rest).unwrap(),
        0,
        "TCP closed after the handshake"
    );
}

fn expect_close(frame_bytes: &[u8], code: u16) {
    let addr = serve(app);
    let mut s = ws::connect(addr, "/echo");
    ws::send(&mut s, frame_bytes);
    assert_eq!(read_close_code(&mut s), code);
}

#[test]
fn unmasked_frame_is_1002() {
    expect_close(&frame(true, 0, op::TEXT, b"hi", None), 1002);
}

#[test]
fn reserved_bits_are_1002() {
    expect_close(&frame(true, 4, op::TEXT, b"hi", Some([9, 9, 9, 9])), 1002);
}

#[test]
fn unknown_opcode_is_1002() {
    expect_close(&frame(true, 0, 3, b"hi", Some([9, 9, 9, 9])), 1002);
}

#[test]
fn invalid_utf8_is_1007() {
    expect_close(&client_frame(op::TEXT, &[0xff, 0xfe, 0x41]), 1007);
}

#[test]
fn oversized_message_is_1009_without_sending_the_payload() {
    let addr = serve(app);
    let mut s = ws::connect(addr, "/echo");
    // Only the header of a 64 MiB frame: the server must refuse on the
    // declared length alone.
    let mut head = vec![0x82, 0x80 | 127];
    head.extend_from_slice(&(64u64 << 20).to_be_bytes());
    head.extend_from_slice(&[1, 2, 3, 4]);
    ws::send(&mut s, &head);
    assert_eq!(read_close_code(&mut s), 1009);
}

#[test]
fn server_answers_ping_with_same_payload() {
    let addr = serve(app);
    let mut c = client(addr, "/echo");
    c.send(Message::Ping(b"are you there"[..].into())).unwrap();
    match c.read().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"are you there"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn server_pings_idle_clients_and_drops_silent_ones() {
    let addr = serve(|| {
        app().ws_config(
            WsConfig::default()
                .ping_interval(Duration::from_millis(300))
                .pong_timeout(Duration::from_millis(300)),
        )
    });
    let mut s = ws::connect(addr, "/echo");
    let (_, opcode, _) = read_frame(&mut s).unwrap();
    assert_eq!(opcode, op::PING);
    // Never answer: the server gives up and closes the TCP connection.
    let mut buf = [0u8; 64];
    let start = std::time::Instant::now();
    loop {
        match std::io::Read::read(&mut s, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => assert!(start.elapsed() < Duration::from_secs(5)),
        }
    }
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn five_hundred_concurrent_connections_echo() {
    let addr = serve(app);
    let mut clients: Vec<_> = (0..500).map(|_| client(addr, "/echo")).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(Message::Text(format!("m{i}").into())).unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.read().unwrap(), Message::Text(format!("m{i}").into()));
    }
}

#[test]
fn a_reader_that_stalls_is_closed_not_buffered_forever() {
    let addr = serve(|| {
        App::new()
            .ws("/flood", |ws: &mut WebSocket, event: WsEvent| {
                if let WsEvent::Text(_) = event {
                    for _ in 0..400 {
                        ws.send_binary(vec![0u8; 64 * 1024]);
                    }
                }
            })
            .ws_config(
                WsConfig::default()
                    .max_outbuf(1024 * 1024)
                    .pong_timeout(Duration::from_millis(500)),
            )
    });
    let mut s = ws::connect(addr, "/flood");
    ws::send(&mut s, &client_frame(op::TEXT, b"go"));
    // 25 MiB were offered; with a 1 MiB cap the server queues about 1 MiB,
    // then a 1008 close. Reading everything, we find the close and far
    // fewer bytes than offered.
    let mut total = 0usize;
    loop {
        let (_, opcode, payload) = read_frame(&mut s).unwrap();
        if opcode == op::CLOSE {
            assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1008);
            break;
        }
        total += payload.len();
    }
    assert!(total < 4 * 1024 * 1024, "{total}");
}

#[test]
fn close_frame_survives_unread_input() {
    // A client still sending a too-big frame must get the 1009 close frame,
    // not a reset that destroys it (the server lingers like HTTP does).
    let addr = serve(app);
    let mut s = ws::connect(addr, "/echo");
    let big = client_frame(op::BINARY, &vec![7u8; 4 << 20]);
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut writer, &big);
    });
    assert_eq!(read_close_code(&mut s), 1009);
    let mut rest = [0u8; 16];
    assert!(
        matches!(std::io::Read::read(&mut s, &mut rest), Ok(0)),
        "expected a clean FIN"
    );
    drop(s);
    sender.join().unwrap();
}

/// `send_binary_now` from a handler that produces more than the socket
/// buffers hold, to a client that starts reading late: each call waits
/// for the socket (the bounded wait of `send_now`), and every message
/// arrives whole and in order, then what was queued after them.
#[test]
fn send_now_waits_for_a_full_socket_and_loses_nothing() {
    const COUNT: usize = 96;
    const SIZE: usize = 64 * 1024;
    let addr = serve(|| {
        App::new().ws("/burst", |ws: &mut WebSocket, event: WsEvent| {
            if let WsEvent::Text(_) = event {
                for i in 0..COUNT {
                    let chunk = vec![(i % 251) as u8; SIZE];
                    ws.send_binary_now(chunk).expect("sent within the wait");
                }
                ws.send_text("done");
            }
        })
    });
    let mut c = client(addr, "/burst");
    c.send(Message::Text("go".into())).unwrap();
    // 6 MiB: far more than loopback's socket buffers take before the
    // client reads, so the handler waits in send_binary_now meanwhile.
    std::thread::sleep(std::time::Duration::from_millis(300));
    for i in 0..COUNT {
        match c.read().unwrap() {
            Message::Binary(b) => {
                assert_eq!(b.len(), SIZE, "message {i}");
                assert!(b.iter().all(|&x| x == (i % 251) as u8), "message {i}");
            }
            other => panic!("message {i}: {other:?}"),
        }
    }
    assert_eq!(c.read().unwrap(), Message::Text("done".into()));
}

/// A message and the client's end of stream (no close frame) that arrive
/// together, while the one worker is busy so one readiness event reports
/// both: the message is echoed and the connection is closed at once. A
/// WebSocket skips the read that would only say `EAGAIN` after a short
/// read, but not when the event already said EOF: nothing would say it
/// again, and the connection would stay open with no timeout to end it.
#[test]
fn a_message_and_eof_arriving_together_close_the_connection() {
    let addr = serve(|| {
        app().get("/busy", |_: &tine::Request| {
            std::thread::sleep(Duration::from_millis(300));
            "done"
        })
    });
    let mut s = ws::connect(addr, "/echo");
    ws::send(&mut s, &client_frame(op::TEXT, b"first"));
    assert_eq!(
        read_frame(&mut s).unwrap(),
        (true, op::TEXT, b"first".to_vec())
    );
    let mut busy = Client::connect(addr);
    busy.send(b"GET /busy HTTP/1.1\r\nHost: t\r\n\r\n");
    std::thread::sleep(Duration::from_millis(100));
    ws::send(&mut s, &client_frame(op::TEXT, b"last"));
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(
        read_frame(&mut s).unwrap(),
        (true, op::TEXT, b"last".to_vec())
    );
    let mut rest = Vec::new();
    assert_eq!(
        std::io::Read::read_to_end(&mut s, &mut rest).unwrap(),
        0,
        "the server closes the connection after the client's EOF"
    );
    assert_eq!(busy.read_response().text(), "done");
}

#[test]
fn a_close_code_no_frame_may_carry_is_refused_at_the_handler() {
    let addr = serve(|| {
        App::new().ws("/close", |ws: &mut WebSocket, event: WsEvent| {
            if let WsEvent::Text(code) = event {
                ws.close(code.parse().unwrap(), "bye");
            }
        })
    });
    // An application's code goes out as it is.
    let mut s = ws::connect(addr, "/close");
    ws::send(&mut s, &client_frame(op::TEXT, b"4001"));
    assert_eq!(read_close_code(&mut s), 4001);
    // 1006 ("closed without a frame") on the wire would be a protocol
    // error for the peer: the handler's call panics, and the connection
    // closes as after any handler panic.
    for forbidden in ["1006", "1005", "0", "2000"] {
        let mut s = ws::connect(addr, "/close");
        ws::send(&mut s, &client_frame(op::TEXT, forbidden.as_bytes()));
        assert_eq!(read_close_code(&mut s), 1011, "{forbidden}");
    }
}

/// A message has `message_timeout` from its first bytes to arrive whole:
/// a frame whose rest trickles in is closed with 1008 then, however often
/// bytes come; messages that each arrive in time are served however long
/// the connection sends them, split across reads or fragmented.
#[test]
fn a_message_trickled_past_its_deadline_is_closed_with_1008() {
    let addr = serve(|| {
        App::new()
            .ws("/echo", echo)
            .ws_config(WsConfig::default().message_timeout(Duration::from_millis(400)))
    });
    // Steady traffic for over three deadlines: each message split in two
    // writes 100 ms apart (the reads end inside a frame every time).
    let mut s = ws::connect(addr, "/echo");
    let started = std::time::Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_millis(1300) {
        let payload = format!("message {i}");
        let whole = client_frame(op::TEXT, payload.as_bytes());
        ws::send(&mut s, &whole[..4]);
        std::thread::sleep(Duration::from_millis(100));
        ws::send(&mut s, &whole[4..]);
        let (_, opcode, echoed) = read_frame(&mut s).unwrap();
        assert_eq!((opcode, echoed), (op::TEXT, payload.into_bytes()));
        // A fragmented message, each fragment in time.
        ws::send(
            &mut s,
            &frame(false, 0, op::TEXT, b"frag", Some([1, 2, 3, 4])),
        );
        std::thread::sleep(Duration::from_millis(100));
        ws::send(
            &mut s,
            &frame(true, 0, op::CONT, b"ment", Some([1, 2, 3, 4])),
        );
        let (_, opcode, echoed) = read_frame(&mut s).unwrap();
        assert_eq!((opcode, echoed.as_slice()), (op::TEXT, &b"fragment"[..]));
        i += 1;
    }
    // Most of a 1 KiB frame, then a byte every 100 ms: closed at the
    // deadline, though bytes keep coming.
    let mut s = ws::connect(addr, "/echo");
    let whole = client_frame(op::BINARY, &[7u8; 1024]);
    ws::send(&mut s, &whole[..512]);
    let slow = std::thread::spawn({
        let mut s = s.try_clone().unwrap();
        move || {
            for b in &whole[512..530] {
                std::thread::sleep(Duration::from_millis(100));
                if std::io::Write::write_all(&mut s, &[*b]).is_err() {
                    break;
                }
            }
        }
    });
    let begun = std::time::Instant::now();
    assert_eq!(read_close_code(&mut s), 1008);
    assert!(
        begun.elapsed() < Duration::from_millis(1500),
        "{:?}",
        begun.elapsed()
    );
    slow.join().unwrap();
}

/// Opens `path` offering `protocols`; the handshake's answer names the
/// subprotocol selected, if any.
fn client_offering(
    addr: std::net::SocketAddr,
    path: &str,
    protocols: &str,
) -> (tungstenite::WebSocket<TcpStream>, Option<String>) {
    use tungstenite::client::IntoClientRequest;
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(testkit::TIMEOUT)).unwrap();
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocols.parse().unwrap());
    let (socket, response) = tungstenite::client(request, stream).expect("handshake");
    let selected = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_string());
    (socket, selected)
}

#[test]
fn a_groups_ws_config_replaces_the_apps_for_its_routes() {
    let addr = serve(|| {
        let transfers = tine::Group::new()
            .ws_config(
                WsConfig::default()
                    .max_message(64 * 1024)
                    .protocols(["transfer.v1"])
                    .ping_interval(Duration::from_millis(200)),
            )
            .ws("/upload", echo)
            // A group inside takes its parent's settings.
            .nest("/more", tine::Group::new().ws("/inner", echo));
        App::new()
            .ws("/chat", echo)
            .ws_config(WsConfig::default().max_message(1024).protocols(["chat.v1"]))
            .nest("/files", transfers)
    });
    let big = vec![7u8; 10 * 1024];

    // The app's routes keep the app's settings.
    let (mut chat, selected) = client_offering(addr, "/chat", "transfer.v1, chat.v1");
    assert_eq!(selected.as_deref(), Some("chat.v1"));
    chat.send(Message::Binary(big.clone().into())).unwrap();
    loop {
        match chat.read() {
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 1009);
                break;
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            other => panic!("expected a 1009 close, got {other:?}"),
        }
    }

    // The group's routes, and its nested group's, take the larger message
    // and select the group's subprotocol.
    for path in ["/files/upload", "/files/more/inner"] {
        let (mut c, selected) = client_offering(addr, path, "chat.v1, transfer.v1");
        assert_eq!(selected.as_deref(), Some("transfer.v1"), "{path}");
        c.send(Message::Binary(big.clone().into())).unwrap();
        loop {
            match c.read().unwrap() {
                Message::Binary(b) => {
                    assert_eq!(&b[..], &big[..], "{path}");
                    break;
                }
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("{path}: {other:?}"),
            }
        }
    }

    // The group's timers: its route is pinged after 200 ms of silence,
    // the app's (30 s by default) is not.
    let mut upload = ws::connect(addr, "/files/upload");
    let (_, opcode, _) = read_frame(&mut upload).unwrap();
    assert_eq!(opcode, op::PING);
    let mut chat = ws::connect(addr, "/chat");
    chat.set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    let quiet = read_frame(&mut chat).unwrap_err();
    assert!(
        matches!(
            quiet.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{quiet}"
    );
}

/// An upgrade request that expects `100 Continue` gets it before its
/// `101` (RFC 9110 §7.8), and the socket works.
#[test]
fn an_upgrade_that_expects_100_continue_gets_it_before_the_101() {
    use std::io::{Read, Write};
    let addr = serve(app);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(testkit::TIMEOUT)).unwrap();
    let request = String::from_utf8(ws::upgrade_request("/echo")).unwrap();
    let request = request.replacen("\r\n\r\n", "\r\nExpect: 100-continue\r\n\r\n", 1);
    s.write_all(request.as_bytes()).unwrap();
    let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut got = [0u8; 25];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, interim, "{}", String::from_utf8_lossy(&got));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101 "),
        "{}",
        String::from_utf8_lossy(&head)
    );
    ws::send(&mut s, &client_frame(op::TEXT, b"hi"));
    let (_, opcode, payload) = read_frame(&mut s).unwrap();
    assert_eq!((opcode, payload.as_slice()), (op::TEXT, &b"hi"[..]));
}
