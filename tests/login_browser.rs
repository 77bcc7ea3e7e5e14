//! One login for every host, in a real headless Chromium against the real provider
//! (Spring Authorization Server, `it/auth-server`): a browser signs in once on one service
//! host and is then known on another service host and an instance host; the backends see
//! the identity and never the session cookie; sign-out ends it everywhere; an expired
//! session goes back to the login.
//!
//! Needs Debian's `chromium` and `chromium-driver` and a JDK (the provider); fails (does
//! not skip) without them.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use browser::Browser;
use common::idp::{Idp, CLIENT, CLIENT_SECRET};
use common::{free_port, Inst, StubEureka, Xipgate, DOMAIN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// A backend that answers every request with its name and the request head it got.
struct Echo {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Echo {
    async fn start(name: &'static str) -> Echo {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let end = loop {
                            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break p + 4;
                            }
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(k) => buf.extend_from_slice(&chunk[..k]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end);
                        let body = format!("backend {name}\n{head}");
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if sock.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Echo { addr, task }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An edge whose every request needs a signed-in identity, logging in at `issuer`.
fn edge(eureka: &str, issuer: &str, keys: &std::path::Path, ttl: &str) -> Xipgate {
    let d = keys.display();
    Xipgate::start(
        eureka,
        &format!(
            "  access:\n    rules:\n      - name: staff\n        authenticated: true\n    login:\n      issuer: \"{issuer}\"\n      client_id: {CLIENT}\n      client_secret_file: {d}/secret\n      keys_file: {d}/keys\n      session_ttl: {ttl}\n"
        ),
    )
}

fn url(x: &Xipgate, label: &str, path: &str) -> String {
    format!("http://{label}.{DOMAIN}:{}{path}", x.proxy.port())
}

/// Waits until the browser is at a URL starting with `prefix`.
async fn wait_at(b: &Browser, prefix: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = b.url().await;
        if now.starts_with(prefix) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the browser is at {now}, not {prefix}…\n{}",
            b.body_text().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sign_in_at_the_provider(b: &Browser, idp: &str, user: &str, password: &str) {
    wait_at(b, &format!("{idp}/login"), "the provider's login form").await;
    let name = b.find("input[name=username]").await;
    b.type_into(&name, user).await;
    let pw = b.find("input[name=password]").await;
    b.type_into(&pw, password).await;
    let submit = b.find("button[type=submit]").await;
    b.click(&submit).await;
}

/// The backend's view of the page the browser shows, lower-cased.
async fn page(b: &Browser) -> String {
    b.body_text().await.to_ascii_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_login_for_every_host_in_a_real_browser() {
    let alpha = Echo::start("alpha").await;
    let beta = Echo::start("beta").await;
    let eureka = StubEureka::start().await;
    let pod = Inst::up("ALPHA", "pod", alpha.addr);
    let instance = pod.label();
    eureka
        .serve(&[pod, Inst::up("BETA", "pod", beta.addr)])
        .await;
    let keys = tempfile::tempdir().unwrap();
    std::fs::write(keys.path().join("keys"), KEY).unwrap();
    std::fs::write(keys.path().join("secret"), CLIENT_SECRET).unwrap();

    // The edges are configured with the provider's issuer first; the provider then starts
    // on that port with the edges' callbacks registered.
    let idp_port = free_port();
    let issuer = format!("http://127.0.0.1:{idp_port}");
    let x = edge(&eureka.url(), &issuer, keys.path(), "1h");
    let short = edge(&eureka.url(), &issuer, keys.path(), "3s");
    let (callbacks, signed_out): (Vec<String>, Vec<String>) = [&x, &short]
        .iter()
        .map(|e| {
            (
                url(e, "login", "/oauth2/callback"),
                url(e, "login", "/oauth2/signed_out"),
            )
        })
        .unzip();
    let idp = tokio::task::spawn_blocking(move || {
        Idp::start_on(idp_port, &callbacks, &signed_out, Duration::from_secs(300))
    })
    .await
    .unwrap();
    assert_eq!(idp.issuer(), issuer);

    let b = Browser::start(&[&format!("--host-resolver-rules=MAP *.{DOMAIN} 127.0.0.1")]).await;

    // Service host alpha: to the provider's form, signed in as alice, back on alpha.
    b.goto(&url(&x, "alpha", "/first?x=1")).await;
    sign_in_at_the_provider(&b, &issuer, "alice", "alice-pw").await;
    wait_at(&b, &url(&x, "alpha", "/first?x=1"), "back on alpha").await;
    let seen = page(&b).await;
    assert!(seen.contains("backend alpha"), "{seen}");
    assert!(seen.contains("x-forwarded-user: alice"), "{seen}");
    assert!(seen.contains("x-forwarded-groups: devs"), "{seen}");
    assert!(
        !seen.contains("_xipgate"),
        "the session cookie reached the backend: {seen}"
    );

    // Service host beta and alpha's instance host: known there without a login form.
    for (label, backend) in [
        ("beta", "backend beta"),
        (instance.as_str(), "backend alpha"),
    ] {
        b.goto(&url(&x, label, "/")).await;
        wait_at(&b, &url(&x, label, "/"), label).await;
        let seen = page(&b).await;
        assert!(seen.contains(backend), "{label}: {seen}");
        assert!(seen.contains("x-forwarded-user: alice"), "{label}: {seen}");
    }
    b.goto(&url(&x, "login", "/")).await;
    assert!(b.body_text().await.contains("Signed in as alice"));
    // The provider would sign a known browser straight back in, so "without a login"
    // is read from the edge: one sign-in redirect (alpha's first visit), no other.
    let instance_host = format!("{instance}.{DOMAIN}");
    common::eventually(Duration::from_secs(5), "the instance host's record", || {
        x.access()
            .iter()
            .any(|r| r["host"] == instance_host.as_str() && r["decision"] == "allow")
    });
    assert_eq!(logins(&x), 1, "{:#?}", x.access());

    // Sign-out, through the provider's own, back to alpha: which asks for the login again,
    // and so does beta.
    let rd = url(&x, "alpha", "/");
    b.goto(&url(
        &x,
        "login",
        &format!("/oauth2/sign_out?rd={}", browser_encode(&rd)),
    ))
    .await;
    wait_at(&b, &format!("{issuer}/login"), "alpha after sign-out").await;
    b.goto(&url(&x, "beta", "/")).await;
    wait_at(&b, &format!("{issuer}/login"), "beta after sign-out").await;

    // A session of 3 s: once it has expired, alpha goes through the login again (the
    // provider, still signed in, answers without its form) and a new session is issued.
    b.goto(&url(&short, "alpha", "/")).await;
    sign_in_at_the_provider(&b, &issuer, "bob", "bob-pw").await;
    wait_at(&b, &url(&short, "alpha", "/"), "alpha on the short edge").await;
    assert!(page(&b).await.contains("x-forwarded-user: bob"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        b.goto(&url(&short, "login", "/oauth2/userinfo")).await;
        if b.body_text().await.contains("not signed in") {
            break;
        }
        assert!(Instant::now() < deadline, "the 3 s session did not expire");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The gate sent it to the login again, and let it through with the new session.
    b.goto(&url(&short, "alpha", "/again")).await;
    wait_at(&b, &url(&short, "alpha", "/again"), "alpha after expiry").await;
    assert!(page(&b).await.contains("x-forwarded-user: bob"));
    common::eventually(
        Duration::from_secs(5),
        "the second sign-in redirect",
        || logins(&short) == 2,
    );
    drop(idp);
}

/// How many requests the edge sent to the login.
fn logins(x: &Xipgate) -> usize {
    x.access()
        .iter()
        .filter(|r| r["decision"] == "login")
        .count()
}

fn browser_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
