//! End-to-end routing through the real binary: stub Eureka, real backends, loopback.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn backend_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["backend"].as_str().map(String::from))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_and_service_hosts_route_and_follow_the_registry() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let eureka = StubEureka::start().await;
    let ia = Inst::up("order-service", "order-7d9f8-x2k4q", a.addr);
    let ib = Inst::up("order-service", "order-7d9f8-zzzzz", b.addr);
    let ic = Inst::up("order-service", "order-7d9f8-down1", c.addr).status("DOWN");
    eureka.serve(&[ia.clone(), ib.clone(), ic.clone()]).await;
    let x = Xipgate::start(&eureka.url(), "");

    // An instance host reaches exactly that instance, with X-Served-By.
    for _ in 0..5 {
        let (status, headers, body) = x.get(&ia.label(), "/hello");
        assert_eq!(status, 200, "{body}");
        assert_eq!(backend_of(&body), "a");
        assert_eq!(header(&headers, "x-served-by"), Some(ia.id.as_str()));
    }
    // The client's Host goes through unchanged; forwarding headers are set.
    let (_, _, body) = x.get(&ia.label(), "/");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["host"], format!("{}.{DOMAIN}", ia.label()));
    assert_eq!(v["xff"], "127.0.0.1");
    assert_eq!(v["xfp"], "http");
    assert_eq!(v["xfh"], format!("{}.{DOMAIN}", ia.label()));
    assert_eq!(v["xfport"], x.proxy.port().to_string());

    // A DOWN instance is still reachable by its own host, and says so.
    let (status, headers, body) = x.get(&ic.label(), "/");
    assert_eq!((status, backend_of(&body).as_str()), (200, "c"));
    assert_eq!(header(&headers, "x-xipgate-instance-status"), Some("DOWN"));

    // The service host spreads over UP instances only.
    let mut seen = HashSet::new();
    for _ in 0..20 {
        let (status, _, body) = x.get("order-service", "/");
        assert_eq!(status, 200);
        seen.insert(backend_of(&body));
    }
    assert_eq!(seen, HashSet::from(["a".to_string(), "b".to_string()]));

    // The older design's names (`_` for `:` and `-`) and upper case still work.
    let seed = ia.id.replace([':', '-'], "_");
    assert_eq!(backend_of(&x.get(&seed, "/").2), "a");
    assert_eq!(backend_of(&x.get(&ia.label().to_uppercase(), "/").2), "a");

    // b goes DOWN: the service host stops using it within one interval.
    eureka
        .serve(&[ia.clone(), ib.clone().status("DOWN"), ic.clone()])
        .await;
    eventually(Duration::from_secs(5), "b leaves the rotation", || {
        (0..6).all(|_| backend_of(&x.get("order-service", "/").2) == "a")
    });
    // a is removed from the registry: its host answers 404 naming it.
    eureka.serve(&[ib.clone().status("DOWN"), ic.clone()]).await;
    eventually(Duration::from_secs(5), "a disappears", || {
        x.get(&ia.label(), "/").0 == 404
    });
    let (status, _, body) = x.get("order-service", "/");
    assert_eq!(status, 503);
    assert!(
        body.contains("ORDER-SERVICE") && body.contains("no UP instance"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eureka_going_down_keeps_the_table() {
    let a = Backend::start("a").await;
    let eureka = StubEureka::start().await;
    let ia = Inst::up("pay", "pay-1", a.addr);
    eureka.serve(std::slice::from_ref(&ia)).await;
    let x = Xipgate::start(&eureka.url(), "");
    assert_eq!(x.get(&ia.label(), "/").0, 200);

    for (status, body) in [
        (500, "oops"),
        (503, "<html>down</html>"),
        (200, "{\"applications\": {\"application\": "),
    ] {
        eureka.serve_body(status, body, "text/html").await;
        eventually(Duration::from_secs(5), "the failure is recorded", || {
            x.api("/api/v1/registry").1["consecutive_failures"]
                .as_u64()
                .unwrap_or(0)
                >= 2
        });
        assert_eq!(
            x.get(&ia.label(), "/").0,
            200,
            "known instance still answers during {status}"
        );
        assert_eq!(x.get("pay", "/").0, 200);
        assert!(x.api("/api/v1/registry").1["last_error"].as_str().is_some());
        eureka.serve(std::slice::from_ref(&ia)).await;
        eventually(Duration::from_secs(5), "recovery", || {
            x.api("/api/v1/registry").1["consecutive_failures"].as_u64() == Some(0)
        });
    }
    // Connection refused: drop the stub entirely.
    drop(eureka);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(x.get(&ia.label(), "/").0, 200);
    assert_eq!(
        x.api("/readyz").0,
        200,
        "still ready while serving the last good table"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_answers_name_the_problem() {
    let a = Backend::start("a").await;
    let eureka = StubEureka::start().await;
    let ok = Inst::up("svc", "svc-1", a.addr);
    let outside = Inst::up("evil", "evil-1", a.addr).ip("8.8.8.8");
    let metadata = Inst::up("meta", "meta-1", a.addr).ip("169.254.169.254");
    eureka
        .serve(&[ok.clone(), outside.clone(), metadata.clone()])
        .await;
    let x = Xipgate::start(&eureka.url(), "");

    let (s, _, body) = x.get("nothing-here", "/");
    assert_eq!(s, 404);
    assert!(
        body.contains("'nothing-here'") && body.contains("/api/v1/services"),
        "{body}"
    );

    let (s, _, body) = http_get(x.proxy, "svc.example.org", "/").unwrap();
    assert_eq!(s, 404);
    assert!(body.contains("svc.example.org"), "{body}");

    let (s, _, body) = x.get(&outside.label(), "/");
    assert_eq!(s, 403);
    assert!(
        body.contains("8.8.8.8") && body.contains("upstream.allow"),
        "{body}"
    );
    let (s, _, body) = x.get(&metadata.label(), "/");
    assert_eq!(s, 403);
    assert!(body.contains("link-local"), "{body}");
    // A service whose only instance is refused has nothing to route to.
    assert_eq!(x.get("evil", "/").0, 503);
    assert_eq!(a.hits(), 0, "nothing refused ever reached a backend");

    let text = raw(x.proxy, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    assert_eq!(parse_response(&text).0, 400, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_never_loaded_answers_503_without_the_registrys_error() {
    let dead = format!("http://127.0.0.1:{}/eureka", free_port());
    let x = Xipgate::start_with(&dead, "", "", false);
    // The proxy starts after registry.startup_wait (10 s in tests) even without Eureka.
    // Its listener is bound from the start (handed over by the harness), so a request
    // waits in the backlog until then; ask until one is answered.
    eventually(Duration::from_secs(30), "the proxy answers", || {
        http_get(x.proxy, &format!("anything.{DOMAIN}"), "/").is_ok_and(|r| r.0 != 0)
    });
    let (s, headers, body) = x.get("anything", "/");
    assert_eq!(s, 503, "{body}");
    // Any client gets this answer: it says where to look, not the registry's URL or error
    // (they are on the console, which can be restricted).
    assert!(
        body.contains("not loaded") && body.contains("/api/v1/registry"),
        "{body}"
    );
    assert!(
        !body.contains("cannot connect") && !body.contains(&dead),
        "{body}"
    );
    assert!(x.api("/api/v1/registry").1["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("cannot connect")));
    assert!(header(&headers, "retry-after").is_some());
    assert_eq!(x.api("/readyz").0, 503);
}

fn preflight(host: &str, origin: &str) -> Vec<u8> {
    format!("OPTIONS /api HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: x-token\r\nConnection: close\r\n\r\n").into_bytes()
}

fn get_from(host: &str, origin: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_and_credentials_for_the_edges_own_pages() {
    let a = Backend::start("a").await;
    let eureka = StubEureka::start().await;
    let ia = Inst::up("web", "web-1", a.addr);
    eureka.serve(std::slice::from_ref(&ia)).await;
    let x = Xipgate::start(&eureka.url(), "");
    let host = format!("web.{DOMAIN}");
    let own = format!("http://ui.{DOMAIN}");
    let (s, h, _) = parse_response(&raw(x.proxy, &preflight(&host, &own)).unwrap());
    assert_eq!(s, 204);
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some(own.as_str())
    );
    assert_eq!(header(&h, "access-control-allow-credentials"), Some("true"));
    assert_eq!(header(&h, "access-control-allow-headers"), Some("x-token"));
    assert_eq!(a.hits(), 0, "the preflight is answered at the edge");

    let (s, h, _) = parse_response(&raw(x.proxy, &get_from(&host, &own)).unwrap());
    assert_eq!(s, 200);
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some(own.as_str()),
        "never '*' with credentials"
    );
}

/// Any other web page gets nothing: before, every `Origin` was echoed with credentials, so
/// a page a developer opened anywhere could read pod answers through the developer's
/// browser. A backend's own `Access-Control-Allow-*` headers are removed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_gives_foreign_pages_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A backend that echoes any Origin with credentials (a common Spring misconfiguration).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = sock.read(&mut buf).await;
                let body = "{}";
                let resp = format!("HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: http://evil.example\r\nAccess-Control-Allow-Credentials: true\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    let eureka = StubEureka::start().await;
    eureka.serve(&[Inst::up("web", "web-1", addr)]).await;
    let x = Xipgate::start(
        &eureka.url(),
        "  cors:\n    allow_origins: [\"https://ui.example.com\"]\n",
    );
    let host = format!("web.{DOMAIN}");
    for evil in [
        "http://evil.example",
        "null",
        &format!("http://evil-{DOMAIN}"),
        &format!("http://{DOMAIN}.evil.example"),
        "https://ui.example.com:8443",
    ] {
        let (s, h, body) = parse_response(&raw(x.proxy, &preflight(&host, evil)).unwrap());
        assert_eq!(s, 403, "{evil}: {body}");
        assert!(
            body.contains("xipgate.cors.allow_origins"),
            "{evil}: {body}"
        );
        assert_eq!(header(&h, "access-control-allow-origin"), None, "{evil}");

        let (s, h, _) = parse_response(&raw(x.proxy, &get_from(&host, evil)).unwrap());
        assert_eq!(s, 200, "{evil}: the request itself is served");
        assert_eq!(header(&h, "access-control-allow-origin"), None, "{evil}");
        assert_eq!(
            header(&h, "access-control-allow-credentials"),
            None,
            "{evil}"
        );
        assert_eq!(header(&h, "vary"), Some("Origin"), "{evil}");
    }
    // A listed origin is allowed, and gets the edge's headers instead of the backend's.
    let (s, h, _) =
        parse_response(&raw(x.proxy, &get_from(&host, "https://ui.example.com")).unwrap());
    assert_eq!(s, 200);
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("https://ui.example.com")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_can_be_turned_off() {
    let a = Backend::start("a").await;
    let eureka = StubEureka::start().await;
    eureka.serve(&[Inst::up("web", "web-1", a.addr)]).await;
    let x = Xipgate::start(&eureka.url(), "  cors:\n    enabled: false\n");
    let pre = raw(
        x.proxy,
        format!("OPTIONS / HTTP/1.1\r\nHost: web.{DOMAIN}\r\nOrigin: http://ui.example\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let (s, h, _) = parse_response(&pre);
    assert_eq!(s, 200, "the OPTIONS goes to the backend");
    assert_eq!(header(&h, "access-control-allow-origin"), None);
    assert_eq!(a.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_is_sent_and_credentials_are_never_logged() {
    use wiremock::matchers::{header as header_is, method};
    use wiremock::{Mock, ResponseTemplate};
    let a = Backend::start("a").await;
    let eureka = StubEureka::start().await;
    let ia = Inst::up("secure", "secure-1", a.addr);
    eureka.server.reset().await;
    // "eureka:s3cr3t-pw" in base64; anything else gets the 401 a secured Eureka answers.
    Mock::given(method("GET"))
        .and(header_is("authorization", "Basic ZXVyZWthOnMzY3IzdC1wdw=="))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(apps_json(std::slice::from_ref(&ia)), "application/json"),
        )
        .mount(&eureka.server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&eureka.server)
        .await;
    let with_creds = eureka.url().replace("http://", "http://eureka:s3cr3t-pw@");
    let wrong_creds = eureka.url().replace("http://", "http://eureka:wrong-pw@");
    // The first URL has the wrong password (401, logged), the second the right one.
    let x = Xipgate::start(
        &eureka.url(),
        &format!("  registry:\n    eureka:\n      urls: [\"{wrong_creds}\", \"{with_creds}\"]\n"),
    );
    assert_eq!(x.get(&ia.label(), "/").0, 200);
    let reg = x.api("/api/v1/registry").1.to_string();
    let log = x.log();
    assert!(log.contains("HTTP 401"), "the refused URL is logged: {log}");
    for text in [&reg, &log] {
        assert!(
            !text.contains("s3cr3t") && !text.contains("wrong-pw"),
            "a password leaked: {text}"
        );
    }
}

/// A backend that accepts a WebSocket-style upgrade and then echoes raw bytes.
async fn upgrade_echo_backend() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if sock.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                if !text.contains("upgrade: websocket") {
                    return;
                }
                let _ = sock
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                    .await;
                let mut buf = [0u8; 1024];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 || sock.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_pass_through() {
    use std::io::{Read, Write};
    let addr = upgrade_echo_backend().await;
    let eureka = StubEureka::start().await;
    let inst = Inst::up("chat", "chat-1", addr);
    eureka.serve(std::slice::from_ref(&inst)).await;
    let x = Xipgate::start(&eureka.url(), "");
    let mut s = std::net::TcpStream::connect(x.proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: {}.{DOMAIN}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        inst.label()
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).unwrap(),
            1,
            "connection closed before the 101"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    for msg in [&b"ping"[..], b"second frame"] {
        s.write_all(msg).unwrap();
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got)
            .unwrap_or_else(|e| panic!("reading the echo of {msg:?}: {e}\n{}", x.log()));
        assert_eq!(got, msg, "bytes flow both ways after the upgrade");
    }
}

/// The access log names the request after the empty lines a client may send before it
/// (RFC 9112 §2.2), on both engines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_names_a_request_sent_after_empty_lines() {
    let a = Backend::start("a").await;
    let eureka = StubEureka::start().await;
    eureka
        .serve(&[Inst::up("crlf-svc", "crlf-1", a.addr)])
        .await;
    let x = Xipgate::start(&eureka.url(), "");
    let text = raw(
        x.proxy,
        format!("\r\n\r\nGET /after-empty-lines HTTP/1.1\r\nHost: crlf-svc.{DOMAIN}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .expect("request");
    assert_eq!(parse_response(&text).0, 200, "{text}");
    let mut requests = Vec::new();
    eventually(Duration::from_secs(5), "the access record", || {
        requests = x
            .access()
            .iter()
            .filter_map(|r| r["request"].as_str().map(String::from))
            .collect();
        !requests.is_empty()
    });
    assert_eq!(requests, ["GET /after-empty-lines"]);
}

/// The default access log goes to stderr; a reader of stderr that stalls (a full pipe)
/// must not stop the proxy: records are written by a thread of their own, and dropped
/// and counted when its queue is full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stderr_does_not_stop_proxying() {
    let a = Backend::start("a").await;
    let eureka = StubEureka::start().await;
    eureka
        .serve(&[Inst::up("stall-svc", "stall-1", a.addr)])
        .await;
    // Nobody reads `_reader`: once the pipe's buffer (64 KiB) is full, writes to stderr block.
    let (_reader, writer) = std::io::pipe().expect("pipe");
    let x = Xipgate::start_logging_to(&eureka.url(), "", writer.into());
    let host = format!("stall-svc.{DOMAIN}");
    // About 150 bytes a record: 2,000 requests fill the pipe several times over.
    for i in 0..2000 {
        let (status, _, body) =
            http_get(x.proxy, &host, &format!("/stall-{i}")).expect("request through xipgate");
        assert_eq!(status, 200, "request #{i}: {body}");
    }
}
