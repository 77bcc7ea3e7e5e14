//! Answers the edge gives itself: errors with a message naming the problem, the CORS
//! preflight, and console pages on the proxy listener.

use bytes::Bytes;
use http::header::HeaderValue;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use crate::config::CorsConfig;

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
    let mut header = ResponseHeader::build(answer.status, Some(answer.headers.len() + 3))?;
    header.insert_header("content-type", answer.content_type)?;
    header.insert_header("content-length", answer.body.len().to_string())?;
    header.insert_header("cache-control", "no-store")?;
    for (k, v) in answer.headers {
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

/// The status to answer for a failed proxy attempt (0: the client is gone, say nothing).
pub fn error_status(e: &Error) -> u16 {
    use ErrorType::*;
    match e.etype() {
        HTTPStatus(code) => *code,
        ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => {
            match e.esource() {
                ErrorSource::Downstream => 408,
                _ => 504,
            }
        }
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                WriteError | ReadError | ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}
