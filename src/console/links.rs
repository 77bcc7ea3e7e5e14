//! Absolute links through the edge: `http://<label>.<domain>[:port]/`.

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
    /// Where the page is for this request; set by [`Links::for_request`].
    port: Option<u16>,
}

impl Links {
    pub fn new(domain: String, public_port: Option<u16>, listener_port: u16) -> Self {
        Links {
            domain,
            public_port,
            listener_port,
            port: None,
        }
    }

    /// The links for one request: its own port when it came in on the proxy listener.
    pub fn for_request(&self, proxy_port: Option<u16>) -> Links {
        let port = self
            .public_port
            .or(proxy_port)
            .unwrap_or(self.listener_port);
        Links {
            port: Some(port),
            ..self.clone()
        }
    }

    fn port_suffix(&self) -> String {
        match self.port.unwrap_or(self.listener_port) {
            80 => String::new(),
            p => format!(":{p}"),
        }
    }

    pub fn host(&self, label: &str) -> String {
        format!("{label}.{}", self.domain)
    }

    pub fn url(&self, label: &str) -> String {
        format!("http://{}{}/", self.host(label), self.port_suffix())
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
            "http://{}{}{}",
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
            links.for_request(None).url("svc"),
            "http://svc.127-0-0-1.sslip.io:8080/"
        );
        assert_eq!(
            links.for_request(Some(80)).url("svc"),
            "http://svc.127-0-0-1.sslip.io/"
        );
        let public = Links::new("d.io".into(), Some(443), 8080);
        assert_eq!(
            public.for_request(Some(8080)).url("a"),
            "http://a.d.io:443/"
        );
        assert_eq!(
            links
                .for_request(Some(80))
                .rewrite("http://10.0.0.5:8081/actuator/health?x=1", "pod-8081")
                .as_deref(),
            Some("http://pod-8081.127-0-0-1.sslip.io/actuator/health?x=1")
        );
        assert_eq!(
            links.rewrite("config-service001.test.com 8080/health", "x"),
            None
        );
    }
}
