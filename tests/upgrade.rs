//! Zero-downtime upgrade through Pingora's listening-socket handoff, under load:
//! start a second process with `-u` on the same upgrade_sock, SIGQUIT the first, and
//! count failed requests on new connections and on kept-alive connections.
//!
//! Slow (about 15 s), so `#[ignore]`d by default; `.ci/run` runs it with
//! `--include-ignored`.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

struct Counts {
    ok: AtomicUsize,
    failed: AtomicUsize,
}

impl Counts {
    fn new() -> Arc<Self> {
        Arc::new(Counts {
            ok: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
        })
    }
    fn get(&self) -> (usize, usize) {
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

/// Kills the new process at the end, whatever happens.
struct Reaper(std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: runs two processes through a handoff under load"]
async fn upgrade_under_load_drops_nothing() {
    let backend = Backend::start("a").await;
    let eureka = StubEureka::start().await;
    let inst = Inst::up("order-service", "order-1", backend.addr);
    eureka.serve(std::slice::from_ref(&inst)).await;
    let mut old = Xipgate::start_with(
        &eureka.url(),
        "  log:\n    access: false\n",
        "grace_period_seconds: 1\ngraceful_shutdown_timeout_seconds: 3\n",
        true,
    );
    let host = format!("{}.{DOMAIN}", inst.label());
    let stop = Arc::new(AtomicBool::new(false));

    // New-connection clients: one request per connection.
    let fresh = Counts::new();
    let mut threads = Vec::new();
    for _ in 0..4 {
        let (stop, counts, host, addr) = (stop.clone(), fresh.clone(), host.clone(), old.proxy);
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match http_get(addr, &host, "/") {
                    Ok((200, _, _)) => counts.ok.fetch_add(1, Ordering::SeqCst),
                    _ => counts.failed.fetch_add(1, Ordering::SeqCst),
                };
            }
        }));
    }
    // Keep-alive clients: a pooled HTTP client, as applications use. A server may close an
    // idle kept-alive connection just as the client sends on it (HTTP/1.1's inherent race);
    // browsers, Go's net/http and OkHttp then retry an idempotent request once on a new
    // connection. hyper does not, so the retry is done here, and both counts are kept:
    // `kept` after that one retry, `kept_raw` the first attempts that failed.
    let kept = Counts::new();
    let kept_raw = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (stop, counts, host, addr) = (stop.clone(), kept.clone(), host.clone(), old.proxy);
        let raw_failures = kept_raw.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            let get = || async {
                match client
                    .get(format!("http://{addr}/"))
                    .header("host", &host)
                    .send()
                    .await
                {
                    Ok(resp) => resp.status() == 200 && resp.bytes().await.is_ok(),
                    Err(_) => false,
                }
            };
            while !stop.load(Ordering::SeqCst) {
                let mut ok = get().await;
                if !ok {
                    raw_failures.fetch_add(1, Ordering::SeqCst);
                    ok = get().await;
                }
                let counter = if ok { &counts.ok } else { &counts.failed };
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = (fresh.get(), kept.get());

    // 1. Start the new process with -u: it waits on upgrade_sock for the sockets.
    let sock = old.dir.path().join("upgrade.sock");
    let new_log = std::fs::File::create(old.dir.path().join("new.log")).unwrap();
    let new = Reaper(
        Command::new(env!("CARGO_BIN_EXE_xipgate"))
            .args(["-u", "-c"])
            .arg(&old.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(new_log)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "the new process never opened {}",
            sock.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 2. SIGQUIT the old one: it hands the listening sockets over and drains.
    let pid = old.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-QUIT", &pid])
        .status()
        .unwrap()
        .success());
    let exited = tokio::task::spawn_blocking(move || {
        let status = old.child.wait();
        (old, status)
    });
    let (old, status) = tokio::time::timeout(Duration::from_secs(20), exited)
        .await
        .expect("old process exits")
        .unwrap();
    assert!(status.is_ok());
    let during = (fresh.get(), kept.get());

    // Keep going on the new process alone for a while.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (fresh_total, kept_total) = (fresh.get(), kept.get());
    let new_log = std::fs::read_to_string(old.dir.path().join("new.log")).unwrap_or_default();
    println!(
        "upgrade: new connections {} ok / {} failed; keep-alive {} ok / {} failed after one client retry ({} first attempts failed); before handoff {before:?}, at old exit {during:?}",
        fresh_total.0, fresh_total.1, kept_total.0, kept_total.1, kept_raw.load(Ordering::SeqCst)
    );
    assert!(
        during.0 .0 > before.0 .0 && fresh_total.0 > during.0 .0,
        "traffic flowed before, during and after"
    );
    assert_eq!(
        fresh_total.1, 0,
        "no request on a new connection may fail\nnew process log:\n{new_log}"
    );
    assert_eq!(
        kept_total.1, 0,
        "idempotent keep-alive requests are retried by the client and succeed"
    );
    assert!(
        new_log.contains("Starting services") || !new_log.is_empty(),
        "{new_log}"
    );
    // The new process answers on the same ports, with the registry loaded.
    let (s, _, _) = http_get(old.console, "localhost", "/readyz").unwrap();
    assert_eq!(s, 200);
    drop(new);
}
