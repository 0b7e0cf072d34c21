//! Secrets hidden from printed configuration and log lines.

const MASK: &str = "***";

/// Words in an option's name that mark its whole value as secret.
const SECRET_NAMES: [&str; 4] = ["password", "secret", "token", "private"];

/// `value` with any password in it replaced by `***`: the password of a URL's
/// user info (`redis://:pw@host`, `postgres://user:pw@host`), a `password=`
/// query parameter, or the whole value when the option's name says it is secret.
pub fn mask(option: &str, value: &str) -> String {
    let option = option.to_ascii_lowercase();
    if SECRET_NAMES.iter().any(|word| option.contains(word)) && !value.is_empty() {
        return MASK.to_owned();
    }
    mask_url(value)
}

/// A URL with its password (user info or `password=` parameter) masked;
/// anything that is not a URL comes back unchanged.
pub fn mask_url(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else {
        return value.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:{MASK}@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}{}", mask_query_password(tail))
}

fn mask_query_password(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}={MASK}"),
            _ => param.to_owned(),
        })
        .collect();
    let mut out = format!("{path}?{}", params.join("&"));
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_masked() {
        assert_eq!(
            mask_url("redis://:pw@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(
            mask_url("postgres://user:p%40ss@db.example:5432/skyhose"),
            "postgres://user:***@db.example:5432/skyhose"
        );
        assert_eq!(
            mask_url("postgres://user@db/x?sslmode=require&password=hunter2"),
            "postgres://user@db/x?sslmode=require&password=***"
        );
        // An `@` in the password itself: the host is after the last one.
        assert_eq!(mask_url("redis://u:a@b@h"), "redis://u:***@h");
    }

    #[test]
    fn values_without_secrets_are_unchanged() {
        for v in [
            "postgres://postgres@127.0.0.1:5432/skyhose",
            "wss://bsky.network",
            "redis://127.0.0.1:6379",
            "firehose:events",
            "sim",
            "",
        ] {
            assert_eq!(mask("database_url", v), v);
        }
    }

    #[test]
    fn secret_option_names_mask_the_whole_value() {
        assert_eq!(mask("admin_password", "x"), "***");
        assert_eq!(mask("signing_token", "abc"), "***");
        assert_eq!(mask("stream_key", "firehose:events"), "firehose:events");
    }
}
