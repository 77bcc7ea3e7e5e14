//! Passive health: an instance that fails N tries in a row leaves its service host's
//! rotation for a while (nginx's `max_fails`/`fail_timeout`, Envoy's outlier detection).
//! The time grows with each ejection that follows soon after the last one, up to a
//! maximum; at most a share of a service is ejected at once, never its last instance.
//! Instance hosts reach an ejected instance as before.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Consecutive failures that eject an instance.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
/// The first ejection's length.
pub const DEFAULT_EJECTION: Duration = Duration::from_secs(30);
/// The longest ejection.
pub const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(300);
/// At most this share of a service's instances is ejected at once, in percent.
pub const DEFAULT_MAX_EJECTED_PERCENT: u32 = 50;
/// 5xx answers count as failures (off: only failures to connect count).
pub const DEFAULT_COUNT_5XX: bool = false;

/// `xipgate.balance.passive`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passive {
    pub consecutive_failures: u32,
    pub count_5xx: bool,
    pub ejection: Duration,
    pub max_ejection: Duration,
    pub max_ejected_percent: u32,
}

impl Default for Passive {
    fn default() -> Self {
        Passive {
            consecutive_failures: DEFAULT_CONSECUTIVE_FAILURES,
            count_5xx: DEFAULT_COUNT_5XX,
            ejection: DEFAULT_EJECTION,
            max_ejection: DEFAULT_MAX_EJECTION,
            max_ejected_percent: DEFAULT_MAX_EJECTED_PERCENT,
        }
    }
}

impl Passive {
    /// How long the `times`-th ejection in a row lasts: the base time that many times
    /// (Envoy's rule), at most `max_ejection`.
    pub fn ejection_time(&self, times: u32) -> Duration {
        self.ejection
            .saturating_mul(times.max(1))
            .min(self.max_ejection)
    }

    /// Whether a try's outcome is a failure.
    pub fn fails(&self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::ConnectFailed => true,
            Outcome::Answered(status) => self.count_5xx && (500..600).contains(&status),
        }
    }

    /// How many of `members` instances may be ejected at once: the share, rounded
    /// down, and never all of them.
    pub fn max_ejected(&self, members: usize) -> usize {
        let share = members * self.max_ejected_percent as usize / 100;
        share.min(members.saturating_sub(1))
    }
}

/// What one try at an instance came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No connection: refused, timed out, unreachable.
    ConnectFailed,
    /// The instance answered with this status.
    Answered(u16),
}

/// Milliseconds on a monotonic clock since the process's first call (never 0, so 0 can
/// mean "not ejected").
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    start.elapsed().as_millis() as u64 + 1
}

/// The wall-clock time of a [`now_ms`] instant (for showing when an ejection ends).
pub fn wall_time(ms: u64) -> std::time::SystemTime {
    let now = now_ms();
    let wall = std::time::SystemTime::now();
    if ms >= now {
        wall + Duration::from_millis(ms - now)
    } else {
        wall - Duration::from_millis(now - ms)
    }
}

/// One instance's passive-health state, shared by every request.
#[derive(Debug, Default)]
pub struct Health {
    failures: AtomicU32,
    /// [`now_ms`] when the ejection ends; 0 when not ejected.
    until: AtomicU64,
    /// Ejections in a row (each soon after the last ended).
    times: AtomicU32,
    /// When the last ejection ended, for telling "in a row".
    last_until: AtomicU64,
}

impl Health {
    /// True while ejected at `now`.
    pub fn ejected(&self, now: u64) -> bool {
        self.until.load(Ordering::Relaxed) > now
    }

    /// When the current ejection ends ([`now_ms`] clock), if ejected at `now`.
    pub fn ejected_until(&self, now: u64) -> Option<u64> {
        let until = self.until.load(Ordering::Relaxed);
        (until > now).then_some(until)
    }

    /// Marked ejected, whether or not the time has run out yet (`until` not cleared).
    pub(super) fn marked(&self) -> bool {
        self.until.load(Ordering::Relaxed) != 0
    }

    /// Clears a mark whose time has run out; true when this call cleared it.
    pub(super) fn expire(&self, now: u64) -> bool {
        let until = self.until.load(Ordering::Relaxed);
        until != 0
            && until <= now
            && self
                .until
                .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Counts one outcome; true when it is the failure that should eject the instance
    /// (the caller checks the service's share and then calls [`Health::eject`]).
    pub(super) fn record(&self, passive: &Passive, outcome: Outcome) -> bool {
        if !passive.fails(outcome) {
            // Written only when there is something to reset: a healthy instance's
            // answers do not all write one shared cache line.
            if self.failures.load(Ordering::Relaxed) != 0 {
                self.failures.store(0, Ordering::Relaxed);
            }
            return false;
        }
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        n >= passive.consecutive_failures
    }

    /// Ejects the instance from `now`: `None` when another request did already, else
    /// whether this is a new mark (no run-out one was left in place).
    pub(super) fn eject(&self, passive: &Passive, now: u64) -> Option<bool> {
        let current = self.until.load(Ordering::Relaxed);
        if current > now {
            return None;
        }
        let last = self.last_until.load(Ordering::Relaxed);
        // In a row: this failure streak began within the longest ejection of the last one's end.
        let in_a_row =
            last != 0 && now.saturating_sub(last) < passive.max_ejection.as_millis() as u64;
        let times = if in_a_row {
            self.times.load(Ordering::Relaxed).saturating_add(1)
        } else {
            1
        };
        let until = now + passive.ejection_time(times).as_millis() as u64;
        if self
            .until
            .compare_exchange(current, until, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        self.times.store(times, Ordering::Relaxed);
        self.last_until.store(until, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        Some(current == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejection_time_grows_to_its_maximum() {
        let p = Passive::default();
        assert_eq!(p.ejection_time(1), Duration::from_secs(30));
        assert_eq!(p.ejection_time(3), Duration::from_secs(90));
        assert_eq!(p.ejection_time(50), Duration::from_secs(300));
    }

    #[test]
    fn at_most_the_share_and_never_the_last() {
        let p = Passive::default();
        assert_eq!(p.max_ejected(1), 0);
        assert_eq!(p.max_ejected(2), 1);
        assert_eq!(p.max_ejected(5), 2);
        let all = Passive {
            max_ejected_percent: 100,
            ..Passive::default()
        };
        assert_eq!(all.max_ejected(3), 2);
    }

    #[test]
    fn consecutive_failures_eject_and_a_success_resets_the_count() {
        let p = Passive {
            consecutive_failures: 3,
            ..Passive::default()
        };
        let h = Health::default();
        assert!(!h.record(&p, Outcome::ConnectFailed));
        assert!(!h.record(&p, Outcome::ConnectFailed));
        assert!(!h.record(&p, Outcome::Answered(200)));
        assert!(!h.record(&p, Outcome::ConnectFailed));
        // A 5xx does not count by default: the instance answered, which resets the count.
        assert!(!h.record(&p, Outcome::Answered(503)));
        assert!(!h.record(&p, Outcome::ConnectFailed));
        assert!(!h.record(&p, Outcome::ConnectFailed));
        assert!(h.record(&p, Outcome::ConnectFailed));
        assert_eq!(h.eject(&p, 1000), Some(true));
        assert!(h.ejected(1000) && h.ejected(30_999) && !h.ejected(31_000));
        assert_eq!(h.eject(&p, 2000), None, "ejected already");
        assert!(h.expire(31_000));
        // Ejected again soon after: twice as long.
        assert_eq!(h.eject(&p, 40_000), Some(true));
        assert_eq!(h.ejected_until(40_000), Some(100_000));
    }

    #[test]
    fn five_xx_counts_when_asked() {
        let p = Passive {
            consecutive_failures: 2,
            count_5xx: true,
            ..Passive::default()
        };
        let h = Health::default();
        assert!(!h.record(&p, Outcome::Answered(502)));
        assert!(h.record(&p, Outcome::Answered(500)));
    }
}
