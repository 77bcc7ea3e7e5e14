//! A small WebDriver client for the browser tests: headless Chromium driven by
//! chromedriver over the W3C WebDriver protocol (JSON over HTTP, spoken with reqwest).
//!
//! Chromium and chromedriver come from Debian's `chromium` and `chromium-driver`
//! packages; `CHROME_BIN` and `CHROMEDRIVER` point elsewhere. When either is missing the
//! test fails with the command that installs them: a browser test never skips silently.

#![allow(dead_code)]

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The key W3C WebDriver wraps element references in.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_program(env: &str, names: &[&str], extra_dirs: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env)
        .map(PathBuf::from)
        .filter(|p| p.is_file())
    {
        return Some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(extra_dirs.iter().map(PathBuf::from))
        .collect();
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    super::common::free_port()
}

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session with `extra`
    /// command-line switches (e.g. `--host-resolver-rules=...`).
    pub async fn start(extra: &[&str]) -> Browser {
        Self::launch(extra, None).await
    }

    /// Like [`Browser::start`], with `HOME` (and the XDG dirs) set to `home` for
    /// chromedriver and so for Chromium: Chromium on Linux reads the user's certificate
    /// trust from `$HOME/.pki/nssdb` (see [`nss_home_trusting`]).
    pub async fn start_with_home(extra: &[&str], home: &Path) -> Browser {
        Self::launch(extra, Some(home)).await
    }

    async fn launch(extra: &[&str], home: Option<&Path>) -> Browser {
        const INSTALL: &str =
            "install them with: apt-get update && apt-get install -y chromium chromium-driver \
                               (or point CHROME_BIN and CHROMEDRIVER at them)";
        let chrome = find_program(
            "CHROME_BIN",
            &["chromium", "chromium-browser", "google-chrome"],
            &[],
        )
        .unwrap_or_else(|| {
            panic!("the browser test needs Chromium, which is not installed: {INSTALL}")
        });
        let driver_bin = find_program("CHROMEDRIVER", &["chromedriver"], &["/usr/lib/chromium"])
            .unwrap_or_else(|| {
                panic!("the browser test needs chromedriver, which is not installed: {INSTALL}")
            });
        let port = free_port();
        let mut cmd = Command::new(&driver_bin);
        cmd.arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(home) = home {
            cmd.env("HOME", home)
                .env("XDG_CONFIG_HOME", home.join(".config"))
                .env("XDG_CACHE_HOME", home.join(".cache"))
                .env("XDG_DATA_HOME", home.join(".local/share"));
        }
        let driver = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver_bin.display()));
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut b = Browser {
            driver,
            base,
            session: String::new(),
            http,
            _profile: profile,
        };

        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = b.http.get(format!("{}/status", b.base)).send().await;
            if let Ok(r) = ready {
                if r.json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true)
                {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver ({}) did not become ready in 20 s",
                driver_bin.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--no-proxy-server",
            "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable",
            "--window-size=1440,1000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", b._profile.path().display()));
        args.extend(extra.iter().map(|s| s.to_string()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chrome.to_string_lossy(), "args": args}
        }}});
        let v = b.call(reqwest::Method::POST, "/session", Some(caps)).await;
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        b
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            req = req.json(&body);
        } else if method == reqwest::Method::POST {
            req = req.json(&json!({}));
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "WebDriver {method} {path}: HTTP {status}: {v}"
        );
        v["value"].clone()
    }

    async fn session_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    pub async fn goto(&self, url: &str) {
        self.session_call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Navigates like [`Browser::goto`], but a failed navigation (chromedriver reports
    /// e.g. `net::ERR_CERT_AUTHORITY_INVALID`) is returned instead of panicking.
    pub async fn try_goto(&self, url: &str) -> Result<(), String> {
        let path = format!("{}/session/{}/url", self.base, self.session);
        let resp = self
            .http
            .post(&path)
            .json(&json!({ "url": url }))
            .send()
            .await
            .map_err(|e| format!("WebDriver POST /url: {e}"))?;
        if resp.status().is_success() {
            return Ok(());
        }
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        Err(format!("HTTP {status}: {}", v["value"]["message"]))
    }

    pub async fn back(&self) {
        self.session_call(reqwest::Method::POST, "/back", None)
            .await;
    }

    pub async fn url(&self) -> String {
        self.session_call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Every element matching a CSS selector, as WebDriver element ids.
    pub async fn find_all(&self, css: &str) -> Vec<String> {
        let v = self
            .session_call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT].as_str().map(String::from))
            .collect()
    }

    pub async fn find(&self, css: &str) -> String {
        self.find_all(css)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element matches '{css}'"))
    }

    pub async fn click(&self, element: &str) {
        self.session_call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            None,
        )
        .await;
    }

    pub async fn type_into(&self, element: &str, text: &str) {
        self.session_call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn clear(&self, element: &str) {
        self.session_call(
            reqwest::Method::POST,
            &format!("/element/{element}/clear"),
            None,
        )
        .await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub async fn exec(&self, script: &str, args: Vec<Value>) -> Value {
        self.session_call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// The page's visible text.
    pub async fn body_text(&self) -> String {
        self.exec("return document.body.innerText;", vec![])
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Polls `script` until it returns true; panics with `what` after `within`.
    pub async fn wait_until(&self, within: Duration, what: &str, script: &str) {
        let deadline = Instant::now() + within;
        loop {
            if self.exec(script, vec![]).await == Value::Bool(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting in the browser for: {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG screenshot of the viewport.
    pub async fn screenshot(&self, path: &Path) {
        let v = self
            .session_call(reqwest::Method::GET, "/screenshot", None)
            .await;
        let png = base64_decode(v.as_str().expect("a base64 screenshot"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // End the session so chromedriver closes Chromium, then stop chromedriver.
        if !self.session.is_empty() {
            let addr = self.base.trim_start_matches("http://").to_string();
            if let Ok(mut s) = TcpStream::connect(&addr) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let req = format!(
                    "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
                    self.session
                );
                let _ = s.write_all(req.as_bytes());
                let _ = std::io::Read::read_to_end(&mut s, &mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (screenshots are small; no crate needed for this).
pub fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// A fresh HOME whose NSS database (`$HOME/.pki/nssdb`, where Chromium on Linux keeps the
/// user's certificates) trusts `ca_pem` for TLS servers, as a user importing a CA would.
pub fn nss_home_trusting(ca_pem: &Path) -> tempfile::TempDir {
    const INSTALL: &str = "install it with: apt-get update && apt-get install -y libnss3-tools";
    let certutil = find_program("CERTUTIL", &["certutil"], &[]).unwrap_or_else(|| {
        panic!("the browser test needs NSS's certutil, which is not installed: {INSTALL}")
    });
    let home = tempfile::tempdir().expect("home dir");
    let db = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&db).expect("nssdb dir");
    let db = format!("sql:{}", db.display());
    let run = |args: &[&str]| {
        let out = Command::new(&certutil)
            .arg("-d")
            .arg(&db)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", certutil.display()));
        assert!(
            out.status.success(),
            "certutil {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["-N", "--empty-password"]);
    // "C,,": a trusted CA for TLS servers (not for mail or code signing).
    let ca = ca_pem.to_string_lossy();
    run(&["-A", "-t", "C,,", "-n", "xipgate-test-ca", "-i", &ca]);
    home
}
