//! skyhose-sim: a deterministic synthetic AT Protocol network, its ground truth, and
//! a simulated relay serving it over subscribeRepos with the spec's cursor semantics
//! and injectable faults. It must not depend on the ingest, index or api crates.
//!
//! `plc` serves the simulated accounts' DID documents and mints their service-auth
//! tokens; `hosts` serves their repositories (real MSTs, signed commits) as
//! PDSes on loopback, with a relay-like `listHosts` front; `feedgen` is a feed
//! generator (its did:web document and `getFeedSkeleton`) for AppView tests;
//! `labeler` serves signed label streams over subscribeLabels, with the state
//! they must leave.
//!
//! Frames, CAR files and DAG-CBOR come from `skyhose_proto` (re-exported as `wire`).

pub mod capture;
mod clock;
mod fasthash;
pub mod feedgen;
pub mod hosts;
mod http;
pub mod labeler;
mod network;
pub mod plc;
pub mod records;
pub mod relay;
mod rng;
mod truth;
pub mod wire;

pub use clock::{rfc3339, tid};
pub use network::{generate, Network, NetworkFaults, RepoListing, RepoUnavailable, SimConfig};
pub use rng::SplitMix64;
pub use truth::{ActorTruth, GroundTruth, PostCounts, RecordLink};
