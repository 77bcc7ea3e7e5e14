//! The fast path: plain HTTP/1.1 requests without a body, proxied on the connection
//! Pingora accepted, before Pingora's HTTP machinery sees them.
//!
//! Why: the profile of bench/run.sh showed xipgate's own routing at ~10% of the CPU per
//! request and most of the rest in Pingora's generic HTTP/1 proxy path (header maps,
//! per-request boxed state, the pooled-connection `getpeername`); a plain nginx proxy cost a
//! third as much. The common request (GET/HEAD/DELETE to a known label, keep-alive on both
//! sides) does not need that generality. The fast path parses the head in place, routes with
//! the same functions as the Pingora path, and copies the response through.
//!
//! Everything it does not take goes to Pingora's proxy unchanged, with the bytes already
//! read put back on the stream: requests with a body, upgrades, HTTP/1.0 and HTTP/2, heads
//! it cannot parse, console hosts, CORS requests, and every request whose route is an error
//! answer (400/403/404/503). So those answers, and Pingora's limits, stay exactly as they
//! were. After Pingora's engine has answered, the connection comes back here for its next
//! request (`proxy::connection`). Heads are read here for both engines ([`reading`]): with
//! `xipgate.downstream.fast_path: false` every request is handed to Pingora once its head
//! is in.

mod chunked;
mod exchange;
mod head;
mod io;
mod pool;
mod reading;
mod rewound;
mod sweep;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::Stream;
use pingora_core::protocols::ALPN;
use pingora_core::server::ShutdownWatch;

use super::rules;
use super::{
    guard, observe, pick_target, resolve_host, steer, AccessEntry, ProxySettings, ProxyShared,
};
use crate::access::Decision;
use crate::answer::Answer;
use crate::balance::{Keys, Outcome};
use crate::metrics::ServiceMetrics;
use crate::routes::{Route, Target};
use exchange::{Exchange, Failure, Scratch};
use head::{parse_request, Parsed};
pub use pool::Pool;
use reading::{More, Preface, LONGEST_HEAD, READ_BUF};
pub use sweep::PoolSweep;

/// Largest request head the fast path parses; a longer one goes to Pingora once it is in.
const MAX_HEAD: usize = 16 * 1024;
/// How long an idle upstream connection is kept for reuse.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The fast path's shared state.
pub struct FastPath {
    shared: ProxyShared,
    pool: Arc<Pool>,
    /// Proxy the requests it can (`downstream.fast_path`); when false every head is read
    /// here and handed to Pingora's engine.
    take: bool,
}

/// How a connection left the fast path.
pub enum Served {
    Closed,
    /// One HTTP/1 request for Pingora's engine: the stream, with everything read put back.
    Handoff(Stream),
    /// HTTP/2 (by ALPN, or the h2c preface, put back): Pingora's engine from now on.
    H2(Stream),
}

impl FastPath {
    /// `pool_size` bounds the idle upstream connections in all, as Pingora's
    /// `upstream_keepalive_pool_size` bounds its own pool. `take`: proxy the requests it
    /// can; when false it only reads heads for Pingora's engine.
    pub fn new(shared: ProxyShared, pool_size: usize, take: bool) -> Self {
        FastPath {
            shared,
            pool: Arc::new(Pool::new(pool_size, POOL_IDLE_TIMEOUT)),
            take,
        }
    }

    /// Whether it proxies requests itself (and so has a pool to sweep).
    pub fn takes(&self) -> bool {
        self.take
    }

    /// The background service that keeps this fast path's pool clean (`sweep`).
    pub fn sweeper(&self) -> PoolSweep {
        PoolSweep {
            pool: self.pool.clone(),
            table: self.shared.table.clone(),
        }
    }

    pub fn settings(&self) -> &ProxySettings {
        &self.shared.settings
    }

    /// Serves requests on one client connection until it closes or a request needs
    /// Pingora. `fresh`: nothing was read from the connection yet (only then can it be h2c).
    pub async fn serve(&self, mut stream: Stream, shutdown: &ShutdownWatch, fresh: bool) -> Served {
        // Plain TCP, or TLS that negotiated HTTP/1.1 (or no ALPN); HTTP/2 is Pingora's.
        let tls = stream.get_ssl_digest().is_some();
        if stream.selected_alpn_proto() == Some(ALPN::H2) {
            return Served::H2(stream);
        }
        let digest = stream.get_socket_digest();
        let client: Option<SocketAddr> = digest
            .as_ref()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).copied());
        let settings = self.settings();
        let port = settings.listen_ports.port(tls, || {
            digest
                .as_ref()
                .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).map(|a| a.port()))
        });
        // The X-Forwarded-For and X-Forwarded-Port values are the same for every request.
        let client_ip = client.map(|c| rules::address_text(c.ip()));
        let port_text = port.map(|p| p.to_string());
        let keepalive = Duration::from_secs(settings.keepalive_secs);
        let mut buf: Vec<u8> = Vec::with_capacity(READ_BUF);
        // Kept across requests: the upstream request head, the response buffer, the client
        // response head, and the last route (a keep-alive connection usually asks one host).
        let mut upstream_req: Vec<u8> = Vec::with_capacity(1024);
        let mut scratch = Scratch::default();
        let mut cached: Option<Cached> = None;
        let mut served: u64 = u64::from(!fresh);
        // Only a connection's first bytes can be the h2c preface (and not over TLS).
        let mut h2c = fresh && !tls;

        loop {
            // 1. A whole request head, within header_timeout of its first byte.
            let mut deadline: Option<Instant> = None;
            // How much of a head longer than MAX_HEAD was looked at for its end.
            let mut scanned = 0;
            let plan = loop {
                if !buf.is_empty() && h2c {
                    match reading::preface(&buf) {
                        Preface::Whole => return Served::H2(put_back(stream, &buf)),
                        Preface::Part => {}
                        Preface::Not => h2c = false,
                    }
                }
                if !buf.is_empty() && !h2c {
                    if buf.len() >= MAX_HEAD {
                        // Longer than the fast path parses: Pingora's engine answers it
                        // once it is all in (or at Pingora's own limit).
                        if reading::head_ends(&buf, scanned) || buf.len() >= LONGEST_HEAD {
                            return handoff(stream, &buf);
                        }
                        scanned = buf.len();
                    } else {
                        let balance = self.shared.table.balance();
                        match parse_request(&buf, &mut upstream_req, &self.shared.gate, balance) {
                            Parsed::Take(plan) if self.take => break plan,
                            Parsed::Take(_) | Parsed::Handoff => return handoff(stream, &buf),
                            Parsed::Partial => {}
                        }
                    }
                }
                if buf.is_empty() {
                    if !reading::wait_for_request(
                        &mut stream,
                        &mut buf,
                        keepalive,
                        served > 0,
                        shutdown,
                    )
                    .await
                    {
                        // Closed, failed, idle too long or shutting down: nothing to answer
                        // (Pingora does the same for an idle connection).
                        return Served::Closed;
                    }
                    continue;
                }
                let until =
                    *deadline.get_or_insert_with(|| Instant::now() + settings.header_timeout);
                match reading::read_more(&mut stream, &mut buf, until).await {
                    More::Read => {}
                    More::Closed => return Served::Closed,
                    More::TimedOut => {
                        let answer = Answer::text(
                            408,
                            format!(
                                "the request head did not arrive within {} (xipgate.downstream.header_timeout)",
                                humantime::format_duration(settings.header_timeout)
                            ),
                        );
                        reading::answer_and_close(
                            &mut stream,
                            &answer.to_http1(false),
                            settings.write_timeout,
                        )
                        .await;
                        return Served::Closed;
                    }
                }
            };

            // 2. Route it, or leave it to Pingora (which answers a looped request: 508).
            if rules::looped(plan.via, rules::pseudonym()) {
                return handoff(stream, &buf);
            }
            let started = Instant::now();
            let generation = self.shared.table.generation();
            let hit = cached
                .as_ref()
                .is_some_and(|c| c.generation == generation && c.raw_host == plan.host);
            if !hit {
                let Ok((host, label, route)) = resolve_host(&self.shared, plan.host) else {
                    return handoff(stream, &buf);
                };
                let service = route.service_label();
                // The login host (a service may carry its label) is Pingora's to answer.
                let console = settings.console_host.as_deref() == Some(host.as_str())
                    || self
                        .shared
                        .login
                        .as_ref()
                        .is_some_and(|l| l.is_login_label(&label));
                let tls_upstream = route.may_use_tls();
                cached = Some(Cached {
                    raw_host: plan.host.to_string(),
                    generation,
                    metrics: self.shared.metrics.for_service(service),
                    host,
                    label,
                    route,
                    console,
                    tls_upstream,
                });
            }
            let c = cached.as_ref().expect("filled above");
            if c.console || c.tls_upstream || (plan.has_origin && settings.cors.enabled) {
                return handoff(stream, &buf);
            }
            // `xipgate.access`: what the decision allows without I/O is served here; every
            // other request (refused, or with credentials to check) goes to Pingora's
            // engine, which decides again and answers.
            let gate = &*self.shared.gate;
            let mut passed: Option<guard::Passed> = None;
            if !gate.is_open() {
                let Some(peer) = client else {
                    return handoff(stream, &buf);
                };
                let asked = guard::Asked {
                    host: &c.host,
                    port: guard::host_port(plan.host),
                    tls,
                    route: &c.route,
                    target: plan.target,
                    method: plan.method,
                    client: gate.client(peer.ip(), plan.xff),
                    accept: plan.accept,
                    authorization: plan.authorization,
                    x_requested_with: plan.x_requested_with,
                };
                match guard::decide_local(gate, &settings.domains, &asked, plan.cookie) {
                    Some(d @ Decision::Allow { .. }) => {
                        passed = Some(guard::Passed::record(&self.shared, d).0);
                    }
                    _ => return handoff(stream, &buf),
                }
            }
            // Which instance (`xipgate.balance`); a pin nothing in rotation answers to is
            // Pingora's to answer (the same decision, the same 503).
            let keys = Keys {
                pin: plan.pin,
                hint: plan.hint,
                canary: plan.canary,
                cookies: plan.cookie.as_slice(),
            };
            let Ok(mut steered) = steer(&c.route, &keys) else {
                return handoff(stream, &buf);
            };
            let head_req = plan.method == "HEAD";
            // The same rule as the Pingora path's `Method::is_idempotent`.
            let idempotent =
                http::Method::from_bytes(plan.method.as_bytes()).is_ok_and(|m| m.is_idempotent());
            let mut close = plan.close || *shutdown.borrow();
            let signed = passed
                .as_ref()
                .and_then(|p| p.who.as_ref())
                .and_then(|w| guard::signed_identity(gate, w, Some(&c.host)));
            head::finish_upstream_request(
                &head::Forwarded {
                    client: client_ip.as_deref(),
                    prev: plan.xff,
                    host: &c.host,
                    port: port_text.as_deref(),
                    tls,
                    via: plan.via,
                    pseudonym: rules::pseudonym(),
                    identity: passed
                        .as_ref()
                        .and_then(|p| p.who.as_ref())
                        .map(|w| (gate.identity_headers(), w)),
                    signed: signed.as_ref().map(|(n, t)| (*n, t.as_str())),
                },
                &mut upstream_req,
            );
            let logging = self.shared.access.enabled();
            let request_line = if logging {
                head::logged_request_line(&buf)
            } else {
                String::new()
            };
            let head_len = plan.head_len;
            buf.drain(..head_len);

            // 3. Proxy it; whether a failed try is tried again is `rules::retry`'s call, as
            // on the Pingora path.
            let mut tried: Vec<SocketAddr> = Vec::new();
            // The instance of the last failed try, for the answer when none is left.
            let mut last: Option<Arc<Target>> = None;
            let outcome = loop {
                // The table can change between routing and a try: the same answers as the
                // Pingora path's `upstream_peer` then.
                let Some(target) = pick_target(&c.route, &mut steered, &tried) else {
                    break Err((last, Failure::refused(503, c.route.none_up())));
                };
                let addr = match &target.upstream {
                    Ok(addr) => *addr,
                    Err(refusal) => {
                        let why = refusal.to_string();
                        break Err((Some(target), Failure::refused(403, why)));
                    }
                };
                tried.push(addr);
                if tried.len() > 1 {
                    self.shared.metrics.count_retry(&target.service_label);
                }
                let kind = steered.kind(&c.route);
                let set_cookie = steered.set_cookie(&c.route, &target, tls);
                let ex = Exchange {
                    settings,
                    pool: &self.pool,
                    addr,
                    request: &upstream_req,
                    head_request: head_req,
                    stamp: head::Stamp {
                        served_by: &target.instance.instance_id,
                        instance_status: rules::instance_status_header(
                            kind,
                            target.instance.status,
                        ),
                        close,
                        session_cookie: gate.session_cookie().map(|s| s.name.as_str()),
                        set_cookie: set_cookie.as_deref(),
                    },
                    // This try's start: the upstream time is the successful try's alone,
                    // from choosing its instance, as on the Pingora path.
                    started: Instant::now(),
                };
                match ex.run(&mut stream, &mut scratch).await {
                    Ok(done) => {
                        observe(
                            &self.shared,
                            &c.route,
                            &target,
                            Outcome::Answered(done.status),
                        );
                        break Ok((target, done));
                    }
                    Err(f) => {
                        // Nothing was sent: the connection failed (as Pingora's
                        // `fail_to_connect`); the edge's own refusals are no try.
                        if !f.sent && !matches!(f.etype, pingora_core::ErrorType::HTTPStatus(_)) {
                            observe(&self.shared, &c.route, &target, Outcome::ConnectFailed);
                        }
                        let again = rules::retry(&rules::FailedTry {
                            etype: &f.etype,
                            route: kind,
                            idempotent,
                            sent: f.sent,
                            reused: f.reused,
                            response_started: f.response_started,
                            // The fast path's failures are the upstream's: a client that
                            // goes away ends the connection, not the try.
                            upstream_fault: true,
                            tries: tried.len() as u32,
                            max_tries: settings.max_tries,
                        });
                        if !again {
                            break Err((Some(target), f));
                        }
                        last = Some(target);
                    }
                }
            };

            scratch.settle();

            // 4. Count, log, and keep the connection or not.
            let (status, upstream_time, target, error) = match outcome {
                Ok((target, done)) => {
                    close |= done.close;
                    (done.status, Some(done.upstream_time), Some(target), None)
                }
                Err((target, f)) => {
                    close = true;
                    if f.response_started {
                        // Part of the response went out: nothing more can be said.
                        (f.status_sent, None, target, Some(f.etype))
                    } else {
                        let answer = super::respond::failure_answer(
                            super::respond::upstream_error_status(&f.etype),
                            &f.etype,
                            f.context,
                            target.as_deref(),
                            tried.len(),
                        );
                        // Within write_timeout, as every write to the client: the
                        // connection closes after it anyway.
                        reading::answer_and_close(
                            &mut stream,
                            &answer.to_http1(head_req),
                            settings.write_timeout,
                        )
                        .await;
                        (answer.status, None, target, Some(f.etype))
                    }
                }
            };
            c.metrics
                .observe(&self.shared.metrics, status, upstream_time);
            self.shared.traffic.record(
                c.route.service_label(),
                target.as_ref().map(|t| t.label.as_str()),
                status,
                upstream_time,
            );
            if logging {
                self.shared.access.write(&AccessEntry {
                    client,
                    request_line: &request_line,
                    host: &c.host,
                    label: &c.label,
                    instance: target.as_ref().map(|t| t.instance.instance_id.as_str()),
                    status,
                    upstream_time,
                    started,
                    tries: tried.len(),
                    error: error.as_ref().map(|e| e.as_str()),
                    user: passed
                        .as_ref()
                        .and_then(|p| p.who.as_ref())
                        .map(|w| w.user.as_str()),
                    rule: passed.as_ref().and_then(|p| p.rule.as_deref()),
                    decision: Some(passed.as_ref().and_then(|p| p.outcome).unwrap_or("open")),
                });
            }
            if close {
                let _ = reading::finish(&mut stream).await;
                return Served::Closed;
            }
            served += 1;
        }
    }
}

/// The route of the last request on a connection, reused while the table is unchanged.
struct Cached {
    /// The Host header as the client sent it.
    raw_host: String,
    generation: u64,
    host: String,
    label: String,
    route: Route,
    metrics: ServiceMetrics,
    /// The console's host: Pingora's path answers it.
    console: bool,
    /// A try may go to an instance over TLS, which only Pingora's path does.
    tls_upstream: bool,
}

/// Hands one request to Pingora's engine, with the bytes read so far put back.
fn handoff(stream: Stream, buf: &[u8]) -> Served {
    Served::Handoff(put_back(stream, buf))
}

/// Puts the bytes read so far back on the stream, for Pingora to read them again.
fn put_back(stream: Stream, buf: &[u8]) -> Stream {
    if buf.is_empty() {
        return stream;
    }
    // (`into_any` loses the stream type on a failed downcast: check first.)
    if stream.as_any().is::<L4Stream>() {
        if let Ok(mut l4) = stream.into_any().downcast::<L4Stream>() {
            l4.rewind(buf);
            return l4;
        }
        unreachable!("the type was just checked");
    }
    // A TLS stream cannot take bytes back itself; one that came back from Pingora may be
    // wrapped already, and takes them in front of what it still holds.
    if stream.as_any().is::<rewound::Rewound>() {
        if let Ok(mut r) = stream.into_any().downcast::<rewound::Rewound>() {
            r.put_back(buf);
            return r;
        }
        unreachable!("the type was just checked");
    }
    Box::new(rewound::Rewound::new(buf, stream))
}
