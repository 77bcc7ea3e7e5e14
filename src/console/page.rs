//! The console page: server-rendered from `templates/console.html` (askama checks the
//! template against these view structs at compile time, and escapes every value).
//!
//! The page is complete without JavaScript: `?q=` filters on the server (rows that do not
//! match get the `hidden` attribute). The page's small script does the same filtering as
//! the user types, and refreshes the summary and the table in place every few seconds.

use std::sync::Arc;
use std::time::SystemTime;

use askama::Template;
use bytes::Bytes;

use super::api::format_time;
use super::{Console, Links};
use crate::answer::Answer;
use crate::registry::{Status, SyncStatus};
use crate::routes::{Service, Target};

/// Seconds between the script's in-place refreshes; slower for a large registry, whose
/// page is a few megabytes.
fn refresh_secs(instances: usize) -> u32 {
    match instances {
        0..=1000 => 5,
        1001..=5000 => 15,
        _ => 30,
    }
}

#[derive(Template)]
#[template(path = "console.html")]
struct Page {
    version: &'static str,
    refresh_secs: u32,
    sources: Vec<String>,
    banner: Option<Banner>,
    last_success: String,
    last_success_at: String,
    last_error: Option<String>,
    syncs_ok: u64,
    syncs_failed: u64,
    /// `<domain>[:port]`: what every name on the page ends with.
    names: String,
    services_count: usize,
    instances_count: usize,
    /// (status, how many), statuses present only.
    status_counts: Vec<(&'static str, usize)>,
    skipped: Vec<String>,
    services: Vec<ServiceView>,
    filter: String,
    /// `?token=` as the request gave it, so the no-JavaScript filter form keeps it.
    token: Option<String>,
    shown: usize,
    generated: String,
    /// HTTPS: one line per certificate served, e.g. `*.example.com (expires in 60 days)`.
    tls_certs: Vec<String>,
    /// HTTPS problems: certificate files that would not load, failed ACME orders,
    /// unverified upstream TLS.
    tls_notes: Vec<String>,
    /// Whether Eureka is a source (else its sync line is not shown).
    eureka: bool,
    /// One line per Nacos source.
    nacos: Vec<NacosView>,
}

struct NacosView {
    name: String,
    urls: String,
    instances: usize,
    last_success: String,
    error: Option<String>,
    protection: Vec<String>,
}

struct Banner {
    level: &'static str,
    text: String,
}

struct ServiceView {
    name: String,
    label: String,
    url: String,
    /// The URL as shown: no scheme, no trailing slash.
    url_text: String,
    counts: Vec<(&'static str, usize)>,
    total: usize,
    routable: bool,
    /// What the filter matches for the whole service (lower case).
    key: String,
    hidden: bool,
    instances: Vec<InstanceView>,
}

struct InstanceView {
    /// The registry it came from, when not Eureka.
    source: Option<String>,
    instance_id: String,
    label: String,
    url: String,
    address: String,
    secure_port: Option<u16>,
    status: &'static str,
    /// An operator's override, shown beside the status: the server has already folded
    /// it into `status` (which wins when the instance itself reports DOWN or STARTING).
    overridden: Option<&'static str>,
    zone: String,
    last_renewal: String,
    last_renewal_at: String,
    status_page: Option<String>,
    health_check: Option<String>,
    blocked: Option<String>,
    /// What the filter matches for this row (lower case).
    key: String,
    hidden: bool,
}

fn age(t: SystemTime) -> String {
    let secs = t.elapsed().map_or(0, |d| d.as_secs());
    match secs {
        0..=119 => format!("{secs}s ago"),
        120..=7199 => format!("{}m ago", secs / 60),
        7200..=172_799 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

fn counts<'a>(targets: impl Iterator<Item = &'a Arc<Target>>) -> Vec<(&'static str, usize)> {
    let mut c = [0usize; 5];
    for t in targets {
        c[Status::ALL
            .iter()
            .position(|s| *s == t.instance.status)
            .unwrap_or(4)] += 1;
    }
    Status::ALL
        .iter()
        .zip(c)
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| (s.as_str(), n))
        .collect()
}

/// A URL as shown: no scheme, no trailing slash.
fn bare(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// The filter: every whitespace-separated term must occur somewhere in the text.
fn matches(terms: &[String], text: &str) -> bool {
    terms.iter().all(|t| text.contains(t.as_str()))
}

fn instance_view(t: &Target, links: &Links, service_key: &str, terms: &[String]) -> InstanceView {
    let i = &t.instance;
    let renewal = t.last_renewal_ms.load(std::sync::atomic::Ordering::Relaxed);
    let renewed =
        (renewal > 0).then(|| SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(renewal));
    let address = i
        .port
        .map_or_else(|| i.ip_addr.clone(), |p| format!("{}:{p}", i.ip_addr));
    let edge = |u: &Option<String>| u.as_deref().and_then(|u| links.rewrite(u, &t.label));
    let zone = i.zone().unwrap_or("").to_string();
    let key = format!(
        "{} {} {} {} {} {}",
        t.label, i.instance_id, address, i.status, zone, i.source
    )
    .to_lowercase();
    let hidden = !matches(terms, &format!("{service_key} {key}"));
    InstanceView {
        source: (&*i.source != "eureka").then(|| i.source.to_string()),
        instance_id: i.instance_id.clone(),
        label: t.label.clone(),
        url: links.url(&t.label),
        address,
        secure_port: i.secure_port,
        status: i.status.as_str(),
        overridden: i.overridden_status.map(|o| o.as_str()),
        zone,
        last_renewal: renewed.map(age).unwrap_or_default(),
        last_renewal_at: renewed.map(format_time).unwrap_or_default(),
        status_page: edge(&i.status_page_url),
        health_check: edge(&i.health_check_url),
        blocked: t.upstream.as_ref().err().map(ToString::to_string),
        key,
        hidden,
    }
}

fn service_view(s: &Service, links: &Links, terms: &[String]) -> ServiceView {
    let key = format!("{} {}", s.app, s.label).to_lowercase();
    let instances: Vec<InstanceView> = s
        .instances
        .iter()
        .map(|t| instance_view(t, links, &key, terms))
        .collect();
    let url = links.url(&s.label);
    ServiceView {
        name: s.app.clone(),
        label: s.label.clone(),
        url_text: bare(&url),
        url,
        counts: counts(s.instances.iter()),
        total: s.instances.len(),
        routable: s.has_eligible(),
        hidden: !instances.iter().any(|i| !i.hidden),
        key,
        instances,
    }
}

/// The banner over the page: never loaded, registry empty, or syncs failing.
fn banner(sync: &SyncStatus, loaded: bool) -> Option<Banner> {
    if !loaded {
        return Some(Banner {
            level: "error",
            text: format!(
                "The registry has never been loaded, so nothing is routed yet{}",
                sync.last_error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
        });
    }
    if sync.held_since.is_some() {
        return Some(Banner {
            level: "warn",
            text: format!(
                "Eureka suddenly lists fewer than half of the instances it listed (a restarted Eureka refills as clients renew): the {} missing instance{} still routed as last seen, since {}.",
                sync.held_instances,
                if sync.held_instances == 1 { " is" } else { "s are" },
                sync.held_since.map(age).unwrap_or_default()
            ),
        });
    }
    (sync.consecutive_failures > 0).then(|| Banner {
        level: "warn",
        text: format!(
            "Registry is stale: Eureka is unreachable or failing ({} attempt{} in a row). Showing and routing the last good registry{}.",
            sync.consecutive_failures,
            if sync.consecutive_failures == 1 { "" } else { "s" },
            sync.last_success.map(|t| format!(" from {}", age(t))).unwrap_or_default()
        ),
    })
}

fn tls_certs(console: &Console) -> Vec<String> {
    console
        .tls_status()
        .iter()
        .filter_map(|c| {
            let days = c.seconds_left? / 86_400;
            Some(format!(
                "{} ({}, expires in {days} days)",
                c.names.join(", "),
                match c.origin {
                    crate::tls::Origin::Acme => "ACME",
                    crate::tls::Origin::File => "file",
                }
            ))
        })
        .collect()
}

fn tls_notes(console: &Console) -> Vec<String> {
    let mut notes: Vec<String> = console
        .tls_status()
        .into_iter()
        .filter_map(|c| {
            let e = c.error?;
            Some(if c.names.is_empty() {
                format!("Certificate {}: {e}", c.cert_file)
            } else {
                format!(
                    "Certificate {}: {e}; still serving the one loaded before",
                    c.cert_file
                )
            })
        })
        .collect();
    for d in console.acme.iter().flat_map(|a| a.snapshot()) {
        if let Some(e) = d.last_error {
            notes.push(format!(
                "ACME for *.{}: the last order failed ({e}); the current certificate stays, and it is tried again",
                d.domain
            ));
        }
    }
    if !console.upstream_tls_verify {
        notes.push(
            "TLS to instances is not verified (xipgate.upstream.tls.verify: false)".to_string(),
        );
    }
    notes
}

pub fn render(console: &Console, links: &Links, query: &str) -> Answer {
    let sync = console.sync.snapshot();
    let loaded = console.table.is_loaded();
    let param = |name: &str| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let filter = param("q").unwrap_or_default();
    let terms: Vec<String> = filter
        .to_lowercase()
        .split_whitespace()
        .map(String::from)
        .collect();
    let table = console.table.services();
    let all = || table.iter().flat_map(|s| s.instances.iter());
    let services: Vec<ServiceView> = table
        .iter()
        .map(|s| service_view(s, links, &terms))
        .collect();
    let page = Page {
        version: env!("CARGO_PKG_VERSION"),
        refresh_secs: refresh_secs(all().count()),
        sources: sync.sources.clone(),
        banner: banner(&sync, loaded),
        last_success: sync.last_success.map(age).unwrap_or_else(|| "never".into()),
        last_success_at: sync.last_success.map(format_time).unwrap_or_default(),
        last_error: sync
            .last_error
            .clone()
            .filter(|_| sync.consecutive_failures > 0),
        syncs_ok: sync.syncs_ok,
        syncs_failed: sync.syncs_failed,
        names: bare(&links.url("")).trim_start_matches('.').to_string(),
        services_count: services.len(),
        instances_count: all().count(),
        status_counts: counts(all()),
        skipped: sync.skipped,
        shown: services
            .iter()
            .flat_map(|s| &s.instances)
            .filter(|i| !i.hidden)
            .count(),
        services,
        filter,
        token: param("token"),
        generated: format_time(SystemTime::now()),
        tls_certs: tls_certs(console),
        tls_notes: tls_notes(console),
        eureka: console.eureka,
        nacos: console
            .nacos
            .iter()
            .map(|n| {
                let n = n.snapshot();
                NacosView {
                    name: n.name,
                    urls: n.urls.join(", "),
                    instances: n.instances,
                    last_success: n
                        .last_success
                        .map(|t| age(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(t)))
                        .unwrap_or_else(|| "never".into()),
                    error: n.last_error.filter(|_| n.consecutive_failures > 0),
                    protection: n.protection_reached,
                }
            })
            .collect(),
    };
    match page.render() {
        Ok(html) => Answer::bytes(200, "text/html; charset=utf-8", Bytes::from(html)),
        Err(e) => super::api::error(500, format!("rendering the page failed: {e}")),
    }
}

#[cfg(test)]
mod tests;
