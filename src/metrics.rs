//! Prometheus metrics. Request metrics are labelled by service label only (never by the
//! raw Host, which a client controls), so their cardinality is bounded by the registry;
//! a service that leaves the registry loses its series at the next scrape.
//!
//! Counters that follow a count kept elsewhere (syncs, fetches, bytes: the sync status
//! the API shows) are real counters, never reset: a scrape adds what the count grew by
//! since the last one, one scrape at a time, so two scrapers at once (an HA Prometheus
//! pair) never see one go down.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::registry::{Status, SyncStatus};
use crate::routes::RouteTable;

/// Upstream latency buckets, seconds: 1 ms to 30 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The `service` label of a request that reached no service (no route): kept at every
/// scrape.
pub const NO_SERVICE: &str = "-";

/// Status classes, the `class` label of `requests_total`.
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

fn class_index(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100 - 1),
        _ => 5,
    }
}

/// [`Metrics::for_service`]: series are created on first use, as with `with_label_values`.
pub struct ServiceMetrics {
    service: String,
    requests: [OnceLock<IntCounter>; 6],
    latency: OnceLock<Histogram>,
}

impl ServiceMetrics {
    pub fn observe(&self, metrics: &Metrics, status: u16, upstream: Option<Duration>) {
        let class = class_index(status);
        self.requests[class]
            .get_or_init(|| {
                metrics
                    .requests
                    .with_label_values(&[self.service.as_str(), CLASSES[class]])
            })
            .inc();
        if let Some(d) = upstream {
            self.latency
                .get_or_init(|| {
                    metrics
                        .upstream_latency
                        .with_label_values(&[self.service.as_str()])
                })
                .observe(d.as_secs_f64());
        }
    }
}

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub upstream_latency: HistogramVec,
    retries: IntCounterVec,
    ejections: IntCounterVec,
    ejected: IntGaugeVec,
    syncs: IntCounterVec,
    instances: IntGaugeVec,
    sync_age: prometheus::Gauge,
    registry_bytes: prometheus::IntGauge,
    fetches: IntCounterVec,
    wire_bytes: prometheus::IntCounter,
    held: prometheus::IntGauge,
    /// Access records dropped because the file writer fell behind (`xipgate.log.access_file`).
    pub access_log_dropped: IntCounter,
    cert_expiry: IntGaugeVec,
    source_instances: IntGaugeVec,
    source_held: IntGaugeVec,
    source_syncs: IntCounterVec,
    access_decisions: IntCounterVec,
    access_basic: IntCounterVec,
    /// The basic check's counters, followed at each scrape (`xipgate.access.basic`).
    basic_stats: OnceLock<std::sync::Arc<crate::access::basic::BasicStats>>,
    access_bearer: IntCounterVec,
    /// The bearer check's counters, followed at each scrape (`xipgate.access.bearer`).
    bearer_stats: OnceLock<std::sync::Arc<crate::access::bearer::BearerStats>>,
    /// One scrape at a time: its refresh and its reading are one step.
    scrape: Mutex<()>,
}

/// One Nacos source's figures at a scrape.
#[derive(Debug, Clone)]
pub struct SourceFigures<'a> {
    pub name: &'a str,
    /// Instances it listed at its last successful sync.
    pub instances: usize,
    /// Instances missing from a sudden shrink and still routed.
    pub held: usize,
    pub syncs_ok: u64,
    pub syncs_failed: u64,
}

/// What a scrape shows besides the live request metrics, read from the status.
#[derive(Debug, Clone)]
pub struct Scrape<'a> {
    pub sync: &'a SyncStatus,
    pub sources: Vec<SourceFigures<'a>>,
    /// Served certificates: (first name, seconds left).
    pub certs: Vec<(&'a str, i64)>,
}

/// Adds to `counter` what `total` (a count that only grows) grew by since it was last
/// followed: the counter is never reset.
fn follow(counter: &IntCounter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

/// Removes the series of `vec` whose `service` label is neither live nor [`NO_SERVICE`].
fn drop_services_gone<T: MetricVecBuilder>(vec: &MetricVec<T>, live: &HashSet<&str>) {
    for family in vec.collect() {
        for m in family.get_metric() {
            let labels: HashMap<&str, &str> = m
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            let gone = labels
                .get("service")
                .is_some_and(|s| *s != NO_SERVICE && !live.contains(s));
            if gone {
                // Absent already only if another remover won: nothing to do then.
                let _ = vec.remove(&labels);
            }
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("xipgate".into()), None).expect("a static prefix is valid");
        let requests = IntCounterVec::new(
            Opts::new("requests_total", "Requests by service label and status class (2xx..5xx; 'none' when the client left)"),
            &["service", "class"],
        )
        .expect("static metric definition");
        let upstream_latency = HistogramVec::new(
            HistogramOpts::new(
                "upstream_latency_seconds",
                "Time from choosing an instance to its response header",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["service"],
        )
        .expect("static metric definition");
        let retries = IntCounterVec::new(
            Opts::new("retries_total", "Upstream retries on another try"),
            &["service"],
        )
        .expect("static metric definition");
        let ejections = IntCounterVec::new(
            Opts::new(
                "balance_ejections_total",
                "Instances taken out of their service host's rotation by passive health (xipgate.balance.passive)",
            ),
            &["service"],
        )
        .expect("static metric definition");
        let ejected = IntGaugeVec::new(
            Opts::new(
                "balance_ejected_instances",
                "Instances out of their service host's rotation by passive health now, for services with xipgate.balance.passive",
            ),
            &["service"],
        )
        .expect("static metric definition");
        let syncs = IntCounterVec::new(
            Opts::new("registry_syncs_total", "Registry syncs by result"),
            &["result"],
        )
        .expect("static metric definition");
        let instances = IntGaugeVec::new(
            Opts::new("instances", "Registered instances by status"),
            &["status"],
        )
        .expect("static metric definition");
        let sync_age = prometheus::Gauge::new(
            "registry_last_success_age_seconds",
            "Seconds since the last successful registry sync (-1 before the first)",
        )
        .expect("static metric definition");
        let registry_bytes = prometheus::IntGauge::new(
            "registry_last_body_bytes",
            "Size of the last registry body fetched",
        )
        .expect("static metric definition");
        let fetches = IntCounterVec::new(
            Opts::new(
                "registry_fetches_total",
                "Registry fetches applied, by kind (full: /apps, delta: /apps/delta)",
            ),
            &["kind"],
        )
        .expect("static metric definition");
        let wire_bytes = prometheus::IntCounter::new(
            "registry_received_bytes_total",
            "Registry body bytes received on the wire (compressed where the server compressed)",
        )
        .expect("static metric definition");
        let held = prometheus::IntGauge::new(
            "registry_held_instances",
            "Instances missing from a suddenly shrunken registry and still routed (xipgate.registry.shrink_grace)",
        )
        .expect("static metric definition");
        let access_log_dropped = IntCounter::new(
            "access_log_dropped_total",
            "Access-log records dropped because the file writer fell behind",
        )
        .expect("static metric definition");
        let cert_expiry = IntGaugeVec::new(
            Opts::new(
                "tls_certificate_expiry_seconds",
                "Seconds until each served certificate expires, by its first name (negative: expired)",
            ),
            &["name"],
        )
        .expect("static metric definition");
        let source_instances = IntGaugeVec::new(
            Opts::new(
                "registry_source_instances",
                "Instances each Nacos source listed at its last successful sync",
            ),
            &["source"],
        )
        .expect("static metric definition");
        let source_held = IntGaugeVec::new(
            Opts::new(
                "registry_source_held_instances",
                "Instances missing from a Nacos source's suddenly shrunken list and still routed (xipgate.registry.shrink_grace)",
            ),
            &["source"],
        )
        .expect("static metric definition");
        let source_syncs = IntCounterVec::new(
            Opts::new(
                "registry_source_syncs_total",
                "Syncs of each Nacos source by result",
            ),
            &["source", "result"],
        )
        .expect("static metric definition");
        let access_decisions = IntCounterVec::new(
            Opts::new(
                "access_decisions_total",
                "xipgate.access decisions by rule and outcome (allow, deny, unauthorized, login, bad_path)",
            ),
            &["rule", "outcome"],
        )
        .expect("static metric definition");
        let access_basic = IntCounterVec::new(
            Opts::new(
                "access_basic_checks_total",
                "basic credentials checked (xipgate.access.basic): bcrypt run, answered from the cache of successful checks, refused",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let access_bearer = IntCounterVec::new(
            Opts::new(
                "access_bearer_checks_total",
                "bearer tokens checked (xipgate.access.bearer): signature verified, answered from the cache of verified tokens, refused",
            ),
            &["result"],
        )
        .expect("static metric definition");
        for c in [
            Box::new(access_decisions.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(access_basic.clone()),
            Box::new(access_bearer.clone()),
            Box::new(access_log_dropped.clone()),
            Box::new(source_instances.clone()),
            Box::new(source_syncs.clone()),
            Box::new(source_held.clone()),
            Box::new(cert_expiry.clone()),
            Box::new(requests.clone()),
            Box::new(fetches.clone()),
            Box::new(wire_bytes.clone()),
            Box::new(held.clone()),
            Box::new(upstream_latency.clone()),
            Box::new(retries.clone()),
            Box::new(ejections.clone()),
            Box::new(ejected.clone()),
            Box::new(syncs.clone()),
            Box::new(instances.clone()),
            Box::new(sync_age.clone()),
            Box::new(registry_bytes.clone()),
        ] {
            registry
                .register(c)
                .expect("each metric is registered once");
        }
        Metrics {
            registry,
            requests,
            upstream_latency,
            retries,
            ejections,
            ejected,
            syncs,
            instances,
            sync_age,
            registry_bytes,
            fetches,
            wire_bytes,
            held,
            access_log_dropped,
            cert_expiry,
            source_instances,
            source_held,
            source_syncs,
            access_decisions,
            access_basic,
            basic_stats: OnceLock::new(),
            access_bearer,
            bearer_stats: OnceLock::new(),
            scrape: Mutex::new(()),
        }
    }

    pub fn observe_request(&self, service: &str, status: u16, upstream: Option<Duration>) {
        let class = CLASSES[class_index(status)];
        self.requests.with_label_values(&[service, class]).inc();
        if let Some(d) = upstream {
            self.upstream_latency
                .with_label_values(&[service])
                .observe(d.as_secs_f64());
        }
    }

    /// One `xipgate.access` decision (`rule`: a label bounded by the configuration).
    /// `xipgate_access_basic_checks_total` follows these counters from now on.
    pub fn follow_basic(&self, stats: std::sync::Arc<crate::access::basic::BasicStats>) {
        let _ = self.basic_stats.set(stats);
    }

    /// `xipgate_access_bearer_checks_total` follows these counters from now on.
    pub fn follow_bearer(&self, stats: std::sync::Arc<crate::access::bearer::BearerStats>) {
        let _ = self.bearer_stats.set(stats);
    }

    pub fn count_access(&self, rule: &str, outcome: &str) {
        self.access_decisions
            .with_label_values(&[rule, outcome])
            .inc();
    }

    /// One more try of a request to `service` after a failed one.
    pub fn count_retry(&self, service: &str) {
        self.retries.with_label_values(&[service]).inc();
    }

    /// Passive health took an instance of `service` out of its rotation.
    pub fn count_ejection(&self, service: &str) {
        self.ejections.with_label_values(&[service]).inc();
    }

    /// The request metrics of one service, resolved once: a connection that sends many
    /// requests to one host keeps these instead of looking the labels up every time.
    pub fn for_service(&self, service: &str) -> ServiceMetrics {
        ServiceMetrics {
            service: service.to_string(),
            requests: Default::default(),
            latency: OnceLock::new(),
        }
    }

    /// Renders the text format, refreshing what is computed at scrape time: gauges, the
    /// counters that follow the status, and the series of services that left.
    pub fn render(&self, table: &RouteTable, scrape: &Scrape) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = self.basic_stats.get() {
            use std::sync::atomic::Ordering::Relaxed;
            for (result, n) in [
                ("bcrypt", &b.bcrypt),
                ("cached", &b.cached),
                ("refused", &b.refused),
            ] {
                follow(
                    &self.access_basic.with_label_values(&[result]),
                    n.load(Relaxed),
                );
            }
        }
        if let Some(b) = self.bearer_stats.get() {
            use std::sync::atomic::Ordering::Relaxed;
            for (result, n) in [
                ("verified", &b.verified),
                ("cached", &b.cached),
                ("refused", &b.refused),
            ] {
                follow(
                    &self.access_bearer.with_label_values(&[result]),
                    n.load(Relaxed),
                );
            }
        }
        let sync = scrape.sync;
        let mut counts = [0i64; 5];
        for t in table.instances() {
            counts[Status::ALL
                .iter()
                .position(|s| *s == t.instance.status)
                .unwrap_or(4)] += 1;
        }
        for (s, n) in Status::ALL.iter().zip(counts) {
            self.instances.with_label_values(&[s.as_str()]).set(n);
        }
        follow(&self.syncs.with_label_values(&["ok"]), sync.syncs_ok);
        follow(&self.syncs.with_label_values(&["error"]), sync.syncs_failed);
        self.sync_age.set(
            sync.last_success
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .map_or(-1.0, |d| d.as_secs_f64()),
        );
        self.registry_bytes.set(sync.last_bytes as i64);
        for (kind, n) in [("full", sync.full_fetches), ("delta", sync.delta_fetches)] {
            follow(&self.fetches.with_label_values(&[kind]), n);
        }
        follow(&self.wire_bytes, sync.bytes_total);
        self.held.set(sync.held_instances as i64);
        for s in &scrape.sources {
            let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            self.source_instances
                .with_label_values(&[s.name])
                .set(gauge(s.instances));
            self.source_held
                .with_label_values(&[s.name])
                .set(gauge(s.held));
            for (result, n) in [("ok", s.syncs_ok), ("error", s.syncs_failed)] {
                follow(&self.source_syncs.with_label_values(&[s.name, result]), n);
            }
        }
        // A replaced certificate's old name disappears (no other scrape runs meanwhile).
        self.cert_expiry.reset();
        for (name, secs) in &scrape.certs {
            self.cert_expiry.with_label_values(&[name]).set(*secs);
        }
        let services = table.services();
        let live: HashSet<&str> = services.iter().map(|s| s.label.as_str()).collect();
        drop_services_gone(&self.requests, &live);
        drop_services_gone(&self.upstream_latency, &live);
        drop_services_gone(&self.retries, &live);
        drop_services_gone(&self.ejections, &live);
        self.ejected.reset();
        let now = crate::balance::now_ms();
        for s in services
            .iter()
            .filter(|s| s.plan().policy().passive.is_some())
        {
            let out = s.instances.iter().filter(|t| t.health.ejected(now)).count();
            self.ejected
                .with_label_values(&[s.label.as_str()])
                .set(i64::try_from(out).unwrap_or(i64::MAX));
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding to a Vec cannot fail");
        String::from_utf8_lossy(&out).into_owned()
    }
}
