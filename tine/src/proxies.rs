//! The client behind a reverse proxy: [`App::trusted_proxies`] and
//! [`Request::client_addr`] / [`Request::scheme`].
//!
//! A proxy passes the client's address in a header (`X-Forwarded-For`
//! with `X-Forwarded-Proto`, or RFC 7239's `Forwarded`). Anybody can send
//! such a header, so it is believed only from a *trusted* peer, and read
//! from the right: each proxy appends the address it received the request
//! from, so the right-most address that is not itself a trusted proxy is
//! the client as the outermost trusted proxy saw it (nginx's
//! `real_ip_recursive on`). The left-most entries are whatever the client
//! sent and can be spoofed through any proxy, so only the entries the walk
//! from the right reaches are read: junk the client wrote left of its own
//! address does not matter. An entry the walk reaches that cannot be read
//! (no address, `unknown`, an obfuscated `_name`, an empty entry) ends it:
//! the client is then the last address reached, a trusted hop, or the
//! socket's address when the right-most entry is unreadable. A scheme that is neither `http` nor `https` leaves the socket's
//! scheme and does not affect the address. What cannot be read is logged
//! at debug level.
//!
//! A peer on a Unix-domain listener has no address (its
//! [`Request::peer_addr`] is the unspecified `0.0.0.0:0`): it is the proxy
//! on this host, but it is trusted only when told, with the entry
//! `"unix:"` (nginx's `set_real_ip_from unix:`), never by an address
//! range: a wide range such as `0.0.0.0/0` does not reach it.

use std::net::{IpAddr, SocketAddr};

use ipnet::{IpNet, Ipv4Net};

use crate::http::Request;

/// Which header carries the client's address from trusted proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ProxyHeader {
    /// `X-Forwarded-For` (addresses) and `X-Forwarded-Proto` (`http` or
    /// `https`, the right-most value): what nginx, HAProxy and most load
    /// balancers send. The default.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=...;proto=...`, element by element.
    Forwarded,
}

/// The trusted proxies and the header they use.
#[derive(Debug, Clone, Default)]
pub(crate) struct Proxies {
    nets: Vec<IpNet>,
    /// Peers on Unix-domain listeners are trusted (`"unix:"`).
    unix: bool,
    header: ProxyHeader,
}

/// What a trusted proxy said about the client (an extension of the
/// request, set before the before-hooks run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Client {
    pub addr: IpAddr,
    pub https: bool,
}

/// Parses `"10.0.0.0/8"`, `"::1"`, `"192.168.1.7"`.
///
/// An IPv4-mapped range (`"::ffff:127.0.0.1"`, `"::ffff:10.0.0.0/104"`) is
/// taken as the IPv4 range it maps (`127.0.0.1/32`, `10.0.0.0/8`): peers
/// and hops are compared in IPv4 form (see [`canonical`]), so the mapped
/// form as given never matched, and such an entry was silently ignored.
/// A wider IPv6 range that contains the mapped block (`"::/0"`) still
/// covers IPv6 only.
pub(crate) fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    let net = match s.parse::<IpNet>() {
        Ok(net) => net.trunc(),
        Err(_) => s
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("not an address or CIDR range: {s:?}"))?,
    };
    Ok(canonical_net(net))
}

/// A range inside `::ffff:0:0/96` as the IPv4 range it maps (a /96+N
/// becomes a /N); any other range as it is.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96)
                .expect("a prefix of at most 32")
                .into(),
            None => net,
        },
        net => net,
    }
}

/// The IPv4 address inside an IPv4-mapped IPv6 address (a dual-stack
/// socket's view of an IPv4 peer), so `127.0.0.1` matches it.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Proxies {
    pub(crate) fn add(&mut self, net: IpNet) {
        self.nets.push(net);
    }

    pub(crate) fn set_header(&mut self, header: ProxyHeader) {
        self.header = header;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.nets.is_empty() && !self.unix
    }

    /// Whether the peer of a request is trusted: a Unix peer only by
    /// `"unix:"`, any other by the address ranges.
    fn trusted_peer(&self, req: &Request) -> bool {
        if req.is_unix_peer() {
            self.unix
        } else {
            self.trusted(req.peer_addr().ip())
        }
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client as the headers tell it, when the peer is trusted; `None`
    /// leaves the socket's view.
    pub(crate) fn client(&self, req: &Request) -> Option<Client> {
        if !self.trusted_peer(req) {
            return None;
        }
        match self.header {
            ProxyHeader::XForwardedFor => Some(self.read_x_forwarded(req)),
            ProxyHeader::Forwarded => self.read_forwarded(req),
        }
    }

    /// Walks the hops of a forwarding header from the right (`hops` yields
    /// the right-most first), reading only the hops it reaches: the first
    /// address that is not a trusted proxy is the client, and so is the
    /// left-most one when all are trusted.
    ///
    /// A hop that cannot be read (`garbage`, `unknown`, an RFC 7239
    /// obfuscated `_name`, an empty entry) ends the walk, and the client is
    /// the last address it reached: the trusted hop right of it, or `None`
    /// (the peer) when it is the right-most hop. Entries were parsed all at once before: one unreadable entry
    /// anywhere, even one the client wrote left of the address its proxy
    /// appended, discarded the whole header, and the client took on the
    /// trusted proxy's address. Left of the client nothing is read.
    ///
    /// The client is returned with IPv4-mapped addresses as IPv4.
    fn walk(&self, hops: impl Iterator<Item = Result<IpAddr, String>>) -> Option<IpAddr> {
        let mut reached = None;
        for hop in hops {
            match hop {
                Ok(ip) => {
                    reached = Some(canonical(ip));
                    if !self.trusted(ip) {
                        break;
                    }
                }
                Err(why) => {
                    log::debug!(
                        "forwarding header: {why} cannot be read; the client is {}",
                        reached.map_or("the peer".to_string(), |ip| ip.to_string())
                    );
                    break;
                }
            }
        }
        reached
    }

    /// `X-Forwarded-For` (walked from the right, see [`walk`](Self::walk))
    /// and `X-Forwarded-Proto` (its right-most value). Each is read on its
    /// own: an unreadable scheme leaves the socket's and still believes the
    /// address, and the other way round.
    fn read_x_forwarded(&self, req: &Request) -> Client {
        let headers = req.headers();
        // Split as bytes, so that a byte that is not text spoils only the
        // entry it is in.
        let hops = (headers.get_all("x-forwarded-for").iter().rev())
            .flat_map(|v| v.as_bytes().rsplit(|&b| b == b','))
            .map(|h| {
                std::str::from_utf8(h)
                    .ok()
                    .and_then(parse_hop)
                    .ok_or_else(|| {
                        format!("X-Forwarded-For entry {:?}", String::from_utf8_lossy(h))
                    })
            });
        let addr = self
            .walk(hops)
            .unwrap_or_else(|| canonical(req.peer_addr().ip()));
        let https = match headers.get_all("x-forwarded-proto").iter().next_back() {
            None => req_https(req),
            Some(v) => {
                let last = v.as_bytes().rsplit(|&b| b == b',').next().unwrap_or(b"");
                let scheme = std::str::from_utf8(last).ok().map(str::trim);
                scheme.and_then(scheme_https).unwrap_or_else(|| {
                    log::debug!(
                        "X-Forwarded-Proto {:?} cannot be read; the scheme is the socket's",
                        String::from_utf8_lossy(v.as_bytes())
                    );
                    req_https(req)
                })
            }
        };
        Client { addr, https }
    }

    /// RFC 7239 `Forwarded`, element by element from the right (see
    /// [`walk`](Self::walk)): an element whose `for=` is `unknown`, an
    /// obfuscated `_name` or no address, or that cannot be read at all,
    /// ends the walk. The scheme is the `proto=` nearest the client among
    /// the elements the walk reached (the one that ended it included: its
    /// proxy is trusted), else the socket's; an unreadable `proto=` counts
    /// as none. Elements left of the client, which it could have written
    /// itself, are not read.
    fn read_forwarded(&self, req: &Request) -> Option<Client> {
        let values = req.headers().get_all("forwarded");
        // No header: the socket's view.
        values.iter().next()?;
        let mut protos: Vec<Option<bool>> = Vec::new();
        let hops = (values.iter().rev())
            .flat_map(|v| v.as_bytes().rsplit(|&b| b == b','))
            .map(|element| {
                let (addr, proto) = parse_element(element);
                protos.push(proto);
                addr
            });
        let addr = self
            .walk(hops)
            .unwrap_or_else(|| canonical(req.peer_addr().ip()));
        let https = (protos.iter().rev().find_map(|&p| p)).unwrap_or_else(|| req_https(req));
        Some(Client { addr, https })
    }
}

/// One element of a `Forwarded` header: its `for=` address (or why there
/// is none to believe) and its `proto=` (`None` when absent or unreadable).
fn parse_element(element: &[u8]) -> (Result<IpAddr, String>, Option<bool>) {
    let unreadable = || format!("Forwarded element {:?}", String::from_utf8_lossy(element));
    let Ok(text) = std::str::from_utf8(element) else {
        return (Err(unreadable()), None);
    };
    let mut addr = Err(format!("Forwarded element {text:?} without for="));
    let mut proto = None;
    for pair in text.split(';') {
        let Some((k, v)) = pair.split_once('=') else {
            if pair.trim().is_empty() {
                continue;
            }
            return (Err(unreadable()), None);
        };
        let v = v.trim().trim_matches('"');
        match k.trim().to_ascii_lowercase().as_str() {
            // `unknown` and `_obfuscated` name no address: parse_hop
            // refuses them like any other non-address.
            "for" => addr = parse_hop(v).ok_or_else(|| format!("Forwarded for={v:?}")),
            "proto" => {
                proto = scheme_https(v);
                if proto.is_none() {
                    log::debug!("Forwarded proto={v:?} cannot be read; ignored");
                }
            }
            _ => {}
        }
    }
    (addr, proto)
}

/// What the socket says about the scheme: https for a connection that
/// arrived on a TLS listener.
fn req_https(req: &Request) -> bool {
    req.is_https()
}

fn scheme_https(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("https") {
        Some(true)
    } else if s.eq_ignore_ascii_case("http") {
        Some(false)
    } else {
        None
    }
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:443`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    // `[v6]` without a port (RFC 7239 quotes it so).
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|v| v.parse().ok())
}

impl Request {
    /// The client's address: the TCP peer's, or, when the peer is one of
    /// the [trusted proxies](crate::App::trusted_proxies), the one its
    /// forwarding header names (the right-most address that is not a
    /// trusted proxy). Headers from other peers are ignored.
    ///
    /// ```
    /// use tine::{Method, Request};
    /// let req = Request::builder(Method::GET, "/")
    ///     .peer("198.51.100.4:5000".parse().unwrap())
    ///     .header("x-forwarded-for", "203.0.113.7")
    ///     .finish();
    /// // No proxy is trusted here: the header is ignored.
    /// assert_eq!(req.client_addr().to_string(), "198.51.100.4");
    /// ```
    pub fn client_addr(&self) -> IpAddr {
        self.extensions()
            .get::<Client>()
            .map_or_else(|| canonical(self.peer_addr().ip()), |c| c.addr)
    }

    /// Whether the request came over a Unix-domain listener
    /// ([`Listen::unix`](crate::Listen::unix)), whose peer has no address:
    /// [`peer_addr`](Request::peer_addr) is then the unspecified
    /// `0.0.0.0:0` (no TCP peer has it), and so is
    /// [`client_addr`](Request::client_addr) unless a trusted proxy
    /// (`"unix:"` in [`App::trusted_proxies`](crate::App::trusted_proxies))
    /// names the client.
    ///
    /// ```
    /// use tine::{Method, Request};
    /// let req = Request::builder(Method::GET, "/").finish();
    /// assert!(!req.is_unix_peer());
    /// let req = Request::builder(Method::GET, "/").peer(([0, 0, 0, 0], 0).into()).finish();
    /// assert!(req.is_unix_peer());
    /// ```
    pub fn is_unix_peer(&self) -> bool {
        self.peer_addr() == crate::server::UNIX_PEER
    }

    /// `"https"` or `"http"`: what a trusted proxy says
    /// (`X-Forwarded-Proto` or `Forwarded: proto=`), else the socket's.
    ///
    /// ```
    /// use tine::{Method, Request};
    /// let req = Request::builder(Method::GET, "/").finish();
    /// assert_eq!(req.scheme(), "http");
    /// ```
    pub fn scheme(&self) -> &'static str {
        let https = self
            .extensions()
            .get::<Client>()
            .map_or_else(|| req_https(self), |c| c.https);
        if https {
            "https"
        } else {
            "http"
        }
    }
}

impl crate::App {
    /// Believes the forwarding headers of these peers: addresses or CIDR
    /// ranges (`"10.0.0.0/8"`, `"127.0.0.1"`, `"fd00::/8"`; an IPv4-mapped
    /// one such as `"::ffff:10.0.0.0/104"` is the IPv4 range it maps, and
    /// an IPv4 range also covers the mapped peers of a dual-stack `[::]`
    /// listener). From such a
    /// peer, [`Request::client_addr`] is the right-most address of the
    /// header ([`proxy_header`](crate::App::proxy_header);
    /// `X-Forwarded-For` by default) that is not itself a trusted proxy,
    /// like nginx's `real_ip_recursive`, and [`Request::scheme`] what the
    /// proxy says; from any other peer the headers are ignored (a client
    /// can send them too). Only the entries this walk from the right
    /// reaches are read; one that cannot be read ends it, and the client is
    /// the last address reached (a trusted hop), or the socket's address
    /// when it is the right-most entry; a scheme that cannot be read leaves
    /// the socket's (both logged at debug level). Can be called again to
    /// add more.
    ///
    /// The entry `"unix:"` trusts the peers of Unix-domain listeners
    /// ([`Listen::unix`](crate::Listen::unix): the proxy on this host),
    /// like nginx's `set_real_ip_from unix:`. They are not trusted
    /// without it, whatever the ranges.
    ///
    /// Panics, pointing at the caller, on an entry that is neither an
    /// address nor a CIDR range nor `"unix:"`.
    ///
    /// ```
    /// let app = tine::App::new().trusted_proxies(["127.0.0.1", "10.0.0.0/8", "unix:"]);
    /// ```
    #[track_caller]
    pub fn trusted_proxies<I, S>(self, proxies: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        match self.try_trusted_proxies(proxies) {
            Ok(app) => app,
            Err(e) => panic!("trusted_proxies: {e}"),
        }
    }

    /// [`trusted_proxies`](Self::trusted_proxies) for entries that come
    /// from outside the program (a command-line flag, a configuration
    /// file): an entry that is neither an address nor a CIDR range nor
    /// `"unix:"` is an error naming it, not a panic.
    ///
    /// ```
    /// let err = tine::App::new().try_trusted_proxies(["10.0.0.0/99"]).unwrap_err();
    /// assert!(err.contains("10.0.0.0/99"), "{err}");
    /// ```
    pub fn try_trusted_proxies<I, S>(mut self, proxies: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for p in proxies {
            if p.as_ref().trim() == "unix:" {
                self.service.proxies.unix = true;
                continue;
            }
            self.service.proxies.add(parse_net(p.as_ref())?);
        }
        Ok(self)
    }

    /// Which header trusted proxies use (see [`ProxyHeader`]).
    ///
    /// ```
    /// let app = tine::App::new()
    ///     .trusted_proxies(["10.0.0.0/8"])
    ///     .proxy_header(tine::ProxyHeader::Forwarded);
    /// ```
    pub fn proxy_header(mut self, header: ProxyHeader) -> Self {
        self.service.proxies.set_header(header);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn proxies(nets: &[&str], header: ProxyHeader) -> Proxies {
        let mut p = Proxies::default();
        for n in nets {
            p.add(parse_net(n).unwrap());
        }
        p.set_header(header);
        p
    }

    fn req(peer: &str, headers: &[(&str, &str)]) -> Request {
        let mut b = Request::builder(Method::GET, "/").peer(peer.parse().unwrap());
        for (k, v) in headers {
            b = b.header(k, v);
        }
        b.finish()
    }

    fn who(p: &Proxies, peer: &str, headers: &[(&str, &str)]) -> (String, bool) {
        let mut r = req(peer, headers);
        if let Some(c) = p.client(&r) {
            r.extensions_mut().insert(c);
        }
        (r.client_addr().to_string(), r.scheme() == "https")
    }

    #[test]
    fn cidrs_and_addresses_parse() {
        assert!(parse_net("10.0.0.0/8").is_ok());
        assert!(parse_net("::1").is_ok());
        assert!(parse_net(" 192.168.0.1 ").is_ok());
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("example.com").is_err());
        // A host address with a prefix is the range.
        assert!(parse_net("10.1.2.3/8")
            .unwrap()
            .contains(&"10.9.9.9".parse::<IpAddr>().unwrap()));
    }

    #[test]
    fn ipv4_mapped_ranges_are_their_ipv4_ranges() {
        let net = |s: &str| parse_net(s).unwrap().to_string();
        assert_eq!(net("::ffff:127.0.0.1"), "127.0.0.1/32");
        assert_eq!(net("::ffff:10.1.2.3/104"), "10.0.0.0/8");
        assert_eq!(net("::ffff:0:0/96"), "0.0.0.0/0");
        // Not mapped, or wider than the mapped block: as given.
        assert_eq!(net("::1"), "::1/128");
        assert_eq!(net("::/96"), "::/96");
        assert_eq!(net("::ffff:0:0/95"), "::fffe:0:0/95");
        // A dual-stack socket's IPv4 peer matches them, so do hops.
        for entry in ["::ffff:127.0.0.1", "::ffff:127.0.0.0/104", "::ffff:0:0/96"] {
            let p = proxies(&[entry], ProxyHeader::XForwardedFor);
            for peer in ["[::ffff:127.0.0.1]:9", "127.0.0.1:9"] {
                assert_eq!(
                    who(
                        &p,
                        peer,
                        &[("x-forwarded-for", "203.0.113.9, ::ffff:127.0.0.1")]
                    ),
                    ("203.0.113.9".into(), false),
                    "{entry} {peer}"
                );
            }
        }
    }

    #[test]
    fn right_most_untrusted_from_a_trusted_peer() {
        let p = proxies(&["127.0.0.1", "10.0.0.0/8"], ProxyHeader::XForwardedFor);
        let xff = |v: &str| {
            who(
                &p,
                "127.0.0.1:9",
                &[("x-forwarded-for", v), ("x-forwarded-proto", "https")],
            )
        };
        assert_eq!(xff("203.0.113.7"), ("203.0.113.7".into(), true));
        // The client wrote the left-most entry itself: not believed.
        assert_eq!(xff("6.6.6.6, 203.0.113.7"), ("203.0.113.7".into(), true));
        // Trusted hops are skipped.
        assert_eq!(
            xff("6.6.6.6, 203.0.113.7, 10.1.1.1"),
            ("203.0.113.7".into(), true)
        );
        // All trusted: the left-most.
        assert_eq!(xff("10.0.0.2, 10.0.0.3"), ("10.0.0.2".into(), true));
        // Several headers read as one list; ports and brackets allowed.
        let two = who(
            &p,
            "127.0.0.1:9",
            &[
                ("x-forwarded-for", "1.1.1.1"),
                ("x-forwarded-for", "[2001:db8::7]:443"),
            ],
        );
        assert_eq!(two, ("2001:db8::7".into(), false));
    }

    #[test]
    fn without_a_trusted_header_the_scheme_is_the_sockets() {
        let tls = Request::builder(Method::GET, "/").https().finish();
        assert_eq!(tls.scheme(), "https");
        // A trusted proxy without X-Forwarded-Proto: the socket's scheme.
        let p = proxies(&["127.0.0.1"], ProxyHeader::XForwardedFor);
        let mut r = Request::builder(Method::GET, "/")
            .peer("127.0.0.1:9".parse().unwrap())
            .header("x-forwarded-for", "203.0.113.7")
            .https()
            .finish();
        let c = p.client(&r).unwrap();
        r.extensions_mut().insert(c);
        assert_eq!(
            (r.client_addr().to_string(), r.scheme()),
            ("203.0.113.7".into(), "https")
        );
        // A trusted proxy saying http over a TLS socket is believed.
        let mut r = Request::builder(Method::GET, "/")
            .peer("127.0.0.1:9".parse().unwrap())
            .header("x-forwarded-for", "203.0.113.7")
            .header("x-forwarded-proto", "http")
            .https()
            .finish();
        let c = p.client(&r).unwrap();
        r.extensions_mut().insert(c);
        assert_eq!(r.scheme(), "http");
    }

    #[test]
    fn spoofed_headers_from_untrusted_peers_are_ignored() {
        let p = proxies(&["10.0.0.0/8"], ProxyHeader::XForwardedFor);
        let h = [
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
        ];
        assert_eq!(
            who(&p, "198.51.100.4:5", &h),
            ("198.51.100.4".into(), false)
        );
        let none = Proxies::default();
        assert_eq!(who(&none, "127.0.0.1:5", &h), ("127.0.0.1".into(), false));
    }

    #[test]
    fn malformed_headers_fall_back_to_the_socket() {
        let p = proxies(&["127.0.0.0/8"], ProxyHeader::XForwardedFor);
        // The right-most entry (the one the trusted peer appended) cannot
        // be read: nothing is believed.
        for bad in [
            "not-an-ip",
            "1.2.3.4 5.6.7.8",
            "999.1.1.1",
            "5.6.7.8,",
            "5.6.7.8, unknown",
        ] {
            assert_eq!(
                who(&p, "127.0.0.1:9", &[("x-forwarded-for", bad)]),
                ("127.0.0.1".into(), false),
                "{bad:?}"
            );
        }
        // A mapped IPv4 peer matches its IPv4 range.
        assert_eq!(
            who(
                &p,
                "[::ffff:127.0.0.1]:9",
                &[("x-forwarded-for", "203.0.113.9")]
            ),
            ("203.0.113.9".into(), false)
        );
    }

    #[test]
    fn forwarded_elements() {
        let p = proxies(&["127.0.0.1", "10.0.0.0/8"], ProxyHeader::Forwarded);
        let fwd = |v: &str| who(&p, "127.0.0.1:9", &[("forwarded", v)]);
        assert_eq!(
            fwd("for=6.6.6.6;proto=http, for=203.0.113.7;proto=https, for=10.0.0.5;proto=http"),
            ("203.0.113.7".into(), true)
        );
        assert_eq!(
            fwd(r#"for="[2001:db8::1]:4711";proto=https"#),
            ("2001:db8::1".into(), true)
        );
        assert_eq!(fwd("for=unknown"), ("127.0.0.1".into(), false));
        assert_eq!(fwd("for=_hidden"), ("127.0.0.1".into(), false));
        // The trusted peer names no client but says how it was reached.
        assert_eq!(fwd("proto=https"), ("127.0.0.1".into(), true));
        // X-Forwarded-For is not read in this mode.
        assert_eq!(
            who(&p, "127.0.0.1:9", &[("x-forwarded-for", "203.0.113.7")]),
            ("127.0.0.1".into(), false)
        );
    }

    /// Headers given as bytes (values that are not text included).
    fn who_bytes(p: &Proxies, peer: &str, headers: &[(&str, &[u8])]) -> (String, bool) {
        let mut map = http::HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(v).unwrap(),
            );
        }
        let mut r = Request::builder(Method::GET, "/")
            .peer(peer.parse().unwrap())
            .headers(map)
            .finish();
        if let Some(c) = p.client(&r) {
            r.extensions_mut().insert(c);
        }
        (r.client_addr().to_string(), r.scheme() == "https")
    }

    #[test]
    fn unreadable_entries_left_of_the_client_are_not_read() {
        // nginx's `$proxy_add_x_forwarded_for` appends the client's real
        // address to whatever it sent: junk on the left must not hand the
        // client the proxy's address.
        let p = proxies(&["127.0.0.1", "10.0.0.0/8"], ProxyHeader::XForwardedFor);
        let xff = |v: &str| who(&p, "127.0.0.1:9", &[("x-forwarded-for", v)]);
        for sent in [
            "garbage",
            "unknown",
            "1.2.3.4:5:6",
            "",
            "fe80::1%eth0",
            "1.2.3.4,",
            "1.2.3.4 5.6.7.8",
            "[::1",
        ] {
            let v = format!("{sent}, 203.0.113.7");
            assert_eq!(xff(&v), ("203.0.113.7".into(), false), "{v:?}");
            // Behind another trusted hop too.
            let v = format!("{sent}, 203.0.113.7, 10.0.0.3");
            assert_eq!(xff(&v), ("203.0.113.7".into(), false), "{v:?}");
        }
        // A byte that is not text, alone or in a header of its own.
        let h: &[(&str, &[u8])] = &[("x-forwarded-for", b"caf\xe9, 203.0.113.7")];
        assert_eq!(
            who_bytes(&p, "127.0.0.1:9", h),
            ("203.0.113.7".into(), false)
        );
        let h: &[(&str, &[u8])] = &[
            ("x-forwarded-for", b"\xff\xfe"),
            ("x-forwarded-for", b"203.0.113.7"),
        ];
        assert_eq!(
            who_bytes(&p, "127.0.0.1:9", h),
            ("203.0.113.7".into(), false)
        );
    }

    #[test]
    fn an_unreadable_entry_reached_by_the_walk_ends_it() {
        let p = proxies(&["127.0.0.1", "10.0.0.0/8"], ProxyHeader::XForwardedFor);
        let xff = |v: &str| who(&p, "127.0.0.1:9", &[("x-forwarded-for", v)]).0;
        // Every hop right of it is trusted: the last address reached (the
        // left-most trusted hop), never anything left of the junk.
        assert_eq!(xff("203.0.113.7, garbage, 10.0.0.3"), "10.0.0.3");
        assert_eq!(xff("203.0.113.7, unknown, 10.0.0.2, 10.0.0.3"), "10.0.0.2");
        assert_eq!(xff("203.0.113.7,, 10.0.0.3"), "10.0.0.3");
        // The right-most entry itself: the peer.
        assert_eq!(xff("203.0.113.7, garbage"), "127.0.0.1");
        let h: &[(&str, &[u8])] = &[("x-forwarded-for", b"203.0.113.7, \xe9")];
        assert_eq!(who_bytes(&p, "127.0.0.1:9", h).0, "127.0.0.1");
    }

    #[test]
    fn address_and_scheme_are_read_apart() {
        let p = proxies(&["127.0.0.1"], ProxyHeader::XForwardedFor);
        let w = |xff: &str, xfp: &str| {
            who(
                &p,
                "127.0.0.1:9",
                &[("x-forwarded-for", xff), ("x-forwarded-proto", xfp)],
            )
        };
        // An unreadable scheme leaves the socket's; the address stands.
        assert_eq!(w("203.0.113.7", "gopher"), ("203.0.113.7".into(), false));
        assert_eq!(w("203.0.113.7", "http, ftp"), ("203.0.113.7".into(), false));
        // An unreadable address leaves the peer's; the scheme stands.
        assert_eq!(w("garbage", "https"), ("127.0.0.1".into(), true));
        let h: &[(&str, &[u8])] = &[
            ("x-forwarded-for", b"203.0.113.7"),
            ("x-forwarded-proto", b"\xe9"),
        ];
        assert_eq!(
            who_bytes(&p, "127.0.0.1:9", h),
            ("203.0.113.7".into(), false)
        );
        // Over TLS an unreadable scheme stays https.
        let mut r = Request::builder(Method::GET, "/")
            .peer("127.0.0.1:9".parse().unwrap())
            .header("x-forwarded-for", "203.0.113.7")
            .header("x-forwarded-proto", "gopher")
            .https()
            .finish();
        let c = p.client(&r).unwrap();
        r.extensions_mut().insert(c);
        assert_eq!(
            (r.client_addr().to_string(), r.scheme()),
            ("203.0.113.7".into(), "https")
        );
    }

    #[test]
    fn forwarded_is_walked_the_same_way() {
        let p = proxies(&["127.0.0.1", "10.0.0.0/8"], ProxyHeader::Forwarded);
        let fwd = |v: &str| who(&p, "127.0.0.1:9", &[("forwarded", v)]);
        // Left of the client: not read, whatever it is.
        for sent in [
            "for=unknown",
            "for=_hidden",
            "for=\"_x\";proto=https",
            "garbage",
            "for=1.2.3.4:5:6",
            "proto=https",
            "",
        ] {
            let v = format!("{sent}, for=203.0.113.7");
            assert_eq!(fwd(&v), ("203.0.113.7".into(), false), "{v:?}");
            let v = format!("{sent}, for=203.0.113.7;proto=https, for=10.0.0.5");
            assert_eq!(fwd(&v), ("203.0.113.7".into(), true), "{v:?}");
        }
        let h: &[(&str, &[u8])] = &[("forwarded", b"for=caf\xe9, for=203.0.113.7")];
        assert_eq!(
            who_bytes(&p, "127.0.0.1:9", h),
            ("203.0.113.7".into(), false)
        );
        // Reached by the walk, an unknown or obfuscated node ends it: the
        // last address reached (its proto too: that proxy is trusted).
        assert_eq!(
            fwd("for=203.0.113.7, for=_hidden;proto=https, for=10.0.0.5"),
            ("10.0.0.5".into(), true)
        );
        assert_eq!(
            fwd("for=203.0.113.7, for=unknown, for=10.0.0.5;proto=https"),
            ("10.0.0.5".into(), true)
        );
        assert_eq!(
            fwd("for=203.0.113.7, for=unknown"),
            ("127.0.0.1".into(), false)
        );
        assert_eq!(fwd("for=203.0.113.7,"), ("127.0.0.1".into(), false));
        // An unreadable proto is no proto; the address stands.
        assert_eq!(
            fwd("for=203.0.113.7;proto=gopher"),
            ("203.0.113.7".into(), false)
        );
    }
}
