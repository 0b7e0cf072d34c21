//! Identity: the index keeps `#identity` handles as hints (a handle-less
//! event never erases one), marks accounts due, and the identity task
//! resolves them against the simulated directory (also the handle host):
//! a handle claimed and resolving back is kept, anything else is NULL
//! (`handle.invalid`); deleted and taken-down accounts are not resolved,
//! and a taken-down account active again is resolved again.

mod common;

use common::{Entry, TestEnv};
use serde_json::json;
use skyhose_identity::{IdentityConfig, Resolver};
use skyhose_index::identity::{round, IdentityTaskOptions};
use skyhose_index::CancellationToken;
use skyhose_sim::plc::{self, PlcConfig};
use skyhose_sim::SimConfig;

fn identity(did: &str, handle: Option<&str>, seq: i64) -> Entry {
    let data = match handle {
        Some(h) => json!({"did": did, "handle": h}),
        None => json!({"did": did}),
    };
    Entry::new("identity", &data, seq)
}

async fn index(env: &TestEnv) {
    skyhose_index::run(env.config(1), CancellationToken::new())
        .await
        .expect("index run");
}

async fn row(pool: &skyhose_index::Pool, did: &str) -> (Option<String>, Option<bool>, bool) {
    let client = pool.get().await.unwrap();
    let r = client
        .query_one(
            "SELECT handle, handle_verified, identity_due_at IS NOT NULL AS due \
             FROM actors WHERE did = $1",
            &[&did],
        )
        .await
        .unwrap();
    (
        r.try_get("handle").unwrap(),
        r.try_get("handle_verified").unwrap(),
        r.try_get("due").unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_are_hints_until_verified_both_ways() {
    let env = TestEnv::new();
    let sim = SimConfig {
        accounts: 5,
        ..SimConfig::default()
    };
    let directory = plc::start(PlcConfig {
        sim: sim.clone(),
        ..PlcConfig::default()
    })
    .await
    .unwrap();
    let accounts = plc::initial_accounts(&sim);
    let (alice, alice_handle) = accounts[0].clone();
    // Bob's document claims Alice's handle, which resolves to Alice.
    let bob = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb";
    directory.register(bob, &alice_handle);
    // Carol is not in the directory at all.
    let carol = "did:plc:cccccccccccccccccccccccc";

    env.push(&[
        identity(&alice, Some("hint.example.com"), 1),
        identity(bob, Some("bob.example.com"), 2),
        identity(carol, Some("carol.example.com"), 3),
        identity(carol, None, 4),
    ])
    .await;
    index(&env).await;
    let pool = env.pool().await;
    // Hints while nothing is verified; a handle-less #identity erases none.
    assert_eq!(
        row(&pool, carol).await,
        (Some("carol.example.com".into()), None, true)
    );
    assert_eq!(
        row(&pool, &alice).await.0.as_deref(),
        Some("hint.example.com")
    );

    let mut config = IdentityConfig::loopback(directory.url());
    config.handle_resolver = Some(directory.url());
    let resolver = Resolver::new(config);
    let options = IdentityTaskOptions::default();
    assert_eq!(round(&pool, &resolver, &options).await.unwrap(), 3);
    assert_eq!(
        row(&pool, &alice).await,
        (Some(alice_handle.clone()), Some(true), false)
    );
    assert_eq!(
        row(&pool, bob).await,
        (None, Some(false), false),
        "claims a handle that is not its own"
    );
    assert_eq!(
        row(&pool, carol).await,
        (None, Some(false), false),
        "no DID document"
    );
    assert_eq!(
        round(&pool, &resolver, &options).await.unwrap(),
        0,
        "nothing due"
    );

    // A handle-less #identity re-resolves and keeps the verified handle;
    // a hint does not replace it either.
    env.push(&[
        identity(&alice, None, 5),
        identity(&alice, Some("other.example.com"), 6),
    ])
    .await;
    index(&env).await;
    assert_eq!(
        row(&pool, &alice).await,
        (Some(alice_handle.clone()), Some(true), true)
    );
    assert_eq!(round(&pool, &resolver, &options).await.unwrap(), 1);
    assert_eq!(
        row(&pool, &alice).await,
        (Some(alice_handle.clone()), Some(true), false)
    );

    // A taken-down account is not resolved; when it is active again, it
    // is due again, since its handle was not checked meanwhile.
    let dave = &accounts[1].0;
    env.push(&[
        identity(dave, Some("dave-hint.example.com"), 9),
        Entry::new(
            "account",
            &json!({"did": dave, "active": false, "status": "takendown"}),
            10,
        ),
    ])
    .await;
    index(&env).await;
    assert_eq!(round(&pool, &resolver, &options).await.unwrap(), 1);
    assert_eq!(
        row(&pool, dave).await,
        (Some("dave-hint.example.com".into()), None, false),
        "skipped while taken down"
    );
    env.push(&[Entry::new(
        "account",
        &json!({"did": dave, "active": true}),
        11,
    )])
    .await;
    index(&env).await;
    assert!(row(&pool, dave).await.2, "due again once active");
    assert_eq!(round(&pool, &resolver, &options).await.unwrap(), 1);
    assert_eq!(
        row(&pool, dave).await,
        (Some(accounts[1].1.clone()), Some(true), false)
    );

    // A deleted account is not resolved any more.
    env.push(&[
        identity(&alice, None, 12),
        Entry::new(
            "account",
            &json!({"did": alice, "active": false, "status": "deleted"}),
            13,
        ),
    ])
    .await;
    index(&env).await;
    assert_eq!(round(&pool, &resolver, &options).await.unwrap(), 1);
    let (_, _, due) = row(&pool, &alice).await;
    assert!(!due, "skipped and no longer due");

    directory.shutdown().await;
    drop(pool);
    env.cleanup().await;
}
