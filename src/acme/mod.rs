//! Automatic wildcard certificates: for each `xipgate.acme.domains` entry, one certificate
//! for `*.<domain>` and `<domain>`, ordered over ACME (RFC 8555) with the DNS-01 challenge,
//! answered by xipgate's own DNS server. No DNS provider API is involved: the zone is
//! delegated to xipgate already (docs/https.md).
//!
//! A certificate is ordered when there is none and renewed once two thirds of its lifetime
//! have passed. Any failure keeps the certificate being served, is recorded (console,
//! `/api/v1/tls`, log) and retried at the next check. Replicas share one [`Store`] (a
//! directory, or the Kubernetes API): the one that takes its order lock orders; every
//! replica answers the challenge from values the store's follower keeps in memory
//! ([`challenges`]) and loads the new certificate. Every request to the CA and every order
//! has a deadline, so a CA that stops answering fails an order (said in `last_error`)
//! instead of holding the lock; a lock that can be lost (a Lease not renewed in time)
//! stops the order.

mod challenges;
mod client;
mod order;
mod self_check;
mod state;
mod store;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use instant_acme::OrderStatus;
use log::{info, warn};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use crate::config::{AcmeConfig, AcmeStoreConfig};
use crate::dns::TxtRecords;
use crate::tls::CertStore;
pub use challenges::Challenges;
pub use client::ClientError;
pub use self_check::SelfCheckError;
pub use state::{lock_stuck, AcmeState, LockStatus};
pub use store::{DirStore, Follow, HeldBy, KubeStore, LockAttempt, OrderLock, Store, StoreError};

/// How long an order may take to become ready, and its certificate to be issued.
const ORDER_TIMEOUT: Duration = Duration::from_secs(120);
/// First wait between polls of an order (doubling).
const POLL_START: Duration = Duration::from_millis(250);
/// After a lock held by another replica that frees itself at a known time (a Lease), the
/// next check comes this long after that time, and never sooner than this after the last.
const HELD_RETRY_MARGIN: Duration = Duration::from_millis(500);

/// Why an order did not produce a certificate.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("ACME: {0}")]
    Protocol(#[from] instant_acme::Error),
    #[error("the stored ACME account is unreadable: {0}")]
    Account(#[from] serde_json::Error),
    #[error("making the key or the CSR: {0}")]
    Csr(#[from] rcgen::Error),
    #[error("the CA offered no dns-01 challenge for {0}")]
    NoDnsChallenge(String),
    #[error("the order ended {0:?} instead of ready (a challenge failed: is the zone delegated to xipgate's DNS?)")]
    NotReady(OrderStatus),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("DNS self-check: {0}")]
    SelfCheck(#[from] SelfCheckError),
    #[error("the order did not finish within acme.order_timeout ({0:?}): the CA stopped answering or is too slow")]
    Deadline(Duration),
}

/// Whether a certificate is due: none yet, or two thirds of its lifetime are over.
pub fn due(now: SystemTime, renew_at: Option<SystemTime>) -> bool {
    renew_at.is_none_or(|at| now >= at)
}

/// How long to wait before the next round of checks: the check interval, or less when a
/// lock another replica holds frees itself sooner (its Lease expires unless renewed).
pub fn next_check(now: SystemTime, interval: Duration, free_at: Option<SystemTime>) -> Duration {
    let Some(at) = free_at else {
        return interval;
    };
    let until = at.duration_since(now).unwrap_or_default() + HELD_RETRY_MARGIN;
    until.clamp(HELD_RETRY_MARGIN, interval)
}

/// The ACME client as a background service.
pub struct Acme {
    cfg: AcmeConfig,
    store: Arc<dyn Store>,
    challenges: Arc<Challenges>,
    certs: Arc<CertStore>,
    state: Arc<AcmeState>,
    /// Values the order in flight has published: withdrawn when it ends, however it ends.
    published: Mutex<Vec<(String, Vec<String>)>>,
}

/// Keeps the challenge values (and, for the Kubernetes store, the certificates) current.
pub struct Follower {
    store: Arc<dyn Store>,
    follow: Follow,
}

#[async_trait]
impl BackgroundService for Follower {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.store.follow(&self.follow, shutdown).await;
    }
}

impl Acme {
    /// Opens the store (the directory: tests its lock, migrates certificates stored in two
    /// files; Kubernetes: finds the API server and the namespace) and adds each domain's
    /// certificate to the certificate store, so one issued earlier (or by another replica)
    /// is served as soon as it is read.
    pub fn new(cfg: AcmeConfig, certs: Arc<CertStore>) -> Result<Self, AcmeError> {
        let (store, kind): (Arc<dyn Store>, _) = match &cfg.store {
            AcmeStoreConfig::Directory(dir) => (Arc::new(DirStore::new(dir)), "directory"),
            AcmeStoreConfig::Kubernetes(k) => (Arc::new(KubeStore::new(k)?), "kubernetes"),
        };
        store.prepare(&cfg.domains, &certs)?;
        let state = Arc::new(AcmeState::new(kind, store.clone()));
        for d in &cfg.domains {
            state.update(d, |_| {});
        }
        Ok(Acme {
            cfg,
            store,
            challenges: Arc::new(Challenges::default()),
            certs,
            state,
            published: Mutex::new(Vec::new()),
        })
    }

    /// The challenge values, for the DNS server: from memory, never from the store.
    pub fn txt_records(&self) -> Arc<dyn TxtRecords> {
        self.challenges.clone()
    }

    /// The background service that keeps [`Acme::txt_records`] current from the store.
    pub fn follower(&self) -> Follower {
        Follower {
            store: self.store.clone(),
            follow: Follow {
                challenges: self.challenges.clone(),
                certs: self.certs.clone(),
                state: self.state.clone(),
            },
        }
    }

    pub fn state(&self) -> Arc<AcmeState> {
        self.state.clone()
    }

    fn renew_at(&self, domain: &str) -> Option<SystemTime> {
        self.store
            .cert_place(domain)
            .loaded(&self.certs)
            .map(|c| c.renew_at())
    }

    /// Orders `domain`'s certificate if it is due and no other replica is ordering it.
    /// Returns when a lock held by another replica frees itself, if it does on its own.
    async fn check(&self, domain: &str) -> Option<SystemTime> {
        if let Err(e) = self.store.load_certificate(domain, &self.certs).await {
            self.failed(domain, &AcmeError::Store(e));
            return None;
        }
        let renew_at = self.renew_at(domain);
        let is_due = due(SystemTime::now(), renew_at);
        self.state.update(domain, |d| {
            d.renew_at = renew_at.map(store::unix);
            if !is_due {
                d.lock = None; // not looked at: what was seen last is no longer current
            }
        });
        if !is_due {
            return None;
        }
        let now = store::unix_now();
        let mut lock = match self.store.try_lock().await {
            Ok(LockAttempt::Taken(l)) => l,
            Ok(LockAttempt::Held(by)) => {
                self.held(domain, &by, now);
                return by.free_at;
            }
            Err(e) => {
                self.failed(domain, &AcmeError::Store(e));
                return None;
            }
        };
        self.state.update(domain, |d| {
            d.lock = Some(LockStatus::of(Some(lock.holder()), now));
        });
        // Another replica may have finished just before the lock was free.
        let still_due = match self.store.load_certificate(domain, &self.certs).await {
            Ok(()) => due(SystemTime::now(), self.renew_at(domain)),
            Err(e) => {
                let released = self.release(domain, lock).await;
                self.failed(domain, &AcmeError::Store(e));
                self.note_cleanup(domain, released.into_iter().collect());
                return None;
            }
        };
        if !still_due {
            let released = self.release(domain, lock).await;
            self.note_cleanup(domain, released.into_iter().collect());
            return None;
        }
        self.state
            .update(domain, |d| d.last_order = Some(store::unix_now()));
        let ordered = async {
            tokio::select! {
                r = self.order(domain) => r,
                e = lock.lost() => Err(AcmeError::Store(e)),
            }
        };
        let result = tokio::time::timeout(self.cfg.order_timeout, ordered)
            .await
            .unwrap_or(Err(AcmeError::Deadline(self.cfg.order_timeout)));
        // The outcome is counted before the lock is released: whoever sees the lock free
        // (the console, another replica's status) sees the order's result with it.
        match &result {
            Ok(()) => {
                if let Err(e) = self.store.load_certificate(domain, &self.certs).await {
                    warn!("acme: {domain}: the new certificate is stored but not read back: {e}");
                }
                let renew_at = self.renew_at(domain);
                info!("acme: new certificate for *.{domain} and {domain}");
                self.state.update(domain, |d| {
                    d.orders_ok += 1;
                    d.last_error = None;
                    d.renew_at = renew_at.map(store::unix);
                });
            }
            Err(e) => self.failed(domain, e),
        }
        let mut cleanup: Vec<String> = self.withdraw().await.into_iter().collect();
        cleanup.extend(self.release(domain, lock).await);
        self.note_cleanup(domain, cleanup);
        None
    }

    /// What the store refused after an order (withdrawing its values, releasing the lock)
    /// is said on the domain, after the order's own outcome.
    fn note_cleanup(&self, domain: &str, problems: Vec<String>) {
        if problems.is_empty() {
            return;
        }
        let said = problems.join("; ");
        self.state.update(domain, |d| {
            d.last_error = Some(match d.last_error.take() {
                Some(e) => format!("{e}; {said}"),
                None => said,
            });
        });
    }

    /// Frees the lock; what went wrong, logged.
    async fn release(&self, domain: &str, lock: Box<dyn OrderLock>) -> Option<String> {
        let r = lock.release().await;
        self.state.update(domain, |d| d.lock = None);
        let e = r.err()?;
        let said = format!("releasing the order lock: {e}");
        warn!("acme: {domain}: {said}");
        Some(said)
    }

    /// Another replica is ordering; its certificate will arrive. Said, so a replica stuck
    /// with the lock does not leave every other one silent.
    fn held(&self, domain: &str, by: &HeldBy, now: u64) {
        let status = LockStatus::held(by, now);
        let stuck = status.age_seconds.is_some_and(|age| {
            lock_stuck(
                Duration::from_secs(age),
                self.cfg.order_timeout,
                self.cfg.check_interval,
            )
        });
        if stuck {
            let e = format!(
                "the order lock in {} has been held by {} for {}s, longer than acme.order_timeout ({:?}): that replica is stuck and no replica can renew until it ends",
                self.store.describe(),
                status.holder,
                status.age_seconds.unwrap_or_default(),
                self.cfg.order_timeout
            );
            warn!("acme: {domain}: {e}");
            self.state.update(domain, |d| d.last_error = Some(e));
        }
        self.state.update(domain, |d| d.lock = Some(status));
    }

    /// Withdraws what the order published, from memory and from the store; what went
    /// wrong, logged.
    async fn withdraw(&self) -> Option<String> {
        let published =
            std::mem::take(&mut *self.published.lock().unwrap_or_else(|p| p.into_inner()));
        if published.is_empty() {
            return None;
        }
        for (name, _) in &published {
            self.challenges.withdraw(name);
        }
        let e = self.store.withdraw(&published).await.err()?;
        let said = format!("withdrawing the challenge values (they stay published): {e}");
        warn!("acme: {said}");
        Some(said)
    }

    fn failed(&self, domain: &str, e: &AcmeError) {
        let serving = self.store.cert_place(domain).loaded(&self.certs).is_some();
        warn!(
            "acme: {domain}: {e}; {}, next try in {}s",
            if serving {
                "the current certificate stays"
            } else {
                "no certificate for it yet"
            },
            self.cfg.check_interval.as_secs()
        );
        self.state.update(domain, |d| {
            d.orders_failed += 1;
            d.last_error = Some(e.to_string());
        });
    }
}

#[async_trait]
impl BackgroundService for Acme {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let mut free_at: Option<SystemTime> = None;
            for d in &self.cfg.domains {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    f = self.check(d) => {
                        free_at = match (free_at, f) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                    }
                }
            }
            let wait = next_check(SystemTime::now(), self.cfg.check_interval, free_at);
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_is_due_when_missing_or_two_thirds_through_its_life() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let cases = [
            (t0, None, true),
            (t0, Some(t0 + Duration::from_secs(1)), false),
            (t0, Some(t0), true),
            (t0 + Duration::from_secs(5), Some(t0), true),
        ];
        for (now, renew_at, want) in cases {
            assert_eq!(due(now, renew_at), want, "{now:?} {renew_at:?}");
        }
    }

    #[test]
    fn a_lock_that_frees_itself_sooner_brings_the_next_check_forward() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let s = Duration::from_secs;
        let m = HELD_RETRY_MARGIN;
        let cases = [
            (None, s(3600), s(3600)),
            (Some(t0 + s(20)), s(3600), s(20) + m),
            (Some(t0 + s(20)), s(5), s(5)),
            (Some(t0 - s(3)), s(3600), m),
            (Some(t0), s(3600), m),
        ];
        for (free_at, interval, want) in cases {
            assert_eq!(next_check(t0, interval, free_at), want, "{free_at:?}");
        }
    }
}
