//! The fast path's pool sweep, a Pingora background service: while the pool holds any
//! connection, every [`pool::SWEEP_INTERVAL`] it closes the idle upstream connections that
//! cannot be reused (see [`Pool::sweep`]), so sockets a backend closed do not sit in
//! CLOSE_WAIT, and connections to instances that left the routing table do not wait out
//! their idle timeout.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use super::pool::{self, Pool};
use crate::routes::RouteTable;

pub struct PoolSweep {
    pub(super) pool: Arc<Pool>,
    pub(super) table: Arc<RouteTable>,
}

/// The addresses of the table's instances, rebuilt only when the table changed.
struct Known {
    generation: Option<u64>,
    addrs: HashSet<SocketAddr>,
}

impl Known {
    fn refresh(&mut self, table: &RouteTable) {
        let generation = table.generation();
        if self.generation == Some(generation) {
            return;
        }
        self.addrs = table.upstream_addrs();
        self.generation = Some(generation);
    }
}

#[async_trait]
impl BackgroundService for PoolSweep {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut known = Known {
            generation: None,
            addrs: HashSet::new(),
        };
        loop {
            // An empty pool has nothing to sweep: sleep without a timer until a
            // connection goes in, then sweep every interval while any is idle.
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = self.pool.wait_filled() => {}
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(pool::SWEEP_INTERVAL) => {}
            }
            // Emptied meanwhile (every connection checked out again): nothing to sweep,
            // and no reason to rebuild the address set.
            if self.pool.is_empty() {
                continue;
            }
            known.refresh(&self.table);
            // Until the table has loaded, no address has left it.
            let loaded = self.table.is_loaded();
            self.pool
                .sweep(Instant::now(), |a| !loaded || known.addrs.contains(&a));
        }
    }
}
