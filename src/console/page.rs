//! The console page: server-rendered from `templates/console.html` (askama checks the
//! template against these view structs at compile time).

use std::time::SystemTime;

use askama::Template;
use bytes::Bytes;

use super::api::format_time;
use super::{Console, Links};
use crate::proxy::Answer;
use crate::registry::Status;
use crate::routes::{Service, Target};

#[derive(Template)]
#[template(path = "console.html")]
struct Page {
    sources: String,
    banner: Option<Banner>,
    last_success: String,
    last_error: Option<String>,
    services_count: usize,
    instances_count: usize,
    status_counts: Vec<(&'static str, usize)>,
    skipped: Vec<String>,
    services: Vec<ServiceView>,
    filter: String,
    generated: String,
}

struct Banner {
    level: &'static str,
    text: String,
}

struct ServiceView {
    name: String,
    label: String,
    url: String,
    counts: Vec<(&'static str, usize)>,
    instances: Vec<InstanceView>,
}

struct InstanceView {
    instance_id: String,
    label: String,
    url: String,
    address: String,
    status: &'static str,
    up: bool,
    zone: String,
    last_renewal: String,
    status_page: Option<String>,
    health_check: Option<String>,
    blocked: Option<String>,
}

fn age(t: SystemTime) -> String {
    let secs = SystemTime::now().duration_since(t).map(|d| d.as_secs()).unwrap_or(0);
    match secs {
        0..=119 => format!("{secs}s ago"),
        120..=7199 => format!("{}m ago", secs / 60),
        _ => format!("{}h ago", secs / 3600),
    }
}

fn counts<'a>(targets: impl Iterator<Item = &'a std::sync::Arc<Target>>) -> Vec<(&'static str, usize)> {
    let mut c = [0usize; 5];
    for t in targets {
        c[Status::ALL.iter().position(|s| *s == t.instance.status).unwrap_or(4)] += 1;
    }
    Status::ALL.iter().zip(c).filter(|(_, n)| *n > 0).map(|(s, n)| (s.as_str(), n)).collect()
}

fn instance_view(t: &Target, links: &Links) -> InstanceView {
    let i = &t.instance;
    let renewal = t.last_renewal_ms.load(std::sync::atomic::Ordering::Relaxed);
    let mut address = match i.port {
        Some(p) => format!("{}:{p}", i.ip_addr),
        None => i.ip_addr.clone(),
    };
    if let Some(sp) = i.secure_port {
        address.push_str(&format!(" (secure {sp})"));
    }
    InstanceView {
        instance_id: i.instance_id.clone(),
        label: t.label.clone(),
        url: links.url(&t.label),
        address,
        status: i.status.as_str(),
        up: i.status == Status::Up,
        zone: i.zone().unwrap_or("").to_string(),
        last_renewal: if renewal > 0 {
            age(SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(renewal))
        } else {
            String::new()
        },
        status_page: i.status_page_url.as_deref().and_then(|u| links.rewrite(u, &t.label)),
        health_check: i.health_check_url.as_deref().and_then(|u| links.rewrite(u, &t.label)),
        blocked: t.upstream.as_ref().err().map(ToString::to_string),
    }
}

fn service_view(s: &Service, links: &Links) -> ServiceView {
    ServiceView {
        name: s.app.clone(),
        label: s.label.clone(),
        url: links.url(&s.label),
        counts: counts(s.instances.iter()),
        instances: s.instances.iter().map(|t| instance_view(t, links)).collect(),
    }
}

pub fn render(console: &Console, links: &Links, query: &str) -> Answer {
    let sync = console.sync.snapshot();
    let loaded = console.table.is_loaded();
    let banner = if !loaded {
        Some(Banner {
            level: "error",
            text: format!(
                "The registry has never been loaded{}",
                sync.last_error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
            ),
        })
    } else if sync.empty_since.is_some() {
        Some(Banner {
            level: "warn",
            text: "Eureka suddenly lists no instances: the last good table is kept for now and still routed.".into(),
        })
    } else if sync.consecutive_failures > 0 {
        Some(Banner {
            level: "warn",
            text: format!(
                "Eureka is unreachable or failing ({} attempts in a row): showing and routing the last good registry{}.",
                sync.consecutive_failures,
                sync.last_success.map(|t| format!(" from {}", age(t))).unwrap_or_default()
            ),
        })
    } else {
        None
    };
    let services = console.table.services();
    let instances = console.table.instances();
    let filter = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let page = Page {
        sources: sync.sources.join(", "),
        banner,
        last_success: sync.last_success.map(|t| format!("{} ({})", format_time(t), age(t))).unwrap_or_else(|| "never".into()),
        last_error: sync.last_error.filter(|_| sync.consecutive_failures > 0 || sync.empty_since.is_some()),
        services_count: services.len(),
        instances_count: instances.len(),
        status_counts: counts(instances.iter()),
        skipped: sync.skipped,
        services: services.iter().map(|s| service_view(s, links)).collect(),
        filter,
        generated: format_time(SystemTime::now()),
    };
    match page.render() {
        Ok(html) => Answer::bytes(200, "text/html; charset=utf-8", Bytes::from(html)),
        Err(e) => super::api::error(500, format!("rendering the page failed: {e}")),
    }
}
