//! Syntax checks for the identifiers the index relies on (DIDs, handles,
//! NSIDs, record keys, AT-URIs). Only what is needed to reject an entry
//! before it reaches a transaction.

pub fn is_did(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("did:") else {
        return false;
    };
    let Some((method, id)) = rest.split_once(':') else {
        return false;
    };
    s.len() <= 2048
        && !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_lowercase())
        && !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'%' | b'-'))
        && !id.ends_with(':')
        && !id.ends_with('%')
}

pub fn is_handle(s: &str) -> bool {
    let labels: Vec<&str> = s.split('.').collect();
    s.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        && labels
            .last()
            .and_then(|tld| tld.bytes().next())
            .map(|b| b.is_ascii_alphabetic())
            .unwrap_or(false)
}

pub fn is_nsid(s: &str) -> bool {
    let segments: Vec<&str> = s.split('.').collect();
    s.len() <= 317
        && segments.len() >= 3
        && segments.iter().all(|segment| {
            !segment.is_empty()
                && segment.len() <= 63
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !segment.starts_with('-')
                && !segment.ends_with('-')
        })
        && segments
            .last()
            .map(|name| name.bytes().all(|b| b.is_ascii_alphanumeric()))
            .unwrap_or(false)
}

pub fn is_record_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 512
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'~'))
}

/// The parts of an `at://authority[/collection[/rkey]]` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtUri<'a> {
    pub authority: &'a str,
    pub collection: Option<&'a str>,
    pub rkey: Option<&'a str>,
}

pub fn parse_at_uri(s: &str) -> Option<AtUri<'_>> {
    if s.len() > 8192 {
        return None;
    }
    let rest = s.strip_prefix("at://")?;
    let mut parts = rest.splitn(3, '/');
    let authority = parts.next()?;
    if !(is_did(authority) || is_handle(authority)) {
        return None;
    }
    let collection = parts.next();
    let rkey = parts.next();
    if let Some(collection) = collection {
        if !is_nsid(collection) {
            return None;
        }
    }
    if let Some(rkey) = rkey {
        if !is_record_key(rkey) {
            return None;
        }
    }
    Some(AtUri {
        authority,
        collection,
        rkey,
    })
}

/// The DID that owns the record at `uri`, when its authority is a DID.
pub fn uri_owner_did(uri: &str) -> Option<&str> {
    parse_at_uri(uri)
        .map(|parsed| parsed.authority)
        .filter(|authority| authority.starts_with("did:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dids() {
        assert!(is_did("did:plc:z72i7hdynmk6r22z27h6tvur"));
        assert!(is_did("did:web:example.com"));
        assert!(!is_did("did:plc:"));
        assert!(!is_did("did:PLC:abc"));
        assert!(!is_did("not-a-did"));
        assert!(!is_did("did:plc:abc def"));
    }

    #[test]
    fn at_uris() {
        let uri = parse_at_uri("at://did:plc:abc/app.bsky.feed.post/3jzfcijpj2z2a");
        assert_eq!(
            uri,
            Some(AtUri {
                authority: "did:plc:abc",
                collection: Some("app.bsky.feed.post"),
                rkey: Some("3jzfcijpj2z2a"),
            })
        );
        assert!(parse_at_uri("at://alice.test/app.bsky.feed.post/x").is_some());
        assert!(parse_at_uri("https://did:plc:abc").is_none());
        assert!(parse_at_uri("at://bad authority/x.y.z/1").is_none());
        assert!(parse_at_uri("at://did:plc:abc/notnsid/1").is_none());
    }

    #[test]
    fn nsids_and_rkeys() {
        assert!(is_nsid("app.bsky.feed.post"));
        assert!(!is_nsid("app.bsky"));
        assert!(is_record_key("self"));
        assert!(!is_record_key(".."));
        assert!(!is_record_key("a/b"));
    }
}
