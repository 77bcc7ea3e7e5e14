//! An answer the edge gives itself (errors naming the problem, the CORS preflight, console
//! pages and the API), as a value: status, headers, body.
//!
//! Its own module because both the proxy and the console make answers and neither should
//! depend on the other for it; the proxy writes them through Pingora's session
//! (`proxy::respond`) or as bytes (the fast path), the console through its `ServeHttp`.

use bytes::Bytes;
use http::header::HeaderValue;

use crate::config::CorsConfig;

mod cors;
pub(crate) use cors::{decide as cors_decide, Cors};

/// A complete response: status, extra headers, body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, HeaderValue)>,
    pub body: Bytes,
}

impl Answer {
    /// A plain-text answer; the message is prefixed with `xipgate:` so a user can tell the
    /// edge's own answers from a backend's.
    pub fn text(status: u16, message: impl AsRef<str>) -> Self {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: Bytes::from(format!("xipgate: {}\n", message.as_ref())),
        }
    }

    pub fn empty(status: u16) -> Self {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn bytes(status: u16, content_type: &'static str, body: Bytes) -> Self {
        Answer {
            status,
            content_type,
            headers: Vec::new(),
            body,
        }
    }

    pub fn with_type(mut self, content_type: &'static str) -> Self {
        self.content_type = content_type;
        self
    }

    pub fn header(mut self, name: &'static str, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// As an `http::Response`, for Pingora's `ServeHttp` on the console listener.
    pub fn into_response(self, head_only: bool) -> http::Response<Vec<u8>> {
        let mut builder = http::Response::builder()
            .status(self.status)
            .header("content-type", self.content_type)
            .header("content-length", self.body.len())
            .header("cache-control", "no-store");
        for (k, v) in self.headers {
            builder = builder.header(k, v);
        }
        let body = if head_only {
            Vec::new()
        } else {
            self.body.to_vec()
        };
        builder.body(body).unwrap_or_else(|_| {
            let mut r = http::Response::new(b"xipgate: could not build the response\n".to_vec());
            *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
    }

    pub fn retry_after(mut self, secs: u32) -> Self {
        self.headers.push(("retry-after", HeaderValue::from(secs)));
        self
    }

    /// Every header of the answer, in order: what both engines write (Pingora's path
    /// through its session, the fast path as bytes), so an answer reads the same on both.
    pub fn fields(&self) -> Vec<(&'static str, HeaderValue)> {
        let mut out = Vec::with_capacity(self.headers.len() + 3);
        out.push(("content-type", HeaderValue::from_static(self.content_type)));
        out.push(("content-length", HeaderValue::from(self.body.len())));
        out.push(("cache-control", HeaderValue::from_static("no-store")));
        out.extend(self.headers.iter().cloned());
        out
    }

    /// The answer as HTTP/1.1 bytes, closing the connection (the fast path's failures).
    pub fn to_http1(&self, head_only: bool) -> Vec<u8> {
        let reason = http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let mut out = format!("HTTP/1.1 {} {reason}\r\n", self.status).into_bytes();
        for (k, v) in self.fields() {
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"connection: close\r\n\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }

    pub fn cors(mut self, cors: &CorsConfig, origin: Option<&HeaderValue>) -> Self {
        if cors.enabled {
            match cors::decide(cors, origin) {
                Cors::Allowed(headers) => self.headers.extend(headers),
                Cors::Refused => self
                    .headers
                    .push(("vary", HeaderValue::from_static("Origin"))),
                Cors::NoOrigin => {}
            }
        }
        self
    }
}
