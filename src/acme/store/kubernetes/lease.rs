//! The order lock as a `coordination.k8s.io/v1` Lease, as client-go's leader election
//! keeps one: `holderIdentity`, `acquireTime`, `renewTime`, `leaseDurationSeconds` and
//! `leaseTransitions`. [`decide`] is the whole rule, pure; [`acquire`] and the renewal task
//! around it only read and write.
//!
//! - No Lease, or one without a holder (released): take it.
//! - Held by this replica: renew it (`renewTime` now, the rest kept).
//! - Held by another: it frees itself once it has not been renewed for its
//!   `leaseDurationSeconds`. Two clocks say so, and both must: the holder's own stamp
//!   (`renewTime` + duration passed, by this replica's clock) and this replica's watch of
//!   it (the same version of the Lease seen for a whole duration). The second keeps a
//!   holder whose clock runs behind from being taken over while it renews; a `renewTime`
//!   further in the future than a duration (a holder whose clock runs ahead) is not
//!   trusted and only the watch counts.
//!
//! The reads and writes around it are in [`super::lease_lock`].

use std::time::{Duration, SystemTime};

use super::objects::{micro_time, parse_time, LeaseSpec};

/// The Lease as the decision reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `None` (or empty) when free.
    pub holder: Option<String>,
    pub duration: Option<Duration>,
    pub acquired: Option<SystemTime>,
    pub renewed: Option<SystemTime>,
    pub transitions: i64,
}

impl Record {
    pub fn from_spec(s: &LeaseSpec) -> Record {
        Record {
            holder: s.holder_identity.clone().filter(|h| !h.is_empty()),
            duration: s
                .lease_duration_seconds
                .and_then(|d| u64::try_from(d).ok())
                .filter(|d| *d > 0)
                .map(Duration::from_secs),
            acquired: s.acquire_time.as_deref().and_then(parse_time),
            renewed: s.renew_time.as_deref().and_then(parse_time),
            transitions: s.lease_transitions.unwrap_or(0),
        }
    }

    pub fn to_spec(&self) -> LeaseSpec {
        LeaseSpec {
            holder_identity: self.holder.clone(),
            lease_duration_seconds: self
                .duration
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            acquire_time: self.acquired.map(micro_time),
            renew_time: self.renewed.map(micro_time),
            lease_transitions: Some(self.transitions),
        }
    }
}

/// What this replica read, and since when (by its own clock) it has seen this version.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    pub record: &'a Record,
    pub since: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Write this record: create the Lease if there was none, else replace the version read.
    Write(Record),
    /// Another replica holds it; it frees itself at `free_at` (this replica's clock) unless
    /// renewed.
    Held {
        holder: String,
        since: Option<SystemTime>,
        free_at: SystemTime,
    },
}

/// The rule (module docs): what `me` does about the Lease it read (`None`: there is none).
pub fn decide(seen: Option<Seen>, me: &str, now: SystemTime, duration: Duration) -> Decision {
    let take = |transitions| {
        Decision::Write(Record {
            holder: Some(me.to_string()),
            duration: Some(duration),
            acquired: Some(now),
            renewed: Some(now),
            transitions,
        })
    };
    let Some(Seen { record: r, since }) = seen else {
        return take(0);
    };
    match r.holder.as_deref().filter(|h| !h.is_empty()) {
        None => take(r.transitions + 1),
        Some(h) if h == me => Decision::Write(Record {
            holder: Some(me.to_string()),
            duration: Some(duration),
            acquired: r.acquired.or(Some(now)),
            renewed: Some(now),
            transitions: r.transitions,
        }),
        Some(h) => {
            let d = r.duration.unwrap_or(duration);
            let watched = since + d;
            let free_at = match r.renewed {
                // A stamp further ahead than a duration: the holder's clock is off.
                Some(t) if t <= now + d => (t + d).max(watched),
                _ => watched,
            };
            if now >= free_at {
                take(r.transitions + 1)
            } else {
                Decision::Held {
                    holder: h.to_string(),
                    since: r.acquired,
                    free_at,
                }
            }
        }
    }
}

/// The record a holder writes to let go: no holder, so the next reader takes it at once.
pub fn released(r: &Record, now: SystemTime) -> Record {
    Record {
        holder: None,
        duration: Some(Duration::from_secs(1)),
        acquired: Some(now),
        renewed: Some(now),
        transitions: r.transitions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "xipgate-a pid 1";
    const OTHER: &str = "xipgate-b pid 1";

    fn at(s: i64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs((1_760_000_000 + s).unsigned_abs())
    }

    fn held(by: &str, acquired: i64, renewed: i64, transitions: i64) -> Record {
        Record {
            holder: Some(by.to_string()),
            duration: Some(Duration::from_secs(30)),
            acquired: Some(at(acquired)),
            renewed: Some(at(renewed)),
            transitions,
        }
    }

    fn mine(acquired: i64, renewed: i64, transitions: i64) -> Decision {
        Decision::Write(Record {
            holder: Some(ME.to_string()),
            duration: Some(Duration::from_secs(30)),
            acquired: Some(at(acquired)),
            renewed: Some(at(renewed)),
            transitions,
        })
    }

    #[test]
    fn the_lease_decision_table() {
        let d = Duration::from_secs(30);
        let free = Record {
            holder: None,
            ..held(OTHER, 0, 0, 4)
        };
        let empty_name = Record {
            holder: Some(String::new()),
            ..held(OTHER, 0, 0, 4)
        };
        // (what, the Lease read, seen since, now, decision)
        let cases: Vec<(&str, Option<Record>, i64, i64, Decision)> = vec![
            ("none yet: created", None, 0, 100, mine(100, 100, 0)),
            ("released: taken", Some(free), 90, 100, mine(100, 100, 5)),
            (
                "holder \"\" is free",
                Some(empty_name),
                90,
                100,
                mine(100, 100, 5),
            ),
            (
                "held by me: renewed, acquireTime and transitions kept",
                Some(held(ME, 40, 90, 2)),
                90,
                100,
                mine(40, 100, 2),
            ),
            (
                "held by another, fresh",
                Some(held(OTHER, 40, 90, 2)),
                90,
                100,
                Decision::Held {
                    holder: OTHER.into(),
                    since: Some(at(40)),
                    free_at: at(120),
                },
            ),
            (
                "held by another, expired by its stamp and by watching: taken over",
                Some(held(OTHER, 10, 60, 2)),
                60,
                100,
                mine(100, 100, 3),
            ),
            (
                "expired by its stamp but first seen just now: wait a whole duration",
                Some(held(OTHER, 10, 20, 2)),
                100,
                100,
                Decision::Held {
                    holder: OTHER.into(),
                    since: Some(at(10)),
                    free_at: at(130),
                },
            ),
            (
                "skew: the holder's clock an hour behind, renewing (a new version 2 s ago)",
                Some(held(OTHER, 0, 98 - 3600, 2)),
                98,
                100,
                Decision::Held {
                    holder: OTHER.into(),
                    since: Some(at(0)),
                    free_at: at(128),
                },
            ),
            (
                "skew: the holder's clock ahead by a little, its stamp honoured",
                Some(held(OTHER, 0, 105, 2)),
                60,
                100,
                Decision::Held {
                    holder: OTHER.into(),
                    since: Some(at(0)),
                    free_at: at(135),
                },
            ),
            (
                "skew: a stamp an hour ahead is not trusted; unchanged for a duration: taken",
                Some(held(OTHER, 0, 3700, 2)),
                60,
                100,
                mine(100, 100, 3),
            ),
            (
                "skew: a stamp an hour ahead, seen changing 5 s ago: held",
                Some(held(OTHER, 0, 3700, 2)),
                95,
                100,
                Decision::Held {
                    holder: OTHER.into(),
                    since: Some(at(0)),
                    free_at: at(125),
                },
            ),
            (
                "the holder's own duration counts, not mine",
                Some(Record {
                    duration: Some(Duration::from_secs(5)),
                    ..held(OTHER, 0, 90, 7)
                }),
                90,
                96,
                mine(96, 96, 8),
            ),
        ];
        for (what, read, since, now, want) in cases {
            let seen = read.as_ref().map(|record| Seen {
                record,
                since: at(since),
            });
            assert_eq!(decide(seen, ME, at(now), d), want, "{what}");
        }
    }

    #[test]
    fn a_record_round_trips_through_the_spec_and_release_frees_it() {
        let r = held(ME, 40, 90, 2);
        assert_eq!(Record::from_spec(&r.to_spec()), r);
        let spec = r.to_spec();
        assert_eq!(spec.lease_duration_seconds, Some(30));
        assert!(spec
            .renew_time
            .as_deref()
            .is_some_and(|t| t.ends_with(".000000Z")));
        let gone = released(&r, at(95));
        assert_eq!(gone.holder, None);
        assert_eq!(gone.transitions, 2);
        let seen = Seen {
            record: &gone,
            since: at(95),
        };
        assert_eq!(
            decide(Some(seen), OTHER, at(95), Duration::from_secs(30)),
            Decision::Write(Record {
                holder: Some(OTHER.into()),
                duration: Some(Duration::from_secs(30)),
                acquired: Some(at(95)),
                renewed: Some(at(95)),
                transitions: 3,
            }),
            "a released Lease is taken at once"
        );
    }
}
