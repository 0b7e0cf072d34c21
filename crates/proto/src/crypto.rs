//! atproto's public keys: secp256k1 (`ES256K`) and P-256 (`ES256`) as they
//! appear in DID documents (`Multikey` `publicKeyMultibase`, and the older
//! `EcdsaSecp256k1VerificationKey2019` / `EcdsaSecp256r1VerificationKey2019`
//! forms) and `did:key`, and low-S ECDSA-SHA256 verification. Signing is here
//! too, for the simulator and tests; production only verifies.

use k256::ecdsa::signature::{Signer, Verifier};

/// Multicodec varint prefixes of compressed public keys.
pub const SECP256K1_PUB: [u8; 2] = [0xe7, 0x01];
pub const P256_PUB: [u8; 2] = [0x80, 0x24];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    /// secp256k1, JWT `alg` `ES256K`.
    K256,
    /// NIST P-256, JWT `alg` `ES256`.
    P256,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    K256(k256::ecdsa::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key is not base58btc multibase (no leading z)")]
    NotMultibase,
    #[error("key is not valid base58btc")]
    Base58,
    #[error("key is neither a secp256k1 nor a P-256 multicodec key")]
    UnknownCodec,
    #[error("key is not a valid {0} point")]
    BadPoint(&'static str),
    #[error("not a did:key")]
    NotDidKey,
}

impl PublicKey {
    pub fn curve(&self) -> Curve {
        match self {
            PublicKey::K256(_) => Curve::K256,
            PublicKey::P256(_) => Curve::P256,
        }
    }

    /// From a compressed or uncompressed SEC1 point of the given curve.
    pub fn from_sec1(curve: Curve, point: &[u8]) -> Result<Self, KeyError> {
        match curve {
            Curve::K256 => k256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map(PublicKey::K256)
                .map_err(|_| KeyError::BadPoint("secp256k1")),
            Curve::P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map(PublicKey::P256)
                .map_err(|_| KeyError::BadPoint("P-256")),
        }
    }

    /// `z` + base58btc of a multicodec-prefixed compressed point (the
    /// `Multikey` form and the body of a `did:key`).
    pub fn from_multikey(multibase: &str) -> Result<Self, KeyError> {
        let encoded = multibase.strip_prefix('z').ok_or(KeyError::NotMultibase)?;
        let bytes = bs58::decode(encoded)
            .into_vec()
            .map_err(|_| KeyError::Base58)?;
        if let Some(point) = bytes.strip_prefix(&SECP256K1_PUB) {
            return Self::from_sec1(Curve::K256, point);
        }
        if let Some(point) = bytes.strip_prefix(&P256_PUB) {
            return Self::from_sec1(Curve::P256, point);
        }
        Err(KeyError::UnknownCodec)
    }

    /// `did:key:z…`.
    pub fn from_did_key(did_key: &str) -> Result<Self, KeyError> {
        let multibase = did_key
            .strip_prefix("did:key:")
            .ok_or(KeyError::NotDidKey)?;
        Self::from_multikey(multibase)
    }

    /// The `Multikey` `publicKeyMultibase` of this key (compressed point).
    pub fn to_multikey(&self) -> String {
        let (prefix, point) = match self {
            PublicKey::K256(k) => (SECP256K1_PUB, k.to_encoded_point(true).as_bytes().to_vec()),
            PublicKey::P256(k) => (P256_PUB, k.to_encoded_point(true).as_bytes().to_vec()),
        };
        let mut bytes = Vec::with_capacity(prefix.len() + point.len());
        bytes.extend_from_slice(&prefix);
        bytes.extend_from_slice(&point);
        format!("z{}", bs58::encode(bytes).into_string())
    }

    pub fn to_did_key(&self) -> String {
        format!("did:key:{}", self.to_multikey())
    }

    /// ECDSA-SHA256 over `msg` with a 64-byte r||s signature. atproto accepts
    /// only low-S signatures (on both curves), so high-S ones fail here even
    /// though they are mathematically valid.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match self {
            PublicKey::K256(key) => {
                let Ok(sig) = k256::ecdsa::Signature::from_slice(sig) else {
                    return false;
                };
                sig.normalize_s().is_none() && key.verify(msg, &sig).is_ok()
            }
            PublicKey::P256(key) => {
                let Ok(sig) = p256::ecdsa::Signature::from_slice(sig) else {
                    return false;
                };
                sig.normalize_s().is_none() && key.verify(msg, &sig).is_ok()
            }
        }
    }
}

/// A signing key, for the simulator, tests and the AppView's own service key.
#[derive(Clone)]
pub enum SigningKey {
    K256(k256::ecdsa::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

impl SigningKey {
    /// From 32 secret bytes; `None` when they are not a valid scalar.
    pub fn from_bytes(curve: Curve, secret: &[u8]) -> Option<Self> {
        match curve {
            Curve::K256 => k256::ecdsa::SigningKey::from_slice(secret)
                .ok()
                .map(SigningKey::K256),
            Curve::P256 => p256::ecdsa::SigningKey::from_slice(secret)
                .ok()
                .map(SigningKey::P256),
        }
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        match self {
            SigningKey::K256(k) => k.to_bytes().into(),
            SigningKey::P256(k) => k.to_bytes().into(),
        }
    }

    pub fn public_key(&self) -> PublicKey {
        match self {
            SigningKey::K256(k) => PublicKey::K256(*k.verifying_key()),
            SigningKey::P256(k) => PublicKey::P256(*k.verifying_key()),
        }
    }

    /// A low-S 64-byte r||s ECDSA-SHA256 signature of `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        match self {
            SigningKey::K256(k) => {
                let sig: k256::ecdsa::Signature = k.sign(msg);
                sig.normalize_s().unwrap_or(sig).to_bytes().into()
            }
            SigningKey::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(msg);
                sig.normalize_s().unwrap_or(sig).to_bytes().into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> [SigningKey; 2] {
        [
            SigningKey::from_bytes(Curve::K256, &[0x11; 32]).unwrap(),
            SigningKey::from_bytes(Curve::P256, &[0x22; 32]).unwrap(),
        ]
    }

    #[test]
    fn both_curves_round_trip_and_verify_low_s_only() {
        for key in keys() {
            let public = key.public_key();
            assert_eq!(
                PublicKey::from_multikey(&public.to_multikey()).unwrap(),
                public
            );
            assert_eq!(
                PublicKey::from_did_key(&public.to_did_key()).unwrap(),
                public
            );
            let sig = key.sign(b"msg");
            assert!(public.verify(b"msg", &sig));
            assert!(!public.verify(b"other", &sig));
            assert!(!public.verify(b"msg", &[0u8; 63]));
        }
        // The same signature with s replaced by n - s: valid ECDSA, but high-S.
        let [k, p] = keys();
        let low = k256::ecdsa::Signature::from_slice(&k.sign(b"msg")).unwrap();
        let high = k256::ecdsa::Signature::from_scalars(low.r(), -*low.s()).unwrap();
        assert!(!k.public_key().verify(b"msg", &high.to_bytes()));
        let low = p256::ecdsa::Signature::from_slice(&p.sign(b"msg")).unwrap();
        let high = p256::ecdsa::Signature::from_scalars(low.r(), -*low.s()).unwrap();
        assert!(!p.public_key().verify(b"msg", &high.to_bytes()));
    }

    fn multikey(prefix: [u8; 2], point: &[u8]) -> String {
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(point);
        format!("z{}", bs58::encode(bytes).into_string())
    }

    #[test]
    fn rejects_bad_multikeys() {
        for (mb, want) in [
            ("Q3shabc".to_owned(), KeyError::NotMultibase),
            ("z0OIl".to_owned(), KeyError::Base58),
            (multikey([0xed, 0x01], &[1; 32]), KeyError::UnknownCodec),
            (
                multikey(SECP256K1_PUB, &[9; 33]),
                KeyError::BadPoint("secp256k1"),
            ),
            (multikey(P256_PUB, &[2; 10]), KeyError::BadPoint("P-256")),
        ] {
            assert_eq!(PublicKey::from_multikey(&mb).unwrap_err(), want, "{mb}");
        }
        assert_eq!(
            PublicKey::from_did_key("did:web:x").unwrap_err(),
            KeyError::NotDidKey
        );
    }
}
