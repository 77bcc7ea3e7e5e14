//! What xipgate keeps of a registered instance: only the fields it routes on or shows.
//!
//! A module of its own at the crate root because both the registry (which fills it) and
//! the routing table (which routes on it) need it, and the table must not depend on the
//! registry that writes into it.

mod metadata;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

pub use metadata::Metadata;

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

/// The name of the registry an instance came from (`eureka`, or a Nacos source's name):
/// shown on the console and in the API, and the order in which sources win a shared name.
pub type SourceName = std::sync::Arc<str>;

/// The source name of instances from Eureka.
pub fn eureka_source() -> SourceName {
    static EUREKA: std::sync::OnceLock<SourceName> = std::sync::OnceLock::new();
    EUREKA.get_or_init(|| SourceName::from("eureka")).clone()
}

/// One registered instance, as parsed from `/apps` (or made from a Nacos instance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The registry it came from.
    pub source: SourceName,
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
    /// `status` exactly as the server sends it. A real Eureka server has already folded
    /// any override into it, and an instance's own DOWN or STARTING wins over an
    /// override (its `DownOrStartingRule` comes before `OverrideExistsRule`), so this
    /// is what routing and the `apps__hashcode` both go by.
    pub status: Status,
    /// `overriddenStatus` when set to something other than UNKNOWN: shown, never routed on.
    pub overridden_status: Option<Status>,
    pub metadata: Metadata,
    pub home_page_url: Option<String>,
    pub status_page_url: Option<String>,
    pub health_check_url: Option<String>,
    /// When the instance last renewed its lease, milliseconds since the epoch (see the
    /// registry's parser for why this is not simply `leaseInfo.lastRenewalTimestamp`).
    pub last_renewal_ms: Renewal,
    /// `lastDirtyTimestamp`: Eureka bumps it on every change of the registration.
    pub last_dirty_ms: Option<u64>,
}

impl Instance {
    /// A minimal instance for unit tests: `app`/`id` at `ip:8080` with `status`.
    #[cfg(test)]
    pub(crate) fn for_test(app: &str, id: &str, ip: &str, status: Status) -> Self {
        Instance {
            source: eureka_source(),
            app: app.into(),
            instance_id: id.into(),
            host_name: String::new(),
            ip_addr: ip.into(),
            port: Some(8080),
            secure_port: None,
            status,
            overridden_status: None,
            metadata: Default::default(),
            home_page_url: None,
            status_page_url: None,
            health_check_url: None,
            last_renewal_ms: Renewal::default(),
            last_dirty_ms: None,
        }
    }

    /// True when `other` is the same registration: equal in everything but the lease
    /// renewal, which changes every 30 s without changing anything else. Compared field by
    /// field in place; the exhaustive pattern makes a new field a compile error here until
    /// it is compared.
    pub fn same_registration(&self, o: &Instance) -> bool {
        let Instance {
            source,
            app,
            instance_id,
            host_name,
            ip_addr,
            port,
            secure_port,
            status,
            overridden_status,
            metadata,
            home_page_url,
            status_page_url,
            health_check_url,
            last_renewal_ms: _,
            last_dirty_ms,
        } = self;
        *instance_id == o.instance_id
            && *app == o.app
            && *host_name == o.host_name
            && *ip_addr == o.ip_addr
            && *port == o.port
            && *secure_port == o.secure_port
            && *status == o.status
            && *overridden_status == o.overridden_status
            && *home_page_url == o.home_page_url
            && *status_page_url == o.status_page_url
            && *health_check_url == o.health_check_url
            && *last_dirty_ms == o.last_dirty_ms
            && *metadata == o.metadata
            && *source == o.source
    }

    /// The registry's identity of an instance: Eureka keys its registry by application
    /// and instanceId, so two applications may each have an instance with the same id.
    pub fn key(&self) -> InstanceKey {
        InstanceKey::new(&self.app, &self.instance_id)
    }

    /// Availability zone from the metadata keys Spring Cloud and Eureka use, or the
    /// cluster of a Nacos instance.
    pub fn zone(&self) -> Option<&str> {
        [
            "zone",
            "availability-zone",
            "topology.kubernetes.io/zone",
            "nacos.cluster",
        ]
        .iter()
        .find_map(|k| self.metadata.get(k))
    }
}

/// When an instance last renewed its lease, in milliseconds since the epoch, or not known.
///
/// Settable through a shared reference: the registry copy and the routing table share one
/// `Arc<Instance>` per instance, and a full fetch that finds a registration unchanged but
/// renewed updates this instead of keeping a second copy of the instance.
#[derive(Default)]
pub struct Renewal(AtomicU64);

impl Renewal {
    /// 0 stands for "not known" (no lease is renewed at the epoch).
    pub fn new(ms: Option<u64>) -> Self {
        Renewal(AtomicU64::new(ms.unwrap_or(0)))
    }

    pub fn get(&self) -> Option<u64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|ms| *ms != 0)
    }

    pub fn set(&self, ms: Option<u64>) {
        self.0.store(ms.unwrap_or(0), Ordering::Relaxed);
    }
}

impl From<Option<u64>> for Renewal {
    fn from(ms: Option<u64>) -> Self {
        Renewal::new(ms)
    }
}

impl Clone for Renewal {
    fn clone(&self) -> Self {
        Renewal::new(self.get())
    }
}

impl PartialEq for Renewal {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for Renewal {}

impl fmt::Debug for Renewal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

/// (application, instanceId), the key of xipgate's copy of the registry and of its
/// routing table. One string (`APP`, a NUL, the id) rather than a pair, so it hashes and
/// compares in one go; NUL cannot occur in either part (Eureka's names come from
/// JSON/XML text and Spring's property values).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceKey(String);

impl InstanceKey {
    pub fn new(app: &str, instance_id: &str) -> Self {
        let mut k = String::with_capacity(app.len() + 1 + instance_id.len());
        // Eureka upper-cases application names on registration; compare them that way.
        k.extend(app.chars().map(|c| c.to_ascii_uppercase()));
        k.push('\0');
        k.push_str(instance_id);
        InstanceKey(k)
    }

    pub fn app(&self) -> &str {
        self.0.split_once('\0').map_or("", |(a, _)| a)
    }

    pub fn instance_id(&self) -> &str {
        self.0.split_once('\0').map_or(&self.0, |(_, i)| i)
    }
}

impl fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.app(), self.instance_id())
    }
}
