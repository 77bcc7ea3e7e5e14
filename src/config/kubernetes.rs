//! `xipgate.registry.kubernetes`: a Kubernetes API server as a registry source (pods from
//! EndpointSlices, services from Services), its file struct, typed config and checks.

use std::path::PathBuf;

use serde::Deserialize;

use super::validate::{is_dns_label, Checker};

/// The source's name when none is given.
pub const DEFAULT_KUBERNETES_NAME: &str = "kubernetes";
/// In a namespaces list, every namespace (but [`SYSTEM_NAMESPACE`] unless it is listed too).
pub const ALL_NAMESPACES: &str = "*";
/// Never exposed by `*`: the cluster's own workloads (the API server, DNS, controllers)
/// are not services of the applications the edge is for.
pub const SYSTEM_NAMESPACE: &str = "kube-system";
/// Without `primary_port_name`, the port a pod's instance uses when a slice has several:
/// the first of these names present, else the slice's first port (as Spring Cloud
/// Kubernetes' DiscoveryClient picks one).
pub const DEFAULT_PORT_NAMES: [&str; 2] = ["http", "https"];

/// `xipgate.registry.kubernetes` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesFile {
    /// The source's name on the console, in the API and in the merge (default `kubernetes`).
    pub name: Option<String>,
    /// The API server (default: in-cluster, from KUBERNETES_SERVICE_HOST/PORT).
    pub api_url: Option<String>,
    /// A bearer token file (default: the pod's service-account token).
    pub token_file: Option<String>,
    /// The CA the API server's certificate is checked against (default: the pod's
    /// service-account CA).
    pub ca_file: Option<String>,
    /// Namespaces whose Services are exposed; `["*"]` = all but kube-system.
    pub namespaces: Option<Vec<String>>,
    /// Only Services with these labels (a Kubernetes label selector).
    pub label_selector: Option<String>,
    /// The EndpointSlice port a pod's instance uses when there are several.
    pub primary_port_name: Option<String>,
}

/// Which namespaces are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespaces {
    /// These, in this order (their order ranks pods of the same name in two of them).
    Listed(Vec<String>),
    /// Every namespace; kube-system only when `kube_system` (it was listed by name).
    All { kube_system: bool },
}

impl Namespaces {
    /// True when objects of namespace `ns` are exposed.
    pub fn includes(&self, ns: &str) -> bool {
        match self {
            Namespaces::Listed(list) => list.iter().any(|n| n == ns),
            Namespaces::All { kube_system } => *kube_system || ns != SYSTEM_NAMESPACE,
        }
    }

    /// As shown on the console: `shop, pay` or `* (without kube-system)`.
    pub fn describe(&self) -> Vec<String> {
        match self {
            Namespaces::Listed(list) => list.clone(),
            Namespaces::All { kube_system: true } => vec![ALL_NAMESPACES.into()],
            Namespaces::All { kube_system: false } => {
                vec![format!("{ALL_NAMESPACES} (without {SYSTEM_NAMESPACE})")]
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesConfig {
    pub name: String,
    /// `None`: in-cluster (`kube::Connection::resolve` finds it).
    pub api_url: Option<String>,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub namespaces: Namespaces,
    pub label_selector: Option<String>,
    pub primary_port_name: Option<String>,
}

const KEY: &str = "xipgate.registry.kubernetes";

/// Checks the section; `taken` are the other sources' names.
pub(super) fn check_kubernetes(
    c: &mut Checker,
    f: &KubernetesFile,
    taken: &[String],
) -> KubernetesConfig {
    let key = |k: &str| format!("{KEY}.{k}");
    let name = non_empty(f.name.as_deref()).unwrap_or_else(|| DEFAULT_KUBERNETES_NAME.into());
    if taken.contains(&name) {
        c.err(
            &key("name"),
            format!("'{name}' names another source already"),
        );
    }
    let api_url = f.api_url.as_deref().and_then(|raw| {
        let u = c.url(&key("api_url"), raw)?;
        if u.auth.is_some() {
            c.err(
                &key("api_url"),
                "no credentials in the URL: the API server takes a bearer token (token_file)",
            );
        }
        Some(u.base)
    });
    let token_file = f.token_file.as_deref().and_then(|raw| {
        let path = non_empty(Some(raw))?;
        match std::fs::read_to_string(&path) {
            Ok(t) if t.trim().is_empty() => c.err(&key("token_file"), format!("{path} is empty")),
            Ok(_) => {}
            Err(e) => c.err(&key("token_file"), format!("{path} cannot be read: {e}")),
        }
        Some(PathBuf::from(path))
    });
    let ca_file = f.ca_file.as_deref().and_then(|raw| {
        let path = non_empty(Some(raw))?;
        match std::fs::read_to_string(&path) {
            Ok(t) if !t.contains("-----BEGIN CERTIFICATE-----") => {
                c.err(&key("ca_file"), format!("{path} holds no PEM certificate"))
            }
            Ok(_) => {}
            Err(e) => c.err(&key("ca_file"), format!("{path} cannot be read: {e}")),
        }
        Some(PathBuf::from(path))
    });
    let namespaces = check_namespaces(c, &key("namespaces"), f.namespaces.as_deref());
    let label_selector = match f.label_selector.as_deref() {
        Some(raw) if raw.trim().is_empty() => {
            c.err(
                &key("label_selector"),
                "is empty: leave it out to expose every Service",
            );
            None
        }
        Some(raw) => Some(raw.trim().to_string()),
        None => None,
    };
    let primary_port_name = match f.primary_port_name.as_deref() {
        Some(raw) if !is_dns_label(raw.trim()) => {
            c.err(
                &key("primary_port_name"),
                format!("'{raw}' is not a port name (lower-case letters, digits and '-')"),
            );
            None
        }
        other => other.map(|s| s.trim().to_string()),
    };
    KubernetesConfig {
        name,
        api_url,
        token_file,
        ca_file,
        namespaces,
        label_selector,
        primary_port_name,
    }
}

fn check_namespaces(c: &mut Checker, key: &str, raw: Option<&[String]>) -> Namespaces {
    let list: Vec<String> = raw
        .unwrap_or_default()
        .iter()
        .map(|n| n.trim().to_string())
        .collect();
    if list.is_empty() {
        c.err(
            key,
            "is required: the namespaces whose Services are exposed, e.g. [shop], or [\"*\"] for all but kube-system",
        );
        return Namespaces::Listed(Vec::new());
    }
    for (i, n) in list.iter().enumerate() {
        if n != ALL_NAMESPACES && !is_dns_label(n) {
            c.err(
                &format!("{key}[{i}]"),
                format!("'{n}' is not a namespace name (lower-case letters, digits and '-')"),
            );
        }
        if list[..i].contains(n) {
            c.err(&format!("{key}[{i}]"), format!("'{n}' is listed twice"));
        }
    }
    if list.iter().any(|n| n == ALL_NAMESPACES) {
        Namespaces::All {
            kube_system: list.iter().any(|n| n == SYSTEM_NAMESPACE),
        }
    } else {
        Namespaces::Listed(list)
    }
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim).filter(|s| !s.is_empty()).map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_excludes_kube_system_unless_it_is_listed() {
        let all = Namespaces::All { kube_system: false };
        assert!(all.includes("shop"));
        assert!(!all.includes("kube-system"));
        assert!(Namespaces::All { kube_system: true }.includes("kube-system"));
        let listed = Namespaces::Listed(vec!["shop".into()]);
        assert!(listed.includes("shop"));
        assert!(!listed.includes("pay"));
    }
}
