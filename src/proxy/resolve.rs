//! From a request's Host to a route, or to the answer the edge gives instead: decided
//! here for both engines.

use super::ProxyShared;
use crate::answer::Answer;
use crate::names::{self, HostError};
use crate::routes::Route;

/// The answer before the first registry has been loaded.
const NOT_LOADED: &str = "the registry is not loaded yet (the console's /api/v1/registry says why)";

/// Resolves a raw Host value to (normalised host, label, route), or to the answer the edge
/// gives instead: 400 malformed, 404 outside the domains or unknown, 503 not loaded or no
/// UP instance, 403 a refused instance.
pub fn resolve_host(shared: &ProxyShared, raw: &str) -> Result<(String, String, Route), Answer> {
    if raw.trim().is_empty() {
        return Err(host_answer(HostError::Missing));
    }
    let host = names::normalize_host(raw).map_err(host_answer)?;
    let (raw_label, _) = names::split_host(&host, &shared.settings.domains).map_err(host_answer)?;
    let label = names::normalize_request_label(raw_label).ok_or_else(|| {
        Answer::text(
            400,
            format!(
                "invalid Host: label '{}' names nothing",
                names::printable(raw_label)
            ),
        )
    })?;
    if !shared.table.is_loaded() {
        // Any client gets this answer: the registry's error (its URLs, hosts and ports)
        // stays on the console, which can be restricted.
        return Err(Answer::text(503, NOT_LOADED).retry_after(5));
    }
    let route = shared.table.lookup(&label).ok_or_else(|| {
        Answer::text(
            404,
            format!(
                "no service or instance is called '{label}'. List what exists with GET /api/v1/services on the console{}",
                shared.settings.console_host.as_deref().map(|h| format!(" (http://{h}/)")).unwrap_or_default()
            ),
        )
    })?;
    match &route {
        Route::Instance(t) => {
            if let Err(refusal) = &t.upstream {
                return Err(Answer::text(
                    403,
                    format!(
                        "instance '{}' is not proxied: {refusal}",
                        t.instance.instance_id
                    ),
                ));
            }
        }
        Route::Service(s) => {
            if !s.has_eligible() {
                return Err(Answer::text(
                    503,
                    format!(
                        "service '{}' has no UP instance that may be proxied ({} registered)",
                        s.app,
                        s.instances.len()
                    ),
                )
                .retry_after(5));
            }
        }
    }
    Ok((host, label, route))
}

pub(super) fn host_answer(e: HostError) -> Answer {
    match e {
        HostError::OutsideDomains(_) => Answer::text(404, e.to_string()),
        _ => Answer::text(400, e.to_string()),
    }
}
