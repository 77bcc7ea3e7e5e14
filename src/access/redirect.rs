//! Where the login may send a browser afterwards (`rd`): only to a host the edge serves.
//!
//! An open redirect on the login host is a phishing tool with the edge's name on it, and
//! every mature edge shipped one: oauth2-proxy accepted `//evil`, `/\evil` (CVE-2020-5233),
//! a tab inside the host (`%09`, CVE-2020-11053) and a look-alike suffix (CVE-2021-21291).
//! So the target is checked strictly, by what a browser would do with it: an absolute
//! `http`/`https` URL, parsed the way browsers parse (WHATWG, the `url` crate), whose host
//! is one of the domains or one label under one, with no user info, and a port the edge
//! serves or none. Anything else is refused rather than repaired.

use url::Url;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectError {
    #[error("is empty")]
    Empty,
    #[error("holds a control character, a space or a backslash")]
    Characters,
    #[error("is not an absolute http:// or https:// URL")]
    NotAbsolute,
    #[error("carries a user name or password")]
    UserInfo,
    #[error("names host '{0}', which is not under the edge's domain")]
    ForeignHost(String),
    #[error("names port {0}, which the edge does not serve")]
    Port(u16),
}

/// The URL to send the browser to, re-serialised (what the browser would have made of
/// `rd`), or why `rd` is refused. `domains` are lower-case without a trailing dot;
/// `ports` are the ones the edge serves (a URL without a port is always fine).
pub fn check(rd: &str, domains: &[&str], ports: &[u16]) -> Result<Url, RedirectError> {
    if rd.is_empty() {
        return Err(RedirectError::Empty);
    }
    // Browsers drop tabs and newlines inside URLs and read `\` as `/`: refusing them
    // keeps what is checked here and what the browser follows one and the same.
    if rd
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return Err(RedirectError::Characters);
    }
    let lower = rd.get(..8).unwrap_or(rd).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(RedirectError::NotAbsolute);
    }
    let url = Url::parse(rd).map_err(|_| RedirectError::NotAbsolute)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(RedirectError::NotAbsolute);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(RedirectError::UserInfo);
    }
    let Some(url::Host::Domain(host)) = url.host() else {
        return Err(RedirectError::ForeignHost(
            url.host_str().unwrap_or_default().to_string(),
        ));
    };
    let host = host.to_ascii_lowercase();
    let ours = domains.iter().any(|d| {
        host == *d
            || host
                .strip_suffix(d)
                .and_then(|h| h.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.'))
    });
    if !ours {
        return Err(RedirectError::ForeignHost(crate::names::printable(&host)));
    }
    if let Some(port) = url.port() {
        if !ports.contains(&port) {
            return Err(RedirectError::Port(port));
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAINS: &[&str] = &["example.test"];
    const PORTS: &[u16] = &[8080, 8443];

    #[test]
    fn only_hosts_the_edge_serves_are_redirect_targets() {
        use RedirectError::*;
        let cases: &[(&str, Result<&str, RedirectError>)] = &[
            (
                "https://a.example.test/x?y=1#z",
                Ok("https://a.example.test/x?y=1#z"),
            ),
            ("HTTPS://A.Example.TEST/", Ok("https://a.example.test/")),
            ("http://example.test", Ok("http://example.test/")),
            (
                "http://a.example.test:8080/p",
                Ok("http://a.example.test:8080/p"),
            ),
            // The default port is no port.
            ("https://a.example.test:443/", Ok("https://a.example.test/")),
            ("", Err(Empty)),
            // Relative and scheme-relative: the browser would pick the host.
            ("/path", Err(NotAbsolute)),
            ("//evil.test/", Err(NotAbsolute)),
            ("/\\evil.test/", Err(Characters)),
            ("https:/\\evil.test/", Err(Characters)),
            ("https:evil.test", Err(NotAbsolute)),
            ("https:/evil.test", Err(NotAbsolute)),
            ("http://a.example.test\\@evil.test/", Err(Characters)),
            // CVE-2020-11053: a tab (decoded from %09) where browsers drop it.
            ("https://a.example.test\t.evil.test/", Err(Characters)),
            ("https://a.exam\nple.test/", Err(Characters)),
            ("https://a.example.test /", Err(Characters)),
            // CVE-2021-21291: look-alike hosts.
            (
                "https://evil-example.test/",
                Err(ForeignHost("evil-example.test".into())),
            ),
            (
                "https://aexample.test/",
                Err(ForeignHost("aexample.test".into())),
            ),
            (
                "https://example.test.evil.test/",
                Err(ForeignHost("example.test.evil.test".into())),
            ),
            (
                "https://a.example.test.evil.test/",
                Err(ForeignHost("a.example.test.evil.test".into())),
            ),
            // Two labels deep is no host the edge serves.
            (
                "https://a.b.example.test/",
                Err(ForeignHost("a.b.example.test".into())),
            ),
            (
                "https://a.example.test./",
                Err(ForeignHost("a.example.test.".into())),
            ),
            // User info: the host is what follows the @.
            ("https://a.example.test@evil.test/", Err(UserInfo)),
            ("https://u:p@a.example.test/", Err(UserInfo)),
            ("http://127.0.0.1/", Err(ForeignHost("127.0.0.1".into()))),
            ("http://[::1]/", Err(ForeignHost("[::1]".into()))),
            ("https://a.example.test:9999/", Err(Port(9999))),
            ("javascript:alert(1)//a.example.test", Err(NotAbsolute)),
            ("data:text/html,<script>", Err(NotAbsolute)),
            ("ftp://a.example.test/", Err(NotAbsolute)),
        ];
        for (rd, want) in cases {
            let got = check(rd, DOMAINS, PORTS).map(|u| u.to_string());
            let want = want.clone().map(str::to_string);
            assert_eq!(got, want, "rd = {rd:?}");
        }
    }
}
