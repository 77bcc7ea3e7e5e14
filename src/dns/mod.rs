//! The built-in wildcard DNS server: authoritative for its own zone(s), it answers every
//! name under them with the address the name encodes, or with the edge's IPs.
//!
//! Rules (anchored at the zone; names compared case-insensitively, answers echo the
//! query name as asked):
//!
//! * `<anything>.<a>.<b>.<c>.<d>.<zone>` and `<anything>.<a-b-c-d>.<zone>` (and the bare
//!   `<a>.<b>.<c>.<d>.<zone>`, `<a-b-c-d>.<zone>`) → `A a.b.c.d`. Only the four labels
//!   (dotted) or the one label (dashed) right before the zone count. Octets are decimal
//!   0-255 without leading zeros (`0` is fine; `01`, `010` are not addresses).
//! * `<anything>.<dashed-ipv6>.<zone>` in sslip.io's form (`--1` = ::1,
//!   `2001-db8--1` = 2001:db8::1) → `AAAA`.
//! * An address name asked for the other family → NODATA (NOERROR, no answer, SOA in the
//!   authority section).
//! * Every other name under the zone, the apex and `ns.<zone>` → the edge IPs (A for the
//!   IPv4 ones, AAAA for the IPv6 ones).
//! * The apex also has `SOA` (`ns.<zone> hostmaster.<zone> 1 3600 600 1209600 <ttl>`) and
//!   `NS ns.<zone>`; TXT → the values a [`TxtRecords`] holds for the name (ACME
//!   challenges), other types (MX, ...) → NODATA. `ANY` → one synthesized
//!   `HINFO "RFC8482" ""` (RFC 8482), never every record the name has: at the apex that
//!   answer was ~5x the query's size, an amplifier over UDP. AXFR/IXFR → REFUSED.
//! * Over TCP, each client address may hold at most [`TCP_PER_CLIENT`] connections (and
//!   all clients together [`TCP_MAX`]); a connection beyond that is closed at once.
//! * Names under no zone, and classes other than IN → REFUSED; no or several questions,
//!   undecodable messages → FORMERR; opcodes other than QUERY → NOTIMP; EDNS version > 0
//!   → BADVERS. In-zone answers have AA set. NXDOMAIN is never returned.

use std::net::{IpAddr, SocketAddr};

mod answer;
mod labels;
#[cfg(test)]
mod more_tests;
mod server;
mod tcp;
#[cfg(test)]
mod tests;

pub use answer::{
    answer, answer_with, reply, Reply, ANY_HINFO_CPU, EDNS_PAYLOAD, NS_LABEL, TXT_TTL,
};
pub use labels::{classify, Classified, Target};
pub use server::{bind, serve, TCP_TIMEOUT};
pub use tcp::{TCP_MAX, TCP_PER_CLIENT};

/// TXT records the server answers besides its synthetic ones: the ACME DNS-01 challenge
/// values (`_acme-challenge.<domain>`), kept where every replica can read them.
pub trait TxtRecords: Send + Sync {
    /// The values for `name` (lower-case, no trailing dot); usually none.
    fn txt(&self, name: &str) -> Vec<String>;
}

/// No TXT records.
pub struct NoTxt;

impl TxtRecords for NoTxt {
    fn txt(&self, _name: &str) -> Vec<String> {
        Vec::new()
    }
}

/// Configuration of the DNS server (the `xipgate.dns` section, resolved).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// Addresses to serve on, UDP and TCP on each.
    pub listen: Vec<SocketAddr>,
    /// Zones served, lower-case, no trailing dot, e.g. `sslip.io`.
    pub zones: Vec<String>,
    /// A and/or AAAA answers for names that encode no address.
    pub edge_ips: Vec<IpAddr>,
    /// TTL of every record, and the SOA minimum (negative-caching TTL).
    pub ttl: u32,
}

/// Errors of the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("dns: invalid config: {0}")]
    Config(String),
    #[error("dns: cannot bind {proto} {addr}: {source}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("dns: no socket to serve on")]
    NoSockets,
    #[error("dns: server failed: {0}")]
    Server(String),
}

impl DnsConfig {
    /// Checks the zones: at least one, each a non-empty valid DNS name.
    pub fn validate(&self) -> Result<(), DnsError> {
        if self.zones.is_empty() {
            return Err(DnsError::Config("dns.zones is empty".into()));
        }
        for z in &self.zones {
            let bare = z.strip_suffix('.').unwrap_or(z);
            if bare.is_empty() {
                return Err(DnsError::Config(
                    "dns.zones: the root zone cannot be served".into(),
                ));
            }
            if bare.split('.').any(|l| l.is_empty() || l.len() > 63) || bare.len() > 253 {
                return Err(DnsError::Config(format!(
                    "dns.zones: '{z}' is not a DNS name"
                )));
            }
            if hickory_proto::rr::Name::from_ascii(bare).is_err() {
                return Err(DnsError::Config(format!(
                    "dns.zones: '{z}' is not a DNS name"
                )));
            }
        }
        Ok(())
    }
}

/// Zones to serve when the config names none, from the proxy's domains: a first label
/// that is a dashed IPv4 (`10-0-0-5.sslip.io`) or a leading dotted IPv4
/// (`10.0.0.5.nip.io`) is dropped, a plain domain is its own zone. Duplicates and zones
/// under another listed zone are removed. `None` when that is not obvious: no domains, a
/// domain that is only an address, an empty label, or a parent that would be a top-level
/// domain (`10-0-0-5.io` → `io`).
pub fn default_zones(domains: &[String]) -> Option<Vec<String>> {
    if domains.is_empty() {
        return None;
    }
    let mut zones: Vec<String> = Vec::new();
    for d in domains {
        let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
        let labels: Vec<&str> = d.split('.').collect();
        if d.is_empty() || labels.iter().any(|l| l.is_empty() || l.len() > 63) {
            return None;
        }
        let dotted = labels.len() >= 4
            && labels[..4]
                .iter()
                .all(|l| labels::octet(l.as_bytes()).is_some());
        let keep = if dotted {
            &labels[4..]
        } else if labels::dashed_ipv4(labels[0].as_bytes()).is_some() {
            &labels[1..]
        } else {
            &labels[..]
        };
        if keep.is_empty() || (keep.len() < labels.len() && keep.len() < 2) {
            return None;
        }
        zones.push(keep.join("."));
    }
    zones.sort();
    zones.dedup();
    let covered = |z: &str, others: &[String]| {
        others
            .iter()
            .any(|o| o != z && z.ends_with(&format!(".{o}")))
    };
    let all = zones.clone();
    zones.retain(|z| !covered(z, &all));
    Some(zones)
}
