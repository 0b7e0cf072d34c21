//! Connecting to PostgreSQL: creating the database when it is missing and
//! building the connection pool; reading result columns by name
//! ([`RowExt`]).

use deadpool_postgres::{Hook, Manager, ManagerConfig, Pool, RecyclingMethod};
use skyhose_connect::Postgres;
use tokio_postgres::types::FromSql;
use tokio_postgres::Row;
use tracing::debug;

use crate::error::IndexError;

/// Reads a result column by its name: a column that is missing, NULL where
/// a value is expected, or of another type is an [`IndexError::Column`]
/// naming it and what was being read (`context`), counted, instead of a
/// panic.
pub trait RowExt {
    fn col<'a, T: FromSql<'a>>(&'a self, name: &str, context: &str) -> Result<T, IndexError>;
}

impl RowExt for Row {
    fn col<'a, T: FromSql<'a>>(&'a self, name: &str, context: &str) -> Result<T, IndexError> {
        self.try_get(name).map_err(|source| {
            metrics::counter!("skyhose_index_row_errors_total").increment(1);
            IndexError::Column {
                context: context.to_owned(),
                column: name.to_owned(),
                source,
            }
        })
    }
}

fn parse_url(url: &str) -> Result<Postgres, IndexError> {
    skyhose_connect::postgres(url).map_err(IndexError::Connect)
}

/// A connection to the server's `postgres` database, for creating or
/// dropping the database `url` names (`name`).
struct Admin {
    name: String,
    client: tokio_postgres::Client,
    driver: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
}

impl Admin {
    async fn connect(url: &str) -> Result<Self, IndexError> {
        let Postgres {
            mut config, tls, ..
        } = parse_url(url)?;
        let name = config
            .get_dbname()
            .ok_or_else(|| IndexError::DatabaseUrlWithoutName(url.to_owned()))?
            .to_owned();
        config.dbname("postgres");
        let (client, connection) = config.connect(tls).await.map_err(IndexError::pg(format!(
            "connecting to the postgres database at {url}"
        )))?;
        Ok(Admin {
            name,
            client,
            driver: tokio::spawn(connection),
        })
    }
}

fn is_duplicate_database(err: &tokio_postgres::Error) -> bool {
    err.as_db_error()
        .is_some_and(|db| db.code().code() == "42P04")
}

/// Creates the database named by `url` when it does not exist yet, by
/// connecting to the server's `postgres` database.
pub async fn ensure_database(url: &str) -> Result<(), IndexError> {
    let Admin {
        name,
        client,
        driver,
    } = Admin::connect(url).await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(IndexError::pg("looking up the database"))?
        .is_some();
    if !exists {
        // Every key the index compares (DIDs, AT-URIs, record keys, CIDs) is
        // ASCII, where the "C" collation orders exactly like C.UTF-8 and
        // compares with memcmp instead of strcoll: B-tree descents, which
        // are most of a batch's cost, get cheaper. Character classes
        // (lower(), text search) keep the server's LC_CTYPE, or take
        // C.UTF-8's when the server's cannot pair with UTF-8; failing both,
        // the server's default database (migration 0012 then says whether
        // its order will do).
        let quoted = quote_identifier(&name);
        let attempts = [
            format!("CREATE DATABASE {quoted} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C'"),
            format!(
                "CREATE DATABASE {quoted} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C.UTF-8'"
            ),
            format!("CREATE DATABASE {quoted}"),
        ];
        let mut created = Ok(());
        for attempt in &attempts {
            created = client.batch_execute(attempt).await;
            match &created {
                Err(err) if !is_duplicate_database(err) => {
                    debug!(error = %err, statement = %attempt, "creating the database failed; trying the next way");
                }
                _ => break,
            }
        }
        // Another starter may have created it between our check and now.
        if let Err(err) = created.or_else(|err| {
            if is_duplicate_database(&err) {
                Ok(())
            } else {
                Err(err)
            }
        }) {
            return Err(IndexError::Postgres {
                context: format!("creating database {name:?}"),
                source: err,
            });
        }
    }
    drop(client);
    let _ = driver.await;
    Ok(())
}

/// Drops the database named by `url` (used by tests and benchmarks that
/// create a throwaway database).
pub async fn drop_database(url: &str) -> Result<(), IndexError> {
    let Admin {
        name,
        client,
        driver,
    } = Admin::connect(url).await?;
    client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_identifier(&name)
        ))
        .await
        .map_err(IndexError::pg(format!("dropping database {name:?}")))?;
    drop(client);
    let _ = driver.await;
    Ok(())
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A pool of `size` connections to the database named by `url`.
pub fn connect_pool(url: &str, size: usize) -> Result<Pool, IndexError> {
    build_pool(url, size, &[], false)
}

/// The workers' pool. Their statements look rows up by key only, so a
/// sequential scan is never what they want (planner statistics may be
/// missing or stale on fast-growing tables). With sequential scans ruled
/// out, the plan of a batch statement no longer depends on how many keys it
/// carries, so each is planned once (generic plans) instead of at every
/// execution. WAL of their sessions is compressed when the server allows it
/// (see `compress_wal`).
pub(crate) fn connect_worker_pool(
    url: &str,
    size: usize,
    compress_wal: bool,
) -> Result<Pool, IndexError> {
    build_pool(
        url,
        size,
        &["enable_seqscan=off", "plan_cache_mode=force_generic_plan"],
        compress_wal,
    )
}

fn build_pool(
    url: &str,
    size: usize,
    settings: &[&str],
    compress_wal: bool,
) -> Result<Pool, IndexError> {
    let Postgres {
        mut config, tls, ..
    } = parse_url(url)?;
    // Batch statements take arrays of keys whose length varies from 1 to
    // thousands: a generic cached plan can pick a sequential scan of a large
    // table, so every execution is planned for its actual arguments unless
    // `settings` says otherwise (a later `-c` wins). No statement of the
    // index runs long enough for JIT compilation to pay, yet estimates
    // inflated by recursive CTEs over unnested arrays (the reply walk) made
    // PostgreSQL compile one for 0.8 s on every batch.
    let mut options: Vec<String> = config
        .get_options()
        .map(str::to_owned)
        .into_iter()
        .collect();
    for setting in ["plan_cache_mode=force_custom_plan", "jit=off"]
        .into_iter()
        .chain(settings.iter().copied())
    {
        options.push(format!("-c {setting}"));
    }
    config.options(options.join(" "));
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let mut builder = Pool::builder(manager).max_size(size.max(1));
    if compress_wal {
        builder = builder.post_create(Hook::async_fn(|client, _| {
            Box::pin(async move {
                compress_wal_of(client).await;
                Ok(())
            })
        }));
    }
    builder
        .build()
        .map_err(|err| IndexError::Config(format!("building the postgres pool for {url}: {err}")))
}

/// Turns on WAL compression for this session. Index inserts touch index
/// pages all over large indexes, so after every checkpoint most of their
/// WAL is full-page images, which compress several-fold: less WAL to write
/// and fewer checkpoints. Only a superuser may set it per session (or the
/// server sets it for everyone); otherwise the server's setting stays.
async fn compress_wal_of(client: &tokio_postgres::Client) {
    for method in ["lz4", "on"] {
        match client
            .batch_execute(&format!("SET wal_compression = {method}"))
            .await
        {
            Ok(()) => return,
            Err(err) => {
                let denied = err
                    .as_db_error()
                    .is_some_and(|db| db.code().code() == "42501");
                if denied {
                    debug!("not allowed to set wal_compression for the session; keeping the server's setting");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreadable_column_is_a_transient_error_naming_it() {
        let (client, connection) = tokio_postgres::connect(
            "postgres://postgres@127.0.0.1:5432/postgres",
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        let row = client
            .query_one("SELECT NULL::int8 AS followers, 'x'::text AS did", &[])
            .await
            .unwrap();
        for err in [
            row.col::<i64>("followers", "reading actors").unwrap_err(),
            row.col::<i64>("did", "reading actors").unwrap_err(),
            row.col::<String>("missing", "reading actors").unwrap_err(),
        ] {
            let message = err.to_string();
            assert!(message.contains("reading actors"), "{message}");
            assert!(err.is_transient(), "{message}");
            assert!(!err.is_data_error(), "{message}");
        }
        let err = row.col::<i64>("followers", "reading actors").unwrap_err();
        assert!(err.to_string().contains("\"followers\""), "{err}");
        assert_eq!(row.col::<String>("did", "reading actors").unwrap(), "x");
    }
}
