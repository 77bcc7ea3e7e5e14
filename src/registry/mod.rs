//! The registry sources, side by side: Eureka (`eureka/`), Nacos (`nacos/`) and
//! Kubernetes (`kubernetes/`), each a
//! folder behind one small interface, [`Source`].
//!
//! How a source plugs in (the next one is its folder, a config section and one line in
//! `app.rs` where the sources are built):
//!
//! - **Publish whole sets.** Each sync publishes every instance the source knows, as
//!   one set, through [`Feed::publish`](crate::routes::Feed::publish) under the source's
//!   name (`feed.publish(&name, instances)`). The Feed merges the sources by rank (the
//!   order of `RegistryConfig::source_names`, so a new source adds its names there); a
//!   source never touches the routing table or another source's instances.
//! - **Keep the last good set.** A sync that fails, or answers partly, publishes
//!   nothing: the last good set stays routed. A registry that suddenly lists fewer than
//!   half of what it listed may be held for `xipgate.registry.shrink_grace`, as Eureka
//!   and Nacos do (their `RegistryCopy`).
//! - **Report through the interface.** A source is built as a [`Source`]: its kind and
//!   name, the [`BackgroundService`] that syncs (it signals ready once the first sync
//!   succeeded, or after `startup_wait`: the proxy starts only when every source has),
//!   and a [`Report`] the console, `/api/v1/registry` (`registries: [...]`) and the
//!   metrics (`xipgate_registry_source_*`) read as a [`SourceStatus`], whatever the
//!   kind. Endpoints are shown, so they carry no credentials.

mod eureka;
mod kubernetes;
mod nacos;

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::{
    background_service, BackgroundService, GenBackgroundService,
};
use pingora_core::services::ServiceReadyNotifier;
use serde_json::{json, Value};

pub use crate::instance::{Instance, InstanceKey, Metadata, Status};
pub use crate::kube::ConnectionError as KubeConnectionError;
pub use eureka::parse;
pub use eureka::EUREKA;
pub use eureka::{
    apps_hashcode, EurekaClient, FetchError, RegistrySync, Snapshot, SyncError, SyncState,
    SyncStatus, SHRINK_HOLD_BELOW,
};
pub use kubernetes::{KubeState, KubeStatus, KubernetesSource, KUBERNETES, PUBLISH_EVERY};
pub use nacos::{NacosError, NacosSource, NacosState, NacosStatus, NACOS};

/// The background service a source syncs in.
pub type SyncService = Box<dyn BackgroundService + Send + Sync>;

/// One registry source, as `app.rs` starts it and the console lists it.
pub struct Source {
    /// `eureka`, `nacos`, `kubernetes`: what kind of registry it reads.
    pub kind: &'static str,
    /// Its name: the Feed's rank name, the `source` of its instances.
    pub name: String,
    /// Started once as a Pingora background service (see [`Source::into_service`]).
    pub service: SyncService,
    /// Its status, read by the console, the API and the metrics.
    pub report: Arc<dyn Report>,
}

impl Source {
    /// The source's sync as a service `Server::add_service` takes: `<name> sync`.
    pub fn into_service(self) -> GenBackgroundService<Started> {
        background_service(&format!("{} sync", self.name), Started(self.service))
    }
}

/// A source's [`SyncService`] as Pingora runs it (readiness passed through).
pub struct Started(SyncService);

#[async_trait]
impl BackgroundService for Started {
    async fn start_with_ready_notifier(
        &self,
        shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        self.0.start_with_ready_notifier(shutdown, ready).await;
    }
}

/// What a source says about itself.
pub trait Report: Send + Sync {
    fn status(&self) -> SourceStatus;
}

/// A source's state, the same for every kind; what only one kind has is in `detail`.
#[derive(Debug, Clone, Default)]
pub struct SourceStatus {
    pub kind: &'static str,
    pub name: String,
    /// Where it reads from, without credentials.
    pub endpoints: Vec<String>,
    pub last_success: Option<SystemTime>,
    pub last_error: Option<String>,
    pub consecutive_failures: u64,
    pub syncs_ok: u64,
    pub syncs_failed: u64,
    /// Services and instances it listed at its last successful sync.
    pub services: usize,
    pub instances: usize,
    /// Instances missing from a sudden shrink, still routed as last seen.
    pub held_instances: usize,
    /// Problems worth a line on the console (each with a longer explanation).
    pub notes: Vec<Note>,
    /// The kind's own status as JSON (`/api/v1/registry` shows it as is).
    pub detail: Value,
}

/// A problem a source shows on the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    /// Why it matters, on hover.
    pub title: String,
}

impl SourceStatus {
    /// The status as `/api/v1/registry` lists it in `registries`.
    pub fn to_json(&self) -> Value {
        json!({
            "kind": self.kind,
            "name": self.name,
            "endpoints": self.endpoints,
            "last_success": self.last_success.map(rfc3339),
            "last_success_age_seconds": self.last_success.and_then(|t| SystemTime::now().duration_since(t).ok()).map(|d| d.as_secs()),
            "last_error": self.last_error,
            "consecutive_failures": self.consecutive_failures,
            "syncs_ok": self.syncs_ok,
            "syncs_failed": self.syncs_failed,
            "services": self.services,
            "instances": self.instances,
            "held_instances": self.held_instances,
            "notes": self.notes.iter().map(|n| &n.text).collect::<Vec<_>>(),
            "detail": self.detail,
        })
    }
}

/// `2024-05-01T12:00:00Z`, as every time in the API.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
