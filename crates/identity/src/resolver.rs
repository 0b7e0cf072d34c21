//! The resolver: DID → document (cached, failures too, one fetch per DID at
//! a time), handle → DID (DNS TXT `_atproto.<handle>` or
//! `https://<handle>/.well-known/atproto-did`, or a configured handle
//! resolver asked with the handle as `Host`), and both together: the
//! handle a DID's document claims, kept only when it resolves back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use skyhose_proto::syntax::{is_did, is_handle};
use tokio::sync::OnceCell;

use crate::cache::TtlCache;
use crate::document::{self, DidDocument, DocumentError};
use crate::fetch::{FetchError, Fetcher, MAX_DOCUMENT_BYTES};
use crate::guard::{Origin, Policy, Refused};

/// An `atproto-did` answer is one DID.
const MAX_DID_BYTES: usize = 2048;

pub const RESOLUTIONS: &str = "skyhose_identity_resolutions_total";
pub const HANDLE_CHECKS: &str = "skyhose_identity_handle_checks_total";

/// Where identities are resolved from, and how long answers are kept.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// PLC directory for `did:plc`.
    pub plc_url: String,
    /// Asked for every handle (`{url}/.well-known/atproto-did` with the
    /// handle as `Host`) instead of DNS and the handle's own host: for
    /// networks without public DNS, such as tests on loopback.
    pub handle_resolver: Option<String>,
    /// For tests only: allows plain HTTP to loopback (`did:web:localhost%3A…`,
    /// a PLC directory or handle resolver on 127.0.0.1).
    pub allow_loopback: bool,
    /// Deadline of one fetch.
    pub timeout: Duration,
    /// How long a document is used before it is fetched again.
    pub ttl: Duration,
    /// How long a failure is remembered (no fetch for that DID meanwhile).
    pub negative_ttl: Duration,
    pub max_cached: usize,
}

impl IdentityConfig {
    pub fn new(plc_url: impl Into<String>) -> Self {
        IdentityConfig {
            plc_url: plc_url.into(),
            handle_resolver: None,
            allow_loopback: false,
            timeout: Duration::from_secs(3),
            ttl: Duration::from_secs(600),
            negative_ttl: Duration::from_secs(30),
            max_cached: 100_000,
        }
    }

    /// Everything on loopback allowed: for tests and the demo.
    pub fn loopback(plc_url: impl Into<String>) -> Self {
        IdentityConfig {
            allow_loopback: true,
            ..Self::new(plc_url)
        }
    }

    /// What this configuration lets a fetch connect to.
    pub fn policy(&self) -> Policy {
        Policy {
            allow_loopback: self.allow_loopback,
        }
    }

    /// Checks the configured URLs against what the resolver may reach, so a
    /// bad setting fails at start rather than on every resolution.
    pub fn check(&self) -> Result<(), ConfigError> {
        let urls = std::iter::once(("--plc-url", &self.plc_url)).chain(
            self.handle_resolver
                .iter()
                .map(|u| ("--handle-resolver", u)),
        );
        for (flag, url) in urls {
            let uri: hyper::Uri = url.parse().map_err(|_| ConfigError {
                flag,
                url: url.clone(),
                reason: "not a URL".into(),
            })?;
            let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
            let Origin(origin) = self.policy().origin(authority).map_err(|e| ConfigError {
                flag,
                url: url.clone(),
                reason: e.to_string(),
            })?;
            if origin.split("://").next() != uri.scheme_str() {
                return Err(ConfigError {
                    flag,
                    url: url.clone(),
                    reason: "must be https (plain http only for loopback with \
                             --allow-loopback-identity)"
                        .into(),
                });
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{flag} {url:?}: {reason}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub url: String,
    pub reason: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    #[error("DID not found")]
    NotFound,
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("DNS lookup failed: {0}")]
    Dns(String),
}

impl ResolveError {
    /// A short label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            ResolveError::NotFound => "not_found",
            ResolveError::Document(DocumentError::Refused(_))
            | ResolveError::Fetch(FetchError::Refused(_)) => "refused",
            ResolveError::Document(DocumentError::Invalid(_)) => "invalid_document",
            ResolveError::Document(_) => "invalid_did",
            ResolveError::Fetch(FetchError::Timeout(_)) => "timeout",
            ResolveError::Fetch(FetchError::Status(_)) => "http_status",
            ResolveError::Fetch(FetchError::TooLarge(_)) => "too_large",
            ResolveError::Fetch(_) => "unreachable",
            ResolveError::Dns(_) => "dns",
        }
    }

    /// Whether asking again later may give another answer (the network or
    /// the other side failed), as opposed to a definite answer.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ResolveError::Fetch(
                FetchError::Timeout(_) | FetchError::Transport(_) | FetchError::Tls(_)
            ) | ResolveError::Fetch(FetchError::Status(500..))
                | ResolveError::Dns(_)
        )
    }
}

/// A document and, when it came from the cache, how long ago it was fetched.
pub struct Resolved {
    pub document: Arc<DidDocument>,
    pub age: Option<Duration>,
}

/// The outcome of checking an account's handle both ways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub document: Arc<DidDocument>,
    /// The handle the document claims, when it resolves back to the DID;
    /// `None` shows as `handle.invalid`.
    pub handle: Option<String>,
}

type Cached = Result<Arc<DidDocument>, ResolveError>;

pub struct Resolver {
    config: IdentityConfig,
    fetcher: Fetcher,
    documents: TtlCache<Cached>,
    /// One gate per DID being fetched, so concurrent callers wait for the
    /// first one's answer instead of fetching too.
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    dns: OnceCell<Option<TokioResolver>>,
}

impl Resolver {
    pub fn new(config: IdentityConfig) -> Self {
        Resolver {
            fetcher: Fetcher::new(config.policy(), config.timeout),
            documents: TtlCache::new(config.max_cached),
            inflight: Mutex::new(HashMap::new()),
            dns: OnceCell::new(),
            config,
        }
    }

    pub fn config(&self) -> &IdentityConfig {
        &self.config
    }

    /// `did`'s document, from the cache when it is there (a failure is
    /// cached too, for `negative_ttl`).
    pub async fn resolve_did(&self, did: &str) -> Result<Resolved, ResolveError> {
        if let Some(hit) = self.cached(did) {
            return hit;
        }
        let gate = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            inflight.entry(did.to_owned()).or_default().clone()
        };
        let guard = gate.lock().await;
        let result = match self.cached(did) {
            Some(hit) => hit,
            None => {
                let fetched = self.fetch_document(did).await;
                let ttl = match &fetched {
                    Ok(_) => self.config.ttl,
                    Err(_) => self.config.negative_ttl,
                };
                self.documents.insert(did.to_owned(), fetched.clone(), ttl);
                fetched.map(|document| Resolved {
                    document,
                    age: None,
                })
            }
        };
        drop(guard);
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        // The map and this function hold the only references: nobody waits.
        if Arc::strong_count(&gate) <= 2 {
            inflight.remove(did);
        }
        result
    }

    fn cached(&self, did: &str) -> Option<Result<Resolved, ResolveError>> {
        let (cached, age) = self.documents.get(did)?;
        Some(cached.map(|document| Resolved {
            document,
            age: Some(age),
        }))
    }

    /// Drops what is cached for `did`, so the next resolution fetches.
    pub fn forget(&self, did: &str) {
        self.documents.remove(did);
    }

    /// Drops `did`'s cached document only if it was fetched at least
    /// `min_age` ago (a cached failure always goes). A signature that fails
    /// may mean a rotated key, but forged signatures must not make us fetch
    /// the same document again and again. Returns whether the next
    /// resolution fetches.
    pub fn refresh_if_older(&self, did: &str, min_age: Duration) -> bool {
        match self.documents.get(did) {
            Some((Ok(_), age)) if age < min_age => false,
            _ => {
                self.documents.remove(did);
                true
            }
        }
    }

    async fn fetch_document(&self, did: &str) -> Cached {
        let result: Cached = async {
            let url = document::document_url(did, &self.config.plc_url, &self.fetcher.policy())?;
            let body = self
                .fetcher
                .get(&url, None, MAX_DOCUMENT_BYTES)
                .await
                .map_err(|e| match e {
                    FetchError::Status(404 | 410) => ResolveError::NotFound,
                    e => ResolveError::Fetch(e),
                })?;
            Ok(Arc::new(document::parse(did, &body)?))
        }
        .await;
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => e.reason(),
        };
        metrics::counter!(RESOLUTIONS, "result" => label).increment(1);
        if let Err(e) = &result {
            tracing::debug!(did, error = %e, "DID resolution failed");
        }
        result
    }

    /// The DID `handle` resolves to, `None` when it resolves to none.
    pub async fn resolve_handle(&self, handle: &str) -> Result<Option<String>, ResolveError> {
        if !is_handle(handle) {
            return Ok(None);
        }
        if let Some(base) = &self.config.handle_resolver {
            let url = format!("{}/.well-known/atproto-did", base.trim_end_matches('/'));
            return self.well_known(&url, Some(handle)).await;
        }
        let dns = self.dns_txt(handle).await;
        if let Ok(Some(did)) = dns {
            return Ok(Some(did));
        }
        let Origin(origin) = match self.fetcher.policy().origin(handle) {
            Ok(origin) => origin,
            // A handle under a local or reserved name resolves to nothing
            // over HTTPS; DNS may still have answered.
            Err(_) => return dns,
        };
        match self
            .well_known(&format!("{origin}/.well-known/atproto-did"), None)
            .await
        {
            Ok(None) => dns,
            other => other,
        }
    }

    async fn well_known(
        &self,
        url: &str,
        host: Option<&str>,
    ) -> Result<Option<String>, ResolveError> {
        match self.fetcher.get(url, host, MAX_DID_BYTES).await {
            Ok(body) => Ok(std::str::from_utf8(&body)
                .ok()
                .map(str::trim)
                .filter(|did| is_did(did))
                .map(str::to_owned)),
            Err(FetchError::Status(400..=499)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn dns_txt(&self, handle: &str) -> Result<Option<String>, ResolveError> {
        let dns = self
            .dns
            .get_or_init(|| async {
                match TokioResolver::builder_tokio() {
                    Ok(builder) => Some(builder.build()),
                    Err(e) => {
                        tracing::warn!(error = %e, "no DNS resolver configuration; handles resolve over HTTPS only");
                        None
                    }
                }
            })
            .await;
        let Some(dns) = dns else {
            return Ok(None);
        };
        match dns.txt_lookup(format!("_atproto.{handle}.")).await {
            Ok(lookup) => {
                let values: Vec<String> = lookup
                    .iter()
                    .map(|txt| {
                        txt.iter()
                            .map(|part| String::from_utf8_lossy(part))
                            .collect::<String>()
                    })
                    .collect();
                Ok(did_from_txt(&values))
            }
            Err(e) if e.is_no_records_found() => Ok(None),
            Err(e) => Err(ResolveError::Dns(e.to_string())),
        }
    }

    /// Resolves `did` and checks its claimed handle resolves back to it.
    /// Errors only when the document cannot be had; a handle that cannot be
    /// confirmed is `None`, or an error when only a transient failure
    /// stopped the check.
    pub async fn verify(&self, did: &str) -> Result<Identity, ResolveError> {
        let document = self.resolve_did(did).await?.document;
        let Some(claimed) = document.handle.clone().filter(|h| is_handle(h)) else {
            metrics::counter!(HANDLE_CHECKS, "result" => "no_handle").increment(1);
            return Ok(Identity {
                document,
                handle: None,
            });
        };
        let back = match self.resolve_handle(&claimed).await {
            Ok(back) => back,
            Err(e) if e.is_transient() => {
                metrics::counter!(HANDLE_CHECKS, "result" => "error").increment(1);
                return Err(e);
            }
            Err(e) => {
                tracing::debug!(did, handle = claimed, error = %e, "handle does not resolve");
                None
            }
        };
        let verified = back.as_deref() == Some(did);
        let label = if verified { "verified" } else { "mismatch" };
        metrics::counter!(HANDLE_CHECKS, "result" => label).increment(1);
        Ok(Identity {
            document,
            handle: verified.then_some(claimed),
        })
    }
}

/// The DID of `_atproto` TXT values: exactly one `did=<did>` value counts;
/// none or several disagreeing ones resolve to nothing.
pub fn did_from_txt(values: &[String]) -> Option<String> {
    let mut dids = values
        .iter()
        .filter_map(|v| v.trim().strip_prefix("did="))
        .filter(|did| is_did(did));
    let first = dids.next()?;
    if dids.any(|other| other != first) {
        return None;
    }
    Some(first.to_owned())
}

impl From<Refused> for ResolveError {
    fn from(refused: Refused) -> Self {
        ResolveError::Fetch(FetchError::Refused(refused))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_values() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
        assert_eq!(
            did_from_txt(&v(&[&format!("did={did}")])).as_deref(),
            Some(did)
        );
        assert_eq!(
            did_from_txt(&v(&["v=spf1 -all", &format!("did={did}")])).as_deref(),
            Some(did)
        );
        assert_eq!(did_from_txt(&v(&[])), None);
        assert_eq!(did_from_txt(&v(&["did=not-a-did"])), None);
        assert_eq!(
            did_from_txt(&v(&[&format!("did={did}"), "did=did:web:other.example"])),
            None
        );
    }

    #[test]
    fn configured_urls_are_checked() {
        assert!(IdentityConfig::new("https://plc.directory").check().is_ok());
        assert!(IdentityConfig::loopback("http://127.0.0.1:2582")
            .check()
            .is_ok());
        let err = IdentityConfig::new("http://127.0.0.1:2582")
            .check()
            .unwrap_err();
        assert_eq!(err.flag, "--plc-url");
        assert!(IdentityConfig::new("http://plc.directory").check().is_err());
        let mut with_resolver = IdentityConfig::new("https://plc.directory");
        with_resolver.handle_resolver = Some("http://10.0.0.1".into());
        assert_eq!(with_resolver.check().unwrap_err().flag, "--handle-resolver");
    }
}
