//! Test harness shared by the integration tests: a stub Eureka (wiremock, serving what
//! real Eureka servers serve), real HTTP backends that answer with their own identity,
//! and the real `xipgate` binary started on loopback.
//!
//! Everything binds port 0 and reads the address back. xipgate's proxy and console
//! listeners are bound here too and handed to it already listening, through Pingora's
//! upgrade socket ([`handover`]), so no port is reserved and released.

#![allow(dead_code)]

pub mod gated;
pub mod handover;
pub mod idp;
pub mod real;
pub mod wire;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};
use xipgate::registry::Status;
use xipgate::standin::{self, Registration};

/// One instance for [`apps_json`].
#[derive(Clone, Debug)]
pub struct Inst {
    pub app: String,
    pub id: String,
    pub ip: String,
    pub port: u16,
    pub status: String,
    pub metadata: Value,
    pub secure_only: bool,
}

impl Inst {
    /// A Spring-style instance: id `pod:app:port`.
    pub fn up(app: &str, pod: &str, addr: SocketAddr) -> Self {
        Inst {
            app: app.to_uppercase(),
            id: format!("{pod}:{}:{}", app.to_lowercase(), addr.port()),
            ip: addr.ip().to_string(),
            port: addr.port(),
            status: "UP".into(),
            metadata: json!({"@class": "java.util.Collections$EmptyMap"}),
            secure_only: false,
        }
    }

    pub fn status(mut self, s: &str) -> Self {
        self.status = s.into();
        self
    }

    pub fn ip(mut self, ip: &str) -> Self {
        self.ip = ip.into();
        self
    }

    /// Registered with only its securePort enabled (at the same port): reached over TLS.
    pub fn secure_only(mut self) -> Self {
        self.secure_only = true;
        self
    }

    /// The primary label xipgate gives this instance (Spring's pod:app:port → pod-port).
    pub fn label(&self) -> String {
        xipgate::names::instance_label(&self.id, &self.app)
    }
}

impl Inst {
    /// The registration this instance stands for.
    fn registration(&self) -> Registration {
        let mut r = Registration::spring(&self.app, "", &self.ip, self.port);
        r.instance_id = self.id.clone();
        if self.secure_only {
            r.port_enabled = false;
            r.secure_port = Some(self.port);
        }
        r.host_name = self.id.split(':').next().unwrap_or("").to_string();
        r.status = Status::parse(&self.status);
        r.metadata = self
            .metadata
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect();
        r.renewed_ms = 1_700_000_030_000 - 90_000;
        r
    }
}

fn instance_json(i: &Inst, action: &str) -> Value {
    let mut v = standin::instance(&i.registration(), action);
    // Jackson's `@class` tag on an empty metadata map, as older servers send it.
    if i.metadata.get("@class").is_some() {
        v["metadata"] = i.metadata.clone();
    }
    v
}

/// A full `/apps` document in the shape Spring Cloud's Eureka server sends
/// ([`xipgate::standin`], made from a recorded answer).
pub fn apps_json(instances: &[Inst]) -> String {
    let docs: Vec<Value> = instances
        .iter()
        .map(|i| instance_json(i, "ADDED"))
        .collect();
    let hash = standin::hashcode(instances.iter().map(|i| i.registration().served_status()));
    standin::applications(&docs, &hash, 1).to_string()
}

/// An `/apps/delta` document taking a client from `before` to `after`, as the server's
/// delta queue would have it: ADDED for new instances, MODIFIED for changed ones, DELETED
/// for gone ones, and the hashcode of the whole registry after.
pub fn delta_json(before: &[Inst], after: &[Inst], version: u64) -> String {
    let mut docs = Vec::new();
    for i in after {
        match before.iter().find(|b| b.app == i.app && b.id == i.id) {
            None => docs.push(instance_json(i, "ADDED")),
            Some(b) if instance_json(b, "") != instance_json(i, "") => {
                docs.push(instance_json(i, "MODIFIED"))
            }
            Some(_) => {}
        }
    }
    for b in before {
        if !after.iter().any(|i| i.app == b.app && i.id == b.id) {
            docs.push(instance_json(b, "DELETED"));
        }
    }
    let hash = standin::hashcode(after.iter().map(|i| i.registration().served_status()));
    standin::applications(&docs, &hash, version).to_string()
}

/// A stub Eureka server. Its answers can be swapped while xipgate runs.
pub struct StubEureka {
    pub server: MockServer,
    /// What [`StubEureka::serve`] served last, the base of the next delta.
    served: std::sync::Mutex<(Vec<Inst>, u64)>,
}

impl StubEureka {
    pub async fn start() -> Self {
        StubEureka {
            server: MockServer::start().await,
            served: std::sync::Mutex::new((Vec::new(), 1)),
        }
    }

    /// The base URL xipgate is configured with (`.../eureka`).
    pub fn url(&self) -> String {
        format!("{}/eureka", self.server.uri())
    }

    /// Serves `instances` at `/eureka/apps`, and at `/eureka/apps/delta` the changes
    /// from what was served before with the new registry's hashcode, as a real server's
    /// delta queue has them: a client that synced the previous answer reaches this one
    /// by delta, any other by its hashcode check and a full fetch.
    pub async fn serve(&self, instances: &[Inst]) {
        let delta = {
            let mut served = self.served.lock().expect("lock");
            served.1 += 1;
            let delta = delta_json(&served.0, instances, served.1);
            served.0 = instances.to_vec();
            delta
        };
        self.mount(200, &apps_json(instances), "application/json", &delta)
            .await;
    }

    /// Serves `instances` as a restarted server would: its delta queue is empty, so the
    /// delta lists nothing and carries the new registry's hashcode.
    pub async fn serve_restarted(&self, instances: &[Inst]) {
        let delta = {
            let mut served = self.served.lock().expect("lock");
            *served = (instances.to_vec(), 1);
            delta_json(instances, instances, 1)
        };
        self.mount(200, &apps_json(instances), "application/json", &delta)
            .await;
    }

    /// Serves any status and body at `/eureka/apps`, and the same status at
    /// `/eureka/apps/delta` with a hashcode no registry has, so a client always falls back
    /// to `/eureka/apps` and meets `body` there.
    pub async fn serve_body(&self, status: u16, body: &str, content_type: &str) {
        *self.served.lock().expect("lock") = (Vec::new(), 1);
        self.mount(
            status,
            body,
            content_type,
            r#"{"applications":{"versions__delta":"2","apps__hashcode":"MISMATCH_1_","application":[]}}"#,
        )
        .await;
    }

    async fn mount(&self, status: u16, body: &str, content_type: &str, delta: &str) {
        self.server.reset().await;
        for p in ["/eureka/apps", "/eureka/apps/"] {
            Mock::given(method("GET"))
                .and(path(p))
                .respond_with(
                    ResponseTemplate::new(status)
                        .set_body_raw(body.as_bytes().to_vec(), content_type),
                )
                .mount(&self.server)
                .await;
        }
        Mock::given(method("GET"))
            .and(path("/eureka/apps/delta"))
            .respond_with(
                ResponseTemplate::new(status)
                    .set_body_raw(delta.as_bytes().to_vec(), "application/json"),
            )
            .mount(&self.server)
            .await;
    }
}

/// A real HTTP/1.1 backend that answers every request with its own name, the Host it
/// got and the forwarding headers, and counts the requests it served.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    pub async fn start(name: &str) -> Self {
        Self::start_at(name, ([127, 0, 0, 1], 0).into()).await
    }

    /// Like [`Backend::start`], listening on `addr` (a pod address inside a test's
    /// network namespace, say: see `netns.rs`).
    pub async fn start_at(name: &str, addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("bind backend {addr}: {e}"));
        let addr = listener.local_addr().expect("backend addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let (n, h) = (name.to_string(), hits.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (n, h) = (n.clone(), h.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // Read one request head (bodies are not used by these tests).
                        let end = loop {
                            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break p + 4;
                            }
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(k) => buf.extend_from_slice(&chunk[..k]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end);
                        h.fetch_add(1, Ordering::SeqCst);
                        let header = |name: &str| {
                            head.lines()
                                .find_map(|l| {
                                    l.split_once(':')
                                        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                                        .map(|(_, v)| v.trim().to_string())
                                })
                                .unwrap_or_default()
                        };
                        let body = json!({
                            "backend": n,
                            "host": header("host"),
                            "xff": header("x-forwarded-for"),
                            "xfh": header("x-forwarded-host"),
                            "xfp": header("x-forwarded-proto"),
                            "xfport": header("x-forwarded-port"),
                            "request_line": head.lines().next().unwrap_or(""),
                        })
                        .to_string();
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Backend: {n}\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if sock.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Backend {
            name: name.to_string(),
            addr,
            hits,
            task,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP relay on a loopback port of its own that forwards its first `conns` connections to
/// `to` (a NAT rule or a sidecar in front of an address): an instance registered at it
/// leads back to whatever `to` is. Later connections are refused (the listener is gone),
/// so a request that loops through it ends instead of running away.
pub struct Relay {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn start(to: SocketAddr, conns: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let task = tokio::spawn(async move {
            for _ in 0..conns {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay { addr, task }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `xipgate-<16 hex>` (each process's own Via pseudonym) as `xipgate-ID`, so what two
/// processes sent can be compared.
pub fn unmark_via(value: &str) -> String {
    const MARK: &str = "xipgate-";
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find(MARK) {
        out.push_str(&rest[..i + MARK.len()]);
        rest = &rest[i + MARK.len()..];
        let hex = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
        if hex == 16 {
            out.push_str("ID");
            rest = &rest[hex..];
        }
    }
    out.push_str(rest);
    out
}

/// Where [`free_port`] looks: below Linux's ephemeral range (32768-60999), from which every
/// outgoing connection and every port-0 bind on the machine draws its local port. A port
/// from that range, free when picked, could be some client's by the time the server it
/// was picked for binds it (seen: the ACME test's DNS port, taken while pebble started).
const TEST_PORTS: std::ops::Range<u16> = 20000..32000;

/// A loopback port nobody listens on right now, TCP and UDP (the DNS server takes both).
/// Each test process walks [`TEST_PORTS`] from an offset of its own, so two tests of one
/// binary never get the same port.
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(usize::MAX);
    let span = usize::from(TEST_PORTS.end - TEST_PORTS.start);
    let _ = NEXT.compare_exchange(
        usize::MAX,
        std::process::id() as usize * 97 % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let i = NEXT.fetch_add(1, Ordering::SeqCst) % span;
        let port = TEST_PORTS.start + i as u16;
        if StdListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free loopback port in {TEST_PORTS:?}");
}

/// The real binary, started with a generated config.
pub struct Xipgate {
    pub child: Child,
    pub proxy: SocketAddr,
    pub console: SocketAddr,
    /// Handed over too; serving only when the config puts `HTTPS_ADDR` in `xipgate.tls.listen`.
    pub https: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

pub const DOMAIN: &str = "127-0-0-1.sslip.io";

impl Xipgate {
    /// Starts xipgate against `eureka_url` with `extra` YAML appended under `xipgate:`
    /// (indented two spaces), and waits until `/readyz` answers 200.
    pub fn start(eureka_url: &str, extra: &str) -> Self {
        Self::start_with(eureka_url, extra, "", true)
    }

    /// Like [`Xipgate::start`]; `top` is extra top-level (Pingora) YAML; with
    /// `wait_ready: false` it only waits for `/healthz`.
    pub fn start_with(eureka_url: &str, extra: &str, top: &str, wait_ready: bool) -> Self {
        Self::launch(eureka_url, extra, top, wait_ready, None)
    }

    /// Like [`Xipgate::start`], with the access log in the process log (the default sink,
    /// no `access_file`) and the process's stderr going to `stderr` (a pipe nobody
    /// reads, say).
    pub fn start_logging_to(eureka_url: &str, extra: &str, stderr: Stdio) -> Self {
        Self::launch(eureka_url, extra, "", true, Some(stderr))
    }

    fn launch(
        eureka_url: &str,
        extra: &str,
        top: &str,
        wait_ready: bool,
        stderr: Option<Stdio>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let listeners = handover::Listeners::bind(3);
        let [proxy, console, https] = listeners.addrs()[..] else {
            unreachable!("three listeners")
        };
        // A test that wants HTTPS writes `HTTPS_ADDR` where its listener goes.
        let extra = extra.replace("HTTPS_ADDR", &https.to_string());
        let config = dir.path().join("xipgate.yaml");
        let base = format!(
            "version: 1\nthreads: 2\npid_file: {d}/x.pid\nupgrade_sock: {d}/upgrade.sock\n{top}\nxipgate:\n  listen: [\"{proxy}\"]\n  domains: [\"{DOMAIN}\"]\n  registry:\n    eureka:\n      urls: [\"{eureka_url}\"]\n      interval: 1s\n      timeout: 1s\n    startup_wait: 10s\n  upstream:\n    allow: [\"127.0.0.0/8\"]\n  console:\n    listen: {console}\n  log:\n    access_file: {d}/access.jsonl\n",
            d = dir.path().display()
        );
        // The backends live on loopback, which `upstream.allow` leaves out by default (in
        // production loopback is the edge itself). `extra` is YAML under `xipgate:`, merged
        // key by key over the defaults above.
        let mut doc: serde_yaml::Value = serde_yaml::from_str(&base).expect("base config");
        // XIPGATE_TEST_ENGINE=pingora runs a suite on Pingora's proxy path alone (the fast
        // path off), unless the test chose an engine itself: `.ci/run` runs every
        // end-to-end proxy suite under both engines this way.
        if std::env::var("XIPGATE_TEST_ENGINE").as_deref() == Ok("pingora") {
            let off: serde_yaml::Value =
                serde_yaml::from_str("xipgate:\n  downstream:\n    fast_path: false\n")
                    .expect("engine yaml");
            merge(&mut doc, off);
        }
        let extra: serde_yaml::Value =
            serde_yaml::from_str(&format!("xipgate:\n{extra}\n")).expect("extra yaml");
        merge(&mut doc, extra);
        if stderr.is_some() {
            if let Some(log) = doc
                .get_mut("xipgate")
                .and_then(|x| x.get_mut("log"))
                .and_then(|l| l.as_mapping_mut())
            {
                log.remove("access_file");
            }
        }
        let yaml = serde_yaml::to_string(&doc).expect("config yaml");
        std::fs::write(&config, yaml).expect("write config");
        let log = match stderr {
            Some(s) => s,
            None => std::fs::File::create(dir.path().join("xipgate.log"))
                .expect("log file")
                .into(),
        };
        // `-u`: take the listeners bound above from upgrade_sock instead of binding.
        let child = Command::new(env!("CARGO_BIN_EXE_xipgate"))
            .arg("-u")
            .arg("-c")
            .arg(&config)
            // XIPGATE_TEST_RUST_LOG: e.g. `info,pingora_proxy=trace` to see a flaky case.
            .env(
                "RUST_LOG",
                std::env::var("XIPGATE_TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("REGISTRY_HOST")
            .env_remove("XIP_DOMAIN")
            .env_remove("WEB_DOMAIN")
            .env_remove("XIP_IP")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn xipgate");
        let sock = dir.path().join("upgrade.sock");
        let handed = listeners.hand_over(&sock, Duration::from_secs(20));
        let x = Xipgate {
            child,
            proxy,
            console,
            https,
            dir,
            config,
        };
        if let Err(e) = handed {
            panic!(
                "handing the listeners to xipgate on {}: {e}\n{}",
                sock.display(),
                x.log()
            );
        }
        let wanted = if wait_ready { "/readyz" } else { "/healthz" };
        x.wait_for(wanted, 200, Duration::from_secs(20));
        x
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("xipgate.log")).unwrap_or_default()
    }

    /// The access-log records written so far (`xipgate.log.access_file`), one JSON
    /// object per request.
    pub fn access(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("access.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("an access record is JSON"))
            .collect()
    }

    /// Polls the console until `path` answers `status` (the readiness signal).
    pub fn wait_for(&self, path: &str, status: u16, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Ok((s, _, _)) = http_get(self.console, "localhost", path) {
                if s == status {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "xipgate: {path} did not answer {status} in {within:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET through the proxy with `Host: <label>.<DOMAIN>`.
    pub fn get(&self, label: &str, path: &str) -> Response {
        http_get(self.proxy, &format!("{label}.{DOMAIN}"), path).expect("request through xipgate")
    }

    pub fn api(&self, path: &str) -> (u16, Value) {
        let (s, _, body) = http_get(self.console, "localhost", path).expect("console request");
        (
            s,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }
}

/// Deep merge of YAML mappings: `extra`'s keys replace or extend `base`'s.
fn merge(base: &mut serde_yaml::Value, extra: serde_yaml::Value) {
    match (base, extra) {
        (serde_yaml::Value::Mapping(b), serde_yaml::Value::Mapping(e)) => {
            for (k, v) in e {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, e) if !e.is_null() => *b = e,
        _ => {}
    }
}

impl Drop for Xipgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends raw bytes and reads the whole answer (the connection is closed after it).
pub fn raw(addr: SocketAddr, request: &[u8]) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(request)?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Status, headers (lower-case names), body.
pub type Response = (u16, Vec<(String, String)>, String);

/// A minimal HTTP/1.1 GET with `Connection: close`: status, headers, body.
pub fn http_get(addr: SocketAddr, host: &str, path: &str) -> std::io::Result<Response> {
    let text = raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    Ok(parse_response(&text))
}

pub fn parse_response(text: &str) -> Response {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    (status, headers, body.to_string())
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Waits until `check` holds, polling; panics with `what` after `within`.
pub fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
