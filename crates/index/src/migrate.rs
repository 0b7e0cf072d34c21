//! Versioned schema migrations, embedded in the binary and applied in order
//! under an advisory lock so that concurrent starters do not race.

use deadpool_postgres::Pool;

use crate::db::RowExt;
use crate::error::IndexError;

struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "schema",
        sql: include_str!("../migrations/0001_schema.sql"),
    },
    Migration {
        version: 2,
        name: "actor_indexed",
        sql: include_str!("../migrations/0002_actor_indexed.sql"),
    },
    Migration {
        version: 3,
        name: "api_read_paths",
        sql: include_str!("../migrations/0003_api_read_paths.sql"),
    },
    Migration {
        version: 4,
        name: "index_write_path",
        sql: include_str!("../migrations/0004_index_write_path.sql"),
    },
    Migration {
        version: 5,
        name: "post_records",
        sql: include_str!("../migrations/0005_post_records.sql"),
    },
    Migration {
        version: 6,
        name: "actor_association_counts",
        sql: include_str!("../migrations/0006_actor_association_counts.sql"),
    },
    Migration {
        version: 7,
        name: "index_write_costs",
        sql: include_str!("../migrations/0007_index_write_costs.sql"),
    },
    Migration {
        version: 8,
        name: "actor_rows",
        sql: include_str!("../migrations/0008_actor_rows.sql"),
    },
    Migration {
        version: 9,
        name: "post_record_text",
        sql: include_str!("../migrations/0009_post_record_text.sql"),
    },
    Migration {
        version: 10,
        name: "record_state_in_kind_rows",
        sql: include_str!("../migrations/0010_record_state_in_kind_rows.sql"),
    },
    Migration {
        version: 11,
        name: "repo_progress",
        sql: include_str!("../migrations/0011_repo_progress.sql"),
    },
    Migration {
        version: 12,
        name: "did_order_from_uris",
        sql: include_str!("../migrations/0012_did_order_from_uris.sql"),
    },
    Migration {
        version: 13,
        name: "derived_notifications",
        sql: include_str!("../migrations/0013_derived_notifications.sql"),
    },
    Migration {
        version: 14,
        name: "rebuilt_records",
        sql: include_str!("../migrations/0014_rebuilt_records.sql"),
    },
    Migration {
        version: 15,
        name: "backfill_queue",
        sql: include_str!("../migrations/0015_backfill_queue.sql"),
    },
    Migration {
        version: 16,
        name: "identity",
        sql: include_str!("../migrations/0016_identity.sql"),
    },
    Migration {
        version: 17,
        name: "repo_sync",
        sql: include_str!("../migrations/0017_repo_sync.sql"),
    },
    Migration {
        version: 18,
        name: "labels",
        sql: include_str!("../migrations/0018_labels.sql"),
    },
    Migration {
        version: 19,
        name: "private_state",
        sql: include_str!("../migrations/0019_private_state.sql"),
    },
    Migration {
        version: 20,
        name: "suggestion_reads",
        sql: include_str!("../migrations/0020_suggestion_reads.sql"),
    },
    Migration {
        version: 21,
        name: "compact_strong_refs",
        sql: include_str!("../migrations/0021_compact_strong_refs.sql"),
    },
    Migration {
        version: 22,
        name: "reply_gate",
        sql: include_str!("../migrations/0022_reply_gate.sql"),
    },
    Migration {
        version: 23,
        name: "compact_follows",
        sql: include_str!("../migrations/0023_compact_follows.sql"),
    },
    Migration {
        version: 24,
        name: "starter_pack_joins",
        sql: include_str!("../migrations/0024_starter_pack_joins.sql"),
    },
    Migration {
        version: 25,
        name: "live_posts_by_author",
        sql: include_str!("../migrations/0025_live_posts_by_author.sql"),
    },
    Migration {
        version: 26,
        name: "post_projections_from_text",
        sql: include_str!("../migrations/0026_post_projections_from_text.sql"),
    },
    Migration {
        version: 27,
        name: "compact_times_and_derived_cids",
        sql: include_str!("../migrations/0027_compact_times_and_derived_cids.sql"),
    },
    Migration {
        version: 28,
        name: "notifications_without_copies",
        sql: include_str!("../migrations/0028_notifications_without_copies.sql"),
    },
    Migration {
        version: 29,
        name: "post_text_once",
        sql: include_str!("../migrations/0029_post_text_once.sql"),
    },
    Migration {
        version: 30,
        name: "faster_key_and_cid_functions",
        sql: include_str!("../migrations/0030_faster_key_and_cid_functions.sql"),
    },
    Migration {
        version: 31,
        name: "inlined_rkey_id",
        sql: include_str!("../migrations/0031_inlined_rkey_id.sql"),
    },
    Migration {
        version: 32,
        name: "labeled_profiles",
        sql: include_str!("../migrations/0032_labeled_profiles.sql"),
    },
    Migration {
        version: 33,
        name: "records_at_stored_cid",
        sql: include_str!("../migrations/0033_records_at_stored_cid.sql"),
    },
    Migration {
        version: 34,
        name: "compact_post_counts",
        sql: include_str!("../migrations/0034_compact_post_counts.sql"),
    },
    Migration {
        version: 35,
        name: "sql_function_calls",
        sql: include_str!("../migrations/0035_sql_function_calls.sql"),
    },
];

/// An arbitrary constant shared by every skyhose process: the key of the
/// advisory lock held while migrating.
const MIGRATION_LOCK_KEY: i64 = 0x0073_6b79_686f_7365;

/// What [`migrate`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied by this call, in order.
    pub applied: Vec<i32>,
    /// The schema version after this call.
    pub current: i32,
}

/// Applies every migration that the database has not seen yet.
pub async fn migrate(pool: &Pool) -> Result<MigrationReport, IndexError> {
    let mut client = pool.get().await.map_err(IndexError::pool("migrating"))?;
    let tx = client
        .transaction()
        .await
        .map_err(IndexError::pg("starting the migration transaction"))?;
    // Transaction-scoped, so it is released however this function exits.
    // Taken before the bookkeeping table is created: two starters creating
    // it at once made one of them fail (its row type already existed).
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(IndexError::pg("taking the migration lock"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version     integer PRIMARY KEY,
             name        text NOT NULL,
             applied_at  timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(IndexError::pg("creating schema_migrations"))?;
    let done: Vec<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .map_err(IndexError::pg("reading schema_migrations"))?
        .iter()
        .map(|row| row.col("version", "reading schema_migrations"))
        .collect::<Result<_, _>>()?;
    let mut report = MigrationReport {
        applied: Vec::new(),
        current: done.iter().copied().max().unwrap_or(0),
    };
    let pending: Vec<&Migration> = MIGRATIONS
        .iter()
        .filter(|m| !done.contains(&m.version))
        .collect();
    for (step, migration) in pending.iter().enumerate() {
        let fail = |source| IndexError::Migration {
            version: migration.version,
            name: migration.name,
            source,
        };
        // A migration that rewrites a large table can take minutes: say
        // which one runs, and how long it took.
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applying migration {}/{}",
            step + 1,
            pending.len()
        );
        let started = std::time::Instant::now();
        tx.batch_execute(migration.sql).await.map_err(fail)?;
        tracing::info!(
            version = migration.version,
            seconds = format_args!("{:.1}", started.elapsed().as_secs_f64()),
            "migration applied"
        );
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(fail)?;
        report.applied.push(migration.version);
        report.current = report.current.max(migration.version);
    }
    tx.commit()
        .await
        .map_err(IndexError::pg("committing migrations"))?;
    Ok(report)
}
