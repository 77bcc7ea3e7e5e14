//! Arbitrary bytes as a Host value: through the name functions the proxy routes with, and
//! through `request_host` with a real `RequestHeader` (one or two Host headers, and as an
//! absolute-form URI authority) wherever the bytes make one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pingora_http::RequestHeader;
use xipgate::names::{self, HostError, MAX_HOST_LEN, MAX_LABEL_LEN};

const DOMAINS: [&str; 3] = ["127-0-0-1.sslip.io", "example.com", "a.b.c.nip.io"];

fn check_names(raw: &str) {
    let domains: Vec<String> = DOMAINS.iter().map(|d| d.to_string()).collect();
    if let Ok(host) = names::normalize_host(raw) {
        // A normalised host is a lower-case DNS name within bounds, and stable.
        assert!(!host.is_empty() && host.len() <= MAX_HOST_LEN, "{host:?}");
        assert_eq!(host, host.to_ascii_lowercase());
        assert_eq!(
            names::normalize_host(&host).as_deref(),
            Ok(host.as_str()),
            "not idempotent"
        );
        if let Ok((label, i)) = names::split_host(&host, &domains) {
            assert!(i < domains.len());
            assert!(!label.is_empty() && !label.contains('.'));
            assert_eq!(format!("{label}.{}", domains[i]), host);
            if let Some(l) = names::normalize_request_label(label) {
                assert!(!l.is_empty() && l.len() <= MAX_LABEL_LEN);
                assert!(l.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'-'
                    || b == b'x'));
                assert!(!l.starts_with('-') && !l.ends_with('-'));
                assert_eq!(
                    names::normalize_request_label(&l).as_deref(),
                    Some(l.as_str()),
                    "label not idempotent"
                );
            }
        }
    }
    // The label functions take anything, not only hosts.
    let _ = names::normalize_request_label(raw);
    let s = names::sanitize(raw);
    assert!(s.len() <= raw.len());
    let _ = names::guard_dashed_ipv4(&s);
    let p = names::printable(raw);
    assert!(!p.contains('\n') && !p.contains('\r'));
}

fn check_request(bytes: &[u8]) {
    let Ok(mut req) = RequestHeader::build("GET", b"/", None) else {
        return;
    };
    if req.append_header("host", bytes).is_err() {
        return;
    }
    match xipgate::proxy::request_host(&req) {
        Ok(h) => {
            assert!(!h.is_empty());
            let _ = names::normalize_host(&h);
        }
        Err(HostError::Missing | HostError::Invalid(_) | HostError::OutsideDomains(_)) => {}
    }
    // Two Host headers are always refused.
    let mut twice = req.clone();
    if twice.append_header("host", bytes).is_ok() {
        assert!(xipgate::proxy::request_host(&twice).is_err());
    }
    // As the authority of an absolute-form URI, where the bytes make one.
    let mut uri = b"http://".to_vec();
    uri.extend_from_slice(bytes);
    uri.extend_from_slice(b"/p");
    if let Ok(mut abs) = RequestHeader::build("GET", &uri, None) {
        if let Ok(h) = xipgate::proxy::request_host(&abs) {
            let _ = names::normalize_host(&h);
        }
        // With a Host header naming something else, it is refused.
        if abs.insert_header("host", "other.example.com").is_ok() {
            if let Ok(h) = xipgate::proxy::request_host(&abs) {
                assert!(h.eq_ignore_ascii_case("other.example.com"), "{h:?}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check_names(&String::from_utf8_lossy(data));
    check_request(data);
});
