//! SQL fragments that select likes, reposts (migration 0021) and follows
//! (migration 0023) by their stored keys: their views show the text
//! columns, but only the compact columns are indexed, so a filter that
//! wants an index's order must name those. And the CIDs of compact rows,
//! which the API derives in Rust where a row stores none.

use std::collections::HashMap;

use serde_json::Value;

use crate::db::{unreadable_row, RowExt};
use crate::error::XrpcResult;
use crate::views::Db;

/// The `dids` id of the account whose DID is the SQL text expression
/// `did` (a parameter or a qualified column: an unqualified `did` would
/// name the subquery's own column), NULL when it has none, as a subquery.
/// The SQL function `did_id` does the same, but a function that reads a
/// table is never inlined: each execution of a statement parsed and
/// planned its body again for each place it was called (about 50
/// microseconds under load, four times a timeline), where a subquery is
/// planned once with the statement.
pub(crate) fn did_id(did: &str) -> String {
    format!("(SELECT known.id FROM dids known WHERE known.did = {did})")
}

/// The `collections` id of the collection `nsid` (an SQL text expression,
/// as for [`did_id`]), as a subquery rather than the SQL function
/// `collection_id`, for the same reason.
pub(crate) fn collection_id(nsid: &str) -> String {
    format!("(SELECT known.id FROM collections known WHERE known.nsid = {nsid})")
}

/// The `dids` id of the account that holds the record at the SQL text
/// expression `uri` (NULL when `uri` is not a record's or the account has
/// none): the SQL function `ref_actor`, its table read as a subquery
/// ([`did_id`]).
pub(crate) fn ref_actor(uri: &str) -> String {
    did_id(&format!("uri_authority({uri})"))
}

/// The rows of `alias` (the `likes` or `reposts` view) whose subject is
/// the record at the SQL text expression `uri`; none when `uri` is not
/// exactly `at://<authority>/<collection>/<rkey>` or names nothing stored.
/// The ids are looked up as the SQL functions `ref_actor`, `ref_rkey` and
/// `ref_collection` do, the table reads as subqueries ([`did_id`]).
pub(crate) fn subject_is(alias: &str, uri: &str) -> String {
    format!(
        "{alias}.subject_actor = {actor} AND {alias}.subject_rkey = ref_rkey({uri}) \
         AND {alias}.subject_collection = {collection}",
        actor = ref_actor(uri),
        collection = collection_id(&format!("split_part({uri}, '/', 4)")),
    )
}

/// The uri of the viewer's own live row `v` of the compact table `raw`
/// (`like_rows` or `repost_rows`, records of `collection`) that meets
/// `subject` (an SQL condition on `v`, such as [`subject_is`]`("v", uri)`),
/// the oldest when there are several; `viewer` is the SQL expression of
/// the viewer's `dids` id and `viewer_did` of their DID, from which the
/// uri is written (through the `likes` view, each row would look its
/// author's DID up again). The row is found through `(actor,
/// subject_actor, subject_rkey)`: ordered by the bare key, the planner
/// would rather walk the subject's index in key order and filter on the
/// viewer, reading every like of a popular post (3,871 rows a post
/// measured, 48 ms a page against 3.7), so the order is by an expression
/// no index gives.
pub(crate) fn viewer_row(
    raw: &str,
    collection: &str,
    viewer: &str,
    viewer_did: &str,
    subject: &str,
) -> String {
    format!(
        "(SELECT 'at://' || {viewer_did} || '/{collection}/' || rkey_text(v.rkey) \
         FROM {raw} v WHERE v.actor = {viewer} AND v.live AND {subject} \
         ORDER BY v.rkey + 0 LIMIT 1)"
    )
}

/// The CID a like, repost or follow row of the compact table `raw` stores:
/// NULL when its views derive it from the record they rebuild (migration
/// 0027), which [`row_cid`] then does in Rust. Derived in SQL, a CID costs
/// about 200 microseconds; here, a few.
fn stored_cid(raw: &str) -> String {
    format!("COALESCE(cid_text({raw}.cid), {raw}.cid_string)")
}

/// What a feed shows of the live repost whose stored key is `(actor,
/// rkey)` (SQL expressions): a subquery with `subject_uri`, `record` (the
/// view's, as text), `stored_cid` ([`stored_cid`], for [`row_cid`]) and
/// `indexed_at`, read through the `reposts` view by its primary key. Used
/// as a LATERAL subquery, one repost at a time: joined as a set, the
/// planner reads each reposter's live reposts whole.
pub(crate) fn shown_repost(actor: &str, rkey: &str) -> String {
    format!(
        "(SELECT r.subject_uri, r.record::text AS record, {stored} AS stored_cid, r.indexed_at \
         FROM reposts r JOIN repost_rows l ON l.actor = r.actor AND l.rkey = r.rkey_id \
         WHERE r.actor = {actor} AND r.rkey_id = {rkey} OFFSET 0)",
        stored = stored_cid("l"),
    )
}

/// The CID of a compact row: the one it stores ([`stored_cid`]), else that
/// of the record its view shows (`record`, rebuilt), as the view derives it.
pub(crate) fn row_cid(stored: Option<String>, record: Option<&str>) -> Option<String> {
    stored.or_else(|| {
        record
            .and_then(skyhose_proto::datamodel::record_cid)
            .map(|cid| cid.to_string())
    })
}

/// The CID and record of each live record of `uris` that has a record
/// (`records_at`): the CID its row stores, else that of the record its
/// view rebuilds ([`row_cid`]); none for a record whose CID is unknown.
pub(crate) async fn live_records(
    client: &Db,
    uris: &[String],
) -> XrpcResult<HashMap<String, (Option<String>, Value)>> {
    if uris.is_empty() {
        return Ok(HashMap::new());
    }
    let stmt = client
        .prepare_cached(
            "SELECT r.uri, r.stored_cid, r.record::text AS record FROM records_at($1::text[]) AS r \
             WHERE r.live AND r.record IS NOT NULL",
        )
        .await?;
    let mut records = HashMap::new();
    for row in client.query(&stmt, &[&uris]).await? {
        let text: String = row.col("record")?;
        let cid = row_cid(row.col("stored_cid")?, Some(&text));
        let record: Value =
            serde_json::from_str(&text).map_err(|_| unreadable_row("a record that is not JSON"))?;
        records.insert(row.col("uri")?, (cid, record));
    }
    Ok(records)
}

/// The live reposts as stored, by the `reposts` view's keys (`actor`,
/// `rkey_id`, `rkey`) and `has_subject`: whether the repost names a
/// subject, told from the stored reference or else the record's text. A
/// page's reposts are chosen from these, and only the chosen ones are
/// read through the view, which renders every column of every row it
/// reads (a subject's uri costs a lookup of its account: 10 ms of a
/// timeline's 15 for 46 accounts, against 4 from these).
pub(crate) const LIVE_REPOST_KEYS: &str =
    "(SELECT actor, rkey AS rkey_id, rkey_text(rkey) AS rkey, \
     subject_actor IS NOT NULL OR (record -> 'subject' ->> 'uri') IS NOT NULL AS has_subject \
     FROM repost_rows WHERE live)";

/// One account's rows of `alias`, the account given by the SQL text
/// expression `did`: a range of the primary key `(actor, rkey)`, newest
/// first by `ORDER BY alias.rkey_id DESC`, a total order within one account
/// (so no uri need be rendered to break ties). With a cursor (`$key`, its
/// record key) the range ends there, so a page starts at its position;
/// `Keyset::after` still decides the position exactly.
pub(crate) fn account_rows(alias: &str, did: &str, cursor_key: Option<usize>) -> String {
    until_cursor(
        format!("{alias}.actor = {}", did_id(did)),
        alias,
        cursor_key,
    )
}

/// The follows of `alias` (the `follows` view) whose subject is the
/// account given by the SQL text expression `did`: a range of the
/// `(subject_actor, rkey DESC)` index, newest first by `ORDER BY
/// alias.rkey_id DESC`, ending at the cursor's key as [`account_rows`].
pub(crate) fn followers_of(alias: &str, did: &str, cursor_key: Option<usize>) -> String {
    until_cursor(
        format!("{alias}.subject_actor = {}", did_id(did)),
        alias,
        cursor_key,
    )
}

/// `rows`, bounded at the cursor's record key `$key` when there is one:
/// a listing in `rkey_id` order then starts at the cursor's position.
pub(crate) fn until_cursor(rows: String, alias: &str, cursor_key: Option<usize>) -> String {
    match cursor_key {
        Some(key) => format!("{rows} AND {alias}.rkey_id <= rkey_id(${key})"),
        None => rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_without_a_stored_cid_has_its_rebuilt_record_s() {
        // The CID the views derive for this repost (`strong_ref_record_cid`
        // over the same fields): the canonical DAG-CBOR of the record.
        let record = r#"{"$type":"app.bsky.feed.repost","subject":{"cid":"bafyreih4wp2q5fugnjuj3iwmmtnjx3s5ymcizgo4yb4rasspmxyrjy7fma","uri":"at://did:plc:b/app.bsky.feed.post/3l"},"createdAt":"2024-01-01T00:00:00.000Z"}"#;
        let derived = row_cid(None, Some(record)).expect("a derived CID");
        assert!(derived.starts_with("bafyrei"), "{derived}");
        let reordered = r#"{"createdAt":"2024-01-01T00:00:00.000Z","subject":{"uri":"at://did:plc:b/app.bsky.feed.post/3l","cid":"bafyreih4wp2q5fugnjuj3iwmmtnjx3s5ymcizgo4yb4rasspmxyrjy7fma"},"$type":"app.bsky.feed.repost"}"#;
        assert_eq!(row_cid(None, Some(reordered)), Some(derived));
        assert_eq!(
            row_cid(Some("bafystored".into()), Some(record)),
            Some("bafystored".into())
        );
        assert_eq!(row_cid(None, None), None);
        assert_eq!(row_cid(None, Some("not json")), None);
    }

    #[test]
    fn filters_name_the_indexed_columns() {
        assert_eq!(
            subject_is("l", "$1"),
            "l.subject_actor = (SELECT known.id FROM dids known WHERE known.did = uri_authority($1)) \
             AND l.subject_rkey = ref_rkey($1) AND l.subject_collection = \
             (SELECT known.id FROM collections known WHERE known.nsid = split_part($1, '/', 4))"
        );
        assert_eq!(
            account_rows("r", "a.did", None),
            "r.actor = (SELECT known.id FROM dids known WHERE known.did = a.did)"
        );
        assert_eq!(
            account_rows("r", "$1", Some(3)),
            "r.actor = (SELECT known.id FROM dids known WHERE known.did = $1) \
             AND r.rkey_id <= rkey_id($3)"
        );
        assert_eq!(
            followers_of("f", "$1", Some(2)),
            "f.subject_actor = (SELECT known.id FROM dids known WHERE known.did = $1) \
             AND f.rkey_id <= rkey_id($2)"
        );
    }
}
