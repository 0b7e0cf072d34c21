//! Loading whole repos (backfill) beside the live stream: whether a repo's
//! state at its rev is loaded before, during or after the stream's events
//! of it, the index ends equal to the stream alone.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{diff, generate, Entry, TestEnv};
use serde_json::Value;
use skyhose_index::{RepoLoader, RepoRecord, RepoState};
use tokio_util::sync::CancellationToken;

/// Each repo's records after `entries`, at its newest rev, as a repo CAR
/// would hold them. Accounts deleted anywhere in `all` are left out: their
/// repos are gone from their hosts.
fn repo_states(entries: &[Entry], all: &[Entry]) -> Vec<RepoState> {
    let field = |entry: &Entry, name: &str| -> String {
        entry
            .fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_default()
    };
    let mut deleted = BTreeSet::new();
    for entry in all {
        if field(entry, "type") == "account" {
            let data: Value = serde_json::from_str(&field(entry, "data")).unwrap();
            if data["status"] == "deleted" {
                deleted.insert(data["did"].as_str().unwrap().to_owned());
            }
        }
    }
    // did -> (rev, path -> (cid, record JSON))
    type Repos = BTreeMap<String, (String, BTreeMap<String, (String, String)>)>;
    let mut repos: Repos = BTreeMap::new();
    for entry in entries {
        if field(entry, "type") != "commit" {
            continue;
        }
        let data: Value = serde_json::from_str(&field(entry, "data")).unwrap();
        let did = data["repo"].as_str().unwrap().to_owned();
        let rev = data["rev"].as_str().unwrap().to_owned();
        let repo = repos.entry(did).or_default();
        repo.0 = rev;
        for op in data["ops"].as_array().unwrap() {
            let path = op["path"].as_str().unwrap().to_owned();
            if op["action"] == "delete" {
                repo.1.remove(&path);
            } else {
                let cid = op["cid"].as_str().unwrap().to_owned();
                repo.1.insert(path, (cid, op["record"].to_string()));
            }
        }
    }
    repos
        .into_iter()
        .filter(|(did, _)| !deleted.contains(did))
        .map(|(did, (rev, records))| RepoState {
            did,
            rev,
            data: None,
            records: records
                .into_iter()
                .map(|(path, (cid, json))| {
                    let (collection, rkey) = path.split_once('/').unwrap();
                    RepoRecord {
                        collection: collection.to_owned(),
                        rkey: rkey.to_owned(),
                        cid,
                        json,
                    }
                })
                .collect(),
        })
        .collect()
}

async fn live(env: &TestEnv, entries: &[Entry]) {
    env.push(entries).await;
    let summary = skyhose_index::run(env.config(2), CancellationToken::new())
        .await
        .expect("index run");
    assert_eq!(summary.dead_lettered, 0, "{summary:?}");
}

async fn load(env: &TestEnv, repos: &[RepoState]) {
    let pool = skyhose_index::connect_pool(&env.database_url, 2).unwrap();
    skyhose_index::ensure_database(&env.database_url)
        .await
        .unwrap();
    skyhose_index::migrate(&pool).await.unwrap();
    let loader = RepoLoader::default();
    let mut client = pool.get().await.unwrap();
    for chunk in repos.chunks(7) {
        let loaded = loader.load(&mut client, chunk).await.unwrap();
        for report in loaded {
            assert!(report.rejected.is_empty(), "{report:?}");
        }
    }
}

async fn snapshot(env: &TestEnv) -> Value {
    let pool = env.pool().await;
    serde_json::to_value(skyhose_index::snapshot(&pool).await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repos_loaded_before_during_or_after_the_stream_end_equal() {
    let entries = generate(3000, 23);
    let half = entries.len() / 2;
    let final_repos = repo_states(&entries, &entries);
    let half_repos = repo_states(&entries[..half], &entries);
    assert!(final_repos.iter().map(|r| r.records.len()).sum::<usize>() > 300);

    let reference_env = TestEnv::new();
    live(&reference_env, &entries).await;
    let reference = snapshot(&reference_env).await;

    type Step<'a> = (&'a str, Vec<Result<&'a [Entry], &'a [RepoState]>>);
    let scenarios: Vec<Step<'_>> = vec![
        (
            "load, then the stream",
            vec![Err(&final_repos), Ok(&entries)],
        ),
        (
            "the stream, then load",
            vec![Ok(&entries), Err(&final_repos)],
        ),
        (
            "half the stream, load the newer repos, the rest",
            vec![
                Ok(&entries[..half]),
                Err(&final_repos),
                Ok(&entries[half..]),
            ],
        ),
        (
            "half the stream, load the repos at that point, the rest",
            vec![Ok(&entries[..half]), Err(&half_repos), Ok(&entries[half..])],
        ),
        (
            "loaded twice around the stream",
            vec![
                Err(&half_repos),
                Ok(&entries),
                Err(&final_repos),
                Err(&half_repos),
            ],
        ),
    ];
    for (name, steps) in scenarios {
        let env = TestEnv::new();
        for step in steps {
            match step {
                Ok(events) => live(&env, events).await,
                Err(repos) => load(&env, repos).await,
            }
        }
        let actual = snapshot(&env).await;
        assert!(actual == reference, "{name}: {}", diff(&reference, &actual));
        env.cleanup().await;
    }
    reference_env.cleanup().await;
}

/// A repo's load deletes what the index holds for it and the repo no
/// longer has, when the stream's delete never arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_removes_records_whose_delete_was_missed() {
    let entries = generate(2000, 5);
    let reference_env = TestEnv::new();
    live(&reference_env, &entries).await;
    let reference = snapshot(&reference_env).await;

    // The stream without its deletes of records, then the final repos.
    let without_deletes: Vec<Entry> = entries
        .iter()
        .filter(|entry| {
            !entry
                .fields
                .iter()
                .any(|(k, v)| k == "data" && v.contains("\"delete\""))
        })
        .cloned()
        .collect();
    assert!(without_deletes.len() < entries.len());
    let env = TestEnv::new();
    live(&env, &without_deletes).await;
    load(&env, &repo_states(&entries, &entries)).await;
    let actual = snapshot(&env).await;
    assert!(actual == reference, "{}", diff(&reference, &actual));
    env.cleanup().await;
    reference_env.cleanup().await;
}
