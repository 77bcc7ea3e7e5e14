//! The built-in DNS as the binary runs it: xipgate with `xipgate.dns` on a loopback port,
//! queried with the real `dig`, for every host name the registry produces.

mod common;

use std::process::Command;

use common::*;

fn dig(port: u16, name: &str, extra: &[&str]) -> String {
    let out = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+short",
            "+time=2",
            "+tries=1",
        ])
        .args(extra)
        .args(["-q", name])
        .output()
        .expect("dig is installed (Debian package bind9-dnsutils; .ci/run installs it)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_registry_host_resolves_to_the_edge() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let eureka = StubEureka::start().await;
    let instances = [
        Inst::up("order-service", "order-service-7d9f8-x2k4q", a.addr),
        Inst::up("order-service", "order-service-7d9f8-zzzzz", b.addr).status("DOWN"),
        Inst::up("payment", "10.0.0.7", a.addr),
    ];
    eureka.serve(&instances).await;
    let dns_port = free_port();
    let x = Xipgate::start(
        &eureka.url(),
        &format!(
            "  edge_ip: 127.0.0.1\n  dns:\n    listen: [\"127.0.0.1:{dns_port}\"]\n    ttl: 30\n"
        ),
    );
    let (_, services) = x.api("/api/v1/services");
    let mut hosts = Vec::new();
    for s in services["services"].as_array().unwrap() {
        hosts.push(s["url"].as_str().unwrap().to_string());
        let (_, detail) = x.api(&format!(
            "/api/v1/services/{}",
            s["label"].as_str().unwrap()
        ));
        for i in detail["instances"].as_array().unwrap() {
            hosts.push(i["url"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(hosts.len(), 2 + instances.len(), "{hosts:?}");
    for url in hosts {
        let host = url
            .trim_start_matches("http://")
            .split([':', '/'])
            .next()
            .unwrap()
            .to_string();
        assert_eq!(dig(dns_port, &host, &[]), "127.0.0.1", "{host} over UDP");
        assert_eq!(
            dig(dns_port, &host, &["+tcp"]),
            "127.0.0.1",
            "{host} over TCP"
        );
    }
    // The zone defaulted to sslip.io (the domain's parent): its apex answers SOA, and
    // names outside it are refused.
    assert!(dig(dns_port, "sslip.io", &["SOA"]).starts_with("ns.sslip.io. hostmaster.sslip.io."));
    let refused = Command::new("dig")
        .args(["@127.0.0.1", "-p", &dns_port.to_string(), "example.com"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&refused.stdout).contains("status: REFUSED"));
}
