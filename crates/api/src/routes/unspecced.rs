//! app.bsky.unspecced.getConfig: what the app asks at start about the
//! service's optional features.

use axum::response::Response;
use serde_json::json;

use crate::error::XrpcResult;
use crate::routes::{json, Ctx};

/// Nothing is configured, which the official AppView answers as an empty
/// object: no email-confirmation check (that is the PDS's business) and no
/// live-now integrations.
pub async fn get_config(_ctx: &Ctx<'_>) -> XrpcResult<Response> {
    json(&json!({}))
}
