//! The admin HTTP API.
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/keys/{key}[?limit=N]` | the raw value (`application/octet-stream`), or its first N bytes with its length in `X-Quorra-Value-Length`; 404 if missing |
//! | `PUT /v1/keys/{key}?ttl=SECONDS&hot=true` | stores the request body as the value; 204. `hot=true` also pins the key hot on every node (`QUORRA HOT key ON`), `hot=false` unpins it |
//! | `DELETE /v1/keys/{key}` | 204 if it existed, 404 if not |
//! | `GET /v1/keys/{key}/owners` | JSON: the nodes that hold the key's copies, in preference order |
//! | `GET /v1/stats` | JSON: memory, keys, hits, misses, evictions, expirations, clients, commands |
//! | `GET /v1/cluster` | JSON: every known member with its state, addresses, zone and figures |
//! | `GET /v1/ring[?tokens=true]` | JSON: the ring's version and each node's vnodes and share of keys (and tokens) |
//! | `/v1/overview`, `/v1/scan`, `/v1/command`, `/v1/nodes/{id}/...` | see [`crate::admin_api`] |
//! | `GET /v1/namespaces` | JSON: each namespace's policy, its origin's health and this node's load figures |
//! | `GET /v1/hotkeys` | JSON: the cluster-wide hot keys, hottest first: key (lossy UTF-8 text), db, ops per second, since when (ms), and the nodes that find each hot |
//! | `GET /metrics` | Prometheus text exposition |
//! | `GET /healthz` | 200 while the process serves HTTP |
//! | `GET /readyz` | 200 when the node serves keys; 503 while it has not joined its cluster; the body names each origin's health (a down origin does not make the node unready) |
//!
//! Keys are the rest of the path after `/v1/keys/`, percent-decoded to bytes, so they
//! may contain `/` and binary bytes (`%FF`); a path that ends in a literal `/owners` asks for the owners of the key before it
//! (write a key that itself ends in `/owners` with its last slash as `%2F`). The cluster
//! routes answer 404 on a node that is not in cluster mode.
//!
//! # Who may use it
//!
//! `/healthz` and `/readyz` answer everyone. The other routes, the way Redis's protected
//! mode guards the RESP port:
//!
//! - a request whose `Origin` names another site is refused, and so is, without
//!   `--http-token`, one whose `Host` is a DNS name other than `localhost` (DNS
//!   rebinding); answers carry no CORS header and forbid framing and sniffing;
//! - with `--http-token`: every client needs `Authorization: Bearer <token>`;
//! - without it, clients on other hosts are refused (403), and clients on loopback need
//!   `Authorization: Bearer <requirepass>` when a password is set: a password never
//!   leaves the API open.
//!
//! # Bounds
//!
//! A request must be handled, its body included, within `http-request-timeout-ms`
//! (408); a `Content-Length` over `proto-max-bulk-len` is refused before the body is
//! read (413). Connections and header timeouts are bounded by the listener
//! ([`crate::http_listener`]).
//!
//! Errors are JSON `{"error": "..."}` with a status that fits, whatever produced them:
//! 400 bad input, 401 missing or wrong token, 403 refused host, 404 no such key or
//! route, 405 wrong method, 408 too slow, 413 body over `proto-max-bulk-len`, 502 a
//! namespace's origin failed to load the key, 503 a node that cannot be reached or has
//! not joined, 507 out of memory under `noeviction`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use quorra_cluster::membership::{ClusterView, Member};
use quorra_node::auth_log::constant_time_eq;
use quorra_node::shared::Shared;
use quorra_origin::origins::Health;
use quorra_resp::Frame;

use crate::admin_api;
use crate::api::{ApiError, run, unexpected, view};

fn value_response(value: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/octet-stream")], value).into_response()
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
        .route("/v1/cluster", get(cluster))
        .route("/v1/ring", get(ring))
        .route("/v1/namespaces", get(namespaces))
        .route("/v1/hotkeys", get(hotkeys))
        .route("/v1/overview", get(admin_api::overview))
        .route("/v1/scan", get(admin_api::scan))
        .route("/v1/command", post(admin_api::command))
        .route("/v1/nodes/{id}/leave", post(admin_api::leave))
        .route("/v1/nodes/{id}/forget", post(admin_api::forget))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(shared.clone(), admit))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            same_origin_only,
        ));
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .merge(crate::dashboard::routes())
        .merge(protected)
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such route".into()) })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            bound_request,
        ))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(security_headers))
        .with_state(shared)
}

/// 200 once the node serves keys; 503 while a node in cluster mode has not joined.
async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let joined = shared
        .cluster
        .as_ref()
        .is_none_or(|node| node.view().joined);
    // An origin that is down does not make the node unready: it still serves every
    // cached key, which is when a cache matters most. The body names it.
    let origins: serde_json::Map<String, serde_json::Value> = shared
        .origins
        .iter()
        .flat_map(|origins| origins.health())
        .map(|(name, health)| (name.to_owned(), health_json(&health)))
        .collect();
    if joined {
        Json(json!({ "status": "ready", "origins": origins })).into_response()
    } else {
        let body = json!({
            "status": "joining",
            "error": "this node has not joined its cluster yet",
            "origins": origins,
        });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

fn health_json(health: &Health) -> serde_json::Value {
    match health {
        Health::Unknown => json!({ "status": "unknown" }),
        Health::Up => json!({ "status": "up" }),
        Health::Down(reason) => json!({ "status": "down", "error": reason }),
    }
}

/// Every namespace's policy, origin health and this node's figures.
async fn hotkeys(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let view = shared.cluster.as_ref().map(|node| node.view());
    let hot: Vec<serde_json::Value> =
        quorra_node::hot_keys::seen_from(shared.hot_keys.hot(), view.as_deref())
            .into_iter()
            .map(|key| {
                let (db, user_key) = quorra_ring::database::split(&key.key);
                json!({
                    "key": String::from_utf8_lossy(user_key),
                    "db": db,
                    "ops_per_sec": key.ops_per_sec,
                    "since_ms": key.since_ms,
                    "nodes": key.nodes,
                })
            })
            .collect();
    Json(json!({ "hotkeys": hot }))
}

async fn namespaces(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let reports: Vec<serde_json::Value> = shared
        .origins
        .iter()
        .flat_map(|origins| origins.report(shared.store.now_ms()))
        .map(|report| {
            report
                .fields
                .into_iter()
                .map(|(field, value)| {
                    // Figures as JSON numbers; names and the prefix as text.
                    let text = matches!(field, "name" | "prefix" | "origin" | "origin_status");
                    let value = match (value.parse::<u64>(), value.parse::<f64>()) {
                        _ if text => json!(value),
                        (Ok(integer), _) => json!(integer),
                        (_, Ok(number)) => json!(number),
                        _ => json!(value),
                    };
                    (field.to_owned(), value)
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        })
        .collect();
    Json(json!({ "namespaces": reports }))
}

/// The access rule of the module docs: a token when one is configured; otherwise
/// loopback clients only, with the password when one is set.
async fn admit(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let remote = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_none_or(|ConnectInfo(peer)| !peer.ip().to_canonical().is_loopback());
    let token = match &shared.config.http_token {
        Some(token) => Some(token.clone()),
        None if remote => {
            return ApiError(
                StatusCode::FORBIDDEN,
                "the admin API is closed to clients on other hosts because no --http-token is \
                 set (protected mode)"
                    .into(),
            )
            .into_response();
        }
        None => shared.settings.read().requirepass.clone(),
    };
    let Some(token) = token else {
        return next.run(request).await;
    };
    let given = request
        .headers()
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

/// Refuses what a browser sends on another site's behalf: a request whose `Origin`
/// names another host than its `Host` (another page posting to the API), and — when no
/// `--http-token` is set, so that the loopback rule is the API's only guard — a request
/// whose `Host` is a name other than `localhost` (DNS rebinding: a site's name pointed
/// at 127.0.0.1 makes the browser treat the API as that site's).
async fn same_origin_only(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok());
    let origin = headers
        .get(header::ORIGIN)
        .map(|value| value.to_str().unwrap_or(""));
    if let Some(origin) = origin {
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if origin_host.is_none() || origin_host != host {
            return ApiError(
                StatusCode::FORBIDDEN,
                format!("requests from another site ({origin}) are refused"),
            )
            .into_response();
        }
    }
    if shared.config.http_token.is_none()
        && let Some(host) = host
        && !names_this_machine(host)
    {
        return ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "Host {host:?} refused: without --http-token, address the node by IP or as \
                 localhost"
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// True for a `Host` header that is an IP address or `localhost`, with or without a
/// port.
fn names_this_machine(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // [v6]:port
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// Headers on every answer that keep other sites from framing or sniffing it; routes
/// that set their own (the dashboard's policy) keep theirs.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

/// Refuses a body announced larger than `proto-max-bulk-len` before reading it, and
/// bounds the handling of a request, its body included, by `http-request-timeout-ms`.
async fn bound_request(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if announced.is_some_and(|length| length > shared.config.proto_max_bulk_len) {
        return ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is larger than proto-max-bulk-len ({} bytes)",
                shared.config.proto_max_bulk_len
            ),
        )
        .into_response();
    }
    let limit = shared.config.http_request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request was not received and answered within {limit:?}"),
        )
        .into_response(),
    }
}

/// Turns an error response that is not JSON (axum's own refusals: wrong method, body
/// over the limit, a path it cannot decode) into the API's JSON form, keeping its status.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    // axum's refusals are one short line; more than this is not one of them.
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let message = String::from_utf8_lossy(&text).trim().to_owned();
    let message = if message.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        message
    };
    let mut json = ApiError(status, message).into_response();
    for (name, value) in parts
        .headers
        .iter()
        .filter(|(name, _)| *name != header::CONTENT_TYPE && *name != header::CONTENT_LENGTH)
    {
        json.headers_mut().insert(name, value.clone());
    }
    json
}

/// The key of a `/v1/keys/...` path: the rest of the path, percent-decoded to bytes, so
/// that binary keys are written `%FF`.
fn key_of(uri: &Uri) -> Bytes {
    let rest = uri.path().strip_prefix("/v1/keys/").unwrap_or("");
    Bytes::from(percent_encoding::percent_decode_str(rest).collect::<Vec<u8>>())
}

#[derive(Deserialize)]
struct GetParams {
    limit: Option<u64>,
}

/// The header that gives a value's whole length when `?limit=` cut it short.
const VALUE_LENGTH: &str = "x-quorra-value-length";

async fn get_key(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<GetParams>,
    uri: Uri,
) -> Result<Response, ApiError> {
    if uri.path().ends_with("/owners") {
        let key = key_of(&uri);
        let key = key.slice(..key.len() - "/owners".len());
        return owners(&shared, &key).map(IntoResponse::into_response);
    }
    let key = key_of(&uri);
    let Some(limit) = params.limit else {
        let command = vec![Bytes::from_static(b"GET"), key];
        return match run(&shared, command).await? {
            Frame::Bulk(value) => Ok(value_response(value)),
            Frame::Null => Err(ApiError(StatusCode::NOT_FOUND, "no such key".into())),
            other => Err(unexpected(other)),
        };
    };
    // The first `limit` bytes and the length, without copying a large value whole from
    // its owner; EXISTS tells an empty value from a missing key.
    let length = match run(&shared, vec![Bytes::from_static(b"STRLEN"), key.clone()]).await? {
        Frame::Integer(length) => length,
        other => return Err(unexpected(other)),
    };
    if length == 0 {
        let exists = run(&shared, vec![Bytes::from_static(b"EXISTS"), key.clone()]).await?;
        if exists == Frame::Integer(0) {
            return Err(ApiError(StatusCode::NOT_FOUND, "no such key".into()));
        }
    }
    let end = limit.min(length as u64) as i64 - 1;
    let command = vec![
        Bytes::from_static(b"GETRANGE"),
        key,
        Bytes::from_static(b"0"),
        Bytes::from(end.to_string()),
    ];
    let head = match (end, run(&shared, command).await?) {
        (-1, _) => Bytes::new(),
        (_, Frame::Bulk(value)) => value,
        (_, other) => return Err(unexpected(other)),
    };
    let mut response = value_response(head);
    response
        .headers_mut()
        .insert(VALUE_LENGTH, HeaderValue::from(length));
    Ok(response)
}

#[derive(Deserialize)]
struct PutParams {
    ttl: Option<String>,
    /// Pin the key hot (`true`) or unpin it (`false`), as NexusCache's flag.
    hot: Option<String>,
}

async fn put_key(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<PutParams>,
    uri: Uri,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let mut command = vec![Bytes::from_static(b"SET"), key_of(&uri), body];
    if let Some(ttl) = params.ttl.as_deref() {
        match ttl.parse::<i64>() {
            Ok(seconds) if seconds > 0 => {
                command.extend([Bytes::from_static(b"EX"), Bytes::from(seconds.to_string())]);
            }
            _ => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("ttl must be a whole number of seconds greater than 0, not {ttl:?}"),
                ));
            }
        }
    }
    let pin = match params.hot.as_deref() {
        None => None,
        Some("true") => Some(Bytes::from_static(b"ON")),
        Some("false") => Some(Bytes::from_static(b"OFF")),
        Some(other) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("hot must be true or false, not {other:?}"),
            ));
        }
    };
    let key = command[1].clone();
    match run(&shared, command).await? {
        Frame::Simple(_) => {}
        other => return Err(unexpected(other)),
    }
    if let Some(switch) = pin {
        let command = vec![
            Bytes::from_static(b"QUORRA"),
            Bytes::from_static(b"HOT"),
            key,
            switch,
        ];
        match run(&shared, command).await? {
            Frame::Simple(_) => {}
            other => return Err(unexpected(other)),
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_key(State(shared): State<Arc<Shared>>, uri: Uri) -> Result<StatusCode, ApiError> {
    let command = vec![Bytes::from_static(b"DEL"), key_of(&uri)];
    match run(&shared, command).await? {
        Frame::Integer(0) => Err(ApiError(StatusCode::NOT_FOUND, "no such key".into())),
        Frame::Integer(_) => Ok(StatusCode::NO_CONTENT),
        other => Err(unexpected(other)),
    }
}

async fn stats(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let store = shared.store.stats();
    let counters = &shared.counters;
    Json(json!({
        "used_memory": shared.store.used_memory(),
        "maxmemory": shared.store.maxmemory(),
        "maxmemory_policy": quorra_node::config::policy_name(shared.store.policy()),
        "rss": quorra_node::health::rss_bytes(),
        "keys": store.total.entries,
        "keyspace_hits": counters.keyspace_hits.load(Ordering::Relaxed),
        "keyspace_misses": counters.keyspace_misses.load(Ordering::Relaxed),
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
    let view = shared.cluster.as_ref().map(|node| node.view());
    let cluster = shared.cluster.as_ref().zip(view.as_deref());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.render(
            &shared.store,
            quorra_node::metrics::NodeFigures {
                hot_cache_hits: shared.hot_cache.hits.load(Ordering::Relaxed),
                hot_cache_bytes: shared.hot_cache.size().1,
                keyspace_hits: shared.counters.keyspace_hits.load(Ordering::Relaxed),
                keyspace_misses: shared.counters.keyspace_misses.load(Ordering::Relaxed),
                auth_failures: shared.auth_log.failures(),
                evicted: shared.clients.evicted(),
                buffered: shared.clients.buffered(),
                cpu_seconds: {
                    let cpu = quorra_node::health::ProcessCpu::now();
                    cpu.user + cpu.system
                },
                rss_bytes: quorra_node::health::rss_bytes(),
                degraded: shared.health.lock().degraded != 0,
            },
            shared.origins.as_deref(),
            cluster.map(|(node, view)| node.figures(view)),
        ),
    )
}

fn member_json(view: &ClusterView, member: &Member) -> serde_json::Value {
    let (health, reasons) = admin_api::health_json(member);
    json!({
        "id": member.id.as_str(),
        "self": member.id == view.self_id,
        "state": member.state.as_str(),
        "generation": member.generation,
        "addresses": {
            "resp": member.addresses.resp.to_string(),
            "http": member.addresses.http.to_string(),
            "cluster": member.addresses.cluster.to_string(),
        },
        "zone": member.zone,
        "in_ring": view.ring.member(&member.id).is_some(),
        "health": health,
        "health_reasons": reasons,
        "stats": admin_api::member_stats_json(member, quorra_node::wall_clock::unix_ms()),
    })
}

async fn cluster(State(shared): State<Arc<Shared>>) -> Result<Json<serde_json::Value>, ApiError> {
    let view = view(&shared)?;
    let nodes: Vec<_> = view.members.iter().map(|m| member_json(&view, m)).collect();
    Ok(Json(json!({
        "self": view.self_id.as_str(),
        "ring_version": view.ring_version,
        "nodes": nodes,
    })))
}

#[derive(Deserialize)]
struct RingParams {
    tokens: Option<bool>,
}

/// `GET /v1/ring[?tokens=true]`: each node's vnodes and share; with `tokens`, also its
/// vnodes' tokens, as decimal strings (JSON numbers lose u64 precision in browsers).
async fn ring(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<RingParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let view = view(&shared)?;
    let ring = &view.ring;
    let with_tokens = params.tokens.unwrap_or(false);
    let nodes: Vec<_> = ring
        .members()
        .iter()
        .zip(ring.token_shares())
        .map(|(member, share)| {
            let mut node = json!({
                "id": member.id().as_str(),
                "zone": member.zone(),
                "vnodes": member.vnodes(),
                "share": share,
            });
            if with_tokens {
                let tokens: Vec<String> = ring
                    .vnodes()
                    .filter(|(_, owner)| *owner == member.id())
                    .map(|(token, _)| token.to_string())
                    .collect();
                node["tokens"] = json!(tokens);
            }
            node
        })
        .collect();
    Ok(Json(json!({
        "version": view.ring_version,
        "vnodes": ring.vnode_count(),
        "nodes": nodes,
    })))
}

fn owners(shared: &Shared, key: &[u8]) -> Result<Json<serde_json::Value>, ApiError> {
    let view = view(shared)?;
    let node = shared
        .cluster
        .as_ref()
        .expect("view() checked cluster mode");
    let owners: Vec<&str> = node
        .placement(&view)
        .replicas(key)
        .into_iter()
        .map(|id| id.as_str())
        .collect();
    Ok(Json(json!({
        "key": String::from_utf8_lossy(key),
        // A string, as in `/v1/ring?tokens=true`: browsers lose u64 precision in numbers.
        "token": quorra_ring::key_token(key).to_string(),
        "owners": owners,
    })))
}
