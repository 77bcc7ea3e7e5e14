//! The mapping's rules, table by table, on objects in the exact shape the API server
//! sends (`null` lists included).

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::names;

fn source() -> SourceName {
    SourceName::from("kubernetes")
}

fn listed(ns: &[&str]) -> Namespaces {
    Namespaces::Listed(ns.iter().map(|s| s.to_string()).collect())
}

fn service(ns: &str, name: &str, annotations: Value) -> Service {
    serde_json::from_value(json!({
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": "0b7a1c9e-5d0f-4c47-9a34-3d1f8e0c1a11",
            "resourceVersion": "1201",
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "labels": {"app.kubernetes.io/name": name},
            "annotations": annotations
        },
        "spec": {
            "ports": [
                {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                {"name": "management", "protocol": "TCP", "port": 9090, "targetPort": "mgmt"}
            ],
            "selector": {"app.kubernetes.io/name": name},
            "clusterIP": "10.96.12.34",
            "clusterIPs": ["10.96.12.34"],
            "type": "ClusterIP",
            "sessionAffinity": "None",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster"
        },
        "status": {"loadBalancer": {}}
    }))
    .expect("a Service")
}

/// An endpoint of pod `pod` at `ip` with the given conditions (`null` = absent).
fn endpoint(ns: &str, pod: &str, ip: &str, ready: Value, serving: Value, term: Value) -> Value {
    let mut conditions = serde_json::Map::new();
    for (k, v) in [
        ("ready", ready),
        ("serving", serving),
        ("terminating", term),
    ] {
        if !v.is_null() {
            conditions.insert(k.into(), v);
        }
    }
    json!({
        "addresses": [ip],
        "conditions": conditions,
        "targetRef": {"kind": "Pod", "namespace": ns, "name": pod, "uid": "5f0c6e2a-0000-4000-8000-000000000001"},
        "nodeName": "node-1",
        "zone": "zone-a"
    })
}

fn ready(ns: &str, pod: &str, ip: &str) -> Value {
    endpoint(ns, pod, ip, json!(true), json!(true), json!(false))
}

fn slice_of(
    ns: &str,
    name: &str,
    svc: &str,
    family: &str,
    endpoints: Value,
    ports: Value,
) -> EndpointSlice {
    serde_json::from_value(json!({
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": {
            "name": name,
            "generateName": format!("{svc}-"),
            "namespace": ns,
            "uid": "7c1d2e3f-0000-4000-8000-000000000002",
            "resourceVersion": "1305",
            "generation": 3,
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "labels": {
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                "kubernetes.io/service-name": svc
            },
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": svc, "uid": "0b7a1c9e-5d0f-4c47-9a34-3d1f8e0c1a11", "controller": true, "blockOwnerDeletion": true}]
        },
        "addressType": family,
        "endpoints": endpoints,
        "ports": ports
    }))
    .expect("an EndpointSlice")
}

fn http_ports() -> Value {
    json!([{"name": "http", "protocol": "TCP", "port": 8080}, {"name": "management", "protocol": "TCP", "port": 9090}])
}

fn slice(ns: &str, svc: &str, endpoints: Value) -> EndpointSlice {
    slice_of(
        ns,
        &format!("{svc}-abcde"),
        svc,
        "IPv4",
        endpoints,
        http_ports(),
    )
}

fn run(namespaces: &Namespaces, services: &[Service], slices: &[EndpointSlice]) -> Mapped {
    let src = source();
    let rules = Rules {
        source: &src,
        namespaces,
        primary_port_name: None,
    };
    map(&rules, services, slices)
}

/// (app, instanceId, ip, port, status) of each instance.
fn brief(m: &Mapped) -> Vec<(String, String, String, Option<u16>, Status)> {
    m.instances
        .iter()
        .map(|i| {
            (
                i.app.clone(),
                i.instance_id.clone(),
                i.ip_addr.clone(),
                i.port,
                i.status,
            )
        })
        .collect()
}

#[test]
fn conditions_become_statuses() {
    let n = None;
    let (t, f) = (Some(true), Some(false));
    // (ready, serving, terminating, status)
    let cases = [
        (n, n, n, Status::Up),
        (t, t, f, Status::Up),
        (t, n, n, Status::Up),
        (n, t, f, Status::Up),
        (f, t, f, Status::OutOfService),
        (f, t, n, Status::OutOfService),
        (f, f, f, Status::Down),
        (f, n, n, Status::Down),
        (f, t, t, Status::Down),
        (f, f, t, Status::Down),
        (t, t, t, Status::Down),
        (n, n, t, Status::Down),
    ];
    for (ready, serving, terminating, want) in cases {
        let c = Conditions {
            ready,
            serving,
            terminating,
        };
        assert_eq!(status_of(c), want, "{c:?}");
    }
}

#[test]
fn the_port_is_the_annotated_then_the_primary_then_http_https_or_the_first() {
    let p = |name: &str, port: u16, proto: &str| EndpointPort {
        name: (!name.is_empty()).then(|| name.to_string()),
        protocol: (!proto.is_empty()).then(|| proto.to_string()),
        port: Some(port),
        app_protocol: None,
    };
    let svc_ports = vec![
        ServicePort {
            name: Some("web".into()),
            port: Some(80),
        },
        ServicePort {
            name: Some("admin".into()),
            port: Some(81),
        },
    ];
    let three = vec![
        p("admin", 9000, "TCP"),
        p("https", 8443, ""),
        p("web", 8080, "TCP"),
    ];
    let with_http = vec![
        p("grpc", 9090, "TCP"),
        p("http", 8080, "TCP"),
        p("https", 8443, "TCP"),
    ];
    let udp_first = vec![p("dns", 53, "UDP"), p("", 8080, "")];
    // (ports, annotation, primary, chosen port or error words)
    type Case<'a> = (
        &'a [EndpointPort],
        Option<&'a str>,
        Option<&'a str>,
        Result<u16, &'a str>,
    );
    let cases: Vec<Case> = vec![
        (&three, None, None, Ok(8443)),
        (&with_http, None, None, Ok(8080)),
        (&with_http, None, Some("grpc"), Ok(9090)),
        (&with_http, None, Some("missing"), Ok(8080)),
        (&three, Some("admin"), Some("web"), Ok(9000)),
        (&three, Some("8080"), None, Ok(8080)),
        // A Service port number: the slice's port of the same name.
        (&three, Some("81"), None, Ok(9000)),
        (&three, Some("nope"), None, Err("xipgate.io/port 'nope'")),
        (&three, Some("7"), None, Err("is not one of its ports")),
        (&udp_first, None, None, Ok(8080)),
        (&[], None, None, Err("no TCP port")),
    ];
    for (ports, annotation, primary, want) in cases {
        let got = choose_port(ports, annotation, &svc_ports, primary).map(|p| p.port.unwrap_or(0));
        match (got, want) {
            (Ok(g), Ok(w)) => assert_eq!(g, w, "{annotation:?} {primary:?}"),
            (Err(g), Err(w)) => assert!(g.contains(w), "{g}"),
            (g, w) => panic!("{annotation:?} {primary:?}: {g:?}, want {w:?}"),
        }
    }
}

#[test]
fn pods_become_instances_named_as_spring_registers_them_in_eureka() {
    let services = [service("shop", "orders", json!({}))];
    let slices = [slice(
        "shop",
        "orders",
        json!([
            ready("shop", "orders-7d9f8-x2k4q", "10.244.1.5"),
            endpoint(
                "shop",
                "orders-7d9f8-b7c2m",
                "10.244.2.6",
                json!(false),
                json!(false),
                Value::Null
            )
        ]),
    )];
    let m = run(&listed(&["shop"]), &services, &slices);
    assert_eq!(
        brief(&m),
        [
            (
                "orders".into(),
                "orders-7d9f8-x2k4q:orders:8080".into(),
                "10.244.1.5".into(),
                Some(8080),
                Status::Up
            ),
            (
                "orders".into(),
                "orders-7d9f8-b7c2m:orders:8080".into(),
                "10.244.2.6".into(),
                Some(8080),
                Status::Down
            ),
        ]
    );
    let i = &m.instances[0];
    assert_eq!(
        names::instance_label(&i.instance_id, &i.app),
        "orders-7d9f8-x2k4q-8080"
    );
    assert_eq!(names::service_label(&i.app), "orders");
    let meta: Vec<(&str, &str)> = i.metadata.iter().collect();
    assert_eq!(
        meta,
        [
            ("k8s-namespace", "shop"),
            ("k8s-node", "node-1"),
            ("k8s-pod", "orders-7d9f8-x2k4q"),
            ("k8s-port-name", "http"),
            ("zone", "zone-a")
        ]
    );
    assert_eq!(&*i.source, "kubernetes");
    assert_eq!(i.host_name, "orders-7d9f8-x2k4q");
    assert_eq!(m.services, 1);
    assert!(m.skipped.is_empty(), "{:?}", m.skipped);
}

#[test]
fn endpoints_that_are_not_pods_are_skipped_with_a_reason() {
    let services = [
        service("shop", "orders", json!({})),
        service("shop", "legacy", json!({})),
    ];
    let slices = [
        slice(
            "shop",
            "orders",
            json!([
                {"addresses": ["10.244.9.9"], "conditions": {"ready": true}},
                {"addresses": ["10.244.9.8"], "conditions": {"ready": true}, "targetRef": {"kind": "Node", "name": "node-1"}},
                {"addresses": [], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "namespace": "shop", "name": "orders-empty"}},
                {"addresses": ["fd00::5"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "namespace": "shop", "name": "orders-v6"}},
                ready("shop", "orders-ok", "10.244.1.5")
            ]),
        ),
        slice_of(
            "shop",
            "legacy-fqdn",
            "legacy",
            "FQDN",
            json!([ready("shop", "legacy-0", "legacy.example.com")]),
            http_ports(),
        ),
        slice_of(
            "shop",
            "orders-noports",
            "orders",
            "IPv4",
            json!([ready("shop", "orders-np", "10.244.1.7")]),
            Value::Null,
        ),
        // Go writes an empty list as null.
        slice_of(
            "shop",
            "orders-empty",
            "orders",
            "IPv4",
            Value::Null,
            http_ports(),
        ),
    ];
    let m = run(&listed(&["shop"]), &services, &slices);
    let ids: Vec<&str> = m.instances.iter().map(|i| i.instance_id.as_str()).collect();
    assert_eq!(ids, ["orders-ok:orders:8080"]);
    assert_eq!(
        m.skipped,
        [
            "shop/legacy: slice legacy-fqdn: addressType FQDN: only IP addresses are routed",
            "shop/orders: endpoint 10.244.9.9: no Pod targetRef",
            "shop/orders: endpoint 10.244.9.8: no Pod targetRef",
            "shop/orders: pod orders-empty: no address",
            "shop/orders: pod orders-v6: 'fd00::5' is not an IPv4 address",
            "shop/orders: slice orders-noports: no TCP port",
        ]
    );
    assert_eq!(m.skipped_total, 6);
}

#[test]
fn only_listed_namespaces_and_not_opted_out_services_are_exposed() {
    let services = [
        service("shop", "orders", json!({})),
        service("shop", "secret", json!({"xipgate.io/expose": "false"})),
        service("pay", "payments", json!({})),
        service("kube-system", "kube-dns", json!({})),
        service("shop", "shown", json!({"xipgate.io/expose": "true"})),
    ];
    let slices = [
        slice(
            "shop",
            "orders",
            json!([ready("shop", "orders-1", "10.0.0.1")]),
        ),
        slice(
            "shop",
            "secret",
            json!([ready("shop", "secret-1", "10.0.0.2")]),
        ),
        slice(
            "pay",
            "payments",
            json!([ready("pay", "payments-1", "10.0.0.3")]),
        ),
        slice(
            "kube-system",
            "kube-dns",
            json!([ready("kube-system", "coredns-1", "10.0.0.4")]),
        ),
        slice(
            "shop",
            "shown",
            json!([ready("shop", "shown-1", "10.0.0.5")]),
        ),
        // A slice of a Service the label selector left out (not in the copy): not exposed.
        slice(
            "shop",
            "unselected",
            json!([ready("shop", "unselected-1", "10.0.0.6")]),
        ),
    ];
    let apps = |ns: Namespaces| {
        let m = run(&ns, &services, &slices);
        let mut a: Vec<String> = m.instances.iter().map(|i| i.app.clone()).collect();
        a.sort();
        (a, m.opted_out)
    };
    // (namespaces, apps exposed)
    let cases: Vec<(Namespaces, Vec<&str>)> = vec![
        (listed(&["shop"]), vec!["orders", "shown"]),
        (listed(&["pay"]), vec!["payments"]),
        (listed(&["kube-system"]), vec!["kube-dns"]),
        (
            Namespaces::All { kube_system: false },
            vec!["orders", "payments", "shown"],
        ),
        (
            Namespaces::All { kube_system: true },
            vec!["kube-dns", "orders", "payments", "shown"],
        ),
    ];
    for (ns, want) in cases {
        let (got, opted_out) = apps(ns.clone());
        assert_eq!(got, want, "{ns:?}");
        let shop = ns.includes("shop");
        assert_eq!(
            opted_out,
            if shop {
                vec!["shop/secret".to_string()]
            } else {
                vec![]
            },
            "{ns:?}"
        );
    }
}

#[test]
fn one_service_host_over_two_namespaces_and_pods_keep_distinct_labels() {
    let services = [
        service("shop", "db", json!({})),
        service("pay", "db", json!({})),
    ];
    let slices = [
        slice(
            "shop",
            "db",
            json!([
                ready("shop", "db-0", "10.0.1.1"),
                ready("shop", "db-1", "10.0.1.2")
            ]),
        ),
        slice("pay", "db", json!([ready("pay", "db-0", "10.0.2.1")])),
    ];
    // Ranked in the listed order: pay's db-0 keeps the plain name.
    let m = run(&listed(&["pay", "shop"]), &services, &slices);
    let labels: Vec<String> = m
        .instances
        .iter()
        .map(|i| names::instance_label(&i.instance_id, &i.app))
        .collect();
    assert_eq!(labels, ["db-0-8080", "db-0-shop-8080", "db-1-8080"]);
    assert_eq!(m.services, 1, "one service host");
    assert_eq!(
        m.renamed,
        ["shop/db-0: db-0-shop-8080 (db-0-8080 is pay/db-0)"]
    );
    // With `*`, alphabetical: pay before shop again.
    let all = run(&Namespaces::All { kube_system: false }, &services, &slices);
    assert_eq!(all.instances, m.instances);
}

#[test]
fn a_pod_of_two_services_keeps_its_name_in_the_first() {
    let services = [
        service("shop", "db", json!({})),
        service("shop", "db-headless", json!({})),
    ];
    let slices = [
        slice(
            "shop",
            "db-headless",
            json!([ready("shop", "db-0", "10.0.1.1")]),
        ),
        slice("shop", "db", json!([ready("shop", "db-0", "10.0.1.1")])),
    ];
    let m = run(&listed(&["shop"]), &services, &slices);
    let labels: Vec<(String, String)> = m
        .instances
        .iter()
        .map(|i| (i.app.clone(), names::instance_label(&i.instance_id, &i.app)))
        .collect();
    assert_eq!(
        labels,
        [
            ("db".into(), "db-0-8080".into()),
            ("db-headless".into(), "db-0-db-headless-8080".into())
        ]
    );
    assert_eq!(
        m.renamed,
        ["shop/db-0 in db-headless: db-0-db-headless-8080 (db-0-8080 is its instance in db)"]
    );
}

#[test]
fn a_dual_stack_pod_is_one_instance_at_its_ipv4_address() {
    let services = [service("shop", "orders", json!({}))];
    let slices = [
        slice_of(
            "shop",
            "orders-v6",
            "orders",
            "IPv6",
            json!([ready("shop", "orders-1", "fd00::1")]),
            http_ports(),
        ),
        slice_of(
            "shop",
            "orders-v4",
            "orders",
            "IPv4",
            json!([ready("shop", "orders-1", "10.0.0.1")]),
            http_ports(),
        ),
        slice_of(
            "shop",
            "orders-v6b",
            "orders",
            "IPv6",
            json!([ready("shop", "orders-2", "fd00::2")]),
            http_ports(),
        ),
    ];
    let m = run(&listed(&["shop"]), &services, &slices);
    let got: Vec<(&str, &str)> = m
        .instances
        .iter()
        .map(|i| (i.instance_id.as_str(), i.ip_addr.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("orders-1:orders:8080", "10.0.0.1"),
            ("orders-2:orders:8080", "fd00::2")
        ]
    );
}

#[test]
fn annotations_choose_the_port_and_https_is_reached_over_tls() {
    let slices = |svc: &str| {
        slice_of(
            "shop",
            &format!("{svc}-x"),
            svc,
            "IPv4",
            json!([ready("shop", &format!("{svc}-1"), "10.0.0.1")]),
            json!([
                {"name": "http", "protocol": "TCP", "port": 8080},
                {"name": "management", "protocol": "TCP", "port": 9090},
                {"name": "tls", "protocol": "TCP", "port": 8443, "appProtocol": "https"}
            ]),
        )
    };
    let services = [
        service("shop", "plain", json!({})),
        service("shop", "mgmt", json!({"xipgate.io/port": "management"})),
        service("shop", "byservice", json!({"xipgate.io/port": "9090"})),
        service("shop", "secure", json!({"xipgate.io/port": "tls"})),
        service("shop", "wrong", json!({"xipgate.io/port": "grpc"})),
    ];
    let all: Vec<EndpointSlice> = ["plain", "mgmt", "byservice", "secure", "wrong"]
        .iter()
        .map(|s| slices(s))
        .collect();
    let m = run(&listed(&["shop"]), &services, &all);
    let got: Vec<(&str, Option<u16>, Option<u16>)> = m
        .instances
        .iter()
        .map(|i| (i.app.as_str(), i.port, i.secure_port))
        .collect();
    assert_eq!(
        got,
        [
            ("byservice", Some(9090), None),
            ("mgmt", Some(9090), None),
            ("plain", Some(8080), None),
            ("secure", None, Some(8443)),
        ]
    );
    assert_eq!(
        m.skipped,
        ["shop/wrong: slice wrong-x: xipgate.io/port 'grpc' is not one of its ports"]
    );
    // The primary port name from the config, where no annotation says otherwise.
    let src = source();
    let ns = listed(&["shop"]);
    let rules = Rules {
        source: &src,
        namespaces: &ns,
        primary_port_name: Some("management"),
    };
    let m = map(&rules, &services, &all);
    let plain = m
        .instances
        .iter()
        .find(|i| i.app == "plain")
        .expect("plain");
    assert_eq!(plain.port, Some(9090));
    assert_eq!(plain.instance_id, "plain-1:plain:9090");
}

proptest! {
    /// Whatever pods, namespaces and input order: no two instances share an
    /// (app, instanceId) or a label, and the result does not depend on the order.
    #[test]
    fn instances_are_unique_and_independent_of_order(
        pods in proptest::collection::vec((0usize..3, 0usize..2, 0usize..4, any::<bool>()), 0..24),
        seed in any::<u64>(),
    ) {
        let nss = ["shop", "pay", "ops"];
        let svcs = ["db", "web"];
        let services: Vec<Service> = nss
            .iter()
            .flat_map(|ns| svcs.iter().map(move |s| service(ns, s, json!({}))))
            .collect();
        let mut slices = Vec::new();
        for (k, (ns, svc, pod, v6)) in pods.iter().enumerate() {
            let (ns, svc) = (nss[*ns], svcs[*svc]);
            let (family, ip) = if *v6 { ("IPv6", format!("fd00::{k:x}")) } else { ("IPv4", format!("10.0.{}.{}", k / 200, k % 200 + 1)) };
            slices.push(slice_of(ns, &format!("{svc}-{k}"), svc, family, json!([ready(ns, &format!("p-{pod}"), &ip)]), http_ports()));
        }
        let ns = listed(&nss);
        let m = run(&ns, &services, &slices);
        let mut keys = std::collections::HashSet::new();
        let mut labels = std::collections::HashSet::new();
        for i in &m.instances {
            prop_assert!(keys.insert((i.app.clone(), i.instance_id.clone())), "{} twice", i.instance_id);
            prop_assert!(labels.insert(names::instance_label(&i.instance_id, &i.app)), "{} label twice", i.instance_id);
        }
        // Shuffled input, same output.
        let mut shuffled = slices.clone();
        let n = shuffled.len();
        if n > 1 {
            let mut s = seed;
            for i in (1..n).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
        }
        let again = run(&ns, &services, &shuffled);
        prop_assert_eq!(m.instances, again.instances);
    }
}

/// The real API server's lists (tests/fixtures/kube, recorded by tests/kube_record.rs).
#[test]
fn the_recorded_lists_map_as_the_table_says() {
    let services: crate::kube::List<Service> = serde_json::from_str(include_str!(
        "../../../tests/fixtures/kube/service-list.json"
    ))
    .expect("ServiceList");
    let slices: crate::kube::List<EndpointSlice> = serde_json::from_str(include_str!(
        "../../../tests/fixtures/kube/endpointslice-list.json"
    ))
    .expect("EndpointSliceList");
    let m = run(&listed(&["shop"]), &services.items, &slices.items);
    assert_eq!(
        brief(&m),
        [
            (
                "api".into(),
                "api-5c4b3a2-zx9cv:api:8080".into(),
                "10.244.1.10".into(),
                Some(8080),
                Status::Up
            ),
            (
                "web".into(),
                "web-7d9f8b6c5-x2x4q:web:8080".into(),
                "10.244.0.5".into(),
                Some(8080),
                Status::Up
            ),
            (
                "web".into(),
                "web-7d9f8b6c5-k8j2m:web:8080".into(),
                "10.244.0.6".into(),
                Some(8080),
                Status::Down
            ),
            (
                "web".into(),
                "web-7d9f8b6c5-p9q7r:web:8080".into(),
                "10.244.0.7".into(),
                Some(8080),
                Status::Down
            ),
        ]
    );
    assert_eq!(
        m.skipped,
        ["shop/external: endpoint 192.0.2.10: no Pod targetRef"]
    );
    assert_eq!(m.services, 2);
}
