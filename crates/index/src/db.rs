//! Connecting to PostgreSQL: creating the database when it is missing and
//! building the connection pool.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::{Config, NoTls};

use crate::error::IndexError;

fn parse_url(url: &str) -> Result<Config, IndexError> {
    url.parse::<Config>()
        .map_err(|source| IndexError::DatabaseUrl {
            url: url.to_owned(),
            source,
        })
}

/// Creates the database named by `url` when it does not exist yet, by
/// connecting to the server's `postgres` database.
pub async fn ensure_database(url: &str) -> Result<(), IndexError> {
    let config = parse_url(url)?;
    let name = config
        .get_dbname()
        .ok_or_else(|| IndexError::DatabaseUrlWithoutName(url.to_owned()))?
        .to_owned();
    let mut admin = config.clone();
    admin.dbname("postgres");
    let (client, connection) = admin.connect(NoTls).await.map_err(IndexError::pg(format!(
        "connecting to the postgres database at {url}"
    )))?;
    let driver = tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(IndexError::pg("looking up the database"))?
        .is_some();
    if !exists {
        let statement = format!("CREATE DATABASE {}", quote_identifier(&name));
        if let Err(err) = client.batch_execute(&statement).await {
            // Another starter may have created it between our check and now.
            let duplicate = err
                .as_db_error()
                .map(|db| db.code().code() == "42P04")
                .unwrap_or(false);
            if !duplicate {
                return Err(IndexError::Postgres {
                    context: format!("creating database {name:?}"),
                    source: err,
                });
            }
        }
    }
    drop(client);
    let _ = driver.await;
    Ok(())
}

/// Drops the database named by `url` (used by tests and benchmarks that
/// create a throwaway database).
pub async fn drop_database(url: &str) -> Result<(), IndexError> {
    let config = parse_url(url)?;
    let name = config
        .get_dbname()
        .ok_or_else(|| IndexError::DatabaseUrlWithoutName(url.to_owned()))?
        .to_owned();
    let mut admin = config.clone();
    admin.dbname("postgres");
    let (client, connection) = admin.connect(NoTls).await.map_err(IndexError::pg(format!(
        "connecting to the postgres database at {url}"
    )))?;
    let driver = tokio::spawn(connection);
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
    let mut config = parse_url(url)?;
    // Batch statements take arrays of keys whose length varies from 1 to
    // thousands: a generic cached plan can pick a sequential scan of a large
    // table, so every execution is planned for its actual arguments.
    let options = match config.get_options() {
        Some(existing) => format!("{existing} -c plan_cache_mode=force_custom_plan"),
        None => "-c plan_cache_mode=force_custom_plan".to_owned(),
    };
    config.options(&options);
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .build()
        .map_err(|err| IndexError::Config(format!("building the postgres pool for {url}: {err}")))
}
