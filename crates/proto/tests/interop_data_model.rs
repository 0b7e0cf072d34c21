//! The official interop fixtures for the data model: JSON ⇄ DAG-CBOR ⇄ CID.

use std::path::PathBuf;

use data_encoding::BASE64_NOPAD;
use serde_json::Value as Json;
use skyhose_proto::cbor::{decode_prefix, encode};
use skyhose_proto::datamodel::{from_json, to_json};
use skyhose_proto::Cid;

fn fixture(name: &str) -> Json {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/atproto-interop/data-model")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn cases(name: &str) -> Vec<Json> {
    match fixture(name) {
        Json::Array(cases) => cases,
        other => panic!("{name} is not a list: {other}"),
    }
}

#[test]
fn fixtures_round_trip_between_json_cbor_and_cid() {
    let cases = cases("data-model-fixtures.json");
    assert!(!cases.is_empty());
    for case in cases {
        let json = &case["json"];
        let cbor_b64 = case["cbor_base64"].as_str().expect("cbor_base64");
        let cbor = BASE64_NOPAD
            .decode(cbor_b64.trim_end_matches('=').as_bytes())
            .expect("fixture base64");
        let cid = case["cid"].as_str().expect("cid");

        let value = from_json(json).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(encode(&value), cbor, "JSON -> CBOR for {json}");
        assert_eq!(Cid::for_dag_cbor(&cbor).to_string(), cid, "CID for {json}");
        assert_eq!(Cid::parse(cid).map(|c| c.to_string()).as_deref(), Ok(cid));

        let (decoded, used) = decode_prefix(&cbor).expect("fixture CBOR decodes");
        assert_eq!(used, cbor.len());
        assert_eq!(decoded, value, "CBOR -> value for {json}");
        assert_eq!(&to_json(&decoded), json, "CBOR -> JSON");
    }
}

#[test]
fn valid_data_model_json_is_accepted() {
    for case in cases("data-model-valid.json") {
        let note = case["note"].as_str().unwrap_or("?");
        if let Err(e) = from_json(&case["json"]) {
            panic!("{note}: rejected: {e}");
        }
    }
}

#[test]
fn invalid_data_model_json_is_rejected() {
    for case in cases("data-model-invalid.json") {
        let note = case["note"].as_str().unwrap_or("?");
        assert!(
            from_json(&case["json"]).is_err(),
            "{note}: accepted {}",
            case["json"]
        );
    }
}
