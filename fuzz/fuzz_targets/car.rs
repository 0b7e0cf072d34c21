//! Any bytes as a CAR v1 file, read with the default limits and CID
//! verification; every block read is decoded as DAG-CBOR.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skyhose_proto::car::{read_car_with, CarOptions};
use skyhose_proto::cbor::decode_prefix;

fuzz_target!(|data: &[u8]| {
    if let Ok(car) = read_car_with(data, &CarOptions::default()) {
        for (_, block) in &car.blocks {
            let _ = decode_prefix(block);
        }
    }
});
