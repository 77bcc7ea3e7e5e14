//! Kubernetes objects as JSON, shaped as the real writers shape them: Services as a user
//! writes them, EndpointSlices as the EndpointSlice controller (kube-controller-manager)
//! writes them for a Service's pods, RBAC objects for a ServiceAccount.

use serde_json::{json, Value};

/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming who manages an EndpointSlice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// The EndpointSlice controller's value of [`MANAGED_BY_LABEL`].
pub const ENDPOINTSLICE_CONTROLLER: &str = "endpointslice-controller.k8s.io";

/// A ClusterIP Service `ns/name` selecting pods labelled `app: <name>`, with TCP `ports`
/// (name, port; the target port is the same number).
pub fn service(ns: &str, name: &str, ports: &[(&str, u16)]) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(p, n)| json!({"name": p, "port": n, "targetPort": n, "protocol": "TCP"}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {"type": "ClusterIP", "selector": {"app": name}, "ports": ports}
    })
}

/// One endpoint of an EndpointSlice: a pod's address and its conditions.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub ip: String,
    pub pod: String,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub node: Option<String>,
}

impl Endpoint {
    /// A ready pod: ready, serving, not terminating.
    pub fn pod(pod: &str, ip: impl ToString) -> Self {
        Endpoint {
            ip: ip.to_string(),
            pod: pod.to_string(),
            ready: true,
            serving: true,
            terminating: false,
            node: None,
        }
    }

    /// Its readiness probe fails: neither ready nor serving.
    pub fn not_ready(mut self) -> Self {
        self.ready = false;
        self.serving = false;
        self
    }

    /// Being deleted while still passing its readiness probe: serving and terminating,
    /// not ready (what the controller writes during a graceful shutdown).
    pub fn terminating(mut self) -> Self {
        self.ready = false;
        self.serving = true;
        self.terminating = true;
        self
    }

    /// Any conditions.
    pub fn conditions(mut self, ready: bool, serving: bool, terminating: bool) -> Self {
        self.ready = ready;
        self.serving = serving;
        self.terminating = terminating;
        self
    }

    pub fn node(mut self, node: &str) -> Self {
        self.node = Some(node.to_string());
        self
    }

    fn to_json(&self, ns: &str) -> Value {
        let mut v = json!({
            "addresses": [self.ip],
            "conditions": {
                "ready": self.ready,
                "serving": self.serving,
                "terminating": self.terminating
            },
            "targetRef": {"kind": "Pod", "namespace": ns, "name": self.pod}
        });
        if let Some(n) = &self.node {
            v["nodeName"] = json!(n);
        }
        v
    }
}

/// An IPv4 EndpointSlice `<service>-<suffix>` for `service` (the Service object as the
/// API server returned it: its namespace, name, labels and uid are used), with TCP
/// `ports` (name, the pods' port) and `endpoints`, as the EndpointSlice controller writes
/// it: the service-name and managed-by labels (and the Service's own labels), the Service
/// as controlling owner.
pub fn endpoint_slice(
    service: &Value,
    suffix: &str,
    ports: &[(&str, u16)],
    endpoints: &[Endpoint],
) -> Value {
    let meta = &service["metadata"];
    let ns = meta["namespace"].as_str().expect("the Service's namespace");
    let name = meta["name"].as_str().expect("the Service's name");
    let mut labels = meta["labels"].as_object().cloned().unwrap_or_default();
    labels.insert(SERVICE_NAME_LABEL.into(), json!(name));
    labels.insert(MANAGED_BY_LABEL.into(), json!(ENDPOINTSLICE_CONTROLLER));
    let mut metadata = json!({
        "name": format!("{name}-{suffix}"),
        "namespace": ns,
        "generateName": format!("{name}-"),
        "labels": labels,
    });
    if let Some(uid) = meta["uid"].as_str() {
        metadata["ownerReferences"] = json!([{
            "apiVersion": "v1",
            "kind": "Service",
            "name": name,
            "uid": uid,
            "controller": true,
            "blockOwnerDeletion": true
        }]);
    }
    let ports: Vec<Value> = ports
        .iter()
        .map(|(p, n)| json!({"name": p, "port": n, "protocol": "TCP"}))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": metadata,
        "addressType": "IPv4",
        "endpoints": endpoints.iter().map(|e| e.to_json(ns)).collect::<Vec<_>>(),
        "ports": ports
    })
}

/// A PolicyRule: `verbs` on `resources` of the API group `group` ("" for the core group).
pub fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": [group], "resources": resources, "verbs": verbs})
}

/// get, list and watch.
pub const READ: &[&str] = &["get", "list", "watch"];

pub(crate) fn role_json(name: &str, rules: &Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name},
        "rules": rules
    })
}

pub(crate) fn cluster_role(name: &str, rules: &Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": rules
    })
}

fn subject(sa_ns: &str, sa_name: &str) -> Value {
    json!([{"kind": "ServiceAccount", "name": sa_name, "namespace": sa_ns}])
}

pub(crate) fn role_binding(role: &str, sa_ns: &str, sa_name: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": subject(sa_ns, sa_name)
    })
}

pub(crate) fn cluster_role_binding(role: &str, sa_ns: &str, sa_name: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subject(sa_ns, sa_name)
    })
}
