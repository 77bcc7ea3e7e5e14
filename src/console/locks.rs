//! The access policy on the console: whether the edge is open, the lock on every service
//! and instance (which rule applies to `GET /` there), and `/api/v1/access/explain`, the
//! "why was I refused" tool. Every answer comes from [`access::explain`], which takes the
//! engines' own steps ([`access::begin`], [`access::finish`]).

use serde_json::{json, Value};

use super::api::{error, json_answer};
use super::Console;
use crate::access::{self, Explanation, Facts, Simulated, Via};
use crate::answer::Answer;
use crate::names;
use crate::routes::{Route, Service, Target};

/// `path` at most, in bytes: a request line is bounded too (Pingora's head limit).
pub const MAX_PATH_BYTES: usize = 2048;
/// `method` at most, in bytes.
pub const MAX_METHOD_BYTES: usize = 32;
/// `user` and each group at most, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Groups at most (`groups=a,b,c`).
pub const MAX_GROUPS: usize = 32;
/// `client` at most, in bytes (the longest IPv6 text is 45).
const MAX_CLIENT_BYTES: usize = 64;

/// What `GET /` on the service host gets from an unknown client without credentials.
pub fn service_lock(console: &Console, s: &Service) -> Explanation {
    access::lock(
        &console.policy,
        &facts(console, &s.label, None, s.actuator_bases()),
    )
}

/// What `GET /` on the instance host gets from an unknown client without credentials.
pub fn instance_lock(console: &Console, t: &Target) -> Explanation {
    access::lock(
        &console.policy,
        &facts(console, &t.service_label, Some(&t.label), &t.actuator_bases),
    )
}

fn facts<'a>(
    console: &'a Console,
    service: &'a str,
    instance: Option<&'a str>,
    bases: &'a [String],
) -> Facts<'a> {
    Facts {
        domain: &console.links.domain,
        service,
        instance,
        path: "/",
        method: "GET",
        client: access::NEUTRAL_CLIENT,
        page_load: false,
        actuator_bases: bases,
    }
}

/// The lock as the API shows it beside a service or an instance.
pub fn lock_json(e: &Explanation) -> Value {
    json!({
        "rule": e.rule,
        "decision": e.decision,
        "status": e.status,
        "needs": e.needs,
    })
}

/// `/api/v1/access`: open or not, how many rules, how identities are shown, and who the
/// asking browser's session says is signed in (`signed_in`, `null` when nobody).
pub fn summary_json(console: &Console, who: Option<&access::Identity>) -> Value {
    let p = &console.policy;
    json!({
        "signed_in": who.map(|w| json!({"user": w.user, "email": w.email, "groups": w.groups})),
        "open": p.rules.is_empty(),
        "rules": p.rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        "summary": console.access_summary,
        "login": p.login,
        "bearer": p.bearer,
        "basic": p.basic_realm.is_some(),
        "actuator_operators": p.actuator_operators,
    })
}

/// A parameter of `/api/v1/access/explain` the tool cannot use, named.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExplainError {
    #[error("missing query parameter 'host' (the Host a request is sent with)")]
    NoHost,
    #[error("query parameter 'host': {0}")]
    Host(String),
    #[error("query parameter '{0}' may be at most {1} bytes (got {2})")]
    TooLong(&'static str, usize, usize),
    #[error("query parameter 'path' must start with / (got '{0}')")]
    Path(String),
    #[error("query parameter 'method' is not a method (got '{0}')")]
    Method(String),
    #[error("query parameter 'client' is not an IP address (got '{0}')")]
    Client(String),
    #[error("query parameter 'groups' may name at most {MAX_GROUPS} groups (got {0})")]
    Groups(usize),
    #[error("query parameter 'groups' is given without 'user'")]
    GroupsWithoutUser,
    #[error("query parameter 'via' must be session, bearer or basic (got '{0}')")]
    Via(String),
    #[error("unknown query parameter '{0}': host, path, method, client, user, groups, via")]
    Unknown(String),
}

/// What `/api/v1/access/explain` asks.
#[derive(Debug, Clone, PartialEq)]
pub struct Asked {
    pub host: String,
    pub path: String,
    pub method: String,
    pub client: std::net::IpAddr,
    pub user: Option<String>,
    pub groups: Vec<String>,
    pub via: Option<Via>,
}

impl Asked {
    pub fn parse(query: &str) -> Result<Asked, ExplainError> {
        let mut host = None;
        let mut out = Asked {
            host: String::new(),
            path: "/".into(),
            method: "GET".into(),
            client: access::NEUTRAL_CLIENT,
            user: None,
            groups: Vec::new(),
            via: None,
        };
        let bounded = |name: &'static str, v: &str, max: usize| {
            if v.len() > max {
                Err(ExplainError::TooLong(name, max, v.len()))
            } else {
                Ok(v.trim().to_string())
            }
        };
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "host" => host = Some(bounded("host", &v, names::MAX_HOST_LEN + 6)?),
                "path" => {
                    let p = bounded("path", &v, MAX_PATH_BYTES)?;
                    // The query, if given, is no part of what rules match.
                    let p = p.split('?').next().unwrap_or("").to_string();
                    if !p.starts_with('/') {
                        return Err(ExplainError::Path(names::printable(&p)));
                    }
                    out.path = p;
                }
                "method" => {
                    let m = bounded("method", &v, MAX_METHOD_BYTES)?.to_ascii_uppercase();
                    if m.is_empty() || http::Method::from_bytes(m.as_bytes()).is_err() {
                        return Err(ExplainError::Method(names::printable(&m)));
                    }
                    out.method = m;
                }
                "client" => {
                    let c = bounded("client", &v, MAX_CLIENT_BYTES)?;
                    out.client = c
                        .parse()
                        .map_err(|_| ExplainError::Client(names::printable(&c)))?;
                }
                "user" => {
                    let u = bounded("user", &v, MAX_NAME_BYTES)?;
                    out.user = (!u.is_empty()).then_some(u);
                }
                "groups" => {
                    let named = v.split(',').filter(|g| !g.trim().is_empty()).count();
                    if named > MAX_GROUPS {
                        return Err(ExplainError::Groups(named));
                    }
                    out.groups = v
                        .split(',')
                        .map(|g| bounded("groups", g, MAX_NAME_BYTES))
                        .filter(|g| g.as_ref().map_or(true, |g| !g.is_empty()))
                        .collect::<Result<_, _>>()?;
                }
                "via" => {
                    out.via = Some(match v.trim() {
                        "session" => Via::Session,
                        "bearer" => Via::Bearer,
                        "basic" => Via::Basic,
                        other => return Err(ExplainError::Via(names::printable(other))),
                    })
                }
                // The console's own token (checked before this).
                "token" => {}
                other => {
                    return Err(ExplainError::Unknown(
                        names::printable(other).chars().take(64).collect(),
                    ))
                }
            }
        }
        out.host = host.filter(|h| !h.is_empty()).ok_or(ExplainError::NoHost)?;
        if out.user.is_none() && !out.groups.is_empty() {
            return Err(ExplainError::GroupsWithoutUser);
        }
        Ok(out)
    }
}

/// `/api/v1/access/explain?host=&path=&method=&client=&user=&groups=&via=`.
pub fn explain(console: &Console, query: &str) -> Answer {
    let asked = match Asked::parse(query) {
        Ok(a) => a,
        Err(e) => return error(400, e.to_string()),
    };
    let host = match names::normalize_host(&asked.host) {
        Ok(h) => h,
        Err(e) => return error(400, ExplainError::Host(e.to_string()).to_string()),
    };
    let (raw_label, i) = match names::split_host(&host, &console.domains) {
        Ok(x) => x,
        Err(e) => return error(400, ExplainError::Host(e.to_string()).to_string()),
    };
    let Some(label) = names::normalize_request_label(raw_label) else {
        return error(
            400,
            ExplainError::Host(format!(
                "label '{}' names nothing",
                names::printable(raw_label)
            ))
            .to_string(),
        );
    };
    let Some(route) = console.table.lookup(&label) else {
        return error(
            404,
            format!(
                "no service or instance is called '{label}': the edge answers 404 before any rule"
            ),
        );
    };
    let f = Facts {
        domain: &console.domains[i],
        service: route.service_label(),
        instance: match &route {
            Route::Instance(t) => Some(t.label.as_str()),
            Route::Service(_) => None,
        },
        path: &asked.path,
        method: &asked.method,
        client: asked.client,
        page_load: false,
        actuator_bases: route.actuator_bases(),
    };
    let who = Simulated {
        user: asked.user.clone(),
        groups: asked.groups.clone(),
        via: asked.via,
    };
    let e = access::explain(&console.policy, &f, &who);
    json_answer(
        200,
        &json!({
            "host": host,
            "service": f.service,
            "instance": f.instance,
            "path": asked.path,
            "method": asked.method,
            "client": asked.client.to_string(),
            "user": asked.user,
            "groups": asked.groups,
            "actuator_bases": f.actuator_bases,
            "rule": e.rule,
            "decision": e.decision,
            "status": e.status,
            "why": e.why,
            "needs": e.needs,
        }),
    )
}

#[cfg(test)]
mod tests;
