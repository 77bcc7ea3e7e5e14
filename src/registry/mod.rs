//! The registry sources: Eureka (`eureka/`) and Nacos (`nacos/`), each keeping
//! its own copy of its registry and publishing it through the
//! [`Feed`](crate::routes::Feed).

mod eureka;
mod nacos;

pub use crate::instance::{Instance, InstanceKey, Status};
pub use eureka::parse;
pub use eureka::{
    apps_hashcode, EurekaClient, FetchError, RegistrySync, Snapshot, SyncError, SyncState,
    SyncStatus, SHRINK_HOLD_BELOW,
};
pub use nacos::{NacosError, NacosSource, NacosState, NacosStatus};
