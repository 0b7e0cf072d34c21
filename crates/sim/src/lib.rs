//! skyhose-sim: a deterministic synthetic AT Protocol network, its ground truth, and
//! a simulated relay serving it over subscribeRepos with the spec's cursor semantics
//! and injectable faults. It must not depend on the ingest, index or api crates.
