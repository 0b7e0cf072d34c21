//! The wire format the generator writes, re-exported from `skyhose_proto` under one
//! name so generator modules import it in one line.

pub use skyhose_proto::car::{read_car, write_car, Block};
pub use skyhose_proto::cbor::{decode_prefix, encode, encode_into, Value};
pub use skyhose_proto::frame::*;
pub use skyhose_proto::{Cid, WireError};
