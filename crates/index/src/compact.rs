//! The compact forms of likes, reposts (migration 0021) and follows
//! (migration 0023): record keys as 64-bit integers, accounts as `dids`
//! ids, references to records as (authority, collection, key), CIDs as
//! their bytes, and the layout of each compact table. Every conversion
//! here is exact: a value is made compact only when the SQL functions of
//! migration 0021 (`tid_text`, `rkey_text`, `cid_text`) render it back to the
//! same text, and anything else keeps its record text, from which the views
//! read it.

use skyhose_proto::datetime::parse_utc_millis;
use skyhose_proto::tid::Tid;
use skyhose_proto::{datamodel, Cid};

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
/// and without `/`: what the state views render back exactly.
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

/// Whether `cid` is the CID of the canonical DAG-CBOR encoding of the
/// record `json`: then a row whose views rebuild the record need not store
/// it, since they derive the same CID (`strong_ref_record_cid` and
/// `follow_record_cid` of migration 0027).
pub fn derives_cid(json: &str, cid: &str) -> bool {
    datamodel::record_cid(json).is_some_and(|derived| derived.to_string() == cid)
}

/// A `createdAt` as a compact row stores it (migration 0027): microseconds
/// since the epoch when the text is exactly what `iso_millis` writes back,
/// else `None`, and the record keeps its text.
pub fn stored_time(created_at: &str) -> Option<i64> {
    parse_utc_millis(created_at)
}

/// What a compact row stores of a reference its record makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A strong reference to a record (`{"uri", "cid"}`), from the
    /// projected columns `uri` and `cid`: stored as `<name>_actor`,
    /// `<name>_collection`, `<name>_rkey` and `<name>_cid`.
    Record { uri: usize, cid: usize },
    /// An account, from the projected column holding its DID: stored as
    /// `<name>_actor`. Every text has an id in `dids`, so it is always
    /// compact.
    Account { did: usize },
}

/// One reference of a compact row: its column prefix, which is also its
/// field in the record (`subject`, `via`), and what it points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ref {
    pub name: &'static str,
    pub target: Target,
}

/// The stored columns of a compact table beyond its identity and state:
/// the references, then `created_at` (a timestamp, from the projected
/// column of that index, see [`stored_time`]). The first reference is the
/// record's subject, which every record of these kinds has.
#[derive(Debug)]
pub struct Layout {
    pub refs: &'static [Ref],
    pub created_at: usize,
}

/// Likes and reposts (migration 0021), over their projected columns
/// `subject_uri, subject_cid, via_uri, via_cid, created_at`.
pub const STRONG_REFS: Layout = Layout {
    refs: &[
        Ref {
            name: "subject",
            target: Target::Record { uri: 0, cid: 1 },
        },
        Ref {
            name: "via",
            target: Target::Record { uri: 2, cid: 3 },
        },
    ],
    created_at: 4,
};

/// Follows (migration 0023), over `subject_did, created_at`.
pub const FOLLOW: Layout = Layout {
    refs: &[Ref {
        name: "subject",
        target: Target::Account { did: 0 },
    }],
    created_at: 1,
};

/// A table kept compact: its layout, and the view that shows every row
/// (tombstones too) with the text columns.
#[derive(Debug)]
pub struct Compact {
    pub layout: &'static Layout,
    pub state_view: &'static str,
}

impl Ref {
    /// The stored columns of this reference.
    pub fn columns(&self) -> Vec<String> {
        let parts: &[&str] = match self.target {
            Target::Record { .. } => &["actor", "collection", "rkey", "cid"],
            Target::Account { .. } => &["actor"],
        };
        parts
            .iter()
            .map(|part| format!("{}_{part}", self.name))
            .collect()
    }

    /// The column of the table's state view that shows the reference as
    /// text (rendered from the compact columns, else read from the
    /// record's text): `<name>_uri` for a record, `<name>_did` for an
    /// account.
    pub fn view_column(&self) -> String {
        let name = self.name;
        match self.target {
            Target::Record { .. } => format!("{name}_uri"),
            Target::Account { .. } => format!("{name}_did"),
        }
    }

    /// Whether the reference, as extracted into `columns`, has a compact
    /// form; `None` when it is absent.
    fn compact(&self, columns: &[Option<String>]) -> Option<bool> {
        let column = |index: usize| columns.get(index).and_then(Option::as_deref);
        match self.target {
            Target::Record { uri, cid } => match (column(uri), column(cid)) {
                (None, None) => None,
                (uri, cid) => Some(
                    uri.is_some_and(|uri| Reference::parse(uri).is_some())
                        && cid.is_some_and(|cid| cid_bytes(cid).is_some()),
                ),
            },
            Target::Account { did } => column(did).map(|_| true),
        }
    }
}

impl Layout {
    /// Whether every reference of a record (`columns` as extracted) has a
    /// compact form, and its `createdAt` a stored one, so that its views can
    /// rebuild the record text from the row: the subject always, the other
    /// references when present.
    pub fn rebuildable(&self, columns: &[Option<String>]) -> bool {
        let created_at = columns.get(self.created_at).and_then(Option::as_deref);
        created_at.and_then(stored_time).is_some()
            && self.refs.iter().enumerate().all(|(index, reference)| {
                match reference.compact(columns) {
                    Some(compact) => compact,
                    None => index > 0,
                }
            })
    }
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
        assert!(STRONG_REFS.rebuildable(&columns(None)));
        assert!(STRONG_REFS.rebuildable(&columns(Some((&repost, &cid)))));
        assert!(!STRONG_REFS.rebuildable(&columns(Some((&repost, "bafyp")))));
        assert!(!STRONG_REFS.rebuildable(&columns(Some(("at://x", &cid)))));
        let mut no_subject = columns(None);
        no_subject[0] = None;
        assert!(!STRONG_REFS.rebuildable(&no_subject));
        let mut other_time = columns(None);
        other_time[4] = Some("2024-01-01T00:00:00.000000Z".to_owned());
        assert!(!STRONG_REFS.rebuildable(&other_time));
    }

    #[test]
    fn derived_cids_are_those_of_the_canonical_encoding() {
        let like = r#"{"$type":"app.bsky.feed.like","createdAt":"2024-01-01T00:00:00.000Z","subject":{"cid":"bafyreia","uri":"at://did:plc:b/app.bsky.feed.post/3l"}}"#;
        let value = serde_json::from_str(like).expect("json");
        let model = datamodel::from_json(&value).expect("data model");
        let cid = Cid::for_dag_cbor(&skyhose_proto::cbor::encode(&model)).to_string();
        assert!(derives_cid(like, &cid));
        assert!(!derives_cid(like, &Cid::for_dag_cbor(b"other").to_string()));
        assert!(!derives_cid("not json", &cid));
    }

    #[test]
    fn a_follow_is_compact_when_it_has_a_subject() {
        let created = Some("2024-01-01T00:00:00.000Z".to_owned());
        assert!(FOLLOW.rebuildable(&[Some("did:plc:b".to_owned()), created.clone()]));
        assert!(!FOLLOW.rebuildable(&[None, created]));
        assert!(!FOLLOW.rebuildable(&[Some("did:plc:b".to_owned()), None]));
        assert_eq!(FOLLOW.refs[0].columns(), vec!["subject_actor".to_owned()]);
        assert_eq!(
            STRONG_REFS.refs[1].columns(),
            ["via_actor", "via_collection", "via_rkey", "via_cid"]
        );
    }
}
