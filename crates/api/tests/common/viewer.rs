//! Helpers for tests that page through listings and act as a viewer:
//! service-auth tokens minted for accounts of the simulated PLC directory.

use serde_json::Value;
use skyhose_sim::plc::{self, PlcConfig, PlcHandle};

use super::{fixture, Server};

pub const AUD: &str = "did:web:api.skyhose.test";

pub type Cases = Vec<(String, String, Value)>;

pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub async fn db() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&fixture().database_url, tokio_postgres::NoTls)
        .await
        .expect("fixture database");
    tokio::spawn(conn);
    client
}

/// A server whose viewers are resolved through the simulated PLC directory.
pub async fn server_with_plc() -> (Server, PlcHandle) {
    server_with_plc_on(&fixture().database_url).await
}

/// [`server_with_plc`] over the database `database_url`.
pub async fn server_with_plc_on(database_url: &str) -> (Server, PlcHandle) {
    let plc = plc::start(PlcConfig {
        sim: fixture().sim.clone(),
        ..PlcConfig::default()
    })
    .await
    .expect("plc directory");
    let url = plc.url();
    let server = Server::start_on(database_url, move |c| {
        c.plc_url = url;
        c.allow_loopback_identity = true;
        c.service_did = AUD.into();
    })
    .await;
    (server, plc)
}

/// A service-auth token for `did` calling `nsid`, with `did` known to the
/// directory (accounts that joined after the start are registered here).
pub fn token(plc: &PlcHandle, did: &str, nsid: &str) -> String {
    let handle = fixture()
        .truth
        .actors
        .get(did)
        .and_then(|a| a.handle.clone())
        .unwrap_or_else(|| "handle.invalid".into());
    plc.register(did, &handle);
    plc::mint_service_auth(&fixture().sim, did, AUD, nsid, 300)
}

/// Pages through a listing, `limit` at a time, returning every item of
/// `key` and recording each page for lexicon validation.
pub async fn page_all(
    server: &Server,
    nsid: &str,
    query: &str,
    key: &str,
    limit: usize,
    bearer: Option<&str>,
    cases: &mut Cases,
) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0..1000 {
        let q = match &cursor {
            Some(c) => format!("{query}&limit={limit}&cursor={}", enc(c)),
            None => format!("{query}&limit={limit}"),
        };
        let (status, body) = server.get_with(nsid, &q, bearer).await;
        assert_eq!(status, 200, "{nsid}?{q}: {body}");
        let got = body[key].as_array().expect("items array").clone();
        assert!(got.len() <= limit, "{nsid}: page larger than limit");
        if page < 3 {
            cases.push((nsid.into(), format!("{query} page {page}"), body.clone()));
        }
        items.extend(got);
        match body["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
    panic!("{nsid}?{query}: more than 1000 pages");
}
