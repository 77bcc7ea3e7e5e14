//! `Authorization: Bearer`: a JWT checked against the issuer's keys ([`super::jwks`]) and
//! the configured claims ([`super::jwt`]).

use std::sync::Arc;
use std::time::Duration;

use super::jwks::{Keys, Source};
use super::jwt::{self, Expect, TokenError};
use super::Identity;

/// The JWKS is fetched again when the cache is older than this, so a key the issuer
/// withdrew stops verifying even when no token names a new one.
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(300);

pub struct Bearer {
    expect: Expect,
    keys: Arc<Keys>,
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

    /// Who the token says is asking, or why it is refused. `now`: seconds since the epoch.
    pub async fn check(&self, token: &str, now: u64) -> Result<Identity, TokenError> {
        let parsed = jwt::parse(token, &self.expect.algorithms)?;
        let (keys, fetch_error) = self.keys.for_kid(parsed.kid.as_deref()).await;
        match parsed.verify(&keys) {
            Err(TokenError::UnknownKey(kid)) if fetch_error.is_some() => {
                return Err(TokenError::UnknownKeyUnfetched {
                    kid,
                    why: fetch_error.unwrap_or_default(),
                })
            }
            r => r?,
        }
        parsed.identity(&self.expect, now)
    }
}

#[cfg(test)]
mod tests;
