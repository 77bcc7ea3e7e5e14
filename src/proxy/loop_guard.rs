//! The edge never serves a request that has been through it already: a registered address
//! can lead back to the edge (its own pod address, a NAT rule, a sidecar), and the request
//! would then loop, or reach the console through the public listener. The rule is
//! [`rules::looped`] over the Via header the edge adds to every request it proxies; this
//! is where the Pingora path and the console's own listener apply it (the fast path hands
//! such a request to the Pingora path).

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use pingora_http::RequestHeader;

use super::rules;
use crate::answer::Answer;
use crate::console::{Console, ConsoleApp};

/// The answer to a request carrying the edge's own Via entry: 508 Loop Detected.
pub fn loop_answer(req: &RequestHeader) -> Option<Answer> {
    let via = req.headers.get_all(http::header::VIA).iter();
    rules::looped(via.map(|v| v.as_bytes()), rules::pseudonym())
        .then(|| Answer::text(rules::LOOP_STATUS, rules::LOOP_MESSAGE))
}

/// The console on its own listener, with the loop rule in front: an instance registered
/// at an address that reaches the console listener gets 508, never the console's data.
pub struct ConsoleListener(ConsoleApp);

impl ConsoleListener {
    pub fn new(console: Arc<Console>) -> Self {
        ConsoleListener(ConsoleApp(console))
    }
}

#[async_trait]
impl ServeHttp for ConsoleListener {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        match loop_answer(session.req_header()) {
            Some(answer) => answer.into_response(session.req_header().method == http::Method::HEAD),
            None => self.0.response(session).await,
        }
    }
}
