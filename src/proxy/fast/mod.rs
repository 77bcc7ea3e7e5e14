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
//! were. Listeners, the connection limit, the upgrade handoff and graceful shutdown stay
//! Pingora's too. `xipgate.downstream.fast_path: false` turns it off.

mod chunked;
mod exchange;
mod head;
mod io;
mod pool;
mod rewound;
mod sweep;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::Stream;
use pingora_core::protocols::ALPN;
use pingora_core::server::ShutdownWatch;
use pingora_timeout::fast_timeout::fast_timeout;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::rules::{self, RouteKind};
use super::{pick_target, resolve_host, AccessEntry, ProxySettings, ProxyShared};
use crate::metrics::ServiceMetrics;
use crate::routes::{Route, Target};
use exchange::{Exchange, Failure, Scratch};
use head::{parse_request, Parsed};
pub use pool::Pool;
pub use sweep::PoolSweep;

/// Largest request head the fast path reads before handing the request to Pingora.
const MAX_HEAD: usize = 16 * 1024;
/// Read buffer per client connection.
const READ_BUF: usize = 4096;
/// Longest wait for the rest of a request head that has started (Pingora's is the same).
const HEAD_TIMEOUT: Duration = Duration::from_secs(60);
/// How often an idle client connection looks for a graceful shutdown.
const SHUTDOWN_CHECK: Duration = Duration::from_secs(1);
/// How long an idle upstream connection is kept for reuse.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The fast path's shared state.
pub struct FastPath {
    shared: ProxyShared,
    pool: Arc<Pool>,
}

/// How a connection left the fast path.
pub enum Served {
    Closed,
    /// A request the fast path does not take: the stream, with everything read put back.
    Handoff(Stream),
}

impl FastPath {
    /// `pool_size` bounds the idle upstream connections in all, as Pingora's
    /// `upstream_keepalive_pool_size` bounds its own pool.
    pub fn new(shared: ProxyShared, pool_size: usize) -> Self {
        FastPath {
            shared,
            pool: Arc::new(Pool::new(pool_size, POOL_IDLE_TIMEOUT)),
        }
    }

    /// The background service that keeps this fast path's pool clean (`sweep`).
    pub fn sweeper(&self) -> PoolSweep {
        PoolSweep {
            pool: self.pool.clone(),
            table: self.shared.table.clone(),
        }
    }

    fn settings(&self) -> &ProxySettings {
        &self.shared.settings
    }

    /// Serves requests on one client connection until it closes or a request needs Pingora.
    pub async fn serve(&self, mut stream: Stream, shutdown: &ShutdownWatch) -> Served {
        // Plain TCP, or TLS that negotiated HTTP/1.1 (or no ALPN); HTTP/2 is Pingora's.
        let tls = stream.get_ssl_digest().is_some();
        if (!tls && !stream.as_any().is::<L4Stream>())
            || stream.selected_alpn_proto() == Some(ALPN::H2)
        {
            return Served::Handoff(stream);
        }
        let digest = stream.get_socket_digest();
        let client: Option<SocketAddr> = digest
            .as_ref()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).copied());
        let port = digest
            .as_ref()
            .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).map(|a| a.port()));
        // The X-Forwarded-For and X-Forwarded-Port values are the same for every request.
        let client_ip = client.map(|c| c.ip().to_string());
        let port_text = port.map(|p| p.to_string());
        let settings = self.settings();
        let keepalive = Duration::from_secs(settings.keepalive_secs);
        let mut buf: Vec<u8> = Vec::with_capacity(READ_BUF);
        // Kept across requests: the upstream request head, the response buffer, the client
        // response head, and the last route (a keep-alive connection usually asks one host).
        let mut upstream_req: Vec<u8> = Vec::with_capacity(1024);
        let mut scratch = Scratch::default();
        let mut cached: Option<Cached> = None;
        let mut served: u64 = 0;

        loop {
            // 1. A whole request head.
            let plan = loop {
                match parse_request(&buf, &mut upstream_req) {
                    Parsed::Take(plan) => break plan,
                    Parsed::Handoff => return handoff(stream, &buf),
                    Parsed::Partial if buf.len() >= MAX_HEAD => return handoff(stream, &buf),
                    Parsed::Partial => {}
                }
                let more = if buf.is_empty() {
                    wait_for_request(&mut stream, &mut buf, keepalive, served > 0, shutdown).await
                } else {
                    read_more(&mut stream, &mut buf, HEAD_TIMEOUT).await
                };
                if !more {
                    // Closed, failed, timed out or shutting down: nothing to answer (Pingora
                    // does the same for an idle connection; a half-sent head gets no answer).
                    return Served::Closed;
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
                let console = settings.console_host.as_deref() == Some(host.as_str());
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
            let head_req = plan.method == "HEAD";
            // The same rule as the Pingora path's `Method::is_idempotent`.
            let idempotent =
                http::Method::from_bytes(plan.method.as_bytes()).is_ok_and(|m| m.is_idempotent());
            let mut close = plan.close || *shutdown.borrow();
            head::finish_upstream_request(
                &head::Forwarded {
                    client: client_ip.as_deref(),
                    prev: plan.xff,
                    host: &c.host,
                    port: port_text.as_deref(),
                    tls,
                    via: plan.via,
                    pseudonym: rules::pseudonym(),
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
                let Some(target) = pick_target(&c.route, &tried) else {
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
                let kind = RouteKind::of(&c.route);
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
                    },
                    // This try's start: the upstream time is the successful try's alone,
                    // from choosing its instance, as on the Pingora path.
                    started: Instant::now(),
                };
                match ex.run(&mut stream, &mut scratch).await {
                    Ok(done) => break Ok((target, done)),
                    Err(f) => {
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
                        let _ = stream.write_all(&answer.to_http1(head_req)).await;
                        let _ = stream.flush().await;
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
                });
            }
            if close {
                let _ = stream.shutdown().await;
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

/// Waits for the next request on an idle connection: up to `keepalive`. Once the
/// connection has `served` a request, a graceful shutdown (checked every
/// [`SHUTDOWN_CHECK`]) closes it while idle, so its client connects to the process that
/// took over. A new connection's first request is always read and answered: its client
/// may have sent it already, and closing would fail it (tests/upgrade.rs caught that).
/// `false`: close the connection.
async fn wait_for_request(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    keepalive: Duration,
    served: bool,
    shutdown: &ShutdownWatch,
) -> bool {
    let mut left = keepalive;
    loop {
        if served && *shutdown.borrow() {
            return false;
        }
        let wait = left.min(SHUTDOWN_CHECK);
        buf.reserve(READ_BUF);
        match io::read_within(stream, buf, wait).await {
            Some(Ok(n)) => return n > 0,
            Some(Err(_)) => return false,
            None if left > wait => left -= wait,
            None => return false,
        }
    }
}

/// Reads more of a request head that has started.
async fn read_more(stream: &mut Stream, buf: &mut Vec<u8>, wait: Duration) -> bool {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ_BUF);
    }
    matches!(fast_timeout(wait, stream.read_buf(buf)).await, Ok(Ok(n)) if n > 0)
}

/// Puts the bytes read so far back on the stream, for Pingora to read them again.
fn handoff(stream: Stream, buf: &[u8]) -> Served {
    if buf.is_empty() {
        return Served::Handoff(stream);
    }
    if stream.as_any().is::<L4Stream>() {
        if let Ok(mut l4) = stream.into_any().downcast::<L4Stream>() {
            l4.rewind(buf);
            return Served::Handoff(l4);
        }
        return Served::Closed; // unreachable: the type was just checked
    }
    // A TLS stream cannot take bytes back itself.
    Served::Handoff(Box::new(rewound::Rewound::new(buf, stream)))
}

/// The proxy service's application: the fast path first, Pingora's proxy for the rest.
pub struct ProxyApp<A> {
    fast: Option<FastPath>,
    inner: Arc<A>,
}

impl<A> ProxyApp<A> {
    pub fn new(fast: Option<FastPath>, inner: A) -> Self {
        ProxyApp {
            fast,
            inner: Arc::new(inner),
        }
    }
}

#[async_trait]
impl<A> ServerApp for ProxyApp<A>
where
    A: ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let stream = match &self.fast {
            None => stream,
            Some(fast) => match fast.serve(stream, shutdown).await {
                Served::Closed => return None,
                Served::Handoff(s) => s,
            },
        };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
