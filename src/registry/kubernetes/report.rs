//! The Kubernetes source's state, and its status in the shape every source reports: one
//! line per reflector (what it watches, its copy, its last error) and the last publish.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{json, Value};

use super::mapping::Mapped;
use super::{lock, KubernetesSource};
use crate::config::KubernetesConfig;
use crate::kube::{Client, KubeError, ReflectorStatus};
use crate::registry::{rfc3339, Note, Report, Source, SourceStatus};

/// The kind of the Kubernetes source.
pub const KUBERNETES: &str = "kubernetes";
/// Skipped endpoints a console note names (the API lists more).
const NOTE_SKIPPED: usize = 3;

/// What the last publish found, and the source's settings.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KubeStatus {
    pub name: String,
    pub api_url: String,
    pub namespaces: Vec<String>,
    pub label_selector: Option<String>,
    pub primary_port_name: Option<String>,
    #[serde(skip)]
    pub last_publish: Option<SystemTime>,
    pub publishes: u64,
    /// Errors of any reflector so far (each retried with backoff).
    pub errors: u64,
    pub services: usize,
    pub instances: usize,
    pub opted_out: Vec<String>,
    pub skipped: Vec<String>,
    pub skipped_total: usize,
    pub renamed: Vec<String>,
}

pub struct KubeState {
    reflectors: Vec<Arc<Mutex<ReflectorStatus>>>,
    client: Client,
    inner: Mutex<KubeStatus>,
}

impl KubeState {
    pub(super) fn new(
        cfg: &KubernetesConfig,
        api_url: String,
        client: Client,
        reflectors: Vec<Arc<Mutex<ReflectorStatus>>>,
    ) -> Self {
        KubeState {
            reflectors,
            client,
            inner: Mutex::new(KubeStatus {
                name: cfg.name.clone(),
                api_url,
                namespaces: cfg.namespaces.describe(),
                label_selector: cfg.label_selector.clone(),
                primary_port_name: cfg.primary_port_name.clone(),
                ..KubeStatus::default()
            }),
        }
    }

    pub(super) fn name(&self) -> String {
        lock(&self.inner).name.clone()
    }

    pub(super) fn published(&self, m: Mapped) {
        let mut s = lock(&self.inner);
        s.last_publish = Some(SystemTime::now());
        s.publishes += 1;
        s.services = m.services;
        s.instances = m.instances.len();
        s.opted_out = m.opted_out;
        s.skipped = m.skipped;
        s.skipped_total = m.skipped_total;
        s.renamed = m.renamed;
    }

    pub(super) fn failed(&self, _e: &KubeError) {
        lock(&self.inner).errors += 1;
    }

    pub fn snapshot(&self) -> KubeStatus {
        lock(&self.inner).clone()
    }

    pub fn reflectors(&self) -> Vec<ReflectorStatus> {
        self.reflectors.iter().map(|r| lock(r).clone()).collect()
    }
}

impl KubernetesSource {
    /// The source `app.rs` starts like any other.
    pub fn into_source(self) -> Source {
        Source {
            kind: KUBERNETES,
            name: self.cfg.name.clone(),
            report: self.state(),
            service: Box::new(self),
        }
    }
}

fn reflector_json(r: &ReflectorStatus) -> Value {
    json!({
        "what": r.what,
        "objects": r.objects,
        "resource_version": r.resource_version,
        "lists": r.lists,
        "watches": r.watches,
        "events": r.events,
        "last_error": r.last_error,
        "last_error_at": r.last_error_at.map(rfc3339),
        "consecutive_failures": r.consecutive_failures,
        "last_event_at": r.last_event_at.map(rfc3339),
    })
}

impl Report for KubeState {
    fn status(&self) -> SourceStatus {
        let s = self.snapshot();
        let reflectors = self.reflectors();
        // Errors of the reflectors failing now (a recovered one clears its own).
        let failing: Vec<String> = reflectors
            .iter()
            .filter(|r| r.consecutive_failures > 0)
            .filter_map(|r| Some(format!("{}: {}", r.what, r.last_error.as_ref()?)))
            .collect();
        let mut notes = Vec::new();
        let waiting: Vec<&str> = reflectors
            .iter()
            .filter(|r| r.lists == 0)
            .map(|r| r.what.as_str())
            .collect();
        if !waiting.is_empty() {
            notes.push(Note {
                text: format!("not listed yet: {}", waiting.join(", ")),
                title: "Each namespace is published once its Services and EndpointSlices are both listed".into(),
            });
        }
        if s.skipped_total > 0 {
            let shown: Vec<&str> = s
                .skipped
                .iter()
                .take(NOTE_SKIPPED)
                .map(String::as_str)
                .collect();
            notes.push(Note {
                text: format!(
                    "{} endpoint(s) skipped: {}{}",
                    s.skipped_total,
                    shown.join("; "),
                    if s.skipped_total > shown.len() { "; ..." } else { "" }
                ),
                title: "Endpoints without a Pod targetRef or an address, and slices without a usable port, are not routed (all of them in /api/v1/registry)".into(),
            });
        }
        if !s.renamed.is_empty() {
            notes.push(Note {
                text: format!("renamed: {}", s.renamed.join("; ")),
                title: "A pod name another instance's label has (a pod of the same name in an earlier namespace, or the pod in another Service) gets its namespace or Service in its label".into(),
            });
        }
        if !s.opted_out.is_empty() {
            notes.push(Note {
                text: format!(
                    "not exposed (xipgate.io/expose: \"false\"): {}",
                    s.opted_out.join(", ")
                ),
                title: "Services annotated xipgate.io/expose: \"false\" are left out".into(),
            });
        }
        let mut detail = serde_json::to_value(&s).unwrap_or_default();
        detail["reflectors"] = reflectors.iter().map(reflector_json).collect();
        detail["api_requests"] = json!(self.client.requests());
        detail["last_publish"] = json!(s.last_publish.map(rfc3339));
        SourceStatus {
            kind: KUBERNETES,
            name: s.name.clone(),
            endpoints: vec![s.api_url.clone()],
            last_success: s.last_publish,
            last_error: (!failing.is_empty()).then(|| failing.join("; ")),
            consecutive_failures: reflectors
                .iter()
                .map(|r| r.consecutive_failures)
                .max()
                .unwrap_or(0),
            syncs_ok: s.publishes,
            syncs_failed: s.errors,
            services: s.services,
            instances: s.instances,
            held_instances: 0,
            notes,
            detail,
        }
    }
}
