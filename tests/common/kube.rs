//! A real Kubernetes API server for the tests: Debian's etcd (`/usr/bin/etcd`, package
//! `etcd-server`) and `kube-apiserver` v1.37.2 (built once by `it/kube/build.sh` into
//! `~/.cache/xipgate/kube/<version>/`), both on loopback ports chosen at run time, both
//! installed by `./dev deps`. No controller-manager runs: tests write EndpointSlices
//! themselves, as the EndpointSlice controller would ([`objects`]).
//!
//! The API server serves HTTPS with a certificate from a CA of the test's own
//! ([`KubeApi::ca_file`], what xipgate is given as its CA file), authenticates an admin
//! token (group `system:masters`) from a token file, authorizes with RBAC only, and signs
//! service-account tokens, so [`KubeApi::service_account_token`] hands out a real token
//! bound to exactly the rules a test gives.
//!
//! Everything is async (reqwest); build the runtime after `netns::enter()` when the test
//! needs pod addresses (see `netns.rs`). Logs stay in [`KubeApi::dir`] and are printed
//! when the test panics.

#![allow(dead_code)]

#[path = "kube_objects.rs"]
pub mod objects;
#[path = "kube_watch.rs"]
pub mod watch;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use reqwest::Method;
use serde_json::{json, Value};

pub use objects::*;
#[allow(unused_imports)]
pub use watch::{Event, Watch};

/// The pinned API server version (the one `it/kube/build.sh` builds).
pub const KUBE_VERSION: &str = "v1.37.2";
/// Debian's etcd server (package `etcd-server`).
pub const ETCD: &str = "/usr/bin/etcd";
/// The admin's token (user `admin`, group `system:masters`).
pub const ADMIN_TOKEN: &str = "xipgate-test-admin-token";
/// Service-account tokens are issued by, and meant for, this.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The Service cluster-IP range.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// How long etcd and the API server may take to become ready (3-4 s on a quiet machine).
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How many times a start is tried again after a port chosen for it was taken meanwhile.
const STARTS: usize = 3;

/// The `kube-apiserver` binary, or a panic saying how to get it.
pub fn apiserver_binary() -> PathBuf {
    let cache = std::env::var_os("XIPGATE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default()
                .join(".cache/xipgate")
        });
    let bin = cache.join("kube").join(KUBE_VERSION).join("kube-apiserver");
    assert!(
        bin.is_file(),
        "the Kubernetes tests need kube-apiserver {KUBE_VERSION} at {}: run `./dev deps` (it runs it/kube/build.sh)",
        bin.display()
    );
    bin
}

fn etcd_binary() -> PathBuf {
    let bin = PathBuf::from(ETCD);
    assert!(
        bin.is_file(),
        "the Kubernetes tests need etcd at {ETCD}: run `./dev deps` (it installs Debian's etcd-server)"
    );
    bin
}

/// An answer of the API server: status, body as JSON (`Null` when it is not JSON), bytes.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub raw: Vec<u8>,
}

/// A service-account token from the TokenRequest API, also written to `file`.
#[derive(Clone, Debug)]
pub struct SaToken {
    pub token: String,
    pub file: PathBuf,
}

pub struct KubeApi {
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    pub addr: SocketAddr,
    /// The CA that signed the serving certificate (PEM), for xipgate's CA file.
    pub ca_file: PathBuf,
    pub ca_pem: String,
    pub admin_token: String,
    /// The admin token in a file, for xipgate's token file.
    pub admin_token_file: PathBuf,
    /// Holds the certificates, the token file, etcd's data and both logs.
    dir: Option<tempfile::TempDir>,
    etcd: Child,
    etcd_client: SocketAddr,
    apiserver: Option<Child>,
    extra_args: Vec<String>,
    http: reqwest::Client,
}

impl KubeApi {
    /// Starts etcd and the API server and waits until `/readyz` answers 200.
    pub async fn start() -> KubeApi {
        Self::start_with(&[]).await
    }

    /// Like [`KubeApi::start`], with extra `kube-apiserver` flags (e.g.
    /// `--etcd-compaction-interval=10s`).
    pub async fn start_with(extra_args: &[&str]) -> KubeApi {
        let apiserver = apiserver_binary();
        let etcd = etcd_binary();
        let dir = tempfile::Builder::new()
            .prefix("kube-")
            .tempdir()
            .expect("tempdir");
        let ca_pem = write_certificates(dir.path());
        std::fs::write(
            dir.path().join("tokens.csv"),
            format!("{ADMIN_TOKEN},admin,admin-uid,\"system:masters\"\n"),
        )
        .expect("token file");
        let admin_token_file = dir.path().join("admin.token");
        std::fs::write(&admin_token_file, ADMIN_TOKEN).expect("admin token file");
        let (etcd_child, etcd_client) = start_etcd(&etcd, dir.path()).await;
        let http = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA certificate"),
            )
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("https client");
        let mut kube = KubeApi {
            url: String::new(),
            addr: ([127, 0, 0, 1], 0).into(),
            ca_file: dir.path().join("ca.pem"),
            ca_pem,
            admin_token: ADMIN_TOKEN.to_string(),
            admin_token_file,
            dir: Some(dir),
            etcd: etcd_child,
            etcd_client,
            apiserver: None,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            http,
        };
        let mut failures = Vec::new();
        for _ in 0..STARTS {
            kube.addr = ([127, 0, 0, 1], crate::common::free_port()).into();
            kube.url = format!("https://{}", kube.addr);
            match kube.launch_apiserver(&apiserver).await {
                Ok(()) => return kube,
                Err(e) => failures.push(e),
            }
        }
        panic!(
            "kube-apiserver did not start:\n{}\n--- kube-apiserver log ---\n{}\n--- etcd log ---\n{}",
            failures.join("\n"),
            tail(&kube.apiserver_log(), 60),
            tail(&kube.etcd_log(), 30)
        );
    }

    /// The directory with the certificates, tokens, etcd's data and the logs.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("kube dir").path()
    }

    pub fn apiserver_log(&self) -> String {
        std::fs::read_to_string(self.dir().join("kube-apiserver.log")).unwrap_or_default()
    }

    pub fn etcd_log(&self) -> String {
        std::fs::read_to_string(self.dir().join("etcd.log")).unwrap_or_default()
    }

    /// etcd's client URL (`http://127.0.0.1:<port>`).
    pub fn etcd_url(&self) -> String {
        format!("http://{}", self.etcd_client)
    }

    /// Stops the API server (SIGKILL: watches are cut, nothing answers on its port);
    /// etcd keeps running with everything written so far.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.apiserver.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the API server again on the same port with the same etcd, after [`stop`],
    /// and waits until it is ready.
    ///
    /// [`stop`]: KubeApi::stop
    pub async fn start_again(&mut self) {
        assert!(self.apiserver.is_none(), "the API server is running");
        let bin = apiserver_binary();
        if let Err(e) = self.launch_apiserver(&bin).await {
            panic!(
                "kube-apiserver did not start again on {}: {e}\n{}",
                self.addr,
                tail(&self.apiserver_log(), 60)
            );
        }
    }

    /// Stops and starts the API server: every open watch is cut. Its watch cache starts
    /// again from etcd's current revision, so a watch resumed from a resourceVersion
    /// older than that (anything before a write made since) meets `410 Expired`.
    pub async fn restart(&mut self) {
        self.stop();
        self.start_again().await;
    }

    /// etcd's current revision (what resourceVersions count).
    pub async fn etcd_revision(&self) -> u64 {
        let key = base64::engine::general_purpose::STANDARD.encode("/");
        let v = self
            .etcd_post("/v3/kv/range", &json!({"key": key, "count_only": true}))
            .await;
        v["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("etcd range answer without a revision: {v}"))
    }

    /// Compacts etcd at its current revision (through its v3 HTTP gateway) and returns
    /// it: every older revision is gone from etcd. The API server's watch cache still
    /// serves watches from what it holds; [`KubeApi::expire_resource_versions`] expires
    /// those too.
    pub async fn compact(&self) -> u64 {
        let revision = self.etcd_revision().await;
        self.etcd_post(
            "/v3/kv/compaction",
            &json!({"revision": revision.to_string(), "physical": true}),
        )
        .await;
        revision
    }

    /// Makes every resourceVersion handed out so far expire, as a long outage or a
    /// compaction does in a real cluster: a write (so there is a newer revision), an etcd
    /// compaction and an API server restart (its watch cache keeps a window of events
    /// from its start). Open watches are cut; a watch or list resumed from an older
    /// resourceVersion meets `410 Gone` (`reason: Expired`).
    pub async fn expire_resource_versions(&mut self) {
        let cm = "/api/v1/namespaces/default/configmaps";
        let name = format!("expire-{}", self.etcd_revision().await);
        self.create(cm, &json!({"metadata": {"name": name}, "data": {}}))
            .await;
        self.compact().await;
        self.restart().await;
    }

    async fn etcd_post(&self, path: &str, body: &Value) -> Value {
        let url = format!("{}{path}", self.etcd_url());
        let resp = self
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("etcd {url}: {e}"));
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "etcd {url}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn launch_apiserver(&mut self, bin: &Path) -> Result<(), String> {
        let d = self.dir().to_path_buf();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("kube-apiserver.log"))
            .expect("apiserver log");
        let _ = writeln!(log, "=== kube-apiserver on {} ===", self.addr);
        let p = |f: &str| d.join(f).display().to_string();
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--etcd-servers={}", self.etcd_url()))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={}", self.addr.port()))
            .arg("--advertise-address=127.0.0.1")
            // No reconciler for the `kubernetes` Service's endpoints: it refuses loopback.
            .arg("--endpoint-reconciler-type=none")
            .arg(format!("--cert-dir={}", p("certs")))
            .arg(format!("--tls-cert-file={}", p("apiserver.crt")))
            .arg(format!("--tls-private-key-file={}", p("apiserver.key")))
            .arg(format!("--token-auth-file={}", p("tokens.csv")))
            .arg("--authorization-mode=RBAC")
            .arg(format!("--service-account-issuer={ISSUER}"))
            .arg(format!("--service-account-key-file={}", p("sa.pub")))
            .arg(format!(
                "--service-account-signing-key-file={}",
                p("sa.key")
            ))
            .arg(format!("--api-audiences={ISSUER}"))
            .arg(format!("--service-cluster-ip-range={SERVICE_CIDR}"))
            .arg("--profiling=false")
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        self.apiserver = Some(child);
        let started = Instant::now();
        let deadline = started + READY_WITHIN;
        let url = format!("{}/readyz", self.url);
        loop {
            if let Some(Ok(Some(status))) = self.apiserver.as_mut().map(|c| c.try_wait()) {
                self.apiserver = None;
                return Err(format!("kube-apiserver exited ({status})"));
            }
            if let Ok(r) = self
                .http
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                if r.status() == 200 {
                    eprintln!(
                        "kube-apiserver ready on {} in {:?}",
                        self.addr,
                        started.elapsed()
                    );
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!("{url} did not answer 200 in {READY_WITHIN:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Any request with `token` (`None`: the admin's): status, JSON body, bytes.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Answer {
        let url = format!("{}{path}", self.url);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(token.unwrap_or(&self.admin_token))
            .header("Accept", "application/json")
            .timeout(Duration::from_secs(30));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let raw = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        Answer {
            status,
            body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
            raw,
        }
    }

    async fn expect(&self, method: Method, path: &str, body: Option<&Value>, ok: &[u16]) -> Value {
        let a = self.call(method.clone(), path, body, None).await;
        assert!(
            ok.contains(&a.status),
            "{method} {path}: {} {}",
            a.status,
            String::from_utf8_lossy(&a.raw)
        );
        a.body
    }

    /// GET as the admin; panics unless 200.
    pub async fn get(&self, path: &str) -> Value {
        self.expect(Method::GET, path, None, &[200]).await
    }

    /// POST `body` to the collection `path` as the admin; returns the created object.
    pub async fn create(&self, path: &str, body: &Value) -> Value {
        self.expect(Method::POST, path, Some(body), &[200, 201])
            .await
    }

    /// PUT `body` at the object `path` as the admin (with `metadata.resourceVersion`
    /// it is a compare-and-swap: a stale one is a 409).
    pub async fn replace(&self, path: &str, body: &Value) -> Value {
        self.expect(Method::PUT, path, Some(body), &[200, 201])
            .await
    }

    /// DELETE the object `path` as the admin.
    pub async fn delete(&self, path: &str) -> Value {
        self.expect(Method::DELETE, path, None, &[200, 202]).await
    }

    /// Opens a watch (`path` with its query, e.g.
    /// `/apis/discovery.k8s.io/v1/namespaces/a/endpointslices?watch=1&resourceVersion=5`)
    /// with `token` (`None`: the admin's). With `allowWatchBookmarks=true` the server
    /// sends a BOOKMARK 2 s before `timeoutSeconds` runs out, otherwise about once a
    /// minute. Give it a list's `resourceVersion`: the server turns a watch with none
    /// (or `0`) into a watch-list (`sendInitialEvents=true`), which, with bookmarks
    /// allowed, it refuses on this etcd (3.4.23 < 3.4.31, no RequestWatchProgress) with
    /// an ERROR event (500, "the required storage feature RequestWatchProgress is
    /// disabled"); clusters on etcd 3.5.13+ serve it.
    pub async fn watch(&self, path: &str, token: Option<&str>) -> Watch {
        let url = format!("{}{path}", self.url);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(token.unwrap_or(&self.admin_token))
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap_or_else(|e| panic!("watch {url}: {e}"));
        Watch::new(resp)
    }

    /// Creates the namespace `name`.
    pub async fn create_namespace(&self, name: &str) -> Value {
        self.create(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        )
        .await
    }

    /// Creates `service(ns, name, ports)` and returns it as stored (with its uid and
    /// cluster IP).
    pub async fn create_service(&self, ns: &str, name: &str, ports: &[(&str, u16)]) -> Value {
        self.create(
            &format!("/api/v1/namespaces/{ns}/services"),
            &service(ns, name, ports),
        )
        .await
    }

    /// Creates or replaces an EndpointSlice made by [`endpoint_slice`].
    pub async fn put_endpoint_slice(&self, slice: &Value) -> Value {
        let ns = slice["metadata"]["namespace"].as_str().expect("namespace");
        let name = slice["metadata"]["name"].as_str().expect("name");
        let coll = format!("/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices");
        let a = self
            .call(Method::GET, &format!("{coll}/{name}"), None, None)
            .await;
        if a.status == 404 {
            return self.create(&coll, slice).await;
        }
        let mut slice = slice.clone();
        slice["metadata"]["resourceVersion"] = a.body["metadata"]["resourceVersion"].clone();
        self.replace(&format!("{coll}/{name}"), &slice).await
    }

    /// A ServiceAccount `ns/name` allowed `rules` (PolicyRules, a JSON array) in `ns`
    /// only (a Role and a RoleBinding named after it), and a token for it.
    pub async fn service_account_token(&self, ns: &str, name: &str, rules: &Value) -> SaToken {
        self.create_service_account(ns, name).await;
        self.grant(ns, ns, name, rules).await;
        self.token_for(ns, name).await
    }

    /// Like [`KubeApi::service_account_token`], with `rules` in every namespace (a
    /// ClusterRole and a ClusterRoleBinding named `<ns>-<name>`).
    pub async fn cluster_service_account_token(
        &self,
        ns: &str,
        name: &str,
        rules: &Value,
    ) -> SaToken {
        self.create_service_account(ns, name).await;
        let role = format!("{ns}-{name}");
        let rbac = "/apis/rbac.authorization.k8s.io/v1";
        self.create(&format!("{rbac}/clusterroles"), &cluster_role(&role, rules))
            .await;
        self.create(
            &format!("{rbac}/clusterrolebindings"),
            &cluster_role_binding(&role, ns, name),
        )
        .await;
        self.wait_allowed(ns, name, None, rules).await;
        self.token_for(ns, name).await
    }

    /// Creates the ServiceAccount `ns/name`.
    pub async fn create_service_account(&self, ns: &str, name: &str) -> Value {
        self.create(
            &format!("/api/v1/namespaces/{ns}/serviceaccounts"),
            &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}),
        )
        .await
    }

    /// Allows the ServiceAccount `sa_ns/sa_name` `rules` in `role_ns` (a Role and a
    /// RoleBinding named `<sa_ns>-<sa_name>` there), and waits until the authorizer
    /// says so. A test narrows a grant with [`KubeApi::replace`] on the Role.
    pub async fn grant(&self, role_ns: &str, sa_ns: &str, sa_name: &str, rules: &Value) {
        let role = format!("{sa_ns}-{sa_name}");
        let rbac = format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{role_ns}");
        self.create(&format!("{rbac}/roles"), &role_json(&role, rules))
            .await;
        self.create(
            &format!("{rbac}/rolebindings"),
            &role_binding(&role, sa_ns, sa_name),
        )
        .await;
        self.wait_allowed(sa_ns, sa_name, Some(role_ns), rules)
            .await;
    }

    /// A token for the ServiceAccount `ns/name` from the TokenRequest API (valid a day),
    /// written to `<dir>/tokens/<ns>-<name>.token`.
    pub async fn token_for(&self, ns: &str, name: &str) -> SaToken {
        let v = self
            .create(
                &format!("/api/v1/namespaces/{ns}/serviceaccounts/{name}/token"),
                &json!({
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenRequest",
                    "spec": {"expirationSeconds": 86400}
                }),
            )
            .await;
        let token = v["status"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("TokenRequest answer without a token: {v}"))
            .to_string();
        let dir = self.dir().join("tokens");
        std::fs::create_dir_all(&dir).expect("tokens dir");
        let file = dir.join(format!("{ns}-{name}.token"));
        std::fs::write(&file, &token).expect("token file");
        SaToken { token, file }
    }

    /// Polls SubjectAccessReviews until every resource and verb of `rules` is allowed to
    /// the ServiceAccount (RBAC reads its objects through informers: a binding takes a
    /// moment to count).
    async fn wait_allowed(&self, sa_ns: &str, sa_name: &str, ns: Option<&str>, rules: &Value) {
        let user = format!("system:serviceaccount:{sa_ns}:{sa_name}");
        let groups = [
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{sa_ns}"),
            "system:authenticated".to_string(),
        ];
        let mut reviews = Vec::new();
        for rule in rules.as_array().into_iter().flatten() {
            let strs = |k: &str| -> Vec<String> {
                rule[k]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            };
            let group = strs("apiGroups").first().cloned().unwrap_or_default();
            let names = strs("resourceNames");
            for resource in strs("resources") {
                for verb in strs("verbs") {
                    let mut attrs = json!({"group": group, "resource": resource, "verb": verb});
                    if let Some(ns) = ns {
                        attrs["namespace"] = json!(ns);
                    }
                    if let Some(n) = names.first() {
                        attrs["name"] = json!(n);
                    }
                    reviews.push(json!({
                        "apiVersion": "authorization.k8s.io/v1",
                        "kind": "SubjectAccessReview",
                        "spec": {"user": user, "groups": groups, "resourceAttributes": attrs}
                    }));
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for review in reviews {
            loop {
                let v = self
                    .create(
                        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                        &review,
                    )
                    .await;
                if v["status"]["allowed"] == json!(true) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "RBAC did not allow {user}: {}",
                    review["spec"]["resourceAttributes"]
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.stop();
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- kube-apiserver log (tail) ---\n{}\n--- etcd log (tail) ---\n{}",
                tail(&self.apiserver_log(), 80),
                tail(&self.etcd_log(), 30)
            );
            if let Some(dir) = self.dir.take() {
                eprintln!("kube test files kept in {}", dir.keep().display());
            }
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Starts etcd on free loopback ports in `<dir>/etcd` and waits for its `/health`.
async fn start_etcd(bin: &Path, dir: &Path) -> (Child, SocketAddr) {
    let mut failures = Vec::new();
    let log_path = dir.join("etcd.log");
    let http = reqwest::Client::new();
    for attempt in 0..STARTS {
        let client: SocketAddr = ([127, 0, 0, 1], crate::common::free_port()).into();
        let peer: SocketAddr = ([127, 0, 0, 1], crate::common::free_port()).into();
        let data = dir.join(format!("etcd-{attempt}"));
        let log = File::create(&log_path).expect("etcd log");
        let mut child = Command::new(bin)
            .arg("--name=test")
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls=http://{client}"))
            .arg(format!("--advertise-client-urls=http://{client}"))
            .arg(format!("--listen-peer-urls=http://{peer}"))
            .arg(format!("--initial-advertise-peer-urls=http://{peer}"))
            .arg(format!("--initial-cluster=test=http://{peer}"))
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let deadline = Instant::now() + READY_WITHIN;
        let ready = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break Err(format!("etcd exited ({status})"));
            }
            if let Ok(r) = http
                .get(format!("http://{client}/health"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                if r.text().await.is_ok_and(|t| t.contains("\"true\"")) {
                    break Ok(());
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("etcd /health not true in {READY_WITHIN:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        match ready {
            Ok(()) => return (child, client),
            Err(e) => failures.push(format!(
                "{e}\n{}",
                tail(&std::fs::read_to_string(&log_path).unwrap_or_default(), 20)
            )),
        }
    }
    panic!("etcd did not start:\n{}", failures.join("\n---\n"));
}

/// A CA, the API server's serving certificate (127.0.0.1, localhost and the in-cluster
/// names) and the service-account signing key, written into `dir`; returns the CA PEM.
fn write_certificates(dir: &Path) -> String {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.distinguished_name
        .push(DnType::CommonName, "xipgate-test-kube-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca, ca_key);
    let names: Vec<String> = [
        "127.0.0.1",
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "10.96.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let key = KeyPair::generate().expect("serving key");
    let mut leaf = CertificateParams::new(names).expect("serving params");
    leaf.distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &issuer).expect("serving certificate");
    let sa = KeyPair::generate().expect("service-account key");
    for (file, text) in [
        ("ca.pem", ca_pem.clone()),
        ("apiserver.crt", format!("{}{ca_pem}", cert.pem())),
        ("apiserver.key", key.serialize_pem()),
        ("sa.key", sa.serialize_pem()),
        ("sa.pub", sa.public_key_pem()),
    ] {
        std::fs::write(dir.join(file), text).expect("write certificate");
    }
    ca_pem
}
