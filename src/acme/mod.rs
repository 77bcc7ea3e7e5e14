//! Automatic wildcard certificates: for each `xipgate.acme.domains` entry, one certificate
//! for `*.<domain>` and `<domain>`, ordered over ACME (RFC 8555) with the DNS-01 challenge,
//! answered by xipgate's own DNS server. No DNS provider API is involved: the zone is
//! delegated to xipgate already (docs/https.md).
//!
//! A certificate is ordered when there is none and renewed once two thirds of its lifetime
//! have passed. Any failure keeps the certificate being served, is recorded (console,
//! `/api/v1/tls`, log) and retried at the next check. Replicas share one [`Store`]: the one
//! that takes its lock orders; every replica answers the challenge from the store and
//! loads the new files through its certificate reloader.

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
use crate::tls::{CertSource, CertStore, Origin};
pub use store::{Store, StoreError};

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
    certs: Arc<CertStore>,
    state: Arc<AcmeState>,
}

impl Acme {
    /// Prepares the store and adds each domain's files to the certificate store, so a
    /// certificate issued earlier (or by another replica) is served from the start.
    pub fn new(cfg: AcmeConfig, certs: Arc<CertStore>) -> Result<Self, AcmeError> {
        let store = Store::new(&cfg.store);
        store.prepare()?;
        let state = Arc::new(AcmeState::default());
        for d in &cfg.domains {
            certs.add(CertSource {
                cert: store.cert_file(d),
                key: store.key_file(d),
                origin: Origin::Acme,
            });
            state.update(d, |_| {});
        }
        certs.refresh();
        Ok(Acme {
            cfg,
            store,
            certs,
            state,
        })
    }

    /// The challenge values, for the DNS server.
    pub fn store(&self) -> Store {
        self.store.clone()
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
        self.state
            .update(domain, |d| d.renew_at = renew_at.map(unix));
        if !due(SystemTime::now(), renew_at) {
            return;
        }
        let lock = match self.store.try_lock() {
            Ok(Some(l)) => l,
            Ok(None) => return, // another replica is ordering; its files will arrive
            Err(e) => {
                self.failed(domain, &AcmeError::Store(e));
                return;
            }
        };
        // Another replica may have finished just before the lock was free.
        self.certs.refresh();
        if !due(SystemTime::now(), self.renew_at(domain)) {
            return;
        }
        self.state
            .update(domain, |d| d.last_order = Some(unix(SystemTime::now())));
        let result = self.order(domain).await;
        drop(lock);
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
        let builder = match &self.cfg.directory_ca {
            Some(ca) => Account::builder_with_root(ca)?,
            None => Account::builder()?,
        };
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
        let published: Vec<String> = values.keys().cloned().collect();
        let result = async {
            for (name, v) in &values {
                self.store.publish(name, v)?;
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
        .await;
        for name in &published {
            self.store.withdraw(name);
        }
        result
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
}
