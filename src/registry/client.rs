//! The Eureka REST client: GET with failover over the configured URLs, Basic auth, gzip,
//! and a bounded body read (a runaway or hostile registry cannot exhaust memory).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, ACCEPT_ENCODING};

use super::model::Snapshot;
use super::parse::{parse_app, parse_apps, ParseError};
use crate::config::{EurekaUrl, RegistryConfig};

/// Why one URL could not deliver a registry.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: cannot connect: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: HTTP {status}{hint}")]
    Status {
        url: String,
        status: u16,
        hint: String,
    },
    #[error("{url}: body larger than the {limit} byte limit (xipgate.registry.eureka.max_body)")]
    TooLarge { url: String, limit: usize },
    #[error("{url}: reading the body failed: {reason}")]
    Body { url: String, reason: String },
    #[error("{url}: {source}")]
    Parse { url: String, source: ParseError },
    #[error("{url}: not found (HTTP 404)")]
    NotFound { url: String },
}

/// What a successful fetch brought.
#[derive(Debug)]
pub struct Fetched {
    pub snapshot: Snapshot,
    /// The base URL (no credentials) that answered.
    pub source: String,
    /// Body bytes after decompression.
    pub bytes: usize,
    /// Bytes on the wire (compressed), where the server said (Content-Length).
    pub wire_bytes: Option<u64>,
    /// Errors of the URLs tried before the one that answered (failover).
    pub skipped_sources: Vec<String>,
}

#[derive(Clone)]
pub struct EurekaClient {
    http: reqwest::Client,
    urls: Vec<EurekaUrl>,
    max_body: usize,
    timeout: Duration,
    /// Size of the last full `/apps` body: the next one is read into a buffer this big
    /// instead of one grown from empty (the growing was ~15% of a full refresh's CPU at
    /// 10,000 instances: copies, and fresh pages at every doubling).
    last_full_len: Arc<AtomicUsize>,
}

impl EurekaClient {
    pub fn new(cfg: &RegistryConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .gzip(true)
            .user_agent(concat!("xipgate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(EurekaClient {
            http,
            urls: cfg.urls.clone(),
            max_body: cfg.max_body,
            timeout: cfg.timeout,
            last_full_len: Arc::new(AtomicUsize::new(0)),
        })
    }

    pub fn sources(&self) -> Vec<String> {
        self.urls.iter().map(|u| u.base.clone()).collect()
    }

    /// `GET {url}/apps`, failing over in order. On failure, every URL's error.
    pub async fn fetch_apps(&self) -> Result<Fetched, Vec<FetchError>> {
        let fetched = self.fetch_with_failover("/apps", parse_apps).await;
        if let Ok(f) = &fetched {
            self.last_full_len.store(f.bytes, Ordering::Relaxed);
        }
        fetched
    }

    /// `GET {url}/apps/delta`.
    pub async fn fetch_delta(&self) -> Result<Fetched, Vec<FetchError>> {
        self.fetch_with_failover("/apps/delta", parse_apps).await
    }

    /// `GET {url}/apps/{APP}`, live (the older design's `/api/services/ips`).
    pub async fn fetch_app(&self, app: &str) -> Result<Fetched, Vec<FetchError>> {
        let path = format!(
            "/apps/{}",
            url::form_urlencoded::byte_serialize(app.as_bytes()).collect::<String>()
        );
        self.fetch_with_failover(&path, parse_app).await
    }

    async fn fetch_with_failover(
        &self,
        path: &str,
        parse: fn(&[u8]) -> Result<Snapshot, ParseError>,
    ) -> Result<Fetched, Vec<FetchError>> {
        let mut errors = Vec::new();
        for url in &self.urls {
            match self.fetch_one(url, path, parse).await {
                Ok(mut f) => {
                    f.skipped_sources = errors.iter().map(ToString::to_string).collect();
                    return Ok(f);
                }
                // A 404 for one app is an answer, not a reason to ask the next server.
                Err(e @ FetchError::NotFound { .. })
                    if path.starts_with("/apps/") && path != "/apps/delta" =>
                {
                    return Err(vec![e])
                }
                Err(e) => errors.push(e),
            }
        }
        Err(errors)
    }

    async fn fetch_one(
        &self,
        url: &EurekaUrl,
        path: &str,
        parse: fn(&[u8]) -> Result<Snapshot, ParseError>,
    ) -> Result<Fetched, FetchError> {
        let full = format!("{}{path}", url.base);
        let shown = full.clone();
        let mut req = self
            .http
            .get(&full)
            .header(ACCEPT, "application/json")
            .header(ACCEPT_ENCODING, "gzip");
        if let Some((user, pass)) = &url.auth {
            req = req.basic_auth(user, Some(pass));
        }
        let mut resp = req.send().await.map_err(|e| self.classify(&shown, e))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(FetchError::NotFound { url: shown });
        }
        if !status.is_success() {
            let hint = match status.as_u16() {
                401 | 403 if url.auth.is_none() => {
                    " (the server wants credentials: user:pass@ in the URL)"
                }
                401 | 403 => " (credentials refused, or the server is still starting up)",
                _ => "",
            };
            return Err(FetchError::Status {
                url: shown,
                status: status.as_u16(),
                hint: hint.to_string(),
            });
        }
        let wire_bytes = resp.content_length();
        // With gzip on, reqwest hides the compressed length; the limit applies to what we
        // would hold in memory, the decompressed body.
        let expected = if path == "/apps" {
            // A little headroom: a registry that grew by a few instances fits too.
            let last = self.last_full_len.load(Ordering::Relaxed);
            (last + last / 16).min(self.max_body)
        } else {
            0
        };
        let mut body: Vec<u8> = Vec::with_capacity(expected);
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > self.max_body {
                        return Err(FetchError::TooLarge {
                            url: shown,
                            limit: self.max_body,
                        });
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => {
                    return Err(FetchError::Timeout {
                        url: shown,
                        timeout: self.timeout,
                    })
                }
                Err(e) => {
                    return Err(FetchError::Body {
                        url: shown,
                        reason: error_chain(&e),
                    })
                }
            }
        }
        let snapshot = parse(&body).map_err(|source| FetchError::Parse {
            url: shown.clone(),
            source,
        })?;
        Ok(Fetched {
            snapshot,
            source: url.base.clone(),
            bytes: body.len(),
            wire_bytes,
            skipped_sources: Vec::new(),
        })
    }

    fn classify(&self, url: &str, e: reqwest::Error) -> FetchError {
        if e.is_timeout() {
            FetchError::Timeout {
                url: url.to_string(),
                timeout: self.timeout,
            }
        } else {
            FetchError::Connect {
                url: url.to_string(),
                reason: error_chain(&e),
            }
        }
    }
}

/// reqwest's top-level message is generic ("error sending request"); the cause is inside.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
