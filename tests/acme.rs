//! Automatic wildcard certificates against a real ACME server: Debian's pebble validates
//! DNS-01 by asking xipgate's own DNS server for `_acme-challenge.<domain>` TXT, issues a
//! certificate xipgate then serves (checked with curl and openssl against pebble's root),
//! renews it at two thirds of pebble's short validity, and keeps it when pebble is gone.
//! Two replicas share one store: one orders, the other answers the challenge and serves.

#[path = "common/browser.rs"]
mod browser;
mod common;
#[path = "common/pebble.rs"]
mod pebble;
#[path = "common/pki.rs"]
mod pki;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use pebble::Pebble;
use serde_json::Value;

const WILD: &str = "*.127-0-0-1.sslip.io";

fn acme_yaml(dns: SocketAddr, directory: &str, directory_ca: &Path, store: &Path) -> String {
    format!(
        "  dns:\n    listen: [\"{dns}\"]\n    edge_ips: [\"127.0.0.1\"]\n  tls:\n    listen: [\"HTTPS_ADDR\"]\n    reload_interval: 100ms\n  acme:\n    directory: {directory}\n    directory_ca: {}\n    store: {}\n    terms_agreed: true\n    check_interval: 1s\n",
        directory_ca.display(),
        store.display()
    )
}

fn acme_state(x: &Xipgate) -> Value {
    x.api("/api/v1/tls").1["acme"][0].clone()
}

/// Polls `/api/v1/tls` until `want` holds.
fn wait_tls(x: &Xipgate, within: Duration, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (_, body) = x.api("/api/v1/tls");
        if want(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {within:?}: {body}\n{}",
            x.log()
        );
        std::thread::sleep(Duration::from_millis(100));
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

/// The serial of the certificate served for `sni`, verified against `root`.
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
    let handshake = String::from_utf8_lossy(&out.stderr);
    (
        handshake.contains("Verify return code: 0 (ok)"),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_issues_renews_and_keeps_a_wildcard_certificate_through_its_own_dns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dns: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    // 30 s of validity: renewal is due 20 s after issue.
    let mut pebble = Pebble::start(dir.path(), dns, Duration::from_secs(30));
    let backend = Backend::start("a").await;
    let eureka = StubEureka::start().await;
    let inst = Inst::up("order-service", "order-1", backend.addr);
    eureka.serve(std::slice::from_ref(&inst)).await;
    let store = dir.path().join("store");
    let console_host = format!("xipgate.{DOMAIN}");
    let x = Xipgate::start(
        &eureka.url(),
        &format!(
            "{}  console:\n    host: {console_host}\n",
            acme_yaml(dns, &pebble.directory, &pebble.https_ca, &store)
        ),
    );

    // The reloader may load the file before the order's outcome is recorded: wait for both.
    let body = wait_tls(&x, Duration::from_secs(60), "the first certificate", |b| {
        acme_cert_loaded(b) && b["acme"][0]["orders_ok"].as_u64().unwrap_or(0) > 0
    });
    let acme = &body["acme"][0];
    assert_eq!(acme["domain"], "127-0-0-1.sslip.io");
    assert_eq!(acme["orders_ok"], 1, "{body}");

    // Served by SNI for every instance host, chained to pebble's root, over HTTP/2.
    let host = format!("{}.{DOMAIN}", inst.label());
    let port = x.https.port();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&pebble.root)
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .args(["-o", "/dev/null", "-w", "%{http_version} %{http_code}"])
        .arg(format!("https://{host}:{port}/"))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2 200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (verified, first) = served_serial(x.https, &host, &pebble.root);
    assert!(verified && first.starts_with("serial="), "{first}");
    let (verified, apex) = served_serial(x.https, "127-0-0-1.sslip.io", &pebble.root);
    assert!(verified, "the bare domain is covered too");
    assert_eq!(apex, first, "one certificate for *.domain and domain");

    // A browser that trusts pebble's root loads the console and an instance over HTTPS.
    let home = browser::nss_home_trusting(&pebble.root);
    let resolve = format!("--host-resolver-rules=MAP *.{DOMAIN} 127.0.0.1");
    let b = browser::Browser::start_with_home(&[&resolve], home.path()).await;
    for url in [
        format!("https://{console_host}:{port}/"),
        format!("https://{host}:{port}/"),
    ] {
        if let Err(e) = b.try_goto(&url).await {
            panic!("{url} did not load: {e}");
        }
        let secure = b
            .exec(
                "return [document.location.protocol, window.isSecureContext]",
                vec![],
            )
            .await;
        let text = b.body_text().await;
        assert_eq!(secure, serde_json::json!(["https:", true]), "{url}: {text}");
        assert!(!text.contains("not private"), "{url}: {text}");
    }
    drop(b);

    // Renewed at two thirds of its life, with no restart.
    let deadline = Instant::now() + Duration::from_secs(60);
    let renewed = loop {
        let (ok, serial) = served_serial(x.https, &host, &pebble.root);
        if ok && serial != first && serial.starts_with("serial=") {
            break serial;
        }
        assert!(
            Instant::now() < deadline,
            "never renewed: {}\n{}",
            acme_state(&x),
            x.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    wait_tls(&x, Duration::from_secs(10), "the renewal recorded", |b| {
        b["acme"][0]["orders_ok"] == 2
    });

    // The CA gone: the next renewal fails, is said, and the certificate stays.
    pebble.stop();
    let body = wait_tls(&x, Duration::from_secs(60), "a failed renewal", |b| {
        b["acme"][0]["orders_failed"].as_u64().unwrap_or(0) > 0
    });
    let error = body["acme"][0]["last_error"].as_str().unwrap_or_default();
    assert!(!error.is_empty(), "{body}");
    let (_, still) = served_serial(x.https, &host, &pebble.root);
    assert_eq!(still, renewed, "the last certificate is still served");
    let metrics = x.api("/metrics").1.as_str().unwrap_or_default().to_string();
    assert!(
        metrics.contains("xipgate_tls_certificate_expiry_seconds{name=\"*.127-0-0-1.sslip.io\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_nobody_answers_fails_the_order_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    // pebble asks a DNS server that is not xipgate's.
    let elsewhere: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let pebble = Pebble::start(dir.path(), elsewhere, Duration::from_secs(3600));
    let eureka = StubEureka::start().await;
    eureka.serve(&[]).await;
    let dns: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let x = Xipgate::start(
        &eureka.url(),
        &acme_yaml(
            dns,
            &pebble.directory,
            &pebble.https_ca,
            &dir.path().join("store"),
        ),
    );
    let body = wait_tls(&x, Duration::from_secs(90), "a failed order", |b| {
        b["acme"][0]["orders_failed"].as_u64().unwrap_or(0) > 0
    });
    let error = body["acme"][0]["last_error"].as_str().unwrap_or_default();
    // The CA's own words: it could not retrieve the TXT record.
    assert!(
        error.contains("TXT") && error.contains("DNS challenge"),
        "{body}"
    );
    assert!(
        !acme_cert_loaded(&body),
        "no certificate was issued: {body}"
    );
    // Challenge values are withdrawn once the order is over.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("store/challenges"))
        .expect("challenges dir")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_store_one_orders_the_other_answers_and_both_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("shared-store");
    let dns_a: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let dns_b: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    // The CA's resolver reaches replica A only (as a Service may send it to any one).
    let pebble = Pebble::start(dir.path(), dns_a, Duration::from_secs(3600));
    let eureka = StubEureka::start().await;
    eureka.serve(&[]).await;
    // Replica A cannot reach the CA itself (a dead directory URL), so the order can only
    // be B's: B orders, A's DNS answers the challenge from the shared store.
    let dead = format!("https://127.0.0.1:{}/dir", free_port());
    let a = Xipgate::start(
        &eureka.url(),
        &acme_yaml(dns_a, &dead, &pebble.https_ca, &store),
    );
    // B asks both replicas' DNS before telling pebble the challenge is ready: A answers
    // from values it reads from the store every second, and pebble asks only A.
    let b = Xipgate::start(
        &eureka.url(),
        &format!(
            "{}    self_check: [\"{dns_a}\", \"{dns_b}\"]\n",
            acme_yaml(dns_b, &pebble.directory, &pebble.https_ca, &store)
        ),
    );
    wait_tls(&b, Duration::from_secs(60), "B's certificate", |b| {
        acme_cert_loaded(b) && b["acme"][0]["orders_ok"] == 1
    });
    wait_tls(
        &a,
        Duration::from_secs(20),
        "A loads it from the store",
        acme_cert_loaded,
    );
    assert_eq!(acme_state(&b)["orders_ok"], 1);
    assert_eq!(
        acme_state(&a)["orders_ok"],
        0,
        "A placed no order of its own"
    );
    let host = format!("order-service.{DOMAIN}");
    let (va, serial_a) = served_serial(a.https, &host, &pebble.root);
    let (vb, serial_b) = served_serial(b.https, &host, &pebble.root);
    assert!(va && vb, "both verify against pebble's root");
    assert_eq!(serial_a, serial_b, "one certificate, served by both");
    let accounts = std::fs::read_dir(&store)
        .expect("store")
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_name() == "account.json"))
        .count();
    assert_eq!(accounts, 1);
}

/// `dig +short` for `name`/`rtype` at `server`, one try of at most 2 s.
fn dig_short(server: SocketAddr, name: &str, rtype: &str) -> Output {
    Command::new("dig")
        .args(["+short", "+tries=1", "+time=2", "-p"])
        .arg(server.port().to_string())
        .arg(format!("@{}", server.ip()))
        .args([name, rtype])
        .output()
        .expect("dig (apt-get install bind9-dnsutils)")
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: mkfifo reads a NUL-terminated path and nothing else.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answers_challenges_from_memory_while_the_store_hangs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let eureka = StubEureka::start().await;
    eureka.serve(&[]).await;
    let dns: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let store = dir.path().join("store");
    // No CA is reachable: nothing orders; the values are published by hand, as the
    // ordering replica would.
    let dead = format!("https://127.0.0.1:{}/dir", free_port());
    let ca = pki::Ca::new(dir.path(), "unused");
    let x = Xipgate::start(&eureka.url(), &acme_yaml(dns, &dead, &ca.file, &store));
    let name = format!("_acme-challenge.{DOMAIN}");
    std::fs::write(store.join("challenges").join(&name), "value-1\n").expect("publish");
    eventually(
        Duration::from_secs(10),
        "the published value answered",
        || String::from_utf8_lossy(&dig_short(dns, &name, "TXT").stdout).contains("value-1"),
    );

    // A read of the store that never returns (a FIFO nobody writes, as a hung NFS read).
    let stalled = format!("_acme-challenge.stalled.{DOMAIN}");
    mkfifo(&store.join("challenges").join(&stalled));
    for _ in 0..3 {
        for (qname, rtype, want) in [
            (stalled.as_str(), "TXT", ""),
            (name.as_str(), "TXT", "\"value-1\""),
            (&*format!("order-service.{DOMAIN}"), "A", "127.0.0.1"),
        ] {
            let out = dig_short(dns, qname, rtype);
            assert!(
                out.status.success(),
                "{qname} {rtype} unanswered while the store hangs: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                x.log()
            );
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want, "{qname}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_ca_fails_the_order_at_its_deadline_and_the_lock_holder_is_shown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("shared-store");
    let dns_a: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let dns_b: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let pebble = Pebble::start(dir.path(), dns_a, Duration::from_secs(3600));
    // A CA that accepts connections and never answers.
    pebble.pause();
    let eureka = StubEureka::start().await;
    eureka.serve(&[]).await;
    let a = Xipgate::start(
        &eureka.url(),
        &format!(
            "{}    order_timeout: 4s\n",
            acme_yaml(dns_a, &pebble.directory, &pebble.https_ca, &store)
        ),
    );
    let body = wait_tls(&a, Duration::from_secs(30), "a failed order", |b| {
        b["acme"][0]["orders_failed"].as_u64().unwrap_or(0) > 0
    });
    let error = body["acme"][0]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("order_timeout"), "{body}");

    // Replica B (its CA unreachable, so its own orders fail at once) sees A's lock.
    let dead = format!("https://127.0.0.1:{}/dir", free_port());
    let b = Xipgate::start(
        &eureka.url(),
        &format!(
            "{}    order_timeout: 4s\n",
            acme_yaml(dns_b, &dead, &pebble.https_ca, &store)
        ),
    );
    let body = wait_tls(&b, Duration::from_secs(30), "A's lock shown by B", |b| {
        let lock = &b["acme"][0]["lock"];
        lock["holder"]
            .as_str()
            .is_some_and(|h| h.ends_with(&format!("pid {}", a.child.id())))
            && lock["age_seconds"].is_u64()
    });
    assert!(body["acme"][0]["lock"]["since"].is_u64(), "{body}");

    // A stuck while it holds the lock (SIGSTOP): B says so once the lock outlives an
    // order and a check. The holder empties the lock file before it lets go, so a file
    // that still names A after the stop means A is stopped holding it.
    let names_a = || {
        std::fs::read_to_string(store.join("lock"))
            .is_ok_and(|t| t.contains(&format!("pid {}\"", a.child.id())))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if names_a() {
            pebble::signal(&a.child, libc::SIGSTOP);
            if names_a() {
                break;
            }
            pebble::signal(&a.child, libc::SIGCONT);
        }
        assert!(Instant::now() < deadline, "A never held the lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    let body = wait_tls(&b, Duration::from_secs(30), "B says A is stuck", |b| {
        b["acme"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("stuck"))
    });
    let error = body["acme"][0]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains(&format!("pid {}", a.child.id())), "{body}");
    pebble::signal(&a.child, libc::SIGCONT);
    pebble.resume();
}
