//! Viewer identification by atproto service auth, the way a PDS proxies a
//! user's request to an AppView: `Authorization: Bearer <JWT>` signed (ES256K
//! or ES256) with the `#atproto` key of the viewer's DID document.
//!
//! Checks, in order: the claims (`aud` is our service DID, or for `getFeed`
//! the feed generator's, see [`ServiceAuth::verify_feed`]; `exp` not passed,
//! `iat` not in the future, `lxm` names the called method, `iss` a DID), then
//! the signature with the issuer's key. Keys come from `skyhose_identity`,
//! which caches documents and failures; a signature that fails with a
//! cached key re-resolves once, since the DID may have rotated its key.
//! Tokens that verified are remembered until they expire, so a client
//! reusing its token costs no signature check.

mod jwt;

pub use jwt::SERVICE_IDS;

/// The method whose tokens may be meant for a feed generator.
pub const FEED_METHOD: &str = "app.bsky.feed.getFeed";

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jwt::Alg;
use skyhose_identity::{IdentityConfig, ResolveError, Resolver, TtlCache};
use skyhose_proto::crypto::PublicKey;

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
    #[error("could not resolve the signing key of {did}: {error}")]
    Resolve { did: String, error: ResolveError },
    #[error("the DID document of {0} has no #atproto signing key")]
    NoKey(String),
    #[error("service-auth token is {alg} but the signing key of {did} is {key}")]
    KeyType {
        did: String,
        alg: &'static str,
        key: &'static str,
    },
    #[error("service-auth token signature does not verify with the signing key of {0}")]
    Signature(String),
}

impl AuthError {
    /// A short label for `skyhose_api_auth_failures_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::NotBearer | AuthError::Malformed(_) => "malformed",
            AuthError::Algorithm(_) => "algorithm",
            AuthError::Audience { .. } => "audience",
            AuthError::Expired { .. } => "expired",
            AuthError::IssuedInFuture { .. } => "issued_in_future",
            AuthError::MissingMethod(_) | AuthError::WrongMethod { .. } => "method",
            AuthError::Issuer(_) => "issuer",
            AuthError::Resolve { error, .. } => match error.reason() {
                "refused" => "issuer_refused",
                "not_found" => "issuer_not_found",
                _ => "issuer_unresolved",
            },
            AuthError::NoKey(_) | AuthError::KeyType { .. } => "issuer_key",
            AuthError::Signature(_) => "signature",
        }
    }

    /// The error name the official AppView gives the same refusal, so
    /// clients written against it recognise ours.
    pub fn name(&self) -> &'static str {
        match self {
            AuthError::NotBearer | AuthError::Resolve { .. } | AuthError::NoKey(_) => {
                "AuthenticationRequired"
            }
            AuthError::Malformed(_)
            | AuthError::Algorithm(_)
            | AuthError::IssuedInFuture { .. } => "BadJwt",
            AuthError::Audience { .. } => "BadJwtAudience",
            AuthError::Expired { .. } => "JwtExpired",
            AuthError::MissingMethod(_) | AuthError::WrongMethod { .. } => "BadJwtLexiconMethod",
            AuthError::Issuer(_) => "BadJwtIss",
            AuthError::KeyType { .. } | AuthError::Signature(_) => "BadJwtSignature",
        }
    }

    /// What the client is told. The token's own faults are named (they say
    /// nothing the client does not know); how the issuer's identity failed
    /// to resolve is not, since that would report on hosts and networks
    /// the client chose to aim the resolver at.
    pub fn public_message(&self) -> String {
        match self {
            AuthError::Resolve { .. }
            | AuthError::NoKey(_)
            | AuthError::KeyType { .. }
            | AuthError::Signature(_) => "service-auth token could not be verified".to_owned(),
            other => other.to_string(),
        }
    }
}

/// Tuning of `ServiceAuth`; the defaults suit a public AppView.
#[derive(Debug, Clone)]
pub struct AuthOptions {
    /// Longest time a verified token is remembered.
    pub token_ttl: Duration,
    /// A signature failing with a cached key younger than this does not
    /// trigger a re-resolution, so forged tokens cannot make us hammer the
    /// directory.
    pub refresh_after: Duration,
    pub max_cached_tokens: usize,
    /// Tolerated difference between our clock and the issuer's.
    pub clock_skew: Duration,
    /// atproto requires `lxm`; turning this off accepts tokens without it
    /// (a present `lxm` must still match the method).
    pub require_lxm: bool,
}

impl Default for AuthOptions {
    fn default() -> Self {
        AuthOptions {
            token_ttl: Duration::from_secs(600),
            refresh_after: Duration::from_secs(30),
            max_cached_tokens: 20_000,
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
    resolver: Arc<Resolver>,
    /// Verified token → issuer DID.
    tokens: TtlCache<String>,
}

impl ServiceAuth {
    pub fn new(service_did: String, identity: IdentityConfig) -> Self {
        Self::with_options(service_did, identity, AuthOptions::default())
    }

    pub fn with_options(
        service_did: String,
        identity: IdentityConfig,
        options: AuthOptions,
    ) -> Self {
        Self::with_resolver(service_did, Arc::new(Resolver::new(identity)), options)
    }

    /// With a resolver shared with others in the process.
    pub fn with_resolver(
        service_did: String,
        resolver: Arc<Resolver>,
        options: AuthOptions,
    ) -> Self {
        ServiceAuth {
            service_did,
            resolver,
            tokens: TtlCache::new(options.max_cached_tokens),
            options,
        }
    }

    /// Checks `authorization` (the full header value) for method `lxm`, and
    /// returns the viewer's DID.
    pub async fn verify(&self, authorization: &str, lxm: &str) -> Result<String, AuthError> {
        self.verify_with(authorization, lxm, None).await
    }

    /// Checks the token of a `getFeed` call for the feed served by
    /// `feed_did`: ours for `getFeed`, or the one the viewer's PDS minted for
    /// the generator (`aud` its DID, `lxm` getFeedSkeleton).
    pub async fn verify_feed(
        &self,
        authorization: &str,
        feed_did: &str,
    ) -> Result<String, AuthError> {
        self.verify_with(authorization, FEED_METHOD, Some(feed_did))
            .await
    }

    async fn verify_with(
        &self,
        authorization: &str,
        lxm: &str,
        feed_did: Option<&str>,
    ) -> Result<String, AuthError> {
        let token = bearer(authorization)?;
        let parsed = jwt::parse(token)?;
        let now = unix_now();
        let skew = self.options.clock_skew.as_secs_f64();
        let did = jwt::check_claims(
            &parsed.claims,
            &jwt::Rules {
                service_did: &self.service_did,
                lxm,
                feed_did,
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
            self.resolver.forget(&did);
            let (key, _) = self.key(&did).await?;
            checked = check_signature(&did, &key, &parsed);
        }
        checked?;
        let remaining =
            (parsed.claims.exp + skew - now).clamp(0.0, self.options.token_ttl.as_secs_f64());
        self.tokens.insert(
            token.to_owned(),
            did.clone(),
            Duration::from_secs_f64(remaining),
        );
        Ok(did)
    }

    /// `did`'s signing key, and its age when it came from the cache.
    async fn key(&self, did: &str) -> Result<(PublicKey, Option<Duration>), AuthError> {
        let resolved =
            self.resolver
                .resolve_did(did)
                .await
                .map_err(|error| AuthError::Resolve {
                    did: did.to_owned(),
                    error,
                })?;
        let key = resolved
            .document
            .signing_key
            .clone()
            .ok_or_else(|| AuthError::NoKey(did.to_owned()))?;
        Ok((key, resolved.age))
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
