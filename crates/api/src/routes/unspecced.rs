//! app.bsky.unspecced.getConfig: what the app asks at start about the
//! service's optional features.

use axum::response::Response;
use serde_json::json;

use crate::error::XrpcResult;
use crate::routes::{json, Ctx};

/// No email confirmation is enforced here (that is the PDS's business) and
/// no live-now integrations are configured.
pub async fn get_config(_ctx: &Ctx<'_>) -> XrpcResult<Response> {
    json(&json!({"checkEmailConfirmed": false, "liveNow": []}))
}
