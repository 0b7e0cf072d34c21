//! HTTP GET for XRPC sync calls: one deadline per exchange, a cap on the
//! body, no redirects, and the `ratelimit-*` headers read. HTTPS uses the
//! Mozilla root set.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use skyhose_identity::error_chain;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad URL {0:?}")]
    Url(String),
    #[error("no answer from {url} within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("request to {url} failed: {message}")]
    Transport { url: String, message: String },
    #[error("answer from {url} larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

/// A response: status, the rate-limit headers and the body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// `ratelimit-remaining`, when sent.
    pub remaining: Option<u64>,
    /// `ratelimit-reset` (seconds: a Unix time when large, else a delay),
    /// or `retry-after` (a delay), when sent.
    pub reset: Option<u64>,
    pub body: Bytes,
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

#[derive(Clone)]
pub struct HttpClient {
    client: HttpsClient,
    timeout: Duration,
    max_body: usize,
}

impl HttpClient {
    pub fn new(timeout: Duration, max_body: usize) -> Result<Self, HttpError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| HttpError::Tls(e.to_string()))?;
        let connector = builder.https_or_http().enable_http1().build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(HttpClient {
            client,
            timeout,
            max_body,
        })
    }

    pub async fn get(&self, url: &str) -> Result<Response, HttpError> {
        let uri: Uri = url.parse().map_err(|_| HttpError::Url(url.to_owned()))?;
        let request = Request::get(uri)
            .body(Empty::new())
            .map_err(|_| HttpError::Url(url.to_owned()))?;
        let exchange = async {
            let response =
                self.client
                    .request(request)
                    .await
                    .map_err(|e| HttpError::Transport {
                        url: url.to_owned(),
                        message: error_chain(&e),
                    })?;
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.trim().parse::<u64>().ok())
            };
            let remaining = header("ratelimit-remaining");
            let reset = header("ratelimit-reset").or_else(|| header("retry-after"));
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), self.max_body)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        HttpError::TooLarge {
                            url: url.to_owned(),
                            limit: self.max_body,
                        }
                    } else {
                        HttpError::Transport {
                            url: url.to_owned(),
                            message: e.to_string(),
                        }
                    }
                })?
                .to_bytes();
            Ok(Response {
                status,
                remaining,
                reset,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout {
                url: url.to_owned(),
                timeout: self.timeout,
            })?
    }
}
