//! Value parsers for service URLs, so a wrong scheme or a typo fails when the
//! command starts (clap names the option and where its value came from)
//! rather than at the first connection attempt, minutes later or never.

/// A relay: `ws://` or `wss://` with a host.
pub fn relay_url(value: &str) -> Result<String, String> {
    let rest = ["ws://", "wss://"]
        .iter()
        .find_map(|scheme| value.strip_prefix(scheme))
        .ok_or("a relay URL starts with ws:// or wss:// (e.g. wss://bsky.network)")?;
    if rest.split(['/', '?']).next().unwrap_or_default().is_empty() {
        return Err("the relay URL has no host".into());
    }
    Ok(value.to_owned())
}

/// A relay URL, or `sim` for the built-in simulated relay.
pub fn relay_or_sim(value: &str) -> Result<String, String> {
    if value == "sim" {
        return Ok(value.to_owned());
    }
    relay_url(value).map_err(|e| format!("{e}, or `sim`"))
}

/// A Redis server: `redis://`, `rediss://` (TLS, `?cacert=FILE` for a
/// private CA) or `unix://`/`redis+unix://` (socket). The CA file is read
/// here, so a missing one is reported at start.
pub fn redis_url(value: &str) -> Result<String, String> {
    const SCHEMES: [&str; 4] = ["redis://", "rediss://", "unix://", "redis+unix://"];
    if !SCHEMES.iter().any(|scheme| value.starts_with(scheme)) {
        return Err(
            "a Redis URL starts with redis://, rediss:// or unix:// (e.g. redis://127.0.0.1:6379)"
                .into(),
        );
    }
    skyhose_connect::RedisTarget::parse(value).map_err(|e| e.to_string())?;
    Ok(value.to_owned())
}

/// A PostgreSQL server or database: `postgres://` or `postgresql://`.
pub fn postgres_url(value: &str) -> Result<String, String> {
    if !(value.starts_with("postgres://") || value.starts_with("postgresql://")) {
        return Err(
            "a PostgreSQL URL starts with postgres:// (e.g. postgres://user@host:5432/skyhose)"
                .into(),
        );
    }
    skyhose_connect::postgres(value).map_err(|e| e.to_string())?;
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_forms() {
        relay_url("wss://bsky.network").unwrap();
        relay_url("ws://127.0.0.1:2470/xrpc/com.atproto.sync.subscribeRepos").unwrap();
        relay_or_sim("sim").unwrap();
        redis_url("redis://127.0.0.1:6379").unwrap();
        redis_url("redis://:secret@cache:6379/2").unwrap();
        postgres_url("postgres://postgres@127.0.0.1:5432/skyhose").unwrap();
        postgres_url("postgresql://u:p@db/skyhose?sslmode=disable").unwrap();
    }

    #[test]
    fn rejects_wrong_schemes_with_an_example() {
        assert!(relay_url("https://bsky.network")
            .unwrap_err()
            .contains("wss://"));
        assert!(relay_url("wss://").unwrap_err().contains("no host"));
        assert!(relay_or_sim("simulated").unwrap_err().contains("`sim`"));
        assert!(redis_url("127.0.0.1:6379")
            .unwrap_err()
            .contains("redis://"));
        assert!(redis_url("redis://h:notaport").is_err());
        redis_url("rediss://user:pw@cache:6380").unwrap();
        assert!(redis_url("rediss://cache:6380/?cacert=/nonexistent.pem")
            .unwrap_err()
            .contains("Redis CA file /nonexistent.pem"));
        assert!(postgres_url("postgres://u@db/x?sslmode=verify")
            .unwrap_err()
            .contains("sslmode=verify"));
        assert!(postgres_url("mysql://x")
            .unwrap_err()
            .contains("postgres://"));
    }
}
