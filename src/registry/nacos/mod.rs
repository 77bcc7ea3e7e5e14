//! A Nacos server as a registry source: every `interval`, the services of each configured
//! namespace and group (paged), then each service's instances with `healthyOnly=false`, and
//! the whole set published to the routing [`Feed`]. Any failure publishes nothing, so the
//! last good set stays routed (and no other source's instances are touched).
//!
//! With `api: v3` (Nacos 3) one paged call per namespace and group brings every service
//! with its instances (`/v3/admin/ns/service/list?withInstances=true`): Nacos 3's client
//! API has no service list, and its instance list filters by cluster and hides disabled
//! instances, so the admin API is the one that shows everything.
//!
//! With v1 and v2, up to [`FETCH_CONCURRENCY`] instance lists are asked for at once.
//!
//! A sync that lists fewer than half of the instances known is held as Eureka's full
//! fetch is (the same [`RegistryCopy`]): a restarted Nacos node without its data yet
//! answers 200 with few instances, and the missing ones stay routed for
//! `xipgate.registry.shrink_grace` of answered time.
//!
//! Login: with `username`/`password`, `POST /v1/auth/login` (v3: `/v3/auth/user/login`,
//! falling back to the v1 path on 404 as Nacos' own client does) gives an access token
//! valid for `tokenTtl` seconds; it is sent in headers (`Authorization: Bearer` and
//! `accessToken`, never in the URL, which error texts carry) and renewed once three
//! quarters of its lifetime have passed, or at once when the server answers 401/403.

mod calls;
mod model;
mod naming;
mod report;

pub use report::NACOS;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use futures::stream::{self, StreamExt, TryStreamExt};
use log::{info, warn};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::services::ServiceReadyNotifier;
use serde::{Deserialize, Serialize};

use super::eureka::copy::{log_hold, RegistryCopy};
use crate::config::{EurekaUrl, NacosApi, NacosConfig};
use crate::instance::{Instance, SourceName};
use crate::routes::Feed;
use model::{bare_service, to_instance, InstanceList, NacosInstance, Place};
use naming::{name_services, ServiceRef};

/// Services asked for per page of the service list.
const PAGE_SIZE: u32 = 500;
/// Instance lists asked for at once (v1, v2: one request per service): a registry of
/// 1,000 services syncs in an eighth of the round trips, without a burst on the server.
const FETCH_CONCURRENCY: usize = 8;

/// Why a sync with one Nacos URL failed.
#[derive(Debug, thiserror::Error)]
pub enum NacosError {
    #[error("{url}: cannot connect: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: login refused (HTTP {status}): check username and password")]
    Login { url: String, status: u16 },
    #[error("{url}: unexpected answer: {reason}")]
    Parse { url: String, reason: String },
    #[error("{url}: code {code}: {message}")]
    Api {
        url: String,
        code: i64,
        message: String,
    },
}

/// One source's state, for the console, the API and the metrics.
#[derive(Debug, Clone, Serialize, Default)]
pub struct NacosStatus {
    pub name: String,
    pub urls: Vec<String>,
    pub api: &'static str,
    pub namespaces: Vec<String>,
    pub groups: Vec<String>,
    /// Unix seconds of the last successful sync.
    pub last_success: Option<u64>,
    pub last_error: Option<String>,
    pub syncs_ok: u64,
    pub syncs_failed: u64,
    pub consecutive_failures: u64,
    pub services: usize,
    pub instances: usize,
    /// Services whose protection threshold is reached: Nacos would answer their unhealthy
    /// instances as healthy to clients that ask for healthy ones only.
    pub protection_reached: Vec<String>,
    /// Services whose label another service of this source has (`orders` and `ORDERS`),
    /// with the label they get instead: `public/DEFAULT_GROUP/ORDERS: orders-1a2b3c
    /// (orders is public/DEFAULT_GROUP/orders)`.
    pub renamed: Vec<String>,
    /// Unix seconds since when instances missing from a sudden shrink are still routed.
    pub held_since: Option<u64>,
    /// How many instances are held that way.
    pub held_instances: usize,
}

#[derive(Default)]
pub struct NacosState(Mutex<NacosStatus>);

impl NacosState {
    pub fn snapshot(&self) -> NacosStatus {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NacosStatus> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Login {
    access_token: String,
    #[serde(default)]
    token_ttl: u64,
}

struct Token {
    value: String,
    renew_at: Instant,
}

/// One service as a sync listed it.
struct Listed<'a> {
    /// The place of its namespace and group in the configured order.
    rank: usize,
    namespace: &'a str,
    group: &'a str,
    /// Without `group@@`.
    name: String,
    hosts: Vec<NacosInstance>,
}

/// What one sync brought from one URL.
struct Fetched {
    instances: Vec<Instance>,
    services: usize,
    protected: Vec<String>,
    renamed: Vec<String>,
}

pub struct NacosSource {
    cfg: NacosConfig,
    source: SourceName,
    http: reqwest::Client,
    feed: Arc<Feed>,
    state: Arc<NacosState>,
    startup_wait: Duration,
    shrink_grace: Duration,
    token: tokio::sync::Mutex<Option<Token>>,
    /// What the server listed last, and the instances held after a sudden shrink.
    copy: Mutex<RegistryCopy>,
}

impl NacosSource {
    pub fn new(
        cfg: NacosConfig,
        feed: Arc<Feed>,
        startup_wait: Duration,
        shrink_grace: Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .build()?;
        let state = Arc::new(NacosState::default());
        *state.lock() = NacosStatus {
            name: cfg.name.clone(),
            urls: cfg.urls.iter().map(|u| u.base.clone()).collect(),
            api: match cfg.api {
                NacosApi::V1 => "v1",
                NacosApi::V2 => "v2",
                NacosApi::V3 => "v3",
            },
            namespaces: cfg.namespaces.clone(),
            groups: cfg.groups.clone(),
            ..NacosStatus::default()
        };
        Ok(NacosSource {
            source: SourceName::from(cfg.name.as_str()),
            cfg,
            http,
            feed,
            state,
            startup_wait,
            shrink_grace,
            token: tokio::sync::Mutex::new(None),
            copy: Mutex::new(RegistryCopy::default()),
        })
    }

    pub fn state(&self) -> Arc<NacosState> {
        self.state.clone()
    }

    fn error(&self, url: &str, e: reqwest::Error) -> NacosError {
        if e.is_timeout() {
            NacosError::Timeout {
                url: url.to_string(),
                timeout: self.cfg.timeout,
            }
        } else {
            // Without reqwest's copy of the URL: `url` is the request's without its query.
            NacosError::Connect {
                url: url.to_string(),
                reason: super::eureka::error_chain(&e.without_url()),
            }
        }
    }

    async fn login(&self, base: &EurekaUrl) -> Result<Option<String>, NacosError> {
        let (Some(user), Some(pass)) = (&self.cfg.username, &self.cfg.password) else {
            return Ok(None);
        };
        let mut token = self.token.lock().await;
        if let Some(t) = token.as_ref().filter(|t| Instant::now() < t.renew_at) {
            return Ok(Some(t.value.clone()));
        }
        let form = [("username", user.as_str()), ("password", pass.as_str())];
        let mut url = format!("{}/v1/auth/login", base.base);
        if self.cfg.api == NacosApi::V3 {
            url = format!("{}/v3/auth/user/login", base.base);
        }
        let mut resp = self
            .http
            .post(&url)
            .form(&form)
            .send()
            .await
            .map_err(|e| self.error(&url, e))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND && self.cfg.api == NacosApi::V3 {
            url = format!("{}/v1/auth/login", base.base);
            resp = self
                .http
                .post(&url)
                .form(&form)
                .send()
                .await
                .map_err(|e| self.error(&url, e))?;
        }
        let status = resp.status().as_u16();
        if !resp.status().is_success() {
            return Err(NacosError::Login { url, status });
        }
        let body = resp.bytes().await.map_err(|e| self.error(&url, e))?;
        let login: Login = serde_json::from_slice(&body).map_err(|e| NacosError::Parse {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        // Renewed at three quarters of its life (Nacos' default tokenTtl is 18000 s).
        let ttl = Duration::from_secs(login.token_ttl.max(4));
        *token = Some(Token {
            value: login.access_token.clone(),
            renew_at: Instant::now() + ttl * 3 / 4,
        });
        Ok(Some(login.access_token))
    }

    /// Everything from one URL: every namespace, group and service.
    async fn fetch(&self, base: &EurekaUrl) -> Result<Fetched, NacosError> {
        let token = self.login(base).await?;
        let token = token.as_deref();
        let mut listed = Vec::new();
        let mut protected = Vec::new();
        let mut places: Vec<(&str, &str)> = Vec::new();
        for ns in &self.cfg.namespaces {
            for group in &self.cfg.groups {
                places.push((ns, group));
            }
        }
        for (rank, (ns, group)) in places.into_iter().enumerate() {
            let mut these = Vec::new();
            if self.cfg.api == NacosApi::V3 {
                for s in self.services_v3(base, ns, group, token).await? {
                    let hosts = s.cluster_map.into_values().flat_map(|c| c.hosts);
                    these.push(Listed {
                        rank,
                        namespace: ns,
                        group,
                        name: bare_service(&s.service_name).to_string(),
                        hosts: hosts.collect(),
                    });
                }
            } else {
                let names = self.services(base, ns, group, token).await?;
                // A few services' instance lists at a time, answers kept in list order.
                let lists: Vec<(String, InstanceList)> = stream::iter(names)
                    .map(|service| async move {
                        let list = self.instances(base, ns, group, &service, token).await?;
                        Ok::<_, NacosError>((service, list))
                    })
                    .buffered(FETCH_CONCURRENCY)
                    .try_collect()
                    .await?;
                for (service, list) in lists {
                    if list.reach_protection_threshold {
                        protected.push(format!("{group}@@{service}"));
                    }
                    these.push(Listed {
                        rank,
                        namespace: ns,
                        group,
                        name: bare_service(&service).to_string(),
                        hosts: list.hosts,
                    });
                }
            }
            // By name within a namespace and group: the server's order may change.
            these.sort_by(|a, b| a.name.cmp(&b.name));
            listed.extend(these);
        }
        let refs: Vec<(usize, ServiceRef)> = listed
            .iter()
            .map(|l| {
                let r = ServiceRef {
                    namespace: l.namespace,
                    group: l.group,
                    name: &l.name,
                };
                (l.rank, r)
            })
            .collect();
        let (apps, renamed) = name_services(&refs);
        let mut instances = Vec::new();
        for (l, app) in listed.iter().zip(&apps) {
            let place = Place {
                namespace: l.namespace,
                group: l.group,
                service: &l.name,
                app,
            };
            instances.extend(
                l.hosts
                    .iter()
                    .map(|h| to_instance(&self.source, &place, h, &self.cfg.pod_name_keys)),
            );
        }
        Ok(Fetched {
            instances,
            services: listed.len(),
            protected,
            renamed,
        })
    }

    /// One sync: the first URL that answers completely wins; the set is published.
    async fn sync_once(&self) -> Result<(), Vec<NacosError>> {
        let mut errors = Vec::new();
        for base in &self.cfg.urls {
            match self.fetch(base).await {
                Ok(Fetched {
                    instances,
                    services,
                    protected,
                    renamed,
                }) => {
                    if renamed != self.state.lock().renamed {
                        for r in &renamed {
                            warn!(
                                "registry {}: a host label is taken, so this service gets another: {r}",
                                self.cfg.name
                            );
                        }
                    }
                    let listed = instances.len();
                    let mut copy = self.copy.lock().unwrap_or_else(|p| p.into_inner());
                    let change = copy.apply_full(instances, Instant::now(), self.shrink_grace);
                    // Borrowed: the copy keeps every instance, the table clones only new
                    // or changed ones.
                    self.feed.publish(&self.cfg.name, copy.routed());
                    log_hold(&change, &self.cfg.name, self.shrink_grace);
                    let mut s = self.state.lock();
                    s.held_instances = copy.held_len();
                    s.held_since = copy
                        .held_since()
                        .map(|t| unix_secs(SystemTime::now() - t.elapsed()));
                    s.last_success = Some(unix_secs(SystemTime::now()));
                    s.syncs_ok += 1;
                    s.consecutive_failures = 0;
                    s.services = services;
                    s.instances = listed;
                    s.protection_reached = protected;
                    s.renamed = renamed;
                    return Ok(());
                }
                Err(e) => errors.push(e),
            }
        }
        Err(errors)
    }

    async fn run(&self, mut shutdown: ShutdownWatch, mut ready: Option<ServiceReadyNotifier>) {
        let deadline = Instant::now() + self.startup_wait;
        loop {
            let result = self.sync_once().await;
            let ok = result.is_ok();
            match result {
                Ok(()) => {
                    if self.state.lock().last_error.take().is_some() {
                        info!("registry {}: syncing again", self.cfg.name);
                    }
                }
                Err(errors) => {
                    // A hold's grace does not run while the server cannot be reached.
                    self.copy
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .unanswered();
                    let text = errors
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; ");
                    let mut s = self.state.lock();
                    s.syncs_failed += 1;
                    s.consecutive_failures += 1;
                    if s.consecutive_failures == 1 {
                        warn!(
                            "registry {} sync failed (keeping its last good instances): {text}",
                            self.cfg.name
                        );
                    }
                    s.last_error = Some(text);
                }
            }
            if ok || Instant::now() >= deadline {
                if let Some(r) = ready.take() {
                    r.notify_ready();
                }
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(self.cfg.interval) => {}
            }
        }
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[async_trait]
impl BackgroundService for NacosSource {
    async fn start_with_ready_notifier(
        &self,
        shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        self.run(shutdown, Some(ready)).await;
    }
}
