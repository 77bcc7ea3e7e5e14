//! `xipgate.access`'s file structs checked into the typed config, every problem named
//! with its key.

use super::*;
use crate::config::validate::Checker;

/// `xipgate.access`, checked; `_listen` is kept for checks that need the listeners.
pub(in crate::config) fn check_access(
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
