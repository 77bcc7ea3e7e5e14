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

impl Refusal {
    /// The reason in a few words, as docs/names-and-routing.md's routing table lists it (a
    /// unit test below keeps that table's 403 row equal to this list).
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NotAllowed(_) => "outside upstream.allow",
            Refusal::LinkLocal(_) => "link-local",
            Refusal::Unroutable(_) => "unspecified, broadcast or multicast",
            Refusal::NotAnIp(_) => "not an IP address",
            Refusal::NoPort => "no enabled port",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = self.reason();
        match self {
            Refusal::NotAllowed(ip) => write!(f, "address {ip} is {reason}"),
            Refusal::LinkLocal(ip) => write!(
                f,
                "address {ip} is {reason} (cloud metadata range); list a range inside it in upstream.allow to open it"
            ),
            Refusal::Unroutable(ip) => write!(f, "address {ip} is {reason}"),
            Refusal::NotAnIp(s) => write!(f, "ipAddr '{}' is {reason}", crate::names::printable(s)),
            Refusal::NoPort => write!(f, "the instance has {reason}"),
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

    /// One refusal of every kind; the match has no wildcard, so a new kind must be added here
    /// (and then to the docs).
    fn every_refusal() -> Vec<Refusal> {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let all = [
            Refusal::NotAllowed(ip),
            Refusal::LinkLocal(ip),
            Refusal::Unroutable(ip),
            Refusal::NotAnIp(String::new()),
            Refusal::NoPort,
        ];
        for r in &all {
            match r {
                Refusal::NotAllowed(_)
                | Refusal::LinkLocal(_)
                | Refusal::Unroutable(_)
                | Refusal::NotAnIp(_)
                | Refusal::NoPort => {}
            }
        }
        all.to_vec()
    }

    #[test]
    fn every_message_carries_its_reason() {
        for r in every_refusal() {
            assert!(r.to_string().contains(r.reason()), "{r}");
        }
    }

    /// docs/names-and-routing.md's 403 row lists exactly the reasons the code refuses for
    /// (a page once promised a 403 for instances with only a TLS port, which are proxied).
    #[test]
    fn the_docs_403_row_is_the_list_of_refusals() {
        let doc = include_str!("../../docs/names-and-routing.md");
        let row = doc
            .lines()
            .find(|l| l.starts_with("| instance address ") && l.contains("**403**"))
            .expect("docs/names-and-routing.md has the 403 row of the routing table");
        let cell = row.trim_start_matches("| instance address ");
        let cell = &cell[..cell.find(" |").expect("a table cell")];
        let documented: std::collections::BTreeSet<String> = cell
            .split(';')
            .map(|r| r.trim().trim_start_matches("or ").replace('`', ""))
            .collect();
        let code: std::collections::BTreeSet<String> = every_refusal()
            .iter()
            .map(|r| r.reason().to_string())
            .collect();
        assert_eq!(documented, code, "the 403 row of docs/names-and-routing.md");
    }
}
