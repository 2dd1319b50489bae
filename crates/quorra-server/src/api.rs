//! What every admin API route shares: errors as JSON with a status that fits, and
//! commands run through the node's one request path
//! ([`quorra_node::pipeline::run_one`]) with their error replies turned into those
//! errors. [`crate::http`] (the router, access rules, key routes) and
//! [`crate::admin_api`] (the cluster routes) both build on it.

use std::sync::Arc;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use quorra_cluster::membership::ClusterView;
use quorra_node::commands::CommandError;
use quorra_node::pipeline;
use quorra_node::shared::Shared;
use quorra_resp::{Frame, Limits, parse_frame};
use serde_json::json;

/// A JSON error response.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// A command's error reply: 503 when the cluster could not serve it (a node did not
/// answer, too few replicas, not joined yet), 502 when a namespace's origin failed, 507
/// when out of memory, 400 otherwise.
impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        let unavailable = ["CLUSTERDOWN", "NOQUORUM", "LOADING"];
        let status = if unavailable.iter().any(|code| error.0.starts_with(code)) {
            StatusCode::SERVICE_UNAVAILABLE
        } else if error.0.starts_with("ORIGIN") {
            StatusCode::BAD_GATEWAY
        } else if error.0.starts_with("OOM") {
            StatusCode::INSUFFICIENT_STORAGE
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError(status, error.0.into_owned())
    }
}

/// An owner's reply that is not what the command answers: its error, or a bug.
pub fn unexpected(reply: Frame) -> ApiError {
    match reply {
        Frame::Error(text) => CommandError::new(String::from_utf8_lossy(&text).into_owned()).into(),
        other => ApiError(
            StatusCode::BAD_GATEWAY,
            format!("unexpected reply from the key's owner: {other:?}"),
        ),
    }
}

/// Runs a key command the way a RESP client's would run (same routing, same
/// consistency levels, counted once) and returns its reply; an error reply becomes the
/// [`ApiError`] that fits it.
pub async fn run(shared: &Shared, command: Vec<Bytes>) -> Result<Frame, ApiError> {
    let reply = pipeline::run_one(shared, command).await;
    match parse_frame(&reply, &Limits::default()) {
        Ok(Some((Frame::Error(text), _))) => {
            Err(CommandError::new(String::from_utf8_lossy(&text).into_owned()).into())
        }
        Ok(Some((frame, _))) => Ok(frame),
        _ => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the command's reply could not be read".into(),
        )),
    }
}

/// The view of a node in cluster mode; 404 otherwise.
pub fn view(shared: &Shared) -> Result<Arc<ClusterView>, ApiError> {
    shared
        .cluster
        .as_ref()
        .map(|node| node.view())
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "cluster mode is off".into()))
}
