//! The console, JSON API, health and metrics through the real binary: on the console's
//! own listener and on the proxy listener for `xipgate.console.host`, against a stub
//! Eureka (the live endpoints ask it) and real backends.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

const CONSOLE_HOST: &str = "xipgate.127-0-0-1.sslip.io";
const AUTH: &str = "Authorization: Bearer s3cret-token-1\r\n";

/// One request with extra header lines; the connection is closed after it.
fn request(addr: SocketAddr, method: &str, host: &str, path: &str, extra: &str) -> Response {
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}");
    let text = raw(
        addr,
        format!("{head}Content-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    parse_response(&text.expect("request"))
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The console page of `x`, from its own listener.
fn page(x: &Xipgate) -> String {
    http_get(x.console, "localhost", "/")
        .expect("console page")
        .2
}

/// The `key` of every object in the array `v`.
fn pluck<'a>(v: &'a Value, key: &str) -> Vec<&'a str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e[key].as_str())
        .collect()
}

/// `{"application": {...}}` for `/eureka/apps/{APP}`, as Eureka answers it.
fn app_json(instances: &[Inst]) -> String {
    let apps: Value = serde_json::from_str(&apps_json(instances)).unwrap();
    json!({ "application": apps["applications"]["application"][0] }).to_string()
}

/// An error answer: JSON `{"error": "...", "status": N}` with that status.
fn assert_error(resp: &Response, status: u16, what: &str) -> String {
    let content_type = header(&resp.1, "content-type");
    assert_eq!(
        (resp.0, content_type),
        (status, Some("application/json")),
        "{what}: {}",
        resp.2
    );
    let v = json_of(&resp.2);
    assert_eq!(v["status"], status, "{what}: {v}");
    let message = v["error"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{what}: no error message in {v}");
    message.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_on_both_listeners() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let eureka = StubEureka::start().await;
    let ia = Inst::up("order-service", "order-7d9f8-x2k4q", a.addr);
    let ib = Inst::up("order-service", "order-7d9f8-zzzzz", b.addr).status("DOWN");
    let ip = Inst::up("payment-service", "payment-1", b.addr);
    eureka.serve(&[ia.clone(), ib.clone(), ip.clone()]).await;
    // /apps/ORDER-SERVICE answers live, with an instance the table has not seen yet.
    let fresh = Inst::up("order-service", "order-new", a.addr).ip("10.1.2.3");
    Mock::given(method("GET"))
        .and(path("/eureka/apps/ORDER-SERVICE"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(app_json(&[ia.clone(), fresh.clone()]), "application/json"),
        )
        .mount(&eureka.server)
        .await;
    let x = Xipgate::start(
        &eureka.url(),
        &format!("  console:\n    host: {CONSOLE_HOST}\n"),
    );
    let get = |p: &str| http_get(x.console, "localhost", p).expect("console request");

    // The page: server-rendered HTML with absolute links through the proxy.
    let (s, h, page) = get("/");
    assert_eq!(
        (s, header(&h, "content-type")),
        (200, Some("text/html; charset=utf-8"))
    );
    let proxy_port = x.proxy.port();
    for needle in [
        format!(r#"href="http://order-service.{DOMAIN}:{proxy_port}/""#),
        format!(r#"href="http://{}.{DOMAIN}:{proxy_port}/""#, ia.label()),
        format!(
            r#"href="http://{}.{DOMAIN}:{proxy_port}/actuator/health""#,
            ia.label()
        ),
        r#"<span class="st down">DOWN</span>"#.to_string(),
        "PAYMENT-SERVICE".to_string(),
    ] {
        assert!(page.contains(&needle), "the page has {needle}");
    }
    let filtered = get("/?q=payment").2;
    assert!(
        filtered.contains("PAYMENT-SERVICE") && !filtered.contains("ORDER-SERVICE"),
        "the server leaves ORDER's group and rows out"
    );

    // Legacy list: UP instances only, in the older shape.
    let (s, _, body) = get("/api/services");
    let v = json_of(&body);
    assert_eq!(s, 200);
    assert_eq!(v["ORDER-SERVICE"].as_array().map(Vec::len), Some(1), "{v}");
    let entry = &v["ORDER-SERVICE"][0];
    assert_eq!(entry["instance"], a.addr.to_string());
    assert_eq!(entry["port"], a.addr.port().to_string());
    assert_eq!(entry["instancename"], ia.id.replace([':', '-'], "_"));
    assert_eq!(entry["servicename"], "ORDER-SERVICE");
    assert_eq!(entry["xip"], format!("{}.{DOMAIN}", ia.label()));

    // Live from Eureka: the fresh instance is there; an unknown app is a JSON 404.
    let v = json_of(&get("/api/services/ips?servicename=ORDER-SERVICE").2);
    assert_eq!(
        pluck(&v["ORDER-SERVICE"], "ip"),
        ["127.0.0.1", "10.1.2.3"],
        "{v}"
    );
    let msg = assert_error(
        &get("/api/services/ips?servicename=NOPE"),
        404,
        "unknown app",
    );
    assert!(msg.contains("NOPE"), "{msg}");
    assert_error(&get("/api/services/ips"), 400, "missing servicename");

    // ip:port as plain text, live and cached; unknown names are 404, never 127.0.0.1.
    let seed = ia.id.replace([':', '-'], "_");
    for p in ["endpoint", "endpointcache"] {
        let (s, h, body) = get(&format!("/api/services/{p}?servicename={seed}"));
        assert_eq!(
            (s, body.as_str()),
            (200, a.addr.to_string().as_str()),
            "{p}"
        );
        assert_eq!(
            header(&h, "content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_error(
            &get(&format!("/api/services/{p}?servicename=nobody_here_8080")),
            404,
            p,
        );
        assert_error(&get(&format!("/api/services/{p}")), 400, p);
    }

    // Versioned API.
    let v = json_of(&get("/api/v1/services").2);
    assert_eq!(
        pluck(&v["services"], "name"),
        ["ORDER-SERVICE", "PAYMENT-SERVICE"]
    );
    let v = json_of(&get("/api/v1/services/order-service").2);
    assert_eq!(v["instances_by_status"], json!({"DOWN": 1, "UP": 1}));
    assert_eq!(v["instances"].as_array().map(Vec::len), Some(2));
    let v = json_of(&get(&format!("/api/v1/instances/{}", ib.label())).2);
    assert_eq!(
        (v["status"].as_str(), v["instance_id"].as_str()),
        (Some("DOWN"), Some(ib.id.as_str()))
    );
    let v = json_of(&get("/api/v1/registry").2);
    let counts = (v["instances"].as_u64(), v["services"].as_u64());
    assert_eq!(
        (v["loaded"].as_bool(), counts),
        (Some(true), (Some(3), Some(2)))
    );
    assert_eq!(v["sources"], json!([eureka.url()]));
    assert_error(&get("/api/v1/services/nope"), 404, "unknown service");
    assert_error(&get("/api/v1/instances/nope-8080"), 404, "unknown instance");
    assert_error(&get("/api/v2/whatever"), 404, "unknown endpoint");
    assert_error(&get("/nothing"), 404, "unknown page");

    // Bounded view parameters: a 400 naming the parameter and the bound, on the
    // console's listener and through the proxy for the console host.
    let terms = format!("/?q={}", vec!["up"; 17].join("+"));
    for (addr, host) in [(x.console, "localhost"), (x.proxy, CONSOLE_HOST)] {
        for (path, words) in [
            (
                terms.as_str(),
                "query parameter 'q' may have at most 16 terms (got 17)",
            ),
            (
                "/api/v1/instances?q=a+b+c+d+e+f+g+h+i+j+k+l+m+n+o+p+q",
                "at most 16 terms",
            ),
        ] {
            let resp = http_get(addr, host, path).expect("console request");
            let msg = assert_error(&resp, 400, path);
            assert!(msg.contains(words), "{host}{path}: {msg}");
        }
    }

    // Read-only; HEAD works; health is plain.
    let post = request(x.console, "POST", "localhost", "/api/v1/services", "");
    assert_error(&post, 405, "POST");
    assert_eq!(header(&post.1, "allow"), Some("GET, HEAD"));
    let head = request(x.console, "HEAD", "localhost", "/", "");
    assert_eq!((head.0, head.2.as_str()), (200, ""));
    assert_eq!(get("/healthz").0, 200);

    // The same console on the proxy listener, for its host (any case, with a port).
    for host in [
        CONSOLE_HOST.to_string(),
        format!("XIPGATE.127-0-0-1.SSLIP.IO:{proxy_port}"),
    ] {
        let (s, _, body) = http_get(x.proxy, &host, "/api/v1/services").unwrap();
        assert_eq!(s, 200, "{host}: {body}");
        assert_eq!(json_of(&body)["services"].as_array().map(Vec::len), Some(2));
    }
    let (s, _, page) = http_get(x.proxy, CONSOLE_HOST, "/").unwrap();
    assert!(
        s == 200
            && page.contains(&format!(
                "href=\"http://order-service.{DOMAIN}:{proxy_port}/\""
            ))
    );
    assert_eq!(
        a.hits() + b.hits(),
        0,
        "the console never reaches a backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_until_the_first_sync_then_stays_200() {
    let a = Backend::start("a").await;
    let eureka = StubEureka::start().await;
    eureka.serve_body(500, "starting up", "text/plain").await;
    let x = Xipgate::start_with(&eureka.url(), "", "", false);
    eventually(
        Duration::from_secs(10),
        "the failed sync is recorded",
        || {
            x.api("/api/v1/registry").1["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("500"))
        },
    );
    let (s, v) = x.api("/readyz");
    assert_eq!((s, v["ready"].as_bool()), (503, Some(false)), "{v}");
    // Open to anyone, so it says ready or not and a count: no registry URL, no error.
    let keys: Vec<&str> = v
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(keys, ["instances", "ready"], "{v}");
    assert!(page(&x).contains("never been loaded"));

    eureka.serve(&[Inst::up("svc", "svc-1", a.addr)]).await;
    x.wait_for("/readyz", 200, Duration::from_secs(10));
    eureka.serve_body(503, "down", "text/plain").await;
    eventually(Duration::from_secs(10), "failures are recorded", || {
        x.api("/api/v1/registry").1["consecutive_failures"]
            .as_u64()
            .unwrap_or(0)
            >= 2
    });
    let (s, v) = x.api("/readyz");
    assert_eq!(
        (s, v["ready"].as_bool(), v["instances"].as_u64()),
        (200, Some(true), Some(1)),
        "still ready on the last good table: {v}"
    );
    assert_eq!(v.as_object().map(|o| o.len()), Some(2), "{v}");
    let page = page(&x);
    assert!(
        page.contains("Registry is stale") && page.contains("Last error"),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_client_allowlist() {
    let a = Backend::start("a").await;
    let eureka = StubEureka::start().await;
    eureka.serve(&[Inst::up("svc", "svc-1", a.addr)]).await;
    let x = Xipgate::start(
        &eureka.url(),
        &format!("  console:\n    host: {CONSOLE_HOST}\n    token: s3cret-token-1\n"),
    );
    for (addr, host) in [(x.console, "localhost"), (x.proxy, CONSOLE_HOST)] {
        let denied = request(addr, "GET", host, "/api/v1/services", "");
        let msg = assert_error(&denied, 401, "no token");
        assert!(msg.contains("Bearer"), "{msg}");
        assert!(header(&denied.1, "www-authenticate").is_some_and(|v| v.starts_with("Bearer")));
        let wrong = request(
            addr,
            "GET",
            host,
            "/",
            "Authorization: Bearer wrong-token\r\n",
        );
        assert_error(&wrong, 401, "wrong token");
        assert_error(
            &request(addr, "POST", host, "/", ""),
            401,
            "POST without a token",
        );
        let ok = request(addr, "GET", host, "/api/v1/services", AUTH);
        assert_eq!(ok.0, 200, "{}", ok.2);
        let (s, _, page) = http_get(addr, host, "/?token=s3cret-token-1&q=svc").unwrap();
        assert_eq!(s, 200);
        assert!(
            page.contains(r#"name="token" value="s3cret-token-1""#),
            "the filter form keeps the token"
        );
        assert_eq!(
            http_get(addr, host, "/healthz").unwrap().0,
            200,
            "health needs no token"
        );
        assert_eq!(http_get(addr, host, "/readyz").unwrap().0, 200);
    }
    drop(x);

    let x = Xipgate::start(
        &eureka.url(),
        "  console:\n    allow_clients: [\"10.0.0.0/8\"]\n",
    );
    let msg = assert_error(
        &http_get(x.console, "localhost", "/api/v1/services").unwrap(),
        403,
        "client not allowed",
    );
    assert!(msg.contains("allow_clients"), "{msg}");
    assert_error(
        &http_get(x.console, "localhost", "/metrics").unwrap(),
        403,
        "metrics too",
    );
    assert_eq!(http_get(x.console, "localhost", "/healthz").unwrap().0, 200);
}

/// The value of the first sample of `family` whose labels include every one of `labels`.
fn sample(metrics: &str, family: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(family))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {family}{labels:?} in:\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_have_real_values_after_traffic() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let eureka = StubEureka::start().await;
    let dead = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let ia = Inst::up("order-service", "order-a", a.addr);
    let instances = [
        ia.clone(),
        Inst::up("order-service", "order-b", b.addr),
        Inst::up("order-service", "order-dead", dead),
        Inst::up("order-service", "order-down", b.addr).status("DOWN"),
    ];
    eureka.serve(&instances).await;
    let x = Xipgate::start(&eureka.url(), "");
    for _ in 0..9 {
        assert_eq!(
            x.get("order-service", "/").0,
            200,
            "retried past the dead instance"
        );
    }
    for _ in 0..3 {
        assert_eq!(x.get(&ia.label(), "/").0, 200);
    }
    assert_eq!(x.get("nothing-here", "/").0, 404);

    let (s, h, m) = http_get(x.console, "localhost", "/metrics").unwrap();
    assert_eq!(s, 200);
    assert!(header(&h, "content-type").is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
    let svc = r#"service="order-service""#;
    assert!(sample(&m, "xipgate_requests_total", &[svc, r#"class="2xx""#]) >= 12.0);
    assert!(sample(&m, "xipgate_upstream_latency_seconds_count", &[svc]) >= 12.0);
    assert!(
        sample(
            &m,
            "xipgate_upstream_latency_seconds_bucket",
            &[svc, r#"le="+Inf""#]
        ) >= 12.0
    );
    assert!(
        sample(&m, "xipgate_retries_total", &[svc]) >= 1.0,
        "round robin met the dead instance"
    );
    assert!(sample(&m, "xipgate_registry_syncs_total", &[r#"result="ok""#]) >= 1.0);
    assert_eq!(
        sample(&m, "xipgate_registry_syncs_total", &[r#"result="error""#]),
        0.0
    );
    let age = sample(&m, "xipgate_registry_last_success_age_seconds", &[]);
    assert!((0.0..10.0).contains(&age), "age {age}");
    assert_eq!(sample(&m, "xipgate_instances", &[r#"status="UP""#]), 3.0);
    assert_eq!(sample(&m, "xipgate_instances", &[r#"status="DOWN""#]), 1.0);
    assert_eq!(
        sample(&m, "xipgate_instances", &[r#"status="STARTING""#]),
        0.0
    );
    assert!(
        !m.contains("nothing-here"),
        "unknown hosts are not metric labels"
    );

    // The console's live traffic counts the same requests, per service and per instance,
    // whichever engine served them (`./dev test` runs this suite on both).
    let dead_label = Inst::up("order-service", "order-dead", dead).label();
    x.get(&dead_label, "/"); // 502: refused, no other try for an instance host
    let (_, v) = x.api("/api/v1/services/order-service");
    let t = &v["traffic"];
    assert_eq!(t["requests"], 13, "{t}");
    assert_eq!(t["errors"], 1, "{t}");
    assert!(t["p99_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{t}");
    let (_, v) = x.api(&format!("/api/v1/instances/{}", ia.label()));
    let mine = v["traffic"]["summary"]["requests"].as_u64().unwrap_or(0);
    assert!(
        mine >= 3 + 3,
        "3 by its own name, its turns of 9 by the service's: {mine}"
    );
    let (_, v) = x.api(&format!("/api/v1/instances/{dead_label}"));
    assert_eq!(v["traffic"]["summary"]["errors"], 1);
    assert_eq!(v["traffic"]["text"]["errors"], "100.0%");
    let (_, v) = x.api("/api/v1/services?sort=errors");
    assert_eq!(v["services"][0]["label"], "order-service");
}

/// Every counter sample of a scrape (`_total`, and a histogram's `_count`, `_sum` and
/// `_bucket`): series and value.
fn counter_samples(metrics: &str) -> Vec<(String, f64)> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let name = series.split('{').next()?;
            let counter = ["_total", "_count", "_sum", "_bucket"]
                .iter()
                .any(|s| name.ends_with(s));
            Some((series.to_string(), value.parse().ok()?)).filter(|_| counter)
        })
        .collect()
}

/// Two Prometheus servers scraping at once (an HA pair) never see a counter go down,
/// and a service that left the registry has no series at the next scrape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_scrapes_never_see_a_counter_go_down_and_gone_services_leave() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let eureka = StubEureka::start().await;
    let ia = Inst::up("order-service", "order-a", a.addr);
    let ib = Inst::up("pay-service", "pay-b", b.addr);
    eureka.serve(&[ia.clone(), ib.clone()]).await;
    let x = Xipgate::start(&eureka.url(), "");
    assert_eq!(x.get("order-service", "/").0, 200);
    assert_eq!(x.get("pay-service", "/").0, 200);
    x.get("pay-service", "/"); // a second request, for a retry-free count of 2

    // Scrapers at once, each checking that no counter it reads ever goes down.
    let console = x.console;
    let scrapers: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut last: std::collections::HashMap<String, f64> = Default::default();
                for _ in 0..250 {
                    let (_, _, m) = http_get(console, "localhost", "/metrics").expect("scrape");
                    for (series, v) in counter_samples(&m) {
                        let before = last.insert(series.clone(), v).unwrap_or(0.0);
                        assert!(v >= before, "{series} went from {before} to {v}");
                    }
                }
            })
        })
        .collect();
    for s in scrapers {
        s.join().expect("no counter went down");
    }
    let m = http_get(x.console, "localhost", "/metrics")
        .expect("scrape")
        .2;
    assert!(m.contains(r#"service="pay-service""#), "{m}");

    // pay-service leaves: the next scrape has none of its series.
    eureka.serve(std::slice::from_ref(&ia)).await;
    eventually(Duration::from_secs(10), "pay-service left", || {
        x.get("pay-service", "/").0 == 404
    });
    let m = http_get(x.console, "localhost", "/metrics")
        .expect("scrape")
        .2;
    assert!(!m.contains(r#"service="pay-service""#), "{m}");
    assert!(m.contains(r#"service="order-service""#), "{m}");
}
