//! Opaque pagination cursors. A cursor is a keyset position (`sort key`, `uri`)
//! so pages stay stable while new rows arrive; it is base64url text so clients
//! treat it as opaque and we can change its contents later.

use data_encoding::BASE64URL_NOPAD;

use crate::error::XrpcError;

/// A position after which the next page starts (exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub key: String,
    pub uri: String,
}

impl Cursor {
    pub fn new(key: impl Into<String>, uri: impl Into<String>) -> Self {
        Cursor {
            key: key.into(),
            uri: uri.into(),
        }
    }

    pub fn encode(&self) -> String {
        BASE64URL_NOPAD.encode(format!("{}\n{}", self.key, self.uri).as_bytes())
    }

    pub fn decode(text: &str) -> Result<Self, XrpcError> {
        let bad = || XrpcError::bad_param("cursor", "not a cursor this service issued");
        if text.len() > 1024 {
            return Err(bad());
        }
        let bytes = BASE64URL_NOPAD.decode(text.as_bytes()).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let (key, uri) = text.split_once('\n').ok_or_else(bad)?;
        Ok(Cursor::new(key, uri))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let c = Cursor::new("3k2a", "at://did:plc:x/app.bsky.feed.post/3k2a");
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "!!!", "bm9uZXdsaW5l", &"A".repeat(5000)] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }
}
