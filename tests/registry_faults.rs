//! Registry faults with traffic flowing: every way a Eureka server can fail, and in each
//! case the process stays up, known instances keep answering with zero failed requests,
//! the error shows in `/api/v1/registry` and the metrics, and the table recovers within
//! one interval once the server is healthy again.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use wiremock::matchers::any;
use wiremock::{Mock, ResponseTemplate};

/// Requests to `label` in a loop until stopped; counts failures.
struct Traffic {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(x: &Xipgate, labels: Vec<String>) -> Self {
        let (stop, ok, failed) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (s, o, f, addr) = (stop.clone(), ok.clone(), failed.clone(), x.proxy);
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                for label in &labels {
                    match http_get(addr, &format!("{label}.{DOMAIN}"), "/") {
                        Ok((200, _, _)) => o.fetch_add(1, Ordering::SeqCst),
                        _ => f.fetch_add(1, Ordering::SeqCst),
                    };
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Traffic {
            stop,
            ok,
            failed,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

fn syncs_failed(x: &Xipgate) -> u64 {
    x.api("/api/v1/registry").1["syncs_failed"]
        .as_u64()
        .unwrap_or(0)
}

fn metric(x: &Xipgate, line_start: &str) -> f64 {
    let (_, _, body) = http_get(x.console, "localhost", "/metrics").unwrap();
    body.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_registry_fault_keeps_the_last_good_table() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let eureka = StubEureka::start().await;
    let ia = Inst::up("svc", "svc-a", a.addr);
    eureka.serve(std::slice::from_ref(&ia)).await;
    let x = Xipgate::start(
        &eureka.url(),
        "  registry:\n    eureka:\n      max_body: 4MiB\n",
    );
    let traffic = Traffic::start(&x, vec![ia.label(), "svc".to_string()]);

    let huge = vec![b' '; 100 * 1024 * 1024];
    let faults: Vec<(&str, ResponseTemplate, &str)> = vec![
        (
            "never answers",
            ResponseTemplate::new(200).set_delay(Duration::from_secs(30)),
            "no answer within 1s (xipgate.registry.eureka.timeout)",
        ),
        (
            "HTTP 500",
            ResponseTemplate::new(500).set_body_string("boom"),
            "HTTP 500",
        ),
        (
            "HTTP 403 (Eureka starting up)",
            ResponseTemplate::new(403),
            "HTTP 403",
        ),
        ("HTTP 404", ResponseTemplate::new(404), "404"),
        (
            "an HTML error page",
            ResponseTemplate::new(200).set_body_raw(
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
                "text/html",
            ),
            "<html>",
        ),
        (
            "truncated JSON",
            ResponseTemplate::new(200).set_body_raw(
                r#"{"applications":{"application":[{"name":"SVC","instance":[{"#,
                "application/json",
            ),
            "invalid JSON",
        ),
        (
            "JSON of the wrong shape",
            ResponseTemplate::new(200).set_body_raw(r#"{"applications": 42}"#, "application/json"),
            "not an object",
        ),
        (
            "a 100 MB body",
            ResponseTemplate::new(200).set_body_raw(huge, "application/json"),
            "limit",
        ),
        (
            "gzip that does not decompress",
            ResponseTemplate::new(200)
                .insert_header("content-encoding", "gzip")
                .set_body_raw(
                    b"\x1f\x8b\x08\x00garbage-not-deflate".to_vec(),
                    "application/json",
                ),
            "reading the body failed",
        ),
    ];
    let mut generation = 0;
    for (name, template, words) in faults {
        let before = syncs_failed(&x);
        let metric_before = metric(&x, "xipgate_registry_syncs_total{result=\"error\"}");
        eureka.server.reset().await;
        Mock::given(any())
            .respond_with(template)
            .mount(&eureka.server)
            .await;
        eventually(Duration::from_secs(10), name, || {
            syncs_failed(&x) >= before + 2
        });
        let reg = x.api("/api/v1/registry").1;
        let err = reg["last_error"].as_str().unwrap_or("").to_string();
        assert!(
            err.contains(words),
            "{name}: last_error {err:?} should mention {words:?}"
        );
        assert!(
            metric(&x, "xipgate_registry_syncs_total{result=\"error\"}") > metric_before,
            "{name}: metrics count it"
        );
        assert_eq!(
            x.get(&ia.label(), "/").0,
            200,
            "{name}: the known instance still answers"
        );
        assert_eq!(x.api("/readyz").0, 200, "{name}: still ready");

        // Healthy again, with a change: the change is seen within about one interval.
        generation += 1;
        let extra = Inst::up("svc", &format!("svc-b{generation}"), b.addr);
        eureka.serve(&[ia.clone(), extra.clone()]).await;
        eventually(Duration::from_secs(4), &format!("{name}: recovery"), || {
            x.get(&extra.label(), "/").0 == 200
        });
        assert_eq!(
            x.api("/api/v1/registry").1["consecutive_failures"],
            0,
            "{name}: recovered\n{}",
            x.log()
        );
    }
    let (ok, failed) = traffic.finish();
    assert!(ok > 100, "traffic flowed ({ok})");
    assert_eq!(failed, 0, "no request failed during any registry fault");
    // The process is still the one we started.
    assert!(x.api("/healthz").0 == 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suddenly_empty_registry_is_held_for_the_grace_period() {
    let a = Backend::start("a").await;
    let eureka = StubEureka::start().await;
    let ia = Inst::up("svc", "svc-a", a.addr);
    eureka.serve(std::slice::from_ref(&ia)).await;
    // `empty_grace`, the key's old name, still works.
    let x = Xipgate::start(&eureka.url(), "  registry:\n    empty_grace: 4s\n");
    eureka.serve_restarted(&[]).await;
    eventually(
        Duration::from_secs(5),
        "the empty registry is noticed",
        || !x.api("/api/v1/registry").1["held_since"].is_null(),
    );
    assert_eq!(x.api("/api/v1/registry").1["held_instances"], 1);
    assert_eq!(metric(&x, "xipgate_registry_held_instances"), 1.0);
    assert_eq!(
        x.get(&ia.label(), "/").0,
        200,
        "known instances keep routing"
    );
    let (_, _, page) = http_get(x.console, "localhost", "/").unwrap();
    assert!(page.contains("fewer than half"), "the console says so");
    // After the grace period the empty registry is believed.
    eventually(
        Duration::from_secs(8),
        "the empty registry is applied",
        || x.get(&ia.label(), "/").0 == 404,
    );
    assert!(x.api("/api/v1/registry").1["held_since"].is_null());
    assert_eq!(metric(&x, "xipgate_registry_held_instances"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_server_among_several_is_skipped() {
    let a = Backend::start("a").await;
    let (bad, good) = (StubEureka::start().await, StubEureka::start().await);
    let ia = Inst::up("svc", "svc-a", a.addr);
    bad.serve_body(500, "down", "text/plain").await;
    good.serve(std::slice::from_ref(&ia)).await;
    let dead = format!("http://127.0.0.1:{}/eureka", free_port());
    let urls = format!(
        "  registry:\n    eureka:\n      urls: [\"{dead}\", \"{}\", \"{}\"]\n      interval: 1s\n",
        bad.url(),
        good.url()
    );
    let x = Xipgate::start(&bad.url(), &urls);
    assert_eq!(x.get(&ia.label(), "/").0, 200);
    let reg = x.api("/api/v1/registry").1;
    assert_eq!(reg["last_source"], good.url());
    assert_eq!(reg["sources"].as_array().map(Vec::len), Some(3));
}

#[test]
fn gzip_registries_are_accepted() {
    // Eureka servers behind a proxy often gzip; the stub proves the happy path too.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, eureka) = rt.block_on(async { (Backend::start("a").await, StubEureka::start().await) });
    let ia = Inst::up("zipped", "zipped-1", a.addr);
    rt.block_on(async {
        eureka.server.reset().await;
        Mock::given(any())
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("content-encoding", "gzip")
                    .set_body_raw(
                        gzip(apps_json(std::slice::from_ref(&ia)).as_bytes()),
                        "application/json",
                    ),
            )
            .mount(&eureka.server)
            .await;
    });
    let x = Xipgate::start(&eureka.url(), "");
    assert_eq!(x.get(&ia.label(), "/").0, 200);
    // Bytes are counted as they crossed the wire; the body size is the decompressed one.
    let plain = apps_json(std::slice::from_ref(&ia)).len() as u64;
    let zipped = gzip(apps_json(std::slice::from_ref(&ia)).as_bytes()).len() as u64;
    let reg = x.api("/api/v1/registry").1;
    let total = reg["bytes_total"].as_u64().unwrap_or(0);
    assert_eq!(reg["last_body_bytes"].as_u64(), Some(plain));
    assert!(zipped < plain);
    // Every fetch (full or delta) got the same gzip body here.
    assert!(
        total >= zipped && total.is_multiple_of(zipped),
        "{total} bytes received in fetches of {zipped} compressed bytes each"
    );
}

/// A server that answers the head at once and then stalls in the body: the timeout is the
/// whole request's, and the message says the body was still arriving and names the setting.
#[test]
fn a_body_still_arriving_at_the_timeout_names_the_setting() {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let server = std::thread::spawn(move || {
        let mut open = Vec::new();
        for conn in listener.incoming() {
            if stopped.load(Ordering::SeqCst) {
                break;
            }
            let Ok(mut conn) = conn else { continue };
            let mut head = [0u8; 4096];
            let _ = conn.read(&mut head);
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"applications\":",
            );
            // Kept open, never finished.
            open.push(conn);
        }
    });
    let x = Xipgate::start_with(&format!("http://{addr}/eureka"), "", "", false);
    eventually(
        Duration::from_secs(10),
        "the stalled body is reported",
        || x.api("/api/v1/registry").1["last_error"].as_str().is_some(),
    );
    let err = x.api("/api/v1/registry").1["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        err.contains("body") && err.contains("xipgate.registry.eureka.timeout"),
        "{err}"
    );
    assert!(!err.contains("no answer"), "the head did arrive: {err}");
    drop(x);
    stop.store(true, Ordering::SeqCst);
    let _ = std::net::TcpStream::connect(addr);
    let _ = server.join();
}
