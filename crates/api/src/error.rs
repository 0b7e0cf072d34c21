//! XRPC errors: the `{"error": ..., "message": ...}` body with the lexicon's
//! error name and the HTTP status clients key off.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An error answered to the client. Internal causes are logged, never sent:
/// database messages may carry query text.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {message}")]
pub struct XrpcError {
    pub status: StatusCode,
    pub name: &'static str,
    pub message: String,
}

impl XrpcError {
    pub fn new(status: StatusCode, name: &'static str, message: impl Into<String>) -> Self {
        XrpcError {
            status,
            name,
            message: message.into(),
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequest", message)
    }

    /// A bad value for one query parameter; the message names it.
    pub fn bad_param(param: &str, problem: impl std::fmt::Display) -> Self {
        Self::invalid_request(format!("invalid parameter {param:?}: {problem}"))
    }

    pub fn not_found(name: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, name, message)
    }

    /// A method that needs a viewer was called without a token.
    pub fn auth_missing(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "AuthMissing", message)
    }

    /// A token (or Authorization header) that was refused; `name` is the
    /// official AppView's name for the refusal (`AuthError::name`).
    pub fn auth_refused(name: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, name, message)
    }

    /// A handle no served account holds; the official AppView answers it
    /// as a bad request, not with an error name of its own.
    pub fn handle_not_found(handle: &str) -> Self {
        Self::invalid_request(format!(
            "handle: {handle} does not resolve to an indexed account"
        ))
    }

    /// An actor whose content the viewer may not see: the viewer blocks
    /// it, or it blocks the viewer (directly or by a list).
    pub fn blocked_actor(did: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "BlockedActor",
            format!("the viewer blocks actor {did}"),
        )
    }

    pub fn blocked_by_actor(did: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "BlockedByActor",
            format!("actor {did} blocks the viewer"),
        )
    }

    pub fn method_not_implemented(nsid: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            "MethodNotImplemented",
            format!("method {nsid} is not implemented by this service"),
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "internal server error",
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            message,
        )
    }
}

pub(crate) const QUERY_TIMEOUTS: &str = "skyhose_api_query_timeouts_total";
pub(crate) const DB_ERRORS: &str = "skyhose_api_db_errors_total";
pub(crate) const POOL_WAIT_TIMEOUTS: &str = "skyhose_api_pool_wait_timeouts_total";
pub(crate) const AUTH_FAILURES: &str = "skyhose_api_auth_failures_total";

impl From<tokio_postgres::Error> for XrpcError {
    fn from(err: tokio_postgres::Error) -> Self {
        // 57014: statement_timeout fired; the client asked for too much.
        if err.code().map(|c| c.code()) == Some("57014") {
            metrics::counter!(QUERY_TIMEOUTS).increment(1);
            return XrpcError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "QueryTimeout",
                "the query took too long and was cancelled",
            );
        }
        tracing::error!(error = %err, "database query failed");
        metrics::counter!(DB_ERRORS).increment(1);
        XrpcError::internal()
    }
}

impl From<deadpool_postgres::PoolError> for XrpcError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        if let deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) = err {
            metrics::counter!(POOL_WAIT_TIMEOUTS).increment(1);
            return XrpcError::unavailable(
                "every database connection stayed busy for the statement timeout; try again",
            );
        }
        tracing::error!(error = %err, "no database connection");
        metrics::counter!(DB_ERRORS).increment(1);
        XrpcError::unavailable("the database is not reachable")
    }
}

impl IntoResponse for XrpcError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.name, "message": self.message})),
        )
            .into_response()
    }
}

pub type XrpcResult<T> = Result<T, XrpcError>;
