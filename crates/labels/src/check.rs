//! Whether a label from a labeler's stream may be stored: its fields are
//! well formed, it is the labeler's own, and its signature verifies with the
//! labeler's `#atproto_label` key.

use skyhose_identity::{Resolver, KEY_REFRESH_AFTER};
use skyhose_proto::crypto::PublicKey;
use skyhose_proto::frame::Label;
use skyhose_proto::syntax::{is_cid, is_datetime, is_did, parse_at_uri};

/// `com.atproto.label.defs#label`'s `val` is at most 128 bytes.
const MAX_VAL_BYTES: usize = 128;

/// Why a label was not stored; `reason` is its metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("label from {src} on the stream of another labeler")]
    OtherSource { src: String },
    #[error("label field `{0}` is not valid")]
    BadField(&'static str),
    #[error("label has no signature")]
    Unsigned,
    #[error("label signature does not verify with the labeler's #atproto_label key")]
    BadSignature,
}

impl Rejected {
    pub fn reason(&self) -> &'static str {
        match self {
            Rejected::OtherSource { .. } => "other_source",
            Rejected::BadField(_) => "bad_field",
            Rejected::Unsigned => "unsigned",
            Rejected::BadSignature => "bad_signature",
        }
    }
}

/// The checks that need no key.
pub fn fields(label: &Label, labeler: &str) -> Result<(), Rejected> {
    if label.src != labeler {
        return Err(Rejected::OtherSource {
            src: label.src.chars().take(100).collect(),
        });
    }
    if !(is_did(&label.uri) || parse_at_uri(&label.uri).is_some()) {
        return Err(Rejected::BadField("uri"));
    }
    if label.val.is_empty() || label.val.len() > MAX_VAL_BYTES {
        return Err(Rejected::BadField("val"));
    }
    if label.cid.as_deref().is_some_and(|cid| !is_cid(cid)) {
        return Err(Rejected::BadField("cid"));
    }
    if !is_datetime(&label.cts) {
        return Err(Rejected::BadField("cts"));
    }
    if label.exp.as_deref().is_some_and(|exp| !is_datetime(exp)) {
        return Err(Rejected::BadField("exp"));
    }
    if label.ver.is_some_and(|v| i16::try_from(v).is_err()) {
        return Err(Rejected::BadField("ver"));
    }
    Ok(())
}

/// Whether `label`'s signature verifies with `key`.
pub fn signed_by(label: &Label, key: &PublicKey) -> Result<(), Rejected> {
    let sig = label.sig.as_deref().ok_or(Rejected::Unsigned)?;
    if key.verify(&label.signing_bytes(), sig) {
        Ok(())
    } else {
        Err(Rejected::BadSignature)
    }
}

/// Where a labeler's stream is and the key its labels are signed with, from
/// its DID document.
#[derive(Debug, Clone)]
pub struct LabelerIdentity {
    pub endpoint: String,
    pub key: PublicKey,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("labeler {did}: {problem}")]
    Unusable { did: String, problem: String },
    #[error("labeler {did}: resolving failed: {problem}")]
    Transient { did: String, problem: String },
}

/// The labeler's endpoint and key. A stale cached document is fetched again
/// when `refresh` is set (a signature failed: the key may have rotated).
pub async fn identity(
    resolver: &Resolver,
    did: &str,
    refresh: bool,
) -> Result<LabelerIdentity, IdentityError> {
    if refresh {
        resolver.refresh_if_older(did, KEY_REFRESH_AFTER);
    }
    let resolved = resolver.resolve_did(did).await.map_err(|e| {
        let (did, problem) = (did.to_owned(), e.to_string());
        if e.is_transient() {
            IdentityError::Transient { did, problem }
        } else {
            IdentityError::Unusable { did, problem }
        }
    })?;
    let doc = &resolved.document;
    let unusable = |problem: &str| IdentityError::Unusable {
        did: did.to_owned(),
        problem: problem.to_owned(),
    };
    let endpoint = doc
        .labeler
        .clone()
        .ok_or_else(|| unusable("DID document has no #atproto_labeler service"))?;
    let key = doc
        .label_key
        .clone()
        .ok_or_else(|| unusable("DID document has no #atproto_label key"))?;
    Ok(LabelerIdentity { endpoint, key })
}

/// The subscribeLabels URL of a labeler endpoint (`https://` → `wss://`).
pub fn subscribe_url(endpoint: &str, cursor: i64) -> String {
    let base = endpoint.trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    format!("{base}/xrpc/com.atproto.label.subscribeLabels?cursor={cursor}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyhose_proto::crypto::{Curve, SigningKey};

    fn label() -> Label {
        Label {
            ver: Some(1),
            src: "did:plc:labeler".into(),
            uri: "did:plc:abc".into(),
            cid: None,
            val: "spam".into(),
            neg: false,
            cts: "2026-01-01T00:00:00.000Z".into(),
            exp: None,
            sig: None,
        }
    }

    #[test]
    fn fields_and_signatures_are_checked() {
        let key = SigningKey::from_bytes(Curve::K256, &[3; 32]).unwrap();
        let mut l = label();
        assert_eq!(signed_by(&l, &key.public_key()), Err(Rejected::Unsigned));
        l.sig = Some(key.sign(&l.signing_bytes()).to_vec());
        assert_eq!(fields(&l, "did:plc:labeler"), Ok(()));
        assert_eq!(signed_by(&l, &key.public_key()), Ok(()));
        assert_eq!(
            fields(&l, "did:plc:other").map_err(|e| e.reason()),
            Err("other_source")
        );
        l.neg = true;
        assert_eq!(
            signed_by(&l, &key.public_key()),
            Err(Rejected::BadSignature)
        );
        for (field, bad) in [
            (
                "uri",
                Label {
                    uri: "nope".into(),
                    ..label()
                },
            ),
            (
                "cts",
                Label {
                    cts: "yesterday".into(),
                    ..label()
                },
            ),
            (
                "exp",
                Label {
                    exp: Some("x".into()),
                    ..label()
                },
            ),
            (
                "val",
                Label {
                    val: String::new(),
                    ..label()
                },
            ),
            (
                "cid",
                Label {
                    cid: Some("x".into()),
                    ..label()
                },
            ),
        ] {
            assert_eq!(
                fields(&bad, "did:plc:labeler"),
                Err(Rejected::BadField(field))
            );
        }
    }

    #[test]
    fn endpoints_become_websocket_urls() {
        assert_eq!(
            subscribe_url("https://mod.bsky.app/", 5),
            "wss://mod.bsky.app/xrpc/com.atproto.label.subscribeLabels?cursor=5"
        );
        assert_eq!(
            subscribe_url("ws://127.0.0.1:9", 0),
            "ws://127.0.0.1:9/xrpc/com.atproto.label.subscribeLabels?cursor=0"
        );
    }
}
