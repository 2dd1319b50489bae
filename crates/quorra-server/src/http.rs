//! The admin HTTP API.
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/keys/{key}` | the raw value (`application/octet-stream`); 404 if missing |
//! | `PUT /v1/keys/{key}?ttl=SECONDS` | stores the request body as the value; 204 |
//! | `DELETE /v1/keys/{key}` | 204 if it existed, 404 if not |
//! | `GET /v1/stats` | JSON: memory, keys, hits, misses, evictions, expirations, clients, commands |
//! | `GET /metrics` | Prometheus text exposition |
//! | `GET /healthz` | 200 while the process serves HTTP |
//! | `GET /readyz` | 200 when the node accepts clients |
//!
//! Keys are the rest of the path after `/v1/keys/`, percent-decoded, so they may contain
//! `/`. With `--http-token`, every route except `/healthz` and `/readyz` needs
//! `Authorization: Bearer <token>`. Errors are JSON `{"error": "..."}` with a status
//! that fits: 400 bad input, 401 missing or wrong token, 404 no such key, 413 body over
//! `proto-max-bulk-len`, 507 out of memory under `noeviction`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use quorra_store::{SetExpiry, SetOptions, StoreError};
use serde::Deserialize;
use serde_json::json;

use crate::shared::Shared;

/// A JSON error response.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let status = match error {
            StoreError::OutOfMemory | StoreError::EntryTooLarge { .. } => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            StoreError::ValueTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError(status, error.to_string())
    }
}

/// The admin router for a node.
pub fn router(shared: Arc<Shared>) -> Router {
    let body_limit = usize::try_from(shared.config.proto_max_bulk_len).unwrap_or(usize::MAX);
    let protected = Router::new()
        .route(
            "/v1/keys/{*key}",
            get(get_key).put(put_key).delete(delete_key),
        )
        .route("/v1/stats", get(stats))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ));
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route(
            "/readyz",
            get(|| async { Json(json!({ "status": "ready" })) }),
        )
        .merge(protected)
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such route".into()) })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(shared)
}

async fn require_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &shared.config.http_token else {
        return next.run(request).await;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if given.is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes())) {
        return next.run(request).await;
    }
    let mut response = ApiError(
        StatusCode::UNAUTHORIZED,
        "missing or wrong bearer token".into(),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Compares without stopping at the first difference, so response time does not reveal
/// how much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn get_key(
    State(shared): State<Arc<Shared>>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    match shared.store.get(key.as_bytes()) {
        Some(value) => {
            Ok(([(header::CONTENT_TYPE, "application/octet-stream")], value).into_response())
        }
        None => Err(ApiError(StatusCode::NOT_FOUND, "no such key".into())),
    }
}

#[derive(Deserialize)]
struct PutParams {
    ttl: Option<String>,
}

async fn put_key(
    State(shared): State<Arc<Shared>>,
    Path(key): Path<String>,
    Query(params): Query<PutParams>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let expiry = match params.ttl.as_deref() {
        None => SetExpiry::None,
        Some(ttl) => match ttl.parse::<i64>() {
            Ok(seconds) if seconds > 0 => SetExpiry::Ex(seconds),
            _ => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("ttl must be a whole number of seconds greater than 0, not {ttl:?}"),
                ));
            }
        },
    };
    let options = SetOptions {
        expiry,
        ..SetOptions::default()
    };
    shared.store.set(key.as_bytes(), &body, options)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_key(
    State(shared): State<Arc<Shared>>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    match shared.store.del(&[key.as_bytes()]) {
        0 => Err(ApiError(StatusCode::NOT_FOUND, "no such key".into())),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}

async fn stats(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let store = shared.store.stats();
    let counters = &shared.counters;
    Json(json!({
        "used_memory": shared.store.used_memory(),
        "maxmemory": shared.store.maxmemory(),
        "maxmemory_policy": crate::config::policy_name(shared.store.policy()),
        "rss": crate::commands::server::rss_bytes(),
        "keys": store.total.entries,
        "keyspace_hits": store.total.hits,
        "keyspace_misses": store.total.misses,
        "evicted_keys": store.total.evictions,
        "expired_keys": store.total.expirations,
        "connected_clients": shared.clients.len(),
        "total_connections_received": counters.connections_received.load(Ordering::Relaxed),
        "total_commands_processed": counters.commands_processed.load(Ordering::Relaxed),
        "rejected_calls": counters.rejected_calls.load(Ordering::Relaxed),
        "failed_calls": counters.failed_calls.load(Ordering::Relaxed),
        "uptime_seconds": shared.started.elapsed().as_secs(),
    }))
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.render(
            &shared.store,
            shared.cluster.as_ref().map(|node| node.view()).as_deref(),
        ),
    )
}
