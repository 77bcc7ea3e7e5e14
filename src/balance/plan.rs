//! A service's steering plan, worked out once when its instances change, and the
//! decision made from it for every request.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::health::Outcome;
use super::{sticky, weight, Fallback, Keys, Member, Policy, HINT_KEY, SHARE_SCALE};
use crate::instance::Status;
use crate::names::printable;

/// A precomputed smooth weighted round robin over some of a service's instances.
#[derive(Debug)]
struct Rotation {
    /// Indices into the service's instances, in nginx's smooth weighted order.
    seq: Vec<u32>,
    /// The distinct indices.
    members: Vec<u32>,
    cursor: AtomicUsize,
}

impl Rotation {
    fn new<M: Member>(all: &[M], members: Vec<u32>) -> Option<Rotation> {
        if members.is_empty() {
            return None;
        }
        let weights: Vec<u32> = members
            .iter()
            .map(|&i| all[i as usize].weight().units)
            .collect();
        let seq = weight::smooth_sequence(&weights)
            .into_iter()
            .map(|k| members[k as usize])
            .collect();
        Some(Rotation {
            seq,
            members,
            cursor: AtomicUsize::new(0),
        })
    }

    /// The next index, the one atomic increment of the plain round robin.
    fn next(&self) -> usize {
        let n = self.seq.len();
        self.seq[self.cursor.fetch_add(1, Ordering::Relaxed) % n] as usize
    }

    /// The next index `ok` accepts. Those it refuses take their turn and are passed, so
    /// the others keep their shares among themselves exactly.
    fn next_ok(&self, ok: impl Fn(usize) -> bool) -> Option<usize> {
        if !self.members.iter().any(|&i| ok(i as usize)) {
            return None;
        }
        (0..self.seq.len()).map(|_| self.next()).find(|&i| ok(i))
    }
}

/// The instances of one group (stable or canary): all of them, and those in the edge's
/// zone when it has any.
#[derive(Debug)]
struct Group {
    all: Rotation,
    local: Option<Rotation>,
}

/// How a request's instance was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Rotation,
    Pin,
    Hint,
    /// The edge's sticky cookie named it.
    Sticky,
    /// Spring Cloud LoadBalancer's cookie named it.
    SpringCookie,
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// An index into the service's instances.
    Pick { index: usize, via: Via },
    /// The answer is a 503 saying why.
    Refuse(Refusal),
}

/// Why a pin or hint cannot be served (a 503 naming it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No instance of the service has this label or instanceId.
    UnknownPin(String),
    /// The pinned instance exists but is not in the service host's rotation.
    PinOut { pin: String, why: String },
    /// No instance in rotation has metadata `hint` with this value.
    NoHint(String),
    /// No instance is in rotation at all.
    NoneUp,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::UnknownPin(p) => write!(
                f,
                "the pinned instance '{p}' is not an instance of this service"
            ),
            Refusal::PinOut { pin, why } => write!(f, "the pinned instance '{pin}' {why}"),
            Refusal::NoHint(h) => write!(f, "no instance in rotation has the hint '{h}'"),
            Refusal::NoneUp => f.write_str("no instance is in rotation"),
        }
    }
}

/// FNV-1a for the label/instanceId index: a lookup hashes a short key a client sent, and
/// std's SipHash showed in the sticky and pinned rows of `benches/steer.rs`. No flooding
/// risk: the keys in the map are the registry's; a client only looks up.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type ByKey = HashMap<String, u32, BuildHasherDefault<Fnv>>;

/// Reads the clock once, only if asked (the plain path never asks).
struct Clock<F: Fn() -> u64> {
    read: F,
    at: Cell<u64>,
}

impl<F: Fn() -> u64> Clock<F> {
    fn now(&self) -> u64 {
        if self.at.get() == 0 {
            self.at.set((self.read)());
        }
        self.at.get()
    }
}

/// One service's plan.
#[derive(Debug)]
pub struct Plan {
    policy: Arc<Policy>,
    /// UP, routable, weight above zero: may get a service-host request.
    in_rotation: Vec<bool>,
    rotation_size: usize,
    stable: Option<Group>,
    canary: Option<Group>,
    /// Metadata `hint` value → the instances in rotation that carry it.
    hints: HashMap<String, Rotation>,
    /// Label and instanceId → index, for pins and cookies (when the policy reads them).
    by_key: ByKey,
    canary_count: AtomicU64,
    /// Instances with an ejection mark (possibly run out): while zero, nobody looks at
    /// the clock.
    marked: AtomicU32,
}

impl Plan {
    /// The plan for `members` (sorted by instanceId) under `policy`.
    pub fn build<M: Member>(members: &[M], policy: Arc<Policy>) -> Plan {
        let in_rotation: Vec<bool> = members
            .iter()
            .map(|m| m.instance().status == Status::Up && m.routable() && m.weight().units > 0)
            .collect();
        let eligible = || (0..members.len() as u32).filter(|&i| in_rotation[i as usize]);
        let is_canary = |i: u32| {
            policy
                .canary
                .as_ref()
                .is_some_and(|c| c.matches(members[i as usize].instance()))
        };
        let group = |pick: &dyn Fn(u32) -> bool| {
            let all: Vec<u32> = eligible().filter(|&i| pick(i)).collect();
            let local: Vec<u32> = match &policy.zone {
                Some(z) => all
                    .iter()
                    .copied()
                    .filter(|&i| members[i as usize].instance().zone() == Some(z.as_str()))
                    .collect(),
                None => Vec::new(),
            };
            Some(Group {
                all: Rotation::new(members, all)?,
                local: Rotation::new(members, local),
            })
        };
        let stable = group(&|i| !is_canary(i));
        let canary = group(&|i| is_canary(i));
        let mut hint_members: HashMap<&str, Vec<u32>> = HashMap::new();
        for i in eligible() {
            if let Some(h) = members[i as usize].instance().metadata.get(HINT_KEY) {
                hint_members.entry(h).or_default().push(i);
            }
        }
        let hints = hint_members
            .into_iter()
            .filter_map(|(h, m)| Some((h.to_string(), Rotation::new(members, m)?)))
            .collect();
        let mut by_key = ByKey::default();
        if policy.pins || policy.sticky_cookie.is_some() || policy.spring_cookie {
            // instanceIds first: a label that equals another instance's id wins.
            for (i, m) in members.iter().enumerate() {
                by_key.insert(m.instance().instance_id.clone(), i as u32);
            }
            for (i, m) in members.iter().enumerate() {
                by_key.insert(m.label().to_string(), i as u32);
            }
        }
        let marked = members.iter().filter(|m| m.health().marked()).count() as u32;
        Plan {
            rotation_size: in_rotation.iter().filter(|&&r| r).count(),
            in_rotation,
            stable,
            canary,
            hints,
            by_key,
            canary_count: AtomicU64::new(0),
            marked: AtomicU32::new(marked),
            policy,
        }
    }

    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// True when some instance may get a service-host request.
    pub fn has_eligible(&self) -> bool {
        self.rotation_size > 0
    }

    /// Whether instance `index` is in the service host's rotation (ejections aside).
    pub fn in_rotation(&self, index: usize) -> bool {
        self.in_rotation.get(index).copied().unwrap_or(false)
    }

    /// The canaries' indices.
    pub fn canaries(&self) -> &[u32] {
        self.canary.as_ref().map_or(&[], |g| &g.all.members)
    }

    /// True when instance `index` is out for now: ejected by passive health. Clears a
    /// mark whose time has run out.
    fn ejected<M: Member, F: Fn() -> u64>(
        &self,
        members: &[M],
        index: usize,
        clock: &Clock<F>,
    ) -> bool {
        if self.marked.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let h = members[index].health();
        if !h.marked() {
            return false;
        }
        let now = clock.now();
        if h.expire(now) {
            self.marked.fetch_sub(1, Ordering::Relaxed);
        }
        h.ejected(now)
    }

    fn ok<M: Member, F: Fn() -> u64>(&self, members: &[M], index: usize, clock: &Clock<F>) -> bool {
        self.in_rotation[index] && !self.ejected(members, index, clock)
    }

    fn lookup(&self, key: &str) -> Option<usize> {
        let found = self.by_key.get(key).or_else(|| {
            // Labels in any case (instanceIds are matched as registered).
            key.bytes()
                .any(|b| b.is_ascii_uppercase())
                .then(|| self.by_key.get(&key.to_ascii_lowercase()))
                .flatten()
        });
        found.map(|&i| i as usize)
    }

    /// Why instance `index` is not in rotation.
    fn why_out<M: Member>(&self, m: &M) -> String {
        if m.instance().status != Status::Up {
            format!("is {}", m.instance().status)
        } else if !m.routable() {
            "may not be proxied (outside upstream.allow)".to_string()
        } else if m.weight().units == 0 {
            "has weight 0 (out of the service host's rotation; its instance host still answers)"
                .to_string()
        } else {
            "is ejected by passive health for now (its instance host still answers)".to_string()
        }
    }

    /// The instance for a request with `keys`, given the clock (read only when some
    /// instance is marked ejected).
    pub fn decide<M: Member>(
        &self,
        members: &[M],
        keys: &Keys<'_>,
        now: impl Fn() -> u64,
    ) -> Decision {
        let clock = Clock {
            read: now,
            at: Cell::new(0),
        };
        if keys.is_empty() {
            return self.balance(members, false, &clock);
        }
        // What a client sent, as a refusal shows it (escaped).
        let shown = |raw: &[u8]| printable(String::from_utf8_lossy(raw).as_ref());
        if let (true, Some(raw)) = (self.policy.pins, keys.pin) {
            let raw = raw.trim_ascii();
            if !raw.is_empty() {
                let found = std::str::from_utf8(raw).ok().and_then(|p| self.lookup(p));
                let refusal = match found {
                    Some(i) if self.ok(members, i, &clock) => {
                        return Decision::Pick {
                            index: i,
                            via: Via::Pin,
                        };
                    }
                    Some(i) => Refusal::PinOut {
                        why: self.why_out(&members[i]),
                        pin: shown(raw),
                    },
                    None => Refusal::UnknownPin(shown(raw)),
                };
                if self.policy.fallback == Fallback::Answer {
                    return Decision::Refuse(refusal);
                }
            }
        }
        if let Some(raw) = keys.hint {
            let raw = raw.trim_ascii();
            if !raw.is_empty() {
                let picked = std::str::from_utf8(raw)
                    .ok()
                    .and_then(|h| self.hints.get(h))
                    .and_then(|r| r.next_ok(|i| self.ok(members, i, &clock)));
                match picked {
                    Some(i) => {
                        return Decision::Pick {
                            index: i,
                            via: Via::Hint,
                        }
                    }
                    None if self.policy.fallback == Fallback::Answer => {
                        return Decision::Refuse(Refusal::NoHint(shown(raw)));
                    }
                    None => {}
                }
            }
        }
        if let Some(name) = &self.policy.sticky_cookie {
            // A value that is not a label is forged or broken: ignored, and replaced.
            let named = sticky::find(keys.cookies, name)
                .filter(|v| sticky::valid_label(v))
                .and_then(|v| self.lookup(v));
            if let Some(i) = named.filter(|&i| self.ok(members, i, &clock)) {
                return Decision::Pick {
                    index: i,
                    via: Via::Sticky,
                };
            }
        }
        if self.policy.spring_cookie {
            let named = sticky::find(keys.cookies, sticky::SPRING_COOKIE)
                .and_then(|v| self.lookup(v.trim()));
            if let Some(i) = named.filter(|&i| self.ok(members, i, &clock)) {
                return Decision::Pick {
                    index: i,
                    via: Via::SpringCookie,
                };
            }
        }
        let forced = self.policy.canary.as_ref().is_some_and(|rule| {
            let asked = |v: &[u8]| rule.values.iter().any(|x| x.as_bytes() == v.trim_ascii());
            keys.canary.is_some_and(asked)
                || self
                    .policy
                    .canary_cookie
                    .as_deref()
                    .and_then(|name| sticky::find(keys.cookies, name))
                    .is_some_and(|v| asked(v.as_bytes()))
        });
        self.balance(members, forced, &clock)
    }

    /// The weighted round robin: the canary or stable group, in the edge's zone when it
    /// has an instance there that is not ejected.
    fn balance<M: Member, F: Fn() -> u64>(
        &self,
        members: &[M],
        forced: bool,
        clock: &Clock<F>,
    ) -> Decision {
        let to_canary = self.canary.is_some()
            && (forced
                || self.policy.canary.as_ref().is_some_and(|c| {
                    let share = u64::from(c.share);
                    let scale = u64::from(SHARE_SCALE);
                    let k = self.canary_count.fetch_add(1, Ordering::Relaxed) % scale;
                    // Exactly `share` of every SHARE_SCALE requests, spread evenly.
                    share > 0 && ((k + 1) * share) / scale != (k * share) / scale
                }));
        let order = if to_canary {
            [&self.canary, &self.stable]
        } else {
            [&self.stable, &self.canary]
        };
        let ejections = self.marked.load(Ordering::Relaxed) != 0;
        for group in order.into_iter().flatten() {
            if !ejections {
                let r = group.local.as_ref().unwrap_or(&group.all);
                return Decision::Pick {
                    index: r.next(),
                    via: Via::Rotation,
                };
            }
            let ok = |i| self.ok(members, i, clock);
            let picked = group
                .local
                .as_ref()
                .and_then(|r| r.next_ok(ok))
                .or_else(|| group.all.next_ok(ok));
            if let Some(index) = picked {
                return Decision::Pick {
                    index,
                    via: Via::Rotation,
                };
            }
        }
        // Everything ejected (ejection never takes a service's last instance, but a
        // mark can outlive a rebuild): passive health yields to the rotation.
        match order.into_iter().flatten().next() {
            Some(g) => Decision::Pick {
                index: g.all.next(),
                via: Via::Rotation,
            },
            None => Decision::Refuse(Refusal::NoneUp),
        }
    }

    /// The instance for a retry after `last` failed: the next one in rotation after it
    /// (in instanceId order), preferring one neither tried (`tried`) nor ejected, then one
    /// not tried, then any in rotation. The round robin's cursor is left alone: if a
    /// retry advanced it too, a failing instance would fall in step with it and get every
    /// request's first try.
    pub fn retry<M: Member>(
        &self,
        members: &[M],
        last: Option<usize>,
        tried: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = members.len();
        let from = last.map_or(0, |i| i + 1);
        let clock = Clock {
            read: super::now_ms,
            at: Cell::new(0),
        };
        let ring = || {
            (0..n)
                .map(|k| (from + k) % n)
                .filter(|&i| self.in_rotation[i])
        };
        ring()
            .find(|&i| !tried(i) && !self.ejected(members, i, &clock))
            .or_else(|| ring().find(|&i| !tried(i)))
            .or_else(|| ring().next())
    }

    /// Counts a try's outcome at instance `index`; true when it ejected the instance.
    pub fn observe<M: Member>(
        &self,
        members: &[M],
        index: usize,
        outcome: Outcome,
        now: u64,
    ) -> bool {
        let Some(passive) = &self.policy.passive else {
            return false;
        };
        if !self.in_rotation(index) || !members[index].health().record(passive, outcome) {
            return false;
        }
        let out = (0..members.len())
            .filter(|&i| self.in_rotation[i] && members[i].health().ejected(now))
            .count();
        if out >= passive.max_ejected(self.rotation_size) {
            return false;
        }
        match members[index].health().eject(passive, now) {
            Some(fresh) => {
                if fresh {
                    self.marked.fetch_add(1, Ordering::Relaxed);
                }
                true
            }
            None => false,
        }
    }
}
