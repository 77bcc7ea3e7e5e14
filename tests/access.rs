//! `xipgate.access` enforced end to end, on both engines (`downstream.fast_path` on and
//! off): rules, the client address past trusted proxies, the session cookie (sealed here
//! with the edge's own key file), identity headers to backends, the login redirect and
//! 401s, actuator paths, the backend's `Set-Cookie` of the edge's cookie, and WebSocket
//! upgrades from other sites. A recording backend shows what reached it: a refused request
//! must reach nothing.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::wire::{Received, Recorder};
use common::*;
use xipgate::access::session::{Sealer, Session};

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const OTHER_KEY: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
const COOKIE: &str = "_xipgate";

/// The edge's rules for these tests: a public path, a client rule, a deny rule, and
/// everything else on `svc` for signed-in identities; `other` is matched by no rule.
fn gated_yaml(fast: bool, keys: &std::path::Path) -> String {
    format!(
        r#"  downstream:
    fast_path: {fast}
  access:
    trusted_proxies: ["127.0.0.1/32"]
    login:
      issuer: "http://127.0.0.1:9/issuer"
      client_id: xipgate
      keys_file: "{keys}"
    rules:
      - name: docs
        services: [svc]
        paths: [/public]
        public: true
      - name: office
        services: [svc]
        paths: [/office]
        clients: ["10.9.9.0/24"]
      - name: no-admin
        paths: [/admin]
        deny: true
      - name: team
        services: [svc]
        authenticated: true
"#,
        keys = keys.display()
    )
}

fn session(user: &str, groups: &[&str], expires: u64) -> Session {
    Session {
        user: user.into(),
        email: Some(format!("{user}@example.test")),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        expires,
    }
}

fn now() -> u64 {
    xipgate::access::session::unix_now()
}

/// Sealed with `key`, as the edge's login would.
fn sealed(key: &str, s: &Session) -> String {
    Sealer::from_text(key, "test key")
        .expect("key")
        .seal(COOKIE, s)
        .expect("seal")
}

struct Edge {
    x: Xipgate,
    backend: Recorder,
    fast: bool,
}

/// What one request got: the client's answer and what the backend received.
struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    seen: Vec<Received>,
}

impl Got {
    fn backend_header(&self, name: &str) -> Vec<String> {
        self.seen
            .iter()
            .flat_map(|r| r.headers.iter())
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

impl Edge {
    fn start(backend: Recorder, eureka: &StubEureka, extra: &str, fast: bool) -> Self {
        let x = Xipgate::start(&eureka.url(), extra);
        Edge { x, backend, fast }
    }

    fn host(&self, label: &str) -> String {
        format!("{label}.{DOMAIN}:{}", self.x.proxy.port())
    }

    /// `head`: the request line and headers without Host and the blank line.
    fn send_from(&self, from: Option<&str>, label: &str, head: &str) -> Got {
        self.backend.take();
        let (line, rest) = head.split_once("\r\n").unwrap_or((head, ""));
        let request = format!(
            "{line}\r\nHost: {}\r\nConnection: close\r\n{rest}{}\r\n",
            self.host(label),
            if rest.is_empty() || rest.ends_with("\r\n") {
                ""
            } else {
                "\r\n"
            }
        );
        let text = raw_from(from, self.x.proxy, request.as_bytes());
        let (status, headers, body) = parse_response(&text);
        Got {
            status,
            headers,
            body,
            seen: self.backend.take(),
        }
    }

    fn send(&self, label: &str, head: &str) -> Got {
        self.send_from(None, label, head)
    }

    fn engine(&self) -> &'static str {
        if self.fast {
            "fast path"
        } else {
            "pingora"
        }
    }
}

/// Sends `request` from the loopback address `from` (the peer the edge sees).
fn raw_from(from: Option<&str>, to: SocketAddr, request: &[u8]) -> String {
    let mut s = match from {
        None => TcpStream::connect(to).expect("connect"),
        Some(ip) => {
            let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            let local: SocketAddr = format!("{ip}:0").parse().expect("addr");
            sock.bind(&local.into())
                .expect("bind a second loopback address");
            sock.connect(&to.into()).expect("connect");
            sock.into()
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(request).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn backend_answers() -> common::wire::Answers {
    vec![(
        "/sets-cookie".to_string(),
        format!(
            "HTTP/1.1 200 OK\r\nSet-Cookie: {COOKIE}=forged; Domain={DOMAIN}; Path=/\r\nSet-Cookie: app=1; Path=/\r\nContent-Length: 2\r\n\r\nok"
        )
        .into_bytes(),
    )]
}

async fn gated_edges() -> (Vec<Edge>, StubEureka, tempfile::TempDir) {
    gated_edges_with(|_| String::new()).await
}

/// [`gated_edges`] with more YAML under `xipgate.access` (given the test's directory).
async fn gated_edges_with(
    more: impl Fn(&std::path::Path) -> String,
) -> (Vec<Edge>, StubEureka, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("session-keys");
    std::fs::write(&keys, format!("# test key\n{KEY}\n")).expect("key file");
    let eureka = StubEureka::start().await;
    // Each engine's edge has a backend of its own, reached by its own instance host
    // (`svc_label`); `other` is a service no rule matches.
    let edges: Vec<(bool, Recorder)> = [true, false]
        .into_iter()
        .map(|fast| (fast, Recorder::start(backend_answers())))
        .collect();
    let insts: Vec<Inst> = edges
        .iter()
        .flat_map(|(fast, b)| {
            [
                Inst::up("svc", &format!("svc-{fast}"), b.addr),
                Inst::up("other", &format!("other-{fast}"), b.addr),
            ]
        })
        .collect();
    eureka.serve(&insts).await;
    let edges = edges
        .into_iter()
        .map(|(fast, backend)| {
            let yaml = gated_yaml(fast, &keys) + &more(dir.path());
            Edge::start(backend, &eureka, &yaml, fast)
        })
        .collect();
    (edges, eureka, dir)
}

/// The instance host of `svc` behind this engine's own backend.
fn svc_label(fast: bool, backend: &Recorder) -> String {
    Inst::up("svc", &format!("svc-{fast}"), backend.addr).label()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_decide_who_reaches_the_backend() {
    let (edges, _eureka, _dir) = gated_edges().await;
    for e in &edges {
        let svc = svc_label(e.fast, &e.backend);
        let engine = e.engine();
        // public: reaches the backend without any credential.
        let g = e.send(&svc, "GET /public/a HTTP/1.1");
        assert_eq!(g.status, 200, "{engine}: {}", g.body);
        assert_eq!(g.seen.len(), 1, "{engine}");
        // deny: 403 naming the rule, nothing reaches the backend.
        let g = e.send(&svc, "GET /admin/x HTTP/1.1");
        assert_eq!(g.status, 403, "{engine}: {}", g.body);
        assert!(g.body.contains("no-admin"), "{engine}: {}", g.body);
        assert!(g.seen.is_empty(), "{engine}");
        // no rule matches the other service: 403.
        let other = e.send("other", "GET / HTTP/1.1");
        assert_eq!(other.status, 403, "{engine}: {}", other.body);
        assert!(other.body.contains("no rule"), "{engine}: {}", other.body);
        assert!(other.seen.is_empty(), "{engine}");
        // clients: the peer (127.0.0.1) is a trusted proxy, so X-Forwarded-For is read
        // right to left; a client's own left part is not believed.
        let g = e.send(
            &svc,
            "GET /office HTTP/1.1\r\nX-Forwarded-For: 10.9.9.9\r\n",
        );
        assert_eq!(g.status, 200, "{engine}: {}", g.body);
        let g = e.send(
            &svc,
            "GET /office HTTP/1.1\r\nX-Forwarded-For: 10.9.9.9, 192.0.2.1\r\n",
        );
        assert_eq!(g.status, 403, "{engine}: {}", g.body);
        assert!(g.body.contains("192.0.2.1"), "{engine}: {}", g.body);
        assert!(g.seen.is_empty(), "{engine}");
        // A peer that is not a trusted proxy: its X-Forwarded-For is ignored.
        let g = e.send_from(
            Some("127.0.0.2"),
            &svc,
            "GET /office HTTP/1.1\r\nX-Forwarded-For: 10.9.9.9\r\n",
        );
        assert_eq!(g.status, 403, "{engine}: {}", g.body);
        assert!(g.body.contains("127.0.0.2"), "{engine}: {}", g.body);
        assert!(g.seen.is_empty(), "{engine}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_reaches_the_backend_as_identity_headers_without_the_cookie() {
    let (edges, _eureka, _dir) = gated_edges().await;
    let good = sealed(KEY, &session("alice", &["devs", "ops"], now() + 3600));
    for e in &edges {
        let svc = svc_label(e.fast, &e.backend);
        let engine = e.engine();
        let g = e.send(
            &svc,
            &format!(
                "GET /api/x HTTP/1.1\r\nCookie: a=1; {COOKIE}={good}; b=2\r\nX-Forwarded-User: mallory\r\nX_Forwarded_Groups: admins\r\nx-forwarded-email: m@evil.example\r\n"
            ),
        );
        assert_eq!(g.status, 200, "{engine}: {}", g.body);
        assert_eq!(g.backend_header("x-forwarded-user"), ["alice"], "{engine}");
        assert_eq!(
            g.backend_header("x-forwarded-email"),
            ["alice@example.test"],
            "{engine}"
        );
        assert_eq!(
            g.backend_header("x-forwarded-groups"),
            ["devs,ops"],
            "{engine}"
        );
        assert!(
            g.backend_header("x_forwarded_groups").is_empty(),
            "{engine}"
        );
        assert_eq!(g.backend_header("cookie"), ["a=1; b=2"], "{engine}");
        // The fast path serves a signed-in request itself (Pingora's engine adds a Date).
        if e.fast {
            assert_eq!(
                header(&g.headers, "date"),
                None,
                "handed to Pingora's engine"
            );
        }
        // Only the session cookie: no Cookie header is left at all.
        let g = e.send(
            &svc,
            &format!("GET /api/x HTTP/1.1\r\nCookie: {COOKIE}={good}\r\n"),
        );
        assert_eq!(g.status, 200, "{engine}: {}", g.body);
        assert!(g.backend_header("cookie").is_empty(), "{engine}");
        // A backend setting the edge's cookie: that Set-Cookie is dropped, others kept.
        let g = e.send(
            &svc,
            &format!("GET /sets-cookie HTTP/1.1\r\nCookie: {COOKIE}={good}\r\n"),
        );
        assert_eq!(g.status, 200, "{engine}: {}", g.body);
        let set: Vec<&str> = g
            .headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(set, ["app=1; Path=/"], "{engine}");
        // The access log names the user, the rule and the decision.
        let x = &e.x;
        eventually(Duration::from_secs(5), "the access records", || {
            x.access().iter().any(|r| r["user"] == "alice")
        });
        let rec = x
            .access()
            .into_iter()
            .find(|r| r["user"] == "alice")
            .expect("a record");
        assert_eq!(rec["rule"], "team", "{engine}: {rec}");
        assert_eq!(rec["decision"], "allow", "{engine}: {rec}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cookies_and_no_session_never_reach_the_backend() {
    let (edges, _eureka, _dir) = gated_edges().await;
    let expired = sealed(KEY, &session("alice", &[], now() - 10));
    let foreign = sealed(OTHER_KEY, &session("alice", &[], now() + 3600));
    let good = sealed(KEY, &session("alice", &[], now() + 3600));
    let mut tampered = good.clone().into_bytes();
    let i = tampered.len() - 3;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let oversized = format!("v1.{}", "A".repeat(5000));
    let page = "Accept: text/html,application/xhtml+xml\r\n";
    for e in &edges {
        let svc = svc_label(e.fast, &e.backend);
        let engine = e.engine();
        for (name, value) in [
            ("tampered", &tampered),
            ("foreign", &foreign),
            ("oversized", &oversized),
        ] {
            // A browser goes to the login, which replaces the cookie (one sealed under a
            // key since rotated out would otherwise strand it until it expires).
            let g = e.send(
                &svc,
                &format!("GET /page HTTP/1.1\r\n{page}Cookie: {COOKIE}={value}\r\n"),
            );
            assert_eq!(g.status, 302, "{engine}, {name}: {}", g.body);
            assert!(g.seen.is_empty(), "{engine}, {name}");
            // Anyone else is told what is wrong with it.
            let g = e.send(
                &svc,
                &format!("GET /page HTTP/1.1\r\nAccept: application/json\r\nCookie: {COOKIE}={value}\r\n"),
            );
            assert_eq!(g.status, 401, "{engine}, {name}: {}", g.body);
            assert!(g.body.contains("session"), "{engine}, {name}: {}", g.body);
            assert!(g.seen.is_empty(), "{engine}, {name}");
        }
        // Expired: back to the login, as without a session.
        let g = e.send(
            &svc,
            &format!("GET /page?a=1 HTTP/1.1\r\n{page}Cookie: {COOKIE}={expired}\r\n"),
        );
        assert_eq!(g.status, 302, "{engine}: {}", g.body);
        assert!(g.seen.is_empty(), "{engine}");
        // A browser page load without a session: to the login host, with the page to
        // come back to.
        let g = e.send(&svc, &format!("GET /page?a=1 HTTP/1.1\r\n{page}"));
        assert_eq!(g.status, 302, "{engine}: {}", g.body);
        let port = e.x.proxy.port();
        let back = format!("http://{svc}.{DOMAIN}:{port}/page?a=1");
        let rd: String = back
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        assert_eq!(
            header(&g.headers, "location"),
            Some(format!("http://login.{DOMAIN}:{port}/oauth2/start?rd={rd}").as_str()),
            "{engine}"
        );
        assert!(g.seen.is_empty(), "{engine}");
        // Not page loads: 401 with a challenge, never a redirect.
        for (name, extra) in [
            ("xhr", format!("{page}X-Requested-With: XMLHttpRequest\r\n")),
            ("json", "Accept: application/json\r\n".to_string()),
            (
                "authorization",
                format!("{page}Authorization: Bearer abc\r\n"),
            ),
            ("post", String::new()),
        ] {
            let line = if name == "post" {
                "POST /page HTTP/1.1\r\nContent-Length: 0\r\n"
            } else {
                "GET /page HTTP/1.1\r\n"
            };
            let g = e.send(&svc, &format!("{line}{extra}"));
            assert_eq!(g.status, 401, "{engine}, {name}: {}", g.body);
            let challenge = header(&g.headers, "www-authenticate").unwrap_or("");
            assert!(
                challenge.contains("realm=\"xipgate\""),
                "{engine}, {name}: {challenge}"
            );
            assert!(g.seen.is_empty(), "{engine}, {name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actuator_variants_are_refused_before_any_backend() {
    let (edges, _eureka, _dir) = gated_edges().await;
    // Signed in, but not an operator.
    let good = sealed(KEY, &session("alice", &["devs"], now() + 3600));
    let ops = sealed(KEY, &session("olga", &["operators"], now() + 3600));
    for e in &edges {
        let svc = svc_label(e.fast, &e.backend);
        let engine = e.engine();
        for (path, want) in [
            ("/actuator;/env", 400),
            ("/actuator/%65nv", 403),
            ("//actuator/env", 400),
            ("/x/..;/actuator/env", 400),
            ("/actuator/%2e%2e/env", 400),
            ("/actuator/heapdump", 403),
            ("/actuator/env", 403),
        ] {
            let g = e.send(
                &svc,
                &format!("GET {path} HTTP/1.1\r\nCookie: {COOKIE}={good}\r\n"),
            );
            assert_eq!(g.status, want, "{engine}, {path}: {}", g.body);
            assert!(g.seen.is_empty(), "{engine}, {path}: {:?}", g.seen);
        }
        // Health is public; operators read env; heap dumps stay refused.
        assert_eq!(e.send(&svc, "GET /actuator/health HTTP/1.1").status, 200);
        let g = e.send(
            &svc,
            &format!("GET /actuator/env HTTP/1.1\r\nCookie: {COOKIE}={ops}\r\n"),
        );
        assert_eq!(g.status, 200, "{engine}: {}", g.body);
        let g = e.send(
            &svc,
            &format!("GET /actuator/heapdump HTTP/1.1\r\nCookie: {COOKIE}={ops}\r\n"),
        );
        assert_eq!(g.status, 403, "{engine}: {}", g.body);
        assert!(g.seen.is_empty(), "{engine}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_from_another_site_is_refused_at_the_handshake() {
    let (edges, _eureka, _dir) = gated_edges().await;
    let good = sealed(KEY, &session("alice", &[], now() + 3600));
    for e in &edges {
        let svc = svc_label(e.fast, &e.backend);
        let engine = e.engine();
        let upgrade = |origin: &str| {
            format!("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: {origin}\r\nCookie: {COOKIE}={good}\r\n")
        };
        let g = e.send(&svc, &upgrade("http://evil.example"));
        assert_eq!(g.status, 403, "{engine}: {}", g.body);
        assert!(g.seen.is_empty(), "{engine}");
        // The same upgrade from the edge's own site reaches the backend.
        let g = e.send(&svc, &upgrade(&format!("http://app.{DOMAIN}")));
        assert_eq!(g.seen.len(), 1, "{engine}: {} {}", g.status, g.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_identity_headers_never_reach_a_backend_of_an_open_edge() {
    let eureka = StubEureka::start().await;
    let backends = [Recorder::start(Vec::new()), Recorder::start(Vec::new())];
    let insts: Vec<Inst> = [true, false]
        .iter()
        .zip(&backends)
        .map(|(fast, b)| Inst::up("svc", &format!("svc-{fast}"), b.addr))
        .collect();
    eureka.serve(&insts).await;
    for (fast, backend) in [true, false].into_iter().zip(backends) {
        let e = Edge::start(
            backend,
            &eureka,
            &format!("  downstream:\n    fast_path: {fast}\n"),
            fast,
        );
        let svc = svc_label(fast, &e.backend);
        let engine = e.engine();
        for forged in [
            "X-Forwarded-User: admin\r\nX-Forwarded-Email: a@b\r\nX-Forwarded-Groups: operators\r\n",
            "X_Forwarded_User: admin\r\nx_forwarded_groups: operators\r\n",
            "Connection: X-Forwarded-User\r\nX-Forwarded-User: admin\r\n",
        ] {
            let g = e.send(&svc, &format!("GET /x HTTP/1.1\r\n{forged}"));
            assert_eq!(g.status, 200, "{engine}, {forged:?}: {}", g.body);
            assert_eq!(g.seen.len(), 1, "{engine}");
            for r in &g.seen {
                for (k, _) in &r.headers {
                    let k = k.replace('_', "-");
                    assert!(
                        !["x-forwarded-user", "x-forwarded-email", "x-forwarded-groups"]
                            .contains(&k.as_str()),
                        "{engine}, {forged:?}: {:?}",
                        r.headers
                    );
                }
            }
        }
    }
}

/// `xipgate_access_decisions_total` counts each decision by rule and outcome, whichever
/// engine decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_are_counted_by_rule_and_outcome() {
    let (edges, _eureka, _dir) = gated_edges().await;
    for e in &edges {
        let svc = svc_label(e.fast, &e.backend);
        let engine = e.engine();
        e.send(&svc, "GET /public HTTP/1.1");
        e.send(&svc, "GET /admin HTTP/1.1");
        e.send(&svc, "GET /a;b HTTP/1.1");
        e.send(&svc, "GET /api HTTP/1.1\r\nAccept: application/json\r\n");
        e.send(&svc, "GET /page HTTP/1.1\r\nAccept: text/html\r\n");
        let metrics = http_get(e.x.console, "localhost", "/metrics")
            .expect("metrics")
            .2;
        for series in [
            r#"xipgate_access_decisions_total{outcome="allow",rule="docs"} 1"#,
            r#"xipgate_access_decisions_total{outcome="deny",rule="no-admin"} 1"#,
            r#"xipgate_access_decisions_total{outcome="bad_path",rule="ambiguous-path"} 1"#,
            r#"xipgate_access_decisions_total{outcome="unauthorized",rule="team"} 1"#,
            r#"xipgate_access_decisions_total{outcome="login",rule="team"} 1"#,
        ] {
            assert!(metrics.contains(series), "{engine}: {series}\n{metrics}");
        }
    }
}

/// A key file that cannot be read stops the start with a message naming the key.
#[test]
fn an_unreadable_key_file_is_a_start_error_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("x.yaml");
    std::fs::write(
        &config,
        format!(
            "xipgate:\n  listen: [\"127.0.0.1:0\"]\n  domains: [\"{DOMAIN}\"]\n  registry:\n    eureka:\n      urls: [\"http://127.0.0.1:9/eureka\"]\n  access:\n    login:\n      issuer: http://127.0.0.1:9/\n      client_id: x\n      keys_file: {}/missing-keys\n    rules:\n      - authenticated: true\n",
            dir.path().display()
        ),
    )
    .expect("config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xipgate"))
        .arg("-c")
        .arg(&config)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("xipgate.access.login.keys_file") && err.contains("missing-keys"),
        "{err}"
    );
}

/// With `xipgate.access.identity.jwt`, a backend also gets the identity signed by the edge
/// (for this host), and a client's own copy of that header never reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_identity_reaches_the_backend_and_a_forged_one_does_not() {
    use base64::Engine;
    let (edges, _eureka, _dir) = gated_edges_with(|dir| {
        let key = dir.join("identity.pem");
        let out = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ])
            .arg(&key)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!(
            "    identity:\n      jwt:\n        key_file: \"{}\"\n",
            key.display()
        )
    })
    .await;
    let good = sealed(KEY, &session("alice", &["devs"], now() + 3600));
    for e in &edges {
        let svc = svc_label(e.fast, &e.backend);
        let engine = e.engine();
        let g = e.send(
            &svc,
            &format!(
                "GET /api HTTP/1.1\r\nCookie: {COOKIE}={good}\r\nX-Xipgate-Identity: forged\r\nX_Xipgate_Identity: forged\r\n"
            ),
        );
        assert_eq!(g.status, 200, "{engine}: {}", g.body);
        assert!(
            g.backend_header("x_xipgate_identity").is_empty(),
            "{engine}"
        );
        let tokens = g.backend_header("x-xipgate-identity");
        assert_eq!(tokens.len(), 1, "{engine}: {tokens:?}");
        let claims = tokens[0].split('.').nth(1).expect("a JWT");
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(claims)
                .expect("base64url"),
        )
        .expect("json");
        assert_eq!(claims["sub"], "alice", "{engine}: {claims}");
        assert_eq!(
            claims["aud"],
            format!("{svc}.{DOMAIN}"),
            "{engine}: {claims}"
        );
        // Without an identity (a public path) the forged header is still deleted.
        let g = e.send(
            &svc,
            "GET /public HTTP/1.1\r\nX-Xipgate-Identity: forged\r\n",
        );
        assert_eq!(g.status, 200, "{engine}: {}", g.body);
        assert!(
            g.backend_header("x-xipgate-identity").is_empty(),
            "{engine}"
        );
    }
}
