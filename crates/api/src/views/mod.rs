//! Views: loading index rows in batches and rendering them as the lexicons'
//! view objects. A response hydrates everything it shows through a
//! [`Hydrator`], whose query count does not grow with the response size.

pub mod actor;
pub mod embed;
pub mod feed_view;
pub mod feedgen;
pub mod hydrate;
pub mod labeler;
pub mod labels;
pub mod list;
pub mod post;
pub mod private;
pub mod starter_pack;

use std::time::{SystemTime, UNIX_EPOCH};

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

/// A timestamp as views write it: UTC to the millisecond, as
/// `to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')` writes it.
pub(crate) fn datetime_millis(t: SystemTime) -> String {
    skyhose_proto::datetime::format_utc_millis(unix_micros(t))
}

/// Microseconds since the Unix epoch (negative before it).
pub(crate) fn unix_micros(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// `at://did/collection/rkey` → `did`, for URIs the index wrote.
pub(crate) fn uri_did(uri: &str) -> Option<&str> {
    uri.strip_prefix("at://")?.split('/').next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(micros: u64) -> String {
        datetime_millis(UNIX_EPOCH + Duration::from_micros(micros))
    }

    #[test]
    fn datetimes_are_utc_milliseconds_truncated() {
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400_000_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_735_689_599_999_999), "2024-12-31T23:59:59.999Z");
        assert_eq!(at(1_732_630_000_123_456), "2024-11-26T14:06:40.123Z");
    }
}
