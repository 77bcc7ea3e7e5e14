//! An edge in front of one recording backend (`api`), with `xipgate.access` as a test
//! gives it, on either engine: what a request got and what reached the backend.

use super::wire::{Received, Recorder};
use super::{parse_response, raw, Inst, StubEureka, Xipgate, DOMAIN};

/// An edge in front of `api` (a recording backend); `DIR` in the access YAML is a directory
/// of its own holding `keys` (a session key).
pub struct Edge {
    pub x: Xipgate,
    pub backend: Recorder,
    pub label: String,
    pub engine: &'static str,
    _eureka: StubEureka,
    _dir: tempfile::TempDir,
}

pub async fn edge(fast: bool, access: &str) -> Edge {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("keys"),
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n",
    )
    .expect("keys");
    let backend = Recorder::start(Vec::new());
    let inst = Inst::up("api", &format!("api-{fast}"), backend.addr);
    let label = inst.label();
    let eureka = StubEureka::start().await;
    eureka.serve(&[inst]).await;
    let access = access.replace("DIR", &dir.path().display().to_string());
    let x = Xipgate::start(
        &eureka.url(),
        &format!("  downstream:\n    fast_path: {fast}\n  access:\n{access}"),
    );
    Edge {
        x,
        backend,
        label,
        engine: if fast { "fast path" } else { "pingora" },
        _eureka: eureka,
        _dir: dir,
    }
}

/// What one request got: status, headers, body, and the requests the backend saw.
pub struct Got {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub seen: Vec<Received>,
}

impl Got {
    pub fn backend_header(&self, name: &str) -> Vec<String> {
        self.seen
            .iter()
            .flat_map(|r| r.headers.iter())
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn challenges(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "www-authenticate")
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl Edge {
    /// GET / with `headers` (each ending in CRLF).
    pub fn get(&self, headers: &str) -> Got {
        self.backend.take();
        let request = format!(
            "GET /x HTTP/1.1\r\nHost: {}.{DOMAIN}:{}\r\nConnection: close\r\n{headers}\r\n",
            self.label,
            self.x.proxy.port()
        );
        let (status, headers, body) =
            parse_response(&raw(self.x.proxy, request.as_bytes()).expect("request"));
        Got {
            status,
            headers,
            body,
            seen: self.backend.take(),
        }
    }

    pub fn bearer(&self, token: &str) -> Got {
        self.get(&format!("Authorization: Bearer {token}\r\n"))
    }
}

pub fn metrics(e: &Edge) -> String {
    super::http_get(e.x.console, "localhost", "/metrics")
        .expect("metrics")
        .2
}

pub fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}
