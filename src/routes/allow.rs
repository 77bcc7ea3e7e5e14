//! Which registered addresses may be proxied to.
//!
//! Anyone inside a cluster can register anything in Eureka (it has no authentication by
//! default), so an address is proxied only when it falls in `upstream.allow`. Link-local
//! ranges (cloud metadata services live at 169.254.169.254) are refused even under a
//! catch-all such as `0.0.0.0/0`; only a listed range inside them opens them.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// Link-local ranges, refused unless a range inside them is listed explicitly.
const LINK_LOCAL: [&str; 2] = ["169.254.0.0/16", "fe80::/10"];

#[derive(Debug, Clone)]
pub struct Allowlist {
    allow: Vec<IpNet>,
    link_local: Vec<IpNet>,
    own: OwnListeners,
}

/// The edge's own listeners (proxy, HTTPS, console, DNS) and the addresses it is known by
/// (its `edge_ip`s; loopback always): an instance there would be the edge itself.
#[derive(Debug, Clone, Default)]
pub struct OwnListeners {
    pub listeners: Vec<SocketAddr>,
    pub addresses: Vec<IpAddr>,
}

impl OwnListeners {
    /// Whether `addr` reaches one of the listeners: the same address and port, or the
    /// same port on an address of the edge's when the listener takes every address
    /// (`0.0.0.0`, `::`).
    pub fn contains(&self, addr: SocketAddr) -> bool {
        let ip = canonical(addr.ip());
        let own_ip = ip.is_loopback()
            || ip.is_unspecified()
            || self.addresses.iter().any(|a| canonical(*a) == ip)
            || self.listeners.iter().any(|l| canonical(l.ip()) == ip);
        self.listeners.iter().any(|l| {
            l.port() == addr.port()
                && (canonical(l.ip()) == ip || (l.ip().is_unspecified() && own_ip))
        })
    }
}

/// Why an address is not proxied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotAllowed(IpAddr),
    LinkLocal(IpAddr),
    Unroutable(IpAddr),
    NotAnIp(String),
    NoPort,
    OwnListener(SocketAddr),
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
            Refusal::OwnListener(_) => "one of the edge's own listeners",
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
            Refusal::OwnListener(addr) => write!(
                f,
                "address {addr} is {reason} (a request there would come back to the edge)"
            ),
        }
    }
}

impl Allowlist {
    pub fn new(allow: Vec<IpNet>) -> Self {
        let link_local = LINK_LOCAL
            .iter()
            .map(|s| s.parse().expect("constant CIDRs parse"))
            .collect();
        Allowlist {
            allow,
            link_local,
            own: OwnListeners::default(),
        }
    }

    /// The same list, refusing the edge's own listeners too ([`Allowlist::check_upstream`]).
    pub fn with_own(mut self, own: OwnListeners) -> Self {
        self.own = own;
        self
    }

    /// The address an instance is reached at: its IP allowed ([`Allowlist::check`]) and
    /// not one of the edge's own listeners.
    pub fn check_upstream(&self, addr: SocketAddr) -> Result<(), Refusal> {
        self.check(addr.ip())?;
        if self.own.contains(addr) {
            return Err(Refusal::OwnListener(addr));
        }
        Ok(())
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
            Refusal::OwnListener("10.0.0.1:8080".parse().unwrap()),
        ];
        for r in &all {
            match r {
                Refusal::NotAllowed(_)
                | Refusal::LinkLocal(_)
                | Refusal::Unroutable(_)
                | Refusal::NotAnIp(_)
                | Refusal::NoPort
                | Refusal::OwnListener(_) => {}
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

    #[test]
    fn the_edges_own_listeners_are_refused() {
        let own = OwnListeners {
            listeners: [
                "0.0.0.0:8080",
                "127.0.0.1:9080",
                "10.0.0.5:8443",
                "[::]:5353",
            ]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect(),
            addresses: vec!["10.9.9.9".parse().unwrap()],
        };
        let l = list(&["10.0.0.0/8", "127.0.0.0/8", "fc00::/7"]).with_own(own);
        for (addr, refused) in [
            ("127.0.0.1:9080", true),          // the console's own address
            ("[::ffff:127.0.0.1]:9080", true), // the same, IPv4-mapped
            ("127.0.0.2:9080", false),         // loopback, but not where the console listens
            ("127.0.0.1:8080", true),          // the wildcard proxy listener, on loopback
            ("127.8.8.8:8080", true),          // any loopback address reaches a wildcard listener
            ("10.9.9.9:8080", true),           // an edge_ip
            ("10.0.0.5:8080", true),           // the HTTPS listener's address is the edge's
            ("10.0.0.5:8443", true),           // the HTTPS listener itself
            ("10.0.0.6:8443", false),          // another host's port 8443
            ("10.1.2.3:8080", false),          // another host's port 8080
            ("10.9.9.9:5353", true),           // the DNS listener on `::` takes IPv4 too
            ("127.0.0.1:8081", false),         // a loopback port the edge does not listen on
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let got = l.check_upstream(addr);
            assert_eq!(
                got == Err(Refusal::OwnListener(addr)),
                refused,
                "{addr}: {got:?}"
            );
            if !refused {
                assert_eq!(got, Ok(()), "{addr}");
            }
        }
        // Outside upstream.allow is said first.
        let addr: SocketAddr = "8.8.8.8:8080".parse().unwrap();
        assert!(matches!(
            l.check_upstream(addr),
            Err(Refusal::NotAllowed(_))
        ));
        assert!(Refusal::OwnListener("127.0.0.1:9080".parse().unwrap())
            .to_string()
            .contains("own listener"));
    }
}
