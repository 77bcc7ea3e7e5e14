//! Live traffic per service and per instance, kept inside the process for the console:
//! requests per second, error ratio and upstream latency over the last five minutes.
//!
//! Why not Prometheus labels: a label per instance would make one series per instance
//! per metric, which at 100,000 instances is more than most Prometheus servers accept
//! (and instance labels churn with every rollout). Prometheus keeps per-service series
//! (`xipgate_requests_total`, `xipgate_upstream_latency_seconds`); the per-instance
//! detail lives here, in bounded memory: a series is made on an instance's first request,
//! dropped after a whole window without one, and never more than [`MAX_INSTANCE_SERIES`]
//! exist (about 2.3 KB each). Both proxy engines record through [`Traffic::record`].

mod view;
mod window;

pub use view::SeriesView;
pub use window::Summary;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use window::Window;
pub use window::{POINTS, STEP_SECS};

/// Instance series kept at most; past it, instances not yet tracked are counted in
/// [`Traffic::untracked`] until idle series are swept out.
pub const MAX_INSTANCE_SERIES: usize = 20_000;
/// Service series kept at most.
pub const MAX_SERVICE_SERIES: usize = 5_000;

/// Which series: a service's (all requests that reached it, by either name) or one
/// instance's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Service,
    Instance,
}

struct Series {
    window: Mutex<Window>,
}

struct Store {
    series: DashMap<Box<str>, Arc<Series>>,
    max: usize,
    /// The step of the last sweep, so a full store sweeps at most once a step.
    swept: AtomicU64,
}

impl Store {
    fn new(max: usize) -> Self {
        Store {
            series: DashMap::new(),
            max,
            swept: AtomicU64::new(0),
        }
    }

    fn get_or_make(&self, label: &str, now_ms: u64) -> Option<Arc<Series>> {
        if let Some(s) = self.series.get(label) {
            return Some(s.clone());
        }
        if self.series.len() >= self.max && !self.sweep(now_ms) {
            return None;
        }
        Some(
            self.series
                .entry(label.into())
                .or_insert_with(|| {
                    Arc::new(Series {
                        window: Mutex::new(Window::default()),
                    })
                })
                .clone(),
        )
    }

    /// Drops the series without a request for a whole window; true if there is room now.
    fn sweep(&self, now_ms: u64) -> bool {
        let step = now_ms / (STEP_SECS * 1000);
        if self.swept.swap(step, Ordering::Relaxed) != step {
            let oldest = step.saturating_sub(POINTS as u64);
            self.series.retain(|_, s| {
                s.window
                    .lock()
                    .map(|w| w.newest_tick() > oldest)
                    .unwrap_or(false)
            });
        }
        self.series.len() < self.max
    }
}

/// Every series, shared by both engines and the console.
pub struct Traffic {
    started: Instant,
    services: Store,
    instances: Store,
    untracked: AtomicU64,
}

impl Default for Traffic {
    fn default() -> Self {
        Self::with_limits(MAX_SERVICE_SERIES, MAX_INSTANCE_SERIES)
    }
}

impl Traffic {
    pub fn with_limits(services: usize, instances: usize) -> Self {
        Traffic {
            started: Instant::now(),
            services: Store::new(services),
            instances: Store::new(instances),
            untracked: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        // Offset by a whole window, so the first steps have a full window behind them.
        self.started.elapsed().as_millis() as u64 + POINTS as u64 * STEP_SECS * 1000
    }

    fn store(&self, kind: Kind) -> &Store {
        match kind {
            Kind::Service => &self.services,
            Kind::Instance => &self.instances,
        }
    }

    /// One request that reached `service` (its label) and, when one was chosen, the
    /// instance labelled `instance`. An error is a 5xx, from the instance or from the
    /// edge itself (502, 503, 504); `upstream` the time to the instance's response head.
    pub fn record(
        &self,
        service: &str,
        instance: Option<&str>,
        status: u16,
        upstream: Option<Duration>,
    ) {
        let now = self.now_ms();
        let error = status >= 500;
        let us = upstream.map(|d| d.as_micros().min(u128::from(u64::MAX)) as u64);
        let targets = [
            Some((Kind::Service, service)),
            instance.map(|i| (Kind::Instance, i)),
        ];
        for (kind, label) in targets.into_iter().flatten() {
            match self.store(kind).get_or_make(label, now) {
                Some(s) => {
                    if let Ok(mut w) = s.window.lock() {
                        w.record(now, error, us);
                    }
                }
                None => {
                    self.untracked.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// The last minute of one series; zeros for one without traffic.
    pub fn summary(&self, kind: Kind, label: &str) -> Summary {
        let now = self.now_ms();
        self.store(kind)
            .series
            .get(label)
            .and_then(|s| s.window.lock().ok().map(|mut w| w.summary(now)))
            .unwrap_or_default()
    }

    /// The whole window of one series, ready to draw.
    pub fn view(&self, kind: Kind, label: &str) -> SeriesView {
        let now = self.now_ms();
        let points = self.store(kind).series.get(label).and_then(|s| {
            s.window
                .lock()
                .ok()
                .map(|mut w| (w.points(now), w.summary(now)))
        });
        match points {
            Some((points, summary)) => SeriesView::new(&points, summary, now),
            None => SeriesView::new(&[], Summary::default(), now),
        }
    }

    /// Series kept now: (services, instances).
    pub fn series_count(&self) -> (usize, usize) {
        (self.services.series.len(), self.instances.series.len())
    }

    /// Requests not counted in an instance's (or service's) series because the store was
    /// full of series with recent traffic.
    pub fn untracked(&self) -> u64 {
        self.untracked.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests;
