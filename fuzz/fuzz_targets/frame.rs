//! Any bytes as a subscribeRepos message, through the whole ingest decode
//! path (frame, CAR, record blocks) to stream-entry JSON in both formats.
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
