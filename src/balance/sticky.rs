//! The sticky cookie: what the edge sets, and which values it reads.

/// Spring Cloud LoadBalancer's sticky-session cookie: it holds an instanceId.
pub const SPRING_COOKIE: &str = "sc-lb-instance-id";

/// The `Set-Cookie` value naming the instance `label`: scoped to the service host (no
/// Domain, so no other host gets it), the whole site, not readable by scripts, sent on
/// top-level navigation from other sites (`Lax`), `Secure` over HTTPS. A session cookie:
/// it lasts as long as the browser's session.
pub fn set_cookie(name: &str, label: &str, tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!("{name}={label}; Path=/; HttpOnly; SameSite=Lax{secure}")
}

/// True for a value that can be an instance's host label (what the edge's cookie holds):
/// 1-63 lower-case letters, digits and hyphens. Anything else is a forged or broken
/// cookie: it is ignored and replaced.
pub fn valid_label(value: &str) -> bool {
    (1..=63).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The value of cookie `name` in `cookies`.
pub(super) fn find<'h>(cookies: &[&'h [u8]], name: &str) -> Option<&'h str> {
    crate::access::cookie::find(cookies.iter().copied(), name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_host_only_http_only_and_lax() {
        assert_eq!(
            set_cookie("xipgate-instance", "order-1-8080", false),
            "xipgate-instance=order-1-8080; Path=/; HttpOnly; SameSite=Lax"
        );
        assert!(set_cookie("c", "a", true).ends_with("; Secure"));
    }

    #[test]
    fn only_labels_are_read() {
        for ok in ["a", "order-1-8080", &"a".repeat(63)] {
            assert!(valid_label(ok), "{ok}");
        }
        for bad in ["", "A", "a b", "a;b", "a\"", &"a".repeat(64), "ä", "a.b"] {
            assert!(!valid_label(bad), "{bad}");
        }
    }
}
