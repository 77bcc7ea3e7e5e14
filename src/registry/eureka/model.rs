//! A parsed registry document.

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
}
