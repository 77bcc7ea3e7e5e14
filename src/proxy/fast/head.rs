//! HTTP/1.1 heads for the fast path, as pure functions over bytes: which requests the fast
//! path takes (everything else goes to Pingora's proxy), the request head sent upstream,
//! how a response's body is framed, and the response head sent to the client.

use std::mem::MaybeUninit;

use std::borrow::Cow;

use crate::access::{cookie, Gate, Identity};
use crate::balance::Balance;
use crate::proxy::{guard, rules};

/// Most headers a request or response head may have on the fast path. A request with more
/// goes to Pingora (which allows more); a response with more is a 502.
pub const MAX_HEADERS: usize = 96;

/// Most headers a response head may have: Pingora's limit (pingora-core's
/// `http::v1::common::MAX_HEADERS`, not exported), so a response one engine passes the
/// other passes too.
pub const MAX_RESPONSE_HEADERS: usize = 256;
/// Room for what the edge adds to a response head beyond its own values (header names,
/// `connection: close`), reserved with the head.
const STAMP_ROOM: usize = 128;

/// httparse's header slots, left uninitialised: zeroing 96 of them (3 KiB) for every head
/// showed in the profile; httparse only reads the slots it has written.
type Slots<'b, const N: usize = MAX_HEADERS> = [MaybeUninit<httparse::Header<'b>>; N];

/// A request the fast path will proxy: HTTP/1.1, origin-form, no body, no upgrade.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan<'a> {
    /// Length of the head in the buffer.
    pub head_len: usize,
    pub method: &'a str,
    /// The Host header as sent.
    pub host: &'a str,
    /// The client's X-Forwarded-For, when it sent one (as sent: [`rules::forwarded_for`]
    /// decides what of it goes on).
    pub xff: Option<&'a [u8]>,
    /// The client's Via, when it sent one (the edge's own entry in it is a loop:
    /// [`rules::looped`]).
    pub via: Option<&'a [u8]>,
    /// The client asked to close the connection after this response.
    pub close: bool,
    pub has_origin: bool,
    /// The request target (origin-form: path and query).
    pub target: &'a str,
    /// What `xipgate.access` looks at (when rules exist): `Accept`, `Authorization`,
    /// whether `X-Requested-With` was sent, and the `Cookie` header (one at most).
    pub accept: Option<&'a [u8]>,
    pub authorization: Option<&'a [u8]>,
    pub x_requested_with: bool,
    pub cookie: Option<&'a [u8]>,
    /// The steering keys (`xipgate.balance`): pin, hint and canary header values. The pin
    /// header is not sent upstream; the `Cookie` header is captured for them (and the
    /// sticky cookie taken out of it) when some service reads cookies.
    pub pin: Option<&'a [u8]>,
    pub hint: Option<&'a [u8]>,
    pub canary: Option<&'a [u8]>,
}

/// What the request buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Not a whole head yet.
    Partial,
    /// A request the fast path proxies.
    Take(Plan<'a>),
    /// Anything else (a body, an upgrade, HTTP/1.0 or 2, a malformed head, ...): Pingora's
    /// proxy answers it, with its own checks and error answers.
    Handoff,
}

fn is(name: &str, lower: &str) -> bool {
    name.eq_ignore_ascii_case(lower)
}

/// Appends one `name: value` header line.
fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Decides what to do with the bytes at the start of `buf`, in one pass. When the request
/// is taken, `out` holds the start of the request head for the upstream: the client's
/// request line and headers (Host unchanged) without hop-by-hop and forwarding ones;
/// [`finish_upstream_request`] completes it. Otherwise `out` is left empty.
///
/// `gate`'s identity headers are deleted in every spelling (the edge sets its own), and
/// its session cookie is taken out of `Cookie`, whether rules exist or not; so are
/// `balance`'s pin header and sticky cookie.
pub fn parse_request<'a>(
    buf: &'a [u8],
    out: &mut Vec<u8>,
    gate: &Gate,
    balance: &Balance,
) -> Parsed<'a> {
    out.clear();
    let parsed = parse_request_into(buf, out, gate, balance);
    if !matches!(parsed, Parsed::Take(_)) {
        out.clear();
    }
    parsed
}

/// `value` without the cookies `names` lists: `None` when nothing is left.
fn without_cookies<'h>(value: &'h [u8], names: [Option<&str>; 2]) -> Option<Cow<'h, [u8]>> {
    let mut kept = Cow::Borrowed(value);
    for name in names.into_iter().flatten() {
        let next = match cookie::without(&kept, name)? {
            Cow::Borrowed(_) => continue,
            Cow::Owned(o) => o,
        };
        kept = Cow::Owned(next);
    }
    Some(kept)
}

fn parse_request_into<'a>(
    buf: &'a [u8],
    out: &mut Vec<u8>,
    gate: &Gate,
    balance: &Balance,
) -> Parsed<'a> {
    let mut slots: Slots<'a> = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Handoff,
    };
    let (Some(method), Some(path), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Handoff;
    };
    // Anything but a plain origin-form target (a fragment, raw `{|}^`, ...) is left to
    // Pingora's parser, so both engines answer it alike.
    if method == "CONNECT" || !rules::plain_origin_form(path) {
        return Parsed::Handoff;
    }
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut host = None;
    let mut xff = None;
    let mut via = None;
    let mut close = false;
    let mut seen_connection = false;
    let mut has_origin = false;
    let (mut accept, mut authorization, mut cookie_header) = (None, None, None);
    let mut x_requested_with = false;
    let session_cookie = gate.session_cookie().map(|s| s.name.as_str());
    let sticky_cookie = balance.sticky_cookie.as_deref();
    let reads_cookies = session_cookie.is_some() || balance.reads_cookies;
    let (mut pin, mut hint, mut canary) = (None, None, None);
    let named = |n: &str, h: &Option<String>| h.as_deref().is_some_and(|h| is(n, h));
    for h in req.headers.iter() {
        let n = h.name;
        if is(n, "host") {
            if host.is_some() {
                return Parsed::Handoff;
            }
            match std::str::from_utf8(h.value) {
                Ok(v) if !v.contains('@') => host = Some(v),
                _ => return Parsed::Handoff,
            }
        } else if is(n, "content-length") {
            if h.value != b"0" {
                return Parsed::Handoff;
            }
        } else if is(n, "transfer-encoding") || is(n, "upgrade") || is(n, "expect") || is(n, "te") {
            return Parsed::Handoff;
        } else if is(n, "connection") {
            // Two Connection headers: Pingora's path goes by the first; leave it to that.
            if seen_connection {
                return Parsed::Handoff;
            }
            seen_connection = true;
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !token.eq_ignore_ascii_case(b"keep-alive") && !token.is_empty() {
                    // Other hop-by-hop headers named in Connection: Pingora handles them.
                    return Parsed::Handoff;
                }
            }
        } else if is(n, "x-forwarded-for") {
            // More than one is rare enough to leave to Pingora's path (which joins them
            // with the same rule, `rules::forwarded_for`).
            if xff.is_some() {
                return Parsed::Handoff;
            }
            xff = Some(h.value);
        } else if is(n, "via") {
            // As for X-Forwarded-For: Pingora's path joins several.
            if via.is_some() {
                return Parsed::Handoff;
            }
            via = Some(h.value);
        } else if is(n, "origin") {
            has_origin = true;
        } else if is(n, "accept") {
            accept.get_or_insert(h.value);
        } else if is(n, "authorization") {
            authorization.get_or_insert(h.value);
        } else if is(n, "x-requested-with") {
            x_requested_with = true;
        } else if is(n, "cookie") {
            if reads_cookies {
                // Several Cookie headers (HTTP/1.1 clients send one): Pingora's path.
                if cookie_header.is_some() {
                    return Parsed::Handoff;
                }
                cookie_header = Some(h.value);
                if let Some(kept) = without_cookies(h.value, [session_cookie, sticky_cookie]) {
                    put_header(out, n.as_bytes(), &kept);
                }
                continue;
            }
        } else if gate.is_identity_header(n) {
            continue;
        } else if named(n, &balance.pin_header) {
            pin.get_or_insert(h.value);
            continue;
        } else if named(n, &balance.hint_header) {
            hint.get_or_insert(h.value);
        } else if named(n, &balance.canary_header) {
            canary.get_or_insert(h.value);
        }
        if !rules::dropped_upstream(n) {
            put_header(out, n.as_bytes(), h.value);
        }
    }
    match host {
        Some(host) => Parsed::Take(Plan {
            head_len,
            method,
            host,
            xff,
            via,
            close,
            has_origin,
            target: path,
            accept,
            authorization,
            x_requested_with,
            cookie: cookie_header,
            pin,
            hint,
            canary,
        }),
        None => Parsed::Handoff,
    }
}

/// The request line of the head at the start of `buf`, as the access log shows it:
/// `METHOD target` without the version, as the Pingora path logs it. Empty lines before
/// the request (RFC 9112 §2.2 lets a server skip them, and httparse does) are skipped.
pub fn logged_request_line(buf: &[u8]) -> String {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line = &buf[start..];
    let end = line
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(line.len());
    let line = String::from_utf8_lossy(&line[..end]);
    line.rsplit_once(' ')
        .map_or(line.to_string(), |(l, _)| l.to_string())
}

/// Where the request came from, for the X-Forwarded-* headers.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded<'a> {
    /// The client's address, as text (formatted once per connection, not per request).
    pub client: Option<&'a str>,
    /// The client's X-Forwarded-For.
    pub prev: Option<&'a [u8]>,
    /// The normalised host.
    pub host: &'a str,
    /// The port the client connected to, as text.
    pub port: Option<&'a str>,
    /// The client connection is TLS.
    pub tls: bool,
    /// The client's Via.
    pub via: Option<&'a [u8]>,
    /// The edge's own Via entry ([`rules::pseudonym`]).
    pub pseudonym: &'a str,
    /// Who asked, as `xipgate.access` decided, and the headers that say so.
    pub identity: Option<(&'a [String; 3], &'a Identity)>,
    /// The identity as a JWT the edge signed: header name and token.
    pub signed: Option<(&'a str, &'a str)>,
}

/// Completes the upstream request head [`parse_request`] started: X-Forwarded-For and Via
/// extended with the client and the edge, X-Forwarded-Proto/Host/Port set, as the Pingora
/// path does.
pub fn finish_upstream_request(fwd: &Forwarded<'_>, out: &mut Vec<u8>) {
    if let Some(ip) = fwd.client {
        out.extend_from_slice(b"x-forwarded-for: ");
        rules::forwarded_for_into(out, fwd.prev, ip);
        out.extend_from_slice(b"\r\n");
    }
    put_header(
        out,
        b"x-forwarded-proto",
        rules::forwarded_proto(fwd.tls).as_bytes(),
    );
    put_header(out, b"x-forwarded-host", fwd.host.as_bytes());
    if let Some(port) = fwd.port {
        put_header(out, b"x-forwarded-port", port.as_bytes());
    }
    if let Some((names, who)) = fwd.identity {
        for (name, value) in names.iter().zip(guard::identity_values(who)) {
            if let Some(v) = value {
                put_header(out, name.as_bytes(), v.as_bytes());
            }
        }
    }
    if let Some((name, token)) = fwd.signed {
        put_header(out, name.as_bytes(), token.as_bytes());
    }
    out.extend_from_slice(b"via: ");
    // The fast path takes HTTP/1.1 requests only.
    rules::via_into(out, fwd.via, "1.1", fwd.pseudonym);
    out.extend_from_slice(b"\r\n\r\n");
}

/// How the body of a response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Read until the upstream closes; the client connection closes after it.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub head_len: usize,
    pub status: u16,
    pub framing: Framing,
    /// The upstream connection may be reused after the body.
    pub reusable: bool,
}

/// Why a response head cannot be passed on.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("the response head is malformed ({0})")]
    Malformed(&'static str),
    #[error("the response has conflicting Content-Length headers")]
    Length,
    /// `rules::transfer_coding_chunked` refused it.
    #[error("the response's Transfer-Encoding does not end in chunked")]
    TransferCoding,
}

/// What the edge adds to a response head for the client.
#[derive(Debug, Clone, Copy)]
pub struct Stamp<'a> {
    /// X-Served-By (left out when it is not a valid header value).
    pub served_by: &'a str,
    /// X-Xipgate-Instance-Status, for an instance host whose instance is not UP.
    pub instance_status: Option<&'a str>,
    /// The client connection closes after this response.
    pub close: bool,
    /// The edge's session cookie: a backend's `Set-Cookie` of it is dropped.
    pub session_cookie: Option<&'a str>,
    /// The sticky cookie the edge sets (`Set-Cookie` value).
    pub set_cookie: Option<&'a str>,
}

/// Parses the head of the upstream's response and, in the same pass, writes the head for
/// the client into `out`: the upstream's status and headers without hop-by-hop ones, the
/// [`Stamp`], and `Connection: close` when the connection ends after this response (asked
/// for, or a body that ends with the upstream's close). `Ok(None)`: not complete yet.
pub fn parse_response<'b>(
    buf: &'b [u8],
    head_request: bool,
    stamp: &Stamp<'_>,
    out: &mut Vec<u8>,
) -> Result<Option<ResponseHead>, HeadError> {
    out.clear();
    let mut slots: Slots<'b, MAX_RESPONSE_HEADERS> =
        [const { MaybeUninit::uninit() }; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    // Pingora's own response parser settings (pingora-core's v1 client), so a head one
    // engine reads the other reads too.
    let mut config = httparse::ParserConfig::default();
    config.allow_spaces_after_header_name_in_responses(true);
    config.allow_obsolete_multiline_headers_in_responses(true);
    let head_len = match config.parse_response_with_uninit_headers(&mut resp, buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HeadError::Malformed(httparse_reason(e))),
    };
    let status = resp.code.unwrap_or(0);
    if status < 100 {
        // httparse takes any three digits; Pingora's engine refuses 000-099 (no such
        // status exists), so this one does too.
        return Err(HeadError::Malformed("bad status"));
    }
    // One allocation for the whole head on a new connection's empty buffer, not one
    // growth per header (~1,200 instructions a response, bench/cost.sh's conn row).
    out.reserve(
        head_len + STAMP_ROOM + stamp.served_by.len() + stamp.set_cookie.map_or(0, str::len),
    );
    // httparse gives a three-digit code; written without `fmt`, which showed in the profile.
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&[
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut keep_alive = resp.version == Some(1);
    let mut close = false;
    let mut length: Option<u64> = None;
    let mut transfer_coding = None;
    // RFC 9112 §6.3: with Transfer-Encoding, Content-Length is ignored and a proxy MUST
    // remove it, or a Content-Length-first reader behind the edge reads the chunked body
    // as the next response.
    let has_te = resp.headers.iter().any(|h| is(h.name, "transfer-encoding"));
    for h in resp.headers.iter() {
        if is(h.name, "content-length") {
            let n = rules::content_length(h.value).ok_or(HeadError::Length)?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::Length);
            }
            length = Some(n);
            if has_te {
                continue;
            }
        } else if is(h.name, "transfer-encoding") {
            // The last header's last coding decides (`rules::transfer_coding_chunked`).
            transfer_coding = Some(h.value);
        } else if is(h.name, "connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        }
        if is(h.name, "set-cookie")
            && stamp
                .session_cookie
                .is_some_and(|name| cookie::sets(h.value, name))
        {
            continue;
        }
        if !rules::dropped_downstream(h.name) {
            if h.value.iter().any(|&b| b == b'\r' || b == b'\n') {
                // An obs-fold (RFC 9112 §5.2): passed on unfolded, the line break and the
                // whitespace around it one space, as Pingora's path does.
                put_header(out, h.name.as_bytes(), &unfold(h.value));
            } else {
                put_header(out, h.name.as_bytes(), h.value);
            }
        }
    }
    // A close anywhere wins over a keep-alive anywhere (RFC 9112 §9.6): the backend
    // will close, and a reused connection would fail the next request.
    let mut reusable = keep_alive && !close;
    let chunked = transfer_coding.map(|v| rules::transfer_coding_chunked([v]));
    if chunked == Some(false) && !(100..200).contains(&status) {
        return Err(HeadError::TransferCoding);
    }
    let framing = if head_request || status == 204 || status == 304 || (100..200).contains(&status)
    {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            // Only for an interim head, which has no body: refused above otherwise.
            (Some(false), _) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        }
    };
    if framing == Framing::UntilClose || chunked.is_some() && length.is_some() {
        // Both framings at once is a smuggling signal: never reuse that connection.
        reusable = false;
    }
    if rules::header_safe(stamp.served_by.as_bytes()) {
        put_header(out, b"x-served-by", stamp.served_by.as_bytes());
    }
    if let Some(s) = stamp.instance_status {
        put_header(out, b"x-xipgate-instance-status", s.as_bytes());
    }
    if let (Some(c), false) = (stamp.set_cookie, interim_status(status)) {
        put_header(out, b"set-cookie", c.as_bytes());
    }
    // An interim (1xx) head says nothing about the connection; the final one does.
    let interim = (100..200).contains(&status);
    if !interim && (stamp.close || framing == Framing::UntilClose) {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(ResponseHead {
        head_len,
        status,
        framing,
        reusable,
    }))
}

/// A folded header value on one line: each line break with the whitespace around it
/// becomes one space.
fn unfold(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        if value[i] == b'\r' || value[i] == b'\n' {
            while out.last().is_some_and(|&b| b == b' ' || b == b'\t') {
                out.pop();
            }
            while i < value.len() && matches!(value[i], b'\r' | b'\n' | b' ' | b'\t') {
                i += 1;
            }
            out.push(b' ');
        } else {
            out.push(value[i]);
            i += 1;
        }
    }
    out
}

fn interim_status(status: u16) -> bool {
    (100..200).contains(&status)
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "not HTTP/1.x",
        httparse::Error::Status => "bad status",
        _ => "bad header",
    }
}

#[cfg(test)]
mod tests;
