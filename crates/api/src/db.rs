//! The API's PostgreSQL pool: read-only sessions with a statement timeout, so
//! a request can neither write nor run away, reusing generic plans.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::config::ApiConfig;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("invalid database URL {url:?}: {source}")]
    Url {
        url: String,
        source: tokio_postgres::Error,
    },
    #[error("building the PostgreSQL pool: {0}")]
    Build(String),
}

pub fn connect_pool(config: &ApiConfig) -> Result<Pool, PoolError> {
    let mut pg: tokio_postgres::Config =
        config
            .database_url
            .parse()
            .map_err(|source| PoolError::Url {
                url: config.database_url.clone(),
                source,
            })?;
    // Generic plans: the API's statements are prepared once per connection
    // and their plans do not depend on the values (keys looked up through
    // unique or leading index columns), so planning each execution anew
    // would cost more than running it. Search opts out per statement.
    let session = format!(
        "-c statement_timeout={} -c default_transaction_read_only=on \
         -c plan_cache_mode=force_generic_plan",
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
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(config.pool_size.max(1))
        .build()
        .map_err(|e| PoolError::Build(e.to_string()))
}
