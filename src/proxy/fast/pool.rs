//! Idle upstream connections of the fast path, per instance address.
//!
//! A connection is checked out without a syscall: tokio's reactor already knows whether
//! the socket became readable while it sat idle, which for an idle HTTP/1.1 connection
//! means the backend closed it (or sent something unasked): such a connection is dropped.
//! (Pingora's pool checks with a `getpeername` per request instead.) The rare close that
//! races a checkout surfaces as an error before any response byte, which the caller
//! retries on a new connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

struct Idle {
    conn: TcpStream,
    since: Instant,
}

pub struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
    max_per_addr: usize,
    idle_timeout: Duration,
}

impl Pool {
    pub fn new(max_per_addr: usize, idle_timeout: Duration) -> Self {
        Pool {
            idle: Mutex::new(HashMap::new()),
            max_per_addr,
            idle_timeout,
        }
    }

    /// An idle connection to `addr` that is still usable, if any. `now` is the caller's
    /// clock reading (one per request is enough).
    pub fn take(&self, addr: SocketAddr, now: Instant) -> Option<TcpStream> {
        let mut stale = Vec::new();
        let found = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            let list = idle.get_mut(&addr)?;
            let mut found = None;
            while let Some(c) = list.pop() {
                if now.saturating_duration_since(c.since) < self.idle_timeout && quiet(&c.conn) {
                    found = Some(c.conn);
                    break;
                }
                stale.push(c);
            }
            if list.is_empty() {
                idle.remove(&addr);
            }
            found
        };
        // Closed outside the lock.
        drop(stale);
        found
    }

    /// Gives a connection back after a complete exchange; `since` starts its idle time.
    pub fn put(&self, addr: SocketAddr, conn: TcpStream, since: Instant) {
        if self.max_per_addr == 0 {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(addr).or_default();
        if list.len() >= self.max_per_addr {
            // Keep the newest: the oldest is the likeliest to be closed by the backend.
            list.remove(0);
        }
        list.push(Idle { conn, since });
    }

    #[cfg(test)]
    pub fn idle_count(&self, addr: SocketAddr) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.get(&addr).map_or(0, Vec::len)
    }
}

/// True when nothing happened on an idle connection: no data, no close, no error.
fn quiet(conn: &TcpStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    matches!(conn.poll_read_ready(&mut cx), Poll::Pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn a_connection_the_backend_closed_is_not_handed_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let pool = Pool::new(4, Duration::from_secs(60));

        let client = TcpStream::connect(addr).await.expect("connect");
        let (server_side, _) = listener.accept().await.expect("accept");
        pool.put(addr, client, Instant::now());
        assert_eq!(pool.idle_count(addr), 1);
        // Still open: handed out, and back.
        let c = pool
            .take(addr, Instant::now())
            .expect("an open idle connection is reused");
        pool.put(addr, c, Instant::now());

        drop(server_side);
        // Let the reactor see the FIN.
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let mut cx = Context::from_waker(Waker::noop());
            let idle = pool.idle.lock().expect("lock");
            if idle[&addr][0].conn.poll_read_ready(&mut cx).is_ready() {
                break;
            }
        }
        assert!(
            pool.take(addr, Instant::now()).is_none(),
            "a closed connection was reused"
        );
        assert_eq!(pool.idle_count(addr), 0);
    }

    #[tokio::test]
    async fn unasked_data_and_age_retire_a_connection_and_the_size_is_bounded() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let pool = Pool::new(2, Duration::from_millis(50));
        let mut servers = Vec::new();
        for _ in 0..3 {
            let c = TcpStream::connect(addr).await.expect("connect");
            servers.push(listener.accept().await.expect("accept").0);
            pool.put(addr, c, Instant::now());
        }
        assert_eq!(pool.idle_count(addr), 2, "bounded by max_per_addr");
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(
            pool.take(addr, Instant::now()).is_none(),
            "idle past the timeout"
        );

        let pool = Pool::new(2, Duration::from_secs(60));
        let c = TcpStream::connect(addr).await.expect("connect");
        let mut s = listener.accept().await.expect("accept").0;
        pool.put(addr, c, Instant::now());
        s.write_all(b"HTTP/1.1 200 OK\r\n\r\n")
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            pool.take(addr, Instant::now()).is_none(),
            "a connection with unasked data"
        );
    }
}
