//! A parsed registry document.

use std::sync::Arc;

use crate::instance::{Instance, InstanceKey};

/// A parsed registry: every instance that parsed, plus a note of each one that did not.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub instances: Vec<Instance>,
    /// One line per skipped instance or application, for logs and the console.
    pub skipped: Vec<String>,
    /// Instances a delta marks DELETED (empty for a full fetch).
    pub deleted: Vec<InstanceKey>,
    /// `apps__hashcode`, used by delta sync.
    pub apps_hashcode: Option<String>,
    /// Instances the registry copy already holds exactly as listed (but for the renewal),
    /// found while parsing a full fetch with a [`Known`]: not parsed into a second copy.
    pub unchanged: Vec<Unchanged>,
}

/// A listed instance the copy already holds (see [`Snapshot::unchanged`]).
#[derive(Debug, Clone)]
pub struct Unchanged {
    /// Its place among the instances listed (`instances` and `unchanged` together), so
    /// the document's order, and with it which of two same keys wins, is kept.
    pub at: usize,
    pub instance: Arc<Instance>,
    /// The renewal this answer gives it.
    pub renewal: Option<u64>,
}

/// What a full fetch's parse may compare each instance with as it reads it (the registry
/// copy): the instance already held for the same registration, if any.
pub trait Known: Sync {
    fn same(&self, instance: &Instance) -> Option<Arc<Instance>>;
}

impl Snapshot {
    /// Files the instance just pushed onto `instances` under `unchanged` when `known`
    /// holds it already.
    pub(super) fn dedupe_last(&mut self, known: Option<&dyn Known>) {
        let Some(known) = known else { return };
        let Some(old) = self.instances.last().and_then(|i| known.same(i)) else {
            return;
        };
        if let Some(new) = self.instances.pop() {
            self.unchanged.push(Unchanged {
                at: self.instances.len() + self.unchanged.len(),
                instance: old,
                renewal: new.last_renewal_ms.get(),
            });
        }
    }
}
