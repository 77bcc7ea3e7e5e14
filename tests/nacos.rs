//! Nacos beside Eureka, against a real Nacos server nobody here wrote: rnacos, with
//! instances registered through its HTTP open API (as Nacos' Java client does over HTTP)
//! and through a real client, nacos-sdk-python (it/py-client/nacos_backend.py).

mod common;
#[path = "common/rnacos.rs"]
mod rnacos;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use rnacos::Rnacos;
use serde_json::{json, Value};

/// How long these tests hold instances missing from a sudden shrink: deregistering the
/// only instance of a registry is one.
const SHRINK_GRACE_SECS: u64 = 3;

/// xipgate reading only `nacos` (Eureka off), every 300 ms.
fn nacos_only(url: &str, extra: &str) -> String {
    format!(
        "  registry:\n    shrink_grace: {SHRINK_GRACE_SECS}s\n    eureka:\n      enabled: false\n    nacos:\n      - urls: [\"{url}\"]\n        interval: 300ms\n{extra}"
    )
}

/// Polls until `f` holds, or fails with `what` and the log.
fn until(x: &Xipgate, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within 20 s\n{}",
            x.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn instance_api(x: &Xipgate, label: &str) -> Value {
    x.api(&format!("/api/v1/instances/{label}")).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_disable_and_deregistration_follow_nacos() {
    let nacos = Rnacos::start(None).await;
    let backend = Backend::start("n1").await;
    let port = backend.addr.port().to_string();
    // A persistent instance (its health is the server's to change), with a pod name.
    let base = [
        ("serviceName", "orders"),
        ("ip", "127.0.0.1"),
        ("port", port.as_str()),
        ("ephemeral", "false"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        base.iter().chain(extra).copied().collect()
    };
    nacos
        .instance(
            Method::POST,
            &with(&[("metadata", r#"{"pod-name":"orders-7d9f8-x2k4q"}"#)]),
        )
        .await;
    let x = Xipgate::start_with(&nacos.url(), &nacos_only(&nacos.url(), ""), "", true);
    let label = format!("orders-7d9f8-x2k4q-{port}");
    until(&x, "the instance is routed", || x.get(&label, "/").0 == 200);
    let (status, _, body) = x.get("orders", "/svc");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"backend\":\"n1\""), "{body}");
    let i = instance_api(&x, &label);
    assert_eq!(i["source"], "nacos", "{i}");
    assert_eq!(i["status"], "UP", "{i}");
    let reg = x.api("/api/v1/registry").1;
    assert_eq!(reg["eureka"], false);
    assert_eq!(reg["nacos"][0]["instances"], 1, "{reg}");

    // Disabled: Nacos (rnacos as Nacos) leaves it out of the instance list, so it is no
    // longer routed, by either name. Enabled again: back.
    nacos
        .instance(Method::PUT, &with(&[("enabled", "false")]))
        .await;
    until(&x, "disabled", || x.get(&label, "/").0 == 404);

    // Deregistered: gone.
    nacos
        .instance(Method::PUT, &with(&[("enabled", "true")]))
        .await;
    until(&x, "UP again", || x.get("orders", "/").0 == 200);
    nacos.instance(Method::DELETE, &base).await;
    until(&x, "gone", || x.get(&label, "/").0 == 404);
}

/// A sync that suddenly lists fewer than half of the instances known (three of four gone
/// at once, as a restarted node without its data, or one that has only part of it,
/// answers) holds the missing ones as Eureka's full fetch does: still routed, shown in
/// the API and the metrics, until `shrink_grace` has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sudden_shrink_is_held_for_the_grace_as_with_eureka() {
    let nacos = Rnacos::start(None).await;
    let mut backends = Vec::new();
    for i in 1..=4 {
        backends.push(Backend::start(&format!("o{i}")).await);
    }
    let params = |i: usize| -> Vec<(&'static str, String)> {
        vec![
            ("serviceName", "orders".into()),
            ("ip", "127.0.0.1".into()),
            ("port", backends[i].addr.port().to_string()),
            ("ephemeral", "false".into()),
            ("metadata", format!(r#"{{"pod-name":"o-{i}"}}"#)),
        ]
    };
    for i in 0..4 {
        let p = params(i);
        let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
        nacos.instance(Method::POST, &p).await;
    }
    let x = Xipgate::start_with(&nacos.url(), &nacos_only(&nacos.url(), ""), "", true);
    let registry = |x: &Xipgate| x.api("/api/v1/registry").1;
    until(&x, "four routed", || registry(&x)["instances"] == 4);
    for i in 1..4 {
        let p = params(i);
        let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
        nacos.instance(Method::DELETE, &p).await;
    }
    until(&x, "three held", || {
        registry(&x)["nacos"][0]["held_instances"] == 3
    });
    let reg = registry(&x);
    assert_eq!(reg["instances"], 4, "the held ones are still routed: {reg}");
    assert_eq!(reg["nacos"][0]["instances"], 1, "Nacos listed one: {reg}");
    assert!(reg["nacos"][0]["held_since"].is_u64(), "{reg}");
    let held_label = format!("o-3-{}", backends[3].addr.port());
    assert_eq!(x.get(&held_label, "/").0, 200, "a held instance answers");
    let metrics = x.api("/metrics").1.as_str().unwrap_or_default().to_string();
    assert!(
        metrics.contains("xipgate_registry_source_held_instances{source=\"nacos\"} 3"),
        "{metrics}"
    );
    // Never listed again: dropped once the grace has passed.
    until(&x, "the grace ran out", || {
        let reg = registry(&x);
        reg["nacos"][0]["held_instances"] == 0 && reg["instances"] == 1
    });
    assert_eq!(x.get(&held_label, "/").0, 404);
}

/// docs/nacos.md's own example reads the public namespace and `dev`: each namespace's
/// `orders` is its own service with its own host, so production requests never reach dev
/// pods; `ORDERS`, another service to Nacos, gets a host of its own too, and is shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_and_names_differing_in_case_are_kept_apart() {
    let nacos = Rnacos::start(None).await;
    let (prod, dev, upper) = (
        Backend::start("prod").await,
        Backend::start("dev").await,
        Backend::start("upper").await,
    );
    for (service, namespace, backend) in [
        ("orders", "", &prod),
        ("orders", "dev", &dev),
        ("ORDERS", "", &upper),
    ] {
        let port = backend.addr.port().to_string();
        let mut p = vec![
            ("serviceName", service),
            ("ip", "127.0.0.1"),
            ("port", port.as_str()),
            ("ephemeral", "false"),
        ];
        if !namespace.is_empty() {
            p.push(("namespaceId", namespace));
        }
        nacos.instance(Method::POST, &p).await;
    }
    let cfg = nacos_only(&nacos.url(), "        namespaces: [\"\", dev]\n");
    let x = Xipgate::start_with(&nacos.url(), &cfg, "", true);
    until(&x, "all three routed", || {
        x.api("/api/v1/registry").1["instances"] == 3
    });
    let backend_of = |label: &str| {
        let (status, _, body) = x.get(label, "/");
        assert_eq!(status, 200, "{label}: {body}");
        serde_json::from_str::<Value>(&body).expect("backend json")["backend"].clone()
    };
    for _ in 0..4 {
        assert_eq!(backend_of("orders"), "prod", "public orders only");
    }
    assert_eq!(backend_of("orders-dev"), "dev");
    let reg = x.api("/api/v1/registry").1;
    let renamed = reg["nacos"][0]["renamed"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(renamed.len(), 1, "{reg}");
    let note = renamed[0].as_str().unwrap_or_default();
    assert!(
        note.starts_with("public/DEFAULT_GROUP/ORDERS: orders-"),
        "{note}"
    );
    let label = note.split_whitespace().nth(1).expect("the label it got");
    assert_eq!(backend_of(label), "upper");
    let page = http_get(x.console, "localhost", "/").expect("page").2;
    assert!(page.contains(label), "the console shows the rename");
}

/// nacos-sdk-python's client in `it/`: registers itself (ephemeral, heartbeat each second).
struct PyNacos {
    child: Child,
    port: u16,
}

impl Drop for PyNacos {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PyNacos {
    fn start(dir: &Path, server: std::net::SocketAddr, service: &str, extra: &[&str]) -> PyNacos {
        let python = common::real::it_python();
        let port_file = dir.join(format!("{service}.port"));
        let mut child = Command::new(python)
            .arg(common::real::it_file("py-client/nacos_backend.py"))
            .args(["--server", &server.to_string(), "--service", service])
            .arg("--port-file")
            .arg(&port_file)
            .args(extra)
            .spawn()
            .expect("start nacos_backend.py");
        // The port file is written (renamed into place) once it is registered.
        let port = common::real::read_port_file(
            &port_file,
            &mut child,
            "nacos_backend.py",
            None,
            Duration::from_secs(20),
        );
        PyNacos { child, port }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_client_is_routed_and_expires_when_its_heartbeats_stop() {
    let nacos = Rnacos::start(None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut py = PyNacos::start(
        dir.path(),
        nacos.http,
        "py-svc",
        &["--metadata", "pod-name=py-pod-1"],
    );
    let x = Xipgate::start_with(&nacos.url(), &nacos_only(&nacos.url(), ""), "", true);
    let label = format!("py-pod-1-{}", py.port);
    until(&x, "the client's instance is routed", || {
        x.get(&label, "/").0 == 200
    });
    let (_, _, body) = x.get("py-svc", "/");
    assert_eq!(body, format!("py-nacos py-svc {}\n", py.port));
    let i = instance_api(&x, &label);
    assert_eq!(i["metadata"]["nacos.ephemeral"], "true", "{i}");
    // SIGKILL: no deregistration; the heartbeats stop and rnacos expires it.
    let _ = py.child.kill();
    let _ = py.child.wait();
    until(&x, "expired", || x.get(&label, "/").0 == 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_namespaces_and_groups() {
    let nacos = Rnacos::start(Some(("nacos-admin", "s3cret-pw"))).await;
    let backend = Backend::start("g").await;
    let port = backend.addr.port().to_string();
    nacos
        .instance(
            Method::POST,
            &[
                ("serviceName", "billing"),
                ("groupName", "PAYMENTS"),
                ("namespaceId", "dev"),
                ("ip", "127.0.0.1"),
                ("port", &port),
                ("ephemeral", "false"),
            ],
        )
        .await;
    // Logged in, reading namespace dev and group PAYMENTS: routed, under a name that
    // says where it lives.
    let cfg = nacos_only(
        &nacos.url(),
        "        username: nacos-admin\n        password: s3cret-pw\n        namespaces: [dev]\n        groups: [PAYMENTS]\n",
    );
    let x = Xipgate::start_with(&nacos.url(), &cfg, "", true);
    until(&x, "billing is routed", || {
        x.get("billing-dev-payments", "/").0 == 200
    });
    assert_eq!(
        x.get("billing", "/").0,
        404,
        "not the public default group's name"
    );
    let reg = x.api("/api/v1/registry").1;
    assert_eq!(reg["nacos"][0]["namespaces"][0], "dev");
    assert!(
        !reg.to_string().contains("s3cret"),
        "the password is never shown"
    );
    drop(x);

    // The public namespace and default group do not list it.
    let cfg = nacos_only(
        &nacos.url(),
        "        username: nacos-admin\n        password: s3cret-pw\n",
    );
    let x = Xipgate::start_with(&nacos.url(), &cfg, "", true);
    until(&x, "a sync", || {
        x.api("/api/v1/registry").1["nacos"][0]["syncs_ok"].as_u64() > Some(0)
    });
    assert_eq!(x.get("billing", "/").0, 404);
    drop(x);

    // A wrong password: the sync fails, says why, and routes nothing.
    let cfg = nacos_only(
        &nacos.url(),
        "        username: nacos-admin\n        password: wrong-pw\n        namespaces: [dev]\n        groups: [PAYMENTS]\n",
    );
    let x = Xipgate::start_with(&nacos.url(), &cfg, "", false);
    until(&x, "the login failure is shown", || {
        x.api("/api/v1/registry").1["nacos"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("login"))
    });
    // Once startup_wait is over the proxy answers: nothing was ever loaded.
    until(&x, "503 never loaded", || {
        x.get("billing-dev-payments", "/").0 == 503
    });
}

/// The access token is a credential: it travels in a header, so an error about a request
/// (here: the server gone while the token is cached) never carries it into the log, the
/// API or the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_token_never_shows_in_errors() {
    let mut nacos = Rnacos::start(Some(("nacos-admin", "s3cret-pw"))).await;
    let backend = Backend::start("t").await;
    let port = backend.addr.port().to_string();
    nacos
        .instance(
            Method::POST,
            &[
                ("serviceName", "ledger"),
                ("ip", "127.0.0.1"),
                ("port", &port),
                ("ephemeral", "false"),
            ],
        )
        .await;
    let cfg = nacos_only(
        &nacos.url(),
        "        username: nacos-admin\n        password: s3cret-pw\n",
    );
    let x = Xipgate::start_with(&nacos.url(), &cfg, "", true);
    until(&x, "ledger is routed", || x.get("ledger", "/").0 == 200);
    nacos.stop();
    until(&x, "the failure is shown", || {
        x.api("/api/v1/registry").1["nacos"][0]["consecutive_failures"].as_u64() > Some(1)
    });
    let reg = x.api("/api/v1/registry").1;
    let error = reg["nacos"][0]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("cannot connect"), "{reg}");
    let page = http_get(x.console, "localhost", "/").expect("page").2;
    for (what, text) in [
        ("the API", reg.to_string()),
        ("the log", x.log()),
        ("the page", page),
    ] {
        assert!(!text.contains("accessToken"), "{what}: {text}");
    }
    assert_eq!(
        x.get("ledger", "/").0,
        200,
        "the last good set stays routed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacos_down_keeps_its_instances_and_eureka_serves_beside_it() {
    let mut nacos = Rnacos::start(None).await;
    let nb = Backend::start("from-nacos").await;
    let eb = Backend::start("from-eureka").await;
    let port = nb.addr.port().to_string();
    nacos
        .instance(
            Method::POST,
            &[
                ("serviceName", "inventory"),
                ("ip", "127.0.0.1"),
                ("port", &port),
                ("ephemeral", "false"),
                ("metadata", r#"{"pod-name":"inv-1"}"#),
            ],
        )
        .await;
    let eureka = StubEureka::start().await;
    // One service only in Eureka, and the same pod of `inventory` in both registries.
    let only_eureka = Inst::up("catalog", "cat-1", eb.addr);
    let both = Inst::up("inventory", "inv-1", nb.addr);
    eureka.serve(&[only_eureka.clone(), both.clone()]).await;
    let cfg = format!(
        "  registry:\n    nacos:\n      - urls: [\"{}\"]\n        interval: 300ms\n",
        nacos.url()
    );
    let x = Xipgate::start(&eureka.url(), &cfg);
    until(&x, "both registries routed", || {
        x.get("catalog", "/").0 == 200 && x.get("inventory", "/").0 == 200
    });
    let reg = x.api("/api/v1/registry").1;
    assert_eq!(reg["eureka"], true);
    // Each source in rank order, in the shape every kind reports.
    let kinds: Vec<_> = reg["registries"]
        .as_array()
        .expect("registries")
        .iter()
        .map(|r| (r["kind"].clone(), r["name"].clone(), r["instances"].clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (json!("eureka"), json!("eureka"), json!(2)),
            (json!("nacos"), json!("nacos"), json!(1)),
        ],
        "{reg}"
    );
    assert_eq!(reg["registries"][1]["endpoints"][0], nacos.url(), "{reg}");
    assert_eq!(reg["registries"][1]["services"], 1, "{reg}");
    let shadowed = reg["shadowed"].to_string();
    assert!(
        shadowed.contains("nacos: INVENTORY/inv-1:inventory:"),
        "{reg}"
    );
    assert_eq!(
        instance_api(&x, &both.label())["source"],
        "eureka",
        "Eureka ranks first"
    );
    let page = http_get(x.console, "localhost", "/").expect("page").2;
    assert!(
        page.contains("data-source=\"nacos\""),
        "the console shows the Nacos source"
    );

    // Nacos gone: its last good instances stay routed, the failure is shown, Eureka's
    // instances are untouched.
    nacos.stop();
    until(&x, "the failure is shown", || {
        x.api("/api/v1/registry").1["nacos"][0]["consecutive_failures"].as_u64() > Some(1)
    });
    assert_eq!(x.get("inventory", "/").0, 200);
    assert_eq!(x.get("catalog", "/").0, 200);
    let metrics = x.api("/metrics").1.as_str().unwrap_or_default().to_string();
    assert!(
        metrics.contains("xipgate_registry_source_syncs_total{result=\"error\",source=\"nacos\"}"),
        "{metrics}"
    );
}

/// rnacos 0.8.8 lists every instance healthy (it sets healthy on every registration and
/// update; its heartbeat timeout removes an instance without listing it unhealthy first:
/// observed healthy for 13 s, then gone). So an unhealthy instance comes from a stand-in
/// serving rnacos' recorded answer (tests/fixtures/rnacos-0.8.8-*.json) with one
/// instance's `healthy` turned false, as Nacos lists an instance whose health check fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_instance_is_down_and_left_out_of_its_service() {
    use wiremock::matchers::{method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let read = |f: &str| std::fs::read_to_string(root.join(f)).expect("fixture");
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let list = read("rnacos-0.8.8-instance-list.json")
        .replace("8081", &a.addr.port().to_string())
        .replace("8082", &b.addr.port().to_string());
    let mut doc: Value = serde_json::from_str(&list).expect("recorded json");
    for h in doc["hosts"].as_array_mut().expect("hosts") {
        if h["metadata"]["pod-name"] == "orders-b" {
            h["healthy"] = Value::Bool(false);
        }
    }
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/nacos/v1/ns/service/list"))
        .respond_with(
            ResponseTemplate::new(200).set_body_string(read("rnacos-0.8.8-service-list.json")),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/nacos/v1/ns/instance/list"))
        .and(query_param("serviceName", "orders"))
        .and(query_param("healthyOnly", "false"))
        .respond_with(ResponseTemplate::new(200).set_body_json(doc))
        .mount(&server)
        .await;
    let url = format!("{}/nacos", server.uri());
    let x = Xipgate::start_with(&url, &nacos_only(&url, ""), "", true);
    let down = format!("orders-b-{}", b.addr.port());
    assert_eq!(instance_api(&x, &down)["status"], "DOWN");
    for _ in 0..4 {
        let (status, _, body) = x.get("orders", "/");
        assert_eq!(status, 200);
        assert!(
            body.contains("\"backend\":\"a\""),
            "only the healthy one: {body}"
        );
    }
    let (status, headers, _) = x.get(&down, "/");
    assert_eq!(status, 200, "its own name still reaches it");
    assert!(headers
        .iter()
        .any(|(k, v)| k == "x-xipgate-instance-status" && v == "DOWN"));
}

/// Nacos 3 (`api: v3`): rnacos has no v3 API, so a stand-in serves the answer transcribed
/// from Nacos 3's source (tests/fixtures/nacos-3-admin-service-list-with-instances.json:
/// every service of a group with its instances by cluster) behind the v3 login, with the
/// addresses pointed at real backends. Every cluster's instances are routed; the disabled
/// one is OUT_OF_SERVICE; without the token the admin API answers 403 and xipgate says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacos_3_lists_services_with_their_instances_after_its_login() {
    use wiremock::matchers::{body_string_contains, header, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let fixture =
        std::fs::read_to_string(root.join("nacos-3-admin-service-list-with-instances.json"))
            .expect("fixture");
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let body = fixture
        .replace(
            "\"ip\":\"10.0.0.5\",\"port\":8080",
            &format!("\"ip\":\"127.0.0.1\",\"port\":{}", a.addr.port()),
        )
        .replace(
            "\"ip\":\"10.0.0.6\",\"port\":8080",
            &format!("\"ip\":\"127.0.0.1\",\"port\":{}", b.addr.port()),
        )
        .replace(
            "\"ip\":\"10.0.0.7\",\"port\":8080",
            &format!("\"ip\":\"127.0.0.1\",\"port\":{}", b.addr.port()),
        );
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/nacos/v3/auth/user/login"))
        .and(body_string_contains("username=nacos"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"{"accessToken":"v3-token","tokenTtl":18000,"globalAdmin":true,"username":"nacos"}"#,
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/nacos/v3/admin/ns/service/list"))
        .and(header("authorization", "Bearer v3-token"))
        .and(query_param("withInstances", "true"))
        .and(query_param("namespaceId", "public"))
        .and(query_param("groupNameParam", "DEFAULT_GROUP"))
        .respond_with(ResponseTemplate::new(200).set_body_string(body))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/nacos/v3/admin/ns/service/list"))
        .respond_with(ResponseTemplate::new(403).set_body_string("user not found!"))
        .mount(&server)
        .await;
    let url = format!("{}/nacos", server.uri());
    let v3 = "        api: v3\n        username: nacos\n        password: nacos-pass\n";
    let x = Xipgate::start_with(&url, &nacos_only(&url, v3), "", true);
    let up = format!("orders-7d9f8-x2k4q-{}", a.addr.port());
    let (status, _, body) = x.get(&up, "/");
    assert_eq!(status, 200);
    assert!(body.contains("\"backend\":\"a\""), "{body}");
    let canary = format!("orders-canary-q8wvn-{}", b.addr.port());
    assert_eq!(instance_api(&x, &canary)["status"], "OUT_OF_SERVICE");
    assert_eq!(
        instance_api(&x, &canary)["metadata"]["nacos.cluster"],
        "canary"
    );
    let unhealthy = format!("orders-7d9f8-b5m2n-{}", b.addr.port());
    assert_eq!(instance_api(&x, &unhealthy)["status"], "DOWN");
    for _ in 0..3 {
        assert!(
            x.get("orders", "/").2.contains("\"backend\":\"a\""),
            "only the UP one"
        );
    }
    let registry = x.api("/api/v1/registry").1;
    assert_eq!(registry["nacos"][0]["api"], "v3");
    assert_eq!(registry["nacos"][0]["services"], 2);

    // Without credentials the admin API refuses: the error names it, nothing is routed.
    let y = Xipgate::start_with(&url, &nacos_only(&url, "        api: v3\n"), "", false);
    until(&y, "the refusal is reported", || {
        y.api("/api/v1/registry").1["nacos"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP 403") && e.contains("/v3/admin/ns/service/list"))
    });
    // The proxy starts once startup_wait (10 s) is over, with nothing to route.
    until(&y, "nothing is routed", || y.get(&up, "/").0 == 503);
}
