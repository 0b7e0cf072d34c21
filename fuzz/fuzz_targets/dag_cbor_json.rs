//! Any bytes as DAG-CBOR: what decodes must re-encode and decode to the same
//! value, and convert to data-model JSON (value and text writer).
#![no_main]

use libfuzzer_sys::fuzz_target;
use skyhose_proto::{cbor, datamodel};

fuzz_target!(|data: &[u8]| {
    if let Ok((value, _)) = cbor::decode_prefix(data) {
        let again = cbor::decode_prefix(&cbor::encode(&value)).map(|(v, _)| v);
        assert_eq!(again.ok(), Some(value.clone()));
        let _ = datamodel::to_json(&value);
        let mut out = String::new();
        datamodel::write_json(&value, &mut out);
    }
});
