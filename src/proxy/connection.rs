//! One client connection, request by request: the fast path reads every head (and proxies
//! the requests it takes); each request it does not take is served by Pingora's engine,
//! and the connection then comes back for its next head. HTTP/2 (ALPN h2, or the h2c
//! preface on a plain connection) is Pingora's from the start.
//!
//! Why the loop is here and not Pingora's: Pingora's HTTP/1 loop reads the next head
//! itself, with a deadline per read only, and decides h2c by waiting for 24 bytes with no
//! deadline. Reading every head in one place gives both engines the same limits
//! (`downstream.header_timeout`, keep-alive, graceful shutdown), and each request on
//! Pingora's engine gets the client write deadline (`upstream.write_timeout`, as the fast
//! path's writes have) through its session.

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;

use super::fast::{FastPath, Served};

/// The proxy service's application: the fast path first, Pingora's proxy for the rest.
pub struct ProxyApp<A> {
    fast: FastPath,
    inner: Arc<A>,
}

impl<A> ProxyApp<A> {
    /// `inner` must have h2c on: a stream handed to it as HTTP/2 starts with the preface.
    pub fn new(fast: FastPath, inner: A) -> Self {
        ProxyApp {
            fast,
            inner: Arc::new(inner),
        }
    }
}

#[async_trait]
impl<A> ServerApp for ProxyApp<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let settings = self.fast.settings();
        let mut fresh = true;
        loop {
            stream = match self.fast.serve(stream, shutdown, fresh).await {
                Served::Closed => return None,
                // Pingora's HTTP/2: with h2c on, it finds the preface put back.
                Served::H2(s) => return self.inner.process_new(s, shutdown).await,
                Served::Handoff(s) => s,
            };
            fresh = false;
            let mut session = ServerSession::new_http1(stream);
            // As Pingora's own loop: no keep-alive once a graceful shutdown has begun (the
            // proxy's request_filter sets the configured one otherwise).
            session.set_keepalive((!*shutdown.borrow()).then_some(settings.keepalive_secs));
            session.set_write_timeout(Some(settings.write_timeout));
            let reused = self.inner.process_new_http(session, shutdown).await?;
            // The keep-alive settings it returns are the fast path's to apply: it waits
            // for the next head.
            stream = reused.consume().0;
        }
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
