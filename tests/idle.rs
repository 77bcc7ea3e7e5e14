//! An idle edge sleeps (issue 27): between its registry syncs no thread of xipgate wakes on
//! a timer of its own. Pingora's `fast_timeout` keeps a thread ("Timer thread") that wakes
//! every 10 ms for the rest of the process's life once any timeout has used it; xipgate's
//! fast path and (with `fast_timeout_to_tokio_threshold_seconds: 0`) Pingora's HTTP/1
//! server use Tokio's timer instead, so after requests on both the proxy and the console
//! that thread must not exist, and the process must stay nearly still.
//!
//! Counted, not timed: the context switches of all threads (/proc/PID/task/*/status) over
//! an idle window. With the 10 ms thread they are at least 100 a second; what remains is
//! the registry's sync every second (a handful of wake-ups each).

mod common;

use std::time::Duration;

use common::*;

/// The idle window the switches are counted over.
const WINDOW: Duration = Duration::from_secs(2);
/// Voluntary context switches allowed per second of the window: the 1 s registry sync's
/// fetch and apply, with room to spare; the 10 ms timer thread alone makes 100.
const SWITCHES_PER_SECOND: u64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_edge_has_no_10ms_timer_thread() {
    let backend = Backend::start("a").await;
    let eureka = StubEureka::start().await;
    let inst = Inst::up("idle-svc", "idle-1", backend.addr);
    eureka.serve(std::slice::from_ref(&inst)).await;
    // The fast path, whichever engine the suite runs under: Pingora's upstream pool (the
    // other engine) sleeps on Pingora's timer, which this does not claim to avoid.
    let x = Xipgate::start(&eureka.url(), "  downstream:\n    fast_path: true\n");
    for _ in 0..20 {
        assert_eq!(x.get(&inst.label(), "/").0, 200);
        assert_eq!(x.get("idle-svc", "/").0, 200);
    }
    x.wait_for("/readyz", 200, Duration::from_secs(5));

    let pid = x.child.id();
    let names = threads(pid);
    assert!(
        !names.iter().any(|n| n == "Timer thread"),
        "Pingora's 10 ms timer thread runs: {names:?}"
    );
    let before = switches(pid);
    std::thread::sleep(WINDOW);
    let after = switches(pid);
    let limit = SWITCHES_PER_SECOND * WINDOW.as_secs();
    assert!(
        after - before <= limit,
        "{} voluntary context switches in {WINDOW:?} of idle (at most {limit}); threads {names:?}",
        after - before
    );
}

/// The names of the process's threads.
fn threads(pid: u32) -> Vec<String> {
    tasks(pid)
        .filter_map(|t| std::fs::read_to_string(t.join("comm")).ok())
        .map(|s| s.trim().to_string())
        .collect()
}

/// Voluntary context switches of all the process's threads so far.
fn switches(pid: u32) -> u64 {
    tasks(pid)
        .filter_map(|t| std::fs::read_to_string(t.join("status")).ok())
        .flat_map(|s| {
            s.lines()
                .filter_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .filter_map(|v| v.trim().parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

fn tasks(pid: u32) -> impl Iterator<Item = std::path::PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the process's threads")
        .filter_map(|e| e.ok().map(|e| e.path()))
}
