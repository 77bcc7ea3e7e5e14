//! HTTPS at the edge with real clients: curl (HTTP/2 by ALPN, the chain, redirects) and
//! `openssl s_client` (SNI, ALPN, the served certificate) against certificates from a test
//! CA; TLS to instances that enable only their securePort, served by Python's own `ssl`
//! module; certificate files replaced and broken while xipgate runs.

mod common;
#[path = "common/pki.rs"]
mod pki;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use pki::{tls_yaml, Ca, Leaf};

const WILD: &str = "*.127-0-0-1.sslip.io";
const APEX: &str = "127-0-0-1.sslip.io";

/// curl over HTTPS to `host` (resolved to xipgate's HTTPS listener), trusting `ca`:
/// (exit code, body, "<http_version> <status>").
fn curl(x: &Xipgate, ca: &Path, host: &str, path: &str, args: &[&str]) -> (i32, String, String) {
    let port = x.https.port();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .args(["-w", "\n%{http_version} %{http_code}"])
        .args(args)
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .expect("run curl (Debian package curl)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        out.status.code().unwrap_or(-1),
        body.to_string(),
        format!("{}{}", status, String::from_utf8_lossy(&out.stderr)),
    )
}

/// What `openssl s_client` says about a handshake with this SNI, and the served
/// certificate's subject and serial (from `openssl x509`).
fn handshake(addr: std::net::SocketAddr, sni: &str, ca: &Path) -> (String, String) {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            sni,
        ])
        .args(["-alpn", "h2,http/1.1", "-CAfile"])
        .arg(ca)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl (Debian package openssl)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let pem_start = text.find("-----BEGIN CERTIFICATE-----");
    let pem_end = text.find("-----END CERTIFICATE-----");
    let cert = match (pem_start, pem_end) {
        (Some(a), Some(b)) => &text[a..b + "-----END CERTIFICATE-----".len()],
        _ => return (text, String::new()),
    };
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl x509");
    use std::io::Write;
    x509.stdin
        .take()
        .expect("stdin")
        .write_all(cert.as_bytes())
        .expect("write cert");
    let info = x509.wait_with_output().expect("openssl x509 output");
    (text, String::from_utf8_lossy(&info.stdout).to_string())
}

fn eventually_served(x: &Xipgate, sni: &str, ca: &Path, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, info) = handshake(x.https, sni, ca);
        if want(&info) {
            return info;
        }
        assert!(
            Instant::now() < deadline,
            "the served certificate never became what was expected: {info}\n{}",
            x.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_by_sni_with_h2_and_reloads_changed_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(dir.path(), "edge-ca");
    let edge = ca.leaf(dir.path(), "edge", &[WILD, APEX], 1);
    let other = ca.leaf(dir.path(), "other", &["*.other.test"], 2);
    let backend = Backend::start("a").await;
    let eureka = StubEureka::start().await;
    let inst = Inst::up("order-service", "order-1", backend.addr);
    eureka.serve(std::slice::from_ref(&inst)).await;
    let x = Xipgate::start(&eureka.url(), &tls_yaml(&[&edge, &other], ""));

    // HTTP/2 by ALPN, verified against the CA, the client's scheme passed on.
    let host = format!("{}.{DOMAIN}", inst.label());
    let (code, body, status) = curl(&x, &ca.file, &host, "/h2?x=1", &["--http2"]);
    assert_eq!((code, status.as_str()), (0, "2 200"), "{body}\n{}", x.log());
    let v: serde_json::Value = serde_json::from_str(&body).expect("backend json");
    assert_eq!(v["backend"], "a");
    assert_eq!(v["xfp"], "https", "X-Forwarded-Proto on a TLS connection");
    // HTTP/2's :authority becomes the Host the backend sees, port included.
    assert_eq!(v["host"], format!("{host}:{}", x.https.port()));
    // HTTP/1.1 over TLS too, and the service host. It takes the fast path (which, unlike
    // Pingora's engine, adds no Date header), with the same forwarded headers.
    let (code, body, status) = curl(
        &x,
        &ca.file,
        "order-service.127-0-0-1.sslip.io",
        "/h1",
        &["--http1.1", "-i"],
    );
    assert_eq!((code, status.as_str()), (0, "1.1 200"), "{body}");
    let (head, json) = body.split_once("\r\n\r\n").expect("head and body");
    assert!(!head.to_ascii_lowercase().contains("\ndate:"), "{head}");
    let v: serde_json::Value = serde_json::from_str(json).expect("backend json");
    assert_eq!(v["xfp"], "https", "{json}");
    assert_eq!(v["xfport"], x.https.port().to_string());
    // A request the fast path leaves to Pingora (a body) after it has read the head: the
    // bytes are put back in front of the TLS stream, and Pingora serves it with a Date.
    let (code, body, status) = curl(
        &x,
        &ca.file,
        "order-service.127-0-0-1.sslip.io",
        "/posted",
        &["--http1.1", "-i", "--data", "a=1"],
    );
    assert_eq!((code, status.as_str()), (0, "1.1 200"), "{body}");
    assert!(
        body.to_ascii_lowercase().contains("\ndate:"),
        "Pingora's engine: {body}"
    );
    assert!(body.contains("POST /posted HTTP/1.1"), "{body}");

    // SNI chooses the certificate; the chain verifies; ALPN offers h2.
    let (text, info) = handshake(x.https, "a.other.test", &ca.file);
    assert!(
        info.contains("CN = *.other.test") || info.contains("CN=*.other.test"),
        "{info}"
    );
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    assert!(text.contains("ALPN protocol: h2"), "{text}");
    let (_, info) = handshake(x.https, &host, &ca.file);
    assert!(info.contains("127-0-0-1.sslip.io"), "{info}");
    let first_serial = info
        .lines()
        .find(|l| l.starts_with("serial="))
        .expect("serial")
        .to_string();

    // The console through the HTTPS listener.
    let (status, body) = x.api("/api/v1/tls");
    assert_eq!(status, 200);
    assert_eq!(
        body["certificates"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
    assert!(
        body["certificates"][0]["seconds_left"]
            .as_i64()
            .unwrap_or(0)
            > 86_400
    );

    // A renewed certificate (cert-manager rewrites the Secret) is served without a restart.
    ca.leaf(dir.path(), "edge", &[WILD, APEX], 4242);
    let renewed = eventually_served(&x, &host, &ca.file, |i| {
        i.contains("serial=") && !i.contains(&first_serial)
    });
    // A broken file keeps the last good certificate, and says why.
    std::fs::write(&edge.cert, "not a certificate").expect("break cert");
    let deadline = Instant::now() + Duration::from_secs(10);
    let error = loop {
        let (_, body) = x.api("/api/v1/tls");
        if let Some(e) = body["certificates"][0]["error"].as_str() {
            break e.to_string();
        }
        assert!(Instant::now() < deadline, "no error shown: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        error.contains("edge.crt") && error.contains("no PEM certificate"),
        "{error}"
    );
    let (_, still) = handshake(x.https, &host, &ca.file);
    assert_eq!(still, renewed, "the last good certificate is still served");
    let (_, _, page) = http_get(x.console, "localhost", "/").expect("console page");
    assert!(
        page.contains("edge.crt") && page.contains("still serving the one loaded before"),
        "the console says so"
    );
    let metrics = x.api("/metrics").1.as_str().unwrap_or_default().to_string();
    assert!(
        metrics.contains("xipgate_tls_certificate_expiry_seconds{name=\"*.127-0-0-1.sslip.io\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_redirected_to_https_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(dir.path(), "edge-ca");
    let edge = ca.leaf(dir.path(), "edge", &[WILD, APEX], 1);
    let backend = Backend::start("a").await;
    let eureka = StubEureka::start().await;
    let inst = Inst::up("order-service", "order-1", backend.addr);
    eureka.serve(std::slice::from_ref(&inst)).await;
    let x = Xipgate::start(
        &eureka.url(),
        &tls_yaml(&[&edge], "    redirect_http: true\n    public_port: 443\n"),
    );
    let host = format!("{}.{DOMAIN}", inst.label());
    let (status, headers, body) =
        http_get(x.proxy, &format!("{host}:8080"), "/a/b?c=1").expect("plain request");
    assert_eq!(status, 308, "{body}");
    let location = headers
        .iter()
        .find(|(k, _)| k == "location")
        .map(|(_, v)| v.as_str());
    assert_eq!(location, Some(format!("https://{host}/a/b?c=1").as_str()));
    assert_eq!(
        backend.hits(),
        0,
        "nothing reaches the backend in clear text"
    );
    let (code, _, status) = curl(&x, &ca.file, &host, "/", &[]);
    assert_eq!((code, status.as_str()), (0, "2 200"));
}

#[test]
fn a_bad_or_unreadable_pem_file_is_a_config_error_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(dir.path(), "edge-ca");
    let good = ca.leaf(dir.path(), "good", &[APEX], 1);
    let other = ca.leaf(dir.path(), "other", &["other.test"], 2);
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnope\n").expect("write");
    let missing = dir.path().join("missing.pem");
    let cases: [(&Path, &Path, &str); 4] = [
        (&garbage, &good.key, "xipgate.tls.certificates[0].cert: "),
        (
            &good.cert,
            &missing,
            "xipgate.tls.certificates[0].key: cannot read",
        ),
        (&good.cert, &garbage, "xipgate.tls.certificates[0].key: "),
        // The pair is wrong, not one file: the entry is named.
        (
            &good.cert,
            &other.key,
            "xipgate.tls.certificates[0]: the key in ",
        ),
    ];
    for (cert, key, want) in cases {
        let cfg = dir.path().join("x.yaml");
        std::fs::write(
            &cfg,
            format!(
                "version: 1\nxipgate:\n  tls:\n    listen: [\"127.0.0.1:0\"]\n    certificates:\n      - cert: {}\n        key: {}\n",
                cert.display(),
                key.display()
            ),
        )
        .expect("write config");
        let out = Command::new(env!("CARGO_BIN_EXE_xipgate"))
            .arg("-t")
            .arg("-c")
            .arg(&cfg)
            .output()
            .expect("run xipgate -t");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(want), "wanted {want:?} in:\n{err}");
    }
}

/// An HTTPS backend: Python's http.server wrapped by its own `ssl` module.
struct PyTls {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl Drop for PyTls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PY_TLS: &str = r#"
import http.server, json, os, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"backend": "py-tls", "path": self.path,
                           "host": self.headers.get("host")}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
tmp = sys.argv[3] + ".tmp"
open(tmp, "w").write(str(srv.server_address[1]))
os.rename(tmp, sys.argv[3])
srv.serve_forever()
"#;

impl PyTls {
    fn start(leaf: &Leaf, dir: &Path) -> Self {
        let port_file: PathBuf = dir.join("py-tls.port");
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(PY_TLS)
            .arg(&leaf.cert)
            .arg(&leaf.key)
            .arg(&port_file)
            .spawn()
            .expect("run python3");
        // The port file appears (renamed into place) once it listens.
        let port = common::real::read_port_file(
            &port_file,
            &mut child,
            "the Python TLS backend",
            None,
            Duration::from_secs(10),
        );
        PyTls {
            child,
            addr: ([127, 0, 0, 1], port).into(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_with_only_a_secure_port_are_proxied_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(dir.path(), "cluster-ca");
    // The instance's hostName is its pod name: the name verified by default.
    let leaf = ca.leaf(dir.path(), "pod", &["tls-pod"], 7);
    let py = PyTls::start(&leaf, dir.path());
    let eureka = StubEureka::start().await;
    let inst = Inst::up("secure-svc", "tls-pod", py.addr).secure_only();
    eureka.serve(std::slice::from_ref(&inst)).await;

    let with_ca = format!(
        "  upstream:\n    tls:\n      ca_file: {}\n",
        ca.file.display()
    );
    let x = Xipgate::start(&eureka.url(), &with_ca);
    let (status, _, body) = x.get(&inst.label(), "/over-tls");
    assert_eq!(status, 200, "{body}\n{}", x.log());
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["backend"], "py-tls");
    assert_eq!(v["path"], "/over-tls");
    let (status, _, _) = x.get("secure-svc", "/");
    assert_eq!(status, 200, "the service host too");
    drop(x);

    // Without the cluster's CA the instance's certificate is not trusted: 502, saying
    // what failed and the setting that changes it.
    let x = Xipgate::start(&eureka.url(), "");
    let (status, _, body) = x.get(&inst.label(), "/");
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("not signed by a CA xipgate trusts")
            && body.contains("xipgate.upstream.tls.ca_file"),
        "{body}"
    );
    drop(x);

    // A name the certificate does not carry.
    let x = Xipgate::start(
        &eureka.url(),
        &format!("{with_ca}      server_name: elsewhere.test\n"),
    );
    let (status, _, body) = x.get(&inst.label(), "/");
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("does not name 'elsewhere.test'") && body.contains("server_name"),
        "{body}"
    );
    drop(x);

    // An expired certificate, from the right CA, with the right name.
    let old = ca.expired_leaf(dir.path(), "old-pod", &["old-pod"], 8);
    let old_dir = dir.path().join("old");
    std::fs::create_dir(&old_dir).expect("mkdir");
    let py_old = PyTls::start(&old, &old_dir);
    let expired = Inst::up("secure-svc", "old-pod", py_old.addr).secure_only();
    eureka.serve(&[inst.clone(), expired.clone()]).await;
    let x = Xipgate::start(&eureka.url(), &with_ca);
    let (status, _, body) = x.get(&expired.label(), "/");
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("has expired"), "{body}");
    drop(x);

    // verify: false accepts it (in-cluster self-signed certificates).
    let x = Xipgate::start(
        &eureka.url(),
        "  upstream:\n    tls:\n      verify: false\n",
    );
    let (status, _, body) = x.get(&inst.label(), "/");
    assert_eq!(status, 200, "{body}");
    assert_eq!(x.api("/api/v1/tls").1["upstream_verify"], false);
    let (_, _, page) = http_get(x.console, "localhost", "/").expect("console page");
    assert!(
        page.contains("TLS to instances is not verified"),
        "the console says so"
    );
}
