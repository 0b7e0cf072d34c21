//! Views: loading index rows in batches and rendering them as the lexicons'
//! view objects. A response hydrates everything it shows through a
//! [`Hydrator`], whose query count does not grow with the response size.

pub mod actor;
pub mod embed;
pub mod feed_view;
pub mod feedgen;
pub mod hydrate;
pub mod labeler;
pub mod list;
pub mod post;
pub mod starter_pack;

use serde_json::{Map, Value};

/// A pooled connection; statements are prepared once per connection
/// (`prepare_cached`) so a request costs one round trip per query.
pub type Db = deadpool_postgres::ClientWrapper;

pub use hydrate::{Hydrated, Hydrator};

pub(crate) fn put(m: &mut Map<String, Value>, key: &str, value: impl Into<String>) {
    m.insert(key.to_owned(), Value::String(value.into()));
}

pub(crate) fn put_opt(m: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(v) = value {
        m.insert(key.to_owned(), Value::String(v.to_owned()));
    }
}

/// Records may carry any string as `createdAt`; views only repeat valid ones.
pub(crate) fn is_datetime(s: &str) -> bool {
    skyhose_proto::syntax::is_datetime(s)
}

/// `at://did/collection/rkey` → `did`, for URIs the index wrote.
pub(crate) fn uri_did(uri: &str) -> Option<&str> {
    uri.strip_prefix("at://")?.split('/').next()
}
