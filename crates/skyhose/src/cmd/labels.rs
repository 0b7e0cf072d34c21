//! `skyhose labels`: read labelers' streams into PostgreSQL; `skyhose
//! takedown` / `restore`: the operator's own takedowns.

use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use skyhose_labels::{CancellationToken, LabelsConfig, BLUESKY_MODERATION};

use crate::cmd::index::{cancel_on_signal, parse_duration, DEFAULT_DATABASE_URL};

/// Which labelers to read and show (shared by `labels`, `serve` and `run`).
#[derive(Args, Debug, Clone)]
pub struct LabelerArgs {
    /// A labeler whose labels are read and shown (its subscribeLabels
    /// endpoint and signing key come from its DID document); repeat for
    /// several, or separate them with commas in the variable. Views show
    /// these labelers' labels unless a request names others in
    /// atproto-accept-labelers.
    #[arg(long = "labeler", env = "SKYHOSE_LABELERS", value_name = "DID", value_delimiter = ',', default_value = BLUESKY_MODERATION, value_parser = did)]
    pub labelers: Vec<String>,
}

/// Options of `skyhose labels`.
#[derive(Args, Debug)]
pub struct LabelsArgs {
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, value_parser = crate::config::check::postgres_url)]
    pub database_url: String,
    #[command(flatten)]
    pub labelers: LabelerArgs,
    /// Where the labelers' DID documents come from.
    #[command(flatten)]
    pub identity: super::serve::IdentityArgs,
    /// How often each labeler's progress line is printed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub log_every: std::time::Duration,
}

/// Options of `skyhose takedown` and `skyhose restore`.
#[derive(Args, Debug)]
pub struct TakedownArgs {
    /// The account (DID) or record (at:// URI) to take down or restore.
    #[arg(value_name = "SUBJECT", value_parser = subject)]
    pub subject: String,
    /// Why; kept with the takedown.
    #[arg(long)]
    pub reason: String,
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, value_parser = crate::config::check::postgres_url)]
    pub database_url: String,
}

pub fn did(s: &str) -> Result<String, String> {
    if skyhose_proto::syntax::is_did(s) {
        Ok(s.to_owned())
    } else {
        Err("not a DID".into())
    }
}

fn subject(s: &str) -> Result<String, String> {
    use skyhose_proto::syntax::{is_did, parse_at_uri};
    let record =
        parse_at_uri(s).is_some_and(|u| u.authority.starts_with("did:") && u.rkey.is_some());
    if is_did(s) || record {
        Ok(s.to_owned())
    } else {
        Err("not a DID nor an at://DID/collection/rkey record URI".into())
    }
}

pub async fn run(args: LabelsArgs) -> anyhow::Result<()> {
    let pool = pool(&args.database_url).await?;
    let resolver = Arc::new(skyhose_identity::Resolver::new(args.identity.config()?));
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let mut config = LabelsConfig::new(args.labelers.labelers);
    config.log_every = args.log_every;
    let summaries = skyhose_labels::run(config, pool, resolver, shutdown)
        .await
        .context("reading labels")?;
    for s in summaries {
        tracing::info!(labeler = %s.did, cursor = s.cursor, labels = s.labels_stored, rejected = ?s.rejected, "labels stopped");
    }
    Ok(())
}

pub async fn takedown(args: TakedownArgs) -> anyhow::Result<()> {
    let pool = pool(&args.database_url).await?;
    skyhose_labels::store::takedown(&pool, &args.subject, &args.reason)
        .await
        .context("recording the takedown")?;
    println!("taken down: {} ({})", args.subject, args.reason);
    Ok(())
}

pub async fn restore(args: TakedownArgs) -> anyhow::Result<()> {
    let pool = pool(&args.database_url).await?;
    match skyhose_labels::store::restore(&pool, &args.subject)
        .await
        .context("lifting the takedown")?
    {
        Some(was) => println!(
            "restored: {} ({}; taken down for: {was})",
            args.subject, args.reason
        ),
        None => println!("{} was not taken down", args.subject),
    }
    Ok(())
}

/// The labels stage inside `run`: its task, how to stop it, and the
/// simulated labelers it reads with `--relay sim`.
pub struct RunLabels {
    labelers: Vec<String>,
    task: tokio::task::JoinHandle<
        Result<Vec<skyhose_labels::LabelerSummary>, skyhose_labels::LabelsError>,
    >,
    stop: CancellationToken,
    sim: Vec<skyhose_sim::labeler::LabelerHandle>,
}

/// Simulated labelers `run --relay sim` starts.
const SIM_LABELERS: u32 = 2;

impl RunLabels {
    /// Starts reading `labelers`; with the simulated network, its own
    /// labelers instead, registered in its PLC directory.
    pub async fn start(
        labelers: &[String],
        database_url: &str,
        identity: skyhose_identity::IdentityConfig,
        sim: Option<(&skyhose_sim::plc::PlcHandle, skyhose_sim::SimConfig)>,
    ) -> anyhow::Result<RunLabels> {
        let mut labelers = labelers.to_vec();
        let mut handles = Vec::new();
        if let Some((plc, sim)) = sim {
            let accounts = {
                let sim = sim.clone();
                tokio::task::spawn_blocking(move || skyhose_sim::plc::initial_accounts(&sim))
                    .await?
            };
            let subjects: Vec<String> = accounts.into_iter().map(|(did, _)| did).collect();
            labelers.clear();
            for index in 0..SIM_LABELERS {
                let handle = skyhose_sim::labeler::start(skyhose_sim::labeler::LabelerConfig {
                    sim: sim.clone(),
                    index,
                    subjects: subjects.clone(),
                    ..Default::default()
                })
                .await
                .context("starting a simulated labeler")?;
                plc.register_labeler(
                    handle.did(),
                    &skyhose_sim::labeler::labeler_handle(index),
                    &handle.url(),
                );
                tracing::info!(did = %handle.did(), url = %handle.url(), "simulated labeler running");
                labelers.push(handle.did().to_owned());
                handles.push(handle);
            }
        }
        let config = LabelsConfig::new(labelers.clone());
        let pool = skyhose_index::connect_pool(database_url, 2)?;
        let resolver = Arc::new(skyhose_identity::Resolver::new(identity));
        let stop = CancellationToken::new();
        let task = tokio::spawn(skyhose_labels::run(config, pool, resolver, stop.clone()));
        Ok(RunLabels {
            labelers,
            task,
            stop,
            sim: handles,
        })
    }

    /// The labelers read, which views show by default.
    pub fn labelers(&self) -> &[String] {
        &self.labelers
    }

    pub async fn stop(self) {
        self.stop.cancel();
        match self.task.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "labels stopped with an error"),
            Err(e) => tracing::error!(error = %e, "labels task failed"),
        }
        for handle in self.sim {
            handle.shutdown().await;
        }
    }
}

/// A pool on the database, created and migrated first.
async fn pool(url: &str) -> anyhow::Result<skyhose_index::Pool> {
    let masked = crate::config::mask::mask_url(url);
    skyhose_index::ensure_database(url)
        .await
        .with_context(|| format!("creating {masked}"))?;
    let pool =
        skyhose_index::connect_pool(url, 2).with_context(|| format!("connecting to {masked}"))?;
    skyhose_index::migrate(&pool)
        .await
        .with_context(|| format!("migrating {masked}"))?;
    Ok(pool)
}
