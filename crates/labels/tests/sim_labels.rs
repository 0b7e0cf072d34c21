//! The labels stage against simulated labelers: what ends in PostgreSQL is
//! exactly the labelers' ground truth, badly signed labels are rejected and
//! counted, and dropped connections resume from the cursor without loss.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use skyhose_identity::{IdentityConfig, Resolver};
use skyhose_labels::{LabelerSummary, LabelsConfig};
use skyhose_proto::frame::Label;
use skyhose_sim::labeler::{self, LabelerConfig, LabelerHandle};
use skyhose_sim::plc::{self, PlcConfig, PlcHandle};
use skyhose_sim::SimConfig;

struct Sim {
    plc: PlcHandle,
    labelers: Vec<LabelerHandle>,
    database_url: String,
}

fn database_url(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "postgres://postgres@127.0.0.1:5432/skyhose_test_labels_{name}_{}_{nanos}",
        std::process::id()
    )
}

/// Subjects: the accounts and a made-up post of each.
fn subjects(sim: &SimConfig) -> Vec<String> {
    plc::initial_accounts(sim)
        .into_iter()
        .flat_map(|(did, _)| {
            let post = format!("at://{did}/app.bsky.feed.post/3laaaaaaaaaa2");
            [did, post]
        })
        .collect()
}

async fn start(name: &str, count: u32, drop_every: Option<u64>) -> Sim {
    let sim = SimConfig {
        accounts: 20,
        ..SimConfig::default()
    };
    let plc = plc::start(PlcConfig {
        sim: sim.clone(),
        ..PlcConfig::default()
    })
    .await
    .unwrap();
    let mut labelers = Vec::new();
    for index in 0..count {
        let handle = labeler::start(LabelerConfig {
            sim: sim.clone(),
            index,
            subjects: subjects(&sim),
            drop_every,
            ..LabelerConfig::default()
        })
        .await
        .unwrap();
        plc.register_labeler(handle.did(), &labeler::labeler_handle(index), &handle.url());
        labelers.push(handle);
    }
    let database_url = database_url(name);
    skyhose_index::ensure_database(&database_url).await.unwrap();
    let pool = skyhose_index::connect_pool(&database_url, 2).unwrap();
    skyhose_index::migrate(&pool).await.unwrap();
    Sim {
        plc,
        labelers,
        database_url,
    }
}

impl Sim {
    fn config(&self) -> LabelsConfig {
        let mut cfg = LabelsConfig::new(self.labelers.iter().map(|l| l.did().to_owned()).collect());
        cfg.backoff_base = Duration::from_millis(10);
        cfg.backoff_cap = Duration::from_millis(50);
        cfg
    }

    /// Runs the stage until every labeler's cursor is at its head.
    async fn run_to_head(&self, cfg: LabelsConfig) -> Vec<LabelerSummary> {
        let pool = skyhose_index::connect_pool(&self.database_url, 2).unwrap();
        let resolver = Arc::new(Resolver::new(IdentityConfig::loopback(self.plc.url())));
        let shutdown = skyhose_labels::CancellationToken::new();
        let task = tokio::spawn(skyhose_labels::run(
            cfg,
            pool.clone(),
            resolver,
            shutdown.clone(),
        ));
        let heads: BTreeMap<String, i64> = self
            .labelers
            .iter()
            .map(|l| (l.did().to_owned(), l.head_seq()))
            .collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let cursors: BTreeMap<String, i64> = cursors(&pool).await;
            if cursors == heads {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "cursors {cursors:?}, heads {heads:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shutdown.cancel();
        task.await.unwrap().unwrap()
    }

    async fn cleanup(self) {
        for l in self.labelers {
            l.shutdown().await;
        }
        self.plc.shutdown().await;
        skyhose_index::drop_database(&self.database_url)
            .await
            .unwrap();
    }
}

async fn cursors(pool: &skyhose_index::Pool) -> BTreeMap<String, i64> {
    let client = pool.get().await.unwrap();
    client
        .query("SELECT did, cursor FROM labelers", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("did"), r.get("cursor")))
        .collect()
}

/// Every stored label, keyed like the truth.
async fn stored(database_url: &str) -> BTreeMap<(String, String, String), Label> {
    let pool = skyhose_index::connect_pool(database_url, 1).unwrap();
    let client = pool.get().await.unwrap();
    client
        .query(
            "SELECT l.did AS src, uri, val, cid, neg, cts, exp, sig, ver
             FROM labels JOIN labelers l ON l.id = labels.src",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let label = Label {
                ver: r.get::<_, Option<i16>>("ver").map(i64::from),
                src: r.get("src"),
                uri: r.get("uri"),
                cid: r.get("cid"),
                val: r.get("val"),
                neg: r.get("neg"),
                cts: r.get("cts"),
                exp: r.get("exp"),
                sig: Some(r.get("sig")),
            };
            (
                (label.src.clone(), label.uri.clone(), label.val.clone()),
                label,
            )
        })
        .collect()
}

fn truth(sim: &Sim) -> BTreeMap<(String, String, String), Label> {
    sim.labelers
        .iter()
        .flat_map(|l| l.script().truth.labels.clone())
        .collect()
}

#[tokio::test]
async fn sim_labels_end_as_the_truth_says_and_bad_signatures_are_counted() {
    let sim = start("truth", 2, None).await;
    let summaries = sim.run_to_head(sim.config()).await;
    let expected = truth(&sim);
    let actual = stored(&sim.database_url).await;
    assert_eq!(actual.len(), expected.len());
    for (key, label) in &expected {
        assert_eq!(actual.get(key), Some(label), "{key:?}");
    }
    for (summary, l) in summaries.iter().zip(sorted(&sim.labelers)) {
        assert_eq!(summary.did, l.did());
        assert_eq!(summary.cursor, l.head_seq());
        assert_eq!(
            summary.rejected.get("bad_signature").copied().unwrap_or(0),
            l.script().truth.bad_signatures
        );
        assert!(l.script().truth.bad_signatures > 0);
        assert_eq!(summary.rejected.len(), 1, "{:?}", summary.rejected);
    }
    // Read again from the start: replays change nothing.
    let pool = skyhose_index::connect_pool(&sim.database_url, 1).unwrap();
    pool.get()
        .await
        .unwrap()
        .execute("UPDATE labelers SET cursor = 0", &[])
        .await
        .unwrap();
    sim.run_to_head(sim.config()).await;
    assert_eq!(stored(&sim.database_url).await, actual);
    sim.cleanup().await;
}

#[tokio::test]
async fn a_cursor_ahead_of_the_labeler_reads_it_again_from_the_start() {
    let sim = start("future", 1, None).await;
    let pool = skyhose_index::connect_pool(&sim.database_url, 1).unwrap();
    pool.get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO labelers (did, cursor) VALUES ($1, 1000000)",
            &[&sim.labelers[0].did()],
        )
        .await
        .unwrap();
    let summaries = sim.run_to_head(sim.config()).await;
    assert_eq!(summaries[0].frames_skipped.get("error_frame"), Some(&1));
    assert_eq!(stored(&sim.database_url).await, truth(&sim));
    sim.cleanup().await;
}

#[tokio::test]
async fn dropped_connections_resume_from_the_cursor_without_loss() {
    let sim = start("drops", 1, Some(3)).await;
    let summaries = sim.run_to_head(sim.config()).await;
    assert!(summaries[0].reconnects > 3, "{summaries:?}");
    assert_eq!(stored(&sim.database_url).await, truth(&sim));
    sim.cleanup().await;
}

fn sorted(labelers: &[LabelerHandle]) -> Vec<&LabelerHandle> {
    let mut sorted: Vec<&LabelerHandle> = labelers.iter().collect();
    sorted.sort_by(|a, b| a.did().cmp(b.did()));
    sorted
}
