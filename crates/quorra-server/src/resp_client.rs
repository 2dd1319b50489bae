//! One client connection: read, parse, execute, reply.
//!
//! The loop reads whatever the socket has, parses *every* complete command in the buffer,
//! executes them in order into one output buffer, and writes that buffer with one
//! `write_all` — so a pipeline of N commands costs one read and one write, not N of each.
//! The output is also flushed mid-batch once it passes `FLUSH_THRESHOLD`, so a client
//! that pipelines many large replies cannot make the server buffer them all.
//!
//! The connection ends when the client closes it, after QUIT, after a protocol error
//! (Redis's text is sent first; the byte stream can no longer be trusted), after
//! `timeout` idle seconds, or when the server shuts down (between batches, so no
//! command is cut in half).
//!
//! The bytes a connection's buffers hold beyond [`UNCOUNTED_BUFFER_BYTES`] count against
//! `maxmemory-clients`, all clients together: after each read a connection reports them,
//! and past the budget the client holding the most is closed (itself, or another told
//! through [`ClientInfo::kill`]), as Redis's client eviction does. The first 64 KiB are
//! what every connection holds however it is used (a 16 KiB read buffer and the output
//! of a batch); counting them would make a small `maxmemory` refuse a few dozen
//! ordinary clients. Buffers that grew for a large request or reply are given back once
//! they are empty.
//!
//! A request that is an HTTP request line or header (`POST / HTTP/1.1`, `Host: ...`)
//! closes the connection before it or anything after it runs, as Redis does: a browser
//! tricked into posting to the RESP port must not get its body executed as commands
//! (cross-protocol scripting). It is logged, at most once every ten seconds.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use quorra_resp::{Limits, RequestParser, encode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use quorra_node::clients::ClientInfo;
use quorra_node::commands;
use quorra_node::databases;
use quorra_node::executor::{Cx, settle};
use quorra_node::origin_hooks;
use quorra_node::pipeline::Pipeline;
use quorra_node::session::Session;
use quorra_node::shared::Shared;

/// Reserve at least this much free space before each read, bytes.
const READ_CHUNK: usize = 16 * 1024;
/// An empty buffer larger than this (it held a large request or reply) is given back
/// after the batch, so that a storm of large values does not leave every connection
/// holding megabytes.
const SHRINK_ABOVE: usize = 64 * 1024;
/// Buffer bytes of one connection that `maxmemory-clients` does not count: what an
/// ordinary connection holds (see the module doc).
pub const UNCOUNTED_BUFFER_BYTES: u64 = 64 * 1024;
/// Write the replies out once this many bytes are waiting, even mid-batch.
const FLUSH_THRESHOLD: usize = 64 * 1024;

/// Why a connection ends after the batch it is executing.
enum Closing {
    /// The client sent QUIT.
    Quit,
    /// The client broke the protocol: Redis's text is sent, then the connection closes,
    /// since the byte stream can no longer be trusted.
    ProtocolError(String),
}

/// Serves one client until it leaves, errs, idles out or the server stops.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    shared: Arc<Shared>,
    mut stream: S,
    info: Arc<ClientInfo>,
    stop: CancellationToken,
) {
    let id = info.id;
    let password_required = shared.settings.read().requirepass.is_some();
    let mut session = Session::new(info, password_required);
    let mut parser = RequestParser::new(Limits {
        max_bulk_len: shared.config.proto_max_bulk_len as usize,
        max_args: shared.config.proto_max_multibulk_len,
        max_query_buffer: shared.config.client_query_buffer_limit as usize,
        ..Limits::default()
    });
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut output = BytesMut::with_capacity(READ_CHUNK);
    // One argument vector for every command of the connection.
    let mut args = Vec::new();
    // Forwarded commands waiting to be sent (cluster mode).
    let mut pipeline = Pipeline::default();
    let counters = &shared.counters;
    let kill = session.info.kill.clone();

    'connection: loop {
        if input.capacity() - input.len() < READ_CHUNK / 4 {
            input.reserve(READ_CHUNK);
        }
        // A subscriber waits for messages, however long: `timeout` is for idle clients.
        let timeout_secs = match &session.pubsub {
            Some(subscriber) if subscriber.active() => 0,
            _ => shared.settings.read().timeout_secs,
        };
        let read = async {
            if timeout_secs == 0 {
                Some(stream.read_buf(&mut input).await)
            } else {
                tokio::time::timeout(
                    Duration::from_secs(timeout_secs),
                    stream.read_buf(&mut input),
                )
                .await
                .ok()
            }
        };
        let protocol = session.protocol;
        let messages = async {
            match &mut session.pubsub {
                Some(subscriber) => {
                    subscriber
                        .receive_into(&mut output, protocol, FLUSH_THRESHOLD)
                        .await
                }
                None => std::future::pending().await,
            }
        };
        let read = tokio::select! {
            read = read => read,
            () = messages => {
                // Published messages arrived (and were written to `output`).
                if flush(&mut stream, &mut output, &shared, &kill).await.is_err() {
                    break;
                }
                continue;
            }
            () = stop.cancelled() => break,
            () = kill.cancelled() => break,
        };
        match read {
            Some(Ok(0)) | Some(Err(_)) => break,
            None => {
                tracing::debug!(client = id, "closing idle client");
                break;
            }
            Some(Ok(n)) => {
                counters
                    .net_input_bytes
                    .fetch_add(n as u64, Ordering::Relaxed);
                session.note_interaction();
            }
        }
        if over_client_budget(&shared, &session.info, &input, &output) {
            break;
        }
        // One view per batch: the ring may change between reads, not within a batch.
        let view = shared
            .cluster
            .as_ref()
            .map(|node| (node.as_ref(), node.view()))
            // A cluster of one (the ring counts only this node): nothing to route, as a
            // single node. A node cut off from the others is not alone: its ring still
            // counts them, and its writes must still find their quorum, and fail.
            .filter(|(node, view)| {
                !(view.joined && view.is_alone() && !node.placement(view).replicated())
            });
        let cx = view.as_ref().map(|(node, view)| Cx {
            shared: &shared,
            node,
            view,
        });
        let mut closing = None;
        // Single node, the batch runs back to back: each command's end is the next one's start.
        let mut command_started = Instant::now();
        loop {
            match parser.next_request_into(&mut input, &mut args) {
                Ok(true) => {
                    if looks_like_http(&args) {
                        if let Some(held_back) = shared.cross_protocol_log.admit() {
                            tracing::warn!(client = %session.info.addr, not_logged_since_last_line = held_back,
                                "Possible SECURITY ATTACK detected. It looks like somebody is sending \
                                 POST or Host: commands to quorra. This is likely due to an attacker \
                                 attempting to use Cross Protocol Scripting to compromise your quorra \
                                 instance. Connection aborted.");
                        }
                        break 'connection;
                    }
                    databases::enter(session.db, &mut args);
                    match cx {
                        None if shared.origins.is_none() => {
                            command_started = commands::dispatch_timed(
                                &shared,
                                &mut session,
                                &mut output,
                                &args,
                                command_started,
                            );
                        }
                        None => {
                            // Boxed, so that its large future does not grow the
                            // connection's when the node has no namespaces.
                            command_started = Box::pin(origin_hooks::dispatch(
                                &shared,
                                None,
                                None,
                                &mut session,
                                &mut output,
                                &args,
                                command_started,
                            ))
                            .await;
                        }
                        Some(cx) => pipeline.run(cx, &mut session, &args, &mut output).await,
                    }
                    // Release the request's bytes now, so the read buffer can be reused.
                    args.clear();
                    if session.close {
                        closing = Some(Closing::Quit);
                        break;
                    }
                    if output.len() >= FLUSH_THRESHOLD {
                        settle(&shared, &mut session).await;
                        if flush(&mut stream, &mut output, &shared, &kill)
                            .await
                            .is_err()
                        {
                            break 'connection;
                        }
                        // The wait for the socket is not the next command's time.
                        command_started = Instant::now();
                    }
                }
                Ok(false) => break,
                Err(error) => {
                    tracing::debug!(client = id, %error, "protocol error, closing");
                    closing = Some(Closing::ProtocolError(format!("ERR {error}")));
                    break;
                }
            }
        }
        if let Some(cx) = cx {
            pipeline.flush(cx, &session, &mut output).await;
        }
        // No write is acknowledged before the nodes that cached its keys dropped them.
        settle(&shared, &mut session).await;
        if let Some(closing) = closing {
            if let Closing::ProtocolError(error) = closing {
                encode::error(&mut output, &error);
            }
            let _ = flush(&mut stream, &mut output, &shared, &kill).await;
            break;
        }
        if flush(&mut stream, &mut output, &shared, &kill)
            .await
            .is_err()
        {
            break;
        }
        for buffer in [&mut input, &mut output] {
            if buffer.is_empty() && buffer.capacity() > SHRINK_ABOVE {
                *buffer = BytesMut::with_capacity(READ_CHUNK);
            }
        }
        shared
            .clients
            .set_buffered(&session.info, buffered(&input, &output));
    }
    shared.clients.disconnect(id);
    shared.metrics.connected_clients.dec();
}

/// Bytes a connection's buffers hold beyond [`UNCOUNTED_BUFFER_BYTES`].
fn buffered(input: &BytesMut, output: &BytesMut) -> u64 {
    ((input.capacity() + output.capacity()) as u64).saturating_sub(UNCOUNTED_BUFFER_BYTES)
}

/// Limits the log lines about clients closed for client memory.
static CLIENT_EVICTIONS_LOG: quorra_node::log_limiter::LogLimiter =
    quorra_node::log_limiter::LogLimiter::new(10_000);

/// Reports this connection's buffers; if all clients together now hold more than
/// `maxmemory-clients`, closes the client holding the most. True if that is this one.
fn over_client_budget(
    shared: &Shared,
    me: &ClientInfo,
    input: &BytesMut,
    output: &BytesMut,
) -> bool {
    let total = shared.clients.set_buffered(me, buffered(input, output));
    let budget = shared.config.maxmemory_clients;
    if budget == 0 || total <= budget {
        return false;
    }
    let Some(evicted) = shared.clients.evict_biggest() else {
        return false;
    };
    if let Some(held_back) = CLIENT_EVICTIONS_LOG.admit() {
        tracing::warn!(client = %evicted.addr, holding = evicted.buffered.load(Ordering::Relaxed),
            clients_total = total, maxmemory_clients = budget, not_logged_since_last_line = held_back,
            "client closed: client buffers over maxmemory-clients");
    }
    evicted.id == me.id
}

/// True if `args` is a line of an HTTP request rather than a command: `POST` or `Host:`
/// (which are not commands, as in Redis), or a request line such as `GET / HTTP/1.1`
/// (an HTTP method, a target, and a version).
fn looks_like_http(args: &[bytes::Bytes]) -> bool {
    const METHODS: [&[u8]; 8] = [
        b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE",
    ];
    let name = &args[0];
    name.eq_ignore_ascii_case(b"POST")
        || name.eq_ignore_ascii_case(b"Host:")
        || (args.len() == 3
            && METHODS
                .iter()
                .any(|method| name.eq_ignore_ascii_case(method))
            && args[2].len() >= 5
            && args[2][..5].eq_ignore_ascii_case(b"HTTP/"))
}

/// Writes `output` out; gives up if the client is told to close meanwhile (a client
/// that stops reading must not hold its connection's task and buffers for ever).
async fn flush<S: AsyncWrite + Unpin>(
    stream: &mut S,
    output: &mut BytesMut,
    shared: &Shared,
    kill: &CancellationToken,
) -> std::io::Result<()> {
    if output.is_empty() {
        return Ok(());
    }
    tokio::select! {
        // The write first: it nearly always completes at once, and then the kill token
        // is never polled (polling it registers a waiter, and dropping it removes it).
        biased;
        written = stream.write_all(output) => written?,
        () = kill.cancelled() => return Err(std::io::ErrorKind::ConnectionAborted.into()),
    }
    shared
        .counters
        .net_output_bytes
        .fetch_add(output.len() as u64, Ordering::Relaxed);
    output.clear();
    Ok(())
}
