//! Identity resolution, the one place that turns DIDs into documents and
//! handles into DIDs: the API's token checks, the index's identity task,
//! backfill and the firehose's commit checks (through [`KeySource`]) use it.
//!
//! Owns: fetching and parsing DID documents (`did:plc` from the PLC
//! directory, `did:web` over HTTPS), the handle check both ways, caching
//! (failures too) with one fetch per DID at a time, and what the resolver
//! may connect to ([`guard`]): identities name their own hosts, so only
//! public DNS names on 443 are fetched, never an address the service's
//! own network holds.
//!
//! Must not: touch PostgreSQL or Redis (callers store results), or follow a
//! redirect, or hand resolver detail to outside callers (that goes to logs
//! and metrics).

mod cache;
mod document;
mod fetch;
pub mod guard;
mod keys;
mod resolver;

pub use cache::TtlCache;
pub use document::{
    document_url, parse as parse_document, verification_key, DidDocument, DocumentError, Service,
};
pub use fetch::{error_chain, FetchError, Fetcher};
pub use keys::{KeyError, KeyFuture, KeySource, PdsFuture, KEY_REFRESH_AFTER};
pub use resolver::{
    did_from_txt, ConfigError, Identity, IdentityConfig, ResolveError, Resolved, Resolver,
    HANDLE_CHECKS, RESOLUTIONS,
};
