//! A Kubernetes API server as a registry source: the pods behind Services, from
//! EndpointSlices (`discovery.k8s.io/v1`) and Services (`v1`) kept by list-then-watch
//! [`Reflector`]s, mapped to instances by [`mapping`] and published through the
//! [`Feed`] like every other source.
//!
//! - One pair of reflectors (Services, EndpointSlices) per configured namespace, or one
//!   pair for all namespaces with `*` (kube-system left out by a field selector unless it
//!   is listed). Services are listed with `label_selector`; slices with the
//!   `kubernetes.io/service-name` label, and only those of a listed Service are exposed.
//! - Changes are coalesced: the first change after a quiet spell is published at once,
//!   the next ones at most every [`PUBLISH_EVERY`], each time the whole set (a rollout of
//!   a hundred pods is a few publishes, not hundreds).
//! - A reflector that fails keeps its copy (it never empties it), so an API server that
//!   is down or refuses leaves the table as it was; its error (a 403 names the verb and
//!   resource RBAC refused) is on the console and in `/api/v1/registry`.
//! - Start-up as the other sources: ready once every reflector has listed and the set is
//!   published, or after `startup_wait` (then the namespaces whose both reflectors have
//!   listed are published, the others as soon as they list).

mod mapping;
mod model;
mod report;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use log::{info, warn};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::services::ServiceReadyNotifier;
use tokio::sync::Notify;

use crate::config::{KubernetesConfig, Namespaces, SYSTEM_NAMESPACE};
use crate::instance::SourceName;
use crate::kube::{
    Client, Connection, ConnectionError, KubeError, ListParams, Reflector, ReflectorStatus,
    Resource, SharedStore,
};
use crate::routes::Feed;
use mapping::{map, Rules};
use model::{EndpointSlice, Service, SERVICE_NAME_LABEL};
pub use report::{KubeState, KubeStatus, KUBERNETES};

/// The whole set is published at most this often while changes keep coming.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(200);

/// The two copies of one namespace (or of all of them).
struct Pair {
    services: SharedStore<Service>,
    slices: SharedStore<EndpointSlice>,
    service_status: Arc<Mutex<ReflectorStatus>>,
    slice_status: Arc<Mutex<ReflectorStatus>>,
}

impl Pair {
    fn listed(&self) -> bool {
        let lists = |s: &Arc<Mutex<ReflectorStatus>>| lock(s).lists;
        lists(&self.service_status) > 0 && lists(&self.slice_status) > 0
    }
}

type Reflectors = (Vec<Reflector<Service>>, Vec<Reflector<EndpointSlice>>);

pub struct KubernetesSource {
    cfg: KubernetesConfig,
    source: SourceName,
    feed: Arc<Feed>,
    state: Arc<KubeState>,
    startup_wait: Duration,
    pairs: Vec<Pair>,
    /// Taken when the service starts (a reflector runs by value).
    reflectors: Mutex<Option<Reflectors>>,
}

impl KubernetesSource {
    pub fn new(
        cfg: KubernetesConfig,
        feed: Arc<Feed>,
        startup_wait: Duration,
    ) -> Result<Self, ConnectionError> {
        let conn = Connection::resolve(
            cfg.api_url.clone(),
            cfg.token_file.clone(),
            cfg.ca_file.clone(),
        )?;
        let client = Client::new(&conn)?;
        let (namespaces, field_selector): (Vec<Option<String>>, Option<String>) =
            match &cfg.namespaces {
                Namespaces::Listed(list) => (list.iter().cloned().map(Some).collect(), None),
                Namespaces::All { kube_system: true } => (vec![None], None),
                Namespaces::All { kube_system: false } => (
                    vec![None],
                    Some(format!("metadata.namespace!={SYSTEM_NAMESPACE}")),
                ),
            };
        let service_params = ListParams {
            label_selector: cfg.label_selector.clone(),
            field_selector: field_selector.clone(),
        };
        let slice_params = ListParams {
            label_selector: Some(SERVICE_NAME_LABEL.to_string()),
            field_selector,
        };
        let mut services = Vec::new();
        let mut slices = Vec::new();
        let mut pairs = Vec::new();
        for ns in namespaces {
            let s = Reflector::<Service>::new(
                client.clone(),
                Resource::SERVICES,
                ns.clone(),
                service_params.clone(),
            );
            let e = Reflector::<EndpointSlice>::new(
                client.clone(),
                Resource::ENDPOINT_SLICES,
                ns,
                slice_params.clone(),
            );
            pairs.push(Pair {
                services: s.shared(),
                slices: e.shared(),
                service_status: s.status(),
                slice_status: e.status(),
            });
            services.push(s);
            slices.push(e);
        }
        let statuses = pairs
            .iter()
            .flat_map(|p| [p.service_status.clone(), p.slice_status.clone()])
            .collect();
        let state = Arc::new(KubeState::new(&cfg, conn.url.clone(), client, statuses));
        Ok(KubernetesSource {
            source: SourceName::from(cfg.name.as_str()),
            cfg,
            feed,
            state,
            startup_wait,
            pairs,
            reflectors: Mutex::new(Some((services, slices))),
        })
    }

    pub fn state(&self) -> Arc<KubeState> {
        self.state.clone()
    }

    /// Maps the copies of every namespace whose two reflectors have listed (all of them
    /// unless `partial`) and publishes the set. False when there was nothing to publish.
    fn publish(&self, partial: bool) -> bool {
        let ready: Vec<&Pair> = self.pairs.iter().filter(|p| p.listed()).collect();
        if ready.is_empty() || (!partial && ready.len() < self.pairs.len()) {
            return false;
        }
        let rules = Rules {
            source: &self.source,
            namespaces: &self.cfg.namespaces,
            primary_port_name: self.cfg.primary_port_name.as_deref(),
        };
        let mapped = {
            let services: Vec<_> = ready.iter().map(|p| read(&p.services)).collect();
            let slices: Vec<_> = ready.iter().map(|p| read(&p.slices)).collect();
            map(
                &rules,
                services.iter().flat_map(|s| s.objects.values()),
                slices.iter().flat_map(|s| s.objects.values()),
            )
        };
        self.feed.publish(&self.cfg.name, &mapped.instances);
        self.state.published(mapped);
        true
    }

    async fn run(&self, mut shutdown: ShutdownWatch, ready: ServiceReadyNotifier) {
        let Some((services, slices)) = lock(&self.reflectors).take() else {
            return;
        };
        let changes = Arc::new(Notify::new());
        for r in services {
            tokio::spawn(reflect(
                r,
                changes.clone(),
                self.state.clone(),
                shutdown.clone(),
            ));
        }
        for r in slices {
            tokio::spawn(reflect(
                r,
                changes.clone(),
                self.state.clone(),
                shutdown.clone(),
            ));
        }
        let deadline = tokio::time::Instant::from_std(Instant::now() + self.startup_wait);
        let mut ready = Some(ready);
        let published = coalesce(
            &changes,
            PUBLISH_EVERY,
            deadline,
            |past_deadline| {
                let done = self.publish(past_deadline);
                if done || past_deadline {
                    if let Some(r) = ready.take() {
                        if !done {
                            warn!(
                                "registry {}: not every namespace listed within startup_wait; taking traffic without them",
                                self.cfg.name
                            );
                        }
                        r.notify_ready();
                    }
                }
                done
            },
            &mut shutdown,
        )
        .await;
        info!(
            "registry {}: stopped after {published} publishes",
            self.cfg.name
        );
    }
}

/// One reflector until shutdown: each change wakes the publisher, each error is noted.
async fn reflect<T: crate::kube::Object>(
    r: Reflector<T>,
    changes: Arc<Notify>,
    state: Arc<KubeState>,
    shutdown: ShutdownWatch,
) {
    let status = r.status();
    r.run(
        |_| changes.notify_one(),
        |e: &KubeError| {
            let what = lock(&status).what.clone();
            if lock(&status).consecutive_failures == 0 {
                warn!(
                    "registry {}: {what}: {e} (keeping the last good set)",
                    state.name()
                );
            }
            state.failed(e);
        },
        shutdown,
    )
    .await;
}

/// Calls `publish` after changes: at once after a quiet spell, then at most once every
/// `every` while they keep coming, so the last change is always published. Before
/// `deadline` it is called with `false` (publish only when complete), from then on with
/// `true`; once at the deadline even without a change. Returns how many calls published.
async fn coalesce(
    changes: &Notify,
    every: Duration,
    deadline: tokio::time::Instant,
    mut publish: impl FnMut(bool) -> bool,
    shutdown: &mut ShutdownWatch,
) -> u64 {
    let mut published = 0;
    let mut waited_out = false;
    loop {
        tokio::select! {
            _ = changes.notified() => {}
            _ = tokio::time::sleep_until(deadline), if !waited_out => {}
            _ = shutdown.changed() => return published,
        }
        let past = tokio::time::Instant::now() >= deadline;
        waited_out |= past;
        if publish(past) {
            published += 1;
            // Changes that come meanwhile leave one permit: one publish after the pause.
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return published,
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(s: &SharedStore<T>) -> std::sync::RwLockReadGuard<'_, crate::kube::Store<T>> {
    s.read().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl BackgroundService for KubernetesSource {
    async fn start_with_ready_notifier(
        &self,
        shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        self.run(shutdown, ready).await;
    }
}

#[cfg(test)]
mod tests;
