//! xipgate against Spring Cloud's own Eureka server (`it/eureka-server`) and real
//! clients: Spring's REST flows driven step by step, py-eureka-client, and a Spring Boot
//! application with `spring-cloud-starter-netflix-eureka-client`. Every case is asserted
//! as a user sees it: requests through the edge, on instance and service hosts.
//!
//! Three servers, each started once: `main` serves every case that can share a
//! registry (each with an xipgate and app names of its own, run side by side); `quiet`
//! serves the two cases that need a registry nobody else changes (a gap longer than the
//! delta window, then a server restart); `guarded` starts in its 403 start-up window and
//! with deltas disabled. The server's settings for tests (1 s response cache, 20 s of
//! deltas, 1 s eviction, no self-preservation) are in its `application.properties`.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::real::*;
use common::*;

/// How long the server keeps deltas in these tests (its application.properties).
const SERVER_DELTA_RETENTION: Duration = Duration::from_secs(20);

fn registry(x: &Xipgate) -> serde_json::Value {
    x.api("/api/v1/registry").1
}

fn metric(x: &Xipgate, name: &str) -> f64 {
    let body = http_get(x.console, "localhost", "/metrics")
        .expect("metrics")
        .2;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(-1.0)
}

fn counter(x: &Xipgate, key: &str) -> u64 {
    registry(x)[key].as_u64().unwrap_or(0)
}

/// Who answers `n` requests on a host (each answer's first line).
fn answers(x: &Xipgate, label: &str, n: usize) -> BTreeSet<String> {
    (0..n)
        .map(|_| match who(x.proxy, &format!("{label}.{DOMAIN}")) {
            Ok(body) => body,
            Err(status) => format!("HTTP {status}"),
        })
        .collect()
}

/// The label xipgate gives an instance, from its API.
fn label_of(x: &Xipgate, service: &str, instance_id: &str) -> Option<String> {
    let (_, s) = x.api(&format!("/api/v1/services/{service}"));
    s["instances"].as_array()?.iter().find_map(|i| {
        (i["instance_id"] == instance_id).then(|| i["label"].as_str().unwrap_or("").to_string())
    })
}

fn within(secs: u64, what: &str, check: impl FnMut() -> bool) {
    eventually(Duration::from_secs(secs), what, check);
}

#[test]
fn real_eureka_main_server() {
    let eureka = EurekaServer::start(&[], 200);
    // Started first, checked last: deltas only while every other case churns the registry.
    let steady = Xipgate::start(&eureka.url(), "");
    let steady_start = (
        counter(&steady, "full_fetches"),
        counter(&steady, "delta_fetches"),
    );
    std::thread::scope(|s| {
        s.spawn(|| new_instance_down_cancel_and_expiry(&eureka));
        s.spawn(|| overrides_follow_the_server(&eureka));
        s.spawn(|| two_apps_sharing_an_instance_id(&eureka));
        s.spawn(|| py_eureka_client(&eureka));
        s.spawn(|| spring_boot_client(&eureka));
    });
    within(30, "20 delta syncs", || {
        counter(&steady, "delta_fetches") >= steady_start.1 + 20
    });
    assert_eq!(
        counter(&steady, "full_fetches"),
        steady_start.0,
        "steady state: no full fetch while the registry churned ({:?})",
        registry(&steady)["last_full_fetch_reason"]
    );
}

/// REST instances as Spring's client registers them: a new one is reachable within
/// interval + server cache; DOWN leaves the rotation; cancel and lease expiry remove it.
fn new_instance_down_cancel_and_expiry(eureka: &EurekaServer) {
    let x = Xipgate::start(&eureka.url(), "");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (a, b) = rt.block_on(async { (Backend::start("a").await, Backend::start("b").await) });
    let ia = RestInstance::register(eureka, "flow-svc", "flow-a:flow-svc:1", a.addr, "UP");
    within(10, "flow-a reachable", || x.get("flow-svc", "/").0 == 200);

    // A new instance: reachable within the interval (1 s) + the server's cache (1 s).
    let started = Instant::now();
    let ib = RestInstance::register(eureka, "flow-svc", "flow-b:flow-svc:1", b.addr, "UP");
    within(10, "flow-b reachable", || x.get("flow-b-1", "/").0 == 200);
    let took = started.elapsed();
    eprintln!("new instance reachable after {took:?}");
    assert!(took < Duration::from_secs(4), "new instance took {took:?}");

    // DOWN: out of the service rotation, still reachable on its own host (marked).
    ib.report("DOWN");
    within(10, "flow-b DOWN", || {
        header(&x.get("flow-b-1", "/").1, "x-xipgate-instance-status") == Some("DOWN")
    });
    for _ in 0..6 {
        let (status, _, body) = x.get("flow-svc", "/");
        assert_eq!(status, 200);
        assert!(body.contains("\"backend\":\"a\""), "DOWN b served: {body}");
    }
    // Cancel removes it.
    ib.cancel();
    within(10, "flow-b gone after cancel", || {
        x.get("flow-b-1", "/").0 == 404
    });
    // Lease expiry (no heartbeats, no cancel) removes it too.
    let mut ia = ia;
    ia.stop_heartbeats();
    within(30, "flow-a evicted", || x.get("flow-a-1", "/").0 == 404);
    drop((a, b));
}

/// Overrides as a real server applies them: OUT_OF_SERVICE leaves the rotation; an
/// override UP while the instance itself reports DOWN leaves `status: DOWN,
/// overriddenStatus: UP`, which must never be routed; no full fetch all along.
fn overrides_follow_the_server(eureka: &EurekaServer) {
    let x = Xipgate::start(&eureka.url(), "");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (a, b) = rt.block_on(async { (Backend::start("a").await, Backend::start("b").await) });
    let _ia = RestInstance::register(eureka, "ovr-svc", "ovr-a:ovr-svc:1", a.addr, "UP");
    let ib = RestInstance::register(eureka, "ovr-svc", "ovr-b:ovr-svc:1", b.addr, "UP");
    let both: BTreeSet<String> = ["a", "b"].map(String::from).into();
    let backends = |n| -> BTreeSet<String> {
        (0..n)
            .map(|_| {
                let body = x.get("ovr-svc", "/").2;
                serde_json::from_str::<serde_json::Value>(&body)
                    .map(|v| v["backend"].as_str().unwrap_or("?").to_string())
                    .unwrap_or(body)
            })
            .collect()
    };
    within(10, "both in rotation", || backends(6) == both);
    let full_before = counter(&x, "full_fetches");
    let only_a: BTreeSet<String> = ["a".to_string()].into();

    ib.override_status("OUT_OF_SERVICE");
    within(10, "OUT_OF_SERVICE leaves the rotation", || {
        backends(6) == only_a
    });
    ib.override_status("UP");
    within(10, "override UP: back in rotation", || backends(6) == both);

    // The instance's own health turns DOWN: the server keeps the override but its
    // DownOrStartingRule makes the status DOWN.
    ib.report("DOWN");
    within(10, "the server shows DOWN with override UP", || {
        eureka.instances("OVR-SVC").iter().any(|i| {
            i["instanceId"] == "ovr-b:ovr-svc:1"
                && i["status"] == "DOWN"
                && i["overriddenStatus"] == "UP"
        })
    });
    within(10, "xipgate shows DOWN with override UP", || {
        let (_, v) = x.api("/api/v1/instances/ovr-b-1");
        v["status"] == "DOWN" && v["overridden_status"] == "UP"
    });
    for _ in 0..3 {
        assert_eq!(backends(6), only_a, "DOWN with override UP is never routed");
        std::thread::sleep(Duration::from_secs(1));
    }

    // The override removed: the instance's own status rules again.
    ib.delete_override();
    within(10, "override gone", || {
        x.api("/api/v1/instances/ovr-b-1").1["overridden_status"].is_null()
    });
    assert_eq!(backends(6), only_a, "still DOWN by its own report");
    ib.report("UP");
    within(10, "UP again by its own report", || backends(6) == both);

    assert_eq!(
        counter(&x, "full_fetches"),
        full_before,
        "the hashcode matched after every change: no full fetch ({:?})",
        registry(&x)["last_full_fetch_reason"]
    );
}

/// Eureka keys instances by (app, instanceId): two apps may each have the same id.
fn two_apps_sharing_an_instance_id(eureka: &EurekaServer) {
    let x = Xipgate::start(&eureka.url(), "");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (a, b) = rt.block_on(async { (Backend::start("a").await, Backend::start("b").await) });
    let _ia = RestInstance::register(eureka, "shared-a", "10.9.9.9:8080", a.addr, "UP");
    let _ib = RestInstance::register(eureka, "shared-b", "10.9.9.9:8080", b.addr, "UP");
    within(10, "both services routed", || {
        x.get("shared-a", "/").2.contains("\"backend\":\"a\"")
            && x.get("shared-b", "/").2.contains("\"backend\":\"b\"")
    });
    let la = label_of(&x, "shared-a", "10.9.9.9:8080").expect("shared-a's instance");
    let lb = label_of(&x, "shared-b", "10.9.9.9:8080").expect("shared-b's instance");
    assert_ne!(la, lb, "each gets a label of its own");
    assert!(x.get(&la, "/").2.contains("\"backend\":\"a\""));
    assert!(x.get(&lb, "/").2.contains("\"backend\":\"b\""));
    // And the full-fetch counter stays flat: the copy hashes as the server does.
    let full = counter(&x, "full_fetches");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(counter(&x, "full_fetches"), full);
}

/// py-eureka-client (PyPI) in front of a small backend: registered, reachable; SIGTERM
/// cancels; a killed one expires.
fn py_eureka_client(eureka: &EurekaServer) {
    let x = Xipgate::start(&eureka.url(), "");
    let mut p1 = PyClient::start(eureka, "py-svc", "py-1:py-svc:1");
    let p2 = PyClient::start(eureka, "py-svc", "py-2:py-svc:1");
    within(20, "both py instances answer", || {
        answers(&x, "py-svc", 6)
            == ["py py-1:py-svc:1", "py py-2:py-svc:1"]
                .map(String::from)
                .into()
    });
    assert_eq!(
        who(x.proxy, &format!("py-1-1.{DOMAIN}")),
        Ok("py py-1:py-svc:1".to_string())
    );
    p1.stop();
    within(10, "py-1 cancelled", || {
        answers(&x, "py-svc", 4) == ["py py-2:py-svc:1".to_string()].into()
    });
    drop(p2); // SIGKILL: no cancel, the lease expires
    within(30, "py-2 expired", || x.get("py-svc", "/").0 == 404);
}

/// A Spring Boot application with the Eureka client and its health check: instanceId,
/// metadata and status all from Spring.
fn spring_boot_client(eureka: &EurekaServer) {
    let x = Xipgate::start(&eureka.url(), "");
    let app = SpringClient::start(eureka, "spring-svc");
    within(60, "the Spring app is routed", || {
        who(x.proxy, &format!("spring-svc.{DOMAIN}")).is_ok_and(|b| b.starts_with("spring "))
    });
    let id = who(x.proxy, &format!("spring-svc.{DOMAIN}"))
        .expect("answer")
        .trim_start_matches("spring ")
        .to_string();
    let label = label_of(&x, "spring-svc", &id).expect("the Spring instance's label");
    assert!(who(x.proxy, &format!("{label}.{DOMAIN}")).is_ok());

    app.set_healthy(false);
    within(30, "Spring's health check turns it DOWN", || {
        x.get("spring-svc", "/whoami").0 == 503
    });
    assert_eq!(
        header(&x.get(&label, "/whoami").1, "x-xipgate-instance-status"),
        Some("DOWN")
    );
    app.set_healthy(true);
    within(30, "and UP again", || {
        x.get("spring-svc", "/whoami").0 == 200
    });
}

#[test]
fn real_eureka_quiet_server() {
    let mut eureka = EurekaServer::start(&[], 200);
    gap_longer_than_the_delta_window(&eureka);
    server_restart_keeps_services(&mut eureka);
}

/// xipgate suspended for longer than the server keeps deltas while one UP pod is
/// replaced by another: the hashcode (UP_1_) cannot tell, and no delta carries the
/// change any more. The copy is older than `delta_window`, so a full fetch converges.
/// A control xipgate with a window longer than the gap shows the stale route the
/// server's deltas leave.
fn gap_longer_than_the_delta_window(eureka: &EurekaServer) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (old, new) =
        rt.block_on(async { (Backend::start("old").await, Backend::start("new").await) });
    let pod = RestInstance::register(eureka, "gap-svc", "gap-old:gap-svc:1", old.addr, "UP");
    // A long fetch timeout: a fetch in flight when the process is stopped completes
    // after it resumes instead of timing out (which would force a full fetch by itself).
    let x = Xipgate::start(
        &eureka.url(),
        "  registry:\n    eureka:\n      delta_window: 10s\n      timeout: 60s\n",
    );
    let control = Xipgate::start(
        &eureka.url(),
        "  registry:\n    eureka:\n      delta_window: 10m\n      timeout: 60s\n",
    );
    for g in [&x, &control] {
        within(10, "old pod routed", || {
            g.get("gap-svc", "/").2.contains("\"backend\":\"old\"")
        });
    }
    let stopped = Instant::now();
    let suspended = Suspended::new(&[x.child.id(), control.child.id()]);
    // Meanwhile the pod is replaced: the old one leaves, a new one comes UP.
    pod.cancel();
    let new_pod = RestInstance::register(eureka, "gap-svc", "gap-new:gap-svc:1", new.addr, "UP");
    // Resume once the server's delta (as clients read it, through its response cache)
    // no longer carries the change: pruned after SERVER_DELTA_RETENTION plus the
    // pruning interval, then gone from the cache after its expiry. A fixed sleep raced
    // that chain (~30 s) on a loaded machine.
    within(90, "the change leaves the server's delta", || {
        let (status, body) = eureka.get("/eureka/apps/delta");
        status == 200 && !body.to_ascii_lowercase().contains("gap-svc")
    });
    assert!(stopped.elapsed() >= SERVER_DELTA_RETENTION);
    drop(suspended);
    within(5, "xipgate converges on the new pod", || {
        x.get("gap-svc", "/").2.contains("\"backend\":\"new\"")
    });
    let reason = registry(&x)["last_full_fetch_reason"].to_string();
    assert!(reason.contains("delta_window"), "{reason}");
    // The control took the (empty, matching) delta and still routes to the old address.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        counter(&control, "syncs_failed"),
        0,
        "the control never failed a sync"
    );
    assert!(
        control
            .get("gap-svc", "/")
            .2
            .contains("\"backend\":\"old\""),
        "the control should show the stale route deltas leave after a long gap"
    );
    new_pod.cancel();
}

/// A restarted Eureka node has an empty registry that fills as clients renew: services
/// that were there keep being routed throughout; an instance that never comes back is
/// dropped once `shrink_grace` has passed.
fn server_restart_keeps_services(eureka: &mut EurekaServer) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let backends = rt.block_on(async {
        let mut v = Vec::new();
        for n in ["r1", "r2", "r3", "r4", "ghost"] {
            v.push(Backend::start(n).await);
        }
        v
    });
    let x = Xipgate::start(&eureka.url(), "  registry:\n    shrink_grace: 30s\n");
    let fast = RestInstance::register(eureka, "fast-svc", "r1:fast-svc:1", backends[0].addr, "UP");
    let slow: Vec<RestInstance> = (1..4)
        .map(|k| {
            let id = format!("r{}:slow-svc:1", k + 1);
            RestInstance::register(eureka, "slow-svc", &id, backends[k].addr, "UP")
        })
        .collect();
    let mut ghost = RestInstance::register(
        eureka,
        "ghost-svc",
        "ghost:ghost-svc:1",
        backends[4].addr,
        "UP",
    );
    for svc in ["fast-svc", "slow-svc", "ghost-svc"] {
        within(10, svc, || x.get(svc, "/").0 == 200);
    }
    // The ghost's pod dies with the server: it will not register again.
    ghost.stop_heartbeats();
    // The slow ones are late to notice the restart (their next heartbeat is later).
    for s in &slow {
        s.pause_heartbeats();
    }
    let refilled = AtomicBool::new(false);
    // Ends the probe however the scope is left (a failed wait included).
    struct Done<'a>(&'a AtomicBool);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let failures = std::thread::scope(|s| {
        let done = Done(&refilled);
        let probe = s.spawn(|| {
            // Every service keeps answering through the restart and the refill.
            let mut failures = Vec::new();
            while !refilled.load(Ordering::SeqCst) {
                for svc in ["fast-svc", "slow-svc", "ghost-svc"] {
                    let st = x.get(svc, "/").0;
                    if st != 200 {
                        failures.push(format!("{svc}: {st}"));
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            failures
        });
        eureka.restart(200);
        // The hold shows while the slow ones and the ghost are missing...
        within(20, "the hold is shown", || {
            registry(&x)["held_instances"].as_u64() >= Some(4)
        });
        assert!(metric(&x, "xipgate_registry_held_instances") >= 4.0);
        let page = http_get(x.console, "localhost", "/").expect("console").2;
        assert!(page.contains("fewer than half"), "the console says so");
        // ...until the slow ones renew, find their lease gone and register again.
        for s in &slow {
            s.resume_heartbeats();
        }
        within(20, "the slow ones are back", || {
            registry(&x)["held_instances"].as_u64() == Some(1)
        });
        drop(done);
        probe.join().expect("probe")
    });
    assert!(
        failures.is_empty(),
        "requests failed during the restart: {failures:?}\n{}",
        x.log()
    );
    // The ghost is dropped when the grace runs out.
    within(40, "the ghost is dropped", || {
        x.get("ghost-svc", "/").0 == 404
    });
    assert_eq!(registry(&x)["held_instances"], 0);
    drop((fast, slow));
}

#[test]
fn real_eureka_start_up_window_and_disabled_deltas() {
    // As a Eureka node that found no peer to sync from: reads answer 403 for a while.
    // And deltas disabled, as some operators run it.
    let eureka = EurekaServer::start(
        &[
            "--eureka.instance.registry.default-open-for-traffic-count=0",
            "--eureka.server.wait-time-in-ms-when-sync-empty=15000",
            "--eureka.server.disable-delta=true",
        ],
        403,
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let a = rt.block_on(Backend::start("a"));
    let _ia = RestInstance::register(&eureka, "win-svc", "win-a:win-svc:1", a.addr, "UP");
    let x = Xipgate::start_with(&eureka.url(), "", "", false);
    within(10, "the start-up window is reported", || {
        registry(&x)["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("403") && e.contains("start-up window"))
    });
    let err = registry(&x)["last_error"].to_string();
    assert!(!err.contains("wants credentials"), "{err}");
    // The window passes: the registry loads; deltas are refused, so full fetches.
    eureka.wait_apps(200);
    within(10, "routed after the window", || {
        x.get("win-svc", "/").0 == 200
    });
    within(10, "deltas refused is said", || {
        !registry(&x)["deltas_refused_until"].is_null()
    });
    let reg = registry(&x);
    assert!(
        reg["last_full_fetch_reason"]
            .as_str()
            .is_some_and(|r| r.contains("disable-delta")),
        "{reg}"
    );
    let full = counter(&x, "full_fetches");
    within(10, "full fetches every interval", || {
        counter(&x, "full_fetches") >= full + 3
    });
    assert_eq!(counter(&x, "consecutive_failures"), 0);
    assert_eq!(counter(&x, "delta_fetches"), 0);
}
