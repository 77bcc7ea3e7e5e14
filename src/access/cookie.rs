//! The session cookie in a request's `Cookie` headers: found for the gate, and taken out
//! before the request reaches a backend (a domain-wide cookie otherwise reaches every
//! backend under the domain: pomerium #197, oauth2-proxy #388).

/// The value of the first cookie called `name` in `headers` (each a `Cookie` value).
pub fn find<'h>(headers: impl IntoIterator<Item = &'h [u8]>, name: &str) -> Option<&'h str> {
    headers.into_iter().find_map(|h| {
        std::str::from_utf8(h).ok()?.split(';').find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        })
    })
}

/// `header` without every cookie called `name`: `None` when nothing else is left (the
/// header is dropped), the header itself (borrowed) when it had no such cookie.
pub fn without<'h>(header: &'h [u8], name: &str) -> Option<std::borrow::Cow<'h, [u8]>> {
    let Ok(text) = std::str::from_utf8(header) else {
        return Some(std::borrow::Cow::Borrowed(header));
    };
    let named = |pair: &str| {
        pair.trim()
            .split_once('=')
            .is_some_and(|(k, _)| k.trim() == name)
    };
    if !text.split(';').any(named) {
        return Some(std::borrow::Cow::Borrowed(header));
    }
    let kept: Vec<&str> = text
        .split(';')
        .filter(|p| !named(p) && !p.trim().is_empty())
        .map(str::trim)
        .collect();
    (!kept.is_empty()).then(|| std::borrow::Cow::Owned(kept.join("; ").into_bytes()))
}

/// A backend's `Set-Cookie` that sets the edge's own cookie (dropped from responses).
pub fn sets(set_cookie: &[u8], name: &str) -> bool {
    let text = String::from_utf8_lossy(set_cookie);
    text.split(';')
        .next()
        .and_then(|p| p.split_once('='))
        .is_some_and(|(k, _)| k.trim() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_and_taken_out() {
        let h: &[u8] = b"a=1; _xipgate=v1.abc; b=2";
        assert_eq!(find([h], "_xipgate"), Some("v1.abc"));
        assert_eq!(find([h], "_xip"), None);
        assert_eq!(without(h, "_xipgate").unwrap().as_ref(), b"a=1; b=2");
        assert_eq!(without(b"_xipgate=x", "_xipgate"), None);
        assert_eq!(without(b"_xipgate=x;_xipgate=y", "_xipgate"), None);
        assert_eq!(without(b"a=1", "_xipgate").unwrap().as_ref(), b"a=1");
        assert!(sets(b"_xipgate=evil; Domain=example.test", "_xipgate"));
        assert!(!sets(b"JSESSIONID=1; Path=/", "_xipgate"));
    }
}
