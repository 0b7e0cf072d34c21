//! Syntax of the AT Protocol's identifiers: DID, handle, NSID, AT-URI, TID,
//! record key, datetime, CID string, language tag and generic URI. `is_*` answer
//! yes or no on hot paths; `validate_*` say what was wrong, naming the input.
//! These are syntax checks: a datetime like `0000-01-01T00:00:00Z` or a language
//! tag with an unregistered subtag passes (the fixtures' `*_parse_invalid` cases);
//! rejecting those needs a calendar or registry, which no caller here needs.

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
            .first()
            .and_then(|domain| domain.bytes().next())
            .is_some_and(|b| b.is_ascii_alphabetic())
        && segments.last().is_some_and(|name| {
            name.bytes().all(|b| b.is_ascii_alphanumeric())
                && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        })
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

/// An identifier that failed its syntax check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a valid {kind}")]
pub struct SyntaxError {
    pub kind: &'static str,
    /// The input, cut at 100 characters.
    pub input: String,
}

fn check(ok: bool, kind: &'static str, input: &str) -> Result<(), SyntaxError> {
    if ok {
        Ok(())
    } else {
        Err(SyntaxError {
            kind,
            input: input.chars().take(100).collect(),
        })
    }
}

pub fn validate_did(s: &str) -> Result<(), SyntaxError> {
    check(is_did(s), "DID", s)
}
pub fn validate_handle(s: &str) -> Result<(), SyntaxError> {
    check(is_handle(s), "handle", s)
}
pub fn validate_at_identifier(s: &str) -> Result<(), SyntaxError> {
    check(is_did(s) || is_handle(s), "DID or handle", s)
}
pub fn validate_nsid(s: &str) -> Result<(), SyntaxError> {
    check(is_nsid(s), "NSID", s)
}
pub fn validate_at_uri(s: &str) -> Result<(), SyntaxError> {
    check(parse_at_uri(s).is_some(), "AT-URI", s)
}
pub fn validate_tid(s: &str) -> Result<(), SyntaxError> {
    check(is_tid(s), "TID", s)
}
pub fn validate_record_key(s: &str) -> Result<(), SyntaxError> {
    check(is_record_key(s), "record key", s)
}
pub fn validate_datetime(s: &str) -> Result<(), SyntaxError> {
    check(is_datetime(s), "datetime", s)
}
pub fn validate_cid(s: &str) -> Result<(), SyntaxError> {
    check(is_cid(s), "CID", s)
}
pub fn validate_language(s: &str) -> Result<(), SyntaxError> {
    check(is_language(s), "language tag", s)
}
pub fn validate_uri(s: &str) -> Result<(), SyntaxError> {
    check(is_uri(s), "URI", s)
}

const TID_ALPHABET: &[u8] = b"234567abcdefghijklmnopqrstuvwxyz";

/// 13 base32-sortable characters; the first keeps the top bit clear.
pub fn is_tid(s: &str) -> bool {
    s.len() == 13
        && s.bytes().all(|b| TID_ALPHABET.contains(&b))
        && s.bytes()
            .next()
            .is_some_and(|b| b"234567abcdefghij".contains(&b))
}

/// RFC 3339 as the AT Protocol narrows it: `YYYY-MM-DDTHH:MM:SS[.fff]` with an
/// uppercase `T`, and `Z` or a `±HH:MM` offset other than `-00:00`.
pub fn is_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |from: usize, to: usize| {
        b.get(from..to)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let num = |from: usize, to: usize| s.get(from..to).and_then(|d| d.parse::<u32>().ok());
    if s.len() > 64 || b.len() < 20 || !digits(0, 4) || !digits(5, 7) || !digits(8, 10) {
        return false;
    }
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return false;
    }
    if !digits(11, 13) || !digits(14, 16) || !digits(17, 19) {
        return false;
    }
    let in_range = num(5, 7).is_some_and(|m| (1..=12).contains(&m))
        && num(8, 10).is_some_and(|d| (1..=31).contains(&d))
        && num(11, 13).is_some_and(|h| h <= 23)
        && num(14, 16).is_some_and(|m| m <= 59)
        && num(17, 19).is_some_and(|sec| sec <= 60);
    if !in_range {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    match rest.as_bytes() {
        b"Z" => true,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit())
                && !(*sign == b'-' && rest == "-00:00")
                && rest[1..3].parse::<u32>().is_ok_and(|h| h <= 23)
                && rest[4..6].parse::<u32>().is_ok_and(|m| m <= 59)
        }
        _ => false,
    }
}

/// The string form of a CID as the syntax spec allows it (any version/base).
pub fn is_cid(s: &str) -> bool {
    (8..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'=')
        && !s.starts_with("Qmb")
}

/// A BCP-47 language tag, loosely: a 2-3 letter primary tag (or `i`), then
/// alphanumeric subtags.
pub fn is_language(s: &str) -> bool {
    let mut parts = s.split('-');
    let primary = parts.next().unwrap_or_default();
    // `i-` and `x-` are the grandfathered and private-use prefixes.
    let primary_ok = matches!(primary, "i" | "I" | "x" | "X")
        || ((2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_lowercase()));
    primary_ok
        && parts
            .all(|p| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A generic URI: a scheme, a colon, and no whitespace.
pub fn is_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    s.len() <= 8192
        && scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase())
        && scheme.len() <= 81
        && scheme.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'.' | b'-')
        })
        && !rest.is_empty()
        && !rest
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
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
