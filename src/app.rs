//! Assembles the Pingora server from a checked [`Config`]: the registry sync as a
//! background service, the proxy on its listeners (started only once the registry is
//! loaded, so a new process taking over in an upgrade never answers "not loaded"), the
//! console on its own listener, and the optional DNS server.

use std::sync::Arc;

use async_trait::async_trait;
use log::error;
use pingora_core::apps::http_app::HttpServer;
use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora_core::server::configuration::Opt;
use pingora_core::server::{Server, ShutdownWatch};
use pingora_core::services::background::{background_service, BackgroundService};
use pingora_core::services::listening::Service;

use crate::acme::{Acme, AcmeError};
use crate::config::Config;
use crate::console::{Access, Console, Links};
use crate::dns::DnsConfig;
use crate::dns::{NoTxt, TxtRecords};
use crate::metrics::Metrics;
use crate::proxy::{
    AccessLog, AccessLogError, ConsoleListener, FastPath, Limited, PingoraProxy, ProxyApp,
    ProxySettings, ProxyShared,
};
use crate::registry::{
    EurekaClient, KubernetesSource, NacosSource, RegistrySync, Report, Source, SyncState,
};
use crate::routes::{Allowlist, Feed, OwnListeners, RouteTable};
use crate::tls::{CertSource, CertStore, Handshake, Origin, Reloader, TlsError};
use crate::traffic::Traffic;

/// Why the server could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot build a registry HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error(transparent)]
    AccessLog(#[from] AccessLogError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Acme(#[from] AcmeError),
    #[error(transparent)]
    Login(#[from] crate::access::LoginError),
    #[error(transparent)]
    Access(#[from] crate::access::GateError),
    #[error("xipgate.registry.kubernetes: {0}")]
    Kubernetes(#[from] crate::registry::KubeConnectionError),
    /// A source kind added to the sources list but not to `RegistryConfig::source_names`
    /// (or the other way round): the Feed would ignore what it publishes.
    #[error("registry sources {built:?} do not match their ranks {ranks:?}")]
    SourceRanks {
        built: Vec<String>,
        ranks: Vec<String>,
    },
}

/// The shared state every part reads, built once.
pub struct Parts {
    pub table: Arc<RouteTable>,
    /// Every registry source feeds the table through this.
    pub feed: Arc<Feed>,
    /// Every registry source, in rank order, started as background services.
    pub sources: Vec<Source>,
    pub sync_state: Arc<SyncState>,
    pub client: EurekaClient,
    pub metrics: Arc<Metrics>,
    /// Live traffic per service and instance (the console's charts).
    pub traffic: Arc<Traffic>,
    pub console: Arc<Console>,
    /// The certificates the HTTPS listeners serve (with `xipgate.tls`).
    pub certs: Option<Arc<CertStore>>,
    /// The ACME client (with `xipgate.acme`), started as a background service.
    pub acme: Option<Acme>,
}

impl Parts {
    pub fn new(cfg: &Config) -> Result<Self, AppError> {
        let certs = cfg.tls.as_ref().map(|t| {
            let store = CertStore::new(
                t.certificates
                    .iter()
                    .map(|(cert, key)| CertSource {
                        cert: cert.clone(),
                        key: key.clone(),
                        origin: Origin::File,
                    })
                    .collect(),
            );
            store.refresh();
            Arc::new(store)
        });
        let acme = match (&cfg.acme, &certs) {
            (Some(a), Some(store)) => Some(Acme::new(a.clone(), store.clone())?),
            _ => None,
        };
        let allow = Allowlist::new(cfg.upstream.allow.clone()).with_own(own_listeners(cfg));
        let table = Arc::new(RouteTable::with_balance(
            allow,
            Arc::new(cfg.balance.clone()),
        ));
        let ranks = cfg.registry.source_names();
        let feed = Arc::new(Feed::new(table.clone(), ranks.clone()));
        let client = EurekaClient::new(&cfg.registry)?;
        let sync_state = Arc::new(SyncState::new(client.sources()));
        let sources = registry_sources(cfg, &feed, &client, &sync_state)?;
        let built: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
        if built != ranks {
            return Err(AppError::SourceRanks { built, ranks });
        }
        let reports: Vec<Arc<dyn Report>> = sources.iter().map(|s| s.report.clone()).collect();
        let metrics = Arc::new(Metrics::new());
        let traffic = Arc::new(Traffic::default());
        let listener_port = cfg.listen.first().map_or(80, |a| a.port());
        let mut links = Links::new(
            cfg.domains[0].clone(),
            cfg.console.public_port,
            listener_port,
        );
        links.https_public_port = cfg.tls.as_ref().and_then(|t| t.https_port());
        let console = Arc::new(Console {
            table: table.clone(),
            sync: sync_state.clone(),
            client: client.clone(),
            metrics: metrics.clone(),
            traffic: traffic.clone(),
            links,
            access: Access {
                token: cfg.console.token.clone(),
                allow_clients: cfg.console.allow_clients.clone(),
            },
            certs: certs.clone(),
            acme: acme.as_ref().map(Acme::state),
            upstream_tls_verify: cfg.upstream.tls.verify,
            sources: reports,
            feed: feed.clone(),
            policy: Arc::new(cfg.access.policy()),
            access_summary: cfg.access.summary(),
            identity_jwks: cfg.access.identity_jwks(),
            domains: cfg.domains.clone(),
            gate: Default::default(),
        });
        Ok(Parts {
            table,
            feed,
            sources,
            sync_state,
            client,
            metrics,
            traffic,
            console,
            certs,
            acme,
        })
    }
}

/// Every registry source the config names, in rank order (`RegistryConfig::source_names`).
/// A new kind of source is one line here.
fn registry_sources(
    cfg: &Config,
    feed: &Arc<Feed>,
    client: &EurekaClient,
    sync_state: &Arc<SyncState>,
) -> Result<Vec<Source>, AppError> {
    let r = &cfg.registry;
    let mut sources = Vec::new();
    if r.eureka {
        let sync = RegistrySync::new(client.clone(), feed.clone(), sync_state.clone(), r.clone());
        sources.push(sync.into_source());
    }
    for n in &r.nacos {
        let nacos = NacosSource::new(n.clone(), feed.clone(), r.startup_wait, r.shrink_grace)?;
        sources.push(nacos.into_source());
    }
    if let Some(k) = &r.kubernetes {
        let kube = KubernetesSource::new(k.clone(), feed.clone(), r.startup_wait)?;
        sources.push(kube.into_source());
    }
    Ok(sources)
}

/// Every address the edge itself listens on and is known by: an instance registered there
/// is refused (a request to it would come back to the edge).
fn own_listeners(cfg: &Config) -> OwnListeners {
    let dns = cfg.dns.as_ref();
    OwnListeners {
        listeners: cfg
            .listen
            .iter()
            .chain(cfg.tls.iter().flat_map(|t| &t.listen))
            .chain(&cfg.console.listen)
            .chain(dns.into_iter().flat_map(|d| &d.listen))
            .copied()
            .collect(),
        addresses: cfg
            .edge_ip
            .iter()
            .chain(dns.into_iter().flat_map(|d| &d.edge_ips))
            .copied()
            .collect(),
    }
}

/// Builds the whole server, ready for `run_forever`.
pub fn build_server(opt: Opt, cfg: Config) -> Result<Server, AppError> {
    let mut parts = Parts::new(&cfg)?;
    let mut server = Server::new_with_opt_and_conf(opt, std::mem::take(&mut server_conf(&cfg)));
    server.bootstrap();
    let conf = server.configuration.clone();

    // One handle per registry source: the proxy starts once each has synced (or waited
    // startup_wait).
    let source_handles: Vec<_> = std::mem::take(&mut parts.sources)
        .into_iter()
        .map(|s| server.add_service(s.into_service()))
        .collect();

    let gate = Arc::new(cfg.access.gate()?);
    let _ = parts.console.gate.set(gate.clone());
    if let Some(stats) = gate.basic_stats() {
        parts.metrics.follow_basic(stats);
    }
    if let Some(stats) = gate.bearer_stats() {
        parts.metrics.follow_bearer(stats);
    }
    if gate.is_open() {
        log::warn!("xipgate.access: no rules, the edge is open: every service and instance (actuator endpoints included) answers whoever reaches the edge (docs/access.md)");
    } else {
        log::info!(
            "xipgate.access: {} rule(s); a request no rule allows is refused",
            gate.policy().rules.len()
        );
    }
    let access = Arc::new(AccessLog::new(&cfg.access_log, parts.metrics.clone())?);
    let login = match &cfg.access.login {
        Some(l) => {
            let login = Arc::new(
                l.login(&cfg.domains, edge_ports(&cfg))?
                    .with_identity_jwks(cfg.access.identity_jwks()),
            );
            server.add_service(background_service(
                "oidc discovery",
                Discovery(login.clone()),
            ));
            Some(login)
        }
        None => None,
    };
    let shared = ProxyShared {
        settings: ProxySettings::from_config(&cfg)?,
        table: parts.table.clone(),
        sync: parts.sync_state.clone(),
        metrics: parts.metrics.clone(),
        traffic: parts.traffic.clone(),
        access,
        login,
        gate,
    };
    // With redirect_http every plain request is answered by Pingora's path (the redirect
    // rule lives there), so the fast path would only add a handoff.
    let redirect = shared.settings.https_redirect.is_some();
    let fast = FastPath::new(
        shared.clone(),
        conf.upstream_keepalive_pool_size,
        cfg.fast_path && !redirect,
    );
    if fast.takes() {
        server.add_service(background_service("fast path pool sweep", fast.sweeper()));
    }
    let mut app = pingora_proxy::http_proxy(
        &conf,
        PingoraProxy::new(shared.clone(), Some(parts.console.clone())),
    );
    // HTTP/2 over cleartext for clients that ask with prior knowledge: ProxyApp decides
    // (with a deadline) and hands Pingora only connections that start with the preface.
    let mut opts = HttpServerOptions::default();
    opts.h2c = true;
    app.server_options = Some(opts);
    let mut proxy = Service::new(
        "xipgate proxy".to_string(),
        Limited::new(
            ProxyApp::new(fast, app),
            cfg.max_client_connections,
            cfg.client_ipv6_prefix,
            true,
        ),
    );
    for addr in &cfg.listen {
        proxy.add_listener(tcp_listener(&addr.to_string()));
    }
    let proxy_handle = server.add_service(proxy);
    for h in &source_handles {
        proxy_handle.add_dependency(h);
    }

    if let (Some(tls), Some(store)) = (&cfg.tls, &parts.certs) {
        let app = pingora_proxy::http_proxy(
            &conf,
            PingoraProxy::new(shared.clone(), Some(parts.console.clone())),
        );
        // The fast path takes HTTP/1.1 over TLS too (HTTP/2 goes to Pingora's engine).
        let fast = FastPath::new(
            shared.clone(),
            conf.upstream_keepalive_pool_size,
            cfg.fast_path,
        );
        if fast.takes() {
            server.add_service(background_service(
                "https fast path pool sweep",
                fast.sweeper(),
            ));
        }
        // The TLS handshake is the application's first step (`tls::Handshake`), after the
        // per-client limit: the listener itself is plain TCP.
        let handshake = Handshake::new(
            store.clone(),
            tls.h2,
            cfg.header_timeout,
            ProxyApp::new(fast, app),
        )?;
        let mut https = Service::new(
            "xipgate https".to_string(),
            Limited::new(
                handshake,
                cfg.max_client_connections,
                cfg.client_ipv6_prefix,
                false,
            ),
        );
        for addr in &tls.listen {
            https.add_listener(tcp_listener(&addr.to_string()));
        }
        let https_handle = server.add_service(https);
        for h in &source_handles {
            https_handle.add_dependency(h);
        }
        server.add_service(background_service(
            "tls reload",
            Reloader {
                store: store.clone(),
                interval: tls.reload_interval,
            },
        ));
    }

    if let Some(addr) = cfg.console.listen {
        let mut console = Service::new(
            "xipgate console".to_string(),
            HttpServer::new_app(ConsoleListener::new(parts.console.clone())),
        );
        console.add_listener(tcp_listener(&addr.to_string()));
        // Not dependent on the registry: /healthz and /readyz must answer while it loads.
        server.add_service(console);
    }

    // The DNS server answers the ACME challenges from memory, kept current from the store
    // every replica shares by a service of its own (never read on the DNS thread).
    let txt: Arc<dyn TxtRecords> = match &parts.acme {
        Some(acme) => {
            server.add_service(background_service("acme store", acme.follower()));
            acme.txt_records()
        }
        None => Arc::new(NoTxt),
    };
    if let Some(dns) = &cfg.dns {
        server.add_service(background_service(
            "xipgate dns",
            DnsService(Arc::new(dns.clone()), txt),
        ));
    }
    if let Some(acme) = parts.acme.take() {
        server.add_service(background_service("acme", acme));
    }
    Ok(server)
}

fn server_conf(cfg: &Config) -> pingora_core::server::configuration::ServerConf {
    // ServerConf is not Clone; round-trip through YAML, which it is built for.
    serde_yaml::from_value(serde_yaml::to_value(&cfg.server).expect("ServerConf serialises"))
        .expect("a serialised ServerConf parses back")
}

/// The ports browsers reach the proxy on (plain and HTTPS, public ones included): the
/// only ones a post-login redirect may name.
fn edge_ports(cfg: &Config) -> Vec<u16> {
    let tls = cfg.tls.iter();
    cfg.listen
        .iter()
        .chain(tls.clone().flat_map(|t| &t.listen))
        .map(|a| a.port())
        .chain(tls.filter_map(|t| t.https_port()))
        .collect()
}

/// Keeps the login's discovery document fresh (fetched at start, not at the first login).
struct Discovery(Arc<crate::access::Login>);

#[async_trait]
impl BackgroundService for Discovery {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            () = self.0.keep_discovered() => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// The DNS server as a Pingora background service.
struct DnsService(Arc<DnsConfig>, Arc<dyn TxtRecords>);

#[async_trait]
impl BackgroundService for DnsService {
    async fn start(&self, shutdown: ShutdownWatch) {
        let (udp, tcp) = match crate::dns::bind(&self.0).await {
            Ok(s) => s,
            Err(e) => {
                error!("DNS server not started: {e}");
                return;
            }
        };
        if let Err(e) = crate::dns::serve(self.0.clone(), udp, tcp, self.1.clone(), shutdown).await
        {
            error!("DNS server stopped: {e}");
        }
    }
}

/// The read buffer Pingora puts under each accepted connection: none. Pingora's default is
/// 64 KiB, zeroed at every accept (tokio's `BufReader`): 65,000 of the ~100,000
/// instructions a new plain connection cost (bench/cost.sh, issue 27). Both engines read
/// request heads and bodies into buffers of their own, larger than any read the
/// `BufReader` would save, so it only copied; over TLS, OpenSSL reads ahead into its own
/// record buffer (`tls::Handshake`), which saves the reads the `BufReader` did.
const READ_BUFFER: usize = 0;

/// A TCP listener (plain HTTP, HTTPS, the console) without Pingora's read buffer.
fn tcp_listener(addr: &str) -> ListenerConfig {
    ListenerConfig::tcp(addr).l4_buffer(L4BufferSettings::new(
        READ_BUFFER,
        DEFAULT_L4_WRITE_BUFFER_SIZE,
    ))
}
