//! RFC 6455 section 5, the data framing, server side: client frame
//! headers, unmasking, UTF-8 checks, close codes, and writing server
//! frames.
//!
//! Written here rather than taken from a crate: the framing crates
//! (tungstenite, and the codecs built on it) own their buffers and are
//! driven through `Read`/`Write`, so every message was copied from the
//! socket's read buffer into theirs, zeroed, copied again for the payload,
//! and the reply framed into a buffer of theirs before reaching ours. No
//! crate parses frames on a borrowed buffer with its state lent back and
//! forth the way tine's connections hold theirs (nothing at all while
//! idle). The session (`session.rs`) reads frames where the socket read
//! them, unmasks them in place, and frames replies straight into the
//! connection's output buffer with the functions here.

/// Frame opcodes (RFC 6455 §5.2).
pub(crate) mod op {
    pub(crate) const CONTINUATION: u8 = 0;
    pub(crate) const TEXT: u8 = 1;
    pub(crate) const BINARY: u8 = 2;
    pub(crate) const CLOSE: u8 = 8;
    pub(crate) const PING: u8 = 9;
    pub(crate) const PONG: u8 = 10;
}

/// Close codes tine sends (RFC 6455 §7.4.1).
pub(crate) mod code {
    pub(crate) const NORMAL: u16 = 1000;
    pub(crate) const AWAY: u16 = 1001;
    pub(crate) const PROTOCOL: u16 = 1002;
    /// The peer's close frame had no code (never sent).
    pub(crate) const NONE: u16 = 1005;
    pub(crate) const INVALID: u16 = 1007;
    pub(crate) const POLICY: u16 = 1008;
    pub(crate) const TOO_BIG: u16 = 1009;
    pub(crate) const ERROR: u16 = 1011;
}

/// Why the connection must be failed: the close code and a short reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Violation {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
}

const fn protocol(reason: &'static str) -> Violation {
    Violation {
        code: code::PROTOCOL,
        reason,
    }
}

/// The bad UTF-8 violation (1007).
pub(crate) const BAD_UTF8: Violation = Violation {
    code: code::INVALID,
    reason: "invalid UTF-8",
};

/// A client frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The final frame of its message.
    pub(crate) fin: bool,
    pub(crate) opcode: u8,
    /// The masking key.
    pub(crate) mask: [u8; 4],
    /// Payload length.
    pub(crate) len: usize,
    /// Header length (2 to 14 bytes).
    pub(crate) size: usize,
}

/// Parses the client frame header at the start of `buf`: `Ok(None)` while
/// it is incomplete. Checks what can be checked from the header alone, as
/// soon as the bytes that show it are in: reserved bits and opcodes (no
/// extension is negotiated), the mask (clients must mask), control frames
/// (final, at most 125 bytes), a 64-bit length's top bit, and a data
/// frame's length against `max` (1009 before any payload is buffered).
pub(crate) fn parse_header(buf: &[u8], max: usize) -> Result<Option<Header>, Violation> {
    let (b0, b1) = match buf {
        [b0, b1, ..] => (*b0, *b1),
        _ => return Ok(None),
    };
    if b0 & 0x70 != 0 {
        return Err(protocol("reserved bits set"));
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0f;
    match opcode {
        op::CONTINUATION | op::TEXT | op::BINARY => {}
        op::CLOSE | op::PING | op::PONG => {
            if !fin {
                return Err(protocol("fragmented control frame"));
            }
            if b1 & 0x7f > 125 {
                return Err(protocol("control frame over 125 bytes"));
            }
        }
        _ => return Err(protocol("unknown opcode")),
    }
    if b1 & 0x80 == 0 {
        return Err(protocol("unmasked client frame"));
    }
    // The length is known (and checked) before the masking key arrives.
    let ext_end = match b1 & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    if buf.len() < ext_end {
        return Ok(None);
    }
    let len = match b1 & 0x7f {
        126 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
        127 => {
            let mut n = [0; 8];
            n.copy_from_slice(&buf[2..10]);
            let n = u64::from_be_bytes(n);
            if n >> 63 != 0 {
                return Err(protocol("length with its top bit set"));
            }
            n
        }
        n => u64::from(n),
    };
    let too_big = Violation {
        code: code::TOO_BIG,
        reason: "message too big",
    };
    let len = usize::try_from(len).map_err(|_| too_big)?;
    if opcode < 8 && len > max {
        return Err(too_big);
    }
    let size = ext_end + 4;
    if buf.len() < size {
        return Ok(None);
    }
    let mut mask = [0; 4];
    mask.copy_from_slice(&buf[size - 4..size]);
    Ok(Some(Header {
        fin,
        opcode,
        mask,
        len,
        size,
    }))
}

/// Unmasks `data` in place (RFC 6455 §5.3), eight bytes at a time.
pub(crate) fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let [a, b, c, d] = mask;
    let wide = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut words = data.chunks_exact_mut(8);
    for word in &mut words {
        let mut w = [0; 8];
        w.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(w) ^ wide).to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so at key byte 0.
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// Checks a text message's bytes as they arrive in fragments: `data` is
/// the message so far, of which `*checked` bytes are known to be whole,
/// valid UTF-8. Fails as soon as a byte cannot begin or continue a
/// character (the peer learns at once, not at the end of a long
/// message); a character cut by a fragment's end waits for the next one,
/// unless this is the message's last (`fin`).
pub(crate) fn check_utf8(data: &[u8], checked: &mut usize, fin: bool) -> Result<(), Violation> {
    match std::str::from_utf8(&data[*checked..]) {
        Ok(_) => {
            *checked = data.len();
            Ok(())
        }
        Err(e) if e.error_len().is_none() && !fin => {
            *checked += e.valid_up_to();
            Ok(())
        }
        Err(_) => Err(BAD_UTF8),
    }
}

/// Whether a peer may send `code` in a close frame: the codes RFC 6455
/// defines for use in frames (1000–1003, 1007–1011), those IANA registered
/// since (1012–1014), and the ranges for libraries and applications
/// (3000–4999). 1004–1006 and 1015 must never be sent; the rest is
/// reserved.
pub(crate) fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Parses a close frame's (unmasked) payload: the code (1005 when there
/// is none) and the reason.
pub(crate) fn parse_close(payload: &[u8]) -> Result<(u16, &str), Violation> {
    match payload {
        [] => Ok((code::NONE, "")),
        [_] => Err(protocol("close frame of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !valid_close_code(code) {
                return Err(protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| BAD_UTF8)?;
            Ok((code, reason))
        }
    }
}

/// Appends a final, unmasked server frame.
pub(crate) fn write_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    let n = payload.len();
    let mut head = [0x80 | opcode, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let size = match u16::try_from(n) {
        Ok(short) if short < 126 => {
            head[1] = short as u8;
            2
        }
        Ok(short) => {
            head[1] = 126;
            head[2..4].copy_from_slice(&short.to_be_bytes());
            4
        }
        Err(_) => {
            head[1] = 127;
            head[2..10].copy_from_slice(&(n as u64).to_be_bytes());
            10
        }
    };
    out.reserve(size + n);
    out.extend_from_slice(&head[..size]);
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and as much of `reason` as fits in
/// a control frame (123 bytes, cut at a character boundary).
pub(crate) fn write_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = [0; 125];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    write_frame(out, op::CLOSE, &payload[..2 + end]);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A client frame: `b0` as given (FIN, RSV, opcode), masked payload.
    /// (Also the session's tests' frame builder.)
    pub(crate) fn client(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut f = vec![b0];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    fn headers_of_each_length_form() {
        let m = [1, 2, 3, 4];
        for len in [0, 1, 125, 126, 127, 65535, 65536, 70000] {
            let f = client(0x82, &vec![9; len], m);
            let h = parse_header(&f, 1 << 20).unwrap().unwrap();
            assert_eq!((h.fin, h.opcode, h.mask, h.len), (true, 2, m, len));
            assert_eq!(h.size + len, f.len());
            // Any prefix of the header is incomplete, not an error.
            for cut in 0..h.size {
                assert_eq!(parse_header(&f[..cut], 1 << 20), Ok(None), "{len} {cut}");
            }
        }
    }

    #[test]
    fn reserved_bits_and_opcodes_are_protocol_errors() {
        for rsv in [0x10, 0x20, 0x40] {
            let f = client(0x81 | rsv, b"x", [0; 4]);
            assert_eq!(parse_header(&f, 100).unwrap_err().code, 1002);
        }
        for opcode in [3, 4, 5, 6, 7, 11, 12, 13, 14, 15] {
            let f = client(0x80 | opcode, b"x", [0; 4]);
            assert_eq!(parse_header(&f, 100).unwrap_err().code, 1002, "{opcode}");
        }
    }

    #[test]
    fn unmasked_client_frames_are_protocol_errors() {
        assert_eq!(
            parse_header(&[0x81, 0x02, b'h', b'i'], 100)
                .unwrap_err()
                .code,
            1002
        );
        // Known from the first two bytes, before any more arrive.
        assert_eq!(parse_header(&[0x81, 0x7e], 100).unwrap_err().code, 1002);
    }

    #[test]
    fn control_frames_are_final_and_short() {
        let ping125 = client(0x89, &[0; 125], [5; 4]);
        assert_eq!(parse_header(&ping125, 0).unwrap().unwrap().len, 125);
        let ping126 = client(0x89, &[0; 126], [5; 4]);
        assert_eq!(parse_header(&ping126, 1000).unwrap_err().code, 1002);
        let fragmented = client(0x09, b"p", [5; 4]);
        assert_eq!(parse_header(&fragmented, 1000).unwrap_err().code, 1002);
        let close = client(0x08, &[3, 232], [5; 4]);
        assert_eq!(parse_header(&close, 1000).unwrap_err().code, 1002);
    }

    #[test]
    fn sixty_four_bit_lengths() {
        let mut f = vec![0x82, 0xff];
        f.extend_from_slice(&(1u64 << 63).to_be_bytes());
        f.extend_from_slice(&[0; 4]);
        assert_eq!(parse_header(&f, usize::MAX).unwrap_err().code, 1002);
        let mut f = vec![0x82, 0xff];
        f.extend_from_slice(&(1u64 << 40).to_be_bytes());
        f.extend_from_slice(&[0; 4]);
        assert_eq!(parse_header(&f, 1 << 20).unwrap_err().code, 1009);
    }

    #[test]
    fn data_frames_over_the_limit_are_1009_from_the_header() {
        let f = client(0x82, &[0; 300], [1; 4]);
        assert_eq!(parse_header(&f[..4], 299).unwrap_err().code, 1009);
        assert!(parse_header(&f, 300).unwrap().is_some());
    }

    #[test]
    fn unmasking_any_length_and_alignment() {
        let mask = [0xa1, 0x02, 0xf3, 0x44];
        for len in 0..40 {
            let plain: Vec<u8> = (0..len as u8).collect();
            let mut data: Vec<u8> = plain
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            unmask(&mut data, mask);
            assert_eq!(data, plain, "{len}");
        }
    }

    #[test]
    fn utf8_across_fragments() {
        // "€" is E2 82 AC; cut after each of its bytes.
        let text = "a€b".as_bytes();
        for cut in 0..=text.len() {
            let mut checked = 0;
            check_utf8(&text[..cut], &mut checked, false).unwrap();
            assert!(checked <= cut);
            check_utf8(text, &mut checked, true).unwrap();
            assert_eq!(checked, text.len());
        }
        // A cut character at the message's end is invalid.
        let mut checked = 0;
        assert_eq!(check_utf8(&text[..2], &mut checked, true), Err(BAD_UTF8));
        // A byte that can never be valid fails at once, mid-message.
        let mut checked = 0;
        assert_eq!(check_utf8(b"ok\xff", &mut checked, false), Err(BAD_UTF8));
        // F4 90 is past U+10FFFF: known bad from two bytes.
        let mut checked = 0;
        assert_eq!(check_utf8(b"\xf4\x90", &mut checked, false), Err(BAD_UTF8));
    }

    #[test]
    fn close_payloads() {
        assert_eq!(parse_close(b""), Ok((1005, "")));
        assert_eq!(parse_close(b"\x03").unwrap_err().code, 1002);
        assert_eq!(parse_close(b"\x03\xe8bye"), Ok((1000, "bye")));
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(valid_close_code(ok), "{ok}");
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!valid_close_code(bad), "{bad}");
            let payload = u16::to_be_bytes(bad);
            assert_eq!(parse_close(&payload).unwrap_err().code, 1002);
        }
        assert_eq!(parse_close(b"\x03\xe8\xff").unwrap_err().code, 1007);
    }

    #[test]
    fn server_frames() {
        let mut out = Vec::new();
        write_frame(&mut out, op::TEXT, b"hi");
        assert_eq!(out, b"\x81\x02hi");
        for (len, head) in [(125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let mut out = Vec::new();
            write_frame(&mut out, op::BINARY, &vec![0; len]);
            assert_eq!(out.len(), head + len);
            assert_eq!(out[0], 0x82);
        }
        let mut out = Vec::new();
        write_close(&mut out, 1000, &"é".repeat(100));
        assert_eq!(out.len(), 2 + 125 - 1, "cut at a character boundary");
        assert_eq!(&out[2..4], &[3, 232]);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }
}
