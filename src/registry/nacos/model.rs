//! What Nacos answers, and how one of its instances becomes an [`Instance`]: pure
//! functions, tested against answers recorded from a real server (rnacos) and, for the v2
//! API rnacos lacks, transcribed from Nacos' documentation.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::instance::{Instance, SourceName, Status};

/// `/nacos/v1/ns/service/list`: `{"count": N, "doms": [...]}`.
#[derive(Debug, Deserialize)]
pub struct ServiceListV1 {
    #[serde(default)]
    pub count: u64,
    #[serde(default)]
    pub doms: Vec<String>,
}

/// `/nacos/v2/ns/service/list` data: `{"count": N, "services": [...]}`.
#[derive(Debug, Deserialize)]
pub struct ServiceListV2 {
    #[serde(default)]
    pub count: u64,
    #[serde(default)]
    pub services: Vec<String>,
}

/// The v2 wrapper: `{"code": 0, "message": "success", "data": ...}`.
#[derive(Debug, Deserialize)]
pub struct V2<T> {
    pub code: i64,
    #[serde(default)]
    pub message: Option<String>,
    pub data: Option<T>,
}

/// Nacos 3's page (`com.alibaba.nacos.api.model.Page`), the data of
/// `/nacos/v3/admin/ns/service/list`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageV3<T> {
    #[serde(default)]
    pub total_count: u64,
    #[serde(default = "Vec::new")]
    pub page_items: Vec<T>,
}

/// One service of that list with `withInstances=true` (`ServiceDetailInfo`): its
/// instances by cluster, all of them (the server's own copy, before any health filter or
/// protection threshold).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDetailV3 {
    pub service_name: String,
    #[serde(default)]
    pub group_name: String,
    #[serde(default)]
    pub cluster_map: BTreeMap<String, ClusterV3>,
}

#[derive(Debug, Deserialize)]
pub struct ClusterV3 {
    #[serde(default)]
    pub hosts: Vec<NacosInstance>,
}

/// `/ns/instance/list` (v1 body, v2 data): one service's instances.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceList {
    #[serde(default)]
    pub hosts: Vec<NacosInstance>,
    /// Nacos answers unhealthy instances as healthy once this is reached (so that a
    /// service is not starved): xipgate asks with healthyOnly=false and shows the flag.
    #[serde(default)]
    pub reach_protection_threshold: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NacosInstance {
    #[serde(default)]
    pub instance_id: Option<String>,
    pub ip: String,
    pub port: u16,
    #[serde(default = "one")]
    pub weight: f64,
    #[serde(default = "yes")]
    pub healthy: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "yes")]
    pub ephemeral: bool,
    #[serde(default)]
    pub cluster_name: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

fn one() -> f64 {
    1.0
}

fn yes() -> bool {
    true
}

/// Routable only when healthy and enabled, whatever the protection threshold made Nacos
/// say elsewhere; disabled is OUT_OF_SERVICE (an operator's choice), unhealthy is DOWN.
pub fn status_of(healthy: bool, enabled: bool) -> Status {
    match (enabled, healthy) {
        (false, _) => Status::OutOfService,
        (true, true) => Status::Up,
        (true, false) => Status::Down,
    }
}

/// The pod name from the first of `keys` present in the metadata, if it is a usable DNS
/// label start (a Kubernetes pod name is).
pub fn pod_name<'a>(metadata: &'a BTreeMap<String, String>, keys: &[String]) -> Option<&'a str> {
    keys.iter()
        .filter_map(|k| metadata.get(k))
        .map(|v| v.trim())
        .find(|v| {
            !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        })
}

/// A service name without the `group@@` Nacos may prefix it with.
pub fn bare_service(service: &str) -> &str {
    service.rsplit("@@").next().unwrap_or(service)
}

/// Where a Nacos instance is listed: its namespace, group, service and the application
/// name xipgate gives that service (see `naming`).
pub struct Place<'a> {
    pub namespace: &'a str,
    pub group: &'a str,
    pub service: &'a str,
    pub app: &'a str,
}

/// One Nacos instance as an [`Instance`] of `source`, named `place.app`. Its instanceId is
/// Spring's `<host>:<service>:<port>`, with the pod name as host when metadata carries
/// one, else the IP: so in the public namespace and default group its label is the same
/// `<pod>-<port>` a Spring Eureka client gets, and a pod registered in both registries
/// is one instance.
pub fn to_instance(
    source: &SourceName,
    place: &Place,
    n: &NacosInstance,
    pod_name_keys: &[String],
) -> Instance {
    let service = bare_service(place.service);
    let host = pod_name(&n.metadata, pod_name_keys).unwrap_or(&n.ip);
    let mut metadata = n.metadata.clone();
    let mut put = |k: &str, v: String| {
        metadata.insert(format!("nacos.{k}"), v);
    };
    let namespace = if place.namespace.is_empty() {
        "public"
    } else {
        place.namespace
    };
    put("namespace", namespace.to_string());
    put("group", place.group.to_string());
    put("weight", n.weight.to_string());
    put("healthy", n.healthy.to_string());
    put("enabled", n.enabled.to_string());
    put("ephemeral", n.ephemeral.to_string());
    if let Some(c) = &n.cluster_name {
        put("cluster", c.clone());
    }
    if let Some(id) = &n.instance_id {
        put("instanceId", id.clone());
    }
    Instance {
        source: source.clone(),
        // As Nacos has it: Nacos tells `orders` and `ORDERS` apart.
        app: place.app.to_string(),
        instance_id: format!("{host}:{service}:{}", n.port),
        host_name: host.to_string(),
        ip_addr: n.ip.clone(),
        port: Some(n.port),
        secure_port: None,
        status: status_of(n.healthy, n.enabled),
        overridden_status: None,
        metadata: metadata.into(),
        home_page_url: None,
        status_page_url: None,
        health_check_url: None,
        last_renewal_ms: Default::default(),
        last_dirty_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_and_enabled_decide_the_status() {
        let cases = [
            (true, true, Status::Up),
            (false, true, Status::Down),
            (true, false, Status::OutOfService),
            (false, false, Status::OutOfService),
        ];
        for (healthy, enabled, want) in cases {
            assert_eq!(status_of(healthy, enabled), want, "{healthy} {enabled}");
        }
    }

    #[test]
    fn the_pod_name_comes_from_the_first_usable_metadata_key() {
        let keys: Vec<String> = ["pod-name", "hostname"].map(String::from).to_vec();
        let md = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let cases = [
            (
                md(&[("pod-name", "orders-7d9f8-x2k4q")]),
                Some("orders-7d9f8-x2k4q"),
            ),
            (
                md(&[("hostname", "orders-1"), ("pod-name", "orders-2")]),
                Some("orders-2"),
            ),
            (
                md(&[("pod-name", " "), ("hostname", "orders-1")]),
                Some("orders-1"),
            ),
            (md(&[("pod-name", "bad name/x")]), None),
            (md(&[]), None),
        ];
        for (m, want) in cases {
            assert_eq!(pod_name(&m, &keys), want, "{m:?}");
        }
    }

    /// What Nacos 2.x's v2 API documents for `GET /nacos/v2/ns/instance/list`
    /// (nacos.io, "Open API v2", transcribed: rnacos has no v2 naming API to record).
    const V2_INSTANCE_LIST: &str = r#"{"code":0,"message":"success","data":{"name":"DEFAULT_GROUP@@nacos.test.1","groupName":"DEFAULT_GROUP","clusters":"","cacheMillis":10000,"hosts":[{"ip":"127.0.0.1","port":8080,"weight":1.0,"healthy":true,"enabled":true,"ephemeral":true,"clusterName":"DEFAULT","serviceName":"DEFAULT_GROUP@@nacos.test.1","metadata":{},"instanceHeartBeatInterval":5000,"instanceHeartBeatTimeOut":15000,"ipDeleteTimeout":30000,"instanceIdGenerator":"simple"}],"lastRefTime":1676257034735,"checksum":"","allIPs":false,"reachProtectionThreshold":false,"valid":true}}"#;
    const V2_SERVICE_LIST: &str = r#"{"code":0,"message":"success","data":{"count":2,"services":["nacos.test.1","nacos.test.2"]}}"#;

    /// Nacos 3's `GET /nacos/v3/admin/ns/service/list?withInstances=true`, transcribed from
    /// its source (3.0.x-3.1: `ServiceControllerV3.list`, `CatalogServiceV2Impl
    /// .pageListServiceDetail`, the `Page`, `ServiceDetailInfo`, `ClusterInfo` and
    /// `Instance` classes) and the instance fields of the documented v3 client answer:
    /// rnacos has no v3 API to record.
    pub const V3_SERVICE_DETAILS: &str =
        include_str!("../../../tests/fixtures/nacos-3-admin-service-list-with-instances.json");

    #[test]
    fn v3_answers_as_transcribed_parse() {
        let page: V2<PageV3<ServiceDetailV3>> =
            serde_json::from_str(V3_SERVICE_DETAILS).expect("v3 page");
        let page = page.data.expect("data");
        assert_eq!(page.total_count, 2);
        let orders = &page.page_items[0];
        assert_eq!(
            (orders.service_name.as_str(), orders.group_name.as_str()),
            ("orders", "DEFAULT_GROUP")
        );
        let hosts: Vec<&NacosInstance> =
            orders.cluster_map.values().flat_map(|c| &c.hosts).collect();
        assert_eq!(hosts.len(), 3, "every cluster's instances");
        let place = Place {
            namespace: "",
            group: "DEFAULT_GROUP",
            service: &orders.service_name,
            app: &orders.service_name,
        };
        let i = to_instance(
            &SourceName::from("nacos"),
            &place,
            hosts[0],
            &["pod-name".to_string()],
        );
        assert_eq!(i.instance_id, "orders-7d9f8-x2k4q:orders:8080");
        assert!(
            hosts.iter().any(|h| !h.enabled),
            "disabled ones are listed too"
        );
    }

    #[test]
    fn v2_answers_as_documented_parse() {
        let list: V2<InstanceList> = serde_json::from_str(V2_INSTANCE_LIST).expect("v2 list");
        assert_eq!(list.code, 0);
        let hosts = list.data.expect("data").hosts;
        let place = Place {
            namespace: "",
            group: "DEFAULT_GROUP",
            service: "DEFAULT_GROUP@@nacos.test.1",
            app: "nacos.test.1",
        };
        let i = to_instance(&SourceName::from("nacos"), &place, &hosts[0], &[]);
        assert_eq!(i.app, "nacos.test.1");
        assert_eq!(i.instance_id, "127.0.0.1:nacos.test.1:8080");
        assert_eq!(i.status, Status::Up);
        assert_eq!(i.metadata.get("nacos.cluster"), Some("DEFAULT"));
        let services: V2<ServiceListV2> =
            serde_json::from_str(V2_SERVICE_LIST).expect("v2 services");
        assert_eq!(
            services.data.expect("data").services,
            ["nacos.test.1", "nacos.test.2"]
        );
    }
}
