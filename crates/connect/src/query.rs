//! The query string of a service URL, for the parameters this crate reads.

/// `url` split into the part before `?`, its decoded query parameters and
/// the `#fragment` (with its `#`), if any.
pub(crate) fn split(url: &str) -> (&str, Vec<(String, String)>, &str) {
    let (rest, fragment) = match url.find('#') {
        Some(at) => url.split_at(at),
        None => (url, ""),
    };
    match rest.split_once('?') {
        Some((base, query)) => (
            base,
            form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            fragment,
        ),
        None => (rest, Vec::new(), fragment),
    }
}

/// `base` with `params` as its query string and `fragment` after it.
pub(crate) fn join(base: &str, params: &[(String, String)], fragment: &str) -> String {
    if params.is_empty() {
        return format!("{base}{fragment}");
    }
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!("{base}?{query}{fragment}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_joins_back() {
        let (base, params, fragment) = split("postgres://u:p@h/db?sslmode=require&x=a%20b#f");
        assert_eq!(base, "postgres://u:p@h/db");
        assert_eq!(
            params,
            vec![
                ("sslmode".to_owned(), "require".to_owned()),
                ("x".to_owned(), "a b".to_owned())
            ]
        );
        assert_eq!(fragment, "#f");
        assert_eq!(
            join(base, &params[1..], fragment),
            "postgres://u:p@h/db?x=a+b#f"
        );
        assert_eq!(split("redis://h").1, vec![]);
    }
}
