//! Bearer tokens: a compact JWS (RFC 7515) checked against the issuer's public keys and
//! the configured claims. Pure: the keys come from [`super::jwks`], the time from the caller.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

use super::{Identity, Via};

/// The signature algorithms a token may use: RSA and ECDSA only (never `none`, never HMAC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
}

impl Alg {
    pub const ALL: [Alg; 8] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
    ];

    pub fn parse(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A public key from the issuer's JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// Modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An uncompressed point (`04 || x || y`) on P-256.
    P256(Vec<u8>),
    /// An uncompressed point on P-384.
    P384(Vec<u8>),
}

impl Key {
    /// What the key is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Key::Rsa { .. } => "an RSA key",
            Key::P256(_) => "an EC P-256 key",
            Key::P384(_) => "an EC P-384 key",
        }
    }

    /// Whether this key can verify `alg` at all (an RSA key never verifies ES256, ...).
    pub fn fits(&self, alg: Alg) -> bool {
        matches!(
            (self, alg),
            (
                Key::Rsa { .. },
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
            ) | (Key::P256(_), Alg::ES256)
                | (Key::P384(_), Alg::ES384)
        )
    }

    fn verify(&self, alg: Alg, message: &[u8], sig: &[u8]) -> bool {
        let rsa = |params: &'static signature::RsaParameters, n: &[u8], e: &[u8]| {
            RsaPublicKeyComponents { n, e }
                .verify(params, message, sig)
                .is_ok()
        };
        match (self, alg) {
            (Key::Rsa { n, e }, Alg::RS256) => rsa(&signature::RSA_PKCS1_2048_8192_SHA256, n, e),
            (Key::Rsa { n, e }, Alg::RS384) => rsa(&signature::RSA_PKCS1_2048_8192_SHA384, n, e),
            (Key::Rsa { n, e }, Alg::RS512) => rsa(&signature::RSA_PKCS1_2048_8192_SHA512, n, e),
            (Key::Rsa { n, e }, Alg::PS256) => rsa(&signature::RSA_PSS_2048_8192_SHA256, n, e),
            (Key::Rsa { n, e }, Alg::PS384) => rsa(&signature::RSA_PSS_2048_8192_SHA384, n, e),
            (Key::Rsa { n, e }, Alg::PS512) => rsa(&signature::RSA_PSS_2048_8192_SHA512, n, e),
            (Key::P256(point), Alg::ES256) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            (Key::P384(point), Alg::ES384) => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            _ => false,
        }
    }
}

/// One key of a JWKS, as far as it matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The JWK's own `alg`, when it names one: the token must use exactly that.
    pub alg: Option<String>,
    pub key: Key,
}

/// What a token must satisfy (from `xipgate.access.bearer`).
#[derive(Debug, Clone)]
pub struct Expect {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Alg>,
    /// Seconds of clock difference allowed on `exp` and `nbf`.
    pub leeway: u64,
    pub user_claim: String,
    pub groups_claim: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a JWT: {0}")]
    Malformed(&'static str),
    #[error("algorithm {0} is not allowed (allowed: {1})")]
    Algorithm(String, String),
    #[error("the token's header marks '{0}' critical, which is not understood")]
    Critical(String),
    #[error("token type '{0}' is not an access token")]
    Type(String),
    #[error("unknown key id '{0}' (not in the issuer's JWKS)")]
    UnknownKey(String),
    #[error(
        "unknown key id '{kid}' (not in the issuer's JWKS, which could not be fetched: {why})"
    )]
    UnknownKeyUnfetched { kid: String, why: String },
    #[error("no key of the issuer's JWKS verifies this token")]
    NoKey,
    #[error("key '{kid}' is {kind} for {key_alg}, so it cannot verify {alg}")]
    KeyMismatch {
        kid: String,
        kind: &'static str,
        key_alg: String,
        alg: Alg,
    },
    #[error("bad signature")]
    Signature,
    #[error("issuer '{0}' is not '{1}'")]
    Issuer(String, String),
    #[error("audience {0} is not one of {1}")]
    Audience(String, String),
    #[error("the token has no exp (expiry)")]
    NoExpiry,
    #[error("token expired at {0}")]
    Expired(String),
    #[error("token not valid before {0}")]
    NotYetValid(String),
    #[error("claim '{0}' {1}")]
    Claim(String, &'static str),
    #[error("the token has neither '{0}' nor 'sub': no user")]
    NoUser(String),
}

/// A token split and decoded, its signature not yet checked.
#[derive(Debug)]
pub struct Parsed<'t> {
    pub alg: Alg,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
    signing_input: &'t [u8],
    signature: Vec<u8>,
}

/// The longest token looked at: far beyond any real one, short of a memory exhaustion.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Splits and decodes a compact JWS and judges its header against the allowed algorithms.
pub fn parse<'t>(token: &'t str, allowed: &[Alg]) -> Result<Parsed<'t>, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed("longer than 16 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "a signed JWT has three parts separated by '.'",
        ));
    };
    let b64 = |part: &str, what: &'static str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| TokenError::Malformed(what))
    };
    let header: Map<String, Value> =
        serde_json::from_slice(&b64(h, "the header is not base64url")?)
            .map_err(|_| TokenError::Malformed("the header is not a JSON object"))?;
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(TokenError::Malformed("the header has no alg"))?;
    let allowed_names = || {
        allowed
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let alg = Alg::parse(alg_name)
        .filter(|a| allowed.contains(a))
        .ok_or_else(|| TokenError::Algorithm(alg_name.to_string(), allowed_names()))?;
    if let Some(crit) = header.get("crit") {
        // RFC 7515 4.1.11: a recipient must refuse extensions it does not understand, and
        // none is understood here.
        return Err(TokenError::Critical(crit.to_string()));
    }
    if let Some(typ) = header.get("typ") {
        let t = typ.as_str().unwrap_or_default().to_ascii_lowercase();
        let t = t.strip_prefix("application/").unwrap_or(&t);
        if t != "jwt" && t != "at+jwt" {
            return Err(TokenError::Type(typ.to_string()));
        }
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(TokenError::Malformed("kid is not a string")),
    };
    let claims: Map<String, Value> =
        serde_json::from_slice(&b64(p, "the payload is not base64url")?)
            .map_err(|_| TokenError::Malformed("the payload is not a JSON object"))?;
    Ok(Parsed {
        alg,
        kid,
        claims,
        signing_input: &token.as_bytes()[..h.len() + 1 + p.len()],
        signature: b64(s, "the signature is not base64url")?,
    })
}

impl Parsed<'_> {
    /// Checks the signature with the key of the token's `kid` (or, without a `kid`, any key
    /// that can verify its algorithm). `keys` is the issuer's whole JWKS.
    pub fn verify(&self, keys: &[Jwk]) -> Result<(), TokenError> {
        self.verifying_key(keys).map(|_| ())
    }

    /// As [`Parsed::verify`], and which key verified the token.
    pub fn verifying_key<'k>(&self, keys: &'k [Jwk]) -> Result<&'k Jwk, TokenError> {
        let usable = |k: &Jwk| -> Result<(), TokenError> {
            let alg_ok = k.alg.as_deref().is_none_or(|a| a == self.alg.as_str());
            if k.key.fits(self.alg) && alg_ok {
                Ok(())
            } else {
                Err(TokenError::KeyMismatch {
                    kid: k.kid.clone().unwrap_or_default(),
                    kind: k.key.kind(),
                    key_alg: k.alg.clone().unwrap_or_else(|| "any algorithm".into()),
                    alg: self.alg,
                })
            }
        };
        match &self.kid {
            Some(kid) => {
                let k = keys
                    .iter()
                    .find(|k| k.kid.as_deref() == Some(kid))
                    .ok_or_else(|| TokenError::UnknownKey(kid.clone()))?;
                usable(k)?;
                if k.key.verify(self.alg, self.signing_input, &self.signature) {
                    Ok(k)
                } else {
                    Err(TokenError::Signature)
                }
            }
            None => {
                let mut fitting = keys.iter().filter(|k| usable(k).is_ok()).peekable();
                if fitting.peek().is_none() {
                    return Err(TokenError::NoKey);
                }
                fitting
                    .find(|k| k.key.verify(self.alg, self.signing_input, &self.signature))
                    .ok_or(TokenError::Signature)
            }
        }
    }

    /// Checks `iss`, `aud`, `exp` and `nbf` at `now` (seconds since the epoch), and reads
    /// the identity.
    pub fn identity(&self, expect: &Expect, now: u64) -> Result<Identity, TokenError> {
        let c = &self.claims;
        let iss = c.get("iss").and_then(Value::as_str).unwrap_or_default();
        if iss.trim_end_matches('/') != expect.issuer.trim_end_matches('/') {
            return Err(TokenError::Issuer(iss.into(), expect.issuer.clone()));
        }
        let aud: Vec<&str> = match c.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !aud.iter().any(|a| expect.audiences.iter().any(|e| e == a)) {
            let quoted = |v: &mut dyn Iterator<Item = &str>| {
                v.map(|a| format!("'{a}'")).collect::<Vec<_>>().join(", ")
            };
            let shown = if aud.is_empty() {
                "(none)".to_string()
            } else {
                quoted(&mut aud.iter().copied())
            };
            return Err(TokenError::Audience(
                shown,
                quoted(&mut expect.audiences.iter().map(String::as_str)),
            ));
        }
        let time = |name: &str| -> Result<Option<u64>, TokenError> {
            match c.get(name) {
                None => Ok(None),
                // Fractions are allowed by RFC 7519 (NumericDate); seconds are enough here.
                Some(v) => v
                    .as_f64()
                    .filter(|t| *t >= 0.0)
                    .map(|t| Some(t as u64))
                    .ok_or_else(|| TokenError::Claim(name.into(), "is not a time")),
            }
        };
        let exp = time("exp")?.ok_or(TokenError::NoExpiry)?;
        if now >= exp.saturating_add(expect.leeway) {
            return Err(TokenError::Expired(timestamp(exp)));
        }
        if let Some(nbf) = time("nbf")? {
            if now.saturating_add(expect.leeway) < nbf {
                return Err(TokenError::NotYetValid(timestamp(nbf)));
            }
        }
        let string = |name: &str| {
            c.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let user = string(&expect.user_claim)
            .or_else(|| string("sub"))
            .ok_or_else(|| TokenError::NoUser(expect.user_claim.clone()))?;
        Ok(Identity {
            user: user.to_string(),
            email: string("email").map(String::from),
            groups: groups(c.get(&expect.groups_claim)),
            via: Via::Bearer,
        })
    }
}

/// A groups claim: an array of strings, or one string of names separated by spaces or commas.
pub fn groups(claim: Option<&Value>) -> Vec<String> {
    match claim {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        Some(Value::String(s)) => s
            .split([' ', ','])
            .filter(|g| !g.is_empty())
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

fn timestamp(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

#[cfg(test)]
mod tests;
