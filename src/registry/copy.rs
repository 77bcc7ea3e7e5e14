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
use std::time::{Duration, Instant};

use super::model::Snapshot;
use super::sync::apps_hashcode;
use crate::instance::{Instance, InstanceKey};

/// A full fetch that lists fewer than 1/this of the known instances is a sudden shrink:
/// `listed * SHRINK_HOLD_BELOW < known` (so also any empty registry after a full one).
pub const SHRINK_HOLD_BELOW: usize = 2;

#[derive(Debug, Default)]
pub struct RegistryCopy {
    server: HashMap<InstanceKey, Instance>,
    held: HashMap<InstanceKey, Instance>,
    held_since: Option<Instant>,
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

impl RegistryCopy {
    /// Instances to route: the server's, then held ones it does not list.
    pub fn routed(&self) -> impl Iterator<Item = &Instance> {
        self.server.values().chain(
            self.held
                .iter()
                .filter(|(k, _)| !self.server.contains_key(*k))
                .map(|(_, i)| i),
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

    /// Replaces the server's part with a full fetch, starting a hold if it shrank, else
    /// settling or expiring a hold under way (see [`RegistryCopy::expire`]).
    pub fn apply_full(
        &mut self,
        instances: Vec<Instance>,
        now: Instant,
        grace: Duration,
    ) -> HoldChange {
        let listed: HashMap<InstanceKey, Instance> =
            instances.into_iter().map(|i| (i.key(), i)).collect();
        let known = self.routed().count();
        let shrank = listed.len() * SHRINK_HOLD_BELOW < known;
        let old = std::mem::replace(&mut self.server, listed);
        if shrank && self.held_since.is_none() {
            for (k, i) in old {
                if !self.server.contains_key(&k) {
                    self.held.insert(k, i);
                }
            }
            self.held_since = Some(now);
            return HoldChange::Started {
                listed: self.server.len(),
                known,
                held: self.held.len(),
            };
        }
        self.expire(now, grace)
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
                next.insert(inst.key(), inst);
            }
            next
        });
        let ours = apps_hashcode(next.as_ref().unwrap_or(&self.server).values());
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

    /// Ends the hold when nothing is left to hold or `grace` has passed since it began;
    /// instances listed again are let go first, so `dropped` counts only missing ones.
    pub fn expire(&mut self, now: Instant, grace: Duration) -> HoldChange {
        let settled = self.settle();
        match (&settled, self.held_since) {
            (HoldChange::Holding { .. }, Some(since))
                if now.saturating_duration_since(since) >= grace =>
            {
                let dropped = self.held.len();
                self.held.clear();
                self.held_since = None;
                HoldChange::Expired { dropped }
            }
            _ => settled,
        }
    }

    /// Drops held instances the server lists again; ends the hold when none is left.
    fn settle(&mut self) -> HoldChange {
        if self.held_since.is_none() {
            return HoldChange::None;
        }
        let server = &self.server;
        self.held.retain(|k, _| !server.contains_key(k));
        if self.held.is_empty() {
            self.held_since = None;
            HoldChange::Recovered
        } else {
            HoldChange::Holding {
                held: self.held.len(),
            }
        }
    }
}

#[cfg(test)]
mod tests;
