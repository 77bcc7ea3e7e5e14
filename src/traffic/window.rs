//! One traffic series as plain data: requests, errors and upstream latency in fixed
//! steps over a sliding window. No clock and no locks here: the caller passes the time
//! (milliseconds on its own monotonic clock), which keeps every rule testable.
//!
//! Memory is fixed per series whatever the traffic: [`POINTS`] points of four `u32`s,
//! and a latency histogram for each of the last [`SUMMARY_POINTS`] steps (the summary's
//! percentiles come from merging those, not from averaging percentiles).

/// Seconds per point.
pub const STEP_SECS: u64 = 5;
const STEP_MS: u64 = STEP_SECS * 1000;
/// Points kept: 60 × 5 s = the last five minutes.
pub const POINTS: usize = 60;
/// Points the summary (rate, error ratio, percentiles) covers: the last minute.
pub const SUMMARY_POINTS: usize = 12;

/// Latency histogram buckets: bucket 0 holds up to [`FIRST_BOUND_US`], bucket `i` up to
/// `FIRST_BOUND_US × GROWTH^i`; the last one holds everything above (≈ 29 s and more).
const BUCKETS: usize = 32;
const FIRST_BOUND_US: f64 = 100.0;
/// Each bucket ends 1.5 times higher than the one before: a percentile is known to
/// within its bucket (a factor of 1.5 at worst, interpolated inside it), which is what a
/// sparkline can show, in 128 bytes per step.
const GROWTH: f64 = 1.5;

#[derive(Clone, Copy, Default, Debug, PartialEq)]
pub struct Point {
    pub requests: u32,
    pub errors: u32,
    /// Upstream latency percentiles of the requests in this step, microseconds; 0 when
    /// none had an upstream answer.
    pub p50_us: u32,
    pub p99_us: u32,
}

#[derive(Clone, Copy)]
struct Histogram([u32; BUCKETS]);

impl Histogram {
    const EMPTY: Histogram = Histogram([0; BUCKETS]);

    fn bucket(us: u64) -> usize {
        if (us as f64) <= FIRST_BOUND_US {
            return 0;
        }
        let i = ((us as f64 / FIRST_BOUND_US).ln() / GROWTH.ln()).ceil() as usize;
        i.min(BUCKETS - 1)
    }

    fn upper(i: usize) -> f64 {
        FIRST_BOUND_US * GROWTH.powi(i as i32)
    }

    fn add(&mut self, us: u64) {
        let b = &mut self.0[Self::bucket(us)];
        *b = b.saturating_add(1);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a = a.saturating_add(b);
        }
    }

    /// The `q` quantile in microseconds (0 when empty): the bucket holding the rank,
    /// interpolated geometrically inside it (linearly in the first, which starts at 0).
    fn quantile(&self, q: f64) -> u32 {
        let total: u64 = self.0.iter().map(|&c| u64::from(c)).sum();
        if total == 0 {
            return 0;
        }
        let rank = (q * total as f64).ceil().max(1.0);
        let mut below = 0u64;
        for (i, &c) in self.0.iter().enumerate() {
            let c = u64::from(c);
            if c > 0 && (below + c) as f64 >= rank {
                let within = (rank - below as f64) / c as f64;
                let hi = Self::upper(i);
                let us = if i == 0 {
                    hi * within
                } else {
                    let lo = Self::upper(i - 1);
                    lo * (hi / lo).powf(within)
                };
                return us.round().min(f64::from(u32::MAX)) as u32;
            }
            below += c;
        }
        Self::upper(BUCKETS - 1) as u32
    }
}

/// What the last minute adds up to.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    pub requests: u64,
    pub errors: u64,
    /// Requests per second over the last minute.
    pub rps: f64,
    /// Errors over requests (0 without requests).
    pub error_ratio: f64,
    /// Upstream latency over the last minute, milliseconds; `None` without answers.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The series: a ring of points, the newest at `tick`.
pub struct Window {
    points: Box<[Point; POINTS]>,
    hists: Box<[Histogram; SUMMARY_POINTS]>,
    /// The step of the newest point (`now_ms / STEP_MS`).
    tick: u64,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            points: Box::new([Point::default(); POINTS]),
            hists: Box::new([Histogram::EMPTY; SUMMARY_POINTS]),
            tick: 0,
        }
    }
}

fn tick_of(now_ms: u64) -> u64 {
    now_ms / STEP_MS
}

impl Window {
    /// One request that ended at `now_ms`: `error` for a 5xx or a proxy error, and the
    /// upstream's time to its response header when there was one.
    pub fn record(&mut self, now_ms: u64, error: bool, upstream_us: Option<u64>) {
        // A request timed just before another thread moved the window on counts in the
        // newest step rather than in one already closed.
        let tick = self.advance(tick_of(now_ms));
        let p = &mut self.points[tick as usize % POINTS];
        p.requests = p.requests.saturating_add(1);
        if error {
            p.errors = p.errors.saturating_add(1);
        }
        if let Some(us) = upstream_us {
            self.hists[tick as usize % SUMMARY_POINTS].add(us);
        }
    }

    /// The step of the newest point, with every step up to `tick` opened.
    fn advance(&mut self, tick: u64) -> u64 {
        if tick <= self.tick {
            return self.tick;
        }
        self.close(self.tick);
        // Steps skipped without traffic are emptied; past a whole window, all of them.
        let gap = (tick - self.tick).min(POINTS as u64);
        for t in tick + 1 - gap..=tick {
            self.points[t as usize % POINTS] = Point::default();
            self.hists[t as usize % SUMMARY_POINTS] = Histogram::EMPTY;
        }
        self.tick = tick;
        tick
    }

    /// Fixes the percentiles of step `tick` from its histogram.
    fn close(&mut self, tick: u64) {
        let h = &self.hists[tick as usize % SUMMARY_POINTS];
        let (p50, p99) = (h.quantile(0.5), h.quantile(0.99));
        let p = &mut self.points[tick as usize % POINTS];
        p.p50_us = p50;
        p.p99_us = p99;
    }

    /// The last [`POINTS`] steps up to `now_ms`, oldest first; the newest is the step in
    /// progress, with its percentiles so far.
    pub fn points(&mut self, now_ms: u64) -> Vec<Point> {
        let now = self.advance(tick_of(now_ms));
        self.close(now);
        (0..POINTS as u64)
            .rev()
            .map(|back| match now.checked_sub(back) {
                Some(t) => self.points[t as usize % POINTS],
                None => Point::default(),
            })
            .collect()
    }

    /// Requests per second of each point (the step in progress over its elapsed part).
    pub fn rates(points: &[Point], now_ms: u64) -> Vec<f64> {
        let last = points.len().saturating_sub(1);
        points
            .iter()
            .enumerate()
            .map(|(k, p)| {
                let secs = if k == last {
                    ((now_ms % STEP_MS) as f64 / 1000.0).max(1.0)
                } else {
                    STEP_SECS as f64
                };
                f64::from(p.requests) / secs
            })
            .collect()
    }

    /// The last minute up to `now_ms`.
    pub fn summary(&mut self, now_ms: u64) -> Summary {
        let now = self.advance(tick_of(now_ms));
        let mut hist = Histogram::EMPTY;
        let (mut requests, mut errors) = (0u64, 0u64);
        for back in 0..SUMMARY_POINTS as u64 {
            let Some(t) = now.checked_sub(back) else {
                break;
            };
            let p = &self.points[t as usize % POINTS];
            requests += u64::from(p.requests);
            errors += u64::from(p.errors);
            hist.merge(&self.hists[t as usize % SUMMARY_POINTS]);
        }
        // The minute ends now: the closed steps plus the elapsed part of this one.
        let secs = ((SUMMARY_POINTS as u64 - 1) * STEP_MS + now_ms % STEP_MS) as f64 / 1000.0;
        let ms = |us: u32| (us > 0).then(|| f64::from(us) / 1000.0);
        Summary {
            requests,
            errors,
            rps: requests as f64 / secs,
            error_ratio: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            p50_ms: ms(hist.quantile(0.5)),
            p99_ms: ms(hist.quantile(0.99)),
        }
    }

    /// The step of the newest point recorded or viewed.
    pub fn newest_tick(&self) -> u64 {
        self.tick
    }
}

#[cfg(test)]
mod tests;
