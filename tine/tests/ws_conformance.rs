//! RFC 6455 conformance of tine's framing over real TCP, with hand-made
//! frames (testkit::ws): the cases of the Autobahn test suite that matter
//! most for a framing layer (fragmentation, control frames between
//! fragments, control frame limits, close codes, UTF-8 across fragments,
//! length forms, frames split across reads), written as tests because
//! Autobahn's fuzzing client needs Python 2.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;

use support::{echo, serve};
use testkit::ws::{self, frame, op, read_close_code, read_frame};
use tine::{App, Limits, WsConfig};

fn app() -> App {
    App::new()
        .ws("/echo", echo)
        .limits(Limits::default().max_body(4 * 1024 * 1024))
        .ws_config(WsConfig::default().max_message(1024 * 1024))
}

const KEY: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

fn connect() -> TcpStream {
    ws::connect(serve(app), "/echo")
}

/// Sends `bytes` and expects the server's close frame with `code`, then
/// the end of the TCP connection.
fn expect_close(bytes: &[u8], code: u16) {
    let mut s = connect();
    ws::send(&mut s, bytes);
    assert_eq!(read_close_code(&mut s), code);
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
}

/// Autobahn 5.x: a text message in fragments with a ping between them.
/// 6.x: a character split between fragments, and between reads.
#[test]
fn fragmented_text_with_a_split_character_and_a_ping_between() {
    let mut s = connect();
    let text = "Hello-µ@ßöäüàá-UTF-8!!".as_bytes();
    // Cut inside "µ" (C2 B5).
    let cut = text.iter().position(|&b| b == 0xc2).unwrap() + 1;
    let mut wire = frame(false, 0, op::TEXT, &text[..cut], KEY);
    wire.extend(frame(true, 0, op::PING, b"between", KEY));
    wire.extend(frame(true, 0, op::CONT, &text[cut..], KEY));
    // Byte by byte: every header, mask and payload split across reads.
    for b in &wire {
        ws::send(&mut s, &[*b]);
    }
    assert_eq!(
        read_frame(&mut s).unwrap(),
        (true, op::PONG, b"between".to_vec())
    );
    assert_eq!(read_frame(&mut s).unwrap(), (true, op::TEXT, text.to_vec()));
}

/// Autobahn 2.4/2.5: a 125-byte ping is answered with the same payload; a
/// 126-byte one is a protocol error.
#[test]
fn ping_payloads_up_to_125_bytes() {
    let mut s = connect();
    ws::send(&mut s, &frame(true, 0, op::PING, &[0xfe; 125], KEY));
    assert_eq!(
        read_frame(&mut s).unwrap(),
        (true, op::PONG, vec![0xfe; 125])
    );
    expect_close(&frame(true, 0, op::PING, &[0xfe; 126], KEY), 1002);
}

/// Autobahn 5.1/5.2: fragmented control frames, and continuations without
/// a message.
#[test]
fn fragmentation_errors_are_1002() {
    expect_close(&frame(false, 0, op::PING, b"frag", KEY), 1002);
    expect_close(&frame(true, 0, op::CONT, b"orphan", KEY), 1002);
    let mut nested = frame(false, 0, op::TEXT, b"a", KEY);
    nested.extend(frame(true, 0, op::TEXT, b"b", KEY));
    expect_close(&nested, 1002);
}

/// Autobahn 7.9: close codes a peer must not send; 7.5: a reason that is
/// not UTF-8; 7.3: a one-byte close payload.
#[test]
fn bad_close_frames() {
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000,
    ] {
        expect_close(&frame(true, 0, op::CLOSE, &code.to_be_bytes(), KEY), 1002);
    }
    expect_close(&frame(true, 0, op::CLOSE, &[0x03], KEY), 1002);
    expect_close(
        &frame(true, 0, op::CLOSE, b"\x03\xe8\xce\xba\xe1\xbd", KEY),
        1007,
    );
}

/// Autobahn 7.7: valid close codes are echoed, and the connection ends.
#[test]
fn valid_close_codes_are_echoed() {
    for code in [1000u16, 1001, 1003, 1007, 1011, 3000, 3999, 4000, 4999] {
        expect_close(&frame(true, 0, op::CLOSE, &code.to_be_bytes(), KEY), code);
    }
}

/// Autobahn 6.3/6.4: invalid UTF-8 is 1007, also when it comes in a
/// fragment before the message ends (the server fails it at once).
#[test]
fn invalid_utf8_is_1007_even_mid_message() {
    expect_close(
        &frame(
            true,
            0,
            op::TEXT,
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xed\xa0\x80",
            KEY,
        ),
        1007,
    );
    let mut s = connect();
    ws::send(
        &mut s,
        &frame(false, 0, op::TEXT, b"ok so far \xf4\x90\x80\x80", KEY),
    );
    // No further fragment is sent: the close comes anyway.
    assert_eq!(read_close_code(&mut s), 1007);
}

/// Autobahn 1.1/1.2: payload lengths 125, 126, 127, 65535, 65536 (7-bit,
/// 16-bit and 64-bit length forms), sent in uneven pieces.
#[test]
fn every_length_form_echoes() {
    let mut s = connect();
    for len in [0usize, 125, 126, 127, 65535, 65536, 300_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let wire = frame(
            true,
            0,
            op::BINARY,
            &payload,
            Some([0xa5, 0x00, 0x5a, 0xff]),
        );
        for piece in wire.chunks(1021) {
            s.write_all(piece).unwrap();
        }
        assert_eq!(
            read_frame(&mut s).unwrap(),
            (true, op::BINARY, payload),
            "{len}"
        );
    }
}

/// Autobahn 9.x in small: many frames in one write, and a message of many
/// fragments.
#[test]
fn many_frames_per_read_and_many_fragments() {
    let mut s = connect();
    let mut wire = Vec::new();
    for i in 0..200 {
        wire.extend(frame(true, 0, op::TEXT, format!("m{i}").as_bytes(), KEY));
    }
    s.write_all(&wire).unwrap();
    for i in 0..200 {
        assert_eq!(read_frame(&mut s).unwrap().2, format!("m{i}").into_bytes());
    }
    let mut wire = frame(false, 0, op::BINARY, b"", KEY);
    for i in 0..1000u32 {
        wire.extend(frame(false, 0, op::CONT, &i.to_be_bytes(), KEY));
    }
    wire.extend(frame(true, 0, op::CONT, b"", KEY));
    s.write_all(&wire).unwrap();
    let (_, opcode, payload) = read_frame(&mut s).unwrap();
    assert_eq!(opcode, op::BINARY);
    let want: Vec<u8> = (0..1000u32).flat_map(u32::to_be_bytes).collect();
    assert_eq!(payload, want);
}

/// A message over the limit, in fragments, is 1009 once the fragments
/// pass it.
#[test]
fn fragments_past_the_limit_are_1009() {
    let mut s = connect();
    let half = vec![b'x'; 600 * 1024];
    ws::send(&mut s, &frame(false, 0, op::BINARY, &half, KEY));
    let _ = s.write_all(&frame(true, 0, op::CONT, &half, KEY));
    assert_eq!(read_close_code(&mut s), 1009);
}
