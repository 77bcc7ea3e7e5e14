//! The JSON API's handlers on a routing table built in code: no sockets. (The live
//! endpoints and the HTTP side are tested through the binary in tests/console_api.rs.)

use std::sync::Arc;

use super::*;
use crate::config::EurekaUrl;
use crate::console::Access;
use crate::metrics::Metrics;
use crate::registry::{EurekaClient, SyncState};
use crate::routes::{Allowlist, RouteTable};

/// An instance `pod:app:8080` at `ip`, as Spring registers it.
pub fn inst(app: &str, pod: &str, ip: &str, status: Status) -> Instance {
    let url = |path: &str| Some(format!("http://{ip}:8080{path}"));
    Instance {
        source: crate::instance::eureka_source(),
        app: app.into(),
        instance_id: format!("{pod}:{}:8080", app.to_lowercase()),
        host_name: pod.into(),
        ip_addr: ip.into(),
        port: Some(8080),
        secure_port: None,
        status,
        overridden_status: None,
        metadata: [("zone".to_string(), "zone-a".to_string())].into(),
        home_page_url: url("/"),
        status_page_url: url("/actuator/info"),
        health_check_url: url("/actuator/health"),
        last_renewal_ms: Some(1_700_000_030_000).into(),
        last_dirty_ms: None,
    }
}

/// A console over `instances` (None: never loaded), allowlist 10.0.0.0/8, links on
/// `edge.test:8080`. Nothing listens on port 9, so the live endpoints fail fast (they
/// are tested against a stub Eureka in tests/console_api.rs).
pub fn console_with(instances: Option<Vec<Instance>>) -> Console {
    let table = RouteTable::new(Allowlist::new(vec!["10.0.0.0/8".parse().unwrap()]));
    instances.map(|i| table.apply(i));
    let mut registry = crate::config::load(None, |_| None).unwrap().registry;
    registry.urls = vec![EurekaUrl {
        base: "http://127.0.0.1:9/eureka".into(),
        auth: None,
    }];
    registry.timeout = std::time::Duration::from_millis(500);
    let client = EurekaClient::new(&registry).unwrap();
    let table = Arc::new(table);
    let sync = Arc::new(SyncState::new(client.sources()));
    Console {
        table: table.clone(),
        sources: vec![sync.clone()],
        sync,
        client,
        metrics: Arc::new(Metrics::new()),
        traffic: Arc::new(crate::traffic::Traffic::default()),
        links: Links::new("edge.test".into(), None, 8080),
        access: Access::default(),
        certs: None,
        acme: None,
        upstream_tls_verify: true,
        feed: Arc::new(crate::routes::Feed::new(
            table.clone(),
            vec!["eureka".into()],
        )),
        policy: Arc::new(crate::access::Policy::default()),
        access_summary: crate::config::AccessConfig::default().summary(),
        identity_jwks: None,
        domains: vec!["edge.test".into()],
        gate: Default::default(),
    }
}

async fn get(console: &Console, path_and_query: &str) -> (u16, String) {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let a = route(
        console,
        &console.links.for_request(None, false),
        path,
        query,
    )
    .await;
    (a.status, String::from_utf8_lossy(&a.body).into_owned())
}

async fn get_json(console: &Console, path: &str) -> (u16, Value) {
    let (s, body) = get(console, path).await;
    (
        s,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")),
    )
}

fn sample() -> Console {
    console_with(Some(vec![
        inst("ORDER-SERVICE", "order-1", "10.0.0.1", Status::Up),
        inst("ORDER-SERVICE", "order-2", "10.0.0.2", Status::Down),
        inst("EVIL", "evil-1", "8.8.8.8", Status::Up),
    ]))
}

#[tokio::test]
async fn legacy_list_keeps_the_older_shape() {
    let (s, v) = get_json(&sample(), "/api/services").await;
    assert_eq!(s, 200);
    let order = v["ORDER-SERVICE"].as_array().unwrap();
    assert_eq!(order.len(), 1, "UP instances only: {v}");
    let expected = json!({"ip": "10.0.0.1", "instance": "10.0.0.1:8080", "port": "8080",
        "instancename": "order_1_order_service_8080", "servicename": "ORDER-SERVICE", "xip": "order-1-8080.edge.test"});
    assert_eq!(order[0], expected);
}

#[tokio::test]
async fn versioned_endpoints() {
    let c = sample();
    let (s, v) = get_json(&c, "/api/v1/services").await;
    assert_eq!((s, v["services"].as_array().map(Vec::len)), (200, Some(2)));
    let (s, v) = get_json(&c, "/api/v1/services/ORDER-SERVICE").await;
    assert_eq!((s, v["instances_total"].as_u64()), (200, Some(2)));
    assert_eq!(v["instances_by_status"], json!({"DOWN": 1, "UP": 1}));
    assert_eq!(v["url"], "http://order-service.edge.test:8080/");
    for path in [
        "/api/v1/instances/order-1-8080",
        "/api/v1/instances/order-1%3Aorder-service%3A8080",
    ] {
        let (s, v) = get_json(&c, path).await;
        assert_eq!(
            (s, v["instance_id"].as_str()),
            (200, Some("order-1:order-service:8080")),
            "{path}"
        );
        assert_eq!(
            v["health_check_url"],
            "http://order-1-8080.edge.test:8080/actuator/health"
        );
        assert_eq!(
            (v["zone"].as_str(), v["blocked"].as_str()),
            (Some("zone-a"), None)
        );
    }
    let (_, v) = get_json(&c, "/api/v1/instances/evil-1-8080").await;
    assert!(v["blocked"].as_str().unwrap().contains("8.8.8.8"), "{v}");
    let (s, v) = get_json(&c, "/api/v1/registry").await;
    assert_eq!(
        (s, v["loaded"].as_bool(), v["instances"].as_u64()),
        (200, Some(true), Some(3))
    );
}

/// A source of a kind the console has never heard of, to show it lists any.
struct Another;

impl crate::registry::Report for Another {
    fn status(&self) -> crate::registry::SourceStatus {
        crate::registry::SourceStatus {
            kind: "another",
            name: "east".into(),
            endpoints: vec!["https://10.0.0.9:6443".into()],
            last_error: Some("refused".into()),
            consecutive_failures: 2,
            instances: 7,
            notes: vec![crate::registry::Note {
                text: "something to know".into(),
                title: "why".into(),
            }],
            detail: serde_json::json!({"namespaces": ["shop"]}),
            ..Default::default()
        }
    }
}

#[tokio::test]
async fn every_source_is_listed_whatever_its_kind() {
    let mut c = sample();
    c.sources.push(Arc::new(Another));
    let (s, v) = get_json(&c, "/api/v1/registry").await;
    assert_eq!(s, 200);
    let r = &v["registries"];
    assert_eq!(r.as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(
        (&r[0]["kind"], &r[0]["name"]),
        (&json!("eureka"), &json!("eureka"))
    );
    assert_eq!(r[0]["endpoints"], json!(["http://127.0.0.1:9/eureka"]));
    assert_eq!(
        r[0]["detail"]["sources"], r[0]["endpoints"],
        "Eureka's own status"
    );
    assert_eq!(r[1]["kind"], "another");
    assert_eq!(r[1]["instances"], 7);
    assert_eq!(r[1]["consecutive_failures"], 2);
    assert_eq!(r[1]["notes"], json!(["something to know"]));
    assert_eq!(r[1]["detail"]["namespaces"][0], "shop");
    // The fields from before stay: Eureka's status at the top, Nacos' list.
    assert_eq!(v["eureka"], true);
    assert_eq!(v["nacos"], json!([]));
    assert_eq!(v["sources"], r[0]["endpoints"]);

    let a = crate::console::page::render(&c, &c.links.for_request(None, false), "", None);
    let page = String::from_utf8(a.body.to_vec()).unwrap();
    for needle in [
        "data-kind=\"another\" data-source=\"east\"",
        "Another <b>east</b>",
        "https://10.0.0.9:6443",
        "Last error: refused",
        "title=\"why\">something to know",
        "data-kind=\"eureka\" data-source=\"eureka\">Eureka <b class=\"mono\">http://127.0.0.1:9/eureka</b>",
    ] {
        assert!(page.contains(needle), "{needle} in the page");
    }
}

#[tokio::test]
async fn errors_are_json_with_their_status() {
    let c = sample();
    for (path, status) in [
        ("/api/v1/services/nope", 404),
        ("/api/v1/instances/nope", 404),
        ("/api/v1/instances/order-service", 404),
        ("/api/v1/nothing", 404),
        ("/api/services/ips", 400),
        ("/api/services/ips?servicename=", 400),
        ("/api/services/endpoint", 400),
        ("/api/services/endpointcache?servicename=%20", 400),
        ("/api/services/endpointcache?servicename=nope", 404),
        ("/api/services/endpoint?servicename=nope", 404),
    ] {
        let (s, v) = get_json(&c, path).await;
        assert_eq!(
            (s, v["status"].as_u64()),
            (status, Some(u64::from(status))),
            "{path}: {v}"
        );
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {v}"
        );
    }
}

/// Both answer from the table: `endpoint` used to fetch the whole registry from Eureka
/// on every call (here Eureka is unreachable, and the answer is still there).
#[tokio::test]
async fn endpoint_and_endpoint_cache_answer_plain_ip_port_from_the_table() {
    let c = sample();
    for endpoint in ["endpointcache", "endpoint"] {
        for name in [
            "order_2_order_service_8080",
            "order-2-8080",
            "order-2:order-service:8080",
        ] {
            let path = format!("/api/services/{endpoint}?servicename={name}");
            assert_eq!(
                get(&c, &path).await,
                (200, "10.0.0.2:8080".to_string()),
                "{path}"
            );
        }
    }
}

#[test]
fn percent_decoding() {
    assert_eq!(names::percent_decode("a%3Ab%3a8080"), "a:b:8080");
    assert_eq!(names::percent_decode("100%"), "100%");
    assert_eq!(names::percent_decode("%zz%+1"), "%zz%+1");
    assert_eq!(names::percent_decode("a+b&c=d"), "a+b&c=d", "not form data");
}

#[tokio::test]
async fn lists_come_a_page_at_a_time_with_a_next_link() {
    let many: Vec<Instance> = (0..30)
        .map(|k| {
            inst(
                &format!("SVC-{:02}", k / 3),
                &format!("pod-{k:02}"),
                &format!("10.0.0.{k}"),
                Status::Up,
            )
        })
        .collect();
    let console = console_with(Some(many));
    let (s, v) = get_json(&console, "/api/v1/services?limit=4&page=2").await;
    assert_eq!(s, 200);
    let names: Vec<&str> = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["label"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["svc-04", "svc-05", "svc-06", "svc-07"]);
    assert_eq!(
        (v["total"].as_u64(), v["pages"].as_u64()),
        (Some(10), Some(3))
    );
    assert_eq!(v["next"], "/api/v1/services?page=3&limit=4");
    let a = route(
        &console,
        &console.links.for_request(None, false),
        "/api/v1/services",
        "limit=4&page=3",
    )
    .await;
    assert!(a.headers.iter().all(|(k, _)| *k != "link"), "no next page");
    let a = route(
        &console,
        &console.links.for_request(None, false),
        "/api/v1/services",
        "limit=4",
    )
    .await;
    let link = a
        .headers
        .iter()
        .find(|(k, _)| *k == "link")
        .map(|(_, v)| v.to_str().unwrap().to_string());
    assert_eq!(
        link.as_deref(),
        Some("</api/v1/services?page=2&limit=4>; rel=\"next\"")
    );

    // A service's instances, filtered and paged; instances across services.
    let (_, v) = get_json(&console, "/api/v1/services/svc-03?limit=2").await;
    assert_eq!(v["instances"].as_array().unwrap().len(), 2);
    assert_eq!(v["total"], 3);
    assert_eq!(v["next"], "/api/v1/services/svc-03?page=2&limit=2");
    let (_, v) = get_json(&console, "/api/v1/instances?q=10.0.0.1").await;
    let labels: Vec<&str> = v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels.len(), 11, "10.0.0.1 and 10.0.0.10-19: {labels:?}");
    assert_eq!(v["total"], 11);
    // Bad parameters are named.
    let (s, v) = get_json(&console, "/api/v1/instances?limit=0").await;
    assert_eq!(s, 400);
    assert_eq!(
        v["error"],
        "query parameter 'limit' must be a whole number from 1 (got '0')"
    );
}

#[tokio::test]
async fn traffic_answers_for_the_rows_a_view_shows() {
    let console = sample();
    console.traffic.record(
        "order-service",
        Some("order-1-8080"),
        200,
        Some(std::time::Duration::from_millis(5)),
    );
    let (s, v) = get_json(&console, "/api/v1/traffic").await;
    assert_eq!(s, 200);
    let series = v["series"].as_object().unwrap();
    let mut keys: Vec<&str> = series.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "i:evil-1-8080",
            "i:order-1-8080",
            "i:order-2-8080",
            "s:evil",
            "s:order-service"
        ]
    );
    assert_eq!(series["i:order-1-8080"]["summary"]["requests"], 1);
    assert_eq!(series["i:order-2-8080"]["summary"]["requests"], 0);
    assert_eq!(v["points"], 60);
    let (_, v) = get_json(&console, "/api/v1/traffic?q=evil").await;
    assert_eq!(v["series"].as_object().unwrap().len(), 2);
    let (_, v) = get_json(&console, "/api/v1/instances/order-1-8080").await;
    assert_eq!(v["traffic"]["summary"]["requests"], 1);
}

/// `/api/services` keeps the older shape: whole for a registry of up to [`API_LIMIT`] UP
/// instances, else (or with `limit`) a page at a time, the paging in headers only.
#[tokio::test]
async fn legacy_list_pages_a_large_registry_keeping_its_shape() {
    let many: Vec<Instance> = (0..30)
        .map(|k| {
            inst(
                &format!("SVC-{:02}", k / 3),
                &format!("pod-{k:02}"),
                &format!("10.0.0.{k}"),
                if k == 29 { Status::Down } else { Status::Up },
            )
        })
        .collect();
    let console = console_with(Some(many));
    let call = |query: &'static str| {
        let console = &console;
        async move {
            let a = route(
                console,
                &console.links.for_request(None, false),
                "/api/services",
                query,
            )
            .await;
            let header = |name: &str| {
                a.headers
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_str().unwrap().to_string())
            };
            let body: Value = serde_json::from_slice(&a.body).unwrap();
            let entries: usize = body
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_array().map_or(0, Vec::len))
                .sum();
            (
                a.status,
                entries,
                header("x-total-count"),
                header("link"),
                body,
            )
        }
    };
    // Small: everything (29 UP), no next page.
    let (s, n, total, link, whole) = call("").await;
    assert_eq!((s, n, total.as_deref(), link), (200, 29, Some("29"), None));
    assert_eq!(whole["SVC-00"].as_array().unwrap().len(), 3);
    // Paged: the same shape, 10 at a time, the next page linked.
    let (s, n, total, link, body) = call("limit=10").await;
    assert_eq!((s, n, total.as_deref()), (200, 10, Some("29")));
    assert_eq!(
        link.as_deref(),
        Some("</api/services?page=2&limit=10>; rel=\"next\"")
    );
    assert_eq!(body["SVC-00"], whole["SVC-00"], "entries as before");
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4, "SVC-00..02 whole, SVC-03 begun: {keys:?}");
    let (_, n, _, link, _) = call("limit=10&page=3").await;
    assert_eq!((n, link), (9, None), "the last page");
    let (s, _, _, _, body) = call("limit=0").await;
    assert_eq!(s, 400, "{body}");
    // The versioned API's next link does not repeat `open` (no list answer reads it).
    let (_, v) = get_json(&console, "/api/v1/services?limit=4&open=svc-00,svc-01").await;
    assert_eq!(v["next"], "/api/v1/services?page=2&limit=4");
}

#[test]
fn secret_looking_metadata_keys_are_recognised() {
    // (key, looks like a secret)
    let cases = [
        ("user.password", true),
        ("DB_PASSWD", true),
        ("client-secret", true),
        ("AWS_SECRET_ACCESS_KEY", true),
        ("management.token", true),
        ("accessToken", true),
        ("credentials", true),
        ("x-api-key", true),
        ("apiKey", true),
        ("user.name", false),
        ("zone", false),
        ("weight", false),
        ("pod-name", false),
        ("management.port", false),
    ];
    for (key, secret) in cases {
        assert_eq!(is_secret_key(key), secret, "{key}");
    }
}

#[tokio::test]
async fn instance_metadata_that_looks_secret_is_masked() {
    let mut i = inst("ADMIN-CLIENT", "admin-1", "10.0.0.7", Status::Up);
    i.metadata
        .insert("user.password".to_string(), "hunter2".to_string());
    i.metadata
        .insert("user.name".to_string(), "actuator".to_string());
    let console = console_with(Some(vec![i]));
    for path in [
        "/api/v1/instances/admin-1-8080",
        "/api/v1/instances?q=admin",
        "/api/v1/services/ADMIN-CLIENT",
    ] {
        let (status, body) = get(&console, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(!body.contains("hunter2"), "{path}: {body}");
    }
    let (_, v) = get_json(&console, "/api/v1/instances/admin-1-8080").await;
    assert_eq!(v["metadata"]["user.password"], "***");
    assert_eq!(v["metadata"]["user.name"], "actuator");
    assert_eq!(v["metadata"]["zone"], "zone-a");
}

#[tokio::test]
async fn steering_shows_weights_their_problems_and_the_policy() {
    let with = |pod: &str, w: &str| {
        let mut i = inst("PAY", pod, "10.0.0.9", Status::Up);
        i.metadata.insert("weight".into(), w.into());
        i
    };
    let c = console_with(Some(vec![
        with("p1", "2"),
        with("p2", "heavy"),
        with("p3", "-3"),
        with("p4", "0"),
        with("p5", "0.5"),
    ]));
    let (s, v) = get_json(&c, "/api/v1/services/pay").await;
    assert_eq!(s, 200);
    let b = &v["balance"];
    assert_eq!(b["in_rotation"], 4, "weight 0 is out: {b}");
    assert_eq!(b["weighted"], true);
    assert_eq!(b["sticky"], false);
    assert_eq!(b["pin_fallback"], "answer");
    assert_eq!(b["canary"], Value::Null);
    assert_eq!(b["ejected"], json!([]));
    let weight = |pod: &'static str| {
        let c = &c;
        async move {
            let (_, v) = get_json(c, &format!("/api/v1/instances/{pod}-8080")).await;
            (
                v["weight"].as_f64(),
                v["weight_problem"].as_str().map(String::from),
            )
        }
    };
    assert_eq!(weight("p1").await, (Some(2.0), None));
    let (w, problem) = weight("p2").await;
    assert_eq!(w, Some(1.0));
    assert!(problem.unwrap().contains("not a number"));
    let (w, problem) = weight("p3").await;
    assert_eq!(w, Some(1.0));
    assert!(problem.unwrap().contains("negative"));
    assert_eq!(weight("p4").await, (Some(0.0), None));
    assert_eq!(weight("p5").await, (Some(0.5), None));
}
