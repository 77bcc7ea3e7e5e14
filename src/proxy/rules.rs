//! The proxy's HTTP rules, decided once for both engines: Pingora's proxy ([`super::PingoraProxy`])
//! and the fast path ([`super::fast`]). Each rule is a pure function with a table test
//! here; `tests/differential.rs` sends the same raw requests through both engines and
//! compares what the client and the backend see.
//!
//! Where Pingora already enforces a rule itself (it strips the standard hop-by-hop
//! headers and the ones named in `Connection`), the Pingora path still applies the rule
//! from here after it, so the set is one list whichever engine serves the request.

use pingora_core::ErrorType;

use crate::registry::Status;
use crate::routes::Route;

/// Request headers never passed upstream: the hop-by-hop headers of RFC 9110 §7.6.1 plus
/// the proxy ones (`Proxy-Authorization` carries the client's credentials for this
/// proxy, never for the instance behind it), the list Pingora strips.
pub const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "http2-settings",
];

/// The forwarding headers the edge writes itself: a client's own are replaced, except
/// X-Forwarded-For and Via, which are extended (see [`forwarded_for`] and [`via_into`]).
pub const EDGE_FORWARDED: [&str; 5] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "via",
];

/// Forwarding headers the edge does not write and never passes on: a client would choose
/// the address, host and scheme the app sees through them (Spring's
/// `ForwardedHeaderFilter` reads `Forwarded` before any X-Forwarded-*; `X-Real-IP` is
/// nginx's convention for the client's address).
pub const CLIENT_FORWARDED: [&str; 2] = ["forwarded", "x-real-ip"];

/// Hop-by-hop headers of the backend's connection, never passed to the client.
pub const RESPONSE_HOP_BY_HOP: [&str; 3] = ["connection", "keep-alive", "proxy-connection"];

/// Response headers the edge sets itself and never passes on from a backend.
pub const EDGE_RESPONSE: [&str; 2] = ["x-served-by", "x-xipgate-instance-status"];

fn any_is(list: &[&str], name: &str) -> bool {
    list.iter().any(|h| name.eq_ignore_ascii_case(h))
}

pub fn is_hop_by_hop(name: &str) -> bool {
    any_is(&HOP_BY_HOP, name)
}

/// A forwarding header, in any spelling that reads as one: `_` counts as `-`, because
/// CGI-style servers (and frameworks on them) turn both into the same variable.
pub fn is_forwarding(name: &str) -> bool {
    let same = |h: &&str| {
        h.len() == name.len()
            && h.bytes()
                .zip(name.bytes())
                .all(|(h, n)| h == n.to_ascii_lowercase() || (h == b'-' && n == b'_'))
    };
    EDGE_FORWARDED.iter().chain(&CLIENT_FORWARDED).any(same)
}

/// A client request header the edge does not pass upstream as it is.
pub fn dropped_upstream(name: &str) -> bool {
    is_hop_by_hop(name) || is_forwarding(name)
}

/// A backend response header the edge does not pass to the client as it is (framing
/// headers are decided by [`content_length`] and the engine's framing).
pub fn dropped_downstream(name: &str) -> bool {
    any_is(&RESPONSE_HOP_BY_HOP, name) || any_is(&EDGE_RESPONSE, name)
}

/// `X-Xipgate-Instance-Status`: on an instance host whose instance is not UP, its status
/// (a service host only ever routes to UP instances).
pub fn instance_status_header(route: RouteKind, status: Status) -> Option<&'static str> {
    (route == RouteKind::Instance && status != Status::Up).then(|| status.as_str())
}

/// A value that can go into a header as it is: visible ASCII, space and tab (registry
/// data and client values are not trusted).
pub fn header_safe(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// A response `Content-Length` value (RFC 9110 §8.6): digits only, optionally a list of
/// equal values (`5, 5`, which some servers send after merging). `None` for anything else
/// (`+5`, `5 ` with a no-break space, `0x5`, differing values): the response is a 502.
pub fn content_length(value: &[u8]) -> Option<u64> {
    let mut found: Option<u64> = None;
    for part in value.split(|&b| b == b',') {
        let part = trim_ows(part);
        // u64::MAX has 20 digits; refusing 20 and more keeps the parse overflow-free.
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = part.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return None;
        }
        found = Some(n);
    }
    found
}

/// Whether a response's `Transfer-Encoding` (its header values, in order) frames the body
/// as chunked: the last coding of the last value is exactly `chunked` (RFC 9112 §6.3).
/// Anything else (`chunked,`, `gzip`, `chunked, gzip`) would be read to the close while
/// the header goes on to the client, where a reader that frames it otherwise can take
/// the rest of the connection for the next response: a 502 on both engines
/// ([`UNCHUNKED_TRANSFER_CODING`]).
pub fn transfer_coding_chunked<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> bool {
    values.into_iter().last().is_some_and(|v| {
        let last = v.rsplit(|&b| b == b',').next().unwrap_or_default();
        trim_ows(last).eq_ignore_ascii_case(b"chunked")
    })
}

/// Why a response with a `Transfer-Encoding` that does not end in `chunked` is a 502
/// ([`transfer_coding_chunked`]).
pub const UNCHUNKED_TRANSFER_CODING: &str =
    "answered with a Transfer-Encoding whose last coding is not chunked, so where the response ends is unknown";

/// HTTP's optional whitespace (space and tab only, not Unicode spaces).
fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// A request target the fast path may pass through byte for byte: origin-form made only of
/// the characters RFC 3986 allows in a path and query (no fragment, no raw `{|}^\`[]`, no
/// space or control byte). Anything else goes to Pingora's stricter parser, so both engines
/// give the same answer.
pub fn plain_origin_form(target: &str) -> bool {
    target.starts_with('/')
        && target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b))
}

/// The X-Forwarded-For sent upstream: the client's own values (every X-Forwarded-For header,
/// in order, empty and unsafe ones left out), then the client's address.
pub fn forwarded_for<'a>(
    client_values: impl IntoIterator<Item = &'a [u8]>,
    client: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    forwarded_for_into(&mut out, client_values, client);
    out
}

/// [`forwarded_for`] appended to `out` (the fast path writes its head in one buffer).
pub fn forwarded_for_into<'a>(
    out: &mut Vec<u8>,
    client_values: impl IntoIterator<Item = &'a [u8]>,
    client: &str,
) {
    client_list_into(out, client_values);
    out.extend_from_slice(client.as_bytes());
}

/// A client address as X-Forwarded-For writes it: what `IpAddr`'s `Display` writes, an
/// IPv4 address without `fmt` (on every new connection, it was a twentieth of one's cost in
/// bench/cost.sh's conn row).
pub fn address_text(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut out = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
    out
}

/// A list header's client values as they go on upstream (X-Forwarded-For, Via): every
/// value in order, each followed by `, ` for the edge's own entry that comes next; empty
/// and unsafe values are left out.
fn client_list_into<'a>(out: &mut Vec<u8>, client_values: impl IntoIterator<Item = &'a [u8]>) {
    for v in client_values {
        let v = trim_ows(v);
        if v.is_empty() || !header_safe(v) {
            continue;
        }
        out.extend_from_slice(v);
        out.extend_from_slice(b", ");
    }
}

/// This process's name in the Via header (RFC 9110 §7.6.3): `xipgate-` and 16 random hex
/// digits, new in every process. A request that arrives carrying it has been through this
/// edge already: an instance's address led back to it ([`looped`]). Random rather than
/// the host name, so two edges in a chain (or an old and a new process during an upgrade)
/// never take each other for themselves.
pub fn pseudonym() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        // std's RandomState is seeded from the OS's random source once per process.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        format!("xipgate-{:016x}", h.finish())
    })
}

/// The status a looped request gets (RFC 5842 §7.2, 508 Loop Detected).
pub const LOOP_STATUS: u16 = 508;

/// Why a looped request is refused.
pub const LOOP_MESSAGE: &str = "loop detected: this request has already passed through this edge (its Via header carries the edge's own entry); an instance's address leads back to the edge";

/// Whether the request's Via values (every Via header, in order) carry `me` as the
/// received-by of an entry (`<protocol> <received-by> [comment]`).
pub fn looped<'a>(via: impl IntoIterator<Item = &'a [u8]>, me: &str) -> bool {
    via.into_iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .any(|entry| {
            let mut parts = entry
                .split(|&b| b == b' ' || b == b'\t')
                .filter(|p| !p.is_empty());
            parts.next().is_some()
                && parts
                    .next()
                    .is_some_and(|by| by.eq_ignore_ascii_case(me.as_bytes()))
        })
}

/// The Via sent upstream, appended to `out`: the client's own entries (every Via header,
/// in order, empty and unsafe ones left out), then the edge's, `<protocol> <me>`.
pub fn via_into<'a>(
    out: &mut Vec<u8>,
    client_values: impl IntoIterator<Item = &'a [u8]>,
    protocol: &str,
    me: &str,
) {
    client_list_into(out, client_values);
    out.extend_from_slice(protocol.as_bytes());
    out.push(b' ');
    out.extend_from_slice(me.as_bytes());
}

/// Via's received-protocol for the version the request arrived in (`HTTP/` left out, as
/// RFC 9110 allows).
pub fn via_protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// Why a `101 Switching Protocols` to a request that asked for no upgrade is a 502 on both
/// engines (RFC 9110 §15.2.2: a server switches only to a protocol the client named).
pub const UNASKED_UPGRADE: &str =
    "answered 101 Switching Protocols to a request that asked for no upgrade";

/// `X-Forwarded-Proto`: the scheme the client used to reach the edge.
/// Whether the client asked to close its connection after this response: a `close` token
/// in `Connection`, or HTTP/1.0 (or 0.9) without a `keep-alive` token. Pingora's engine
/// keeps every other connection for `downstream.keepalive_timeout` (the fast path hands
/// HTTP/1.0 to it and reads `close` itself). An upgrade (`Connection: Upgrade`) is neither.
pub fn client_closes<'a>(
    version: http::Version,
    connection: impl IntoIterator<Item = &'a [u8]>,
) -> bool {
    let (mut close, mut keep) = (false, false);
    for value in connection {
        for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            close |= token.eq_ignore_ascii_case(b"close");
            keep |= token.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    close || (version < http::Version::HTTP_11 && !keep)
}

pub fn forwarded_proto(tls: bool) -> &'static str {
    if tls {
        "https"
    } else {
        "http"
    }
}

/// Where a plain-HTTP request is redirected when `xipgate.tls.redirect_http` is on: the
/// same host (its port dropped) on the HTTPS port, the same path and query. 443 is left
/// out of the URL, as browsers write it.
pub fn https_location(host: &str, https_port: u16, path_and_query: &str) -> String {
    // The Host may carry the plain listener's port; IPv6 literals keep their brackets.
    let bare = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => host,
    };
    let path = if path_and_query.starts_with('/') {
        path_and_query
    } else {
        "/"
    };
    if https_port == 443 {
        format!("https://{bare}{path}")
    } else {
        format!("https://{bare}:{https_port}{path}")
    }
}

/// The kind of route a request took, for the retry rule and the added headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// A service host: any UP instance will do.
    Service,
    /// An instance host: that instance and no other.
    Instance,
}

impl RouteKind {
    pub fn of(route: &Route) -> Self {
        match route {
            Route::Instance(_) => RouteKind::Instance,
            Route::Service(_) => RouteKind::Service,
        }
    }
}

/// What is known about a failed try.
#[derive(Debug, Clone, Copy)]
pub struct FailedTry<'a> {
    pub etype: &'a ErrorType,
    pub route: RouteKind,
    /// The request may be sent again (idempotent method, body still replayable).
    pub idempotent: bool,
    /// Some of the request may have reached the upstream.
    pub sent: bool,
    /// The upstream connection came from the keep-alive pool.
    pub reused: bool,
    /// Part of the response already went to the client.
    pub response_started: bool,
    /// The failure is the upstream's (not the client's going away or its broken body).
    pub upstream_fault: bool,
    /// Tries made so far, this one included.
    pub tries: u32,
    pub max_tries: u32,
}

/// The upstream closed or reset the connection: what a pooled connection the upstream
/// dropped while idle looks like when it is reused (Pingora marks these `ReusedOnly`).
fn closed_by_upstream(e: &ErrorType) -> bool {
    matches!(
        e,
        ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
    )
}

/// Whether a failed try is tried again.
///
/// Never once the response started (the next answer would be appended to it), never past
/// `max_tries`, never for the client's own faults, never a request that may have reached
/// the upstream unless it is idempotent. Then: a service host tries another instance for
/// any failure. An instance host has only its one instance, so it tries again only the
/// failure a retry cures: a pooled connection the upstream closed or reset as it was
/// reused (the keep-alive race). A timeout there is a 504, not three times the wait.
pub fn retry(f: &FailedTry<'_>) -> bool {
    if f.response_started || !f.upstream_fault || f.tries >= f.max_tries {
        return false;
    }
    // The edge's own refusals and verdicts (an unasked 101) are answers, not failures.
    if matches!(f.etype, ErrorType::HTTPStatus(_)) {
        return false;
    }
    if f.sent && !f.idempotent {
        return false;
    }
    match f.route {
        RouteKind::Service => true,
        RouteKind::Instance => f.reused && closed_by_upstream(f.etype),
    }
}

#[cfg(test)]
mod tests;
