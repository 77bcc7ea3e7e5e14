//! The HTTPS parts of the configuration: `xipgate.tls`, `xipgate.upstream.tls` and
//! `xipgate.acme`, typed and checked. Certificate files are read here once, so `xipgate -t`
//! names a bad or unreadable PEM file by its key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::acme_store::{check_store, AcmeStoreConfig};
use super::file::{AcmeFile, TlsFile, UpstreamTlsFile};
use super::validate::Checker;
use crate::tls::CertKey;

/// How often certificate files are checked for changes.
pub const DEFAULT_TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(10);
/// HTTP/2 is offered by ALPN unless turned off.
pub const DEFAULT_TLS_H2: bool = true;
/// How often ACME certificates are checked for renewal (and a failed order retried).
pub const DEFAULT_ACME_CHECK_INTERVAL: Duration = Duration::from_secs(3600);
/// Bound on each HTTP request to the CA: a CA that accepts and never answers fails the
/// order instead of holding it (and the store's lock) forever.
pub const DEFAULT_ACME_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a whole order. Let's Encrypt validates within seconds; this leaves room for a
/// slow CA and the self-check, and keeps a stuck order from outliving a check interval.
pub const DEFAULT_ACME_ORDER_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the self-check waits for every listed DNS server to answer a challenge.
pub const DEFAULT_ACME_SELF_CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// `xipgate.tls`.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub listen: Vec<SocketAddr>,
    /// (cert, key) file pairs, in the order given.
    pub certificates: Vec<(PathBuf, PathBuf)>,
    pub redirect_http: bool,
    /// The HTTPS port clients use (behind a load balancer it may differ from `listen`).
    pub public_port: Option<u16>,
    pub h2: bool,
    pub reload_interval: Duration,
}

/// `xipgate.upstream.tls`: TLS to instances that enable only their securePort.
#[derive(Debug, Clone, Default)]
pub struct UpstreamTlsConfig {
    pub verify: bool,
    pub ca_file: Option<PathBuf>,
    pub server_name: Option<String>,
}

/// `xipgate.acme`.
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    pub directory: String,
    pub contact: Vec<String>,
    pub domains: Vec<String>,
    pub store: AcmeStoreConfig,
    pub directory_ca: Option<PathBuf>,
    pub check_interval: Duration,
    pub request_timeout: Duration,
    pub order_timeout: Duration,
    /// DNS servers asked for a challenge before the CA is told it is ready.
    pub self_check: Vec<SocketAddr>,
    pub self_check_timeout: Duration,
}

fn path(c: &mut Checker, key: &str, raw: Option<&String>) -> Option<PathBuf> {
    match raw.map(|s| s.trim()) {
        Some(s) if !s.is_empty() => Some(PathBuf::from(s)),
        _ => {
            c.err(key, "required: a file path");
            None
        }
    }
}

impl TlsConfig {
    /// The HTTPS port clients use: `public_port`, else the first listener's.
    pub fn https_port(&self) -> Option<u16> {
        self.public_port
            .or_else(|| self.listen.first().map(|a| a.port()))
    }
}

pub(super) fn check_tls(c: &mut Checker, t: &TlsFile, acme: bool) -> TlsConfig {
    let listen_raw = t.listen.clone().unwrap_or_default();
    if listen_raw.is_empty() {
        c.err(
            "xipgate.tls.listen",
            "needs at least one address, e.g. 0.0.0.0:8443",
        );
    }
    let listen = listen_raw
        .iter()
        .enumerate()
        .filter_map(|(i, a)| c.addr(&format!("xipgate.tls.listen[{i}]"), a))
        .collect();
    let files = t.certificates.as_deref().unwrap_or_default();
    if files.is_empty() && !acme {
        c.err(
            "xipgate.tls.certificates",
            "needs at least one certificate (cert and key PEM files), or an xipgate.acme section",
        );
    }
    let mut certificates = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let key_of = |k: &str| format!("xipgate.tls.certificates[{i}].{k}");
        let (Some(cert), Some(key)) = (
            path(c, &key_of("cert"), f.cert.as_ref()),
            path(c, &key_of("key"), f.key.as_ref()),
        ) else {
            continue;
        };
        if let Err(e) = CertKey::load(&cert, &key) {
            // A key that does not belong to its certificate is the pair's fault (either
            // file may be the wrong one): the entry is named, not one of its keys.
            let at = match e {
                crate::tls::CertError::BadKey { .. } => key_of("key"),
                crate::tls::CertError::Read { ref path, .. } if *path == key => key_of("key"),
                crate::tls::CertError::KeyMismatch { .. } => {
                    format!("xipgate.tls.certificates[{i}]")
                }
                _ => key_of("cert"),
            };
            c.err(&at, e.to_string());
        }
        certificates.push((cert, key));
    }
    TlsConfig {
        listen,
        certificates,
        redirect_http: t.redirect_http.unwrap_or(false),
        public_port: t.public_port,
        h2: t.h2.unwrap_or(DEFAULT_TLS_H2),
        reload_interval: c.duration(
            "xipgate.tls.reload_interval",
            t.reload_interval.as_ref(),
            DEFAULT_TLS_RELOAD_INTERVAL,
        ),
    }
}

pub(super) fn check_upstream_tls(c: &mut Checker, t: &UpstreamTlsFile) -> UpstreamTlsConfig {
    let ca_file = t
        .ca_file
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    if let Some(p) = &ca_file {
        if let Err(e) = crate::tls::load_ca_bundle(p) {
            c.err("xipgate.upstream.tls.ca_file", e.to_string());
        }
    }
    let server_name = t
        .server_name
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase);
    UpstreamTlsConfig {
        verify: t.verify.unwrap_or(true),
        ca_file,
        server_name,
    }
}

pub(super) fn check_acme(
    c: &mut Checker,
    a: &AcmeFile,
    domains: &[String],
    dns: Option<&crate::dns::DnsConfig>,
    tls: bool,
) -> AcmeConfig {
    let dns_zones = dns.map(|d| d.zones.as_slice());
    let directory = a.directory.clone().unwrap_or_default().trim().to_string();
    match url::Url::parse(&directory) {
        Ok(u) if u.scheme() == "https" && u.host_str().is_some() => {}
        _ => c.err(
            "xipgate.acme.directory",
            format!("'{directory}' must be the https:// URL of an ACME directory"),
        ),
    }
    if a.terms_agreed != Some(true) {
        c.err(
            "xipgate.acme.terms_agreed",
            "must be true: ACME servers require agreeing to their terms of service",
        );
    }
    if !tls {
        c.err(
            "xipgate.acme",
            "needs an xipgate.tls section (the listeners that serve the certificates)",
        );
    }
    let acme_domains: Vec<String> = match &a.domains {
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, d)| c.domain(&format!("xipgate.acme.domains[{i}]"), d))
            .collect(),
        None => domains.to_vec(),
    };
    match dns_zones {
        None => c.err(
            "xipgate.acme",
            "needs the built-in DNS (xipgate.dns): it answers the DNS-01 challenges",
        ),
        Some(zones) => {
            for (i, d) in acme_domains.iter().enumerate() {
                let inside = zones
                    .iter()
                    .any(|z| d == z || d.ends_with(&format!(".{z}")));
                if !inside {
                    c.err(
                        &format!("xipgate.acme.domains[{i}]"),
                        format!(
                            "'{d}' is in none of xipgate.dns.zones ({}): the challenge could not be answered",
                            zones.join(", ")
                        ),
                    );
                }
            }
        }
    }
    for (i, ct) in a.contact.iter().flatten().enumerate() {
        if !ct.starts_with("mailto:") {
            c.err(
                &format!("xipgate.acme.contact[{i}]"),
                format!("'{ct}' must be a mailto: URL"),
            );
        }
    }
    let directory_ca = a
        .directory_ca
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    if let Some(p) = &directory_ca {
        if let Err(e) = crate::tls::load_ca_bundle(p) {
            c.err("xipgate.acme.directory_ca", e.to_string());
        }
    }
    AcmeConfig {
        directory,
        contact: a.contact.clone().unwrap_or_default(),
        store: check_store(c, a.store.as_ref(), &acme_domains),
        domains: acme_domains,
        directory_ca,
        check_interval: c.duration(
            "xipgate.acme.check_interval",
            a.check_interval.as_ref(),
            DEFAULT_ACME_CHECK_INTERVAL,
        ),
        request_timeout: c.duration(
            "xipgate.acme.request_timeout",
            a.request_timeout.as_ref(),
            DEFAULT_ACME_REQUEST_TIMEOUT,
        ),
        order_timeout: c.duration(
            "xipgate.acme.order_timeout",
            a.order_timeout.as_ref(),
            DEFAULT_ACME_ORDER_TIMEOUT,
        ),
        self_check: match &a.self_check {
            Some(list) => list
                .iter()
                .enumerate()
                .filter_map(|(i, s)| c.addr(&format!("xipgate.acme.self_check[{i}]"), s))
                .collect(),
            None => dns
                .map(|d| d.listen.iter().copied().map(reachable).collect())
                .unwrap_or_default(),
        },
        self_check_timeout: c.duration(
            "xipgate.acme.self_check_timeout",
            a.self_check_timeout.as_ref(),
            DEFAULT_ACME_SELF_CHECK_TIMEOUT,
        ),
    }
}

/// A listen address as this process can ask it: `0.0.0.0` and `[::]` on loopback.
fn reachable(mut a: SocketAddr) -> SocketAddr {
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    a
}
