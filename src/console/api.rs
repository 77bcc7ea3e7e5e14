//! JSON API: the older design's `/api/services*` endpoints with their shapes kept, and the
//! richer versioned `/api/v1/*`. Errors are `{"error": "...", "status": N}`.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{json, Value};

use super::listing::{Query, API_LIMIT};
use super::{Console, Links};
use crate::answer::Answer;
use crate::names;
use crate::registry::{Instance, Metadata, SourceStatus, Status, EUREKA, NACOS};
use crate::routes::{Route, Service, Target};
use crate::traffic::Kind;

const JSON: &str = "application/json";
const NEED_APP: &str = "missing query parameter 'servicename' (an application name)";
const NEED_INSTANCE: &str = "missing query parameter 'servicename' (an instance name)";

fn not_found(what: &str, name: &str) -> Answer {
    error(
        404,
        format!("no {what} is called '{}'", names::printable(name)),
    )
}

pub fn json_answer(status: u16, value: &Value) -> Answer {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    Answer::bytes(status, JSON, Bytes::from(body))
}

pub fn error(status: u16, message: impl Into<String>) -> Answer {
    json_answer(
        status,
        &json!({ "error": message.into(), "status": status }),
    )
}

/// Open to anyone (probes need it), so it says ready or not and a count, nothing more:
/// the registry's URLs and errors are on `/api/v1/registry`, behind the console's access.
pub fn readyz(console: &Console) -> Answer {
    let loaded = console.table.is_loaded();
    let body = json!({
        "ready": loaded,
        "instances": console.table.instance_count(),
    });
    json_answer(if loaded { 200 } else { 503 }, &body)
}

pub async fn route(console: &Console, links: &Links, path: &str, query: &str) -> Answer {
    // An empty `servicename=` is as missing as no parameter (and `/apps/` would be the
    // whole registry).
    let param = |name: &str| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_string())
    };
    let decoded: Vec<String> = path
        .trim_end_matches('/')
        .split('/')
        .skip(1)
        .map(names::percent_decode)
        .collect();
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    match segments.as_slice() {
        ["api", "services"] => match view(query) {
            Ok(q) => legacy_all(console, links, &q),
            Err(e) => e,
        },
        ["api", "services", "ips"] => match param("servicename") {
            Some(app) => legacy_ips(console, links, &app).await,
            None => error(400, NEED_APP),
        },
        // `endpoint` was looked up live in the older design; fetching the whole registry
        // on every call made one client able to load Eureka at will. The table is the
        // registry as last synced, so both answer from it.
        ["api", "services", "endpoint" | "endpointcache"] => match param("servicename") {
            Some(name) => match find_instance(console, &name) {
                Some(t) => endpoint_text(&t.instance),
                None => not_found("instance", &name),
            },
            None => error(400, NEED_INSTANCE),
        },
        ["api", "v1", "services"] => match view(query) {
            Ok(q) => paged::services(console, links, &q),
            Err(e) => e,
        },
        ["api", "v1", "services", name] => match (find_service(console, name), view(query)) {
            (Some(s), Ok(q)) => paged::service(console, links, &s, &q),
            (None, _) => not_found("service", name),
            (_, Err(e)) => e,
        },
        ["api", "v1", "instances"] => match view(query) {
            Ok(q) => paged::instances(console, links, &q),
            Err(e) => e,
        },
        ["api", "v1", "instances", label] => match find_instance(console, label) {
            Some(t) => {
                let mut v = instance_json(console, &t, links);
                v["traffic"] = json!(console.traffic.view(Kind::Instance, &t.label));
                json_answer(200, &v)
            }
            None => not_found("instance", label),
        },
        ["api", "v1", "traffic"] => match view(query) {
            Ok(q) => paged::traffic(console, &q),
            Err(e) => e,
        },
        ["api", "v1", "registry"] => {
            // Eureka's state is the body itself (as before); every source, Eureka
            // included, is in `registries`, and Nacos' own states in `nacos` (as before).
            let mut body = console.sync.snapshot().to_json();
            body["loaded"] = json!(console.table.is_loaded());
            body["instances"] = json!(console.table.instance_count());
            body["services"] = json!(console.table.services().len());
            let statuses = console.statuses();
            body["eureka"] = json!(statuses.iter().any(|s| s.kind == EUREKA));
            body["nacos"] = json!(statuses
                .iter()
                .filter(|s| s.kind == NACOS)
                .map(|s| &s.detail)
                .collect::<Vec<_>>());
            body["registries"] = json!(statuses
                .iter()
                .map(SourceStatus::to_json)
                .collect::<Vec<_>>());
            body["shadowed"] = json!(console.feed.shadowed());
            json_answer(200, &body)
        }
        ["api", "v1", "access", "explain"] => super::locks::explain(console, query),
        ["api", "v1", "access", "jwks.json"] => match &console.identity_jwks {
            Some(jwks) => Answer::bytes(200, "application/json", bytes::Bytes::from(jwks.clone())),
            None => error(
                404,
                "the edge signs no identity token (xipgate.access.identity.jwt is not configured)",
            ),
        },
        ["api", "v1", "tls"] => json_answer(
            200,
            &json!({
                "enabled": console.certs.is_some(),
                "certificates": console.tls_status(),
                "acme": console.acme.as_ref().map(|a| a.snapshot()),
                "acme_store": console.acme.as_ref().map(|a| a.store_status()),
                "upstream_verify": console.upstream_tls_verify,
            }),
        ),
        _ => error(
            404,
            format!(
                "no API endpoint at '{}'; see /api/v1/services",
                names::printable(path)
            ),
        ),
    }
}

/// The view a query asks for, or a 400 naming the bad parameter.
fn view(query: &str) -> Result<Query, Answer> {
    Query::parse(query).map_err(|e| error(400, e.to_string()))
}

/// The label the table gives an instance fetched live (collisions make it differ from
/// the plain [`names::instance_label`]); the plain label when the table does not know it.
fn live_label(console: &Console, i: &Instance) -> String {
    match console
        .table
        .lookup(&names::full_instance_label(&i.instance_id))
    {
        Some(Route::Instance(t)) if t.instance.instance_id == i.instance_id => t.label.clone(),
        _ => names::instance_label(&i.instance_id, &i.app),
    }
}

fn find_service(console: &Console, name: &str) -> Option<std::sync::Arc<Service>> {
    let label = names::normalize_request_label(name)?;
    match console.table.lookup(&label) {
        Some(Route::Service(s)) => Some(s),
        _ => console
            .table
            .services()
            .into_iter()
            .find(|s| s.label == names::service_label(name)),
    }
}

fn find_instance(console: &Console, name: &str) -> Option<std::sync::Arc<Target>> {
    let label = names::normalize_request_label(name)?;
    match console.table.lookup(&label) {
        Some(Route::Instance(t)) => Some(t),
        _ => None,
    }
}

/// `ip:port` as plain text, as the older design answered.
fn endpoint_text(i: &Instance) -> Answer {
    match i.port.or(i.secure_port) {
        Some(port) => Answer::bytes(
            200,
            "text/plain; charset=utf-8",
            Bytes::from(format!("{}:{port}", i.ip_addr)),
        ),
        None => error(
            404,
            format!("instance '{}' has no enabled port", i.instance_id),
        ),
    }
}

/// The older design's instance name: the instanceId with `:` and `-` replaced by `_`.
fn seed_name(instance_id: &str) -> String {
    instance_id.replace([':', '-'], "_")
}

fn legacy_entry(i: &Instance, label: &str, links: &Links) -> Value {
    let port = i.port.or(i.secure_port).unwrap_or(0);
    json!({
        "ip": i.ip_addr,
        "instance": format!("{}:{port}", i.ip_addr),
        "port": port.to_string(),
        "instancename": seed_name(&i.instance_id),
        "servicename": i.app,
        "xip": links.host(label),
    })
}

/// `{APP: [...]}` of UP instances (the older design listed UP ones only), `limit` of them
/// (default [`API_LIMIT`]) from `page`: a registry of at most that many UP instances is
/// answered whole, as before; a larger one a page at a time, in services' label order and
/// instanceId order within, the shape kept and the paging in headers: `X-Total-Count` and
/// `Link: <next>; rel="next"`.
fn legacy_all(console: &Console, links: &Links, q: &Query) -> Answer {
    let limit = q.limit.unwrap_or(API_LIMIT);
    let services = console.table.services();
    let up = || {
        services
            .iter()
            .flat_map(|s| s.instances.iter())
            .filter(|t| t.instance.status == Status::Up)
    };
    let total = up().count();
    let pages = total.div_ceil(limit).max(1);
    let page = q.page.min(pages);
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for t in up().skip((page - 1) * limit).take(limit) {
        out.entry(t.instance.app.clone())
            .or_default()
            .push(legacy_entry(&t.instance, &t.label, links));
    }
    let answer = json_answer(200, &json!(out)).header("x-total-count", total.into());
    if page >= pages {
        return answer;
    }
    let next = Query {
        page: page + 1,
        limit: Some(limit),
        token: q.token.clone(),
        ..Query::default()
    };
    let link = format!("</api/services?{}>; rel=\"next\"", next.query_string());
    match http::HeaderValue::from_str(&link) {
        Ok(link) => answer.header("link", link),
        Err(_) => answer,
    }
}

async fn legacy_ips(console: &Console, links: &Links, app: &str) -> Answer {
    match console.client.fetch_app(app).await {
        Ok(f) => {
            let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
            for i in f
                .snapshot
                .instances
                .iter()
                .filter(|i| i.status == Status::Up)
            {
                let label = live_label(console, i);
                out.entry(i.app.clone())
                    .or_default()
                    .push(legacy_entry(i, &label, links));
            }
            json_answer(200, &json!(out))
        }
        Err(errors) => fetch_error(errors, &format!("application '{}'", names::printable(app))),
    }
}

fn fetch_error(errors: Vec<crate::registry::FetchError>, what: &str) -> Answer {
    use crate::registry::FetchError;
    if errors
        .iter()
        .any(|e| matches!(e, FetchError::NotFound { .. }))
    {
        return error(404, format!("Eureka does not know {what}"));
    }
    let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
    error(
        502,
        format!("could not fetch {what} from Eureka: {}", all.join("; ")),
    )
}

fn counts_json<'a>(targets: impl Iterator<Item = &'a std::sync::Arc<Target>>) -> Value {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in targets {
        *counts.entry(t.instance.status.as_str()).or_default() += 1;
    }
    json!(counts)
}

fn service_json(console: &Console, s: &Service, links: &Links) -> Value {
    json!({
        "access": super::locks::lock_json(&super::locks::service_lock(console, s)),
        "name": s.app,
        "label": s.label,
        "url": links.url(&s.label),
        "instances_total": s.instances.len(),
        "instances_by_status": counts_json(s.instances.iter()),
        "balance": super::steering::service_json(s),
    })
}

pub fn instance_json(console: &Console, t: &Target, links: &Links) -> Value {
    let i = &t.instance;
    let renewal = t.last_renewal_ms.load(std::sync::atomic::Ordering::Relaxed);
    json!({
        "access": super::locks::lock_json(&super::locks::instance_lock(console, t)),
        "actuator_bases": &*t.actuator_bases,
        "instance_id": i.instance_id,
        "source": &*i.source,
        "label": t.label,
        "service": i.app,
        "service_label": &*t.service_label,
        "url": links.url(&t.label),
        "ip": i.ip_addr,
        "port": i.port,
        "secure_port": i.secure_port,
        "host_name": i.host_name,
        "status": i.status,
        "overridden_status": i.overridden_status,
        "zone": i.zone(),
        "weight": t.weight.shares(),
        "weight_problem": t.weight.problem.map(|p| p.to_string()),
        "ejected_until": super::steering::instance_ejected_until(t),
        "last_renewal": (renewal > 0).then(|| format_ms(renewal)),
        "status_page_url": i.status_page_url.as_deref().and_then(|u| links.rewrite(u, &t.label)),
        "health_check_url": i.health_check_url.as_deref().and_then(|u| links.rewrite(u, &t.label)),
        "blocked": t.upstream.as_ref().err().map(ToString::to_string),
        "metadata": shown_metadata(&i.metadata),
    })
}

/// Words in a metadata key that mark its value as a credential (Spring Boot Admin keeps
/// `user.password` there): the value is shown as `***`.
const SECRET_KEY_WORDS: [&str; 7] = [
    "password",
    "passwd",
    "secret",
    "token",
    "credential",
    "apikey",
    "api-key",
];

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('_', "-");
    SECRET_KEY_WORDS.iter().any(|w| key.contains(w))
}

/// An instance's metadata as the API shows it: values of secret-looking keys masked.
fn shown_metadata(metadata: &Metadata) -> BTreeMap<&str, &str> {
    metadata
        .iter()
        .map(|(k, v)| {
            let v = if is_secret_key(k) { "***" } else { v };
            (k, v)
        })
        .collect()
}

pub fn format_time(t: SystemTime) -> String {
    crate::registry::rfc3339(t)
}

fn format_ms(ms: u64) -> String {
    format_time(UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

mod paged;

#[cfg(test)]
pub(super) mod tests;
