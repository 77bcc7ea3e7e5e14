//! The Kubernetes registry source against a real kube-apiserver and etcd
//! (tests/common/kube.rs), with RBAC on: xipgate reads with a service-account token bound to
//! exactly the Roles of `k8s/registry-rbac/roles.yaml`, applied from that file, so the
//! manifests and what the source needs cannot drift apart. The pods are real HTTP servers
//! on 10.244.0.x inside a network namespace of each test's own (tests/common/netns.rs:
//! EndpointSlice validation refuses loopback addresses); no controller-manager runs, so the
//! tests write EndpointSlices as the EndpointSlice controller does.
//!
//! Every test runs on the engine `XIPGATE_TEST_ENGINE` picks (tests/common), so `.ci/run`
//! runs the routing cases on both.

mod common;
#[path = "common/kube.rs"]
mod kube;
#[path = "common/netns.rs"]
mod netns;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use kube::{endpoint_slice, Endpoint, KubeApi, SaToken};
use serde_json::{json, Value};

/// The RBAC the source is deployed with.
const ROLES: &str = "k8s/registry-rbac/roles.yaml";
/// The ServiceAccount the Roles bind (k8s/: namespace xipgate, account xipgate).
const SA_NS: &str = "xipgate";
const SA: &str = "xipgate";
/// The port every test pod listens on (each on its own pod address).
const POD_PORT: u16 = 8080;
/// How soon a change in the API server must show in xipgate's table.
const SOON: Duration = Duration::from_secs(5);
/// How long recovering from an API server restart may take (the source backs off).
const RECOVER: Duration = Duration::from_secs(30);

/// The objects of `k8s/registry-rbac/roles.yaml` (its commented ClusterRole variant left
/// out), as JSON.
fn manifests() -> Vec<Value> {
    let path = format!("{}/{ROLES}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|d| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(d).expect("a YAML document");
            (!v.is_null()).then(|| serde_json::to_value(v).expect("YAML as JSON"))
        })
        .collect()
}

/// The commented ClusterRole variant at the end of `roles.yaml` (for `namespaces: ["*"]`).
fn cluster_variant() -> Vec<Value> {
    let path = format!("{}/{ROLES}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let tail = &text[text.find("\n# ---").expect("the commented variant")..];
    let yaml: String = tail
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    serde_yaml::Deserializer::from_str(&yaml)
        .filter_map(|d| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(d).expect("a YAML document");
            (!v.is_null()).then(|| serde_json::to_value(v).expect("YAML as JSON"))
        })
        .collect()
}

fn ns_of(v: &Value) -> Option<&str> {
    v["metadata"]["namespace"].as_str()
}

/// The collection path of an RBAC object.
fn rbac_path(v: &Value) -> String {
    let kind = v["kind"].as_str().expect("kind");
    let plural = format!("{}s", kind.to_lowercase());
    match ns_of(v) {
        Some(ns) => format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/{plural}"),
        None => format!("/apis/rbac.authorization.k8s.io/v1/{plural}"),
    }
}

/// A real API server with the namespaces and the RBAC of k8s/registry-rbac/, and a token of
/// the ServiceAccount those Roles bind.
struct Cluster {
    kube: KubeApi,
    token: SaToken,
    /// The namespaces the Roles grant (shop, pay).
    granted: Vec<String>,
}

impl Cluster {
    /// `objects`: the RBAC objects to apply (the Roles of roles.yaml, or its ClusterRole
    /// variant); `extra_ns`: more namespaces to create.
    async fn start_with(objects: Vec<Value>, extra_ns: &[&str]) -> Cluster {
        let kube = KubeApi::start().await;
        let granted: Vec<String> = objects
            .iter()
            .filter(|o| o["kind"] == "Role")
            .filter_map(|o| ns_of(o).map(String::from))
            .collect();
        let mut namespaces: Vec<String> = granted.clone();
        namespaces.push(SA_NS.into());
        namespaces.extend(extra_ns.iter().map(|s| s.to_string()));
        for ns in namespaces.iter().collect::<std::collections::BTreeSet<_>>() {
            kube.create_namespace(ns).await;
        }
        kube.create_service_account(SA_NS, SA).await;
        for o in &objects {
            kube.create(&rbac_path(o), o).await;
        }
        // A Role counts in its namespace; a ClusterRole in every namespace the test uses.
        for o in objects.iter() {
            let scope: Vec<&str> = match (o["kind"].as_str(), ns_of(o)) {
                (Some("Role"), Some(ns)) => vec![ns],
                (Some("ClusterRole"), _) => extra_ns.to_vec(),
                _ => continue,
            };
            for ns in scope {
                until_allowed(&kube, ns, &o["rules"], true).await;
            }
        }
        let token = kube.token_for(SA_NS, SA).await;
        Cluster {
            kube,
            token,
            granted,
        }
    }

    async fn start() -> Cluster {
        Self::start_with(manifests(), &[]).await
    }

    /// xipgate's config: the Kubernetes source alone (Eureka off), reading `namespaces`
    /// (YAML), pods reachable on the pod network. `extra` is appended under `xipgate:`.
    fn config(&self, namespaces: &str, eureka: Option<&str>, extra: &str) -> String {
        let eureka = match eureka {
            Some(url) => format!("    eureka:\n      urls: [\"{url}\"]\n      interval: 1s\n"),
            None => "    eureka:\n      enabled: false\n".into(),
        };
        format!(
            "  registry:\n{eureka}    kubernetes:\n      api_url: {}\n      token_file: {}\n      ca_file: {}\n      namespaces: {namespaces}\n  upstream:\n    allow: [\"10.244.0.0/16\"]\n{extra}",
            self.kube.url,
            self.token.file.display(),
            self.kube.ca_file.display()
        )
    }

    fn xipgate(&self, namespaces: &str) -> Xipgate {
        Xipgate::start_with(
            "http://127.0.0.1:9/eureka",
            &self.config(namespaces, None, ""),
            "",
            true,
        )
    }

    async fn service(&self, ns: &str, name: &str) -> Value {
        self.kube
            .create_service(ns, name, &[("http", POD_PORT)])
            .await
    }

    /// Creates or replaces the slice `<service>-<suffix>` with `endpoints`.
    async fn slice(&self, service: &Value, suffix: &str, endpoints: &[Endpoint]) {
        self.kube
            .put_endpoint_slice(&endpoint_slice(
                service,
                suffix,
                &[("http", POD_PORT)],
                endpoints,
            ))
            .await;
    }
}

/// Polls SubjectAccessReviews until every verb of `rules` in `ns` is `allowed` (true) or
/// not (false) for the ServiceAccount: RBAC reads its objects through informers, so a
/// change takes a moment to count.
async fn until_allowed(kube: &KubeApi, ns: &str, rules: &Value, allowed: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for rule in rules.as_array().into_iter().flatten() {
        let group = rule["apiGroups"][0].as_str().unwrap_or_default();
        for resource in rule["resources"].as_array().into_iter().flatten() {
            for verb in rule["verbs"].as_array().into_iter().flatten() {
                let review = json!({
                    "apiVersion": "authorization.k8s.io/v1",
                    "kind": "SubjectAccessReview",
                    "spec": {
                        "user": format!("system:serviceaccount:{SA_NS}:{SA}"),
                        "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{SA_NS}"), "system:authenticated"],
                        "resourceAttributes": {"namespace": ns, "group": group, "resource": resource, "verb": verb}
                    }
                });
                loop {
                    let v = kube
                        .create(
                            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                            &review,
                        )
                        .await;
                    if v["status"]["allowed"].as_bool().unwrap_or(false) == allowed {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "RBAC did not turn {verb} {resource} in {ns} allowed={allowed}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// A pod: a real HTTP server on its own pod address, and its name.
struct Pod {
    name: String,
    addr: SocketAddr,
    _backend: Backend,
}

impl Pod {
    async fn start(name: &str, n: u8) -> Pod {
        let addr = SocketAddr::new(netns::pod_ip(n), POD_PORT);
        Pod {
            name: name.into(),
            addr,
            _backend: Backend::start_at(name, addr).await,
        }
    }

    fn ready(&self) -> Endpoint {
        Endpoint::pod(&self.name, self.addr.ip())
    }

    /// Its host label: `<pod>-<port>`.
    fn label(&self) -> String {
        format!("{}-{POD_PORT}", self.name)
    }
}

fn backend_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["backend"].as_str().map(String::from))
        .unwrap_or_default()
}

/// The backends `label`'s host reached over `n` requests.
fn spread(x: &Xipgate, label: &str, n: usize) -> HashSet<String> {
    (0..n).map(|_| backend_of(&x.get(label, "/").2)).collect()
}

fn names(list: &[&str]) -> HashSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Polls until `f` holds, or fails with `what`, the source's state and the log.
fn until(x: &Xipgate, within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {within:?}\nsource: {}\n{}",
            source(x),
            x.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The Kubernetes source's status in `/api/v1/registry` (`registries`, kind `kubernetes`).
fn source(x: &Xipgate) -> Value {
    let reg = x.api("/api/v1/registry").1;
    reg["registries"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["kind"] == "kubernetes")
        .cloned()
        .unwrap_or(Value::Null)
}

/// The source's error as shown, or "".
fn source_error(x: &Xipgate) -> String {
    source(x)["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Sum of a counter over the source's reflectors (`lists`, `watches`, `events`).
fn counter(x: &Xipgate, key: &str) -> u64 {
    source(x)["detail"]["reflectors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r[key].as_u64())
        .sum()
}

/// The console's error line of the Kubernetes source, or "".
fn console_error(x: &Xipgate) -> String {
    let page = x.api("/").1.as_str().unwrap_or_default().to_string();
    page.split("data-kind=\"kubernetes\"")
        .nth(1)
        .and_then(|line| line.split("class=\"err\">").nth(1))
        .and_then(|err| err.split("</span>").next())
        .unwrap_or_default()
        .to_string()
}

fn instance(x: &Xipgate, label: &str) -> Value {
    x.api(&format!("/api/v1/instances/{label}")).1
}

/// A Service with two ready pods: both pod hosts and the service host route; a pod that
/// turns not-ready leaves the rotation while its own host still answers with its status; a
/// deleted pod's host is 404 within a few seconds; a new EndpointSlice is routed.
#[test]
fn pods_and_their_service_route_and_follow_the_endpoint_slices() {
    netns::enter();
    netns::runtime().block_on(async {
        let c = Cluster::start().await;
        let a = Pod::start("orders-7d9f8-aaaaa", 11).await;
        let b = Pod::start("orders-7d9f8-bbbbb", 12).await;
        let svc = c.service("shop", "orders").await;
        c.slice(&svc, "x1", &[a.ready(), b.ready()]).await;
        let x = c.xipgate("[shop, pay]");

        until(&x, SOON, "both pods routed", || {
            x.get(&a.label(), "/").0 == 200 && x.get(&b.label(), "/").0 == 200
        });
        for p in [&a, &b] {
            let (status, headers, body) = x.get(&p.label(), "/hello");
            assert_eq!(status, 200, "{body}");
            assert_eq!(backend_of(&body), p.name);
            let id = format!("{}:orders:{POD_PORT}", p.name);
            assert_eq!(header(&headers, "x-served-by"), Some(id.as_str()));
            let i = instance(&x, &p.label());
            assert_eq!(i["source"], "kubernetes", "{i}");
            assert_eq!(i["status"], "UP", "{i}");
        }
        assert_eq!(spread(&x, "orders", 20), names(&[&a.name, &b.name]));

        // a turns not-ready but still serving: OUT_OF_SERVICE, out of the rotation, its own
        // host answers and says so.
        c.slice(
            &svc,
            "x1",
            &[a.ready().conditions(false, true, false), b.ready()],
        )
        .await;
        until(&x, SOON, "a leaves the rotation", || {
            spread(&x, "orders", 6) == names(&[&b.name])
        });
        let (status, headers, body) = x.get(&a.label(), "/");
        assert_eq!((status, backend_of(&body)), (200, a.name.clone()), "{body}");
        assert_eq!(
            header(&headers, "x-xipgate-instance-status"),
            Some("OUT_OF_SERVICE")
        );
        // Terminating: DOWN.
        c.slice(&svc, "x1", &[a.ready().terminating(), b.ready()])
            .await;
        until(&x, SOON, "a is DOWN", || {
            header(&x.get(&a.label(), "/").1, "x-xipgate-instance-status") == Some("DOWN")
        });
        assert_eq!(spread(&x, "orders", 6), names(&[&b.name]));

        // Deleted (gone from its slice): 404 within a few seconds.
        let gone = Instant::now();
        c.slice(&svc, "x1", &[b.ready()]).await;
        until(&x, SOON, "a's host is 404", || {
            x.get(&a.label(), "/").0 == 404
        });
        eprintln!("a deleted pod was 404 after {:?}", gone.elapsed());

        // A new EndpointSlice of the same Service: its pod is routed, by both names.
        let d = Pod::start("orders-7d9f8-ddddd", 14).await;
        c.slice(&svc, "x2", &[d.ready()]).await;
        until(&x, SOON, "d routed", || x.get(&d.label(), "/").0 == 200);
        until(&x, SOON, "d in the rotation", || {
            spread(&x, "orders", 10) == names(&[&b.name, &d.name])
        });
        assert_eq!(x.api("/api/v1/registry").1["instances"], 2);
    });
}

/// The API server restarted (every watch cut): the source resumes or lists again and
/// loses nothing; every resourceVersion expired (compaction + restart): it lists again.
/// Read from the source's own counters, not its log.
#[test]
fn a_cut_watch_resumes_and_an_expired_version_lists_again() {
    netns::enter();
    netns::runtime().block_on(async {
        let mut c = Cluster::start().await;
        let a = Pod::start("orders-7d9f8-aaaaa", 11).await;
        let b = Pod::start("billing-5c4b3-bbbbb", 12).await;
        let orders = c.service("shop", "orders").await;
        let billing = c.service("pay", "billing").await;
        c.slice(&orders, "x1", &[a.ready()]).await;
        c.slice(&billing, "x1", &[b.ready()]).await;
        let x = c.xipgate("[shop, pay]");
        until(&x, SOON, "both routed", || {
            x.get(&a.label(), "/").0 == 200 && x.get(&b.label(), "/").0 == 200
        });
        let (lists0, watches0) = (counter(&x, "lists"), counter(&x, "watches"));
        assert!(
            lists0 >= 4 && watches0 >= 4,
            "two resources in two namespaces: {}",
            source(&x)
        );

        // Restart: the watches are cut; the source comes back by itself.
        c.kube.restart().await;
        let d = Pod::start("orders-7d9f8-ddddd", 14).await;
        c.slice(&orders, "x1", &[a.ready(), d.ready()]).await;
        until(&x, RECOVER, "a change after the restart is applied", || {
            x.get(&d.label(), "/").0 == 200
        });
        assert_eq!(x.get(&a.label(), "/").0, 200, "nothing lost");
        assert_eq!(x.get(&b.label(), "/").0, 200, "nothing lost");
        assert_eq!(x.api("/api/v1/registry").1["instances"], 3);
        let (lists1, watches1) = (counter(&x, "lists"), counter(&x, "watches"));
        eprintln!(
            "after the restart: lists {lists0} -> {lists1}, watches {watches0} -> {watches1}"
        );
        assert!(
            lists1 + watches1 > lists0 + watches0,
            "resumed or listed again: {}",
            source(&x)
        );
        assert_eq!(source_error(&x), "", "recovered: {}", source(&x));

        // Every version handed out so far expires: a resumed watch meets 410, so it lists.
        c.kube.expire_resource_versions().await;
        c.slice(&orders, "x1", &[a.ready()]).await;
        until(&x, RECOVER, "d's removal is applied", || {
            x.get(&d.label(), "/").0 == 404
        });
        until(&x, SOON, "listed again after 410", || {
            counter(&x, "lists") > lists1
        });
        eprintln!(
            "after the expiry: lists {lists1} -> {}",
            counter(&x, "lists")
        );
        assert_eq!(x.get(&a.label(), "/").0, 200, "nothing lost");
        assert_eq!(x.get(&b.label(), "/").0, 200, "nothing lost");
        assert_eq!(x.api("/api/v1/registry").1["instances"], 2);
    });
}

/// The API server down: the last good set stays routed and the error is shown in
/// `/api/v1/registry`; back up, the error clears and changes flow again.
#[test]
fn the_api_server_down_keeps_the_last_good_set_and_says_so() {
    netns::enter();
    netns::runtime().block_on(async {
        let mut c = Cluster::start().await;
        let a = Pod::start("orders-7d9f8-aaaaa", 11).await;
        let svc = c.service("shop", "orders").await;
        c.slice(&svc, "x1", &[a.ready()]).await;
        let x = c.xipgate("[shop, pay]");
        until(&x, SOON, "routed", || x.get(&a.label(), "/").0 == 200);

        c.kube.stop();
        until(&x, RECOVER, "the error is shown", || {
            !source_error(&x).is_empty()
        });
        let err = source_error(&x);
        assert!(
            err.contains(&c.kube.addr.port().to_string()),
            "names the API server: {err}"
        );
        for _ in 0..10 {
            assert_eq!(x.get(&a.label(), "/").0, 200, "the last good set is kept");
            assert_eq!(x.get("orders", "/").0, 200, "the last good set is kept");
        }
        assert_eq!(x.api("/readyz").0, 200, "still ready on the last good set");
        let page = console_error(&x);
        assert!(
            page.contains(&format!("127.0.0.1:{}", c.kube.addr.port())),
            "the console shows the error: {page}"
        );

        c.kube.start_again().await;
        let b = Pod::start("orders-7d9f8-bbbbb", 12).await;
        c.slice(&svc, "x1", &[a.ready(), b.ready()]).await;
        until(&x, RECOVER, "changes flow again", || {
            x.get(&b.label(), "/").0 == 200
        });
        until(&x, SOON, "the error clears", || source_error(&x).is_empty());
    });
}

/// Only the listed namespaces are exposed (pay is granted by the Roles but not listed);
/// a Service annotated `xipgate.io/expose: "false"` is left out, and comes back when the
/// annotation goes.
#[test]
fn the_namespace_filter_and_the_opt_out_annotation_hold() {
    netns::enter();
    netns::runtime().block_on(async {
        let c = Cluster::start().await;
        assert!(c.granted.contains(&"pay".to_string()), "{:?}", c.granted);
        let a = Pod::start("orders-7d9f8-aaaaa", 11).await;
        let b = Pod::start("vault-6b5a4-bbbbb", 12).await;
        let p = Pod::start("billing-5c4b3-ppppp", 13).await;
        let orders = c.service("shop", "orders").await;
        let mut vault = kube::service("shop", "vault", &[("http", POD_PORT)]);
        vault["metadata"]["annotations"] = json!({"xipgate.io/expose": "false"});
        let vault = c
            .kube
            .create("/api/v1/namespaces/shop/services", &vault)
            .await;
        let billing = c.service("pay", "billing").await;
        c.slice(&orders, "x1", &[a.ready()]).await;
        c.slice(&vault, "x1", &[b.ready()]).await;
        c.slice(&billing, "x1", &[p.ready()]).await;
        let x = c.xipgate("[shop]");
        until(&x, SOON, "orders routed", || {
            x.get(&a.label(), "/").0 == 200
        });

        for (label, what) in [
            (b.label(), "an opted-out Service's pod"),
            ("vault".into(), "an opted-out Service"),
            (p.label(), "a pod of a namespace not listed"),
            ("billing".into(), "a Service of a namespace not listed"),
        ] {
            assert_eq!(x.get(&label, "/").0, 404, "{what} is not exposed");
        }
        assert_eq!(x.api("/api/v1/registry").1["instances"], 1);
        let s = source(&x);
        assert!(
            s.to_string().contains("shop/vault"),
            "opted out, listed: {s}"
        );

        // The annotation removed: exposed (the Services are watched too).
        let mut v = c.kube.get("/api/v1/namespaces/shop/services/vault").await;
        v["metadata"]["annotations"] = json!({});
        c.kube
            .replace("/api/v1/namespaces/shop/services/vault", &v)
            .await;
        until(&x, SOON, "vault exposed", || {
            x.get(&b.label(), "/").0 == 200
        });
        assert_eq!(backend_of(&x.get("vault", "/").2), b.name);
        // And orders opted out: gone.
        let mut o = c.kube.get("/api/v1/namespaces/shop/services/orders").await;
        o["metadata"]["annotations"] = json!({"xipgate.io/expose": "false"});
        c.kube
            .replace("/api/v1/namespaces/shop/services/orders", &o)
            .await;
        until(&x, SOON, "orders left out", || {
            x.get(&a.label(), "/").0 == 404
        });
        assert_eq!(x.get("orders", "/").0, 404);
        assert_eq!(x.get(&p.label(), "/").0, 404, "pay still not listed");
    });
}

/// `namespaces: ["*"]` with the ClusterRole variant of roles.yaml: every namespace is read
/// but kube-system.
#[test]
fn all_namespaces_leave_kube_system_out() {
    netns::enter();
    netns::runtime().block_on(async {
        let c = Cluster::start_with(cluster_variant(), &["shop", "pay"]).await;
        let a = Pod::start("orders-7d9f8-aaaaa", 11).await;
        let p = Pod::start("billing-5c4b3-ppppp", 12).await;
        let k = Pod::start("coredns-5d78c-kkkkk", 13).await;
        let orders = c.service("shop", "orders").await;
        let billing = c.service("pay", "billing").await;
        let dns = c.service("kube-system", "kube-dns").await;
        c.slice(&orders, "x1", &[a.ready()]).await;
        c.slice(&billing, "x1", &[p.ready()]).await;
        c.slice(&dns, "x1", &[k.ready()]).await;
        let x = c.xipgate("[\"*\"]");
        until(&x, SOON, "shop and pay routed", || {
            x.get(&a.label(), "/").0 == 200 && x.get(&p.label(), "/").0 == 200
        });
        assert_eq!(
            x.get(&k.label(), "/").0,
            404,
            "kube-system is never exposed by *"
        );
        assert_eq!(x.get("kube-dns", "/").0, 404);
        assert_eq!(x.api("/api/v1/registry").1["instances"], 2);
    });
}

/// A Service name also registered in Eureka (the stand-in Eureka of tests/common, which
/// serves what a recorded Spring Cloud Eureka server serves): one service host over both
/// sources; the same pod registered in both (same application and instanceId, as Spring's
/// Eureka client names it) is taken from Eureka, the higher-ranked source, and the
/// Kubernetes copy is listed as shadowed.
#[test]
fn a_name_also_in_eureka_follows_the_merge_rule() {
    netns::enter();
    netns::runtime().block_on(async {
        let c = Cluster::start().await;
        let a = Pod::start("orders-7d9f8-aaaaa", 11).await; // in both
        let b = Pod::start("orders-7d9f8-bbbbb", 12).await; // Kubernetes only
        let e = Pod::start("orders-vm-eeeee", 13).await; // Eureka only (a VM, say)
        let svc = c.service("shop", "orders").await;
        c.slice(&svc, "x1", &[a.ready(), b.ready()]).await;
        let eureka = StubEureka::start().await;
        eureka
            .serve(&[
                Inst::up("orders", &a.name, a.addr),
                Inst::up("orders", &e.name, e.addr),
            ])
            .await;
        let x = Xipgate::start_with(
            &eureka.url(),
            &c.config("[shop]", Some(&eureka.url()), ""),
            "",
            true,
        );
        until(&x, SOON, "all three routed", || {
            [&a, &b, &e].iter().all(|p| x.get(&p.label(), "/").0 == 200)
        });
        assert_eq!(instance(&x, &a.label())["source"], "eureka");
        assert_eq!(instance(&x, &b.label())["source"], "kubernetes");
        assert_eq!(instance(&x, &e.label())["source"], "eureka");
        until(&x, SOON, "one service over both sources", || {
            spread(&x, "orders", 30) == names(&[&a.name, &b.name, &e.name])
        });
        let reg = x.api("/api/v1/registry").1;
        assert_eq!(reg["instances"], 3, "{reg}");
        let shadowed = reg["shadowed"].to_string();
        assert!(
            shadowed.contains("kubernetes") && shadowed.contains(&a.name),
            "the Kubernetes copy of a is shadowed: {shadowed}"
        );
    });
}

/// RBAC: each verb of the Roles in k8s/registry-rbac/ removed in turn (from the Role of
/// shop): `/api/v1/registry` and the console name the verb and the resource refused; the
/// verb granted again, the source recovers without a restart. A verb the source does not
/// need would fail here: the Roles grant exactly what it uses.
#[test]
fn a_missing_verb_is_named_on_the_console_and_in_the_api() {
    netns::enter();
    netns::runtime().block_on(async {
        let c = Cluster::start().await;
        let a = Pod::start("orders-7d9f8-aaaaa", 11).await;
        let svc = c.service("shop", "orders").await;
        c.slice(&svc, "x1", &[a.ready()]).await;
        let role = manifests()
            .into_iter()
            .find(|o| o["kind"] == "Role" && ns_of(o) == Some("shop"))
            .expect("a Role for shop in roles.yaml");
        let path = format!(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/shop/roles/{}",
            role["metadata"]["name"].as_str().expect("name")
        );
        let rules = role["rules"].as_array().expect("rules").clone();
        for (r, rule) in rules.iter().enumerate() {
            let group = rule["apiGroups"][0].as_str().unwrap_or_default();
            for resource in rule["resources"].as_array().expect("resources") {
                let resource = resource.as_str().expect("resource");
                let qualified = if group.is_empty() {
                    resource.to_string()
                } else {
                    format!("{resource}.{group}")
                };
                for verb in rule["verbs"].as_array().expect("verbs") {
                    let verb = verb.as_str().expect("verb");
                    let mut narrowed = role.clone();
                    let verbs: Vec<Value> = rule["verbs"]
                        .as_array()
                        .expect("verbs")
                        .iter()
                        .filter(|v| *v != verb)
                        .cloned()
                        .collect();
                    narrowed["rules"][r]["verbs"] = json!(verbs);
                    let mut current = c.kube.get(&path).await;
                    current["rules"] = narrowed["rules"].clone();
                    c.kube.replace(&path, &current).await;
                    let removed =
                        json!([{"apiGroups": [group], "resources": [resource], "verbs": [verb]}]);
                    until_allowed(&c.kube, "shop", &removed, false).await;

                    let x = Xipgate::start_with(
                        "http://127.0.0.1:9/eureka",
                        &c.config("[shop, pay]", None, ""),
                        "",
                        false,
                    );
                    let named = format!("forbidden: {verb} {qualified} in namespace \"shop\"");
                    until(&x, RECOVER, &named, || source_error(&x).contains(&named));
                    // The console's error line (HTML-escaped quotes aside).
                    let shown = format!("forbidden: {verb} {qualified} in namespace ");
                    let page = console_error(&x);
                    assert!(page.contains(&shown), "the console names it: {page}");

                    // Granted again: the source recovers by itself.
                    let mut current = c.kube.get(&path).await;
                    current["rules"] = role["rules"].clone();
                    c.kube.replace(&path, &current).await;
                    until(&x, RECOVER, "recovered once granted", || {
                        source_error(&x).is_empty() && x.get(&a.label(), "/").0 == 200
                    });
                }
            }
        }
    });
}
