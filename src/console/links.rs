//! Absolute links through the edge: `http://<label>.<domain>[:port]/`, or `https://` when
//! the page itself came over HTTPS.

/// What links are built from, fixed at start.
#[derive(Debug, Clone)]
pub struct Links {
    /// The first configured domain: links use it.
    pub domain: String,
    /// `xipgate.console.public_port`: wins when set (behind a LoadBalancer the outside
    /// port differs from the pod's).
    pub public_port: Option<u16>,
    /// The first proxy listener's port, used when the page is not served on the proxy.
    pub listener_port: u16,
    /// `xipgate.tls.public_port` (else the HTTPS listener's port): links on a page served
    /// over HTTPS use it.
    pub https_public_port: Option<u16>,
    /// Where the page is for this request; set by [`Links::for_request`].
    port: Option<u16>,
    /// The page came over HTTPS: links do too.
    tls: bool,
}

impl Links {
    pub fn new(domain: String, public_port: Option<u16>, listener_port: u16) -> Self {
        Links {
            domain,
            public_port,
            listener_port,
            https_public_port: None,
            port: None,
            tls: false,
        }
    }

    /// The links for one request: its own port when it came in on the proxy listener, and
    /// its scheme (a page served over HTTPS links over HTTPS).
    pub fn for_request(&self, proxy_port: Option<u16>, tls: bool) -> Links {
        let port = if tls {
            self.https_public_port.or(proxy_port).unwrap_or(443)
        } else {
            self.public_port
                .or(proxy_port)
                .unwrap_or(self.listener_port)
        };
        Links {
            port: Some(port),
            tls,
            ..self.clone()
        }
    }

    fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    fn port_suffix(&self) -> String {
        match (self.port.unwrap_or(self.listener_port), self.tls) {
            (80, false) | (443, true) => String::new(),
            (p, _) => format!(":{p}"),
        }
    }

    pub fn host(&self, label: &str) -> String {
        format!("{label}.{}", self.domain)
    }

    pub fn url(&self, label: &str) -> String {
        format!(
            "{}://{}{}/",
            self.scheme(),
            self.host(label),
            self.port_suffix()
        )
    }

    /// An instance's own URL (statusPageUrl, healthCheckUrl) rewritten to go through the
    /// edge: path and query kept, scheme/host/port replaced by the instance's edge host.
    pub fn rewrite(&self, url: &str, label: &str) -> Option<String> {
        let parsed = url::Url::parse(url.trim()).ok()?;
        let mut path = parsed.path().to_string();
        if let Some(q) = parsed.query() {
            path.push('?');
            path.push_str(q);
        }
        Some(format!(
            "{}://{}{}{}",
            self.scheme(),
            self.host(label),
            self.port_suffix(),
            path
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_rewrites() {
        let links = Links::new("127-0-0-1.sslip.io".into(), None, 8080);
        assert_eq!(
            links.for_request(None, false).url("svc"),
            "http://svc.127-0-0-1.sslip.io:8080/"
        );
        assert_eq!(
            links.for_request(Some(80), false).url("svc"),
            "http://svc.127-0-0-1.sslip.io/"
        );
        let public = Links::new("d.io".into(), Some(443), 8080);
        assert_eq!(
            public.for_request(Some(8080), false).url("a"),
            "http://a.d.io:443/"
        );
        assert_eq!(
            links
                .for_request(Some(80), false)
                .rewrite("http://10.0.0.5:8081/actuator/health?x=1", "pod-8081")
                .as_deref(),
            Some("http://pod-8081.127-0-0-1.sslip.io/actuator/health?x=1")
        );
        assert_eq!(
            links.rewrite("config-service001.test.com 8080/health", "x"),
            None
        );
        // A page served over HTTPS links over HTTPS, 443 left out.
        assert_eq!(
            links.for_request(Some(443), true).url("svc"),
            "https://svc.127-0-0-1.sslip.io/"
        );
        assert_eq!(
            links.for_request(Some(8443), true).url("svc"),
            "https://svc.127-0-0-1.sslip.io:8443/"
        );
    }
}
