//! The client's address as rules see it: the peer, unless the peer is a trusted proxy;
//! then X-Forwarded-For read right to left, past every trusted proxy, to the first address
//! a trusted proxy did not write itself. Anything left of that is the client's own say.

use std::net::IpAddr;

use ipnet::IpNet;

/// `xff`: every X-Forwarded-For value in the order received (each a comma-separated list).
pub fn client_address<'a>(
    peer: IpAddr,
    xff: impl IntoIterator<Item = &'a [u8]>,
    trusted: &[IpNet],
) -> IpAddr {
    let trusts = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !trusts(&peer) {
        return peer;
    }
    let values: Vec<&[u8]> = xff.into_iter().collect();
    let mut current = peer;
    for value in values.iter().rev() {
        for item in value.rsplit(|&b| b == b',') {
            let text = std::str::from_utf8(item).unwrap_or("").trim();
            let Ok(ip) = text.parse::<IpAddr>() else {
                // Garbage where an address should be: the last trusted hop's peer is all
                // that can be believed.
                return current;
            };
            if !trusts(&ip) {
                return ip;
            }
            current = ip;
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn x_forwarded_for_counts_only_past_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let cases: [(&str, &[&str], &str); 7] = [
            // An untrusted peer: its header is ignored.
            ("203.0.113.9", &["10.1.1.1"], "203.0.113.9"),
            // A trusted peer: the rightmost untrusted address.
            ("10.0.0.2", &["198.51.100.7"], "198.51.100.7"),
            // A client forging a left part is not believed.
            ("10.0.0.2", &["1.2.3.4, 198.51.100.7"], "198.51.100.7"),
            (
                "10.0.0.2",
                &["1.2.3.4", "198.51.100.7, 10.0.0.3"],
                "198.51.100.7",
            ),
            // Only trusted addresses: the leftmost of them.
            ("10.0.0.2", &["10.0.0.3"], "10.0.0.3"),
            // No header: the peer.
            ("10.0.0.2", &[], "10.0.0.2"),
            // Garbage stops the walk at the last believed hop.
            ("10.0.0.2", &["198.51.100.7, junk"], "10.0.0.2"),
        ];
        for (peer, xff, want) in cases {
            let got = client_address(ip(peer), xff.iter().map(|s| s.as_bytes()), &trusted);
            assert_eq!(got, ip(want), "peer {peer}, xff {xff:?}");
        }
    }
}
