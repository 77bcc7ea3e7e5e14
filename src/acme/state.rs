//! What the console and `/api/v1/tls` show of ACME: each domain's orders and the order
//! lock as last seen, and the store's own health.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::store::{unix, HeldBy, LockHolder, Store};

/// One domain's state, for the console and the API.
#[derive(Debug, Clone, Serialize, Default)]
pub struct DomainStatus {
    pub domain: String,
    /// Unix seconds of the last order placed by this replica.
    pub last_order: Option<u64>,
    pub last_error: Option<String>,
    pub orders_ok: u64,
    pub orders_failed: u64,
    /// Unix seconds when the certificate is due for renewal.
    pub renew_at: Option<u64>,
    /// Who held the store's order lock when this replica last looked (itself while it
    /// orders); `None` when it was free.
    pub lock: Option<LockStatus>,
}

/// The order lock as seen at a check.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LockStatus {
    /// Host name and process id of the holder, or `unknown` if it has not written them.
    pub holder: String,
    /// Unix seconds when it took the lock.
    pub since: Option<u64>,
    pub age_seconds: Option<u64>,
    /// Unix seconds when the lock frees itself unless its holder renews it (a Lease);
    /// absent for the directory store's flock, which only its holder's end frees.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub free_at: Option<u64>,
}

impl LockStatus {
    pub fn of(holder: Option<&LockHolder>, now: u64) -> Self {
        LockStatus {
            holder: holder.map_or_else(|| "unknown".into(), |h| h.holder.clone()),
            since: holder.map(|h| h.since),
            age_seconds: holder.map(|h| now.saturating_sub(h.since)),
            free_at: None,
        }
    }

    pub fn held(by: &HeldBy, now: u64) -> Self {
        LockStatus {
            free_at: by.free_at.map(unix),
            ..LockStatus::of(by.holder.as_ref(), now)
        }
    }
}

/// Whether a lock held for `age` outlived every order its holder could be running: its
/// process is stuck (the kernel frees a dead process's lock; a Lease expires).
pub fn lock_stuck(age: Duration, order_timeout: Duration, check_interval: Duration) -> bool {
    age > order_timeout + check_interval
}

/// The store as this replica sees it.
#[derive(Debug, Clone, Serialize, Default)]
pub struct StoreStatus {
    /// `directory` or `kubernetes`.
    pub kind: &'static str,
    /// The directory, or the namespace and the objects in it.
    pub at: String,
    /// Why the store could not be followed when last tried (pending challenge values and
    /// certificates other replicas store reach this replica late until it clears).
    pub last_error: Option<String>,
    /// Unix seconds of that error.
    pub last_error_at: Option<u64>,
    /// Writes that met another writer (HTTP 409) and were retried from a fresh read.
    pub conflicts: u64,
}

/// What every part reads about ACME.
pub struct AcmeState {
    domains: Mutex<BTreeMap<String, DomainStatus>>,
    status: Mutex<StoreStatus>,
    /// Asked for its counters when shown.
    store: Arc<dyn Store>,
}

impl AcmeState {
    pub fn new(kind: &'static str, store: Arc<dyn Store>) -> Self {
        AcmeState {
            domains: Mutex::default(),
            status: Mutex::new(StoreStatus {
                kind,
                at: store.describe(),
                ..StoreStatus::default()
            }),
            store,
        }
    }

    pub fn snapshot(&self) -> Vec<DomainStatus> {
        self.lock().values().cloned().collect()
    }

    pub fn store_status(&self) -> StoreStatus {
        StoreStatus {
            conflicts: self.store.conflicts(),
            ..self
                .status
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        }
    }

    /// The store was followed without error.
    pub fn store_ok(&self) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.last_error = None;
        s.last_error_at = None;
    }

    pub fn store_failed(&self, error: String) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.last_error = Some(error);
        s.last_error_at = Some(unix(SystemTime::now()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, DomainStatus>> {
        self.domains.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn update(&self, domain: &str, f: impl FnOnce(&mut DomainStatus)) {
        let mut all = self.lock();
        let d = all
            .entry(domain.to_string())
            .or_insert_with(|| DomainStatus {
                domain: domain.to_string(),
                ..DomainStatus::default()
            });
        f(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_stuck_once_it_outlives_an_order_and_a_check() {
        let s = Duration::from_secs;
        let cases = [
            (s(0), s(600), s(3600), false),
            (s(4200), s(600), s(3600), false),
            (s(4201), s(600), s(3600), true),
            (s(7), s(5), s(1), true),
        ];
        for (age, order, check, want) in cases {
            assert_eq!(
                lock_stuck(age, order, check),
                want,
                "{age:?} {order:?} {check:?}"
            );
        }
    }
}
