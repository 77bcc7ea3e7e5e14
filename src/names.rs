//! Host names: how a service or instance becomes a DNS label, and how a request's
//! Host header is taken apart again.
//!
//! Everything here is a pure function so that it can be tested table-style and with
//! property tests; the proxy, the console and the DNS server all call the same code, so a
//! link the console prints is always a name the proxy routes.

use std::fmt;

/// A DNS label is at most 63 octets (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;
/// Length a too-long label is cut to before `-` and the hash suffix are appended.
const CUT_LEN: usize = 54;
/// Hex digits of the instanceId hash appended to a cut label.
const HASH_HEX_LEN: usize = 8;
/// A whole DNS name is at most 253 characters in its dotted text form.
pub const MAX_HOST_LEN: usize = 253;

/// Lower-cases, replaces every character outside `[a-z0-9]` by `-`, collapses runs of
/// `-` and trims `-` at both ends. The building block of every label.
pub fn sanitize(raw: &str) -> String {
    // Byte by byte: a non-ASCII character's bytes each become `-`, and the run collapses to
    // the one `-` the character would have made. (Per character with `ends_with`, this was
    // a third of a new connection's Host handling, bench/cost.sh's conn row.)
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    for b in raw.bytes().map(|b| b.to_ascii_lowercase()) {
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            out.push(b);
        } else if out.last().is_some_and(|&l| l != b'-') {
            out.push(b'-');
        }
    }
    if out.last() == Some(&b'-') {
        out.pop();
    }
    // Only ASCII was pushed, so this never falls back.
    String::from_utf8(out).unwrap_or_default()
}

/// The label of a service: its Eureka app name, sanitised.
/// `ORDER-SERVICE` → `order-service`, `TESTENG.METRICSD` → `testeng-metricsd`.
pub fn service_label(app: &str) -> String {
    let label = guard_dashed_ipv4(&sanitize(app));
    cut_with_hash(label, app)
}

/// The primary label of an instance: its instanceId without a redundant `:<app>:` middle
/// part (Spring's default `pod:app:port` becomes `pod-port`), sanitised, guarded against
/// dashed IPv4 runs and cut to 63 characters.
pub fn instance_label(instance_id: &str, app: &str) -> String {
    let base = drop_app_part(instance_id, app);
    let label = guard_dashed_ipv4(&sanitize(&base));
    cut_with_hash(label, instance_id)
}

/// The label of the full instanceId, app part kept: the older design's name form
/// (`user_service_7d9f_user_service_8080` normalises to it).
pub fn full_instance_label(instance_id: &str) -> String {
    let label = guard_dashed_ipv4(&sanitize(instance_id));
    cut_with_hash(label, instance_id)
}

/// Normalises a label from a request so that the older `_`-separated names and upper-case
/// names find the same entry. Returns `None` when nothing routable is left.
pub fn normalize_request_label(raw: &str) -> Option<String> {
    let label = guard_dashed_ipv4(&sanitize(raw));
    (!label.is_empty() && label.len() <= MAX_LABEL_LEN).then_some(label)
}

/// Makes a colliding label unique: appends `-` and 6 hex characters of a hash of the
/// instanceId, cutting the label so the result still fits 63 characters. Deterministic:
/// the same instanceId always gets the same suffix, whatever order instances arrive in.
pub fn disambiguate(label: &str, instance_id: &str) -> String {
    let suffix = format!("{:06x}", fnv1a(instance_id) & 0xff_ffff);
    let keep = label.len().min(MAX_LABEL_LEN - 1 - suffix.len());
    let head = label[..keep].trim_end_matches('-');
    // Cutting can leave digit groups that meet the suffix's: guard the result too.
    guard_dashed_ipv4(&format!("{head}-{suffix}"))
}

/// `host:app:port` → `host:port` when the middle part is the app name (case-insensitive).
fn drop_app_part(instance_id: &str, app: &str) -> String {
    let parts: Vec<&str> = instance_id.split(':').collect();
    if parts.len() >= 3 && !app.is_empty() {
        let middle = &parts[1..parts.len() - 1];
        if middle.len() == 1 && middle[0].eq_ignore_ascii_case(app) {
            return format!("{}:{}", parts[0], parts[parts.len() - 1]);
        }
    }
    instance_id.to_string()
}

/// Replaces the `-` inside every run of four 1-3 digit groups joined by `-` with `x`:
/// sslip.io and nip.io read such a run anywhere in a name as an address, so
/// `pod-10-0-0-7-8080` would resolve to 10.0.0.7 instead of the edge.
pub fn guard_dashed_ipv4(label: &str) -> String {
    let is_octet = |g: &str| (1..=3).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_digit());
    // Most labels have no four digit groups in a row: returned as they are, without the
    // list of groups (on every new connection's Host, bench/cost.sh's conn row).
    let mut run = 0;
    if !label.split('-').any(|g| {
        run = if is_octet(g) { run + 1 } else { 0 };
        run == 4
    }) {
        return label.to_string();
    }
    let groups: Vec<&str> = label.split('-').collect();
    let mut joiner = vec![b'-'; groups.len().saturating_sub(1)];
    let mut i = 0;
    while i + 3 < groups.len() {
        if groups[i..i + 4].iter().all(|g| is_octet(g)) {
            for j in joiner.iter_mut().skip(i).take(3) {
                *j = b'x';
            }
            // Overlapping runs (five groups) are guarded too: the next window starts one on.
        }
        i += 1;
    }
    let mut out = String::with_capacity(label.len());
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            out.push(joiner[i - 1] as char);
        }
        out.push_str(g);
    }
    out
}

/// Cuts a label over 63 characters to 54 + `-` + 8 hex characters of a hash of `source`.
fn cut_with_hash(label: String, source: &str) -> String {
    if label.len() <= MAX_LABEL_LEN {
        return label;
    }
    let head = label[..CUT_LEN].trim_end_matches('-');
    let hash = format!("{:0width$x}", fnv1a(source) as u32, width = HASH_HEX_LEN);
    // Cutting can leave digit groups that meet the hash's: guard the result too.
    guard_dashed_ipv4(&format!("{head}-{hash}"))
}

/// FNV-1a, 64 bit: stable across builds and platforms (std's hasher is not), so labels
/// never change when xipgate is upgraded.
pub fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Why a request's host cannot be routed. Each maps to a 4xx answer naming the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    Missing,
    Invalid(String),
    OutsideDomains(String),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Missing => write!(f, "the request has no Host header"),
            HostError::Invalid(why) => write!(f, "invalid Host: {why}"),
            HostError::OutsideDomains(host) => {
                write!(f, "host '{host}' is not under any domain served here")
            }
        }
    }
}

/// Strips an optional `:port` and a trailing dot, lower-cases, and checks that what is
/// left is a syntactically valid DNS name. Returns the bare host name.
pub fn normalize_host(raw: &str) -> Result<String, HostError> {
    let raw = raw.trim_matches(|c| c == ' ' || c == '\t');
    if raw.is_empty() {
        return Err(HostError::Missing);
    }
    if raw.starts_with('[') {
        return Err(HostError::Invalid("an IP literal names no service".into()));
    }
    let host = match raw.rsplit_once(':') {
        Some((h, port)) => {
            if port.is_empty()
                || !port.bytes().all(|b| b.is_ascii_digit())
                || port.parse::<u16>().is_err()
            {
                return Err(HostError::Invalid(format!(
                    "bad port in '{}'",
                    printable(raw)
                )));
            }
            h
        }
        None => raw,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return Err(HostError::Missing);
    }
    if host.len() > MAX_HOST_LEN {
        return Err(HostError::Invalid(format!(
            "host is {} characters long (at most {MAX_HOST_LEN})",
            host.len()
        )));
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err(HostError::Invalid(format!(
                "empty label in '{}'",
                printable(host)
            )));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(HostError::Invalid(format!(
                "a label is {} characters long (at most {MAX_LABEL_LEN})",
                label.len()
            )));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(HostError::Invalid(format!(
                "'{}' has characters not allowed in a host name",
                printable(host)
            )));
        }
        // RFC 952/1123: no host name label starts or ends with `-`, so no client sends
        // one; routing it anyway (its `-` trimmed) would only be lenient input.
        if label.starts_with('-') || label.ends_with('-') {
            return Err(HostError::Invalid(format!(
                "label '{}' starts or ends with '-'",
                printable(label)
            )));
        }
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(HostError::Invalid("an IP literal names no service".into()));
    }
    Ok(host.to_ascii_lowercase())
}

/// Splits `<label>.<domain>` for the first configured domain the host ends with.
/// Domains must be lower-case without a trailing dot (the config guarantees it).
pub fn split_host<'a>(host: &'a str, domains: &[String]) -> Result<(&'a str, usize), HostError> {
    for (i, domain) in domains.iter().enumerate() {
        if let Some(head) = host.strip_suffix(domain.as_str()) {
            if let Some(label) = head.strip_suffix('.') {
                if !label.is_empty() && !label.contains('.') {
                    return Ok((label, i));
                }
            }
        }
    }
    Err(HostError::OutsideDomains(host.to_string()))
}

/// A host for an error message: control characters and non-ASCII escaped, length bounded,
/// so an attacker cannot inject lines or huge bodies through it.
pub fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(100).flat_map(char::escape_default).collect();
    if s.chars().count() > 100 {
        out.push('…');
    }
    out
}

/// The host of an `http(s)://host[:port]` origin, or `None` for anything else (a path, a
/// userinfo, another scheme, an empty host, a bad port).
pub fn origin_host(origin: &str) -> Option<&str> {
    let lower = origin.get(..8).map(str::to_ascii_lowercase);
    let rest = match lower.as_deref() {
        Some(p) if p.starts_with("http://") => &origin[7..],
        Some("https://") => &origin[8..],
        _ => return None,
    };
    // A host with a `:` left in it (an IPv6 literal) fails the character check below:
    // literals are never under the edge's domains, and listed origins matched already.
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse::<u16>().ok()?;
    }
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    ok.then_some(host)
}

/// `%3A` → `:`, and nothing else: an instanceId in a URL path, a password in a URL's
/// userinfo. Not form decoding (`+` stays a plus); a `%` without two hex digits stays.
pub fn percent_decode(s: &str) -> String {
    let (b, mut out, mut k) = (s.as_bytes(), Vec::with_capacity(s.len()), 0);
    while k < b.len() {
        let hex = b
            .get(k + 1..k + 3)
            .filter(|h| b[k] == b'%' && h.iter().all(u8::is_ascii_hexdigit));
        match hex.and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()) {
            Some(v) => {
                out.push(v);
                k += 3;
            }
            None => {
                out.push(b[k]);
                k += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sanitize` as it was written first, character by character: the byte-wise one must
    /// give the same label for any input, non-ASCII included.
    fn sanitize_by_char(raw: &str) -> String {
        let mut out = String::new();
        for c in raw.chars() {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                out.push(c);
            } else if !out.is_empty() && !out.ends_with('-') {
                out.push('-');
            }
        }
        while out.ends_with('-') {
            out.pop();
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn sanitize_by_byte_is_sanitize_by_char(raw in "(?s).{0,40}", ascii in "[ -~]{0,40}") {
            proptest::prop_assert_eq!(sanitize(&raw), sanitize_by_char(&raw));
            proptest::prop_assert_eq!(sanitize(&ascii), sanitize_by_char(&ascii));
        }
    }

    #[test]
    fn service_labels() {
        for (app, want) in [
            ("ORDER-SERVICE", "order-service"),
            ("TESTENG.METRICSD", "testeng-metricsd"),
            ("__Weird__App__", "weird-app"),
            ("a--b", "a-b"),
        ] {
            assert_eq!(service_label(app), want, "{app}");
        }
    }

    #[test]
    fn instance_labels() {
        for (id, app, want) in [
            (
                "order-service-7d9f8-x2k4q:order-service:8080",
                "ORDER-SERVICE",
                "order-service-7d9f8-x2k4q-8080",
            ),
            (
                "config-service001.test.com:config-service:8080",
                "CONFIG-SERVICE",
                "config-service001-test-com-8080",
            ),
            ("host:other:8080", "APP", "host-other-8080"),
            ("10.0.0.7:order:8080", "ORDER", "10x0x0x7-8080"),
            ("pod-10-0-0-7-8080", "X", "pod-10x0x0x7-8080"),
            ("i-0123", "X", "i-0123"),
        ] {
            assert_eq!(instance_label(id, app), want, "{id}");
        }
    }

    #[test]
    fn long_labels_are_cut_with_a_hash() {
        let id = format!("{}:app:8080", "a".repeat(80));
        let label = instance_label(&id, "app");
        assert_eq!(label.len(), 63);
        assert!(label.starts_with(&"a".repeat(54)));
        let other = instance_label(&format!("{}:app:8081", "a".repeat(80)), "app");
        assert_ne!(label, other, "different ids must not share a cut label");
    }

    #[test]
    fn dashed_ipv4_guard() {
        for (input, want) in [
            ("10-0-0-5", "10x0x0x5"),
            ("1-2-3-4-5", "1x2x3x4x5"),
            ("1234-1-1-1", "1234-1-1-1"),
            ("a-1-2-3", "a-1-2-3"),
            ("x-1-2-3-4-y", "x-1x2x3x4-y"),
        ] {
            assert_eq!(guard_dashed_ipv4(input), want, "{input}");
        }
    }

    #[test]
    fn seed_names_normalise_to_labels() {
        assert_eq!(
            normalize_request_label("user_service_7d9f_8080").as_deref(),
            Some("user-service-7d9f-8080")
        );
        assert_eq!(
            normalize_request_label("ORDER-Service").as_deref(),
            Some("order-service")
        );
        assert_eq!(normalize_request_label("___"), None);
    }

    #[test]
    fn cut_and_suffix_never_form_a_dashed_ipv4() {
        // Found by proptest: a cut ending in digit groups next to an all-digit suffix.
        let label = format!("{}-5-1-2", "k".repeat(50));
        for id in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            let d = disambiguate(&label, id);
            assert!(
                !d.split('-').collect::<Vec<_>>().windows(4).any(|w| w
                    .iter()
                    .all(|g| (1..=3).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_digit()))),
                "{d}"
            );
        }
    }

    #[test]
    fn disambiguation_is_deterministic_and_bounded() {
        let a = disambiguate("pod-8080", "pod:a:8080");
        assert_eq!(a, disambiguate("pod-8080", "pod:a:8080"));
        assert_ne!(a, disambiguate("pod-8080", "pod:b:8080"));
        assert!(disambiguate(&"x".repeat(63), "id").len() <= 63);
    }

    #[test]
    fn hosts() {
        let domains = vec!["10-0-0-5.sslip.io".to_string(), "example.com".to_string()];
        for (raw, want) in [
            ("order.10-0-0-5.sslip.io", Ok(("order", 0))),
            ("ORDER.10-0-0-5.SSLIP.IO:8080", Ok(("order", 0))),
            ("order.example.com.", Ok(("order", 1))),
            ("a.b.example.com", Err("outside")),
            ("example.com", Err("outside")),
            ("", Err("missing")),
            ("10.0.0.5", Err("invalid")),
            ("[::1]:80", Err("invalid")),
            ("a..example.com", Err("invalid")),
            ("a.example.com:x", Err("invalid")),
            ("us@er.example.com", Err("invalid")),
            // RFC 952/1123: a host name label neither starts nor ends with `-`.
            ("-order.10-0-0-5.sslip.io", Err("invalid")),
            ("order-.10-0-0-5.sslip.io", Err("invalid")),
            ("-order-.example.com:8080", Err("invalid")),
            ("a.-b.example.com", Err("invalid")),
            ("-", Err("invalid")),
            // `_` is the older design's separator: still read as `-` by the label lookup.
            ("order_.example.com", Ok(("order_", 1))),
        ] {
            let got = normalize_host(raw)
                .and_then(|h| split_host(&h, &domains).map(|(l, i)| (l.to_string(), i)));
            match (got, want) {
                (Ok((l, i)), Ok((wl, wi))) => assert_eq!((l.as_str(), i), (wl, wi), "{raw}"),
                (Err(HostError::Missing), Err("missing")) => {}
                (Err(HostError::Invalid(_)), Err("invalid")) => {}
                (Err(HostError::OutsideDomains(_)), Err("outside")) => {}
                (got, want) => panic!("{raw}: got {got:?}, want {want:?}"),
            }
        }
    }
}
