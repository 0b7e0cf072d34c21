//! The identity task: resolves the accounts the index marked due (first
//! sight, every `#identity`) through `skyhose_identity` and records the
//! outcome in their `actors` rows: the handle when the DID document claims
//! it and it resolves back, NULL (`handle.invalid`) when not. Transient
//! failures are retried with growing delays, and given up on (handle
//! invalid) after a few. Deleted and taken-down accounts are not resolved.
//!
//! Rows are claimed with `FOR UPDATE SKIP LOCKED` and a lease in
//! `identity_due_at`, so several index processes share the work, and an
//! outcome is written only if the lease is still the row's: an `#identity`
//! that arrived meanwhile leaves the account due again.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use skyhose_identity::{ResolveError, Resolver};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::error::IndexError;

const OUTCOMES: &str = "skyhose_identity_task_outcomes_total";
const FAILURES: &str = "skyhose_identity_failures_total";

/// Tuning of the identity task.
#[derive(Debug, Clone)]
pub struct IdentityTaskOptions {
    /// Accounts resolved at once.
    pub concurrency: usize,
    /// Accounts claimed per round.
    pub batch: i64,
    /// Pause when nothing is due.
    pub idle: Duration,
    /// How long a claimed account is left to this task before another may
    /// take it.
    pub lease: Duration,
    /// First retry delay after a transient failure; doubles per failure.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Transient failures in a row after which the handle is marked invalid.
    pub max_failures: i32,
}

impl Default for IdentityTaskOptions {
    fn default() -> Self {
        IdentityTaskOptions {
            concurrency: 8,
            batch: 64,
            idle: Duration::from_millis(500),
            lease: Duration::from_secs(60),
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(3600),
            max_failures: 6,
        }
    }
}

const CLAIM_SQL: &str = "\
WITH due AS ( \
  SELECT did FROM actors \
  WHERE identity_due_at <= now() \
  ORDER BY identity_due_at LIMIT $1 \
  FOR UPDATE SKIP LOCKED) \
UPDATE actors a SET identity_due_at = now() + make_interval(secs => $2::float8) \
FROM due WHERE a.did = due.did \
RETURNING a.did, a.status, a.identity_due_at AS lease, a.identity_failures";

/// The outcome written when the lease (`$2`) is still the row's.
const VERIFIED_SQL: &str = "\
UPDATE actors SET handle = $3, handle_verified = true, identity_checked_at = now(), \
  identity_due_at = NULL, identity_failures = 0 \
WHERE did = $1 AND identity_due_at = $2";
const INVALID_SQL: &str = "\
UPDATE actors SET handle = NULL, handle_verified = false, identity_checked_at = now(), \
  identity_due_at = NULL, identity_failures = 0 \
WHERE did = $1 AND identity_due_at = $2";
const RETRY_SQL: &str = "\
UPDATE actors SET identity_due_at = now() + make_interval(secs => $3::float8), \
  identity_failures = identity_failures + 1 \
WHERE did = $1 AND identity_due_at = $2";
const SKIP_SQL: &str = "\
UPDATE actors SET identity_due_at = NULL WHERE did = $1 AND identity_due_at = $2";

struct Claimed {
    did: String,
    status: String,
    lease: SystemTime,
    failures: i32,
}

enum Outcome {
    Verified(String),
    Invalid,
    Retry(Duration),
    Skip,
}

/// Resolves due accounts until `stop` fires.
pub async fn run(
    pool: Pool,
    resolver: Arc<Resolver>,
    options: IdentityTaskOptions,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let resolved = match round(&pool, &resolver, &options).await {
            Ok(n) => n,
            Err(e) => {
                warn!(error = %e, "identity task: round failed");
                0
            }
        };
        if resolved == 0 {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(options.idle) => {}
            }
        }
    }
}

/// Claims one batch of due accounts, resolves them and records the
/// outcomes; returns how many were claimed.
pub async fn round(
    pool: &Pool,
    resolver: &Resolver,
    options: &IdentityTaskOptions,
) -> Result<usize, IndexError> {
    let client = pool
        .get()
        .await
        .map_err(IndexError::pool("identity task: connecting"))?;
    let rows = client
        .query(CLAIM_SQL, &[&options.batch, &options.lease.as_secs_f64()])
        .await
        .map_err(IndexError::pg("identity task: claiming due accounts"))?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in &rows {
        claimed.push(Claimed {
            did: row
                .try_get("did")
                .map_err(IndexError::pg("identity task: reading did"))?,
            status: row
                .try_get("status")
                .map_err(IndexError::pg("identity task: reading status"))?,
            lease: row
                .try_get("lease")
                .map_err(IndexError::pg("identity task: reading lease"))?,
            failures: row
                .try_get("identity_failures")
                .map_err(IndexError::pg("identity task: reading failures"))?,
        });
    }
    let count = claimed.len();
    let outcomes: Vec<(Claimed, Outcome)> = futures_util::stream::iter(claimed)
        .map(|account| async move {
            let outcome = outcome(resolver, options, &account).await;
            (account, outcome)
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    for (account, outcome) in outcomes {
        let (label, written) = match &outcome {
            Outcome::Verified(handle) => (
                "verified",
                client
                    .execute(VERIFIED_SQL, &[&account.did, &account.lease, handle])
                    .await,
            ),
            Outcome::Invalid => (
                "invalid",
                client
                    .execute(INVALID_SQL, &[&account.did, &account.lease])
                    .await,
            ),
            Outcome::Retry(delay) => (
                "retry",
                client
                    .execute(
                        RETRY_SQL,
                        &[&account.did, &account.lease, &delay.as_secs_f64()],
                    )
                    .await,
            ),
            Outcome::Skip => (
                "skipped",
                client
                    .execute(SKIP_SQL, &[&account.did, &account.lease])
                    .await,
            ),
        };
        let written = written.map_err(IndexError::pg("identity task: recording an outcome"))?;
        // 0 rows: an #identity moved the lease meanwhile; it is due again.
        let label = if written == 0 { "superseded" } else { label };
        metrics::counter!(OUTCOMES, "result" => label).increment(1);
    }
    Ok(count)
}

async fn outcome(resolver: &Resolver, options: &IdentityTaskOptions, account: &Claimed) -> Outcome {
    if matches!(account.status.as_str(), "deleted" | "takendown") {
        return Outcome::Skip;
    }
    // A re-resolution must see the current document, not the cached one.
    resolver.forget(&account.did);
    match resolver.verify(&account.did).await {
        Ok(identity) => match identity.handle {
            Some(handle) => Outcome::Verified(handle),
            None => Outcome::Invalid,
        },
        Err(e) => {
            metrics::counter!(FAILURES, "reason" => e.reason()).increment(1);
            retry_or_give_up(options, account, &e)
        }
    }
}

fn retry_or_give_up(options: &IdentityTaskOptions, account: &Claimed, e: &ResolveError) -> Outcome {
    let failures = account.failures.saturating_add(1);
    if !e.is_transient() || failures >= options.max_failures {
        debug!(did = account.did, failures, error = %e, "identity: handle invalid");
        return Outcome::Invalid;
    }
    debug!(did = account.did, failures, error = %e, "identity: will retry");
    Outcome::Retry(retry_delay(options, failures))
}

/// `retry_base * 2^(failures-1)`, at most `retry_max`.
fn retry_delay(options: &IdentityTaskOptions, failures: i32) -> Duration {
    let exponent = u32::try_from(failures.saturating_sub(1))
        .unwrap_or(0)
        .min(20);
    options
        .retry_base
        .saturating_mul(1 << exponent)
        .min(options.retry_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_up_to_the_cap() {
        let options = IdentityTaskOptions::default();
        assert_eq!(retry_delay(&options, 1), Duration::from_secs(5));
        assert_eq!(retry_delay(&options, 2), Duration::from_secs(10));
        assert_eq!(retry_delay(&options, 4), Duration::from_secs(40));
        assert_eq!(retry_delay(&options, 30), Duration::from_secs(3600));
    }
}
