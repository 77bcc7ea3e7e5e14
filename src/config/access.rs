//! `xipgate.access`: who may reach which service, instance and path. The file's shape
//! ([`AccessFile`]) and its checked form ([`AccessConfig`]); the rules themselves are
//! [`crate::access`]'s types, made here once so the proxy never sees an unchecked one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::validate::Checker;
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessFile {
    /// Peers whose X-Forwarded-For is believed (read right to left past them).
    pub trusted_proxies: Option<Vec<String>>,
    /// First match wins; a request no rule matches is refused once any rule exists.
    pub rules: Option<Vec<RuleFile>>,
    /// One login for every host (OpenID Connect).
    pub login: Option<LoginFile>,
    /// JWT bearer tokens for programs.
    pub bearer: Option<BearerFile>,
    /// Basic auth from an htpasswd file (bcrypt).
    pub basic: Option<BasicFile>,
    /// What backends learn about who asked.
    pub identity: Option<IdentityFile>,
    /// The built-in actuator policy (on by default when rules exist).
    pub actuator: Option<ActuatorFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// Shown in the console, the explain API, metrics and the access log.
    pub name: Option<String>,
    // What it matches; a missing key matches everything.
    pub domains: Option<Vec<String>>,
    pub services: Option<Vec<String>>,
    pub instances: Option<Vec<String>>,
    /// `/api/` (a prefix at a segment boundary) or a glob with `*` (one segment) and `**`.
    pub paths: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    // What it allows.
    pub public: Option<bool>,
    pub deny: Option<bool>,
    pub clients: Option<Vec<String>>,
    pub users: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
    /// Any signed-in identity.
    pub authenticated: Option<bool>,
    /// Accept htpasswd credentials for this rule.
    pub basic: Option<bool>,
    /// Accept bearer tokens for this rule.
    pub bearer: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginFile {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    /// The client secret, in a file (a mounted Secret) or env XIPGATE_OIDC_CLIENT_SECRET.
    pub client_secret_file: Option<String>,
    pub scopes: Option<Vec<String>>,
    /// Label of the login host under each domain (default `login`).
    pub host: Option<String>,
    pub cookie: Option<String>,
    pub session_ttl: Option<String>,
    /// Cookie keys, one per line (base64 of 32 bytes): the first seals, all open.
    pub keys_file: Option<String>,
    pub user_claim: Option<String>,
    pub groups_claim: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BearerFile {
    pub issuer: Option<String>,
    /// Default: the issuer's discovery document's `jwks_uri`.
    pub jwks_url: Option<String>,
    pub audiences: Option<Vec<String>>,
    pub algorithms: Option<Vec<String>>,
    pub leeway: Option<String>,
    /// The claim naming the user (default `preferred_username`, else `sub`).
    pub user_claim: Option<String>,
    /// The claim listing the groups (an array, or names separated by spaces or commas).
    pub groups_claim: Option<String>,
    /// The issuer's keys are fetched again when the cached copy is older than this.
    pub jwks_max_age: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicFile {
    pub htpasswd: Option<String>,
    pub realm: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityFile {
    pub user_header: Option<String>,
    pub email_header: Option<String>,
    pub groups_header: Option<String>,
    /// The identity as a short-lived JWT the edge signs, for backends to verify.
    pub jwt: Option<IdentityJwtFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityJwtFile {
    pub header: Option<String>,
    pub ttl: Option<String>,
    /// P-256 PKCS#8 PEM keys: the first signs, all are published.
    pub key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActuatorFile {
    pub enabled: Option<bool>,
    pub operators: Option<Vec<String>>,
}

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

/// `xipgate.access`, checked; `_listen` is kept for checks that need the listeners.
pub(super) fn check_access(
    c: &mut Checker,
    f: Option<&AccessFile>,
    _listen: &[SocketAddr],
) -> AccessConfig {
    let Some(f) = f else {
        return AccessConfig::default();
    };
    let trusted_proxies = f
        .trusted_proxies
        .as_deref()
        .map(|t| c.cidrs("xipgate.access.trusted_proxies", t))
        .unwrap_or_default();
    let rules: Vec<Rule> = f
        .rules
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, r)| check_rule(c, i, r))
        .collect();
    let login = f.login.as_ref().and_then(|l| check_login(c, l));
    let bearer = f.bearer.as_ref().and_then(|b| check_bearer(c, b));
    let basic = f.basic.as_ref().and_then(|b| {
        let Some(path) = b.htpasswd.as_deref().filter(|p| !p.trim().is_empty()) else {
            c.err("xipgate.access.basic.htpasswd", "is required");
            return None;
        };
        // Read now too, so `xipgate -t` reports a file the edge could not start with.
        if let Err(e) = crate::access::basic::Basic::load(std::path::Path::new(path)) {
            c.err("xipgate.access.basic.htpasswd", e.to_string());
        }
        Some(BasicConfig {
            htpasswd: PathBuf::from(path),
            realm: b
                .realm
                .clone()
                .unwrap_or_else(|| DEFAULT_BASIC_REALM.into()),
        })
    });
    let identity = f
        .identity
        .as_ref()
        .map(|i| IdentityConfig {
            user_header: header_name(
                c,
                "user_header",
                i.user_header.as_deref(),
                DEFAULT_USER_HEADER,
            ),
            email_header: header_name(
                c,
                "email_header",
                i.email_header.as_deref(),
                DEFAULT_EMAIL_HEADER,
            ),
            groups_header: header_name(
                c,
                "groups_header",
                i.groups_header.as_deref(),
                DEFAULT_GROUPS_HEADER,
            ),
            jwt: i.jwt.as_ref().and_then(|j| check_identity_jwt(c, j)),
        })
        .unwrap_or_default();
    let actuator_on = f.actuator.as_ref().and_then(|a| a.enabled).unwrap_or(true);
    let actuator = (actuator_on && !rules.is_empty()).then(|| ActuatorConfig {
        operators: f
            .actuator
            .as_ref()
            .and_then(|a| a.operators.clone())
            .unwrap_or_else(|| vec![DEFAULT_OPERATORS_GROUP.into()]),
    });
    for (i, r) in rules.iter().enumerate() {
        let key = format!("xipgate.access.rules[{i}]");
        if let Some(j) = rules[..i].iter().position(|earlier| earlier.name == r.name) {
            c.err(&format!("{key}.name"), format!("'{}' is rules[{j}]'s name too: a name says which rule decided (console, access log, metrics)", r.name));
        }
        if r.name.starts_with("actuator:") || r.name == "no-rule" || r.name == "ambiguous-path" {
            c.err(&format!("{key}.name"), format!("'{}' is the name of a built-in rule (actuator:<endpoint>, no-rule, ambiguous-path)", r.name));
        }
        if r.grant.needs_identity_from_login() && login.is_none() && bearer.is_none() {
            c.err(&key, "names users, groups or authenticated, but neither xipgate.access.login nor xipgate.access.bearer is configured to say who anyone is");
        }
        if r.grant.basic && basic.is_none() {
            c.err(
                &key,
                "accepts basic credentials, but xipgate.access.basic is not configured",
            );
        }
        if r.grant.bearer && bearer.is_none() {
            c.err(
                &key,
                "accepts bearer tokens, but xipgate.access.bearer is not configured",
            );
        }
        if let Some(j) = rules[..i]
            .iter()
            .position(|earlier| earlier.matcher.covers(&r.matcher))
        {
            c.err(&key, format!("no request can reach it: rules[{j}] matches every request it matches, and the first match wins"));
        }
    }
    AccessConfig {
        trusted_proxies,
        rules,
        login,
        bearer,
        basic,
        identity,
        actuator,
    }
}

fn check_identity_jwt(c: &mut Checker, j: &IdentityJwtFile) -> Option<IdentityJwtConfig> {
    let key = "xipgate.access.identity.jwt";
    let header = header_name(
        c,
        "jwt.header",
        j.header.as_deref(),
        DEFAULT_IDENTITY_JWT_HEADER,
    );
    let ttl = c.duration(
        &format!("{key}.ttl"),
        j.ttl.as_ref(),
        DEFAULT_IDENTITY_JWT_TTL,
    );
    let Some(file) = j.key_file.as_deref().filter(|f| !f.trim().is_empty()) else {
        c.err(&format!("{key}.key_file"), "is required: the P-256 key the edge signs with (openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256)");
        return None;
    };
    // Read now too, so `xipgate -t` reports a key the edge could not start with.
    if let Err(e) =
        crate::access::signed::Signer::from_file(std::path::Path::new(file), ttl.as_secs())
    {
        c.err(&format!("{key}.key_file"), e.to_string());
    }
    Some(IdentityJwtConfig {
        header,
        ttl,
        key_file: PathBuf::from(file),
    })
}

fn header_name(c: &mut Checker, key: &str, raw: Option<&str>, default: &str) -> String {
    let v = raw.unwrap_or(default).trim();
    if http::header::HeaderName::from_bytes(v.as_bytes()).is_err() {
        c.err(
            &format!("xipgate.access.identity.{key}"),
            format!("'{v}' is not a header name"),
        );
    }
    v.to_string()
}

fn check_rule(c: &mut Checker, i: usize, r: &RuleFile) -> Option<Rule> {
    let key = format!("xipgate.access.rules[{i}]");
    let name = r.name.clone().unwrap_or_else(|| format!("rules[{i}]"));
    let lower = |v: &Option<Vec<String>>| -> Vec<String> {
        v.iter()
            .flatten()
            .map(|s| s.trim().trim_end_matches('.').to_ascii_lowercase())
            .collect()
    };
    let mut paths = Vec::new();
    for (j, p) in r.paths.iter().flatten().enumerate() {
        match PathPattern::parse(p) {
            Ok(pat) => paths.push(pat),
            Err(why) => c.err(&format!("{key}.paths[{j}]"), format!("'{p}': {why}")),
        }
    }
    let mut methods = Vec::new();
    for (j, m) in r.methods.iter().flatten().enumerate() {
        let m = m.trim().to_ascii_uppercase();
        if m == ANY_METHOD {
            continue;
        }
        if http::Method::from_bytes(m.as_bytes()).is_err() || m.is_empty() {
            c.err(
                &format!("{key}.methods[{j}]"),
                format!("'{m}' is not a method"),
            );
        }
        methods.push(m);
    }
    let clients = r
        .clients
        .as_deref()
        .map(|cl| c.cidrs(&format!("{key}.clients"), cl))
        .unwrap_or_default();
    let grant = Grant {
        public: r.public.unwrap_or(false),
        deny: r.deny.unwrap_or(false),
        clients,
        users: r.users.clone().unwrap_or_default(),
        groups: r.groups.clone().unwrap_or_default(),
        authenticated: r.authenticated.unwrap_or(false),
        basic: r.basic.unwrap_or(false),
        bearer: r.bearer.unwrap_or(false),
    };
    if grant.deny && (grant.public || grant.needs_identity() || !grant.clients.is_empty()) {
        c.err(&key, "deny: true cannot also allow (public, clients, users, groups, authenticated, basic, bearer)");
    }
    if grant.public && (grant.needs_identity() || !grant.clients.is_empty()) {
        c.err(&key, "public: true allows everyone; clients, users, groups, authenticated, basic and bearer would mean nothing");
    }
    if !grant.deny && !grant.public && !grant.needs_identity() && grant.clients.is_empty() {
        c.err(&key, "allows nobody: give public, deny, clients, users, groups, authenticated, basic or bearer");
    }
    Some(Rule {
        name,
        matcher: Matcher {
            domains: lower(&r.domains),
            services: lower(&r.services),
            instances: lower(&r.instances),
            paths,
            methods,
        },
        grant,
    })
}

fn check_login(c: &mut Checker, l: &LoginFile) -> Option<LoginConfig> {
    let key = "xipgate.access.login";
    let issuer = required_url(c, &format!("{key}.issuer"), l.issuer.as_deref());
    let client_id = l.client_id.clone().filter(|s| !s.trim().is_empty());
    if client_id.is_none() {
        c.err(&format!("{key}.client_id"), "is required");
    }
    let keys_file = l.keys_file.clone().filter(|s| !s.trim().is_empty());
    match &keys_file {
        None => c.err(
            &format!("{key}.keys_file"),
            "is required: every replica must seal and open sessions with the same key (a mounted Secret)",
        ),
        // Read now, so `xipgate -t` finds a missing or bad key before a start would.
        Some(k) => {
            if let Err(e) = crate::access::session::Sealer::from_file(std::path::Path::new(k)) {
                c.err(&format!("{key}.keys_file"), e.to_string());
            }
        }
    }
    if let Some(f) = &l.client_secret_file {
        if let Err(e) = std::fs::metadata(f) {
            c.err(
                &format!("{key}.client_secret_file"),
                format!("cannot read {f}: {e}"),
            );
        }
    }
    let session_ttl = c.duration(
        &format!("{key}.session_ttl"),
        l.session_ttl.as_ref(),
        DEFAULT_SESSION_TTL,
    );
    let host_label = l.host.clone().unwrap_or_else(|| DEFAULT_LOGIN_LABEL.into());
    if crate::names::normalize_request_label(&host_label).as_deref() != Some(host_label.as_str()) {
        c.err(
            &format!("{key}.host"),
            format!("'{host_label}' is not one DNS label"),
        );
    }
    Some(LoginConfig {
        issuer: issuer?,
        client_id: client_id?,
        client_secret_file: l.client_secret_file.as_ref().map(PathBuf::from),
        scopes: l
            .scopes
            .clone()
            .unwrap_or_else(|| ["openid", "profile", "email"].map(String::from).to_vec()),
        host_label,
        cookie: l
            .cookie
            .clone()
            .unwrap_or_else(|| DEFAULT_SESSION_COOKIE.into()),
        session_ttl,
        keys_file: PathBuf::from(keys_file?),
        user_claim: l
            .user_claim
            .clone()
            .unwrap_or_else(|| DEFAULT_USER_CLAIM.into()),
        groups_claim: l
            .groups_claim
            .clone()
            .unwrap_or_else(|| DEFAULT_GROUPS_CLAIM.into()),
    })
}

fn check_bearer(c: &mut Checker, b: &BearerFile) -> Option<BearerConfig> {
    let key = "xipgate.access.bearer";
    let issuer = required_url(c, &format!("{key}.issuer"), b.issuer.as_deref());
    let mut algorithms = Vec::new();
    let names = b
        .algorithms
        .clone()
        .unwrap_or_else(|| DEFAULT_TOKEN_ALGORITHMS.map(String::from).to_vec());
    for (i, a) in names.iter().enumerate() {
        match Alg::parse(a.trim()) {
            Some(alg) => algorithms.push(alg),
            None => c.err(
                &format!("{key}.algorithms[{i}]"),
                format!("'{a}' is not allowed: only RS256/384/512, PS256/384/512, ES256 and ES384 (never none, never HMAC)"),
            ),
        }
    }
    if names.is_empty() {
        c.err(
            &format!("{key}.algorithms"),
            "is empty: no token could be verified",
        );
    }
    let audiences = b.audiences.clone().unwrap_or_default();
    if audiences.is_empty() {
        c.err(
            &format!("{key}.audiences"),
            "is required: a token meant for another program must not open this edge",
        );
    }
    Some(BearerConfig {
        issuer: issuer?,
        jwks_url: b
            .jwks_url
            .as_deref()
            .map(str::trim)
            .filter(|u| {
                let ok = url::Url::parse(u).is_ok_and(|p| {
                    matches!(p.scheme(), "http" | "https") && p.host_str().is_some()
                });
                if !ok {
                    c.err(
                        &format!("{key}.jwks_url"),
                        format!("'{u}' must be an http:// or https:// URL"),
                    );
                }
                ok
            })
            .map(String::from),
        audiences,
        algorithms,
        leeway: c.duration(
            &format!("{key}.leeway"),
            b.leeway.as_ref(),
            DEFAULT_TOKEN_LEEWAY,
        ),
        user_claim: claim(
            c,
            &format!("{key}.user_claim"),
            b.user_claim.as_deref(),
            DEFAULT_USER_CLAIM,
        ),
        groups_claim: claim(
            c,
            &format!("{key}.groups_claim"),
            b.groups_claim.as_deref(),
            DEFAULT_GROUPS_CLAIM,
        ),
        jwks_max_age: c.duration(
            &format!("{key}.jwks_max_age"),
            b.jwks_max_age.as_ref(),
            crate::access::bearer::DEFAULT_JWKS_MAX_AGE,
        ),
    })
}

fn claim(c: &mut Checker, key: &str, raw: Option<&str>, default: &str) -> String {
    let v = raw.unwrap_or(default).trim();
    if v.is_empty() {
        c.err(key, "is empty: name a claim");
    }
    v.to_string()
}

fn required_url(c: &mut Checker, key: &str, raw: Option<&str>) -> Option<String> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        c.err(key, "is required");
        return None;
    };
    match url::Url::parse(raw) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            Some(raw.trim_end_matches('/').to_string())
        }
        _ => {
            c.err(key, format!("'{raw}' must be an http:// or https:// URL"));
            None
        }
    }
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
