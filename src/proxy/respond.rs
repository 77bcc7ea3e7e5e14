//! Writing the edge's own [`Answer`]s through Pingora's session, the answers for failed
//! tries, and CORS on proxied responses.

use http::header::HeaderValue;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use crate::answer::{cors_decide, Answer, Cors};
use crate::config::CorsConfig;
use crate::routes::Target;

use super::upstream_cert::CertProblem;

/// Adds CORS headers to a proxied response, replacing whatever the backend sent so the
/// pair stays valid; for an origin the edge refuses, removes the backend's own
/// `Access-Control-Allow-*` headers (a backend that echoes any origin with credentials
/// would otherwise reopen what the edge closed).
pub fn apply_cors(
    resp: &mut ResponseHeader,
    cors: &CorsConfig,
    origin: Option<&HeaderValue>,
) -> Result<()> {
    match cors_decide(cors, origin) {
        Cors::NoOrigin => {}
        Cors::Allowed(headers) => {
            for (k, v) in headers {
                if k == "vary" {
                    resp.append_header(k, v)?;
                } else {
                    resp.insert_header(k, v)?;
                }
            }
        }
        Cors::Refused => {
            let backend_cors: Vec<String> = resp
                .headers
                .keys()
                .map(|k| k.as_str())
                .filter(|k| k.starts_with("access-control-allow-"))
                .map(str::to_string)
                .collect();
            for k in backend_cors {
                resp.remove_header(&k);
            }
            resp.append_header("vary", "Origin")?;
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
    explained_failure(code, etype, context, target, tries, None)
}

/// The answer for an instance whose certificate failed verification (Pingora's
/// `InvalidCert`): with `problem`, what was wrong and the setting that changes it.
pub fn invalid_cert_answer(
    code: u16,
    problem: Option<&CertProblem>,
    target: Option<&Target>,
    tries: usize,
) -> Answer {
    let detail = problem.map_or_else(
        || ": see xipgate.upstream.tls.ca_file, server_name and verify".to_string(),
        |p| format!(": {}", p.explain()),
    );
    explained_failure(
        code,
        &ErrorType::InvalidCert,
        None,
        target,
        tries,
        Some(detail),
    )
}

/// [`failure_answer`], with `detail` after the words for what the instance did.
fn explained_failure(
    code: u16,
    etype: &ErrorType,
    context: Option<String>,
    target: Option<&Target>,
    tries: usize,
    detail: Option<String>,
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
        InvalidCert => "presented a certificate that failed verification",
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
    let detail = detail.unwrap_or_default();
    let message =
        context.unwrap_or_else(|| format!("{who} {what}{detail} ({}){tries}", etype.as_str()));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/reliability.md's table of error words is what `failure_answer` says.
    #[test]
    fn the_documented_error_words_are_the_answers() {
        use ErrorType::*;
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/reliability.md"))
                .expect("docs/reliability.md");
        let rows: Vec<(String, u16)> = doc
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let words = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                Some((words.to_string(), cells.get(2)?.parse().ok()?))
            })
            .collect();
        assert!(rows.len() >= 8, "{rows:?}");
        let answers: Vec<(String, u16)> = [
            ConnectRefused,
            ConnectNoRoute,
            ReadError,
            ConnectionClosed,
            ConnectTimedout,
            ReadTimedout,
            InvalidHTTPHeader,
            InvalidCert,
            H1Error,
        ]
        .iter()
        .map(|e| {
            let code = upstream_error_status(e);
            let body = failure_answer(code, e, None, None, 1).body;
            (String::from_utf8_lossy(&body).into_owned(), code)
        })
        .chain(
            [
                crate::proxy::rules::UNASKED_UPGRADE,
                crate::proxy::rules::UNCHUNKED_TRANSFER_CODING,
            ]
            .map(|why| {
                let answer = failure_answer(502, &HTTPStatus(502), Some(why.to_string()), None, 1);
                (String::from_utf8_lossy(&answer.body).into_owned(), 502)
            }),
        )
        .collect();
        // Every documented row is said by some answer, with its status...
        for (words, status) in &rows {
            assert!(
                answers
                    .iter()
                    .any(|(b, s)| b.contains(words.as_str()) && s == status),
                "docs/reliability.md: `{words}` ({status}) is no answer's: {answers:?}"
            );
        }
        // ...and every answer is documented.
        for (body, status) in &answers {
            assert!(
                rows.iter()
                    .any(|(w, s)| body.contains(w.as_str()) && s == status),
                "{body:?} ({status}) is not in docs/reliability.md's table"
            );
        }
    }
}
