//! `xipgate.registry.nacos`: Nacos servers as registry sources, typed and checked.

use std::time::Duration;

use super::file::NacosFile;
use super::validate::Checker;
use super::EurekaUrl;

pub const DEFAULT_NACOS_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_NACOS_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_NACOS_GROUP: &str = "DEFAULT_GROUP";
/// Metadata keys that carry a pod name in the wild (Kubernetes' HOSTNAME passed through
/// `spring.cloud.nacos.discovery.metadata`), tried in this order.
pub const DEFAULT_POD_NAME_KEYS: [&str; 5] = [
    "pod-name",
    "podName",
    "k8s.pod.name",
    "hostname",
    "HOSTNAME",
];

/// Which Nacos HTTP API a source speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NacosApi {
    /// `/nacos/v1/ns/...`: Nacos 1.x, and 2.x which keeps it.
    V1,
    /// `/nacos/v2/ns/...` answering `{code, message, data}`: Nacos 2.x.
    V2,
    /// Nacos 3.x: the admin API's service list with each service's instances
    /// (`/nacos/v3/admin/ns/service/list?withInstances=true`), which needs a login by
    /// default (`nacos.core.auth.admin.enabled`), and `/v3/auth/user/login`.
    V3,
}

#[derive(Debug, Clone)]
pub struct NacosConfig {
    pub name: String,
    /// Base URLs (`http://nacos:8848/nacos`), credentials taken out of them.
    pub urls: Vec<EurekaUrl>,
    /// Namespace ids; "" is the public namespace.
    pub namespaces: Vec<String>,
    pub groups: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub api: NacosApi,
    pub interval: Duration,
    pub timeout: Duration,
    pub pod_name_keys: Vec<String>,
}

pub(super) fn check_nacos(c: &mut Checker, list: &[NacosFile]) -> Vec<NacosConfig> {
    let mut out: Vec<NacosConfig> = Vec::new();
    for (i, n) in list.iter().enumerate() {
        let key = |k: &str| format!("xipgate.registry.nacos[{i}].{k}");
        let name = n
            .name
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .unwrap_or_else(|| {
                if i == 0 {
                    "nacos".into()
                } else {
                    format!("nacos-{}", i + 1)
                }
            });
        if name == "eureka" || out.iter().any(|o| o.name == name) {
            c.err(
                &key("name"),
                format!("'{name}' names another source already"),
            );
        }
        let urls_raw = n.urls.clone().unwrap_or_default();
        if urls_raw.is_empty() {
            c.err(
                &key("urls"),
                "needs at least one Nacos URL, e.g. http://nacos:8848/nacos",
            );
        }
        let urls: Vec<EurekaUrl> = urls_raw
            .iter()
            .enumerate()
            .filter_map(|(j, u)| c.url(&format!("{}[{j}]", key("urls")), u))
            .collect();
        if urls.iter().any(|u| u.auth.is_some()) {
            c.err(
                &key("urls"),
                "put Nacos credentials in username and password (Nacos logs in with them; it has no Basic auth)",
            );
        }
        let api = match n.api.as_deref().map(str::trim) {
            None | Some("v1") => NacosApi::V1,
            Some("v2") => NacosApi::V2,
            Some("v3") => NacosApi::V3,
            Some(other) => {
                c.err(&key("api"), format!("'{other}' must be v1, v2 or v3"));
                NacosApi::V1
            }
        };
        if n.username.is_some() != n.password.is_some() {
            c.err(&key("password"), "username and password go together");
        }
        let groups = n
            .groups
            .clone()
            .filter(|g| !g.is_empty())
            .unwrap_or_else(|| vec![DEFAULT_NACOS_GROUP.to_string()]);
        out.push(NacosConfig {
            name,
            urls,
            namespaces: n
                .namespaces
                .clone()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| vec![String::new()]),
            groups,
            username: n.username.clone(),
            password: n.password.clone(),
            api,
            interval: c.duration(
                &key("interval"),
                n.interval.as_ref(),
                DEFAULT_NACOS_INTERVAL,
            ),
            timeout: c.duration(&key("timeout"), n.timeout.as_ref(), DEFAULT_NACOS_TIMEOUT),
            pod_name_keys: n.pod_name_keys.clone().unwrap_or_else(|| {
                DEFAULT_POD_NAME_KEYS
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            }),
        });
    }
    out
}
