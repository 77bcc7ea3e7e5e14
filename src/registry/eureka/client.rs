//! The Eureka REST client: GET with failover over the configured URLs, Basic auth, gzip,
//! and a bounded body read (a runaway or hostile registry cannot exhaust memory).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, ACCEPT_ENCODING};

use super::model::{Known, Snapshot};
use super::parse::{parse_app, parse_apps, ParseError};
use super::stream::parse_apps_gzip;
use crate::config::{EurekaUrl, RegistryConfig};

/// Why one URL could not deliver a registry.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: cannot connect: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url}: no answer within {timeout:?} (xipgate.registry.eureka.timeout)")]
    Timeout { url: String, timeout: Duration },
    /// The head arrived, the body did not finish: the timeout bounds the whole request.
    #[error("{url}: the body was still arriving after {timeout:?}; xipgate.registry.eureka.timeout bounds the whole request (raise it for a large registry or a slow link)")]
    BodyTimeout { url: String, timeout: Duration },
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

/// A [`FetchError`] without its details: what log de-duplication compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchErrorKind {
    url: String,
    kind: std::mem::Discriminant<FetchError>,
    status: Option<u16>,
}

impl FetchError {
    /// The HTTP status the server answered with, for errors that are one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            FetchError::Status { status, .. } => Some(*status),
            FetchError::NotFound { .. } => Some(404),
            _ => None,
        }
    }

    pub fn kind(&self) -> FetchErrorKind {
        let url = match self {
            FetchError::Connect { url, .. }
            | FetchError::Timeout { url, .. }
            | FetchError::BodyTimeout { url, .. }
            | FetchError::Status { url, .. }
            | FetchError::TooLarge { url, .. }
            | FetchError::Body { url, .. }
            | FetchError::Parse { url, .. }
            | FetchError::NotFound { url } => url,
        };
        FetchErrorKind {
            url: url.clone(),
            kind: std::mem::discriminant(self),
            status: self.http_status(),
        }
    }
}

/// What a refusal most likely means, for the message. A Eureka server answers 403 with
/// an empty body to every registry read during its start-up window (it synced nothing
/// from peers and waits `eureka.server.wait-time-in-ms-when-sync-empty`), and to
/// `/apps/delta` when `eureka.server.disable-delta` is set. Spring Security asks for
/// credentials with a 401.
pub fn refusal_hint(status: u16, path: &str, has_credentials: bool) -> &'static str {
    match (status, has_credentials) {
        (401, false) => " (the server wants credentials: user:pass@ in the URL)",
        (401, true) => " (the server refused these credentials)",
        (403, _) if path == "/apps/delta" => {
            " (Eureka refuses deltas when eureka.server.disable-delta is set, and every read during its start-up window)"
        }
        (403, false) => {
            " (Eureka refuses reads during its start-up window after starting with an empty registry, eureka.server.wait-time-in-ms-when-sync-empty; or a proxy in front forbids it)"
        }
        (403, true) => {
            " (Eureka's start-up window after starting with an empty registry, or these credentials lack access)"
        }
        _ => "",
    }
}

/// What a successful fetch brought.
#[derive(Debug)]
pub struct Fetched {
    pub snapshot: Snapshot,
    /// The base URL (no credentials) that answered.
    pub source: String,
    /// Body bytes after decompression.
    pub bytes: usize,
    /// Body bytes as received (compressed, where the server compressed).
    pub wire_bytes: u64,
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

    /// `GET {url}/apps`, failing over in order. On failure, every URL's error. Instances
    /// `known` (the registry copy) holds already come back in `Snapshot::unchanged`.
    pub async fn fetch_apps(&self, known: Option<&dyn Known>) -> Result<Fetched, Vec<FetchError>> {
        let fetched = self.fetch_with_failover("/apps", parse_apps, known).await;
        if let Ok(f) = &fetched {
            self.last_full_len.store(f.bytes, Ordering::Relaxed);
        }
        fetched
    }

    /// `GET {url}/apps/delta`.
    pub async fn fetch_delta(&self) -> Result<Fetched, Vec<FetchError>> {
        self.fetch_with_failover("/apps/delta", parse_apps, None)
            .await
    }

    /// `GET {url}/apps/{APP}`, live (the older design's `/api/services/ips`).
    pub async fn fetch_app(&self, app: &str) -> Result<Fetched, Vec<FetchError>> {
        let path = format!(
            "/apps/{}",
            url::form_urlencoded::byte_serialize(app.as_bytes()).collect::<String>()
        );
        self.fetch_with_failover(&path, parse_app, None).await
    }

    async fn fetch_with_failover(
        &self,
        path: &str,
        parse: fn(&[u8]) -> Result<Snapshot, ParseError>,
        known: Option<&dyn Known>,
    ) -> Result<Fetched, Vec<FetchError>> {
        let mut errors = Vec::new();
        for url in &self.urls {
            match self.fetch_one(url, path, parse, known).await {
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
        known: Option<&dyn Known>,
    ) -> Result<Fetched, FetchError> {
        let full = format!("{}{path}", url.base);
        let shown = full.clone();
        // Decompressed here (see `gunzip`), not by reqwest, so the bytes on the wire
        // can be counted.
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
            return Err(FetchError::Status {
                url: shown,
                status: status.as_u16(),
                hint: refusal_hint(status.as_u16(), path, url.auth.is_some()).to_string(),
            });
        }
        let gzipped = resp
            .headers()
            .get(reqwest::header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        // A little headroom: a registry that grew by a few instances fits too.
        let expected = if path == "/apps" && !gzipped {
            let last = self.last_full_len.load(Ordering::Relaxed);
            (last + last / 16).min(self.max_body)
        } else {
            0
        };
        let mut wire: Vec<u8> = Vec::with_capacity(expected);
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if wire.len() + chunk.len() > self.max_body {
                        return Err(FetchError::TooLarge {
                            url: shown,
                            limit: self.max_body,
                        });
                    }
                    wire.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => {
                    return Err(FetchError::BodyTimeout {
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
        let wire_bytes = wire.len() as u64;
        // A refresh (a copy exists: `known`) is parsed as it is decompressed, against the
        // copy, so neither the body nor a second copy of the registry is held next to the
        // copy and the table. The first fetch is decompressed whole: nothing is held yet,
        // so the body is not what sets the peak, and parsing from a slice is quicker (the
        // reader costs ~0.6 s of CPU more at 100,000 instances, all before routing).
        if let (true, "/apps", Some(known)) = (gzipped, path, known) {
            if let Some((snapshot, bytes)) = parse_apps_gzip(&wire, self.max_body, Some(known)) {
                return Ok(Fetched {
                    snapshot,
                    source: url.base.clone(),
                    bytes,
                    wire_bytes,
                    skipped_sources: Vec::new(),
                });
            }
        }
        let body = if gzipped {
            let hint = self
                .last_full_len
                .load(Ordering::Relaxed)
                .max(gzip_size(&wire));
            gunzip(&wire, self.max_body, hint).map_err(|e| match e {
                Gunzip::TooLarge => FetchError::TooLarge {
                    url: shown.clone(),
                    limit: self.max_body,
                },
                Gunzip::Invalid(reason) => FetchError::Body {
                    url: shown.clone(),
                    reason: format!("invalid gzip body: {reason}"),
                },
            })?
        } else {
            wire
        };
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

enum Gunzip {
    TooLarge,
    Invalid(std::io::Error),
}

/// The size a gzip member says it decompresses to (its trailer's ISIZE, modulo 4 GiB):
/// the buffer is made that big at once rather than doubled from empty (a 100 MB body
/// grown by doubling held 64 + 128 MB while copying). Only a hint: `gunzip` still
/// enforces the limit, and a body of several members or a lying trailer only grows.
fn gzip_size(wire: &[u8]) -> usize {
    match wire.len().checked_sub(4).and_then(|at| wire.get(at..)) {
        Some(&[a, b, c, d]) if wire.len() >= 18 => u32::from_le_bytes([a, b, c, d]) as usize,
        _ => 0,
    }
}

/// Decompresses a gzip body, refusing more than `limit` bytes of output (a small
/// compressed body can expand enormously).
fn gunzip(wire: &[u8], limit: usize, size_hint: usize) -> Result<Vec<u8>, Gunzip> {
    use std::io::Read;
    let mut out = Vec::with_capacity(size_hint.min(limit));
    flate2::read::GzDecoder::new(wire)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(Gunzip::Invalid)?;
    if out.len() > limit {
        return Err(Gunzip::TooLarge);
    }
    Ok(out)
}

/// reqwest's top-level message is generic ("error sending request"); the cause is inside.
pub(in crate::registry) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_their_likely_cause() {
        // (status, path, credentials configured, words the hint must have)
        let cases = [
            (401, "/apps", false, "wants credentials"),
            (401, "/apps", true, "refused these credentials"),
            (403, "/apps/delta", false, "disable-delta"),
            (403, "/apps", false, "start-up window"),
            (403, "/apps", true, "start-up window"),
            (500, "/apps", false, ""),
        ];
        for (status, path, creds, words) in cases {
            let hint = refusal_hint(status, path, creds);
            assert!(hint.contains(words), "{status} {path} {creds}: {hint:?}");
            assert_eq!(hint.is_empty(), words.is_empty());
        }
        // A 403 is never blamed on missing credentials: Spring Security asks with a 401.
        assert!(!refusal_hint(403, "/apps", false).contains("wants credentials"));
    }

    #[test]
    fn gunzip_is_bounded() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&[b'x'; 10_000]).expect("write");
        let z = e.finish().expect("finish");
        assert_eq!(gunzip(&z, 10_000, 0).ok().map(|v| v.len()), Some(10_000));
        assert!(matches!(gunzip(&z, 9_999, 0), Err(Gunzip::TooLarge)));
        assert!(matches!(
            gunzip(b"\x1f\x8bnot", 100, 0),
            Err(Gunzip::Invalid(_))
        ));
        // The trailer's size is the hint; a short or empty body has none.
        assert_eq!(gzip_size(&z), 10_000);
        assert_eq!(gzip_size(b"\x1f\x8bnot"), 0);
        assert_eq!(gzip_size(b""), 0);
    }
}
