//! Any bytes as a subscribeRepos message, through to the stream entry JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skyhose_ingest::{event_to_entry, Compat};
use skyhose_proto::decode::{decode, Decoded};

fuzz_target!(|data: &[u8]| {
    if let Ok(Decoded::Event(event)) = decode(data) {
        let _ = event_to_entry(&event, Compat::Full);
        let _ = event_to_entry(&event, Compat::Seed);
    }
});
