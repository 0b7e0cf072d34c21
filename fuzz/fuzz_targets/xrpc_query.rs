//! An XRPC query string through the parameter parser and every getter.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = skyhose_api::exercise_query(data);
});
