//! Viewer identification by atproto service auth, the way a PDS proxies a
//! user's request to an AppView: `Authorization: Bearer <JWT>` signed (ES256K
//! or ES256) with the `#atproto` key of the viewer's DID document.
//!
//! Checks, in order: the claims (`aud` is our service DID, `exp` not passed,
//! `iat` not in the future, `lxm` names the called method, `iss` a DID), then
//! the signature with the issuer's key. Keys are resolved through the PLC
//! directory (`did:plc`) or the host (`did:web`) and cached; a signature that
//! fails with a cached key re-resolves once, since the DID may have rotated
//! its key. Tokens that verified are remembered until they expire, so a client
//! reusing its token costs no signature check.

mod cache;
mod did;
mod fetch;
mod jwt;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache::TtlCache;
use did::{PublicKey, ResolveError, Resolver};
use fetch::Fetcher;
use jwt::Alg;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the Authorization header must be `Bearer <service-auth token>`")]
    NotBearer,
    #[error("malformed service-auth token: {0}")]
    Malformed(String),
    #[error("service-auth token algorithm {0:?} is not supported (ES256K and ES256 are)")]
    Algorithm(String),
    #[error("service-auth token is for {got:?}, not this service ({expected})")]
    Audience { got: String, expected: String },
    #[error("service-auth token expired (exp {exp}, now {now})")]
    Expired { exp: i64, now: i64 },
    #[error("service-auth token is issued in the future (iat {iat}, now {now})")]
    IssuedInFuture { iat: i64, now: i64 },
    #[error("service-auth token has no lxm claim; it must name the method {0}")]
    MissingMethod(String),
    #[error("service-auth token is for method {got:?}, not {expected}")]
    WrongMethod { got: String, expected: String },
    #[error("service-auth token issuer {0:?} is not a DID")]
    Issuer(String),
    #[error("could not resolve the signing key of {did}: {reason}")]
    Resolve { did: String, reason: String },
    #[error("service-auth token is {alg} but the signing key of {did} is {key}")]
    KeyType {
        did: String,
        alg: &'static str,
        key: &'static str,
    },
    #[error("service-auth token signature does not verify with the signing key of {0}")]
    Signature(String),
}

/// Tuning of `ServiceAuth`; the defaults suit a public AppView.
#[derive(Debug, Clone)]
pub struct AuthOptions {
    /// How long a resolved signing key is used before its document is fetched again.
    pub key_ttl: Duration,
    /// A signature failing with a cached key younger than this does not
    /// trigger a re-resolution, so forged tokens cannot make us hammer the
    /// directory.
    pub refresh_after: Duration,
    /// How long "DID not found" is remembered.
    pub not_found_ttl: Duration,
    pub max_cached_keys: usize,
    pub max_cached_tokens: usize,
    /// Deadline of one DID document fetch.
    pub resolve_timeout: Duration,
    /// Tolerated difference between our clock and the issuer's.
    pub clock_skew: Duration,
    /// atproto requires `lxm`; turning this off accepts tokens without it
    /// (a present `lxm` must still match the method).
    pub require_lxm: bool,
}

impl Default for AuthOptions {
    fn default() -> Self {
        AuthOptions {
            key_ttl: Duration::from_secs(600),
            refresh_after: Duration::from_secs(30),
            not_found_ttl: Duration::from_secs(30),
            max_cached_keys: 100_000,
            max_cached_tokens: 20_000,
            resolve_timeout: Duration::from_secs(3),
            clock_skew: Duration::from_secs(30),
            require_lxm: true,
        }
    }
}

/// Verifies `Authorization: Bearer <jwt>` service-auth tokens. Shared by all
/// requests.
pub struct ServiceAuth {
    service_did: String,
    options: AuthOptions,
    resolver: Resolver,
    keys: TtlCache<PublicKey>,
    /// DIDs whose document the directory did not have, with the reason.
    missing: TtlCache<String>,
    /// Verified token → issuer DID.
    tokens: TtlCache<String>,
}

impl ServiceAuth {
    pub fn new(service_did: String, plc_url: String) -> Self {
        Self::with_options(service_did, plc_url, AuthOptions::default())
    }

    pub fn with_options(service_did: String, plc_url: String, options: AuthOptions) -> Self {
        ServiceAuth {
            service_did,
            resolver: Resolver::new(plc_url, Fetcher::new(options.resolve_timeout)),
            keys: TtlCache::new(options.max_cached_keys),
            missing: TtlCache::new(options.max_cached_keys / 10),
            tokens: TtlCache::new(options.max_cached_tokens),
            options,
        }
    }

    /// Checks `authorization` (the full header value) for method `lxm`, and
    /// returns the viewer's DID.
    pub async fn verify(&self, authorization: &str, lxm: &str) -> Result<String, AuthError> {
        let token = bearer(authorization)?;
        let parsed = jwt::parse(token)?;
        let now = unix_now();
        let skew = self.options.clock_skew.as_secs_f64();
        let did = jwt::check_claims(
            &parsed.claims,
            &jwt::Rules {
                service_did: &self.service_did,
                lxm,
                require_lxm: self.options.require_lxm,
                now,
                skew_secs: skew,
            },
        )?;
        if self.tokens.get(token).is_some_and(|(iss, _)| iss == did) {
            return Ok(did);
        }
        let (key, age) = self.key(&did).await?;
        let mut checked = check_signature(&did, &key, &parsed);
        if checked.is_err() && age.is_some_and(|age| age >= self.options.refresh_after) {
            // The DID may have rotated its key since we cached it.
            self.keys.remove(&did);
            let (key, _) = self.key(&did).await?;
            checked = check_signature(&did, &key, &parsed);
        }
        checked?;
        let remaining =
            (parsed.claims.exp + skew - now).clamp(0.0, self.options.key_ttl.as_secs_f64());
        self.tokens.insert(
            token.to_owned(),
            did.clone(),
            Duration::from_secs_f64(remaining),
        );
        Ok(did)
    }

    /// `did`'s signing key, and its age when it came from the cache.
    async fn key(&self, did: &str) -> Result<(PublicKey, Option<Duration>), AuthError> {
        if let Some((key, age)) = self.keys.get(did) {
            return Ok((key, Some(age)));
        }
        if let Some((reason, _)) = self.missing.get(did) {
            return Err(resolve_error(did, reason));
        }
        match self.resolver.resolve(did).await {
            Ok(key) => {
                metrics::counter!(RESOLUTIONS, "outcome" => "ok").increment(1);
                self.keys
                    .insert(did.to_owned(), key.clone(), self.options.key_ttl);
                Ok((key, None))
            }
            Err(e) => {
                let outcome = match e {
                    ResolveError::NotFound => "not_found",
                    ResolveError::Fetch(_) => "unreachable",
                    _ => "invalid",
                };
                metrics::counter!(RESOLUTIONS, "outcome" => outcome).increment(1);
                tracing::debug!(did, error = %e, "DID resolution failed");
                if matches!(e, ResolveError::NotFound) {
                    self.missing
                        .insert(did.to_owned(), e.to_string(), self.options.not_found_ttl);
                }
                Err(resolve_error(did, e.to_string()))
            }
        }
    }
}

const RESOLUTIONS: &str = "skyhose_api_did_resolutions_total";

fn resolve_error(did: &str, reason: String) -> AuthError {
    AuthError::Resolve {
        did: did.to_owned(),
        reason,
    }
}

fn check_signature(did: &str, key: &PublicKey, token: &jwt::Token<'_>) -> Result<(), AuthError> {
    if Alg::of(key.curve()) != token.alg {
        return Err(AuthError::KeyType {
            did: did.to_owned(),
            alg: token.alg.name(),
            key: Alg::of(key.curve()).name(),
        });
    }
    if !key.verify(token.signed.as_bytes(), &token.signature) {
        return Err(AuthError::Signature(did.to_owned()));
    }
    Ok(())
}

/// The token of a `Bearer` Authorization value (scheme case-insensitive).
fn bearer(authorization: &str) -> Result<&str, AuthError> {
    let (scheme, token) = authorization
        .trim()
        .split_once(' ')
        .ok_or(AuthError::NotBearer)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::NotBearer);
    }
    Ok(token)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values() {
        assert_eq!(bearer("Bearer abc").unwrap(), "abc");
        assert_eq!(bearer("  bearer   abc ").unwrap(), "abc");
        for bad in ["abc", "Basic abc", "Bearer ", "Bearer"] {
            assert!(matches!(bearer(bad), Err(AuthError::NotBearer)), "{bad}");
        }
    }
}
