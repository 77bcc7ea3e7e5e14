//! The ACME store in the Kubernetes API server, for replicas that share no volume:
//!
//! ```text
//! Secret    <prefix>-account                   Opaque: account.json (the ACME account)
//! Secret    <prefix>-<domain, '.' as '-'>      kubernetes.io/tls: tls.crt (chain, leaf
//!                                              first), tls.key; other workloads mount it
//! ConfigMap <prefix>-challenges                _acme-challenge.<domain>: pending values;
//!                                              issued.<domain>: the version of the
//!                                              Secret last written, so replicas read it
//! Lease     <prefix>                           coordination.k8s.io/v1: who orders
//! ```
//!
//! Every replica watches the ConfigMap (one watch, resumed from its last version): the
//! values the ordering replica publishes reach every replica's DNS within the watch's
//! latency, and a certificate one replica stores is read by the others when its note
//! changes. Each write reads the object, changes it and replaces that version; a 409
//! (someone wrote in between) reads it again. The account Secret is created only if
//! absent: of two replicas that both made an account, the second uses the first's.
//!
//! The verbs used, and so the Role it needs (k8s/rbac-acme.yaml): `get`, `create`,
//! `update` on the Secrets, the ConfigMap and the Lease; `list` and `watch` on the
//! ConfigMap (with a field selector on its name).

mod lease;
mod lease_lock;
mod objects;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use tokio::sync::watch;

use super::{who_am_i, CertPlace, Follow, LockAttempt, Store, StoreError};
use crate::config::KubeStoreConfig;
use crate::kube::{
    Client, Connection, ConnectionError, KubeError, ListParams, Reflector, Resource, IN_CLUSTER_DIR,
};
use crate::tls::{CertKey, CertStore, Origin};
use lease_lock::{LeaseRef, Observed, MAX_CONFLICTS};
use objects::{
    join_values, split_values, ConfigMap, Secret, ACCOUNT_KEY, DOMAIN_ANNOTATION, ISSUED_PREFIX,
    TLS_CRT, TLS_KEY, TLS_SECRET_TYPE,
};

pub struct KubeStore {
    cfg: KubeStoreConfig,
    client: Client,
    namespace: String,
    lease: LeaseRef,
    observed: Observed,
    /// The domains given at start (their Secrets are read by the follower).
    domains: Mutex<Vec<String>>,
    /// Domain → the resourceVersion of its Secret last read.
    loaded: Mutex<BTreeMap<String, String>>,
    /// 409s met and retried from a fresh read.
    conflicts: Arc<AtomicU64>,
}

const NAMESPACE_KEY: &str = "xipgate.acme.store.kubernetes.namespace";

/// The pod's namespace, from the service account's mount.
fn pod_namespace() -> Result<String, StoreError> {
    let path = Path::new(IN_CLUSTER_DIR).join("namespace");
    match std::fs::read_to_string(&path) {
        Ok(ns) if !ns.trim().is_empty() => Ok(ns.trim().to_string()),
        Ok(_) => Err(StoreError::Setup {
            key: NAMESPACE_KEY,
            reason: format!("not set, and {} is empty", path.display()),
        }),
        Err(e) => Err(StoreError::Setup {
            key: NAMESPACE_KEY,
            reason: format!(
                "not set, and not running in a pod ({}: {e}): set it",
                path.display()
            ),
        }),
    }
}

impl KubeStore {
    /// Finds the API server and the namespace (nothing is asked of the server yet).
    pub fn new(cfg: &KubeStoreConfig) -> Result<KubeStore, StoreError> {
        let namespace = match &cfg.namespace {
            Some(ns) => ns.clone(),
            None => pod_namespace()?,
        };
        let setup = |key, e: ConnectionError| StoreError::Setup {
            key,
            reason: e.to_string(),
        };
        let conn = Connection::resolve(
            cfg.api_url.clone(),
            cfg.token_file.clone(),
            cfg.ca_file.clone(),
        )
        .map_err(|e| setup("xipgate.acme.store.kubernetes.api_url", e))?;
        let client = Client::new(&conn).map_err(|e| match e {
            ConnectionError::Ca { .. } => setup("xipgate.acme.store.kubernetes.ca_file", e),
            e => setup("xipgate.acme.store.kubernetes.api_url", e),
        })?;
        let conflicts = Arc::new(AtomicU64::new(0));
        let lease = LeaseRef {
            client: client.clone(),
            namespace: namespace.clone(),
            name: cfg.lease(),
            me: who_am_i(),
            duration: cfg.lease_duration,
            conflicts: conflicts.clone(),
        };
        Ok(KubeStore {
            cfg: cfg.clone(),
            client,
            namespace,
            lease,
            observed: Observed::default(),
            domains: Mutex::default(),
            loaded: Mutex::default(),
            conflicts,
        })
    }

    fn label(&self, domain: &str) -> String {
        format!("secret {}/{}", self.namespace, self.cfg.cert_secret(domain))
    }

    async fn get_secret(&self, name: &str) -> Result<Option<Secret>, KubeError> {
        match self
            .client
            .get::<Secret>(&Resource::SECRETS, &self.namespace, name)
            .await
        {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads the ConfigMap, lets `edit` change its data (it says whether it did), and
    /// writes it back (created when absent); a 409 starts again from a fresh read.
    async fn edit_config_map(
        &self,
        edit: impl Fn(&mut BTreeMap<String, String>) -> bool,
    ) -> Result<(), StoreError> {
        let name = self.cfg.challenges_config_map();
        for _ in 0..MAX_CONFLICTS {
            let read = match self
                .client
                .get::<ConfigMap>(&Resource::CONFIG_MAPS, &self.namespace, &name)
                .await
            {
                Ok(cm) => Some(cm),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e.into()),
            };
            let exists = read.is_some();
            let mut cm = read.unwrap_or_else(|| ConfigMap::new(&name, &self.namespace));
            if !edit(&mut cm.data) {
                return Ok(());
            }
            let written = if exists {
                self.client
                    .replace::<_, ConfigMap>(&Resource::CONFIG_MAPS, &self.namespace, &name, &cm)
                    .await
            } else {
                self.client
                    .create::<_, ConfigMap>(&Resource::CONFIG_MAPS, &self.namespace, &cm)
                    .await
            };
            match written {
                Ok(_) => return Ok(()),
                Err(e) if e.is_conflict() => {
                    self.conflicts.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflicts {
            what: format!("the ConfigMap {}/{name}", self.namespace),
            attempts: MAX_CONFLICTS,
        })
    }

    /// Loads `domain`'s Secret into `certs` if its version is not the one loaded. A Secret
    /// that does not hold a usable pair is said (on the certificate) and skipped, so the
    /// check orders a new one instead of failing on it at every check.
    async fn load(&self, domain: &str, certs: &CertStore) -> Result<(), StoreError> {
        let name = self.cfg.cert_secret(domain);
        let Some(secret) = self.get_secret(&name).await? else {
            return Ok(());
        };
        let version = secret.metadata.resource_version.clone();
        {
            let loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
            if loaded.get(domain) == Some(&version) {
                return Ok(());
            }
        }
        let label = self.label(domain);
        match read_pair(&secret, domain, &label) {
            Ok(ck) => certs.put(&label, ck),
            Err(why) => {
                log::warn!("acme: {label}: {why}; it is not served");
                certs.held_error(&label, why);
            }
        }
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(domain.to_string(), version);
        Ok(())
    }
}

/// The certificate in a Secret, if it is this domain's and a matching pair.
fn read_pair(secret: &Secret, domain: &str, label: &str) -> Result<CertKey, String> {
    if let Some(d) = secret.metadata.annotations.get(DOMAIN_ANNOTATION) {
        if d != domain {
            return Err(format!(
                "it holds the certificate of {d} ({DOMAIN_ANNOTATION}), not of {domain}"
            ));
        }
    }
    let chain = secret.text(TLS_CRT)?;
    let key = secret.text(TLS_KEY)?;
    let at = Path::new(label);
    CertKey::from_pem(chain.as_bytes(), key.as_bytes(), at, at).map_err(|e| e.to_string())
}

fn malformed(what: String, field: &'static str, reason: String) -> StoreError {
    StoreError::Malformed {
        what,
        field,
        reason,
    }
}

#[async_trait]
impl Store for KubeStore {
    fn describe(&self) -> String {
        format!(
            "Kubernetes namespace {} (Lease {}, Secrets {}-*, ConfigMap {})",
            self.namespace,
            self.cfg.lease(),
            self.cfg.secret_prefix,
            self.cfg.challenges_config_map()
        )
    }

    fn prepare(&self, domains: &[String], certs: &CertStore) -> Result<(), StoreError> {
        for d in domains {
            certs.add_held(&self.label(d), Origin::Acme);
        }
        *self.domains.lock().unwrap_or_else(|p| p.into_inner()) = domains.to_vec();
        Ok(())
    }

    fn cert_place(&self, domain: &str) -> CertPlace {
        CertPlace::Held(self.label(domain))
    }

    fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }

    async fn load_certificate(&self, domain: &str, certs: &CertStore) -> Result<(), StoreError> {
        self.load(domain, certs).await
    }

    async fn try_lock(&self) -> Result<LockAttempt, StoreError> {
        lease_lock::acquire(&self.lease, &self.observed).await
    }

    async fn read_account(&self) -> Result<Option<String>, StoreError> {
        let name = self.cfg.account_secret();
        let Some(s) = self.get_secret(&name).await? else {
            return Ok(None);
        };
        let what = format!("the Secret {}/{name}", self.namespace);
        s.text(ACCOUNT_KEY)
            .map(Some)
            .map_err(|r| malformed(what, ACCOUNT_KEY, r))
    }

    async fn create_account(&self, json: &str) -> Result<String, StoreError> {
        let name = self.cfg.account_secret();
        let mut s = Secret::new(&name, &self.namespace, "Opaque");
        s.set_text(ACCOUNT_KEY, json);
        match self
            .client
            .create::<_, Secret>(&Resource::SECRETS, &self.namespace, &s)
            .await
        {
            Ok(_) => Ok(json.to_string()),
            // AlreadyExists: another replica stored one first; it is the account.
            Err(e) if e.is_conflict() => self.read_account().await?.ok_or_else(|| {
                malformed(
                    format!("the Secret {}/{name}", self.namespace),
                    ACCOUNT_KEY,
                    "it existed a moment ago and is gone".into(),
                )
            }),
            Err(e) => Err(e.into()),
        }
    }

    async fn write_cert(
        &self,
        domain: &str,
        chain_pem: &str,
        key_pem: &str,
    ) -> Result<(), StoreError> {
        let name = self.cfg.cert_secret(domain);
        let mut version = None;
        for _ in 0..MAX_CONFLICTS {
            let read = self.get_secret(&name).await?;
            let exists = read.is_some();
            let mut s =
                read.unwrap_or_else(|| Secret::new(&name, &self.namespace, TLS_SECRET_TYPE));
            s.set_text(TLS_CRT, chain_pem);
            s.set_text(TLS_KEY, key_pem);
            s.metadata
                .annotations
                .insert(DOMAIN_ANNOTATION.into(), domain.into());
            let written = if exists {
                self.client
                    .replace::<_, Secret>(&Resource::SECRETS, &self.namespace, &name, &s)
                    .await
            } else {
                self.client
                    .create::<_, Secret>(&Resource::SECRETS, &self.namespace, &s)
                    .await
            };
            match written {
                Ok(w) => {
                    version = Some(w.metadata.resource_version);
                    break;
                }
                Err(e) if e.is_conflict() => {
                    self.conflicts.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let Some(version) = version else {
            return Err(StoreError::Conflicts {
                what: format!("the Secret {}/{name}", self.namespace),
                attempts: MAX_CONFLICTS,
            });
        };
        // Tells every replica to read it.
        let key = format!("{ISSUED_PREFIX}{domain}");
        self.edit_config_map(|data| {
            data.insert(key.clone(), version.clone());
            true
        })
        .await
    }

    async fn publish(&self, name: &str, values: &[String]) -> Result<(), StoreError> {
        let text = join_values(values);
        self.edit_config_map(|data| {
            if data.get(name) == Some(&text) {
                return false;
            }
            data.insert(name.to_string(), text.clone());
            true
        })
        .await
    }

    async fn withdraw(&self, published: &[(String, Vec<String>)]) -> Result<(), StoreError> {
        self.edit_config_map(|data| {
            let mut changed = false;
            for (name, values) in published {
                // Only while they are still ours: a replica that took over may have
                // published its own.
                if data.get(name).is_some_and(|v| split_values(v) == *values) {
                    data.remove(name);
                    changed = true;
                }
            }
            changed
        })
        .await
    }

    async fn follow(&self, f: &Follow, shutdown: ShutdownWatch) {
        let name = self.cfg.challenges_config_map();
        let reflector = Reflector::<ConfigMap>::new(
            self.client.clone(),
            Resource::CONFIG_MAPS,
            Some(self.namespace.clone()),
            ListParams {
                field_selector: Some(format!("metadata.name={name}")),
                ..ListParams::default()
            },
        );
        let (notes_tx, notes) = watch::channel(BTreeMap::new());
        let challenges = f.challenges.clone();
        let (ok_state, err_state) = (f.state.clone(), f.state.clone());
        let watching = reflector.run(
            move |store| {
                let cm = store.objects.values().next();
                challenges.replace(cm.map(ConfigMap::challenges).unwrap_or_default());
                notes_tx.send_replace(cm.map(ConfigMap::issued).unwrap_or_default());
                ok_state.store_ok();
            },
            move |e| {
                log::warn!("acme: {e}; DNS answers the challenge values read before");
                err_state.store_failed(e.to_string());
            },
            shutdown.clone(),
        );
        tokio::join!(watching, self.load_issued(f, notes, shutdown));
    }
}

impl KubeStore {
    /// Reads every domain's Secret at start, then each one whose note in the ConfigMap
    /// names a version not loaded yet.
    async fn load_issued(
        &self,
        f: &Follow,
        mut notes: watch::Receiver<BTreeMap<String, String>>,
        mut shutdown: ShutdownWatch,
    ) {
        let domains = self
            .domains
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for d in &domains {
            if let Err(e) = self.load(d, &f.certs).await {
                log::warn!("acme: {d}: {e}");
                f.state.store_failed(e.to_string());
            }
        }
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                r = notes.changed() => if r.is_err() { return },
            }
            let wanted: Vec<String> = {
                let notes = notes.borrow_and_update();
                let loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
                domains
                    .iter()
                    .filter(|d| notes.get(*d).is_some_and(|v| loaded.get(*d) != Some(v)))
                    .cloned()
                    .collect()
            };
            for d in wanted {
                if let Err(e) = self.load(&d, &f.certs).await {
                    log::warn!("acme: {d}: {e}");
                    f.state.store_failed(e.to_string());
                }
            }
        }
    }
}
