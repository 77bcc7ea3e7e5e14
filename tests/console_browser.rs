//! The console in a real headless Chromium, driven over WebDriver: the demo
//! (`xipgate --demo`: stand-in Eureka, backends, proxy and console) is loaded, its
//! services, instances and links are checked, a link is followed through the proxy to a
//! backend, the filter box is used, and a screenshot is saved to
//! `target/console-screenshot.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver`; fails (does not skip) without them.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use browser::Browser;
use common::{eventually, free_port, http_get, DOMAIN};
use serde_json::Value;

/// `xipgate --demo` on free ports.
struct Demo {
    child: Child,
    proxy: u16,
    console: SocketAddr,
    dir: tempfile::TempDir,
}

impl Demo {
    fn start() -> Demo {
        let dir = tempfile::tempdir().expect("tempdir");
        let (proxy, console) = (free_port(), free_port());
        let out = std::fs::File::create(dir.path().join("demo.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_xipgate"))
            .arg("--demo")
            .env("XIPGATE_DEMO_PROXY_PORT", proxy.to_string())
            .env("XIPGATE_DEMO_CONSOLE_PORT", console.to_string())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn xipgate --demo");
        let demo = Demo {
            child,
            proxy,
            console: SocketAddr::from(([127, 0, 0, 1], console)),
            dir,
        };
        eventually(
            Duration::from_secs(20),
            "the demo's /readyz answers 200",
            || http_get(demo.console, "localhost", "/readyz").is_ok_and(|(s, _, _)| s == 200),
        );
        eventually(Duration::from_secs(10), "the demo's proxy listens", || {
            std::net::TcpStream::connect(("127.0.0.1", demo.proxy)).is_ok()
        });
        demo
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("demo.log")).unwrap_or_default()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshot_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join(name)
}

const VISIBLE_ROWS: &str =
    "return [...document.querySelectorAll('tr.i')].filter(r => r.offsetParent !== null).length";

async fn visible_rows(b: &Browser) -> u64 {
    b.exec(VISIBLE_ROWS, vec![]).await.as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser() {
    let demo = Demo::start();
    let b = Browser::start(&[&format!("--host-resolver-rules=MAP *.{DOMAIN} 127.0.0.1")]).await;
    let console = format!("http://{}/", demo.console);
    b.goto(&console).await;

    // Services, instances, statuses and the blocked marker are on the page.
    b.wait_until(
        Duration::from_secs(10),
        "the table",
        "return document.querySelectorAll('tr.i').length === 7",
    )
    .await;
    let text = b.body_text().await;
    for name in [
        "ORDER-SERVICE",
        "PAYMENT-SERVICE",
        "USER-SERVICE",
        "LEGACY-BILLING",
        "order-7d9f8-x2k4q-8080",
        "DOWN",
        "BLOCKED",
    ] {
        assert!(
            text.contains(name),
            "the page shows {name}:\n{text}\n{}",
            demo.log()
        );
    }
    assert!(
        text.contains("outside upstream.allow"),
        "the blocked reason is shown"
    );
    assert_eq!(
        b.find_all("tbody.g").await.len(),
        4,
        "one group per service"
    );
    assert_eq!(
        b.find_all("tr.i.down").await.len(),
        1,
        "the DOWN instance is marked"
    );
    assert_eq!(b.find_all(".st.blocked").await.len(), 1);
    assert!(
        b.find_all(".banner").await.is_empty(),
        "no banner while the registry is fresh"
    );
    let hrefs = b
        .exec(
            "return [...document.querySelectorAll('main a')].map(a => a.href)",
            vec![],
        )
        .await;
    let proxy_suffix = format!(".{DOMAIN}:{}/", demo.proxy);
    for h in hrefs.as_array().expect("hrefs") {
        let h = h.as_str().unwrap_or_default();
        assert!(
            h.starts_with("http://")
                && (h.contains(&proxy_suffix)
                    || h.contains("/api/v1/services/")
                    || h.starts_with(&console)),
            "absolute link to an instance, the API or this view: {h}"
        );
    }
    b.screenshot(&screenshot_path("console-screenshot.png"))
        .await;

    // The filter, answered by the server as the user types; the URL keeps it.
    let q = b.find("#q").await;
    b.click(&q).await;
    b.type_into(&q, "payment").await;
    b.wait_until(
        Duration::from_secs(5),
        "the filter applies",
        &format!("{VISIBLE_ROWS} === 2"),
    )
    .await;
    assert_eq!(
        b.exec("return document.querySelectorAll('tbody.g').length", vec![])
            .await,
        1,
        "the server answered with the one matching service"
    );
    assert!(
        b.url().await.contains("q=payment"),
        "the filter is kept in the URL"
    );
    assert!(b.body_text().await.contains("2 of 7 instances match"));
    b.clear(&q).await;
    b.type_into(&q, "order down").await;
    b.wait_until(
        Duration::from_secs(5),
        "a two-term filter",
        &format!("{VISIBLE_ROWS} === 1"),
    )
    .await;
    b.type_into(&q, "\u{E00C}").await; // Escape clears it.
    b.wait_until(
        Duration::from_secs(5),
        "the filter clears",
        &format!("{VISIBLE_ROWS} === 7"),
    )
    .await;

    // A service folds to its header row; "Collapse all" folds every one; both come back.
    let toggle = b.find("tbody[data-s='order-service'] .tg").await;
    b.click(&toggle).await;
    b.wait_until(
        Duration::from_secs(5),
        "ORDER-SERVICE folds",
        &format!("{VISIBLE_ROWS} === 4"),
    )
    .await;
    let fold_all = b.find("#fold").await;
    b.click(&fold_all).await;
    b.wait_until(
        Duration::from_secs(5),
        "everything folds",
        &format!("{VISIBLE_ROWS} === 0"),
    )
    .await;
    assert_eq!(
        b.exec("return document.getElementById('fold').innerText", vec![])
            .await,
        "Expand all"
    );
    b.click(&fold_all).await;
    b.wait_until(
        Duration::from_secs(5),
        "everything unfolds",
        &format!("{VISIBLE_ROWS} === 7"),
    )
    .await;

    // ?q= pre-fills the box and the server already hides the rest.
    b.goto(&format!("{console}?q=203.0.113")).await;
    assert_eq!(visible_rows(&b).await, 1);
    assert_eq!(
        b.exec("return document.getElementById('q').value", vec![])
            .await,
        "203.0.113"
    );

    // An instance link reaches exactly that backend through xipgate.
    b.goto(&console).await;
    let link = b.find("a[href^='http://order-7d9f8-x2k4q-8080.']").await;
    b.click(&link).await;
    b.wait_until(
        Duration::from_secs(10),
        "the backend answers",
        "return document.body.innerText.includes('Hello from')",
    )
    .await;
    let body = b.body_text().await;
    assert!(
        body.contains("order-7d9f8-x2k4q:order-service:8080"),
        "{body}"
    );
    assert!(b.url().await.starts_with(&format!(
        "http://order-7d9f8-x2k4q-8080.{DOMAIN}:{}/",
        demo.proxy
    )));

    // The health link of the DOWN instance goes through the edge to its actuator.
    b.goto(&console).await;
    let health = b.find("tr.i.down td.ep a:last-child").await;
    b.click(&health).await;
    b.wait_until(
        Duration::from_secs(10),
        "the health page",
        "return document.body.innerText.includes('\"status\"')",
    )
    .await;
    let health: Value = serde_json::from_str(&b.body_text().await).expect("health JSON");
    assert_eq!(health["status"], "DOWN");

    // The service link is round robin over UP instances.
    b.goto(&console).await;
    let service = b.find("a[href^='http://order-service.']").await;
    b.click(&service).await;
    b.wait_until(
        Duration::from_secs(10),
        "the service answers",
        "return document.body.innerText.includes('ORDER-SERVICE')",
    )
    .await;
    assert!(
        !b.body_text().await.contains("q8wvn"),
        "never the DOWN instance"
    );

    // The same console on the proxy listener, by its host name; links use that port.
    b.goto(&format!("http://xipgate.{DOMAIN}:{}/", demo.proxy))
        .await;
    b.wait_until(
        Duration::from_secs(10),
        "the console via the proxy",
        "return document.querySelectorAll('tr.i').length === 7",
    )
    .await;

    // The page refreshes itself in place (the footer's render time changes).
    b.goto(&console).await;
    let first = b
        .exec("return document.getElementById('foot').innerText", vec![])
        .await;
    b.wait_until(
        Duration::from_secs(15),
        "an in-place refresh",
        &format!("return document.getElementById('foot').innerText !== {first} && document.getElementById('live-text').innerText.startsWith('live')"),
    )
    .await;
    assert_eq!(
        b.find_all("tr.i").await.len(),
        7,
        "the table is still whole after a refresh"
    );
}

/// The demo without a browser: what its printed curl commands show.
#[test]
fn demo_answers_like_its_welcome_says() {
    let demo = Demo::start();
    let log = demo.log();
    assert!(
        log.contains("Console   http://127.0.0.1:") && log.contains("curl http://order-service."),
        "{log}"
    );
    let (s, _, body) = http_get(demo.console, "localhost", "/api/v1/services").unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(
        (s, names),
        (
            200,
            vec![
                "LEGACY-BILLING",
                "ORDER-SERVICE",
                "PAYMENT-SERVICE",
                "USER-SERVICE"
            ]
        )
    );
    let proxy = SocketAddr::from(([127, 0, 0, 1], demo.proxy));
    let (s, _, body) = http_get(proxy, &format!("payment-service.{DOMAIN}"), "/").unwrap();
    assert!(
        s == 200 && body.contains("Hello from PAYMENT-SERVICE"),
        "{s} {body}"
    );
    let (s, _, body) = http_get(
        proxy,
        &format!("order-7d9f8-x2k4q-8080.{DOMAIN}"),
        "/actuator/info",
    )
    .unwrap();
    assert!(
        s == 200 && body.contains("order-7d9f8-x2k4q:order-service:8080"),
        "{s} {body}"
    );
    let (s, _, _) = http_get(proxy, &format!("billing-legacy-01-8080.{DOMAIN}"), "/").unwrap();
    assert_eq!(s, 403, "the instance outside the allowlist is refused");
    let (s, _, body) = http_get(proxy, &format!("xipgate.{DOMAIN}"), "/").unwrap();
    assert!(
        s == 200 && body.contains("ORDER-SERVICE"),
        "the console on the proxy listener"
    );
}
