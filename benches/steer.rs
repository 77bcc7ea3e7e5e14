//! The steering decision per request (`balance::Plan::decide` through
//! `routes::Service::decide`), for a service of 8 instances: the plain round robin beside
//! weighted, sticky (a cookie header naming an instance), pinned and canary-share hosts.
//!
//!     cargo bench --bench steer
//!
//! Target: no steered row more than a few nanoseconds over the plain one, which is one
//! atomic increment and one reference count, as before steering existed. (The whole
//! request's cost beside nginx is bench/run.sh's.)

use std::collections::HashMap;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};

use xipgate::balance::{Balance, Canary, Keys, Policy, DEFAULT_STICKY_COOKIE};
use xipgate::registry::{Instance, Status};
use xipgate::routes::{Allowlist, Route, RouteTable};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn instance(i: usize, weight: &str, canary: bool) -> Instance {
    let mut metadata = std::collections::BTreeMap::new();
    metadata.insert("weight".to_string(), weight.to_string());
    if canary {
        metadata.insert("version".to_string(), "canary".to_string());
    }
    Instance {
        source: Arc::from("eureka"),
        app: "SVC".into(),
        instance_id: format!("pod-{i}:svc:8080"),
        host_name: format!("pod-{i}"),
        ip_addr: format!("10.0.0.{}", i + 1),
        port: Some(8080),
        secure_port: None,
        status: Status::Up,
        overridden_status: None,
        metadata: metadata.into(),
        home_page_url: None,
        status_page_url: None,
        health_check_url: None,
        last_renewal_ms: Some(1).into(),
        last_dirty_ms: None,
    }
}

/// The service `svc` of 8 instances under `policy`.
fn service(policy: Policy, weights: &[&str; 8], canary: bool) -> Arc<xipgate::routes::Service> {
    let balance = Balance::new(
        Some("x-xipgate-instance".into()),
        Some("x-sc-lb-hint".into()),
        None,
        policy,
        HashMap::new(),
    );
    let table = RouteTable::with_balance(
        Allowlist::new(vec!["10.0.0.0/8".parse().expect("cidr")]),
        Arc::new(balance),
    );
    table.apply(
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| instance(i, w, canary && i == 7))
            .collect(),
    );
    match table.lookup("svc") {
        Some(Route::Service(s)) => s,
        _ => panic!("the service routes"),
    }
}

fn bench(c: &mut Criterion) {
    let equal = ["1"; 8];
    let plain = service(Policy::default(), &equal, false);
    let weighted = service(
        Policy::default(),
        &["1", "2", "3", "0.5", "1", "2", "3", "0.5"],
        false,
    );
    let sticky = service(
        Policy {
            sticky_cookie: Some(DEFAULT_STICKY_COOKIE.into()),
            ..Policy::default()
        },
        &equal,
        false,
    );
    let canary = service(
        Policy {
            canary: Some(Canary {
                metadata: vec![("version".into(), "canary".into())],
                share: 500,
                values: vec!["true".into()],
            }),
            ..Policy::default()
        },
        &equal,
        true,
    );
    let cookie: &[u8] = b"JSESSIONID=0123456789abcdef; xipgate-instance=pod-3-8080";
    let cookies = [cookie];
    let mut g = c.benchmark_group("steer");
    g.bench_function("plain", |b| {
        b.iter(|| plain.decide(&Keys::default()).map(|(t, _)| t))
    });
    g.bench_function("weighted", |b| {
        b.iter(|| weighted.decide(&Keys::default()).map(|(t, _)| t))
    });
    g.bench_function("sticky", |b| {
        let keys = Keys {
            cookies: &cookies,
            ..Keys::default()
        };
        b.iter(|| sticky.decide(&keys).map(|(t, _)| t))
    });
    g.bench_function("pinned", |b| {
        let keys = Keys {
            pin: Some(b"pod-5-8080"),
            ..Keys::default()
        };
        b.iter(|| plain.decide(&keys).map(|(t, _)| t))
    });
    g.bench_function("canary-share", |b| {
        b.iter(|| canary.decide(&Keys::default()).map(|(t, _)| t))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
