//! The Kubernetes test harness itself, against a real kube-apiserver and etcd
//! (tests/common/kube.rs) and a network namespace of the test's own
//! (tests/common/netns.rs): what the Kubernetes source and store tests build on.

mod common;
#[path = "common/kube.rs"]
mod kube;
#[path = "common/netns.rs"]
mod netns;

use std::time::Duration;

use common::Backend;
use kube::{endpoint_slice, rule, Endpoint, KubeApi, READ};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices";
const WAIT: Duration = Duration::from_secs(15);

/// Inside the namespace, pod addresses are local: a server binds 10.244.0.7 and is
/// reached there, on threads of a runtime built after `enter`; loopback works too, and
/// processes started afterwards are inside.
#[test]
fn netns_makes_pod_addresses_local() {
    netns::enter();
    netns::runtime().block_on(async {
        for ip in [netns::pod_ip(7), "127.0.0.1".parse().expect("ip")] {
            let listener = tokio::net::TcpListener::bind((ip, 8080))
                .await
                .unwrap_or_else(|e| panic!("bind {ip}:8080 in the namespace: {e}"));
            let server = tokio::spawn(async move {
                let (mut s, peer) = listener.accept().await.expect("accept");
                s.write_all(peer.ip().to_string().as_bytes())
                    .await
                    .expect("write");
            });
            let mut c = tokio::net::TcpStream::connect((ip, 8080))
                .await
                .expect("connect");
            let mut peer = String::new();
            c.read_to_string(&mut peer).await.expect("read");
            server.await.expect("server");
            // The source is the prefix's primary address (10.244.0.1) or loopback's.
            let want = if ip.is_loopback() {
                "127.0.0.1"
            } else {
                "10.244.0.1"
            };
            assert_eq!(peer, want, "a connection to {ip} comes from {want}");
        }
        // A process started from here is inside too: it sees the pod prefix on lo.
        let out = std::process::Command::new("cat")
            .arg("/proc/net/fib_trie")
            .output()
            .expect("cat");
        let trie = String::from_utf8_lossy(&out.stdout);
        assert!(trie.contains("10.244.0.1"), "{trie}");
    });
}

/// The API server, etcd and pods together inside a namespace: a pod address from an
/// EndpointSlice leads to the backend listening there.
#[test]
fn api_server_and_pods_in_a_network_namespace() {
    netns::enter();
    netns::runtime().block_on(async {
        let kube = KubeApi::start().await;
        kube.create_namespace("shop").await;
        let svc = kube.create_service("shop", "web", &[("http", 8080)]).await;
        let pods = [
            Backend::start_at("web-0", (netns::pod_ip(5), 8080).into()).await,
            Backend::start_at("web-1", (netns::pod_ip(6), 8080).into()).await,
        ];
        let eps: Vec<Endpoint> = pods
            .iter()
            .map(|p| Endpoint::pod(&p.name, p.addr.ip()))
            .collect();
        kube.put_endpoint_slice(&endpoint_slice(&svc, "x1", &[("http", 8080)], &eps))
            .await;
        let listed = kube.get(SLICES).await;
        let endpoints = listed["items"][0]["endpoints"]
            .as_array()
            .expect("endpoints");
        for (e, pod) in endpoints.iter().zip(&pods) {
            let ip = e["addresses"][0].as_str().expect("address");
            let resp = reqwest::get(format!("http://{ip}:8080/"))
                .await
                .expect("GET the pod");
            assert_eq!(resp.status(), 200);
            let body = resp.text().await.expect("body");
            assert!(
                body.contains(&format!("\"backend\":\"{}\"", pod.name)),
                "{body}"
            );
        }
    });
}

/// The pieces every Kubernetes test uses: objects written as the controller writes them,
/// a watch with its events and a bookmark, a service-account token held to its Role,
/// 410 for an expired resourceVersion, a restart that cuts watches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_against_a_real_api_server() {
    let mut kube = KubeApi::start().await;
    kube.create_namespace("shop").await;
    kube.create_namespace("other").await;
    let svc = kube.create_service("shop", "web", &[("http", 8080)]).await;
    assert!(svc["spec"]["clusterIP"]
        .as_str()
        .is_some_and(|ip| ip.starts_with("10.96.")));

    // List (nothing yet), then watch from the list's resourceVersion with bookmarks; a
    // bookmark comes 2 s before the watch's timeout.
    let list = kube.get(SLICES).await;
    assert_eq!(list["kind"], "EndpointSliceList");
    assert_eq!(list["items"], json!([]));
    let rv = list["metadata"]["resourceVersion"].as_str().expect("rv");
    let mut watch = kube
        .watch(
            &format!(
                "{SLICES}?watch=1&allowWatchBookmarks=true&timeoutSeconds=8&resourceVersion={rv}"
            ),
            None,
        )
        .await;
    assert_eq!(watch.status, 200);

    let slice = endpoint_slice(
        &svc,
        "abc12",
        &[("http", 8080)],
        &[Endpoint::pod("web-0", "10.244.0.5")],
    );
    kube.put_endpoint_slice(&slice).await;
    let added = watch.next_of("ADDED", WAIT).await;
    assert_eq!(added.name(), "web-abc12");
    assert_eq!(
        added.object["endpoints"][0]["addresses"],
        json!(["10.244.0.5"])
    );
    assert_eq!(
        added.object["metadata"]["labels"]["kubernetes.io/service-name"],
        "web"
    );
    assert_eq!(
        added.object["metadata"]["ownerReferences"][0]["uid"],
        svc["metadata"]["uid"]
    );

    let not_ready = endpoint_slice(
        &svc,
        "abc12",
        &[("http", 8080)],
        &[Endpoint::pod("web-0", "10.244.0.5").not_ready()],
    );
    kube.put_endpoint_slice(&not_ready).await;
    let modified = watch.next_of("MODIFIED", WAIT).await;
    assert_eq!(
        modified.object["endpoints"][0]["conditions"],
        json!({"ready": false, "serving": false, "terminating": false})
    );
    let listed = kube.get(SLICES).await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));

    kube.delete(&format!("{SLICES}/web-abc12")).await;
    assert_eq!(watch.next_of("DELETED", WAIT).await.name(), "web-abc12");
    let bookmark = watch.next_of("BOOKMARK", WAIT).await;
    assert!(bookmark.resource_version().parse::<u64>().is_ok());
    // Then only bookmarks, until the server ends the watch at its timeout.
    while let Some(e) = watch.next(WAIT).await {
        assert_eq!(e.kind, "BOOKMARK", "{}", e.line);
    }
    assert!(watch.closed(), "ends at its timeout");

    // A token limited to reading EndpointSlices in shop.
    let sa = kube
        .service_account_token(
            "shop",
            "reader",
            &json!([rule("discovery.k8s.io", &["endpointslices"], READ)]),
        )
        .await;
    assert_eq!(
        std::fs::read_to_string(&sa.file).expect("token file"),
        sa.token
    );
    assert_eq!(read(&kube, SLICES, &sa.token).await.status, 200);
    for path in [
        "/api/v1/namespaces/shop/services",
        "/apis/discovery.k8s.io/v1/namespaces/other/endpointslices",
        "/apis/discovery.k8s.io/v1/endpointslices",
    ] {
        let a = read(&kube, path, &sa.token).await;
        assert_eq!(a.status, 403, "{path}: {}", a.body);
        assert_eq!(a.body["reason"], "Forbidden");
        assert!(a.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("system:serviceaccount:shop:reader")));
    }
    // A restart cuts the watch; the resourceVersion it had is expired afterwards.
    let old_rv = read(&kube, SLICES, &sa.token).await.body["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    let mut sa_watch = kube
        .watch(
            &format!("{SLICES}?watch=1&allowWatchBookmarks=true&resourceVersion={old_rv}"),
            Some(&sa.token),
        )
        .await;
    assert_eq!(sa_watch.status, 200);
    kube.expire_resource_versions().await;
    assert_eq!(sa_watch.next(WAIT).await.map(|e| e.line), None);
    assert!(sa_watch.closed(), "the restart ends the watch");
    let mut expired = kube
        .watch(
            &format!("{SLICES}?watch=1&allowWatchBookmarks=true&resourceVersion={old_rv}"),
            Some(&sa.token),
        )
        .await;
    let gone = expired_status(&mut expired).await;
    assert_eq!(gone["code"], 410, "{gone}");
    assert_eq!(gone["reason"], "Expired");
    // The same token still works after the restart.
    assert_eq!(read(&kube, SLICES, &sa.token).await.status, 200);
}

async fn read(kube: &KubeApi, path: &str, token: &str) -> kube::Answer {
    kube.call(Method::GET, path, None, Some(token)).await
}

/// The 410 Status of a watch from an expired resourceVersion: the API server answers
/// 200 and sends it as an ERROR event.
async fn expired_status(watch: &mut kube::Watch) -> Value {
    assert_eq!(watch.status, 200, "a watch's 410 comes as an ERROR event");
    let e = watch.next_of("ERROR", WAIT).await;
    assert_eq!(e.object["kind"], "Status");
    e.object
}
