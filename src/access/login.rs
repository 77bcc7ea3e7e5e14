//! The login host, `login.<domain>`: one OpenID Connect login (authorization code with
//! PKCE, `state` and `nonce`) that ends in the session cookie for `Domain=<domain>`, so
//! every service and instance host under the domain knows who is asking; and sign-out.
//!
//! Endpoints: `/oauth2/start?rd=`, `/oauth2/callback`, `/oauth2/sign_out?rd=`,
//! `/oauth2/signed_out` (where the provider sends the browser after its own sign-out),
//! `/oauth2/userinfo` (JSON) and `/` (who is signed in).

use std::sync::Arc;
use std::time::Duration;

use ring::rand::SystemRandom;
use serde::{Deserialize, Serialize};

use super::oidc::{self, Exchange, Expect, IdTokenError, OidcError, Provider};
use super::session::{unix_now, Sealer, SessionError, MAX_SEALED};
use super::{cookie, redirect};

/// A login must come back from the provider within this long.
const STATE_TTL: u64 = 600;
/// The state cookie carries the redirect target too; browsers take 4 KB per cookie.
const MAX_STATE: usize = 3000;
/// The kept `id_token` (the sign-out's `id_token_hint`), sealed; dropped when larger.
const MAX_ID_HINT: usize = 3500;
/// Each login in progress has a state cookie of its own (named after its `state`), so
/// two tabs sent to the login at once both come back; past this many, a new login
/// clears the others rather than let the browser's Cookie header grow without bound.
const MAX_PENDING: usize = 4;
/// The characters of `state` that name its cookie.
const STATE_TAG: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("cannot build the identity provider's HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("xipgate.access.login.keys_file: {0}")]
    Keys(#[from] super::session::KeyError),
    #[error("xipgate.access.login.client_secret_file: cannot read {path}: {source}")]
    Secret {
        path: String,
        source: std::io::Error,
    },
}

/// What the login is configured with (`xipgate.access.login`, and where the edge listens).
#[derive(Debug, Clone)]
pub struct LoginSettings {
    pub issuer: String,
    pub client_id: String,
    /// `None`: a public client (PKCE only).
    pub client_secret: Option<String>,
    pub scopes: Vec<String>,
    /// The login host's label under each domain.
    pub host_label: String,
    /// The session cookie's name.
    pub cookie: String,
    pub session_ttl: Duration,
    pub user_claim: String,
    pub groups_claim: String,
    /// `xipgate.domains`, lower-case.
    pub domains: Vec<String>,
    /// The ports the edge serves: the only ones a redirect target may name.
    pub ports: Vec<u16>,
}

/// One request to the login host, as the engine read it.
pub struct LoginRequest<'a> {
    pub method: &'a str,
    /// Lower-case, without port.
    pub host: &'a str,
    /// The port in the request's Host, if any.
    pub port: Option<u16>,
    pub path: &'a str,
    pub query: &'a str,
    /// The client connection is TLS.
    pub tls: bool,
    /// The `Cookie` header values.
    pub cookies: Vec<&'a [u8]>,
}

/// The login host's answer (the engine turns it into its own response).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    /// `location`, `set-cookie` (repeated).
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    fn text(status: u16, message: impl AsRef<str>) -> Self {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: format!("xipgate: {}\n", message.as_ref()),
        }
    }

    fn redirect(to: &str) -> Self {
        let mut r = Reply::text(302, format!("continue at {to}"));
        r.headers.push(("location", to.to_string()));
        r
    }

    fn cookie(mut self, set: String) -> Self {
        self.headers.push(("set-cookie", set));
        self
    }
}

/// What the state cookie holds between `/oauth2/start` and `/oauth2/callback`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct LoginState {
    #[serde(rename = "s")]
    state: String,
    #[serde(rename = "n")]
    nonce: String,
    #[serde(rename = "v")]
    verifier: String,
    #[serde(rename = "r")]
    rd: String,
    #[serde(rename = "x")]
    expires: u64,
}

/// The login: settings, the provider, and the keys that seal the cookies.
pub struct Login {
    s: LoginSettings,
    provider: Provider,
    sealer: Arc<Sealer>,
    rng: SystemRandom,
    /// The JWKS of the identity tokens the edge signs, at `/.well-known/jwks.json`.
    identity_jwks: Option<String>,
}

/// Where one request to the login host came in: scheme, domain and port.
struct Origin<'a> {
    tls: bool,
    domain: &'a str,
    port: Option<u16>,
}

impl Login {
    pub fn new(s: LoginSettings, sealer: Arc<Sealer>) -> Result<Self, LoginError> {
        Ok(Login {
            provider: Provider::new(&s.issuer)?,
            s,
            sealer,
            rng: SystemRandom::new(),
            identity_jwks: None,
        })
    }

    /// Publishes the JWKS of the identity tokens the edge signs, for backends.
    pub fn with_identity_jwks(mut self, jwks: Option<String>) -> Self {
        self.identity_jwks = jwks;
        self
    }

    /// The domain whose login host `host` (lower-case, no port) is.
    pub fn domain_of<'h>(&self, host: &'h str) -> Option<&'h str> {
        let domain = host
            .strip_prefix(self.s.host_label.as_str())?
            .strip_prefix('.')?;
        self.s.domains.iter().any(|d| d == domain).then_some(domain)
    }

    /// A request label that names the login host (it wins over a service of that name).
    pub fn is_login_label(&self, label: &str) -> bool {
        label == self.s.host_label
    }

    /// Keeps the discovery document fresh: at start, again after a failure (backing off)
    /// and before it grows old. Runs until the process ends.
    pub async fn keep_discovered(&self) {
        let mut wait = Duration::from_secs(1);
        loop {
            match self.provider.discovery().await {
                Ok(_) => {
                    wait = Duration::from_secs(1);
                    tokio::time::sleep(oidc::DISCOVERY_TTL).await;
                }
                Err(e) => {
                    log::warn!("{e}; trying again in {}s", wait.as_secs());
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Answers one request to the login host.
    pub async fn handle(&self, req: &LoginRequest<'_>) -> Reply {
        let Some(domain) = self.domain_of(req.host) else {
            return Reply::text(404, "this is not a login host");
        };
        let o = Origin {
            tls: req.tls,
            domain,
            port: req.port.filter(|p| self.s.ports.contains(p)),
        };
        if req.method != "GET" && req.method != "HEAD" {
            let mut r = Reply::text(
                405,
                format!("{} is not supported by the login host", req.method),
            );
            r.headers.push(("allow", "GET, HEAD".into()));
            return r;
        }
        let param = |name: &str| {
            url::form_urlencoded::parse(req.query.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        match req.path {
            "/oauth2/start" => self.start(&o, req, param("rd")).await,
            "/oauth2/callback" => self.callback(&o, req, &param).await,
            "/oauth2/sign_out" => self.sign_out(&o, req, param("rd")).await,
            "/oauth2/signed_out" => match param("state").map(|rd| self.check_rd(&o, &rd)) {
                Some(Ok(rd)) => Reply::redirect(&rd),
                _ => Reply::text(200, "signed out"),
            },
            "/oauth2/userinfo" => self.userinfo(req),
            "/.well-known/jwks.json" => match &self.identity_jwks {
                Some(jwks) => Reply {
                    status: 200,
                    content_type: "application/json",
                    headers: Vec::new(),
                    body: jwks.clone(),
                },
                None => Reply::text(404, "the edge signs no identity token (xipgate.access.identity.jwt is not configured)"),
            },
            "/" => self.page(&o, req),
            _ => Reply::text(
                404,
                format!(
                    "no page at '{}' on the login host; it has /oauth2/start, /oauth2/callback, /oauth2/sign_out, /oauth2/userinfo and /",
                    crate::names::printable(req.path)
                ),
            ),
        }
    }

    fn origin(&self, o: &Origin<'_>) -> String {
        let scheme = if o.tls { "https" } else { "http" };
        let port = o.port.map(|p| format!(":{p}")).unwrap_or_default();
        format!("{scheme}://{}.{}{port}", self.s.host_label, o.domain)
    }

    fn check_rd(&self, o: &Origin<'_>, rd: &str) -> Result<String, String> {
        // Only under the login host's own domain: the session cookie is for that one.
        redirect::check(rd, &[o.domain], &self.s.ports)
            .map(String::from)
            .map_err(|e| format!("the redirect target rd {e}"))
    }

    /// Cookies only the login host gets. Over TLS they carry the `__Host-` prefix, which
    /// a sibling host cannot set (`*.sslip.io` is one site with everyone's hosts).
    fn host_cookie(&self, o: &Origin<'_>, what: &str) -> String {
        let prefix = if o.tls { "__Host-" } else { "" };
        format!("{prefix}{}_{what}", self.s.cookie)
    }

    fn set_cookie(o: &Origin<'_>, name: &str, value: &str, max_age: u64, domain: bool) -> String {
        let domain = if domain {
            format!("; Domain={}", o.domain)
        } else {
            String::new()
        };
        let secure = if o.tls { "; Secure" } else { "" };
        format!("{name}={value}{domain}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
    }

    /// The state cookie of the login whose `state` is `state`.
    fn state_cookie(&self, o: &Origin<'_>, state: &str) -> Option<String> {
        let tag = state.get(..STATE_TAG)?;
        tag.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            .then(|| self.host_cookie(o, &format!("login_{tag}")))
    }

    async fn start(&self, o: &Origin<'_>, req: &LoginRequest<'_>, rd: Option<String>) -> Reply {
        let rd = rd.unwrap_or_else(|| format!("{}/", self.origin(o)));
        let rd = match self.check_rd(o, &rd) {
            Ok(rd) => rd,
            Err(why) => return Reply::text(400, why),
        };
        let doc = match self.provider.discovery().await {
            Ok(d) => d,
            Err(e) => return unavailable_at_start(&e),
        };
        let fresh = || oidc::random_token(&self.rng);
        let (Some(state), Some(nonce), Some(verifier)) = (fresh(), fresh(), fresh()) else {
            return Reply::text(500, "no random numbers available");
        };
        let Some(name) = self.state_cookie(o, &state) else {
            return Reply::text(500, "a state without its cookie's name");
        };
        let kept = LoginState {
            state: state.clone(),
            nonce: nonce.clone(),
            verifier: verifier.clone(),
            rd,
            expires: unix_now() + STATE_TTL,
        };
        let sealed = match self.sealer.seal_value(&name, &kept, MAX_STATE) {
            Ok(v) => v,
            Err(_) => return Reply::text(400, "the redirect target rd is too long"),
        };
        let Ok(mut to) = url::Url::parse(&doc.authorization_endpoint) else {
            return unavailable(&OidcError::BadDiscovery {
                issuer: self.s.issuer.clone(),
                why: "has no valid authorization_endpoint".into(),
            });
        };
        to.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.s.client_id)
            .append_pair(
                "redirect_uri",
                &format!("{}/oauth2/callback", self.origin(o)),
            )
            .append_pair("scope", &self.s.scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &oidc::challenge(&verifier))
            .append_pair("code_challenge_method", "S256");
        let mut reply = Reply::redirect(to.as_str());
        let pending = self.host_cookie(o, "login_");
        let others = cookie_names(&req.cookies, &pending);
        if others.len() >= MAX_PENDING {
            for other in others {
                reply = reply.cookie(Self::set_cookie(o, &other, "", 0, false));
            }
        }
        reply.cookie(Self::set_cookie(o, &name, &sealed, STATE_TTL, false))
    }

    async fn callback(
        &self,
        o: &Origin<'_>,
        req: &LoginRequest<'_>,
        param: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Reply {
        let state = param("state").unwrap_or_default();
        let Some(name) = self.state_cookie(o, &state) else {
            return Reply::text(400, "missing or malformed query parameter 'state'");
        };
        let clear_state = Self::set_cookie(o, &name, "", 0, false);
        let refuse =
            |status: u16, why: String| Reply::text(status, why).cookie(clear_state.clone());
        if let Some(error) = param("error") {
            let described = param("error_description").unwrap_or_default();
            return refuse(
                403,
                format!(
                    "the identity provider refused the login: {} {}",
                    crate::names::printable(&error),
                    crate::names::printable(&described)
                ),
            );
        }
        let Some(value) = cookie::find(req.cookies.iter().copied(), &name) else {
            return refuse(400, format!("no login with this state is in progress in this browser: the state cookie {name} is missing (it lasts {} minutes and is used once); start again at the page you wanted", STATE_TTL / 60));
        };
        let kept: LoginState = match self.sealer.open_value(&name, value, MAX_STATE) {
            Ok(k) => k,
            Err(e) => {
                return refuse(
                    400,
                    format!("the state cookie {name} is refused: {}", state_error(&e)),
                )
            }
        };
        let now = unix_now();
        if kept.expires <= now {
            return refuse(
                400,
                format!(
                    "the login took longer than {} minutes; start again",
                    STATE_TTL / 60
                ),
            );
        }
        // Compared in full, though the cookie was found by the state's first characters.
        if state != kept.state {
            return refuse(
                400,
                "the 'state' parameter is not this browser's login: a forged or crossed callback"
                    .into(),
            );
        }
        let Some(code) = param("code") else {
            return refuse(400, "missing query parameter 'code'".into());
        };
        let doc = match self.provider.discovery().await {
            Ok(d) => d,
            Err(e) => return unavailable(&e),
        };
        let redirect_uri = format!("{}/oauth2/callback", self.origin(o));
        let exchange = Exchange {
            code: &code,
            redirect_uri: &redirect_uri,
            verifier: &kept.verifier,
            client_id: &self.s.client_id,
            client_secret: self.s.client_secret.as_deref(),
        };
        let id_token = match self.provider.exchange(&doc, &exchange).await {
            Ok(t) => t,
            Err(e) => return refuse(502, e.to_string()),
        };
        let expect = Expect {
            issuer: self.provider.issuer(),
            client_id: &self.s.client_id,
            nonce: &kept.nonce,
            now,
        };
        if let Err(e) = self.provider.verify_signature(&id_token).await {
            return refuse(502, OidcError::from(e).to_string());
        }
        let claims = match oidc::check_id_token(&id_token, &expect) {
            Ok(c) => c,
            Err(e @ IdTokenError::Nonce) => return refuse(400, OidcError::from(e).to_string()),
            Err(e) => return refuse(502, OidcError::from(e).to_string()),
        };
        let ttl = self.s.session_ttl.as_secs();
        let session =
            match oidc::session_from(&claims, &self.s.user_claim, &self.s.groups_claim, now, ttl) {
                Ok(s) => s,
                Err(e) => return refuse(502, OidcError::from(e).to_string()),
            };
        let sealed = match self.sealer.seal(&self.s.cookie, &session) {
            Ok(v) => v,
            Err(SessionError::TooLarge(n)) => {
                return refuse(500, format!("signed in as '{}', but the session would be {n} bytes, more than the {MAX_SEALED} a session cookie may take: the provider gives {} groups ({}); send fewer groups to this client", crate::names::printable(&session.user), session.groups.len(), self.s.groups_claim))
            }
            Err(e) => return refuse(500, e.to_string()),
        };
        let mut reply = Reply::redirect(&kept.rd)
            .cookie(Self::set_cookie(o, &self.s.cookie, &sealed, ttl, true))
            .cookie(clear_state);
        // Kept for the provider's sign-out (its `id_token_hint`), on the login host only.
        let hint = self.host_cookie(o, "id");
        if let Ok(v) = self.sealer.seal_value(&hint, &id_token, MAX_ID_HINT) {
            reply = reply.cookie(Self::set_cookie(o, &hint, &v, ttl, false));
        }
        reply
    }

    async fn sign_out(&self, o: &Origin<'_>, req: &LoginRequest<'_>, rd: Option<String>) -> Reply {
        let rd = match rd.map(|rd| self.check_rd(o, &rd)) {
            Some(Ok(rd)) => rd,
            Some(Err(why)) => return Reply::text(400, why),
            None => format!("{}/", self.origin(o)),
        };
        let hint_name = self.host_cookie(o, "id");
        let hint: Option<String> = cookie::find(req.cookies.iter().copied(), &hint_name)
            .and_then(|v| self.sealer.open_value(&hint_name, v, MAX_ID_HINT).ok());
        // The edge's session ends whatever the provider says; the provider's session
        // ends too when it has an end_session_endpoint, or the next login would sign the
        // browser straight back in.
        let to = match self
            .provider
            .discovery()
            .await
            .ok()
            .and_then(|d| d.end_session_endpoint.clone())
        {
            Some(end) => match url::Url::parse(&end) {
                Ok(mut u) => {
                    u.query_pairs_mut()
                        .append_pair("client_id", &self.s.client_id)
                        .append_pair(
                            "post_logout_redirect_uri",
                            &format!("{}/oauth2/signed_out", self.origin(o)),
                        )
                        .append_pair("state", &rd);
                    if let Some(h) = &hint {
                        u.query_pairs_mut().append_pair("id_token_hint", h);
                    }
                    u.to_string()
                }
                Err(_) => rd,
            },
            None => rd,
        };
        Reply::redirect(&to)
            .cookie(Self::set_cookie(o, &self.s.cookie, "", 0, true))
            .cookie(Self::set_cookie(o, &hint_name, "", 0, false))
    }
}

/// The names of the cookies in `headers` that start with `prefix`.
fn cookie_names(headers: &[&[u8]], prefix: &str) -> Vec<String> {
    headers
        .iter()
        .filter_map(|h| std::str::from_utf8(h).ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.split_once('=').map(|(k, _)| k.trim()))
        .filter(|k| k.starts_with(prefix))
        .map(String::from)
        .collect()
}

/// Seconds after which a client may try again when the provider cannot be used.
const RETRY_SECS: &str = "5";

fn unavailable(e: &OidcError) -> Reply {
    let mut r = Reply::text(503, e.to_string());
    r.headers.push(("retry-after", RETRY_SECS.into()));
    r
}

/// As [`unavailable`], for the start of a login, which a browser is looking at: `Refresh`
/// makes it ask again by itself (same `rd`), so a provider that was starting or restarting
/// costs the user a few seconds instead of a dead end.
fn unavailable_at_start(e: &OidcError) -> Reply {
    let mut r = unavailable(e);
    r.headers.push(("refresh", RETRY_SECS.into()));
    r
}

fn state_error(e: &SessionError) -> &'static str {
    match e {
        SessionError::Foreign => {
            "it was not sealed by this edge (forged or tampered, or its key was rotated out)"
        }
        _ => "it is malformed",
    }
}

mod page;
#[cfg(test)]
mod tests;
