//! A plain-HTTP front of the real API server that makes real 409s: just before it passes
//! on the first PUT to each object, it writes that object itself (as the admin, one
//! annotation changed), so the PUT carries a resourceVersion that is no longer the
//! stored one and the API server answers it with its own 409 Conflict, as when another
//! replica writes in between. Everything else (watches too, streamed) is passed through
//! with the client's own token, so RBAC applies as without it.
//!
//! Include with `#[path = "common/meddler.rs"] mod meddler;`.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An annotation the meddler changes: the write that makes the client's PUT stale.
pub const ANNOTATION: &str = "test.xipgate.io/meddled";

pub struct Meddler {
    /// `http://127.0.0.1:<port>`: the API URL to give the client.
    pub url: String,
    /// Path → the 409s it made happen there.
    made: Arc<Mutex<BTreeMap<String, u32>>>,
}

struct Shared {
    api: String,
    admin_token: String,
    http: reqwest::Client,
    meddled: Mutex<BTreeSet<String>>,
    made: Arc<Mutex<BTreeMap<String, u32>>>,
}

impl Meddler {
    /// In front of the API server at `api` (`https://...`), whose certificate `ca_pem`
    /// signs; the meddling writes use `admin_token`.
    pub async fn start(api: &str, ca_pem: &str, admin_token: &str) -> Meddler {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let made = Arc::new(Mutex::new(BTreeMap::new()));
        let shared = Arc::new(Shared {
            api: api.to_string(),
            admin_token: admin_token.to_string(),
            http: reqwest::Client::builder()
                .add_root_certificate(
                    reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA"),
                )
                .build()
                .expect("client"),
            meddled: Mutex::new(BTreeSet::new()),
            made: made.clone(),
        });
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, shared.clone()));
            }
        });
        Meddler { url, made }
    }

    /// Path → the 409s made there so far.
    pub fn made(&self) -> BTreeMap<String, u32> {
        self.made.lock().expect("lock").clone()
    }
}

/// One request as read from the client.
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn read_request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = req.parse(buf) {
            let method = req.method?.to_string();
            let target = req.path?.to_string();
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let len: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < head + len {
                let mut chunk = [0u8; 8192];
                let n = conn.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[head..head + len].to_vec();
            buf.drain(..head + len);
            return Some(Request {
                method,
                target,
                headers,
                body,
            });
        }
        let mut chunk = [0u8; 8192];
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn serve(mut conn: TcpStream, s: Arc<Shared>) {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut conn, &mut buf).await {
        let path = req.target.split('?').next().unwrap_or("").to_string();
        if req.method == "PUT" && s.meddled.lock().expect("lock").insert(path.clone()) {
            meddle(&s, &path).await;
        }
        if forward(&mut conn, &s, req).await.is_none() {
            return;
        }
    }
}

/// Writes the object at `path` as another writer would.
async fn meddle(s: &Shared, path: &str) {
    let url = format!("{}{path}", s.api);
    let Ok(resp) = s.http.get(&url).bearer_auth(&s.admin_token).send().await else {
        return;
    };
    let Ok(mut obj) = resp.json::<Value>().await else {
        return;
    };
    if obj["metadata"].is_null() {
        return;
    }
    obj["metadata"]["annotations"][ANNOTATION] = Value::String(path.to_string());
    let written = s
        .http
        .put(&url)
        .bearer_auth(&s.admin_token)
        .json(&obj)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    if written {
        *s.made
            .lock()
            .expect("lock")
            .entry(path.to_string())
            .or_default() += 1;
    }
}

/// Sends `req` on with the client's own headers and streams the answer back (chunked, so
/// a watch passes event by event).
async fn forward(conn: &mut TcpStream, s: &Shared, req: Request) -> Option<()> {
    let method = reqwest::Method::from_bytes(req.method.as_bytes()).ok()?;
    let mut rb = s
        .http
        .request(method, format!("{}{}", s.api, req.target))
        .body(req.body);
    for (name, value) in &req.headers {
        if matches!(
            name.as_str(),
            "authorization" | "content-type" | "accept" | "user-agent"
        ) {
            rb = rb.header(name.as_str(), value.as_str());
        }
    }
    let mut resp = rb.send().await.ok()?;
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    conn.write_all(head.as_bytes()).await.ok()?;
    while let Ok(Some(chunk)) = resp.chunk().await {
        let mut out = format!("{:x}\r\n", chunk.len()).into_bytes();
        out.extend_from_slice(&chunk);
        out.extend_from_slice(b"\r\n");
        conn.write_all(&out).await.ok()?;
    }
    conn.write_all(b"0\r\n\r\n").await.ok()?;
    Some(())
}
