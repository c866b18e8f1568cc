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
//! sent and can be spoofed through any proxy. A header that cannot be read
//! (a value that is no address, a scheme that is neither `http` nor
//! `https`) is logged at debug level and ignored: the socket's address and
//! scheme stand.
//!
//! A peer on a Unix-domain listener has no address (its
//! [`Request::peer_addr`] is the unspecified `0.0.0.0:0`): it is the proxy
//! on this host, but it is trusted only when told, with the entry
//! `"unix:"` (nginx's `set_real_ip_from unix:`), never by an address
//! range: a wide range such as `0.0.0.0/0` does not reach it.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

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
pub(crate) fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("not an address or CIDR range: {s:?}"))
}

/// The IPv4 address inside an IPv4-mapped IPv6 address (a dual-stack
/// socket's view of an IPv4 peer), so `127.0.0.1` matches it.
fn canonical(ip: IpAddr) -> IpAddr {
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

    /// The client as the headers tell it, when the peer is trusted and the
    /// headers can be read; `None` leaves the socket's view.
    pub(crate) fn client(&self, req: &Request) -> Option<Client> {
        let peer = req.peer_addr();
        if !self.trusted_peer(req) {
            return None;
        }
        let found = match self.header {
            ProxyHeader::XForwardedFor => self.read_x_forwarded(req),
            ProxyHeader::Forwarded => self.read_forwarded(req),
        };
        match found {
            Ok(client) => client,
            Err(why) => {
                log::debug!(
                    "ignoring the forwarding headers from trusted proxy {}: {why}",
                    peer.ip()
                );
                None
            }
        }
    }

    fn read_x_forwarded(&self, req: &Request) -> Result<Option<Client>, String> {
        let values: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| {
                v.to_str()
                    .map_err(|_| "X-Forwarded-For is not text".to_string())
            })
            .collect::<Result<_, _>>()?;
        let hops: Vec<&str> = values
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let https = match req
            .headers()
            .get_all("x-forwarded-proto")
            .iter()
            .next_back()
        {
            None => req_https(req),
            Some(v) => {
                let v = v.to_str().unwrap_or("");
                let last = v.rsplit(',').next().unwrap_or("").trim();
                scheme_https(last).ok_or_else(|| format!("X-Forwarded-Proto {v:?}"))?
            }
        };
        if values.is_empty() {
            return Ok(Some(Client {
                addr: canonical(req.peer_addr().ip()),
                https,
            }));
        }
        let addrs = hops
            .iter()
            .map(|h| parse_hop(h).ok_or_else(|| format!("X-Forwarded-For entry {h:?}")))
            .collect::<Result<Vec<IpAddr>, String>>()?;
        Ok(Some(Client {
            addr: self.right_most_untrusted(&addrs),
            https,
        }))
    }

    fn read_forwarded(&self, req: &Request) -> Result<Option<Client>, String> {
        let mut elements: Vec<(IpAddr, Option<bool>)> = Vec::new();
        for value in req.headers().get_all("forwarded") {
            let value = value
                .to_str()
                .map_err(|_| "Forwarded is not text".to_string())?;
            for element in value.split(',') {
                let mut addr = None;
                let mut proto = None;
                for pair in element.split(';') {
                    let Some((k, v)) = pair.split_once('=') else {
                        if pair.trim().is_empty() {
                            continue;
                        }
                        return Err(format!("Forwarded pair {pair:?}"));
                    };
                    let v = v.trim().trim_matches('"');
                    match k.trim().to_ascii_lowercase().as_str() {
                        "for" => {
                            addr = Some(parse_hop(v).ok_or_else(|| format!("Forwarded for={v:?}"))?)
                        }
                        "proto" => {
                            proto = Some(
                                scheme_https(v).ok_or_else(|| format!("Forwarded proto={v:?}"))?,
                            )
                        }
                        _ => {}
                    }
                }
                let addr =
                    addr.ok_or_else(|| format!("Forwarded element {element:?} has no for="))?;
                elements.push((addr, proto));
            }
        }
        if elements.is_empty() {
            return Ok(None);
        }
        let addrs: Vec<IpAddr> = elements.iter().map(|e| e.0).collect();
        let client = self.right_most_untrusted(&addrs);
        let i = addrs.iter().rposition(|&a| a == client).unwrap_or(0);
        let https = elements[i]
            .1
            .or_else(|| elements.iter().rev().find_map(|e| e.1))
            .unwrap_or_else(|| req_https(req));
        Ok(Some(Client {
            addr: client,
            https,
        }))
    }

    /// The right-most address that is not a trusted proxy (all trusted:
    /// the left-most).
    fn right_most_untrusted(&self, addrs: &[IpAddr]) -> IpAddr {
        addrs
            .iter()
            .rev()
            .copied()
            .find(|&a| !self.trusted(a))
            .or_else(|| addrs.first().copied())
            .map(canonical)
            .expect("at least one address")
    }
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
    /// ranges (`"10.0.0.0/8"`, `"127.0.0.1"`, `"fd00::/8"`). From such a
    /// peer, [`Request::client_addr`] is the right-most address of the
    /// header ([`proxy_header`](crate::App::proxy_header);
    /// `X-Forwarded-For` by default) that is not itself a trusted proxy,
    /// like nginx's `real_ip_recursive`, and [`Request::scheme`] what the
    /// proxy says; from any other peer the headers are ignored (a client
    /// can send them too). A header that cannot be read falls back to the
    /// socket's address (logged at debug level). Can be called again to
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
    pub fn trusted_proxies<I, S>(mut self, proxies: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for p in proxies {
            if p.as_ref().trim() == "unix:" {
                self.service.proxies.unix = true;
                continue;
            }
            match parse_net(p.as_ref()) {
                Ok(net) => self.service.proxies.add(net),
                Err(e) => panic!("trusted_proxies: {e}"),
            }
        }
        self
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
        for bad in [
            "not-an-ip",
            "1.2.3.4, , 5.6.7.8",
            "1.2.3.4 5.6.7.8",
            "999.1.1.1",
        ] {
            assert_eq!(
                who(&p, "127.0.0.1:9", &[("x-forwarded-for", bad)]),
                ("127.0.0.1".into(), false),
                "{bad:?}"
            );
        }
        assert_eq!(
            who(
                &p,
                "127.0.0.1:9",
                &[
                    ("x-forwarded-for", "1.2.3.4"),
                    ("x-forwarded-proto", "gopher")
                ]
            ),
            ("127.0.0.1".into(), false)
        );
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
        assert_eq!(fwd("proto=https"), ("127.0.0.1".into(), false));
        // X-Forwarded-For is not read in this mode.
        assert_eq!(
            who(&p, "127.0.0.1:9", &[("x-forwarded-for", "203.0.113.7")]),
            ("127.0.0.1".into(), false)
        );
    }
}
