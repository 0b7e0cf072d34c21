//! The labels' tables (migration 0018): each labeler's id and cursor, the
//! latest label per labeler, subject and value, and the operator's takedowns.

use deadpool_postgres::Pool;
use skyhose_index::RowExt;
use skyhose_proto::frame::Label;

use crate::LabelsError;

/// Upserts a batch of labels: per (uri, val), the one with the latest `cts`
/// (the first sent among equals) replaces the stored one only if that is
/// older, so the order labels arrive in does not change where they end.
const UPSERT: &str = "
INSERT INTO labels (uri, src, val, cid, neg, cts, exp, sig, ver)
SELECT DISTINCT ON (l.uri, l.val) l.uri, $1, l.val, l.cid, l.neg, l.cts, l.exp, l.sig, l.ver
FROM unnest($2::text[], $3::text[], $4::text[], $5::bool[], $6::text[], $7::text[], $8::bytea[], $9::int2[])
    WITH ORDINALITY AS l(uri, val, cid, neg, cts, exp, sig, ver, n)
ORDER BY l.uri, l.val, l.cts::timestamptz DESC, l.n
ON CONFLICT (uri, src, val) DO UPDATE
SET cid = EXCLUDED.cid, neg = EXCLUDED.neg, cts = EXCLUDED.cts, exp = EXCLUDED.exp,
    sig = EXCLUDED.sig, ver = EXCLUDED.ver
WHERE labels.cts::timestamptz < EXCLUDED.cts::timestamptz";

fn db(context: &str) -> impl FnOnce(tokio_postgres::Error) -> LabelsError + '_ {
    move |source| LabelsError::Db {
        context: context.to_owned(),
        source,
    }
}

async fn client(pool: &Pool) -> Result<deadpool_postgres::Object, LabelsError> {
    pool.get()
        .await
        .map_err(|e| LabelsError::Pool(e.to_string()))
}

/// The labeler's id, registering it on first sight, and its cursor.
pub async fn labeler(pool: &Pool, did: &str) -> Result<(i32, i64), LabelsError> {
    let client = client(pool).await?;
    let row = client
        .query_one(
            "INSERT INTO labelers (did) VALUES ($1)
             ON CONFLICT (did) DO UPDATE SET did = EXCLUDED.did
             RETURNING id, cursor",
            &[&did],
        )
        .await
        .map_err(db("registering a labeler"))?;
    let context = "reading a labeler's cursor";
    Ok((row.col("id", context)?, row.col("cursor", context)?))
}

/// Stores checked labels of labeler `id` and moves its cursor to `cursor`,
/// in one transaction; returns how many label rows changed.
pub async fn store(
    pool: &Pool,
    id: i32,
    cursor: i64,
    labels: &[Label],
) -> Result<u64, LabelsError> {
    let mut client = client(pool).await?;
    let tx = client
        .transaction()
        .await
        .map_err(db("starting a labels transaction"))?;
    let mut changed = 0;
    if !labels.is_empty() {
        let uris: Vec<&str> = labels.iter().map(|l| l.uri.as_str()).collect();
        let vals: Vec<&str> = labels.iter().map(|l| l.val.as_str()).collect();
        let cids: Vec<Option<&str>> = labels.iter().map(|l| l.cid.as_deref()).collect();
        let negs: Vec<bool> = labels.iter().map(|l| l.neg).collect();
        let ctss: Vec<&str> = labels.iter().map(|l| l.cts.as_str()).collect();
        let exps: Vec<Option<&str>> = labels.iter().map(|l| l.exp.as_deref()).collect();
        let sigs: Vec<&[u8]> = labels
            .iter()
            .map(|l| l.sig.as_deref().unwrap_or_default())
            .collect();
        let vers: Vec<Option<i16>> = labels
            .iter()
            .map(|l| l.ver.and_then(|v| i16::try_from(v).ok()))
            .collect();
        changed = tx
            .execute(
                UPSERT,
                &[&id, &uris, &vals, &cids, &negs, &ctss, &exps, &sigs, &vers],
            )
            .await
            .map_err(db("storing labels"))?;
    }
    tx.execute(
        "UPDATE labelers SET cursor = $2 WHERE id = $1",
        &[&id, &cursor],
    )
    .await
    .map_err(db("moving a labeler's cursor"))?;
    tx.commit().await.map_err(db("committing labels"))?;
    Ok(changed)
}

/// Takes `subject` (a DID or a record's AT-URI) down, or changes the reason
/// of its takedown.
pub async fn takedown(pool: &Pool, subject: &str, reason: &str) -> Result<(), LabelsError> {
    client(pool)
        .await?
        .execute(
            "INSERT INTO takedowns (subject, reason) VALUES ($1, $2)
             ON CONFLICT (subject) DO UPDATE SET reason = EXCLUDED.reason, created_at = now()",
            &[&subject, &reason],
        )
        .await
        .map_err(db("recording a takedown"))?;
    Ok(())
}

/// Lifts the takedown of `subject`; returns the reason it had, if it was down.
pub async fn restore(pool: &Pool, subject: &str) -> Result<Option<String>, LabelsError> {
    let row = client(pool)
        .await?
        .query_opt(
            "DELETE FROM takedowns WHERE subject = $1 RETURNING reason",
            &[&subject],
        )
        .await
        .map_err(db("lifting a takedown"))?;
    row.map(|r| r.col("reason", "reading a lifted takedown"))
        .transpose()
        .map_err(LabelsError::from)
}
