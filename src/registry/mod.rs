//! The Eureka registry: payload parsing, the REST client, xipgate's copy of the
//! registry and the background sync that keeps the routing table up to date.

mod client;
mod copy;
mod model;
mod nacos;
pub mod parse;
mod sync;

pub use crate::instance::{Instance, InstanceKey, Status};
pub use client::{EurekaClient, FetchError};
pub use copy::SHRINK_HOLD_BELOW;
pub use model::Snapshot;
pub use nacos::{NacosError, NacosSource, NacosState, NacosStatus};
pub use sync::{apps_hashcode, RegistrySync, SyncError, SyncState, SyncStatus};
