//! The demo's world: a stand-in Eureka and the backends behind its instances, served by
//! a minimal HTTP/1.1 server on plain tokio, all on one thread with its own runtime.
//!
//! The registry answers like a Jackson-based Eureka server: `/eureka/apps` (full),
//! `/eureka/apps/delta` (the changes of the last three minutes, with the hash of the
//! whole registry, so a client's reconcile check holds) and `/eureka/apps/{APP}`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::registry::Status;
use crate::standin::{self, Registration};
use tokio::net::{TcpListener, TcpStream};

/// USER-SERVICE's instance registers as STARTING and turns UP after this long.
pub const STARTING_FOR: Duration = Duration::from_secs(45);
/// How long a change stays in `/apps/delta` (Eureka keeps about three minutes).
const DELTA_WINDOW: Duration = Duration::from_secs(180);

/// One registered instance of the demo registry.
pub struct DemoInstance {
    pub app: &'static str,
    pub pod: &'static str,
    /// The address registered; loopback for the instances that have a backend.
    ip: &'static str,
    /// Where its backend really listens (the registered ids all say 8080, as pods do).
    port: u16,
    secure_port: Option<u16>,
    status: &'static str,
    zone: &'static str,
    has_backend: bool,
}

impl DemoInstance {
    pub fn id(&self) -> String {
        format!("{}:{}:8080", self.pod, self.app.to_lowercase())
    }
}

const fn inst(
    app: &'static str,
    pod: &'static str,
    status: &'static str,
    zone: &'static str,
) -> DemoInstance {
    DemoInstance {
        app,
        pod,
        ip: "127.0.0.1",
        port: 0,
        secure_port: None,
        status,
        zone,
        has_backend: true,
    }
}

/// The stand-in registry: its instances and when each last changed (for the delta).
pub struct Registry {
    pub instances: Vec<DemoInstance>,
    changed: Vec<(Instant, usize)>,
    started: Instant,
}

impl Registry {
    fn demo() -> Self {
        let mut instances = vec![
            inst("ORDER-SERVICE", "order-7d9f8-x2k4q", "UP", "eu-west-1a"),
            inst("ORDER-SERVICE", "order-7d9f8-m5pzt", "UP", "eu-west-1b"),
            inst("ORDER-SERVICE", "order-7d9f8-q8wvn", "DOWN", "eu-west-1a"),
            inst("PAYMENT-SERVICE", "payment-5c4b9-h2jkd", "UP", "eu-west-1a"),
            inst("PAYMENT-SERVICE", "payment-5c4b9-t7rxs", "UP", "eu-west-1b"),
            inst("USER-SERVICE", "user-6f8d2-b9nqc", "STARTING", "eu-west-1b"),
        ];
        instances[3].secure_port = Some(8443);
        // Registered from outside the allowlist: shown, never proxied to.
        instances.push(DemoInstance {
            ip: "203.0.113.10",
            port: 8080,
            has_backend: false,
            ..inst("LEGACY-BILLING", "billing-legacy-01", "UP", "dc-old")
        });
        Registry {
            instances,
            changed: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Time passes: USER-SERVICE finishes starting.
    fn advance(&mut self) {
        if self.started.elapsed() >= STARTING_FOR {
            if let Some(k) = self.instances.iter().position(|i| i.status == "STARTING") {
                self.instances[k].status = "UP";
                self.changed.push((Instant::now(), k));
            }
        }
        self.changed.retain(|(at, _)| at.elapsed() < DELTA_WINDOW);
    }

    fn hashcode(&self) -> String {
        standin::hashcode(self.instances.iter().map(|i| Status::parse(i.status)))
    }

    fn applications(&self, which: impl Fn(usize) -> bool, action: &str) -> Vec<Value> {
        let mut apps: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        for (k, i) in self.instances.iter().enumerate().filter(|(k, _)| which(*k)) {
            apps.entry(i.app)
                .or_default()
                .push(instance_json(i, k, action));
        }
        apps.into_iter()
            .map(|(name, instance)| json!({"name": name, "instance": instance}))
            .collect()
    }

    fn apps(&self) -> Value {
        let application = self.applications(|_| true, "ADDED");
        json!({"applications": {"versions__delta": "1", "apps__hashcode": self.hashcode(), "application": application}})
    }

    fn delta(&self) -> Value {
        let application =
            self.applications(|k| self.changed.iter().any(|(_, c)| *c == k), "MODIFIED");
        let version = self.changed.len() + 1;
        json!({"applications": {"versions__delta": version.to_string(), "apps__hashcode": self.hashcode(), "application": application}})
    }

    fn app(&self, name: &str) -> Option<Value> {
        let apps = self.applications(
            |k| self.instances[k].app.eq_ignore_ascii_case(name),
            "ADDED",
        );
        apps.into_iter().next().map(|a| json!({ "application": a }))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One instance as Spring Cloud's Eureka server writes it ([`crate::standin`]).
fn instance_json(i: &DemoInstance, k: usize, action: &str) -> Value {
    let now = now_ms();
    let mut r = Registration::spring(i.app, i.pod, i.ip, i.port);
    r.instance_id = i.id();
    r.secure_port = i.secure_port;
    r.status = Status::parse(i.status);
    r.metadata = vec![
        ("zone".into(), i.zone.into()),
        ("management.port".into(), i.port.to_string()),
    ];
    r.registered_ms = now - 3_600_000;
    // Each instance renews every 30 s, at its own phase.
    r.renewed_ms = now - (now + k as u64 * 7_919) % 30_000;
    standin::instance(&r, action)
}

/// A request as the demo servers need it.
struct Request {
    path: String,
    host: String,
    client: SocketAddr,
}

type Handler = Arc<dyn Fn(&Request) -> (u16, Value) + Send + Sync>;

/// Serves HTTP/1.1 GETs with keep-alive; every answer is JSON.
async fn serve(listener: TcpListener, handler: Handler) {
    while let Ok((sock, client)) = listener.accept().await {
        tokio::spawn(connection(sock, client, handler.clone()));
    }
}

async fn connection(mut sock: TcpStream, client: SocketAddr, handler: Handler) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) if buf.len() + n > 64 * 1024 => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let header = |name: &str| {
            head.lines().skip(1).find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim().to_string())
            })
        };
        // Bodies are not used; skip one if sent so the connection stays in step.
        let body_len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < body_len {
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..body_len);
        let mut line = head.lines().next().unwrap_or("").split_whitespace();
        let (method, target) = (line.next().unwrap_or(""), line.next().unwrap_or("/"));
        let req = Request {
            path: target.split('?').next().unwrap_or("/").to_string(),
            host: header("host").unwrap_or_default(),
            client,
        };
        let (status, body) = if method == "GET" || method == "HEAD" {
            handler(&req)
        } else {
            (405, json!({"error": "the demo servers answer GET only"}))
        };
        let mut body = serde_json::to_vec_pretty(&body).unwrap_or_default();
        body.push(b'\n');
        let reason = match status {
            200 => "OK",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "Service Unavailable",
        };
        let mut out = format!("HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        if method != "HEAD" {
            out.extend_from_slice(&body);
        }
        if sock.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn eureka_handler(registry: Arc<Mutex<Registry>>) -> Handler {
    Arc::new(move |req: &Request| {
        let mut reg = registry.lock().unwrap_or_else(|p| p.into_inner());
        reg.advance();
        match req.path.trim_end_matches('/') {
            "/eureka/apps" => (200, reg.apps()),
            "/eureka/apps/delta" => (200, reg.delta()),
            p => match p.strip_prefix("/eureka/apps/").and_then(|app| reg.app(app)) {
                Some(app) => (200, app),
                None => (
                    404,
                    json!({"error": format!("no application at {p}; try GET /eureka/apps")}),
                ),
            },
        }
    })
}

fn backend_handler(registry: Arc<Mutex<Registry>>, k: usize, listening: SocketAddr) -> Handler {
    Arc::new(move |req: &Request| {
        let mut reg = registry.lock().unwrap_or_else(|p| p.into_inner());
        reg.advance();
        let i = &reg.instances[k];
        match req.path.as_str() {
            "/actuator/health" => (
                if i.status == "UP" { 200 } else { 503 },
                json!({"status": i.status}),
            ),
            "/actuator/info" => (
                200,
                json!({"app": {"name": i.app.to_lowercase(), "description": "xipgate demo backend"}, "instance": i.id(), "zone": i.zone}),
            ),
            path => (
                200,
                json!({
                    "message": format!("Hello from {}", i.app), "service": i.app, "instance": i.id(),
                    "listening": listening.to_string(), "path": path, "host": req.host, "peer": req.client.to_string(),
                }),
            ),
        }
    })
}

/// Starts the stand-in Eureka and the backends on a thread with its own runtime (Pingora
/// builds its own runtimes later). Returns the registry's base URL and what it lists.
pub fn start_world() -> std::io::Result<(String, Arc<Mutex<Registry>>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("demo-world".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return drop(tx.send(Err(e))),
            };
            rt.block_on(async move {
                let registry = Arc::new(Mutex::new(Registry::demo()));
                let setup = async {
                    let eureka = TcpListener::bind("127.0.0.1:0").await?;
                    let mut backends = Vec::new();
                    let count = registry.lock().map_or(0, |r| r.instances.len());
                    for k in 0..count {
                        if registry.lock().is_ok_and(|r| r.instances[k].has_backend) {
                            let l = TcpListener::bind("127.0.0.1:0").await?;
                            let addr = l.local_addr()?;
                            if let Ok(mut r) = registry.lock() {
                                r.instances[k].port = addr.port();
                            }
                            backends.push((l, k, addr));
                        }
                    }
                    Ok::<_, std::io::Error>((eureka, backends))
                };
                let (eureka, backends) = match setup.await {
                    Ok(s) => s,
                    Err(e) => return drop(tx.send(Err(e))),
                };
                let url = eureka.local_addr().map(|a| format!("http://{a}/eureka"));
                for (l, k, addr) in backends {
                    tokio::spawn(serve(l, backend_handler(registry.clone(), k, addr)));
                }
                let _ = tx.send(url.map(|u| (u, registry.clone())));
                serve(eureka, eureka_handler(registry)).await;
            });
        })?;
    rx.recv()
        .map_err(|_| std::io::Error::other("the demo thread stopped"))?
}
