use std::collections::BTreeMap;

use crate::car::*;
use crate::cbor::*;
use crate::frame::*;
use crate::Cid;

#[test]
fn cid_of_empty_map_matches_known_value() {
    // {} in DAG-CBOR is 0xa0; its CIDv1 is a well-known constant.
    let cid = Cid::for_dag_cbor(&encode(&Value::Map(BTreeMap::new())));
    assert_eq!(
        cid.to_string(),
        "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua"
    );
}

#[test]
fn map_keys_sort_by_length_first() {
    let v = Value::map([
        ("bb", Value::Integer(1)),
        ("a", Value::Integer(2)),
        ("c", Value::Integer(3)),
    ]);
    assert_eq!(
        encode(&v),
        vec![0xa3, 0x61, b'a', 2, 0x61, b'c', 3, 0x62, b'b', b'b', 1]
    );
}

#[test]
fn round_trips_values() {
    let v = Value::map([
        ("n", Value::Integer(-300)),
        ("big", Value::Integer(1 << 40)),
        ("l", Value::Link(Cid::for_raw(b"x"))),
        ("b", Value::Bytes(vec![1, 2, 3])),
        ("s", Value::from("héllo")),
        ("x", Value::List(vec![Value::Null, Value::Bool(true)])),
    ]);
    let bytes = encode(&v);
    assert_eq!(decode_prefix(&bytes), Ok((v, bytes.len())));
}

#[test]
fn direct_commit_body_equals_value_tree_encoding() {
    let cid = Cid::for_raw(b"c");
    for (since, prev_data, prev) in [
        (None, None, None),
        (Some("3l2".to_owned()), Some(cid), Some(cid)),
    ] {
        let c = Commit {
            seq: 300,
            repo: "did:plc:abc".into(),
            rev: "3l3".into(),
            since: since.clone(),
            time: "2024-11-01T00:00:00.000Z".into(),
            commit: cid,
            blocks: vec![7; 30],
            ops: vec![RepoOp {
                action: OpAction::Delete,
                path: "app.bsky.feed.like/3l".into(),
                cid: None,
                prev,
            }],
            blobs: vec![],
            too_big: false,
            rebase: false,
            prev_data,
        };
        let mut op = BTreeMap::new();
        op.insert("action".to_owned(), Value::from("delete"));
        op.insert("path".to_owned(), Value::from("app.bsky.feed.like/3l"));
        op.insert("cid".to_owned(), Value::Null);
        if let Some(p) = prev {
            op.insert("prev".to_owned(), Value::Link(p));
        }
        let mut m = BTreeMap::new();
        m.insert("seq".to_owned(), Value::Integer(300));
        m.insert("rebase".to_owned(), Value::Bool(false));
        m.insert("tooBig".to_owned(), Value::Bool(false));
        m.insert("repo".to_owned(), Value::from("did:plc:abc"));
        m.insert("commit".to_owned(), Value::Link(cid));
        m.insert("rev".to_owned(), Value::from("3l3"));
        m.insert("since".to_owned(), since.map_or(Value::Null, Value::String));
        m.insert("blocks".to_owned(), Value::Bytes(vec![7; 30]));
        m.insert("ops".to_owned(), Value::List(vec![Value::Map(op)]));
        m.insert("blobs".to_owned(), Value::List(vec![]));
        if let Some(p) = prev_data {
            m.insert("prevData".to_owned(), Value::Link(p));
        }
        m.insert("time".to_owned(), Value::from("2024-11-01T00:00:00.000Z"));
        let mut expected = encode(&message_header("#commit"));
        encode_into(&Value::Map(m), &mut expected);
        assert_eq!(encode_frame(&Event::Commit(c)), expected);
    }
}

#[test]
fn car_round_trips() {
    let block = encode(&Value::from("hi"));
    let cid = Cid::for_dag_cbor(&block);
    let car = write_car(&[cid], &[(cid, block.clone())]);
    assert_eq!(read_car(&car), Ok((vec![cid], vec![(cid, block)])));
}
