//! Which host a request is for, from its Host header or absolute-form URI.
//!
//! Pure over the request header so the hostile-request table can test it without sockets.

use http::header::HOST;
use pingora_http::RequestHeader;

use crate::names::{printable, HostError};

/// The raw host (port included) the request names. Two Host headers, or an absolute-form
/// URI whose authority differs from the Host header, are refused: a proxy in front of us
/// could have routed on either one.
pub fn request_host(req: &RequestHeader) -> Result<String, HostError> {
    let mut hosts = req.headers.get_all(HOST).iter();
    let header = hosts.next();
    if hosts.next().is_some() {
        return Err(HostError::Invalid("more than one Host header".into()));
    }
    let header = match header {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| HostError::Invalid("Host header is not visible ASCII".into()))?
                .to_string(),
        ),
        None => None,
    };
    if let Some(auth) = req.uri.authority() {
        if auth.as_str().contains('@') {
            return Err(HostError::Invalid("userinfo (@) in the request URI".into()));
        }
        if let Some(h) = &header {
            if !h.eq_ignore_ascii_case(auth.as_str()) {
                return Err(HostError::Invalid(format!(
                    "the URI names '{}' but the Host header names '{}'",
                    printable(auth.as_str()),
                    printable(h)
                )));
            }
        }
        return Ok(auth.as_str().to_string());
    }
    match header {
        Some(h) if h.contains('@') => {
            Err(HostError::Invalid("userinfo (@) in the Host header".into()))
        }
        Some(h) if !h.trim().is_empty() => Ok(h),
        _ => Err(HostError::Missing),
    }
}
