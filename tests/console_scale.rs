//! The console in headless Chromium at two registry sizes, 10 and 100,000 instances:
//! the page loads and is usable within seconds, the filter narrows to one instance, a
//! service unfolds to its instances, and the traffic charts move while load runs
//! through the proxy. A screenshot of each size is kept as
//! `target/console-scale-<n>.png`.
//!
//! Every instance points at one real loopback backend, so a load can reach any of them.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use browser::Browser;
use common::{http_get, Backend, Inst, StubEureka, Xipgate, DOMAIN};

const VISIBLE_ROWS: &str =
    "return [...document.querySelectorAll('tr.i')].filter(r => r.offsetParent !== null).length";

/// `services` services svc-NNNN of `per` instances each, pods pNNNNNN.
fn registry(services: usize, per: usize, backend: &Backend) -> Vec<Inst> {
    (0..services * per)
        .map(|k| {
            Inst::up(
                &format!("svc-{:04}", k / per),
                &format!("p{k:06}"),
                backend.addr,
            )
        })
        .collect()
}

/// Requests through the proxy to `hosts` (round robin) until dropped.
struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Load {
    fn start(proxy: std::net::SocketAddr, hosts: Vec<String>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            while !flag.load(Ordering::Relaxed) {
                let host = &hosts[n % hosts.len()];
                let _ = http_get(proxy, host, "/");
                n += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            n
        });
        Load {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn screenshot_path(name: &str) -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join(name)
}

async fn scenario(services: usize, per: usize) {
    let total = services * per;
    let backend = Backend::start("scale").await;
    let eureka = StubEureka::start().await;
    let instances = registry(services, per, &backend);
    eureka.serve(&instances).await;
    // A large registry: fetched once a minute, with time to load it in a debug build.
    let x = Xipgate::start_with(
        &eureka.url(),
        "  registry:\n    eureka:\n      interval: 60s\n      timeout: 60s\n      max_body: 512MiB\n    startup_wait: 120s\n",
        "",
        false,
    );
    x.wait_for("/readyz", 200, Duration::from_secs(180));
    let console = format!("http://{}/", x.console);

    // The page is small whatever the registry holds.
    let (status, _, page) = http_get(x.console, "localhost", "/").expect("the page");
    assert_eq!(status, 200);
    assert!(page.len() < 1_000_000, "{} bytes", page.len());

    let b = Browser::start(&[&format!("--host-resolver-rules=MAP *.{DOMAIN} 127.0.0.1")]).await;
    let started = Instant::now();
    b.goto(&console).await;
    let rows_on_page = services.min(100);
    b.wait_until(
        Duration::from_secs(10),
        "the services are listed",
        &format!("return document.querySelectorAll('tr.svc').length === {rows_on_page}"),
    )
    .await;
    let usable = started.elapsed();
    assert!(usable < Duration::from_secs(5), "usable after {usable:?}");
    let totals = b
        .exec(
            "return document.getElementById('totals').textContent",
            vec![],
        )
        .await;
    let totals = totals
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        totals.starts_with(&format!("{services} services | {total} instances")),
        "the totals: {totals}"
    );

    // The filter narrows to one instance (answered by the server).
    let one = &instances[total / 2 + 3];
    let q = b.find("#q").await;
    b.click(&q).await;
    b.type_into(&q, &one.id[..7]).await;
    b.wait_until(
        Duration::from_secs(10),
        "the filter finds one instance",
        &format!("{VISIBLE_ROWS} === 1"),
    )
    .await;
    assert!(b.body_text().await.contains(&one.label()));
    b.type_into(&q, "\u{E00C}").await; // Escape clears it.
    b.wait_until(
        Duration::from_secs(10),
        "the filter clears",
        &format!("return document.querySelectorAll('tr.svc').length === {rows_on_page}"),
    )
    .await;

    // A service unfolds to its instances (fetched from the server when folded).
    let svc = "svc-0001";
    let group = format!("tbody[data-s='{svc}']");
    let closed = b
        .exec(
            &format!("return document.querySelector(\"{group}\").hasAttribute('data-closed')"),
            vec![],
        )
        .await;
    assert_eq!(
        closed,
        serde_json::json!(total > 300),
        "folded only when large"
    );
    if total > 300 {
        let toggle = b.find(&format!("{group} .tg")).await;
        b.click(&toggle).await;
    }
    b.wait_until(
        Duration::from_secs(10),
        "the service's instances are shown",
        &format!("return [...document.querySelectorAll(\"{group} tr.i\")].filter(r => r.offsetParent !== null).length === {}", per.min(100)),
    )
    .await;
    assert!(b.url().await.contains("open=svc-0001") || total <= 300);

    // Load through the proxy: the service's and one instance's charts move.
    let pod = instances[per].label(); // svc-0001's first instance
    let cell = |kind: &str, label: &str| {
        format!("document.querySelector(\"td[data-t='{kind}:{label}'][data-m='rps']\")")
    };
    let flat = b
        .exec(
            &format!(
                "return {}.querySelector('polyline').getAttribute('points')",
                cell("s", svc)
            ),
            vec![],
        )
        .await;
    let load = Load::start(
        x.proxy,
        vec![format!("{svc}.{DOMAIN}"), format!("{pod}.{DOMAIN}")],
    );
    for (kind, label) in [("s", svc), ("i", pod.as_str())] {
        b.wait_until(
            Duration::from_secs(15),
            &format!("the {kind}:{label} chart moves"),
            &format!(
                "var c = {}; return c.querySelector('polyline').getAttribute('points') !== {flat} && c.querySelector('.tv').textContent.endsWith('/s')",
                cell(kind, label)
            ),
        )
        .await;
    }
    b.screenshot(&screenshot_path(&format!("console-scale-{total}.png")))
        .await;

    // Sorted by requests per second, the busy service comes first.
    let sort = b.find("a[data-sort='rps']").await;
    b.click(&sort).await;
    b.wait_until(
        Duration::from_secs(10),
        "the busiest service first",
        &format!("return document.querySelector('tbody.g').getAttribute('data-s') === '{svc}'"),
    )
    .await;
    drop(load);
    assert!(backend.hits() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_with_10_instances() {
    scenario(2, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_with_100_000_instances() {
    scenario(1000, 100).await;
}
