//! What a stand-in Eureka sends, for the `--demo` world, the tests' stub and the
//! benchmarks: one source, made from an answer recorded from Spring Cloud's Eureka server
//! (`tests/fixtures/eureka-2.0.6-apps.json`, see `it/record-fixtures.sh`), so stand-ins
//! cannot drift from the real shape. `bench/standin.py` reads the same recording for the
//! Python stand-ins.
//!
//! Besides the shape it holds the server's rules a stand-in must follow: the status it
//! serves after an override ([`served_status`]) and the `apps__hashcode` over the served
//! status ([`hashcode`]).

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use crate::instance::Status;

/// The recorded answer the instance template comes from.
const RECORDED: &str = include_str!("../tests/fixtures/eureka-2.0.6-apps.json");

/// The recorded instance every stand-in instance is made from: the first one with
/// metadata, as the server wrote it (field order included).
pub(crate) fn template() -> &'static Map<String, Value> {
    static TEMPLATE: OnceLock<Map<String, Value>> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let doc: Value = serde_json::from_str(RECORDED).unwrap_or(Value::Null);
        doc["applications"]["application"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|a| a["instance"].as_array().into_iter().flatten())
            .find(|i| i["metadata"].as_object().is_some_and(|m| m.len() > 1))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    })
}

/// One registration, as a client made it.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Upper-case, as the server stores it.
    pub app: String,
    pub instance_id: String,
    pub host_name: String,
    pub ip: String,
    pub port: u16,
    /// False for an instance that enables only its securePort.
    pub port_enabled: bool,
    pub secure_port: Option<u16>,
    /// The instance's own status (what its client reports).
    pub status: Status,
    /// An operator's override (`PUT .../status?value=`), if any.
    pub overridden: Option<Status>,
    pub metadata: Vec<(String, String)>,
    pub registered_ms: u64,
    /// When it last renewed; 0 for never.
    pub renewed_ms: u64,
    pub lease_secs: u64,
}

impl Registration {
    /// A Spring-style registration: `pod:app:port`, UP, no override, never renewed.
    pub fn spring(app: &str, pod: &str, ip: &str, port: u16) -> Self {
        Registration {
            app: app.to_uppercase(),
            instance_id: format!("{pod}:{}:{port}", app.to_lowercase()),
            host_name: pod.to_string(),
            ip: ip.to_string(),
            port,
            port_enabled: true,
            secure_port: None,
            status: Status::Up,
            overridden: None,
            metadata: vec![("management.port".into(), port.to_string())],
            registered_ms: 1_700_000_000_000,
            renewed_ms: 0,
            lease_secs: 90,
        }
    }

    /// The status the server serves for it.
    pub fn served_status(&self) -> Status {
        served_status(self.status, self.overridden)
    }
}

/// The server's `FirstMatchWinsCompositeRule`: an instance's own DOWN or STARTING wins
/// (`DownOrStartingRule`), then an override (`OverrideExistsRule`), then its own status.
pub fn served_status(own: Status, overridden: Option<Status>) -> Status {
    match (own, overridden) {
        (Status::Down | Status::Starting, _) => own,
        (_, Some(o)) if o != Status::Unknown => o,
        _ => own,
    }
}

/// `apps__hashcode` as the server computes it: `STATUS_count_` for every served status
/// present, in name order.
pub fn hashcode(statuses: impl IntoIterator<Item = Status>) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for s in statuses {
        *counts.entry(s.as_str()).or_insert(0usize) += 1;
    }
    counts.iter().map(|(s, n)| format!("{s}_{n}_")).collect()
}

/// One instance as the server writes it, with `actionType` `action` (ADDED, MODIFIED,
/// DELETED).
pub fn instance(r: &Registration, action: &str) -> Value {
    let mut i = template().clone();
    let base = format!("http://{}:{}", r.ip, r.port);
    // The server writes the lease's last renewal as renewal + duration (Lease.renew), or
    // the registration time before the first renewal.
    let renewal = if r.renewed_ms == 0 {
        r.registered_ms
    } else {
        r.renewed_ms + r.lease_secs * 1000
    };
    let metadata: Map<String, Value> = r
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let fields = [
        ("instanceId", json!(r.instance_id)),
        ("hostName", json!(r.host_name)),
        ("app", json!(r.app)),
        ("ipAddr", json!(r.ip)),
        ("status", json!(r.served_status().as_str())),
        (
            "overriddenStatus",
            json!(r.overridden.unwrap_or(Status::Unknown).as_str()),
        ),
        (
            "port",
            json!({"$": r.port, "@enabled": r.port_enabled.to_string()}),
        ),
        (
            "securePort",
            json!({"$": r.secure_port.unwrap_or(443), "@enabled": r.secure_port.is_some().to_string()}),
        ),
        (
            "leaseInfo",
            json!({"renewalIntervalInSecs": 30, "durationInSecs": r.lease_secs,
                   "registrationTimestamp": r.registered_ms, "lastRenewalTimestamp": renewal,
                   "evictionTimestamp": 0, "serviceUpTimestamp": r.registered_ms}),
        ),
        ("metadata", Value::Object(metadata)),
        ("homePageUrl", json!(format!("{base}/"))),
        ("statusPageUrl", json!(format!("{base}/actuator/info"))),
        ("healthCheckUrl", json!(format!("{base}/actuator/health"))),
        ("vipAddress", json!(r.app.to_lowercase())),
        ("secureVipAddress", json!(r.app.to_lowercase())),
        ("lastUpdatedTimestamp", json!(r.registered_ms.to_string())),
        ("lastDirtyTimestamp", json!(r.registered_ms.to_string())),
        ("actionType", json!(action)),
    ];
    for (k, v) in fields {
        i.insert(k.to_string(), v);
    }
    Value::Object(i)
}

/// An `/eureka/apps` or `/eureka/apps/delta` document: the instances grouped by
/// application in the order first seen, with the hashcode of the whole registry (for a
/// delta too, as the server sends it) and `versions__delta`.
pub fn applications(instances: &[Value], hashcode: &str, version: u64) -> Value {
    let mut apps: Vec<(String, Vec<Value>)> = Vec::new();
    for i in instances {
        let app = i["app"].as_str().unwrap_or_default();
        match apps.iter_mut().find(|(a, _)| a == app) {
            Some((_, list)) => list.push(i.clone()),
            None => apps.push((app.to_string(), vec![i.clone()])),
        }
    }
    json!({"applications": {
        "versions__delta": version.to_string(),
        "apps__hashcode": hashcode,
        "application": apps
            .into_iter()
            .map(|(name, instance)| json!({"name": name, "instance": instance}))
            .collect::<Vec<_>>()
    }})
}

/// A full registry document for `registrations`.
pub fn full(registrations: &[Registration]) -> String {
    let instances: Vec<Value> = registrations.iter().map(|r| instance(r, "ADDED")).collect();
    let hash = hashcode(registrations.iter().map(Registration::served_status));
    applications(&instances, &hash, 1).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_follow_the_servers_rules() {
        use Status::*;
        // (own, override, served)
        for (own, o, served) in [
            (Up, None, Up),
            (Up, Some(OutOfService), OutOfService),
            (Down, Some(Up), Down),
            (Starting, Some(Up), Starting),
            (Down, Some(OutOfService), Down),
            (OutOfService, Some(Up), Up),
            (Up, Some(Unknown), Up),
        ] {
            assert_eq!(served_status(own, o), served, "{own:?} + {o:?}");
        }
    }
}
