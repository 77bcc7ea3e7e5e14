//! Per-client connection limit in front of the proxy.
//!
//! Pingora gives every connection a cheap task and bounds each read (request headers at
//! 1 MiB, 60 s per read; idle keep-alive by `downstream.keepalive_timeout`), but a client
//! that trickles bytes (slowloris) or parks thousands of idle connections is only bounded
//! by the number of connections it may hold. This wrapper caps that per client address,
//! so one client cannot use up the process's file descriptors and starve others.

use std::net::IpAddr;
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
    open: DashMap<IpAddr, usize>,
}

impl<A> Limited<A> {
    pub fn new(inner: A, max_per_client: usize) -> Self {
        Limited {
            inner: Arc::new(inner),
            max_per_client,
            open: DashMap::new(),
        }
    }

    pub fn inner(&self) -> &A {
        &self.inner
    }

    fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<Slot<A>> {
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
                    let _ = stream.write_all(OVER_LIMIT).await;
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
