//! Parity with the official Bluesky AppView. `scripts/parity/record.sh` ran
//! the reference PDS and the official `bsky` AppView (`@atproto/dev-env`),
//! drove activity through the PDS and recorded its `subscribeRepos` frames and
//! the AppView's answers to every method skyhose serves. This test indexes
//! the same frames, makes the recorded private-state writes
//! (`parity/procedures.json`), replays every request (as the same viewer, with tokens
//! from a loopback PLC stand-in) and compares the answers field by field
//! after one normalisation (`common::parity::normalise`). Requests that still differ are
//! listed, with their reason, in `parity/known_differences.json`, which must
//! match exactly: a new difference fails, and so does a listed one that is
//! gone. `PARITY_BLESS=1` rewrites that list (keeping the reasons written).

mod common;

use std::collections::BTreeSet;

use common::parity::{self, Replayer};
use common::{drop_stale_databases, index_entries, unique_id};
use skyhose_ingest::{event_to_entry_with, Compat, ConvertOptions};
use skyhose_proto::decode::{decode, Decoded};

/// Methods served that a recording cannot ask the official AppView: the
/// reference PDS answers `app.bsky.actor.getPreferences` itself (skyhose
/// serves it for PDSes that forward it; see tests/private_state.rs).
const UNRECORDABLE: &[&str] = &["app.bsky.actor.getPreferences"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_the_official_appview() {
    let dir = parity::parity_dir();
    let fixtures = parity::load_fixtures(&dir);
    let served: BTreeSet<&str> = skyhose_api::METHODS
        .iter()
        .copied()
        .filter(|m| !UNRECORDABLE.contains(m))
        .collect();
    let procedures = parity::load_procedures(&dir);
    let recorded: BTreeSet<&str> = fixtures
        .iter()
        .map(|f| f.method.as_str())
        .chain(procedures.iter().map(|p| p.method.as_str()))
        .collect();
    let unrecorded: Vec<&&str> = served.difference(&recorded).collect();

    // Index the recorded frames through ingest's conversion and the index.
    let frames =
        skyhose_sim::capture::read_capture(&dir.join("frames.cap")).expect("recorded frames");
    let opts = ConvertOptions {
        compat: Compat::Full,
        verify_cids: true,
    };
    let entries: Vec<_> = frames
        .iter()
        .enumerate()
        .filter_map(|(i, frame)| match decode(frame) {
            Ok(Decoded::Event(ev)) => event_to_entry_with(&ev, opts).expect("recorded event"),
            Ok(Decoded::Unknown(_)) => None,
            Err(e) => panic!("recorded frame {i} does not decode: {e}"),
        })
        .collect();
    let id = unique_id();
    let database_url = format!("postgres://postgres@127.0.0.1:5432/skyhose_apitest_{id}");
    drop_stale_databases().await;
    index_entries(&database_url, &format!("parity:{id}"), entries.into_iter()).await;

    let replayer = Replayer::start(&database_url).await;
    // Private state first: the recording wrote it before every read.
    let (written, mut found) = replayer.call_procedures(&procedures).await;
    let (mut tally, read) = replayer.replay(&fixtures).await;
    found.extend(read);
    let read_methods: BTreeSet<&str> = fixtures.iter().map(|f| f.method.as_str()).collect();
    let written_methods: BTreeSet<&str> = procedures.iter().map(|p| p.method.as_str()).collect();
    tally.methods = read_methods.union(&written_methods).count();
    tally.requests += written.requests;
    tally.fields += written.fields;
    tally.matching += written.matching;
    replayer.shutdown().await;
    println!(
        "parity: {} methods, {} requests, {} compared fields, {} requests match, {} differ",
        tally.methods,
        tally.requests,
        tally.fields,
        tally.matching,
        found.len()
    );

    parity::check_known(&found, "known_differences.json");
    assert!(
        unrecorded.is_empty(),
        "methods served but not recorded: {unrecorded:?} (re-record with scripts/parity/record.sh)"
    );
}
