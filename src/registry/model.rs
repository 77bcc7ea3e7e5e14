//! What xipgate keeps of a Eureka instance: only the fields it routes on or shows.

use std::collections::BTreeMap;
use std::fmt;

/// Eureka's `InstanceStatus`. Anything a server sends that is not one of the five known
/// values is `Unknown`, as Eureka's own client does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Up,
    Down,
    Starting,
    OutOfService,
    Unknown,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Up,
        Status::Down,
        Status::Starting,
        Status::OutOfService,
        Status::Unknown,
    ];

    pub fn parse(s: &str) -> Status {
        match s.trim().to_ascii_uppercase().as_str() {
            "UP" => Status::Up,
            "DOWN" => Status::Down,
            "STARTING" => Status::Starting,
            "OUT_OF_SERVICE" => Status::OutOfService,
            _ => Status::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Up => "UP",
            Status::Down => "DOWN",
            Status::Starting => "STARTING",
            Status::OutOfService => "OUT_OF_SERVICE",
            Status::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One registered instance, as parsed from `/apps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The application name as Eureka reports it (usually upper-case).
    pub app: String,
    pub instance_id: String,
    pub host_name: String,
    /// `ipAddr` as registered; not necessarily a valid IP (the proxy checks).
    pub ip_addr: String,
    /// The plain port when enabled.
    pub port: Option<u16>,
    /// The secure port when enabled.
    pub secure_port: Option<u16>,
    /// The effective status: `overriddenStatus` when set to something other than
    /// UNKNOWN (an operator's override wins), else `status`.
    pub status: Status,
    pub metadata: BTreeMap<String, String>,
    pub home_page_url: Option<String>,
    pub status_page_url: Option<String>,
    pub health_check_url: Option<String>,
    /// `leaseInfo.lastRenewalTimestamp`, milliseconds since the epoch.
    pub last_renewal_ms: Option<u64>,
    /// `lastDirtyTimestamp`: Eureka bumps it on every change of the registration.
    pub last_dirty_ms: Option<u64>,
}

impl Instance {
    /// Round-robin weight from metadata `weight` (Spring Cloud LoadBalancer's key),
    /// clamped to 1..=100 so a typo cannot starve or flood a service.
    pub fn weight(&self) -> u32 {
        self.metadata
            .get("weight")
            .and_then(|w| w.trim().parse::<u32>().ok())
            .map_or(1, |w| w.clamp(1, MAX_WEIGHT))
    }

    /// Availability zone from the metadata keys Spring Cloud and Eureka use.
    pub fn zone(&self) -> Option<&str> {
        ["zone", "availability-zone", "topology.kubernetes.io/zone"]
            .iter()
            .find_map(|k| self.metadata.get(*k).map(String::as_str))
    }
}

/// Highest round-robin weight honoured.
pub const MAX_WEIGHT: u32 = 100;

/// A parsed registry: every instance that parsed, plus a note of each one that did not.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub instances: Vec<Instance>,
    /// One line per skipped instance or application, for logs and the console.
    pub skipped: Vec<String>,
    /// instanceIds a delta marks DELETED (empty for a full fetch).
    pub deleted: Vec<String>,
    /// `apps__hashcode`, used by delta sync.
    pub apps_hashcode: Option<String>,
}
