//! Steering with real parts: Spring Cloud's Eureka server, three real Spring Boot clients
//! (`it/spring-client`, one registered with `version: canary` metadata, one with weight
//! 3), and headless Chromium keeping its session on one pod through the sticky cookie.
//! Weighted and canary shares over 1,000 requests, a pin, a pod whose health turns DOWN in
//! Eureka leaving the rotation, and one that answers 503 while UP ejected by passive
//! health and let back.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use browser::Browser;
use common::real::*;
use common::*;

const SVC: &str = "steer-svc";

/// `GET /whoami` through the service host with `extra` header lines: status and body.
fn whoami(x: &Xipgate, extra: &str) -> (u16, String) {
    let text = raw(
        x.proxy,
        format!("GET /whoami HTTP/1.1\r\nHost: {SVC}.{DOMAIN}\r\n{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .expect("request through xipgate");
    let (status, _, body) = parse_response(&text);
    (status, body.trim().to_string())
}

fn metric(x: &Xipgate, series: &str) -> f64 {
    let body = http_get(x.console, "localhost", "/metrics")
        .expect("metrics")
        .2;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn real_spring_clients_are_steered() {
    let eureka = EurekaServer::start(&[], 200);
    // Each with an instanceId of its own: Spring's default one holds `server.port`,
    // which is 0 (any free port) for all three.
    let pod = |name: &str, more: &[&str]| {
        let id = format!("--eureka.instance.instance-id={name}-7d9f8:{SVC}:8080");
        let args: Vec<&str> = std::iter::once(id.as_str())
            .chain(more.iter().copied())
            .collect();
        SpringClient::start_with(&eureka, SVC, &args)
    };
    let stable = pod("stable", &[]);
    let heavy = pod("heavy", &["--eureka.instance.metadata-map.weight=3"]);
    let canary = pod("canary", &["--eureka.instance.metadata-map.version=canary"]);
    let balance = format!(
        "  registry:\n    eureka:\n      interval: 1s\n  balance:\n    services:\n      {SVC}:\n        sticky: true\n        canary:\n          metadata: {{version: canary}}\n          share: 10\n        passive:\n          consecutive_failures: 3\n          count_5xx: true\n          ejection: 2s\n"
    );
    let x = Xipgate::start(&eureka.url(), &balance);
    let routed = || x.api(&format!("/api/v1/services/{SVC}")).1["instances_by_status"]["UP"] == 3;
    if std::panic::catch_unwind(|| {
        eventually(Duration::from_secs(60), "three UP instances", routed)
    })
    .is_err()
    {
        panic!(
            "three UP instances not routed within 60 s: {}\nEureka has: {:?}",
            x.api(&format!("/api/v1/services/{SVC}")).1,
            eureka.instances(&SVC.to_uppercase())
        );
    }
    let id = |c: &SpringClient| -> String {
        let (s, body) = request(c.addr(), "GET", "/whoami", None).expect("whoami");
        assert_eq!(s, 200);
        body.trim().to_string()
    };
    let (stable_id, heavy_id, canary_id) = (id(&stable), id(&heavy), id(&canary));

    // 1,000 requests: 10% to the canary, the rest 1 : 3 between the others (within 1%).
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..1000 {
        let (s, who) = whoami(&x, "");
        assert_eq!(s, 200, "{who}");
        *counts.entry(who).or_default() += 1;
    }
    for (who, expected) in [(&stable_id, 225), (&heavy_id, 675), (&canary_id, 100)] {
        let n = counts.get(who).copied().unwrap_or(0);
        assert!(
            n.abs_diff(expected) <= 10,
            "{who}: {n} of 1000, {expected} expected: {counts:?}"
        );
    }
    let (_, s) = x.api(&format!("/api/v1/services/{SVC}"));
    assert_eq!(s["balance"]["canary"]["share_percent"], 10.0, "{s}");
    assert_eq!(s["balance"]["weighted"], true, "{s}");

    // A pin reaches the pod named (by its instanceId, as Spring registered it).
    let instance_id = canary_id.trim_start_matches("spring ").to_string();
    for _ in 0..5 {
        assert_eq!(
            whoami(&x, &format!("X-Xipgate-Instance: {instance_id}\r\n")),
            (200, canary_id.clone())
        );
    }
    let (s, body) = whoami(&x, "X-Xipgate-Instance: no-such-pod\r\n");
    assert!(s == 503 && body.contains("no-such-pod"), "{s} {body}");

    // Chromium keeps its session on one pod: the first answer's cookie brings every
    // later page back to it.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let pods: Vec<String> = rt.block_on(async {
        let b = Browser::start(&[&format!("--host-resolver-rules=MAP *.{DOMAIN} 127.0.0.1")]).await;
        let url = format!("http://{SVC}.{DOMAIN}:{}/whoami", x.proxy.port());
        let mut pods = Vec::new();
        for _ in 0..8 {
            b.goto(&url).await;
            pods.push(b.body_text().await.trim().to_string());
        }
        pods
    });
    assert!(
        pods.iter().all(|p| *p == pods[0]) && pods[0].starts_with("spring "),
        "{pods:?}"
    );

    // A pod whose health turns DOWN in Eureka leaves at the next sync.
    heavy.set_healthy(false);
    eventually(
        Duration::from_secs(30),
        "the DOWN pod out of the rotation",
        || (0..8).all(|_| whoami(&x, "").1 != heavy_id),
    );
    heavy.set_healthy(true);

    // One that answers 503 while UP is ejected by passive health, then comes back.
    stable.set_failing(true);
    let series = format!("xipgate_balance_ejections_total{{service=\"{SVC}\"}}");
    eventually(Duration::from_secs(30), "the failing pod ejected", || {
        whoami(&x, "");
        metric(&x, &series) >= 1.0
    });
    let (_, s) = x.api(&format!("/api/v1/services/{SVC}"));
    assert_eq!(
        s["balance"]["ejected"].as_array().map(Vec::len),
        Some(1),
        "{s}"
    );
    stable.set_failing(false);
    eventually(
        Duration::from_secs(30),
        "the pod back in the rotation",
        || (0..8).any(|_| whoami(&x, "") == (200, stable_id.clone())),
    );
}
