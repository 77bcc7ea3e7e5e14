//! `xipgate.access` exactly as a user writes it (every key optional, unknown keys refused).

use serde::Deserialize;

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
