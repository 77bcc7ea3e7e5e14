//! Where the API server is and how xipgate proves who it is.
//!
//! In a pod, the defaults are what every client library uses: the `KUBERNETES_SERVICE_HOST`
//! and `KUBERNETES_SERVICE_PORT` variables the kubelet sets, and the service account's
//! projected token and CA under [`IN_CLUSTER_DIR`]. Outside a cluster, the config names the
//! URL, a token file and a CA file.

use std::path::{Path, PathBuf};

/// Where the kubelet mounts the pod's service-account token, CA and namespace.
pub const IN_CLUSTER_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// `https://host:port`, without a trailing slash.
    pub url: String,
    /// Read again every minute: the kubelet rotates projected tokens while the pod runs.
    pub token_file: Option<PathBuf>,
    /// PEM bundle the API server's certificate is checked against; the system roots when
    /// absent.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error(
        "no API server URL: set it (api_url) or run in a pod, where KUBERNETES_SERVICE_HOST is set"
    )]
    NotInCluster,
    #[error("the CA file {path} cannot be used: {reason}")]
    Ca { path: String, reason: String },
    #[error("the HTTP client cannot be built: {0}")]
    Client(String),
}

impl Connection {
    /// The explicit parts where given, the in-cluster ones for the rest.
    pub fn resolve(
        url: Option<String>,
        token_file: Option<PathBuf>,
        ca_file: Option<PathBuf>,
    ) -> Result<Connection, ConnectionError> {
        let dir = Path::new(IN_CLUSTER_DIR);
        let url = match url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => in_cluster_url(
                std::env::var("KUBERNETES_SERVICE_HOST").ok(),
                std::env::var("KUBERNETES_SERVICE_PORT").ok(),
            )
            .ok_or(ConnectionError::NotInCluster)?,
        };
        let mounted = |name: &str| {
            let p = dir.join(name);
            p.exists().then_some(p)
        };
        Ok(Connection {
            url,
            token_file: token_file.or_else(|| mounted("token")),
            ca_file: ca_file.or_else(|| mounted("ca.crt")),
        })
    }
}

/// `https://[host]:port` from the kubelet's variables (an IPv6 host is bracketed).
fn in_cluster_url(host: Option<String>, port: Option<String>) -> Option<String> {
    let host = host.filter(|h| !h.is_empty())?;
    let port = port
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "443".into());
    if host.contains(':') {
        Some(format!("https://[{host}]:{port}"))
    } else {
        Some(format!("https://{host}:{port}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_in_cluster_url_comes_from_the_kubelet_variables() {
        let cases = [
            (
                Some("10.96.0.1"),
                Some("443"),
                Some("https://10.96.0.1:443"),
            ),
            (
                Some("fd00::1"),
                Some("6443"),
                Some("https://[fd00::1]:6443"),
            ),
            (Some("10.96.0.1"), None, Some("https://10.96.0.1:443")),
            (None, Some("443"), None),
            (Some(""), Some("443"), None),
        ];
        for (host, port, want) in cases {
            assert_eq!(
                in_cluster_url(host.map(String::from), port.map(String::from)).as_deref(),
                want,
                "{host:?} {port:?}"
            );
        }
    }

    #[test]
    fn an_explicit_url_needs_no_cluster() {
        let c = Connection::resolve(Some("https://127.0.0.1:6443/".into()), None, None).unwrap();
        assert_eq!(c.url, "https://127.0.0.1:6443");
    }
}
