//! Configuration: one YAML file with Pingora's server keys at the top level and our own
//! `xipgate:` section, plus the older design's environment variables on top.
//!
//! Loading is split in three steps so each can be tested alone: [`parse`] turns text into
//! the file structs (syntax, unknown keys), [`apply_env`] lays the environment over them,
//! and [`validate`] turns them into the typed [`Config`], collecting every problem with its
//! key path instead of stopping at the first.

pub mod access;
mod acme_store;
mod balance;
mod console;
pub mod file;
mod kubernetes;
mod nacos;
mod tls;
mod validate;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use pingora_core::server::configuration::ServerConf;

pub use access::{
    AccessConfig, ActuatorConfig, BasicConfig, BearerConfig, IdentityConfig, LoginConfig,
};
pub use acme_store::{
    AcmeStoreConfig, KubeStoreConfig, DEFAULT_ACME_LEASE_DURATION, DEFAULT_ACME_SECRET_PREFIX,
    DEFAULT_ACME_STORE,
};
pub use balance::{BalanceFile, DEFAULT_CANARY_VALUES};
pub use file::XipgateFile;
pub use kubernetes::{
    KubernetesConfig, KubernetesFile, Namespaces, ALL_NAMESPACES, DEFAULT_KUBERNETES_NAME,
    DEFAULT_PORT_NAMES, SYSTEM_NAMESPACE,
};
pub use nacos::{NacosApi, NacosConfig, DEFAULT_NACOS_GROUP, DEFAULT_POD_NAME_KEYS};
pub use tls::{
    AcmeConfig, TlsConfig, UpstreamTlsConfig, DEFAULT_ACME_CHECK_INTERVAL, DEFAULT_TLS_H2,
    DEFAULT_TLS_RELOAD_INTERVAL,
};
pub use validate::validate;

/// The bundled default configuration, used when no `-c` is given.
pub const DEFAULT_CONFIG: &str = include_str!("../../conf/xipgate.yaml");
/// What the bundled defaults are called in messages.
pub const DEFAULT_CONFIG_NAME: &str = "conf/xipgate.yaml (built in)";

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_DOMAIN: &str = "127-0-0-1.sslip.io";
pub const DEFAULT_EUREKA_URL: &str = "http://127.0.0.1:8761/eureka";
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// 64 MiB: a 10,000-instance registry is about 30 MB of JSON.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024 * 1024;
pub const DEFAULT_STARTUP_WAIT: Duration = Duration::from_secs(30);
/// Long enough for every Spring client to find its lease gone at its next heartbeat (30 s)
/// and register again with a restarted server, with room for its response cache.
/// Pingora's `fast_timeout_to_tokio_threshold_seconds` unless the file sets it: every
/// timeout of a second or more runs on Tokio's timer. Pingora's own timer (its default below
/// 15 minutes) needs a thread that wakes every 10 ms for the rest of the process's life once
/// any timeout has used it: ~100 system calls a second at idle, and a share of every
/// request's under load (bench/cost.sh, docs/performance.md "Cost per request").
pub const FAST_TIMEOUT_TO_TOKIO_THRESHOLD_SECONDS: u64 = 0;
pub const DEFAULT_SHRINK_GRACE: Duration = Duration::from_secs(120);
/// A Eureka server keeps 180 s of changes (`retentionTimeInMSInDeltaQueue`), and the
/// delta it serves can be up to 30 s old (its response cache): a copy more than
/// 180 - 30 s old may have missed a change no delta still carries.
pub const DEFAULT_DELTA_WINDOW: Duration = Duration::from_secs(150);
/// Private ranges, CGNAT and IPv6 unique-local. Not loopback: no real instance lives
/// there, and in a pod it is the edge itself (its console included); list it explicitly
/// for backends on the edge's own machine (the demo and the tests do).
pub const DEFAULT_ALLOW: [&str; 5] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
];
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_TRIES: u32 = 3;
/// Pingora keeps idle client connections forever by default; we do not.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// Per client address; generous because whole offices sit behind one NAT address.
pub const DEFAULT_MAX_CLIENT_CONNECTIONS: usize = 2000;
/// Plain HTTP/1.1 requests without a body take the fast path (see `proxy::fast`).
pub const DEFAULT_FAST_PATH: bool = true;
/// A request head (or a TLS handshake) must be complete this long after it started: a
/// client that trickles it (slowloris) holds its connection no longer. Pingora's own limit
/// is per read (60 s), which a byte a minute never meets.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// IPv6 clients share `max_client_connections` per /64: one host is usually given a
/// whole /64 and can pick any address in it.
pub const DEFAULT_CLIENT_IPV6_PREFIX: u8 = 64;
/// `xipgate.log.access`: one access-log record per request.
pub const DEFAULT_ACCESS_LOG: bool = true;
pub const DEFAULT_CORS_MAX_AGE: Duration = Duration::from_secs(600);
/// Allowed origins (the edge's own domains and `cors.allow_origins`) get credentials.
pub const DEFAULT_CORS_ALLOW_CREDENTIALS: bool = true;
pub const DEFAULT_CONSOLE_LISTEN: &str = "127.0.0.1:9080";
/// `xipgate.console.token` at most, in bytes: the console bounds `?token=` to this so
/// the links it repeats on every page stay small.
pub const MAX_CONSOLE_TOKEN_LEN: usize = 256;
pub const DEFAULT_DNS_TTL: u32 = 60;
pub const DEFAULT_EUREKA_PORT: &str = "8761";
/// The console token from the environment, so a Kubernetes Secret can carry it
/// (`secretKeyRef`) instead of a ConfigMap anyone with read access to it can see.
pub const CONSOLE_TOKEN_ENV: &str = "XIPGATE_CONSOLE_TOKEN";

/// The checked configuration the program runs with.
#[derive(Debug)]
pub struct Config {
    /// Where it came from, for messages.
    pub source: String,
    pub server: ServerConf,
    pub listen: Vec<SocketAddr>,
    /// Lower-case, no trailing dot.
    pub domains: Vec<String>,
    pub edge_ip: Option<IpAddr>,
    pub registry: RegistryConfig,
    pub upstream: UpstreamConfig,
    pub keepalive_timeout: Duration,
    pub max_client_connections: usize,
    /// `xipgate.downstream.header_timeout`: the most a request head or TLS handshake takes.
    pub header_timeout: Duration,
    /// `xipgate.downstream.client_ipv6_prefix`: IPv6 clients are counted per network.
    pub client_ipv6_prefix: u8,
    /// Plain requests skip Pingora's HTTP/1 proxy machinery (`xipgate.downstream.fast_path`).
    pub fast_path: bool,
    pub cors: CorsConfig,
    pub console: ConsoleConfig,
    /// The built-in DNS server's own config type, made and validated here once.
    pub dns: Option<crate::dns::DnsConfig>,
    pub access_log: AccessLogConfig,
    /// HTTPS listeners (`xipgate.tls`).
    pub tls: Option<TlsConfig>,
    /// Automatic certificates (`xipgate.acme`).
    pub acme: Option<AcmeConfig>,
    /// Who may reach which service, instance and path (`xipgate.access`).
    pub access: AccessConfig,
    /// How a service host chooses its instance (`xipgate.balance`).
    pub balance: crate::balance::Balance,
}

/// `xipgate.log`: whether each request is recorded, and where.
#[derive(Debug, Clone, Default)]
pub struct AccessLogConfig {
    pub enabled: bool,
    /// `xipgate.log.access_file`: JSON lines appended to this file instead of text lines
    /// in the process log (target `xipgate::access`).
    pub file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub urls: Vec<EurekaUrl>,
    pub interval: Duration,
    pub timeout: Duration,
    pub max_body: usize,
    pub delta: bool,
    pub startup_wait: Duration,
    /// How long instances missing from a suddenly shrunken registry are still routed.
    pub shrink_grace: Duration,
    /// How far back the server's deltas reach, for xipgate's purposes: a copy older
    /// than this is refreshed with a full fetch instead of a delta.
    pub delta_window: Duration,
    /// `xipgate.registry.eureka.enabled`: false for a Nacos-only edge.
    pub eureka: bool,
    /// Nacos sources, ranked after Eureka in the order listed.
    pub nacos: Vec<NacosConfig>,
    /// `xipgate.registry.kubernetes`, ranked after Eureka and the Nacos sources.
    pub kubernetes: Option<KubernetesConfig>,
}

impl RegistryConfig {
    /// Every source's name in rank order: the routing `Feed`'s ranks, so
    /// an instance two sources list is routed as the first lists it. A new kind of
    /// source adds its names here, in its place.
    pub fn source_names(&self) -> Vec<String> {
        self.eureka
            .then(|| "eureka".to_string())
            .into_iter()
            .chain(self.nacos.iter().map(|n| n.name.clone()))
            .chain(self.kubernetes.iter().map(|k| k.name.clone()))
            .collect()
    }
}

/// A Eureka base URL with its credentials taken out, so it can be shown and logged.
#[derive(Clone, PartialEq, Eq)]
pub struct EurekaUrl {
    /// No credentials, no trailing slash: `http://eureka:8761/eureka`.
    pub base: String,
    pub auth: Option<(String, String)>,
}

impl fmt::Debug for EurekaUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the password, not even in debug output.
        write!(
            f,
            "EurekaUrl({}{})",
            self.base,
            if self.auth.is_some() {
                ", with credentials"
            } else {
                ""
            }
        )
    }
}

impl fmt::Display for EurekaUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub allow: Vec<IpNet>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub max_tries: u32,
    pub tls: UpstreamTlsConfig,
}

#[derive(Debug, Clone)]
pub struct CorsConfig {
    pub enabled: bool,
    pub allow_credentials: bool,
    pub max_age: Duration,
    /// `xipgate.domains`: pages under them are the edge's own and may read its answers.
    pub own_domains: Vec<String>,
    /// `xipgate.cors.allow_origins` without `*`: further origins, exactly (case aside).
    pub allow_origins: Vec<String>,
    /// `*` is listed: any origin (only without credentials, see validation).
    pub any_origin: bool,
}

#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    pub listen: Option<SocketAddr>,
    pub host: Option<String>,
    pub public_port: Option<u16>,
    pub token: Option<String>,
    pub allow_clients: Vec<IpNet>,
}

/// One problem, with the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

/// Every problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// The file the errors are in (not an error source).
    pub file: String,
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    fn one(source: &str, key: &str, message: impl Into<String>) -> Self {
        ConfigErrors {
            file: source.to_string(),
            errors: vec![ConfigError {
                key: key.to_string(),
                message: message.into(),
            }],
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        writeln!(
            f,
            "{}: {n} problem{}:",
            self.file,
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            writeln!(f, "  {}: {}", e.key, e.message)?;
        }
        Ok(())
    }
}

/// The file's two halves, parsed but not yet checked.
#[derive(Debug)]
pub struct ParsedFile {
    pub server: ServerConf,
    pub xipgate: XipgateFile,
}

/// Loads, overlays the environment and validates. `path: None` uses the bundled defaults.
pub fn load(
    path: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let (source, text) = match path {
        Some(p) => {
            let source = p.display().to_string();
            let text = std::fs::read_to_string(p).map_err(|e| {
                ConfigErrors::one(&source, "(file)", format!("cannot read the file: {e}"))
            })?;
            (source, text)
        }
        None => (DEFAULT_CONFIG_NAME.to_string(), DEFAULT_CONFIG.to_string()),
    };
    let mut parsed = parse(&text, &source)?;
    apply_env(&mut parsed.xipgate, env);
    validate(parsed, &source)
}

/// Splits the YAML into Pingora's keys and ours and deserialises both. Unknown keys are
/// errors on both sides (Pingora itself would silently ignore a misspelt server key).
pub fn parse(text: &str, source: &str) -> Result<ParsedFile, ConfigErrors> {
    let doc: serde_yaml::Value = serde_yaml::from_str(text)
        .map_err(|e| ConfigErrors::one(source, "(yaml)", e.to_string()))?;
    let mut map = match doc {
        serde_yaml::Value::Mapping(m) => m,
        serde_yaml::Value::Null => serde_yaml::Mapping::new(),
        _ => {
            return Err(ConfigErrors::one(
                source,
                "(top level)",
                "expected a mapping of keys",
            ))
        }
    };
    let ours = map.remove("xipgate").unwrap_or(serde_yaml::Value::Null);

    const THRESHOLD_KEY: &str = "fast_timeout_to_tokio_threshold_seconds";
    if !map.contains_key(THRESHOLD_KEY) {
        map.insert(
            THRESHOLD_KEY.into(),
            FAST_TIMEOUT_TO_TOKIO_THRESHOLD_SECONDS.into(),
        );
    }
    let known = serde_yaml::to_value(ServerConf::default()).ok();
    let known = known.as_ref().and_then(|v| v.as_mapping());
    let mut errors = Vec::new();
    for key in map.keys() {
        let name = key.as_str().unwrap_or("?");
        if known.is_some_and(|k| !k.contains_key(key)) {
            errors.push(ConfigError {
                key: name.to_string(),
                message: "unknown key: neither a Pingora server key nor `xipgate`".into(),
            });
        }
    }
    let server: ServerConf = match serde_path_to_error::deserialize(serde_yaml::Value::Mapping(map))
    {
        Ok(s) => s,
        Err(e) => {
            errors.push(ConfigError {
                key: e.path().to_string(),
                message: e.into_inner().to_string(),
            });
            ServerConf::default()
        }
    };
    let xipgate: XipgateFile = if ours.is_null() {
        XipgateFile::default()
    } else {
        match serde_path_to_error::deserialize(ours) {
            Ok(x) => x,
            Err(e) => {
                let path = e.path().to_string();
                let key = if path == "." {
                    "xipgate".to_string()
                } else {
                    format!("xipgate.{path}")
                };
                errors.push(ConfigError {
                    key,
                    message: e.into_inner().to_string(),
                });
                XipgateFile::default()
            }
        }
    };
    if errors.is_empty() {
        Ok(ParsedFile { server, xipgate })
    } else {
        Err(ConfigErrors {
            file: source.to_string(),
            errors,
        })
    }
}

/// The older design's environment variables, which override the file.
pub fn apply_env(file: &mut XipgateFile, env: impl Fn(&str) -> Option<String>) {
    let set = |name: &str| {
        env(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if let Some(host) = set("REGISTRY_HOST") {
        let port = set("REGISTRY_PORT").unwrap_or_else(|| DEFAULT_EUREKA_PORT.to_string());
        file.registry.eureka.urls = Some(vec![format!("http://{host}:{port}/eureka")]);
    }
    if let Some(domains) = set("XIP_DOMAIN") {
        file.domains = Some(domains.split(',').map(|d| d.trim().to_string()).collect());
    }
    if let Some(ip) = set("XIP_IP") {
        file.edge_ip = Some(ip);
    }
    if let Some(host) = set("WEB_DOMAIN") {
        file.console.host = Some(host);
    }
    if let Some(token) = set(CONSOLE_TOKEN_ENV) {
        file.console.token = Some(token);
    }
}
