//! Which registered addresses may be proxied to.
//!
//! Anyone inside a cluster can register anything in Eureka (it has no authentication by
//! default), so an address is proxied only when it falls in `upstream.allow`. Link-local
//! ranges (cloud metadata services live at 169.254.169.254) are refused even under a
//! catch-all such as `0.0.0.0/0`; only a listed range inside them opens them.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// Link-local ranges, refused unless a range inside them is listed explicitly.
const LINK_LOCAL: [&str; 2] = ["169.254.0.0/16", "fe80::/10"];

#[derive(Debug, Clone)]
pub struct Allowlist {
    allow: Vec<IpNet>,
    link_local: Vec<IpNet>,
}

/// Why an address is not proxied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotAllowed(IpAddr),
    LinkLocal(IpAddr),
    Unroutable(IpAddr),
    NotAnIp(String),
    NoPort,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotAllowed(ip) => write!(f, "address {ip} is outside upstream.allow"),
            Refusal::LinkLocal(ip) => write!(
                f,
                "address {ip} is link-local (cloud metadata range); list a range inside it in upstream.allow to open it"
            ),
            Refusal::Unroutable(ip) => write!(f, "address {ip} is unspecified, broadcast or multicast"),
            Refusal::NotAnIp(s) => write!(f, "ipAddr '{}' is not an IP address", crate::names::printable(s)),
            Refusal::NoPort => write!(f, "the instance has no enabled port"),
        }
    }
}

impl Allowlist {
    pub fn new(allow: Vec<IpNet>) -> Self {
        let link_local = LINK_LOCAL
            .iter()
            .map(|s| s.parse().expect("constant CIDRs parse"))
            .collect();
        Allowlist { allow, link_local }
    }

    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        let ip = canonical(ip);
        let unroutable = match ip {
            IpAddr::V4(v4) => v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast(),
            IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
        };
        if unroutable {
            return Err(Refusal::Unroutable(ip));
        }
        if let Some(ll) = self.link_local.iter().find(|n| n.contains(&ip)) {
            // Only a listed range that lies inside the link-local range opens it.
            let opened = self
                .allow
                .iter()
                .any(|n| n.contains(&ip) && n.prefix_len() >= ll.prefix_len() && ll.contains(n));
            return if opened {
                Ok(())
            } else {
                Err(Refusal::LinkLocal(ip))
            };
        }
        if self.allow.iter().any(|n| n.contains(&ip)) {
            Ok(())
        } else {
            Err(Refusal::NotAllowed(ip))
        }
    }
}

/// `::ffff:10.0.0.1` is 10.0.0.1: check mapped addresses as the IPv4 they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(nets: &[&str]) -> Allowlist {
        Allowlist::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    #[test]
    fn allowlist_table() {
        let private = list(&["10.0.0.0/8", "127.0.0.0/8", "fc00::/7"]);
        let all = list(&["0.0.0.0/0", "::/0"]);
        let opened = list(&["10.0.0.0/8", "169.254.10.0/24"]);
        for (l, ip, ok) in [
            (&private, "10.1.2.3", true),
            (&private, "127.0.0.1", true),
            (&private, "::ffff:10.1.2.3", true),
            (&private, "8.8.8.8", false),
            (&private, "fd00::1", true),
            (&all, "8.8.8.8", true),
            (&all, "169.254.169.254", false),
            (&all, "fe80::1", false),
            (&all, "0.0.0.0", false),
            (&all, "224.0.0.1", false),
            (&opened, "169.254.10.5", true),
            (&opened, "169.254.169.254", false),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(l.check(ip).is_ok(), ok, "{ip} with {:?}", l.allow);
        }
    }
}
