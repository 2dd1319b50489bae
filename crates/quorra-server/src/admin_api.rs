//! The admin API's cluster routes beyond single keys, which the dashboard reads and an
//! operator can script:
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/overview` | JSON: the whole cluster's rates, memory, keys, latency, consistency and replication figures, summed from what every serving member gossips |
//! | `GET /v1/scan?cursor=&match=&count=` | JSON: one SCAN page with each key's type, TTL, size and owners |
//! | `POST /v1/command` | runs one command given as JSON `{"args": [...]}`; JSON `{"reply": ...}` |
//! | `POST /v1/nodes/{id}/leave` | `QUORRA LEAVE` on that node: it leaves gracefully and stops (202) |
//! | `POST /v1/nodes/{id}/forget` | `QUORRA FORGET id` here: a dead member is dropped for good |
//!
//! Every command these routes run goes through the node's one request path
//! ([`quorra_node::pipeline::run_one`], or the executor for a command meant for one
//! node), so they route, count and check limits as a client's command does. The
//! console refuses what makes no sense without a connection of its own (MULTI, WATCH,
//! SELECT, AUTH, HELLO, QUIT, RESET) and what never ends (SUBSCRIBE, MONITOR) with a
//! JSON error; a script that runs past `http-request-timeout-ms` is answered 408 (it
//! runs on: SCRIPT KILL stops it).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use quorra_cluster::membership::{Degraded, Member, MemberState};
use quorra_node::executor::{self, Cx, Mode};
use quorra_node::session::Session;
use quorra_node::shared::Shared;
use quorra_resp::Frame;
use quorra_resp::command::{CommandId, lookup};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{ApiError, run, unexpected, view};

/// Most keys one `/v1/scan` page may ask for.
pub const MAX_SCAN_PAGE: u64 = 1000;

/// Keys of a scan page described at the same time.
const DESCRIBED_AT_ONCE: usize = 16;

/// Most arguments one console command may have.
pub const MAX_CONSOLE_ARGS: usize = 4096;

/// A member's gossiped figures and health as JSON.
pub fn member_stats_json(member: &Member, now_ms: u64) -> Value {
    let stats = &member.stats;
    json!({
        "used_memory": stats.used_memory,
        "maxmemory": stats.maxmemory,
        "keys": stats.keys,
        "ops_per_sec": stats.ops_per_sec,
        "hits_per_sec": stats.hits_per_sec,
        "misses_per_sec": stats.misses_per_sec,
        "evictions_per_sec": stats.evictions_per_sec,
        "expirations_per_sec": stats.expirations_per_sec,
        "cpu_percent": stats.cpu_permille as f64 / 10.0,
        "rss_bytes": stats.rss_bytes,
        "latency_p50_ms": stats.latency_p50_us as f64 / 1000.0,
        "latency_p99_ms": stats.latency_p99_us as f64 / 1000.0,
        "uptime_seconds": now_ms.saturating_sub(member.generation) / 1000,
        "hints_pending": stats.hints_pending,
        "read_repairs": stats.read_repairs,
        "quorum_failures": stats.quorum_failures,
    })
}

/// `ok` or `degraded`, and the reasons.
pub fn health_json(member: &Member) -> (Value, Value) {
    let reasons = Degraded::reasons(member.stats.degraded);
    let health = if reasons.is_empty() { "ok" } else { "degraded" };
    (json!(health), json!(reasons))
}

/// `GET /v1/overview`: the cluster as one figure set. Rates, memory and the replication
/// counters are sums over the serving members; keys are their stored entries divided by
/// the copies each key has; latency is the worst member's (percentiles do not add up).
pub async fn overview(State(shared): State<Arc<Shared>>) -> Result<Json<Value>, ApiError> {
    let view = view(&shared)?;
    let node = shared
        .cluster
        .as_ref()
        .expect("view() checked cluster mode");
    let serving: Vec<&Member> = view
        .members
        .iter()
        .filter(|member| member.state == MemberState::Up)
        .collect();
    let sum = |figure: fn(&Member) -> u64| serving.iter().map(|member| figure(member)).sum::<u64>();
    let copies = node.placement(&view).copies();
    let hits = sum(|member| member.stats.hits_per_sec);
    let misses = sum(|member| member.stats.misses_per_sec);
    let worst = |figure: fn(&Member) -> u64| {
        serving
            .iter()
            .map(|member| figure(member))
            .filter(|&micros| micros > 0)
            .max()
            .map(|micros| micros as f64 / 1000.0)
    };
    Ok(Json(json!({
        "self": view.self_id.as_str(),
        "nodes_up": serving.len(),
        "nodes_total": view.members.len(),
        "ops_per_sec": sum(|member| member.stats.ops_per_sec),
        "hit_ratio": (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
        "used_memory": sum(|member| member.stats.used_memory),
        "maxmemory": sum(|member| member.stats.maxmemory),
        // Each key is stored once per copy: exact while every replica holds its keys.
        "keys": sum(|member| member.stats.keys) / copies.max(1) as u64,
        "stored_entries": sum(|member| member.stats.keys),
        "evictions_per_sec": sum(|member| member.stats.evictions_per_sec),
        "expirations_per_sec": sum(|member| member.stats.expirations_per_sec),
        "latency_p50_ms": worst(|member| member.stats.latency_p50_us),
        "latency_p99_ms": worst(|member| member.stats.latency_p99_us),
        "consistency": {
            "replicas": node.consistency.replicas,
            "copies": copies,
            "write": node.consistency.write.to_string(),
            "read": node.consistency.read.to_string(),
        },
        "replication": {
            "hints_pending": sum(|member| member.stats.hints_pending),
            "read_repairs": sum(|member| member.stats.read_repairs),
            "quorum_failures": sum(|member| member.stats.quorum_failures),
        },
    })))
}

/// `/v1/scan`'s query: SCAN's cursor, pattern and count.
#[derive(Deserialize)]
pub struct ScanParams {
    cursor: Option<String>,
    #[serde(rename = "match")]
    pattern: Option<String>,
    count: Option<u64>,
}

/// `GET /v1/scan`: one SCAN page (at most [`MAX_SCAN_PAGE`] keys asked for, so a pattern
/// that matches millions of keys still answers one bounded page), each key with its
/// type, TTL (ms, -1 without one), accounted size and owners.
pub async fn scan(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<ScanParams>,
) -> Result<Json<Value>, ApiError> {
    let count = params.count.unwrap_or(50);
    if !(1..=MAX_SCAN_PAGE).contains(&count) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("count must be between 1 and {MAX_SCAN_PAGE}"),
        ));
    }
    let cursor = params.cursor.unwrap_or_else(|| "0".to_owned());
    let mut command = vec![Bytes::from_static(b"SCAN"), Bytes::from(cursor)];
    if let Some(pattern) = params.pattern.filter(|pattern| pattern != "*") {
        command.extend([Bytes::from_static(b"MATCH"), Bytes::from(pattern)]);
    }
    command.extend([Bytes::from_static(b"COUNT"), Bytes::from(count.to_string())]);
    let Frame::Array(mut page) = run(&shared, command).await? else {
        return Err(ApiError(
            StatusCode::BAD_GATEWAY,
            "SCAN did not answer an array".into(),
        ));
    };
    let (Some(Frame::Array(keys)), Some(Frame::Bulk(next))) = (page.pop(), page.pop()) else {
        return Err(ApiError(
            StatusCode::BAD_GATEWAY,
            "SCAN did not answer a cursor and keys".into(),
        ));
    };
    // A few keys at a time: each description is three commands, likely at other nodes.
    let described: Vec<Value> =
        futures_util::stream::iter(keys.into_iter().filter_map(|key| match key {
            Frame::Bulk(key) => Some(key),
            _ => None,
        }))
        .map(|key| describe_key(&shared, key))
        .buffered(DESCRIBED_AT_ONCE)
        .try_collect()
        .await?;
    Ok(Json(json!({
        "cursor": String::from_utf8_lossy(&next),
        "keys": described,
    })))
}

/// A key's row in the key browser; a key gone since SCAN saw it shows type `none`.
async fn describe_key(shared: &Shared, key: Bytes) -> Result<Value, ApiError> {
    let ask = |name: &'static [u8], extra: Option<&'static [u8]>| {
        let mut command = vec![Bytes::from_static(name)];
        command.extend(extra.map(Bytes::from_static));
        command.push(key.clone());
        command
    };
    let key_type = match run(shared, ask(b"TYPE", None)).await? {
        Frame::Simple(text) => String::from_utf8_lossy(&text).into_owned(),
        other => return Err(unexpected(other)),
    };
    let ttl_ms = match run(shared, ask(b"PTTL", None)).await? {
        Frame::Integer(ms) => ms,
        other => return Err(unexpected(other)),
    };
    let size = match run(shared, ask(b"MEMORY", Some(b"USAGE"))).await? {
        Frame::Integer(bytes) => json!(bytes),
        Frame::Null => Value::Null,
        other => return Err(unexpected(other)),
    };
    let owners: Vec<String> = match (&shared.cluster, shared.cluster.as_ref().map(|n| n.view())) {
        (Some(node), Some(view)) => node
            .placement(&view)
            .replicas(&key)
            .into_iter()
            .map(|id| id.as_str().to_owned())
            .collect(),
        _ => Vec::new(),
    };
    let text = std::str::from_utf8(&key).ok();
    Ok(json!({
        "key": text.map_or_else(|| String::from_utf8_lossy(&key).into_owned(), str::to_owned),
        "key_hex": hex(&key),
        "binary": text.is_none(),
        "type": key_type,
        "ttl_ms": ttl_ms,
        "size": size,
        "owners": owners,
    }))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `/v1/command`'s body: the command and its arguments.
#[derive(Deserialize)]
pub struct ConsoleCommand {
    args: Vec<String>,
}

/// `POST /v1/command`: the console.
pub async fn command(
    State(shared): State<Arc<Shared>>,
    request: Result<Json<ConsoleCommand>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(request) = request.map_err(|rejection| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("the body must be JSON {{\"args\": [\"GET\", \"key\"]}}: {rejection}"),
        )
    })?;
    let Some(name) = request.args.first() else {
        return Err(ApiError(StatusCode::BAD_REQUEST, "args is empty".into()));
    };
    if request.args.len() > MAX_CONSOLE_ARGS {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("at most {MAX_CONSOLE_ARGS} arguments"),
        ));
    }
    use CommandId::*;
    if let Some(
        id @ (Multi | Exec | Discard | Watch | Unwatch | Select | Auth | Hello | Quit | Reset),
    ) = lookup(name.as_bytes())
    {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "{} needs a connection of its own: the console runs each command alone \
                 (use redis-cli)",
                id.info().name.to_uppercase()
            ),
        ));
    }
    // Commands that answer a stream rather than once: refused by name, whether or not
    // this node serves them yet.
    let streaming = [
        "subscribe",
        "psubscribe",
        "ssubscribe",
        "monitor",
        "sync",
        "psync",
    ];
    if streaming
        .iter()
        .any(|stream| name.eq_ignore_ascii_case(stream))
    {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "{} never ends: the console runs commands that answer once (use redis-cli)",
                name.to_uppercase()
            ),
        ));
    }
    let args = request.args.into_iter().map(Bytes::from).collect();
    let reply = quorra_node::pipeline::run_one(&shared, args).await;
    let frame = match quorra_resp::parse_frame(&reply, &quorra_resp::Limits::default()) {
        Ok(Some((frame, _))) => frame,
        _ => {
            return Err(ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the command's reply could not be read".into(),
            ));
        }
    };
    Ok(Json(json!({ "reply": frame_json(frame) })))
}

/// A reply as JSON: text for strings (`{"binary_hex": ...}` when not UTF-8), numbers,
/// null, arrays, `{"error": ...}` for an error reply.
fn frame_json(frame: Frame) -> Value {
    let text = |bytes: Bytes| match String::from_utf8(bytes.to_vec()) {
        Ok(text) => json!(text),
        Err(_) => json!({ "binary_hex": hex(&bytes) }),
    };
    match frame {
        Frame::Simple(bytes) | Frame::Bulk(bytes) | Frame::BigNumber(bytes) => text(bytes),
        Frame::Verbatim { text: bytes, .. } => text(bytes),
        Frame::Error(bytes) => json!({ "error": String::from_utf8_lossy(&bytes) }),
        Frame::Integer(n) => json!(n),
        Frame::Double(x) => json!(x),
        Frame::Boolean(b) => json!(b),
        Frame::Null => Value::Null,
        Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => {
            Value::Array(items.into_iter().map(frame_json).collect())
        }
        Frame::Map(pairs) => Value::Array(
            pairs
                .into_iter()
                .flat_map(|(key, value)| [frame_json(key), frame_json(value)])
                .collect(),
        ),
    }
}

/// `POST /v1/nodes/{id}/leave`: `QUORRA LEAVE` run on that node.
pub async fn leave(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let view = view(&shared)?;
    let node = shared
        .cluster
        .as_ref()
        .expect("view() checked cluster mode");
    let member = view
        .members
        .iter()
        .find(|member| member.id.as_str() == id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no member {id}")))?;
    if member.state != MemberState::Up {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("{id} is {}: only a serving node can leave", member.state),
        ));
    }
    let cx = Cx {
        shared: &shared,
        node,
        view: &view,
    };
    let mut session = Session::new(shared.peer_client.clone(), false);
    let mode = Mode::of(cx, &session, false);
    let leave = vec![Bytes::from_static(b"QUORRA"), Bytes::from_static(b"LEAVE")];
    let (reply, _) = executor::run_on(cx, &mut session, &member.id, leave, mode)
        .await
        .map_err(|error| ApiError::from(executor::peer_failure(&error)))?;
    match quorra_resp::parse_frame(&reply, &quorra_resp::Limits::default()) {
        Ok(Some((Frame::Simple(_), _))) => {
            Ok((StatusCode::ACCEPTED, Json(json!({ "leaving": id }))))
        }
        Ok(Some((frame, _))) => Err(unexpected(frame)),
        _ => Err(ApiError(
            StatusCode::BAD_GATEWAY,
            "the node's reply could not be read".into(),
        )),
    }
}

/// `POST /v1/nodes/{id}/forget`: `QUORRA FORGET id` on this node.
pub async fn forget(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let forget = vec![
        Bytes::from_static(b"QUORRA"),
        Bytes::from_static(b"FORGET"),
        Bytes::from(id.clone()),
    ];
    match run(&shared, forget).await? {
        Frame::Simple(_) => Ok(Json(json!({ "forgotten": id }))),
        other => Err(unexpected(other)),
    }
}
