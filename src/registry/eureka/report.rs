//! Eureka as a [`Source`]: its sync, and its status in the shape every source reports.

use std::time::SystemTime;

use serde_json::{json, Value};

use super::sync::{RegistrySync, SyncState, SyncStatus};
use crate::registry::{rfc3339, Report, Source, SourceStatus};

/// Eureka's kind and its name (one Eureka source: `xipgate.registry.eureka`).
pub const EUREKA: &str = "eureka";

impl RegistrySync {
    /// The sync as a source `app.rs` starts like any other.
    pub fn into_source(self) -> Source {
        Source {
            kind: EUREKA,
            name: EUREKA.into(),
            report: self.state(),
            service: Box::new(self),
        }
    }
}

impl Report for SyncState {
    fn status(&self) -> SourceStatus {
        let s = self.snapshot();
        SourceStatus {
            kind: EUREKA,
            name: EUREKA.into(),
            endpoints: s.sources.clone(),
            last_success: s.last_success,
            last_error: s.last_error.clone(),
            consecutive_failures: s.consecutive_failures,
            syncs_ok: s.syncs_ok,
            syncs_failed: s.syncs_failed,
            services: s.services,
            instances: s.instances,
            held_instances: s.held_instances,
            // The page's banner speaks of Eureka's hold and failures, as before.
            notes: Vec::new(),
            detail: s.to_json(),
        }
    }
}

impl SyncStatus {
    /// Eureka's status as `/api/v1/registry` has always shown it (at its top level).
    pub fn to_json(&self) -> Value {
        let s = self;
        json!({
            "sources": s.sources,
            "last_source": s.last_source,
            "last_attempt": s.last_attempt.map(rfc3339),
            "last_success": s.last_success.map(rfc3339),
            "last_success_age_seconds": s.last_success.and_then(|t| SystemTime::now().duration_since(t).ok()).map(|d| d.as_secs()),
            "last_error": s.last_error,
            "last_error_at": s.last_error_at.map(rfc3339),
            "consecutive_failures": s.consecutive_failures,
            "syncs_ok": s.syncs_ok,
            "syncs_failed": s.syncs_failed,
            "full_fetches": s.full_fetches,
            "delta_fetches": s.delta_fetches,
            "last_body_bytes": s.last_bytes,
            "skipped_instances": s.skipped,
            "skipped_sources": s.skipped_sources,
            "last_full_fetch_reason": s.last_full_fetch_reason,
            "bytes_total": s.bytes_total,
            "held_since": s.held_since.map(rfc3339),
            "held_instances": s.held_instances,
            // The name from before the hold covered a partial registry too.
            "empty_registry_since": s.held_since.map(rfc3339),
            "deltas_refused_until": s.deltas_refused_until.map(rfc3339),
        })
    }
}
