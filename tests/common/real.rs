//! The real Spring Cloud parts: Spring Cloud's own Eureka server and Spring Boot client
//! (Maven apps under `it/`, built by `.ci/run`), py-eureka-client in front of a small
//! backend (`it/py-client`), and a REST client that talks to Eureka exactly as Spring's
//! `DiscoveryClient` does, for the flows a test must drive step by step.
//!
//! Every process gets port 0 and reports the port it got through a file (Spring Boot's
//! `WebServerPortFileWriter`, the backend's `--port-file`), so there is no race for ports;
//! readiness is the port file and then a real answer, never a sleep. Processes are killed
//! when their handle drops, panics included.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::{eventually, http_get, raw};

fn it_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("it")
}

/// When the newest file under `dir` was modified.
fn newest(dir: &Path) -> Option<std::time::SystemTime> {
    let mut latest = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let t = if e.file_type().is_ok_and(|t| t.is_dir()) {
            newest(&e.path())
        } else {
            e.metadata().and_then(|m| m.modified()).ok()
        };
        latest = latest.max(t);
    }
    latest
}

/// Builds `it/` once per test process when a jar or the venv is missing, so a plain
/// `cargo test` works on a machine with a JDK, Maven and Python; without them,
/// `it/build.sh` says which is missing and how to get it.
fn build_it() {
    static BUILT: std::sync::Mutex<Option<Result<(), String>>> = std::sync::Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    // Built, and not older than its sources (a jar built before an endpoint was added
    // would fail the tests that use it).
    let ready = ["eureka-server", "spring-client", "auth-server"]
        .iter()
        .all(|m| {
            let jar = it_dir().join(m).join("target").join(format!("{m}.jar"));
            let built = std::fs::metadata(&jar).and_then(|j| j.modified()).ok();
            built.is_some_and(|b| newest(&it_dir().join(m).join("src")).is_none_or(|s| s <= b))
        })
        && it_dir().join(".venv/bin/python").exists();
    if ready {
        return;
    }
    let result = built.get_or_insert_with(|| {
        let out = Command::new("bash")
            .arg(it_dir().join("build.sh"))
            .output()
            .map_err(|e| format!("could not run it/build.sh: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    });
    if let Err(why) = result {
        panic!("the real-Eureka tests need it/ built, and `bash it/build.sh` failed: {why}");
    }
}

/// A built jar under `it/` (built first if missing).
pub fn jar(module: &str) -> PathBuf {
    build_it();
    let path = it_dir()
        .join(module)
        .join("target")
        .join(format!("{module}.jar"));
    assert!(
        path.exists(),
        "{} is missing after it/build.sh",
        path.display()
    );
    path
}

/// JVM flags for a fast start on a small machine: C1 only, serial GC, a small heap.
pub const JVM_FLAGS: &[&str] = &[
    "-XX:TieredStopAtLevel=1",
    "-XX:+UseSerialGC",
    "-Xss512k",
    "-Xmx192m",
    "-Xshare:auto",
];

/// Waits for `file` to hold a port number (the readiness signal of every helper process
/// started on port 0), failing with `log` (when the child writes one) if `child` exits.
pub fn read_port_file(
    file: &Path,
    child: &mut Child,
    what: &str,
    log: Option<&Path>,
    within: Duration,
) -> u16 {
    let log_text = || {
        log.and_then(|l| std::fs::read_to_string(l).ok())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + within;
    loop {
        if let Some(port) = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse::<u16>().ok())
        {
            return port;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}) before it listened:\n{}",
                log_text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen within {within:?}:\n{}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A Spring Boot application under `it/`, killed on drop.
pub struct SpringApp {
    module: &'static str,
    args: Vec<String>,
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl SpringApp {
    fn start(module: &'static str, args: Vec<String>, port: u16) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (child, port) = Self::spawn(module, &args, port, dir.path());
        SpringApp {
            module,
            args,
            child,
            port,
            dir,
        }
    }

    fn spawn(module: &str, args: &[String], port: u16, dir: &Path) -> (Child, u16) {
        let port_file = dir.join("port");
        let _ = std::fs::remove_file(&port_file);
        let log = dir.join(format!("{module}.log"));
        let mut child = Command::new("java")
            .args(JVM_FLAGS)
            .arg("-jar")
            .arg(jar(module))
            .arg(format!("--server.port={port}"))
            .arg(format!("--xipgate.it.port-file={}", port_file.display()))
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start java (a JDK 17 is needed for the real-Eureka tests)");
        let port = read_port_file(
            &port_file,
            &mut child,
            module,
            Some(&log),
            Duration::from_secs(120),
        );
        (child, port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.log", self.module)))
            .unwrap_or_default()
    }

    /// Kills the JVM (as a crash or a pod deletion would) and starts it again on the
    /// same port, with the same arguments.
    pub fn restart(&mut self) {
        self.kill();
        let (child, _) = Self::spawn(self.module, &self.args, self.port, self.dir.path());
        self.child = child;
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SpringApp {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spring Cloud's Eureka server (`it/eureka-server`).
pub struct EurekaServer {
    pub app: SpringApp,
}

impl EurekaServer {
    /// Starts the server with the test settings of its `application.properties` plus
    /// `args` (`--eureka.server.disable-delta=true`, ...), and waits until `/eureka/apps`
    /// answers (`expect_apps`: 200, or 403 for a server started in its start-up window).
    pub fn start(args: &[&str], expect_apps: u16) -> Self {
        let app = SpringApp::start(
            "eureka-server",
            args.iter().map(|s| s.to_string()).collect(),
            0,
        );
        let server = EurekaServer { app };
        server.wait_apps(expect_apps);
        server
    }

    pub fn wait_apps(&self, status: u16) {
        eventually(
            Duration::from_secs(60),
            "the Eureka server answers /eureka/apps",
            || self.get("/eureka/apps").0 == status,
        );
    }

    pub fn restart(&mut self, expect_apps: u16) {
        self.app.restart();
        self.wait_apps(expect_apps);
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.app.port))
    }

    /// The base URL clients and xipgate use.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/eureka", self.app.port)
    }

    /// A GET with `Accept: application/json`: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        request(self.addr(), "GET", path, None).unwrap_or((0, String::new()))
    }

    /// The instances of `app` as the server lists them in `/eureka/apps/{app}`
    /// (straight from its registry, not its response cache).
    pub fn instances(&self, app: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/eureka/apps/{app}"));
        if status != 200 {
            return Vec::new();
        }
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        match &v["application"]["instance"] {
            Value::Array(a) => a.clone(),
            Value::Object(_) => vec![v["application"]["instance"].clone()],
            _ => Vec::new(),
        }
    }
}

/// One HTTP/1.1 request with `Connection: close` and a JSON body if given.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, String)> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let text = raw(addr, req.as_bytes())?;
    let (status, _, body) = super::parse_response(&text);
    // Chunked answers: good enough for the status checks these are used for.
    Ok((status, body))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An instance registered through Eureka's REST API exactly as Spring's
/// `DiscoveryClient` does: register (POST), heartbeat every `renew` (PUT, re-registering
/// on a 404 as the client does), status changes of its own by re-registering with a newer
/// `lastDirtyTimestamp`, and cancel (DELETE) on drop. The heartbeat runs on a thread of
/// its own; `stop_heartbeats` lets the lease expire instead.
pub struct RestInstance {
    pub app: String,
    pub id: String,
    pub addr: SocketAddr,
    eureka: SocketAddr,
    own: Arc<Mutex<(String, u64)>>,
    beating: Arc<AtomicBool>,
    paused_until: Arc<Mutex<Option<Instant>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Lease settings the REST instances register with: renew every second, expire after 3.
pub const RENEW_SECS: u64 = 1;
pub const LEASE_SECS: u64 = 3;

impl RestInstance {
    pub fn register(
        eureka: &EurekaServer,
        app: &str,
        id: &str,
        addr: SocketAddr,
        status: &str,
    ) -> Self {
        let own = Arc::new(Mutex::new((status.to_string(), now_ms())));
        let inst = RestInstance {
            app: app.to_uppercase(),
            id: id.to_string(),
            addr,
            eureka: eureka.addr(),
            own,
            beating: Arc::new(AtomicBool::new(true)),
            paused_until: Arc::new(Mutex::new(None)),
            thread: None,
        };
        let (s, body) = inst.post_register().expect("register");
        assert_eq!(s, 204, "register {app}/{id}: {body}");
        inst.start_heartbeats()
    }

    /// The registration body Spring's client sends (its Jackson `InstanceInfo`).
    pub fn body(app: &str, id: &str, addr: SocketAddr, status: &str, dirty: u64) -> Value {
        let (ip, port) = (addr.ip().to_string(), addr.port());
        json!({"instance": {
            "instanceId": id,
            "hostName": ip,
            "app": app,
            "ipAddr": ip,
            "status": status,
            "overriddenStatus": "UNKNOWN",
            "port": {"$": port, "@enabled": "true"},
            "securePort": {"$": 443, "@enabled": "false"},
            "countryId": 1,
            "dataCenterInfo": {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"},
            "leaseInfo": {"renewalIntervalInSecs": RENEW_SECS, "durationInSecs": LEASE_SECS},
            "metadata": {"management.port": port.to_string(), "zone": "it"},
            "homePageUrl": format!("http://{ip}:{port}/"),
            "statusPageUrl": format!("http://{ip}:{port}/actuator/info"),
            "healthCheckUrl": format!("http://{ip}:{port}/actuator/health"),
            "vipAddress": app.to_lowercase(),
            "secureVipAddress": app.to_lowercase(),
            "isCoordinatingDiscoveryServer": "false",
            "lastUpdatedTimestamp": dirty.to_string(),
            "lastDirtyTimestamp": dirty.to_string()
        }})
    }

    fn post_register(&self) -> std::io::Result<(u16, String)> {
        let (status, dirty) = self.own.lock().expect("lock").clone();
        register_raw(self.eureka, &self.app, &self.id, self.addr, &status, dirty)
    }

    fn start_heartbeats(mut self) -> Self {
        let (eureka, app, id, addr) = (self.eureka, self.app.clone(), self.id.clone(), self.addr);
        let (own, beating) = (self.own.clone(), self.beating.clone());
        let paused = self.paused_until.clone();
        self.thread = Some(std::thread::spawn(move || {
            while beating.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs(RENEW_SECS));
                if !beating.load(Ordering::SeqCst) {
                    break;
                }
                if paused
                    .lock()
                    .expect("lock")
                    .is_some_and(|t| Instant::now() < t)
                {
                    continue;
                }
                let (status, dirty) = own.lock().expect("lock").clone();
                let path =
                    format!("/eureka/apps/{app}/{id}?status={status}&lastDirtyTimestamp={dirty}");
                // The lease is gone (a restarted or evicting server): register again.
                if let Ok((404, _)) = request(eureka, "PUT", &path, None) {
                    let _ = register_raw(eureka, &app, &id, addr, &status, dirty);
                }
            }
        }));
        self
    }

    /// The instance's own status changes (its health check): Spring's client marks its
    /// info dirty and registers again.
    pub fn report(&self, status: &str) {
        *self.own.lock().expect("lock") = (status.to_string(), now_ms());
        let (s, body) = self.post_register().expect("register");
        assert_eq!(s, 204, "re-register {}: {body}", self.id);
    }

    /// `PUT .../status?value=V`: an operator's override (Spring Boot Admin, actuator).
    pub fn override_status(&self, value: &str) {
        let path = format!("/eureka/apps/{}/{}/status?value={value}", self.app, self.id);
        let (s, body) = request(self.eureka, "PUT", &path, None).expect("override");
        assert_eq!(s, 200, "override {value}: {body}");
    }

    /// `DELETE .../status`: the override removed, as Spring's `CANCEL_OVERRIDE` does.
    pub fn delete_override(&self) {
        let dirty = self.own.lock().expect("lock").1;
        let path = format!(
            "/eureka/apps/{}/{}/status?lastDirtyTimestamp={dirty}",
            self.app, self.id
        );
        let (s, body) = request(self.eureka, "DELETE", &path, None).expect("delete override");
        assert_eq!(s, 200, "delete override: {body}");
    }

    /// No heartbeats until [`RestInstance::resume_heartbeats`] (a client whose next
    /// heartbeat comes late).
    pub fn pause_heartbeats(&self) {
        *self.paused_until.lock().expect("lock") = Some(Instant::now() + Duration::from_secs(3600));
    }

    pub fn resume_heartbeats(&self) {
        *self.paused_until.lock().expect("lock") = None;
    }

    /// Stops renewing: the server evicts the instance once its lease runs out.
    pub fn stop_heartbeats(&mut self) {
        self.beating.store(false, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// `DELETE /eureka/apps/{APP}/{ID}`: a graceful shutdown.
    pub fn cancel(mut self) {
        self.stop_heartbeats();
        let path = format!("/eureka/apps/{}/{}", self.app, self.id);
        let (s, body) = request(self.eureka, "DELETE", &path, None).expect("cancel");
        assert_eq!(s, 200, "cancel: {body}");
    }
}

fn register_raw(
    eureka: SocketAddr,
    app: &str,
    id: &str,
    addr: SocketAddr,
    status: &str,
    dirty: u64,
) -> std::io::Result<(u16, String)> {
    let body = RestInstance::body(app, id, addr, status, dirty);
    request(eureka, "POST", &format!("/eureka/apps/{app}"), Some(&body))
}

impl Drop for RestInstance {
    fn drop(&mut self) {
        self.stop_heartbeats();
    }
}

/// py-eureka-client in front of a small HTTP backend (`it/py-client/backend.py`), in the
/// virtualenv `.ci/run` makes at `it/.venv`. Killed on drop (SIGKILL: no cancel, so the
/// lease expires), or stopped gracefully with [`PyClient::stop`] (SIGTERM: it cancels).
pub struct PyClient {
    child: Child,
    pub port: u16,
    pub id: String,
    dir: tempfile::TempDir,
}

/// The Python of `it/.venv` (py-eureka-client, nacos-sdk-python), `it/` built first if
/// it is not yet.
pub fn it_python() -> PathBuf {
    build_it();
    let python = it_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: make it with `bash it/build.sh` (.ci/run does)",
        python.display()
    );
    python
}

/// A script under `it/`.
pub fn it_file(path: &str) -> PathBuf {
    it_dir().join(path)
}

impl PyClient {
    pub fn start(eureka: &EurekaServer, app: &str, id: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let python = it_python();
        let port_file = dir.path().join("port");
        let log = dir.path().join("py.log");
        let mut child = Command::new(python)
            .arg(it_dir().join("py-client/backend.py"))
            .args(["--eureka", &format!("{}/", eureka.url())])
            .args(["--app", app, "--instance-id", id])
            .args(["--port", "0", "--port-file"])
            .arg(&port_file)
            .args([
                "--renewal",
                &RENEW_SECS.to_string(),
                "--duration",
                &LEASE_SECS.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start the py-eureka-client backend");
        let port = read_port_file(
            &port_file,
            &mut child,
            "py backend",
            Some(&log),
            Duration::from_secs(30),
        );
        PyClient {
            child,
            port,
            id: id.to_string(),
            dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// SIGTERM: py-eureka-client cancels its registration on the way out.
    pub fn stop(&mut self) {
        // SAFETY: a plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("py.log")).unwrap_or_default()
    }
}

impl Drop for PyClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain Spring Boot service with spring-cloud-starter-netflix-eureka-client and
/// `eureka.client.healthcheck.enabled=true` (`it/spring-client`).
pub struct SpringClient {
    pub app: SpringApp,
}

impl SpringClient {
    pub fn start(eureka: &EurekaServer, name: &str) -> Self {
        Self::start_with(eureka, name, &[])
    }

    /// Like [`SpringClient::start`], with more Spring properties (`--key=value`).
    pub fn start_with(eureka: &EurekaServer, name: &str, more: &[&str]) -> Self {
        let mut args = vec![
            format!("--spring.application.name={name}"),
            format!("--eureka.client.service-url.defaultZone={}/", eureka.url()),
        ];
        args.extend(more.iter().map(|a| a.to_string()));
        SpringClient {
            app: SpringApp::start("spring-client", args, 0),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.app.port))
    }

    /// Flips the app's own health indicator; the Eureka client reports it.
    pub fn set_healthy(&self, up: bool) {
        let (s, body) = request(
            self.addr(),
            "POST",
            &format!("/health-toggle?up={up}"),
            None,
        )
        .expect("health toggle");
        assert_eq!(s, 200, "{body}");
    }
}

impl SpringClient {
    /// Makes `/whoami` answer 503 (or 200 again) while the instance stays UP.
    pub fn set_failing(&self, fail: bool) {
        let (s, body) = request(
            self.addr(),
            "POST",
            &format!("/fail-toggle?fail={fail}"),
            None,
        )
        .expect("fail toggle");
        assert_eq!(s, 200, "{body}");
    }
}

/// Processes stopped (SIGSTOP) until this guard drops (SIGCONT): starved or
/// suspended pods, resumed even when the test fails.
pub struct Suspended(Vec<u32>);

impl Suspended {
    pub fn new(pids: &[u32]) -> Self {
        for &pid in pids {
            // SAFETY: plain kill(2) calls on our own children's pids.
            unsafe {
                libc::kill(pid as i32, libc::SIGSTOP);
            }
        }
        Suspended(pids.to_vec())
    }
}

impl Drop for Suspended {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // SAFETY: as above.
            unsafe {
                libc::kill(pid as i32, libc::SIGCONT);
            }
        }
    }
}

/// GET through the edge: who answered (the backend's first word and id), or the status.
pub fn who(proxy: SocketAddr, host: &str) -> Result<String, u16> {
    match http_get(proxy, host, "/whoami") {
        Ok((200, _, body)) => Ok(body.trim().to_string()),
        Ok((s, _, _)) => Err(s),
        Err(_) => Err(0),
    }
}
