//! Answers the edge gives itself: errors with a message naming the problem, the CORS
//! preflight, and console pages on the proxy listener.

use bytes::Bytes;
use http::header::HeaderValue;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use crate::config::CorsConfig;
use crate::routes::Target;

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
            for (k, v) in cors_headers(cors, origin) {
                self.headers.push((k, v));
            }
        }
        self
    }
}

/// `Access-Control-Allow-Origin: *` may not be combined with credentials (the older
/// design did, and browsers reject it): with credentials the request's Origin is echoed.
fn cors_headers(
    cors: &CorsConfig,
    origin: Option<&HeaderValue>,
) -> Vec<(&'static str, HeaderValue)> {
    let Some(origin) = origin else {
        return Vec::new();
    };
    if cors.allow_credentials {
        vec![
            ("access-control-allow-origin", origin.clone()),
            (
                "access-control-allow-credentials",
                HeaderValue::from_static("true"),
            ),
            ("vary", HeaderValue::from_static("Origin")),
        ]
    } else {
        vec![("access-control-allow-origin", HeaderValue::from_static("*"))]
    }
}

/// Adds CORS headers to a proxied response, replacing whatever the backend sent so the
/// pair stays valid.
pub fn apply_cors(
    resp: &mut ResponseHeader,
    cors: &CorsConfig,
    origin: Option<&HeaderValue>,
) -> Result<()> {
    for (k, v) in cors_headers(cors, origin) {
        if k == "vary" {
            resp.append_header(k, v)?;
        } else {
            resp.insert_header(k, v)?;
        }
    }
    Ok(())
}

pub async fn respond(session: &mut Session, answer: Answer) -> Result<()> {
    let fields = answer.fields();
    let mut header = ResponseHeader::build(answer.status, Some(fields.len()))?;
    for (k, v) in fields {
        header.append_header(k, v)?;
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(header), head_only || answer.body.is_empty())
        .await?;
    if !head_only && !answer.body.is_empty() {
        session.write_response_body(Some(answer.body), true).await?;
    }
    Ok(())
}

/// The answer for a request whose last try failed: the status for the error type, a
/// message naming the instance and what it did, and X-Served-By. `context` replaces the
/// message (the edge's own refusals carry their explanation).
pub fn failure_answer(
    code: u16,
    etype: &ErrorType,
    context: Option<String>,
    target: Option<&Target>,
    tries: usize,
) -> Answer {
    use ErrorType::*;
    let who = match target {
        Some(t) => format!(
            "instance '{}' ({})",
            t.instance.instance_id,
            t.upstream
                .as_ref()
                .map(|a| a.to_string())
                .unwrap_or_default()
        ),
        None => "the upstream".to_string(),
    };
    // What went wrong, in words; the Pingora error type follows in parentheses.
    let what = match etype {
        ConnectRefused => "refused the connection",
        ConnectTimedout => "did not accept the connection in time",
        ReadTimedout | WriteTimedout => "did not answer in time",
        ConnectionClosed => "closed the connection without answering",
        ReadError | WriteError => "broke the connection",
        ConnectNoRoute | ConnectError => "could not be reached",
        InvalidHTTPHeader => "sent a response that is not valid HTTP/1.1",
        _ => match code {
            504 => "did not answer in time",
            502 => "failed",
            _ => "could not be reached",
        },
    };
    let tries = match tries {
        0 | 1 => String::new(),
        n => format!("; {n} tries"),
    };
    let message = context.unwrap_or_else(|| format!("{who} {what} ({}){tries}", etype.as_str()));
    let mut answer = Answer::text(code, message);
    if let Some(t) = target {
        if let Ok(v) = HeaderValue::from_str(&t.instance.instance_id) {
            answer.headers.push(("x-served-by", v));
        }
    }
    answer
}

/// The status for a failed upstream try of the fast path (all its errors are upstream ones).
pub fn upstream_error_status(etype: &ErrorType) -> u16 {
    match etype {
        ErrorType::HTTPStatus(code) => *code,
        ErrorType::ConnectTimedout
        | ErrorType::ReadTimedout
        | ErrorType::WriteTimedout
        | ErrorType::TLSHandshakeTimedout => 504,
        _ => 502,
    }
}

/// The status to answer for a failed proxy attempt (0: the client is gone, say nothing).
/// Upstream failures get [`upstream_error_status`], the fast path's one rule.
pub fn error_status(e: &Error) -> u16 {
    use ErrorType::*;
    match (e.esource(), e.etype()) {
        (_, HTTPStatus(code)) => *code,
        (ErrorSource::Upstream, etype) => upstream_error_status(etype),
        (
            ErrorSource::Downstream,
            ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout,
        ) => 408,
        (ErrorSource::Downstream, WriteError | ReadError | ConnectionClosed) => 0,
        (ErrorSource::Downstream, _) => 400,
        (_, ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout) => 504,
        (ErrorSource::Internal | ErrorSource::Unset, _) => 500,
    }
}
