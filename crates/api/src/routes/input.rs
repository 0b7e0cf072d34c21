//! Procedure input: the JSON object a POST carries, with typed getters whose
//! errors name the bad field (`400 InvalidRequest`, counted by reason in
//! `skyhose_api_bad_input_total`), and the write transaction and empty
//! answer that procedures share.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use skyhose_proto::syntax;

use crate::error::{XrpcError, XrpcResult};
use crate::params::{self, ActorRef};

pub(crate) const BAD_INPUT: &str = "skyhose_api_bad_input_total";

/// A procedure's input object.
pub struct Input {
    fields: Map<String, Value>,
}

fn bad(reason: &'static str, message: String) -> XrpcError {
    metrics::counter!(BAD_INPUT, "reason" => reason).increment(1);
    XrpcError::invalid_request(message)
}

impl Input {
    /// The body as a JSON object: every procedure served here takes one.
    pub fn parse(nsid: &str, body: &[u8]) -> XrpcResult<Self> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(bad(
                "missing",
                format!("{nsid} needs a JSON object as its input"),
            ));
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(fields)) => Ok(Input { fields }),
            Ok(_) => Err(bad(
                "not_object",
                format!("the input of {nsid} must be a JSON object"),
            )),
            Err(e) => Err(bad(
                "not_json",
                format!("the input of {nsid} is not JSON: {e}"),
            )),
        }
    }

    fn field_error(name: &str, problem: impl std::fmt::Display) -> XrpcError {
        bad("field", format!("invalid input field {name:?}: {problem}"))
    }

    /// A field that must be a string when present.
    pub fn optional_str(&self, name: &str) -> XrpcResult<Option<&str>> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(Self::field_error(name, "must be a string")),
        }
    }

    pub fn str(&self, name: &str) -> XrpcResult<&str> {
        self.optional_str(name)?
            .ok_or_else(|| Self::field_error(name, "required"))
    }

    /// A field that must be a boolean when present.
    pub fn optional_bool(&self, name: &str) -> XrpcResult<Option<bool>> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(Self::field_error(name, "must be a boolean")),
        }
    }

    /// A field that must be an object when present.
    pub fn optional_object(&self, name: &str) -> XrpcResult<Option<&Map<String, Value>>> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(Self::field_error(name, "must be an object")),
        }
    }

    pub fn object(&self, name: &str) -> XrpcResult<&Map<String, Value>> {
        self.optional_object(name)?
            .ok_or_else(|| Self::field_error(name, "required"))
    }

    pub fn array(&self, name: &str) -> XrpcResult<&Vec<Value>> {
        match self.fields.get(name) {
            Some(Value::Array(items)) => Ok(items),
            None | Some(Value::Null) => Err(Self::field_error(name, "required")),
            Some(_) => Err(Self::field_error(name, "must be an array")),
        }
    }

    /// An `at-identifier`: a DID or a handle.
    pub fn actor(&self, name: &str) -> XrpcResult<ActorRef> {
        params::actor_ref(self.str(name)?).map_err(|e| Self::field_error(name, e))
    }

    pub fn did(&self, name: &str) -> XrpcResult<String> {
        let value = self.str(name)?;
        syntax::validate_did(value).map_err(|e| Self::field_error(name, e))?;
        Ok(value.to_owned())
    }

    pub fn at_uri(&self, name: &str) -> XrpcResult<String> {
        let value = self.str(name)?;
        syntax::validate_at_uri(value).map_err(|e| Self::field_error(name, e))?;
        Ok(value.to_owned())
    }

    pub fn cid(&self, name: &str) -> XrpcResult<String> {
        let value = self.str(name)?;
        syntax::validate_cid(value).map_err(|e| Self::field_error(name, e))?;
        Ok(value.to_owned())
    }

    /// A `datetime`, as microseconds since the Unix epoch.
    pub fn datetime_micros(&self, name: &str) -> XrpcResult<i64> {
        let value = self.str(name)?;
        if !syntax::is_datetime(value) {
            return Err(Self::field_error(
                name,
                format!("{value:?} is not a datetime"),
            ));
        }
        params::datetime_micros(value)
            .ok_or_else(|| Self::field_error(name, format!("{value:?} is not a datetime")))
    }

    /// A string of at most `max` bytes.
    pub fn bounded_str(&self, name: &str, max: usize) -> XrpcResult<&str> {
        let value = self.str(name)?;
        if value.len() > max {
            return Err(Self::field_error(
                name,
                format!("at most {max} bytes, got {}", value.len()),
            ));
        }
        Ok(value)
    }
}

/// The answer of a procedure without output: 200, an empty body and no
/// content type, which the PDS passes on to the client as it is.
pub fn done() -> XrpcResult<Response> {
    Ok(StatusCode::OK.into_response())
}

/// Runs `statement` in a read-write transaction: the API's sessions are
/// read-only by default (`db::connect_pool`), and only the private-state
/// procedures opt out, one statement at a time.
pub async fn write(
    client: &mut deadpool_postgres::Object,
    statement: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> XrpcResult<u64> {
    let tx = client.build_transaction().read_only(false).start().await?;
    let stmt = tx.prepare_cached(statement).await?;
    let changed = tx.execute(&stmt, params).await?;
    tx.commit().await?;
    Ok(changed)
}
