//! One registry refresh at 10,000 instances, fetch excluded: parsing the `/apps` body and
//! applying it to the routing table, both into an empty table (the first sync) and again
//! over an unchanged registry (the steady state every interval without delta sync).
//!
//!     cargo bench --bench refresh
//!
//! Target: each at most 50 ms. The body has the shape bench/gen_registry.py writes (and
//! modern Jackson-based Eureka servers send): 1,000 applications of 10 instances,
//! Spring-style instanceIds, about 10 MB of JSON.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::{json, Value};
use xipgate::registry::parse::parse_apps;
use xipgate::routes::{Allowlist, RouteTable};

// The allocator the xipgate binary uses (src/main.rs), so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const INSTANCES: usize = 10_000;
const PER_APP: usize = 10;
const WORDS: [&str; 20] = [
    "order",
    "payment",
    "user",
    "inventory",
    "shipping",
    "catalog",
    "pricing",
    "search",
    "review",
    "notification",
    "billing",
    "account",
    "auth",
    "cart",
    "checkout",
    "invoice",
    "report",
    "audit",
    "ledger",
    "profile",
];
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A small deterministic generator (xorshift) for the pod-name suffixes.
struct Rng(u64);

impl Rng {
    fn suffix(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                ALPHABET[(self.0 % ALPHABET.len() as u64) as usize] as char
            })
            .collect()
    }
}

fn instance(app: &str, pod: &str, port: u16) -> Value {
    json!({
        "instanceId": format!("{pod}:{app}:8080"),
        "hostName": pod,
        "app": app.to_uppercase(),
        "ipAddr": "10.1.2.3",
        "status": "UP",
        "overriddenStatus": "UNKNOWN",
        "port": {"$": port, "@enabled": "true"},
        "securePort": {"$": 443, "@enabled": "false"},
        "countryId": 1,
        "dataCenterInfo": {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"},
        "leaseInfo": {"renewalIntervalInSecs": 30, "durationInSecs": 90, "registrationTimestamp": 1700000000000u64,
                      "lastRenewalTimestamp": 1700000030000u64, "evictionTimestamp": 0, "serviceUpTimestamp": 1700000000100u64},
        "metadata": {"management.port": "8080", "zone": "zone-a"},
        "homePageUrl": format!("http://10.1.2.3:{port}/"),
        "statusPageUrl": format!("http://10.1.2.3:{port}/actuator/info"),
        "healthCheckUrl": format!("http://10.1.2.3:{port}/actuator/health"),
        "vipAddress": app,
        "secureVipAddress": app,
        "isCoordinatingDiscoveryServer": "false",
        "lastUpdatedTimestamp": "1700000000100",
        "lastDirtyTimestamp": "1700000000000",
        "actionType": "ADDED"
    })
}

fn apps_body() -> Vec<u8> {
    let apps: Vec<String> = (0..INSTANCES / PER_APP)
        .map(|i| {
            let word = WORDS[i % WORDS.len()];
            if i < WORDS.len() {
                format!("{word}-service")
            } else {
                format!("{word}-service-{}", i / WORDS.len())
            }
        })
        .collect();
    let mut rng = Rng(0x2026_1124);
    let mut per_app: Vec<Vec<Value>> = vec![Vec::new(); apps.len()];
    for i in 0..INSTANCES {
        let a = i % apps.len();
        let pod = format!("{}-{}-{}", apps[a], rng.suffix(9), rng.suffix(5));
        per_app[a].push(instance(&apps[a], &pod, 8080));
    }
    let application: Vec<Value> = apps
        .iter()
        .zip(per_app)
        .map(|(name, inst)| json!({"name": name.to_uppercase(), "instance": inst}))
        .collect();
    json!({"applications": {
        "versions__delta": "1",
        "apps__hashcode": format!("UP_{INSTANCES}_"),
        "application": application,
    }})
    .to_string()
    .into_bytes()
}

fn table() -> RouteTable {
    RouteTable::new(Allowlist::new(vec!["10.0.0.0/8"
        .parse()
        .expect("a valid CIDR")]))
}

fn refresh(c: &mut Criterion) {
    let body = apps_body();
    let snapshot = parse_apps(&body).expect("the generated body parses");
    assert_eq!(snapshot.instances.len(), INSTANCES);
    assert!(snapshot.skipped.is_empty());
    eprintln!(
        "refresh bench: {INSTANCES} instances, {} bytes of JSON",
        body.len()
    );

    let mut group = c.benchmark_group("refresh_10k");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));

    group.bench_function("parse", |b| b.iter(|| parse_apps(&body).expect("parses")));

    group.bench_function("parse_apply_first", |b| {
        b.iter_batched(
            table,
            |t| {
                let report = t.apply(parse_apps(&body).expect("parses").instances);
                assert_eq!(report.added, INSTANCES);
                t // dropped outside the measurement
            },
            BatchSize::PerIteration,
        )
    });

    let steady = table();
    steady.apply(snapshot.instances.clone());
    group.bench_function("parse_apply_unchanged", |b| {
        b.iter(|| {
            let report = steady.apply(parse_apps(&body).expect("parses").instances);
            assert!(report.is_noop());
        })
    });
    group.finish();
}

criterion_group!(benches, refresh);
criterion_main!(benches);
