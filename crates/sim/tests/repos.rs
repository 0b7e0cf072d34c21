//! Repositories of the simulated network: signed commits whose ops invert to
//! their prevData, history before the window, the faults, and the repo hosts
//! over HTTP.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use skyhose_proto::decode::{decode, Decoded};
use skyhose_proto::frame::Event;
use skyhose_proto::repo::{read_repo, verify_commit_event, Commit, RepoError, RepoLimits};
use skyhose_sim::hosts::{self, HostFaults, HostsConfig};
use skyhose_sim::plc::{self, PlcConfig};
use skyhose_sim::{Network, NetworkFaults, SimConfig};

fn cfg(history: usize) -> SimConfig {
    SimConfig {
        seed: 11,
        accounts: 40,
        history_commits_per_account: history,
        ..SimConfig::default()
    }
}

fn events(net: &mut Network, n: usize) -> Vec<Event> {
    (0..n)
        .map(|_| match decode(&net.next_frame().1) {
            Ok(Decoded::Event(e)) => e,
            _ => panic!("not an event"),
        })
        .collect()
}

fn key(sim: &SimConfig, did: &str) -> skyhose_proto::crypto::PublicKey {
    plc::proto_signing_key(sim, did).public_key()
}

#[test]
fn every_commit_is_signed_and_inverts_to_its_prev_data() {
    let sim = cfg(0);
    let mut net = Network::new(sim.clone());
    let mut inverted = 0;
    let mut syncs = 0;
    for event in events(&mut net, 1500) {
        match event {
            Event::Commit(c) => {
                let check = verify_commit_event(&c, &key(&sim, &c.repo))
                    .unwrap_or_else(|e| panic!("seq {}: {e}", c.seq));
                inverted += check.inverted as usize;
            }
            Event::Sync(s) => {
                let car = skyhose_proto::car::read_car(&s.blocks).unwrap();
                let commit = Commit::decode(&car.1[0].1).unwrap();
                assert!(commit.verify(&key(&sim, &s.did)));
                assert_eq!(commit.rev, s.rev);
                syncs += 1;
            }
            _ => {}
        }
    }
    assert!(inverted > 1000, "{inverted} commits inverted");
    assert!(syncs > 0);
}

#[test]
fn history_holds_records_the_firehose_never_showed() {
    let sim = cfg(5);
    let mut net = Network::new(sim.clone());
    let frames: Vec<Vec<u8>> = (0..300).map(|_| net.next_frame().1).collect();
    let truth = net.truth();
    let seen = common::recount(&frames);
    let unseen = truth
        .records
        .keys()
        .filter(|uri| !seen.records.contains_key(*uri))
        .count();
    assert!(unseen >= 40 * 5, "{unseen} records only in history");
    assert_eq!(
        truth.actors.len(),
        net.accounts().count().min(truth.actors.len())
    );

    // Each repo read back from its CAR is exactly the truth's records of that account.
    let mut by_did: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (uri, cid) in &truth.records {
        let did = uri.trim_start_matches("at://").split('/').next().unwrap();
        by_did
            .entry(did.to_owned())
            .or_default()
            .insert(uri.clone(), cid.clone());
    }
    let dids: Vec<String> = net.accounts().map(|(d, _)| d.to_owned()).collect();
    let mut checked = 0;
    for did in dids {
        let Ok(car) = net.repo_car(&did, None) else {
            continue;
        };
        let repo = read_repo(&car, &did, Some(&key(&sim, &did)), &RepoLimits::default())
            .unwrap_or_else(|e| panic!("{did}: {e}"));
        let got: BTreeMap<String, String> = repo
            .records
            .iter()
            .map(|r| {
                (
                    format!("at://{did}/{}/{}", r.collection, r.rkey),
                    r.cid.to_string(),
                )
            })
            .collect();
        assert_eq!(got, by_did.remove(&did).unwrap_or_default(), "{did}");
        checked += 1;
    }
    assert!(checked >= 35);
}

#[test]
fn firehose_faults_show_up_as_the_checks_expect() {
    let sim = SimConfig {
        faults: NetworkFaults {
            bad_signature: 0.2,
            sync_divergence: 1.0,
            identity_without_handle: 0.5,
        },
        ..cfg(3)
    };
    let mut net = Network::new(sim.clone());
    let mut bad = 0;
    let mut good = 0;
    let mut no_handle = 0;
    let mut diverged = 0;
    // The root each repo had after its last #commit, as the firehose showed it.
    let mut shown: HashMap<String, skyhose_proto::Cid> = HashMap::new();
    for event in events(&mut net, 3000) {
        match event {
            Event::Commit(c) => match verify_commit_event(&c, &key(&sim, &c.repo)) {
                Ok(check) => {
                    good += 1;
                    shown.insert(c.repo.clone(), check.commit.data);
                }
                Err(RepoError::BadSignature) => bad += 1,
                Err(e) => panic!("seq {}: {e}", c.seq),
            },
            Event::Sync(s) => {
                let car = skyhose_proto::car::read_car(&s.blocks).unwrap();
                let commit = Commit::decode(&car.1[0].1).unwrap();
                if shown.get(&s.did).is_some_and(|d| *d != commit.data) {
                    diverged += 1;
                }
            }
            Event::Identity(i) if i.handle.is_none() => no_handle += 1,
            _ => {}
        }
    }
    assert!(bad > 100 && good > 1000, "{bad} bad, {good} good");
    assert!(no_handle > 0);
    assert!(diverged > 0);
}

/// A minimal HTTP/1.0 GET: status, headers and body bytes.
async fn get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(response[..split].to_vec()).unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head, response[split + 4..].to_vec())
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap()
}

#[tokio::test]
async fn hosts_serve_verified_repos_with_faults() {
    let sim = cfg(4);
    let mut network = Network::new(sim.clone());
    for _ in 0..500 {
        network.next_frame();
    }
    let network = Arc::new(Mutex::new(network));
    let faults = HostFaults {
        rate_limited_requests: 2,
        truncated_car_every: Some(7),
        truncated_car_repeats: None,
        bad_signature_every: Some(5),
    };
    let hosts = hosts::start(
        HostsConfig {
            faults: faults.clone(),
            ..HostsConfig::default()
        },
        network.clone(),
        sim.clone(),
    )
    .await
    .unwrap();
    let addrs = hosts.addrs().to_vec();
    assert_eq!(addrs.len(), 2);

    // The first host is rate limited for its first two requests.
    for _ in 0..2 {
        let (status, head, _) = get(addrs[0], "/xrpc/com.atproto.sync.listRepos").await;
        assert_eq!(status, 429);
        assert!(head.to_ascii_lowercase().contains("ratelimit-reset:"));
    }

    // Every repo, page by page across both hosts.
    let mut listed = Vec::new();
    for addr in &addrs {
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/xrpc/com.atproto.sync.listRepos?limit=7&cursor={c}"),
                None => "/xrpc/com.atproto.sync.listRepos?limit=7".to_owned(),
            };
            let (status, _, body) = get(*addr, &path).await;
            assert_eq!(status, 200);
            let page = json(&body);
            for repo in page["repos"].as_array().unwrap() {
                listed.push((*addr, repo.clone()));
            }
            match page["cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
    }
    assert!(listed.len() >= 40, "{} repos", listed.len());

    let (mut verified, mut truncated, mut forged, mut inactive) = (0, 0, 0, 0);
    for (addr, repo) in &listed {
        let did = repo["did"].as_str().unwrap();
        let (status, _, body) =
            get(*addr, &format!("/xrpc/com.atproto.sync.getRepo?did={did}")).await;
        if repo["active"] == false {
            assert_eq!(status, 400);
            let error = json(&body)["error"].as_str().unwrap().to_owned();
            assert!(["RepoDeactivated", "RepoTakendown"].contains(&error.as_str()));
            inactive += 1;
            continue;
        }
        assert_eq!(status, 200, "{did}");
        let result = read_repo(&body, did, Some(&key(&sim, did)), &RepoLimits::default());
        if hosts::truncated(&faults, did) {
            assert_eq!(result.unwrap_err().reason(), "bad_car");
            truncated += 1;
        } else if hosts::badly_signed(&faults, did) {
            assert_eq!(result, Err(RepoError::BadSignature));
            forged += 1;
        } else {
            let repo_read = result.unwrap();
            assert_eq!(repo_read.commit_cid.to_string(), repo["head"]);
            let (status, _, body) = get(
                *addr,
                &format!("/xrpc/com.atproto.sync.getLatestCommit?did={did}"),
            )
            .await;
            assert_eq!(status, 200);
            assert_eq!(json(&body)["cid"], repo["head"]);
            verified += 1;
        }
    }
    assert!(
        verified > 20 && truncated > 0 && forged > 0,
        "{verified} {truncated} {forged} {inactive}"
    );

    // A repo asked of the wrong host, and an unknown one.
    let (_, repo) = &listed[listed.len() - 1];
    let did = repo["did"].as_str().unwrap();
    let other = addrs
        .iter()
        .find(|a| hosts::host_index(did, 2) != addrs.iter().position(|x| x == *a).unwrap())
        .unwrap();
    let (status, _, body) = get(*other, &format!("/xrpc/com.atproto.sync.getRepo?did={did}")).await;
    assert_eq!(
        (status, json(&body)["error"].clone()),
        (400, "RepoNotFound".into())
    );

    // The front lists both hosts; the PLC names each account's host.
    let front: SocketAddr = hosts.front_url()["http://".len()..].parse().unwrap();
    let (status, _, body) = get(front, "/xrpc/com.atproto.sync.listHosts").await;
    assert_eq!(status, 200);
    assert_eq!(json(&body)["hosts"].as_array().unwrap().len(), 2);
    let plc = plc::start(PlcConfig {
        sim: sim.clone(),
        pds_endpoints: hosts.urls(),
        ..PlcConfig::default()
    })
    .await
    .unwrap();
    let (did, _) = plc::initial_accounts(&sim).remove(0);
    let (status, _, body) = get(plc.addr(), &format!("/{did}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        json(&body)["service"][0]["serviceEndpoint"],
        hosts.urls()[hosts::host_index(&did, 2)]
    );
    plc.shutdown().await;
    hosts.shutdown().await;
}
