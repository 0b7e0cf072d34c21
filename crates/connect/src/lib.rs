//! skyhose-connect: how every skyhose process reaches its Redis and
//! PostgreSQL servers. It reads the TLS settings a URL carries (`rediss://`
//! with `cacert=`; libpq's `sslmode` and `sslrootcert`), loads CA files and
//! builds the rustls configurations, the `redis` client, the byte stream of
//! the index's own Redis reader and the PostgreSQL connector from them, so
//! that every connection of either engine is verified the same way.
//!
//! It must not send commands, hold pools or know the stream format or the
//! schema: that belongs to ingest, index and api.

mod error;
mod postgres;
mod query;
mod redis_target;
mod tls;

pub use error::{ConnectError, Engine};
pub use postgres::{postgres, Postgres, PostgresTls, SslMode};
pub use redis_target::{redis_client, Duplex, RedisTarget};
