//! Listings that fill their page. A listing's rules may leave out rows its
//! page read (blocked or muted accounts, taken-down posts, filters applied
//! to hydrated views), which would hand the client a short page with a
//! cursor. As the official AppView does, a page holding less than half of
//! what was asked for is asked again from its cursor for the rows still
//! missing, up to [`MAX_REQUESTS`] pages in all, and the items are joined
//! into one page that carries the last cursor. A page at least half full
//! is served as it is: another read would cost more than it gives.
//!
//! A listing says what one of its pages is ([`Listing`]); this module alone
//! decides how pages are joined, so every listing fills its page the same
//! way.
//!
//! A page is JSON text from the start: a page that needs no other (most)
//! is sent as its handler wrote it, and joining pages reads their items as
//! raw JSON, never as trees (a feed page's post records would be parsed
//! and written again).

use std::collections::BTreeMap;

use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::error::{XrpcError, XrpcResult};
use crate::routes::Ctx;

/// Pages read for one answer at most, the official AppView's bound.
const MAX_REQUESTS: usize = 10;

/// One page of a listing, as its handler answers it alone.
pub(crate) struct Listing {
    /// The whole answer, as JSON text: its items under `field`, its
    /// cursor under `cursor` when another page follows.
    body: Box<RawValue>,
    /// The member of `body` holding the page's items.
    field: &'static str,
    /// The number of items asked for.
    limit: i64,
}

/// The members of a page's answer, each as JSON text.
type Members<'a> = BTreeMap<String, &'a RawValue>;

impl Listing {
    /// A page whose answer is `body`, an object with its items under
    /// `field`.
    pub fn serialize<T: Serialize>(body: &T, field: &'static str, limit: i64) -> XrpcResult<Self> {
        let body = serde_json::value::to_raw_value(body).map_err(|e| {
            tracing::error!(error = %e, "serialising a listing's page");
            XrpcError::internal()
        })?;
        Ok(Listing { body, field, limit })
    }

    /// The answer's members, its items and its cursor.
    fn read(&self) -> XrpcResult<(Members<'_>, Vec<&RawValue>, Option<String>)> {
        let unreadable = |e: serde_json::Error| {
            tracing::error!(error = %e, field = self.field, "reading a listing's page");
            XrpcError::internal()
        };
        let members: Members<'_> = serde_json::from_str(self.body.get()).map_err(unreadable)?;
        let items = match members.get(self.field) {
            Some(items) => serde_json::from_str(items.get()).map_err(unreadable)?,
            None => Vec::new(),
        };
        let cursor = match members.get("cursor") {
            Some(cursor) => serde_json::from_str(cursor.get()).map_err(unreadable)?,
            None => None,
        };
        Ok((members, items, cursor))
    }
}

/// Answers `ctx` with the page of `listing`, asking it again from its cursor
/// (with `limit` set to the items still missing) while the page is less
/// than half full and a cursor follows.
pub(crate) async fn fill_page<'a>(
    ctx: &Ctx<'a>,
    listing: impl AsyncFn(&Ctx<'a>) -> XrpcResult<Listing>,
) -> XrpcResult<Response> {
    let first = listing(ctx).await?;
    let mut filling = Filling::new(&first)?;
    while let Some((missing, cursor)) = filling.next_ask() {
        let next = Ctx {
            state: ctx.state,
            params: ctx.params.with_page(&missing.to_string(), &cursor),
            viewer: ctx.viewer.clone(),
            nsid: ctx.nsid,
            authorization: ctx.authorization,
        };
        filling.add(&listing(&next).await?)?;
    }
    let body = match filling.finish(&first)? {
        Some(joined) => joined,
        None => first.body,
    };
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )],
        Box::<str>::from(body).into_string(),
    )
        .into_response())
}

/// A page being filled: the items so far and the cursor the next page
/// would start at.
struct Filling {
    limit: usize,
    items: Vec<Box<RawValue>>,
    cursor: Option<String>,
    requests: usize,
}

impl Filling {
    fn new(first: &Listing) -> XrpcResult<Self> {
        let (_, items, cursor) = first.read()?;
        Ok(Filling {
            limit: usize::try_from(first.limit).unwrap_or(0),
            items: items.into_iter().map(RawValue::to_owned).collect(),
            cursor,
            requests: 1,
        })
    }

    /// The next page to ask for, as the number of items still missing and
    /// the cursor it starts at; none once the page is half full, the rows
    /// end or the pages asked reach the bound.
    fn next_ask(&self) -> Option<(usize, String)> {
        let cursor = self.cursor.as_ref()?;
        let enough = self.limit.div_ceil(2);
        (self.requests < MAX_REQUESTS && self.items.len() < enough)
            .then(|| (self.limit - self.items.len(), cursor.clone()))
    }

    /// Joins the page asked for; a cursor that did not move ends the
    /// listing.
    fn add(&mut self, page: &Listing) -> XrpcResult<()> {
        let (_, items, cursor) = page.read()?;
        self.requests += 1;
        self.items.extend(items.into_iter().map(RawValue::to_owned));
        let previous = self.cursor.take();
        self.cursor = cursor.filter(|c| Some(c) != previous.as_ref());
        Ok(())
    }

    /// The first page's answer with every item and the last cursor; none
    /// when no other page was read, the first page's answer being the
    /// whole answer.
    fn finish(self, first: &Listing) -> XrpcResult<Option<Box<RawValue>>> {
        if self.requests == 1 {
            return Ok(None);
        }
        let unwritable = |e: serde_json::Error| {
            tracing::error!(error = %e, "joining a listing's pages");
            XrpcError::internal()
        };
        let (mut members, _, _) = first.read()?;
        let items = serde_json::value::to_raw_value(&self.items).map_err(unwritable)?;
        members.insert(first.field.to_owned(), &items);
        let cursor = match &self.cursor {
            Some(cursor) => Some(serde_json::value::to_raw_value(cursor).map_err(unwritable)?),
            None => None,
        };
        match &cursor {
            Some(cursor) => members.insert("cursor".to_owned(), cursor),
            None => members.remove("cursor"),
        };
        serde_json::value::to_raw_value(&members)
            .map(Some)
            .map_err(unwritable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn listing(body: Value, limit: usize) -> Listing {
        Listing::serialize(&body, "items", limit as i64).expect("a page")
    }

    /// The answer of a filling whose first page is `first`.
    fn answer(filling: Filling, first: &Listing) -> Value {
        let body = filling
            .finish(first)
            .expect("an object")
            .unwrap_or_else(|| first.body.clone());
        serde_json::from_str(body.get()).expect("JSON")
    }

    /// A listing of `0..total` whose pages drop every multiple of three,
    /// with a cursor (the next position) while rows follow.
    fn page(total: usize, at: usize, limit: usize) -> Listing {
        let end = (at + limit).min(total);
        let items: Vec<usize> = (at..end).filter(|n| n % 3 != 0).collect();
        let mut body = json!({ "subject": "s", "items": items });
        if end < total {
            body["cursor"] = json!(end.to_string());
        }
        listing(body, limit)
    }

    /// The filled answer and the pages asked.
    fn filled(total: usize, limit: usize) -> (Value, usize) {
        let first = page(total, 0, limit);
        let mut filling = Filling::new(&first).expect("a page");
        let mut asked = 1;
        while let Some((missing, cursor)) = filling.next_ask() {
            asked += 1;
            let next = page(total, cursor.parse().expect("a position"), missing);
            filling.add(&next).expect("a page");
        }
        (answer(filling, &first), asked)
    }

    #[test]
    fn pages_less_than_half_full_are_filled_from_their_cursor() {
        // 0..2 drops 0: 1 is kept, half of two: served as it is.
        let (body, asked) = filled(30, 2);
        assert_eq!(body["items"], json!([1]));
        assert_eq!(body["cursor"], "2");
        assert_eq!(asked, 1);
        // 0..1 drops 0: one more asked from 1.
        let (body, asked) = filled(30, 1);
        assert_eq!(body["items"], json!([1]));
        assert_eq!(body["cursor"], "2");
        assert_eq!(asked, 2);
        // Five asked, 0..5 keeps 1, 2, 4: served as it is.
        let (body, asked) = filled(30, 5);
        assert_eq!(body["items"], json!([1, 2, 4]));
        assert_eq!(asked, 1);
        assert_eq!(body["subject"], "s");
    }

    /// A listing of `total` rows of which only those at or past `kept`
    /// are shown.
    fn sparse(total: usize, kept: usize, at: usize, limit: usize) -> Listing {
        let end = (at + limit).min(total);
        let items: Vec<usize> = (at..end).filter(|n| *n >= kept).collect();
        let mut body = json!({ "items": items });
        if end < total {
            body["cursor"] = json!(end.to_string());
        }
        listing(body, limit)
    }

    #[test]
    fn a_page_reads_on_for_the_rows_still_missing() {
        // Six asked, the first seven rows left out: 0..6 shows nothing,
        // 6..12 shows 7 to 11 (five of six): half full, the cursor is 12.
        let first = sparse(100, 7, 0, 6);
        let mut filling = Filling::new(&first).expect("a page");
        let (missing, cursor) = filling.next_ask().expect("an empty page");
        assert_eq!((missing, cursor.as_str()), (6, "6"));
        filling.add(&sparse(100, 7, 6, missing)).expect("a page");
        assert!(filling.next_ask().is_none());
        let body = answer(filling, &first);
        assert_eq!(body["items"], json!([7, 8, 9, 10, 11]));
        assert_eq!(body["cursor"], "12");
        // The rows end before the page is half full: no cursor.
        let first = sparse(9, 7, 0, 6);
        let mut filling = Filling::new(&first).expect("a page");
        while let Some((missing, cursor)) = filling.next_ask() {
            let next = sparse(9, 7, cursor.parse().expect("a position"), missing);
            filling.add(&next).expect("a page");
        }
        let body = answer(filling, &first);
        assert_eq!(body["items"], json!([7, 8]));
        assert!(body.get("cursor").is_none());
    }

    #[test]
    fn filling_stops_after_ten_pages_or_at_a_cursor_that_does_not_move() {
        // One row asked at a time from 0, 3, 6, ... (all dropped): ten
        // pages, then the cursor of the last.
        let first = page(1000, 0, 1);
        let mut filling = Filling::new(&first).expect("a page");
        let mut asked = 1;
        while let Some((_, cursor)) = filling.next_ask() {
            asked += 1;
            let at: usize = cursor.parse().expect("a position");
            filling.add(&page(1000, at + 2, 1)).expect("a page");
        }
        assert_eq!(asked, MAX_REQUESTS);
        let body = answer(filling, &first);
        assert_eq!(body["items"], json!([]));
        assert_eq!(body["cursor"], "28");

        let first = listing(json!({"items": [], "cursor": "c"}), 5);
        let mut filling = Filling::new(&first).expect("a page");
        let (missing, cursor) = filling.next_ask().expect("a short page");
        assert_eq!((missing, cursor.as_str()), (5, "c"));
        let next = listing(json!({"items": [7], "cursor": "c"}), 5);
        filling.add(&next).expect("a page");
        assert!(filling.next_ask().is_none());
        let body = answer(filling, &first);
        assert_eq!(body["items"], json!([7]));
        assert!(body.get("cursor").is_none());
    }
}
