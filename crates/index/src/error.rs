//! The crate's error type. Every variant names the input or the place that failed.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum IndexError {
    /// A Redis or PostgreSQL URL or its TLS settings cannot be used.
    #[error(transparent)]
    Connect(#[from] skyhose_connect::ConnectError),
    #[error("database url {0:?} names no database")]
    DatabaseUrlWithoutName(String),
    #[error("postgres {context}: {}", describe(source))]
    Postgres {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("postgres pool {context}: {message}")]
    Pool { context: String, message: String },
    #[error("redis {context}: {source}")]
    Redis {
        context: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("unexpected redis reply to {context}: {detail}")]
    RedisReply { context: String, detail: String },
    /// The stream or its group is gone: Redis lost its data (it keeps nothing
    /// on disk), so the group is recreated and ingest refills the stream.
    #[error("{context}: the stream {key} has no consumer group {group}")]
    GroupMissing {
        context: String,
        key: String,
        group: String,
    },
    /// A result row the code cannot read: the column is missing, NULL where
    /// a value is expected, or of another type (the schema and the code
    /// disagree, or a concurrent writer left a row the code does not expect).
    #[error("postgres {context}: column {column:?}: {source}")]
    Column {
        context: String,
        column: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("migration {version} ({name}) failed: {}", describe(source))]
    Migration {
        version: i32,
        name: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("worker task failed: {0}")]
    Worker(String),
    /// A compact row's id was not resolved (`apply::keys`): the batch is
    /// held and tried again.
    #[error("compact keys: {0}")]
    Keys(String),
    /// Concurrent transactions kept forcing a batch to be redone.
    #[error("contention: {0}")]
    Contended(String),
}

/// The server's own words for a database error (tokio-postgres shows only
/// "db error"), with its SQLSTATE; the error itself for the others.
fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => match db.hint() {
            Some(hint) => format!("{} ({}); {hint}", db.message(), db.code().code()),
            None => format!("{} ({})", db.message(), db.code().code()),
        },
        None => err.to_string(),
    }
}

impl IndexError {
    pub(crate) fn pg(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Self {
        let context = context.into();
        move |source| IndexError::Postgres { context, source }
    }

    pub(crate) fn redis(context: impl Into<String>) -> impl FnOnce(redis::RedisError) -> Self {
        let context = context.into();
        move |source| IndexError::Redis { context, source }
    }

    pub(crate) fn pool(
        context: impl Into<String>,
    ) -> impl FnOnce(deadpool_postgres::PoolError) -> Self {
        let context = context.into();
        move |err| IndexError::Pool {
            context,
            message: err.to_string(),
        }
    }

    /// True when waiting and trying again can succeed: the server went away,
    /// or PostgreSQL chose this transaction as a deadlock/serialization victim.
    pub fn is_transient(&self) -> bool {
        match self {
            IndexError::Postgres { source, .. } | IndexError::Migration { source, .. } => {
                pg_error_is_transient(source)
            }
            // A batch whose rows cannot be read is held and tried again
            // rather than dead-lettered: the entries are not at fault.
            IndexError::Pool { .. }
            | IndexError::Contended(_)
            | IndexError::Keys(_)
            | IndexError::Column { .. } => true,
            IndexError::Redis { source, .. } => {
                source.is_io_error()
                    || source.is_connection_dropped()
                    || source.is_connection_refusal()
                    || source.is_timeout()
                    || matches!(
                        source.kind(),
                        redis::ErrorKind::BusyLoadingError | redis::ErrorKind::TryAgain
                    )
            }
            _ => false,
        }
    }

    /// True when Redis answered that the stream or its consumer group does
    /// not exist (Redis restarted empty), or that the stream was deleted while
    /// a blocking read waited on it (`UNBLOCKED`, Redis 7).
    pub fn is_missing_group(&self) -> bool {
        match self {
            IndexError::GroupMissing { .. } => true,
            IndexError::Redis { source, .. } => {
                matches!(source.code(), Some("NOGROUP") | Some("UNBLOCKED"))
            }
            _ => false,
        }
    }

    /// True when the failure is about the data of this batch (PostgreSQL
    /// rejected a value), so splitting the batch can isolate the bad entry.
    pub fn is_data_error(&self) -> bool {
        match self {
            IndexError::Postgres { source, .. } => source
                .as_db_error()
                .map(|db| {
                    let code = db.code().code();
                    // Class 22 is "data exception", 23 "integrity constraint
                    // violation", 54 "program limit exceeded" (a value too
                    // large for an index).
                    code.starts_with("22") || code.starts_with("23") || code.starts_with("54")
                })
                .unwrap_or(false),
            _ => false,
        }
    }
}

fn pg_error_is_transient(err: &tokio_postgres::Error) -> bool {
    match err.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            // 40001 serialization failure, 40P01 deadlock, class 08 connection,
            // 57P0x admin shutdown / cannot connect now, 53 insufficient resources.
            code == "40001"
                || code == "40P01"
                || code.starts_with("08")
                || code.starts_with("57P")
                || code.starts_with("53")
        }
        // No server error attached: only a closed or failed connection is
        // worth retrying; anything else (a type mismatch) is a bug.
        None => {
            err.is_closed()
                || std::error::Error::source(err)
                    .map(|source| source.is::<std::io::Error>())
                    .unwrap_or(false)
        }
    }
}
