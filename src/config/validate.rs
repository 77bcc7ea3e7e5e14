//! File structs → typed [`Config`], every problem collected with its key path.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use super::file::ByteSize;
use super::*;

/// Collects problems while converting, so `xipgate -t` can print them all at once.
#[derive(Default)]
pub(super) struct Checker {
    errors: Vec<ConfigError>,
}

impl Checker {
    #[cfg(test)]
    pub(super) fn into_errors(self) -> Vec<ConfigError> {
        self.errors
    }

    pub(super) fn err(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            key: key.to_string(),
            message: message.into(),
        });
    }

    pub(super) fn duration(
        &mut self,
        key: &str,
        value: Option<&String>,
        default: Duration,
    ) -> Duration {
        let Some(raw) = value else { return default };
        match humantime::parse_duration(raw.trim()) {
            Ok(d) if d.is_zero() => {
                self.err(key, format!("'{raw}' must be longer than zero"));
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.err(
                    key,
                    format!("'{raw}' is not a duration like 10s, 500ms or 2m ({e})"),
                );
                default
            }
        }
    }

    pub(super) fn addr(&mut self, key: &str, raw: &str) -> Option<SocketAddr> {
        match raw.trim().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    key,
                    format!("'{raw}' is not an address like 0.0.0.0:8080 or [::]:8080"),
                );
                None
            }
        }
    }

    pub(super) fn cidrs(&mut self, key: &str, raw: &[String]) -> Vec<IpNet> {
        let mut out = Vec::with_capacity(raw.len());
        for (i, s) in raw.iter().enumerate() {
            let s = s.trim();
            // A bare address means just that address.
            let parsed = s
                .parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from));
            match parsed {
                Ok(n) => out.push(n.trunc()),
                Err(_) => self.err(
                    &format!("{key}[{i}]"),
                    format!("'{s}' is not a CIDR like 10.0.0.0/8"),
                ),
            }
        }
        out
    }

    pub(super) fn domain(&mut self, key: &str, raw: &str) -> Option<String> {
        let d = raw.trim().trim_end_matches('.').to_ascii_lowercase();
        let valid = !d.is_empty()
            && d.len() <= names::MAX_HOST_LEN
            && d.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= names::MAX_LABEL_LEN
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if valid {
            Some(d)
        } else {
            self.err(key, format!("'{raw}' is not a valid domain name"));
            None
        }
    }

    pub(super) fn url(&mut self, key: &str, raw: &str) -> Option<EurekaUrl> {
        let parsed = match url::Url::parse(raw.trim()) {
            Ok(u) => u,
            Err(e) => {
                self.err(key, format!("'{}' is not a URL ({e})", redact(raw)));
                return None;
            }
        };
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            self.err(
                key,
                format!(
                    "'{}' must be an http:// or https:// URL with a host",
                    redact(raw)
                ),
            );
            return None;
        }
        // Userinfo is percent-encoded, not form data: `+`, `&` and `=` are themselves.
        let auth = (!parsed.username().is_empty()).then(|| {
            (
                names::percent_decode(parsed.username()),
                parsed
                    .password()
                    .map(names::percent_decode)
                    .unwrap_or_default(),
            )
        });
        let mut clean = parsed.clone();
        let _ = clean.set_username("");
        let _ = clean.set_password(None);
        let base = clean.as_str().trim_end_matches('/').to_string();
        Some(EurekaUrl { base, auth })
    }
}

use crate::names;

/// A URL for an error message, with its credentials replaced. It is refused, so it may
/// not parse: everything before the last `@` (after any `scheme://`) is taken for
/// credentials, which hides more than the password when a path has an `@`, never less.
fn redact(raw: &str) -> String {
    let raw = raw.trim();
    let start = raw.find("://").map_or(0, |i| i + 3);
    match raw[start..].rfind('@') {
        Some(at) => format!("{}***{}", &raw[..start], &raw[start + at..]),
        None => raw.to_string(),
    }
}

fn byte_size(c: &mut Checker, key: &str, value: Option<&ByteSize>, default: usize) -> usize {
    let Some(ByteSize(raw)) = value else {
        return default;
    };
    let s = raw.trim();
    let split = s.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let mult: Option<u64> = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => Some(1),
        "k" | "kb" => Some(1000),
        "kib" => Some(1024),
        "m" | "mb" => Some(1_000_000),
        "mib" => Some(1024 * 1024),
        "g" | "gb" => Some(1_000_000_000),
        "gib" => Some(1024 * 1024 * 1024),
        _ => None,
    };
    match (num.parse::<u64>(), mult) {
        (Ok(n), Some(m)) if n > 0 => usize::try_from(n.saturating_mul(m)).unwrap_or(usize::MAX),
        _ => {
            c.err(key, format!("'{raw}' is not a size like 64MiB or 1000000"));
            default
        }
    }
}

/// Checks and converts everything; returns every problem found.
pub fn validate(parsed: ParsedFile, source: &str) -> Result<Config, ConfigErrors> {
    let ParsedFile { server, xipgate: x } = parsed;
    let mut c = Checker { errors: Vec::new() };

    let listen_raw = x
        .listen
        .clone()
        .unwrap_or_else(|| vec![DEFAULT_LISTEN.to_string()]);
    if listen_raw.is_empty() {
        c.err("xipgate.listen", "needs at least one address");
    }
    let listen: Vec<SocketAddr> = listen_raw
        .iter()
        .enumerate()
        .filter_map(|(i, a)| c.addr(&format!("xipgate.listen[{i}]"), a))
        .collect();

    let domains_raw = x
        .domains
        .clone()
        .unwrap_or_else(|| vec![DEFAULT_DOMAIN.to_string()]);
    if domains_raw.is_empty() {
        c.err(
            "xipgate.domains",
            "needs at least one domain (a request host is <label>.<domain>)",
        );
    }
    let domains: Vec<String> = domains_raw
        .iter()
        .enumerate()
        .filter_map(|(i, d)| c.domain(&format!("xipgate.domains[{i}]"), d))
        .collect();

    let edge_ip = x
        .edge_ip
        .as_deref()
        .and_then(|raw| match raw.trim().parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                c.err("xipgate.edge_ip", format!("'{raw}' is not an IP address"));
                None
            }
        });

    let e = &x.registry.eureka;
    let urls_raw = e
        .urls
        .clone()
        .unwrap_or_else(|| vec![DEFAULT_EUREKA_URL.to_string()]);
    if urls_raw.is_empty() {
        c.err(
            "xipgate.registry.eureka.urls",
            "needs at least one Eureka URL",
        );
    }
    let urls: Vec<EurekaUrl> = urls_raw
        .iter()
        .enumerate()
        .filter_map(|(i, u)| c.url(&format!("xipgate.registry.eureka.urls[{i}]"), u))
        .collect();
    let mut registry = RegistryConfig {
        urls,
        interval: c.duration(
            "xipgate.registry.eureka.interval",
            e.interval.as_ref(),
            DEFAULT_INTERVAL,
        ),
        timeout: c.duration(
            "xipgate.registry.eureka.timeout",
            e.timeout.as_ref(),
            DEFAULT_TIMEOUT,
        ),
        max_body: byte_size(
            &mut c,
            "xipgate.registry.eureka.max_body",
            e.max_body.as_ref(),
            DEFAULT_MAX_BODY,
        ),
        delta: e.delta.unwrap_or(true),
        startup_wait: c.duration(
            "xipgate.registry.startup_wait",
            x.registry.startup_wait.as_ref(),
            DEFAULT_STARTUP_WAIT,
        ),
        shrink_grace: c.duration(
            "xipgate.registry.shrink_grace",
            x.registry.shrink_grace.as_ref(),
            DEFAULT_SHRINK_GRACE,
        ),
        delta_window: c.duration(
            "xipgate.registry.eureka.delta_window",
            e.delta_window.as_ref(),
            DEFAULT_DELTA_WINDOW,
        ),
        eureka: e.enabled.unwrap_or(true),
        nacos: super::nacos::check_nacos(&mut c, x.registry.nacos.as_deref().unwrap_or_default()),
        kubernetes: None,
    };
    if let Some(k) = &x.registry.kubernetes {
        let mut taken: Vec<String> = registry.nacos.iter().map(|n| n.name.clone()).collect();
        taken.push("eureka".into());
        registry.kubernetes = Some(super::kubernetes::check_kubernetes(&mut c, k, &taken));
    }
    if !registry.eureka && registry.nacos.is_empty() && registry.kubernetes.is_none() {
        c.err(
            "xipgate.registry",
            "no registry to read: eureka.enabled is false and neither nacos nor kubernetes is configured",
        );
    }

    let u = &x.upstream;
    let allow_raw = u
        .allow
        .clone()
        .unwrap_or_else(|| DEFAULT_ALLOW.iter().map(|s| s.to_string()).collect());
    let max_tries = u.max_tries.unwrap_or(DEFAULT_MAX_TRIES);
    if !(1..=10).contains(&max_tries) {
        c.err(
            "xipgate.upstream.max_tries",
            format!("{max_tries} is out of range 1..=10"),
        );
    }
    let upstream = UpstreamConfig {
        allow: c.cidrs("xipgate.upstream.allow", &allow_raw),
        connect_timeout: c.duration(
            "xipgate.upstream.connect_timeout",
            u.connect_timeout.as_ref(),
            DEFAULT_CONNECT_TIMEOUT,
        ),
        read_timeout: c.duration(
            "xipgate.upstream.read_timeout",
            u.read_timeout.as_ref(),
            DEFAULT_READ_TIMEOUT,
        ),
        write_timeout: c.duration(
            "xipgate.upstream.write_timeout",
            u.write_timeout.as_ref(),
            DEFAULT_WRITE_TIMEOUT,
        ),
        max_tries: max_tries.clamp(1, 10),
        tls: super::tls::check_upstream_tls(&mut c, &u.tls),
    };

    let keepalive_timeout = c.duration(
        "xipgate.downstream.keepalive_timeout",
        x.downstream.keepalive_timeout.as_ref(),
        DEFAULT_KEEPALIVE_TIMEOUT,
    );
    let max_client_connections = x
        .downstream
        .max_client_connections
        .unwrap_or(DEFAULT_MAX_CLIENT_CONNECTIONS);
    if max_client_connections == 0 {
        c.err(
            "xipgate.downstream.max_client_connections",
            "must be at least 1",
        );
    }
    let header_timeout = c.duration(
        "xipgate.downstream.header_timeout",
        x.downstream.header_timeout.as_ref(),
        DEFAULT_HEADER_TIMEOUT,
    );
    let client_ipv6_prefix = x
        .downstream
        .client_ipv6_prefix
        .unwrap_or(DEFAULT_CLIENT_IPV6_PREFIX);
    if !(1..=128).contains(&client_ipv6_prefix) {
        c.err(
            "xipgate.downstream.client_ipv6_prefix",
            format!("{client_ipv6_prefix} is out of range 1..=128 (a prefix length)"),
        );
    }
    let cors = cors_config(&mut c, &x.cors, &domains);
    let access = access::check_access(&mut c, x.access.as_ref(), &listen);
    let balance = super::balance::check_balance(&mut c, x.balance.as_ref());

    let dns = x.dns.as_ref().and_then(|d| {
        let listen: Vec<SocketAddr> = d
            .listen
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, a)| c.addr(&format!("xipgate.dns.listen[{i}]"), a))
            .collect();
        if listen.is_empty() {
            // A dns section without listen addresses means DNS is off.
            return None;
        }
        let zones = match &d.zones {
            Some(z) => z
                .iter()
                .enumerate()
                .filter_map(|(i, z)| c.domain(&format!("xipgate.dns.zones[{i}]"), z))
                .collect(),
            None => match crate::dns::default_zones(&domains) {
                Some(z) => z,
                None => {
                    c.err(
                        "xipgate.dns.zones",
                        "required: no common parent of xipgate.domains is obvious",
                    );
                    Vec::new()
                }
            },
        };
        let edge_ips: Vec<IpAddr> = match &d.edge_ips {
            Some(ips) => ips
                .iter()
                .enumerate()
                .filter_map(|(i, ip)| match ip.trim().parse() {
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        c.err(
                            &format!("xipgate.dns.edge_ips[{i}]"),
                            format!("'{ip}' is not an IP address"),
                        );
                        None
                    }
                })
                .collect(),
            None => edge_ip.into_iter().collect(),
        };
        if edge_ips.is_empty() {
            c.err(
                "xipgate.dns.edge_ips",
                "required when xipgate.edge_ip (env XIP_IP) is not set",
            );
        }
        let dns = crate::dns::DnsConfig {
            listen,
            zones,
            edge_ips,
            ttl: d.ttl.unwrap_or(DEFAULT_DNS_TTL),
        };
        // The zone rules live with the DNS server; checked here, once, with the key.
        if let Err(e) = dns.validate() {
            c.err("xipgate.dns.zones", e.to_string());
        }
        Some(dns)
    });

    let tls = x
        .tls
        .as_ref()
        .map(|t| super::tls::check_tls(&mut c, t, x.acme.is_some()));
    let acme = x
        .acme
        .as_ref()
        .map(|a| super::tls::check_acme(&mut c, a, &domains, dns.as_ref(), tls.is_some()));

    // After `tls`: whether the console host is public depends on every proxy listener.
    let proxy_listeners: Vec<SocketAddr> = listen
        .iter()
        .chain(tls.iter().flat_map(|t| t.listen.iter()))
        .copied()
        .collect();
    let console = super::console::check_console(&mut c, &x.console, &proxy_listeners);

    if x.log
        .access_file
        .as_deref()
        .is_some_and(|f| f.trim().is_empty())
    {
        c.err(
            "xipgate.log.access_file",
            "must be a file path (or left out)",
        );
    }

    if server.threads == 0 {
        c.err("threads", "must be at least 1");
    }

    if !c.errors.is_empty() {
        return Err(ConfigErrors {
            file: source.to_string(),
            errors: c.errors,
        });
    }
    Ok(Config {
        source: source.to_string(),
        server,
        listen,
        domains,
        edge_ip,
        registry,
        upstream,
        keepalive_timeout,
        max_client_connections,
        header_timeout,
        client_ipv6_prefix,
        fast_path: x.downstream.fast_path.unwrap_or(DEFAULT_FAST_PATH),
        cors,
        console,
        dns,
        tls,
        acme,
        access,
        balance,
        access_log: AccessLogConfig {
            enabled: x.log.access.unwrap_or(DEFAULT_ACCESS_LOG),
            file: x
                .log
                .access_file
                .filter(|f| !f.trim().is_empty())
                .map(std::path::PathBuf::from),
        },
    })
}

/// `xipgate.cors`: the origins listed must be origins (`scheme://host[:port]`, as browsers
/// send them) or `*`, and `*` only without credentials: any page reading answers with the
/// user's cookies is exactly what the list exists to prevent.
fn cors_config(c: &mut Checker, f: &super::file::CorsFile, domains: &[String]) -> CorsConfig {
    let allow_credentials = f
        .allow_credentials
        .unwrap_or(DEFAULT_CORS_ALLOW_CREDENTIALS);
    let mut allow_origins = Vec::new();
    let mut any_origin = false;
    for (i, o) in f.allow_origins.iter().flatten().enumerate() {
        let o = o.trim();
        if o == "*" {
            any_origin = true;
        } else if crate::names::origin_host(o).is_some() {
            allow_origins.push(o.trim_end_matches('/').to_ascii_lowercase());
        } else {
            c.err(
                &format!("xipgate.cors.allow_origins[{i}]"),
                format!(
                    "'{}' is not an origin: write scheme://host[:port] as browsers send it (https://ui.example.com), or * for any",
                    crate::names::printable(o)
                ),
            );
        }
    }
    if any_origin && allow_credentials {
        c.err(
            "xipgate.cors.allow_origins",
            "* with allow_credentials: true would let every web page read answers with its visitors' cookies; set xipgate.cors.allow_credentials: false or list the origins",
        );
    }
    CorsConfig {
        enabled: f.enabled.unwrap_or(true),
        allow_credentials,
        max_age: c.duration(
            "xipgate.cors.max_age",
            f.max_age.as_ref(),
            DEFAULT_CORS_MAX_AGE,
        ),
        own_domains: domains.to_vec(),
        allow_origins,
        any_origin,
    }
}

/// An RFC 1123 label, as namespace, port and object-name prefixes are (the ACME store's
/// settings use it too).
pub(super) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}
