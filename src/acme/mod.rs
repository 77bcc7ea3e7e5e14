//! Automatic wildcard certificates: for each `xipgate.acme.domains` entry, one certificate
//! for `*.<domain>` and `<domain>`, ordered over ACME (RFC 8555) with the DNS-01 challenge,
//! answered by xipgate's own DNS server. No DNS provider API is involved: the zone is
//! delegated to xipgate already (docs/https.md).
//!
//! A certificate is ordered when there is none and renewed once two thirds of its lifetime
//! have passed. Any failure keeps the certificate being served, is recorded (console,
//! `/api/v1/tls`, log) and retried at the next check. Replicas share one [`Store`]: the one
//! that takes its lock orders; every replica answers the challenge from values it reads
//! from the store in the background ([`challenges`]) and loads the new file through its
//! certificate reloader. Every request to the CA and every order has a deadline, so a CA
//! that stops answering fails an order (said in `last_error`) instead of holding the lock.

mod challenges;
mod client;
mod self_check;
mod store;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use log::{info, warn};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde::Serialize;

use crate::config::AcmeConfig;
use crate::dns::TxtRecords;
use crate::tls::{CertSource, CertStore, Origin};
pub use challenges::{Challenges, Refresher};
pub use client::ClientError;
pub use self_check::SelfCheckError;
pub use store::{LockAttempt, LockHolder, Store, StoreError};

/// How long an order may take to become ready, and its certificate to be issued.
const ORDER_TIMEOUT: Duration = Duration::from_secs(120);
/// First wait between polls of an order (doubling).
const POLL_START: Duration = Duration::from_millis(250);

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
}

impl LockStatus {
    fn of(holder: Option<&LockHolder>, now: u64) -> Self {
        LockStatus {
            holder: holder.map_or_else(|| "unknown".into(), |h| h.holder.clone()),
            since: holder.map(|h| h.since),
            age_seconds: holder.map(|h| now.saturating_sub(h.since)),
        }
    }
}

/// Whether a lock held for `age` outlived every order its holder could be running: its
/// process is stuck (the kernel frees a dead process's lock).
pub fn lock_stuck(age: Duration, order_timeout: Duration, check_interval: Duration) -> bool {
    age > order_timeout + check_interval
}

/// What every part reads about ACME.
#[derive(Default)]
pub struct AcmeState {
    domains: Mutex<BTreeMap<String, DomainStatus>>,
}

impl AcmeState {
    pub fn snapshot(&self) -> Vec<DomainStatus> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, DomainStatus>> {
        self.domains.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, domain: &str, f: impl FnOnce(&mut DomainStatus)) {
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

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The ACME client as a background service.
pub struct Acme {
    cfg: AcmeConfig,
    store: Store,
    challenges: Arc<Challenges>,
    certs: Arc<CertStore>,
    state: Arc<AcmeState>,
}

/// Withdraws published values when the order ends, however it ends (the deadline drops
/// the order's future mid-way).
struct Published<'a> {
    acme: &'a Acme,
    names: Vec<String>,
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        for name in &self.names {
            self.acme.store.withdraw(name);
            self.acme.challenges.withdraw(name);
        }
    }
}

impl Acme {
    /// Prepares the store (tests its lock, migrates certificates stored in two files) and
    /// adds each domain's file to the certificate store, so a certificate issued earlier
    /// (or by another replica) is served from the start.
    pub fn new(cfg: AcmeConfig, certs: Arc<CertStore>) -> Result<Self, AcmeError> {
        let store = Store::new(&cfg.store);
        store.prepare()?;
        let state = Arc::new(AcmeState::default());
        for d in &cfg.domains {
            if store.migrate_legacy(d)? {
                info!("acme: {d}: moved fullchain.pem and privkey.pem into certificate.pem");
            }
            // Chain and key in one file, so both halves of the source name it.
            certs.add(CertSource {
                cert: store.cert_file(d),
                key: store.cert_file(d),
                origin: Origin::Acme,
            });
            state.update(d, |_| {});
        }
        certs.refresh();
        Ok(Acme {
            cfg,
            store,
            challenges: Arc::new(Challenges::default()),
            certs,
            state,
        })
    }

    /// The challenge values, for the DNS server: from memory, never from the store.
    pub fn txt_records(&self) -> Arc<dyn TxtRecords> {
        self.challenges.clone()
    }

    /// The background service that keeps [`Acme::txt_records`] current from the store.
    pub fn refresher(&self) -> Refresher {
        Refresher {
            store: self.store.clone(),
            challenges: self.challenges.clone(),
        }
    }

    pub fn state(&self) -> Arc<AcmeState> {
        self.state.clone()
    }

    fn renew_at(&self, domain: &str) -> Option<SystemTime> {
        self.certs
            .loaded(&self.store.cert_file(domain))
            .map(|c| c.renew_at())
    }

    /// Orders `domain`'s certificate if it is due and no other replica is ordering it.
    async fn check(&self, domain: &str) {
        self.certs.refresh();
        let renew_at = self.renew_at(domain);
        let is_due = due(SystemTime::now(), renew_at);
        self.state.update(domain, |d| {
            d.renew_at = renew_at.map(unix);
            if !is_due {
                d.lock = None; // not looked at: what was seen last is no longer current
            }
        });
        if !is_due {
            return;
        }
        let now = unix(SystemTime::now());
        let lock = match self.store.try_lock() {
            Ok(LockAttempt::Taken(l)) => l,
            Ok(LockAttempt::Held(holder)) => {
                // Another replica is ordering; its file will arrive. Said, so a replica
                // stuck with the lock does not leave every other one silent.
                let status = LockStatus::of(holder.as_ref(), now);
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
                        self.store.root().display(),
                        status.holder,
                        status.age_seconds.unwrap_or_default(),
                        self.cfg.order_timeout
                    );
                    warn!("acme: {domain}: {e}");
                    self.state.update(domain, |d| d.last_error = Some(e));
                }
                self.state.update(domain, |d| d.lock = Some(status));
                return;
            }
            Err(e) => {
                self.failed(domain, &AcmeError::Store(e));
                return;
            }
        };
        self.state.update(domain, |d| {
            d.lock = Some(LockStatus::of(Some(&lock.holder), now));
        });
        // Another replica may have finished just before the lock was free.
        self.certs.refresh();
        if !due(SystemTime::now(), self.renew_at(domain)) {
            self.state.update(domain, |d| d.lock = None);
            return;
        }
        self.state
            .update(domain, |d| d.last_order = Some(unix(SystemTime::now())));
        let result = tokio::time::timeout(self.cfg.order_timeout, self.order(domain))
            .await
            .unwrap_or(Err(AcmeError::Deadline(self.cfg.order_timeout)));
        drop(lock);
        self.state.update(domain, |d| d.lock = None);
        match result {
            Ok(()) => {
                self.certs.refresh();
                let renew_at = self.renew_at(domain);
                info!("acme: new certificate for *.{domain} and {domain}");
                self.state.update(domain, |d| {
                    d.orders_ok += 1;
                    d.last_error = None;
                    d.renew_at = renew_at.map(unix);
                });
            }
            Err(e) => self.failed(domain, &e),
        }
    }

    fn failed(&self, domain: &str, e: &AcmeError) {
        let serving = self.certs.loaded(&self.store.cert_file(domain)).is_some();
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

    async fn account(&self) -> Result<Account, AcmeError> {
        let http =
            client::TimedClient::new(self.cfg.directory_ca.as_deref(), self.cfg.request_timeout)?;
        let builder = Account::builder_with_http(Box::new(http));
        if let Some(json) = self.store.read_account()? {
            let creds: AccountCredentials = serde_json::from_str(&json)?;
            return Ok(builder.from_credentials(creds).await?);
        }
        let contact: Vec<&str> = self.cfg.contact.iter().map(String::as_str).collect();
        let (account, creds) = builder
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.cfg.directory.clone(),
                None,
            )
            .await?;
        self.store.write_account(&serde_json::to_string(&creds)?)?;
        info!("acme: account created at {}", self.cfg.directory);
        Ok(account)
    }

    async fn order(&self, domain: &str) -> Result<(), AcmeError> {
        let names = [format!("*.{domain}"), domain.to_string()];
        let ids: Vec<Identifier> = names.iter().cloned().map(Identifier::Dns).collect();
        let account = self.account().await?;
        let mut order = account.new_order(&NewOrder::new(&ids)).await?;

        // The wildcard and the bare name share one TXT name and need both values at once:
        // publish everything, then say ready.
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut auths = order.authorizations();
        while let Some(a) = auths.next().await {
            let mut a = a?;
            if a.status != AuthorizationStatus::Pending {
                continue; // already valid (a CA may reuse a recent authorization)
            }
            let ch = a
                .challenge(ChallengeType::Dns01)
                .ok_or_else(|| AcmeError::NoDnsChallenge(domain.to_string()))?;
            // The identifier without `*.` (the authorization of `*.d` is for `d`).
            let base = match ch.identifier().identifier {
                Identifier::Dns(d) => d.trim_start_matches("*.").to_ascii_lowercase(),
                _ => return Err(AcmeError::NoDnsChallenge(domain.to_string())),
            };
            values
                .entry(format!("_acme-challenge.{base}"))
                .or_default()
                .push(ch.key_authorization().dns_value());
        }
        let _published = Published {
            acme: self,
            names: values.keys().cloned().collect(),
        };
        for (name, v) in &values {
            self.store.publish(name, v)?;
            self.challenges.publish(name, v);
        }
        // Every DNS server the CA may ask must answer before the CA asks.
        for (name, v) in &values {
            self_check::wait_until_answered(
                &self.cfg.self_check,
                name,
                v,
                self.cfg.self_check_timeout,
            )
            .await?;
        }
        let mut auths = order.authorizations();
        while let Some(a) = auths.next().await {
            let mut a = a?;
            if a.status != AuthorizationStatus::Pending {
                continue;
            }
            if let Some(mut ch) = a.challenge(ChallengeType::Dns01) {
                ch.set_ready().await?;
            }
        }
        let retry = RetryPolicy::new()
            .initial_delay(POLL_START)
            .timeout(ORDER_TIMEOUT);
        let status = order.poll_ready(&retry).await?;
        if status != OrderStatus::Ready {
            return Err(AcmeError::NotReady(status));
        }
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(names.to_vec())?;
        // rcgen's default subject is "rcgen self signed cert"; the CA fills it in.
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params.serialize_request(&key)?;
        order.finalize_csr(csr.der()).await?;
        let chain = order.poll_certificate(&retry).await?;
        self.store
            .write_cert(domain, &chain, &key.serialize_pem())?;
        Ok(())
    }
}

#[async_trait]
impl BackgroundService for Acme {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            for d in &self.cfg.domains {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = self.check(d) => {}
                }
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(self.cfg.check_interval) => {}
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
