//! The Eureka source: payload parsing, the REST client, xipgate's copy of the
//! registry (deltas, `apps__hashcode`, the hold after a sudden shrink) and the
//! background sync that publishes it through the [`Feed`](crate::routes::Feed).

mod client;
pub(super) mod copy;
mod model;
mod one_pass;
pub mod parse;
mod report;
#[cfg(test)]
mod standin_tests;
mod stream;
mod sync;

pub(super) use client::error_chain;
pub use client::{EurekaClient, FetchError};
pub use copy::SHRINK_HOLD_BELOW;
pub use model::Snapshot;
pub use report::EUREKA;
pub use sync::{apps_hashcode, RegistrySync, SyncError, SyncState, SyncStatus};
