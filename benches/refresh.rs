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

use xipgate::registry::parse::parse_apps;
use xipgate::routes::{Allowlist, RouteTable};
use xipgate::standin::{self, Registration};

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
    let mut regs: Vec<Registration> = Vec::with_capacity(INSTANCES);
    for i in 0..INSTANCES {
        let a = i % apps.len();
        let pod = format!("{}-{}-{}", apps[a], rng.suffix(9), rng.suffix(5));
        let mut r = Registration::spring(&apps[a], &pod, "10.1.2.3", 8080);
        r.metadata.push(("zone".into(), "zone-a".into()));
        regs.push(r);
    }
    // Grouped by application, as the server groups them.
    regs.sort_by_key(|r| apps.iter().position(|a| a.eq_ignore_ascii_case(&r.app)));
    standin::full(&regs).into_bytes()
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
