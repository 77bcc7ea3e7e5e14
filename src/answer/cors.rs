//! Which web pages may read answers through the edge (CORS), decided once for the preflight,
//! the edge's own answers and proxied responses, whichever engine serves the request.
//!
//! Browsers send cookies (and, on an intranet, the network position itself is a credential)
//! with cross-origin requests; an `Access-Control-Allow-Origin` naming a page's origin lets
//! that page read the answer. The older design, and xipgate until now, echoed every `Origin`
//! with `Access-Control-Allow-Credentials: true`: any page a developer opened anywhere could
//! read pod answers through the developer's browser. Now only origins under the edge's own
//! domains and the ones listed in `xipgate.cors.allow_origins` are allowed; any other origin
//! gets no `Access-Control-Allow-*` header at all (a backend's own are removed too), and its
//! preflight a 403 naming the setting.

use http::header::HeaderValue;

use crate::config::CorsConfig;
use crate::names::origin_host;

/// The CORS headers of an answer to a request with `origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cors {
    /// The request named no origin: not a cross-origin request.
    NoOrigin,
    /// These headers go on the answer, replacing a backend's.
    Allowed(Vec<(&'static str, HeaderValue)>),
    /// No `Access-Control-Allow-*` header goes on the answer (a backend's are removed);
    /// `Vary: Origin` still does, so a cache does not serve this answer to an allowed origin.
    Refused,
}

/// Decides what a request from `origin` gets (one function for every place that answers).
pub(crate) fn decide(cors: &CorsConfig, origin: Option<&HeaderValue>) -> Cors {
    let Some(origin) = origin else {
        return Cors::NoOrigin;
    };
    if cors.any_origin && !cors.allow_credentials {
        return Cors::Allowed(vec![(
            "access-control-allow-origin",
            HeaderValue::from_static("*"),
        )]);
    }
    if !origin_allowed(cors, origin.as_bytes()) {
        return Cors::Refused;
    }
    let mut headers = vec![("access-control-allow-origin", origin.clone())];
    if cors.allow_credentials {
        headers.push((
            "access-control-allow-credentials",
            HeaderValue::from_static("true"),
        ));
    }
    headers.push(("vary", HeaderValue::from_static("Origin")));
    Cors::Allowed(headers)
}

/// An origin (`scheme://host[:port]`, RFC 6454) the edge lets read its answers: `http` or
/// `https` with a host under one of the edge's domains, or one listed in `allow_origins`
/// (compared without case), or any origin when the list has `*`. `null` (sandboxed frames,
/// local files, some redirects) is never allowed unless `*` is listed.
pub(crate) fn origin_allowed(cors: &CorsConfig, origin: &[u8]) -> bool {
    if cors.any_origin {
        return true;
    }
    let Ok(origin) = std::str::from_utf8(origin) else {
        return false;
    };
    let origin = origin.trim();
    if cors
        .allow_origins
        .iter()
        .any(|o| o.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let Some(host) = origin_host(origin) else {
        return false;
    };
    cors.own_domains.iter().any(|d| {
        let under = host.len() > d.len() + 1
            && host[host.len() - d.len()..].eq_ignore_ascii_case(d)
            && host.as_bytes()[host.len() - d.len() - 1] == b'.';
        under || host.eq_ignore_ascii_case(d)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(own: &[&str], list: &[&str], credentials: bool) -> CorsConfig {
        CorsConfig {
            enabled: true,
            allow_credentials: credentials,
            max_age: std::time::Duration::from_secs(600),
            own_domains: own.iter().map(|s| s.to_string()).collect(),
            allow_origins: list
                .iter()
                .filter(|s| **s != "*")
                .map(|s| s.to_string())
                .collect(),
            any_origin: list.contains(&"*"),
        }
    }

    #[test]
    fn origins_table() {
        let edge = cfg(&["xip.test"], &["https://ui.example.com:8443"], true);
        let open = cfg(&["xip.test"], &["*"], false);
        for (c, origin, allowed) in [
            (&edge, "http://web.xip.test", true),
            (&edge, "https://web.xip.test:8443", true),
            (&edge, "HTTPS://WEB.XIP.TEST", true),
            (&edge, "http://a.b.xip.test", true),
            (&edge, "http://xip.test", true),
            (&edge, "https://ui.example.com:8443", true),
            (&edge, "https://UI.example.com:8443", true),
            // Everything below is another site.
            (&edge, "https://ui.example.com", false),
            (&edge, "http://evil.example", false),
            (&edge, "http://evilxip.test", false),
            (&edge, "http://xip.test.evil.example", false),
            (&edge, "http://evil-xip.test", false),
            (&edge, "http://web.xip.test@evil.example", false),
            (&edge, "http://web.xip.test/path", false),
            (&edge, "http://web.xip.test:99999", false),
            (&edge, "http://web.xip.test:", false),
            (&edge, "ftp://web.xip.test", false),
            (&edge, "null", false),
            (&edge, "", false),
            (&edge, "web.xip.test", false),
            (&open, "http://evil.example", true),
            (&open, "null", true),
        ] {
            assert_eq!(origin_allowed(c, origin.as_bytes()), allowed, "{origin}");
        }
    }

    #[test]
    fn what_each_origin_gets() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        let edge = cfg(&["xip.test"], &[], true);
        assert_eq!(decide(&edge, None), Cors::NoOrigin);
        assert_eq!(
            decide(&edge, Some(&h("http://evil.example"))),
            Cors::Refused
        );
        assert_eq!(
            decide(&edge, Some(&h("http://ui.xip.test"))),
            Cors::Allowed(vec![
                ("access-control-allow-origin", h("http://ui.xip.test")),
                ("access-control-allow-credentials", h("true")),
                ("vary", h("Origin")),
            ])
        );
        let no_credentials = cfg(&["xip.test"], &[], false);
        assert_eq!(
            decide(&no_credentials, Some(&h("http://ui.xip.test"))),
            Cors::Allowed(vec![
                ("access-control-allow-origin", h("http://ui.xip.test")),
                ("vary", h("Origin")),
            ])
        );
        let open = cfg(&[], &["*"], false);
        assert_eq!(
            decide(&open, Some(&h("http://evil.example"))),
            Cors::Allowed(vec![("access-control-allow-origin", h("*"))])
        );
    }
}
