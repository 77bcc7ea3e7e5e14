//! xipgate over HTTPS in a real headless Chromium that trusts a test CA the way a user
//! would (imported into its NSS database, `$HOME/.pki/nssdb`), not by ignoring
//! certificate errors: the console and an instance load with no certificate error, and
//! the same browser without the CA gets an error instead (so the trust is what matters).
//! Saves `target/https-console.png`.
//!
//! Needs Debian's `chromium`, `chromium-driver` and `libnss3-tools`; fails without them.

#[path = "common/browser.rs"]
mod browser;
mod common;
#[path = "common/pki.rs"]
mod pki;

use std::path::PathBuf;
use std::time::Duration;

use browser::{nss_home_trusting, Browser};
use common::*;
use pki::{tls_yaml, Ca};
use serde_json::Value;

const WILD: &str = "*.127-0-0-1.sslip.io";
const APEX: &str = "127-0-0-1.sslip.io";

fn screenshot_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join(name)
}

async fn text(b: &Browser, script: &str) -> String {
    match b.exec(script, vec![]).await {
        Value::String(s) => s,
        v => v.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_console_and_instance_in_a_browser_trusting_the_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(dir.path(), "xipgate-test-ca");
    let edge = ca.leaf(dir.path(), "edge", &[WILD, APEX], 1);
    let backend = Backend::start("a").await;
    let eureka = StubEureka::start().await;
    let inst = Inst::up("order-service", "order-1", backend.addr);
    eureka.serve(std::slice::from_ref(&inst)).await;
    // `console:` sits beside `tls:` under `xipgate:`; the harness merges it with its own
    // `console.listen`.
    let console_host = format!("xipgate.{DOMAIN}");
    let x = Xipgate::start(
        &eureka.url(),
        &tls_yaml(&[&edge], &format!("  console:\n    host: {console_host}\n")),
    );
    let port = x.https.port();
    let console = format!("https://{console_host}:{port}/");
    let instance = format!("https://{}.{DOMAIN}:{port}/", inst.label());
    let resolve = format!("--host-resolver-rules=MAP *.{DOMAIN} 127.0.0.1");

    let home = nss_home_trusting(&ca.file);
    let b = Browser::start_with_home(&[&resolve], home.path()).await;

    // The console: a secure https: page with its own content, not an interstitial.
    if let Err(e) = b.try_goto(&console).await {
        panic!("the console did not load over HTTPS: {e}\n{}", x.log());
    }
    // An interstitial is a chrome-error: page that is not a secure context.
    let secure = b
        .exec(
            "return [document.location.protocol, window.isSecureContext]",
            vec![],
        )
        .await;
    assert_eq!(
        secure,
        serde_json::json!(["https:", true]),
        "a certificate error instead of the console: {}",
        b.body_text().await
    );
    b.wait_until(
        Duration::from_secs(10),
        "the console's table",
        "return document.querySelectorAll('tr.i').length === 1",
    )
    .await;
    let title = text(&b, "return document.title").await;
    assert!(
        title.starts_with("xipgate · 1 services · 1 instances"),
        "{title}"
    );
    let body = b.body_text().await;
    assert!(
        body.contains("ORDER-SERVICE") && !body.contains("not private"),
        "{body}"
    );
    assert_eq!(b.url().await, console);
    b.screenshot(&screenshot_path("https-console.png")).await;

    // The instance host: the backend's JSON, reached over HTTPS (X-Forwarded-Proto).
    if let Err(e) = b.try_goto(&instance).await {
        panic!("the instance did not load over HTTPS: {e}\n{}", x.log());
    }
    let secure = b
        .exec(
            "return [document.location.protocol, window.isSecureContext]",
            vec![],
        )
        .await;
    let body = b.body_text().await;
    assert_eq!(secure, serde_json::json!(["https:", true]), "{body}");
    let json: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("the backend's JSON is shown ({e}): {body}"));
    assert_eq!(json["backend"], "a", "{body}");
    assert_eq!(json["xfp"], "https", "{body}");
    drop(b);

    // Negative control: without the CA in its NSS database, the same console URL gives a
    // certificate error, not the console.
    let untrusted = Browser::start(&[&resolve]).await;
    let nav = untrusted.try_goto(&console).await;
    let title = text(&untrusted, "return document.title").await;
    let body = untrusted.body_text().await;
    assert!(
        !title.starts_with("xipgate") && !body.contains("ORDER-SERVICE"),
        "an untrusting browser showed the console: {title}\n{body}"
    );
    // Chromium shows its interstitial (chrome-error:, "Privacy error"); chromedriver may
    // instead fail the navigation. Either way the cause must be the unknown issuer.
    let evidence = match &nav {
        Err(e) => e.clone(),
        Ok(()) => body.clone(),
    };
    assert!(
        evidence.contains("ERR_CERT_AUTHORITY_INVALID"),
        "expected an untrusted-issuer error: {nav:?}\n{title}\n{body}"
    );
    if nav.is_ok() {
        assert_eq!(title, "Privacy error");
        assert_eq!(
            untrusted
                .exec("return window.isSecureContext", vec![])
                .await,
            false
        );
    }
}
