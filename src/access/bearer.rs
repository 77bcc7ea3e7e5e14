//! `Authorization: Bearer`: a JWT checked against the issuer's keys ([`super::jwks`]) and
//! the configured claims ([`super::jwt`]).

use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::Ordering;

pub use cache::{BearerStats, CACHE_MAX_ENTRIES};

use super::jwks::{Keys, Source};
use super::jwt::{self, Expect, TokenError};
use super::Identity;

/// The JWKS is fetched again when the cache is older than this, so a key the issuer
/// withdrew stops verifying even when no token names a new one.
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(300);

pub struct Bearer {
    expect: Expect,
    keys: Arc<Keys>,
    /// Tokens that verified (see [`cache`]).
    verified: cache::Verified,
    pub stats: Arc<BearerStats>,
}

impl Bearer {
    /// `jwks_url`: where the keys are; `None`: the issuer's discovery document says.
    pub fn new(expect: Expect, jwks_url: Option<String>, max_age: Duration) -> Self {
        let source = match jwks_url {
            Some(u) => Source::Url(u),
            None => Source::Discovery {
                issuer: expect.issuer.clone(),
            },
        };
        Bearer {
            expect,
            keys: Arc::new(Keys::new(source, max_age)),
            verified: cache::Verified::new(),
            stats: Arc::default(),
        }
    }

    #[cfg(test)]
    fn with_min_interval(mut self, d: Duration) -> Self {
        if let Some(k) = Arc::get_mut(&mut self.keys) {
            k.min_interval = d;
        }
        self
    }

    /// Fetches the keys in the background, on a thread of its own (this may run before any
    /// runtime exists); the first tokens wait for it.
    pub fn fetch_in_background(&self) {
        let keys = self.keys.clone();
        let started = std::thread::Builder::new()
            .name("xipgate-jwks".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(keys.prefetch()),
                    Err(e) => {
                        log::warn!("xipgate.access.bearer: no runtime to fetch the keys: {e}")
                    }
                }
            });
        if let Err(e) = started {
            log::warn!("xipgate.access.bearer: no thread to fetch the keys: {e}");
        }
    }

    /// The identity of a token that verified before, without I/O: `None` when it did not
    /// (or expired, or its key left the issuer's key set, or the keys are due a refetch),
    /// and [`Bearer::check`] must judge it.
    pub fn cached(&self, token: &str, now: u64) -> Option<Identity> {
        let keys = self.keys.fresh()?;
        let who = self.verified.get(token, now, &keys)?;
        self.stats.cached.fetch_add(1, Ordering::Relaxed);
        Some(who)
    }

    /// Who the token says is asking, or why it is refused. `now`: seconds since the epoch.
    pub async fn check(&self, token: &str, now: u64) -> Result<Identity, TokenError> {
        if let Some(who) = self.cached(token, now) {
            return Ok(who);
        }
        let r = self.verify(token, now).await;
        let n = if r.is_ok() {
            &self.stats.verified
        } else {
            &self.stats.refused
        };
        n.fetch_add(1, Ordering::Relaxed);
        r
    }

    async fn verify(&self, token: &str, now: u64) -> Result<Identity, TokenError> {
        let parsed = jwt::parse(token, &self.expect.algorithms)?;
        let (keys, fetch_error) = self.keys.for_kid(parsed.kid.as_deref()).await;
        let key = match parsed.verifying_key(&keys) {
            Err(TokenError::UnknownKey(kid)) if fetch_error.is_some() => {
                return Err(TokenError::UnknownKeyUnfetched {
                    kid,
                    why: fetch_error.unwrap_or_default(),
                })
            }
            r => r?,
        };
        let who = parsed.identity(&self.expect, now)?;
        self.verified
            .put(token, &parsed.claims, self.expect.leeway, now, key, &who);
        Ok(who)
    }
}

mod cache;
#[cfg(test)]
mod tests;
