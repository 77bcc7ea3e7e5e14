//! The built-in actuator policy: what each Spring Boot actuator endpoint needs when no
//! rule names its path. Health is public (probes, load balancers); info and prometheus are
//! for anyone signed in; the endpoints that read secrets or change the running program are
//! refused unless a rule names them (heap dumps held cloud keys; `/env` + `/refresh` is a
//! remote-code-execution chain on Eureka clients; CVE-2022-22947 was a gateway's actuator);
//! everything else is for the operators' group.

/// What the built-in policy asks of a request to one actuator endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Public,
    SignedIn,
    Operators,
    Refused,
}

/// Endpoints refused whatever the method, unless a rule names them.
const REFUSED: [&str; 6] = [
    "shutdown",
    "heapdump",
    "threaddump",
    "jolokia",
    "refresh",
    "restart",
];
/// Endpoints whose writes (anything but GET/HEAD) are refused.
const READ_ONLY: [&str; 4] = ["env", "gateway", "loggers", "configprops"];

/// Spring Boot's (and Spring Cloud's) actuator endpoints, and the base itself (empty).
const KNOWN: [&str; 32] = [
    "",
    "auditevents",
    "beans",
    "caches",
    "conditions",
    "configprops",
    "env",
    "flyway",
    "gateway",
    "health",
    "heapdump",
    "httpexchanges",
    "info",
    "integrationgraph",
    "jolokia",
    "liquibase",
    "logfile",
    "loggers",
    "mappings",
    "metrics",
    "prometheus",
    "quartz",
    "refresh",
    "restart",
    "sbom",
    "scheduledtasks",
    "serviceregistry",
    "sessions",
    "shutdown",
    "startup",
    "threaddump",
    "features",
];

/// An endpoint name Spring defines (metric labels stay bounded; a client names the rest).
pub fn known(endpoint: &str) -> bool {
    KNOWN.contains(&endpoint)
}

/// `endpoint`: the path under the instance's actuator base (`env`, `health/liveness`, or
/// empty for the base itself).
pub fn need(endpoint: &str, method: &str) -> Need {
    let first = endpoint.split('/').next().unwrap_or("");
    let read = method == "GET" || method == "HEAD";
    match first {
        "health" => Need::Public,
        "info" | "prometheus" | "" => Need::SignedIn,
        e if REFUSED.contains(&e) => Need::Refused,
        e if READ_ONLY.contains(&e) && !read => Need::Refused,
        _ => Need::Operators,
    }
}

/// The endpoint part of `path` when it lies under one of `bases` (each like `/actuator`,
/// no trailing slash; `""` for an actuator at the root), or `None`. Under a root base only
/// Spring's own endpoint ids are actuator paths: the application's pages share that space.
pub fn endpoint<'p, B: AsRef<str>>(path: &'p str, bases: &[B]) -> Option<&'p str> {
    bases.iter().find_map(|base| {
        let base = base.as_ref();
        let rest = path.strip_prefix(base)?;
        if base.is_empty() {
            let e = rest.strip_prefix('/')?;
            let id = e.split('/').next().unwrap_or("");
            return ENDPOINT_IDS.contains(&id).then_some(e);
        }
        if rest.is_empty() {
            Some("")
        } else {
            rest.strip_prefix('/')
        }
    })
}

/// Endpoint ids of Spring Boot (1.x to 4), Spring Cloud and common libraries: under an
/// actuator served at the root (`base-path=/`) only these are actuator paths.
const ENDPOINT_IDS: [&str; 44] = [
    "actuator",
    "auditevents",
    "autoconfig",
    "beans",
    "bus-env",
    "bus-refresh",
    "busenv",
    "busrefresh",
    "caches",
    "conditions",
    "configprops",
    "dump",
    "env",
    "features",
    "flyway",
    "gateway",
    "health",
    "heapdump",
    "httpexchanges",
    "httptrace",
    "info",
    "integrationgraph",
    "jolokia",
    "liquibase",
    "logfile",
    "loggers",
    "mappings",
    "metrics",
    "nacos-config",
    "nacos-discovery",
    "nacosconfig",
    "nacosdiscovery",
    "pause",
    "prometheus",
    "quartz",
    "refresh",
    "restart",
    "resume",
    "sbom",
    "scheduledtasks",
    "serviceregistry",
    "sessions",
    "shutdown",
    "threaddump",
];

/// Where Spring Boot 2 and later serve the actuator unless told otherwise.
pub const DEFAULT_BASE: &str = "/actuator";
/// Metadata Spring Cloud Alibaba's Nacos registration (`NacosRegistration.init`) writes:
/// `management.endpoints.web.base-path` when set, and with a separate management port
/// `management.port` and the management server's `management.server.servlet.context-path`
/// as `management.context-path`.
const META_BASE_PATH: &str = "management.endpoints.web.base-path";
const META_CONTEXT_PATH: &str = "management.context-path";
/// A published base longer than this is not believed (the default is kept).
const MAX_BASE_LEN: usize = 256;

/// The actuator base paths of one instance (usually one; `""` is the root), from what its
/// registration publishes:
/// - Eureka's `healthCheckUrl` and `statusPageUrl`, which Spring Cloud sets to
///   `<base>/health` and `<base>/info` (with the management port when that differs: the
///   base is kept anyway, so the path stays protected if it is reachable on this port);
/// - the Nacos metadata Spring Cloud Alibaba writes ([`META_BASE_PATH`], under
///   [`META_CONTEXT_PATH`] when given);
/// - else [`DEFAULT_BASE`].
///
/// Every source that names a base adds it: two sources disagreeing protect both paths.
pub fn bases(
    health_check_url: Option<&str>,
    status_page_url: Option<&str>,
    metadata: &crate::instance::Metadata,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |b: Option<String>| {
        if let Some(b) = b {
            if !out.contains(&b) {
                out.push(b);
            }
        }
    };
    add(health_check_url.and_then(|u| base_before(u, "health")));
    add(status_page_url.and_then(|u| base_before(u, "info")));
    add(from_metadata(metadata));
    if out.is_empty() {
        out.push(DEFAULT_BASE.to_string());
    }
    out
}

/// `http://h:8081/manage/health` → `/manage`: the URL's path up to its last `endpoint`
/// segment (`/actuator/health/liveness` → `/actuator`). `None` when the path has no such
/// segment (a custom health page is no evidence of where the actuator is).
fn base_before(url: &str, endpoint: &str) -> Option<String> {
    let url = url.trim();
    let path = if url.starts_with('/') {
        url.to_string()
    } else if let Some(path) = plain_http_path(url) {
        path.to_string()
    } else {
        url::Url::parse(url).ok()?.path().to_string()
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    let segments: Vec<&str> = path.split('/').collect();
    let at = segments.iter().rposition(|s| *s == endpoint)?;
    clean(&segments[..at].join("/"))
}

/// The path of a plain `http://host[:port]/path` or `https://…` URL, as `url::Url::path`
/// gives it, without parsing: when the host is a name of ASCII letters, digits and `-`
/// whose last label starts with a letter (or a dotted-decimal IPv4 address), the port
/// digits, and the path only unreserved characters and `/` with no `.` or `..` segment,
/// the parser would change nothing and the path is the text after the authority. `None`
/// for anything else (the parser then decides). Every registration has two such URLs,
/// and parsing them was a fifth of building the routing table (bench/memory.sh, issue 27).
fn plain_http_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let slash = rest.find('/')?;
    let (authority, tail) = rest.split_at(slash);
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    // No port, an empty one (the scheme's), or one the parser takes (digits only: `u16`'s
    // own parse would take a `+`).
    if let Some(p) = port.filter(|p| !p.is_empty()) {
        if p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err() {
            return None;
        }
    }
    // A dotted-decimal address as std reads one (four parts of at most 255, no leading
    // zeros, which the URL parser would read as octal).
    if !(plain_host_name(host) || host.parse::<std::net::Ipv4Addr>().is_ok()) {
        return None;
    }
    let path = tail.split(['?', '#']).next()?;
    let plain = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~'))
        && path.split('/').all(|seg| seg != "." && seg != "..");
    plain.then_some(path)
}

/// Labels of ASCII letters, digits and `-`, none empty or punycode (`xn--`), the last
/// starting with a letter (so the parser does not read the host as an IPv4 number).
fn plain_host_name(host: &str) -> bool {
    let mut labels = host.split('.').peekable();
    while let Some(label) = labels.next() {
        let ok = !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
            && !label
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case("xn--"));
        if !ok || labels.peek().is_none() && !label.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return false;
        }
    }
    true
}

fn from_metadata(metadata: &crate::instance::Metadata) -> Option<String> {
    let base = metadata.get(META_BASE_PATH).map(|s| s.trim());
    let context = metadata
        .get(META_CONTEXT_PATH)
        .map(|s| s.trim())
        .filter(|s| !s.is_empty());
    if base.is_none() && context.is_none() {
        return None;
    }
    let base = base.filter(|b| !b.is_empty()).unwrap_or(DEFAULT_BASE);
    let joined = match context {
        Some(c) => format!(
            "{}/{}",
            c.trim_end_matches('/'),
            base.trim_start_matches('/')
        ),
        None => base.to_string(),
    };
    let joined = if joined.starts_with('/') {
        joined
    } else {
        format!("/{joined}")
    };
    clean(&joined)
}

/// A base as [`endpoint`] compares it: decoded, no trailing `/` (`""` for the root);
/// `None` when a backend could read it differently or it is too long.
fn clean(raw: &str) -> Option<String> {
    if raw.len() > MAX_BASE_LEN {
        return None;
    }
    let trimmed = raw.trim_end_matches('/');
    if trimmed.is_empty() {
        return Some(String::new());
    }
    if super::path::ambiguous(trimmed).is_some() {
        return None;
    }
    Some(super::path::decoded(trimmed).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Whenever the shortcut gives a path, the URL parser accepts the URL and gives
        /// the same path (otherwise the parser decides, as before).
        #[test]
        fn the_plain_url_shortcut_agrees_with_the_parser(
            scheme in "(http|https|HTTP|ftp)://",
            host in "([a-z0-9-]{0,6}\\.){0,3}[a-zA-Z0-9-]{0,6}|[0-9]{1,4}(\\.[0-9]{1,4}){0,4}|xn--[a-z]{1,4}|[a-z]{1,4}@[a-z]{1,4}|\\[::1\\]",
            port in "(:[0-9]{0,7})?",
            path in "(/[a-zA-Z0-9._~%\\\\-]{0,8}){0,4}",
            rest in "(\\?[a-z=./]{0,6})?(#[a-z/]{0,4})?",
        ) {
            let url = format!("{scheme}{host}{port}{path}{rest}");
            if let Some(fast) = plain_http_path(&url) {
                let parsed = url::Url::parse(&url);
                proptest::prop_assert!(parsed.is_ok(), "{url}: {parsed:?}");
                let parsed = parsed.expect("parsed");
                proptest::prop_assert_eq!(parsed.path(), fast, "{}", url);
            }
        }
    }

    #[test]
    fn plain_urls_take_the_shortcut_and_others_do_not() {
        for (url, want) in [
            (
                "http://10.0.0.5:8080/actuator/health",
                Some("/actuator/health"),
            ),
            (
                "https://order-7d9f8-x2k4q:8443/manage/health?x=1",
                Some("/manage/health"),
            ),
            ("http://h:/actuator/info#top", Some("/actuator/info")),
            ("http://h/a/../actuator/health", None),
            ("http://h/%61ctuator/health", None),
            ("http://h\\x/actuator/health", None),
            ("http://u@h/actuator/health", None),
            ("http://1.2.3.4.5/actuator/health", None),
            ("http://010.0.0.1/actuator/health", None),
            ("http://h:99999/actuator/health", None),
            ("http://xn--zz/actuator/health", None),
            ("http://h", None),
            ("HTTP://h/actuator/health", None),
        ] {
            assert_eq!(plain_http_path(url), want, "{url}");
        }
    }

    #[test]
    fn each_endpoint_has_its_need() {
        let cases = [
            ("health", "GET", Need::Public),
            ("health/liveness", "GET", Need::Public),
            ("info", "GET", Need::SignedIn),
            ("prometheus", "GET", Need::SignedIn),
            ("", "GET", Need::SignedIn),
            ("env", "GET", Need::Operators),
            ("env", "POST", Need::Refused),
            ("gateway/routes", "GET", Need::Operators),
            ("gateway/refresh", "POST", Need::Refused),
            ("heapdump", "GET", Need::Refused),
            ("shutdown", "POST", Need::Refused),
            ("jolokia", "GET", Need::Refused),
            ("metrics", "GET", Need::Operators),
        ];
        for (e, m, want) in cases {
            assert_eq!(need(e, m), want, "{m} {e}");
        }
    }

    #[test]
    fn endpoints_are_found_under_their_base_only() {
        assert_eq!(endpoint("/actuator/env", &["/actuator"]), Some("env"));
        assert_eq!(endpoint("/actuator", &["/actuator"]), Some(""));
        assert_eq!(endpoint("/actuatorx", &["/actuator"]), None);
        assert_eq!(
            endpoint("/manage/health", &["/actuator", "/manage"]),
            Some("health")
        );
        // At the root only Spring's endpoint ids are actuator paths.
        assert_eq!(endpoint("/env", &[""]), Some("env"));
        assert_eq!(endpoint("/health/liveness", &[""]), Some("health/liveness"));
        assert_eq!(endpoint("/orders/1", &[""]), None);
        assert_eq!(endpoint("/", &[""]), None);
    }

    fn meta(pairs: &[(&str, &str)]) -> crate::instance::Metadata {
        pairs.iter().copied().collect()
    }

    #[test]
    fn each_instance_s_base_comes_from_what_it_registered() {
        let none = meta(&[]);
        let nacos_manage = meta(&[("management.endpoints.web.base-path", "/manage")]);
        let nacos_port = meta(&[
            ("management.port", "9001"),
            ("management.context-path", "/mgmt/"),
        ]);
        let nacos_both = meta(&[
            ("management.port", "9001"),
            ("management.context-path", "/mgmt"),
            ("management.endpoints.web.base-path", "ops"),
        ]);
        let eureka_port_only = meta(&[("management.port", "8080")]);
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            &'a crate::instance::Metadata,
            &'a [&'a str],
        );
        let cases: [Case; 16] = [
            // Spring Cloud Netflix's defaults.
            (
                Some("http://10.0.0.5:8080/actuator/health"),
                Some("http://10.0.0.5:8080/actuator/info"),
                &eureka_port_only,
                &["/actuator"],
            ),
            // management.endpoints.web.base-path=/manage (with the url paths set to it).
            (
                Some("http://10.0.0.5:8080/manage/health"),
                Some("http://10.0.0.5:8080/manage/info"),
                &none,
                &["/manage"],
            ),
            // management.server.port=9001: another port, the base kept all the same.
            (
                Some("http://10.0.0.5:9001/actuator/health"),
                Some("http://10.0.0.5:9001/actuator/info"),
                &none,
                &["/actuator"],
            ),
            // server.servlet.context-path=/app.
            (
                Some("http://h:8080/app/actuator/health"),
                None,
                &none,
                &["/app/actuator"],
            ),
            // A probe-group URL.
            (
                Some("https://h:8443/actuator/health/readiness?x=1"),
                None,
                &none,
                &["/actuator"],
            ),
            // Spring Boot 1.x: the actuator at the root.
            (
                Some("http://h:8080/health"),
                Some("http://h:8080/info"),
                &none,
                &[""],
            ),
            // A custom health page says nothing of the actuator; the status page does.
            (
                Some("http://h:8080/healthz"),
                Some("http://h:8080/ops/info"),
                &none,
                &["/ops"],
            ),
            // Sources disagreeing: both are protected.
            (
                Some("http://h:8080/actuator/health"),
                Some("http://h:8080/manage/info"),
                &none,
                &["/actuator", "/manage"],
            ),
            // Relative paths, trailing slashes.
            (Some("/manage/health/"), None, &none, &["/manage"]),
            // Escapes decoded as requests are; ambiguous ones not believed.
            (Some("http://h/m%61nage/health"), None, &none, &["/manage"]),
            (Some("http://h/a/..;/x/health"), None, &none, &["/actuator"]),
            // Nothing published: the default.
            (None, None, &none, &["/actuator"]),
            (Some("not a url"), Some(""), &none, &["/actuator"]),
            // Nacos metadata (Spring Cloud Alibaba).
            (None, None, &nacos_manage, &["/manage"]),
            (None, None, &nacos_port, &["/mgmt/actuator"]),
            (None, None, &nacos_both, &["/mgmt/ops"]),
        ];
        for (health, status, metadata, want) in cases {
            assert_eq!(
                bases(health, status, metadata),
                want.to_vec(),
                "{health:?} {status:?} {metadata:?}"
            );
        }
        let long = format!("http://h/{}/health", "a".repeat(MAX_BASE_LEN));
        assert_eq!(bases(Some(&long), None, &none), ["/actuator"]);
    }
}
