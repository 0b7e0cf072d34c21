//! The `skyhose` command line: parses flags and environment, wires the library
//! crates together and handles signals. Pipeline logic lives in the crates.

mod cmd;
mod config;
mod service_key;
mod services;

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

/// Every stage allocates and frees many small strings per event (stream
/// entries, JSON values, statement parameters); glibc's allocator took about
/// a third of the indexer's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// skyhose: the AT Protocol firehose into a Redis Stream, indexed into
/// PostgreSQL, served as XRPC.
#[derive(Parser)]
#[command(name = "skyhose", version, about, long_about = None)]
struct Cli {
    /// TOML file of settings; flags and environment variables override it
    /// (see docs/configuration.md).
    #[arg(long, global = true, env = config::CONFIG_ENV, value_name = "FILE")]
    #[allow(dead_code)] // read from argv before parsing, by config::layered
    config: Option<PathBuf>,
    /// Log lines as plain text (colours only on a terminal) or as one JSON
    /// object per line, for log collectors.
    #[arg(long, global = true, env = "SKYHOSE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the simulated relay: a deterministic synthetic network served as
    /// com.atproto.sync.subscribeRepos on loopback.
    SimRelay(cmd::sim::SimRelayArgs),
    /// Create the database if needed and apply the schema migrations.
    Migrate(cmd::migrate::MigrateArgs),
    /// Index the Redis Stream into PostgreSQL as a consumer-group member.
    Index(cmd::index::IndexArgs),
    /// Subscribe to a relay and append its events to the Redis Stream.
    Ingest(cmd::ingest::IngestArgs),
    /// Serve the index as an XRPC API (app.bsky.* read endpoints, health, metrics).
    Serve(cmd::serve::ServeArgs),
    /// Fill the index from repos: list them on relays or PDSes, fetch,
    /// verify and load each, through a durable queue (`backfill status`).
    Backfill(cmd::backfill::BackfillArgs),
    /// Read labelers' label streams (com.atproto.label.subscribeLabels)
    /// into PostgreSQL, each from its stored cursor.
    Labels(cmd::labels::LabelsArgs),
    /// Take an account (DID) or a record (at:// URI) down: the API hides it.
    Takedown(cmd::labels::TakedownArgs),
    /// Lift a takedown made with `skyhose takedown`.
    Restore(cmd::labels::TakedownArgs),
    /// Throughput probes that print figures.
    Bench(cmd::bench::BenchArgs),
    /// Ingest and index in one process, with one shutdown sequence; starts private
    /// Redis/PostgreSQL instances when none is running locally.
    Run(cmd::run::RunArgs),
    /// `run` fed by the built-in simulated relay: the whole pipeline with no internet.
    Demo(cmd::run::DemoArgs),
    /// The fault suite: SIGKILLs, Redis and PostgreSQL restarts, relay faults
    /// and a flood against the local engines, each ending in a comparison of
    /// the database with the simulator's ground truth.
    Faults(cmd::faults::FaultsArgs),
    /// Print the settings a command would run with and where each comes from
    /// (flag, env, file, default), secrets masked.
    Config(cmd::config::ConfigArgs),
}

/// Keeps the kernel from backing this process's memory with transparent
/// huge pages. The allocator hands memory back between batches and takes it
/// again for the next one; with huge pages each of those page faults zeroes
/// 2 MB, and what a batch leaves touched is resident in 2 MB pieces. The
/// indexer's peak resident memory was about a third higher with them, for
/// no CPU it saved.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: the call takes plain integers and only sets a flag of this
    // process; it cannot touch memory the program holds.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> anyhow::Result<()> {
    disable_transparent_huge_pages();
    let cli: Cli = config::parse();
    init_tracing(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::SimRelay(args) => cmd::sim::run(args).await,
            Command::Migrate(args) => cmd::migrate::run(args).await,
            Command::Index(args) => cmd::index::run(args).await,
            Command::Ingest(args) => cmd::ingest::run(args).await,
            Command::Serve(args) => cmd::serve::run(args).await,
            Command::Backfill(args) => cmd::backfill::run(args).await,
            Command::Labels(args) => cmd::labels::run(args).await,
            Command::Takedown(args) => cmd::labels::takedown(args).await,
            Command::Restore(args) => cmd::labels::restore(args).await,
            Command::Bench(args) => cmd::bench::run(args).await,
            Command::Run(args) => cmd::run::run(args).await,
            Command::Demo(args) => cmd::run::demo(args).await,
            Command::Faults(args) => cmd::faults::run(args).await,
            Command::Config(args) => cmd::config::run(args, Cli::command()),
        }
    })
}

/// Logs go to stderr; colour escapes only when it is a terminal, so a file
/// or a pipe gets plain lines.
fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}
