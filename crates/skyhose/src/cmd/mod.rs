//! One module per subcommand: each holds its clap `Args` and an async `run`.

pub mod backfill;
pub mod bench;
pub mod bench_api;
pub mod bench_backfill;
pub mod bench_index;
pub mod config;
pub mod faults;
pub mod index;
pub mod ingest;
pub mod labels;
pub mod migrate;
pub mod run;
pub mod serve;
pub mod sim;
