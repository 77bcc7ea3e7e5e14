//! The Eureka registry: payload parsing, the REST client, xipgate's copy of the
//! registry and the background sync that keeps the routing table up to date.

pub mod client;
mod copy;
pub mod model;
pub mod parse;
pub mod sync;

pub use crate::instance::{Instance, InstanceKey, Status};
pub use client::{EurekaClient, FetchError};
pub use copy::SHRINK_HOLD_BELOW;
pub use model::Snapshot;
pub use sync::{RegistrySync, SyncError, SyncState, SyncStatus};
