//! `xipgate.access` at the proxy, for both engines: the facts of a request gathered the
//! same way, the one decision ([`crate::access::begin`]/[`crate::access::finish`]), and the
//! answer to a refused request, made here alone: the fast path lets through only what
//! the decision allows without I/O and hands everything else to Pingora's engine, which
//! answers with [`refusal`]. Also what a backend gets (the client's identity headers
//! deleted, the edge's set, the session cookie taken out) and what it may not send back
//! (a `Set-Cookie` of the edge's cookie).

use std::net::{IpAddr, Ipv4Addr};

use http::header::{HeaderValue, COOKIE, SET_COOKIE, UPGRADE};
use pingora_core::Result;
use pingora_http::{RequestHeader, ResponseHeader};

use super::{rules, Ctx, ProxyShared};
use crate::access::{self, cookie, Decision, Facts, Gate, Identity, Presented, Step};
use crate::answer::{cors_decide, Answer, Cors};
use crate::names;
use crate::routes::Route;

/// What the decision left for the rest of a request (the backend's identity headers, the
/// access log, the metrics).
#[derive(Debug, Default)]
pub struct Passed {
    pub who: Option<Identity>,
    /// The rule that decided ([`access::RuleRef::name`]).
    pub rule: Option<String>,
    /// [`Decision::outcome`].
    pub outcome: Option<&'static str>,
}

impl Passed {
    /// Counts the decision and keeps what the request needs of it.
    pub fn record(shared: &ProxyShared, d: Decision) -> (Self, Decision) {
        let rule = d.rule().map(|r| {
            shared.metrics.count_access(&r.label(), d.outcome());
            r.name()
        });
        let mut passed = Passed {
            who: None,
            rule,
            outcome: Some(d.outcome()),
        };
        let d = match d {
            Decision::Allow { rule, who } => {
                passed.who = who;
                Decision::Allow { rule, who: None }
            }
            other => other,
        };
        (passed, d)
    }
}

/// What is known of a request, as both engines read it.
pub struct Asked<'a> {
    /// Normalised (lower case, no port).
    pub host: &'a str,
    /// The port the client named in its Host.
    pub port: Option<u16>,
    pub tls: bool,
    pub route: &'a Route,
    /// The request target's path and query, as sent.
    pub target: &'a str,
    pub method: &'a str,
    /// After `trusted_proxies` ([`Gate::client`]).
    pub client: IpAddr,
    pub accept: Option<&'a [u8]>,
    pub authorization: Option<&'a [u8]>,
    pub x_requested_with: bool,
}

impl Asked<'_> {
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    fn domain<'d>(&self, domains: &'d [String]) -> &'d str {
        names::split_host(self.host, domains).map_or("", |(_, i)| domains[i].as_str())
    }
}

/// The port in a raw Host value (`name:port`), if any.
pub fn host_port(raw: &str) -> Option<u16> {
    let (_, port) = raw.rsplit_once(':')?;
    port.parse().ok()
}

fn facts<'a>(a: &'a Asked<'a>, domains: &'a [String]) -> Facts<'a> {
    Facts {
        domain: a.domain(domains),
        service: a.route.service_label(),
        instance: match a.route {
            Route::Instance(t) => Some(t.label.as_str()),
            Route::Service(_) => None,
        },
        path: a.path(),
        method: a.method,
        client: a.client,
        page_load: access::page_load(
            a.method,
            a.accept,
            a.authorization.is_some(),
            a.x_requested_with,
        ),
        actuator_bases: a.route.actuator_bases(),
    }
}

/// The decision, with whatever credentials the request shows (Pingora's engine).
pub async fn decide<'h>(
    gate: &Gate,
    domains: &[String],
    a: &Asked<'_>,
    cookies: impl IntoIterator<Item = &'h [u8]>,
) -> Decision {
    let f = facts(a, domains);
    match access::begin(gate.policy(), &f) {
        Step::Done(d) => d,
        Step::NeedsIdentity { rule, grant } => {
            let shown = gate
                .present(a.authorization, cookies, access::session::unix_now())
                .await;
            access::finish(gate.policy(), rule, &grant, &f, shown)
        }
    }
}

/// The decision when it needs no I/O (the fast path): `None` when the request shows
/// credentials only an asynchronous check can judge.
pub fn decide_local<'h>(
    gate: &Gate,
    domains: &[String],
    a: &Asked<'_>,
    cookies: impl IntoIterator<Item = &'h [u8]>,
) -> Option<Decision> {
    let f = facts(a, domains);
    Some(match access::begin(gate.policy(), &f) {
        Step::Done(d) => d,
        Step::NeedsIdentity { rule, grant } => {
            let shown: Presented =
                gate.present_local(a.authorization, cookies, access::session::unix_now())?;
            access::finish(gate.policy(), rule, &grant, &f, shown)
        }
    })
}

/// The answer to a refused request, or `None` when it may pass.
pub fn refusal(gate: &Gate, domains: &[String], d: &Decision, a: &Asked<'_>) -> Option<Answer> {
    match d {
        Decision::Open | Decision::Allow { .. } => None,
        Decision::Deny { why, .. } => Some(Answer::text(403, format!("access denied: {why}"))),
        Decision::BadPath { why } => Some(Answer::text(
            400,
            format!("invalid request path (refused where xipgate.access rules apply): {why}"),
        )),
        Decision::SignIn { rule } => {
            let scheme = rules::forwarded_proto(a.tls);
            let login = gate.login_label().unwrap_or("login");
            let port = a.port.map(|p| format!(":{p}")).unwrap_or_default();
            let original = format!("{scheme}://{}{port}{}", a.host, a.target);
            let location =
                access::sign_in_location(scheme, login, a.domain(domains), a.port, &original);
            let answer = Answer::text(
                302,
                format!(
                    "sign in first (rule '{}' needs a signed-in identity): {location}",
                    rule.name()
                ),
            );
            Some(match HeaderValue::from_str(&location) {
                Ok(v) => answer.header("location", v),
                Err(_) => Answer::text(400, "invalid Host: cannot send it to the login"),
            })
        }
        Decision::Unauthorized {
            rule,
            why,
            basic_realm,
            bearer,
        } => {
            let why = if why.is_empty() {
                format!("rule '{}' needs a signed-in identity", rule.name())
            } else {
                why.clone()
            };
            let mut answer = Answer::text(401, format!("unauthorized: {why}"));
            if *bearer {
                answer = answer.header(
                    "www-authenticate",
                    HeaderValue::from_static("Bearer realm=\"xipgate\""),
                );
            }
            if let Some(v) = basic_realm
                .as_ref()
                .and_then(|r| HeaderValue::from_str(&format!("Basic realm=\"{r}\"")).ok())
            {
                answer = answer.header("www-authenticate", v);
            }
            if !*bearer && basic_realm.is_none() {
                // Only the login can say who this is: the challenge names the session
                // cookie (a 401 always carries one).
                let cookie = gate.session_cookie().map_or("", |s| s.name.as_str());
                if let Ok(v) = HeaderValue::from_str(&format!(
                    "Cookie realm=\"xipgate\", cookie-name=\"{cookie}\""
                )) {
                    answer = answer.header("www-authenticate", v);
                }
            }
            Some(answer)
        }
    }
}

/// Pingora's engine: decides a resolved request; the answer when it is refused.
pub async fn check(
    shared: &ProxyShared,
    req: &RequestHeader,
    peer: Option<IpAddr>,
    ctx: &mut Ctx,
) -> Option<Answer> {
    let gate = &shared.gate;
    if gate.is_open() {
        ctx.access.outcome = Some("open");
        return None;
    }
    let (route, host) = (ctx.route.as_ref()?, ctx.host.as_deref()?);
    // A WebSocket carries the session cookie whichever page opened it, and browsers
    // apply no CORS to it: a handshake from another site is refused (Traefik #3039).
    if req.headers.contains_key(UPGRADE)
        && matches!(
            cors_decide(&shared.settings.cors, ctx.origin.as_ref()),
            Cors::Refused
        )
    {
        shared.metrics.count_access("websocket-origin", "deny");
        ctx.access.rule = Some("websocket-origin".into());
        ctx.access.outcome = Some("deny");
        return Some(Answer::text(
            403,
            "access denied: a WebSocket from a page of another site (its Origin is not under xipgate.domains nor in xipgate.cors.allow_origins)",
        ));
    }
    let peer = peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let header = |name: &str| req.headers.get(name).map(|v| v.as_bytes());
    let raw_host = super::request_host(req).unwrap_or_default();
    let asked = Asked {
        host,
        port: host_port(&raw_host),
        tls: ctx.tls,
        route,
        target: req.uri.path_and_query().map_or("/", |p| p.as_str()),
        method: req.method.as_str(),
        client: gate.client(
            peer,
            req.headers
                .get_all("x-forwarded-for")
                .iter()
                .map(|v| v.as_bytes()),
        ),
        accept: header("accept"),
        authorization: header("authorization"),
        x_requested_with: req.headers.contains_key("x-requested-with"),
    };
    let cookies = req.headers.get_all(COOKIE).iter().map(|v| v.as_bytes());
    let d = decide(gate, &shared.settings.domains, &asked, cookies).await;
    let (passed, d) = Passed::record(shared, d);
    ctx.access = passed;
    refusal(gate, &shared.settings.domains, &d, &asked)
}

/// The identity headers' values (user, email, groups) for `who`; a value that could not
/// go into a header as it is stays out (claims come from the identity provider).
pub fn identity_values(who: &Identity) -> [Option<std::borrow::Cow<'_, str>>; 3] {
    fn safe(v: std::borrow::Cow<'_, str>) -> Option<std::borrow::Cow<'_, str>> {
        rules::header_safe(v.as_bytes()).then_some(v)
    }
    [
        safe(who.user.as_str().into()),
        who.email.as_deref().and_then(|e| safe(e.into())),
        (!who.groups.is_empty())
            .then(|| who.groups.join(","))
            .and_then(|g| safe(g.into())),
    ]
}

/// The identity as a JWT the edge signs for the backend of `host` (`xipgate.access.identity.jwt`):
/// the header's name and the token.
pub fn signed_identity<'g>(
    gate: &'g Gate,
    who: &Identity,
    host: Option<&str>,
) -> Option<(&'g str, String)> {
    gate.identity_token(who, host?, access::session::unix_now())
}

/// Pingora's engine, after the hop-by-hop headers (and those `Connection` names) are gone:
/// every spelling of the identity headers deleted, the edge's own set, and the session
/// cookie taken out of `Cookie`.
pub fn to_backend(
    gate: &Gate,
    upstream: &mut RequestHeader,
    who: Option<&Identity>,
    host: Option<&str>,
) -> Result<()> {
    let forged: Vec<http::header::HeaderName> = upstream
        .headers
        .keys()
        .filter(|n| gate.is_identity_header(n.as_str()))
        .cloned()
        .collect();
    for name in forged {
        upstream.remove_header(&name);
    }
    if let Some(who) = who {
        for (name, value) in gate.identity_headers().iter().zip(identity_values(who)) {
            if let Some(v) = value {
                upstream.insert_header(name.clone(), v.as_ref())?;
            }
        }
        if let Some((name, token)) = signed_identity(gate, who, host) {
            upstream.insert_header(name.to_string(), token)?;
        }
        // Basic credentials were the edge's (its htpasswd): the password goes no further.
        // A bearer token stays: backends that are resource servers verify it themselves.
        // (Basic credentials always take this engine: the fast path hands them over, see
        // `Gate::present_local`; it serves only bearer tokens, and forwards them as sent.)
        if who.via == access::Via::Basic {
            upstream.remove_header(&http::header::AUTHORIZATION);
        }
    }
    if let Some(s) = gate.session_cookie() {
        strip_cookie(upstream, &s.name)?;
    }
    Ok(())
}

/// Pingora's engine: takes every cookie called `name` out of the request's `Cookie`
/// headers (the edge's own cookies go to no backend).
pub fn strip_cookie(upstream: &mut RequestHeader, name: &str) -> Result<()> {
    let values: Vec<HeaderValue> = upstream.headers.get_all(COOKIE).iter().cloned().collect();
    if !values
        .iter()
        .any(|v| cookie::find([v.as_bytes()], name).is_some())
    {
        return Ok(());
    }
    upstream.remove_header(&COOKIE);
    for v in &values {
        if let Some(kept) = cookie::without(v.as_bytes(), name) {
            upstream.append_header(
                COOKIE,
                HeaderValue::from_bytes(&kept).map_err(|_| {
                    pingora_core::Error::explain(
                        pingora_core::ErrorType::InternalError,
                        "a Cookie header without the edge's cookie is not a header value",
                    )
                })?,
            )?;
        }
    }
    Ok(())
}

/// Pingora's engine: a backend's `Set-Cookie` of the edge's session cookie is dropped (a
/// backend could otherwise plant a session for the whole domain).
pub fn from_backend(gate: &Gate, resp: &mut ResponseHeader) -> Result<()> {
    let Some(s) = gate.session_cookie() else {
        return Ok(());
    };
    if !resp
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .any(|v| cookie::sets(v.as_bytes(), &s.name))
    {
        return Ok(());
    }
    let kept: Vec<HeaderValue> = resp
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .filter(|v| !cookie::sets(v.as_bytes(), &s.name))
        .cloned()
        .collect();
    resp.remove_header(&SET_COOKIE);
    for v in kept {
        resp.append_header(SET_COOKIE, v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_values_leave_out_what_cannot_be_a_header() {
        let who = Identity {
            user: "alice".into(),
            email: Some("a@b\r\nx-evil: 1".into()),
            groups: vec!["devs".into(), "ops".into()],
            via: access::Via::Session,
        };
        let v = identity_values(&who);
        assert_eq!(v[0].as_deref(), Some("alice"));
        assert_eq!(v[1], None);
        assert_eq!(v[2].as_deref(), Some("devs,ops"));
    }

    #[test]
    fn the_host_port_is_read_from_the_raw_host() {
        assert_eq!(host_port("a.xip.test:8080"), Some(8080));
        assert_eq!(host_port("a.xip.test"), None);
        assert_eq!(host_port("a.xip.test:x"), None);
    }
}
