//! `xipgate.access`: who may reach which service, instance and path. The file's shape
//! ([`AccessFile`]) and its checked form ([`AccessConfig`]); the rules themselves are
//! [`crate::access`]'s types, made here once so the proxy never sees an unchecked one.
//!
//! The file's structs are in `file.rs`, the checks that turn them into the typed form in
//! `check.rs`.

mod check;
mod file;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::access::jwt::Alg;
use crate::access::{Grant, Matcher, PathPattern, Rule};

/// A session lasts this long after the login, then the browser signs in again.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// The session cookie's name (one cookie, for `Domain=<domain>`).
pub const DEFAULT_SESSION_COOKIE: &str = "_xipgate";
/// The label of the login host under each domain: `login.<domain>` takes the callback.
pub const DEFAULT_LOGIN_LABEL: &str = "login";
pub const DEFAULT_USER_CLAIM: &str = "preferred_username";
pub const DEFAULT_GROUPS_CLAIM: &str = "groups";
/// `exp`/`nbf` of a bearer token are checked with this much clock difference allowed.
pub const DEFAULT_TOKEN_LEEWAY: Duration = Duration::from_secs(30);
/// Algorithms a bearer token may be signed with (never `none`, never HMAC).
pub const DEFAULT_TOKEN_ALGORITHMS: [&str; 3] = ["RS256", "ES256", "PS256"];
pub const DEFAULT_BASIC_REALM: &str = "xipgate";
pub const DEFAULT_USER_HEADER: &str = "X-Forwarded-User";
pub const DEFAULT_EMAIL_HEADER: &str = "X-Forwarded-Email";
pub const DEFAULT_GROUPS_HEADER: &str = "X-Forwarded-Groups";
/// The header carrying the identity as a JWT the edge signed.
pub const DEFAULT_IDENTITY_JWT_HEADER: &str = "X-Xipgate-Identity";
/// An identity token the edge signs is valid this long.
pub const DEFAULT_IDENTITY_JWT_TTL: Duration = Duration::from_secs(60);
/// The group whose members may use an instance's actuator beyond health, info, prometheus.
pub const DEFAULT_OPERATORS_GROUP: &str = "operators";
/// Where the login's client secret is read from when no `client_secret_file` is given.
pub const CLIENT_SECRET_ENV: &str = "XIPGATE_OIDC_CLIENT_SECRET";
/// The methods a rule means when it names none.
pub const ANY_METHOD: &str = "*";

pub(in crate::config) use check::check_access;
pub use file::*;
/// `xipgate.access`, checked.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    pub trusted_proxies: Vec<IpNet>,
    pub rules: Vec<Rule>,
    pub login: Option<LoginConfig>,
    pub bearer: Option<BearerConfig>,
    pub basic: Option<BasicConfig>,
    pub identity: IdentityConfig,
    /// `None`: the built-in actuator policy is off.
    pub actuator: Option<ActuatorConfig>,
}

impl AccessConfig {
    /// No rules: every request is let through, as before access rules existed.
    pub fn is_open(&self) -> bool {
        self.rules.is_empty()
    }

    /// The policy in one line, as `xipgate -t` prints it and the console shows it.
    pub fn summary(&self) -> String {
        if self.is_open() {
            return OPEN_SUMMARY.to_string();
        }
        let n = self.rules.len();
        let mut parts = vec![format!("{n} rule{}", if n == 1 { "" } else { "s" })];
        let mut ways = Vec::new();
        if let Some(l) = &self.login {
            ways.push(format!("login at {} (cookie {})", l.issuer, l.cookie));
        }
        if let Some(b) = &self.bearer {
            ways.push(format!("bearer tokens from {}", b.issuer));
        }
        if let Some(b) = &self.basic {
            ways.push(format!("basic credentials from {}", b.htpasswd.display()));
        }
        parts.push(if ways.is_empty() {
            "no login, bearer or basic configured (rules allow by client address only)".into()
        } else {
            ways.join(", ")
        });
        parts.push(match &self.actuator {
            Some(a) => format!("actuator policy on (operators: {})", a.operators.join(", ")),
            None => "actuator policy off".into(),
        });
        if !self.trusted_proxies.is_empty() {
            let t: Vec<String> = self
                .trusted_proxies
                .iter()
                .map(ToString::to_string)
                .collect();
            parts.push(format!("X-Forwarded-For believed from {}", t.join(", ")));
        }
        parts.join("; ")
    }
}

/// What an edge without rules is, in words (start, `xipgate -t`, the console, the API).
pub const OPEN_SUMMARY: &str = "open: no rules, anyone who reaches the edge reaches every pod";

#[derive(Debug, Clone)]
pub struct LoginConfig {
    pub issuer: String,
    pub client_id: String,
    pub client_secret_file: Option<PathBuf>,
    pub scopes: Vec<String>,
    pub host_label: String,
    pub cookie: String,
    pub session_ttl: Duration,
    pub keys_file: PathBuf,
    pub user_claim: String,
    pub groups_claim: String,
}

#[derive(Debug, Clone)]
pub struct BearerConfig {
    pub issuer: String,
    pub jwks_url: Option<String>,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Alg>,
    pub leeway: Duration,
    pub user_claim: String,
    pub groups_claim: String,
    pub jwks_max_age: Duration,
}

#[derive(Debug, Clone)]
pub struct BasicConfig {
    pub htpasswd: PathBuf,
    pub realm: String,
}

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub user_header: String,
    pub email_header: String,
    pub groups_header: String,
    pub jwt: Option<IdentityJwtConfig>,
}

#[derive(Debug, Clone)]
pub struct IdentityJwtConfig {
    pub header: String,
    pub ttl: Duration,
    pub key_file: PathBuf,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            user_header: DEFAULT_USER_HEADER.into(),
            email_header: DEFAULT_EMAIL_HEADER.into(),
            groups_header: DEFAULT_GROUPS_HEADER.into(),
            jwt: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ActuatorConfig {
    pub operators: Vec<String>,
}

impl LoginConfig {
    /// The login host's handler; reads the session keys and the client secret (from
    /// `client_secret_file`, else env [`CLIENT_SECRET_ENV`]; neither: a public client).
    /// `ports`: the ones the edge serves (redirect targets may name only those).
    pub fn login(
        &self,
        domains: &[String],
        ports: Vec<u16>,
    ) -> Result<crate::access::Login, crate::access::LoginError> {
        use crate::access::{session::Sealer, Login, LoginError, LoginSettings};
        let client_secret = match &self.client_secret_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| LoginError::Secret {
                        path: path.display().to_string(),
                        source,
                    })?
                    .trim()
                    .to_string(),
            ),
            None => std::env::var(CLIENT_SECRET_ENV).ok(),
        }
        .filter(|s| !s.is_empty());
        let settings = LoginSettings {
            issuer: self.issuer.clone(),
            client_id: self.client_id.clone(),
            client_secret,
            scopes: self.scopes.clone(),
            host_label: self.host_label.clone(),
            cookie: self.cookie.clone(),
            session_ttl: self.session_ttl,
            user_claim: self.user_claim.clone(),
            groups_claim: self.groups_claim.clone(),
            domains: domains.to_vec(),
            ports,
        };
        let sealer = Sealer::from_file(&self.keys_file)?;
        Login::new(settings, std::sync::Arc::new(sealer))
    }
}

impl AccessConfig {
    /// The gate the engines hold; reads the session keys.
    pub fn gate(&self) -> Result<crate::access::Gate, crate::access::GateError> {
        let session = match &self.login {
            Some(l) => Some(crate::access::SessionCookie {
                name: l.cookie.clone(),
                sealer: crate::access::session::Sealer::from_file(&l.keys_file)?,
            }),
            None => None,
        };
        let mut gate = crate::access::Gate::new(
            self.policy(),
            self.trusted_proxies.clone(),
            [
                &self.identity.user_header,
                &self.identity.email_header,
                &self.identity.groups_header,
            ],
            session,
        );
        if let Some(b) = &self.bearer {
            let bearer = crate::access::bearer::Bearer::new(
                crate::access::jwt::Expect {
                    issuer: b.issuer.clone(),
                    audiences: b.audiences.clone(),
                    algorithms: b.algorithms.clone(),
                    leeway: b.leeway.as_secs(),
                    user_claim: b.user_claim.clone(),
                    groups_claim: b.groups_claim.clone(),
                },
                b.jwks_url.clone(),
                b.jwks_max_age,
            );
            bearer.fetch_in_background();
            gate = gate.with_bearer(bearer);
        }
        if let Some(b) = &self.basic {
            gate = gate.with_basic(crate::access::basic::Basic::load(&b.htpasswd)?);
        }
        if let Some(l) = &self.login {
            gate = gate.with_login_label(&l.host_label);
        }
        if let Some(j) = &self.identity.jwt {
            let signer = crate::access::signed::Signer::from_file(&j.key_file, j.ttl.as_secs())?;
            gate = gate.with_signer(signer, &j.header);
        }
        Ok(gate)
    }

    /// The JWKS of the identity tokens the edge signs, published for backends (the same
    /// keys [`AccessConfig::gate`] signs with; `None` when not configured or unreadable,
    /// which `gate` reports).
    pub fn identity_jwks(&self) -> Option<String> {
        let j = self.identity.jwt.as_ref()?;
        crate::access::signed::Signer::from_file(&j.key_file, j.ttl.as_secs())
            .ok()
            .map(|s| s.jwks().to_string())
    }

    /// The decision's view of this config (see [`crate::access::decide`]).
    pub fn policy(&self) -> crate::access::Policy {
        crate::access::Policy {
            rules: self.rules.clone(),
            actuator_operators: self.actuator.as_ref().map(|a| a.operators.clone()),
            login: self.login.is_some(),
            basic_realm: self.basic.as_ref().map(|b| b.realm.clone()),
            bearer: self.bearer.is_some(),
        }
    }
}
