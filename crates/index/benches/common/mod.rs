//! What the index's benchmarks read: stream entries as ingest writes them
//! for a simulated network.

use skyhose_index::entry::RawEntry;
use skyhose_ingest::{event_to_entry, Compat};
use skyhose_sim::{Network, SimConfig};

/// `n` entries of a simulated network of 5,000 accounts, with ids `1-<i>`.
pub fn simulated_entries(n: usize) -> Vec<RawEntry> {
    let mut network = Network::new(SimConfig {
        seed: 7,
        accounts: 5_000,
        ..SimConfig::default()
    });
    let mut entries = Vec::with_capacity(n);
    while entries.len() < n {
        let event = network.next_event();
        let Ok(Some(entry)) = event_to_entry(&event, Compat::Full) else {
            continue;
        };
        entries.push(RawEntry {
            id: format!("1-{}", entries.len()),
            fields: vec![
                ("type".into(), entry.kind.as_str().into()),
                ("data".into(), entry.data),
                ("seq".into(), entry.seq.to_string()),
            ],
        });
    }
    entries
}
