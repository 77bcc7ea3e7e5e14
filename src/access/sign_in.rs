//! Where a browser without a session is sent: the login host under the request's own
//! domain, with the page it asked for to come back to. The login host checks `rd` itself
//! before it redirects anywhere (only hosts the edge serves).

/// `{scheme}://{login_label}.{domain}[:port]/oauth2/start?rd=<original_url, encoded>`.
/// `port`: the port the client named in its Host (left out when `None`, or the scheme's
/// default).
pub fn sign_in_location(
    scheme: &str,
    login_label: &str,
    domain: &str,
    port: Option<u16>,
    original_url: &str,
) -> String {
    let default = match scheme {
        "https" => 443,
        _ => 80,
    };
    let port = port
        .filter(|p| *p != default)
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    format!(
        "{scheme}://{login_label}.{domain}{port}/oauth2/start?rd={}",
        percent_encode(original_url)
    )
}

/// Every byte but RFC 3986's unreserved ones escaped: the value cannot end the query or
/// add a parameter, whatever the original URL holds.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_location_carries_the_page_encoded() {
        let cases = [
            (
                ("http", "login", "xip.test", Some(8080), "http://a.xip.test:8080/p?x=1&y=2"),
                "http://login.xip.test:8080/oauth2/start?rd=http%3A%2F%2Fa.xip.test%3A8080%2Fp%3Fx%3D1%26y%3D2",
            ),
            (
                ("https", "sso", "xip.test", Some(443), "https://a.xip.test/"),
                "https://sso.xip.test/oauth2/start?rd=https%3A%2F%2Fa.xip.test%2F",
            ),
            (
                ("http", "login", "xip.test", None, "http://a.xip.test/#x y"),
                "http://login.xip.test/oauth2/start?rd=http%3A%2F%2Fa.xip.test%2F%23x%20y",
            ),
        ];
        for ((scheme, label, domain, port, url), want) in cases {
            assert_eq!(sign_in_location(scheme, label, domain, port, url), want);
        }
    }
}
