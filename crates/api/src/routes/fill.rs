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

use axum::response::Response;
use serde::Serialize;
use serde_json::Value;

use crate::error::{XrpcError, XrpcResult};
use crate::routes::{json, Ctx};

/// Pages read for one answer at most, the official AppView's bound.
const MAX_REQUESTS: usize = 10;

/// One page of a listing, as its handler answers it alone.
pub(crate) struct Listing {
    /// The whole answer: its items under `field`, its cursor under
    /// `cursor` when another page follows.
    body: Value,
    /// The member of `body` holding the page's items.
    field: &'static str,
    /// The number of items asked for.
    limit: i64,
}

impl Listing {
    pub fn new(body: Value, field: &'static str, limit: i64) -> Self {
        Listing { body, field, limit }
    }

    /// A page whose answer is a typed value.
    pub fn serialize<T: Serialize>(body: &T, field: &'static str, limit: i64) -> XrpcResult<Self> {
        let body = serde_json::to_value(body).map_err(|e| {
            tracing::error!(error = %e, "serialising a listing's page");
            XrpcError::internal()
        })?;
        Ok(Listing::new(body, field, limit))
    }

    fn cursor(&self) -> Option<String> {
        self.body
            .get("cursor")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    fn take_items(&mut self) -> Vec<Value> {
        match self.body.get_mut(self.field).map(Value::take) {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        }
    }
}

/// Answers `ctx` with the page of `listing`, asking it again from its cursor
/// (with `limit` set to the items still missing) while the page is less
/// than half full and a cursor follows.
pub(crate) async fn fill_page<'a>(
    ctx: &Ctx<'a>,
    listing: impl AsyncFn(&Ctx<'a>) -> XrpcResult<Listing>,
) -> XrpcResult<Response> {
    let mut filling = Filling::new(listing(ctx).await?);
    while let Some((missing, cursor)) = filling.next_ask() {
        let next = Ctx {
            state: ctx.state,
            params: ctx.params.with_page(&missing.to_string(), &cursor),
            viewer: ctx.viewer.clone(),
            nsid: ctx.nsid,
            authorization: ctx.authorization,
        };
        filling.add(listing(&next).await?);
    }
    json(&filling.finish()?)
}

/// A page being filled: the first page's answer, the items so far and the
/// cursor the next page would start at.
struct Filling {
    first: Listing,
    limit: usize,
    items: Vec<Value>,
    cursor: Option<String>,
    requests: usize,
}

impl Filling {
    fn new(mut first: Listing) -> Self {
        Filling {
            limit: usize::try_from(first.limit).unwrap_or(0),
            items: first.take_items(),
            cursor: first.cursor(),
            first,
            requests: 1,
        }
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
    fn add(&mut self, mut page: Listing) {
        self.requests += 1;
        self.items.extend(page.take_items());
        let previous = self.cursor.take();
        self.cursor = page.cursor().filter(|c| Some(c) != previous.as_ref());
    }

    /// The first page's answer with every item and the last cursor.
    fn finish(self) -> XrpcResult<Value> {
        let Filling {
            mut first,
            items,
            cursor,
            ..
        } = self;
        let Value::Object(body) = &mut first.body else {
            tracing::error!("a listing's answer is not an object");
            return Err(XrpcError::internal());
        };
        body.insert(first.field.to_owned(), Value::Array(items));
        match cursor {
            Some(cursor) => body.insert("cursor".to_owned(), Value::String(cursor)),
            None => body.remove("cursor"),
        };
        Ok(first.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A listing of `0..total` whose pages drop every multiple of three,
    /// with a cursor (the next position) while rows follow.
    fn page(total: usize, at: usize, limit: usize) -> Listing {
        let end = (at + limit).min(total);
        let items: Vec<usize> = (at..end).filter(|n| n % 3 != 0).collect();
        let mut body = json!({ "subject": "s", "items": items });
        if end < total {
            body["cursor"] = json!(end.to_string());
        }
        Listing::new(body, "items", limit as i64)
    }

    /// The filled answer and the pages asked.
    fn filled(total: usize, limit: usize) -> (Value, usize) {
        let mut filling = Filling::new(page(total, 0, limit));
        let mut asked = 1;
        while let Some((missing, cursor)) = filling.next_ask() {
            asked += 1;
            filling.add(page(total, cursor.parse().expect("a position"), missing));
        }
        (filling.finish().expect("an object"), asked)
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
        Listing::new(body, "items", limit as i64)
    }

    #[test]
    fn a_page_reads_on_for_the_rows_still_missing() {
        // Six asked, the first seven rows left out: 0..6 shows nothing,
        // 6..12 shows 7 to 11 (five of six): half full, the cursor is 12.
        let mut filling = Filling::new(sparse(100, 7, 0, 6));
        let (missing, cursor) = filling.next_ask().expect("an empty page");
        assert_eq!((missing, cursor.as_str()), (6, "6"));
        filling.add(sparse(100, 7, 6, missing));
        assert!(filling.next_ask().is_none());
        let body = filling.finish().expect("an object");
        assert_eq!(body["items"], json!([7, 8, 9, 10, 11]));
        assert_eq!(body["cursor"], "12");
        // The rows end before the page is half full: no cursor.
        let mut filling = Filling::new(sparse(9, 7, 0, 6));
        while let Some((missing, cursor)) = filling.next_ask() {
            filling.add(sparse(9, 7, cursor.parse().expect("a position"), missing));
        }
        let body = filling.finish().expect("an object");
        assert_eq!(body["items"], json!([7, 8]));
        assert!(body.get("cursor").is_none());
    }

    #[test]
    fn filling_stops_after_ten_pages_or_at_a_cursor_that_does_not_move() {
        // One row asked at a time from 0, 3, 6, ... (all dropped): ten
        // pages, then the cursor of the last.
        let mut filling = Filling::new(page(1000, 0, 1));
        let mut asked = 1;
        while let Some((_, cursor)) = filling.next_ask() {
            asked += 1;
            let at: usize = cursor.parse().expect("a position");
            filling.add(page(1000, at + 2, 1));
        }
        assert_eq!(asked, MAX_REQUESTS);
        let body = filling.finish().expect("an object");
        assert_eq!(body["items"], json!([]));
        assert_eq!(body["cursor"], "28");

        let first = Listing::new(json!({"items": [], "cursor": "c"}), "items", 5);
        let mut filling = Filling::new(first);
        let (missing, cursor) = filling.next_ask().expect("a short page");
        assert_eq!((missing, cursor.as_str()), (5, "c"));
        filling.add(Listing::new(
            json!({"items": [7], "cursor": "c"}),
            "items",
            5,
        ));
        assert!(filling.next_ask().is_none());
        let body = filling.finish().expect("an object");
        assert_eq!(body["items"], json!([7]));
        assert!(body.get("cursor").is_none());
    }
}
