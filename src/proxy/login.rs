//! The login host (`login.<domain>`, with `xipgate.access.login`) on Pingora's engine:
//! answered before route resolution, like the console host, so it wins over a service
//! of the same label. The fast path hands it here (`fast`).

use http::header::{HeaderValue, COOKIE};
use pingora_http::RequestHeader;

use crate::access::{Login, LoginRequest, Reply};
use crate::answer::Answer;
use crate::names;

use super::request_host;

/// The login host (for the access log) and its answer to `req`, or `None` when `req` is
/// for another host.
pub async fn login_answer(
    login: &Login,
    req: &RequestHeader,
    tls: bool,
) -> Option<(String, Answer)> {
    let raw = request_host(req).ok()?;
    let host = names::normalize_host(&raw).ok()?;
    login.domain_of(&host)?;
    let port = raw
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok());
    let request = LoginRequest {
        method: req.method.as_str(),
        host: &host,
        port,
        path: req.uri.path(),
        query: req.uri.query().unwrap_or(""),
        tls,
        cookies: req
            .headers
            .get_all(COOKIE)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect(),
    };
    let answer = answer(login.handle(&request).await);
    Some((host, answer))
}

fn answer(reply: Reply) -> Answer {
    let mut answer = Answer::text(reply.status, "").with_type(reply.content_type);
    answer.body = reply.body.into();
    for (name, value) in reply.headers {
        match HeaderValue::from_str(&value) {
            Ok(v) => answer.headers.push((name, v)),
            Err(_) => return Answer::text(500, format!("the login made an invalid {name} header")),
        }
    }
    answer
}
