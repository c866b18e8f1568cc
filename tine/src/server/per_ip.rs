//! Open connections counted by client address, for
//! [`Limits::max_connections_per_ip`](crate::Limits::max_connections_per_ip)
//! (nginx's `limit_conn`).
//!
//! Connections from a Unix-domain socket have no address (their peer is
//! the unspecified `0.0.0.0`, which no TCP peer has): they are not
//! counted. Behind a local proxy every client shares it; limit them in
//! the proxy, or have it send the PROXY protocol: on such a listener a
//! connection is counted under the client its header names, once that is
//! read (and closed unanswered if that client is at its limit), not under
//! the balancer when accepted.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

/// Connections per client address, kept only when a limit is set.
#[derive(Debug)]
pub(crate) struct PerIp {
    limit: usize,
    counts: HashMap<IpAddr, usize>,
}

impl PerIp {
    /// `usize::MAX` means no limit: nothing is counted.
    pub(crate) fn new(limit: usize) -> Self {
        PerIp {
            limit,
            counts: HashMap::new(),
        }
    }

    /// Counts a new connection from `ip`; `false` if that address is at
    /// its limit (the connection is not counted then).
    pub(crate) fn admit(&mut self, ip: IpAddr) -> bool {
        if self.limit == usize::MAX || ip.is_unspecified() {
            return true;
        }
        let count = self.counts.entry(client_key(ip)).or_insert(0);
        if *count >= self.limit {
            return false;
        }
        *count += 1;
        true
    }

    /// Whether no connection is counted (the fuzz target checks that what
    /// a connection counted is released).
    pub(crate) fn is_clear(&self) -> bool {
        self.counts.is_empty()
    }

    /// Uncounts a connection counted by [`admit`](Self::admit).
    pub(crate) fn release(&mut self, ip: IpAddr) {
        if self.limit == usize::MAX || ip.is_unspecified() {
            return;
        }
        let key = client_key(ip);
        if let Some(count) = self.counts.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(&key);
            }
        }
    }
}

/// The address a connection counts against: the address itself for IPv4
/// (also when mapped into IPv6), its /64 network for IPv6 (one host
/// commonly holds a whole /64, so counting single addresses would not
/// limit it).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u64::MAX as u128))),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_keys_group_ipv6_by_64_and_unmap_ipv4() {
        let key = |s: &str| client_key(s.parse().unwrap());
        assert_eq!(key("192.0.2.7"), key("::ffff:192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }

    #[test]
    fn counts_up_to_the_limit_and_frees_slots() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut per_ip = PerIp::new(2);
        assert!(per_ip.admit(ip) && per_ip.admit(ip));
        assert!(!per_ip.admit(ip));
        assert!(per_ip.admit("192.0.2.2".parse().unwrap()));
        per_ip.release(ip);
        assert!(per_ip.admit(ip));
        per_ip.release(ip);
        per_ip.release(ip);
        assert!(
            !per_ip.counts.contains_key(&ip),
            "empty entries are removed"
        );
        let mut off = PerIp::new(usize::MAX);
        assert!((0..1000).all(|_| off.admit(ip)));
        assert!(off.counts.is_empty());
    }

    #[test]
    fn unix_peers_are_not_counted() {
        let unix = crate::server::listener::UNSPECIFIED.ip();
        let mut per_ip = PerIp::new(1);
        assert!((0..10).all(|_| per_ip.admit(unix)));
        per_ip.release(unix);
        assert!(per_ip.counts.is_empty());
    }
}
