//! Records tests/fixtures/kube/ from the real kube-apiserver (tests/common/kube.rs): the
//! bytes it sends for the lists, watch events and errors the Kubernetes source and the
//! ACME store meet, for unit tests that parse them. Re-record after a version change:
//!
//!     XIPGATE_RECORD_FIXTURES=1 cargo test --test kube_record
//!
//! Without that variable the same recording runs into a temporary directory, as a check
//! that the real server still answers as recorded (every status asserted, the same files).
//!
//! The other test here checks that the recorded files are there and have the shape
//! their names promise.

mod common;
#[path = "common/kube.rs"]
mod kube;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use kube::{endpoint_slice, rule, service, Endpoint, KubeApi, READ};
use reqwest::Method;
use serde_json::{json, Value};

const SHOP: &str = "/api/v1/namespaces/shop";
const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/shop/leases";
const WAIT: Duration = Duration::from_secs(15);

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kube")
}

/// Where this run records: the fixtures when re-recording, else a directory of its own.
fn out_dir() -> PathBuf {
    if std::env::var_os("XIPGATE_RECORD_FIXTURES").is_some() {
        dir()
    } else {
        std::env::temp_dir().join(format!("xipgate-kube-record-{}", std::process::id()))
    }
}

fn save(name: &str, bytes: &[u8]) {
    std::fs::write(out_dir().join(name), bytes).expect("write fixture");
}

fn save_answer(name: &str, a: &kube::Answer, status: u16) {
    assert_eq!(
        a.status,
        status,
        "{name}: {}",
        String::from_utf8_lossy(&a.raw)
    );
    save(name, &a.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_fixtures() {
    std::fs::create_dir_all(out_dir()).expect("fixtures dir");
    let mut kube = KubeApi::start().await;
    kube.create_namespace("shop").await;

    // Services: two with selectors, one without (its slice is written by someone else).
    let web = kube.create_service("shop", "web", &[("http", 8080)]).await;
    let mut api = service("shop", "api", &[("http", 8080), ("management", 9090)]);
    api["metadata"]["annotations"] = json!({"example.com/owner": "team-a"});
    let api = kube.create(&format!("{SHOP}/services"), &api).await;
    let mut external = service("shop", "external", &[("https", 443)]);
    external["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("selector");
    let external = kube.create(&format!("{SHOP}/services"), &external).await;

    // The watch: from the list's resourceVersion, with bookmarks, ending at its timeout.
    let rv = kube.get(SLICES).await["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    let mut watch = kube
        .watch(
            &format!(
                "{SLICES}?watch=1&allowWatchBookmarks=true&timeoutSeconds=6&resourceVersion={rv}"
            ),
            None,
        )
        .await;
    let web_eps = [
        Endpoint::pod("web-7d9f8b6c5-x2x4q", "10.244.0.5").node("node-a"),
        Endpoint::pod("web-7d9f8b6c5-k8j2m", "10.244.0.6").node("node-b"),
    ];
    let web_slice = endpoint_slice(&web, "abc12", &[("http", 8080)], &web_eps);
    kube.put_endpoint_slice(&web_slice).await;
    let changed = [
        web_eps[0].clone(),
        web_eps[1].clone().not_ready(),
        Endpoint::pod("web-7d9f8b6c5-p9q7r", "10.244.0.7")
            .node("node-a")
            .terminating(),
    ];
    kube.put_endpoint_slice(&endpoint_slice(&web, "abc12", &[("http", 8080)], &changed))
        .await;
    let gone = endpoint_slice(
        &web,
        "zz999",
        &[("http", 8080)],
        &[Endpoint::pod("web-7d9f8b6c5-old00", "10.244.0.9")],
    );
    kube.put_endpoint_slice(&gone).await;
    kube.delete(&format!("{SLICES}/web-zz999")).await;
    for kind in ["ADDED", "MODIFIED", "ADDED", "DELETED", "BOOKMARK"] {
        watch.next_of(kind, WAIT).await;
    }
    while watch.next(WAIT).await.is_some() {}
    assert!(watch.closed());
    let lines: String = watch.seen.iter().map(|e| format!("{}\n", e.line)).collect();
    save("watch-endpointslices.jsonl", lines.as_bytes());

    // The lists, with slices in every state: the web slice above, a two-port slice, and
    // one without pods (no targetRef), managed by someone else.
    kube.put_endpoint_slice(&endpoint_slice(
        &api,
        "q1w2e",
        &[("http", 8080), ("management", 9090)],
        &[Endpoint::pod("api-5c4b3a2-zx9cv", "10.244.1.10").node("node-b")],
    ))
    .await;
    let mut manual = endpoint_slice(&external, "manual", &[("https", 443)], &[]);
    manual["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] = json!("staff");
    manual["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("ownerReferences");
    manual["endpoints"] = json!([{"addresses": ["192.0.2.10"], "conditions": {"ready": true}}]);
    kube.put_endpoint_slice(&manual).await;
    let get = |path: String| {
        let kube = &kube;
        async move { kube.call(Method::GET, &path, None, None).await }
    };
    save_answer("endpointslice-list.json", &get(SLICES.into()).await, 200);
    save_answer(
        "service-list.json",
        &get(format!("{SHOP}/services")).await,
        200,
    );

    // Errors: 401 (a token nobody knows), 403 (a token without the verb), 404.
    let a = kube
        .call(Method::GET, SLICES, None, Some("not-a-token"))
        .await;
    save_answer("unauthorized-401.json", &a, 401);
    let sa = kube
        .service_account_token(
            "shop",
            "xipgate",
            &json!([rule("discovery.k8s.io", &["endpointslices"], READ)]),
        )
        .await;
    let a = kube
        .call(
            Method::GET,
            &format!("{SHOP}/services"),
            None,
            Some(&sa.token),
        )
        .await;
    save_answer("forbidden-403.json", &a, 403);
    let a = get(format!("{SHOP}/secrets/no-such-secret")).await;
    save_answer("not-found-404.json", &a, 404);

    // A TLS Secret and a Lease, as the ACME store keeps them; 409s for both kinds.
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": "wildcard-127-0-0-1-sslip-io", "namespace": "shop"},
        "data": tls_data("*.127-0-0-1.sslip.io"),
    });
    kube.create(&format!("{SHOP}/secrets"), &secret).await;
    save_answer(
        "secret-tls.json",
        &get(format!("{SHOP}/secrets/wildcard-127-0-0-1-sslip-io")).await,
        200,
    );
    let a = kube
        .call(
            Method::POST,
            &format!("{SHOP}/secrets"),
            Some(&secret),
            None,
        )
        .await;
    save_answer("already-exists-409.json", &a, 409);
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "xipgate-acme", "namespace": "shop"},
        "spec": {
            "holderIdentity": "xipgate-7f6d5c4b3-abcde",
            "leaseDurationSeconds": 30,
            "acquireTime": "2026-01-02T03:04:05.000000Z",
            "renewTime": "2026-01-02T03:04:15.000000Z",
            "leaseTransitions": 0
        }
    });
    let created = kube.create(LEASES, &lease).await;
    let mut renewed = created.clone();
    renewed["spec"]["renewTime"] = json!("2026-01-02T03:04:25.000000Z");
    kube.replace(&format!("{LEASES}/xipgate-acme"), &renewed)
        .await;
    save_answer(
        "lease.json",
        &get(format!("{LEASES}/xipgate-acme")).await,
        200,
    );
    // `created` carries the resourceVersion before the renewal: stale now.
    let a = kube
        .call(
            Method::PUT,
            &format!("{LEASES}/xipgate-acme"),
            Some(&created),
            None,
        )
        .await;
    save_answer("conflict-409.json", &a, 409);

    // 410: a watch resumed from a resourceVersion that expired meanwhile.
    let old = kube.get(SLICES).await["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    kube.expire_resource_versions().await;
    let mut expired = kube
        .watch(
            &format!("{SLICES}?watch=1&allowWatchBookmarks=true&resourceVersion={old}"),
            Some(&sa.token),
        )
        .await;
    assert_eq!(expired.status, 200);
    let e = expired.next_of("ERROR", WAIT).await;
    save(
        "watch-expired-410.jsonl",
        format!("{}\n", e.line).as_bytes(),
    );

    // Not re-recording: this run recorded exactly the files the fixtures hold.
    let out = out_dir();
    if out != dir() {
        let names = |d: &Path| -> std::collections::BTreeSet<String> {
            std::fs::read_dir(d)
                .expect("read dir")
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json") || n.ends_with(".jsonl"))
                .collect()
        };
        assert_eq!(
            names(&out),
            names(&dir()),
            "recorded files vs tests/fixtures/kube"
        );
        let _ = std::fs::remove_dir_all(&out);
    }
}

/// `tls.crt` and `tls.key` (base64, as a Secret's `data` holds them) of a self-signed
/// certificate for `name`.
fn tls_data(name: &str) -> Value {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec![name.to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    json!({"tls.crt": b64(cert.pem()), "tls.key": b64(key.serialize_pem())})
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("tests/fixtures/kube/{name}: {e}"))
}

fn json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn watch_lines(name: &str) -> Vec<Value> {
    String::from_utf8(fixture(name))
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {e}: {l}")))
        .collect()
}

/// The recorded files are there and are what their names say.
#[test]
fn fixtures_have_their_shapes() {
    let slices = json("endpointslice-list.json");
    assert_eq!(slices["kind"], "EndpointSliceList");
    assert_eq!(slices["items"].as_array().map(Vec::len), Some(3));
    assert_eq!(json("service-list.json")["kind"], "ServiceList");
    let events: Vec<String> = watch_lines("watch-endpointslices.jsonl")
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("").to_string())
        .collect();
    for kind in ["ADDED", "MODIFIED", "DELETED", "BOOKMARK"] {
        assert!(events.iter().any(|e| e == kind), "{kind} in {events:?}");
    }
    let expired = &watch_lines("watch-expired-410.jsonl")[0];
    assert_eq!(expired["type"], "ERROR");
    assert_eq!(expired["object"]["code"], 410);
    assert_eq!(expired["object"]["reason"], "Expired");
    for (name, code, reason) in [
        ("unauthorized-401.json", 401, "Unauthorized"),
        ("forbidden-403.json", 403, "Forbidden"),
        ("not-found-404.json", 404, "NotFound"),
        ("already-exists-409.json", 409, "AlreadyExists"),
        ("conflict-409.json", 409, "Conflict"),
    ] {
        let s = json(name);
        assert_eq!(
            (&s["kind"], &s["code"], &s["reason"]),
            (&json!("Status"), &json!(code), &json!(reason)),
            "{name}"
        );
    }
    let secret = json("secret-tls.json");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert!(secret["data"]["tls.crt"].is_string() && secret["data"]["tls.key"].is_string());
    let lease = json("lease.json");
    assert_eq!(lease["kind"], "Lease");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 30);
}
