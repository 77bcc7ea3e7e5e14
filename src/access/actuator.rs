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
/// no trailing slash), or `None`.
pub fn endpoint<'p>(path: &'p str, bases: &[&str]) -> Option<&'p str> {
    bases.iter().find_map(|base| {
        let rest = path.strip_prefix(base)?;
        if rest.is_empty() {
            Some("")
        } else {
            rest.strip_prefix('/')
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
