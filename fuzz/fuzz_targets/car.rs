//! Any bytes as a CAR v1 file; every block read is decoded as DAG-CBOR.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skyhose_proto::car::read_car;
use skyhose_proto::cbor::decode_prefix;

fuzz_target!(|data: &[u8]| {
    if let Ok((_, blocks)) = read_car(data) {
        for (_, block) in blocks {
            let _ = decode_prefix(&block);
        }
    }
});
