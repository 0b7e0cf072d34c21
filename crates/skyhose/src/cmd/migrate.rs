use clap::Args;

/// Options of `skyhose migrate`.
#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// PostgreSQL database to create (if missing) and migrate.
    #[arg(long, env = "DATABASE_URL", default_value = super::index::DEFAULT_DATABASE_URL,
          value_parser = crate::config::check::postgres_url)]
    pub database_url: String,
}

pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    skyhose_index::ensure_database(&args.database_url).await?;
    let pool = skyhose_index::connect_pool(&args.database_url, 1)?;
    let report = skyhose_index::migrate(&pool).await?;
    if report.applied.is_empty() {
        tracing::info!(version = report.current, "schema is up to date");
    } else {
        tracing::info!(applied = ?report.applied, version = report.current, "schema migrated");
    }
    Ok(())
}
