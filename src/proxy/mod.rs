//! The Pingora `ProxyHttp`: Host label → instance or service → upstream peer.

mod access_log;
mod connection;
mod fast;
mod guard;
mod host;
mod limit;
mod login;
mod loop_guard;
mod resolve;
mod respond;
mod rules;
mod settings;
mod steer;
mod upstream_cert;

use crate::answer::{cors_decide, Answer, Cors};
pub use access_log::{AccessEntry, AccessLog, AccessLogError};
pub use connection::ProxyApp;
pub use fast::FastPath;
pub use host::request_host;
pub use limit::Limited;
pub use loop_guard::ConsoleListener;
use resolve::host_answer;
pub use resolve::resolve_host;
pub use settings::{ProxySettings, ProxyShared, UpstreamTls};
pub use steer::{observe, pick_target, steer, Steer};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::header::{HeaderValue, ORIGIN};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::balance;
use crate::console::Console;
use crate::names;
use crate::routes::{Route, Target};
use respond::respond;

/// Pingora's `ProxyHttp`: the engine for every request the fast path does not take.
pub struct PingoraProxy {
    shared: ProxyShared,
    console: Option<Arc<Console>>,
}

/// Per-request state.
pub struct Ctx {
    started: Instant,
    host: Option<String>,
    label: Option<String>,
    route: Option<Route>,
    /// The instance the current try goes to.
    target: Option<Arc<Target>>,
    tried: Vec<SocketAddr>,
    upstream_started: Option<Instant>,
    upstream_time: Option<Duration>,
    origin: Option<HeaderValue>,
    /// Status of an answer the edge gave itself (errors, console, preflight).
    answered: Option<u16>,
    /// The client connection is TLS.
    tls: bool,
    /// What `xipgate.access` decided.
    access: guard::Passed,
    /// How the request was steered (`xipgate.balance`): the instance of each try.
    steer: Steer,
}

impl PingoraProxy {
    pub fn new(shared: ProxyShared, console: Option<Arc<Console>>) -> Self {
        PingoraProxy { shared, console }
    }

    /// The port the request's connection arrived on: the listeners' when they share one,
    /// else the socket's (`settings::ListenPorts`, as the fast path).
    fn local_port(&self, session: &Session, tls: bool) -> Option<u16> {
        self.shared.settings.listen_ports.port(tls, || {
            session
                .server_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.port())
        })
    }

    /// Resolves the request to a route, or to the answer the edge gives instead.
    fn resolve(&self, req: &RequestHeader, ctx: &mut Ctx) -> Result<Route, Answer> {
        let raw = request_host(req).map_err(host_answer)?;
        let (host, label, route) = resolve_host(&self.shared, &raw)?;
        ctx.host = Some(host);
        ctx.label = Some(label);
        Ok(route)
    }

    /// Why the last try's instance's certificate was refused (see [`upstream_cert`]).
    async fn cert_problem(&self, ctx: &Ctx) -> Option<upstream_cert::CertProblem> {
        let (target, addr) = (ctx.target.as_ref()?, *ctx.tried.last()?);
        let tls = &self.shared.settings.upstream_tls;
        let name = tls.name(&target.instance);
        let check = upstream_cert::Check {
            addr,
            name: &name,
            ca: tls.ca.as_ref(),
            timeout: self.shared.settings.connect_timeout,
        };
        tls.verdicts.diagnose(check).await
    }
}

fn route_kind(ctx: &Ctx) -> rules::RouteKind {
    ctx.route
        .as_ref()
        .map_or(rules::RouteKind::Service, |r| ctx.steer.kind(r))
}

#[async_trait]
impl ProxyHttp for PingoraProxy {
    type CTX = Ctx;

    /// No downstream modules. Pingora's default adds its response-compression module
    /// switched off (level 0), which does nothing but still costs a boxed context and two
    /// boxed filter calls per request (bench/run.sh profile).
    fn init_downstream_modules(&self, _modules: &mut pingora_core::modules::http::HttpModules) {}

    fn new_ctx(&self) -> Ctx {
        Ctx {
            started: Instant::now(),
            host: None,
            label: None,
            route: None,
            target: None,
            tried: Vec::new(),
            upstream_started: None,
            upstream_time: None,
            origin: None,
            answered: None,
            tls: false,
            access: guard::Passed::default(),
            steer: Steer::default(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // Pingora keeps idle client connections open forever unless told otherwise. A
        // client that asked to close (`rules::client_closes`: an HTTP/1.0 health check, say)
        // is not kept until keepalive_timeout. (Deciding it from Pingora's keep-alive state
        // here instead left WebSocket upgrades intermittently closed right after their 101:
        // tests/proxy.rs failed 3 runs in 10 on Pingora's engine.)
        let req = session.req_header();
        let closes = rules::client_closes(
            req.version,
            req.headers
                .get_all(http::header::CONNECTION)
                .iter()
                .map(|v| v.as_bytes()),
        );
        session.set_keepalive((!closes).then_some(self.shared.settings.keepalive_secs));
        // Nor does it bound a write to the client: one that never reads would hold the
        // connection, and its upstream one, for ever. HTTP/1 sessions have it already
        // (`connection`); HTTP/2 streams get it here.
        session.set_write_timeout(Some(self.shared.settings.write_timeout));
        ctx.tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        let req = session.req_header();
        ctx.origin = req.headers.get(ORIGIN).cloned();

        // Before anything else: a request that has been through this edge already is
        // answered, whatever it asks for (the console host included).
        if let Some(answer) = loop_guard::loop_answer(req) {
            ctx.answered = Some(answer.status);
            respond(session, answer).await?;
            return Ok(true);
        }

        if let (false, Some(port)) = (ctx.tls, self.shared.settings.https_redirect) {
            let host = request_host(req).unwrap_or_default();
            let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
            let location = rules::https_location(&host, port, path);
            let answer = match HeaderValue::from_str(&location) {
                // 308: the method and body are kept, unlike 301's.
                Ok(v) => Answer::text(308, format!("HTTPS only: {location}")).header("location", v),
                Err(_) => Answer::text(400, "invalid Host: cannot redirect it to HTTPS"),
            };
            ctx.answered = Some(answer.status);
            respond(session, answer).await?;
            return Ok(true);
        }

        if let (Some(console), Some(console_host)) =
            (&self.console, &self.shared.settings.console_host)
        {
            let host = request_host(req)
                .ok()
                .and_then(|h| names::normalize_host(&h).ok());
            if host.as_deref() == Some(console_host.as_str()) {
                let port = self.local_port(session, ctx.tls);
                let client = session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip());
                let answer = console
                    .handle(session.req_header(), client, port, ctx.tls)
                    .await;
                ctx.answered = Some(answer.status);
                respond(session, answer).await?;
                return Ok(true);
            }
        }

        // The login host (with xipgate.access.login) wins over a service of its label.
        if let Some(login) = &self.shared.login {
            if let Some((host, answer)) =
                login::login_answer(login, session.req_header(), ctx.tls).await
            {
                ctx.host = Some(host);
                ctx.answered = Some(answer.status);
                respond(session, answer).await?;
                return Ok(true);
            }
        }

        let route = match self.resolve(session.req_header(), ctx) {
            Ok(route) => route,
            Err(answer) => {
                ctx.answered = Some(answer.status);
                respond(
                    session,
                    answer.cors(&self.shared.settings.cors, ctx.origin.as_ref()),
                )
                .await?;
                return Ok(true);
            }
        };
        ctx.route = Some(route);

        // CORS preflight is answered at the edge, for every route.
        let req = session.req_header();
        if self.shared.settings.cors.enabled
            && req.method == http::Method::OPTIONS
            && ctx.origin.is_some()
            && req.headers.contains_key("access-control-request-method")
        {
            let cors = &self.shared.settings.cors;
            if let Cors::Refused = cors_decide(cors, ctx.origin.as_ref()) {
                let origin = ctx
                    .origin
                    .as_ref()
                    .map(|o| o.as_bytes())
                    .unwrap_or_default();
                let answer = Answer::text(
                    403,
                    format!(
                        "pages of origin '{}' may not read answers through this edge (only origins under xipgate.domains and in xipgate.cors.allow_origins)",
                        names::printable(&String::from_utf8_lossy(origin))
                    ),
                )
                .cors(cors, ctx.origin.as_ref());
                ctx.answered = Some(403);
                respond(session, answer).await?;
                return Ok(true);
            }
            let mut answer = Answer::empty(204).cors(cors, ctx.origin.as_ref());
            let allow_headers = req.headers.get("access-control-request-headers").cloned();
            answer.headers.push((
                "access-control-allow-methods",
                HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"),
            ));
            if let Some(h) = allow_headers {
                answer.headers.push(("access-control-allow-headers", h));
            }
            answer.headers.push((
                "access-control-max-age",
                HeaderValue::from(self.shared.settings.cors.max_age.as_secs()),
            ));
            ctx.answered = Some(204);
            respond(session, answer).await?;
            return Ok(true);
        }

        // Who may reach it (`xipgate.access`): after the preflight, which carries no
        // credentials.
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        if let Some(answer) = guard::check(&self.shared, session.req_header(), peer, ctx).await {
            ctx.answered = Some(answer.status);
            respond(
                session,
                answer.cors(&self.shared.settings.cors, ctx.origin.as_ref()),
            )
            .await?;
            return Ok(true);
        }

        // Which instance (`xipgate.balance`): a pin nothing in rotation answers to is a 503.
        if let Some(route) = &ctx.route {
            let req = session.req_header();
            let reads_cookies =
                matches!(route, Route::Service(s) if s.plan().policy().reads_cookies());
            let cookies: Vec<&[u8]> = if reads_cookies {
                req.headers
                    .get_all(http::header::COOKIE)
                    .iter()
                    .map(|v| v.as_bytes())
                    .collect()
            } else {
                Vec::new()
            };
            let keys = steer::header_keys(self.shared.table.balance(), &req.headers, &cookies);
            match steer(route, &keys) {
                Ok(s) => ctx.steer = s,
                Err(answer) => {
                    ctx.answered = Some(answer.status);
                    respond(
                        session,
                        answer.cors(&self.shared.settings.cors, ctx.origin.as_ref()),
                    )
                    .await?;
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let route = ctx
            .route
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route chosen"))?;
        let target = pick_target(route, &mut ctx.steer, &ctx.tried)
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(503), route.none_up()))?;
        let addr = *target
            .upstream
            .as_ref()
            .map_err(|r| Error::explain(ErrorType::HTTPStatus(403), r.to_string()))?;
        ctx.tried.push(addr);
        if ctx.tried.len() > 1 {
            self.shared.metrics.count_retry(&target.service_label);
        }
        ctx.target = Some(target.clone());
        ctx.upstream_started = Some(Instant::now());
        let mut peer = if target.tls() {
            self.shared
                .settings
                .upstream_tls
                .peer(addr, &target.instance)
        } else {
            HttpPeer::new(addr, false, String::new())
        };
        peer.options.connection_timeout = Some(self.shared.settings.connect_timeout);
        peer.options.read_timeout = Some(self.shared.settings.read_timeout);
        peer.options.write_timeout = Some(self.shared.settings.write_timeout);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let (Some(route), Some(t)) = (&ctx.route, &ctx.target) {
            observe(&self.shared, route, t, balance::Outcome::ConnectFailed);
        }
        // Nothing reached the backend yet.
        let again = rules::retry(&rules::FailedTry {
            etype: e.etype(),
            route: route_kind(ctx),
            idempotent: true,
            sent: false,
            reused: false,
            response_started: false,
            upstream_fault: true,
            tries: ctx.tried.len() as u32,
            max_tries: self.shared.settings.max_tries,
        });
        e.set_retry(again);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        // The edge's own verdicts (an unasked 101) and refusals of the client's request keep
        // their explanation for the answer.
        let mut e = match (e.etype(), e.esource()) {
            (ErrorType::HTTPStatus(_), _) | (_, pingora_core::ErrorSource::Downstream) => e,
            _ => e.more_context(format!("Peer: {peer}")),
        };
        let again = rules::retry(&rules::FailedTry {
            etype: e.etype(),
            route: route_kind(ctx),
            idempotent: session.req_header().method.is_idempotent()
                && !session.as_ref().retry_buffer_truncated(),
            sent: true,
            reused: client_reused,
            // Part of the response went to the client: the next instance's answer would be
            // appended to it (tests/backend_faults.rs).
            response_started: session.response_written().is_some(),
            // The client went away or sent a broken body: another try cannot help.
            upstream_fault: *e.esource() == pingora_core::ErrorSource::Upstream,
            tries: ctx.tried.len() as u32,
            max_tries: self.shared.settings.max_tries,
        });
        e.set_retry(again);
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // Pingora has stripped the hop-by-hop headers already; the edge's own list
        // (`rules::HOP_BY_HOP`) is applied too, so one list holds for both engines. The
        // Connection and Upgrade Pingora writes for a WebSocket upgrade stay.
        let upgrade = upstream.headers.contains_key(http::header::UPGRADE);
        let hop: Vec<http::header::HeaderName> = upstream
            .headers
            .keys()
            .filter(|n| {
                rules::is_hop_by_hop(n.as_str())
                    && !(upgrade && (*n == http::header::CONNECTION || *n == http::header::UPGRADE))
            })
            .cloned()
            .collect();
        // The chains the edge extends, read before the client's forwarding headers go:
        // every spelling of them (`rules::is_forwarding`), the edge writes its own below.
        let xff = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|client| {
                rules::forwarded_for(
                    upstream
                        .headers
                        .get_all("x-forwarded-for")
                        .iter()
                        .map(|v| v.as_bytes()),
                    &rules::address_text(client.ip()),
                )
            });
        let mut via = Vec::with_capacity(64);
        rules::via_into(
            &mut via,
            upstream
                .headers
                .get_all(http::header::VIA)
                .iter()
                .map(|v| v.as_bytes()),
            rules::via_protocol(session.req_header().version),
            rules::pseudonym(),
        );
        let dropped: Vec<http::header::HeaderName> = upstream
            .headers
            .keys()
            .filter(|n| rules::is_forwarding(n.as_str()))
            .cloned()
            .collect();
        for name in hop.into_iter().chain(dropped) {
            upstream.remove_header(&name);
        }
        // The client's Host goes through unchanged (as the older design did).
        if let Some(xff) = xff {
            upstream.insert_header("x-forwarded-for", xff)?;
        }
        // After Connection processing, so a Connection naming them cannot take the edge's
        // own away (Traefik CVE-2024-45410).
        guard::to_backend(
            &self.shared.gate,
            upstream,
            ctx.access.who.as_ref(),
            ctx.host.as_deref(),
        )?;
        // The edge's steering keys go no further: the pin header and the sticky cookie
        // (Spring Cloud LoadBalancer's own cookie stays: the app set it).
        let balance = self.shared.table.balance();
        if let Some(pin) = &balance.pin_header {
            upstream.remove_header(pin.as_str());
        }
        if let Some(name) = &balance.sticky_cookie {
            guard::strip_cookie(upstream, name)?;
        }
        upstream.insert_header(http::header::VIA, via)?;
        upstream.insert_header("x-forwarded-proto", rules::forwarded_proto(ctx.tls))?;
        if let Some(host) = &ctx.host {
            upstream.insert_header("x-forwarded-host", host.as_str())?;
        }
        if let Some(port) = self.local_port(session, ctx.tls) {
            upstream.insert_header("x-forwarded-port", port.to_string())?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if resp.status == 101
            && !session
                .req_header()
                .headers
                .contains_key(http::header::UPGRADE)
        {
            return Err(Error::explain(
                ErrorType::HTTPStatus(502),
                rules::UNASKED_UPGRADE,
            ));
        }
        // A Transfer-Encoding that does not end in chunked: Pingora would read the body to
        // the close and pass the header on (`rules::transfer_coding_chunked`).
        let te = resp.headers.get_all(http::header::TRANSFER_ENCODING);
        if te.iter().next().is_some()
            && !rules::transfer_coding_chunked(te.iter().map(|v| v.as_bytes()))
            && !resp.status.is_informational()
        {
            return Err(Error::explain(
                ErrorType::HTTPStatus(502),
                rules::UNCHUNKED_TRANSFER_CODING,
            ));
        }
        // The backend's hop-by-hop headers and its own copies of the edge's headers
        // (`rules::dropped_downstream`, as on the fast path). Connection stays to
        // Pingora, which writes the client connection's own and keeps a 101's Upgrade.
        for name in rules::RESPONSE_HOP_BY_HOP
            .iter()
            .chain(&rules::EDGE_RESPONSE)
            .filter(|n| **n != "connection")
        {
            resp.remove_header(*name);
        }
        if let Some(t) = &ctx.target {
            if let Some(started) = ctx.upstream_started {
                ctx.upstream_time = Some(started.elapsed());
            }
            if let Some(route) = &ctx.route {
                if !resp.status.is_informational() {
                    observe(
                        &self.shared,
                        route,
                        t,
                        balance::Outcome::Answered(resp.status.as_u16()),
                    );
                    if let Some(cookie) = ctx.steer.set_cookie(route, t, ctx.tls) {
                        resp.append_header(http::header::SET_COOKIE, cookie)?;
                    }
                }
            }
            if rules::header_safe(t.instance.instance_id.as_bytes()) {
                resp.insert_header("x-served-by", t.instance.instance_id.as_str())?;
            }
            if let Some(s) = rules::instance_status_header(route_kind(ctx), t.instance.status) {
                resp.insert_header("x-xipgate-instance-status", s)?;
            }
        }
        guard::from_backend(&self.shared.gate, resp)?;
        if self.shared.settings.cors.enabled {
            respond::apply_cors(resp, &self.shared.settings.cors, ctx.origin.as_ref())?;
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = respond::error_status(e);
        // Once part of the response went out, nothing more can be said: the client sees
        // the connection close short of the promised length. Writing an answer now would
        // append its text to the backend's body (tests/backend_faults.rs).
        if code > 0 && session.response_written().is_none() {
            let context = match (e.etype(), &e.context) {
                // upstream_peer's own refusals (403, 503) carry their explanation.
                (ErrorType::HTTPStatus(_), Some(why)) => Some(why.to_string()),
                _ => None,
            };
            // The client's own request was refused (a Connection header naming Host, say):
            // say what was wrong with it, not what an instance did.
            let answer = if *e.esource() == pingora_core::ErrorSource::Downstream {
                let why = e
                    .context
                    .as_ref()
                    .map_or_else(|| e.etype().as_str().to_string(), |c| c.to_string());
                Answer::text(code, format!("invalid request: {why}"))
            } else if *e.etype() == ErrorType::InvalidCert {
                let problem = self.cert_problem(ctx).await;
                respond::invalid_cert_answer(
                    code,
                    problem.as_ref(),
                    ctx.target.as_deref(),
                    ctx.tried.len(),
                )
            } else {
                respond::failure_answer(
                    code,
                    e.etype(),
                    context,
                    ctx.target.as_deref(),
                    ctx.tried.len(),
                )
            };
            ctx.answered = Some(code);
            if let Err(err) = respond(
                session,
                answer.cors(&self.shared.settings.cors, ctx.origin.as_ref()),
            )
            .await
            {
                log::debug!("could not send the error response: {err}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = ctx
            .answered
            .or_else(|| session.response_written().map(|r| r.status.as_u16()))
            .unwrap_or(0);
        let service = ctx
            .route
            .as_ref()
            .map_or(crate::metrics::NO_SERVICE, Route::service_label);
        self.shared
            .metrics
            .observe_request(service, status, ctx.upstream_time);
        if ctx.route.is_some() {
            let instance = ctx.target.as_ref().map(|t| t.label.as_str());
            self.shared
                .traffic
                .record(service, instance, status, ctx.upstream_time);
        }
        if !self.shared.access.enabled() {
            return;
        }
        let req = session.req_header();
        let request_line = format!("{} {}", req.method, req.uri);
        self.shared.access.write(&AccessEntry {
            client: session.client_addr().and_then(|a| a.as_inet()).copied(),
            request_line: &request_line,
            host: ctx.host.as_deref().unwrap_or("-"),
            label: ctx.label.as_deref().unwrap_or("-"),
            instance: ctx.target.as_ref().map(|t| t.instance.instance_id.as_str()),
            status,
            upstream_time: ctx.upstream_time,
            started: ctx.started,
            tries: ctx.tried.len(),
            error: e.map(|e| e.etype().as_str()),
            user: ctx.access.who.as_ref().map(|w| w.user.as_str()),
            rule: ctx.access.rule.as_deref(),
            decision: ctx.access.outcome,
        });
    }
}
