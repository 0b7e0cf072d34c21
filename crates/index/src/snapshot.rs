//! Read-only views of the index used by tests, benchmarks and the binary:
//! the ground-truth-shaped snapshot and the resume point.

use std::collections::BTreeMap;

use deadpool_postgres::Pool;
use serde::Serialize;

use crate::db::RowExt;
use crate::error::IndexError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActorSnapshot {
    pub handle: Option<String>,
    pub status: String,
    pub followers: i64,
    pub follows: i64,
    pub posts: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PostSnapshot {
    pub likes: i64,
    pub reposts: i64,
    pub replies: i64,
    pub quotes: i64,
}

/// The indexed state in the simulator's ground-truth shape: live records
/// (uri -> cid), every actor seen, and the counts of every live post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub records: BTreeMap<String, String>,
    pub actors: BTreeMap<String, ActorSnapshot>,
    pub posts: BTreeMap<String, PostSnapshot>,
}

pub async fn snapshot(pool: &Pool) -> Result<Snapshot, IndexError> {
    let client = pool
        .get()
        .await
        .map_err(IndexError::pool("taking a snapshot"))?;
    let records = client
        .query("SELECT uri, cid FROM all_records WHERE live", &[])
        .await
        .map_err(IndexError::pg("reading live records"))?
        .iter()
        .map(|row| {
            const READING: &str = "reading live records";
            Ok((
                row.col("uri", READING)?,
                row.col::<Option<String>>("cid", READING)?
                    .unwrap_or_default(),
            ))
        })
        .collect::<Result<_, IndexError>>()?;
    let actors = client
        .query(
            "SELECT did, handle, status, followers, follows, posts FROM actors WHERE indexed",
            &[],
        )
        .await
        .map_err(IndexError::pg("reading actors"))?
        .iter()
        .map(|row| {
            const READING: &str = "reading actors";
            let actor = ActorSnapshot {
                handle: row.col("handle", READING)?,
                status: row.col("status", READING)?,
                followers: row.col("followers", READING)?,
                follows: row.col("follows", READING)?,
                posts: row.col("posts", READING)?,
            };
            Ok((row.col("did", READING)?, actor))
        })
        .collect::<Result<_, IndexError>>()?;
    let posts = client
        .query(
            "SELECT r.uri, COALESCE(c.likes, 0) AS likes, COALESCE(c.reposts, 0) AS reposts, \
                    COALESCE(c.replies, 0) AS replies, COALESCE(c.quotes, 0) AS quotes \
             FROM posts r LEFT JOIN LATERAL counts_of(r.actor, 'app.bsky.feed.post', r.rkey_id) c ON true",
            &[],
        )
        .await
        .map_err(IndexError::pg("reading post counts"))?
        .iter()
        .map(|row| {
            const READING: &str = "reading post counts";
            let counts = PostSnapshot {
                likes: row.col("likes", READING)?,
                reposts: row.col("reposts", READING)?,
                replies: row.col("replies", READING)?,
                quotes: row.col("quotes", READING)?,
            };
            Ok((row.col("uri", READING)?, counts))
        })
        .collect::<Result<_, IndexError>>()?;
    Ok(Snapshot {
        records,
        actors,
        posts,
    })
}

/// The committed-seq watermark: every event at or below it is in PostgreSQL.
pub async fn resume_seq(pool: &Pool) -> Result<Option<i64>, IndexError> {
    let client = pool
        .get()
        .await
        .map_err(IndexError::pool("reading the watermark"))?;
    let row = client
        .query_opt("SELECT seq FROM index_watermark", &[])
        .await
        .map_err(IndexError::pg("reading index_watermark"))?;
    row.map(|row| row.col("seq", "reading index_watermark"))
        .transpose()
}

pub(crate) async fn raise_watermark(pool: &Pool, seq: i64) -> Result<(), IndexError> {
    let client = pool
        .get()
        .await
        .map_err(IndexError::pool("raising the watermark"))?;
    client
        .execute(
            "INSERT INTO index_watermark (id, seq) VALUES (true, $1) \
             ON CONFLICT (id) DO UPDATE SET seq = GREATEST(index_watermark.seq, excluded.seq)",
            &[&seq],
        )
        .await
        .map_err(IndexError::pg(format!("raising index_watermark to {seq}")))?;
    Ok(())
}
