//! xipgate's copy of the registry: exactly what the server last said, which deltas apply
//! to and the `apps__hashcode` is checked against, plus the instances held back after
//! the registry suddenly shrank.
//!
//! Why a hold: a restarted Spring Eureka node has synced nothing from its peers and
//! serves an empty, then a partial registry until every client's next heartbeat finds
//! its lease gone and registers again (30-60 s with Spring's defaults). Believed at once,
//! that drops services that are running fine. So when a full fetch lists fewer than
//! half of the instances known, the missing ones keep being routed, as last seen, until
//! they are back, a delta deletes them, or the grace time (`xipgate.registry.shrink_grace`)
//! runs out. The hold never touches the server's part: hashcodes and deltas keep
//! working on exactly what the server sent.
//!
//! Everything here is pure (time comes in as an argument) and tested without a server.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::model::{Known, Snapshot, Unchanged};
use super::sync::apps_hashcode;
use crate::instance::{Instance, InstanceKey};

/// A full fetch that lists fewer than 1/this of the known instances is a sudden shrink:
/// `listed * SHRINK_HOLD_BELOW < known` (so also any empty registry after a full one).
pub const SHRINK_HOLD_BELOW: usize = 2;

#[derive(Debug, Default)]
pub struct RegistryCopy {
    /// Shared with the routing table's targets (`routes::Shared`): one instance in memory
    /// for both.
    server: HashMap<InstanceKey, Arc<Instance>>,
    held: HashMap<InstanceKey, Held>,
    /// When the hold under way began (the first instance held), for the status.
    held_since: Option<Instant>,
    clock: AnsweredClock,
}

/// An instance missing from a sudden shrink, still routed.
#[derive(Debug)]
struct Held {
    instance: Arc<Instance>,
    /// The [`AnsweredClock`] reading when it went missing: each instance has its own
    /// grace, so instances held by a second shrink get theirs in full.
    at: Duration,
}

/// Time during which the registry answered. A hold's grace counts only this: a
/// restarting registry is unreachable before it serves its partial registry, and that
/// time gives its clients no chance to register again.
#[derive(Debug, Default)]
struct AnsweredClock {
    counted: Duration,
    /// The last answer, unless a sync failed since.
    last: Option<Instant>,
}

impl AnsweredClock {
    /// The registry answered at `now`: counts the time since its last answer (none when a
    /// sync failed in between) and returns the reading.
    fn answered(&mut self, now: Instant) -> Duration {
        if let Some(last) = self.last {
            self.counted += now.saturating_duration_since(last);
        }
        self.last = Some(now);
        self.counted
    }
}

/// What a change did to the hold, for the log and the sync status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldChange {
    /// Nothing held before or after.
    None,
    /// A full fetch listed `listed` of `known` instances: the other `held` are kept.
    Started {
        listed: usize,
        known: usize,
        held: usize,
    },
    /// Still holding this many.
    Holding { held: usize },
    /// Every held instance came back or was deleted by the server.
    Recovered,
    /// The grace time ran out; these many were dropped.
    Expired { dropped: usize },
}

/// A delta whose result does not hash to what the server says its registry hashes to:
/// the copy has drifted and needs a full fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashMismatch {
    pub theirs: Option<String>,
    pub ours: String,
}

impl Known for RegistryCopy {
    fn same(&self, instance: &Instance) -> Option<Arc<Instance>> {
        self.server
            .get(&instance.key())
            .filter(|old| old.same_registration(instance))
            .cloned()
    }
}

impl RegistryCopy {
    /// Instances to route: the server's, then held ones it does not list.
    pub fn routed(&self) -> impl Iterator<Item = &Arc<Instance>> {
        self.server.values().chain(
            self.held
                .iter()
                .filter(|(k, _)| !self.server.contains_key(*k))
                .map(|(_, h)| &h.instance),
        )
    }

    #[cfg(test)]
    pub fn server_len(&self) -> usize {
        self.server.len()
    }

    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    pub fn held_since(&self) -> Option<Instant> {
        self.held_since
    }

    /// Replaces the server's part with a full fetch. A sudden shrink (also one during a
    /// hold) holds the instances it leaves out; otherwise a hold under way is settled or
    /// expired (see [`RegistryCopy::expire`]).
    pub fn apply_full(
        &mut self,
        instances: Vec<Instance>,
        now: Instant,
        grace: Duration,
    ) -> HoldChange {
        self.apply_full_with(instances, Vec::new(), now, grace)
    }

    /// [`RegistryCopy::apply_full`] for a fetch parsed against this copy (see [`Known`]):
    /// `unchanged` are instances it listed that the copy already holds.
    pub fn apply_full_with(
        &mut self,
        instances: Vec<Instance>,
        unchanged: Vec<Unchanged>,
        now: Instant,
        grace: Duration,
    ) -> HoldChange {
        let at = self.clock.answered(now);
        let mut listed: HashMap<InstanceKey, Arc<Instance>> =
            HashMap::with_capacity(instances.len() + unchanged.len());
        // In the document's order, so the last of two same keys wins as it always did.
        let mut unchanged = unchanged.into_iter().peekable();
        let mut instances = instances.into_iter();
        for place in 0.. {
            let next = match unchanged.next_if(|u| u.at == place) {
                Some(u) => {
                    u.instance.last_renewal_ms.set(u.renewal);
                    u.instance
                }
                None => match instances.next() {
                    Some(i) => self.reuse(&i.key(), i),
                    None => match unchanged.next() {
                        Some(u) => {
                            u.instance.last_renewal_ms.set(u.renewal);
                            u.instance
                        }
                        None => break,
                    },
                },
            };
            listed.insert(next.key(), next);
        }
        let known = self.routed().count();
        let shrank = listed.len() * SHRINK_HOLD_BELOW < known;
        let old = std::mem::replace(&mut self.server, listed);
        let mut newly = 0;
        if shrank {
            for (k, instance) in old {
                if !self.server.contains_key(&k) {
                    self.held.insert(k, Held { instance, at });
                    newly += 1;
                }
            }
        }
        if newly == 0 {
            return self.expire_at(at, grace);
        }
        self.held_since.get_or_insert(now);
        // Instances of an earlier wave may run out of grace now too.
        self.expire_at(at, grace);
        HoldChange::Started {
            listed: self.server.len(),
            known,
            held: self.held.len(),
        }
    }

    /// The instance as the copy keeps it: the one already kept for `key` when `new` is
    /// the same registration (only its renewal is taken over), so the routing table,
    /// which keeps its target for an unchanged registration, goes on sharing it; else
    /// `new`. Without this, every full fetch would leave two copies of every instance.
    fn reuse(&self, key: &InstanceKey, new: Instance) -> Arc<Instance> {
        match self.server.get(key) {
            Some(old) if old.same_registration(&new) => {
                old.last_renewal_ms.set(new.last_renewal_ms.get());
                Arc::clone(old)
            }
            _ => Arc::new(new),
        }
    }

    /// Applies a delta if the result hashes to what the server says; else leaves the
    /// copy as it was. `Ok(true)` when something changed.
    pub fn apply_delta(&mut self, delta: Snapshot) -> Result<bool, HashMismatch> {
        let changes = delta.instances.len() + delta.deleted.len();
        // The steady state is a delta with no changes: check the hash against the copy
        // as it is instead of cloning every instance first (milliseconds at 10,000).
        let next = (changes > 0).then(|| {
            let mut next = self.server.clone();
            for k in &delta.deleted {
                next.remove(k);
            }
            for inst in delta.instances {
                next.insert(inst.key(), Arc::new(inst));
            }
            next
        });
        let ours = apps_hashcode(next.as_ref().unwrap_or(&self.server).values().map(|i| &**i));
        // Eureka always sends the hash with a delta; a delta without one cannot be
        // checked, so it is not trusted (an HTML page that happens to parse is one).
        if delta.apps_hashcode.as_deref() != Some(ours.as_str()) {
            return Err(HashMismatch {
                theirs: delta.apps_hashcode,
                ours,
            });
        }
        for k in &delta.deleted {
            // The server says it is gone: no reason left to hold it.
            self.held.remove(k);
        }
        match next {
            Some(next) => {
                self.server = next;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The registry answered at `now` (a delta): settles or expires the hold.
    pub fn expire(&mut self, now: Instant, grace: Duration) -> HoldChange {
        let at = self.clock.answered(now);
        self.expire_at(at, grace)
    }

    /// Lets go of held instances listed again, then drops those held for `grace` of
    /// answered time; ends the hold when none is left. `dropped` counts only missing ones.
    fn expire_at(&mut self, at: Duration, grace: Duration) -> HoldChange {
        if self.held_since.is_none() {
            return HoldChange::None;
        }
        let server = &self.server;
        self.held.retain(|k, _| !server.contains_key(k));
        let before = self.held.len();
        self.held.retain(|_, h| at.saturating_sub(h.at) < grace);
        let dropped = before - self.held.len();
        if self.held.is_empty() {
            self.held_since = None;
        }
        match (dropped, self.held.len()) {
            (0, 0) => HoldChange::Recovered,
            (0, held) => HoldChange::Holding { held },
            (dropped, _) => HoldChange::Expired { dropped },
        }
    }

    /// A sync failed: the time until the registry answers again does not count.
    pub fn unanswered(&mut self) {
        self.clock.last = None;
    }
}

/// Logs a change of a hold of `source` (a Eureka URL or a Nacos source's name).
pub fn log_hold(change: &HoldChange, source: &str, grace: Duration) {
    match change {
        HoldChange::None | HoldChange::Holding { .. } => {}
        HoldChange::Started { listed, known, held } => log::warn!(
            "registry: {source} suddenly lists {listed} of {known} known instances (a restarted registry refills as clients renew): still routing the {held} missing for up to {}s of answered syncs (xipgate.registry.shrink_grace)",
            grace.as_secs()
        ),
        HoldChange::Recovered => {
            log::info!("registry: {source}: every held instance is listed again")
        }
        HoldChange::Expired { dropped } => log::warn!(
            "registry: {source}: {dropped} held instance(s) still missing after {}s (xipgate.registry.shrink_grace): dropped",
            grace.as_secs()
        ),
    }
}

#[cfg(test)]
mod tests;
