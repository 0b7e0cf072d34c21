//! Any bytes as DAG-CBOR; what decodes must re-encode and decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skyhose_proto::cbor::{decode_prefix, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok((value, _)) = decode_prefix(data) {
        let bytes = encode(&value);
        let again = decode_prefix(&bytes).map(|(v, _)| v);
        assert_eq!(again.ok(), Some(value));
    }
});
