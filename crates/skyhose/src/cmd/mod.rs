//! One module per subcommand: each holds its clap `Args` and an async `run`.

pub mod sim;
pub mod index;
pub mod migrate;
pub mod ingest;
pub mod bench;
pub mod run;
pub mod bench_index;
