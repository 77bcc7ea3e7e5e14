//! Reading a query name: which zone it is under, and which address (if any) the labels
//! right before that zone encode. Pure functions over label bytes, no allocation on the
//! hot path.
//!
//! The rules are anchored at the zone: only the label (dashed forms) or the four labels
//! (dotted form) directly before the zone are looked at. Anything further left is free
//! text (service and instance names), so `pod-10-0-0-7.10-0-0-5.<zone>` is 10.0.0.5 and
//! never 10.0.0.7.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;

/// What a name under a zone stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The name encodes this IPv4 address (dashed or dotted form before the zone).
    V4(Ipv4Addr),
    /// The name encodes this IPv6 address (sslip.io's dashed form before the zone).
    V6(Ipv6Addr),
    /// The name encodes no address: it stands for the edge (the apex, `ns.<zone>`, every
    /// service and instance name).
    Edge,
}

/// Where a query name falls in the configured zones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified {
    /// Index into `DnsConfig::zones` of the zone the name is under (the longest match).
    pub zone: usize,
    /// Number of labels of that zone (to cut the zone's own name from the query name).
    pub zone_labels: usize,
    /// The name is the zone apex itself.
    pub apex: bool,
    /// What the name resolves to.
    pub target: Target,
}

/// Splits a configured zone into its labels, ignoring a trailing dot; `None` for an empty
/// zone (the root), which is never served.
fn zone_labels(zone: &str) -> Option<impl DoubleEndedIterator<Item = &[u8]>> {
    let zone = zone.strip_suffix('.').unwrap_or(zone);
    (!zone.is_empty()).then(|| zone.split('.').map(str::as_bytes))
}

/// Number of labels of `zone` when `labels` (the query name's labels, left to right) ends
/// with it, compared ASCII case-insensitively.
fn suffix_match(labels: &[&[u8]], zone: &str) -> Option<usize> {
    let mut n = 0;
    let mut name_rev = labels.iter().rev();
    for zl in zone_labels(zone)?.rev() {
        let nl = name_rev.next()?;
        if !nl.eq_ignore_ascii_case(zl) {
            return None;
        }
        n += 1;
    }
    Some(n)
}

/// Classifies `name` against `zones`: `None` when it is under none of them.
pub fn classify(zones: &[String], name: &Name) -> Option<Classified> {
    // A name has at most 127 labels; collect them once (left to right, root excluded).
    let labels: Vec<&[u8]> = name.iter().collect();
    let (zone, zone_len) = zones
        .iter()
        .enumerate()
        .filter_map(|(i, z)| suffix_match(&labels, z).map(|n| (i, n)))
        .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))?;
    let rest = &labels[..labels.len() - zone_len];
    Some(Classified {
        zone,
        zone_labels: zone_len,
        apex: rest.is_empty(),
        target: target_of(rest),
    })
}

/// What the labels before the zone (`rest`, left to right) stand for.
pub fn target_of(rest: &[&[u8]]) -> Target {
    if rest.len() >= 4 {
        let d = &rest[rest.len() - 4..];
        if let (Some(a), Some(b), Some(c), Some(e)) =
            (octet(d[0]), octet(d[1]), octet(d[2]), octet(d[3]))
        {
            return Target::V4(Ipv4Addr::new(a, b, c, e));
        }
    }
    match rest.last() {
        Some(last) => {
            if let Some(ip) = dashed_ipv4(last) {
                Target::V4(ip)
            } else if let Some(ip) = dashed_ipv6(last) {
                Target::V6(ip)
            } else {
                Target::Edge
            }
        }
        None => Target::Edge,
    }
}

/// A decimal octet: 1-3 ASCII digits, value 0-255, no leading zero (`0` itself is fine;
/// `00`, `01`, `010` are not addresses, so a name has one spelling per address and no
/// octal reading like inet_aton's is possible).
pub fn octet(label: &[u8]) -> Option<u8> {
    if label.is_empty() || label.len() > 3 || !label.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if label.len() > 1 && label[0] == b'0' {
        return None;
    }
    let v = label
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    u8::try_from(v).ok()
}

/// `a-b-c-d` exactly (four octets joined by single dashes, nothing before or after).
pub fn dashed_ipv4(label: &[u8]) -> Option<Ipv4Addr> {
    let mut parts = label.split(|&b| b == b'-');
    let mut o = [0u8; 4];
    for slot in &mut o {
        *slot = octet(parts.next()?)?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(o))
}

/// sslip.io's dashed IPv6: the address with `:` written as `-` (`--1` = ::1,
/// `2001-db8--1` = 2001:db8::1, `fe80--1` = fe80::1). Hex digits in either case. A label
/// made only of hex groups and dashes that happens to spell a full address (eight groups,
/// or a `--`) is read as one, as sslip.io does.
pub fn dashed_ipv6(label: &[u8]) -> Option<Ipv6Addr> {
    // The longest text form of an IPv6 address without embedded IPv4 is 39 characters.
    if label.len() < 2 || label.len() > 39 || !label.contains(&b'-') {
        return None;
    }
    if !label.iter().all(|b| b.is_ascii_hexdigit() || *b == b'-') {
        return None;
    }
    let mut buf = [0u8; 39];
    for (dst, &src) in buf.iter_mut().zip(label) {
        *dst = if src == b'-' { b':' } else { src };
    }
    // All bytes are ASCII hex digits or ':', so this is valid UTF-8.
    let text = std::str::from_utf8(&buf[..label.len()]).ok()?;
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(rest: &str) -> Target {
        let labels: Vec<&[u8]> = if rest.is_empty() {
            vec![]
        } else {
            rest.split('.').map(str::as_bytes).collect()
        };
        target_of(&labels)
    }

    #[test]
    fn octets() {
        for (s, want) in [
            ("0", Some(0)),
            ("7", Some(7)),
            ("10", Some(10)),
            ("255", Some(255)),
            ("256", None),
            ("999", None),
            ("00", None),
            ("01", None),
            ("010", None),
            ("1000", None),
            ("", None),
            ("+1", None),
            ("1a", None),
        ] {
            assert_eq!(octet(s.as_bytes()), want, "{s:?}");
        }
    }

    #[test]
    fn targets() {
        use Target::*;
        let v4 = |s: &str| V4(s.parse().unwrap());
        let v6 = |s: &str| V6(s.parse().unwrap());
        for (rest, want) in [
            ("", Edge),
            ("10-0-0-5", v4("10.0.0.5")),
            ("10.0.0.5", v4("10.0.0.5")),
            ("order-service.10-0-0-5", v4("10.0.0.5")),
            ("order-service-0.10.0.0.5", v4("10.0.0.5")),
            ("pod-10-0-0-7.10-0-0-5", v4("10.0.0.5")),
            ("10-0-0-7-8080", Edge),
            ("x.10-0-0-7-8080", Edge),
            ("www-10-0-0-7", Edge),
            ("x.999.1.1.1", Edge),
            ("0.5", Edge),
            ("1.2.3", Edge),
            ("1.2.3.4.5", v4("2.3.4.5")),
            ("1-2-3-4.5.6.7.8", v4("5.6.7.8")),
            ("1.2.3.4.5-6-7-8", v4("5.6.7.8")),
            ("10-0-0-05", Edge),
            ("10.0.0.05", Edge),
            ("255-255-255-255", v4("255.255.255.255")),
            ("--1", v6("::1")),
            ("2001-db8--1", v6("2001:db8::1")),
            ("2001-DB8--1", v6("2001:db8::1")),
            ("app.fe80--1", v6("fe80::1")),
            ("1-2-3-4-5-6-7-8", v6("1:2:3:4:5:6:7:8")),
            ("--", v6("::")),
            ("order-service", Edge),
            ("bad-cafe", Edge),
            ("-", Edge),
            ("---1", Edge),
            ("ns", Edge),
            ("*", Edge),
        ] {
            assert_eq!(t(rest), want, "{rest:?}");
        }
    }

    #[test]
    fn zones_longest_match_and_case() {
        let zones = vec!["sslip.io".to_string(), "lab.sslip.io".to_string()];
        let c = |n: &str| classify(&zones, &Name::from_ascii(n).unwrap());
        assert_eq!(c("a.lab.sslip.io.").unwrap().zone, 1);
        assert_eq!(c("a.LAB.SSLIP.IO").unwrap().zone, 1);
        assert_eq!(c("a.lab2.sslip.io").unwrap().zone, 0);
        assert!(c("lab.sslip.io").unwrap().apex);
        assert!(c("sslip.io").unwrap().apex);
        assert!(c("io").is_none());
        assert!(c("xsslip.io").is_none());
        assert!(c("example.com").is_none());
        assert!(c(".").is_none());
    }
}
