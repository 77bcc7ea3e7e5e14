//! Requests to the API server: JSON in, JSON out, errors that name what was refused.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::connection::{Connection, ConnectionError};
use super::error::{error_chain, KubeError};
use super::object::{List, Resource, Status};
use super::watch::Watch;

/// Bound on one request that is not a watch.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on connecting, for watches too.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a token read from its file is used before the file is read again (the kubelet
/// refreshes projected tokens well before they expire; client-go re-reads every minute).
pub const TOKEN_REREAD: Duration = Duration::from_secs(60);
/// Items per page of a list: big lists come in pages instead of one answer of unbounded size.
pub const LIST_PAGE: u32 = 500;
/// How long the server keeps a watch open before ending it (it then resumes from the last
/// version seen, at no cost); the client gives up on a silent watch a minute after this.
pub const WATCH_TIMEOUT_SECS: u64 = 290;

/// Selectors of a list or a watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
}

/// A cheap handle (clones share the connection pool and the request counter).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Arc<str>,
    token: Arc<Token>,
    requests: Arc<AtomicU64>,
}

struct Token {
    file: Option<PathBuf>,
    cached: Mutex<Option<(Instant, String)>>,
}

impl Token {
    fn get(&self) -> Result<Option<String>, KubeError> {
        let Some(file) = &self.file else {
            return Ok(None);
        };
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, t)) = cached.as_ref() {
            if at.elapsed() < TOKEN_REREAD {
                return Ok(Some(t.clone()));
            }
        }
        let t = std::fs::read_to_string(file).map_err(|e| KubeError::Token {
            path: file.display().to_string(),
            reason: e.to_string(),
        })?;
        let t = t.trim().to_string();
        *cached = Some((Instant::now(), t.clone()));
        Ok(Some(t))
    }
}

impl Client {
    pub fn new(conn: &Connection) -> Result<Client, ConnectionError> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_keepalive(Duration::from_secs(30))
            .user_agent(concat!("xipgate/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &conn.ca_file {
            let bad = |reason: String| ConnectionError::Ca {
                path: ca.display().to_string(),
                reason,
            };
            let pem = std::fs::read(ca).map_err(|e| bad(e.to_string()))?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no certificate in it".into()));
            }
            b = b.tls_built_in_root_certs(false);
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b
            .build()
            .map_err(|e| ConnectionError::Client(e.to_string()))?;
        Ok(Client {
            http,
            base: conn.url.as_str().into(),
            token: Arc::new(Token {
                file: conn.token_file.clone(),
                cached: Mutex::new(None),
            }),
            requests: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Requests sent so far (watches count once, when opened): the load this client puts
    /// on the API server.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        r: &Resource,
        ns: &str,
        name: &str,
    ) -> Result<T, KubeError> {
        let path = format!("{}/{name}", r.path(Some(ns)));
        self.json(Method::GET, &path, &[], None::<&()>, "get", r, Some(ns))
            .await
    }

    /// Every item, page by page, and the list's resourceVersion (where a watch starts).
    pub async fn list<T: DeserializeOwned>(
        &self,
        r: &Resource,
        ns: Option<&str>,
        p: &ListParams,
    ) -> Result<List<T>, KubeError> {
        let path = r.path(ns);
        let mut out: Option<List<T>> = None;
        let mut next: Option<String> = None;
        loop {
            let mut q = selectors(p);
            q.push(("limit", LIST_PAGE.to_string()));
            if let Some(c) = &next {
                q.push(("continue", c.clone()));
            }
            let page: List<T> = self
                .json(Method::GET, &path, &q, None::<&()>, "list", r, ns)
                .await?;
            next = page
                .metadata
                .continue_token
                .clone()
                .filter(|c| !c.is_empty());
            match out.as_mut() {
                None => out = Some(page),
                Some(all) => {
                    all.items.extend(page.items);
                    all.metadata = page.metadata;
                }
            }
            if next.is_none() {
                break;
            }
        }
        Ok(out.unwrap_or(List {
            metadata: Default::default(),
            items: Vec::new(),
        }))
    }

    pub async fn create<B: Serialize, T: DeserializeOwned>(
        &self,
        r: &Resource,
        ns: &str,
        body: &B,
    ) -> Result<T, KubeError> {
        self.json(
            Method::POST,
            &r.path(Some(ns)),
            &[],
            Some(body),
            "create",
            r,
            Some(ns),
        )
        .await
    }

    /// PUT: fails with 409 when the object's `metadata.resourceVersion` is not the stored
    /// one (someone else wrote it since it was read).
    pub async fn replace<B: Serialize, T: DeserializeOwned>(
        &self,
        r: &Resource,
        ns: &str,
        name: &str,
        body: &B,
    ) -> Result<T, KubeError> {
        let path = format!("{}/{name}", r.path(Some(ns)));
        self.json(Method::PUT, &path, &[], Some(body), "update", r, Some(ns))
            .await
    }

    pub async fn delete(&self, r: &Resource, ns: &str, name: &str) -> Result<(), KubeError> {
        let path = format!("{}/{name}", r.path(Some(ns)));
        let _: serde_json::Value = self
            .json(
                Method::DELETE,
                &path,
                &[],
                None::<&()>,
                "delete",
                r,
                Some(ns),
            )
            .await?;
        Ok(())
    }

    /// Opens a watch from `resource_version`, with bookmarks.
    pub async fn watch<T: DeserializeOwned>(
        &self,
        r: &Resource,
        ns: Option<&str>,
        p: &ListParams,
        resource_version: &str,
    ) -> Result<Watch<T>, KubeError> {
        let mut q = selectors(p);
        q.push(("watch", "1".into()));
        q.push(("allowWatchBookmarks", "true".into()));
        q.push(("timeoutSeconds", WATCH_TIMEOUT_SECS.to_string()));
        if !resource_version.is_empty() {
            q.push(("resourceVersion", resource_version.into()));
        }
        let path = r.path(ns);
        let rb = self.request(Method::GET, &path, &q)?;
        let resp = self.send(rb, &path, "watch", r, ns, None).await?;
        Ok(Watch::new(
            resp,
            self.url_of(&path),
            Duration::from_secs(WATCH_TIMEOUT_SECS + 60),
        ))
    }

    fn url_of(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<RequestBuilder, KubeError> {
        let mut rb = self
            .http
            .request(method, self.url_of(path))
            .header(reqwest::header::ACCEPT, "application/json");
        if !query.is_empty() {
            rb = rb.query(query);
        }
        if let Some(t) = self.token.get()? {
            rb = rb.bearer_auth(t);
        }
        Ok(rb)
    }

    #[allow(clippy::too_many_arguments)]
    async fn json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
        verb: &'static str,
        r: &Resource,
        ns: Option<&str>,
    ) -> Result<T, KubeError> {
        let mut rb = self.request(method, path, query)?.timeout(REQUEST_TIMEOUT);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = self
            .send(rb, path, verb, r, ns, Some(REQUEST_TIMEOUT))
            .await?;
        let url = self.url_of(path);
        let bytes = resp.bytes().await.map_err(|e| KubeError::Body {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| KubeError::Decode {
            url,
            reason: e.to_string(),
        })
    }

    async fn send(
        &self,
        rb: RequestBuilder,
        path: &str,
        verb: &'static str,
        r: &Resource,
        ns: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, KubeError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let url = self.url_of(path);
        let resp = rb.send().await.map_err(|e| {
            if e.is_timeout() {
                KubeError::Timeout {
                    url: url.clone(),
                    secs: timeout.unwrap_or(CONNECT_TIMEOUT).as_secs(),
                }
            } else {
                KubeError::Connect {
                    url: url.clone(),
                    reason: error_chain(&e),
                }
            }
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let code = resp.status().as_u16();
        let body = resp.bytes().await.unwrap_or_default();
        let mut status: Status = serde_json::from_slice(&body).unwrap_or_default();
        status.code = code;
        if status.message.is_empty() {
            status.message = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        }
        Err(KubeError::Api {
            verb,
            resource: r.qualified(),
            namespace: ns.map(String::from),
            status: Box::new(status),
        })
    }
}

fn selectors(p: &ListParams) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some(s) = &p.label_selector {
        q.push(("labelSelector", s.clone()));
    }
    if let Some(s) = &p.field_selector {
        q.push(("fieldSelector", s.clone()));
    }
    q
}
