//! Hostile requests: a table of Host/authority cases that must each get the documented
//! 4xx and never reach a backend, connection floods bounded by configured limits, and
//! slow clients (heads that never end, responses never read, TLS handshakes never made)
//! bounded in time.

mod common;
#[path = "common/pki.rs"]
mod pki;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends one raw request (Connection: close is up to the case) and returns the status.
fn status_of(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let text = raw(addr, request).unwrap_or_default();
    let (s, _, body) = parse_response(&text);
    (s, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_hosts_get_a_4xx_and_are_never_proxied() {
    let backend = Backend::start("victim").await;
    let eureka = StubEureka::start().await;
    let svc = Inst::up("svc", "svc-1", backend.addr);
    let blocked = Inst::up("blocked", "blocked-1", backend.addr).ip("169.254.169.254");
    eureka.serve(&[svc.clone(), blocked.clone()]).await;
    let x = Xipgate::start(&eureka.url(), "");
    let d = DOMAIN;
    let long_host = format!("{}.{d}", "a".repeat(300));
    let label64 = format!("{}.{d}", "b".repeat(64));
    let req = |host: &str| {
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
    };

    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("missing Host", b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(), 400),
        ("empty Host", req(""), 400),
        ("IPv4 literal", req("127.0.0.1"), 400),
        ("IPv4 literal with port", req(&format!("127.0.0.1:{}", x.proxy.port())), 400),
        ("IPv6 literal", req("[::1]:8080"), 400),
        ("IPv6 literal, no port", req("[::1]"), 400),
        ("300-character host", req(&long_host), 400),
        ("64-character label", req(&label64), 400),
        ("unicode label", format!("GET / HTTP/1.1\r\nHost: sv\u{e7}.{d}\r\nConnection: close\r\n\r\n").into_bytes(), 400),
        ("punycode label (no such service)", req(&format!("xn--sv-0la.{d}")), 404),
        ("empty label (..)", req(&format!("svc..{d}")), 400),
        ("leading dot", req(&format!(".svc.{d}")), 400),
        ("only dots", req("...."), 400),
        ("trailing dot, unknown label", req(&format!("nope.{d}.")), 404),
        ("port garbage", req(&format!("svc.{d}:80abc")), 400),
        ("port out of range", req(&format!("svc.{d}:99999")), 400),
        ("empty port", req(&format!("svc.{d}:")), 400),
        ("two ports", req(&format!("svc.{d}:80:80")), 400),
        ("userinfo in Host", req(&format!("user@svc.{d}")), 400),
        ("userinfo in URI", format!("GET http://user:pw@svc.{d}/ HTTP/1.1\r\nHost: svc.{d}\r\nConnection: close\r\n\r\n").into_bytes(), 400),
        ("CR/LF injected in Host", format!("GET / HTTP/1.1\r\nHost: svc.{d}\rX-Evil: 1\r\nConnection: close\r\n\r\n").into_bytes(), 400),
        ("NUL in Host", format!("GET / HTTP/1.1\r\nHost: svc\0.{d}\r\nConnection: close\r\n\r\n").into_bytes(), 400),
        ("two Host headers", format!("GET / HTTP/1.1\r\nHost: svc.{d}\r\nHost: evil.example\r\nConnection: close\r\n\r\n").into_bytes(), 400),
        ("absolute URI naming another host", format!("GET http://evil.example/ HTTP/1.1\r\nHost: svc.{d}\r\nConnection: close\r\n\r\n").into_bytes(), 400),
        // HTTP/1.1 requires Host even with an absolute URI (RFC 9112 §3.2).
        ("absolute URI without Host", b"GET http://evil.example/ HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(), 400),
        ("host outside every domain", req("svc.evil.example"), 404),
        ("the bare domain", req(d), 404),
        ("nested labels", req(&format!("a.svc.{d}")), 404),
        ("domain as a prefix", req(&format!("svc.{d}.evil.example")), 404),
        ("domain without its dot", req(&format!("svc-{d}")), 404),
        ("dotted IPv4 under the domain", req(&format!("10.0.0.1.{d}")), 404),
        ("label of dashes only", req(&format!("---.{d}")), 400),
        ("label of underscores only", req(&format!("___.{d}")), 400),
        ("label starting with -", req(&format!("-svc.{d}")), 400),
        ("label ending with -", req(&format!("svc-.{d}")), 400),
        ("label starting with -, with port", req(&format!("-svc.{d}:{}", x.proxy.port())), 400),
        ("label starting and ending with -, upper case", req(&format!("-SVC-.{d}")), 400),
        ("absolute URI with a label ending in -", format!("GET http://svc-.{d}/ HTTP/1.1\r\nHost: svc-.{d}\r\nConnection: close\r\n\r\n").into_bytes(), 400),
        ("percent-encoding", req(&format!("%73vc.{d}")), 400),
        ("space inside", req(&format!("sv c.{d}")), 400),
        ("backslash", req(&format!("svc\\.{d}")), 400),
        ("unknown label", req(&format!("does-not-exist.{d}")), 404),
        ("label naming a blocked instance", req(&format!("{}.{d}", blocked.label())), 403),
        ("blocked instance, upper case", req(&format!("{}.{d}", blocked.label().to_uppercase())), 403),
        ("service whose only instance is blocked", req(&format!("blocked.{d}")), 503),
        // Pingora refuses CONNECT before any filter runs (proxying it is off).
        ("CONNECT tunnel", format!("CONNECT 10.0.0.1:22 HTTP/1.1\r\nHost: svc.{d}\r\n\r\n").into_bytes(), 400),
        ("header block over 1 MiB", format!("GET / HTTP/1.1\r\nHost: svc.{d}\r\nX-Big: {}\r\nConnection: close\r\n\r\n", "x".repeat(1 << 20)).into_bytes(), 400),
    ];
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for (name, request, want) in &cases {
        let (got, body) = status_of(x.proxy, request);
        // 503 is the documented answer for a service with nothing to route to; every
        // other case is a 4xx.
        if got != *want {
            failures.push(format!("{name}: got {got}, want {want} ({})", body.trim()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(backend.hits(), 0, "no hostile request may reach a backend");

    // Normalisations that do route (each a legitimate spelling of a known host).
    for host in [
        format!("svc.{d}."),
        format!("SVC.{}", d.to_uppercase()),
        format!("svc.{d}:{}", x.proxy.port()),
        format!("Svc_.{d}"),
    ] {
        let (got, body) = status_of(x.proxy, &req(&host));
        assert_eq!(got, 200, "{host}: {body}");
    }
}

/// The edge never proxies to itself. An instance registered at one of its own listeners
/// (here the console's, whose data a registrant could otherwise publish through the public
/// listener) is refused and shown blocked, like one outside `upstream.allow`; one that
/// leads back to the edge some other way (a relay) meets the edge's own Via entry and gets
/// 508 Loop Detected, on the proxy and the console listener alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_never_proxies_to_itself() {
    let backend = Backend::start("a").await;
    let eureka = StubEureka::start().await;
    let svc = Inst::up("svc", "svc-1", backend.addr);
    eureka.serve(std::slice::from_ref(&svc)).await;
    let x = Xipgate::start(&eureka.url(), "");
    let to_proxy = Relay::start(x.proxy, 1).await;
    let to_console = Relay::start(x.console, 1).await;
    let own_console = Inst::up("evil", "evil-1", x.console);
    let own_proxy = Inst::up("mirror", "mirror-1", x.proxy);
    let via_proxy = Inst::up("loop-proxy", "loop-proxy-1", to_proxy.addr);
    let via_console = Inst::up("loop-console", "loop-console-1", to_console.addr);
    let all = [
        svc.clone(),
        own_console.clone(),
        own_proxy.clone(),
        via_proxy.clone(),
        via_console.clone(),
    ];
    eureka.serve(&all).await;
    eventually(Duration::from_secs(10), "the registry has all five", || {
        x.api("/api/v1/registry").1["instances"].as_u64() == Some(5)
    });

    for own in [&own_console, &own_proxy] {
        let (s, _, body) = x.get(&own.label(), "/api/v1/registry");
        assert_eq!(s, 403, "{}: {body}", own.label());
        assert!(body.contains("own listener"), "{body}");
        let (s, v) = x.api(&format!("/api/v1/instances/{}", own.label()));
        assert_eq!(s, 200, "{v}");
        assert!(
            v["blocked"]
                .as_str()
                .is_some_and(|b| b.contains("own listener")),
            "{v}"
        );
    }
    // A service whose only instance is the edge has nothing to route to.
    let (s, _, body) = x.get("evil", "/api/v1/registry");
    assert_eq!(s, 503, "{body}");

    for (label, path) in [("loop-proxy", "/"), ("loop-console", "/api/v1/registry")] {
        let (s, _, body) = x.get(label, path);
        assert_eq!(s, 508, "{label}: {body}");
        assert!(body.contains("loop"), "{label}: {body}");
    }
    assert_eq!(backend.hits(), 0, "nothing reached the real backend");
}

/// The edge's Via entry: what a backend sees, and what the edge refuses to see coming
/// back. Another edge's entry (another process) is a chain, not a loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_carrying_the_edges_own_via_entry_is_a_508() {
    let backend = common::wire::Recorder::start(Vec::new());
    let eureka = StubEureka::start().await;
    let svc = Inst::up("svc", "svc-1", backend.addr);
    eureka.serve(std::slice::from_ref(&svc)).await;
    let x = Xipgate::start(&eureka.url(), "");
    let host = format!("svc.{DOMAIN}");
    let (s, _, body) = http_get(x.proxy, &host, "/first").unwrap();
    assert_eq!(s, 200, "{body}");
    let seen = backend.take();
    let via: Vec<&str> = seen
        .iter()
        .flat_map(|r| &r.headers)
        .filter(|(k, _)| k == "via")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(via.len(), 1, "{seen:?}");
    let mine = via[0].to_string();
    assert!(
        mine.starts_with("1.1 xipgate-") && unmark_via(&mine) == "1.1 xipgate-ID",
        "{mine}"
    );
    let send = |via: &str| {
        let text = raw(
            x.proxy,
            format!(
                "GET /again HTTP/1.1\r\nHost: {host}\r\nVia: {via}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        parse_response(&text)
    };
    for via in [
        mine.clone(),
        format!("1.0 fred, {mine}"),
        mine.to_uppercase(),
    ] {
        let (s, _, body) = send(&via);
        assert_eq!(s, 508, "Via: {via}: {body}");
        assert!(body.contains("loop"), "{body}");
    }
    assert!(backend.take().is_empty(), "a looped request is not proxied");
    let other = "1.1 xipgate-0123456789abcdef";
    assert_ne!(other, mine);
    let (s, _, body) = send(other);
    assert_eq!(s, 200, "{body}");
    let got: Vec<String> = backend
        .take()
        .iter()
        .flat_map(|r| r.headers.clone())
        .filter(|(k, _)| k == "via")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(got, [format!("{other}, {mine}")]);
    // The access log sees the 508s. Its writer is a thread of its own, so the five
    // records (200, three 508s, 200) are waited for, not read at once.
    let statuses = || -> Vec<u64> {
        x.access()
            .iter()
            .filter_map(|r| r["status"].as_u64())
            .collect()
    };
    eventually(Duration::from_secs(5), "five access records", || {
        statuses().len() >= 5
    });
    let statuses = statuses();
    assert_eq!(
        statuses.iter().filter(|s| **s == 508).count(),
        3,
        "{statuses:?}"
    );
}

/// Opens a connection from a chosen loopback source address.
fn connect_from(src: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::from((src, 0)).into())?;
    sock.connect_timeout(&to.into(), Duration::from_secs(5))?;
    Ok(sock.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_bounded_and_do_not_stop_others() {
    let backend = Backend::start("a").await;
    let eureka = StubEureka::start().await;
    let svc = Inst::up("svc", "svc-1", backend.addr);
    eureka.serve(std::slice::from_ref(&svc)).await;
    let x = Xipgate::start(&eureka.url(), "  downstream:\n    max_client_connections: 20\n    keepalive_timeout: 2s\n  log:\n    access: false\n");
    let host = format!("svc.{DOMAIN}");

    // Slowloris from 127.0.0.2: 40 connections trickling a header that never ends.
    let mut slow = Vec::new();
    for _ in 0..40 {
        let mut s = connect_from([127, 0, 0, 2], x.proxy).unwrap();
        let _ = s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Slow: ").as_bytes());
        slow.push(s);
    }
    // The connections over the limit are answered 429 and closed.
    let mut refused = 0;
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 64];
        if let Ok(n) = s.read(&mut buf) {
            if n > 0 && buf[..n].starts_with(b"HTTP/1.1 429") {
                refused += 1;
            }
        }
    }
    assert_eq!(
        refused, 20,
        "exactly the connections over max_client_connections are refused"
    );

    // Hundreds of idle connections from other addresses (20 each, within the limit).
    let mut idle = Vec::new();
    for host_byte in 10..50u8 {
        for _ in 0..20 {
            idle.push(connect_from([127, 0, 1, host_byte], x.proxy).unwrap());
        }
    }
    // Everyone else is still served while the slow and idle connections are held.
    for _ in 0..50 {
        let (s, _, body) = http_get(x.proxy, &host, "/").unwrap();
        assert_eq!(s, 200, "{body}");
    }
    // Keep-alive idle connections are closed after downstream.keepalive_timeout: an idle
    // connection that made one request is closed by the server.
    let mut kept = connect_from([127, 0, 0, 3], x.proxy).unwrap();
    kept.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut first = [0u8; 4096];
    let n = kept.read(&mut first).unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = kept.read_to_end(&mut rest); // returns at EOF, when the server closes
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(8),
        "closed after {waited:?}"
    );
    drop((slow, idle));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openings_shorter_than_the_h2_preface_are_answered_and_h2c_still_works() {
    let backend = Backend::start("a").await;
    let eureka = StubEureka::start().await;
    eureka
        .serve(&[Inst::up("svc", "svc-1", backend.addr)])
        .await;
    let x = Xipgate::start(&eureka.url(), "");
    // Fewer bytes than the 24 of the h2c preface, and then nothing: Pingora's h2c check
    // waited for the rest with no deadline, so these were never answered.
    for (name, bytes) in [
        ("one NUL", &b"\0"[..]),
        ("HAProxy's health check", b"OPTIONS / HTTP/1.0\r\n\r\n"),
    ] {
        let mut s = TcpStream::connect(x.proxy).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(bytes).expect("write");
        let mut out = Vec::new();
        let read = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).to_string();
        assert!(
            read.is_ok(),
            "{name}: not answered and closed within 5 s ({read:?}), got {text:?}"
        );
        // Pingora's HTTP/1 answer to a head it cannot parse or use.
        let (status, _, _) = parse_response(&text);
        assert_eq!(status, 400, "{name}: {text}");
    }
    // A client with prior knowledge still gets HTTP/2 over cleartext.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--http2-prior-knowledge"])
        .args(["-o", "/dev/null", "-w", "%{http_version} %{http_code}"])
        .arg(format!("http://svc.{DOMAIN}:{}/", x.proxy.port()))
        .args([
            "--resolve",
            &format!("svc.{DOMAIN}:{}:127.0.0.1", x.proxy.port()),
        ])
        .output()
        .expect("run curl (Debian package curl)");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2 200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends `first`, then `drip` every 250 ms (when given) without ever ending the head,
/// until the server answers and closes or `within` passes: how long after `first` the
/// connection was closed, and what was answered.
fn trickle(
    addr: SocketAddr,
    first: &[u8],
    drip: Option<&[u8]>,
    within: Duration,
) -> (Duration, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(250)))
        .expect("timeout");
    s.write_all(first).expect("write");
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < within {
        match s.read(&mut buf) {
            Ok(0) => return (started.elapsed(), String::from_utf8_lossy(&out).into()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (started.elapsed(), String::from_utf8_lossy(&out).into()),
        }
        if let Some(d) = drip {
            let _ = s.write_all(d);
        }
    }
    (started.elapsed(), String::from_utf8_lossy(&out).into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_must_arrive_within_header_timeout() {
    let backend = Backend::start("a").await;
    let eureka = StubEureka::start().await;
    eureka
        .serve(&[Inst::up("svc", "svc-1", backend.addr)])
        .await;
    let x = Xipgate::start(
        &eureka.url(),
        "  downstream:\n    header_timeout: 2s\n  log:\n    access: false\n",
    );
    let host = format!("svc.{DOMAIN}");
    let start = format!("GET / HTTP/1.1\r\nHost: {host}\r\n");
    let long = format!("{start}X-Pad: {}\r\n", "p".repeat(20 * 1024));
    // Each read comes well within Pingora's 60 s per read; the head never ends.
    // (name, first bytes, dripped bytes, answered with a 408)
    type Case<'a> = (&'a str, &'a [u8], Option<&'a [u8]>, bool);
    let cases: [Case; 4] = [
        (
            "a header line every 250 ms",
            start.as_bytes(),
            Some(b"X-Drip: 1\r\n"),
            true,
        ),
        (
            "a head over the fast path's 16 KiB, then drips",
            long.as_bytes(),
            Some(b"X-Drip: 1\r\n"),
            true,
        ),
        ("a byte every 250 ms", b"G", Some(b"E"), true),
        (
            "part of the h2c preface, then silence",
            b"PRI * HTTP/2.0\r\n",
            None,
            false,
        ),
    ];
    for (name, first, drip, answered) in cases {
        let (after, text) = trickle(x.proxy, first, drip, Duration::from_secs(10));
        assert!(
            after >= Duration::from_millis(1500) && after < Duration::from_secs(2 + 3),
            "{name}: closed after {after:?}, want about header_timeout (2 s): {text:?}"
        );
        if answered {
            let (status, _, body) = parse_response(&text);
            assert_eq!(status, 408, "{name}: {text:?}");
            assert!(body.contains("header_timeout"), "{name}: {body}");
        }
    }
    // A client that sends its head promptly is served as before.
    let (s, _, body) = http_get(x.proxy, &host, "/").expect("get");
    assert_eq!(s, 200, "{body}");
}

/// A backend that answers every request with `size` bytes and reports, for each
/// connection, when it ended and whether the whole body was written.
async fn big_backend(
    size: usize,
) -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<(Instant, bool)>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n");
                let body = vec![b'x'; 64 * 1024];
                let mut left = size;
                let mut ok = sock.write_all(resp.as_bytes()).await.is_ok();
                while ok && left > 0 {
                    let n = left.min(body.len());
                    ok = sock.write_all(&body[..n]).await.is_ok();
                    left -= n;
                }
                let _ = tx.send((Instant::now(), ok && left == 0));
            });
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_and_its_upstream_released() {
    const SIZE: usize = 50 * 1024 * 1024;
    let (addr, mut ended) = big_backend(SIZE).await;
    let eureka = StubEureka::start().await;
    eureka.serve(&[Inst::up("big", "big-1", addr)]).await;
    let x = Xipgate::start(
        &eureka.url(),
        "  upstream:\n    write_timeout: 1s\n  log:\n    access: false\n",
    );
    let write_timeout = Duration::from_secs(1);
    // A plain GET (the fast path's, unless the suite runs on Pingora's engine) and one
    // with an Origin header, which Pingora's engine serves in both runs.
    for (name, extra) in [
        ("plain GET", ""),
        ("GET with Origin", "Origin: http://a.example\r\n"),
    ] {
        let mut client = TcpStream::connect(x.proxy).expect("connect");
        client
            .write_all(format!("GET /big HTTP/1.1\r\nHost: big.{DOMAIN}\r\n{extra}\r\n").as_bytes())
            .expect("write");
        let sent = Instant::now();
        let end = tokio::time::timeout(write_timeout + Duration::from_secs(5), ended.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("{name}: the upstream connection was still open after write_timeout + 5 s")
            })
            .expect("the backend reports");
        assert!(
            !end.1,
            "{name}: the whole 50 MB went out to a client that reads nothing"
        );
        assert!(
            end.0 - sent < write_timeout + Duration::from_secs(5),
            "{name}"
        );
        // And the client's connection is closed: what is buffered, then the end.
        client
            .set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        let closed = loop {
            match client.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => got += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break false
                }
                Err(_) => break true,
            }
        };
        assert!(
            closed,
            "{name}: the client connection is still open ({got} bytes read)"
        );
        assert!(got < SIZE, "{name}: {got} bytes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshakes_count_against_the_client_limit_and_have_a_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = pki::Ca::new(dir.path(), "edge-ca");
    let wild = format!("*.{DOMAIN}");
    let edge = ca.leaf(dir.path(), "edge", &[wild.as_str(), DOMAIN], 1);
    let backend = Backend::start("a").await;
    let eureka = StubEureka::start().await;
    eureka
        .serve(&[Inst::up("svc", "svc-1", backend.addr)])
        .await;
    let x = Xipgate::start(
        &eureka.url(),
        &pki::tls_yaml(
            &[&edge],
            "  downstream:\n    max_client_connections: 3\n    header_timeout: 2s\n",
        ),
    );
    // Five connections to the HTTPS listener that never start a handshake.
    let mut idle: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(x.https).expect("connect"))
        .collect();
    let opened = Instant::now();
    let is_closed = |s: &mut TcpStream, wait: Duration| {
        s.set_read_timeout(Some(wait)).expect("timeout");
        let mut b = [0u8; 16];
        // Nothing is ever sent on these: any read that returns is the end (0) or a reset.
        match s.read(&mut b) {
            Ok(n) => n == 0,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        }
    };
    let closed_at_once = idle
        .iter_mut()
        .filter_map(|s| is_closed(s, Duration::from_millis(200)).then_some(()))
        .count();
    assert!(opened.elapsed() < Duration::from_millis(1500));
    assert_eq!(
        closed_at_once, 2,
        "the two over max_client_connections are closed at once"
    );
    // The three within the limit are closed at header_timeout.
    for s in &mut idle {
        assert!(
            is_closed(s, Duration::from_secs(5)),
            "open after {:?}",
            opened.elapsed()
        );
    }
    let waited = opened.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(2 + 3),
        "closed after {waited:?}, want about header_timeout (2 s)"
    );
    // Real clients are served.
    let port = x.https.port();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&ca.file)
        .arg("--resolve")
        .arg(format!("svc.{DOMAIN}:{port}:127.0.0.1"))
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("https://svc.{DOMAIN}:{port}/"))
        .output()
        .expect("run curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
