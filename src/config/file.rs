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
    /// HTTPS listeners and their certificates.
    pub tls: Option<TlsFile>,
    /// Certificates issued automatically over ACME DNS-01, answered by the built-in DNS.
    pub acme: Option<AcmeFile>,
    /// Who may reach which service, instance and path.
    pub access: Option<super::access::AccessFile>,
    /// How a service host chooses its instance (docs/steering.md).
    pub balance: Option<super::balance::BalanceFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// HTTPS listeners, `host:port`.
    pub listen: Option<Vec<String>>,
    /// PEM files, chosen per connection by SNI.
    pub certificates: Option<Vec<CertFile>>,
    /// Answer plain-HTTP requests on `listen` with a redirect to HTTPS.
    pub redirect_http: Option<bool>,
    /// The HTTPS port clients use, for redirects (default: the first `listen` port).
    pub public_port: Option<u16>,
    /// Offer HTTP/2 by ALPN (default on).
    pub h2: Option<bool>,
    /// How often the certificate files are checked for changes.
    pub reload_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertFile {
    /// The certificate chain, leaf first (cert-manager's `tls.crt`).
    pub cert: Option<String>,
    /// Its private key (`tls.key`).
    pub key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsFile {
    /// Verify instances' certificates (default on).
    pub verify: Option<bool>,
    /// CA bundle to verify them with (default: the system's CAs).
    pub ca_file: Option<String>,
    /// Server name sent and verified (default: the instance's hostName).
    pub server_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeFile {
    /// The ACME directory URL.
    pub directory: Option<String>,
    /// Contact URLs for the account, e.g. `mailto:ops@example.com`.
    pub contact: Option<Vec<String>>,
    /// Each gets one certificate for `*.<domain>` and `<domain>` (default: `xipgate.domains`).
    pub domains: Option<Vec<String>>,
    /// Where replicas share the account, the certificates and the pending challenges: a
    /// directory (`store: /path`), or `{kubernetes: {...}}` (Secrets, a ConfigMap, a Lease).
    pub store: Option<AcmeStoreFile>,
    /// Trust only this CA for the directory's own HTTPS (a test CA such as pebble's).
    pub directory_ca: Option<String>,
    /// How often certificates are checked for renewal.
    pub check_interval: Option<String>,
    /// Agree to the CA's terms of service (required by public CAs).
    pub terms_agreed: Option<bool>,
    /// Bound on each HTTP request to the CA (connecting, waiting, reading the body).
    pub request_timeout: Option<String>,
    /// Bound on a whole order, from the account to the stored certificate.
    pub order_timeout: Option<String>,
    /// DNS servers (`ip:port`) that must answer a challenge before the CA is told it is
    /// ready (default: xipgate.dns.listen; `[]` turns the check off).
    pub self_check: Option<Vec<String>>,
    /// How long the self-check waits for them.
    pub self_check_timeout: Option<String>,
}

/// `xipgate.acme.store`: a path (the directory form), or a mapping naming one store.
#[derive(Debug)]
pub enum AcmeStoreFile {
    Path(String),
    Spec(AcmeStoreSpecFile),
}

impl<'de> Deserialize<'de> for AcmeStoreFile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = AcmeStoreFile;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a directory path, or a mapping with `directory` or `kubernetes`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(AcmeStoreFile::Path(v.to_string()))
            }
            // Through the map access given, so error paths name the inner key.
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                AcmeStoreSpecFile::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(AcmeStoreFile::Spec)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeStoreSpecFile {
    /// The same as `store: /path`.
    pub directory: Option<String>,
    pub kubernetes: Option<KubeStoreFile>,
}

/// `xipgate.acme.store.kubernetes`: the store in the API server.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeStoreFile {
    /// Where the Secrets, the ConfigMap and the Lease are (default: the pod's namespace).
    pub namespace: Option<String>,
    /// The API server (default: in-cluster, from KUBERNETES_SERVICE_HOST/PORT).
    pub api_url: Option<String>,
    /// A bearer token file, read again every minute (default: the pod's service account).
    pub token_file: Option<String>,
    /// The CA the API server's certificate is checked against (default: the pod's).
    pub ca_file: Option<String>,
    /// The objects' names start with it.
    pub secret_prefix: Option<String>,
    /// How long the order Lease holds without renewal (whole seconds).
    pub lease_duration: Option<String>,
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
    /// Nacos servers, each its own source (several allowed).
    pub nacos: Option<Vec<NacosFile>>,
    /// A Kubernetes API server: pods from EndpointSlices, services from Services.
    pub kubernetes: Option<super::kubernetes::KubernetesFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NacosFile {
    /// Shown on the console and in the API; ranks follow the list order (default `nacos`,
    /// `nacos-2`, ...).
    pub name: Option<String>,
    /// Server base URLs, e.g. `http://nacos:8848/nacos`; several = failover.
    pub urls: Option<Vec<String>>,
    /// Namespace ids (default: the public namespace).
    pub namespaces: Option<Vec<String>>,
    /// Groups (default `DEFAULT_GROUP`).
    pub groups: Option<Vec<String>>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// `v1` (Nacos 1.x and 2.x open API) or `v2` (Nacos 2.x `{code, message, data}` API).
    pub api: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    /// Metadata keys holding the pod name, tried in order, for instance labels.
    pub pod_name_keys: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EurekaFile {
    /// `false` turns Eureka off (a Nacos-only edge).
    pub enabled: Option<bool>,
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
    /// TLS to instances that enable only their securePort.
    #[serde(default)]
    pub tls: UpstreamTlsFile,
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
    /// Longest time a request head (and a TLS handshake) may take from its first byte.
    pub header_timeout: Option<String>,
    /// IPv6 clients are counted per network of this prefix length for
    /// `max_client_connections` (one host usually holds a whole /64).
    pub client_ipv6_prefix: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsFile {
    pub enabled: Option<bool>,
    pub allow_credentials: Option<bool>,
    pub max_age: Option<String>,
    /// Origins besides the edge's own domains whose pages may read answers (`*`: any).
    pub allow_origins: Option<Vec<String>>,
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
