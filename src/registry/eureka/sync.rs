//! The background service that keeps the routing table in step with Eureka.
//!
//! Like a Eureka client: one full `/apps` fetch at start, then `/apps/delta` every
//! interval, checking the registry's `apps__hashcode` against our own copy and falling
//! back to a full fetch on a mismatch. On any error the last good table stays as it is:
//! a failed fetch never empties it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use log::{debug, info, warn};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::services::ServiceReadyNotifier;

use super::client::{EurekaClient, FetchError, FetchErrorKind, Fetched};
use super::copy::{log_hold, HashMismatch, HoldChange, RegistryCopy};
use super::model::Known;
use crate::config::RegistryConfig;
use crate::instance::Instance;
use crate::routes::{ApplyReport, Feed};

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
    /// Why the last full fetch was made instead of a delta.
    pub last_full_fetch_reason: Option<String>,
    /// Bytes of the last fetched body (decompressed).
    pub last_bytes: usize,
    /// Bytes received on the wire (compressed where the server compressed), all fetches.
    pub bytes_total: u64,
    /// Instances the last fetch had to skip, with the reason.
    pub skipped: Vec<String>,
    /// Set while instances missing from a suddenly shrunken registry are still routed.
    pub held_since: Option<SystemTime>,
    /// How many instances are held that way.
    pub held_instances: usize,
    /// Set while the server refuses `/apps/delta` (403) and full fetches are used.
    pub deltas_refused_until: Option<SystemTime>,
    /// Errors of Eureka URLs skipped by failover in the last successful fetch.
    pub skipped_sources: Vec<String>,
    /// Duration of the last parse + apply.
    pub last_apply: Option<Duration>,
    /// Services (applications) and instances Eureka listed, as last published.
    pub services: usize,
    pub instances: usize,
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

/// Why a sync failed: every configured URL failed the full fetch. The table is left as
/// it was.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{}", join(.0))]
    Fetch(Vec<FetchError>),
}

impl SyncError {
    /// Equal for errors of the same kinds from the same URLs, whatever their details
    /// (a connection error's text, say): the log says a failure once, not every interval.
    fn kind(&self) -> Vec<FetchErrorKind> {
        let SyncError::Fetch(errors) = self;
        errors.iter().map(FetchError::kind).collect()
    }
}

/// Why a sync fetched the whole registry instead of a delta.
#[derive(Debug)]
pub enum FullFetchReason {
    /// No copy yet: the first sync, or every one until the first succeeds.
    NoCopy,
    /// `xipgate.registry.eureka.delta: false`.
    DeltasOff,
    /// The server answered 403 to `/apps/delta` recently.
    DeltasRefused,
    /// The server answered 403 to `/apps/delta` just now.
    DeltasRefusedNow,
    /// The last successful sync is older than the server keeps deltas for: changes
    /// since then may no longer be in any delta, and the hashcode only counts
    /// instances per status, so it would not notice one UP pod replaced by another.
    CopyOlderThanWindow(Duration),
    /// The last sync failed: what happened meanwhile is unknown.
    AfterFailure,
    /// The delta applied to our copy does not hash to the server's `apps__hashcode`.
    HashMismatch(HashMismatch),
    /// `/apps/delta` failed.
    DeltaFailed(Vec<FetchError>),
}

impl fmt::Display for FullFetchReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FullFetchReason::NoCopy => f.write_str("no registry copy yet"),
            FullFetchReason::DeltasOff => {
                f.write_str("deltas are off (xipgate.registry.eureka.delta)")
            }
            FullFetchReason::DeltasRefused | FullFetchReason::DeltasRefusedNow => f.write_str(
                "the server refuses /apps/delta (HTTP 403: eureka.server.disable-delta is set)",
            ),
            FullFetchReason::CopyOlderThanWindow(age) => write!(
                f,
                "the last successful sync was {}s ago, longer than the server keeps deltas (xipgate.registry.eureka.delta_window)",
                age.as_secs()
            ),
            FullFetchReason::AfterFailure => f.write_str("the last sync failed"),
            FullFetchReason::HashMismatch(m) => write!(
                f,
                "hashcode mismatch after the delta (server {:?}, ours {:?})",
                m.theirs.as_deref().unwrap_or("none"),
                m.ours
            ),
            FullFetchReason::DeltaFailed(errors) => write!(f, "/apps/delta failed: {}", join(errors)),
        }
    }
}

/// What a delta sync came to.
#[derive(Debug)]
pub enum DeltaOutcome {
    Applied(ApplyReport),
    FullFetchNeeded(FullFetchReason),
}

/// How long full fetches replace deltas after the server refused `/apps/delta` with a
/// 403, before deltas are tried again (a server's `disable-delta` changes only with a
/// restart, so asking every interval would only double the requests).
pub const DELTAS_REFUSED_FOR: Duration = Duration::from_secs(300);

/// What the sync keeps between runs, behind one lock.
#[derive(Default)]
struct Inner {
    copy: Option<RegistryCopy>,
    last_ok: Option<Instant>,
    deltas_refused_until: Option<Instant>,
    /// The kinds of the last sync's errors; `Some` exactly when the last sync failed.
    last_error: Option<Vec<FetchErrorKind>>,
}

/// Decides, without any I/O, whether this sync may use a delta.
fn delta_plan(inner: &Inner, cfg: &RegistryConfig, now: Instant) -> Result<(), FullFetchReason> {
    if inner.copy.is_none() {
        return Err(FullFetchReason::NoCopy);
    }
    if !cfg.delta {
        return Err(FullFetchReason::DeltasOff);
    }
    if inner.last_error.is_some() {
        return Err(FullFetchReason::AfterFailure);
    }
    if inner.deltas_refused_until.is_some_and(|t| now < t) {
        return Err(FullFetchReason::DeltasRefused);
    }
    match inner.last_ok.map(|t| now.saturating_duration_since(t)) {
        Some(age) if age >= cfg.delta_window => Err(FullFetchReason::CopyOlderThanWindow(age)),
        _ => Ok(()),
    }
}

/// Warnings about a registry configuration that works but defeats itself.
pub fn config_warnings(cfg: &RegistryConfig) -> Vec<String> {
    let mut out = Vec::new();
    if cfg.delta && cfg.interval >= cfg.delta_window {
        out.push(format!(
            "xipgate.registry.eureka.interval ({}s) is not shorter than xipgate.registry.eureka.delta_window ({}s): every sync will be a full fetch",
            cfg.interval.as_secs(),
            cfg.delta_window.as_secs()
        ));
    }
    out
}

pub struct RegistrySync {
    client: EurekaClient,
    feed: Arc<Feed>,
    state: Arc<SyncState>,
    cfg: RegistryConfig,
    inner: tokio::sync::Mutex<Inner>,
}

impl RegistrySync {
    pub fn new(
        client: EurekaClient,
        feed: Arc<Feed>,
        state: Arc<SyncState>,
        cfg: RegistryConfig,
    ) -> Self {
        RegistrySync {
            client,
            feed,
            state,
            cfg,
            inner: tokio::sync::Mutex::new(Inner::default()),
        }
    }

    /// The status it writes.
    pub(super) fn state(&self) -> Arc<SyncState> {
        self.state.clone()
    }

    /// One sync: a delta when possible, else a full fetch. Errors are recorded in the
    /// state and returned; the table is left as it was.
    pub async fn sync_once(&self) -> Result<ApplyReport, SyncError> {
        self.state.lock().last_attempt = Some(SystemTime::now());
        let mut inner = self.inner.lock().await;
        let reason = match delta_plan(&inner, &self.cfg, Instant::now()) {
            Ok(()) => match self.sync_delta(&mut inner).await {
                DeltaOutcome::Applied(report) => {
                    return self.record(&mut inner, Ok(report));
                }
                DeltaOutcome::FullFetchNeeded(reason) => reason,
            },
            Err(reason) => reason,
        };
        let result = self.sync_full(&mut inner, reason).await;
        self.record(&mut inner, result)
    }

    async fn sync_delta(&self, inner: &mut Inner) -> DeltaOutcome {
        let f = match self.client.fetch_delta().await {
            Ok(f) => f,
            Err(errors) if errors.iter().all(|e| e.http_status() == Some(403)) => {
                return DeltaOutcome::FullFetchNeeded(FullFetchReason::DeltasRefusedNow)
            }
            Err(errors) => {
                return DeltaOutcome::FullFetchNeeded(FullFetchReason::DeltaFailed(errors))
            }
        };
        let started = Instant::now();
        self.note_fetch(&f);
        let Some(copy) = inner.copy.as_mut() else {
            return DeltaOutcome::FullFetchNeeded(FullFetchReason::NoCopy);
        };
        let changed = match copy.apply_delta(f.snapshot) {
            Ok(changed) => changed,
            Err(m) => return DeltaOutcome::FullFetchNeeded(FullFetchReason::HashMismatch(m)),
        };
        self.state.lock().delta_fetches += 1;
        let hold = copy.expire(Instant::now(), self.cfg.shrink_grace);
        let published = changed || hold != HoldChange::None;
        let report = if published {
            self.feed.publish("eureka", copy.routed())
        } else {
            ApplyReport {
                instances: self.feed.table().instance_count(),
                services: self.feed.table().service_count(),
                ..ApplyReport::default()
            }
        };
        self.note_hold(copy, &hold, &f.source);
        self.state.lock().last_apply = Some(started.elapsed());
        if published {
            self.note_counts(copy);
        }
        DeltaOutcome::Applied(report)
    }

    async fn sync_full(
        &self,
        inner: &mut Inner,
        reason: FullFetchReason,
    ) -> Result<ApplyReport, SyncError> {
        // The expected reasons (first sync, deltas off or refused) are not worth a line.
        let expected = matches!(
            reason,
            FullFetchReason::NoCopy
                | FullFetchReason::DeltasOff
                | FullFetchReason::DeltasRefused
                | FullFetchReason::DeltasRefusedNow
        );
        if !expected {
            debug!("registry: full fetch: {reason}");
        }
        // Compared with the copy while parsed: an unchanged instance is not parsed into a
        // second copy next to the one the copy and the table share.
        let known = inner.copy.as_ref().map(|c| c as &dyn Known);
        let f = self
            .client
            .fetch_apps(known)
            .await
            .map_err(SyncError::Fetch)?;
        if let FullFetchReason::DeltasRefusedNow = reason {
            // `/apps` answered where `/apps/delta` was refused: the server has deltas
            // disabled (a 403 to both is its start-up window, not this).
            warn!(
                "registry: {} refuses /apps/delta (HTTP 403; eureka.server.disable-delta is set): full fetches every interval, deltas tried again in {}s",
                f.source,
                DELTAS_REFUSED_FOR.as_secs()
            );
            inner.deltas_refused_until = Some(Instant::now() + DELTAS_REFUSED_FOR);
            self.state.lock().deltas_refused_until = Some(SystemTime::now() + DELTAS_REFUSED_FOR);
        }
        let started = Instant::now();
        self.note_fetch(&f);
        {
            let mut s = self.state.lock();
            s.full_fetches += 1;
            s.last_full_fetch_reason = Some(reason.to_string());
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
        let copy = inner.copy.get_or_insert_with(RegistryCopy::default);
        let hold = copy.apply_full_with(
            f.snapshot.instances,
            f.snapshot.unchanged,
            Instant::now(),
            self.cfg.shrink_grace,
        );
        // Borrowed: the copy keeps every instance, the table clones only new or changed ones.
        let report = self.feed.publish("eureka", copy.routed());
        self.note_hold(copy, &hold, &f.source);
        self.state.lock().last_apply = Some(started.elapsed());
        self.note_counts(copy);
        Ok(report)
    }

    /// Notes what a fetch brought: source, sizes and (logged once per change) the URLs
    /// failover had to skip.
    fn note_fetch(&self, f: &Fetched) {
        let mut s = self.state.lock();
        s.last_bytes = f.bytes;
        s.bytes_total += f.wire_bytes;
        s.last_source = Some(f.source.clone());
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

    /// The services and instances just published, for the status (after `last_apply`,
    /// which it is not part of).
    fn note_counts(&self, copy: &RegistryCopy) {
        let mut apps = std::collections::HashSet::new();
        let mut instances = 0;
        for i in copy.routed() {
            apps.insert(i.app.as_str());
            instances += 1;
        }
        let mut s = self.state.lock();
        s.services = apps.len();
        s.instances = instances;
    }

    /// Logs a change of the hold and shows it in the status.
    fn note_hold(&self, copy: &RegistryCopy, change: &HoldChange, source: &str) {
        log_hold(change, source, self.cfg.shrink_grace);
        let mut s = self.state.lock();
        s.held_instances = copy.held_len();
        s.held_since = copy.held_since().map(|t| SystemTime::now() - t.elapsed());
    }

    fn record(
        &self,
        inner: &mut Inner,
        result: Result<ApplyReport, SyncError>,
    ) -> Result<ApplyReport, SyncError> {
        let mut s = self.state.lock();
        match &result {
            Ok(report) => {
                if s.consecutive_failures > 0 {
                    info!(
                        "registry sync recovered after {} failure(s)",
                        s.consecutive_failures
                    );
                }
                inner.last_ok = Some(Instant::now());
                inner.last_error = None;
                s.last_success = Some(SystemTime::now());
                s.consecutive_failures = 0;
                s.syncs_ok += 1;
                if inner
                    .deltas_refused_until
                    .is_some_and(|t| Instant::now() >= t)
                {
                    inner.deltas_refused_until = None;
                    s.deltas_refused_until = None;
                }
                if !report.is_noop() {
                    info!("{}", summary(report));
                }
            }
            Err(e) => {
                // Log once per change of error kind, not every interval.
                let kind = e.kind();
                if inner.last_error.as_ref() == Some(&kind) {
                    debug!("registry sync still failing: {e}");
                } else {
                    warn!("registry sync failed (keeping the last good table): {e}");
                }
                inner.last_error = Some(kind);
                if let Some(copy) = inner.copy.as_mut() {
                    // A hold's grace does not run while the registry cannot be reached.
                    copy.unanswered();
                }
                s.last_error = Some(e.to_string());
                s.last_error_at = Some(SystemTime::now());
                s.consecutive_failures += 1;
                s.syncs_failed += 1;
            }
        }
        result
    }

    /// Syncs every interval until `shutdown` turns true. `ready` is told after the first
    /// successful sync, or after `startup_wait` so a dead Eureka cannot keep the proxy
    /// from ever taking traffic (it then answers 503 with the reason).
    pub async fn run(&self, mut shutdown: ShutdownWatch, ready: Option<ServiceReadyNotifier>) {
        for w in config_warnings(&self.cfg) {
            warn!("{w}");
        }
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

fn join(errors: &[FetchError]) -> String {
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

    fn cfg(delta: bool, interval: u64, window: u64) -> RegistryConfig {
        RegistryConfig {
            urls: vec![],
            interval: Duration::from_secs(interval),
            timeout: Duration::from_secs(1),
            max_body: 1,
            delta,
            startup_wait: Duration::from_secs(1),
            shrink_grace: Duration::from_secs(1),
            delta_window: Duration::from_secs(window),
            eureka: true,
            nacos: Vec::new(),
            kubernetes: None,
        }
    }

    #[test]
    fn a_delta_only_when_the_copy_is_known_good_and_recent() {
        let now = Instant::now();
        let secs = Duration::from_secs;
        let inner =
            |copy: bool, last_ok: Option<u64>, failed: bool, refused_for: Option<u64>| Inner {
                copy: copy.then(RegistryCopy::default),
                last_ok: last_ok.map(|ago| now - secs(ago)),
                deltas_refused_until: refused_for.map(|s| now + secs(s)),
                // A failed last sync is one with an error kind on record.
                last_error: failed.then(Vec::new),
            };
        // (inner, delta on, expected: None = delta, Some(reason's first words))
        let cases = [
            (
                inner(false, None, false, None),
                true,
                Some("no registry copy"),
            ),
            (
                inner(true, Some(1), false, None),
                false,
                Some("deltas are off"),
            ),
            (
                inner(true, Some(1), true, None),
                true,
                Some("the last sync failed"),
            ),
            (
                inner(true, Some(1), false, Some(60)),
                true,
                Some("the server refuses"),
            ),
            (inner(true, Some(149), false, None), true, None),
            (
                inner(true, Some(150), false, None),
                true,
                Some("the last successful sync was 150s ago"),
            ),
            (inner(true, Some(1), false, None), true, None),
        ];
        for (i, (inner, delta, want)) in cases.into_iter().enumerate() {
            let got = delta_plan(&inner, &cfg(delta, 10, 150), now)
                .err()
                .map(|r| r.to_string());
            match (want, got) {
                (None, None) => {}
                (Some(w), Some(g)) => assert!(g.starts_with(w), "case {i}: {g}"),
                (w, g) => panic!("case {i}: wanted {w:?}, got {g:?}"),
            }
        }
        // Refusals expire.
        let expired = Inner {
            deltas_refused_until: Some(now - secs(1)),
            ..inner(true, Some(1), false, None)
        };
        assert!(delta_plan(&expired, &cfg(true, 10, 150), now).is_ok());
    }

    #[test]
    fn an_interval_as_long_as_the_window_is_warned_about() {
        assert!(config_warnings(&cfg(true, 10, 150)).is_empty());
        assert!(config_warnings(&cfg(false, 300, 150)).is_empty());
        let w = config_warnings(&cfg(true, 150, 150));
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("xipgate.registry.eureka.delta_window"),
            "{}",
            w[0]
        );
    }

    #[test]
    fn hashcode_matches_eureka_format() {
        let mk = |s| Instance::for_test("A", &format!("{s:?}{}", rand_id()), "", s);
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
