//! The OpenID Connect provider as the login sees it: its discovery document (fetched in
//! the background and on demand, cached), the code exchange at its token endpoint, and
//! the checks of the `id_token` it returns (pure, below the I/O).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::jwks::{Keys, Source};
use super::jwt::{self, Alg, TokenError};
use super::session::Session;

/// How long a provider may take to answer one request.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// A discovery document is fetched again after this long (keys and endpoints move rarely).
pub(super) const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// After a failed fetch, requests wait this long before asking the provider again, so a
/// provider that is down is not asked once per login attempt.
const DISCOVERY_RETRY: Duration = Duration::from_secs(2);
/// Clock difference allowed when checking `exp` and `iat`.
const LEEWAY: u64 = 60;

#[derive(Debug, Clone, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider {issuer} cannot be reached: {why}")]
    Unreachable { issuer: String, why: String },
    #[error("the identity provider {issuer}'s discovery document {why}")]
    BadDiscovery { issuer: String, why: String },
    #[error("the identity provider's token endpoint refused the code: {0}")]
    Token(String),
    #[error("the provider's id_token is refused: {0}")]
    IdToken(#[from] IdTokenError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("it is not a JWT")]
    Malformed,
    #[error("it is not signed (alg none)")]
    Unsigned,
    #[error("its issuer is '{0}', not the configured one")]
    Issuer(String),
    #[error("its audience does not include this client")]
    Audience,
    #[error("it names another authorized party (azp)")]
    AuthorizedParty,
    #[error("it has expired")]
    Expired,
    #[error("its nonce is not this login's: a replayed or injected code")]
    Nonce,
    #[error("it names no user (no '{0}' claim and no 'sub')")]
    NoUser(String),
    #[error("its signature: {0}")]
    Signature(TokenError),
}

/// What the login needs from the discovery document.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
}

struct Cached {
    doc: Option<(Arc<Discovery>, Instant)>,
    failed: Option<(OidcError, Instant)>,
}

/// The provider: its issuer URL, the cached discovery document, its signing keys, the
/// HTTP client.
pub struct Provider {
    issuer: String,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<Cached>,
    keys: Keys,
}

impl Provider {
    pub fn new(issuer: &str) -> Result<Self, reqwest::Error> {
        Ok(Provider {
            issuer: issuer.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(PROVIDER_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            cache: tokio::sync::Mutex::new(Cached {
                doc: None,
                failed: None,
            }),
            keys: Keys::new(
                Source::Discovery {
                    issuer: issuer.trim_end_matches('/').to_string(),
                },
                super::bearer::DEFAULT_JWKS_MAX_AGE,
            ),
        })
    }

    /// Checks the `id_token`'s signature against the provider's keys (its JWKS, cached;
    /// fetched again for an unknown `kid`). The token came straight from the token
    /// endpoint, which OpenID Connect Core 3.1.3.7 step 6 accepts instead; the provider's
    /// endpoints may be plain HTTP inside a cluster, so the signature is checked anyway.
    pub async fn verify_signature(&self, token: &str) -> Result<(), IdTokenError> {
        let parsed = jwt::parse(token, &Alg::ALL).map_err(IdTokenError::Signature)?;
        let (keys, fetch_error) = self.keys.for_kid(parsed.kid.as_deref()).await;
        match parsed.verify(&keys) {
            Ok(()) => Ok(()),
            Err(TokenError::UnknownKey(kid)) if fetch_error.is_some() => {
                Err(IdTokenError::Signature(TokenError::UnknownKeyUnfetched {
                    kid,
                    why: fetch_error.unwrap_or_default(),
                }))
            }
            Err(e) => Err(IdTokenError::Signature(e)),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The discovery document: cached, fetched when missing or old. One fetch at a time;
    /// within [`DISCOVERY_RETRY`] of a failure, that failure is the answer.
    pub async fn discovery(&self) -> Result<Arc<Discovery>, OidcError> {
        let mut cache = self.cache.lock().await;
        if let Some((doc, at)) = &cache.doc {
            if at.elapsed() < DISCOVERY_TTL {
                return Ok(doc.clone());
            }
        }
        if let Some((e, at)) = &cache.failed {
            if at.elapsed() < DISCOVERY_RETRY {
                return Err(e.clone());
            }
        }
        match self.fetch_discovery().await {
            Ok(doc) => {
                let doc = Arc::new(doc);
                cache.doc = Some((doc.clone(), Instant::now()));
                cache.failed = None;
                Ok(doc)
            }
            // An old document is better than none while the provider is away.
            Err(e) => match &cache.doc {
                Some((doc, _)) => Ok(doc.clone()),
                None => {
                    cache.failed = Some((e.clone(), Instant::now()));
                    Err(e)
                }
            },
        }
    }

    async fn fetch_discovery(&self) -> Result<Discovery, OidcError> {
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let unreachable = |why: String| OidcError::Unreachable {
            issuer: self.issuer.clone(),
            why,
        };
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| unreachable(causes(&e.without_url())))?;
        if !resp.status().is_success() {
            return Err(unreachable(format!("{url} answered {}", resp.status())));
        }
        let bad = |why: String| OidcError::BadDiscovery {
            issuer: self.issuer.clone(),
            why,
        };
        let doc: Discovery = resp
            .json()
            .await
            .map_err(|e| bad(format!("is not one: {}", e.without_url())))?;
        // OpenID Connect Discovery 4.3: the document must be the issuer's own.
        if doc.issuer.trim_end_matches('/') != self.issuer {
            return Err(bad(format!(
                "names issuer '{}' (it must be the configured one)",
                doc.issuer
            )));
        }
        Ok(doc)
    }

    /// Exchanges `code` at the token endpoint (client_secret_basic when there is a secret,
    /// a public client otherwise) and returns the `id_token`.
    pub async fn exchange(&self, doc: &Discovery, x: &Exchange<'_>) -> Result<String, OidcError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", x.code),
            ("redirect_uri", x.redirect_uri),
            ("code_verifier", x.verifier),
        ];
        let mut req = self.http.post(&doc.token_endpoint);
        match x.client_secret {
            // RFC 6749 2.3.1: both are form-encoded before they go into Basic.
            Some(secret) => {
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                req = req.basic_auth(enc(x.client_id), Some(enc(secret)));
            }
            None => form.push(("client_id", x.client_id)),
        }
        let resp = req
            .form(&form)
            .send()
            .await
            .map_err(|e| OidcError::Token(e.without_url().to_string()))?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .map_err(|e| OidcError::Token(format!("{status}, {}", e.without_url())))?;
        if !status.is_success() {
            let text = |k: &str| {
                body.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            return Err(OidcError::Token(format!(
                "{status} {} {}",
                text("error"),
                text("error_description")
            )));
        }
        body.get("id_token")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| OidcError::Token("the answer carries no id_token".into()))
    }
}

/// One code exchange.
pub struct Exchange<'a> {
    pub code: &'a str,
    pub redirect_uri: &'a str,
    pub verifier: &'a str,
    pub client_id: &'a str,
    pub client_secret: Option<&'a str>,
}

/// A fresh random value for `state`, `nonce` and the PKCE verifier: 32 bytes, base64url
/// (43 characters, as RFC 7636 4.1 asks of a verifier).
pub fn random_token(rng: &SystemRandom) -> Option<String> {
    let mut b = [0u8; 32];
    rng.fill(&mut b).ok()?;
    Some(URL_SAFE_NO_PAD.encode(b))
}

/// The PKCE `code_challenge` for `verifier` (method S256, RFC 7636 4.2).
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()))
}

/// What the `id_token` must say.
pub struct Expect<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub now: u64,
}

/// The `id_token`'s claims, checked (OpenID Connect Core 3.1.3.7): the issuer, the
/// audience (with `azp` when there are several), expiry and the nonce. The signature is
/// [`Provider::verify_signature`]'s.
pub fn check_id_token(token: &str, e: &Expect<'_>) -> Result<Map<String, Value>, IdTokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(IdTokenError::Malformed);
    };
    let part = |p: &str| -> Result<Map<String, Value>, IdTokenError> {
        let raw = URL_SAFE_NO_PAD
            .decode(p.trim_end_matches('='))
            .map_err(|_| IdTokenError::Malformed)?;
        serde_json::from_slice(&raw).map_err(|_| IdTokenError::Malformed)
    };
    let header = part(header)?;
    match header.get("alg").and_then(Value::as_str) {
        None => return Err(IdTokenError::Malformed),
        Some(a) if a.eq_ignore_ascii_case("none") => return Err(IdTokenError::Unsigned),
        Some(_) => {}
    }
    let claims = part(payload)?;
    let s = |k: &str| claims.get(k).and_then(Value::as_str);
    let iss = s("iss").unwrap_or("");
    if iss.trim_end_matches('/') != e.issuer.trim_end_matches('/') {
        return Err(IdTokenError::Issuer(crate::names::printable(iss)));
    }
    let aud: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !aud.contains(&e.client_id) {
        return Err(IdTokenError::Audience);
    }
    if (aud.len() > 1 || s("azp").is_some()) && s("azp") != Some(e.client_id) {
        return Err(IdTokenError::AuthorizedParty);
    }
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    if exp + LEEWAY <= e.now {
        return Err(IdTokenError::Expired);
    }
    // Compared in constant time: the nonce is the login's secret.
    let nonce = s("nonce").unwrap_or("");
    if !constant_time_eq(nonce.as_bytes(), e.nonce.as_bytes()) {
        return Err(IdTokenError::Nonce);
    }
    Ok(claims)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The session for checked claims: the user from `user_claim` (else `sub`), the email,
/// the groups from `groups_claim` (a list, or one string), ending `ttl` seconds from now.
pub fn session_from(
    claims: &Map<String, Value>,
    user_claim: &str,
    groups_claim: &str,
    now: u64,
    ttl: u64,
) -> Result<Session, IdTokenError> {
    let s = |k: &str| {
        claims
            .get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    let user = s(user_claim)
        .or_else(|| s("sub"))
        .ok_or_else(|| IdTokenError::NoUser(user_claim.to_string()))?;
    let groups = match claims.get(groups_claim) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        Some(Value::String(g)) => vec![g.clone()],
        _ => Vec::new(),
    };
    Ok(Session {
        user: user.to_string(),
        email: s("email").map(String::from),
        groups,
        expires: now + ttl,
    })
}

/// An error and its causes on one line: reqwest's own text is only "error sending request";
/// the causes say "connection refused" or "operation timed out".
fn causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(c) = next {
        s.push_str(": ");
        s.push_str(&c.to_string());
        next = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let rng = SystemRandom::new();
        let (a, b) = (random_token(&rng).unwrap(), random_token(&rng).unwrap());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
    }

    fn jwt(header: Value, claims: Value) -> String {
        let enc = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
        format!("{}.{}.c2ln", enc(&header), enc(&claims))
    }

    fn good() -> Value {
        json!({"iss": "https://idp.test", "aud": "xipgate", "exp": 2000, "nonce": "n1",
               "sub": "alice-id", "preferred_username": "alice", "email": "a@x.test",
               "groups": ["devs", "ops"]})
    }

    #[test]
    fn id_token_claims_are_checked() {
        let e = Expect {
            issuer: "https://idp.test",
            client_id: "xipgate",
            nonce: "n1",
            now: 1000,
        };
        let rs = json!({"alg": "RS256", "kid": "k"});
        let with = |k: &str, v: Value| {
            let mut c = good();
            c[k] = v;
            jwt(rs.clone(), c)
        };
        use IdTokenError::*;
        let cases: Vec<(String, Result<(), IdTokenError>)> = vec![
            (jwt(rs.clone(), good()), Ok(())),
            (
                with("aud", json!(["other", "xipgate"])),
                Err(AuthorizedParty),
            ),
            (
                {
                    let mut c = good();
                    c["aud"] = json!(["other", "xipgate"]);
                    c["azp"] = json!("xipgate");
                    jwt(rs.clone(), c)
                },
                Ok(()),
            ),
            (
                with("iss", json!("https://evil.test")),
                Err(Issuer("https://evil.test".into())),
            ),
            (with("aud", json!("other")), Err(Audience)),
            (with("aud", json!(["other"])), Err(Audience)),
            (with("exp", json!(900)), Err(Expired)),
            // Within the leeway.
            (with("exp", json!(990)), Ok(())),
            (with("nonce", json!("n2")), Err(Nonce)),
            (
                {
                    let mut c = good();
                    c.as_object_mut().unwrap().remove("nonce");
                    jwt(rs.clone(), c)
                },
                Err(Nonce),
            ),
            (jwt(json!({"alg": "none"}), good()), Err(Unsigned)),
            ("a.b".into(), Err(Malformed)),
            ("a.b.c.d".into(), Err(Malformed)),
            ("!!.!!.!!".into(), Err(Malformed)),
        ];
        for (token, want) in cases {
            assert_eq!(check_id_token(&token, &e).map(|_| ()), want, "{token}");
        }
    }

    #[test]
    fn the_session_takes_the_configured_claims() {
        let c = good();
        let c = c.as_object().unwrap();
        let s = session_from(c, "preferred_username", "groups", 100, 60).unwrap();
        assert_eq!(s.user, "alice");
        assert_eq!(s.email.as_deref(), Some("a@x.test"));
        assert_eq!(s.groups, ["devs", "ops"]);
        assert_eq!(s.expires, 160);
        // No such claim: the subject.
        let s = session_from(c, "upn", "roles", 100, 60).unwrap();
        assert_eq!(s.user, "alice-id");
        assert!(s.groups.is_empty());
        let one = json!({"sub": "bob", "roles": "admins"});
        let s = session_from(one.as_object().unwrap(), "name", "roles", 0, 1).unwrap();
        assert_eq!(
            (s.user.as_str(), s.groups),
            ("bob", vec!["admins".to_string()])
        );
        let none = json!({"email": "x"});
        assert_eq!(
            session_from(none.as_object().unwrap(), "name", "g", 0, 1),
            Err(IdTokenError::NoUser("name".into()))
        );
    }
}
