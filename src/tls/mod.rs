//! TLS at the edge: the certificates served by SNI ([`CertStore`]), the handshake that uses
//! them (HTTP/2 by ALPN, [`Handshake`]), and their reload when files change.
//!
//! Built on Pingora's OpenSSL backend (Cargo.toml says why): OpenSSL pauses the handshake
//! in its certificate callback, Pingora runs [`SniCallbacks::certificate_callback`], which
//! sets the certificate chosen for the client's SNI, and the handshake resumes.

mod cert;
mod store;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::listeners::TlsAccept;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::tls::server::handshake_with_callback;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::tls::error::ErrorStack;
use pingora_core::tls::ssl::{
    select_next_proto, AlpnError, NameType, SslAcceptor, SslAcceptorBuilder, SslContext, SslMethod,
    SslRef,
};
use pingora_core::tls::x509::X509;

pub use cert::{CertError, CertKey};
pub use store::{pick, CertSource, CertStatus, CertStore, Origin};

/// Why the TLS listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS settings: {0}")]
    Settings(String),
    #[error("cannot read the CA bundle {path}: {reason}")]
    CaBundle { path: String, reason: String },
}

/// Sets the certificate for each handshake from the store, as nginx does: by switching the
/// handshake to a context that holds the certificate (`SSL_set_SSL_CTX`), built once per
/// certificate. Setting the leaf, key and chain on each handshake instead
/// (`SSL_use_certificate`, `SSL_use_PrivateKey`, which checks the pair again) cost ~38,000
/// instructions a handshake (bench/cost.sh, issue 27).
pub struct SniCallbacks {
    store: Arc<CertStore>,
    h2: bool,
}

impl SniCallbacks {
    /// The context serving `ck`, built at its first handshake.
    fn context<'a>(&self, ck: &'a CertKey) -> Result<&'a SslContext, ErrorStack> {
        if let Some(ctx) = ck.context.get() {
            return Ok(ctx);
        }
        let mut builder = acceptor_builder(self.h2)?;
        builder.set_certificate(&ck.leaf)?;
        builder.set_private_key(&ck.key)?;
        for c in &ck.chain {
            // The context's chain: a handshake switched to it sends this one.
            builder.add_extra_chain_cert(c.clone())?;
        }
        // Two handshakes may build it at once; the first one kept serves both.
        Ok(ck.context.get_or_init(|| builder.build().into_context()))
    }
}

#[async_trait]
impl TlsAccept for SniCallbacks {
    async fn certificate_callback(&self, ssl: &mut TlsRef) -> () {
        let sni = ssl.servername(NameType::HOST_NAME).map(str::to_string);
        // No certificate set: OpenSSL ends the handshake with an alert.
        let Some(ck) = self.store.lookup(sni.as_deref()) else {
            return;
        };
        if let Err(e) = self.context(&ck).and_then(|ctx| ssl.set_ssl_context(ctx)) {
            log::warn!("tls: cannot use the certificate for {sni:?}: {e}");
        }
    }
}

/// The settings of every handshake, and of every certificate's context a handshake switches
/// to (one function, so the two cannot differ: after the switch OpenSSL takes ALPN from the
/// certificate's context). TLS 1.2 and 1.3 by Mozilla's intermediate profile, as Pingora's
/// `TlsSettings`; OpenSSL reads whole socket buffers into its own record buffer
/// (read-ahead), not a record's 5-byte header and then its body, so the listener needs no
/// read buffer (`app::tcp_listener`: Pingora's default zeroes 64 KiB at every accept).
fn acceptor_builder(h2: bool) -> Result<SslAcceptorBuilder, ErrorStack> {
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())?;
    builder.set_read_ahead(true);
    if h2 {
        // As Pingora's `TlsSettings::enable_h2`: h2 preferred, HTTP/1.1 allowed, and
        // no ALPN answer to a client that offers neither (it falls back to HTTP/1.1).
        builder.set_alpn_select_callback(prefer_h2);
    }
    Ok(builder)
}

/// ALPN protocols offered with `h2`, in the wire format, most preferred first.
const ALPN_H2_H1: &[u8] = b"\x02h2\x08http/1.1";

/// The HTTPS listener's TLS handshake, run as the first step of the connection's
/// application instead of by Pingora's listener: Pingora's listener handshakes before any
/// application sees the connection, with no deadline, so a client could hold any number
/// of connections that never finish one. Here it runs after the per-client limit
/// (`proxy::Limited` wraps this) and within `timeout` (`downstream.header_timeout`).
/// Certificates by SNI, TLS 1.2 and 1.3 (Mozilla's intermediate profile, as Pingora's
/// `TlsSettings`), and HTTP/2 offered by ALPN when `h2`.
pub struct Handshake<A> {
    acceptor: SslAcceptor,
    callbacks: SniCallbacks,
    timeout: Duration,
    inner: Arc<A>,
}

impl<A> Handshake<A> {
    pub fn new(
        store: Arc<CertStore>,
        h2: bool,
        timeout: Duration,
        inner: A,
    ) -> Result<Self, TlsError> {
        let builder = acceptor_builder(h2).map_err(|e| TlsError::Settings(e.to_string()))?;
        Ok(Handshake {
            acceptor: builder.build(),
            callbacks: SniCallbacks { store, h2 },
            timeout,
            inner: Arc::new(inner),
        })
    }
}

fn prefer_h2<'a>(_: &mut SslRef, offered: &'a [u8]) -> Result<&'a [u8], AlpnError> {
    select_next_proto(ALPN_H2_H1, offered).ok_or(AlpnError::NOACK)
}

#[async_trait]
impl<A> ServerApp for Handshake<A>
where
    A: ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // The listener's own stream type, as Pingora's listener handshakes it.
        let Ok(l4) = stream.into_any().downcast::<L4Stream>() else {
            log::warn!("tls: a connection that is not a TCP stream, closed");
            return None;
        };
        let handshake = handshake_with_callback(&self.acceptor, *l4, &self.callbacks);
        let tls = match pingora_timeout::timeout(self.timeout, handshake).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                log::debug!("tls: handshake failed: {e}");
                return None;
            }
            Err(_) => {
                log::debug!(
                    "tls: handshake not done within {:?} (downstream.header_timeout)",
                    self.timeout
                );
                return None;
            }
        };
        self.inner.process_new(Box::new(tls), shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// A PEM bundle of CA certificates, to verify upstream instances with.
pub fn load_ca_bundle(path: &Path) -> Result<Arc<Box<[X509]>>, TlsError> {
    let err = |reason: String| TlsError::CaBundle {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = X509::stack_from_pem(&pem).map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in it".into()));
    }
    Ok(Arc::new(certs.into_boxed_slice()))
}

/// Looks at the certificate files every `interval` and loads the ones that changed.
pub struct Reloader {
    pub store: Arc<CertStore>,
    pub interval: Duration,
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
            let store = self.store.clone();
            // stat and PEM parsing are blocking file work: off the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || store.refresh()).await;
        }
    }
}
