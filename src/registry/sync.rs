//! The background service that keeps the routing table in step with Eureka.
//!
//! Like a Eureka client: one full `/apps` fetch at start, then `/apps/delta` every
//! interval, checking the registry's `apps__hashcode` against our own copy and falling
//! back to a full fetch on a mismatch. On any error the last good table stays as it is:
//! a failed fetch never empties it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use log::{debug, info, warn};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::services::ServiceReadyNotifier;

use super::client::{EurekaClient, FetchError, Fetched};
use super::model::Instance;
use crate::config::RegistryConfig;
use crate::routes::{ApplyReport, RouteTable};

/// What the console, the API and the metrics show about syncing.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SyncStatus {
    /// Configured Eureka URLs, without credentials.
    pub sources: Vec<String>,
    /// The URL that answered last.
    pub last_source: Option<String>,
    pub last_attempt: Option<SystemTime>,
    pub last_success: Option<SystemTime>,
    pub last_error: Option<String>,
    pub last_error_at: Option<SystemTime>,
    pub consecutive_failures: u64,
    pub syncs_ok: u64,
    pub syncs_failed: u64,
    pub full_fetches: u64,
    pub delta_fetches: u64,
    /// Bytes of the last fetched body (decompressed).
    pub last_bytes: usize,
    pub bytes_total: u64,
    /// Instances the last fetch had to skip, with the reason.
    pub skipped: Vec<String>,
    /// Set while an empty registry is being ignored in favour of the last good table.
    pub empty_since: Option<SystemTime>,
    /// Errors of Eureka URLs skipped by failover in the last successful fetch.
    pub skipped_sources: Vec<String>,
    /// Duration of the last parse + apply.
    pub last_apply: Option<Duration>,
}

/// Shared between the sync service (writer) and the console (reader).
#[derive(Debug, Default)]
pub struct SyncState {
    status: Mutex<SyncStatus>,
}

impl SyncState {
    pub fn new(sources: Vec<String>) -> Self {
        SyncState {
            status: Mutex::new(SyncStatus {
                sources,
                ..SyncStatus::default()
            }),
        }
    }

    pub fn snapshot(&self) -> SyncStatus {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, SyncStatus> {
        // A panic while holding this lock cannot leave the status inconsistent in a way
        // that matters (it is informational), so a poisoned lock is used as is.
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct RegistrySync {
    client: EurekaClient,
    table: Arc<RouteTable>,
    state: Arc<SyncState>,
    cfg: RegistryConfig,
    /// Our copy of the registry by instanceId, the base deltas apply to.
    copy: tokio::sync::Mutex<Option<HashMap<String, Instance>>>,
}

impl RegistrySync {
    pub fn new(
        client: EurekaClient,
        table: Arc<RouteTable>,
        state: Arc<SyncState>,
        cfg: RegistryConfig,
    ) -> Self {
        RegistrySync {
            client,
            table,
            state,
            cfg,
            copy: tokio::sync::Mutex::new(None),
        }
    }

    /// One sync: a delta when possible, else a full fetch. Errors are recorded in the
    /// state and returned; the table is left as it was.
    pub async fn sync_once(&self) -> Result<ApplyReport, String> {
        self.state.lock().last_attempt = Some(SystemTime::now());
        let mut copy = self.copy.lock().await;
        let result = match copy.as_mut() {
            Some(current) if self.cfg.delta => match self.client.fetch_delta().await {
                Ok(f) => self.apply_delta(current, f).await,
                Err(errors) => Err(join(errors)),
            },
            _ => Err(String::new()),
        };
        let result = match result {
            Ok(Some(report)) => Ok(report),
            // No copy yet, delta off, delta failed or hash mismatch: full fetch.
            Ok(None) | Err(_) => {
                if let Err(e) = &result {
                    if !e.is_empty() {
                        debug!("delta sync failed, trying a full fetch: {e}");
                    }
                }
                match self.client.fetch_apps().await {
                    Ok(f) => self.apply_full(&mut copy, f),
                    Err(errors) => Err(join(errors)),
                }
            }
        };
        drop(copy);
        self.record(&result);
        result
    }

    /// Notes (and logs, once per change) the URLs failover had to skip.
    fn note_failover(&self, f: &Fetched) {
        let mut s = self.state.lock();
        if s.skipped_sources != f.skipped_sources {
            if !f.skipped_sources.is_empty() {
                warn!(
                    "registry: using {} after skipping: {}",
                    f.source,
                    f.skipped_sources.join("; ")
                );
            }
            s.skipped_sources = f.skipped_sources.clone();
        }
    }

    /// Applies a delta to our copy; `Ok(None)` when the hash says the copy has drifted.
    async fn apply_delta(
        &self,
        current: &mut HashMap<String, Instance>,
        f: Fetched,
    ) -> Result<Option<ApplyReport>, String> {
        let started = std::time::Instant::now();
        self.note_failover(&f);
        let changes = f.snapshot.instances.len() + f.snapshot.deleted.len();
        // The steady state is a delta with no changes: check the hash against the copy
        // as it is instead of cloning every instance first (milliseconds at 10,000).
        let next = (changes > 0).then(|| {
            let mut next = current.clone();
            for id in &f.snapshot.deleted {
                next.remove(id);
            }
            for inst in f.snapshot.instances {
                next.insert(inst.instance_id.clone(), inst);
            }
            next
        });
        let ours = apps_hashcode(next.as_ref().unwrap_or(current).values());
        // Eureka always sends the hash with a delta; a delta without one cannot be
        // checked, so it is not trusted (an HTML page that happens to parse is one).
        match f.snapshot.apps_hashcode.as_deref() {
            Some(theirs) if theirs == ours => {}
            theirs => {
                info!("registry hash mismatch after delta (theirs {theirs:?}, ours {ours}): full fetch");
                return Ok(None);
            }
        }
        {
            let mut s = self.state.lock();
            s.delta_fetches += 1;
            s.last_bytes = f.bytes;
            s.bytes_total += f.wire_bytes.unwrap_or(f.bytes as u64);
            s.last_source = Some(f.source);
        }
        let report = match next {
            None => ApplyReport {
                instances: self.table.instance_count(),
                services: self.table.service_count(),
                ..ApplyReport::default()
            },
            Some(next) => {
                let report = self.table.apply_borrowed(next.values());
                *current = next;
                report
            }
        };
        self.state.lock().last_apply = Some(started.elapsed());
        Ok(Some(report))
    }

    fn apply_full(
        &self,
        copy: &mut Option<HashMap<String, Instance>>,
        f: Fetched,
    ) -> Result<ApplyReport, String> {
        let started = std::time::Instant::now();
        self.note_failover(&f);
        {
            let mut s = self.state.lock();
            s.full_fetches += 1;
            s.last_bytes = f.bytes;
            s.bytes_total += f.wire_bytes.unwrap_or(f.bytes as u64);
            s.last_source = Some(f.source.clone());
            s.skipped = f.snapshot.skipped.clone();
        }
        if !f.snapshot.skipped.is_empty() {
            warn!(
                "{} instance(s) skipped in the registry from {}: {}",
                f.snapshot.skipped.len(),
                f.source,
                f.snapshot.skipped.join("; ")
            );
        }
        // A registry that suddenly lists nothing is more likely a broken or restarted
        // Eureka than a cluster that lost every service: keep routing for a while.
        let known = self.table.instance_count();
        if f.snapshot.instances.is_empty() && known > 0 {
            let since = *self
                .state
                .lock()
                .empty_since
                .get_or_insert_with(SystemTime::now);
            let waited = since.elapsed().unwrap_or_default();
            if waited < self.cfg.empty_grace {
                return Err(format!(
                    "{} listed no instances; keeping the {known} known instance(s) for up to {}s more (xipgate.registry.empty_grace)",
                    f.source,
                    (self.cfg.empty_grace - waited).as_secs()
                ));
            }
            warn!(
                "registry from {} has been empty for {}s: applying it",
                f.source,
                waited.as_secs()
            );
        }
        self.state.lock().empty_since = None;
        let map: HashMap<String, Instance> = f
            .snapshot
            .instances
            .into_iter()
            .map(|i| (i.instance_id.clone(), i))
            .collect();
        // Borrowed: the copy keeps every instance, the table clones only new or changed ones.
        let report = self.table.apply_borrowed(map.values());
        *copy = Some(map);
        self.state.lock().last_apply = Some(started.elapsed());
        Ok(report)
    }

    fn record(&self, result: &Result<ApplyReport, String>) {
        let mut s = self.state.lock();
        match result {
            Ok(report) => {
                if s.last_error.is_some() && s.consecutive_failures > 0 {
                    info!(
                        "registry sync recovered after {} failure(s)",
                        s.consecutive_failures
                    );
                }
                s.last_success = Some(SystemTime::now());
                s.consecutive_failures = 0;
                s.syncs_ok += 1;
                if !report.is_noop() {
                    info!("{}", summary(report));
                }
            }
            Err(e) => {
                // Log once per change of error, not every interval.
                if s.last_error.as_deref() != Some(e.as_str()) || s.consecutive_failures == 0 {
                    warn!("registry sync failed (keeping the last good table): {e}");
                } else {
                    debug!("registry sync still failing: {e}");
                }
                s.last_error = Some(e.clone());
                s.last_error_at = Some(SystemTime::now());
                s.consecutive_failures += 1;
                s.syncs_failed += 1;
            }
        }
    }

    /// Syncs every interval until `shutdown` turns true. `ready` is told after the first
    /// successful sync, or after `startup_wait` so a dead Eureka cannot keep the proxy
    /// from ever taking traffic (it then answers 503 with the reason).
    pub async fn run(&self, mut shutdown: ShutdownWatch, ready: Option<ServiceReadyNotifier>) {
        let mut ready = ready;
        let deadline = tokio::time::Instant::now() + self.cfg.startup_wait;
        let mut ticker = tokio::time::interval(self.cfg.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wait_for_ready = ready.is_some();
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break;
            }
            let ok = self.sync_once().await.is_ok();
            if wait_for_ready && (ok || tokio::time::Instant::now() >= deadline) {
                if !ok {
                    warn!("no registry after {:?} (xipgate.registry.startup_wait): taking traffic anyway", self.cfg.startup_wait);
                }
                if let Some(r) = ready.take() {
                    r.notify_ready();
                }
            }
            // Until ready, retry quickly rather than after a whole interval.
            if ready.is_some() {
                ticker.reset_after(Duration::from_millis(500).min(self.cfg.interval));
            }
        }
        info!("registry sync stopped");
    }
}

#[async_trait]
impl BackgroundService for RegistrySync {
    async fn start_with_ready_notifier(
        &self,
        shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        lower_thread_priority();
        self.run(shutdown, Some(ready)).await;
    }
}

/// Pingora runs each background service on a runtime with one thread of its own, so this
/// changes the scheduling of the registry sync and of nothing else.
///
/// Why: a full refresh of a large registry is tens of milliseconds of CPU in one go, on the
/// CPUs that serve requests. At the same priority (and still at nice 10, what this was
/// before) the scheduler lets it run for a whole slice while requests wait, which showed as
/// +3 ms of p99 in bench/run.sh with a full refresh every second. SCHED_IDLE gives the
/// thread only CPU time nothing else wants, and any woken request handler preempts it at
/// once. The cost: on a CPU that is saturated for seconds, a refresh finishes later
/// (Linux still gives idle-policy threads a small share, so it is never starved for good).
#[cfg(target_os = "linux")]
fn lower_thread_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // On Linux the policy is per thread, and pid 0 is the calling thread.
    // SAFETY: a plain system call; `param` outlives it.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
        debug!(
            "could not lower the registry sync's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_thread_priority() {}

/// Eureka's reconcile hash: `STATUS_count_` for each status present, sorted by name.
pub fn apps_hashcode<'a>(instances: impl Iterator<Item = &'a Instance>) -> String {
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for i in instances {
        *counts.entry(i.status.as_str()).or_default() += 1;
    }
    counts.iter().map(|(s, n)| format!("{s}_{n}_")).collect()
}

fn join(errors: Vec<FetchError>) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// One log line per change: counts, and each status change by name.
fn summary(r: &ApplyReport) -> String {
    let mut line = format!(
        "registry: {} added, {} removed, {} changed; {} instances in {} services",
        r.added, r.removed, r.changed, r.instances, r.services
    );
    let shown: Vec<String> = r
        .status_changes
        .iter()
        .take(10)
        .map(|(id, old, new)| format!("{id} {old}->{new}"))
        .collect();
    if !shown.is_empty() {
        line.push_str("; status: ");
        line.push_str(&shown.join(", "));
        if r.status_changes.len() > shown.len() {
            line.push_str(&format!(
                " and {} more",
                r.status_changes.len() - shown.len()
            ));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Status;

    #[test]
    fn hashcode_matches_eureka_format() {
        let mk = |s| Instance {
            app: "A".into(),
            instance_id: format!("{s:?}{}", rand_id()),
            host_name: String::new(),
            ip_addr: String::new(),
            port: None,
            secure_port: None,
            status: s,
            metadata: Default::default(),
            home_page_url: None,
            status_page_url: None,
            health_check_url: None,
            last_renewal_ms: None,
            last_dirty_ms: None,
        };
        let all = [mk(Status::Up), mk(Status::Down), mk(Status::Up)];
        assert_eq!(apps_hashcode(all.iter()), "DOWN_1_UP_2_");
        assert_eq!(apps_hashcode([].iter()), "");
    }

    fn rand_id() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }
}
