//! The coalescing of changes, and the merge with Eureka at the Feed.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;

use super::*;
use crate::config::Namespaces;
use crate::instance::{Instance, Status};
use crate::routes::{Allowlist, RouteTable};

fn shutdown() -> (tokio::sync::watch::Sender<bool>, ShutdownWatch) {
    tokio::sync::watch::channel(false)
}

/// A burst of changes is a few publishes, never one per change, and the last change is
/// always published.
#[tokio::test]
async fn a_burst_of_changes_is_published_a_few_times_and_its_end_always() {
    let changes = Arc::new(Notify::new());
    let version = Arc::new(AtomicU64::new(0));
    let (stop, mut watch) = shutdown();
    let producer = {
        let (changes, version) = (changes.clone(), version.clone());
        tokio::spawn(async move {
            for v in 1..=120 {
                version.store(v, Ordering::SeqCst);
                changes.notify_one();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let started = Instant::now();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let consumer = {
        let (changes, version, seen) = (changes.clone(), version.clone(), seen.clone());
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now();
            coalesce(
                &changes,
                PUBLISH_EVERY,
                deadline,
                |_| {
                    lock(&seen).push(version.load(Ordering::SeqCst));
                    true
                },
                &mut watch,
            )
            .await
        })
    };
    producer.await.expect("producer");
    let burst = started.elapsed();
    // The last change is published within one pause.
    let until = Instant::now() + PUBLISH_EVERY * 3;
    while lock(&seen).last() != Some(&120) {
        assert!(
            Instant::now() < until,
            "the last change was not published: {:?}",
            lock(&seen)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(true).expect("stop");
    let published = consumer.await.expect("consumer");
    let most = burst.as_millis() / PUBLISH_EVERY.as_millis() + 2;
    assert!(
        published >= 2 && u128::from(published) <= most,
        "{published} publishes for 120 changes in {burst:?}: {:?}",
        lock(&seen)
    );
}

/// Before the deadline only a complete set is published; at the deadline the publisher
/// is called once even without a change, and from then on partial sets go out.
#[tokio::test]
async fn the_deadline_allows_a_partial_set_once() {
    let changes = Notify::new();
    let (_stop, mut watch) = shutdown();
    let calls = Mutex::new(Vec::new());
    let deadline = tokio::time::Instant::now() + Duration::from_millis(150);
    changes.notify_one();
    let run = coalesce(
        &changes,
        Duration::from_millis(10),
        deadline,
        |past| {
            let mut c = lock(&calls);
            c.push(past);
            // Published once past the deadline; stop after that.
            past
        },
        &mut watch,
    );
    let _ = tokio::time::timeout(Duration::from_millis(400), run).await;
    assert_eq!(*lock(&calls), [false, true]);
}

fn eureka_instance(app: &str, id: &str, ip: &str) -> Instance {
    Instance::for_test(app, id, ip, Status::Up)
}

/// A Service named like a Eureka application is the same service host; a pod registered
/// in both is one instance, Eureka's (ranked first).
#[test]
fn a_service_in_eureka_too_is_one_service_host_and_a_shared_pod_is_eurekas() {
    let table = Arc::new(RouteTable::new(Allowlist::new(vec!["10.0.0.0/8"
        .parse()
        .expect("cidr")])));
    let feed = Feed::new(table.clone(), vec!["eureka".into(), KUBERNETES.into()]);
    feed.publish(
        "eureka",
        &[
            eureka_instance("ORDERS", "orders-a:orders:8080", "10.0.0.1"),
            eureka_instance("ORDERS", "orders-vm:orders:8080", "10.0.0.9"),
        ],
    );
    let services: Vec<Service> = vec![serde_json::from_value(json!({
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {"ports": [{"name": "http", "port": 80}]}
    }))
    .expect("service")];
    let slices: Vec<EndpointSlice> = vec![serde_json::from_value(json!({
        "metadata": {"name": "orders-x1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "orders"}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.0.0.1"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "namespace": "shop", "name": "orders-a"}},
            {"addresses": ["10.0.0.2"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "namespace": "shop", "name": "orders-b"}}
        ],
        "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]
    }))
    .expect("slice")];
    let source = SourceName::from(KUBERNETES);
    let ns = Namespaces::Listed(vec!["shop".into()]);
    let rules = Rules {
        source: &source,
        namespaces: &ns,
        primary_port_name: None,
    };
    let mapped = map(&rules, &services, &slices);
    feed.publish(KUBERNETES, &mapped.instances);

    let route = table.lookup("orders").expect("the service host");
    assert!(matches!(route, crate::routes::Route::Service(_)));
    let mut members: Vec<(String, String)> = table
        .instances()
        .iter()
        .filter(|t| *t.service_label == *route.service_label())
        .map(|t| (t.label.clone(), t.instance.source.to_string()))
        .collect();
    members.sort();
    assert_eq!(
        members,
        [
            ("orders-a-8080".to_string(), "eureka".to_string()),
            ("orders-b-8080".to_string(), KUBERNETES.to_string()),
            ("orders-vm-8080".to_string(), "eureka".to_string()),
        ]
    );
    assert_eq!(feed.shadowed(), ["kubernetes: ORDERS/orders-a:orders:8080"]);
}
