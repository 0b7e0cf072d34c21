//! Keyset paging of the listings that run newest first by `(rkey, uri)`:
//! the `limit` and `cursor` parameters, the statement's page clause and
//! parameters, and the next page's cursor from the last row. A statement's
//! own parameters come first (`$1..$n`), then the number of rows to read
//! (`$n+1`: the page size and one more, whose presence tells that another
//! page follows) and the cursor's key and URI (`$n+2`, `$n+3`).
//!
//! As the official AppView, a page has a cursor only when more rows follow
//! it: a listing that ends exactly at a full page gives none, rather than
//! a cursor to an empty last page.

use serde_json::{json, Value};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::cursor::Cursor;
use crate::db::RowExt;
use crate::error::XrpcResult;
use crate::routes::Ctx;
use crate::views::Db;

/// The page a request asks for.
pub(crate) struct Keyset {
    pub limit: i64,
    pub cursor: Option<Cursor>,
    /// Rows a statement reads: `limit` and one more.
    read: i64,
}

impl Keyset {
    /// `limit` (1 to 100, 50 when absent) and `cursor`.
    pub fn parse(ctx: &Ctx<'_>) -> XrpcResult<Self> {
        let limit = ctx.params.limit(1, 100, 50)?;
        Ok(Keyset {
            limit,
            cursor: ctx.params.cursor()?,
            read: limit + 1,
        })
    }

    /// `AND (alias.rkey, alias.uri) < (key, uri)` with a cursor; without one,
    /// a clause that keeps the statement's parameter list the same. `own` is
    /// the number of the statement's own parameters.
    pub fn after(&self, alias: &str, own: usize) -> String {
        let (key, uri) = (own + 2, own + 3);
        if self.cursor.is_some() {
            format!("AND ({alias}.rkey, {alias}.uri) < (${key}, ${uri})")
        } else {
            format!("AND ${key}::text IS NULL AND ${uri}::text IS NULL")
        }
    }

    /// The placeholder of the number of rows to read (the page size and
    /// one more).
    pub fn limit_param(own: usize) -> String {
        format!("${}", own + 1)
    }

    /// The placeholder number of the cursor's key, when there is a cursor
    /// (for `crate::compact::account_rows`).
    pub fn key_param(&self, own: usize) -> Option<usize> {
        self.cursor.is_some().then_some(own + 2)
    }

    /// The page clause, the order and the limit of a listing of `alias`
    /// rows, newest first.
    pub fn newest_first(&self, alias: &str, own: usize) -> String {
        self.newest_first_by(alias, "rkey", own)
    }

    /// The same, ordered by the column `key` that sorts as `rkey` does (a
    /// compact row's `rkey_id`), so that its index gives the order.
    pub fn newest_first_by(&self, alias: &str, key: &str, own: usize) -> String {
        format!(
            "{after} ORDER BY {alias}.{key} DESC, {alias}.uri DESC LIMIT {limit}",
            after = self.after(alias, own),
            limit = Self::limit_param(own)
        )
    }

    /// The cursor's key and URI as statement parameters (NULLs without one).
    pub fn cursor_params(&self) -> (Option<String>, Option<String>) {
        match &self.cursor {
            Some(c) => (Some(c.key.clone()), Some(c.uri.clone())),
            None => (None, None),
        }
    }

    /// `own` followed by the rows to read and the cursor's key and URI.
    fn params<'a>(
        &'a self,
        own: &[&'a (dyn ToSql + Sync)],
        key: &'a Option<String>,
        uri: &'a Option<String>,
    ) -> Vec<&'a (dyn ToSql + Sync)> {
        let mut all = own.to_vec();
        all.extend([&self.read as &(dyn ToSql + Sync), key, uri]);
        all
    }

    /// Runs `sql` over `own` and the page's parameters, and keeps the
    /// page's rows. The rows must have `rkey` and `uri` columns, for the
    /// next cursor.
    pub async fn fetch(
        &self,
        client: &Db,
        sql: &str,
        own: &[&(dyn ToSql + Sync)],
    ) -> XrpcResult<Page> {
        let (key, uri) = self.cursor_params();
        let stmt = client.prepare_cached(sql).await?;
        let mut rows = client.query(&stmt, &self.params(own, &key, &uri)).await?;
        let more = rows.len() as i64 > self.limit;
        rows.truncate(usize::try_from(self.limit).unwrap_or(0));
        Ok(Page { rows, more })
    }
}

/// One page of rows.
pub(crate) struct Page {
    pub rows: Vec<Row>,
    /// More rows follow the page's.
    more: bool,
}

impl Page {
    /// The text column `name` of every row, in order.
    pub fn column(&self, name: &str) -> XrpcResult<Vec<String>> {
        self.rows.iter().map(|row| row.col(name)).collect()
    }

    /// The next page's cursor, from the last row's `rkey` and `uri`, when
    /// more rows follow.
    pub fn next(&self) -> XrpcResult<Option<String>> {
        match self.rows.last() {
            Some(last) if self.more => Ok(Some(
                Cursor::new(last.col::<String>("rkey")?, last.col::<String>("uri")?).encode(),
            )),
            _ => Ok(None),
        }
    }
}

/// Adds `cursor` to a listing's output when there is a next page.
pub(crate) fn with_cursor(mut out: Value, next: Option<String>) -> Value {
    if let Some(next) = next {
        out["cursor"] = json!(next);
    }
    out
}
