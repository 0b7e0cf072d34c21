//! Compact JWT parsing and claim checks for atproto service-auth tokens. The
//! signature itself is checked by the caller, once the issuer's key is known.

use data_encoding::BASE64URL_NOPAD;
use serde::Deserialize;

use super::AuthError;

/// Longer than any token a PDS issues by far; bounds the work done on junk.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// ECDSA over secp256k1 with SHA-256.
    Es256k,
    /// ECDSA over P-256 with SHA-256.
    Es256,
}

impl Alg {
    /// The algorithm a key of `curve` signs with.
    pub fn of(curve: skyhose_proto::crypto::Curve) -> Self {
        match curve {
            skyhose_proto::crypto::Curve::K256 => Alg::Es256k,
            skyhose_proto::crypto::Curve::P256 => Alg::Es256,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::Es256k => "ES256K",
            Alg::Es256 => "ES256",
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    typ: Option<String>,
}

#[derive(Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// NumericDate: seconds, possibly fractional.
    pub exp: f64,
    pub iat: Option<f64>,
    pub lxm: Option<String>,
}

pub struct Token<'a> {
    /// `header.payload`, the bytes the signature covers.
    pub signed: &'a str,
    pub alg: Alg,
    pub claims: Claims,
    /// r || s, 64 bytes.
    pub signature: Vec<u8>,
}

/// Splits and decodes a compact JWT without checking its signature.
pub fn parse(token: &str) -> Result<Token<'_>, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(malformed(format!(
            "{} bytes, more than the {MAX_TOKEN_BYTES} allowed",
            token.len()
        )));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("not three dot-separated parts".into()));
    };
    let header: Header = decode_json(header, "header")?;
    let alg = match header.alg.as_str() {
        "ES256K" => Alg::Es256k,
        "ES256" => Alg::Es256,
        other => return Err(AuthError::Algorithm(other.chars().take(32).collect())),
    };
    // A PDS's own session tokens must not pass as service auth.
    if let Some(typ) = header.typ.as_deref() {
        if matches!(typ, "at+jwt" | "refresh+jwt" | "dpop+jwt") {
            return Err(malformed(format!(
                "typ {typ:?} is a session token, not service auth"
            )));
        }
    }
    let claims: Claims = decode_json(payload, "claims")?;
    let signature = decode_b64(signature, "signature")?;
    if signature.len() != 64 {
        return Err(malformed(format!(
            "signature is {} bytes, not 64 (r || s)",
            signature.len()
        )));
    }
    let signed_len = token.len() - signature_len(token);
    Ok(Token {
        signed: &token[..signed_len],
        alg,
        claims,
        signature,
    })
}

/// Length of the last part including its leading dot.
fn signature_len(token: &str) -> usize {
    token.rfind('.').map_or(0, |dot| token.len() - dot)
}

fn decode_b64(part: &str, what: &str) -> Result<Vec<u8>, AuthError> {
    BASE64URL_NOPAD
        .decode(part.as_bytes())
        .map_err(|e| malformed(format!("{what} is not unpadded base64url: {e}")))
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str, what: &str) -> Result<T, AuthError> {
    let bytes = decode_b64(part, what)?;
    serde_json::from_slice(&bytes).map_err(|e| malformed(format!("{what}: {e}")))
}

fn malformed(reason: String) -> AuthError {
    AuthError::Malformed(reason)
}

/// The fragments of the services our DID document lists
/// (`crate::service::did_document`): a token for one of them is for us.
pub const SERVICE_IDS: [&str; 2] = ["bsky_appview", "bsky_notif"];

/// What the claims must satisfy, besides the signature.
/// The method a feed generator serves, named by the tokens minted for it.
pub const FEED_SKELETON: &str = "app.bsky.feed.getFeedSkeleton";

pub struct Rules<'a> {
    pub service_did: &'a str,
    pub lxm: &'a str,
    /// For `getFeed`: the DID of the generator serving the feed. A user's
    /// PDS asks for that method with the token it minted for the generator
    /// (that `aud`, `lxm` getFeedSkeleton), which we accept and pass on.
    pub feed_did: Option<&'a str>,
    pub require_lxm: bool,
    pub now: f64,
    pub skew_secs: f64,
}

/// Checks audience, lifetime, method and issuer; returns the issuer's DID
/// (any `#service` fragment removed).
pub fn check_claims(claims: &Claims, rules: &Rules<'_>) -> Result<String, AuthError> {
    // `did#service_id` names one of the services our DID document lists:
    // still us. Any other fragment is a service we do not run.
    let (aud_did, service) = match claims.aud.split_once('#') {
        Some((did, service)) => (did, Some(service)),
        None => (claims.aud.as_str(), None),
    };
    let ours = service.is_none_or(|s| SERVICE_IDS.contains(&s));
    let for_feed = rules.feed_did.is_some_and(|feed| claims.aud == feed);
    if !for_feed && (aud_did != rules.service_did || !ours) {
        return Err(AuthError::Audience {
            got: claims.aud.chars().take(256).collect(),
            expected: rules.service_did.to_owned(),
        });
    }
    if !claims.exp.is_finite() || claims.exp + rules.skew_secs <= rules.now {
        return Err(AuthError::Expired {
            exp: claims.exp as i64,
            now: rules.now as i64,
        });
    }
    if let Some(iat) = claims.iat {
        if !iat.is_finite() || iat > rules.now + rules.skew_secs {
            return Err(AuthError::IssuedInFuture {
                iat: iat as i64,
                now: rules.now as i64,
            });
        }
    }
    match claims.lxm.as_deref() {
        Some(FEED_SKELETON) if rules.feed_did.is_some() => {}
        Some(lxm) if lxm != rules.lxm => {
            return Err(AuthError::WrongMethod {
                got: lxm.chars().take(256).collect(),
                expected: rules.lxm.to_owned(),
            })
        }
        None if rules.require_lxm => return Err(AuthError::MissingMethod(rules.lxm.to_owned())),
        _ => {}
    }
    let iss = claims.iss.split('#').next().unwrap_or_default();
    if !skyhose_proto::syntax::is_did(iss) {
        return Err(AuthError::Issuer(claims.iss.chars().take(256).collect()));
    }
    Ok(iss.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str, claims: &str, sig_len: usize) -> String {
        format!(
            "{}.{}.{}",
            BASE64URL_NOPAD.encode(header.as_bytes()),
            BASE64URL_NOPAD.encode(claims.as_bytes()),
            BASE64URL_NOPAD.encode(&vec![7u8; sig_len])
        )
    }

    const CLAIMS: &str = r#"{"iss":"did:plc:abc#atproto_labeler","aud":"did:web:api.test","exp":2000,"iat":1000,"lxm":"app.bsky.actor.getProfile"}"#;

    fn rules(now: f64) -> Rules<'static> {
        Rules {
            service_did: "did:web:api.test",
            lxm: "app.bsky.actor.getProfile",
            feed_did: None,
            require_lxm: true,
            now,
            skew_secs: 30.0,
        }
    }

    #[test]
    fn parses_and_checks_a_good_token() {
        let t = token(r#"{"alg":"ES256K","typ":"JWT"}"#, CLAIMS, 64);
        let parsed = parse(&t).unwrap();
        assert_eq!(parsed.alg, Alg::Es256k);
        assert_eq!(parsed.signed, &t[..t.rfind('.').unwrap()]);
        let did = check_claims(&parsed.claims, &rules(1500.0)).unwrap();
        assert_eq!(did, "did:plc:abc");
    }

    #[test]
    fn rejects_bad_shapes() {
        let cases = [
            ("a.b".to_owned(), "three"),
            ("a.b.c.d".to_owned(), "three"),
            (
                token(r#"{"alg":"HS256"}"#, CLAIMS, 64),
                "algorithm \"HS256\"",
            ),
            (token(r#"{"alg":"none"}"#, CLAIMS, 0), "\"none\""),
            (
                token(r#"{"alg":"ES256K","typ":"at+jwt"}"#, CLAIMS, 64),
                "session token",
            ),
            (token(r#"{"alg":"ES256K"}"#, CLAIMS, 65), "65 bytes"),
            (token(r#"{"alg":"ES256K"}"#, r#"{"iss":1}"#, 64), "claims"),
            ("!!.e30.e30".to_owned(), "base64url"),
            ("x".repeat(MAX_TOKEN_BYTES + 1), "allowed"),
        ];
        for (t, want) in cases {
            let err = parse(&t).err().expect(want).to_string();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
    }

    #[test]
    fn claim_rules() {
        let claims = |s: &str| -> Claims { serde_json::from_str(s).unwrap() };
        let good = claims(CLAIMS);
        // Within the skew after exp still passes; beyond it fails.
        assert!(check_claims(&good, &rules(2029.0)).is_ok());
        let err = check_claims(&good, &rules(2031.0)).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        let err = check_claims(&good, &rules(900.0)).unwrap_err();
        assert!(err.to_string().contains("future"), "{err}");

        let wrong_aud = claims(&CLAIMS.replace("did:web:api.test", "did:web:other.test"));
        let err = check_claims(&wrong_aud, &rules(1500.0)).unwrap_err();
        assert!(err.to_string().contains("did:web:other.test"), "{err}");
        let aud_fragment =
            claims(&CLAIMS.replace("did:web:api.test", "did:web:api.test#bsky_appview"));
        assert!(check_claims(&aud_fragment, &rules(1500.0)).is_ok());
        let notif = claims(&CLAIMS.replace("did:web:api.test", "did:web:api.test#bsky_notif"));
        assert!(check_claims(&notif, &rules(1500.0)).is_ok());
        let other_service =
            claims(&CLAIMS.replace("did:web:api.test", "did:web:api.test#atproto_labeler"));
        let err = check_claims(&other_service, &rules(1500.0)).unwrap_err();
        assert_eq!(err.reason(), "audience");

        let mut r = rules(1500.0);
        r.lxm = "app.bsky.feed.getTimeline";
        let err = check_claims(&good, &r).unwrap_err();
        assert!(
            err.to_string().contains("app.bsky.feed.getTimeline"),
            "{err}"
        );

        let no_lxm = claims(r#"{"iss":"did:plc:abc","aud":"did:web:api.test","exp":2000}"#);
        let err = check_claims(&no_lxm, &rules(1500.0)).unwrap_err();
        assert!(err.to_string().contains("lxm"), "{err}");
        let mut lenient = rules(1500.0);
        lenient.require_lxm = false;
        assert!(check_claims(&no_lxm, &lenient).is_ok());

        let bad_iss = claims(&CLAIMS.replace("did:plc:abc", "alice"));
        let err = check_claims(&bad_iss, &rules(1500.0)).unwrap_err();
        assert!(err.to_string().contains("alice"), "{err}");
    }

    #[test]
    fn feed_tokens() {
        let claims = |s: &str| -> Claims { serde_json::from_str(s).unwrap() };
        let for_generator = |aud: &str, lxm: &str| {
            claims(&format!(
                r#"{{"iss":"did:plc:abc","aud":"{aud}","exp":2000,"lxm":"{lxm}"}}"#
            ))
        };
        let mut feed = rules(1500.0);
        feed.lxm = "app.bsky.feed.getFeed";
        feed.feed_did = Some("did:web:feed.test");
        for (aud, lxm) in [
            ("did:web:feed.test", FEED_SKELETON),
            ("did:web:feed.test", "app.bsky.feed.getFeed"),
            ("did:web:api.test", "app.bsky.feed.getFeed"),
            ("did:web:api.test#bsky_appview", FEED_SKELETON),
        ] {
            let token = for_generator(aud, lxm);
            assert!(check_claims(&token, &feed).is_ok(), "{aud} {lxm}");
        }
        let err =
            check_claims(&for_generator("did:web:other.test", FEED_SKELETON), &feed).unwrap_err();
        assert_eq!(err.reason(), "audience");
        let err = check_claims(
            &for_generator("did:web:feed.test", "app.bsky.feed.getTimeline"),
            &feed,
        )
        .unwrap_err();
        assert_eq!(err.reason(), "method");
        // Outside getFeed, a generator's token is refused.
        let mut other = rules(1500.0);
        other.lxm = FEED_SKELETON;
        let err =
            check_claims(&for_generator("did:web:feed.test", FEED_SKELETON), &other).unwrap_err();
        assert_eq!(err.reason(), "audience");
    }
}
