//! `X-Forwarded-For` and `Forwarded` behind trusted proxies: the client is
//! the first address, walking from the right, that is not a trusted
//! proxy; never one the walk did not reach.
//!
//! The input is read (by `arbitrary`) as the peer (a trusted proxy or
//! not), the header to use, and a chain of hops: addresses inside and
//! outside the trusted ranges (IPv4, IPv6, IPv4-mapped; with ports,
//! brackets, quotes and spaces as proxies write them) and unreadable
//! entries (`unknown`, `_obfuscated`, no `for=`, junk), spread over one to
//! three header fields; in `Forwarded`, elements may carry `proto=`. The
//! answer must be the reference's below: for an untrusted peer, the
//! socket's view; else the walk from the right stops at the first
//! untrusted address (the client) or at an unreadable entry (the client is
//! then the last address reached, or the peer), and the scheme is that of
//! the left-most element reached that names one (`Forwarded`).
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use tine::ProxyHeader;

const TRUSTED: &[&str] = &[
    "10.0.0.0/8",
    "192.168.1.0/24",
    "::1",
    "fd00::/8",
    "::ffff:172.16.0.0/108",
];

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn trusted(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            o[0] == 10 || (o[0], o[1], o[2]) == (192, 168, 1) || (o[0] == 172 && o[1] & 0xf0 == 16)
        }
        IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST || v6.octets()[0] == 0xfd,
    }
}

fn address(u: &mut Unstructured<'_>) -> Result<IpAddr> {
    let low: u8 = u.arbitrary()?;
    Ok(match u.int_in_range(0..=8)? {
        0 => Ipv4Addr::new(10, low, 0, 1).into(),
        1 => Ipv4Addr::new(192, 168, 1, low).into(),
        2 => Ipv4Addr::new(172, 16 + low % 32, 0, 1).into(),
        3 => Ipv6Addr::LOCALHOST.into(),
        4 => Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(low)).into(),
        5 => Ipv4Addr::new(203, 0, 113, low).into(),
        6 => Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(low)).into(),
        7 => Ipv4Addr::new(10, 1, 2, low).to_ipv6_mapped().into(),
        _ => Ipv4Addr::new(198, 51, 100, low).to_ipv6_mapped().into(),
    })
}

/// One hop as written, what it says, and (`Forwarded`) its scheme.
struct Hop {
    text: String,
    addr: Option<IpAddr>,
    https: Option<bool>,
}

fn hop(u: &mut Unstructured<'_>, forwarded: bool) -> Result<Hop> {
    let proto = match u.int_in_range(0..=3)? {
        0 => Some(("https", true)),
        1 => Some(("http", false)),
        2 => Some(("HTTPS", true)),
        _ => None,
    };
    let proto = if forwarded { proto } else { None };
    let with_proto = |s: String| match proto {
        Some((p, _)) => format!("{s};proto={p}"),
        None => s,
    };
    let https = proto.map(|(_, h)| h);
    if u.ratio(1, 6)? {
        let (text, https) = match (forwarded, u.int_in_range(0..=3)?) {
            (false, 0) => ("unknown".to_owned(), None),
            (false, 1) => ("_hidden".to_owned(), None),
            (false, 2) => ("".to_owned(), None),
            (false, _) => ("1.2.3".to_owned(), None),
            (true, 0) => (with_proto("for=unknown".into()), https),
            (true, 1) => (with_proto("for=_hidden".into()), https),
            (true, 2) => (with_proto("by=10.0.0.1".into()), https),
            (true, _) => ("junk".to_owned(), None),
        };
        return Ok(Hop {
            text,
            addr: None,
            https,
        });
    }
    let ip = address(u)?;
    let port: u16 = u.arbitrary()?;
    let text = match (ip, u.int_in_range(0..=3)?) {
        (IpAddr::V4(a), 0) => format!("{a}"),
        (IpAddr::V4(a), 1) => format!("{a}:{port}"),
        (IpAddr::V4(a), 2) => format!("\"{a}\""),
        (IpAddr::V4(a), _) => format!(" {a} "),
        (IpAddr::V6(a), 0) if !forwarded => format!("{a}"),
        (IpAddr::V6(a), 1) => format!("\"[{a}]:{port}\""),
        (IpAddr::V6(a), _) => format!("\"[{a}]\""),
    };
    let text = if forwarded {
        with_proto(format!("for={text}"))
    } else {
        text
    };
    Ok(Hop {
        text,
        addr: Some(ip),
        https,
    })
}

fn check(u: &mut Unstructured<'_>) -> Result<()> {
    let forwarded: bool = u.arbitrary()?;
    let peer = SocketAddr::new(address(u)?, 40000);
    let mut hops = Vec::new();
    for _ in 0..u.int_in_range(0..=6)? {
        hops.push(hop(u, forwarded)?);
    }
    // Spread over fields: each hop starts a new field or not.
    let name = if forwarded {
        "forwarded"
    } else {
        "x-forwarded-for"
    };
    let mut fields: Vec<String> = Vec::new();
    for h in &hops {
        match fields.last_mut() {
            Some(f) if !u.ratio(1, 3)? => {
                f.push_str(", ");
                f.push_str(&h.text);
            }
            _ => fields.push(h.text.clone()),
        }
    }
    let headers: Vec<(&str, &[u8])> = fields.iter().map(|f| (name, f.as_bytes())).collect();
    let header = if forwarded {
        ProxyHeader::Forwarded
    } else {
        ProxyHeader::XForwardedFor
    };
    let got = tine::__fuzz::forwarded_client(TRUSTED, header, peer, &headers);

    let want = if !trusted(peer.ip()) || (forwarded && fields.is_empty()) {
        None
    } else {
        let mut reached = None;
        let mut https = None;
        for h in hops.iter().rev() {
            if h.https.is_some() {
                https = h.https;
            }
            match h.addr {
                Some(ip) => {
                    reached = Some(canonical(ip));
                    if !trusted(ip) {
                        break;
                    }
                }
                None => break,
            }
        }
        Some((
            reached.unwrap_or(canonical(peer.ip())),
            https.unwrap_or(false),
        ))
    };
    assert_eq!(got, want, "peer {peer}, {name}: {fields:?}");
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = check(&mut Unstructured::new(data));
});
