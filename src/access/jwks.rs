//! The issuer's public keys (JWKS): parsed ([`parse`]) and kept ([`Keys`]), fetched at start,
//! again for a key id the cache does not know (at most once per [`REFETCH_MIN_INTERVAL`]) and
//! when the cache is older than its maximum age. One fetch at a time; while it runs, tokens
//! whose key is cached go on verifying.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use super::jwt::{Jwk, Key};

/// A token naming an unknown key sends the edge to the issuer at most this often, so a flood
/// of made-up key ids cannot hammer the provider.
pub const REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(5);
/// A JWKS or discovery request gives up after this long.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest JWKS or discovery document read.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("{url}: {why}")]
    Fetch { url: String, why: String },
    #[error("{url}: not a JWKS: {why}")]
    Parse { url: String, why: String },
    #[error("{url}: the discovery document's issuer '{found}' is not '{issuer}'")]
    Issuer {
        url: String,
        found: String,
        issuer: String,
    },
}

/// The usable keys of a JWKS document: RSA and EC (P-256, P-384) signing keys. Others
/// (symmetric `oct` keys, encryption keys, other curves) are left out: nothing is ever
/// verified with them.
pub fn parse(body: &[u8]) -> Result<Vec<Jwk>, &'static str> {
    let doc: Value = serde_json::from_slice(body).map_err(|_| "not JSON")?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("no 'keys' array")?;
    Ok(keys.iter().filter_map(jwk).collect())
}

fn jwk(k: &Value) -> Option<Jwk> {
    let s = |name: &str| k.get(name).and_then(Value::as_str);
    let b = |name: &str| s(name).and_then(|v| URL_SAFE_NO_PAD.decode(v).ok());
    if s("use").is_some_and(|u| u != "sig") {
        return None;
    }
    let key = match (s("kty")?, s("crv")) {
        ("RSA", _) => Key::Rsa {
            n: b("n")?,
            e: b("e")?,
        },
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (x, y) = (b("x")?, b("y")?);
            let len = if crv == "P-256" { 32 } else { 48 };
            if x.len() != len || y.len() != len {
                return None;
            }
            let point = [&[4u8][..], &x, &y].concat();
            if crv == "P-256" {
                Key::P256(point)
            } else {
                Key::P384(point)
            }
        }
        _ => return None,
    };
    Some(Jwk {
        kid: s("kid").map(String::from),
        alg: s("alg").map(String::from),
        key,
    })
}

/// Where the keys are: a JWKS URL, or the issuer whose discovery document names it.
#[derive(Debug, Clone)]
pub enum Source {
    Url(String),
    Discovery { issuer: String },
}

struct Cached {
    keys: Arc<Vec<Jwk>>,
    fetched: Option<Instant>,
    /// Why the last fetch failed (cleared by a good one).
    error: Option<String>,
}

/// The issuer's keys, cached.
pub struct Keys {
    source: Source,
    max_age: Duration,
    /// [`REFETCH_MIN_INTERVAL`] (shorter in tests).
    pub(super) min_interval: Duration,
    client: reqwest::Client,
    cached: RwLock<Cached>,
    /// Held by the one fetch in flight; holds when the last fetch was tried.
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

impl Keys {
    pub fn new(source: Source, max_age: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            // Fetches are rare and may run on different runtimes: no pooled connections.
            .pool_max_idle_per_host(0)
            .build()
            .unwrap_or_default();
        Keys {
            source,
            max_age,
            min_interval: REFETCH_MIN_INTERVAL,
            client,
            cached: RwLock::new(Cached {
                keys: Arc::new(Vec::new()),
                fetched: None,
                error: Some("not fetched yet".into()),
            }),
            fetching: tokio::sync::Mutex::new(None),
        }
    }

    /// The cached keys, and why the last fetch failed if it did.
    pub fn cached(&self) -> (Arc<Vec<Jwk>>, Option<String>) {
        let c = self.cached.read().unwrap_or_else(|p| p.into_inner());
        (c.keys.clone(), c.error.clone())
    }

    /// The cached keys while they are fresh (younger than the maximum age), without I/O.
    pub fn fresh(&self) -> Option<Arc<Vec<Jwk>>> {
        let c = self.cached.read().unwrap_or_else(|p| p.into_inner());
        c.fetched
            .is_some_and(|t| t.elapsed() < self.max_age)
            .then(|| c.keys.clone())
    }

    /// The keys to verify a token with `kid` against: the cache when it knows the key and
    /// is fresh; otherwise after one fetch, if no fetch was tried in the last
    /// [`REFETCH_MIN_INTERVAL`].
    pub async fn for_kid(&self, kid: Option<&str>) -> (Arc<Vec<Jwk>>, Option<String>) {
        let known =
            |keys: &[Jwk]| kid.is_none_or(|k| keys.iter().any(|j| j.kid.as_deref() == Some(k)));
        let fresh = |c: &Cached| c.fetched.is_some_and(|t| t.elapsed() < self.max_age);
        {
            let c = self.cached.read().unwrap_or_else(|p| p.into_inner());
            if fresh(&c) && known(&c.keys) {
                return (c.keys.clone(), None);
            }
        }
        let stale_but_known = {
            let (keys, _) = self.cached();
            known(&keys)
        };
        // A key the cache knows keeps verifying while someone else fetches.
        let mut last_try = if stale_but_known {
            match self.fetching.try_lock() {
                Ok(g) => g,
                Err(_) => return self.cached(),
            }
        } else {
            self.fetching.lock().await
        };
        {
            // Fetched while this one waited?
            let c = self.cached.read().unwrap_or_else(|p| p.into_inner());
            if fresh(&c) && known(&c.keys) {
                return (c.keys.clone(), None);
            }
        }
        if last_try.is_some_and(|t| t.elapsed() < self.min_interval) {
            return self.cached();
        }
        *last_try = Some(Instant::now());
        self.refresh().await;
        self.cached()
    }

    /// The fetch at start: tokens arriving meanwhile wait for it rather than fetch again.
    pub async fn prefetch(&self) {
        let mut last_try = self.fetching.lock().await;
        *last_try = Some(Instant::now());
        self.refresh().await;
    }

    /// Fetches the JWKS now and replaces the cache (on failure the cache stays as it was).
    async fn refresh(&self) {
        let result = self.fetch().await;
        let mut c = self.cached.write().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(keys) => {
                c.keys = Arc::new(keys);
                c.fetched = Some(Instant::now());
                c.error = None;
            }
            Err(e) => {
                log::warn!("xipgate.access.bearer: the issuer's keys: {e}");
                c.error = Some(e.to_string());
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<Jwk>, JwksError> {
        let url = match &self.source {
            Source::Url(u) => u.clone(),
            Source::Discovery { issuer } => {
                let url = format!("{issuer}/.well-known/openid-configuration");
                let doc: Value = serde_json::from_slice(&self.get(&url).await?).map_err(|_| {
                    JwksError::Parse {
                        url: url.clone(),
                        why: "the discovery document is not JSON".into(),
                    }
                })?;
                let found = doc
                    .get("issuer")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if found.trim_end_matches('/') != issuer.trim_end_matches('/') {
                    return Err(JwksError::Issuer {
                        url,
                        found: found.into(),
                        issuer: issuer.clone(),
                    });
                }
                doc.get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| JwksError::Parse {
                        url: url.clone(),
                        why: "the discovery document has no jwks_uri".into(),
                    })?
                    .to_string()
            }
        };
        let body = self.get(&url).await?;
        parse(&body).map_err(|why| JwksError::Parse {
            url,
            why: why.into(),
        })
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, JwksError> {
        let fail = |why: String| JwksError::Fetch {
            url: url.to_string(),
            why,
        };
        let mut resp = self
            .client
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("answered {}", resp.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(fail("larger than 1 MiB".into()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
