//! The XRPC sync calls and what their answers mean for a repo: loaded,
//! permanently failed (recorded, not retried), or worth another try.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

use crate::hosts::Hosts;
use crate::http::HttpError;

/// Why a call did not give what was asked for.
#[derive(Debug)]
pub enum Failure {
    /// Will not change on a retry: `reason` is a short label.
    Permanent { reason: &'static str, error: String },
    /// A timeout, a 5xx, a broken connection.
    Transient { reason: &'static str, error: String },
    /// The host said to wait this long.
    RateLimited { wait: Duration },
}

impl Failure {
    fn http(err: HttpError) -> Failure {
        match err {
            HttpError::TooLarge { .. } => Failure::Permanent {
                reason: "too_large",
                error: err.to_string(),
            },
            HttpError::Url(_) => Failure::Permanent {
                reason: "bad_url",
                error: err.to_string(),
            },
            HttpError::Timeout { .. } => Failure::Transient {
                reason: "timeout",
                error: err.to_string(),
            },
            HttpError::Transport { .. } | HttpError::Tls(_) => Failure::Transient {
                reason: "transport",
                error: err.to_string(),
            },
        }
    }
}

#[derive(Deserialize)]
struct XrpcError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    message: String,
}

/// The failure an answer other than 200 means.
fn status_failure(hosts: &Hosts, base: &str, status: u16, body: &[u8]) -> Failure {
    let xrpc: Option<XrpcError> = serde_json::from_slice(body).ok();
    let name = xrpc.as_ref().map_or("", |e| e.error.as_str());
    let error = match &xrpc {
        Some(e) => format!("HTTP {status} {}: {}", e.error, e.message),
        None => format!("HTTP {status}"),
    };
    let permanent = |reason| Failure::Permanent {
        reason,
        error: error.clone(),
    };
    match (status, name) {
        (429, _) => Failure::RateLimited {
            wait: hosts.pause_left(base).max(Duration::from_millis(100)),
        },
        (_, "RepoNotFound") | (404, _) => permanent("repo_not_found"),
        (_, "RepoTakendown") => permanent("repo_takendown"),
        (_, "RepoSuspended") => permanent("repo_suspended"),
        (_, "RepoDeactivated") => permanent("repo_deactivated"),
        (500..=599, _) | (408, _) => Failure::Transient {
            reason: "server_error",
            error,
        },
        _ => permanent("bad_request"),
    }
}

/// `getRepo`: the repo's CAR.
pub async fn get_repo(hosts: &Hosts, base: &str, did: &str) -> Result<Bytes, Failure> {
    let path = format!("/xrpc/com.atproto.sync.getRepo?did={}", query_escape(did));
    let response = hosts.get(base, &path).await.map_err(Failure::http)?;
    if response.status != 200 {
        return Err(status_failure(hosts, base, response.status, &response.body));
    }
    Ok(response.body)
}

#[derive(Deserialize)]
struct ListedRepo {
    did: String,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct RepoPage {
    #[serde(default)]
    cursor: Option<String>,
    repos: Vec<ListedRepo>,
}

/// One page of `listRepos`: the active repos' DIDs and the next cursor
/// (none at the end). Inactive repos cannot be fetched; they are counted.
pub async fn list_repos(
    hosts: &Hosts,
    base: &str,
    cursor: Option<&str>,
) -> Result<(Vec<String>, Option<String>), Failure> {
    let mut path = "/xrpc/com.atproto.sync.listRepos?limit=1000".to_owned();
    if let Some(cursor) = cursor {
        path.push_str("&cursor=");
        path.push_str(&query_escape(cursor));
    }
    let response = hosts.get(base, &path).await.map_err(Failure::http)?;
    if response.status != 200 {
        return Err(status_failure(hosts, base, response.status, &response.body));
    }
    let page: RepoPage =
        serde_json::from_slice(&response.body).map_err(|e| Failure::Permanent {
            reason: "bad_listing",
            error: format!("listRepos answer from {base} is not a repo page: {e}"),
        })?;
    // An empty page ends the listing whatever its cursor says.
    let next = page
        .cursor
        .filter(|c| !c.is_empty() && !page.repos.is_empty());
    let (active, inactive): (Vec<ListedRepo>, Vec<ListedRepo>) =
        page.repos.into_iter().partition(|repo| repo.active);
    metrics::counter!("skyhose_backfill_listed_inactive_total").increment(inactive.len() as u64);
    Ok((active.into_iter().map(|repo| repo.did).collect(), next))
}

#[derive(Deserialize)]
struct ListedHost {
    hostname: String,
}

#[derive(Deserialize)]
struct HostPage {
    #[serde(default)]
    cursor: Option<String>,
    hosts: Vec<ListedHost>,
}

/// Every host a relay lists (`listHosts`), as base URLs; `None` when the
/// source does not list hosts (a PDS), whose own repos are then listed.
pub async fn list_hosts(hosts: &Hosts, base: &str) -> Result<Option<Vec<String>>, Failure> {
    let mut found = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/xrpc/com.atproto.sync.listHosts?limit=1000".to_owned();
        if let Some(cursor) = &cursor {
            path.push_str("&cursor=");
            path.push_str(&query_escape(cursor));
        }
        let response = hosts.get(base, &path).await.map_err(Failure::http)?;
        match response.status {
            200 => {}
            400 | 404 | 501 if found.is_empty() => return Ok(None),
            status => return Err(status_failure(hosts, base, status, &response.body)),
        }
        let page: HostPage =
            serde_json::from_slice(&response.body).map_err(|e| Failure::Permanent {
                reason: "bad_listing",
                error: format!("listHosts answer from {base} is not a host page: {e}"),
            })?;
        let empty = page.hosts.is_empty();
        found.extend(page.hosts.into_iter().map(|host| host_url(&host.hostname)));
        match page.cursor {
            Some(next) if !empty && !next.is_empty() => cursor = Some(next),
            _ => return Ok(Some(found)),
        }
    }
}

/// A listed hostname as a base URL: HTTPS, except on loopback.
pub fn host_url(hostname: &str) -> String {
    if hostname.starts_with("http://") || hostname.starts_with("https://") {
        return hostname.trim_end_matches('/').to_owned();
    }
    let loopback = hostname.starts_with("localhost") || hostname.starts_with("127.0.0.1");
    format!("{}://{hostname}", if loopback { "http" } else { "https" })
}

/// Percent-encodes what a DID or cursor may hold that a query cannot.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
