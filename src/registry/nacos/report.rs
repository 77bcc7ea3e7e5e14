//! Nacos as a [`Source`]: its sync, and its status in the shape every source reports.

use std::time::{Duration, UNIX_EPOCH};

use super::{NacosSource, NacosState};
use crate::registry::{Note, Report, Source, SourceStatus};

/// The kind of every Nacos source.
pub const NACOS: &str = "nacos";

impl NacosSource {
    /// The sync as a source `app.rs` starts like any other.
    pub fn into_source(self) -> Source {
        Source {
            kind: NACOS,
            name: self.cfg.name.clone(),
            report: self.state(),
            service: Box::new(self),
        }
    }
}

impl Report for NacosState {
    fn status(&self) -> SourceStatus {
        let n = self.snapshot();
        let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
        let mut notes = Vec::new();
        if !n.protection_reached.is_empty() {
            notes.push(Note {
                text: format!(
                    "protection threshold reached: {}",
                    n.protection_reached.join(" ")
                ),
                title: "Nacos reports these services' unhealthy instances as healthy to clients asking for healthy ones; xipgate routes by each instance's own health".into(),
            });
        }
        if let Some(since) = n.held_since {
            notes.push(Note {
                text: format!(
                    "suddenly lists fewer than half of its instances: {} missing still routed as last seen, since {}",
                    n.held_instances,
                    crate::registry::rfc3339(at(since))
                ),
                title: "xipgate.registry.shrink_grace: a restarted Nacos node answers with few instances until its data is back".into(),
            });
        }
        if !n.renamed.is_empty() {
            notes.push(Note {
                text: format!("renamed: {}", n.renamed.join("; ")),
                title: "Two services of this source want one host label (host names ignore case): the later gets a hash of its namespace, group and name".into(),
            });
        }
        SourceStatus {
            kind: NACOS,
            name: n.name.clone(),
            endpoints: n.urls.clone(),
            last_success: n.last_success.map(at),
            last_error: n.last_error.clone(),
            consecutive_failures: n.consecutive_failures,
            syncs_ok: n.syncs_ok,
            syncs_failed: n.syncs_failed,
            services: n.services,
            instances: n.instances,
            held_instances: n.held_instances,
            notes,
            detail: serde_json::to_value(&n).unwrap_or_default(),
        }
    }
}
