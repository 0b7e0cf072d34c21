//! A Redis Stream entry (fields as `key NUL value ...`) parsed by the indexer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skyhose_index::entry::{parse_entry, RawEntry};

fuzz_target!(|data: &[u8]| {
    let _ = parse_entry(&RawEntry::from_nul_separated(data));
});
