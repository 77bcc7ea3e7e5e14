//! Backend faults through the real binary: instances that refuse connections, reset
//! mid-response, answer too slowly, or close kept-alive connections.
//!
//! For each fault: the service host hides it from idempotent requests (retries go to
//! another instance), the faulty instance's own host answers 502/504 naming it, and no
//! request ever makes more than `upstream.max_tries` attempts. Attempts are counted twice:
//! at the backends (request heads they read) and in xipgate's access log (`tries=`).
//!
//! Retry policy asserted here:
//! - a failed connect is retried on another instance for every method (nothing was sent);
//! - a request that reached a backend is retried only when idempotent and only while no
//!   byte of the response went to the client;
//! - an instance host retries only a stale pooled connection, on a fresh one.

mod common;
#[path = "common/faulty.rs"]
mod faulty;

use std::time::Duration;

use common::*;
use faulty::{Fault, FaultyBackend};

/// `read_timeout` short enough that the slow backend (3 s) always exceeds it.
const FAST_TIMEOUTS: &str = "  upstream:\n    read_timeout: 500ms\n";
const SLOW: Duration = Duration::from_secs(3);
const MAX_TRIES: u32 = 3;

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

/// One request with `Connection: close`; PUT and POST carry a small body.
fn call(x: &Xipgate, method: &str, label: &str) -> Reply {
    let body = if matches!(method, "PUT" | "POST") {
        "{\"payload\":42}"
    } else {
        ""
    };
    let req = format!(
        "{method} /fault HTTP/1.1\r\nHost: {label}.{DOMAIN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let text = raw(x.proxy, req.as_bytes()).expect("request through xipgate");
    let (status, headers, body) = parse_response(&text);
    Reply {
        status,
        headers,
        body,
    }
}

/// The `tries` of every access record for `label`, in order, once at least `want`
/// records are there (the file writer is asynchronous).
fn tries_in_log(x: &Xipgate, label: &str, want: usize) -> Vec<u32> {
    let host = format!("{label}.{DOMAIN}");
    let read = || -> Vec<u32> {
        x.access()
            .iter()
            .filter(|r| r["host"] == host.as_str())
            .map(|r| {
                r["tries"]
                    .as_u64()
                    .and_then(|t| u32::try_from(t).ok())
                    .expect("tries is a number")
            })
            .collect()
    };
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        got = read();
        if got.len() >= want {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "{label}: {} access records, wanted {want}\n{}",
        got.len(),
        x.log()
    );
}

fn error_status(fault: Fault) -> u16 {
    match fault {
        Fault::Slow(_) => 504,
        _ => 502,
    }
}

/// The words of xipgate's 502/504 body for a fault.
fn what_went_wrong(fault: Fault) -> &'static str {
    match fault {
        Fault::Refuse => "refused the connection",
        Fault::Slow(_) => "did not answer in time",
        // An RST while the head is read: a read error (or, rarely, an orderly close).
        _ => "the connection",
    }
}

/// (a), (b) and (c) for one fault.
async fn fault_case(fault: Fault) {
    let healthy = FaultyBackend::start("healthy", Fault::Healthy).await;
    let bad = FaultyBackend::start("bad", fault).await;
    let lone = FaultyBackend::start("lone", fault).await;
    let eureka = StubEureka::start().await;
    let good_i = Inst::up("mixed", "good-1", healthy.addr);
    let bad_i = Inst::up("mixed", "bad-1", bad.addr);
    let lone_i = Inst::up("broken", "lone-1", lone.addr);
    eureka
        .serve(&[good_i.clone(), bad_i.clone(), lone_i.clone()])
        .await;
    let x = Xipgate::start(&eureka.url(), FAST_TIMEOUTS);

    // (a) The service host: no client-visible failure for idempotent methods.
    let methods = ["GET", "HEAD", "PUT", "DELETE"];
    for i in 0..50 {
        let m = methods[i % methods.len()];
        let r = call(&x, m, "mixed");
        assert_eq!(
            r.status, 200,
            "{fault:?}: {m} #{i} through the service host: {}",
            r.body
        );
        if m != "HEAD" {
            assert!(
                r.body.contains(&format!("\"method\":\"{m}\"")),
                "{fault:?}: {m} #{i}: {}",
                r.body
            );
        }
    }
    let tries = tries_in_log(&x, "mixed", 50);
    assert!(
        tries.iter().all(|&t| (1..=MAX_TRIES).contains(&t)),
        "{fault:?}: tries per request {tries:?}"
    );
    let attempts: u32 = tries.iter().sum();
    assert!(
        attempts > 50,
        "{fault:?}: the faulty instance was never tried ({tries:?})"
    );
    if fault != Fault::CloseKeptAlive {
        // Round robin over two instances: the faulty one gets about half of the first
        // tries, not all of them (a retry must not advance the round robin).
        let retried = tries.iter().filter(|&&t| t > 1).count();
        assert!(
            (20..=30).contains(&retried),
            "{fault:?}: {retried} of 50 first tries went to the faulty instance: {tries:?}"
        );
    }
    match fault {
        Fault::Refuse => {
            assert_eq!(
                healthy.requests(),
                50,
                "{fault:?}: the healthy instance answers each request once"
            );
        }
        Fault::CloseKeptAlive => {
            // It answers on fresh connections and fails on reused ones.
            assert!(
                bad.answered() > 0 && bad.requests() > bad.answered(),
                "{fault:?}: fault not exercised"
            );
            assert_eq!(healthy.answered() + bad.answered(), 50);
            assert_eq!(
                (healthy.requests() + bad.requests()) as u32,
                attempts,
                "{fault:?}: every attempt reached a backend"
            );
        }
        _ => {
            assert_eq!(
                healthy.requests(),
                50,
                "{fault:?}: the healthy instance answers each request once"
            );
            assert_eq!(
                (healthy.requests() + bad.requests()) as u32,
                attempts,
                "{fault:?}: every attempt reached a backend"
            );
        }
    }

    // (b) The faulty instance's own host: one attempt, an answer naming it.
    let label = bad_i.label();
    let before = bad.requests();
    for _ in 0..3 {
        let r = call(&x, "GET", &label);
        if fault == Fault::CloseKeptAlive {
            // A stale pooled connection is retried on a fresh one, transparently.
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(header(&r.headers, "x-backend"), Some("bad"));
            continue;
        }
        assert_eq!(r.status, error_status(fault), "{fault:?}: {}", r.body);
        assert!(r.body.starts_with("xipgate: "), "{}", r.body);
        assert!(
            r.body.contains(&bad_i.id),
            "{fault:?}: the body names the instance: {}",
            r.body
        );
        assert!(
            r.body.contains(&bad.addr.to_string()),
            "{fault:?}: the body names the address: {}",
            r.body
        );
        assert!(
            r.body.contains(what_went_wrong(fault)),
            "{fault:?}: the body says what went wrong: {}",
            r.body
        );
        assert_eq!(header(&r.headers, "x-served-by"), Some(bad_i.id.as_str()));
    }
    let tries = tries_in_log(&x, &label, 3);
    if fault == Fault::CloseKeptAlive {
        assert!(tries.iter().all(|&t| t <= 2), "{tries:?}");
    } else {
        assert_eq!(
            tries,
            vec![1, 1, 1],
            "{fault:?}: an instance host does not retry a fresh connection"
        );
        if fault != Fault::Refuse {
            assert_eq!(bad.requests() - before, 3);
        }
    }

    // (c) A service with only the faulty instance: at most max_tries attempts each.
    for i in 0..10 {
        let r = call(&x, "GET", "broken");
        if fault == Fault::CloseKeptAlive {
            assert_eq!(r.status, 200, "#{i}: {}", r.body);
        } else {
            assert_eq!(r.status, error_status(fault), "{fault:?} #{i}: {}", r.body);
            assert!(
                r.body.contains(&lone_i.id) && r.body.contains(&lone.addr.to_string()),
                "{}",
                r.body
            );
            assert!(
                r.body.contains(what_went_wrong(fault)) && r.body.contains("; 3 tries"),
                "{fault:?}: {}",
                r.body
            );
        }
    }
    let tries = tries_in_log(&x, "broken", 10);
    assert!(
        tries.iter().all(|&t| (1..=MAX_TRIES).contains(&t)),
        "{fault:?}: {tries:?}"
    );
    let attempts: u32 = tries.iter().sum();
    assert!(attempts <= 10 * MAX_TRIES);
    if fault != Fault::Refuse {
        assert_eq!(
            lone.requests() as u32,
            attempts,
            "{fault:?}: attempts seen by the backend vs the log"
        );
    }
    if fault != Fault::CloseKeptAlive {
        // Every attempt fails, so every request uses all of them.
        assert_eq!(tries, vec![MAX_TRIES; 10], "{fault:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_instance() {
    fault_case(Fault::Refuse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_resetting_mid_response() {
    fault_case(Fault::ResetInHead).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_slower_than_read_timeout() {
    fault_case(Fault::Slow(SLOW)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_closing_kept_alive_connections() {
    fault_case(Fault::CloseKeptAlive).await;
}

/// Once the response has started reaching the client nothing can be retried: the client
/// sees the truncation (the connection closes before Content-Length is reached), and the
/// faulty instance sees exactly one attempt per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_after_the_response_started_is_not_retried() {
    let healthy = FaultyBackend::start("healthy", Fault::Healthy).await;
    let mid = FaultyBackend::start("mid", Fault::ResetInBody).await;
    let eureka = StubEureka::start().await;
    let mid_i = Inst::up("midbody", "mid-1", mid.addr);
    eureka
        .serve(&[Inst::up("midbody", "good-1", healthy.addr), mid_i.clone()])
        .await;
    let x = Xipgate::start(&eureka.url(), FAST_TIMEOUTS);

    let mut truncated = 0;
    for i in 0..20 {
        let r = call(&x, "GET", "midbody");
        assert_eq!(r.status, 200, "#{i}: {}", r.body);
        match header(&r.headers, "x-backend") {
            Some("healthy") => assert!(r.body.contains("healthy")),
            Some("mid") => {
                assert!(
                    r.body.len() < 1000,
                    "a truncated body, not a second response: {}",
                    r.body
                );
                assert!(
                    !r.body.contains("healthy"),
                    "no second response was appended: {}",
                    r.body
                );
                assert!(
                    !r.body.contains("xipgate"),
                    "no error text was appended: {}",
                    r.body
                );
                truncated += 1;
            }
            other => panic!("#{i}: unexpected backend {other:?}"),
        }
    }
    assert!(truncated > 0, "the faulty instance was never picked");
    assert_eq!(
        mid.requests(),
        truncated,
        "one attempt per request at the faulty instance"
    );
    assert_eq!(healthy.requests(), 20 - truncated);
    assert_eq!(tries_in_log(&x, "midbody", 20), vec![1; 20]);

    let r = call(&x, "GET", &mid_i.label());
    assert_eq!(r.status, 200);
    assert!(r.body.len() < 1000);
    assert_eq!(mid.requests(), truncated + 1);
}

/// POST: retried after a refused connect (nothing was sent), never once it was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_is_retried_only_when_nothing_was_sent() {
    let healthy = FaultyBackend::start("healthy", Fault::Healthy).await;
    let refused = FaultyBackend::start("refused", Fault::Refuse).await;
    let reset = FaultyBackend::start("reset", Fault::ResetInHead).await;
    let lone_reset = FaultyBackend::start("lone-reset", Fault::ResetInHead).await;
    let lone_slow = FaultyBackend::start("lone-slow", Fault::Slow(SLOW)).await;
    let eureka = StubEureka::start().await;
    eureka
        .serve(&[
            Inst::up("post-refused", "good-1", healthy.addr),
            Inst::up("post-refused", "refused-1", refused.addr),
            Inst::up("post-reset", "good-2", healthy.addr),
            Inst::up("post-reset", "reset-1", reset.addr),
            Inst::up("post-reset-only", "reset-2", lone_reset.addr),
            Inst::up("post-slow-only", "slow-1", lone_slow.addr),
        ])
        .await;
    let x = Xipgate::start(&eureka.url(), FAST_TIMEOUTS);

    // Refused connect: the POST goes to the other instance.
    for i in 0..20 {
        let r = call(&x, "POST", "post-refused");
        assert_eq!(r.status, 200, "#{i}: {}", r.body);
        assert!(r.body.contains("\"method\":\"POST\""));
    }
    assert_eq!(
        healthy.requests(),
        20,
        "each POST reached the healthy instance exactly once"
    );
    let tries = tries_in_log(&x, "post-refused", 20);
    assert!(
        tries.contains(&2),
        "a POST was retried after a refused connect: {tries:?}"
    );

    // Reset after the POST was sent: not retried, the client gets 502.
    let (mut ok, mut failed) = (0, 0);
    for i in 0..20 {
        let r = call(&x, "POST", "post-reset");
        match r.status {
            200 => ok += 1,
            502 => failed += 1,
            s => panic!("#{i}: {s} {}", r.body),
        }
    }
    assert!(failed > 0, "the resetting instance was never picked");
    assert_eq!(
        reset.requests(),
        failed,
        "exactly one attempt per failed POST"
    );
    assert_eq!(healthy.requests(), 20 + ok);
    assert_eq!(tries_in_log(&x, "post-reset", 20), vec![1; 20]);

    for _ in 0..5 {
        assert_eq!(call(&x, "POST", "post-reset-only").status, 502);
    }
    assert_eq!(
        lone_reset.requests(),
        5,
        "a POST that reached the backend is never retried"
    );

    for _ in 0..3 {
        let r = call(&x, "POST", "post-slow-only");
        assert_eq!(r.status, 504, "{}", r.body);
        assert!(r.body.contains("did not answer in time"), "{}", r.body);
    }
    assert_eq!(lone_slow.requests(), 3, "a timed-out POST is never retried");
    assert_eq!(tries_in_log(&x, "post-slow-only", 3), vec![1; 3]);
}

/// `upstream.max_tries` is the bound, whatever Pingora's own `max_retries` (16) allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tries_is_configurable() {
    let a = FaultyBackend::start("a", Fault::ResetInHead).await;
    let b = FaultyBackend::start("b", Fault::Refuse).await;
    let c = FaultyBackend::start("c", Fault::ResetInHead).await;
    let eureka = StubEureka::start().await;
    eureka
        .serve(&[
            Inst::up("dead", "a-1", a.addr),
            Inst::up("dead", "b-1", b.addr),
            Inst::up("dead", "c-1", c.addr),
        ])
        .await;
    let x = Xipgate::start(&eureka.url(), "  upstream:\n    max_tries: 2\n");
    for _ in 0..10 {
        assert_eq!(call(&x, "GET", "dead").status, 502);
    }
    assert_eq!(tries_in_log(&x, "dead", 10), vec![2; 10]);
    let x1 = Xipgate::start(&eureka.url(), "  upstream:\n    max_tries: 1\n");
    let before = a.requests() + c.requests();
    for _ in 0..6 {
        assert_eq!(call(&x1, "GET", "dead").status, 502);
    }
    assert_eq!(tries_in_log(&x1, "dead", 6), vec![1; 6]);
    assert!(a.requests() + c.requests() - before <= 6);
}

/// Connections in CLOSE_WAIT from this machine to `backend`: the local end of a TCP
/// connection whose peer closed and which was not closed here (/proc/net/tcp, state 08).
fn close_wait_to(backend: std::net::SocketAddr) -> usize {
    let std::net::SocketAddr::V4(v4) = backend else {
        panic!("an IPv4 backend")
    };
    let remote = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(v4.ip().octets()),
        v4.port()
    );
    std::fs::read_to_string("/proc/net/tcp")
        .expect("/proc/net/tcp")
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(2) == Some(&remote.as_str()) && f.get(3) == Some(&"08")
        })
        .count()
}

/// A burst leaves idle upstream connections; the backend closes them after its keep-alive
/// timeout and no request comes for it again. The edge must close its ends too, not keep
/// them in CLOSE_WAIT for the life of the process (until `accept` fails with EMFILE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_the_backend_closes_do_not_stay_in_close_wait() {
    let closer = FaultyBackend::start("closer", Fault::CloseIdle(Duration::from_millis(300))).await;
    let eureka = StubEureka::start().await;
    eureka
        .serve(&[Inst::up("closer", "closer-1", closer.addr)])
        .await;
    let x = Xipgate::start(&eureka.url(), "");

    std::thread::scope(|s| {
        let calls: Vec<_> = (0..8)
            .map(|_| s.spawn(|| call(&x, "GET", "closer").status))
            .collect();
        for c in calls {
            assert_eq!(c.join().expect("request thread"), 200);
        }
    });
    let opened = closer.conns();
    eventually(
        Duration::from_secs(10),
        "the backend closes its idle connections",
        || closer.idle_closed() == opened,
    );
    eventually(
        Duration::from_secs(5),
        "no connection to the backend left in CLOSE_WAIT",
        || close_wait_to(closer.addr) == 0,
    );
    // The pool still works: a new request gets a fresh connection.
    assert_eq!(call(&x, "GET", "closer").status, 200);
}
