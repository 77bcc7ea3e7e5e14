//! The same raw requests through both engines (`xipgate.downstream.fast_path` on and off)
//! against one recording backend, compared: the client's status, headers (without
//! `Date`, which only Pingora's path adds) and body, and the exact request head the
//! backend received. The rules both engines follow live in `src/proxy/rules.rs`.

#[path = "differential/balance.rs"]
mod balance;
mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::wire::{exchange, Received, Recorder};
use common::*;

/// One case: the request (with `{host}` for the service host) and the raw response the
/// backend gives to it.
struct Case {
    name: &'static str,
    request: &'static str,
    response: &'static [u8],
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";

fn cases() -> Vec<Case> {
    let c = |name, request, response| Case {
        name,
        request,
        response,
    };
    vec![
        c("plain", "GET /plain HTTP/1.1\r\nHost: {host}\r\n\r\n", OK),
        c("query", "GET /query?a=%20b&c=d HTTP/1.1\r\nHost: {host}\r\n\r\n", OK),
        c("head", "HEAD /head HTTP/1.1\r\nHost: {host}\r\n\r\n", OK),
        c("delete", "DELETE /delete HTTP/1.1\r\nHost: {host}\r\n\r\n", OK),
        c(
            "proxy-credentials",
            "GET /proxy-credentials HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: Basic c2VjcmV0\r\nProxy-Authenticate: Basic\r\n\r\n",
            OK,
        ),
        c(
            "hop-by-hop",
            "GET /hop-by-hop HTTP/1.1\r\nHost: {host}\r\nKeep-Alive: timeout=5\r\nTrailer: X-T\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nProxy-Connection: keep-alive\r\n\r\n",
            OK,
        ),
        c(
            "xff-one",
            "GET /xff-one HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n",
            OK,
        ),
        c(
            "xff-empty-then-one",
            "GET /xff-empty-then-one HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: \r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
            OK,
        ),
        c(
            "xff-two",
            "GET /xff-two HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n\r\n",
            OK,
        ),
        c(
            "xff-forged-edge-headers",
            "GET /xff-forged HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 1\r\n\r\n",
            OK,
        ),
        c(
            "forged-forwarding",
            "GET /forged-forwarding HTTP/1.1\r\nHost: {host}\r\nForwarded: for=6.6.6.6;host=evil.example;proto=https\r\nX-Real-IP: 6.6.6.6\r\nX_Forwarded_Host: evil.example\r\nX_Forwarded_For: 6.6.6.6\r\nx-forwarded_proto: https\r\nVia: 1.0 fred\r\n\r\n",
            OK,
        ),
        c(
            "connection-names-edge-headers",
            "GET /connection-names-edge-headers HTTP/1.1\r\nHost: {host}\r\nConnection: x-forwarded-port, via, forwarded\r\nX-Forwarded-Port: 1\r\nVia: 1.0 fred\r\nForwarded: for=6.6.6.6\r\n\r\n",
            OK,
        ),
        c(
            "connection-names-x-forwarded-host",
            "GET /connection-names-x-forwarded-host HTTP/1.1\r\nHost: {host}\r\nConnection: x-forwarded-host\r\nX-Forwarded-Host: evil.example\r\n\r\n",
            OK,
        ),
        c("fragment", "GET /fragment#frag HTTP/1.1\r\nHost: {host}\r\n\r\n", OK),
        c("raw-brackets", "GET /a{|}^`[] HTTP/1.1\r\nHost: {host}\r\n\r\n", OK),
        c(
            "cl-and-te",
            "GET /cl-and-te HTTP/1.1\r\nHost: {host}\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        c(
            "cl-plus",
            "GET /cl-plus HTTP/1.1\r\nHost: {host}\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
        ),
        c(
            "cl-nbsp",
            "GET /cl-nbsp HTTP/1.1\r\nHost: {host}\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\xc2\xa0\r\n\r\nhello",
        ),
        c(
            "cl-list",
            "GET /cl-list HTTP/1.1\r\nHost: {host}\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello",
        ),
        c(
            "cl-conflict",
            "GET /cl-conflict HTTP/1.1\r\nHost: {host}\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        c(
            "space-before-colon",
            "GET /space-before-colon HTTP/1.1\r\nHost: {host}\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello",
        ),
        c(
            "chunked",
            "GET /chunked HTTP/1.1\r\nHost: {host}\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        ),
        // Chunk framing: both engines read size lines with httparse and hold the trailer
        // section to CRLF lines; the client gets canonical size lines from both.
        c(
            "chunk-ext",
            "GET /chunk-ext HTTP/1.1\r\nHost: {host}\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 ; x=y\r\nhello\r\n0\r\n\r\n",
        ),
        c(
            "chunk-empty-size",
            "GET /chunk-empty-size HTTP/1.1\r\nHost: {host}\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n\r\n\r\n",
        ),
        c(
            "chunk-trailers",
            "GET /chunk-trailers HTTP/1.1\r\nHost: {host}\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n",
        ),
        c(
            "chunk-trailer-bare-lf",
            "GET /chunk-trailer-bare-lf HTTP/1.1\r\nHost: {host}\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil",
        ),
        c(
            "te-chunked-comma",
            "GET /te-chunked-comma HTTP/1.1\r\nHost: {host}\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        c(
            "te-gzip",
            "GET /te-gzip HTTP/1.1\r\nHost: {host}\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello",
        ),
        c(
            "status-099",
            "GET /status-099 HTTP/1.1\r\nHost: {host}\r\n\r\n",
            b"HTTP/1.1 099 Low\r\nContent-Length: 2\r\n\r\nok",
        ),
        c(
            "until-close",
            "GET /until-close HTTP/1.1\r\nHost: {host}\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello until close",
        ),
        c(
            "no-content",
            "GET /no-content HTTP/1.1\r\nHost: {host}\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
        ),
        c(
            "not-modified",
            "GET /not-modified HTTP/1.1\r\nHost: {host}\r\nIf-None-Match: \"x\"\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
        ),
        c(
            "backend-stamps",
            "GET /backend-stamps HTTP/1.1\r\nHost: {host}\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-Served-By: forged\r\nX-Xipgate-Instance-Status: UP\r\nContent-Length: 2\r\n\r\nok",
        ),
        c(
            "backend-hop-by-hop",
            "GET /backend-hop-by-hop HTTP/1.1\r\nHost: {host}\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
        ),
        c(
            "status-500",
            "GET /status-500 HTTP/1.1\r\nHost: {host}\r\n\r\n",
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nboom",
        ),
        c(
            "unknown-label",
            "GET /x HTTP/1.1\r\nHost: no-such-svc.{domain}\r\n\r\n",
            OK,
        ),
    ]
}

/// Status, headers (lower-case names, sorted) and body of a raw response, with the two
/// differences docs/performance.md lists as intended taken out: `Date` (only Pingora's path adds it),
/// and how a body is framed on the wire: Pingora's path re-chunks a chunked body and
/// sends a close-delimited one chunked, the fast path rewrites only the size lines and
/// passes a close-delimited body through as it came.
/// So a chunked body is compared decoded, and `transfer-encoding: chunked` is left out.
fn normalise_response(raw: &str) -> (String, BTreeSet<String>, String) {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap_or("").to_string();
    let pairs: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = pairs
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let headers = pairs
        .into_iter()
        .filter(|(k, v)| {
            k != "date" && !(k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
        })
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, headers, body)
}

/// A chunked body decoded (trailers dropped); what cannot be decoded is kept as it is.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let Some((size, rest)) = body.split_once("\r\n") else {
            return format!("{out}<undecodable:{body}>");
        };
        let size = size.split(';').next().unwrap_or("").trim();
        let Ok(n) = usize::from_str_radix(size, 16) else {
            return format!("{out}<undecodable:{body}>");
        };
        if n == 0 {
            return out;
        }
        if rest.len() < n + 2 {
            return format!("{out}<undecodable:{rest}>");
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
}

/// The request line and headers the backend got, with the listener's port replaced
/// (each engine's xipgate listens on a port of its own).
fn normalise_request(r: &Received, port: u16) -> (String, BTreeSet<String>) {
    let headers = r
        .headers
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}: {}",
                unmark_via(&v.trim().replace(&port.to_string(), "PORT"))
            )
        })
        .collect();
    (r.line.clone(), headers)
}

/// The request and retry counters of `/metrics`, by series.
fn counters(x: &Xipgate) -> std::collections::BTreeMap<String, f64> {
    let body = http_get(x.console, "localhost", "/metrics")
        .expect("metrics")
        .2;
    body.lines()
        .filter(|l| {
            l.starts_with("xipgate_requests_total") || l.starts_with("xipgate_retries_total")
        })
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// How the counters moved between two readings (series that did not move left out).
fn moved(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
) -> Vec<(String, f64)> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d != 0.0)
        .collect()
}

fn send(addr: SocketAddr, request: &str) -> String {
    // Each case on a connection of its own, closed after the answer.
    let request = request.replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1);
    let out = exchange(addr, request.as_bytes(), Duration::from_secs(5));
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn both_engines_answer_alike_and_send_the_backend_the_same_request() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let cases = cases();
    let backend = Recorder::start(
        cases
            .iter()
            .map(|c| {
                let path = c.request.split_whitespace().nth(1).unwrap_or("/");
                let path = path.split(['?', '#', '{']).next().unwrap_or(path);
                (path.to_string(), c.response.to_vec())
            })
            .collect(),
    );
    let eureka = rt.block_on(StubEureka::start());
    let inst = Inst::up("diff-svc", "diff-1", backend.addr);
    rt.block_on(eureka.serve(std::slice::from_ref(&inst)));
    let fast = Xipgate::start(&eureka.url(), "  downstream:\n    fast_path: true\n");
    let pingora = Xipgate::start(&eureka.url(), "  downstream:\n    fast_path: false\n");
    let mut differences = Vec::new();
    for c in &cases {
        let request = c
            .request
            .replace("{host}", &format!("diff-svc.{DOMAIN}"))
            .replace("{domain}", DOMAIN);
        backend.take();
        let (ca, cb) = (counters(&fast), counters(&pingora));
        let a = normalise_response(&send(fast.proxy, &request));
        let seen_a: Vec<_> = backend
            .take()
            .iter()
            .map(|r| normalise_request(r, fast.proxy.port()))
            .collect();
        let b = normalise_response(&send(pingora.proxy, &request));
        let seen_b: Vec<_> = backend
            .take()
            .iter()
            .map(|r| normalise_request(r, pingora.proxy.port()))
            .collect();
        // The request is counted once the answer is out; give the metrics a moment.
        let (mut ma, mut mb) = (Vec::new(), Vec::new());
        for _ in 0..20 {
            ma = moved(&ca, &counters(&fast));
            mb = moved(&cb, &counters(&pingora));
            if ma == mb {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if ma != mb {
            differences.push(format!(
                "{}: metrics moved\n  fast:    {ma:?}\n  pingora: {mb:?}",
                c.name
            ));
        }
        if a != b {
            differences.push(format!(
                "{}: client saw\n  fast:    {a:?}\n  pingora: {b:?}",
                c.name
            ));
        }
        if seen_a != seen_b {
            differences.push(format!(
                "{}: backend got\n  fast:    {seen_a:?}\n  pingora: {seen_b:?}",
                c.name
            ));
        }
        // What must hold whichever engine: no proxy credentials reach an instance, no
        // Content-Length beside Transfer-Encoding reaches a client.
        for (line, headers) in seen_a.iter().chain(&seen_b) {
            assert!(
                !headers.iter().any(|h| h.starts_with("proxy-")),
                "{}: {line} {headers:?}",
                c.name
            );
        }
        let expected = match c.name {
            "raw-brackets" | "connection-names-x-forwarded-host" => "400",
            "unknown-label" => "404",
            "cl-plus" | "cl-nbsp" | "cl-conflict" | "te-chunked-comma" | "te-gzip"
            | "status-099" => "502",
            "no-content" => "204",
            "not-modified" => "304",
            "status-500" => "500",
            _ => "200",
        };
        assert!(
            a.0.split_whitespace().nth(1) == Some(expected),
            "{}: expected {expected}, got {:?}",
            c.name,
            a.0
        );
        if c.name == "fragment" {
            assert!(
                seen_a.iter().all(|(line, _)| !line.contains('#')),
                "{seen_a:?}"
            );
        }
        if c.name.starts_with("xff") {
            assert!(
                seen_a.iter().all(|(_, h)| h
                    .iter()
                    .filter(|h| h.starts_with("x-forwarded-for:"))
                    .count()
                    == 1),
                "{}: {seen_a:?}",
                c.name
            );
        }
        // Whatever the client sent, the backend sees the edge's own forwarding headers, once
        // each, and none of the client's other spellings of them.
        for (line, headers) in seen_a.iter().chain(&seen_b) {
            let values = |name: &str| -> Vec<&str> {
                headers
                    .iter()
                    .filter_map(|h| h.strip_prefix(&format!("{name}: ")))
                    .collect()
            };
            let host = format!("diff-svc.{DOMAIN}");
            let want: [(&str, Vec<&str>); 3] = [
                ("x-forwarded-host", vec![host.as_str()]),
                ("x-forwarded-proto", vec!["http"]),
                ("x-forwarded-port", vec!["PORT"]),
            ];
            for (name, want) in want {
                assert_eq!(values(name), want, "{}: {line} {headers:?}", c.name);
            }
            let via = values("via");
            assert!(
                via.len() == 1 && via[0].ends_with("1.1 xipgate-ID"),
                "{}: {line} {headers:?}",
                c.name
            );
            assert!(
                !headers.iter().any(|h| {
                    let name = h.split(':').next().unwrap_or("");
                    name == "forwarded" || name == "x-real-ip" || name.contains('_')
                }),
                "{}: {line} {headers:?}",
                c.name
            );
        }
        if c.name == "cl-and-te" {
            assert!(
                !a.1.iter().any(|h| h.starts_with("content-length")),
                "{a:?}"
            );
        }
    }
    assert!(
        differences.is_empty(),
        "{} difference(s):\n{}",
        differences.len(),
        differences.join("\n")
    );
}

/// A read timeout on an instance host is a 504 after one try, on both engines: the one
/// instance is not asked three times over a pooled connection.
#[test]
fn an_instance_host_read_timeout_is_one_try_and_a_504() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let hits = Arc::new(Mutex::new(0usize));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let h = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let h = h.clone();
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    let slow = String::from_utf8_lossy(&buf[..n]).contains("GET /slow");
                    *h.lock().expect("lock") += 1;
                    if slow {
                        std::thread::sleep(Duration::from_secs(3));
                    }
                    let _ = conn.write_all(OK);
                }
            });
        }
    });
    let eureka = rt.block_on(StubEureka::start());
    let inst = Inst::up("slow-svc", "slow-1", addr);
    rt.block_on(eureka.serve(std::slice::from_ref(&inst)));
    for fast_path in [true, false] {
        let x = Xipgate::start(
            &eureka.url(),
            &format!(
                "  downstream:\n    fast_path: {fast_path}\n  upstream:\n    read_timeout: 1s\n"
            ),
        );
        let host = format!("{}.{DOMAIN}", inst.label());
        // One keep-alive connection: the first request pools the upstream connection.
        let mut s = TcpStream::connect(x.proxy).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        s.write_all(format!("GET /fast HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .expect("send");
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).expect("first answer");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        *hits.lock().expect("lock") = 0;
        let started = Instant::now();
        s.write_all(
            format!("GET /slow HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .expect("send");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let answer = String::from_utf8_lossy(&out);
        assert!(
            answer.starts_with("HTTP/1.1 504"),
            "fast_path {fast_path}: {answer}"
        );
        assert_eq!(
            *hits.lock().expect("lock"),
            1,
            "fast_path {fast_path}: tries"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "fast_path {fast_path}: one read timeout"
        );
    }
}

/// A backend that sends body bytes after a finished HEAD or 204 response leaves them on the
/// pooled connection; the next client's request must not get them as its response.
#[test]
fn bytes_after_a_finished_head_or_204_do_not_reach_the_next_client() {
    use common::wire::split_responses;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let backend = Recorder::start(vec![
        (
            "/poison-head".to_string(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil".to_vec(),
        ),
        (
            "/poison-204".to_string(),
            b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil".to_vec(),
        ),
    ]);
    let eureka = rt.block_on(StubEureka::start());
    let inst = Inst::up("poison-svc", "poison-1", backend.addr);
    rt.block_on(eureka.serve(std::slice::from_ref(&inst)));
    let host = format!("poison-svc.{DOMAIN}");
    for fast_path in [true, false] {
        let x = Xipgate::start(
            &eureka.url(),
            &format!("  downstream:\n    fast_path: {fast_path}\n"),
        );
        for (method, path) in [("HEAD", "/poison-head"), ("GET", "/poison-204")] {
            let first = exchange(
                x.proxy,
                format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
                Duration::from_secs(3),
            );
            assert!(first.starts_with(b"HTTP/1.1 2"), "{method} {path}");
            for n in 0..3 {
                let next = exchange(
                    x.proxy,
                    format!("GET /after-{n} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                    Duration::from_secs(3),
                );
                let got = split_responses(&next, &[false]);
                let body = got
                    .first()
                    .map(|a| String::from_utf8_lossy(&a.body).into_owned())
                    .unwrap_or_default();
                assert_eq!(
                    body,
                    format!("/after-{n}"),
                    "fast_path {fast_path}, after {method} {path}: {:?}",
                    String::from_utf8_lossy(&next)
                );
            }
        }
    }
}

/// Like the test above, but the stray bytes come in a later segment, 2 ms after the head:
/// by then the connection is back in the pool, and the socket shows them (the fast path
/// peeks at it on checkout: `pool.rs`'s unit tests cover a reactor that has not looked
/// yet). The next client must get its own answer, on both engines.
#[test]
fn bytes_2ms_after_a_finished_head_do_not_reach_the_next_client() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (sent_tx, sent_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let sent_tx = sent_tx.clone();
            std::thread::spawn(move || {
                let mut conn = conn;
                // The stray bytes leave at once, in a segment of their own: with Nagle
                // they would wait for the ACK the edge's next request carries, and arrive
                // only after it was sent, which no check at checkout can see.
                conn.set_nodelay(true).expect("nodelay");
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    buf.drain(..end + 4);
                    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                    if head.starts_with("HEAD ") {
                        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
                        std::thread::sleep(Duration::from_millis(2));
                        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil");
                        let _ = sent_tx.send(());
                    } else {
                        let _ = conn.write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}",
                                path.len()
                            )
                            .as_bytes(),
                        );
                    }
                }
            });
        }
    });
    let eureka = rt.block_on(StubEureka::start());
    let inst = Inst::up("late-svc", "late-1", addr);
    rt.block_on(eureka.serve(std::slice::from_ref(&inst)));
    let host = format!("late-svc.{DOMAIN}");
    for fast_path in [true, false] {
        let x = Xipgate::start(
            &eureka.url(),
            &format!("  downstream:\n    fast_path: {fast_path}\n"),
        );
        for n in 0..3 {
            let first = exchange(
                x.proxy,
                format!("HEAD /late HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
                Duration::from_secs(3),
            );
            assert!(first.starts_with(b"HTTP/1.1 200"), "fast_path {fast_path}");
            sent_rx
                .recv_timeout(Duration::from_secs(5))
                .expect("the backend sent its stray bytes");
            let next = exchange(
                x.proxy,
                format!("GET /after-{n} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
                Duration::from_secs(3),
            );
            let text = String::from_utf8_lossy(&next);
            assert!(
                text.starts_with("HTTP/1.1 200") && text.ends_with(&format!("/after-{n}")),
                "fast_path {fast_path}, round {n}: {text:?}"
            );
        }
    }
}

/// A backend head with `Connection: close` and a later `Connection: keep-alive`: the close
/// wins on both engines, so the next request opens a new upstream connection instead of
/// reusing one the backend is about to close.
#[test]
fn a_backend_close_wins_over_a_later_keep_alive() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(Mutex::new(0usize));
    let a = accepted.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            *a.lock().expect("lock") += 1;
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Says close, but keeps the connection open and answers what comes.
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    buf.drain(..end + 4);
                    let _ = conn.write_all(
                        b"HTTP/1.1 200 OK\r\nConnection: close\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
                    );
                }
            });
        }
    });
    let eureka = rt.block_on(StubEureka::start());
    let inst = Inst::up("closing-svc", "closing-1", addr);
    rt.block_on(eureka.serve(std::slice::from_ref(&inst)));
    let host = format!("closing-svc.{DOMAIN}");
    for fast_path in [true, false] {
        let x = Xipgate::start(
            &eureka.url(),
            &format!("  downstream:\n    fast_path: {fast_path}\n"),
        );
        let before = *accepted.lock().expect("lock");
        for n in 0..2 {
            let answer = send(
                x.proxy,
                &format!("GET /closing-{n} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
            );
            assert!(
                answer.starts_with("HTTP/1.1 200"),
                "fast_path {fast_path}: {answer}"
            );
        }
        assert_eq!(
            *accepted.lock().expect("lock") - before,
            2,
            "fast_path {fast_path}: a connection the backend said it closes was reused"
        );
    }
}

/// `xipgate.access` on both engines: every answer (allowed, refused, sent to the login,
/// 401) and what the backend got are the same; the fast path serves what it may itself
/// and hands the rest to Pingora's engine, so a difference here is one engine deciding
/// or answering differently.
#[test]
fn both_engines_decide_access_alike() {
    use xipgate::access::session::{unix_now, Sealer, Session};
    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const OTHER: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let backend = Recorder::start(vec![(
        "/sets-cookie".to_string(),
        b"HTTP/1.1 200 OK\r\nSet-Cookie: _xipgate=planted; Path=/\r\nSet-Cookie: app=1\r\nContent-Length: 2\r\n\r\nok".to_vec(),
    )]);
    let eureka = rt.block_on(StubEureka::start());
    let inst = Inst::up("diff-svc", "diff-1", backend.addr);
    rt.block_on(eureka.serve(std::slice::from_ref(&inst)));
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys");
    std::fs::write(&keys, KEY).expect("keys");
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("ci:{}\n", bcrypt::hash("pw", 4).expect("hash")),
    )
    .expect("htpasswd");
    let basic = |creds: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(creds)
    };
    let seal = |key: &str, user: &str, groups: &[&str], expires: u64| {
        let s = Session {
            user: user.into(),
            email: Some(format!("{user}@example.test")),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            expires,
        };
        Sealer::from_text(key, "k")
            .expect("key")
            .seal("_xipgate", &s)
            .expect("seal")
    };
    let alice = seal(KEY, "alice", &["devs"], unix_now() + 3600);
    let olga = seal(KEY, "olga", &["operators"], unix_now() + 3600);
    let expired = seal(KEY, "alice", &[], unix_now() - 5);
    let foreign = seal(OTHER, "alice", &[], unix_now() + 3600);
    let access = format!(
        "  access:\n    trusted_proxies: [\"127.0.0.1/32\"]\n    login:\n      issuer: \"http://127.0.0.1:9/issuer\"\n      client_id: xipgate\n      keys_file: \"{}\"\n    rules:\n      - name: docs\n        paths: [/public]\n        public: true\n      - name: office\n        paths: [/office]\n        clients: [\"10.9.9.0/24\"]\n      - name: no-admin\n        paths: [/admin]\n        deny: true\n      - name: ci\n        paths: [/ci]\n        basic: true\n      - name: team\n        services: [diff-svc]\n        authenticated: true\n    basic:\n      htpasswd: \"{}\"\n      realm: builds\n",
        keys.display(),
        htpasswd.display()
    );
    let fast = Xipgate::start(
        &eureka.url(),
        &format!("  downstream:\n    fast_path: true\n{access}"),
    );
    let pingora = Xipgate::start(
        &eureka.url(),
        &format!("  downstream:\n    fast_path: false\n{access}"),
    );
    let page = "Accept: text/html\r\n";
    let cases: Vec<(&str, String, &str)> = vec![
        ("public", "GET /public/x HTTP/1.1\r\n".into(), "200"),
        ("deny", "GET /admin HTTP/1.1\r\n".into(), "403"),
        ("client-trusted-xff", "GET /office HTTP/1.1\r\nX-Forwarded-For: 10.9.9.9\r\n".into(), "200"),
        ("client-spoofed-xff", "GET /office HTTP/1.1\r\nX-Forwarded-For: 10.9.9.9, 192.0.2.1\r\n".into(), "403"),
        ("no-session-page", format!("GET /p?q=1 HTTP/1.1\r\n{page}"), "302"),
        ("no-session-xhr", "GET /p HTTP/1.1\r\nX-Requested-With: XMLHttpRequest\r\n".into(), "401"),
        ("no-session-json", "GET /p HTTP/1.1\r\nAccept: application/json\r\n".into(), "401"),
        ("session", format!("GET /p HTTP/1.1\r\nCookie: a=1; _xipgate={alice}\r\n"), "200"),
        ("session-forged-identity", format!("GET /p HTTP/1.1\r\nCookie: _xipgate={alice}\r\nX-Forwarded-User: root\r\nX_Forwarded_Groups: operators\r\n"), "200"),
        ("session-head", format!("HEAD /p HTTP/1.1\r\nCookie: _xipgate={alice}\r\n"), "200"),
        ("session-sets-cookie", format!("GET /sets-cookie HTTP/1.1\r\nCookie: _xipgate={alice}\r\n"), "200"),
        ("expired", format!("GET /p HTTP/1.1\r\n{page}Cookie: _xipgate={expired}\r\n"), "302"),
        ("foreign-page", format!("GET /p HTTP/1.1\r\n{page}Cookie: _xipgate={foreign}\r\n"), "302"),
        ("foreign-json", format!("GET /p HTTP/1.1\r\nAccept: application/json\r\nCookie: _xipgate={foreign}\r\n"), "401"),
        ("oversized", format!("GET /p HTTP/1.1\r\nCookie: _xipgate=v1.{}\r\n", "A".repeat(5000)), "401"),
        ("actuator-semicolon", format!("GET /actuator;/env HTTP/1.1\r\nCookie: _xipgate={olga}\r\n"), "400"),
        ("actuator-encoded", format!("GET /actuator/%65nv HTTP/1.1\r\nCookie: _xipgate={alice}\r\n"), "403"),
        ("actuator-double-slash", format!("GET //actuator/env HTTP/1.1\r\nCookie: _xipgate={olga}\r\n"), "400"),
        ("actuator-dotdot", format!("GET /x/..;/actuator/env HTTP/1.1\r\nCookie: _xipgate={olga}\r\n"), "400"),
        ("actuator-heapdump", format!("GET /actuator/heapdump HTTP/1.1\r\nCookie: _xipgate={olga}\r\n"), "403"),
        ("actuator-env-operator", format!("GET /actuator/env HTTP/1.1\r\nCookie: _xipgate={olga}\r\n"), "200"),
        ("actuator-health", "GET /actuator/health HTTP/1.1\r\n".into(), "200"),
        ("basic", format!("GET /ci HTTP/1.1\r\nAuthorization: Basic {}\r\nX-Forwarded-User: root\r\n", basic("ci:pw")), "200"),
        ("basic-wrong", format!("GET /ci HTTP/1.1\r\n{page}Authorization: Basic {}\r\n", basic("ci:no")), "401"),
        ("basic-unknown", format!("GET /ci HTTP/1.1\r\nAuthorization: basic {}\r\n", basic("root:pw")), "401"),
        ("basic-malformed", "GET /ci HTTP/1.1\r\nAuthorization: Basic !!!\r\n".into(), "401"),
        ("basic-none-page", format!("GET /ci HTTP/1.1\r\n{page}"), "401"),
        ("basic-on-a-session-rule", format!("GET /p HTTP/1.1\r\nAuthorization: Basic {}\r\n", basic("ci:pw")), "401"),
    ];
    let mut differences = Vec::new();
    for (name, head, expected) in &cases {
        let answer = |x: &Xipgate| {
            let port = x.proxy.port();
            let request = format!("{head}Host: diff-svc.{DOMAIN}:{port}\r\n\r\n");
            let a = send(x.proxy, &request).replace(&port.to_string(), "PORT");
            let seen: Vec<_> = backend
                .take()
                .iter()
                .map(|r| normalise_request(r, port))
                .collect();
            (normalise_response(&a), seen)
        };
        backend.take();
        let (a, seen_a) = answer(&fast);
        let (b, seen_b) = answer(&pingora);
        if a != b {
            differences.push(format!(
                "{name}: client saw\n  fast:    {a:?}\n  pingora: {b:?}"
            ));
        }
        if seen_a != seen_b {
            differences.push(format!(
                "{name}: backend got\n  fast:    {seen_a:?}\n  pingora: {seen_b:?}"
            ));
        }
        assert_eq!(
            a.0.split_whitespace().nth(1),
            Some(*expected),
            "{name}: {a:?}"
        );
        // A refused request reaches no backend; an allowed one carries no session cookie
        // and no identity header but the edge's own.
        if *expected != "200" {
            assert!(seen_a.is_empty() && seen_b.is_empty(), "{name}: {seen_a:?}");
        }
        for (_, headers) in seen_a.iter().chain(&seen_b) {
            assert!(
                !headers.iter().any(|h| h.contains("_xipgate")),
                "{name}: {headers:?}"
            );
            assert!(
                !headers.iter().any(|h| h.starts_with("x_forwarded")),
                "{name}: {headers:?}"
            );
            let users: Vec<&String> = headers
                .iter()
                .filter(|h| h.starts_with("x-forwarded-user:"))
                .collect();
            assert!(users.len() <= 1, "{name}: {headers:?}");
            if name.starts_with("session") {
                assert_eq!(users, ["x-forwarded-user: alice"], "{name}");
            }
            if *name == "basic" {
                assert_eq!(users, ["x-forwarded-user: ci"], "{name}");
            }
        }
        if *name == "session-sets-cookie" {
            assert!(!a.1.iter().any(|h| h.contains("_xipgate")), "{a:?}");
        }
    }
    assert!(
        differences.is_empty(),
        "{} difference(s):\n{}",
        differences.len(),
        differences.join("\n")
    );
}
