//! Bounded HTTP GET for DID documents: one deadline for the whole exchange, a
//! cap on the body, no redirects. HTTPS uses the Mozilla root set.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{HeaderValue, ACCEPT};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Real DID documents are a few KiB.
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("bad document URL {0:?}")]
    Url(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Transport(String),
    #[error("document larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

pub struct Fetcher {
    /// A TLS setup failure is reported on use, so building a `ServiceAuth`
    /// cannot fail.
    client: Result<HttpsClient, String>,
    timeout: Duration,
}

impl Fetcher {
    pub fn new(timeout: Duration) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map(|builder| {
                let connector = builder.https_or_http().enable_http1().build();
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(30))
                    .build(connector)
            })
            .map_err(|e| e.to_string());
        Fetcher { client, timeout }
    }

    /// The body of a 200 answer to `GET url`.
    pub async fn get(&self, url: &str) -> Result<Bytes, FetchError> {
        let client = self
            .client
            .as_ref()
            .map_err(|e| FetchError::Tls(e.clone()))?;
        let uri: Uri = url.parse().map_err(|_| FetchError::Url(url.to_owned()))?;
        let request = Request::get(uri)
            .header(
                ACCEPT,
                HeaderValue::from_static("application/did+ld+json, application/json"),
            )
            .body(Empty::new())
            .map_err(|_| FetchError::Url(url.to_owned()))?;
        let exchange = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| FetchError::Transport(error_chain(&e)))?;
            if response.status() != StatusCode::OK {
                return Err(FetchError::Status(response.status().as_u16()));
            }
            let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        FetchError::TooLarge
                    } else {
                        FetchError::Transport(e.to_string())
                    }
                })?;
            Ok(body.to_bytes())
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| FetchError::Timeout(self.timeout))?
    }
}

/// hyper's top-level error says little ("client error (Connect)"); the cause
/// says what happened.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
