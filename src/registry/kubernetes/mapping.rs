//! EndpointSlices and Services → instances: a pure function of the two copies, so every
//! rule is tested table-style without an API server.
//!
//! - Every endpoint whose `targetRef` is a Pod is one instance of the Service named by
//!   the slice's `kubernetes.io/service-name` label: app = the Service name, instanceId =
//!   `<pod>:<service>:<port>`. That is the id Spring Cloud Netflix's Eureka client
//!   registers by default (`${hostname}:${spring.application.name}:${server.port}`, and a
//!   pod's hostname is its name), so the instance's host label is `<pod>-<port>` and a pod
//!   registered in Eureka too is the same instance (taken from the higher-ranked source).
//! - Status: `terminating` → DOWN; `ready` (absent counts as true) → UP; `serving` without
//!   `ready` → OUT_OF_SERVICE; neither → DOWN.
//! - The port: the Service's `xipgate.io/port` annotation (a port name or number) when
//!   set; else `primary_port_name` when the slice has it; else the port named `http`, else
//!   `https`, else the first TCP port. A port named `https` (or with appProtocol `https`)
//!   is reached over TLS.
//! - Exposure: only the configured namespaces (`*` leaves kube-system out unless it is
//!   listed by name); a Service annotated `xipgate.io/expose: "false"` is left out. Opt-out,
//!   not opt-in: listing a namespace is already the decision to expose it, and the same
//!   namespaces' pods are what Spring Cloud Kubernetes' DiscoveryClient lists.
//! - Services of the same name in two namespaces are one service host (as Spring Cloud
//!   Kubernetes' DiscoveryClient joins them by serviceId, and as sources are joined). Their
//!   pods keep distinct labels: a pod name taken by a pod of an earlier namespace (in the
//!   configured order; alphabetical with `*`) gets `<pod>.<namespace>` in its instanceId,
//!   so its label is `<pod>-<namespace>-<port>`. Likewise a pod two Services select (a
//!   StatefulSet's Service and its headless one) is an instance of each; in the later
//!   Service (alphabetical) its host part gets `.<service>`, labelled
//!   `<pod>-<service>-<port>`, instead of both losing their name to a hash.
//! - An endpoint without a Pod targetRef or an address, and a slice of addressType FQDN
//!   or without a usable port, is skipped with the reason shown on the console.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use super::model::{Conditions, EndpointPort, EndpointSlice, Service, ServicePort};
use crate::config::Namespaces;
use crate::config::DEFAULT_PORT_NAMES;
use crate::instance::{Instance, SourceName, Status};

/// A Service with this annotation set to `"false"` is not exposed.
pub const EXPOSE_ANNOTATION: &str = "xipgate.io/expose";
/// A port name or number: the port the Service's pods are reached on.
pub const PORT_ANNOTATION: &str = "xipgate.io/port";
/// Skipped endpoints listed at most (the rest are counted).
pub const SKIPPED_SHOWN: usize = 50;

/// Metadata keys every instance carries.
pub const META_NAMESPACE: &str = "k8s-namespace";
pub const META_POD: &str = "k8s-pod";
pub const META_NODE: &str = "k8s-node";
pub const META_ZONE: &str = "zone";
pub const META_PORT_NAME: &str = "k8s-port-name";

/// What the mapping needs of the config.
pub struct Rules<'a> {
    pub source: &'a SourceName,
    pub namespaces: &'a Namespaces,
    pub primary_port_name: Option<&'a str>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Mapped {
    pub instances: Vec<Instance>,
    /// Service hosts (distinct Service names with at least one instance).
    pub services: usize,
    /// `namespace/service` of Services annotated `xipgate.io/expose: "false"`.
    pub opted_out: Vec<String>,
    /// Why an endpoint or a slice was left out, [`SKIPPED_SHOWN`] lines at most.
    pub skipped: Vec<String>,
    pub skipped_total: usize,
    /// Pods whose name a pod of an earlier namespace has, with the label they get.
    pub renamed: Vec<String>,
}

impl Mapped {
    fn skip(&mut self, line: String) {
        self.skipped_total += 1;
        if self.skipped.len() < SKIPPED_SHOWN {
            self.skipped.push(line);
        }
    }
}

/// `ready`, `serving` and `terminating` → an instance status (see the module's table).
pub fn status_of(c: Conditions) -> Status {
    if c.terminating == Some(true) {
        Status::Down
    } else if c.ready != Some(false) {
        Status::Up
    } else if c.serving == Some(true) {
        Status::OutOfService
    } else {
        Status::Down
    }
}

fn is_tcp(p: &EndpointPort) -> bool {
    p.port.is_some()
        && p.protocol
            .as_deref()
            .is_none_or(|x| x.eq_ignore_ascii_case("TCP"))
}

fn name_of(p: &EndpointPort) -> &str {
    p.name.as_deref().unwrap_or("")
}

/// The port a pod's instance uses (see the module's rules), or why there is none.
pub fn choose_port<'a>(
    ports: &'a [EndpointPort],
    annotation: Option<&str>,
    service_ports: &[ServicePort],
    primary: Option<&str>,
) -> Result<&'a EndpointPort, String> {
    let tcp: Vec<&EndpointPort> = ports.iter().filter(|p| is_tcp(p)).collect();
    if tcp.is_empty() {
        return Err("no TCP port".into());
    }
    let named = |n: &str| tcp.iter().copied().find(|p| name_of(p) == n);
    if let Some(a) = annotation.map(str::trim) {
        let found = match a.parse::<u16>() {
            // The pod's port, or a Service port (whose name the slice's port carries).
            Ok(n) => tcp.iter().copied().find(|p| p.port == Some(n)).or_else(|| {
                service_ports
                    .iter()
                    .find(|s| s.port == Some(n))
                    .and_then(|s| named(s.name.as_deref().unwrap_or("")))
            }),
            Err(_) => named(a),
        };
        return found.ok_or_else(|| format!("{PORT_ANNOTATION} '{a}' is not one of its ports"));
    }
    if let Some(p) = primary.and_then(named) {
        return Ok(p);
    }
    Ok(DEFAULT_PORT_NAMES
        .iter()
        .find_map(|n| named(n))
        .unwrap_or(tcp[0]))
}

/// Reached over TLS: named `https`, or appProtocol `https`.
fn is_https(p: &EndpointPort) -> bool {
    name_of(p).eq_ignore_ascii_case("https")
        || p.app_protocol
            .as_deref()
            .is_some_and(|a| a.eq_ignore_ascii_case("https"))
}

/// Every exposed pod of `slices` as an instance. The order of either input does not
/// matter.
pub fn map<'a>(
    rules: &Rules,
    services: impl IntoIterator<Item = &'a Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Mapped {
    let services: HashMap<(&str, &str), &Service> = services
        .into_iter()
        .map(|s| ((s.metadata.namespace.as_str(), s.metadata.name.as_str()), s))
        .collect();
    // Namespaces in their rank, then Service, then IPv4 before IPv6 (a dual-stack pod is
    // one instance, at its IPv4 address), then slice name.
    let rank = |ns: &str| match rules.namespaces {
        Namespaces::Listed(l) => l.iter().position(|n| n == ns).unwrap_or(usize::MAX),
        Namespaces::All { .. } => 0,
    };
    let mut ordered: BTreeMap<(usize, &str, &str, bool, &str), &EndpointSlice> = BTreeMap::new();
    let mut out = Mapped::default();
    for s in slices {
        let ns = s.metadata.namespace.as_str();
        if !rules.namespaces.includes(ns) {
            continue;
        }
        let Some(svc) = s.service_name() else {
            out.skip(format!(
                "{ns}/{}: slice without the kubernetes.io/service-name label",
                s.metadata.name
            ));
            continue;
        };
        let key = (
            rank(ns),
            ns,
            svc,
            s.address_type != "IPv4",
            s.metadata.name.as_str(),
        );
        ordered.insert(key, s);
    }
    let mut opted_out = HashSet::new();
    // (namespace, pod, Service, port) already made: a pod in two slices of one Service.
    let mut made: HashSet<(&str, &str, &str, u16)> = HashSet::new();
    // Each label made so far → (namespace, Service, pod) of its instance.
    let mut labels: HashMap<String, (&str, &str, &str)> = HashMap::new();
    let mut apps: HashSet<&str> = HashSet::new();
    for ((_, ns, svc, _, slice_name), slice) in ordered {
        // A slice whose Service is not in the copy is not exposed: the label selector
        // left the Service out (or its slice came first; the Service's event follows).
        let Some(service) = services.get(&(ns, svc)) else {
            continue;
        };
        let annotations = &service.metadata.annotations;
        if annotations
            .get(EXPOSE_ANNOTATION)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
        {
            if opted_out.insert((ns, svc)) {
                out.opted_out.push(format!("{ns}/{svc}"));
            }
            continue;
        }
        let family_ok = |ip: &IpAddr| match slice.address_type.as_str() {
            "IPv4" => ip.is_ipv4(),
            "IPv6" => ip.is_ipv6(),
            _ => false,
        };
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            out.skip(format!(
                "{ns}/{svc}: slice {slice_name}: addressType {}: only IP addresses are routed",
                slice.address_type
            ));
            continue;
        }
        let port = match choose_port(
            &slice.ports,
            annotations.get(PORT_ANNOTATION).map(String::as_str),
            &service.spec.ports,
            rules.primary_port_name,
        ) {
            Ok(p) => p,
            Err(why) => {
                out.skip(format!("{ns}/{svc}: slice {slice_name}: {why}"));
                continue;
            }
        };
        let Some(number) = port.port else { continue };
        for e in &slice.endpoints {
            let first = e.addresses.first().map(String::as_str);
            let pod = match &e.target_ref {
                Some(t) if t.kind == "Pod" && !t.name.is_empty() => t.name.as_str(),
                _ => {
                    out.skip(format!(
                        "{ns}/{svc}: endpoint {}: no Pod targetRef",
                        first.unwrap_or("without address")
                    ));
                    continue;
                }
            };
            let Some(addr) = first else {
                out.skip(format!("{ns}/{svc}: pod {pod}: no address"));
                continue;
            };
            match addr.parse::<IpAddr>() {
                Ok(ip) if family_ok(&ip) => {}
                _ => {
                    out.skip(format!(
                        "{ns}/{svc}: pod {pod}: '{addr}' is not an {} address",
                        slice.address_type
                    ));
                    continue;
                }
            }
            if !made.insert((ns, pod, svc, number)) {
                continue;
            }
            let host = host_part(&mut labels, &mut out.renamed, (ns, svc, pod), number);
            let id = format!("{host}:{svc}:{number}");
            apps.insert(svc);
            out.instances
                .push(instance(rules.source, ns, svc, pod, addr, id, port, e));
        }
    }
    out.services = apps.len();
    out
}

/// The label `<host>:<service>:<port>` gets: `<host>-<port>`.
fn label_of(host: &str, port: u16) -> String {
    crate::names::sanitize(&format!("{host}-{port}"))
}

/// The host part of a pod's instanceId: its name, unless an earlier instance has the
/// label `<pod>-<port>`: a pod of the same name in another namespace (then
/// `<pod>.<namespace>`), or the pod's own instance in another Service of its namespace
/// (then `.<service>` is added).
fn host_part<'a>(
    labels: &mut HashMap<String, (&'a str, &'a str, &'a str)>,
    renamed: &mut Vec<String>,
    (ns, svc, pod): (&'a str, &'a str, &'a str),
    port: u16,
) -> String {
    let mut host = pod.to_string();
    let plain = label_of(pod, port);
    if let Some((other_ns, _, other_pod)) = labels.get(&plain) {
        if *other_ns != ns {
            host = format!("{pod}.{ns}");
            renamed.push(format!(
                "{ns}/{pod}: {} ({plain} is {other_ns}/{other_pod})",
                label_of(&host, port)
            ));
        }
    }
    let label = label_of(&host, port);
    if let Some((other_ns, other_svc, _)) = labels.get(&label) {
        if *other_ns == ns && *other_svc != svc {
            host = format!("{host}.{svc}");
            renamed.push(format!(
                "{ns}/{pod} in {svc}: {} ({label} is its instance in {other_svc})",
                label_of(&host, port)
            ));
        }
    }
    labels
        .entry(label_of(&host, port))
        .or_insert((ns, svc, pod));
    host
}

#[allow(clippy::too_many_arguments)]
fn instance(
    source: &SourceName,
    ns: &str,
    svc: &str,
    pod: &str,
    addr: &str,
    instance_id: String,
    port: &EndpointPort,
    e: &super::model::Endpoint,
) -> Instance {
    let mut metadata = BTreeMap::new();
    metadata.insert(META_NAMESPACE.to_string(), ns.to_string());
    metadata.insert(META_POD.to_string(), pod.to_string());
    if let Some(n) = &e.node_name {
        metadata.insert(META_NODE.to_string(), n.clone());
    }
    if let Some(z) = &e.zone {
        metadata.insert(META_ZONE.to_string(), z.clone());
    }
    if !name_of(port).is_empty() {
        metadata.insert(META_PORT_NAME.to_string(), name_of(port).to_string());
    }
    let (plain, secure) = if is_https(port) {
        (None, port.port)
    } else {
        (port.port, None)
    };
    Instance {
        source: source.clone(),
        app: svc.to_string(),
        instance_id,
        host_name: pod.to_string(),
        ip_addr: addr.to_string(),
        port: plain,
        secure_port: secure,
        status: status_of(e.conditions),
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
#[path = "mapping_tests.rs"]
mod tests;
