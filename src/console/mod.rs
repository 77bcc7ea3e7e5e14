//! The console: the registry page, the JSON APIs, health endpoints and metrics.
//!
//! One handler, [`Console::handle`], serves them on the console's own listener (through
//! [`ConsoleApp`], a Pingora `ServeHttp`) and on the proxy listener for the console host.

mod api;
mod links;
mod listing;
mod locks;
mod page;
mod steering;

pub use links::Links;

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::HeaderValue;
use ipnet::IpNet;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use pingora_http::RequestHeader;

use crate::answer::Answer;
use crate::metrics::{Metrics, Scrape, SourceFigures};
use crate::registry::{EurekaClient, Report, SourceStatus, SyncState, EUREKA};
use crate::routes::RouteTable;

/// Who may use the console and API (health endpoints are always open: probes need them,
/// so they say ready or not and a count, never the registry's URLs or errors).
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub token: Option<String>,
    pub allow_clients: Vec<IpNet>,
}

pub struct Console {
    pub table: Arc<RouteTable>,
    pub sync: Arc<SyncState>,
    pub client: EurekaClient,
    pub metrics: Arc<Metrics>,
    pub traffic: Arc<crate::traffic::Traffic>,
    pub links: Links,
    pub access: Access,
    /// The HTTPS listeners' certificates, when there are any.
    pub certs: Option<Arc<crate::tls::CertStore>>,
    /// The ACME client's state, when it runs.
    pub acme: Option<Arc<crate::acme::AcmeState>>,
    /// False when TLS to instances accepts any certificate (said on the page and the API).
    pub upstream_tls_verify: bool,
    /// Every registry source's status, in rank order (Eureka's, when it is one, is also
    /// `sync`, which the banner and `/api/v1/registry`'s top level show as before).
    pub sources: Vec<Arc<dyn Report>>,
    /// Where the sources meet (instances shadowed by a higher-ranked source).
    pub feed: Arc<crate::routes::Feed>,
    /// `xipgate.access` as the proxy decides with it: the locks and the explain API use it.
    pub policy: Arc<crate::access::Policy>,
    /// `xipgate.access` in one line ([`crate::config::AccessConfig::summary`]).
    pub access_summary: String,
    /// The JWKS of the identity tokens the edge signs (`xipgate.access.identity.jwt`).
    pub identity_jwks: Option<String>,
    /// `xipgate.domains`: the explain API reads a Host as the proxy does.
    pub domains: Vec<String>,
    /// The proxy's gate, set once it is built: who is signed in (the session cookie a
    /// console under the domain receives).
    pub gate: std::sync::OnceLock<Arc<crate::access::Gate>>,
}

impl Console {
    /// Every registry source's status, in rank order.
    pub fn statuses(&self) -> Vec<SourceStatus> {
        self.sources.iter().map(|s| s.status()).collect()
    }

    /// Every certificate the HTTPS listeners know, loaded or not.
    pub fn tls_status(&self) -> Vec<crate::tls::CertStatus> {
        self.certs
            .as_ref()
            .map(|c| c.status(std::time::SystemTime::now()))
            .unwrap_or_default()
    }

    /// Answers one request. `proxy_port` is the port it arrived on when it came through
    /// the proxy listener (links then use that port), `tls` whether it came over HTTPS
    /// (links then do too).
    pub async fn handle(
        &self,
        req: &RequestHeader,
        client: Option<IpAddr>,
        proxy_port: Option<u16>,
        tls: bool,
    ) -> Answer {
        let path = req.uri.path();
        let query = req.uri.query().unwrap_or("");
        match path {
            "/healthz" => return Answer::text(200, "ok").with_type("text/plain; charset=utf-8"),
            "/readyz" => return api::readyz(self),
            _ => {}
        }
        if let Err(answer) = self.authorize(req, client, query) {
            return answer;
        }
        if req.method != http::Method::GET && req.method != http::Method::HEAD {
            return api::error(
                405,
                format!(
                    "{} is not supported here; the console is read-only",
                    req.method
                ),
            )
            .header("allow", HeaderValue::from_static("GET, HEAD"));
        }
        let links = self.links.for_request(proxy_port, tls);
        match path {
            "/" | "/index.html" => page::render(self, &links, query, self.signed_in(req)),
            "/metrics" => Answer::bytes(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                Bytes::from({
                    let certs = self.tls_status();
                    // Eureka has metrics of its own (from `sync`).
                    let others: Vec<_> = self
                        .statuses()
                        .into_iter()
                        .filter(|s| s.kind != EUREKA)
                        .collect();
                    let sync = self.sync.snapshot();
                    let scrape = Scrape {
                        sync: &sync,
                        sources: others
                            .iter()
                            .map(|n| SourceFigures {
                                name: &n.name,
                                instances: n.instances,
                                held: n.held_instances,
                                syncs_ok: n.syncs_ok,
                                syncs_failed: n.syncs_failed,
                            })
                            .collect(),
                        certs: certs
                            .iter()
                            .filter_map(|c| Some((c.names.first()?.as_str(), c.seconds_left?)))
                            .collect(),
                    };
                    self.metrics.render(&self.table, &scrape)
                }),
            ),
            "/api/v1/access" => api::json_answer(
                200,
                &locks::summary_json(self, self.signed_in(req).as_ref()),
            ),
            _ if path.starts_with("/api/") => api::route(self, &links, path, query).await,
            _ => api::error(
                404,
                format!(
                    "no page at '{}'; try / or /api/v1/services",
                    crate::names::printable(path)
                ),
            ),
        }
    }

    /// Who the request's session cookie says is signed in; `None` without a login, a
    /// cookie, or with one that does not open.
    fn signed_in(&self, req: &RequestHeader) -> Option<crate::access::Identity> {
        let gate = self.gate.get()?;
        let cookies = req
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .map(|v| v.as_bytes());
        match gate.present_local(None, cookies, crate::access::session::unix_now())? {
            crate::access::Presented::Identity(who) => Some(who),
            _ => None,
        }
    }

    fn authorize(
        &self,
        req: &RequestHeader,
        client: Option<IpAddr>,
        query: &str,
    ) -> Result<(), Answer> {
        if !self.access.allow_clients.is_empty() {
            let allowed =
                client.is_some_and(|ip| self.access.allow_clients.iter().any(|n| n.contains(&ip)));
            if !allowed {
                return Err(api::error(
                    403,
                    "this client address may not use the console (xipgate.console.allow_clients)",
                ));
            }
        }
        if let Some(token) = &self.access.token {
            let bearer = req
                .headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            let query_token = url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned());
            let given = bearer.map(str::to_string).or(query_token);
            if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
                return Err(api::error(
                    401,
                    "a token is required: Authorization: Bearer <token> or ?token=<token>",
                )
                .header(
                    "www-authenticate",
                    HeaderValue::from_static("Bearer realm=\"xipgate\""),
                ));
            }
        }
        Ok(())
    }
}

/// Compares without an early exit, so response time does not reveal the token's prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The console on its own listener.
pub struct ConsoleApp(pub Arc<Console>);

#[async_trait]
impl ServeHttp for ConsoleApp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let answer = self
            .0
            .handle(session.req_header(), client, None, false)
            .await;
        let head = session.req_header().method == http::Method::HEAD;
        answer.into_response(head)
    }
}
