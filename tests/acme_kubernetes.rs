//! ACME across replicas without a shared volume: the Kubernetes store against a real
//! kube-apiserver and etcd (tests/common/kube.rs) and Debian's pebble. Each xipgate runs
//! with a service-account token bound to exactly the rules of k8s/rbac-acme.yaml (its
//! Secret names set to this test's domain), on an API server that authorizes with RBAC
//! only: a verb the store uses and the Role lacks fails these tests.
//!
//! - Two replicas: one Lease holder orders, the CA's queries reach both (a relay sends
//!   them round robin, as a Service would), both serve the one certificate stored in a
//!   `kubernetes.io/tls` Secret, both serve its renewal; one account Secret, kept.
//! - The holder killed mid-order (its values published, its Lease held): the other
//!   takes the Lease over once it expires, and the certificate is issued.
//! - Another writer between each read and write (a real 409 from the API server, made by
//!   tests/common/meddler.rs): every write is retried from a fresh read and goes through.
//! - Each verb of the Role removed in turn: the error on `/api/v1/tls` names it.

mod common;
#[path = "common/kube.rs"]
mod kube;
#[path = "common/meddler.rs"]
mod meddler;
#[path = "common/pebble.rs"]
mod pebble;
#[path = "common/pki.rs"]
mod pki;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use common::*;
use kube::KubeApi;
use pebble::Pebble;
use reqwest::Method;
use serde::Deserialize as _;
use serde_json::{json, Value};
use tokio::net::UdpSocket;

const NS: &str = "edge";
const PREFIX: &str = "xipgate-acme";
const WILD: &str = "*.127-0-0-1.sslip.io";
/// The Lease duration the replicas run with: short, so a takeover comes soon.
const LEASE_SECS: u64 = 4;

fn cert_secret() -> String {
    format!("{PREFIX}-{}", DOMAIN.replace('.', "-"))
}

fn secrets_path(ns: &str) -> String {
    format!("/api/v1/namespaces/{ns}/secrets")
}

fn config_map_path(ns: &str) -> String {
    format!("/api/v1/namespaces/{ns}/configmaps/{PREFIX}-challenges")
}

fn leases_path(ns: &str) -> String {
    format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases")
}

/// The Role's rules from k8s/rbac-acme.yaml, with the shipped example domain's Secret
/// renamed to this test's.
fn shipped_rules() -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("k8s/rbac-acme.yaml")).expect("rbac-acme.yaml");
    let role = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_yaml::Value::deserialize(d).expect("yaml"))
        .find(|d| d["kind"].as_str() == Some("Role"))
        .expect("a Role in k8s/rbac-acme.yaml");
    let mut rules: Value = serde_json::to_value(&role["rules"]).expect("rules as JSON");
    for r in rules.as_array_mut().into_iter().flatten() {
        for n in r["resourceNames"].as_array_mut().into_iter().flatten() {
            if n == "xipgate-acme-10-0-0-5-sslip-io" {
                *n = json!(cert_secret());
            }
        }
    }
    rules
}

/// `rules` without `verb` on `resource`.
fn without(rules: &Value, resource: &str, verb: &str) -> Value {
    let mut out = Vec::new();
    for r in rules.as_array().into_iter().flatten() {
        let mut r = r.clone();
        if r["resources"]
            .as_array()
            .is_some_and(|rs| rs.iter().any(|x| x == resource))
        {
            if let Some(verbs) = r["verbs"].as_array_mut() {
                verbs.retain(|v| v != verb);
                if verbs.is_empty() {
                    continue;
                }
            }
        }
        out.push(r);
    }
    Value::Array(out)
}

/// A namespace and a token for the ServiceAccount `xipgate` in it bound to `rules`.
async fn token(kube: &KubeApi, ns: &str, rules: &Value) -> std::path::PathBuf {
    kube.create_namespace(ns).await;
    kube.service_account_token(ns, "xipgate", rules).await.file
}

struct Replica<'a> {
    dns: SocketAddr,
    self_check: &'a [SocketAddr],
    directory: &'a str,
    directory_ca: &'a Path,
    ns: &'a str,
    token_file: &'a Path,
}

fn replica_yaml(kube: &KubeApi, r: &Replica) -> String {
    replica_yaml_at(kube, &kube.url, r)
}

/// Like [`replica_yaml`], with the API server at `api_url`.
fn replica_yaml_at(kube: &KubeApi, api_url: &str, r: &Replica) -> String {
    let checks: Vec<String> = r.self_check.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "  dns:\n    listen: [\"{dns}\"]\n    edge_ips: [\"127.0.0.1\"]\n  tls:\n    listen: [\"HTTPS_ADDR\"]\n    reload_interval: 100ms\n  acme:\n    directory: {directory}\n    directory_ca: {ca}\n    terms_agreed: true\n    check_interval: 1s\n    self_check: [{checks}]\n    self_check_timeout: 60s\n    store:\n      kubernetes:\n        namespace: {ns}\n        api_url: {url}\n        token_file: {token}\n        ca_file: {kube_ca}\n        lease_duration: {LEASE_SECS}s\n",
        dns = r.dns,
        directory = r.directory,
        ca = r.directory_ca.display(),
        checks = checks.join(", "),
        ns = r.ns,
        url = api_url,
        token = r.token_file.display(),
        kube_ca = kube.ca_file.display(),
    )
}

fn tls_state(x: &Xipgate) -> Value {
    x.api("/api/v1/tls").1
}

/// Polls `/api/v1/tls` (off the runtime's threads) until `want` holds.
async fn wait_tls(
    x: &Xipgate,
    within: Duration,
    what: &str,
    want: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let body = tokio::task::block_in_place(|| tls_state(x));
        if want(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {within:?}: {body}\n{}",
            x.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn acme_cert_loaded(body: &Value) -> bool {
    body["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| {
            c["origin"] == "acme"
                && c["names"]
                    .as_array()
                    .is_some_and(|n| n.iter().any(|n| n == WILD))
        })
}

fn orders_ok(body: &Value) -> u64 {
    body["acme"][0]["orders_ok"].as_u64().unwrap_or(0)
}

/// The serial of the certificate served for `sni`, and whether it verifies against `root`.
fn served_serial(addr: SocketAddr, sni: &str, root: &Path) -> (bool, String) {
    let script = format!(
        "openssl s_client -connect {addr} -servername {sni} -CAfile {} </dev/null 2>/dev/null | tee /dev/stderr | openssl x509 -noout -serial",
        root.display()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .expect("openssl");
    (
        String::from_utf8_lossy(&out.stderr).contains("Verify return code: 0 (ok)"),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

/// The serial of the first certificate of a PEM chain.
fn pem_serial(pem: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(pem.as_bytes())
        .expect("write pem");
    let out = child.wait_with_output().expect("openssl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn secret_text(secret: &Value, key: &str) -> String {
    let b64 = secret["data"][key].as_str().unwrap_or_default();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_else(|e| panic!("{key} is not base64: {e}")),
    )
    .expect("utf-8")
}

/// Every version of the order Lease, as a watch delivers them.
#[derive(Clone, Debug)]
struct LeaseSeen {
    holder: String,
    acquire: Option<SystemTime>,
    renew: Option<SystemTime>,
    transitions: i64,
}

/// Records the Lease's versions from now on, in the background.
async fn record_lease(kube: &KubeApi, ns: &str) -> Arc<Mutex<Vec<LeaseSeen>>> {
    let list = kube.get(&leases_path(ns)).await;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("");
    let mut w = kube
        .watch(
            &format!("{}?watch=1&resourceVersion={rv}", leases_path(ns)),
            None,
        )
        .await;
    assert_eq!(w.status, 200, "watching leases");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    tokio::spawn(async move {
        while let Some(e) = w.next(Duration::from_secs(600)).await {
            if e.name() != PREFIX {
                continue;
            }
            let spec = &e.object["spec"];
            let time = |k: &str| {
                spec[k]
                    .as_str()
                    .and_then(|t| humantime::parse_rfc3339(t).ok())
            };
            out.lock().expect("lock").push(LeaseSeen {
                holder: spec["holderIdentity"].as_str().unwrap_or("").to_string(),
                acquire: time("acquireTime"),
                renew: time("renewTime"),
                transitions: spec["leaseTransitions"].as_i64().unwrap_or(0),
            });
        }
    });
    seen
}

/// A DNS relay in front of both replicas, as a Service in front of their pods: TXT
/// queries go to each in turn; it counts, per replica, the TXT answers that held records.
struct Relay {
    addr: SocketAddr,
    answered: Arc<Mutex<Vec<u32>>>,
}

impl Relay {
    async fn start(backends: Vec<SocketAddr>) -> Relay {
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind relay"));
        let addr = sock.local_addr().expect("addr");
        let answered = Arc::new(Mutex::new(vec![0; backends.len()]));
        let counts = answered.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut turn = 0usize;
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let query = buf[..n].to_vec();
                let txt = qtype(&query) == Some(16);
                let first = if txt {
                    turn += 1;
                    turn % backends.len()
                } else {
                    0
                };
                let (sock, backends, counts) = (sock.clone(), backends.clone(), counts.clone());
                tokio::spawn(async move {
                    for k in 0..backends.len() {
                        let i = (first + k) % backends.len();
                        let Some(answer) = ask(backends[i], &query).await else {
                            continue;
                        };
                        let records = u16::from_be_bytes([answer[6], answer[7]]);
                        if txt && records > 0 {
                            counts.lock().expect("lock")[i] += 1;
                        }
                        let _ = sock.send_to(&answer, from).await;
                        return;
                    }
                });
            }
        });
        Relay { addr, answered }
    }

    fn answered(&self) -> Vec<u32> {
        self.answered.lock().expect("lock").clone()
    }
}

/// The QTYPE of a DNS query's first question.
fn qtype(msg: &[u8]) -> Option<u16> {
    let mut i = 12;
    loop {
        let len = *msg.get(i)? as usize;
        i += 1 + len;
        if len == 0 {
            break;
        }
    }
    Some(u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]))
}

async fn ask(server: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").await.ok()?;
    s.connect(server).await.ok()?;
    s.send(query).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), s.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    (n >= 12).then(|| buf[..n].to_vec())
}

fn start(eureka: &StubEureka, yaml: &str) -> Xipgate {
    tokio::task::block_in_place(|| Xipgate::start(&eureka.url(), yaml))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_one_lease_holder_orders_both_answer_and_serve_one_certificate() {
    let kube = KubeApi::start().await;
    let token_file = token(&kube, NS, &shipped_rules()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dns_a: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let dns_b: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let relay = Relay::start(vec![dns_a, dns_b]).await;
    // 30 s of validity: renewal is due 20 s after issue.
    let pebble = Pebble::start(dir.path(), relay.addr, Duration::from_secs(30));
    let eureka = StubEureka::start().await;
    eureka.serve(&[]).await;
    let leases = record_lease(&kube, NS).await;
    let both = [dns_a, dns_b];
    let replica = |dns| Replica {
        dns,
        self_check: &both,
        directory: &pebble.directory,
        directory_ca: &pebble.https_ca,
        ns: NS,
        token_file: &token_file,
    };
    let a = start(&eureka, &replica_yaml(&kube, &replica(dns_a)));
    let b = start(&eureka, &replica_yaml(&kube, &replica(dns_b)));

    let ready = |s: &Value| acme_cert_loaded(s) && s["acme"][0]["lock"].is_null();
    let within = Duration::from_secs(90);
    let sa = wait_tls(&a, within, "A serves a certificate", ready).await;
    let sb = wait_tls(&b, within, "B serves a certificate", ready).await;
    let (oa, ob) = (orders_ok(&sa), orders_ok(&sb));
    assert_eq!(oa + ob, 1, "one order between them: A {sa}\nB {sb}");
    let (orderer, other) = if oa == 1 { (&a, &b) } else { (&b, &a) };

    // One Lease holder: the replica that ordered, and no other, ever held it.
    let holders: BTreeSet<String> = leases
        .lock()
        .expect("lock")
        .iter()
        .map(|l| l.holder.clone())
        .filter(|h| !h.is_empty())
        .collect();
    assert_eq!(holders.len(), 1, "{holders:?}");
    let holder = holders.iter().next().expect("a holder");
    assert!(
        holder.ends_with(&format!("pid {}", orderer.child.id())),
        "the Lease was held by {holder}, the order placed by pid {}",
        orderer.child.id()
    );
    let lease = kube.get(&format!("{}/{PREFIX}", leases_path(NS))).await;
    assert!(
        lease["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "released after the order: {lease}"
    );

    // The CA asked both replicas (round robin), and both answered with the values.
    let answered = relay.answered();
    assert!(
        answered.iter().all(|n| *n > 0),
        "TXT answers per replica: {answered:?}"
    );

    // One certificate, in a kubernetes.io/tls Secret, served by both.
    let host = format!("order-service.{DOMAIN}");
    let (va, serial_a) = served_serial(a.https, &host, &pebble.root);
    let (vb, serial_b) = served_serial(b.https, &host, &pebble.root);
    assert!(va && vb, "both verify against pebble's root");
    assert!(serial_a.starts_with("serial="), "{serial_a}");
    assert_eq!(serial_a, serial_b, "one certificate, served by both");
    let secret = kube
        .get(&format!("{}/{}", secrets_path(NS), cert_secret()))
        .await;
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let chain = secret_text(&secret, "tls.crt");
    assert!(
        chain.matches("BEGIN CERTIFICATE").count() >= 2,
        "chain: {chain}"
    );
    assert_eq!(
        pem_serial(&chain),
        serial_a,
        "tls.crt starts with the leaf served"
    );
    assert!(secret_text(&secret, "tls.key").contains("PRIVATE KEY"));
    let cm = kube.get(&config_map_path(NS)).await;
    let keys: Vec<&String> = cm["data"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    assert!(
        keys.iter().all(|k| !k.starts_with("_acme-challenge.")),
        "values withdrawn: {cm}"
    );
    assert_eq!(
        cm["data"][format!("issued.{DOMAIN}")],
        secret["metadata"]["resourceVersion"],
        "{cm}"
    );

    // One account, kept.
    let account = kube
        .get(&format!("{}/{PREFIX}-account", secrets_path(NS)))
        .await;
    let secrets = kube
        .get(&format!(
            "{}?labelSelector=app.kubernetes.io/managed-by%3Dxipgate",
            secrets_path(NS)
        ))
        .await;
    let names: BTreeSet<&str> = secrets["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([format!("{PREFIX}-account").as_str(), cert_secret().as_str()])
    );

    // Renewed at two thirds of its life, the Secret replaced, served by both.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (ok_a, now_a) = served_serial(a.https, &host, &pebble.root);
        let (ok_b, now_b) = served_serial(b.https, &host, &pebble.root);
        if ok_a && ok_b && now_a != serial_a && now_a == now_b {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not renewed on both: A {now_a} B {now_b}\nA {}\nB {}",
            tls_state(&a),
            tls_state(&b)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let renewed = kube
        .get(&format!("{}/{}", secrets_path(NS), cert_secret()))
        .await;
    assert_eq!(
        renewed["metadata"]["uid"], secret["metadata"]["uid"],
        "the same Secret, replaced"
    );
    let account_after = kube
        .get(&format!("{}/{PREFIX}-account", secrets_path(NS)))
        .await;
    assert_eq!(
        account_after["metadata"]["resourceVersion"], account["metadata"]["resourceVersion"],
        "the account is created once and reused"
    );
    for x in [orderer, other] {
        let s = wait_tls(x, Duration::from_secs(30), "the renewal done", |s| {
            s["acme"][0]["lock"].is_null()
        })
        .await;
        assert!(s["acme"][0]["last_error"].is_null(), "{s}");
        assert!(s["acme_store"]["last_error"].is_null(), "{s}");
        assert_eq!(s["acme_store"]["kind"], "kubernetes", "{s}");
    }
    assert_eq!(
        orders_ok(&tls_state(&a)) + orders_ok(&tls_state(&b)),
        2,
        "one order for the first certificate, one for its renewal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_holder_killed_mid_order_the_other_takes_over_once_the_lease_expires() {
    let kube = KubeApi::start().await;
    let token_file = token(&kube, NS, &shipped_rules()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dns_a: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let dns_b: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let pebble = Pebble::start(dir.path(), dns_b, Duration::from_secs(3600));
    let eureka = StubEureka::start().await;
    eureka.serve(&[]).await;
    let leases = record_lease(&kube, NS).await;
    // A's self-check also asks a DNS server that never answers: A publishes its values,
    // then waits, holding (and renewing) the Lease.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let a = start(
        &eureka,
        &replica_yaml(
            &kube,
            &Replica {
                dns: dns_a,
                self_check: &[silent_addr],
                directory: &pebble.directory,
                directory_ca: &pebble.https_ca,
                ns: NS,
                token_file: &token_file,
            },
        ),
    );
    let a_id = format!("pid {}", a.child.id());
    let deadline = Instant::now() + Duration::from_secs(60);
    let published = loop {
        let got = kube
            .call(Method::GET, &config_map_path(NS), None, None)
            .await;
        let values = got.body["data"][format!("_acme-challenge.{DOMAIN}")].clone();
        if got.status == 200 && values.is_string() {
            break values;
        }
        assert!(
            Instant::now() < deadline,
            "A never published its values\n{}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let b = start(
        &eureka,
        &replica_yaml(
            &kube,
            &Replica {
                dns: dns_b,
                self_check: &[dns_b],
                directory: &pebble.directory,
                directory_ca: &pebble.https_ca,
                ns: NS,
                token_file: &token_file,
            },
        ),
    );
    // B sees A holding the Lease, and when it frees itself.
    let held = wait_tls(&b, Duration::from_secs(20), "B sees A's Lease", |s| {
        s["acme"][0]["lock"]["holder"]
            .as_str()
            .is_some_and(|h| h.ends_with(&a_id))
    })
    .await;
    assert!(held["acme"][0]["lock"]["free_at"].is_u64(), "{held}");
    // A's values reach B's DNS through the ConfigMap watch.
    let name = format!("_acme-challenge.{DOMAIN}");
    let dig = |server: SocketAddr| {
        let out = Command::new("dig")
            .args(["+short", "+tries=1", "+time=2", "-p"])
            .arg(server.port().to_string())
            .arg(format!("@{}", server.ip()))
            .args([name.as_str(), "TXT"])
            .output()
            .expect("dig (apt-get install bind9-dnsutils)");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let first_value = published
        .as_str()
        .and_then(|v| v.lines().next())
        .unwrap_or_default()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !tokio::task::block_in_place(|| dig(dns_b)).contains(&first_value) {
        assert!(
            Instant::now() < deadline,
            "B's DNS never answered A's value {first_value}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let account = kube
        .get(&format!("{}/{PREFIX}-account", secrets_path(NS)))
        .await;

    // A dies mid-order, holding the Lease.
    let mut a = a;
    a.child.kill().expect("kill A");
    let _ = a.child.wait();

    let done = wait_tls(&b, Duration::from_secs(90), "B's certificate", |s| {
        acme_cert_loaded(s) && orders_ok(s) == 1
    })
    .await;
    assert!(done["acme"][0]["last_error"].is_null(), "{done}");
    let host = format!("order-service.{DOMAIN}");
    let (verified, serial) = served_serial(b.https, &host, &pebble.root);
    assert!(verified && serial.starts_with("serial="), "{serial}");

    // B took the Lease over only after A's last renewal had expired.
    let seen = leases.lock().expect("lock").clone();
    let last_a = seen
        .iter()
        .rfind(|l| l.holder.ends_with(&a_id))
        .unwrap_or_else(|| panic!("A never held the Lease: {seen:?}"))
        .clone();
    let b_id = format!("pid {}", b.child.id());
    let first_b = seen
        .iter()
        .find(|l| l.holder.ends_with(&b_id))
        .unwrap_or_else(|| panic!("B never held the Lease: {seen:?}"))
        .clone();
    let (Some(renewed), Some(taken)) = (last_a.renew, first_b.acquire) else {
        panic!("times missing: {seen:?}");
    };
    assert!(
        taken >= renewed + Duration::from_secs(LEASE_SECS),
        "B took the Lease {:?} after A's last renewal, before it expired: {seen:?}",
        taken.duration_since(renewed)
    );
    assert_eq!(first_b.transitions, last_a.transitions + 1, "{seen:?}");

    // A's account is B's; A's values were replaced by B's and withdrawn.
    let account_after = kube
        .get(&format!("{}/{PREFIX}-account", secrets_path(NS)))
        .await;
    assert_eq!(
        account_after["metadata"]["resourceVersion"], account["metadata"]["resourceVersion"],
        "B used the account A created"
    );
    let cm = kube.get(&config_map_path(NS)).await;
    assert!(cm["data"][&name].is_null(), "values withdrawn: {cm}");
    let secret = kube
        .get(&format!("{}/{}", secrets_path(NS), cert_secret()))
        .await;
    assert_eq!(pem_serial(&secret_text(&secret, "tls.crt")), serial);
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_that_meets_another_writer_is_retried_from_a_fresh_read() {
    let kube = KubeApi::start().await;
    let token_file = token(&kube, NS, &shipped_rules()).await;
    let meddler = meddler::Meddler::start(&kube.url, &kube.ca_pem, &kube.admin_token).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dns: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    // 30 s of validity: the renewal replaces the certificate's Secret (a PUT).
    let pebble = Pebble::start(dir.path(), dns, Duration::from_secs(30));
    let eureka = StubEureka::start().await;
    eureka.serve(&[]).await;
    let x = start(
        &eureka,
        &replica_yaml_at(
            &kube,
            &meddler.url,
            &Replica {
                dns,
                self_check: &[dns],
                directory: &pebble.directory,
                directory_ca: &pebble.https_ca,
                ns: NS,
                token_file: &token_file,
            },
        ),
    );
    let s = wait_tls(&x, Duration::from_secs(120), "issued and renewed", |s| {
        orders_ok(s) == 2 && s["acme"][0]["lock"].is_null()
    })
    .await;
    assert_eq!(s["acme"][0]["orders_failed"], 0, "{s}");
    assert!(s["acme"][0]["last_error"].is_null(), "{s}");
    // A 409 on the Lease (a renewal or the release), the ConfigMap (a note or a
    // withdrawal) and the certificate's Secret (the renewal), each met once and retried.
    let made = meddler.made();
    let paths: BTreeSet<&str> = made.keys().map(String::as_str).collect();
    let cm = config_map_path(NS);
    let lease = format!("{}/{PREFIX}", leases_path(NS));
    let secret = format!("{}/{}", secrets_path(NS), cert_secret());
    assert_eq!(
        paths,
        BTreeSet::from([cm.as_str(), lease.as_str(), secret.as_str()]),
        "{made:?}"
    );
    assert_eq!(
        s["acme_store"]["conflicts"].as_u64(),
        Some(made.values().map(|n| u64::from(*n)).sum()),
        "every 409 made was met and retried: {made:?} {s}"
    );
    let l = kube.get(&lease).await;
    assert!(
        l["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "released despite the 409: {l}"
    );
    let c = kube.get(&cm).await;
    assert!(
        c["data"][format!("_acme-challenge.{DOMAIN}")].is_null(),
        "{c}"
    );
    assert_eq!(
        c["metadata"]["annotations"][meddler::ANNOTATION],
        cm,
        "the other writer's change is kept: {c}"
    );
    let (verified, _) = served_serial(x.https, &format!("order-service.{DOMAIN}"), &pebble.root);
    assert!(verified);
}

/// Where the error of a missing verb shows: the domain's or the store's `last_error`.
fn errors(s: &Value) -> String {
    format!(
        "{} | {}",
        s["acme"][0]["last_error"].as_str().unwrap_or(""),
        s["acme_store"]["last_error"].as_str().unwrap_or("")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_verb_missing_from_the_role_is_named_on_the_api() {
    let kube = KubeApi::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pebble = Pebble::start(
        dir.path(),
        ([127, 0, 0, 1], free_port()).into(),
        Duration::from_secs(3600),
    );
    let eureka = StubEureka::start().await;
    eureka.serve(&[]).await;
    let dead = format!("https://127.0.0.1:{}/dir", free_port());
    // A self-check nobody answers ends an order soon after its values are published.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let rules = shipped_rules();
    // (resource, verb, whether the order must reach the CA for the verb to be used)
    let cases = [
        ("secrets", "get", false),
        ("leases", "get", false),
        ("leases", "create", false),
        ("leases", "update", false), // releasing the Lease after a failed order
        ("configmaps", "list", false),
        ("configmaps", "watch", false),
        ("secrets", "create", true), // storing the new account
        ("configmaps", "get", true),
        ("configmaps", "create", true),
        ("configmaps", "update", true), // withdrawing the values
    ];
    for (i, (resource, verb, ca)) in cases.into_iter().enumerate() {
        let ns = format!("rbac-{i}");
        let token_file = token(&kube, &ns, &without(&rules, resource, verb)).await;
        let yaml = replica_yaml(
            &kube,
            &Replica {
                dns: ([127, 0, 0, 1], free_port()).into(),
                self_check: &[silent_addr],
                directory: if ca { &pebble.directory } else { &dead },
                directory_ca: &pebble.https_ca,
                ns: &ns,
                token_file: &token_file,
            },
        )
        .replace("self_check_timeout: 60s", "self_check_timeout: 1s");
        let x = start(&eureka, &yaml);
        let qualified = if resource == "leases" {
            "leases.coordination.k8s.io"
        } else {
            resource
        };
        let want = format!("verb \"{verb}\" on \"{qualified}\"");
        let s = wait_tls(&x, Duration::from_secs(30), &want, |s| {
            errors(s).contains(&want)
        })
        .await;
        let said = errors(&s);
        assert!(said.contains("forbidden") && said.contains(&ns), "{said}");
    }
    drop(silent);
}
