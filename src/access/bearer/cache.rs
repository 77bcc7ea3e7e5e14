//! Tokens that verified, remembered so that the same token shown again costs a hash and a
//! map lookup instead of a signature check. Keyed by SHA-256 of the whole token (a token is
//! a long random-looking string: its hash tells nothing usable); only successes are kept.

use std::sync::atomic::AtomicU64;

use dashmap::DashMap;
use ring::digest;
use serde_json::{Map, Value};

use super::super::jwt::Jwk;
use super::super::Identity;

/// At most this many verified tokens are remembered; when full, all are forgotten at once
/// (simple, and the next showing of each token verifies it again).
pub const CACHE_MAX_ENTRIES: usize = 10_000;

/// How many bearer checks verified a signature, were answered from the cache, or were
/// refused (`xipgate_access_bearer_checks_total`).
#[derive(Debug, Default)]
pub struct BearerStats {
    pub verified: AtomicU64,
    pub cached: AtomicU64,
    pub refused: AtomicU64,
}

struct Entry {
    who: Identity,
    /// `exp` + leeway: the token is served until then (exclusive), as the check refuses it
    /// from then on.
    until: u64,
    /// The key that verified it: the entry is served only while the issuer's current key
    /// set still holds this very key (same `kid`, same key material).
    key: Jwk,
}

pub struct Verified {
    map: DashMap<[u8; 32], Entry>,
}

fn tag(token: &str) -> [u8; 32] {
    let mut t = [0u8; 32];
    t.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    t
}

fn time(claims: &Map<String, Value>, name: &str) -> Option<u64> {
    claims
        .get(name)
        .and_then(Value::as_f64)
        .filter(|t| *t >= 0.0)
        .map(|t| t as u64)
}

impl Verified {
    pub fn new() -> Self {
        Verified {
            map: DashMap::new(),
        }
    }

    /// The identity of `token` when it verified before, is not expired at `now` and its key
    /// is among `keys` (the issuer's current key set).
    pub fn get(&self, token: &str, now: u64, keys: &[Jwk]) -> Option<Identity> {
        let t = tag(token);
        let e = self.map.get(&t)?;
        if now < e.until && keys.contains(&e.key) {
            return Some(e.who.clone());
        }
        let expired = now >= e.until;
        drop(e);
        if expired {
            self.map.remove(&t);
        }
        None
    }

    /// Remembers a token that just verified with `key` and gave `who`. A token whose `nbf`
    /// is still ahead of `now` is not remembered (it is taken within the leeway only).
    pub fn put(
        &self,
        token: &str,
        claims: &Map<String, Value>,
        leeway: u64,
        now: u64,
        key: &Jwk,
        who: &Identity,
    ) {
        let Some(exp) = time(claims, "exp") else {
            return;
        };
        if time(claims, "nbf").is_some_and(|nbf| nbf > now) {
            return;
        }
        if self.map.len() >= CACHE_MAX_ENTRIES {
            self.map.clear();
        }
        self.map.insert(
            tag(token),
            Entry {
                who: who.clone(),
                until: exp.saturating_add(leeway),
                key: key.clone(),
            },
        );
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}
