//! Query-string parameters of an XRPC call, with typed getters whose errors
//! name the parameter (`400 InvalidRequest`), so bad input never reaches SQL.

use skyhose_proto::datetime::days_from_civil;
use skyhose_proto::syntax;

use crate::cursor::Cursor;
use crate::error::{XrpcError, XrpcResult};

/// No legitimate parameter value comes near this; longer ones are refused
/// before any parsing work.
const MAX_VALUE_LEN: usize = 3000;
/// Array parameters (`uris`, `actors`, ...) are bounded by their lexicons at
/// 25 or fewer; a generous global cap stops absurd query strings.
const MAX_VALUES: usize = 200;

/// Values of open-set parameters this service does not know, by parameter.
pub(crate) const UNKNOWN_VALUES: &str = "skyhose_api_unknown_param_values_total";

#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

/// An actor named by DID or by handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActorRef {
    Did(String),
    Handle(String),
}

impl Params {
    pub fn parse(query: Option<&str>) -> XrpcResult<Self> {
        let query = query.unwrap_or("");
        let mut pairs = Vec::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if value.len() > MAX_VALUE_LEN {
                return Err(XrpcError::bad_param(&key, "value is too long"));
            }
            if value.contains('\u{FFFD}') {
                return Err(XrpcError::bad_param(&key, "value is not valid UTF-8"));
            }
            if pairs.len() >= MAX_VALUES {
                return Err(XrpcError::invalid_request("too many query parameters"));
            }
            pairs.push((key.into_owned(), value.into_owned()));
        }
        Ok(Params { pairs })
    }

    /// The same parameters asking for the page at `cursor` with `limit`
    /// items (`routes::fill`).
    pub fn with_page(&self, limit: &str, cursor: &str) -> Params {
        let mut pairs: Vec<(String, String)> = self
            .pairs
            .iter()
            .filter(|(k, _)| k != "limit" && k != "cursor")
            .cloned()
            .collect();
        pairs.push(("limit".to_owned(), limit.to_owned()));
        pairs.push(("cursor".to_owned(), cursor.to_owned()));
        Params { pairs }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name || k.strip_suffix("[]") == Some(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn required(&self, name: &str) -> XrpcResult<&str> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| XrpcError::bad_param(name, "required"))
    }

    pub fn actor(&self, name: &str) -> XrpcResult<ActorRef> {
        parse_actor(name, self.required(name)?)
    }

    pub fn actors(&self, name: &str, max: usize) -> XrpcResult<Vec<ActorRef>> {
        let values = self.all(name);
        if values.is_empty() {
            return Err(XrpcError::bad_param(name, "required"));
        }
        if values.len() > max {
            return Err(XrpcError::bad_param(
                name,
                format!("at most {max} values, got {}", values.len()),
            ));
        }
        values.into_iter().map(|v| parse_actor(name, v)).collect()
    }

    pub fn at_uri(&self, name: &str) -> XrpcResult<String> {
        parse_at_uri(name, self.required(name)?)
    }

    pub fn at_uris(&self, name: &str, max: usize) -> XrpcResult<Vec<String>> {
        let values = self.all(name);
        if values.is_empty() {
            return Err(XrpcError::bad_param(name, "required"));
        }
        if values.len() > max {
            return Err(XrpcError::bad_param(
                name,
                format!("at most {max} values, got {}", values.len()),
            ));
        }
        values.into_iter().map(|v| parse_at_uri(name, v)).collect()
    }

    pub fn optional_cid(&self, name: &str) -> XrpcResult<Option<String>> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(value) => {
                syntax::validate_cid(value).map_err(|e| XrpcError::bad_param(name, e))?;
                Ok(Some(value.to_owned()))
            }
        }
    }

    /// `limit` within the lexicon's `[min, max]`, or its default when absent.
    pub fn limit(&self, min: i64, max: i64, default: i64) -> XrpcResult<i64> {
        self.int("limit", min, max, default)
    }

    pub fn int(&self, name: &str, min: i64, max: i64, default: i64) -> XrpcResult<i64> {
        match self.get(name) {
            None | Some("") => Ok(default),
            Some(value) => {
                let n: i64 = value.parse().map_err(|_| {
                    XrpcError::bad_param(name, format!("{value:?} is not an integer"))
                })?;
                if n < min || n > max {
                    return Err(XrpcError::bad_param(
                        name,
                        format!("{n} is out of range {min}..={max}"),
                    ));
                }
                Ok(n)
            }
        }
    }

    pub fn bool(&self, name: &str, default: bool) -> XrpcResult<bool> {
        match self.get(name) {
            None | Some("") => Ok(default),
            Some("true") | Some("1") => Ok(true),
            Some("false") | Some("0") => Ok(false),
            Some(value) => Err(XrpcError::bad_param(
                name,
                format!("{value:?} is not true or false"),
            )),
        }
    }

    /// One of the lexicon's `knownValues`, or `default` when absent.
    pub fn one_of<'a>(
        &self,
        name: &str,
        allowed: &[&'a str],
        default: &'a str,
    ) -> XrpcResult<&'a str> {
        match self.get(name) {
            None | Some("") => Ok(default),
            Some(value) => allowed
                .iter()
                .copied()
                .find(|a| *a == value)
                .ok_or_else(|| {
                    XrpcError::bad_param(
                        name,
                        format!("{value:?} is not one of {}", allowed.join(", ")),
                    )
                }),
        }
    }

    /// A parameter whose lexicon lists `knownValues`, an open set: a value
    /// this service does not know means `default`, as the official AppView
    /// reads it, rather than a refusal. The value is still counted, so a
    /// client sending one is seen.
    pub fn known_value<'a>(&self, name: &str, known: &[&'a str], default: &'a str) -> &'a str {
        match self.get(name) {
            None | Some("") => default,
            Some(value) => known
                .iter()
                .copied()
                .find(|k| *k == value)
                .unwrap_or_else(|| {
                    metrics::counter!(UNKNOWN_VALUES, "param" => name.to_owned()).increment(1);
                    default
                }),
        }
    }

    pub fn cursor(&self) -> XrpcResult<Option<Cursor>> {
        match self.get("cursor") {
            None | Some("") => Ok(None),
            Some(value) => Cursor::decode(value).map(Some),
        }
    }
    /// A time bound: an AT Protocol datetime, or a bare `YYYY-MM-DD` date
    /// (midnight UTC), as microseconds since the Unix epoch. Parsed here so
    /// that no value the database would refuse reaches SQL.
    pub fn optional_timestamp(&self, name: &str) -> XrpcResult<Option<i64>> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(value) => datetime_micros(value).map(Some).ok_or_else(|| {
                XrpcError::bad_param(
                    name,
                    format!("{value:?} is not a datetime or YYYY-MM-DD date"),
                )
            }),
        }
    }

    /// Every value of an array parameter of strings, at most `max` values of
    /// at most `max_len` bytes each.
    pub fn strings(&self, name: &str, max: usize, max_len: usize) -> XrpcResult<Vec<&str>> {
        let values: Vec<&str> = self
            .all(name)
            .into_iter()
            .filter(|v| !v.is_empty())
            .collect();
        if values.len() > max {
            return Err(XrpcError::bad_param(
                name,
                format!("at most {max} values, got {}", values.len()),
            ));
        }
        if let Some(long) = values.iter().find(|v| v.len() > max_len) {
            return Err(XrpcError::bad_param(
                name,
                format!("values are at most {max_len} bytes, got {}", long.len()),
            ));
        }
        Ok(values)
    }
}

/// `YYYY-MM-DD` or an AT Protocol datetime as microseconds since the epoch.
pub(crate) fn datetime_micros(value: &str) -> Option<i64> {
    let date_only = value.len() == 10;
    if !date_only && !syntax::is_datetime(value) {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = value.get(from..to)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    if value.get(4..5) != Some("-") || value.get(7..8) != Some("-") {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut micros = days_from_civil(year, month, day) * 86_400_000_000;
    if date_only {
        return Some(micros);
    }
    micros += (num(11, 13)? * 3600 + num(14, 16)? * 60 + num(17, 19)?) * 1_000_000;
    let mut rest = &value[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        let kept = &fraction[..digits.min(6)];
        let scale = 10i64.pow(6 - kept.len() as u32);
        micros += kept.parse::<i64>().ok()? * scale;
        rest = &fraction[digits..];
    }
    if let Some(offset) = rest.strip_prefix(['+', '-']) {
        let hours: i64 = offset.get(0..2)?.parse().ok()?;
        let minutes: i64 = offset.get(3..5)?.parse().ok()?;
        let offset = (hours * 60 + minutes) * 60_000_000;
        // Local time minus its offset is UTC.
        micros -= if rest.starts_with('+') {
            offset
        } else {
            -offset
        };
    }
    Some(micros)
}

fn parse_actor(name: &str, value: &str) -> XrpcResult<ActorRef> {
    actor_ref(value).map_err(|e| XrpcError::bad_param(name, e))
}

/// An `at-identifier`: a DID, or a handle (lower-cased).
pub(crate) fn actor_ref(value: &str) -> Result<ActorRef, syntax::SyntaxError> {
    if value.starts_with("did:") {
        syntax::validate_did(value)?;
        Ok(ActorRef::Did(value.to_owned()))
    } else {
        syntax::validate_handle(value)?;
        Ok(ActorRef::Handle(value.to_ascii_lowercase()))
    }
}

fn parse_at_uri(name: &str, value: &str) -> XrpcResult<String> {
    syntax::validate_at_uri(value).map_err(|e| XrpcError::bad_param(name, e))?;
    Ok(value.to_owned())
}

/// Runs a raw query string through the parser and every typed getter, the
/// way handlers do, and reports how many parameters were accepted. The fuzz
/// target and the corpus-replay test call this: whatever the bytes, it must
/// return (an error is fine), never panic.
pub fn exercise_query(query: &[u8]) -> usize {
    let Ok(text) = std::str::from_utf8(query) else {
        return 0;
    };
    let Ok(params) = Params::parse(Some(text)) else {
        return 0;
    };
    let mut accepted = 0;
    let mut count = |ok: bool| accepted += usize::from(ok);
    count(params.actor("actor").is_ok());
    count(params.actors("actors", 25).is_ok());
    count(params.at_uri("uri").is_ok());
    count(params.at_uris("uris", 25).is_ok());
    count(params.optional_cid("cid").is_ok());
    count(params.limit(1, 100, 50).is_ok());
    count(params.int("depth", 0, 1000, 6).is_ok());
    count(params.bool("includePins", false).is_ok());
    count(params.one_of("filter", &["a", "b"], "a").is_ok());
    count(params.cursor().is_ok());
    count(params.optional_timestamp("since").is_ok());
    count(params.strings("tag", 10, 640).is_ok());
    if let Some(raw) = params.get("cursor") {
        count(Cursor::decode(raw).is_ok());
    }
    accepted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_and_bracketed_arrays() {
        let p = Params::parse(Some("uris=a&uris=b&uris[]=c&limit=5")).unwrap();
        assert_eq!(p.all("uris"), ["a", "b", "c"]);
        assert_eq!(p.limit(1, 100, 50).unwrap(), 5);
    }

    #[test]
    fn errors_name_the_parameter() {
        let p = Params::parse(Some("limit=1000&actor=not%20a%20handle")).unwrap();
        let err = p.limit(1, 100, 50).unwrap_err();
        assert!(err.message.contains("\"limit\""), "{}", err.message);
        let err = p.actor("actor").unwrap_err();
        assert!(err.message.contains("\"actor\""), "{}", err.message);
        let err = p.actor("missing").unwrap_err();
        assert!(err.message.contains("required"));
    }

    #[test]
    fn unknown_values_of_an_open_set_read_as_the_default() {
        let p = Params::parse(Some("a=posts_no_replies&b=nope&c=")).unwrap();
        let known = ["posts_with_replies", "posts_no_replies"];
        assert_eq!(
            p.known_value("a", &known, "posts_with_replies"),
            "posts_no_replies"
        );
        for name in ["b", "c", "missing"] {
            assert_eq!(
                p.known_value(name, &known, "posts_with_replies"),
                "posts_with_replies"
            );
        }
    }

    #[test]
    fn timestamps_from_dates_and_datetimes() {
        let p = Params::parse(Some(
            "a=1970-01-02&b=2024-11-01T00:00:01.5Z&c=2024-11-01T02:00:01.5%2B02:00&d=yesterday",
        ))
        .unwrap();
        assert_eq!(p.optional_timestamp("a").unwrap(), Some(86_400_000_000));
        let b = p.optional_timestamp("b").unwrap().unwrap();
        assert_eq!(b, 1_730_419_201_500_000);
        assert_eq!(p.optional_timestamp("c").unwrap(), Some(b));
        assert!(p.optional_timestamp("d").is_err());
        assert_eq!(p.optional_timestamp("missing").unwrap(), None);
    }

    #[test]
    fn refuses_invalid_utf8_and_huge_values() {
        assert!(Params::parse(Some("q=%FF%FE")).is_err());
        let long = format!("q={}", "a".repeat(MAX_VALUE_LEN + 1));
        assert!(Params::parse(Some(&long)).is_err());
    }
}
