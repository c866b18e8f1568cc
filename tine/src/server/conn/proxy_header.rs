//! The PROXY protocol header (v1 text, v2 binary) at the start of a
//! connection on a listener that expects one
//! ([`Listen::proxy_protocol`](crate::Listen::proxy_protocol)), parsed
//! with the `ppp` crate.

use std::net::{IpAddr, SocketAddr};

use bytes::{Buf, BytesMut};
use ppp::{v1, v2, HeaderResult, PartialResult};

/// A v2 header carries TLVs after the addresses; this caps what is
/// buffered waiting for its end (a v1 header is at most 107 bytes).
const MAX: usize = 4096;

/// What the start of the read buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Not all of it yet.
    NeedMore,
    /// A header, removed from the buffer: the client's address, or `None`
    /// for a `LOCAL`/`UNKNOWN` one (keep the socket's).
    Header(Option<SocketAddr>),
    /// Not a valid header (the reason, for the log).
    Bad(String),
}

/// What every v2 header starts with.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest v1 header, `\r\n` included (from the specification).
const V1_MAX: usize = 107;

/// Parses and removes the header at the start of `buf`.
pub(crate) fn take(buf: &mut BytesMut) -> Taken {
    // A v1 header is parsed once its line is whole: `ppp` reads a line cut
    // after a port's first digits as a complete (wrong) one.
    let n = buf.len().min(5);
    if b"PROXY"[..n] == buf[..n] {
        return match memchr::memmem::find(&buf[..buf.len().min(V1_MAX)], b"\r\n") {
            None if buf.len() >= V1_MAX => Taken::Bad("v1: no line end in 107 bytes".into()),
            None => Taken::NeedMore,
            Some(end) => {
                let read = read(HeaderResult::V1(v1::Header::try_from(&buf[..end + 2])));
                consume(buf, read)
            }
        };
    }
    // Neither `PROXY` nor the start of the v2 signature: no header can
    // follow, whatever comes next (`ppp` calls some such prefixes
    // incomplete, so the connection would wait for more instead).
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] != V2_SIGNATURE[..n] {
        return Taken::Bad("neither a v1 nor a v2 header".into());
    }
    // A v2 header says its length in bytes 14 and 15, after the 12-byte
    // signature and two bytes of version, command and family: one longer
    // than the cap is refused as soon as that is known, whether it would
    // arrive in pieces (then it could only wait for the header timeout)
    // or whole in one read.
    if buf.len() >= 16 && buf[..12] == V2_SIGNATURE {
        let len = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if len > MAX {
            return Taken::Bad(format!("v2: a {len}-byte header (at most {MAX})"));
        }
    }
    let parsed = HeaderResult::parse(buf);
    if parsed.is_incomplete() {
        return if buf.len() >= MAX {
            Taken::Bad(format!("no complete header in {MAX} bytes"))
        } else {
            Taken::NeedMore
        };
    }
    let read = read(parsed);
    consume(buf, read)
}

/// Removes a header read from `buf`. A source of `0.0.0.0` or `::` names
/// no client: kept as unknown (the socket's address stays), since the
/// unspecified address is what stands for a Unix-socket peer and would
/// make the connection pass for one.
fn consume(buf: &mut BytesMut, read: Result<(usize, Option<SocketAddr>), String>) -> Taken {
    match read {
        Ok((len, addr)) => {
            buf.advance(len);
            Taken::Header(addr.filter(|a| !a.ip().is_unspecified()))
        }
        Err(why) => Taken::Bad(why),
    }
}

/// A parsed header's length and source address.
fn read(parsed: HeaderResult<'_>) -> Result<(usize, Option<SocketAddr>), String> {
    Ok(match parsed {
        HeaderResult::V1(Ok(h)) => {
            let addr = match h.addresses {
                v1::Addresses::Tcp4(a) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                v1::Addresses::Tcp6(a) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                v1::Addresses::Unknown => None,
            };
            (h.header.len(), addr)
        }
        HeaderResult::V2(Ok(h)) => {
            let addr = match (h.command, h.addresses) {
                (v2::Command::Local, _) => None,
                (_, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                (_, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                // A Unix socket or no address: nothing better than ours.
                (_, v2::Addresses::Unix(_) | v2::Addresses::Unspecified) => None,
            };
            (h.len(), addr)
        }
        HeaderResult::V1(Err(e)) => return Err(format!("v1: {e}")),
        HeaderResult::V2(Err(e)) => return Err(format!("v2: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(b: &[u8]) -> BytesMut {
        BytesMut::from(b)
    }

    #[test]
    fn v1_headers() {
        let mut b = buf(b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 80\r\nGET / HTTP/1.1\r\n");
        assert_eq!(
            take(&mut b),
            Taken::Header(Some("203.0.113.7:51000".parse().unwrap()))
        );
        assert_eq!(&b[..], b"GET / HTTP/1.1\r\n");
        // The unspecified address names no client.
        for unspecified in [
            &b"PROXY TCP4 0.0.0.0 10.0.0.1 0 80\r\n"[..],
            b"PROXY TCP6 :: ::1 0 443\r\n",
        ] {
            assert_eq!(take(&mut buf(unspecified)), Taken::Header(None));
        }
        let mut b = buf(b"PROXY TCP6 2001:db8::7 ::1 4000 443\r\n");
        assert_eq!(
            take(&mut b),
            Taken::Header(Some("[2001:db8::7]:4000".parse().unwrap()))
        );
        assert!(b.is_empty());
        let mut b = buf(b"PROXY UNKNOWN\r\nGET");
        assert_eq!(take(&mut b), Taken::Header(None));
        assert_eq!(&b[..], b"GET");
        // Byte by byte: more is needed until the line ends.
        let full = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
        for n in 1..full.len() {
            assert_eq!(take(&mut buf(&full[..n])), Taken::NeedMore, "{n}");
        }
    }

    /// Bytes that begin neither header are refused at once, however they
    /// arrive (`ppp` took some prefixes for the start of a header).
    #[test]
    fn what_starts_no_header_is_refused_at_once() {
        for bad in [&b"P\rP"[..], b"GET / HTTP/1.1\r\n", b"\r\n\r\nX", b"\0"] {
            for n in 1..=bad.len() {
                let taken = take(&mut buf(&bad[..n]));
                let starts_one = b"PROXY".starts_with(&bad[..n.min(5)])
                    || V2_SIGNATURE.starts_with(&bad[..n.min(12)]);
                match taken {
                    Taken::NeedMore => assert!(starts_one, "{:?} waits", &bad[..n]),
                    Taken::Bad(_) => assert!(!starts_one, "{:?} refused", &bad[..n]),
                    Taken::Header(_) => panic!("{:?} taken as a header", &bad[..n]),
                }
            }
        }
    }

    #[test]
    fn v2_headers() {
        let header = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (
                "203.0.113.7:51000".parse::<SocketAddr>().unwrap(),
                "10.0.0.1:80".parse::<SocketAddr>().unwrap(),
            ),
        )
        .build()
        .unwrap();
        let mut b = buf(&header);
        b.extend_from_slice(b"GET /");
        assert_eq!(
            take(&mut b),
            Taken::Header(Some("203.0.113.7:51000".parse().unwrap()))
        );
        assert_eq!(&b[..], b"GET /");
        for n in 1..header.len() {
            assert_eq!(take(&mut buf(&header[..n])), Taken::NeedMore, "{n}");
        }
        let local = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Local,
            v2::Protocol::Unspecified,
            v2::Addresses::Unspecified,
        )
        .build()
        .unwrap();
        assert_eq!(take(&mut buf(&local)), Taken::Header(None));
        // Longer than the cap: refused once its length field is in, and
        // also when it arrives whole.
        let long = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (
                "203.0.113.7:51000".parse::<SocketAddr>().unwrap(),
                "10.0.0.1:80".parse::<SocketAddr>().unwrap(),
            ),
        )
        .write_tlv(0xE0, &[0u8; MAX][..])
        .unwrap()
        .build()
        .unwrap();
        assert!(matches!(take(&mut buf(&long[..16])), Taken::Bad(_)));
        assert!(matches!(take(&mut buf(&long)), Taken::Bad(_)));
        assert_eq!(take(&mut buf(&long[..15])), Taken::NeedMore);
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n",
            b"PROXY SCTP 1.2.3.4 5.6.7.8 1 2\r\n",
        ] {
            assert!(
                matches!(take(&mut buf(bad)), Taken::Bad(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // A v1 line that never ends.
        let long = vec![b'P'; 200];
        let mut b = buf(b"PROXY TCP4 ");
        b.extend_from_slice(&long);
        assert!(matches!(take(&mut b), Taken::Bad(_)));
    }
}
