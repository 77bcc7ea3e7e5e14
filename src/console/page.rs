//! The console page: server-rendered from `templates/console.html` (askama checks the
//! template against these view structs at compile time, and escapes every value).
//!
//! What the page lists is [`listing::list`]'s answer: services first, a page of them at
//! a time, instances unfolded when the registry is small, when the filter (`?q=`, always
//! answered here, on the server) matches them, or when the user opens a service. So the
//! page stays small at any registry size. It is complete without JavaScript (every
//! control is a link or a form); the page's small script asks the server again as the
//! user types or unfolds, refreshes in place every few seconds, and redraws the traffic
//! charts from `/api/v1/traffic` every [`TRAFFIC_SECS`].

use std::sync::Arc;
use std::time::SystemTime;

use askama::Template;
use bytes::Bytes;

use super::api::format_time;
use super::listing::{self, Listed, Query, Sort};
use super::{Console, Links};
use crate::answer::Answer;
use crate::registry::{Status, SyncStatus};
use crate::routes::Target;
use crate::traffic::{Kind, SeriesView};

/// Seconds between the script's in-place refreshes of the whole page (a page is small
/// whatever the registry holds).
const REFRESH_SECS: u32 = 5;
/// Seconds between the script's redraws of the traffic charts.
pub const TRAFFIC_SECS: u32 = 2;

#[derive(Template)]
#[template(path = "console.html")]
struct Page {
    version: &'static str,
    refresh_secs: u32,
    traffic_secs: u32,
    banner: Option<Banner>,
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
    /// "12 of 100,000 instances match" when filtering.
    shown: String,
    /// The column headers' sort links, name first.
    sorts: Vec<SortLink>,
    /// "Services 101–200 of 1,000" and the links to the pages around this one.
    pager: Option<Pager>,
    /// One service's own view (`?service=`): a link back to the list.
    back: Option<String>,
    generated: String,
    /// HTTPS: one line per certificate served, e.g. `*.example.com (expires in 60 days)`.
    tls_certs: Vec<String>,
    /// HTTPS problems: certificate files that would not load, failed ACME orders,
    /// unverified upstream TLS.
    tls_notes: Vec<String>,
    /// One line per registry source, in rank order.
    sources: Vec<SourceView>,
    /// `xipgate.access` in one line; `open` marks an edge without rules.
    access: String,
    open: bool,
    /// With a login: who this browser's session says is signed in, or `nobody`.
    signed_in: Option<String>,
}

/// Which rule applies to `GET /` on a host, shown as a lock beside it.
struct LockView {
    rule: String,
    /// The decision's word (a CSS class): `allow`, `deny`, `unauthorized`, ...
    decision: &'static str,
    /// The whole explanation, on hover.
    title: String,
}

/// The lock of a host; `None` on an open edge (the header says so once).
fn lock_view(e: crate::access::Explanation) -> Option<LockView> {
    let rule = e.rule?;
    let mut title = format!(
        "GET / from an unknown client without credentials: {} ({}). {}",
        e.decision, e.status, e.why
    );
    if !e.needs.is_empty() {
        title.push_str(". Needs: ");
        title.push_str(&e.needs.join("; "));
    }
    Some(LockView {
        rule,
        decision: e.decision,
        title,
    })
}

/// One registry source's line, whatever its kind.
struct SourceView {
    /// `eureka`, `nacos`, ...
    kind: &'static str,
    /// `Eureka`, `Nacos`, ...
    label: String,
    /// Its name when it is not its kind's (`nacos-2`, `prod`).
    named: Option<String>,
    name: String,
    endpoints: String,
    instances: usize,
    last_success: String,
    last_success_at: String,
    syncs_ok: u64,
    syncs_failed: u64,
    /// The last error while it fails.
    error: Option<String>,
    notes: Vec<crate::registry::Note>,
}

fn source_view(s: crate::registry::SourceStatus) -> SourceView {
    let mut label = s.kind.to_string();
    if let Some(first) = label.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    SourceView {
        kind: s.kind,
        label,
        named: (s.name != s.kind).then(|| s.name.clone()),
        name: s.name,
        endpoints: s.endpoints.join(", "),
        instances: s.instances,
        last_success: s.last_success.map(age).unwrap_or_else(|| "never".into()),
        last_success_at: s.last_success.map(format_time).unwrap_or_default(),
        syncs_ok: s.syncs_ok,
        syncs_failed: s.syncs_failed,
        error: s.last_error.filter(|_| s.consecutive_failures > 0),
        notes: s.notes,
    }
}

struct SortLink {
    name: &'static str,
    title: &'static str,
    href: String,
    on: bool,
}

struct More {
    text: String,
    href: String,
}

struct Pager {
    text: String,
    prev: Option<String>,
    next: Option<String>,
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
    /// Its rows are on the page (else the toggle asks the server for them).
    expanded: bool,
    /// Where the toggle goes without JavaScript: this view with the service opened or
    /// closed.
    toggle: String,
    /// "48 more matching instances" and the link to the service's own view.
    more: Option<More>,
    traffic: SeriesView,
    instances: Vec<InstanceView>,
    lock: Option<LockView>,
    /// How its host chooses an instance (`xipgate.balance`): `sticky`, `canary 5% (1)`...
    steering: Vec<String>,
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
    traffic: SeriesView,
    lock: Option<LockView>,
    /// Its weight when not the default (or what is wrong with it).
    weight: Option<String>,
    /// Out of its service host's rotation (passive health) until when.
    ejected: Option<String>,
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

fn instance_view(console: &Console, t: &Target, links: &Links) -> InstanceView {
    let traffic = &console.traffic;
    let i = &t.instance;
    let renewal = t.last_renewal_ms.load(std::sync::atomic::Ordering::Relaxed);
    let renewed =
        (renewal > 0).then(|| SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(renewal));
    let address = i
        .port
        .map_or_else(|| i.ip_addr.clone(), |p| format!("{}:{p}", i.ip_addr));
    let edge = |u: &Option<String>| u.as_deref().and_then(|u| links.rewrite(u, &t.label));
    InstanceView {
        source: (&*i.source != "eureka").then(|| i.source.to_string()),
        instance_id: i.instance_id.clone(),
        label: t.label.clone(),
        url: links.url(&t.label),
        address,
        secure_port: i.secure_port,
        status: i.status.as_str(),
        overridden: i.overridden_status.map(|o| o.as_str()),
        zone: i.zone().unwrap_or("").to_string(),
        last_renewal: renewed.map(age).unwrap_or_default(),
        last_renewal_at: renewed.map(format_time).unwrap_or_default(),
        status_page: edge(&i.status_page_url),
        health_check: edge(&i.health_check_url),
        blocked: t.upstream.as_ref().err().map(ToString::to_string),
        traffic: traffic.view(Kind::Instance, &t.label),
        lock: lock_view(super::locks::instance_lock(console, t)),
        weight: super::steering::instance_weight(t),
        ejected: super::steering::instance_ejected(t),
    }
}

fn service_view(console: &Console, l: &Listed, links: &Links, query: &Query) -> ServiceView {
    let s = &l.service;
    let traffic = &console.traffic;
    let url = links.url(&s.label);
    let mut toggled = query.clone();
    if !toggled.open.remove(&s.label) {
        toggled.open.insert(s.label.clone());
    }
    let mut own = query.clone();
    own.service = Some(s.label.clone());
    own.page = 1;
    ServiceView {
        name: s.app.clone(),
        label: s.label.clone(),
        url_text: bare(&url),
        url,
        counts: counts(s.instances.iter()),
        total: s.instances.len(),
        routable: s.has_eligible(),
        expanded: l.expanded,
        toggle: toggled.href(),
        more: (l.more > 0).then(|| More {
            text: format!(
                "{} more matching instance{}",
                thousands(l.more),
                if l.more == 1 { "" } else { "s" }
            ),
            href: own.href(),
        }),
        traffic: traffic.view(Kind::Service, &s.label),
        instances: l
            .rows
            .iter()
            .map(|t| instance_view(console, t, links))
            .collect(),
        lock: lock_view(super::locks::service_lock(console, s)),
        steering: super::steering::service_tags(s),
    }
}

/// `12,345`
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (k, c) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn pager(l: &listing::Listing, query: &Query) -> Option<Pager> {
    if l.pages <= 1 {
        return None;
    }
    let (per, what, total) = match query.service {
        Some(_) => (listing::PAGE_INSTANCES, "Instances", l.matched_instances),
        None => (listing::PAGE_SERVICES, "Services", l.matched_services),
    };
    let first = (l.page - 1) * per + 1;
    let last = (l.page * per).min(total);
    let at = |page: usize| {
        let mut q = query.clone();
        q.page = page;
        // Another page shows other services: this page's unfolded ones mean nothing there.
        q.open.clear();
        q.href()
    };
    Some(Pager {
        text: format!(
            "{what} {}–{} of {}",
            thousands(first),
            thousands(last),
            thousands(total)
        ),
        prev: (l.page > 1).then(|| at(l.page - 1)),
        next: (l.page < l.pages).then(|| at(l.page + 1)),
    })
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

pub fn render(
    console: &Console,
    links: &Links,
    query: &str,
    who: Option<crate::access::Identity>,
) -> Answer {
    let q = match Query::parse(query) {
        Ok(q) => q,
        Err(e) => return super::api::error(400, e.to_string()),
    };
    let sync = console.sync.snapshot();
    let loaded = console.table.is_loaded();
    let table = console.table.services();
    let all = || table.iter().flat_map(|s| s.instances.iter());
    let instances_count = all().count();
    let listing = listing::list(&table, &console.traffic, &q);
    // Every link on the page repeats the view's parameters: of the unfolded services it
    // keeps only those on this page, which are all any link can show unfolded.
    let mut q = q;
    q.open
        .retain(|l| listing.services.iter().any(|s| s.service.label == *l));
    if let Some(label) = &q.service {
        if listing.services.is_empty() && q.terms.is_empty() {
            return super::api::error(
                404,
                format!("no service is called '{}'", crate::names::printable(label)),
            );
        }
    }
    let services: Vec<ServiceView> = listing
        .services
        .iter()
        .map(|l| service_view(console, l, links, &q))
        .collect();
    let sorts = Sort::ALL
        .iter()
        .map(|(name, sort)| {
            let mut s = q.clone();
            s.sort = *sort;
            s.page = 1;
            SortLink {
                name,
                title: match sort {
                    Sort::Name => "Instance",
                    Sort::Rps => "Req/s",
                    Sort::Errors => "Errors",
                    Sort::Latency => "p50 / p99",
                },
                href: s.href(),
                on: *sort == q.sort,
            }
        })
        .collect();
    let back = q.service.as_ref().map(|_| {
        let mut b = q.clone();
        b.service = None;
        b.page = 1;
        b.href()
    });
    let page = Page {
        version: env!("CARGO_PKG_VERSION"),
        refresh_secs: REFRESH_SECS,
        traffic_secs: TRAFFIC_SECS,
        banner: banner(&sync, loaded),
        names: bare(&links.url("")).trim_start_matches('.').to_string(),
        services_count: table.len(),
        instances_count,
        status_counts: counts(all()),
        skipped: sync.skipped,
        shown: if q.terms.is_empty() {
            String::new()
        } else {
            format!(
                "{} of {} instances match",
                thousands(listing.matched_instances),
                thousands(instances_count)
            )
        },
        sorts,
        pager: pager(&listing, &q),
        back,
        services,
        filter: q.q.clone(),
        token: q.token.clone(),
        generated: format_time(SystemTime::now()),
        tls_certs: tls_certs(console),
        tls_notes: tls_notes(console),
        access: console.access_summary.clone(),
        open: console.policy.rules.is_empty(),
        signed_in: console.policy.login.then(|| match who {
            Some(w) if w.groups.is_empty() => w.user,
            Some(w) => format!("{} ({})", w.user, w.groups.join(", ")),
            None => "nobody".into(),
        }),
        sources: console.statuses().into_iter().map(source_view).collect(),
    };
    match page.render() {
        Ok(html) => Answer::bytes(200, "text/html; charset=utf-8", Bytes::from(html)),
        Err(e) => super::api::error(500, format!("rendering the page failed: {e}")),
    }
}

#[cfg(test)]
mod tests;
