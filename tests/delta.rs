//! Delta sync against a stub that serves `/apps/delta` as Eureka does: the same delta
//! again and again (Eureka keeps about three minutes of changes), with the registry's
//! `apps__hashcode`; a mismatch must force a full fetch.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

fn delta_json(changes: &[(&Inst, &str)], hashcode: &str) -> String {
    let mut doc: Value = serde_json::from_str(&apps_json(
        &changes
            .iter()
            .map(|(i, _)| (*i).clone())
            .collect::<Vec<_>>(),
    ))
    .unwrap();
    doc["applications"]["apps__hashcode"] = json!(hashcode);
    doc["applications"]["versions__delta"] = json!("42");
    if let Some(apps) = doc["applications"]["application"].as_array_mut() {
        for app in apps {
            for inst in app["instance"].as_array_mut().into_iter().flatten() {
                let id = inst["instanceId"].as_str().unwrap_or("").to_string();
                let action = changes
                    .iter()
                    .find(|(i, _)| i.id == id)
                    .map_or("ADDED", |(_, a)| a);
                inst["actionType"] = json!(action);
            }
        }
    }
    doc.to_string()
}

async fn serve(eureka: &StubEureka, full: &[Inst], delta: String) {
    eureka.server.reset().await;
    Mock::given(method("GET"))
        .and(path("/eureka/apps/"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(apps_json(full), "application/json"))
        .mount(&eureka.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/eureka/apps"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(apps_json(full), "application/json"))
        .mount(&eureka.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/eureka/apps/delta"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(delta, "application/json"))
        .mount(&eureka.server)
        .await;
}

fn counts(x: &Xipgate) -> (u64, u64) {
    let r = x.api("/api/v1/registry").1;
    (
        r["full_fetches"].as_u64().unwrap_or(0),
        r["delta_fetches"].as_u64().unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_apply_idempotently_and_a_mismatch_forces_a_full_fetch() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let eureka = StubEureka::start().await;
    let ia = Inst::up("svc", "svc-a", a.addr);
    let ib = Inst::up("svc", "svc-b", b.addr);
    // Steady state: an empty delta whose hash matches one UP instance.
    serve(&eureka, std::slice::from_ref(&ia), delta_json(&[], "UP_1_")).await;
    let x = Xipgate::start(&eureka.url(), "");
    eventually(Duration::from_secs(5), "delta syncs run", || {
        counts(&x).1 >= 3
    });
    assert_eq!(counts(&x).0, 1, "only the first sync was a full fetch");

    // b is ADDED through a delta (the full /apps is NOT updated: only the delta can bring it).
    serve(
        &eureka,
        std::slice::from_ref(&ia),
        delta_json(&[(&ib, "ADDED")], "UP_2_"),
    )
    .await;
    eventually(Duration::from_secs(5), "b arrives by delta", || {
        x.get(&ib.label(), "/").0 == 200
    });
    // The same delta served again and again changes nothing and needs no full fetch.
    let (full_before, delta_before) = counts(&x);
    eventually(Duration::from_secs(5), "repeated deltas", || {
        counts(&x).1 >= delta_before + 3
    });
    assert_eq!(counts(&x).0, full_before, "a repeated delta is idempotent");
    assert_eq!(x.get(&ib.label(), "/").0, 200);

    // b DELETED by delta.
    serve(
        &eureka,
        std::slice::from_ref(&ia),
        delta_json(&[(&ib, "DELETED")], "UP_1_"),
    )
    .await;
    eventually(Duration::from_secs(5), "b removed by delta", || {
        x.get(&ib.label(), "/").0 == 404
    });
    assert_eq!(counts(&x).0, full_before);

    // A delta whose hash does not match our copy: a full fetch follows and wins.
    let ic = Inst::up("svc", "svc-c", b.addr);
    serve(&eureka, &[ia.clone(), ic.clone()], delta_json(&[], "UP_7_")).await;
    eventually(Duration::from_secs(5), "c arrives by full fetch", || {
        x.get(&ic.label(), "/").0 == 200
    });
    assert!(
        counts(&x).0 > full_before,
        "the mismatch forced a full fetch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_can_be_turned_off() {
    let a = Backend::start("a").await;
    let eureka = StubEureka::start().await;
    let ia = Inst::up("svc", "svc-a", a.addr);
    serve(&eureka, std::slice::from_ref(&ia), delta_json(&[], "UP_1_")).await;
    let x = Xipgate::start(
        &eureka.url(),
        "  registry:\n    eureka:\n      delta: false\n",
    );
    eventually(Duration::from_secs(5), "several syncs", || {
        counts(&x).0 >= 3
    });
    assert_eq!(counts(&x).1, 0);
}

/// The sync's thread runs under SCHED_IDLE so a full refresh never preempts request
/// handling (bench/run.sh: +3 ms of p99 with a full refresh every second at nice 10); the
/// proxy's threads keep the normal policy.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_thread_yields_the_cpu_to_request_handling() {
    const SCHED_OTHER: u32 = 0;
    const SCHED_IDLE: u32 = 5;
    let a = Backend::start("a").await;
    let eureka = StubEureka::start().await;
    let ia = Inst::up("svc", "svc-a", a.addr);
    serve(&eureka, std::slice::from_ref(&ia), delta_json(&[], "UP_1_")).await;
    let x = Xipgate::start(&eureka.url(), "");
    // (thread name, scheduling policy) of every thread of the process.
    let threads = || -> Vec<(String, u32)> {
        let dir = format!("/proc/{}/task", x.child.id());
        let mut out = Vec::new();
        for task in std::fs::read_dir(dir).expect("the process's tasks") {
            let stat = std::fs::read_to_string(task.expect("task").path().join("stat"))
                .unwrap_or_default();
            // "tid (comm) state ...": the policy is field 41, the 39th after the comm.
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let policy = stat[close + 1..]
                .split_whitespace()
                .nth(38)
                .and_then(|p| p.parse().ok());
            if let Some(policy) = policy {
                out.push((stat[open + 1..close].to_string(), policy));
            }
        }
        out
    };
    eventually(
        Duration::from_secs(5),
        "the sync thread at SCHED_IDLE",
        || {
            threads()
                .iter()
                .any(|(name, policy)| name.starts_with("BG eureka sync") && *policy == SCHED_IDLE)
        },
    );
    let all = threads();
    let proxy: Vec<_> = all.iter().filter(|(n, _)| n.contains("proxy")).collect();
    assert!(!proxy.is_empty(), "no proxy threads among {all:?}");
    assert!(
        proxy.iter().all(|(_, p)| *p == SCHED_OTHER),
        "request handling must keep the normal policy: {all:?}"
    );
}

/// A name stays with its first holder: A registers, then B (whose instanceId makes the
/// same label) and an application named like A's label register later, by delta. A's
/// host keeps reaching A; B and the application get names of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_registration_does_not_take_an_instance_s_name() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let eureka = StubEureka::start().await;
    let ia = Inst::up("svc", "pod", a.addr);
    let name = ia.label(); // pod-<port>
                           // `pod:<port>` under another app makes the same label as `pod:svc:<port>`.
    let mut ib = Inst::up("other", "pod", b.addr);
    ib.id = format!("pod:{}", a.addr.port());
    assert_eq!(ib.label(), name);
    // An application whose service label is A's label.
    let ic = Inst::up(&name, "c", c.addr);
    eureka.serve(std::slice::from_ref(&ia)).await;
    let x = Xipgate::start(&eureka.url(), "");
    let backend = |label: &str| -> String {
        let (status, _, body) = x.get(label, "/");
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        format!("{status} {}", v["backend"].as_str().unwrap_or(""))
    };
    assert_eq!(backend(&name), "200 a");

    eureka.serve(&[ia.clone(), ib.clone(), ic.clone()]).await;
    eventually(Duration::from_secs(10), "b and c are in the table", || {
        x.api("/api/v1/registry").1["instances"] == 3
    });
    assert_eq!(backend(&name), "200 a", "A keeps its name");
    let (_, listed) = x.api("/api/v1/instances?limit=10");
    let label_of = |id: &str| -> String {
        listed["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["instance_id"] == id)
            .and_then(|i| i["label"].as_str())
            .unwrap_or("")
            .to_string()
    };
    let b_label = label_of(&ib.id);
    assert!(b_label.starts_with(&format!("{name}-")), "{b_label}");
    assert_eq!(
        backend(&b_label),
        "200 b",
        "B is reachable under its own name"
    );
    let (_, services) = x.api("/api/v1/services?limit=10");
    let c_label = services["services"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == name.to_uppercase())
        .and_then(|s| s["label"].as_str())
        .unwrap_or("")
        .to_string();
    assert!(c_label.starts_with(&format!("{name}-")), "{c_label}");
    assert_eq!(
        backend(&c_label),
        "200 c",
        "the application is reachable under its own name"
    );
}
