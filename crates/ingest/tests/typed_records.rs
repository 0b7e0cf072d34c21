//! Every record the simulator writes reads back as its typed lexicon record:
//! frame, CAR, verified record block, data-model JSON, `Record::from_json`.

use skyhose_proto::car::read_car;
use skyhose_proto::datamodel::to_json;
use skyhose_proto::decode::{decode, Decoded};
use skyhose_proto::frame::Event;
use skyhose_proto::records::Record;
use skyhose_sim::{Network, SimConfig};

#[test]
fn simulated_records_parse_as_typed_records() {
    let mut network = Network::new(SimConfig {
        seed: 21,
        accounts: 300,
        ..SimConfig::default()
    });
    let mut typed = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..20_000 {
        let (_, frame) = network.next_frame();
        let Ok(Decoded::Event(Event::Commit(commit))) = decode(&frame) else {
            continue;
        };
        let (_, blocks) = read_car(&commit.blocks).expect("simulated CAR reads");
        for (op, record) in commit.ops_with_records(&blocks) {
            let Some(value) = record.expect("simulated record block is present and valid") else {
                continue;
            };
            let collection = op.path.split('/').next().unwrap_or_default();
            let parsed = Record::from_json(collection, &to_json(&value))
                .unwrap_or_else(|e| panic!("{}: {e}", op.path));
            assert!(
                !matches!(parsed, Record::Unknown(_)),
                "{collection} is indexed but was not typed"
            );
            *typed.entry(collection.to_owned()).or_default() += 1;
        }
    }
    for collection in [
        "app.bsky.feed.post",
        "app.bsky.feed.like",
        "app.bsky.feed.repost",
        "app.bsky.graph.follow",
        "app.bsky.actor.profile",
    ] {
        assert!(
            typed.contains_key(collection),
            "no {collection} seen: {typed:?}"
        );
    }
}
