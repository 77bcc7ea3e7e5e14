//! The `xipgate:` section of the YAML file exactly as a user writes it.
//!
//! Kept apart from the typed [`super::Config`] (as River does): this side mirrors the file,
//! with strings for addresses, durations and CIDRs and every key optional, and rejects
//! unknown keys; the other side holds checked values the rest of the program can trust.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XipgateFile {
    /// Proxy listeners, `host:port`.
    pub listen: Option<Vec<String>>,
    /// A request host is `<label>.<domain>`.
    pub domains: Option<Vec<String>>,
    /// The edge's own address (env XIP_IP): links and DNS answers.
    pub edge_ip: Option<String>,
    #[serde(default)]
    pub registry: RegistryFile,
    #[serde(default)]
    pub upstream: UpstreamFile,
    #[serde(default)]
    pub downstream: DownstreamFile,
    #[serde(default)]
    pub cors: CorsFile,
    #[serde(default)]
    pub console: ConsoleFile,
    pub dns: Option<DnsFile>,
    #[serde(default)]
    pub log: LogFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    #[serde(default)]
    pub eureka: EurekaFile,
    /// How long a new process waits for its first registry before it takes traffic anyway.
    pub startup_wait: Option<String>,
    /// How long instances missing from a registry that suddenly lists fewer than half
    /// of them are still routed. `empty_grace`, its name before it covered a partial
    /// registry too, is still accepted.
    #[serde(alias = "empty_grace")]
    pub shrink_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EurekaFile {
    pub urls: Option<Vec<String>>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    /// Largest registry body accepted, e.g. `64MiB` or a number of bytes.
    pub max_body: Option<ByteSize>,
    /// Fetch `/apps/delta` between full fetches.
    pub delta: Option<bool>,
    /// A copy older than this is refreshed with a full fetch (below the server's 180 s).
    pub delta_window: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    pub allow: Option<Vec<String>>,
    pub connect_timeout: Option<String>,
    pub read_timeout: Option<String>,
    pub write_timeout: Option<String>,
    /// Tries per request on a service host (first try included).
    pub max_tries: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownstreamFile {
    /// Idle time after which a client keep-alive connection is closed.
    pub keepalive_timeout: Option<String>,
    /// Connections one client address may hold open at once.
    pub max_client_connections: Option<usize>,
    /// Plain HTTP/1.1 requests without a body bypass Pingora's HTTP/1 proxy (default on).
    pub fast_path: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsFile {
    pub enabled: Option<bool>,
    pub allow_credentials: Option<bool>,
    pub max_age: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleFile {
    /// The console's own listener (`off` to disable).
    pub listen: Option<String>,
    /// Host name that reaches the console on the proxy listener (env WEB_DOMAIN).
    pub host: Option<String>,
    /// The edge's public port used in links (behind a LoadBalancer it differs).
    pub public_port: Option<u16>,
    /// When set, the console and API require `Authorization: Bearer <token>` or `?token=`.
    pub token: Option<String>,
    /// When set, only these client CIDRs may use the console and API.
    pub allow_clients: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsFile {
    pub listen: Option<Vec<String>>,
    pub zones: Option<Vec<String>>,
    pub edge_ips: Option<Vec<String>>,
    pub ttl: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    /// One access-log line per request (target `xipgate::access`, level info).
    pub access: Option<bool>,
    /// JSON lines, one per request, appended to this file instead of the process log.
    pub access_file: Option<String>,
}

/// A byte count: a number, or a string with a unit (`512KiB`, `64MiB`, `1GB`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteSize(pub String);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::N(n) => ByteSize(n.to_string()),
            Raw::S(s) => ByteSize(s),
        })
    }
}
