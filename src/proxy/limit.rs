//! Per-client connection limit in front of the proxy.
//!
//! Each connection is bounded in time (a request head within `downstream.header_timeout`,
//! idle keep-alive by `downstream.keepalive_timeout`), but a client that parks thousands of
//! connections is only bounded by the number of connections it may hold. This wrapper
//! caps that per client, so one client cannot use up the process's file descriptors and
//! starve others. A client is an IPv4 address, or an IPv6 network of
//! `downstream.client_ipv6_prefix` bits (a host usually has a whole /64 to pick addresses
//! from). On HTTPS listeners it runs before the TLS handshake (see `tls::Handshake`), so
//! handshakes count too.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use async_trait::async_trait;
use dashmap::DashMap;
use log::debug;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use tokio::io::AsyncWriteExt;

/// What a client over its limit gets before the connection is closed.
const OVER_LIMIT: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nContent-Length: 83\r\nConnection: close\r\n\r\nxipgate: too many connections from this client (downstream.max_client_connections)\n";

pub struct Limited<A> {
    inner: Arc<A>,
    max_per_client: usize,
    ipv6_prefix: u8,
    /// Whether a refused client is told so in plain HTTP (not on a TLS listener, where
    /// the handshake has not happened yet).
    answer: bool,
    open: DashMap<IpAddr, usize>,
}

/// Who a connection counts against: the address itself for IPv4 (and IPv4-mapped IPv6),
/// the network of `ipv6_prefix` bits for IPv6.
pub fn client_key(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u32::from(ipv6_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        },
    }
}

impl<A> Limited<A> {
    /// `answer`: refused clients get a plain-HTTP 429 (false on TLS listeners).
    pub fn new(inner: A, max_per_client: usize, ipv6_prefix: u8, answer: bool) -> Self {
        Limited {
            inner: Arc::new(inner),
            max_per_client,
            ipv6_prefix,
            answer,
            open: DashMap::new(),
        }
    }

    pub fn inner(&self) -> &A {
        &self.inner
    }

    fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<Slot<A>> {
        let ip = client_key(ip, self.ipv6_prefix);
        let mut n = self.open.entry(ip).or_insert(0);
        if *n >= self.max_per_client {
            return None;
        }
        *n += 1;
        Some(Slot {
            owner: self.clone(),
            ip,
        })
    }
}

/// One held connection; gives its place back when dropped.
struct Slot<A> {
    owner: Arc<Limited<A>>,
    ip: IpAddr,
}

impl<A> Drop for Slot<A> {
    fn drop(&mut self) {
        // Remove the entry at zero so the map does not grow with every client ever seen.
        self.owner.open.remove_if_mut(&self.ip, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

#[async_trait]
impl<A> ServerApp for Limited<A>
where
    A: ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let ip = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let _slot = match ip {
            Some(ip) => match self.acquire(ip) {
                Some(slot) => Some(slot),
                None => {
                    debug!("{ip}: over {} connections, refused", self.max_per_client);
                    if self.answer {
                        let _ = stream.write_all(OVER_LIMIT).await;
                    }
                    let _ = stream.shutdown().await;
                    return None;
                }
            },
            None => None,
        };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_addresses_or_ipv6_networks() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("address");
        for (addr, prefix, want) in [
            ("192.0.2.7", 64, "192.0.2.7"),
            ("192.0.2.7", 128, "192.0.2.7"),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64, "2001:db8:1:2::"),
            ("2001:db8:1:2::1", 64, "2001:db8:1:2::"),
            ("2001:db8:1:3::1", 64, "2001:db8:1:3::"),
            ("2001:db8:1:2:aaaa::1", 48, "2001:db8:1::"),
            ("2001:db8:1:2:aaaa::1", 128, "2001:db8:1:2:aaaa::1"),
            ("2001:db8:1:2:aaaa::1", 1, "::"),
            ("::ffff:192.0.2.7", 64, "192.0.2.7"),
            ("::1", 64, "::"),
        ] {
            assert_eq!(
                client_key(ip(addr), prefix),
                ip(want),
                "{addr} with /{prefix}"
            );
        }
    }

    #[test]
    fn addresses_in_one_ipv6_64_share_one_limit() {
        let limited = Arc::new(Limited::new((), 2, 64, true));
        let a = limited.acquire("2001:db8::1".parse().expect("a"));
        let b = limited.acquire("2001:db8::ffff:2".parse().expect("b"));
        assert!(a.is_some() && b.is_some());
        assert!(
            limited.acquire("2001:db8::3".parse().expect("c")).is_none(),
            "a third address in the same /64 is over the limit of 2"
        );
        assert!(limited
            .acquire("2001:db8:0:1::1".parse().expect("d"))
            .is_some());
        drop(a);
        assert!(limited.acquire("2001:db8::3".parse().expect("c")).is_some());
    }
}
