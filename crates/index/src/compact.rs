//! The compact forms of likes and reposts (migration 0021): record keys as
//! 64-bit integers, references to records as (authority, collection, key),
//! CIDs as their bytes. Every conversion here is exact: a value is made
//! compact only when the SQL functions of migration 0021 (`tid_text`,
//! `at_uri`, `cid_text`) render it back to the same text, and anything else
//! keeps its record text, from which the views read it.

use skyhose_proto::tid::Tid;
use skyhose_proto::Cid;

/// A record key as stored: a TID's value, or a name kept in `rkey_names`
/// (stored as minus its id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKey<'a> {
    Tid(i64),
    Name(&'a str),
}

impl<'a> RecordKey<'a> {
    pub fn of(text: &'a str) -> RecordKey<'a> {
        match Tid::parse(text) {
            // A TID has its top bit clear, so its value fits an i64.
            Ok(tid) => match i64::try_from(tid.as_u64()) {
                Ok(value) => RecordKey::Tid(value),
                Err(_) => RecordKey::Name(text),
            },
            Err(_) => RecordKey::Name(text),
        }
    }
}

/// An AT-URI `at://<authority>/<collection>/<rkey>`, each part non-empty
/// and without `/`: what `at_uri` renders back exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reference<'a> {
    pub authority: &'a str,
    pub collection: &'a str,
    pub rkey: RecordKey<'a>,
}

impl<'a> Reference<'a> {
    pub fn parse(uri: &'a str) -> Option<Reference<'a>> {
        let rest = uri.strip_prefix("at://")?;
        let mut parts = rest.split('/');
        let (authority, collection, rkey) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || [authority, collection, rkey].iter().any(|p| p.is_empty()) {
            return None;
        }
        Some(Reference {
            authority,
            collection,
            rkey: RecordKey::of(rkey),
        })
    }
}

/// The bytes of a CID text that `cid_text` renders back exactly: a base32
/// sha-256 CIDv1. Any other text is kept as written.
pub fn cid_bytes(text: &str) -> Option<Vec<u8>> {
    let cid = Cid::parse(text).ok()?;
    (cid.to_string() == text).then(|| cid.to_bytes().to_vec())
}

/// The strong-reference columns of a like or repost row, in the kind
/// table's column order: subject uri and cid, via uri and cid, createdAt.
pub const SUBJECT_URI: usize = 0;
pub const SUBJECT_CID: usize = 1;
pub const VIA_URI: usize = 2;
pub const VIA_CID: usize = 3;
pub const CREATED_AT: usize = 4;

/// Whether every strong reference of a like or repost (`columns` as
/// extracted) has a compact form, so that its views can rebuild the
/// record text from the row: the subject always, the via when present.
pub fn strong_refs_compact(columns: &[Option<String>]) -> bool {
    let reference = |uri: usize, cid: usize| {
        let uri = columns.get(uri).and_then(Option::as_deref);
        let cid = columns.get(cid).and_then(Option::as_deref);
        uri.is_some_and(|uri| Reference::parse(uri).is_some())
            && cid.is_some_and(|cid| cid_bytes(cid).is_some())
    };
    let via_absent = columns.get(VIA_URI).is_none_or(Option::is_none)
        && columns.get(VIA_CID).is_none_or(Option::is_none);
    reference(SUBJECT_URI, SUBJECT_CID) && (via_absent || reference(VIA_URI, VIA_CID))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_are_tids_or_names() {
        assert_eq!(RecordKey::of("2222222222222"), RecordKey::Tid(0));
        assert_eq!(RecordKey::of("2222222222223"), RecordKey::Tid(1));
        assert!(matches!(RecordKey::of("3lbtbmvfj6k2a"), RecordKey::Tid(v) if v > 0));
        // A first character past `j` would need the 64th bit.
        assert_eq!(
            RecordKey::of("k222222222222"),
            RecordKey::Name("k222222222222")
        );
        assert_eq!(RecordKey::of("self"), RecordKey::Name("self"));
        assert_eq!(RecordKey::of("whats-hot"), RecordKey::Name("whats-hot"));
    }

    #[test]
    fn references_have_exactly_three_non_empty_parts() {
        let parsed = Reference::parse("at://did:plc:a/app.bsky.feed.post/3lbtbmvfj6k2a");
        assert_eq!(
            parsed.map(|r| (r.authority, r.collection)),
            Some(("did:plc:a", "app.bsky.feed.post"))
        );
        for bad in [
            "at://did:plc:a/app.bsky.feed.post",
            "at://did:plc:a/app.bsky.feed.post/",
            "at://did:plc:a//3l",
            "at:///app.bsky.feed.post/3l",
            "at://did:plc:a/app.bsky.feed.post/3l/x",
            "https://did:plc:a/app.bsky.feed.post/3l",
            "",
        ] {
            assert_eq!(Reference::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_cids_that_render_back_are_compact() {
        let cid = Cid::for_dag_cbor(b"x").to_string();
        assert_eq!(cid_bytes(&cid).map(|b| b.len()), Some(36));
        assert_eq!(cid_bytes(&cid.to_uppercase()), None);
        assert_eq!(cid_bytes("bafyp"), None);
        assert_eq!(
            cid_bytes("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"),
            None
        );
    }

    #[test]
    fn a_like_is_compact_when_its_references_are() {
        let cid = Cid::for_dag_cbor(b"x").to_string();
        let post = "at://did:plc:b/app.bsky.feed.post/3lbtbmvfj6k2a".to_owned();
        let repost = "at://did:plc:c/app.bsky.feed.repost/3lbtbmvfj6k2b".to_owned();
        let columns = |via: Option<(&str, &str)>| {
            vec![
                Some(post.clone()),
                Some(cid.clone()),
                via.map(|(uri, _)| uri.to_owned()),
                via.map(|(_, cid)| cid.to_owned()),
                Some("2024-01-01T00:00:00.000Z".to_owned()),
            ]
        };
        assert!(strong_refs_compact(&columns(None)));
        assert!(strong_refs_compact(&columns(Some((&repost, &cid)))));
        assert!(!strong_refs_compact(&columns(Some((&repost, "bafyp")))));
        assert!(!strong_refs_compact(&columns(Some(("at://x", &cid)))));
        let mut no_subject = columns(None);
        no_subject[SUBJECT_URI] = None;
        assert!(!strong_refs_compact(&no_subject));
    }
}
