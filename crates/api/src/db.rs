//! The API's PostgreSQL pool: read-only sessions with a statement timeout, so
//! a request can neither write nor run away, reusing generic plans; and
//! reading result columns by name ([`RowExt`]).

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::types::FromSql;
use tokio_postgres::Row;

use crate::config::ApiConfig;
use crate::error::{XrpcError, XrpcResult};

/// Reads a result column by its name. A column that is missing, NULL where
/// the code expects a value, or of another type than the code reads (the
/// schema drifted from the code) fails the request with a 500 and an XRPC
/// body, logged with the column's name and counted, instead of a panic that
/// drops the connection.
pub(crate) trait RowExt {
    fn col<'a, T: FromSql<'a>>(&'a self, name: &str) -> XrpcResult<T>;
}

impl RowExt for Row {
    fn col<'a, T: FromSql<'a>>(&'a self, name: &str) -> XrpcResult<T> {
        self.try_get(name)
            .map_err(|err| unreadable_row(format_args!("column {name}: {err}")))
    }
}

/// A result row the code cannot read (a column as [`RowExt::col`] finds it,
/// or values that break what the schema promises): logged and counted,
/// answered with a 500.
pub(crate) fn unreadable_row(problem: impl std::fmt::Display) -> XrpcError {
    tracing::error!(%problem, "reading a database row failed");
    metrics::counter!("skyhose_api_row_errors_total").increment(1);
    XrpcError::internal()
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(transparent)]
    Url(#[from] skyhose_connect::ConnectError),
    #[error("building the PostgreSQL pool: {0}")]
    Build(String),
}

pub fn connect_pool(config: &ApiConfig) -> Result<Pool, PoolError> {
    let skyhose_connect::Postgres {
        config: mut pg,
        tls,
        ..
    } = skyhose_connect::postgres(&config.database_url)?;
    // Generic plans: the API's statements are prepared once per connection
    // and their plans do not depend on the values (keys looked up through
    // unique or leading index columns), so planning each execution anew
    // would cost more than running it. Search opts out per statement.
    // JIT compilation takes longer than any page's statement runs.
    let session = format!(
        "-c statement_timeout={} -c default_transaction_read_only=on \
         -c plan_cache_mode=force_generic_plan -c jit=off",
        config.statement_timeout.as_millis().max(1)
    );
    let options = match pg.get_options() {
        Some(existing) => format!("{existing} {session}"),
        None => session,
    };
    pg.options(&options);
    pg.application_name("skyhose-api");
    let manager = Manager::from_config(
        pg,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    // The pool is kept near the server's core count, so a burst of slow
    // requests can hold every connection: a request waits for one (or for a
    // new one to connect) no longer than a statement may run, then gets a
    // 503 it can retry instead of joining a queue that only grows.
    Pool::builder(manager)
        .max_size(config.pool_size.max(1))
        .wait_timeout(Some(config.statement_timeout))
        .create_timeout(Some(config.statement_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| PoolError::Build(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use axum::http::StatusCode;

    use super::*;
    use crate::error::XrpcError;

    #[tokio::test]
    async fn a_request_waits_for_a_busy_pool_no_longer_than_a_statement_may_run() {
        let mut config = ApiConfig::new("postgres://postgres@127.0.0.1:5432/postgres");
        config.pool_size = 1;
        config.statement_timeout = Duration::from_millis(300);
        let pool = connect_pool(&config).expect("pool");
        let held = pool.get().await.expect("the only connection");
        let started = Instant::now();
        let err = pool.get().await.expect_err("no connection is free");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
            "waited {waited:?}"
        );
        let answer = XrpcError::from(err);
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.name, "ServiceUnavailable");
        assert!(answer.message.contains("busy"), "{}", answer.message);
        drop(held);
        let _free = pool.get().await.expect("free again");
    }
}
