//! Where ACME keeps what its replicas share, behind one interface ([`Store`]), so the order
//! and renewal logic (`super`) does not care which it uses:
//!
//! - [`DirStore`]: a directory every replica mounts (a ReadWriteMany volume, or a local
//!   directory for one process); `flock(2)` decides who orders.
//! - [`KubeStore`]: the Kubernetes API server: Secrets for the account and the
//!   certificates, a ConfigMap every replica watches for the pending challenge values, and
//!   a `coordination.k8s.io/v1` Lease that decides who orders.
//!
//! Both give: one order lock ([`Store::try_lock`]), one ACME account created at most once
//! ([`Store::create_account`]), each certificate where every replica's TLS listener loads
//! it ([`Store::prepare`], [`Store::load_certificate`]), and the challenge values every
//! replica's DNS answers from memory ([`Store::follow`]).

mod directory;
mod kubernetes;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use serde::{Deserialize, Serialize};

use super::{AcmeState, Challenges};
use crate::kube::KubeError;
use crate::tls::CertStore;

pub use directory::DirStore;
pub use kubernetes::KubeStore;

/// What went wrong with the store itself.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("ACME store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ACME store {path}: flock(2) on it does not exclude a second holder, so replicas sharing the store would all order at once (mount it with lock support, e.g. NFSv4 without `nolock`)")]
    LockNotExclusive { path: PathBuf },
    /// The API server refused or failed a request; the error names the verb and resource.
    #[error("ACME store: {0}")]
    Kube(#[from] KubeError),
    /// The Kubernetes store cannot start (no namespace, no API server): names the key.
    #[error("{key}: {reason}")]
    Setup { key: &'static str, reason: String },
    #[error("ACME store: {what} holds no usable {field}: {reason}")]
    Malformed {
        what: String,
        field: &'static str,
        reason: String,
    },
    #[error("ACME store: {what} was changed by someone else {attempts} times in a row while this replica wrote it (HTTP 409 each time)")]
    Conflicts { what: String, attempts: u32 },
    /// This replica held the order lock and lost it (a Lease it could not renew in
    /// time, or one another replica took over): the order stops.
    #[error("ACME store: {0}")]
    LockLost(String),
}

/// Who holds the order lock, as it wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// Host name (the pod's name in Kubernetes) and process id.
    pub holder: String,
    /// Unix seconds when it took the lock.
    pub since: u64,
}

/// Another replica holds the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBy {
    /// Who, if it has said so yet.
    pub holder: Option<LockHolder>,
    /// When the lock frees itself unless its holder renews it (a Lease); `None` when
    /// only the holder's end frees it (flock).
    pub free_at: Option<SystemTime>,
}

/// The outcome of [`Store::try_lock`].
pub enum LockAttempt {
    Taken(Box<dyn OrderLock>),
    Held(HeldBy),
}

/// Held while this replica places an order. Dropping it frees it too (in the background
/// for a Lease); [`OrderLock::release`] frees it before returning.
#[async_trait]
pub trait OrderLock: Send + Sync {
    fn holder(&self) -> &LockHolder;
    /// Resolves, with the reason, when the lock is lost while held; never for a lock
    /// that cannot be lost (flock).
    async fn lost(&mut self) -> StoreError;
    /// Frees it; `Err` when the store did not take that (a Lease then frees itself once
    /// it expires).
    async fn release(self: Box<Self>) -> Result<(), StoreError>;
}

/// Where the TLS listener finds a domain's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertPlace {
    /// Chain and key in one file, reloaded when it changes.
    File(PathBuf),
    /// Handed to the certificate store by the store itself, under this label.
    Held(String),
}

impl CertPlace {
    /// The certificate loaded from this place, if any.
    pub fn loaded(&self, certs: &CertStore) -> Option<Arc<crate::tls::CertKey>> {
        match self {
            CertPlace::File(p) => certs.loaded(p),
            CertPlace::Held(label) => certs.loaded_held(label),
        }
    }
}

/// What the background follower keeps current ([`Store::follow`]).
pub struct Follow {
    pub challenges: Arc<Challenges>,
    pub certs: Arc<CertStore>,
    pub state: Arc<AcmeState>,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// How messages name the store: its directory, or its namespace and object names.
    fn describe(&self) -> String;

    /// At start, before the runtime: checks what can be checked without waiting (the
    /// directory and its lock), and adds each domain's certificate to `certs`, so one
    /// issued earlier (or by another replica) is served as soon as it is read.
    fn prepare(&self, domains: &[String], certs: &CertStore) -> Result<(), StoreError>;

    fn cert_place(&self, domain: &str) -> CertPlace;

    /// Writes that met another writer (HTTP 409) and were retried from a fresh read.
    fn conflicts(&self) -> u64 {
        0
    }

    /// Brings `domain`'s certificate in `certs` up to date with the store.
    async fn load_certificate(&self, domain: &str, certs: &CertStore) -> Result<(), StoreError>;

    /// The order lock, if no other replica holds it; else who does.
    async fn try_lock(&self) -> Result<LockAttempt, StoreError>;

    /// The ACME account's credentials (JSON), if one was created.
    async fn read_account(&self) -> Result<Option<String>, StoreError>;

    /// Stores `json` as the account unless one is there already; returns the stored one
    /// (`json`, or the one another replica stored first, which is then the one to use).
    async fn create_account(&self, json: &str) -> Result<String, StoreError>;

    /// Stores a new certificate: the chain (leaf first) and its key, replaced at once.
    async fn write_cert(
        &self,
        domain: &str,
        chain_pem: &str,
        key_pem: &str,
    ) -> Result<(), StoreError>;

    /// Publishes the DNS-01 values of one name (`_acme-challenge.<domain>`).
    async fn publish(&self, name: &str, values: &[String]) -> Result<(), StoreError>;

    /// Removes published values once the order is over (done, failed or cut short): each
    /// name's values only while they are still the ones given (a replica that took the
    /// lock over may have published its own since).
    async fn withdraw(&self, published: &[(String, Vec<String>)]) -> Result<(), StoreError>;

    /// Runs until shutdown, keeping `f.challenges` (what the DNS server answers) current
    /// with the store, and for a store that holds the certificates itself, the
    /// certificates too.
    async fn follow(&self, f: &Follow, shutdown: ShutdownWatch);
}

/// This process, as other replicas see it holding the lock.
pub fn who_am_i() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into());
    format!("{host} pid {}", std::process::id())
}

pub fn unix_now() -> u64 {
    unix(SystemTime::now())
}

pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
