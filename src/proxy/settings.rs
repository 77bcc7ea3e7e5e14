//! What the proxy engines share: the settings copied from the configuration once at start,
//! how instances are reached over TLS, and the shared state ([`ProxyShared`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora_core::tls::x509::X509;
use pingora_core::upstreams::peer::HttpPeer;

use super::{upstream_cert, AccessLog};
use crate::access::Gate;
use crate::config::{Config, CorsConfig, UpstreamTlsConfig};
use crate::instance::Instance;
use crate::metrics::Metrics;
use crate::registry::SyncState;
use crate::routes::RouteTable;
use crate::tls::{load_ca_bundle, TlsError};
use crate::traffic::Traffic;

/// What the proxy needs from the configuration, copied once at start.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub domains: Vec<String>,
    pub console_host: Option<String>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub max_tries: u32,
    pub keepalive_secs: u64,
    /// The most a request head may take from its first byte (and a TLS handshake).
    pub header_timeout: Duration,
    pub cors: CorsConfig,
    /// TLS to instances that enable only their securePort.
    pub upstream_tls: UpstreamTls,
    /// With `xipgate.tls.redirect_http`: the HTTPS port plain requests are sent to.
    pub https_redirect: Option<u16>,
    /// The port connections arrive on, when known at start (X-Forwarded-Port).
    pub listen_ports: ListenPorts,
}

/// The port a connection arrived on is its listener's, so when every plain (`listen`) or
/// every HTTPS (`tls.listen`) address has the same port, that port is known at start and
/// X-Forwarded-Port costs no `getsockname(2)` per connection (Pingora asks the socket the
/// first time; bench/cost.sh, issue 27). Otherwise (several ports, or 0: the system picks
/// one) the socket is asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenPorts {
    plain: Option<u16>,
    tls: Option<u16>,
}

impl ListenPorts {
    pub fn new(plain: &[SocketAddr], tls: &[SocketAddr]) -> Self {
        ListenPorts {
            plain: one_port(plain),
            tls: one_port(tls),
        }
    }

    /// The local port of a plain or a TLS connection: the listeners' if known, else `ask`.
    /// Both engines call this.
    pub fn port(&self, tls: bool, ask: impl FnOnce() -> Option<u16>) -> Option<u16> {
        if tls { self.tls } else { self.plain }.or_else(ask)
    }
}

/// The port all of `addrs` share, if they share one and it is not 0.
fn one_port(addrs: &[SocketAddr]) -> Option<u16> {
    let port = addrs.first()?.port();
    (port != 0 && addrs.iter().all(|a| a.port() == port)).then_some(port)
}

/// How instances are reached over TLS (`xipgate.upstream.tls`).
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    pub verify: bool,
    /// Replaces the system's CAs when set.
    pub ca: Option<Arc<Box<[X509]>>>,
    /// The name sent and verified; by default the instance's hostName.
    pub server_name: Option<String>,
    /// Why instances' certificates were refused, recently.
    pub(super) verdicts: Arc<upstream_cert::Verdicts>,
}

impl UpstreamTls {
    pub fn from_config(cfg: &UpstreamTlsConfig) -> Result<Self, TlsError> {
        Ok(UpstreamTls {
            verify: cfg.verify,
            ca: cfg.ca_file.as_deref().map(load_ca_bundle).transpose()?,
            server_name: cfg.server_name.clone(),
            verdicts: Arc::default(),
        })
    }

    /// The name sent (SNI) and verified for an instance.
    pub(super) fn name(&self, instance: &Instance) -> String {
        self.server_name
            .clone()
            .unwrap_or_else(|| instance.host_name.to_ascii_lowercase())
    }

    /// The peer for one try at an instance's securePort.
    pub(super) fn peer(&self, addr: SocketAddr, instance: &Instance) -> HttpPeer {
        let sni = self.name(instance);
        let mut peer = HttpPeer::new(addr, true, sni);
        peer.options.verify_cert = self.verify;
        peer.options.verify_hostname = self.verify;
        peer.options.ca = self.ca.clone();
        peer
    }
}

impl ProxySettings {
    pub fn from_config(cfg: &Config) -> Result<Self, TlsError> {
        Ok(ProxySettings {
            domains: cfg.domains.clone(),
            console_host: cfg.console.host.clone(),
            connect_timeout: cfg.upstream.connect_timeout,
            read_timeout: cfg.upstream.read_timeout,
            write_timeout: cfg.upstream.write_timeout,
            max_tries: cfg.upstream.max_tries,
            keepalive_secs: cfg.keepalive_timeout.as_secs().max(1),
            header_timeout: cfg.header_timeout,
            cors: cfg.cors.clone(),
            upstream_tls: UpstreamTls::from_config(&cfg.upstream.tls)?,
            https_redirect: cfg
                .tls
                .as_ref()
                .filter(|t| t.redirect_http)
                .map(|t| t.https_port().unwrap_or(443)),
            listen_ports: ListenPorts::new(
                &cfg.listen,
                cfg.tls.as_ref().map_or(&[][..], |t| &t.listen),
            ),
        })
    }
}

/// What both engines share: settings, the routing table, the sync state and the metrics
/// (used by [`PingoraProxy`], Pingora's `ProxyHttp`, and by the fast path).
#[derive(Clone)]
pub struct ProxyShared {
    pub settings: ProxySettings,
    pub table: Arc<RouteTable>,
    pub sync: Arc<SyncState>,
    pub metrics: Arc<Metrics>,
    pub traffic: Arc<Traffic>,
    pub access: Arc<AccessLog>,
    /// The login host's handler (`xipgate.access.login`).
    pub login: Option<Arc<crate::access::Login>>,
    /// `xipgate.access`: who may reach what, decided for both engines.
    pub gate: Arc<Gate>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connections_port_is_known_when_its_listeners_share_one() {
        let a = |s: &str| -> SocketAddr { s.parse().expect("addr") };
        let asked = || Some(1);
        for (plain, tls, want_plain, want_tls) in [
            (
                vec![a("0.0.0.0:80")],
                vec![a("0.0.0.0:443")],
                Some(80),
                Some(443),
            ),
            (
                vec![a("0.0.0.0:80"), a("[::]:80")],
                vec![],
                Some(80),
                Some(1),
            ),
            (
                vec![a("0.0.0.0:80"), a("127.0.0.1:8080")],
                vec![],
                Some(1),
                Some(1),
            ),
            (
                vec![a("127.0.0.1:0")],
                vec![a("127.0.0.1:0")],
                Some(1),
                Some(1),
            ),
            (vec![], vec![], Some(1), Some(1)),
        ] {
            let ports = ListenPorts::new(&plain, &tls);
            assert_eq!(ports.port(false, asked), want_plain, "{plain:?}");
            assert_eq!(ports.port(true, asked), want_tls, "{tls:?}");
        }
    }
}
