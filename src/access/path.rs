//! Paths as a rule sees them. A backend (Tomcat, Spring's firewall) normalises a path its
//! own way: `/actuator;/env`, `/actuator/%65nv`, `//actuator/env` and `/x/..;/actuator/env`
//! all reach `/actuator/env` on Tomcat. Rather than guess each backend's rules, a path a
//! rule could read differently from the backend is refused ([`ambiguous`]), and what is
//! left is matched decoded ([`decoded`]).

/// Why `path` (the request target's path, no query) is ambiguous, or `None`.
pub fn ambiguous(path: &str) -> Option<&'static str> {
    let b = path.as_bytes();
    if !path.starts_with('/') {
        return Some("the path does not start with /");
    }
    if b.contains(&b';') {
        return Some("';' (a path parameter) is refused: backends strip it differently");
    }
    if b.contains(&b'\\') {
        return Some("'\\' is refused: some backends read it as /");
    }
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            let byte = match (
                b.get(i + 1).and_then(|&c| hex(c)),
                b.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => (h * 16 + l) as u8,
                _ => return Some("a '%' not followed by two hex digits"),
            };
            match byte {
                b'/' | b'\\' => return Some("an encoded '/' or '\\' is refused"),
                b'.' => return Some("an encoded '.' is refused"),
                b';' => return Some("an encoded ';' is refused"),
                b'%' => return Some("an encoded '%' (double encoding) is refused"),
                0..=0x1f | 0x7f => return Some("an encoded control character is refused"),
                _ => {}
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    if path.contains("//") {
        return Some("an empty segment ('//') is refused");
    }
    if path.split('/').any(|s| s == "." || s == "..") {
        return Some("a '.' or '..' segment is refused");
    }
    None
}

/// `path` with its percent-escapes decoded (call after [`ambiguous`] found nothing). Bytes
/// that do not make UTF-8 are kept escaped.
pub fn decoded(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains('%') {
        return std::borrow::Cow::Borrowed(path);
    }
    let out = crate::names::percent_decode(path);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_backends_read_differently_is_ambiguous() {
        for p in [
            "/actuator;/env",
            "/actuator/env;x=1",
            "/x/..;/actuator/env",
            "//actuator/env",
            "/actuator//env",
            "/actuator/./env",
            "/x/../actuator/env",
            "/actuator/%2e%2e/env",
            "/actuator%2fenv",
            "/actuator%5cenv",
            "/actuator\\env",
            "/a%",
            "/a%zz",
            "/a%252f",
            "/a%00",
            "relative",
        ] {
            assert!(ambiguous(p).is_some(), "{p} should be ambiguous");
        }
        for p in [
            "/",
            "/actuator/env",
            "/actuator/%65nv",
            "/a.b/c..d",
            "/search%20me",
        ] {
            assert_eq!(ambiguous(p), None, "{p}");
        }
    }

    #[test]
    fn decoding_undoes_escapes_of_plain_characters() {
        assert_eq!(decoded("/actuator/%65nv"), "/actuator/env");
        assert_eq!(decoded("/plain"), "/plain");
    }
}
