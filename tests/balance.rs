//! Steering through the real binary on both engines, with backends on loopback: weighted
//! shares over 1,050 requests, weight 0, pins, sticky sessions, passive health ejecting an
//! instance that answers 503 or refuses connections and letting it back, and Nacos's own
//! weights from a real Nacos server (rnacos).

mod common;
#[path = "common/faulty.rs"]
mod faulty;
#[path = "common/rnacos.rs"]
mod rnacos;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use faulty::{Fault, FaultyBackend};
use serde_json::json;

const ENGINES: [(&str, bool); 2] = [("fast path", true), ("pingora", false)];

/// A GET through `x` to `label` with `extra` header lines.
fn get(x: &Xipgate, label: &str, extra: &str) -> Response {
    let text = raw(
        x.proxy,
        format!("GET / HTTP/1.1\r\nHost: {label}.{DOMAIN}\r\n{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .expect("request through xipgate");
    parse_response(&text)
}

fn served_by(r: &Response) -> String {
    header(&r.1, "x-served-by").unwrap_or("-").to_string()
}

/// A metric's value from `/metrics` (0 when the series is absent).
fn metric(x: &Xipgate, series: &str) -> f64 {
    let body = http_get(x.console, "localhost", "/metrics")
        .expect("metrics")
        .2;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn weights_pins_and_sticky_sessions_on_both_engines() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let names = [("a", "1"), ("b", "2"), ("h", "0.5"), ("z", "0")];
    let backends: Vec<Backend> = names
        .iter()
        .map(|(n, _)| rt.block_on(Backend::start(n)))
        .collect();
    let insts: Vec<Inst> = names
        .iter()
        .zip(&backends)
        .map(|((n, w), b)| {
            let mut i = Inst::up("w-svc", n, b.addr);
            i.metadata = json!({ "weight": w });
            i
        })
        .collect();
    let eureka = rt.block_on(StubEureka::start());
    rt.block_on(eureka.serve(&insts));
    let balance = "  balance:\n    services:\n      w-svc: {sticky: true}\n";
    for (engine, fast) in ENGINES {
        let x = Xipgate::start(
            &eureka.url(),
            &format!("  downstream:\n    fast_path: {fast}\n{balance}"),
        );
        // 150 rounds of nginx's smooth order over weights 1 : 2 : 0.5 (2 : 4 : 1).
        let before: Vec<usize> = backends.iter().map(Backend::hits).collect();
        const N: usize = 1050;
        for i in 0..N {
            let r = get(&x, "w-svc", "");
            assert_eq!(r.0, 200, "{engine}: request {i}: {r:?}");
        }
        let got: Vec<usize> = backends
            .iter()
            .zip(&before)
            .map(|(b, n)| b.hits() - n)
            .collect();
        // The stated tolerance: each share within 1% of the requests of its weight's.
        for ((name, _), (&n, expected)) in names.iter().zip(got.iter().zip([300, 600, 150, 0])) {
            assert!(
                n.abs_diff(expected) <= N / 100,
                "{engine}: {name} got {n} of {N}, {expected} expected ({got:?})"
            );
        }
        assert_eq!(got[3], 0, "{engine}: weight 0 is out of the rotation");
        // ... and its instance host still answers.
        let r = x.get(&insts[3].label(), "/");
        assert_eq!((r.0, served_by(&r)), (200, insts[3].id.clone()), "{engine}");

        // A pin reaches the instance named, every time; one out of rotation is a 503.
        for _ in 0..10 {
            let r = get(
                &x,
                "w-svc",
                &format!("X-Xipgate-Instance: {}\r\n", insts[2].label()),
            );
            assert_eq!((r.0, served_by(&r)), (200, insts[2].id.clone()), "{engine}");
        }
        let r = get(
            &x,
            "w-svc",
            &format!("X-Xipgate-Instance: {}\r\n", insts[3].id),
        );
        assert_eq!(r.0, 503, "{engine}: {r:?}");
        assert!(r.2.contains("weight 0"), "{engine}: {}", r.2);

        // Sticky: the first answer sets the cookie, which keeps the session on its
        // instance; a forged one naming the weight-0 instance is replaced.
        let first = get(&x, "w-svc", "");
        let set = header(&first.1, "set-cookie").expect("a sticky host sets its cookie");
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Lax") && !set.contains("Domain"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap_or_default().to_string();
        for _ in 0..20 {
            let r = get(&x, "w-svc", &format!("Cookie: {cookie}\r\n"));
            assert_eq!(served_by(&r), served_by(&first), "{engine}");
            assert_eq!(header(&r.1, "set-cookie"), None, "{engine}");
        }
        let r = get(
            &x,
            "w-svc",
            &format!("Cookie: xipgate-instance={}\r\n", insts[3].label()),
        );
        assert_ne!(served_by(&r), insts[3].id, "{engine}");
        assert!(
            header(&r.1, "set-cookie").is_some(),
            "{engine}: the forged cookie is replaced"
        );
    }
}

/// A backend answering 503 while `failing`, 200 otherwise, keeping connections alive.
struct Flaky {
    addr: SocketAddr,
    failing: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
}

impl Flaky {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let failing = Arc::new(AtomicBool::new(true));
        let hits = Arc::new(AtomicUsize::new(0));
        let (f, h) = (failing.clone(), hits.clone());
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let (f, h) = (f.clone(), h.clone());
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match conn.read(&mut chunk) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
                        buf.drain(..end);
                        h.fetch_add(1, Ordering::SeqCst);
                        let answer: &[u8] = if f.load(Ordering::SeqCst) {
                            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"
                        } else {
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                        };
                        if conn.write_all(answer).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Flaky {
            addr,
            failing,
            hits,
        }
    }
}

#[test]
fn passive_health_ejects_failing_instances_and_lets_them_back() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let good = rt.block_on(Backend::start("good"));
    let refusing = rt.block_on(FaultyBackend::start("refusing", Fault::Refuse));
    let flaky = Flaky::start();
    let insts = vec![
        Inst::up("p-svc", "good", good.addr),
        Inst::up("p-svc", "refusing", refusing.addr),
        Inst::up("p-svc", "flaky", flaky.addr),
    ];
    let eureka = rt.block_on(StubEureka::start());
    rt.block_on(eureka.serve(&insts));
    let balance = "  balance:\n    passive:\n      consecutive_failures: 2\n      count_5xx: true\n      ejection: 1s\n      max_ejection: 3s\n      max_ejected_percent: 67\n";
    let ejections = "xipgate_balance_ejections_total{service=\"p-svc\"}";
    let ejected = "xipgate_balance_ejected_instances{service=\"p-svc\"}";
    for (engine, fast) in ENGINES {
        flaky.failing.store(true, Ordering::SeqCst);
        let x = Xipgate::start(
            &eureka.url(),
            &format!("  downstream:\n    fast_path: {fast}\n{balance}"),
        );
        // Until both failing instances are out: the refused one's tries are retried
        // elsewhere, the flaky one's 503s reach the client.
        eventually(Duration::from_secs(10), "two ejections", || {
            get(&x, "p-svc", "");
            metric(&x, ejections) >= 2.0
        });
        assert_eq!(metric(&x, ejected), 2.0, "{engine}");
        let (_, v) = x.api("/api/v1/services/p-svc");
        let out: Vec<&str> = v["balance"]["ejected"]
            .as_array()
            .unwrap_or_else(|| panic!("{engine}: no ejected list: {v}"))
            .iter()
            .filter_map(|e| e["instance_id"].as_str())
            .collect();
        assert_eq!(out.len(), 2, "{engine}: {v}");
        assert!(
            !out.contains(&insts[0].id.as_str()),
            "{engine}: never the last one: {out:?}"
        );
        let (_, i) = x.api(&format!("/api/v1/instances/{}", insts[2].label()));
        assert!(i["ejected_until"].is_string(), "{engine}: {i}");
        // Meanwhile the service host reaches only the good instance...
        let flaky_hits = flaky.hits.load(Ordering::SeqCst);
        for _ in 0..10 {
            let r = get(&x, "p-svc", "");
            if metric(&x, ejected) < 2.0 {
                break; // an ejection ran out while looping (1 s): the rest is checked below
            }
            assert_eq!((r.0, served_by(&r)), (200, insts[0].id.clone()), "{engine}");
        }
        // ... while the flaky one's instance host still reaches it.
        let r = x.get(&insts[2].label(), "/");
        assert_eq!(r.0, 503, "{engine}");
        assert!(flaky.hits.load(Ordering::SeqCst) > flaky_hits, "{engine}");
        // Healthy again: once its ejection ends it gets service-host requests again.
        flaky.failing.store(false, Ordering::SeqCst);
        eventually(Duration::from_secs(10), "the flaky instance back", || {
            served_by(&get(&x, "p-svc", "")) == insts[2].id
        });
        // The refusing one comes back too, fails again and is out again (for longer).
        eventually(
            Duration::from_secs(10),
            "a second ejection of the refusing one",
            || {
                get(&x, "p-svc", "");
                metric(&x, ejections) >= 3.0
            },
        );
    }
}

/// Nacos weights as a real Nacos server (rnacos) keeps them: floats, 0 out of rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacos_weights_from_a_real_server() {
    let nacos = rnacos::Rnacos::start(None).await;
    let mut backends = Vec::new();
    for (pod, weight) in [("half", "0.5"), ("one", "1.0"), ("zero", "0.0")] {
        let b = Backend::start(pod).await;
        let port = b.addr.port().to_string();
        let meta = format!(r#"{{"pod-name":"{pod}"}}"#);
        nacos
            .instance(
                reqwest::Method::POST,
                &[
                    ("serviceName", "weighed"),
                    ("ip", "127.0.0.1"),
                    ("port", port.as_str()),
                    ("ephemeral", "false"),
                    ("weight", weight),
                    ("metadata", meta.as_str()),
                ],
            )
            .await;
        backends.push((pod, b));
    }
    let url = nacos.url();
    let x = tokio::task::spawn_blocking(move || {
        let x = Xipgate::start(
            &url,
            &format!("  registry:\n    eureka:\n      enabled: false\n    nacos:\n      - urls: [\"{url}\"]\n        interval: 300ms\n"),
        );
        eventually(Duration::from_secs(20), "three Nacos instances", || {
            x.api("/api/v1/services/weighed").1["instances_total"] == 3
        });
        x
    })
    .await
    .expect("xipgate");
    let label = |pod: &str| {
        format!(
            "{pod}-{}",
            backends
                .iter()
                .find(|(p, _)| *p == pod)
                .map_or(0, |(_, b)| b.addr.port())
        )
    };
    let weights: Vec<(f64, bool)> = ["half", "one", "zero"]
        .iter()
        .map(|p| {
            let v = x.api(&format!("/api/v1/instances/{}", label(p))).1;
            (
                v["weight"].as_f64().unwrap_or(-1.0),
                v["weight_problem"].is_null(),
            )
        })
        .collect();
    assert_eq!(weights, [(0.5, true), (1.0, true), (0.0, true)]);
    let before: Vec<usize> = backends.iter().map(|(_, b)| b.hits()).collect();
    const N: usize = 600;
    let x = tokio::task::spawn_blocking(move || {
        for _ in 0..N {
            assert_eq!(x.get("weighed", "/").0, 200);
        }
        x
    })
    .await
    .expect("requests");
    let got: Vec<usize> = backends
        .iter()
        .zip(&before)
        .map(|((_, b), n)| b.hits() - n)
        .collect();
    for (n, expected) in got.iter().zip([200usize, 400, 0]) {
        assert!(
            n.abs_diff(expected) <= N / 100,
            "{got:?}: 1 : 2 : 0 expected"
        );
    }
    let zero = label("zero");
    let r = tokio::task::spawn_blocking(move || x.get(&zero, "/"))
        .await
        .expect("get");
    assert_eq!(r.0, 200, "weight 0: its instance host still answers");
}
