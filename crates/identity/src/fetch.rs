//! Bounded HTTP GET for identity documents (and the XRPC queries of services
//! that DID documents name): one deadline for the whole
//! exchange, a cap on the body, no redirects, and connections only to
//! addresses the [`Policy`] allows (the name is resolved here, each address
//! checked, and the connection made to those addresses). HTTPS uses the
//! Mozilla root set.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, HOST};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::guard::{Origin, Policy, Refused};

/// Real DID documents are a few KiB.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("bad URL {0:?}")]
    Url(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Transport(String),
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("refused: {0}")]
    Refused(#[from] Refused),
}

/// Resolves a name and refuses it when any of its addresses is not allowed,
/// so hyper connects only to checked addresses.
#[derive(Clone)]
struct GuardedDns {
    policy: Policy,
}

type DnsFuture =
    Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, std::io::Error>> + Send>>;

impl tower_service::Service<Name> for GuardedDns {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = DnsFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(std::io::Error::other(Refused::NoAddress(host)));
            }
            if let Some(bad) = addrs.iter().find(|a| !policy.address_allowed(a.ip())) {
                return Err(std::io::Error::other(Refused::Address {
                    host,
                    addr: bad.ip(),
                }));
            }
            Ok(addrs.into_iter())
        })
    }
}

type HttpsClient = Client<HttpsConnector<HttpConnector<GuardedDns>>, Empty<Bytes>>;

pub struct Fetcher {
    /// A TLS setup failure is reported on use, so building a resolver
    /// cannot fail.
    client: Result<HttpsClient, String>,
    policy: Policy,
    timeout: Duration,
}

impl Fetcher {
    pub fn new(policy: Policy, timeout: Duration) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut http = HttpConnector::new_with_resolver(GuardedDns { policy });
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let client = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map(|builder| {
                let builder = if policy.allow_loopback {
                    builder.https_or_http()
                } else {
                    builder.https_only()
                };
                let connector = builder.enable_http1().wrap_connector(http);
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(30))
                    .build(connector)
            })
            .map_err(|e| e.to_string());
        Fetcher {
            client,
            policy,
            timeout,
        }
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The body of a 200 answer to `GET url` (at most `max_bytes`), sent
    /// with `Host: host` when given.
    pub async fn get(
        &self,
        url: &str,
        host: Option<&str>,
        max_bytes: usize,
    ) -> Result<Bytes, FetchError> {
        let mut headers = vec![(
            ACCEPT,
            HeaderValue::from_static("application/did+ld+json, application/json, text/plain"),
        )];
        if let Some(host) = host {
            let host = HeaderValue::from_str(host).map_err(|_| FetchError::Url(url.to_owned()))?;
            headers.push((HOST, host));
        }
        self.exchange(url, headers, max_bytes).await
    }

    /// The body of a 200 answer to an XRPC query `url` that a service names
    /// in its DID document (a feed generator's `getFeedSkeleton`), passing
    /// on the caller's `Authorization` value: the same guard, deadline and
    /// size cap as documents.
    pub async fn get_xrpc(
        &self,
        url: &str,
        authorization: Option<&str>,
        max_bytes: usize,
    ) -> Result<Bytes, FetchError> {
        let mut headers = vec![(ACCEPT, HeaderValue::from_static("application/json"))];
        if let Some(value) = authorization {
            let value = HeaderValue::from_str(value)
                .map_err(|_| FetchError::Url("authorization value is not a header".into()))?;
            headers.push((AUTHORIZATION, value));
        }
        self.exchange(url, headers, max_bytes).await
    }

    async fn exchange(
        &self,
        url: &str,
        headers: Vec<(HeaderName, HeaderValue)>,
        max_bytes: usize,
    ) -> Result<Bytes, FetchError> {
        let client = self
            .client
            .as_ref()
            .map_err(|e| FetchError::Tls(e.clone()))?;
        let uri: Uri = url.parse().map_err(|_| FetchError::Url(url.to_owned()))?;
        // hyper connects to IP literals without asking the resolver, so
        // the URL's host is checked here too.
        let authority = uri
            .authority()
            .ok_or_else(|| FetchError::Url(url.to_owned()))?;
        let Origin(origin) = self.policy.origin(authority.as_str())?;
        if origin.split("://").next() != uri.scheme_str() {
            return Err(FetchError::Url(url.to_owned()));
        }
        let mut request = Request::get(uri);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Empty::new())
            .map_err(|_| FetchError::Url(url.to_owned()))?;
        let exchange = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| match refusal(&e) {
                    Some(refused) => FetchError::Refused(refused),
                    None => FetchError::Transport(error_chain(&e)),
                })?;
            if response.status() != StatusCode::OK {
                return Err(FetchError::Status(response.status().as_u16()));
            }
            let body = Limited::new(response.into_body(), max_bytes)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        FetchError::TooLarge(max_bytes)
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

/// The guard's refusal, when that is why the connection failed.
fn refusal(err: &(dyn std::error::Error + 'static)) -> Option<Refused> {
    let mut source = Some(err);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return Some(refused.clone());
        }
        let inner = cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<Refused>());
        if let Some(refused) = inner {
            return Some(refused.clone());
        }
        source = cause.source();
    }
    None
}

/// hyper's top-level error says little ("client error (Connect)"); the cause
/// says what happened. Every HTTP client of the project reports errors this way.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
