//! The Eureka registry: payload parsing, the REST client and the background sync that
//! keeps the routing table up to date.

pub mod client;
pub mod model;
pub mod parse;
pub mod sync;

pub use client::{EurekaClient, FetchError};
pub use model::{Instance, Snapshot, Status};
pub use sync::{RegistrySync, SyncState, SyncStatus};
