//! instant-acme's HTTP client, with timeouts. Its default client has none: a CA that
//! accepts the connection and never answers holds the order, and the store's lock, forever.
//! This one is reqwest (the Eureka client's, rustls on ring) with a bound on connecting and
//! on each whole request, body included.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body::Body as _;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

/// Connecting to the CA (TCP and TLS) takes at most this, or the request timeout if shorter.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read the CA {path}: {source}")]
    Ca {
        path: String,
        source: std::io::Error,
    },
    #[error("the CA {path} is not a PEM certificate: {source}")]
    CaPem {
        path: String,
        source: reqwest::Error,
    },
    #[error("building the ACME HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

pub struct TimedClient(reqwest::Client);

impl TimedClient {
    /// Trusts the system's roots, or only `ca` when given (a test CA such as pebble's).
    pub fn new(ca: Option<&Path>, request_timeout: Duration) -> Result<Self, ClientError> {
        let mut b = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(request_timeout))
            .https_only(true);
        if let Some(path) = ca {
            let pem = std::fs::read(path).map_err(|source| ClientError::Ca {
                path: path.display().to_string(),
                source,
            })?;
            let cert =
                reqwest::Certificate::from_pem(&pem).map_err(|source| ClientError::CaPem {
                    path: path.display().to_string(),
                    source,
                })?;
            b = b.tls_built_in_root_certs(false).add_root_certificate(cert);
        }
        Ok(TimedClient(b.build()?))
    }
}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> instant_acme::Error {
    instant_acme::Error::Other(Box::new(e))
}

impl HttpClient for TimedClient {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.0.clone();
        Box::pin(async move {
            let (parts, mut body) = req.into_parts();
            let mut bytes = Vec::new();
            while let Some(frame) =
                futures::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            {
                // The body is in memory already: its frames cannot fail (Infallible).
                let frame = match frame {
                    Ok(f) => f,
                    Err(never) => match never {},
                };
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            let req = reqwest::Request::try_from(Request::from_parts(parts, Bytes::from(bytes)))
                .map_err(other)?;
            let rsp = client.execute(req).await.map_err(other)?;
            let mut head = http::Response::builder()
                .status(rsp.status())
                .version(rsp.version());
            if let Some(h) = head.headers_mut() {
                *h = rsp.headers().clone();
            }
            // Read here, under the request's timeout, rather than later by instant-acme.
            let body = rsp.bytes().await.map_err(other)?;
            let (parts, ()) = head
                .body(())
                .map_err(instant_acme::Error::Http)?
                .into_parts();
            Ok(BytesResponse {
                parts,
                body: Box::new(body),
            })
        })
    }
}
