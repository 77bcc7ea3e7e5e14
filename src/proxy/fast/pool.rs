//! Idle upstream connections of the fast path: one LRU over all instance addresses,
//! bounded in total like Pingora's own pool (`upstream_keepalive_pool_size` connections
//! across every upstream, not per address).
//!
//! A connection is checked out only when nothing happened on it while it sat idle: no
//! data, no close, no error. Two looks: tokio's cached readiness (free), then the socket
//! itself (`recv` with `MSG_PEEK | MSG_DONTWAIT`), because the cached readiness lags when
//! the reactor has not run since the backend wrote: bytes a backend sent after a bodiless
//! response (HEAD, 204, 304) in a later segment would otherwise be read as the next
//! request's response. (Pingora's pool checks with a `getpeername` per request instead.)
//! The rare close that races a checkout surfaces as an error before any response byte,
//! which the caller retries on a new connection.
//!
//! Nothing idles forever: a `put` first drops the entries past the idle timeout, and
//! [`Pool::sweep`] (run every [`SWEEP_INTERVAL`] by [`super::PoolSweep`]) closes the
//! connections the backend closed or wrote to, the timed-out ones, and those to addresses
//! that left the routing table. Without it a connection the backend closed stays in
//! CLOSE_WAIT until its address is asked for again, which may be never (pod churn).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rustc_hash::FxBuildHasher;
use socket2::SockRef;
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// How often idle connections are checked for a close, age and their address.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

struct Idle {
    conn: TcpStream,
    since: Instant,
    /// Position in the LRU (`Lists::order`).
    seq: u64,
}

#[derive(Default)]
struct Lists {
    /// Per address, oldest first. Fx hashing, not std's SipHash: two lookups a request,
    /// and the keys are instances' addresses in a map bounded by the pool's capacity, so
    /// colliding keys cannot make it slow beyond that bound.
    by_addr: HashMap<SocketAddr, VecDeque<Idle>, FxBuildHasher>,
    /// Every idle connection by when it was put back: the first is the least recently used.
    order: BTreeMap<u64, SocketAddr>,
    next_seq: u64,
}

impl Lists {
    /// Removes the least recently used connection.
    fn pop_oldest(&mut self) -> Option<Idle> {
        let (_, addr) = self.order.pop_first()?;
        let list = self.by_addr.get_mut(&addr)?;
        let idle = list.pop_front();
        if list.is_empty() {
            self.by_addr.remove(&addr);
        }
        idle
    }

    /// Removes the most recently used connection to `addr`.
    fn pop_newest(&mut self, addr: SocketAddr) -> Option<Idle> {
        let list = self.by_addr.get_mut(&addr)?;
        let idle = list.pop_back();
        if list.is_empty() {
            self.by_addr.remove(&addr);
        }
        if let Some(i) = &idle {
            self.order.remove(&i.seq);
        }
        idle
    }

    fn len(&self) -> usize {
        self.order.len()
    }
}

pub struct Pool {
    lists: Mutex<Lists>,
    /// Most idle connections in all.
    capacity: usize,
    idle_timeout: Duration,
    /// Signalled when a connection goes into an empty pool: the sweep sleeps on it
    /// instead of waking every [`SWEEP_INTERVAL`] for nothing (an idle edge stays still).
    filled: Notify,
}

impl Pool {
    pub fn new(capacity: usize, idle_timeout: Duration) -> Self {
        Pool {
            lists: Mutex::new(Lists::default()),
            capacity,
            idle_timeout,
            filled: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lists> {
        self.lists.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fresh(&self, idle: &Idle, now: Instant) -> bool {
        now.saturating_duration_since(idle.since) < self.idle_timeout
    }

    /// An idle connection to `addr` that is still usable, newest first, if any. `now` is
    /// the caller's clock reading (one per request is enough).
    pub fn take(&self, addr: SocketAddr, now: Instant) -> Option<TcpStream> {
        loop {
            let idle = self.lock().pop_newest(addr)?;
            // Checked outside the lock; an unusable one is closed here, and the next tried.
            if self.fresh(&idle, now) && quiet(&idle.conn) && untouched(&idle.conn) {
                return Some(idle.conn);
            }
        }
    }

    /// Gives a connection back after a complete exchange; `since` starts its idle time.
    /// Timed-out entries go first; when the pool is full, the least recently used
    /// connection (to any address) makes room.
    pub fn put(&self, addr: SocketAddr, conn: TcpStream, since: Instant) {
        if self.capacity == 0 {
            return;
        }
        let now = Instant::now();
        let mut closed = Vec::new();
        let was_empty;
        {
            let mut lists = self.lock();
            was_empty = lists.len() == 0;
            while let Some((_, &oldest)) = lists.order.first_key_value() {
                let stale = lists
                    .by_addr
                    .get(&oldest)
                    .and_then(VecDeque::front)
                    .is_none_or(|i| !self.fresh(i, now));
                if !stale && lists.len() < self.capacity {
                    break;
                }
                match lists.pop_oldest() {
                    Some(i) => closed.push(i),
                    None => break,
                }
            }
            let seq = lists.next_seq;
            lists.next_seq += 1;
            lists.order.insert(seq, addr);
            lists
                .by_addr
                .entry(addr)
                .or_default()
                .push_back(Idle { conn, since, seq });
        }
        // Closed outside the lock.
        drop(closed);
        if was_empty {
            self.filled.notify_one();
        }
    }

    /// Returns once the pool holds a connection (at once if it does). No wake-up is lost:
    /// a `put` between the check and the wait leaves a permit behind.
    pub async fn wait_filled(&self) {
        while self.is_empty() {
            self.filled.notified().await;
        }
    }

    /// Closes every idle connection that timed out, that the backend closed or wrote to,
    /// or whose address `keep` no longer wants (it left the routing table). Returns how
    /// many were closed.
    pub fn sweep(&self, now: Instant, keep: impl Fn(SocketAddr) -> bool) -> usize {
        let mut closed = Vec::new();
        {
            let mut lists = self.lock();
            let Lists { by_addr, order, .. } = &mut *lists;
            // One peek per idle connection, under the lock: at most `capacity` syscalls,
            // once per sweep.
            by_addr.retain(|addr, list| {
                let wanted = keep(*addr);
                let mut kept = VecDeque::with_capacity(list.len());
                for i in list.drain(..) {
                    if wanted && self.fresh(&i, now) && untouched(&i.conn) {
                        kept.push_back(i);
                    } else {
                        order.remove(&i.seq);
                        closed.push(i);
                    }
                }
                *list = kept;
                !list.is_empty()
            });
        }
        let n = closed.len();
        // Closed outside the lock.
        drop(closed);
        n
    }

    /// True when no connection is idle (the sweep has nothing to do).
    pub fn is_empty(&self) -> bool {
        self.lock().len() == 0
    }

    /// Idle connections in all.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    pub fn idle_count(&self, addr: SocketAddr) -> usize {
        self.lock().by_addr.get(&addr).map_or(0, VecDeque::len)
    }
}

/// True when the reactor has seen nothing happen on an idle connection: no data, no
/// close, no error. Free, but only as current as the reactor's last turn.
fn quiet(conn: &TcpStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    matches!(conn.poll_read_ready(&mut cx), Poll::Pending)
}

/// True when the socket itself has nothing to read and no close or error pending: a
/// non-blocking peek, which sees what arrived since the reactor last looked.
fn untouched(conn: &TcpStream) -> bool {
    let mut byte = [MaybeUninit::<u8>::uninit()];
    match SockRef::from(conn).recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        // Data nobody asked for (n > 0), or the backend's close (n == 0).
        Ok(_) => false,
    }
}

#[cfg(test)]
mod tests;
